//! What goes into the core and what comes out of it: the time, inputs
//! (what happened), actions (what the shell must do) and the job source
//! the core pulls from. Plain data: the shell turns system events into
//! inputs and carries out the actions; the simulator does both with a
//! seeded world instead.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use callpool_protocol::FromWorker;

use crate::feed::Feed;
use crate::records::{AttemptRecord, FinalResult};
use crate::report::{LogEvent, Progress, StatusSnapshot};
use crate::who::{ExitHow, ThreadEnd, Who};

/// The time, as the shell (or the simulator) reads it: the monotonic
/// clock for every deadline, and the wall clock for records and for the
/// reset times servers give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// The monotonic clock.
    pub mono: Instant,
    /// The wall clock (it may jump; nothing is timed by it).
    pub wall: SystemTime,
}

impl Now {
    /// `d` later on both clocks.
    pub fn plus(self, d: Duration) -> Now {
        Now {
            mono: self.mono + d,
            wall: self.wall + d,
        }
    }
}

/// A signal a person (or a script) sent the supervisor, as the core sees
/// it. SIGCHLD never reaches the core: the shell reaps and sends
/// [`Input::Reaped`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    /// SIGINT or SIGTERM: stop gracefully, or at once the second time.
    Interrupt,
    /// SIGUSR1: the status table.
    Status,
    /// SIGTTIN: one worker more.
    MoreWorkers,
    /// SIGTTOU: one worker fewer.
    FewerWorkers,
    /// SIGHUP: replace every worker after its job.
    RollingRestart,
}

/// Why a worker could not be started.
#[derive(Debug)]
pub enum StartError {
    /// The program is missing or not executable: the run cannot go on.
    Unrunnable(std::io::Error),
    /// Anything else (out of processes, a thread that could not start):
    /// counted as a failure to start, and tried again.
    Failed(String),
}

/// Why a job line could not be handed to a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// Its stdin is closed (`EPIPE`): it is exiting, or broken if it lingers.
    BrokenPipe,
    /// Another write error: a protocol error.
    Io(String),
    /// A thread's channel is closed: the thread reports its own end.
    Ended,
}

/// Something that happened, for the core to decide on.
#[derive(Debug)]
pub enum Input {
    /// A worker asked for with [`Action::Start`] runs.
    Started {
        /// The worker's id (the core chose it).
        id: u64,
        /// Its pid or thread id.
        who: Who,
    },
    /// A worker asked for with [`Action::Start`] could not be started.
    StartFailed {
        /// The worker's id.
        id: u64,
        /// Why.
        error: StartError,
    },
    /// A job line of [`Action::Send`] could not be handed over; the
    /// worker cannot have read it.
    SendFailed {
        /// The worker.
        id: u64,
        /// The job.
        job: String,
        /// Why.
        error: SendError,
    },
    /// A worker wrote a line on stdout: a message, or why it is not one.
    Message {
        /// The worker.
        id: u64,
        /// The message, or what is wrong with the line.
        msg: Result<FromWorker, String>,
    },
    /// A worker's stdout holds this many bytes of a line that is not over,
    /// as long as no answer of a job it holds may be (`SHORT_LINE`, in
    /// `workers/pipes.rs`, and more).
    LongLine {
        /// The worker.
        id: u64,
        /// The bytes read so far.
        bytes: usize,
    },
    /// Writing what waited for a worker's input failed (`EPIPE`): the
    /// jobs it holds stay its own; its end will tell.
    InputBroken {
        /// The worker.
        id: u64,
    },
    /// A worker's stdout reached end of file.
    StdoutClosed {
        /// The worker.
        id: u64,
    },
    /// A worker wrote a line on stderr.
    Stderr {
        /// The worker.
        id: u64,
        /// Its pid (or, for a remote worker, its ssh's).
        pid: i32,
        /// The line.
        line: String,
    },
    /// A child process ended: a worker, or a login's ssh.
    Reaped {
        /// Its pid.
        pid: i32,
        /// How.
        how: ExitHow,
    },
    /// A worker thread ended.
    ThreadEnded {
        /// The worker.
        id: u64,
        /// How.
        end: ThreadEnd,
    },
    /// A signal.
    Signal(Sig),
    /// A result file could not be written.
    WriteFailed {
        /// The job.
        id: String,
        /// What failed.
        error: std::io::Error,
    },
    /// The joblog could not be written: the run stops.
    JoblogFailed(std::io::Error),
    /// A worker's resident memory, as asked for by [`Action::MeasureRss`].
    Rss {
        /// The worker.
        id: u64,
        /// Bytes.
        bytes: u64,
    },
    /// A login asked for with [`Action::StartLogin`] runs (`Ok(pid)`), or
    /// could not start.
    LoginStarted {
        /// Its host.
        host: usize,
        /// Which of the host's logins.
        login: usize,
        /// The master's pid, or why it did not start.
        result: Result<i32, String>,
    },
    /// A login's control socket appeared: workers can start over it.
    LoginUp {
        /// Its host.
        host: usize,
        /// Which of the host's logins.
        login: usize,
    },
    /// A login's ssh ended.
    LoginEnded {
        /// Its master's pid.
        pid: i32,
        /// How it ended.
        how: ExitHow,
        /// Its last line on stderr, if it wrote one.
        said: Option<String>,
    },
}

/// Something the shell must do, in order.
#[derive(Debug)]
pub enum Action {
    /// Start worker `id` in `slot`: on this machine, or on a remote host
    /// over that host's login `login`. Answered by [`Input::Started`] or
    /// [`Input::StartFailed`].
    Start {
        /// The worker's id.
        id: u64,
        /// Its slot.
        slot: usize,
        /// Its host (an index into the run's hosts).
        host: usize,
        /// Which of its host's logins.
        login: usize,
    },
    /// Hand a job line to a worker, without blocking. A failure is
    /// answered by [`Input::SendFailed`].
    Send {
        /// The worker.
        id: u64,
        /// The job's id (for [`Input::SendFailed`]).
        job: String,
        /// The line.
        line: Arc<[u8]>,
    },
    /// Close a worker's input: "finish and exit".
    CloseInput {
        /// The worker.
        id: u64,
    },
    /// Stop a worker: SIGTERM to its group, end its ssh session, or
    /// abandon its thread.
    Terminate {
        /// The worker.
        id: u64,
    },
    /// SIGKILL to a worker's group, after SIGTERM was not enough.
    Kill {
        /// The worker.
        id: u64,
    },
    /// The core is done with a worker: its pipes and anything left in its
    /// process group go.
    Forget {
        /// The worker.
        id: u64,
    },
    /// An attempt ended: append its joblog line, then report it.
    Attempt {
        /// The joblog line (secrets masked, newline included).
        line: Vec<u8>,
        /// The job's id.
        id: String,
        /// The attempt.
        record: AttemptRecord,
    },
    /// Write a job's result file.
    WriteResult(Box<FinalResult>),
    /// Start a login (an ssh master connection) for `host`.
    StartLogin {
        /// Its host.
        host: usize,
        /// Which of its host's logins.
        login: usize,
    },
    /// Signal a login's ssh: SIGTERM, or SIGKILL when `kill`.
    StopLogin {
        /// Its pid.
        pid: i32,
        /// SIGKILL rather than SIGTERM.
        kill: bool,
    },
    /// Measure these workers' memory and answer with [`Input::Rss`].
    MeasureRss(Vec<(u64, Who)>),
    /// Tell the person running the run.
    Note(Note),
}

/// What the core tells the person running the run: the reporter owns the
/// words.
#[derive(Debug)]
pub enum Note {
    /// Something worth a log line, as data.
    Event(LogEvent),
    /// A worker was started (it is not ready yet).
    WorkerStarted {
        /// Its slot.
        slot: usize,
        /// Its pid or thread id.
        who: Who,
    },
    /// Every worker asked for at the start has said ready.
    AllReady {
        /// How many.
        workers: usize,
        /// Since the run started.
        after: Duration,
    },
    /// A line a worker wrote on stderr, its secrets masked.
    WorkerStderr {
        /// Its slot, if it still holds one.
        slot: Option<usize>,
        /// Its host, when remote.
        host: Option<&'static str>,
        /// Its pid.
        pid: i32,
        /// The line.
        line: String,
    },
    /// The next worker started in `slot` replaces one that went for `why`
    /// (a restart reason of docs/lifecycle.md).
    Replacing {
        /// The slot.
        slot: usize,
        /// Why the worker before went.
        why: &'static str,
    },
    /// The progress, a few times a second.
    Tick(Progress),
    /// The status table's content (SIGUSR1); the shell adds what only the
    /// system knows (memory) before it is shown.
    Status(StatusSnapshot),
}

/// What the job source has next.
#[derive(Debug)]
pub enum Pull {
    /// An item.
    Item(Feed),
    /// Nothing now; more may come (the shell wakes the core when it does).
    Empty,
    /// Nothing more, ever.
    Ended,
}

/// Where the core takes jobs from, in file order: a reader thread's
/// channel in the shell, a list in the simulator. Pulled, not pushed, so
/// that jobs are read ahead only as far as the source's own bound.
pub trait JobSource {
    /// The next item, if one is ready.
    fn pull(&mut self) -> Pull;
    /// How many items are ready.
    fn ready(&self) -> usize;
}
