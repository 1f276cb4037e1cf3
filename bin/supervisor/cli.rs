//! The supervisor's command line.

use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser};

fn duration(s: &str) -> Result<Duration, String> {
    callpool_pool::parse_duration(s)
}

/// Run many HTTP API calls in parallel worker processes, one result file per call.
///
/// Reads JOBS (JSON Lines, one job per line; `-` for stdin), checks every
/// line, then runs the jobs on N worker processes and writes each result to
/// DIR/<id>.json as it arrives. Exit status: 0 every job ok, 1 some job
/// failed, 2 bad usage, bad jobs file or a run that cannot go on, 130
/// interrupted.
#[derive(Debug, Parser)]
#[command(name = "supervisor", version, max_term_width = 100)]
pub struct Args {
    /// The jobs file (JSON Lines), or `-` for stdin.
    #[arg(value_name = "JOBS")]
    pub jobs: String,

    /// How many worker processes run at once.
    #[arg(short = 'w', long, default_value_t = 8, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=4096), help_heading = "Workers")]
    pub workers: u16,

    /// The worker program and its arguments (default: the http-worker beside
    /// this executable). Any program that speaks docs/protocol.md works.
    #[arg(long, value_name = "\"PROGRAM ARGS...\"", help_heading = "Workers")]
    pub worker_cmd: Option<String>,

    /// How many jobs a worker holds at once: the one it runs plus the ones
    /// queued on its stdin behind it.
    #[arg(long, default_value_t = 1, value_name = "K",
          value_parser = clap::value_parser!(u16).range(1..=64), help_heading = "Workers")]
    pub prefetch: u16,

    /// How long a new worker may take to say it is ready.
    #[arg(long, default_value = "10s", value_parser = duration, value_name = "DURATION",
          help_heading = "Workers")]
    pub start_timeout: Duration,

    /// The deadline of each attempt, from the moment the job is sent (a
    /// job's own `timeout` overrides it). Past it the worker is killed.
    #[arg(long, default_value = "30s", value_parser = duration, value_name = "DURATION",
          help_heading = "Deadlines and retries")]
    pub timeout: Duration,

    /// Between SIGTERM and SIGKILL when a worker must be stopped.
    #[arg(long, default_value = "2s", value_parser = duration, value_name = "DURATION",
          help_heading = "Deadlines and retries")]
    pub kill_grace: Duration,

    /// Attempts after the first for a job that fails in a retryable way.
    #[arg(
        long,
        default_value_t = 2,
        value_name = "N",
        help_heading = "Deadlines and retries"
    )]
    pub retries: u32,

    /// The URL of jobs that give none (they then give only `params`).
    #[arg(long, value_name = "BASE", help_heading = "HTTP")]
    pub url: Option<String>,

    /// The largest response body the default http-worker accepts, in bytes.
    #[arg(long, value_name = "BYTES", help_heading = "HTTP")]
    pub max_body: Option<u64>,

    /// Where result files and joblog.jsonl go.
    #[arg(
        short = 'o',
        long,
        default_value = "results",
        value_name = "DIR",
        help_heading = "Output"
    )]
    pub out: PathBuf,

    /// Skip jobs whose result file in DIR exists and is ok; run the rest.
    #[arg(long, conflicts_with = "overwrite", help_heading = "Output")]
    pub resume: bool,

    /// Run every job again, replacing results already in DIR.
    #[arg(long, help_heading = "Output")]
    pub overwrite: bool,

    /// Show only errors and the summary.
    #[arg(short, long, conflicts_with = "verbose", help_heading = "Output")]
    pub quiet: bool,

    /// Show every attempt.
    #[arg(short, long, action = ArgAction::Count, help_heading = "Output")]
    pub verbose: u8,
}
