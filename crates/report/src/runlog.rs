//! `DIR/runlog.jsonl`: what the joblog cannot tell, one JSON line per
//! event: when each run started and ended and how, each worker start and
//! why it replaced another, the pauses for a server's budget, the slowdowns
//! after a 429, the moment a run began to stop. The supervisor's reporter
//! writes it (never the engine); this type is its one definition, used to
//! write it and to read it. docs/formats.md §7 describes it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The name of the run log inside the results folder: not `.json`, so
/// never a result's name.
pub const RUNLOG_NAME: &str = "runlog.jsonl";

/// One line of the run log. Times are RFC 3339 in UTC with milliseconds,
/// as in the joblog. Readers skip events they do not know.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A run (or a `--resume` of one) started.
    RunStart {
        /// When.
        at: String,
        /// The supervisor's pid.
        pid: u32,
        /// Worker slots asked for.
        workers: u64,
        /// `processes` or `threads`.
        isolation: String,
        /// With `--host`: the hosts as given, in order.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        hosts: Vec<String>,
        /// `--rate`, in requests per second.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rate: Option<f64>,
        /// Jobs in the jobs file.
        jobs: u64,
        /// Whether it was started with `--resume`.
        #[serde(default)]
        resume: bool,
    },
    /// A worker was started in a slot.
    WorkerStart {
        /// When.
        at: String,
        /// The slot it fills.
        slot: u64,
        /// Its pid (with `--host`, the local ssh's); absent for a thread.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pid: Option<i64>,
        /// A worker thread's Linux thread id.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        thread: Option<i64>,
        /// With `--host`: its host.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
        /// When it replaces another: why that one went (`crashed`,
        /// `stuck`, `protocol error`, `failed to start`, `max jobs`,
        /// `memory`, `rolling restart`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        replaces: Option<String>,
    },
    /// The server's budget is spent: no job starts until `until`.
    Pause {
        /// When the pause began.
        at: String,
        /// When it ends.
        until: String,
        /// Why, in words.
        why: String,
    },
    /// A 429 answer slowed the pace of `--rate`.
    SlowDown {
        /// When.
        at: String,
        /// The new pace, requests per second.
        rate: f64,
    },
    /// The run began to stop before its end: `interrupted` (Ctrl-C,
    /// SIGTERM), `killed` (a second one: workers killed), `stop_if`.
    Stopping {
        /// When.
        at: String,
        /// Why.
        why: String,
    },
    /// A run ended (not written when the supervisor itself was killed).
    RunEnd {
        /// When.
        at: String,
        /// The exit status.
        exit: u8,
        /// Jobs ok in this run.
        ok: u64,
        /// Jobs failed in this run.
        failed: u64,
        /// Jobs skipped by `--resume` (ok before).
        skipped: u64,
        /// Jobs not run (an interrupted run).
        not_run: u64,
        /// Attempts that were retried.
        retried: u64,
        /// Calls saved by `--dedup`.
        dedup_saved: u64,
        /// Failed jobs by the kind of their last failure.
        #[serde(default)]
        failed_by_kind: BTreeMap<String, u64>,
        /// Workers started to replace others, by reason.
        #[serde(default)]
        restarts: BTreeMap<String, u64>,
        /// Worker threads abandoned past a deadline.
        #[serde(default)]
        abandoned: u64,
    },
    /// An event of a later version.
    #[serde(other)]
    Unknown,
}

impl Event {
    /// One line, newline included.
    pub fn to_line(&self) -> String {
        // Every field is a string, a number or a map of them: this cannot
        // fail, and a line would be no use half written anyway.
        let mut s = serde_json::to_string(self).unwrap_or_default();
        s.push('\n');
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_round_trip_and_unknown_events_are_skipped() {
        let e = Event::WorkerStart {
            at: "2026-11-25T10:30:16.412Z".into(),
            slot: 3,
            pid: Some(42),
            thread: None,
            host: None,
            replaces: Some("crashed".into()),
        };
        let line = e.to_line();
        assert_eq!(
            line,
            "{\"event\":\"worker_start\",\"at\":\"2026-11-25T10:30:16.412Z\",\"slot\":3,\"pid\":42,\"replaces\":\"crashed\"}\n"
        );
        assert_eq!(serde_json::from_str::<Event>(&line).expect("parses"), e);
        let later: Event =
            serde_json::from_str("{\"event\":\"moon_phase\",\"at\":\"x\"}").expect("parses");
        assert_eq!(later, Event::Unknown);
    }
}
