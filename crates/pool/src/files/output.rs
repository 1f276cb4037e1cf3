//! Result files and the joblog: what a run leaves on disk.
//!
//! Each result is written whole to an unnamed file (`O_TMPFILE`) that is
//! then linked in under its name, or, where that cannot be done, to a
//! temporary name that is then renamed; so the folder never holds a
//! half-written result. The joblog gets one line per attempt; the lines
//! of one turn of the loop go out in a single `write` before the loop
//! sleeps, so that it tells what happened even after the supervisor is
//! killed, and holds only whole lines (a batch that a full disk cuts short
//! is cut back to its last whole line).
//!
//! Result files are serialized and written by a small pool of writer
//! threads, so that a slow file system (creating a file can take hundreds
//! of microseconds) never stalls the loop that feeds the workers.

#[cfg(test)]
use std::fs::OpenOptions;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};

use callpool_protocol::{HttpResponse, JobError};
use crossbeam_channel::{Sender, bounded};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use serde_json::value::RawValue;

use serde::Serialize;

use crate::files::safedir::{MAX_RESULT_BYTES, SafeDir};
pub use crate::records::{AttemptRecord, FinalResult, Outcome, timestamp};
use crate::records::{micros, scrub_buf};

/// Writer threads: file creation is mostly kernel time, so two keep a
/// two-core machine busy without a crowd of threads on a bigger one.
const WRITERS: usize = 2;
/// Results queued for the writers before the loop waits for them.
const WRITE_QUEUE: usize = 1024;

/// Joblog bytes kept before they are written even if the loop is busy.
const LOG_BATCH: usize = 64 * 1024;

/// Prefix of the temporary names results are written under before their
/// rename. Ids never start with a dot, so these can never clash with a
/// result.
const TMP_PREFIX: &str = ".tmp.";

/// The name of the run's manifest inside the results folder: no `.json`
/// and a leading dot, so never a result's name.
pub const MANIFEST_NAME: &str = ".callpool-run";

/// The name of the joblog inside the results folder.
pub const JOBLOG_NAME: &str = "joblog.jsonl";

/// `request` in a result file: an HTTP call's method and URL, or a
/// worker call's `args`, and the fingerprint.
#[derive(Serialize)]
struct RequestView<'a> {
    #[serde(skip_serializing_if = "str::is_empty")]
    method: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    args: Option<&'a RawValue>,
    fingerprint: &'a str,
}

/// The content of `DIR/<id>.json`.
#[derive(Serialize)]
struct ResultFile<'a> {
    id: &'a str,
    ok: bool,
    attempts: u32,
    pid: i32,
    slot: usize,
    line: u64,
    started_at: &'a str,
    finished_at: String,
    #[serde(serialize_with = "micros")]
    elapsed_ms: f64,
    request: RequestView<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    response: Option<&'a HttpResponse>,
    /// What a job that is not an HTTP call returned (`args` jobs).
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<&'a RawValue>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a JobError>,
    /// The job whose call answered this one (`--dedup`).
    #[serde(skip_serializing_if = "Option::is_none")]
    dedup_of: Option<&'a str>,
    history: &'a [AttemptRecord],
}

/// Where the writer threads report a result they could not write (the
/// shell's loop, which then stops the run).
pub trait Failures: Clone + Send + 'static {
    /// The result of job `id` could not be written.
    fn write_failed(&self, id: String, error: io::Error);
}

/// Writes result files (on writer threads) and the joblog (on the caller's
/// thread) into one folder.
pub struct Output {
    joblog: File,
    /// Joblog lines not written yet.
    log_batch: Vec<u8>,
    queue: Option<Sender<Box<FinalResult>>>,
    writers: Vec<JoinHandle<()>>,
    /// Why the run's manifest could not be written, if it could not.
    pub manifest_error: Option<String>,
}

impl Output {
    /// Creates the folder if needed, removes temporary files that a killed
    /// run left behind, opens the joblog for appending and starts the
    /// writers, which report a result they could not write to `failures`.
    ///
    /// The run's `manifest` is written too; failing that is no reason to
    /// stop a run (it is no result): the error is kept in
    /// [`Output::manifest_error`] for the caller to report.
    pub fn open(dir: &Path, manifest: Option<&[u8]>, failures: &impl Failures) -> io::Result<Self> {
        let dir = SafeDir::create(dir)?;
        // Temporary names of a killed run, of any type: a planted link
        // named `.tmp.<id>.json` is removed itself, never followed.
        for entry in fs::read_dir(dir.path())? {
            let entry = entry?;
            if let Some(name) = entry.file_name().to_str()
                && name.starts_with(TMP_PREFIX)
            {
                dir.remove(name)?;
            }
        }
        let joblog = dir.open_regular(
            JOBLOG_NAME,
            OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT,
            Mode::from_bits_truncate(0o644),
        )?;
        let manifest_error = manifest.and_then(|m| {
            dir.write_atomically(MANIFEST_NAME, m)
                .err()
                .map(|e| format!("cannot write {}: {e}", dir.show(MANIFEST_NAME).display()))
        });
        let dir = Arc::new(dir);
        let (tx, rx) = bounded::<Box<FinalResult>>(WRITE_QUEUE);
        let mut writers = Vec::new();
        for i in 0..WRITERS {
            let (rx, dir, failures) = (rx.clone(), dir.clone(), failures.clone());
            writers.push(
                thread::Builder::new()
                    .name(format!("writer-{i}"))
                    .spawn(move || {
                        let mut buf = Vec::with_capacity(8192);
                        for result in rx {
                            if let Err(e) = write_result(&dir, &mut buf, &result) {
                                failures.write_failed(result.job.id.clone(), e);
                            }
                        }
                    })?,
            );
        }
        Ok(Self {
            joblog,
            log_batch: Vec::with_capacity(LOG_BATCH),
            queue: Some(tx),
            writers,
            manifest_error,
        })
    }

    /// Adds one joblog line (whole, with its newline: see
    /// [`crate::records::joblog_line`]). Lines are kept until
    /// [`Output::flush_log`] (the loop calls it before it sleeps) or until
    /// [`LOG_BATCH`] bytes wait, and then written whole in one `write`: a
    /// batch of whole lines, never part of one.
    pub fn append_joblog(&mut self, line: &[u8]) -> io::Result<()> {
        self.log_batch.extend_from_slice(line);
        if self.log_batch.len() >= LOG_BATCH {
            return self.flush_log();
        }
        Ok(())
    }

    /// Adds the joblog line of an attempt at `job` (see
    /// [`crate::records::joblog_line`]).
    pub fn log_attempt(&mut self, job: &crate::job::Job, rec: &AttemptRecord) -> io::Result<()> {
        self.append_joblog(&crate::records::joblog_line(job, rec))
    }

    /// Writes the joblog lines kept so far. If the file system takes only
    /// part of them (a full disk), the line it cut short is taken back, so
    /// that the joblog still holds only whole lines; the lines of the batch
    /// that were not written are lost with the error.
    pub fn flush_log(&mut self) -> io::Result<()> {
        if self.log_batch.is_empty() {
            return Ok(());
        }
        let result = append_lines(&mut self.joblog, &self.log_batch);
        self.log_batch.clear();
        result
    }

    /// Queues a final result for writing (its path is
    /// [`Output::result_path`]). Blocks while the writers are
    /// [`WRITE_QUEUE`] results behind.
    pub fn submit(&mut self, result: FinalResult) {
        if let Some(q) = &self.queue {
            // The writers only stop when the queue is dropped, in finish().
            let _ = q.send(Box::new(result));
        }
    }

    /// Waits until every queued result is on disk. Joblog lines not
    /// flushed yet are written too (an error there is lost: call
    /// [`Output::flush_log`] first to see it).
    pub fn finish(&mut self) {
        let _ = self.flush_log();
        self.queue = None;
        for w in self.writers.drain(..) {
            let _ = w.join();
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        self.finish();
    }
}

/// Appends `lines` (whole lines) to `file`, opened with `O_APPEND`. When
/// the file system refuses part of them (ENOSPC, EFBIG, EIO after a short
/// write), the start of a line that did go out is cut off again, so that
/// the file never ends in half a line; the whole lines before it stay.
fn append_lines(file: &mut File, lines: &[u8]) -> io::Result<()> {
    let (written, error) = write_counted(file, lines);
    let Some(error) = error else {
        return Ok(());
    };
    let partial = written - whole_lines_len(&lines[..written]);
    let cut = if partial == 0 {
        String::new()
    } else {
        match take_back(file, partial as u64) {
            Ok(()) => String::new(),
            Err(e) => format!(
                "; its last line is cut short and could not be taken back ({e}): drop the last line if it does not end with a newline"
            ),
        }
    };
    Err(io::Error::new(
        error.kind(),
        format!("{JOBLOG_NAME}: {error}{cut}"),
    ))
}

/// Writes `buf` as `write_all` does, but says how many bytes went out
/// before an error.
fn write_counted(w: &mut impl Write, buf: &[u8]) -> (usize, Option<io::Error>) {
    let mut written = 0;
    while written < buf.len() {
        match w.write(&buf[written..]) {
            Ok(0) => return (written, Some(io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return (written, Some(e)),
        }
    }
    (written, None)
}

/// The length of the whole lines at the start of `bytes`.
fn whole_lines_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1)
}

/// Cuts off the last `n` bytes that this process appended to `file`.
///
/// The joblog is opened with `O_APPEND`, so each write goes to the end of
/// the file and leaves the file offset at the end of what it wrote. If the
/// file is longer than that offset, something else (another process on
/// the same folder) has appended since, and cutting would remove its bytes
/// instead of ours: then nothing is cut.
fn take_back(file: &mut File, n: u64) -> io::Result<()> {
    use std::io::Seek;
    let end = file.stream_position()?;
    let len = file.metadata()?.len();
    if len != end || n > end {
        return Err(io::Error::other(format!(
            "the file is {len} bytes, this process's last write ended at {end}: another process appends to it"
        )));
    }
    file.set_len(end - n)
}

/// Writes `DIR/<id>.json` atomically: an unnamed file linked in, or a
/// temporary name then a rename.
fn write_result(dir: &SafeDir, buf: &mut Vec<u8>, r: &FinalResult) -> io::Result<()> {
    let last = r
        .history
        .last()
        .ok_or_else(|| io::Error::other("a result needs at least one attempt"))?;
    let job = &r.job;
    let file = ResultFile {
        id: &job.id,
        ok: r.ok,
        attempts: last.attempt,
        pid: last.pid,
        slot: last.slot,
        line: job.line,
        started_at: &last.started_at,
        finished_at: timestamp(r.finished),
        elapsed_ms: last.elapsed_ms,
        request: RequestView {
            method: &job.method,
            url: &job.url,
            args: job.args.as_deref(),
            fingerprint: &job.fingerprint,
        },
        response: r.response.as_ref(),
        value: r.value.as_deref(),
        error: r.error.as_ref(),
        dedup_of: r.dedup_of.as_deref(),
        history: &r.history,
    };
    buf.clear();
    serde_json::to_writer_pretty(&mut *buf, &file)?;
    buf.push(b'\n');
    scrub_buf(buf, &job.secrets);
    let name = format!("{}.json", job.id);
    if UNNAMED_FILES.load(Ordering::Relaxed) {
        match write_unnamed_then_link(dir.fd(), buf, &name) {
            Ok(()) => return Ok(()),
            // The file exists (--overwrite): fall through to a rename,
            // which replaces it.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            // A full disk or a quota is not a missing feature: say so, and
            // leave no temporary file behind.
            Err(e) if is_out_of_space(&e) => return Err(e),
            // No O_TMPFILE on this file system (or no /proc): stop trying.
            Err(_) => UNNAMED_FILES.store(false, Ordering::Relaxed),
        }
    }
    // A temporary name nobody can have planted: created with O_EXCL under
    // a random suffix, never reached through a link.
    let tmp = format!("{TMP_PREFIX}{name}.{:016x}", fastrand::u64(..));
    let mut file = dir.open_regular(
        &tmp,
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL,
        Mode::from_bits_truncate(0o644),
    )?;
    if let Err(e) = file.write_all(buf) {
        let _ = dir.remove(&tmp);
        return Err(e);
    }
    drop(file);
    dir.rename(&tmp, &name).inspect_err(|_| {
        let _ = dir.remove(&tmp);
    })
}

fn is_out_of_space(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(code) if code == nix::libc::ENOSPC || code == nix::libc::EDQUOT
    )
}

/// Whether unnamed files work in the results folder; cleared at the first
/// failure other than "the file exists".
static UNNAMED_FILES: AtomicBool = AtomicBool::new(true);

/// Whether `linkat(fd, "", ..., AT_EMPTY_PATH)` works here; cleared at
/// its first failure, after which the file is linked through `/proc`.
static EMPTY_PATH_LINK: AtomicBool = AtomicBool::new(true);

/// Writes the bytes to an unnamed file in `dir` (O_TMPFILE) and links it
/// in as `name`: one directory insertion instead of the create, insert,
/// remove and insert of a temporary name and a rename, and nothing to
/// clean up if the process dies mid-write. Fails if `name` exists.
fn write_unnamed_then_link(dir: &OwnedFd, buf: &[u8], name: &str) -> io::Result<()> {
    use nix::fcntl::{AT_FDCWD, AtFlags};
    let fd = nix::fcntl::openat(
        dir,
        ".",
        OFlag::O_TMPFILE | OFlag::O_WRONLY | OFlag::O_CLOEXEC,
        Mode::from_bits_truncate(0o644),
    )?;
    let mut file = File::from(fd);
    file.write_all(buf)?;
    if EMPTY_PATH_LINK.load(Ordering::Relaxed) {
        // Linking an open file by its descriptor needs Linux 6.10, or
        // CAP_DAC_READ_SEARCH before it.
        match nix::unistd::linkat(&file, "", dir, name, AtFlags::AT_EMPTY_PATH) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EEXIST) => return Err(io::ErrorKind::AlreadyExists.into()),
            Err(_) => EMPTY_PATH_LINK.store(false, Ordering::Relaxed),
        }
    }
    let proc_path = format!("/proc/self/fd/{}", file.as_raw_fd());
    nix::unistd::linkat(
        AT_FDCWD,
        proc_path.as_str(),
        dir,
        name,
        AtFlags::AT_SYMLINK_FOLLOW,
    )
    .map_err(io::Error::from)
}

/// What an earlier run left for a job, as `--resume` sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prior {
    /// No result file, or not a complete one, or not ok: run the job.
    Missing,
    /// An ok result for the same request: skip the job.
    Same,
    /// An ok result for another request (the row was edited): run again.
    Changed,
    /// An ok result written before results had fingerprints: skipped, as
    /// then.
    Unknown,
}

/// What `DIR/<id>.json` holds for a job whose request has `fingerprint`.
/// Anything but a regular file there (a link, a FIFO, a folder) is never
/// followed nor read, and counts as no result; a result is parsed as it is
/// read, at most [`MAX_RESULT_BYTES`] of it, without keeping its body.
pub fn prior_result(dir: &SafeDir, id: &str, fingerprint: &str) -> Prior {
    #[derive(serde::Deserialize)]
    struct Request {
        fingerprint: Option<String>,
    }
    #[derive(serde::Deserialize)]
    struct Fields {
        ok: bool,
        request: Option<Request>,
    }
    let Ok(file) = dir.open_regular(&format!("{id}.json"), OFlag::O_RDONLY, Mode::empty()) else {
        return Prior::Missing;
    };
    let reader = io::BufReader::new(io::Read::take(file, MAX_RESULT_BYTES));
    let Ok(r) = serde_json::from_reader::<_, Fields>(reader) else {
        return Prior::Missing;
    };
    match r.request.and_then(|q| q.fingerprint) {
        _ if !r.ok => Prior::Missing,
        None => Prior::Unknown,
        Some(f) if f == fingerprint => Prior::Same,
        Some(_) => Prior::Changed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that takes `room` bytes, then fails as a full disk does.
    struct Full {
        got: Vec<u8>,
        room: usize,
    }

    impl Write for Full {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.got.len() == self.room {
                return Err(io::Error::from_raw_os_error(28)); // ENOSPC
            }
            let n = buf.len().min(self.room - self.got.len()).min(7);
            self.got.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn elapsed_ms_is_written_with_at_most_three_decimals() {
        #[derive(Serialize)]
        struct T {
            #[serde(serialize_with = "micros")]
            ms: f64,
        }
        let text = |ms: f64| serde_json::to_string(&T { ms }).expect("serialize");
        assert_eq!(text(7.859891000000001), r#"{"ms":7.86}"#);
        assert_eq!(text(2.216246), r#"{"ms":2.216}"#);
        assert_eq!(text(0.0004), r#"{"ms":0.0}"#);
        // Every microsecond up to 100 s, and noisy values around each.
        for k in (0..100_000_000u64).step_by(997).chain(0..20_000) {
            for ms in [
                k as f64 / 1000.0,
                k as f64 * 0.001,
                (k as f64 + 0.3) / 1000.0,
            ] {
                let t = text(ms);
                let v = &t[6..t.len() - 1];
                let decimals = v.split_once('.').map_or(0, |(_, d)| d.len());
                assert!(decimals <= 3, "{ms} written as {v}");
                let back: f64 = v.parse().expect("a number");
                assert!((back - ms).abs() <= 0.0005 + 1e-9, "{ms} written as {v}");
            }
        }
    }

    #[test]
    fn a_short_write_says_how_much_went_out() {
        let mut w = Full {
            got: Vec::new(),
            room: 20,
        };
        let (n, err) = write_counted(&mut w, b"line one\nline two\nline three\n");
        assert_eq!(n, 20);
        assert_eq!(err.map(|e| e.kind()), Some(io::ErrorKind::StorageFull));
        assert_eq!(whole_lines_len(&w.got), 18);
        assert_eq!(whole_lines_len(b"no newline"), 0);
        let (n, err) = write_counted(&mut Vec::new(), b"a\nb\n");
        assert!(n == 4 && err.is_none());
    }

    #[test]
    fn a_cut_line_is_taken_back_but_not_another_processes_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(JOBLOG_NAME);
        let open = || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .expect("open")
        };
        let mut mine = open();
        mine.write_all(b"{\"a\":1}\n{\"b\":").expect("write");
        take_back(&mut mine, 5).expect("take back");
        assert_eq!(fs::read(&path).expect("read"), b"{\"a\":1}\n");
        // The offset is past the end now; the next append still goes to
        // the end.
        append_lines(&mut mine, b"{\"c\":3}\n").expect("append");
        assert_eq!(fs::read(&path).expect("read"), b"{\"a\":1}\n{\"c\":3}\n");

        mine.write_all(b"{\"d\":").expect("write");
        open().write_all(b"{\"other\":1}\n").expect("write");
        assert!(take_back(&mut mine, 5).is_err());
        assert_eq!(
            fs::read(&path).expect("read"),
            b"{\"a\":1}\n{\"c\":3}\n{\"d\":{\"other\":1}\n"
        );
    }
}
