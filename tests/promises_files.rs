//! End-to-end tests of what the documents promise about the files a run
//! reads and writes: a results folder that cannot be written (from the
//! start, or from the middle of the run on), a jobs file that changes
//! during the run, and a results folder on a file system without
//! `O_TMPFILE`, where results are written under a temporary name and
//! renamed.
//!
//! Tests run as root, where file permissions do not stop a write: a folder
//! is made unwritable with a read-only bind mount, or with the immutable
//! attribute (`chattr +i`), which stop root too. The file system without
//! `O_TMPFILE` is `tests/fs/no_tmpfile_fs.py`, a FUSE file system in Python
//! that passes everything through to a folder but refuses `O_TMPFILE`.
//! Mounting needs root, as this project's CI has; elsewhere these tests say
//! why and skip (in CI they fail instead).

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::*;

const HINT: &str = "the results written so far are complete: free some space or fix the permissions, then rerun with --resume";

/// A folder bind-mounted read-only onto itself; unmounted when dropped.
struct ReadOnly(PathBuf);

impl ReadOnly {
    fn mount(dir: &Path) -> Result<Self, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        run_command("mount", &["--bind", path_text(dir), path_text(dir)])?;
        let ro = ReadOnly(dir.to_path_buf());
        run_command("mount", &["-o", "remount,bind,ro", path_text(dir)])?;
        Ok(ro)
    }
}

impl Drop for ReadOnly {
    fn drop(&mut self) {
        if run_command("umount", &[path_text(&self.0)]).is_err() {
            let _ = run_command("umount", &["-l", path_text(&self.0)]);
        }
    }
}

/// A folder with the immutable attribute: nothing can be created in it,
/// by root either; the attribute is taken off when dropped.
struct Immutable(PathBuf);

impl Immutable {
    fn set(dir: &Path) -> Result<Self, String> {
        run_command("chattr", &["+i", path_text(dir)])?;
        Ok(Immutable(dir.to_path_buf()))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = run_command("chattr", &["-i", path_text(&self.0)]);
    }
}

#[test]
fn a_read_only_results_folder_stops_the_run_before_any_worker_starts() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 3, ""));
    let _ro = match ReadOnly::mount(&s.results()) {
        Ok(m) => m,
        Err(why) => return cannot_run(&format!("cannot bind-mount a folder read-only: {why}")),
    };
    let (code, stderr) = run_supervisor(s.supervisor().args(["jobs.jsonl"]));
    assert_eq!(code, Some(2), "{stderr}");
    assert_eq!(
        stderr,
        format!(
            "supervisor: error: cannot write results in results: Read-only file system (os error 30)\n{HINT}\n"
        )
    );
    assert!(worker_pids(&stderr).is_empty());
    assert!(std::fs::read_dir(s.results()).unwrap().next().is_none());
}

#[test]
fn a_results_folder_that_refuses_new_files_stops_the_run_mid_way() {
    let api = DemoApi::start();
    let s = Scratch::new();
    // A quick job, then two slow ones: the first result cannot be written
    // while the second job is still running.
    let url = api.geocode();
    let jobs = format!(
        "{{\"id\":\"quick\",\"url\":\"{url}\",\"params\":{{\"address\":\"Paris\"}}}}\n\
         {{\"id\":\"slow-1\",\"url\":\"{url}\",\"params\":{{\"address\":\"Lima\",\"delay_ms\":\"1500\"}}}}\n\
         {{\"id\":\"slow-2\",\"url\":\"{url}\",\"params\":{{\"address\":\"Tokyo\",\"delay_ms\":\"1500\"}}}}\n"
    );
    s.write("jobs.jsonl", &jobs);
    // The joblog exists already, so the run starts; no result file can be
    // created in the folder.
    std::fs::create_dir(s.results()).unwrap();
    std::fs::write(s.results().join("joblog.jsonl"), "").unwrap();
    let immutable = match Immutable::set(&s.results()) {
        Ok(i) => i,
        Err(why) => return cannot_run(&format!("cannot make a folder immutable: {why}")),
    };
    let (code, stderr) = run_supervisor(s.supervisor().args(["-w", "2", "jobs.jsonl"]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.ends_with(&format!(
            "supervisor: error: cannot write results in results: result of job \"quick\": Operation not permitted (os error 1)\n{HINT}\n"
        )),
        "{stderr}"
    );
    // The attempt that ended is in the joblog; the jobs that were running
    // were killed, not recorded; no summary.
    let joblog = std::fs::read_to_string(s.results().join("joblog.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = joblog
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{joblog}");
    assert_eq!(lines[0]["id"], "quick");
    assert_eq!(lines[0]["outcome"], "ok");
    assert!(s.result_ids().is_empty(), "{:?}", s.result_ids());
    assert!(s.stray_files().is_empty(), "{:?}", s.stray_files());
    assert!(!stderr.contains(" jobs: "), "no summary: {stderr}");
    assert_all_gone(&worker_pids(&stderr), Duration::from_secs(5));

    // Once the folder can be written again, --resume finishes the list.
    drop(immutable);
    let (code, stderr) = run_supervisor(s.supervisor().args(["-w", "2", "--resume", "jobs.jsonl"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(s.result_ids(), ["quick", "slow-1", "slow-2"]);
}

#[test]
fn a_jobs_file_changed_during_the_run_stops_it_at_the_changed_line() {
    let run = ChangingRun::start();
    // Overwrite the line in place. (An editor that saves by writing a new
    // file and renaming it over the old one is not seen: the run reads the
    // file it opened.)
    let old = &run.lines[run.changed - 1];
    let new = format!("{:<width$}\n", "not json", width = old.len() - 1);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .open(&run.path)
        .unwrap();
    f.seek(SeekFrom::Start(run.offset as u64)).unwrap();
    f.write_all(new.as_bytes()).unwrap();
    drop(f);
    let changed = run.changed;
    let (s, stderr) = run.finish();
    assert!(
        stderr.ends_with(&format!(
            "supervisor: error: jobs.jsonl:{changed}: invalid JSON: expected ident at line 1 column 2 (the file changed after it was checked)\n\
             the jobs file changed while it ran: keep it unchanged during a run, then rerun with --resume\n"
        )),
        "{stderr}"
    );
    assert!(!s.result_ids().contains(&format!("j{changed:05}")));
}

#[test]
fn a_jobs_file_cut_short_during_the_run_stops_it_instead_of_passing_for_done() {
    let run = ChangingRun::start();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&run.path)
        .unwrap()
        .set_len(run.offset as u64)
        .unwrap();
    let n = run.lines.len();
    let (_s, stderr) = run.finish();
    assert!(
        stderr.ends_with(&format!(
            "supervisor: error: jobs.jsonl: the file ended after {} of its {n} jobs (it changed after it was checked)\n\
             the jobs file changed while it ran: keep it unchanged during a run, then rerun with --resume\n",
            n - 1
        )),
        "{stderr}"
    );
}

/// A run whose jobs file can be changed while it runs, beyond what the job
/// source has read.
struct ChangingRun {
    s: Scratch,
    _api: DemoApi,
    sup: Running,
    path: PathBuf,
    lines: Vec<String>,
    changed: usize,
    offset: usize,
}

impl ChangingRun {
    fn start() -> Self {
        let api = DemoApi::start();
        // Thousands of small files: on a tmpfs where there is one.
        let s = Scratch {
            dir: tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap()),
        };
        // The job source reads ahead of the workers (4,096 jobs, and a
        // buffer of 256 KiB), so the changed line must lie beyond that when
        // the change is made: lines of about 1 KiB, 4,400 of them, the last
        // one changed. To keep the run short, lines 3 to 4,300 already
        // have an ok result (skipped by --resume); lines 1 and 2 take a
        // second, which holds the reading back while the line is changed.
        let n = 4400;
        let pad = "x".repeat(950);
        let (geocode, text_url) = (api.geocode(), format!("{}/text", api.base));
        let lines: Vec<String> = (1..=n)
            .map(|i| {
                if i <= 2 {
                    format!(
                        "{{\"id\":\"j{i:05}\",\"url\":\"{geocode}\",\"params\":{{\"address\":\"Lima\",\"delay_ms\":\"1000\",\"pad\":\"{pad}\"}}}}\n"
                    )
                } else {
                    format!("{{\"id\":\"j{i:05}\",\"url\":\"{text_url}\",\"params\":{{\"pad\":\"{pad}\"}}}}\n")
                }
            })
            .collect();
        let path = s.write("jobs.jsonl", &lines.concat());
        std::fs::create_dir(s.results()).unwrap();
        for i in 3..=4300 {
            let id = format!("j{i:05}");
            std::fs::write(
                s.results().join(format!("{id}.json")),
                format!("{{\"id\":\"{id}\",\"ok\":true}}\n"),
            )
            .unwrap();
        }
        let changed = n;
        let offset: usize = lines[..changed - 1].iter().map(String::len).sum();
        let sup = Running::start(s.supervisor().args([
            "-w",
            "2",
            "--prefetch",
            "1",
            "--resume",
            "jobs.jsonl",
        ]));
        // The check pass is over once workers start; then the source has
        // read at most 4,353 lines until the slow jobs end.
        wait_until(Duration::from_secs(30), "the workers to start", || {
            sup.stderr().contains("worker 1 started (pid")
        });
        ChangingRun {
            s,
            _api: api,
            sup,
            path,
            lines,
            changed,
            offset,
        }
    }

    /// Waits for the run to stop with exit 2 and no summary; the jobs
    /// before the change that ended have whole ok results.
    fn finish(self) -> (Scratch, String) {
        let (code, stderr) = self.sup.wait(Duration::from_secs(90));
        assert_eq!(code, Some(2), "{stderr}");
        assert!(!stderr.contains(" jobs: "), "no summary: {stderr}");
        let s = self.s;
        for i in 1..=2 {
            assert_eq!(s.result(&format!("j{i:05}"))["ok"], true, "j{i:05}");
        }
        for id in s.result_ids() {
            assert_eq!(s.result(&id)["ok"], true, "{id}");
        }
        assert!(s.stray_files().is_empty(), "{:?}", s.stray_files());
        assert_all_gone(&worker_pids(&stderr), Duration::from_secs(5));
        (s, stderr)
    }
}

/// `tests/fs/no_tmpfile_fs.py` mounted on a folder: unmounted, and the
/// server stopped, when dropped.
struct NoTmpfileFs {
    mountpoint: PathBuf,
    server: Child,
}

impl NoTmpfileFs {
    fn mount(backing: &Path, mountpoint: &Path, log: &Path) -> Result<Self, String> {
        for d in [backing, mountpoint] {
            std::fs::create_dir_all(d).map_err(|e| e.to_string())?;
        }
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fs/no_tmpfile_fs.py");
        let mut server = Command::new("python3")
            .arg(script)
            .args([backing, mountpoint, log])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("python3: {e}"))?;
        let mut line = String::new();
        // The server says "mounted", or exits saying why not.
        let _ = BufReader::new(server.stdout.take().unwrap()).read_line(&mut line);
        if line.trim() != "mounted" {
            let _ = server.kill();
            let out = server.wait_with_output().map_err(|e| e.to_string())?;
            return Err(format!(
                "the FUSE file system did not mount: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(NoTmpfileFs {
            mountpoint: mountpoint.to_path_buf(),
            server,
        })
    }
}

impl Drop for NoTmpfileFs {
    fn drop(&mut self) {
        if run_command("umount", &[path_text(&self.mountpoint)]).is_err() {
            let _ = run_command("umount", &["-l", path_text(&self.mountpoint)]);
        }
        // Unmounted, the server ends by itself.
        if wait_child(&mut self.server, Duration::from_secs(5)).is_none() {
            eprintln!("the FUSE server did not end after the unmount; killed");
        }
    }
}

#[test]
fn without_o_tmpfile_results_are_written_under_a_temporary_name_then_renamed() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let (mnt, log) = (s.path("mnt"), s.path("fs.log"));
    let _fs = match NoTmpfileFs::mount(&s.path("backing"), &mnt, &log) {
        Ok(fs) => fs,
        Err(why) => return cannot_run(&why),
    };
    // The premise: this file system refuses O_TMPFILE.
    let tmpfile = nix::fcntl::open(
        &mnt,
        nix::fcntl::OFlag::O_TMPFILE | nix::fcntl::OFlag::O_WRONLY,
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    );
    assert_eq!(tmpfile.err(), Some(nix::errno::Errno::EOPNOTSUPP));

    let n = 12;
    s.write("jobs.jsonl", &geocode_jobs(&api, n, ""));
    let out = mnt.join("results");
    for (round, extra) in [(1, None), (2, Some("--overwrite"))] {
        let mut cmd = Command::new(SUPERVISOR);
        cmd.current_dir(s.dir.path())
            .args(["-w", "2", "--out", "mnt/results", "jobs.jsonl"])
            .args(extra)
            .stdin(Stdio::null());
        let (code, stderr) = run_supervisor(&mut cmd);
        assert_eq!(code, Some(0), "round {round}: {stderr}");
        assert!(
            stderr.contains(&format!("\n{n} jobs: {n} ok, 0 failed in ")),
            "{stderr}"
        );
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names.len(),
            n + 3,
            "{n} results, the joblog, the run log and the run's manifest: {names:?}"
        );
        assert!(names.contains(&"joblog.jsonl".to_string()));
        assert!(names.contains(&"runlog.jsonl".to_string()));
        assert!(names.contains(&".callpool-run".to_string()));
        for name in names
            .iter()
            .filter(|n| *n != "joblog.jsonl" && *n != "runlog.jsonl" && *n != ".callpool-run")
        {
            assert!(!name.starts_with(".tmp."), "{name} left behind");
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(out.join(name)).unwrap()).unwrap();
            assert_eq!(v["ok"], true, "{name}: {v}");
            assert_eq!(format!("{}.json", v["id"].as_str().unwrap()), *name);
        }
        // Each result went through a temporary name and a rename, once;
        // the temporary name ends in a random suffix, so that nobody can
        // plant a link under it beforehand.
        let log = std::fs::read_to_string(&log).unwrap();
        assert!(
            log.lines().any(|l| l == "tmpfile"),
            "O_TMPFILE was tried: {log}"
        );
        for i in 0..n {
            let (from, to) = (
                format!("rename .tmp.job-{i:05}.json."),
                format!(" job-{i:05}.json"),
            );
            let renames = |l: &&str| {
                l.strip_prefix(&from)
                    .and_then(|rest| rest.strip_suffix(&to))
                    .is_some_and(|random| {
                        random.len() == 16 && random.bytes().all(|b| b.is_ascii_hexdigit())
                    })
            };
            assert_eq!(
                log.lines().filter(renames).count(),
                round,
                "{from}RANDOM{to}: {log}"
            );
        }
    }
}
