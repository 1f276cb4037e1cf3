//! The kinds of [`crate::JobError`]: why an attempt has no usable answer.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

/// Why an attempt has no usable answer, by its stable wire name.
///
/// The first eight are a worker's (the http-worker's, documented with
/// `callpool_http::ErrorKind`); the next six are the supervisor's, for
/// answers it judged and attempts a worker did not survive. A kind that
/// this version does not name (a foreign worker may invent its own) is
/// kept as written in [`ErrorKind::Other`]. On the wire a kind is its name,
/// a plain JSON string.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(from = "String")]
pub enum ErrorKind {
    /// `connect`: no connection could be made.
    Connect,
    /// `dns`: the host name did not resolve.
    Dns,
    /// `timeout`: the worker's call ran out of time, or the supervisor
    /// stopped a worker whose attempt passed its deadline.
    Timeout,
    /// `tls`: the TLS layer failed.
    Tls,
    /// `io`: the connection failed after it was made.
    Io,
    /// `protocol`: the server's answer broke HTTP.
    Protocol,
    /// `bad_request`: the job's request cannot be sent.
    BadRequest,
    /// `body_too_large`: the answer's body is over the limit.
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
    /// Any other name, as written: `other` (the http-worker's catch-all)
    /// or a foreign worker's own kind.
    Other(String),
}

impl ErrorKind {
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
}
