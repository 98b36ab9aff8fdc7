//! Cache keys: what identifies one stored answer, and a borrowed form to look one up
//! without building it (a hit allocates nothing).

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// Request headers that can change an answer: they are part of every key, so no user
/// ever gets another user's cached answer.
pub const IDENTITY_HEADERS: [HeaderName; 2] = [http::header::AUTHORIZATION, http::header::COOKIE];

/// What identifies one cached answer: method, final upstream URL, and the values of the
/// request headers that can change the answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey(Arc<KeyParts>);

#[derive(Debug, PartialEq, Eq, Hash)]
struct KeyParts {
    method: Method,
    url: String,
    varying: Varying,
}

/// The values (or absence) of the request headers a key varies by, in a fixed order:
/// the identity headers, then the route's. Read once per request, shared by its keys.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Varying(Vec<(HeaderName, Option<HeaderValue>)>);

impl Varying {
    /// Reads the identity headers and `headers` from `request`.
    pub fn read<'a>(
        request: &HeaderMap,
        headers: impl IntoIterator<Item = &'a HeaderName>,
    ) -> Self {
        Self(
            IDENTITY_HEADERS
                .iter()
                .chain(headers)
                .map(|name| (name.clone(), request.get(name).cloned()))
                .collect(),
        )
    }

    fn weight(&self) -> usize {
        self.0
            .iter()
            .map(|(n, v)| n.as_str().len() + v.as_ref().map_or(0, |v| v.len()))
            .sum()
    }
}

impl CacheKey {
    /// The key of a call to `url` whose answer may vary by `headers` (read from `request`).
    pub fn new<'a>(
        method: Method,
        url: &str,
        request: &HeaderMap,
        headers: impl IntoIterator<Item = &'a HeaderName>,
    ) -> Self {
        KeyQuery::new(&method, url, &Varying::read(request, headers)).to_key()
    }

    pub fn url(&self) -> &str {
        &self.0.url
    }

    pub(super) fn weight(&self) -> usize {
        self.0.url.len() + self.0.varying.weight()
    }
}

/// A key to look up, borrowed from the request: equal to, and hashed exactly as, the
/// [`CacheKey`] that [`KeyQuery::to_key`] builds (moka finds entries by `Equivalent`).
#[derive(Debug, Clone, Copy)]
pub struct KeyQuery<'a> {
    method: &'a Method,
    url: &'a str,
    varying: &'a Varying,
}

impl<'a> KeyQuery<'a> {
    pub fn new(method: &'a Method, url: &'a str, varying: &'a Varying) -> Self {
        Self {
            method,
            url,
            varying,
        }
    }

    /// The owned key, to store an answer under.
    pub fn to_key(&self) -> CacheKey {
        CacheKey(Arc::new(KeyParts {
            method: self.method.clone(),
            url: self.url.to_owned(),
            varying: self.varying.clone(),
        }))
    }
}

impl Hash for KeyQuery<'_> {
    /// Field by field as `KeyParts` derives it; a test pins the two equal.
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.method.hash(state);
        self.url.hash(state);
        self.varying.hash(state);
    }
}

impl moka::Equivalent<CacheKey> for KeyQuery<'_> {
    fn equivalent(&self, key: &CacheKey) -> bool {
        *self.method == key.0.method && self.url == key.0.url && *self.varying == key.0.varying
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
    fn weight_counts_url_and_header_bytes() {
        let varying = Varying::read(&request(&[("cookie", "s=1")]), &[]);
        let key = KeyQuery::new(&Method::GET, "http://u/a", &varying).to_key();
        // URL 10, "authorization" 13, "cookie" 6 + "s=1" 3.
        assert_eq!(key.weight(), 10 + 13 + 6 + 3);
    }
}
