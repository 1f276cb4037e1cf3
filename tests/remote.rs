//! Workers on other hosts over a real OpenSSH server on loopback (two
//! `sshd` processes, "alpha" on 127.0.0.2 and "beta" on 127.0.0.3; see
//! tests/common/sshd.rs).

mod common;

use common::sshd::SshLab;
use common::*;
use serde_json::Value;

/// The joblog's lines.
fn joblog(s: &Scratch) -> Vec<Value> {
    std::fs::read_to_string(s.path("results/joblog.jsonl"))
        .expect("read the joblog")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a joblog line is JSON"))
        .collect()
}

/// The supervisor in `s`, reaching the lab's hosts through its ssh config.
fn supervisor(s: &Scratch, lab: &SshLab) -> std::process::Command {
    let mut c = s.supervisor();
    c.args(["--ssh", &lab.ssh_command()]);
    c
}

/// Waits until no process started through `hosts` is left.
fn wait_nothing_left(lab: &SshLab, hosts: &[&str]) {
    wait_until(CEILING, "nothing left on the hosts", || {
        hosts.iter().all(|h| lab.remote_processes(h).is_empty())
    });
}

#[test]
fn jobs_spread_over_two_hosts_and_this_machine() {
    let lab = SshLab::start();
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 60, ",\"delay_ms\":20"));
    let (code, stderr) = run_supervisor(supervisor(&s, &lab).args([
        "--host",
        "2/alpha",
        "--host",
        "2/beta",
        "--host",
        "1/:",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(s.result_ids().len(), 60, "{stderr}");
    let mut per_host = std::collections::BTreeMap::new();
    for line in joblog(&s) {
        let host = line["host"]
            .as_str()
            .expect("host in each joblog line")
            .to_string();
        *per_host.entry(host).or_insert(0) += 1;
    }
    for host in ["alpha", "beta", ":"] {
        assert!(
            per_host.get(host).is_some_and(|&n| n > 0),
            "{per_host:?}\n{stderr}"
        );
    }
    let r = s.result("job-00007");
    assert_eq!(r["ok"], true);
    assert!(r["history"][0]["host"].is_string(), "{r}");
    // The control sockets' folder is gone, and no remote process is left.
    wait_nothing_left(&lab, &["alpha", "beta"]);
    assert!(stderr.contains("host alpha: logged in"), "{stderr}");
}

/// A remote worker past its deadline is killed with everything it started
/// on its host: an http-worker stopped with SIGSTOP (stuck, as a worker in
/// a bad system call is), and a worker that ignores SIGTERM and SIGHUP and
/// never reads its stdin (only the wrapper's SIGKILL to its group ends it).
fn killed_at_deadline_leaves_nothing(worker: &str, jobs: &str, freeze: bool) {
    let lab = SshLab::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", jobs);
    let run = Running::start(supervisor(&s, &lab).args([
        "--host",
        "1/alpha",
        "--remote-worker-cmd",
        worker,
        "--timeout",
        "5s",
        "--kill-grace",
        "1s",
        "--retries",
        "0",
        "jobs.jsonl",
    ]));
    // The worker itself, not the wrapper (whose arguments name it too).
    let program = worker.split(' ').next().unwrap_or(worker);
    let is_worker = |cmd: &str| cmd.split(' ').next() == Some(program);
    wait_until(CEILING, "the worker to be ready on alpha", || {
        run.stderr().contains("workers ready")
    });
    if freeze {
        for (pid, cmd) in lab.remote_processes("alpha") {
            if is_worker(&cmd) {
                let pid = nix::unistd::Pid::from_raw(pid);
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
            }
        }
    }
    wait_until(CEILING, "the deadline kill", || {
        run.stderr().contains("is stuck")
    });
    let stuck_at = std::time::Instant::now();
    wait_nothing_left(&lab, &["alpha"]);
    // Not asserted (a loaded machine can be slow): the wrapper sends
    // SIGKILL to the group at the kill-grace, 1 s after its SIGTERM.
    eprintln!(
        "{program}: alpha empty {:.2}s after the deadline kill",
        stuck_at.elapsed().as_secs_f64()
    );
    let (code, stderr) = run.wait(CEILING);
    assert_eq!(code, Some(1), "one job failed: {stderr}");
    let r = s.result("stuck");
    assert_eq!(r["history"][0]["outcome"], "timeout", "{r}");
    assert_eq!(r["history"][0]["host"], "alpha", "{r}");
}

#[test]
fn a_stuck_http_worker_is_killed_at_its_deadline_with_nothing_left() {
    let api = DemoApi::start();
    let jobs = format!(
        "{{\"id\":\"stuck\",\"url\":\"{}\",\"params\":{{\"delay_ms\":60000}}}}\n",
        api.geocode()
    );
    killed_at_deadline_leaves_nothing("http-worker", &jobs, true);
}

#[test]
fn a_worker_that_ignores_term_and_hup_is_killed_with_its_children() {
    let api = DemoApi::start();
    let jobs = format!("{{\"id\":\"stuck\",\"url\":\"{}\"}}\n", api.geocode());
    killed_at_deadline_leaves_nothing(&py_worker("stubborn"), &jobs, false);
}

#[test]
fn a_remote_worker_killed_by_hand_is_replaced_and_loses_nothing() {
    let lab = SshLab::start();
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 40, ",\"delay_ms\":100"));
    let run = Running::start(supervisor(&s, &lab).args(["--host", "2/alpha", "-v", "jobs.jsonl"]));
    let remote_worker = || {
        lab.remote_processes("alpha")
            .into_iter()
            .find(|(_, cmd)| cmd.starts_with("http-worker"))
    };
    wait_until(CEILING, "a worker on alpha", || remote_worker().is_some());
    wait_until(CEILING, "a first result", || !s.result_ids().is_empty());
    let (pid, _) = remote_worker().expect("a worker on alpha");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9 the remote worker");
    let (code, stderr) = run.wait(CEILING);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(s.result_ids().len(), 40, "{stderr}");
    assert!(stderr.contains("died"), "the kill is reported: {stderr}");
    wait_nothing_left(&lab, &["alpha"]);
}

#[test]
fn a_host_that_dies_mid_run_loses_no_job() {
    let mut lab = SshLab::start();
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 80, ",\"delay_ms\":100"));
    let run = Running::start(supervisor(&s, &lab).args([
        "--host",
        "2/alpha",
        "--host",
        "2/beta",
        "--retries",
        "0",
        "jobs.jsonl",
    ]));
    wait_until(CEILING, "a few results", || s.result_ids().len() >= 8);
    lab.stop_host("alpha");
    let (code, stderr) = run.wait(CEILING);
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(s.result_ids().len(), 80, "{stderr}");
    // With no retries allowed, a job charged for alpha's death would have
    // failed: every one is ok at its first charged attempt.
    for id in s.result_ids() {
        let r = s.result(&id);
        assert_eq!(r["ok"], true, "{r}");
        assert_eq!(r["attempts"], 1, "{r}");
    }
}

#[test]
fn a_host_that_refuses_the_key_is_marked_down_and_the_run_goes_on() {
    let lab = SshLab::start();
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 40, ",\"delay_ms\":100"));
    let (code, stderr) = run_supervisor(supervisor(&s, &lab).args([
        "--host",
        "2/stranger",
        "--host",
        "2/beta",
        "jobs.jsonl",
    ]));
    // (The jobs are slow enough for beta alone to take over a second, so
    // that stranger's refusal comes before the end.)
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(s.result_ids().len(), 40, "{stderr}");
    let down: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("host stranger is down"))
        .collect();
    assert_eq!(down.len(), 1, "one line says so: {stderr}");
    assert!(
        down[0].contains("Permission denied"),
        "with ssh's words: {stderr}"
    );
    // At once: the refusal is not retried.
    assert!(!stderr.contains("trying again"), "{stderr}");
    assert!(
        stderr.contains("host stranger: 0 jobs done, 0 workers started; DOWN"),
        "{stderr}"
    );
}

#[test]
fn every_host_down_stops_the_run_with_exit_2() {
    let lab = SshLab::start();
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 5, ""));
    // Nothing listens on port 1 of 127.0.0.4: refused, five times.
    let (code, stderr) = run_supervisor(supervisor(&s, &lab).args([
        "--host",
        "stranger",
        "--host",
        "ssh://root@127.0.0.4:1",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("no host left to run the jobs on; down:"),
        "{stderr}"
    );
    assert!(
        stderr.contains("stranger: ") && stderr.contains("Permission denied"),
        "{stderr}"
    );
    assert!(
        stderr.contains("127.0.0.4:1: ") && stderr.contains("Connection refused"),
        "{stderr}"
    );
    assert!(s.result_ids().is_empty());
}

#[test]
fn ctrl_c_leaves_no_remote_process_and_no_control_socket() {
    let lab = SshLab::start();
    let api = DemoApi::start();
    let s = Scratch::new();
    std::fs::create_dir(s.path("tmp")).expect("a temp folder");
    s.write("jobs.jsonl", &geocode_jobs(&api, 200, ",\"delay_ms\":200"));
    for presses in [1, 2] {
        let run = Running::start(
            supervisor(&s, &lab)
                .env("TMPDIR", s.path("tmp"))
                .args(["--host", "3/alpha", "--host", "3/beta"])
                .args(["--overwrite", "jobs.jsonl"]),
        );
        wait_until(CEILING, "workers on both hosts", || {
            lab.remote_processes("alpha").len() >= 3 && lab.remote_processes("beta").len() >= 3
        });
        let folders: Vec<_> = std::fs::read_dir(s.path("tmp"))
            .expect("read tmp")
            .map(|e| e.expect("an entry").path())
            .collect();
        assert_eq!(
            folders.len(),
            1,
            "one private folder for the control sockets"
        );
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&folders[0])
                .expect("its metadata")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o700, "{:?}", folders[0]);
        for _ in 0..presses {
            run.signal(nix::sys::signal::Signal::SIGINT);
        }
        let (code, stderr) = run.wait(CEILING);
        assert_eq!(code, Some(130), "{stderr}");
        wait_nothing_left(&lab, &["alpha", "beta"]);
        let left: Vec<_> = std::fs::read_dir(s.path("tmp"))
            .expect("read tmp")
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}

#[test]
fn rate_paces_the_whole_run_across_hosts() {
    let lab = SshLab::start();
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 40, ""));
    let (code, stderr) = run_supervisor(supervisor(&s, &lab).args([
        "--host",
        "4/alpha",
        "--host",
        "4/beta",
        "--rate",
        "20/s",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    // One pacer for every host: the requests of both hosts together start
    // at most 20 a second (no two closer than 40 ms, but for a little
    // slack in reading the clock), whatever host each ran on.
    let lines = joblog(&s);
    let hosts: std::collections::BTreeSet<&str> = lines
        .iter()
        .map(|l| l["host"].as_str().expect("host"))
        .collect();
    assert_eq!(hosts.len(), 2, "both hosts ran jobs: {hosts:?}");
    let starts: Vec<String> = lines
        .iter()
        .map(|l| l["started_at"].as_str().expect("started_at").to_string())
        .collect();
    let (burst, gaps) = gaps_shorter_than(&starts, 40.0);
    assert!(burst <= 2, "requests closer than 40 ms: {burst} of {gaps}");
}

#[test]
fn status_table_and_ttin_ttou_name_the_hosts() {
    use nix::sys::signal::Signal;
    let lab = SshLab::start();
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 400, ",\"delay_ms\":100"));
    let run = Running::start(supervisor(&s, &lab).args([
        "--host",
        "1/alpha",
        "--host",
        "1/beta",
        "jobs.jsonl",
    ]));
    wait_until(CEILING, "both workers ready", || {
        run.stderr().contains("workers ready")
    });
    run.signal(Signal::SIGUSR1);
    wait_until(CEILING, "the status table", || {
        run.stderr().contains("slot host")
    });
    let text = run.stderr();
    assert!(text.contains("0 alpha"), "{text}");
    assert!(text.contains("1 beta"), "{text}");
    // One more goes to the host whose turn it is (alpha), over its login.
    run.signal(Signal::SIGTTIN);
    wait_until(CEILING, "a third worker on alpha", || {
        run.stderr().contains("worker 2 started (alpha, ssh pid")
    });
    run.signal(Signal::SIGTTOU);
    wait_until(CEILING, "the third worker to stop", || {
        run.stderr().contains("one worker fewer, now 2")
    });
    run.signal(Signal::SIGINT);
    let (code, stderr) = run.wait(CEILING);
    assert_eq!(code, Some(130), "{stderr}");
    wait_nothing_left(&lab, &["alpha", "beta"]);
}

#[test]
fn a_host_whose_workers_keep_failing_is_marked_down_and_this_machine_goes_on() {
    let lab = SshLab::start();
    let api = DemoApi::start();
    let s = Scratch::new();
    // Slow enough that this machine's one worker is still busy when alpha
    // is given up.
    s.write("jobs.jsonl", &geocode_jobs(&api, 20, ",\"delay_ms\":200"));
    let (code, stderr) = run_supervisor(supervisor(&s, &lab).args([
        "--host",
        "2/alpha",
        "--host",
        "1/:",
        "--remote-worker-cmd",
        "no-such-worker --fast",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(s.result_ids().len(), 20, "{stderr}");
    let down: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("host alpha is down"))
        .collect();
    assert_eq!(down.len(), 1, "{stderr}");
    assert!(down[0].contains("5 times in a row"), "{stderr}");
    assert!(
        stderr.contains("no-such-worker: not found"),
        "the host's own words: {stderr}"
    );
}

#[test]
fn a_supervisor_killed_with_sigkill_leaves_no_remote_process() {
    let lab = SshLab::start();
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 200, ",\"delay_ms\":200"));
    // Its control-socket folder cannot be removed by a process killed
    // with SIGKILL: it goes in the scratch folder, not in /tmp.
    std::fs::create_dir(s.path("tmp")).expect("a temp folder");
    let run = Running::start(supervisor(&s, &lab).env("TMPDIR", s.path("tmp")).args([
        "--host",
        "2/alpha",
        "--remote-worker-cmd",
        &py_worker("stubborn"),
        "jobs.jsonl",
    ]));
    wait_until(CEILING, "stubborn workers busy on alpha", || {
        lab.remote_processes("alpha")
            .iter()
            .filter(|(_, cmd)| cmd.starts_with("sleep 600"))
            .count()
            == 2
    });
    // No cleanup code runs: the local ssh processes die with the
    // supervisor (their parent-death signal), their sessions end, and the
    // wrappers kill what ran under them.
    run.signal(nix::sys::signal::Signal::SIGKILL);
    let _ = run.wait(CEILING);
    wait_nothing_left(&lab, &["alpha"]);
}

#[test]
fn hosts_come_from_a_file_and_a_bad_line_is_named() {
    let lab = SshLab::start();
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 20, ""));
    s.write("hosts.txt", "# the lab\n\n2/alpha\n  1/beta  \n");
    let (code, stderr) =
        run_supervisor(supervisor(&s, &lab).args(["--hosts", "hosts.txt", "jobs.jsonl"]));
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("host alpha:") && stderr.contains("host beta:"),
        "{stderr}"
    );

    s.write("bad-hosts.txt", "2/alpha\n# ok so far\n0/beta\n");
    let (code, stderr) = run_supervisor(s.supervisor().args([
        "--hosts",
        "bad-hosts.txt",
        "--overwrite",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("bad-hosts.txt:3: not a host"), "{stderr}");
    assert!(stderr.contains("1 to 4096"), "{stderr}");
}

#[test]
fn ssh_sessions_sets_the_logins_per_host_and_ssh_delay_spaces_them() {
    let lab = SshLab::start();
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 400, ",\"delay_ms\":100"));
    // 4 workers, 2 sessions per login: 2 logins on alpha. Logins are
    // planned as slots are given out (alpha, beta, alpha, alpha, alpha), 5 s
    // apart: alpha's first at once, beta's after 5 s, alpha's second after
    // 10 s.
    let run = Running::start(supervisor(&s, &lab).args([
        "--host",
        "4/alpha",
        "--host",
        "1/beta",
        "--ssh-sessions",
        "2",
        "--ssh-delay",
        "5s",
        "jobs.jsonl",
    ]));
    wait_until(CEILING, "alpha's first login", || {
        lab.connections("alpha") >= 1
    });
    assert_eq!(lab.connections("beta"), 0, "beta waits its --ssh-delay");
    wait_until(CEILING, "alpha's two logins", || {
        run.stderr()
            .contains("host alpha: logged in (connection 2 of 2)")
    });
    assert_eq!(
        lab.connections("alpha"),
        2,
        "4 workers, 2 sessions per login"
    );
    wait_until(CEILING, "beta's login", || {
        run.stderr()
            .contains("host beta: logged in (connection 1 of 1)")
    });
    run.signal(nix::sys::signal::Signal::SIGINT);
    let (code, stderr) = run.wait(CEILING);
    assert_eq!(code, Some(130), "{stderr}");
}

#[test]
fn a_host_that_never_answers_is_given_up_after_the_start_timeouts() {
    let lab = SshLab::start();
    let api = DemoApi::start();
    let s = Scratch::new();
    // Five tries of 1 s and their backoff take about 6.5 s: beta alone
    // takes 12 s for these jobs, so the run is still on when the host is
    // given up.
    s.write("jobs.jsonl", &geocode_jobs(&api, 60, ",\"delay_ms\":200"));
    // A TCP port that accepts connections and never says a word, as a
    // host behind a stuck firewall or an sshd that hangs.
    let silent = std::net::TcpListener::bind("127.0.0.5:0").expect("bind 127.0.0.5");
    let port = silent.local_addr().expect("its address").port();
    let held = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = held.clone();
    std::thread::spawn(move || {
        for conn in silent.incoming().flatten() {
            keep.lock().expect("lock").push(conn);
        }
    });
    let silent_host = format!("ssh://root@127.0.0.5:{port}");
    let (code, stderr) = run_supervisor(supervisor(&s, &lab).args([
        "--host",
        &format!("1/{silent_host}"),
        "--host",
        "1/beta",
        "--start-timeout",
        "1s",
        "jobs.jsonl",
    ]));
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(s.result_ids().len(), 60, "{stderr}");
    let down: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(&format!("host {silent_host} is down")))
        .collect();
    assert_eq!(down.len(), 1, "{stderr}");
    assert!(down[0].contains("did not log in within"), "{stderr}");
}

#[test]
fn a_dropped_connection_does_not_take_a_healthy_host_down() {
    let lab = SshLab::start();
    let api = DemoApi::start();
    let s = Scratch::new();
    s.write("jobs.jsonl", &geocode_jobs(&api, 60, ",\"delay_ms\":300"));
    let run = Running::start(supervisor(&s, &lab).args([
        "--host",
        "6/alpha",
        "--retries",
        "0",
        "jobs.jsonl",
    ]));
    wait_until(CEILING, "six workers busy on alpha", || {
        lab.remote_processes("alpha")
            .iter()
            .filter(|(_, cmd)| cmd.starts_with("http-worker"))
            .count()
            == 6
    });
    // The connection's own sshd process (the remote workers' parent's
    // parent, "sshd: root@notty"): the connection drops, sshd itself
    // stays, as when a network blip resets one TCP connection.
    let (worker, _) = lab
        .remote_processes("alpha")
        .into_iter()
        .find(|(_, cmd)| cmd.starts_with("http-worker"))
        .expect("a worker");
    let parent = |pid: i32| -> i32 {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
        let after = &stat[stat.rfind(')').expect("comm") + 2..];
        after
            .split(' ')
            .nth(1)
            .expect("ppid")
            .parse()
            .expect("a pid")
    };
    let mut connection = parent(worker);
    while !std::fs::read_to_string(format!("/proc/{connection}/cmdline"))
        .unwrap_or_default()
        .starts_with("sshd")
    {
        connection = parent(connection);
    }
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(connection),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the connection");
    let (code, stderr) = run.wait(CEILING);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(!stderr.contains("is down"), "{stderr}");
    assert!(stderr.contains("lost its ssh connection"), "{stderr}");
    // Every job ok at its first charged attempt, with no retries allowed.
    assert_eq!(s.result_ids().len(), 60, "{stderr}");
    for id in s.result_ids() {
        assert_eq!(s.result(&id)["ok"], true, "{id}: {stderr}");
    }
}
