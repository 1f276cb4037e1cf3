//! The HTTP endpoints: the Google-shaped geocoder with its fault knobs, and
//! the small helpers (`/echo`, `/text`, `/healthz`); the look-alikes of
//! other API shapes live in their own modules and are merged in here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use serde_json::{Map, Value, json};

use crate::budget::Config;
use crate::knobs::Knobs;
use crate::places::{self, Place};
use crate::{mapbox, users, validate};

/// Largest request body `/echo` reads; above axum's 2 MB default so body
/// size tests have room, still bounded so a runaway client cannot exhaust
/// memory.
const MAX_REQUEST_BODY: usize = 16 * 1024 * 1024;

/// Google's wording for a request without an address.
const MISSING_ADDRESS: &str =
    "Invalid request. Missing the 'address', 'components', 'latlng' or 'place_id' parameter.";

/// Google's wording for a rate-limited call.
const OVER_LIMIT: &str = "You have exceeded your rate-limit for this API.";

/// State shared by all connections.
#[derive(Clone, Default)]
struct AppState {
    /// Calls seen so far per `fail_first` key. A plain mutex is enough: it
    /// is held for one map update, never across an await.
    fail_counts: Arc<Mutex<HashMap<String, u32>>>,
}

impl AppState {
    /// Counts one more call for `key` and returns the new count (1-based).
    fn count_call(&self, key: &str) -> u32 {
        // A poisoned lock only means another request panicked mid-update of
        // a counter; the map is still usable for a demo server.
        let mut counts = self
            .fail_counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(key.to_owned()).or_insert(0);
        *count = count.saturating_add(1);
        *count
    }
}

/// Builds the router with fresh state (fail counters start at zero, the
/// budget is full).
pub(crate) fn router(config: &Config) -> Router {
    Router::new()
        .route("/maps/api/geocode/json", get(geocode))
        .route("/echo", any(echo))
        .route("/echo/{*rest}", any(echo))
        .route("/text", get(text))
        .route("/healthz", get(healthz))
        .with_state(AppState::default())
        .merge(mapbox::routes())
        .merge(validate::routes())
        .merge(users::routes(config))
        .layer(DefaultBodyLimit::max(MAX_REQUEST_BODY))
}

/// `GET /maps/api/geocode/json`: Google Geocoding API look-alike.
///
/// Knobs apply in this order: `hang`, `delay_ms`, `fail_first`, then the
/// normal answer with `status` and `body_bytes` applied.
async fn geocode(
    State(state): State<AppState>,
    Query(params): Query<Vec<(String, String)>>,
) -> Response {
    let echo = echo_params(&params);
    let knobs = match Knobs::parse(&params) {
        Ok(knobs) => knobs,
        Err(err) => {
            let body = json!({
                "results": [],
                "status": "INVALID_REQUEST",
                "error_message": format!("demo-api: bad fault knob: {err}"),
                "echo": echo,
            });
            return json_response(StatusCode::BAD_REQUEST, None, body, None, false);
        }
    };

    knobs.wait().await;

    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let address = param("address").unwrap_or("");

    if let Some(fail_first) = knobs.fail_first {
        let key = knobs
            .fail_key
            .as_deref()
            .or_else(|| param("key"))
            .unwrap_or(address);
        let call = state.count_call(key);
        if call <= fail_first {
            let http = knobs.fail_status.unwrap_or(StatusCode::OK);
            let status = if http.is_success() {
                "OVER_QUERY_LIMIT"
            } else {
                "ERROR"
            };
            let body = json!({
                "results": [],
                "status": status,
                "error_message": OVER_LIMIT,
                "echo": echo,
            });
            let retry_after = knobs.retry_after.clone();
            return json_response(http, retry_after, body, knobs.body_bytes, knobs.pretty);
        }
    }

    let mut body = if address.trim().is_empty() {
        json!({
            "results": [],
            "status": "INVALID_REQUEST",
            "error_message": MISSING_ADDRESS,
        })
    } else {
        match places::find(address) {
            Some(place) => json!({ "results": [result_json(place)], "status": "OK" }),
            None => json!({ "results": [], "status": "ZERO_RESULTS" }),
        }
    };
    let http = knobs.status.unwrap_or(StatusCode::OK);
    if !http.is_success() {
        body["status"] = json!("ERROR");
        body["error_message"] = json!(format!("demo-api: forced HTTP status {}", http.as_u16()));
    }
    body["echo"] = Value::Object(echo);
    // Retry-After only on statuses a knob forced, so a plain answer looks
    // exactly like Google's.
    let retry_after = knobs.status.and(knobs.retry_after);
    json_response(http, retry_after, body, knobs.body_bytes, knobs.pretty)
}

/// One entry of `results`, shaped like Google's for a city.
fn result_json(place: &Place) -> Value {
    json!({
        "formatted_address": place.formatted,
        "geometry": {
            "location": { "lat": place.lat, "lng": place.lng },
            "location_type": "APPROXIMATE",
        },
        "place_id": place.place_id(),
        "types": ["locality", "political"],
    })
}

/// `/echo` (any method): reflects the request so tests can check exactly
/// what a client sent.
async fn echo(
    method: Method,
    uri: Uri,
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header_pairs: Vec<(String, String)> = headers
        .iter()
        .map(|(name, value)| {
            // Names from `http` are already lower-case; values may be
            // arbitrary bytes, shown lossily rather than refused.
            let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
            (name.as_str().to_owned(), value)
        })
        .collect();
    let body = json!({
        "method": method.as_str(),
        "path": uri.path(),
        "raw_query": uri.query(),
        "query": echo_params(&params),
        "headers": echo_params(&header_pairs),
        "body": String::from_utf8_lossy(&body),
        "body_len": body.len(),
    });
    json_response(StatusCode::OK, None, body, None, false)
}

/// `GET /text`: a fixed non-JSON body.
async fn text() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "hello from demo-api\n",
    )
}

/// `GET /healthz`: liveness for scripts waiting on startup.
async fn healthz() -> &'static str {
    "ok"
}

/// Name -> value map of pairs; a repeated name maps to an array of all its
/// values in order, so tests can see duplicates arrive.
pub(crate) fn echo_params(pairs: &[(String, String)]) -> Map<String, Value> {
    let mut map = Map::new();
    for (name, value) in pairs {
        let value = Value::String(value.clone());
        match map.get_mut(name) {
            None => {
                map.insert(name.clone(), value);
            }
            Some(Value::Array(values)) => values.push(value),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, value]);
            }
        }
    }
    map
}

/// Serialises `body` as an `application/json` response, padded to at least
/// `min_bytes` bytes when asked.
pub(crate) fn json_response(
    status: StatusCode,
    retry_after: Option<HeaderValue>,
    body: Value,
    min_bytes: Option<usize>,
    pretty: bool,
) -> Response {
    let text = if pretty {
        serde_json::to_string_pretty(&body).unwrap_or_else(|_| body.to_string())
    } else {
        render(body, min_bytes)
    };
    let mut response = (status, text).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(value) = retry_after {
        headers.insert(header::RETRY_AFTER, value);
    }
    response
}

/// Serialises `body`; with `min_bytes`, adds a `padding` field sized so the
/// text is exactly `min_bytes` long (or its natural size if already larger).
fn render(mut body: Value, min_bytes: Option<usize>) -> String {
    let Some(min) = min_bytes else {
        return body.to_string();
    };
    // Serialise once with an empty pad to learn the size, then grow the pad
    // by the missing bytes: each ASCII 'x' adds exactly one byte.
    body["padding"] = json!("");
    let text = body.to_string();
    if text.len() >= min {
        return text;
    }
    body["padding"] = Value::String("x".repeat(min - text.len()));
    body.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_params_groups_repeats() {
        let pairs: Vec<(String, String)> = [("a", "1"), ("b", "2"), ("a", "3"), ("a", "4")]
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let map = Value::Object(echo_params(&pairs));
        assert_eq!(map, json!({"a": ["1", "3", "4"], "b": "2"}));
    }

    #[test]
    fn padding_reaches_exact_size() {
        let body = json!({"status": "OK"});
        assert_eq!(render(body.clone(), Some(1000)).len(), 1000);
        assert_eq!(render(body.clone(), None), r#"{"status":"OK"}"#);
        // Already big enough: still valid JSON, just not shrunk.
        let small = render(body, Some(3));
        assert!(small.len() >= 3 && small.contains("padding"));
    }

    #[test]
    fn fail_counter_counts_per_key() {
        let state = AppState::default();
        assert_eq!(state.count_call("a"), 1);
        assert_eq!(state.count_call("a"), 2);
        assert_eq!(state.count_call("b"), 1);
    }
}
