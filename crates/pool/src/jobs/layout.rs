//! What a table's header means for its rows.

use serde_json::Value;

use crate::jobs::table::Record;
use crate::jobs::{Job, JobLine, RequestDefaults, build_job, check_id, default_id, parse_line};

/// What a table's header means for its rows: where the id is, and which
/// column goes out under which parameter name. JSON Lines have none.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// The header, as read (a table only).
    pub header: Vec<String>,
    pub(crate) id: Option<usize>,
    pub(crate) params: Vec<(usize, String)>,
    pub(crate) skip_empty: bool,
    /// When the header line seems to use another delimiter than the one
    /// the table is read with: what to say after an error that it may
    /// explain.
    pub(crate) hint: Option<String>,
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
                    return Err(with_hint(
                        format!(
                            "the row has {} field{}, the header has {}",
                            fields.len(),
                            if fields.len() == 1 { "" } else { "s" },
                            self.header.len()
                        ),
                        self.hint.as_deref(),
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

/// `msg`, and the delimiter hint after it when there is one.
pub(crate) fn with_hint(msg: String, hint: Option<&str>) -> String {
    match hint {
        Some(h) => format!("{msg}; {h}"),
        None => msg,
    }
}
