//! A server that echoes the key back in another spelling (PHP's `\/`,
//! `\uXXXX`, lower-case percent-encoding, base64 in a Basic credential),
//! a key so short that it is also ordinary data, and a key written
//! literally on the command line: none of them shows anywhere the run
//! writes or prints, and no result file is broken by the masking (issue
//! 18, items 2, 3 and 5).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

const SECRET: &str = "sk/LEAK+chk-7731?x";
const LIMIT: Duration = Duration::from_secs(60);

/// Every way the server spells the key it was sent; none may appear.
fn spellings(key: &str) -> Vec<String> {
    let pct_lower: String = key.bytes().map(|b| format!("%{b:02x}")).collect();
    let form: String = url::form_urlencoded::byte_serialize(key.as_bytes()).collect();
    vec![
        key.to_string(),
        key.replace('/', "\\/"),
        key.chars()
            .map(|c| format!("\\u{:04x}", c as u32))
            .collect(),
        pct_lower.clone(),
        pct_lower.to_uppercase(),
        lower_hex(&form),
        form,
        // base64("user:" + key), as a Basic credential carries it.
        "dXNlcjpzay9MRUFLK2Noay03NzMxP3g".to_string(),
        // URL-safe base64 of the key.
        "c2svTEVBSytjaGstNzczMT94"
            .replace('/', "_")
            .replace('+', "-"),
    ]
}

/// `%2F` as `%2f`: the same text with lower-case hex digits.
fn lower_hex(encoded: &str) -> String {
    let mut out = String::new();
    let mut rest = encoded;
    while let Some(i) = rest.find('%') {
        out.push_str(&rest[..i]);
        let end = (i + 3).min(rest.len());
        out.push_str(&rest[i..end].to_lowercase());
        rest = &rest[end..];
    }
    out + rest
}

/// A server written for this test: it answers every GET with a JSON body
/// (written by hand, as PHP and others write it) holding the `key` query
/// parameter in each spelling, and the same in a header.
const ECHO_SERVER: &str = r#"
import base64, http.server, json, re, sys, urllib.parse

def lower_hex(s):
    return re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), s)

class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def log_message(self, *a):
        pass
    def do_GET(self):
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        key = q.get("key", [""])[0]
        esc = json.dumps(key)[1:-1]
        body = ('{"php":"%s","uni":"%s","pct":"%s","form":"%s","basic":"%s","b64url":"%s","year":2024,"n":520245,"text":"in 2024 and 2025"}' % (
            esc.replace("/", "\\/"),
            "".join("\\u%04x" % ord(c) for c in key),
            "".join("%%%02x" % b for b in key.encode()),
            lower_hex(urllib.parse.quote_plus(key)),
            base64.b64encode(("user:" + key).encode()).decode(),
            base64.urlsafe_b64encode(key.encode()).decode(),
        )).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Echo", lower_hex(urllib.parse.quote(key, safe="")))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

s = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

struct EchoServer {
    child: Child,
    base: String,
}

impl EchoServer {
    fn start(s: &Scratch) -> Self {
        let script = s.write("echo_server.py", ECHO_SERVER);
        let mut child = Command::new("python3")
            .arg(&script)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line.trim().parse().expect("port");
        EchoServer {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn assert_no_spelling(what: &str, text: &str, key: &str) {
    for s in spellings(key) {
        assert!(!text.contains(&s), "{what} holds the key as {s:?}:\n{text}");
    }
}

fn export(s: &Scratch, base: &str, env_key: &str) -> String {
    let out = run_bounded(
        Command::new(SUPERVISOR)
            .current_dir(s.dir.path())
            .env("CALLPOOL_TEST_SECRET", env_key)
            .args(["export", "results", "--jobs", "jobs.csv"])
            .args(["--param", "key=${CALLPOOL_TEST_SECRET}"])
            .args(["--url", base])
            .args([
                "--field", "php=/php", "--field", "uni=/uni", "--field", "pct=/pct",
            ])
            .args(["--field", "form=/form", "--field", "basic=/basic"])
            .args(["--field", "b64url=/b64url", "--field", "all="]),
        LIMIT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_key_echoed_in_any_spelling_is_hidden_everywhere() {
    for mode in [&[][..], &["--threads"][..]] {
        let s = Scratch::new();
        let server = EchoServer::start(&s);
        s.write(
            "jobs.csv",
            "id,address\na,1 Main St\nb,2 Main St\nc,3 Main St\n",
        );
        let (code, stderr) = run_supervisor(
            s.supervisor()
                .env("CALLPOOL_TEST_SECRET", SECRET)
                .args(["-v", "--workers", "2", "--url", &server.base])
                .args(["--param", "key=${CALLPOOL_TEST_SECRET}"])
                .args(["--summary-json", "summary.json"])
                .args(mode)
                .arg("jobs.csv"),
        );
        assert_eq!(code, Some(0), "{mode:?}: {stderr}");
        assert_no_spelling("stderr", &stderr, SECRET);
        for (path, text) in all_files(s.dir.path()) {
            if !path.ends_with(".py") {
                assert_no_spelling(&path, &text, SECRET);
            }
        }
        let r = s.result("a");
        for field in ["php", "uni", "pct", "form"] {
            assert_eq!(r["response"]["body"][field], "REDACTED", "{field}: {r}");
        }
        assert_eq!(r["response"]["headers"]["x-echo"], "REDACTED", "{r}");
        // Base64 is masked where only the key's bits make it up.
        let basic = r["response"]["body"]["basic"].as_str().unwrap();
        assert!(basic.contains("REDACTED"), "{basic}");
        // The key is 18 characters: other data is left alone.
        assert_eq!(r["response"]["body"]["year"], 2024);
        let table = export(&s, &server.base, SECRET);
        assert_no_spelling("export", &table, SECRET);
        assert!(table.contains("REDACTED"), "{table}");
    }
}

#[test]
fn a_short_numeric_key_never_breaks_a_result() {
    let s = Scratch::new();
    let server = EchoServer::start(&s);
    s.write("jobs.csv", "id,address\na,1 Main St\nb,2 Main St\n");
    let run = |flags: &[&str]| {
        run_supervisor(
            s.supervisor()
                .env("CALLPOOL_TEST_SECRET", "2024")
                .args(["--workers", "2", "--url", &server.base])
                .args(["--param", "key=${CALLPOOL_TEST_SECRET}"])
                .args(flags)
                .arg("jobs.csv"),
        )
    };
    let (code, stderr) = run(&[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("warning: the secret of --param key is digits only"),
        "{stderr}"
    );
    // Valid JSON (s.result parses it), the whole values masked, the
    // numbers that only hold the digits masked whole, never spliced.
    let r = s.result("a");
    let body = &r["response"]["body"];
    assert_eq!(body["year"], "REDACTED", "{r}");
    assert_eq!(body["n"], "REDACTED", "{r}");
    assert_eq!(body["php"], "REDACTED", "{r}");
    let joblog = std::fs::read_to_string(s.results().join("joblog.jsonl")).unwrap();
    for line in joblog.lines() {
        serde_json::from_str::<serde_json::Value>(line).expect("joblog line is JSON");
    }
    // --resume finds both results ok and runs nothing again.
    let (code, stderr) = run(&["--resume"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("2 jobs already ok, skipped"), "{stderr}");
    let table = export(&s, &server.base, "2024");
    assert_eq!(table.matches(",ok\n").count(), 2, "{table}");
}

#[test]
fn a_literal_key_never_shows_in_the_resume_command() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "jobs.jsonl",
        &geocode_jobs(&api, 40, ",\"delay_ms\":\"200\""),
    );
    let literal = "sk-literal-9f8e7d6c5b";
    let exported = "sk-exported-0a1b2c3d4e";
    let sup = Running::start(
        s.supervisor()
            .env("CALLPOOL_EXPORTED_KEY", exported)
            .args(["--workers", "2", "--summary-json", "summary.json"])
            .args(["--param", &format!("key={literal}")])
            .args(["--header", &format!("Authorization: Bearer {exported}")])
            .arg("jobs.jsonl"),
    );
    wait_until(LIMIT, "a result", || !s.result_ids().is_empty());
    sup.signal(Signal::SIGINT);
    let (code, stderr) = sup.wait(LIMIT);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains("warning: --param key is written on the command line"),
        "{stderr}"
    );
    let summary = std::fs::read_to_string(s.path("summary.json")).unwrap();
    for text in [&stderr, &summary] {
        assert!(!text.contains(literal), "{text}");
        assert!(!text.contains(exported), "{text}");
    }
    assert!(stderr.contains("to finish them run: "), "{stderr}");
    assert!(stderr.contains("key=REDACTED"), "{stderr}");
    assert!(
        stderr.contains("'Authorization: Bearer ${CALLPOOL_EXPORTED_KEY}'"),
        "{stderr}"
    );
    assert!(
        stderr.contains("REDACTED in that command stands for the secret of --param key"),
        "{stderr}"
    );
    let v: serde_json::Value = serde_json::from_str(&summary).unwrap();
    let resume = v["resume_command"].as_str().unwrap();
    assert!(
        resume.contains("key=REDACTED") && resume.contains("${CALLPOOL_EXPORTED_KEY}"),
        "{resume}"
    );
}
