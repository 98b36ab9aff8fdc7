//! Validation of an API key provider: `api_keys = { header, keys, keys_file }`.

use super::Problems;
use crate::auth::api_key::ApiKeysSpec;
use crate::config::AuthProviderConfig;

/// Compiles an API key provider; `None` when it has problems (reported).
pub(super) fn api_keys(
    _place: &str,
    _a: &AuthProviderConfig,
    _p: &mut Problems,
) -> Option<ApiKeysSpec> {
    Some(ApiKeysSpec {})
}
