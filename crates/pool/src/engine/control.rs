//! Signals from people: interrupt, TTIN/TTOU, HUP, USR1.

use super::*;

impl Engine<'_> {
    pub(super) fn on_signal(&mut self, sig: i32, now: Instant) {
        match sig {
            SIGCHLD => self.reap(now),
            SIGINT | SIGTERM => self.interrupt(now),
            SIGUSR1 => {
                let table = crate::status::format(&status_view(self, now), now);
                self.rep.report(Report::Status(&table));
            }
            SIGTTIN if self.phase == Phase::Running => {
                self.target += 1;
                while self.slots.len() < self.target {
                    let slot = self.new_slot(self.slots.len(), now);
                    self.slots.push(slot);
                }
                let msg = format!("SIGTTIN: one worker more, now {}", self.target);
                self.rep.report(Report::Log(Level::Info, &msg));
            }
            SIGTTOU if self.phase == Phase::Running => {
                if self.target <= 1 {
                    self.rep.report(Report::Log(
                        Level::Warn,
                        "SIGTTOU ignored: one worker is the minimum",
                    ));
                    return;
                }
                if !(0..self.target - 1).any(|i| !self.slot_host_down(i)) {
                    self.rep.report(Report::Log(
                        Level::Warn,
                        "SIGTTOU ignored: the workers left would all be on hosts that are down",
                    ));
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
                self.rep.report(Report::Log(Level::Info, &msg));
            }
            SIGHUP if self.phase == Phase::Running => {
                let ids: Vec<u64> = self.slots.iter().filter_map(|s| s.worker).collect();
                let msg = format!(
                    "SIGHUP: replacing all {} workers, each after its current job",
                    ids.len()
                );
                self.rep.report(Report::Log(Level::Info, &msg));
                for id in ids {
                    self.retire(id, Retire::RollingRestart, now);
                }
            }
            _ => {}
        }
    }

    /// Lets a worker finish the jobs it holds, then closes its stdin.
    pub(super) fn retire(&mut self, id: u64, why: Retire, now: Instant) {
        if let Some(w) = self.workers.get_mut(&id) {
            w.retire(why, now);
        }
    }

    /// `--max-worker-rss`: retires the workers that have grown past it,
    /// looking at most every 250 ms.
    pub(super) fn check_memory(&mut self, now: Instant) {
        let Some(max) = self.cfg.recycle.max_rss else {
            return;
        };
        if now.saturating_duration_since(self.last_rss_check) < Duration::from_millis(250) {
            return;
        }
        self.last_rss_check = now;
        let over: Vec<(u64, String)> = self
            .workers
            .values()
            .filter(|w| w.phase == Life::Running)
            .filter_map(|w| {
                let rss = w.rss()?;
                (rss > max).then(|| {
                    let line = format!(
                        "worker {} ({}) uses {} of memory, over --max-worker-rss {}: replacing it after its current job",
                        w.slot,
                        w.who,
                        crate::status::megabytes(rss),
                        crate::status::megabytes(max)
                    );
                    (w.id, line)
                })
            })
            .collect();
        for (id, line) in over {
            self.rep.report(Report::Log(Level::Info, &line));
            self.retire(id, Retire::Memory, now);
        }
    }

    pub(super) fn interrupt(&mut self, now: Instant) {
        match self.phase {
            Phase::Running => self.stop_run(Interrupt::Graceful, "interrupted", now),
            // Every job is done and workers are exiting: hurry them along.
            Phase::Draining => self.kill_all(now),
            Phase::Stopping => {
                self.interrupted = Some(Interrupt::Forced);
                self.rep.report(Report::Stopping(Interrupt::Forced));
                self.rep.report(Report::Log(
                    Level::Warn,
                    "interrupted again: killing every worker",
                ));
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
        self.rep.report(Report::Stopping(why));
        let in_flight: usize = self.workers.values().map(|w| w.inflight.len()).sum();
        let msg = format!(
            "{what}: sending no more jobs; waiting for the {in_flight} in flight (Ctrl-C again to kill them)"
        );
        self.rep.report(Report::Log(Level::Warn, &msg));
        self.waiting.clear();
        self.ready.clear();
        self.suspects.clear();
    }
}
