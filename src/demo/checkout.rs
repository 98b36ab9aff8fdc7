//! The write side of the sample services, what the demo's checkout route calls: placing
//! an order (`POST /orders`, answered `201` with its `Location`), reserving stock,
//! charging a card and crediting loyalty points. Each reads the JSON body it is sent and
//! answers from it, so what a body template put there shows in the answer; a body that
//! is not what the service expects is a `400` naming the field, as a real service's is.

use super::{Reply, Sample};
use http::{Method, StatusCode};
use serde_json::{Value, json};
use std::time::Duration;

/// Most units of one item a reservation accepts; more is `409 out of stock`.
const MAX_QTY: u64 = 10;

/// The card token the payments sample declines (`402`), to show a required call failing.
pub const DECLINED_CARD: &str = "tok_declined";

/// The answer of a write sample to `method path` with `body`, or `None` when the sample
/// has no write at that path. `n` counts the service's calls (the new ids come from it).
pub(super) fn answer(
    sample: Sample,
    method: &Method,
    path: &str,
    body: &[u8],
    n: u64,
) -> Option<Reply> {
    let write = match (sample, path) {
        (Sample::Orders, "/orders")
        | (Sample::Stock, "/stock/reservations")
        | (Sample::Payments, "/payments")
        | (Sample::Loyalty, "/loyalty/points") => sample,
        _ => return None,
    };
    if method != Method::POST {
        // The orders service also answers reads at its path: the recent orders.
        if write == Sample::Orders {
            return None;
        }
        return Some(Reply::json(
            StatusCode::METHOD_NOT_ALLOWED,
            5,
            json!({"error": "POST only"}),
        ));
    }
    let body: Value = match serde_json::from_slice(body) {
        Ok(Value::Object(fields)) => Value::Object(fields),
        _ => return Some(bad_request("the body must be a JSON object")),
    };
    Some(match write {
        Sample::Orders => place_order(&body, n),
        Sample::Stock => reserve(&body, n),
        Sample::Payments => charge(&body, n),
        _ => credit(&body),
    })
}

fn bad_request(why: &str) -> Reply {
    Reply::json(StatusCode::BAD_REQUEST, 5, json!({ "error": why }))
}

/// Reads `field` of `body` as a whole number (a number or a string of digits, since a
/// path parameter reaches a template as text).
fn whole(body: &Value, field: &str) -> Option<u64> {
    match &body[field] {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// `[{"sku": "...", "qty": N}, ...]`, every quantity at least 1.
fn items(body: &Value) -> Option<Vec<(&str, u64)>> {
    let list = body["items"].as_array().filter(|l| !l.is_empty())?;
    list.iter()
        .map(|item| {
            let sku = item["sku"].as_str().filter(|s| !s.is_empty())?;
            let qty = item["qty"].as_u64().filter(|q| *q > 0)?;
            Some((sku, qty))
        })
        .collect()
}

/// A made-up price, the same for the same sku: 1.99 to 40.99.
fn price_cents(sku: &str) -> u64 {
    let seed: u64 = sku.bytes().map(u64::from).sum();
    (seed % 40 + 1) * 100 + 99
}

/// `POST /orders` `{"user": ID, "items": [...]}`: `201`, `Location: /orders/ID`.
fn place_order(body: &Value, n: u64) -> Reply {
    let Some(user) = whole(body, "user") else {
        return bad_request("user: a user id is required");
    };
    let Some(items) = items(body) else {
        return bad_request("items: a list of {sku, qty} is required");
    };
    let cents: u64 = items.iter().map(|(sku, qty)| price_cents(sku) * qty).sum();
    let id = 5000 + n;
    let order = json!({
        "id": id,
        "user": user,
        "items": items.len(),
        "total": cents as f64 / 100.0,
        "status": "placed",
    });
    Reply::json(StatusCode::CREATED, 40, order).with_location(format!("/orders/{id}"))
}

/// `POST /stock/reservations` `{"order": ID, "items": [...]}`: `201`, or `409` when an
/// item asks for more than [`MAX_QTY`].
fn reserve(body: &Value, n: u64) -> Reply {
    let Some(order) = whole(body, "order") else {
        return bad_request("order: an order id is required");
    };
    let Some(items) = items(body) else {
        return bad_request("items: a list of {sku, qty} is required");
    };
    if let Some((sku, _)) = items.iter().find(|(_, qty)| *qty > MAX_QTY) {
        return Reply::json(
            StatusCode::CONFLICT,
            10,
            json!({"error": "out of stock", "sku": sku}),
        );
    }
    let units: u64 = items.iter().map(|(_, qty)| qty).sum();
    let reservation = json!({"id": format!("res-{n}"), "order": order, "units": units});
    Reply::json(StatusCode::CREATED, 25, reservation)
}

/// `POST /payments` `{"order": ID, "amount": 12.5, "card": "tok_..."}`: `201` captured,
/// or `402` for [`DECLINED_CARD`].
fn charge(body: &Value, n: u64) -> Reply {
    let Some(order) = whole(body, "order") else {
        return bad_request("order: an order id is required");
    };
    let Some(amount) = body["amount"].as_f64().filter(|a| *a > 0.0) else {
        return bad_request("amount: a positive number is required");
    };
    let Some(card) = body["card"].as_str().filter(|c| c.starts_with("tok_")) else {
        return bad_request("card: a card token (tok_...) is required");
    };
    if card == DECLINED_CARD {
        return Reply::json(
            StatusCode::PAYMENT_REQUIRED,
            30,
            json!({"error": "card declined"}),
        );
    }
    let payment = json!({
        "id": format!("pay-{n}"),
        "order": order,
        "amount": amount,
        "status": "captured",
    });
    Reply::json(StatusCode::CREATED, 35, payment)
}

/// `POST /loyalty/points` `{"user": ID, "order": ID, "amount": 12.5}`: a point per whole
/// unit spent.
fn credit(body: &Value) -> Reply {
    let (Some(user), Some(order)) = (whole(body, "user"), whole(body, "order")) else {
        return bad_request("user and order: ids are required");
    };
    let Some(amount) = body["amount"].as_f64().filter(|a| *a >= 0.0) else {
        return bad_request("amount: a number is required");
    };
    let points = json!({"user": user, "order": order, "points": amount.floor() as u64});
    Reply::json(StatusCode::CREATED, 15, points)
}

impl Reply {
    fn json(status: StatusCode, delay_ms: u64, body: Value) -> Self {
        Self {
            status,
            delay: Duration::from_millis(delay_ms),
            body: body.to_string(),
            location: None,
        }
    }

    fn with_location(mut self, location: String) -> Self {
        self.location = Some(location);
        self
    }
}
