//! Cache keys: what identifies one stored answer, and a borrowed form to look one up
//! without building it (a hit allocates nothing). A key that is stored owns copies of
//! its bytes: header values read from a request are slices of the connection's receive
//! buffer, which a stored slice would keep alive whole.
//!
//! Whose answer a key holds: on a route without `auth`, the credentials' values
//! (`Authorization`, `Cookie`) are in every key; on a route with `auth`, the identity the
//! route proved (provider and subject) is, in their place, so two users never share an
//! entry and one user's refreshed token finds the entries of the old one. Anonymous
//! requests on an `auth_optional` route share one anonymous entry.

use crate::auth::Identity;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Request headers that can change an answer: they are part of every key of a route
/// without `auth`, so no user ever gets another user's cached answer.
pub const IDENTITY_HEADERS: [HeaderName; 2] = [http::header::AUTHORIZATION, http::header::COOKIE];

/// Who the answers of a request's keys are for.
#[derive(Debug, Clone, Copy)]
pub enum KeyedBy<'a> {
    /// A route without `auth`: the values of [`IDENTITY_HEADERS`].
    Credentials,
    /// A route with `auth`: the identity it proved (`None`: an anonymous request of an
    /// `auth_optional` route), in place of any credential header's value.
    Identity(Option<&'a Identity>),
}

/// The identity part of a key: provider and subject, `None` for anonymous.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Caller {
    Credentials,
    Identity(Option<(Arc<str>, Arc<str>)>),
}

/// What identifies one cached answer: method, final upstream URL, the values of the
/// request headers that can change the answer, and the form it is stored in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(Arc<KeyParts>);

#[derive(Debug, PartialEq, Eq, Hash)]
struct KeyParts {
    method: Method,
    url: String,
    varying: Varying,
    form: StoredForm,
}

/// The form an answer is stored in, beyond the call that fetched it. Two aggregate
/// backends that call one URL but shape its answer differently, keep different response
/// headers of it, or need it unshaped for the backends that read it, store different
/// bytes: their entries must not meet, or one route would serve the fields another
/// route's shaping drops. `Whole` (a cached proxy route): the answer as the upstream
/// sent it. `Read`: a text naming everything that made the stored bytes from the
/// answer, made once per backend when the config is built (`aggregate::cache_form`),
/// equal for backends that store alike, so they share entries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StoredForm {
    Whole,
    Read(FormText),
}

impl StoredForm {
    /// The form named by `text`.
    pub fn read(text: &str) -> Self {
        let mut hasher = std::hash::DefaultHasher::new();
        text.hash(&mut hasher);
        StoredForm::Read(FormText {
            text: text.into(),
            digest: hasher.finish(),
        })
    }

    /// As a key part: `None` for the whole answer.
    fn text(&self) -> Option<&str> {
        match self {
            StoredForm::Whole => None,
            StoredForm::Read(form) => Some(&form.text),
        }
    }
}

/// A form's text with its hash, taken once: a lookup hashes eight bytes, not the text,
/// and compares a backend's own form by pointer before its bytes.
#[derive(Debug, Clone)]
pub struct FormText {
    text: Arc<str>,
    digest: u64,
}

impl PartialEq for FormText {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
            && (Arc::ptr_eq(&self.text, &other.text) || self.text == other.text)
    }
}

impl Eq for FormText {}

impl Hash for FormText {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.digest);
    }
}

/// Who the answer is for, and the values (or absence) of the request headers a key
/// varies by, in a fixed order: the identity headers (on a route without `auth`), then
/// the route's; every value of a repeated header, in order, since every value is
/// forwarded. Read once per request, shared by its keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Varying {
    caller: Caller,
    values: Vec<(HeaderName, Option<HeaderValue>)>,
}

impl Varying {
    /// Reads the identity headers and `headers` from `request`: one `(name, None)` for a
    /// header that is absent, one `(name, Some(value))` per value of one that is present.
    pub fn read<'a>(
        request: &HeaderMap,
        headers: impl IntoIterator<Item = &'a HeaderName>,
    ) -> Self {
        Self::read_keyed(request, KeyedBy::Credentials, headers)
    }

    /// As [`Varying::read`], for a request whose answers are for `keyed`: with an
    /// identity, no credential header's value is read, even one in `headers`.
    pub fn read_keyed<'a>(
        request: &HeaderMap,
        keyed: KeyedBy<'_>,
        headers: impl IntoIterator<Item = &'a HeaderName>,
    ) -> Self {
        let (caller, credentials): (_, &[HeaderName]) = match keyed {
            KeyedBy::Credentials => (Caller::Credentials, &IDENTITY_HEADERS),
            KeyedBy::Identity(who) => (
                Caller::Identity(who.map(|i| (i.provider.clone(), i.subject.clone()))),
                &[],
            ),
        };
        let by_identity = matches!(caller, Caller::Identity(_));
        let names = credentials
            .iter()
            .chain(headers)
            .filter(|name| !(by_identity && IDENTITY_HEADERS.contains(name)));
        // One value per name is the usual case: one allocation of the right size.
        let mut values = Vec::with_capacity(names.size_hint().0);
        for name in names {
            let mut all = request.get_all(name).iter().peekable();
            if all.peek().is_none() {
                values.push((name.clone(), None));
            }
            values.extend(all.map(|value| (name.clone(), Some(value.clone()))));
        }
        Self { caller, values }
    }

    /// A copy whose values own their bytes (names come from the config, never a request).
    fn to_owned_values(&self) -> Self {
        Self {
            caller: self.caller.clone(),
            values: self
                .values
                .iter()
                .map(|(name, value)| (name.clone(), value.as_ref().map(owned_value)))
                .collect(),
        }
    }

    /// Bytes held: each value's, each pair's own size, and the identity's names.
    fn weight(&self) -> usize {
        let caller = match &self.caller {
            Caller::Identity(Some((provider, subject))) => provider.len() + subject.len(),
            _ => 0,
        };
        caller
            + self.values.capacity() * std::mem::size_of::<(HeaderName, Option<HeaderValue>)>()
            + self
                .values
                .iter()
                .map(|(_, v)| v.as_ref().map_or(0, HeaderValue::len))
                .sum::<usize>()
    }
}

/// A header value whose bytes are its own, of its own size.
pub fn owned_value(value: &HeaderValue) -> HeaderValue {
    let mut owned = HeaderValue::from_maybe_shared(bytes::Bytes::copy_from_slice(value.as_bytes()))
        .expect("the bytes of a valid header value");
    owned.set_sensitive(value.is_sensitive());
    owned
}

impl CacheKey {
    /// The key of a call to `url` whose answer may vary by `headers` (read from `request`).
    pub fn new<'a>(
        method: Method,
        url: &str,
        request: &HeaderMap,
        headers: impl IntoIterator<Item = &'a HeaderName>,
    ) -> Self {
        Self::keyed(method, url, request, KeyedBy::Credentials, headers)
    }

    /// As [`CacheKey::new`], for answers that are for `keyed`.
    pub fn keyed<'a>(
        method: Method,
        url: &str,
        request: &HeaderMap,
        keyed: KeyedBy<'_>,
        headers: impl IntoIterator<Item = &'a HeaderName>,
    ) -> Self {
        KeyQuery::new(&method, url, &Varying::read_keyed(request, keyed, headers)).to_key()
    }

    pub fn url(&self) -> &str {
        &self.0.url
    }

    /// The key's parts as bytes, each length-prefixed so no two keys write the same:
    /// what its second-level digest is taken of (stable across processes, unlike its
    /// hash).
    pub(super) fn canonical(&self) -> Vec<u8> {
        fn field(out: &mut Vec<u8>, bytes: &[u8]) {
            out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
            out.extend_from_slice(bytes);
        }
        let parts = &self.0;
        let mut out = Vec::with_capacity(64 + parts.url.len());
        field(&mut out, parts.method.as_str().as_bytes());
        field(&mut out, parts.url.as_bytes());
        match &parts.varying.caller {
            Caller::Credentials => out.push(0),
            Caller::Identity(None) => out.push(1),
            Caller::Identity(Some((provider, subject))) => {
                out.push(2);
                field(&mut out, provider.as_bytes());
                field(&mut out, subject.as_bytes());
            }
        }
        for (name, value) in &parts.varying.values {
            field(&mut out, name.as_str().as_bytes());
            match value {
                None => out.push(0),
                Some(value) => {
                    out.push(1);
                    field(&mut out, value.as_bytes());
                }
            }
        }
        // After the values, marked apart from a value's 0 and 1.
        if let Some(form) = parts.form.text() {
            out.push(2);
            field(&mut out, form.as_bytes());
        }
        out
    }

    /// Bytes held by the key: its parts, the URL and the header values (a form's text
    /// is shared with the config, not the key's own).
    pub(super) fn weight(&self) -> usize {
        std::mem::size_of::<KeyParts>() + self.0.url.len() + self.0.varying.weight()
    }
}

/// A key to look up, borrowed from the request: equal to, and hashed exactly as, the
/// [`CacheKey`] that [`KeyQuery::to_key`] builds (moka finds entries by `Equivalent`).
#[derive(Debug, Clone, Copy)]
pub struct KeyQuery<'a> {
    method: &'a Method,
    url: &'a str,
    varying: &'a Varying,
    form: &'a StoredForm,
}

impl<'a> KeyQuery<'a> {
    /// The key of an answer stored whole.
    pub fn new(method: &'a Method, url: &'a str, varying: &'a Varying) -> Self {
        static WHOLE: StoredForm = StoredForm::Whole;
        Self {
            method,
            url,
            varying,
            form: &WHOLE,
        }
    }

    /// The same key for an answer stored in `form`.
    pub fn in_form(self, form: &'a StoredForm) -> Self {
        Self { form, ..self }
    }

    /// The owned key, to store an answer under: its values are copies, not slices of
    /// the request they were read from.
    pub fn to_key(&self) -> CacheKey {
        CacheKey(Arc::new(KeyParts {
            method: self.method.clone(),
            url: self.url.to_owned(),
            varying: self.varying.to_owned_values(),
            form: self.form.clone(),
        }))
    }
}

impl Hash for KeyQuery<'_> {
    /// Field by field as `KeyParts` derives it; a test pins the two equal.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.method.hash(state);
        self.url.hash(state);
        self.varying.hash(state);
        self.form.hash(state);
    }
}

impl moka::Equivalent<CacheKey> for KeyQuery<'_> {
    fn equivalent(&self, key: &CacheKey) -> bool {
        *self.method == key.0.method
            && self.url == key.0.url
            && *self.varying == key.0.varying
            && *self.form == key.0.form
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use moka::Equivalent;
    use std::hash::BuildHasher;

    fn request(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(n, v)| (HeaderName::from_static(n), HeaderValue::from_static(v)))
            .collect()
    }

    #[test]
    fn a_query_hashes_and_compares_as_its_key() {
        let state = foldhash::fast::RandomState::default();
        let accept = [http::header::ACCEPT];
        for headers in [
            request(&[]),
            request(&[("authorization", "Bearer a"), ("accept", "text/html")]),
            request(&[("cookie", "s=1"), ("x-other", "1")]),
        ] {
            let varying = Varying::read(&headers, &accept);
            let query = KeyQuery::new(&Method::GET, "http://u/a?x=1", &varying);
            let key = query.to_key();
            assert_eq!(state.hash_one(query), state.hash_one(&key));
            assert!(query.equivalent(&key));
            assert_eq!(
                key,
                CacheKey::new(Method::GET, "http://u/a?x=1", &headers, &accept)
            );
        }
    }

    #[test]
    fn the_form_is_in_the_key_its_hash_and_its_digest() {
        let state = foldhash::fast::RandomState::default();
        let varying = Varying::read(&request(&[]), &[]);
        let (a, b) = (
            StoredForm::read("select1:a;"),
            StoredForm::read("select1:b;"),
        );
        let whole = KeyQuery::new(&Method::GET, "http://u/a", &varying);
        let in_a = whole.in_form(&a);
        let key = in_a.to_key();
        assert_eq!(state.hash_one(in_a), state.hash_one(&key));
        assert!(in_a.equivalent(&key));
        assert!(!whole.equivalent(&key));
        assert!(!whole.in_form(&b).equivalent(&key));
        let digests = [whole.to_key(), key, whole.in_form(&b).to_key()].map(|k| k.canonical());
        assert_ne!(digests[0], digests[1]);
        assert_ne!(digests[1], digests[2]);
    }

    #[test]
    fn a_query_differs_from_keys_of_other_urls_users_and_methods() {
        let none = Varying::read(&request(&[]), &[]);
        let ada = Varying::read(&request(&[("authorization", "Bearer ada")]), &[]);
        let key = KeyQuery::new(&Method::GET, "http://u/a", &ada).to_key();
        assert!(KeyQuery::new(&Method::GET, "http://u/a", &ada).equivalent(&key));
        assert!(!KeyQuery::new(&Method::GET, "http://u/a", &none).equivalent(&key));
        assert!(!KeyQuery::new(&Method::GET, "http://u/b", &ada).equivalent(&key));
        assert!(!KeyQuery::new(&Method::HEAD, "http://u/a", &ada).equivalent(&key));
    }

    #[test]
    fn weight_counts_what_the_key_holds() {
        let varying = Varying::read(&request(&[("cookie", "s=1")]), &[]);
        let key = KeyQuery::new(&Method::GET, "http://u/a", &varying).to_key();
        let pair = std::mem::size_of::<(HeaderName, Option<HeaderValue>)>();
        let parts = std::mem::size_of::<KeyParts>();
        // URL 10, two pairs (authorization absent, cookie), the cookie's value 3.
        assert_eq!(key.weight(), parts + 10 + 2 * pair + 3);
    }

    #[test]
    fn every_value_of_a_repeated_header_is_in_the_key() {
        let lang = [HeaderName::from_static("x-lang")];
        let mut two = request(&[("x-lang", "en")]);
        two.append("x-lang", HeaderValue::from_static("<script>"));
        let one = request(&[("x-lang", "en")]);
        let key = CacheKey::new(Method::GET, "http://u/a", &two, &lang);
        assert_ne!(key, CacheKey::new(Method::GET, "http://u/a", &one, &lang));
        let mut swapped = request(&[("x-lang", "<script>")]);
        swapped.append("x-lang", HeaderValue::from_static("en"));
        assert_ne!(
            key,
            CacheKey::new(Method::GET, "http://u/a", &swapped, &lang)
        );
        assert_eq!(key, CacheKey::new(Method::GET, "http://u/a", &two, &lang));
        // An absent header and an empty value differ too.
        let empty = request(&[("x-lang", "")]);
        assert_ne!(
            CacheKey::new(Method::GET, "http://u/a", &empty, &lang),
            CacheKey::new(Method::GET, "http://u/a", &request(&[]), &lang)
        );
    }

    fn identity(provider: &str, sub: &str, token: &str) -> Identity {
        let claims = serde_json::json!({"sub": sub, "jti": token});
        let serde_json::Value::Object(claims) = claims else {
            unreachable!()
        };
        Identity::new(provider.into(), &[], claims).unwrap()
    }

    #[test]
    fn on_a_route_with_auth_the_identity_keys_the_answer_not_the_token() {
        let state = foldhash::fast::RandomState::default();
        let forwarded = [http::header::AUTHORIZATION, http::header::ACCEPT];
        let key = |token: &'static str, who: Option<&Identity>| {
            let headers = request(&[("authorization", token), ("cookie", token)]);
            let varying = Varying::read_keyed(&headers, KeyedBy::Identity(who), &forwarded);
            let query = KeyQuery::new(&Method::GET, "http://u/a", &varying);
            assert_eq!(state.hash_one(query), state.hash_one(query.to_key()));
            query.to_key()
        };
        let (ada1, ada2) = (identity("users", "ada", "1"), identity("users", "ada", "2"));
        let bob = identity("users", "bob", "1");
        // The same user with a refreshed token: the same key.
        assert_eq!(
            key("Bearer one", Some(&ada1)),
            key("Bearer two", Some(&ada2))
        );
        // Two users, or one subject of two providers: never.
        assert_ne!(
            key("Bearer one", Some(&ada1)),
            key("Bearer one", Some(&bob))
        );
        let partner = identity("partners", "ada", "1");
        assert_ne!(
            key("Bearer one", Some(&ada1)),
            key("Bearer one", Some(&partner))
        );
        // Anonymous requests share one entry, whatever else they send, and never a
        // user's.
        assert_eq!(key("Basic x", None), key("Basic y", None));
        assert_ne!(key("Basic x", None), key("Basic x", Some(&ada1)));
        // A route without auth keys the credentials as before.
        let headers = request(&[("authorization", "Bearer one")]);
        let by_token = Varying::read(&headers, &forwarded);
        let query = KeyQuery::new(&Method::GET, "http://u/a", &by_token);
        assert!(!query.equivalent(&key("Bearer one", None)));
    }

    #[test]
    fn a_stored_key_owns_its_values() {
        let buffer = bytes::Bytes::from(b"GET / HTTP/1.1\r\nauthorization: Bearer a\r\n".to_vec());
        let value = HeaderValue::from_maybe_shared(buffer.slice(31..39)).unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(http::header::AUTHORIZATION, value);
        let varying = Varying::read(&headers, &[]);
        let key = KeyQuery::new(&Method::GET, "http://u/a", &varying).to_key();
        let stored = key.0.varying.values[0].1.as_ref().unwrap();
        assert_eq!(stored, "Bearer a");
        let range = buffer.as_ptr_range();
        assert!(
            !range.contains(&stored.as_bytes().as_ptr()),
            "the key's value is a copy, not a slice of the request's buffer"
        );
    }
}
