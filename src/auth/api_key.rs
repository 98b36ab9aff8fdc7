//! API key providers: a request presents a key in a header; the key's name is who it is.
//!
//! Only SHA-256 digests of the keys are held: a key written in the config is digested
//! when it is compiled, and a `keys_file` may hold the digests alone (`NAME sha256:HEX`),
//! so the gateway never needs the keys themselves. A presented key is digested and
//! compared with **every** key's digest, in constant time, with no early exit: how long
//! the check takes says nothing about which key matched, or how much of one did.
//!
//! Each key's [`Identity`] (claims `{"sub": NAME}` and the provider's
//! `claims_to_headers`) is made once, when the provider is built: a request that
//! presents a known key shares it.

use super::{AuthError, Identity};
use crate::json_path::Path;
use http::{HeaderMap, HeaderName};
use ring::digest::{SHA256, digest};
use serde_json::{Map, Value};
use std::sync::Arc;

/// The length of a SHA-256 digest.
pub const DIGEST_LEN: usize = 32;

/// A key's SHA-256 digest.
pub type KeyDigest = [u8; DIGEST_LEN];

/// The digest of a key as presented.
pub fn key_digest(key: &[u8]) -> KeyDigest {
    let mut out = [0; DIGEST_LEN];
    out.copy_from_slice(digest(&SHA256, key).as_ref());
    out
}

/// A compiled API key provider: the header it reads and each key's name and digest, the
/// keys of `keys` and of `keys_file` together (the file's as read when the config was
/// loaded, so a reload that re-reads a changed file builds a new provider).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeysSpec {
    /// The request header carrying the key.
    pub header: HeaderName,
    /// Each key's name (the identity's subject) and digest, in a stable order.
    pub keys: Vec<(Arc<str>, KeyDigest)>,
}

/// A running API key provider.
#[derive(Debug)]
pub struct ApiKeys {
    header: HeaderName,
    /// Each key's digest and the identity it proves.
    keys: Vec<(KeyDigest, Arc<Identity>)>,
}

impl ApiKeys {
    /// The provider `name`; each key's identity carries `claims_to_headers`.
    pub fn new(
        name: &Arc<str>,
        spec: &ApiKeysSpec,
        claims_to_headers: &[(HeaderName, Path)],
    ) -> Self {
        let keys = spec
            .keys
            .iter()
            .filter_map(|(key_name, digest)| {
                let mut claims = Map::new();
                claims.insert("sub".into(), Value::String(key_name.to_string()));
                // Names are checked non-empty, so this cannot fail; a key whose
                // identity could not be made would accept nothing.
                let identity = Identity::new(name.clone(), claims_to_headers, claims).ok()?;
                Some((*digest, Arc::new(identity)))
            })
            .collect();
        Self {
            header: spec.header.clone(),
            keys,
        }
    }

    /// The identity of the key the request presents: `Missing` without the header,
    /// `Invalid` for a key that is not one of this provider's.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<Identity>, AuthError> {
        let Some(presented) = headers.get(&self.header) else {
            return Err(AuthError::Missing);
        };
        let presented = key_digest(presented.as_bytes());
        match find(&presented, self.keys.iter().map(|(d, _)| d)) {
            Some(i) => Ok(self.keys[i].1.clone()),
            None => Err(AuthError::Invalid("the API key is not valid".into())),
        }
    }
}

/// The index of the digest equal to `presented`, comparing it with every digest in
/// constant time: each comparison reads all 32 bytes, the result is accumulated with
/// arithmetic rather than branches, and no match ends the loop early.
fn find<'a>(presented: &KeyDigest, digests: impl Iterator<Item = &'a KeyDigest>) -> Option<usize> {
    let mut found: usize = 0;
    for (i, candidate) in digests.enumerate() {
        let mut diff: u8 = 0;
        for (a, b) in presented.iter().zip(candidate) {
            diff |= a ^ b;
        }
        // 1 when `diff` is 0, else 0, without a branch the optimizer could add back.
        let equal = ((u32::from(std::hint::black_box(diff))).wrapping_sub(1) >> 8) as usize & 1;
        found |= (i + 1) * equal;
    }
    found.checked_sub(1)
}

/// Parses a key written as its digest, `sha256:` and 64 hex digits: `Some(Ok(digest))`,
/// `Some(Err(why))` when it starts with `sha256:` but is not a digest, `None` when the
/// key is written as itself.
pub fn parse_hashed(text: &str) -> Option<Result<KeyDigest, &'static str>> {
    let hex = text.strip_prefix("sha256:")?;
    if hex.len() != DIGEST_LEN * 2 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(Err(
            "a hashed key is sha256: followed by 64 hex digits (the SHA-256 of the key, \
             as `printf %s KEY | sha256sum` prints it)",
        ));
    }
    let mut out = [0; DIGEST_LEN];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex");
    }
    Some(Ok(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn provider(keys: &[(&str, &str)]) -> ApiKeys {
        let spec = ApiKeysSpec {
            header: HeaderName::from_static("x-api-key"),
            keys: keys
                .iter()
                .map(|(n, k)| (Arc::from(*n), key_digest(k.as_bytes())))
                .collect(),
        };
        ApiKeys::new(&Arc::from("keys"), &spec, &[])
    }

    fn with_key(key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", HeaderValue::from_str(key).unwrap());
        h
    }

    #[test]
    fn a_known_key_is_its_names_identity() {
        let p = provider(&[
            ("mobile", "0123456789abcdef-mobile"),
            ("web", "0123456789abcdef-web"),
        ]);
        let id = p.authenticate(&with_key("0123456789abcdef-web")).unwrap();
        assert_eq!(&*id.subject, "web");
        assert_eq!(&*id.provider, "keys");
        assert_eq!(id.claims, serde_json::json!({"sub": "web"}));
        let id = p
            .authenticate(&with_key("0123456789abcdef-mobile"))
            .unwrap();
        assert_eq!(&*id.subject, "mobile");
    }

    #[test]
    fn no_header_is_missing_and_an_unknown_key_is_invalid() {
        let p = provider(&[("mobile", "0123456789abcdef-mobile")]);
        assert_eq!(p.authenticate(&HeaderMap::new()), Err(AuthError::Missing));
        let e = p
            .authenticate(&with_key("0123456789abcdef-mobilE"))
            .unwrap_err();
        assert!(matches!(e, AuthError::Invalid(_)));
        assert!(!e.to_string().contains("0123456789abcdef"));
        assert!(matches!(
            p.authenticate(&with_key("")),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn find_reports_the_matching_index_among_many() {
        let digests: Vec<KeyDigest> = (0..5).map(|i| key_digest(&[i])).collect();
        for i in 0..5u8 {
            assert_eq!(find(&key_digest(&[i]), digests.iter()), Some(i as usize));
        }
        assert_eq!(find(&key_digest(&[9]), digests.iter()), None);
        assert_eq!(find(&key_digest(&[0]), [].iter()), None);
        // Digests differing in one bit only, in any byte.
        for byte in 0..DIGEST_LEN {
            let mut other = digests[0];
            other[byte] ^= 0x80;
            assert_eq!(find(&other, digests.iter()), None);
        }
    }

    #[test]
    fn hashed_keys_parse_from_hex() {
        let d = key_digest(b"secret-key-0123456789");
        let hex: String = d.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(parse_hashed(&format!("sha256:{hex}")), Some(Ok(d)));
        assert_eq!(
            parse_hashed(&format!("sha256:{}", hex.to_uppercase())),
            Some(Ok(d))
        );
        assert!(matches!(parse_hashed("sha256:abc"), Some(Err(_))));
        assert_eq!(parse_hashed("plain-key"), None);
    }
}
