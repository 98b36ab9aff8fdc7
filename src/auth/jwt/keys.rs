//! Key sets: a JSON Web Key Set parsed into the keys a token may be verified with, or
//! an HMAC secret; and which of them fit a token's `alg` and `kid`.
//!
//! A key fits a token when its type serves the token's algorithm family (RSA for
//! RS*/PS*, the matching EC curve for ES256/ES384, Ed25519 for EdDSA, the secret for
//! HS*), its own `alg` (if it says one) is the token's, and its `use` (if any) is
//! `sig`. This is what keeps jsonwebtoken's per-family code paths apart: a key is never
//! handed an algorithm of another family. Keys of a JWKS that serve nothing the gateway
//! verifies (`oct` keys, P-521, encryption keys) are left out, not refused.

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use ring::digest;
use serde_json::Value;

/// The most keys a token without `kid` is tried against.
pub const MAX_KEYS_TRIED: usize = 4;

/// The largest JWKS document read (file or URL).
pub const MAX_JWKS_BYTES: usize = 1024 * 1024;

/// Keys to verify with. Two sets are equal when they came from the same bytes.
#[derive(Clone)]
pub struct KeySet {
    keys: Vec<Key>,
    /// SHA-256 of the document (or the secret) they came from.
    digest: [u8; 32],
}

#[derive(Clone)]
struct Key {
    kid: Option<Box<str>>,
    kind: KeyKind,
    /// The key's own `alg`, when it names one.
    alg: Option<Algorithm>,
    key: DecodingKey,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum KeyKind {
    Rsa,
    P256,
    P384,
    Ed25519,
    Hmac,
}

impl PartialEq for KeySet {
    fn eq(&self, other: &Self) -> bool {
        // Digests, not secrets: comparing them in variable time reveals nothing.
        self.digest == other.digest
    }
}

impl std::fmt::Debug for KeySet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret; a JWKS's key ids are not secret but say little here.
        write!(f, "KeySet({} keys)", self.keys.len())
    }
}

impl KeySet {
    /// The one key of an HMAC `secret`.
    pub fn secret(secret: &[u8]) -> Self {
        Self {
            keys: vec![Key {
                kid: None,
                kind: KeyKind::Hmac,
                alg: None,
                key: DecodingKey::from_secret(secret),
            }],
            digest: sha256(secret),
        }
    }

    /// Parses a JWKS document; the error says why it is not one (never a key's value).
    /// A document without one usable key is refused: nothing could be verified with it.
    pub fn from_jwks(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() > MAX_JWKS_BYTES {
            return Err(format!("the key set is larger than {MAX_JWKS_BYTES} bytes"));
        }
        let doc: Value =
            serde_json::from_slice(bytes).map_err(|e| format!("the key set is not JSON: {e}"))?;
        let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
            return Err("the key set has no \"keys\" array".into());
        };
        let keys: Vec<Key> = entries.iter().filter_map(Key::from_jwk).collect();
        if keys.is_empty() {
            return Err(
                "the key set has no usable signing key (RSA, EC P-256/P-384 or Ed25519)".into(),
            );
        }
        Ok(Self {
            keys,
            digest: sha256(bytes),
        })
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether any key has this `kid`.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.keys.iter().any(|k| k.kid.as_deref() == Some(kid))
    }

    /// The keys a token with `alg` and `kid` may be verified with, at most
    /// [`MAX_KEYS_TRIED`] when the token names no `kid`.
    pub fn fitting<'a>(
        &'a self,
        alg: Algorithm,
        kid: Option<&'a str>,
    ) -> impl Iterator<Item = &'a DecodingKey> + 'a {
        self.keys
            .iter()
            .filter(move |k| k.fits(alg) && (kid.is_none() || k.kid.as_deref() == kid))
            .take(if kid.is_none() {
                MAX_KEYS_TRIED
            } else {
                usize::MAX
            })
            .map(|k| &k.key)
    }
}

impl Key {
    fn from_jwk(entry: &Value) -> Option<Self> {
        // One malformed or unsupported key does not spoil the set.
        let jwk: Jwk = serde_json::from_value(entry.clone()).ok()?;
        if matches!(&jwk.common.public_key_use, Some(u) if *u != PublicKeyUse::Signature) {
            return None;
        }
        let alg = match &jwk.common.key_algorithm {
            None => None,
            Some(named) => Some(named.to_string().parse::<Algorithm>().ok()?),
        };
        let (kind, key) = match &jwk.algorithm {
            AlgorithmParameters::RSA(rsa) => (
                KeyKind::Rsa,
                DecodingKey::from_rsa_components(&rsa.n, &rsa.e).ok()?,
            ),
            AlgorithmParameters::EllipticCurve(ec) => {
                let (kind, len) = match ec.curve {
                    EllipticCurve::P256 => (KeyKind::P256, 32),
                    EllipticCurve::P384 => (KeyKind::P384, 48),
                    _ => return None,
                };
                let key = DecodingKey::from_ec_components(&ec.x, &ec.y).ok()?;
                // 0x04 || x || y: coordinates of the curve's size.
                if b64_len(&ec.x) != len || b64_len(&ec.y) != len {
                    return None;
                }
                (kind, key)
            }
            AlgorithmParameters::OctetKeyPair(okp) if okp.curve == EllipticCurve::Ed25519 => {
                if b64_len(&okp.x) != 32 {
                    return None;
                }
                (
                    KeyKind::Ed25519,
                    DecodingKey::from_ed_components(&okp.x).ok()?,
                )
            }
            // `oct` keys: an HMAC secret is never taken from a key set.
            _ => return None,
        };
        let key = Self {
            kid: jwk.common.key_id.map(String::into_boxed_str),
            kind,
            alg,
            key,
        };
        // A key whose own `alg` its type cannot serve fits no token.
        match key.alg {
            Some(alg) if !key.fits(alg) => None,
            _ => Some(key),
        }
    }

    fn fits(&self, alg: Algorithm) -> bool {
        use Algorithm::*;
        let family = match alg {
            RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => KeyKind::Rsa,
            ES256 => KeyKind::P256,
            ES384 => KeyKind::P384,
            EdDSA => KeyKind::Ed25519,
            HS256 | HS384 | HS512 => KeyKind::Hmac,
        };
        family == self.kind && self.alg.is_none_or(|own| own == alg)
    }
}

/// The decoded length of unpadded base64url text.
fn b64_len(text: &str) -> usize {
    text.len() * 3 / 4
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut out = [0; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const EC: &str = r#"{"kty":"EC","crv":"P-256","kid":"e1","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}"#;

    #[test]
    fn keys_fit_their_family_kid_alg_and_use() {
        let doc = format!(
            r#"{{"keys":[{EC},
            {{"kty":"EC","crv":"P-256","kid":"enc","use":"enc","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}},
            {{"kty":"oct","k":"c2VjcmV0","kid":"h"}},
            {{"kty":"OKP","crv":"Ed25519","kid":"ed","alg":"EdDSA","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}},
            {{"kty":"weird"}}]}}"#
        );
        let set = KeySet::from_jwks(doc.as_bytes()).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.fitting(Algorithm::ES256, Some("e1")).count(), 1);
        assert_eq!(set.fitting(Algorithm::ES384, Some("e1")).count(), 0);
        assert_eq!(set.fitting(Algorithm::RS256, Some("e1")).count(), 0);
        assert_eq!(set.fitting(Algorithm::HS256, None).count(), 0);
        assert_eq!(set.fitting(Algorithm::ES256, Some("enc")).count(), 0);
        assert_eq!(set.fitting(Algorithm::EdDSA, None).count(), 1);
        assert!(set.has_kid("ed") && !set.has_kid("h"));
    }

    #[test]
    fn documents_without_usable_keys_are_refused() {
        for doc in [
            "",
            "[]",
            "{}",
            r#"{"keys":{}}"#,
            r#"{"keys":[]}"#,
            r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#,
        ] {
            assert!(KeySet::from_jwks(doc.as_bytes()).is_err(), "{doc}");
        }
    }

    #[test]
    fn sets_are_equal_by_content() {
        let doc = format!(r#"{{"keys":[{EC}]}}"#);
        let a = KeySet::from_jwks(doc.as_bytes()).unwrap();
        let b = KeySet::from_jwks(doc.as_bytes()).unwrap();
        let c = KeySet::from_jwks(format!("{doc} ").as_bytes()).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(KeySet::secret(b"one"), KeySet::secret(b"two"));
    }
}
