//! `supervisor report DIR [--output FILE]`, and `--report FILE` at the end
//! of a run: the HTML page of a results folder (crates/report draws it;
//! this opens the files). Every file in the folder is opened the way the
//! project opens files there (safedir.rs: relative to the folder, never
//! through a link, a regular file checked before a byte is read); the page
//! is written into the folder the same way, or to the `--output` file the
//! user names.
//!
//! Exit status: 0 the page is written; 1 it is written, but some lines or
//! files could not be used (each named on stderr); 2 bad usage, no joblog,
//! or a page that cannot be written.

use std::io::{self, BufReader};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use callpool_pool::folder::JOBLOG_NAME;
use callpool_pool::folder::{MAX_RESULT_BYTES, SafeDir};
use callpool_report::{RUNLOG_NAME, ResultState, Sources};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

use crate::{status, ui};

/// The page's name in the folder when no `--output` is given.
pub const PAGE_NAME: &str = "report.html";

/// `supervisor report`.
pub fn main(args: &ReportArgs) -> u8 {
    match draw(&args.dir, args.output.as_deref()) {
        Ok((to, warnings)) => {
            for w in &warnings {
                eprintln!("supervisor: warning: {w}");
            }
            if to != Path::new("-") {
                eprintln!("supervisor: report written to {}", to.display());
            }
            if warnings.is_empty() {
                status::OK
            } else {
                status::FAILED
            }
        }
        Err(e) => {
            eprintln!("supervisor: error: {e:#}");
            status::USAGE
        }
    }
}

/// At the end of a run with `--report FILE`: draws the page, and says so
/// (or why not) on stderr. A page that cannot be drawn does not change
/// the run's exit status: the results are written either way.
pub fn after_run(out: &Path, file: &Path, quiet: bool) {
    match draw(out, Some(file)) {
        Ok((to, warnings)) => {
            if !quiet {
                for w in &warnings {
                    eprintln!("supervisor: warning: report: {w}");
                }
                if to != Path::new("-") {
                    eprintln!("supervisor: report written to {}", to.display());
                }
            }
        }
        Err(e) => eprintln!("supervisor: warning: the report could not be written: {e:#}"),
    }
}

/// Draws the page of `dir` and writes it to `output` (default
/// `dir/report.html`); returns where, and the warnings.
fn draw(dir: &Path, output: Option<&Path>) -> anyhow::Result<(PathBuf, Vec<String>)> {
    let folder = SafeDir::open(dir).with_context(|| {
        format!(
            "cannot open the results folder {}: give the --out folder of a run",
            dir.display()
        )
    })?;
    let joblog_shown = folder.show(JOBLOG_NAME).display().to_string();
    match folder.odd(JOBLOG_NAME) {
        Ok(None) => {}
        Ok(Some(odd)) => bail!(
            "{}",
            callpool_pool::folder::not_regular(&folder.show(JOBLOG_NAME), odd)
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => bail!(
            "{joblog_shown} does not exist: {} is not the results folder of a run (or the run has not ended an attempt yet)",
            dir.display()
        ),
        Err(e) => bail!("cannot read {joblog_shown}: {e}"),
    }
    let mut open_joblog = || -> io::Result<Box<dyn io::BufRead>> {
        let f = folder.open_regular(JOBLOG_NAME, OFlag::O_RDONLY, Mode::empty())?;
        Ok(Box::new(BufReader::with_capacity(256 * 1024, f)))
    };
    let runlog: Option<Box<dyn io::BufRead>> =
        match folder.open_regular(RUNLOG_NAME, OFlag::O_RDONLY, Mode::empty()) {
            Ok(f) => Some(Box::new(BufReader::new(f))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => bail!("cannot read {}: {e}", folder.show(RUNLOG_NAME).display()),
        };
    let mut buf = Vec::new();
    let mut result = |name: &str| -> ResultState {
        match folder.read_bounded(name, MAX_RESULT_BYTES, &mut buf) {
            Ok(true) => callpool_report::judge_result(&buf),
            Ok(false) => ResultState::Missing,
            Err(e) => ResultState::Unreadable(e.to_string()),
        }
    };
    let title = std::path::absolute(dir)
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| dir.display().to_string());
    let page = callpool_report::build(Sources {
        joblog: &mut open_joblog,
        joblog_name: joblog_shown.clone(),
        runlog,
        runlog_name: folder.show(RUNLOG_NAME).display().to_string(),
        result: &mut result,
        title,
    })
    .with_context(|| format!("cannot read {joblog_shown}"))?;
    let to = match output {
        Some(path) => {
            ui::write_atomically(path, page.html.as_bytes())
                .with_context(|| format!("cannot write the page to {}", path.display()))?;
            path.to_path_buf()
        }
        None => {
            folder
                .write_atomically(PAGE_NAME, page.html.as_bytes())
                .with_context(|| {
                    format!(
                        "cannot write the page to {}",
                        folder.show(PAGE_NAME).display()
                    )
                })?;
            folder.show(PAGE_NAME)
        }
    };
    Ok((to, page.warnings))
}

/// `supervisor report`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct ReportArgs {
    /// The results folder (the run's --out).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,

    /// Write the page to FILE (`-` for stdout) instead of DIR/report.html;
    /// written whole or not at all.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

/// The end of a run, whichever way it comes (its summary, an error that
/// stops it, a `?` in between): the run log's last line, then the page of
/// `--report`. Dropped at the end of the run's function.
pub struct AtEnd {
    /// The run log, to close with the run's end.
    pub runlog: crate::runlog::RunLog,
    /// `--report FILE`.
    pub report: Option<PathBuf>,
    /// The results folder.
    pub out: PathBuf,
    /// `--quiet`.
    pub quiet: bool,
    /// The summary and exit status, once known; an error ends with 2.
    pub ended: Option<(callpool_pool::Summary, u8)>,
}

impl Drop for AtEnd {
    fn drop(&mut self) {
        match self.ended.take() {
            Some((summary, code)) => self.runlog.end(Some(&summary), code),
            None => self.runlog.end(None, status::USAGE),
        }
        if let Some(file) = &self.report {
            after_run(&self.out, file, self.quiet);
        }
    }
}
