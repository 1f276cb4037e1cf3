//! Starting a worker process.
//!
//! Each worker gets its own process group, so that a kill reaches the
//! worker's own children and a Ctrl-C at the terminal (which signals the
//! supervisor's foreground group) never reaches it; and `PR_SET_PDEATHSIG`,
//! so that the worker dies with the supervisor even when the supervisor is
//! killed with SIGKILL and has no chance to clean up.
//!
//! The bundled http-worker is started from a **template** (issue 23, item
//! 3; gunicorn's `--preload`, Android's zygote): one http-worker started the
//! usual way, in template mode, that has loaded itself, parsed its options
//! and built its client, and then makes copies of itself on request
//! (`clone` with `CLONE_PARENT`, no exec), each the supervisor's own child,
//! with its own process group, parent-death signal and memory limit, as a
//! worker started directly has. Measured on the 2-core bench VM, an exec'd
//! http-worker costs the machine about 1-1.7 ms of CPU (exec, the dynamic
//! loader, CPU feature probes that trap to the hypervisor, relocations,
//! page faults) and blocks the supervisor's loop during its exec; a copy
//! costs a page-table copy. Custom `--worker-cmd` programs keep the exec
//! path, and so does the http-worker when the template cannot be started
//! or fails (or with `CALLPOOL_NO_TEMPLATE=1`, to compare).

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
    if sets_own_death_signal && let Some(sp) = template::spawn(argv, slot, memory_limit) {
        return Ok(sp);
    }
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

/// Ends the template of this supervisor's http-workers, if one runs, and
/// reaps it. Called when the run has no worker left (before its leftover
/// processes are looked for: the template is no worker's).
pub(crate) fn end_template() {
    template::end();
}

/// The supervisor's end of the template (see the module's header).
mod template {
    use std::io::{self, IoSlice, IoSliceMut};
    use std::os::fd::{AsFd, AsRawFd, OwnedFd};
    use std::os::unix::net::UnixStream;
    use std::os::unix::process::CommandExt;
    use std::process::{ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use nix::fcntl::OFlag;
    use nix::sys::signal::{Signal, kill};
    use nix::sys::socket::{
        AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, recvmsg, sendmsg, socketpair,
    };
    use nix::sys::wait::waitpid;
    use nix::unistd::{Pid, pipe2};

    use super::Spawned;

    /// The variable that starts an http-worker in template mode.
    pub(super) const TEMPLATE_ENV: &str = "CALLPOOL_TEMPLATE";
    /// Set (to anything) in the supervisor's environment: no template.
    const OFF_ENV: &str = "CALLPOOL_NO_TEMPLATE";
    /// A template that does not answer within this is given up (the exec
    /// path is used from then on).
    const ANSWER_WITHIN: Duration = Duration::from_secs(5);

    struct Template {
        argv: Vec<String>,
        pid: Pid,
        sock: UnixStream,
    }

    static TEMPLATE: Mutex<Option<Template>> = Mutex::new(None);
    /// Cleared for good once a template failed: the exec path is used.
    static USABLE: AtomicBool = AtomicBool::new(true);

    /// A copy of the template for `argv`, started on the first call; `None`
    /// when there is none to be had (the caller then execs the worker).
    pub(super) fn spawn(
        argv: &[String],
        slot: usize,
        memory_limit: Option<u64>,
    ) -> Option<Spawned> {
        if !USABLE.load(Ordering::Relaxed) || std::env::var_os(OFF_ENV).is_some() {
            return None;
        }
        let mut held = TEMPLATE.lock().unwrap_or_else(|e| e.into_inner());
        if held.as_ref().is_some_and(|t| t.argv != argv) {
            stop(held.take());
        }
        if held.is_none() {
            match start(argv) {
                Ok(t) => *held = Some(t),
                Err(_) => {
                    USABLE.store(false, Ordering::Relaxed);
                    return None;
                }
            }
        }
        let t = held.as_ref()?;
        match copy(t, slot, memory_limit) {
            Ok(sp) => Some(sp),
            Err(_) => {
                USABLE.store(false, Ordering::Relaxed);
                stop(held.take());
                None
            }
        }
    }

    pub(super) fn end() {
        let mut slot = TEMPLATE.lock().unwrap_or_else(|e| e.into_inner());
        stop(slot.take());
    }

    /// Closing its socket ends the template; it is killed too, in case it
    /// is stuck, and reaped (unless the loop's waitpid(-1) was first).
    fn stop(t: Option<Template>) {
        if let Some(t) = t {
            drop(t.sock);
            let _ = kill(t.pid, Signal::SIGKILL);
            let _ = waitpid(t.pid, None);
        }
    }

    /// Starts the template: the worker command itself, with its socket as
    /// stdin, its own process group, and the variables a worker gets (it
    /// sets its own parent-death signal, as a worker started directly
    /// does). It says `ready` on the socket once it has loaded.
    fn start(argv: &[String]) -> io::Result<Template> {
        let (mine, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(io::Error::from)?;
        let child = Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::from(theirs))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .env(TEMPLATE_ENV, "1")
            .env(
                "CALLPOOL_PROTOCOL",
                callpool_protocol::PROTOCOL_VERSION.to_string(),
            )
            .env("CALLPOOL_SUPERVISOR_PID", nix::unistd::getpid().to_string())
            .process_group(0)
            .spawn()?;
        let pid = Pid::from_raw(
            i32::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))?,
        );
        // Reaped by stop(), or by the loop's waitpid(-1) if it dies first.
        drop(child);
        let sock = UnixStream::from(mine);
        sock.set_read_timeout(Some(ANSWER_WITHIN))?;
        let t = Template {
            argv: argv.to_vec(),
            pid,
            sock,
        };
        let mut buf = [0u8; 16];
        match io::Read::read(&mut &t.sock, &mut buf) {
            Ok(5) if &buf[..5] == b"ready" => Ok(t),
            Ok(_) | Err(_) => {
                stop(Some(t));
                Err(io::Error::other("the worker template did not start"))
            }
        }
    }

    /// Asks the template for one copy: the memory limit (0: none), the
    /// slot, and the copy's stdin, stdout and stderr; the answer is its
    /// pid, or an errno.
    fn copy(t: &Template, slot: usize, memory_limit: Option<u64>) -> io::Result<Spawned> {
        let cloexec = OFlag::O_CLOEXEC;
        let (in_r, in_w) = pipe2(cloexec).map_err(io::Error::from)?;
        let (out_r, out_w) = pipe2(cloexec).map_err(io::Error::from)?;
        let (err_r, err_w) = pipe2(cloexec).map_err(io::Error::from)?;
        let limit = memory_limit.unwrap_or(0).to_le_bytes();
        let slot = (slot as u64).to_le_bytes();
        let fds = [in_r.as_raw_fd(), out_w.as_raw_fd(), err_w.as_raw_fd()];
        sendmsg::<()>(
            t.sock.as_raw_fd(),
            &[IoSlice::new(&limit), IoSlice::new(&slot)],
            &[ControlMessage::ScmRights(&fds)],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
        .map_err(io::Error::from)?;
        // The copy has its own; ours must go, or the pipes never see an end.
        drop((in_r, out_w, err_w));
        let mut answer = [0u8; 4];
        let mut iov = [IoSliceMut::new(&mut answer)];
        let got = recvmsg::<()>(t.sock.as_raw_fd(), &mut iov, None, MsgFlags::empty())
            .map_err(io::Error::from)?
            .bytes;
        if got != 4 {
            return Err(io::Error::other("the worker template went away"));
        }
        let raw = i32::from_le_bytes(answer);
        if raw <= 0 {
            return Err(io::Error::from_raw_os_error(-raw));
        }
        let [stdin, stdout, stderr] = [in_w, out_r, err_r].map(OwnedFd::from);
        let (stdin, stdout, stderr) = (
            ChildStdin::from(stdin),
            ChildStdout::from(stdout),
            ChildStderr::from(stderr),
        );
        for fd in [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()] {
            nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK))
                .map_err(io::Error::from)?;
        }
        Ok(Spawned {
            pid: Pid::from_raw(raw),
            stdin,
            stdout,
            stderr,
        })
    }
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
