//! How a run looks on stderr: log lines, worker stderr, the summary.

use std::io::Write;
use std::time::Duration;

use callpool_pool::{Interrupt, Level, Report, Reporter, Summary};

/// Writes reports as plain lines on stderr.
pub struct Plain {
    /// The most detailed level shown.
    pub level: Level,
}

impl Reporter for Plain {
    fn report(&mut self, report: Report<'_>) {
        let mut err = std::io::stderr().lock();
        let _ = match report {
            Report::Log(level, msg) if level <= self.level => writeln!(err, "supervisor: {msg}"),
            Report::WorkerStderr { slot, pid, line } if self.level >= Level::Warn => match slot {
                Some(s) => writeln!(err, "[worker {s} pid {pid}] {line}"),
                None => writeln!(err, "[pid {pid}] {line}"),
            },
            Report::Attempt { id, record } if self.level >= Level::Debug => writeln!(
                err,
                "supervisor: job {id:?} attempt {} on worker {} (pid {}): {}{} in {:.1} ms",
                record.attempt,
                record.slot,
                record.pid,
                record.outcome,
                record.status.map(|s| format!(" {s}")).unwrap_or_default(),
                record.elapsed_ms
            ),
            Report::Status(table) => writeln!(err, "{table}"),
            _ => Ok(()),
        };
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// The closing summary, for people.
pub fn print_summary(s: &Summary, out_dir: &std::path::Path, rerun_hint: &str) {
    let p = &s.progress;
    let secs = p.elapsed.as_secs_f64();
    let ran = p.ok + p.failed;
    let rate = if secs > 0.0 { ran as f64 / secs } else { 0.0 };
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "{} jobs: {} ok, {} failed{}{} in {secs:.2}s ({rate:.0} jobs/s); results in {}",
        p.total,
        p.ok,
        p.failed,
        if p.skipped > 0 {
            format!(", {} skipped (already ok)", p.skipped)
        } else {
            String::new()
        },
        if s.not_run > 0 {
            format!(", {} not run", s.not_run)
        } else {
            String::new()
        },
        out_dir.display()
    );
    if !s.failed_by_kind.is_empty() {
        let kinds: Vec<String> = s
            .failed_by_kind
            .iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect();
        let _ = writeln!(err, "  failed by kind: {}", kinds.join(", "));
    }
    if s.retried > 0 || !s.restarts.is_empty() {
        let restarts: Vec<String> = s.restarts.iter().map(|(k, n)| format!("{n} {k}")).collect();
        let _ = writeln!(
            err,
            "  retried attempts: {}; workers restarted: {}",
            s.retried,
            if restarts.is_empty() {
                "none".into()
            } else {
                restarts.join(", ")
            }
        );
    }
    if let (Some(p50), Some(p95)) = (s.latency.quantile(0.5), s.latency.quantile(0.95)) {
        let _ = writeln!(
            err,
            "  latency: p50 {}, p95 {}, max {}",
            ms(p50),
            ms(p95),
            ms(s.latency.max())
        );
    }
    for f in &s.first_failures {
        let _ = writeln!(
            err,
            "  failed: {} ({}) -> {}",
            f.id,
            f.reason,
            f.path.display()
        );
    }
    if p.failed > s.first_failures.len() as u64 {
        let _ = writeln!(
            err,
            "  ... and {} more failed jobs",
            p.failed - s.first_failures.len() as u64
        );
    }
    match s.interrupted {
        Some(Interrupt::ApiStop) => {
            let _ = writeln!(
                err,
                "stopped: an answer matched --stop-if; {} jobs were not run; to finish them later run: {rerun_hint} --resume",
                s.not_run
            );
        }
        Some(Interrupt::Graceful) | Some(Interrupt::Forced) if s.not_run > 0 => {
            let _ = writeln!(
                err,
                "interrupted: {} jobs were not run; to finish them run: {rerun_hint} --resume",
                s.not_run
            );
        }
        Some(_) => {
            let _ = writeln!(err, "interrupted");
        }
        None => {}
    }
}
