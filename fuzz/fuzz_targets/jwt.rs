//! JWT providers: token extraction (`Authorization: Bearer`, a cookie, a query
//! parameter) and verification against a fixed key set (an ES256 key, an RSA key and an
//! Ed25519-sized key under their own kids) or a fixed HMAC secret, on hostile bytes.
//!
//! Input: the first byte picks the provider (bit 2: key set or secret) and where the
//! token is read (bits 0-1: bearer, cookie, query, bearer again); the rest is the whole
//! `Authorization` or `Cookie` header value, or the whole query string.
//!
//! Properties:
//! 1. Nothing panics, on any bytes (jsonwebtoken 9 has `unreachable!`s for a key
//!    handed an algorithm of another family: the provider must never reach them).
//! 2. Nothing is accepted that the fixed key did not sign: an accepted token's
//!    signature is checked again here, with ring directly, over its first two parts.
//! 3. An accepted identity has a non-empty subject.
#![no_main]

use fanout::auth::jwt::keys::KeySet;
use fanout::auth::jwt::{JwtSpec, KEY_SET_ALGORITHMS, KeySource, SECRET_ALGORITHMS, TokenFrom};
use fanout::auth::{Provider, ProviderSpec, ProviderSpecKind};
use http::{HeaderMap, HeaderValue, Uri};
use libfuzzer_sys::fuzz_target;
use ring::{hmac, signature};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

const SECRET: &[u8] = b"fanout-fuzz-hmac-secret-of-32-bytes!";
const EC_X: &str = "LdAKYTTlISi-Wvla7Rg8XKiCwxLWBdrjt65cnbJfDKI";
const EC_Y: &str = "_u_nGoVZcEnlFnp-yNGFFyL3tquVOPccCxuCwu44te0";
const RSA_N: &str = "pkVV0Rkbvl9K-miuX_dDaOMKoBlejOd7MZuuUXUC2YAIKmvwS7ZhFvFiqKfGfWlcorwN-H8WCqxDq2WAhVHi6q4clgFjopasAmFMWVWoCWnm62vaRKZY8p9S3BSf-2dexg7CDQSjp1WOsF46b4ZB0ML05nVjV0wdTYg1gSu0bOV9FDfqjMdYaS3_Gy2b8EywBLKVDu3gM6g2v4KhErAnwUgaCr2o2DSC5hdP0jOhRgE6SnFwOKY--muOM_LBt0Erup777pBwcF4ykqXJEHOKTVgQmx3pumU5MHgjqWdcV7r-jMqs-zHZ-zvcDdFVSmc3_UC8hKd5hQz3uIyNSf4THQ";

struct Fixture {
    runtime: tokio::runtime::Runtime,
    /// [key set, secret] x [bearer, cookie, query].
    providers: Vec<Provider>,
    ec_public: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let jwks = format!(
            r#"{{"keys":[
            {{"kty":"EC","crv":"P-256","kid":"fz-ec","x":"{EC_X}","y":"{EC_Y}"}},
            {{"kty":"RSA","kid":"fz-rsa","n":"{RSA_N}","e":"AQAB"}},
            {{"kty":"OKP","crv":"Ed25519","kid":"fz-ed","x":"{EC_X}"}},
            {{"kty":"oct","kid":"fz-oct","k":"c2VjcmV0"}}]}}"#
        );
        let key_set = Arc::new(KeySet::from_jwks(jwks.as_bytes()).expect("the fixed JWKS parses"));
        let mut providers = Vec::new();
        for (keys, algorithms) in [
            (
                KeySource::File {
                    path: "fuzz.json".into(),
                    keys: key_set,
                },
                KEY_SET_ALGORITHMS,
            ),
            (KeySource::Secret(Arc::new(KeySet::secret(SECRET))), SECRET_ALGORITHMS),
        ] {
            for from in ["bearer", "cookie:session", "query:access_token"] {
                let spec = JwtSpec {
                    keys: keys.clone(),
                    issuer: Some("https://fz".into()),
                    audiences: vec!["fz".into()],
                    algorithms: algorithms.to_vec(),
                    leeway: Duration::from_secs(30),
                    token_from: TokenFrom::parse(from).unwrap(),
                };
                let spec = ProviderSpec {
                    claims_to_headers: Vec::new(),
                    kind: ProviderSpecKind::Jwt(spec),
                };
                providers.push(Provider::build("fz", spec));
            }
        }
        let mut ec_public = vec![4];
        ec_public.extend(b64u_decode(EC_X).unwrap());
        ec_public.extend(b64u_decode(EC_Y).unwrap());
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        Fixture {
            runtime,
            providers,
            ec_public,
        }
    })
}

/// Lenient base64url (padding and trailing bits ignored): what any strict decoder
/// accepts decodes to the same bytes here.
fn b64u_decode(text: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Whether the fixed key signed `token`, checked with ring alone.
fn signed_by_fixed_key(token: &str, secret: bool, ec_public: &[u8]) -> bool {
    let Some((message, sig)) = token.rsplit_once('.') else {
        return false;
    };
    let Some(sig) = b64u_decode(sig) else {
        return false;
    };
    if secret {
        [hmac::HMAC_SHA256, hmac::HMAC_SHA384, hmac::HMAC_SHA512]
            .into_iter()
            .any(|alg| hmac::verify(&hmac::Key::new(alg, SECRET), message.as_bytes(), &sig).is_ok())
    } else {
        // Only the EC key has a private half anyone holds (the seeds were signed with it).
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, ec_public)
            .verify(message.as_bytes(), &sig)
            .is_ok()
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let secret = selector & 4 != 0;
    let place = usize::from(selector & 3) % 3;
    let fixture = fixture();
    let provider = &fixture.providers[usize::from(secret) * 3 + place];
    let mut headers = HeaderMap::new();
    let mut uri = Uri::from_static("/");
    match place {
        0 | 1 => {
            let Ok(value) = HeaderValue::from_bytes(rest) else {
                return;
            };
            headers.insert(if place == 0 { "authorization" } else { "cookie" }, value);
        }
        _ => {
            let Ok(text) = std::str::from_utf8(rest) else {
                return;
            };
            let Ok(parsed) = format!("/p?{text}").parse::<Uri>() else {
                return;
            };
            uri = parsed;
        }
    }
    let outcome = fixture.runtime.block_on(provider.authenticate(&headers, &uri));
    if let Ok(identity) = outcome {
        assert!(!identity.subject.is_empty());
        let from = ["bearer", "cookie:session", "query:access_token"][place];
        let token = TokenFrom::parse(from)
            .unwrap()
            .extract(&headers, &uri)
            .expect("an accepted request has a token");
        assert!(
            signed_by_fixed_key(&token, secret, &fixture.ec_public),
            "accepted a token the fixed key did not sign: {token}"
        );
    }
});
