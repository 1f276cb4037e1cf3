//! A job checked and built, as every part of the run sees it: the reader
//! makes it, the core sends it, the writer records it.

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;

/// A job checked and built, ready to be sent to a worker.
#[derive(Clone)]
pub struct Job {
    /// The job's id, safe as a file name.
    pub id: String,
    /// Its 1-based line in the jobs file.
    pub line: u64,
    /// The HTTP method.
    pub method: String,
    /// The final URL, query included, with the values of secret parameters
    /// replaced by `REDACTED`: the URL as results and logs show it.
    pub url: String,
    /// The deadline of one attempt.
    pub timeout: Duration,
    /// The `job` message for a worker's stdin, newline included; built once
    /// and sent again unchanged on every retry. It holds the real secrets.
    pub wire: Arc<[u8]>,
    /// This job's secret values, to be masked, in every spelling, from
    /// anything written about it (see [`crate::redact::mask_text`]).
    pub secrets: Vec<String>,
    /// What the request is, as a hex SHA-256 of its method, URL, headers
    /// and body (or of its `args`) with every secret value left out: `--resume` re-runs a job
    /// whose request changed since its result was written, and `--dedup`
    /// calls identical requests once. A secret never enters it, so it
    /// reveals nothing about one, and a new API key is not a new request.
    pub fingerprint: String,
    /// A job that is not an HTTP call: its `args` as written (`method` and
    /// `url` are then empty).
    pub args: Option<Box<RawValue>>,
}

// Hand-written, as pueue does for a task's environment: a job's wire
// message and its secrets never reach a log or a panic message through
// `{:?}`.
impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("id", &self.id)
            .field("line", &self.line)
            .field("method", &self.method)
            .field("url", &self.url)
            .field("timeout", &self.timeout)
            .field(
                "wire",
                &format_args!("<{} bytes, not shown>", self.wire.len()),
            )
            .field(
                "secrets",
                &format_args!("<{} not shown>", self.secrets.len()),
            )
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}
