//! A timer the runtime always holds, due within a second, so that a request's deadline
//! does not cost a syscall.
//!
//! tokio's time driver remembers, at each of its turns, when its soonest timer is due;
//! a timer registered later that is due sooner wakes the I/O driver through its eventfd,
//! a `write` syscall, in case the driver is asleep. An upstream call's deadline
//! (`request_timeout` away) was often the soonest: the previous requests' deadlines
//! were gone with their answers, and the connections' own timers are far out (the
//! keep-alive and send timeouts). Under load every request paid that `write`: over
//! HTTP/2 from the start, over HTTP/1.1 once the connections' first timers (the header
//! read timeout at accept) had fired and moved to the keep-alive deadline. With a timer
//! due within [`PERIOD`] always held, only a deadline sooner than that wakes the driver,
//! for one wake-up a second.

use std::time::Duration;
use tokio::time::MissedTickBehavior;

/// How far out the held timer is at most.
pub const PERIOD: Duration = Duration::from_secs(1);

/// Holds a timer due within [`PERIOD`] for as long as it runs.
pub async fn hold() {
    let mut every = tokio::time::interval(PERIOD);
    every.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        every.tick().await;
    }
}
