//! The status table printed on SIGUSR1, laid out from the engine's
//! snapshot.

use std::fmt::Write;

use callpool_pool::{RowKind, StatusRow, StatusSnapshot};

/// Formats the table: one row per slot (and per worker still finishing
/// after TTOU or HUP, and per abandoned thread), then the queue's counts.
pub(crate) fn format(view: &StatusSnapshot) -> String {
    let mut out = String::new();
    // With --host, the slot column names the host too: `3 alpha`.
    let width = view
        .slot_hosts
        .iter()
        .map(|h| h.len() + 6)
        .max()
        .unwrap_or(5);
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
        if view.slot_hosts.is_empty() {
            "slot"
        } else {
            "slot host"
        },
        view.id_name,
        "state",
        "for",
        "done",
        "restarts",
        "rss"
    );
    for r in &view.rows {
        match r.kind {
            RowKind::Slot | RowKind::Retiring => {
                row(
                    &mut out,
                    &label(r.slot, r.kind == RowKind::Retiring),
                    width,
                    r,
                );
            }
            RowKind::Empty => {
                let _ = writeln!(
                    out,
                    "{:<width$} {:>8} {:<9} {:>8} {:>7} {:>8} {:>9}",
                    label(r.slot, false),
                    "-",
                    "(none)",
                    "-",
                    r.done.unwrap_or(0),
                    r.restarts.unwrap_or(0),
                    "-"
                );
            }
            RowKind::Abandoned => {
                // Still running its last call; its answer will be dropped.
                let _ = writeln!(
                    out,
                    "{:<width$} {:>8} {:<9} {:>7.1}s {:>7} {:>8} {:>9}  {}",
                    label(r.slot, true),
                    r.who.map_or(0, |w| w.number()),
                    "abandoned",
                    r.for_.as_secs_f64(),
                    "-",
                    "-",
                    "-",
                    r.job.as_deref().unwrap_or("")
                );
            }
        }
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
    if view.abandoned > 0 {
        let _ = write!(
            out,
            "; {} abandoned thread{} still running",
            view.abandoned,
            if view.abandoned == 1 { "" } else { "s" }
        );
    }
    out
}

fn row(out: &mut String, slot: &str, width: usize, r: &StatusRow) {
    let mut job = r.job.clone().unwrap_or_default();
    if r.queued > 0 {
        let _ = write!(job, " (+{} queued)", r.queued);
    }
    let _ = writeln!(
        out,
        "{slot:<width$} {:>8} {:<9} {:>7.1}s {:>7} {:>8} {:>9}  {job}",
        r.who.map_or(0, |w| w.number()),
        r.state,
        r.for_.as_secs_f64(),
        r.done.unwrap_or(0),
        r.restarts.unwrap_or(0),
        // A thread's memory is the supervisor's.
        r.rss
            .map_or_else(|| "-".to_string(), |b| format!("{:.1}MB", b as f64 / 1e6)),
    );
}
