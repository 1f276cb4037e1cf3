//! Jobs that are not HTTP calls, end to end: a jobs file of `args` and no
//! URL, a worker of one's own that answers with `value` (or an error that
//! asks for a retry, or an exception's details), the result files,
//! `--dedup`, `--resume`, `export --field` into `value`, and the bundled
//! http-worker's `unsupported_job` answer.

mod common;

use common::*;

/// A worker written from docs/protocol.md's section on workers that are
/// not HTTP calls: `args` is `{"n": N}`, the value `{"square": N*N}`. N =
/// 13 raises an error that asks for a retry on its first attempt (a marker
/// file tells attempts apart); N = 7 fails with an exception's details.
const WORKER: &str = r#"
import json, os, sys
def send(m):
    sys.stdout.write(json.dumps(m) + "\n"); sys.stdout.flush()
send({"type": "ready", "protocol": 1, "worker": "squares"})
for line in sys.stdin:
    job = json.loads(line)
    assert "request" not in job and "timeout_ms" in job, job
    n = job["args"]["n"]
    with open("calls.log", "a") as f:
        f.write(f"{n}\n")
    if n == 13 and not os.path.exists("tried-13"):
        open("tried-13", "w").close()
        send({"type": "result", "id": job["id"], "error": {"kind": "busy", "message": "try later", "retry": True}})
    elif n == 7:
        send({"type": "result", "id": job["id"], "error": {"kind": "exception", "message": "ValueError: seven", "type": "ValueError", "traceback": "Traceback ...\nValueError: seven\n"}})
    else:
        send({"type": "result", "id": job["id"], "value": {"square": n * n}, "elapsed_ms": 0.1})
"#;

fn calls(s: &Scratch) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_to_string(s.path("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(String::from)
        .collect();
    v.sort();
    v
}

#[test]
fn args_jobs_run_without_a_url_and_give_values() {
    let s = Scratch::new();
    s.write("squares.py", WORKER);
    s.write(
        "jobs.jsonl",
        concat!(
            r#"{"id":"a","args":{"n":3}}"#,
            "\n",
            r#"{"id":"b","args":{"n": 3}}"#,
            "\n",
            r#"{"id":"c","args":{"n":13}}"#,
            "\n",
            r#"{"id":"d","args":{"n":7}}"#,
            "\n",
        ),
    );
    let worker = ["--worker-cmd", "python3 squares.py"];
    let (code, err) = run_supervisor(
        s.supervisor()
            .args(["-w", "2", "--dedup", "--backoff-base", "10ms"])
            .args(worker)
            .arg("jobs.jsonl"),
    );
    assert_eq!(code, Some(1), "d failed: {err}");

    let a = s.result("a");
    assert_eq!(a["ok"], true);
    assert_eq!(a["value"], serde_json::json!({"square": 9}));
    assert!(a.get("response").is_none(), "{a}");
    assert!(a["request"].get("url").is_none(), "{a}");
    assert_eq!(a["request"]["args"], serde_json::json!({"n": 3}));
    assert_eq!(a["history"][0]["outcome"], "ok");
    // Same args (whitespace aside): one call, the other a copy.
    assert_eq!(s.result("b")["dedup_of"], "a");
    assert_eq!(s.result("b")["value"]["square"], 9);

    // The worker's `retry: true` is obeyed, on a kind of its own.
    let c = s.result("c");
    assert_eq!(
        (c["ok"].clone(), c["attempts"].clone()),
        (true.into(), 2.into()),
        "{c}"
    );
    assert_eq!(c["history"][0]["error"]["retry"], true);
    assert_eq!(c["value"]["square"], 169);

    // An exception is not retried, and its details are kept.
    let d = s.result("d");
    assert_eq!(d["ok"], false);
    assert_eq!(d["attempts"], 1);
    assert_eq!(d["error"]["kind"], "exception");
    assert_eq!(d["error"]["type"], "ValueError");
    assert!(d["error"]["traceback"].as_str().unwrap().contains("seven"));
    assert_eq!(calls(&s), ["13", "13", "3", "7"]);

    // --resume runs only what failed; an edited args line runs again.
    s.write(
        "jobs.jsonl",
        concat!(
            r#"{"id":"a","args":{"n":4}}"#,
            "\n",
            r#"{"id":"b","args":{"n":3}}"#,
            "\n",
            r#"{"id":"c","args":{"n":13}}"#,
            "\n",
            r#"{"id":"d","args":{"n":7}}"#,
            "\n",
        ),
    );
    std::fs::remove_file(s.path("calls.log")).unwrap();
    let (code, err) = run_supervisor(
        s.supervisor()
            .args(["-w", "1", "--resume"])
            .args(worker)
            .arg("jobs.jsonl"),
    );
    assert_eq!(code, Some(1), "{err}");
    assert_eq!(calls(&s), ["4", "7"], "{err}");
    assert_eq!(s.result("a")["value"]["square"], 16);

    // export: --field points into `value`; no http_status.
    let out = run_bounded(
        std::process::Command::new(SUPERVISOR)
            .current_dir(s.dir.path())
            .args(["export", "results", "--jobs", "jobs.jsonl"])
            .args(["--field", "sq=/square", "--output", "-"]),
        CEILING,
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() || out.status.code() == Some(1),
        "{text}"
    );
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("id,sq,ok,attempts,http_status"),
        "{text}"
    );
    assert!(lines[1].starts_with("a,16,true,1,,"), "{text}");
    assert!(lines[4].starts_with("d,,false,1,,exception,"), "{text}");
}

#[test]
fn the_http_worker_answers_an_args_job_unsupported_and_threads_too() {
    let s = Scratch::new();
    s.write("jobs.jsonl", "{\"id\":\"x\",\"args\":[1,2]}\n");
    for threads in [false, true] {
        let mut cmd = s.supervisor();
        cmd.args(["-w", "1", "--overwrite"]);
        if threads {
            cmd.arg("--threads");
        }
        let (code, err) = run_supervisor(cmd.arg("jobs.jsonl"));
        assert_eq!(code, Some(1), "{err}");
        let x = s.result("x");
        assert_eq!(x["error"]["kind"], "unsupported_job", "{x}");
        assert_eq!(x["attempts"], 1, "not retried: {x}");
        assert!(
            x["error"]["message"]
                .as_str()
                .unwrap()
                .contains("--worker-cmd"),
            "{x}"
        );
    }
}

#[test]
fn an_args_line_with_http_fields_is_refused_before_anything_runs() {
    let s = Scratch::new();
    s.write(
        "jobs.jsonl",
        "{\"id\":\"x\",\"args\":1,\"url\":\"http://127.0.0.1:9/\"}\n",
    );
    let (code, err) = run_supervisor(s.supervisor().arg("jobs.jsonl"));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("jobs.jsonl:1:") && err.contains("cannot have url"),
        "{err}"
    );
    assert!(s.result_ids().is_empty());
}

/// `--args`: a spreadsheet's rows as the arguments of a worker's own jobs,
/// typed from the columns, and exported back row for row by the folder's
/// manifest alone.
#[test]
fn a_tables_rows_become_args_jobs_with_args_template() {
    let s = Scratch::new();
    s.write("squares.py", WORKER);
    s.write("rows.csv", "id,n,label\nr1,4,four\nr2,5,five\nr3,x,bad\n");
    let worker = format!("python3 {}", s.path("squares.py").display());
    let run = |csv: &str| {
        run_supervisor(
            s.supervisor()
                .current_dir(s.dir.path())
                .args(["--worker-cmd", &worker, "-w", "2"])
                .args(["--args", r#"{"n": "{n:integer}", "label": "{label}"}"#])
                .arg(csv),
        )
    };
    // A cell that is not an integer: FILE:LINE before anything runs.
    let (code, stderr) = run("rows.csv");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("rows.csv:4: --args: {n:integer} needs integer, and the value \"x\""),
        "{stderr}"
    );
    s.write("rows.csv", "id,n,label\nr1,4,four\nr2,5,five\n");
    let (code, stderr) = run("rows.csv");
    assert_eq!(code, Some(0), "{stderr}");
    let r = s.result("r2");
    assert_eq!(r["value"]["square"], 25, "{r}");
    assert_eq!(r["request"]["args"]["label"], "five", "{r}");
    let out = run_bounded(
        std::process::Command::new(SUPERVISOR)
            .current_dir(s.dir.path())
            .args(["export", "results", "--field", "sq=/square"]),
        std::time::Duration::from_secs(60),
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("r1,4,four,16,"), "{table}");
    assert!(table.contains("r2,5,five,25,"), "{table}");
}
