//! The shell around the core: the one loop that owns the system's side of
//! a run. It sleeps on the workers' pipes and an eventfd (epoll), reaps
//! children, reads signals, starts processes, threads and ssh logins, and
//! writes results; it turns each of those into an [`Input`] for the
//! [`Core`], and carries out the core's [`Action`]s. It decides nothing.

mod act;
mod logins;

use std::collections::HashMap;
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, TryRecvError, unbounded};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use signal_hook::consts::signal::{SIGCHLD, SIGHUP, SIGINT, SIGTERM, SIGTTIN, SIGTTOU, SIGUSR1};

use crate::core::retry::RetryPolicy;
use crate::core::rules::BodyRules;
use crate::core::{Core, CoreConfig, HostsConfig, Input, JobSource, Jobs, Now, Pull, Sig};
use crate::error::RunError;
use crate::files::output::Output;
use crate::jobs::RequestDefaults;
use crate::jobs::check::CheckedJobs;
use crate::jobs::feeder::{self, FeedRx};
use crate::report::{LogEvent, Report, Reporter, Summary};
use crate::who::ExitHow;
use crate::workers::event::Event;
use crate::workers::pipes::{LongLines, PipeState, SHORT_LINE};
use crate::workers::poller::{EventSender, Poller, WAKER_TOKEN};
use crate::workers::remote::Hosts;
use crate::workers::transport::{Isolation, Transport};

pub use crate::core::Recycle;

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

impl PoolConfig {
    /// What the core needs of it.
    fn core_config(&self, seed: u64) -> CoreConfig {
        CoreConfig {
            workers: self.workers,
            kill_grace: self.kill_grace,
            start_timeout: self.start_timeout,
            retry: self.retry.clone(),
            prefetch: self.prefetch,
            max_start_failures: self.max_start_failures,
            rules: self.rules.clone(),
            rate: self.rate,
            recycle: self.recycle.clone(),
            hosts: self.hosts.as_ref().map(|h| HostsConfig {
                list: h
                    .list
                    .iter()
                    .map(|p| (p.name.clone(), p.workers, p.is_local()))
                    .collect(),
                sessions: h.ssh.sessions,
                delay: h.ssh.delay,
            }),
            command: self.isolation.describe(),
            spawn_batch: self.isolation.spawn_batch(),
            memory_limit: self.isolation.memory_limit(),
            id_name: self.isolation.id_name(),
            out_dir: self.out_dir.clone(),
            own_pid: nix::unistd::getpid().as_raw(),
            seed,
        }
    }
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

/// The reader thread's channel, as the core's job source.
impl JobSource for FeedRx {
    fn pull(&mut self) -> Pull {
        match self.try_recv() {
            Ok(item) => Pull::Item(item),
            Err(TryRecvError::Empty) => Pull::Empty,
            Err(TryRecvError::Disconnected) => Pull::Ended,
        }
    }

    fn ready(&self) -> usize {
        self.len()
    }
}

/// The clocks, read once per use.
fn clock() -> Now {
    Now {
        mono: Instant::now(),
        wall: SystemTime::now(),
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
    if let Some(error) = &out.manifest_error {
        reporter.report(Report::Event(&LogEvent::ManifestNotWritten {
            error: error.clone(),
        }));
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
    crate::workers::escaped::subreap();
    let logins = logins::Logins::new(cfg.hosts.as_ref())?;
    let core = Core::new(
        cfg.core_config(fastrand::u64(..)),
        Jobs {
            total: jobs.count,
            name: jobs.name.clone(),
            source: Box::new(feed),
            dedup: cfg
                .dedup
                .then(|| (jobs.repeats.clone(), jobs.repeat_hasher.clone())),
        },
        clock(),
    );
    let mut shell = Shell {
        cfg,
        rep: reporter,
        core,
        rx,
        events,
        poller,
        tokens: Vec::new(),
        inbox: Vec::new(),
        out,
        workers: HashMap::new(),
        by_pid: HashMap::new(),
        logins,
    };
    let result = shell.run_loop();
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

/// The system's side of a run.
struct Shell<'a> {
    cfg: &'a PoolConfig,
    rep: &'a mut dyn Reporter,
    core: Core,
    /// Events from other threads: signals, worker threads, failed writes.
    rx: Receiver<Event>,
    /// Where worker threads send their events.
    events: EventSender,
    /// Worker pipes and the waker; what the loop sleeps on.
    poller: Poller,
    /// Scratch for ready tokens and for events read from a pipe.
    tokens: Vec<u64>,
    inbox: Vec<Event>,
    out: Output,
    /// Each live worker's pipes or channel, by the core's id.
    workers: HashMap<u64, Transport>,
    by_pid: HashMap<Pid, u64>,
    /// The ssh master connections, with `--host`.
    logins: logins::Logins,
}

impl Shell<'_> {
    fn run_loop(&mut self) -> Result<Summary, RunError> {
        loop {
            self.flush_inputs();
            self.check_logins();
            let now = clock();
            self.core.handle_timeout(now);
            self.drain_actions();
            if self.core.is_done() {
                break;
            }
            let mut wait = self.core.poll_timeout().saturating_duration_since(now.mono);
            if self.workers.values().any(Transport::has_unsent) {
                wait = wait.min(Duration::from_millis(5));
            }
            self.resume_long_lines();
            self.flush_joblog();
            self.wait_and_handle(wait);
        }
        self.logins.close();
        self.name_escaped();
        // Every result queued is on disk before the summary says so.
        self.flush_joblog();
        self.out.finish();
        while let Ok(ev) = self.rx.try_recv() {
            if let Event::WriteFailed { .. } = ev {
                self.handle(ev);
            }
        }
        let result = self.core.summary(clock());
        self.drain_actions();
        result
    }

    /// Sends what waits for the workers' inputs; a write that fails is
    /// the worker's input breaking.
    fn flush_inputs(&mut self) {
        let mut broken = Vec::new();
        for (&id, t) in &mut self.workers {
            if t.has_unsent() && t.flush().is_err() {
                broken.push(id);
            }
        }
        for id in broken {
            self.core.handle(Input::InputBroken { id }, clock());
        }
    }

    /// Names, in one warning line, the processes that workers started and
    /// that escaped their process groups (protocol.md §2), once no worker
    /// is left; each is reaped first if it has ended.
    fn name_escaped(&mut self) {
        // The http-workers' template (workers/spawn.rs) descends from the
        // supervisor too but is no worker's leftover: with no worker left it
        // has no more copies to make, and it is ended (and reaped) first.
        crate::workers::spawn::end_template();
        while let Ok(s) = waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            if s == WaitStatus::StillAlive {
                break;
            }
        }
        let pids = crate::workers::escaped::find();
        if !pids.is_empty() {
            self.rep
                .report(Report::Event(&LogEvent::EscapedProcesses { pids }));
        }
    }

    /// Sleeps until a worker pipe is readable, another thread sends an
    /// event, a job arrives for an idle worker, or `wait` passes; then
    /// hands what is there to the core.
    fn wait_and_handle(&mut self, mut wait: Duration) {
        if self.core.wants_jobs() {
            // The source pokes the waker for the next job; one that came
            // before this was set is seen here instead.
            self.poller.want_job(true);
            if self.core.source_ready() > 0 {
                wait = Duration::ZERO;
            }
        }
        self.poller.sleeping(true);
        if !self.rx.is_empty() {
            wait = Duration::ZERO;
        }
        let mut tokens = std::mem::take(&mut self.tokens);
        self.poller.wait(wait, &mut tokens);
        self.poller.sleeping(false);
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
    }

    /// Watches again the stdout of workers that wait for the long-line
    /// turn, once it is free ([`crate::workers::pipes::LongLines`]).
    fn resume_long_lines(&mut self) {
        for id in LongLines::woken(self.poller.long_lines()) {
            if let Some(t) = self.workers.get(&id) {
                t.watch_stdout(&self.poller, id, true);
            }
        }
    }

    /// A worker's stdout (or stderr) is readable: reads what is there and
    /// hands each line to the core.
    fn on_readable(&mut self, id: u64, stderr: bool) {
        let Some(t) = self.workers.get_mut(&id) else {
            return;
        };
        let mut inbox = std::mem::take(&mut self.inbox);
        let state = t.read(id, stderr, &mut inbox);
        if state == PipeState::Paused {
            t.watch_stdout(&self.poller, id, false);
        }
        let pending = t.stdout_pending();
        for ev in inbox.drain(..) {
            self.handle(ev);
        }
        self.inbox = inbox;
        if state == PipeState::Closed && !stderr {
            self.handle(Event::StdoutClosed { id });
        } else if !stderr && pending >= SHORT_LINE {
            self.input(Input::LongLine { id, bytes: pending });
        }
    }

    /// Reads what is left on a worker's stderr, so that its last lines
    /// reach the core before its end does.
    fn drain_stderr(&mut self, id: u64) {
        if self.workers.get(&id).is_some_and(Transport::has_stderr) {
            self.on_readable(id, true);
        }
    }

    /// Writes the joblog lines of this turn, before the loop sleeps.
    fn flush_joblog(&mut self) {
        if let Err(e) = self.out.flush_log() {
            self.input(Input::JoblogFailed(e));
        }
    }

    fn input(&mut self, input: Input) {
        self.core.handle(input, clock());
        self.drain_actions();
    }

    fn handle(&mut self, ev: Event) {
        match ev {
            Event::Message { id, msg } => self.input(Input::Message { id, msg }),
            Event::StdoutClosed { id } => {
                self.drain_stderr(id);
                self.input(Input::StdoutClosed { id });
            }
            Event::ThreadEnded { id, end } => self.input(Input::ThreadEnded { id, end }),
            Event::Stderr { id, pid, line } => self.input(Input::Stderr {
                id,
                pid: pid.as_raw(),
                line,
            }),
            Event::WriteFailed { id, error } => self.input(Input::WriteFailed { id, error }),
            Event::Signal(sig) => {
                let sig = match sig {
                    SIGCHLD => return self.reap(),
                    SIGINT | SIGTERM => Sig::Interrupt,
                    SIGUSR1 => Sig::Status,
                    SIGTTIN => Sig::MoreWorkers,
                    SIGTTOU => Sig::FewerWorkers,
                    SIGHUP => Sig::RollingRestart,
                    _ => return,
                };
                self.input(Input::Signal(sig));
            }
        }
    }

    /// Reaps every child that ended: a worker (whatever it left in its
    /// group is killed, and its last stderr lines read, before the core
    /// hears of it), or a login's ssh.
    fn reap(&mut self) {
        loop {
            let (pid, how) = match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(WaitStatus::Exited(pid, code)) => (pid, ExitHow::Code(code)),
                Ok(WaitStatus::Signaled(pid, sig, _)) => (pid, ExitHow::Signal(sig as i32)),
                Ok(_) => continue,
            };
            if let Some(said) = self.logins.ended(pid) {
                self.input(Input::LoginEnded {
                    pid: pid.as_raw(),
                    how,
                    said,
                });
                continue;
            }
            let Some(&id) = self.by_pid.get(&pid) else {
                continue;
            };
            // Anything the worker left in its group goes with it.
            crate::workers::transport::signal_group(pid, nix::sys::signal::Signal::SIGKILL);
            self.drain_stderr(id);
            self.input(Input::Reaped {
                pid: pid.as_raw(),
                how,
            });
        }
    }

    /// Tells the core which logins came up since the last turn.
    fn check_logins(&mut self) {
        for (host, login) in self.logins.came_up() {
            self.core.handle(Input::LoginUp { host, login }, clock());
        }
    }
}
