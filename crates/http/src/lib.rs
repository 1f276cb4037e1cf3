//! The HTTP call of a callpool job, made with [ureq] 3.
//!
//! A worker builds one [`Client`] at start and calls [`Client::execute`] for
//! each job: the request of a [`callpool_protocol::JobRequest`] becomes a
//! [`callpool_protocol::HttpResponse`] (any status) or a
//! [`callpool_protocol::JobError`] whose `kind` is one of the stable
//! [`ErrorKind`] names.

mod client;
mod config;
mod error;
mod redirect;
mod request;
mod resolver;
mod response;
mod size;
mod tls;

pub use client::{CONNECT_TIMEOUT_CAP, Client};
pub use config::{ClientConfig, ConfigError, DEFAULT_MAX_BODY, DEFAULT_USER_AGENT};
pub use error::{ErrorContext, ErrorKind, classify};
pub use response::{is_json_content_type, join_headers};
pub use size::{ByteSizeError, parse_byte_size};
pub use tls::{SSL_CERT_DIR, SSL_CERT_FILE, Tls};
