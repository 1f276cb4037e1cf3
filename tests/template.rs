//! The bundled http-worker is started from a template (issue 23, item 3):
//! one http-worker that has loaded itself and makes the workers as copies
//! of itself. Each copy must still be what a worker started directly is
//! (docs/lifecycle.md): the supervisor's child, the leader of its own
//! process group, tied to the supervisor by its parent-death signal, under
//! `--worker-memory-limit`; and nothing may be left when the run ends.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::*;
use nix::sys::signal::Signal;

const LIMIT: Duration = Duration::from_secs(90);

/// (pid, pgid) of each live (not zombie) child of `parent`, from /proc.
fn children(parent: i32) -> Vec<(i32, i32)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if f.len() > 2 && f[1] == parent.to_string() && f[0] != "Z" {
            out.push((pid, f[2].parse().unwrap()));
        }
    }
    out.sort_unstable();
    out
}

/// The "Max address space" soft limit of a process, as /proc says it.
fn address_space_limit(pid: i32) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find(|l| l.starts_with("Max address space"))
        .unwrap();
    line.split_whitespace().nth(3).unwrap().to_owned()
}

#[test]
fn workers_are_copies_with_their_own_group_limit_and_death_signal() {
    let api = DemoApi::start();
    let s = Scratch::new();
    // Calls that never end: the workers are busy until they are killed.
    s.write("jobs.jsonl", &geocode_jobs(&api, 6, ",\"hang\":\"1\""));
    let limit: u64 = 1 << 30;
    let sup = Running::start(s.supervisor().args([
        "-w",
        "3",
        "--timeout",
        "10m",
        "--worker-memory-limit",
        &limit.to_string(),
        "jobs.jsonl",
    ]));
    wait_until(LIMIT, "3 workers started", || sup.worker_pids().len() >= 3);
    let workers = sup.worker_pids();
    // The template is the supervisor's other child.
    let mut kids = Vec::new();
    wait_until(LIMIT, "the template and 3 workers", || {
        kids = children(sup.pid());
        kids.len() == 4
    });
    let template: Vec<i32> = kids
        .iter()
        .map(|&(p, _)| p)
        .filter(|p| !workers.contains(p))
        .collect();
    assert_eq!(template.len(), 1, "children {kids:?}, workers {workers:?}");
    let exe = |pid: i32| std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    for &(pid, pgid) in &kids {
        assert_eq!(pid, pgid, "{pid} leads its own process group: {kids:?}");
        assert_eq!(exe(pid), exe(template[0]), "{pid} is an http-worker");
    }
    for &w in &workers {
        assert_eq!(address_space_limit(w), limit.to_string(), "worker {w}");
    }
    // The template itself runs no job and has no limit of its own.
    assert_eq!(address_space_limit(template[0]), "unlimited");

    // SIGKILL leaves the supervisor no time to clean up: only the
    // parent-death signals end the workers and the template.
    sup.signal(Signal::SIGKILL);
    let (code, _) = sup.wait(LIMIT);
    assert_eq!(code, None, "killed by a signal");
    let mut all = workers.clone();
    all.extend(&template);
    assert_all_gone(&all, CEILING);
}

#[test]
fn a_run_ends_with_its_template_gone_and_without_it_workers_are_execd() {
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write(
        "jobs.jsonl",
        &geocode_jobs(&api, 30, ",\"delay_ms\":\"20\""),
    );
    for (off, expect_children) in [(false, 3), (true, 2)] {
        let mut cmd = s.supervisor();
        cmd.args(["-w", "2", "--overwrite", "jobs.jsonl"]);
        if off {
            cmd.env("CALLPOOL_NO_TEMPLATE", "1");
        }
        let sup = Running::start(&mut cmd);
        wait_until(LIMIT, "2 workers started", || sup.worker_pids().len() >= 2);
        let mut kids = Vec::new();
        wait_until(LIMIT, "the supervisor's children", || {
            kids = children(sup.pid());
            kids.len() == expect_children || !alive(sup.pid())
        });
        let pids: Vec<i32> = kids.iter().map(|&(p, _)| p).collect();
        let (code, stderr) = sup.wait(LIMIT);
        assert_eq!(code, Some(0), "{stderr}");
        assert_eq!(pids.len(), expect_children, "template off: {off}; {kids:?}");
        // The template is ended at the end of the run, not named as a
        // process a worker left behind.
        assert!(!stderr.contains("escaped"), "{stderr}");
        assert_all_gone(&pids, CEILING);
        assert_eq!(s.result_ids().len(), 30);
    }
}
