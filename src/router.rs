//! The compiled route table: matchit paths, each with the routes that answer its methods,
//! and the answers for 404 (no path) and 405 (path, but not that method). Requests are
//! looked up by their normalized path ([`normalize`]).

mod normalize;

pub use normalize::{PathError, normalize, route_path_problem};

use http::{HeaderValue, Method};
use std::fmt;

/// The methods a route answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Methods {
    /// Every method: a proxy route without `methods`.
    Any,
    /// These, never none.
    Only(Vec<Method>),
}

impl Methods {
    pub fn contains(&self, method: &Method) -> bool {
        match self {
            Methods::Any => true,
            Methods::Only(list) => list.contains(method),
        }
    }

    /// A method both answer, named for the duplicate-route error.
    fn shared_with(&self, other: &Methods) -> Option<String> {
        match (self, other) {
            (Methods::Only(mine), theirs) => mine
                .iter()
                .find(|m| theirs.contains(m))
                .map(ToString::to_string),
            (Methods::Any, Methods::Only(theirs)) => theirs.first().map(ToString::to_string),
            (Methods::Any, Methods::Any) => Some("*".into()),
        }
    }
}

/// `GET,POST`, or `*` for every method.
impl fmt::Display for Methods {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Methods::Any => f.write_str("*"),
            Methods::Only(list) => {
                for (i, m) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    f.write_str(m.as_str())?;
                }
                Ok(())
            }
        }
    }
}

/// The routes sharing one path pattern, by method.
#[derive(Debug)]
struct PathSlot<T> {
    pattern: String,
    routes: Vec<(Methods, T)>,
    allow: HeaderValue,
}

/// Path pattern → method → `T` (a route index during validation, a route at runtime).
#[derive(Debug)]
pub struct RouteTable<T> {
    router: matchit::Router<usize>,
    slots: Vec<PathSlot<T>>,
    /// Patterns added for the bare prefix of a catch-all (`/api/` and `/api` for
    /// `/api/{*rest}`, which matchit matches only with a non-empty rest). A declared
    /// route of the same path takes its place.
    implicit: Vec<String>,
}

/// Which route a request's method and path match: the route and its path parameters,
/// a path that exists for other methods only (405), or none (404).
pub enum RouteMatch<'t, 'p, T> {
    Found(&'t T, matchit::Params<'t, 'p>),
    /// The path exists but not for this method.
    MethodNotAllowed {
        /// The `Allow` header: the methods the path answers.
        allow: &'t HeaderValue,
        /// The path pattern that matched.
        pattern: &'t str,
        /// A route declared on that pattern (all of them share it), for its labels.
        on_path: &'t T,
    },
    NotFound,
}

impl<T> Default for RouteTable<T> {
    fn default() -> Self {
        Self {
            router: matchit::Router::new(),
            slots: Vec::new(),
            implicit: Vec::new(),
        }
    }
}

impl<T> RouteTable<T> {
    /// Adds a route. The same pattern may be declared again for other methods; an
    /// overlapping method, or a pattern matchit finds ambiguous, is an error. A
    /// catch-all `P/{*rest}` also answers `P/` and `P` (with an empty rest) unless a
    /// route declares those paths itself.
    pub fn insert(&mut self, pattern: &str, methods: &Methods, value: T) -> Result<(), String> {
        let slot = match self.slots.iter().position(|s| s.pattern == pattern) {
            Some(i) => i,
            None => {
                let i = self.slots.len();
                self.insert_declared(pattern, i)?;
                self.slots.push(PathSlot {
                    pattern: pattern.to_string(),
                    routes: Vec::new(),
                    allow: HeaderValue::from_static(""),
                });
                self.insert_bare_prefixes(pattern, i);
                i
            }
        };
        let slot = &mut self.slots[slot];
        if let Some(m) = slot
            .routes
            .iter()
            .find_map(|(ms, _)| methods.shared_with(ms))
        {
            let m = if m == "*" {
                "every method on".to_string()
            } else {
                m
            };
            return Err(format!(
                "duplicate route: {m} {pattern} is already declared; merge the two routes or change the path"
            ));
        }
        slot.routes.push((methods.clone(), value));
        slot.allow = allow_header(slot.routes.iter().flat_map(|(ms, _)| match ms {
            Methods::Any => [].iter(),
            Methods::Only(list) => list.iter(),
        }));
        Ok(())
    }

    /// Inserts a declared pattern, replacing a bare prefix that stood in its way.
    fn insert_declared(&mut self, pattern: &str, slot: usize) -> Result<(), String> {
        loop {
            match self.router.insert(pattern, slot) {
                Ok(()) => return Ok(()),
                Err(matchit::InsertError::Conflict { with }) if self.implicit.contains(&with) => {
                    self.router.remove(with.as_str());
                    self.implicit.retain(|p| *p != with);
                }
                Err(e) => return Err(describe_insert_error(pattern, e)),
            }
        }
    }

    /// `P/` and `P` for a catch-all `P/{*rest}`, where no declared route has them.
    fn insert_bare_prefixes(&mut self, pattern: &str, slot: usize) {
        let Some(at) = pattern.rfind("/{*").filter(|_| pattern.ends_with('}')) else {
            return;
        };
        for bare in [&pattern[..=at], &pattern[..at]] {
            if !bare.is_empty() && self.router.insert(bare, slot).is_ok() {
                self.implicit.push(bare.to_string());
            }
        }
    }

    /// Finds the route for `method` on `path`, a normalized path. HEAD is answered by a
    /// GET route unless a route declares HEAD itself, as nginx and Envoy do.
    ///
    /// A trailing slash cannot take a request past a route: when the path without it
    /// has a route path of its own, other than the one the path with it matches (such
    /// as `/p/secret` beside `/p/{*rest}`), it is matched as the path without it.
    pub fn lookup<'t, 'p>(&'t self, method: &Method, path: &'p str) -> RouteMatch<'t, 'p, T> {
        let mut found = self.router.at(path).ok();
        if path.len() > 1
            && let Some(trimmed) = path.strip_suffix('/')
            && let Ok(other) = self.router.at(trimmed)
            && found.as_ref().is_none_or(|f| f.value != other.value)
        {
            found = Some(other);
        }
        let Some(m) = found else {
            return RouteMatch::NotFound;
        };
        let slot = &self.slots[*m.value];
        let find = |wanted: &Method| {
            slot.routes
                .iter()
                .find(|(ms, _)| ms.contains(wanted))
                .map(|(_, v)| v)
        };
        let found = find(method).or_else(|| {
            (method == Method::HEAD)
                .then(|| find(&Method::GET))
                .flatten()
        });
        match found {
            Some(v) => RouteMatch::Found(v, m.params),
            None => RouteMatch::MethodNotAllowed {
                allow: &slot.allow,
                pattern: &slot.pattern,
                on_path: &slot.routes[0].1,
            },
        }
    }

    /// Every route, in insertion order of their paths.
    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.slots
            .iter()
            .flat_map(|s| s.routes.iter().map(|(_, v)| v))
    }
}

fn allow_header<'a>(methods: impl Iterator<Item = &'a Method>) -> HeaderValue {
    let mut names: Vec<&str> = methods.map(Method::as_str).collect();
    if names.contains(&"GET") && !names.contains(&"HEAD") {
        names.push("HEAD");
    }
    names.sort_unstable();
    names.dedup();
    HeaderValue::from_str(&names.join(", ")).expect("method names are valid header text")
}

fn describe_insert_error(pattern: &str, e: matchit::InsertError) -> String {
    match e {
        matchit::InsertError::Conflict { with } => format!(
            "path {pattern} overlaps the route path {with}: a request could match both; make one of them more specific"
        ),
        other => format!("invalid path {pattern}: {other}"),
    }
}

/// The parameter names of a route pattern, `{id}` and `{*rest}` alike.
pub fn param_names(pattern: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = pattern;
    while let Some(open) = rest.find('{') {
        if rest[open + 1..].starts_with('{') {
            rest = &rest[open + 2..];
            continue;
        }
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        names.push(
            rest[open + 1..open + close]
                .trim_start_matches('*')
                .to_string(),
        );
        rest = &rest[open + close + 1..];
    }
    names
}

#[cfg(test)]
mod tests;
