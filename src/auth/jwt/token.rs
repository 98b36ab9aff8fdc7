//! Where a request carries its token (`token_from`): the `Authorization: Bearer` header,
//! a cookie, or a query parameter. Extraction only finds the text; verification is
//! `super`'s.

use super::super::AuthError;
use http::{HeaderMap, Uri, header};
use std::borrow::Cow;

/// The longest token read: larger is refused before any decoding (a JWT from a real
/// issuer is a few hundred bytes to a few KiB).
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// `token_from`: where the token is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenFrom {
    /// `bearer`: `Authorization: Bearer TOKEN` (the scheme case-insensitive, one space).
    Bearer,
    /// `cookie:NAME`.
    Cookie(String),
    /// `query:NAME`, percent-decoded.
    Query(String),
}

impl TokenFrom {
    /// Parses `bearer`, `cookie:NAME` or `query:NAME`; the error says what is accepted.
    pub fn parse(text: &str) -> Result<Self, String> {
        let valid_name = |name: &str| {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.~!#$%&'*+^`|".contains(&b))
        };
        if text == "bearer" {
            return Ok(Self::Bearer);
        }
        if let Some(name) = text.strip_prefix("cookie:")
            && valid_name(name)
        {
            return Ok(Self::Cookie(name.into()));
        }
        if let Some(name) = text.strip_prefix("query:")
            && valid_name(name)
        {
            return Ok(Self::Query(name.into()));
        }
        Err(format!(
            "\"{text}\" is not a place to read a token from; write \"bearer\" (the \
             Authorization header), \"cookie:NAME\" or \"query:NAME\""
        ))
    }

    /// The token the request carries where this reads, `Missing` when it has none
    /// there, `Invalid` when what is there cannot be a token.
    pub fn extract<'a>(
        &self,
        headers: &'a HeaderMap,
        uri: &'a Uri,
    ) -> Result<Cow<'a, str>, AuthError> {
        let token: Cow<'a, str> = match self {
            Self::Bearer => {
                let mut values = headers.get_all(header::AUTHORIZATION).iter();
                let Some(value) = values.next() else {
                    return Err(AuthError::Missing);
                };
                let bytes = value.as_bytes();
                let is_bearer = bytes.len() >= 7 && bytes[..7].eq_ignore_ascii_case(b"bearer ");
                if !is_bearer {
                    // Another scheme (Basic, ...) is not a credential this provider reads.
                    if bytes.eq_ignore_ascii_case(b"bearer") {
                        return Err(malformed());
                    }
                    return Err(AuthError::Missing);
                }
                if values.next().is_some() {
                    return Err(AuthError::Invalid(
                        "the request has more than one Authorization header".into(),
                    ));
                }
                let token = std::str::from_utf8(&bytes[7..]).map_err(|_| malformed())?;
                Cow::Borrowed(token)
            }
            Self::Cookie(name) => {
                let found = headers
                    .get_all(header::COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(';'))
                    .find_map(|pair| {
                        let (n, value) = pair.trim().split_once('=')?;
                        (n == name).then_some(value)
                    });
                let Some(value) = found else {
                    return Err(AuthError::Missing);
                };
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .unwrap_or(value);
                Cow::Borrowed(value)
            }
            Self::Query(name) => {
                let query = uri.query().unwrap_or("");
                let found = query.split('&').find_map(|pair| {
                    let (n, value) = pair.split_once('=').unwrap_or((pair, ""));
                    let n = percent_encoding::percent_decode_str(n).decode_utf8().ok()?;
                    (n == name.as_str()).then_some(value)
                });
                let Some(value) = found else {
                    return Err(AuthError::Missing);
                };
                percent_encoding::percent_decode_str(value)
                    .decode_utf8()
                    .map_err(|_| malformed())?
            }
        };
        if token.is_empty() || token.len() > MAX_TOKEN_LEN || !is_compact_jws(&token) {
            return Err(malformed());
        }
        Ok(token)
    }
}

/// Base64url parts joined by dots: what a compact JWS can hold.
fn is_compact_jws(token: &str) -> bool {
    token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'='))
}

fn malformed() -> AuthError {
    AuthError::Invalid("the token is malformed".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn extract(from: &str, headers: &[(&str, &str)], uri: &str) -> Result<String, AuthError> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        let uri: Uri = uri.parse().unwrap();
        TokenFrom::parse(from)
            .unwrap()
            .extract(&map, &uri)
            .map(|t| t.into_owned())
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_with_one_space() {
        assert_eq!(
            extract("bearer", &[("authorization", "Bearer a.b.c")], "/").unwrap(),
            "a.b.c"
        );
        assert_eq!(
            extract("bearer", &[("authorization", "bEaReR a.b.c")], "/").unwrap(),
            "a.b.c"
        );
        assert!(matches!(
            extract("bearer", &[("authorization", "Bearer  a.b.c")], "/"),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            extract("bearer", &[("authorization", "Bearer ")], "/"),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            extract("bearer", &[("authorization", "Bearer")], "/"),
            Err(AuthError::Invalid(_))
        ));
        assert_eq!(
            extract("bearer", &[("authorization", "Basic eHg6eXk=")], "/"),
            Err(AuthError::Missing)
        );
        assert_eq!(extract("bearer", &[], "/"), Err(AuthError::Missing));
        assert!(matches!(
            extract(
                "bearer",
                &[
                    ("authorization", "Bearer a.b.c"),
                    ("authorization", "Bearer d.e.f")
                ],
                "/"
            ),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn cookie_and_query() {
        let cookie = [("cookie", "theme=dark; session=a.b.c; x=1")];
        assert_eq!(extract("cookie:session", &cookie, "/").unwrap(), "a.b.c");
        assert_eq!(
            extract("cookie:other", &cookie, "/"),
            Err(AuthError::Missing)
        );
        assert_eq!(
            extract("query:access_token", &[], "/p?x=1&access_token=a%2Eb.c").unwrap(),
            "a.b.c"
        );
        assert_eq!(
            extract("query:access_token", &[], "/p?x=1"),
            Err(AuthError::Missing)
        );
        assert!(matches!(
            extract("query:t", &[], "/p?t=a%20b"),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            extract("query:t", &[], "/p?t=%ff"),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn token_from_parses_the_three_places() {
        assert_eq!(TokenFrom::parse("bearer"), Ok(TokenFrom::Bearer));
        assert_eq!(
            TokenFrom::parse("cookie:s"),
            Ok(TokenFrom::Cookie("s".into()))
        );
        assert_eq!(
            TokenFrom::parse("query:t"),
            Ok(TokenFrom::Query("t".into()))
        );
        for bad in ["Bearer", "header:x", "cookie:", "query:a b", ""] {
            assert!(TokenFrom::parse(bad).is_err(), "{bad}");
        }
    }
}
