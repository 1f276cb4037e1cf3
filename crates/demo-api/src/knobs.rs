//! Fault knobs: query parameters that make the geocode endpoint misbehave
//! on purpose (slow, failing, hanging, oversized), for client tests.
//!
//! Knobs are parsed strictly: a malformed value is a bug in the test that
//! sent it, so it gets a loud HTTP 400 instead of being silently ignored.

use std::time::Duration;

use axum::http::{HeaderValue, StatusCode};

/// Largest `body_bytes` accepted, so a typo cannot make the server allocate
/// gigabytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// The knobs of one request, all optional.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Knobs {
    /// `delay_ms=N`: sleep this long before answering.
    pub delay: Option<Duration>,
    /// `status=CODE`: answer with this HTTP status.
    pub status: Option<StatusCode>,
    /// `retry_after=VALUE`: `Retry-After` header on knob-forced statuses.
    pub retry_after: Option<HeaderValue>,
    /// `hang=1`: never answer.
    pub hang: bool,
    /// `fail_first=K`: the first K calls for the fail key fail.
    pub fail_first: Option<u32>,
    /// `fail_key=NAME`: which counter `fail_first` uses.
    pub fail_key: Option<String>,
    /// `fail_status=CODE`: the HTTP status of the failing calls.
    pub fail_status: Option<StatusCode>,
    /// `body_bytes=N`: pad the JSON body to at least N bytes.
    pub body_bytes: Option<usize>,
    /// `pretty=1`: indent the JSON body over several lines, as Google's
    /// Geocoding API does.
    pub pretty: bool,
}

/// A knob with a value that could not be used; the message names both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnobError(pub String);

impl std::fmt::Display for KnobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl Knobs {
    /// Reads the knobs out of the query pairs. For a repeated knob the first
    /// value wins (the echo still shows them all).
    pub fn parse(params: &[(String, String)]) -> Result<Self, KnobError> {
        let get = |name: &str| {
            params
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        };
        let mut knobs = Knobs::default();
        if let Some(v) = get("delay_ms") {
            knobs.delay = Some(Duration::from_millis(number("delay_ms", v)?));
        }
        if let Some(v) = get("status") {
            knobs.status = Some(status("status", v)?);
        }
        if let Some(v) = get("retry_after") {
            // Passed through verbatim (seconds or an HTTP date); only bytes
            // that cannot be in a header at all are refused.
            let value = HeaderValue::from_str(v)
                .map_err(|_| KnobError(format!("retry_after={v:?} is not a valid header value")))?;
            knobs.retry_after = Some(value);
        }
        if let Some(v) = get("hang") {
            knobs.hang = match v {
                "1" | "true" | "yes" => true,
                "0" | "false" | "no" | "" => false,
                _ => return Err(KnobError(format!("hang={v:?}: use 1 or 0"))),
            };
        }
        if let Some(v) = get("fail_first") {
            let k = number("fail_first", v)?;
            let k =
                u32::try_from(k).map_err(|_| KnobError(format!("fail_first={v}: too large")))?;
            knobs.fail_first = Some(k);
        }
        knobs.fail_key = get("fail_key").map(str::to_owned);
        if let Some(v) = get("fail_status") {
            knobs.fail_status = Some(status("fail_status", v)?);
        }
        knobs.pretty = get("pretty").is_some_and(|v| v == "1");
        if let Some(v) = get("body_bytes") {
            let n = number("body_bytes", v)?;
            let n = usize::try_from(n)
                .ok()
                .filter(|&n| n <= MAX_BODY_BYTES)
                .ok_or_else(|| KnobError(format!("body_bytes={v}: at most {MAX_BODY_BYTES}")))?;
            knobs.body_bytes = Some(n);
        }
        Ok(knobs)
    }
}

impl Knobs {
    /// Applies `hang` (never returns) and `delay_ms` (sleeps).
    pub async fn wait(&self) {
        if self.hang {
            // Park this request forever without blocking a thread; the
            // connection stays open until the client gives up.
            std::future::pending::<()>().await;
        }
        if let Some(delay) = self.delay {
            tokio::time::sleep(delay).await;
        }
    }

    /// The status a knob forced with the `Retry-After` to send with it, if
    /// that status is not a success (`None`: answer normally).
    pub fn forced_error(&self) -> Option<(StatusCode, Option<HeaderValue>)> {
        self.status
            .filter(|status| !status.is_success())
            .map(|status| (status, self.retry_after.clone()))
    }
}

/// Parses a non-negative decimal number knob.
fn number(name: &str, v: &str) -> Result<u64, KnobError> {
    v.trim()
        .parse()
        .map_err(|_| KnobError(format!("{name}={v:?} is not a non-negative integer")))
}

/// Parses an HTTP status knob. Only 200..=599: a 1xx cannot be a final
/// response, so hyper could not send it as one.
fn status(name: &str, v: &str) -> Result<StatusCode, KnobError> {
    v.trim()
        .parse::<u16>()
        .ok()
        .filter(|code| (200..=599).contains(code))
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| KnobError(format!("{name}={v:?} is not an HTTP status in 200..=599")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn no_knobs_is_default() {
        let knobs = Knobs::parse(&pairs(&[("address", "Paris"), ("key", "k")]));
        assert_eq!(knobs, Ok(Knobs::default()));
    }

    #[test]
    fn parses_every_knob() -> Result<(), KnobError> {
        let knobs = Knobs::parse(&pairs(&[
            ("delay_ms", "250"),
            ("status", "503"),
            ("retry_after", "Wed, 21 Oct 2015 07:28:00 GMT"),
            ("hang", "1"),
            ("fail_first", "3"),
            ("fail_key", "abc"),
            ("fail_status", "429"),
            ("body_bytes", "4096"),
        ]))?;
        assert_eq!(knobs.delay, Some(Duration::from_millis(250)));
        assert_eq!(knobs.status, Some(StatusCode::SERVICE_UNAVAILABLE));
        assert_eq!(
            knobs.retry_after.as_ref().map(HeaderValue::as_bytes),
            Some(&b"Wed, 21 Oct 2015 07:28:00 GMT"[..])
        );
        assert!(knobs.hang);
        assert_eq!(knobs.fail_first, Some(3));
        assert_eq!(knobs.fail_key.as_deref(), Some("abc"));
        assert_eq!(knobs.fail_status, Some(StatusCode::TOO_MANY_REQUESTS));
        assert_eq!(knobs.body_bytes, Some(4096));
        Ok(())
    }

    #[test]
    fn rejects_bad_values() {
        for (k, v) in [
            ("delay_ms", "-1"),
            ("delay_ms", "soon"),
            ("status", "99"),
            ("status", "600"),
            ("status", "abc"),
            ("hang", "maybe"),
            ("fail_first", "99999999999"),
            ("body_bytes", "999999999999"),
            ("retry_after", "a\nb"),
        ] {
            let result = Knobs::parse(&pairs(&[(k, v)]));
            assert!(result.is_err(), "{k}={v:?} accepted: {result:?}");
        }
    }
}
