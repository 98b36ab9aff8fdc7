//! JSON answers as CEL values, read lazily: an object is a CEL map whose fields are
//! converted when the expression reads them ([`JsonObject`]), strings are borrowed, so
//! `user.plan == 'pro'` converts one string, not the whole answer.

use cel::ExecutionError;
use cel::common::traits::{self, Container, Indexer, Iterable, Sizer};
use cel::common::types::{
    self as cel_types, CelBool, CelDouble, CelInt, CelList, CelMap, CelMapKey, CelNull, CelString,
    CelUInt, Type,
};
use cel::common::value::{CowVal, Val};
use serde_json::Value as Json;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// A JSON value as CEL: an integer stays an `int` (or a `uint` above `i64::MAX`), other
/// numbers are `double`s; an array is a list of its elements, an object a [`JsonObject`].
pub(super) fn json<'a>(value: &'a Json) -> Box<dyn Val + 'a> {
    match value {
        Json::Null => Box::new(CelNull),
        Json::Bool(b) => Box::new(CelBool::from(*b)),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                Box::new(CelInt::from(i))
            } else if let Some(u) = n.as_u64() {
                Box::new(CelUInt::from(u))
            } else {
                Box::new(CelDouble::from(n.as_f64().unwrap_or(f64::NAN)))
            }
        }
        Json::String(s) => Box::new(CelString::from(s.as_str())),
        Json::Array(items) => Box::new(CelList::from(
            items.iter().map(json).collect::<Vec<Box<dyn Val + 'a>>>(),
        )),
        Json::Object(fields) => Box::new(JsonObject {
            fields,
            keys: OnceLock::new(),
        }),
    }
}

/// A JSON value converted whole, for the rare comparison of an object with a map.
fn eager<'a>(value: &'a Json) -> Box<dyn Val + 'a> {
    match value {
        Json::Object(fields) => Box::new(CelMap::from(
            fields
                .iter()
                .map(|(k, v)| (CelMapKey::from(k.as_str()), eager(v)))
                .collect::<HashMap<_, _>>(),
        )),
        Json::Array(items) => Box::new(CelList::from(
            items.iter().map(eager).collect::<Vec<Box<dyn Val + 'a>>>(),
        )),
        other => json(other),
    }
}

/// A JSON object as a CEL map whose fields are converted when read.
#[derive(Debug)]
pub(super) struct JsonObject<'a> {
    fields: &'a serde_json::Map<String, Json>,
    /// The keys as CEL strings, made when a comprehension iterates over them.
    keys: OnceLock<Vec<Box<dyn Val + 'a>>>,
}

impl<'a> JsonObject<'a> {
    fn field(&self, key: &dyn Val) -> Result<Option<&'a Json>, ExecutionError> {
        match key.downcast_ref::<CelString>() {
            Some(name) => Ok(self.fields.get(name.inner())),
            None => Err(ExecutionError::UnexpectedType {
                got: key.get_type().name().to_owned(),
                want: "string".to_owned(),
            }),
        }
    }

    fn missing(key: &dyn Val) -> ExecutionError {
        let name = key
            .downcast_ref::<CelString>()
            .map_or_else(String::new, |s| s.inner().to_owned());
        ExecutionError::NoSuchKey(Arc::new(name))
    }
}

impl Val for JsonObject<'_> {
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

    fn equals(&self, other: &dyn Val) -> bool {
        let whole = serde_json::Value::Object(self.fields.clone());
        eager(&whole).equals(other)
    }

    fn clone_as_boxed<'w>(&self) -> Box<dyn Val + 'w>
    where
        Self: 'w,
    {
        Box::new(JsonObject {
            fields: self.fields,
            keys: OnceLock::new(),
        })
    }
}

impl Indexer for JsonObject<'_> {
    fn get<'b, 'w>(&'b self, key: &dyn Val) -> Result<CowVal<'b, 'w>, ExecutionError>
    where
        Self: 'w,
    {
        match self.field(key)? {
            Some(value) => Ok(CowVal::Owned(json(value))),
            None => Err(Self::missing(key)),
        }
    }

    fn steal<'w>(self: Box<Self>, key: &dyn Val) -> Result<Box<dyn Val + 'w>, ExecutionError>
    where
        Self: 'w,
    {
        match self.field(key)? {
            Some(value) => Ok(json(value)),
            None => Err(Self::missing(key)),
        }
    }
}

impl Container for JsonObject<'_> {
    fn contains(&self, key: &dyn Val) -> Result<bool, ExecutionError> {
        self.field(key).map(|v| v.is_some())
    }
}

impl Sizer for JsonObject<'_> {
    fn size(&self) -> CelInt {
        CelInt::from(i64::try_from(self.fields.len()).unwrap_or(i64::MAX))
    }
}

impl Iterable for JsonObject<'_> {
    fn iter<'b, 'w>(&'b self) -> Box<dyn traits::Iterator<'b, 'w> + 'b>
    where
        Self: 'w,
    {
        let keys = self.keys.get_or_init(|| {
            self.fields
                .keys()
                .map(|k| Box::new(CelString::from(k.as_str())) as Box<dyn Val>)
                .collect()
        });
        Box::new(Keys { keys, at: 0 })
    }
}

/// Map keys made once, lent one by one to a comprehension.
pub(super) struct Keys<'b, 'a> {
    pub keys: &'b [Box<dyn Val + 'a>],
    pub at: usize,
}

impl<'b, 'a: 'w, 'w> traits::Iterator<'b, 'w> for Keys<'b, 'a> {
    fn next(&mut self) -> Option<&'b (dyn Val + 'w)> {
        let key = self.keys.get(self.at)?;
        self.at += 1;
        Some(key.as_ref())
    }
}
