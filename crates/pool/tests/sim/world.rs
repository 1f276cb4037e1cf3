//! The simulated world around the core: workers that answer, answer late,
//! hang, crash, are killed by hand, break the protocol or ignore SIGTERM;
//! result writes that fail; logins that come up or do not; signals at
//! random moments; a wall clock that jumps. Everything is drawn from one
//! seed, so a seed replays a whole run.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use callpool_pool::testing::core::{
    Action, Core, CoreConfig, HostsConfig, Input, JobSource, Jobs, Note, Now, Phase, Pull, Recycle,
    SendError, Sig, StartError,
};
use callpool_pool::testing::feed::Feed;
use callpool_pool::testing::jobs::Job;
use callpool_pool::testing::report::{JobFate, LogEvent, WorkerEnd};
use callpool_pool::testing::retry::RetryPolicy;
use callpool_pool::testing::rules::BodyRules;
use callpool_pool::testing::who::{ExitHow, ThreadEnd, Who, sig};
use callpool_pool::{Interrupt, RunError, Summary};
use callpool_protocol::{
    BodyKind, ErrorKind, FromWorker, HttpResponse, PROTOCOL_VERSION, ReadyInfo, ResultMsg,
};
use serde_json::value::RawValue;

/// What went wrong: the invariant, and the step.
pub type Violation = String;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// How a run is set up, and how hostile its world is.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub jobs: usize,
    pub workers: usize,
    pub threads: bool,
    pub prefetch: usize,
    pub retries: u32,
    pub timeout: Duration,
    pub kill_grace: Duration,
    pub start_timeout: Duration,
    pub max_start_failures: u32,
    pub rate: Option<f64>,
    pub dedup: bool,
    pub max_jobs: Option<u64>,
    pub hosts: Option<Vec<(String, usize, bool)>>,
    /// In per mille.
    pub p_crash: u32,
    pub p_hang: u32,
    pub p_late: u32,
    pub p_protocol: u32,
    pub p_never_ready: u32,
    pub p_exit_before_ready: u32,
    pub p_ignore_term: u32,
    pub p_start_fails: u32,
    pub p_enospc: u32,
    pub p_http_error: u32,
    pub p_budget: u32,
    pub poison: HashSet<usize>,
    /// Signals and person kills, at times from the start.
    pub signals: Vec<(Duration, Sig)>,
    pub person_kills: Vec<Duration>,
    pub clock_jumps: Vec<(Duration, i64)>,
    pub logins_fail: u32,
}

impl Scenario {
    /// A scenario drawn from `rng`.
    pub fn draw(rng: &mut fastrand::Rng) -> Scenario {
        let jobs = rng.usize(0..40);
        let threads = rng.u32(0..4) == 0;
        let hosts = (!threads && rng.u32(0..5) == 0).then(|| {
            (0..rng.usize(2..4))
                .map(|i| {
                    if i == 0 && rng.bool() {
                        (":".to_string(), rng.usize(1..3), true)
                    } else {
                        (format!("h{i}"), rng.usize(1..3), false)
                    }
                })
                .collect::<Vec<_>>()
        });
        let workers = hosts
            .as_ref()
            .map_or_else(|| rng.usize(1..6), |h| h.iter().map(|x| x.1).sum());
        let hostile = rng.u32(0..3) != 0;
        let p = |rng: &mut fastrand::Rng, max: u32| if hostile { rng.u32(0..=max) } else { 0 };
        let mut signals = Vec::new();
        for _ in 0..rng.usize(0..4) {
            let at = ms(rng.u64(0..20_000));
            let s = match rng.u32(0..10) {
                0 | 1 => Sig::Interrupt,
                2 | 3 => Sig::Status,
                4 | 5 => Sig::MoreWorkers,
                6 | 7 => Sig::FewerWorkers,
                _ => Sig::RollingRestart,
            };
            signals.push((at, s));
        }
        signals.sort_by_key(|s| s.0);
        Scenario {
            jobs,
            workers,
            threads,
            prefetch: rng.usize(1..4),
            retries: rng.u32(0..4),
            timeout: ms(rng.u64(50..3000)),
            kill_grace: ms(rng.u64(10..2000)),
            start_timeout: ms(rng.u64(100..5000)),
            max_start_failures: rng.u32(1..6),
            rate: (rng.u32(0..4) == 0).then(|| rng.u32(1..200) as f64),
            dedup: rng.bool(),
            max_jobs: (rng.u32(0..4) == 0).then(|| rng.u64(1..6)),
            hosts,
            p_crash: p(rng, 60),
            p_hang: p(rng, 40),
            p_late: p(rng, 60),
            p_protocol: p(rng, 30),
            p_never_ready: p(rng, 60),
            p_exit_before_ready: p(rng, 60),
            p_ignore_term: p(rng, 300),
            p_start_fails: p(rng, 30),
            p_enospc: if rng.u32(0..10) == 0 {
                rng.u32(0..20)
            } else {
                0
            },
            p_http_error: p(rng, 300),
            p_budget: p(rng, 50),
            poison: (0..jobs)
                .filter(|_| hostile && rng.u32(0..25) == 0)
                .collect(),
            signals,
            person_kills: (0..rng.usize(0..3))
                .map(|_| ms(rng.u64(0..20_000)))
                .collect(),
            clock_jumps: (0..rng.usize(0..2))
                .map(|_| (ms(rng.u64(0..10_000)), rng.i64(-7200..7200)))
                .collect(),
            logins_fail: p(rng, 300),
        }
    }

    /// The same run with nothing going wrong: how `--resume` finishes it.
    pub fn calm(&self) -> Scenario {
        Scenario {
            p_crash: 0,
            p_hang: 0,
            p_late: 0,
            p_protocol: 0,
            p_never_ready: 0,
            p_exit_before_ready: 0,
            p_ignore_term: 0,
            p_start_fails: 0,
            p_enospc: 0,
            p_http_error: 0,
            p_budget: 0,
            poison: HashSet::new(),
            signals: Vec::new(),
            person_kills: Vec::new(),
            clock_jumps: Vec::new(),
            logins_fail: 0,
            ..self.clone()
        }
    }
}

/// A job of the simulated list.
fn job(i: usize, s: &Scenario) -> Job {
    // With --dedup, about one job in three repeats an earlier request.
    let request = if s.dedup && i % 3 == 2 { i - 1 } else { i };
    Job {
        id: format!("j{i}"),
        line: i as u64 + 1,
        method: "GET".into(),
        url: format!("http://127.0.0.1/{request}"),
        timeout: s.timeout,
        wire: Arc::from(format!("{{\"type\":\"job\",\"id\":\"j{i}\"}}\n").into_bytes()),
        secrets: Vec::new(),
        fingerprint: format!("f{request}"),
        args: None,
    }
}

/// The list as the reader thread would give it, some jobs skipped.
struct ListSource {
    items: VecDeque<Feed>,
}

impl JobSource for ListSource {
    fn pull(&mut self) -> Pull {
        match self.items.pop_front() {
            Some(f) => Pull::Item(f),
            None => Pull::Ended,
        }
    }

    fn ready(&self) -> usize {
        self.items.len()
    }
}

/// A worker of the world.
#[derive(Debug)]
struct SimWorker {
    slot: usize,
    host: usize,
    pid: i32,
    thread: bool,
    /// Says ready, or not.
    ready: bool,
    ignores_term: bool,
    /// Jobs sent, not answered: the head is the one it runs.
    queue: VecDeque<String>,
    /// Every job it was sent (an answer it gave after it was stopped
    /// leaves `queue`, though the core ignored it).
    sent: HashSet<String>,
    /// When the head job started.
    head_since: Option<Duration>,
    /// Answers it will give: at most one scheduled at a time.
    busy: bool,
    input_closed: bool,
    terminated: Option<Duration>,
    killed: bool,
    exited: bool,
    abandoned: bool,
    forgotten: bool,
    /// Started since the slot's last start failure (for throttling).
    answered_any: bool,
}

#[derive(Debug)]
enum Ev {
    Ready(u64),
    Answer(u64, String),
    Exit(u64, ExitHow),
    Garbage(u64),
    Signal(Sig),
    PersonKill,
    WriteFailed(String),
    LoginUp(usize, usize, i32),
    LoginEnded(i32, ExitHow),
    ClockJump(i64),
}

/// The world, and what it saw the core do.
pub struct World {
    pub s: Scenario,
    rng: fastrand::Rng,
    t0: Instant,
    wall0: SystemTime,
    /// Virtual time since the start.
    t: Duration,
    wall_offset: i64,
    events: BinaryHeap<Reverse<(Duration, u64)>>,
    payloads: HashMap<u64, Ev>,
    seq: u64,
    workers: BTreeMap<u64, SimWorker>,
    next_pid: i32,
    /// Final results written, by job.
    pub results: BTreeMap<String, bool>,
    /// Results written before this run (for the resume run).
    pub earlier: BTreeMap<String, bool>,
    /// Jobs whose row was edited since their ok result (`--resume` runs
    /// them again).
    pub edited: HashSet<String>,
    /// The last attempt logged for each job.
    attempts: HashMap<String, u32>,
    /// Each result: attempts in its history, and the job whose call
    /// answered it (`--dedup`).
    written: BTreeMap<String, (bool, u32, Option<String>)>,
    /// Each send, for the rate check.
    sends: Vec<Duration>,
    /// Start failures in a row per host, and when the core last learnt of one, by slot.
    start_failures: HashMap<usize, u32>,
    last_failure: HashMap<usize, (Duration, u32)>,
    forced: bool,
    /// The core was killing every worker before the input in hand.
    killing: bool,
    logins: HashMap<i32, (usize, usize)>,
    pub steps: u64,
    idle_turns: u32,
    pub trace: Vec<String>,
    tracing: bool,
}

impl World {
    pub fn new(s: Scenario, seed: u64, tracing: bool) -> World {
        World {
            s,
            rng: fastrand::Rng::with_seed(seed ^ 0x5eed),
            t0: Instant::now(),
            wall0: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
            t: Duration::ZERO,
            wall_offset: 0,
            events: BinaryHeap::new(),
            payloads: HashMap::new(),
            seq: 0,
            workers: BTreeMap::new(),
            next_pid: 1000,
            results: BTreeMap::new(),
            earlier: BTreeMap::new(),
            edited: HashSet::new(),
            attempts: HashMap::new(),
            written: BTreeMap::new(),
            sends: Vec::new(),
            start_failures: HashMap::new(),
            last_failure: HashMap::new(),
            forced: false,
            killing: false,
            logins: HashMap::new(),
            steps: 0,
            idle_turns: 0,
            trace: Vec::new(),
            tracing,
        }
    }

    fn now(&self) -> Now {
        let wall = if self.wall_offset >= 0 {
            self.wall0 + Duration::from_secs(self.wall_offset as u64)
        } else {
            self.wall0 - Duration::from_secs(self.wall_offset.unsigned_abs())
        };
        Now {
            mono: self.t0 + self.t,
            wall: wall + self.t,
        }
    }

    fn at(&mut self, after: Duration, ev: Ev) {
        self.seq += 1;
        self.events.push(Reverse((self.t + after, self.seq)));
        self.payloads.insert(self.seq, ev);
    }

    fn per_mille(&mut self, p: u32) -> bool {
        p > 0 && self.rng.u32(0..1000) < p
    }

    fn log(&mut self, line: impl FnOnce() -> String) {
        if self.tracing {
            let l = line();
            self.trace
                .push(format!("{:>9.3}s {l}", self.t.as_secs_f64()));
        }
    }

    /// The core's configuration for this world.
    pub fn config(&self, seed: u64) -> CoreConfig {
        let s = &self.s;
        CoreConfig {
            workers: s.workers,
            kill_grace: s.kill_grace,
            start_timeout: s.start_timeout,
            retry: RetryPolicy {
                retries: s.retries,
                on_status: vec![429, 500, 502, 503, 504],
                on_error_kinds: vec![ErrorKind::Timeout, ErrorKind::from("connect")],
                backoff_base: ms(100),
                backoff_cap: ms(2000),
                max_retry_after: Duration::from_secs(60),
            },
            prefetch: s.prefetch,
            max_start_failures: s.max_start_failures,
            rules: BodyRules::default(),
            rate: s.rate,
            recycle: Recycle {
                max_jobs: s.max_jobs,
                jitter: 2,
                max_rss: None,
            },
            hosts: s.hosts.as_ref().map(|list| HostsConfig {
                list: list.clone(),
                sessions: 2,
                delay: ms(50),
            }),
            command: "sim-worker".into(),
            spawn_batch: if s.threads { usize::MAX } else { 8 },
            memory_limit: None,
            id_name: if s.threads { "tid" } else { "pid" },
            out_dir: "/sim".into(),
            own_pid: 1,
            seed,
        }
    }

    /// The jobs, with the ones that have an ok result skipped (`--resume`).
    pub fn jobs(&self) -> Jobs {
        let s = &self.s;
        let list: Vec<Job> = (0..s.jobs).map(|i| job(i, s)).collect();
        let items = list
            .into_iter()
            .map(|j| {
                if self.edited.contains(&j.id) {
                    Feed::Job {
                        job: Box::new(j),
                        changed: true,
                    }
                } else if self.earlier.get(&j.id) == Some(&true) {
                    Feed::Skipped
                } else {
                    Feed::Job {
                        job: Box::new(j),
                        changed: false,
                    }
                }
            })
            .collect::<VecDeque<_>>();
        let dedup = s.dedup.then(|| {
            let hasher = RandomState::new();
            let mut counts: HashMap<u64, u32> = HashMap::new();
            for f in &items {
                if let Feed::Job { job, .. } = f {
                    *counts.entry(hasher.hash_one(&job.fingerprint)).or_default() += 1;
                }
            }
            counts.retain(|_, n| *n > 1);
            (counts, hasher)
        });
        Jobs {
            total: s.jobs as u64,
            name: "sim.jsonl".into(),
            source: Box::new(ListSource { items }),
            dedup,
        }
    }

    /// Runs the core to its end in this world: the summary, or the first
    /// invariant that broke.
    pub fn run(&mut self, seed: u64) -> Result<Result<Summary, RunError>, Violation> {
        let mut core = Core::new(self.config(seed), self.jobs(), self.now());
        for (at, s) in self.s.signals.clone() {
            self.at(at, Ev::Signal(s));
        }
        for at in self.s.person_kills.clone() {
            self.at(at, Ev::PersonKill);
        }
        for (at, by) in self.s.clock_jumps.clone() {
            self.at(at, Ev::ClockJump(by));
        }
        let limit = Duration::from_secs(4 * 3600);
        loop {
            self.steps += 1;
            self.killing = core.phase() == Phase::Killing;
            core.handle_timeout(self.now());
            self.drain(&mut core)?;
            self.check(&core)?;
            if core.is_done() {
                break;
            }
            let next_core = core.poll_timeout().saturating_duration_since(self.t0);
            let next_ev = self.events.peek().map(|Reverse((t, _))| *t);
            let next = next_ev.map_or(next_core, |e| e.min(next_core)).max(self.t);
            // The core asked to be called again at once, with nothing
            // happening: in the real loop, a spin.
            if next == self.t && next_ev != Some(self.t) {
                self.idle_turns += 1;
                if self.idle_turns > 100 {
                    return Err(format!(
                        "busy loop: the core asks for a turn at once, {} times in a row, with nothing to do (phase {:?})",
                        self.idle_turns,
                        core.phase()
                    ));
                }
            } else {
                self.idle_turns = 0;
            }
            if next > limit || self.steps > 2_000_000 {
                return Err(format!(
                    "the run did not end: {} steps, {:.0}s of virtual time, phase {:?}",
                    self.steps,
                    self.t.as_secs_f64(),
                    core.phase()
                ));
            }
            self.t = next;
            while let Some(Reverse((t, seq))) = self.events.peek().copied() {
                if t > self.t {
                    break;
                }
                self.events.pop();
                if let Some(ev) = self.payloads.remove(&seq) {
                    self.deliver(&mut core, ev)?;
                }
            }
        }
        let summary = core.summary(self.now());
        self.drain(&mut core)?;
        self.check_end(&summary)?;
        Ok(summary)
    }

    fn input(&mut self, core: &mut Core, input: Input) -> Result<(), Violation> {
        self.log(|| format!("in  {input:?}"));
        self.killing = core.phase() == Phase::Killing;
        core.handle(input, self.now());
        self.drain(core)
    }

    fn deliver(&mut self, core: &mut Core, ev: Ev) -> Result<(), Violation> {
        match ev {
            Ev::Ready(id) => {
                let Some(w) = self.workers.get_mut(&id) else {
                    return Ok(());
                };
                if w.exited || w.abandoned {
                    return Ok(());
                }
                w.ready = true;
                let msg = Ok(FromWorker::Ready(ReadyInfo {
                    protocol: PROTOCOL_VERSION,
                    worker: None,
                    version: None,
                }));
                self.input(core, Input::Message { id, msg })?;
                self.work(id);
            }
            Ev::Answer(id, job) => {
                let Some(w) = self.workers.get_mut(&id) else {
                    return Ok(());
                };
                w.busy = false;
                if w.exited || w.queue.front() != Some(&job) {
                    return Ok(());
                }
                w.queue.pop_front();
                w.head_since = (!w.queue.is_empty()).then_some(self.t);
                w.answered_any = true;
                let abandoned = w.abandoned;
                let host = w.host;
                if w.terminated.is_none() {
                    self.start_failures.insert(host, 0);
                }
                let res = self.answer(&job);
                if abandoned {
                    // Its answer goes nowhere; the thread ends when it looks
                    // for its next job.
                    self.at(
                        Duration::ZERO,
                        Ev::Exit(id, ExitHow::Thread(ThreadEnd::Returned)),
                    );
                    return Ok(());
                }
                self.input(
                    core,
                    Input::Message {
                        id,
                        msg: Ok(FromWorker::Result(res)),
                    },
                )?;
                self.work(id);
            }
            Ev::Garbage(id) => {
                if self.workers.get(&id).is_some_and(|w| !w.exited) {
                    let msg = Err("wrote a line that is not JSON".to_string());
                    self.input(core, Input::Message { id, msg })?;
                }
            }
            Ev::Exit(id, how) => {
                let Some(w) = self.workers.get_mut(&id) else {
                    return Ok(());
                };
                if w.exited {
                    return Ok(());
                }
                w.exited = true;
                let (thread, pid, host, ready, answered) =
                    (w.thread, w.pid, w.host, w.ready, w.answered_any);
                let by_person = how.by_a_person() && w.terminated.is_none();
                // A start failure: it ended before `ready` by itself (not
                // killed, not told to finish by a closed input).
                if !ready && !answered && !by_person && w.terminated.is_none() && !w.input_closed {
                    *self.start_failures.entry(host).or_default() += 1;
                    let n = self.start_failures[&host];
                    let slot = w.slot;
                    self.last_failure.insert(slot, (self.t, n));
                }
                if thread {
                    let end = match how {
                        ExitHow::Thread(e) => e,
                        _ => ThreadEnd::Panicked("simulated".into()),
                    };
                    self.input(core, Input::ThreadEnded { id, end })?;
                } else {
                    self.input(core, Input::StdoutClosed { id })?;
                    self.input(core, Input::Reaped { pid, how })?;
                }
            }
            Ev::Signal(s) => {
                if s == Sig::Interrupt && core.phase() == Phase::Stopping {
                    self.forced = true;
                }
                self.input(core, Input::Signal(s))?;
            }
            Ev::PersonKill => {
                let live: Vec<u64> = self
                    .workers
                    .iter()
                    .filter(|(_, w)| !w.exited && !w.thread && !w.abandoned)
                    .map(|(id, _)| *id)
                    .collect();
                if !live.is_empty() {
                    let id = live[self.rng.usize(0..live.len())];
                    self.at(Duration::ZERO, Ev::Exit(id, ExitHow::Signal(sig::KILL)));
                }
            }
            Ev::WriteFailed(job) => {
                let error = std::io::Error::from(std::io::ErrorKind::StorageFull);
                self.input(core, Input::WriteFailed { id: job, error })?;
            }
            Ev::LoginUp(host, login, pid) => {
                if self.logins.contains_key(&pid) {
                    self.input(core, Input::LoginUp { host, login })?;
                }
            }
            Ev::LoginEnded(pid, how) => {
                if self.logins.remove(&pid).is_some() {
                    let said = Some("Connection refused".to_string());
                    self.input(core, Input::LoginEnded { pid, how, said })?;
                }
            }
            Ev::ClockJump(by) => self.wall_offset += by,
        }
        Ok(())
    }

    /// The answer to a job: an ok, an HTTP error, a budget spent.
    fn answer(&mut self, job: &str) -> ResultMsg {
        let (status, headers) = if self.per_mille(self.s.p_budget) {
            let reset = self.rng.u64(1..10).to_string();
            (
                429,
                [
                    ("x-ratelimit-remaining".to_string(), "0".to_string()),
                    ("x-ratelimit-reset".to_string(), reset),
                ]
                .into(),
            )
        } else if self.per_mille(self.s.p_http_error) {
            (if self.rng.bool() { 500 } else { 404 }, Default::default())
        } else {
            (200, Default::default())
        };
        ResultMsg {
            id: job.to_string(),
            response: Some(HttpResponse {
                status,
                headers,
                body_kind: BodyKind::Json,
                body: RawValue::from_string("{}".into()).expect("raw"),
            }),
            value: None,
            error: None,
            elapsed_ms: None,
        }
    }

    /// A worker with a job at its head and nothing scheduled starts it:
    /// its fate is drawn now.
    fn work(&mut self, id: u64) {
        let Some(w) = self.workers.get(&id) else {
            return;
        };
        if !w.ready || w.busy || w.exited || w.abandoned {
            if w.ready && !w.exited && w.queue.is_empty() && w.input_closed && !w.busy {
                let after = ms(self.rng.u64(0..20));
                self.at(after, Ev::Exit(id, ExitHow::Code(0)));
            }
            return;
        }
        let Some(job) = w.queue.front().cloned() else {
            if w.input_closed {
                let how = if w.thread {
                    ExitHow::Thread(ThreadEnd::Returned)
                } else {
                    ExitHow::Code(0)
                };
                let after = ms(self.rng.u64(0..20));
                self.at(after, Ev::Exit(id, how));
            }
            return;
        };
        let n: usize = job[1..].parse().unwrap_or(0);
        let timeout = self.s.timeout.as_millis() as u64;
        let thread = w.thread;
        if let Some(w) = self.workers.get_mut(&id) {
            w.busy = true;
            w.head_since.get_or_insert(self.t);
        }
        if self.s.poison.contains(&n) || self.per_mille(self.s.p_crash) {
            let how = if thread {
                ExitHow::Thread(ThreadEnd::Panicked("boom".into()))
            } else {
                ExitHow::Signal(sig::SEGV)
            };
            let after = ms(self.rng.u64(0..timeout));
            self.at(after, Ev::Exit(id, how));
        } else if self.per_mille(self.s.p_hang) {
            // Never answers.
        } else if self.per_mille(self.s.p_protocol) {
            let after = ms(self.rng.u64(0..timeout));
            self.at(after, Ev::Garbage(id));
        } else if self.per_mille(self.s.p_late) {
            let after = ms(self.rng.u64(timeout..timeout * 3 + 1));
            self.at(after, Ev::Answer(id, job));
        } else {
            let after = ms(self.rng.u64(0..timeout.max(2) / 2));
            self.at(after, Ev::Answer(id, job));
        }
    }

    fn drain(&mut self, core: &mut Core) -> Result<(), Violation> {
        while let Some(a) = core.poll_action() {
            self.log(|| match &a {
                Action::Note(Note::Event(e)) => format!("tell {e:?}"),
                Action::Note(_) => String::new(),
                Action::Attempt { id, record, .. } => {
                    format!(
                        "attempt {id} {} {:?}",
                        record.outcome,
                        record.error.as_ref().map(|e| &e.message)
                    )
                }
                other => format!("out {other:?}"),
            });
            self.act(core, a)?;
        }
        Ok(())
    }

    fn act(&mut self, core: &mut Core, a: Action) -> Result<(), Violation> {
        match a {
            Action::Start { id, slot, host, .. } => {
                if let Some((at, n)) = self.last_failure.get(&slot).copied() {
                    // The rule, written here again (not taken from the
                    // core): after the n-th start failure in a row, wait
                    // 100 ms doubling per failure up to 5 s; after
                    // --max-start-failures of them, give up.
                    let in_a_row = self.start_failures.get(&host).copied().unwrap_or(0);
                    let max = self.s.max_start_failures;
                    if in_a_row == n && n >= max {
                        return Err(format!(
                            "slot {slot} started a worker after {n} start failures in a row (the limit is {max})"
                        ));
                    }
                    let wait = ms(100 << (n.saturating_sub(1).min(16))).min(ms(5000));
                    if in_a_row == n && self.t < at + wait {
                        return Err(format!(
                            "slot {slot} started a worker {:?} after its {n}-th start failure in a row, before its backoff of {wait:?}",
                            self.t - at
                        ));
                    }
                }
                if self.per_mille(self.s.p_start_fails) {
                    let error = StartError::Failed("out of processes".into());
                    core.handle(Input::StartFailed { id, error }, self.now());
                    return Ok(());
                }
                self.next_pid += 1;
                let pid = self.next_pid;
                let never_ready = self.per_mille(self.s.p_never_ready);
                let exits = self.per_mille(self.s.p_exit_before_ready);
                let w = SimWorker {
                    slot,
                    host,
                    pid,
                    thread: self.s.threads,
                    ready: false,
                    ignores_term: self.per_mille(self.s.p_ignore_term),
                    queue: VecDeque::new(),
                    sent: HashSet::new(),
                    head_since: None,
                    busy: false,
                    input_closed: false,
                    terminated: None,
                    killed: false,
                    exited: false,
                    abandoned: false,
                    forgotten: false,
                    answered_any: false,
                };
                let who = if w.thread {
                    Who::Thread(pid)
                } else {
                    Who::Process(pid)
                };
                self.workers.insert(id, w);
                core.handle(Input::Started { id, who }, self.now());
                let quick = (self.s.start_timeout.as_millis() as u64 / 2).clamp(1, 300);
                let after = ms(self.rng.u64(0..quick));
                if exits {
                    let how = if self.s.threads {
                        ExitHow::Thread(ThreadEnd::Failed("no key".into()))
                    } else {
                        ExitHow::Code(1)
                    };
                    self.at(after, Ev::Exit(id, how));
                } else if !never_ready {
                    self.at(after, Ev::Ready(id));
                }
            }
            Action::Send { id, job, .. } => {
                if let Some(rate) = self.s.rate {
                    self.sends.push(self.t);
                    let n = self.sends.len();
                    for k in 2..n.min(40) {
                        let span = (self.sends[n - 1] - self.sends[n - k]).as_secs_f64();
                        if (k - 1) as f64 > span * rate + 1.0 + 1e-6 {
                            return Err(format!(
                                "{k} jobs were sent within {span:.3}s: more than --rate {rate}/s allows"
                            ));
                        }
                    }
                }
                let holder = self.workers.iter().find(|(other, w)| {
                    **other != id && !w.exited && !w.abandoned && w.queue.contains(&job)
                });
                if let Some((other, _)) = holder {
                    return Err(format!(
                        "job {job} sent to worker {id} while worker {other} holds it"
                    ));
                }
                if self.results.contains_key(&job) {
                    return Err(format!("job {job} sent again after its result was written"));
                }
                let Some(w) = self.workers.get_mut(&id) else {
                    return Err(format!(
                        "job {job} sent to worker {id}, which was never started"
                    ));
                };
                if w.forgotten {
                    return Err(format!(
                        "job {job} sent to worker {id} after it was forgotten"
                    ));
                }
                if w.exited || w.input_closed || w.abandoned {
                    let error = if w.thread {
                        SendError::Ended
                    } else {
                        SendError::BrokenPipe
                    };
                    let now = self.now();
                    core.handle(Input::SendFailed { id, job, error }, now);
                    return Ok(());
                }
                if w.queue.is_empty() {
                    w.head_since = Some(self.t);
                }
                w.sent.insert(job.clone());
                w.queue.push_back(job);
                self.work(id);
            }
            Action::CloseInput { id } => {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.input_closed = true;
                }
                self.work(id);
            }
            Action::Terminate { id } => {
                let Some(w) = self.workers.get_mut(&id) else {
                    return Err(format!("worker {id} terminated, but it was never started"));
                };
                w.terminated.get_or_insert(self.t);
                w.input_closed = true;
                if w.thread {
                    w.abandoned = true;
                } else if !w.ignores_term && !w.exited {
                    let after = ms(self.rng.u64(0..50));
                    self.at(after, Ev::Exit(id, ExitHow::Signal(sig::TERM)));
                }
            }
            Action::Kill { id } => {
                if let Some(w) = self.workers.get_mut(&id) {
                    w.killed = true;
                    if !w.exited && !w.thread {
                        self.at(ms(1), Ev::Exit(id, ExitHow::Signal(sig::KILL)));
                    }
                }
            }
            Action::Forget { id } => {
                let Some(w) = self.workers.get_mut(&id) else {
                    return Err(format!("worker {id} forgotten, but it was never started"));
                };
                if !w.exited && !w.abandoned {
                    return Err(format!("worker {id} forgotten while it runs"));
                }
                w.forgotten = true;
            }
            Action::Note(Note::Event(LogEvent::WorkerEnded(end))) => self.check_told_end(&end)?,
            Action::Attempt { id, record, .. } => {
                self.attempts.insert(id, record.attempt);
            }
            Action::Note(_) | Action::MeasureRss(_) => {}
            Action::WriteResult(r) => {
                // Stopped by force before the input that wrote it.
                if self.killing {
                    return Err(format!(
                        "result of {} written after the run was stopped by force (phase {:?})",
                        r.job.id,
                        core.phase()
                    ));
                }
                if self.results.insert(r.job.id.clone(), r.ok).is_some() {
                    return Err(format!("job {} got a second result", r.job.id));
                }
                let last = r.history.last().map(|a| a.attempt);
                let source = r.dedup_of.clone().unwrap_or_else(|| r.job.id.clone());
                if last.is_none() || self.attempts.get(&source).copied() != last {
                    return Err(format!(
                        "result of {} gives attempt {last:?} of {source}, whose last logged attempt is {:?}",
                        r.job.id,
                        self.attempts.get(&source)
                    ));
                }
                self.written.insert(
                    r.job.id.clone(),
                    (r.ok, r.history.len() as u32, r.dedup_of.clone()),
                );
                if self.earlier.get(&r.job.id) == Some(&true) && !self.edited.contains(&r.job.id) {
                    return Err(format!(
                        "job {} answered again after an ok result (resume)",
                        r.job.id
                    ));
                }
                if self.per_mille(self.s.p_enospc) {
                    self.at(ms(1), Ev::WriteFailed(r.job.id.clone()));
                }
            }
            Action::StartLogin { host, login } => {
                self.next_pid += 1;
                let pid = self.next_pid;
                self.logins.insert(pid, (host, login));
                core.handle(
                    Input::LoginStarted {
                        host,
                        login,
                        result: Ok(pid),
                    },
                    self.now(),
                );
                let quick = (self.s.start_timeout.as_millis() as u64 / 2).clamp(1, 500);
                let after = ms(self.rng.u64(0..quick));
                if self.per_mille(self.s.logins_fail) {
                    self.at(after, Ev::LoginEnded(pid, ExitHow::Code(255)));
                } else {
                    self.at(after, Ev::LoginUp(host, login, pid));
                }
            }
            Action::StopLogin { pid, .. } => {
                self.at(ms(5), Ev::LoginEnded(pid, ExitHow::Signal(sig::TERM)));
            }
        }
        Ok(())
    }

    /// A worker's end, as told, is what happened: the job it names was the
    /// worker's, and its fate agrees with the results written so far (the
    /// end is decided once, so the words cannot say "goes back to the
    /// queue" of a job that was failed).
    fn check_told_end(&self, end: &WorkerEnd) -> Result<(), Violation> {
        let Some(job) = &end.job else {
            return Ok(());
        };
        let worker = self.workers.values().find(|w| end.who.number() == w.pid);
        if !worker.is_some_and(|w| w.sent.contains(&job.id)) {
            return Err(format!(
                "the end of worker {} names job {}, which it was never sent",
                end.who, job.id
            ));
        }
        let written = self.results.contains_key(&job.id);
        match job.fate {
            JobFate::Finished if !written => Err(format!(
                "the end of worker {} says job {} has its result, but none was written",
                end.who, job.id
            )),
            JobFate::Finished => Ok(()),
            fate if written => Err(format!(
                "the end of worker {} says job {} is {fate:?}, but its result was written",
                end.who, job.id
            )),
            _ => Ok(()),
        }
    }

    /// After every step: deadlines are kept and kills escalate.
    fn check(&self, core: &Core) -> Result<(), Violation> {
        for (id, w) in &self.workers {
            if w.exited || w.abandoned {
                continue;
            }
            if let (Some(since), None) = (w.head_since, w.terminated) {
                if w.ready && !w.queue.is_empty() && self.t > since + self.s.timeout {
                    return Err(format!(
                        "worker {id} runs job {} past its deadline ({:?} > {:?}) and is not stopped",
                        w.queue[0],
                        self.t - since,
                        self.s.timeout
                    ));
                }
            }
            if let Some(at) = w.terminated {
                if !w.killed && self.t > at + self.s.kill_grace {
                    return Err(format!(
                        "worker {id} outlived SIGTERM by more than the grace without SIGKILL"
                    ));
                }
            }
        }
        let _ = core;
        Ok(())
    }

    /// At the end: every job has exactly one result, or the run says it
    /// stopped early; no worker is left behind.
    fn check_end(&self, summary: &Result<Summary, RunError>) -> Result<(), Violation> {
        for (id, w) in &self.workers {
            if !w.exited && !w.abandoned {
                return Err(format!("worker {id} still runs after the run ended"));
            }
        }
        // A job answered by another's call (--dedup) got that call's final
        // answer: the same outcome, after the same attempts.
        for (id, (ok, attempts, of)) in &self.written {
            if let Some(leader) = of {
                match self.written.get(leader) {
                    Some((lok, la, _)) if lok == ok && la == attempts => {}
                    other => {
                        return Err(format!(
                            "{id} was answered by {leader}'s call ({ok}, {attempts} attempts), whose own result is {other:?}"
                        ));
                    }
                }
            }
        }
        for id in &self.edited {
            if !self.results.contains_key(id)
                && summary.as_ref().is_ok_and(|s| s.interrupted.is_none())
            {
                return Err(format!(
                    "{id} was edited since its ok result, but was not run again"
                ));
            }
        }
        let written = self.results.len() as u64;
        let ok = self.results.values().filter(|ok| **ok).count() as u64;
        if let Ok(s) = summary {
            let skipped = self
                .earlier
                .iter()
                .filter(|(id, ok)| **ok && !self.edited.contains(*id))
                .count() as u64;
            if s.progress.ok != ok || s.progress.failed != written - ok {
                return Err(format!(
                    "the summary counts {} ok and {} failed, the files {} and {}",
                    s.progress.ok,
                    s.progress.failed,
                    ok,
                    written - ok
                ));
            }
            if s.progress.skipped != skipped {
                return Err(format!(
                    "{} skipped, {skipped} expected",
                    s.progress.skipped
                ));
            }
            let done = written + skipped;
            if s.interrupted.is_none() && done != s.progress.total {
                return Err(format!(
                    "the run ended without an interrupt but {done} of {} jobs are done",
                    s.progress.total
                ));
            }
            if s.not_run != s.progress.total - done {
                return Err(format!(
                    "{} reported not run, {} jobs have no result",
                    s.not_run,
                    s.progress.total - done
                ));
            }
            if s.interrupted == Some(Interrupt::Forced) && !self.forced {
                return Err("a forced stop was reported without a second interrupt".into());
            }
        }
        Ok(())
    }
}
