//! The CEL values an evaluation binds, borrowed from a request's [`RenderInput`]: only
//! what the expression reads is built (see `analyze`), strings are borrowed rather than
//! copied, and `request` and header maps make a value when the expression reads its key
//! (JSON answers: see `json`).

use super::analyze::BackendRead;
use super::json::{Keys, json};
use crate::auth::Identity;
use crate::template::{Answered, RenderInput};
use crate::tls::client_cert::ClientCert;
use cel::ExecutionError;
use cel::common::traits::{self, Container, Indexer, Iterable, Sizer};
use cel::common::types::{
    self as cel_types, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString, Type,
};
use cel::common::value::{CowVal, Val};
use http::HeaderMap;
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

pub(super) fn map<'a>(entries: Vec<(&'a str, Box<dyn Val + 'a>)>) -> Box<dyn Val + 'a> {
    Box::new(CelMap::from(
        entries
            .into_iter()
            .map(|(k, v)| (CelMapKey::from(k), v))
            .collect::<HashMap<_, _>>(),
    ))
}

/// A string key of a lazy map, or the error a lookup with another type gives.
fn string_key(key: &dyn Val) -> Result<&str, ExecutionError> {
    key.downcast_ref::<CelString>()
        .map(|s| s.inner())
        .ok_or_else(|| ExecutionError::UnexpectedType {
            got: key.get_type().name().to_owned(),
            want: "string".to_owned(),
        })
}

fn no_such_key(name: &str) -> ExecutionError {
    ExecutionError::NoSuchKey(Arc::new(name.to_owned()))
}

/// Implements [`Val`] for a map whose values are made when read: `value(name)` gives
/// a key's value, `names()` the keys, in the struct's `keys` cache.
macro_rules! lazy_map {
    ($ty:ident) => {
        impl Val for $ty<'_> {
            fn get_type(&self) -> &Type {
                &cel_types::MAP_TYPE
            }

            fn cel_type() -> &'static Type {
                &cel_types::MAP_TYPE
            }

            fn as_container(&self) -> Option<&dyn Container> {
                Some(self)
            }

            fn as_indexer<'b, 'w>(&'b self) -> Option<&'b (dyn Indexer + 'w)>
            where
                Self: 'w,
            {
                Some(self)
            }

            fn as_iterable<'b, 'w>(&'b self) -> Option<&'b (dyn Iterable + 'w)>
            where
                Self: 'w,
            {
                Some(self)
            }

            fn as_sizer(&self) -> Option<&dyn Sizer> {
                Some(self)
            }

            fn clone_as_boxed<'w>(&self) -> Box<dyn Val + 'w>
            where
                Self: 'w,
            {
                Box::new(Self {
                    keys: OnceLock::new(),
                    ..*self
                })
            }
        }

        impl Indexer for $ty<'_> {
            fn get<'b, 'w>(&'b self, key: &dyn Val) -> Result<CowVal<'b, 'w>, ExecutionError>
            where
                Self: 'w,
            {
                let name = string_key(key)?;
                self.value(name)
                    .map(CowVal::Owned)
                    .ok_or_else(|| no_such_key(name))
            }

            fn steal<'w>(
                self: Box<Self>,
                key: &dyn Val,
            ) -> Result<Box<dyn Val + 'w>, ExecutionError>
            where
                Self: 'w,
            {
                let name = string_key(key)?;
                self.value(name).ok_or_else(|| no_such_key(name))
            }
        }

        impl Container for $ty<'_> {
            fn contains(&self, key: &dyn Val) -> Result<bool, ExecutionError> {
                Ok(self.value(string_key(key)?).is_some())
            }
        }

        impl Sizer for $ty<'_> {
            fn size(&self) -> CelInt {
                CelInt::from(i64::try_from(self.names().len()).unwrap_or(i64::MAX))
            }
        }

        impl Iterable for $ty<'_> {
            fn iter<'b, 'w>(&'b self) -> Box<dyn traits::Iterator<'b, 'w> + 'b>
            where
                Self: 'w,
            {
                Box::new(Keys {
                    keys: self.names(),
                    at: 0,
                })
            }
        }
    };
}

/// Header names (lower case) to their values, read when named; repeated headers are
/// joined with `, ` (RFC 9110 §5.3), values that are not UTF-8 are left out.
#[derive(Debug)]
struct Headers<'a> {
    headers: &'a HeaderMap,
    keys: OnceLock<Vec<Box<dyn Val + 'a>>>,
}

impl<'a> Headers<'a> {
    fn boxed(headers: &'a HeaderMap) -> Box<dyn Val + 'a> {
        Box::new(Self {
            headers,
            keys: OnceLock::new(),
        })
    }

    fn value(&self, name: &str) -> Option<Box<dyn Val + 'a>> {
        // Map keys are exact: `headers['X-Tier']` is not `x-tier`.
        if name.bytes().any(|b| b.is_ascii_uppercase()) {
            return None;
        }
        let all = self.headers.get_all(name);
        let mut values = all.iter().filter_map(|v| v.to_str().ok());
        let first = values.next()?;
        Some(match values.next() {
            None => Box::new(CelString::from(first)),
            Some(second) => {
                let mut joined = format!("{first}, {second}");
                for v in values {
                    joined.push_str(", ");
                    joined.push_str(v);
                }
                Box::new(CelString::from(joined))
            }
        })
    }

    fn names(&self) -> &[Box<dyn Val + 'a>] {
        self.keys.get_or_init(|| {
            self.headers
                .keys()
                .filter(|n| self.value(n.as_str()).is_some())
                .map(|n| Box::new(CelString::from(n.as_str())) as Box<dyn Val + 'a>)
                .collect()
        })
    }
}

lazy_map!(Headers);

/// `request`: its fields are made when read.
#[derive(Debug)]
struct Request<'a> {
    method: &'a http::Method,
    params: &'a matchit::Params<'a, 'a>,
    query: Option<&'a str>,
    headers: &'a HeaderMap,
    body: Option<&'a Json>,
    keys: OnceLock<Vec<Box<dyn Val + 'a>>>,
}

impl<'a> Request<'a> {
    fn value(&self, name: &str) -> Option<Box<dyn Val + 'a>> {
        Some(match name {
            "method" => Box::new(CelString::from(self.method.as_str())),
            "params" => map(self
                .params
                .iter()
                .map(|(k, v)| (k, Box::new(CelString::from(v)) as Box<dyn Val + 'a>))
                .collect()),
            "query" => {
                // The first value of each name, as `{query.NAME}` in a template reads it.
                let mut query: HashMap<CelMapKey<'a>, Box<dyn Val + 'a>> = HashMap::new();
                for (k, v) in form_urlencoded::parse(self.query.unwrap_or("").as_bytes()) {
                    query
                        .entry(CelMapKey::from(k.into_owned()))
                        .or_insert_with(|| Box::new(CelString::from(v)));
                }
                Box::new(CelMap::from(query))
            }
            "headers" => Headers::boxed(self.headers),
            // No body: no `body` key, so `has(request.body)` is false.
            "body" => json(self.body?),
            _ => return None,
        })
    }

    fn names(&self) -> &[Box<dyn Val + 'a>] {
        self.keys.get_or_init(|| {
            ["method", "params", "query", "headers", "body"]
                .into_iter()
                .filter(|n| *n != "body" || self.body.is_some())
                .map(|n| Box::new(CelString::from(n)) as Box<dyn Val + 'a>)
                .collect()
        })
    }
}

lazy_map!(Request);

/// `request`, its fields made as the expression reads them.
pub(super) fn request<'a>(input: &RenderInput<'a>) -> Box<dyn Val + 'a> {
    Box::new(Request {
        method: input.method,
        params: input.params,
        query: input.query,
        headers: input.headers,
        body: input.body,
        keys: OnceLock::new(),
    })
}

/// `auth`: the identity's subject, provider and claims; `null` for none.
pub(super) fn identity<'a>(identity: Option<&'a Identity>) -> Box<dyn Val + 'a> {
    let Some(identity) = identity else {
        return Box::new(CelNull);
    };
    map(vec![
        ("sub", Box::new(CelString::from(&*identity.subject))),
        ("provider", Box::new(CelString::from(&*identity.provider))),
        ("claims", json(&identity.claims)),
    ])
}

/// `client_cert`: the connection's verified client certificate, `null` without one.
pub(super) fn client_cert<'a>(cert: Option<&'a ClientCert>) -> Box<dyn Val + 'a> {
    let Some(cert) = cert else {
        return Box::new(CelNull);
    };
    let strings = |names: &'a [String]| -> Box<dyn Val + 'a> {
        Box::new(CelList::from(
            names
                .iter()
                .map(|n| Box::new(CelString::from(n.as_str())) as Box<dyn Val + 'a>)
                .collect::<Vec<_>>(),
        ))
    };
    map(vec![
        ("subject", Box::new(CelString::from(&*cert.subject))),
        (
            "fingerprint",
            Box::new(CelString::from(cert.fingerprint.as_str())),
        ),
        ("dns", strings(&cert.dns)),
        ("uri", strings(&cert.uri)),
    ])
}

/// `responses.NAME`: the answer's status, the headers the condition reads, and its body
/// when read there.
pub(super) fn response<'a>(read: &'a BackendRead, answer: &'a Answered) -> Box<dyn Val + 'a> {
    let mut out: Vec<(&'a str, Box<dyn Val + 'a>)> = Vec::with_capacity(3);
    out.push((
        "status",
        Box::new(CelInt::from(i64::from(answer.status.as_u16()))),
    ));
    out.push(("headers", Headers::boxed(&answer.headers)));
    if read.responses_body {
        out.push(("body", json(&answer.body)));
    }
    map(out)
}
