//! The supervisor's loop: the one place that owns workers, queues, deadlines
//! and counts.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use callpool_protocol::{ErrorKind, FromWorker, JobError, PROTOCOL_VERSION, ResultMsg};
use crossbeam_channel::{Receiver, TryRecvError, unbounded};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use signal_hook::consts::signal::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1};

use crate::check::CheckedJobs;
use crate::decide::{AttemptEnd, Next, decide};
use crate::error::RunError;
use crate::event::Event;
use crate::feeder::{self, Feed, FeedRx};
use crate::jobs::{Job, RequestDefaults};
use crate::output::{AttemptRecord, FinalResult, Outcome, Output, timestamp};
use crate::pipes::{LongLines, PipeState, SHORT_LINE};
use crate::poller::{EventSender, Poller, WAKER_TOKEN};
use crate::budget::Budget;
use crate::rate::Pacer;
use crate::redact::mask_text;
use crate::report::{FailureNote, Interrupt, Level, Progress, Report, Reporter, Summary};
use crate::retry::RetryPolicy;
use crate::rules::BodyRules;
use crate::remote::{Hosts, SocketDir};
use crate::transport::{Isolation, SendFailed, Stopped, Who};
use hosts::Host;
use dedup::Answer;
mod control;
mod dedup;
mod dispatch;
mod hosts;
mod lives;
mod results;

use crate::worker::{
    Due, ExitHow, InFlight, KillReason, Limits, Pending, Phase as Life, Retire, Worker,
};

/// How often the loop sends a [`Report::Tick`].
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
/// `restarts`, besides [`Retire::reason`]: its last worker died, was
/// stopped at a job's deadline, broke the protocol, or failed to start.
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
fn restart_delay(failures: u32, max: u32) -> Option<Duration> {
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

/// How a run is set up.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// How many workers run at once (`--workers`).
    pub workers: usize,
    /// What the workers are: processes running a program, or threads.
    pub isolation: Isolation,
    /// Where result files and the joblog go.
    pub out_dir: PathBuf,
    /// Between SIGTERM and SIGKILL, and between closing a worker's stdin and
    /// SIGTERM (`--kill-grace`).
    pub kill_grace: Duration,
    /// How long a new worker may take to say `ready`.
    pub start_timeout: Duration,
    /// Which failures are retried, how often, after how long.
    pub retry: RetryPolicy,
    /// How many jobs a worker holds at once: the one it runs and the ones
    /// queued on its stdin behind it.
    pub prefetch: usize,
    /// Skip jobs whose result file is complete and ok.
    pub resume: bool,
    /// Consecutive worker failures (no `ready`, or death before finishing
    /// any job) after which the run stops instead of restarting again.
    pub max_start_failures: u32,
    /// Written into the results folder as `.callpool-run` once it is open
    /// (the run's request options, for export and `--resume`).
    pub manifest: Option<Vec<u8>>,
    /// Answers that mean retry, fail or stop, by their JSON body.
    pub rules: BodyRules,
    /// The most requests the whole run starts per second (`--rate`).
    pub rate: Option<f64>,
    /// Call each distinct request once (`--dedup`).
    pub dedup: bool,
    /// When workers are replaced though nothing is wrong with them.
    pub recycle: Recycle,
    /// Workers on other hosts (`--host`); `None`: all on this machine,
    /// `workers` of them.
    pub hosts: Option<Hosts>,
}

/// Replacing workers on a schedule or when they grow, as gunicorn's
/// `--max-requests` (with jitter) and Celery's `--max-tasks-per-child` and
/// `--max-memory-per-child` do. A worker is replaced after its current
/// job, like a rolling restart: nothing is lost or repeated.
#[derive(Debug, Clone, Default)]
pub struct Recycle {
    /// Replace a worker after this many jobs (`--max-jobs-per-worker`).
    pub max_jobs: Option<u64>,
    /// Plus a random 0..jitter more, so that workers started together are
    /// not all replaced at once (`--max-jobs-jitter`).
    pub jitter: u64,
    /// Replace a worker whose RSS passes this many bytes
    /// (`--max-worker-rss`), looked at every 250 ms at most.
    pub max_rss: Option<u64>,
}

/// What the loop is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
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
    worker: Option<u64>,
    respawn_at: Option<Instant>,
    /// Why the next worker of this slot replaces the last one.
    respawn_why: Option<&'static str>,
    restarts: u64,
    jobs_done: u64,
}

/// The supervisor's signal handlers. Install them first thing in `main`:
/// from then on HUP, USR1, TTIN, TTOU and CHLD are only recorded (the
/// handlers enqueue, nothing else), so that, for example, a SIGUSR1 sent
/// while a large jobs file is being checked cannot end the process. INT and
/// TERM keep their default action until [`run`] starts: before it, nothing
/// has started and nothing is written, so ending at once is right.
pub struct Signals(signal_hook::iterator::Signals);

impl Signals {
    /// Installs the handlers. Signals that arrive before [`run`] starts are
    /// kept and handled when it does.
    pub fn install() -> std::io::Result<Self> {
        signal_hook::iterator::Signals::new([SIGHUP, SIGUSR1, SIGTTIN, SIGTTOU, SIGCHLD])
            .map(Signals)
    }
}

/// Runs every job of `jobs` and returns what happened.
///
/// Must be called on a thread that lives as long as the run (the main
/// thread, typically): workers are started from it, and their parent-death
/// signal is tied to it.
pub fn run(
    cfg: &PoolConfig,
    jobs: &CheckedJobs,
    defaults: &RequestDefaults,
    signals: Signals,
    reporter: &mut dyn Reporter,
) -> Result<Summary, RunError> {
    let (tx, rx) = unbounded();
    let poller = Poller::new().map_err(RunError::Setup)?;
    let waker = poller.waker();
    let events = EventSender::new(tx, waker.clone());
    let out = Output::open(&cfg.out_dir, cfg.manifest.as_deref(), &events).map_err(|source| {
        let dir = cfg.out_dir.clone();
        // Something planted or missing in the folder (safedir.rs names
        // it) is not a disk or a permission to fix.
        match source.kind() {
            std::io::ErrorKind::InvalidData | std::io::ErrorKind::NotFound => {
                RunError::Folder { dir, source }
            }
            _ => RunError::Output { dir, source },
        }
    })?;
    if let Some(why) = &out.manifest_error {
        let line = format!(
            "{why}: export and --resume will need this run's options given again"
        );
        reporter.report(Report::Log(Level::Warn, &line));
    }
    let feed = feeder::start(
        jobs.path.clone(),
        jobs.name.clone(),
        jobs.input.clone(),
        defaults.clone(),
        cfg.out_dir.clone(),
        cfg.resume,
        waker,
    )
    .map_err(RunError::Setup)?;
    for sig in [SIGINT, SIGTERM] {
        signals.0.add_signal(sig).map_err(RunError::Setup)?;
    }
    let signals = start_signal_thread(signals.0, events.clone())?;
    // Processes that workers leave behind outside their groups become
    // this process's children, to be named at the end.
    crate::escaped::subreap();
    let now = Instant::now();
    let (host_list, host_order) = hosts::plan(cfg.hosts.as_ref());
    let mut engine = Engine {
        cfg,
        rep: reporter,
        rx,
        events,
        poller,
        tokens: Vec::new(),
        inbox: Vec::new(),
        feed: Some(feed),
        out,
        workers: HashMap::new(),
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
        started: now,
        last_tick: now,
        pacer: cfg.rate.map(Pacer::new),
        budget: Budget::default(),
        paused: None,
        last_slowdown_log: None,
        secrets: Vec::new(),
        secret_set: std::collections::HashSet::new(),
        abandoned: HashMap::new(),
        all_ready_told: false,
        dedup: cfg.dedup.then(|| dedup::Dedup::new(jobs)),
        last_rss_check: now,
        fed: 0,
        jobs_name: jobs.name.clone(),
        hosts: host_list,
        host_order,
        sockets: hosts::socket_dir(cfg.hosts.as_ref())?,
        masters: HashMap::new(),
        next_login_at: now,
    };
    engine.summary.progress.total = jobs.count;
    engine.target = if cfg.hosts.is_some() {
        engine.host_order.len().max(1)
    } else {
        cfg.workers.max(1)
    };
    for i in 0..engine.target {
        let slot = engine.new_slot(i, now);
        engine.slots.push(slot);
    }
    let result = engine.run_loop();
    signals.close();
    result
}

fn start_signal_thread(
    mut signals: signal_hook::iterator::Signals,
    tx: EventSender,
) -> Result<signal_hook::iterator::Handle, RunError> {
    let handle = signals.handle();
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if !tx.send(Event::Signal(sig)) {
                    break;
                }
            }
        })
        .map_err(RunError::Setup)?;
    Ok(handle)
}

struct Engine<'a> {
    cfg: &'a PoolConfig,
    rep: &'a mut dyn Reporter,
    /// Events from other threads: signals, failed result writes.
    rx: Receiver<Event>,
    /// Where worker threads send their events.
    events: EventSender,
    /// Worker pipes and the waker; what the loop sleeps on.
    poller: Poller,
    /// Scratch for ready tokens and for events read from a pipe.
    tokens: Vec<u64>,
    inbox: Vec<Event>,
    /// The job source; `None` once it has given every job.
    feed: Option<FeedRx>,
    out: Output,
    workers: HashMap<u64, Worker>,
    by_pid: HashMap<Pid, u64>,
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
    interrupted: Option<Interrupt>,
    fatal: Option<RunError>,
    summary: Summary,
    started: Instant,
    last_tick: Instant,
    pacer: Option<Pacer>,
    /// The server's rate-limit budget (budget.rs).
    budget: Budget,
    /// Until when, and why, the budget paused the run (for progress).
    paused: Option<(SystemTime, &'static str)>,
    last_slowdown_log: Option<Instant>,
    /// Secret values seen in jobs, scrubbed from worker stderr lines: all
    /// of them, however many (a line costs a scan per distinct secret;
    /// runs have one or a few).
    secrets: Vec<String>,
    secret_set: std::collections::HashSet<String>,
    /// Worker threads given up at a deadline that have not ended yet.
    abandoned: HashMap<u64, Abandoned>,
    /// The "all workers ready" line was reported.
    all_ready_told: bool,
    /// `--dedup`: requests made more than once, and their answers.
    dedup: Option<dedup::Dedup>,
    /// When workers' memory was last looked at (`--max-worker-rss`).
    last_rss_check: Instant,
    /// Jobs the source has given (run or skipped): all of them, unless the
    /// file was cut short during the run.
    fed: u64,
    /// The jobs file's name, for messages.
    jobs_name: String,
    /// Where workers run: this machine alone, or the `--host` list.
    hosts: Vec<Host>,
    /// Which host each new slot goes to, in turn.
    host_order: Vec<usize>,
    /// The control sockets of the master connections, when a host is
    /// remote; removed with it.
    sockets: Option<SocketDir>,
    /// Master connections' ssh processes: their host and login.
    masters: HashMap<Pid, (usize, usize)>,
    /// When the next login planned may start (`--ssh-delay`).
    next_login_at: Instant,
}

/// A worker thread the loop stopped waiting for: it ends when its call
/// returns, and whatever it answers then is dropped.
pub(crate) struct Abandoned {
    pub slot: usize,
    pub who: Who,
    pub since: Instant,
    pub job: Option<String>,
}

impl Engine<'_> {
    fn run_loop(&mut self) -> Result<Summary, RunError> {
        loop {
            let now = Instant::now();
            self.release_due_retries(now);
            self.handle_deadlines(now);
            self.tend_logins(now);
            self.spawn_due(now);
            self.feed_hungry(now);
            self.check_end(now);
            if self.phase != Phase::Running && self.workers.is_empty() {
                break;
            }
            if now >= self.last_tick + TICK {
                self.tick(now);
            }
            let wait = self.next_wakeup(now).saturating_duration_since(now);
            self.resume_long_lines();
            self.flush_joblog();
            self.wait_and_handle(wait);
        }
        self.close_logins();
        self.name_escaped();
        self.summary.hosts = self.host_summaries();
        // Every result queued is on disk before the summary says so.
        self.flush_joblog();
        self.out.finish();
        while let Ok(ev) = self.rx.try_recv() {
            if let Event::WriteFailed { .. } = ev {
                self.handle(ev);
            }
        }
        self.tick(Instant::now());
        if let Some(err) = self.fatal.take() {
            return Err(err);
        }
        self.summary.progress.elapsed = self.started.elapsed();
        self.summary.progress.workers = 0;
        let p = &self.summary.progress;
        self.summary.not_run = p.total.saturating_sub(p.done());
        self.summary.interrupted = self.interrupted;
        self.summary.abandoned_running = self.abandoned.len() as u64;
        Ok(std::mem::take(&mut self.summary))
    }

    /// Names, in one warning line, the processes that workers started and
    /// that escaped their process groups (protocol.md §2), once no worker
    /// is left; each is reaped first if it has ended.
    fn name_escaped(&mut self) {
        while let Ok(s) = waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            if s == WaitStatus::StillAlive {
                break;
            }
        }
        if let Some(line) = crate::escaped::warning(&crate::escaped::find()) {
            self.rep.report(Report::Log(Level::Warn, &line));
        }
    }

    /// Sleeps until a worker pipe is readable, another thread sends an
    /// event, a job arrives for a hungry worker, or `wait` passes; then
    /// handles what is there.
    fn wait_and_handle(&mut self, mut wait: Duration) {
        let now = Instant::now();
        let want_jobs = self.phase == Phase::Running
            && !self.hungry.is_empty()
            && self.pacer.as_ref().is_none_or(|p| p.allows(now))
            && self.budget.allows(now);
        if want_jobs && let Some(feed) = &self.feed {
            // The source pokes the waker for the next job; one that came
            // before this was set is seen here instead.
            self.poller.want_job(true);
            if !feed.is_empty() {
                wait = Duration::ZERO;
            }
        }
        if !self.rx.is_empty() {
            wait = Duration::ZERO;
        }
        let mut tokens = std::mem::take(&mut self.tokens);
        self.poller.wait(wait, &mut tokens);
        self.poller.want_job(false);
        for &token in &tokens {
            if token != WAKER_TOKEN {
                self.on_readable(token >> 1, token & 1 == 1);
            }
        }
        self.tokens = tokens;
        // Handle what else is queued before looking at deadlines again; the
        // bound keeps timers honest under a flood of events.
        for _ in 0..1024 {
            match self.rx.try_recv() {
                Ok(ev) => self.handle(ev),
                Err(_) => break,
            }
        }
        if want_jobs && let Some(feed) = &self.feed {
            // A job (or the end of the list) arrived while workers wait:
            // queue it, and feed_hungry hands it out.
            let item = feed.try_recv();
            if !matches!(item, Err(TryRecvError::Empty))
                && let Some(p) = self.take_feed(item)
            {
                self.ready.push_back(p);
            }
        }
    }

    /// Watches again the stdout of workers that wait for the long-line
    /// turn, once it is free ([`crate::pipes::LongLines`]).
    fn resume_long_lines(&mut self) {
        for id in LongLines::woken(self.poller.long_lines()) {
            if let Some(w) = self.workers.get(&id) {
                w.watch_stdout(&self.poller, true);
            }
        }
    }

    /// A worker's stdout (or stderr) is readable: reads what is there and
    /// handles each line as an event.
    fn on_readable(&mut self, id: u64, stderr: bool) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        let mut inbox = std::mem::take(&mut self.inbox);
        let state = w.read(stderr, &mut inbox);
        if state == PipeState::Paused {
            w.watch_stdout(&self.poller, false);
        }
        for ev in inbox.drain(..) {
            self.handle(ev);
        }
        self.inbox = inbox;
        if state == PipeState::Closed && !stderr {
            self.handle(Event::StdoutClosed { id });
        } else if !stderr
            && let Some(w) = self.workers.get(&id)
            && w.phase == Life::Running
            && w.inflight.is_empty()
            && w.stdout_pending() >= SHORT_LINE
        {
            // Nothing it may write now is that long, and no deadline would
            // end its hold on the long-line turn.
            let why = format!(
                "wrote {} bytes of a stdout line while it holds no job",
                w.stdout_pending()
            );
            self.protocol_error(id, why, Instant::now());
        }
    }

    /// Writes the joblog lines of this turn, before the loop sleeps.
    fn flush_joblog(&mut self) {
        if let Err(source) = self.out.flush_log() {
            self.fail(RunError::Output {
                dir: self.cfg.out_dir.clone(),
                source,
            });
        }
    }

    /// Reads what is left on a worker's stderr, before it is forgotten.
    pub(super) fn drain_stderr(&mut self, id: u64) {
        if self.workers.get(&id).is_some_and(Worker::has_stderr) {
            self.on_readable(id, true);
        }
    }

    fn handle(&mut self, ev: Event) {
        let now = Instant::now();
        match ev {
            Event::Message {
                id,
                msg: Ok(FromWorker::Ready(info)),
            } => {
                let Some(w) = self.workers.get_mut(&id) else {
                    return;
                };
                match w.phase {
                    Life::Starting => {}
                    Life::Closing { .. } | Life::Killing { .. } => return,
                    Life::Running | Life::Retiring(_) => {
                        self.protocol_error(id, "sent `ready` twice".into(), now);
                        return;
                    }
                }
                if info.protocol != PROTOCOL_VERSION {
                    let msg = format!(
                        "speaks protocol {}, this supervisor speaks {PROTOCOL_VERSION}",
                        info.protocol
                    );
                    self.protocol_error(id, msg, now);
                    return;
                }
                w.ready(now);
                self.note_ready(now);
                self.feed_worker(id, now);
            }
            Event::Message {
                id,
                msg: Ok(FromWorker::Result(res)),
            } => self.on_result(id, res, now),
            Event::Message { id, msg: Err(why) } => self.protocol_error(id, why, now),
            Event::StdoutClosed { id } => self.on_stdout_closed(id, now),
            Event::ThreadEnded { id, end } => self.on_thread_end(id, end, now),
            Event::Stderr { id, pid, line } => {
                let (slot, host) = self.workers.get_mut(&id).map_or((None, None), |w| {
                    w.note_stderr(&line);
                    (Some(w.slot), w.who.host())
                });
                let line = mask_text(&line, &self.secrets).into_owned();
                self.rep.report(Report::WorkerStderr {
                    slot,
                    host,
                    pid: pid.as_raw(),
                    line: &line,
                });
            }
            Event::WriteFailed { id, error } => self.fail(RunError::Output {
                dir: self.cfg.out_dir.clone(),
                source: std::io::Error::new(error.kind(), format!("result of job {id:?}: {error}")),
            }),
            Event::Signal(sig) => self.on_signal(sig, now),
        }
    }

    fn next_wakeup(&self, now: Instant) -> Instant {
        let mut next = self.last_tick + TICK;
        let limits = self.limits();
        for w in self.workers.values() {
            if let Some((d, _)) = w.next_due(limits) {
                next = next.min(d);
            }
            if w.has_unsent() {
                next = next.min(now + Duration::from_millis(5));
            }
        }
        if let Some(Reverse(w)) = self.waiting.peek() {
            next = next.min(w.at);
        }
        if let (false, Some(at)) = (
            self.hungry.is_empty(),
            self.pacer.as_ref().and_then(Pacer::next_at),
        ) {
            next = next.min(at);
        }
        if let (false, Some(at)) = (self.hungry.is_empty(), self.budget.paused_until(now)) {
            next = next.min(at);
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

    fn tick(&mut self, now: Instant) {
        self.last_tick = now;
        self.check_memory(now);
        self.check_stranded();
        let p = self.progress(now);
        self.rep.report(Report::Tick(&p));
    }

    fn progress(&mut self, now: Instant) -> Progress {
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
            .filter(|(until, _)| *until > SystemTime::now() && self.budget.paused_until(now).is_some())
            .map(|(until, why)| (until, why.to_string()));
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
}

/// Read access for the status table.
pub(crate) struct StatusView<'a> {
    pub slots: Vec<(usize, Option<&'a Worker>, u64, u64)>,
    pub retiring: Vec<&'a Worker>,
    pub abandoned: Vec<&'a Abandoned>,
    pub id_name: &'static str,
    pub progress: Progress,
    pub queued_retries: usize,
    /// With `--host`: each slot's host, and why hosts are down.
    pub slot_hosts: Vec<&'static str>,
    pub hosts_down: Vec<(&'static str, &'a str)>,
}

fn status_view<'a>(e: &'a mut Engine<'_>, now: Instant) -> StatusView<'a> {
    let progress = e.progress(now);
    let e: &'a Engine<'_> = e;
    let slots = e
        .slots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            (
                i,
                s.worker.and_then(|id| e.workers.get(&id)),
                s.jobs_done,
                s.restarts,
            )
        })
        .collect();
    let retiring = e
        .workers
        .values()
        .filter(|w| e.slots.get(w.slot).is_none_or(|s| s.worker != Some(w.id)))
        .collect();
    let mut abandoned: Vec<&Abandoned> = e.abandoned.values().collect();
    abandoned.sort_by_key(|a| a.since);
    StatusView {
        slots,
        retiring,
        abandoned,
        id_name: e.cfg.isolation.id_name(),
        progress,
        queued_retries: e.waiting.len() + e.ready.len() + e.suspects.len(),
        slot_hosts: if e.cfg.hosts.is_some() {
            e.slots.iter().map(|s| e.hosts[s.host].name).collect()
        } else {
            Vec::new()
        },
        hosts_down: e
            .hosts
            .iter()
            .filter_map(|h| Some((h.name, h.down.as_deref()?)))
            .collect(),
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
