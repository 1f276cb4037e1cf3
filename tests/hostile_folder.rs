//! A results folder someone else can write to: links, FIFOs, devices and
//! folders planted under the names a run uses. Nothing is ever written,
//! appended or created outside the folder, nothing planted is followed or
//! read, and each refusal names what it found (issue 18, item 1).

#![allow(clippy::unwrap_used)]

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::Duration;

use common::*;

const VICTIM: &[u8] = b"precious data outside the results folder\n";

/// A file outside the results folder, to be left byte for byte.
fn victim(s: &Scratch) -> std::path::PathBuf {
    let p = s.path("victim.txt");
    std::fs::write(&p, VICTIM).unwrap();
    p
}

fn assert_victim_intact(p: &Path) {
    assert_eq!(
        std::fs::read(p).unwrap(),
        VICTIM,
        "{} was changed",
        p.display()
    );
}

/// Two jobs; `job-00001` fails (status 500, no retries) when `fail`.
fn jobs(s: &Scratch, api: &DemoApi, fail: bool) {
    let mut text = geocode_jobs(api, 1, "");
    let status = if fail { "500" } else { "200" };
    text.push_str(&format!(
        "{{\"id\":\"job-00001\",\"url\":\"{}\",\"params\":{{\"address\":\"x\",\"status\":\"{status}\"}}}}\n",
        api.geocode()
    ));
    s.write("jobs.jsonl", &text);
}

fn run(s: &Scratch, flags: &[&str]) -> (Option<i32>, String) {
    run_supervisor(
        s.supervisor()
            .args(["--workers", "2", "--retries", "0"])
            .args(flags)
            .arg("jobs.jsonl"),
    )
}

fn is_regular(p: &Path) -> bool {
    std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_file())
}

#[test]
fn a_planted_temporary_name_is_removed_never_written_through() {
    let api = DemoApi::start();
    // First run: one ok, one failed result, so that --overwrite and
    // --resume both write job-00001.json again.
    for flags in [&[][..], &["--overwrite"][..], &["--resume"][..]] {
        let s = Scratch::new();
        let v = victim(&s);
        jobs(&s, &api, true);
        if !flags.is_empty() {
            let (code, err) = run(&s, &[]);
            assert_eq!(code, Some(1), "{err}");
        }
        std::fs::create_dir_all(s.results()).unwrap();
        symlink(&v, s.results().join(".tmp.job-00001.json")).unwrap();
        symlink(&v, s.results().join(".tmp.job-00000.json")).unwrap();
        // A dangling one too: following it would create a file outside.
        symlink(s.path("created-outside"), s.results().join(".tmp.x.json")).unwrap();
        let (code, err) = run(&s, flags);
        assert_eq!(code, Some(1), "{flags:?}: {err}");
        assert_victim_intact(&v);
        assert!(!s.path("created-outside").exists(), "{flags:?}");
        assert!(is_regular(&s.results().join("job-00001.json")), "{flags:?}");
        assert_eq!(s.result("job-00001")["ok"], false);
        assert!(
            s.stray_files().is_empty(),
            "{flags:?}: {:?}",
            s.stray_files()
        );
        for name in [".tmp.job-00001.json", ".tmp.job-00000.json", ".tmp.x.json"] {
            assert!(
                std::fs::symlink_metadata(s.results().join(name)).is_err(),
                "{flags:?}: {name} is still there"
            );
        }
    }
}

#[test]
fn a_planted_joblog_is_refused_by_name() {
    let api = DemoApi::start();
    for dangling in [false, true] {
        for flags in [&[][..], &["--overwrite"][..], &["--resume"][..]] {
            let s = Scratch::new();
            let v = victim(&s);
            jobs(&s, &api, false);
            std::fs::create_dir_all(s.results()).unwrap();
            let target = if dangling {
                s.path("created-outside")
            } else {
                v.clone()
            };
            symlink(&target, s.results().join("joblog.jsonl")).unwrap();
            let (code, err) = run(&s, flags);
            assert_eq!(code, Some(2), "{flags:?}: {err}");
            assert!(
                err.contains("joblog.jsonl is a symbolic link, not a regular file"),
                "{err}"
            );
            assert_victim_intact(&v);
            assert!(!s.path("created-outside").exists());
            assert!(s.result_ids().is_empty(), "{:?}", s.result_ids());
        }
    }
}

/// Puts something at a path (the first), given the victim (the second).
type Plant = dyn Fn(&Path, &Path);

#[test]
fn a_result_name_that_is_not_a_file_is_refused_never_read() {
    let api = DemoApi::start();
    let cases: [(&str, &Plant); 4] = [
        ("a symbolic link", &|at, v| symlink(v, at).unwrap()),
        ("a symbolic link", &|at, _| {
            symlink("/dev/zero", at).unwrap()
        }),
        ("a named pipe (FIFO)", &|at, _| {
            nix::unistd::mkfifo(at, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap()
        }),
        ("a directory", &|at, _| std::fs::create_dir(at).unwrap()),
    ];
    for (what, plant) in cases {
        for flags in [&[][..], &["--overwrite"][..], &["--resume"][..]] {
            let s = Scratch::new();
            let v = victim(&s);
            jobs(&s, &api, false);
            std::fs::create_dir_all(s.results()).unwrap();
            let at = s.results().join("job-00001.json");
            plant(&at, &v);
            // Bounded: a FIFO must not hang the check, /dev/zero must not
            // be read (run_supervisor fails the test past 90 s).
            let (code, err) = run(&s, flags);
            assert_eq!(code, Some(2), "{what} {flags:?}: {err}");
            assert!(
                err.contains(&format!(
                    "jobs.jsonl:2: results/job-00001.json is {what}, not a regular file"
                )),
                "{what} {flags:?}: {err}"
            );
            assert!(err.contains("nothing was run"), "{err}");
            assert_victim_intact(&v);
            assert!(!s.results().join("job-00000.json").exists());
        }
    }
}

#[test]
fn export_never_reads_a_planted_name() {
    let s = Scratch::new();
    let v = victim(&s);
    std::fs::create_dir_all(s.results()).unwrap();
    symlink("/dev/zero", s.results().join("zero.json")).unwrap();
    symlink(&v, s.results().join("victim.json")).unwrap();
    nix::unistd::mkfifo(
        &s.results().join("fifo.json"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let out = run_bounded(
        std::process::Command::new(SUPERVISOR)
            .current_dir(s.dir.path())
            .args(["export", "results"]),
        Duration::from_secs(60),
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    for (name, what) in [
        ("zero", "a symbolic link"),
        ("victim", "a symbolic link"),
        ("fifo", "a named pipe (FIFO)"),
    ] {
        assert!(
            err.contains(&format!(
                "results/{name}.json is {what}, not a regular file"
            )),
            "{err}"
        );
    }
    let table = String::from_utf8_lossy(&out.stdout);
    assert_eq!(table.matches(",unreadable").count(), 3, "{table}");
    assert!(!table.contains("precious"), "{table}");
    assert_victim_intact(&v);
}

#[test]
fn a_dangling_link_as_the_results_folder_is_named() {
    let api = DemoApi::start();
    let s = Scratch::new();
    jobs(&s, &api, false);
    symlink(s.path("gone"), s.results()).unwrap();
    let (code, err) = run(&s, &[]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("is a symbolic link to") && err.contains("gone, which does not exist"),
        "{err}"
    );
    assert!(!err.contains("File exists"), "{err}");
}
