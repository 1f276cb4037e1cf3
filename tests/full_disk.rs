//! A results folder on a full disk, on a real small file system: a tmpfs
//! (or, where mounting one is refused, a loop-mounted ext4 image), mounted
//! for the test and unmounted when it ends, failed or not. Mounting needs
//! root, as this project's CI has; elsewhere the tests say why and skip.

mod common;

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use callpool_pool::RequestDefaults;
use callpool_pool::testing::jobs::parse_line;
use callpool_pool::testing::output::{AttemptRecord, JOBLOG_NAME, Outcome, Output};
use callpool_pool::testing::poller::{EventSender, Poller};
use common::*;
use serde_json::Value;

/// A small file system mounted on a folder, unmounted when dropped (also
/// when the test panics).
struct SmallFs {
    dir: PathBuf,
    /// `tmpfs` or `ext4 on a loop device`.
    kind: &'static str,
}

impl SmallFs {
    /// Mounts a tmpfs of `mib` MiB on `dir`; where that is refused, a
    /// loop-mounted ext4 image with at least that much room, kept in
    /// `image_dir`. Says why when neither can be mounted.
    fn mount(dir: &Path, mib: u64, image_dir: &Path) -> Result<SmallFs, String> {
        fs::create_dir_all(dir).map_err(|e| format!("mkdir {}: {e}", dir.display()))?;
        let size = format!("size={mib}m");
        // CALLPOOL_TEST_SMALL_FS=ext4 tries the fallback first.
        let tmpfs = if std::env::var("CALLPOOL_TEST_SMALL_FS").is_ok_and(|v| v == "ext4") {
            Err("not tried (CALLPOOL_TEST_SMALL_FS=ext4)".to_string())
        } else {
            run_command(
                "mount",
                &["-t", "tmpfs", "-o", &size, "tmpfs", path_text(dir)],
            )
        };
        let no_tmpfs = match tmpfs {
            Ok(()) => {
                return Ok(SmallFs {
                    dir: dir.to_path_buf(),
                    kind: "tmpfs",
                });
            }
            Err(why) => why,
        };
        let image = image_dir.join("small.ext4");
        let loop_fs = File::create(&image)
            // ext4 keeps about 1 MiB for itself on so small a file system.
            .and_then(|f| f.set_len((mib + 2) << 20))
            .map_err(|e| format!("create {}: {e}", image.display()))
            .and_then(|()| run_command("mkfs.ext4", &["-q", "-F", "-m", "0", path_text(&image)]))
            .and_then(|()| {
                run_command("mount", &["-o", "loop", path_text(&image), path_text(dir)])
            });
        match loop_fs {
            Ok(()) => Ok(SmallFs {
                dir: dir.to_path_buf(),
                kind: "ext4 on a loop device",
            }),
            Err(e) => Err(format!(
                "cannot mount a tmpfs ({no_tmpfs}) nor a loop-mounted ext4 image ({e})"
            )),
        }
    }

    /// Free bytes on it.
    fn free(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(&self.dir).expect("statvfs");
        st.blocks_available() as u64 * st.fragment_size() as u64
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        // A process that has just exited may still hold a file there for a
        // moment; past that, detach it lazily rather than leave it mounted.
        for _ in 0..50 {
            if run_command("umount", &[path_text(&self.dir)]).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        if let Err(e) = run_command("umount", &["-l", path_text(&self.dir)]) {
            eprintln!("cannot unmount {}: {e}", self.dir.display());
        }
    }
}

/// Mounts a small file system, or says why it cannot and returns `None`
/// (the test is then skipped). In CI (which runs as root) that is a
/// failure: there the test must run.
fn small_fs(dir: &Path, mib: u64, image_dir: &Path) -> Option<SmallFs> {
    match SmallFs::mount(dir, mib, image_dir) {
        Ok(fs) => {
            eprintln!("full disk test on {} ({} MiB)", fs.kind, mib);
            Some(fs)
        }
        Err(why) => {
            cannot_run(&why);
            None
        }
    }
}

/// Fills the file system until `leave` bytes are free.
fn fill(fs: &SmallFs, name: &str, leave: u64) -> PathBuf {
    let path = fs.dir.join(name);
    let free = fs.free();
    assert!(free > leave, "{} has only {free} bytes free", fs.kind);
    let mut f = File::create(&path).expect("create filler");
    let chunk = vec![0x5a_u8; 64 * 1024];
    let mut left = free - leave;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n]).expect("write filler");
        left -= n as u64;
    }
    path
}

/// Checks that the joblog holds only whole lines, each a JSON object, and
/// returns them.
fn joblog_lines(dir: &Path) -> Vec<Value> {
    let bytes = fs::read(dir.join(JOBLOG_NAME)).unwrap_or_default();
    assert!(
        bytes.is_empty() || bytes.ends_with(b"\n"),
        "the joblog ends in a partial line: {:?}",
        String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(200)..])
    );
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            serde_json::from_slice::<Value>(l).unwrap_or_else(|e| {
                panic!(
                    "joblog line is not JSON ({e}): {:?}",
                    String::from_utf8_lossy(l)
                )
            })
        })
        .inspect(|v| assert!(v["id"].is_string(), "{v}"))
        .collect()
}

/// Every `<id>.json` in the folder, each checked to be a whole result.
/// (Temporary names start with a dot, which no id does: a run that stops
/// on a full disk may leave one, and the next run removes it.)
fn whole_results(dir: &Path) -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).expect("read results") {
        let name = entry
            .expect("entry")
            .file_name()
            .into_string()
            .expect("utf8");
        let Some(id) = name
            .strip_suffix(".json")
            .filter(|_| !name.starts_with('.'))
        else {
            continue;
        };
        let text = fs::read_to_string(dir.join(&name)).expect("read result");
        let v: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{name} is not a whole result ({e}): {text:?}"));
        assert_eq!(v["id"], id, "{name}");
        out.push((id.to_string(), v));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn a_full_disk_stops_the_run_with_whole_files_and_resume_finishes_it() {
    let api = DemoApi::start();
    let s = Scratch::new();
    // Dropped before `s`, whose folder holds the mount point.
    let Some(disk) = small_fs(&s.results(), 2, s.dir.path()) else {
        return;
    };
    // 1 MiB is left free for the run; each result holds an 8 kB answer, so
    // about 100 of the 150 fit, and all of them once the filler is gone.
    let filler = fill(&disk, "filler.bin", 1 << 20);
    let n = 150;
    s.write("jobs.jsonl", &geocode_jobs(&api, n, ",\"body_bytes\":8000"));

    let (code, stderr) = run_supervisor(s.supervisor().args(["--workers", "4", "jobs.jsonl"]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot write results in")
            && stderr.contains("the results written so far are complete")
            && stderr.contains("free some space")
            && stderr.contains("rerun with --resume"),
        "{stderr}"
    );
    let first = whole_results(&s.results());
    eprintln!(
        "first run: {} results of {n}, then {}",
        first.len(),
        stderr
            .lines()
            .find(|l| l.contains("cannot write results"))
            .unwrap_or("?")
    );
    assert!(
        !first.is_empty() && first.len() < n,
        "the disk should fill part way: {} results of {n}\n{stderr}",
        first.len()
    );
    joblog_lines(&s.results());

    fs::remove_file(&filler).expect("remove filler");
    let (code, stderr) =
        run_supervisor(
            s.supervisor()
                .args(["--workers", "4", "--resume", "jobs.jsonl"]),
        );
    assert_eq!(code, Some(0), "{stderr}");
    let all = whole_results(&s.results());
    let want: Vec<String> = (0..n).map(|i| format!("job-{i:05}")).collect();
    let got: Vec<String> = all.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(got, want, "exactly one result per job");
    for (id, r) in &all {
        assert_eq!(r["ok"], true, "{id}: {r}");
        assert_eq!(r["response"]["status"], 200, "{id}");
        assert!(r["response"]["body"]["padding"].is_string(), "{id}: {r}");
    }
    // The results of the first run were kept, not redone.
    for (id, r) in &first {
        let again = all.iter().find(|(i, _)| i == id).map(|(_, v)| v);
        assert_eq!(again, Some(r), "{id} was rewritten");
    }
    let log = joblog_lines(&s.results());
    let ok_lines = log.iter().filter(|l| l["outcome"] == "ok").count();
    assert!(ok_lines >= n - first.len(), "{ok_lines} ok lines");
    let strays: Vec<String> = s
        .stray_files()
        .into_iter()
        .filter(|f| f.starts_with('.'))
        .collect();
    assert!(strays.is_empty(), "temporary files left: {strays:?}");
    drop(disk);
}

#[test]
fn a_joblog_write_cut_short_by_a_full_disk_leaves_only_whole_lines() {
    let s = Scratch::new();
    let Some(disk) = small_fs(&s.path("disk"), 1, s.dir.path()) else {
        return;
    };
    let results = disk.dir.join("results");
    let (tx, _rx) = crossbeam_channel::unbounded();
    let poller = Poller::new().expect("poller");
    let events = EventSender::new(tx, poller.waker());
    let mut out = Output::open(&results, None, &events).expect("open output");
    let job = parse_line(
        r#"{"id":"j","url":"http://127.0.0.1:9/x"}"#,
        1,
        &RequestDefaults::default(),
    )
    .expect("job");
    let record = |attempt: u32| AttemptRecord {
        attempt,
        slot: 0,
        pid: 1,
        host: None,
        started_at: callpool_pool::testing::output::timestamp(SystemTime::now()),
        elapsed_ms: 1.5,
        outcome: Outcome::HttpError,
        status: Some(503),
        error: None,
        retry_in_ms: Some(100),
    };
    // A first batch goes out whole.
    for a in 1..=3 {
        out.log_attempt(&job, &record(a)).expect("log");
    }
    out.flush_log().expect("first batch");
    let before = fs::read(results.join(JOBLOG_NAME)).expect("read joblog");

    // Leave a few kB free: the next batch, larger than that, is cut short
    // by the file system part way through a line.
    let free = 6000;
    fill(&disk, "filler.bin", free);
    for a in 4..200 {
        out.log_attempt(&job, &record(a)).expect("log");
    }
    let err = out.flush_log().expect_err("the disk is full");
    let after = fs::read(results.join(JOBLOG_NAME)).expect("read joblog");
    assert!(after.starts_with(&before));
    assert!(
        after.len() > before.len(),
        "the file system took part of the batch"
    );
    // Whole lines only, in order: the attempts before the cut.
    let lines = joblog_lines(&results);
    assert_eq!(lines.len(), after.split(|&b| b == b'\n').count() - 1);
    for (i, l) in lines.iter().enumerate() {
        assert_eq!(l["attempt"], i + 1, "{l}");
    }
    assert_eq!(err.kind(), std::io::ErrorKind::StorageFull, "{err}");
    assert!(err.to_string().starts_with("joblog.jsonl: "), "{err}");
    assert!(!err.to_string().contains("cut short"), "{err}");
    eprintln!(
        "the joblog kept {} whole lines ({} bytes) of a batch cut short: {err}",
        lines.len(),
        after.len()
    );
    drop(out);
    drop(disk);
}
