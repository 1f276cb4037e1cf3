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
    pub(crate) mod durations;
    pub(crate) mod error;
    pub(crate) mod feed;
    pub(crate) mod job;
    mod json_text;
    mod reasons;
    pub(crate) mod records;
    pub mod redact;
    pub(crate) mod who;

    // The parts, from the jobs file to the results folder.
    pub(crate) mod jobs;
    pub(crate) mod core;
    pub(crate) mod workers;
    pub(crate) mod files;
    pub(crate) mod report;
    mod shell;

    // The public API: what the `supervisor` binary builds on, and nothing
    // more. Running a pool:
    pub use shell::{PoolConfig, Recycle, Signals, run};
    pub use self::core::retry::RetryPolicy;
    pub use workers::thread::{JobFn, ThreadWork};
    pub use workers::transport::Isolation;
    pub use error::RunError;
    // Checking a jobs file first:
    pub use jobs::check::{CheckError, CheckFor, CheckedJobs, PriorCounts, check_jobs};
    pub use jobs::{RequestDefaults, parse_deadline, parse_duration};
    // What a run tells:
    pub use report::{
        Interrupt, Level, Progress, Report, Reporter, RowKind, StatusRow, StatusSnapshot, Summary,
    };
    pub use who::{ThreadEnd, Who};

    /// The run's words, for the reporter: typed events and what they name.
    pub mod events {
        pub use crate::report::{
            EndCause, Exit, JobFate, LogEvent, LostJob, PauseWhy, RecycleWhy, Scale, Stop,
            WorkerEnd, megabytes,
        };
        pub use crate::who::ExitHow;
    }

    /// The options' parsers and their types.
    pub mod options {
        pub use crate::core::budget::MAX_PAUSE;
        pub use crate::core::rate::parse_rate;
        pub use crate::core::rules::{BodyRule, BodyRules};
        pub use crate::jobs::decode::TextEncoding;
        pub use crate::jobs::expand::{expand_with, has_env_ref};
        pub use crate::jobs::table::{
            InputFormat, JobsInput, Layout, ReadError, Record, Records, TableOptions,
            parse_delimiter, unterminated_quote,
        };
        pub use crate::jobs::template::{Body, Templates, Text};
        pub use crate::workers::remote::{HostPlan, Hosts, SshSettings};
    }

    /// The results folder, for export and the report page.
    pub mod folder {
        pub use crate::files::output::{JOBLOG_NAME, MANIFEST_NAME};
        pub use crate::files::safedir::{MAX_RESULT_BYTES, SafeDir, not_regular};
        pub use crate::job::Job;
        pub use crate::records::timestamp;
    }

    /// Test hooks: every module, for the crate's own integration tests,
    /// the simulator and the end-to-end tests. Not an API.
    #[doc(hidden)]
    #[allow(missing_docs)]
    pub mod testing {
        pub mod core {
            pub use crate::core::*;
        }
        pub mod budget {
            pub use crate::core::budget::*;
        }
        pub mod rate {
            pub use crate::core::rate::*;
        }
        pub mod retry {
            pub use crate::core::retry::*;
        }
        pub mod rules {
            pub use crate::core::rules::*;
        }
        pub mod output {
            pub use crate::files::output::*;
        }
        pub mod safedir {
            pub use crate::files::safedir::*;
        }
        pub mod jobs {
            pub use crate::jobs::*;
        }
        pub mod check {
            pub use crate::jobs::check::*;
        }
        pub mod decode {
            pub use crate::jobs::decode::*;
        }
        pub mod expand {
            pub use crate::jobs::expand::*;
        }
        pub mod table {
            pub use crate::jobs::table::*;
        }
        pub mod template {
            pub use crate::jobs::template::*;
        }
        pub mod event {
            pub use crate::workers::event::*;
        }
        pub mod pipes {
            pub use crate::workers::pipes::*;
        }
        pub mod poller {
            pub use crate::workers::poller::*;
        }
        pub mod remote {
            pub use crate::workers::remote::*;
        }
        pub mod thread {
            pub use crate::workers::thread::*;
        }
        pub mod transport {
            pub use crate::workers::transport::*;
        }
        pub mod durations {
            pub use crate::durations::*;
        }
        pub mod error {
            pub use crate::error::*;
        }
        pub mod feed {
            pub use crate::feed::*;
        }
        pub mod job {
            pub use crate::job::*;
        }
        pub mod records {
            pub use crate::records::*;
        }
        pub mod report {
            pub use crate::report::*;
        }
        pub mod who {
            pub use crate::who::*;
        }
    }

    #[cfg(test)]
    mod docs_drift;
}
