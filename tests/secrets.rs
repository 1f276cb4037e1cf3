//! A secret given through `${NAME}` reaches the API and nothing else: every
//! file a run leaves, its stderr (with `-v`, with the status table, with a
//! worker that echoes its stdin to stderr) and its summary are searched
//! for the value, in each mode.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

const SECRET: &str = "sk-LEAKCHECK-7731-abcdef";

/// Runs a job list whose key is secret, sends USR1 while it runs, and
/// checks that the secret is nowhere but that REDACTED is.
fn run_and_search(mode: &[&str]) -> String {
    let api = DemoApi::start();
    let s = Scratch::new();
    // Some ok, some failing (their reasons go into the summary); slow
    // enough that the status table is asked for while jobs are in flight.
    let mut jobs = geocode_jobs(&api, 12, ",\"delay_ms\":\"150\"");
    jobs.push_str(&format!(
        "{{\"id\":\"fails\",\"url\":\"{}\",\"params\":{{\"status\":\"500\",\"address\":\"x\"}}}}\n",
        api.geocode()
    ));
    s.write("jobs.jsonl", &jobs);
    let sup = Running::start(
        s.supervisor()
            .env("CALLPOOL_TEST_SECRET", SECRET)
            .args([
                "-v",
                "--workers",
                "2",
                "--retries",
                "0",
                "--param",
                "key=${CALLPOOL_TEST_SECRET}",
                "--header",
                "Authorization: Bearer ${CALLPOOL_TEST_SECRET}",
                "--summary-json",
                "summary.json",
            ])
            .args(mode)
            .arg("jobs.jsonl"),
    );
    wait_until(LIMIT, "a job in flight", || {
        sup.stderr().contains("started") && !s.result_ids().is_empty()
    });
    sup.signal(Signal::SIGUSR1);
    wait_until(LIMIT, "the status table", || {
        sup.stderr().contains("jobs: ")
    });
    let (code, stderr) = sup.wait(LIMIT);
    assert_eq!(code, Some(1), "{stderr}");

    assert!(!stderr.contains(SECRET), "stderr:\n{stderr}");
    let files = all_files(s.dir.path());
    assert!(files.len() > 12, "{} files", files.len());
    for (path, text) in &files {
        if path.ends_with("jobs.jsonl") {
            continue;
        }
        assert!(!text.contains(SECRET), "{path} holds the secret");
    }
    // The key went out, and the API echoed it back: shown as REDACTED.
    let r = s.result("job-00000");
    assert_eq!(r["response"]["body"]["echo"]["key"], "REDACTED", "{r}");
    assert!(
        r["request"]["url"]
            .as_str()
            .unwrap()
            .contains("key=REDACTED")
    );
    stderr
}

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn no_secret_leaks_from_a_run_of_worker_processes() {
    let stderr = run_and_search(&[]);
    assert!(
        stderr.contains("slot") && stderr.contains("attempt"),
        "{stderr}"
    );
}

#[test]
fn no_secret_leaks_from_a_run_of_worker_threads() {
    let _ = run_and_search(&["--threads"]);
}

#[test]
fn no_secret_leaks_from_a_worker_that_echoes_its_input_to_stderr() {
    let worker = py_worker("echo-stderr");
    let stderr = run_and_search(&["--worker-cmd", &worker]);
    // The worker did echo its job lines, key and all, and they were
    // scrubbed on the way to the terminal.
    assert!(
        stderr
            .lines()
            .any(|l| l.contains("] got {") && l.contains("key=REDACTED")),
        "{stderr}"
    );
}

#[test]
fn a_bad_url_built_from_a_secret_is_quoted_as_written() {
    let s = Scratch::new();
    // Expanded, the host is invalid; the message must not show the value.
    s.write(
        "jobs.jsonl",
        "{\"url\":\"http://${CALLPOOL_TEST_SECRET}/x\"}\n",
    );
    let bad = "[sk-LEAKCHECK-7731";
    let (code, stderr) = run_supervisor(
        s.supervisor()
            .env("CALLPOOL_TEST_SECRET", bad)
            .arg("jobs.jsonl"),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("LEAKCHECK"), "{stderr}");
    assert!(
        stderr
            .contains("jobs.jsonl:1: url \"http://${CALLPOOL_TEST_SECRET}/x\" is not a valid URL"),
        "{stderr}"
    );
    // The same through --url.
    s.write("jobs2.jsonl", "{\"params\":{\"a\":\"b\"}}\n");
    let (code, stderr) = run_supervisor(s.supervisor().env("CALLPOOL_TEST_SECRET", bad).args([
        "--url",
        "http://${CALLPOOL_TEST_SECRET}/x",
        "jobs2.jsonl",
    ]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!stderr.contains("LEAKCHECK"), "{stderr}");
}
