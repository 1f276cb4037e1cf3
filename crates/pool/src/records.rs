//! What a run records about its jobs: the outcome of each attempt, the
//! attempt records that the joblog and a result's `history` hold, and a
//! job's final result. Plain data and pure functions, shared by the core
//! (which makes them) and the file writer (which writes them).

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use callpool_protocol::{HttpResponse, JobError};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::job::Job;

/// How one attempt ended, as records name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A 2xx answer that no rule rejected.
    Ok,
    /// An answer with a status that is not 2xx.
    HttpError,
    /// No answer: the worker reported an error (see `error`).
    Error,
    /// The answer matched `--fail-if`.
    Rejected,
    /// The answer matched `--retry-if`.
    RetryLater,
    /// The answer matched `--stop-if`.
    Stopped,
    /// The worker passed the deadline and was killed (a thread: abandoned).
    Timeout,
    /// The worker died (a thread: panicked) during the attempt.
    Crashed,
    /// The worker broke the protocol during the attempt.
    ProtocolError,
}

impl Outcome {
    /// Every outcome, in declaration order (docs/lifecycle.md is checked
    /// against it).
    pub const ALL: [Outcome; 9] = [
        Outcome::Ok,
        Outcome::HttpError,
        Outcome::Error,
        Outcome::Rejected,
        Outcome::RetryLater,
        Outcome::Stopped,
        Outcome::Timeout,
        Outcome::Crashed,
        Outcome::ProtocolError,
    ];

    /// The name records use.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::HttpError => "http_error",
            Outcome::Error => "error",
            Outcome::Rejected => "rejected",
            Outcome::RetryLater => "retry_later",
            Outcome::Stopped => "stopped",
            Outcome::Timeout => "timeout",
            Outcome::Crashed => "crashed",
            Outcome::ProtocolError => "protocol_error",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One attempt at a job, as the result file's `history` and the joblog
/// record it.
#[derive(Debug, Clone, Serialize)]
pub struct AttemptRecord {
    /// 1 for the first attempt.
    pub attempt: u32,
    /// The worker slot that ran it.
    pub slot: usize,
    /// The worker's process id (for a remote worker, its local ssh's).
    pub pid: i32,
    /// The host it ran on, with `--host` (`:` for this machine).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<&'static str>,
    /// When the job was sent (RFC 3339, UTC).
    pub started_at: String,
    /// From sending the job to its end, in milliseconds (written to
    /// the microsecond, see [`micros`]).
    #[serde(serialize_with = "micros")]
    pub elapsed_ms: f64,
    /// How the attempt ended.
    pub outcome: Outcome,
    /// The HTTP status, when there was an answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// What went wrong, when there was no answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    /// The wait chosen before the next attempt, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_in_ms: Option<u64>,
}

/// A job's final result, handed to a writer thread.
pub struct FinalResult {
    /// The job.
    pub job: Box<Job>,
    /// Whether it succeeded.
    pub ok: bool,
    /// The last answer, if there was one.
    pub response: Option<HttpResponse>,
    /// The value a job that is not an HTTP call returned.
    pub value: Option<Box<RawValue>>,
    /// Why the job is not ok.
    pub error: Option<JobError>,
    /// Every attempt; never empty.
    pub history: Vec<AttemptRecord>,
    /// When the job finished.
    pub finished: SystemTime,
    /// With `--dedup`, the job whose call answered this one (the history
    /// is that job's).
    pub dedup_of: Option<String>,
}

/// The path of a job's result file in the results folder `dir`.
pub fn result_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.json"))
}

/// One joblog line for an attempt at `job`: JSON, its secrets masked, with
/// its newline. Built by the core, appended whole by the writer.
pub fn joblog_line(job: &Job, rec: &AttemptRecord) -> Vec<u8> {
    #[derive(Serialize)]
    struct Line<'a> {
        id: &'a str,
        #[serde(flatten)]
        rec: &'a AttemptRecord,
    }
    let mut buf = Vec::with_capacity(256);
    // Writing to a Vec cannot fail, and every field serializes.
    if serde_json::to_writer(&mut buf, &Line { id: &job.id, rec }).is_err() {
        buf.clear();
    }
    buf.push(b'\n');
    scrub_buf(&mut buf, &job.secrets);
    buf
}

/// Hides the job's secret values, in every spelling, wherever they appear
/// in what is about to be written (an API that echoes its key, an error
/// quoting the URL): on the JSON's values, so the file stays valid JSON.
pub(crate) fn scrub_buf(buf: &mut Vec<u8>, secrets: &[String]) {
    if let Some(clean) = crate::redact::mask_json(buf, secrets) {
        *buf = clean;
    }
}

/// A duration in milliseconds, written to the microsecond: at most three
/// decimals, never float noise such as `7.859891000000001`. `k / 1000.0`
/// is the double nearest to the decimal `k/1000` (one correctly rounded
/// division of exact values), and serde_json writes the shortest decimal
/// that reads back as the same double: `k/1000` does, so nothing longer is
/// written.
/// Still a JSON number; a value that is not finite stays `null`, as before.
pub(crate) fn micros<S: serde::Serializer>(ms: &f64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((ms * 1000.0).round() / 1000.0)
}

/// RFC 3339 in UTC with milliseconds.
pub fn timestamp(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

// By hand, as pueue does: a result's answer may hold what the job's
// secrets produced, so `{:?}` shows which job and how it ended only.
impl std::fmt::Debug for FinalResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FinalResult")
            .field("id", &self.job.id)
            .field("ok", &self.ok)
            .field("attempts", &self.history.len())
            .finish_non_exhaustive()
    }
}
