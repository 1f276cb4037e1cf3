//! A benchmark harness, not a released binary: the two halves of a job,
//! each alone, for the floor that bench/run.sh compares the modes with
//! (issue 23, item 1). A job is one HTTP call plus one result file; on a
//! machine where both take the same cores, a run cannot beat
//! `1 / (1/writes_per_s + 1/calls_per_s)` jobs/s.
//!
//! usage:
//!   floor write --out DIR JOBS
//!       The project's own result writer ([`Output`]: serialization,
//!       secret scrubbing, `O_TMPFILE` + `linkat`, the joblog) writes one
//!       typical result per job of JOBS into DIR, and nothing else runs:
//!       no HTTP, no workers. Each result has the shape of a real one from
//!       the bench's loopback nginx (same headers, the same body echoing
//!       the job's address, one attempt in its history), so the files are
//!       the size the modes write. `Output` writes on its own two writer
//!       threads, as in both modes, while this thread queues results and
//!       joblog lines as the supervisor's loop does (a joblog write per
//!       `--batch` results, 8 by default: about what one turn of the loop
//!       collects at W=8).
//!   floor http --connections N JOBS
//!       The project's own HTTP client (`callpool_http::Client`, as the
//!       http-worker and thread mode use it) makes every job's call over N
//!       keep-alive connections, one thread and one client each, and keeps
//!       nothing: no result, no pipe, no supervisor.
//!
//! Jobs are parsed before the clock starts. Each prints one JSON line on
//! stdout: what it did, wall seconds, per-second rate and its own CPU
//! (user, system). Exit status: 0 when every write/call succeeded (a call
//! must get a 2xx), 1 when one did not, 2 on bad usage.

use std::io::{self, BufRead};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Instant, SystemTime};

use callpool_http::{Client, ClientConfig};
use callpool_pool::RequestDefaults;
use callpool_pool::testing::event::Event;
use callpool_pool::testing::jobs::{Job, parse_line};
use callpool_pool::testing::output::{AttemptRecord, FinalResult, Outcome, Output, timestamp};
use callpool_pool::testing::poller::{EventSender, Poller};
use callpool_protocol::{BodyKind, HttpResponse, JobRequest, ToWorker};
use nix::sys::resource::{UsageWho, getrusage};
use serde_json::value::RawValue;

const USAGE: &str =
    "usage: floor write --out DIR [--batch N] JOBS | floor http --connections N JOBS";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("write") => write(&args[1..]),
        Some("http") => http(&args[1..]),
        _ => Err(USAGE.to_owned()),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("floor: {e}");
            ExitCode::from(2)
        }
    }
}

/// `--name value` options and the one positional argument (the jobs file).
fn options(args: &[String], names: &[&str]) -> Result<(Vec<(String, String)>, String), String> {
    let (mut opts, mut jobs) = (Vec::new(), None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if names.contains(&a.as_str()) {
            let v = it.next().ok_or(format!("{a} needs a value\n{USAGE}"))?;
            opts.push((a.clone(), v.clone()));
        } else if jobs.is_none() && !a.starts_with("--") {
            jobs = Some(a.clone());
        } else {
            return Err(format!("unexpected argument {a:?}\n{USAGE}"));
        }
    }
    Ok((
        opts,
        jobs.ok_or(format!("a jobs file is required\n{USAGE}"))?,
    ))
}

fn opt<'a>(opts: &'a [(String, String)], name: &str) -> Option<&'a str> {
    opts.iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// Every job of a JSON Lines file, parsed as the supervisor parses them.
fn read_jobs(path: &str) -> Result<Vec<Job>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let defaults = RequestDefaults::default();
    let mut jobs = Vec::new();
    for (i, line) in io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{path}: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        jobs.push(
            parse_line(&line, i as u64 + 1, &defaults)
                .map_err(|e| format!("{path}:{}: {e}", i + 1))?,
        );
    }
    Ok(jobs)
}

/// This process's user and system CPU seconds so far.
fn cpu() -> (f64, f64) {
    let secs = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(u) => (secs(u.user_time()), secs(u.system_time())),
        Err(_) => (0.0, 0.0),
    }
}

/// The reply of bench/nginx.conf.in's fast endpoint for this job: the same
/// body (with the job's raw `address` echoed, as nginx's `$arg_address`
/// does) and headers, so that the result file has a real one's size.
fn typical_response(job: &Job) -> Result<HttpResponse, String> {
    let address = job
        .url
        .split_once("address=")
        .map(|(_, rest)| rest.split('&').next().unwrap_or(""))
        .unwrap_or("");
    let body = format!(
        r#"{{"results":[{{"formatted_address":"100 Broadway, New York, NY 10005, USA","geometry":{{"location":{{"lat":40.7077,"lng":-74.0107}},"location_type":"ROOFTOP"}},"place_id":"ChIJ-bench","types":["street_address"]}}],"status":"OK","echo":"{address}"}}"#
    );
    let headers = [
        ("connection", "keep-alive".to_owned()),
        ("content-type", "application/json".to_owned()),
        ("date", httpdate::fmt_http_date(SystemTime::now())),
        ("server", "nginx/1.22.1".to_owned()),
        ("transfer-encoding", "chunked".to_owned()),
    ];
    Ok(HttpResponse {
        status: 200,
        headers: headers
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
        body_kind: BodyKind::Json,
        body: RawValue::from_string(body).map_err(|e| format!("{}: body: {e}", job.id))?,
    })
}

fn write(args: &[String]) -> Result<bool, String> {
    let (opts, jobs_path) = options(args, &["--out", "--batch"])?;
    let out = opt(&opts, "--out").ok_or(format!("--out DIR is required\n{USAGE}"))?;
    let batch: usize = opt(&opts, "--batch")
        .unwrap_or("8")
        .parse()
        .map_err(|e| format!("--batch: {e}"))?;
    let jobs = read_jobs(&jobs_path)?;
    let n = jobs.len();
    let pid = nix::unistd::getpid().as_raw();
    let started_at = timestamp(SystemTime::now());
    // Everything a writer is handed is made before the clock starts: the
    // floor is the writing, not the making of fake results.
    let mut results = Vec::with_capacity(n);
    for (i, job) in jobs.into_iter().enumerate() {
        let response = typical_response(&job)?;
        let record = AttemptRecord {
            attempt: 1,
            slot: i % 8,
            pid,
            host: None,
            started_at: started_at.clone(),
            // Noisy like a measured time, so serialization does the same
            // work as for a real one.
            elapsed_ms: 0.4 + (i % 1000) as f64 * 0.000_731_9,
            outcome: Outcome::Ok,
            status: Some(200),
            error: None,
            retry_in_ms: None,
        };
        results.push(FinalResult {
            job: Box::new(job),
            ok: true,
            response: Some(response),
            value: None,
            error: None,
            history: vec![record],
            finished: SystemTime::now(),
            dedup_of: None,
        });
    }
    let poller = Poller::new().map_err(|e| format!("poller: {e}"))?;
    let (tx, rx) = crossbeam_channel::unbounded::<Event>();
    let events = EventSender::new(tx, poller.waker());
    let mut output =
        Output::open(out.as_ref(), None, &events).map_err(|e| format!("{out}: {e}"))?;

    let (u0, s0) = cpu();
    let t0 = Instant::now();
    for (i, result) in results.into_iter().enumerate() {
        let record = result.history[0].clone();
        output
            .log_attempt(&result.job, &record)
            .map_err(|e| format!("joblog: {e}"))?;
        output.submit(result);
        if (i + 1) % batch.max(1) == 0 {
            output.flush_log().map_err(|e| format!("joblog: {e}"))?;
        }
    }
    output.flush_log().map_err(|e| format!("joblog: {e}"))?;
    output.finish();
    let seconds = t0.elapsed().as_secs_f64();
    let (u1, s1) = cpu();
    drop(output);
    let failed = rx
        .try_iter()
        .filter(|e| matches!(e, Event::WriteFailed { .. }))
        .count();
    let bytes = dir_result_bytes(out.as_ref());
    println!(
        "{{\"what\":\"write\",\"results\":{n},\"failed\":{failed},\"seconds\":{seconds:.4},\"per_s\":{:.1},\"mean_file_bytes\":{:.0},\"user_s\":{:.3},\"sys_s\":{:.3}}}",
        n as f64 / seconds,
        bytes as f64 / n.max(1) as f64,
        u1 - u0,
        s1 - s0,
    );
    Ok(failed == 0)
}

/// Bytes of the `*.json` files in `dir`.
fn dir_result_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

fn http(args: &[String]) -> Result<bool, String> {
    let (opts, jobs_path) = options(args, &["--connections"])?;
    let connections: usize = opt(&opts, "--connections")
        .unwrap_or("8")
        .parse()
        .map_err(|e| format!("--connections: {e}"))?;
    // Each job's request as a worker receives it: its wire line, parsed.
    let mut requests: Vec<JobRequest> = Vec::new();
    for job in read_jobs(&jobs_path)? {
        match ToWorker::parse(&job.wire) {
            Ok(ToWorker::Job {
                request: Some(r), ..
            }) => requests.push(r),
            _ => return Err(format!("{}: not an HTTP job", job.id)),
        }
    }
    let n = requests.len();
    let requests = Arc::new(requests);
    let next = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let (u0, s0) = cpu();
    let t0 = Instant::now();
    let threads: Vec<_> = (0..connections.max(1))
        .map(|_| {
            let (requests, next, failed) = (requests.clone(), next.clone(), failed.clone());
            std::thread::spawn(move || {
                let client = match Client::new(ClientConfig::default()) {
                    Ok(c) => c,
                    Err(e) => {
                        eprintln!("floor: {e}");
                        failed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                };
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(req) = requests.get(i) else { break };
                    match client.execute(req) {
                        Ok(r) if (200..300).contains(&r.status) => {}
                        _ => {
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            })
        })
        .collect();
    for t in threads {
        let _ = t.join();
    }
    let seconds = t0.elapsed().as_secs_f64();
    let (u1, s1) = cpu();
    let failed = failed.load(Ordering::Relaxed);
    println!(
        "{{\"what\":\"http\",\"calls\":{n},\"connections\":{connections},\"failed\":{failed},\"seconds\":{seconds:.4},\"per_s\":{:.1},\"user_s\":{:.3},\"sys_s\":{:.3}}}",
        n as f64 / seconds,
        u1 - u0,
        s1 - s0,
    );
    Ok(failed == 0)
}
