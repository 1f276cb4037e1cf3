//! Signals from people: interrupt, TTIN/TTOU, HUP, USR1.

use super::*;
use crate::report::{Interrupt, megabytes};
use worker::{Phase as Life, Retire};

impl Core {
    pub(super) fn on_signal(&mut self, sig: Sig, now: Instant) {
        match sig {
            Sig::Interrupt => self.interrupt(now),
            Sig::Status => {
                let snapshot = self.status(now);
                self.note(Note::Status(snapshot));
            }
            Sig::MoreWorkers if self.phase == Phase::Running => {
                self.target += 1;
                while self.slots.len() < self.target {
                    let slot = self.new_slot(self.slots.len(), now);
                    self.slots.push(slot);
                }
                let msg = format!("SIGTTIN: one worker more, now {}", self.target);
                self.log(Level::Info, msg);
            }
            Sig::FewerWorkers if self.phase == Phase::Running => {
                if self.target <= 1 {
                    self.log(
                        Level::Warn,
                        "SIGTTOU ignored: one worker is the minimum".into(),
                    );
                    return;
                }
                if !(0..self.target - 1).any(|i| !self.slot_host_down(i)) {
                    self.log(
                        Level::Warn,
                        "SIGTTOU ignored: the workers left would all be on hosts that are down"
                            .into(),
                    );
                    return;
                }
                self.target -= 1;
                let slot = self.target;
                if let Some(id) = self.slots[slot].worker {
                    self.retire(id, Retire::Fewer, now);
                }
                self.slots[slot].respawn_at = None;
                let msg = format!(
                    "SIGTTOU: one worker fewer, now {} (worker {slot} stops after its job)",
                    self.target
                );
                self.log(Level::Info, msg);
            }
            Sig::RollingRestart if self.phase == Phase::Running => {
                let ids: Vec<u64> = self.slots.iter().filter_map(|s| s.worker).collect();
                let msg = format!(
                    "SIGHUP: replacing all {} workers, each after its current job",
                    ids.len()
                );
                self.log(Level::Info, msg);
                for id in ids {
                    self.retire(id, Retire::RollingRestart, now);
                }
            }
            _ => {}
        }
    }

    /// Lets a worker finish the jobs it holds, then closes its stdin.
    pub(super) fn retire(&mut self, id: u64, why: Retire, now: Instant) {
        if self.workers.get_mut(&id).is_some_and(|w| w.retire(why, now)) {
            self.close_input(id, now);
        }
    }

    /// Closes a worker's input, unless it was closed already.
    pub(super) fn close_input(&mut self, id: u64, now: Instant) {
        if self.workers.get_mut(&id).is_some_and(|w| w.close_input(now)) {
            self.act(Action::CloseInput { id });
        }
    }

    /// `--max-worker-rss`: asks the shell for the memory of the local
    /// worker processes, at most every 250 ms.
    pub(super) fn check_memory(&mut self, now: Instant) {
        if self.cfg.recycle.max_rss.is_none()
            || now.saturating_duration_since(self.last_rss_check) < Duration::from_millis(250)
        {
            return;
        }
        self.last_rss_check = now;
        let running: Vec<(u64, Who)> = self
            .workers
            .values()
            .filter(|w| w.phase == Life::Running && matches!(w.who, Who::Process(_)))
            .map(|w| (w.id, w.who))
            .collect();
        if !running.is_empty() {
            self.act(Action::MeasureRss(running));
        }
    }

    /// A worker's memory: one grown past `--max-worker-rss` is replaced
    /// after its current job.
    pub(super) fn on_rss(&mut self, id: u64, rss: u64, now: Instant) {
        let Some(max) = self.cfg.recycle.max_rss else {
            return;
        };
        let Some(w) = self.workers.get(&id) else {
            return;
        };
        if w.phase != Life::Running || rss <= max {
            return;
        }
        let line = format!(
            "worker {} ({}) uses {} of memory, over --max-worker-rss {}: replacing it after its current job",
            w.slot,
            w.who,
            megabytes(rss),
            megabytes(max)
        );
        self.log(Level::Info, line);
        self.retire(id, Retire::Memory, now);
    }

    pub(super) fn interrupt(&mut self, now: Instant) {
        match self.phase {
            Phase::Running => self.stop_run(Interrupt::Graceful, "interrupted", now),
            // Every job is done and workers are exiting: hurry them along.
            Phase::Draining => self.kill_all(now),
            Phase::Stopping => {
                self.interrupted = Some(Interrupt::Forced);
                self.note(Note::Stopping(Interrupt::Forced));
                self.log(
                    Level::Warn,
                    "interrupted again: killing every worker".into(),
                );
                self.kill_all(now);
            }
            Phase::Killing => {}
        }
    }

    /// Stops sending jobs; the ones in flight finish and write their
    /// results. Jobs waiting for a retry are left for `--resume`.
    pub(super) fn stop_run(&mut self, why: Interrupt, what: &str, _now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        self.phase = Phase::Stopping;
        self.interrupted = Some(why);
        self.note(Note::Stopping(why));
        let in_flight: usize = self.workers.values().map(|w| w.inflight.len()).sum();
        let msg = format!(
            "{what}: sending no more jobs; waiting for the {in_flight} in flight (Ctrl-C again to kill them)"
        );
        self.log(Level::Warn, msg);
        self.waiting.clear();
        self.ready.clear();
        self.suspects.clear();
    }
}
