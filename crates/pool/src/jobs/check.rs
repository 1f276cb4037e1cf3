//! The validation pass: every line of the jobs file is checked before any
//! worker starts, so a bad file costs nothing and leaves nothing behind.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::io;
use std::path::{Path, PathBuf};

use crate::files::output::{Prior, prior_result};
use crate::files::safedir::{Odd, SafeDir, not_regular};
use crate::jobs::RequestDefaults;
use crate::jobs::table::{InputFormat, JobsInput, ReadError, Records, unterminated_quote};

/// How many problems are listed before the rest are only counted.
const MAX_LISTED: usize = 50;

/// Why the jobs file cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The file could not be opened or read.
    #[error("{name}: {source}")]
    Io {
        /// The file as the user named it.
        name: String,
        /// What failed.
        source: io::Error,
    },
    /// Some lines are not valid jobs; each problem reads `FILE:LINE: what`.
    #[error("{}", format_problems(.problems, *.total))]
    Invalid {
        /// The first problems, each `FILE:LINE: what is wrong`.
        problems: Vec<String>,
        /// How many problems there are in all.
        total: usize,
    },
    /// Names of this job list's results hold something other than a
    /// result file (a link, a FIFO, a folder): nothing is run, nothing
    /// there is followed or read.
    #[error("{}\n{} of this job list's result names in the results folder {}; nothing was run", .problems.join("\n"), .total, if *.total == 1 { "is not a regular file" } else { "are not regular files" })]
    NotResults {
        /// The first entries, each `DIR/ID.json is a symbolic link, ...`.
        problems: Vec<String>,
        /// How many there are in all.
        total: usize,
    },
}

fn format_problems(problems: &[String], total: usize) -> String {
    let mut out = problems.join("\n");
    if total > problems.len() {
        out.push_str(&format!(
            "\n... and {} more problems",
            total - problems.len()
        ));
    }
    out.push_str(&format!(
        "\n{total} bad line{} in the jobs file; nothing was run",
        if total == 1 { "" } else { "s" }
    ));
    out
}

/// A jobs file that passed the check: the plan the run consumes (where to
/// read the jobs, how many there are, what `--resume` and `--dedup` make
/// of them). The rows themselves are not kept, a file may hold millions:
/// the run's job source streams them again and skips by the same
/// [`OnResume`] rule.
#[derive(Debug)]
pub struct CheckedJobs {
    /// The file to read jobs from (a spooled copy when the input was stdin).
    pub path: PathBuf,
    /// The name to show people: the path as given, or `<stdin>`.
    pub name: String,
    /// Things worth a warning that do not stop the run, each `FILE:LINE:
    /// what` (the first few, then a count).
    pub warnings: Vec<String>,
    /// How many jobs it holds.
    pub count: u64,
    /// How many of them already have a result file in the output folder.
    pub existing: u64,
    /// Of those, what `--resume` will make of them.
    pub prior: PriorCounts,
    /// With `--dedup`: how many jobs that will run share each request
    /// (by a 64-bit hash of its fingerprint), for requests made more than
    /// once; the loop keeps an answer only while more of its jobs are to
    /// come.
    pub repeats: HashMap<u64, u32>,
    /// The hasher of `repeats`' keys.
    pub repeat_hasher: RandomState,
    /// How it is read.
    pub input: JobsInput,
    /// Keeps a stdin spool alive as long as the jobs are read.
    _spool: Option<tempfile::TempPath>,
}

/// What the results already in the folder mean for `--resume`.
#[derive(Debug, Clone, Copy, Default)]
pub struct PriorCounts {
    /// Ok results for the same request: skipped.
    pub same: u64,
    /// Ok results for a request that has changed since: run again.
    pub changed: u64,
    /// Ok results from before results had fingerprints: skipped.
    pub unknown: u64,
}

/// What `--resume` does with a job, from what its result file holds: the
/// one rule, used by the check (to count what will run) and by the job
/// source (to skip), so that the two can never disagree.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OnResume {
    /// An ok result answers it already: skip it.
    Skip,
    /// No ok result: run it.
    Run,
    /// An ok result for a request that has changed since (an edited row):
    /// run it again.
    RunAgain,
}

impl OnResume {
    /// The rule. A result from before fingerprints is skipped, as it was
    /// then: a change to its row cannot be seen.
    pub(crate) fn of(prior: Prior) -> Self {
        match prior {
            Prior::Same | Prior::Unknown => OnResume::Skip,
            Prior::Changed => OnResume::RunAgain,
            Prior::Missing => OnResume::Run,
        }
    }
}

/// What the check pass is asked to work out besides the jobs' validity.
#[derive(Debug, Clone, Copy, Default)]
pub struct CheckFor {
    /// The run will skip jobs with an ok result (`--resume`).
    pub resume: bool,
    /// The run calls each distinct request once (`--dedup`).
    pub dedup: bool,
}

/// Reads and checks the whole jobs file (`-` for stdin). `out_dir` is the
/// results folder; jobs that already have a result there are counted, so the
/// caller can refuse to overwrite them.
pub fn check_jobs(
    input: &str,
    format: &JobsInput,
    defaults: &RequestDefaults,
    out_dir: &Path,
    want: CheckFor,
) -> Result<CheckedJobs, CheckError> {
    let (path, name, spool) = if input == "-" {
        // stdin cannot be read twice, and jobs are streamed a second time at
        // dispatch, so it is spooled to a temporary file first.
        let io_err = |source| CheckError::Io {
            name: "<stdin>".into(),
            source,
        };
        let mut tmp = tempfile::NamedTempFile::new().map_err(io_err)?;
        io::copy(&mut io::stdin().lock(), &mut tmp).map_err(io_err)?;
        let spool = tmp.into_temp_path();
        (spool.to_path_buf(), "<stdin>".to_string(), Some(spool))
    } else {
        (PathBuf::from(input), input.to_string(), None)
    };
    let io_err = |source| CheckError::Io {
        name: name.clone(),
        source,
    };
    let existing_names = existing_result_names(out_dir).map_err(|source| CheckError::Io {
        name: out_dir.display().to_string(),
        source,
    })?;
    // Prior results are read relative to the folder, never through a link.
    let dir = match existing_names.is_empty() {
        true => None,
        false => Some(SafeDir::open(out_dir).map_err(|source| CheckError::Io {
            name: out_dir.display().to_string(),
            source,
        })?),
    };
    let mut warnings = Vec::new();
    let mut fragments = 0usize;
    let mut odd_entries = Vec::new();
    let mut total_odd = 0usize;

    let mut problems = Vec::new();
    let mut total_problems = 0usize;
    let mut note = |msg: String| {
        total_problems += 1;
        if problems.len() < MAX_LISTED {
            problems.push(msg);
        }
    };
    // Duplicate ids are found through 64-bit hashes, not the ids themselves,
    // so that checking a file of millions of jobs stays small; a hash match
    // is confirmed on the real ids afterwards.
    let hasher = RandomState::new();
    let mut seen: HashMap<u64, u64> = HashMap::new();
    let mut suspects: Vec<(u64, u64)> = Vec::new();
    let mut count = 0u64;
    let mut existing = 0u64;
    let mut prior = PriorCounts::default();
    let repeat_hasher = RandomState::new();
    let mut repeats: HashMap<u64, u32> = HashMap::new();

    let no_url = format.format != InputFormat::Jsonl
        && defaults.base_url.is_none()
        && defaults.templates.url.is_none()
        && defaults.templates.args.is_none();
    if no_url {
        // Every row would say so: say it once.
        note(format!(
            "{name}: a table's rows give only parameters: give the URL they go to with --url BASE"
        ));
    }
    match Records::open(&path, format) {
        Err(ReadError::Io(e)) => return Err(io_err(e)),
        Err(ReadError::Bad { line, msg }) => note(format!("{name}:{line}: {msg}")),
        Ok(records) if !no_url => {
            let layout = records.layout().clone();
            let mut unknown_columns = 0;
            if format.format != InputFormat::Jsonl {
                // Every row would say so: say it once, and read no row.
                let names: Vec<&str> = layout.param_names().collect();
                for (option, hole) in defaults.templates.holes_by_option() {
                    if !names.contains(&hole.name.as_str()) {
                        unknown_columns += 1;
                        note(format!(
                            "{name}: {option} names {{{}}}, which is not a column sent from this table (its columns: {}); a placeholder names a column as --rename calls it, and one left out by --columns cannot be used",
                            hole.name,
                            names.join(", ")
                        ));
                    }
                }
            }
            for item in records.take_while(|_| unknown_columns == 0) {
                let (line_no, record) = match item {
                    Ok(r) => r,
                    Err(ReadError::Io(e)) => return Err(io_err(e)),
                    Err(ReadError::Bad { line, msg }) => {
                        note(format!("{name}:{line}: {msg}"));
                        continue;
                    }
                };
                match layout.job(&record, line_no, defaults) {
                    Ok(job) => {
                        count += 1;
                        if job.url.contains('#') {
                            fragments += 1;
                            if fragments <= 3 {
                                warnings.push(format!(
                                    "{name}:{line_no}: the URL holds a \"#\": what follows it is a fragment, which is never sent to the server; if it belongs to the path or a value, write it %23"
                                ));
                            }
                        }
                        if let Some(prev) = seen.insert(hasher.hash_one(&job.id), line_no) {
                            suspects.push((prev, line_no));
                        }
                        let mut will_run = true;
                        let entry = existing_names.get(&job.id);
                        if let (Some(Some(odd)), Some(dir)) = (entry, &dir) {
                            total_odd += 1;
                            if odd_entries.len() < MAX_LISTED {
                                let path = dir.show(&format!("{}.json", job.id));
                                odd_entries.push(format!(
                                    "{name}:{line_no}: {}",
                                    not_regular(&path, *odd)
                                ));
                            }
                        } else if let (Some(None), Some(dir)) = (entry, &dir) {
                            existing += 1;
                            let p = prior_result(dir, &job.id, &job.fingerprint);
                            match p {
                                Prior::Same => prior.same += 1,
                                Prior::Changed => prior.changed += 1,
                                Prior::Unknown => prior.unknown += 1,
                                Prior::Missing => {}
                            }
                            will_run = !want.resume || OnResume::of(p) != OnResume::Skip;
                        }
                        if want.dedup && will_run {
                            *repeats
                                .entry(repeat_hasher.hash_one(&job.fingerprint))
                                .or_default() += 1;
                        }
                    }
                    Err(msg) => note(format!("{name}:{line_no}: {msg}")),
                }
            }
        }
        Ok(_) => {}
    }
    if format.format == InputFormat::Csv {
        if let Some(line) = unterminated_quote(&path, format).map_err(io_err)? {
            note(format!(
                "{name}:{line}: a quoted field opens here and is never closed"
            ));
        }
    }

    if !suspects.is_empty() {
        for msg in confirm_duplicates(&path, &name, format, defaults, &suspects).map_err(io_err)? {
            note(msg);
        }
    }
    if total_problems > 0 {
        return Err(CheckError::Invalid {
            problems,
            total: total_problems,
        });
    }
    if fragments > 3 {
        warnings.push(format!(
            "{name}: ... and {} more URLs with a \"#\"",
            fragments - 3
        ));
    }
    if total_odd > 0 {
        return Err(CheckError::NotResults {
            problems: odd_entries,
            total: total_odd,
        });
    }
    Ok(CheckedJobs {
        path,
        name,
        count,
        existing,
        prior,
        repeats: {
            repeats.retain(|_, n| *n > 1);
            repeats
        },
        repeat_hasher,
        input: format.clone(),
        _spool: spool,
        warnings,
    })
}

/// The ids (file names less `.json`) of the results already in `out_dir`,
/// each with what stands there when it is not a regular file (from the
/// folder's listing: nothing is followed).
fn existing_result_names(out_dir: &Path) -> io::Result<HashMap<String, Option<Odd>>> {
    let entries = match std::fs::read_dir(out_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(HashMap::new()),
        Err(e) => return Err(e),
    };
    let mut names = HashMap::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) {
            names.insert(id.to_string(), Odd::of(entry.file_type()?));
        }
    }
    Ok(names)
}

/// Re-reads the records whose id hashes collided and reports the real
/// duplicates, naming both lines.
fn confirm_duplicates(
    path: &Path,
    name: &str,
    format: &JobsInput,
    defaults: &RequestDefaults,
    suspects: &[(u64, u64)],
) -> io::Result<Vec<String>> {
    let wanted: HashSet<u64> = suspects.iter().flat_map(|&(a, b)| [a, b]).collect();
    let mut ids: HashMap<u64, String> = HashMap::new();
    let records = match Records::open(path, format) {
        Ok(r) => r,
        Err(ReadError::Io(e)) => return Err(e),
        Err(ReadError::Bad { .. }) => return Ok(Vec::new()),
    };
    let layout = records.layout().clone();
    for (line_no, record) in records.flatten() {
        if wanted.contains(&line_no) {
            if let Ok(job) = layout.job(&record, line_no, defaults) {
                ids.insert(line_no, job.id);
            }
        }
    }
    Ok(suspects
        .iter()
        .filter_map(|(a, b)| {
            let id = ids.get(b)?;
            (ids.get(a) == Some(id))
                .then(|| format!("{name}:{b}: duplicate id {id:?} (first used on line {a})"))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn check(content: &str) -> Result<CheckedJobs, CheckError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("jobs.jsonl");
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(content.as_bytes()))
            .expect("write");
        check_jobs(
            path.to_str().expect("utf8 path"),
            &JobsInput::jsonl(),
            &RequestDefaults::default(),
            &dir.path().join("results"),
            CheckFor::default(),
        )
    }

    #[test]
    fn resume_skips_ok_results_of_the_same_or_an_unknown_request_only() {
        assert_eq!(OnResume::of(Prior::Same), OnResume::Skip);
        assert_eq!(OnResume::of(Prior::Unknown), OnResume::Skip);
        assert_eq!(OnResume::of(Prior::Changed), OnResume::RunAgain);
        assert_eq!(OnResume::of(Prior::Missing), OnResume::Run);
    }

    #[test]
    fn counts_jobs_and_skips_blank_lines() {
        let ok = check("{\"url\":\"http://h/\"}\n\n  \n{\"url\":\"http://h/\"}\n").expect("valid");
        assert_eq!(ok.count, 2);
        assert_eq!(ok.existing, 0);
    }

    #[test]
    fn reports_every_bad_line_and_duplicates() {
        let content = "{\"id\":\"a\",\"url\":\"http://h/\"}\nnope\n{\"id\":\"a\",\"url\":\"http://h/\"}\n{\"id\":\"line-5\",\"url\":\"http://h/\"}\n{\"url\":\"http://h/\"}\n";
        let Err(CheckError::Invalid { problems, total }) = check(content) else {
            panic!("should fail")
        };
        assert_eq!(total, 3, "{problems:?}");
        assert!(
            problems[0].ends_with("jobs.jsonl:2: invalid JSON: expected ident at line 1 column 2"),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.ends_with(":3: duplicate id \"a\" (first used on line 1)")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|p| p.ends_with(":5: duplicate id \"line-5\" (first used on line 4)")),
            "{problems:?}"
        );
    }
}
