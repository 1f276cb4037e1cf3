//! The status table's content (SIGUSR1), as data: the reporter lays it
//! out, the shell adds each worker's memory.

use std::time::Instant;

use super::worker::Worker;
use super::{Abandoned, Core};
use crate::report::{RowKind, StatusRow, StatusSnapshot};

impl Core {
    /// One row per slot, then per worker still finishing after TTOU or
    /// HUP, then per abandoned thread; and the counts.
    pub(super) fn status(&self, now: Instant) -> StatusSnapshot {
        let mut rows = Vec::new();
        for (i, s) in self.slots.iter().enumerate() {
            match s.worker.and_then(|id| self.workers.get(&id)) {
                Some(w) => rows.push(worker_row(
                    w,
                    RowKind::Slot,
                    s.jobs_done,
                    Some(s.restarts),
                    now,
                )),
                None => rows.push(StatusRow {
                    slot: i,
                    kind: RowKind::Empty,
                    who: None,
                    state: "(none)",
                    for_: std::time::Duration::ZERO,
                    done: Some(s.jobs_done),
                    restarts: Some(s.restarts),
                    rss: None,
                    job: None,
                    queued: 0,
                }),
            }
        }
        for w in self.workers.values().filter(|w| {
            self.slots
                .get(w.slot)
                .is_none_or(|s| s.worker != Some(w.id))
        }) {
            rows.push(worker_row(w, RowKind::Retiring, w.jobs_done, None, now));
        }
        let mut abandoned: Vec<&Abandoned> = self.abandoned.values().collect();
        abandoned.sort_by_key(|a| a.since);
        for a in &abandoned {
            rows.push(StatusRow {
                slot: a.slot,
                kind: RowKind::Abandoned,
                who: Some(a.who),
                state: "abandoned",
                for_: now.saturating_duration_since(a.since),
                done: None,
                restarts: None,
                rss: None,
                job: a.job.clone(),
                queued: 0,
            });
        }
        StatusSnapshot {
            id_name: self.cfg.id_name,
            rows,
            progress: self.progress(now),
            queued_retries: self.waiting.len() + self.ready.len() + self.suspects.len(),
            slot_hosts: if self.cfg.hosts.is_some() {
                self.slots.iter().map(|s| self.hosts[s.host].name).collect()
            } else {
                Vec::new()
            },
            hosts_down: self
                .hosts
                .iter()
                .filter_map(|h| Some((h.name, h.down.clone()?)))
                .collect(),
            abandoned: abandoned.len(),
        }
    }
}

fn worker_row(
    w: &Worker,
    kind: RowKind,
    done: u64,
    restarts: Option<u64>,
    now: Instant,
) -> StatusRow {
    StatusRow {
        slot: w.slot,
        kind,
        who: Some(w.who),
        state: w.state().name(),
        // For a busy worker, how long its job has run; else how long it
        // has been in its state.
        for_: now.saturating_duration_since(w.inflight.front().map_or(w.since, |f| f.started)),
        done: Some(done),
        restarts: Some(restarts.unwrap_or(0)),
        rss: None,
        job: w.inflight.front().map(|f| f.pending.job.id.clone()),
        queued: w.inflight.len().saturating_sub(1),
    }
}
