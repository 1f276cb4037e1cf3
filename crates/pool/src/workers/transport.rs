//! How the loop talks to a worker: a child process over pipes, or a thread
//! over an in-process channel. Everything that differs between the two is
//! here; the loop asks a [`Transport`] to send a job, close the worker's
//! input or stop it, and never asks which kind it is.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Write};
use std::process::ChildStdin;
use std::sync::Arc;
use std::thread;

use crossbeam_channel::{Sender, unbounded};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

use crate::workers::event::Event;
use crate::workers::pipes::{PipeState, StderrPipe, StdoutPipe};
use crate::workers::poller::{EventSender, Poller};
use crate::workers::spawn::spawn_worker;
use crate::workers::thread::{ThreadWork, worker_main};

/// What the workers of a run are.
#[derive(Debug, Clone)]
pub enum Isolation {
    /// Each worker is a child process that speaks the protocol over pipes.
    Processes {
        /// The worker program and its arguments.
        argv: Vec<String>,
        /// The program sets `PR_SET_PDEATHSIG` itself from
        /// `CALLPOOL_SUPERVISOR_PID`, and its memory limit from
        /// `CALLPOOL_MEMORY_LIMIT` (as the http-worker does), so it can be
        /// started without running code between fork and exec.
        sets_own_death_signal: bool,
        /// A hard cap on each worker's address space (`RLIMIT_AS`,
        /// `--worker-memory-limit`).
        memory_limit: Option<u64>,
    },
    /// Each worker is a thread of the supervisor running this work.
    Threads(ThreadWork),
}

impl Isolation {
    /// What the workers run, for messages: the command line, or the
    /// threads' work.
    pub fn describe(&self) -> String {
        match self {
            Isolation::Processes { argv, .. } => argv.join(" "),
            Isolation::Threads(work) => format!("{} (threads)", work.name()),
        }
    }

    /// How many workers the loop starts per turn. A process start blocks
    /// the loop for its exec (about 1.6 ms on a busy 2-core machine), so
    /// processes start 8 at a time and the loop feeds the ready ones in
    /// between; a thread starts in microseconds, so all start at once.
    pub fn spawn_batch(&self) -> usize {
        match self {
            Isolation::Processes { .. } => 8,
            Isolation::Threads(_) => usize::MAX,
        }
    }

    /// The cap on each worker's address space, if any.
    pub fn memory_limit(&self) -> Option<u64> {
        match self {
            Isolation::Processes { memory_limit, .. } => *memory_limit,
            Isolation::Threads(_) => None,
        }
    }

    /// The name of a worker's id in tables: `pid` or `tid`.
    pub fn id_name(&self) -> &'static str {
        match self {
            Isolation::Processes { .. } => "pid",
            Isolation::Threads(_) => "tid",
        }
    }
}

pub use crate::who::Who;

/// Whether a worker told to stop is gone at once or later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// A process: signalled; it is gone when it is reaped.
    Later,
    /// A thread: abandoned; the loop is done with it now.
    Now,
}

/// Why a job could not be sent.
#[derive(Debug)]
pub enum SendFailed {
    /// The worker's thread has ended (its end is on its way to the loop as
    /// an event): the job was never received.
    Ended,
    /// Writing to a process's stdin failed.
    Io(io::Error),
}

/// A worker's end of the conversation.
pub(crate) enum Transport {
    /// A child process.
    Process(Pipes),
    /// A thread; `None` once its channel is closed.
    Thread(Option<Sender<Arc<[u8]>>>),
}

/// A child process's pipes.
pub(crate) struct Pipes {
    pid: Pid,
    stdin: Option<ChildStdin>,
    /// Job lines for its stdin that the pipe would not take yet (shared
    /// with the jobs, not copied), and how much of the first has gone.
    unsent: VecDeque<Arc<[u8]>>,
    sent: usize,
    /// Close stdin once `unsent` is sent.
    close_when_sent: bool,
    stdout: Option<StdoutPipe>,
    stderr: Option<StderrPipe>,
}

impl fmt::Debug for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Transport::Process(p) => write!(f, "Process({})", p.pid),
            Transport::Thread(tx) => write!(f, "Thread(open: {})", tx.is_some()),
        }
    }
}

/// Starts worker `id` for `slot`: a process whose pipes the poller watches
/// (tokens: the id, and which pipe in the lowest bit), or a thread.
pub(crate) fn start(
    isolation: &Isolation,
    id: u64,
    slot: usize,
    poller: &Poller,
    events: &EventSender,
) -> io::Result<(Who, Transport)> {
    match isolation {
        Isolation::Processes {
            argv,
            sets_own_death_signal,
            memory_limit,
        } => {
            let sp = spawn_worker(argv, slot, *sets_own_death_signal, *memory_limit)?;
            poller.watch(&sp.stdout, id << 1)?;
            poller.watch(&sp.stderr, (id << 1) | 1)?;
            let pipes = Pipes {
                pid: sp.pid,
                stdin: Some(sp.stdin),
                unsent: VecDeque::new(),
                sent: 0,
                close_when_sent: false,
                stdout: Some(StdoutPipe::sharing(sp.stdout, poller.long_lines().clone())),
                stderr: Some(StderrPipe::new(sp.stderr)),
            };
            Ok((Who::Process(sp.pid.as_raw()), Transport::Process(pipes)))
        }
        Isolation::Threads(work) => {
            let (tx, rx) = unbounded();
            let (tid_tx, tid_rx) = crossbeam_channel::bounded(1);
            let work = work.clone();
            let events = events.clone();
            thread::Builder::new()
                .name(format!("worker-{slot}"))
                // A worker's stack holds one HTTP call; the default 2 MiB
                // would be reserved (not used) 256 times over.
                .stack_size(512 * 1024)
                .spawn(move || {
                    let _ = tid_tx.send(nix::unistd::gettid().as_raw());
                    worker_main(id, slot, &work, &rx, &events);
                })?;
            let tid = tid_rx
                .recv()
                .map_err(|_| io::Error::other("the worker thread ended before it started"))?;
            Ok((Who::Thread(tid), Transport::Thread(Some(tx))))
        }
    }
}

impl Transport {
    /// Sends one job line without blocking. For a process, what the pipe
    /// does not take now is kept and sent by [`Transport::flush`].
    pub(crate) fn send(&mut self, line: &Arc<[u8]>) -> Result<(), SendFailed> {
        match self {
            Transport::Process(p) => {
                if p.stdin.is_none() {
                    return Err(SendFailed::Io(io::ErrorKind::BrokenPipe.into()));
                }
                p.unsent.push_back(line.clone());
                p.flush().map_err(SendFailed::Io)
            }
            Transport::Thread(tx) => {
                if tx.as_ref().is_some_and(|t| t.send(line.clone()).is_ok()) {
                    return Ok(());
                }
                // The thread is gone (a panic, say): no more jobs for it.
                *tx = None;
                Err(SendFailed::Ended)
            }
        }
    }

    /// Sends what is waiting for a process's stdin, as far as the pipe
    /// takes it.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        match self {
            Transport::Process(p) => p.flush(),
            Transport::Thread(_) => Ok(()),
        }
    }

    /// Whether bytes wait to be written.
    pub(crate) fn has_unsent(&self) -> bool {
        matches!(self, Transport::Process(p) if !p.unsent.is_empty())
    }

    /// Ends the worker's input (after what is unsent): "finish and exit".
    pub(crate) fn close_input(&mut self) {
        match self {
            Transport::Process(p) => {
                p.close_when_sent = true;
                if p.unsent.is_empty() {
                    p.stdin = None;
                }
            }
            Transport::Thread(tx) => *tx = None,
        }
    }

    /// Stops the worker now: its input closes, and SIGTERM (and SIGCONT,
    /// so that a stopped process can act on it) goes to a process's group
    /// (for a remote worker, its local ssh: the session ends, and the
    /// remote wrapper kills the remote group); a thread cannot be
    /// stopped, so it is abandoned: its channel closes and the loop
    /// forgets it.
    pub(crate) fn terminate(&mut self) -> Stopped {
        match self {
            Transport::Process(p) => {
                p.stdin = None;
                p.unsent.clear();
                p.sent = 0;
                signal_group(p.pid, Signal::SIGTERM);
                signal_group(p.pid, Signal::SIGCONT);
                Stopped::Later
            }
            Transport::Thread(tx) => {
                *tx = None;
                Stopped::Now
            }
        }
    }

    /// SIGKILL to a process's group (a thread is never still here).
    pub(crate) fn kill(&mut self) {
        if let Transport::Process(p) = self {
            signal_group(p.pid, Signal::SIGKILL);
        }
    }

    /// Reads what a process wrote on stdout (or stderr) into events.
    pub(crate) fn read(&mut self, id: u64, stderr: bool, out: &mut Vec<Event>) -> PipeState {
        let Transport::Process(p) = self else {
            return PipeState::Closed;
        };
        let state = match (stderr, &mut p.stdout, &mut p.stderr) {
            (false, Some(pipe), _) => pipe.drain(id, out),
            (true, _, Some(pipe)) => pipe.drain(id, p.pid, out),
            _ => return PipeState::Closed,
        };
        if state == PipeState::Closed {
            // Dropping the pipe closes it, which also takes it out of the
            // poller.
            if stderr {
                p.stderr = None;
            } else {
                p.stdout = None;
            }
        }
        state
    }

    /// Stops (`on` false) or starts again watching a process's stdout:
    /// a pipe waits unwatched while it is [`PipeState::Paused`].
    pub(crate) fn watch_stdout(&self, poller: &Poller, id: u64, on: bool) {
        if let Transport::Process(Pipes {
            stdout: Some(pipe), ..
        }) = self
        {
            if on {
                // Already watched (it was never paused) is fine.
                let _ = poller.watch(pipe.fd(), id << 1);
            } else {
                poller.unwatch(pipe.fd());
            }
        }
    }

    /// Bytes of a stdout line read and not yet complete.
    pub(crate) fn stdout_pending(&self) -> usize {
        match self {
            Transport::Process(Pipes {
                stdout: Some(pipe), ..
            }) => pipe.pending(),
            _ => 0,
        }
    }

    /// Whether a process's stderr may still have lines.
    pub(crate) fn has_stderr(&self) -> bool {
        matches!(self, Transport::Process(p) if p.stderr.is_some())
    }
}

impl Pipes {
    fn flush(&mut self) -> io::Result<()> {
        let Some(stdin) = self.stdin.as_mut() else {
            self.unsent.clear();
            self.sent = 0;
            return Ok(());
        };
        while let Some(line) = self.unsent.front() {
            match stdin.write(&line[self.sent..]) {
                Ok(n) => {
                    self.sent += n;
                    if self.sent == line.len() {
                        self.unsent.pop_front();
                        self.sent = 0;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.unsent.clear();
                    self.sent = 0;
                    return Err(e);
                }
            }
        }
        if self.unsent.is_empty() && self.close_when_sent {
            self.stdin = None;
        }
        Ok(())
    }
}

/// Signals a worker's whole process group; a group already gone is fine.
pub fn signal_group(pgid: Pid, sig: Signal) {
    let _ = killpg(pgid, sig);
}
