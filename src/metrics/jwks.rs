//! JWT providers' key set metrics: fetches by result and the usable keys per provider.

use super::Label;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// A JWT provider's JWKS fetches: `fanout_auth_jwks_refresh_total{provider,result}`
/// (`ok`, `error`, `invalid`) and `fanout_auth_jwks_keys{provider}`, the usable keys of
/// the set in use. Shared by every snapshot, so a provider rebuilt on reload keeps its
/// series.
#[derive(Clone, Debug, Default)]
pub struct JwksMetrics {
    pub(super) refreshes: Family<JwksLabels, Counter>,
    pub(super) keys: Family<ProviderLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct JwksLabels {
    provider: Label,
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct ProviderLabels {
    provider: Label,
}

impl JwksMetrics {
    /// Counts one fetch of `provider`'s key set and its `result`.
    pub fn fetched(&self, provider: &str, result: &'static str) {
        let provider = Label::new(provider);
        self.refreshes
            .get_or_create(&JwksLabels { provider, result })
            .inc();
    }

    /// The number of usable keys `provider` verifies with now.
    pub fn keys(&self, provider: &str, count: usize) {
        let labels = ProviderLabels {
            provider: Label::new(provider),
        };
        self.keys
            .get_or_create(&labels)
            .set(i64::try_from(count).unwrap_or(i64::MAX));
    }
}
