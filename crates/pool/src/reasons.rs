//! The reasons the engine writes into files and errors: a lost attempt's
//! error message (in its result file and the joblog), what the last
//! failing worker did (the `last` of [`RunError`](crate::RunError)), why a
//! host was given up (the status table, the summary and
//! `RunError::HostsDown` show it).
//!
//! These are data, read by programs and kept in files, and built from the
//! typed values the core decides ([`WorkerEnd`]). Log lines are not here:
//! the reporter writes those from the same values.

use std::collections::VecDeque;
use std::time::Duration;

use crate::report::{EndCause, Exit, WorkerEnd, megabytes};
use crate::who::{ExitHow, Who};

/// What stopping did to a worker: a process is killed, a thread (which
/// cannot be) abandoned.
pub(crate) fn stopped(who: Who) -> &'static str {
    match who {
        Who::Process(_) | Who::Remote { .. } => "killed",
        Who::Thread(_) => "abandoned",
    }
}

/// How a worker that died by itself ended: `exit status 1`, with the
/// memory limit it ran out under.
pub(crate) fn exit(e: &Exit) -> String {
    let mut how = e
        .how
        .as_ref()
        .map_or_else(|| "an unknown status".to_string(), ExitHow::describe);
    if let Some(limit) = e.out_of_memory_under {
        how.push_str(&format!(
            "; it ran out of memory under --worker-memory-limit {}",
            megabytes(limit)
        ));
    }
    how
}

/// The error message of the attempt a worker's end lost: `worker 0 (pid
/// 12) died (exit status 1); this job has killed 1 worker`.
pub(crate) fn lost_attempt(end: &WorkerEnd) -> String {
    let mut message = format!("worker {} ({}) {}", end.slot, end.who, cause(end));
    if let Some(k) = end.job.as_ref().and_then(|j| j.kills) {
        let s = if k == 1 { "" } else { "s" };
        message.push_str(&format!("; this job has killed {k} worker{s}"));
    }
    message
}

/// Why a worker ended, after its name: `died (exit status 1)`.
fn cause(end: &WorkerEnd) -> String {
    let stopped = stopped(end.who);
    match &end.cause {
        EndCause::Deadline { job: None } => format!("was {stopped} at its deadline"),
        EndCause::Deadline {
            job: Some((id, timeout)),
        } => format!(
            "was {stopped} after job {id:?} ran past its {}s deadline",
            timeout.as_secs_f64()
        ),
        EndCause::NoReady { within } => format!("sent no `ready` within {within:?}"),
        EndCause::Protocol { what } => format!("broke the protocol (it {what}) and was {stopped}"),
        EndCause::NoExit { grace } => {
            format!("did not exit within {grace:?} of its stdin closing, so it was {stopped}")
        }
        EndCause::Died(e) => format!("died ({})", exit(e)),
        // A worker that held no job loses no attempt; these are named for
        // completeness.
        EndCause::DiedBetweenJobs(e) => format!("died between jobs ({})", exit(e)),
        EndCause::ExitedBeforeReady(e) => format!("exited before `ready` with {}", exit(e)),
        EndCause::ConnectionLost | EndCause::HostDown | EndCause::Closed | EndCause::Shutdown => {
            "stopped".to_string()
        }
    }
}

/// What a worker that counts as a failure to start did, with its last
/// stderr lines: the `last` of `RunError::WorkersFailing`.
pub(crate) fn start_failure(end: &WorkerEnd, stderr: &VecDeque<String>) -> String {
    let why = match &end.cause {
        EndCause::NoReady { within } => format!("sent no `ready` within {within:?}"),
        EndCause::Protocol { what } => format!("broke the protocol: it {what}"),
        EndCause::ExitedBeforeReady(e) => format!("exited before `ready` with {}", exit(e)),
        EndCause::DiedBetweenJobs(e) => {
            format!("said ready, then exited before any job with {}", exit(e))
        }
        _ => cause(end),
    };
    with_stderr(format!("worker {} ({}) {why}", end.slot, end.who), stderr)
}

/// A worker that could not be started at all: why.
pub(crate) fn cannot_start(why: &str) -> String {
    format!("cannot start it: {why}")
}

/// What the last worker that died on its job did, with its last stderr
/// lines: the `last` of `RunError::WorkersDying`.
pub(crate) fn died_on_job(end: &WorkerEnd, stderr: &VecDeque<String>) -> String {
    let how = match &end.cause {
        EndCause::Died(e) => exit(e),
        _ => "an unknown status".to_string(),
    };
    let died = match (&end.job, end.jobs_done) {
        (Some(job), done) if done > 0 => format!("died on job {:?} with {how}", job.id),
        _ => format!("died on its first job with {how}"),
    };
    with_stderr(format!("worker {} ({}) {died}", end.slot, end.who), stderr)
}

/// Why a host was given up: its workers failed to start too often.
pub(crate) fn host_start_failures(failures: u32, last: &str) -> String {
    format!("its workers failed to start {failures} times in a row; last: {last}")
}

/// Why a host was given up: its workers died on every job.
pub(crate) fn host_dying(jobs: u32, last: &str) -> String {
    format!(
        "its workers died on {jobs} different jobs in a row, none answered, the last taken from further down the list; last: {last}"
    )
}

/// Why a login failed: it did not log in in time.
pub(crate) fn login_slow(timeout: Duration, said: &str) -> String {
    format!("ssh did not log in within {timeout:?} (--start-timeout); its last words: {said}")
}

/// Why a login failed: its ssh ended.
pub(crate) fn login_ended(how: &ExitHow, said: &str) -> String {
    format!("ssh ended ({}): {said}", how.describe())
}

/// A failure's detail, with the worker's last stderr lines if it wrote any.
fn with_stderr(mut detail: String, stderr: &VecDeque<String>) -> String {
    if !stderr.is_empty() {
        detail.push_str("; its last stderr lines:");
        for l in stderr {
            detail.push_str("\n    ");
            detail.push_str(l);
        }
    }
    detail
}
