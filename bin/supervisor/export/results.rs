//! Result files as `export` reads them: one at a time, and only the parts
//! a table shows (the history and the headers are skipped, not kept).

use std::io;
use std::path::Path;

use callpool_pool::folder::{MAX_RESULT_BYTES, SafeDir};

use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;

use super::Cell;

/// Temporary names the supervisor writes results under before renaming
/// them; never results.
const TMP_PREFIX: &str = ".tmp.";

/// What a row's result file holds.
pub(super) enum Read {
    /// No such file: the job has not run.
    Missing,
    /// Not a result: why.
    Bad(String),
    /// A result.
    Found(Box<ResultView>),
}

/// The parts of `DIR/<id>.json` a table shows.
#[derive(Deserialize)]
pub(super) struct ResultView {
    pub(super) ok: bool,
    #[serde(default)]
    attempts: Value,
    #[serde(default)]
    request: Option<RequestView>,
    #[serde(default)]
    response: Option<ResponseView>,
    /// What a job that is not an HTTP call (`args`) returned.
    #[serde(default)]
    value: Option<Value>,
    #[serde(default)]
    error: Option<ErrorView>,
    #[serde(default)]
    dedup_of: Value,
}

#[derive(Deserialize)]
struct RequestView {
    #[serde(default)]
    fingerprint: Option<String>,
}

#[derive(Deserialize)]
struct ResponseView {
    #[serde(default)]
    status: Value,
    #[serde(default)]
    body: Option<Value>,
}

#[derive(Deserialize)]
struct ErrorView {
    #[serde(default)]
    kind: Value,
    #[serde(default)]
    message: Value,
}

impl ResultView {
    /// The fingerprint of the request this result answers, when the result
    /// records it (results of older runs do not).
    pub(super) fn fingerprint(&self) -> Option<&str> {
        self.request.as_ref()?.fingerprint.as_deref()
    }

    /// The value at `pointer` in the response body, or in the `value` of
    /// a job that is not an HTTP call; empty when there is neither or
    /// nothing there.
    pub(super) fn field(&self, pointer: &str) -> Cell {
        match &self.response {
            Some(r) => r.body.as_ref()?.pointer(pointer).cloned(),
            None => self.value.as_ref()?.pointer(pointer).cloned(),
        }
    }

    /// Pushes the cells of every status column but `status`: ok, attempts,
    /// http_status, error_kind, error, dedup_of.
    pub(super) fn push_status(&self, cells: &mut Vec<Cell>) {
        let cell = |v: &Value| (!v.is_null()).then(|| v.clone());
        cells.push(Some(Value::Bool(self.ok)));
        cells.push(cell(&self.attempts));
        cells.push(self.response.as_ref().and_then(|r| cell(&r.status)));
        cells.push(self.error.as_ref().and_then(|e| cell(&e.kind)));
        cells.push(self.error.as_ref().and_then(|e| cell(&e.message)));
        cells.push(cell(&self.dedup_of));
    }
}

/// Reads one result file; `buf` is reused from row to row. The file is
/// opened relative to the folder, never through a link, and read only if
/// it is a regular file of a result's size at most (see safedir.rs); the
/// messages of [`Read::Bad`] name the file.
pub(super) fn read(dir: &SafeDir, id: &str, buf: &mut Vec<u8>) -> Read {
    let name = format!("{id}.json");
    let path = dir.show(&name);
    match dir.read_bounded(&name, MAX_RESULT_BYTES, buf) {
        Ok(false) => Read::Missing,
        // It says what stands there, with its path.
        Err(e) if e.kind() == io::ErrorKind::InvalidData => Read::Bad(e.to_string()),
        Err(e) => Read::Bad(format!("{}: cannot be read ({e})", path.display())),
        Ok(true) => match serde_json::from_slice::<ResultView>(buf) {
            Ok(v) => Read::Found(Box::new(v)),
            Err(e) if e.is_data() => {
                Read::Bad(format!("{}: not a result file ({e})", path.display()))
            }
            Err(e) => Read::Bad(format!("{}: not JSON ({e})", path.display())),
        },
    }
}

/// The result files of a folder.
pub(super) struct Listing {
    /// Their ids (file names less `.json`), sorted.
    pub(super) ids: Vec<String>,
    /// Temporary files skipped.
    pub(super) temporary: usize,
}

/// Lists `dir`'s result files: every `*.json` whose name does not start
/// with a dot (ids never do; `.tmp.*` are half-written results).
pub(super) fn list(dir: &Path) -> anyhow::Result<Listing> {
    let cannot = || format!("cannot list the results folder {}", dir.display());
    let mut listing = Listing {
        ids: Vec::new(),
        temporary: 0,
    };
    for entry in std::fs::read_dir(dir).with_context(cannot)? {
        let entry = entry.with_context(cannot)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with(TMP_PREFIX) {
            listing.temporary += 1;
            continue;
        }
        if name.starts_with('.') {
            continue;
        }
        let Some(id) = name.strip_suffix(".json") else {
            continue;
        };
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        listing.ids.push(id.to_string());
    }
    listing.ids.sort_unstable();
    Ok(listing)
}
