//! HTTPS settings: which servers a [`crate::Client`] trusts, and which
//! certificate it shows when a server asks for one (mutual TLS).
//!
//! Trusted, in this order of precedence for the base set:
//!
//! 1. `SSL_CERT_FILE` and/or `SSL_CERT_DIR` when either is set: the PEM
//!    certificates in that file and in the files of those folders (`:`
//!    separated), and nothing else, as rustls-native-certs reads them;
//! 2. else the system's trust store: the bundle file and the folder that
//!    OpenSSL uses on this system (found by openssl-probe:
//!    `/etc/ssl/certs/ca-certificates.crt` and `/etc/ssl/certs` on Debian),
//!    so that a company CA or a TLS-inspecting proxy's CA installed there
//!    (`update-ca-certificates`) is trusted;
//! 3. else, on a system with no store at all, Mozilla's roots, bundled.
//!
//! `--cacert FILE` adds its certificates to that set.
//!
//! The files given (`--cacert`, `--cert`, `--key`) are read and checked by
//! [`Tls::load`]. The trust store, a few milliseconds of reading and
//! parsing, is read at the first HTTPS connection (or by
//! [`Tls::load_trust_store`]): a worker that only ever calls `http://` URLs
//! starts as fast as before, and holds no copy of it. A [`Tls`] is shared by
//! any number of clients (an `Arc` inside), trust store and rustls settings
//! included.

use std::{
    env,
    ffi::OsString,
    fmt, fs,
    path::Path,
    sync::{Arc, OnceLock},
};

use rustls::{
    RootCertStore,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};
use ureq::{
    Agent,
    config::Config,
    tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig},
    unversioned::transport::{ConnectionDetails, Connector, RustlsConnector, Transport},
};

use crate::config::{ClientConfig, ConfigError};

/// The variable naming a PEM file of trusted certificates, as in OpenSSL.
pub const SSL_CERT_FILE: &str = "SSL_CERT_FILE";
/// The variable naming folders of PEM files of trusted certificates.
pub const SSL_CERT_DIR: &str = "SSL_CERT_DIR";

/// The HTTPS settings of a [`ClientConfig`]: its TLS files, read and
/// checked, and the trust store, read once when first needed. Cheap to
/// clone: clones share everything.
#[derive(Clone)]
pub struct Tls(Arc<Inner>);

struct Inner {
    /// The certificates of `--cacert`.
    extra: Vec<CertificateDer<'static>>,
    /// `--cert` and `--key`.
    client_cert: Option<ClientCert>,
    /// ureq settings holding the whole trust and the client certificate,
    /// made at the first HTTPS connection; or why they cannot be.
    ready: OnceLock<Result<Config, String>>,
    /// ureq's rustls step, shared: it makes its rustls settings (the root
    /// store, parsed) once, for every connection of every client.
    rustls: RustlsConnector,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("extra_roots", &self.0.extra.len())
            .field("client_cert", &self.0.client_cert.is_some())
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the `--cacert` file and the `--cert`/`--key` pair of `config`,
    /// and checks them: every certificate must parse, and the key must be
    /// the private key of the certificate. The trust store is read later
    /// (see the module documentation).
    pub fn load(config: &ClientConfig) -> Result<Self, ConfigError> {
        let extra = match &config.ca_file {
            Some(path) => load_ca_file(path)?,
            None => Vec::new(),
        };
        let client_cert = match (&config.cert_file, &config.key_file) {
            (None, None) => None,
            (None, Some(key)) => {
                return Err(ConfigError::Tls(format!(
                    "--key {} needs --cert: give the client certificate (PEM) with --cert FILE",
                    key.display()
                )));
            }
            (Some(cert), key) => Some(load_client_cert(cert, key.as_deref())?),
        };
        Ok(Self(Arc::new(Inner {
            extra,
            client_cert,
            ready: OnceLock::new(),
            rustls: RustlsConnector::default(),
        })))
    }

    /// Reads the trust store now if it has not been read yet, so that a bad
    /// `SSL_CERT_FILE` or `SSL_CERT_DIR` is an error here and not at the
    /// first HTTPS connection (where it fails the job with kind `tls`).
    pub fn load_trust_store(&self) -> Result<(), ConfigError> {
        self.ready()
            .map(|_| ())
            .map_err(|e| ConfigError::Tls(e.to_owned()))
    }

    /// Whether a client certificate is shown to servers that ask.
    pub fn has_client_cert(&self) -> bool {
        self.0.client_cert.is_some()
    }

    /// The TLS step of a client's connector chain.
    pub(crate) fn connector(&self) -> TlsConnector {
        TlsConnector(self.clone())
    }

    /// The ureq settings with the whole trust, made at the first call.
    fn ready(&self) -> Result<&Config, &str> {
        self.0
            .ready
            .get_or_init(|| {
                let mut roots = base_roots()?;
                roots.extend(self.0.extra.iter().cloned());
                let roots: Vec<Certificate<'static>> = roots
                    .iter()
                    .map(|der| Certificate::from_der(der.as_ref()).to_owned())
                    .collect();
                let tls = TlsConfig::builder()
                    .root_certs(RootCerts::Specific(Arc::new(roots)))
                    .client_cert(self.0.client_cert.clone())
                    .build();
                // Only the TLS part (and the buffer sizes, default) of these
                // settings is read, by ureq's rustls step.
                Ok(Agent::config_builder().tls_config(tls).build())
            })
            .as_ref()
            .map_err(String::as_str)
    }
}

/// The trust store could not be read at the first HTTPS connection;
/// `classify` maps it to `tls`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct TrustStoreError(String);

impl TrustStoreError {
    #[cfg(test)]
    pub(crate) fn new(message: &str) -> Self {
        Self(message.to_owned())
    }
}

/// The TLS step of a client's connector chain: ureq's own rustls step,
/// given this client's TLS settings.
pub(crate) struct TlsConnector(Tls);

impl fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("TlsConnector").field(&self.0).finish()
    }
}

impl<In: Transport> Connector<In> for TlsConnector {
    type Out = <RustlsConnector as Connector<In>>::Out;

    fn connect(
        &self,
        details: &ConnectionDetails,
        chained: Option<In>,
    ) -> Result<Option<Self::Out>, ureq::Error> {
        let rustls = &self.0.0.rustls;
        if !details.needs_tls() {
            // Passes the plain connection through.
            return rustls.connect(details, chained);
        }
        let config = self
            .0
            .ready()
            .map_err(|e| ureq::Error::Other(Box::new(TrustStoreError(e.to_owned()))))?;
        let details = ConnectionDetails {
            uri: details.uri,
            addrs: details.addrs.clone(),
            config,
            // Always the same TLS settings, whatever the request's own
            // settings (timeouts): ureq makes its rustls settings once,
            // instead of once per connection as for request-level ones.
            request_level: false,
            resolver: details.resolver,
            now: details.now,
            timeout: details.timeout,
            current_time: details.current_time.clone(),
            run_connector: details.run_connector.clone(),
            register_shutdown: details.register_shutdown.clone(),
        };
        rustls.connect(&details, chained)
    }
}

/// The certificates trusted before `--cacert`; an error is a message.
fn base_roots() -> Result<Vec<CertificateDer<'static>>, String> {
    let named: Vec<String> = [SSL_CERT_FILE, SSL_CERT_DIR]
        .into_iter()
        .filter_map(|var| env::var_os(var).map(|v| env_setting(var, &v)))
        .collect();
    // Reads SSL_CERT_FILE/SSL_CERT_DIR when either is set, else the system's.
    let loaded = rustls_native_certs::load_native_certs();
    if !named.is_empty() {
        let named = named.join(" and ");
        // Set on purpose: a mistake there must not pass unnoticed.
        if let Some(e) = loaded.errors.first() {
            return Err(format!(
                "{named}: {e}; point it at a readable PEM file (or folder), or unset it"
            ));
        }
        if loaded.certs.is_empty() {
            return Err(format!(
                "{named}: no PEM certificate found there (a -----BEGIN CERTIFICATE----- block); \
                 point it at your CA bundle, or unset it"
            ));
        }
        return Ok(loaded.certs);
    }
    // The system's store: a file that cannot be read there is skipped, as
    // OpenSSL does; only a store with nothing in it falls back.
    if loaded.certs.is_empty() {
        return Ok(webpki_root_certs::TLS_SERVER_ROOT_CERTS.to_vec());
    }
    Ok(loaded.certs)
}

fn env_setting(var: &str, value: &OsString) -> String {
    format!("{var}={}", value.to_string_lossy())
}

fn file_error(flag: &'static str, path: &Path, reason: impl Into<String>) -> ConfigError {
    ConfigError::TlsFile {
        flag,
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

fn read(flag: &'static str, path: &Path) -> Result<Vec<u8>, ConfigError> {
    fs::read(path).map_err(|e| file_error(flag, path, format!("cannot read it: {e}")))
}

/// The PEM certificates of a file, in order; none is an error.
fn pem_certs(
    flag: &'static str,
    path: &Path,
    bytes: &[u8],
) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(flag, path, format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(file_error(
            flag,
            path,
            "no certificate in it: give a PEM file with one or more \
             -----BEGIN CERTIFICATE----- blocks (for a DER file: \
             openssl x509 -inform der -in FILE -out FILE.pem)",
        ));
    }
    Ok(certs)
}

/// `--cacert`: one or more CA certificates, each a valid trust anchor.
fn load_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, ConfigError> {
    const FLAG: &str = "--cacert";
    let certs = pem_certs(FLAG, path, &read(FLAG, path)?)?;
    let mut store = RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        store.add(cert.clone()).map_err(|e| {
            file_error(
                FLAG,
                path,
                format!(
                    "certificate {} of {} is not usable: {e}",
                    i + 1,
                    certs.len()
                ),
            )
        })?;
    }
    Ok(certs)
}

/// `--cert` (the chain, leaf first) and `--key` (or the key in the
/// `--cert` file, as curl allows), checked to belong together.
fn load_client_cert(cert_path: &Path, key_path: Option<&Path>) -> Result<ClientCert, ConfigError> {
    let cert_bytes = read("--cert", cert_path)?;
    let chain = pem_certs("--cert", cert_path, &cert_bytes)?;
    let (key_flag, key_path, key_bytes) = match key_path {
        Some(p) => ("--key", p, read("--key", p)?),
        None => ("--cert", cert_path, cert_bytes),
    };
    let key = match PrivateKeyDer::from_pem_slice(&key_bytes) {
        Ok(key) => key,
        Err(rustls::pki_types::pem::Error::NoItemsFound) if key_flag == "--cert" => {
            return Err(file_error(
                "--cert",
                cert_path,
                "holds no private key: give it with --key FILE",
            ));
        }
        Err(rustls::pki_types::pem::Error::NoItemsFound) => {
            return Err(file_error(
                key_flag,
                key_path,
                "no private key in it: give an unencrypted PEM key (-----BEGIN PRIVATE KEY-----, \
                 RSA PRIVATE KEY or EC PRIVATE KEY; decrypt one with openssl pkey -in FILE -out FILE.key)",
            ));
        }
        Err(e) => {
            return Err(file_error(
                key_flag,
                key_path,
                format!("not valid PEM: {e}"),
            ));
        }
    };
    // What ureq will do with them at the first TLS connection (where a
    // mismatch would be a panic): check it now, with the same provider.
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain.clone(), key.clone_key(), &provider).map_err(
        |e| {
            ConfigError::Tls(format!(
                "--cert {} and {key_flag} {}: not a usable client certificate and key: {e}",
                cert_path.display(),
                key_path.display()
            ))
        },
    )?;
    // ureq's own reading of the same bytes finds the same key: the first
    // PKCS#8, PKCS#1 or SEC1 block.
    let key = PrivateKey::from_pem(&key_bytes)
        .map_err(|e| file_error(key_flag, key_path, format!("not valid PEM: {e}")))?;
    let chain: Vec<Certificate<'static>> = chain
        .iter()
        .map(|der| Certificate::from_der(der.as_ref()).to_owned())
        .collect();
    Ok(ClientCert::new_with_certs(&chain, key))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::path::PathBuf;

    use super::*;

    struct Pki {
        dir: tempfile::TempDir,
    }

    impl Pki {
        fn new() -> Self {
            Self {
                dir: tempfile::tempdir().unwrap(),
            }
        }
        fn write(&self, name: &str, content: &str) -> PathBuf {
            let p = self.dir.path().join(name);
            fs::write(&p, content).unwrap();
            p
        }
    }

    /// A self-signed CA, and a leaf with its key signed by it.
    fn ca_and_leaf() -> (String, String, String) {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["client.test".to_string()])
            .unwrap()
            .signed_by(&leaf_key, &ca, &ca_key)
            .unwrap();
        (ca.pem(), leaf.pem(), leaf_key.serialize_pem())
    }

    fn config() -> ClientConfig {
        ClientConfig::default()
    }

    fn err(c: &ClientConfig) -> String {
        match Tls::load(c) {
            Ok(_) => panic!("loaded: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn cacert_adds_to_the_trust() {
        let pki = Pki::new();
        let (ca, _, _) = ca_and_leaf();
        let c = ClientConfig {
            ca_file: Some(pki.write("ca.pem", &format!("# our CA\n{ca}"))),
            ..config()
        };
        let tls = Tls::load(&c).unwrap();
        assert_eq!(tls.0.extra.len(), 1);
        assert!(!tls.has_client_cert());
        tls.load_trust_store().unwrap();
    }

    #[test]
    fn bad_cacert_files_are_named() {
        let pki = Pki::new();
        let missing = pki.dir.path().join("nope.pem");
        let c = ClientConfig {
            ca_file: Some(missing.clone()),
            ..config()
        };
        let e = err(&c);
        assert!(
            e.starts_with(&format!("--cacert {}: cannot read it", missing.display())),
            "{e}"
        );
        let c = ClientConfig {
            ca_file: Some(pki.write("empty.pem", "hello\n")),
            ..config()
        };
        let e = err(&c);
        assert!(
            e.contains("empty.pem") && e.contains("no certificate"),
            "{e}"
        );
        let c = ClientConfig {
            ca_file: Some(pki.write(
                "junk.pem",
                "-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n",
            )),
            ..config()
        };
        let e = err(&c);
        assert!(
            e.contains("junk.pem") && e.contains("certificate 1 of 1"),
            "{e}"
        );
    }

    #[test]
    fn client_cert_and_key() {
        let pki = Pki::new();
        let (_, leaf, key) = ca_and_leaf();
        let cert = pki.write("client.pem", &leaf);
        let key_file = pki.write("client.key", &key);
        let c = ClientConfig {
            cert_file: Some(cert.clone()),
            key_file: Some(key_file.clone()),
            ..config()
        };
        assert!(Tls::load(&c).unwrap().has_client_cert());

        // The key inside the --cert file, as curl allows.
        let both = pki.write("both.pem", &format!("{leaf}{key}"));
        let c = ClientConfig {
            cert_file: Some(both),
            ..config()
        };
        assert!(Tls::load(&c).unwrap().has_client_cert());

        // --cert without a key anywhere.
        let c = ClientConfig {
            cert_file: Some(cert.clone()),
            ..config()
        };
        assert!(err(&c).contains("give it with --key"), "{}", err(&c));

        // --key alone.
        let c = ClientConfig {
            key_file: Some(key_file),
            ..config()
        };
        assert!(err(&c).contains("needs --cert"), "{}", err(&c));

        // A key that is not the certificate's.
        let (_, _, other_key) = ca_and_leaf();
        let c = ClientConfig {
            cert_file: Some(cert),
            key_file: Some(pki.write("other.key", &other_key)),
            ..config()
        };
        let e = err(&c);
        assert!(e.contains("other.key") && e.contains("not a usable"), "{e}");
    }
}
