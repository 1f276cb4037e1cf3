//! Which failed attempts are tried again, and after how long.

use std::time::Duration;

use callpool_protocol::HttpResponse;

/// The retry rules of a run. The supervisor decides, not the worker: it
/// holds each job's attempt count and history.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Attempts after the first (`--retries`); 2 means 3 attempts in all.
    pub retries: u32,
    /// HTTP statuses that are retried (`--retry-on-status`).
    pub on_status: Vec<u16>,
    /// Worker error kinds that are retried (transport failures).
    pub on_error_kinds: Vec<String>,
    /// The first backoff step; the n-th retry waits a random time in
    /// `0..min(cap, base * 2^(n-1))` ("full jitter").
    pub backoff_base: Duration,
    /// The largest backoff step.
    pub backoff_cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            retries: 2,
            on_status: vec![408, 429, 500, 502, 503, 504],
            on_error_kinds: ["connect", "dns", "timeout", "io"]
                .map(String::from)
                .to_vec(),
            backoff_base: Duration::from_millis(500),
            backoff_cap: Duration::from_secs(30),
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
    pub fn retries_error(&self, kind: &str) -> bool {
        self.on_error_kinds.iter().any(|k| k == kind)
    }

    /// The wait before attempt `next` (2 for the first retry) after an answer
    /// or error from the API: exponential backoff with full jitter.
    pub fn backoff(&self, next: u32) -> Duration {
        let exp = next.saturating_sub(2).min(30);
        let step = self
            .backoff_base
            .saturating_mul(1u32 << exp)
            .min(self.backoff_cap);
        step.mul_f64(fastrand::f64())
    }
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
            assert!(p.backoff(2) <= Duration::from_millis(100));
            assert!(p.backoff(3) <= Duration::from_millis(200));
            assert!(p.backoff(4) <= Duration::from_millis(350));
            assert!(p.backoff(40) <= Duration::from_millis(350));
        }
    }

    #[test]
    fn default_sets() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_attempts(), 3);
        assert!(p.retries_status(503) && !p.retries_status(404));
        assert!(p.retries_error("connect") && !p.retries_error("body_too_large"));
    }
}
