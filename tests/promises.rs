//! End-to-end tests of what the documents promise about workers and
//! requests, on the real binaries: a worker that never says `ready`, one
//! that answers with the wrong id, or with both a response and an error,
//! one that speaks another protocol version, one that closes its stdout
//! but keeps running; `--max-body`, `--header`, `--user-agent`, JSON
//! bodies and methods other than GET. Each checks the result files, the
//! exit status and the log lines a person reads.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use serde_json::Value;

/// The one line of `stderr` that starts with `start`.
fn line_starting<'a>(stderr: &'a str, start: &str) -> &'a str {
    let found: Vec<&str> = stderr.lines().filter(|l| l.starts_with(start)).collect();
    assert_eq!(found.len(), 1, "one line starting {start:?} in:\n{stderr}");
    found[0]
}

/// The joblog's lines, parsed (none when there is no joblog).
fn joblog(s: &Scratch) -> Vec<Value> {
    std::fs::read_to_string(s.results().join("joblog.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The supervisor's last two lines when workers keep failing to start.
fn assert_gave_up(stderr: &str, mode: &str, last: &str) {
    let cmd = py_worker(mode);
    let expected = format!(
        "supervisor: error: workers keep failing: `{cmd}` failed 5 times in a row without finishing a job; last: {last}\n\
         no more workers are started: run the worker command by hand to see why it fails, or fix --worker-cmd\n"
    );
    assert!(
        stderr.ends_with(&expected),
        "expected the run to end with:\n{expected}\ngot:\n{stderr}"
    );
}

#[test]
fn a_worker_that_never_says_ready_is_stopped_at_the_start_timeout() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 3, ""));
    // slow-start sleeps 30 s before it says ready.
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "1",
        "--start-timeout",
        "400ms",
        "--kill-grace",
        "300ms",
        "--worker-cmd",
        &py_worker("slow-start"),
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(2), "{stderr}");
    let pids = worker_pids(&stderr);
    assert_eq!(
        pids.len(),
        5,
        "five starts, then the run gives up:\n{stderr}"
    );
    for pid in &pids {
        line_starting(
            &stderr,
            &format!("supervisor: worker 0 (pid {pid}) sent no `ready` within 400ms"),
        );
    }
    let last = pids[4];
    assert_gave_up(
        &stderr,
        "slow-start",
        &format!("worker 0 (pid {last}) sent no `ready` within 400ms"),
    );
    // Nothing ran: no result file, no attempt, and no worker left.
    assert!(s.result_ids().is_empty(), "{:?}", s.result_ids());
    assert!(joblog(&s).is_empty());
    assert_all_gone(&pids, Duration::from_secs(5));
}

#[test]
fn a_worker_that_exits_before_ready_is_retried_then_the_run_gives_up() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 3, ""));
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "1",
        "--worker-cmd",
        &py_worker("no-ready"),
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(2), "{stderr}");
    let pids = worker_pids(&stderr);
    assert_eq!(pids.len(), 5, "{stderr}");
    for pid in &pids {
        // Its stderr line, passed on with its slot and pid, then the verdict.
        line_starting(
            &stderr,
            &format!("[worker 0 pid {pid}] no-ready worker giving up"),
        );
        line_starting(
            &stderr,
            &format!("supervisor: worker 0 (pid {pid}) exited before `ready` with exit status 4"),
        );
    }
    assert_gave_up(
        &stderr,
        "no-ready",
        &format!(
            "worker 0 (pid {}) exited before `ready` with exit status 4; its last stderr lines:\n    no-ready worker giving up",
            pids[4]
        ),
    );
    assert!(s.result_ids().is_empty());
    assert!(joblog(&s).is_empty());
}

#[test]
fn a_result_with_the_wrong_id_is_a_protocol_error_charged_to_the_job() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 2, ""));
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "1",
        "--retries",
        "0",
        "--worker-cmd",
        &py_worker("wrong-id"),
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(1), "{stderr}");
    let pids = worker_pids(&stderr);
    assert_eq!(
        pids.len(),
        2,
        "the second job ran on a replacement:\n{stderr}"
    );
    // The first job's worker is replaced; after the last job there is
    // nothing left to run.
    let then = ["; starting a replacement", ""];
    for ((pid, id), then) in pids.iter().zip(["job-00000", "job-00001"]).zip(then) {
        let why = format!(
            "worker 0 (pid {pid}) broke the protocol (it sent a result for job \"someone-else\" while it runs job \"{id}\") and was killed"
        );
        assert_eq!(
            line_starting(&stderr, &format!("supervisor: {why}")),
            format!(
                "supervisor: {why} while running job \"{id}\" (attempt 1 of 1): no attempts left{then}"
            )
        );
        let r = s.result(id);
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(r["attempts"], 1, "{r}");
        assert_eq!(r["error"]["kind"], "protocol_error", "{r}");
        assert_eq!(r["error"]["message"], why.as_str(), "{r}");
        assert!(r.get("response").is_none(), "{r}");
        assert_eq!(r["history"][0]["outcome"], "protocol_error", "{r}");
        assert_eq!(r["history"][0]["pid"], *pid, "{r}");
    }
    assert!(
        stderr.contains("\n  failed by kind: protocol_error: 2\n"),
        "{stderr}"
    );
    assert_all_gone(&pids, Duration::from_secs(5));
}

#[test]
fn a_result_with_both_a_response_and_an_error_is_a_protocol_error() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 1, ""));
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "1",
        "--retries",
        "0",
        "--worker-cmd",
        &py_worker("both"),
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(1), "{stderr}");
    let pid = worker_pids(&stderr)[0];
    let why = format!(
        "worker 0 (pid {pid}) broke the protocol (it sent a result for job \"job-00000\" with both `response` and `error`) and was killed"
    );
    assert_eq!(
        line_starting(&stderr, &format!("supervisor: {why}")),
        format!(
            "supervisor: {why} while running job \"job-00000\" (attempt 1 of 1): no attempts left"
        )
    );
    let r = s.result("job-00000");
    assert_eq!(r["error"]["kind"], "protocol_error", "{r}");
    assert_eq!(r["error"]["message"], why.as_str(), "{r}");
}

#[test]
fn a_worker_that_speaks_another_protocol_version_never_gets_a_job() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 2, ""));
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "1",
        "--worker-cmd",
        &py_worker("protocol-2"),
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(2), "{stderr}");
    let pids = worker_pids(&stderr);
    assert_eq!(pids.len(), 5, "{stderr}");
    for pid in &pids {
        let line = line_starting(
            &stderr,
            &format!(
                "supervisor: worker 0 (pid {pid}) broke the protocol (it speaks protocol 2, this supervisor speaks 1) and was killed"
            ),
        );
        assert!(!line.contains("while running job"), "{line}");
    }
    assert_gave_up(
        &stderr,
        "protocol-2",
        &format!(
            "worker 0 (pid {}) broke the protocol: it speaks protocol 2, this supervisor speaks 1",
            pids[4]
        ),
    );
    assert!(s.result_ids().is_empty());
    assert!(joblog(&s).is_empty(), "no job was sent");
    assert_all_gone(&pids, Duration::from_secs(5));
}

#[test]
fn a_worker_that_closes_its_stdout_but_keeps_running_is_stopped() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 1, ""));
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "1",
        "--retries",
        "0",
        "--worker-cmd",
        &py_worker("close-stdout"),
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(1), "{stderr}");
    let pids = worker_pids(&stderr);
    assert_eq!(pids.len(), 1, "{stderr}");
    let pid = pids[0];
    line_starting(
        &stderr,
        &format!("[worker 0 pid {pid}] closing stdout on job job-00000"),
    );
    let why = format!(
        "worker 0 (pid {pid}) broke the protocol (it closed its stdout but kept running) and was killed"
    );
    assert_eq!(
        line_starting(&stderr, &format!("supervisor: {why}")),
        format!(
            "supervisor: {why} while running job \"job-00000\" (attempt 1 of 1): no attempts left"
        )
    );
    let r = s.result("job-00000");
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["error"]["kind"], "protocol_error", "{r}");
    assert_eq!(r["error"]["message"], why.as_str(), "{r}");
    assert_eq!(r["history"][0]["outcome"], "protocol_error", "{r}");
    // Stopped 500 ms after its stdout closed, not before.
    assert!(r["elapsed_ms"].as_f64().unwrap() >= 500.0, "{r}");
    assert_all_gone(&pids, Duration::from_secs(5));
}

#[test]
fn a_body_over_max_body_fails_as_body_too_large_in_both_modes() {
    let api = DemoApi::start();
    for mode in [&[][..], &["--threads"][..]] {
        let s = Scratch::new();
        let url = api.geocode();
        s.write(
            "jobs.jsonl",
            &format!(
                "{{\"id\":\"fits\",\"url\":\"{url}\",\"params\":{{\"address\":\"Paris\",\"body_bytes\":1000}}}}\n\
                 {{\"id\":\"big\",\"url\":\"{url}\",\"params\":{{\"address\":\"Paris\",\"body_bytes\":1001}}}}\n"
            ),
        );
        let (code, stderr) = run_supervisor(s.supervisor().args(mode).args([
            "-w",
            "1",
            "--max-body",
            "1000",
            "jobs.jsonl",
        ]));
        assert_eq!(code, Some(1), "{mode:?}: {stderr}");
        // The limit is inclusive: a body of exactly --max-body bytes is fine.
        let fits = s.result("fits");
        assert_eq!(fits["ok"], true, "{fits}");
        assert!(fits["response"]["body"]["padding"].is_string(), "{fits}");
        let big = s.result("big");
        assert_eq!(big["ok"], false, "{big}");
        assert_eq!(big["error"]["kind"], "body_too_large", "{big}");
        assert_eq!(big["attempts"], 1, "not retried: {big}");
        assert!(big.get("response").is_none(), "{big}");
        let host = api.base.trim_start_matches("http://");
        let message = format!(
            "response body from {host} is larger than the limit of 1000 bytes (1000 B); raise the worker's max body size to accept it"
        );
        assert_eq!(big["error"]["message"], message.as_str(), "{big}");
        assert!(
            stderr.contains("\n  failed by kind: body_too_large: 1\n"),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("\n    big: body_too_large: {message}\n")),
            "{stderr}"
        );
    }
}

/// The `/echo` answer of a result: what the server received.
fn echoed(s: &Scratch, id: &str) -> Value {
    let r = s.result(id);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["response"]["body_kind"], "json", "{r}");
    r["response"]["body"].clone()
}

#[test]
fn header_and_user_agent_reach_the_server_and_a_jobs_own_header_wins() {
    let api = DemoApi::start();
    let echo = format!("{}/echo", api.base);
    let jobs = format!(
        "{{\"id\":\"plain\",\"url\":\"{echo}\"}}\n\
         {{\"id\":\"own\",\"url\":\"{echo}\",\"headers\":{{\"x-api-version\":\"4\",\"User-Agent\":\"job-agent/2\"}}}}\n"
    );
    for mode in [&[][..], &["--threads"][..]] {
        let s = Scratch::new();
        s.write("jobs.jsonl", &jobs);
        let (code, stderr) = run_supervisor(s.supervisor().args(mode).args([
            "-w",
            "1",
            "--header",
            "X-Api-Version: 3",
            "--header",
            "X-Trace: t-1",
            "--user-agent",
            "my-project/1.0 (me@example.org)",
            "jobs.jsonl",
        ]));
        assert_eq!(code, Some(0), "{mode:?}: {stderr}");
        assert!(stderr.contains("\n2 jobs: 2 ok, 0 failed in "), "{stderr}");
        let plain = echoed(&s, "plain");
        assert_eq!(plain["method"], "GET");
        assert_eq!(plain["headers"]["x-api-version"], "3", "{plain}");
        assert_eq!(plain["headers"]["x-trace"], "t-1", "{plain}");
        assert_eq!(
            plain["headers"]["user-agent"], "my-project/1.0 (me@example.org)",
            "{plain}"
        );
        // The job's own headers win over --header and --user-agent, whatever
        // their letter case, and are sent once.
        let own = echoed(&s, "own");
        assert_eq!(own["headers"]["x-api-version"], "4", "{own}");
        assert_eq!(own["headers"]["user-agent"], "job-agent/2", "{own}");
        assert_eq!(own["headers"]["x-trace"], "t-1", "{own}");
    }
    // Without --user-agent: callpool/<version>.
    let s = Scratch::new();
    s.write("jobs.jsonl", &jobs);
    let (code, stderr) = run_supervisor(s.supervisor().args(["-w", "1", "jobs.jsonl"]));
    assert_eq!(code, Some(0), "{stderr}");
    let ua = echoed(&s, "plain")["headers"]["user-agent"].clone();
    assert_eq!(
        ua,
        concat!("callpool/", env!("CARGO_PKG_VERSION")),
        "default user agent"
    );
}

#[test]
fn json_bodies_and_methods_other_than_get_are_sent_as_documented() {
    let api = DemoApi::start();
    let echo = format!("{}/echo", api.base);
    let s = Scratch::new();
    s.write(
        "jobs.jsonl",
        &format!(
            "{{\"id\":\"post\",\"method\":\"post\",\"url\":\"{echo}/items\",\"body\":{{\"n\":1,\"s\":\"x\",\"list\":[true,null],\"f\":1.50}}}}\n\
             {{\"id\":\"put\",\"method\":\"PUT\",\"url\":\"{echo}\",\"headers\":{{\"Content-Type\":\"text/plain\"}},\"body\":\"exact {{ text }}\"}}\n\
             {{\"id\":\"own-type\",\"method\":\"PATCH\",\"url\":\"{echo}\",\"headers\":{{\"content-type\":\"application/merge-patch+json\"}},\"body\":{{\"a\":null}}}}\n\
             {{\"id\":\"delete\",\"method\":\"DELETE\",\"url\":\"{echo}\",\"params\":{{\"id\":7}}}}\n\
             {{\"id\":\"big-number\",\"method\":\"POST\",\"url\":\"{echo}\",\"body\":{{\"id\":123456789012345678901234567890}}}}\n\
             {{\"id\":\"big-number-text\",\"method\":\"POST\",\"url\":\"{echo}\",\"headers\":{{\"content-type\":\"application/json\"}},\"body\":\"{{\\\"id\\\":123456789012345678901234567890}}\"}}\n"
        ),
    );
    let (code, stderr) = run_supervisor(s.supervisor().args(["-w", "2", "jobs.jsonl"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("\n6 jobs: 6 ok, 0 failed in "), "{stderr}");

    // A JSON value is serialized compactly, keys in their order, with
    // content-type application/json; the method is upper-cased.
    let post = echoed(&s, "post");
    assert_eq!(post["method"], "POST");
    assert_eq!(post["path"], "/echo/items");
    assert_eq!(post["headers"]["content-type"], "application/json");
    assert_eq!(
        post["body"],
        r#"{"n":1,"s":"x","list":[true,null],"f":1.50}"#
    );
    assert_eq!(s.result("post")["request"]["method"], "POST");
    // A string is sent as it is, under the job's own content type.
    let put = echoed(&s, "put");
    assert_eq!(put["method"], "PUT");
    assert_eq!(put["headers"]["content-type"], "text/plain");
    assert_eq!(put["body"], "exact { text }");
    // A job's content-type is kept for a JSON value too.
    let patch = echoed(&s, "own-type");
    assert_eq!(patch["method"], "PATCH");
    assert_eq!(
        patch["headers"]["content-type"],
        "application/merge-patch+json"
    );
    assert_eq!(patch["body"], r#"{"a":null}"#);
    // No body, no content-type.
    let delete = echoed(&s, "delete");
    assert_eq!(delete["method"], "DELETE");
    assert_eq!(delete["raw_query"], "id=7");
    assert_eq!(delete["body"], "");
    assert!(delete["headers"].get("content-type").is_none(), "{delete}");
    // A JSON number goes through as written, every digit (issue 20:
    // it went through a double before); as a string body too.
    assert_eq!(
        echoed(&s, "big-number")["body"],
        r#"{"id":123456789012345678901234567890}"#
    );
    assert_eq!(
        echoed(&s, "big-number-text")["body"],
        r#"{"id":123456789012345678901234567890}"#
    );
}
