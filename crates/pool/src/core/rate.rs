//! A global request rate for the whole run (`--rate N/s`), across every
//! worker and retries included, with no burst above it, and slowing down
//! when the API answers 429.

use std::time::{Duration, Instant};

/// Paces dispatch: one request every `1 / current` seconds.
#[derive(Debug)]
pub struct Pacer {
    ceiling: f64,
    current: f64,
    next: Option<Instant>,
}

/// The slowest the pace goes after 429s, as a fraction of the ceiling.
const FLOOR_FRACTION: f64 = 1.0 / 64.0;
/// Each ok answer gives back this fraction of the ceiling ("recover slowly").
const RECOVERY_FRACTION: f64 = 1.0 / 50.0;

impl Pacer {
    /// A pacer of `per_second` requests per second.
    pub fn new(per_second: f64) -> Self {
        Self {
            ceiling: per_second,
            current: per_second,
            next: None,
        }
    }

    /// When the next request may start (`None`: now).
    pub fn next_at(&self) -> Option<Instant> {
        self.next
    }

    /// Whether a request may start at `now`.
    pub fn allows(&self, now: Instant) -> bool {
        self.next.is_none_or(|n| n <= now)
    }

    /// Records that a request starts at `now`.
    pub fn sent(&mut self, now: Instant) {
        let interval = Duration::from_secs_f64(1.0 / self.current);
        // From the slot it was due at, so that a loop waking a little late
        // does not lower the rate, but never from the past: no burst.
        let base = match self.next {
            Some(n) if now.saturating_duration_since(n) < interval => n,
            _ => now,
        };
        self.next = Some(base + interval);
    }

    /// The API answered 429: halve the pace (down to a floor). Returns the
    /// new rate.
    pub fn slow_down(&mut self) -> f64 {
        self.current = (self.current / 2.0).max(self.ceiling * FLOOR_FRACTION);
        self.current
    }

    /// An ok answer: creep back toward the ceiling.
    pub fn recover(&mut self) {
        self.current = (self.current + self.ceiling * RECOVERY_FRACTION).min(self.ceiling);
    }

    /// The pace now, in requests per second.
    pub fn current(&self) -> f64 {
        self.current
    }
}

/// Parses `N/s`, `N/m` (or `N/min`, `N/h`) or `N/DURATION` (`50/10s`,
/// `5000/1h`) into requests per second.
pub fn parse_rate(text: &str) -> Result<f64, String> {
    let (n, unit) = text.split_once('/').unwrap_or((text, "s"));
    let n: f64 = n
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a rate like 20/s, 600/m or 50/10s"))?;
    let per = match unit.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        "d" | "day" => 86400.0,
        other => crate::durations::parse_duration(other)
            .map_err(|e| format!("{text:?}: the window after / is not a duration ({e})"))?
            .as_secs_f64(),
    };
    let rate = n / per;
    if !(rate.is_finite() && rate > 0.0) {
        return Err(format!("{text:?}: the rate must be more than zero"));
    }
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rates() {
        assert_eq!(parse_rate("20/s"), Ok(20.0));
        assert_eq!(parse_rate("60/m"), Ok(1.0));
        assert_eq!(parse_rate("5"), Ok(5.0));
        assert_eq!(parse_rate("50/10s"), Ok(5.0));
        assert_eq!(parse_rate("7200/2h"), Ok(1.0));
        assert!(parse_rate("5/0s").is_err());
        assert!(
            parse_rate("0/s").is_err() && parse_rate("x/s").is_err() && parse_rate("1/1M").is_err()
        );
    }

    #[test]
    fn no_burst_and_slowdown() {
        let mut p = Pacer::new(10.0);
        let t0 = Instant::now();
        assert!(p.allows(t0));
        p.sent(t0);
        assert!(!p.allows(t0 + Duration::from_millis(99)));
        assert!(p.allows(t0 + Duration::from_millis(100)));
        // Idle for a long time: still one at a time, no burst of saved credit.
        let later = t0 + Duration::from_secs(10);
        p.sent(later);
        assert!(!p.allows(later + Duration::from_millis(50)));
        assert_eq!(p.slow_down(), 5.0);
        for _ in 0..1000 {
            p.recover();
        }
        assert_eq!(p.current(), 10.0);
        for _ in 0..20 {
            p.slow_down();
        }
        assert_eq!(p.current(), 10.0 / 64.0);
    }
}
