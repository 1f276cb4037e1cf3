//! What happened in a run that a person may want to know, as data: the
//! engine decides, the reporter (the binary's `ui`) writes the words. Each
//! event knows how much it matters ([`LogEvent::level`]), so that a reporter
//! that filters by level need not know the events one by one.

use std::time::{Duration, SystemTime};

use crate::report::{Interrupt, Level};
use crate::who::{ExitHow, Who};

/// Something worth a log line.
#[derive(Debug, Clone, PartialEq)]
pub enum LogEvent {
    /// A worker ended in a way worth telling (an exit after its input was
    /// closed, or a kill at a forced stop, is not).
    WorkerEnded(WorkerEnd),
    /// A job ran past its deadline: its worker is being stopped.
    JobStuck {
        /// The worker's slot.
        slot: usize,
        /// The worker.
        who: Who,
        /// The job's id.
        job: String,
        /// How long the job has run.
        ran: Duration,
    },
    /// A worker gets no more jobs and is replaced after its current one.
    Recycled {
        /// Its slot.
        slot: usize,
        /// The worker.
        who: Who,
        /// Why.
        why: RecycleWhy,
    },
    /// The pool was resized or restarted by a signal, or a signal asking
    /// for that was refused.
    Scaled(Scale),
    /// The run begins to stop before its end.
    Stopping(Stop),
    /// The server's rate-limit budget is spent: no job starts until
    /// `until`.
    BudgetPause {
        /// When jobs start again (the wall clock).
        until: SystemTime,
        /// How long that is from now.
        wait: Duration,
        /// What the server's answer showed.
        because: PauseWhy,
        /// Set when the server's reset is further away than the longest
        /// pause: the pause was cut to this.
        capped: Option<Duration>,
    },
    /// A 429 answer slowed the pace of `--rate` to this many requests per
    /// second (told at most once a second).
    SlowedDown {
        /// Requests per second now.
        rate: f64,
    },
    /// A login (an ssh master connection) to a host is up.
    HostLoggedIn {
        /// The host, as given to `--host`.
        host: &'static str,
        /// Which of its logins (0-based).
        login: usize,
        /// How many logins it has.
        logins: usize,
    },
    /// A login failed and is tried again after a wait.
    LoginRetry {
        /// The host.
        host: &'static str,
        /// Why it failed (the same text a host given up keeps as its
        /// reason, for the status table and the run's error).
        why: String,
        /// How long until the next try.
        wait: Duration,
    },
    /// A host was given up; its jobs go to the other hosts.
    HostDown {
        /// The host.
        host: &'static str,
        /// Why (the text the status table and the summary show too).
        why: String,
    },
    /// The run's manifest could not be written.
    ManifestNotWritten {
        /// What failed, naming the file.
        error: String,
    },
    /// Processes started by workers left their worker's process group and
    /// still run at the end of the run: they were not killed.
    EscapedProcesses {
        /// Their pids, sorted.
        pids: Vec<i32>,
    },
}

impl LogEvent {
    /// How much the event matters.
    pub fn level(&self) -> Level {
        match self {
            LogEvent::HostDown { .. } => Level::Error,
            LogEvent::WorkerEnded(_)
            | LogEvent::JobStuck { .. }
            | LogEvent::Stopping(_)
            | LogEvent::BudgetPause { .. }
            | LogEvent::SlowedDown { .. }
            | LogEvent::LoginRetry { .. }
            | LogEvent::ManifestNotWritten { .. }
            | LogEvent::EscapedProcesses { .. } => Level::Warn,
            LogEvent::Scaled(s) if s.refused() => Level::Warn,
            LogEvent::Recycled { .. } | LogEvent::Scaled(_) | LogEvent::HostLoggedIn { .. } => {
                Level::Info
            }
        }
    }
}

/// What made the run pause for the server's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseWhy {
    /// A refusal with `Retry-After`.
    RetryAfter,
    /// `X-RateLimit-Remaining: 0` (or the IETF header's): the budget is
    /// spent.
    BudgetSpent,
}

/// A worker's end, decided once: why it ended, what became of the job it
/// was running, whether it is replaced, and whether it counts as a failure
/// to start.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerEnd {
    /// Its slot.
    pub slot: usize,
    /// The worker.
    pub who: Who,
    /// Why it ended.
    pub cause: EndCause,
    /// The job it was running, if it was running one.
    pub job: Option<LostJob>,
    /// A replacement starts in its slot: at once, or, after a failure to
    /// start, once its backoff has passed. False when the run (or its
    /// host) gives up, stops, or has no work left for it.
    pub replaced: bool,
    /// It counts toward the limit of failures to start in a row.
    pub start_failure: bool,
    /// Jobs it finished.
    pub jobs_done: u64,
}

impl WorkerEnd {
    /// Whether the end is news: a worker that exited after its input was
    /// closed, or was killed at a forced stop, or left with its host while
    /// holding no job, is not.
    pub fn is_news(&self) -> bool {
        match self.cause {
            EndCause::Closed | EndCause::Shutdown => false,
            EndCause::HostDown => self.job.is_some(),
            _ => true,
        }
    }
}

/// Why a worker ended.
#[derive(Debug, Clone, PartialEq)]
pub enum EndCause {
    /// It was stopped at a deadline: its job's (`job`: the job and its
    /// timeout), or one of its own with no job.
    Deadline {
        /// The job that ran past its deadline, and that deadline.
        job: Option<(String, Duration)>,
    },
    /// It sent no `ready` within the start timeout.
    NoReady {
        /// The start timeout.
        within: Duration,
    },
    /// It broke the protocol, and was stopped.
    Protocol {
        /// What it did ("sent `ready` twice").
        what: String,
    },
    /// It did not exit within the grace after its input was closed.
    NoExit {
        /// The grace.
        grace: Duration,
    },
    /// It died by itself while running a job.
    Died(Exit),
    /// It died by itself holding no job.
    DiedBetweenJobs(Exit),
    /// It exited before it said `ready`.
    ExitedBeforeReady(Exit),
    /// Its ssh connection broke (ssh exit status 255).
    ConnectionLost,
    /// Its host was given up, and it was stopped with it.
    HostDown,
    /// It exited after its input was closed, as asked.
    Closed,
    /// It was killed because the run stops at once.
    Shutdown,
}

/// How a worker that died by itself ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Exit {
    /// Its exit status, signal, or thread end; `None` when unknown.
    pub how: Option<ExitHow>,
    /// Set when its last stderr lines show it ran out of memory under
    /// `--worker-memory-limit`: that limit, in bytes.
    pub out_of_memory_under: Option<u64>,
}

/// The job a worker was running when it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct LostJob {
    /// The job's id.
    pub id: String,
    /// Which attempt it was (1-based, every attempt counted).
    pub attempt: u32,
    /// `--retries` plus one.
    pub max: u32,
    /// What became of it.
    pub fate: JobFate,
    /// When the job is charged with the worker's death: how many workers
    /// it has killed, this one included.
    pub kills: Option<u32>,
}

/// What became of a job whose attempt did not end with an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobFate {
    /// Back to the queue, uncharged: the fault was not the job's (its
    /// worker's host went down, its ssh connection broke, the server's
    /// budget refused it).
    Requeued,
    /// Charged, and tried again.
    Retried,
    /// Charged, and held until another job has been answered: it may be
    /// a job that kills its workers.
    HeldForProof,
    /// It has its final result: answered, failed, or, for an attempt
    /// lost with its worker, no attempts were left.
    Finished,
    /// The run is stopping: the job is left without a result, for
    /// `--resume`.
    LeftForResume,
}

/// Why a worker is replaced after its current job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecycleWhy {
    /// It has done its `--max-jobs-per-worker`.
    MaxJobs {
        /// Jobs it has done.
        done: u64,
    },
    /// It grew past `--max-worker-rss`.
    Memory {
        /// Its resident memory, in bytes.
        rss: u64,
        /// The limit, in bytes.
        max: u64,
    },
}

/// What a signal did to the pool's size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scale {
    /// SIGTTIN: one worker more.
    More {
        /// Workers wanted now.
        now: usize,
    },
    /// SIGTTOU: one worker fewer; the worker in `slot` stops after its job.
    Fewer {
        /// Workers wanted now.
        now: usize,
        /// The slot that goes.
        slot: usize,
    },
    /// SIGTTOU refused: one worker is the minimum.
    FewerRefusedMinimum,
    /// SIGTTOU refused: the workers left would all be on hosts that are
    /// down.
    FewerRefusedHostsDown,
    /// SIGHUP: every worker is replaced after its current job.
    RollingRestart {
        /// How many.
        workers: usize,
    },
}

impl Scale {
    /// Whether the signal was refused.
    pub fn refused(&self) -> bool {
        matches!(
            self,
            Scale::FewerRefusedMinimum | Scale::FewerRefusedHostsDown
        )
    }
}

/// Why the run begins to stop before its end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// SIGINT or SIGTERM: no more jobs are sent; those in flight finish.
    Interrupted {
        /// Jobs in flight.
        in_flight: usize,
    },
    /// An answer matched `--stop-if`: as for an interrupt.
    StopIf {
        /// The job whose answer matched.
        job: String,
        /// The rule, as given.
        rule: String,
        /// Jobs in flight.
        in_flight: usize,
    },
    /// Interrupted again: every worker is killed.
    Forced,
}

impl Stop {
    /// The kind of stop, as the summary names it.
    pub fn interrupt(&self) -> Interrupt {
        match self {
            Stop::Interrupted { .. } => Interrupt::Graceful,
            Stop::StopIf { .. } => Interrupt::ApiStop,
            Stop::Forced => Interrupt::Forced,
        }
    }
}
