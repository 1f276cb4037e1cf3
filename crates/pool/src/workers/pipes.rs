//! Reading a worker's stdout and stderr from the loop, without threads.
//!
//! Both pipes are non-blocking and watched by the loop's [`Poller`]: when
//! one is readable the loop drains what is there and turns it into
//! [`Event`]s. One loop reading every pipe costs no thread switch per
//! result, which is most of what a result costs on a small machine; the
//! pipes cannot fill up and block a worker as long as the loop turns, and
//! the loop never blocks on them.
//!
//! [`Poller`]: crate::workers::poller::Poller

use std::io::{self, Read};
use std::process::{ChildStderr, ChildStdout};
use std::sync::{Arc, Mutex, PoisonError};

use callpool_protocol::{FromWorker, MAX_LINE_BYTES};
use nix::unistd::Pid;

use crate::workers::event::Event;

/// Bytes read from one pipe per turn of the loop before the others get
/// their turn: a worker that floods its stdout cannot starve the rest.
const READ_BUDGET: usize = 256 * 1024;

/// Stderr lines longer than this are cut; stderr is for people.
const MAX_STDERR_LINE: usize = 16 * 1024;

/// The most a worker's stderr buffer holds: two cut lines' worth.
const STDERR_BUFFER: usize = 2 * MAX_STDERR_LINE;

/// The most a worker's stdout buffer holds without the long-line turn
/// ([`LongLines`]): a line up to this long, newline included, is read as
/// soon as it comes; a longer one waits for the turn.
pub const SHORT_LINE: usize = 64 * 1024;

/// A buffer starts this big, and goes back to it after a long line.
const INITIAL_BUFFER: usize = 16 * 1024;

/// Whether a pipe has more to give.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PipeState {
    /// Still open: read again when it is readable.
    Open,
    /// Its pending line is longer than [`SHORT_LINE`] and another worker
    /// has the long-line turn: stop watching the pipe until
    /// [`LongLines::woken`] names it (the worker blocks on its full pipe
    /// meanwhile).
    Paused,
    /// End of file, or a read error: the pipe is done.
    Closed,
}

/// The one turn, shared by every worker of a run, to hold a stdout line
/// longer than [`SHORT_LINE`] (up to [`MAX_LINE_BYTES`]): with W workers
/// the supervisor's stdout buffers hold at most W x [`SHORT_LINE`] plus one
/// line of [`MAX_LINE_BYTES`], whatever the workers write. Workers that
/// need the turn while another has it wait, unread, and are woken when it
/// is free; the one with the turn always makes progress (its line ends,
/// grows past the limit and is a protocol error, or its worker is stopped
/// at its deadline), so the wait ends.
#[derive(Debug, Default)]
pub struct LongLines {
    taken: bool,
    waiting: Vec<u64>,
    woken: Vec<u64>,
}

/// A run's [`LongLines`], shared by its stdout pipes.
pub type SharedLongLines = Arc<Mutex<LongLines>>;

impl LongLines {
    /// A new turn, free.
    pub fn shared() -> SharedLongLines {
        Arc::default()
    }

    /// The workers whose pipes were paused and may now take the turn:
    /// watch them again (the first to read takes it, the others pause
    /// again).
    pub fn woken(lines: &SharedLongLines) -> Vec<u64> {
        std::mem::take(&mut lock(lines).woken)
    }
}

fn lock(lines: &SharedLongLines) -> std::sync::MutexGuard<'_, LongLines> {
    lines.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Bytes read from a pipe and not yet consumed: `data[start..end]`.
/// `data` stays zero-initialized past `end`, so reading into it needs no
/// clearing and no unsafe code; it grows only for a line longer than any
/// before it, never past what its reader allows, and shrinks back after
/// a long line.
#[derive(Debug)]
struct InBuf {
    data: Vec<u8>,
    start: usize,
    end: usize,
}

/// What one [`InBuf::fill`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Filled {
    /// The pipe is empty for now.
    Drained,
    /// It stopped at the buffer's limit or the read budget: there may be
    /// more.
    Stopped,
    /// End of file, or a read error.
    Closed,
}

impl InBuf {
    fn new() -> Self {
        Self {
            data: vec![0; INITIAL_BUFFER],
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

    /// Gives back the memory a long line took, once fewer than `keep`
    /// bytes are pending.
    fn shrink(&mut self, keep: usize) {
        if self.data.len() > keep && self.end - self.start < keep {
            let mut data = vec![0; INITIAL_BUFFER.max(self.end - self.start)];
            data[..self.end - self.start].copy_from_slice(self.pending());
            self.end -= self.start;
            self.start = 0;
            self.data = data;
        }
    }

    /// Reads what is there, up to `budget` bytes and until `limit` bytes
    /// are pending.
    fn fill(&mut self, pipe: &mut impl Read, limit: usize, budget: usize) -> Filled {
        let mut got = 0;
        while got < budget && self.end - self.start < limit {
            let want = limit - (self.end - self.start);
            if self.data.len() - self.end < want.min(4096) {
                self.data.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
                if self.data.len() - self.end < want.min(4096) {
                    let len = (self.data.len() * 2)
                        .min(limit)
                        .max(self.end + want.min(4096));
                    self.data.resize(len, 0);
                }
            }
            let stop = self.data.len().min(self.start + limit);
            let room = stop - self.end;
            match pipe.read(&mut self.data[self.end..stop]) {
                Ok(0) => return Filled::Closed,
                Ok(n) => {
                    self.end += n;
                    got += n;
                    if n < room {
                        // Short read: the pipe is empty now. This saves the
                        // read that would only say so (EAGAIN); readiness
                        // brings the loop back.
                        return Filled::Drained;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Filled::Drained,
                Err(_) => return Filled::Closed,
            }
        }
        Filled::Stopped
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
    /// The run's long-line turn, and whether this pipe has it.
    long: SharedLongLines,
    has_turn: bool,
}

impl StdoutPipe {
    /// Wraps a non-blocking pipe, with a long-line turn of its own.
    pub fn new(pipe: ChildStdout) -> Self {
        Self::sharing(pipe, LongLines::shared())
    }

    /// Wraps a non-blocking pipe that shares the run's long-line turn.
    pub fn sharing(pipe: ChildStdout, long: SharedLongLines) -> Self {
        Self {
            pipe,
            buf: InBuf::new(),
            scanned: 0,
            broken: false,
            long,
            has_turn: false,
        }
    }

    /// Bytes of a line read and not yet complete.
    pub fn pending(&self) -> usize {
        self.buf.pending().len()
    }

    /// The pipe, to watch it.
    pub fn fd(&self) -> &ChildStdout {
        &self.pipe
    }

    /// Reads what the worker wrote and pushes one [`Event::Message`] per
    /// complete line onto `out` (a line that is not a message, or longer
    /// than [`MAX_LINE_BYTES`] with its newline, is reported as such, and
    /// is the last thing read); at end of file a last line without newline
    /// counts. A line longer than [`SHORT_LINE`] is read only with the
    /// long-line turn: without it the pipe is [`PipeState::Paused`].
    pub fn drain(&mut self, id: u64, out: &mut Vec<Event>) -> PipeState {
        if self.broken {
            return PipeState::Closed;
        }
        let mut budget = READ_BUDGET;
        loop {
            let limit = if self.has_turn {
                MAX_LINE_BYTES + 1
            } else {
                SHORT_LINE
            };
            let before = self.buf.pending().len();
            let filled = self.buf.fill(&mut self.pipe, limit, budget);
            budget = budget.saturating_sub(self.buf.pending().len() - before);
            if !self.frame(id, out) {
                return PipeState::Closed;
            }
            let rest = self.buf.pending().len();
            if filled == Filled::Closed {
                if rest > 0 {
                    let msg = line_message(self.buf.pending());
                    self.buf.consume(rest);
                    self.scanned = 0;
                    self.push(id, msg, out);
                }
                return PipeState::Closed;
            }
            if self.has_turn && rest < SHORT_LINE {
                // The long line is done: give back the turn and its memory.
                self.release();
                self.buf.shrink(SHORT_LINE);
            }
            if !self.has_turn && rest >= SHORT_LINE {
                let mut long = lock(&self.long);
                if long.taken {
                    if !long.waiting.contains(&id) {
                        long.waiting.push(id);
                    }
                    return PipeState::Paused;
                }
                long.taken = true;
                self.has_turn = true;
                continue;
            }
            if filled == Filled::Drained || budget == 0 {
                return PipeState::Open;
            }
        }
    }

    /// Handles the complete lines pending; false once the stream is broken.
    fn frame(&mut self, id: u64, out: &mut Vec<Event>) -> bool {
        while let Some(pos) = self.buf.pending()[self.scanned..]
            .iter()
            .position(|&b| b == b'\n')
            .map(|p| p + self.scanned)
        {
            self.scanned = 0;
            if pos + 1 > MAX_LINE_BYTES {
                return self.too_long(id, out);
            }
            let line = &self.buf.pending()[..pos];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let msg = (!line.is_empty()).then(|| line_message(line));
            self.buf.consume(pos + 1);
            if let Some(msg) = msg
                && !self.push(id, msg, out)
            {
                return false;
            }
        }
        self.scanned = self.buf.pending().len();
        if self.scanned > MAX_LINE_BYTES {
            return self.too_long(id, out);
        }
        true
    }

    fn too_long(&mut self, id: u64, out: &mut Vec<Event>) -> bool {
        let why = format!("stdout: line longer than {MAX_LINE_BYTES} bytes");
        self.push(id, Err(why), out);
        false
    }

    fn push(&mut self, id: u64, msg: Result<FromWorker, String>, out: &mut Vec<Event>) -> bool {
        self.broken = msg.is_err();
        if self.broken {
            // Nothing more is read: the line's memory goes now, not when
            // the worker is gone.
            self.release();
            self.buf = InBuf::new();
            self.scanned = 0;
        }
        out.push(Event::Message { id, msg });
        !self.broken
    }

    fn release(&mut self) {
        if std::mem::take(&mut self.has_turn) {
            let mut long = lock(&self.long);
            long.taken = false;
            let waiting = std::mem::take(&mut long.waiting);
            long.woken.extend(waiting);
        }
    }
}

impl Drop for StdoutPipe {
    fn drop(&mut self) {
        self.release();
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
        let mut budget = READ_BUDGET;
        loop {
            let before = self.buf.pending().len();
            let filled = self.buf.fill(&mut self.pipe, STDERR_BUFFER, budget);
            budget = budget.saturating_sub(self.buf.pending().len() - before);
            let closed = filled == Filled::Closed;
            loop {
                let pending = self.buf.pending();
                // Look for the newline only as far as a line may go, so
                // that a longer line is cut however it arrived.
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
                    None if closed && !pending.is_empty() => {
                        send(pending, out);
                        pending.len()
                    }
                    None => break,
                };
                self.buf.consume(n);
            }
            match filled {
                Filled::Closed => return PipeState::Closed,
                Filled::Drained => return PipeState::Open,
                Filled::Stopped if budget == 0 => return PipeState::Open,
                Filled::Stopped => {}
            }
        }
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

    /// A blocking writer of one `ready` line `len` bytes long: its first
    /// `head` bytes at once, the rest when told.
    fn long_ready(len: usize, head: usize) -> (OwnedFd, std::sync::mpsc::Sender<()>) {
        let (r, w) = pipe();
        let start = br#"{"type":"ready","protocol":1,"worker":""#;
        let mut line = start.to_vec();
        line.resize(len - 3, b'x');
        line.extend_from_slice(b"\"}\n");
        let (go, wait) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut w = w;
            let _ = w.write_all(&line[..head]);
            if wait.recv().is_ok() {
                let _ = w.write_all(&line[head..]);
            }
            let _ = wait.recv();
        });
        (r, go)
    }

    /// Drains until `done` says so (bounded).
    fn drain_until(
        p: &mut StdoutPipe,
        id: u64,
        out: &mut Vec<Event>,
        mut done: impl FnMut(&StdoutPipe, PipeState, &[Event]) -> bool,
    ) {
        let t0 = std::time::Instant::now();
        loop {
            let state = p.drain(id, out);
            if done(p, state, out) {
                return;
            }
            assert!(t0.elapsed() < std::time::Duration::from_secs(10), "stuck");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    #[test]
    fn one_long_line_at_a_time_the_others_wait_unread() {
        let long = LongLines::shared();
        let (r1, go1) = long_ready(300 * 1024, 100 * 1024);
        let (r2, go2) = long_ready(200 * 1024, 100 * 1024);
        let mut p1 = StdoutPipe::sharing(ChildStdout::from(r1), long.clone());
        let mut p2 = StdoutPipe::sharing(ChildStdout::from(r2), long.clone());
        let (mut out1, mut out2) = (Vec::new(), Vec::new());
        // The first past SHORT_LINE takes the turn and reads on.
        drain_until(&mut p1, 1, &mut out1, |p, _, _| p.pending() == 100 * 1024);
        // The second stops at SHORT_LINE and waits.
        drain_until(&mut p2, 2, &mut out2, |_, s, _| s == PipeState::Paused);
        assert_eq!(p2.pending(), SHORT_LINE);
        assert!(LongLines::woken(&long).is_empty());
        go1.send(()).expect("writer 1");
        drain_until(&mut p1, 1, &mut out1, |_, _, out| !out.is_empty());
        assert_eq!(messages(&out1), vec![Ok("ready".to_string())]);
        // Its buffer went back to its first size, and the turn to the
        // waiting pipe.
        assert_eq!(p1.buf.data.len(), INITIAL_BUFFER);
        assert_eq!(LongLines::woken(&long), vec![2]);
        go2.send(()).expect("writer 2");
        drain_until(&mut p2, 2, &mut out2, |_, _, out| !out.is_empty());
        assert_eq!(messages(&out2), vec![Ok("ready".to_string())]);
        assert!(!lock(&long).taken);
    }

    #[test]
    fn a_pipe_dropped_with_the_turn_gives_it_back() {
        let long = LongLines::shared();
        let (r1, _go1) = long_ready(300 * 1024, 100 * 1024);
        let (r2, _go2) = long_ready(300 * 1024, 100 * 1024);
        let mut p1 = StdoutPipe::sharing(ChildStdout::from(r1), long.clone());
        let mut p2 = StdoutPipe::sharing(ChildStdout::from(r2), long.clone());
        let (mut out1, mut out2) = (Vec::new(), Vec::new());
        drain_until(&mut p1, 1, &mut out1, |p, _, _| p.pending() == 100 * 1024);
        drain_until(&mut p2, 2, &mut out2, |_, s, _| s == PipeState::Paused);
        drop(p1);
        assert_eq!(LongLines::woken(&long), vec![2]);
        drain_until(&mut p2, 2, &mut out2, |p, _, _| p.pending() == 100 * 1024);
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
