//! What happens when a worker answers: the attempt is judged, recorded, retried or finished.

use super::*;

impl Engine<'_> {
    pub(super) fn on_result(&mut self, id: u64, res: ResultMsg, now: Instant) {
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
            self.protocol_error(id, e.to_string(), now);
            return;
        }
        let Some(done) = w.inflight.pop_front() else {
            return;
        };
        if let Some(next) = w.inflight.front_mut() {
            next.started = now;
            next.started_wall = SystemTime::now();
        }
        w.jobs_done += 1;
        w.settle(true, now);
        let (slot, who) = (w.slot, w.who);
        self.slots[slot].jobs_done += 1;
        self.start_failures = 0;
        let end = match (res.response, res.error) {
            (Some(r), _) => AttemptEnd::Response(r),
            (None, Some(e)) => AttemptEnd::Error(e),
            // outcome() above checked there is exactly one.
            (None, None) => return,
        };
        self.end_attempt(done, slot, who, end, now);
        if let Some(w) = self.workers.get_mut(&id) {
            if w.used_up() && w.retiring().is_none() {
                let (slot, who, done) = (w.slot, w.who, w.jobs_done);
                let line = format!(
                    "worker {slot} ({who}) has done {done} jobs (--max-jobs-per-worker): replacing it"
                );
                self.retire(id, Retire::MaxJobs, now);
                self.rep.report(Report::Log(Level::Info, &line));
            }
        }
        if let Some(w) = self.workers.get_mut(&id) {
            if (w.retiring().is_some() || self.phase != Phase::Running) && w.inflight.is_empty() {
                w.close_input(now);
            } else {
                self.feed_worker(id, now);
            }
        }
    }

    /// Records an attempt and acts on its judgement: done, retry later,
    /// failed, or stop the run.
    pub(super) fn end_attempt(
        &mut self,
        f: InFlight,
        slot: usize,
        who: Who,
        end: AttemptEnd,
        now: Instant,
    ) {
        let mut pending = f.pending;
        let attempt = u32::try_from(pending.history.len() + 1).unwrap_or(u32::MAX);
        let elapsed = now.saturating_duration_since(f.started);
        let d = decide(
            &end,
            attempt,
            &self.cfg.retry,
            &self.cfg.rules,
            SystemTime::now(),
        );
        if d.ok {
            self.summary.latency.record(elapsed);
        }
        self.adjust_pace(d.status, d.ok, now);
        let running = self.phase == Phase::Running;
        let retry_in = match d.next {
            Next::Retry(wait) if running => Some(wait),
            _ => None,
        };
        let record = AttemptRecord {
            attempt,
            slot,
            pid: who.process_id(),
            started_at: timestamp(f.started_wall),
            elapsed_ms: elapsed.as_secs_f64() * 1000.0,
            outcome: d.outcome,
            status: d.status,
            error: d.error.clone(),
            retry_in_ms: retry_in.map(|w| u64::try_from(w.as_millis()).unwrap_or(u64::MAX)),
        };
        if let Err(source) = self.out.log_attempt(&pending.job, &record) {
            self.fail(RunError::Output {
                dir: self.cfg.out_dir.clone(),
                source,
            });
        }
        self.rep.report(Report::Attempt {
            id: &pending.job.id,
            record: &record,
        });
        pending.history.push(record);

        match d.next {
            Next::StopRun(why) => {
                // The job is left without a result, so --resume runs it.
                let msg = format!("job {:?}: {why}", pending.job.id);
                self.stop_run(Interrupt::ApiStop, &msg, now);
                return;
            }
            // The run is stopping: a job that would be retried is left
            // without a result (not failed), so that --resume runs it again.
            Next::Retry(_) if !running => return,
            _ => {}
        }
        if let Some(wait) = retry_in {
            self.summary.retried += 1;
            if wait.is_zero() {
                self.ready.push_back(pending);
            } else {
                self.seq += 1;
                self.waiting.push(Reverse(Waiting {
                    at: now + wait,
                    seq: self.seq,
                    pending,
                }));
            }
            return;
        }
        let answer = Answer {
            ok: d.ok,
            status: d.status,
            response: match end {
                AttemptEnd::Response(r) => Some(r),
                _ => None,
            },
            error: d.error,
            history: pending.history,
        };
        let job = pending.job;
        self.answer_followers(&job, &answer);
        self.finish(job, answer, None);
    }

    /// Accounts for a finished job and queues its result file; `dedup_of`
    /// names the job whose call answered it (`--dedup`).
    pub(super) fn finish(&mut self, job: Box<Job>, answer: Answer, dedup_of: Option<String>) {
        if answer.ok {
            self.summary.progress.ok += 1;
        } else {
            self.summary.progress.failed += 1;
        }
        let path = self.out.result_path(&job.id);
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
                let reason = scrub(&reason, &job.secrets);
                self.summary.first_failures.push(FailureNote {
                    id: job.id.clone(),
                    reason,
                    path: path.clone(),
                });
            }
        }
        self.rep.report(Report::JobDone {
            id: &job.id,
            ok: answer.ok,
            path: &path,
        });
        self.out.submit(FinalResult {
            job,
            ok: answer.ok,
            response: answer.response,
            error: answer.error,
            history: answer.history,
            finished: SystemTime::now(),
            dedup_of,
        });
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
                let msg = format!(
                    "the API answered 429 Too Many Requests: slowing to {rate:.2} requests/s (--rate is the ceiling)"
                );
                self.rep.report(Report::Log(Level::Warn, &msg));
            }
        } else if ok {
            pacer.recover();
        }
    }
}
