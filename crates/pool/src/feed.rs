//! One item of the job source, as the reader thread hands it on.

use crate::job::Job;

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
