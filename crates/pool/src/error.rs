//! The ways a run can fail as a whole (as opposed to one job failing, which
//! is a result, not an error).

use std::io;
use std::path::PathBuf;

/// Why a run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The results folder could not be created or written (disk full,
    /// permissions). The run stops; results written so far are complete.
    #[error("cannot write results in {dir}: {source}")]
    Output {
        /// The results folder.
        dir: PathBuf,
        /// What failed.
        source: io::Error,
    },
    /// The results folder could not be opened at the start, or holds a
    /// link or another odd file where the joblog belongs: nothing was run.
    #[error("cannot use the results folder {dir}: {source}")]
    Folder {
        /// The results folder.
        dir: PathBuf,
        /// What failed; it names what it found.
        source: io::Error,
    },
    /// Workers keep failing to start or crash before finishing any job, so
    /// restarting them again would only loop.
    #[error(
        "workers keep failing: `{command}` failed {failures} times in a row without finishing a job; last: {last}"
    )]
    WorkersFailing {
        /// The worker command, as given.
        command: String,
        /// How many consecutive failures.
        failures: u32,
        /// What the last one did: its exit status and last stderr lines.
        last: String,
    },
    /// Workers die on every job they are given: on a run of different jobs,
    /// none answered, the last of them taken from further down the list to
    /// tell this from a run of jobs that kill their workers
    /// (docs/lifecycle.md §3).
    #[error(
        "workers keep dying: `{command}` died on {jobs} different jobs in a row and answered none (the last job taken from further down the list, so it is the worker, not the jobs); last: {last}"
    )]
    WorkersDying {
        /// The worker command, as given.
        command: String,
        /// How many jobs in a row killed their worker.
        jobs: u32,
        /// What the last one did: its exit status and last stderr lines.
        last: String,
    },
    /// The worker command cannot be run at all (not found, not executable).
    #[error("cannot start worker `{command}`: {source}")]
    Spawn {
        /// The worker command, as given.
        command: String,
        /// What failed.
        source: io::Error,
    },
    /// No host of `--host` is left to run the jobs on: every host is down
    /// (their workers or logins failed to start too often, or ssh refused
    /// to log in), or every worker still wanted is on a host that is.
    #[error("no host left to run the jobs on; down:{}", hosts.iter().map(|(h, why)| format!("\n    {h}: {why}")).collect::<String>())]
    HostsDown {
        /// Each host, and why it was given up.
        hosts: Vec<(String, String)>,
    },
    /// The jobs file changed or became unreadable after it was checked.
    #[error("{0}")]
    Jobs(String),
    /// Setting up the run failed (signal handlers, threads).
    #[error("cannot set up the run: {0}")]
    Setup(io::Error),
}
