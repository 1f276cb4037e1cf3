//! What happens when a worker answers: the attempt is judged, recorded, retried or finished.

use super::*;
use crate::job::Job;
use crate::records::{AttemptRecord, FinalResult, Outcome, joblog_line, result_path, timestamp};
use crate::redact::mask_text;
use crate::report::{FailureNote, JobFate, RecycleWhy};
use callpool_protocol::{
    ErrorKind, FromWorker, HttpResponse, PROTOCOL_VERSION, ResultMsg, WorkerResultError,
};
use decide::{AttemptEnd, Next, decide};
use dedup::Answer;
use worker::{InFlight, Phase as Life, Retire};

impl Core {
    /// A worker's stdout line: `ready`, a result, or a line that breaks
    /// the protocol.
    pub(super) fn on_message(&mut self, id: u64, msg: Result<FromWorker, String>, now: Instant) {
        match msg {
            Ok(FromWorker::Ready(info)) => {
                let Some(w) = self.workers.get_mut(&id) else {
                    return;
                };
                match w.phase {
                    Life::Starting => {}
                    Life::Closing { .. } | Life::Killing { .. } => return,
                    Life::Running | Life::Retiring(_) => {
                        self.protocol_error(id, "sent `ready` twice".into(), now);
                        return;
                    }
                }
                if info.protocol != PROTOCOL_VERSION {
                    let msg = format!(
                        "speaks protocol {}, this supervisor speaks {PROTOCOL_VERSION}",
                        info.protocol
                    );
                    self.protocol_error(id, msg, now);
                    return;
                }
                w.ready(now);
                self.note_ready(now);
                self.feed_worker(id, now);
            }
            Ok(FromWorker::Result(res)) => self.on_result(id, res, now),
            Err(why) => self.protocol_error(id, why, now),
        }
    }

    fn on_result(&mut self, id: u64, res: ResultMsg, now: Instant) {
        let Some(w) = self.workers.get_mut(&id) else {
            return;
        };
        if w.kill_reason().is_some() {
            // Condemned (deadline, protocol): what it still says is not
            // trusted; its job is accounted for when it is reaped.
            return;
        }
        let problem = match w.inflight.front() {
            _ if w.phase == Life::Starting => Some("sent a result before `ready`".to_string()),
            Some(f) if f.pending.job.id == res.id => None,
            Some(f) => Some(format!(
                "sent a result for job {:?} while it runs job {:?}",
                res.id, f.pending.job.id
            )),
            None => Some(format!(
                "sent a result for job {:?} but holds no job",
                res.id
            )),
        };
        if let Some(p) = problem {
            self.protocol_error(id, p, now);
            return;
        }
        if let Err(e) = res.outcome() {
            let with = match e {
                WorkerResultError::Both(_) if res.value.is_some() => {
                    "`value` and `response` or `error`"
                }
                WorkerResultError::Both(_) => "both `response` and `error`",
                WorkerResultError::Neither(_) => "neither `response` nor `error`",
            };
            let p = format!("sent a result for job {:?} with {with}", res.id);
            self.protocol_error(id, p, now);
            return;
        }
        // How long the worker has been busy without a break: an upper bound
        // on how long any job it holds can have run.
        let busy_for = now.saturating_duration_since(w.since);
        let Some(mut done) = w.inflight.pop_front() else {
            return;
        };
        worker_clock(&mut done, res.elapsed_ms, busy_for, now);
        if let Some(next) = w.inflight.front_mut() {
            next.started = now;
            next.started_wall = self.now.wall;
        }
        w.jobs_done += 1;
        w.settle(true, now);
        let (slot, who) = (w.slot, w.who);
        self.slots[slot].jobs_done += 1;
        let host = &mut self.hosts[self.slots[slot].host];
        host.failures = 0;
        host.kills = 0;
        host.jobs_done += 1;
        // The host's workers can do a job: no need to wait for its probe.
        self.unhold(self.slots[slot].host);
        // A worker can do a job: the jobs that killed theirs may try again.
        self.release_suspects();
        let end = match (res.response, res.value, res.error) {
            (Some(r), _, _) => AttemptEnd::Response(r),
            (None, Some(v), _) => AttemptEnd::Value(v),
            (None, None, Some(e)) => AttemptEnd::Error(e),
            // outcome() above checked there is exactly one.
            (None, None, None) => return,
        };
        self.end_attempt(done, slot, who, end, now);
        if let Some(w) = self.workers.get_mut(&id) {
            if w.used_up() && w.retiring().is_none() {
                let (slot, who, done) = (w.slot, w.who, w.jobs_done);
                self.retire(id, Retire::MaxJobs, now);
                self.tell(LogEvent::Recycled {
                    slot,
                    who,
                    why: RecycleWhy::MaxJobs { done },
                });
            }
        }
        if let Some(w) = self.workers.get_mut(&id) {
            if (w.retiring().is_some() || self.phase != Phase::Running) && w.inflight.is_empty() {
                self.close_input(id, now);
            } else {
                self.feed_worker(id, now);
            }
        }
    }

    /// Records an attempt and acts on its judgement: done, retry later,
    /// failed, or stop the run. Returns what it did with the job, the one
    /// place a job's fate is decided (a worker's end reports it as is).
    pub(super) fn end_attempt(
        &mut self,
        f: InFlight,
        slot: usize,
        who: Who,
        end: AttemptEnd,
        now: Instant,
    ) -> JobFate {
        let mut pending = f.pending;
        // A probe's attempt is over: answered (which reset its host), or
        // lost without killing its worker. Either way it is a job like any
        // other now, and another probe may go out.
        self.end_probe(&mut pending, slot);
        let attempt = u32::try_from(pending.history.len() + 1).unwrap_or(u32::MAX);
        let elapsed = now.saturating_duration_since(f.started);
        let running = self.phase == Phase::Running;
        let host = self
            .cfg
            .hosts
            .as_ref()
            .map(|_| self.hosts[self.slots[slot].host].name);
        let pid = who.process_id(self.cfg.own_pid);
        let record = |outcome, status, error, retry_in: Option<Duration>| AttemptRecord {
            attempt,
            slot,
            pid,
            host,
            started_at: timestamp(f.started_wall),
            elapsed_ms: elapsed.as_secs_f64() * 1000.0,
            outcome,
            status,
            error,
            retry_in_ms: retry_in.map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX)),
        };
        if let AttemptEnd::Response(r) = &end
            && self.budget_refused(r, now)
            && running
            && pending.rate_limited < MAX_RATE_LIMITED
        {
            pending.rate_limited += 1;
            let error = ErrorKind::RetryLater.job_error(format!(
                "HTTP status {}: the API's rate limit; retried once its budget resets, not charged to the job",
                r.status
            ));
            let record = record(Outcome::RetryLater, Some(r.status), Some(error), None);
            self.record_attempt(&pending, &record);
            pending.history.push(record);
            self.summary.retried += 1;
            self.ready.push_front(pending);
            return JobFate::Requeued;
        }
        // Attempts refused by the budget are not charged.
        let charged = attempt.saturating_sub(pending.rate_limited);
        let d = decide(
            &end,
            charged,
            &self.cfg.retry,
            &self.cfg.rules,
            self.now.wall,
            self.rng.f64(),
        );
        if d.ok {
            self.summary.latency.record(elapsed);
        }
        self.adjust_pace(d.status, d.ok, now);
        let retry_in = match d.next {
            Next::Retry(wait) if running => Some(wait),
            _ => None,
        };
        let record = record(d.outcome, d.status, d.error.clone(), retry_in);
        self.record_attempt(&pending, &record);
        pending.history.push(record);

        match d.next {
            Next::StopRun(rule) => {
                // The job is left without a result, so --resume runs it.
                self.stop_run(Some((pending.job.id.clone(), rule)), now);
                return JobFate::LeftForResume;
            }
            // The run is stopping: a job that would be retried is left
            // without a result (not failed), so that --resume runs it again.
            Next::Retry(_) if !running => return JobFate::LeftForResume,
            // Stopped by force (a second Ctrl-C, a fatal error): nothing
            // more is written; the attempt is in the joblog and the job is
            // left for --resume (found by the simulator, seed 90: a worker
            // condemned before the stop ended after it, and its job's
            // failure was written).
            _ if self.phase == Phase::Killing => return JobFate::LeftForResume,
            _ => {}
        }
        if let Some(wait) = retry_in {
            self.summary.retried += 1;
            let killed_worker = matches!(
                end,
                AttemptEnd::Lost {
                    killed_worker: true,
                    ..
                }
            );
            if wait.is_zero() && killed_worker && self.source.is_some() {
                self.suspects.push_back(pending);
                return JobFate::HeldForProof;
            } else if wait.is_zero() {
                self.ready.push_back(pending);
            } else {
                self.seq += 1;
                self.waiting.push(Reverse(Waiting {
                    at: now + wait,
                    seq: self.seq,
                    pending,
                }));
            }
            return JobFate::Retried;
        }
        let (response, value) = match end {
            AttemptEnd::Response(r) => (Some(r), None),
            AttemptEnd::Value(v) => (None, Some(v)),
            _ => (None, None),
        };
        let answer = Answer {
            ok: d.ok,
            status: d.status,
            response,
            value,
            error: d.error,
            history: pending.history,
        };
        let job = pending.job;
        self.answer_followers(&job, &answer);
        self.finish(job, answer, None);
        JobFate::Finished
    }

    /// Writes an attempt to the joblog and reports it.
    fn record_attempt(&mut self, pending: &Pending, record: &AttemptRecord) {
        self.act(Action::Attempt {
            line: joblog_line(&pending.job, record),
            id: pending.job.id.clone(),
            record: record.clone(),
        });
    }

    /// Reads the server's budget from an answer (budget.rs), pauses the
    /// run when it is spent, and says whether the answer is a refusal of
    /// the budget's rather than the job's.
    fn budget_refused(&mut self, r: &HttpResponse, now: Instant) -> bool {
        let mut reading = crate::core::budget::read(r.status, &r.headers, self.now.wall);
        if reading
            .retry_after
            .is_some_and(|w| w > self.cfg.retry.max_retry_after)
        {
            // Longer than the run will wait: the job fails, saying so
            // (decide.rs), instead of the run pausing.
            reading.retry_after = None;
        }
        let others = self.workers.values().map(|w| w.inflight.len()).sum();
        if let Some(pause) = self.budget.observe(&reading, r.status, others, now) {
            let until = self.now.wall + pause.wait;
            self.summary.budget_pauses += 1;
            self.paused = Some((until, pause.because));
            self.tell(LogEvent::BudgetPause {
                until,
                wait: pause.wait,
                because: pause.because,
                capped: pause.capped.then_some(crate::core::budget::MAX_PAUSE),
            });
        }
        reading.is_rate_limited(r.status)
    }

    /// Accounts for a finished job and queues its result file; `dedup_of`
    /// names the job whose call answered it (`--dedup`).
    pub(super) fn finish(&mut self, job: Box<Job>, answer: Answer, dedup_of: Option<String>) {
        if answer.ok {
            self.summary.progress.ok += 1;
        } else {
            self.summary.progress.failed += 1;
        }
        if !answer.ok {
            let (kind, reason) = match (&answer.error, answer.status) {
                (Some(e), Some(status)) if e.kind == ErrorKind::HttpStatus => {
                    (format!("http {status}"), e.message.clone())
                }
                (Some(e), _) => (e.kind.to_string(), format!("{}: {}", e.kind, e.message)),
                (None, _) => ("unknown".into(), "unknown".into()),
            };
            *self.summary.failed_by_kind.entry(kind).or_default() += 1;
            if self.summary.first_failures.len() < FAILURES_NAMED {
                let reason = mask_text(&reason, &job.secrets).into_owned();
                self.summary.first_failures.push(FailureNote {
                    id: job.id.clone(),
                    reason,
                    path: result_path(&self.cfg.out_dir, &job.id),
                });
            }
        }
        let finished = self.now.wall;
        self.act(Action::WriteResult(Box::new(FinalResult {
            job,
            ok: answer.ok,
            response: answer.response,
            value: answer.value,
            error: answer.error,
            history: answer.history,
            finished,
            dedup_of,
        })));
    }

    /// Slows the global pace on a 429 and lets it recover on success.
    pub(super) fn adjust_pace(&mut self, status: Option<u16>, ok: bool, now: Instant) {
        let Some(pacer) = self.pacer.as_mut() else {
            return;
        };
        if status == Some(429) {
            let rate = pacer.slow_down();
            // One line per second at most: a burst of 429s is one event.
            if self
                .last_slowdown_log
                .is_none_or(|t| now.saturating_duration_since(t) >= Duration::from_secs(1))
            {
                self.last_slowdown_log = Some(now);
                self.tell(LogEvent::SlowedDown { rate });
            }
        } else if ok {
            pacer.recover();
        }
    }
}

/// Dates an answered attempt by the worker's own clock when that shows it
/// ran longer than the supervisor's clock does.
///
/// The supervisor starts a job's clock when it writes the job to the
/// worker's stdin, or, for a job queued behind another (`--prefetch`),
/// when the result of the job before it arrives: right for a worker that
/// runs its jobs one at a time, in order, as protocol.md §4 requires. A
/// worker that runs its queued jobs at the same time breaks that rule, and
/// its queued jobs would look as short as the gap between two results.
/// When the result's `elapsed_ms` is longer than the supervisor's clock,
/// the attempt is taken to have started that much earlier; never earlier
/// than the worker's busy stretch began (`busy_for`), so a wrong
/// `elapsed_ms` cannot make an attempt longer than the time its job can
/// have been out.
fn worker_clock(f: &mut InFlight, elapsed_ms: Option<f64>, busy_for: Duration, now: Instant) {
    let Some(ms) = elapsed_ms.filter(|ms| ms.is_finite() && *ms > 0.0) else {
        return;
    };
    let claimed = Duration::try_from_secs_f64(ms / 1000.0)
        .unwrap_or(Duration::MAX)
        .min(busy_for);
    let measured = now.saturating_duration_since(f.started);
    let Some(earlier) = claimed.checked_sub(measured).filter(|d| !d.is_zero()) else {
        return;
    };
    if let (Some(started), Some(wall)) = (
        f.started.checked_sub(earlier),
        f.started_wall.checked_sub(earlier),
    ) {
        f.started = started;
        f.started_wall = wall;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::worker::Pending;
    use crate::jobs::RequestDefaults;

    fn sent_at(started: Instant) -> InFlight {
        let job = crate::jobs::parse_line(
            r#"{"id":"j","url":"http://127.0.0.1/"}"#,
            1,
            &RequestDefaults::default(),
        )
        .expect("a job");
        InFlight {
            pending: Pending {
                job: Box::new(job),
                history: Vec::new(),
                lost_connections: 0,
                kills: 0,
                probe: false,
                rate_limited: 0,
            },
            started,
            started_wall: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
        }
    }

    #[test]
    fn a_longer_worker_clock_moves_the_start_back_within_the_busy_stretch() {
        let ms = Duration::from_millis;
        let t0 = Instant::now();
        let now = t0 + ms(100);
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        // Timed from a result 10 ms ago; the worker says it took 50 ms.
        let mut f = sent_at(now - ms(10));
        worker_clock(&mut f, Some(50.0), ms(100), now);
        assert_eq!(now - f.started, ms(50));
        assert_eq!(f.started_wall, wall - ms(40));
        // Never before the worker's busy stretch began.
        let mut f = sent_at(now - ms(10));
        worker_clock(&mut f, Some(5_000.0), ms(100), now);
        assert_eq!(now - f.started, ms(100));
        // A shorter, absent or nonsensical worker clock changes nothing.
        for claim in [Some(5.0), None, Some(-3.0), Some(0.0)] {
            let mut f = sent_at(now - ms(10));
            worker_clock(&mut f, claim, ms(100), now);
            assert_eq!(now - f.started, ms(10), "{claim:?}");
            assert_eq!(f.started_wall, wall, "{claim:?}");
        }
    }
}
