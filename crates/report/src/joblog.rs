//! Reading the joblog (docs/formats.md §3) and the run log line by line,
//! with a bound on a line's length, and what one attempt says.

use std::borrow::Cow;
use std::io::{self, BufRead};

use serde::Deserialize;

/// A line longer than this is no joblog line (the longest real ones carry
/// a message of a few kilobytes): it is skipped, and named, instead of
/// being held in memory.
pub const MAX_LINE: usize = 1024 * 1024;

/// One joblog line as the page needs it; other fields are ignored, so that
/// a joblog of a later version still draws.
#[derive(Debug, Deserialize)]
pub struct Attempt<'a> {
    /// The job.
    #[serde(borrow)]
    pub id: Cow<'a, str>,
    /// The worker slot.
    pub slot: u64,
    /// The worker's pid (the supervisor's with `--threads`).
    #[serde(default)]
    pub pid: i64,
    /// With `--host`.
    #[serde(default, borrow)]
    pub host: Option<Cow<'a, str>>,
    /// RFC 3339.
    #[serde(borrow)]
    pub started_at: Cow<'a, str>,
    /// From start to end.
    pub elapsed_ms: f64,
    /// How it ended.
    #[serde(borrow)]
    pub outcome: Cow<'a, str>,
    /// The HTTP status, when there was an answer.
    #[serde(default)]
    pub status: Option<u16>,
    /// Why it failed.
    #[serde(default, borrow)]
    pub error: Option<AttemptError<'a>>,
    /// Set when another attempt was planned.
    #[serde(default)]
    pub retry_in_ms: Option<f64>,
}

/// `error` of a joblog line.
#[derive(Debug, Deserialize)]
pub struct AttemptError<'a> {
    /// The kind (docs/formats.md §2.1), or a worker's own.
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
    /// In words.
    #[serde(default, borrow)]
    pub message: Option<Cow<'a, str>>,
}

/// How an attempt ended, as the worker timeline colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum End {
    /// A good answer.
    Ok = 0,
    /// Failed, and another attempt was planned.
    Retried = 1,
    /// Failed for good (or left for `--resume` by a stopping run).
    Failed = 2,
    /// The worker broke the protocol and was stopped.
    Protocol = 3,
    /// A thread past its deadline, left to end on its own.
    Abandoned = 4,
    /// The worker was killed at the deadline.
    Killed = 5,
    /// The worker died.
    Crashed = 6,
}

impl End {
    /// Every end, in the order of the legend.
    pub const ALL: [End; 7] = [
        End::Ok,
        End::Retried,
        End::Failed,
        End::Protocol,
        End::Abandoned,
        End::Killed,
        End::Crashed,
    ];

    /// The CSS class and legend word.
    pub fn name(self) -> &'static str {
        match self {
            End::Ok => "ok",
            End::Retried => "retried",
            End::Failed => "failed",
            End::Protocol => "protocol-error",
            End::Abandoned => "abandoned",
            End::Killed => "timeout-kill",
            End::Crashed => "crashed",
        }
    }

    /// From a joblog line; `threads` when the workers were threads (a
    /// timeout then abandons the thread rather than killing a process).
    pub fn of(a: &Attempt<'_>, threads: bool) -> End {
        match a.outcome.as_ref() {
            "ok" => End::Ok,
            "timeout" if threads => End::Abandoned,
            "timeout" => End::Killed,
            "crashed" => End::Crashed,
            "protocol_error" => End::Protocol,
            _ if a.retry_in_ms.is_some() => End::Retried,
            _ => End::Failed,
        }
    }
}

impl Attempt<'_> {
    /// The failure's kind, for an attempt that was not ok.
    pub fn kind(&self) -> Option<&str> {
        if self.outcome == "ok" {
            return None;
        }
        Some(
            self.error
                .as_ref()
                .map_or(self.outcome.as_ref(), |e| e.kind.as_ref()),
        )
    }
}

/// Reads one line (without its newline) into `buf`. Returns `Ok(None)` at
/// the end, `Ok(Some(true))` for a whole line, `Ok(Some(false))` for a
/// last line with no newline (a writer cut short) and for a line longer
/// than [`MAX_LINE`], whose bytes are then skipped and `buf` left empty.
pub fn read_line(r: &mut dyn BufRead, buf: &mut Vec<u8>) -> io::Result<Option<bool>> {
    buf.clear();
    let mut too_long = false;
    loop {
        let chunk = r.fill_buf()?;
        if chunk.is_empty() {
            return Ok(if buf.is_empty() && !too_long {
                None
            } else {
                Some(false)
            });
        }
        let (take, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            if buf.len() + take > MAX_LINE {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        r.consume(take + usize::from(done));
        if done {
            return Ok(Some(!too_long));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_bounded_and_a_cut_last_line_is_told() {
        let long = "x".repeat(MAX_LINE + 5);
        let text = format!("a\n{long}\nb\nc");
        let mut r = io::BufReader::with_capacity(64, text.as_bytes());
        let mut buf = Vec::new();
        let mut got = Vec::new();
        while let Some(whole) = read_line(&mut r, &mut buf).expect("reads") {
            got.push((String::from_utf8_lossy(&buf).into_owned(), whole));
        }
        assert_eq!(
            got,
            [
                ("a".to_string(), true),
                (String::new(), false),
                ("b".to_string(), true),
                ("c".to_string(), false)
            ]
        );
    }

    #[test]
    fn unknown_fields_are_ignored_and_ends_classified() {
        let line = r#"{"id":"a","attempt":1,"slot":0,"pid":9,"started_at":"2026-11-25T10:30:16.412Z","elapsed_ms":3.5,"outcome":"timeout","error":{"kind":"timeout","message":"m","traceback":"t"},"retry_in_ms":0,"future":{"x":1}}"#;
        let a: Attempt<'_> = serde_json::from_str(line).expect("parses");
        assert_eq!(End::of(&a, false), End::Killed);
        assert_eq!(End::of(&a, true), End::Abandoned);
        assert_eq!(a.kind(), Some("timeout"));
    }
}
