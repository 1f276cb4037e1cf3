//! The closing summary: for people on stderr, and as JSON for scripts
//! (`--summary-json`).

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use callpool_pool::{Interrupt, Summary};
use serde_json::{Value, json};

use super::{Paint, latency, rate_text};

fn jobs_per_sec(s: &Summary) -> f64 {
    let secs = s.progress.elapsed.as_secs_f64();
    let ran = s.progress.ok + s.progress.failed;
    if secs > 0.0 { ran as f64 / secs } else { 0.0 }
}

/// The closing summary, for people.
pub fn print_summary(s: &Summary, out_dir: &Path, rerun_hint: &str, paint: Paint) {
    let p = &s.progress;
    let secs = p.elapsed.as_secs_f64();
    let mut out = String::new();
    out.push_str(&format!(
        "{} jobs: {}, {}{}{} in {secs:.2}s ({} jobs/s); results in {}\n",
        p.total,
        paint.green(format!("{} ok", p.ok)),
        paint.red_if(p.failed, format!("{} failed", p.failed)),
        if p.skipped > 0 {
            format!(", {} skipped (already ok)", p.skipped)
        } else {
            String::new()
        },
        if s.not_run > 0 {
            paint.yellow(format!(", {} not run", s.not_run))
        } else {
            String::new()
        },
        rate_text(jobs_per_sec(s)),
        out_dir.display()
    ));
    if !s.failed_by_kind.is_empty() {
        let kinds: Vec<String> = s
            .failed_by_kind
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        out.push_str(&format!("  failed by kind: {}\n", kinds.join(", ")));
    }
    if s.retried > 0 || !s.restarts.is_empty() {
        let restarts: Vec<String> = s.restarts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        out.push_str(&format!(
            "  retried attempts: {}; workers restarted: {}\n",
            s.retried,
            if restarts.is_empty() {
                "none".into()
            } else {
                restarts.join(", ")
            }
        ));
    }
    if s.budget_pauses > 0 {
        out.push_str(&format!(
            "  paused for the API's rate-limit budget: {} time{}\n",
            s.budget_pauses,
            if s.budget_pauses == 1 { "" } else { "s" }
        ));
    }
    if s.changed > 0 {
        out.push_str(&format!(
            "  re-run because their request changed since their ok result: {}\n",
            s.changed
        ));
    }
    if s.dedup_saved > 0 {
        out.push_str(&format!(
            "  calls saved by --dedup (answered with another job's identical call): {}\n",
            s.dedup_saved
        ));
    }
    for h in &s.hosts {
        out.push_str(&format!(
            "  host {}: {} jobs done, {} worker{} started{}\n",
            if h.name == ":" {
                "this machine (:)"
            } else {
                &h.name
            },
            h.jobs_done,
            h.workers_started,
            if h.workers_started == 1 { "" } else { "s" },
            h.down
                .as_ref()
                .map(|why| format!("; DOWN: {why}"))
                .unwrap_or_default()
        ));
    }
    if s.abandoned > 0 {
        out.push_str(&format!(
            "  worker threads abandoned past a deadline (threads cannot be killed): {}, {} still running at the end\n",
            s.abandoned, s.abandoned_running
        ));
    }
    if let (Some(p50), Some(p95)) = (s.latency.quantile(0.5), s.latency.quantile(0.95)) {
        out.push_str(&format!(
            "  latency of ok attempts: p50 {}, p95 {}, max {}\n",
            latency(p50),
            latency(p95),
            latency(s.latency.max())
        ));
    }
    if !s.first_failures.is_empty() {
        out.push_str(&format!(
            "  {}:\n",
            if p.failed > s.first_failures.len() as u64 {
                "first failures"
            } else {
                "failures"
            }
        ));
        for f in &s.first_failures {
            out.push_str(&format!(
                "    {}: {}\n      {}\n",
                paint.bold(&f.id),
                f.reason,
                f.path.display()
            ));
        }
    }
    if p.failed > s.first_failures.len() as u64 {
        let more = p.failed - s.first_failures.len() as u64;
        out.push_str(&format!(
            "    ... and {more} more (all of them: grep -rl '\"ok\": false' {})\n",
            shell_word(&out_dir.display().to_string())
        ));
    }
    match s.interrupted {
        Some(Interrupt::ApiStop) => out.push_str(&format!(
            "{} an answer matched --stop-if; {} jobs were not run; to finish them later run: {rerun_hint} --resume\n",
            paint.yellow("stopped:"),
            s.not_run
        )),
        Some(Interrupt::Graceful) | Some(Interrupt::Forced) if s.not_run > 0 => {
            out.push_str(&format!(
                "{} {} jobs were not run; to finish them run: {rerun_hint} --resume\n",
                paint.yellow("interrupted:"),
                s.not_run
            ))
        }
        Some(_) => out.push_str(&format!("{}\n", paint.yellow("interrupted"))),
        None => {}
    }
    let _ = std::io::stderr().lock().write_all(out.as_bytes());
}

fn shell_word(s: &str) -> String {
    shlex::try_quote(s).map_or_else(|_| s.to_string(), |q| q.into_owned())
}

/// The summary as JSON, for scripts (`--summary-json`).
pub fn summary_json(s: &Summary, out_dir: &Path, exit_status: u8, resume: Option<&str>) -> Value {
    let p = &s.progress;
    let round = |x: f64, places: i32| {
        let f = 10f64.powi(places);
        (x * f).round() / f
    };
    let ms = |d: Option<Duration>| d.map(|d| round(d.as_secs_f64() * 1000.0, 3));
    let has_latency = s.latency.count() > 0;
    json!({
        "counts": {
            "total": p.total,
            "ok": p.ok,
            "failed": p.failed,
            "skipped": p.skipped,
            "not_run": s.not_run,
        },
        "failed_by_kind": s.failed_by_kind,
        "retried": s.retried,
        "budget_pauses": s.budget_pauses,
        "restarts": s.restarts,
        "changed": s.changed,
        "dedup_saved": s.dedup_saved,
        "hosts": s.hosts.iter().map(|h| json!({
            "host": h.name,
            "jobs_done": h.jobs_done,
            "workers_started": h.workers_started,
            "down": h.down,
        })).collect::<Vec<_>>(),
        "abandoned_threads": s.abandoned,
        "abandoned_threads_running": s.abandoned_running,
        "elapsed_s": round(p.elapsed.as_secs_f64(), 3),
        "jobs_per_s": round(jobs_per_sec(s), 2),
        "latency_ms": {
            "p50": ms(s.latency.quantile(0.5)),
            "p95": ms(s.latency.quantile(0.95)),
            "max": ms(has_latency.then(|| s.latency.max())),
        },
        "first_failures": s.first_failures.iter().map(|f| json!({
            "id": f.id,
            "reason": f.reason,
            "path": f.path.display().to_string(),
        })).collect::<Vec<_>>(),
        "interrupted": s.interrupted.map(|i| match i {
            Interrupt::Graceful => "signal",
            Interrupt::Forced => "forced",
            Interrupt::ApiStop => "stop_if",
        }),
        "resume_command": resume,
        "results_dir": out_dir.display().to_string(),
        "exit_status": exit_status,
    })
}

/// Writes `bytes` to `path` whole or not at all: into a temporary file
/// beside it, then renamed over it. `-` writes to stdout.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if path == Path::new("-") {
        let mut out = std::io::stdout().lock();
        out.write_all(bytes)?;
        return out.flush();
    }
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("the path names no file"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
