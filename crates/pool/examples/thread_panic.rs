//! A benchmark harness, not a released binary: runs a jobs file on worker
//! threads with the built-in HTTP worker, like `supervisor --threads`, but
//! makes one worker thread panic on its K-th call, to measure what a dying
//! thread worker costs (results lost must be 0).
//!
//! usage: thread_panic --workers W --out DIR --panic-on-call K JOBS
//!
//! Exit status: 0 every job ok, 1 some job failed, 2 bad usage or a run
//! that could not go on.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use callpool_http::{Client, ClientConfig};
use callpool_pool::{
    Isolation, JobFn, Level, PoolConfig, Report, Reporter, RequestDefaults, RetryPolicy, Signals,
    ThreadWork, check_jobs,
};
use callpool_protocol::JobRequest;

struct Stderr;

impl Reporter for Stderr {
    fn report(&mut self, report: Report<'_>) {
        match report {
            // The words are the supervisor's; a harness shows the data.
            Report::Event(e) if e.level() <= Level::Info => eprintln!("thread_panic: {e:?}"),
            Report::AllReady { workers, after } => eprintln!(
                "thread_panic: all {workers} workers ready in {:.3}s",
                after.as_secs_f64()
            ),
            _ => {}
        }
    }
}

struct Args {
    workers: usize,
    out: String,
    panic_on_call: u64,
    jobs: String,
}

fn parse_args() -> Result<Args, String> {
    let mut args = std::env::args().skip(1);
    let (mut workers, mut out, mut panic_on_call, mut jobs) = (8, None, None, None);
    while let Some(a) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--workers" => {
                workers = value("--workers")?
                    .parse()
                    .map_err(|e| format!("--workers: {e}"))?;
            }
            "--out" => out = Some(value("--out")?),
            "--panic-on-call" => {
                panic_on_call = Some(
                    value("--panic-on-call")?
                        .parse()
                        .map_err(|e| format!("--panic-on-call: {e}"))?,
                );
            }
            _ if jobs.is_none() && !a.starts_with("--") => jobs = Some(a),
            _ => return Err(format!("unexpected argument {a:?}")),
        }
    }
    Ok(Args {
        workers,
        out: out.ok_or("--out DIR is required")?,
        panic_on_call: panic_on_call.ok_or("--panic-on-call K is required")?,
        jobs: jobs.ok_or("a jobs file is required")?,
    })
}

fn main() -> ExitCode {
    let signals = match Signals::install() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("thread_panic: {e}");
            return ExitCode::from(2);
        }
    };
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "thread_panic: {e}\nusage: thread_panic --workers W --out DIR --panic-on-call K JOBS"
            );
            return ExitCode::from(2);
        }
    };
    // Calls counted over all threads; the K-th panics, once.
    let calls = Arc::new(AtomicU64::new(0));
    let panicked = Arc::new(AtomicBool::new(false));
    let k = args.panic_on_call;
    let work = ThreadWork::new("the built-in HTTP worker", move |_slot| {
        let client = Client::new(ClientConfig::default()).map_err(|e| e.to_string())?;
        let (calls, panicked) = (calls.clone(), panicked.clone());
        Ok(Box::new(move |req: &JobRequest| {
            if calls.fetch_add(1, Ordering::Relaxed) + 1 == k
                && !panicked.swap(true, Ordering::Relaxed)
            {
                panic!("injected by thread_panic on call {k}");
            }
            client.execute(req)
        }) as JobFn)
    });
    let cfg = PoolConfig {
        hosts: None,
        workers: args.workers,
        isolation: Isolation::Threads(work),
        out_dir: args.out.into(),
        kill_grace: std::time::Duration::from_secs(2),
        start_timeout: std::time::Duration::from_secs(10),
        retry: RetryPolicy::default(),
        prefetch: 2,
        resume: false,
        max_start_failures: 5,
        manifest: None,
        rules: Default::default(),
        rate: None,
        dedup: false,
        recycle: Default::default(),
    };
    let defaults = RequestDefaults::default();
    let input = callpool_pool::testing::table::JobsInput::jsonl();
    let jobs = match check_jobs(
        &args.jobs,
        &input,
        &defaults,
        &cfg.out_dir,
        Default::default(),
    ) {
        Ok(j) => j,
        Err(e) => {
            eprintln!("thread_panic: {e}");
            return ExitCode::from(2);
        }
    };
    match callpool_pool::run(&cfg, &jobs, &defaults, signals, &mut Stderr) {
        Ok(s) => {
            let p = &s.progress;
            eprintln!(
                "thread_panic: {} jobs: {} ok, {} failed; restarts {:?}",
                p.total, p.ok, p.failed, s.restarts
            );
            ExitCode::from(u8::from(p.failed > 0))
        }
        Err(e) => {
            eprintln!("thread_panic: {e}");
            ExitCode::from(2)
        }
    }
}
