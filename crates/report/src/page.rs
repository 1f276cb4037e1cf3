//! The page around the charts: the summary at the top, the parts of the
//! run, the table of first failures, the legend, and the security headers
//! (a Content-Security-Policy that allows only the page's own style and
//! script, by their hashes: text from the joblog can never run).

use std::fmt::Write;

use sha2::{Digest, Sha256};

use crate::charts;
use crate::fill::{Model, ResultState};
use crate::joblog::End;
use crate::runlog::Event;
use crate::svg::esc;
use crate::time::{format_ms, span};

const STYLE: &str = include_str!("page.css");

/// The page's only script: it counts errors (script errors, failed loads,
/// blocked content, console errors) into `data-errors` on `<html>`, for a
/// person or a test to read. The page draws without it.
const SCRIPT: &str = "(function(){var n=0,r=document.documentElement;function c(){n+=1;r.setAttribute('data-errors',String(n));}r.setAttribute('data-errors','0');window.addEventListener('error',c,true);window.addEventListener('unhandledrejection',c);document.addEventListener('securitypolicyviolation',c);var e=console.error;console.error=function(){c();return e.apply(console,arguments);};})();";

fn hash(text: &str) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let d = Sha256::digest(text.as_bytes());
    let mut out = String::new();
    for chunk in d.chunks(3) {
        let n = chunk.iter().fold(0u32, |a, &b| (a << 8) | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    format!("'sha256-{out}'")
}

/// The whole page.
pub fn render(m: &Model, title: &str, warnings: &[String]) -> String {
    let mut out = String::with_capacity(256 * 1024);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src {}; script-src {}; img-src data:\">\n<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>{} — callpool run report</title>\n<script>{SCRIPT}</script>\n<style>{STYLE}</style></head>\n<body>\n",
        hash(STYLE),
        hash(SCRIPT),
        esc(title)
    );
    let _ = writeln!(
        out,
        "<header><h1>{}</h1><p class=\"sub\">callpool run report · times in UTC · {}</p></header>",
        esc(title),
        parts_line(m)
    );
    summary(&mut out, m);
    if !warnings.is_empty() {
        out.push_str("<section id=\"warnings\"><h2>Not drawn</h2><ul>");
        for w in warnings {
            let _ = write!(out, "<li>{}</li>", esc(w));
        }
        out.push_str("</ul></section>\n");
    }
    section(
        &mut out,
        "Throughput",
        "Attempts that ended, per second: ok, failed but retried, failed for good. Shaded: the server's budget paused the run; ▼: a 429 slowed the pace; red lines: the run began to stop; dashed lines: a new part of the run (--resume).",
        |o| {
            legend(
                o,
                &[("ok", "ok"), ("retried", "retried"), ("failed", "failed")],
            );
            charts::throughput(o, m);
        },
    );
    section(
        &mut out,
        "Latency",
        "Of ok attempts: p50, p95 and p99 per time bucket, then the distribution of all of them (log scale).",
        |o| {
            legend(o, &[("p50", "p50"), ("p95", "p95"), ("p99", "p99")]);
            if m.latency_all.count() == 0 {
                o.push_str("<p class=\"empty\">No ok attempt.</p>");
            }
            charts::latency(o, m);
            charts::histogram(o, m);
        },
    );
    section(
        &mut out,
        "Failures",
        "Failed attempts per second by kind (retried ones included), then the first jobs that failed for good, per kind.",
        |o| {
            if m.kinds.is_empty() {
                o.push_str("<p class=\"empty\">No failed attempt.</p>");
                return;
            }
            let names: Vec<(String, String)> = (0..m.kinds.len())
                .map(|i| (charts::kind_class(m, i), m.kinds[i].name.clone()))
                .collect();
            let pairs: Vec<(&str, &str)> = names
                .iter()
                .map(|(c, n)| (c.as_str(), n.as_str()))
                .collect();
            legend(o, &pairs);
            charts::failures(o, m);
            failure_table(o, m);
        },
    );
    section(
        &mut out,
        "Workers",
        "One lane per worker slot (grouped by host with --host). Colour: the worst end of the attempts in each stretch; pale: the worker was mostly idle. Ticks: a worker started (green), replaced after a crash or kill (red), recycled (blue); ✕: killed at a deadline or died.",
        |o| {
            let ends: Vec<(&str, &str)> = End::ALL.iter().map(|e| (e.name(), e.name())).collect();
            legend(o, &ends);
            charts::timeline(o, m);
            if m.markers_dropped > 0 {
                let _ = write!(
                    o,
                    "<p class=\"note\">{} more markers not drawn.</p>",
                    m.markers_dropped
                );
            }
        },
    );
    out.push_str("<footer>Drawn by <code>supervisor report</code> from joblog.jsonl and runlog.jsonl; docs/running.md explains this page.</footer>\n</body></html>\n");
    out
}

fn section(out: &mut String, title: &str, help: &str, body: impl FnOnce(&mut String)) {
    let id = title.to_lowercase();
    let _ = write!(
        out,
        "<section id=\"s-{id}\"><h2>{title}</h2><p class=\"help\">{}</p>",
        esc(help)
    );
    body(out);
    out.push_str("</section>\n");
}

fn legend(out: &mut String, items: &[(&str, &str)]) {
    out.push_str("<p class=\"legend\">");
    for (class, name) in items {
        let _ = write!(out, "<span class=\"key {class}\"></span>{} ", esc(name));
    }
    out.push_str("</p>");
}

fn parts_line(m: &Model) -> String {
    let parts = m.parts();
    match (parts.first(), parts.last()) {
        (Some(a), Some(z)) => format!(
            "{} to {}{}",
            format_ms(a.start_ms),
            format_ms(z.end_ms),
            if parts.len() > 1 {
                format!(", in {} parts", parts.len())
            } else {
                String::new()
            }
        ),
        _ => "no attempt".into(),
    }
}

/// What the last run's end line says, if it was written.
fn last_end(m: &Model) -> Option<&Event> {
    m.parts().last().and_then(|p| p.end.as_ref())
}

fn summary(out: &mut String, m: &Model) {
    let parts = m.parts();
    let active: f64 = parts.iter().map(|p| p.len_ms()).sum();
    let ok_attempts: u64 = parts.iter().map(|p| p.ok).sum();
    let failed_attempts: u64 = parts.iter().map(|p| p.failed).sum();
    let retried: u64 = parts.iter().map(|p| p.retried).sum();
    let jobs = parts.last().and_then(|p| match &p.start {
        Some(Event::RunStart { jobs, .. }) => Some(*jobs),
        _ => None,
    });
    let mut cards: Vec<(String, String, &str)> = Vec::new();
    let fmt = |n: Option<u64>| n.map_or("—".to_string(), |n| n.to_string());
    let (ok, failed, not_run, exact) = match last_end(m) {
        Some(Event::RunEnd {
            ok,
            failed,
            skipped,
            not_run,
            ..
        }) => (Some(ok + skipped), Some(*failed), Some(*not_run), true),
        _ => (
            Some(ok_attempts),
            Some(failed_attempts),
            jobs.map(|j| j.saturating_sub(ok_attempts + failed_attempts)),
            false,
        ),
    };
    cards.push(("jobs".into(), fmt(jobs), ""));
    cards.push(("ok".into(), fmt(ok), "ok"));
    cards.push((
        "failed".into(),
        fmt(failed),
        if failed.unwrap_or(0) > 0 {
            "failed"
        } else {
            ""
        },
    ));
    cards.push((
        "not run".into(),
        fmt(not_run),
        if not_run.unwrap_or(0) > 0 { "warn" } else { "" },
    ));
    cards.push(("duration".into(), span(active), ""));
    let per_s = (ok_attempts + failed_attempts) as f64 / (active / 1000.0).max(1e-3);
    cards.push(("jobs/s".into(), crate::svg::number(per_s), ""));
    cards.push(("attempts".into(), m.attempts.to_string(), ""));
    cards.push((
        "retries".into(),
        retried.to_string(),
        if retried > 0 { "warn" } else { "" },
    ));
    let mut dedup = 0;
    let mut restarts = std::collections::BTreeMap::<String, u64>::new();
    let mut abandoned_threads = 0;
    for p in parts {
        if let Some(Event::RunEnd {
            dedup_saved,
            restarts: r,
            abandoned,
            ..
        }) = &p.end
        {
            dedup += dedup_saved;
            abandoned_threads += abandoned;
            for (k, v) in r {
                *restarts.entry(k.clone()).or_default() += v;
            }
        }
    }
    cards.push((
        "calls saved (--dedup)".into(),
        if m.has_runlog {
            dedup.to_string()
        } else {
            "—".into()
        },
        "",
    ));
    let paused: f64 = m.pauses.iter().map(|(a, b, _)| b - a).sum();
    cards.push((
        "pauses".into(),
        if m.has_runlog {
            format!(
                "{}{}{}",
                m.pauses.len(),
                if m.pauses.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", span(paused))
                },
                if m.slowdowns.is_empty() {
                    String::new()
                } else {
                    format!(", {} slowdowns", m.slowdowns.len())
                }
            )
        } else {
            "—".into()
        },
        if m.pauses.is_empty() { "" } else { "warn" },
    ));
    let restarted: u64 = restarts.values().sum();
    cards.push((
        "workers restarted".into(),
        if m.has_runlog {
            restarted.to_string()
        } else {
            "—".into()
        },
        if restarted > 0 { "warn" } else { "" },
    ));
    if abandoned_threads > 0 {
        cards.push((
            "threads abandoned".into(),
            abandoned_threads.to_string(),
            "warn",
        ));
    }
    let h = &m.latency_all;
    let q = |x: f64| h.quantile_ms(x).map_or("—".into(), span);
    cards.push((
        "latency p50 / p95 / p99".into(),
        format!("{} / {} / {}", q(0.5), q(0.95), q(0.99)),
        "",
    ));
    cards.push((
        "latency max".into(),
        if h.count() > 0 {
            span(h.max_ms())
        } else {
            "—".into()
        },
        "",
    ));
    out.push_str("<section id=\"summary\"><div class=\"cards\">");
    for (label, value, class) in &cards {
        let _ = write!(
            out,
            "<div class=\"card {class}\"><div class=\"v\">{}</div><div class=\"l\">{}</div></div>",
            esc(value),
            esc(label)
        );
    }
    out.push_str("</div>");
    if !exact {
        out.push_str("<p class=\"note\">Job counts from the joblog alone (no run-end line in runlog.jsonl): ok and failed count attempts, and a job left for --resume by a stopping run counts as failed.</p>");
    }
    if let Some(Event::RunEnd { failed_by_kind, .. }) =
        last_end(m).filter(|_| failed.unwrap_or(0) > 0)
    {
        let list: Vec<String> = failed_by_kind
            .iter()
            .map(|(k, v)| format!("{} {}", esc(k), v))
            .collect();
        let _ = write!(
            out,
            "<p class=\"note\">Failed by kind: {}.</p>",
            list.join(", ")
        );
    }
    if !restarts.is_empty() {
        let list: Vec<String> = restarts
            .iter()
            .map(|(k, v)| format!("{} {}", esc(k), v))
            .collect();
        let _ = write!(
            out,
            "<p class=\"note\">Workers restarted by reason: {}.</p>",
            list.join(", ")
        );
    }
    parts_table(out, m);
    out.push_str("</section>\n");
}

fn parts_table(out: &mut String, m: &Model) {
    out.push_str("<table id=\"parts\"><thead><tr><th>part</th><th>started</th><th>lasted</th><th>ended</th><th>workers</th><th>attempts</th><th>ok</th><th>retried</th><th>failed</th></tr></thead><tbody>");
    for (i, p) in m.parts().iter().enumerate() {
        let workers = match &p.start {
            Some(Event::RunStart {
                workers,
                isolation,
                hosts,
                rate,
                resume,
                ..
            }) => format!(
                "{workers} {isolation}{}{}{}",
                if hosts.is_empty() {
                    String::new()
                } else {
                    format!(" on {} hosts", hosts.len())
                },
                rate.map_or(String::new(), |r| format!(
                    ", --rate {}/s",
                    crate::svg::number(r)
                )),
                if *resume { ", --resume" } else { "" }
            ),
            _ => {
                if p.threads {
                    "threads (guessed)".into()
                } else {
                    "—".into()
                }
            }
        };
        let ended = match (&p.end, &p.start) {
            (Some(Event::RunEnd { exit, .. }), _) => match exit {
                0 => "finished, every job ok (exit 0)".to_string(),
                1 => "finished, some jobs failed (exit 1)".to_string(),
                2 => "could not go on (exit 2)".to_string(),
                3 => "stopped by --stop-if (exit 3)".to_string(),
                130 => "interrupted (exit 130)".to_string(),
                e => format!("exit {e}"),
            },
            (_, Some(_)) => "no end line: the supervisor was killed, or is still running".into(),
            (_, None) => "unknown (from the joblog alone)".into(),
        };
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            i + 1,
            format_ms(p.start_ms),
            span(p.len_ms()),
            esc(&ended),
            esc(&workers),
            p.attempts,
            p.ok,
            p.retried,
            p.failed
        );
    }
    out.push_str("</tbody></table>");
}

fn failure_table(out: &mut String, m: &Model) {
    out.push_str("<table id=\"first-failures\"><thead><tr><th>kind</th><th>job</th><th>when</th><th>how</th><th>message</th><th>result file</th></tr></thead><tbody>");
    for (i, k) in m.kinds.iter().enumerate() {
        let class = charts::kind_class(m, i);
        let head = format!(
            "<td rowspan=\"{}\"><span class=\"key {class}\"></span>{}<br><small>{} attempts, {} jobs failed for good</small></td>",
            k.first.len().max(1),
            esc(&k.name),
            k.attempts,
            k.jobs
        );
        if k.first.is_empty() {
            let _ = write!(
                out,
                "<tr class=\"kind\">{head}<td colspan=\"5\">every one was retried</td></tr>"
            );
            continue;
        }
        for (j, f) in k.first.iter().enumerate() {
            let file = match crate::result_name(&f.id) {
                Some(name) => esc(&name),
                None => "(not a valid id)".into(),
            };
            let state = match &f.result {
                ResultState::Failed | ResultState::Unchecked => String::new(),
                ResultState::NowOk => " <small>(ok now: run again later)</small>".into(),
                ResultState::Missing => {
                    " <small>(none: left for --resume, or removed)</small>".into()
                }
                ResultState::Unreadable(why) => {
                    format!(" <small class=\"bad\">({})</small>", esc(why))
                }
            };
            let _ = write!(
                out,
                "<tr class=\"kind\">{}<td class=\"id\">{}</td><td>{}</td><td>{}</td><td class=\"msg\">{}</td><td><code>{file}</code>{state}</td></tr>",
                if j == 0 { head.as_str() } else { "" },
                esc(&f.id),
                crate::time::clock(f.at_ms),
                esc(&f.how),
                esc(&f.message),
            );
        }
    }
    out.push_str("</tbody></table>");
}
