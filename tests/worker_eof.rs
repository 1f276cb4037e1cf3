//! The http-worker ends when nobody is left to read its results, as a
//! worker on another host must (docs/protocol.md §9): at the end of its
//! stdin, even in the middle of a call, and when its parent dies, also
//! without `CALLPOOL_SUPERVISOR_PID`. The worker is run directly, as ssh
//! would run it, with pipes this test holds.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::thread;

use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::Value;

/// An http-worker as a child of this test, without the supervisor's
/// environment, its stdout read line by line on a thread (so that every
/// wait for a line is bounded) and its stderr kept.
struct Worker {
    child: Child,
    lines: Receiver<String>,
    stderr: thread::JoinHandle<String>,
}

impl Worker {
    fn start(stdin: Stdio) -> Self {
        let mut child = Command::new(HTTP_WORKER)
            .env_remove("CALLPOOL_SUPERVISOR_PID")
            .env_remove("CALLPOOL_MEMORY_LIMIT")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start http-worker");
        let lines = read_lines(child.stdout.take().unwrap());
        let mut pipe = child.stderr.take().unwrap();
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = pipe.read_to_string(&mut text);
            text
        });
        let worker = Worker {
            child,
            lines,
            stderr,
        };
        let ready = worker.next_message();
        assert_eq!(ready["type"], "ready", "{ready}");
        worker
    }

    /// The next stdout line, parsed; fails past the ceiling.
    fn next_message(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(CEILING)
            .expect("a line on the worker's stdout");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line:?}"))
    }

    fn send(&mut self, line: &str) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Closes the worker's stdin and waits for its exit, at most the
    /// ceiling; returns its exit code, the stdout lines it wrote since the
    /// last one read, and its stderr.
    fn close_and_wait(mut self) -> (Option<i32>, Vec<String>, String) {
        drop(self.child.stdin.take());
        let status = wait_child(&mut self.child, CEILING)
            .unwrap_or_else(|| panic!("the worker ran on for {CEILING:?} after its stdin closed"));
        let rest = self.lines.iter().collect();
        (status.code(), rest, self.stderr.join().unwrap())
    }
}

/// Each line read from `pipe`, sent on the channel until the pipe ends.
fn read_lines(pipe: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    thread::spawn(move || {
        for line in BufReader::new(pipe).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A job line of protocol v1 for a GET of `url`.
fn job(id: &str, url: &str, timeout_ms: u64) -> String {
    serde_json::json!({
        "type": "job",
        "id": id,
        "request": {"method": "GET", "url": url, "timeout_ms": timeout_ms},
    })
    .to_string()
}

/// The port of a `http://127.0.0.1:PORT` base URL.
fn port(base: &str) -> u16 {
    base.rsplit(':').next().unwrap().parse().unwrap()
}

/// Whether process `pid` holds a TCP connection to 127.0.0.1:`port` that is
/// established: the worker is in the middle of a call to the demo API.
fn connected(pid: u32, port: u16) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    let sockets: Vec<String> = fds
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|link| {
            let link = link.to_string_lossy().into_owned();
            link.strip_prefix("socket:[")?
                .strip_suffix(']')
                .map(String::from)
        })
        .collect();
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    let remote = format!("0100007F:{port:04X}");
    table.lines().skip(1).any(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // rem_address, st (01 = ESTABLISHED), inode
        f.len() > 9 && f[2] == remote && f[3] == "01" && sockets.iter().any(|s| s == f[9])
    })
}

#[test]
fn the_end_of_stdin_ends_the_worker_in_the_middle_of_a_call() {
    let api = DemoApi::start();
    let mut worker = Worker::start(Stdio::piped());
    // A call the server never answers, with 600 s to wait for it, and a
    // second job queued behind it, as with --prefetch 2.
    let hang = format!("{}?address=Paris&hang=1", api.geocode());
    worker.send(&job("hangs", &hang, 600_000));
    worker.send(&job(
        "queued",
        &format!("{}?address=Paris", api.geocode()),
        600_000,
    ));
    let pid = worker.child.id();
    let api_port = port(&api.base);
    wait_until(
        CEILING,
        "the worker to be connected to the demo API",
        || connected(pid, api_port),
    );
    // What sshd does when the connection dies: the worker's stdin ends. The
    // call would last 600 s; the worker is gone well within the ceiling.
    let (code, rest, stderr) = worker.close_and_wait();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(rest.is_empty(), "no result is written: {rest:?}");
    assert!(
        stderr.contains("http-worker: stdin ended with 2 job(s) not answered yet"),
        "{stderr}"
    );
}

#[test]
fn the_end_of_stdin_between_jobs_ends_the_worker_as_before() {
    let api = DemoApi::start();
    let mut worker = Worker::start(Stdio::piped());
    worker.send(&job(
        "paris",
        &format!("{}?address=Paris", api.geocode()),
        10_000,
    ));
    let result = worker.next_message();
    assert_eq!(result["type"], "result", "{result}");
    assert_eq!(result["id"], "paris", "{result}");
    assert_eq!(result["response"]["status"], 200, "{result}");
    assert_eq!(result["response"]["body"]["status"], "OK", "{result}");
    assert!(result["elapsed_ms"].is_number(), "{result}");
    let (code, rest, stderr) = worker.close_and_wait();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(rest.is_empty(), "{rest:?}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[test]
fn a_file_on_stdin_is_answered_whole() {
    // A file is no connection: the worker reads its end during the first
    // call, and still answers every job in it.
    let api = DemoApi::start();
    let s = Scratch::new();
    let slow = format!("{}?address=Paris&delay_ms=300", api.geocode());
    let fast = format!("{}?address=Tokyo", api.geocode());
    let jobs = s.write(
        "jobs.jsonl",
        &format!(
            "{}\n\n{}\n",
            job("slow", &slow, 10_000),
            job("fast", &fast, 10_000)
        ),
    );
    let worker = Worker::start(Stdio::from(std::fs::File::open(jobs).unwrap()));
    let first = worker.next_message();
    let second = worker.next_message();
    assert_eq!(first["id"], "slow", "{first}");
    assert_eq!(first["response"]["status"], 200, "{first}");
    assert_eq!(second["id"], "fast", "{second}");
    assert_eq!(second["response"]["status"], 200, "{second}");
    let (code, rest, stderr) = worker.close_and_wait();
    assert_eq!(code, Some(0), "{stderr}");
    assert!(rest.is_empty(), "{rest:?}");
}

#[test]
fn a_line_that_is_not_a_job_still_ends_the_worker_with_status_2() {
    let mut worker = Worker::start(Stdio::piped());
    worker.send("not a job");
    let (code, rest, stderr) = worker.close_and_wait();
    assert_eq!(code, Some(2), "{stderr}");
    assert!(rest.is_empty(), "{rest:?}");
    assert!(
        stderr.starts_with("http-worker: invalid job line (") && stderr.contains("not a job"),
        "{stderr}"
    );
}

/// Kills a worker left behind by a failed test.
struct KillOnDrop(i32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if alive(self.0) {
            let _ = kill(Pid::from_raw(self.0), Signal::SIGKILL);
        }
    }
}

#[test]
fn without_a_supervisor_pid_the_worker_dies_with_its_parent() {
    // The parent is a shell, as under sshd; the worker's stdin is a pipe
    // this test holds open, so its end is not what stops the worker. (A
    // shell gives a background job /dev/null as stdin unless it is given
    // one explicitly: fd 3.)
    let mut shell = Command::new("sh")
        .args([
            "-c",
            "exec 3<&0; \"$0\" <&3 3<&- & echo \"pid $!\"; wait",
            HTTP_WORKER,
        ])
        .env_remove("CALLPOOL_SUPERVISOR_PID")
        .env_remove("CALLPOOL_MEMORY_LIMIT")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start sh");
    // The shell's line and the worker's `ready`, in either order: once
    // `ready` is out, the worker has set its parent-death signal.
    let lines = read_lines(shell.stdout.take().unwrap());
    let (mut pid, mut ready) = (None, false);
    while pid.is_none() || !ready {
        let line = lines
            .recv_timeout(CEILING)
            .expect("the worker's pid and its ready line");
        if let Some(p) = line.strip_prefix("pid ") {
            pid = Some(p.parse::<i32>().unwrap());
        } else {
            let msg: Value = serde_json::from_str(&line).unwrap();
            assert_eq!(msg["type"], "ready", "{line}");
            ready = true;
        }
    }
    let pid = pid.unwrap();
    let _guard = KillOnDrop(pid);
    assert!(alive(pid), "the worker runs");

    kill(Pid::from_raw(shell.id() as i32), Signal::SIGKILL).unwrap();
    wait_child(&mut shell, CEILING).expect("the shell is gone");
    wait_until(CEILING, "the worker to die with its parent", || !alive(pid));
    // Its stdin was open all along.
    drop(shell.stdin.take());
}
