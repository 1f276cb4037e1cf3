//! `supervisor`: runs a jobs file on a pool of worker processes. The engine
//! is `callpool-pool`; this binary only reads the command line, prints, and
//! maps the outcome to an exit status.

mod cli;
mod ui;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use callpool_pool::expand::expand_env;
use callpool_pool::redact::Redactor;
use callpool_pool::rules::BodyRules;
use callpool_pool::{
    CheckError, Interrupt, Level, PoolConfig, RequestDefaults, RetryPolicy, RunError, Signals,
    check_jobs,
};
use clap::Parser;

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

fn main() -> ExitCode {
    // Before anything else, so that no signal meant for the run (USR1, say)
    // can hit its default action while the jobs file is being checked.
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("supervisor: error: cannot install signal handlers: {e}");
            return ExitCode::from(status::USAGE);
        }
    };
    let args = cli::Args::parse();
    match run(&args, signals) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("supervisor: error: {e:#}");
            ExitCode::from(status::USAGE)
        }
    }
}

fn run(args: &cli::Args, signals: Signals) -> anyhow::Result<u8> {
    let worker_cmd = worker_command(args)?;
    let defaults = request_defaults(args)?;

    let jobs = match check_jobs(&args.jobs, &defaults, &args.out) {
        Ok(j) => j,
        Err(e @ CheckError::Invalid { .. }) => {
            eprintln!("{e}");
            return Ok(status::USAGE);
        }
        Err(e) => bail!(e),
    };
    if jobs.existing > 0 && !args.resume && !args.overwrite {
        bail!(
            "{} already holds {} result{} of this job list: add --resume to skip the ok ones and run the rest, or --overwrite to run them all again",
            args.out.display(),
            jobs.existing,
            if jobs.existing == 1 { "" } else { "s" }
        );
    }

    let cfg = PoolConfig {
        workers: usize::from(args.workers),
        worker_cmd,
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
        prefetch: usize::from(args.prefetch),
        resume: args.resume,
        max_start_failures: 5,
    };
    let level = if args.quiet {
        Level::Error
    } else if args.verbose > 0 {
        Level::Debug
    } else {
        Level::Info
    };
    let mut reporter = ui::Plain { level };
    match callpool_pool::run(&cfg, &jobs, &defaults, signals, &mut reporter) {
        Ok(summary) => {
            ui::print_summary(&summary, &args.out, &rerun_hint());
            Ok(if summary.interrupted == Some(Interrupt::ApiStop) {
                status::API_STOP
            } else if summary.interrupted.is_some() {
                status::INTERRUPTED
            } else if summary.progress.failed > 0 {
                status::FAILED
            } else {
                status::OK
            })
        }
        Err(e @ RunError::WorkersFailing { .. }) => {
            bail!("{e}\nno more workers are started; check the worker command")
        }
        Err(e) => bail!(e),
    }
}

/// What the command line adds to every job, with `${NAME}` expanded.
fn request_defaults(args: &cli::Args) -> anyhow::Result<RequestDefaults> {
    let expand =
        |flag: &str, v: &str| expand_env(v).map_err(|e| anyhow::anyhow!("{flag} {v:?}: {e}"));
    let base_url = match &args.url {
        Some(u) => {
            let u = expand("--url", u)?;
            let parsed =
                url::Url::parse(&u).map_err(|e| anyhow::anyhow!("--url: not a valid URL: {e}"))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                bail!("--url: only http and https URLs are supported");
            }
            Some(parsed)
        }
        None => None,
    };
    let mut params = Vec::new();
    for p in &args.param {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("--param {p:?} is not KEY=VALUE"))?;
        params.push((k.to_string(), expand("--param", v)?));
    }
    let mut headers = Vec::new();
    for h in &args.header {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("--header {h:?} is not 'Name: value'"))?;
        let name = name.trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            bail!("--header {h:?}: {name:?} is not a valid header name");
        }
        headers.push((name.to_string(), expand("--header", value.trim())?));
    }
    if let Some(ua) = &args.user_agent {
        headers.push(("User-Agent".to_string(), expand("--user-agent", ua)?));
    }
    Ok(RequestDefaults {
        base_url,
        timeout: args.timeout,
        params,
        headers,
        redactor: Redactor::new(&args.redact),
    })
}

/// The worker program: `--worker-cmd`, or the http-worker next to us.
fn worker_command(args: &cli::Args) -> anyhow::Result<Vec<String>> {
    if let Some(cmd) = &args.worker_cmd {
        let argv = shlex::split(cmd)
            .filter(|v| !v.is_empty())
            .with_context(|| format!("--worker-cmd {cmd:?} is not a command line"))?;
        return Ok(argv);
    }
    let exe = std::env::current_exe().context("cannot find this executable's path")?;
    let worker: PathBuf = exe.with_file_name("http-worker");
    if !worker.exists() {
        bail!(
            "the http-worker was not found at {} (it is built beside the supervisor); give --worker-cmd",
            worker.display()
        );
    }
    let mut argv = vec![worker.to_string_lossy().into_owned()];
    if let Some(max) = args.max_body {
        argv.push("--max-body".into());
        argv.push(max.to_string());
    }
    Ok(argv)
}

/// This command line without `--overwrite`/`--resume`, for the hint printed
/// after an interrupted run.
fn rerun_hint() -> String {
    let words: Vec<String> = std::env::args()
        .filter(|a| a != "--resume" && a != "--overwrite")
        .collect();
    shlex::try_join(words.iter().map(String::as_str)).unwrap_or_else(|_| words.join(" "))
}
