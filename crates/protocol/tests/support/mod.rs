//! What the property tests of `callpool-protocol` and `callpool-pool` share
//! (`crates/pool/tests/props.rs` includes this file by path): their
//! configuration, a bound on each case's time and on its memory, and inputs
//! made of random bytes or of valid lines mutated the ways real input goes
//! wrong.
//!
//! `PROPTEST_CASES=N` runs N cases of each property instead of the few CI
//! runs; `bench/fuzz.sh` does that.

#![allow(dead_code, unsafe_code, clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::mpsc::{RecvTimeoutError, channel};
use std::time::Duration;

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};
use proptest::test_runner::Config;

/// The configuration of a property: `default_cases` cases, or
/// `PROPTEST_CASES` when it is set.
pub fn config(default_cases: u32) -> Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    Config {
        cases,
        // A hang costs CASE_LIMIT per shrinking step: give up shrinking
        // after a minute rather than after thousands of them.
        max_shrink_time: 60_000,
        // proptest cannot find where to keep failures of an integration
        // test (it looks for lib.rs); each one found becomes a plain test.
        failure_persistence: None,
        ..Config::default()
    }
}

/// How long one case may run before it counts as a hang. A case takes
/// milliseconds; this is for a loaded two-core machine running every test
/// at once.
pub const CASE_LIMIT: Duration = Duration::from_secs(20);

/// Runs `f` on a thread of its own (with the 2 MiB stack of the
/// supervisor's own threads) and waits for it at most [`CASE_LIMIT`]: a case
/// that takes longer fails as a hang (its thread is left behind). A panic
/// in `f` is the case's failure.
pub fn bounded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = channel();
    let handle = std::thread::Builder::new()
        .stack_size(2 << 20)
        .spawn(move || {
            let _ = tx.send(f());
        })
        .expect("spawn a case thread");
    match rx.recv_timeout(CASE_LIMIT) {
        Ok(v) => {
            let _ = handle.join();
            v
        }
        Err(RecvTimeoutError::Disconnected) => match handle.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the case thread ended without a value"),
        },
        Err(RecvTimeoutError::Timeout) => panic!("the case ran past {CASE_LIMIT:?}: a hang"),
    }
}

/// The global allocator of the property tests: the system's, counting
/// the bytes each thread holds, so that a case can see the most it held at
/// once ([`peak_alloc`]).
pub struct Counting;

#[global_allocator]
static ALLOCATOR: Counting = Counting;

thread_local! {
    static HELD: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(delta: isize) {
    let _ = HELD.try_with(|held| {
        let now = held.get() + delta;
        held.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call goes to the system allocator unchanged; the counting
// touches only const-initialized thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller promised for `layout`.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as the caller promised for `layout`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            note(layout.size() as isize);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as the caller promised for `ptr` and `layout`.
        unsafe { System.dealloc(ptr, layout) };
        note(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as the caller promised for `ptr`, `layout` and `new_size`.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            note(new_size as isize - layout.size() as isize);
        }
        p
    }
}

/// Runs `f` and returns its value with the most heap bytes this thread
/// held at once meanwhile, above what it held before.
pub fn peak_alloc<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = HELD.with(Cell::get);
    PEAK.with(|p| p.set(start));
    let out = f();
    let peak = PEAK.with(Cell::get) - start;
    (out, peak.max(0) as usize)
}

/// One way a line goes wrong.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Cut off here (a write cut short).
    Truncate(Index),
    /// The next `"` doubled (a CSV habit in a JSON file).
    DoubleQuote(Index),
    /// The next number replaced with one no integer or float holds, or
    /// inserted here when none follows.
    HugeNumber(Index, &'static str),
    /// Deep nesting inserted here: `open` repeated.
    Nest(Index, &'static str, usize),
    /// Odd bytes inserted here: NUL, invalid UTF-8, line breaks, escapes.
    Insert(Index, &'static [u8]),
    /// One byte replaced.
    Byte(Index, u8),
    /// Some bytes removed.
    Delete(Index, usize),
    /// Some bytes repeated.
    Repeat(Index, usize),
}

/// Numbers past every limit, and at the edges of the fields that hold them.
pub const HUGE: &[&str] = &[
    "1e400",
    "-1e400",
    "1e-400",
    "99999999999999999999999",
    "-99999999999999999999999",
    "18446744073709551616",
    "4294967296",
    "65536",
    "-1",
    "-0",
    "1.7976931348623157e309",
    "0.0000000000000000000000000000000000000000000000001",
    "1e18446744073709551616",
    "NaN",
];

/// Openings to nest, and how many: up to 10,000 `[`.
pub const NESTS: &[(&str, usize)] = &[
    ("[", 10_000),
    ("{\"a\":", 10_000),
    ("[", 127),
    ("[", 129),
    ("{\"body\":", 200),
];

/// Bytes that break text: NUL, invalid UTF-8 (a lone continuation byte, a
/// cut sequence, an encoded surrogate, an overlong NUL, past U+10FFFF),
/// line breaks, escapes, a byte-order mark, variables.
pub const ODD: &[&[u8]] = &[
    b"\0",
    b"\xff",
    b"\x80",
    b"\xc3",
    b"\xed\xa0\x80",
    b"\xc0\x80",
    b"\xf4\x90\x80\x80",
    b"\n",
    b"\r",
    b"\r\n",
    b"\\u0000",
    b"\\ud800",
    b"\\",
    b"\"",
    b",",
    b"\t",
    b"\xef\xbb\xbf",
    b"${HOME}",
    b"${CALLPOOL_PROPS_UNSET}",
    "\u{2028}".as_bytes(),
];

/// Any one mutation.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        any::<Index>().prop_map(Mutation::DoubleQuote),
        (any::<Index>(), select(HUGE)).prop_map(|(i, n)| Mutation::HugeNumber(i, n)),
        (any::<Index>(), select(NESTS)).prop_map(|(i, (o, n))| Mutation::Nest(i, o, n)),
        (any::<Index>(), select(ODD)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Byte(i, b)),
        (any::<Index>(), 1..40usize).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<Index>(), 1..40usize).prop_map(|(i, n)| Mutation::Repeat(i, n)),
    ]
}

/// `base` with the mutations applied in order.
pub fn apply(base: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut b = base.to_vec();
    for m in mutations {
        let at = |i: &Index, b: &Vec<u8>| i.index(b.len() + 1);
        match m {
            Mutation::Truncate(i) => {
                let n = at(i, &b);
                b.truncate(n);
            }
            Mutation::DoubleQuote(i) => {
                let from = at(i, &b);
                if let Some(q) = b[from..].iter().position(|&c| c == b'"') {
                    b.insert(from + q, b'"');
                }
            }
            Mutation::HugeNumber(i, n) => {
                let from = at(i, &b);
                match b[from..].iter().position(u8::is_ascii_digit) {
                    Some(d) => {
                        let start = from + d;
                        let len = b[start..]
                            .iter()
                            .take_while(|c| c.is_ascii_digit() || b".eE+-".contains(c))
                            .count();
                        b.splice(start..start + len, n.bytes());
                    }
                    None => {
                        b.splice(from..from, n.bytes());
                    }
                }
            }
            Mutation::Nest(i, open, n) => {
                let from = at(i, &b);
                b.splice(from..from, open.repeat(*n).into_bytes());
            }
            Mutation::Insert(i, bytes) => {
                let from = at(i, &b);
                b.splice(from..from, bytes.iter().copied());
            }
            Mutation::Byte(i, byte) => {
                if !b.is_empty() {
                    let n = i.index(b.len());
                    b[n] = *byte;
                }
            }
            Mutation::Delete(i, n) => {
                let from = at(i, &b);
                let to = (from + n).min(b.len());
                b.drain(from..to);
            }
            Mutation::Repeat(i, n) => {
                let from = at(i, &b);
                let to = (from + n).min(b.len());
                let piece = b[from..to].to_vec();
                b.splice(to..to, piece);
            }
        }
    }
    b
}

/// Bytes JSON (and CSV) is made of, to make random text that gets past the
/// first character of a parser more often than random bytes do.
const JSONISH: &[u8] = b"{}[]\":,.-+0123456789eEtrufalsn \t\\/abcxyz\r\n";

/// Input for a line parser: random bytes, random JSON-ish text, or a line
/// of `corpus` with up to four mutations.
pub fn input(corpus: &'static [&'static str]) -> BoxedStrategy<Vec<u8>> {
    prop_oneof![
        1 => vec(any::<u8>(), 0..200),
        1 => vec(select(JSONISH), 0..200),
        6 => (select(corpus), vec(mutation(), 0..4))
            .prop_map(|(line, m)| apply(line.as_bytes(), &m)),
    ]
    .boxed()
}
