//! Jobs files in other text encodings than UTF-8 (`--encoding`): what
//! Excel writes when it saves "CSV" in Western Europe is Windows-1252, not
//! UTF-8. The file is decoded to UTF-8 as it is read, a buffer at a time,
//! so that a file of any size is never held in memory.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use encoding_rs::{CoderResult, Decoder, Encoding};

/// A text encoding a jobs file is written in (`--encoding NAME`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextEncoding(&'static Encoding);

impl TextEncoding {
    /// UTF-8, the default.
    pub const UTF_8: TextEncoding = TextEncoding(encoding_rs::UTF_8);

    /// The encoding a label names: any WHATWG label, in any case
    /// (`windows-1252`, `cp1252`, `latin1`, `iso-8859-1`, `iso-8859-15`,
    /// `utf-8`, `utf-16le`, `shift_jis`, ...). As browsers do, `latin1`
    /// and `iso-8859-1` are read as Windows-1252, a superset of them.
    pub fn from_label(label: &str) -> Result<Self, String> {
        match Encoding::for_label(label.trim().as_bytes()) {
            Some(e) if e != encoding_rs::REPLACEMENT => Ok(TextEncoding(e)),
            _ => Err(format!(
                "unknown encoding {label:?}: give a name such as windows-1252 (what Excel saves as CSV in Western Europe), latin1, iso-8859-15, utf-8 or utf-16le"
            )),
        }
    }

    /// Its canonical name, e.g. `windows-1252`.
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// Whether it is UTF-8 (read as it is, without decoding).
    pub fn is_utf8(self) -> bool {
        self.0 == encoding_rs::UTF_8
    }
}

/// The bytes of `path` as UTF-8: as they are for UTF-8 (`None`; a file
/// that starts with a UTF-16 byte-order mark is decoded as UTF-16), else
/// decoded from `encoding` as they are read. A decoder skips a byte-order
/// mark, and follows it when it names another encoding (a UTF-8 one in a
/// file said to be Windows-1252 makes it UTF-8).
pub fn open_text(path: &Path, encoding: Option<TextEncoding>) -> io::Result<Box<dyn Read + Send>> {
    let mut file = BufReader::with_capacity(64 * 1024, File::open(path)?);
    let encoding = match encoding {
        Some(e) if !e.is_utf8() => Some(e.0),
        _ => {
            let start = file.fill_buf()?;
            (start.starts_with(b"\xff\xfe") || start.starts_with(b"\xfe\xff"))
                .then_some(encoding_rs::UTF_8)
        }
    };
    Ok(match encoding {
        None => Box::new(file),
        Some(e) => Box::new(DecodeReader::new(file, e.new_decoder())),
    })
}

/// A reader of UTF-8 decoded from another encoding, streaming.
struct DecodeReader<R> {
    inner: R,
    decoder: Decoder,
    raw: Vec<u8>,
    raw_at: usize,
    raw_end: usize,
    /// `inner` is at its end.
    eof: bool,
    out: Vec<u8>,
    out_at: usize,
    out_end: usize,
    /// The decoder has been flushed after the end: nothing more comes.
    done: bool,
}

impl<R: Read> DecodeReader<R> {
    fn new(inner: R, decoder: Decoder) -> Self {
        DecodeReader {
            inner,
            decoder,
            raw: vec![0; 32 * 1024],
            raw_at: 0,
            raw_end: 0,
            eof: false,
            // Room for the worst case of one raw buffer (three UTF-8 bytes
            // for one byte), so that each decode call takes a whole buffer.
            out: vec![0; 3 * 32 * 1024 + 16],
            out_at: 0,
            out_end: 0,
            done: false,
        }
    }
}

impl<R: Read> Read for DecodeReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.out_at < self.out_end {
                let n = buf.len().min(self.out_end - self.out_at);
                buf[..n].copy_from_slice(&self.out[self.out_at..self.out_at + n]);
                self.out_at += n;
                return Ok(n);
            }
            if self.done {
                return Ok(0);
            }
            if self.raw_at == self.raw_end && !self.eof {
                let n = loop {
                    match self.inner.read(&mut self.raw) {
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                        other => break other?,
                    }
                };
                self.eof = n == 0;
                self.raw_at = 0;
                self.raw_end = n;
            }
            let (result, read, written, _) = self.decoder.decode_to_utf8(
                &self.raw[self.raw_at..self.raw_end],
                &mut self.out,
                self.eof,
            );
            self.raw_at += read;
            self.out_at = 0;
            self.out_end = written;
            if self.eof && result == CoderResult::InputEmpty && self.raw_at == self.raw_end {
                self.done = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(bytes: &[u8], label: &str, chunk: usize) -> String {
        // A reader that hands out `chunk` bytes at a time, so that buffer
        // edges fall inside multi-byte sequences.
        struct Chunks<'a>(&'a [u8], usize);
        impl Read for Chunks<'_> {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = self.1.min(buf.len()).min(self.0.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let enc = TextEncoding::from_label(label).expect("label");
        let mut r = DecodeReader::new(Chunks(bytes, chunk), enc.0.new_decoder());
        let mut out = Vec::new();
        let mut small = [0u8; 5];
        loop {
            let n = r.read(&mut small).expect("read");
            if n == 0 {
                break;
            }
            out.extend_from_slice(&small[..n]);
        }
        String::from_utf8(out).expect("UTF-8 out")
    }

    #[test]
    fn windows_1252_latin1_and_utf16_decode_across_buffer_edges() {
        let cp1252 = b"id;Stra\xdfe;\x80 \xe9t\xe9\n";
        for chunk in [1, 2, 7, 4096] {
            assert_eq!(decode(cp1252, "windows-1252", chunk), "id;Straße;€ été\n");
            assert_eq!(decode(cp1252, "Latin1", chunk), "id;Straße;€ été\n");
            let utf16: Vec<u8> = "\u{feff}a\tb\u{e9}\n"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect();
            assert_eq!(decode(&utf16, "utf-16le", chunk), "a\tbé\n");
        }
        // A UTF-8 byte-order mark wins over the label.
        assert_eq!(
            decode(b"\xef\xbb\xbfid;\xc3\xa9\n", "windows-1252", 3),
            "id;é\n"
        );
    }

    #[test]
    fn labels() {
        assert_eq!(
            TextEncoding::from_label("ISO-8859-1")
                .expect("label")
                .name(),
            "windows-1252"
        );
        assert!(TextEncoding::from_label("utf8").expect("label").is_utf8());
        let err = TextEncoding::from_label("klingon").expect_err("unknown");
        assert!(err.contains("windows-1252"), "{err}");
    }
}
