//! Shared helpers for the end-to-end tests: the real demo API on an
//! ephemeral loopback port, the real supervisor in a fresh temporary folder,
//! and bounded polling instead of fixed sleeps.

#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod sshd;

pub const SUPERVISOR: &str = env!("CARGO_BIN_EXE_supervisor");

/// How long a test waits for something that is bound to happen (a worker
/// to start, a process to be gone, a log line): a ceiling for a loaded
/// machine, never a measure of speed. Tests await conditions up to it
/// instead of asserting that something took less than N seconds.
pub const CEILING: Duration = Duration::from_secs(60);
pub const DEMO_API: &str = env!("CARGO_BIN_EXE_demo-api");
pub const HTTP_WORKER: &str = env!("CARGO_BIN_EXE_http-worker");

/// The Python worker written from docs/protocol.md.
pub fn py_worker(mode: &str) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/workers/py_worker.py");
    format!("python3 {} {mode}", script.display())
}

/// The demo API, running until dropped.
pub struct DemoApi {
    child: Child,
    /// e.g. `http://127.0.0.1:40123`
    pub base: String,
}

impl DemoApi {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// The demo API started with `args` too, e.g. `--tls-cert FILE --tls-key
    /// FILE`: then `base` is `https://127.0.0.1:PORT`.
    pub fn start_with(args: &[&str]) -> Self {
        let mut child = Command::new(DEMO_API)
            .args(["--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start demo-api");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read demo-api's address line");
        let base = line
            .trim()
            .rsplit(' ')
            .next()
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
            .unwrap_or_else(|| panic!("unexpected demo-api line {line:?}"))
            .to_string();
        DemoApi { child, base }
    }

    /// The geocoding endpoint.
    pub fn geocode(&self) -> String {
        format!("{}/maps/api/geocode/json", self.base)
    }
}

impl Drop for DemoApi {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh folder for one test.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        Scratch {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
    pub fn write(&self, name: &str, content: &str) -> PathBuf {
        let p = self.path(name);
        std::fs::write(&p, content).expect("write file");
        p
    }
    pub fn results(&self) -> PathBuf {
        self.path("results")
    }
    /// A supervisor command in this folder, with `--out results`.
    pub fn supervisor(&self) -> Command {
        let mut c = Command::new(SUPERVISOR);
        c.current_dir(self.dir.path())
            .args(["--out", "results"])
            .stdin(Stdio::null());
        c
    }
    /// Result files (not the joblog) by id.
    pub fn result_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = match std::fs::read_dir(self.results()) {
            Ok(rd) => rd
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter_map(|n| n.strip_suffix(".json").map(String::from))
                .collect(),
            Err(_) => Vec::new(),
        };
        ids.sort();
        ids
    }
    pub fn result(&self, id: &str) -> Value {
        self.result_in("results", id)
    }
    /// A result file from another results folder of this scratch folder.
    pub fn result_in(&self, dir: &str, id: &str) -> Value {
        let text = std::fs::read_to_string(self.path(dir).join(format!("{id}.json")))
            .unwrap_or_else(|e| panic!("result {id}: {e}"));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("result {id} is not JSON: {e}"))
    }
    /// Every file in the results folder whose name is not a result, the
    /// joblog, the run log or a folder: temporary files that should not be
    /// there.
    pub fn stray_files(&self) -> Vec<String> {
        std::fs::read_dir(self.results())
            .map(|rd| {
                rd.map(|e| e.unwrap().file_name().into_string().unwrap())
                    .filter(|n| {
                        (n.starts_with('.') || !n.ends_with(".json"))
                            && n != "joblog.jsonl"
                            && n != "runlog.jsonl"
                            && n != ".callpool-run"
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Every file under `dir` (none if it does not exist), as text, with its
/// path: for searching a run's files for a secret.
pub fn all_files(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(all_files(&path));
        } else {
            let text = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
            out.push((path.display().to_string(), text));
        }
    }
    out
}

/// Geocoding jobs against the demo API, one per line.
pub fn geocode_jobs(api: &DemoApi, n: usize, extra_params: &str) -> String {
    let cities = [
        "New York",
        "Barcelona",
        "Tokyo",
        "Paris",
        "London",
        "Nairobi",
        "Lima",
    ];
    let langs = ["en", "ca", "ja", "fr", "de"];
    let mut out = String::new();
    for i in 0..n {
        out.push_str(&format!(
            "{{\"id\":\"job-{i:05}\",\"url\":\"{}\",\"params\":{{\"address\":\"{} Main St, {}\",\"language\":\"{}\"{extra_params}}}}}\n",
            api.geocode(),
            100 + i,
            cities[i % cities.len()],
            langs[i % langs.len()],
        ));
    }
    out
}

/// Polls `cond` every 20 ms until it holds or `limit` passes.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Waits for a child to exit, polling, for at most `limit`; past it the
/// child is killed and `None` returned.
pub fn wait_child(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs a supervisor command to its end (at most 90 s) and returns its
/// exit code and its stderr as text.
pub fn run_supervisor(cmd: &mut Command) -> (Option<i32>, String) {
    let out = run_bounded(cmd, Duration::from_secs(90));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command to its end, with a bound.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stdout.read_to_end(&mut v);
        v
    });
    let err_t = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = stderr.read_to_end(&mut v);
        v
    });
    let Some(status) = wait_child(&mut child, limit) else {
        panic!(
            "command ran past {limit:?}; stderr:\n{}",
            String::from_utf8_lossy(&err_t.join().unwrap())
        );
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

/// A supervisor running in the background, with its stderr collected.
pub struct Running {
    pub child: Child,
    stderr: Arc<Mutex<String>>,
    reader: Option<thread::JoinHandle<()>>,
}

impl Running {
    pub fn start(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn supervisor");
        let stderr = Arc::new(Mutex::new(String::new()));
        let pipe: ChildStderr = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let reader = thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Running {
            child,
            stderr,
            reader: Some(reader),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Worker pids announced so far ("worker N started (pid P)").
    pub fn worker_pids(&self) -> Vec<i32> {
        worker_pids(&self.stderr())
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig).expect("signal");
    }

    /// Waits for the exit, with a bound; returns the exit code (None if
    /// killed by a signal) and the whole stderr.
    pub fn wait(mut self, limit: Duration) -> (Option<i32>, String) {
        let Some(status) = wait_child(&mut self.child, limit) else {
            panic!("supervisor ran past {limit:?}; stderr:\n{}", self.stderr());
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status.code(), self.stderr())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Worker pids announced in a supervisor's stderr.
pub fn worker_pids(stderr: &str) -> Vec<i32> {
    stderr
        .lines()
        .filter_map(|l| l.split(" started (pid ").nth(1))
        .filter_map(|rest| rest.trim_end_matches(')').parse().ok())
        .collect()
}

/// Whether a worker process with this pid is alive (a zombie counts as
/// gone, and so does a pid reused by a process that is not a worker).
pub fn alive(pid: i32) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if !String::from_utf8_lossy(&cmdline).contains("worker") {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            let state = stat
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next());
            state != Some("Z") && state != Some("X")
        }
        Err(_) => false,
    }
}

/// Asserts that none of these processes is alive, polling up to `limit`.
pub fn assert_all_gone(pids: &[i32], limit: Duration) {
    wait_until(limit, "every worker process to be gone", || {
        pids.iter().all(|&p| !alive(p))
    });
}

/// Runs a system command (mount, umount, chattr, ...); the error says
/// which, how it ended and its stderr.
pub fn run_command(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("{program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A path as text, for a command's arguments.
pub fn path_text(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// Says why a test that needs root cannot run here: a failure in CI (which
/// runs as root, where the test must run), a skip elsewhere.
pub fn cannot_run(why: &str) {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
        panic!("CI runs as root and must run this test, but {why}");
    }
    eprintln!("SKIPPED: {why} (this needs root)");
}

/// Of the gaps between consecutive `started_at` times (RFC 3339, within
/// one hour), how many are shorter than `ms`, and how many gaps there are.
pub fn gaps_shorter_than(started_at: &[String], ms: f64) -> (usize, usize) {
    let mut starts = started_at.to_vec();
    starts.sort();
    let millis = |t: &str| -> f64 {
        let secs: f64 = t[17..23].parse().expect("seconds");
        let mins: f64 = t[14..16].parse().expect("minutes");
        mins * 60_000.0 + secs * 1000.0
    };
    let gaps: Vec<f64> = starts
        .windows(2)
        .map(|w| millis(&w[1]) - millis(&w[0]))
        .collect();
    (gaps.iter().filter(|&&g| g < ms).count(), gaps.len())
}
