//! End-to-end tests of `supervisor export`: a real run against the demo
//! API, then the real binary turning its results folder into a table.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;
use serde_json::Value;

/// A spreadsheet of addresses with awkward rows: a quoted comma, a quoted
/// quote, accented names, an empty field, an address given twice, and the
/// id column neither first nor in sorted order.
const ADDRESSES: &str = "\
name,address,id,note
\"O'Brien, Pat\",\"100 Broadway, New York, NY\",zeta,\"says \"\"hi\"\"\"
José García,\"Carrer de Mallorca 401, Barcelona\",alpha,
Zoë Müller,\"10 Downing Street, London\",mid,first
Ada Lovelace,\"10 Downing Street, London\",beta,repeat
";

/// The demo API's coordinates for the rows of [`ADDRESSES`], in order.
const COORDS: [(&str, &str); 4] = [
    ("40.7128", "-74.006"),
    ("41.3874", "2.1686"),
    ("51.5074", "-0.1278"),
    ("51.5074", "-0.1278"),
];

const LAT: &str = "lat=/results/0/geometry/location/lat";
const LNG: &str = "lng=/results/0/geometry/location/lng";

/// Writes `jobs.csv` and geocodes it: `supervisor --url ... jobs.csv`.
/// The tests here give export the run's options, as for a folder written
/// before runs left a manifest: it is removed (tests/manifest.rs covers
/// an export that reads it).
fn geocoded(s: &Scratch, api: &DemoApi, extra: &[&str]) {
    s.write("jobs.csv", ADDRESSES);
    let (code, stderr) = run_supervisor(
        s.supervisor()
            .args(["--url", &api.geocode(), "--workers", "2"])
            .args(extra)
            .arg("jobs.csv"),
    );
    assert_eq!(code, Some(0), "{stderr}");
    std::fs::remove_file(s.results().join(".callpool-run")).unwrap();
}

/// Runs `supervisor export ARGS` in the scratch folder.
fn export(s: &Scratch, args: &[&str]) -> Output {
    run_bounded(
        Command::new(SUPERVISOR)
            .current_dir(s.dir.path())
            .arg("export")
            .args(args)
            .stdin(Stdio::null()),
        Duration::from_secs(60),
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// A CSV (or, with `b'\t'`, a TSV without quoting) table: header and rows.
fn parse_table(bytes: &[u8], delimiter: u8) -> (Vec<String>, Vec<Vec<String>>) {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .quoting(delimiter != b'\t')
        .from_reader(bytes);
    let header = reader.headers().unwrap().iter().map(String::from).collect();
    let rows = reader
        .records()
        .map(|r| r.unwrap().iter().map(String::from).collect())
        .collect();
    (header, rows)
}

/// The value of column `name` in `row`.
fn cell<'a>(header: &[String], row: &'a [String], name: &str) -> &'a str {
    let i = header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no column {name:?} in {header:?}"));
    &row[i]
}

/// The input rows of [`ADDRESSES`], as the csv crate reads them.
fn input_rows() -> Vec<Vec<String>> {
    parse_table(ADDRESSES.as_bytes(), b',').1
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn a_geocoded_csv_exports_every_row_in_order_with_its_columns_and_coordinates() {
    let api = DemoApi::start();
    let s = Scratch::new();
    geocoded(&s, &api, &[]);
    let url = api.geocode();
    let out = export(
        &s,
        &[
            "results", "--jobs", "jobs.csv", "--url", &url, "--field", LAT, "--field", LNG,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (header, rows) = parse_table(&out.stdout, b',');
    assert_eq!(
        header,
        [
            "name",
            "address",
            "id",
            "note",
            "lat",
            "lng",
            "ok",
            "attempts",
            "http_status",
            "error_kind",
            "error",
            "dedup_of",
            "status"
        ]
    );
    let input = input_rows();
    assert_eq!(rows.len(), input.len(), "one row per input row");
    for ((row, original), (lat, lng)) in rows.iter().zip(&input).zip(COORDS) {
        // Every input column, raw, in the input's order.
        assert_eq!(&row[..4], &original[..], "{row:?}");
        assert_eq!(cell(&header, row, "lat"), lat, "{row:?}");
        assert_eq!(cell(&header, row, "lng"), lng, "{row:?}");
        assert_eq!(cell(&header, row, "ok"), "true", "{row:?}");
        assert_eq!(cell(&header, row, "attempts"), "1", "{row:?}");
        assert_eq!(cell(&header, row, "http_status"), "200", "{row:?}");
        assert_eq!(cell(&header, row, "error_kind"), "", "{row:?}");
        assert_eq!(cell(&header, row, "status"), "ok", "{row:?}");
    }
    assert_eq!(rows[0][0], "O'Brien, Pat");
    assert_eq!(rows[0][3], "says \"hi\"");
    assert_eq!(rows[1][0], "José García");
    assert_eq!(rows[1][3], "", "the empty field stays empty");
    assert!(
        stderr(&out).contains("exported 4 rows to stdout: 4 ok"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_row_without_a_result_is_not_run_and_an_edited_row_is_stale() {
    let api = DemoApi::start();
    let s = Scratch::new();
    geocoded(&s, &api, &[]);
    std::fs::remove_file(s.results().join("alpha.json")).unwrap();
    // Edit a row after the run: its result answers the old address.
    s.write(
        "jobs.csv",
        &ADDRESSES.replace("100 Broadway, New York, NY", "1 Infinite Loop, Tokyo"),
    );
    let url = api.geocode();
    let out = export(
        &s,
        &[
            "results", "--jobs", "jobs.csv", "--url", &url, "--field", LAT,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (header, rows) = parse_table(&out.stdout, b',');
    let status: Vec<&str> = rows.iter().map(|r| cell(&header, r, "status")).collect();
    assert_eq!(status, ["stale", "not_run", "ok", "ok"]);
    // Not run: the input row, and nothing else.
    let alpha = &rows[1];
    assert_eq!(cell(&header, alpha, "id"), "alpha");
    assert_eq!(cell(&header, alpha, "name"), "José García");
    for col in ["lat", "ok", "attempts", "http_status", "error", "dedup_of"] {
        assert_eq!(cell(&header, alpha, col), "", "{col}: {alpha:?}");
    }
    // Stale: the row as it is now, and none of the old answer's fields
    // or its `ok`, which are another request's.
    let zeta = &rows[0];
    assert_eq!(cell(&header, zeta, "address"), "1 Infinite Loop, Tokyo");
    assert_eq!(cell(&header, zeta, "lat"), "");
    assert_eq!(cell(&header, zeta, "ok"), "");
    assert!(stderr(&out).contains("1 row is stale"), "{}", stderr(&out));

    // Without the run's --url, the rows' requests cannot be rebuilt.
    let out = export(&s, &["results", "--jobs", "jobs.csv"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(err.contains("jobs.csv:2: "), "{err}");
    assert!(err.contains("--url"), "{err}");
    assert!(err.contains("give it the options of the run"), "{err}");

    // A JSON Lines job that cannot be built: every bad line, by number.
    s.write(
        "jobs.jsonl",
        &format!(
            "{{\"id\": \"a\", \"url\": \"{url}\"}}\n{{\"id\": \"b\"}}\n{{\"id\": \"c\", \"param\": {{}}}}\n"
        ),
    );
    let out = export(&s, &["results", "--jobs", "jobs.jsonl"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(err.contains("jobs.jsonl:2: missing \"url\""), "{err}");
    assert!(err.contains("jobs.jsonl:3: "), "{err}");
    assert!(
        err.contains("2 bad lines in the jobs file jobs.jsonl"),
        "{err}"
    );
    assert!(err.contains("give it the options of the run"), "{err}");
}

#[test]
fn a_result_file_that_is_not_json_is_named_and_every_other_row_exported() {
    let api = DemoApi::start();
    let s = Scratch::new();
    geocoded(&s, &api, &[]);
    std::fs::write(s.results().join("mid.json"), "{\"id\": \"mid\", \"ok\": tr").unwrap();
    let url = api.geocode();
    let out = export(
        &s,
        &[
            "results", "--jobs", "jobs.csv", "--url", &url, "--field", LAT,
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("mid.json: not JSON"), "{err}");
    assert!(err.contains("1 result file could not be read"), "{err}");
    let (header, rows) = parse_table(&out.stdout, b',');
    assert_eq!(rows.len(), 4, "every row is still there");
    let status: Vec<&str> = rows.iter().map(|r| cell(&header, r, "status")).collect();
    assert_eq!(status, ["ok", "ok", "unreadable", "ok"]);
    assert_eq!(cell(&header, &rows[3], "lat"), "51.5074");

    // Without --jobs too.
    let out = export(&s, &["results"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("mid.json: not JSON"));
    assert_eq!(parse_table(&out.stdout, b',').1.len(), 4);
}

#[test]
fn a_malformed_pointer_is_refused_before_any_output() {
    let api = DemoApi::start();
    let s = Scratch::new();
    geocoded(&s, &api, &[]);
    let url = api.geocode();
    for args in [
        vec!["results", "--field", "lat=results/0/geometry/location/lat"],
        vec![
            "results",
            "--jobs",
            "jobs.csv",
            "--url",
            &url,
            "--field",
            LAT,
            "--field",
            "lng=results/0/geometry/location/lng",
            "--output",
            "table.csv",
        ],
    ] {
        let out = export(&s, &args);
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(out.stdout.is_empty(), "nothing on stdout");
        let err = stderr(&out);
        assert!(err.contains("--field"), "{err}");
        assert!(err.contains("results/0/geometry/location/l"), "{err}");
        assert!(!s.path("table.csv").exists());
    }
    assert_eq!(files_in(s.dir.path()), ["jobs.csv", "results"]);
}

#[test]
fn output_file_is_written_whole_and_leaves_no_temporary_file() {
    let api = DemoApi::start();
    let s = Scratch::new();
    geocoded(&s, &api, &[]);
    let url = api.geocode();
    let args = [
        "results", "--jobs", "jobs.csv", "--url", &url, "--field", LAT,
    ];
    let to_stdout = export(&s, &args);
    assert_eq!(to_stdout.status.code(), Some(0), "{}", stderr(&to_stdout));

    // An earlier table is replaced.
    s.write("table.csv", "old\n");
    let out = export(&s, &[&args[..], &["--output", "table.csv"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "the table goes to the file only");
    assert!(
        stderr(&out).contains("exported 4 rows to table.csv"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read(s.path("table.csv")).unwrap(),
        to_stdout.stdout
    );
    assert_eq!(
        files_in(s.dir.path()),
        ["jobs.csv", "results", "table.csv"],
        "no temporary file left"
    );

    // A failed export leaves the earlier table as it was, and nothing else.
    let out = export(
        &s,
        &["results", "--jobs", "jobs.csv", "--output", "table.csv"],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(s.path("table.csv")).unwrap(),
        to_stdout.stdout
    );
    assert_eq!(files_in(s.dir.path()), ["jobs.csv", "results", "table.csv"]);

    // An output folder that does not exist: exit 2 before anything.
    let out = export(&s, &["results", "--output", "missing/table.csv"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("missing"), "{}", stderr(&out));
    assert!(out.stdout.is_empty());

    // A results folder that does not exist.
    let out = export(&s, &["nowhere"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the results folder nowhere does not exist"),
        "{}",
        stderr(&out)
    );
    assert!(out.stdout.is_empty());
}

#[test]
fn jsonl_and_tsv_hold_the_same_rows() {
    let api = DemoApi::start();
    let s = Scratch::new();
    geocoded(&s, &api, &[]);
    let url = api.geocode();
    let args = [
        "results", "--jobs", "jobs.csv", "--url", &url, "--field", LAT, "--field", LNG,
    ];
    let csv_out = export(&s, &args);
    assert_eq!(csv_out.status.code(), Some(0), "{}", stderr(&csv_out));
    let (header, rows) = parse_table(&csv_out.stdout, b',');

    let tsv_out = export(&s, &[&args[..], &["--format", "tsv"]].concat());
    assert_eq!(tsv_out.status.code(), Some(0), "{}", stderr(&tsv_out));
    let text = String::from_utf8(tsv_out.stdout.clone()).unwrap();
    assert!(
        text.contains("\tsays \"hi\"\t"),
        "TSV values are raw: {text}"
    );
    assert_eq!(parse_table(&tsv_out.stdout, b'\t'), (header.clone(), rows));

    let jsonl_out = export(&s, &[&args[..], &["--format", "jsonl"]].concat());
    assert_eq!(jsonl_out.status.code(), Some(0), "{}", stderr(&jsonl_out));
    let lines: Vec<Value> = String::from_utf8(jsonl_out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    let input = input_rows();
    for ((line, original), (lat, _)) in lines.iter().zip(&input).zip(COORDS) {
        let keys: Vec<&String> = line.as_object().unwrap().keys().collect();
        assert_eq!(keys, header.iter().collect::<Vec<_>>(), "the same keys");
        assert_eq!(line["name"], original[0].as_str());
        assert_eq!(line["note"], original[3].as_str());
        // Values stay JSON: numbers are numbers, ok a boolean.
        assert_eq!(line["lat"], lat.parse::<f64>().unwrap(), "{line}");
        assert_eq!(line["ok"], true);
        assert_eq!(line["attempts"], 1);
        assert_eq!(line["error"], Value::Null);
        assert_eq!(line["status"], "ok");
    }
}

#[test]
fn a_column_clash_is_refused_without_a_prefix() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "jobs.csv",
        "id,address,lat\nnyc,\"100 Broadway, New York\",old\nbcn,Barcelona,\n",
    );
    let url = api.geocode();
    let (code, err) = run_supervisor(s.supervisor().args(["--url", &url, "jobs.csv"]));
    assert_eq!(code, Some(0), "{err}");
    let args = [
        "results", "--jobs", "jobs.csv", "--url", &url, "--field", LAT,
    ];
    let out = export(&s, &args);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(out.stdout.is_empty());
    let err = stderr(&out);
    assert!(err.contains("\"lat\""), "{err}");
    assert!(err.contains("--prefix"), "{err}");

    let out = export(&s, &[&args[..], &["--prefix", "geo_"]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (header, rows) = parse_table(&out.stdout, b',');
    assert_eq!(
        header,
        [
            "id",
            "address",
            "lat",
            "geo_lat",
            "geo_ok",
            "geo_attempts",
            "geo_http_status",
            "geo_error_kind",
            "geo_error",
            "geo_dedup_of",
            "geo_status"
        ]
    );
    assert_eq!(rows[0][2..4], ["old", "40.7128"]);
    assert_eq!(rows[1][2..4], ["", "41.3874"]);

    // A status column is an output column too.
    let out = export(&s, &["results", "--field", "ok=/status"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("status column \"ok\""),
        "{}",
        stderr(&out)
    );
}

#[test]
fn without_jobs_there_is_one_row_per_result_file_by_id() {
    let api = DemoApi::start();
    let s = Scratch::new();
    geocoded(&s, &api, &[]);
    // A half-written result of a killed run is never a result.
    std::fs::write(s.results().join(".tmp.zz.json"), "{\"id\": \"zz\", ").unwrap();
    let out = export(
        &s,
        &[
            "results",
            "--field",
            "where=/results/0/formatted_address",
            "--field",
            "api_status=/status",
            "--field",
            "missing=/results/5/formatted_address",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (header, rows) = parse_table(&out.stdout, b',');
    assert_eq!(
        header,
        [
            "id",
            "where",
            "api_status",
            "missing",
            "ok",
            "attempts",
            "http_status",
            "error_kind",
            "error",
            "dedup_of",
            "status"
        ]
    );
    let ids: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(ids, ["alpha", "beta", "mid", "zeta"]);
    let wheres: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    assert_eq!(
        wheres,
        [
            "Barcelona, Spain",
            "London, UK",
            "London, UK",
            "New York, NY, USA"
        ]
    );
    assert!(rows.iter().all(|r| r[2] == "OK" && r[3].is_empty()));
    assert!(stderr(&out).contains("temporary file"), "{}", stderr(&out));
}

#[test]
fn a_jsonl_jobs_file_gives_id_and_parameter_columns_and_secrets_stay_redacted() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let url = api.geocode();
    s.write(
        "jobs.jsonl",
        &format!(
            "{{\"id\": \"par\", \"url\": \"{url}\", \"params\": {{\"address\": \"Paris\", \"language\": \"fr\"}}}}\n\
             \n\
             {{\"url\": \"{url}\", \"params\": {{\"address\": \"Tokyo\", \"key\": \"sekrit-123\", \"tag\": [\"a\", \"b\"]}}}}\n"
        ),
    );
    let (code, err) = run_supervisor(s.supervisor().arg("jobs.jsonl"));
    assert_eq!(code, Some(0), "{err}");
    let out = export(
        &s,
        &[
            "results",
            "--jobs",
            "jobs.jsonl",
            "--field",
            "echo_key=/echo/key",
            "--format",
            "jsonl",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(!text.contains("sekrit"), "{text}");
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let keys: Vec<&String> = lines[0].as_object().unwrap().keys().collect();
    assert_eq!(
        keys[..6],
        ["id", "address", "language", "key", "tag", "echo_key"]
    );
    assert_eq!(lines[0]["id"], "par");
    assert_eq!(lines[0]["language"], "fr");
    assert_eq!(lines[0]["key"], Value::Null);
    assert_eq!(lines[1]["id"], "line-3");
    assert_eq!(lines[1]["key"], "REDACTED");
    assert_eq!(lines[1]["echo_key"], "REDACTED");
    assert_eq!(lines[1]["tag"], serde_json::json!(["a", "b"]));
    assert_eq!(lines[1]["status"], "ok");

    // In CSV, a value that is not a string is its JSON text.
    let out = export(&s, &["results", "--jobs", "jobs.jsonl"]);
    let (header, rows) = parse_table(&out.stdout, b',');
    assert_eq!(cell(&header, &rows[1], "tag"), "[\"a\",\"b\"]");
    assert_eq!(cell(&header, &rows[0], "tag"), "");
}

#[test]
fn a_deduplicated_job_names_the_job_that_was_called() {
    let api = DemoApi::start();
    let s = Scratch::new();
    // Only the address is sent, so the two London rows make one request.
    geocoded(&s, &api, &["--columns", "address", "--dedup"]);
    let url = api.geocode();
    let out = export(
        &s,
        &[
            "results",
            "--jobs",
            "jobs.csv",
            "--url",
            &url,
            "--columns",
            "address",
            "--field",
            LAT,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let (header, rows) = parse_table(&out.stdout, b',');
    let (mid, beta) = (&rows[2], &rows[3]);
    let dedup = (
        cell(&header, mid, "dedup_of"),
        cell(&header, beta, "dedup_of"),
    );
    assert!(
        dedup == ("beta", "") || dedup == ("", "mid"),
        "one London row answers the other: {dedup:?}"
    );
    for row in [mid, beta] {
        assert_eq!(cell(&header, row, "lat"), "51.5074");
        assert_eq!(cell(&header, row, "status"), "ok");
    }
    assert!(rows.iter().all(|r| cell(&header, r, "status") == "ok"));
}

#[test]
fn export_help_reads_well() {
    let out = run_bounded(
        Command::new(SUPERVISOR).args(["export", "--help"]),
        Duration::from_secs(30),
    );
    assert_eq!(out.status.code(), Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    for needle in [
        "Usage: supervisor export [OPTIONS] <DIR>",
        "--jobs <FILE>",
        "--field <NAME=POINTER>",
        "--format <FORMAT>",
        "--output <FILE>",
        "--prefix <P>",
        "--id-column <NAME>",
        "--url <BASE>",
        "Examples:",
        "--field lat=/results/0/geometry/location/lat",
        "--format jsonl",
    ] {
        assert!(help.contains(needle), "{needle:?} missing from:\n{help}");
    }
}
