//! The supervisor's command line.

use std::path::PathBuf;
use std::time::Duration;

use callpool_pool::options::BodyRule;
use callpool_pool::options::TextEncoding;
use clap::{ArgAction, Parser, Subcommand, ValueEnum};

fn duration(s: &str) -> Result<Duration, String> {
    callpool_pool::parse_duration(s)
}

fn deadline(s: &str) -> Result<Duration, String> {
    callpool_pool::parse_deadline(s)
}

/// Run many HTTP API calls in parallel worker processes, one result file per call.
///
/// Reads JOBS (JSON Lines, one job per line, or a CSV/TSV table with a
/// header row; `-` for stdin), checks every line, then runs the jobs on N
/// workers (processes, or threads with --threads) and writes each result to
/// DIR/<id>.json as it arrives. Exit status: 0 every job ok, 1 some job
/// failed, 2 bad usage, bad jobs file or a run that cannot go on, 3 stopped
/// by --stop-if, 130 interrupted.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "supervisor",
    version,
    max_term_width = 100,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    disable_help_subcommand = true,
    after_help = AFTER_HELP
)]
pub struct Args {
    /// Something other than a run.
    #[command(subcommand)]
    pub command: Option<Command>,

    /// The jobs file: JSON Lines, or CSV/TSV with a header row (see
    /// --input-format); `-` reads it from stdin.
    #[arg(value_name = "JOBS", required = true)]
    pub jobs: Option<String>,

    /// How the jobs file is read.
    #[command(flatten)]
    pub input: JobsArgs,

    /// What every request gets.
    #[command(flatten)]
    pub request: RequestArgs,

    /// How many workers (processes, or threads with --threads) run at once,
    /// 1 to 4096.
    #[arg(short = 'w', long, default_value_t = 8, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=4096), help_heading = "Workers")]
    pub workers: u16,

    /// The worker program and its arguments (default: the http-worker beside
    /// this executable). Any program that speaks docs/protocol.md works.
    #[arg(long, value_name = "\"PROGRAM ARGS...\"", help_heading = "Workers")]
    pub worker_cmd: Option<String>,

    /// What a worker is: a separate process (the default: a worker that
    /// hangs, leaks or crashes costs one attempt and is killed), or a
    /// thread inside the supervisor running the built-in HTTP worker
    /// (lighter and faster to start, but it cannot be killed: past a
    /// deadline it is abandoned, and an abort or a leak in it hits the
    /// whole run).
    #[arg(long, value_enum, value_name = "KIND", help_heading = "Workers")]
    pub isolation: Option<IsolationKind>,

    /// The same as --isolation threads.
    #[arg(long, conflicts_with = "isolation", help_heading = "Workers")]
    pub threads: bool,

    /// Run N workers (default: --workers) on DEST through ssh: DEST is
    /// [user@]host, an alias from your ssh config, or
    /// ssh://[user@]host[:port]; `:` is this machine. Repeat it for more
    /// hosts. The remote host needs only sshd, sh and the worker program.
    #[arg(long = "host", value_name = "[N/]DEST", help_heading = "Other hosts")]
    pub host: Vec<String>,

    /// Read --host entries from FILE, one per line ([N/]DEST); blank lines
    /// and lines starting with # are skipped.
    #[arg(long = "hosts", value_name = "FILE", help_heading = "Other hosts")]
    pub hosts_file: Option<PathBuf>,

    /// The ssh program and its options, e.g. "ssh -p 2222 -i KEY". The
    /// supervisor adds -T, BatchMode=yes (a host that asks for a password
    /// fails at once instead of hanging) and its own ControlMaster and
    /// ControlPath: one login per host, shared by its workers' sessions.
    #[arg(
        long,
        default_value = "ssh",
        value_name = "\"ssh OPTIONS...\"",
        help_heading = "Other hosts"
    )]
    pub ssh: String,

    /// The worker program on remote hosts (default: http-worker on the
    /// remote PATH, with the same --max-body, --location-trusted and TLS
    /// options as here, whose files are then read there). It must exit when its stdin ends, even
    /// mid-call (docs/protocol.md, section 9).
    #[arg(long, value_name = "\"PROGRAM ARGS...\"", help_heading = "Other hosts")]
    pub remote_worker_cmd: Option<String>,

    /// Wait this long between two ssh logins, so that many hosts (or many
    /// logins to one) do not trip sshd's MaxStartups.
    #[arg(long, default_value = "0s", value_parser = duration, value_name = "DURATION",
          help_heading = "Other hosts")]
    pub ssh_delay: Duration,

    /// Workers per ssh login: sshd refuses more sessions on one connection
    /// than its MaxSessions (10 by default), so a host with more workers
    /// gets more logins. Raise it to match a host's MaxSessions.
    #[arg(long, default_value_t = 10, value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=4096), help_heading = "Other hosts")]
    pub ssh_sessions: u16,

    /// How many jobs a worker holds at once: the one it runs plus the ones
    /// queued on its stdin behind it, so that it never waits for the
    /// supervisor between jobs. K is 1 to 64; it applies only while at least
    /// K jobs per worker are ready (near the end of the list a worker holds
    /// one), and it is always 1 with --rate.
    #[arg(long, default_value_t = 2, value_name = "K",
          value_parser = clap::value_parser!(u16).range(1..=64), help_heading = "Workers")]
    pub prefetch: u16,

    /// Replace a worker after this many jobs, like gunicorn's
    /// --max-requests or Celery's --max-tasks-per-child (after its current
    /// job: nothing is lost or repeated).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..),
          help_heading = "Workers")]
    pub max_jobs_per_worker: Option<u64>,

    /// Add a random 0..=J to each worker's --max-jobs-per-worker, so that
    /// workers started together are not replaced together (gunicorn's
    /// --max-requests-jitter).
    #[arg(
        long,
        value_name = "J",
        default_value_t = 0,
        requires = "max_jobs_per_worker",
        help_heading = "Workers"
    )]
    pub max_jobs_jitter: u64,

    /// Replace a worker process whose resident memory passes SIZE (e.g.
    /// 500MB), after its current job; looked at every 250 ms (Celery's
    /// --max-memory-per-child, uWSGI's --reload-on-rss). Processes only.
    #[arg(long, value_name = "SIZE", value_parser = callpool_http::parse_byte_size,
          help_heading = "Workers")]
    pub max_worker_rss: Option<u64>,

    /// A hard cap on each worker process's address space (RLIMIT_AS, e.g.
    /// 2GB): a worker that passes it fails to allocate and dies, which is
    /// handled as a crash. Processes only.
    #[arg(long, value_name = "SIZE", value_parser = callpool_http::parse_byte_size,
          help_heading = "Workers")]
    pub worker_memory_limit: Option<u64>,

    /// How long a new worker may take to say it is ready (its `ready` line);
    /// past it, it is stopped and counts as a failure to start.
    #[arg(long, default_value = "10s", value_parser = deadline, value_name = "DURATION",
          help_heading = "Workers")]
    pub start_timeout: Duration,

    /// How long a worker process gets to exit by itself: between closing its
    /// stdin and SIGTERM, and between SIGTERM and SIGKILL.
    #[arg(long, default_value = "2s", value_parser = duration, value_name = "DURATION",
          help_heading = "Deadlines and retries")]
    pub kill_grace: Duration,

    /// Attempts after the first for a job that fails in a retryable way (a
    /// --retry-on-status status, --retry-if, a connect, dns, timeout or io
    /// error, or a worker lost during the attempt); 2 means 3 attempts in
    /// all.
    #[arg(
        long,
        default_value_t = 2,
        value_name = "N",
        help_heading = "Deadlines and retries"
    )]
    pub retries: u32,

    /// HTTP statuses that are retried, comma-separated.
    #[arg(
        long,
        value_name = "LIST",
        value_delimiter = ',',
        default_value = "408,429,500,502,503,504",
        help_heading = "Deadlines and retries"
    )]
    pub retry_on_status: Vec<u16>,

    /// The first backoff step between attempts: the n-th retry waits a random
    /// time up to base * 2^(n-1), at most --backoff-cap. An answer's
    /// Retry-After header is obeyed instead, when it has one.
    #[arg(long, default_value = "500ms", value_parser = duration, value_name = "DURATION",
          help_heading = "Deadlines and retries")]
    pub backoff_base: Duration,

    /// The largest backoff step (the most a retry waits, Retry-After
    /// aside).
    #[arg(long, default_value = "30s", value_parser = duration, value_name = "DURATION",
          help_heading = "Deadlines and retries")]
    pub backoff_cap: Duration,

    /// The longest Retry-After obeyed; an answer asking for more fails the job.
    #[arg(long, default_value = "2m", value_parser = duration, value_name = "DURATION",
          help_heading = "Deadlines and retries")]
    pub max_retry_after: Duration,

    /// Retry an answer whose JSON body holds VALUE at POINTER, e.g.
    /// /status=OVER_QUERY_LIMIT (repeatable).
    #[arg(long, value_name = "POINTER=VALUE", value_parser = BodyRule::parse,
          help_heading = "Deadlines and retries")]
    pub retry_if: Vec<BodyRule>,

    /// Mark an answer failed (kind `rejected`) although its status is 2xx, e.g.
    /// /status=REQUEST_DENIED (repeatable).
    #[arg(long, value_name = "POINTER=VALUE", value_parser = BodyRule::parse,
          help_heading = "Deadlines and retries")]
    pub fail_if: Vec<BodyRule>,

    /// Stop the whole run cleanly (like Ctrl-C, exit status 3) on such an
    /// answer, e.g. /status=OVER_DAILY_LIMIT (repeatable).
    #[arg(long, value_name = "POINTER=VALUE", value_parser = BodyRule::parse,
          help_heading = "Deadlines and retries")]
    pub stop_if: Vec<BodyRule>,

    /// The most requests the whole run starts, across all workers and
    /// retries included: N/s or N/m. A 429 answer slows the pace; this stays
    /// the ceiling.
    #[arg(long, value_name = "N/s", value_parser = callpool_pool::options::parse_rate,
          help_heading = "HTTP")]
    pub rate: Option<f64>,

    /// The largest response body (after gzip decoding) the built-in HTTP
    /// worker accepts, e.g. 32M (default 16M, 16 MiB); a larger one fails
    /// the attempt with kind body_too_large. Not with --worker-cmd (give
    /// your program its own limit).
    #[arg(long, value_name = "SIZE", value_parser = callpool_http::parse_byte_size,
          help_heading = "HTTP")]
    pub max_body: Option<u64>,

    /// On a redirect to another origin (scheme, host or port), keep the
    /// headers that are secret (Authorization, Cookie, the --redact and
    /// built-in names, values from ${NAME}) instead of dropping them, as
    /// curl's --location-trusted does: only when you trust every host the
    /// API may redirect to. Not with --worker-cmd.
    #[arg(long, help_heading = "HTTP")]
    pub location_trusted: bool,

    /// HTTPS: also trust the CA certificates in FILE (PEM, one or more),
    /// e.g. a company CA or a TLS-inspecting proxy's. The system's store
    /// (or SSL_CERT_FILE / SSL_CERT_DIR when set) is trusted anyway.
    #[arg(long, value_name = "FILE", help_heading = "HTTP")]
    pub cacert: Option<PathBuf>,

    /// HTTPS: the client certificate for servers that require one (mutual
    /// TLS), PEM; with its chain if needed, and its key unless --key.
    #[arg(long, value_name = "FILE", help_heading = "HTTP")]
    pub cert: Option<PathBuf>,

    /// HTTPS: the private key of --cert (PEM, unencrypted).
    #[arg(long, value_name = "FILE", requires = "cert", help_heading = "HTTP")]
    pub key: Option<PathBuf>,

    /// Where result files and joblog.jsonl go.
    #[arg(
        short = 'o',
        long,
        default_value = "results",
        value_name = "DIR",
        help_heading = "Output"
    )]
    pub out: PathBuf,

    /// Skip jobs whose result file in DIR exists, is ok and answers the
    /// same request; run the rest (a job whose request changed since, an
    /// edited row, runs again).
    #[arg(long, conflicts_with = "overwrite", help_heading = "Output")]
    pub resume: bool,

    /// Call each distinct request once (same method, URL with every
    /// parameter, headers and body): the other jobs that make it get a copy
    /// of its result, marked "dedup_of". Within one run only; never across
    /// runs.
    #[arg(long, help_heading = "HTTP")]
    pub dedup: bool,

    /// Run every job again, replacing results already in DIR.
    #[arg(long, help_heading = "Output")]
    pub overwrite: bool,

    /// Also write the summary as JSON to FILE (`-` for stdout) when the
    /// run ends: counts, failures by kind, restarts, latency, the first
    /// failures and the exit status. Written whole or not at all.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub summary_json: Option<PathBuf>,

    /// Also draw the run's HTML page (as `supervisor report`) to FILE when
    /// the run ends: finished, interrupted, stopped by --stop-if, or
    /// stopped by an error.
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub report: Option<PathBuf>,

    /// When stderr is not a terminal (a log file, CI), print a progress line
    /// this often; 0 turns it off. On a terminal a live progress bar is shown
    /// instead.
    #[arg(long, default_value = "10s", value_parser = duration, value_name = "DURATION",
          help_heading = "Output")]
    pub progress_every: Duration,

    /// Colour on stderr: auto uses it on a terminal unless the NO_COLOR
    /// environment variable is set (to anything but "").
    #[arg(long, value_enum, default_value_t = ColorWhen::Auto, value_name = "WHEN",
          help_heading = "Output")]
    pub color: ColorWhen,

    /// Show only errors and the summary: no progress bar or lines, no worker
    /// starts.
    #[arg(short, long, conflicts_with = "verbose", help_heading = "Output")]
    pub quiet: bool,

    /// Also show every attempt: job, worker, outcome, status, time.
    #[arg(short, long, action = ArgAction::Count, help_heading = "Output")]
    pub verbose: u8,
}

/// How the jobs file is read (shared by a run and `export`).
#[derive(Debug, Clone, clap::Args)]
pub struct JobsArgs {
    /// The jobs file's format; by default from its name: .csv, .tsv, else
    /// JSON Lines (and JSON Lines for stdin).
    #[arg(long, value_enum, value_name = "FORMAT", help_heading = "Jobs file")]
    pub input_format: Option<InputFormatArg>,

    /// CSV/TSV: the column that names each row's result file (default: `id`
    /// when the header has it, else rows are line-N).
    #[arg(long, value_name = "NAME", help_heading = "Jobs file")]
    pub id_column: Option<String>,

    /// CSV/TSV: send only these columns as parameters (default: every column
    /// but the id).
    #[arg(
        long,
        value_name = "A,B,...",
        value_delimiter = ',',
        help_heading = "Jobs file"
    )]
    pub columns: Option<Vec<String>>,

    /// CSV/TSV: send a column under another parameter name (repeatable),
    /// e.g. --rename 'Street Address=address'.
    #[arg(long, value_name = "COLUMN=PARAM", help_heading = "Jobs file")]
    pub rename: Vec<String>,

    /// CSV/TSV: leave empty cells out instead of sending empty parameters.
    #[arg(long, help_heading = "Jobs file")]
    pub skip_empty: bool,

    /// CSV/TSV: what separates fields: `,` `;` `|` `\t`, or comma,
    /// semicolon, tab, pipe (default: tab for TSV; for CSV the one of `,`
    /// `;` tab that the header line holds most, a comma on a tie).
    #[arg(long, value_name = "CHAR", value_parser = callpool_pool::options::parse_delimiter,
          help_heading = "Jobs file")]
    pub delimiter: Option<u8>,

    /// The jobs file's text encoding, e.g. windows-1252 (what Excel saves as
    /// CSV in Western Europe), latin1, iso-8859-15, utf-16le: any WHATWG
    /// label (default: UTF-8; a byte-order mark is skipped).
    #[arg(long, value_name = "NAME", value_parser = TextEncoding::from_label,
          help_heading = "Jobs file")]
    pub encoding: Option<TextEncoding>,
}

/// A jobs file's format (`--input-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormatArg {
    /// JSON Lines: one job object per line.
    Jsonl,
    /// Comma-separated values with a header row.
    Csv,
    /// Tab-separated values with a header row.
    Tsv,
}

/// What every request gets (shared by a run and `export`, which rebuilds
/// the requests to tell whether a result still answers its row).
#[derive(Debug, Clone, clap::Args)]
pub struct RequestArgs {
    /// The URL of jobs that give none (they then give only `params`).
    /// `${NAME}` expands from the environment, here and in every job string.
    /// `{column}` puts a row's value in the path (one encoded segment) or
    /// the query (one encoded value), e.g.
    /// --url 'https://api.example.com/users/{login}'.
    #[arg(long, value_name = "BASE", help_heading = "HTTP")]
    pub url: Option<String>,

    /// The HTTP method of jobs that give none (default GET; POST with
    /// --body or --form).
    #[arg(long, value_name = "METHOD", help_heading = "HTTP")]
    pub method: Option<String>,

    /// A JSON body template: a JSON document whose strings may hold
    /// {column} (a JSON string), or be exactly "{column:number}",
    /// ":integer", ":bool" or ":json" (a typed value; add ? for null on an
    /// empty cell). With --body, columns are sent only where a placeholder
    /// puts them. @FILE reads it from a file.
    #[arg(long, value_name = "JSON", help_heading = "HTTP")]
    pub body: Option<String>,

    /// Jobs that are not HTTP calls, from a table's rows: each row becomes
    /// a job whose `args` (for a worker of your own, --worker-cmd) are this
    /// JSON template filled with the row's columns, as --body is, e.g.
    /// --args '{"n": "{n:integer}", "name": "{name}"}'. No --url is needed.
    #[arg(long, value_name = "JSON", help_heading = "HTTP")]
    pub args: Option<String>,

    /// A form field of an application/x-www-form-urlencoded body
    /// (repeatable), e.g. --form 'address={address}'.
    #[arg(long, value_name = "NAME=VALUE", help_heading = "HTTP")]
    pub form: Vec<String>,

    /// A query parameter added to every job (repeatable), e.g.
    /// --param 'key=${GOOGLE_MAPS_API_KEY}'.
    #[arg(long, value_name = "KEY=VALUE", help_heading = "HTTP")]
    pub param: Vec<String>,

    /// A header added to every job unless the job sets it (repeatable), e.g.
    /// --header 'Authorization: Bearer ${TOKEN}'; {column} puts a row's
    /// value in it.
    #[arg(long, value_name = "'NAME: VALUE'", help_heading = "HTTP")]
    pub header: Vec<String>,

    /// The deadline of each attempt, from the moment the job is sent (a
    /// job's own `timeout` overrides it). Past it the worker is killed (a
    /// thread: abandoned) and the attempt ends as `timeout`.
    #[arg(long, default_value = "30s", value_parser = deadline, value_name = "DURATION",
          help_heading = "Deadlines and retries")]
    pub timeout: Duration,

    /// A query parameter or header whose value is secret: it is sent, but
    /// shown as REDACTED in results, the joblog and logs (repeatable). Always
    /// secret: key, api_key, apikey, token, access_token, password,
    /// Authorization.
    #[arg(long, value_name = "NAME", help_heading = "HTTP")]
    pub redact: Vec<String>,

    /// The User-Agent of every request (unless a job sets its own); APIs such
    /// as Nominatim require one that identifies you.
    #[arg(long, value_name = "STRING", help_heading = "HTTP")]
    pub user_agent: Option<String>,
}

/// The subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Print a shell completion script (bash, zsh, fish) on stdout.
    ///
    /// For example, for bash:
    /// `supervisor completions bash > ~/.local/share/bash-completion/completions/supervisor`;
    /// for zsh, into a folder of your $fpath as `_supervisor`; for fish:
    /// `supervisor completions fish > ~/.config/fish/completions/supervisor.fish`.
    Completions {
        /// The shell (bash, zsh, fish, elvish or powershell).
        #[arg(value_enum, value_name = "SHELL")]
        shell: clap_complete::Shell,
    },

    /// Write one table (CSV, TSV or JSON Lines) from a results folder.
    ///
    /// One row per job: with --jobs, every row of the jobs file that made
    /// the run, in its order, its columns kept, then the --field values
    /// taken from each result's response body, then how the job went
    /// (status: ok, failed, not_run, stale, unreadable). Without --jobs, one
    /// row per result file, by id. Result files are read one at a time, so
    /// any number of them exports in little memory. Exit status: 0 all
    /// exported, 1 exported but some result files could not be read (named
    /// on stderr), 2 bad usage, a bad --field, a bad jobs file or an output
    /// that cannot be written (then nothing is written).
    Export(Box<ExportArgs>),

    /// Draw one HTML page of a run from its results folder: throughput,
    /// latency, failures by kind and a timeline of every worker
    /// (docs/running.md). Self-contained: it opens offline. Exit status: 0
    /// written, 1 written but some lines or files could not be used (named
    /// on stderr), 2 bad usage, no joblog, or a page that cannot be written.
    Report(crate::report_cmd::ReportArgs),
}

/// What a worker is (`--isolation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum IsolationKind {
    /// A child process per worker, over pipes.
    Processes,
    /// A thread per worker, inside the supervisor.
    Threads,
}

/// When to colour stderr (`--color`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    /// On a terminal, unless NO_COLOR is set.
    Auto,
    /// Always, even into a file or pipe.
    Always,
    /// Never.
    Never,
}

/// The end of `--help`: how to steer a run, then examples.
const AFTER_HELP: &str = "\
Control:
  While it runs, the supervisor obeys signals sent to its pid (shown at the
  start when stderr is a terminal; $! or %1 in the shell that started it):
  USR1 prints a status table (each worker's pid, state and job), TTIN adds a
  worker, TTOU removes one, HUP replaces every worker after its current job.
  Ctrl-C sends no more jobs and lets those in flight finish (exit 130; rerun
  with --resume to finish the list); Ctrl-C twice kills the workers at once.
  Killing a worker by hand counts as a crash: its job is retried. With
  --threads the workers are threads: the table shows thread ids, and a
  thread past its deadline is abandoned (it cannot be killed), its job
  retried on a fresh thread.

Examples:
  Run jobs.jsonl on 16 workers, one result file per job in results/:
    supervisor --workers 16 jobs.jsonl

  Google's Geocoding API: at most 40 requests/s, retry over-quota answers,
  stop cleanly when the daily quota is spent (each job gives only params):
    export GOOGLE_MAPS_API_KEY=...
    supervisor --workers 16 --rate 40/s \\
      --url https://maps.googleapis.com/maps/api/geocode/json \\
      --param 'key=${GOOGLE_MAPS_API_KEY}' \\
      --retry-if /status=OVER_QUERY_LIMIT --stop-if /status=OVER_DAILY_LIMIT \\
      --out geocoded jobs.jsonl

  Steer a run by hand from another shell (<pid> is the supervisor's):
    kill -USR1 <pid>   # status table: every worker's pid, state and job
    kill -TTIN <pid>   # one worker more
    kill -TTOU <pid>   # one worker fewer (it finishes its job first)
    kill -HUP <pid>    # replace every worker, each after its current job
    Ctrl-C, Ctrl-C     # finish the jobs in flight; the second kills them
";

/// `supervisor export DIR`: one table from a results folder.
#[derive(Debug, Clone, clap::Args)]
#[command(
    after_help = EXPORT_AFTER_HELP,
    mut_arg("url", |a| a.help_heading(RUN_OPTIONS)),
    mut_arg("param", |a| a.help_heading(RUN_OPTIONS)),
    mut_arg("header", |a| a.help_heading(RUN_OPTIONS)),
    mut_arg("user_agent", |a| a.help_heading(RUN_OPTIONS)),
    mut_arg("redact", |a| a.help_heading(RUN_OPTIONS)),
    mut_arg("timeout", |a| a.help_heading(RUN_OPTIONS).help(
        "Accepted so that the run's options can be given as they were; it \
         changes nothing in the table."
    )),
    mut_arg("delimiter", |a| a.help(
        "What separates fields: in the jobs file, as in the run (default: tab \
         for TSV; for CSV the one of `,` `;` tab that the header line holds \
         most), and in a CSV table written unless --output-delimiter: `,` \
         `;` `|` `\\t`, or comma, semicolon, tab, pipe."
    )),
)]
pub struct ExportArgs {
    /// The results folder (the run's --out).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    /// The jobs file that made the run (CSV, TSV or JSON Lines): one row per
    /// line of it, in its order, with its columns (for JSON Lines: `id` and
    /// one column per parameter name). A job without a result file yet is
    /// `not_run`. Give the run's other options too (--url, --param,
    /// --header, --id-column, ...): each row's request is rebuilt to find its
    /// result and to tell a result of a changed request (`stale`).
    #[arg(long, value_name = "FILE", help_heading = "Jobs file")]
    pub jobs: Option<String>,

    /// How the jobs file is read, as in the run.
    #[command(flatten)]
    pub input: JobsArgs,

    /// What every request got, as in the run.
    #[command(flatten)]
    pub request: RequestArgs,

    /// A column taken from each result's response body by JSON Pointer
    /// (RFC 6901; repeatable, in order), e.g. --field
    /// lat=/results/0/geometry/location/lat. Strings are written as they
    /// are, other values as JSON; a pointer that finds nothing leaves the
    /// cell empty. An empty POINTER takes the whole body. For a job that
    /// is not an HTTP call (`args`), POINTER points into its `value`.
    #[arg(long = "field", value_name = "NAME=POINTER", value_parser = parse_field,
          help_heading = "Table")]
    pub fields: Vec<Field>,

    /// The table's format. csv: quoted where needed (RFC 4180); tsv: tabs
    /// and line breaks inside values become spaces; jsonl: one JSON object
    /// per row, values kept as JSON (numbers stay numbers, an empty cell is
    /// null).
    #[arg(long, value_enum, default_value_t = ExportFormat::Csv, value_name = "FORMAT",
          help_heading = "Table")]
    pub format: ExportFormat,

    /// Write the table to FILE instead of stdout, whole or not at all (a
    /// temporary file in the same folder, renamed over FILE at the end).
    #[arg(long, value_name = "FILE", help_heading = "Table")]
    pub output: Option<PathBuf>,

    /// Put P before the names of the --field and status columns (e.g.
    /// --prefix geo_ gives geo_lat, geo_ok, geo_status), so that they cannot
    /// clash with the jobs file's own columns.
    #[arg(long, value_name = "P", help_heading = "Table")]
    pub prefix: Option<String>,

    /// Start the table with a UTF-8 byte-order mark, so that Excel reads it
    /// as UTF-8 (without one it reads a CSV file in the system's legacy
    /// encoding, and accents come out garbled). CSV and TSV only.
    #[arg(long, help_heading = "Table")]
    pub bom: bool,

    /// What separates the fields of a CSV table written, as --delimiter
    /// (default: --delimiter when given, else the CSV jobs file's, else a
    /// comma), e.g. `;` for an Excel that expects semicolons.
    #[arg(long, value_name = "CHAR", value_parser = callpool_pool::options::parse_delimiter,
          help_heading = "Table")]
    pub output_delimiter: Option<u8>,
}

/// The heading of the run's request options in `export --help`.
const RUN_OPTIONS: &str = "The run's request options (to rebuild each row's request)";

/// The table format of `export` (`--format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// Tab-separated values with a header row.
    Tsv,
    /// JSON Lines: one object per row.
    Jsonl,
}

/// One `--field NAME=POINTER` of `export`.
#[derive(Debug, Clone)]
pub struct Field {
    /// The column's name (before any --prefix).
    pub name: String,
    /// The JSON Pointer into the response body (or a worker's `value`):
    /// empty, or starting with `/`.
    pub pointer: String,
}

/// Parses `--field NAME=POINTER`.
fn parse_field(s: &str) -> Result<Field, String> {
    let example = "e.g. --field lat=/results/0/geometry/location/lat";
    let Some((name, pointer)) = s.split_once('=') else {
        return Err(format!("give NAME=POINTER, {example}"));
    };
    if name.is_empty() {
        return Err(format!("the column NAME before = is empty, {example}"));
    }
    if !pointer.is_empty() && !pointer.starts_with('/') {
        return Err(format!(
            "{pointer:?} is not a JSON Pointer: it must start with / (or be empty, for the whole body), {example}"
        ));
    }
    Ok(Field {
        name: name.to_string(),
        pointer: pointer.to_string(),
    })
}

/// The end of `export --help`: examples.
const EXPORT_AFTER_HELP: &str = "\
Examples:
  Geocode a spreadsheet's addresses, then write every row of it, in order,
  with its latitude and longitude; export gets the run's --url and --param
  again, so that each row finds its result (a secret's value does not
  matter there, only that it is given):
    supervisor --url https://maps.googleapis.com/maps/api/geocode/json \\
      --param 'key=${GOOGLE_MAPS_API_KEY}' --out geocoded addresses.csv
    supervisor export geocoded --jobs addresses.csv \\
      --url https://maps.googleapis.com/maps/api/geocode/json \\
      --param 'key=${GOOGLE_MAPS_API_KEY}' \\
      --field lat=/results/0/geometry/location/lat \\
      --field lng=/results/0/geometry/location/lng \\
      --output geocoded.csv

  Every result as one JSON object per line, with the API's own status:
    supervisor export results --format jsonl --field api_status=/status > results.jsonl
";

/// docs/options.md is rendered from these definitions and checked against
/// them (`UPDATE_DOCS=1 cargo test -p callpool --bin supervisor options_doc`
/// rewrites it).
#[cfg(test)]
#[path = "options_doc.rs"]
mod options_doc;
