//! What the core is given at the start: the settings that shape its
//! decisions and the jobs it runs, as plain data.

use std::collections::HashMap;
use std::hash::RandomState;
use std::path::PathBuf;
use std::time::Duration;

use super::JobSource;
use crate::core::retry::RetryPolicy;
use crate::core::rules::BodyRules;

/// What the core needs to know about a run: the settings that shape its
/// decisions, as plain data.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Workers wanted at the start (`--workers`; with `--host`, the sum).
    pub workers: usize,
    /// Between SIGTERM and SIGKILL, and between closing a worker's input
    /// and SIGTERM.
    pub kill_grace: Duration,
    /// How long a new worker may take to say `ready`.
    pub start_timeout: Duration,
    /// Which failures are retried, how often, after how long.
    pub retry: RetryPolicy,
    /// How many jobs a worker holds at once.
    pub prefetch: usize,
    /// Failures in a row after which the run (or a host) gives up.
    pub max_start_failures: u32,
    /// Answers that mean retry, fail or stop, by their JSON body.
    pub rules: BodyRules,
    /// `--rate`, requests per second.
    pub rate: Option<f64>,
    /// When workers are replaced though nothing is wrong with them.
    pub recycle: Recycle,
    /// With `--host`: the hosts and how to log in; `None`: this machine.
    pub hosts: Option<HostsConfig>,
    /// The worker command (or the threads' work), for messages.
    pub command: String,
    /// Workers started per turn (processes block the loop while they
    /// start; threads do not).
    pub spawn_batch: usize,
    /// `--worker-memory-limit`, for the words of an out-of-memory death.
    pub memory_limit: Option<u64>,
    /// `pid` or `tid`, for the status table.
    pub id_name: &'static str,
    /// The results folder, for the paths reports name.
    pub out_dir: PathBuf,
    /// The supervisor's own pid: a thread worker's record names it.
    pub own_pid: i32,
    /// The seed of the core's random choices (backoff jitter, the
    /// `--max-jobs-jitter`): a seed replays a run.
    pub seed: u64,
}

/// Replacing workers on a schedule or when they grow, as gunicorn's
/// `--max-requests` (with jitter) and Celery's `--max-tasks-per-child` and
/// `--max-memory-per-child` do. A worker is replaced after its current
/// job, like a rolling restart: nothing is lost or repeated.
#[derive(Debug, Clone, Default)]
pub struct Recycle {
    /// Replace a worker after this many jobs (`--max-jobs-per-worker`).
    pub max_jobs: Option<u64>,
    /// Plus a random 0..jitter more, so that workers started together are
    /// not all replaced at once (`--max-jobs-jitter`).
    pub jitter: u64,
    /// Replace a worker whose RSS passes this many bytes
    /// (`--max-worker-rss`), looked at every 250 ms at most.
    pub max_rss: Option<u64>,
}

/// The `--host` list, as the core needs it.
#[derive(Debug, Clone)]
pub struct HostsConfig {
    /// Each host: its name as given, its workers, whether it is this
    /// machine.
    pub list: Vec<(String, usize, bool)>,
    /// Workers per login (`--ssh-sessions`).
    pub sessions: usize,
    /// Between two logins (`--ssh-delay`).
    pub delay: Duration,
}

/// The jobs the core runs: how many, from where, and which requests repeat
/// (for `--dedup`).
pub struct Jobs {
    /// Jobs in the file (skipped ones included).
    pub total: u64,
    /// The file's name, for messages.
    pub name: String,
    /// Where they come from.
    pub source: Box<dyn JobSource>,
    /// With `--dedup`: how many jobs of each repeated request (by the
    /// fingerprint's hash) the file holds, and the hasher.
    pub dedup: Option<(HashMap<u64, u32>, RandomState)>,
}
