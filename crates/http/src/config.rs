//! How a [`crate::Client`] is set up, and why it could not be: plain data
//! that both the client and its TLS settings (`tls.rs`) read. It is a leaf,
//! depending on no other module here, so that `client` -> `tls` and
//! `client` -> `error` -> `tls` do not loop back into `client`.

use std::path::PathBuf;

/// The default maximum response body size: 16 MiB.
pub const DEFAULT_MAX_BODY: u64 = 16 * 1024 * 1024;

/// The default `User-Agent`: `callpool/<version>`.
pub const DEFAULT_USER_AGENT: &str = concat!("callpool/", env!("CARGO_PKG_VERSION"));

/// How a [`crate::Client`] is set up.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Largest response body accepted, in bytes, after gzip decoding. A
    /// longer body fails the job with `body_too_large`.
    pub max_body: u64,
    /// The `User-Agent` sent when the job has no `user-agent` header of its
    /// own. Empty means none.
    pub user_agent: String,
    /// `--cacert`: a PEM file of one or more CA certificates trusted on top
    /// of the system's store (see [`crate::Tls`]).
    pub ca_file: Option<PathBuf>,
    /// `--cert`: a PEM file with the client certificate (and the chain up
    /// to its CA, if needed) shown to servers that ask for one (mutual
    /// TLS). It may hold the private key too.
    pub cert_file: Option<PathBuf>,
    /// `--key`: the PEM private key of `cert_file` (unencrypted).
    pub key_file: Option<PathBuf>,
    /// `--location-trusted`: on a redirect to another origin, keep the
    /// headers that are secret (`authorization`, `cookie` and a job's
    /// `secret_headers`), which are otherwise sent to the job's own origin
    /// only.
    pub location_trusted: bool,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            max_body: DEFAULT_MAX_BODY,
            user_agent: DEFAULT_USER_AGENT.to_owned(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            location_trusted: false,
        }
    }
}

/// Why a [`crate::Client`] could not be built.
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
