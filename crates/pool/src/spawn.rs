//! Starting a worker process and the threads that drain its pipes.
//!
//! Each worker gets its own process group, so that a kill reaches the
//! worker's own children and a Ctrl-C at the terminal (which signals the
//! supervisor's foreground group) never reaches it; and `PR_SET_PDEATHSIG`,
//! so that the worker dies with the supervisor even when the supervisor is
//! killed with SIGKILL and has no chance to clean up.

use std::io::{self, BufReader, Read};
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command, Stdio};
use std::thread;

use callpool_protocol::{FromWorker, LineReader, MAX_LINE_BYTES};
use crossbeam_channel::Sender;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::event::Event;

/// The stack of each pipe-draining thread: they only frame and parse lines,
/// and a run may have hundreds of workers.
const READER_STACK: usize = 256 * 1024;

/// Stderr lines longer than this are cut; stderr is for people.
const MAX_STDERR_LINE: usize = 16 * 1024;

/// A worker process that has just been started.
pub struct Spawned {
    /// Its process id, which is also its process group id.
    pub pid: Pid,
    /// Its stdin, in non-blocking mode so that a worker that stops reading
    /// can never block the supervisor's loop.
    pub stdin: ChildStdin,
}

/// Starts `argv` as worker `id` in `slot` and starts the threads that turn
/// its stdout and stderr into [`Event`]s.
///
/// This must be called from the thread that runs the supervisor's loop:
/// `PR_SET_PDEATHSIG` fires when the thread that forked the child exits, so
/// it must be a thread that lives as long as the supervisor.
///
/// When `sets_own_death_signal` is true the worker sets `PR_SET_PDEATHSIG`
/// itself (the http-worker does, from `CALLPOOL_SUPERVISOR_PID`): then no
/// code runs between fork and exec, and the standard library starts it with
/// `posix_spawn` (vfork) instead of a full fork, which matters when hundreds
/// of workers start from a supervisor with hundreds of threads.
pub fn spawn_worker(
    argv: &[String],
    slot: usize,
    id: u64,
    events: &Sender<Event>,
    sets_own_death_signal: bool,
) -> io::Result<Spawned> {
    let (program, args) = argv
        .split_first()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty worker command"))?;
    let parent = nix::unistd::getpid();
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("CALLPOOL_SLOT", slot.to_string())
        .env(
            "CALLPOOL_PROTOCOL",
            callpool_protocol::PROTOCOL_VERSION.to_string(),
        )
        .env("CALLPOOL_SUPERVISOR_PID", parent.to_string())
        .process_group(0);
    if !sets_own_death_signal {
        set_parent_death_signal(&mut cmd, parent);
    }
    let mut child = cmd.spawn()?;
    let pid =
        Pid::from_raw(i32::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))?);
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(io::Error::other("worker pipes missing"));
    };
    // The child is reaped by the loop's waitpid(-1); dropping the handle
    // neither waits for nor kills it.
    drop(child);
    fcntl(stdin.as_fd(), FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(io::Error::from)?;

    let tx = events.clone();
    thread::Builder::new()
        .name(format!("w{slot}-stdout"))
        .stack_size(READER_STACK)
        .spawn(move || read_stdout(stdout, id, &tx))?;
    let tx = events.clone();
    thread::Builder::new()
        .name(format!("w{slot}-stderr"))
        .stack_size(READER_STACK)
        .spawn(move || read_stderr(stderr, id, pid, &tx))?;
    Ok(Spawned { pid, stdin })
}

#[allow(unsafe_code)]
fn set_parent_death_signal(cmd: &mut Command, parent: Pid) {
    // SAFETY: the closure runs in the forked child before exec and only
    // makes two async-signal-safe system calls (prctl, getppid).
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(io::Error::from)?;
            // The supervisor may have died between fork and prctl; then the
            // death signal will never come, so give up on this child now.
            if nix::unistd::getppid() != parent {
                return Err(io::Error::other("supervisor exited during spawn"));
            }
            Ok(())
        });
    }
}

/// Frames and parses the worker's stdout; parsing here, one thread per
/// worker, keeps that work off the supervisor's loop.
fn read_stdout(stdout: impl Read, id: u64, tx: &Sender<Event>) {
    let mut lines = LineReader::new(BufReader::with_capacity(64 * 1024, stdout), MAX_LINE_BYTES);
    loop {
        let msg = match lines.read_line() {
            Ok(Some([])) => continue,
            Ok(Some(line)) => FromWorker::parse(line).map_err(|e| {
                format!(
                    "wrote a stdout line that is not a protocol message ({e}): {:?}",
                    preview(line)
                )
            }),
            Ok(None) => break,
            Err(e) => Err(format!("stdout: {e}")),
        };
        let failed = msg.is_err();
        if tx.send(Event::Message { id, msg }).is_err() || failed {
            break;
        }
    }
    let _ = tx.send(Event::StdoutClosed { id });
}

/// Forwards stderr line by line. It is drained on its own thread so that a
/// chatty worker can never block on a full pipe; a "line" without newline
/// longer than [`MAX_STDERR_LINE`] is passed on in pieces.
fn read_stderr(mut stderr: impl Read, id: u64, pid: Pid, tx: &Sender<Event>) {
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    let send = |bytes: &[u8]| {
        let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
        let line = String::from_utf8_lossy(bytes).into_owned();
        tx.send(Event::Stderr { id, pid, line }).is_ok()
    };
    loop {
        let n = match stderr.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        };
        pending.extend_from_slice(&chunk[..n]);
        let mut start = 0;
        while let Some(pos) = pending[start..].iter().position(|&b| b == b'\n') {
            if !send(&pending[start..start + pos]) {
                return;
            }
            start += pos + 1;
        }
        pending.drain(..start);
        if pending.len() >= MAX_STDERR_LINE {
            if !send(&pending) {
                return;
            }
            pending.clear();
        }
    }
    if !pending.is_empty() {
        send(&pending);
    }
}

/// The start of a line, for error messages about it.
fn preview(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(120)]);
    if line.len() > 120 {
        format!("{text}...")
    } else {
        text.into_owned()
    }
}
