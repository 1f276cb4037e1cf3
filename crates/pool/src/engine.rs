//! The supervisor's loop: the one place that owns workers, queues, deadlines
//! and counts.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use callpool_protocol::{FromWorker, JobError, PROTOCOL_VERSION, ResultMsg};
use crossbeam_channel::{Receiver, Select, Sender, TryRecvError, unbounded};
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use signal_hook::consts::signal::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1};

use crate::check::CheckedJobs;
use crate::decide::{AttemptEnd, Next, decide};
use crate::error::RunError;
use crate::event::Event;
use crate::feeder::{self, Feed};
use crate::jobs::RequestDefaults;
use crate::output::{AttemptRecord, FinalResult, Output, timestamp};
use crate::rate::Pacer;
use crate::redact::scrub;
use crate::report::{FailureNote, Interrupt, Level, Progress, Report, Reporter, Summary};
use crate::retry::RetryPolicy;
use crate::rules::BodyRules;
use crate::spawn::spawn_worker;
use crate::worker::{ExitHow, InFlight, KillReason, Pending, State, Worker};

/// Workers started per turn of the loop (see `spawn_due`).
const SPAWN_BATCH: usize = 8;
/// How often the loop sends a [`Report::Tick`].
const TICK: Duration = Duration::from_millis(100);
/// How many failed jobs the summary names.
const FAILURES_NAMED: usize = 5;
/// Replacement workers wait this long after a failure, doubling per
/// consecutive failure up to [`RESTART_BACKOFF_CAP`].
const RESTART_BACKOFF: Duration = Duration::from_millis(100);
const RESTART_BACKOFF_CAP: Duration = Duration::from_secs(5);

/// How a run is set up.
#[derive(Debug, Clone)]
pub struct PoolConfig {
    /// How many workers run at once (`--workers`).
    pub workers: usize,
    /// The worker program and its arguments.
    pub worker_cmd: Vec<String>,
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
    /// Answers that mean retry, fail or stop, by their JSON body.
    pub rules: BodyRules,
    /// The worker program sets `PR_SET_PDEATHSIG` itself from
    /// `CALLPOOL_SUPERVISOR_PID` (as the http-worker does), so it can be
    /// started without running code between fork and exec.
    pub worker_sets_death_signal: bool,
    /// The most requests the whole run starts per second (`--rate`).
    pub rate: Option<f64>,
}

/// What the loop is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Sending jobs.
    Running,
    /// All jobs are done; workers are told to exit.
    Draining,
    /// Interrupted once: no new jobs, the ones in flight finish.
    Stopping,
    /// Interrupted twice, or a fatal error: every worker is killed.
    Killing,
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
    let out = Output::open(&cfg.out_dir, &tx).map_err(|source| RunError::Output {
        dir: cfg.out_dir.clone(),
        source,
    })?;
    let feed = feeder::start(
        jobs.path.clone(),
        jobs.name.clone(),
        defaults.clone(),
        cfg.out_dir.clone(),
        cfg.resume,
    )
    .map_err(RunError::Setup)?;
    for sig in [SIGINT, SIGTERM] {
        signals.0.add_signal(sig).map_err(RunError::Setup)?;
    }
    let signals = start_signal_thread(signals.0, &tx)?;
    let now = Instant::now();
    let mut engine = Engine {
        cfg,
        rep: reporter,
        tx,
        rx,
        feed: Some(feed),
        out,
        workers: HashMap::new(),
        by_pid: HashMap::new(),
        slots: (0..cfg.workers.max(1)).map(|_| Slot::default()).collect(),
        target: cfg.workers.max(1),
        next_id: 0,
        ready: VecDeque::new(),
        waiting: BinaryHeap::new(),
        seq: 0,
        hungry: VecDeque::new(),
        phase: Phase::Running,
        interrupted: None,
        fatal: None,
        start_failures: 0,
        summary: Summary::default(),
        started: now,
        last_tick: now,
        pacer: cfg.rate.map(Pacer::new),
        last_slowdown_log: None,
        secrets: Vec::new(),
    };
    engine.summary.progress.total = jobs.count;
    let result = engine.run_loop();
    signals.close();
    result
}

fn start_signal_thread(
    mut signals: signal_hook::iterator::Signals,
    tx: &Sender<Event>,
) -> Result<signal_hook::iterator::Handle, RunError> {
    let handle = signals.handle();
    let tx = tx.clone();
    thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if tx.send(Event::Signal(sig)).is_err() {
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
    tx: Sender<Event>,
    rx: Receiver<Event>,
    /// The job source; `None` once it has given every job.
    feed: Option<Receiver<Feed>>,
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
    seq: u64,
    /// Workers with room for a job that found none.
    hungry: VecDeque<u64>,
    phase: Phase,
    interrupted: Option<Interrupt>,
    fatal: Option<RunError>,
    /// Workers in a row that failed to start or died before finishing a job.
    start_failures: u32,
    summary: Summary,
    started: Instant,
    last_tick: Instant,
    pacer: Option<Pacer>,
    last_slowdown_log: Option<Instant>,
    /// Secret values seen in jobs, scrubbed from worker stderr lines.
    secrets: Vec<String>,
}

/// At most this many distinct secret values are kept for scrubbing stderr.
const MAX_SECRETS: usize = 1024;

impl Engine<'_> {
    fn run_loop(&mut self) -> Result<Summary, RunError> {
        loop {
            let now = Instant::now();
            self.release_due_retries(now);
            self.handle_deadlines(now);
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
            self.wait_and_handle(wait);
        }
        // Every result queued is on disk before the summary says so.
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
        Ok(std::mem::take(&mut self.summary))
    }

    /// Waits for one event (or a job for a hungry worker) until `wait`, then
    /// handles it and whatever else is already queued.
    fn wait_and_handle(&mut self, wait: Duration) {
        let now = Instant::now();
        let want_jobs = self.phase == Phase::Running
            && !self.hungry.is_empty()
            && self.pacer.as_ref().is_none_or(|p| p.allows(now));
        let feed = self.feed.clone().filter(|_| want_jobs);
        let rx = self.rx.clone();
        let mut sel = Select::new();
        let ev_index = sel.recv(&rx);
        if let Some(f) = &feed {
            sel.recv(f);
        }
        let Ok(op) = sel.select_timeout(wait) else {
            return;
        };
        if op.index() == ev_index {
            let ev = op.recv(&rx);
            drop(sel);
            if let Ok(ev) = ev {
                self.handle(ev);
            }
        } else if let Some(f) = &feed {
            let item = op.recv(f);
            drop(sel);
            // A job arrived while workers wait for one: queue it, and
            // feed_hungry hands it out.
            if let Some(p) = self.take_feed(item.map_err(|_| TryRecvError::Disconnected)) {
                self.ready.push_back(p);
            }
        }
        // Handle what else is queued before looking at deadlines again; the
        // bound keeps timers honest under a flood of events.
        for _ in 0..1024 {
            match self.rx.try_recv() {
                Ok(ev) => self.handle(ev),
                Err(_) => break,
            }
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
                if w.state != State::Starting {
                    if w.state != State::Stopping {
                        self.protocol_error(id, "sent `ready` twice".into(), now);
                    }
                    return;
                }
                if info.protocol != PROTOCOL_VERSION {
                    let msg = format!(
                        "speaks protocol {}, this supervisor speaks {PROTOCOL_VERSION}",
                        info.protocol
                    );
                    self.protocol_error(id, msg, now);
                    return;
                }
                w.set_state(State::Idle, now);
                self.feed_worker(id, now);
            }
            Event::Message {
                id,
                msg: Ok(FromWorker::Result(res)),
            } => self.on_result(id, res, now),
            Event::Message { id, msg: Err(why) } => self.protocol_error(id, why, now),
            Event::StdoutClosed { id } => self.on_stdout_closed(id, now),
            Event::Stderr { id, pid, line } => {
                let slot = self.workers.get_mut(&id).map(|w| {
                    w.note_stderr(&line);
                    w.slot
                });
                let line = scrub(&line, &self.secrets);
                self.rep.report(Report::WorkerStderr {
                    slot,
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

    // ----- jobs -----

    /// The next job to send: a retry or requeued job first, then the source.
    fn next_job(&mut self) -> Option<Pending> {
        if let Some(p) = self.ready.pop_front() {
            return Some(p);
        }
        loop {
            let item = self.feed.as_ref()?.try_recv();
            match item {
                Err(TryRecvError::Empty) => return None,
                _ => {
                    if let Some(p) = self.take_feed(item) {
                        return Some(p);
                    }
                    if self.feed.is_none() || self.fatal.is_some() {
                        return None;
                    }
                }
            }
        }
    }

    /// Accounts for one item from the source; returns it if it is a job.
    fn take_feed(&mut self, item: Result<Feed, TryRecvError>) -> Option<Pending> {
        match item {
            Ok(Feed::Job(job)) => {
                for s in &job.secrets {
                    if self.secrets.len() < MAX_SECRETS && !self.secrets.contains(s) {
                        self.secrets.push(s.clone());
                    }
                }
                Some(Pending {
                    job,
                    history: Vec::new(),
                })
            }
            Ok(Feed::Skipped) => {
                self.summary.progress.skipped += 1;
                None
            }
            Ok(Feed::Error(msg)) => {
                self.fail(RunError::Jobs(msg));
                None
            }
            Err(_) => {
                self.feed = None;
                None
            }
        }
    }

    /// Gives worker `id` jobs until it is full or there are none.
    fn feed_worker(&mut self, id: u64, now: Instant) {
        loop {
            if self.phase != Phase::Running {
                return;
            }
            let prefetch = self.prefetch();
            match self.workers.get(&id) {
                Some(w) if w.has_room(prefetch) => {}
                _ => return,
            }
            let paced_out = self.pacer.as_ref().is_some_and(|p| !p.allows(now));
            let next = if paced_out { None } else { self.next_job() };
            let Some(pending) = next else {
                if let Some(w) = self.workers.get_mut(&id) {
                    if !w.hungry && w.has_room(prefetch) {
                        w.hungry = true;
                        self.hungry.push_back(id);
                    }
                }
                return;
            };
            let Some(w) = self.workers.get_mut(&id) else {
                self.ready.push_front(pending);
                return;
            };
            if let Err(e) = w.write(&pending.job.wire) {
                // It cannot have read the job, so the job is not charged.
                self.ready.push_front(pending);
                self.protocol_error(id, format!("cannot write to its stdin: {e}"), now);
                return;
            }
            w.inflight.push_back(InFlight {
                pending,
                started: now,
                started_wall: SystemTime::now(),
            });
            w.settle(now);
            if let Some(p) = self.pacer.as_mut() {
                p.sent(now);
            }
        }
    }

    /// Jobs a worker may hold. With `--rate`, one: the pace is kept when a
    /// job is sent, and a job queued behind another would start late.
    fn prefetch(&self) -> usize {
        if self.pacer.is_some() {
            1
        } else {
            self.cfg.prefetch.max(1)
        }
    }

    fn feed_hungry(&mut self, now: Instant) {
        if self.hungry.is_empty() || self.phase != Phase::Running {
            return;
        }
        let jobs_available =
            !self.ready.is_empty() || self.feed.as_ref().is_some_and(|f| !f.is_empty());
        if !jobs_available || self.pacer.as_ref().is_some_and(|p| !p.allows(now)) {
            return;
        }
        let hungry = std::mem::take(&mut self.hungry);
        for id in hungry {
            if let Some(w) = self.workers.get_mut(&id) {
                w.hungry = false;
                self.feed_worker(id, now);
            }
        }
    }

    fn release_due_retries(&mut self, now: Instant) {
        while self.waiting.peek().is_some_and(|Reverse(w)| w.at <= now) {
            if let Some(Reverse(w)) = self.waiting.pop() {
                self.ready.push_back(w.pending);
            }
        }
    }

    // ----- results -----

    fn on_result(&mut self, id: u64, res: ResultMsg, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if w.kill.is_some() {
            // Condemned (deadline, protocol): what it still says is not
            // trusted; its job is accounted for when it is reaped.
            return;
        }
        let problem = match w.inflight.front() {
            _ if w.state == State::Starting => Some("sent a result before `ready`".to_string()),
            Some(f) if f.pending.job.id == res.id => None,
            Some(f) => Some(format!(
                "sent a result for job {:?} while it runs job {:?}",
                res.id, f.pending.job.id
            )),
            None => Some(format!(
                "sent a result for job {:?} but holds no job",
                res.id
            )),
        };
        if let Some(p) = problem {
            self.protocol_error(id, p, now);
            return;
        }
        if let Err(e) = res.outcome() {
            self.protocol_error(id, e.to_string(), now);
            return;
        }
        let Some(done) = w.inflight.pop_front() else {
            return;
        };
        if let Some(next) = w.inflight.front_mut() {
            next.started = now;
            next.started_wall = SystemTime::now();
        }
        w.jobs_done += 1;
        w.settle(now);
        let (slot, pid) = (w.slot, w.pid);
        self.slots[slot].jobs_done += 1;
        self.start_failures = 0;
        let end = match (res.response, res.error) {
            (Some(r), _) => AttemptEnd::Response(r),
            (None, Some(e)) => AttemptEnd::Error(e),
            // outcome() above checked there is exactly one.
            (None, None) => return,
        };
        self.end_attempt(done, slot, pid, end, now);
        if let Some(w) = self.workers.get_mut(&id) {
            if (w.retiring || self.phase != Phase::Running) && w.inflight.is_empty() {
                w.close_stdin(now);
            } else {
                self.feed_worker(id, now);
            }
        }
    }

    /// Records an attempt and acts on its judgement: done, retry later,
    /// failed, or stop the run.
    fn end_attempt(&mut self, f: InFlight, slot: usize, pid: Pid, end: AttemptEnd, now: Instant) {
        let mut pending = f.pending;
        let attempt = u32::try_from(pending.history.len() + 1).unwrap_or(u32::MAX);
        let elapsed = now.saturating_duration_since(f.started);
        let d = decide(
            &end,
            attempt,
            &self.cfg.retry,
            &self.cfg.rules,
            SystemTime::now(),
        );
        if d.ok {
            self.summary.latency.record(elapsed);
        }
        self.adjust_pace(d.status, d.ok, now);
        let running = self.phase == Phase::Running;
        let retry_in = match d.next {
            Next::Retry(wait) if running => Some(wait),
            _ => None,
        };
        let record = AttemptRecord {
            attempt,
            slot,
            pid: pid.as_raw(),
            started_at: timestamp(f.started_wall),
            elapsed_ms: elapsed.as_secs_f64() * 1000.0,
            outcome: d.outcome,
            status: d.status,
            error: d.error.clone(),
            retry_in_ms: retry_in.map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX)),
        };
        if let Err(source) = self.out.log_attempt(&pending.job, &record) {
            self.fail(RunError::Output {
                dir: self.cfg.out_dir.clone(),
                source,
            });
        }
        self.rep.report(Report::Attempt {
            id: &pending.job.id,
            record: &record,
        });
        pending.history.push(record);

        match d.next {
            Next::StopRun(why) => {
                // The job is left without a result, so --resume runs it.
                let msg = format!("job {:?}: {why}", pending.job.id);
                self.stop_run(Interrupt::ApiStop, &msg, now);
                return;
            }
            // The run is stopping: a job that would be retried is left
            // without a result (not failed), so that --resume runs it again.
            Next::Retry(_) if !running => return,
            _ => {}
        }
        if let Some(wait) = retry_in {
            self.summary.retried += 1;
            if wait.is_zero() {
                self.ready.push_back(pending);
            } else {
                self.seq += 1;
                self.waiting.push(Reverse(Waiting {
                    at: now + wait,
                    seq: self.seq,
                    pending,
                }));
            }
            return;
        }
        if d.ok {
            self.summary.progress.ok += 1;
        } else {
            self.summary.progress.failed += 1;
        }
        let path = self.out.result_path(&pending.job.id);
        if !d.ok {
            let (kind, reason) = match (&d.error, d.status) {
                (Some(e), Some(status)) if e.kind == "http_status" => {
                    (format!("http {status}"), e.message.clone())
                }
                (Some(e), _) => (e.kind.clone(), format!("{}: {}", e.kind, e.message)),
                (None, _) => ("unknown".into(), "unknown".into()),
            };
            *self.summary.failed_by_kind.entry(kind).or_default() += 1;
            if self.summary.first_failures.len() < FAILURES_NAMED {
                let reason = scrub(&reason, &pending.job.secrets);
                self.summary.first_failures.push(FailureNote {
                    id: pending.job.id.clone(),
                    reason,
                    path: path.clone(),
                });
            }
        }
        self.rep.report(Report::JobDone {
            id: &pending.job.id,
            ok: d.ok,
            path: &path,
        });
        self.out.submit(FinalResult {
            job: pending.job,
            ok: d.ok,
            response: match end {
                AttemptEnd::Response(r) => Some(r),
                _ => None,
            },
            error: d.error,
            history: pending.history,
            finished: SystemTime::now(),
        });
    }

    /// Slows the global pace on a 429 and lets it recover on success.
    fn adjust_pace(&mut self, status: Option<u16>, ok: bool, now: Instant) {
        let Some(pacer) = self.pacer.as_mut() else {
            return;
        };
        if status == Some(429) {
            let rate = pacer.slow_down();
            // One line per second at most: a burst of 429s is one event.
            if self
                .last_slowdown_log
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
            {
                self.last_slowdown_log = Some(now);
                let msg = format!(
                    "the API answered 429 Too Many Requests: slowing to {rate:.2} requests/s (--rate is the ceiling)"
                );
                self.rep.report(Report::Log(Level::Warn, &msg));
            }
        } else if ok {
            pacer.recover();
        }
    }

    // ----- worker lives -----

    /// Starts the workers that are due, a batch at a time: between
    /// batches the loop hands jobs to the workers already ready, so that
    /// with hundreds of workers the first ones do not wait for the last.
    fn spawn_due(&mut self, now: Instant) {
        if !self.may_spawn() {
            return;
        }
        let mut started = 0;
        for slot in 0..self.target.min(self.slots.len()) {
            let s = &self.slots[slot];
            if s.worker.is_none() && s.respawn_at.is_none_or(|at| at <= now) {
                if started == SPAWN_BATCH {
                    return;
                }
                self.spawn(slot, now);
                started += 1;
                if self.fatal.is_some() {
                    return;
                }
            }
        }
    }

    fn may_spawn(&self) -> bool {
        self.phase == Phase::Running && self.work_left() > 0
    }

    fn spawn(&mut self, slot: usize, now: Instant) {
        self.next_id += 1;
        let id = self.next_id;
        match spawn_worker(
            &self.cfg.worker_cmd,
            slot,
            id,
            &self.tx,
            self.cfg.worker_sets_death_signal,
        ) {
            Ok(sp) => {
                let s = &mut self.slots[slot];
                s.worker = Some(id);
                s.respawn_at = None;
                if let Some(why) = s.respawn_why.take() {
                    s.restarts += 1;
                    *self.summary.restarts.entry(why.to_string()).or_default() += 1;
                }
                self.by_pid.insert(sp.pid, id);
                self.workers
                    .insert(id, Worker::new(id, slot, sp.pid, sp.stdin, now));
                let msg = format!("worker {slot} started (pid {})", sp.pid);
                self.rep.report(Report::Log(Level::Info, &msg));
            }
            Err(source) => {
                let command = self.cfg.worker_cmd.join(" ");
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) {
                    self.fail(RunError::Spawn { command, source });
                } else {
                    self.note_start_failure(slot, format!("cannot start it: {source}"), now);
                }
            }
        }
    }

    fn on_stdout_closed(&mut self, id: u64, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        w.stdout_closed = true;
        w.stdout_closed_at = Some(now);
        if w.exit.is_some() {
            self.finalize(id, now);
        }
        // Otherwise the process is usually about to exit: SIGCHLD finishes
        // the job, and the deadline catches one that keeps running.
    }

    fn reap(&mut self, now: Instant) {
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    let Some((pid, how)) = ExitHow::from_wait(status) else {
                        continue;
                    };
                    let Some(id) = self.by_pid.remove(&pid) else {
                        continue;
                    };
                    // Anything the worker left in its group goes with it.
                    crate::worker::signal_group(pid, Signal::SIGKILL);
                    let Some(w) = self.workers.get_mut(&id) else {
                        continue;
                    };
                    w.exit = Some((how, now));
                    if w.stdout_closed {
                        self.finalize(id, now);
                    }
                }
            }
        }
    }

    /// A worker is gone: account for the jobs it held and replace it.
    fn finalize(&mut self, id: u64, now: Instant) {
        let Some(mut w) = self.workers.remove(&id) else {
            return;
        };
        self.by_pid.remove(&w.pid);
        let slot = w.slot;
        if self.slots.get(slot).is_some_and(|s| s.worker == Some(id)) {
            self.slots[slot].worker = None;
        }
        let how = w
            .exit
            .map_or_else(|| "an unknown status".to_string(), |(h, _)| h.describe());
        let killed_by_person = w.kill.is_none()
            && matches!(
                w.exit,
                Some((
                    ExitHow::Signal(
                        Signal::SIGKILL | Signal::SIGTERM | Signal::SIGINT | Signal::SIGHUP
                    ),
                    _
                ))
            );
        let mut inflight = std::mem::take(&mut w.inflight).into_iter();
        let head = inflight.next();
        // Jobs queued behind the one running were never started: they go
        // back uncharged, ahead of new jobs and in their order.
        for f in inflight.rev() {
            self.ready.push_front(f.pending);
        }
        let head_id = head.as_ref().map(|f| f.pending.job.id.clone());
        let reason = w.kill.as_ref().map(|(r, _)| r.clone());
        let mut start_failure = None;
        let mut replace_why = if w.retiring {
            "rolling restart"
        } else {
            "crashed"
        };
        let mut note = match (&reason, &head) {
            (Some(KillReason::Shutdown), _) => None,
            (Some(KillReason::Timeout), None) => Some("was killed at its deadline".into()),
            (Some(KillReason::Timeout), Some(f)) => {
                replace_why = "stuck";
                let secs = f.pending.job.timeout.as_secs_f64();
                Some(format!(
                    "was killed after job {:?} ran past its {secs}s deadline",
                    f.pending.job.id
                ))
            }
            (Some(KillReason::StartTimeout), _) => {
                let msg = format!("sent no `ready` within {:?}", self.cfg.start_timeout);
                start_failure = Some(msg.clone());
                Some(msg)
            }
            (Some(KillReason::Protocol(p)), _) => {
                replace_why = "protocol error";
                if w.jobs_done == 0 {
                    start_failure = Some(format!("broke the protocol: it {p}"));
                }
                Some(format!("broke the protocol (it {p}) and was killed"))
            }
            (Some(KillReason::NoExit), _) => Some(format!(
                "did not exit within {:?} of its stdin closing, so it was killed",
                self.cfg.kill_grace
            )),
            (None, Some(_)) => {
                if w.jobs_done == 0 && !killed_by_person {
                    start_failure = Some(format!("died on its first job with {how}"));
                }
                Some(format!("died ({how})"))
            }
            (None, None) if w.state == State::Starting && !killed_by_person => {
                let msg = format!("exited before `ready` with {how}");
                start_failure = Some(msg.clone());
                Some(msg)
            }
            (None, None) if w.stdin_closed_at.is_some() => None,
            (None, None) => {
                if w.jobs_done == 0 && !killed_by_person {
                    start_failure =
                        Some(format!("said ready, then exited before any job with {how}"));
                }
                Some(format!("died between jobs ({how})"))
            }
        };
        if let Some(f) = head {
            let (outcome, kind) = match &reason {
                Some(KillReason::Timeout) => ("timeout", "timeout"),
                Some(KillReason::Protocol(_)) => ("protocol_error", "protocol_error"),
                _ => ("crashed", "crashed"),
            };
            if reason == Some(KillReason::Shutdown) {
                // Killed by the second Ctrl-C: not an attempt, just not run.
            } else {
                let message = format!(
                    "worker {slot} (pid {}) {}",
                    w.pid,
                    note.as_deref().unwrap_or("stopped")
                );
                let attempt = f.pending.history.len() + 1;
                let max = self.cfg.retry.max_attempts();
                let next = if self.phase != Phase::Running {
                    "the run is stopping, so it is left for --resume"
                } else if (attempt as u32) < max {
                    "it goes back to the queue"
                } else {
                    "no attempts left"
                };
                if let Some(n) = note.as_mut() {
                    n.push_str(&format!(
                        " while running job {:?} (attempt {attempt} of {max}): {next}",
                        head_id.as_deref().unwrap_or("")
                    ));
                }
                let error = JobError {
                    kind: kind.into(),
                    message,
                };
                self.end_attempt(f, slot, w.pid, AttemptEnd::Lost { outcome, error }, now);
            }
        }
        let will_replace = self.phase == Phase::Running
            && slot < self.target
            && self.slots.get(slot).is_some_and(|s| s.worker.is_none())
            && self.work_left() > 0;
        if let Some(n) = note.as_mut() {
            if will_replace {
                n.push_str("; starting a replacement");
            }
            let line = format!("worker {slot} (pid {}) {n}", w.pid);
            self.rep.report(Report::Log(Level::Warn, &line));
        }
        if let Some(why) = start_failure {
            let mut detail = format!("worker {slot} (pid {}) {why}", w.pid);
            if !w.stderr_tail.is_empty() {
                detail.push_str("; its last stderr lines:");
                for l in &w.stderr_tail {
                    detail.push_str("\n    ");
                    detail.push_str(l);
                }
            }
            self.note_start_failure(slot, detail, now);
        } else if will_replace {
            let s = &mut self.slots[slot];
            s.respawn_at = Some(now);
            s.respawn_why = Some(replace_why);
        } else if w.retiring && slot < self.target && self.phase == Phase::Running {
            // Rolling restart (HUP): replaced after its last job.
            self.slots[slot].respawn_at = Some(now);
            *self
                .summary
                .restarts
                .entry("rolling restart".to_string())
                .or_default() += 1;
        }
        if slot >= self.target && slot + 1 == self.slots.len() {
            while self.slots.len() > self.target
                && self.slots.last().is_some_and(|s| s.worker.is_none())
            {
                self.slots.pop();
            }
        }
    }

    fn note_start_failure(&mut self, slot: usize, detail: String, now: Instant) {
        self.start_failures += 1;
        if self.start_failures >= self.cfg.max_start_failures {
            self.fail(RunError::WorkersFailing {
                command: self.cfg.worker_cmd.join(" "),
                failures: self.start_failures,
                last: detail,
            });
            return;
        }
        let exp = (self.start_failures - 1).min(16);
        let wait = RESTART_BACKOFF
            .saturating_mul(1 << exp)
            .min(RESTART_BACKOFF_CAP);
        if let Some(s) = self.slots.get_mut(slot) {
            s.respawn_at = Some(now + wait);
            s.respawn_why = Some("failed to start");
        }
    }

    fn protocol_error(&mut self, id: u64, why: String, now: Instant) {
        // The worker's end is reported when it is reaped, with the job it
        // held and what happens to that job.
        if let Some(w) = self.workers.get_mut(&id) {
            if w.kill.is_none() {
                w.terminate(KillReason::Protocol(why), now);
            }
        }
    }

    fn handle_deadlines(&mut self, now: Instant) {
        let grace = self.cfg.kill_grace;
        let due: Vec<u64> = self
            .workers
            .values()
            .filter(|w| {
                w.deadline(self.cfg.start_timeout, grace)
                    .is_some_and(|d| d <= now)
            })
            .map(|w| w.id)
            .collect();
        for id in due {
            let Some(w) = self.workers.get_mut(&id) else {
                continue;
            };
            if w.exit.is_some() {
                w.stdout_closed = true;
                self.finalize(id, now);
            } else if w.stdout_closed && w.kill.is_none() {
                self.protocol_error(id, "closed its stdout but kept running".into(), now);
            } else if w.kill.is_some() {
                w.sigkill();
            } else if w.stdin_closed_at.is_some() {
                w.terminate(KillReason::NoExit, now);
            } else if w.state == State::Starting {
                w.terminate(KillReason::StartTimeout, now);
            } else if let Some(f) = w.inflight.front() {
                let line = format!(
                    "worker {} (pid {}) is stuck: job {:?} has run {:.1}s, past its deadline; sending SIGTERM",
                    w.slot,
                    w.pid,
                    f.pending.job.id,
                    now.saturating_duration_since(f.started).as_secs_f64()
                );
                w.terminate(KillReason::Timeout, now);
                self.rep.report(Report::Log(Level::Warn, &line));
            }
        }
        for w in self.workers.values_mut() {
            if w.has_unsent() {
                // A failed flush shows up as the worker's exit.
                let _ = w.flush();
            }
        }
    }

    /// Jobs not yet finished.
    fn work_left(&self) -> u64 {
        let p = &self.summary.progress;
        p.total.saturating_sub(p.done())
    }

    /// Moves to Draining when every job is done; closes the stdin of workers
    /// that hold nothing once the run is ending.
    fn check_end(&mut self, now: Instant) {
        if self.work_left() == 0 {
            // Every job of the file is accounted for: the source has nothing
            // more (this also ends a run of an empty file, where no worker
            // ever asks the source for a job).
            self.feed = None;
        }
        if self.phase == Phase::Running
            && self.feed.is_none()
            && self.ready.is_empty()
            && self.waiting.is_empty()
            && self.workers.values().all(|w| w.inflight.is_empty())
        {
            self.phase = Phase::Draining;
        }
        if matches!(self.phase, Phase::Draining | Phase::Stopping) {
            for w in self.workers.values_mut() {
                if w.inflight.is_empty() && w.stdin_closed_at.is_none() {
                    w.close_stdin(now);
                }
            }
        }
    }

    fn next_wakeup(&self, now: Instant) -> Instant {
        let mut next = self.last_tick + TICK;
        let grace = self.cfg.kill_grace;
        for w in self.workers.values() {
            if let Some(d) = w.deadline(self.cfg.start_timeout, grace) {
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
        if self.may_spawn() {
            for s in &self.slots[..self.target.min(self.slots.len())] {
                if s.worker.is_none() {
                    next = next.min(s.respawn_at.unwrap_or(now));
                }
            }
        }
        next
    }

    /// Stops the run because it cannot go on: every worker is killed.
    fn fail(&mut self, err: RunError) {
        if self.fatal.is_none() {
            self.fatal = Some(err);
        }
        self.kill_all(Instant::now());
    }

    fn kill_all(&mut self, now: Instant) {
        self.phase = Phase::Killing;
        for w in self.workers.values_mut() {
            w.terminate(KillReason::Shutdown, now);
            w.sigkill();
        }
    }

    // ----- signals -----

    fn on_signal(&mut self, sig: i32, now: Instant) {
        match sig {
            SIGCHLD => self.reap(now),
            SIGINT | SIGTERM => self.interrupt(now),
            SIGUSR1 => {
                let table = crate::status::format(&status_view(self, now), now);
                self.rep.report(Report::Status(&table));
            }
            SIGTTIN if self.phase == Phase::Running => {
                self.target += 1;
                while self.slots.len() < self.target {
                    self.slots.push(Slot::default());
                }
                let msg = format!("SIGTTIN: one worker more, now {}", self.target);
                self.rep.report(Report::Log(Level::Info, &msg));
            }
            SIGTTOU if self.phase == Phase::Running => {
                if self.target <= 1 {
                    self.rep.report(Report::Log(
                        Level::Warn,
                        "SIGTTOU ignored: one worker is the minimum",
                    ));
                    return;
                }
                self.target -= 1;
                let slot = self.target;
                if let Some(id) = self.slots[slot].worker {
                    self.retire(id, now);
                }
                self.slots[slot].respawn_at = None;
                let msg = format!(
                    "SIGTTOU: one worker fewer, now {} (worker {slot} stops after its job)",
                    self.target
                );
                self.rep.report(Report::Log(Level::Info, &msg));
            }
            SIGHUP if self.phase == Phase::Running => {
                let ids: Vec<u64> = self.slots.iter().filter_map(|s| s.worker).collect();
                let msg = format!(
                    "SIGHUP: replacing all {} workers, each after its current job",
                    ids.len()
                );
                self.rep.report(Report::Log(Level::Info, &msg));
                for id in ids {
                    self.retire(id, now);
                }
            }
            _ => {}
        }
    }

    /// Lets a worker finish the jobs it holds, then closes its stdin.
    fn retire(&mut self, id: u64, now: Instant) {
        if let Some(w) = self.workers.get_mut(&id) {
            w.retiring = true;
            if w.inflight.is_empty() {
                w.close_stdin(now);
            }
        }
    }

    fn interrupt(&mut self, now: Instant) {
        match self.phase {
            Phase::Running => self.stop_run(Interrupt::Graceful, "interrupted", now),
            // Every job is done and workers are exiting: hurry them along.
            Phase::Draining => self.kill_all(now),
            Phase::Stopping => {
                self.interrupted = Some(Interrupt::Forced);
                self.rep.report(Report::Log(
                    Level::Warn,
                    "interrupted again: killing every worker",
                ));
                self.kill_all(now);
            }
            Phase::Killing => {}
        }
    }

    /// Stops sending jobs; the ones in flight finish and write their
    /// results. Jobs waiting for a retry are left for `--resume`.
    fn stop_run(&mut self, why: Interrupt, what: &str, _now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        self.phase = Phase::Stopping;
        self.interrupted = Some(why);
        let in_flight: usize = self.workers.values().map(|w| w.inflight.len()).sum();
        let msg = format!(
            "{what}: sending no more jobs; waiting for the {in_flight} in flight (Ctrl-C again to kill them)"
        );
        self.rep.report(Report::Log(Level::Warn, &msg));
        self.waiting.clear();
        self.ready.clear();
    }

    fn tick(&mut self, now: Instant) {
        self.last_tick = now;
        let p = self.progress(now);
        self.rep.report(Report::Tick(&p));
    }

    fn progress(&mut self, now: Instant) -> Progress {
        let mut p = self.summary.progress.clone();
        p.elapsed = now.saturating_duration_since(self.started);
        p.retrying = (self.waiting.len()
            + self.ready.iter().filter(|r| !r.history.is_empty()).count())
            as u64;
        p.workers = self.workers.len();
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
    pub progress: Progress,
    pub queued_retries: usize,
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
    StatusView {
        slots,
        retiring,
        progress,
        queued_retries: e.waiting.len() + e.ready.len(),
    }
}
