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
    pub mod budget;
    pub mod check;
    pub mod core;
    pub mod decode;
    mod engine;
    pub mod error;
    mod escaped;
    pub mod event;
    pub mod expand;
    pub mod feed;
    mod feeder;
    pub mod jobs;
    mod json_text;
    pub mod output;
    pub mod pipes;
    pub mod poller;
    pub mod rate;
    pub mod records;
    pub mod redact;
    pub mod remote;
    pub mod report;
    pub mod retry;
    mod params;
    pub mod rules;
    pub mod safedir;
    mod spawn;
    pub mod table;
    pub mod template;
    pub mod thread;
    pub mod transport;
    pub mod who;

    pub use check::{CheckError, CheckFor, CheckedJobs, PriorCounts, check_jobs};
    pub use engine::{PoolConfig, Recycle, Signals, run};
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
