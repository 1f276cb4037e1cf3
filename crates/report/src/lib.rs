//! `supervisor report`: one self-contained HTML page drawn from a results
//! folder. Pure: joblog lines, run log lines and result files come in
//! through the caller (which opens them the way the project opens files
//! in a results folder), an HTML text goes out.
//!
//! The joblog is read twice, streaming: once to find the run's parts and
//! lanes (the frame), once to count every attempt into the frame's time
//! buckets and timeline cells. Memory and the page's size depend on the
//! screen (buckets, lanes, columns, markers), not on the number of
//! attempts. The charts are SVG written here (svg.rs, charts.rs): no
//! library to vendor, no network at view time, and every series and lane
//! is an element a test can count.

mod charts;
mod fill;
mod frame;
mod hist;
pub mod joblog;
mod page;
pub mod runlog;
mod svg;
#[cfg(test)]
mod tests;
pub mod time;

use std::io::{self, BufRead};

pub use fill::ResultState;
pub use runlog::{Event, RUNLOG_NAME};

/// Problems named on stderr (and on the page) at most; the rest are
/// counted.
const MAX_WARNINGS: usize = 20;

/// Where the page's input comes from.
pub struct Sources<'a> {
    /// Opens the joblog from its start; called twice.
    pub joblog: &'a mut dyn FnMut() -> io::Result<Box<dyn BufRead + 'a>>,
    /// The joblog's path, for messages (`DIR/joblog.jsonl`).
    pub joblog_name: String,
    /// The run log, when there is one.
    pub runlog: Option<Box<dyn BufRead + 'a>>,
    /// The run log's path, for messages.
    pub runlog_name: String,
    /// What stands under a result file name (`<id>.json`, from
    /// [`result_name`]).
    pub result: &'a mut dyn FnMut(&str) -> ResultState,
    /// The page's title (the folder's name).
    pub title: String,
}

/// The page, and what could not be used, one line each (`FILE:LINE: ...`).
#[derive(Debug)]
pub struct Page {
    /// The HTML.
    pub html: String,
    /// Lines skipped, files that could not be read.
    pub warnings: Vec<String>,
    /// Attempts drawn.
    pub attempts: u64,
}

/// Gathers warnings: the first few in full, then a count.
#[derive(Default)]
struct Warnings {
    list: Vec<String>,
    more: u64,
}

impl Warnings {
    fn push(&mut self, w: String) {
        if self.list.len() < MAX_WARNINGS {
            self.list.push(w);
        } else {
            self.more += 1;
        }
    }

    fn done(mut self) -> Vec<String> {
        if self.more > 0 {
            self.list.push(format!("... and {} more", self.more));
        }
        self.list
    }
}

/// The file name of a job's result, when `id` is a valid id (1 to 200 of
/// `A-Z a-z 0-9 . _ -`, not starting with a dot): a joblog written by hand
/// could name anything, and only a valid id is looked up.
pub fn result_name(id: &str) -> Option<String> {
    let valid = !id.is_empty()
        && id.len() <= 200
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    valid.then(|| format!("{id}.json"))
}

/// Parses a joblog line into an attempt with its start and end (ms since
/// the epoch), or says what is wrong with it.
fn attempt(line: &[u8]) -> Result<(joblog::Attempt<'_>, i64, i64), String> {
    let a: joblog::Attempt<'_> =
        serde_json::from_slice(line).map_err(|e| format!("not a joblog line ({e})"))?;
    let s = time::parse_ms(&a.started_at)
        .ok_or_else(|| format!("started_at {:?} is not an RFC 3339 time", a.started_at))?;
    if !a.elapsed_ms.is_finite() || a.elapsed_ms < 0.0 {
        return Err(format!("elapsed_ms {} is not a duration", a.elapsed_ms));
    }
    let e = s + (a.elapsed_ms.min(1e12)) as i64;
    Ok((a, s, e))
}

/// Reads every line of `r`, calling `f` with each whole line and its
/// number; a line `f` refuses, or one cut short or too long, is named in
/// `warn` as `name:LINE: why`.
fn each_line(
    r: &mut dyn BufRead,
    name: &str,
    warn: &mut Warnings,
    mut f: impl FnMut(&[u8], u64) -> Result<(), String>,
) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut n = 0u64;
    while let Some(whole) = joblog::read_line(r, &mut buf)? {
        n += 1;
        if !whole {
            warn.push(if buf.is_empty() {
                format!("{name}:{n}: a line longer than 1 MiB, skipped")
            } else {
                format!("{name}:{n}: the last line is cut short (no newline at its end), skipped")
            });
            continue;
        }
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Err(why) = f(&buf, n) {
            warn.push(format!("{name}:{n}: {why}, skipped"));
        }
    }
    Ok(())
}

/// Draws the page.
pub fn build(src: Sources<'_>) -> io::Result<Page> {
    let title = src.title.clone();
    let (model, warnings) = model(src)?;
    let html = page::render(&model, &title, &warnings);
    Ok(Page {
        html,
        warnings,
        attempts: model.attempts,
    })
}

/// Reads everything into the model the page is drawn from.
fn model(src: Sources<'_>) -> io::Result<(fill::Model, Vec<String>)> {
    let mut warn = Warnings::default();
    let mut events = Vec::new();
    if let Some(mut r) = src.runlog {
        each_line(&mut *r, &src.runlog_name, &mut warn, |line, _| {
            match serde_json::from_slice::<Event>(line) {
                Ok(Event::Unknown) => {}
                Ok(e) => events.push(e),
                Err(e) => return Err(format!("not a run log line ({e})")),
            }
            Ok(())
        })?;
    }
    let mut scan = frame::Scan::new(&events);
    let name = &src.joblog_name;
    each_line(&mut *(src.joblog)()?, name, &mut warn, |line, _| {
        let (a, s, e) = attempt(line)?;
        scan.attempt(&a, s, e);
        Ok(())
    })?;
    let mut model = fill::Model::new(scan.finish(), &events);
    // The same lines again; their problems were told by the first pass.
    each_line(
        &mut *(src.joblog)()?,
        name,
        &mut Warnings::default(),
        |line, n| {
            if let Ok((a, s, e)) = attempt(line) {
                model.attempt(&a, n, s, e);
            }
            Ok(())
        },
    )?;
    model.finish();
    if model.lanes_dropped > 0 {
        warn.push(format!(
            "{name}: more than {} worker slots: {} attempts on the others are counted but not drawn in the timeline",
            frame::MAX_LANES,
            model.lanes_dropped
        ));
    }
    for k in &mut model.kinds {
        for f in &mut k.first {
            f.result = match result_name(&f.id) {
                Some(file) => (src.result)(&file),
                None => ResultState::Unreadable("not a valid id".into()),
            };
            if let ResultState::Unreadable(why) = &f.result {
                warn.push(format!(
                    "{name}:{}: the result of job {:?}: {why}",
                    f.line, f.id
                ));
            }
        }
    }
    Ok((model, warn.done()))
}

/// What a result file's bytes say: failed, ok, or not a result.
pub fn judge_result(bytes: &[u8]) -> ResultState {
    #[derive(serde::Deserialize)]
    struct Head {
        ok: bool,
    }
    match serde_json::from_slice::<Head>(bytes) {
        Ok(Head { ok: true }) => ResultState::NowOk,
        Ok(Head { ok: false }) => ResultState::Failed,
        Err(e) if e.is_data() => ResultState::Unreadable(format!("not a result file ({e})")),
        Err(e) => ResultState::Unreadable(format!("not JSON ({e})")),
    }
}
