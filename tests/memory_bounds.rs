//! The supervisor's memory is bounded by its configuration, not by what
//! workers write or how big the jobs are (docs/protocol.md §1, "Memory"):
//! workers that flood an endless stdout line cost their jobs' attempts and
//! one line's worth of memory. The supervisor's peak RSS (VmHWM) is read
//! from /proc while it runs. (The read-ahead's byte bound is tested in
//! crates/pool/src/feeder.rs; bench/memory.sh measures it with release
//! builds, where 300 MiB of bodies take seconds, not minutes.)

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The supervisor's VmHWM in MiB, polled until it exits (bounded).
fn peak_rss_while_running(sup: Running) -> (f64, Option<i32>, String) {
    let status = format!("/proc/{}/status", sup.pid());
    let started = Instant::now();
    let mut peak_kb = 0u64;
    while let Ok(text) = std::fs::read_to_string(&status) {
        let hwm = text
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok());
        match hwm {
            Some(kb) => peak_kb = peak_kb.max(kb),
            // A zombie has no memory lines: it has exited.
            None => break,
        }
        assert!(
            started.elapsed() < CEILING,
            "still running after {CEILING:?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let (code, stderr) = sup.wait(CEILING);
    (peak_kb as f64 / 1024.0, code, stderr)
}

/// A worker that answers its first job with a stdout line that never
/// ends, written as fast as the pipe takes it.
const FLOODER: &str = r#"
import sys
out = sys.stdout.buffer
out.write(b'{"type":"ready","protocol":1}\n')
out.flush()
if sys.stdin.buffer.readline():
    out.write(b'{"type":"result","id":"')
    chunk = b"x" * (1 << 20)
    while True:
        out.write(chunk)
"#;

#[test]
fn workers_flooding_endless_lines_cost_their_attempts_and_one_line_of_memory() {
    let s = Scratch::new();
    let script = s.write("flood.py", FLOODER);
    let jobs: String = (1..=3)
        .map(|i| format!("{{\"id\":\"flood-{i}\",\"url\":\"http://127.0.0.1:9/\"}}\n"))
        .collect();
    s.write("jobs.jsonl", &jobs);
    let sup = Running::start(s.supervisor().args([
        "-w",
        "3",
        "--retries",
        "0",
        "--worker-cmd",
        &format!("python3 {}", script.display()),
        "jobs.jsonl",
    ]));
    let (peak_mib, code, stderr) = peak_rss_while_running(sup);
    assert_eq!(code, Some(1), "{stderr}");
    for i in 1..=3 {
        let r = s.result(&format!("flood-{i}"));
        assert_eq!(r["error"]["kind"], "protocol_error", "{r}");
        let msg = r["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains("line longer than 67108864 bytes"), "{r}");
    }
    // Each worker's line went to the 64 MiB limit, but one at a time: the
    // three together held about one line (three held 190 MiB and more
    // before the long-line turn).
    assert!(
        peak_mib < 120.0,
        "the supervisor peaked at {peak_mib:.0} MiB\n{stderr}"
    );
    assert_all_gone(&worker_pids(&stderr), CEILING);
}
