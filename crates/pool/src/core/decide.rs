//! What one attempt's end means for its job: done, failed, retried after a
//! wait, or the whole run to stop. A pure function of the attempt and the
//! run's rules, kept apart from the loop so it can be read and tested alone.

use std::time::{Duration, SystemTime};

use callpool_protocol::{ErrorKind, HttpResponse, JobError};
use serde_json::value::RawValue;

use crate::records::Outcome;

use crate::core::retry::{RetryPolicy, is_success, retry_after};
use crate::core::rules::{BodyRules, Verdict};

/// How one attempt ended.
pub(crate) enum AttemptEnd {
    /// The worker reported an answer.
    Response(HttpResponse),
    /// The worker returned the value of a job that is not an HTTP call
    /// (`args`): the job is done. `--retry-if` and the like judge HTTP
    /// answers only; such a worker says "try again" with an error.
    Value(Box<RawValue>),
    /// The worker reported an error.
    Error(JobError),
    /// The worker did not survive the attempt (killed at the deadline,
    /// crashed, broke the protocol). `killed_worker`: it died by itself
    /// while running the job, which the job is suspected of.
    Lost {
        outcome: Outcome,
        error: JobError,
        killed_worker: bool,
    },
}

/// What happens next to the job.
#[derive(Debug, PartialEq)]
pub(crate) enum Next {
    /// Its result is final.
    Done,
    /// Try again after this wait (zero: at once, on another worker).
    Retry(Duration),
    /// The answer says the whole run must stop (`--stop-if`, the rule
    /// given); the job is left without a result, for `--resume`.
    StopRun(String),
}

/// The judgement of one attempt.
#[derive(Debug)]
pub(crate) struct Decision {
    /// The job succeeded.
    pub ok: bool,
    /// The attempt's outcome as records name it.
    pub outcome: Outcome,
    /// The HTTP status, if there was an answer.
    pub status: Option<u16>,
    /// Why the attempt is not ok.
    pub error: Option<JobError>,
    /// What happens next.
    pub next: Next,
}

fn err(kind: ErrorKind, message: String) -> Option<JobError> {
    Some(kind.job_error(message))
}

/// Judges attempt number `attempt` (1-based).
pub(crate) fn decide(
    end: &AttemptEnd,
    attempt: u32,
    policy: &RetryPolicy,
    rules: &BodyRules,
    now: SystemTime,
    jitter: f64,
) -> Decision {
    let attempts_left = attempt < policy.max_attempts();
    let backoff = || Next::Retry(policy.backoff(attempt + 1, jitter));
    match end {
        AttemptEnd::Lost { outcome, error, .. } => Decision {
            ok: false,
            outcome: *outcome,
            status: None,
            error: Some(error.clone()),
            next: if attempts_left {
                Next::Retry(Duration::ZERO)
            } else {
                Next::Done
            },
        },
        AttemptEnd::Error(e) => Decision {
            ok: false,
            outcome: Outcome::Error,
            status: None,
            error: Some(e.clone()),
            // The worker's own `retry` wins over the kind's default.
            next: if attempts_left && e.retry.unwrap_or_else(|| policy.retries_error(&e.kind)) {
                backoff()
            } else {
                Next::Done
            },
        },
        AttemptEnd::Value(_) => Decision {
            ok: true,
            outcome: Outcome::Ok,
            status: None,
            error: None,
            next: Next::Done,
        },
        AttemptEnd::Response(r) => {
            let status = Some(r.status);
            let (outcome, error, retryable) = match rules.judge(r) {
                Verdict::Stop(rule) => {
                    let msg = format!("the answer matched --stop-if {rule}");
                    return Decision {
                        ok: false,
                        outcome: Outcome::Stopped,
                        status,
                        error: err(ErrorKind::Stopped, msg),
                        next: Next::StopRun(rule.to_string()),
                    };
                }
                Verdict::Fail(rule) => (
                    Outcome::Rejected,
                    err(
                        ErrorKind::Rejected,
                        format!("the answer matched --fail-if {rule}"),
                    ),
                    false,
                ),
                Verdict::Retry(rule) => (
                    Outcome::RetryLater,
                    err(
                        ErrorKind::RetryLater,
                        format!("the answer matched --retry-if {rule}"),
                    ),
                    true,
                ),
                Verdict::Pass if is_success(r) => {
                    return Decision {
                        ok: true,
                        outcome: Outcome::Ok,
                        status,
                        error: None,
                        next: Next::Done,
                    };
                }
                Verdict::Pass => (
                    Outcome::HttpError,
                    err(ErrorKind::HttpStatus, format!("HTTP status {}", r.status)),
                    policy.retries_status(r.status),
                ),
            };
            let mut d = Decision {
                ok: false,
                outcome,
                status,
                error,
                next: Next::Done,
            };
            if retryable && attempts_left {
                match retry_after(r, now) {
                    Some(wait) if wait > policy.max_retry_after => {
                        if let Some(e) = d.error.as_mut() {
                            e.message.push_str(&format!(
                                "; the API asked to wait {} before retrying (Retry-After), more than --max-retry-after {}",
                                humantime::format_duration(wait),
                                humantime::format_duration(policy.max_retry_after)
                            ));
                        }
                    }
                    Some(wait) => d.next = Next::Retry(wait),
                    None => d.next = backoff(),
                }
            }
            d
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::rules::BodyRule;
    use callpool_protocol::BodyKind;
    use serde_json::value::RawValue;

    fn resp(status: u16, retry_after: Option<&str>, body: &str) -> HttpResponse {
        HttpResponse {
            status,
            headers: retry_after
                .map(|v| [("retry-after".to_string(), v.to_string())].into())
                .unwrap_or_default(),
            body_kind: BodyKind::Json,
            body: RawValue::from_string(body.into()).expect("raw"),
        }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy {
            max_retry_after: Duration::from_secs(120),
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn retry_after_is_obeyed_and_capped() {
        let now = SystemTime::now();
        let r = resp(503, Some("3"), "{}");
        let d = decide(
            &AttemptEnd::Response(r),
            1,
            &policy(),
            &BodyRules::default(),
            now,
            0.5,
        );
        assert_eq!(d.next, Next::Retry(Duration::from_secs(3)));
        assert_eq!(d.outcome, Outcome::HttpError);
        let r = resp(503, Some("600"), "{}");
        let d = decide(
            &AttemptEnd::Response(r),
            1,
            &policy(),
            &BodyRules::default(),
            now,
            0.5,
        );
        assert_eq!(d.next, Next::Done);
        let msg = d.error.expect("error").message;
        assert!(msg.contains("more than --max-retry-after 2m"), "{msg}");
        // No attempts left: done whatever the header says.
        let r = resp(503, Some("1"), "{}");
        let d = decide(
            &AttemptEnd::Response(r),
            3,
            &policy(),
            &BodyRules::default(),
            now,
            0.5,
        );
        assert_eq!(d.next, Next::Done);
    }

    #[test]
    fn body_rules_turn_200_into_retry_fail_or_stop() {
        let rules = BodyRules {
            retry_if: vec![BodyRule::parse("/status=OVER_QUERY_LIMIT").expect("rule")],
            fail_if: vec![BodyRule::parse("/status=REQUEST_DENIED").expect("rule")],
            stop_if: vec![BodyRule::parse("/status=OVER_DAILY_LIMIT").expect("rule")],
        };
        let now = SystemTime::now();
        let judge = |body: &str| {
            let r = resp(200, None, body);
            decide(&AttemptEnd::Response(r), 1, &policy(), &rules, now, 0.5)
        };
        let d = judge(r#"{"status":"OVER_QUERY_LIMIT"}"#);
        assert!(matches!(d.next, Next::Retry(_)) && !d.ok && d.outcome == Outcome::RetryLater);
        let d = judge(r#"{"status":"REQUEST_DENIED"}"#);
        assert_eq!(
            (d.ok, d.outcome, d.next),
            (false, Outcome::Rejected, Next::Done)
        );
        assert_eq!(d.error.expect("error").kind, "rejected");
        let d = judge(r#"{"status":"OVER_DAILY_LIMIT"}"#);
        assert!(matches!(d.next, Next::StopRun(_)));
        let d = judge(r#"{"status":"OK"}"#);
        assert!(d.ok && d.next == Next::Done);
    }

    #[test]
    fn errors_and_lost_attempts() {
        let now = SystemTime::now();
        let e = ErrorKind::from("connect".to_string()).job_error("refused");
        let d = decide(
            &AttemptEnd::Error(e),
            1,
            &policy(),
            &BodyRules::default(),
            now,
            0.5,
        );
        assert!(matches!(d.next, Next::Retry(w) if w <= Duration::from_millis(500)));
        let e = ErrorKind::from("body_too_large".to_string()).job_error("big");
        let d = decide(
            &AttemptEnd::Error(e),
            1,
            &policy(),
            &BodyRules::default(),
            now,
            0.5,
        );
        assert_eq!(d.next, Next::Done);
        // The worker's `retry` wins over the kind.
        let mut e = ErrorKind::from("exception").job_error("ValueError: x");
        let judge = |e: &JobError| {
            decide(
                &AttemptEnd::Error(e.clone()),
                1,
                &policy(),
                &BodyRules::default(),
                now,
                0.5,
            )
            .next
        };
        assert_eq!(judge(&e), Next::Done);
        e.retry = Some(true);
        assert!(matches!(judge(&e), Next::Retry(_)));
        let mut e = ErrorKind::Timeout.job_error("slow");
        e.retry = Some(false);
        assert_eq!(judge(&e), Next::Done);
        let v = AttemptEnd::Value(RawValue::from_string("null".into()).expect("raw"));
        let d = decide(&v, 1, &policy(), &BodyRules::default(), now, 0.5);
        assert!(d.ok && d.next == Next::Done && d.status.is_none());
        let lost = AttemptEnd::Lost {
            outcome: Outcome::Crashed,
            error: ErrorKind::Crashed.job_error("x"),
            killed_worker: true,
        };
        assert_eq!(
            decide(&lost, 2, &policy(), &BodyRules::default(), now, 0.5).next,
            Next::Retry(Duration::ZERO)
        );
        assert_eq!(
            decide(&lost, 3, &policy(), &BodyRules::default(), now, 0.5).next,
            Next::Done
        );
    }
}
