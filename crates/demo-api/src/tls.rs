//! HTTPS for the demo API: rustls through tokio-rustls. Handshakes run
//! each in its own task, so that a slow or failing client holds up no other.

use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::Listener;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

/// How long a client may take over its TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The files of `--tls-cert`, `--tls-key` and `--tls-client-ca`.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The server's certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Its private key (PEM, unencrypted).
    pub key: PathBuf,
    /// When given: CA certificates (PEM); every client must then show a
    /// certificate signed by one of them (mutual TLS).
    pub client_ca: Option<PathBuf>,
}

fn bad(flag: &str, path: &Path, reason: impl std::fmt::Display) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{flag} {}: {reason}", path.display()),
    )
}

fn certs(flag: &str, path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(flag, path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(flag, path, e))?;
    if certs.is_empty() {
        return Err(bad(flag, path, "no PEM certificate in it"));
    }
    Ok(certs)
}

impl TlsFiles {
    /// Reads and checks the files: the rustls settings of the server.
    pub fn server_config(&self) -> io::Result<Arc<ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let chain = certs("--tls-cert", &self.cert)?;
        let key =
            PrivateKeyDer::from_pem_file(&self.key).map_err(|e| bad("--tls-key", &self.key, e))?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(io::Error::other)?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for cert in certs("--tls-client-ca", path)? {
                    roots
                        .add(cert)
                        .map_err(|e| bad("--tls-client-ca", path, e))?;
                }
                let verifier =
                    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                        .build()
                        .map_err(|e| bad("--tls-client-ca", path, e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "--tls-cert {} and --tls-key {}: {e}",
                    self.cert.display(),
                    self.key.display()
                ),
            )
        })?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// A listener whose connections are TLS streams whose handshake is done.
pub struct TlsListener {
    done: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Accepts on `listener` (in a task of the current runtime, which ends
    /// when this listener is dropped) and runs each handshake in a task.
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, done) = mpsc::channel(64);
        tokio::spawn(accept_loop(listener, TlsAcceptor::from(config), tx));
        Ok(Self { done, local })
    }
}

impl Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.done.recv().await {
            Some(conn) => conn,
            // The accept task is gone (it only stops when this is dropped).
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

type Done = mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>;

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, tx: Done) {
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => return,
            accepted = listener.accept() => accepted,
        };
        let Ok((tcp, peer)) = accepted else {
            // Out of file descriptors, say: wait, as axum's own listener does.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Best effort, as for plain HTTP (see `serve`).
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            let handshake = acceptor.accept(tcp).into_fallible();
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await {
                Ok(Ok(tls)) => {
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err((err, tcp))) => {
                    eprintln!("demo-api: TLS handshake with {peer} failed: {err}");
                    close_gently(tcp).await;
                }
                Err(_) => {}
            }
        });
    }
}

/// Closes a connection whose handshake failed, after the alert that says
/// why: closing with the client's request still unread would send a reset,
/// which can reach the client before the alert and hide it.
async fn close_gently(mut tcp: TcpStream) {
    let _ = tcp.shutdown().await;
    let drain = async {
        let mut buf = [0u8; 4096];
        while matches!(tcp.read(&mut buf).await, Ok(n) if n > 0) {}
    };
    let _ = tokio::time::timeout(Duration::from_secs(1), drain).await;
}
