//! End-to-end tests of what a person sees: the live progress bar in a real
//! pseudo-terminal, plain progress lines without one, colours and NO_COLOR,
//! the summary as JSON, help, completions and error messages.

#![allow(clippy::unwrap_used)]

mod common;

use std::fs::File;
use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;
use nix::pty::{Winsize, openpty};
use serde_json::Value;

/// A ceiling for one run, not a measure of speed.
const LIMIT: Duration = CEILING;
const ROWS: u16 = 40;
const COLS: u16 = 100;

/// Runs `cmd` with its stderr on the slave side of a new pseudo-terminal
/// (TERM=xterm-256color, 100 columns) and returns its exit code and every
/// byte it drew there.
fn run_in_pty(mut cmd: Command, limit: Duration) -> (Option<i32>, Vec<u8>) {
    let size = Winsize {
        ws_row: ROWS,
        ws_col: COLS,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    let pty = openpty(&size, None).expect("openpty");
    cmd.stdout(Stdio::null())
        .stderr(Stdio::from(pty.slave))
        .env("TERM", "xterm-256color");
    let mut child = cmd.spawn().expect("spawn in a pty");
    // The command keeps its copy of the slave until dropped; once it and the
    // child are gone, reading the master ends.
    drop(cmd);
    let out = Arc::new(Mutex::new(Vec::new()));
    let done = Arc::new(AtomicBool::new(false));
    let (sink, finished) = (out.clone(), done.clone());
    let mut master = File::from(pty.master);
    thread::spawn(move || {
        let mut buf = [0u8; 8192];
        // EIO once no process holds the slave any more.
        while let Ok(n) = master.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
        finished.store(true, Ordering::SeqCst);
    });
    let Some(status) = wait_child(&mut child, limit) else {
        panic!(
            "ran past {limit:?} in the pty; it drew:\n{}",
            String::from_utf8_lossy(&out.lock().unwrap())
        );
    };
    wait_until(CEILING, "the end of the pty output", || {
        done.load(Ordering::SeqCst)
    });
    let bytes = out.lock().unwrap().clone();
    (status.code(), bytes)
}

/// What a terminal of the pty's size shows at the end, scrollback included.
fn screen(raw: &[u8]) -> String {
    let mut parser = vt100::Parser::new(ROWS, COLS, 0);
    parser.process(raw);
    parser.screen().contents()
}

/// Whether the bytes hold an SGR colour sequence: ESC [ digits (;digits) m.
fn has_colour_codes(raw: &[u8]) -> bool {
    raw.windows(2)
        .enumerate()
        .filter(|(_, w)| w == b"\x1b[")
        .any(|(i, _)| {
            let rest = &raw[i + 2..];
            let params = rest
                .iter()
                .take_while(|b| b.is_ascii_digit() || **b == b';')
                .count();
            params > 0 && rest.get(params) == Some(&b'm')
        })
}

fn last_index(haystack: &str, needle: &str) -> Option<usize> {
    haystack.rfind(needle)
}

#[test]
fn a_terminal_shows_a_live_bar_that_ends_cleanly_under_the_summary() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let n = 600;
    s.write("jobs.jsonl", &geocode_jobs(&api, n, ",\"delay_ms\":\"5\""));
    let mut cmd = s.supervisor();
    cmd.args(["-w", "4", "jobs.jsonl"]).env_remove("NO_COLOR");
    let (code, raw) = run_in_pty(cmd, LIMIT);
    let text = String::from_utf8_lossy(&raw);
    assert_eq!(code, Some(0), "{text}");

    // The bar was drawn: its count and its pace line.
    assert!(text.contains(&format!("/{n} ")), "no pos/len in:\n{text}");
    assert!(text.contains(" jobs/s · ETA "), "no pace line in:\n{text}");
    assert!(text.contains("4 workers"), "{text}");
    // Colour is on in a terminal by default.
    assert!(has_colour_codes(&raw), "no colour in:\n{text}");

    // It ended before the summary, and the summary is what is left on the
    // screen: no stale copy of the bar above or below it.
    let summary = format!("{n} jobs: ");
    let last_bar = last_index(&text, "· ETA").unwrap();
    let summary_at = last_index(&text, &summary).expect("a summary");
    assert!(last_bar < summary_at, "the bar was drawn after the summary");
    let shown = screen(&raw);
    assert!(
        shown.contains(&format!("{n} jobs: {n} ok, 0 failed")),
        "{shown}"
    );
    assert!(!shown.contains("ETA"), "the bar was not cleared:\n{shown}");
    assert!(!shown.contains(&format!("/{n} ")), "{shown}");
    // Four worker starts are told in one line above the bar, with the
    // supervisor's pid for the status table.
    assert!(shown.contains("4 workers started (pids "), "{shown}");
    assert!(shown.contains("kill -USR1 "), "{shown}");
    assert_eq!(s.result_ids().len(), n);
}

#[test]
fn no_color_and_color_never_remove_colour_codes_in_a_terminal() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "jobs.jsonl",
        &geocode_jobs(&api, 300, ",\"delay_ms\":\"5\""),
    );
    for (env, flag) in [(Some("1"), None), (None, Some("--color=never"))] {
        let mut cmd = s.supervisor();
        cmd.args(["-w", "4", "--overwrite", "jobs.jsonl"]);
        match env {
            Some(v) => cmd.env("NO_COLOR", v),
            None => cmd.env_remove("NO_COLOR"),
        };
        if let Some(f) = flag {
            cmd.arg(f);
        }
        let (code, raw) = run_in_pty(cmd, LIMIT);
        let text = String::from_utf8_lossy(&raw);
        assert_eq!(code, Some(0), "{text}");
        assert!(text.contains("· ETA "), "the bar still shows:\n{text}");
        assert!(
            !has_colour_codes(&raw),
            "colour codes with NO_COLOR={env:?} {flag:?}:\n{text:?}"
        );
        assert!(text.contains("300 jobs: 300 ok, 0 failed"), "{text}");
    }
}

#[test]
fn without_a_terminal_stderr_gets_plain_lines_and_progress_lines() {
    // 400 jobs of at least 5 ms on 4 workers take 500 ms or more, and the
    // last tick of a run reports too: there is at least one progress line
    // however fast the machine.
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "jobs.jsonl",
        &geocode_jobs(&api, 400, ",\"delay_ms\":\"5\""),
    );
    let (code, stderr) = run_supervisor(
        s.supervisor()
            .args(["-w", "4", "--progress-every", "200ms", "jobs.jsonl"])
            .env_remove("NO_COLOR"),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        !stderr.contains('\x1b') && !stderr.contains('\r'),
        "control characters on a non-terminal stderr: {stderr:?}"
    );
    // Each worker start is its own line, pid included.
    assert_eq!(worker_pids(&stderr).len(), 4, "{stderr}");
    let progress: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("progress: "))
        .collect();
    assert!(!progress.is_empty(), "no progress line in:\n{stderr}");
    for l in &progress {
        assert!(
            l.contains("/400 done (")
                && l.contains(" ok, ")
                && l.contains(" failed, ")
                && l.contains(" retrying), ")
                && l.contains(" jobs/s, ETA ")
                && l.contains(" workers"),
            "{l}"
        );
    }
    assert!(stderr.contains("400 jobs: 400 ok, 0 failed"), "{stderr}");

    // --progress-every 0 turns the lines off; -q leaves only the summary.
    let quiet = run_bounded(
        s.supervisor()
            .args(["-w", "4", "-q", "--overwrite", "--progress-every", "0"])
            .arg("jobs.jsonl"),
        LIMIT,
    );
    let stderr = String::from_utf8_lossy(&quiet.stderr);
    assert_eq!(quiet.status.code(), Some(0), "{stderr}");
    assert!(stderr.starts_with("400 jobs: 400 ok, 0 failed"), "{stderr}");
    assert!(!stderr.contains("progress: "), "{stderr}");
}

#[test]
fn summary_json_matches_the_result_files() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let mut jobs = geocode_jobs(&api, 40, "");
    // Three jobs answer 404: failed, not retried.
    for i in [3, 17, 29] {
        let id = format!("\"id\":\"job-{i:05}\"");
        let line = jobs.lines().find(|l| l.contains(&id)).unwrap().to_string();
        jobs = jobs.replace(&line, &line.replace("}}", ",\"status\":\"404\"}}"));
    }
    s.write("jobs.jsonl", &jobs);
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "3",
        "--summary-json",
        "summary.json",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(1), "{stderr}");

    let text = std::fs::read_to_string(s.path("summary.json")).unwrap();
    let j: Value = serde_json::from_str(&text).unwrap();
    let ids = s.result_ids();
    let ok = ids.iter().filter(|id| s.result(id)["ok"] == true).count();
    let failed = ids.len() - ok;
    assert_eq!(j["counts"]["total"], 40, "{j}");
    assert_eq!(j["counts"]["ok"], ok as u64, "{j}");
    assert_eq!(j["counts"]["failed"], failed as u64, "{j}");
    assert_eq!(failed, 3);
    assert_eq!(j["counts"]["skipped"], 0);
    assert_eq!(j["counts"]["not_run"], 0);
    assert_eq!(j["failed_by_kind"]["http 404"], 3, "{j}");
    assert_eq!(j["retried"], 0);
    assert!(j["restarts"].is_object());
    assert!(j["elapsed_s"].as_f64().unwrap() > 0.0);
    assert!(j["jobs_per_s"].as_f64().unwrap() > 0.0);
    for q in ["p50", "p95", "max"] {
        assert!(j["latency_ms"][q].as_f64().unwrap() > 0.0, "{j}");
    }
    let first = j["first_failures"].as_array().unwrap();
    assert_eq!(first.len(), 3, "{j}");
    for f in first {
        let id = f["id"].as_str().unwrap();
        assert_eq!(s.result(id)["ok"], false);
        assert!(f["reason"].as_str().unwrap().contains("404"), "{f}");
        assert!(s.path(f["path"].as_str().unwrap()).is_file(), "{f}");
    }
    assert_eq!(j["interrupted"], Value::Null);
    assert_eq!(j["exit_status"], 1);
    // Written whole: nothing but the file itself beside it.
    let mut names: Vec<String> = std::fs::read_dir(s.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["jobs.jsonl", "results", "summary.json"]);
    // The summary for people names the same failures and where they are.
    assert!(
        stderr.contains("job-00003") && stderr.contains("results/job-00003.json"),
        "{stderr}"
    );

    // `-` writes it on stdout.
    let out = run_bounded(
        s.supervisor()
            .args(["-w", "3", "--resume", "--summary-json", "-", "jobs.jsonl"]),
        LIMIT,
    );
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["counts"]["skipped"], 37, "{j}");
    assert_eq!(j["counts"]["failed"], 3, "{j}");
}

#[test]
fn completions_print_a_script_for_each_shell() {
    for shell in ["bash", "zsh", "fish"] {
        let out = run_bounded(Command::new(SUPERVISOR).args(["completions", shell]), LIMIT);
        let script = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{shell}");
        assert!(script.contains("supervisor"), "{shell}: {script}");
        assert!(script.contains("summary-json"), "{shell}");
    }
}

#[test]
fn help_teaches_and_ends_with_examples() {
    for flag in ["--help", "-h"] {
        let out = run_bounded(Command::new(SUPERVISOR).arg(flag), LIMIT);
        assert_eq!(out.status.code(), Some(0));
        let help = String::from_utf8_lossy(&out.stdout);
        for heading in [
            "Workers:",
            "Deadlines and retries:",
            "HTTP:",
            "Output:",
            "Control:",
        ] {
            assert!(help.contains(heading), "{flag}: no {heading}");
        }
        let examples = help.find("Examples:").expect("an Examples section");
        assert!(examples > help.find("--verbose").unwrap(), "{help}");
        let tail = &help[examples..];
        for needle in [
            "supervisor --workers 16 jobs.jsonl",
            "--url https://maps.googleapis.com/maps/api/geocode/json",
            "--param 'key=${GOOGLE_MAPS_API_KEY}'",
            "--retry-if /status=OVER_QUERY_LIMIT",
            "--stop-if /status=OVER_DAILY_LIMIT",
            "--rate 40/s",
            "kill -USR1 <pid>",
            "kill -TTIN <pid>",
            "kill -TTOU <pid>",
            "kill -HUP <pid>",
            "Ctrl-C",
        ] {
            assert!(tail.contains(needle), "{flag}: no {needle:?} in {tail}");
        }
        let last = help.trim_end().lines().last().unwrap();
        assert!(last.contains("Ctrl-C"), "{flag} ends with {last:?}");
    }
    // Defaults are shown.
    let out = run_bounded(Command::new(SUPERVISOR).arg("--help"), LIMIT);
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("[default: 10s]") && help.contains("[default: auto]"));
}

#[test]
fn usage_errors_say_what_failed_and_what_to_do() {
    let s = Scratch::new();
    s.write("jobs.jsonl", "{\"url\":\"http://127.0.0.1:1/\"}\n");
    let cases: [(&[&str], &[&str]); 5] = [
        (&[], &["<JOBS>"]),
        (
            &["missing.jsonl"],
            &["cannot read the jobs file missing.jsonl", "check the path"],
        ),
        (
            &["--param", "language", "jobs.jsonl"],
            &["--param \"language\" is not KEY=VALUE", "e.g. --param"],
        ),
        (
            &["--summary-json", "no/such/dir/s.json", "jobs.jsonl"],
            &["--summary-json", "does not exist", "create it"],
        ),
        (
            &["--url", "ftp://example.org/", "jobs.jsonl"],
            &["only http and https", "e.g. --url https://"],
        ),
    ];
    for (args, needles) in cases {
        let out = run_bounded(s.supervisor().args(args), LIMIT);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        for n in needles {
            assert!(stderr.contains(n), "{args:?}: no {n:?} in {stderr}");
        }
        assert!(!stderr.contains('\x1b'), "{stderr:?}");
    }
    assert!(!s.results().exists(), "nothing ran");
}
