//! `supervisor`: runs a jobs file on a pool of worker processes. The engine
//! is `callpool-pool`; this binary only reads the command line, prints, and
//! maps the outcome to an exit status.

mod cli;
mod ui;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use callpool_pool::{
    CheckError, Level, PoolConfig, RequestDefaults, RetryPolicy, RunError, Signals, check_jobs,
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
    let base_url = args
        .url
        .as_deref()
        .map(|u| url::Url::parse(u).with_context(|| format!("--url {u:?} is not a valid URL")))
        .transpose()?;
    let defaults = RequestDefaults {
        base_url,
        timeout: args.timeout,
        ..RequestDefaults::default()
    };

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
            ..RetryPolicy::default()
        },
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
            Ok(if summary.interrupted.is_some() {
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
