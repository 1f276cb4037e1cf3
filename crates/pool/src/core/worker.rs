//! One worker as the core sees it: where it is in its life, the jobs it
//! holds, and the one place that decides what is due for it next. Its
//! pipes or channel belong to the shell; this is the state alone.

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use crate::job::Job;
use crate::records::AttemptRecord;
use crate::who::{ExitHow, Who};

/// How many of a worker's last stderr lines are kept, to explain why it
/// failed to start.
const STDERR_TAIL: usize = 5;

/// A worker that closed its stdout but keeps running is given this long to
/// exit before it counts as broken.
const STDOUT_CLOSED_GRACE: Duration = Duration::from_millis(500);

/// After a worker is reaped, its stdout is waited for this long (a
/// grandchild may hold it) before its last lines are given up.
const AFTER_EXIT_GRACE: Duration = Duration::from_secs(1);

/// Where a worker is in its life. Each phase carries what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Started; it has not said `ready` yet.
    Starting,
    /// Ready for jobs: idle or busy, by what it holds.
    Running,
    /// Finishes the jobs it holds, then its input is closed.
    Retiring(Retire),
    /// Its input is closed: it should exit on its own.
    Closing {
        /// When its input was closed.
        at: Instant,
        /// Why it was retired, if it was (not closed at the end of the run).
        retired: Option<Retire>,
    },
    /// The supervisor is stopping it by signal.
    Killing {
        /// Why.
        reason: KillReason,
        /// When SIGTERM went.
        at: Instant,
        /// SIGKILL has gone too.
        sigkilled: bool,
    },
}

impl Phase {
    /// The names of the phases, in declaration order (docs/lifecycle.md is
    /// checked against them).
    #[cfg(test)]
    pub const NAMES: [&'static str; 5] = ["Starting", "Running", "Retiring", "Closing", "Killing"];

    /// The phase's name, as [`Phase::NAMES`] has it.
    #[cfg(test)]
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Starting => "Starting",
            Phase::Running => "Running",
            Phase::Retiring(_) => "Retiring",
            Phase::Closing { .. } => "Closing",
            Phase::Killing { .. } => "Killing",
        }
    }
}

/// Why a worker is told to finish its jobs and go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retire {
    /// SIGHUP: every worker is replaced.
    RollingRestart,
    /// SIGTTOU: one worker fewer.
    Fewer,
    /// It has done its `--max-jobs-per-worker` jobs.
    MaxJobs,
    /// Its RSS passed `--max-worker-rss`.
    Memory,
}

impl Retire {
    /// Every reason to retire a worker, in declaration order.
    #[cfg(test)]
    pub const ALL: [Retire; 4] = [
        Retire::RollingRestart,
        Retire::Fewer,
        Retire::MaxJobs,
        Retire::Memory,
    ];

    /// The reason its replacement is counted under.
    pub fn reason(self) -> &'static str {
        match self {
            Retire::RollingRestart | Retire::Fewer => "rolling restart",
            Retire::MaxJobs => "max jobs",
            Retire::Memory => "memory",
        }
    }
}

/// What the status table calls a worker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not ready yet.
    Starting,
    /// Holds no job.
    Idle,
    /// Holds at least one job.
    Busy,
    /// Gets no more jobs and is on its way out.
    Stopping,
}

impl State {
    /// Every state, in declaration order (docs/lifecycle.md is checked
    /// against it).
    #[cfg(test)]
    pub const ALL: [State; 4] = [State::Starting, State::Idle, State::Busy, State::Stopping];

    /// The state's name, for the status table.
    pub fn name(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Idle => "idle",
            State::Busy => "busy",
            State::Stopping => "stopping",
        }
    }
}

/// A job with the attempts it has had so far.
#[derive(Debug)]
pub struct Pending {
    /// The job.
    pub job: Box<Job>,
    /// Its earlier attempts.
    pub history: Vec<AttemptRecord>,
    /// Times it went back to the queue uncharged because its worker's ssh
    /// connection broke: capped, so that a job that kills its remote
    /// worker's session cannot bounce for ever.
    pub lost_connections: u32,
    /// Workers that died while running it (docs/lifecycle.md §3, "Jobs
    /// that kill their workers").
    pub kills: u32,
    /// It was taken from further down the list to tell a run of jobs that
    /// kill their workers from a worker that dies on every job.
    pub probe: bool,
    /// Answers refused by the server's rate limit (a 403 or 429 with
    /// `Remaining: 0` or `Retry-After`): retried after the pause without
    /// being charged, up to a cap (budget.rs).
    pub rate_limited: u32,
}

/// A job sent to a worker.
#[derive(Debug)]
pub struct InFlight {
    /// The job and its history.
    pub pending: Pending,
    /// When the attempt's clock started: when it was sent, or, for a job
    /// queued behind another on the same worker, when the one before it
    /// finished.
    pub started: Instant,
    /// The same moment on the wall clock, for records.
    pub started_wall: SystemTime,
}

/// Why the supervisor is stopping a worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillReason {
    /// Its job ran past the deadline.
    Timeout,
    /// It sent no `ready` line in time.
    StartTimeout,
    /// It wrote something that breaks the protocol.
    Protocol(String),
    /// It did not exit after its input was closed.
    NoExit,
    /// The run is being stopped at once (second Ctrl-C, a fatal error).
    Shutdown,
    /// Its host was given up: its job goes back to the queue uncharged.
    HostDown,
}

/// The time limits a worker's deadlines come from.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// How long a new worker may take to say `ready`.
    pub start_timeout: Duration,
    /// Between SIGTERM and SIGKILL, and between closing a worker's input and
    /// SIGTERM.
    pub grace: Duration,
}

/// What falls due for a worker at its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// It was reaped but its stdout stayed open: finish without its last
    /// lines.
    Finalize,
    /// It closed its stdout but keeps running: a protocol error.
    StdoutClosed,
    /// Its stdin broke (it closed it) but it keeps running: a protocol
    /// error.
    StdinClosed,
    /// It did not die of SIGTERM within the grace: SIGKILL.
    Kill,
    /// It did not exit after its input was closed: stop it.
    NoExit,
    /// It did not say `ready` in time: stop it.
    StartTimeout,
    /// The job it runs passed its deadline: stop it.
    JobTimeout,
}

impl Due {
    /// Everything that can fall due, in declaration order
    /// (docs/lifecycle.md is checked against it).
    #[cfg(test)]
    pub const ALL: [Due; 7] = [
        Due::Finalize,
        Due::StdoutClosed,
        Due::StdinClosed,
        Due::Kill,
        Due::NoExit,
        Due::StartTimeout,
        Due::JobTimeout,
    ];
}

/// A worker.
#[derive(Debug)]
pub struct Worker {
    /// Unique in the run; events name workers by it.
    pub id: u64,
    /// The slot it fills (slots are what TTIN/TTOU add and remove).
    pub slot: usize,
    /// Its pid or thread id.
    pub who: Who,
    /// Whether it may be sent a job: its input is open.
    pub input_open: bool,
    /// Where it is in its life.
    pub phase: Phase,
    /// When it entered its phase, or last went idle or busy.
    pub since: Instant,
    /// When it was started.
    pub spawned: Instant,
    /// The jobs it holds, oldest (the one running) first.
    pub inflight: VecDeque<InFlight>,
    /// Jobs it has answered.
    pub jobs_done: u64,
    /// When its stdout reached end of file (a thread: when it ended).
    pub stdout_closed_at: Option<Instant>,
    /// When a write to its stdin failed (`EPIPE`: it closed its end, or
    /// is exiting).
    pub stdin_broken_at: Option<Instant>,
    /// How it ended, and when.
    pub exit: Option<(ExitHow, Instant)>,
    /// Its last stderr lines.
    pub stderr_tail: VecDeque<String>,
    /// It had room for a job when none was available, and waits in the
    /// loop's list of workers to feed.
    pub hungry: bool,
    /// It is replaced after this many jobs (`--max-jobs-per-worker`, plus
    /// its jitter).
    pub jobs_limit: Option<u64>,
}

impl Worker {
    /// A worker just started.
    pub(crate) fn new(id: u64, slot: usize, who: Who, now: Instant) -> Self {
        Self {
            id,
            slot,
            who,
            input_open: true,
            phase: Phase::Starting,
            since: now,
            spawned: now,
            inflight: VecDeque::new(),
            jobs_done: 0,
            stdout_closed_at: None,
            stdin_broken_at: None,
            exit: None,
            stderr_tail: VecDeque::new(),
            hungry: false,
            jobs_limit: None,
        }
    }

    fn enter(&mut self, phase: Phase, now: Instant) {
        if self.phase != phase {
            self.phase = phase;
            self.since = now;
        }
    }

    /// Its `ready` line came: it may get jobs.
    pub fn ready(&mut self, now: Instant) {
        if self.phase == Phase::Starting {
            self.enter(Phase::Running, now);
        }
    }

    /// The status table's view of its phase.
    pub fn state(&self) -> State {
        match self.phase {
            Phase::Starting => State::Starting,
            Phase::Running | Phase::Retiring(_) if self.inflight.is_empty() => State::Idle,
            Phase::Running | Phase::Retiring(_) => State::Busy,
            Phase::Closing { .. } | Phase::Killing { .. } => State::Stopping,
        }
    }

    /// Whether it is being stopped by the supervisor, and why.
    pub fn kill_reason(&self) -> Option<&KillReason> {
        match &self.phase {
            Phase::Killing { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// Whether its input was closed for it to exit (end of run, TTOU, HUP).
    pub fn was_closed(&self) -> bool {
        matches!(self.phase, Phase::Closing { .. })
    }

    /// Why it is to be replaced after its jobs, or was.
    pub fn retiring(&self) -> Option<Retire> {
        match self.phase {
            Phase::Retiring(why)
            | Phase::Closing {
                retired: Some(why), ..
            } => Some(why),
            _ => None,
        }
    }

    /// Notes when the job at the head starts or went idle: after a change
    /// to `inflight`.
    pub fn settle(&mut self, was_busy: bool, now: Instant) {
        if was_busy == self.inflight.is_empty() {
            self.since = now;
        }
    }

    /// Whether it may be given another job, holding at most `prefetch`.
    pub fn has_room(&self, prefetch: usize) -> bool {
        // A worker near its job limit is not given jobs it would not run.
        let under_limit = self
            .jobs_limit
            .is_none_or(|l| self.jobs_done + (self.inflight.len() as u64) < l);
        self.phase == Phase::Running
            && self.input_open
            && self.inflight.len() < prefetch
            && under_limit
    }

    /// Whether it has done all the jobs it may.
    pub fn used_up(&self) -> bool {
        self.jobs_limit.is_some_and(|l| self.jobs_done >= l)
    }

    /// A write to its input failed (`EPIPE`): it closed its stdin, which
    /// nearly always means it is exiting, so its end is awaited (a crash,
    /// if it held a job) rather than called a protocol error; it gets no
    /// more jobs, and if it is still alive after `--kill-grace` it is
    /// stopped as broken ([`Due::StdinClosed`]).
    pub fn input_broken(&mut self, now: Instant) {
        self.input_open = false;
        self.stdin_broken_at.get_or_insert(now);
    }

    /// Lets it finish the jobs it holds; true when its input is to be
    /// closed now (it holds none).
    #[must_use]
    pub fn retire(&mut self, why: Retire, now: Instant) -> bool {
        if self.phase == Phase::Running || self.phase == Phase::Starting {
            self.enter(Phase::Retiring(why), now);
        }
        self.inflight.is_empty()
    }

    /// Its input is closed: end of input means "finish and exit 0". False
    /// when it was closed or is being killed already (nothing to do).
    #[must_use]
    pub fn close_input(&mut self, now: Instant) -> bool {
        if matches!(self.phase, Phase::Closing { .. } | Phase::Killing { .. }) {
            return false;
        }
        let retired = match self.phase {
            Phase::Retiring(why) => Some(why),
            _ => None,
        };
        self.input_open = false;
        self.enter(Phase::Closing { at: now, retired }, now);
        true
    }

    /// Stops it: SIGTERM to a process (SIGKILL follows after the grace);
    /// a thread is abandoned, and is gone at once. False when it is being
    /// stopped already.
    #[must_use]
    pub fn terminate(&mut self, reason: KillReason, now: Instant) -> bool {
        if let Phase::Killing { .. } = self.phase {
            return false;
        }
        self.input_open = false;
        self.enter(
            Phase::Killing {
                reason,
                at: now,
                sigkilled: false,
            },
            now,
        );
        if self.who.is_thread() {
            self.exit = Some((ExitHow::Abandoned, now));
            self.stdout_closed_at.get_or_insert(now);
        }
        true
    }

    /// Whether stopping it ended it at once (an abandoned thread).
    pub fn gone(&self) -> bool {
        self.exit.is_some() && self.stdout_closed_at.is_some()
    }

    /// SIGKILL, after SIGTERM was not enough.
    pub fn kill(&mut self) {
        if let Phase::Killing { sigkilled, .. } = &mut self.phase {
            *sigkilled = true;
        }
    }

    /// Keeps a stderr line for the start-failure message.
    pub fn note_stderr(&mut self, line: &str) {
        if self.stderr_tail.len() == STDERR_TAIL {
            self.stderr_tail.pop_front();
        }
        self.stderr_tail.push_back(line.to_string());
    }

    /// The next thing due for this worker, and when: the one place that
    /// chooses among its deadlines.
    pub fn next_due(&self, limits: Limits) -> Option<(Instant, Due)> {
        if let Some((_, at)) = self.exit {
            return self
                .stdout_closed_at
                .is_none()
                .then_some((at + AFTER_EXIT_GRACE, Due::Finalize));
        }
        if let Phase::Killing { at, sigkilled, .. } = self.phase {
            return (!sigkilled).then_some((at + limits.grace, Due::Kill));
        }
        if let Some(at) = self.stdout_closed_at {
            // Closing stdout usually means exiting; a worker that keeps
            // running without a way to answer is broken.
            return Some((at + STDOUT_CLOSED_GRACE, Due::StdoutClosed));
        }
        if let Some(at) = self.stdin_broken_at {
            // Normally it is exiting: it gets the kill grace to be reaped
            // (its end then is a crash), as a worker whose input the
            // supervisor closed does.
            return Some((at + limits.grace, Due::StdinClosed));
        }
        match self.phase {
            Phase::Closing { at, .. } => Some((at + limits.grace, Due::NoExit)),
            Phase::Starting => Some((self.spawned + limits.start_timeout, Due::StartTimeout)),
            Phase::Running | Phase::Retiring(_) => self
                .inflight
                .front()
                .map(|f| (f.started + f.pending.job.timeout, Due::JobTimeout)),
            Phase::Killing { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    const LIMITS: Limits = Limits {
        start_timeout: Duration::from_secs(10),
        grace: Duration::from_secs(2),
    };

    /// A worker over a thread transport whose thread never runs: the phase
    /// logic needs no real worker. `t0` is the fake clock's zero.
    fn worker(t0: Instant) -> (Worker, ()) {
        (Worker::new(1, 0, Who::Thread(77), t0), ())
    }

    fn job(timeout: Duration, at: Instant) -> InFlight {
        InFlight {
            pending: Pending {
                job: Box::new(Job {
                    id: "j".into(),
                    line: 1,
                    method: "GET".into(),
                    url: "http://127.0.0.1/".into(),
                    timeout,
                    wire: Arc::from(&b"{}\n"[..]),
                    secrets: Vec::new(),
                    fingerprint: String::new(),
                    args: None,
                }),
                history: Vec::new(),
                lost_connections: 0,
                kills: 0,
                probe: false,
                rate_limited: 0,
            },
            started: at,
            started_wall: SystemTime::UNIX_EPOCH,
        }
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn starting_is_due_at_the_start_timeout() {
        let t0 = Instant::now();
        let (w, _rx) = worker(t0);
        assert_eq!(w.state(), State::Starting);
        assert_eq!(w.next_due(LIMITS), Some((t0 + secs(10), Due::StartTimeout)));
    }

    #[test]
    fn a_busy_worker_is_due_at_its_head_jobs_deadline() {
        let t0 = Instant::now();
        let (mut w, _rx) = worker(t0);
        w.ready(t0 + secs(1));
        assert_eq!(w.state(), State::Idle);
        assert_eq!(w.next_due(LIMITS), None);
        w.inflight.push_back(job(secs(5), t0 + secs(2)));
        w.inflight.push_back(job(secs(1), t0 + secs(2)));
        w.settle(false, t0 + secs(2));
        assert_eq!(w.state(), State::Busy);
        assert_eq!(w.since, t0 + secs(2));
        // The head's deadline, not the queued job's shorter one.
        assert_eq!(w.next_due(LIMITS), Some((t0 + secs(7), Due::JobTimeout)));
        assert!(w.has_room(3) && !w.has_room(2));
    }

    #[test]
    fn retiring_finishes_its_job_then_closes_and_waits_the_grace() {
        let t0 = Instant::now();
        let (mut w, ()) = worker(t0);
        w.ready(t0);
        w.inflight.push_back(job(secs(5), t0));
        assert!(!w.retire(Retire::RollingRestart, t0 + secs(1)));
        assert!(w.retiring() == Some(Retire::RollingRestart) && !w.has_room(9));
        assert_eq!(w.next_due(LIMITS), Some((t0 + secs(5), Due::JobTimeout)));
        w.inflight.clear();
        assert!(w.retire(Retire::RollingRestart, t0 + secs(3)));
        assert!(w.close_input(t0 + secs(3)));
        assert!(w.was_closed() && w.retiring() == Some(Retire::RollingRestart));
        assert_eq!(w.state(), State::Stopping);
        assert_eq!(w.next_due(LIMITS), Some((t0 + secs(5), Due::NoExit)));
        // Its input is closed.
        assert!(!w.input_open);
    }

    #[test]
    fn a_thread_is_abandoned_at_once_and_nothing_more_is_due() {
        let t0 = Instant::now();
        let (mut w, _rx) = worker(t0);
        w.ready(t0);
        w.inflight.push_back(job(secs(2), t0));
        assert_eq!(w.next_due(LIMITS), Some((t0 + secs(2), Due::JobTimeout)));
        assert!(w.terminate(KillReason::Timeout, t0 + secs(2)) && w.gone());
        assert_eq!(w.kill_reason(), Some(&KillReason::Timeout));
        assert_eq!(w.exit, Some((ExitHow::Abandoned, t0 + secs(2))));
        assert_eq!(w.next_due(LIMITS), None);
    }

    #[test]
    fn killing_waits_the_grace_then_sigkill_then_nothing() {
        let t0 = Instant::now();
        let (mut w, _rx) = worker(t0);
        // Phase logic alone: a process's Killing phase without a process.
        w.phase = Phase::Killing {
            reason: KillReason::StartTimeout,
            at: t0 + secs(10),
            sigkilled: false,
        };
        assert_eq!(w.next_due(LIMITS), Some((t0 + secs(12), Due::Kill)));
        w.kill();
        assert_eq!(w.next_due(LIMITS), None);
    }

    #[test]
    fn stdout_closed_then_exit_or_not() {
        let t0 = Instant::now();
        let (mut w, _rx) = worker(t0);
        w.ready(t0);
        w.stdout_closed_at = Some(t0 + secs(1));
        assert_eq!(
            w.next_due(LIMITS),
            Some((t0 + secs(1) + STDOUT_CLOSED_GRACE, Due::StdoutClosed))
        );
        // Reaped with stdout open (a grandchild holds it): wait a little.
        w.stdout_closed_at = None;
        w.exit = Some((ExitHow::Code(0), t0 + secs(4)));
        assert_eq!(
            w.next_due(LIMITS),
            Some((t0 + secs(4) + AFTER_EXIT_GRACE, Due::Finalize))
        );
    }

    #[test]
    fn a_worker_near_its_job_limit_gets_no_job_it_would_not_run() {
        let t0 = Instant::now();
        let (mut w, _rx) = worker(t0);
        w.ready(t0);
        w.jobs_limit = Some(3);
        w.jobs_done = 2;
        assert!(w.has_room(2) && !w.used_up());
        w.inflight.push_back(job(secs(5), t0));
        assert!(!w.has_room(2), "its last job is held");
        w.inflight.clear();
        w.jobs_done = 3;
        assert!(w.used_up());
        assert!(w.retire(Retire::MaxJobs, t0 + secs(1)));
        assert_eq!(w.retiring(), Some(Retire::MaxJobs));
        assert_eq!(Retire::MaxJobs.reason(), "max jobs");
        assert_eq!(Retire::Memory.reason(), "memory");
    }
}
