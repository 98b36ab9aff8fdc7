//! What a mock route answers ([`Reply`]: status, body, headers, delay, misbehaviour)
//! and the [`Gate`] that holds answers back until a test opens it.

use bytes::Bytes;
use http::HeaderMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Clone, Debug)]
pub(super) enum Behaviour {
    Answer,
    /// Never answers.
    Hang,
    /// Closes the connection without answering.
    Reset,
    /// Answers with the request body.
    Echo,
    /// Reads the request body as a stream, counting bytes: `{"received": N}`.
    Sink,
    /// Streams this many bytes, in 64 KiB chunks.
    Source(u64),
    /// Streams `count` chunks of `text` + index + newline, one every `every`.
    Events {
        count: usize,
        every: Duration,
        text: &'static str,
    },
    /// The n-th request to this path gets the n-th reply, cycling.
    Sequence(Vec<Reply>),
}

/// What a mock route answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub(super) status: u16,
    pub(super) body: Bytes,
    pub(super) latency: Duration,
    pub(super) headers: Vec<(String, String)>,
    pub(super) behaviour: Behaviour,
    /// `{header.NAME}` in the body and header values is the request's `NAME` values.
    pub(super) templated: bool,
    /// The answer waits until this gate opens.
    pub(super) gate: Option<Gate>,
}

/// Holds answers back until the test opens it, and remembers when it did, so a test can
/// tell requests that arrived before from those after (from the mock's arrival times).
#[derive(Clone, Debug)]
pub struct Gate(Arc<tokio::sync::watch::Sender<Option<Instant>>>);

impl Default for Gate {
    fn default() -> Self {
        Self(Arc::new(tokio::sync::watch::Sender::new(None)))
    }
}

impl Gate {
    /// Lets every held answer go, and every later one through at once.
    pub fn open(&self) {
        self.0.send_replace(Some(Instant::now()));
    }

    /// When it was opened.
    pub fn opened(&self) -> Option<Instant> {
        *self.0.borrow()
    }

    pub(super) async fn pass(&self) {
        let mut rx = self.0.subscribe();
        let _ = rx.wait_for(Option::is_some).await;
    }
}

impl Reply {
    /// 200 with this JSON text.
    pub fn json(body: impl Into<String>) -> Self {
        Self {
            status: 200,
            body: Bytes::from(body.into()),
            latency: Duration::ZERO,
            headers: vec![("content-type".into(), "application/json".into())],
            behaviour: Behaviour::Answer,
            templated: false,
            gate: None,
        }
    }

    /// 200 with these bytes and no content type.
    pub fn raw(body: impl Into<Bytes>) -> Self {
        Self {
            body: body.into(),
            headers: Vec::new(),
            ..Self::json("")
        }
    }

    fn with(behaviour: Behaviour) -> Self {
        Self {
            behaviour,
            headers: Vec::new(),
            ..Self::json("")
        }
    }

    pub fn hang() -> Self {
        Self::with(Behaviour::Hang)
    }

    pub fn reset() -> Self {
        Self::with(Behaviour::Reset)
    }

    pub fn echo() -> Self {
        Self::with(Behaviour::Echo)
    }

    pub fn sink() -> Self {
        Self::with(Behaviour::Sink)
    }

    pub fn source(bytes: u64) -> Self {
        Self::with(Behaviour::Source(bytes))
    }

    /// A stream of `count` chunks `"{text}{i}\n"`, one every `every` (server-sent events
    /// with `text = "data: "`, NDJSON with a JSON prefix).
    pub fn events(count: usize, every: Duration, text: &'static str, content_type: &str) -> Self {
        Self::with(Behaviour::Events { count, every, text }).header("content-type", content_type)
    }

    /// Answers each request to the path with the next of `replies`, starting over after
    /// the last (`[slow, fast]` is slow on every other call).
    pub fn sequence(replies: Vec<Reply>) -> Self {
        Self::with(Behaviour::Sequence(replies))
    }

    pub fn status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = latency;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Fills `{header.NAME}` in the body and header values with the request's values of
    /// `NAME`, joined by ", " (empty when it has none): an answer per caller.
    pub fn templated(mut self) -> Self {
        self.templated = true;
        self
    }

    /// Holds the answer until `gate` opens.
    pub fn gated(mut self, gate: &Gate) -> Self {
        self.gate = Some(gate.clone());
        self
    }
}

/// `text` with each `{header.NAME}` replaced by the values of `NAME` in `headers`.
pub(super) fn fill_template(text: &str, headers: &HeaderMap) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find("{header.") {
        out.push_str(&rest[..at]);
        let after = &rest[at + 8..];
        let Some(end) = after.find('}') else {
            break;
        };
        let values: Vec<&str> = headers
            .get_all(&after[..end])
            .iter()
            .map(|v| v.to_str().unwrap_or("?"))
            .collect();
        out.push_str(&values.join(", "));
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    out
}
