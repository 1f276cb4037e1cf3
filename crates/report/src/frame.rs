//! The first pass over the joblog: which parts the run had (a run and its
//! `--resume`s), how long each lasted, and which worker lanes exist. The
//! page's time axis is the parts laid end to end, the idle time between
//! them cut out, so that a run resumed the next morning still reads.

use std::collections::{BTreeMap, BTreeSet};

use crate::joblog::Attempt;
use crate::runlog::Event;
use crate::time::parse_ms;

/// Attempts further apart than this, with no run log to tell, are taken
/// to belong to two runs (a `--resume` after a stop).
const GAP_MS: i64 = 60_000;
/// An attempt may start a little before its run's start line is written.
const TOLERANCE_MS: i64 = 2_000;
/// At most this many worker lanes are drawn (the supervisor's own limit of
/// workers); more in a joblog are counted and left out.
pub const MAX_LANES: usize = 4096;
/// Parts told apart by gaps alone, at most (the closest are merged).
const MAX_INFERRED: usize = 50;
/// The time axis has at most this many buckets.
pub const MAX_BUCKETS: usize = 120;

/// One run of the folder: the first, or a `--resume`.
#[derive(Debug, Clone, Default)]
pub struct Part {
    /// Its span, wall clock, milliseconds since the epoch.
    pub start_ms: i64,
    /// The end of its span.
    pub end_ms: i64,
    /// Where it begins on the page's time axis, in milliseconds.
    pub offset_ms: f64,
    /// What its `run_start` line said; `None` for a part found from the
    /// joblog alone.
    pub start: Option<Event>,
    /// Its `run_end` line, if it was written.
    pub end: Option<Event>,
    /// Attempts in it, filled by the second pass.
    pub attempts: u64,
    /// Of those, ok.
    pub ok: u64,
    /// Of those, failed and retried.
    pub retried: u64,
    /// Of those, failed for good.
    pub failed: u64,
    /// Whether its workers were threads.
    pub threads: bool,
}

/// The host of a `worker_start` line: with `--host`, a worker of this
/// machine has none there, and `:` in the joblog.
pub fn worker_host(host: Option<&str>, run_has_hosts: bool) -> &str {
    match host {
        Some(h) => h,
        None if run_has_hosts => ":",
        None => "",
    }
}

impl Part {
    /// Whether its run had `--host`.
    pub fn has_hosts(&self) -> bool {
        matches!(&self.start, Some(Event::RunStart { hosts, .. }) if !hosts.is_empty())
    }

    /// Its length in milliseconds (at least 1).
    pub fn len_ms(&self) -> f64 {
        ((self.end_ms - self.start_ms).max(1)) as f64
    }
}

/// A worker lane's key: host (empty without `--host`) and slot.
pub type LaneKey = (String, u64);

/// What the first pass gathers.
#[derive(Debug, Default)]
pub struct Scan {
    runs: Vec<Part>,
    loose: Vec<(i64, i64)>,
    lanes: BTreeSet<LaneKey>,
    hosts: Vec<String>,
    pids: BTreeSet<i64>,
    /// Lanes beyond [`MAX_LANES`].
    pub lanes_dropped: u64,
}

/// The frame both passes share: parts and axis, buckets, lanes.
#[derive(Debug, Clone)]
pub struct Frame {
    /// The parts, in time order.
    pub parts: Vec<Part>,
    /// The axis's length, milliseconds.
    pub axis_ms: f64,
    /// A time bucket's width, milliseconds.
    pub bucket_ms: f64,
    /// How many buckets.
    pub buckets: usize,
    /// Lanes, by host (in `--host` order) then slot.
    pub lanes: Vec<LaneKey>,
    /// Lane index of each key.
    pub lane_of: BTreeMap<LaneKey, usize>,
    /// The hosts, in order (empty without `--host`).
    pub hosts: Vec<String>,
}

impl Scan {
    /// Starts from the run log's events (empty when there is none).
    pub fn new(events: &[Event]) -> Self {
        let mut s = Scan::default();
        for e in events {
            match e {
                Event::RunStart {
                    at,
                    isolation,
                    hosts,
                    ..
                } => {
                    let Some(t) = parse_ms(at) else { continue };
                    for h in hosts {
                        if !s.hosts.contains(h) {
                            s.hosts.push(h.clone());
                        }
                    }
                    s.runs.push(Part {
                        start_ms: t,
                        end_ms: t,
                        start: Some(e.clone()),
                        threads: isolation == "threads",
                        ..Part::default()
                    });
                }
                Event::RunEnd { at, .. } => {
                    if let (Some(t), Some(p)) = (parse_ms(at), s.runs.last_mut()) {
                        p.end_ms = p.end_ms.max(t);
                        p.end = Some(e.clone());
                    }
                }
                Event::WorkerStart { at, slot, host, .. } => {
                    if let (Some(t), Some(p)) = (parse_ms(at), s.runs.last_mut()) {
                        p.end_ms = p.end_ms.max(t);
                    }
                    let hosts = s.runs.last().is_some_and(|p| p.has_hosts());
                    s.lane(worker_host(host.as_deref(), hosts), *slot);
                }
                Event::Pause { at, .. }
                | Event::SlowDown { at, .. }
                | Event::Stopping { at, .. } => {
                    if let (Some(t), Some(p)) = (parse_ms(at), s.runs.last_mut()) {
                        p.end_ms = p.end_ms.max(t);
                    }
                }
                Event::Unknown => {}
            }
        }
        s
    }

    fn lane(&mut self, host: &str, slot: u64) {
        if self.lanes.len() >= MAX_LANES && !self.lanes.contains(&(host.to_string(), slot)) {
            self.lanes_dropped += 1;
            return;
        }
        if !host.is_empty() && !self.hosts.iter().any(|h| h == host) {
            self.hosts.push(host.to_string());
        }
        self.lanes.insert((host.to_string(), slot));
    }

    /// Takes in one attempt, whose start and end are `s` and `e`.
    pub fn attempt(&mut self, a: &Attempt<'_>, s: i64, e: i64) {
        self.lane(a.host.as_deref().unwrap_or(""), a.slot);
        if self.pids.len() < 2 {
            self.pids.insert(a.pid);
        }
        match self
            .runs
            .iter()
            .rposition(|r| r.start_ms <= s + TOLERANCE_MS)
        {
            Some(i) => {
                let r = &mut self.runs[i];
                r.start_ms = r.start_ms.min(s);
                r.end_ms = r.end_ms.max(e);
            }
            None => {
                // Before any run the run log knows: an older run. Joblog
                // lines come about in time order, so the last interval is
                // nearly always the one to grow.
                match self.loose.last_mut() {
                    Some(l) if s <= l.1 + GAP_MS && e >= l.0 - GAP_MS => {
                        l.0 = l.0.min(s);
                        l.1 = l.1.max(e);
                    }
                    _ => self.loose.push((s, e)),
                }
            }
        }
    }

    /// The frame: parts laid end to end, buckets, lanes in order.
    pub fn finish(self) -> Frame {
        let mut loose = self.loose;
        loose.sort_unstable();
        let mut merged: Vec<(i64, i64)> = Vec::new();
        for (s, e) in loose {
            match merged.last_mut() {
                Some(m) if s <= m.1 + GAP_MS => m.1 = m.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        while merged.len() > MAX_INFERRED {
            // Join the two closest neighbours.
            let i = (1..merged.len())
                .min_by_key(|&i| merged[i].0 - merged[i - 1].1)
                .unwrap_or(1);
            let (_, e) = merged.remove(i);
            merged[i - 1].1 = merged[i - 1].1.max(e);
        }
        // With one pid for several slots, the workers were threads.
        let threads_guess = self.pids.len() == 1 && self.lanes.len() > 1;
        let mut parts: Vec<Part> = merged
            .into_iter()
            .map(|(s, e)| Part {
                start_ms: s,
                end_ms: e,
                threads: threads_guess,
                ..Part::default()
            })
            .chain(self.runs)
            .collect();
        parts.sort_by_key(|p| p.start_ms);
        if parts.is_empty() {
            // No attempt and no run log: one empty part, so that every
            // chart has an axis (the page says there was nothing).
            parts.push(Part::default());
        }
        let mut offset = 0.0;
        for p in &mut parts {
            p.offset_ms = offset;
            offset += p.len_ms();
        }
        let axis_ms = offset.max(1.0);
        let bucket_ms = nice_width(axis_ms / MAX_BUCKETS as f64);
        let buckets = ((axis_ms / bucket_ms).ceil() as usize).clamp(1, MAX_BUCKETS + 1);
        let mut lanes: Vec<LaneKey> = self.lanes.into_iter().collect();
        let host_rank = |h: &str| self.hosts.iter().position(|x| x == h).unwrap_or(0);
        lanes.sort_by_key(|a| (host_rank(&a.0), a.1));
        let lane_of = lanes
            .iter()
            .enumerate()
            .map(|(i, k)| (k.clone(), i))
            .collect();
        Frame {
            parts,
            axis_ms,
            bucket_ms,
            buckets,
            lanes,
            lane_of,
            hosts: self.hosts,
        }
    }
}

/// The smallest round width of at least `ms`: 10 ms, 20, 50, 100 ... 1 s,
/// 2, 5, 10, 15, 30 s, 1 min ..., 1 h, 2, 3, 6, 12 h, 1 day, then days.
fn nice_width(ms: f64) -> f64 {
    const W: [f64; 22] = [
        10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1e3, 2e3, 5e3, 10e3, 15e3, 30e3, 60e3, 120e3, 300e3,
        600e3, 900e3, 1800e3, 3600e3, 7200e3, 21_600e3, 43_200e3,
    ];
    W.iter()
        .copied()
        .find(|&w| w >= ms)
        .unwrap_or_else(|| (ms / 86_400e3).ceil() * 86_400e3)
}

impl Frame {
    /// Which part holds wall-clock time `t`.
    pub fn part_at(&self, t: i64) -> usize {
        self.parts
            .partition_point(|p| p.start_ms <= t)
            .saturating_sub(1)
    }

    /// Where wall-clock time `t` is on the axis.
    pub fn axis(&self, t: i64) -> f64 {
        let Some(p) = self.parts.get(self.part_at(t)) else {
            return 0.0;
        };
        p.offset_ms + ((t - p.start_ms) as f64).clamp(0.0, p.len_ms())
    }

    /// The bucket of axis position `x`.
    pub fn bucket(&self, x: f64) -> usize {
        ((x / self.bucket_ms) as usize).min(self.buckets - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_are_round() {
        assert_eq!(nice_width(3.0), 10.0);
        assert_eq!(nice_width(700.0), 1000.0);
        assert_eq!(nice_width(40_000.0), 60_000.0);
        assert_eq!(nice_width(100_000_000.0), 2.0 * 86_400e3);
    }
}
