//! Which time each recorded time is (docs/formats.md, docs/protocol.md §4):
//! a job queued on a worker's stdin behind another (`--prefetch`) is timed
//! from the result of the job before it, and, when the worker's own
//! `elapsed_ms` is longer, from that; so an attempt of a 50 ms call never
//! shows less than 50 ms, with the http-worker or with a worker that runs
//! its queued jobs at the same time against the protocol's rule.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, SystemTime};

use common::*;
use serde_json::Value;

/// The demo API's answer delay in these tests.
const DELAY_MS: f64 = 50.0;

fn joblog(s: &Scratch) -> Vec<Value> {
    std::fs::read_to_string(s.results().join("joblog.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn time(v: &Value) -> SystemTime {
    humantime::parse_rfc3339(v.as_str().unwrap()).unwrap()
}

/// The p50 of "latency of ok attempts: p50 X ms, ..." in the summary.
fn summary_p50_ms(stderr: &str) -> f64 {
    let line = stderr
        .lines()
        .find(|l| l.starts_with("  latency of ok attempts: p50 "))
        .unwrap_or_else(|| panic!("no latency line in:\n{stderr}"));
    line["  latency of ok attempts: p50 ".len()..]
        .split(' ')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Every result is ok and every ok attempt, in the result files and in the
/// joblog, took the API's delay or more.
fn assert_every_attempt_took_the_delay(s: &Scratch, n: usize) -> Vec<Value> {
    let ids = s.result_ids();
    assert_eq!(ids.len(), n);
    for id in &ids {
        let r = s.result(id);
        assert_eq!(r["ok"], true, "{r}");
        let elapsed = r["elapsed_ms"].as_f64().unwrap();
        assert!(elapsed >= DELAY_MS, "{id}: elapsed_ms {elapsed}: {r}");
        let last = &r["history"][r["history"].as_array().unwrap().len() - 1];
        assert_eq!(last["elapsed_ms"], r["elapsed_ms"]);
        assert_eq!(last["started_at"], r["started_at"]);
    }
    let lines = joblog(s);
    assert_eq!(lines.len(), n, "one attempt each");
    for l in &lines {
        assert_eq!(l["outcome"], "ok", "{l}");
        let elapsed = l["elapsed_ms"].as_f64().unwrap();
        assert!(elapsed >= DELAY_MS, "joblog elapsed_ms {elapsed}: {l}");
    }
    lines
}

#[test]
fn with_prefetch_every_attempt_of_a_50_ms_call_shows_50_ms_or_more() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let n = 60;
    s.write("jobs.jsonl", &geocode_jobs(&api, n, ",\"delay_ms\":\"50\""));
    // 60 jobs on 2 workers: each holds 3 (one running, two queued on its
    // stdin) until the list runs low.
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "2",
        "--prefetch",
        "3",
        "--summary-json",
        "summary.json",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    assert_every_attempt_took_the_delay(&s, n);
    assert!(summary_p50_ms(&stderr) >= DELAY_MS, "{stderr}");
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("summary.json")).unwrap()).unwrap();
    for q in ["p50", "p95", "max"] {
        let ms = summary["latency_ms"][q].as_f64().unwrap();
        assert!(ms >= DELAY_MS, "latency_ms.{q} = {ms}: {summary}");
    }
}

#[test]
fn a_worker_that_runs_its_queued_jobs_at_once_is_timed_by_its_own_elapsed_ms() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let n = 24;
    s.write("jobs.jsonl", &geocode_jobs(&api, n, ",\"delay_ms\":\"50\""));
    // The worker starts every job it reads at once and answers in order,
    // with elapsed_ms: it breaks the one-at-a-time rule, which the
    // supervisor cannot see; the run goes on.
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "2",
        "--prefetch",
        "3",
        "--worker-cmd",
        &py_worker("concurrent"),
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("broke the protocol"), "{stderr}");
    assert!(
        stderr.contains(&format!("\n{n} jobs: {n} ok, 0 failed in ")),
        "{stderr}"
    );
    let lines = assert_every_attempt_took_the_delay(&s, n);
    assert!(summary_p50_ms(&stderr) >= DELAY_MS, "{stderr}");
    // The attempts of one worker overlap in time: a queued job is dated
    // from when the worker's own clock says it started, not from the
    // previous result.
    let overlapping = lines.iter().any(|a| {
        lines.iter().any(|b| {
            let (a_start, b_start) = (time(&a["started_at"]), time(&b["started_at"]));
            let a_end = a_start + Duration::from_secs_f64(a["elapsed_ms"].as_f64().unwrap() / 1e3);
            a["pid"] == b["pid"]
                && a["id"] != b["id"]
                && a_start <= b_start
                && b_start + Duration::from_millis(10) < a_end
        })
    });
    assert!(
        overlapping,
        "no two attempts of a worker overlap: {lines:?}"
    );
}

#[test]
fn without_elapsed_ms_such_a_worker_s_queued_jobs_look_as_short_as_the_gap_between_results() {
    // What the supervisor cannot fix: a worker that runs its queued jobs at
    // the same time and reports no elapsed_ms. Its queued jobs are timed
    // from the previous result, which came moments before their own.
    let api = DemoApi::start();
    let s = Scratch::new();
    let n = 24;
    s.write("jobs.jsonl", &geocode_jobs(&api, n, ",\"delay_ms\":\"50\""));
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "2",
        "--prefetch",
        "3",
        "--worker-cmd",
        &py_worker("concurrent-no-elapsed"),
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    let short = joblog(&s)
        .iter()
        .filter(|l| l["elapsed_ms"].as_f64().unwrap() < DELAY_MS / 2.0)
        .count();
    assert!(short > 0, "some queued job looked shorter than its call");
}
