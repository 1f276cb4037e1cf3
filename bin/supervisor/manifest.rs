//! A results folder remembers its run: `DIR/.callpool-run.json` records
//! the options that shape the requests (the jobs file and how it is read,
//! the URL, method, parameters, headers, body, form) as they were written,
//! so that `supervisor export DIR` and `supervisor --resume --out DIR JOBS`
//! rebuild every request exactly as the run did without being told again.
//! A secret is kept only as its `${NAME}`: one written literally on the
//! command line is stored as `${NAME}` when an environment variable holds
//! it, else as `REDACTED` (enough for export, whose fingerprints leave
//! secrets out; a resume asks for it again).
//!
//! The name starts with a dot and has no `.json`, so it can never be a
//! result's (`<id>.json`, and ids never start with a dot); it is JSON.

use anyhow::{Context, bail};
use callpool_pool::folder::SafeDir;
use callpool_pool::options::TextEncoding;
use callpool_pool::redact::REDACTED;
use serde::{Deserialize, Serialize};

use crate::cli;
use crate::secrets::OptionSecret;

/// The manifest's name in the results folder.
pub(crate) const NAME: &str = callpool_pool::folder::MANIFEST_NAME;

/// Its largest size read.
const MAX_BYTES: u64 = 4 * 1024 * 1024;

/// Whether an option given now is the run's: equal, or equal around the
/// `REDACTED` that stands for a secret the manifest does not keep.
fn same(given: &str, then: &str) -> bool {
    match then.split_once(REDACTED) {
        None => given == then,
        Some((before, after)) => {
            given.len() >= before.len() + after.len()
                && given.starts_with(before)
                && given.ends_with(after)
        }
    }
}

/// What a run's requests were made of, as written.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    /// The format version of this file.
    version: u32,
    /// The jobs file, as an absolute path when it was a file.
    pub(crate) jobs: Option<String>,
    input_format: Option<String>,
    id_column: Option<String>,
    columns: Option<Vec<String>>,
    rename: Vec<String>,
    skip_empty: bool,
    delimiter: Option<String>,
    encoding: Option<String>,
    url: Option<String>,
    method: Option<String>,
    param: Vec<String>,
    header: Vec<String>,
    body: Option<String>,
    #[serde(default)]
    args: Option<String>,
    form: Vec<String>,
    user_agent: Option<String>,
    redact: Vec<String>,
}

impl Manifest {
    /// The manifest of a run with these options; `secrets` are the
    /// command line's secret options, `env` the environment.
    pub(crate) fn of_run(
        jobs: &str,
        input: &cli::JobsArgs,
        request: &cli::RequestArgs,
        secrets: &[OptionSecret],
        env: &[(String, String)],
    ) -> Self {
        let hide = |words: &[String]| crate::secrets::hide_in_command(words, secrets, env).0;
        let one = |w: &Option<String>| w.as_ref().map(|w| hide(std::slice::from_ref(w)).remove(0));
        Manifest {
            version: 1,
            jobs: (jobs != "-").then(|| {
                std::path::absolute(jobs)
                    .map_or_else(|_| jobs.to_string(), |p| p.display().to_string())
            }),
            input_format: input
                .input_format
                .map(|f| format!("{f:?}").to_ascii_lowercase()),
            id_column: input.id_column.clone(),
            columns: input.columns.clone(),
            rename: input.rename.clone(),
            skip_empty: input.skip_empty,
            delimiter: input.delimiter.map(|d| (d as char).to_string()),
            encoding: input.encoding.map(|e| e.name().to_string()),
            url: one(&request.url),
            method: request.method.clone(),
            param: hide(&request.param),
            header: hide(&request.header),
            body: request.body.clone(),
            args: request.args.clone(),
            form: hide(&request.form),
            user_agent: request.user_agent.clone(),
            redact: request.redact.clone(),
        }
    }

    /// Reads the manifest of a folder: `None` for a folder written before
    /// manifests, or none at all.
    pub(crate) fn read(dir: &std::path::Path) -> anyhow::Result<Option<Self>> {
        let Ok(safe) = SafeDir::open(dir) else {
            return Ok(None);
        };
        let mut buf = Vec::new();
        if !safe.read_bounded(NAME, MAX_BYTES, &mut buf)? {
            return Ok(None);
        }
        let m = serde_json::from_slice(&buf).with_context(|| {
            format!(
                "{} is not a manifest this version reads: remove it and give the run's options",
                safe.show(NAME).display()
            )
        })?;
        Ok(Some(m))
    }

    /// Its text; the engine writes it once the results folder is open.
    pub(crate) fn to_bytes(&self) -> anyhow::Result<Vec<u8>> {
        let mut text = serde_json::to_vec_pretty(self)?;
        text.push(b'\n');
        Ok(text)
    }

    /// Fills each option not given in `input` and `request` from the
    /// manifest; an option given with another value than the run's is an
    /// error naming both. `for_run`: a value the manifest holds only as
    /// `REDACTED` must be given again.
    pub(crate) fn fill(
        &self,
        dir: &std::path::Path,
        input: &mut cli::JobsArgs,
        request: &mut cli::RequestArgs,
        for_run: bool,
    ) -> anyhow::Result<()> {
        let clash = |flag: &str, given: &dyn std::fmt::Debug, then: &dyn std::fmt::Debug| {
            anyhow::anyhow!(
                "{flag} is given as {given:?}, but the run that wrote {} used {then:?} (recorded in {NAME}): give the run's value or leave the option out; for a new run with other options use --overwrite or another --out",
                dir.display()
            )
        };
        macro_rules! opt {
            ($flag:literal, $given:expr, $then:expr) => {
                match (&$given, &$then) {
                    (None, Some(_)) => $given = $then.clone(),
                    (Some(g), Some(t)) if g != t => return Err(clash($flag, g, t)),
                    _ => {}
                }
            };
        }
        macro_rules! list {
            ($flag:literal, $given:expr, $then:expr) => {
                if $given.is_empty() {
                    $given = $then.clone();
                } else if $given.len() != $then.len()
                    || $given.iter().zip(&$then).any(|(g, t)| !same(g, t))
                {
                    return Err(clash($flag, &$given, &$then));
                }
            };
        }
        opt!("--id-column", input.id_column, self.id_column);
        opt!("--columns", input.columns, self.columns);
        list!("--rename", input.rename, self.rename);
        if self.skip_empty {
            input.skip_empty = true;
        } else if input.skip_empty {
            return Err(clash("--skip-empty", &true, &false));
        }
        if let Some(f) = &self.input_format {
            let then = match f.as_str() {
                "csv" => cli::InputFormatArg::Csv,
                "tsv" => cli::InputFormatArg::Tsv,
                _ => cli::InputFormatArg::Jsonl,
            };
            opt!("--input-format", input.input_format, Some(then));
        }
        if let Some(d) = &self.delimiter {
            let then = callpool_pool::options::parse_delimiter(d).map_err(anyhow::Error::msg)?;
            opt!("--delimiter", input.delimiter, Some(then));
        }
        if let Some(e) = &self.encoding {
            let then = TextEncoding::from_label(e).map_err(anyhow::Error::msg)?;
            match input.encoding {
                None => input.encoding = Some(then),
                Some(g) if g.name() != then.name() => {
                    return Err(clash("--encoding", &g.name(), &then.name()));
                }
                _ => {}
            }
        }
        match (&request.url, &self.url) {
            (None, Some(_)) => request.url = self.url.clone(),
            (Some(g), Some(t)) if !same(g, t) => return Err(clash("--url", g, t)),
            _ => {}
        }
        opt!("--method", request.method, self.method);
        list!("--param", request.param, self.param);
        list!("--header", request.header, self.header);
        opt!("--body", request.body, self.body);
        opt!("--args", request.args, self.args);
        list!("--form", request.form, self.form);
        opt!("--user-agent", request.user_agent, self.user_agent);
        list!("--redact", request.redact, self.redact);
        if for_run {
            let words = request
                .url
                .iter()
                .chain(&request.param)
                .chain(&request.header)
                .chain(&request.form);
            if let Some(w) = words.into_iter().find(|w| w.contains(REDACTED)) {
                bail!(
                    "{w:?}: the run that wrote {} was given this secret on the command line, and its value is not kept: give the option again, as ${{NAME}} (e.g. --param 'key=${{API_KEY}}')",
                    dir.display()
                );
            }
        }
        Ok(())
    }
}
