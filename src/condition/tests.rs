use super::*;
use crate::template::Answered;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{Value as Json, json};

const BACKENDS: &[&str] = &["user", "cart", "order"];

/// The values of one request: `method`, a route `/users/{id}` matched with id 7, and
/// the answers by backend index.
struct Request {
    method: Method,
    query: Option<&'static str>,
    headers: HeaderMap,
    body: Option<Json>,
    answers: Vec<Option<Answered>>,
}

impl Request {
    fn new() -> Self {
        Self {
            method: Method::GET,
            query: None,
            headers: HeaderMap::new(),
            body: None,
            answers: vec![None, None, None],
        }
    }

    fn answer(mut self, index: usize, body: Json) -> Self {
        self.answers[index] = Some(Answered::ok(body));
        self
    }

    fn eval(&self, expr: &str) -> Result<bool, ConditionError> {
        let condition = Condition::compile(expr, BACKENDS).unwrap();
        let mut router = matchit::Router::new();
        router.insert("/users/{id}", ()).unwrap();
        let matched = router.at("/users/7").unwrap();
        condition.evaluate(&RenderInput {
            method: &self.method,
            params: &matched.params,
            query: self.query,
            headers: &self.headers,
            body: self.body.as_ref(),
            answers: &self.answers,
            item: None,
            auth: None,
            client_cert: None,
        })
    }
}

#[test]
fn conditions_over_answers() {
    let r = Request::new()
        .answer(
            0,
            json!({"plan": "pro", "age": 41, "score": 2.5, "tags": ["a", "b"]}),
        )
        .answer(1, json!({"items": [{"price": 12}, {"price": 3}]}));
    for (expr, want) in [
        ("user.plan == 'pro'", true),
        ("user.plan == 'free'", false),
        ("user.age > 40 && user.score < 3.0", true),
        ("'b' in user.tags", true),
        ("size(cart.items) > 0", true),
        ("cart.items.exists(i, i.price > 10)", true),
        ("cart.items.all(i, i.price > 10)", false),
        ("has(user.plan) && !has(user.missing)", true),
        ("size(user) == 4 && 'plan' in user", true),
        ("user.exists(k, k == 'score')", true),
        ("cart.items[0] == {'price': 12}", true),
        ("cart.items[1].price == 3u && user.score == 2.5", true),
    ] {
        assert_eq!(r.eval(expr), Ok(want), "{expr}");
    }
}

#[test]
fn conditions_over_the_request() {
    let mut r = Request::new();
    r.method = Method::POST;
    r.query = Some("tier=gold&tier=silver&q=a%20b");
    r.headers.insert("x-tier", "gold".parse().unwrap());
    r.headers.append("accept", "a".parse().unwrap());
    r.headers.append("accept", "b".parse().unwrap());
    r.body = Some(json!({"amount": 120, "items": [1, 2]}));
    for (expr, want) in [
        ("request.method == 'POST'", true),
        ("request.params.id == '7'", true),
        (
            "request.query.tier == 'gold' && request.query.q == 'a b'",
            true,
        ),
        ("request.headers['x-tier'] == 'gold'", true),
        ("request.headers.accept == 'a, b'", true),
        ("'x-other' in request.headers", false),
        (
            "request.body.amount >= 100 && size(request.body.items) == 2",
            true,
        ),
        (
            "request.method == 'POST' && request.headers['x-tier'] == 'gold'",
            true,
        ),
    ] {
        assert_eq!(r.eval(expr), Ok(want), "{expr}");
    }
    let no_body = Request::new();
    assert_eq!(no_body.eval("has(request.body)"), Ok(false));
    assert!(matches!(
        no_body.eval("request.body.amount > 1"),
        Err(ConditionError::Evaluation(_))
    ));
}

#[test]
fn responses_give_status_headers_and_body() {
    let mut answered = Answered::ok(json!({"id": 9}));
    answered.status = StatusCode::CREATED;
    answered
        .headers
        .insert("location", "/orders/9".parse().unwrap());
    let mut r = Request::new();
    r.answers[2] = Some(answered);
    for (expr, want) in [
        ("responses.order.status == 201", true),
        ("responses.order.headers['location'] == '/orders/9'", true),
        (
            "responses.order.headers.location.startsWith('/orders/')",
            true,
        ),
        ("responses.order.body.id == 9 && order.id == 9", true),
    ] {
        assert_eq!(r.eval(expr), Ok(want), "{expr}");
    }
}

#[test]
fn run_time_failures_are_errors() {
    let r = Request::new().answer(0, json!({"plan": "pro", "age": 41}));
    assert!(matches!(
        r.eval("user.missing == 1"),
        Err(ConditionError::Evaluation(m)) if m.contains("missing")
    ));
    assert!(matches!(
        r.eval("user.plan > 3"),
        Err(ConditionError::Evaluation(_))
    ));
    assert_eq!(
        r.eval("user.plan"),
        Err(ConditionError::NotBool("string".into()))
    );
    // cart (index 1) has no answer: it failed.
    assert_eq!(
        r.eval("size(cart.items) > 0"),
        Err(ConditionError::NoAnswer("cart".into()))
    );
    assert_eq!(
        ConditionError::NoAnswer("cart".into()).to_string(),
        "when reads cart, which has no answer (it failed)"
    );
}

#[test]
fn compile_records_what_is_read() {
    let c = Condition::compile(
        "user.plan == 'pro' && responses.order.headers['etag'] != '' && request.body.x == 1",
        BACKENDS,
    )
    .unwrap();
    assert_eq!(c.answers_read().collect::<Vec<_>>(), vec![0, 2]);
    assert!(c.reads_request_body());
    assert_eq!(c.headers_read(2), &[HeaderName::from_static("etag")]);
    assert!(c.headers_read(0).is_empty());
    assert!(c.source().starts_with("user.plan == 'pro' && "));

    let c = Condition::compile("request.method == 'GET'", BACKENDS).unwrap();
    assert_eq!(c.answers_read().count(), 0);
    assert!(!c.reads_request_body());
    // The whole request reads its body too.
    assert!(
        Condition::compile("size(request) > 0", BACKENDS)
            .unwrap()
            .reads_request_body()
    );
    // Names a comprehension binds are not reads.
    let c = Condition::compile("cart.items.exists(user, user.price > 1)", BACKENDS).unwrap();
    assert_eq!(c.answers_read().collect::<Vec<_>>(), vec![1]);
}

#[test]
fn compile_refuses_with_a_reason() {
    for (expr, wanted) in [
        ("user.plan ==", "syntax error at line 1, column 13"),
        ("user.plan = 'pro'", "syntax error at line 1, column 11"),
        ("", "is empty"),
        ("nobody.plan == 'pro'", "\"nobody\" is not a name"),
        (
            "nobody.plan == 'pro'",
            "request, responses, user, cart, order",
        ),
        ("responses.nobody.status == 200", "\"nobody\" is not a name"),
        (
            "responses.order == 1",
            "responses.order is read by its status",
        ),
        ("responses.order.headers == {}", "one header at a time"),
        ("responses.order.headers['ETag'] == ''", "lower case"),
        (
            "responses.order.headers[user.h] == ''",
            "must name its header as a string",
        ),
        (
            "responses.order.size == 1",
            "an answer has status, headers and body",
        ),
        ("size(responses) > 0", "responses is read by backend"),
        ("request.path == '/'", "the request has method, params"),
    ] {
        let error = Condition::compile(expr, BACKENDS).unwrap_err();
        assert!(error.contains(wanted), "{expr}: {error}");
    }
}

#[test]
fn conditions_are_shared_between_threads_and_equal_by_source() {
    fn shared<T: Send + Sync>() {}
    shared::<Condition>();
    let a = Condition::compile("user.plan == 'pro'", BACKENDS).unwrap();
    assert_eq!(a.clone(), a);
    assert_ne!(
        a,
        Condition::compile("user.plan == 'free'", BACKENDS).unwrap()
    );
}
