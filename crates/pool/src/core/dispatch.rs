//! Handing jobs to workers: the job source, the retry queue, workers waiting for work, and the end of the list.

use super::*;
use crate::feed::Feed;
use worker::{InFlight, Phase as Life};

impl Core {
    /// The next job to send: a retry or requeued job first, then the source.
    pub(super) fn next_job(&mut self) -> Option<Pending> {
        if let Some(p) = self.ready.pop_front() {
            return Some(p);
        }
        loop {
            let item = self.source.as_mut()?.pull();
            match item {
                Pull::Empty => return None,
                _ => {
                    if let Some(p) = self.take_feed(item) {
                        return Some(p);
                    }
                    if self.source.is_none() || self.fatal.is_some() {
                        return None;
                    }
                }
            }
        }
    }

    /// Accounts for one item from the source; returns it if it is a job.
    pub(super) fn take_feed(&mut self, item: Pull) -> Option<Pending> {
        match item {
            Pull::Item(Feed::Job { job, changed }) => {
                self.fed += 1;
                if changed {
                    self.summary.changed += 1;
                }
                for s in &job.secrets {
                    if self.secret_set.insert(s.clone()) {
                        self.secrets.push(s.clone());
                    }
                }
                self.admit(Pending {
                    job,
                    history: Vec::new(),
                    lost_connections: 0,
                    kills: 0,
                    probe: false,
                    rate_limited: 0,
                })
            }
            Pull::Item(Feed::Skipped) => {
                self.fed += 1;
                self.summary.progress.skipped += 1;
                None
            }
            Pull::Item(Feed::Error(msg)) => {
                self.fail(RunError::Jobs(msg));
                None
            }
            Pull::Empty => None,
            Pull::Ended => {
                self.source = None;
                // Nothing new is left to tell a bad job from a bad worker:
                // the held jobs get their retries.
                self.release_suspects();
                let total = self.summary.progress.total;
                if self.fed < total && self.fatal.is_none() {
                    // Cut short since the check: the jobs it no longer
                    // holds would otherwise end as "not run" of a run
                    // that says it succeeded.
                    self.fail(RunError::Jobs(format!(
                        "{}: the file ended after {} of its {total} jobs (it changed after it was checked)",
                        self.jobs_name, self.fed
                    )));
                }
                None
            }
        }
    }

    /// Gives worker `id` jobs until it is full or there are none.
    pub(super) fn feed_worker(&mut self, id: u64, now: Instant) {
        loop {
            if self.phase != Phase::Running {
                return;
            }
            let prefetch = self.room_limit();
            match self.workers.get(&id) {
                Some(w)
                    if w.has_room(prefetch)
                        && !w.inflight.front().is_some_and(|f| f.pending.probe) => {}
                _ => return,
            }
            let paced_out =
                self.pacer.as_ref().is_some_and(|p| !p.allows(now)) || !self.budget.allows(now);
            // A probe runs alone on its worker, so that its end is its own,
            // and alone on its host (see `probe_out`); a worker held is fed
            // when it ends (`end_probe`).
            let slot = self.workers.get(&id).map_or(usize::MAX, |w| w.slot);
            if self.probe_out(slot) {
                return;
            }
            let probing = !paced_out
                && self.workers.get(&id).is_some_and(|w| w.inflight.is_empty())
                && self.wants_probe(slot);
            let next = if paced_out {
                None
            } else if probing {
                self.take_probe().or_else(|| self.next_job())
            } else {
                self.next_job()
            };
            let Some(pending) = next else {
                if let Some(w) = self.workers.get_mut(&id) {
                    if !w.hungry && w.has_room(prefetch) {
                        w.hungry = true;
                        self.hungry.push_back(id);
                    }
                }
                return;
            };
            let Some(w) = self.workers.get_mut(&id) else {
                self.ready.push_front(pending);
                return;
            };
            let wall = self.now.wall;
            let was_busy = !w.inflight.is_empty();
            let probe = pending.probe;
            let line = pending.job.wire.clone();
            let job = pending.job.id.clone();
            self.actions.push_back(Action::Send { id, job, line });
            w.inflight.push_back(InFlight {
                pending,
                started: now,
                started_wall: wall,
            });
            w.settle(was_busy, now);
            if let Some(p) = self.pacer.as_mut() {
                p.sent(now);
            }
            self.budget.sent();
            if probe {
                self.hosts[self.slots[slot].host].probe_sent = true;
                return;
            }
        }
    }

    /// A job line could not be handed to worker `id`: it cannot have read
    /// it, nor any line sent to it after, so they go back to the front of
    /// the queue, uncharged and in their order.
    pub(super) fn on_send_failed(&mut self, id: u64, job: &str, error: SendError, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        let Some(i) = w.inflight.iter().position(|f| f.pending.job.id == job) else {
            return;
        };
        let back: Vec<InFlight> = w.inflight.drain(i..).collect();
        w.settle(true, now);
        let slot = w.slot;
        match &error {
            // It closed its stdin: it is exiting (its end, when reaped, is
            // a crash), or broken if it lingers.
            SendError::BrokenPipe => w.input_broken(now),
            // A thread that ended reports its end by itself.
            SendError::Ended | SendError::Io(_) => w.input_open = false,
        }
        for f in back.into_iter().rev() {
            let mut p = f.pending;
            self.end_probe(&mut p, slot);
            self.ready.push_front(p);
        }
        if let SendError::Io(e) = error {
            self.protocol_error(id, format!("cannot write to its stdin: {e}"), now);
        }
    }

    /// Jobs a worker may hold. With `--rate`, one: the pace is kept when a
    /// job is sent, and a job queued behind another would start late.
    pub(super) fn prefetch(&self) -> usize {
        if self.pacer.is_some() {
            1
        } else {
            self.cfg.prefetch.max(1)
        }
    }

    /// Jobs a worker may hold right now: [`Engine::prefetch`] (K) while at
    /// least K jobs per worker are ready, else one. Queueing a job behind
    /// another only pays while every worker has work anyway; near the end
    /// of the list (or with a short list) it would make a job wait behind a
    /// slow one while another worker sits idle.
    pub(super) fn room_limit(&self) -> usize {
        let k = self.prefetch();
        if k == 1 {
            return 1;
        }
        let buffered = self.ready.len() + self.source.as_ref().map_or(0, |s| s.ready());
        if buffered >= self.workers.len() * k {
            k
        } else {
            1
        }
    }

    pub(super) fn feed_hungry(&mut self, now: Instant) {
        if self.hungry.is_empty() || self.phase != Phase::Running {
            return;
        }
        self.notice_source_end();
        let jobs_available =
            !self.ready.is_empty() || self.source.as_ref().is_some_and(|s| s.ready() > 0);
        if !jobs_available
            || self.pacer.as_ref().is_some_and(|p| !p.allows(now))
            || !self.budget.allows(now)
        {
            return;
        }
        let hungry = std::mem::take(&mut self.hungry);
        for id in hungry {
            if let Some(w) = self.workers.get_mut(&id) {
                w.hungry = false;
                self.feed_worker(id, now);
            }
        }
    }

    /// With workers waiting and nothing ready, asks the source whether it
    /// is over: it says so only when asked, and its end is what releases
    /// the jobs held as suspects (found by the simulator, seed 20890: the
    /// last jobs of a list killed their workers, and the run waited for
    /// ever for another job to answer).
    fn notice_source_end(&mut self) {
        if !self.ready.is_empty() || self.source.as_ref().is_none_or(|s| s.ready() > 0) {
            return;
        }
        let Some(item) = self.source.as_mut().map(|s| s.pull()) else {
            return;
        };
        if !matches!(item, Pull::Empty)
            && let Some(p) = self.take_feed(item)
        {
            self.ready.push_back(p);
        }
    }

    /// Gives the jobs that killed their workers their retries (at the back
    /// of the ready queue, in the order they killed).
    pub(super) fn release_suspects(&mut self) {
        self.ready.extend(self.suspects.drain(..));
    }

    /// Whether a probe is out on a worker of `slot`'s host: until it ends,
    /// the host's other workers get no jobs, so that a worker that dies
    /// on every job dies only on the probe meanwhile.
    fn probe_out(&self, slot: usize) -> bool {
        self.host_of(slot).is_some_and(|h| self.hosts[h].probe_sent)
    }

    /// `p` is no longer a probe (its attempt ended, or it went back to the
    /// queue uncharged): its host may send another, and the host's idle
    /// workers, held while it was out, are fed again.
    pub(super) fn end_probe(&mut self, p: &mut Pending, slot: usize) {
        if !std::mem::take(&mut p.probe) {
            return;
        }
        if let Some(h) = self.host_of(slot) {
            self.unhold(h);
        }
    }

    /// Ends host `h`'s wait for its probe: its idle workers, held while
    /// the probe was out, are fed again.
    pub(super) fn unhold(&mut self, h: usize) {
        if !std::mem::take(&mut self.hosts[h].probe_sent) {
            return;
        }
        let slots = &self.slots;
        for w in self.workers.values_mut() {
            if slots.get(w.slot).map(|s| s.host) == Some(h)
                && w.phase == Life::Running
                && w.inflight.is_empty()
                && !w.hungry
            {
                w.hungry = true;
                self.hungry.push_back(w.id);
            }
        }
    }

    /// Whether the next job for a worker in `slot` should be a probe: its
    /// host's workers died on [`PoolConfig::max_start_failures`] distinct
    /// jobs in a row, none answered since, and no probe is out.
    fn wants_probe(&self, slot: usize) -> bool {
        let Some(h) = self.host_of(slot) else {
            return false;
        };
        let host = &self.hosts[h];
        host.kills >= self.cfg.max_start_failures.max(1) && !host.probe_sent
    }

    /// A probe: the job furthest down the list that is known here, the last
    /// one the job source has read ahead (up to its read-ahead bound), or
    /// else the last fresh one in the ready queue. A run of bad jobs at the
    /// top of the list is unlikely to reach it; a worker that dies on every
    /// job dies on it too. The jobs read ahead of it keep their order, at
    /// the back of the ready queue.
    fn take_probe(&mut self) -> Option<Pending> {
        let n = self.source.as_ref().map_or(0, |s| s.ready());
        let mut probe = None;
        for _ in 0..n {
            let Some(item) = self.source.as_mut().map(|s| s.pull()) else {
                break;
            };
            if matches!(item, Pull::Empty) {
                break;
            }
            if let Some(p) = self.take_feed(item) {
                if let Some(before) = probe.replace(p) {
                    self.ready.push_back(before);
                }
            }
            if self.fatal.is_some() {
                break;
            }
        }
        if probe.is_none() {
            let i = self.ready.iter().rposition(|p| p.history.is_empty())?;
            probe = self.ready.remove(i);
        }
        let mut p = probe?;
        p.probe = true;
        Some(p)
    }

    pub(super) fn release_due_retries(&mut self, now: Instant) {
        while self.waiting.peek().is_some_and(|Reverse(w)| w.at <= now) {
            if let Some(Reverse(w)) = self.waiting.pop() {
                self.ready.push_back(w.pending);
            }
        }
    }

    /// Jobs not yet finished.
    pub(super) fn work_left(&self) -> u64 {
        let p = &self.summary.progress;
        p.total.saturating_sub(p.done())
    }

    /// Moves to Draining when every job is done; closes the stdin of workers
    /// that hold nothing once the run is ending.
    pub(super) fn check_end(&mut self, now: Instant) {
        if self.work_left() == 0 {
            // Every job of the file is accounted for: the source has nothing
            // more (this also ends a run of an empty file, where no worker
            // ever asks the source for a job).
            self.source = None;
        }
        if self.phase == Phase::Running
            && self.source.is_none()
            && self.ready.is_empty()
            && self.waiting.is_empty()
            && self.suspects.is_empty()
            && self.workers.values().all(|w| w.inflight.is_empty())
        {
            self.phase = Phase::Draining;
        }
        if matches!(self.phase, Phase::Draining | Phase::Stopping) {
            let idle: Vec<u64> = self
                .workers
                .values()
                .filter(|w| w.inflight.is_empty())
                .map(|w| w.id)
                .collect();
            for id in idle {
                self.close_input(id, now);
            }
        }
    }
}
