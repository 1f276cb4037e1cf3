//! The [`Client`]: one ureq agent for the life of a worker.

use std::{
    io::Read,
    time::{Duration, Instant},
};

use callpool_protocol::{ErrorKind, HttpResponse, JobError, JobRequest};
use ureq::{
    Agent, AsSendBody, Body, Proxy, Timeout,
    http::{HeaderMap, HeaderValue, Method, Request, Response, Uri},
    unversioned::transport::{ConnectProxyConnector, Connector, TcpConnector},
};

use crate::{
    config::{ClientConfig, ConfigError},
    error::{ErrorContext, classify},
    redirect::{MAX_REDIRECTS, is_redirect, next_method, next_url, same_origin, without_secrets},
    request::{prepare, target_of},
    resolver::CachingResolver,
    response::{body_to_raw, declares_json, join_headers},
    tls::Tls,
};

/// The longest time given to resolving a host name and to setting up a
/// connection (each), within the job's own timeout.
pub const CONNECT_TIMEOUT_CAP: Duration = Duration::from_secs(10);

/// Makes the HTTP calls of jobs, one at a time or from several threads, over
/// one [`ureq::Agent`]: connections are kept alive and reused between jobs
/// to the same host.
///
/// Agent settings: a 4xx/5xx status is a response, not an error; the
/// proxy comes from `ALL_PROXY`/`HTTPS_PROXY`/`HTTP_PROXY` (and `NO_PROXY`);
/// gzip is accepted and decoded; HTTPS trusts what [`Tls`] describes.
///
/// Redirects are followed here, not by ureq (see [`Client::execute`]).
#[derive(Debug)]
pub struct Client {
    agent: Agent,
    max_body: u64,
    location_trusted: bool,
}

/// How much of a redirect's body is read, and thrown away, so that its
/// connection can serve the next request; past it the connection is
/// closed instead.
const REDIRECT_BODY_CAP: u64 = 64 * 1024;

impl Client {
    /// A client with its own connection pool. Reads and checks the TLS
    /// files of `config` ([`Tls::load`]; the trust store is read at the
    /// first HTTPS connection): to build many clients with the same
    /// settings, load them once and use [`Client::with_tls`].
    pub fn new(config: ClientConfig) -> Result<Self, ConfigError> {
        let tls = Tls::load(&config)?;
        Self::with_tls(config, &tls)
    }

    /// A client with its own connection pool and TLS settings already
    /// loaded (from this `config`; its file fields are not read again).
    /// Cheap: the certificates, the trust store and the rustls settings
    /// are shared with every other client of `tls`, not copied.
    pub fn with_tls(config: ClientConfig, tls: &Tls) -> Result<Self, ConfigError> {
        // ureq would panic on an invalid agent-level user agent when sending.
        if HeaderValue::from_str(&config.user_agent).is_err() {
            return Err(ConfigError::InvalidUserAgent(config.user_agent));
        }
        let agent_config = Agent::config_builder()
            .http_status_as_error(false)
            .user_agent(config.user_agent)
            .proxy(Proxy::try_from_env())
            // Extension methods (PURGE, PROPFIND, ...) are the job's business.
            .allow_non_standard_methods(true)
            // Redirects are followed by `execute`, which decides what
            // headers the next host gets.
            .max_redirects(0)
            .build();
        // ureq's default chain (CONNECT proxy, TCP, rustls), with a TLS
        // step that uses this client's TLS settings (see `tls.rs`).
        let connector =
            ().chain(ConnectProxyConnector::default())
                .chain(TcpConnector::default())
                .chain(tls.connector());
        let agent = Agent::with_parts(agent_config, connector, CachingResolver::default());
        Ok(Self {
            agent,
            max_body: config.max_body,
            location_trusted: config.location_trusted,
        })
    }

    /// The maximum response body size, in bytes.
    pub fn max_body(&self) -> u64 {
        self.max_body
    }

    /// Makes the request of a job and reads the whole response.
    ///
    /// `timeout_ms` bounds the whole call, from name lookup to the last body
    /// byte, redirects included; name lookup and connection setup each also
    /// stop after [`CONNECT_TIMEOUT_CAP`]. Any status is `Ok`. The body is
    /// reported as JSON when the response's `content-type` is
    /// `application/json` or `*/*+json` and the body is one valid JSON
    /// document, else as text.
    ///
    /// Job headers are case-insensitive: the same name twice in different
    /// letter case is a `bad_request`; a job `user-agent` replaces the
    /// client's; job `content-length` and `transfer-encoding` are dropped
    /// (the body is sent whole with its exact length).
    ///
    /// Up to 10 redirects are followed (one more is a `protocol` error).
    /// After a 301, 302 or 303 the next request is a `GET` (a `HEAD` stays
    /// a `HEAD`); after a 307 or 308 the method is kept, but a `POST`,
    /// `PUT`, `PATCH` or `DELETE` is not sent again (a `protocol` error).
    /// The body is sent to the first URL only. The secret headers
    /// (`authorization`, `cookie` and the job's `secret_headers`) go only
    /// to the origin (scheme, host, port) of the job's URL, unless
    /// [`ClientConfig::location_trusted`]; the other headers go everywhere.
    ///
    /// Errors are [`JobError`]s whose `kind` is an [`crate::ErrorKind`] name.
    pub fn execute(&self, req: &JobRequest) -> Result<HttpResponse, JobError> {
        let (parts, ()) = prepare(req)?.into_parts();
        let timeout = Duration::from_millis(req.timeout_ms);
        let connect_timeout = timeout.min(CONNECT_TIMEOUT_CAP);
        let target = target_of(&req.url);
        let fail = |e: ureq::Error| {
            let cx = ErrorContext {
                target: &target,
                timeout,
                connect_timeout,
            };
            let (kind, message) = classify(&e, &cx);
            kind.job_error(message)
        };
        let protocol = |message: String| {
            ErrorKind::Protocol.job_error(format!("HTTP protocol error with {target}: {message}"))
        };
        // A timeout too large for the clock is no timeout.
        let deadline = Instant::now().checked_add(timeout);

        let first = parts.uri;
        let mut method = parts.method;
        let mut uri = first.clone();
        let mut body = req.body.as_deref().map(str::as_bytes);
        let mut stripped: Option<HeaderMap> = None;
        let mut redirects = 0;
        loop {
            let remaining =
                deadline.map_or(timeout, |d| d.saturating_duration_since(Instant::now()));
            if remaining.is_zero() {
                return Err(fail(ureq::Error::Timeout(Timeout::Global)));
            }
            let headers = if self.location_trusted || same_origin(&first, &uri) {
                &parts.headers
            } else {
                stripped.get_or_insert_with(|| without_secrets(&parts.headers, &req.secret_headers))
            };
            let hop = Hop {
                method: &method,
                uri: &uri,
                headers,
                timeout: remaining,
                connect_timeout: connect_timeout.min(remaining),
            };
            let response = self.send(&hop, body).map_err(fail)?;
            let status = response.status();
            if !is_redirect(status) {
                return self.read(response).map_err(fail);
            }
            if redirects == MAX_REDIRECTS {
                return Err(fail(ureq::Error::TooManyRedirects));
            }
            redirects += 1;
            let next = next_url(&uri, response.headers()).map_err(protocol)?;
            method =
                next_method(status, &method).ok_or_else(|| fail(ureq::Error::RedirectFailed))?;
            discard(response.into_body());
            uri = next;
            body = None;
        }
    }

    /// Sends one request of a job (the first, or one after a redirect).
    fn send(&self, hop: &Hop<'_>, body: Option<&[u8]>) -> Result<Response<Body>, ureq::Error> {
        let mut request = Request::new(());
        *request.method_mut() = hop.method.clone();
        *request.uri_mut() = hop.uri.clone();
        *request.headers_mut() = hop.headers.clone();
        match body {
            Some(body) => self.run(request.map(|()| body), hop),
            None => self.run(request, hop),
        }
    }

    fn run(
        &self,
        request: Request<impl AsSendBody>,
        hop: &Hop<'_>,
    ) -> Result<Response<Body>, ureq::Error> {
        let request = self
            .agent
            .configure_request(request)
            .timeout_global(Some(hop.timeout))
            .timeout_resolve(Some(hop.connect_timeout))
            .timeout_connect(Some(hop.connect_timeout))
            .build();
        self.agent.run(request)
    }

    /// The whole answer, its body read within the limit.
    fn read(&self, response: Response<Body>) -> Result<HttpResponse, ureq::Error> {
        let (parts, body) = response.into_parts();
        let json = declares_json(&parts.headers);
        let headers = join_headers(&parts.headers);

        // A hint only: a server may lie, and gzip changes the length.
        let capacity = body.content_length().unwrap_or(0).min(self.max_body);
        let mut bytes = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
        body.into_with_config()
            .limit(self.max_body)
            .reader()
            .read_to_end(&mut bytes)
            // Unwraps the ureq error (limit, timeout) the reader carries.
            .map_err(ureq::Error::from)?;

        let (body_kind, body) = body_to_raw(bytes, json);
        Ok(HttpResponse {
            status: parts.status.as_u16(),
            headers,
            body_kind,
            body,
        })
    }
}

/// One request of a job's chain of redirects.
struct Hop<'a> {
    method: &'a Method,
    uri: &'a Uri,
    headers: &'a HeaderMap,
    /// What is left of the job's time.
    timeout: Duration,
    connect_timeout: Duration,
}

/// Reads a redirect's body up to [`REDIRECT_BODY_CAP`] and drops it. A
/// failure here only costs the connection: the next request, or the
/// deadline, decides the job.
fn discard(body: Body) {
    let mut reader = body.into_with_config().limit(REDIRECT_BODY_CAP).reader();
    let _ = std::io::copy(&mut reader, &mut std::io::sink());
}
