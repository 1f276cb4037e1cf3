//! Reading a worker's stdout and stderr from the loop, without threads.
//!
//! Both pipes are non-blocking and watched by the loop's [`Poller`]: when
//! one is readable the loop drains what is there and turns it into
//! [`Event`]s. One loop reading every pipe costs no thread switch per
//! result, which is most of what a result costs on a small machine; the
//! pipes cannot fill up and block a worker as long as the loop turns, and
//! the loop never blocks on them.
//!
//! [`Poller`]: crate::poller::Poller

use std::io::{self, Read};
use std::process::{ChildStderr, ChildStdout};

use callpool_protocol::{FromWorker, MAX_LINE_BYTES};
use nix::unistd::Pid;

use crate::event::Event;

/// Bytes read from one pipe per turn of the loop before the others get
/// their turn: a worker that floods its stdout cannot starve the rest.
const READ_BUDGET: usize = 256 * 1024;

/// Stderr lines longer than this are cut; stderr is for people.
const MAX_STDERR_LINE: usize = 16 * 1024;

/// Whether a pipe has more to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeState {
    /// Still open: read again when it is readable.
    Open,
    /// End of file, or a read error: the pipe is done.
    Closed,
}

/// Bytes read from a pipe and not yet consumed: `data[start..end]`.
/// `data` stays zero-initialized past `end`, so reading into it needs no
/// clearing and no unsafe code; it grows only for a line longer than any
/// before it.
#[derive(Debug)]
struct InBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

impl InBuf {
    fn new() -> Self {
        Self {
            data: vec![0; 16 * 1024],
            start: 0,
            end: 0,
        }
    }

    fn pending(&self) -> &[u8] {
        &self.data[self.start..self.end]
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads as much as is there (up to [`READ_BUDGET`]).
    fn fill(&mut self, pipe: &mut impl Read) -> PipeState {
        let mut got = 0;
        while got < READ_BUDGET {
            if self.data.len() - self.end < 4096 {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if self.data.len() - self.end < 4096 {
                    self.data.resize(self.data.len() * 2, 0);
                }
            }
            let room = self.data.len() - self.end;
            match pipe.read(&mut self.data[self.end..]) {
                Ok(0) => return PipeState::Closed,
                Ok(n) => {
                    self.end += n;
                    got += n;
                    if n < room {
                        // Short read: the pipe is empty now. This saves the
                        // read that would only say so (EAGAIN); readiness
                        // brings the loop back.
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => return PipeState::Closed,
            }
        }
        PipeState::Open
    }
}

/// A worker's stdout: frames protocol lines and parses them.
#[derive(Debug)]
pub struct StdoutPipe {
    pipe: ChildStdout,
    buf: InBuf,
    /// How many pending bytes are known to hold no newline, so that a long
    /// line arriving in many reads is searched once, not once per read.
    scanned: usize,
    /// A protocol error was reported; nothing more is read.
    broken: bool,
}

impl StdoutPipe {
    /// Wraps a non-blocking pipe.
    pub fn new(pipe: ChildStdout) -> Self {
        Self {
            pipe,
            buf: InBuf::new(),
            scanned: 0,
            broken: false,
        }
    }

    /// The pipe, to watch it.
    pub fn fd(&self) -> &ChildStdout {
        &self.pipe
    }

    /// Reads what the worker wrote and pushes one [`Event::Message`] per
    /// complete line onto `out` (a line that is not a message, or longer
    /// than [`MAX_LINE_BYTES`] with its newline, is reported as such, and
    /// is the last thing read); at end of file a last line without newline
    /// counts.
    pub fn drain(&mut self, id: u64, out: &mut Vec<Event>) -> PipeState {
        if self.broken {
            return PipeState::Closed;
        }
        let state = self.buf.fill(&mut self.pipe);
        while let Some(pos) = self.buf.pending()[self.scanned..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| p + self.scanned)
        {
            self.scanned = 0;
            if pos + 1 > MAX_LINE_BYTES {
                let why = format!("stdout: line longer than {MAX_LINE_BYTES} bytes");
                self.push(id, Err(why), out);
                return PipeState::Closed;
            }
            let line = &self.buf.pending()[..pos];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let msg = (!line.is_empty()).then(|| line_message(line));
            self.buf.consume(pos + 1);
            if let Some(msg) = msg
                && !self.push(id, msg, out)
            {
                return PipeState::Closed;
            }
        }
        let rest = self.buf.pending().len();
        self.scanned = rest;
        if rest > MAX_LINE_BYTES {
            let why = format!("stdout: line longer than {MAX_LINE_BYTES} bytes");
            self.push(id, Err(why), out);
            return PipeState::Closed;
        }
        if state == PipeState::Closed && rest > 0 {
            let msg = line_message(self.buf.pending());
            self.buf.consume(rest);
            self.scanned = 0;
            self.push(id, msg, out);
        }
        state
    }

    fn push(&mut self, id: u64, msg: Result<FromWorker, String>, out: &mut Vec<Event>) -> bool {
        self.broken = msg.is_err();
        out.push(Event::Message { id, msg });
        !self.broken
    }
}

fn line_message(line: &[u8]) -> Result<FromWorker, String> {
    FromWorker::parse(line).map_err(|e| {
        format!(
            "wrote a stdout line that is not a protocol message ({e}): {:?}",
            preview(line)
        )
    })
}

/// A worker's stderr: passed on line by line; a "line" without newline
/// longer than [`MAX_STDERR_LINE`] is passed on in pieces.
#[derive(Debug)]
pub struct StderrPipe {
    pipe: ChildStderr,
    buf: InBuf,
}

impl StderrPipe {
    /// Wraps a non-blocking pipe.
    pub fn new(pipe: ChildStderr) -> Self {
        Self {
            pipe,
            buf: InBuf::new(),
        }
    }

    /// The pipe, to watch it.
    pub fn fd(&self) -> &ChildStderr {
        &self.pipe
    }

    /// Reads what is there and pushes one [`Event::Stderr`] per line.
    pub fn drain(&mut self, id: u64, pid: Pid, out: &mut Vec<Event>) -> PipeState {
        let state = self.buf.fill(&mut self.pipe);
        let send = |bytes: &[u8], out: &mut Vec<Event>| {
            let bytes = bytes.strip_suffix(b"\r").unwrap_or(bytes);
            // Blank lines say nothing (and the remote wrapper's probes of
            // its session are blank lines).
            if bytes.iter().all(u8::is_ascii_whitespace) {
                return;
            }
            let line = String::from_utf8_lossy(bytes).into_owned();
            out.push(Event::Stderr { id, pid, line });
        };
        loop {
            let pending = self.buf.pending();
            // Look for the newline only as far as a line may go, so that a
            // longer line is cut however it arrived.
            let window = &pending[..pending.len().min(MAX_STDERR_LINE + 1)];
            let n = match window.iter().position(|&b| b == b'\n') {
                Some(pos) => {
                    send(&pending[..pos], out);
                    pos + 1
                }
                None if pending.len() >= MAX_STDERR_LINE => {
                    send(&pending[..MAX_STDERR_LINE], out);
                    MAX_STDERR_LINE
                }
                None if state == PipeState::Closed && !pending.is_empty() => {
                    send(pending, out);
                    pending.len()
                }
                None => break,
            };
            self.buf.consume(n);
        }
        state
    }
}

/// The start of a line, for error messages about it.
fn preview(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(&line[..line.len().min(120)]);
    if line.len() > 120 {
        format!("{text}...")
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::OwnedFd;

    use super::*;

    /// A real pipe: the read end as a child's stdout/stderr, the write end.
    fn pipe() -> (OwnedFd, std::fs::File) {
        let (r, w) = nix::unistd::pipe().expect("pipe");
        nix::fcntl::fcntl(
            &r,
            nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
        )
        .expect("non-blocking");
        (r, std::fs::File::from(w))
    }

    fn messages(events: &[Event]) -> Vec<Result<String, String>> {
        events
            .iter()
            .map(|e| match e {
                Event::Message {
                    msg: Ok(FromWorker::Result(r)),
                    ..
                } => Ok(r.id.clone()),
                Event::Message {
                    msg: Ok(FromWorker::Ready(_)),
                    ..
                } => Ok("ready".into()),
                Event::Message { msg: Err(e), .. } => Err(e.clone()),
                other => Err(format!("unexpected {other:?}")),
            })
            .collect()
    }

    #[test]
    fn stdout_lines_split_across_reads_and_a_last_line_without_newline() {
        let (r, mut w) = pipe();
        let mut p = StdoutPipe::new(ChildStdout::from(r));
        let mut out = Vec::new();
        w.write_all(b"{\"type\":\"ready\",\"protocol\":1}\r\n\n{\"type\":\"result\",\"id\":\"a\"")
            .expect("write");
        assert_eq!(p.drain(1, &mut out), PipeState::Open);
        assert_eq!(messages(&out), vec![Ok("ready".to_string())]);
        w.write_all(
            b",\"error\":{\"kind\":\"io\",\"message\":\"m\"}}\n{\"type\":\"result\",\"id\":\"b\"}",
        )
        .expect("write");
        drop(w);
        out.clear();
        // A short read returns before end of file is seen; the loop comes
        // back because the pipe stays readable (hung up) until it is.
        let mut state = PipeState::Open;
        for _ in 0..3 {
            state = p.drain(1, &mut out);
            if state == PipeState::Closed {
                break;
            }
        }
        assert_eq!(state, PipeState::Closed);
        assert_eq!(
            messages(&out),
            vec![Ok("a".to_string()), Ok("b".to_string())]
        );
    }

    #[test]
    fn a_line_that_is_not_a_message_ends_the_stream() {
        let (r, mut w) = pipe();
        let mut p = StdoutPipe::new(ChildStdout::from(r));
        let mut out = Vec::new();
        w.write_all(b"hello\n{\"type\":\"ready\",\"protocol\":1}\n")
            .expect("write");
        assert_eq!(p.drain(7, &mut out), PipeState::Closed);
        let got = messages(&out);
        assert_eq!(got.len(), 1, "{got:?}");
        assert!(
            matches!(&got[0], Err(e) if e.contains("\"hello\"")),
            "{got:?}"
        );
        // Nothing more is read after it.
        assert_eq!(p.drain(7, &mut out), PipeState::Closed);
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn stderr_long_lines_come_in_pieces_and_the_tail_at_eof() {
        let (r, mut w) = pipe();
        let mut p = StderrPipe::new(ChildStderr::from(r));
        let mut out = Vec::new();
        let long = vec![b'x'; MAX_STDERR_LINE + 10];
        w.write_all(b"one\r\n").expect("write");
        w.write_all(&long).expect("write");
        w.write_all(b"\ntail").expect("write");
        drop(w);
        let mut state = PipeState::Open;
        for _ in 0..10 {
            state = p.drain(3, Pid::from_raw(42), &mut out);
            if state == PipeState::Closed {
                break;
            }
        }
        assert_eq!(state, PipeState::Closed);
        let lines: Vec<usize> = out
            .iter()
            .map(|e| match e {
                Event::Stderr { line, .. } => line.len(),
                _ => usize::MAX,
            })
            .collect();
        assert_eq!(lines, vec![3, MAX_STDERR_LINE, 10, 4]);
    }
}
