//! Any API from a spreadsheet (issue 20): the three shapes of the demo
//! API's look-alikes, each from a CSV with one `supervisor` command: a
//! value in the URL path (Mapbox), a JSON body (Google Address
//! Validation), a per-user endpoint with GitHub-style budget headers; and
//! the bad input that must be refused before the first call.

#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::*;
use serde_json::Value;

fn get_json(url: &str) -> Value {
    let out = Command::new("python3")
        .args([
            "-c",
            "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())",
            url,
        ])
        .output()
        .unwrap();
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{url}: {e}"))
}

#[test]
fn a_value_in_the_path_is_one_segment_whatever_it_holds() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "places.csv",
        "id,address,limit\n\
         a,\"10 Downing Street, London\",1\n\
         b,a/b?c#d%2F ..,1\n\
         c,Tōkyō 🙂,1\n",
    );
    let url = format!(
        "{}/geocoding/v5/mapbox.places/{{address}}.json?access_token=${{MAPBOX_TOKEN}}",
        api.base
    );
    let (code, stderr) = run_supervisor(
        s.supervisor()
            .env("MAPBOX_TOKEN", "pk.test-token-123")
            .args(["--url", &url, "places.csv"]),
    );
    assert_eq!(code, Some(0), "{stderr}");
    let a = s.result("a");
    assert_eq!(
        a["response"]["body"]["echo"]["query"], "10 Downing Street, London",
        "{a}"
    );
    assert!(
        a["response"]["body"]["features"][0]["place_name"]
            .as_str()
            .is_some(),
        "{a}"
    );
    // The other column still goes out as a query parameter; the template's
    // column does not.
    assert_eq!(a["response"]["body"]["echo"]["params"]["limit"], "1", "{a}");
    assert!(
        a["response"]["body"]["echo"]["params"]["address"].is_null(),
        "{a}"
    );
    assert!(
        a["request"]["url"]
            .as_str()
            .unwrap()
            .contains("access_token=REDACTED")
    );
    let b = s.result("b");
    assert_eq!(
        b["response"]["body"]["echo"]["query"], "a/b?c#d%2F ..",
        "{b}"
    );
    let c = s.result("c");
    assert_eq!(c["response"]["body"]["echo"]["query"], "Tōkyō 🙂", "{c}");

    // One command back to the same rows.
    let out = run_bounded(
        Command::new(SUPERVISOR)
            .current_dir(s.dir.path())
            .env("MAPBOX_TOKEN", "x")
            .args([
                "export",
                "results",
                "--jobs",
                "places.csv",
                "--url",
                &url,
                "--field",
                "place=/features/0/place_name",
            ]),
        std::time::Duration::from_secs(60),
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(table.matches(",ok\n").count(), 3, "{table}");
}

#[test]
fn a_json_body_from_columns_with_typed_values() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "addresses.csv",
        "id,street,city,region,zip,priority\n\
         a,\"1600 \"\"Amphitheatre\"\" Pkwy\",Mountain View,US,12345678901234567890123,1.50\n\
         b,10 Downing Street,London,GB,,2\n",
    );
    let body = r#"{"address": {"regionCode": "{region}", "addressLines": ["{street}", "{city}"]}, "zip": "{zip:number?}", "priority": "{priority:number}", "enableUspsCass": false}"#;
    let (code, stderr) =
        run_supervisor(s.supervisor().env("GOOGLE_KEY", "AIza-test-000000").args([
            "--url",
            &format!("{}/v1:validateAddress?key=${{GOOGLE_KEY}}", api.base),
            "--body",
            body,
            "addresses.csv",
        ]));
    assert_eq!(code, Some(0), "{stderr}");
    let a = s.result("a");
    assert_eq!(a["request"]["method"], "POST");
    assert_eq!(
        a["response"]["body"]["echo"]["body"],
        r#"{"address":{"regionCode":"US","addressLines":["1600 \"Amphitheatre\" Pkwy","Mountain View"]},"zip":12345678901234567890123,"priority":1.50,"enableUspsCass":false}"#,
        "{a}"
    );
    assert_eq!(
        a["response"]["body"]["echo"]["content_type"],
        "application/json"
    );
    let b = s.result("b");
    let sent = b["response"]["body"]["echo"]["body"].as_str().unwrap();
    assert!(sent.contains(r#""zip":null"#), "{sent}");
    // No column went out as a query parameter: the body is the request.
    assert!(
        !b["request"]["url"].as_str().unwrap().contains("city="),
        "{b}"
    );
}

#[test]
fn a_spent_budget_pauses_the_run_instead_of_failing_rows() {
    let api = DemoApi::start_with(&["--budget", "50", "--budget-window", "10s"]);
    let s = Scratch::new();
    let mut csv = String::from("login\n");
    for i in 0..120 {
        csv.push_str(&format!("user-{i}\n"));
    }
    s.write("users.csv", &csv);
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "--url",
        &format!("{}/users/{{login}}", api.base),
        "--summary-json",
        "summary.json",
        "users.csv",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(s.result_ids().len(), 120);
    let stats = get_json(&format!("{}/_stats", api.base));
    assert!(
        stats["users"]["rate_limited"].as_u64().unwrap() <= 1,
        "{stats}\n{stderr}"
    );
    assert_eq!(stats["users"]["ok"], 120, "{stats}");
    assert!(stderr.contains("pausing every worker until"), "{stderr}");
    assert!(
        stderr.contains("the rate-limit budget is spent"),
        "{stderr}"
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(s.path("summary.json")).unwrap()).unwrap();
    assert!(summary["budget_pauses"].as_u64().unwrap() >= 2, "{summary}");
}

#[test]
fn a_plain_403_is_the_jobs_own_failure() {
    let api = DemoApi::start();
    let s = Scratch::new();
    // The demo geocoder answers the status asked for, without budget
    // headers: charged, not retried, not a pause.
    s.write("jobs.csv", "id,address,status\na,x,403\n");
    let (code, stderr) = run_supervisor(s.supervisor().args(["--url", &api.geocode(), "jobs.csv"]));
    assert_eq!(code, Some(1), "{stderr}");
    let a = s.result("a");
    assert_eq!(a["attempts"], 1, "{a}");
    assert_eq!(a["error"]["kind"], "http_status", "{a}");
    assert!(!stderr.contains("pausing"), "{stderr}");
}

#[test]
fn bad_templates_and_values_are_refused_before_the_first_call() {
    let s = Scratch::new();
    s.write(
        "jobs.csv",
        "id,login,n\na,ok,1\nb,,2\nc,x,abc\nd,\"line\r\nbreak\",3\n",
    );
    let base = "http://127.0.0.1:9";
    for (args, says) in [
        (
            vec!["--url", "http://127.0.0.1:9/users/{logn}"],
            "jobs.csv: --url names {logn}, which is not a column",
        ),
        (
            vec!["--url", "http://127.0.0.1:9/users/{login"],
            "never closed",
        ),
        (
            vec!["--url", "http://127.0.0.1:9/users/login}"],
            "closes no placeholder",
        ),
        (
            vec!["--url", base, "--body", "{not json"],
            "--body is not JSON",
        ),
        (
            vec!["--url", "http://127.0.0.1:9/users/{login}"],
            "jobs.csv:3: --url: {login} is empty",
        ),
        (
            vec!["--url", base, "--body", r#"{"n":"{n:number}"}"#],
            "jobs.csv:4: --body: {n:number} needs number, and the value \"abc\"",
        ),
        (
            vec!["--url", base, "--header", "X-Login: {login}"],
            "jobs.csv:5: --header X-Login: the value of {login} holds a line break",
        ),
        (
            vec!["--url", base, "--method", "P0ST"],
            "--method \"P0ST\" is not an HTTP method",
        ),
    ] {
        let (code, stderr) = run_supervisor(s.supervisor().args(&args).arg("jobs.csv"));
        assert_eq!(code, Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!s.results().exists(), "{args:?}");
    }
    // A JSON Lines job's own URL with a brace, and a 10 MB cell in a body.
    s.write(
        "jobs.jsonl",
        "{\"url\":\"http://127.0.0.1:9/users/{login}\"}\n",
    );
    let (code, stderr) = run_supervisor(s.supervisor().arg("jobs.jsonl"));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("jobs.jsonl:1: url \"http://127.0.0.1:9/users/{login}\" holds a brace"),
        "{stderr}"
    );
}

#[test]
fn a_ten_megabyte_cell_goes_into_a_body_whole() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let big = "x".repeat(10 << 20);
    s.write("big.csv", &format!("id,text\nbig,{big}\n"));
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "--url",
        &format!("{}/echo", api.base),
        "--body",
        r#"{"text":"{text}"}"#,
        "big.csv",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    let r = s.result("big");
    assert_eq!(r["response"]["body"]["body_len"], (10 << 20) + 11, "len");
}

#[test]
fn an_empty_list_rule_and_a_fragment_in_a_url_are_understood() {
    let api = DemoApi::start();
    let s = Scratch::new();
    // The demo geocoder answers an unknown place with an empty `results`.
    s.write(
        "jobs.jsonl",
        &format!(
            "{{\"id\":\"known\",\"url\":\"{0}\",\"params\":{{\"address\":\"London\"}}}}\n\
             {{\"id\":\"unknown\",\"url\":\"{0}\",\"params\":{{\"address\":\"Atlantis\"}}}}\n\
             {{\"id\":\"frag\",\"url\":\"{0}?address=Flat#3\"}}\n",
            api.geocode()
        ),
    );
    let (code, stderr) =
        run_supervisor(
            s.supervisor()
                .args(["--fail-if", "/results=[]", "jobs.jsonl"]),
        );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("warning: jobs.jsonl:3: the URL holds a \"#\""),
        "{stderr}"
    );
    assert_eq!(s.result("known")["ok"], true);
    assert_eq!(s.result("unknown")["error"]["kind"], "rejected");
}
