//! API key providers: keys compared in constant time; a key's name is its identity.

use super::{AuthError, Identity};
use http::HeaderMap;
use std::sync::Arc;

/// A compiled API key provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeysSpec {}

/// A running API key provider.
#[derive(Debug)]
pub struct ApiKeys {}

impl ApiKeys {
    pub fn new(_name: &Arc<str>, _spec: &ApiKeysSpec) -> Self {
        Self {}
    }

    pub fn authenticate(&self, _headers: &HeaderMap) -> Result<Arc<Identity>, AuthError> {
        Err(AuthError::Missing)
    }
}
