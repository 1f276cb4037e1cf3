//! End-to-end tests of the main path: the real supervisor, real workers and
//! the real demo API on loopback.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::*;

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn a_run_writes_one_valid_result_per_job_spread_over_all_workers() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let n = 3000;
    s.write("jobs.jsonl", &geocode_jobs(&api, n, ""));
    let (code, stderr) = run_supervisor(s.supervisor().args(["--workers", "4", "jobs.jsonl"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("{n} jobs: {n} ok, 0 failed")),
        "{stderr}"
    );

    let ids = s.result_ids();
    assert_eq!(ids.len(), n, "one result file per job");
    let mut pids = HashSet::new();
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(id, &format!("job-{i:05}"));
        let r = s.result(id);
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["attempts"], 1, "{r}");
        assert_eq!(r["request"]["method"], "GET");
        let url = r["request"]["url"].as_str().unwrap();
        assert!(
            url.starts_with(&api.geocode())
                && url.contains(&format!("address={}+Main+St", 100 + i)),
            "{url}"
        );
        assert_eq!(r["response"]["status"], 200);
        let body = &r["response"]["body"];
        let address = format!("{} Main St, ", 100 + i);
        assert!(
            body["echo"]["address"]
                .as_str()
                .unwrap()
                .starts_with(&address),
            "{body}"
        );
        assert!(body["echo"]["language"].is_string(), "{body}");
        assert_eq!(body["status"], "OK", "{body}");
        assert!(
            body["results"][0]["geometry"]["location"]["lat"].is_number(),
            "{body}"
        );
        assert_eq!(r["history"].as_array().unwrap().len(), 1);
        pids.insert(r["pid"].as_i64().unwrap());
    }
    assert_eq!(pids.len(), 4, "results come from all 4 workers: {pids:?}");
    let joblog = std::fs::read_to_string(s.results().join("joblog.jsonl")).unwrap();
    assert_eq!(joblog.lines().count(), n, "one joblog line per attempt");
    assert!(s.stray_files().is_empty(), "{:?}", s.stray_files());
}

#[test]
fn every_bad_line_is_reported_and_nothing_starts() {
    let s = Scratch::new();
    let lines = [
        r#"{"id":"good","url":"http://127.0.0.1:1/x"}"#,
        r#"{"id":"broken", "url":"#,
        r#"["an","array"]"#,
        r#"{"id":"typo","url":"http://127.0.0.1:1/x","param":{"a":"b"}}"#,
        r#"{"id":"nourl"}"#,
        r#"{"id":"ftp","url":"ftp://127.0.0.1/x"}"#,
        r#"{"id":"../escape","url":"http://127.0.0.1:1/x"}"#,
        r#"{"id":"good","url":"http://127.0.0.1:1/y"}"#,
        "",
        r#"{"id":"a/b","url":"http://127.0.0.1:1/x"}"#,
        r#"{"id":".hidden","url":"http://127.0.0.1:1/x"}"#,
    ];
    s.write("jobs.jsonl", &(lines.join("\n") + "\n"));
    let marker = s.path("worker-started");
    let worker = format!("sh -c 'touch {}; cat'", marker.display());
    let (code, stderr) =
        run_supervisor(s.supervisor().args(["--worker-cmd", &worker, "jobs.jsonl"]));
    assert_eq!(code, Some(2), "{stderr}");
    for (line, what) in [
        (2, "invalid JSON"),
        (3, "not a JSON object"),
        (4, "unknown field `param`"),
        (5, "missing \"url\""),
        (6, "only http and https"),
        (7, "not a safe file name"),
        (8, "duplicate id \"good\" (first used on line 1)"),
        (10, "not a safe file name"),
        (11, "not a safe file name"),
    ] {
        let prefix = format!("jobs.jsonl:{line}: ");
        assert!(
            stderr
                .lines()
                .any(|l| l.starts_with(&prefix) && l.contains(what)),
            "no {prefix}...{what} in:\n{stderr}"
        );
    }
    assert!(stderr.contains("9 bad lines"), "{stderr}");
    assert!(!marker.exists(), "a worker was started");
    assert!(!s.results().exists(), "the results folder was created");
    assert!(!s.path("escape.json").exists() && !s.path("a").exists());
}

#[test]
fn results_of_an_earlier_run_are_never_silently_replaced() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 20, ""));
    let first = run_bounded(s.supervisor().args(["-w", "2", "jobs.jsonl"]), LIMIT);
    assert_eq!(first.status.code(), Some(0));
    let before = s.result("job-00003");

    let again = run_bounded(s.supervisor().args(["-w", "2", "jobs.jsonl"]), LIMIT);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert_eq!(again.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("already holds 20 results")
            && stderr.contains("--resume")
            && stderr.contains("--overwrite"),
        "{stderr}"
    );
    assert_eq!(
        s.result("job-00003"),
        before,
        "refusal must not touch results"
    );

    // --resume with one result removed and one marked failed runs those two.
    std::fs::remove_file(s.results().join("job-00005.json")).unwrap();
    let mut failed = s.result("job-00007");
    failed["ok"] = false.into();
    std::fs::write(s.results().join("job-00007.json"), failed.to_string()).unwrap();
    let resumed = run_bounded(
        s.supervisor().args(["-w", "2", "--resume", "jobs.jsonl"]),
        LIMIT,
    );
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert_eq!(resumed.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("20 jobs: 2 ok, 0 failed, 18 skipped"),
        "{stderr}"
    );
    assert_eq!(s.result("job-00003"), before);
    assert_eq!(s.result("job-00007")["ok"], true);
    assert_eq!(s.result_ids().len(), 20);

    let over = run_bounded(
        s.supervisor()
            .args(["-w", "2", "--overwrite", "jobs.jsonl"]),
        LIMIT,
    );
    assert_eq!(over.status.code(), Some(0));
    assert_ne!(s.result("job-00003")["finished_at"], before["finished_at"]);
}

#[test]
fn jobs_can_come_from_stdin() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let path = s.write("jobs.jsonl", &geocode_jobs(&api, 10, ""));
    let out = run_bounded(
        s.supervisor()
            .args(["-w", "2", "-"])
            .stdin(std::fs::File::open(path).unwrap()),
        LIMIT,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.result_ids().len(), 10);
}

#[test]
fn a_worker_in_python_written_from_the_protocol_doc_runs_jobs() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 40, ""));
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "3",
        "--worker-cmd",
        &py_worker(""),
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(s.result_ids().len(), 40);
    let r = s.result("job-00011");
    assert_eq!(r["ok"], true);
    assert_eq!(r["response"]["body_kind"], "json");
    assert_eq!(
        r["response"]["body"]["echo"]["address"],
        "111 Main St, London"
    );
}

#[test]
fn a_chatty_worker_with_big_answers_never_stalls_the_run() {
    // Each job: 200 KB of stderr and a result line of about 2 MB, both far
    // over a pipe's 64 KiB buffer, from two workers at once. The loop reads
    // every pipe as it fills, so neither side can block the other.
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "jobs.jsonl",
        &geocode_jobs(&api, 12, ",\"body_bytes\":\"2000000\""),
    );
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "2",
        "--worker-cmd",
        &py_worker("chatty"),
        "jobs.jsonl",
    ]));
    let tail_from = (stderr.len().saturating_sub(2000)..stderr.len())
        .find(|&i| stderr.is_char_boundary(i))
        .unwrap_or(0);
    assert_eq!(code, Some(0), "{}", &stderr[tail_from..]);
    let ids = s.result_ids();
    assert_eq!(ids.len(), 12);
    for id in &ids {
        let r = s.result(id);
        assert_eq!(r["ok"], true, "{id}");
        let body = serde_json::to_string(&r["response"]["body"]).expect("body");
        assert!(
            body.len() >= 2_000_000,
            "{id}: body of {} bytes",
            body.len()
        );
        let last = format!("chatty {id} line 199 ");
        assert!(
            stderr.contains(&last),
            "{id}: its stderr reached the supervisor's"
        );
    }
}

#[test]
fn a_worker_that_writes_garbage_is_replaced_and_its_job_retried() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 60, ""));
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "2",
        "--worker-cmd",
        &py_worker("garbage-every-7"),
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr
            .contains("broke the protocol (it wrote a stdout line that is not a protocol message"),
        "{stderr}"
    );
    let ids = s.result_ids();
    assert_eq!(ids.len(), 60);
    let retried = ids
        .iter()
        .filter(|id| s.result(id)["attempts"] == 2)
        .count();
    assert!(retried >= 5, "jobs hit by garbage were retried: {retried}");
    for id in &ids {
        assert_eq!(s.result(id)["ok"], true, "{id}");
    }
    assert_all_gone(&worker_pids(&stderr), CEILING);
}

#[test]
fn a_worker_that_only_writes_garbage_stops_the_run_with_a_clear_message() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 10, ""));
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "2",
        "--worker-cmd",
        &py_worker("garbage"),
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("workers keep failing") && stderr.contains("py_worker.py garbage"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_all_gone(&worker_pids(&stderr), CEILING);
    assert!(s.stray_files().is_empty());
}

#[test]
fn a_worker_command_that_cannot_run_is_a_clear_error() {
    let s = Scratch::new();
    s.write("jobs.jsonl", "{\"url\":\"http://127.0.0.1:1/\"}\n");
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "--worker-cmd",
        "/nonexistent/worker --flag",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot start worker `/nonexistent/worker --flag`"),
        "{stderr}"
    );
}

#[test]
fn pretty_printed_answers_arrive_whole_in_both_modes() {
    // Google's Geocoding API indents its JSON over many lines; a result
    // line to the supervisor must still be one line.
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 20, ",\"pretty\":\"1\""));
    for (mode, out) in [(None, "p"), (Some("--threads"), "t")] {
        let mut cmd = std::process::Command::new(SUPERVISOR);
        cmd.current_dir(s.dir.path())
            .stdin(std::process::Stdio::null())
            .args(["--workers", "2", "--retries", "0", "--out", out]);
        if let Some(m) = mode {
            cmd.arg(m);
        }
        let (code, stderr) = run_supervisor(cmd.arg("jobs.jsonl"));
        assert_eq!(code, Some(0), "{mode:?}: {stderr}");
        let r = s.result_in(out, "job-00003");
        assert_eq!(r["response"]["body_kind"], "json", "{r}");
        assert_eq!(r["response"]["body"]["status"], "OK", "{r}");
        assert!(
            r["response"]["body"]["results"][0]["geometry"]["location"]["lat"].is_number(),
            "{r}"
        );
    }
}

#[test]
fn max_body_with_a_worker_command_is_refused_instead_of_ignored() {
    let s = Scratch::new();
    s.write("jobs.jsonl", "{\"url\":\"http://127.0.0.1:9/\"}\n");
    let worker = py_worker("normal");
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "--worker-cmd",
        &worker,
        "--max-body",
        "1000",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "--max-body is an option of the built-in http-worker, which --worker-cmd replaces"
        ),
        "{stderr}"
    );
    assert!(!s.results().exists(), "nothing is written");
}
