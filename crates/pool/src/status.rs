//! The status table printed on SIGUSR1.

use std::fmt::Write;
use std::time::Instant;

use crate::engine::StatusView;
use crate::worker::Worker;

/// Formats the table: one row per slot (and per worker still finishing
/// after TTOU or HUP, and per abandoned thread), then the queue's counts.
pub(crate) fn format(view: &StatusView<'_>, now: Instant) -> String {
    let mut out = String::new();
    // With --host, the slot column names the host too: `3 alpha`.
    let width = view.slot_hosts.iter().map(|h| h.len() + 6).max().unwrap_or(5);
    let label = |slot: usize, retiring: bool| {
        let n = if retiring {
            format!("({slot})")
        } else {
            slot.to_string()
        };
        match view.slot_hosts.get(slot) {
            Some(host) => format!("{n} {host}"),
            None => n,
        }
    };
    let _ = writeln!(
        out,
        "{:<width$} {:>8} {:<9} {:>8} {:>7} {:>8} {:>9}  job",
        if view.slot_hosts.is_empty() { "slot" } else { "slot host" },
        view.id_name,
        "state",
        "for",
        "done",
        "restarts",
        "rss"
    );
    for (slot, worker, done, restarts) in &view.slots {
        match worker {
            Some(w) => row(&mut out, &label(*slot, false), width, w, *done, *restarts, now),
            None => {
                let _ = writeln!(
                    out,
                    "{:<width$} {:>8} {:<9} {:>8} {done:>7} {restarts:>8} {:>9}",
                    label(*slot, false),
                    "-",
                    "(none)",
                    "-",
                    "-"
                );
            }
        }
    }
    for w in &view.retiring {
        row(&mut out, &label(w.slot, true), width, w, w.jobs_done, 0, now);
    }
    for a in &view.abandoned {
        // Still running its last call; its answer will be dropped.
        let _ = writeln!(
            out,
            "{:<width$} {:>8} {:<9} {:>7.1}s {:>7} {:>8} {:>9}  {}",
            label(a.slot, true),
            a.who.number(),
            "abandoned",
            now.saturating_duration_since(a.since).as_secs_f64(),
            "-",
            "-",
            "-",
            a.job.as_deref().unwrap_or("")
        );
    }
    let p = &view.progress;
    let waiting = p
        .total
        .saturating_sub(p.done() + p.in_flight + view.queued_retries as u64);
    let _ = write!(
        out,
        "jobs: {} total, {} ok, {} failed, {} skipped, {} in flight, {} waiting for a retry, {} not started; {} workers; {:.1}s elapsed",
        p.total,
        p.ok,
        p.failed,
        p.skipped,
        p.in_flight,
        view.queued_retries,
        waiting,
        p.workers,
        p.elapsed.as_secs_f64()
    );
    for (host, why) in &view.hosts_down {
        let _ = write!(out, "; host {host} down: {why}");
    }
    if !view.abandoned.is_empty() {
        let _ = write!(
            out,
            "; {} abandoned thread{} still running",
            view.abandoned.len(),
            if view.abandoned.len() == 1 { "" } else { "s" }
        );
    }
    out
}

fn row(
    out: &mut String,
    slot: &str,
    width: usize,
    w: &Worker,
    done: u64,
    restarts: u64,
    now: Instant,
) {
    let job = w
        .inflight
        .front()
        .map(|f| {
            let mut s = f.pending.job.id.clone();
            if w.inflight.len() > 1 {
                let _ = write!(s, " (+{} queued)", w.inflight.len() - 1);
            }
            s
        })
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{slot:<width$} {:>8} {:<9} {:>7.1}s {done:>7} {restarts:>8} {:>9}  {job}",
        w.who.number(),
        w.state().name(),
        // For a busy worker, how long its job has run; else how long it has
        // been in its state.
        now.saturating_duration_since(w.inflight.front().map_or(w.since, |f| f.started))
            .as_secs_f64(),
        // A thread's memory is the supervisor's.
        w.rss()
            .map_or_else(|| "-".to_string(), |b| format!("{:.1}MB", b as f64 / 1e6)),
    );
}

/// Bytes as megabytes with one decimal: `12.3 MB`.
pub(crate) fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1_000_000.0)
}
