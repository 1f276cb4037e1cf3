//! End-to-end tests of CSV/TSV jobs files, `--dedup` and `--resume` after
//! an edit: the real supervisor against the demo API.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::Value;

/// Runs the supervisor on `file` against the demo API's geocoder.
fn run(s: &Scratch, api: &DemoApi, file: &str, extra: &[&str]) -> (Option<i32>, String) {
    let url = api.geocode();
    run_supervisor(
        s.supervisor()
            .args(["--workers", "2", "--url", &url])
            .args(extra)
            .arg(file),
    )
}

/// Runs a check that must fail: exit 2, nothing written, and the message.
fn refused(s: &Scratch, file: &str, content: &[u8], extra: &[&str]) -> String {
    std::fs::write(s.path(file), content).unwrap();
    let (code, stderr) = run_supervisor(
        s.supervisor()
            .args(["--url", "http://127.0.0.1:9/geo"])
            .args(extra)
            .arg(file),
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(!s.results().exists(), "nothing is written: {stderr}");
    assert!(!stderr.contains("started"), "no worker started: {stderr}");
    stderr
}

#[test]
fn a_csv_with_awkward_rows_runs_with_every_column_sent() {
    let api = DemoApi::start();
    let s = Scratch::new();
    // A byte-order mark, CRLF line ends, a quoted comma, a quoted quote, a
    // quoted newline, an accent, an empty field, and a 10 MB field.
    let big = "x".repeat(10 * 1024 * 1024);
    let mut csv = String::from("\u{feff}id,Street Address,language,note\r\n");
    csv.push_str("nyc,\"100 Broadway, New York\",en,\"say \"\"hi\"\"\"\r\n");
    csv.push_str("bcn,\"Carrer de Mallorca, 401\nBarcelona\",ca,\r\n");
    csv.push_str("zur,Bahnhofstraße 1 Zürich,de,\r\n");
    csv.push_str(&format!("big,Paris,fr,{big}\r\n"));
    s.write("jobs.csv", &csv);
    let (code, stderr) = run(
        &s,
        &api,
        "jobs.csv",
        &[
            "--rename",
            "Street Address=address",
            "--skip-empty",
            "--columns",
            "Street Address,language,note",
            "--retries",
            "0",
        ],
    );
    // The 10 MB field is read whole; no HTTP client sends a URL that long,
    // so that row fails cleanly, with a message of a readable size.
    assert_eq!(code, Some(1), "{}", &stderr[..stderr.len().min(2000)]);
    assert!(stderr.len() < 10_000, "the summary quotes no megabytes");
    assert_eq!(s.result_ids(), ["bcn", "big", "nyc", "zur"]);
    let big_result = s.result("big");
    assert_eq!(big_result["error"]["kind"], "bad_request");
    let message = big_result["error"]["message"].as_str().unwrap();
    assert!(message.len() < 1000, "{}", &message[..300]);
    assert!(
        message.ends_with("uri too long") && message.contains(" bytes): "),
        "{}",
        &message[..300]
    );
    assert!(
        big_result["request"]["url"].as_str().unwrap().len() > 10 * 1024 * 1024,
        "the field went out whole"
    );
    let nyc = s.result("nyc");
    let echo = &nyc["response"]["body"]["echo"];
    assert_eq!(echo["address"], "100 Broadway, New York", "{nyc}");
    assert_eq!(echo["note"], "say \"hi\"");
    assert_eq!(nyc["line"], 2);
    let bcn = s.result("bcn");
    assert_eq!(
        bcn["response"]["body"]["echo"]["address"],
        "Carrer de Mallorca, 401\nBarcelona"
    );
    // The empty note is left out with --skip-empty.
    assert!(
        bcn["response"]["body"]["echo"].get("note").is_none(),
        "{bcn}"
    );
    // The row after the quoted newline starts on line 5.
    assert_eq!(s.result("zur")["line"], 5);
    assert_eq!(
        s.result("zur")["response"]["body"]["echo"]["address"],
        "Bahnhofstraße 1 Zürich"
    );
    assert!(s.result("nyc")["request"]["fingerprint"].is_string());
}

#[test]
fn a_tsv_without_an_id_column_gets_line_ids() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "places.tsv",
        "address\tlanguage\n100 Broadway, New York\ten\nLima\tes\n",
    );
    let (code, stderr) = run(&s, &api, "places.tsv", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(s.result_ids(), ["line-2", "line-3"]);
    assert_eq!(
        s.result("line-2")["response"]["body"]["echo"]["address"],
        "100 Broadway, New York"
    );
}

#[test]
fn bad_tables_are_refused_with_file_and_line() {
    let s = Scratch::new();
    let e = refused(&s, "a.csv", b"id,address\na,x\nb,y,z\nc,w\n", &[]);
    assert!(
        e.contains("a.csv:3: the row has 3 fields, the header has 2"),
        "{e}"
    );
    let e = refused(&s, "b.csv", b"id,address\na,x\nb,\"never closed\n", &[]);
    assert!(
        e.contains("b.csv:3: a quoted field opens here and is never closed"),
        "{e}"
    );
    let e = refused(&s, "c.csv", b"id,address,address\na,x,y\n", &[]);
    assert!(
        e.contains("c.csv:1: the header names the column \"address\" twice"),
        "{e}"
    );
    let e = refused(&s, "d.csv", b"id,address\na,x\n,y\n", &[]);
    assert!(
        e.contains("d.csv:3: the id column \"id\" is empty in this row"),
        "{e}"
    );
    let e = refused(&s, "e.csv", b"id,address\na,x\n", &["--columns", "city"]);
    assert!(
        e.contains("e.csv:1: --columns names the column \"city\", which the header does not have (it has: id, address)"),
        "{e}"
    );
    let e = refused(&s, "f.csv", b"id,address\na,x\na,y\n", &[]);
    assert!(
        e.contains("f.csv:3: duplicate id \"a\" (first used on line 2)"),
        "{e}"
    );
    let e = refused(&s, "g.csv", b"id,address\na,caf\xe9\n", &[]);
    assert!(
        e.contains("g.csv:2: column \"address\" is not valid UTF-8"),
        "{e}"
    );
    let e = refused(&s, "h.csv", b"id,address\n../x,y\n", &[]);
    assert!(
        e.contains("h.csv:2: id \"../x\" is not a safe file name"),
        "{e}"
    );
    // A table without --url says so once.
    std::fs::write(s.path("i.csv"), "address\nx\n").unwrap();
    let (code, e) = run_supervisor(s.supervisor().arg("i.csv"));
    assert_eq!(code, Some(2), "{e}");
    assert!(e.contains("give the URL they go to with --url BASE"), "{e}");
    // Table options on JSON Lines are a usage error.
    std::fs::write(s.path("j.jsonl"), "{\"url\":\"http://127.0.0.1:9/\"}\n").unwrap();
    let (code, e) = run_supervisor(s.supervisor().args(["--id-column", "x", "j.jsonl"]));
    assert_eq!(code, Some(2), "{e}");
    assert!(
        e.contains("--id-column is for CSV and TSV jobs files"),
        "{e}"
    );
}

#[test]
fn dedup_calls_each_address_once_and_every_row_gets_its_file() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let mut csv = String::from("id,address,language\n");
    for i in 0..30 {
        // 30 rows, 5 distinct addresses.
        csv.push_str(&format!("r{i:02},{} Main St,en\n", 100 + i % 5));
    }
    s.write("jobs.csv", &csv);
    let (code, stderr) = run(
        &s,
        &api,
        "jobs.csv",
        &["--dedup", "--summary-json", "summary.json"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("calls saved by --dedup (answered with another job's identical call): 25"),
        "{stderr}"
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["dedup_saved"], 25);
    assert_eq!(s.result_ids().len(), 30);
    let joblog = std::fs::read_to_string(s.results().join("joblog.jsonl")).unwrap();
    assert_eq!(joblog.lines().count(), 5, "one call per distinct address");
    let mut leaders = 0;
    for id in s.result_ids() {
        let r = s.result(&id);
        assert_eq!(r["ok"], true);
        let address = r["response"]["body"]["echo"]["address"].as_str().unwrap();
        let i: usize = id[1..].parse().unwrap();
        assert_eq!(address, format!("{} Main St", 100 + i % 5), "{id}: {r}");
        match r.get("dedup_of").and_then(Value::as_str) {
            None => leaders += 1,
            Some(leader) => {
                let l = s.result(leader);
                assert!(l.get("dedup_of").is_none(), "a leader is called");
                assert_eq!(l["request"]["fingerprint"], r["request"]["fingerprint"]);
            }
        }
    }
    assert_eq!(leaders, 5);
}

#[test]
fn a_dedup_group_that_fails_fails_for_every_row() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.csv", "id,address,status\na,x,503\nb,x,503\nc,y,200\n");
    let (code, stderr) = run(&s, &api, "jobs.csv", &["--dedup", "--retries", "0"]);
    assert_eq!(code, Some(1), "{stderr}");
    for id in ["a", "b"] {
        let r = s.result(id);
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(r["error"]["kind"], "http_status", "{r}");
    }
    assert_eq!(s.result("b")["dedup_of"], "a");
    assert_eq!(s.result("c")["ok"], true);
}

#[test]
fn resume_reruns_an_edited_row_and_only_that_row() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let rows = |edited: &str| format!("id,address\na,100 Main St\nb,{edited}\nc,102 Main St\n");
    s.write("jobs.csv", &rows("101 Main St"));
    let (code, stderr) = run(&s, &api, "jobs.csv", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let before_a = s.result("a")["finished_at"].clone();
    s.write("jobs.csv", &rows("101 Main Street"));
    let (code, stderr) = run(
        &s,
        &api,
        "jobs.csv",
        &["--resume", "--summary-json", "summary.json"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("--resume: 2 jobs already ok, skipped; 1 ok result answers a request that has changed since (an edited row), so it is run again"),
        "{stderr}"
    );
    assert!(
        stderr.contains("re-run because their request changed since their ok result: 1"),
        "{stderr}"
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["changed"], 1);
    assert_eq!(summary["counts"]["skipped"], 2);
    assert_eq!(
        s.result("b")["response"]["body"]["echo"]["address"],
        "101 Main Street"
    );
    assert_eq!(
        s.result("a")["finished_at"],
        before_a,
        "a was not run again"
    );
}

#[test]
fn a_fingerprint_reveals_nothing_of_a_secret_and_ignores_a_new_key() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.csv", "id,address\na,100 Main St\n");
    let url = api.geocode();
    let run_with = |key: &str, extra: &[&str]| {
        run_supervisor(
            s.supervisor()
                .env("CALLPOOL_TEST_KEY", key)
                .args(["--url", &url, "--param", "key=${CALLPOOL_TEST_KEY}"])
                .args(extra)
                .arg("jobs.csv"),
        )
    };
    let (code, stderr) = run_with("sk-very-secret-1234", &[]);
    assert_eq!(code, Some(0), "{stderr}");
    let text = std::fs::read_to_string(s.results().join("a.json")).unwrap();
    assert!(!text.contains("sk-very-secret-1234"), "{text}");
    let fp = s.result("a")["request"]["fingerprint"]
        .as_str()
        .unwrap()
        .to_string();
    // The same request with another key has the same fingerprint: the
    // secret never entered it, so it cannot be recovered from it.
    let (code, stderr) = run_with("another-key-5678", &["--resume"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("1 job already ok, skipped"), "{stderr}");
    assert_eq!(s.result("a")["request"]["fingerprint"], fp.as_str());
}

#[test]
fn resume_of_a_partly_written_dedup_group_calls_again_what_is_missing() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "jobs.csv",
        "id,address\na,100 Main St\nb,100 Main St\nc,100 Main St\nd,101 Main St\n",
    );
    let (code, stderr) = run(&s, &api, "jobs.csv", &["--dedup"]);
    assert_eq!(code, Some(0), "{stderr}");
    let copies: Vec<String> = s
        .result_ids()
        .into_iter()
        .filter(|id| s.result(id).get("dedup_of").is_some())
        .collect();
    assert_eq!(copies.len(), 2, "{copies:?}");
    // As if the run had stopped before one copy was written.
    std::fs::remove_file(s.results().join(format!("{}.json", copies[0]))).unwrap();
    let (code, stderr) = run(
        &s,
        &api,
        "jobs.csv",
        &["--dedup", "--resume", "--summary-json", "summary.json"],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let again = s.result(&copies[0]);
    assert_eq!(again["ok"], true);
    assert!(
        again.get("dedup_of").is_none(),
        "answers are never reused across runs: {again}"
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["counts"]["skipped"], 3);
    assert_eq!(summary["dedup_saved"], 0);
}
