//! Worker lives: starting, output, deadlines, kills and the stop of a run.

use super::*;
use crate::who::{ExitHow, ThreadEnd};
use worker::{Due, KillReason, Phase as Life};

impl Core {
    /// Starts the workers that are due, a batch at a time: between
    /// batches the loop hands jobs to the workers already ready, so that
    /// with hundreds of workers the first ones do not wait for the last.
    pub(super) fn spawn_due(&mut self, now: Instant) {
        if !self.may_spawn() {
            return;
        }
        let mut started = 0;
        for slot in 0..self.target.min(self.slots.len()) {
            let s = &self.slots[slot];
            if s.worker.is_none()
                && s.respawn_at.is_none_or(|at| at <= now)
                && self.slot_can_start(slot)
            {
                if started == self.cfg.spawn_batch {
                    return;
                }
                self.spawn(slot, now);
                started += 1;
                if self.fatal.is_some() {
                    return;
                }
            }
        }
    }

    pub(super) fn may_spawn(&self) -> bool {
        self.phase == Phase::Running && self.work_left() > 0
    }

    /// Asks the shell for a worker in `slot`; [`Input::Started`] or
    /// [`Input::StartFailed`] answers.
    pub(super) fn spawn(&mut self, slot: usize, _now: Instant) {
        self.next_id += 1;
        let id = self.next_id;
        let s = &mut self.slots[slot];
        s.worker = Some(id);
        let (host, login) = (s.host, s.login);
        self.act(Action::Start {
            id,
            slot,
            host,
            login,
        });
    }

    /// The slot that asked for worker `id`, while it waits for it.
    fn slot_starting(&self, id: u64) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.worker == Some(id))
            .filter(|_| !self.workers.contains_key(&id))
    }

    pub(super) fn on_started(&mut self, id: u64, who: Who, now: Instant) {
        let Some(slot) = self.slot_starting(id) else {
            return;
        };
        let host = self.host_of(slot).unwrap_or(0);
        let h = &mut self.hosts[host];
        h.started += 1;
        let who = match who {
            Who::Process(pid) if !h.local => Who::Remote { pid, host: h.name },
            other => other,
        };
        let s = &mut self.slots[slot];
        s.respawn_at = None;
        if let Some(why) = s.respawn_why.take() {
            self.actions
                .push_back(Action::Note(Note::Replacing { slot, why }));
            s.restarts += 1;
            *self.summary.restarts.entry(why.to_string()).or_default() += 1;
        }
        if let Some(pid) = who.pid() {
            self.by_pid.insert(pid, id);
        }
        let mut w = Worker::new(id, slot, who, now);
        let r = &self.cfg.recycle;
        // As gunicorn's --max-requests-jitter: workers started together
        // are not all replaced together.
        w.jobs_limit = r.max_jobs.map(|n| n + self.rng.u64(0..=r.jitter));
        self.workers.insert(id, w);
        self.note(Note::WorkerStarted { slot, who });
        if self.phase == Phase::Killing {
            // Asked for in the same turn as the failure that stops the run
            // (found by the simulator, seed 37): it goes with the others.
            self.stop_worker(id, KillReason::Shutdown, now);
            if let Some(w) = self.workers.get_mut(&id) {
                w.kill();
                self.actions.push_back(Action::Kill { id });
            }
        }
    }

    pub(super) fn on_start_failed(&mut self, id: u64, error: StartError, now: Instant) {
        let Some(slot) = self.slot_starting(id) else {
            return;
        };
        self.slots[slot].worker = None;
        match error {
            StartError::Unrunnable(source) => self.fail(RunError::Spawn {
                command: self.cfg.command.clone(),
                source,
            }),
            StartError::Failed(why) => {
                self.note_start_failure(slot, crate::reasons::cannot_start(&why), now);
            }
        }
    }

    /// A stderr line: kept for the worker's failure message, and reported
    /// with the job's secrets masked.
    pub(super) fn on_stderr(&mut self, id: u64, pid: i32, line: &str) {
        let (slot, host) = self.workers.get_mut(&id).map_or((None, None), |w| {
            w.note_stderr(line);
            (Some(w.slot), w.who.host())
        });
        let line = crate::redact::mask_text(line, &self.secrets).into_owned();
        self.note(Note::WorkerStderr {
            slot,
            host,
            pid,
            line,
        });
    }

    /// A worker holding no job writes a stdout line longer than any it
    /// may write now.
    pub(super) fn on_long_line(&mut self, id: u64, bytes: usize, now: Instant) {
        if self
            .workers
            .get(&id)
            .is_some_and(|w| w.phase == Life::Running && w.inflight.is_empty())
        {
            let why = format!("wrote {bytes} bytes of a stdout line while it holds no job");
            self.protocol_error(id, why, now);
        }
    }

    pub(super) fn on_stdout_closed(&mut self, id: u64, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        w.stdout_closed_at = Some(now);
        if w.exit.is_some() {
            self.finalize(id, now);
        }
        // Otherwise the process is usually about to exit: SIGCHLD finishes
        // the job, and the deadline catches one that keeps running.
    }

    /// A worker process ended (the shell reaped it, and killed what it
    /// left in its group).
    pub(super) fn on_reaped(&mut self, pid: i32, how: ExitHow, now: Instant) {
        let Some(id) = self.by_pid.remove(&pid) else {
            return;
        };
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        w.exit = Some((how, now));
        if w.stdout_closed_at.is_some() {
            self.finalize(id, now);
        }
    }

    /// A worker thread ended: like a process reaped with its stdout closed.
    /// An abandoned one is only forgotten.
    pub(super) fn on_thread_end(&mut self, id: u64, end: ThreadEnd, now: Instant) {
        if self.abandoned.remove(&id).is_some() {
            return;
        }
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        w.exit = Some((ExitHow::Thread(end), now));
        w.stdout_closed_at = Some(now);
        self.finalize(id, now);
    }

    /// Stops a worker; one that is gone at once (an abandoned thread) is
    /// accounted for now, a process when it is reaped.
    pub(super) fn stop_worker(&mut self, id: u64, reason: KillReason, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if !w.terminate(reason, now) {
            return;
        }
        self.actions.push_back(Action::Terminate { id });
        if w.gone() {
            let job = w.inflight.front().map(|f| f.pending.job.id.clone());
            let (slot, who) = (w.slot, w.who);
            self.summary.abandoned += 1;
            self.abandoned.insert(
                id,
                Abandoned {
                    slot,
                    who,
                    since: now,
                    job,
                },
            );
            self.finalize(id, now);
        }
    }

    pub(super) fn protocol_error(&mut self, id: u64, why: String, now: Instant) {
        // The worker's end is reported when it is reaped, with the job it
        // held and what happens to that job.
        if self
            .workers
            .get(&id)
            .is_some_and(|w| w.kill_reason().is_none())
        {
            self.stop_worker(id, KillReason::Protocol(why), now);
        }
    }

    pub(super) fn handle_deadlines(&mut self, now: Instant) {
        let limits = self.limits();
        let due: Vec<(u64, Due)> = self
            .workers
            .values()
            .filter_map(|w| match w.next_due(limits) {
                Some((at, what)) if at <= now => Some((w.id, what)),
                _ => None,
            })
            .collect();
        for (id, what) in due {
            let Some(w) = self.workers.get_mut(&id) else {
                continue;
            };
            match what {
                Due::Finalize => self.finalize(id, now),
                Due::StdoutClosed => {
                    self.protocol_error(id, "closed its stdout but kept running".into(), now);
                }
                Due::StdinClosed => {
                    self.protocol_error(id, "closed its stdin but kept running".into(), now);
                }
                Due::Kill => {
                    w.kill();
                    self.act(Action::Kill { id });
                }
                Due::NoExit => self.stop_worker(id, KillReason::NoExit, now),
                Due::StartTimeout => self.stop_worker(id, KillReason::StartTimeout, now),
                Due::JobTimeout => {
                    let Some(f) = w.inflight.front() else {
                        continue;
                    };
                    let stuck = LogEvent::JobStuck {
                        slot: w.slot,
                        who: w.who,
                        job: f.pending.job.id.clone(),
                        ran: now.saturating_duration_since(f.started),
                    };
                    self.tell(stuck);
                    self.stop_worker(id, KillReason::Timeout, now);
                }
            }
        }
    }

    /// Stops the run because it cannot go on: every worker is killed.
    pub(super) fn fail(&mut self, err: RunError) {
        if self.fatal.is_none() {
            self.fatal = Some(err);
        }
        self.kill_all(self.now.mono);
    }

    pub(super) fn kill_all(&mut self, now: Instant) {
        self.phase = Phase::Killing;
        let ids: Vec<u64> = self.workers.keys().copied().collect();
        for id in ids {
            self.stop_worker(id, KillReason::Shutdown, now);
            if let Some(w) = self.workers.get_mut(&id) {
                w.kill();
                self.actions.push_back(Action::Kill { id });
            }
        }
    }

    /// Reports, once, when every worker of the run's start has said ready.
    pub(super) fn note_ready(&mut self, now: Instant) {
        if self.all_ready_told {
            return;
        }
        let ready = self
            .workers
            .values()
            .filter(|w| w.phase != Life::Starting)
            .count();
        if ready >= self.cfg.workers.max(1) {
            self.all_ready_told = true;
            self.note(Note::AllReady {
                workers: ready,
                after: now.saturating_duration_since(self.started),
            });
        }
    }
}
