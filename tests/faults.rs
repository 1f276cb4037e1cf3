//! End-to-end fault drills: workers killed, stopped, hung and crashing,
//! signals to the supervisor, and the supervisor itself killed.

mod common;

use std::collections::HashSet;
use std::thread;
use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

const LIMIT: Duration = Duration::from_secs(90);

/// One row of the SIGUSR1 status table: (slot, pid, state, job).
fn status_rows(table_text: &str) -> Vec<(String, i32, String, String)> {
    table_text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let pid = f.get(1)?.parse().ok()?;
            Some((
                f[0].to_string(),
                pid,
                f[2].to_string(),
                f.get(7).unwrap_or(&"").to_string(),
            ))
        })
        .collect()
}

/// Asks for the status table until some worker shows as busy; returns its
/// pid and the job it held then (it may have finished that one since: the
/// job a kill costs is read from the log, see [`job_lost_by`]).
fn wait_for_busy_worker(sup: &Running) -> (i32, String) {
    // Until the first worker starts, the supervisor may not have its signal
    // handlers yet, and SIGUSR1's default action would end it.
    wait_until(CEILING, "a worker to start", || {
        !sup.worker_pids().is_empty()
    });
    let mut found = None;
    wait_until(CEILING, "a busy worker in the status table", || {
        let before = sup.stderr().len();
        sup.signal(Signal::SIGUSR1);
        wait_until(CEILING, "a status table", || {
            sup.stderr()[before..].contains("jobs: ")
        });
        let text = sup.stderr()[before..].to_string();
        found = status_rows(&text)
            .into_iter()
            .find(|(_, _, state, job)| state == "busy" && !job.is_empty())
            .map(|(_, pid, _, job)| (pid, job));
        found.is_some()
    });
    found.expect("a busy worker")
}

/// Asks for the status table until a busy worker holds `queued` jobs
/// behind the one it runs (prefetch fills up only once the job source has
/// read ahead, shortly after the start); returns its pid.
fn wait_for_worker_with_queue(sup: &Running, queued: usize) -> i32 {
    wait_until(CEILING, "a worker to start", || {
        !sup.worker_pids().is_empty()
    });
    let marker = format!(" (+{queued} queued)");
    let mut found = None;
    wait_until(
        CEILING,
        "a worker with queued jobs in the status table",
        || {
            let before = sup.stderr().len();
            sup.signal(Signal::SIGUSR1);
            wait_until(CEILING, "a status table", || {
                sup.stderr()[before..].contains("jobs: ")
            });
            let text = sup.stderr()[before..].to_string();
            found = text
                .lines()
                .filter(|l| l.contains(" busy ") && l.ends_with(&marker))
                .find_map(|l| l.split_whitespace().nth(1)?.parse::<i32>().ok());
            found.is_some()
        },
    );
    found.expect("a worker with queued jobs")
}

/// The job that worker `pid` was running when the supervisor lost it, as
/// its log line says ("(pid P) died (...) while running job "X"" or "(pid
/// P) is stuck: job "X""), waiting for that line.
fn job_lost_by(sup: &Running, pid: i32) -> String {
    let died = format!("(pid {pid}) died (");
    let stuck = format!("(pid {pid}) is stuck: job \"");
    let mut job = None;
    wait_until(CEILING, "the log line of the lost worker", || {
        job = sup.stderr().lines().find_map(|l| {
            let rest = if l.contains(&died) {
                l.split(" while running job \"").nth(1)
            } else {
                l.split(&stuck).nth(1)
            }?;
            rest.split('"').next().map(str::to_owned)
        });
        job.is_some()
    });
    job.expect("a job")
}

fn kill(pid: i32, sig: Signal) {
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

#[test]
fn a_worker_killed_by_hand_mid_job_costs_one_attempt() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "jobs.jsonl",
        &geocode_jobs(&api, 24, ",\"delay_ms\":\"200\""),
    );
    let sup = Running::start(s.supervisor().args(["-w", "4", "jobs.jsonl"]));
    let (pid, _) = wait_for_busy_worker(&sup);
    kill(pid, Signal::SIGKILL);
    let job = job_lost_by(&sup, pid);
    let (code, stderr) = sup.wait(LIMIT);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("(pid {pid}) died (signal SIGKILL) while running job {job:?} (attempt 1 of 3): it goes back to the queue; starting a replacement")),
        "{stderr}"
    );
    assert_eq!(s.result_ids().len(), 24);
    let r = s.result(&job);
    assert_eq!(r["ok"], true);
    assert_eq!(r["attempts"], 2, "{r}");
    assert_eq!(r["history"][0]["pid"], pid);
    assert_eq!(r["history"][0]["outcome"], "crashed");
    assert_ne!(r["pid"], pid, "the retry ran on another worker");
    assert!(!alive(pid));
}

#[test]
fn a_stopped_worker_is_killed_at_the_deadline_and_its_job_retried() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "jobs.jsonl",
        &geocode_jobs(&api, 12, ",\"delay_ms\":\"150\""),
    );
    // The deadline is far above a job's 150 ms, so that only the stopped
    // worker passes it, even on a loaded machine.
    let sup = Running::start(s.supervisor().args([
        "-w",
        "3",
        "--timeout",
        "3s",
        "--kill-grace",
        "500ms",
        "jobs.jsonl",
    ]));
    let (pid, _) = wait_for_busy_worker(&sup);
    kill(pid, Signal::SIGSTOP);
    let job = job_lost_by(&sup, pid);
    let (code, stderr) = sup.wait(LIMIT);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("(pid {pid}) is stuck: job {job:?}")),
        "{stderr}"
    );
    let r = s.result(&job);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["attempts"], 2, "{r}");
    assert_eq!(r["history"][0]["outcome"], "timeout", "{r}");
    assert_eq!(r["history"][0]["pid"], pid);
    assert_all_gone(&[pid], CEILING);
}

#[test]
fn a_hanging_api_ends_as_a_timeout_within_the_deadlines() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "jobs.jsonl",
        &format!(
            "{{\"id\":\"hang\",\"url\":\"{}\",\"params\":{{\"address\":\"Paris\",\"hang\":1}}}}\n",
            api.geocode()
        ),
    );
    // The API never answers: only the deadlines can end this run (within
    // run_bounded's ceiling).
    let out = run_bounded(
        s.supervisor()
            .args(["-w", "1", "--timeout", "1s", "--retries", "1", "jobs.jsonl"]),
        LIMIT,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let r = s.result("hang");
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["attempts"], 2, "{r}");
    assert_eq!(r["error"]["kind"], "timeout", "{r}");
    // Each attempt ended at its deadline: the worker's own HTTP timeout
    // (an `error` of kind timeout) or the supervisor's kill (`timeout`).
    for h in r["history"].as_array().unwrap() {
        assert!(
            h["outcome"] == "timeout"
                || (h["outcome"] == "error" && h["error"]["kind"] == "timeout"),
            "{r}"
        );
    }
}

#[test]
fn ctrl_c_finishes_the_jobs_in_flight_and_resume_completes_the_rest() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let n = 300;
    s.write("jobs.jsonl", &geocode_jobs(&api, n, ",\"delay_ms\":\"30\""));
    let sup = Running::start(s.supervisor().args(["-w", "4", "jobs.jsonl"]));
    wait_until(LIMIT, "some results", || s.result_ids().len() >= 20);
    let pids = sup.worker_pids();
    sup.signal(Signal::SIGINT);
    let (code, stderr) = sup.wait(LIMIT);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains("not run; to finish them run:") && stderr.contains("--resume"),
        "{stderr}"
    );
    assert_all_gone(&pids, CEILING);
    assert!(s.stray_files().is_empty(), "{:?}", s.stray_files());
    let done = s.result_ids();
    assert!(done.len() < n, "the run stopped early");
    for id in &done {
        assert_eq!(
            s.result(id)["ok"],
            true,
            "{id} is complete: {}",
            s.result(id)
        );
    }

    let (code, stderr) = run_supervisor(s.supervisor().args(["-w", "4", "--resume", "jobs.jsonl"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("{} skipped", done.len())),
        "{stderr}"
    );
    assert_eq!(s.result_ids().len(), n);
}

#[test]
fn a_second_ctrl_c_kills_the_workers_at_once() {
    // Each job takes 10 minutes: a run that ends within the ceiling did not
    // wait for the jobs in flight, and none of them got a result or a
    // joblog line.
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "jobs.jsonl",
        &geocode_jobs(&api, 20, ",\"delay_ms\":\"600000\""),
    );
    let sup = Running::start(
        s.supervisor()
            .args(["-w", "4", "--timeout", "20m", "jobs.jsonl"]),
    );
    wait_for_busy_worker(&sup);
    let pids = sup.worker_pids();
    sup.signal(Signal::SIGINT);
    wait_until(CEILING, "the first interrupt to be seen", || {
        sup.stderr().contains("interrupted:")
    });
    sup.signal(Signal::SIGINT);
    let (code, stderr) = sup.wait(LIMIT);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains("interrupted again: killing every worker"),
        "{stderr}"
    );
    assert_all_gone(&pids, CEILING);
    assert!(s.result_ids().is_empty(), "{:?}", s.result_ids());
    let joblog = std::fs::read_to_string(s.results().join("joblog.jsonl")).unwrap_or_default();
    assert_eq!(joblog, "", "no attempt ended: the jobs were not run");
    assert!(s.stray_files().is_empty());
}

#[test]
fn workers_die_with_a_killed_supervisor_and_resume_completes() {
    let api = DemoApi::start();
    let s = Scratch::new();
    let n = 200;
    s.write("jobs.jsonl", &geocode_jobs(&api, n, ",\"delay_ms\":\"30\""));
    let sup = Running::start(s.supervisor().args(["-w", "4", "jobs.jsonl"]));
    wait_until(LIMIT, "some results", || s.result_ids().len() >= 10);
    let pids = sup.worker_pids();
    assert!(!pids.is_empty());
    sup.signal(Signal::SIGKILL);
    let (code, _) = sup.wait(LIMIT);
    assert_eq!(code, None, "killed by a signal");
    assert_all_gone(&pids, CEILING);

    let out = run_bounded(
        s.supervisor().args(["-w", "4", "--resume", "jobs.jsonl"]),
        LIMIT,
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.result_ids().len(), n);
    for id in s.result_ids() {
        assert_eq!(s.result(&id)["ok"], true);
    }
    assert!(s.stray_files().is_empty(), "{:?}", s.stray_files());
}

#[test]
fn a_worker_stuck_in_a_call_dies_with_a_killed_supervisor() {
    // The API never answers and the deadline is 10 minutes away: a worker
    // would wait in its call long past the ceiling, and never read its
    // closed stdin. Only its parent-death signal can end it.
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 4, ",\"hang\":\"1\""));
    let sup = Running::start(
        s.supervisor()
            .args(["-w", "2", "--timeout", "10m", "jobs.jsonl"]),
    );
    wait_for_busy_worker(&sup);
    let pids = sup.worker_pids();
    sup.signal(Signal::SIGKILL);
    let (code, _) = sup.wait(LIMIT);
    assert_eq!(code, None, "killed by a signal");
    assert_all_gone(&pids, CEILING);
}

#[test]
fn a_worker_command_that_always_fails_stops_the_run() {
    let s = Scratch::new();
    s.write("jobs.jsonl", "{\"url\":\"http://127.0.0.1:1/\"}\n");
    let (code, stderr) =
        run_supervisor(
            s.supervisor()
                .args(["-w", "2", "--worker-cmd", "false", "jobs.jsonl"]),
        );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("`false` failed 5 times in a row") && stderr.contains("exit status 1"),
        "{stderr}"
    );
}

#[test]
fn a_worker_that_crashes_on_its_first_job_stops_the_run() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 10, ""));
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "-w",
        "2",
        "--worker-cmd",
        &py_worker("crash-first"),
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("died on its first job with exit status 3"),
        "{stderr}"
    );
    assert!(
        stderr.contains("its last stderr lines:") && stderr.contains("crashing on job"),
        "{stderr}"
    );
    assert_all_gone(&worker_pids(&stderr), CEILING);
}

#[test]
fn ttin_ttou_hup_and_usr1_control_a_live_run() {
    // The run cannot end before the test stops it: 12,000 jobs of at least
    // 100 ms on at most 3 workers take 400 s or more, longer than every
    // wait below together (6 x CEILING).
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "jobs.jsonl",
        &geocode_jobs(&api, 12_000, ",\"delay_ms\":\"100\""),
    );
    let sup = Running::start(s.supervisor().args(["-w", "2", "jobs.jsonl"]));
    wait_until(CEILING, "two workers", || sup.worker_pids().len() == 2);

    let live = |sup: &Running| -> Vec<i32> {
        sup.worker_pids()
            .into_iter()
            .filter(|&p| alive(p))
            .collect()
    };
    sup.signal(Signal::SIGTTIN);
    wait_until(CEILING, "a third worker", || live(&sup).len() == 3);
    // Signals of one kind sent back to back may merge into one delivery, as
    // everywhere in Unix: wait for each to take effect.
    sup.signal(Signal::SIGTTOU);
    wait_until(CEILING, "two workers left", || live(&sup).len() == 2);
    sup.signal(Signal::SIGTTOU);
    wait_until(CEILING, "one worker left", || live(&sup).len() == 1);

    let before: HashSet<i32> = live(&sup).into_iter().collect();
    sup.signal(Signal::SIGHUP);
    wait_until(CEILING, "every worker replaced", || {
        let now = live(&sup);
        now.len() == 1 && now.iter().all(|p| !before.contains(p))
    });

    let mark = sup.stderr().len();
    sup.signal(Signal::SIGUSR1);
    wait_until(CEILING, "the status table", || {
        sup.stderr()[mark..].contains("jobs: ")
    });
    let table = sup.stderr()[mark..].to_string();
    assert!(
        table.contains("slot") && table.contains("pid") && table.contains("restarts"),
        "{table}"
    );
    let rows = status_rows(&table);
    assert!(
        rows.iter().any(|(_, pid, _, _)| live(&sup).contains(pid)),
        "{table}"
    );

    sup.signal(Signal::SIGTERM);
    let (code, stderr) = sup.wait(LIMIT);
    assert_eq!(code, Some(130), "{stderr}");
    assert!(
        stderr.contains("workers restarted: 1 rolling restart"),
        "{stderr}"
    );
    let ids = s.result_ids();
    assert!(!ids.is_empty());
    for id in &ids {
        assert_eq!(
            s.result(id)["attempts"],
            1,
            "no job was repeated: {}",
            s.result(id)
        );
    }
}

#[test]
fn chaos_random_worker_kills_lose_no_result() {
    // The drill kills a random live worker, waits for a fresh one, and
    // again, KILLS times; then Ctrl-C stops the run and --resume finishes
    // it. The run cannot end before the drill: 2000 jobs of at least 20 ms
    // on 4 workers take 10 s or more, the drill a fraction of that.
    const KILLS: usize = 10;
    let api = DemoApi::start();
    let s = Scratch::new();
    let n = 2000;
    s.write("jobs.jsonl", &geocode_jobs(&api, n, ",\"delay_ms\":\"20\""));
    let sup = Running::start(
        s.supervisor()
            .args(["-w", "4", "--retries", "6", "jobs.jsonl"]),
    );
    let mut killed: HashSet<i32> = HashSet::new();
    let mut rng = 12345u64;
    while killed.len() < KILLS {
        // Live workers are the supervisor's children named *worker; one not
        // killed yet is a replacement (or one of the first four).
        let mut pids = Vec::new();
        wait_until(CEILING, "a live worker to kill", || {
            pids = workers_of(sup.pid())
                .into_iter()
                .filter(|p| !killed.contains(p))
                .collect();
            !pids.is_empty()
        });
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let pid = pids[(rng >> 33) as usize % pids.len()];
        kill(pid, Signal::SIGKILL);
        killed.insert(pid);
        // Let the workers run a few jobs between kills.
        thread::sleep(Duration::from_millis(30));
    }
    sup.signal(Signal::SIGINT);
    let (code, stderr) = sup.wait(LIMIT);
    assert_eq!(code, Some(130), "stopped by the test: {stderr}");
    let first = s.result_ids();
    assert!(first.len() < n, "the run was stopped before its end");
    for id in &first {
        assert_eq!(s.result(id)["ok"], true, "{id}: {}", s.result(id));
    }
    let killed: Vec<i32> = killed.into_iter().collect();
    assert_all_gone(&killed, CEILING);
    assert_all_gone(&worker_pids(&stderr), CEILING);

    let (code, stderr) =
        run_supervisor(s.supervisor().args(["-w", "16", "--resume", "jobs.jsonl"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("{} skipped", first.len())),
        "{stderr}"
    );
    let ids = s.result_ids();
    assert_eq!(ids.len(), n, "exactly one result per job");
    for id in &ids {
        assert_eq!(s.result(id)["ok"], true, "{id}");
    }
    assert!(s.stray_files().is_empty());
}

/// Pids of the live http-worker processes whose parent is `parent` (tests
/// run in parallel: only this test's supervisor's workers may be killed).
fn workers_of(parent: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some(rest) = stat.rsplit(')').next() else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let (Some(state), Some(ppid)) = (fields.next(), fields.next()) else {
            continue;
        };
        if state != "Z" && ppid == parent.to_string() && stat.contains("(http-worker)") {
            out.push(pid);
        }
    }
    out
}

#[test]
fn jobs_queued_behind_a_killed_worker_go_back_uncharged() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "jobs.jsonl",
        &geocode_jobs(&api, 30, ",\"delay_ms\":\"200\""),
    );
    let sup = Running::start(
        s.supervisor()
            .args(["-w", "2", "--prefetch", "3", "jobs.jsonl"]),
    );
    // The table shows the jobs queued behind the running one.
    let pid = wait_for_worker_with_queue(&sup, 2);
    kill(pid, Signal::SIGKILL);
    let job = job_lost_by(&sup, pid);
    let (code, stderr) = sup.wait(LIMIT);
    assert_eq!(code, Some(0), "{stderr}");
    let ids = s.result_ids();
    assert_eq!(ids.len(), 30);
    let charged: Vec<&String> = ids
        .iter()
        .filter(|id| s.result(id)["attempts"] != 1)
        .collect();
    assert_eq!(charged, vec![&job], "only the running job pays an attempt");
    assert_eq!(s.result(&job)["history"][0]["pid"], pid);
}

#[test]
fn near_the_end_no_job_waits_behind_a_slow_one() {
    // Fewer jobs than workers x prefetch: each worker holds one job, so the
    // two fast jobs run on the free worker instead of queueing behind the
    // slow one on the first worker to be ready. The slow one never answers
    // (and its deadline is far away): a fast job queued behind it could
    // never finish.
    let api = DemoApi::start();
    let s = Scratch::new();
    let line = |id: &str, knob: &str| {
        format!(
            "{{\"id\":\"{id}\",\"url\":\"{}\",\"params\":{{\"address\":\"x\",{knob}}}}}\n",
            api.geocode()
        )
    };
    s.write(
        "jobs.jsonl",
        &[
            line("slow", "\"hang\":\"1\""),
            line("fast1", "\"delay_ms\":\"0\""),
            line("fast2", "\"delay_ms\":\"0\""),
        ]
        .concat(),
    );
    let sup = Running::start(
        s.supervisor()
            .args(["-w", "2", "--timeout", "10m", "jobs.jsonl"]),
    );
    wait_until(
        CEILING,
        "both fast jobs done while the slow one hangs",
        || {
            let ids = s.result_ids();
            ids.contains(&"fast1".to_string()) && ids.contains(&"fast2".to_string())
        },
    );
    assert_eq!(s.result("fast1")["ok"], true);
    assert_eq!(s.result("fast2")["ok"], true);
    assert!(!s.result_ids().contains(&"slow".to_string()));
    sup.signal(Signal::SIGINT);
    wait_until(CEILING, "the first interrupt to be seen", || {
        sup.stderr().contains("interrupted:")
    });
    sup.signal(Signal::SIGINT);
    let (code, stderr) = sup.wait(LIMIT);
    assert_eq!(code, Some(130), "{stderr}");
}
