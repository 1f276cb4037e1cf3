//! The words of the engine's log lines: every event the pool reports as
//! data ([`LogEvent`]) becomes the sentence a person reads here, and only
//! here. docs/protocol.md and docs/formats.md quote many of these lines,
//! and tests/docs.rs checks that each quote is still a format string below:
//! change a sentence, change the documents.

use std::time::Duration;

use callpool_pool::Who;
use callpool_pool::events::{
    EndCause, Exit, JobFate, LogEvent, PauseWhy, RecycleWhy, Scale, Stop, WorkerEnd, megabytes,
};
use callpool_pool::folder::timestamp;

/// The log line for an event, without the `supervisor: ` in front.
pub fn say(e: &LogEvent) -> String {
    match e {
        LogEvent::WorkerEnded(end) => worker_end(end),
        LogEvent::JobStuck {
            slot,
            who,
            job,
            ran,
        } => format!(
            "worker {slot} ({who}) is stuck: job {job:?} has run {:.1}s, past its deadline; {}",
            ran.as_secs_f64(),
            stopping(*who)
        ),
        LogEvent::Recycled { slot, who, why } => match why {
            RecycleWhy::MaxJobs { done } => format!(
                "worker {slot} ({who}) has done {done} jobs (--max-jobs-per-worker): replacing it"
            ),
            RecycleWhy::Memory { rss, max } => format!(
                "worker {slot} ({who}) uses {} of memory, over --max-worker-rss {}: replacing it after its current job",
                megabytes(*rss),
                megabytes(*max)
            ),
        },
        LogEvent::Scaled(s) => scaled(*s),
        LogEvent::Stopping(s) => stopping_run(s),
        LogEvent::BudgetPause {
            until,
            wait,
            because,
            capped,
        } => format!(
            "pausing every worker until {} ({} from now): {}{}",
            timestamp(*until),
            humantime::format_duration(whole_ms(*wait)),
            pause_why(*because),
            capped.map_or_else(String::new, |cut| format!(
                "; the server's reset is further away, and the pause is cut to {}",
                humantime::format_duration(cut)
            ))
        ),
        LogEvent::SlowedDown { rate } => format!(
            "the API answered 429 Too Many Requests: slowing to {rate:.2} requests/s (--rate is the ceiling)"
        ),
        LogEvent::HostLoggedIn {
            host,
            login,
            logins,
        } => format!(
            "host {host}: logged in (connection {} of {logins})",
            login + 1
        ),
        LogEvent::LoginRetry { host, why, wait } => {
            format!("host {host}: {why}; trying again in {wait:?}")
        }
        LogEvent::HostDown { host, why } => {
            format!("host {host} is down, its jobs go to the other hosts: {why}")
        }
        LogEvent::ManifestNotWritten { error } => {
            format!("{error}: export and --resume will need this run's options given again")
        }
        LogEvent::EscapedProcesses { pids } => escaped(pids),
    }
}

/// What made the run pause for the server's budget, as the log line, the
/// progress line and the run log (docs/formats.md) say it.
pub fn pause_why(why: PauseWhy) -> &'static str {
    match why {
        PauseWhy::RetryAfter => "Retry-After",
        PauseWhy::BudgetSpent => "the rate-limit budget is spent (Remaining: 0)",
    }
}

/// A duration cut to whole milliseconds, so that it reads `1m 5s 3ms`.
fn whole_ms(d: Duration) -> Duration {
    Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What stopping a worker did: a process is killed, a thread (which
/// cannot be) abandoned.
fn stopped(who: Who) -> &'static str {
    match who {
        Who::Process(_) | Who::Remote { .. } => "killed",
        Who::Thread(_) => "abandoned",
    }
}

/// What stopping a stuck worker does.
fn stopping(who: Who) -> &'static str {
    match who {
        Who::Process(_) => "sending SIGTERM",
        Who::Remote { .. } => {
            "ending its ssh session (the remote wrapper then kills its process group)"
        }
        Who::Thread(_) => {
            "abandoning the thread (a thread cannot be killed: it ends when its call returns, and its answer is dropped); starting another"
        }
    }
}

/// How a worker that died by itself ended.
fn exit(e: &Exit) -> String {
    let how = e
        .how
        .as_ref()
        .map_or_else(|| "an unknown status".to_string(), |h| h.describe());
    match e.out_of_memory_under {
        Some(limit) => format!(
            "{how}; it ran out of memory under --worker-memory-limit {}",
            megabytes(limit)
        ),
        None => how,
    }
}

/// `worker 0 (pid 12) died (exit status 1) while running job "a" (attempt
/// 1 of 3): it goes back to the queue; starting a replacement`.
fn worker_end(end: &WorkerEnd) -> String {
    let stopped = stopped(end.who);
    let mut line = format!("worker {} ({}) ", end.slot, end.who);
    line.push_str(&match &end.cause {
        EndCause::HostDown => "was stopped with its host".to_string(),
        EndCause::ConnectionLost => "lost its ssh connection (ssh exit status 255)".to_string(),
        EndCause::Deadline { job: None } => format!("was {stopped} at its deadline"),
        EndCause::Deadline {
            job: Some((id, timeout)),
        } => format!(
            "was {stopped} after job {id:?} ran past its {}s deadline",
            timeout.as_secs_f64()
        ),
        EndCause::NoReady { within } => format!("sent no `ready` within {within:?}"),
        EndCause::Protocol { what } => format!("broke the protocol (it {what}) and was {stopped}"),
        EndCause::NoExit { grace } => {
            format!("did not exit within {grace:?} of its stdin closing, so it was {stopped}")
        }
        EndCause::Died(e) => format!("died ({})", exit(e)),
        EndCause::DiedBetweenJobs(e) => format!("died between jobs ({})", exit(e)),
        EndCause::ExitedBeforeReady(e) => format!("exited before `ready` with {}", exit(e)),
        EndCause::Closed => "exited after its input was closed".to_string(),
        EndCause::Shutdown => format!("was {stopped} as the run stopped"),
    });
    if let Some(job) = &end.job {
        line.push_str(&match job.fate {
            JobFate::Requeued => format!(": job {:?} goes back to the queue, uncharged", job.id),
            fate => format!(
                " while running job {:?} (attempt {} of {}): {}",
                job.id,
                job.attempt,
                job.max,
                match fate {
                    JobFate::Requeued | JobFate::Retried => "it goes back to the queue",
                    JobFate::HeldForProof => {
                        "it goes back to the queue once another job has been answered"
                    }
                    JobFate::Finished => "no attempts left",
                    JobFate::LeftForResume => "the run is stopping, so it is left for --resume",
                }
            ),
        });
    }
    if end.replaced {
        line.push_str("; starting a replacement");
    }
    line
}

fn scaled(s: Scale) -> String {
    match s {
        Scale::More { now } => format!("SIGTTIN: one worker more, now {now}"),
        Scale::Fewer { now, slot } => {
            format!("SIGTTOU: one worker fewer, now {now} (worker {slot} stops after its job)")
        }
        Scale::FewerRefusedMinimum => "SIGTTOU ignored: one worker is the minimum".to_string(),
        Scale::FewerRefusedHostsDown => {
            "SIGTTOU ignored: the workers left would all be on hosts that are down".to_string()
        }
        Scale::RollingRestart { workers } => {
            format!("SIGHUP: replacing all {workers} workers, each after its current job")
        }
    }
}

fn stopping_run(s: &Stop) -> String {
    let (what, in_flight) = match s {
        Stop::Forced => return "interrupted again: killing every worker".to_string(),
        Stop::Interrupted { in_flight } => ("interrupted".to_string(), in_flight),
        Stop::StopIf {
            job,
            rule,
            in_flight,
        } => (
            format!("job {job:?}: the answer matched --stop-if {rule}"),
            in_flight,
        ),
    };
    format!(
        "{what}: sending no more jobs; waiting for the {in_flight} in flight (Ctrl-C again to kill them)"
    )
}

/// Processes that escaped their worker's process group.
fn escaped(pids: &[i32]) -> String {
    let (n, list) = match pids {
        [one] => ("1 process".to_string(), format!("pid {one}")),
        many => (
            format!("{} processes", many.len()),
            format!(
                "pids {}",
                many.iter()
                    .map(i32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
    };
    format!(
        "{n} started by workers escaped their worker's process group (setsid or setpgid) and still run, not killed: {list}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use callpool_pool::events::ExitHow;
    use callpool_pool::events::LostJob;
    use callpool_pool::options::MAX_PAUSE;

    fn died(fate: JobFate, replaced: bool) -> WorkerEnd {
        WorkerEnd {
            slot: 0,
            who: Who::Process(12),
            cause: EndCause::Died(Exit {
                how: Some(ExitHow::Code(1)),
                out_of_memory_under: None,
            }),
            job: Some(LostJob {
                id: "a".into(),
                attempt: 1,
                max: 3,
                fate,
                kills: Some(1),
            }),
            replaced,
            start_failure: false,
            jobs_done: 0,
        }
    }

    #[test]
    fn a_worker_end_says_what_became_of_its_job_and_its_slot() {
        assert_eq!(
            say(&LogEvent::WorkerEnded(died(JobFate::Retried, true))),
            "worker 0 (pid 12) died (exit status 1) while running job \"a\" (attempt 1 of 3): it goes back to the queue; starting a replacement"
        );
        assert_eq!(
            say(&LogEvent::WorkerEnded(died(JobFate::Finished, false))),
            "worker 0 (pid 12) died (exit status 1) while running job \"a\" (attempt 1 of 3): no attempts left"
        );
        let mut lost = died(JobFate::Requeued, true);
        lost.cause = EndCause::ConnectionLost;
        assert_eq!(
            say(&LogEvent::WorkerEnded(lost)),
            "worker 0 (pid 12) lost its ssh connection (ssh exit status 255): job \"a\" goes back to the queue, uncharged; starting a replacement"
        );
    }

    #[test]
    fn each_event_reads_as_it_did_when_the_engine_wrote_it() {
        let thread = Who::Thread(7);
        let cases = [
            (
                LogEvent::JobStuck {
                    slot: 1,
                    who: thread,
                    job: "slow".into(),
                    ran: Duration::from_millis(1250),
                },
                "worker 1 (thread 7) is stuck: job \"slow\" has run 1.2s, past its deadline; abandoning the thread (a thread cannot be killed: it ends when its call returns, and its answer is dropped); starting another",
            ),
            (
                LogEvent::Recycled {
                    slot: 0,
                    who: Who::Process(12),
                    why: RecycleWhy::MaxJobs { done: 5 },
                },
                "worker 0 (pid 12) has done 5 jobs (--max-jobs-per-worker): replacing it",
            ),
            (
                LogEvent::Scaled(Scale::Fewer { now: 2, slot: 2 }),
                "SIGTTOU: one worker fewer, now 2 (worker 2 stops after its job)",
            ),
            (
                LogEvent::Stopping(Stop::StopIf {
                    job: "a".into(),
                    rule: "/status=OVER".into(),
                    in_flight: 3,
                }),
                "job \"a\": the answer matched --stop-if /status=OVER: sending no more jobs; waiting for the 3 in flight (Ctrl-C again to kill them)",
            ),
            (
                LogEvent::Stopping(Stop::Forced),
                "interrupted again: killing every worker",
            ),
            (
                LogEvent::HostLoggedIn {
                    host: "h1",
                    login: 0,
                    logins: 2,
                },
                "host h1: logged in (connection 1 of 2)",
            ),
        ];
        for (event, line) in cases {
            assert_eq!(say(&event), line);
        }
        let mut end = died(JobFate::LeftForResume, false);
        end.who = thread;
        end.cause = EndCause::Deadline {
            job: Some(("a".into(), Duration::from_millis(300))),
        };
        assert_eq!(
            say(&LogEvent::WorkerEnded(end)),
            "worker 0 (thread 7) was abandoned after job \"a\" ran past its 0.3s deadline while running job \"a\" (attempt 1 of 3): the run is stopping, so it is left for --resume"
        );
    }

    #[test]
    fn the_escaped_warning_names_every_pid() {
        let one = escaped(&[7]);
        assert!(
            one.starts_with("1 process started") && one.ends_with(": pid 7"),
            "{one}"
        );
        let two = escaped(&[7, 9]);
        assert!(
            two.starts_with("2 processes") && two.ends_with(": pids 7, 9"),
            "{two}"
        );
    }

    #[test]
    fn a_pause_names_its_end_and_its_cut() {
        let line = say(&LogEvent::BudgetPause {
            until: std::time::UNIX_EPOCH,
            wait: Duration::from_micros(65_003_900),
            because: PauseWhy::RetryAfter,
            capped: Some(MAX_PAUSE),
        });
        assert!(line.contains("(1m 5s 3ms from now): Retry-After; the server's reset is further away, and the pause is cut to "), "{line}");
    }
}
