//! `http-worker`: the callpool HTTP worker, protocol v1.
//!
//! Writes one `ready` line, then reads job lines on stdin and answers each
//! with one `result` line on stdout, flushed at once. Every call goes
//! through one keep-alive [`Client`]. Messages for people go to stderr only.
//!
//! Exit status: 0 at end of stdin; 2 for a line that is not a valid job (or
//! is longer than the protocol allows) and for bad arguments; 1 when stdin
//! or stdout fails (the supervisor went away).

// prctl(PR_SET_PDEATHSIG) ties the worker's life to the supervisor's.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "callpool's http-worker needs Linux: it uses prctl(PR_SET_PDEATHSIG) to die with its supervisor. Build and run it on Linux (a Linux container or VM will do)."
);

use std::{
    io::{self, Write},
    path::PathBuf,
    process::ExitCode,
    time::Instant,
};

use callpool_http::{Client, ClientConfig, DEFAULT_USER_AGENT, ErrorKind, parse_byte_size};
use callpool_protocol::{
    FromWorker, LineReader, MAX_LINE_BYTES, PROTOCOL_VERSION, ReadLineError, ReadyInfo, ResultMsg,
    ToWorker,
};
use clap::Parser;

const NAME: &str = "http-worker";

/// Ties this process's life to the supervisor that started it: the
/// supervisor starts the http-worker with `posix_spawn` (no code between
/// fork and exec, far cheaper for hundreds of workers), so the worker sets
/// its own parent-death signal. Without `CALLPOOL_SUPERVISOR_PID` (run by
/// hand) nothing is done.
fn die_with_supervisor() -> Result<(), String> {
    let Some(pid) = std::env::var("CALLPOOL_SUPERVISOR_PID")
        .ok()
        .and_then(|p| p.parse::<i32>().ok())
    else {
        return Ok(());
    };
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
        .map_err(|e| format!("cannot set the parent-death signal: {e}"))?;
    // The supervisor may have died before the line above: then the signal
    // will never come.
    if nix::unistd::getppid().as_raw() != pid {
        return Err("the supervisor that started this worker is gone".into());
    }
    // --worker-memory-limit: set here rather than between fork and exec,
    // for the same reason as the death signal.
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
}

fn main() -> ExitCode {
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
    }) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("{NAME}: {e}");
            return ExitCode::from(2);
        }
    };
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

fn run(client: &Client) -> Result<(), Fatal> {
    // One buffer for every output line: a whole line is serialized into it
    // (so that its length can be checked against the protocol limit), then
    // written with one `write_all`. Stdout is line-buffered already, so a
    // BufWriter on top would only add a copy; the flush after each line is
    // what the supervisor relies on.
    let mut line = Vec::with_capacity(64 * 1024);
    let mut out = io::stdout().lock();

    let ready = FromWorker::Ready(ReadyInfo {
        protocol: PROTOCOL_VERSION,
        worker: Some(NAME.to_owned()),
        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
    });
    encode(&mut line, &ready);
    send(&mut out, &line)?;

    let mut input = LineReader::new(io::stdin().lock(), MAX_LINE_BYTES);
    loop {
        let bytes = match input.read_line() {
            Ok(Some(bytes)) => bytes,
            Ok(None) => return Ok(()),
            Err(e @ ReadLineError::TooLong { .. }) => {
                return Err(Fatal::BadInput(format!("invalid job line: {e}")));
            }
            Err(ReadLineError::Io(e)) => return Err(Fatal::Io(format!("reading stdin: {e}"))),
        };
        if bytes.trim_ascii().is_empty() {
            continue;
        }
        let ToWorker::Job { id, request } = ToWorker::parse(bytes)
            .map_err(|e| Fatal::BadInput(format!("invalid job line ({e}): {}", excerpt(bytes))))?;

        let started = Instant::now();
        let outcome = client.execute(&request);
        let elapsed_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;

        let (response, error) = match outcome {
            Ok(response) => (Some(response), None),
            Err(error) => (None, Some(error)),
        };
        let msg = FromWorker::Result(ResultMsg {
            id,
            response,
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
                error: Some(error),
                elapsed_ms: r.elapsed_ms,
            });
            encode(&mut line, &msg);
        }
        send(&mut out, &line)?;
    }
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
