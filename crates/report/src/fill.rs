//! The second pass over the joblog: everything the charts show, counted
//! into the frame's buckets and lanes, in memory that depends on the
//! screen (buckets, lanes, columns), never on the number of attempts.

use crate::frame::{Frame, Part};
use crate::hist::LogHist;
use crate::joblog::{Attempt, End};
use crate::runlog::Event;
use crate::time::parse_ms;

/// Cells of the worker timeline (lanes × columns) at most: the page's
/// size stays bounded whatever the number of workers.
const CELL_BUDGET: usize = 40_000;
/// Columns across the timeline, at most and at least.
const MAX_COLUMNS: usize = 600;
const MIN_COLUMNS: usize = 60;
/// Kinds of failure named on their own; the rest are summed.
pub const MAX_KINDS: usize = 10;
/// The name the rest are summed under.
pub const OTHER_KINDS: &str = "(other kinds)";
/// Failed ids listed per kind.
pub const FIRST_FAILURES: usize = 5;
/// Markers (worker starts, kills, crashes) drawn at most.
pub const MAX_MARKERS: usize = 3000;
/// A message is cut to this many characters in the table.
const MESSAGE_CHARS: usize = 300;

/// A failed job, for the table of first failures.
#[derive(Debug, Clone)]
pub struct FailNote {
    /// The job's id, as the joblog has it.
    pub id: String,
    /// The joblog line.
    pub line: u64,
    /// When the attempt started.
    pub at_ms: i64,
    /// Outcome and HTTP status, e.g. `http_error 404`.
    pub how: String,
    /// The error message, cut short.
    pub message: String,
    /// What the result file holds: set after the passes.
    pub result: ResultState,
}

/// What stands under a failed job's result file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResultState {
    /// Not looked at (yet).
    Unchecked,
    /// A result file, read as JSON, that says the job failed.
    Failed,
    /// A result file that says the job is ok (a later run fixed it).
    NowOk,
    /// No result file: left for `--resume`, or run again since.
    Missing,
    /// Something that could not be read as a result, and why.
    Unreadable(String),
}

/// One kind of failure.
#[derive(Debug, Clone)]
pub struct Kind {
    /// As the joblog names it.
    pub name: String,
    /// Failed attempts of this kind per bucket (retried ones included).
    pub per_bucket: Vec<u64>,
    /// Failed attempts in all.
    pub attempts: u64,
    /// Jobs that failed for good with it.
    pub jobs: u64,
    /// The first few of those.
    pub first: Vec<FailNote>,
}

/// One cell of the worker timeline.
#[derive(Debug, Clone, Copy, Default)]
pub struct Cell {
    /// Milliseconds of attempts in it.
    pub busy_ms: f32,
    /// Attempts that ended in it.
    pub ended: u32,
    /// The worst end of an attempt that overlaps it, +1 (0: idle).
    pub worst: u8,
}

/// What a marker on the timeline tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// A worker started.
    Start,
    /// A worker started to replace one that crashed, was stuck, ...
    Restart,
    /// A worker started to replace one retired on purpose (`max jobs`,
    /// `memory`, `rolling restart`).
    Recycled,
    /// A worker killed at a deadline.
    Kill,
    /// A worker that died.
    Crash,
    /// A thread abandoned at a deadline.
    Abandon,
}

impl Mark {
    /// The CSS class.
    pub fn name(self) -> &'static str {
        match self {
            Mark::Start => "start",
            Mark::Restart => "restart",
            Mark::Recycled => "recycled",
            Mark::Kill => "kill",
            Mark::Crash => "crash",
            Mark::Abandon => "abandon",
        }
    }
}

/// A marker on a lane.
#[derive(Debug, Clone)]
pub struct Marker {
    /// Its lane.
    pub lane: usize,
    /// Where on the axis.
    pub x: f64,
    /// What.
    pub mark: Mark,
    /// In words, for its tooltip.
    pub note: String,
}

/// Everything the page draws.
#[derive(Debug)]
pub struct Model {
    /// Parts, buckets, lanes.
    pub frame: Frame,
    /// Attempts per bucket: ok, retried, failed.
    pub throughput: [Vec<u64>; 3],
    /// Latency of ok attempts per bucket.
    pub latency: Vec<LogHist>,
    /// Latency of all ok attempts.
    pub latency_all: LogHist,
    /// Kinds of failure, most attempts first once finished.
    pub kinds: Vec<Kind>,
    /// Timeline columns.
    pub columns: usize,
    /// Cells, lane by lane.
    pub cells: Vec<Cell>,
    /// Markers, at most [`MAX_MARKERS`].
    pub markers: Vec<Marker>,
    /// Markers left out past the limit.
    pub markers_dropped: u64,
    /// Budget pauses: axis from, axis to, why.
    pub pauses: Vec<(f64, f64, String)>,
    /// Slowdowns after a 429: axis position, new pace.
    pub slowdowns: Vec<(f64, f64)>,
    /// The moments runs began to stop: axis position, why.
    pub stops: Vec<(f64, String)>,
    /// Attempts drawn.
    pub attempts: u64,
    /// Lanes beyond the limit.
    pub lanes_dropped: u64,
    /// Whether a run log was there.
    pub has_runlog: bool,
    last_pid: Vec<Option<i64>>,
}

impl Model {
    /// An empty model over `frame`, with the run log's events placed.
    pub fn new(frame: Frame, events: &[Event]) -> Self {
        let lanes = frame.lanes.len().max(1);
        let columns = (CELL_BUDGET / lanes).clamp(MIN_COLUMNS, MAX_COLUMNS);
        let n = frame.buckets;
        let mut m = Model {
            throughput: [vec![0; n], vec![0; n], vec![0; n]],
            latency: vec![LogHist::new(3); n],
            latency_all: LogHist::new(5),
            kinds: Vec::new(),
            columns,
            cells: vec![Cell::default(); frame.lanes.len() * columns],
            markers: Vec::new(),
            markers_dropped: 0,
            pauses: Vec::new(),
            slowdowns: Vec::new(),
            stops: Vec::new(),
            attempts: 0,
            lanes_dropped: 0,
            has_runlog: !events.is_empty(),
            last_pid: vec![None; frame.lanes.len()],
            frame,
        };
        for e in events {
            m.event(e);
        }
        m
    }

    fn event(&mut self, e: &Event) {
        match e {
            Event::WorkerStart {
                at,
                slot,
                pid,
                thread,
                host,
                replaces,
            } => {
                let Some(t) = parse_ms(at) else { return };
                let hosts = self
                    .frame
                    .parts
                    .get(self.frame.part_at(t))
                    .is_some_and(crate::frame::Part::has_hosts);
                let key = (
                    crate::frame::worker_host(host.as_deref(), hosts).to_string(),
                    *slot,
                );
                let Some(&lane) = self.frame.lane_of.get(&key) else {
                    return;
                };
                let who = match (pid, thread) {
                    (Some(p), _) => format!("pid {p}"),
                    (None, Some(t)) => format!("thread {t}"),
                    (None, None) => "a worker".into(),
                };
                let (mark, note) = match replaces.as_deref() {
                    None => (Mark::Start, format!("{who} started")),
                    Some(why @ ("max jobs" | "memory" | "rolling restart")) => (
                        Mark::Recycled,
                        format!("{who} started, replacing one retired ({why})"),
                    ),
                    Some(why) => (
                        Mark::Restart,
                        format!("{who} started, replacing one that {why}"),
                    ),
                };
                self.last_pid[lane] = pid.or(*thread);
                self.mark(lane, self.frame.axis(t), mark, note);
            }
            Event::Pause { at, until, why } => {
                if let (Some(a), Some(u)) = (parse_ms(at), parse_ms(until)) {
                    let end = self
                        .frame
                        .parts
                        .get(self.frame.part_at(a))
                        .map_or(a, |p| p.end_ms);
                    let (x0, x1) = (self.frame.axis(a), self.frame.axis(u.min(end).max(a)));
                    // A pause the server extended is one pause.
                    match self.pauses.last_mut() {
                        Some(last) if x0 <= last.1 => last.1 = last.1.max(x1),
                        _ => self.pauses.push((x0, x1, why.clone())),
                    }
                }
            }
            Event::SlowDown { at, rate } => {
                if let Some(a) = parse_ms(at) {
                    self.slowdowns.push((self.frame.axis(a), *rate));
                }
            }
            Event::Stopping { at, why } => {
                if let Some(a) = parse_ms(at) {
                    self.stops.push((self.frame.axis(a), why.clone()));
                }
            }
            Event::RunStart { .. } | Event::RunEnd { .. } | Event::Unknown => {}
        }
    }

    fn mark(&mut self, lane: usize, x: f64, mark: Mark, note: String) {
        if self.markers.len() >= MAX_MARKERS {
            self.markers_dropped += 1;
        } else {
            self.markers.push(Marker {
                lane,
                x,
                mark,
                note,
            });
        }
    }

    /// Takes in one attempt (joblog line `line`) that starts at `s` and
    /// ends at `e`.
    pub fn attempt(&mut self, a: &Attempt<'_>, line: u64, s: i64, e: i64) {
        self.attempts += 1;
        let pi = self.frame.part_at(s);
        let threads = self.frame.parts.get(pi).is_some_and(|p| p.threads);
        let logged = self.frame.parts.get(pi).is_some_and(|p| p.start.is_some());
        let end = End::of(a, threads);
        let (x0, x1) = (self.frame.axis(s), self.frame.axis(e));
        let b = self.frame.bucket(x1);
        let series = match end {
            End::Ok => 0,
            End::Retried => 1,
            _ if a.retry_in_ms.is_some() => 1,
            _ => 2,
        };
        self.throughput[series][b] += 1;
        if let Some(p) = self.frame.parts.get_mut(pi) {
            p.attempts += 1;
            match series {
                0 => p.ok += 1,
                1 => p.retried += 1,
                _ => p.failed += 1,
            }
        }
        if end == End::Ok {
            self.latency[b].add_ms(a.elapsed_ms);
            self.latency_all.add_ms(a.elapsed_ms);
        }
        if let Some(kind) = a.kind() {
            let k = self.kind(kind);
            self.kinds[k].per_bucket[b] += 1;
            self.kinds[k].attempts += 1;
            if series == 2 {
                self.kinds[k].jobs += 1;
                if self.kinds[k].first.len() < FIRST_FAILURES {
                    let message = a
                        .error
                        .as_ref()
                        .and_then(|e| e.message.as_deref())
                        .unwrap_or("")
                        .chars()
                        .take(MESSAGE_CHARS)
                        .collect();
                    let how = match a.status {
                        Some(st) => format!("{} {st}", a.outcome),
                        None => a.outcome.to_string(),
                    };
                    self.kinds[k].first.push(FailNote {
                        id: a.id.to_string(),
                        line,
                        at_ms: s,
                        how,
                        message,
                        result: ResultState::Unchecked,
                    });
                }
            }
        }
        let key = (a.host.as_deref().unwrap_or("").to_string(), a.slot);
        let Some(&lane) = self.frame.lane_of.get(&key) else {
            self.lanes_dropped += 1;
            return;
        };
        // Without a run log, a new pid in a slot is a new worker.
        if !logged && !threads && self.last_pid[lane] != Some(a.pid) {
            let mark = if self.last_pid[lane].is_some() {
                Mark::Restart
            } else {
                Mark::Start
            };
            self.last_pid[lane] = Some(a.pid);
            let note = format!("pid {} (first seen in the joblog)", a.pid);
            self.mark(lane, x0, mark, note);
        }
        let ended = match end {
            End::Killed => Some(Mark::Kill),
            End::Crashed => Some(Mark::Crash),
            End::Abandoned => Some(Mark::Abandon),
            _ => None,
        };
        if let Some(mark) = ended {
            let note = format!(
                "job {} {} after {}",
                a.id,
                end.name(),
                crate::time::span(a.elapsed_ms)
            );
            self.mark(lane, x1, mark, note);
        }
        self.cells(lane, x0, x1, end);
    }

    fn cells(&mut self, lane: usize, x0: f64, x1: f64, end: End) {
        let width = self.frame.axis_ms / self.columns as f64;
        let col = |x: f64| ((x / width) as usize).min(self.columns - 1);
        let (c0, c1) = (col(x0), col(x1));
        let row = &mut self.cells[lane * self.columns..(lane + 1) * self.columns];
        for (c, cell) in row.iter_mut().enumerate().take(c1 + 1).skip(c0) {
            let lo = x0.max(c as f64 * width);
            let hi = x1.min((c + 1) as f64 * width);
            cell.busy_ms += (hi - lo).max(0.0) as f32;
            cell.worst = cell.worst.max(end as u8 + 1);
        }
        row[c1].ended = row[c1].ended.saturating_add(1);
    }

    fn kind(&mut self, name: &str) -> usize {
        if let Some(i) = self.kinds.iter().position(|k| k.name == name) {
            return i;
        }
        let name = if self.kinds.len() >= MAX_KINDS {
            if let Some(i) = self.kinds.iter().position(|k| k.name == OTHER_KINDS) {
                return i;
            }
            OTHER_KINDS.to_string()
        } else {
            name.chars().take(64).collect()
        };
        self.kinds.push(Kind {
            name,
            per_bucket: vec![0; self.frame.buckets],
            attempts: 0,
            jobs: 0,
            first: Vec::new(),
        });
        self.kinds.len() - 1
    }

    /// Orders the kinds, most failed attempts first.
    pub fn finish(&mut self) {
        self.kinds
            .sort_by(|a, b| b.attempts.cmp(&a.attempts).then(a.name.cmp(&b.name)));
    }

    /// The parts.
    pub fn parts(&self) -> &[Part] {
        &self.frame.parts
    }
}
