//! Which failed attempts are tried again, and after how long.

use std::time::Duration;

use callpool_protocol::{ErrorKind, HttpResponse};

/// The retry rules of a run. The supervisor decides, not the worker: it
/// holds each job's attempt count and history.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts after the first (`--retries`); 2 means 3 attempts in all.
    pub retries: u32,
    /// HTTP statuses that are retried (`--retry-on-status`).
    pub on_status: Vec<u16>,
    /// Worker error kinds that are retried (transport failures).
    pub on_error_kinds: Vec<ErrorKind>,
    /// The first backoff step; the n-th retry waits a random time in
    /// `0..min(cap, base * 2^(n-1))` ("full jitter").
    pub backoff_base: Duration,
    /// The largest backoff step.
    pub backoff_cap: Duration,
    /// The longest `Retry-After` obeyed; an answer asking for more fails
    /// the job (`--max-retry-after`).
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 2,
            on_status: vec![408, 429, 500, 502, 503, 504],
            on_error_kinds: vec![
                ErrorKind::Connect,
                ErrorKind::Dns,
                ErrorKind::Timeout,
                ErrorKind::Io,
            ],
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(120),
        }
    }
}

impl RetryPolicy {
    /// How many attempts a job gets in all.
    pub fn max_attempts(&self) -> u32 {
        self.retries.saturating_add(1)
    }

    /// Whether an answer with this status is worth another attempt.
    pub fn retries_status(&self, status: u16) -> bool {
        self.on_status.contains(&status)
    }

    /// Whether a worker error of this kind is worth another attempt.
    pub fn retries_error(&self, kind: &ErrorKind) -> bool {
        self.on_error_kinds.contains(kind)
    }

    /// The wait before attempt `next` (2 for the first retry) after an answer
    /// or error from the API: exponential backoff with full jitter, a random
    /// time below [`RetryPolicy::backoff_step`]: `jitter` (in `0..1`) is
    /// drawn by the caller, so that a seeded run draws the same.
    pub fn backoff(&self, next: u32, jitter: f64) -> Duration {
        self.backoff_step(next).mul_f64(jitter.clamp(0.0, 1.0))
    }

    /// The most [`RetryPolicy::backoff`] waits before attempt `next`:
    /// `base * 2^(next-2)`, at most the cap.
    pub fn backoff_step(&self, next: u32) -> Duration {
        let exp = next.saturating_sub(2).min(30);
        self.backoff_base
            .saturating_mul(1u32 << exp)
            .min(self.backoff_cap)
    }
}

/// How long a `Retry-After` header asks to wait: delay-seconds or an HTTP
/// date (RFC 9110 §10.2.3). `None` when absent or unreadable.
pub fn retry_after(resp: &HttpResponse, now: std::time::SystemTime) -> Option<Duration> {
    parse_retry_after(resp.headers.get("retry-after")?, now)
}

/// A `Retry-After` value: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// Whether a response counts as a success: any 2xx status.
pub fn is_success(resp: &HttpResponse) -> bool {
    (200..300).contains(&resp.status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_the_doubling_bound() {
        let p = RetryPolicy {
            backoff_base: Duration::from_millis(100),
            backoff_cap: Duration::from_millis(350),
            ..RetryPolicy::default()
        };
        for _ in 0..200 {
            assert!(p.backoff(2, fastrand::f64()) <= Duration::from_millis(100));
            assert!(p.backoff(3, fastrand::f64()) <= Duration::from_millis(200));
            assert!(p.backoff(4, fastrand::f64()) <= Duration::from_millis(350));
            assert!(p.backoff(40, fastrand::f64()) <= Duration::from_millis(350));
        }
    }

    #[test]
    fn backoff_steps_double_from_the_base_up_to_the_cap() {
        let p = RetryPolicy::default();
        let ms = Duration::from_millis;
        let steps: Vec<Duration> = (2..=9).map(|n| p.backoff_step(n)).collect();
        assert_eq!(
            steps,
            [
                ms(500),
                ms(1000),
                ms(2000),
                ms(4000),
                ms(8000),
                ms(16000),
                ms(30000),
                ms(30000)
            ]
        );
        // The first attempt's "retry" and absurd attempt numbers stay in
        // range without overflow.
        assert_eq!(p.backoff_step(0), ms(500));
        assert_eq!(p.backoff_step(u32::MAX), ms(30000));
        let huge = RetryPolicy {
            backoff_base: Duration::MAX,
            backoff_cap: Duration::MAX,
            ..RetryPolicy::default()
        };
        assert_eq!(huge.backoff_step(40), Duration::MAX);
    }

    #[test]
    fn reads_retry_after() {
        use callpool_protocol::BodyKind;
        use serde_json::value::RawValue;
        let mk = |v: &str| HttpResponse {
            status: 503,
            headers: [("retry-after".to_string(), v.to_string())].into(),
            body_kind: BodyKind::Text,
            body: RawValue::from_string("\"\"".into()).expect("raw"),
        };
        let now = std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        assert_eq!(retry_after(&mk("7"), now), Some(Duration::from_secs(7)));
        let date = httpdate::fmt_http_date(now + Duration::from_secs(90));
        assert_eq!(retry_after(&mk(&date), now), Some(Duration::from_secs(90)));
        assert_eq!(retry_after(&mk("soon"), now), None);
    }

    #[test]
    fn default_sets() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_attempts(), 3);
        assert!(p.retries_status(503) && !p.retries_status(404));
        assert!(p.retries_error(&ErrorKind::Connect) && !p.retries_error(&ErrorKind::BodyTooLarge));
    }
}
