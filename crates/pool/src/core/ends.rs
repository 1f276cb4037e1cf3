//! What a worker's end means: for the job it held (requeued, retried,
//! failed, left for `--resume`), for its slot (replaced, and when), and for
//! the run (a failure to start, a worker program that dies on every job).
//! [`Core::judge_end`] decides it once; [`Core::finalize`] acts on that and
//! tells it as a [`WorkerEnd`], which the reporter puts into words.

use super::*;
use crate::reasons;
use crate::records::Outcome;
use crate::report::{EndCause, Exit, JobFate, LostJob, WorkerEnd};
use crate::who::{ExitHow, sig};
use callpool_protocol::ErrorKind;
use decide::AttemptEnd;
use worker::{InFlight, KillReason, Phase as Life, Retire};

impl Core {
    /// A worker is gone: account for the jobs it held and replace it.
    pub(super) fn finalize(&mut self, id: u64, now: Instant) {
        // The shell read its last stderr lines before it said it ended.
        let Some(mut w) = self.workers.remove(&id) else {
            return;
        };
        self.act(Action::Forget { id });
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
        let Ending {
            cause,
            charge,
            start_failure,
            replace_why,
        } = self.judge_end(&w, head.as_ref());
        let mut end = WorkerEnd {
            slot,
            who: w.who,
            cause,
            job: None,
            replaced: false,
            start_failure,
            jobs_done: w.jobs_done,
        };
        // Set when this death ends the run (or its host): the last of a
        // run of jobs that killed their workers was a probe.
        let dying_on_every_job = match head {
            Some(f) => self.settle_job(f, charge, &mut end, &w.stderr_tail, now),
            None => false,
        };
        // A failure to start that is one too many gives up (the run, or
        // the host) instead of replacing the worker; so does a probe that
        // killed its worker too.
        let gives_up = (start_failure && self.next_failure_gives_up(slot)) || dying_on_every_job;
        end.replaced = self.phase == Phase::Running
            && slot < self.target
            && !gives_up
            && !self.slot_host_down(slot)
            && self.slots.get(slot).is_some_and(|s| s.worker.is_none())
            && self.work_left() > 0;
        let failure = start_failure.then(|| reasons::start_failure(&end, &w.stderr_tail));
        if end.replaced && failure.is_none() {
            let s = &mut self.slots[slot];
            s.respawn_at = Some(now);
            s.respawn_why = Some(replace_why);
        }
        // Told before what a failure to start leads to (a host given up).
        if end.is_news() {
            self.tell(LogEvent::WorkerEnded(end));
        }
        if let Some(detail) = failure {
            self.note_start_failure(slot, detail, now);
        }
        if slot >= self.target && slot + 1 == self.slots.len() {
            while self.slots.len() > self.target
                && self.slots.last().is_some_and(|s| s.worker.is_none())
            {
                self.slots.pop();
            }
        }
    }

    /// Does with the job a worker was running what its end decided, and
    /// fills in `end.job` with what became of it. Returns whether the
    /// run (or the worker's host) gives up: the job was a probe, and the
    /// last of a run of jobs that killed their workers.
    fn settle_job(
        &mut self,
        mut f: InFlight,
        charge: Charge,
        end: &mut WorkerEnd,
        stderr: &VecDeque<String>,
        now: Instant,
    ) -> bool {
        let slot = end.slot;
        let mut job = LostJob {
            id: f.pending.job.id.clone(),
            attempt: u32::try_from(f.pending.history.len() + 1).unwrap_or(u32::MAX),
            max: self.cfg.retry.max_attempts(),
            fate: JobFate::Requeued,
            kills: None,
        };
        let killed_worker = match charge {
            Charge::Requeue => {
                if end.cause == EndCause::ConnectionLost {
                    f.pending.lost_connections += 1;
                }
                self.end_probe(&mut f.pending, slot);
                self.ready.push_front(f.pending);
                end.job = Some(job);
                return false;
            }
            // Killed by the second Ctrl-C: not an attempt, just not run.
            Charge::NotRun | Charge::None => return false,
            Charge::Attempt { killed_worker } => killed_worker,
        };
        if killed_worker {
            f.pending.kills += 1;
            job.kills = Some(f.pending.kills);
        }
        end.job = Some(job);
        let message = reasons::lost_attempt(end);
        let mut dying = false;
        if killed_worker && let Some(jobs) = self.count_job_kill(slot, &f.pending) {
            dying = true;
            let detail = reasons::died_on_job(end, stderr);
            self.give_up_dying(slot, jobs, detail, now);
        }
        let (outcome, kind) = match &end.cause {
            EndCause::Deadline { .. } => (Outcome::Timeout, ErrorKind::Timeout),
            EndCause::Protocol { .. } => (Outcome::ProtocolError, ErrorKind::ProtocolError),
            _ => (Outcome::Crashed, ErrorKind::Crashed),
        };
        let lost = AttemptEnd::Lost {
            outcome,
            error: kind.job_error(message),
            killed_worker,
        };
        // The job's fate is what end_attempt did with it, not a guess.
        let fate = self.end_attempt(f, slot, end.who, lost, now);
        if let Some(job) = end.job.as_mut() {
            job.fate = fate;
        }
        dying
    }

    /// Why a worker ended, decided once: what becomes of the job it was
    /// running, whether it counts as a failure to start, and the reason a
    /// replacement is counted under.
    fn judge_end(&self, w: &Worker, head: Option<&InFlight>) -> Ending {
        let exit = || Exit {
            how: w.exit.as_ref().map(|(h, _)| h.clone()),
            out_of_memory_under: self.cfg.memory_limit.filter(|_| out_of_memory(w)),
        };
        let reason = w.kill_reason();
        let killed_by_person =
            reason.is_none() && w.exit.as_ref().is_some_and(|(h, _)| h.by_a_person());
        // A remote worker whose ssh connection broke (ssh exits 255, and
        // the wrapper never does) lost its job through no fault of the
        // job: it goes back uncharged, a few times. A connection that
        // broke after the worker said ready is not a failure to start: a
        // host that drops one connection stays up. Its login, if it broke
        // too, counts once, as a login.
        let connection_lost = matches!(w.who, Who::Remote { .. })
            && reason.is_none()
            && matches!(w.exit, Some((ExitHow::Code(255), _)))
            && w.phase != Life::Starting;
        let attempt = |killed_worker| {
            if head.is_some() {
                Charge::Attempt { killed_worker }
            } else {
                Charge::None
            }
        };
        let mut ending = Ending {
            cause: EndCause::Closed,
            charge: attempt(false),
            start_failure: false,
            replace_why: w.retiring().map_or(CRASHED, Retire::reason),
        };
        ending.cause = match (reason, head) {
            (Some(KillReason::Shutdown), _) => {
                ending.charge = if head.is_some() {
                    Charge::NotRun
                } else {
                    Charge::None
                };
                EndCause::Shutdown
            }
            // Its host was given up: its job goes back uncharged (the
            // host's own line said why).
            (Some(KillReason::HostDown), _) => {
                ending.charge = if head.is_some() {
                    Charge::Requeue
                } else {
                    Charge::None
                };
                EndCause::HostDown
            }
            (None, Some(f))
                if connection_lost && f.pending.lost_connections < MAX_LOST_CONNECTIONS =>
            {
                ending.charge = Charge::Requeue;
                EndCause::ConnectionLost
            }
            (Some(KillReason::Timeout), f) => {
                if f.is_some() {
                    ending.replace_why = STUCK;
                }
                EndCause::Deadline {
                    job: f.map(|f| (f.pending.job.id.clone(), f.pending.job.timeout)),
                }
            }
            (Some(KillReason::StartTimeout), _) => {
                ending.start_failure = true;
                EndCause::NoReady {
                    within: self.cfg.start_timeout,
                }
            }
            (Some(KillReason::Protocol(p)), _) => {
                ending.replace_why = PROTOCOL_ERROR;
                ending.start_failure = w.jobs_done == 0;
                EndCause::Protocol { what: p.clone() }
            }
            (Some(KillReason::NoExit), _) => EndCause::NoExit {
                grace: self.cfg.kill_grace,
            },
            // Not a failure to start: the job is charged, and counted
            // toward the give-up for jobs that kill their workers.
            (None, Some(_)) => {
                ending.charge = attempt(!killed_by_person);
                EndCause::Died(exit())
            }
            (None, None) if connection_lost => EndCause::ConnectionLost,
            (None, None) if w.phase == Life::Starting && !killed_by_person => {
                ending.start_failure = true;
                EndCause::ExitedBeforeReady(exit())
            }
            (None, None) if w.was_closed() => EndCause::Closed,
            (None, None) => {
                ending.start_failure = w.jobs_done == 0 && !killed_by_person;
                EndCause::DiedBetweenJobs(exit())
            }
        };
        ending
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
            self.host_down(h, reasons::host_dying(jobs, &detail), now);
        } else {
            self.fail(RunError::WorkersDying {
                command: self.cfg.command.clone(),
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
                let why = reasons::host_start_failures(failures, &detail);
                self.host_down(h, why, now);
            } else {
                self.fail(RunError::WorkersFailing {
                    command: self.cfg.command.clone(),
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
            ExitHow::Signal(sig::ABRT | sig::SEGV | sig::KILL | sig::BUS) | ExitHow::Code(_),
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

/// What [`Core::judge_end`] concludes about a worker's end, for
/// [`Core::finalize`] to act on.
struct Ending {
    /// Why it ended.
    cause: EndCause,
    /// What becomes of the job it was running.
    charge: Charge,
    /// Set when the end counts toward the start-failure limit.
    start_failure: bool,
    /// The reason a replacement is counted under.
    replace_why: &'static str,
}

/// What becomes of the job a worker was running when it ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Charge {
    /// It was running none.
    None,
    /// It goes back to the queue uncharged: the fault was not the job's.
    Requeue,
    /// It is left for `--resume`, not charged: the run stops at once.
    NotRun,
    /// Its attempt is lost, and charged; `killed_worker`: the job is
    /// suspected of the worker's death.
    Attempt {
        /// The worker died by itself while running the job.
        killed_worker: bool,
    },
}
