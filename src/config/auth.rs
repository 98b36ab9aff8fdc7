//! `[auth.NAME]` identity providers and the routes' `auth` keys, as written in
//! `gateway.toml`: a JWT issuer (its keys from `jwks_url`, `jwks_file` or an HMAC
//! `secret`) or a set of API keys. `validate()` compiles them into `auth`'s specs.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `[auth.NAME]`: one identity provider. Exactly one of `jwks_url`, `jwks_file`,
/// `secret` (a JWT issuer) or `api_keys` says what kind it is.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthProviderConfig {
    /// JWT: the issuer's JSON Web Key Set, fetched at start and refreshed.
    pub jwks_url: Option<String>,
    /// JWT: a JSON Web Key Set read from this file (re-read on reload).
    pub jwks_file: Option<String>,
    /// JWT: the shared secret of HS256/384/512 tokens, usually `${VAR}`.
    pub secret: Option<String>,
    /// JWT: the `iss` every token must carry; absent: not checked.
    pub issuer: Option<String>,
    /// JWT: a token's `aud` must name one of these; empty: not checked.
    pub audiences: Vec<String>,
    /// JWT: the `alg`s accepted. Absent: RS256/384/512, PS256/384/512, ES256/384 and
    /// EdDSA with a key set, HS256/384/512 with a `secret`. Never `none`.
    pub algorithms: Option<Vec<String>>,
    /// JWT: clock skew allowed on `exp` and `nbf`.
    pub leeway: String,
    /// JWT: where the token is read: `bearer` (the `Authorization: Bearer` header),
    /// `cookie:NAME` or `query:NAME`.
    pub token_from: String,
    /// JWT with `jwks_url`: how often the key set is fetched again (an answer's
    /// `Cache-Control: max-age` overrides it).
    pub refresh: String,
    /// API keys instead of JWTs: `{ header = "x-api-key", keys = { mobile = "${KEY}" } }`.
    pub api_keys: Option<ApiKeysConfig>,
    /// Upstream request headers set from the identity's claims, `{ "x-user-id" = "sub" }`.
    /// A client's own copies of these headers are removed on every route.
    pub claims_to_headers: BTreeMap<String, String>,
}

impl Default for AuthProviderConfig {
    fn default() -> Self {
        Self {
            jwks_url: None,
            jwks_file: None,
            secret: None,
            issuer: None,
            audiences: Vec::new(),
            algorithms: None,
            leeway: "30s".into(),
            token_from: "bearer".into(),
            refresh: "5m".into(),
            api_keys: None,
            claims_to_headers: BTreeMap::new(),
        }
    }
}

/// `api_keys = { header = "x-api-key", keys = { NAME = "KEY" } }`: a key's name is the
/// identity (`sub`) of the client that sends it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeysConfig {
    /// The request header carrying the key.
    pub header: String,
    /// Keys by name: `{ mobile = "${MOBILE_KEY}" }`.
    pub keys: BTreeMap<String, String>,
    /// A file of `NAME KEY` lines, the key as written or hashed (re-read on reload).
    pub keys_file: Option<String>,
}

impl Default for ApiKeysConfig {
    fn default() -> Self {
        Self {
            header: "x-api-key".into(),
            keys: BTreeMap::new(),
            keys_file: None,
        }
    }
}

/// A route's `auth`: one provider's name, or a list tried in order.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(untagged)]
pub enum AuthProviders {
    /// `auth = "users"`.
    One(String),
    /// `auth = ["users", "partners"]`: the first provider that accepts the request wins.
    Many(Vec<String>),
}

impl AuthProviders {
    /// The names, in the order they are tried.
    pub fn names(&self) -> &[String] {
        match self {
            Self::One(name) => std::slice::from_ref(name),
            Self::Many(names) => names,
        }
    }
}
