//! `demo-api`: a local Google-Geocoding-shaped HTTP API with fault knobs,
//! for demos, tests and fault drills. The server lives in the
//! `callpool-demo-api` crate; this is only argument parsing and a runtime.
//!
//! Prints `demo-api listening on http://127.0.0.1:PORT` (`https://` with
//! --tls-cert) once listening and exits with status 0 on SIGTERM or SIGINT.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use callpool_demo_api::{Config, RateLimitHeaders, TlsFiles};

use clap::Parser;

/// Command line of `demo-api`.
#[derive(Debug, Parser)]
#[command(
    name = "demo-api",
    version,
    about = "Local geocoding-shaped HTTP API for demos and tests"
)]
struct Args {
    /// Address to bind; keep the loopback default unless you mean to expose it.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to bind; 0 picks a free one (read it from the startup line).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Serve HTTPS with this certificate chain (PEM, leaf first).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM, unencrypted).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Require a client certificate signed by a CA in FILE (PEM): mutual
    /// TLS. Needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Requests `/users/` answers per window; the next ones get 403 until
    /// the window resets (0: every request gets 403).
    #[arg(long, value_name = "N", default_value_t = Config::default().budget)]
    budget: u32,
    /// The fixed window of --budget, e.g. 10s, 1m, 500ms; it starts with
    /// the first request and ends on the whole second announced as Reset.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = window)]
    budget_window: Duration,
    /// Rate-limit headers of `/users/`: github (X-RateLimit-*), ietf
    /// (RateLimit and RateLimit-Policy, draft 07), or both.
    #[arg(long, value_name = "STYLE", default_value = "github")]
    ratelimit_headers: RateLimitHeaders,
}

/// Parses --budget-window: a humantime duration, not zero.
fn window(s: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(s).map_err(|err| format!("{s:?}: {err}"))?;
    if d < Duration::from_millis(1) {
        return Err(format!("{s:?}: the window must be at least 1ms"));
    }
    Ok(d)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let files = TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: args.tls_client_ca.clone(),
            };
            match files.server_config() {
                Ok(config) => Some(config),
                Err(err) => {
                    eprintln!("demo-api: {err}");
                    return ExitCode::from(2);
                }
            }
        }
        _ => None,
    };
    // One thread is plenty: every handler is async (even `delay_ms` and
    // `hang` only park a task), and the machine running the tests also
    // runs the supervisor and its workers.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("demo-api: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let config = Config {
        budget: args.budget,
        budget_window: args.budget_window,
        ratelimit_headers: args.ratelimit_headers,
    };
    match runtime.block_on(callpool_demo_api::run(&args.host, args.port, tls, &config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("demo-api: {}:{}: {err}", args.host, args.port);
            ExitCode::FAILURE
        }
    }
}
