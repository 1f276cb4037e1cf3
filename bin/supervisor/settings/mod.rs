//! The run's settings: the parsed command line (cli.rs) turned, in this
//! one place, into checked settings (ripgrep's `lowargs` -> `hiargs`).
//! Every rule that joins options is decided here once: which options
//! conflict (workers.rs, hosts.rs; clap refuses the simple pairs in
//! cli.rs), what the workers are and how many, the hosts, the request
//! defaults (request.rs), what to do with results already there, and the
//! engine's [`PoolConfig`], which is built nowhere else. Each mistake is a
//! usage error naming the flag, or the FILE:LINE.

mod hosts;
mod request;
mod workers;

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use callpool_pool::options::BodyRules;
use callpool_pool::options::{InputFormat, JobsInput, TableOptions};
use callpool_pool::{CheckFor, Level, PoolConfig, Recycle, RequestDefaults, RetryPolicy};

pub(crate) use request::request_defaults;

use crate::{cli, manifest, secrets, ui};

/// Failures to start in a row (no `ready`, or a death before the first
/// job) after which the run gives up (or, with `--host`, a host is marked
/// down). The restart backoff between them doubles from 100 ms, so five
/// ride out about 1.5 s of a passing trouble (a busy port, a slow disk, a
/// host that reboots its sshd), and a broken `--worker-cmd` stops the run
/// within seconds instead of restarting it for ever.
pub(crate) const MAX_START_FAILURES: u32 = 5;

/// What to do with results of this job list already in the folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Existing {
    /// Neither `--resume` nor `--overwrite`: refuse to run over them.
    Refuse,
    /// `--resume`: skip the jobs they answer, run the rest.
    Resume,
    /// `--overwrite`: run every job again.
    Overwrite,
}

impl Existing {
    fn of(args: &cli::Args) -> Self {
        // clap refuses both at once.
        if args.resume {
            Existing::Resume
        } else if args.overwrite {
            Existing::Overwrite
        } else {
            Existing::Refuse
        }
    }

    /// Whether a run may start with `existing` results of its list in
    /// `out`; the message says how to choose.
    pub(crate) fn allow(self, out: &Path, existing: u64) -> anyhow::Result<()> {
        if existing > 0 && self == Existing::Refuse {
            bail!(
                "{} already holds {} result{} of this job list: add --resume to skip the ok ones and run the rest, or --overwrite to run them all again",
                out.display(),
                existing,
                if existing == 1 { "" } else { "s" }
            );
        }
        Ok(())
    }
}

/// Everything a run needs, checked.
pub(crate) struct Settings {
    /// The jobs file as given (`-`: stdin).
    pub jobs_file: String,
    /// How it is read.
    pub input: JobsInput,
    /// What every job gets from the command line.
    pub defaults: RequestDefaults,
    /// What the check works out besides the jobs' validity.
    pub check: CheckFor,
    /// What to do with results already there.
    pub existing: Existing,
    /// The engine's settings.
    pub pool: PoolConfig,
    /// `--summary-json`: its folder exists.
    pub summary_json: Option<PathBuf>,
    /// The secrets written in options, to hide in the rerun hint.
    pub option_secrets: Vec<secrets::OptionSecret>,
    /// `--quiet`: warnings and notes are not shown.
    pub quiet: bool,
    /// How the console shows the run (its `total` is set by [`Self::console`]).
    console: ui::Options,
}

impl Settings {
    /// Checks `args` and derives the settings. Warnings found on the way
    /// go to `warn` as they are found (so that they are shown even when a
    /// later option is refused); with `--quiet` there are none. `color`:
    /// the console's colour, decided before (the errors of this need it).
    pub(crate) fn new(args: &cli::Args, color: bool, warn: &dyn Fn(&str)) -> anyhow::Result<Self> {
        let Some(jobs_file) = args.jobs.clone() else {
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
        let kind = workers::WorkerKind::of(args);
        workers::conflicts(args, kind)?;
        let isolation = workers::isolation(args, kind)?;
        let hosts = hosts::hosts(args)?;
        let defaults = request_defaults(&args.request, false)?;
        let option_secrets = secrets::option_secrets(&args.request, &defaults);
        if !args.quiet {
            for w in secrets::warnings(&option_secrets) {
                warn(&w);
            }
        }
        let input = jobs_input(&args.input, &jobs_file)?;
        if let Some(path) = &args.summary_json {
            check_output_file("--summary-json", "summary.json", path)?;
        }
        if let Some(path) = &args.report {
            check_output_file("--report", "run.html", path)?;
        }
        let manifest = manifest::Manifest::of_run(
            &jobs_file,
            &args.input,
            &args.request,
            &option_secrets,
            &secrets::environment(),
        )
        .to_bytes()?;
        let existing = Existing::of(args);
        let pool = PoolConfig {
            workers: workers::count(args.workers, hosts.as_ref()),
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
            resume: existing == Existing::Resume,
            max_start_failures: MAX_START_FAILURES,
            manifest: Some(manifest),
        };
        Ok(Settings {
            jobs_file,
            input,
            defaults,
            check: CheckFor {
                resume: existing == Existing::Resume,
                dedup: args.dedup,
            },
            existing,
            pool,
            summary_json: args.summary_json.clone(),
            option_secrets,
            quiet: args.quiet,
            console: console(args, color),
        })
    }

    /// How the console shows a run of `total` jobs.
    pub(crate) fn console(&self, total: u64) -> ui::Options {
        ui::Options {
            total,
            ..self.console.clone()
        }
    }
}

/// How the console shows the run, but for its number of jobs.
fn console(args: &cli::Args, color: bool) -> ui::Options {
    ui::Options {
        level: if args.quiet {
            Level::Error
        } else if args.verbose > 0 {
            Level::Debug
        } else {
            Level::Info
        },
        bar: !args.quiet && ui::stderr_is_terminal(),
        progress_every: (!args.progress_every.is_zero()).then_some(args.progress_every),
        color,
        total: 0,
    }
}

/// Fails before the run when an output file named on the command line
/// (`--summary-json`, `--report`) could not be written at its end: a file
/// name, in a folder that exists. `-` is stdout. `example` names a file for
/// the message.
pub(crate) fn check_output_file(flag: &str, example: &str, path: &Path) -> anyhow::Result<()> {
    if path == Path::new("-") {
        return Ok(());
    }
    if path.file_name().is_none() || path.is_dir() {
        bail!(
            "{flag} {}: give a file name, e.g. {flag} {example}",
            path.display()
        );
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        bail!(
            "{flag} {}: the folder {} does not exist; create it or choose another path",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

/// How the jobs file is read: its format (from `--input-format` or its
/// name) and, for a table, which column is what (for a run and `export`).
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
    if format == InputFormat::Jsonl
        && let Some((flag, _)) = table_only.iter().find(|(_, given)| *given)
    {
        bail!(
            "{flag} is for CSV and TSV jobs files, and {file} is read as JSON Lines: name it .csv or .tsv, or give --input-format csv"
        );
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

#[cfg(test)]
mod tests;
