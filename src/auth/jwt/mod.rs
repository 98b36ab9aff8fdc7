//! JWT providers: where the token is read ([`token`]), the keys it is verified with
//! ([`keys`]: a JWKS from a file or fetched from `jwks_url` by [`jwks`], or an HMAC
//! secret), the claims checked (`exp` always, `nbf`, `iss`, `aud`, with the leeway),
//! and the verified-claims cache ([`verified`]).
//!
//! Verifying a token: its header names `alg` (one of the provider's `algorithms`, never
//! `none`) and maybe `kid`; the keys that fit both are tried (a `kid` the fetched set
//! lacks refetches it, rate-limited); the first whose signature holds gives the claims.
//! A token seen before is answered from the cache by its hash, without a signature
//! check, until its `exp` or until the key set changes.

pub mod jwks;
pub mod keys;
pub mod token;
pub mod verified;

use super::{AuthError, Identity};
use crate::json_path::Path;
use crate::metrics::JwksMetrics;
use http::{HeaderMap, HeaderName, Uri};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, Validation};
use jwks::{Jwks, StopOnDrop};
use keys::KeySet;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use verified::Verified;

pub use token::TokenFrom;

/// The algorithms accepted with a key set when `algorithms` is not set.
pub const KEY_SET_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// The algorithms accepted with a `secret` when `algorithms` is not set.
pub const SECRET_ALGORITHMS: &[Algorithm] = &[Algorithm::HS256, Algorithm::HS384, Algorithm::HS512];

/// A compiled JWT provider. Equal specs mean the same key source and the same checks,
/// so a reload carries the running provider (its fetched set, its cache) over.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtSpec {
    /// Where the keys come from.
    pub keys: KeySource,
    /// The `iss` every token must carry.
    pub issuer: Option<String>,
    /// A token's `aud` must name one of these; empty: `aud` is not checked.
    pub audiences: Vec<String>,
    /// The `alg`s accepted, all of the key source's kind (HMAC only with a secret).
    pub algorithms: Vec<Algorithm>,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Where the token is read.
    pub token_from: TokenFrom,
}

/// Where a JWT provider's keys come from.
#[derive(Debug, Clone, PartialEq)]
pub enum KeySource {
    /// `jwks_url`: fetched at start, then every `refresh` (or the answer's `max-age`).
    Url { url: String, refresh: Duration },
    /// `jwks_file`: read when the config is; a changed file is a changed spec.
    File { path: String, keys: Arc<KeySet> },
    /// `secret`: the one HMAC key.
    Secret(Arc<KeySet>),
}

/// A running JWT provider.
#[derive(Debug)]
pub struct JwtProvider {
    name: Arc<str>,
    claims_to_headers: Vec<(HeaderName, Path)>,
    token_from: TokenFrom,
    keys: Keys,
    /// One validation per accepted algorithm, made once.
    validations: Vec<(Algorithm, Validation)>,
    leeway: u64,
    verified: Verified,
}

#[derive(Debug)]
enum Keys {
    /// A file's or a secret's keys, which never change while the provider runs.
    Fixed { set: Arc<KeySet>, by_kid: bool },
    /// A fetched set; the fetch task ends when this is dropped.
    Fetched(Arc<Jwks>, #[allow(dead_code)] StopOnDrop),
}

impl JwtProvider {
    /// Builds the provider; with `jwks_url` its fetch task starts (within the runtime).
    pub fn new(
        name: &Arc<str>,
        claims_to_headers: &[(HeaderName, Path)],
        spec: &JwtSpec,
        metrics: &JwksMetrics,
    ) -> Self {
        let keys = match &spec.keys {
            KeySource::Url { url, refresh } => {
                let (jwks, stop) =
                    Jwks::start(name.clone(), url.clone(), *refresh, metrics.clone());
                Keys::Fetched(jwks, stop)
            }
            KeySource::File { keys, .. } => {
                metrics.keys(name, keys.len());
                Keys::Fixed {
                    set: keys.clone(),
                    by_kid: true,
                }
            }
            KeySource::Secret(keys) => Keys::Fixed {
                set: keys.clone(),
                by_kid: false,
            },
        };
        let leeway = spec.leeway.as_secs();
        let validations = spec
            .algorithms
            .iter()
            .map(|&alg| {
                let mut v = Validation::new(alg);
                v.leeway = leeway;
                v.validate_nbf = true;
                let mut required = vec!["exp"];
                if let Some(issuer) = &spec.issuer {
                    v.set_issuer(&[issuer]);
                    required.push("iss");
                }
                if spec.audiences.is_empty() {
                    v.validate_aud = false;
                } else {
                    v.set_audience(&spec.audiences);
                    required.push("aud");
                }
                v.set_required_spec_claims(&required);
                (alg, v)
            })
            .collect();
        Self {
            name: name.clone(),
            claims_to_headers: claims_to_headers.to_vec(),
            token_from: spec.token_from.clone(),
            keys,
            validations,
            leeway,
            verified: Verified::default(),
        }
    }

    /// Waits for the first fetch of a `jwks_url` to be attempted; at once otherwise.
    pub async fn ready(&self) {
        if let Keys::Fetched(jwks, _) = &self.keys {
            jwks.first_attempt().await;
        }
    }

    /// Fetches of the key set attempted so far (0 without `jwks_url`).
    pub fn fetches(&self) -> u64 {
        match &self.keys {
            Keys::Fetched(jwks, _) => jwks.fetches(),
            Keys::Fixed { .. } => 0,
        }
    }

    /// The delay before the next scheduled fetch, as the last fetch set it.
    pub fn next_refresh(&self) -> Option<Duration> {
        match &self.keys {
            Keys::Fetched(jwks, _) => Some(jwks.next_refresh()),
            Keys::Fixed { .. } => None,
        }
    }

    /// Verifies the request's token: its identity, or why it has none.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<Arc<Identity>, AuthError> {
        let token = self.token_from.extract(headers, uri)?;
        let hash = Verified::hash(&token);
        // The generation is read before the set: a token verified with a set is never
        // remembered under a newer set's generation (the fetch stores the set, then
        // bumps the generation).
        let mut generation = match &self.keys {
            Keys::Fixed { .. } => 0,
            Keys::Fetched(jwks, _) => jwks.generation(),
        };
        if let Some(identity) = self.verified.get(&hash, generation).await {
            return Ok(identity);
        }
        let (mut set, by_kid) = match &self.keys {
            Keys::Fixed { set, by_kid } => (Some(set.clone()), *by_kid),
            Keys::Fetched(jwks, _) => (jwks.keys(), true),
        };
        let header =
            jsonwebtoken::decode_header(&token).map_err(|_| invalid("the token is malformed"))?;
        let Some((alg, validation)) = self.validations.iter().find(|(alg, _)| *alg == header.alg)
        else {
            return Err(invalid("the token's algorithm is not accepted"));
        };
        let kid = if by_kid { header.kid.as_deref() } else { None };
        // Without any set yet: a request waits (bounded) for the first fetch under way;
        // after that, the fetch task's retries are what can help, and the request is
        // answered at once rather than queued behind an issuer that is down.
        if set.is_none()
            && let Keys::Fetched(jwks, _) = &self.keys
        {
            let _ = tokio::time::timeout(jwks::WAIT_FOR_FETCH, jwks.first_attempt()).await;
            generation = jwks.generation();
            set = jwks.keys();
        }
        let Some(had) = &set else {
            return Err(AuthError::Unavailable);
        };
        if let (Keys::Fetched(jwks, _), Some(kid)) = (&self.keys, kid)
            && !had.has_kid(kid)
        {
            jwks.refetch_for_unknown_kid().await;
            generation = jwks.generation();
            if let Some(fetched) = jwks.keys() {
                set = Some(fetched);
            }
        }
        let Some(set) = set else {
            return Err(AuthError::Unavailable);
        };
        let mut outcome = Err(invalid("no key of the issuer fits the token's kid and alg"));
        for key in set.fitting(*alg, kid) {
            match jsonwebtoken::decode::<Map<String, Value>>(&token, key, validation) {
                Ok(data) => {
                    outcome = Ok(data.claims);
                    break;
                }
                Err(e) if *e.kind() == ErrorKind::InvalidSignature => {
                    outcome = Err(invalid("the token's signature is not valid"));
                }
                Err(e) => {
                    outcome = Err(refusal(e.kind()));
                    break;
                }
            }
        }
        let claims = outcome?;
        let exp = claims.get("exp").and_then(|exp| {
            exp.as_u64()
                .or_else(|| exp.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        });
        let identity = Arc::new(Identity::new(
            self.name.clone(),
            &self.claims_to_headers,
            claims,
        )?);
        if let Some(exp) = exp {
            let until = exp.saturating_add(self.leeway);
            self.verified
                .insert(hash, identity.clone(), until, generation)
                .await;
        }
        Ok(identity)
    }
}

fn invalid(why: &'static str) -> AuthError {
    AuthError::Invalid(Cow::Borrowed(why))
}

/// What the client is told about a token whose signature held but whose claims did not.
fn refusal(kind: &ErrorKind) -> AuthError {
    match kind {
        ErrorKind::ExpiredSignature => invalid("the token has expired"),
        ErrorKind::ImmatureSignature => invalid("the token is not valid yet (nbf)"),
        ErrorKind::InvalidIssuer => invalid("the token's issuer (iss) is not accepted"),
        ErrorKind::InvalidAudience => invalid("the token's audience (aud) is not accepted"),
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => invalid("the token has no expiry (exp)"),
            "iss" => invalid("the token has no issuer (iss)"),
            "aud" => invalid("the token has no audience (aud)"),
            _ => invalid("the token lacks a required claim"),
        },
        ErrorKind::InvalidAlgorithm => invalid("the token's algorithm is not accepted"),
        _ => invalid("the token is malformed"),
    }
}
