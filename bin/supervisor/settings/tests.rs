//! The rules of settings/mod.rs, one test each.

use super::*;
use callpool_pool::Isolation;
use clap::Parser;

fn args(words: &[&str]) -> cli::Args {
    let mut all = vec!["supervisor"];
    all.extend(words);
    cli::Args::try_parse_from(all).unwrap_or_else(|e| panic!("{e}"))
}

/// The settings of `words`, with a worker program of our own (the
/// http-worker is not beside the test binary) and no results folder.
fn settings(words: &[&str]) -> anyhow::Result<Settings> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("results");
    let mut all = vec!["--worker-cmd", "my-worker", "--out"];
    all.push(out.to_str().unwrap_or_else(|| panic!("utf-8 temp path")));
    all.extend(words);
    all.push("jobs.jsonl");
    Settings::new(&args(&all), false, &|w| panic!("warned: {w}"))
}

fn error(words: &[&str]) -> String {
    match settings(words) {
        Ok(_) => String::new(),
        Err(e) => format!("{e:#}"),
    }
}

#[test]
fn a_run_needs_a_jobs_file() {
    let a = cli::Args {
        jobs: None,
        ..args(&["jobs.jsonl"])
    };
    let e = Settings::new(&a, false, &|_| {})
        .err()
        .map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some("no jobs file given: supervisor [OPTIONS] JOBS (see supervisor --help)")
    );
}

#[test]
fn the_engines_settings_come_from_the_options() {
    let s = settings(&["--workers", "3", "--prefetch", "4", "--dedup"])
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(s.pool.workers, 3);
    assert_eq!(s.pool.prefetch, 4);
    assert_eq!(s.pool.max_start_failures, MAX_START_FAILURES);
    assert!(s.pool.dedup && s.check.dedup);
    assert!(!s.pool.resume && !s.check.resume);
    assert!(s.pool.hosts.is_none());
    assert!(s.pool.manifest.is_some(), "written for export and --resume");
    let Isolation::Processes { argv, .. } = &s.pool.isolation else {
        panic!("processes by default")
    };
    assert_eq!(argv, &["my-worker"]);
}

#[test]
fn hosts_give_the_worker_count() {
    let s = settings(&[
        "--workers",
        "4",
        "--host",
        "2/:",
        "--remote-worker-cmd",
        "w",
    ])
    .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(s.pool.workers, 2);
    let s = settings(&["--workers", "4", "--host", ":"]).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(s.pool.workers, 4, "a host without N/ runs --workers");
}

#[test]
fn resume_and_overwrite_decide_what_existing_results_mean() {
    let s = settings(&["--resume"]).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(s.existing, Existing::Resume);
    assert!(
        s.pool.resume && s.check.resume,
        "the check and the run agree"
    );
    let s = settings(&["--overwrite"]).unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(s.existing, Existing::Overwrite);
    assert!(!s.pool.resume);

    let out = Path::new("out");
    for e in [Existing::Refuse, Existing::Resume, Existing::Overwrite] {
        assert!(e.allow(out, 0).is_ok());
    }
    assert!(Existing::Resume.allow(out, 5).is_ok());
    assert!(Existing::Overwrite.allow(out, 5).is_ok());
    let e = Existing::Refuse.allow(out, 1).err().map(|e| e.to_string());
    assert_eq!(
        e.as_deref(),
        Some(
            "out already holds 1 result of this job list: add --resume to skip the ok ones and run the rest, or --overwrite to run them all again"
        )
    );
}

#[test]
fn quiet_and_verbose_set_the_level() {
    let level = |words: &[&str]| {
        let mut all = words.to_vec();
        all.push("jobs.jsonl");
        console(&args(&all), false).level
    };
    assert_eq!(level(&[]), Level::Info);
    assert_eq!(level(&["-q"]), Level::Error);
    assert_eq!(level(&["-v"]), Level::Debug);
    let mut a = args(&["--quiet", "--progress-every", "0", "jobs.jsonl"]);
    let c = console(&a, true);
    assert!(!c.bar && c.progress_every.is_none() && c.color);
    a.progress_every = std::time::Duration::from_secs(2);
    assert_eq!(console(&a, true).progress_every, a.progress_every.into());
}

#[test]
fn the_summary_json_folder_must_exist() {
    assert!(check_output_file("--summary-json", "summary.json", Path::new("-")).is_ok());
    assert!(check_output_file("--summary-json", "summary.json", Path::new("summary.json")).is_ok());
    let e = error(&["--summary-json", "/no/such/folder/s.json"]);
    assert_eq!(
        e,
        "--summary-json /no/such/folder/s.json: the folder /no/such/folder does not exist; create it or choose another path"
    );
    let e = error(&["--summary-json", "/"]);
    assert!(
        e.ends_with("give a file name, e.g. --summary-json summary.json"),
        "{e}"
    );
}

#[test]
fn table_options_need_a_table() {
    let input = |words: &[&str], file: &str| {
        let mut all = words.to_vec();
        all.push(file);
        jobs_input(&args(&all).input, file).map_err(|e| e.to_string())
    };
    let e = input(&["--id-column", "key"], "jobs.jsonl").err();
    assert_eq!(
        e.as_deref(),
        Some(
            "--id-column is for CSV and TSV jobs files, and jobs.jsonl is read as JSON Lines: name it .csv or .tsv, or give --input-format csv"
        )
    );
    let ok = input(&["--id-column", "key", "--rename", "A B=a"], "jobs.csv");
    assert!(ok.is_ok_and(|i| i.format == InputFormat::Csv && i.table.rename.len() == 1));
    let ok = input(&["--input-format", "tsv", "--skip-empty"], "jobs.txt");
    assert!(ok.is_ok_and(|i| i.format == InputFormat::Tsv));
    let e = input(&["--rename", "=a"], "jobs.csv").err();
    assert!(e.is_some_and(|e| e.starts_with("--rename \"=a\" is not COLUMN=PARAM")));
}

#[test]
fn conflicts_are_found_before_any_file_is_read() {
    // The --cacert file does not exist: the conflict is named, not it.
    let e = error(&["--cacert", "/no/such/ca.pem"]);
    assert!(
        e.starts_with(
            "--cacert is an option of the built-in http-worker, which --worker-cmd replaces"
        ),
        "{e}"
    );
}

#[test]
fn a_bad_request_option_is_named() {
    let e = error(&["--body", "{}", "--form", "a=b"]);
    assert_eq!(e, "--body and --form both give the body: choose one");
}
