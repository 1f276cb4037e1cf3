//! Everything that can happen to the supervisor, as one enum. The loop
//! makes the worker events itself when it reads their pipes, and receives
//! the others (signals, failed result writes) from their threads; nothing
//! else touches its state.

use callpool_protocol::FromWorker;
use nix::unistd::Pid;

use crate::who::ThreadEnd;

/// One thing that happened, for the supervisor's loop to handle.
#[derive(Debug)]
pub enum Event {
    /// A worker wrote a line on stdout: a message, or why the line is not
    /// one (a protocol error).
    Message {
        /// The worker's id (unique in the run, never reused).
        id: u64,
        /// The parsed message, or what is wrong with the line.
        msg: Result<FromWorker, String>,
    },
    /// A worker's stdout reached end of file (it exited or closed it).
    StdoutClosed {
        /// The worker's id.
        id: u64,
    },
    /// A worker wrote a line on stderr.
    Stderr {
        /// The worker's id.
        id: u64,
        /// Its pid, so the line can be attributed even after it is gone.
        pid: Pid,
        /// The line, without its newline.
        line: String,
    },
    /// A worker thread ended (it returned, failed or panicked).
    ThreadEnded {
        /// The worker's id.
        id: u64,
        /// How it ended.
        end: ThreadEnd,
    },
    /// A writer thread could not write a result file.
    WriteFailed {
        /// The job whose result was lost.
        id: String,
        /// What failed.
        error: std::io::Error,
    },
    /// A signal reached the supervisor (INT, TERM, HUP, USR1, TTIN, TTOU,
    /// CHLD); the handler only enqueues it.
    Signal(i32),
}
