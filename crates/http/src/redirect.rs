//! Following redirects by hand, as curl does: ureq's own following keeps
//! every header but `authorization` and `cookie` whatever the next host,
//! so an API key in a header such as `X-Api-Key` would reach any host the
//! API redirects to. Here the headers that are secret are sent only to the
//! origin (scheme, host, port) of the job's URL, unless the worker was
//! told to trust every location (`--location-trusted`).

use ureq::http::{
    HeaderMap, HeaderName, Method, StatusCode, Uri,
    header::{AUTHORIZATION, COOKIE, LOCATION},
};

/// The most redirects followed for one job; one more is an error.
pub(crate) const MAX_REDIRECTS: u32 = 10;

/// Whether a status is a redirect to follow: every 3xx but 304, which has
/// no location, as ureq counts them.
pub(crate) fn is_redirect(status: StatusCode) -> bool {
    status.is_redirection() && status != StatusCode::NOT_MODIFIED
}

/// The scheme, host and port of a URL, the port made explicit: two URLs
/// with the same origin may send each other's credentials.
fn origin(uri: &Uri) -> (String, String, u16) {
    let scheme = uri.scheme_str().unwrap_or("").to_ascii_lowercase();
    let port = uri
        .port_u16()
        .unwrap_or(if scheme == "https" { 443 } else { 80 });
    let host = uri.host().unwrap_or("").to_ascii_lowercase();
    (scheme, host, port)
}

/// Whether two URLs have the same origin.
pub(crate) fn same_origin(a: &Uri, b: &Uri) -> bool {
    origin(a) == origin(b)
}

/// The headers of a job with its secret ones left out: `authorization`,
/// `cookie`, and the job's `secret_headers` (names compared without
/// letter case; a name that is not a valid header name is in no request
/// anyway).
pub(crate) fn without_secrets(headers: &HeaderMap, secret_headers: &[String]) -> HeaderMap {
    let mut kept = headers.clone();
    kept.remove(AUTHORIZATION);
    kept.remove(COOKIE);
    for name in secret_headers {
        if let Ok(name) = HeaderName::from_bytes(name.as_bytes()) {
            kept.remove(name);
        }
    }
    kept
}

/// Where a redirect leads: its last `location` resolved against the URL
/// that answered it, without a fragment. Only `http` and `https` are
/// followed. The error is a message for people.
pub(crate) fn next_url(current: &Uri, headers: &HeaderMap) -> Result<Uri, String> {
    let Some(location) = headers.get_all(LOCATION).iter().next_back() else {
        return Err("a redirect without a location header".into());
    };
    let location = location
        .to_str()
        .map_err(|_| "a redirect whose location header is not printable ASCII".to_string())?;
    let base = url::Url::parse(&current.to_string())
        .map_err(|e| format!("cannot resolve a redirect from {current}: {e}"))?;
    let mut next = base
        .join(location)
        .map_err(|e| format!("a redirect to an invalid location ({e})"))?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(format!(
            "a redirect to a {}: URL, not http or https",
            next.scheme()
        ));
    }
    next.set_fragment(None);
    next.as_str()
        .parse::<Uri>()
        .map_err(|e| format!("a redirect to an invalid location ({e})"))
}

/// The method of the request that follows a redirect, or `None` when it
/// cannot be followed: after a 307 or 308 the method is kept, but a
/// request with a body (`POST`, `PUT`, `PATCH`) and a `DELETE` are not
/// sent again; after any other 3xx a `HEAD` stays a `HEAD` and everything
/// else becomes a `GET`. The same rules as ureq's and curl's.
pub(crate) fn next_method(status: StatusCode, method: &Method) -> Option<Method> {
    if matches!(
        status,
        StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT
    ) {
        let refused = [Method::POST, Method::PUT, Method::PATCH, Method::DELETE];
        (!refused.contains(method)).then(|| method.clone())
    } else if *method == Method::HEAD {
        Some(Method::HEAD)
    } else {
        Some(Method::GET)
    }
}

#[cfg(test)]
mod tests {
    use ureq::http::HeaderValue;

    use super::*;

    fn uri(s: &str) -> Uri {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn origins_are_scheme_host_and_port() {
        let a = uri("http://api.example.test/v1?key=1");
        assert!(same_origin(&a, &uri("http://API.example.test:80/other")));
        assert!(same_origin(&uri("https://h/"), &uri("https://h:443/x")));
        // Another port, scheme or host is another origin, also on loopback.
        assert!(!same_origin(&a, &uri("http://api.example.test:8080/v1")));
        assert!(!same_origin(&a, &uri("https://api.example.test/v1")));
        assert!(!same_origin(&a, &uri("http://evil.example.test/v1")));
        assert!(!same_origin(
            &uri("http://127.0.0.1:4000/"),
            &uri("http://127.0.0.1:4001/")
        ));
    }

    #[test]
    fn secrets_are_left_out() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer t"),
            ("cookie", "s=1"),
            ("x-api-key", "k"),
            ("x-plain", "1"),
        ] {
            h.insert(k, HeaderValue::from_static(v));
        }
        let kept = without_secrets(&h, &["X-Api-Key".into(), "not a name".into()]);
        let names: Vec<&str> = kept.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-plain"]);
    }

    #[test]
    fn locations_resolve_against_the_current_url() {
        let cur = uri("http://a.test:81/v1/geo?key=1");
        let next = |loc: &str| {
            let mut h = HeaderMap::new();
            h.insert(LOCATION, HeaderValue::from_str(loc).expect("value"));
            next_url(&cur, &h).map(|u| u.to_string())
        };
        assert_eq!(next("/x?y=1").as_deref(), Ok("http://a.test:81/x?y=1"));
        assert_eq!(next("other").as_deref(), Ok("http://a.test:81/v1/other"));
        assert_eq!(next("//b.test/p#frag").as_deref(), Ok("http://b.test/p"));
        assert_eq!(
            next("https://b.test:8443/z").as_deref(),
            Ok("https://b.test:8443/z")
        );
        assert!(next("ftp://b.test/").is_err());
        assert!(next_url(&cur, &HeaderMap::new()).is_err());
    }

    #[test]
    fn methods_after_a_redirect() {
        let s = |c: u16| StatusCode::from_u16(c).expect("status");
        assert_eq!(next_method(s(302), &Method::POST), Some(Method::GET));
        assert_eq!(next_method(s(303), &Method::HEAD), Some(Method::HEAD));
        assert_eq!(next_method(s(301), &Method::GET), Some(Method::GET));
        assert_eq!(next_method(s(307), &Method::GET), Some(Method::GET));
        assert_eq!(next_method(s(308), &Method::OPTIONS), Some(Method::OPTIONS));
        assert_eq!(next_method(s(307), &Method::POST), None);
        assert_eq!(next_method(s(308), &Method::DELETE), None);
        assert!(is_redirect(s(302)) && !is_redirect(s(304)) && !is_redirect(s(200)));
    }
}
