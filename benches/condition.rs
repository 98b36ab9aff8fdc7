//! What deciding a backend's `when` costs per request: typical conditions over realistic
//! answers and request headers. `cargo bench --bench condition`; the target is under
//! 2 µs per evaluation.

use criterion::{Criterion, criterion_group, criterion_main};
use fanout::condition::Condition;
use fanout::template::{Answered, RenderInput};
use http::{HeaderMap, Method};
use serde_json::json;
use std::hint::black_box;

const BACKENDS: &[&str] = &["user", "cart", "prices"];

/// A user profile, a cart of five lines and a price list: answers as upstreams give them.
fn answers() -> Vec<Option<Answered>> {
    let user = json!({
        "id": 42, "name": "Ada Lovelace", "email": "ada@example.com", "plan": "pro",
        "tenant_id": "t-9", "country": "GB", "created_at": "2024-03-01T10:00:00Z",
        "verified": true, "roles": ["buyer", "beta"], "locale": "en-GB",
        "address": {"street": "1 Analytical Row", "city": "London", "zip": "N1 9GU"},
        "loyalty": {"points": 1200, "tier": "gold"}
    });
    let items: Vec<_> = (0..5)
        .map(|i| {
            json!({"sku": format!("SKU-{i}"), "qty": i + 1, "price": 9.99 + f64::from(i),
                        "name": format!("Item {i}"), "tags": ["a", "b"]})
        })
        .collect();
    let cart = json!({"id": "c-1", "items": items, "currency": "EUR", "total": 74.95});
    let prices = json!({"list": (0..40).map(|i| json!({"sku": i, "eur": i})).collect::<Vec<_>>()});
    vec![
        Some(Answered::ok(user)),
        Some(Answered::ok(cart)),
        Some(Answered::ok(prices)),
    ]
}

/// The headers a browser sends through a load balancer.
fn headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("host", "shop.example.com"),
        (
            "user-agent",
            "Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
        ),
        ("accept", "application/json"),
        ("accept-language", "en-GB,en;q=0.5"),
        ("accept-encoding", "gzip, deflate, br"),
        ("authorization", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x"),
        ("x-forwarded-for", "203.0.113.7"),
        ("x-request-id", "5f0c6b1e-4c1a-4a8e-9d5e-2f6a7c9b1d3e"),
        ("x-tier", "gold"),
        ("content-type", "application/json"),
    ] {
        h.insert(k, v.parse().unwrap());
    }
    h
}

fn conditions(c: &mut Criterion) {
    let answers = answers();
    let headers = headers();
    let params = matchit::Params::new();
    let method = Method::POST;
    let input = RenderInput {
        method: &method,
        params: &params,
        query: Some("page=2&sort=price"),
        headers: &headers,
        body: None,
        answers: &answers,
        item: None,
        auth: None,
        client_cert: None,
    };
    for (name, expr) in [
        ("user_plan", "user.plan == 'pro'"),
        ("cart_size", "size(cart.items) > 0"),
        (
            "method_and_header",
            "request.method == 'POST' && request.headers['x-tier'] == 'gold'",
        ),
    ] {
        let condition = Condition::compile(expr, BACKENDS).unwrap();
        assert_eq!(condition.evaluate(&input), Ok(true), "{expr}");
        c.bench_function(name, |b| {
            b.iter(|| black_box(&condition).evaluate(black_box(&input)))
        });
    }
}

criterion_group!(benches, conditions);
criterion_main!(benches);
