//! `jwks_url`: the key set fetched with reqwest at start, refreshed every `refresh` (or
//! the answer's `Cache-Control: max-age`), refetched when a token names a `kid` the set
//! lacks (at most once per [`REFETCH_INTERVAL`]), the last good set kept when a fetch
//! fails or brings something that is not a key set.
//!
//! One task per provider does the scheduled fetches; it ends when the provider is
//! dropped (a reload that removes or changes it). A request that needs an unknown `kid`
//! fetches itself, single-flight: `fetching` is held for the one fetch under way, and the
//! requests that wait for it then find the attempt recent and read the set it left.

use super::keys::{KeySet, MAX_JWKS_BYTES};
use crate::metrics::JwksMetrics;
use arc_swap::ArcSwapOption;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

/// The least time between two fetches a request's unknown `kid` triggers.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(10);
/// A fetch's whole time: connect, answer and body.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a request waits for another request's fetch of an unknown `kid`.
pub const WAIT_FOR_FETCH: Duration = Duration::from_secs(5);
/// The range an answer's `max-age` is held to: an issuer's `max-age=0` must not turn
/// the gateway into a load generator, nor a year keep a revoked key.
pub const MAX_AGE_RANGE: (Duration, Duration) =
    (Duration::from_secs(60), Duration::from_secs(24 * 3600));
/// Retries while the set was never had: 1 s, doubling up to this (and to `refresh`).
pub const MAX_RETRY: Duration = Duration::from_secs(30);

/// A provider's fetched key set and what fetching it needs.
pub struct Jwks {
    provider: Arc<str>,
    url: String,
    refresh: Duration,
    client: Option<reqwest::Client>,
    keys: ArcSwapOption<KeySet>,
    /// Bumped each time the set in use changes: verified tokens of older generations are
    /// not served from the cache.
    generation: AtomicU64,
    /// Held for the fetch under way.
    fetching: tokio::sync::Mutex<Fetched>,
    /// Whether the last fetch failed: a change of state is logged, not every failure.
    failing: Mutex<Option<bool>>,
    first_attempt_done: AtomicBool,
    first_attempt: Notify,
    /// The delay the scheduled fetches wait after the last one.
    next_refresh_ms: AtomicU64,
    /// Fetches done (each attempt), for tests and diagnostics.
    fetches: AtomicU64,
    metrics: JwksMetrics,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").field("url", &self.url).finish()
    }
}

/// When fetches happened, read and written under `fetching`.
#[derive(Debug, Default)]
struct Fetched {
    /// The last fetch of any kind ended.
    any: Option<Instant>,
    /// The last fetch for an unknown `kid` started.
    for_unknown_kid: Option<Instant>,
}

/// Ends the refresh task when dropped.
#[derive(Debug)]
pub struct StopOnDrop(#[allow(dead_code)] oneshot::Sender<()>);

impl Jwks {
    /// Starts fetching `url` in the background (from within the runtime). The task ends
    /// when the returned [`StopOnDrop`] is dropped.
    pub fn start(
        provider: Arc<str>,
        url: String,
        refresh: Duration,
        metrics: JwksMetrics,
    ) -> (Arc<Self>, StopOnDrop) {
        let client = client();
        if client.is_none() {
            tracing::error!(provider = %provider, "cannot make the HTTP client for the JWKS");
        }
        let jwks = Arc::new(Self {
            provider,
            url,
            refresh,
            client,
            keys: ArcSwapOption::empty(),
            generation: AtomicU64::new(0),
            fetching: tokio::sync::Mutex::new(Fetched::default()),
            failing: Mutex::new(None),
            first_attempt_done: AtomicBool::new(false),
            first_attempt: Notify::new(),
            next_refresh_ms: AtomicU64::new(0),
            fetches: AtomicU64::new(0),
            metrics,
        });
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(refresh_loop(Arc::downgrade(&jwks), stopped));
        (jwks, StopOnDrop(stop))
    }

    /// The set in use, `None` until a fetch succeeded.
    pub fn keys(&self) -> Option<Arc<KeySet>> {
        self.keys.load_full()
    }

    /// The set's generation: changes whenever the set does.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Fetches attempted so far.
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// The delay before the next scheduled fetch, as the last one set it.
    pub fn next_refresh(&self) -> Duration {
        Duration::from_millis(self.next_refresh_ms.load(Ordering::Relaxed))
    }

    /// Waits until the first fetch has been attempted (successful or not).
    pub async fn first_attempt(&self) {
        loop {
            let notified = self.first_attempt.notified();
            if self.first_attempt_done.load(Ordering::Acquire) {
                return;
            }
            notified.await;
        }
    }

    /// A token named a `kid` the set lacks: fetch again, unless a fetch ended while
    /// this waited for the one under way (at most [`WAIT_FOR_FETCH`]), or the last fetch
    /// for an unknown `kid` started less than [`REFETCH_INTERVAL`] ago.
    pub async fn refetch_for_unknown_kid(&self) {
        let asked = Instant::now();
        let Ok(mut last) = tokio::time::timeout(WAIT_FOR_FETCH, self.fetching.lock()).await else {
            return;
        };
        let fetched_meanwhile = last.any.is_some_and(|at| at >= asked);
        let recently = last
            .for_unknown_kid
            .is_some_and(|at| at.elapsed() < REFETCH_INTERVAL);
        if fetched_meanwhile || recently {
            return;
        }
        last.for_unknown_kid = Some(Instant::now());
        let _ = self.fetch_now().await;
        last.any = Some(Instant::now());
    }

    /// One scheduled fetch: the delay until the next.
    async fn scheduled(&self, retry: &mut Duration) -> Duration {
        let outcome = {
            let mut last = self.fetching.lock().await;
            let outcome = self.fetch_now().await;
            last.any = Some(Instant::now());
            outcome
        };
        let delay = match outcome {
            Ok(Some(max_age)) => max_age.clamp(MAX_AGE_RANGE.0, MAX_AGE_RANGE.1),
            Ok(None) => self.refresh,
            // Never had: retry soon, backing off; had: keep it, try again at the pace
            // of a refresh or sooner.
            Err(()) => {
                let delay = (*retry).min(self.refresh);
                *retry = (*retry * 2).min(MAX_RETRY);
                delay
            }
        };
        if outcome.is_ok() {
            *retry = Duration::from_secs(1);
        }
        self.next_refresh_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
        delay
    }

    /// Fetches and installs the set: the answer's `max-age`, if any. The caller holds
    /// `fetching`.
    async fn fetch_now(&self) -> Result<Option<Duration>, ()> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let outcome = match &self.client {
            Some(client) => fetch(client, &self.url).await,
            None => Err(FetchError::Error("no HTTP client".into())),
        };
        let result = match outcome {
            Ok((set, max_age)) => {
                let count = set.len();
                let changed = self.keys.load().as_deref() != Some(&set);
                if changed {
                    self.keys.store(Some(Arc::new(set)));
                    self.generation.fetch_add(1, Ordering::AcqRel);
                }
                self.metrics.fetched(&self.provider, "ok");
                self.metrics.keys(&self.provider, count);
                self.state(false, || {
                    tracing::info!(provider = %self.provider, keys = count, "JWKS fetched");
                });
                Ok(max_age)
            }
            Err(error) => {
                let (result, why) = match error {
                    FetchError::Error(why) => ("error", why),
                    FetchError::Invalid(why) => ("invalid", why),
                };
                self.metrics.fetched(&self.provider, result);
                let kept = self.keys.load().is_some();
                self.state(true, || {
                    tracing::warn!(
                        provider = %self.provider, error = %why,
                        keeping_last_good_set = kept, "JWKS fetch failed",
                    );
                });
                Err(())
            }
        };
        if !self.first_attempt_done.swap(true, Ordering::AcqRel) {
            self.first_attempt.notify_waiters();
        }
        result
    }

    /// Logs with `log` when the fetches start or stop failing.
    fn state(&self, failing: bool, log: impl FnOnce()) {
        let mut last = self.failing.lock().unwrap_or_else(|e| e.into_inner());
        if *last != Some(failing) {
            *last = Some(failing);
            drop(last);
            log();
        }
    }
}

async fn refresh_loop(jwks: Weak<Jwks>, mut stopped: oneshot::Receiver<()>) {
    let mut retry = Duration::from_secs(1);
    loop {
        let Some(strong) = jwks.upgrade() else { return };
        let delay = tokio::select! {
            delay = strong.scheduled(&mut retry) => delay,
            _ = &mut stopped => return,
        };
        drop(strong);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = &mut stopped => return,
        }
    }
}

enum FetchError {
    /// No answer, or not a success.
    Error(String),
    /// An answer that is not a usable key set.
    Invalid(String),
}

fn client() -> Option<reqwest::Client> {
    use rustls_platform_verifier::ConfigVerifierExt;
    let tls = rustls::ClientConfig::with_platform_verifier().ok()?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(Duration::from_secs(5))
        .timeout(FETCH_TIMEOUT)
        .redirect(reqwest::redirect::Policy::limited(3))
        .user_agent(concat!("fanout/", env!("CARGO_PKG_VERSION")))
        .build()
        .ok()
}

async fn fetch(
    client: &reqwest::Client,
    url: &str,
) -> Result<(KeySet, Option<Duration>), FetchError> {
    let answer = client
        .get(url)
        .header(http::header::ACCEPT, "application/json")
        .send()
        .await
        .map_err(|e| FetchError::Error(error_chain(&e)))?;
    let status = answer.status();
    if !status.is_success() {
        return Err(FetchError::Error(format!(
            "the answer's status is {status}"
        )));
    }
    let max_age = answer
        .headers()
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age);
    if answer
        .content_length()
        .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
    {
        return Err(FetchError::Invalid(format!(
            "the answer is larger than {MAX_JWKS_BYTES} bytes"
        )));
    }
    let mut answer = answer;
    let mut body = Vec::new();
    while let Some(chunk) = answer
        .chunk()
        .await
        .map_err(|e| FetchError::Error(error_chain(&e)))?
    {
        if body.len() + chunk.len() > MAX_JWKS_BYTES {
            return Err(FetchError::Invalid(format!(
                "the answer is larger than {MAX_JWKS_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    let set = KeySet::from_jwks(&body).map_err(FetchError::Invalid)?;
    Ok((set, max_age))
}

/// `max-age=N` of a `Cache-Control` value; `no-cache`/`no-store` count as 0.
pub fn max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|directive| {
        let directive = directive.trim();
        if directive.eq_ignore_ascii_case("no-cache") || directive.eq_ignore_ascii_case("no-store")
        {
            return Some(Duration::ZERO);
        }
        let (name, seconds) = directive.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("max-age") {
            return None;
        }
        let seconds: u64 = seconds.trim().trim_matches('"').parse().ok()?;
        Some(Duration::from_secs(seconds))
    })
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=600"),
            Some(Duration::from_secs(600))
        );
        assert_eq!(max_age("MAX-AGE=\"30\""), Some(Duration::from_secs(30)));
        assert_eq!(max_age("no-store"), Some(Duration::ZERO));
        assert_eq!(max_age("public"), None);
        assert_eq!(max_age("max-age=abc"), None);
    }
}
