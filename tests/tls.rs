//! HTTPS end to end: the real demo API serving TLS with certificates made
//! here at run time (a CA, a server certificate for 127.0.0.1 and
//! localhost, a client certificate for mutual TLS), and the real supervisor
//! and http-worker (or worker threads) trusting them, or not.

#![allow(clippy::unwrap_used)]

mod common;

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

/// The files of a test PKI, in a scratch folder.
struct Pki {
    ca: PathBuf,
    server_cert: PathBuf,
    server_key: PathBuf,
}

/// A certificate signed by `ca` for these names (IP addresses or DNS
/// names), for a server or a client.
fn leaf(
    ca: &rcgen::Certificate,
    ca_key: &KeyPair,
    names: &[&str],
    purpose: ExtendedKeyUsagePurpose,
    edit: impl FnOnce(&mut CertificateParams),
) -> (String, String) {
    let key = KeyPair::generate().unwrap();
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, names[0].to_string());
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![purpose];
    edit(&mut params);
    let cert = params.signed_by(&key, ca, ca_key).unwrap();
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    /// A CA, a server certificate for 127.0.0.1 and localhost (changed by
    /// `edit_server`), and a client certificate, all written into `s`
    /// (client.pem and client.key for the client).
    fn new(s: &Scratch, edit_server: impl FnOnce(&mut CertificateParams)) -> Self {
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "callpool test CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = params.self_signed(&ca_key).unwrap();
        let (server_cert, server_key) = leaf(
            &ca,
            &ca_key,
            &["127.0.0.1", "localhost"],
            ExtendedKeyUsagePurpose::ServerAuth,
            edit_server,
        );
        let (client_cert, client_key) = leaf(
            &ca,
            &ca_key,
            &["client.callpool.test"],
            ExtendedKeyUsagePurpose::ClientAuth,
            |_| {},
        );
        s.write("client.pem", &client_cert);
        s.write("client.key", &client_key);
        Pki {
            ca: s.write("ca.pem", &ca.pem()),
            server_cert: s.write("server.pem", &server_cert),
            server_key: s.write("server.key", &server_key),
        }
    }

    /// The demo API over HTTPS with this PKI's server certificate; with
    /// `mtls`, it requires a client certificate signed by the CA.
    fn server(&self, mtls: bool) -> DemoApi {
        let mut args = vec![
            "--tls-cert".to_string(),
            path(&self.server_cert),
            "--tls-key".to_string(),
            path(&self.server_key),
        ];
        if mtls {
            args.push("--tls-client-ca".to_string());
            args.push(path(&self.ca));
        }
        let api = DemoApi::start_with(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(api.base.starts_with("https://127.0.0.1:"), "{}", api.base);
        api
    }
}

fn path(p: &std::path::Path) -> String {
    p.to_str().unwrap().to_string()
}

/// A supervisor command that trusts only what it is told: the system's
/// store (which does not hold the test CA), not whatever SSL_CERT_FILE the
/// test runner has (cargo sets it).
fn supervisor(s: &Scratch) -> Command {
    let mut c = s.supervisor();
    c.env_remove("SSL_CERT_FILE")
        .env_remove("SSL_CERT_DIR")
        .args(["--backoff-base", "10ms", "-w", "2"]);
    c
}

fn run(cmd: &mut Command) -> (Option<i32>, String) {
    let out = run_bounded(cmd, LIMIT);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every result of the run is ok, with the demo API's answer.
fn assert_all_ok(s: &Scratch, n: usize) {
    let ids = s.result_ids();
    assert_eq!(ids.len(), n, "{ids:?}");
    for id in ids {
        let r = s.result(&id);
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["response"]["status"], 200, "{r}");
        assert_eq!(r["response"]["body"]["status"], "OK", "{r}");
    }
}

/// Every result of the run failed with kind `tls` at its first and only
/// attempt (TLS failures are not retried); returns the first message.
fn assert_all_tls_once(s: &Scratch, n: usize) -> String {
    let ids = s.result_ids();
    assert_eq!(ids.len(), n, "{ids:?}");
    let mut first = None;
    for id in ids {
        let r: Value = s.result(&id);
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(r["error"]["kind"], "tls", "{r}");
        assert_eq!(r["attempts"], 1, "not retried: {r}");
        let history = r["history"].as_array().unwrap();
        assert_eq!(history.len(), 1, "{r}");
        assert_eq!(history[0]["outcome"], "error", "{r}");
        assert_eq!(history[0]["error"]["kind"], "tls", "{r}");
        assert!(history[0].get("retry_in_ms").is_none(), "{r}");
        first.get_or_insert_with(|| r["error"]["message"].as_str().unwrap().to_string());
    }
    first.unwrap()
}

#[test]
fn an_untrusted_server_fails_every_job_as_tls_without_retry() {
    let s = Scratch::new();
    let pki = Pki::new(&s, |_| {});
    let api = pki.server(false);
    s.write("jobs.jsonl", &geocode_jobs(&api, 4, ""));
    let (code, stderr) = run(supervisor(&s).arg("jobs.jsonl"));
    assert_eq!(code, Some(1), "{stderr}");
    let msg = assert_all_tls_once(&s, 4);
    assert!(
        msg.contains("unknown issuer") && msg.contains("--cacert") && msg.contains("SSL_CERT_FILE"),
        "{msg}"
    );
}

#[test]
fn cacert_makes_the_server_trusted() {
    let s = Scratch::new();
    let pki = Pki::new(&s, |_| {});
    let api = pki.server(false);
    s.write("jobs.jsonl", &geocode_jobs(&api, 4, ""));
    let (code, stderr) = run(supervisor(&s).args(["--cacert", "ca.pem", "jobs.jsonl"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert_all_ok(&s, 4);
}

#[test]
fn ssl_cert_file_makes_the_server_trusted() {
    let s = Scratch::new();
    let pki = Pki::new(&s, |_| {});
    let api = pki.server(false);
    s.write("jobs.jsonl", &geocode_jobs(&api, 4, ""));
    let (code, stderr) = run(supervisor(&s)
        .env("SSL_CERT_FILE", &pki.ca)
        .arg("jobs.jsonl"));
    assert_eq!(code, Some(0), "{stderr}");
    assert_all_ok(&s, 4);
}

#[test]
fn threads_trust_cacert_and_fail_without_it() {
    let s = Scratch::new();
    let pki = Pki::new(&s, |_| {});
    let api = pki.server(false);
    s.write("jobs.jsonl", &geocode_jobs(&api, 4, ""));
    let (code, stderr) = run(supervisor(&s).args(["--threads", "jobs.jsonl"]));
    assert_eq!(code, Some(1), "{stderr}");
    assert_all_tls_once(&s, 4);
    std::fs::remove_dir_all(s.results()).unwrap();
    let (code, stderr) =
        run(supervisor(&s).args(["--threads", "--cacert", "ca.pem", "jobs.jsonl"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert_all_ok(&s, 4);
}

#[test]
fn mutual_tls_needs_cert_and_key() {
    let s = Scratch::new();
    let pki = Pki::new(&s, |_| {});
    let api = pki.server(true);
    s.write("jobs.jsonl", &geocode_jobs(&api, 3, ""));

    let (code, stderr) = run(supervisor(&s).args(["--cacert", "ca.pem", "jobs.jsonl"]));
    assert_eq!(code, Some(1), "{stderr}");
    let msg = assert_all_tls_once(&s, 3);
    assert!(
        msg.contains("client certificate") && msg.contains("--cert"),
        "{msg}"
    );

    let (code, stderr) = run(supervisor(&s).args([
        "--cacert",
        "ca.pem",
        "--cert",
        "client.pem",
        "--key",
        "client.key",
        "--overwrite",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    assert_all_ok(&s, 3);
    std::fs::remove_dir_all(s.results()).unwrap();

    // Threads share one loaded client certificate.
    let (code, stderr) = run(supervisor(&s).args([
        "--threads",
        "--cacert",
        "ca.pem",
        "--cert",
        "client.pem",
        "--key",
        "client.key",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    assert_all_ok(&s, 3);
}

#[test]
fn certificate_problems_are_named() {
    let s = Scratch::new();
    // Valid for another name only, then expired: both with the CA trusted.
    let pki = Pki::new(&s, |p| {
        p.subject_alt_names = vec![rcgen::SanType::DnsName(
            "api.example.test".try_into().unwrap(),
        )];
    });
    let api = pki.server(false);
    s.write("jobs.jsonl", &geocode_jobs(&api, 1, ""));
    let (code, stderr) = run(supervisor(&s).args(["--cacert", "ca.pem", "jobs.jsonl"]));
    assert_eq!(code, Some(1), "{stderr}");
    let msg = assert_all_tls_once(&s, 1);
    assert!(msg.contains("name mismatch"), "{msg}");
    drop(api);

    let s = Scratch::new();
    let pki = Pki::new(&s, |p| {
        p.not_before = rcgen::date_time_ymd(2000, 1, 1);
        p.not_after = rcgen::date_time_ymd(2001, 1, 1);
    });
    let api = pki.server(false);
    s.write("jobs.jsonl", &geocode_jobs(&api, 1, ""));
    let (code, stderr) = run(supervisor(&s).args(["--cacert", "ca.pem", "jobs.jsonl"]));
    assert_eq!(code, Some(1), "{stderr}");
    let msg = assert_all_tls_once(&s, 1);
    assert!(msg.contains("expired"), "{msg}");
}

#[test]
fn bad_tls_files_stop_the_run_before_any_worker() {
    let s = Scratch::new();
    let pki = Pki::new(&s, |_| {});
    s.write(
        "jobs.jsonl",
        "{\"id\":\"a\",\"url\":\"https://127.0.0.1:9/\"}\n",
    );
    for threads in [false, true] {
        let mut cmd = supervisor(&s);
        if threads {
            cmd.arg("--threads");
        }
        let (code, stderr) = run(cmd.args(["--cacert", "missing-ca.pem", "jobs.jsonl"]));
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains("--cacert missing-ca.pem: cannot read it"),
            "{stderr}"
        );
        assert!(worker_pids(&stderr).is_empty(), "{stderr}");
        assert!(!s.results().exists());
    }
    // A key that is not the certificate's.
    let (code, stderr) =
        run(supervisor(&s).args(["--cert", "client.pem", "--key", "server.key", "jobs.jsonl"]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--cert client.pem and --key server.key"),
        "{stderr}"
    );
    // A bad SSL_CERT_FILE is named too.
    let (code, stderr) = run(supervisor(&s)
        .env("SSL_CERT_FILE", s.path("nowhere.pem"))
        .arg("jobs.jsonl"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("SSL_CERT_FILE="), "{stderr}");
    assert!(!s.results().exists());
    drop(pki);
}
