//! Redirects from a proxied upstream, as nginx's `proxy_redirect default`: a `Location`,
//! `Content-Location` or `Refresh` URL that points at the upstream's own URL, under the
//! upstream path a route maps, becomes the client's path under the route's prefix. For
//! route `/p/{*rest}` to `http://10.0.0.5:8080` + `/v1/{rest}`,
//! `http://10.0.0.5:8080/v1/login?next=x` becomes `/p/login?next=x`. Relative URLs and
//! other hosts' are the upstream's to mean, and stay as they are.

use crate::config::RedirectPrefixes;
use http::header::{CONTENT_LOCATION, HeaderMap, HeaderName, HeaderValue, LOCATION, REFRESH};

/// How one proxy route's upstream URLs map to its client paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocationRewrite {
    /// The upstream's origin as a URL starts (`http://10.0.0.5:8080`), and without its
    /// port when that is the scheme's default; compared without regard to case.
    origins: Vec<String>,
    /// The path an upstream URL must start with: the base URL's, then the route's
    /// upstream prefix.
    upstream: String,
    /// What takes its place.
    client: String,
}

impl LocationRewrite {
    /// The rewrite for an upstream at `base` (a validated `http(s)://` URL).
    pub fn new(base: &str, prefixes: &RedirectPrefixes) -> Option<Self> {
        let uri: http::Uri = base.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let authority = uri.authority()?;
        let host = authority.host().to_ascii_lowercase();
        let default = if scheme == "https" { 443 } else { 80 };
        let port = authority.port_u16().unwrap_or(default);
        let mut origins = vec![format!("{scheme}://{host}:{port}")];
        if port == default {
            origins.push(format!("{scheme}://{host}"));
        }
        Some(Self {
            origins,
            upstream: format!("{}{}", uri.path().trim_end_matches('/'), prefixes.upstream),
            client: prefixes.client.clone(),
        })
    }

    /// The client's URL for `url`, if `url` is the upstream's own under its prefix.
    pub fn client_url(&self, url: &str) -> Option<String> {
        let bytes = url.as_bytes();
        self.origins.iter().find_map(|origin| {
            let n = origin.len();
            if bytes.len() < n || !bytes[..n].eq_ignore_ascii_case(origin.as_bytes()) {
                return None;
            }
            // The origin matched byte for byte, all ASCII: `n` is a char boundary.
            let tail = &url[n..];
            let after = match tail.as_bytes().first() {
                Some(b'/') => tail.strip_prefix(self.upstream.as_str())?,
                // `http://host?x` is `http://host/?x`.
                None | Some(b'?' | b'#') => tail.strip_prefix(self.upstream.strip_prefix('/')?)?,
                // A longer port or host: another origin.
                Some(_) => return None,
            };
            Some(format!("{}{after}", self.client))
        })
    }

    /// Rewrites the URLs in `headers` that [`client_url`](Self::client_url) maps.
    pub fn rewrite(&self, headers: &mut HeaderMap) {
        for name in [LOCATION, CONTENT_LOCATION] {
            self.rewrite_one(headers, name, |value| self.client_url(value));
        }
        self.rewrite_one(headers, REFRESH, |value| {
            let (start, end) = refresh_url(value)?;
            let url = self.client_url(&value[start..end])?;
            Some(format!("{}{url}{}", &value[..start], &value[end..]))
        });
    }

    fn rewrite_one(
        &self,
        headers: &mut HeaderMap,
        name: HeaderName,
        map: impl Fn(&str) -> Option<String>,
    ) {
        let rewritten = headers
            .get(&name)
            .and_then(|v| v.to_str().ok())
            .and_then(map)
            .and_then(|text| HeaderValue::from_str(&text).ok());
        if let Some(value) = rewritten {
            headers.insert(name, value);
        }
    }
}

/// Where the URL is in a `Refresh` value (`5; url=http://h/x`, `0;URL='/x'`).
fn refresh_url(value: &str) -> Option<(usize, usize)> {
    let after_delay = value.find([';', ','])? + 1;
    let rest = &value[after_delay..];
    let trimmed = rest.trim_start();
    let mut at = after_delay + (rest.len() - trimmed.len());
    if trimmed.len() >= 3 && trimmed[..3].eq_ignore_ascii_case("url") {
        let after_url = trimmed[3..].trim_start();
        let after_eq = after_url.strip_prefix('=')?.trim_start();
        at = value.len() - after_eq.len();
    }
    let url = &value[at..];
    match url.as_bytes().first() {
        Some(&quote @ (b'\'' | b'"')) => {
            let end = url[1..].find(quote as char).map_or(url.len(), |e| e + 1);
            Some((at + 1, at + end))
        }
        Some(_) => Some((at, value.len() - (url.len() - url.trim_end().len()))),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(base: &str, upstream: &str, client: &str) -> LocationRewrite {
        let prefixes = RedirectPrefixes {
            upstream: upstream.into(),
            client: client.into(),
        };
        LocationRewrite::new(base, &prefixes).unwrap()
    }

    #[test]
    fn the_upstreams_own_urls_map_to_the_clients() {
        let r = rewrite("http://10.0.0.5:8080", "/v1/", "/p/");
        for (url, client) in [
            (
                "http://10.0.0.5:8080/v1/login?next=x#f",
                Some("/p/login?next=x#f"),
            ),
            ("HTTP://10.0.0.5:8080/v1/", Some("/p/")),
            ("http://10.0.0.5:8080/v2/x", None),
            ("http://10.0.0.5:80800/v1/x", None),
            ("http://10.0.0.5/v1/x", None),
            ("https://10.0.0.5:8080/v1/x", None),
            ("http://other:8080/v1/x", None),
            ("/v1/x", None),
            ("v1/x", None),
        ] {
            assert_eq!(r.client_url(url).as_deref(), client, "{url}");
        }
    }

    #[test]
    fn default_ports_and_base_paths_count() {
        let r = rewrite("https://API.example.com/base", "/", "/p/");
        assert_eq!(
            r.client_url("https://api.example.com/base/x").as_deref(),
            Some("/p/x")
        );
        assert_eq!(
            r.client_url("https://api.example.com:443/base/x")
                .as_deref(),
            Some("/p/x")
        );
        assert_eq!(r.client_url("https://api.example.com/x"), None);
        let r = rewrite("http://h", "/", "/app/");
        assert_eq!(r.client_url("http://h").as_deref(), Some("/app/"));
        assert_eq!(r.client_url("http://h?x=1").as_deref(), Some("/app/?x=1"));
    }

    #[test]
    fn headers_are_rewritten_in_place() {
        let r = rewrite("http://up:9000", "/", "/p/");
        let mut h = HeaderMap::new();
        h.insert("location", "http://up:9000/a".parse().unwrap());
        h.insert("content-location", "http://elsewhere/a".parse().unwrap());
        h.insert("refresh", "3; URL='http://up:9000/r?x=1' ".parse().unwrap());
        r.rewrite(&mut h);
        assert_eq!(h["location"], "/p/a");
        assert_eq!(h["content-location"], "http://elsewhere/a");
        assert_eq!(h["refresh"], "3; URL='/p/r?x=1' ");
    }

    #[test]
    fn refresh_values_are_read_as_browsers_read_them() {
        for (value, url) in [
            ("5; url=http://h/x", Some("http://h/x")),
            ("0;URL=http://h/x", Some("http://h/x")),
            ("0; url = \"http://h/x\"", Some("http://h/x")),
            ("0, http://h/x", Some("http://h/x")),
            ("5", None),
            ("5;", None),
        ] {
            let found = refresh_url(value).map(|(s, e)| &value[s..e]);
            assert_eq!(found, url, "{value}");
        }
    }
}
