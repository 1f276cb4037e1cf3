//! Poison jobs and broken workers, end to end: a job that kills every
//! worker it is given costs that job and never the run, while a worker
//! program that dies on every job still stops the run within a few starts
//! (docs/lifecycle.md §3, "Jobs that kill their workers"). Also: a worker
//! that dies while the supervisor writes to it is `crashed`, and
//! descendants that escape their worker's process group are named at the
//! end of the run.

#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashSet;

use common::*;
use serde_json::Value;

/// `n` geocoding jobs against the demo API; those at `poison` carry
/// `poison=1`, which the `poison` worker dies on.
fn jobs_with_poison(api: &DemoApi, n: usize, poison: &HashSet<usize>) -> String {
    (0..n)
        .map(|i| {
            let extra = if poison.contains(&i) {
                ",\"poison\":\"1\""
            } else {
                ""
            };
            format!(
                "{{\"id\":\"job-{i:03}\",\"url\":\"{}\",\"params\":{{\"address\":\"{i} Main St\"{extra}}}}}\n",
                api.geocode()
            )
        })
        .collect()
}

fn joblog(s: &Scratch) -> Vec<Value> {
    std::fs::read_to_string(s.results().join("joblog.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Runs 200 jobs with the poison ones at `poison`, once with `--retries 0`
/// and once with the default (2): every other job ends ok, each poison
/// job failed as `crashed`, naming the workers it killed (one per
/// attempt), and the run exits 1.
fn poison_jobs_cost_only_themselves(poison: &[usize]) {
    let api = DemoApi::start();
    let set: HashSet<usize> = poison.iter().copied().collect();
    for (retries, attempts) in [(Some("0"), 1), (None, 3)] {
        let s = Scratch::new();
        s.write("jobs.jsonl", &jobs_with_poison(&api, 200, &set));
        let mut cmd = s.supervisor();
        cmd.args(["-w", "4", "--worker-cmd", &py_worker("poison")]);
        if let Some(r) = retries {
            cmd.args(["--retries", r]);
        }
        let (code, stderr) = run_supervisor(cmd.arg("jobs.jsonl"));
        assert_eq!(
            code,
            Some(1),
            "{} poison jobs, --retries {retries:?}: {stderr}",
            poison.len()
        );
        assert!(!stderr.contains("workers keep"), "{stderr}");
        assert_eq!(s.result_ids().len(), 200, "{stderr}");
        for i in 0..200 {
            let r = s.result(&format!("job-{i:03}"));
            if set.contains(&i) {
                assert_eq!(r["ok"], false, "{r}");
                assert_eq!(r["attempts"], attempts, "{r}");
                assert_eq!(r["error"]["kind"], "crashed", "{r}");
                let killed = if attempts == 1 {
                    "this job has killed 1 worker".to_string()
                } else {
                    format!("this job has killed {attempts} workers")
                };
                let msg = r["error"]["message"].as_str().unwrap();
                assert!(msg.contains(&killed), "{msg}");
            } else {
                assert_eq!(r["ok"], true, "{r}\n{stderr}");
            }
        }
        assert_all_gone(&worker_pids(&stderr), CEILING);
    }
}

#[test]
fn five_poison_jobs_at_the_top_cost_only_themselves() {
    poison_jobs_cost_only_themselves(&[0, 1, 2, 3, 4]);
}

#[test]
fn twenty_poison_jobs_at_the_top_cost_only_themselves() {
    poison_jobs_cost_only_themselves(&(0..20).collect::<Vec<_>>());
}

#[test]
fn five_poison_jobs_spread_cost_only_themselves() {
    poison_jobs_cost_only_themselves(&[3, 50, 51, 120, 177]);
}

#[test]
fn twenty_poison_jobs_spread_cost_only_themselves() {
    // Every tenth job, from the first on, and a run of three.
    let mut p: Vec<usize> = (0..17).map(|i| i * 11).collect();
    p.extend([100, 101, 102]);
    poison_jobs_cost_only_themselves(&p);
}

/// The most workers that die before a run with `workers` workers gives up
/// on a worker program that dies on every job, as docs/lifecycle.md says:
/// one on each of the 5 jobs in a row, one on each job the other workers
/// held when the 5th died (at most `workers` - 1), and one on the probe.
fn most_deaths(workers: usize) -> usize {
    5 + (workers - 1) + 1
}

/// The most worker starts: the first `workers`, and a replacement for each
/// death but the probe's.
fn most_starts(workers: usize) -> usize {
    workers + most_deaths(workers) - 1
}

#[test]
fn a_worker_that_dies_on_every_job_stops_the_run_after_a_few_starts() {
    let api = DemoApi::start();
    for retries in ["0", "2"] {
        let s = Scratch::new();
        s.write("jobs.jsonl", &jobs_with_poison(&api, 5000, &HashSet::new()));
        let (code, stderr) = run_supervisor(s.supervisor().args([
            "-w",
            "3",
            "--retries",
            retries,
            "--worker-cmd",
            &py_worker("broken-import"),
            "jobs.jsonl",
        ]));
        assert_eq!(code, Some(2), "{stderr}");
        let starts = worker_pids(&stderr).len();
        assert!(
            starts <= most_starts(3),
            "{starts} worker starts, more than {}:\n{stderr}",
            most_starts(3)
        );
        let last = stderr
            .lines()
            .rev()
            .find(|l| l.starts_with("supervisor: error: workers keep dying"))
            .unwrap_or_else(|| panic!("no error line:\n{stderr}"));
        assert!(last.contains("py_worker.py broken-import"), "{last}");
        assert!(
            stderr.contains("ModuleNotFoundError: No module named 'callpool_no_such_module'"),
            "{stderr}"
        );
        // One attempt per death, and nothing else ran.
        assert!(joblog(&s).len() <= most_deaths(3), "{stderr}");
        assert_all_gone(&worker_pids(&stderr), CEILING);
    }
}

#[test]
fn a_worker_that_dies_while_the_supervisor_writes_to_it_is_crashed() {
    // The first worker to get a job closes its stdin, answers that job and
    // exits a moment later, holding the job prefetched behind it: the
    // supervisor's next write to it meets a broken pipe.
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &jobs_with_poison(&api, 20, &HashSet::new()));
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "1",
        "--worker-cmd",
        &py_worker("epipe"),
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    let log = joblog(&s);
    let outcomes: Vec<&str> = log.iter().map(|l| l["outcome"].as_str().unwrap()).collect();
    assert!(
        !outcomes.contains(&"protocol_error"),
        "{outcomes:?}\n{stderr}"
    );
    // It held the job prefetched behind the one it answered, unless the
    // job source had not read that far ahead when it said ready.
    assert!(
        outcomes.iter().filter(|o| **o == "crashed").count() <= 1,
        "{outcomes:?}\n{stderr}"
    );
    assert!(!stderr.contains("Broken pipe"), "{stderr}");
    assert_eq!(s.result_ids().len(), 20);
}

#[test]
fn a_grandchild_that_escapes_its_process_group_is_named_at_the_end() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &jobs_with_poison(&api, 6, &HashSet::new()));
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "2",
        "--worker-cmd",
        &py_worker("setsid-child"),
        "jobs.jsonl",
    ]));
    let escaped: i32 = stderr
        .lines()
        .find_map(|l| l.split("escaped child pid ").nth(1))
        .and_then(|p| p.trim().parse().ok())
        .unwrap_or_else(|| panic!("no escaped child:\n{stderr}"));
    // The test's own cleanup: the supervisor names it, and leaves it be.
    let still_there = std::fs::metadata(format!("/proc/{escaped}")).is_ok();
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(escaped),
        nix::sys::signal::Signal::SIGKILL,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(still_there, "the escaped child is gone already:\n{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.contains("escaped their worker's process group"))
        .unwrap_or_else(|| panic!("no warning about it:\n{stderr}"));
    assert!(line.contains("1 process"), "{line}");
    assert!(line.contains(&format!("pid {escaped}")), "{line}");
}

#[test]
fn poison_jobs_at_the_end_of_a_paced_list_get_their_retries() {
    // Held until another job answers, and none is left to: the end of the
    // list must release them. The simulator found a run that waited for
    // ever here (seed 20890: idle workers held back by --rate never asked
    // the source again); on real processes that timing is rare, so this
    // checks the outcome end to end, and the simulator's named test the
    // stall itself.
    let api = DemoApi::start();
    let s = Scratch::new();
    let poison: HashSet<usize> = [4, 5].into();
    s.write("jobs.jsonl", &jobs_with_poison(&api, 6, &poison));
    let mut cmd = s.supervisor();
    // A replacement is ready before the pace lets it have a job.
    cmd.args(["-w", "1", "--rate", "2/s", "--retries", "1"]);
    cmd.args(["--worker-cmd", &py_worker("poison"), "jobs.jsonl"]);
    let (code, stderr) = run_supervisor(&mut cmd);
    assert_eq!(code, Some(1), "{stderr}");
    for i in 0..6 {
        let r = s.result(&format!("job-{i:03}"));
        assert_eq!(r["ok"], !poison.contains(&i), "{r}");
    }
}
