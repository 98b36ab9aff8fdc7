//! Waiting for something to happen: poll a condition until it holds, within one generous
//! overall timeout, instead of sleeping a fixed time and hoping it was long enough. On a
//! loaded machine a fixed sleep is too short one run in a hundred; a poll only costs
//! the time the condition really takes.

use std::time::Duration;

/// How long [`eventually`] waits before failing the test: far longer than anything it
/// waits for takes, even on a loaded machine, so reaching it means "never".
pub const PATIENCE: Duration = Duration::from_secs(10);

/// Between two polls. A tokio sleep, so under a paused clock it advances time too (and
/// each poll, often a request, costs real time: a paused test waits for a timer by
/// sleeping past it, and polls only for what follows).
const POLL_EVERY: Duration = Duration::from_millis(25);

/// Polls `condition` until it holds; fails the test with "waited 10 s for {what}"
/// otherwise. `what` says what was awaited: "the reload to be picked up".
///
/// The overall timeout is measured on the wall clock, so a test on tokio's paused clock
/// (where every poll's sleep advances time at once) still waits for events outside its
/// runtime (a child process, a file watcher's thread).
pub async fn eventually(what: &str, mut condition: impl AsyncFnMut() -> bool) {
    eventually_some(what, async || condition().await.then_some(())).await
}

/// Polls `probe` until it yields a value, and returns that value; fails the test with
/// "waited 10 s for {what}" otherwise.
pub async fn eventually_some<T>(what: &str, mut probe: impl AsyncFnMut() -> Option<T>) -> T {
    let started = std::time::Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "waited {PATIENCE:?} for {what}"
        );
        tokio::time::sleep(POLL_EVERY).await;
    }
}
