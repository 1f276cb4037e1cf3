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
