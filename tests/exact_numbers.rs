//! Numbers arrive as written (issue 20, item 3): a JSON Lines job's body
//! and params keep `12345678901234567890123`, `1.50` and `1e400` byte for
//! byte, where a float on the way would send `1.2345678901234568e+22`.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

#[test]
fn big_and_precise_numbers_reach_the_server_byte_for_byte() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "jobs.jsonl",
        &format!(
            "{{\"id\":\"n\",\"url\":\"{}/echo\",\"method\":\"POST\",\"params\":{{\"big\":12345678901234567890123,\"price\":1.50}},\"body\":{{\"id\":12345678901234567890123,\"price\":1.50,\"huge\":1e400,\"neg\":-0.0}}}}\n",
            api.base
        ),
    );
    for mode in [&[][..], &["--threads"][..]] {
        let (code, stderr) = run_supervisor(
            s.supervisor()
                .args(mode)
                .args(["--overwrite", "jobs.jsonl"]),
        );
        assert_eq!(code, Some(0), "{stderr}");
        let echo = &s.result("n")["response"]["body"];
        assert_eq!(
            echo["body"],
            "{\"id\":12345678901234567890123,\"price\":1.50,\"huge\":1e400,\"neg\":-0.0}",
            "{echo}"
        );
        assert_eq!(echo["query"]["big"], "12345678901234567890123", "{echo}");
        assert_eq!(echo["query"]["price"], "1.50", "{echo}");
    }
}

/// Every `"elapsed_ms":` value in `text`, as written.
fn elapsed_values(text: &str) -> Vec<&str> {
    text.split("\"elapsed_ms\":")
        .skip(1)
        .map(|rest| {
            let rest = rest.trim_start();
            let end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .collect()
}

/// Issue 23, item 4: `elapsed_ms` is written to the microsecond (at most
/// three decimals), never with float noise such as `7.859891000000001`,
/// in the result file, its history and the joblog, in both modes; and it
/// is still a JSON number.
#[test]
fn elapsed_ms_has_at_most_three_decimals() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let mut jobs = geocode_jobs(&api, 20, "");
    // One job that fails (nothing listens on port 9), so that an error
    // result and its history are written too.
    jobs.push_str("{\"id\":\"down\",\"url\":\"http://127.0.0.1:9/x\"}\n");
    s.write("jobs.jsonl", &jobs);
    for mode in [&[][..], &["--threads"][..]] {
        let (code, stderr) = run_supervisor(s.supervisor().args(mode).args([
            "--overwrite",
            "--retries",
            "0",
            "jobs.jsonl",
        ]));
        assert_eq!(code, Some(1), "{stderr}");
        let mut seen = 0;
        for id in s.result_ids() {
            let path = s.results().join(format!("{id}.json"));
            let text = std::fs::read_to_string(&path).unwrap();
            let values = elapsed_values(&text);
            // The result's own and one per attempt in its history.
            assert_eq!(values.len(), 2, "{id}: {text}");
            let parsed: serde_json::Value = serde_json::from_str(&text).unwrap();
            assert!(parsed["elapsed_ms"].is_f64(), "{id}: {text}");
            for v in values {
                let decimals = v.split_once('.').map_or(0, |(_, d)| d.len());
                assert!(
                    decimals <= 3,
                    "{id}: elapsed_ms {v} has {decimals} decimals"
                );
                seen += 1;
            }
        }
        assert_eq!(seen, 42, "{mode:?}");
        let joblog = std::fs::read_to_string(s.results().join("joblog.jsonl")).unwrap();
        let values = elapsed_values(&joblog);
        assert!(values.len() >= 21, "{joblog}");
        for v in values {
            let decimals = v.split_once('.').map_or(0, |(_, d)| d.len());
            assert!(
                decimals <= 3,
                "joblog: elapsed_ms {v} has {decimals} decimals"
            );
        }
    }
}
