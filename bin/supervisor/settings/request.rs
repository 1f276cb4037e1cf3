//! The request options (`--url`, `--param`, `--header`, `--method`,
//! `--body`, `--form`, `--user-agent`, `--redact`), validated and turned
//! into what every job gets, once, for a run and for `export`.

use anyhow::{Context, bail};
use callpool_pool::RequestDefaults;
use callpool_pool::options::{Body, Templates, Text};
use callpool_pool::options::{expand_with, has_env_ref};
use callpool_pool::redact::{REDACTED, Redactor};

use crate::cli;

/// What the command line adds to every job, with `${NAME}` expanded.
///
/// For `export` (`for_export`), a variable that is not set stands for
/// `REDACTED`: a secret's value never enters a fingerprint, so export
/// needs only to know that it was given.
pub(crate) fn request_defaults(
    args: &cli::RequestArgs,
    for_export: bool,
) -> anyhow::Result<RequestDefaults> {
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .or_else(|| for_export.then(|| REDACTED.to_string()))
    };
    let expand =
        |flag: &str, v: &str| expand_with(v, env).map_err(|e| anyhow::anyhow!("{flag} {v:?}: {e}"));
    let mut templates = Templates::default();
    let url_template = match &args.url {
        Some(u) if u.contains('{') || u.contains('}') => {
            Some(Text::parse_with(u, "--url", &env).map_err(anyhow::Error::msg)?)
        }
        _ => None,
    };
    let base_url = match &args.url {
        Some(u) if url_template.as_ref().is_some_and(Text::has_holes) => {
            if !u.starts_with("http://") && !u.starts_with("https://") {
                bail!(
                    "--url {u:?}: only http and https URLs are supported, e.g. --url 'https://api.example.com/users/{{login}}'"
                );
            }
            templates.url = url_template;
            None
        }
        Some(u) => {
            // Messages quote the URL as written: expanded, it may hold a
            // secret.
            let expanded = expand("--url", u)?;
            let parsed = url::Url::parse(&expanded).map_err(|e| {
                anyhow::anyhow!(
                    "--url {u:?} is not a valid URL ({e}); give a full one, e.g. --url https://api.example.com/v1/search"
                )
            })?;
            if !matches!(parsed.scheme(), "http" | "https") {
                bail!(
                    "--url {u:?}: only http and https URLs are supported, e.g. --url https://api.example.com/v1/search"
                );
            }
            Some(parsed)
        }
        None => None,
    };
    let mut params = Vec::new();
    for p in &args.param {
        let (k, v) = p
            .split_once('=')
            .with_context(|| format!("--param {p:?} is not KEY=VALUE, e.g. --param language=en"))?;
        params.push((k.to_string(), expand("--param", v)?));
    }
    let mut headers = Vec::new();
    let mut env_headers = Vec::new();
    for h in &args.header {
        let (name, value) = h.split_once(':').with_context(|| {
            format!("--header {h:?} is not 'Name: value', e.g. --header 'Accept: application/json'")
        })?;
        let name = name.trim();
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            bail!(
                "--header {h:?}: {name:?} is not a valid header name (letters, digits and - only, e.g. X-Api-Key)"
            );
        }
        if has_env_ref(value) {
            env_headers.push(name.to_string());
        }
        let value = value.trim();
        if value.contains('{') || value.contains('}') {
            let t = Text::parse_with(value, &format!("--header {name}"), &env)
                .map_err(anyhow::Error::msg)?;
            if t.has_holes() {
                templates.headers.push((name.to_string(), t));
                continue;
            }
        }
        headers.push((name.to_string(), expand("--header", value)?));
    }
    if let Some(ua) = &args.user_agent {
        if has_env_ref(ua) {
            env_headers.push("User-Agent".to_string());
        }
        headers.push(("User-Agent".to_string(), expand("--user-agent", ua)?));
    }
    if let Some(body) = &args.body {
        if !args.form.is_empty() {
            bail!("--body and --form both give the body: choose one");
        }
        let text = match body.strip_prefix('@') {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("--body @{path}: cannot read the template"))?,
            None => body.clone(),
        };
        templates.body = Some(Body::parse(&text).map_err(anyhow::Error::msg)?);
    }
    if let Some(a) = &args.args {
        templates.args = Some(Body::parse_as(a, "--args").map_err(anyhow::Error::msg)?);
    }
    for f in &args.form {
        let (name, value) = f
            .split_once('=')
            .filter(|(n, _)| !n.is_empty())
            .with_context(|| {
                format!("--form {f:?} is not NAME=VALUE, e.g. --form 'address={{address}}'")
            })?;
        let t =
            Text::parse_with(value, &format!("--form {name}"), &env).map_err(anyhow::Error::msg)?;
        templates.form.push((name.to_string(), t));
    }
    let method = match &args.method {
        Some(m) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic()) => {
            Some(m.to_ascii_uppercase())
        }
        Some(m) => bail!("--method {m:?} is not an HTTP method, e.g. --method POST"),
        None => None,
    };
    Ok(RequestDefaults {
        base_url,
        method,
        templates,
        timeout: args.timeout,
        params,
        headers,
        redactor: Redactor::new(&args.redact),
        env_headers,
    })
}
