//! The callpool supervisor's engine: it runs the jobs of a checked jobs file
//! on a pool of worker processes that speak the callpool protocol, writes one
//! result file per job, and survives whatever its workers do.
//!
//! The design follows nextest's runner and gunicorn's arbiter: one loop owns
//! all state ([`run`]); every worker line, worker exit, deadline and signal
//! reaches it as an [`event::Event`]; signal handlers only enqueue; each
//! worker lives in its own process group and is stopped with SIGTERM, a
//! grace period, then SIGKILL.

// The engine is built on Linux interfaces: epoll and eventfd (poller.rs),
// prctl(PR_SET_PDEATHSIG) (spawn.rs), O_TMPFILE (output.rs) and /proc
// (worker.rs). Elsewhere, one clear message instead of a wall of errors.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "callpool needs Linux: its engine uses epoll, eventfd, prctl(PR_SET_PDEATHSIG), O_TMPFILE and /proc, which this target does not have. Build and run it on Linux (a Linux container or VM will do)."
);

/// Declares the crate's items on Linux only (see the `compile_error!`
/// above), so that other targets get just that message.
macro_rules! on_linux {
    ($($item:item)*) => {
        $(
            #[cfg(target_os = "linux")]
            $item
        )*
    };
}

on_linux! {
    // The vocabulary every part shares: plain data and pure functions.
    pub mod durations;
    pub mod error;
    pub mod feed;
    pub mod job;
    mod json_text;
    mod reasons;
    pub mod records;
    pub mod redact;
    pub mod who;

    // The parts, from the jobs file to the results folder.
    pub mod jobs;
    pub mod core;
    pub mod workers;
    pub mod files;
    pub mod report;
    mod shell;

    // The binary's and the tests' ways in.
    pub use self::core::{budget, rate, retry, rules};
    pub use files::{output, safedir};
    pub use jobs::{check, decode, expand, table, template};
    pub use workers::{event, pipes, poller, remote, thread, transport};

    pub use check::{CheckError, CheckFor, CheckedJobs, PriorCounts, check_jobs};
    pub use shell::{PoolConfig, Recycle, Signals, run};
    pub use error::RunError;
    pub use jobs::{RequestDefaults, parse_deadline, parse_duration};
    pub use report::{
        Interrupt, Level, Progress, Report, Reporter, RowKind, StatusRow, StatusSnapshot, Summary,
    };
    pub use retry::RetryPolicy;
    pub use thread::{JobFn, ThreadWork};
    pub use transport::Isolation;
    pub use who::{ThreadEnd, Who};

    #[cfg(test)]
    mod docs_drift;
}
