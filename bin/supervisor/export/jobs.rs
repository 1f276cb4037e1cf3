//! The jobs file's side of `export --jobs`: its rows in order, each with
//! its input columns and its job rebuilt as the run built it (the job's id
//! names its result file, its fingerprint tells a stale result).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use callpool_pool::RequestDefaults;
use callpool_pool::folder::Job;
use callpool_pool::options::{
    InputFormat, JobsInput, Layout, ReadError, Record, Records, unterminated_quote,
};
use callpool_pool::redact::REDACTED;
use serde_json::Value;

use super::Cell;
use crate::cli::ExportArgs;

/// Bad lines listed before the rest are only counted.
const MAX_LISTED: usize = 50;

/// What a person who gets a bad-job error is most likely missing.
const HINT: &str = "export rebuilds each row's job as the run did, to find its result file and tell a stale result: give it the options of the run (--url, --param, --header, --user-agent, --redact, and for a CSV or TSV file --id-column, --columns, --rename, --skip-empty)";

/// The column a JSON Lines parameter named `id` gets, beside the job's id.
const PARAM_ID_COLUMN: &str = "params.id";

/// The rows of a jobs file, checked.
pub(crate) struct JobRows {
    name: String,
    records: Records,
    layout: Layout,
    defaults: RequestDefaults,
    columns: Vec<String>,
    /// Per input column: its values are secret, and shown as REDACTED.
    secret: Vec<bool>,
    /// JSON Lines: each parameter name's place among the columns after
    /// `id`.
    params: Option<HashMap<String, usize>>,
    /// A CSV file's delimiter, as given or as found in its header line.
    csv_delimiter: Option<u8>,
}

/// The part of a JSON Lines job that becomes columns.
#[derive(serde::Deserialize, Default)]
struct LineParams {
    #[serde(default)]
    params: Option<serde_json::Map<String, Value>>,
}

impl JobRows {
    /// Reads the options, checks every record of `file` (and lists every
    /// bad one, `FILE:LINE: what`), and opens it again for the export.
    /// `defaults` are the request options, as `crate::request_defaults`
    /// made them for export.
    pub(crate) fn open(
        file: &str,
        args: &ExportArgs,
        defaults: RequestDefaults,
    ) -> anyhow::Result<Self> {
        if file == "-" {
            bail!(
                "--jobs -: export reads the jobs file twice, and stdin can be read only once: give the jobs file's path"
            );
        }
        let input = crate::jobs_input(&args.input, file)?;
        let path = PathBuf::from(file);
        let keys = check(&path, file, &input, &defaults)?;
        let records = open_records(&path, file, &input)?;
        let layout = records.layout().clone();
        let csv_delimiter = records
            .delimiter()
            .filter(|_| input.format == InputFormat::Csv);
        let (columns, secret, params) = match keys {
            None => {
                // A column is secret when it goes out as a secret parameter.
                let secret = layout
                    .columns()
                    .iter()
                    .map(|c| {
                        defaults.redactor.is_secret(c)
                            || input
                                .table
                                .rename
                                .iter()
                                .any(|(from, to)| from == c && defaults.redactor.is_secret(to))
                    })
                    .collect();
                (layout.columns().to_vec(), secret, None)
            }
            Some(keys) => {
                let mut columns = vec!["id".to_string()];
                let mut secret = vec![false];
                let mut index = HashMap::new();
                for (i, key) in keys.into_iter().enumerate() {
                    secret.push(defaults.redactor.is_secret(&key));
                    columns.push(if key == "id" {
                        PARAM_ID_COLUMN.to_string()
                    } else {
                        key.clone()
                    });
                    index.insert(key, i);
                }
                (columns, secret, Some(index))
            }
        };
        Ok(JobRows {
            name: file.to_string(),
            records,
            layout,
            defaults,
            columns,
            secret,
            params,
            csv_delimiter,
        })
    }

    /// A CSV jobs file's delimiter (`None` for TSV and JSON Lines).
    pub(crate) fn csv_delimiter(&self) -> Option<u8> {
        self.csv_delimiter
    }

    /// The input's columns: a table's header; for JSON Lines `id` and the
    /// parameter names in the order they first appear.
    pub(crate) fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The next row: pushes its input cells and returns its job.
    pub(crate) fn next_row(&mut self, cells: &mut Vec<Cell>) -> anyhow::Result<Option<Job>> {
        let changed =
            "the jobs file changed while export read it: export it again once it is left alone";
        let (line, record) = match self.records.next() {
            None => return Ok(None),
            Some(Ok(r)) => r,
            Some(Err(ReadError::Io(e))) => bail!("cannot read the jobs file {}: {e}", self.name),
            Some(Err(ReadError::Bad { line, msg })) => {
                bail!("{}:{line}: {msg}\n{changed}", self.name)
            }
        };
        let job = self
            .layout
            .job(&record, line, &self.defaults)
            .map_err(|msg| anyhow!("{}:{line}: {msg}\n{changed}", self.name))?;
        match (&record, &self.params) {
            (Record::Row(fields), _) => {
                cells.extend(fields.iter().zip(&self.secret).map(|(value, &secret)| {
                    Some(Value::String(if secret && !value.is_empty() {
                        REDACTED.to_string()
                    } else {
                        value.clone()
                    }))
                }));
            }
            (Record::Json(text), Some(index)) => {
                cells.push(Some(Value::String(job.id.clone())));
                let start = cells.len();
                cells.resize(start + index.len(), None);
                let line: LineParams = serde_json::from_str(text).unwrap_or_default();
                for (key, value) in line.params.unwrap_or_default() {
                    if let Some(&i) = index.get(&key) {
                        let secret = self.secret[i + 1] && !value.is_null();
                        cells[start + i] = Some(if secret {
                            Value::String(REDACTED.to_string())
                        } else {
                            value
                        });
                    }
                }
            }
            (Record::Json(_), None) => {}
        }
        Ok(Some(job))
    }
}

fn open_records(path: &Path, name: &str, input: &JobsInput) -> anyhow::Result<Records> {
    match Records::open(path, input) {
        Ok(r) => Ok(r),
        Err(ReadError::Io(e)) => Err(anyhow!(
            "cannot read the jobs file {name}: {e}; give the path of the file the run read"
        )),
        Err(ReadError::Bad { line, msg }) => Err(anyhow!("{name}:{line}: {msg}")),
    }
}

/// The check pass: builds every job as the run did and lists every bad
/// record; for JSON Lines, also returns the parameter names, in the order
/// they first appear (only the names are kept).
fn check(
    path: &Path,
    name: &str,
    input: &JobsInput,
    defaults: &RequestDefaults,
) -> anyhow::Result<Option<Vec<String>>> {
    let records = open_records(path, name, input)?;
    let layout = records.layout().clone();
    let jsonl = input.format == InputFormat::Jsonl;
    // A table's rows give only parameters: without --url every row fails
    // the same way, so say it once.
    let no_url = !jsonl
        && defaults.base_url.is_none()
        && defaults.templates.url.is_none()
        && defaults.templates.args.is_none();
    let mut keys = Vec::new();
    let mut seen = HashSet::new();
    let mut listed = 0usize;
    let mut total = 0usize;
    let mut note = |msg: String| {
        total += 1;
        if listed < MAX_LISTED {
            listed += 1;
            eprintln!("{msg}");
        }
    };
    for item in records {
        let (line, record) = match item {
            Ok(r) => r,
            Err(ReadError::Io(e)) => bail!("cannot read the jobs file {name}: {e}"),
            Err(ReadError::Bad { line, msg }) => {
                note(format!("{name}:{line}: {msg}"));
                continue;
            }
        };
        if no_url {
            bail!(
                "{name}:{line}: the rows of a table give only parameters: give the URL the run sent them to with --url BASE\n{HINT}"
            );
        }
        if let Err(msg) = layout.job(&record, line, defaults) {
            note(format!("{name}:{line}: {msg}"));
            continue;
        }
        if let (true, Record::Json(text)) = (jsonl, &record) {
            let params = serde_json::from_str::<LineParams>(text)
                .ok()
                .and_then(|l| l.params)
                .unwrap_or_default();
            for key in params.keys() {
                if !seen.contains(key.as_str()) {
                    seen.insert(key.clone());
                    keys.push(key.clone());
                }
            }
        }
    }
    if input.format == InputFormat::Csv {
        match unterminated_quote(path, input) {
            Ok(Some(line)) => note(format!(
                "{name}:{line}: a quoted field opens here and is never closed"
            )),
            Ok(None) => {}
            Err(e) => bail!("cannot read the jobs file {name}: {e}"),
        }
    }
    if total > 0 {
        if total > listed {
            eprintln!("... and {} more problems", total - listed);
        }
        bail!(
            "{total} bad line{} in the jobs file {name}; nothing was exported\n{HINT}",
            if total == 1 { "" } else { "s" }
        );
    }
    Ok(jsonl.then_some(keys))
}
