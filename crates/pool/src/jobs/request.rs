//! The parts of building a job's request: its URL (parsed once, its
//! secret parameters masked), its body, a job that is not an HTTP call,
//! and the fingerprint that names the request.

use std::collections::BTreeMap;
use std::sync::Arc;

use callpool_protocol::ToWorker;
use serde_json::Value;
use serde_json::value::RawValue;
use url::Url;

use super::parse::{check_wire, parse_timeout_value};
use super::{Job, JobLine, RequestDefaults, worker_timeout};
use crate::jobs::expand::expand_env;
use crate::redact::{REDACTED, Redactor, secret_values};

/// The HTTP fields a line gives, named, for the error of a job that gives
/// them with `args`.
pub(super) fn spec_http_fields(spec: &JobLine) -> Vec<&'static str> {
    let mut given = Vec::new();
    for (name, set) in [
        ("url", spec.url.is_some()),
        ("params", !spec.params.0.is_empty()),
        ("method", spec.method.is_some()),
        ("headers", !spec.headers.is_empty()),
        ("body", spec.body.is_some()),
    ] {
        if set {
            given.push(name);
        }
    }
    given
}

/// Builds a job that is not an HTTP call: `args` go to the worker as
/// written (no `${NAME}` expansion: they are data), and the fingerprint
/// covers them, whitespace between tokens left out.
pub(super) fn build_args_job(
    http_fields: Vec<&'static str>,
    id: String,
    line: u64,
    args: Box<RawValue>,
    timeout: Option<Value>,
    defaults: &RequestDefaults,
) -> Result<Job, String> {
    if !http_fields.is_empty() {
        return Err(format!(
            "a job with \"args\" is a call of the worker's own, not an HTTP call: it cannot have {}",
            http_fields.join(", ")
        ));
    }
    let timeout = match timeout {
        None => defaults.timeout,
        Some(v) => parse_timeout_value(&v)?,
    };
    let compact = crate::json_text::rewrite(args.get().as_bytes(), true, |_| None);
    let text = compact.as_deref().unwrap_or(args.get().as_bytes());
    let fingerprint = {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        // A tag no HTTP method can be, so that no request hashes the same.
        h.update(b"args\0");
        h.update(text);
        format!("{:x}", h.finalize())
    };
    let mut wire = serde_json::to_vec(&ToWorker::Job {
        id: id.clone(),
        request: None,
        args: Some(args.clone()),
        timeout_ms: Some(
            worker_timeout(timeout)
                .as_millis()
                .try_into()
                .unwrap_or(u64::MAX),
        ),
    })
    .map_err(|e| format!("cannot encode the job: {e}"))?;
    check_wire(&mut wire)?;
    Ok(Job {
        id,
        line,
        method: String::new(),
        url: String::new(),
        timeout,
        wire: Arc::from(wire),
        secrets: Vec::new(),
        fingerprint,
        args: Some(args),
    })
}

/// See [`Job::fingerprint`]. Header names are compared without letter
/// case; secret header values and secret forms in the body are replaced.
pub(super) fn fingerprint(
    method: &str,
    shown_url: &str,
    headers: &BTreeMap<String, String>,
    body: Option<&str>,
    redactor: &Redactor,
    secrets: &[String],
) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    // Each part is length-prefixed, so that no two requests hash the same
    // text by moving bytes from one part to the next.
    let mut part = |bytes: &[u8]| {
        h.update((bytes.len() as u64).to_le_bytes());
        h.update(bytes);
    };
    part(method.as_bytes());
    part(shown_url.as_bytes());
    let mut names: Vec<(String, &str)> = headers
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    names.sort();
    for (name, value) in &names {
        part(name.as_bytes());
        part(if redactor.is_secret(name) {
            REDACTED.as_bytes()
        } else {
            value.as_bytes()
        });
    }
    match body {
        Some(b) => part(crate::redact::mask_text(b, secrets).as_bytes()),
        None => part(b"\xff"),
    }
    format!("{:x}", h.finalize())
}

thread_local! {
    /// The last URL parsed on this thread, as written and parsed.
    static LAST_URL: std::cell::RefCell<Option<(String, Url)>> =
        const { std::cell::RefCell::new(None) };
}

/// Parses a job's URL, reusing the last parse when the text is the same:
/// most jobs files repeat one URL with different params, and a URL parse is
/// a large part of reading a job line.
pub(super) fn parse_url_cached(text: &str) -> Result<Url, url::ParseError> {
    LAST_URL.with(|last| {
        let mut last = last.borrow_mut();
        if let Some((t, url)) = last.as_ref()
            && t == text
        {
            return Ok(url.clone());
        }
        let url = Url::parse(text)?;
        *last = Some((text.to_string(), url.clone()));
        Ok(url)
    })
}

/// The URL with the values of secret query parameters replaced, noting
/// those values in `secrets`.
pub(super) fn redact_url(url: &Url, redactor: &Redactor, secrets: &mut Vec<String>) -> String {
    let has_secret = url.query().is_some_and(|q| redactor.query_has_secret(q));
    if !has_secret {
        return url.to_string();
    }
    let mut shown = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(k, v)| {
            if redactor.is_secret(&k) {
                secrets.extend(secret_values(&v));
                (k.into_owned(), REDACTED.to_string())
            } else {
                (k.into_owned(), v.into_owned())
            }
        })
        .collect();
    shown.query_pairs_mut().clear().extend_pairs(pairs);
    shown.into()
}

/// Whether `text` holds a `{` or `}` that is not part of a `${...}`.
pub(super) fn has_brace_outside_env_refs(text: &str) -> bool {
    let mut rest = text;
    while let Some(i) = rest.find(['{', '}']) {
        if rest[i..].starts_with('{') && rest[..i].ends_with('$') {
            match rest[i..].find('}') {
                Some(end) => rest = &rest[i + end + 1..],
                None => return true,
            }
        } else {
            return true;
        }
    }
    false
}

/// A JSON Lines job's own `body`: a string is sent as its text, `null` is
/// none, anything else is sent as JSON exactly as written (numbers digit
/// for digit, white space between tokens dropped), `${NAME}` expanded in
/// its strings.
pub(super) fn job_body(raw: &RawValue) -> Result<(Option<String>, Option<&'static str>), String> {
    let text = raw.get();
    if text == "null" {
        return Ok((None, None));
    }
    if text.starts_with('"') {
        let s: String = serde_json::from_str(text).map_err(|e| format!("body: {e}"))?;
        return Ok((
            Some(expand_env(&s).map_err(|e| format!("body: {e}"))?),
            None,
        ));
    }
    let mut problem = None;
    let out = crate::json_text::rewrite(text.as_bytes(), true, |token| {
        let crate::json_text::Token::Str(raw) = token else {
            return None;
        };
        if !raw.windows(2).any(|w| w == b"${") {
            return None;
        }
        let s = crate::json_text::decode_str(raw)?;
        match expand_env(&s) {
            Ok(v) => serde_json::to_vec(&v).ok(),
            Err(e) => {
                problem.get_or_insert(format!("body: {e}"));
                None
            }
        }
    });
    if let Some(p) = problem {
        return Err(p);
    }
    let body = match out {
        Some(bytes) => String::from_utf8(bytes).map_err(|e| format!("body: {e}"))?,
        None => text.to_string(),
    };
    Ok((Some(body), Some("application/json")))
}
