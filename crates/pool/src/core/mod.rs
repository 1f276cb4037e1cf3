//! The core: every decision of a run, as a state machine without I/O, in
//! the manner of quinn-proto and rustls. It is given the time and what
//! happened ([`Input`]), and says what to do ([`Action`]) and when to call
//! it again ([`Core::poll_timeout`]). It makes no system call and reads no
//! clock (CI checks this folder for them), so a seeded simulator can drive
//! it through a whole run with injected faults (`crates/pool/tests/sim.rs`);
//! the shell (`src/shell/`) turns pipes, signals, child exits and
//! writer threads into inputs and carries out the actions.
//!
//! What it decides: which job goes to which worker, deadlines and the kill
//! escalation, retries and their backoff, restart throttling and the
//! give-up rules, recycling, `--rate` and server budgets, `--dedup`, hosts
//! up and down, a graceful or forced stop.

pub mod budget;
mod config;
mod control;
mod decide;
mod dedup;
mod dispatch;
mod ends;
mod hosts;
mod io;
mod lives;
pub mod rate;
mod results;
pub mod retry;
pub mod rules;
mod status;
pub(crate) mod worker;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant, SystemTime};

pub use config::{CoreConfig, HostsConfig, Jobs, Recycle};
pub use io::{Action, Input, JobSource, Note, Now, Pull, SendError, Sig, StartError};

use crate::core::budget::Budget;
use crate::core::rate::Pacer;
use crate::error::RunError;
use crate::report::{LogEvent, PauseWhy, Progress, Summary};
use crate::who::Who;
use hosts::Host;
use worker::{Limits, Pending};

/// How often the core sends a [`Note::Tick`].
const TICK: Duration = Duration::from_millis(100);
/// How many failed jobs the summary names.
const FAILURES_NAMED: usize = 5;
/// Answers refused by the server's budget that a job may get without
/// being charged; past them, a refusal counts as any other answer (a
/// server that says "spent" for ever must not hold a job for ever).
const MAX_RATE_LIMITED: u32 = 10;
/// Replacement workers wait this long after a failure, doubling per
/// consecutive failure up to [`RESTART_BACKOFF_CAP`].
const RESTART_BACKOFF: Duration = Duration::from_millis(100);
const RESTART_BACKOFF_CAP: Duration = Duration::from_secs(5);

/// The reasons a slot's new worker is counted under in the summary's
/// `restarts`, besides [`worker::Retire::reason`]: its last worker died,
/// was stopped at a job's deadline, broke the protocol, or failed to start.
const CRASHED: &str = "crashed";
const STUCK: &str = "stuck";
const PROTOCOL_ERROR: &str = "protocol error";
const FAILED_TO_START: &str = "failed to start";
#[cfg(test)]
pub(crate) const RESTART_REASONS: [&str; 4] = [CRASHED, STUCK, PROTOCOL_ERROR, FAILED_TO_START];

/// After the `failures`-th failure to start in a row: how long the slot
/// waits before it starts another worker (100 ms, doubling, at most
/// [`RESTART_BACKOFF_CAP`]), or `None` once `max` failures in a row make
/// the run give up.
pub fn restart_delay(failures: u32, max: u32) -> Option<Duration> {
    if failures >= max {
        return None;
    }
    let exp = failures.saturating_sub(1).min(16);
    Some(
        RESTART_BACKOFF
            .saturating_mul(1 << exp)
            .min(RESTART_BACKOFF_CAP),
    )
}

/// What the loop is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Sending jobs.
    Running,
    /// All jobs are done; workers are told to exit.
    Draining,
    /// Interrupted once: no new jobs, the ones in flight finish.
    Stopping,
    /// Interrupted twice, or a fatal error: every worker is killed.
    Killing,
}

#[cfg(test)]
impl Phase {
    /// Every phase, in declaration order (docs/lifecycle.md is checked
    /// against it).
    pub(crate) const ALL: [Phase; 4] = [
        Phase::Running,
        Phase::Draining,
        Phase::Stopping,
        Phase::Killing,
    ];
}

/// A job waiting for its retry time.
struct Waiting {
    at: Instant,
    seq: u64,
    pending: Pending,
}

impl PartialEq for Waiting {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Waiting {}
impl PartialOrd for Waiting {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Waiting {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A slot: a place for one worker, with its history.
#[derive(Default)]
struct Slot {
    /// The host its workers run on (an index into the hosts).
    host: usize,
    /// Which of that host's logins its workers' sessions go through.
    login: usize,
    /// Its worker: asked for (not started yet) or running.
    worker: Option<u64>,
    respawn_at: Option<Instant>,
    /// Why the next worker of this slot replaces the last one.
    respawn_why: Option<&'static str>,
    restarts: u64,
    jobs_done: u64,
}

/// A worker thread the core stopped waiting for: it ends when its call
/// returns, and whatever it answers then is dropped.
pub(crate) struct Abandoned {
    pub slot: usize,
    pub who: Who,
    pub since: Instant,
    pub job: Option<String>,
}

/// The state of a run, and every decision about it.
pub struct Core {
    cfg: CoreConfig,
    /// What the shell must do, in order.
    actions: VecDeque<Action>,
    rng: fastrand::Rng,
    /// The latest time given.
    now: Now,
    /// The job source; `None` once it has given every job.
    source: Option<Box<dyn JobSource>>,
    /// Ordered by id, so that a seed replays the same run.
    workers: BTreeMap<u64, Worker>,
    by_pid: HashMap<i32, u64>,
    slots: Vec<Slot>,
    /// How many workers are wanted (changed by TTIN/TTOU).
    target: usize,
    next_id: u64,
    /// Jobs to send before new ones: requeued from a lost worker, or due
    /// for their retry.
    ready: VecDeque<Pending>,
    /// Jobs waiting for their retry time.
    waiting: BinaryHeap<Reverse<Waiting>>,
    /// Jobs that killed the worker running them, held until a worker
    /// answers another job (or the job source is used up): retried at
    /// once they would only kill again, and tell nothing about the worker.
    suspects: VecDeque<Pending>,
    seq: u64,
    /// Workers with room for a job that found none.
    hungry: VecDeque<u64>,
    phase: Phase,
    interrupted: Option<crate::report::Interrupt>,
    fatal: Option<RunError>,
    summary: Summary,
    started: Instant,
    last_tick: Instant,
    pacer: Option<Pacer>,
    /// The server's rate-limit budget (budget.rs).
    budget: Budget,
    /// Until when, and why, the budget paused the run (for progress).
    paused: Option<(SystemTime, PauseWhy)>,
    last_slowdown_log: Option<Instant>,
    /// Secret values seen in jobs, scrubbed from worker stderr lines.
    secrets: Vec<String>,
    secret_set: HashSet<String>,
    /// Worker threads given up at a deadline that have not ended yet.
    abandoned: BTreeMap<u64, Abandoned>,
    /// The "all workers ready" line was reported.
    all_ready_told: bool,
    /// `--dedup`: requests made more than once, and their answers.
    dedup: Option<dedup::Dedup>,
    /// When workers' memory was last looked at (`--max-worker-rss`).
    last_rss_check: Instant,
    /// Jobs the source has given (run or skipped).
    fed: u64,
    /// The jobs file's name, for messages.
    jobs_name: String,
    /// Where workers run: this machine alone, or the `--host` list.
    hosts: Vec<Host>,
    /// Which host each new slot goes to, in turn.
    host_order: Vec<usize>,
    /// Master connections' ssh processes: their host and login.
    masters: HashMap<i32, (usize, usize)>,
    /// When the next login planned may start (`--ssh-delay`).
    next_login_at: Instant,
}

use worker::Worker;

impl Core {
    /// A run about to start at `now`: its slots are planned, and the first
    /// call to [`Core::handle_timeout`] asks for its workers.
    pub fn new(cfg: CoreConfig, jobs: Jobs, now: Now) -> Core {
        let (host_list, host_order) = hosts::plan(cfg.hosts.as_ref());
        let rng = fastrand::Rng::with_seed(cfg.seed);
        let mut core = Core {
            pacer: cfg.rate.map(Pacer::new),
            dedup: jobs
                .dedup
                .map(|(to_come, hasher)| dedup::Dedup::new(to_come, hasher)),
            cfg,
            actions: VecDeque::new(),
            rng,
            now,
            source: Some(jobs.source),
            workers: BTreeMap::new(),
            by_pid: HashMap::new(),
            slots: Vec::new(),
            target: 0,
            next_id: 0,
            ready: VecDeque::new(),
            waiting: BinaryHeap::new(),
            suspects: VecDeque::new(),
            seq: 0,
            hungry: VecDeque::new(),
            phase: Phase::Running,
            interrupted: None,
            fatal: None,
            summary: Summary::default(),
            started: now.mono,
            last_tick: now.mono,
            budget: Budget::default(),
            paused: None,
            last_slowdown_log: None,
            secrets: Vec::new(),
            secret_set: HashSet::new(),
            abandoned: BTreeMap::new(),
            all_ready_told: false,
            last_rss_check: now.mono,
            fed: 0,
            jobs_name: jobs.name,
            hosts: host_list,
            host_order,
            masters: HashMap::new(),
            next_login_at: now.mono,
        };
        core.summary.progress.total = jobs.total;
        core.target = if core.cfg.hosts.is_some() {
            core.host_order.len().max(1)
        } else {
            core.cfg.workers.max(1)
        };
        for i in 0..core.target {
            let slot = core.new_slot(i, now.mono);
            core.slots.push(slot);
        }
        core
    }

    /// Takes in one thing that happened.
    pub fn handle(&mut self, input: Input, now: Now) {
        self.now = now;
        let now = now.mono;
        match input {
            Input::Started { id, who } => self.on_started(id, who, now),
            Input::StartFailed { id, error } => self.on_start_failed(id, error, now),
            Input::SendFailed { id, job, error } => self.on_send_failed(id, &job, error, now),
            Input::InputBroken { id } => {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.input_broken(now);
                }
            }
            Input::Message { id, msg } => self.on_message(id, msg, now),
            Input::LongLine { id, bytes } => self.on_long_line(id, bytes, now),
            Input::StdoutClosed { id } => self.on_stdout_closed(id, now),
            Input::Stderr { id, pid, line } => self.on_stderr(id, pid, &line),
            Input::Reaped { pid, how } => self.on_reaped(pid, how, now),
            Input::ThreadEnded { id, end } => self.on_thread_end(id, end, now),
            Input::Signal(sig) => self.on_signal(sig, now),
            Input::WriteFailed { id, error } => self.fail(RunError::Output {
                dir: self.cfg.out_dir.clone(),
                source: std::io::Error::new(error.kind(), format!("result of job {id:?}: {error}")),
            }),
            Input::JoblogFailed(source) => self.fail(RunError::Output {
                dir: self.cfg.out_dir.clone(),
                source,
            }),
            Input::Rss { id, bytes } => self.on_rss(id, bytes, now),
            Input::LoginStarted {
                host,
                login,
                result,
            } => self.on_login_started(host, login, result, now),
            Input::LoginUp { host, login } => self.on_login_up(host, login),
            Input::LoginEnded { pid, how, said } => self.on_login_end(pid, &how, said, now),
        }
    }

    /// Does what is due at `now`: retries whose wait is over, deadlines,
    /// logins and workers to start, jobs for idle workers, the end of the
    /// run, and the progress tick. The shell calls it once per turn, after
    /// the inputs of the turn.
    pub fn handle_timeout(&mut self, now: Now) {
        self.now = now;
        let now = now.mono;
        self.release_due_retries(now);
        self.handle_deadlines(now);
        self.tend_logins(now);
        self.spawn_due(now);
        self.feed_hungry(now);
        self.check_end(now);
        if now >= self.last_tick + TICK {
            self.tick(now);
        }
    }

    /// The next thing for the shell to do.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Core::handle_timeout`] has something to do next, if nothing
    /// happens before.
    pub fn poll_timeout(&self) -> Instant {
        let now = self.now.mono;
        let mut next = self.last_tick + TICK;
        let limits = self.limits();
        for w in self.workers.values() {
            if let Some((d, _)) = w.next_due(limits) {
                next = next.min(d);
            }
        }
        if let Some(Reverse(w)) = self.waiting.peek() {
            next = next.min(w.at);
        }
        // An idle worker waits for the pace or the budget only while the
        // run sends jobs, and only for a time still to come: one already
        // past means "allowed now", and handle_timeout has just fed every
        // job there was (a past time here made the loop spin while a run
        // with --rate drained; found by the simulator, seed 0).
        if self.phase == Phase::Running && !self.hungry.is_empty() {
            for at in [
                self.pacer.as_ref().and_then(Pacer::next_at),
                self.budget.paused_until(now),
            ]
            .into_iter()
            .flatten()
            {
                if at > now {
                    next = next.min(at);
                }
            }
        }
        if self.may_spawn() {
            for (i, s) in self.slots[..self.target.min(self.slots.len())]
                .iter()
                .enumerate()
            {
                if s.worker.is_none() && self.slot_can_start(i) {
                    next = next.min(s.respawn_at.unwrap_or(now));
                }
            }
        }
        if let Some(at) = self.next_login_wakeup(now) {
            next = next.min(at);
        }
        next
    }

    /// Whether an idle worker waits for the job source (and no pace holds
    /// it back): the shell then has the source wake it when a job comes.
    pub fn wants_jobs(&self) -> bool {
        let now = self.now.mono;
        self.phase == Phase::Running
            && !self.hungry.is_empty()
            && self.source.is_some()
            && self.pacer.as_ref().is_none_or(|p| p.allows(now))
            && self.budget.allows(now)
    }

    /// Jobs the source holds ready.
    pub fn source_ready(&self) -> usize {
        self.source.as_ref().map_or(0, |s| s.ready())
    }

    /// Whether the run is over: it is not running and no worker is left.
    pub fn is_done(&self) -> bool {
        self.phase != Phase::Running && self.workers.is_empty() && self.starting().is_none()
    }

    /// The run's phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// The summary, once the run is over (and every result written: the
    /// shell feeds write failures first), or the error that stopped it.
    pub fn summary(&mut self, now: Now) -> Result<Summary, RunError> {
        self.now = now;
        self.summary.hosts = self.host_summaries();
        self.tick(now.mono);
        if let Some(err) = self.fatal.take() {
            return Err(err);
        }
        self.summary.progress.elapsed = now.mono.saturating_duration_since(self.started);
        self.summary.progress.workers = 0;
        let p = &self.summary.progress;
        self.summary.not_run = p.total.saturating_sub(p.done());
        self.summary.interrupted = self.interrupted;
        self.summary.abandoned_running = self.abandoned.len() as u64;
        Ok(std::mem::take(&mut self.summary))
    }

    /// A worker asked for and not answered yet (its slot holds its id, the
    /// workers do not).
    fn starting(&self) -> Option<u64> {
        self.slots
            .iter()
            .filter_map(|s| s.worker)
            .find(|id| !self.workers.contains_key(id))
    }

    fn act(&mut self, a: Action) {
        self.actions.push_back(a);
    }

    fn note(&mut self, n: Note) {
        self.actions.push_back(Action::Note(n));
    }

    fn tell(&mut self, e: LogEvent) {
        self.note(Note::Event(e));
    }

    fn tick(&mut self, now: Instant) {
        self.last_tick = now;
        self.check_memory(now);
        self.check_stranded();
        let p = self.progress(now);
        self.note(Note::Tick(p));
    }

    fn progress(&self, now: Instant) -> Progress {
        let mut p = self.summary.progress.clone();
        p.elapsed = now.saturating_duration_since(self.started);
        p.retrying = (self.waiting.len()
            + self.suspects.len()
            + self.ready.iter().filter(|r| !r.history.is_empty()).count())
            as u64;
        p.workers = self.workers.len();
        p.hosts = self.host_counts();
        p.paused = self
            .paused
            .filter(|(until, _)| *until > self.now.wall && self.budget.paused_until(now).is_some());
        p.in_flight = self.workers.values().map(|w| w.inflight.len() as u64).sum();
        p.slowest = self
            .workers
            .values()
            .filter_map(|w| w.inflight.front())
            .max_by_key(|f| now.saturating_duration_since(f.started))
            .map(|f| {
                (
                    f.pending.job.id.clone(),
                    now.saturating_duration_since(f.started),
                )
            });
        p
    }

    fn limits(&self) -> Limits {
        Limits {
            start_timeout: self.cfg.start_timeout,
            grace: self.cfg.kill_grace,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn restarts_back_off_doubling_then_the_run_gives_up() {
        // The limit bin/supervisor sets: 100, 200, 400, 800 ms, then stop.
        let waits: Vec<Option<Duration>> = (1..=6).map(|n| restart_delay(n, 5)).collect();
        assert_eq!(
            waits,
            [
                Some(ms(100)),
                Some(ms(200)),
                Some(ms(400)),
                Some(ms(800)),
                None,
                None
            ]
        );
    }

    #[test]
    fn the_restart_backoff_is_capped_and_never_overflows() {
        assert_eq!(restart_delay(6, 100), Some(ms(3200)));
        assert_eq!(restart_delay(7, 100), Some(RESTART_BACKOFF_CAP));
        assert_eq!(restart_delay(90, u32::MAX), Some(RESTART_BACKOFF_CAP));
        // With no failures allowed the first one stops the run.
        assert_eq!(restart_delay(1, 1), None);
        assert_eq!(restart_delay(1, 0), None);
    }
}
