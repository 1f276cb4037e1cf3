//! Checking a job's request and turning it into an `http::Request`.

use callpool_protocol::{JobError, JobRequest};
use ureq::http::{
    HeaderName, HeaderValue, Method, Request, Uri,
    header::{AUTHORIZATION, CONTENT_LENGTH, HOST, TRANSFER_ENCODING},
};

use crate::ErrorKind;

fn bad_request(message: String) -> JobError {
    ErrorKind::BadRequest.job_error(message)
}

/// The request of a job, without its body, checked so that ureq will not
/// refuse it later: method, absolute `http`/`https` URL, headers.
///
/// `content-length` and `transfer-encoding` from the job are dropped: the
/// body is always sent whole, and ureq sets its exact length. Header names
/// are case-insensitive; the same name given twice in different letter case
/// is refused.
/// A URL for an error message: quoted, and cut after 200 characters, so
/// that a URL of megabytes (a huge parameter) does not fill the message.
fn shown(url: &str) -> String {
    const MAX: usize = 200;
    match url.char_indices().nth(MAX) {
        None => format!("{url:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &url[..cut], url.len()),
    }
}

pub(crate) fn prepare(req: &JobRequest) -> Result<Request<()>, JobError> {
    let method = Method::from_bytes(req.method.as_bytes())
        .map_err(|_| bad_request(format!("invalid HTTP method {:?}", req.method)))?;
    let uri: Uri = req
        .url
        .parse()
        .map_err(|e| bad_request(format!("invalid URL {}: {e}", shown(&req.url))))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => {
            return Err(bad_request(format!(
                "invalid URL {}: not an absolute http or https URL",
                shown(&req.url)
            )));
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(bad_request(format!(
            "invalid URL {}: no host",
            shown(&req.url)
        )));
    }

    let mut request = Request::new(());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    let headers = request.headers_mut();
    for (name, value) in &req.headers {
        let header = HeaderName::from_bytes(name.as_bytes())
            .map_err(|_| bad_request(format!("invalid header name {name:?}")))?;
        if header == CONTENT_LENGTH || header == TRANSFER_ENCODING {
            continue;
        }
        let value = HeaderValue::from_str(value)
            .map_err(|_| bad_request(format!("invalid value for header {name:?}")))?;
        if (header == HOST || header == AUTHORIZATION) && value.to_str().is_err() {
            return Err(bad_request(format!(
                "header {name:?} must be printable ASCII"
            )));
        }
        if headers.contains_key(&header) {
            return Err(bad_request(format!(
                "header {:?} is given more than once (names are case-insensitive)",
                header.as_str()
            )));
        }
        headers.insert(header, value);
    }
    Ok(request)
}

/// `host` or `host:port` of a URL, for messages; no user name or password.
pub(crate) fn target_of(url: &str) -> String {
    let Ok(uri) = url.parse::<Uri>() else {
        return "the server".to_owned();
    };
    match (uri.host(), uri.port_u16()) {
        (Some(host), Some(port)) => format!("{host}:{port}"),
        (Some(host), None) => host.to_owned(),
        (None, _) => "the server".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn job(method: &str, url: &str, headers: &[(&str, &str)]) -> JobRequest {
        JobRequest {
            method: method.into(),
            url: url.into(),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect::<BTreeMap<_, _>>(),
            body: None,
            timeout_ms: 1000,
            secret_headers: Vec::new(),
        }
    }

    fn kind_of(r: Result<Request<()>, JobError>) -> Option<String> {
        r.err().map(|e| e.kind.to_string())
    }

    #[test]
    fn good_request() {
        let r = prepare(&job(
            "POST",
            "http://127.0.0.1:8080/a?b=c",
            &[
                ("User-Agent", "me/1"),
                ("X-Id", "7"),
                ("Content-Length", "99"),
            ],
        ))
        .expect("valid");
        assert_eq!(r.method(), Method::POST);
        assert_eq!(r.uri().path_and_query().map(|p| p.as_str()), Some("/a?b=c"));
        assert_eq!(r.headers()["user-agent"], "me/1");
        assert_eq!(r.headers()["x-id"], "7");
        assert!(!r.headers().contains_key("content-length"));
    }

    #[test]
    fn bad_requests() {
        let bad = Some("bad_request".to_owned());
        assert_eq!(kind_of(prepare(&job("GE T", "http://a/", &[]))), bad);
        assert_eq!(kind_of(prepare(&job("GET", "/relative", &[]))), bad);
        assert_eq!(kind_of(prepare(&job("GET", "ftp://a/", &[]))), bad);
        assert_eq!(kind_of(prepare(&job("GET", "http://a b/", &[]))), bad);
        assert_eq!(
            kind_of(prepare(&job("GET", "http://a/", &[("a b", "1")]))),
            bad
        );
        assert_eq!(
            kind_of(prepare(&job("GET", "http://a/", &[("x", "a\nb")]))),
            bad
        );
        assert_eq!(
            kind_of(prepare(&job(
                "GET",
                "http://a/",
                &[("Accept", "a"), ("accept", "b")]
            ))),
            bad
        );
    }

    #[test]
    fn targets_hide_credentials() {
        assert_eq!(target_of("http://u:p@example.test:81/x"), "example.test:81");
        assert_eq!(target_of("https://example.test/x"), "example.test");
        assert_eq!(target_of("/relative"), "the server");
    }
}
