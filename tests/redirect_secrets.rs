//! A redirect to another origin never carries a secret header there: two
//! servers of the test's own on loopback, on two ports (two origins), A
//! redirecting to B and to itself, each recording every request head it
//! gets. The secret headers are a `--redact` name, a `${NAME}` value (from
//! `--header` and from the job line) and the built-in `Authorization`; a
//! plain header goes everywhere, as with curl. In process mode, in
//! `--threads` mode and on a remote host (the same http-worker, over ssh);
//! `--location-trusted` keeps them.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread;

use common::*;

const API_KEY: &str = "ak-REDIRECT-5521-qwerty";
const ENV_TOKEN: &str = "et-REDIRECT-8830-asdfgh";
const JOB_TOKEN: &str = "jt-REDIRECT-4417-zxcvbn";
const BEARER: &str = "br-REDIRECT-9902-poiuyt";

/// Every secret value, with the header that carries it.
const SECRETS: [(&str, &str); 4] = [
    ("x-api-key", API_KEY),
    ("x-env-token", ENV_TOKEN),
    ("x-job-token", JOB_TOKEN),
    ("authorization", BEARER),
];

/// One request as a server got it: its path and its head as sent.
#[derive(Clone, Debug)]
struct Seen {
    path: String,
    head: String,
}

impl Seen {
    /// The value of a header (name in lower case), if it was sent.
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_string())
        })
    }
}

/// A tiny HTTP/1.1 server on a loopback port: `/cross/T` redirects (302)
/// to `OTHER/final/T`, `/same/T` to `/final/T` on itself, anything else
/// answers `{"ok":true}`. Every connection is closed after one answer.
struct Server {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Server {
    fn start(other: Option<&str>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        let other = other.map(str::to_string);
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let _ = answer(stream, other.as_deref(), &record);
            }
        });
        Server { base, seen }
    }

    /// The requests for `path` so far.
    fn requests(&self, path: &str) -> Vec<Seen> {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|s| s.path == path).cloned().collect()
    }

    /// Every request head, as one text.
    fn all_heads(&self) -> String {
        let seen = self.seen.lock().unwrap();
        seen.iter().map(|s| s.head.as_str()).collect()
    }
}

fn answer(
    stream: TcpStream,
    other: Option<&str>,
    record: &Mutex<Vec<Seen>>,
) -> std::io::Result<()> {
    stream.set_read_timeout(Some(CEILING))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        head.push_str(&line);
        if line == "\r\n" {
            break;
        }
    }
    let path = head
        .split(' ')
        .nth(1)
        .unwrap_or("")
        .split('?')
        .next()
        .unwrap_or("")
        .to_string();
    record.lock().unwrap().push(Seen {
        path: path.clone(),
        head,
    });
    let location = match (path.strip_prefix("/cross/"), path.strip_prefix("/same/")) {
        (Some(tag), _) => other.map(|o| format!("{o}/final/{tag}")),
        (_, Some(tag)) => Some(format!("/final/{tag}")),
        _ => None,
    };
    let mut out = stream;
    match location {
        Some(to) => write!(
            out,
            "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?,
        None => {
            let body = r#"{"ok":true}"#;
            write!(
                out,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            )?;
        }
    }
    out.flush()
}

/// B, then A redirecting to it.
fn servers() -> (Server, Server) {
    let b = Server::start(None);
    let a = Server::start(Some(&b.base));
    (a, b)
}

/// The jobs: `cross` redirects from A to B, `same` from A to A. Each line
/// sets a header from the environment.
fn jobs(s: &Scratch, a: &Server) {
    let jobs: String = ["cross", "same"]
        .iter()
        .map(|kind| {
            format!(
                "{{\"id\":\"{kind}\",\"url\":\"{}/{kind}/t\",\"headers\":{{\"X-Job-Token\":\"${{CALLPOOL_TEST_JOB_TOKEN}}\"}}}}\n",
                a.base
            )
        })
        .collect();
    s.write("jobs.jsonl", &jobs);
}

/// The supervisor with the secret headers and a plain one.
fn supervisor(s: &Scratch) -> std::process::Command {
    let mut c = s.supervisor();
    c.env("CALLPOOL_TEST_ENV_TOKEN", ENV_TOKEN)
        .env("CALLPOOL_TEST_JOB_TOKEN", JOB_TOKEN)
        .args([
            "--retries",
            "0",
            "--redact",
            "X-Api-Key",
            "--header",
            &format!("X-Api-Key: {API_KEY}"),
            "--header",
            "X-Env-Token: ${CALLPOOL_TEST_ENV_TOKEN}",
            "--header",
            &format!("Authorization: Bearer {BEARER}"),
            "--header",
            "X-Plain: visible",
        ]);
    c
}

/// Checks that every secret header and the plain one reached `seen`.
fn all_headers_in(seen: &Seen, what: &str) {
    for (name, value) in SECRETS {
        let got = seen.header(name).unwrap_or_default();
        assert!(
            got.ends_with(value),
            "{what}: {name} is {got:?}\n{}",
            seen.head
        );
    }
    assert_eq!(seen.header("x-plain").as_deref(), Some("visible"), "{what}");
}

/// Runs both jobs with `extra` options; returns A and B with what they got.
/// The caller checks B first: what it got is the point.
fn run(extra: &[&str]) -> (Server, Server) {
    let (a, b) = servers();
    let s = Scratch::new();
    jobs(&s, &a);
    let (code, stderr) = run_supervisor(supervisor(&s).args(extra).arg("jobs.jsonl"));
    assert_eq!(code, Some(0), "{stderr}");
    for id in ["cross", "same"] {
        let r = s.result(id);
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["response"]["body"]["ok"], true, "{r}");
    }
    (a, b)
}

/// A got every header on the job's own URL, and again on the redirect to
/// itself (the same origin).
fn a_got_everything(a: &Server) {
    for path in ["/cross/t", "/same/t", "/final/t"] {
        let got = a.requests(path);
        assert_eq!(got.len(), 1, "{path}: {got:?}");
        all_headers_in(&got[0], &format!("A {path}"));
    }
}

/// Without `--location-trusted`: B gets the plain header and no secret.
fn secrets_stay_home(extra: &[&str]) {
    let (a, b) = run(extra);
    let got = b.requests("/final/t");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].header("x-plain").as_deref(), Some("visible"));
    let heads = b.all_heads();
    for (name, value) in SECRETS {
        assert!(got[0].header(name).is_none(), "B got {name}:\n{heads}");
        assert!(!heads.contains(value), "B got {name}'s value:\n{heads}");
    }
    a_got_everything(&a);
}

/// With `--location-trusted`: B gets them all.
fn trusted(extra: &[&str]) {
    let mut args = vec!["--location-trusted"];
    args.extend_from_slice(extra);
    let (a, b) = run(&args);
    let got = b.requests("/final/t");
    assert_eq!(got.len(), 1, "{got:?}");
    all_headers_in(&got[0], "B, trusted");
    a_got_everything(&a);
}

#[test]
fn a_cross_origin_redirect_drops_secret_headers_with_processes() {
    secrets_stay_home(&[]);
}

#[test]
fn a_cross_origin_redirect_drops_secret_headers_with_threads() {
    secrets_stay_home(&["--threads"]);
}

#[test]
fn location_trusted_keeps_them_with_processes() {
    trusted(&[]);
}

#[test]
fn location_trusted_keeps_them_with_threads() {
    trusted(&["--threads"]);
}

/// The flag belongs to the http-worker: with a program of one's own it is
/// refused, as --max-body is, instead of silently doing nothing.
#[test]
fn location_trusted_with_a_worker_command_is_refused() {
    let s = Scratch::new();
    s.write("jobs.jsonl", "{\"url\":\"http://127.0.0.1:9/\"}\n");
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "--location-trusted",
        "--worker-cmd",
        "cat",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "--location-trusted is an option of the built-in http-worker, which --worker-cmd replaces"
        ),
        "{stderr}"
    );
}

/// A remote worker is the same http-worker, started over ssh with this
/// run's http-worker options, `--location-trusted` among them.
#[test]
fn on_a_remote_host_too() {
    let lab = common::sshd::SshLab::start();
    let ssh = lab.ssh_command();
    let remote = ["--ssh", ssh.as_str(), "--host", "1/alpha"];
    secrets_stay_home(&remote);
    trusted(&remote);
}
