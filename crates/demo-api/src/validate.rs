//! `POST /v1:validateAddress?key=...`: the demo gazetteer in the shape of
//! Google's Address Validation API, for clients that send a JSON body.
//!
//! Every answer echoes the body exactly as it arrived (as a string, never
//! re-serialised, so `12345678901234567890123` or `1.50` can be checked
//! byte for byte) and its `Content-Type`. Only the fields read are parsed:
//! any other field, however big its numbers, is skipped unread. The knobs
//! `hang`, `delay_ms`, `status` and `retry_after` work in the query as on
//! the Google-shaped geocoder.

use axum::Router;
use axum::body::Bytes;
use axum::extract::Query;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use crate::knobs::Knobs;
use crate::places;
use crate::routes::{echo_params, json_response};

/// The request body; unknown fields are ignored, as Google does for
/// `previousResponseId`, `enableUspsCass` and the like.
#[derive(Debug, Deserialize)]
struct Request {
    address: Option<PostalAddress>,
}

/// The part of Google's `PostalAddress` this look-alike reads.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PostalAddress {
    region_code: Option<String>,
    #[serde(default)]
    address_lines: Vec<String>,
    locality: Option<String>,
    administrative_area: Option<String>,
    postal_code: Option<String>,
}

/// The routes of this module.
pub(crate) fn routes() -> Router {
    Router::new().route("/v1:validateAddress", post(validate_address))
}

/// `POST /v1:validateAddress`.
async fn validate_address(
    Query(params): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    let echo = json!({
        "body": String::from_utf8_lossy(&body),
        "body_len": body.len(),
        "content_type": content_type,
        "params": echo_params(&params),
    });
    let error = |status: StatusCode, kind: &str, message: String, retry: Option<HeaderValue>| {
        let body = json!({
            "error": {"code": status.as_u16(), "message": message, "status": kind},
            "echo": echo.clone(),
        });
        json_response(status, retry, body, None, false)
    };

    if !params
        .iter()
        .any(|(k, v)| k == "key" && !v.trim().is_empty())
    {
        let message = "The request is missing a valid API key.".to_owned();
        return error(StatusCode::FORBIDDEN, "PERMISSION_DENIED", message, None);
    }
    let knobs = match Knobs::parse(&params) {
        Ok(knobs) => knobs,
        Err(err) => {
            let message = format!("demo-api: bad fault knob: {err}");
            return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message, None);
        }
    };
    knobs.wait().await;
    if let Some((status, retry_after)) = knobs.forced_error() {
        let message = format!("demo-api: forced HTTP status {}", status.as_u16());
        return error(status, "UNAVAILABLE", message, retry_after);
    }

    let request: Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(err) => {
            let message = format!("Invalid JSON payload received: {err}");
            return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message, None);
        }
    };
    let Some(address) = request.address else {
        let message = "Address is missing from the request: send {\"address\": \
                       {\"regionCode\": \"US\", \"addressLines\": [\"...\"]}}"
            .to_owned();
        return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message, None);
    };
    let lines = address_text(&address);
    if lines.is_empty() {
        let message = "address.addressLines is empty: give at least one line".to_owned();
        return error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message, None);
    }

    let mut result = json!({
        "verdict": {
            "inputGranularity": "OTHER",
            "validationGranularity": "OTHER",
            "geocodeGranularity": "OTHER",
            "addressComplete": false,
        },
        "address": {
            "formattedAddress": lines.join(", "),
            "postalAddress": {
                "regionCode": address.region_code,
                "addressLines": address.address_lines,
            },
        },
    });
    if let Some(place) = places::find(&lines.join(", ")) {
        result["verdict"] = json!({
            "inputGranularity": "LOCALITY",
            "validationGranularity": "LOCALITY",
            "geocodeGranularity": "LOCALITY",
            "addressComplete": true,
        });
        result["address"]["formattedAddress"] = json!(place.formatted);
        result["geocode"] = json!({
            "location": {"latitude": place.lat, "longitude": place.lng},
            "placeId": place.place_id(),
            "placeTypes": ["locality", "political"],
        });
    }
    let body = json!({"result": result, "echo": echo});
    let status = knobs.status.unwrap_or(StatusCode::OK);
    json_response(status, None, body, None, false)
}

/// The non-blank parts of the address that name a place, in order.
fn address_text(address: &PostalAddress) -> Vec<&str> {
    address
        .address_lines
        .iter()
        .map(String::as_str)
        .chain(address.locality.as_deref())
        .chain(address.administrative_area.as_deref())
        .chain(address.postal_code.as_deref())
        .map(str::trim)
        .filter(|part| !part.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unread_fields_are_skipped_whatever_their_numbers() -> Result<(), serde_json::Error> {
        let body = r#"{"id": 12345678901234567890123, "x": 1e400, "y": [1.50],
            "address": {"regionCode": "US", "addressLines": ["1 Main St", " "],
                        "locality": "Boston", "extra": 1e999}}"#;
        let request: Request = serde_json::from_str(body)?;
        let address = request.address.as_ref().map(address_text);
        assert_eq!(address, Some(vec!["1 Main St", "Boston"]));
        Ok(())
    }

    #[test]
    fn wrong_types_are_errors() {
        for body in [
            "",
            "null",
            "[]",
            r#"{"address": {"addressLines": "1 Main St"}}"#,
            "{\"address\": ",
        ] {
            assert!(serde_json::from_str::<Request>(body).is_err(), "{body:?}");
        }
    }
}
