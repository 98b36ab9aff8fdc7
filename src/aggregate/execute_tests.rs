//! Unit tests of the execute stage: a fake `Launch` decides when each backend's call
//! ends, and the tests check which backends have started at each point.

use super::*;
use crate::aggregate::scope::BackendAnswer;
use crate::aggregate::{Backend, BackendError};
use crate::cache::ResponseCache;
use crate::config::{AggregateSpec, Env, RouteKind, compile};
use crate::metrics::{Label, Metrics};
use crate::template::Answered;
use crate::upstream::Upstream;
use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// An aggregate route of `backends`, each `(name, path, required)`, on an upstream
/// that is never called: the fake launcher below answers for it.
fn route(backends: &[(&str, &str, bool)]) -> AggregateRoute {
    let mut toml =
        String::from("[upstreams.u]\nurl = \"http://127.0.0.1:9\"\n[[routes]]\npath = \"/r\"\n");
    for (name, path, required) in backends {
        toml.push_str(&format!(
            "[[routes.backends]]\nname = \"{name}\"\nupstream = \"u\"\npath = \"{path}\"\nrequired = {required}\n"
        ));
    }
    let compiled = compile(&toml, &Env::default()).unwrap();
    let upstream = Arc::new(Upstream::build(compiled.upstreams["u"].clone()).unwrap());
    let spec = compiled.routes.into_iter().next().unwrap();
    let RouteKind::Aggregate(AggregateSpec { backends, plan, .. }) = spec.kind else {
        panic!("an aggregate route")
    };
    let metrics = Metrics::new();
    let label = Label::new("/r");
    AggregateRoute {
        authenticated: false,
        canaries: false,
        body: super::super::scope::BodyUse::of(&backends),
        backends: backends
            .into_iter()
            .enumerate()
            .map(|(i, b)| {
                let name = Label::new(&b.name);
                Backend {
                    series: metrics.backend_series(&label, &name),
                    label: name,
                    upstream: upstream.clone(),
                    mirrors: Vec::new(),
                    cache_form: super::super::cache_form(&b, plan.is_read(i)),
                    spec: b,
                    canary: None,
                }
            })
            .collect(),
        plan,
        label,
        cache: ResponseCache::new(1 << 20, metrics.cache.clone()),
        cluster: None,
        metrics,
        timeout: spec.timeout,
        max_body: 0,
        max_body_values: 1,
        forward_headers: Vec::new(),
        errors_field: None,
        status_from: None,
        headers_from: Vec::new(),
        access_log: false,
    }
}

type Result = std::result::Result<BackendAnswer, BackendError>;

fn ok(raw: &str) -> Result {
    let raw: serde_json::Value = serde_json::from_str(raw).unwrap();
    Ok(BackendAnswer {
        body: Bytes::from(raw.to_string()),
        desc: "ok",
        raw: Some(Answered::ok(raw)),
        status: http::StatusCode::OK,
        headers: http::HeaderMap::new(),
        failed_elements: None,
    })
}

/// The answer of a backend no other one reads: not kept before shaping.
fn unread(body: &str) -> Result {
    let mut answer = ok(body)?;
    answer.raw = None;
    Ok(answer)
}

/// How a backend of the fake ends: at once, or when the test sends its result.
#[expect(clippy::large_enum_variant, reason = "a handful per test")]
enum Ends {
    AtOnce(Result),
    OnSignal(oneshot::Receiver<Result>),
}

/// Starts backends as the test says, recording each start and which answers it saw.
struct Fake {
    ends: Mutex<Vec<Option<Ends>>>,
    started: Mutex<Vec<(usize, Vec<bool>)>>,
}

impl Fake {
    fn new(ends: Vec<Ends>) -> Self {
        Self {
            ends: Mutex::new(ends.into_iter().map(Some).collect()),
            started: Mutex::new(Vec::new()),
        }
    }

    fn started(&self) -> Vec<usize> {
        let mut started: Vec<usize> = self.started.lock().unwrap().iter().map(|s| s.0).collect();
        started.sort_unstable();
        started
    }

    /// Which answers backend `i` saw when it started.
    fn saw(&self, i: usize) -> Vec<bool> {
        let started = self.started.lock().unwrap();
        started.iter().find(|s| s.0 == i).unwrap().1.clone()
    }

    /// Lets `execute` run until `started` says `want`.
    async fn until_started(&self, want: &[usize]) {
        for _ in 0..1000 {
            if self.started() == want {
                return;
            }
            tokio::task::yield_now().await;
        }
        panic!("started {:?}, not {want:?}", self.started());
    }
}

fn signal() -> (oneshot::Sender<Result>, Ends) {
    let (tx, rx) = oneshot::channel();
    (tx, Ends::OnSignal(rx))
}

impl Launch for Fake {
    type Call = Pin<Box<dyn Future<Output = Outcome> + Send>>;

    async fn start(&self, i: usize, answers: &[Option<Answered>]) -> Started<Self::Call> {
        let saw = answers.iter().map(Option::is_some).collect();
        self.started.lock().unwrap().push((i, saw));
        let outcome = |result| Outcome {
            result,
            elapsed: Duration::ZERO,
        };
        match self.ends.lock().unwrap()[i].take().expect("started once") {
            Ends::AtOnce(result) => Started::Done(outcome(result)),
            Ends::OnSignal(rx) => Started::Running(Box::pin(async move {
                outcome(rx.await.expect("the test sends every result"))
            })),
        }
    }
}

/// Runs `execute` beside the test's `drive`. The clock is paused: should `execute`
/// wait for a call that never ends, the timeout fires at once instead of hanging.
async fn run(
    route: &AggregateRoute,
    fake: &Fake,
    drive: impl Future<Output = ()>,
) -> std::result::Result<Vec<Outcome>, AggregateError> {
    let both = async { tokio::join!(execute(route, fake), drive).0 };
    tokio::time::timeout(Duration::from_secs(60), both)
        .await
        .expect("execute ended")
}

fn codes(outcomes: &[Outcome]) -> Vec<&'static str> {
    outcomes
        .iter()
        .map(|o| match &o.result {
            Ok(answer) => answer.desc,
            Err(e) => e.code(),
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_backend_starts_when_the_last_answer_it_reads_arrives() {
    // c reads a and b; d reads nothing.
    let route = route(&[
        ("a", "/a", false),
        ("b", "/b", false),
        ("c", "/c/{a.x}/{b.y}", false),
        ("d", "/d", false),
    ]);
    let (a, a_ends) = signal();
    let (b, b_ends) = signal();
    let (c, c_ends) = signal();
    let (d, d_ends) = signal();
    let fake = Fake::new(vec![a_ends, b_ends, c_ends, d_ends]);
    let drive = async {
        fake.until_started(&[0, 1, 3]).await;
        a.send(ok(r#"{"x":1}"#)).unwrap();
        fake.until_started(&[0, 1, 3]).await;
        d.send(unread("{}")).unwrap();
        fake.until_started(&[0, 1, 3]).await;
        b.send(ok(r#"{"y":2}"#)).unwrap();
        fake.until_started(&[0, 1, 2, 3]).await;
        assert_eq!(
            fake.saw(2),
            [true, true, false, false],
            "c saw a's and b's answers"
        );
        c.send(unread("[]")).unwrap();
    };
    let result = run(&route, &fake, drive).await;
    let outcomes = result.unwrap();
    assert_eq!(codes(&outcomes), ["ok", "ok", "ok", "ok"]);
    assert_eq!(
        &outcomes[2].result.as_ref().unwrap().body[..],
        b"[]",
        "in the route's order"
    );
}

#[tokio::test(start_paused = true)]
async fn a_required_failure_ends_the_request_and_cancels_the_calls_running() {
    let route = route(&[
        ("a", "/a", true),
        ("b", "/b", false),
        ("c", "/c/{a.x}", false),
    ]);
    let (a, a_ends) = signal();
    let (b, b_ends) = signal();
    let (_c, c_ends) = signal();
    let fake = Fake::new(vec![a_ends, b_ends, c_ends]);
    let drive = async {
        fake.until_started(&[0, 1]).await;
        a.send(Err(BackendError::NotAnObject)).unwrap();
    };
    let result = run(&route, &fake, drive).await;
    match result {
        Err(AggregateError::RequiredBackend { backend, error }) => {
            assert_eq!((backend.as_str(), error.code()), ("a", "not_an_object"));
        }
        Err(other) => panic!("{other:?}"),
        Ok(_) => panic!("a required backend failed"),
    }
    assert!(b.is_closed(), "b's call was dropped, not left running");
    assert_eq!(fake.started(), [0, 1], "c, which reads a, never started");
}

#[tokio::test(start_paused = true)]
async fn an_optional_failure_still_starts_the_backends_that_read_it() {
    let route = route(&[("a", "/a", false), ("c", "/c/{a.x}", false)]);
    let (a, a_ends) = signal();
    let fake = Fake::new(vec![
        a_ends,
        Ends::AtOnce(Err(BackendError::Shape("no a.x".into()))),
    ]);
    let drive = async {
        fake.until_started(&[0]).await;
        a.send(Err(BackendError::InvalidJson("eof".into())))
            .unwrap();
    };
    let result = run(&route, &fake, drive).await;
    assert_eq!(codes(&result.unwrap()), ["invalid_json", "missing_field"]);
    assert_eq!(fake.saw(1), [false, false], "a failed: no answer to read");
}

#[tokio::test(start_paused = true)]
async fn outcomes_known_at_start_need_no_call() {
    // As for fresh cache hits: every outcome is there when its backend starts.
    let route = route(&[
        ("a", "/a", false),
        ("b", "/b/{a.x}", false),
        ("c", "/c", false),
    ]);
    let fake = Fake::new(vec![
        Ends::AtOnce(ok(r#"{"x":1}"#)),
        Ends::AtOnce(unread("2")),
        Ends::AtOnce(unread("3")),
    ]);
    let outcomes = run(&route, &fake, async {}).await.unwrap();
    assert_eq!(codes(&outcomes), ["ok", "ok", "ok"]);
    assert_eq!(fake.started(), [0, 1, 2]);
    assert_eq!(fake.saw(1), [true, false, false]);
}
