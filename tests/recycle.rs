//! Workers replaced on a schedule or when they grow, and a hard memory
//! cap: `--max-jobs-per-worker`, `--max-worker-rss`,
//! `--worker-memory-limit`. Nothing is lost or repeated by a replacement.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

fn summary(s: &Scratch) -> Value {
    serde_json::from_str(&std::fs::read_to_string(s.path("summary.json")).unwrap()).unwrap()
}

/// Every job ran exactly once: one joblog line each, one ok result each.
fn each_job_once(s: &Scratch, n: usize) {
    let joblog = std::fs::read_to_string(s.results().join("joblog.jsonl")).unwrap();
    assert_eq!(joblog.lines().count(), n, "one attempt per job");
    assert_eq!(s.result_ids().len(), n);
    for id in s.result_ids() {
        assert_eq!(s.result(&id)["ok"], true, "{id}");
    }
}

#[test]
fn workers_are_replaced_after_max_jobs_without_losing_or_repeating_one() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let n = 60;
    s.write("jobs.jsonl", &geocode_jobs(&api, n, ""));
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "--workers",
        "2",
        "--max-jobs-per-worker",
        "5",
        "--summary-json",
        "summary.json",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    each_job_once(&s, n);
    let mut per_pid: HashMap<i64, usize> = HashMap::new();
    for id in s.result_ids() {
        *per_pid
            .entry(s.result(&id)["pid"].as_i64().unwrap())
            .or_default() += 1;
    }
    assert!(per_pid.values().all(|&c| c <= 5), "{per_pid:?}");
    assert!(per_pid.len() >= n / 5, "{per_pid:?}");
    let replaced = summary(&s)["restarts"]["max jobs"].as_u64().unwrap_or(0);
    assert!(replaced >= 10, "{stderr}");
    assert!(
        stderr.contains("has done 5 jobs (--max-jobs-per-worker): replacing it"),
        "{stderr}"
    );
}

#[test]
fn a_worker_over_max_worker_rss_is_replaced_after_its_job() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let n = 30;
    // Jobs slow enough that the memory check (every 250 ms) comes while
    // the list still has jobs for a replacement.
    s.write(
        "jobs.jsonl",
        &geocode_jobs(&api, n, ",\"delay_ms\":\"100\""),
    );
    let worker = py_worker("leak-20");
    let sup = Running::start(s.supervisor().args([
        "--workers",
        "2",
        "--worker-cmd",
        &worker,
        "--max-worker-rss",
        "60MB",
        "--summary-json",
        "summary.json",
        "jobs.jsonl",
    ]));
    let (code, stderr) = sup.wait(LIMIT);
    assert_eq!(code, Some(0), "{stderr}");
    each_job_once(&s, n);
    assert!(
        stderr.contains("over --max-worker-rss 60.0 MB: replacing it after its current job"),
        "{stderr}"
    );
    let by_memory = summary(&s)["restarts"]["memory"].as_u64().unwrap_or(0);
    assert!(by_memory >= 1, "{stderr}");
}

#[test]
fn the_status_table_shows_each_workers_memory() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "jobs.jsonl",
        &geocode_jobs(&api, 400, ",\"delay_ms\":\"20\""),
    );
    let sup = Running::start(s.supervisor().args(["--workers", "2", "jobs.jsonl"]));
    wait_until(LIMIT, "results", || s.result_ids().len() >= 4);
    sup.signal(Signal::SIGUSR1);
    wait_until(LIMIT, "the status table", || {
        sup.stderr().contains("jobs: ")
    });
    let table = sup.stderr();
    let header = table.lines().find(|l| l.starts_with("slot")).unwrap();
    assert!(header.ends_with("rss  job"), "{header}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with('0') && l.contains("MB")),
        "{table}"
    );
    sup.signal(Signal::SIGTERM);
    let _ = sup.wait(LIMIT);
}

#[test]
fn a_worker_over_its_memory_limit_dies_and_the_result_says_why() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let n = 12;
    s.write("jobs.jsonl", &geocode_jobs(&api, n, ""));
    let worker = py_worker("leak-40");
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "--workers",
        "1",
        "--worker-cmd",
        &worker,
        "--worker-memory-limit",
        "200MB",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(s.result_ids().len(), n);
    let crashed: Vec<Value> = s
        .result_ids()
        .iter()
        .map(|id| s.result(id))
        .filter(|r| r["attempts"] == 2)
        .collect();
    assert!(!crashed.is_empty(), "{stderr}");
    let message = crashed[0]["history"][0]["error"]["message"]
        .as_str()
        .unwrap();
    assert!(
        message.contains("ran out of memory under --worker-memory-limit 200.0 MB"),
        "{message}"
    );
    assert!(stderr.contains("MemoryError"), "{stderr}");
}

#[test]
fn per_worker_memory_options_need_processes() {
    let s = Scratch::new();
    s.write("jobs.jsonl", "{\"url\":\"http://127.0.0.1:9/\"}\n");
    for flag in ["--max-worker-rss", "--worker-memory-limit"] {
        let (code, stderr) =
            run_supervisor(
                s.supervisor()
                    .args(["--threads", flag, "100MB", "jobs.jsonl"]),
            );
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains(&format!("drop --threads or {flag}")),
            "{stderr}"
        );
    }
}
