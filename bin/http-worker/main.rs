//! `http-worker`: the callpool HTTP worker, protocol v1.
//!
//! Writes one `ready` line, then reads job lines on stdin and answers each
//! with one `result` line on stdout, flushed at once. Every call goes
//! through one keep-alive [`Client`]. Messages for people go to stderr only.
//!
//! Stdin is read on a thread of its own, which hands the jobs to the main
//! thread, so that the end of stdin is seen even in the middle of a call
//! (see [`read_jobs`]).
//!
//! Exit status: 0 at end of stdin, also when it comes while jobs are still
//! unanswered (the supervisor is gone: nobody would read their results); 2
//! for a line that is not a valid job (or is longer than the protocol
//! allows) and for bad arguments; 1 when stdin or stdout fails (the
//! supervisor went away) and when the parent is gone at start.

// prctl(PR_SET_PDEATHSIG) ties the worker's life to the supervisor's.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "callpool's http-worker needs Linux: it uses prctl(PR_SET_PDEATHSIG) to die with its supervisor. Build and run it on Linux (a Linux container or VM will do)."
);

use std::{
    io::{self, Write},
    path::PathBuf,
    process::ExitCode,
    sync::{
        atomic::{AtomicUsize, Ordering},
        mpsc::{Receiver, SyncSender, sync_channel},
    },
    thread,
    time::Instant,
};

use callpool_http::{Client, ClientConfig, DEFAULT_USER_AGENT, ErrorKind, parse_byte_size};
use callpool_protocol::{
    FromWorker, JobRequest, LineReader, MAX_LINE_BYTES, PROTOCOL_VERSION, ReadLineError, ReadyInfo,
    ResultMsg, ToWorker,
};
use clap::Parser;

const NAME: &str = "http-worker";

/// Ties this process's life to the supervisor that started it: the
/// supervisor starts the http-worker with `posix_spawn` (no code between
/// fork and exec, far cheaper for hundreds of workers), so the worker sets
/// its own parent-death signal. Without `CALLPOOL_SUPERVISOR_PID` it ties
/// its life to whatever parent it has (below).
fn die_with_supervisor() -> Result<(), String> {
    let Some(pid) = std::env::var("CALLPOOL_SUPERVISOR_PID")
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    else {
        die_with_parent()?;
        return apply_memory_limit();
    };
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| format!("cannot set the parent-death signal: {e}"))?;
    // The supervisor may have died before the line above: then the signal
    // will never come.
    if nix::unistd::getppid().as_raw() != pid {
        return Err("the supervisor that started this worker is gone".into());
    }
    apply_memory_limit()
}

/// --worker-memory-limit: set here rather than between fork and exec, for
/// the same reason as the death signal; on another host, the supervisor
/// cannot set it at all.
fn apply_memory_limit() -> Result<(), String> {
    if let Some(limit) = std::env::var("CALLPOOL_MEMORY_LIMIT")
        .ok()
        .and_then(|l| l.parse::<u64>().ok())
    {
        use nix::sys::resource::{Resource, setrlimit};
        setrlimit(Resource::RLIMIT_AS, limit, limit)
            .map_err(|e| format!("cannot set the memory limit: {e}"))?;
    }
    Ok(())
}

/// Without `CALLPOOL_SUPERVISOR_PID` (on another host, where the parent is
/// a shell under sshd; or run by hand): die with whatever parent started
/// the worker. Over ssh no signal reaches the worker when the connection
/// dies, and its stdin may be held open by another process, so the parent
/// going away is the other sign that nobody reads its results. The parent
/// is noted before the prctl: if it has changed after, it died in between
/// and the signal will never come. (Linux sends the signal when the
/// *thread* that started the worker ends.)
fn die_with_parent() -> Result<(), String> {
    let parent = nix::unistd::getppid();
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| format!("cannot set the parent-death signal: {e}"))?;
    if nix::unistd::getppid() != parent {
        return Err("the process that started this worker is gone".into());
    }
    Ok(())
}

/// The callpool HTTP worker: runs the HTTP call of each job line read on
/// stdin and writes one result line per job on stdout (protocol v1).
#[derive(Parser)]
#[command(name = NAME, version)]
struct Args {
    /// Largest response body accepted, after gzip decoding; a longer one
    /// fails the job with `body_too_large`. Plain bytes, or a whole number
    /// with a unit: B, KB, MB, GB (powers of 1000), KiB, MiB, GiB (powers
    /// of 1024).
    #[arg(long, value_name = "BYTES", default_value = "16MiB", value_parser = parse_byte_size)]
    max_body: u64,

    /// User-Agent for jobs without a `user-agent` header of their own
    /// [default: callpool/<version>]. An empty string sends none.
    #[arg(long, value_name = "STRING")]
    user_agent: Option<String>,

    /// Also trust the CA certificates in FILE (PEM, one or more) for HTTPS,
    /// on top of the system's store (or SSL_CERT_FILE / SSL_CERT_DIR).
    #[arg(long, value_name = "FILE")]
    cacert: Option<PathBuf>,

    /// Client certificate for mutual TLS (PEM; may hold the key too).
    #[arg(long, value_name = "FILE")]
    cert: Option<PathBuf>,

    /// The private key of --cert (PEM, unencrypted).
    #[arg(long, value_name = "FILE", requires = "cert")]
    key: Option<PathBuf>,

    /// On a redirect to another origin (scheme, host or port), keep the
    /// `authorization` and `cookie` headers and those a job names in
    /// `secret_headers` instead of dropping them (curl's name).
    #[arg(long)]
    location_trusted: bool,
}

fn main() -> ExitCode {
    // Template mode (set by the supervisor, see template::serve): this
    // process loads once and makes the workers as copies of itself.
    let template = std::env::var_os(template::ENV).is_some();
    if let Err(e) = die_with_supervisor() {
        eprintln!("{NAME}: {e}");
        return ExitCode::from(1);
    }
    let args = Args::parse();
    let client = match Client::new(ClientConfig {
        max_body: args.max_body,
        user_agent: args
            .user_agent
            .unwrap_or_else(|| DEFAULT_USER_AGENT.to_owned()),
        ca_file: args.cacert,
        cert_file: args.cert,
        key_file: args.key,
        location_trusted: args.location_trusted,
    }) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("{NAME}: {e}");
            return ExitCode::from(2);
        }
    };
    if template {
        match template::serve() {
            // The template's input ended: the run needs no more workers.
            Ok(false) => return ExitCode::SUCCESS,
            // A copy: from here on an ordinary worker.
            Ok(true) => {}
            Err(e) => {
                eprintln!("{NAME}: worker template: {e}");
                return ExitCode::from(1);
            }
        }
    }
    match run(&client) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fatal::BadInput(message)) => {
            eprintln!("{NAME}: {message}");
            ExitCode::from(2)
        }
        Err(Fatal::Io(message)) => {
            eprintln!("{NAME}: {message}");
            ExitCode::from(1)
        }
    }
}

/// Why the worker stops before the end of its input.
enum Fatal {
    /// The supervisor sent something that is not a job line.
    BadInput(String),
    /// stdin or stdout failed.
    Io(String),
}

/// What the stdin thread hands to the main thread: a job to run, or why
/// the input ends there.
/// A job without a request (it has `args`) is handed over as `None`, and
/// answered `unsupported_job`.
type Handed = Result<(String, Option<JobRequest>), Fatal>;

/// How many jobs read from stdin may wait for the main thread. The
/// supervisor never has more than `--prefetch` jobs (at most 64) unanswered
/// on a worker, so under it the stdin thread never waits for room and sees
/// the end of stdin as soon as it comes. A program that writes more jobs at
/// once is held back here, as the pipe held it back before.
const QUEUE: usize = 128;

/// Jobs handed to the main thread whose call is not over: running or
/// waiting in the channel. Only the stdin thread adds; only the main thread
/// subtracts, as soon as a call is over and before its result is written:
/// the supervisor closes stdin right after reading the last result, and
/// then the count must already be 0. So when the stdin thread, at the end
/// of stdin, reads 0, no call is running and none can start any more; the
/// main thread at most writes a last result, then its loop ends.
static UNANSWERED: AtomicUsize = AtomicUsize::new(0);

fn run(client: &Client) -> Result<(), Fatal> {
    // One buffer for every output line: a whole line is serialized into it
    // (so that its length can be checked against the protocol limit), then
    // written with one `write_all`. Stdout is line-buffered already, so a
    // BufWriter on top would only add a copy; the flush after each line is
    // what the supervisor relies on.
    let mut line = Vec::with_capacity(64 * 1024);
    let mut out = io::stdout().lock();

    let (handed, jobs): (SyncSender<Handed>, Receiver<Handed>) = sync_channel(QUEUE);
    let eof_ends_calls = !stdin_is_a_file();
    let reader = thread::Builder::new()
        .name("stdin".to_owned())
        .spawn(move || read_jobs(&handed, eof_ends_calls))
        .map_err(|e| Fatal::Io(format!("cannot start the thread that reads stdin: {e}")))?;

    let ready = FromWorker::Ready(ReadyInfo {
        protocol: PROTOCOL_VERSION,
        worker: Some(NAME.to_owned()),
        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
    });
    encode(&mut line, &ready);
    send(&mut out, &line)?;

    // Ends when the stdin thread has ended with no call to make.
    for job in &jobs {
        let (id, request) = job?;

        let started = Instant::now();
        let outcome = match &request {
            Some(request) => client.execute(request),
            None => Err(ErrorKind::args_unsupported(NAME)),
        };
        let elapsed_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
        UNANSWERED.fetch_sub(1, Ordering::SeqCst);

        let (response, error) = match outcome {
            Ok(response) => (Some(response), None),
            Err(error) => (None, Some(error)),
        };
        let msg = FromWorker::Result(ResultMsg {
            id,
            response,
            value: None,
            error,
            elapsed_ms: Some(elapsed_ms),
        });
        encode(&mut line, &msg);
        if line.len() > MAX_LINE_BYTES {
            let FromWorker::Result(r) = msg else {
                unreachable!("msg is built as a result above")
            };
            let error = ErrorKind::BodyTooLarge.job_error(format!(
                "the response is {} bytes as JSON, over the protocol's line limit of \
                 {MAX_LINE_BYTES} bytes; lower the worker's max body size",
                line.len()
            ));
            let msg = FromWorker::Result(ResultMsg {
                id: r.id,
                response: None,
                value: None,
                error: Some(error),
                elapsed_ms: r.elapsed_ms,
            });
            encode(&mut line, &msg);
        }
        send(&mut out, &line)?;
    }
    reader
        .join()
        .map_err(|_| Fatal::Io("reading stdin: the thread that reads it panicked".to_owned()))
}

/// The stdin thread: reads job lines, parses them and hands the jobs to
/// the main thread in order (blank lines are skipped).
///
/// At the end of stdin, or when stdin cannot be read, with jobs still
/// unanswered, it ends the process at once with status 0, in the middle of
/// a call if one is running: the v1 supervisor closes a worker's stdin only
/// when the worker holds no job, so this means the supervisor, or the ssh
/// connection to it, is gone, and nobody will read the results. With no job
/// unanswered it just ends, and so does the main thread's loop (status 0),
/// or the main thread reports the read error (status 1), as before.
///
/// `eof_ends_calls` is false when stdin is a regular file (`http-worker <
/// jobs.jsonl`): a file is no connection, its end is only the end of the
/// jobs, and every job in it is answered.
///
/// A line that is not a job is handed over as the error the main thread
/// reports when it gets there (status 2, after answering the jobs before
/// it); nothing more is handed over, but stdin is still watched for its end.
fn read_jobs(handed: &SyncSender<Handed>, eof_ends_calls: bool) {
    let mut input = LineReader::new(io::stdin().lock(), MAX_LINE_BYTES);
    let bad_line = loop {
        let bytes = match input.read_line() {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                stdin_ended(eof_ends_calls);
                return;
            }
            Err(e @ ReadLineError::TooLong { .. }) => break format!("invalid job line: {e}"),
            Err(ReadLineError::Io(e)) => {
                stdin_ended(eof_ends_calls);
                let _ = handed.send(Err(Fatal::Io(format!("reading stdin: {e}"))));
                return;
            }
        };
        if bytes.trim_ascii().is_empty() {
            continue;
        }
        let job = match ToWorker::parse(bytes) {
            Ok(ToWorker::Job { id, request, .. }) => (id, request),
            Err(e) => break format!("invalid job line ({e}): {}", excerpt(bytes)),
        };
        // Counted before it is handed over, so that the main thread never
        // subtracts first.
        UNANSWERED.fetch_add(1, Ordering::SeqCst);
        if handed.send(Ok(job)).is_err() {
            return; // the main thread has stopped: the process is ending
        }
    };
    if handed.send(Err(Fatal::BadInput(bad_line))).is_err() || !eof_ends_calls {
        return;
    }
    // Still watch for the end of stdin: the jobs before the bad line are
    // unanswered until the main thread gets to it.
    drop(input);
    let _ = io::copy(&mut io::stdin().lock(), &mut io::sink());
    stdin_ended(true);
}

/// Stdin has ended or failed: exits at once if that ends calls and jobs are
/// unanswered. Their results would go nowhere, and waiting for them could
/// take a whole `timeout_ms`.
fn stdin_ended(eof_ends_calls: bool) {
    let unanswered = UNANSWERED.load(Ordering::SeqCst);
    if eof_ends_calls && unanswered > 0 {
        // Not `eprintln!`, which panics when stderr is gone too.
        let _ = writeln!(
            io::stderr(),
            "{NAME}: stdin ended with {unanswered} job(s) not answered yet; exiting without them"
        );
        std::process::exit(0);
    }
}

/// Whether stdin is a regular file, not a pipe or a socket.
fn stdin_is_a_file() -> bool {
    use nix::sys::stat::{SFlag, fstat};
    fstat(io::stdin())
        .is_ok_and(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG)
}

/// Serializes `msg` and a newline into `line`, replacing its content.
fn encode(line: &mut Vec<u8>, msg: &FromWorker) {
    line.clear();
    serde_json::to_writer(&mut *line, msg)
        .expect("worker messages have string keys and valid raw JSON, so they serialize");
    line.push(b'\n');
}

/// Writes one whole line to stdout and flushes it.
fn send(out: &mut impl Write, line: &[u8]) -> Result<(), Fatal> {
    out.write_all(line)
        .and_then(|()| out.flush())
        .map_err(|e| Fatal::Io(format!("writing stdout: {e}")))
}

/// The start of a bad input line, for the error message.
fn excerpt(bytes: &[u8]) -> String {
    const MAX: usize = 200;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX)]);
    if bytes.len() > MAX {
        format!("{text}...")
    } else {
        text.into_owned()
    }
}

/// The template of the supervisor's workers (crates/pool/src/spawn.rs):
/// started with its stdin a `SOCK_SEQPACKET` socket to the supervisor, it
/// has done everything a worker does before its first job but the `ready`
/// line (loaded, parsed its options, built its client: no connection yet,
/// so no copy shares one), says `ready` on the socket, then makes one copy
/// of itself per request. A copy skips the exec, the dynamic loader and the
/// start-up of the runtime, which is what starting hundreds of workers
/// costs (issue 23, item 3).
mod template {
    use std::io::{IoSlice, IoSliceMut};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    use nix::errno::Errno;
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg, sendmsg};
    use nix::unistd::{Pid, dup2_stderr, dup2_stdin, dup2_stdout};

    /// The variable that selects template mode.
    pub(super) const ENV: &str = "CALLPOOL_TEMPLATE";
    /// Its stdin.
    const SOCK: RawFd = 0;

    /// Serves copy requests until the socket ends: `Ok(false)` in the
    /// template then, `Ok(true)` in a copy, which has become a worker (its
    /// own process group, parent-death signal, memory limit, and the
    /// request's pipes as stdin, stdout and stderr) and goes on as one.
    ///
    /// A request is 16 bytes, the memory limit (0: none) and the worker's
    /// slot, with three file descriptors: the copy's stdin, stdout and
    /// stderr. Exactly one answer
    /// goes back per request: 4 bytes, the copy's pid, sent by the copy
    /// itself once its process group and parent-death signal are set (so
    /// that the supervisor never signals a group that does not exist yet),
    /// or minus an errno, from the template when it could not copy itself,
    /// or from the copy when it could not set itself up (it then exits).
    pub(super) fn serve() -> Result<bool, String> {
        // Copying a process with other threads would copy their locks in
        // whatever state they are: refuse (the supervisor then execs).
        let threads = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|s| {
                s.lines()
                    .find_map(|l| l.strip_prefix("Threads:").map(|n| n.trim().to_owned()))
            });
        if threads.as_deref() != Some("1") {
            return Err(format!("not single-threaded ({threads:?} threads)"));
        }
        send(b"ready").map_err(|e| format!("cannot answer the supervisor: {e}"))?;
        loop {
            let (mut limit, mut slot) = ([0u8; 8], [0u8; 8]);
            let mut space = nix::cmsg_space!([RawFd; 3]);
            let (bytes, fds) = {
                let mut iov = [IoSliceMut::new(&mut limit), IoSliceMut::new(&mut slot)];
                let msg = match recvmsg::<()>(
                    SOCK,
                    &mut iov,
                    Some(&mut space),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                ) {
                    Ok(m) => m,
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(format!("reading a request: {e}")),
                };
                let mut fds: Vec<OwnedFd> = Vec::new();
                if let Ok(cmsgs) = msg.cmsgs() {
                    for c in cmsgs {
                        if let ControlMessageOwned::ScmRights(raw) = c {
                            fds.extend(raw.into_iter().map(owned));
                        }
                    }
                }
                (msg.bytes, fds)
            };
            if bytes == 0 {
                return Ok(false); // the supervisor closed its end
            }
            let Ok([stdin, stdout, stderr]) = <[OwnedFd; 3]>::try_from(fds) else {
                let _ = answer(-(Errno::EINVAL as i32));
                continue;
            };
            match clone_sibling() {
                Ok(None) => {
                    let (limit, slot) = (u64::from_le_bytes(limit), u64::from_le_bytes(slot));
                    become_worker(limit, stdin, stdout, stderr);
                    set_worker_env(slot, limit);
                    return Ok(true);
                }
                Ok(Some(_)) => {} // the copy answers; its pipes go with this scope
                Err(e) => {
                    let _ = answer(-(e as i32));
                }
            }
        }
    }

    /// The variables a worker started directly gets (docs/protocol.md §2)
    /// that differ from the template's: its slot and memory limit, and no
    /// template mode.
    #[allow(unsafe_code)]
    fn set_worker_env(slot: u64, limit: u64) {
        // SAFETY: the copy has one thread (the template had one, and the
        // copy has started none yet), so nothing reads the environment
        // while it changes.
        unsafe {
            std::env::set_var("CALLPOOL_SLOT", slot.to_string());
            std::env::remove_var(ENV);
            if limit > 0 {
                std::env::set_var("CALLPOOL_MEMORY_LIMIT", limit.to_string());
            }
        }
    }

    /// Takes a descriptor received with SCM_RIGHTS.
    #[allow(unsafe_code)]
    fn owned(fd: RawFd) -> OwnedFd {
        // SAFETY: the kernel has just installed `fd` in this process for
        // this message; nothing else holds or closes it.
        unsafe { OwnedFd::from_raw_fd(fd) }
    }

    fn send(bytes: &[u8]) -> nix::Result<usize> {
        sendmsg::<()>(
            SOCK,
            &[IoSlice::new(bytes)],
            &[],
            MsgFlags::MSG_NOSIGNAL,
            None,
        )
    }

    fn answer(code: i32) -> nix::Result<usize> {
        send(&code.to_le_bytes())
    }

    /// In the copy: what the supervisor does for a worker it starts itself
    /// (spawn.rs), then the request's pipes in place of the template's
    /// stdin (the socket, closed by that), stdout and stderr. A step that
    /// fails is answered with its errno, and the copy exits.
    fn become_worker(limit: u64, stdin: OwnedFd, stdout: OwnedFd, stderr: OwnedFd) {
        let setup = || -> nix::Result<()> {
            nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0))?;
            // Cleared by the copy, like every fork's: set again, tied to
            // the supervisor, whose child this copy is (CLONE_PARENT).
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            let supervisor = std::env::var("CALLPOOL_SUPERVISOR_PID")
                .ok()
                .and_then(|p| p.parse::<i32>().ok());
            if supervisor != Some(nix::unistd::getppid().as_raw()) {
                return Err(Errno::ESRCH); // it is gone: no signal would come
            }
            if limit > 0 {
                use nix::sys::resource::{Resource, setrlimit};
                setrlimit(Resource::RLIMIT_AS, limit, limit)?;
            }
            Ok(())
        };
        if let Err(e) = setup() {
            let _ = answer(-(e as i32));
            std::process::exit(1);
        }
        let _ = answer(nix::unistd::getpid().as_raw());
        let moved = dup2_stdin(&stdin)
            .and_then(|()| dup2_stdout(&stdout))
            .and_then(|()| dup2_stderr(&stderr));
        if moved.is_err() {
            std::process::exit(1);
        }
        drop((stdin, stdout, stderr));
        debug_assert!(SOCK == std::io::stdin().as_raw_fd());
    }

    /// A copy of this process that is its parent's child, not its own
    /// (`clone(CLONE_PARENT | SIGCHLD)`, as `fork` but for the parent):
    /// the supervisor waits for it, and its parent-death signal follows
    /// the supervisor. `None` in the copy, its pid in the template.
    #[allow(unsafe_code)]
    fn clone_sibling() -> Result<Option<i32>, Errno> {
        // SAFETY: as `fork`: the copy gets its own copy of this process's
        // memory, and runs on from here. This process has one thread (see
        // serve), so no lock is held by a thread the copy lacks. No new
        // stack and no shared memory (no CLONE_VM): the raw system call is
        // as safe as the libc wrapper of fork, which it skips only for its
        // atfork handlers (none registered here) and for updating the TID
        // glibc keeps for the main thread: glibc (>= 2.34) asks the kernel
        // for the TID where it signals its own thread (raise, abort), and
        // Rust's std uses no pthread mutex that records an owner.
        let r = unsafe {
            libc::syscall(
                libc::SYS_clone,
                (libc::CLONE_PARENT | libc::SIGCHLD) as libc::c_ulong,
                0usize,
                0usize,
                0usize,
                0usize,
            )
        };
        match r {
            -1 => Err(Errno::last()),
            0 => Ok(None),
            pid => Ok(Some(pid as i32)),
        }
    }
}
