//! Worker lives: starting, reaping, replacing, deadlines and kills.

use super::*;

impl Engine<'_> {
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
                if started == self.cfg.isolation.spawn_batch() {
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

    pub(super) fn spawn(&mut self, slot: usize, now: Instant) {
        self.next_id += 1;
        let id = self.next_id;
        let launch = self.launch(slot);
        let started = crate::transport::start(&launch, id, slot, &self.poller, &self.events);
        drop(launch);
        let host = self.host_of(slot).unwrap_or(0);
        match started {
            Ok((who, io)) => {
                let h = &mut self.hosts[host];
                h.started += 1;
                let who = match who {
                    Who::Process(pid) if !h.local => Who::Remote { pid, host: h.name },
                    other => other,
                };
                let s = &mut self.slots[slot];
                s.worker = Some(id);
                s.respawn_at = None;
                if let Some(why) = s.respawn_why.take() {
                    self.rep.report(Report::Replacing { slot, why });
                    s.restarts += 1;
                    *self.summary.restarts.entry(why.to_string()).or_default() += 1;
                }
                if let Some(pid) = who.pid() {
                    self.by_pid.insert(pid, id);
                }
                let mut w = Worker::new(id, slot, who, io, now);
                let r = &self.cfg.recycle;
                // As gunicorn's --max-requests-jitter: workers started
                // together are not all replaced together.
                w.jobs_limit = r.max_jobs.map(|n| n + fastrand::u64(0..=r.jitter));
                self.workers.insert(id, w);
                self.rep.report(Report::WorkerStarted { slot, who });
            }
            Err(source) => {
                let command = self.cfg.isolation.describe();
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) {
                    self.fail(RunError::Spawn { command, source });
                } else {
                    self.note_start_failure(slot, format!("cannot start it: {source}"), now);
                }
            }
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

    pub(super) fn reap(&mut self, now: Instant) {
        loop {
            match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    let Some((pid, how)) = ExitHow::from_wait(status) else {
                        continue;
                    };
                    let Some(id) = self.by_pid.remove(&pid) else {
                        self.on_login_end(pid, &how, now);
                        continue;
                    };
                    // Anything the worker left in its group goes with it.
                    crate::transport::signal_group(pid, Signal::SIGKILL);
                    let Some(w) = self.workers.get_mut(&id) else {
                        continue;
                    };
                    w.exit = Some((how, now));
                    if w.stdout_closed_at.is_some() {
                        self.finalize(id, now);
                    }
                }
            }
        }
    }

    /// A worker thread ended: like a process reaped with its stdout closed.
    /// An abandoned one is only forgotten.
    pub(super) fn on_thread_end(&mut self, id: u64, end: crate::thread::ThreadEnd, now: Instant) {
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
        if w.terminate(reason, now) == Stopped::Now {
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

    /// A worker is gone: account for the jobs it held and replace it.
    pub(super) fn finalize(&mut self, id: u64, now: Instant) {
        // Its last stderr lines may explain its end.
        self.drain_stderr(id);
        let Some(mut w) = self.workers.remove(&id) else {
            return;
        };
        if let Some(pid) = w.who.pid() {
            self.by_pid.remove(&pid);
        }
        let slot = w.slot;
        if self.slots.get(slot).is_some_and(|s| s.worker == Some(id)) {
            self.slots[slot].worker = None;
        }
        let mut inflight = std::mem::take(&mut w.inflight).into_iter();
        let head = inflight.next();
        // Jobs queued behind the one running were never started: they go
        // back uncharged, ahead of new jobs and in their order.
        for f in inflight.rev() {
            self.ready.push_front(f.pending);
        }
        let reason = w.kill_reason().cloned();
        // A remote worker whose host went down, or whose ssh connection
        // broke (ssh exits 255, and the wrapper never does), lost its job
        // through no fault of the job: it goes back uncharged.
        let connection_lost = matches!(w.who, Who::Remote { .. })
            && reason.is_none()
            && matches!(w.exit, Some((ExitHow::Code(255), _)));
        let mut requeued = None;
        let head = match head {
            Some(mut f)
                if reason == Some(KillReason::HostDown)
                    || (connection_lost && f.pending.lost_connections < MAX_LOST_CONNECTIONS) =>
            {
                if connection_lost {
                    f.pending.lost_connections += 1;
                } else {
                    // Its host's own line said why; this says which job.
                    let line = format!(
                        "worker {slot} ({}) was stopped with its host: job {:?} goes back to the queue, uncharged",
                        w.who, f.pending.job.id
                    );
                    self.rep.report(Report::Log(Level::Warn, &line));
                }
                requeued = Some(f.pending.job.id.clone());
                self.end_probe(&mut f.pending, slot);
                self.ready.push_front(f.pending);
                None
            }
            other => other,
        };
        let head_id = head.as_ref().map(|f| f.pending.job.id.clone());
        let ExitJudgement {
            mut note,
            mut start_failure,
            replace_why,
            killed_by_job,
        } = self.judge_exit(&w, head.as_ref());
        // Set when this death ends the run (or its host): the last of a
        // run of jobs that killed their workers was a probe.
        let mut dying_on_every_job = false;
        // A connection that broke after the worker said ready is not a
        // failure to start: a host that drops one connection stays up. Its
        // login, if it broke too, counts once, as a login.
        if connection_lost && w.phase != Life::Starting {
            start_failure = None;
            if head.is_none() {
                let mut n = "lost its ssh connection (ssh exit status 255)".to_string();
                if let Some(id) = &requeued {
                    n.push_str(&format!(": job {id:?} goes back to the queue, uncharged"));
                }
                note = Some(n);
            }
        }
        if let Some(mut f) = head {
            let (outcome, kind) = match &reason {
                Some(KillReason::Timeout) => (Outcome::Timeout, ErrorKind::Timeout),
                Some(KillReason::Protocol(_)) => (Outcome::ProtocolError, ErrorKind::ProtocolError),
                _ => (Outcome::Crashed, ErrorKind::Crashed),
            };
            if reason == Some(KillReason::Shutdown) {
                // Killed by the second Ctrl-C: not an attempt, just not run.
            } else {
                let mut message = format!(
                    "worker {slot} ({}) {}",
                    w.who,
                    note.as_deref().unwrap_or("stopped")
                );
                if let Some(died) = &killed_by_job {
                    f.pending.kills += 1;
                    let k = f.pending.kills;
                    let s = if k == 1 { "" } else { "s" };
                    message.push_str(&format!("; this job has killed {k} worker{s}"));
                    if let Some(jobs) = self.count_job_kill(slot, &f.pending) {
                        dying_on_every_job = true;
                        let detail = with_stderr(format!("worker {slot} ({}) {died}", w.who), &w);
                        self.give_up_dying(slot, jobs, detail, now);
                    }
                }
                let attempt = f.pending.history.len() + 1;
                let max = self.cfg.retry.max_attempts();
                let next = if self.phase != Phase::Running {
                    "the run is stopping, so it is left for --resume"
                } else if (attempt as u32) >= max {
                    "no attempts left"
                } else if killed_by_job.is_some() && self.feed.is_some() {
                    "it goes back to the queue once another job has been answered"
                } else {
                    "it goes back to the queue"
                };
                if let Some(n) = note.as_mut() {
                    n.push_str(&format!(
                        " while running job {:?} (attempt {attempt} of {max}): {next}",
                        head_id.as_deref().unwrap_or("")
                    ));
                }
                let error = kind.job_error(message);
                let end = AttemptEnd::Lost {
                    outcome,
                    error,
                    killed_worker: killed_by_job.is_some(),
                };
                self.end_attempt(f, slot, w.who, end, now);
            }
        }
        // A failure to start that is one too many gives up (the run, or
        // the host) instead of replacing the worker; so does a probe that
        // killed its worker too.
        let gives_up = (start_failure.is_some() && self.next_failure_gives_up(slot))
            || dying_on_every_job;
        let will_replace = self.phase == Phase::Running
            && slot < self.target
            && !gives_up
            && !self.slot_host_down(slot)
            && self.slots.get(slot).is_some_and(|s| s.worker.is_none())
            && self.work_left() > 0;
        if let Some(n) = note.as_mut() {
            if will_replace {
                n.push_str("; starting a replacement");
            }
            let line = format!("worker {slot} ({}) {n}", w.who);
            self.rep.report(Report::Log(Level::Warn, &line));
        }
        if let Some(why) = start_failure {
            let detail = with_stderr(format!("worker {slot} ({}) {why}", w.who), &w);
            self.note_start_failure(slot, detail, now);
        } else if will_replace {
            let s = &mut self.slots[slot];
            s.respawn_at = Some(now);
            s.respawn_why = Some(replace_why);
        }
        if slot >= self.target && slot + 1 == self.slots.len() {
            while self.slots.len() > self.target
                && self.slots.last().is_some_and(|s| s.worker.is_none())
            {
                self.slots.pop();
            }
        }
    }

    /// Why a worker ended, in words: the log line's core, whether it counts
    /// as a failure to start, and the reason a replacement is counted under.
    fn judge_exit(&self, w: &Worker, head: Option<&InFlight>) -> ExitJudgement {
        let mut how = w
            .exit
            .as_ref()
            .map_or_else(|| "an unknown status".to_string(), |(h, _)| h.describe());
        if let Some(limit) = self.cfg.isolation.memory_limit()
            && out_of_memory(w)
        {
            how.push_str(&format!(
                "; it ran out of memory under --worker-memory-limit {}",
                crate::status::megabytes(limit)
            ));
        }
        let killed_by_person =
            w.kill_reason().is_none() && w.exit.as_ref().is_some_and(|(h, _)| h.by_a_person());
        let stopped = w.stopped_word();
        let mut start_failure = None;
        let mut killed_by_job = None;
        let mut replace_why = w.retiring().map_or(CRASHED, Retire::reason);
        let note = match (w.kill_reason(), head) {
            (Some(KillReason::Shutdown | KillReason::HostDown), _) => None,
            (Some(KillReason::Timeout), None) => Some(format!("was {stopped} at its deadline")),
            (Some(KillReason::Timeout), Some(f)) => {
                replace_why = STUCK;
                let secs = f.pending.job.timeout.as_secs_f64();
                Some(format!(
                    "was {stopped} after job {:?} ran past its {secs}s deadline",
                    f.pending.job.id
                ))
            }
            (Some(KillReason::StartTimeout), _) => {
                let msg = format!("sent no `ready` within {:?}", self.cfg.start_timeout);
                start_failure = Some(msg.clone());
                Some(msg)
            }
            (Some(KillReason::Protocol(p)), _) => {
                replace_why = PROTOCOL_ERROR;
                if w.jobs_done == 0 {
                    start_failure = Some(format!("broke the protocol: it {p}"));
                }
                Some(format!("broke the protocol (it {p}) and was {stopped}"))
            }
            (Some(KillReason::NoExit), _) => Some(format!(
                "did not exit within {:?} of its stdin closing, so it was {stopped}",
                self.cfg.kill_grace
            )),
            (None, Some(f)) => {
                // Not a failure to start: the job is charged, and counted
                // toward the give-up for jobs that kill their workers.
                if !killed_by_person {
                    killed_by_job = Some(if w.jobs_done == 0 {
                        format!("died on its first job with {how}")
                    } else {
                        format!("died on job {:?} with {how}", f.pending.job.id)
                    });
                }
                Some(format!("died ({how})"))
            }
            (None, None) if w.phase == Life::Starting && !killed_by_person => {
                let msg = format!("exited before `ready` with {how}");
                start_failure = Some(msg.clone());
                Some(msg)
            }
            (None, None) if w.was_closed() => None,
            (None, None) => {
                if w.jobs_done == 0 && !killed_by_person {
                    start_failure =
                        Some(format!("said ready, then exited before any job with {how}"));
                }
                Some(format!("died between jobs ({how})"))
            }
        };
        ExitJudgement {
            note,
            start_failure,
            replace_why,
            killed_by_job,
        }
    }

    /// Whether one more failure to start in `slot` makes its host (or,
    /// without `--host`, the run) give up.
    fn next_failure_gives_up(&self, slot: usize) -> bool {
        let h = self.host_of(slot).unwrap_or(0);
        restart_delay(self.hosts[h].failures + 1, self.cfg.max_start_failures).is_none()
    }

    /// Counts a worker's death on the job it ran toward its host's run of
    /// jobs that killed their workers (a job counts once, the first time it
    /// kills: a job that kills again tells nothing new). Returns the length
    /// of that run when the job was a probe, which ends it: the worker dies
    /// on jobs from anywhere in the list.
    fn count_job_kill(&mut self, slot: usize, p: &Pending) -> Option<u32> {
        if self.phase != Phase::Running {
            return None;
        }
        let h = self.host_of(slot)?;
        let host = &mut self.hosts[h];
        if p.kills == 1 {
            host.kills += 1;
        }
        (p.probe && host.kills > self.cfg.max_start_failures.max(1)).then_some(host.kills)
    }

    /// Gives up on a worker program that dies on every job: the run stops
    /// (exit 2), or with `--host` the host is marked down.
    fn give_up_dying(&mut self, slot: usize, jobs: u32, detail: String, now: Instant) {
        let h = self.host_of(slot).unwrap_or(0);
        if self.cfg.hosts.is_some() {
            let why = format!(
                "its workers died on {jobs} different jobs in a row, none answered, the last taken from further down the list; last: {detail}"
            );
            self.host_down(h, why, now);
        } else {
            self.fail(RunError::WorkersDying {
                command: self.cfg.isolation.describe(),
                jobs,
                last: detail,
            });
        }
    }

    pub(super) fn note_start_failure(&mut self, slot: usize, detail: String, now: Instant) {
        let h = self.host_of(slot).unwrap_or(0);
        let host = &mut self.hosts[h];
        host.failures += 1;
        let failures = host.failures;
        let Some(wait) = restart_delay(failures, self.cfg.max_start_failures) else {
            if self.cfg.hosts.is_some() {
                let why = format!("its workers failed to start {failures} times in a row; last: {detail}");
                self.host_down(h, why, now);
            } else {
                self.fail(RunError::WorkersFailing {
                    command: self.cfg.isolation.describe(),
                    failures,
                    last: detail,
                });
            }
            return;
        };
        if let Some(s) = self.slots.get_mut(slot) {
            s.respawn_at = Some(now + wait);
            s.respawn_why = Some(FAILED_TO_START);
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

    pub(super) fn limits(&self) -> Limits {
        Limits {
            start_timeout: self.cfg.start_timeout,
            grace: self.cfg.kill_grace,
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
                Due::Kill => w.kill(),
                Due::NoExit => self.stop_worker(id, KillReason::NoExit, now),
                Due::StartTimeout => self.stop_worker(id, KillReason::StartTimeout, now),
                Due::JobTimeout => {
                    let Some(f) = w.inflight.front() else {
                        continue;
                    };
                    let line = format!(
                        "worker {} ({}) is stuck: job {:?} has run {:.1}s, past its deadline; {}",
                        w.slot,
                        w.who,
                        f.pending.job.id,
                        now.saturating_duration_since(f.started).as_secs_f64(),
                        w.stopping_words()
                    );
                    self.rep.report(Report::Log(Level::Warn, &line));
                    self.stop_worker(id, KillReason::Timeout, now);
                }
            }
        }
        for w in self.workers.values_mut() {
            if w.has_unsent() {
                // A failed flush shows up as the worker's exit.
                w.flush(now);
            }
        }
    }

    /// Stops the run because it cannot go on: every worker is killed.
    pub(super) fn fail(&mut self, err: RunError) {
        if self.fatal.is_none() {
            self.fatal = Some(err);
        }
        self.kill_all(Instant::now());
    }

    pub(super) fn kill_all(&mut self, now: Instant) {
        self.phase = Phase::Killing;
        let ids: Vec<u64> = self.workers.keys().copied().collect();
        for id in ids {
            self.stop_worker(id, KillReason::Shutdown, now);
            if let Some(w) = self.workers.get_mut(&id) {
                w.kill();
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
            self.rep.report(Report::AllReady {
                workers: ready,
                after: now.saturating_duration_since(self.started),
            });
        }
    }
}

/// How many times a job goes back to the queue uncharged because its
/// remote worker's ssh connection broke before the next such loss is
/// charged as a crash.
const MAX_LOST_CONNECTIONS: u32 = 3;

/// Whether a worker's end shows that it could not get memory: an abort or
/// a kill, with a last stderr line that says so (Rust's "memory
/// allocation of N bytes failed", Python's MemoryError, C's "Cannot
/// allocate memory").
fn out_of_memory(w: &Worker) -> bool {
    let died = matches!(
        w.exit,
        Some((
            ExitHow::Signal(Signal::SIGABRT | Signal::SIGSEGV | Signal::SIGKILL | Signal::SIGBUS)
                | ExitHow::Code(_),
            _
        ))
    );
    died && w.stderr_tail.iter().any(|l| {
        l.contains("memory allocation of")
            || l.contains("MemoryError")
            || l.contains("Cannot allocate memory")
            || l.contains("out of memory")
    })
}

/// What [`Engine::judge_exit`] concludes about a worker's end.
struct ExitJudgement {
    /// The log line's core ("died (signal SIGKILL)"); `None` for an
    /// expected exit.
    note: Option<String>,
    /// Set when the end counts toward the start-failure limit.
    start_failure: Option<String>,
    /// The reason a replacement is counted under.
    replace_why: &'static str,
    /// Set when it died by itself while running a job, which is then
    /// charged with its death: how, in words ("died on its first job with
    /// exit status 1").
    killed_by_job: Option<String>,
}

/// A failure's detail, with the worker's last stderr lines if it wrote any.
fn with_stderr(mut detail: String, w: &Worker) -> String {
    if !w.stderr_tail.is_empty() {
        detail.push_str("; its last stderr lines:");
        for l in &w.stderr_tail {
            detail.push_str("\n    ");
            detail.push_str(l);
        }
    }
    detail
}
