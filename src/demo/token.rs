//! ES256 JSON Web Tokens for the demo and the benchmark: a P-256 key made at start, the
//! JSON Web Key Set that publishes it, and tokens signed with it.
//!
//! A JWS signature of ES256 is the two 32-byte integers `r || s` (RFC 7518 §3.4), which is
//! what ring's `ECDSA_P256_SHA256_FIXED_SIGNING` produces, so a token is three base64url
//! parts joined by dots: the header, the claims, and that signature over the first two.
//! The key's `kid` is its RFC 7638 thumbprint, so a new key at every start never shares a
//! `kid` with the one before.

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Where the demo's `users` sample serves the signer's key set.
pub const JWKS_PATH: &str = "/.well-known/jwks.json";

/// How long a demo token is valid.
pub const DEMO_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 60 * 60);

/// The subject of the demo's token.
pub const DEMO_SUBJECT: &str = "demo-user";

/// The scope of the demo's token: what the sample config's `require` asks for.
pub const DEMO_SCOPE: &str = "dashboard:read";

/// An ES256 (ECDSA P-256, SHA-256) signing key and its key id.
pub struct Signer {
    key: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private key.
        f.debug_struct("Signer").field("kid", &self.kid).finish()
    }
}

impl Signer {
    /// A new random key.
    pub fn generate() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("the system's random source works");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("ring reads the PKCS#8 document it just made");
        let (x, y) = coordinates(key.public_key().as_ref());
        // RFC 7638: SHA-256 of the required members, in lexicographic order, no spaces.
        let thumbprint_input = format!(
            r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
            base64url(x),
            base64url(y)
        );
        let kid = base64url(
            ring::digest::digest(&ring::digest::SHA256, thumbprint_input.as_bytes()).as_ref(),
        );
        Self { key, kid, rng }
    }

    /// The process's demo key: made on first use, then the same for the process's life.
    /// The `users` sample serves it and the demo's curl lines carry a token it signed.
    pub fn demo() -> &'static Signer {
        static DEMO: OnceLock<Signer> = OnceLock::new();
        DEMO.get_or_init(Signer::generate)
    }

    /// The key's id (`kid`): its RFC 7638 thumbprint.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK: `kty EC`, `crv P-256`, `x`, `y`, `kid`, `alg ES256`,
    /// `use sig`.
    pub fn jwk(&self) -> Value {
        let (x, y) = coordinates(self.key.public_key().as_ref());
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": base64url(x),
            "y": base64url(y),
            "kid": self.kid,
            "alg": "ES256",
            "use": "sig",
        })
    }

    /// The JSON Web Key Set publishing this key: `{"keys": [JWK]}`.
    pub fn jwks(&self) -> String {
        json!({ "keys": [self.jwk()] }).to_string()
    }

    /// The SEC1 uncompressed public key (`0x04 || x || y`), for verifying with ring.
    pub fn public_key(&self) -> &[u8] {
        self.key.public_key().as_ref()
    }

    /// A compact JWS of `claims` signed with this key, its header `{"alg":"ES256",
    /// "typ":"JWT","kid":KID}`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
        self.sign_with_header(&header, claims)
    }

    /// A compact JWS of `claims` under any `header` (which should say `alg ES256`):
    /// what tests use to send a header the gateway must refuse, signed correctly.
    pub fn sign_with_header(&self, header: &Value, claims: &Value) -> String {
        self.sign_raw(&header.to_string(), &claims.to_string())
    }

    /// A compact JWS of `header` and `payload` exactly as written, JSON or not: what
    /// tests use to send text a JSON value cannot hold (nesting past a parser's limit).
    pub fn sign_raw(&self, header: &str, payload: &str) -> String {
        let mut token = base64url(header.as_bytes());
        token.push('.');
        token.push_str(&base64url(payload.as_bytes()));
        let signature = self
            .key
            .sign(&self.rng, token.as_bytes())
            .expect("signing with a valid P-256 key does not fail");
        token.push('.');
        token.push_str(&base64url(signature.as_ref()));
        token
    }
}

/// The x and y coordinates of a SEC1 uncompressed P-256 point.
fn coordinates(point: &[u8]) -> (&[u8], &[u8]) {
    debug_assert_eq!(point.len(), 65, "0x04 || x || y");
    (&point[1..33], &point[33..65])
}

/// The demo token's claims: subject [`DEMO_SUBJECT`], scope [`DEMO_SCOPE`], issued
/// `now`, expiring [`DEMO_TOKEN_LIFETIME`] later; `iss` and `aud` when given.
pub fn demo_claims(issuer: Option<&str>, audience: Option<&str>, now: SystemTime) -> Value {
    let iat = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let mut claims = json!({
        "sub": DEMO_SUBJECT,
        "scope": DEMO_SCOPE,
        "iat": iat,
        "exp": iat + DEMO_TOKEN_LIFETIME.as_secs(),
    });
    if let Some(issuer) = issuer {
        claims["iss"] = issuer.into();
    }
    if let Some(audience) = audience {
        claims["aud"] = audience.into();
    }
    claims
}

/// `bytes` in base64url without padding (RFC 4648 §5), as JWS writes every part.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        // 2, 3 or 4 characters for 1, 2 or 3 bytes.
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};

    /// The inverse of [`base64url`], for the tests.
    fn decode(text: &str) -> Vec<u8> {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let values: Vec<u32> = text
            .bytes()
            .map(|c| ALPHABET.iter().position(|&a| a == c).expect("base64url") as u32)
            .collect();
        let mut out = Vec::new();
        for chunk in values.chunks(4) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, v)| n | v << (18 - 6 * i));
            for i in 0..chunk.len() - 1 {
                out.push((n >> (16 - 8 * i)) as u8);
            }
        }
        out
    }

    #[test]
    fn base64url_matches_rfc_4648_vectors_without_padding() {
        for (input, expected) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64url(input.as_bytes()), expected, "{input}");
            assert_eq!(decode(expected), input.as_bytes());
        }
        // The two characters base64url has in place of + and /.
        assert_eq!(base64url(&[0xfb, 0xff]), "-_8");
    }

    #[test]
    fn a_token_verifies_with_the_published_key_and_carries_its_claims() {
        let signer = Signer::generate();
        let claims = demo_claims(
            Some("https://demo.fanout.local"),
            Some("fanout-demo"),
            UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        );
        let token = signer.sign(&claims);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3, "{token}");
        let header: Value = serde_json::from_slice(&decode(parts[0])).unwrap();
        assert_eq!(
            header,
            json!({"alg": "ES256", "typ": "JWT", "kid": signer.kid()})
        );
        let payload: Value = serde_json::from_slice(&decode(parts[1])).unwrap();
        assert_eq!(payload, claims);
        assert_eq!(payload["sub"], DEMO_SUBJECT);
        assert_eq!(payload["scope"], DEMO_SCOPE);
        assert_eq!(payload["iss"], "https://demo.fanout.local");
        assert_eq!(payload["aud"], "fanout-demo");
        assert_eq!(payload["exp"], 1_700_000_000u64 + 86_400);

        // The signature is r || s, verified with the point the JWKS publishes.
        let signature = decode(parts[2]);
        assert_eq!(signature.len(), 64);
        let jwk = signer.jwk();
        let mut point = vec![4u8];
        point.extend(decode(jwk["x"].as_str().unwrap()));
        point.extend(decode(jwk["y"].as_str().unwrap()));
        assert_eq!(point, signer.public_key());
        let key = UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point);
        let signed = format!("{}.{}", parts[0], parts[1]);
        key.verify(signed.as_bytes(), &signature).unwrap();
        // Another message does not verify: the check above can fail.
        assert!(key.verify(b"x.y", &signature).is_err());
    }

    #[test]
    fn the_jwks_names_the_key_by_its_thumbprint_and_keys_differ() {
        let a = Signer::generate();
        let b = Signer::generate();
        assert_ne!(a.kid(), b.kid());
        let jwks: Value = serde_json::from_str(&a.jwks()).unwrap();
        let jwk = &jwks["keys"][0];
        for (field, value) in [
            ("kty", "EC"),
            ("crv", "P-256"),
            ("alg", "ES256"),
            ("use", "sig"),
        ] {
            assert_eq!(jwk[field], value, "{jwks}");
        }
        assert_eq!(jwk["kid"], a.kid());
        assert_eq!(decode(jwk["x"].as_str().unwrap()).len(), 32);
        assert_eq!(decode(jwk["y"].as_str().unwrap()).len(), 32);
        // The thumbprint is SHA-256: 32 bytes, 43 base64url characters.
        assert_eq!(a.kid().len(), 43);
    }

    #[test]
    fn without_issuer_or_audience_the_claims_leave_them_out() {
        let claims = demo_claims(None, None, UNIX_EPOCH + Duration::from_secs(10));
        assert_eq!(
            claims,
            json!({"sub": "demo-user", "scope": "dashboard:read", "iat": 10, "exp": 86_410})
        );
    }
}
