//! `supervisor`: runs a jobs file on a pool of worker processes. The engine
//! is `callpool-pool`; this binary only reads the command line, prints, and
//! maps the outcome to an exit status.

// Its engine (callpool-pool) and its results export use epoll, eventfd,
// prctl, O_TMPFILE and /proc.
#[cfg(not(target_os = "linux"))]
compile_error!(
    "callpool's supervisor needs Linux: it uses epoll, eventfd, prctl(PR_SET_PDEATHSIG), O_TMPFILE and /proc. Build and run it on Linux (a Linux container or VM will do)."
);

mod cli;
mod export;
mod hosts;
mod manifest;
mod report_cmd;
mod request;
mod runlog;
mod secrets;
mod ui;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use callpool_http::{Client, ClientConfig, DEFAULT_MAX_BODY, DEFAULT_USER_AGENT, Tls};
use callpool_pool::redact::REDACTED;
use callpool_pool::rules::BodyRules;
use callpool_pool::table::{InputFormat, JobsInput, TableOptions};
use callpool_pool::{
    CheckError, CheckFor, Interrupt, Isolation, JobFn, Level, PoolConfig, Recycle, RetryPolicy,
    RunError, Signals, ThreadWork, check_jobs,
};
use callpool_protocol::JobRequest;
use clap::{CommandFactory, Parser};
pub(crate) use request::request_defaults;

/// Exit statuses, as the README documents them.
mod status {
    /// Every job is ok.
    pub const OK: u8 = 0;
    /// At least one job failed.
    pub const FAILED: u8 = 1;
    /// Bad usage, a bad jobs file, or a run that could not go on.
    pub const USAGE: u8 = 2;
    /// Stopped because an answer matched `--stop-if`.
    pub const API_STOP: u8 = 3;
    /// Interrupted by SIGINT or SIGTERM.
    pub const INTERRUPTED: u8 = 130;
}

/// Buffers of 1 MiB and more (request bodies, long result lines) get
/// pages of their own that go back to the system when freed. glibc's
/// default raises that threshold to the largest block freed so far (up
/// to 32 MiB): after the first big body every later one comes from the
/// heaps of the thread that made it, which keep the memory after it is
/// freed; with a worker thread each (`--threads`), 300 jobs of 1 MiB
/// bodies then held 80 MB instead of 33 (bench/memory.sh).
#[allow(unsafe_code)]
fn big_buffers_back_to_the_system() {
    // SAFETY: mallopt only sets a tunable of the allocator; it is called
    // before any other thread exists and touches no Rust-owned memory.
    // A failure (another libc) leaves the default, which is only slower
    // to give memory back.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

fn main() -> ExitCode {
    big_buffers_back_to_the_system();
    // Before anything else, so that no signal meant for the run (USR1, say)
    // can hit its default action while the jobs file is being checked.
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "supervisor: error: cannot install signal handlers: {e}; the system may be out of resources (file descriptors, threads): try again"
            );
            return ExitCode::from(status::USAGE);
        }
    };
    let mut args = cli::Args::parse();
    if let Some(cli::Command::Export(export_args)) = &mut args.command {
        return ExitCode::from(export::main(export_args));
    }
    if let Some(cli::Command::Report(report_args)) = &args.command {
        return ExitCode::from(report_cmd::main(report_args));
    }
    if let Some(cli::Command::Completions { shell }) = args.command {
        let mut script = Vec::new();
        clap_complete::generate(shell, &mut cli::Args::command(), "supervisor", &mut script);
        let mut out = std::io::stdout().lock();
        return match out.write_all(&script).and_then(|()| out.flush()) {
            Ok(()) => ExitCode::from(status::OK),
            // `supervisor completions bash | head` is not an error.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(status::OK),
            Err(e) => {
                eprintln!("supervisor: error: cannot write the completion script: {e}");
                ExitCode::from(status::USAGE)
            }
        };
    }
    let paint = ui::Paint(ui::decide_color(args.color));
    match run(&args, signals, paint) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("supervisor: {} {e:#}", paint.red("error:"));
            ExitCode::from(status::USAGE)
        }
    }
}

fn run(args: &cli::Args, signals: Signals, paint: ui::Paint) -> anyhow::Result<u8> {
    let Some(jobs_file) = args.jobs.as_deref() else {
        bail!("no jobs file given: supervisor [OPTIONS] JOBS (see supervisor --help)");
    };
    // A resumed run rebuilds its requests from the folder's manifest.
    let mut args = std::borrow::Cow::Borrowed(args);
    if args.resume
        && let Some(m) = manifest::Manifest::read(&args.out)?
    {
        let a = args.to_mut();
        m.fill(&a.out, &mut a.input, &mut a.request, true)?;
    }
    let args = args.as_ref();
    let isolation = isolation(args)?;
    let hosts = hosts::hosts(args)?;
    let defaults = request_defaults(&args.request, false)?;
    let option_secrets = secrets::option_secrets(&args.request, &defaults);
    if !args.quiet {
        for w in secrets::warnings(&option_secrets) {
            eprintln!("supervisor: {} {w}", paint.yellow("warning:"));
        }
    }
    let input = jobs_input(&args.input, jobs_file)?;
    if let Some(path) = &args.summary_json {
        check_summary_path(path)?;
    }
    if let Some(path) = &args.report {
        report_cmd::check_output(path)?;
    }

    let want = CheckFor {
        resume: args.resume,
        dedup: args.dedup,
    };
    let jobs = match check_jobs(jobs_file, &input, &defaults, &args.out, want) {
        Ok(j) => j,
        Err(e @ (CheckError::Invalid { .. } | CheckError::NotResults { .. })) => {
            eprintln!("{e}");
            return Ok(status::USAGE);
        }
        Err(CheckError::Io { name, source }) if Path::new(&name) == args.out => bail!(
            "cannot look into the results folder {name}: {source}; check that it is a folder you may read, or choose another with --out"
        ),
        Err(CheckError::Io { name, source }) => bail!(
            "cannot read the jobs file {name}: {source}; check the path, or give - to read jobs from stdin"
        ),
    };
    if jobs.existing > 0 && !args.resume && !args.overwrite {
        bail!(
            "{} already holds {} result{} of this job list: add --resume to skip the ok ones and run the rest, or --overwrite to run them all again",
            args.out.display(),
            jobs.existing,
            if jobs.existing == 1 { "" } else { "s" }
        );
    }
    if !args.quiet {
        for w in &jobs.warnings {
            eprintln!("supervisor: {} {w}", paint.yellow("warning:"));
        }
    }
    if args.resume && !args.quiet && jobs.existing > 0 {
        eprintln!("supervisor: {}", resume_line(&jobs.prior));
    }
    let manifest = manifest::Manifest::of_run(
        jobs_file,
        &args.input,
        &args.request,
        &option_secrets,
        &secrets::environment(),
    )
    .to_bytes()?;

    let cfg = PoolConfig {
        workers: hosts.as_ref().map_or(usize::from(args.workers), |h| {
            h.list.iter().map(|p| p.workers).sum()
        }),
        hosts,
        isolation,
        out_dir: args.out.clone(),
        kill_grace: args.kill_grace,
        start_timeout: args.start_timeout,
        retry: RetryPolicy {
            retries: args.retries,
            on_status: args.retry_on_status.clone(),
            backoff_base: args.backoff_base,
            backoff_cap: args.backoff_cap,
            max_retry_after: args.max_retry_after,
            ..RetryPolicy::default()
        },
        rules: BodyRules {
            retry_if: args.retry_if.clone(),
            fail_if: args.fail_if.clone(),
            stop_if: args.stop_if.clone(),
        },
        rate: args.rate,
        dedup: args.dedup,
        recycle: Recycle {
            max_jobs: args.max_jobs_per_worker,
            jitter: args.max_jobs_jitter,
            max_rss: args.max_worker_rss,
        },
        prefetch: usize::from(args.prefetch),
        resume: args.resume,
        max_start_failures: 5,
        manifest: Some(manifest),
    };
    let level = if args.quiet {
        Level::Error
    } else if args.verbose > 0 {
        Level::Debug
    } else {
        Level::Info
    };
    let mut console = ui::Console::new(ui::Options {
        level,
        bar: !args.quiet && ui::stderr_is_terminal(),
        progress_every: (!args.progress_every.is_zero()).then_some(args.progress_every),
        color: paint.0,
        total: jobs.count,
    });
    let mut runlog = runlog::RunLog::start(&args.out, &cfg, jobs.count, args.resume, args.quiet);
    let outcome = callpool_pool::run(
        &cfg,
        &jobs,
        &defaults,
        signals,
        &mut runlog.recorder(&mut console),
    );
    console.finish();
    let mut at_end = report_cmd::AtEnd {
        runlog,
        report: args.report.clone(),
        out: args.out.clone(),
        quiet: args.quiet,
        ended: None,
    };
    let summary = match outcome {
        Ok(summary) => summary,
        Err(e @ (RunError::WorkersFailing { .. } | RunError::WorkersDying { .. })) => bail!(
            "{e}\nno more workers are started: run the worker command by hand to see why it fails, or fix --worker-cmd"
        ),
        Err(e @ RunError::Spawn { .. }) => {
            bail!("{e}\ncheck that the program exists and is executable, or fix --worker-cmd")
        }
        Err(e @ RunError::Output { .. }) => bail!(
            "{e}\nthe results written so far are complete: free some space or fix the permissions, then rerun with --resume"
        ),
        Err(e @ RunError::Jobs(_)) => bail!(
            "{e}\nthe jobs file changed while it ran: keep it unchanged during a run, then rerun with --resume"
        ),
        // Its message names what is wrong and what to do.
        Err(e @ RunError::Folder { .. }) => bail!("{e}"),
        Err(e) => bail!(e),
    };
    let code = if summary.interrupted == Some(Interrupt::ApiStop) {
        status::API_STOP
    } else if summary.interrupted.is_some() {
        status::INTERRUPTED
    } else if summary.progress.failed > 0 {
        status::FAILED
    } else {
        status::OK
    };
    at_end.ended = Some((summary.clone(), code));
    let (hint, redacted) = rerun_hint(&option_secrets);
    ui::print_summary(&summary, &args.out, &hint, paint);
    if summary.interrupted.is_some() && summary.not_run > 0 && !redacted.is_empty() {
        eprintln!(
            "supervisor: note: {REDACTED} in that command stands for the secret of {}, written on the command line: put it in an environment variable and pass it as ${{NAME}}",
            redacted.join(" and ")
        );
    }
    if let Some(path) = &args.summary_json {
        let resume = (summary.interrupted.is_some() && summary.not_run > 0)
            .then(|| format!("{hint} --resume"));
        let json = ui::summary_json(&summary, &args.out, code, resume.as_deref());
        let mut text = serde_json::to_string_pretty(&json)?;
        text.push('\n');
        ui::write_atomically(path, text.as_bytes()).with_context(|| {
            format!(
                "the run ended, but the summary could not be written to --summary-json {}",
                path.display()
            )
        })?;
    }
    Ok(code)
}

/// What `--resume` makes of the results already there, in one line.
fn resume_line(p: &callpool_pool::PriorCounts) -> String {
    let mut line = format!(
        "--resume: {} job{} already ok, skipped",
        p.same + p.unknown,
        if p.same + p.unknown == 1 { "" } else { "s" }
    );
    if p.changed > 0 {
        line.push_str(&format!(
            "; {} ok result{} answer{} a request that has changed since (an edited row), so {} run again",
            p.changed,
            if p.changed == 1 { "" } else { "s" },
            if p.changed == 1 { "s" } else { "" },
            if p.changed == 1 { "it is" } else { "they are" }
        ));
    }
    if p.unknown > 0 {
        line.push_str(&format!(
            "; {} of the skipped result{} predate{} request fingerprints, so a change to {} cannot be seen",
            p.unknown,
            if p.unknown == 1 { "" } else { "s" },
            if p.unknown == 1 { "s" } else { "" },
            if p.unknown == 1 { "its row" } else { "their rows" }
        ));
    }
    line
}

/// Fails before the run when the `--summary-json` file could not be written
/// at its end: its folder must exist and be a folder.
fn check_summary_path(path: &Path) -> anyhow::Result<()> {
    if path == Path::new("-") {
        return Ok(());
    }
    if path.file_name().is_none() || path.is_dir() {
        bail!(
            "--summary-json {}: give a file name, e.g. --summary-json summary.json",
            path.display()
        );
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "--summary-json {}: the folder {} does not exist; create it or choose another path",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

/// How the jobs file is read: its format (from `--input-format` or its
/// name) and, for a table, which column is what.
pub(crate) fn jobs_input(args: &cli::JobsArgs, file: &str) -> anyhow::Result<JobsInput> {
    let format = match args.input_format {
        Some(cli::InputFormatArg::Jsonl) => InputFormat::Jsonl,
        Some(cli::InputFormatArg::Csv) => InputFormat::Csv,
        Some(cli::InputFormatArg::Tsv) => InputFormat::Tsv,
        None => InputFormat::from_name(file),
    };
    let table_only = [
        ("--id-column", args.id_column.is_some()),
        ("--columns", args.columns.is_some()),
        ("--rename", !args.rename.is_empty()),
        ("--skip-empty", args.skip_empty),
        ("--delimiter", args.delimiter.is_some()),
    ];
    if format == InputFormat::Jsonl {
        if let Some((flag, _)) = table_only.iter().find(|(_, given)| *given) {
            bail!(
                "{flag} is for CSV and TSV jobs files, and {file} is read as JSON Lines: name it .csv or .tsv, or give --input-format csv"
            );
        }
    }
    let mut rename = Vec::new();
    for r in &args.rename {
        let (from, to) = r
            .split_once('=')
            .filter(|(f, t)| !f.is_empty() && !t.is_empty())
            .with_context(|| {
                format!(
                    "--rename {r:?} is not COLUMN=PARAM, e.g. --rename 'Street Address=address'"
                )
            })?;
        rename.push((from.to_string(), to.to_string()));
    }
    Ok(JobsInput {
        format,
        table: TableOptions {
            id_column: args.id_column.clone(),
            columns: args.columns.clone(),
            rename,
            skip_empty: args.skip_empty,
        },
        delimiter: args.delimiter,
        encoding: args.encoding,
    })
}

/// What the workers are: threads running the built-in HTTP worker, or
/// processes running `--worker-cmd` or the http-worker next to us.
fn isolation(args: &cli::Args) -> anyhow::Result<Isolation> {
    let threads = args.threads || args.isolation == Some(cli::IsolationKind::Threads);
    if !threads {
        check_worker_options(args)?;
        return Ok(Isolation::Processes {
            argv: worker_command(args)?,
            sets_own_death_signal: args.worker_cmd.is_none(),
            memory_limit: args.worker_memory_limit,
        });
    }
    for (flag, given) in [
        ("--max-worker-rss", args.max_worker_rss.is_some()),
        ("--worker-memory-limit", args.worker_memory_limit.is_some()),
    ] {
        if given {
            bail!(
                "{flag} limits each worker process's memory; worker threads share the supervisor's, which no per-worker limit can measure or cap: drop --threads or {flag}"
            );
        }
    }
    if args.worker_cmd.is_some() {
        bail!(
            "--threads runs the built-in HTTP worker on threads inside the supervisor; a --worker-cmd program can only run as separate processes: drop --threads or --worker-cmd"
        );
    }
    let config = client_config(args);
    // Checked once here, so that a bad setting is a usage error and not a
    // worker that fails to start, over and over. The TLS files and the
    // trust store are read here once too, and shared by every thread's
    // client.
    let tls = Tls::load(&config)?;
    tls.load_trust_store()?;
    Client::with_tls(config.clone(), &tls)?;
    Ok(Isolation::Threads(ThreadWork::new(
        "the built-in HTTP worker",
        move |_slot| {
            // One agent (connection pool) per thread, as per process.
            let client = Client::with_tls(config.clone(), &tls).map_err(|e| e.to_string())?;
            Ok(Box::new(move |req: &JobRequest| client.execute(req)) as JobFn)
        },
    )))
}

/// The worker program: `--worker-cmd`, or the http-worker next to us.
fn worker_command(args: &cli::Args) -> anyhow::Result<Vec<String>> {
    if let Some(cmd) = &args.worker_cmd {
        let argv = shlex::split(cmd)
            .filter(|v| !v.is_empty())
            .with_context(|| {
                format!(
                    "--worker-cmd {cmd:?} is not a command line (an unbalanced quote?); give the program and its arguments, e.g. --worker-cmd \"python3 worker.py --fast\""
                )
            })?;
        return Ok(argv);
    }
    let exe = std::env::current_exe().context(
        "cannot find this executable's path to start the http-worker beside it; give --worker-cmd",
    )?;
    let worker: PathBuf = exe.with_file_name("http-worker");
    if !worker.exists() {
        bail!(
            "the http-worker was not found at {}: it is built beside the supervisor (cargo build --release builds both); build it, or give --worker-cmd",
            worker.display()
        );
    }
    let mut argv = vec![worker.to_string_lossy().into_owned()];
    argv.extend(http_worker_options(args)?);
    Ok(argv)
}

/// The http-worker's options that follow the supervisor's.
fn http_worker_options(args: &cli::Args) -> anyhow::Result<Vec<String>> {
    let mut argv = Vec::new();
    if let Some(max) = args.max_body {
        argv.push("--max-body".into());
        argv.push(max.to_string());
    }
    if args.location_trusted {
        argv.push("--location-trusted".into());
    }
    for (flag, path) in tls_options(args) {
        // Absolute, so that they name the same files whatever the worker's
        // folder; checked to be readable by `check_worker_options`.
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        let Some(text) = path.to_str() else {
            bail!(
                "{flag} {}: the http-worker gets its options as text, and this path is not valid UTF-8: rename the file",
                path.display()
            );
        };
        argv.push(flag.into());
        argv.push(text.into());
    }
    Ok(argv)
}

/// The built-in HTTP worker's settings, as in each http-worker process.
fn client_config(args: &cli::Args) -> ClientConfig {
    ClientConfig {
        max_body: args.max_body.unwrap_or(DEFAULT_MAX_BODY),
        user_agent: DEFAULT_USER_AGENT.to_owned(),
        ca_file: args.cacert.clone(),
        cert_file: args.cert.clone(),
        key_file: args.key.clone(),
        location_trusted: args.location_trusted,
    }
}

/// The TLS options given (`--cacert`, `--cert`, `--key`), with their files.
fn tls_options(args: &cli::Args) -> Vec<(&'static str, &Path)> {
    [
        ("--cacert", &args.cacert),
        ("--cert", &args.cert),
        ("--key", &args.key),
    ]
    .into_iter()
    .filter_map(|(flag, path)| path.as_deref().map(|p| (flag, p)))
    .collect()
}

/// The first option given that only the http-worker takes, if any.
fn http_worker_flag(args: &cli::Args) -> Option<&'static str> {
    tls_options(args)
        .first()
        .map(|(f, _)| *f)
        .or(args.max_body.map(|_| "--max-body"))
        .or(args.location_trusted.then_some("--location-trusted"))
}

/// In process mode: the TLS options are the http-worker's, and its
/// settings (the TLS files, SSL_CERT_FILE) must be good before any worker
/// starts, as in thread mode: each worker reads them again.
fn check_worker_options(args: &cli::Args) -> anyhow::Result<()> {
    if args.worker_cmd.is_none() {
        let config = client_config(args);
        let tls = Tls::load(&config)?;
        tls.load_trust_store()?;
        Client::with_tls(config, &tls)?;
    } else if let Some(flag) = http_worker_flag(args) {
        bail!(
            "{flag} is an option of the built-in http-worker, which --worker-cmd replaces: give it to your worker program in --worker-cmd instead"
        );
    }
    Ok(())
}

/// This command line without `--overwrite`/`--resume`, for the hint printed
/// after an interrupted run, with each secret written literally shown as
/// `${NAME}` or `REDACTED` (see secrets.rs); and the options shown as
/// `REDACTED`.
fn rerun_hint(option_secrets: &[secrets::OptionSecret]) -> (String, Vec<String>) {
    let words: Vec<String> = std::env::args()
        .filter(|a| a != "--resume" && a != "--overwrite")
        .collect();
    let (words, redacted) =
        secrets::hide_in_command(&words, option_secrets, &secrets::environment());
    let hint =
        shlex::try_join(words.iter().map(String::as_str)).unwrap_or_else(|_| words.join(" "));
    (hint, redacted)
}
