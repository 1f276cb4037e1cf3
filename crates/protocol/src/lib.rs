//! The callpool worker protocol, version 1.
//!
//! A worker is any program that reads job lines on its stdin and writes one
//! result line per job on its stdout. Every line is one JSON object with a
//! `"type"` field (an internally tagged enum; never untagged, so that a typo
//! is an error and not a silently different message). `docs/protocol.md` is
//! the human-readable version of this module.
//!
//! Messages from the supervisor to a worker are [`ToWorker`]; messages from a
//! worker to the supervisor are [`FromWorker`]. [`LineReader`] frames a byte
//! stream into lines with a size limit, so that a worker (or a supervisor) can
//! never be made to buffer an unbounded line.

mod framing;
mod kind;
mod messages;

pub use framing::{LineReader, ReadLineError};
pub use kind::ErrorKind;
pub use messages::{
    BodyKind, FromWorker, HttpResponse, JobError, JobRequest, ParseError, ReadyInfo, ResultMsg,
    ResultOutcome, ToWorker, WorkerResultError, present,
};

/// The protocol version this crate speaks; a worker announces it in its
/// `ready` line and the supervisor refuses a worker that announces another.
pub const PROTOCOL_VERSION: u32 = 1;

/// The longest line either side may write, newline included: 64 MiB.
///
/// It is far above the HTTP worker's default body limit (16 MiB) so that
/// JSON escaping of a large body still fits; a longer line is a protocol
/// error and the worker that wrote it is replaced.
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;
