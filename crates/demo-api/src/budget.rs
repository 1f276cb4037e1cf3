//! The request budget of `/users/`: a fixed window like GitHub's REST API
//! (so many requests, then 403 until the window resets), and the headers
//! that announce it, GitHub's `X-RateLimit-*` and/or the IETF draft's
//! `RateLimit` / `RateLimit-Policy`.
//!
//! The window starts with the first request after the previous one ended
//! and ends on a whole epoch second, the `Reset` the headers announce: a
//! client that waits until the clock shows `Reset` always finds a fresh
//! budget.

use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderName, HeaderValue};

/// Default budget: requests per window. 50 per 10 s makes a 120-row demo
/// spend its budget twice within half a minute, so pacing shows, yet the
/// demo finishes quickly.
pub const DEFAULT_BUDGET: u32 = 50;

/// Default window of the budget.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(10);

/// How the server is set up: what `demo-api --budget N --budget-window D
/// --ratelimit-headers STYLE` chooses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Requests `/users/` answers per window; the next ones get 403.
    pub budget: u32,
    /// Length of the window (at least 1 ms; `Reset` is rounded up to a
    /// whole second).
    pub budget_window: Duration,
    /// Which rate-limit headers `/users/` sends.
    pub ratelimit_headers: RateLimitHeaders,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            budget: DEFAULT_BUDGET,
            budget_window: DEFAULT_WINDOW,
            ratelimit_headers: RateLimitHeaders::Github,
        }
    }
}

/// Which family of rate-limit headers to send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RateLimitHeaders {
    /// `X-RateLimit-Limit`, `-Remaining`, `-Reset` (epoch seconds), `-Used`
    /// and `-Resource: core`, as GitHub sends them.
    #[default]
    Github,
    /// `RateLimit-Policy: 50;w=10` and `RateLimit: limit=50, remaining=N,
    /// reset=S` (S seconds to go), as draft-ietf-httpapi-ratelimit-headers-07
    /// wrote them.
    Ietf,
    /// Both families.
    Both,
}

impl FromStr for RateLimitHeaders {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "github" => Ok(Self::Github),
            "ietf" => Ok(Self::Ietf),
            "both" => Ok(Self::Both),
            _ => Err(format!("{s:?}: use github, ietf or both")),
        }
    }
}

/// The state of the current window.
#[derive(Debug, Clone, Default)]
pub(crate) struct Window {
    /// When the current window ends, in whole seconds since the epoch;
    /// `None` before the first request.
    reset: Option<u64>,
    /// Requests answered (not refused) in the current window.
    used: u32,
    /// Windows started so far.
    pub(crate) windows: u64,
}

/// What one request was granted, and what its headers announce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Charge {
    /// Whether the request may be answered (else 403).
    pub(crate) allowed: bool,
    /// The budget per window.
    pub(crate) limit: u32,
    /// Requests left in this window after this one.
    pub(crate) remaining: u32,
    /// Requests spent in this window, this one included if allowed.
    pub(crate) used: u32,
    /// End of the window, epoch seconds.
    pub(crate) reset: u64,
    /// Whole seconds from now to `reset`, rounded up.
    pub(crate) reset_in: u64,
}

impl Window {
    /// Charges one request made at `now` against a budget of `limit` per
    /// `window`, starting a new window if the last one has ended.
    pub(crate) fn charge(&mut self, now: SystemTime, limit: u32, window: Duration) -> Charge {
        let now = since_epoch(now);
        let reset = match self.reset {
            Some(reset) if now < Duration::from_secs(reset) => reset,
            _ => {
                let reset = ceil_secs(now.saturating_add(window));
                self.reset = Some(reset);
                self.used = 0;
                self.windows = self.windows.saturating_add(1);
                reset
            }
        };
        let allowed = self.used < limit;
        if allowed {
            self.used += 1;
        }
        Charge {
            allowed,
            limit,
            remaining: limit - self.used,
            used: self.used,
            reset,
            reset_in: ceil_secs(Duration::from_secs(reset).saturating_sub(now)),
        }
    }

    /// The window as seen at `now` without charging anything: (used,
    /// remaining, reset); a window that has ended shows a full budget and
    /// no reset.
    pub(crate) fn peek(&self, now: SystemTime, limit: u32) -> (u32, u32, Option<u64>) {
        match self.reset {
            Some(reset) if since_epoch(now) < Duration::from_secs(reset) => {
                (self.used, limit - self.used, Some(reset))
            }
            _ => (0, limit, None),
        }
    }
}

impl Charge {
    /// The headers announcing this charge, in the chosen style; `window` is
    /// the configured window (the IETF policy's `w`, in seconds).
    pub(crate) fn headers(&self, style: RateLimitHeaders, window: Duration) -> HeaderMap {
        let mut headers = HeaderMap::new();
        let mut put = |name: &'static str, value: String| {
            // Only digits, letters, `=`, `;`, `,` and spaces: always valid.
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(HeaderName::from_static(name), value);
            }
        };
        if matches!(style, RateLimitHeaders::Github | RateLimitHeaders::Both) {
            put("x-ratelimit-limit", self.limit.to_string());
            put("x-ratelimit-remaining", self.remaining.to_string());
            put("x-ratelimit-reset", self.reset.to_string());
            put("x-ratelimit-used", self.used.to_string());
            put("x-ratelimit-resource", "core".to_owned());
        }
        if matches!(style, RateLimitHeaders::Ietf | RateLimitHeaders::Both) {
            put(
                "ratelimit-policy",
                format!("{};w={}", self.limit, ceil_secs(window)),
            );
            put(
                "ratelimit",
                format!(
                    "limit={}, remaining={}, reset={}",
                    self.limit, self.remaining, self.reset_in
                ),
            );
        }
        headers
    }
}

/// Time since the epoch; a clock before 1970 counts as the epoch.
fn since_epoch(t: SystemTime) -> Duration {
    t.duration_since(UNIX_EPOCH).unwrap_or_default()
}

/// Whole seconds in `d`, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms)
    }

    #[test]
    fn spends_then_refuses_then_resets_on_a_whole_second() {
        let mut w = Window::default();
        let win = Duration::from_secs(10);
        let first = w.charge(at(100_300), 2, win);
        assert_eq!(
            first,
            Charge {
                allowed: true,
                limit: 2,
                remaining: 1,
                used: 1,
                reset: 111,
                reset_in: 11,
            }
        );
        assert!(w.charge(at(101_000), 2, win).allowed);
        let refused = w.charge(at(110_999), 2, win);
        assert!(!refused.allowed);
        assert_eq!(
            (refused.remaining, refused.used, refused.reset),
            (0, 2, 111)
        );
        assert_eq!(refused.reset_in, 1);
        assert_eq!(w.peek(at(110_999), 2), (2, 0, Some(111)));
        // At the announced second, a fresh window.
        assert_eq!(w.peek(at(111_000), 2), (0, 2, None));
        let again = w.charge(at(111_000), 2, win);
        assert!(again.allowed);
        assert_eq!((again.remaining, again.reset, w.windows), (1, 121, 2));
    }

    #[test]
    fn zero_budget_refuses_everything() {
        let mut w = Window::default();
        let c = w.charge(at(5_000), 0, Duration::from_millis(500));
        assert!(!c.allowed);
        assert_eq!((c.remaining, c.used, c.reset, c.reset_in), (0, 0, 6, 1));
    }

    #[test]
    fn headers_in_each_style() {
        let c = Charge {
            allowed: true,
            limit: 50,
            remaining: 7,
            used: 43,
            reset: 1_700_000_010,
            reset_in: 4,
        };
        let win = Duration::from_secs(10);
        let github = c.headers(RateLimitHeaders::Github, win);
        assert_eq!(github["x-ratelimit-limit"], "50");
        assert_eq!(github["x-ratelimit-remaining"], "7");
        assert_eq!(github["x-ratelimit-reset"], "1700000010");
        assert_eq!(github["x-ratelimit-used"], "43");
        assert!(!github.contains_key("ratelimit"));
        let ietf = c.headers(RateLimitHeaders::Ietf, win);
        assert_eq!(ietf["ratelimit-policy"], "50;w=10");
        assert_eq!(ietf["ratelimit"], "limit=50, remaining=7, reset=4");
        assert!(!ietf.contains_key("x-ratelimit-limit"));
        assert_eq!(c.headers(RateLimitHeaders::Both, win).len(), 7);
    }

    #[test]
    fn header_style_parses() {
        assert_eq!("both".parse(), Ok(RateLimitHeaders::Both));
        assert!("GitHub".parse::<RateLimitHeaders>().is_err());
    }
}
