//! Reading a jobs file record by record: JSON Lines, or a CSV/TSV table
//! whose columns become each row's query parameters.
//!
//! Both the check pass and the job source read through [`Records`], and
//! both build jobs with [`Layout::job`], so that they cannot disagree on
//! what a record means. A table is read with the `csv` crate, streaming:
//! one row in memory at a time; a file in another encoding than UTF-8
//! (`--encoding`) is decoded as it is read (see [`crate::jobs::decode`]).

use std::collections::{HashMap, HashSet};
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;

use crate::jobs::decode::open_text;

pub use super::input::{InputFormat, JobsInput, TableOptions, parse_delimiter};
pub(crate) use super::input::{delimiter_flag, delimiter_of, header_counts};
pub use super::layout::Layout;
use super::layout::with_hint;

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

/// What the first text that is not UTF-8 gets said after it.
const ENCODING_HINT: &str = "if the file is in another encoding, say which: Excel saves \"CSV\" in Windows-1252 in Western Europe: give --encoding windows-1252";

/// The records of a jobs file, in order, with the line each starts on.
pub struct Records {
    inner: Inner,
    layout: Layout,
    /// A table's delimiter.
    delimiter: Option<u8>,
    /// How many empty names ended the header line (Excel's `a;b;c;`):
    /// those columns are ignored, and must be empty.
    ignored: usize,
    /// [`ENCODING_HINT`] has been said.
    told_encoding: bool,
}

/// A jobs file's text, as UTF-8 or decoded to it.
type Text = Box<dyn Read + Send>;

enum Inner {
    Lines(std::iter::Enumerate<io::Lines<BufReader<Text>>>),
    Table(Box<csv::Reader<Text>>, csv::ByteRecord, LineCounter),
}

/// Physical line numbers from byte offsets, reading the file a second time
/// alongside the parser: the `csv` crate's own line count is one short
/// after CRLF line ends.
struct LineCounter {
    reader: BufReader<Text>,
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
        let text = open_text(path, input.encoding).map_err(ReadError::Io)?;
        match input.format {
            InputFormat::Jsonl => Ok(Records {
                inner: Inner::Lines(
                    BufReader::with_capacity(256 * 1024, text)
                        .lines()
                        .enumerate(),
                ),
                layout: Layout::default(),
                delimiter: None,
                ignored: 0,
                told_encoding: false,
            }),
            InputFormat::Csv | InputFormat::Tsv => {
                let quoting = input.format == InputFormat::Csv;
                let counts = header_counts(path, input, quoting).map_err(ReadError::Io)?;
                let (delimiter, other) = delimiter_of(input, &counts);
                let hint = other.map(|o| {
                    format!(
                        "the header line looks separated by {} rather than {}: give --delimiter {}",
                        delimiter_flag(o),
                        delimiter_flag(delimiter),
                        delimiter_flag(o)
                    )
                });
                let lines = LineCounter {
                    reader: BufReader::with_capacity(
                        256 * 1024,
                        open_text(path, input.encoding).map_err(ReadError::Io)?,
                    ),
                    at: 0,
                    line: 1,
                };
                let mut reader = table_reader(quoting, delimiter).from_reader(text);
                let header = reader.byte_headers().map_err(csv_error)?.clone();
                let mut header = utf8_fields(&header, None).map_err(|msg| ReadError::Bad {
                    line: 1,
                    msg: format!("{msg}; {ENCODING_HINT}"),
                })?;
                // Excel ends every line with a delimiter when the sheet has
                // an empty column after the last: `a;b;c;`.
                let mut ignored = 0;
                while header.len() > 1 && header.last().is_some_and(String::is_empty) {
                    header.pop();
                    ignored += 1;
                }
                if let (Some(h), [name]) = (&hint, header.as_slice()) {
                    // One column named with another delimiter in it: each
                    // row would go out whole as one value.
                    return Err(ReadError::Bad {
                        line: 1,
                        msg: format!("the header has one column, {name:?}; {h}"),
                    });
                }
                let mut layout = layout(header, &input.table).map_err(|msg| ReadError::Bad {
                    line: 1,
                    msg: with_hint(msg, hint.as_deref()),
                })?;
                layout.hint = hint;
                Ok(Records {
                    inner: Inner::Table(Box::new(reader), csv::ByteRecord::new(), lines),
                    layout,
                    delimiter: Some(delimiter),
                    ignored,
                    told_encoding: false,
                })
            }
        }
    }

    /// What the header means (empty for JSON Lines).
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// A table's delimiter, as given or as found in its header line.
    pub fn delimiter(&self) -> Option<u8> {
        self.delimiter
    }
}

/// `msg`, with [`ENCODING_HINT`] after it the first time.
fn encoding_error(told: &mut bool, msg: String) -> String {
    if std::mem::replace(told, true) {
        msg
    } else {
        format!("{msg}; {ENCODING_HINT}")
    }
}

/// A row's fields, less the ignored empty columns at its end.
fn row_fields(
    record: &csv::ByteRecord,
    header: &[String],
    ignored: usize,
    told: &mut bool,
) -> Result<Vec<String>, String> {
    let mut fields = utf8_fields(record, Some(header)).map_err(|msg| encoding_error(told, msg))?;
    let named = header.len();
    if fields.len() > named && fields.len() <= named + ignored {
        if let Some(j) = fields[named..].iter().position(|f| !f.is_empty()) {
            let value = &fields[named + j];
            let shown: String = value.chars().take(40).collect();
            return Err(format!(
                "column {} has no name in the header (an empty column at the end of the header line, as Excel writes), but this row has {shown:?}{} in it: name the column in the header, or empty its cells",
                named + j + 1,
                if shown.len() < value.len() { "..." } else { "" }
            ));
        }
        fields.truncate(named);
    }
    Ok(fields)
}

impl Iterator for Records {
    type Item = Result<(u64, Record), ReadError>;

    fn next(&mut self) -> Option<Self::Item> {
        let Records {
            inner,
            layout,
            ignored,
            told_encoding,
            ..
        } = self;
        match inner {
            Inner::Lines(lines) => loop {
                let (index, text) = lines.next()?;
                let line = index as u64 + 1;
                match text {
                    Ok(mut t) => {
                        if index == 0 && t.starts_with('\u{feff}') {
                            // A byte-order mark is not part of the first job.
                            t.drain(..'\u{feff}'.len_utf8());
                        }
                        if t.trim().is_empty() {
                            continue;
                        }
                        return Some(Ok((line, Record::Json(t))));
                    }
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                        let msg = encoding_error(told_encoding, "not valid UTF-8".into());
                        return Some(Err(ReadError::Bad { line, msg }));
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
                        row_fields(record, &layout.header, *ignored, told_encoding)
                            .map(|fields| (line, Record::Row(fields)))
                            .map_err(|msg| ReadError::Bad { line, msg }),
                    )
                }
                Err(e) => Some(Err(csv_error(e))),
            },
        }
    }
}

fn table_reader(quoting: bool, delimiter: u8) -> csv::ReaderBuilder {
    let mut b = csv::ReaderBuilder::new();
    // Row lengths are checked per row, so that a ragged row is reported
    // with its line and the rest of the file is still checked.
    b.flexible(true)
        .has_headers(true)
        .delimiter(delimiter)
        .quoting(quoting);
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
            String::from_utf8(bytes.to_vec()).map_err(|_| match header.map(|h| h.get(i)) {
                Some(Some(name)) => format!("column {name:?} is not valid UTF-8"),
                Some(None) => format!("column {} is not valid UTF-8", i + 1),
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
        hint: None,
    })
}

/// The line where a quoted field opens and never closes, if any: the `csv`
/// crate reads such a field to the end of the file without complaint. For
/// a CSV file read as `input` says.
pub fn unterminated_quote(path: &Path, input: &JobsInput) -> io::Result<Option<u64>> {
    let counts = header_counts(path, input, true)?;
    let (delimiter, _) = delimiter_of(input, &counts);
    let mut reader = BufReader::with_capacity(256 * 1024, open_text(path, input.encoding)?);
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
                (_, b'\n') => At::FieldStart,
                (_, b) if b == delimiter => At::FieldStart,
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
    use crate::jobs::RequestDefaults;
    use crate::jobs::decode::TextEncoding;
    use std::fs::File;
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
            delimiter: None,
            encoding: None,
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
        let input = csv_input(TableOptions::default());
        assert_eq!(unterminated_quote(&path, &input).expect("read"), Some(3));
        let (_d, path) = write(b"id,a\n1,\"x,\ny\"\n2,5\" pipe\n");
        assert_eq!(unterminated_quote(&path, &input).expect("read"), None);
        // With semicolons, a quote after a `;` opens a field.
        let (_d, path) = write(b"id;a\n1;\"x;\n2;y\n");
        assert_eq!(unterminated_quote(&path, &input).expect("read"), Some(2));
    }

    /// The rows of a table, or the first error, as `LINE: what`.
    fn rows(content: &[u8], input: &JobsInput) -> Result<Vec<(u64, Vec<String>)>, String> {
        let (_d, path) = write(content);
        let records = Records::open(&path, input).map_err(|e| match e {
            ReadError::Bad { line, msg } => format!("{line}: {msg}"),
            ReadError::Io(e) => e.to_string(),
        })?;
        let layout = records.layout().clone();
        records
            .map(|r| match r {
                Ok((line, rec)) => {
                    layout
                        .job(&rec, line, &defaults())
                        .map_err(|msg| format!("{line}: {msg}"))?;
                    match rec {
                        Record::Row(f) => Ok((line, f)),
                        Record::Json(_) => Err("json".into()),
                    }
                }
                Err(ReadError::Bad { line, msg }) => Err(format!("{line}: {msg}")),
                Err(ReadError::Io(e)) => Err(e.to_string()),
            })
            .collect()
    }

    #[test]
    fn delimiters_are_sniffed_from_the_header_line() {
        let csv = csv_input(TableOptions::default());
        let got = rows(b"\r\nid;\"a,b\";c\n1;x, y;z\n", &csv).expect("semicolons");
        assert_eq!(got, [(3, vec!["1".into(), "x, y".into(), "z".into()])]);
        let got = rows(b"id\tname\n1\ta;b,c\n", &csv).expect("tabs");
        assert_eq!(got[0].1, ["1", "a;b,c"]);
        // A tie, or no delimiter at all: a comma.
        let got = rows(b"addr\n1;2\n", &csv).expect("one column");
        assert_eq!(got[0].1, ["1;2"]);
        let got = rows(b"a,b;c\n1,2;3\n", &csv).expect("tie");
        assert_eq!(got[0].1, ["1", "2;3"]);
    }

    #[test]
    fn a_wrong_delimiter_is_hinted_at() {
        let comma = JobsInput {
            delimiter: Some(b','),
            ..csv_input(TableOptions::default())
        };
        let err = rows(
            b"id;name;address\n1;Jos\xc3\xa9;\"Calle 5, Madrid\"\n",
            &comma,
        )
        .expect_err("wrong delimiter");
        assert_eq!(
            err,
            "1: the header has one column, \"id;name;address\"; the header line looks separated by ';' rather than ',': give --delimiter ';'"
        );
        let err = rows(b"id;name;city,zip\n1;x;Paris,75001;extra, more\n", &comma)
            .expect_err("wrong delimiter");
        assert_eq!(
            err,
            "2: the row has 3 fields, the header has 2; the header line looks separated by ';' rather than ',': give --delimiter ';'"
        );
        let err = rows(
            b"id|city\n1|a\n",
            &JobsInput {
                table: TableOptions {
                    id_column: Some("id".into()),
                    ..TableOptions::default()
                },
                ..csv_input(TableOptions::default())
            },
        )
        .expect_err("pipes");
        assert!(err.ends_with("give --delimiter '|'"), "{err}");
        let tsv = JobsInput {
            format: InputFormat::Tsv,
            ..csv_input(TableOptions::default())
        };
        let err = rows(b"id,a,b\n1,2,3\tx\n", &tsv).expect_err("commas in a .tsv");
        assert_eq!(
            err,
            "1: the header has one column, \"id,a,b\"; the header line looks separated by ',' rather than tab: give --delimiter ','"
        );
        for (s, d) in [
            (";", b';'),
            ("Semicolon", b';'),
            ("\\t", b'\t'),
            ("\t", b'\t'),
            ("pipe", b'|'),
        ] {
            assert_eq!(parse_delimiter(s), Ok(d), "{s}");
        }
        assert!(parse_delimiter(":").is_err());
    }

    #[test]
    fn trailing_empty_header_columns_are_ignored() {
        let csv = csv_input(TableOptions::default());
        let got = rows(b"id;a;b;\r\n1;x;y;\r\n2;x;y\r\n", &csv).expect("Excel's trailing ;");
        assert_eq!(got[0], (2, vec!["1".into(), "x".into(), "y".into()]));
        assert_eq!(got[1].1, ["2", "x", "y"]);
        let err = rows(b"id;a;\n1;x;\n2;x;oops\n", &csv).expect_err("a value there");
        assert!(
            err.starts_with("3: column 3 has no name in the header"),
            "{err}"
        );
        assert!(err.contains("\"oops\""), "{err}");
    }

    #[test]
    fn legacy_encodings_decode_and_utf8_errors_suggest_one() {
        let content = b"id;Stra\xdfe;note;\n1;K\xf6nigstra\xdfe 5, Berlin;\x80;\n2;\xe9;;\n";
        let err = rows(content, &csv_input(TableOptions::default())).expect_err("not UTF-8");
        assert!(
            err.starts_with("1: column 2 of the header is not valid UTF-8"),
            "{err}"
        );
        assert!(err.ends_with("give --encoding windows-1252"), "{err}");
        let input = JobsInput {
            encoding: Some(TextEncoding::from_label("windows-1252").expect("label")),
            ..csv_input(TableOptions::default())
        };
        let got = rows(content, &input).expect("decoded");
        assert_eq!(got[0].1, ["1", "Königstraße 5, Berlin", "€"]);
        assert_eq!(got[1], (3, vec!["2".into(), "é".into(), "".into()]));
    }
}
