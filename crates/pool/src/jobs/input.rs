//! How to read a jobs file: its format, a table's options, and the
//! delimiter its header line shows.

use std::io::{self, BufRead, BufReader};
use std::path::Path;

use crate::jobs::decode::{TextEncoding, open_text};

/// The format of a jobs file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// One JSON object per line.
    Jsonl,
    /// Comma-separated values with a header row (RFC 4180 quoting).
    Csv,
    /// Tab-separated values with a header row, no quoting.
    Tsv,
}

impl InputFormat {
    /// The format a file name implies: `.csv`, `.tsv`, else JSON Lines.
    pub fn from_name(name: &str) -> Self {
        let lower = name.to_ascii_lowercase();
        if lower.ends_with(".csv") {
            InputFormat::Csv
        } else if lower.ends_with(".tsv") || lower.ends_with(".tab") {
            InputFormat::Tsv
        } else {
            InputFormat::Jsonl
        }
    }
}

/// How a table's columns become jobs.
#[derive(Debug, Clone, Default)]
pub struct TableOptions {
    /// The column that names each row's result file (`--id-column`); by
    /// default `id` when the header has it, else rows are `line-N`.
    pub id_column: Option<String>,
    /// Only these columns are sent (`--columns`); by default all but the id.
    pub columns: Option<Vec<String>>,
    /// Column name → parameter name (`--rename`).
    pub rename: Vec<(String, String)>,
    /// Leave out empty cells instead of sending empty values
    /// (`--skip-empty`).
    pub skip_empty: bool,
}

/// How to read a jobs file.
#[derive(Debug, Clone)]
pub struct JobsInput {
    /// Its format.
    pub format: InputFormat,
    /// For a table: which columns are what.
    pub table: TableOptions,
    /// For a table: the byte between fields (`--delimiter`); by default a
    /// tab for TSV, and for CSV the one of `,` `;` tab that the header line
    /// holds most (a comma when it holds none).
    pub delimiter: Option<u8>,
    /// The file's text encoding (`--encoding`); by default UTF-8.
    pub encoding: Option<TextEncoding>,
}

impl JobsInput {
    /// JSON Lines.
    pub fn jsonl() -> Self {
        JobsInput {
            format: InputFormat::Jsonl,
            table: TableOptions::default(),
            delimiter: None,
            encoding: None,
        }
    }
}

/// A `--delimiter` value: `,` `;` `|` or a tab (also written `\t`), or
/// the words `comma`, `semicolon`, `tab`, `pipe`.
pub fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s.to_ascii_lowercase().as_str() {
        "," | "comma" => Ok(b','),
        ";" | "semicolon" => Ok(b';'),
        "\t" | "\\t" | "tab" => Ok(b'\t'),
        "|" | "pipe" => Ok(b'|'),
        _ => Err(format!(
            "{s:?} is not a delimiter this reads: give one of ',' ';' '|' '\\t', or comma, semicolon, tab, pipe"
        )),
    }
}

/// How a delimiter is written on the command line, e.g. `--delimiter ';'`.
pub(crate) fn delimiter_flag(d: u8) -> String {
    match d {
        b'\t' => "tab".to_string(),
        d => format!("'{}'", d as char),
    }
}

/// The delimiters a header line is looked at for: the first three are
/// sniffed, all four are hinted at.
const CANDIDATES: [u8; 4] = [b',', b';', b'\t', b'|'];

/// How far into the file the header line is looked at.
const SNIFF_LIMIT: usize = 1 << 20;

/// How often each of [`CANDIDATES`] appears in the header line (the first
/// line that is not blank), outside quotes when `quoting`.
pub(crate) fn header_counts(
    path: &Path,
    input: &JobsInput,
    quoting: bool,
) -> io::Result<[usize; 4]> {
    let mut reader = BufReader::with_capacity(8 * 1024, open_text(path, input.encoding)?);
    let mut counts = [0; 4];
    let (mut quoted, mut started, mut seen) = (false, false, 0usize);
    if reader.fill_buf()?.starts_with(b"\xef\xbb\xbf") {
        reader.consume(3);
    }
    'line: loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() || seen > SNIFF_LIMIT {
            break;
        }
        for &b in buf {
            match b {
                b'\r' | b'\n' if !started => {}
                b'\n' if !quoted => break 'line,
                b'"' if quoting => quoted = !quoted,
                _ if quoted => {}
                _ => {
                    if let Some(i) = CANDIDATES.iter().position(|&c| c == b) {
                        counts[i] += 1;
                    }
                }
            }
            started |= b != b'\r' && b != b'\n';
        }
        let n = buf.len();
        seen += n;
        reader.consume(n);
    }
    Ok(counts)
}

/// The delimiter a table is read with, and another one that its header
/// line seems to use instead, if any.
pub(crate) fn delimiter_of(input: &JobsInput, counts: &[usize; 4]) -> (u8, Option<u8>) {
    let used = match (input.delimiter, input.format) {
        (Some(d), _) => d,
        (None, InputFormat::Tsv) => b'\t',
        (None, _) => {
            // Sniffed from `,` `;` tab; a tie goes to the first.
            let mut best = 0;
            for i in 1..3 {
                if counts[i] > counts[best] {
                    best = i;
                }
            }
            CANDIDATES[best]
        }
    };
    let used_count = CANDIDATES
        .iter()
        .position(|&c| c == used)
        .map_or(0, |i| counts[i]);
    let other = (0..CANDIDATES.len())
        .filter(|&i| CANDIDATES[i] != used && counts[i] > used_count)
        .max_by_key(|&i| (counts[i], std::cmp::Reverse(i)))
        .map(|i| CANDIDATES[i]);
    (used, other)
}
