//! End-to-end tests of `--threads`: the same jobs, the same result files,
//! the same controls, with the workers as threads inside the supervisor.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

/// A result file without what differs from run to run: who ran it, when,
/// how long it took, and the server's Date header.
fn comparable(mut r: Value) -> Value {
    let o = r.as_object_mut().unwrap();
    for k in ["pid", "slot", "started_at", "finished_at", "elapsed_ms"] {
        o.remove(k);
    }
    if let Some(h) = o.get_mut("history").and_then(Value::as_array_mut) {
        for a in h {
            let a = a.as_object_mut().unwrap();
            for k in ["pid", "slot", "started_at", "elapsed_ms"] {
                a.remove(k);
            }
        }
    }
    if let Some(h) = r
        .pointer_mut("/response/headers")
        .and_then(Value::as_object_mut)
    {
        h.remove("date");
    }
    r
}

fn all_results(s: &Scratch, dir: &str) -> BTreeMap<String, Value> {
    std::fs::read_dir(s.path(dir))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|n| n.strip_suffix(".json").map(String::from))
        .map(|id| {
            let text = std::fs::read_to_string(s.path(dir).join(format!("{id}.json"))).unwrap();
            (id, comparable(serde_json::from_str(&text).unwrap()))
        })
        .collect()
}

#[test]
fn threads_and_processes_write_the_same_results_for_the_demo_jobs() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let jobs = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/geocode.jsonl"),
    )
    .unwrap();
    s.write("jobs.jsonl", &jobs);
    let url = api.geocode();
    let run = |mode: &[&str], out: &str| {
        let mut cmd = std::process::Command::new(SUPERVISOR);
        cmd.current_dir(s.dir.path())
            .stdin(std::process::Stdio::null())
            .args(["--workers", "8", "--url", &url, "--out", out])
            .args(mode)
            .arg("jobs.jsonl");
        run_supervisor(&mut cmd)
    };
    let (code, p_err) = run(&[], "by-processes");
    assert_eq!(code, Some(0), "{p_err}");
    let (code, t_err) = run(&["--threads"], "by-threads");
    assert_eq!(code, Some(0), "{t_err}");
    assert!(t_err.contains("152 jobs: 152 ok, 0 failed"), "{t_err}");
    assert!(t_err.contains("worker 0 started (thread "), "{t_err}");
    assert!(t_err.contains("all 8 workers ready in "), "{t_err}");

    let by_processes = all_results(&s, "by-processes");
    let by_threads = all_results(&s, "by-threads");
    assert_eq!(by_processes.len(), 152);
    assert_eq!(
        by_processes.keys().collect::<Vec<_>>(),
        by_threads.keys().collect::<Vec<_>>()
    );
    for (id, p) in &by_processes {
        assert_eq!(p, &by_threads[id], "{id}");
    }
    // A thread's results name the process that ran it: the supervisor.
    let pids: std::collections::HashSet<i64> = by_threads
        .keys()
        .map(|id| s.result_in("by-threads", id)["pid"].as_i64().unwrap())
        .collect();
    assert_eq!(pids.len(), 1, "{pids:?}");
}

#[test]
fn threads_with_a_worker_command_is_a_usage_error() {
    let s = Scratch::new();
    s.write("jobs.jsonl", "{\"url\":\"http://127.0.0.1:9/\"}\n");
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "--threads",
        "--worker-cmd",
        "python3 worker.py",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("a --worker-cmd program can only run as separate processes"),
        "{stderr}"
    );
    assert!(!s.results().exists(), "nothing is written");
    // --isolation threads is the same.
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "--isolation",
        "threads",
        "--worker-cmd",
        "python3 worker.py",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(2), "{stderr}");
}

#[test]
fn ctrl_c_in_thread_mode_finishes_the_jobs_in_flight_and_resume_finishes_the_list() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let n = 600;
    s.write("jobs.jsonl", &geocode_jobs(&api, n, ",\"delay_ms\":\"20\""));
    let sup = Running::start(s.supervisor().args(["--threads", "-w", "4", "jobs.jsonl"]));
    wait_until(LIMIT, "some results", || s.result_ids().len() >= 20);
    sup.signal(Signal::SIGINT);
    let (code, stderr) = sup.wait(LIMIT);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted: sending no more jobs"),
        "{stderr}"
    );
    assert!(stderr.contains("--resume"), "{stderr}");
    let first = s.result_ids();
    assert!(first.len() < n, "interrupted before the end");
    for id in &first {
        assert_eq!(s.result(id)["ok"], true, "{id}");
    }

    let (code, stderr) =
        run_supervisor(
            s.supervisor()
                .args(["--threads", "-w", "4", "--resume", "jobs.jsonl"]),
        );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("{} skipped", first.len())),
        "{stderr}"
    );
    let ids = s.result_ids();
    assert_eq!(ids.len(), n);
    // Every job ran exactly once over both runs.
    let joblog = std::fs::read_to_string(s.results().join("joblog.jsonl")).unwrap();
    let mut attempts: BTreeMap<String, u32> = BTreeMap::new();
    for line in joblog.lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        *attempts
            .entry(v["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(attempts.len(), n);
    assert!(attempts.values().all(|&a| a == 1), "{attempts:?}");
}

#[test]
fn usr1_lists_threads_and_ttin_hup_steer_them() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "jobs.jsonl",
        &geocode_jobs(&api, 4000, ",\"delay_ms\":\"20\""),
    );
    let sup = Running::start(s.supervisor().args(["--threads", "-w", "2", "jobs.jsonl"]));
    wait_until(LIMIT, "two threads ready", || {
        sup.stderr().contains("all 2 workers ready")
    });
    sup.signal(Signal::SIGTTIN);
    wait_until(LIMIT, "a third thread", || {
        sup.stderr().contains("worker 2 started (thread ")
    });
    sup.signal(Signal::SIGHUP);
    wait_until(LIMIT, "threads replaced", || {
        sup.stderr().matches(" started (thread ").count() >= 6
    });
    let mark = sup.stderr().len();
    sup.signal(Signal::SIGUSR1);
    wait_until(LIMIT, "the status table", || {
        sup.stderr()[mark..].contains("jobs: ")
    });
    let table = sup.stderr()[mark..].to_string();
    let header = table.lines().find(|l| l.starts_with("slot")).unwrap();
    assert!(header.contains("tid"), "{table}");
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert_eq!(rows.len(), 3, "{table}");
    sup.signal(Signal::SIGTERM);
    let (code, stderr) = sup.wait(LIMIT);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(stderr.contains("rolling restart"), "{stderr}");
    for id in s.result_ids() {
        assert_eq!(s.result(&id)["attempts"], 1, "{id}: nothing repeated");
    }
}

#[test]
fn a_hung_api_in_thread_mode_ends_in_clean_timeouts_inside_the_deadline() {
    // The worker's own HTTP timeout sits inside the deadline, so a thread
    // returns from a hung call by itself: nothing is abandoned.
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 4, ",\"hang\":\"1\""));
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "--threads",
        "-w",
        "4",
        "--timeout",
        "1s",
        "--retries",
        "0",
        "--summary-json",
        "summary.json",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(1), "{stderr}");
    for id in s.result_ids() {
        let r = s.result(&id);
        assert_eq!(r["ok"], false);
        assert_eq!(r["error"]["kind"], "timeout", "{r}");
        assert_eq!(r["history"][0]["outcome"], "error", "{r}");
    }
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["abandoned_threads"], 0, "{summary}");
    assert_eq!(summary["failed_by_kind"]["timeout"], 4, "{summary}");
}
