//! What the engine tells the person (or script) running it, and the summary
//! it returns. The engine only describes; the command line decides how to
//! show it (plain lines, a progress bar, JSON).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::records::AttemptRecord;
use crate::who::Who;

mod events;
pub use events::{
    EndCause, Exit, JobFate, LogEvent, LostJob, PauseWhy, RecycleWhy, Scale, Stop, WorkerEnd,
};

/// Bytes as megabytes with one decimal: `12.3 MB`.
pub fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}

/// How much a log line matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Something failed that the person must know about.
    Error,
    /// Something went wrong and was handled (a crash, a kill, a retry).
    Warn,
    /// The normal course of a run (workers starting, stopping).
    Info,
    /// Every attempt (shown with `-v`).
    Debug,
}

/// One thing worth reporting.
#[derive(Debug)]
pub enum Report<'a> {
    /// Something worth a log line; the reporter writes it.
    Event(&'a LogEvent),
    /// A worker was started (it is not ready yet).
    WorkerStarted {
        /// The slot it fills.
        slot: usize,
        /// Its pid or thread id.
        who: Who,
    },
    /// Every worker asked for at the start has said ready, for the first
    /// time: how long the pool took to come up.
    AllReady {
        /// How many workers are ready.
        workers: usize,
        /// Since the run started.
        after: Duration,
    },
    /// A line a worker wrote on its stderr.
    WorkerStderr {
        /// The worker's slot, if it still holds one.
        slot: Option<usize>,
        /// The host of a remote worker (then `pid` is its local ssh's).
        host: Option<&'static str>,
        /// The worker's pid.
        pid: i32,
        /// The line.
        line: &'a str,
    },
    /// One attempt ended (whatever its outcome).
    Attempt {
        /// The job's id.
        id: &'a str,
        /// What happened.
        record: &'a AttemptRecord,
    },
    /// The state of the run, sent a few times a second for progress displays.
    Tick(&'a Progress),
    /// The status table asked for with SIGUSR1.
    Status(&'a StatusSnapshot),
    /// The next worker started in `slot` replaces one that went for `why`
    /// (a restart reason of docs/lifecycle.md: `crashed`, `max jobs`, ...).
    Replacing {
        /// The slot.
        slot: usize,
        /// Why the worker before went.
        why: &'static str,
    },
}

/// Receives reports from the engine, on the engine's own thread.
pub trait Reporter {
    /// Handles one report; it must not block for long.
    fn report(&mut self, report: Report<'_>);
}

/// The status table's content (SIGUSR1), for the reporter to lay out.
#[derive(Debug, Clone, Default)]
pub struct StatusSnapshot {
    /// The name of a worker's number: `pid` or `tid`.
    pub id_name: &'static str,
    /// One row per slot, then per worker still finishing after TTOU or
    /// HUP, then per abandoned thread.
    pub rows: Vec<StatusRow>,
    /// The counts.
    pub progress: Progress,
    /// Jobs waiting for a retry (or requeued).
    pub queued_retries: usize,
    /// With `--host`: each slot's host.
    pub slot_hosts: Vec<&'static str>,
    /// Hosts that are down, and why.
    pub hosts_down: Vec<(&'static str, String)>,
    /// Abandoned threads still running.
    pub abandoned: usize,
}

/// One row of the status table.
#[derive(Debug, Clone)]
pub struct StatusRow {
    /// The slot.
    pub slot: usize,
    /// What the row is.
    pub kind: RowKind,
    /// Its worker, if it has one.
    pub who: Option<Who>,
    /// `starting`, `idle`, `busy`, `stopping`, `abandoned`.
    pub state: &'static str,
    /// How long its job has run, or it has been in its state.
    pub for_: Duration,
    /// Jobs done in the slot (or by the worker, for a retiring one).
    pub done: Option<u64>,
    /// Restarts of the slot.
    pub restarts: Option<u64>,
    /// Its memory, filled in by the shell for a local process.
    pub rss: Option<u64>,
    /// The job it runs, if any.
    pub job: Option<String>,
    /// Jobs queued behind it.
    pub queued: usize,
}

/// What a row of the status table stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// A slot and its worker.
    Slot,
    /// A slot without a worker now.
    Empty,
    /// A worker still finishing after its slot went (TTOU) or was given
    /// another (HUP).
    Retiring,
    /// A thread given up at a deadline, still in its call.
    Abandoned,
}

/// How far the run is.
#[derive(Debug, Clone, Default)]
pub struct Progress {
    /// Jobs in the file (skipped ones included).
    pub total: u64,
    /// Jobs finished ok.
    pub ok: u64,
    /// Jobs finished failed.
    pub failed: u64,
    /// Jobs skipped by `--resume`.
    pub skipped: u64,
    /// Jobs waiting for a retry.
    pub retrying: u64,
    /// Jobs in flight on workers.
    pub in_flight: u64,
    /// Live worker processes.
    pub workers: usize,
    /// Time since the run started.
    pub elapsed: Duration,
    /// The job in flight the longest, and for how long.
    pub slowest: Option<(String, Duration)>,
    /// With `--host`: live workers per host, and which are down.
    pub hosts: Vec<HostCount>,
    /// The server's rate-limit budget is spent: until when no job starts,
    /// and why.
    pub paused: Option<(std::time::SystemTime, PauseWhy)>,
}

/// One host's workers now, for progress displays.
#[derive(Debug, Clone)]
pub struct HostCount {
    /// As given to `--host` (`:` for this machine).
    pub name: &'static str,
    /// Its live workers.
    pub workers: usize,
    /// Whether it was given up.
    pub down: bool,
}

/// What one host did in a run, for the summary.
#[derive(Debug, Clone)]
pub struct HostSummary {
    /// As given to `--host` (`:` for this machine).
    pub name: String,
    /// Workers started there (replacements included).
    pub workers_started: u64,
    /// Jobs its workers finished (answered or failed by the API).
    pub jobs_done: u64,
    /// Why it was given up, if it was.
    pub down: Option<String>,
}

impl Progress {
    /// Jobs finished, skipped ones included.
    pub fn done(&self) -> u64 {
        self.ok + self.failed + self.skipped
    }
}

/// Why a run stopped before its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    /// SIGINT or SIGTERM: the jobs in flight were finished.
    Graceful,
    /// A second SIGINT or SIGTERM: the workers were killed.
    Forced,
    /// An answer matched `--stop-if`: the jobs in flight were finished.
    ApiStop,
}

/// A failed job, for the summary.
#[derive(Debug, Clone)]
pub struct FailureNote {
    /// The job's id.
    pub id: String,
    /// Why it failed, in words.
    pub reason: String,
    /// Its result file.
    pub path: PathBuf,
}

/// What a run did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The final progress counts.
    pub progress: Progress,
    /// Jobs that were never finished (after an interrupt).
    pub not_run: u64,
    /// Set when the run was interrupted.
    pub interrupted: Option<Interrupt>,
    /// Attempts that were retried.
    pub retried: u64,
    /// Times the server's rate-limit budget paused the run.
    pub budget_pauses: u64,
    /// Jobs run again by `--resume` because their request changed since
    /// their ok result was written.
    pub changed: u64,
    /// Jobs answered without a call of their own (`--dedup`): calls saved.
    pub dedup_saved: u64,
    /// Worker processes started to replace others, by reason.
    pub restarts: BTreeMap<String, u64>,
    /// Worker threads abandoned (past a deadline, or at a forced stop):
    /// threads cannot be killed, so they were left to end on their own.
    pub abandoned: u64,
    /// Of those, how many had not ended when the run ended (they end with
    /// the process).
    pub abandoned_running: u64,
    /// Failed jobs by the kind of their last failure.
    pub failed_by_kind: BTreeMap<String, u64>,
    /// The first few failed jobs.
    pub first_failures: Vec<FailureNote>,
    /// Latency of the successful attempts.
    pub latency: Histogram,
    /// With `--host`: what each host did.
    pub hosts: Vec<HostSummary>,
}

/// A latency histogram with logarithmic buckets (about 3% wide), so that
/// its size does not grow with the number of jobs.
#[derive(Debug, Clone)]
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
    max_us: u64,
}

const SUB_BUCKETS: u32 = 32;

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: vec![0; (64 * SUB_BUCKETS) as usize],
            count: 0,
            max_us: 0,
        }
    }
}

impl Histogram {
    /// Adds one sample.
    pub fn record(&mut self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1);
        self.buckets[Self::index(us)] += 1;
        self.count += 1;
        self.max_us = self.max_us.max(us);
    }

    fn index(us: u64) -> usize {
        let log = 63 - us.leading_zeros();
        let frac = if log >= 5 {
            (us >> (log - 5)) & u64::from(SUB_BUCKETS - 1)
        } else {
            (us << (5 - log)) & u64::from(SUB_BUCKETS - 1)
        };
        (log * SUB_BUCKETS) as usize + frac as usize
    }

    fn lower_bound(index: usize) -> u64 {
        let log = index as u32 / SUB_BUCKETS;
        let frac = index as u64 % u64::from(SUB_BUCKETS);
        if log >= 5 {
            (1u64 << log) | (frac << (log - 5))
        } else {
            ((1u64 << 5) | frac) >> (5 - log)
        }
    }

    /// How many samples.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The q-quantile (0.5 for the median), within the bucket width.
    pub fn quantile(&self, q: f64) -> Option<Duration> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(Duration::from_micros(Self::lower_bound(i).min(self.max_us)));
            }
        }
        Some(self.max())
    }

    /// The largest sample.
    pub fn max(&self) -> Duration {
        Duration::from_micros(self.max_us)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_are_close() {
        let mut h = Histogram::default();
        for ms in 1..=1000u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.quantile(0.5).expect("samples").as_secs_f64() * 1000.0;
        let p95 = h.quantile(0.95).expect("samples").as_secs_f64() * 1000.0;
        assert!((480.0..=505.0).contains(&p50), "{p50}");
        assert!((920.0..=955.0).contains(&p95), "{p95}");
        assert_eq!(h.max(), Duration::from_secs(1));
        assert_eq!(h.count(), 1000);
        let mut small = Histogram::default();
        small.record(Duration::from_micros(3));
        assert_eq!(small.quantile(0.5), Some(Duration::from_micros(3)));
    }
}
