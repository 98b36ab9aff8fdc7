//! The upstream request headers providers set from an identity (`claims_to_headers`),
//! and the rule that keeps them honest: every client copy of any of their names is
//! removed from every request, on every route, before anything reads the request's
//! headers (templates, conditions, `forward_headers`, a proxy's pass-through), so an
//! upstream that trusts `x-user-id` only ever sees the gateway's.
//!
//! The union of the names is made once per snapshot; a config without
//! `claims_to_headers` costs a request one length check.

use super::{Identity, ProviderSpec};
use crate::json_path::Path;
use http::{HeaderMap, HeaderName};
use std::sync::Arc;

/// The names every provider's `claims_to_headers` sets, sorted, without repeats.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimHeaders(Arc<[HeaderName]>);

impl ClaimHeaders {
    /// The union of the providers' header names, and `x-fanout-mirror`, which only the
    /// gateway sets (on mirror copies): a client's own would pass a real request off
    /// as a copy.
    pub fn of<'a>(providers: impl IntoIterator<Item = &'a ProviderSpec>) -> Self {
        Self::of_lists(
            providers
                .into_iter()
                .map(|p| p.claims_to_headers.as_slice()),
        )
        .and(crate::mirror::X_FANOUT_MIRROR.clone())
    }

    /// The union of the names of `claims_to_headers` lists.
    fn of_lists<'a>(lists: impl IntoIterator<Item = &'a [(HeaderName, Path)]>) -> Self {
        let mut names: Vec<HeaderName> = lists
            .into_iter()
            .flat_map(|list| list.iter().map(|(name, _)| name.clone()))
            .collect();
        names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        names.dedup();
        Self(names.into())
    }

    /// These names and `name`, which the gateway sets from something other than an
    /// identity (`x-forwarded-client-cert`, from the connection's certificate).
    pub fn and(self, name: HeaderName) -> Self {
        let mut names = self.0.to_vec();
        names.push(name);
        names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
        names.dedup();
        Self(names.into())
    }

    pub fn names(&self) -> &[HeaderName] {
        &self.0
    }

    /// Removes every client copy of the names: all values of each (names are compared
    /// without case, as `HeaderMap` stores them lower case), and a spelling with `_` for
    /// `-` (`X_User_Id`), which an upstream reading headers CGI-style takes for the
    /// same header even when the route passes underscored names.
    pub fn strip(&self, headers: &mut HeaderMap) {
        if self.0.is_empty() {
            return;
        }
        // One pass over the request's names, compared by length first: a request rarely
        // carries any claim header, and comparing its few names costs less than hashing
        // every claim name to look each up.
        let is_claim = |name: &HeaderName| {
            let name = name.as_str().as_bytes();
            self.0.iter().any(|claim| {
                let claim = claim.as_str().as_bytes();
                claim.len() == name.len()
                    && claim
                        .iter()
                        .zip(name)
                        .all(|(&c, &n)| c == n || (c == b'-' && n == b'_'))
            })
        };
        if !headers.keys().any(is_claim) {
            return;
        }
        let spoofed: Vec<HeaderName> = headers.keys().filter(|n| is_claim(n)).cloned().collect();
        for name in spoofed {
            headers.remove(name);
        }
    }
}

/// Sets `identity`'s `claims_to_headers` values on an upstream call's headers, replacing
/// any of the same name. Called last, after hop-by-hop headers (and any the client's
/// `Connection` named) are removed, so no client header can take them away.
pub fn set_upstream_headers(headers: &mut HeaderMap, identity: Option<&Identity>) {
    if let Some(identity) = identity {
        for (name, value) in &identity.upstream_headers {
            headers.insert(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn list(names: &[&'static str]) -> Vec<(HeaderName, Path)> {
        names
            .iter()
            .map(|n| (HeaderName::from_static(n), Path::parse("sub").unwrap()))
            .collect()
    }

    fn union(lists: &[Vec<(HeaderName, Path)>]) -> ClaimHeaders {
        ClaimHeaders::of_lists(lists.iter().map(Vec::as_slice))
    }

    #[test]
    fn the_union_is_sorted_and_without_repeats() {
        let names = union(&[list(&["x-user-id", "x-tenant"]), list(&["x-user-id"])]);
        assert_eq!(names.names(), ["x-tenant", "x-user-id"]);
        assert!(union(&[list(&[])]).names().is_empty());
    }

    #[test]
    fn every_copy_and_spelling_of_a_claim_header_is_removed() {
        let names = union(&[list(&["x-user-id"])]);
        let mut headers = HeaderMap::new();
        // `X-User-Id` and `x-user-id` are one name to `HeaderMap`: two values of it.
        headers.append("x-user-id", HeaderValue::from_static("admin"));
        headers.append("x-user-id", HeaderValue::from_static("root"));
        headers.append("x_user_id", HeaderValue::from_static("admin"));
        headers.append("x_user-id", HeaderValue::from_static("admin"));
        headers.append("x-user-ids", HeaderValue::from_static("kept"));
        headers.append("x_other", HeaderValue::from_static("kept"));
        names.strip(&mut headers);
        let mut left: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["x-user-ids", "x_other"]);
    }

    #[test]
    fn a_name_set_from_the_connection_is_stripped_too() {
        let names =
            union(&[list(&["x-user-id"])]).and(HeaderName::from_static("x-forwarded-client-cert"));
        assert_eq!(names.names(), ["x-forwarded-client-cert", "x-user-id"]);
        let mut headers = HeaderMap::new();
        headers.append(
            "x-forwarded-client-cert",
            HeaderValue::from_static("Hash=forged"),
        );
        headers.append(
            "x_forwarded_client_cert",
            HeaderValue::from_static("Hash=forged"),
        );
        headers.append("accept", HeaderValue::from_static("*/*"));
        names.strip(&mut headers);
        assert_eq!(headers.len(), 1);
    }

    #[test]
    fn the_mirror_mark_is_stripped_without_any_provider() {
        let names = ClaimHeaders::of([]);
        assert_eq!(names.names(), ["x-fanout-mirror"]);
        let mut headers = HeaderMap::new();
        headers.append("x-fanout-mirror", HeaderValue::from_static("1"));
        headers.append("x_fanout_mirror", HeaderValue::from_static("1"));
        names.strip(&mut headers);
        assert!(headers.is_empty());
    }

    #[test]
    fn no_claim_headers_leave_the_request_as_it_is() {
        let mut headers = HeaderMap::new();
        headers.append("x-user-id", HeaderValue::from_static("admin"));
        ClaimHeaders::default().strip(&mut headers);
        assert_eq!(headers.len(), 1);
    }
}
