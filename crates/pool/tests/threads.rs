//! Thread workers through the pool crate's API, with work functions that
//! misbehave on purpose: one blocks past its deadline and answers late, one
//! panics. The engine must abandon the first, drop its late answer, and
//! treat the panic as a crash; the job is retried either way.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use callpool_pool::testing::report::{EndCause, Exit, JobFate, LogEvent, LostJob, WorkerEnd};
use callpool_pool::testing::who::ExitHow;
use callpool_pool::{
    Isolation, JobFn, PoolConfig, Report, Reporter, RequestDefaults, RetryPolicy, Signals, Summary,
    ThreadEnd, ThreadWork, Who, check_jobs, testing::table::JobsInput,
};
use callpool_protocol::{HttpResponse, JobRequest};
use crossbeam_channel::{Receiver, Sender, bounded};
use serde_json::Value;
use serde_json::value::RawValue;

/// Collects the events a person would read as log lines (the supervisor
/// writes their words).
#[derive(Default)]
struct Lines(Vec<LogEvent>);

impl Reporter for Lines {
    fn report(&mut self, report: Report<'_>) {
        if let Report::Event(e) = report {
            self.0.push(e.clone());
        }
    }
}

fn answer(text: &str) -> HttpResponse {
    HttpResponse {
        status: 200,
        headers: Default::default(),
        body_kind: callpool_protocol::BodyKind::Json,
        body: RawValue::from_string(format!("{{\"answer\":{text:?}}}")).expect("json"),
    }
}

/// Which job a request is for: the jobs carry it in their URL's `job`
/// parameter.
fn job_of(req: &JobRequest) -> String {
    let q = req.url.split_once("job=").map_or("", |(_, q)| q);
    q.split('&').next().unwrap_or("").to_string()
}

fn config(dir: &Path, work: ThreadWork, workers: usize) -> PoolConfig {
    PoolConfig {
        hosts: None,
        workers,
        isolation: Isolation::Threads(work),
        out_dir: dir.join("results"),
        kill_grace: Duration::from_secs(2),
        start_timeout: Duration::from_secs(30),
        retry: RetryPolicy {
            backoff_base: Duration::from_millis(1),
            ..RetryPolicy::default()
        },
        prefetch: 1,
        resume: false,
        max_start_failures: 5,
        manifest: None,
        rules: Default::default(),
        rate: None,
        dedup: false,
        recycle: Default::default(),
    }
}

fn run(dir: &Path, cfg: &PoolConfig, ids: &[&str], timeout: Duration) -> (Summary, Vec<LogEvent>) {
    let jobs: String = ids
        .iter()
        .map(|id| format!("{{\"id\":\"{id}\",\"url\":\"http://127.0.0.1:9/x?job={id}\"}}\n"))
        .collect();
    let path = dir.join("jobs.jsonl");
    std::fs::write(&path, jobs).expect("write jobs");
    let defaults = RequestDefaults {
        timeout,
        ..RequestDefaults::default()
    };
    let checked = check_jobs(
        path.to_str().expect("utf8 path"),
        &JobsInput::jsonl(),
        &defaults,
        &cfg.out_dir,
        Default::default(),
    )
    .expect("jobs");
    let mut lines = Lines::default();
    let signals = Signals::install().expect("signals");
    let summary = callpool_pool::run(cfg, &checked, &defaults, signals, &mut lines).expect("run");
    (summary, lines.0)
}

fn result(dir: &Path, id: &str) -> Value {
    let text = std::fs::read_to_string(dir.join("results").join(format!("{id}.json")))
        .expect("result file");
    serde_json::from_str(&text).expect("result json")
}

fn outcomes(r: &Value) -> Vec<String> {
    r["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|h| h["outcome"].as_str().unwrap_or("?").to_string())
        .collect()
}

/// Dropped with a thread's job function, that is when its thread ends.
struct OnDrop(Sender<()>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

#[test]
fn a_thread_past_its_deadline_is_abandoned_and_its_late_answer_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    // "slow" blocks on its first call until "gate" releases it; "gate" then
    // waits until that thread has ended, so its late answer reaches the
    // loop while the run still goes on.
    let (release_tx, release_rx): (Sender<()>, Receiver<()>) = bounded(1);
    let (ended_tx, ended_rx): (Sender<()>, Receiver<()>) = bounded(16);
    let calls: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let work = ThreadWork::new("test work", move |_slot| {
        let (release_rx, ended_rx) = (release_rx.clone(), ended_rx.clone());
        let (release_tx, calls) = (release_tx.clone(), calls.clone());
        let guard = OnDrop(ended_tx.clone());
        Ok(Box::new(move |req: &JobRequest| {
            let _keep = &guard;
            let job = job_of(req);
            let n = {
                let mut c = calls.lock().expect("lock");
                let n = c.entry(job.clone()).or_default();
                *n += 1;
                *n
            };
            match (job.as_str(), n) {
                ("slow", 1) => {
                    release_rx
                        .recv_timeout(Duration::from_secs(60))
                        .expect("released");
                    Ok(answer("late"))
                }
                ("gate", _) => {
                    release_tx.send(()).expect("release");
                    ended_rx
                        .recv_timeout(Duration::from_secs(60))
                        .expect("the abandoned thread ends");
                    Ok(answer("gate"))
                }
                _ => Ok(answer("fresh")),
            }
        }) as JobFn)
    });
    let cfg = config(dir.path(), work, 1);
    let (summary, lines) = run(
        dir.path(),
        &cfg,
        &["slow", "gate", "after"],
        Duration::from_millis(300),
    );

    assert_eq!(summary.progress.ok, 3, "{lines:#?}");
    assert_eq!(summary.abandoned, 1, "{lines:#?}");
    assert_eq!(summary.abandoned_running, 0, "it ended during the run");
    let slow = result(dir.path(), "slow");
    assert_eq!(slow["ok"], true, "{slow}");
    assert_eq!(outcomes(&slow), ["timeout", "ok"], "{slow}");
    assert_eq!(slow["response"]["body"]["answer"], "fresh", "{slow}");
    assert!(
        slow["history"][0]["error"]["message"].as_str().is_some_and(
            |m| m.contains("was abandoned after job \"slow\" ran past its 0.3s deadline")
        ),
        "{slow}"
    );
    assert!(
        lines.iter().any(|l| matches!(
            l,
            LogEvent::JobStuck { job, who: Who::Thread(_), .. } if job == "slow"
        )),
        "{lines:#?}"
    );
    // The late answer was never written anywhere.
    let joblog = std::fs::read_to_string(dir.path().join("results/joblog.jsonl")).expect("joblog");
    assert_eq!(joblog.lines().filter(|l| l.contains("\"slow\"")).count(), 2);
    for id in ["slow", "gate", "after"] {
        let text =
            std::fs::read_to_string(dir.path().join(format!("results/{id}.json"))).expect("result");
        assert!(!text.contains("late"), "{id}: {text}");
    }
}

#[test]
fn a_panic_in_a_thread_is_a_crash_the_job_is_retried_and_the_run_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let calls: Arc<Mutex<HashMap<String, u32>>> = Arc::default();
    let work = ThreadWork::new("test work", move |_slot| {
        let calls = calls.clone();
        Ok(Box::new(move |req: &JobRequest| {
            let job = job_of(req);
            let n = {
                let mut c = calls.lock().expect("lock");
                let n = c.entry(job.clone()).or_default();
                *n += 1;
                *n
            };
            if job == "boom" && n == 1 {
                panic!("injected panic on job boom");
            }
            Ok(answer("fine"))
        }) as JobFn)
    });
    let cfg = config(dir.path(), work, 2);
    let ids: Vec<String> = (0..20).map(|i| format!("j{i}")).collect();
    let mut all: Vec<&str> = ids.iter().map(String::as_str).collect();
    all.insert(7, "boom");
    let (summary, lines) = run(dir.path(), &cfg, &all, Duration::from_secs(30));

    assert_eq!(summary.progress.ok, 21, "{lines:#?}");
    assert_eq!(summary.progress.failed, 0);
    assert_eq!(summary.restarts.get("crashed"), Some(&1), "{lines:#?}");
    assert_eq!(summary.abandoned, 0);
    let boom = result(dir.path(), "boom");
    assert_eq!(outcomes(&boom), ["crashed", "ok"], "{boom}");
    let message = boom["history"][0]["error"]["message"]
        .as_str()
        .unwrap_or_default();
    assert!(
        message.contains("died (a panic: injected panic on job boom)"),
        "{boom}"
    );
    let panicked = ExitHow::Thread(ThreadEnd::Panicked("injected panic on job boom".into()));
    assert!(
        lines.iter().any(|l| matches!(
            l,
            LogEvent::WorkerEnded(WorkerEnd {
                cause: EndCause::Died(Exit { how: Some(how), .. }),
                job: Some(LostJob { id, attempt: 1, max: 3, fate: JobFate::Retried, .. }),
                replaced: true,
                ..
            }) if *how == panicked && id == "boom"
        )),
        "{lines:#?}"
    );
}
