//! A results folder remembers its run (issue 20, item 5): export and
//! `--resume` rebuild every request from `.callpool-run` without being told
//! the options again; an option given again that disagrees is refused with
//! both values; a folder from before manifests works as it did.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

const ROWS: &str = "customer_id,Street Address,st\n\
                    c1,\"10 Downing Street, London\",200\n\
                    c2,\"1 Infinite Loop, Cupertino\",500\n";

fn run(s: &Scratch, api: &DemoApi, extra: &[&str]) -> (Option<i32>, String) {
    run_supervisor(
        s.supervisor()
            .env("DEMO_KEY", "k-0123456789")
            .args(["--url", &api.geocode(), "--param", "key=${DEMO_KEY}"])
            .args([
                "--id-column",
                "customer_id",
                "--rename",
                "Street Address=address",
            ])
            .args(["--rename", "st=status", "--retries", "0"])
            .args(extra)
            .arg("jobs.csv"),
    )
}

fn export(s: &Scratch, args: &[&str]) -> (Option<i32>, String, String) {
    let out = run_bounded(
        Command::new(SUPERVISOR)
            .current_dir(s.dir.path())
            .args(["export", "results"])
            .args(args),
        Duration::from_secs(60),
    );
    (
        out.status.code(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn export_and_resume_need_no_options_again() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.csv", ROWS);
    let (code, stderr) = run(&s, &api, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    let manifest = std::fs::read_to_string(s.results().join(".callpool-run")).unwrap();
    assert!(
        manifest.contains("key=${DEMO_KEY}") && !manifest.contains("k-0123456789"),
        "{manifest}"
    );

    // No --jobs, no --url, no --id-column, no secret in the environment.
    let (code, table, stderr) = export(&s, &["--field", "lat=/results/0/geometry/location/lat"]);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("the run's jobs file (from its manifest)"),
        "{stderr}"
    );
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[0].starts_with("customer_id,Street Address,st,lat,ok"),
        "{table}"
    );
    assert!(
        lines[1].starts_with("c1,\"10 Downing Street, London\",200,51.5074,true"),
        "{table}"
    );
    assert!(lines[2].ends_with(",failed"), "{table}");

    // An option given again with another value: both named.
    let (code, _, stderr) = export(&s, &["--id-column", "st"]);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(
            "--id-column is given as \"st\", but the run that wrote results used \"customer_id\""
        ),
        "{stderr}"
    );

    // --resume with the folder and the jobs file only: the failed row runs
    // again with the run's own request (the key from the environment).
    let (code, stderr) = run_supervisor(
        s.supervisor()
            .env("DEMO_KEY", "k-0123456789")
            .args(["--resume", "jobs.csv"]),
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("1 job already ok, skipped"), "{stderr}");
    // Run again (--retries is not a request option: the default 2 now),
    // with the run's --rename and key.
    assert_eq!(s.result("c2")["attempts"], 3);
    assert!(
        s.result("c2")["request"]["url"]
            .as_str()
            .unwrap()
            .contains("status=500&key=REDACTED"),
        "{}",
        s.result("c2")
    );
}

#[test]
fn a_folder_without_a_manifest_works_as_before_and_nothing_current_is_an_error() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.csv", ROWS);
    let (code, stderr) = run(&s, &api, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    std::fs::remove_file(s.results().join(".callpool-run")).unwrap();
    let opts = [
        "--jobs",
        "jobs.csv",
        "--url",
        &api.geocode(),
        "--param",
        "key=${DEMO_KEY}",
        "--id-column",
        "customer_id",
        "--rename",
        "Street Address=address",
        "--rename",
        "st=status",
    ];
    let (code, table, stderr) = export(&s, &opts);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(
        table.lines().filter(|l| l.ends_with(",ok")).count(),
        1,
        "{table}"
    );
    // Forgetting --id-column: every row not_run, which export calls out.
    let no_id: Vec<&str> = [&opts[..6], &opts[8..]].concat();
    let (code, _, stderr) = export(&s, &no_id);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("no row has a current result"), "{stderr}");
    // A stale row shows no field of the old answer.
    let (code, table, stderr) = export(
        &s,
        &[
            &opts[..4],
            &["--param", "language=fr"],
            &opts[4..],
            &["--field", "lat=/results/0/geometry/location/lat"],
        ]
        .concat(),
    );
    assert_eq!(code, Some(1), "{stderr}");
    for line in table.lines().skip(1) {
        assert!(
            line.ends_with(",stale") && !line.contains("51.5074"),
            "{line}"
        );
    }
}
