//! Starting a worker process.
//!
//! Each worker gets its own process group, so that a kill reaches the
//! worker's own children and a Ctrl-C at the terminal (which signals the
//! supervisor's foreground group) never reaches it; and `PR_SET_PDEATHSIG`,
//! so that the worker dies with the supervisor even when the supervisor is
//! killed with SIGKILL and has no chance to clean up.

use std::io;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::process::{ChildStderr, ChildStdin, ChildStdout, Command, Stdio};

use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::signal::Signal;
use nix::unistd::Pid;

/// A worker process that has just been started.
pub struct Spawned {
    /// Its process id, which is also its process group id.
    pub pid: Pid,
    /// Its stdin, in non-blocking mode so that a worker that stops reading
    /// can never block the supervisor's loop.
    pub stdin: ChildStdin,
    /// Its stdout, non-blocking: the loop reads it when it is readable.
    pub stdout: ChildStdout,
    /// Its stderr, non-blocking, likewise.
    pub stderr: ChildStderr,
}

/// Starts `argv` as the worker of `slot`, with three non-blocking pipes.
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
    sets_own_death_signal: bool,
    memory_limit: Option<u64>,
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
    if let Some(limit) = memory_limit {
        // A worker that sets up its own process limits (the http-worker)
        // reads it from here; for any other, the child sets it before exec.
        cmd.env("CALLPOOL_MEMORY_LIMIT", limit.to_string());
    }
    if !sets_own_death_signal {
        set_up_child(&mut cmd, parent, memory_limit);
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
    for fd in [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()] {
        fcntl(fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(io::Error::from)?;
    }
    Ok(Spawned {
        pid,
        stdin,
        stdout,
        stderr,
    })
}

#[allow(unsafe_code)]
pub(crate) fn set_up_child(cmd: &mut Command, parent: Pid, memory_limit: Option<u64>) {
    // SAFETY: the closure runs in the forked child of a multi-threaded
    // process, before exec, where only async-signal-safe calls are allowed
    // and nothing may allocate (another thread may have held the
    // allocator's lock at the fork). It makes three system calls (prctl,
    // getppid, setrlimit) and builds its errors from raw errno values,
    // which `io::Error` stores without allocating.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)
                .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
            // The supervisor may have died between fork and prctl; then the
            // death signal will never come, so give up on this child now.
            if nix::unistd::getppid() != parent {
                return Err(io::Error::from_raw_os_error(nix::libc::ESRCH));
            }
            if let Some(limit) = memory_limit {
                nix::sys::resource::setrlimit(
                    nix::sys::resource::Resource::RLIMIT_AS,
                    limit,
                    limit,
                )
                .map_err(|e| io::Error::from_raw_os_error(e as i32))?;
            }
            Ok(())
        });
    }
}
