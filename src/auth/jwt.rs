//! JWT providers: the key set, verification, and the verified-claims cache.

use super::{AuthError, Identity};
use http::{HeaderMap, Uri};
use std::sync::Arc;

/// A compiled JWT provider.
#[derive(Debug, Clone, PartialEq)]
pub struct JwtSpec {}

/// A running JWT provider.
#[derive(Debug)]
pub struct JwtProvider {}

impl JwtProvider {
    pub fn new(_name: &Arc<str>, _spec: &JwtSpec) -> Self {
        Self {}
    }

    pub async fn authenticate(
        &self,
        _headers: &HeaderMap,
        _uri: &Uri,
    ) -> Result<Arc<Identity>, AuthError> {
        Err(AuthError::Unavailable)
    }
}
