//! Sizes and durations as people type them (issue 20, item 7): `100M`,
//! `2G`, `512k` are powers of 1024 as docker and systemd read them, `32MB`
//! powers of 1000; a month (`1M`) is never a deadline, and neither is 0.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

#[test]
fn sizes_as_ops_tools_write_them_are_accepted() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 3, ""));
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "--workers",
        "2",
        "--max-worker-rss",
        "100M",
        "--worker-memory-limit",
        "2G",
        "--max-body",
        "32MB",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    // 512k is 524,288 bytes: a 600 kB answer fails with its kind.
    s.write(
        "big.jsonl",
        &geocode_jobs(&api, 1, ",\"body_bytes\":600000"),
    );
    let (code, stderr) = run_supervisor(
        std::process::Command::new(SUPERVISOR)
            .current_dir(s.dir.path())
            .args([
                "--out",
                "big",
                "--retries",
                "0",
                "--max-body",
                "512k",
                "big.jsonl",
            ]),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(
        s.result_in("big", "job-00000")["error"]["kind"],
        "body_too_large"
    );
}

#[test]
fn a_month_or_zero_is_no_deadline() {
    let s = Scratch::new();
    s.write("jobs.jsonl", "{\"url\":\"http://127.0.0.1:9/\"}\n");
    for (flag, value, says) in [
        (
            "--timeout",
            "1M",
            "\"1M\": \"M\" is not a unit here (a month or a year)",
        ),
        ("--timeout", "2y", "is not a unit here"),
        ("--timeout", "0", "a deadline must be more than zero"),
        ("--start-timeout", "0s", "a deadline must be more than zero"),
        ("--max-body", "16Mb/s", "invalid byte size \"16Mb/s\""),
    ] {
        let (code, stderr) = run_supervisor(s.supervisor().args([flag, value, "jobs.jsonl"]));
        assert_eq!(code, Some(2), "{flag} {value}: {stderr}");
        assert!(
            stderr.contains(flag) && stderr.contains(says),
            "{flag} {value}: {stderr}"
        );
        assert!(!s.results().exists());
    }
    // In a job, too.
    s.write(
        "job.jsonl",
        "{\"url\":\"http://127.0.0.1:9/\",\"timeout\":\"1M\"}\n",
    );
    let (code, stderr) = run_supervisor(s.supervisor().arg("job.jsonl"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("job.jsonl:1: timeout: \"1M\""), "{stderr}");
}
