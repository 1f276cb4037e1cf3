//! `supervisor report` and `--report`, opened in a real browser: real runs
//! on loopback (plain; kills, crashes and recycling; several kinds of
//! failure; stopped and resumed; over `--host`), drawn, then loaded in
//! headless Chromium. Each page must load without a console message or an
//! error (the page counts its own into `data-errors`, and Chromium logs
//! every console message on stderr), with its charts in the DOM: as many
//! lanes as worker slots, the expected series. A screenshot of each is
//! kept under target/report-screens/ for a person to look at.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;

/// Chromium: `CHROMIUM` or `chromium` on the PATH (CI installs it from
/// the Debian packages, .ci/run).
fn chromium() -> Option<String> {
    if let Some(c) = std::env::var_os("CHROMIUM") {
        return Some(c.to_string_lossy().into_owned());
    }
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .map(str::to_string)
}

/// What a browser made of a page.
struct Loaded {
    dom: String,
    console: Vec<String>,
}

impl Loaded {
    /// The markup of the `<svg>` whose id is `id`.
    fn chart(&self, id: &str) -> &str {
        let start = self
            .dom
            .find(&format!("<svg id=\"{id}\""))
            .unwrap_or_else(|| panic!("no chart #{id} in the page"));
        let end = self.dom[start..].find("</svg>").unwrap() + start;
        &self.dom[start..end]
    }

    /// How many series a chart draws.
    fn series(&self, id: &str) -> usize {
        self.chart(id).matches("class=\"series ").count()
    }

    fn count(&self, id: &str, what: &str) -> usize {
        self.chart(id).matches(what).count()
    }
}

/// Opens `page` in headless Chromium: its DOM once scripts have run, and
/// the console messages it logged; a screenshot goes to
/// target/report-screens/NAME.png. None when there is no Chromium here
/// (then CI fails, elsewhere the test is skipped).
fn open(page: &Path, name: &str) -> Option<Loaded> {
    let Some(chrome) = chromium() else {
        cannot_run("Chromium is not installed (apt-get install chromium, as .ci/run does)");
        return None;
    };
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.canonicalize().unwrap().display());
    let common = |extra: &[String]| {
        let mut c = Command::new(&chrome);
        c.args([
            "--headless",
            // Root in a container has no user namespaces for the sandbox.
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(&url);
        run_bounded(&mut c, Duration::from_secs(120))
    };
    let out = common(&["--dump-dom".to_string()]);
    assert!(
        out.status.success(),
        "chromium failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let console: Vec<String> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_string)
        .collect();
    let shots = screens();
    std::fs::create_dir_all(&shots).unwrap();
    let shot = shots.join(format!("{name}.png"));
    let _ = std::fs::remove_file(&shot);
    let out2 = common(&[
        format!("--screenshot={}", shot.display()),
        "--window-size=1280,3200".into(),
    ]);
    assert!(
        out2.status.success() && shot.exists(),
        "no screenshot: {}",
        String::from_utf8_lossy(&out2.stderr)
    );
    Some(Loaded {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        console,
    })
}

/// `supervisor report ...` in `s`'s folder (without the run's `--out`).
fn report_in(s: &Scratch) -> Command {
    let mut c = Command::new(SUPERVISOR);
    c.current_dir(s.dir.path()).arg("report");
    c
}

fn screens() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("report-screens")
}

/// The checks every page passes: it ran its one script, which counted no
/// error; the browser logged nothing; every chart is there.
fn healthy(l: &Loaded) {
    assert!(l.console.is_empty(), "console messages: {:#?}", l.console);
    assert!(
        l.dom.contains("data-errors=\"0\""),
        "the page's script did not run, or counted errors"
    );
    assert_eq!(
        l.dom.matches("<script").count(),
        1,
        "only the page's own script"
    );
    for id in ["throughput", "latency", "histogram", "timeline"] {
        l.chart(id);
    }
    assert_eq!(l.series("throughput"), 3);
    assert_eq!(l.series("latency"), 3);
}

#[test]
fn a_plain_run_draws_every_chart_with_a_lane_per_worker() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 60, ",\"delay_ms\":10"));
    let (code, stderr) =
        run_supervisor(
            s.supervisor()
                .args(["-w", "4", "--report", "page.html", "jobs.jsonl"]),
        );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("report written to page.html"), "{stderr}");
    let Some(l) = open(&s.path("page.html"), "plain") else {
        return;
    };
    healthy(&l);
    assert_eq!(l.count("timeline", "class=\"lane\""), 4);
    assert_eq!(l.count("timeline", "class=\"mark start\""), 4);
    assert!(
        !l.dom.contains("<svg id=\"failures\""),
        "no failure, no failure chart"
    );
    assert!(l.dom.contains("finished, every job ok (exit 0)"));
    // `supervisor report` draws the same folder into it by default.
    let (code, stderr) = run_supervisor(report_in(&s).args(["results"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(s.path("results/report.html").is_file(), "{stderr}");
}

#[test]
fn kills_crashes_and_recycling_show_on_the_timeline() {
    use nix::sys::signal::Signal;
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 150, ",\"delay_ms\":40"));
    let mut cmd = s.supervisor();
    cmd.args([
        "-w",
        "3",
        "--timeout",
        "2s",
        "--max-jobs-per-worker",
        "20",
        "--report",
        "page.html",
        "jobs.jsonl",
    ]);
    let run = Running::start(&mut cmd);
    wait_until(CEILING, "three workers", || run.worker_pids().len() >= 3);
    // Every worker is ready and busy (a worker stopped before its ready
    // line would only be a slow start).
    wait_until(CEILING, "the first results", || s.result_ids().len() >= 6);
    let pids = run.worker_pids();
    // One worker dies; another stops answering and is killed at its
    // deadline.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pids[0]), Signal::SIGKILL).unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pids[1]), Signal::SIGSTOP).unwrap();
    let (code, stderr) = run.wait(Duration::from_secs(120));
    assert_eq!(code, Some(0), "{stderr}");
    let Some(l) = open(&s.path("page.html"), "kills") else {
        return;
    };
    healthy(&l);
    assert_eq!(l.count("timeline", "class=\"lane\""), 3);
    assert!(l.count("timeline", "class=\"mark kill\"") >= 1, "{stderr}");
    assert!(
        l.count("timeline", "class=\"mark restart\"") >= 2,
        "{stderr}"
    );
    assert!(
        l.count("timeline", "class=\"mark recycled\"") >= 1,
        "{stderr}"
    );
    assert!(l.dom.contains("Workers restarted by reason:"), "{stderr}");
}

#[test]
fn failures_of_several_kinds_each_get_a_series_and_their_first_ids() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let mut jobs = geocode_jobs(&api, 20, "");
    jobs += &format!(
        "{{\"id\":\"gone\",\"url\":\"{}\",\"params\":{{\"status\":\"404\"}}}}\n",
        api.geocode()
    );
    jobs += &format!(
        "{{\"id\":\"broken\",\"url\":\"{}\",\"params\":{{\"status\":\"500\"}}}}\n",
        api.geocode()
    );
    jobs += "{\"id\":\"refused\",\"url\":\"http://127.0.0.1:9/x\"}\n";
    jobs += &format!(
        "{{\"id\":\"denied\",\"url\":\"{}\",\"params\":{{\"address\":\"x\"}}}}\n",
        api.geocode()
    );
    s.write("jobs.jsonl", &jobs);
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "3",
        "--retries",
        "1",
        "--backoff-base",
        "10ms",
        "--fail-if",
        "/results/0/formatted_address=x",
        "--report",
        "page.html",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(1), "{stderr}");
    let Some(l) = open(&s.path("page.html"), "failures") else {
        return;
    };
    healthy(&l);
    let kinds = l.series("failures");
    assert!(kinds >= 2, "{kinds} kinds drawn\n{stderr}");
    for id in ["gone", "broken", "refused"] {
        assert!(
            l.dom.contains(&format!("<td class=\"id\">{id}</td>")),
            "{id} is not in the table"
        );
        assert!(
            l.dom.contains(&format!("{id}.json")),
            "{id}'s result file is not named"
        );
    }
    assert!(l.count("throughput", "data-series=\"failed\"") == 1);
}

#[test]
fn a_stopped_and_resumed_run_shows_both_parts() {
    use nix::sys::signal::Signal;
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 80, ",\"delay_ms\":60"));
    let mut cmd = s.supervisor();
    cmd.args(["-w", "2", "jobs.jsonl"]);
    let run = Running::start(&mut cmd);
    wait_until(CEILING, "some results", || s.result_ids().len() >= 10);
    run.signal(Signal::SIGINT);
    let (code, stderr) = run.wait(CEILING);
    assert_eq!(code, Some(130), "{stderr}");
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "3",
        "--resume",
        "--report",
        "page.html",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    let Some(l) = open(&s.path("page.html"), "resumed") else {
        return;
    };
    healthy(&l);
    assert_eq!(
        l.count("throughput", "class=\"part-line\""),
        1,
        "one boundary between two parts"
    );
    assert!(
        l.count("throughput", "class=\"stop\"") >= 1,
        "the Ctrl-C is marked"
    );
    assert!(l.dom.contains("interrupted (exit 130)") && l.dom.contains("part 2 (--resume)"));
    assert_eq!(
        l.count("timeline", "class=\"lane\""),
        3,
        "slots of both parts"
    );
}

#[test]
fn hostile_input_is_shown_escaped_and_never_runs() {
    let s = Scratch::new();
    let dir = s.path("results");
    std::fs::create_dir(&dir).unwrap();
    let evil = "<script>document.title='owned';console.error('owned')</script><img src=x onerror=alert(1)>";
    let line = |id: &str, extra: &str| {
        format!(
            "{{\"id\":{},\"attempt\":1,\"slot\":0,\"pid\":5,\"started_at\":\"2026-11-25T10:00:00.000Z\",\"elapsed_ms\":12.5,\"outcome\":\"http_error\",\"status\":500,\"error\":{{\"kind\":\"http_status\",\"message\":{}}}{extra}}}\n",
            serde_json::to_string(id).unwrap(),
            serde_json::to_string(&format!("boom {evil}")).unwrap()
        )
    };
    let mut joblog = line(evil, ",\"some_future_field\":{\"a\":[1]}");
    joblog += &line("plain-id", "");
    joblog += "{\"id\":\"cut\",\"attem";
    std::fs::write(dir.join("joblog.jsonl"), joblog).unwrap();
    std::fs::write(dir.join("plain-id.json"), "this is not JSON").unwrap();
    let (code, stderr) = run_supervisor(report_in(&s).args(["results", "--output", "page.html"]));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("results/joblog.jsonl:3: the last line is cut short"),
        "{stderr}"
    );
    assert!(
        stderr.contains("results/joblog.jsonl:2: the result of job \"plain-id\": not JSON"),
        "{stderr}"
    );
    let Some(l) = open(&s.path("page.html"), "hostile") else {
        return;
    };
    assert!(l.console.is_empty(), "console messages: {:#?}", l.console);
    assert!(l.dom.contains("data-errors=\"0\""));
    assert_eq!(
        l.dom.matches("<script").count(),
        1,
        "only the page's own script"
    );
    assert!(
        !l.dom.contains("<img"),
        "markup from the joblog became an element"
    );
    assert!(
        l.dom
            .contains("<title>results — callpool run report</title>")
    );
    assert!(l.dom.contains("&lt;script&gt;document.title="));
}

#[test]
fn report_names_a_folder_that_is_no_results_folder() {
    let s = Scratch::new();
    std::fs::create_dir(s.path("empty")).unwrap();
    let (code, stderr) = run_supervisor(report_in(&s).args(["empty"]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("empty/joblog.jsonl does not exist"),
        "{stderr}"
    );
    std::os::unix::fs::symlink("/etc/passwd", s.path("empty/joblog.jsonl")).unwrap();
    let (code, stderr) = run_supervisor(report_in(&s).args(["empty"]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("is a symbolic link"), "{stderr}");
    let (code, stderr) =
        run_supervisor(
            s.supervisor()
                .args(["--report", "no/such/dir/page.html", "jobs.jsonl"]),
        );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--report no/such/dir/page.html: the folder no/such/dir does not exist"),
        "{stderr}"
    );
}

#[test]
fn a_run_over_hosts_groups_its_lanes_by_host() {
    let lab = common::sshd::SshLab::start();
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 30, ",\"delay_ms\":10"));
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "--ssh",
        &lab.ssh_command(),
        "--host",
        "2/alpha",
        "--host",
        "1/:",
        "--report",
        "page.html",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    let Some(l) = open(&s.path("page.html"), "hosts") else {
        return;
    };
    healthy(&l);
    assert_eq!(l.count("timeline", "class=\"host\""), 2);
    assert!(l.chart("timeline").contains("data-host=\"alpha\""));
    assert_eq!(l.count("timeline", "class=\"lane\""), 3);
}
