//! The jobs file: one JSON object per line, turned into ready-to-send jobs.
//!
//! The same [`parse_line`] serves the validation pass (which checks every
//! line before any worker starts) and the dispatch pass (which streams the
//! file again and builds each job only when it is about to be sent), so the
//! two can never disagree about what a line means.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use callpool_protocol::{JobRequest, ToWorker};
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use url::Url;

use super::request::{
    build_args_job, fingerprint, has_brace_outside_env_refs, job_body, parse_url_cached,
    redact_url, spec_http_fields,
};
pub use crate::durations::{parse_deadline, parse_duration};
pub use crate::job::Job;

use crate::jobs::expand::{expand_env, has_env_ref};
use crate::jobs::params::{ParamValue, Params, append_param};
use crate::jobs::template::Templates;
use crate::redact::{Redactor, secret_values};

/// The longest id; ids become file names, and most file systems allow 255
/// bytes, leaving room for `.json` and temporary-file prefixes.
pub const MAX_ID_LEN: usize = 200;

/// What the command line adds to every job.
#[derive(Clone)]
pub struct RequestDefaults {
    /// Used as the URL of jobs that give none (`--url`).
    pub base_url: Option<Url>,
    /// The deadline of an attempt, unless the job gives its own (`--timeout`).
    pub timeout: Duration,
    /// Query parameters added to every job (`--param`), after the job's own.
    pub params: Vec<(String, String)>,
    /// Headers added to every job unless the job sets the same name
    /// (`--header`).
    pub headers: Vec<(String, String)>,
    /// Which parameters and headers hold secrets.
    pub redactor: Redactor,
    /// The names of the `headers` whose values were written with a
    /// `${NAME}` environment reference: secret on a redirect to another
    /// origin (see [`JobRequest::secret_headers`]).
    pub env_headers: Vec<String>,
    /// The method of jobs that give none (`--method`).
    pub method: Option<String>,
    /// Requests built from each row's values (`{column}` in `--url`,
    /// `--header`, `--body`, `--form`).
    pub templates: Templates,
}

impl Default for RequestDefaults {
    fn default() -> Self {
        Self {
            base_url: None,
            timeout: Duration::from_secs(30),
            params: Vec::new(),
            headers: Vec::new(),
            redactor: Redactor::default(),
            env_headers: Vec::new(),
            method: None,
            templates: Templates::default(),
        }
    }
}

/// One line of the jobs file as written. Unknown fields are refused so that
/// a typo such as `param` is reported instead of silently ignored.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct JobLine {
    pub(super) id: Option<String>,
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) params: Params,
    pub(super) method: Option<String>,
    #[serde(default)]
    pub(super) headers: BTreeMap<String, String>,
    pub(super) body: Option<Box<RawValue>>,
    pub(super) timeout: Option<Value>,
    /// A job that is not an HTTP call: the arguments for a worker of one's
    /// own (`--worker-cmd`), any JSON value, `null` included.
    #[serde(default, deserialize_with = "callpool_protocol::present")]
    pub(super) args: Option<Box<RawValue>>,
}

impl JobLine {
    /// A table row's job: an id (or none: `line-N`) and its parameters.
    pub(crate) fn from_row(id: Option<String>, params: serde_json::Map<String, Value>) -> Self {
        let params = params
            .into_iter()
            .map(|(k, v)| match v {
                Value::String(s) => (k, ParamValue::Text(s)),
                other => (k, ParamValue::Text(other.to_string())),
            })
            .collect();
        JobLine {
            id,
            url: None,
            params: Params(params),
            method: None,
            headers: BTreeMap::new(),
            body: None,
            timeout: None,
            args: None,
        }
    }
}

impl std::fmt::Debug for RequestDefaults {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names = |pairs: &[(String, String)]| -> Vec<String> {
            pairs
                .iter()
                .map(|(k, _)| format!("{k}=<not shown>"))
                .collect()
        };
        f.debug_struct("RequestDefaults")
            .field(
                "base_url",
                &self.base_url.as_ref().map(|u| {
                    format!(
                        "{}://{}{}",
                        u.scheme(),
                        u.host_str().unwrap_or(""),
                        u.path()
                    )
                }),
            )
            .field("timeout", &self.timeout)
            .field("params", &names(&self.params))
            .field("headers", &names(&self.headers))
            .field("redactor", &self.redactor)
            .field("env_headers", &self.env_headers)
            .finish()
    }
}

/// The id a line gets when it has none: stable across runs of the same file,
/// so that `--resume` recognises it.
pub fn default_id(line: u64) -> String {
    format!("line-{line}")
}

/// Checks that an id can be used as a file name inside the results folder:
/// 1 to [`MAX_ID_LEN`] characters of `A-Z a-z 0-9 . _ -`, not starting with
/// a dot (no hidden files, no `.` or `..`, and no `/`).
pub fn check_id(id: &str) -> Result<(), String> {
    let safe = !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if safe {
        Ok(())
    } else {
        Err(format!(
            "id {id:?} is not a safe file name: use 1 to {MAX_ID_LEN} characters of A-Z a-z 0-9 . _ -, not starting with a dot"
        ))
    }
}

/// Parses one non-blank line of the jobs file into a [`Job`], or says what
/// is wrong with it (without the `FILE:LINE: ` prefix, which the caller adds).
pub fn parse_line(text: &str, line: u64, defaults: &RequestDefaults) -> Result<Job, String> {
    let spec: JobLine = serde_json::from_str(text).map_err(|e| describe_json_error(text, &e))?;
    build_job(spec, line, defaults)
}

/// Builds the job of one record (a JSON line, or a table row), or says what
/// is wrong with it.
pub(crate) fn build_job(
    spec: JobLine,
    line: u64,
    defaults: &RequestDefaults,
) -> Result<Job, String> {
    // Named before the id moves out; only for an `args` job.
    let args_job = spec.args.is_some() || defaults.templates.args.is_some();
    let http_fields = if args_job {
        spec_http_fields(&spec)
    } else {
        Vec::new()
    };
    let id = match spec.id {
        Some(id) => {
            check_id(&id)?;
            id
        }
        None => default_id(line),
    };
    if let Some(args) = spec.args {
        return build_args_job(http_fields, id, line, args, spec.timeout, defaults);
    }
    if let Some(template) = &defaults.templates.args {
        // A row (or a line's params) fills the arguments of a job of the
        // worker's own.
        let mut given = http_fields;
        given.retain(|f| *f != "params");
        let args = RawValue::from_string(template.render(&spec.params)?)
            .map_err(|e| format!("--args: {e}"))?;
        return build_args_job(given, id, line, args, spec.timeout, defaults);
    }

    // Messages about the URL quote it as written, before `${NAME}` is
    // expanded: an expanded one may hold a secret.
    let t = &defaults.templates;
    let (mut url, written) = match (&spec.url, &t.url, &defaults.base_url) {
        (Some(u), _, _) => {
            if has_brace_outside_env_refs(u) {
                return Err(format!(
                    "url {u:?} holds a brace: {{column}} placeholders are filled only in --url, and a literal brace is written %7B or %7D"
                ));
            }
            let expanded = expand_env(u).map_err(|e| format!("url: {e}"))?;
            let parsed = parse_url_cached(&expanded)
                .map_err(|e| format!("url {u:?} is not a valid URL: {e}"))?;
            (parsed, u.clone())
        }
        (None, Some(template), _) => {
            let text = template.render_url(&spec.params, "--url")?;
            let parsed = Url::parse(&text)
                .map_err(|e| format!("--url, filled in for this row, is not a valid URL: {e}"))?;
            (parsed, "--url".to_string())
        }
        (None, None, Some(base)) => (base.clone(), "--url".to_string()),
        (None, None, None) => return Err("missing \"url\" (or give --url BASE)".to_string()),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!(
            "url {written:?} has scheme {:?}: only http and https are supported",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("url {written:?} has no host"));
    }
    // With templates, a value goes where a placeholder puts it; with a
    // body or form template, nowhere else.
    let to_query = |key: &str| !t.builds_body() && !t.uses(key);
    if spec.params.0.iter().any(|(k, _)| to_query(k)) || !defaults.params.is_empty() {
        let mut pairs = url.query_pairs_mut();
        for (key, value) in spec.params.0.iter().filter(|(k, _)| to_query(k)) {
            append_param(&mut pairs, key, value)?;
        }
        for (key, value) in &defaults.params {
            pairs.append_pair(key, value);
        }
    }
    let mut secrets = Vec::new();
    let shown_url = redact_url(&url, &defaults.redactor, &mut secrets);

    let method = match spec.method.or_else(|| defaults.method.clone()) {
        Some(m) if !m.is_empty() && m.bytes().all(|b| b.is_ascii_alphabetic()) => {
            m.to_ascii_uppercase()
        }
        Some(m) => return Err(format!("method {m:?} is not an HTTP method")),
        None if t.builds_body() => "POST".to_string(),
        None => "GET".to_string(),
    };

    // The headers a worker must not carry to another origin on a redirect:
    // those of a secret name, and those whose value came from the
    // environment.
    let mut secret_headers = Vec::new();
    let mut headers = BTreeMap::new();
    for (name, value) in spec.headers {
        if has_env_ref(&value) {
            secret_headers.push(name.clone());
        }
        let value = expand_env(&value).map_err(|e| format!("header {name:?}: {e}"))?;
        check_header(&name, &value)?;
        headers.insert(name, value);
    }
    for (name, template) in &t.headers {
        if !headers.keys().any(|k| k.eq_ignore_ascii_case(name)) {
            let value = template.render_plain(&spec.params, &format!("--header {name}"))?;
            headers.insert(name.clone(), value);
        }
    }
    for (name, value) in &defaults.headers {
        if !headers.keys().any(|k| k.eq_ignore_ascii_case(name)) {
            headers.insert(name.clone(), value.clone());
            if defaults.env_headers.iter().any(|n| n == name) {
                secret_headers.push(name.clone());
            }
        }
    }
    for (name, value) in &headers {
        if defaults.redactor.is_secret(name) {
            secrets.extend(secret_values(value));
            secret_headers.push(name.clone());
        }
    }
    secret_headers.sort();
    secret_headers.dedup();

    let (body, content_type) = match (spec.body, &t.body) {
        (Some(raw), _) => job_body(&raw)?,
        (None, Some(template)) => (
            Some(template.render(&spec.params)?),
            Some("application/json"),
        ),
        (None, None) if !t.form.is_empty() => {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            for (name, template) in &t.form {
                form.append_pair(name, &template.render_plain(&spec.params, "--form")?);
            }
            (
                Some(form.finish()),
                Some("application/x-www-form-urlencoded"),
            )
        }
        (None, None) => (None, None),
    };
    if let Some(ct) = content_type
        && !headers
            .keys()
            .any(|k| k.eq_ignore_ascii_case("content-type"))
    {
        headers.insert("content-type".into(), ct.into());
    }

    let timeout = match spec.timeout {
        None => defaults.timeout,
        Some(v) => parse_timeout_value(&v)?,
    };

    // Every secret is known by now: the fingerprint is taken before the
    // headers and body move into the wire message.
    secrets.sort_by_key(|f| std::cmp::Reverse(f.len()));
    secrets.dedup();
    let fingerprint = fingerprint(
        &method,
        &shown_url,
        &headers,
        body.as_deref(),
        &defaults.redactor,
        &secrets,
    );
    let request = JobRequest {
        method: method.clone(),
        url: url.to_string(),
        headers,
        body,
        timeout_ms: worker_timeout(timeout)
            .as_millis()
            .try_into()
            .unwrap_or(u64::MAX),
        secret_headers,
    };
    let mut wire = serde_json::to_vec(&ToWorker::Job {
        id: id.clone(),
        request: Some(request),
        args: None,
        timeout_ms: None,
    })
    .map_err(|e| format!("cannot encode the job: {e}"))?;
    check_wire(&mut wire)?;

    Ok(Job {
        id,
        line,
        method,
        url: shown_url,
        timeout,
        wire: Arc::from(wire),
        secrets,
        fingerprint,
        args: None,
    })
}

/// Ends a job's wire message with its newline, and refuses one over the
/// protocol's line limit.
pub(super) fn check_wire(wire: &mut Vec<u8>) -> Result<(), String> {
    wire.push(b'\n');
    if wire.len() > callpool_protocol::MAX_LINE_BYTES {
        return Err(format!(
            "the job is {} bytes on the wire, over the protocol's line limit of {} bytes",
            wire.len(),
            callpool_protocol::MAX_LINE_BYTES
        ));
    }
    Ok(())
}

/// How long a worker may spend on a request whose attempt has `deadline`:
/// a little less, so that a slow server ends as the worker's own clean
/// `timeout` result and the supervisor's kill stays the last resort.
pub fn worker_timeout(deadline: Duration) -> Duration {
    let margin = (deadline / 10).min(Duration::from_secs(1));
    deadline
        .saturating_sub(margin)
        .max(Duration::from_millis(1))
}

fn check_header(name: &str, value: &str) -> Result<(), String> {
    let token = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !token {
        return Err(format!(
            "header name {name:?} is not a valid HTTP header name"
        ));
    }
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!("header {name:?} has a line break in its value"));
    }
    Ok(())
}

/// A job's `timeout`: a duration string (`"500ms"`, `"2s"`, `"1m"`) or a
/// number of seconds.
pub(super) fn parse_timeout_value(v: &Value) -> Result<Duration, String> {
    let d = match v {
        Value::String(s) => parse_deadline(s).map_err(|e| format!("timeout: {e}"))?,
        Value::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .and_then(|s| Duration::try_from_secs_f64(s).ok())
            .ok_or_else(|| format!("timeout {n} is not a number of seconds"))?,
        _ => return Err("timeout must be a duration like \"2s\" or a number of seconds".into()),
    };
    if d.is_zero() {
        return Err("timeout must be more than zero".into());
    }
    Ok(d)
}

/// Turns serde's message into one a person can act on, telling "not JSON"
/// from "JSON, but not a job".
fn describe_json_error(text: &str, e: &serde_json::Error) -> String {
    use serde_json::error::Category;
    match e.classify() {
        Category::Syntax | Category::Eof => format!("invalid JSON: {e}"),
        Category::Data if !text.trim_start().starts_with('{') => {
            let found = match serde_json::from_str::<Value>(text) {
                Ok(Value::Array(_)) => "an array",
                Ok(Value::String(_)) => "a string",
                Ok(Value::Number(_)) => "a number",
                Ok(Value::Bool(_)) => "a boolean",
                Ok(Value::Null) => "null",
                _ => "something else",
            };
            format!("not a JSON object (found {found})")
        }
        _ => {
            let mut msg = String::new();
            let _ = write!(msg, "{e}");
            // serde appends "at line 1 column N", which only confuses when the
            // caller already names the line of the file.
            if let Some(i) = msg.find(" at line ") {
                msg.truncate(i);
            }
            msg
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Job, String> {
        parse_line(text, 7, &RequestDefaults::default())
    }

    #[test]
    fn builds_url_with_params_in_order() {
        let job = parse(
            r#"{"id":"nyc","url":"http://127.0.0.1:8080/geo","params":{"address":"100 Broadway, New York","n":3,"x":true,"tag":["a","b"]}}"#,
        )
        .expect("valid");
        assert_eq!(job.id, "nyc");
        assert_eq!(
            job.url,
            "http://127.0.0.1:8080/geo?address=100+Broadway%2C+New+York&n=3&x=true&tag=a&tag=b"
        );
        assert_eq!(job.method, "GET");
        let wire = std::str::from_utf8(&job.wire).expect("utf8");
        assert!(wire.starts_with(r#"{"type":"job","id":"nyc","request":{"method":"GET""#));
        assert!(wire.ends_with("}\n"));
    }

    #[test]
    fn args_jobs_need_no_url_and_are_fingerprinted_by_their_args() {
        let job = parse(r#"{"id":"p","args":[1, {"n": 2}],"timeout":"2s"}"#).expect("valid");
        let wire = std::str::from_utf8(&job.wire).expect("utf8");
        assert_eq!(
            wire,
            "{\"type\":\"job\",\"id\":\"p\",\"args\":[1, {\"n\": 2}],\"timeout_ms\":1800}\n"
        );
        assert!(job.url.is_empty() && job.method.is_empty());
        let same = parse(r#"{"id":"p","args":[1,{"n":2}]}"#).expect("valid");
        assert_eq!(
            job.fingerprint, same.fingerprint,
            "whitespace is not the args"
        );
        let other = parse(r#"{"id":"p","args":[1,{"n":3}]}"#).expect("valid");
        assert_ne!(job.fingerprint, other.fingerprint);
        // null is an argument, not a missing field.
        let null = parse(r#"{"args":null}"#).expect("valid");
        assert!(
            std::str::from_utf8(&null.wire)
                .expect("utf8")
                .contains(r#""args":null"#)
        );
        let err = parse(r#"{"args":1,"url":"http://h/","params":{"a":1}}"#).expect_err("both");
        assert!(err.contains("cannot have url, params"), "{err}");
    }

    #[test]
    fn default_id_from_line() {
        assert_eq!(parse(r#"{"url":"http://h/"}"#).expect("valid").id, "line-7");
    }

    #[test]
    fn rejects_bad_lines_with_reasons() {
        let cases = [
            ("{", "invalid JSON"),
            ("[1,2]", "not a JSON object (found an array)"),
            (r#""x""#, "not a JSON object (found a string)"),
            (r#"{"url":"http://h/","param":{}}"#, "unknown field `param`"),
            (r#"{"id":"a"}"#, "missing \"url\""),
            (r#"{"url":"ftp://h/x"}"#, "only http and https"),
            (r#"{"url":"not a url"}"#, "not a valid URL"),
            (r#"{"id":"../x","url":"http://h/"}"#, "not a safe file name"),
            (r#"{"id":"a/b","url":"http://h/"}"#, "not a safe file name"),
            (
                r#"{"id":".hidden","url":"http://h/"}"#,
                "not a safe file name",
            ),
            (r#"{"id":"","url":"http://h/"}"#, "not a safe file name"),
            (r#"{"url":"http://h/","params":{"a":null}}"#, "params.a"),
            (r#"{"url":"http://h/","params":{"a":[{}]}}"#, "params.a"),
            (
                r#"{"url":"http://h/","method":"GE T"}"#,
                "not an HTTP method",
            ),
            (
                r#"{"url":"http://h/","headers":{"a b":"c"}}"#,
                "header name",
            ),
            (r#"{"url":"http://h/","timeout":"soon"}"#, "timeout"),
            (r#"{"url":"http://h/","timeout":0}"#, "more than zero"),
        ];
        for (line, want) in cases {
            let err = parse(line).expect_err(line);
            assert!(
                err.contains(want),
                "{line}: {err:?} should contain {want:?}"
            );
        }
        let long = format!(r#"{{"id":"{}","url":"http://h/"}}"#, "a".repeat(201));
        assert!(parse(&long).is_err());
    }

    #[test]
    fn json_body_sets_content_type_and_timeout_parses() {
        let job = parse(r#"{"url":"http://h/","method":"post","body":{"a":1},"timeout":"1500ms"}"#)
            .expect("valid");
        assert_eq!(job.method, "POST");
        assert_eq!(job.timeout, Duration::from_millis(1500));
        let wire = std::str::from_utf8(&job.wire).expect("utf8");
        assert!(
            wire.contains(r#""content-type":"application/json""#),
            "{wire}"
        );
        assert!(wire.contains(r#""body":"{\"a\":1}""#), "{wire}");
        assert!(wire.contains(r#""timeout_ms":1350"#), "{wire}");
    }

    #[test]
    fn defaults_apply() {
        let defaults = RequestDefaults {
            base_url: Some(Url::parse("http://api/geo").expect("url")),
            params: vec![("key".into(), "k1".into())],
            headers: vec![("X-A".into(), "1".into()), ("x-b".into(), "2".into())],
            ..RequestDefaults::default()
        };
        let job = parse_line(
            r#"{"params":{"q":"x"},"headers":{"X-B":"mine"}}"#,
            1,
            &defaults,
        )
        .expect("valid");
        assert_eq!(job.url, "http://api/geo?q=x&key=REDACTED");
        let wire = std::str::from_utf8(&job.wire).expect("utf8");
        assert!(
            wire.contains(r#""X-A":"1""#) && wire.contains(r#""X-B":"mine""#),
            "{wire}"
        );
        assert!(!wire.contains(r#""x-b""#), "{wire}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration("1m"), Ok(Duration::from_secs(60)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("later").is_err());
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        for calendar in ["1M", "2months", "1y", "1h 1M"] {
            let e = parse_duration(calendar).expect_err(calendar);
            assert!(e.contains("is not a unit here"), "{e}");
        }
        assert!(parse_deadline("0s").is_err_and(|e| e.contains("more than zero")));
        assert_eq!(parse_deadline("1m"), Ok(Duration::from_secs(60)));
    }

    #[test]
    fn secrets_are_redacted_in_the_shown_url_but_sent() {
        let defaults = RequestDefaults {
            params: vec![("key".into(), "k-123456".into())],
            headers: vec![("Authorization".into(), "Bearer tok-98765".into())],
            ..RequestDefaults::default()
        };
        let job = parse_line(
            r#"{"url":"http://h/geo?apikey=abcdefg","params":{"q":"x"}}"#,
            1,
            &defaults,
        )
        .expect("valid");
        assert_eq!(job.url, "http://h/geo?apikey=REDACTED&q=x&key=REDACTED");
        let wire = std::str::from_utf8(&job.wire).expect("utf8");
        assert!(
            wire.contains("apikey=abcdefg") && wire.contains("key=k-123456"),
            "{wire}"
        );
        assert!(wire.contains("Bearer tok-98765"), "{wire}");
        for s in ["abcdefg", "k-123456", "Bearer tok-98765", "tok-98765"] {
            assert!(
                job.secrets.iter().any(|f| f == s),
                "{s} in {:?}",
                job.secrets
            );
        }
    }

    #[test]
    fn the_wire_names_the_headers_not_to_carry_to_another_origin() {
        let defaults = RequestDefaults {
            headers: vec![
                ("X-Api-Key".into(), "k-123456".into()),
                ("X-From-Env".into(), "v".into()),
            ],
            env_headers: vec!["X-From-Env".into()],
            redactor: Redactor::new(["x-api-key"]),
            ..RequestDefaults::default()
        };
        let wire = |line: &str| {
            let job = parse_line(line, 1, &defaults).expect("valid");
            String::from_utf8(job.wire.to_vec()).expect("utf8")
        };
        let w = wire(
            r#"{"url":"http://h/","headers":{"X-Job":"${PATH}","X-Plain":"1","authorization":"Bearer t"}}"#,
        );
        assert!(
            w.contains(r#""secret_headers":["X-Api-Key","X-From-Env","X-Job","authorization"]"#),
            "{w}"
        );
        // A job's own literal value is not from the environment.
        let w = wire(r#"{"url":"http://h/","headers":{"x-from-env":"mine"}}"#);
        assert!(w.contains(r#""secret_headers":["X-Api-Key"]"#), "{w}");
        let w = parse_line(r#"{"url":"http://h/"}"#, 1, &RequestDefaults::default())
            .expect("valid")
            .wire;
        assert!(!String::from_utf8_lossy(&w).contains("secret_headers"));
    }

    #[test]
    fn environment_variables_expand_in_job_strings() {
        // A name that no environment sets.
        let name = "CALLPOOL_TEST_EXPAND_JOBS";
        let err = parse(&format!(
            r#"{{"url":"http://h/","params":{{"k":"${{{name}}}"}}}}"#
        ))
        .expect_err("unset");
        assert!(
            err.contains(&format!("params.k: environment variable {name} is not set")),
            "{err}"
        );
        let job = parse(r#"{"url":"http://h/${HOME_NOT_SET_XYZ:-x}","params":{"home":"${PATH}"}}"#)
            .expect("valid: ${...:-x} is not a name, and PATH is set");
        assert!(job.url.contains("home=%2F"), "{}", job.url);
    }
}
