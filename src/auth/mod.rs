//! Identity at the edge: the `[auth.NAME]` providers that turn a request's credentials
//! (a JWT verified against its issuer's keys, or an API key) into an [`Identity`], before
//! the rate limit and before any upstream is called.
//!
//! - [`jwt`]: JWTs: the key set (`jwks_url` fetched and refreshed, `jwks_file`, or an
//!   HMAC `secret`), verification, and the verified claims cached by the token's hash.
//! - [`api_key`]: API keys compared in constant time; a key's name is its identity.
//! - [`claim_headers`]: `claims_to_headers` set on upstream calls, and every client copy
//!   of those names removed from every request.
//!
//! A provider is built once per snapshot and carried over a reload that leaves its
//! `[auth.NAME]` as it was, so a fetched key set and its cache survive the reload.
//! What a route does with the identity (`auth`, `auth_optional`, `require`, the
//! `claims_to_headers` it sets upstream) is the gateway's: this module only answers
//! "who is this, and is it proven".

pub mod api_key;
pub mod claim_headers;
pub mod jwt;

use crate::json_path::Path;
use http::{HeaderMap, HeaderName, HeaderValue, Uri};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::sync::Arc;

/// Who a request comes from, as a provider proved it. Made once per credential and
/// shared (`Arc`) by every request that presents it while it is cached.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The `[auth.NAME]` provider that accepted the request.
    pub provider: Arc<str>,
    /// The subject: a JWT's `sub`, or an API key's name.
    pub subject: Arc<str>,
    /// The verified claims, a JSON object: a JWT's payload; `{"sub": NAME}` for an API
    /// key.
    pub claims: Value,
    /// The provider's `claims_to_headers`, their values taken from these claims: the
    /// headers every upstream call of the request carries. A claim that is missing, or
    /// whose value cannot be a header value (a control character), sets no header.
    pub upstream_headers: Vec<(HeaderName, HeaderValue)>,
}

impl Identity {
    /// The identity `claims` prove for `provider`: its subject is the `sub` claim,
    /// which must be a non-empty string.
    pub fn new(
        provider: Arc<str>,
        claims_to_headers: &[(HeaderName, Path)],
        claims: Map<String, Value>,
    ) -> Result<Self, AuthError> {
        let subject: Arc<str> = match claims.get("sub") {
            Some(Value::String(sub)) if !sub.is_empty() => sub.as_str().into(),
            _ => return Err(AuthError::Invalid("the token has no subject (sub)".into())),
        };
        let claims = Value::Object(claims);
        let upstream_headers = claims_to_headers
            .iter()
            .filter_map(|(name, path)| {
                let value = match path.get(&claims)? {
                    Value::String(s) => HeaderValue::from_str(s).ok()?,
                    Value::Null => return None,
                    other => HeaderValue::from_str(&other.to_string()).ok()?,
                };
                Some((name.clone(), value))
            })
            .collect();
        Ok(Self {
            provider,
            subject,
            claims,
            upstream_headers,
        })
    }

    /// The claim at a dotted path (`tenant`, `org.id`).
    pub fn claim(&self, path: &Path) -> Option<&Value> {
        path.get(&self.claims)
    }
}

/// Why a provider did not accept a request.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthError {
    /// The request carries no credentials where this provider reads them.
    #[error("no credentials")]
    Missing,
    /// Credentials were present and refused. The description is safe to show to the
    /// client and to log: it never contains the token or the key.
    #[error("{0}")]
    Invalid(Cow<'static, str>),
    /// The provider cannot verify anything now: its key set has never been had.
    #[error("the identity provider's keys are not available")]
    Unavailable,
}

/// A compiled `[auth.NAME]`: what `validate()` derived, compared on reload to decide
/// whether the running provider carries over.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSpec {
    /// `claims_to_headers`: each upstream request header and the claim (a dotted path
    /// into the claims) it is set from.
    pub claims_to_headers: Vec<(HeaderName, Path)>,
    pub kind: ProviderSpecKind,
}

/// What kind of credentials a provider checks.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderSpecKind {
    Jwt(jwt::JwtSpec),
    ApiKeys(api_key::ApiKeysSpec),
}

/// The query parameters the providers read tokens from (`token_from = "query:NAME"`),
/// whose values the access log must not write; `None` when no provider reads one.
pub fn query_token_names<'a>(
    providers: impl IntoIterator<Item = &'a ProviderSpec>,
) -> Option<Arc<[String]>> {
    let mut names: Vec<String> = providers
        .into_iter()
        .filter_map(|p| match &p.kind {
            ProviderSpecKind::Jwt(jwt) => match &jwt.token_from {
                jwt::token::TokenFrom::Query(name) => Some(name.clone()),
                _ => None,
            },
            ProviderSpecKind::ApiKeys(_) => None,
        })
        .collect();
    names.sort_unstable();
    names.dedup();
    (!names.is_empty()).then(|| names.into())
}

/// A running provider.
#[derive(Debug)]
pub struct Provider {
    /// Its name, `[auth.NAME]`.
    pub name: Arc<str>,
    /// What it was built from.
    pub spec: ProviderSpec,
    kind: ProviderKind,
}

#[derive(Debug)]
enum ProviderKind {
    Jwt(Box<jwt::JwtProvider>),
    ApiKeys(api_key::ApiKeys),
}

impl Provider {
    /// Builds the provider `name` from its spec. A JWT provider with `jwks_url` starts
    /// fetching its key set in the background (call from within the runtime).
    pub fn build(name: &str, spec: ProviderSpec) -> Self {
        Self::build_with(name, spec, &crate::metrics::JwksMetrics::default())
    }

    /// [`Provider::build`], counting its JWKS fetches in `metrics`.
    pub fn build_with(
        name: &str,
        spec: ProviderSpec,
        metrics: &crate::metrics::JwksMetrics,
    ) -> Self {
        let name: Arc<str> = name.into();
        let kind = match &spec.kind {
            ProviderSpecKind::Jwt(jwt) => ProviderKind::Jwt(Box::new(jwt::JwtProvider::new(
                &name,
                &spec.claims_to_headers,
                jwt,
                metrics,
            ))),
            ProviderSpecKind::ApiKeys(keys) => {
                ProviderKind::ApiKeys(api_key::ApiKeys::new(&name, keys, &spec.claims_to_headers))
            }
        };
        Self { name, spec, kind }
    }

    /// Checks the request's credentials: its identity, or why it has none.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
    ) -> Result<Arc<Identity>, AuthError> {
        match &self.kind {
            ProviderKind::Jwt(jwt) => jwt.authenticate(headers, uri).await,
            ProviderKind::ApiKeys(keys) => keys.authenticate(headers),
        }
    }

    /// The JWT provider, when this is one (its fetch state, for startup and tests).
    pub fn jwt(&self) -> Option<&jwt::JwtProvider> {
        match &self.kind {
            ProviderKind::Jwt(jwt) => Some(jwt),
            ProviderKind::ApiKeys(_) => None,
        }
    }

    /// Waits until the provider can answer as well as it will: a `jwks_url` provider's
    /// first fetch attempted. At once for the others.
    pub async fn ready(&self) {
        if let Some(jwt) = self.jwt() {
            jwt.ready().await;
        }
    }
}
