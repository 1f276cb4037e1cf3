//! The aggregation on hand-made joblogs and run logs: what each chart
//! counts, how parts and workers are found, and what hostile input gives.

use std::collections::HashMap;
use std::io::{self, BufRead};

use crate::fill::{Mark, Model};
use crate::{ResultState, Sources};

/// One joblog line.
fn line(id: &str, slot: u64, pid: i64, start: &str, ms: f64, outcome: &str, extra: &str) -> String {
    format!(
        "{{\"id\":{},\"attempt\":1,\"slot\":{slot},\"pid\":{pid},\"started_at\":\"2026-11-25T10:{start}Z\",\"elapsed_ms\":{ms},\"outcome\":\"{outcome}\"{extra}}}\n",
        serde_json::to_string(id).expect("a string")
    )
}

fn fail(kind: &str, msg: &str) -> String {
    format!(
        ",\"error\":{{\"kind\":\"{kind}\",\"message\":{}}}",
        serde_json::to_string(msg).expect("a string")
    )
}

struct Run {
    joblog: String,
    runlog: Option<String>,
    results: HashMap<String, ResultState>,
}

impl Run {
    fn new(joblog: String) -> Self {
        Run {
            joblog,
            runlog: None,
            results: HashMap::new(),
        }
    }

    fn model(&self) -> (Model, Vec<String>) {
        let text = self.joblog.clone();
        let mut open = move || -> io::Result<Box<dyn BufRead>> {
            Ok(Box::new(io::Cursor::new(text.clone().into_bytes())))
        };
        let mut result = |name: &str| {
            self.results
                .get(name)
                .cloned()
                .unwrap_or(ResultState::Missing)
        };
        crate::model(Sources {
            joblog: &mut open,
            joblog_name: "R/joblog.jsonl".into(),
            runlog: self
                .runlog
                .clone()
                .map(|r| Box::new(io::Cursor::new(r.into_bytes())) as Box<dyn BufRead>),
            runlog_name: "R/runlog.jsonl".into(),
            result: &mut result,
            title: "R".into(),
        })
        .expect("in memory")
    }

    fn page(&self) -> String {
        let (m, w) = self.model();
        crate::page::render(&m, "R", &w)
    }
}

#[test]
fn attempts_are_counted_by_series_kind_and_lane() {
    let mut j = String::new();
    j += &line("a", 0, 10, "00:00.000", 100.0, "ok", ",\"status\":200");
    j += &line(
        "b",
        1,
        11,
        "00:00.000",
        200.0,
        "http_error",
        &(",\"status\":503".to_string()
            + &fail("http_status", "HTTP status 503")
            + ",\"retry_in_ms\":50"),
    );
    j += &line("b", 1, 11, "00:00.300", 150.0, "ok", ",\"status\":200");
    j += &line(
        "c",
        0,
        10,
        "00:00.200",
        5.0,
        "error",
        &fail("connect", "connection refused"),
    );
    j += &line(
        "d",
        2,
        12,
        "00:01.000",
        900.0,
        "timeout",
        &(fail("timeout", "killed at its deadline") + ",\"retry_in_ms\":0"),
    );
    j += &line("d", 2, 13, "00:02.000", 30.0, "ok", "");
    let (m, w) = Run::new(j).model();
    assert!(w.is_empty(), "{w:?}");
    let sum = |s: &[u64]| s.iter().sum::<u64>();
    assert_eq!(sum(&m.throughput[0]), 3);
    assert_eq!(sum(&m.throughput[1]), 2);
    assert_eq!(sum(&m.throughput[2]), 1);
    assert_eq!(m.latency_all.count(), 3);
    assert_eq!(m.frame.lanes.len(), 3);
    assert_eq!(m.frame.parts.len(), 1);
    let kinds: Vec<(&str, u64, u64)> = m
        .kinds
        .iter()
        .map(|k| (k.name.as_str(), k.attempts, k.jobs))
        .collect();
    assert_eq!(
        kinds,
        [("connect", 1, 1), ("http_status", 1, 0), ("timeout", 1, 0)]
    );
    assert_eq!(m.kinds[0].first[0].id, "c");
    assert_eq!(m.kinds[0].first[0].line, 4);
    // Without a run log: a start per slot, a restart where the pid
    // changed, a kill at the timeout.
    let marks = |k: Mark| m.markers.iter().filter(|x| x.mark == k).count();
    assert_eq!(
        (marks(Mark::Start), marks(Mark::Restart), marks(Mark::Kill)),
        (3, 1, 1)
    );
}

#[test]
fn parts_come_from_the_run_log_or_from_gaps() {
    let mut j = String::new();
    j += &line("a", 0, 10, "00:00.000", 100.0, "ok", "");
    j += &line("b", 0, 10, "00:01.000", 100.0, "ok", "");
    // Ten minutes later: a resumed run.
    j += &line("c", 0, 20, "10:00.000", 100.0, "ok", "");
    let run = Run::new(j.clone());
    let (m, _) = run.model();
    assert_eq!(m.frame.parts.len(), 2);
    // The idle ten minutes are cut out of the axis.
    assert!(m.frame.axis_ms < 5_000.0, "{}", m.frame.axis_ms);
    let mut logged = Run::new(j);
    logged.runlog = Some(
        [
            r#"{"event":"run_start","at":"2026-11-25T10:00:00.000Z","pid":1,"workers":1,"isolation":"processes","jobs":3,"resume":false}"#,
            r#"{"event":"worker_start","at":"2026-11-25T10:00:00.000Z","slot":0,"pid":10}"#,
            r#"{"event":"stopping","at":"2026-11-25T10:00:01.050Z","why":"interrupted"}"#,
            r#"{"event":"run_end","at":"2026-11-25T10:00:01.200Z","exit":130,"ok":2,"failed":0,"skipped":0,"not_run":1,"retried":0,"dedup_saved":0}"#,
            r#"{"event":"run_start","at":"2026-11-25T10:09:59.900Z","pid":2,"workers":1,"isolation":"processes","jobs":3,"resume":true}"#,
            r#"{"event":"worker_start","at":"2026-11-25T10:09:59.950Z","slot":0,"pid":20}"#,
            r#"{"event":"pause","at":"2026-11-25T10:10:00.000Z","until":"2026-11-25T10:10:00.050Z","why":"budget"}"#,
            r#"{"event":"pause","at":"2026-11-25T10:10:00.040Z","until":"2026-11-25T10:10:00.080Z","why":"budget"}"#,
            r#"{"event":"run_end","at":"2026-11-25T10:10:00.200Z","exit":0,"ok":1,"failed":0,"skipped":2,"not_run":0,"retried":0,"dedup_saved":0}"#,
            "",
        ]
        .join("\n"),
    );
    let (m, w) = logged.model();
    assert!(w.is_empty(), "{w:?}");
    assert_eq!(m.frame.parts.len(), 2);
    assert_eq!(
        m.frame.parts.iter().map(|p| p.attempts).collect::<Vec<_>>(),
        [2, 1]
    );
    assert_eq!(m.stops.len(), 1);
    assert_eq!(m.pauses.len(), 1, "an extended pause is one pause");
    // With a run log, worker starts come from it, not from pids.
    assert_eq!(
        m.markers.iter().filter(|x| x.mark == Mark::Start).count(),
        2
    );
    let page = logged.page();
    assert!(page.contains("part 2 (--resume)"));
    assert!(page.contains("interrupted (exit 130)"));
}

#[test]
fn threads_are_told_and_their_timeouts_abandon() {
    let mut j = String::new();
    for slot in 0..4 {
        j += &line(&format!("j{slot}"), slot, 77, "00:00.000", 50.0, "ok", "");
    }
    j += &line(
        "slow",
        1,
        77,
        "00:00.100",
        1000.0,
        "timeout",
        &(fail("timeout", "abandoned") + ",\"retry_in_ms\":0"),
    );
    let (m, _) = Run::new(j).model();
    assert!(m.frame.parts[0].threads);
    assert_eq!(
        m.markers.iter().filter(|x| x.mark == Mark::Abandon).count(),
        1
    );
    assert!(
        m.markers
            .iter()
            .all(|x| x.mark != Mark::Kill && x.mark != Mark::Start)
    );
}

#[test]
fn hosts_group_lanes_in_their_order() {
    let mut j = String::new();
    j += &line("a", 2, 10, "00:00.000", 10.0, "ok", ",\"host\":\"beta\"");
    j += &line("b", 0, 11, "00:00.000", 10.0, "ok", ",\"host\":\":\"");
    j += &line("c", 1, 12, "00:00.000", 10.0, "ok", ",\"host\":\":\"");
    let mut run = Run::new(j);
    run.runlog = Some(r#"{"event":"run_start","at":"2026-11-25T10:00:00.000Z","pid":1,"workers":3,"isolation":"processes","hosts":[":","beta"],"jobs":3}"#.to_string()
        // A worker of this machine has no host in the run log, and `:` in
        // the joblog: one lane.
        + "\n" + r#"{"event":"worker_start","at":"2026-11-25T10:00:00.000Z","slot":0,"pid":11}"# + "\n");
    let (m, _) = run.model();
    let lanes: Vec<(&str, u64)> = m
        .frame
        .lanes
        .iter()
        .map(|(h, s)| (h.as_str(), *s))
        .collect();
    assert_eq!(lanes, [(":", 0), (":", 1), ("beta", 2)]);
    let page = run.page();
    assert_eq!(page.matches("<g class=\"host\"").count(), 2);
    assert_eq!(page.matches("<g class=\"lane\"").count(), 3);
}

#[test]
fn hostile_input_is_named_escaped_and_never_markup() {
    let evil = "<script>document.title='owned'</script>";
    let mut j = String::new();
    j += &line(
        "ok-1",
        0,
        10,
        "00:00.000",
        10.0,
        "ok",
        ",\"brand_new_field\":[1,2,{\"x\":null}]",
    );
    j += "this is not json\n";
    j += &line(
        evil,
        0,
        10,
        "00:00.100",
        10.0,
        "error",
        &fail("<b>kind</b>", &format!("message {evil}")),
    );
    j += &line(
        "notjson",
        0,
        10,
        "00:00.200",
        10.0,
        "http_error",
        &(",\"status\":404".to_string() + &fail("http_status", "HTTP status 404")),
    );
    // A writer cut short.
    j += "{\"id\":\"cut\",\"attempt\":1,\"slo";
    let mut run = Run::new(j);
    run.results
        .insert("notjson.json".into(), crate::judge_result(b"{\"ok\": fal"));
    let (m, w) = run.model();
    assert_eq!(m.attempts, 3);
    assert!(
        w[0].starts_with("R/joblog.jsonl:2: not a joblog line"),
        "{w:?}"
    );
    assert!(
        w.iter()
            .any(|x| x.starts_with("R/joblog.jsonl:5: the last line is cut short")),
        "{w:?}"
    );
    assert!(
        w.iter().any(|x| x.contains("job \"notjson\": not JSON")),
        "{w:?}"
    );
    let page = run.page();
    // The page's own script, and no other.
    assert_eq!(page.matches("<script").count(), 1, "{page}");
    assert!(!page.contains("<b>kind"));
    assert!(page.contains("&lt;script&gt;document.title=&#39;owned&#39;&lt;/script&gt;"));
    assert!(
        page.contains("(not a valid id)"),
        "an id that is no file name is not looked up"
    );
}

#[test]
fn the_model_is_bounded_by_the_screen_not_the_attempts() {
    // Bounded by the screen: the cells and buckets do not grow with the
    // attempts (the time and page size are measured by bench/report.sh).
    let mut j = String::new();
    for i in 0..20_000u64 {
        let (m, s) = (i / 600 % 60, i % 600);
        j += &line(
            &format!("j{i}"),
            i % 256,
            1000 + (i % 256) as i64,
            &format!("{m:02}:{:02}.{:03}", s / 10, (s % 10) * 100),
            90.0,
            if i % 97 == 0 { "crashed" } else { "ok" },
            "",
        );
    }
    let (m, _) = Run::new(j).model();
    assert_eq!(m.frame.lanes.len(), 256);
    assert!(m.cells.len() <= 40_000 + 256 * 60, "{}", m.cells.len());
    assert!(m.frame.buckets <= crate::frame::MAX_BUCKETS + 1);
    assert!(m.markers.len() <= crate::fill::MAX_MARKERS);
    assert!(run_page_len(&m) < 5_000_000);
}

fn run_page_len(m: &Model) -> usize {
    crate::page::render(m, "R", &[]).len()
}
