//! The writer thread: drains the queue, formats each record into its buffer, and writes
//! the buffer in one system call when it is full, when the oldest line in it has waited
//! `flush`, when settings change, and at shutdown. The clock is passed in (`now`), so the
//! batching rules are tested without waiting.
//!
//! A failed write (a full disk) loses that batch: its lines are counted as dropped with
//! reason `write_error` and a warning is logged at most once a second. Nothing here
//! panics or waits on a request.

use super::format::write_line;
use super::record::Message;
use super::{LogFormat, LogPath, Record};
use prometheus_client::metrics::counter::Counter;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where a writer writes: a file it can reopen, or one of the process's own streams.
pub(crate) struct Target {
    sink: Box<dyn Write + Send>,
    /// The file's path, to reopen it; `None` for stdout and stderr.
    path: Option<PathBuf>,
    /// A pipe's writes of at most `PIPE_BUF` bytes are not interleaved with other
    /// writers' (the diagnostic log shares stderr): writes to stdout and stderr are
    /// split at line ends into pieces no longer than that.
    piecewise: bool,
}

/// The most bytes a pipe writes whole (POSIX `PIPE_BUF` on Linux).
const PIPE_BUF: usize = 4096;

impl Target {
    /// Opens `path`: a file for appending (created if missing), or stdout or stderr.
    pub(crate) fn open(path: &LogPath) -> io::Result<Self> {
        Ok(match path {
            LogPath::Stdout => Self::stream(Box::new(io::stdout())),
            LogPath::Stderr => Self::stream(Box::new(io::stderr())),
            LogPath::File(p) => Self {
                sink: Box::new(append(p)?),
                path: Some(p.clone()),
                piecewise: false,
            },
        })
    }

    fn stream(sink: Box<dyn Write + Send>) -> Self {
        Self {
            sink,
            path: None,
            piecewise: true,
        }
    }

    /// A target that writes to `sink`, as a file that cannot be reopened (for tests).
    #[cfg(test)]
    pub(crate) fn sink(sink: Box<dyn Write + Send>) -> Self {
        Self {
            sink,
            path: None,
            piecewise: false,
        }
    }

    fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if !self.piecewise {
            return self.sink.write_all(bytes).and_then(|()| self.sink.flush());
        }
        while !bytes.is_empty() {
            let end = if bytes.len() <= PIPE_BUF {
                bytes.len()
            } else {
                // The last line end within PIPE_BUF; a longer line goes whole.
                bytes[..PIPE_BUF]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or_else(
                        || {
                            bytes
                                .iter()
                                .position(|&b| b == b'\n')
                                .map_or(bytes.len(), |i| i + 1)
                        },
                        |i| i + 1,
                    )
            };
            self.sink.write_all(&bytes[..end])?;
            bytes = &bytes[end..];
        }
        self.sink.flush()
    }
}

fn append(path: &std::path::Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// New settings for a running writer. `target: None` keeps the open target.
pub(crate) struct Settings {
    pub target: Option<Target>,
    pub format: LogFormat,
    pub buffer: usize,
    pub flush: Duration,
}

/// What the handle asks of its writer, besides records: checked after every message.
#[derive(Default)]
pub(crate) struct Control {
    /// Something below is set: one load per record to see that nothing is.
    pub changed: AtomicBool,
    pub settings: Mutex<Option<Settings>>,
    pub reopen: AtomicBool,
    pub shutdown: AtomicBool,
}

/// The buffer and the rules for writing it.
pub(crate) struct Writer {
    target: Target,
    format: LogFormat,
    buffer: Vec<u8>,
    /// Write when the buffer holds this many bytes.
    limit: usize,
    flush: Duration,
    /// When the oldest line in the buffer was added.
    oldest: Option<Instant>,
    /// Lines in the buffer, counted as dropped if their write fails.
    lines: u64,
    write_errors: Counter,
    last_warning: Option<Instant>,
    /// The clock as last read by `clock`.
    stamp: Instant,
}

impl Writer {
    pub(crate) fn new(target: Target, settings: &Settings, write_errors: Counter) -> Self {
        Self {
            target,
            format: settings.format,
            buffer: Vec::with_capacity(settings.buffer),
            limit: settings.buffer,
            flush: settings.flush,
            oldest: None,
            lines: 0,
            write_errors,
            last_warning: None,
            stamp: Instant::now(),
        }
    }

    /// Formats `record` into the buffer; writes the buffer once it is full.
    pub(crate) fn push(&mut self, record: &Record, now: Instant) {
        write_line(self.format, record, &mut self.buffer);
        self.lines += 1;
        self.oldest.get_or_insert(now);
        if self.buffer.len() >= self.limit {
            self.write(now);
        }
    }

    /// The time a record taken now is stamped with: the clock is read for the first line
    /// of a buffer (which sets its deadline) and after a write, not for every line.
    fn clock(&mut self) -> Instant {
        if self.oldest.is_none() {
            self.stamp = Instant::now();
        }
        self.stamp
    }

    /// When the buffer must be written by, if it holds anything.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.oldest.map(|t| t + self.flush)
    }

    /// Writes the buffer if its oldest line has waited `flush`.
    pub(crate) fn tick(&mut self, now: Instant) {
        if self.deadline().is_some_and(|d| now >= d) {
            self.write(now);
        }
    }

    /// Writes whatever the buffer holds, in one call.
    pub(crate) fn write(&mut self, now: Instant) {
        if self.buffer.is_empty() {
            return;
        }
        if let Err(e) = self.target.write_all(&self.buffer) {
            self.write_errors.inc_by(self.lines);
            if self
                .last_warning
                .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
            {
                self.last_warning = Some(now);
                tracing::warn!(error = %e, lines = self.lines, "access log write failed; lines dropped");
            }
        }
        self.buffer.clear();
        self.oldest = None;
        self.lines = 0;
    }

    /// Takes new settings after writing what was formatted under the old ones.
    pub(crate) fn apply(&mut self, settings: Settings, now: Instant) {
        self.write(now);
        if let Some(target) = settings.target {
            self.target = target;
        }
        self.format = settings.format;
        self.limit = settings.buffer;
        self.flush = settings.flush;
        self.buffer.shrink_to(settings.buffer);
        self.buffer.reserve(settings.buffer);
    }

    /// Reopens the file at its path (after logrotate moved it), after writing the
    /// buffer to the old one. A file that cannot be opened leaves the old one in use.
    pub(crate) fn reopen(&mut self, now: Instant) {
        self.write(now);
        let Some(path) = &self.target.path else {
            return;
        };
        match append(path) {
            Ok(file) => self.target.sink = Box::new(file),
            Err(e) => tracing::warn!(
                path = %path.display(),
                error = %e,
                "cannot reopen the access log; writing on to the file open before"
            ),
        }
    }
}

/// How long the writer sleeps between two drains of a queue that had records in it: it
/// then takes a batch at a time, and a request's `try_send` finds no sleeping receiver
/// to wake (a system call). Only a queue found empty after a sleep makes the writer wait
/// on the queue itself, to be woken by the next record.
const POLL: Duration = Duration::from_millis(10);

/// The thread's loop: until the queue's senders are gone or shutdown is asked for,
/// after which everything queued is written.
pub(crate) fn run(mut writer: Writer, queue: Receiver<Message>, control: Arc<Control>) {
    loop {
        // Take everything queued, with the clock read once per buffer.
        let mut taken = 0usize;
        loop {
            match queue.try_recv() {
                Ok(message) => {
                    taken += 1;
                    if let Message::Line(record) = message {
                        let now = writer.clock();
                        writer.push(&record, now);
                    }
                }
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    writer.write(Instant::now());
                    return;
                }
            }
        }
        let now = Instant::now();
        writer.tick(now);
        if control.changed.swap(false, Ordering::AcqRel) {
            let settings = control.settings.lock().expect("never poisoned").take();
            if let Some(settings) = settings {
                writer.apply(settings, now);
            }
            if control.reopen.swap(false, Ordering::AcqRel) {
                writer.reopen(now);
            }
            if control.shutdown.load(Ordering::Acquire) {
                while let Ok(message) = queue.try_recv() {
                    if let Message::Line(record) = message {
                        writer.push(&record, now);
                    }
                }
                writer.write(now);
                return;
            }
        }
        if taken > 0 {
            std::thread::sleep(POLL.min(writer.flush));
            continue;
        }
        // Quiet: wait for the next record (or the buffer's deadline).
        let message = match writer.deadline() {
            None => queue.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(d) => queue.recv_timeout(d.saturating_duration_since(Instant::now())),
        };
        match message {
            Ok(Message::Line(record)) => {
                let now = writer.clock();
                writer.push(&record, now);
            }
            Ok(Message::Wake) | Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                writer.write(Instant::now());
                return;
            }
        }
    }
}
