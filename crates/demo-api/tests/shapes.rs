//! The look-alikes of other API shapes, over real loopback HTTP: a value in
//! a URL path (Mapbox-like), a JSON body (Google Address Validation-like),
//! and a per-user REST endpoint with a GitHub-style budget.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use callpool_demo_api::{Config, RateLimitHeaders};
use common::{Server, TestResult, header};
use serde_json::{Value, json};

/// Percent-encodes every byte but the unreserved ones, as a client puts a
/// value into one path segment.
fn segment(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

const MAPBOX: &str = "/geocoding/v5/mapbox.places/";

#[test]
fn mapbox_decodes_one_path_segment() -> TestResult {
    let server = Server::start()?;
    // Every character that could change a URL's structure, a literal
    // "%2F" (which must arrive as those three characters), and an emoji.
    let query = "10 Downing St/2?x=1#top %2F 😀, London";
    let path = format!("{MAPBOX}{}.json", segment(query));
    let (status, head, json) = server.get_json(&format!("{path}?access_token=tk&limit=1"))?;
    assert_eq!(status, 200, "{json}");
    assert!(head.contains("content-type: application/json"), "{head}");
    assert_eq!(json["echo"]["query"], query);
    assert_eq!(json["echo"]["path"], path);
    assert_eq!(json["echo"]["params"]["access_token"], "tk");
    assert_eq!(json["type"], "FeatureCollection");
    let feature = &json["features"][0];
    assert_eq!(feature["center"], json!([-0.1278, 51.5074]));
    assert_eq!(
        feature["geometry"]["coordinates"],
        json!([-0.1278, 51.5074])
    );
    assert_eq!(feature["place_name"], "London, UK");
    assert_eq!(json["query"][0], "10");

    // %2F is part of the segment; a real "/" is another path.
    let (_, _, json) = server.get_json(&format!("{MAPBOX}Paris%2FTexas.json?access_token=t"))?;
    assert_eq!(json["echo"]["query"], "Paris/Texas");
    let (status, _, _) = server.request("GET", &format!("{MAPBOX}a/b.json?access_token=t"), "")?;
    assert_eq!(status, 404);
    // A "+" in a path is a plus, not a space.
    let (_, _, json) = server.get_json(&format!("{MAPBOX}a+b.json?access_token=t"))?;
    assert_eq!(json["echo"]["query"], "a+b");
    // Not found: an empty feature list, still 200.
    let (status, _, json) = server.get_json(&format!("{MAPBOX}Atlantis.json?access_token=t"))?;
    assert_eq!((status, &json["features"]), (200, &json!([])));
    Ok(())
}

#[test]
fn mapbox_refusals_and_knobs() -> TestResult {
    let server = Server::start()?;
    let (status, _, json) = server.get_json(&format!("{MAPBOX}Paris.json"))?;
    assert_eq!(
        (status, &json["message"]),
        (401, &json!("Not Authorized - No Token"))
    );
    assert_eq!(json["echo"]["query"], "Paris");
    let (status, _, _) = server.get_json(&format!("{MAPBOX}Paris.json?access_token="))?;
    assert_eq!(status, 401);
    let (status, _, json) = server.get_json(&format!("{MAPBOX}Paris?access_token=t"))?;
    assert_eq!((status, &json["message"]), (404, &json!("Not Found")));
    let (status, _, json) = server.get_json(&format!("{MAPBOX}50%25%zz.json?access_token=t"))?;
    assert_eq!(status, 400, "{json}");
    assert!(json["message"].as_str().unwrap_or("").contains("percent"));
    let (status, _, _) = server.get_json(&format!("{MAPBOX}%20.json?access_token=t"))?;
    assert_eq!(status, 422);
    let target = format!("{MAPBOX}Paris.json?access_token=t&status=503&retry_after=2");
    let (status, head, _) = server.get_json(&target)?;
    assert_eq!((status, header(&head, "retry-after")), (503, Some("2")));
    let (status, _, _) =
        server.get_json(&format!("{MAPBOX}Paris.json?access_token=t&delay_ms=x"))?;
    assert_eq!(status, 400);
    Ok(())
}

const VALIDATE: &str = "/v1:validateAddress";

fn post_json(
    server: &Server,
    target: &str,
    body: &str,
) -> Result<(u16, Value), Box<dyn std::error::Error>> {
    let headers = [("Content-Type", "application/json; charset=utf-8")];
    let (status, _, text) = server.request_with("POST", target, &headers, body)?;
    Ok((status, serde_json::from_str(&text)?))
}

#[test]
fn validator_answers_and_echoes_the_body_byte_for_byte() -> TestResult {
    let server = Server::start()?;
    let body = r#"{"address": {"regionCode": "US", "addressLines": ["350 5th Ave", "New York, NY 10118"]},
  "id": 12345678901234567890123, "price": 1.50, "huge": 1e400, "note": "caf\u00e9 ☕"}"#;
    let (status, json) = post_json(&server, &format!("{VALIDATE}?key=k1"), body)?;
    assert_eq!(status, 200, "{json}");
    assert_eq!(json["echo"]["body"], body);
    assert_eq!(json["echo"]["body_len"], body.len());
    assert_eq!(
        json["echo"]["content_type"],
        "application/json; charset=utf-8"
    );
    assert_eq!(json["echo"]["params"]["key"], "k1");
    let result = &json["result"];
    assert_eq!(result["verdict"]["addressComplete"], true);
    assert_eq!(result["address"]["formattedAddress"], "New York, NY, USA");
    assert_eq!(
        result["geocode"]["location"],
        json!({"latitude": 40.7128, "longitude": -74.006})
    );

    let unknown = r#"{"address": {"addressLines": ["1 Nowhere Lane"]}}"#;
    let (status, json) = post_json(&server, &format!("{VALIDATE}?key=k1"), unknown)?;
    assert_eq!(status, 200);
    assert_eq!(json["result"]["verdict"]["addressComplete"], false);
    assert_eq!(
        json["result"]["address"]["formattedAddress"],
        "1 Nowhere Lane"
    );
    assert!(json["result"].get("geocode").is_none(), "{json}");
    Ok(())
}

#[test]
fn validator_refuses_clearly() -> TestResult {
    let server = Server::start()?;
    let good = r#"{"address": {"addressLines": ["Paris"]}}"#;
    let (status, json) = post_json(&server, VALIDATE, good)?;
    assert_eq!(
        (status, &json["error"]["status"]),
        (403, &json!("PERMISSION_DENIED"))
    );
    assert_eq!(json["echo"]["body"], good);

    for (body, says) in [
        (r#"{"address": "#, "Invalid JSON payload received"),
        ("", "Invalid JSON payload received"),
        (
            r#"{"address": {"addressLines": "Paris"}}"#,
            "expected a sequence",
        ),
        (r#"{"addressLines": ["Paris"]}"#, "Address is missing"),
        (
            r#"{"address": {"addressLines": [" "]}}"#,
            "addressLines is empty",
        ),
    ] {
        let (status, json) = post_json(&server, &format!("{VALIDATE}?key=k"), body)?;
        assert_eq!(status, 400, "{body}: {json}");
        assert_eq!(json["error"]["code"], 400);
        assert_eq!(json["error"]["status"], "INVALID_ARGUMENT");
        let message = json["error"]["message"].as_str().unwrap_or("");
        assert!(message.contains(says), "{body}: {message}");
        assert_eq!(json["echo"]["body"], body);
    }
    let (status, _, _) = server.request("GET", &format!("{VALIDATE}?key=k"), "")?;
    assert_eq!(status, 405);
    Ok(())
}

/// The budget headers of one answer: (remaining, reset epoch seconds).
fn budget(head: &str) -> Result<(u32, u64), Box<dyn std::error::Error>> {
    let remaining = header(head, "x-ratelimit-remaining")
        .ok_or("no Remaining")?
        .parse()?;
    let reset = header(head, "x-ratelimit-reset")
        .ok_or("no Reset")?
        .parse()?;
    Ok((remaining, reset))
}

/// Sleeps until the clock shows `epoch_secs`.
fn sleep_until(epoch_secs: u64) {
    let at = UNIX_EPOCH + Duration::from_secs(epoch_secs);
    std::thread::sleep(at.duration_since(SystemTime::now()).unwrap_or_default());
}

fn stats(server: &Server) -> Result<Value, Box<dyn std::error::Error>> {
    let (status, _, json) = server.get_json("/_stats")?;
    assert_eq!(status, 200);
    Ok(json)
}

#[test]
fn users_budget_spends_refuses_and_resets() -> TestResult {
    let limit = 3;
    let server = Server::start_with(Config {
        budget: limit,
        budget_window: Duration::from_secs(1),
        ratelimit_headers: RateLimitHeaders::Github,
    })?;
    let (mut oks, mut refused) = (0, 0);
    // N requests pass and the next is refused, all within one window: a
    // slow machine may see the 1 s window roll over midway, then the
    // whole round is tried again in the fresh window.
    let mut reset = 0;
    for round in 0.. {
        assert!(
            round < 5,
            "never fitted {} requests in one window",
            limit + 1
        );
        let mut resets = Vec::new();
        for i in 0..limit {
            let (status, head, json) = server.get_json(&format!("/users/grace-hopper-{i}"))?;
            if status == 403 {
                refused += 1;
                continue;
            }
            oks += 1;
            assert_eq!(status, 200, "{json}");
            assert_eq!(json["login"], format!("grace-hopper-{i}"));
            assert_eq!(json["name"], format!("Grace Hopper {i}"));
            assert!(json["id"].is_u64());
            assert_eq!(header(&head, "x-ratelimit-limit"), Some("3"));
            let (remaining, r) = budget(&head)?;
            assert_eq!(
                header(&head, "x-ratelimit-used"),
                Some(&*(limit - remaining).to_string())
            );
            resets.push((remaining, r));
        }
        let (status, head, json) = server.get_json("/users/octocat")?;
        let (remaining, r) = budget(&head)?;
        if status == 403 {
            refused += 1;
        } else {
            oks += 1;
        }
        let expected: Vec<(u32, u64)> = (0..limit).rev().map(|left| (left, r)).collect();
        if status != 403 || resets != expected {
            // Start the next round in a fresh window.
            sleep_until(r);
            continue;
        }
        assert_eq!(
            json,
            json!({"message": "API rate limit exceeded", "documentation_url": "https://docs.github.com/rest"})
        );
        assert_eq!(remaining, 0);
        assert_eq!(header(&head, "x-ratelimit-used"), Some("3"));
        assert_eq!(header(&head, "retry-after"), None);
        reset = r;
        break;
    }

    // Wait for the reset the server announced, then poll until it passes.
    sleep_until(reset);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (status, head, _) = server.get_json("/users/octocat")?;
        if status == 200 {
            oks += 1;
            let (remaining, new_reset) = budget(&head)?;
            assert_eq!(remaining, limit - 1);
            assert!(new_reset > reset, "{new_reset} <= {reset}");
            break;
        }
        refused += 1;
        assert!(Instant::now() < deadline, "still refused after the reset");
        std::thread::sleep(Duration::from_millis(20));
    }

    // The server's own log agrees with what the client saw.
    let stats = stats(&server)?;
    assert_eq!(stats["users"]["ok"], oks);
    assert_eq!(stats["users"]["rate_limited"], refused);
    assert_eq!(stats["users"]["not_found"], 0);
    assert_eq!(stats["users"]["requests"], oks + refused);
    assert_eq!(stats["budget"]["limit"], limit);
    assert_eq!(stats["budget"]["window_ms"], 1000);
    Ok(())
}

#[test]
fn users_not_found_is_charged_and_counted() -> TestResult {
    let server = Server::start()?;
    let stats0 = stats(&server)?;
    assert_eq!(
        stats0["users"],
        json!({"requests": 0, "ok": 0, "rate_limited": 0, "not_found": 0})
    );
    assert_eq!(stats0["budget"]["remaining"], 50);
    assert_eq!(stats0["budget"]["reset"], Value::Null);
    let (status, head, json) = server.get_json("/users/no%20such%20user")?;
    assert_eq!((status, &json["message"]), (404, &json!("Not Found")));
    assert_eq!(header(&head, "x-ratelimit-remaining"), Some("49"));
    let (status, head, _) = server.get_json("/users/octocat")?;
    assert_eq!(status, 200);
    assert_eq!(header(&head, "x-ratelimit-remaining"), Some("48"));
    assert_eq!(header(&head, "x-ratelimit-resource"), Some("core"));
    let stats = stats(&server)?;
    assert_eq!(
        stats["users"],
        json!({"requests": 2, "ok": 1, "rate_limited": 0, "not_found": 1})
    );
    assert_eq!(stats["budget"]["remaining"], 48);
    assert!(stats["budget"]["reset"].is_u64());
    Ok(())
}

#[test]
fn users_ietf_headers_on_request() -> TestResult {
    let server = Server::start_with(Config {
        budget: 5,
        budget_window: Duration::from_secs(10),
        ratelimit_headers: RateLimitHeaders::Ietf,
    })?;
    let (status, head, _) = server.get_json("/users/octocat")?;
    assert_eq!(status, 200);
    assert_eq!(header(&head, "ratelimit-policy"), Some("5;w=10"));
    let ratelimit = header(&head, "ratelimit").ok_or("no RateLimit")?;
    let reset: u64 = ratelimit
        .strip_prefix("limit=5, remaining=4, reset=")
        .ok_or(format!("RateLimit: {ratelimit}"))?
        .parse()?;
    assert!((10..=11).contains(&reset), "{ratelimit}");
    assert_eq!(header(&head, "x-ratelimit-limit"), None);

    let both = Server::start_with(Config {
        ratelimit_headers: RateLimitHeaders::Both,
        ..Config::default()
    })?;
    let (_, head, _) = both.get_json("/users/octocat")?;
    assert_eq!(header(&head, "x-ratelimit-remaining"), Some("49"));
    assert_eq!(header(&head, "ratelimit-policy"), Some("50;w=10"));
    Ok(())
}
