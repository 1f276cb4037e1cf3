//! Workers as threads inside the supervisor (`--threads`).
//!
//! A thread worker runs the same job code as a worker process: it reads the
//! same job line, makes its call through a work function (the built-in HTTP
//! worker's, one per thread), and answers with the same result message. Only
//! the transport differs: the job line comes over an in-process channel and
//! the result goes to the loop as an [`Event`] (the loop's eventfd wakes
//! it), so a result is never encoded to JSON and parsed back.
//!
//! What a thread cannot do is be killed: past a deadline the loop abandons
//! it (drops its channel) and starts another; the abandoned thread ends when
//! its call returns and finds the channel closed. A panic is caught here, at
//! the thread's boundary, and reported as the thread's end, so the loop
//! handles it like a crashed process.

use std::any::Any;
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::Instant;

use callpool_protocol::{
    FromWorker, HttpResponse, JobError, JobRequest, PROTOCOL_VERSION, ReadyInfo, ResultMsg,
    ToWorker,
};
use crossbeam_channel::Receiver;

use crate::workers::event::Event;
use crate::workers::poller::EventSender;

/// One thread's job function: makes the call of one request, as a worker
/// process would.
pub type JobFn = Box<dyn FnMut(&JobRequest) -> Result<HttpResponse, JobError> + Send>;

/// What thread workers run: a factory called once at the start of each
/// worker thread (with its slot) that returns that thread's [`JobFn`], or
/// why it cannot start.
#[derive(Clone)]
pub struct ThreadWork {
    name: String,
    start: Arc<dyn Fn(usize) -> Result<JobFn, String> + Send + Sync>,
}

impl ThreadWork {
    /// `name` says what the threads run, for messages ("the built-in HTTP
    /// worker"); `start` makes one thread's job function.
    pub fn new(
        name: impl Into<String>,
        start: impl Fn(usize) -> Result<JobFn, String> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name: name.into(),
            start: Arc::new(start),
        }
    }

    /// What the threads run.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl fmt::Debug for ThreadWork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThreadWork")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

pub use crate::who::ThreadEnd;

/// The body of a worker thread: say ready, answer each job line until the
/// channel closes, and always report how it ended.
pub(crate) fn worker_main(
    id: u64,
    slot: usize,
    work: &ThreadWork,
    jobs: &Receiver<Arc<[u8]>>,
    events: &EventSender,
) {
    let end = match catch_unwind(AssertUnwindSafe(|| serve(id, slot, work, jobs, events))) {
        Ok(Ok(())) => ThreadEnd::Returned,
        Ok(Err(why)) => ThreadEnd::Failed(why),
        Err(payload) => ThreadEnd::Panicked(panic_message(payload.as_ref())),
    };
    events.send(Event::ThreadEnded { id, end });
}

fn serve(
    id: u64,
    slot: usize,
    work: &ThreadWork,
    jobs: &Receiver<Arc<[u8]>>,
    events: &EventSender,
) -> Result<(), String> {
    let mut call = (work.start)(slot)?;
    let ready = FromWorker::Ready(ReadyInfo {
        protocol: PROTOCOL_VERSION,
        worker: Some(work.name.clone()),
        version: Some(env!("CARGO_PKG_VERSION").to_owned()),
    });
    if !events.send(Event::Message { id, msg: Ok(ready) }) {
        return Ok(());
    }
    for line in jobs {
        let trimmed = line.strip_suffix(b"\n").unwrap_or(&line);
        let ToWorker::Job {
            id: job_id,
            request,
            ..
        } = ToWorker::parse(trimmed).map_err(|e| format!("invalid job line: {e}"))?;
        let started = Instant::now();
        let outcome = match &request {
            Some(request) => call(request),
            None => Err(callpool_protocol::ErrorKind::args_unsupported(&work.name)),
        };
        let elapsed_ms = (started.elapsed().as_secs_f64() * 1e6).round() / 1e3;
        let (response, error) = match outcome {
            Ok(r) => (Some(r), None),
            Err(e) => (None, Some(e)),
        };
        let msg = FromWorker::Result(ResultMsg {
            id: job_id,
            response,
            value: None,
            error,
            elapsed_ms: Some(elapsed_ms),
        });
        if !events.send(Event::Message { id, msg: Ok(msg) }) {
            // The loop is gone: the run is over.
            return Ok(());
        }
    }
    Ok(())
}

/// A panic's message: the `&str` or `String` it was raised with.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic without a message".to_owned()
    }
}
