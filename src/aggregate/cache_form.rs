//! The form a backend stores its answers in, as a cache key part ([`StoredForm`]): made
//! once per backend when the config is built, from everything that turns the upstream's
//! answer into the bytes and headers stored.
//!
//! What makes the stored answer, and so the form:
//! - unshaped, for the backends that read this one's answer (`raw`), else its shaping
//!   (`extract`, `select`, `omit`, `rename`, in that order, each value length-prefixed
//!   so no two shapings write the same text);
//! - `merge = "root"`, under which only an object was stored;
//! - the response headers kept (`keep_headers`), which the entry holds.
//!
//! Backends whose forms are equal share entries, in one route or across routes; the
//! text is the same in every instance with the same config, so the cluster cache's
//! entries are shared alike.

use crate::cache::StoredForm;
use crate::config::{BackendSpec, MergeMode};
use std::fmt::Write;

/// The form of `spec`'s stored answers; `read_by_others`: another backend of its route
/// reads its answer, so it is stored unshaped.
pub fn cache_form(spec: &BackendSpec, read_by_others: bool) -> StoredForm {
    let mut text = String::new();
    let mut field = |tag: &str, value: &str| {
        // A String takes every write.
        let _ = write!(text, "{tag}{}:{value};", value.len());
    };
    match (&spec.shape, read_by_others) {
        (_, true) => field("raw", ""),
        (None, false) => field("as-is", ""),
        (Some(shape), false) => {
            if let Some(path) = &shape.extract {
                field("extract", &path.to_string());
            }
            for path in &shape.select {
                field("select", &path.to_string());
            }
            for path in &shape.omit {
                field("omit", &path.to_string());
            }
            for (old, new) in &shape.rename {
                field("rename", old);
                field("to", new);
            }
        }
    }
    if spec.merge == MergeMode::Root {
        field("root", "");
    }
    for name in &spec.keep_headers {
        field("header", name.as_str());
    }
    StoredForm::read(&text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Env, compile};

    /// The backends of the first route of `routes` (TOML of `[[routes]]` tables).
    fn backends(routes: &str) -> Vec<BackendSpec> {
        let toml = format!("[upstreams.up]\nurl = \"http://127.0.0.1:9\"\n{routes}");
        let compiled = compile(&toml, &Env::default()).expect("a valid config");
        match compiled.routes.into_iter().next().unwrap().kind {
            crate::config::RouteKind::Aggregate(a) => a.backends,
            _ => panic!("an aggregate route"),
        }
    }

    fn form_of(backend: &str) -> StoredForm {
        let b = backends(&format!(
            "[[routes]]\npath = \"/r\"\n[[routes.backends]]\nname = \"b\"\nupstream = \"up\"\npath = \"/x\"\n{backend}\n"
        ));
        cache_form(&b[0], false)
    }

    #[test]
    fn each_thing_that_changes_the_stored_answer_changes_the_form() {
        let forms = [
            form_of(""),
            form_of("select = [\"a\"]"),
            form_of("select = [\"b\"]"),
            form_of("select = [\"a\", \"b\"]"),
            form_of("omit = [\"a\"]"),
            form_of("extract = \"a\""),
            form_of("rename = { a = \"b\" }"),
            form_of("rename = { b = \"a\" }"),
            form_of("merge = \"root\""),
        ];
        for (i, a) in forms.iter().enumerate() {
            for b in &forms[i + 1..] {
                assert_ne!(a, b);
            }
        }
        assert_ne!(form_of(""), StoredForm::Whole);
    }

    #[test]
    fn equal_shapings_share_a_form_and_unshaped_reads_have_their_own() {
        assert_eq!(form_of("select = [\"a\"]"), form_of("select = [\"a\"]"));
        let b = backends(
            "[[routes]]\npath = \"/r\"\n\
             [[routes.backends]]\nname = \"a\"\nupstream = \"up\"\npath = \"/x\"\nselect = [\"id\"]\n\
             [[routes.backends]]\nname = \"b\"\nupstream = \"up\"\npath = \"/y/{a.id}\"\n",
        );
        assert_ne!(cache_form(&b[0], true), cache_form(&b[0], false));
        assert_eq!(cache_form(&b[0], true), cache_form(&b[1], true));
    }

    #[test]
    fn values_are_length_prefixed_so_no_two_shapings_write_the_same_text() {
        // Without the lengths, one path `a;select1:b` and two paths `a`, `b` could meet.
        assert_ne!(
            form_of("select = [\"a;select1:b\"]"),
            form_of("select = [\"a\", \"b\"]")
        );
    }
}
