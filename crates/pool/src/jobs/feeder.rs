//! The job source: a thread that streams the (already checked) jobs file
//! and hands built jobs to the loop through a bounded channel, so the
//! supervisor never holds the whole job list in memory and the loop never
//! parses job lines itself.

pub use crate::feed::Feed;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread;

use crossbeam_channel::{Receiver, TryRecvError, bounded};

use crate::files::output::{Prior, prior_result};
use crate::files::safedir::SafeDir;
use crate::jobs::RequestDefaults;
use crate::jobs::check::OnResume;
use crate::jobs::table::{JobsInput, ReadError, Records};

/// How many built jobs wait in the channel: enough that a burst of free
/// workers never waits on parsing, small enough to be a few megabytes.
const FEED_DEPTH: usize = 4096;

/// The most bytes of job lines (bodies included) that wait in the channel:
/// with big bodies it, not [`FEED_DEPTH`], bounds the read-ahead. One job
/// always fits, however big.
pub const FEED_BYTES: usize = 16 * 1024 * 1024;

/// The bytes of job lines in the channel, shared by the source thread
/// (which waits while they are over [`FEED_BYTES`]) and the loop.
#[derive(Debug, Default)]
struct Budget {
    state: Mutex<BudgetState>,
    freed: Condvar,
}

#[derive(Debug, Default)]
struct BudgetState {
    used: usize,
    /// The loop is gone: stop waiting.
    closed: bool,
}

impl Budget {
    /// Waits until `n` more bytes fit (or nothing is queued), then counts
    /// them; false when the loop is gone.
    fn take(&self, n: usize) -> bool {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        while !st.closed && st.used > 0 && st.used + n > FEED_BYTES {
            st = self.freed.wait(st).unwrap_or_else(PoisonError::into_inner);
        }
        st.used += n;
        !st.closed
    }

    fn give(&self, n: usize) {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.used = st.used.saturating_sub(n);
        self.freed.notify_one();
    }

    fn close(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
        self.freed.notify_one();
    }
}

/// The loop's end of the job source: a channel whose jobs are also counted
/// in bytes ([`FEED_BYTES`]).
#[derive(Debug)]
pub struct FeedRx {
    rx: Receiver<Feed>,
    budget: Arc<Budget>,
}

impl FeedRx {
    /// The next item, if one is there.
    pub fn try_recv(&self) -> Result<Feed, TryRecvError> {
        let item = self.rx.try_recv();
        if let Ok(Feed::Job { job, .. }) = &item {
            self.budget.give(job.wire.len());
        }
        item
    }

    /// How many items wait.
    pub fn len(&self) -> usize {
        self.rx.len()
    }
}

impl Drop for FeedRx {
    fn drop(&mut self) {
        self.budget.close();
    }
}

/// How the reader thread wakes the loop: when it sends a job the loop
/// waits for, and when the list is over.
pub trait Wake: Send + Sync {
    /// A job was sent.
    fn job_sent(&self);
    /// Look at the channel now.
    fn wake(&self);
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
    waker: Arc<dyn Wake>,
) -> std::io::Result<FeedRx> {
    let (tx, rx) = bounded(FEED_DEPTH);
    let budget = Arc::new(Budget::default());
    let source_budget = budget.clone();
    thread::Builder::new()
        .name("job-source".into())
        .spawn(move || {
            for item in read_jobs(&path, &name, &input, &defaults, &out_dir, resume) {
                let stop = matches!(item, Feed::Error(_));
                if let Feed::Job { job, .. } = &item
                    && !source_budget.take(job.wire.len())
                {
                    break;
                }
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
    Ok(FeedRx { rx, budget })
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
                match OnResume::of(prior) {
                    OnResume::Skip => Feed::Skipped,
                    again => Feed::Job {
                        job: Box::new(job),
                        changed: again == OnResume::RunAgain,
                    },
                }
            }
            Err(msg) => Feed::Error(format!("{name}:{line_no}: {msg}{changed}")),
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_source_waits_while_the_queued_bytes_are_over_the_budget() {
        let budget = Arc::new(Budget::default());
        // One job always fits, however big.
        assert!(budget.take(FEED_BYTES + 1));
        budget.give(FEED_BYTES + 1);
        assert!(budget.take(FEED_BYTES / 2));
        let (tx, rx) = crossbeam_channel::bounded(1);
        let b = budget.clone();
        let source = thread::spawn(move || {
            let _ = tx.send(b.take(FEED_BYTES / 2 + 1));
        });
        assert!(rx.recv_timeout(Duration::from_millis(50)).is_err());
        budget.give(FEED_BYTES / 2);
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(true));
        source.join().expect("source");
        // A closed budget lets a waiting source go, and says so.
        let b = budget.clone();
        let (tx, rx) = crossbeam_channel::bounded(1);
        let source = thread::spawn(move || {
            let _ = tx.send(b.take(FEED_BYTES));
        });
        budget.close();
        assert_eq!(rx.recv_timeout(Duration::from_secs(60)), Ok(false));
        source.join().expect("source");
    }
}
