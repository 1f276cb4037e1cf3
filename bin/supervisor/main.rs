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
mod manifest;
mod report_cmd;
mod runlog;
mod secrets;
mod settings;
mod ui;

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use callpool_pool::redact::REDACTED;
use callpool_pool::{CheckError, CheckedJobs, Interrupt, RunError, Signals, Summary, check_jobs};
use clap::{CommandFactory, Parser};
use settings::{Existing, Settings};
pub(crate) use settings::{jobs_input, request_defaults};

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

/// A run: settings, the check of the jobs file, the run, its summary.
fn run(args: &cli::Args, signals: Signals, paint: ui::Paint) -> anyhow::Result<u8> {
    let warn = |w: &str| eprintln!("supervisor: {} {w}", paint.yellow("warning:"));
    let settings = Settings::new(args, paint.0, &warn)?;
    let Some(jobs) = check(&settings, &warn)? else {
        return Ok(status::USAGE);
    };
    let mut console = ui::Console::new(settings.console(jobs.count));
    let pool = &settings.pool;
    let mut runlog =
        runlog::RunLog::start(&pool.out_dir, pool, jobs.count, pool.resume, settings.quiet);
    let outcome = callpool_pool::run(
        pool,
        &jobs,
        &settings.defaults,
        signals,
        &mut runlog.recorder(&mut console),
    );
    console.finish();
    // Writes the run log's end and the --report page on every way out:
    // done, interrupted, stopped, or an error.
    let mut at_end = report_cmd::AtEnd {
        runlog,
        report: args.report.clone(),
        out: pool.out_dir.clone(),
        quiet: settings.quiet,
        ended: None,
    };
    let summary = outcome.map_err(explain)?;
    let code = finish(&settings, &summary, paint)?;
    at_end.ended = Some((summary, code));
    Ok(code)
}

/// Checks the whole jobs file against the results folder: the run's plan,
/// or `None` when its problems were printed (exit 2).
fn check(settings: &Settings, warn: &dyn Fn(&str)) -> anyhow::Result<Option<CheckedJobs>> {
    let out = &settings.pool.out_dir;
    let file = &settings.jobs_file;
    let jobs = match check_jobs(
        file,
        &settings.input,
        &settings.defaults,
        out,
        settings.check,
    ) {
        Ok(j) => j,
        Err(e @ (CheckError::Invalid { .. } | CheckError::NotResults { .. })) => {
            eprintln!("{e}");
            return Ok(None);
        }
        Err(CheckError::Io { name, source }) if Path::new(&name) == out => bail!(
            "cannot look into the results folder {name}: {source}; check that it is a folder you may read, or choose another with --out"
        ),
        Err(CheckError::Io { name, source }) => bail!(
            "cannot read the jobs file {name}: {source}; check the path, or give - to read jobs from stdin"
        ),
    };
    settings.existing.allow(out, jobs.existing)?;
    if !settings.quiet {
        for w in &jobs.warnings {
            warn(w);
        }
        if settings.existing == Existing::Resume && jobs.existing > 0 {
            eprintln!("supervisor: {}", resume_line(&jobs.prior));
        }
    }
    Ok(Some(jobs))
}

/// A run that could not go on, with what to do about it.
fn explain(e: RunError) -> anyhow::Error {
    match e {
        e @ (RunError::WorkersFailing { .. } | RunError::WorkersDying { .. }) => anyhow!(
            "{e}\nno more workers are started: run the worker command by hand to see why it fails, or fix --worker-cmd"
        ),
        e @ RunError::Spawn { .. } => {
            anyhow!("{e}\ncheck that the program exists and is executable, or fix --worker-cmd")
        }
        e @ RunError::Output { .. } => anyhow!(
            "{e}\nthe results written so far are complete: free some space or fix the permissions, then rerun with --resume"
        ),
        e @ RunError::Jobs(_) => anyhow!(
            "{e}\nthe jobs file changed while it ran: keep it unchanged during a run, then rerun with --resume"
        ),
        // Its message names what is wrong and what to do.
        e @ RunError::Folder { .. } => anyhow!("{e}"),
        e => anyhow!(e),
    }
}

/// The summary of a finished run (on stderr, and in `--summary-json`),
/// and its exit status.
fn finish(settings: &Settings, summary: &Summary, paint: ui::Paint) -> anyhow::Result<u8> {
    let code = if summary.interrupted == Some(Interrupt::ApiStop) {
        status::API_STOP
    } else if summary.interrupted.is_some() {
        status::INTERRUPTED
    } else if summary.progress.failed > 0 {
        status::FAILED
    } else {
        status::OK
    };
    let out = &settings.pool.out_dir;
    let (hint, redacted) = rerun_hint(&settings.option_secrets);
    ui::print_summary(summary, out, &hint, paint);
    if summary.interrupted.is_some() && summary.not_run > 0 && !redacted.is_empty() {
        eprintln!(
            "supervisor: note: {REDACTED} in that command stands for the secret of {}, written on the command line: put it in an environment variable and pass it as ${{NAME}}",
            redacted.join(" and ")
        );
    }
    if let Some(path) = &settings.summary_json {
        let resume = (summary.interrupted.is_some() && summary.not_run > 0)
            .then(|| format!("{hint} --resume"));
        let json = ui::summary_json(summary, out, code, resume.as_deref());
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
