//! Stable error kinds, and the mapping from ureq's errors to them.

use std::{io, time::Duration};

use ureq::Timeout;

use crate::{resolver::DnsError, tls::TrustStoreError};

/// Why a job got no HTTP response: the `kind` of a [`JobError`]. The
/// http-worker uses the first eight kinds and [`ErrorKind::other`]; an HTTP
/// status of 4xx or 5xx is *not* an error: the server answered, and the job
/// gets a response.
pub use callpool_protocol::ErrorKind;

/// What [`classify`] needs to know about the request to word its message.
#[derive(Debug, Clone, Copy)]
pub struct ErrorContext<'a> {
    /// `host[:port]` of the URL, for messages ("could not connect to ...").
    pub target: &'a str,
    /// The job's whole-request time limit.
    pub timeout: Duration,
    /// The limit on name lookup and on connection setup (at most `timeout`).
    pub connect_timeout: Duration,
}

/// Maps a ureq error to a stable [`ErrorKind`] and a message for people.
pub fn classify(err: &ureq::Error, cx: &ErrorContext<'_>) -> (ErrorKind, String) {
    use ureq::Error as E;
    let target = cx.target;
    match err {
        // A handshake or certificate failure comes as an i/o error of the
        // TLS stream, with rustls's error inside.
        E::Io(e) => match rustls_error(e) {
            Some(tls) => (ErrorKind::Tls, tls_message(tls, target)),
            None => classify_io(e, target),
        },
        E::Rustls(e) => (ErrorKind::Tls, tls_message(e, target)),
        E::Pem(e) => (ErrorKind::Tls, format!("TLS error with {target}: PEM: {e}")),
        E::Timeout(t) => (ErrorKind::Timeout, timeout_message(*t, cx)),
        E::HostNotFound => (
            ErrorKind::Dns,
            format!("could not resolve host {target}: no address found"),
        ),
        E::ConnectionFailed => (ErrorKind::Connect, format!("could not connect to {target}")),
        E::ConnectProxyFailed(m) => (
            ErrorKind::Connect,
            format!("proxy refused the connection to {target}: {m}"),
        ),
        E::Tls(m) => (ErrorKind::Tls, format!("TLS error with {target}: {m}")),
        E::TlsRequired => (
            ErrorKind::Tls,
            format!(
                "cannot make an https request to {target}: this worker was built without a \
                 TLS provider (ureq features rustls/native-tls are off)"
            ),
        ),
        E::BodyExceedsLimit(limit) => (
            ErrorKind::BodyTooLarge,
            body_too_large_message(*limit, target),
        ),
        E::BadUri(m) => (ErrorKind::BadRequest, format!("invalid URL: {m}")),
        E::Http(e) => (ErrorKind::BadRequest, format!("invalid request: {e}")),
        E::RequireHttpsOnly(m) => (ErrorKind::BadRequest, format!("https required: {m}")),
        // Nearly always the server's answer; the job's own request is
        // checked before sending (see `request.rs`).
        E::Protocol(p) => (
            ErrorKind::Protocol,
            format!("HTTP protocol error with {target}: {p}"),
        ),
        E::LargeResponseHeader(_, limit) => (
            ErrorKind::Protocol,
            format!("response headers from {target} are larger than {limit} bytes"),
        ),
        E::Decompress(algo, e) => (
            ErrorKind::Protocol,
            format!("could not decode the {algo} response body from {target}: {e}"),
        ),
        E::TooManyRedirects => (
            ErrorKind::Protocol,
            format!("too many redirects, starting at {target}"),
        ),
        E::RedirectFailed => (
            ErrorKind::Protocol,
            format!("{target} answered with a redirect that cannot be followed with this body"),
        ),
        E::Other(e) if e.is::<DnsError>() => (ErrorKind::Dns, e.to_string()),
        E::Other(e) if e.is::<TrustStoreError>() => (
            ErrorKind::Tls,
            format!("TLS error with {target}: cannot read the trusted certificates: {e}"),
        ),
        other => (
            ErrorKind::other(),
            format!("request to {target} failed: {other}"),
        ),
    }
}

/// The message of a [`ErrorKind::BodyTooLarge`] error.
fn body_too_large_message(limit: u64, target: &str) -> String {
    format!(
        "response body from {target} is larger than the limit of {limit} bytes ({}); \
         raise the worker's max body size to accept it",
        human_bytes(limit)
    )
}

/// The rustls error inside an i/o error of a TLS stream, if any.
fn rustls_error(e: &io::Error) -> Option<&rustls::Error> {
    e.get_ref()?.downcast_ref::<rustls::Error>()
}

/// What to do about a server certificate this worker does not trust.
const TRUST_HINT: &str = "if the API uses a company CA, or a TLS-inspecting proxy is in \
     the way, trust that CA's certificate with --cacert FILE or SSL_CERT_FILE=FILE";

/// The message of a [`ErrorKind::Tls`] error: what failed, in words, then
/// rustls's own account, then what to do.
fn tls_message(e: &rustls::Error, target: &str) -> String {
    use rustls::{AlertDescription as A, CertificateError as C, Error as R};
    let (what, hint) = match e {
        R::InvalidCertificate(c) => match c {
            C::UnknownIssuer => (
                "unknown issuer: the server's certificate is not signed by an authority \
                 this worker trusts",
                TRUST_HINT,
            ),
            C::BadSignature => (
                "the server's certificate has an invalid signature",
                TRUST_HINT,
            ),
            C::Expired | C::ExpiredContext { .. } => (
                "the server's certificate has expired",
                "the server must renew it (or this machine's clock is wrong)",
            ),
            C::NotValidYet | C::NotValidYetContext { .. } => (
                "the server's certificate is not valid yet",
                "check this machine's clock",
            ),
            C::NotValidForName | C::NotValidForNameContext { .. } => (
                "name mismatch: the server's certificate is not valid for the host name \
                 in the URL",
                "call the API by a name its certificate holds",
            ),
            C::Revoked => ("the server's certificate has been revoked", ""),
            C::InvalidPurpose | C::InvalidPurposeContext { .. } => (
                "the server's certificate is not one for a TLS server (invalid purpose)",
                "",
            ),
            _ => ("the server's certificate was rejected", TRUST_HINT),
        },
        R::AlertReceived(A::CertificateRequired) => (
            "client certificate required: the server asks for one (mutual TLS)",
            "give it with --cert FILE --key FILE",
        ),
        R::AlertReceived(
            A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied,
        ) => (
            "the server rejected the client certificate (or the lack of one)",
            "check --cert and --key: the server must trust the certificate's CA",
        ),
        R::AlertReceived(A::HandshakeFailure) => (
            "the server refused the handshake",
            "it may require a client certificate (--cert FILE --key FILE), or share no \
             TLS version or cipher with this worker",
        ),
        R::AlertReceived(_) => ("the server ended the handshake", ""),
        R::NoCertificatesPresented => ("the server sent no certificate", ""),
        R::InvalidMessage(_) | R::InappropriateMessage { .. } => (
            "the server did not answer in TLS",
            "is it an http:// URL rather than https://?",
        ),
        R::PeerIncompatible(_) => (
            "the server and this worker share no TLS version or cipher",
            "",
        ),
        _ => ("the TLS connection failed", ""),
    };
    if hint.is_empty() {
        format!("TLS error with {target}: {what} ({e})")
    } else {
        format!("TLS error with {target}: {what} ({e}); {hint}")
    }
}

fn classify_io(e: &io::Error, target: &str) -> (ErrorKind, String) {
    use io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => (
            ErrorKind::Connect,
            format!("connection refused by {target}"),
        ),
        K::HostUnreachable | K::NetworkUnreachable | K::NetworkDown | K::AddrNotAvailable => (
            ErrorKind::Connect,
            format!("could not connect to {target}: {e}"),
        ),
        K::TimedOut => (
            ErrorKind::Timeout,
            format!("timed out talking to {target}: {e}"),
        ),
        K::UnexpectedEof => (
            ErrorKind::Io,
            format!("{target} closed the connection before the response was complete"),
        ),
        K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe => (
            ErrorKind::Io,
            format!("connection to {target} was closed by the peer: {e}"),
        ),
        _ => (ErrorKind::Io, format!("i/o error with {target}: {e}")),
    }
}

fn timeout_message(t: Timeout, cx: &ErrorContext<'_>) -> String {
    let target = cx.target;
    let (phase, limit) = match t {
        Timeout::Resolve => (format!("resolving {target}"), cx.connect_timeout),
        Timeout::Connect => (format!("connecting to {target}"), cx.connect_timeout),
        Timeout::SendRequest | Timeout::SendBody | Timeout::PerWrite => {
            (format!("sending the request to {target}"), cx.timeout)
        }
        Timeout::RecvResponse => (
            format!("waiting for the response from {target}"),
            cx.timeout,
        ),
        Timeout::RecvBody => (
            format!("reading the response body from {target}"),
            cx.timeout,
        ),
        _ => {
            return format!(
                "timed out: no complete response from {target} within {} ms",
                cx.timeout.as_millis()
            );
        }
    };
    format!("timed out {phase} (limit {} ms)", limit.as_millis())
}

/// `16 MiB`, `1.5 KiB`, `100 B`: a byte count for messages.
pub(crate) fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if v.fract() == 0.0 {
        format!("{v:.0} {}", UNITS[unit])
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cx() -> ErrorContext<'static> {
        ErrorContext {
            target: "127.0.0.1:9",
            timeout: Duration::from_millis(2000),
            connect_timeout: Duration::from_millis(1500),
        }
    }

    fn kind(e: ureq::Error) -> ErrorKind {
        classify(&e, &cx()).0
    }

    #[test]
    fn names_are_stable() {
        assert_eq!(ErrorKind::BodyTooLarge.to_string(), "body_too_large");
        assert_eq!(ErrorKind::other().as_str(), "other");
    }

    #[test]
    fn io_errors() {
        let io = |k| ureq::Error::Io(io::Error::new(k, "x"));
        assert_eq!(
            kind(io(io::ErrorKind::ConnectionRefused)),
            ErrorKind::Connect
        );
        assert_eq!(kind(io(io::ErrorKind::HostUnreachable)), ErrorKind::Connect);
        assert_eq!(kind(io(io::ErrorKind::TimedOut)), ErrorKind::Timeout);
        assert_eq!(kind(io(io::ErrorKind::ConnectionReset)), ErrorKind::Io);
        assert_eq!(kind(io(io::ErrorKind::UnexpectedEof)), ErrorKind::Io);
        assert_eq!(kind(io(io::ErrorKind::Other)), ErrorKind::Io);
        let (_, msg) = classify(&io(io::ErrorKind::ConnectionRefused), &cx());
        assert_eq!(msg, "connection refused by 127.0.0.1:9");
    }

    #[test]
    fn ureq_variants() {
        assert_eq!(kind(ureq::Error::HostNotFound), ErrorKind::Dns);
        assert_eq!(kind(ureq::Error::ConnectionFailed), ErrorKind::Connect);
        assert_eq!(kind(ureq::Error::TlsRequired), ErrorKind::Tls);
        assert_eq!(kind(ureq::Error::Tls("bad cert")), ErrorKind::Tls);
        assert_eq!(kind(ureq::Error::BadUri("x".into())), ErrorKind::BadRequest);
        assert_eq!(kind(ureq::Error::TooManyRedirects), ErrorKind::Protocol);
        assert_eq!(
            kind(ureq::Error::LargeResponseHeader(1, 2)),
            ErrorKind::Protocol
        );
        assert_eq!(kind(ureq::Error::InvalidProxyUrl), ErrorKind::other());
        assert_eq!(
            kind(ureq::Error::BodyExceedsLimit(100)),
            ErrorKind::BodyTooLarge
        );
        let (_, msg) = classify(&ureq::Error::BodyExceedsLimit(100), &cx());
        assert!(msg.contains("limit of 100 bytes"), "{msg}");
    }

    #[test]
    fn tls_failures_are_tls_with_words_and_a_hint() {
        use rustls::{AlertDescription, CertificateError, Error as R};
        let in_io = |e: R| ureq::Error::Io(io::Error::new(io::ErrorKind::InvalidData, e));
        let (k, msg) = classify(
            &in_io(R::InvalidCertificate(CertificateError::UnknownIssuer)),
            &cx(),
        );
        assert_eq!(k, ErrorKind::Tls);
        assert!(
            msg.contains("unknown issuer")
                && msg.contains("--cacert")
                && msg.contains("SSL_CERT_FILE"),
            "{msg}"
        );
        let (k, msg) = classify(
            &in_io(R::InvalidCertificate(CertificateError::Expired)),
            &cx(),
        );
        assert_eq!(k, ErrorKind::Tls);
        assert!(msg.contains("expired"), "{msg}");
        let (_, msg) = classify(
            &in_io(R::InvalidCertificate(CertificateError::NotValidForName)),
            &cx(),
        );
        assert!(msg.contains("name mismatch"), "{msg}");
        let (k, msg) = classify(
            &in_io(R::AlertReceived(AlertDescription::CertificateRequired)),
            &cx(),
        );
        assert_eq!(k, ErrorKind::Tls);
        assert!(
            msg.contains("client certificate required") && msg.contains("--cert"),
            "{msg}"
        );
        assert_eq!(
            kind(ureq::Error::Rustls(R::AlertReceived(
                AlertDescription::UnknownCA
            ))),
            ErrorKind::Tls
        );
        // The trust store could not be read at the first HTTPS connection.
        let e = ureq::Error::Other(Box::new(TrustStoreError::new("SSL_CERT_FILE=/x: gone")));
        let (k, msg) = classify(&e, &cx());
        assert_eq!(k, ErrorKind::Tls);
        assert!(msg.contains("SSL_CERT_FILE=/x: gone"), "{msg}");
        // An i/o error without rustls inside stays `io`.
        assert_eq!(
            kind(ureq::Error::Io(io::Error::new(
                io::ErrorKind::InvalidData,
                "x"
            ))),
            ErrorKind::Io
        );
    }

    #[test]
    fn timeouts_name_the_phase_and_limit() {
        let (k, msg) = classify(&ureq::Error::Timeout(Timeout::Connect), &cx());
        assert_eq!(k, ErrorKind::Timeout);
        assert_eq!(msg, "timed out connecting to 127.0.0.1:9 (limit 1500 ms)");
        let (_, msg) = classify(&ureq::Error::Timeout(Timeout::Global), &cx());
        assert_eq!(
            msg,
            "timed out: no complete response from 127.0.0.1:9 within 2000 ms"
        );
    }

    #[test]
    fn dns_error_from_resolver() {
        let e = ureq::Error::Other(Box::new(DnsError::new(
            "nowhere.invalid",
            io::Error::other("Name or service not known"),
        )));
        let (k, msg) = classify(&e, &cx());
        assert_eq!(k, ErrorKind::Dns);
        assert!(msg.contains("nowhere.invalid"), "{msg}");
    }

    #[test]
    fn human_bytes_formats() {
        assert_eq!(human_bytes(100), "100 B");
        assert_eq!(human_bytes(16 * 1024 * 1024), "16 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
