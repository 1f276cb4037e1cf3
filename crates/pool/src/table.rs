//! Reading a jobs file record by record: JSON Lines, or a CSV/TSV table
//! whose columns become each row's query parameters.
//!
//! Both the check pass and the job source read through [`Records`], and
//! both build jobs with [`Layout::job`], so that they cannot disagree on
//! what a record means. A table is read with the `csv` crate, streaming:
//! one row in memory at a time.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use serde_json::Value;

use crate::jobs::{Job, JobLine, RequestDefaults, build_job, check_id, default_id, parse_line};

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
}

impl JobsInput {
    /// JSON Lines.
    pub fn jsonl() -> Self {
        JobsInput {
            format: InputFormat::Jsonl,
            table: TableOptions::default(),
        }
    }
}

/// One record of a jobs file, not yet built into a job.
#[derive(Debug)]
pub enum Record {
    /// A non-blank JSON Lines line.
    Json(String),
    /// A table row's fields, in header order.
    Row(Vec<String>),
}

/// Why a record could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The file could not be read.
    Io(io::Error),
    /// The record at this (1-based, physical) line is malformed.
    Bad {
        /// Where the record starts.
        line: u64,
        /// What is wrong.
        msg: String,
    },
}

/// What a table's header means for its rows: where the id is, and which
/// column goes out under which parameter name. JSON Lines have none.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// The header, as read (a table only).
    pub header: Vec<String>,
    id: Option<usize>,
    params: Vec<(usize, String)>,
    skip_empty: bool,
}

impl Layout {
    /// The header's column names (empty for JSON Lines).
    pub fn columns(&self) -> &[String] {
        &self.header
    }

    /// The names a table row's values go out under (after `--rename`).
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.params.iter().map(|(_, n)| n.as_str())
    }

    /// The id of a table row: its id column, or `line-N`.
    pub fn row_id(&self, fields: &[String], line: u64) -> String {
        match self.id {
            Some(i) => fields.get(i).cloned().unwrap_or_default(),
            None => default_id(line),
        }
    }

    /// Builds the job of a record that starts at `line`.
    pub fn job(
        &self,
        record: &Record,
        line: u64,
        defaults: &RequestDefaults,
    ) -> Result<Job, String> {
        match record {
            Record::Json(text) => parse_line(text, line, defaults),
            Record::Row(fields) => {
                if fields.len() != self.header.len() {
                    return Err(format!(
                        "the row has {} field{}, the header has {}",
                        fields.len(),
                        if fields.len() == 1 { "" } else { "s" },
                        self.header.len()
                    ));
                }
                let id = match self.id {
                    Some(i) => {
                        let id = &fields[i];
                        if id.is_empty() {
                            return Err(format!(
                                "the id column {:?} is empty in this row",
                                self.header[i]
                            ));
                        }
                        check_id(id)?;
                        Some(id.clone())
                    }
                    None => None,
                };
                let mut params = serde_json::Map::new();
                for (i, name) in &self.params {
                    let value = &fields[*i];
                    if self.skip_empty && value.is_empty() {
                        continue;
                    }
                    params.insert(name.clone(), Value::String(value.clone()));
                }
                build_job(JobLine::from_row(id, params), line, defaults)
            }
        }
    }
}

/// The records of a jobs file, in order, with the line each starts on.
pub struct Records {
    inner: Inner,
    layout: Layout,
}

enum Inner {
    Lines(std::iter::Enumerate<io::Lines<BufReader<File>>>),
    Table(Box<csv::Reader<File>>, csv::ByteRecord, LineCounter),
}

/// Physical line numbers from byte offsets, reading the file a second time
/// alongside the parser: the `csv` crate's own line count is one short
/// after CRLF line ends.
struct LineCounter {
    reader: BufReader<File>,
    at: u64,
    line: u64,
}

impl LineCounter {
    /// The line where the record the parser places at `offset` starts
    /// (offsets only grow). The parser's offset (a byte-order mark
    /// included) is just past the first byte that ended the record before:
    /// the `\n` of a CRLF, and any blank lines, still come before the
    /// record's first byte, which is never a line break.
    fn line_at(&mut self, offset: u64) -> io::Result<u64> {
        while self.at < offset {
            let buf = self.reader.fill_buf()?;
            if buf.is_empty() {
                break;
            }
            let take = buf
                .len()
                .min(usize::try_from(offset - self.at).unwrap_or(usize::MAX));
            self.line += buf[..take].iter().filter(|&&b| b == b'\n').count() as u64;
            self.reader.consume(take);
            self.at += take as u64;
        }
        loop {
            let buf = self.reader.fill_buf()?;
            let breaks = buf
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            let rest = buf.len() - breaks;
            self.line += buf[..breaks].iter().filter(|&&b| b == b'\n').count() as u64;
            self.reader.consume(breaks);
            self.at += breaks as u64;
            if breaks == 0 || rest > 0 {
                return Ok(self.line);
            }
        }
    }
}

impl Records {
    /// Opens `path` as `input` says. A table's header is read and checked
    /// here: a bad header is a [`ReadError::Bad`] at line 1.
    pub fn open(path: &Path, input: &JobsInput) -> Result<Self, ReadError> {
        let file = File::open(path).map_err(ReadError::Io)?;
        match input.format {
            InputFormat::Jsonl => Ok(Records {
                inner: Inner::Lines(
                    BufReader::with_capacity(256 * 1024, file)
                        .lines()
                        .enumerate(),
                ),
                layout: Layout::default(),
            }),
            InputFormat::Csv | InputFormat::Tsv => {
                let lines = LineCounter {
                    reader: BufReader::with_capacity(
                        256 * 1024,
                        File::open(path).map_err(ReadError::Io)?,
                    ),
                    at: 0,
                    line: 1,
                };
                let mut reader = table_reader(input.format).from_reader(file);
                let header = reader.byte_headers().map_err(csv_error)?.clone();
                let header =
                    utf8_fields(&header, None).map_err(|msg| ReadError::Bad { line: 1, msg })?;
                let layout =
                    layout(header, &input.table).map_err(|msg| ReadError::Bad { line: 1, msg })?;
                Ok(Records {
                    inner: Inner::Table(Box::new(reader), csv::ByteRecord::new(), lines),
                    layout,
                })
            }
        }
    }

    /// What the header means (empty for JSON Lines).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }
}

impl Iterator for Records {
    type Item = Result<(u64, Record), ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::Lines(lines) => loop {
                let (index, text) = lines.next()?;
                let line = index as u64 + 1;
                match text {
                    Ok(t) if t.trim().is_empty() => continue,
                    Ok(t) => return Some(Ok((line, Record::Json(t)))),
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                        return Some(Err(ReadError::Bad {
                            line,
                            msg: "not valid UTF-8".into(),
                        }));
                    }
                    Err(e) => return Some(Err(ReadError::Io(e))),
                }
            },
            Inner::Table(reader, record, lines) => match reader.read_byte_record(record) {
                Ok(false) => None,
                Ok(true) => {
                    let byte = record.position().map_or(0, csv::Position::byte);
                    let line = match lines.line_at(byte) {
                        Ok(l) => l,
                        Err(e) => return Some(Err(ReadError::Io(e))),
                    };
                    Some(
                        utf8_fields(record, Some(&self.layout.header))
                            .map(|fields| (line, Record::Row(fields)))
                            .map_err(|msg| ReadError::Bad { line, msg }),
                    )
                }
                Err(e) => Some(Err(csv_error(e))),
            },
        }
    }
}

fn table_reader(format: InputFormat) -> csv::ReaderBuilder {
    let mut b = csv::ReaderBuilder::new();
    // Row lengths are checked per row, so that a ragged row is reported
    // with its line and the rest of the file is still checked.
    b.flexible(true).has_headers(true);
    if format == InputFormat::Tsv {
        b.delimiter(b'\t').quoting(false);
    }
    b
}

fn csv_error(e: csv::Error) -> ReadError {
    let line = e.position().map_or(0, |p| p.line());
    match e.into_kind() {
        csv::ErrorKind::Io(e) => ReadError::Io(e),
        other => ReadError::Bad {
            line,
            msg: format!("{other:?}"),
        },
    }
}

/// A record's fields as text; a field that is not UTF-8 is named.
fn utf8_fields(record: &csv::ByteRecord, header: Option<&[String]>) -> Result<Vec<String>, String> {
    record
        .iter()
        .enumerate()
        .map(|(i, bytes)| {
            String::from_utf8(bytes.to_vec()).map_err(|_| match header.and_then(|h| h.get(i)) {
                Some(name) => format!("column {name:?} is not valid UTF-8"),
                None => format!("column {} of the header is not valid UTF-8", i + 1),
            })
        })
        .collect()
}

/// Checks a header against the options and works out the layout.
fn layout(header: Vec<String>, opts: &TableOptions) -> Result<Layout, String> {
    let mut seen = HashSet::new();
    for name in &header {
        if name.is_empty() {
            return Err("the header has an empty column name".into());
        }
        if !seen.insert(name.as_str()) {
            return Err(format!("the header names the column {name:?} twice"));
        }
    }
    let index = |name: &str, what: &str| -> Result<usize, String> {
        header.iter().position(|h| h == name).ok_or_else(|| {
            format!(
                "{what} names the column {name:?}, which the header does not have (it has: {})",
                header.join(", ")
            )
        })
    };
    let id = match &opts.id_column {
        Some(name) => Some(index(name, "--id-column")?),
        None => header.iter().position(|h| h == "id"),
    };
    let mut renames: HashMap<&str, &str> = HashMap::new();
    for (from, to) in &opts.rename {
        index(from, "--rename")?;
        renames.insert(from, to);
    }
    let sent: Vec<usize> = match &opts.columns {
        Some(names) => names
            .iter()
            .map(|n| index(n, "--columns"))
            .collect::<Result<_, _>>()?,
        None => (0..header.len()).filter(|&i| Some(i) != id).collect(),
    };
    let params = sent
        .into_iter()
        .filter(|&i| Some(i) != id)
        .map(|i| {
            let name = &header[i];
            (
                i,
                renames
                    .get(name.as_str())
                    .map_or(name.clone(), |s| (*s).to_string()),
            )
        })
        .collect();
    Ok(Layout {
        header,
        id,
        params,
        skip_empty: opts.skip_empty,
    })
}

/// The line where a quoted field opens and never closes, if any: the `csv`
/// crate reads such a field to the end of the file without complaint.
pub fn unterminated_quote(path: &Path) -> io::Result<Option<u64>> {
    let mut reader = BufReader::with_capacity(256 * 1024, File::open(path)?);
    // A byte-order mark is not part of the first field: a quote after it
    // opens one.
    if reader.fill_buf()?.starts_with(b"\xef\xbb\xbf") {
        reader.consume(3);
    }
    let mut buf = vec![0u8; 256 * 1024];
    let (mut line, mut opened_at) = (1u64, 0u64);
    // Where we are: at the start of a field, inside an unquoted field,
    // inside a quoted one, or just after a quote inside a quoted one.
    #[derive(PartialEq)]
    enum At {
        FieldStart,
        Unquoted,
        Quoted,
        QuoteInQuoted,
    }
    let mut at = At::FieldStart;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        for &b in &buf[..n] {
            at = match (at, b) {
                (At::FieldStart, b'"') => {
                    opened_at = line;
                    At::Quoted
                }
                (At::Quoted, b'"') => At::QuoteInQuoted,
                (At::QuoteInQuoted, b'"') => At::Quoted,
                (At::Quoted, _) => At::Quoted,
                (_, b',' | b'\n') => At::FieldStart,
                (_, _) => At::Unquoted,
            };
            if b == b'\n' {
                line += 1;
            }
        }
    }
    Ok((at == At::Quoted).then_some(opened_at))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn write(content: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jobs.csv");
        File::create(&path)
            .and_then(|mut f| f.write_all(content))
            .expect("write");
        (dir, path)
    }

    fn csv_input(opts: TableOptions) -> JobsInput {
        JobsInput {
            format: InputFormat::Csv,
            table: opts,
        }
    }

    fn defaults() -> RequestDefaults {
        RequestDefaults {
            base_url: Some(url::Url::parse("http://127.0.0.1:9/geo").expect("url")),
            ..RequestDefaults::default()
        }
    }

    #[test]
    fn quoted_fields_crlf_bom_and_physical_lines() {
        let (_d, path) = write(
            b"\xef\xbb\xbfid,Street Address,city,note\r\n\
              a1,\"10 Main St, Apt 2\",\"New\nYork\",\"say \"\"hi\"\"\"\r\n\
              a2,5 Rue de l'\xc3\x89glise,Paris,\r\n",
        );
        let input = csv_input(TableOptions {
            rename: vec![("Street Address".into(), "address".into())],
            skip_empty: true,
            ..TableOptions::default()
        });
        let mut records = Records::open(&path, &input).expect("open");
        assert_eq!(
            records.layout().columns(),
            ["id", "Street Address", "city", "note"]
        );
        let layout = records.layout().clone();
        let (line, rec) = records.next().expect("row").expect("ok");
        assert_eq!(line, 2);
        let job = layout.job(&rec, line, &defaults()).expect("job");
        assert_eq!(job.id, "a1");
        assert_eq!(
            job.url,
            "http://127.0.0.1:9/geo?address=10+Main+St%2C+Apt+2&city=New%0AYork&note=say+%22hi%22"
        );
        // The second row starts on line 4: the quoted newline took one.
        let (line, rec) = records.next().expect("row").expect("ok");
        assert_eq!(line, 4);
        let job = layout.job(&rec, line, &defaults()).expect("job");
        assert_eq!(
            job.url,
            "http://127.0.0.1:9/geo?address=5+Rue+de+l%27%C3%89glise&city=Paris"
        );
        assert!(records.next().is_none());
    }

    #[test]
    fn header_problems_name_the_column() {
        let (_d, path) = write(b"id,city,city\n1,a,b\n");
        let Err(ReadError::Bad { line: 1, msg }) =
            Records::open(&path, &csv_input(TableOptions::default()))
        else {
            panic!("duplicate column accepted")
        };
        assert!(msg.contains("names the column \"city\" twice"), "{msg}");
        let (_d, path) = write(b"id,city\n1,a\n");
        let opts = TableOptions {
            columns: Some(vec!["town".into()]),
            ..TableOptions::default()
        };
        let Err(ReadError::Bad { msg, .. }) = Records::open(&path, &csv_input(opts)) else {
            panic!("unknown column accepted")
        };
        assert!(msg.contains("--columns names the column \"town\""), "{msg}");
        assert!(msg.contains("(it has: id, city)"), "{msg}");
    }

    #[test]
    fn rows_without_an_id_column_are_line_n_and_ragged_rows_are_refused() {
        let (_d, path) = write(b"address\n\"a, b\"\nc,d\n");
        let mut records = Records::open(&path, &csv_input(TableOptions::default())).expect("open");
        let layout = records.layout().clone();
        let (line, rec) = records.next().expect("row").expect("ok");
        assert_eq!(
            layout.job(&rec, line, &defaults()).expect("job").id,
            "line-2"
        );
        let (line, rec) = records.next().expect("row").expect("ok");
        let err = layout.job(&rec, line, &defaults()).expect_err("ragged");
        assert_eq!(err, "the row has 2 fields, the header has 1");
    }

    #[test]
    fn an_unterminated_quote_is_found_with_its_line() {
        let (_d, path) = write(b"id,a\n1,\"x\"\"y\"\n2,\"never\nclosed\n");
        assert_eq!(unterminated_quote(&path).expect("read"), Some(3));
        let (_d, path) = write(b"id,a\n1,\"x,\ny\"\n2,5\" pipe\n");
        assert_eq!(unterminated_quote(&path).expect("read"), None);
    }
}
