//! `GET /geocoding/v5/mapbox.places/{query}.json?access_token=...`: the
//! demo gazetteer in the shape of Mapbox's (v5) geocoder, for clients that
//! put a value in a URL path.
//!
//! The query is one path segment, percent-encoded: this route decodes it
//! itself from the raw path (a `%2F` in it is a `/` of the query, never a
//! path separator) and echoes both the decoded query and the raw path, so
//! a test sees exactly what arrived. The knobs `hang`, `delay_ms`,
//! `status` and `retry_after` work as on the Google-shaped geocoder.

use axum::Router;
use axum::extract::Query;
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use crate::knobs::Knobs;
use crate::places::{self, Place};
use crate::routes::{echo_params, json_response};

/// The path before the query segment.
const PREFIX: &str = "/geocoding/v5/mapbox.places/";

/// The routes of this module.
pub(crate) fn routes() -> Router {
    Router::new().route("/geocoding/v5/mapbox.places/{file}", get(places_json))
}

/// `GET /geocoding/v5/mapbox.places/{query}.json`.
async fn places_json(uri: Uri, Query(params): Query<Vec<(String, String)>>) -> Response {
    let raw_path = uri.path();
    let mut echo = json!({
        "path": raw_path,
        "query": null,
        "params": echo_params(&params),
    });
    let reply = |status: StatusCode, message: String, echo: Value| {
        let body = json!({"message": message, "echo": echo});
        json_response(status, None, body, None, false)
    };
    // The router matched one segment after PREFIX, still percent-encoded.
    let segment = raw_path.strip_prefix(PREFIX).unwrap_or_default();
    let Some(encoded) = segment.strip_suffix(".json") else {
        return reply(StatusCode::NOT_FOUND, "Not Found".to_owned(), echo);
    };
    let query = match percent_decode(encoded) {
        Ok(query) => query,
        Err(err) => return reply(StatusCode::BAD_REQUEST, err, echo),
    };
    echo["query"] = json!(query);
    match params.iter().find(|(k, _)| k == "access_token") {
        None => {
            let message = "Not Authorized - No Token".to_owned();
            return reply(StatusCode::UNAUTHORIZED, message, echo);
        }
        Some((_, token)) if token.trim().is_empty() => {
            let message = "Not Authorized - Invalid Token".to_owned();
            return reply(StatusCode::UNAUTHORIZED, message, echo);
        }
        Some(_) => {}
    }
    let knobs = match Knobs::parse(&params) {
        Ok(knobs) => knobs,
        Err(err) => {
            let message = format!("demo-api: bad fault knob: {err}");
            return reply(StatusCode::BAD_REQUEST, message, echo);
        }
    };
    knobs.wait().await;
    if let Some((status, retry_after)) = knobs.forced_error() {
        let body = json!({
            "message": format!("demo-api: forced HTTP status {}", status.as_u16()),
            "echo": echo,
        });
        return json_response(status, retry_after, body, None, false);
    }
    if query.trim().is_empty() {
        return reply(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Query is empty".to_owned(),
            echo,
        );
    }
    let features: Vec<Value> = places::find(&query).map(feature).into_iter().collect();
    let body = json!({
        "type": "FeatureCollection",
        "query": tokens(&query),
        "features": features,
        "attribution": "demo-api: a local look-alike, not Mapbox data",
        "echo": echo,
    });
    json_response(
        knobs.status.unwrap_or(StatusCode::OK),
        None,
        body,
        None,
        false,
    )
}

/// One feature for a place, Mapbox-shaped: `center` is `[lng, lat]`.
fn feature(place: &Place) -> Value {
    json!({
        "id": format!("place.{}", place.place_id()),
        "type": "Feature",
        "place_type": ["place"],
        "relevance": 1,
        "properties": {},
        "text": place.city,
        "place_name": place.formatted,
        "center": [place.lng, place.lat],
        "geometry": { "type": "Point", "coordinates": [place.lng, place.lat] },
        "context": [{ "id": "country.demo", "text": place.country }],
    })
}

/// The query as Mapbox lists it: lower-cased words.
fn tokens(query: &str) -> Vec<String> {
    query
        .split(|c: char| c.is_whitespace() || c == ',')
        .filter(|t| !t.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Decodes `%XX` escapes (a `+` stays a `+`: this is a path, not a form)
/// and checks the result is UTF-8.
fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b != b'%' {
            out.push(b);
            i += 1;
            continue;
        }
        // Two hex digits exactly (from_str_radix alone would take "+1").
        let hex = bytes
            .get(i + 1..i + 3)
            .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok())
            .ok_or_else(|| format!("malformed percent-encoding at byte {i} of {s:?}"))?;
        out.push(hex);
        i += 3;
    }
    String::from_utf8(out).map_err(|_| format!("the decoded query {s:?} is not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_one_segment() {
        assert_eq!(
            percent_decode("a%2Fb%3Fc%23d%25e%20f+g%F0%9F%98%80"),
            Ok("a/b?c#d%e f+g😀".to_owned())
        );
        assert_eq!(percent_decode(""), Ok(String::new()));
        assert!(percent_decode("50%").is_err());
        assert!(percent_decode("%zz").is_err());
        assert!(percent_decode("%+1").is_err());
        assert!(percent_decode("%C3%28").is_err());
    }

    #[test]
    fn tokens_are_lower_case_words() {
        assert_eq!(
            tokens("10 Downing St,London"),
            ["10", "downing", "st", "london"]
        );
    }
}
