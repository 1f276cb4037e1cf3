//! One worker process as the loop sees it: its state, the jobs it holds,
//! and how to write to it and stop it.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::process::ChildStdin;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;

use crate::jobs::Job;
use crate::output::AttemptRecord;
use crate::pipes::{StderrPipe, StdoutPipe};
use crate::spawn::Spawned;

/// How many of a worker's last stderr lines are kept, to explain why it
/// failed to start.
const STDERR_TAIL: usize = 5;

/// Where a worker is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Started; its `ready` line has not come yet.
    Starting,
    /// Ready, and holds no job.
    Idle,
    /// Holds at least one job.
    Busy,
    /// Being stopped: its stdin is closed or it has been signalled; it gets
    /// no more jobs.
    Stopping,
}

impl State {
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

/// Why the supervisor is stopping a worker by signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KillReason {
    /// Its job ran past the deadline.
    Timeout,
    /// It sent no `ready` line in time.
    StartTimeout,
    /// It wrote something that breaks the protocol.
    Protocol(String),
    /// It did not exit after its stdin was closed.
    NoExit,
    /// The run is being stopped at once (second Ctrl-C).
    Shutdown,
}

/// How a worker's process ended.
#[derive(Debug, Clone, Copy)]
pub enum ExitHow {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(Signal),
}

impl ExitHow {
    /// From what `waitpid` said; `None` for stops and continues.
    pub fn from_wait(status: WaitStatus) -> Option<(Pid, Self)> {
        match status {
            WaitStatus::Exited(pid, code) => Some((pid, ExitHow::Code(code))),
            WaitStatus::Signaled(pid, sig, _) => Some((pid, ExitHow::Signal(sig))),
            _ => None,
        }
    }

    /// In words: `exit status 3`, `signal SIGKILL`.
    pub fn describe(self) -> String {
        match self {
            ExitHow::Code(c) => format!("exit status {c}"),
            ExitHow::Signal(s) => format!("signal {}", s.as_str()),
        }
    }
}

/// A worker process.
#[derive(Debug)]
pub struct Worker {
    /// Unique in the run; events name workers by it.
    pub id: u64,
    /// The slot it fills (slots are what TTIN/TTOU add and remove).
    pub slot: usize,
    /// Its pid, which is also its process group.
    pub pid: Pid,
    stdin: Option<ChildStdin>,
    /// Its stdout, until end of file.
    pub stdout: Option<StdoutPipe>,
    /// Its stderr, until end of file.
    pub stderr: Option<StderrPipe>,
    /// Bytes for its stdin that the pipe would not take yet.
    unsent: Vec<u8>,
    /// Its state and since when.
    pub state: State,
    /// When it entered `state`.
    pub since: Instant,
    /// When the process was started.
    pub spawned: Instant,
    /// The jobs it holds, oldest (the one running) first.
    pub inflight: VecDeque<InFlight>,
    /// Jobs it has answered.
    pub jobs_done: u64,
    /// When its stdout reached end of file.
    pub stdout_closed_at: Option<Instant>,
    /// How it ended, once reaped, and when.
    pub exit: Option<(ExitHow, Instant)>,
    /// Its last stderr lines.
    pub stderr_tail: VecDeque<String>,
    /// Finish the jobs held, then stop (TTOU, HUP, end of run).
    pub retiring: bool,
    /// Set when the supervisor signalled it: why, and when SIGTERM went.
    pub kill: Option<(KillReason, Instant)>,
    /// SIGKILL has been sent.
    pub sigkilled: bool,
    /// Its stdin was closed at this moment.
    pub stdin_closed_at: Option<Instant>,
    /// It had room for a job when none was available, and waits in the
    /// loop's list of workers to feed.
    pub hungry: bool,
}

impl Worker {
    /// A worker just started.
    pub(crate) fn new(id: u64, slot: usize, sp: Spawned, now: Instant) -> Self {
        Self {
            id,
            slot,
            pid: sp.pid,
            stdin: Some(sp.stdin),
            stdout: Some(StdoutPipe::new(sp.stdout)),
            stderr: Some(StderrPipe::new(sp.stderr)),
            unsent: Vec::new(),
            state: State::Starting,
            since: now,
            spawned: now,
            inflight: VecDeque::new(),
            jobs_done: 0,
            stdout_closed_at: None,
            exit: None,
            stderr_tail: VecDeque::new(),
            retiring: false,
            kill: None,
            sigkilled: false,
            stdin_closed_at: None,
            hungry: false,
        }
    }

    /// Moves to `state`, noting when.
    pub fn set_state(&mut self, state: State, now: Instant) {
        if self.state != state {
            self.state = state;
            self.since = now;
        }
    }

    /// After a change to `inflight`: Idle or Busy, unless starting or
    /// stopping.
    pub fn settle(&mut self, now: Instant) {
        if matches!(self.state, State::Idle | State::Busy) {
            let s = if self.inflight.is_empty() {
                State::Idle
            } else {
                State::Busy
            };
            self.set_state(s, now);
        }
    }

    /// Whether it may be given another job, holding at most `prefetch`.
    pub fn has_room(&self, prefetch: usize) -> bool {
        matches!(self.state, State::Idle | State::Busy)
            && !self.retiring
            && self.stdin.is_some()
            && self.inflight.len() < prefetch
    }

    /// Writes bytes to its stdin without blocking; what the pipe does not
    /// take now is kept and sent by [`Worker::flush`].
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        if self.stdin.is_none() {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        self.unsent.extend_from_slice(bytes);
        self.flush()
    }

    /// Sends the bytes waiting for its stdin, as far as the pipe takes them.
    pub fn flush(&mut self) -> io::Result<()> {
        let Some(stdin) = self.stdin.as_mut() else {
            self.unsent.clear();
            return Ok(());
        };
        while !self.unsent.is_empty() {
            match stdin.write(&self.unsent) {
                Ok(n) => {
                    self.unsent.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.unsent.clear();
                    return Err(e);
                }
            }
        }
        if self.unsent.is_empty() && self.stdin_closed_at.is_some() {
            self.stdin = None;
        }
        Ok(())
    }

    /// Whether bytes are waiting to be written.
    pub fn has_unsent(&self) -> bool {
        !self.unsent.is_empty()
    }

    /// Closes its stdin (after any unsent bytes): end of input means
    /// "finish and exit 0".
    pub fn close_stdin(&mut self, now: Instant) {
        if self.stdin_closed_at.is_none() {
            self.stdin_closed_at = Some(now);
            if self.unsent.is_empty() {
                self.stdin = None;
            }
        }
        self.set_state(State::Stopping, now);
    }

    /// Sends SIGTERM (then SIGCONT, so that a stopped worker can act on it)
    /// to its process group; SIGKILL follows after the grace period.
    pub fn terminate(&mut self, reason: KillReason, now: Instant) {
        if self.kill.is_none() {
            signal_group(self.pid, Signal::SIGTERM);
            signal_group(self.pid, Signal::SIGCONT);
            self.kill = Some((reason, now));
        }
        self.set_state(State::Stopping, now);
    }

    /// Sends SIGKILL to its process group.
    pub fn sigkill(&mut self) {
        signal_group(self.pid, Signal::SIGKILL);
        self.sigkilled = true;
    }

    /// Keeps a stderr line for the start-failure message.
    pub fn note_stderr(&mut self, line: &str) {
        if self.stderr_tail.len() == STDERR_TAIL {
            self.stderr_tail.pop_front();
        }
        self.stderr_tail.push_back(line.to_string());
    }

    /// The next moment something must be done about this worker, if any:
    /// a start deadline, a job deadline, or the end of a grace period.
    pub fn deadline(&self, start_timeout: Duration, grace: Duration) -> Option<Instant> {
        if let Some((_, at)) = self.exit {
            // Reaped but stdout still open (a grandchild holds it?): wait a
            // little for the last lines, then give up on them.
            return self
                .stdout_closed_at
                .is_none()
                .then_some(at + Duration::from_secs(1));
        }
        if let (Some(at), None) = (self.stdout_closed_at, &self.kill) {
            // Closing stdout usually means exiting; a worker that keeps
            // running without a way to answer is broken.
            return Some(at + Duration::from_millis(500));
        }
        if let Some((_, term_at)) = &self.kill {
            return (!self.sigkilled).then_some(*term_at + grace);
        }
        if let Some(closed) = self.stdin_closed_at {
            return Some(closed + grace);
        }
        match self.state {
            State::Starting => Some(self.spawned + start_timeout),
            State::Busy => self
                .inflight
                .front()
                .map(|f| f.started + f.pending.job.timeout),
            State::Idle | State::Stopping => None,
        }
    }
}

/// Signals a worker's whole process group; a group already gone is fine.
pub fn signal_group(pgid: Pid, sig: Signal) {
    let _ = killpg(pgid, sig);
}
