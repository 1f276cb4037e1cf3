//! The messages of protocol version 1.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// A message written by the supervisor to a worker's stdin.
///
/// Read it with [`ToWorker::parse`], which goes through a flat struct:
/// serde's derive for an internally tagged enum buffers the whole message
/// before it looks at the tag, which doubled the cost of reading a job.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToWorker {
    /// One job to run. The worker answers it with exactly one
    /// [`FromWorker::Result`] carrying the same `id`. A job is an HTTP call
    /// (`request`) or a call of a worker's own (`args`): exactly one of the
    /// two is present.
    Job {
        /// The job's id, to be echoed in the result.
        id: String,
        /// The HTTP request to make.
        #[serde(skip_serializing_if = "Option::is_none")]
        request: Option<JobRequest>,
        /// The arguments of a job that is not an HTTP call: any JSON value,
        /// copied from the jobs file as written. Added in the course of
        /// version 1: only a job file that gives `args` sends it, to a
        /// worker written for such jobs.
        #[serde(skip_serializing_if = "Option::is_none")]
        args: Option<Box<RawValue>>,
        /// With `args`: how long the worker may spend on the job, in
        /// milliseconds (an HTTP job has it in its `request`).
        #[serde(skip_serializing_if = "Option::is_none")]
        timeout_ms: Option<u64>,
    },
}

/// The HTTP request of a job, fully built by the supervisor: the URL already
/// carries the query string, so a worker never has to encode parameters.
///
/// Fields this version does not know are ignored when it is read, as the
/// protocol asks of workers, so that a newer supervisor can add some.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
pub struct JobRequest {
    /// The HTTP method, upper case (`GET`, `POST`, ...).
    pub method: String,
    /// The absolute `http` or `https` URL, query included.
    pub url: String,
    /// Request headers, name to value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// The request body, if any, as text. When the job gave a JSON value the
    /// supervisor has serialized it and set `content-type: application/json`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// How long the worker may spend on this request, in milliseconds. It is
    /// a little shorter than the supervisor's own deadline, so that a slow
    /// server normally ends in a clean `timeout` error and not in a kill.
    pub timeout_ms: u64,
    /// The names of the `headers` whose values are secret (a name
    /// `--redact` or the built-in list marks, or a value that came from a
    /// `${NAME}` environment reference), as they are spelled in `headers`.
    /// A worker drops them, with `authorization` and `cookie`, when it
    /// follows a redirect to another origin (scheme, host or port).
    /// Optional, and left out when empty: a worker that does not know it
    /// still works, and forwards them as before.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_headers: Vec<String>,
}

// Hand-written: the URL's query, the header values and the body may hold
// secrets (an API key), and `{:?}` ends up in logs and panic messages.
impl std::fmt::Debug for JobRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let url = match self.url.split_once('?') {
            Some((base, _)) => format!("{base}?<query not shown>"),
            None => self.url.clone(),
        };
        let headers: Vec<&str> = self.headers.keys().map(String::as_str).collect();
        f.debug_struct("JobRequest")
            .field("method", &self.method)
            .field("url", &url)
            .field("headers", &format_args!("{headers:?} (values not shown)"))
            .field(
                "body",
                &self
                    .body
                    .as_ref()
                    .map(|b| format!("<{} bytes, not shown>", b.len())),
            )
            .field("timeout_ms", &self.timeout_ms)
            .field("secret_headers", &self.secret_headers)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum JobType {
    Job,
}

/// The fields of a job message, flat, for [`ToWorker::parse`].
#[derive(Deserialize)]
struct FlatJob {
    #[serde(rename = "type")]
    _kind: JobType,
    id: String,
    request: Option<JobRequest>,
    #[serde(default, deserialize_with = "present")]
    args: Option<Box<RawValue>>,
    timeout_ms: Option<u64>,
}

/// For `#[serde(default, deserialize_with = "present")]`: a raw field
/// that, when present, is kept even when it is `null`: `"args": null` is a
/// call with the argument `None`, not a job without `args`.
pub fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

impl ToWorker {
    /// Parses one line written by the supervisor (without its newline).
    /// Unknown fields are ignored; an unknown `type` is an error, and so is
    /// a job with both or neither of `request` and `args`.
    pub fn parse(line: &[u8]) -> Result<Self, serde_json::Error> {
        use serde::de::Error as _;
        let m: FlatJob = serde_json::from_slice(line)?;
        match (&m.request, &m.args) {
            (Some(_), Some(_)) => Err(serde_json::Error::custom(
                "a job with both `request` and `args`",
            )),
            (None, None) => Err(serde_json::Error::custom(
                "a job with neither `request` nor `args`",
            )),
            _ => Ok(ToWorker::Job {
                id: m.id,
                request: m.request,
                args: m.args,
                timeout_ms: m.timeout_ms,
            }),
        }
    }
}

/// A message written by a worker to its stdout.
///
/// Read it with [`FromWorker::parse`]: serde cannot derive `Deserialize` for
/// an internally tagged enum whose content holds a raw JSON value, so the
/// parse goes through a flat struct with the same `type` tag.
#[derive(Debug, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum FromWorker {
    /// The worker is ready for jobs. It must be the first line a worker
    /// writes; a worker that exits or stays silent before it has failed to
    /// start.
    Ready(ReadyInfo),
    /// The answer to one job.
    Result(ResultMsg),
}

/// Why a worker's stdout line is not a message.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// Not JSON, not an object, a field of the wrong type, or an unknown
    /// `type`.
    #[error("not a valid message: {0}")]
    Json(#[from] serde_json::Error),
    /// A field that this `type` requires is missing.
    #[error("`{kind}` message without `{field}`")]
    Missing {
        /// The message type.
        kind: &'static str,
        /// The missing field.
        field: &'static str,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum MsgType {
    Ready,
    Result,
}

/// Every field of every worker message, flat, for [`FromWorker::parse`].
#[derive(Deserialize)]
struct FlatMsg {
    #[serde(rename = "type")]
    kind: MsgType,
    protocol: Option<u32>,
    worker: Option<String>,
    version: Option<String>,
    id: Option<String>,
    response: Option<HttpResponse>,
    #[serde(default, deserialize_with = "present")]
    value: Option<Box<RawValue>>,
    error: Option<JobError>,
    elapsed_ms: Option<f64>,
}

impl FromWorker {
    /// Parses one line written by a worker (without its newline).
    pub fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let m: FlatMsg = serde_json::from_slice(line)?;
        Ok(match m.kind {
            MsgType::Ready => FromWorker::Ready(ReadyInfo {
                protocol: m.protocol.ok_or(ParseError::Missing {
                    kind: "ready",
                    field: "protocol",
                })?,
                worker: m.worker,
                version: m.version,
            }),
            MsgType::Result => FromWorker::Result(ResultMsg {
                id: m.id.ok_or(ParseError::Missing {
                    kind: "result",
                    field: "id",
                })?,
                response: m.response,
                value: m.value,
                error: m.error,
                elapsed_ms: m.elapsed_ms,
            }),
        })
    }
}

/// The content of a `ready` line.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ReadyInfo {
    /// Must be [`crate::PROTOCOL_VERSION`].
    pub protocol: u32,
    /// The worker's name, free text (for logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub worker: Option<String>,
    /// The worker's version, free text (for logs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// The content of a `result` line: the job's id and exactly one of
/// `response`, `value` or `error`.
///
/// `response` and `error` are two optional fields rather than an enum so that
/// the wire format stays the flat object the protocol document shows; use
/// [`ResultMsg::outcome`] to get the checked either-or.
#[derive(Debug, Serialize, Deserialize)]
pub struct ResultMsg {
    /// The id of the job this answers.
    pub id: String,
    /// The HTTP response, when the server answered (any status).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HttpResponse>,
    /// The answer of a job that is not an HTTP call (`args`): any JSON
    /// value, kept as the worker wrote it. Unlike `response`, `null` here
    /// is a value (the function returned `None`).
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub value: Option<Box<RawValue>>,
    /// Why there is no response (connect error, timeout, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<JobError>,
    /// How long the worker spent on the request, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub elapsed_ms: Option<f64>,
}

/// A checked view of a [`ResultMsg`]: a response or an error.
#[derive(Debug)]
pub enum ResultOutcome<'a> {
    /// The server answered.
    Response(&'a HttpResponse),
    /// A job that is not an HTTP call returned this value.
    Value(&'a RawValue),
    /// There was no answer.
    Error(&'a JobError),
}

/// Why a `result` line is not acceptable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WorkerResultError {
    /// The line has more than one of `response`, `value` and `error`.
    #[error("result for job {0:?} has more than one of `response`, `value` and `error`")]
    Both(String),
    /// The line has none of `response`, `value` and `error`.
    #[error("result for job {0:?} has none of `response`, `value` and `error`")]
    Neither(String),
}

impl ResultMsg {
    /// The response, the value or the error, checking that there is
    /// exactly one.
    pub fn outcome(&self) -> Result<ResultOutcome<'_>, WorkerResultError> {
        match (&self.response, &self.value, &self.error) {
            (Some(r), None, None) => Ok(ResultOutcome::Response(r)),
            (None, Some(v), None) => Ok(ResultOutcome::Value(v)),
            (None, None, Some(e)) => Ok(ResultOutcome::Error(e)),
            (None, None, None) => Err(WorkerResultError::Neither(self.id.clone())),
            _ => Err(WorkerResultError::Both(self.id.clone())),
        }
    }
}

/// An HTTP response as a worker reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpResponse {
    /// The HTTP status code.
    pub status: u16,
    /// Response headers, lower-case name to value. A header that appears more
    /// than once has its values joined with `, `.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// How to read `body`.
    #[serde(default)]
    pub body_kind: BodyKind,
    /// The body: the parsed JSON document when `body_kind` is `json`, else a
    /// JSON string holding the text (invalid UTF-8 replaced by U+FFFD).
    ///
    /// It is kept as raw JSON so that the supervisor copies it into the
    /// result file without building a tree of it.
    pub body: Box<RawValue>,
}

/// How the `body` of an [`HttpResponse`] is to be read.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BodyKind {
    /// `body` is a JSON string holding the body's text.
    #[default]
    Text,
    /// `body` is the JSON document the server sent.
    Json,
}

/// Why a job has no response.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct JobError {
    /// A stable machine-readable kind: see [`crate::ErrorKind`].
    pub kind: crate::ErrorKind,
    /// A message for people.
    pub message: String,
    /// The worker's own word on a retry: `true` asks for another attempt
    /// (after the backoff, while attempts remain) whatever the kind,
    /// `false` forbids one. Absent, the kind decides. Added in the course
    /// of version 1, for workers whose errors are not HTTP's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<bool>,
    /// Any other field a worker gives its error (a Python worker's `type`
    /// and `traceback`), kept in the result file as written. Boxed: most
    /// errors have none, and an error travels in every `Result`.
    #[serde(flatten, default, skip_serializing_if = "no_detail")]
    pub detail: Box<serde_json::Map<String, serde_json::Value>>,
}

#[allow(clippy::borrowed_box)] // serde hands the field as it is
fn no_detail(detail: &Box<serde_json::Map<String, serde_json::Value>>) -> bool {
    detail.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_round_trips_with_type_tag() {
        let msg = ToWorker::Job {
            id: "a".into(),
            request: Some(JobRequest {
                method: "GET".into(),
                url: "http://127.0.0.1/x?a=1".into(),
                headers: BTreeMap::new(),
                body: None,
                timeout_ms: 1000,
                secret_headers: Vec::new(),
            }),
            args: None,
            timeout_ms: None,
        };
        let same = |a: &ToWorker, b: &ToWorker| {
            serde_json::to_string(a).expect("serialize")
                == serde_json::to_string(b).expect("serialize")
        };
        let line = serde_json::to_string(&msg).expect("serialize");
        assert!(
            !line.contains("secret_headers"),
            "left out when empty: {line}"
        );
        assert!(line.starts_with(r#"{"type":"job","id":"a""#), "{line}");
        let back = ToWorker::parse(line.as_bytes()).expect("parse");
        assert!(same(&back, &msg));
        // Unknown fields are ignored, at the top and in the request; an
        // unknown type is not.
        let newer = r#"{"type":"job","id":"a","priority":1,"request":{"method":"GET","url":"http://127.0.0.1/x?a=1","timeout_ms":1000,"tls":{}}}"#;
        assert!(same(
            &ToWorker::parse(newer.as_bytes()).expect("parse"),
            &msg
        ));
        assert!(ToWorker::parse(br#"{"type":"cancel","id":"a"}"#).is_err());
    }

    #[test]
    fn secret_headers_are_named_on_the_wire() {
        let line = r#"{"type":"job","id":"a","request":{"method":"GET","url":"http://h/","headers":{"X-Api-Key":"k"},"timeout_ms":1000,"secret_headers":["X-Api-Key"]}}"#;
        let ToWorker::Job { request, .. } = ToWorker::parse(line.as_bytes()).expect("parse");
        let request = request.expect("a request");
        assert_eq!(request.secret_headers, ["X-Api-Key"]);
        let back = serde_json::to_string(&request).expect("serialize");
        assert!(back.contains(r#""secret_headers":["X-Api-Key"]"#), "{back}");
    }

    #[test]
    fn result_with_response_and_raw_body() {
        let line = r#"{"type":"result","id":"x","response":{"status":200,"headers":{"a":"b"},"body_kind":"json","body":{"k":[1,2]}}}"#;
        let FromWorker::Result(r) = FromWorker::parse(line.as_bytes()).expect("parse") else {
            panic!("not a result")
        };
        let ResultOutcome::Response(resp) = r.outcome().expect("one outcome") else {
            panic!("not a response")
        };
        assert_eq!(resp.status, 200);
        assert_eq!(resp.body_kind, BodyKind::Json);
        assert_eq!(resp.body.get(), r#"{"k":[1,2]}"#);
    }

    #[test]
    fn args_jobs_and_value_results() {
        let line = br#"{"type":"job","id":"a","args":null,"timeout_ms":5}"#;
        let ToWorker::Job {
            request,
            args,
            timeout_ms,
            ..
        } = ToWorker::parse(line).expect("parse");
        assert!(request.is_none() && timeout_ms == Some(5));
        assert_eq!(args.expect("null is an argument").get(), "null");
        assert!(ToWorker::parse(br#"{"type":"job","id":"a"}"#).is_err());
        let both = br#"{"type":"job","id":"a","args":1,"request":{"method":"GET","url":"http://h/","timeout_ms":1}}"#;
        assert!(ToWorker::parse(both).is_err());

        let FromWorker::Result(r) =
            FromWorker::parse(br#"{"type":"result","id":"x","value":null}"#).expect("parse")
        else {
            panic!()
        };
        assert!(matches!(r.outcome(), Ok(ResultOutcome::Value(v)) if v.get() == "null"));
        let FromWorker::Result(r) = FromWorker::parse(
            br#"{"type":"result","id":"x","value":1,"error":{"kind":"k","message":"m"}}"#,
        )
        .expect("parse") else {
            panic!()
        };
        assert_eq!(r.outcome().err(), Some(WorkerResultError::Both("x".into())));

        // An error's own fields are kept; `retry` is read.
        let FromWorker::Result(r) = FromWorker::parse(
            br#"{"type":"result","id":"x","error":{"kind":"exception","message":"m","type":"ValueError","traceback":"t","retry":true}}"#,
        )
        .expect("parse") else {
            panic!()
        };
        let e = r.error.expect("error");
        assert_eq!(e.retry, Some(true));
        assert_eq!(
            serde_json::to_string(&e).expect("serialize"),
            r#"{"kind":"exception","message":"m","retry":true,"type":"ValueError","traceback":"t"}"#
        );
    }

    #[test]
    fn result_needs_exactly_one_outcome() {
        let both = r#"{"type":"result","id":"x","response":{"status":200,"body":""},"error":{"kind":"io","message":"m"}}"#;
        let FromWorker::Result(r) = FromWorker::parse(both.as_bytes()).expect("parse") else {
            panic!()
        };
        assert_eq!(r.outcome().err(), Some(WorkerResultError::Both("x".into())));
        let neither = r#"{"type":"result","id":"x"}"#;
        // `neither` parses (the framing is fine) but has no outcome.
        let FromWorker::Result(r) = FromWorker::parse(neither.as_bytes()).expect("parse") else {
            panic!()
        };
        assert_eq!(
            r.outcome().err(),
            Some(WorkerResultError::Neither("x".into()))
        );
    }

    #[test]
    fn unknown_type_is_an_error() {
        assert!(FromWorker::parse(br#"{"type":"hello"}"#).is_err());
        assert!(FromWorker::parse(br#"{"id":"x"}"#).is_err());
        assert!(FromWorker::parse(br#"{"type":"result"}"#).is_err()); // no id
        assert!(FromWorker::parse(b"not json").is_err());
    }

    #[test]
    fn ready_line() {
        let FromWorker::Ready(r) =
            FromWorker::parse(br#"{"type":"ready","protocol":1}"#).expect("parse")
        else {
            panic!()
        };
        assert_eq!(r.protocol, 1);
    }
}

#[cfg(test)]
mod serialize_tests {
    use super::*;

    #[test]
    fn worker_side_serializes_result_with_raw_body() {
        let msg = FromWorker::Result(ResultMsg {
            id: "x".into(),
            response: Some(HttpResponse {
                status: 503,
                headers: BTreeMap::from([("retry-after".into(), "2".into())]),
                body_kind: BodyKind::Json,
                body: RawValue::from_string(r#"{"a":1}"#.into()).expect("raw"),
            }),
            value: None,
            error: None,
            elapsed_ms: Some(1.5),
        });
        let line = serde_json::to_string(&msg).expect("serialize");
        assert_eq!(
            line,
            r#"{"type":"result","id":"x","response":{"status":503,"headers":{"retry-after":"2"},"body_kind":"json","body":{"a":1}},"elapsed_ms":1.5}"#
        );
        let FromWorker::Result(back) = FromWorker::parse(line.as_bytes()).expect("parse") else {
            panic!()
        };
        assert_eq!(back.id, "x");
    }
}
