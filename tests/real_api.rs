//! End-to-end tests of the features real APIs need: retries with the waits
//! the API asks for, body rules, a global rate, secrets kept out of results.

mod common;

use std::time::{Duration, Instant};

use common::*;

const LIMIT: Duration = Duration::from_secs(60);

fn job(api: &DemoApi, id: &str, params: &str) -> String {
    format!(
        "{{\"id\":\"{id}\",\"url\":\"{}\",\"params\":{{{params}}}}}\n",
        api.geocode()
    )
}

#[test]
fn retry_after_is_obeyed_between_attempts() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "jobs.jsonl",
        &job(&api, "busy", r#""address":"Lima","fail_first":"2","fail_key":"ra","fail_status":"503","retry_after":"1""#),
    );
    let start = Instant::now();
    let out = run_bounded(s.supervisor().args(["-w", "2", "jobs.jsonl"]), LIMIT);
    let took = start.elapsed();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let r = s.result("busy");
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["attempts"], 3, "{r}");
    for i in 0..2 {
        assert_eq!(r["history"][i]["status"], 503, "{r}");
        assert_eq!(
            r["history"][i]["retry_in_ms"], 1000,
            "the wait asked for: {r}"
        );
    }
    assert!(r["history"][2].get("retry_in_ms").is_none(), "{r}");
    assert!(took >= Duration::from_secs(2), "two waits of 1 s: {took:?}");
}

#[test]
fn a_retry_after_beyond_the_cap_fails_the_job_with_a_clear_message() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "jobs.jsonl",
        &job(
            &api,
            "later",
            r#""address":"Lima","status":"429","retry_after":"600""#,
        ),
    );
    let out = run_bounded(
        s.supervisor()
            .args(["-w", "1", "--max-retry-after", "30s", "jobs.jsonl"]),
        LIMIT,
    );
    assert_eq!(out.status.code(), Some(1));
    let r = s.result("later");
    assert_eq!(
        (r["ok"].clone(), r["attempts"].clone()),
        (false.into(), 1.into()),
        "{r}"
    );
    assert_eq!(r["response"]["status"], 429);
    let msg = r["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("asked to wait 10m") && msg.contains("--max-retry-after 30s"),
        "{msg}"
    );
}

#[test]
fn over_query_limit_in_the_body_is_retried_then_ok() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "jobs.jsonl",
        &job(
            &api,
            "quota",
            r#""address":"Tokyo","fail_first":"2","fail_key":"oql""#,
        ),
    );
    // Without the rule, a 200 saying OVER_QUERY_LIMIT is a success...
    let plain = run_bounded(s.supervisor().args(["-w", "1", "jobs.jsonl"]), LIMIT);
    assert_eq!(plain.status.code(), Some(0));
    assert_eq!(
        s.result("quota")["response"]["body"]["status"],
        "OVER_QUERY_LIMIT"
    );
    // ...with it, the job is retried until the API says OK.
    s.write(
        "jobs.jsonl",
        &job(
            &api,
            "quota",
            r#""address":"Tokyo","fail_first":"2","fail_key":"oql2""#,
        ),
    );
    let out = run_bounded(
        s.supervisor().args([
            "-w",
            "1",
            "--overwrite",
            "--backoff-base",
            "50ms",
            "--retry-if",
            "/status=OVER_QUERY_LIMIT",
            "jobs.jsonl",
        ]),
        LIMIT,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = s.result("quota");
    assert_eq!(r["attempts"], 3, "{r}");
    assert_eq!(r["history"][0]["outcome"], "retry_later");
    assert_eq!(r["response"]["body"]["status"], "OK");
}

#[test]
fn fail_if_marks_a_200_answer_as_rejected() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "jobs.jsonl",
        &(job(&api, "found", r#""address":"Paris""#)
            + &job(&api, "nowhere", r#""address":"Atlantis""#)),
    );
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "2",
        "--fail-if",
        "/status=ZERO_RESULTS",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(s.result("found")["ok"], true);
    let r = s.result("nowhere");
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["attempts"], 1, "rejected answers are not retried: {r}");
    assert_eq!(r["error"]["kind"], "rejected");
    assert_eq!(r["response"]["status"], 200);
    assert!(stderr.contains("rejected: 1"), "{stderr}");
}

#[test]
fn stop_if_ends_the_run_cleanly_and_resume_finishes_it() {
    let api = DemoApi::start();
    let s = Scratch::new();
    // The sixth job's key is exhausted: the API says so in its body.
    let mut jobs = String::new();
    for i in 0..40 {
        let knobs = if i == 5 {
            r#","fail_first":"1000","fail_key":"daily""#
        } else {
            ""
        };
        jobs += &job(
            &api,
            &format!("j{i:02}"),
            &format!(r#""address":"Paris","delay_ms":"20"{knobs}"#),
        );
    }
    s.write("jobs.jsonl", &jobs);
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "1",
        "--stop-if",
        "/status=OVER_QUERY_LIMIT",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(3), "{stderr}");
    assert!(
        stderr.contains("--stop-if /status=OVER_QUERY_LIMIT"),
        "{stderr}"
    );
    assert!(stderr.contains("--resume"), "{stderr}");
    let ids = s.result_ids();
    assert!(
        !ids.contains(&"j05".to_string()),
        "the stopping job has no result"
    );
    assert!(ids.len() < 40);
    assert!(s.stray_files().is_empty());

    let out = run_bounded(
        s.supervisor().args(["-w", "2", "--resume", "jobs.jsonl"]),
        LIMIT,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.result_ids().len(), 40);
}

#[test]
fn rate_limit_paces_the_whole_run() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 100, ""));
    let start = Instant::now();
    let out = run_bounded(
        s.supervisor()
            .args(["-w", "8", "--rate", "20/s", "jobs.jsonl"]),
        LIMIT,
    );
    let took = start.elapsed();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // 100 requests at 20/s with no burst: the last starts at 4.95 s at the
    // earliest. (That the pace is not slower than asked is the pacer's unit
    // test, on a fake clock: a loaded machine can always be slower.)
    assert!(
        took >= Duration::from_millis(4900),
        "100 jobs at 20/s took {took:?}"
    );
    // And no two requests started closer than the pace allows (with a
    // little slack for clock reading).
    let starts: Vec<String> = s
        .result_ids()
        .iter()
        .map(|id| s.result(id)["started_at"].as_str().unwrap().to_string())
        .collect();
    let (burst, gaps) = gaps_shorter_than(&starts, 40.0);
    assert!(burst <= 2, "requests closer than 40 ms: {burst} of {gaps}");
}

#[test]
fn a_429_slows_the_pace() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let mut jobs = String::new();
    for i in 0..30 {
        jobs += &job(
            &api,
            &format!("r{i:02}"),
            &format!(
                r#""address":"Rome","fail_first":"{}","fail_key":"slow","fail_status":"429""#,
                if i < 3 { 1 } else { 0 }
            ),
        );
    }
    s.write("jobs.jsonl", &jobs);
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "4",
        "--rate",
        "50/s",
        "--backoff-base",
        "50ms",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("answered 429 Too Many Requests: slowing to 25.00 requests/s"),
        "{stderr}"
    );
    assert_eq!(s.result_ids().len(), 30);
}

#[test]
fn an_api_key_from_the_environment_reaches_the_server_but_nothing_written() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let secret = "sk-live-5f1e2d3c4b5a";
    s.write(
        "jobs.jsonl",
        &(job(&api, "geo", r#""address":"Oslo""#)
            + &format!("{{\"id\":\"echo\",\"url\":\"{}/echo\",\"headers\":{{\"X-Api-Token\":\"${{CALLPOOL_TEST_TOKEN}}\"}}}}\n", api.base)
            + &job(&api, "down", r#""address":"Oslo","status":"503""#)),
    );
    let (code, stderr) = run_supervisor(
        s.supervisor()
            .env("CALLPOOL_TEST_KEY", secret)
            .env("CALLPOOL_TEST_TOKEN", format!("tok-{secret}"))
            .args([
                "-w",
                "2",
                "-v",
                "--retries",
                "1",
                "--backoff-base",
                "10ms",
                "--param",
                "key=${CALLPOOL_TEST_KEY}",
                "--redact",
                "X-Api-Token",
                "jobs.jsonl",
            ]),
    );
    assert_eq!(code, Some(1), "{stderr}");
    // The server got the real key: the echo shows REDACTED exactly where
    // the value was, and only the real value is replaced.
    let r = s.result("geo");
    assert_eq!(r["response"]["body"]["echo"]["key"], "REDACTED", "{r}");
    assert!(
        r["request"]["url"]
            .as_str()
            .unwrap()
            .contains("key=REDACTED"),
        "{r}"
    );
    let e = s.result("echo");
    assert_eq!(
        e["response"]["body"]["headers"]["x-api-token"], "REDACTED",
        "{e}"
    );
    // Nowhere in the results folder, nowhere on stderr.
    assert!(!stderr.contains(secret), "{stderr}");
    for entry in std::fs::read_dir(s.results()).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains(secret),
            "{} holds the secret",
            path.display()
        );
    }
}

#[test]
fn a_missing_environment_variable_is_an_error_before_the_run() {
    let s = Scratch::new();
    s.write(
        "jobs.jsonl",
        "{\"url\":\"http://127.0.0.1:1/?k=${CALLPOOL_TEST_UNSET_VAR}\"}\n",
    );
    let (code, stderr) = run_supervisor(s.supervisor().args(["jobs.jsonl"]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr
            .contains("jobs.jsonl:1: url: environment variable CALLPOOL_TEST_UNSET_VAR is not set"),
        "{stderr}"
    );
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "--param",
        "k=${CALLPOOL_TEST_UNSET_VAR}",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--param"), "{stderr}");
    assert!(!s.results().exists());
}
