//! A job's parameters as written: a table's cells as text, a JSON Lines
//! job's `params` as raw JSON, so that `12345678901234567890123` or `1.50`
//! reach the query string digit for digit (serde_json would make them
//! floats), and the row's values for templates (template.rs).

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::jobs::expand::expand_env;
use crate::jobs::template::{Cell, Lookup};

/// One parameter's value.
#[derive(Debug)]
pub(crate) enum ParamValue {
    /// A table's cell.
    Text(String),
    /// A JSON Lines value as written.
    Raw(Box<RawValue>),
}

/// A job's parameters, in order.
#[derive(Debug, Default)]
pub(crate) struct Params(pub(crate) Vec<(String, ParamValue)>);

impl<'de> serde::Deserialize<'de> for Params {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Params;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object of parameters")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Params, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = map.next_entry::<String, Box<RawValue>>()? {
                    out.push((k, ParamValue::Raw(v)));
                }
                Ok(Params(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl Lookup for Params {
    fn cell(&self, name: &str) -> Option<Cell<'_>> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| match v {
                ParamValue::Text(t) => Cell::Text(t),
                ParamValue::Raw(r) => Cell::Raw(r),
            })
    }
}

/// Appends `key=value` (or one pair per element of an array) to a query.
pub(crate) fn append_param(
    pairs: &mut url::form_urlencoded::Serializer<'_, url::UrlQuery<'_>>,
    key: &str,
    value: &ParamValue,
) -> Result<(), String> {
    let err = |e: String| format!("params.{key}: {e}");
    match value {
        ParamValue::Text(t) => {
            pairs.append_pair(key, &expand_env(t).map_err(err)?);
        }
        ParamValue::Raw(r) if r.get().starts_with('[') => {
            let items: Vec<Box<RawValue>> =
                serde_json::from_str(r.get()).map_err(|e| err(e.to_string()))?;
            for item in items {
                let text = scalar_text(&item).map_err(err)?.ok_or_else(|| {
                    format!("params.{key}: an array may hold only strings, numbers and booleans")
                })?;
                pairs.append_pair(key, &text);
            }
        }
        ParamValue::Raw(r) => {
            let text = scalar_text(r).map_err(err)?.ok_or_else(|| {
                format!(
                    "params.{key}: a value must be a string, number, boolean or an array of them"
                )
            })?;
            pairs.append_pair(key, &text);
        }
    }
    Ok(())
}

/// A scalar's text: a string decoded and `${NAME}`-expanded, a number or
/// boolean as written; `None` for anything else.
fn scalar_text(raw: &RawValue) -> Result<Option<String>, String> {
    let text = raw.get();
    Ok(match text.as_bytes().first() {
        Some(b'"') => {
            let s: String = serde_json::from_str(text).map_err(|e| e.to_string())?;
            Some(expand_env(&s)?)
        }
        Some(b'-' | b'0'..=b'9') | Some(b't' | b'f') => Some(text.to_string()),
        _ => None,
    })
}
