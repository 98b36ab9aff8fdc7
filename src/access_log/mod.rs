//! fanout's own access log: one line per request, in `json`, `text` or nginx's
//! `combined` format, to stdout, stderr or a file, at almost no cost to the request.
//!
//! The request's task only builds a [`Record`] (copies and reference-count bumps) and
//! offers it to a bounded queue with [`AccessLog::submit`], which never waits: when the
//! queue is full the line is dropped and counted (`fanout_access_log_dropped_total`,
//! reason `queue_full`), with a warning at most once a second. A dedicated thread
//! (`writer`) formats the records (`format`) into a buffer and writes it in batches:
//! when `buffer` bytes are waiting, when the oldest waited `flush`, and at shutdown
//! ([`AccessLog::shutdown`] writes everything queued before it returns).
//!
//! One `AccessLog` lives as long as the process and is shared by every config snapshot:
//! a reload hands it the new `[access_log]` ([`AccessLog::apply`]), which opens a new
//! file first, so a path that cannot be opened refuses the reload and the old log goes
//! on. `SIGUSR1` asks it to reopen its file ([`AccessLog::reopen`]), as logrotate's
//! `postrotate` expects.

mod format;
#[cfg(test)]
mod format_tests;
mod record;
#[cfg(test)]
mod tests;
mod writer;

pub use record::{BackendOutcome, Record};

use prometheus_client::metrics::counter::Counter;
use record::Message;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use writer::{Control, Settings, Target, Writer};

/// Records waiting for the writer at most. At 400 bytes a record, 1.6 MB held at most;
/// room for a burst of 4096 requests while the writer is busy writing.
pub const QUEUE_CAPACITY: usize = 4096;

/// Where the lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogPath {
    Stdout,
    Stderr,
    /// Appended to, created if missing.
    File(PathBuf),
}

/// How a line is written (see `format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Text,
    Combined,
}

/// `[access_log]`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessLogSpec {
    pub enabled: bool,
    pub path: LogPath,
    pub format: LogFormat,
    /// Bytes of lines gathered before a write.
    pub buffer: usize,
    /// The longest a line waits in the buffer.
    pub flush: Duration,
}

/// Why the access log could not start or take new settings.
#[derive(Debug, thiserror::Error)]
pub enum AccessLogError {
    #[error(
        "access_log.path: cannot open {path} for appending: {source}; create its directory or give fanout write access, or set another path"
    )]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("access_log: cannot start the writer thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// The process's access log: the queue's sending end and the writer's controls.
pub struct AccessLog {
    queue: SyncSender<Message>,
    control: Arc<Control>,
    state: Mutex<State>,
    /// Lines dropped because the queue was full.
    dropped: Counter,
    /// Milliseconds after `epoch` of the last "dropping" warning, plus one (0: never).
    last_warning: AtomicU64,
    epoch: Instant,
}

/// What the handle remembers between reloads.
struct State {
    /// The spec applied last.
    applied: AccessLogSpec,
    /// The path of the target the writer has, or has been sent; `None` while the log
    /// has been disabled since start (nothing opened yet).
    opened: Option<LogPath>,
    thread: Option<JoinHandle<()>>,
}

/// The counters the access log adds to.
#[derive(Clone)]
pub struct DropCounters {
    /// Lines dropped because the queue was full.
    pub queue_full: Counter,
    /// Lines lost in a failed write.
    pub write_error: Counter,
}

impl AccessLog {
    /// Opens the log's target (a file that cannot be opened is an error here, at start)
    /// and starts its writer thread. A disabled log opens nothing until a reload
    /// enables it.
    pub fn start(
        spec: &AccessLogSpec,
        counters: DropCounters,
    ) -> Result<Arc<Self>, AccessLogError> {
        let (target, opened) = if spec.enabled {
            (open(&spec.path)?, Some(spec.path.clone()))
        } else {
            (
                Target::open(&LogPath::Stderr).map_err(AccessLogError::Thread)?,
                None,
            )
        };
        Self::with_target(spec, target, opened, counters)
    }

    pub(crate) fn with_target(
        spec: &AccessLogSpec,
        target: Target,
        opened: Option<LogPath>,
        counters: DropCounters,
    ) -> Result<Arc<Self>, AccessLogError> {
        let (queue, records) = sync_channel(QUEUE_CAPACITY);
        let control = Arc::new(Control::default());
        let writer = Writer::new(target, &settings(spec, None), counters.write_error);
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn({
                let control = control.clone();
                move || writer::run(writer, records, control)
            })
            .map_err(AccessLogError::Thread)?;
        Ok(Arc::new(Self {
            queue,
            control,
            state: Mutex::new(State {
                applied: spec.clone(),
                opened,
                thread: Some(thread),
            }),
            dropped: counters.queue_full,
            last_warning: AtomicU64::new(0),
            epoch: Instant::now(),
        }))
    }

    /// Hands `record` to the writer, or drops it if the queue is full. Never waits.
    pub fn submit(&self, record: Record) {
        match self.queue.try_send(Message::Line(record)) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped(),
        }
    }

    /// Counts a dropped line, and warns if the last warning is a second old.
    fn dropped(&self) {
        self.dropped.inc();
        let now = self.epoch.elapsed().as_millis() as u64 + 1;
        let last = self.last_warning.load(Ordering::Relaxed);
        if (last == 0 || now - last >= 1000)
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!(
                dropped_total = self.dropped.get(),
                "access log queue full: lines dropped (fanout_access_log_dropped_total)"
            );
        }
    }

    /// Takes a reloaded `[access_log]`: every key applies at once. A new path is opened
    /// here, before the reload is accepted: if it cannot be, the reload is refused and
    /// the writer goes on with its old settings.
    pub fn apply(&self, spec: &AccessLogSpec) -> Result<(), AccessLogError> {
        let mut state = self.state.lock().expect("never poisoned");
        if state.applied == *spec {
            return Ok(());
        }
        if spec.enabled {
            let target = match &state.opened {
                Some(path) if *path == spec.path => None,
                _ => Some(open(&spec.path)?),
            };
            if target.is_some() {
                state.opened = Some(spec.path.clone());
            }
            *self.control.settings.lock().expect("never poisoned") = Some(settings(spec, target));
            self.nudge();
        }
        state.applied = spec.clone();
        Ok(())
    }

    /// Asks the writer to reopen its file at its path (after a rotation moved it).
    pub fn reopen(&self) {
        self.control.reopen.store(true, Ordering::Release);
        self.nudge();
    }

    /// Writes everything queued and stops the writer; returns once it has. Lines
    /// submitted afterwards are dropped.
    pub fn shutdown(&self) {
        self.control.shutdown.store(true, Ordering::Release);
        self.nudge();
        let thread = self.state.lock().expect("never poisoned").thread.take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
    }

    /// Lines dropped so far because the queue was full.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.get()
    }

    /// Wakes the writer to look at its controls. A full queue needs no wake: the
    /// writer is busy and looks after every record.
    fn nudge(&self) {
        self.control.changed.store(true, Ordering::Release);
        let _ = self.queue.try_send(Message::Wake);
    }
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AccessLog")
    }
}

fn open(path: &LogPath) -> Result<Target, AccessLogError> {
    Target::open(path).map_err(|source| AccessLogError::Open {
        path: match path {
            LogPath::File(p) => p.clone(),
            LogPath::Stdout => "stdout".into(),
            LogPath::Stderr => "stderr".into(),
        },
        source,
    })
}

fn settings(spec: &AccessLogSpec, target: Option<Target>) -> Settings {
    Settings {
        target,
        format: spec.format,
        buffer: spec.buffer,
        flush: spec.flush,
    }
}
