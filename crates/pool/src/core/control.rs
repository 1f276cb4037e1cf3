//! Signals from people: interrupt, TTIN/TTOU, HUP, USR1.

use super::*;
use crate::report::{Interrupt, LogEvent, RecycleWhy, Scale, Stop};
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
                self.tell(LogEvent::Scaled(Scale::More { now: self.target }));
            }
            Sig::FewerWorkers if self.phase == Phase::Running => {
                if self.target <= 1 {
                    self.tell(LogEvent::Scaled(Scale::FewerRefusedMinimum));
                    return;
                }
                if !(0..self.target - 1).any(|i| !self.slot_host_down(i)) {
                    self.tell(LogEvent::Scaled(Scale::FewerRefusedHostsDown));
                    return;
                }
                self.target -= 1;
                let slot = self.target;
                if let Some(id) = self.slots[slot].worker {
                    self.retire(id, Retire::Fewer, now);
                }
                self.slots[slot].respawn_at = None;
                self.tell(LogEvent::Scaled(Scale::Fewer {
                    now: self.target,
                    slot,
                }));
            }
            Sig::RollingRestart if self.phase == Phase::Running => {
                let ids: Vec<u64> = self.slots.iter().filter_map(|s| s.worker).collect();
                self.tell(LogEvent::Scaled(Scale::RollingRestart {
                    workers: ids.len(),
                }));
                for id in ids {
                    self.retire(id, Retire::RollingRestart, now);
                }
            }
            _ => {}
        }
    }

    /// Lets a worker finish the jobs it holds, then closes its stdin.
    pub(super) fn retire(&mut self, id: u64, why: Retire, now: Instant) {
        if self
            .workers
            .get_mut(&id)
            .is_some_and(|w| w.retire(why, now))
        {
            self.close_input(id, now);
        }
    }

    /// Closes a worker's input, unless it was closed already.
    pub(super) fn close_input(&mut self, id: u64, now: Instant) {
        if self
            .workers
            .get_mut(&id)
            .is_some_and(|w| w.close_input(now))
        {
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
        let (slot, who) = (w.slot, w.who);
        self.tell(LogEvent::Recycled {
            slot,
            who,
            why: RecycleWhy::Memory { rss, max },
        });
        self.retire(id, Retire::Memory, now);
    }

    pub(super) fn interrupt(&mut self, now: Instant) {
        match self.phase {
            Phase::Running => self.stop_run(None, now),
            // Every job is done and workers are exiting: hurry them along.
            Phase::Draining => self.kill_all(now),
            Phase::Stopping => {
                self.interrupted = Some(Interrupt::Forced);
                self.tell(LogEvent::Stopping(Stop::Forced));
                self.kill_all(now);
            }
            Phase::Killing => {}
        }
    }

    /// Stops sending jobs; the ones in flight finish and write their
    /// results. Jobs waiting for a retry are left for `--resume`.
    /// `stop_if`: the job whose answer matched `--stop-if`, and the rule;
    /// `None` for an interrupt.
    pub(super) fn stop_run(&mut self, stop_if: Option<(String, String)>, _now: Instant) {
        if self.phase != Phase::Running {
            return;
        }
        self.phase = Phase::Stopping;
        let in_flight: usize = self.workers.values().map(|w| w.inflight.len()).sum();
        let stop = match stop_if {
            None => Stop::Interrupted { in_flight },
            Some((job, rule)) => Stop::StopIf {
                job,
                rule,
                in_flight,
            },
        };
        self.interrupted = Some(stop.interrupt());
        self.tell(LogEvent::Stopping(stop));
        self.waiting.clear();
        self.ready.clear();
        self.suspects.clear();
    }
}
