//! End-to-end checks of the demo API's Google-shaped geocoder and helpers
//! over real loopback HTTP (the server and client are in `common`).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::{Server, TestResult};
use serde_json::Value;

#[test]
fn geocodes_like_google() -> TestResult {
    let server = Server::start()?;
    let (status, head, json) = server.get_json(
        "/maps/api/geocode/json?address=350+5th+Ave,+New+York&language=es&key=k1&x=1&x=2",
    )?;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(json["status"], "OK");
    let result = &json["results"][0];
    assert_eq!(result["formatted_address"], "New York, NY, USA");
    assert_eq!(result["geometry"]["location"]["lat"], 40.7128);
    assert_eq!(result["geometry"]["location_type"], "APPROXIMATE");
    assert_eq!(result["place_id"], "demo-new-york");
    assert_eq!(json["echo"]["language"], "es");
    assert_eq!(json["echo"]["key"], "k1");
    assert_eq!(json["echo"]["x"], serde_json::json!(["1", "2"]));

    let (_, _, json) = server.get_json("/maps/api/geocode/json?address=Atlantis")?;
    assert_eq!(json["status"], "ZERO_RESULTS");
    let (status, _, json) = server.get_json("/maps/api/geocode/json?address=")?;
    assert_eq!(
        (status, &json["status"]),
        (200, &Value::from("INVALID_REQUEST"))
    );
    assert!(json["error_message"].is_string());
    Ok(())
}

#[test]
fn status_delay_and_body_knobs() -> TestResult {
    let server = Server::start()?;
    let (status, head, json) =
        server.get_json("/maps/api/geocode/json?address=Paris&status=503&retry_after=7")?;
    assert_eq!(status, 503);
    assert!(head.contains("retry-after: 7"), "{head}");
    assert_eq!(json["status"], "ERROR");

    let started = Instant::now();
    let (status, _, _) = server.get_json("/maps/api/geocode/json?address=Paris&delay_ms=300")?;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(300));

    let (_, _, body) = server.request(
        "GET",
        "/maps/api/geocode/json?address=Paris&body_bytes=5000",
        "",
    )?;
    assert_eq!(body.len(), 5000);

    let (status, _, json) = server.get_json("/maps/api/geocode/json?address=Paris&delay_ms=x")?;
    assert_eq!(
        (status, &json["status"]),
        (400, &Value::from("INVALID_REQUEST"))
    );
    Ok(())
}

#[test]
fn fail_first_then_ok() -> TestResult {
    let server = Server::start()?;
    let url = "/maps/api/geocode/json?address=Tokyo&fail_first=2&fail_key=a";
    for _ in 0..2 {
        let (status, _, json) = server.get_json(url)?;
        assert_eq!(
            (status, &json["status"]),
            (200, &Value::from("OVER_QUERY_LIMIT"))
        );
    }
    let (_, _, json) = server.get_json(url)?;
    assert_eq!(json["status"], "OK");

    // fail_status, keyed by the `key` parameter this time.
    let url =
        "/maps/api/geocode/json?address=Tokyo&fail_first=1&key=b&fail_status=429&retry_after=1";
    let (status, head, _) = server.get_json(url)?;
    assert_eq!(status, 429);
    assert!(head.contains("retry-after: 1"), "{head}");
    let (status, head, _) = server.get_json(url)?;
    assert_eq!(status, 200);
    assert!(!head.contains("retry-after"), "{head}");
    Ok(())
}

#[test]
fn hang_never_answers() -> TestResult {
    let server = Server::start()?;
    let mut stream = TcpStream::connect(server.addr)?;
    stream.set_read_timeout(Some(Duration::from_millis(300)))?;
    write!(
        stream,
        "GET /maps/api/geocode/json?address=x&hang=1 HTTP/1.1\r\nHost: t\r\n\r\n"
    )?;
    let mut buf = [0u8; 16];
    let err = stream.read(&mut buf).err().ok_or("hang=1 answered")?;
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err}"
    );
    // Dropping the server must not wait forever for the hung request.
    let started = Instant::now();
    drop(server);
    assert!(started.elapsed() < Duration::from_secs(5));
    Ok(())
}

#[test]
fn echo_text_and_health() -> TestResult {
    let server = Server::start()?;
    let (status, _, body) = server.request("POST", "/echo/a/b?q=1&q=2", "{\"hi\":\"wörld\"}")?;
    assert_eq!(status, 200);
    let json: Value = serde_json::from_str(&body)?;
    assert_eq!(json["method"], "POST");
    assert_eq!(json["path"], "/echo/a/b");
    assert_eq!(json["query"]["q"], serde_json::json!(["1", "2"]));
    assert_eq!(json["headers"]["user-agent"], "demo-test");
    assert_eq!(json["headers"]["x-secret"], "s3cret");
    assert_eq!(json["body"], "{\"hi\":\"wörld\"}");

    let (status, head, body) = server.request("GET", "/text", "")?;
    assert_eq!((status, body.as_str()), (200, "hello from demo-api\n"));
    assert!(head.contains("content-type: text/plain"), "{head}");
    let (status, _, body) = server.request("GET", "/healthz", "")?;
    assert_eq!((status, body.as_str()), (200, "ok"));
    Ok(())
}
