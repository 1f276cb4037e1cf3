//! Pacing by the server's own budget: the rate-limit headers an API sends
//! with each answer (GitHub's, Twitter's and Discord's
//! `X-RateLimit-Limit/Remaining/Reset`, the IETF draft's `RateLimit`), and
//! `Retry-After` on a 403, 429 or 503. When the budget is spent, the whole
//! run (every worker, every host) waits for its reset instead of spending
//! attempts on refusals.
//!
//! Pure: answers and the time come in, a decision comes out; no clock is
//! read here.
//!
//! The count is conservative. An answer says how much budget was left when
//! the server answered it; requests still in flight may or may not be
//! counted in it, so they are taken as not counted yet: after an answer
//! with `Remaining: R` while `F` other requests are out, at most `R - F`
//! more are sent before the next answer or the reset. So a run whose jobs
//! outnumber the budget meets no refusal at all, whatever its worker
//! count; only a server whose window moves on its own clock can cost one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use crate::report::PauseWhy;

/// The longest the run waits for a reset: a reset further away is taken
/// as this, and said so (a server's clock or header can be wrong).
pub const MAX_PAUSE: Duration = Duration::from_secs(3600);

/// Waited past a reset, for a server whose window ends on a whole second.
const MARGIN: Duration = Duration::from_millis(50);

/// What the server's headers say about its budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reading {
    /// Requests left in this window.
    pub remaining: Option<u64>,
    /// When the window resets, from now.
    pub reset_in: Option<Duration>,
    /// `Retry-After`, on a refusal.
    pub retry_after: Option<Duration>,
}

/// Reads the budget headers of an answer (names in lower case), at wall
/// time `wall`. Malformed values are ignored.
pub fn read(status: u16, headers: &BTreeMap<String, String>, wall: SystemTime) -> Reading {
    let num = |name: &str| headers.get(name).and_then(|v| v.trim().parse::<u64>().ok());
    let mut remaining = num("x-ratelimit-remaining");
    let mut reset_in = num("x-ratelimit-reset").map(|r| reset_from(r, wall));
    if let Some(ietf) = headers.get("ratelimit") {
        // draft-07: `limit=50, remaining=3, reset=7`; later drafts:
        // `"default";r=3;t=7`.
        for part in ietf.split([',', ';']) {
            let Some((k, v)) = part.trim().split_once('=') else {
                continue;
            };
            let v = v.trim().parse::<u64>().ok();
            match k.trim() {
                "remaining" | "r" => remaining = remaining.or(v),
                "reset" | "t" => reset_in = reset_in.or(v.map(Duration::from_secs)),
                _ => {}
            }
        }
    }
    let retry_after = if matches!(status, 403 | 429 | 503) {
        headers
            .get("retry-after")
            .and_then(|v| crate::core::retry::parse_retry_after(v, wall))
    } else {
        None
    };
    Reading {
        remaining,
        reset_in,
        retry_after,
    }
}

/// `X-RateLimit-Reset`: epoch seconds (GitHub), or seconds to go (some
/// APIs send a small number). Past: zero.
fn reset_from(value: u64, wall: SystemTime) -> Duration {
    // Any epoch time since 2001 is above 1e9; no window is 30 years long.
    if value >= 1_000_000_000 {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(value);
        at.duration_since(wall).unwrap_or(Duration::ZERO)
    } else {
        Duration::from_secs(value)
    }
}

impl Reading {
    /// Whether a refusal is the budget's (retried after the pause, not
    /// charged to the job), not a plain 403 (which is the job's own).
    pub fn is_rate_limited(&self, status: u16) -> bool {
        matches!(status, 403 | 429) && (self.remaining == Some(0) || self.retry_after.is_some())
    }
}

/// Why the run pauses.
#[derive(Debug, Clone, PartialEq)]
pub struct Pause {
    /// How long, from now.
    pub wait: Duration,
    /// The wait the server asked for was longer, and was cut to
    /// [`MAX_PAUSE`].
    pub capped: bool,
    /// What said so: `X-RateLimit-Remaining: 0` or `Retry-After`.
    pub because: PauseWhy,
}

/// The run's view of the server's budget.
#[derive(Debug, Default)]
pub struct Budget {
    /// Requests that may still start before the next answer, when known.
    left: Option<i64>,
    /// No request starts before this.
    paused_until: Option<Instant>,
}

impl Budget {
    /// Whether a request may start at `now`. Once a pause is over the
    /// window has turned: what was left before it no longer counts.
    pub fn allows(&self, now: Instant) -> bool {
        match self.paused_until {
            Some(t) => t <= now,
            None => self.left.is_none_or(|l| l > 0),
        }
    }

    /// When requests may start again, while paused.
    pub fn paused_until(&self, now: Instant) -> Option<Instant> {
        self.paused_until.filter(|t| *t > now)
    }

    /// A request starts.
    pub fn sent(&mut self) {
        if self.paused_until.is_none()
            && let Some(l) = self.left.as_mut()
        {
            *l -= 1;
        }
    }

    /// An answer came with `reading`, while `others` more requests are
    /// out. Returns a pause that starts now, if one does.
    pub fn observe(
        &mut self,
        reading: &Reading,
        status: u16,
        others: usize,
        now: Instant,
    ) -> Option<Pause> {
        if let Some(t) = self.paused_until
            && t <= now
        {
            // The window turned: what is left is known again only from
            // the answers to come.
            self.paused_until = None;
            self.left = None;
        }
        let (wait, because) = match (reading.retry_after, reading.remaining) {
            (Some(wait), _) if reading.is_rate_limited(status) => (wait, PauseWhy::RetryAfter),
            (_, Some(r)) => {
                let left = i64::try_from(r).unwrap_or(i64::MAX) - others as i64;
                self.left = Some(left);
                if left > 0 {
                    return None;
                }
                match reading.reset_in {
                    Some(reset) => (reset + MARGIN, PauseWhy::BudgetSpent),
                    // Spent, with no reset said: wait for the answers still
                    // out, or a second if none is.
                    None if others > 0 => return None,
                    None => (Duration::from_secs(1), PauseWhy::BudgetSpent),
                }
            }
            _ => return None,
        };
        // A reset already past still waits a little: the server said the
        // budget is spent, and its clock may be behind ours.
        let wait = wait.max(MARGIN);
        let capped = wait > MAX_PAUSE;
        let wait = wait.min(MAX_PAUSE);
        let until = now + wait;
        if self.paused_until.is_some_and(|t| t >= until) {
            // Already paused as long: the pause decides, not the count.
            self.left = None;
            return None;
        }
        // A pause already running is only made longer: one pause, one
        // message, however many answers say "spent" while it lasts.
        let extending = self.paused_until.is_some_and(|t| t > now);
        self.paused_until = Some(until);
        self.left = None;
        if extending {
            return None;
        }
        Some(Pause {
            wait,
            capped,
            because,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn reads_github_and_ietf_headers() {
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let r = read(
            200,
            &h(&[
                ("x-ratelimit-remaining", "7"),
                ("x-ratelimit-reset", "1700000009"),
            ]),
            wall,
        );
        assert_eq!(r.remaining, Some(7));
        assert_eq!(r.reset_in, Some(Duration::from_secs(9)));
        let r = read(
            200,
            &h(&[("ratelimit", "limit=50, remaining=3, reset=7")]),
            wall,
        );
        assert_eq!(
            (r.remaining, r.reset_in),
            (Some(3), Some(Duration::from_secs(7)))
        );
        let r = read(200, &h(&[("ratelimit", "\"default\";r=0;t=4")]), wall);
        assert_eq!(
            (r.remaining, r.reset_in),
            (Some(0), Some(Duration::from_secs(4)))
        );
        // Malformed, or a reset in the past.
        let r = read(
            200,
            &h(&[
                ("x-ratelimit-remaining", "lots"),
                ("x-ratelimit-reset", "1600000000"),
            ]),
            wall,
        );
        assert_eq!((r.remaining, r.reset_in), (None, Some(Duration::ZERO)));
        // A plain 403 is not the budget's; one with Remaining 0 or
        // Retry-After is.
        assert!(!read(403, &h(&[]), wall).is_rate_limited(403));
        assert!(read(403, &h(&[("x-ratelimit-remaining", "0")]), wall).is_rate_limited(403));
        assert!(read(403, &h(&[("retry-after", "3")]), wall).is_rate_limited(403));
        assert!(!read(200, &h(&[("retry-after", "3")]), wall).is_rate_limited(200));
    }

    #[test]
    fn never_sends_more_than_the_budget_left() {
        let now = Instant::now();
        let mut b = Budget::default();
        assert!(b.allows(now));
        let r = Reading {
            remaining: Some(5),
            reset_in: Some(Duration::from_secs(10)),
            retry_after: None,
        };
        // 3 others are out: only 2 more may start.
        assert_eq!(b.observe(&r, 200, 3, now), None);
        b.sent();
        assert!(b.allows(now));
        b.sent();
        assert!(!b.allows(now));
        // Spent: pause until the reset, then start afresh.
        let spent = Reading {
            remaining: Some(0),
            ..r
        };
        let p = b.observe(&spent, 200, 0, now).expect("pause");
        assert_eq!(p.wait, Duration::from_secs(10) + MARGIN);
        assert!(!b.allows(now + Duration::from_secs(10)));
        let later = now + Duration::from_secs(11);
        assert!(b.allows(later));
        assert_eq!(b.paused_until(later), None);
    }

    /// Found by the CI run: a second "spent" answer during a pause left a
    /// negative count behind it, and the run never sent again.
    #[test]
    fn answers_during_a_pause_do_not_outlive_it() {
        let now = Instant::now();
        let mut b = Budget::default();
        let spent = |reset_ms| Reading {
            remaining: Some(0),
            reset_in: Some(Duration::from_millis(reset_ms)),
            retry_after: None,
        };
        assert!(b.observe(&spent(10_000), 200, 3, now).is_some());
        let later = now + Duration::from_millis(20);
        assert_eq!(b.observe(&spent(9_980), 200, 2, later), None);
        assert!(!b.allows(now + Duration::from_secs(5)));
        assert!(b.allows(now + Duration::from_millis(10_100)));
        // A later reset while paused makes the pause longer, silently.
        assert_eq!(b.observe(&spent(12_000), 200, 0, later), None);
        assert!(!b.allows(now + Duration::from_millis(11_000)));
        assert!(b.allows(now + Duration::from_millis(12_100)));
    }

    #[test]
    fn a_far_reset_is_capped_and_retry_after_pauses() {
        let now = Instant::now();
        let mut b = Budget::default();
        let far = Reading {
            remaining: Some(0),
            reset_in: Some(Duration::from_secs(10 * 86_400)),
            retry_after: None,
        };
        let p = b.observe(&far, 403, 0, now).expect("pause");
        assert!(p.capped && p.wait == MAX_PAUSE);
        let mut b = Budget::default();
        let ra = Reading {
            remaining: None,
            reset_in: None,
            retry_after: Some(Duration::from_secs(2)),
        };
        assert_eq!(
            b.observe(&ra, 429, 4, now).map(|p| p.wait),
            Some(Duration::from_secs(2))
        );
        assert!(!b.allows(now + Duration::from_secs(1)));
    }
}
