//! Async routes' jobs (README, "Async routes"): work a route accepted with `202` and
//! runs after the client has its answer, and where each job is until its answer
//! expires.
//!
//! - this file: a job's id (128 random bits, hex), whose it is ([`Owner`]), and a
//!   route's count of running jobs ([`AsyncRoute`]: `max_jobs`).
//! - `record`: a job as stored, and its binary value in the `[cluster]` store.
//! - `store`: [`JobStore`], in memory (`memory`) or in the `[cluster]` store (Redis),
//!   and the shutdown drain.
//! - `running`: the jobs running in this instance (cancel at once, the drain).
//! - `stats`: `fanout_jobs{state}` and `fanout_jobs_finished_total{state}`.
//!
//! Running a job (the route's handler, the 202, the status URL) is the gateway's:
//! `gateway/jobs.rs`.

mod memory;
mod record;
mod running;
mod stats;
mod store;

pub use record::{JobRecord, JobState, RecordError, decode, encode};
pub use running::{Running, RunningJob, Slot};
pub use stats::{FINISHED_STATES, JobStateLabels, JobStats};
pub use store::{CANCEL_POLL, JobStore, JobStoreError, PENDING_MARGIN};

use crate::auth::Identity;
use crate::config::AsyncSpec;
use http::{HeaderMap, header};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Hex digits of a job id: 128 random bits.
pub const ID_LEN: usize = 32;

/// A new job id: 128 bits from the system's CSPRNG, as 32 lowercase hex digits.
pub fn new_id() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    hex(&bytes)
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

/// Whether `id` has the form of a job id (so it may go into a store key).
pub fn is_id(id: &str) -> bool {
    id.len() == ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Whose a job is: SHA-256 of the auth identity (provider and subject) when the request
/// proved one, else of its `Authorization` header; a request with neither owns nothing
/// (the job is anyone's who has its id). The same rule on the status request decides
/// whether it may see the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owner(pub [u8; 32]);

impl Owner {
    pub fn of(identity: Option<&Identity>, headers: &HeaderMap) -> Option<Owner> {
        let digest = |tag: &[u8], parts: &[&[u8]]| {
            let mut context = ring::digest::Context::new(&ring::digest::SHA256);
            context.update(tag);
            for part in parts {
                context.update(&(part.len() as u64).to_be_bytes());
                context.update(part);
            }
            let mut out = [0u8; 32];
            out.copy_from_slice(context.finish().as_ref());
            Owner(out)
        };
        match identity {
            Some(i) => Some(digest(
                b"identity",
                &[i.provider.as_bytes(), i.subject.as_bytes()],
            )),
            None => headers
                .get(header::AUTHORIZATION)
                .map(|v| digest(b"authorization", &[v.as_bytes()])),
        }
    }
}

/// An async route at runtime: its `async` and its jobs running in this instance, the
/// count carried over a reload that keeps the route.
#[derive(Debug)]
pub struct AsyncRoute {
    pub spec: AsyncSpec,
    pub running: Arc<AtomicUsize>,
}

/// One of a route's `max_jobs`, held while its job runs.
#[derive(Debug)]
pub struct RouteSlot(Arc<AtomicUsize>);

impl Drop for RouteSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl AsyncRoute {
    /// A place for one more job, or `None` when `max_jobs` run already.
    pub fn try_slot(&self) -> Option<RouteSlot> {
        let before = self.running.fetch_add(1, Ordering::AcqRel);
        let slot = RouteSlot(self.running.clone());
        (before < self.spec.max_jobs).then_some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn ids_are_128_bits_of_hex_and_differ() {
        let (a, b) = (new_id(), new_id());
        assert!(is_id(&a) && is_id(&b), "{a} {b}");
        assert_ne!(a, b);
        assert!(!is_id("../etc"));
        assert!(!is_id(&a.to_uppercase()));
    }

    #[test]
    fn the_owner_is_the_identity_else_the_authorization_header_else_none() {
        let mut headers = HeaderMap::new();
        assert_eq!(Owner::of(None, &headers), None);
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer a"));
        let by_header = Owner::of(None, &headers).unwrap();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
        assert_ne!(Owner::of(None, &headers).unwrap(), by_header);
        let identity = Identity {
            provider: "users".into(),
            subject: "alice".into(),
            claims: serde_json::json!({"sub": "alice"}),
            upstream_headers: Vec::new(),
        };
        let alice = Owner::of(Some(&identity), &headers).unwrap();
        // A new token of the same subject is the same owner.
        assert_eq!(Owner::of(Some(&identity), &HeaderMap::new()), Some(alice));
        assert_ne!(alice, by_header);
    }

    #[test]
    fn a_route_runs_at_most_max_jobs() {
        let route = AsyncRoute {
            spec: AsyncSpec {
                status_path: "/jobs/{job}".into(),
                job_timeout: std::time::Duration::from_secs(1),
                result_ttl: std::time::Duration::from_secs(1),
                max_jobs: 2,
                max_result: 1024,
            },
            running: Arc::default(),
        };
        let a = route.try_slot().unwrap();
        let _b = route.try_slot().unwrap();
        assert!(route.try_slot().is_none());
        drop(a);
        assert!(route.try_slot().is_some());
        assert_eq!(route.running.load(Ordering::SeqCst), 1);
    }
}
