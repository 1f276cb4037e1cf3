//! Property tests of what a worker's stdout goes through on the
//! supervisor's side, and of the framer both sides use: random bytes and
//! mutated valid lines never panic, hang or allocate without bound.
//! `PROPTEST_CASES=N` runs more cases (`bench/fuzz.sh`).

mod support;

use std::io::{self, BufRead, Read};

use callpool_protocol::{FromWorker, LineReader, ReadLineError};
use proptest::prelude::*;
use support::{bounded, config, input, peak_alloc};

/// Valid worker messages, to mutate.
const MESSAGES: &[&str] = &[
    r#"{"type":"ready","protocol":1}"#,
    r#"{"type":"ready","protocol":1,"worker":"http-worker","version":"0.1.0"}"#,
    r#"{"type":"result","id":"job-00001","response":{"status":200,"headers":{"content-type":"application/json"},"body_kind":"json","body":{"results":[{"formatted_address":"New York, NY, USA","geometry":{"location":{"lat":40.7128,"lng":-74.006}}}],"status":"OK"}},"elapsed_ms":2.59}"#,
    r#"{"type":"result","id":"a","response":{"status":503,"headers":{"retry-after":"2"},"body_kind":"text","body":"busy \"now\"\n"}}"#,
    r#"{"type":"result","id":"b","error":{"kind":"connect","message":"[Errno 111] Connection refused"},"elapsed_ms":1}"#,
    r#"{"type":"result","id":"c","error":{"kind":"a_kind_of_its_own","message":"x"},"extra":[1,{"k":null}]}"#,
    r#"{"type":"result","id":"d","response":{"status":200,"body":[1.5e3,-0,true,null,"\u00e9\ud83d\ude00"]}}"#,
];

/// What lines are joined with: newlines, CRLF, blank lines, nothing.
const JOINERS: &[&[u8]] = &[b"\n", b"\r\n", b"\n\n", b""];

/// How much a decoder may hold for an input of `len` bytes.
fn decode_budget(len: usize) -> usize {
    16 * len + 64 * 1024
}

proptest! {
    #![proptest_config(config(512))]

    /// Any line: a message or an error that says why, in bounded time and
    /// memory; a message encodes to a line that decodes to the same
    /// message.
    #[test]
    fn worker_message_decoder(line in input(MESSAGES)) {
        let len = line.len();
        let (decoded, again, peak) = bounded(move || {
            let (decoded, peak) =
                peak_alloc(|| FromWorker::parse(&line).map_err(|e| e.to_string()));
            match decoded {
                Ok(m) => {
                    let text = serde_json::to_vec(&m).expect("a decoded message encodes");
                    let again = FromWorker::parse(&text).map(canon).map_err(|e| e.to_string());
                    (Ok(canon(m)), Some(again), peak)
                }
                Err(e) => (Err(e), None, peak),
            }
        });
        prop_assert!(peak <= decode_budget(len), "{} bytes held for a {}-byte line", peak, len);
        match (&decoded, again) {
            (Ok(_), Some(again)) => prop_assert_eq!(again, decoded),
            (Err(e), _) => prop_assert!(!e.is_empty()),
            (Ok(_), None) => unreachable!(),
        }
    }

    /// Random framing: lines exactly as the model says, a line longer
    /// than the limit refused (and nothing more read), never more held
    /// than about the limit, whatever the chunks the input comes in.
    #[test]
    fn line_reader_frames_with_a_limit(
        text in proptest::collection::vec(input(MESSAGES), 0..6),
        joiner in prop::sample::select(JOINERS),
        trailing_newline in any::<bool>(),
        limit in 1usize..400,
        step in 1usize..64,
    ) {
        let mut bytes = text.join(joiner);
        if trailing_newline {
            bytes.push(b'\n');
        }
        let want = model_lines(&bytes, limit);
        let (got, peak) = bounded(move || {
            peak_alloc(|| {
                let mut reader = LineReader::new(Chunked { data: &bytes, pos: 0, step }, limit);
                let mut got = Vec::new();
                // Each call consumes input or ends: more calls than bytes
                // would be a loop.
                for _ in 0..=bytes.len() + 1 {
                    match reader.read_line() {
                        Ok(Some(line)) => got.push(Ok(line.to_vec())),
                        Ok(None) => return Ok(got),
                        Err(ReadLineError::TooLong { limit: l }) => {
                            got.push(Err(l));
                            return Ok(got);
                        }
                        Err(e) => return Err(e.to_string()),
                    }
                }
                Err("read_line never reached the end".to_string())
            })
        });
        let got = got.map_err(TestCaseError::fail)?;
        prop_assert_eq!(&got, &want);
        // The reader's own buffer (4 KiB, or up to twice the limit); the
        // lines collected are counted too.
        let collected: usize = got.iter().map(|l| l.as_ref().map_or(0, Vec::len) + 64).sum();
        prop_assert!(
            peak <= 4096.max(2 * limit) + 2 * collected + 4096,
            "{} bytes held with a limit of {}", peak, limit
        );
    }
}

/// A message as text to compare, with `elapsed_ms` to 12 digits:
/// serde_json reads a float to within a unit in the last place (without
/// its `float_roundtrip` feature), so a time may come back one ulp off.
fn canon(m: FromWorker) -> String {
    match m {
        FromWorker::Result(mut r) => {
            let ms = r.elapsed_ms.take().map(|t| format!("{t:.12e}"));
            format!("{r:?} {ms:?}")
        }
        other => format!("{other:?}"),
    }
}

/// What [`LineReader`] should make of `bytes`: each line without its `\n`
/// (and a `\r` before it), a last line without newline as a line, and a
/// line longer than `limit` bytes, newline included, refused as the end.
fn model_lines(bytes: &[u8], limit: usize) -> Vec<Result<Vec<u8>, usize>> {
    let mut out = Vec::new();
    let mut rest = bytes;
    while !rest.is_empty() {
        let (line, len) = match rest.iter().position(|&b| b == b'\n') {
            Some(i) => {
                let line = &rest[..i];
                (line.strip_suffix(b"\r").unwrap_or(line), i + 1)
            }
            None => (rest, rest.len()),
        };
        if len > limit {
            out.push(Err(limit));
            return out;
        }
        out.push(Ok(line.to_vec()));
        rest = &rest[len..];
    }
    out
}

/// A reader that gives at most `step` bytes at a time, as a pipe does.
struct Chunked<'a> {
    data: &'a [u8],
    pos: usize,
    step: usize,
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.fill_buf()?.len().min(buf.len());
        buf[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
        self.consume(n);
        Ok(n)
    }
}

impl BufRead for Chunked<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        let end = (self.pos + self.step).min(self.data.len());
        Ok(&self.data[self.pos..end])
    }
    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

/// Seeds and edges, as plain tests.
#[test]
fn deep_nesting_and_huge_numbers_are_refused_not_a_crash() {
    let deep = format!(
        r#"{{"type":"result","id":"x","response":{{"status":200,"body":{}}}}}"#,
        "[".repeat(10_000)
    );
    let err = bounded(move || FromWorker::parse(deep.as_bytes()).map(|_| ()))
        .expect_err("10,000 levels of nesting");
    assert!(err.to_string().contains("not a valid message"), "{err}");
    for n in ["1e400", "99999999999999999999999", "65536", "-1"] {
        let line = format!(r#"{{"type":"result","id":"x","response":{{"status":{n},"body":""}}}}"#);
        assert!(FromWorker::parse(line.as_bytes()).is_err(), "status {n}");
    }
    // A body may hold any number JSON allows, and keeps it as written.
    let line = br#"{"type":"result","id":"x","response":{"status":200,"body":[1e400,99999999999999999999999]}}"#;
    let FromWorker::Result(r) = FromWorker::parse(line).expect("a body holds any JSON") else {
        panic!("not a result")
    };
    assert_eq!(
        r.response.expect("response").body.get(),
        "[1e400,99999999999999999999999]"
    );
}

#[test]
fn the_allocation_counter_counts() {
    let (v, peak) = peak_alloc(|| vec![1u8; 1 << 20]);
    assert!(peak >= v.len(), "{peak}");
    let ((), peak) = peak_alloc(|| drop(v));
    assert_eq!(peak, 0);
}
