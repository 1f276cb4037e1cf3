//! The kinds of [`crate::JobError`]: why an attempt has no usable answer.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// Why an attempt has no usable answer, by its stable wire name.
///
/// The first eight are a worker's (the http-worker's, with `other` in
/// [`ErrorKind::Other`]); the next six are the supervisor's, for
/// answers it judged and attempts a worker did not survive. A kind that
/// this version does not name (a foreign worker may invent its own) is
/// kept as written in [`ErrorKind::Other`]. On the wire a kind is its name,
/// a plain JSON string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(from = "String")]
pub enum ErrorKind {
    /// `connect`: no connection could be made although the host name resolved
    /// (or was an IP address): the connection was refused, the host or
    /// network is unreachable, the local address is unavailable, or the
    /// proxy refused the `CONNECT`.
    Connect,
    /// `dns`: the host name could not be resolved to any address (unknown
    /// name, no address of the wanted IP family, resolver failure).
    Dns,
    /// `timeout`: the worker's request did not complete within its time
    /// limit (the phase is named in the message); or the supervisor stopped
    /// a worker whose attempt passed its deadline.
    Timeout,
    /// `tls`: the TLS layer failed, or the URL is `https` and the worker
    /// has no TLS provider.
    Tls,
    /// `io`: the connection failed after it was made: reset or closed by the
    /// peer in the middle of the exchange, or another socket error.
    Io,
    /// `protocol`: the exchange broke the rules of HTTP/1.1, in practice the
    /// server's answer: unparsable status line or headers, headers over the
    /// size limit (64 KiB), bad chunked encoding, a broken gzip body, a bad
    /// `content-length`, a redirect without a valid `location`, a redirect
    /// loop (more than 10), or a 307/308 redirect of a request with a body.
    Protocol,
    /// `bad_request`: the job itself cannot be sent: invalid URL (not an
    /// absolute `http`/`https` URL, or characters a URL cannot hold), invalid
    /// method, invalid header name or value, or the same header given twice
    /// in different letter case. Checked before anything is sent.
    BadRequest,
    /// `body_too_large`: the response body (after gzip decoding) is larger
    /// than the worker's maximum body size; the message names the limit.
    BodyTooLarge,
    /// `http_status`: the server answered with a status that is not 2xx.
    HttpStatus,
    /// `rejected`: the answer matched `--fail-if`.
    Rejected,
    /// `retry_later`: the answer matched `--retry-if` and no attempt is left.
    RetryLater,
    /// `stopped`: the answer matched `--stop-if`.
    Stopped,
    /// `crashed`: the worker died (or its thread panicked) during the
    /// attempt.
    Crashed,
    /// `protocol_error`: the worker broke the protocol during the attempt.
    ProtocolError,
    /// Any other name, as written: `other`, the http-worker's catch-all
    /// (an error ureq adds in a later version, an invalid proxy setting;
    /// the message carries ureq's own text, see [`ErrorKind::other`]), or a
    /// foreign worker's own kind.
    Other(String),
}

impl ErrorKind {
    /// `other`: the http-worker's kind for an error it cannot classify.
    pub fn other() -> Self {
        ErrorKind::Other("other".to_owned())
    }

    /// `unsupported_job`: the worker cannot run this kind of job; the
    /// http-worker's answer to a job with `args` (not an HTTP call).
    pub fn unsupported_job() -> Self {
        ErrorKind::Other("unsupported_job".to_owned())
    }

    /// The error an HTTP worker named `worker` answers a job with `args`
    /// with: not retried, since every attempt would end the same.
    pub fn args_unsupported(worker: &str) -> crate::JobError {
        let mut e = Self::unsupported_job().job_error(format!(
            "{worker} makes HTTP calls, and this job has `args` instead of a request: \
             run it with a worker written for it, e.g. --worker-cmd \"python3 -m callpool.worker MODULE:FUNCTION\""
        ));
        e.retry = Some(false);
        e
    }

    /// A [`crate::JobError`] of this kind with the given message.
    pub fn job_error(self, message: impl Into<String>) -> crate::JobError {
        crate::JobError {
            kind: self,
            message: message.into(),
            retry: None,
            detail: Box::default(),
        }
    }

    /// Every kind this version names, in declaration order: all but
    /// [`ErrorKind::Other`] (docs/lifecycle.md is checked against it).
    pub const ALL: [ErrorKind; 14] = [
        ErrorKind::Connect,
        ErrorKind::Dns,
        ErrorKind::Timeout,
        ErrorKind::Tls,
        ErrorKind::Io,
        ErrorKind::Protocol,
        ErrorKind::BadRequest,
        ErrorKind::BodyTooLarge,
        ErrorKind::HttpStatus,
        ErrorKind::Rejected,
        ErrorKind::RetryLater,
        ErrorKind::Stopped,
        ErrorKind::Crashed,
        ErrorKind::ProtocolError,
    ];

    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            ErrorKind::Connect => "connect",
            ErrorKind::Dns => "dns",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Tls => "tls",
            ErrorKind::Io => "io",
            ErrorKind::Protocol => "protocol",
            ErrorKind::BadRequest => "bad_request",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::HttpStatus => "http_status",
            ErrorKind::Rejected => "rejected",
            ErrorKind::RetryLater => "retry_later",
            ErrorKind::Stopped => "stopped",
            ErrorKind::Crashed => "crashed",
            ErrorKind::ProtocolError => "protocol_error",
            ErrorKind::Other(name) => name,
        }
    }
}

impl From<&str> for ErrorKind {
    fn from(name: &str) -> Self {
        match name {
            "connect" => ErrorKind::Connect,
            "dns" => ErrorKind::Dns,
            "timeout" => ErrorKind::Timeout,
            "tls" => ErrorKind::Tls,
            "io" => ErrorKind::Io,
            "protocol" => ErrorKind::Protocol,
            "bad_request" => ErrorKind::BadRequest,
            "body_too_large" => ErrorKind::BodyTooLarge,
            "http_status" => ErrorKind::HttpStatus,
            "rejected" => ErrorKind::Rejected,
            "retry_later" => ErrorKind::RetryLater,
            "stopped" => ErrorKind::Stopped,
            "crashed" => ErrorKind::Crashed,
            "protocol_error" => ErrorKind::ProtocolError,
            other => ErrorKind::Other(other.to_owned()),
        }
    }
}

impl From<String> for ErrorKind {
    fn from(name: String) -> Self {
        match ErrorKind::from(name.as_str()) {
            ErrorKind::Other(_) => ErrorKind::Other(name),
            known => known,
        }
    }
}

impl Serialize for ErrorKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorKind {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_ones_are_kept() {
        for name in [
            "connect",
            "dns",
            "timeout",
            "tls",
            "io",
            "protocol",
            "bad_request",
            "body_too_large",
            "http_status",
            "rejected",
            "retry_later",
            "stopped",
            "crashed",
            "protocol_error",
            "other",
            "quota_spent",
        ] {
            let kind: ErrorKind =
                serde_json::from_str(&format!("{name:?}")).expect("a string is a kind");
            assert_eq!(kind.as_str(), name);
            assert_eq!(
                serde_json::to_string(&kind).expect("serialize"),
                format!("{name:?}")
            );
        }
        assert_eq!(
            ErrorKind::from("quota_spent"),
            ErrorKind::Other("quota_spent".into())
        );
        assert!(serde_json::from_str::<ErrorKind>("3").is_err());
    }

    #[test]
    fn all_lists_every_named_kind() {
        // The variants as declared in this file, `Other` aside.
        let src = include_str!("kind.rs");
        let start = src
            .lines()
            .position(|l| l.starts_with("pub enum ErrorKind {"))
            .expect("the declaration");
        let declared: Vec<String> = src
            .lines()
            .skip(start + 1)
            .take_while(|l| *l != "}")
            .filter_map(|l| l.strip_prefix("    "))
            .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
            .map(|l| l.chars().take_while(char::is_ascii_alphanumeric).collect())
            .filter(|v: &String| v != "Other")
            .collect();
        let listed: Vec<String> = ErrorKind::ALL.iter().map(|k| format!("{k:?}")).collect();
        assert_eq!(listed, declared);
        for kind in ErrorKind::ALL {
            assert_eq!(ErrorKind::from(kind.as_str()), kind, "{kind}");
        }
    }
}
