//! The compiled route table: matchit paths, each with the routes that answer its methods,
//! and the answers for 404 (no path) and 405 (path, but not that method).

use http::{HeaderValue, Method};

/// The routes sharing one path pattern, by method.
#[derive(Debug)]
struct PathSlot<T> {
    pattern: String,
    routes: Vec<(Vec<Method>, T)>,
    allow: HeaderValue,
}

/// Path pattern → method → `T` (a route index during validation, a route at runtime).
#[derive(Debug)]
pub struct RouteTable<T> {
    router: matchit::Router<usize>,
    slots: Vec<PathSlot<T>>,
}

/// The result of looking a request up.
pub enum Lookup<'t, 'p, T> {
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
        }
    }
}

impl<T> RouteTable<T> {
    /// Adds a route. The same pattern may be declared again for other methods; an
    /// overlapping method, or a pattern matchit finds ambiguous, is an error.
    pub fn insert(&mut self, pattern: &str, methods: &[Method], value: T) -> Result<(), String> {
        let slot = match self.slots.iter().position(|s| s.pattern == pattern) {
            Some(i) => i,
            None => {
                let i = self.slots.len();
                self.router
                    .insert(pattern, i)
                    .map_err(|e| describe_insert_error(pattern, e))?;
                self.slots.push(PathSlot {
                    pattern: pattern.to_string(),
                    routes: Vec::new(),
                    allow: HeaderValue::from_static(""),
                });
                i
            }
        };
        let slot = &mut self.slots[slot];
        if let Some(m) = methods
            .iter()
            .find(|m| slot.routes.iter().any(|(ms, _)| ms.contains(m)))
        {
            return Err(format!(
                "duplicate route: {m} {pattern} is already declared; merge the two routes or change the path"
            ));
        }
        slot.routes.push((methods.to_vec(), value));
        slot.allow = allow_header(slot.routes.iter().flat_map(|(ms, _)| ms.iter()));
        Ok(())
    }

    /// Finds the route for `method` on `path`. HEAD is answered by a GET route unless a
    /// route declares HEAD itself, as nginx and Envoy do.
    pub fn lookup<'t, 'p>(&'t self, method: &Method, path: &'p str) -> Lookup<'t, 'p, T> {
        let Ok(m) = self.router.at(path) else {
            return Lookup::NotFound;
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
            Some(v) => Lookup::Found(v, m.params),
            None => Lookup::MethodNotAllowed {
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
mod tests {
    use super::*;

    fn table() -> RouteTable<&'static str> {
        let mut t = RouteTable::default();
        t.insert("/users/{id}", &[Method::GET], "get-user").unwrap();
        t.insert("/users/{id}", &[Method::POST, Method::PUT], "write-user")
            .unwrap();
        t.insert("/files/{*rest}", &[Method::GET], "files").unwrap();
        t
    }

    #[test]
    fn finds_routes_by_path_and_method() {
        let t = table();
        match t.lookup(&Method::GET, "/users/7") {
            Lookup::Found(v, p) => {
                assert_eq!(*v, "get-user");
                assert_eq!(p.get("id"), Some("7"));
            }
            _ => panic!("expected a match"),
        }
        assert!(matches!(
            t.lookup(&Method::PUT, "/users/7"),
            Lookup::Found(&"write-user", _)
        ));
        assert!(matches!(
            t.lookup(&Method::HEAD, "/users/7"),
            Lookup::Found(&"get-user", _)
        ));
        match t.lookup(&Method::GET, "/files/a/b.txt") {
            Lookup::Found(_, p) => assert_eq!(p.get("rest"), Some("a/b.txt")),
            _ => panic!("expected a match"),
        }
    }

    #[test]
    fn not_found_and_method_not_allowed() {
        let t = table();
        assert!(matches!(t.lookup(&Method::GET, "/nope"), Lookup::NotFound));
        assert!(matches!(t.lookup(&Method::GET, "/users"), Lookup::NotFound));
        match t.lookup(&Method::DELETE, "/users/7") {
            Lookup::MethodNotAllowed {
                allow,
                pattern,
                on_path,
            } => {
                assert_eq!(allow, "GET, HEAD, POST, PUT");
                assert_eq!(pattern, "/users/{id}");
                assert_eq!(*on_path, "get-user");
            }
            _ => panic!("expected 405"),
        }
    }

    #[test]
    fn duplicates_and_conflicts_are_errors() {
        let mut t = table();
        assert_eq!(
            t.insert("/users/{id}", &[Method::GET], "again")
                .unwrap_err(),
            "duplicate route: GET /users/{id} is already declared; merge the two routes or change the path"
        );
        assert!(
            t.insert("/users/{uid}", &[Method::DELETE], "x")
                .unwrap_err()
                .contains("overlaps")
        );
    }

    #[test]
    fn parameter_names() {
        assert_eq!(param_names("/u/{id}/d/{*rest}"), vec!["id", "rest"]);
        assert_eq!(param_names("/a/{{lit}}/{x}"), vec!["x"]);
        assert!(param_names("/static").is_empty());
    }
}
