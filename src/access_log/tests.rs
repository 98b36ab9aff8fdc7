//! The queue (a full queue drops and counts, never waits) and the writer's batching on
//! an injected clock. `record` and `line` serve the format tests too.

use super::format::write_line;
use super::writer::{Settings, Target, Writer};
use super::*;
use crate::metrics::Label;
use http::{HeaderValue, Method, Uri, Version};
use std::io::{self, Write};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// 2026-12-01T21:30:00.123Z.
fn at() -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_796_160_600_123)
}

pub(super) fn record() -> Record {
    Record {
        time: at(),
        request_id: HeaderValue::from_static("req-1"),
        trace_id: None,
        client: "192.0.2.7".parse().unwrap(),
        user: None,
        client_cert: None,
        method: Method::GET,
        uri: Uri::from_static("/users/7?full=1"),
        redact_query: None,
        version: Version::HTTP_11,
        route: Label::new("/users/{id}"),
        status: 200,
        bytes: Some(1234),
        duration: Duration::from_micros(12_345),
        backends: Some(
            vec![
                BackendOutcome {
                    name: Label::new("user"),
                    code: "ok",
                    elapsed: Duration::from_micros(5_001),
                    upstream: None,
                },
                BackendOutcome {
                    name: Label::new("orders"),
                    code: "timeout",
                    elapsed: Duration::from_millis(250),
                    upstream: None,
                },
            ]
            .into_boxed_slice(),
        ),
        referer: Some(HeaderValue::from_static("https://dash.example.com/")),
        user_agent: Some(HeaderValue::from_static("curl/8.5.0")),
        upstream: None,
    }
}

pub(super) fn line(format: LogFormat, r: &Record) -> String {
    let mut out = Vec::new();
    write_line(format, r, &mut out);
    String::from_utf8(out).expect("every format writes UTF-8")
}

/// A sink whose bytes the test reads, that can be made to fail.
#[derive(Clone, Default)]
struct Shared {
    bytes: Arc<Mutex<Vec<u8>>>,
    writes: Arc<AtomicU64>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(self.bytes.lock().unwrap().clone()).unwrap()
    }

    fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }
}

impl Write for Shared {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.failing.load(Ordering::SeqCst) {
            return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
        }
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.bytes.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn settings(buffer: usize, flush: Duration) -> Settings {
    Settings {
        target: None,
        format: LogFormat::Json,
        buffer,
        flush,
    }
}

fn counter() -> Counter {
    Counter::default()
}

#[test]
fn the_writer_writes_when_its_buffer_fills() {
    let sink = Shared::default();
    let line_len = line(LogFormat::Json, &record()).len();
    let t0 = Instant::now();
    let mut w = Writer::new(
        Target::sink(Box::new(sink.clone())),
        &settings(3 * line_len, Duration::from_secs(60)),
        counter(),
    );
    w.push(&record(), t0);
    w.push(&record(), t0);
    assert_eq!(sink.writes(), 0, "two lines wait in the buffer");
    w.push(&record(), t0);
    assert_eq!(sink.writes(), 1, "the third fills it: one write");
    assert_eq!(sink.text().lines().count(), 3);
    assert_eq!(w.deadline(), None, "nothing waits");
}

#[test]
fn the_writer_writes_when_the_oldest_line_has_waited_flush() {
    let sink = Shared::default();
    let flush = Duration::from_secs(1);
    let t0 = Instant::now();
    let mut w = Writer::new(
        Target::sink(Box::new(sink.clone())),
        &settings(1 << 20, flush),
        counter(),
    );
    w.push(&record(), t0);
    w.push(&record(), t0 + Duration::from_millis(600));
    assert_eq!(w.deadline(), Some(t0 + flush), "the oldest line sets it");
    w.tick(t0 + flush - Duration::from_nanos(1));
    assert_eq!(sink.writes(), 0);
    w.tick(t0 + flush);
    assert_eq!(sink.writes(), 1);
    assert_eq!(sink.text().lines().count(), 2);
    w.tick(t0 + 3 * flush);
    assert_eq!(sink.writes(), 1, "an empty buffer is not written");
}

#[test]
fn a_failed_write_counts_its_lines_and_the_writer_goes_on() {
    let sink = Shared::default();
    let errors = counter();
    let t0 = Instant::now();
    let mut w = Writer::new(
        Target::sink(Box::new(sink.clone())),
        &settings(1 << 20, Duration::from_secs(1)),
        errors.clone(),
    );
    sink.failing.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        w.push(&record(), t0);
    }
    w.write(t0);
    assert_eq!(errors.get(), 3);
    sink.failing.store(false, Ordering::SeqCst);
    w.push(&record(), t0);
    w.write(t0);
    assert_eq!(errors.get(), 3);
    assert_eq!(
        sink.text().lines().count(),
        1,
        "only the line after the failure"
    );
}

#[test]
fn new_settings_write_the_old_buffer_first() {
    let (old, new) = (Shared::default(), Shared::default());
    let t0 = Instant::now();
    let mut w = Writer::new(
        Target::sink(Box::new(old.clone())),
        &settings(1 << 20, Duration::from_secs(1)),
        counter(),
    );
    w.push(&record(), t0);
    let mut next = settings(1 << 20, Duration::from_secs(1));
    next.target = Some(Target::sink(Box::new(new.clone())));
    next.format = LogFormat::Combined;
    w.apply(next, t0);
    w.push(&record(), t0);
    w.write(t0);
    assert!(old.text().starts_with('{'), "{}", old.text());
    assert_eq!(old.text().lines().count(), 1);
    assert!(new.text().starts_with("192.0.2.7 - - ["), "{}", new.text());
}

/// A sink that blocks each write until the test lets one through.
struct Gate {
    inner: Shared,
    open: mpsc::Receiver<()>,
}

impl Write for Gate {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = self.open.recv();
        self.inner.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn spec(buffer: usize) -> AccessLogSpec {
    AccessLogSpec {
        enabled: true,
        path: LogPath::Stderr,
        format: LogFormat::Json,
        buffer,
        flush: Duration::from_secs(3600),
    }
}

#[test]
fn a_full_queue_drops_and_counts_without_waiting_and_shutdown_writes_the_rest() {
    let sink = Shared::default();
    let (open, gate) = mpsc::channel();
    let counters = DropCounters {
        queue_full: counter(),
        write_error: counter(),
    };
    // A buffer of one line: the writer writes after each record, and the first write
    // blocks until the gate opens, while the test fills the queue.
    let log = AccessLog::with_target(
        &spec(1024),
        Target::sink(Box::new(Gate {
            inner: sink.clone(),
            open: gate,
        })),
        Some(LogPath::Stderr),
        counters.clone(),
    )
    .unwrap();
    let total = QUEUE_CAPACITY as u64 + 100;
    for _ in 0..total {
        log.submit(record());
    }
    // The writer holds the lines of its first write (three of about 330 bytes fill
    // the buffer of 1024), the queue as many as it can hold, the rest are dropped.
    let dropped = log.dropped_total();
    assert!(
        (96..=100).contains(&dropped),
        "{dropped} of {total} dropped with a queue of {QUEUE_CAPACITY}"
    );
    assert_eq!(counters.queue_full.get(), dropped);
    // Let every write through; shutdown returns once everything queued is written.
    drop(open);
    log.shutdown();
    assert_eq!(sink.text().lines().count() as u64, total - dropped);
    assert_eq!(counters.write_error.get(), 0);
    log.submit(record());
    assert_eq!(
        log.dropped_total(),
        dropped + 1,
        "after shutdown, lines are dropped"
    );
}

#[test]
fn apply_refuses_a_file_it_cannot_open_and_keeps_its_settings() {
    let counters = DropCounters {
        queue_full: counter(),
        write_error: counter(),
    };
    let log = AccessLog::start(&spec(1024), counters).unwrap();
    let mut bad = spec(1024);
    bad.path = LogPath::File("/nonexistent-dir-of-fanout/access.log".into());
    let error = log.apply(&bad).unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("access_log.path: cannot open /nonexistent-dir-of-fanout/access.log"),
        "{error}"
    );
    // Still the old settings: applying them again changes nothing.
    log.apply(&spec(1024)).unwrap();
    assert_eq!(log.state.lock().unwrap().applied, spec(1024));
    log.shutdown();
}
