//! JSON-lines framing with a line-size limit.

use std::io::{self, BufRead};

/// Why [`LineReader::read_line`] returned no line.
#[derive(Debug, thiserror::Error)]
pub enum ReadLineError {
    /// The line grew past the limit before its newline.
    #[error("line longer than {limit} bytes")]
    TooLong {
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The underlying read failed.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
}

/// Reads newline-terminated lines from a buffered reader, refusing lines over
/// a size limit instead of buffering them without bound.
///
/// The line buffer is reused between calls, so reading many lines allocates
/// only when a line is longer than every line before it.
pub struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    limit: usize,
}

impl<R: BufRead> LineReader<R> {
    /// A reader that refuses lines longer than `limit` bytes (newline
    /// included).
    pub fn new(inner: R, limit: usize) -> Self {
        Self {
            inner,
            buf: Vec::with_capacity(4096),
            limit,
        }
    }

    /// The next line without its line ending (`\n` or `\r\n`), or `None` at
    /// end of input. A last line without a newline is returned as a line.
    ///
    /// After [`ReadLineError::TooLong`] the rest of that line has not been
    /// read; callers treat it as fatal for the stream.
    pub fn read_line(&mut self) -> Result<Option<&[u8]>, ReadLineError> {
        self.buf.clear();
        loop {
            let available = match self.inner.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.into()),
            };
            if available.is_empty() {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                break;
            }
            let (used, done) = match memchr_newline(available) {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            if self.buf.len() + used > self.limit {
                return Err(ReadLineError::TooLong { limit: self.limit });
            }
            self.buf.extend_from_slice(&available[..used]);
            self.inner.consume(used);
            if done {
                break;
            }
        }
        if self.buf.last() == Some(&b'\n') {
            self.buf.pop();
            if self.buf.last() == Some(&b'\r') {
                self.buf.pop();
            }
        }
        Ok(Some(&self.buf))
    }
}

fn memchr_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], limit: usize) -> Vec<Result<Vec<u8>, String>> {
        let mut r = LineReader::new(input, limit);
        let mut out = Vec::new();
        loop {
            match r.read_line() {
                Ok(Some(l)) => out.push(Ok(l.to_vec())),
                Ok(None) => break,
                Err(e) => {
                    out.push(Err(e.to_string()));
                    break;
                }
            }
        }
        out
    }

    #[test]
    fn splits_lines_and_strips_endings() {
        let got = lines(b"a\r\nbb\n\nccc", 100);
        let want: Vec<Result<Vec<u8>, String>> = vec![
            Ok(b"a".to_vec()),
            Ok(b"bb".to_vec()),
            Ok(b"".to_vec()),
            Ok(b"ccc".to_vec()),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn refuses_long_line() {
        let got = lines(b"12345\n123456789\n", 6);
        assert_eq!(got[0], Ok(b"12345".to_vec()));
        assert!(matches!(&got[1], Err(m) if m.contains("longer than 6")));
    }
}
