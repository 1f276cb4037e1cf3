//! The job source: a thread that streams the (already checked) jobs file
//! and hands built jobs to the loop through a bounded channel, so the
//! supervisor never holds the whole job list in memory and the loop never
//! parses job lines itself.

use std::path::{Path, PathBuf};
use std::thread;

use crossbeam_channel::{Receiver, bounded};
use std::sync::Arc;

use crate::poller::Waker;

use crate::jobs::{Job, RequestDefaults};
use crate::output::{Prior, prior_result};
use crate::safedir::SafeDir;
use crate::table::{JobsInput, ReadError, Records};

/// How many built jobs wait in the channel: enough that a burst of free
/// workers never waits on parsing, small enough to be a few megabytes.
const FEED_DEPTH: usize = 4096;

/// One item from the job source.
#[derive(Debug)]
pub enum Feed {
    /// A job to run; `changed` when it has an ok result for a request
    /// that has changed since (with `--resume`).
    Job {
        /// The job.
        job: Box<Job>,
        /// Its earlier ok result answers another request.
        changed: bool,
    },
    /// A job skipped by `--resume`: it already has an ok result.
    Skipped,
    /// The file changed since it was checked, or could not be read again.
    Error(String),
}

/// Starts the source thread. With `resume`, jobs whose result file in
/// `out_dir` is complete and ok are skipped. The thread pokes `waker` when
/// the loop waits for a job, and when the list is over.
pub fn start(
    path: PathBuf,
    name: String,
    input: JobsInput,
    defaults: RequestDefaults,
    out_dir: PathBuf,
    resume: bool,
    waker: Arc<Waker>,
) -> std::io::Result<Receiver<Feed>> {
    let (tx, rx) = bounded(FEED_DEPTH);
    thread::Builder::new()
        .name("job-source".into())
        .spawn(move || {
            for item in read_jobs(&path, &name, &input, &defaults, &out_dir, resume) {
                let stop = matches!(item, Feed::Error(_));
                if tx.send(item).is_err() || stop {
                    break;
                }
                waker.job_sent();
            }
            // The loop learns that the list is over when the channel says
            // it is disconnected: wake it to look.
            drop(tx);
            waker.wake();
        })?;
    Ok(rx)
}

fn read_jobs<'a>(
    path: &Path,
    name: &'a str,
    input: &JobsInput,
    defaults: &'a RequestDefaults,
    out_dir: &'a Path,
    resume: bool,
) -> Box<dyn Iterator<Item = Feed> + 'a> {
    let changed = " (the file changed after it was checked)";
    let records = match Records::open(path, input) {
        Ok(r) => r,
        Err(ReadError::Io(e)) => {
            return Box::new(std::iter::once(Feed::Error(format!("{name}: {e}"))));
        }
        Err(ReadError::Bad { line, msg }) => {
            return Box::new(std::iter::once(Feed::Error(format!(
                "{name}:{line}: {msg}{changed}"
            ))));
        }
    };
    let layout = records.layout().clone();
    // Opened once: prior results are read relative to it, never through a
    // link (see safedir.rs). A folder that cannot be opened has none.
    let dir = resume.then(|| SafeDir::open(out_dir).ok()).flatten();
    Box::new(records.map(move |item| {
        let (line_no, record) = match item {
            Ok(r) => r,
            Err(ReadError::Io(e)) => return Feed::Error(format!("{name}: {e}")),
            Err(ReadError::Bad { line, msg }) => {
                return Feed::Error(format!("{name}:{line}: {msg}{changed}"));
            }
        };
        match layout.job(&record, line_no, defaults) {
            Ok(job) => {
                let prior = match &dir {
                    Some(dir) => prior_result(dir, &job.id, &job.fingerprint),
                    None => Prior::Missing,
                };
                match prior {
                    Prior::Same | Prior::Unknown => Feed::Skipped,
                    Prior::Changed => Feed::Job {
                        job: Box::new(job),
                        changed: true,
                    },
                    Prior::Missing => Feed::Job {
                        job: Box::new(job),
                        changed: false,
                    },
                }
            }
            Err(msg) => Feed::Error(format!("{name}:{line_no}: {msg}{changed}")),
        }
    }))
}
