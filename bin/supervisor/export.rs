//! `supervisor export DIR`: one table (CSV, TSV or JSON Lines) from a
//! results folder, row for row with the jobs file that made the run when
//! `--jobs` names it.
//!
//! Everything streams: the jobs file is read record by record (twice: a
//! check pass, which also finds a JSON Lines file's parameter names, then
//! the export itself), each row's result file is read when its row is
//! written, and the table goes out as it is made. Only the column names
//! and, without `--jobs`, the sorted list of result ids are held for the
//! whole export.

mod jobs;
mod results;
mod sink;

use std::io;

use anyhow::bail;
use serde_json::Value;

use callpool_pool::folder::SafeDir;
use callpool_pool::redact::{mask_json, mask_text};

use crate::cli::{ColorWhen, ExportArgs, ExportFormat, Field};
use crate::{secrets, status, ui};
use results::Read;

/// One cell of the table; `None` is an empty cell (`null` in JSON Lines).
type Cell = Option<Value>;

/// The columns after the fields, in order; `status` is the export's own
/// word for the row (see [`RowStatus`]).
const STATUS_COLUMNS: [&str; 7] = [
    "ok",
    "attempts",
    "http_status",
    "error_kind",
    "error",
    "dedup_of",
    "status",
];

/// Unreadable result files named on stderr before the rest are only
/// counted.
const MAX_LISTED: usize = 50;

/// What a row's `status` column says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RowStatus {
    /// The result is ok.
    Ok,
    /// The result is not ok.
    Failed,
    /// The job has no result file (yet).
    NotRun,
    /// The result answers a request other than the one the row makes now.
    Stale,
    /// The result file is not a result (not JSON, or not a result's JSON).
    Unreadable,
}

impl RowStatus {
    fn as_str(self) -> &'static str {
        match self {
            RowStatus::Ok => "ok",
            RowStatus::Failed => "failed",
            RowStatus::NotRun => "not_run",
            RowStatus::Stale => "stale",
            RowStatus::Unreadable => "unreadable",
        }
    }
}

/// Rows of each status, for the closing line on stderr.
#[derive(Debug, Default)]
struct Tally {
    rows: u64,
    counts: [u64; 5],
}

impl Tally {
    fn add(&mut self, s: RowStatus) {
        self.rows += 1;
        self.counts[s as usize] += 1;
    }

    fn get(&self, s: RowStatus) -> u64 {
        self.counts[s as usize]
    }
}

/// Runs `supervisor export` and returns its exit status; errors are
/// printed here.
pub(crate) fn main(args: &mut ExportArgs) -> u8 {
    let paint = ui::Paint(ui::decide_color(ColorWhen::Auto));
    match with_manifest(args).and_then(|()| export(args, paint)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("supervisor: {} {e:#}", paint.red("error:"));
            status::USAGE
        }
    }
}

/// Fills the options not given from the folder's manifest (the run's own),
/// the jobs file included when it is still there; an option given with
/// another value is an error naming both.
fn with_manifest(args: &mut ExportArgs) -> anyhow::Result<()> {
    let Some(m) = crate::manifest::Manifest::read(&args.dir)? else {
        return Ok(());
    };
    m.fill(&args.dir, &mut args.input, &mut args.request, false)?;
    if args.jobs.is_none()
        && let Some(jobs) = m
            .jobs
            .as_ref()
            .filter(|j| std::path::Path::new(j).is_file())
    {
        eprintln!("supervisor: rows from {jobs}, the run's jobs file (from its manifest)");
        args.jobs = Some(jobs.clone());
    }
    Ok(())
}

/// Where the rows come from.
enum Rows {
    /// The jobs file's rows.
    Jobs(Box<jobs::JobRows>),
    /// The result files' ids, sorted.
    Folder(std::vec::IntoIter<String>),
}

fn export(args: &ExportArgs, paint: ui::Paint) -> anyhow::Result<u8> {
    let dir = &args.dir;
    if args.bom && args.format == ExportFormat::Jsonl {
        bail!(
            "--bom is for a CSV or TSV table (a spreadsheet reads it as UTF-8 then); JSON Lines has none"
        );
    }
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => bail!(
            "{} is not a folder: give the results folder of a run (its --out)",
            dir.display()
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "the results folder {} does not exist: give the folder a run wrote its results to (its --out, `results` by default)",
            dir.display()
        ),
        Err(e) => bail!("cannot open the results folder {}: {e}", dir.display()),
    }
    // Result files are masked when written; what export shows is masked
    // again after JSON decoding, so that no decoded value can bring back a
    // secret it knows of (the options' own, and each row's with --jobs).
    let defaults = crate::request_defaults(&args.request, true)?;
    let option_secrets = secrets::values(&secrets::option_secrets(&args.request, &defaults));
    let safe = SafeDir::open(dir)
        .map_err(|e| anyhow::anyhow!("cannot open the results folder {}: {e}", dir.display()))?;
    // Opened first, so that an output that cannot be written fails before
    // any work; until the end it is a temporary file.
    let target = sink::Target::open(args.output.as_deref())?;

    let mut rows = match &args.jobs {
        Some(file) => Rows::Jobs(Box::new(jobs::JobRows::open(file, args, defaults)?)),
        None => {
            let listing = results::list(dir)?;
            if listing.temporary > 0 {
                eprintln!(
                    "supervisor: note: skipped {} temporary file{} (.tmp.*) in {}: half-written results of a run that was killed, never results",
                    listing.temporary,
                    plural(listing.temporary as u64),
                    dir.display()
                );
            }
            if listing.ids.is_empty() {
                eprintln!(
                    "supervisor: note: {} holds no result files (<id>.json)",
                    dir.display()
                );
            }
            Rows::Folder(listing.ids.into_iter())
        }
    };
    let input_columns = match &rows {
        Rows::Jobs(j) => j.columns().to_vec(),
        Rows::Folder(_) => vec!["id".to_string()],
    };
    let prefix = args.prefix.as_deref().unwrap_or("");
    let header = header(&input_columns, &args.fields, prefix, args.jobs.as_deref())?;
    let to = target.describe();
    // A CSV table is written with the jobs file's delimiter unless told
    // another, so that it opens in the spreadsheet that made the jobs.
    let delimiter = args
        .output_delimiter
        .or(args.input.delimiter)
        .or(match &rows {
            Rows::Jobs(j) => j.csv_delimiter(),
            Rows::Folder(_) => None,
        })
        .unwrap_or(b',');
    let style = sink::Style {
        delimiter,
        bom: args.bom,
    };
    let mut sink =
        sink::Sink::new(args.format, style, target, &header).map_err(|e| write_error(&to, e))?;

    let mut tally = Tally::default();
    let mut bad_files = 0u64;
    let mut cells: Vec<Cell> = Vec::with_capacity(header.len());
    let mut buf = Vec::new();
    loop {
        cells.clear();
        let (id, fingerprint, mut row_secrets) = match &mut rows {
            Rows::Jobs(j) => match j.next_row(&mut cells)? {
                Some(job) => (job.id, Some(job.fingerprint), job.secrets),
                None => break,
            },
            Rows::Folder(ids) => match ids.next() {
                Some(id) => {
                    cells.push(Some(Value::String(id.clone())));
                    (id, None, Vec::new())
                }
                None => break,
            },
        };
        let read = results::read(&safe, &id, &mut buf);
        let row_status = match &read {
            Read::Missing => RowStatus::NotRun,
            Read::Bad(why) => {
                bad_files += 1;
                if bad_files <= MAX_LISTED as u64 {
                    eprintln!(
                        "supervisor: {} {why}; its row says unreadable",
                        paint.yellow("warning:"),
                    );
                }
                RowStatus::Unreadable
            }
            Read::Found(r) => match (fingerprint.as_deref(), r.fingerprint()) {
                (Some(now), Some(then)) if now != then => RowStatus::Stale,
                _ if r.ok => RowStatus::Ok,
                _ => RowStatus::Failed,
            },
        };
        tally.add(row_status);
        match &read {
            Read::Found(r) => {
                let from = cells.len();
                if row_status == RowStatus::Stale {
                    // The answer is to another request: its fields and its
                    // `ok` are not this row's.
                    cells.extend(std::iter::repeat_n(None, args.fields.len()));
                    r.push_status(&mut cells);
                    cells[from + args.fields.len()] = None;
                } else {
                    cells.extend(args.fields.iter().map(|f| r.field(&f.pointer)));
                    r.push_status(&mut cells);
                }
                row_secrets.extend(option_secrets.iter().cloned());
                for cell in cells[from..].iter_mut().flatten() {
                    mask_value(cell, &row_secrets);
                }
            }
            _ => cells.extend(std::iter::repeat_n(
                None,
                args.fields.len() + STATUS_COLUMNS.len() - 1,
            )),
        }
        cells.push(Some(Value::String(row_status.as_str().to_string())));
        match sink.row(&cells) {
            Ok(()) => {}
            // `supervisor export ... | head` is not an error.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                return Ok(exit_status(bad_files));
            }
            Err(e) => return Err(write_error(&to, e)),
        }
    }
    let mangled = match sink.finish() {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(exit_status(bad_files)),
        Err(e) => return Err(write_error(&to, e)),
    };

    report(&tally, bad_files, mangled, &to, paint);
    let useless =
        tally.rows > 0 && tally.get(RowStatus::NotRun) + tally.get(RowStatus::Stale) == tally.rows;
    if useless {
        eprintln!(
            "supervisor: {} no row has a current result (every one is not_run or stale): the folder holds the results of another job list, or export rebuilds the rows' requests differently from the run (--id-column, --columns, --url, --param ...; a folder written by this version remembers them)",
            paint.red("error:")
        );
        return Ok(status::FAILED);
    }
    Ok(exit_status(bad_files))
}

/// Hides every secret of `secrets` in a decoded value (see
/// `callpool_pool::redact`).
fn mask_value(value: &mut Value, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    match value {
        Value::String(s) => {
            if let std::borrow::Cow::Owned(m) = mask_text(s, secrets) {
                *s = m;
            }
        }
        Value::Null | Value::Bool(_) => {}
        other => {
            if let Some(masked) = serde_json::to_vec(other)
                .ok()
                .and_then(|json| mask_json(&json, secrets))
                .and_then(|json| serde_json::from_slice(&json).ok())
            {
                *other = masked;
            }
        }
    }
}

/// The closing lines on stderr: what was exported, and what to know about
/// it.
fn report(tally: &Tally, bad_files: u64, mangled: u64, to: &str, paint: ui::Paint) {
    if bad_files > MAX_LISTED as u64 {
        eprintln!(
            "supervisor: ... and {} more unreadable result files",
            bad_files - MAX_LISTED as u64
        );
    }
    if mangled > 0 {
        eprintln!(
            "supervisor: note: {mangled} value{} held a tab or a line break, which TSV cannot hold: written with spaces instead (--format csv keeps them)",
            plural(mangled)
        );
    }
    let stale = tally.get(RowStatus::Stale);
    if stale > 0 {
        eprintln!(
            "supervisor: note: {stale} row{} {} stale: the result answers a different request from the one the row makes now. Either the row changed since the run (rerun with --resume to update it), or export was not given the run's --url, --param and --header options (a secret's value does not matter, only that it is given)",
            plural(stale),
            if stale == 1 { "is" } else { "are" }
        );
    }
    let counts: Vec<String> = [
        RowStatus::Ok,
        RowStatus::Failed,
        RowStatus::Stale,
        RowStatus::NotRun,
        RowStatus::Unreadable,
    ]
    .iter()
    .filter(|&&s| tally.get(s) > 0)
    .map(|&s| format!("{} {}", tally.get(s), s.as_str()))
    .collect();
    eprintln!(
        "supervisor: exported {} row{} to {to}{}{}",
        tally.rows,
        plural(tally.rows),
        if counts.is_empty() { "" } else { ": " },
        counts.join(", ")
    );
    if bad_files > 0 {
        eprintln!(
            "supervisor: {} {bad_files} result file{} could not be read (named above); every other row is exported",
            paint.yellow("warning:"),
            plural(bad_files)
        );
    }
}

fn exit_status(bad_files: u64) -> u8 {
    if bad_files > 0 {
        status::FAILED
    } else {
        status::OK
    }
}

fn write_error(to: &str, e: io::Error) -> anyhow::Error {
    if to == "stdout" {
        anyhow::anyhow!("cannot write the table to stdout: {e}; the table there is incomplete")
    } else {
        anyhow::anyhow!(
            "cannot write the table to {to}: {e}; nothing was written (check the space and the permissions, or choose another --output)"
        )
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// The table's header: the input's columns, then the fields and the status
/// columns, each with the prefix. Two columns of the same name are refused:
/// a table read by name would lose one.
fn header(
    input: &[String],
    fields: &[Field],
    prefix: &str,
    jobs: Option<&str>,
) -> anyhow::Result<Vec<String>> {
    let mut header = input.to_vec();
    let outputs = fields
        .iter()
        .map(|f| (f.name.as_str(), true))
        .chain(STATUS_COLUMNS.iter().map(|s| (*s, false)));
    for (name, is_field) in outputs {
        let column = format!("{prefix}{name}");
        let Some(at) = header.iter().position(|h| *h == column) else {
            header.push(column);
            continue;
        };
        let what = if is_field {
            format!("the --field column {column:?}")
        } else {
            format!("the status column {column:?}")
        };
        if at < input.len() {
            let theirs = match jobs {
                Some(file) => format!("a column of the jobs file {file}"),
                None => "the id column".to_string(),
            };
            let example = if prefix.is_empty() { "out_" } else { "out2_" };
            bail!(
                "{what} clashes with {theirs}: give --prefix to rename the output columns, e.g. --prefix {example} (which makes it {example}{column})"
            );
        }
        match fields.get(at - input.len()) {
            Some(_) if is_field => {
                bail!("--field {name} is given twice: give each field its own NAME")
            }
            Some(f) => bail!(
                "--field {} clashes with {what}: give the field another NAME",
                f.name
            ),
            None => bail!("two output columns are named {column:?}"),
        }
    }
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(name: &str) -> Field {
        Field {
            name: name.into(),
            pointer: "/x".into(),
        }
    }

    #[test]
    fn clashes_are_named() {
        let input = vec!["address".to_string(), "lat".to_string()];
        let err = header(&input, &[field("lat")], "", Some("jobs.csv"))
            .expect_err("clash")
            .to_string();
        assert!(err.contains("\"lat\" clashes with a column of the jobs file jobs.csv"));
        assert!(err.contains("--prefix"), "{err}");
        let h = header(&input, &[field("lat")], "geo_", Some("jobs.csv")).expect("prefix");
        assert_eq!(h[2], "geo_lat");
        assert_eq!(h.last().map(String::as_str), Some("geo_status"));
        let err = header(&input, &[field("x"), field("x")], "", None)
            .expect_err("twice")
            .to_string();
        assert!(err.contains("--field x is given twice"), "{err}");
        let err = header(&input, &[field("ok")], "", None)
            .expect_err("status")
            .to_string();
        assert!(
            err.contains("--field ok clashes with the status column \"ok\""),
            "{err}"
        );
        let err = header(&["id".to_string()], &[field("id")], "", None)
            .expect_err("id")
            .to_string();
        assert!(err.contains("clashes with the id column"), "{err}");
    }
}
