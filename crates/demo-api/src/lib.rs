//! `demo-api`: a real local HTTP API shaped like Google's Geocoding API, for
//! callpool's demos, tests and fault drills.
//!
//! Endpoints (all on one listener):
//!
//! - `GET /maps/api/geocode/json?address=...&language=...&key=...` answers
//!   from the embedded [`places`] table in Google's JSON shape: `status`
//!   `OK` with one result, `ZERO_RESULTS`, or `INVALID_REQUEST` (HTTP 200)
//!   when `address` is missing or blank. Every reply also carries an `echo`
//!   object with all query parameters received (a repeated name maps to an
//!   array of its values), so `language`, `key` etc. can be checked.
//! - `GET /geocoding/v5/mapbox.places/{query}.json?access_token=...`: the
//!   same table in the shape of Mapbox's geocoder, the query in one
//!   percent-encoded path segment.
//! - `POST /v1:validateAddress?key=...`: a JSON body in the shape of
//!   Google's Address Validation API; echoes the raw body.
//! - `GET /users/{login}`: a GitHub-style user with `X-RateLimit-*` budget
//!   headers and 403 when the budget of [`Config`] is spent; `GET /_stats`
//!   counts what `/users/` answered.
//! - `/echo` and `/echo/...` (any method): method, path, raw and parsed
//!   query, headers (lower-case names) and body text of the request, as JSON.
//! - `GET /text`: `hello from demo-api\n` as `text/plain`.
//! - `GET /healthz`: `ok`.
//!
//! Fault knobs, in the geocode query (never used for matching), applied in
//! this order:
//!
//! - `hang=1`: never answer; the request parks until the client leaves.
//! - `delay_ms=N`: sleep N ms (asynchronously) before answering.
//! - `fail_first=K`: the first K calls per key answer HTTP 200
//!   `OVER_QUERY_LIMIT`, or HTTP `fail_status=CODE` with `status` `ERROR`
//!   when that is not 2xx. The key is `fail_key`, else `key`, else the
//!   address; counts live as long as the process.
//! - `status=CODE` (200..=599): the normal body with that HTTP status; a
//!   non-2xx sets `status` to `ERROR` and adds an `error_message`.
//! - `retry_after=VALUE`: a verbatim `Retry-After` header on responses whose
//!   status a knob chose (`status`, or a failing `fail_first` call).
//! - `body_bytes=N`: a `padding` field makes the body exactly N bytes (or
//!   its natural size if larger).
//!
//! A malformed knob value answers HTTP 400 `INVALID_REQUEST` naming it.
//!
//! HTTPS: [`run`] or [`serve_tls`] with the rustls settings that
//! [`TlsFiles::server_config`] makes from the binary's `--tls-cert` and
//! `--tls-key` (and `--tls-client-ca`, to require client certificates).
//!
//! The binary is `bin/demo-api`; this crate also lets tests run the server
//! in-process with [`serve`] or embed [`router`].

pub mod places;

mod budget;
mod knobs;
mod mapbox;
mod routes;
mod tls;
mod users;
mod validate;

pub use budget::{Config, RateLimitHeaders};
pub use tls::{TlsFiles, TlsListener};

use std::fmt::Debug;
use std::future::{Future, IntoFuture};
use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use axum::serve::{Listener, ListenerExt};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;

/// How long in-flight requests may finish after a shutdown signal. Bounded
/// because `hang=1` requests never finish on their own, and a stuck demo
/// server would stall the scripts that stop it.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// The router with all endpoints and fresh state (fail counters at zero,
/// a full budget), with the default [`Config`], for embedding in another
/// axum server or driving with `tower` directly.
pub fn router() -> axum::Router {
    routes::router(&Config::default())
}

/// [`router`] with this configuration (the `/users/` budget).
pub fn router_with(config: &Config) -> axum::Router {
    routes::router(config)
}

/// Serves the demo API on `listener` until `shutdown` completes, then lets
/// in-flight requests finish for at most [`SHUTDOWN_GRACE`].
///
/// Returns `Ok(())` after shutdown. Use a listener bound to port 0 and read
/// its `local_addr()` to run many servers side by side in tests. Requests
/// still running after the grace period (e.g. `hang=1`) are not awaited:
/// they end when their client disconnects or the runtime is dropped.
pub async fn serve<F>(listener: TcpListener, shutdown: F) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    serve_with(listener, None, &Config::default(), shutdown).await
}

/// [`serve`] with this configuration, over HTTPS when `tls` is given (see
/// [`serve_tls`]).
pub async fn serve_with<F>(
    listener: TcpListener,
    tls: Option<Arc<ServerConfig>>,
    config: &Config,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    if let Some(tls) = tls {
        return serve_on(TlsListener::new(listener, tls)?, config, shutdown).await;
    }
    // Small replies are written in one go anyway, but larger ones may take
    // two writes; without NODELAY, Nagle plus delayed ACKs can then add
    // ~40 ms to a keep-alive request, which would distort latency tests.
    let listener = listener.tap_io(|stream| {
        // Best effort: a socket that refuses NODELAY still works.
        let _ = stream.set_nodelay(true);
    });
    serve_on(listener, config, shutdown).await
}

/// [`serve`] over HTTPS, with these rustls settings (see
/// [`TlsFiles::server_config`]). A client whose handshake fails is told why
/// by a TLS alert, and the failure is printed on stderr.
pub async fn serve_tls<F>(
    listener: TcpListener,
    tls: Arc<ServerConfig>,
    shutdown: F,
) -> io::Result<()>
where
    F: Future<Output = ()> + Send + 'static,
{
    serve_with(listener, Some(tls), &Config::default(), shutdown).await
}

async fn serve_on<L, F>(listener: L, config: &Config, shutdown: F) -> io::Result<()>
where
    L: Listener,
    L::Addr: Debug,
    F: Future<Output = ()> + Send + 'static,
{
    // One signal feeds two waiters: axum's graceful shutdown (stop
    // accepting, finish in-flight requests) and the grace deadline below.
    let (stopped_tx, stopped_rx) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        let _ = stopped_tx.send(true);
    });
    let mut graceful_rx = stopped_rx.clone();
    let server = axum::serve(listener, router_with(config))
        .with_graceful_shutdown(async move {
            // Err means the sender is gone without sending (the shutdown
            // future panicked); stopping is the right answer then too.
            let _ = graceful_rx.wait_for(|stopped| *stopped).await;
        })
        .into_future();

    let mut deadline_rx = stopped_rx;
    let deadline = async move {
        let _ = deadline_rx.wait_for(|stopped| *stopped).await;
        tokio::time::sleep(SHUTDOWN_GRACE).await;
    };

    tokio::select! {
        result = server => result,
        // Give up on stragglers; in the binary they die with the runtime.
        () = deadline => Ok(()),
    }
}

/// Completes on the first SIGTERM or SIGINT.
///
/// The handlers are installed when this function is *called*, not when the
/// future is first polled, so a signal sent right after startup is not
/// lost (and does not kill the process with the default action).
pub fn shutdown_signal() -> io::Result<impl Future<Output = ()> + Send + 'static> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

/// The whole program: binds `host:port` (port 0 = ephemeral), prints
/// `demo-api listening on http://ADDR` (`https://` with `tls`) as the only
/// stdout line, and serves until SIGTERM or SIGINT.
pub async fn run(
    host: &str,
    port: u16,
    tls: Option<Arc<ServerConfig>>,
    config: &Config,
) -> io::Result<()> {
    // Signals first: scripts may send SIGTERM as soon as they see the line.
    let shutdown = shutdown_signal()?;
    let listener = TcpListener::bind((host, port)).await?;
    let addr = listener.local_addr()?;
    {
        // Tests parse this line to learn the port; flush so a pipe reader
        // sees it now rather than when a buffer fills.
        let mut out = io::stdout().lock();
        let scheme = if tls.is_some() { "https" } else { "http" };
        writeln!(out, "demo-api listening on {scheme}://{addr}")?;
        out.flush()?;
    }
    serve_with(listener, tls, config, shutdown).await
}
