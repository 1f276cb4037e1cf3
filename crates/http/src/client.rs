//! The [`Client`]: one ureq agent for the life of a worker.

use std::{io::Read, path::PathBuf, time::Duration};

use callpool_protocol::{HttpResponse, JobError, JobRequest};
use ureq::{
    Agent, AsSendBody, Proxy,
    http::{HeaderValue, Request},
    unversioned::transport::{ConnectProxyConnector, Connector, TcpConnector},
};

use crate::{
    error::{ErrorContext, classify},
    request::{prepare, target_of},
    resolver::CachingResolver,
    response::{body_to_raw, declares_json, join_headers},
    tls::Tls,
};

/// The default maximum response body size: 16 MiB.
pub const DEFAULT_MAX_BODY: u64 = 16 * 1024 * 1024;

/// The default `User-Agent`: `callpool/<version>`.
pub const DEFAULT_USER_AGENT: &str = concat!("callpool/", env!("CARGO_PKG_VERSION"));

/// The longest time given to resolving a host name and to setting up a
/// connection (each), within the job's own timeout.
pub const CONNECT_TIMEOUT_CAP: Duration = Duration::from_secs(10);

/// How a [`Client`] is set up.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Largest response body accepted, in bytes, after gzip decoding. A
    /// longer body fails the job with `body_too_large`.
    pub max_body: u64,
    /// The `User-Agent` sent when the job has no `user-agent` header of its
    /// own. Empty means none.
    pub user_agent: String,
    /// `--cacert`: a PEM file of one or more CA certificates trusted on top
    /// of the system's store (see [`Tls`]).
    pub ca_file: Option<PathBuf>,
    /// `--cert`: a PEM file with the client certificate (and the chain up
    /// to its CA, if needed) shown to servers that ask for one (mutual
    /// TLS). It may hold the private key too.
    pub cert_file: Option<PathBuf>,
    /// `--key`: the PEM private key of `cert_file` (unencrypted).
    pub key_file: Option<PathBuf>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            max_body: DEFAULT_MAX_BODY,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            ca_file: None,
            cert_file: None,
            key_file: None,
        }
    }
}

/// Why a [`Client`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The user agent holds characters an HTTP header cannot (line breaks,
    /// control characters).
    #[error("invalid user agent {0:?}: not a valid HTTP header value")]
    InvalidUserAgent(String),
    /// A TLS file (`--cacert`, `--cert`, `--key`) that cannot be read or
    /// does not hold what it should.
    #[error("{flag} {}: {reason}", path.display())]
    TlsFile {
        /// The option that named the file.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// Any other TLS setting that cannot work (a key without a
    /// certificate, a bad `SSL_CERT_FILE`): the message says which.
    #[error("{0}")]
    Tls(String),
}

/// Makes the HTTP calls of jobs, one at a time or from several threads, over
/// one [`ureq::Agent`]: connections are kept alive and reused between jobs
/// to the same host.
///
/// Agent settings: a 4xx/5xx status is a response, not an error; the
/// proxy comes from `ALL_PROXY`/`HTTPS_PROXY`/`HTTP_PROXY` (and `NO_PROXY`);
/// gzip is accepted and decoded; up to 10 redirects are followed; HTTPS
/// trusts what [`Tls`] describes.
#[derive(Debug)]
pub struct Client {
    agent: Agent,
    max_body: u64,
}

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
        })
    }

    /// The maximum response body size, in bytes.
    pub fn max_body(&self) -> u64 {
        self.max_body
    }

    /// Makes the request of a job and reads the whole response.
    ///
    /// `timeout_ms` bounds the whole call, from name lookup to the last body
    /// byte; name lookup and connection setup each also stop after
    /// [`CONNECT_TIMEOUT_CAP`]. Any status is `Ok`. The body is reported as
    /// JSON when the response's `content-type` is `application/json` or
    /// `*/*+json` and the body is one valid JSON document, else as text.
    ///
    /// Job headers are case-insensitive: the same name twice in different
    /// letter case is a `bad_request`; a job `user-agent` replaces the
    /// client's; job `content-length` and `transfer-encoding` are dropped
    /// (the body is sent whole with its exact length).
    ///
    /// Errors are [`JobError`]s whose `kind` is an [`crate::ErrorKind`] name.
    pub fn execute(&self, req: &JobRequest) -> Result<HttpResponse, JobError> {
        let request = prepare(req)?;
        let timeout = Duration::from_millis(req.timeout_ms);
        let connect_timeout = timeout.min(CONNECT_TIMEOUT_CAP);
        let result = match req.body.as_deref() {
            Some(body) => self.run(request.map(|()| body.as_bytes()), timeout, connect_timeout),
            None => self.run(request, timeout, connect_timeout),
        };
        result.map_err(|e| {
            let target = target_of(&req.url);
            let cx = ErrorContext {
                target: &target,
                timeout,
                connect_timeout,
            };
            let (kind, message) = classify(&e, &cx);
            kind.job_error(message)
        })
    }

    fn run(
        &self,
        request: Request<impl AsSendBody>,
        timeout: Duration,
        connect_timeout: Duration,
    ) -> Result<HttpResponse, ureq::Error> {
        let request = self
            .agent
            .configure_request(request)
            .timeout_global(Some(timeout))
            .timeout_resolve(Some(connect_timeout))
            .timeout_connect(Some(connect_timeout))
            .build();
        let (parts, body) = self.agent.run(request)?.into_parts();
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
