//! The ssh lab (tests/common/sshd.rs) itself: two real sshd on loopback,
//! reachable with the lab's client configuration, marking what they start,
//! dying on demand, and multiplexing sessions for a ControlMaster.

mod common;

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::thread;

use common::sshd::SshLab;
use common::*;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// `ssh -F CONFIG ARGS...`, with no input.
fn ssh(lab: &SshLab, args: &[&str]) -> Command {
    let mut c = Command::new("ssh");
    c.arg("-F")
        .arg(lab.config_path())
        .args(args)
        .stdin(Stdio::null());
    c
}

/// Runs `ssh -F CONFIG ARGS...` to its end: exit code, stdout, stderr.
fn ssh_run(lab: &SshLab, args: &[&str]) -> (Option<i32>, String, String) {
    let out = run_bounded(&mut ssh(lab, args), CEILING);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether the process is gone (a zombie counts as gone).
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => matches!(
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next()),
            Some("Z" | "X")
        ),
        Err(_) => true,
    }
}

/// The parent of a process, if it still exists.
fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The pid of the remote process whose command line is `cmd`, once there
/// is one.
fn wait_for_remote(lab: &SshLab, host: &str, cmd: &str) -> i32 {
    let mut pid = 0;
    wait_until(CEILING, &format!("`{cmd}` to run on {host}"), || match lab
        .remote_processes(host)
        .into_iter()
        .find(|(_, c)| c == cmd)
    {
        Some((p, _)) => {
            pid = p;
            true
        }
        None => false,
    });
    pid
}

#[test]
fn hosts_run_commands_marked_with_the_worker_on_the_path() {
    let lab = SshLab::start();
    assert!(
        lab.ssh_command().starts_with("ssh -F /"),
        "{}",
        lab.ssh_command()
    );
    assert_ne!(lab.port("alpha"), lab.port("beta"));

    for host in ["alpha", "beta"] {
        let (code, stdout, stderr) = ssh_run(
            &lab,
            &[host, "echo $CALLPOOL_TEST_HOST; command -v http-worker"],
        );
        assert_eq!(code, Some(0), "ssh {host}: {stderr}");
        assert_eq!(
            stdout.lines().collect::<Vec<_>>(),
            [host, HTTP_WORKER],
            "ssh {host}; stderr: {stderr}"
        );
        // The session ended with its command: nothing left behind.
        assert_eq!(lab.remote_processes(host), []);
    }

    // The right address (so a client can tell the hosts apart), and the
    // key the lab does not authorize is refused.
    let (code, stdout, _) = ssh_run(&lab, &["beta", "echo $SSH_CONNECTION"]);
    assert_eq!(code, Some(0));
    assert!(
        stdout
            .trim_end()
            .ends_with(&format!("127.0.0.3 {}", lab.port("beta"))),
        "{stdout}"
    );
    let (code, stdout, stderr) = ssh_run(&lab, &["stranger", "echo in"]);
    assert_eq!(code, Some(255), "stdout {stdout:?}, stderr {stderr:?}");
    assert!(stderr.contains("Permission denied"), "{stderr}");
    assert_eq!(stdout, "");
}

#[test]
fn a_stopped_host_takes_its_processes_along_and_only_its_own() {
    let mut lab = SshLab::start();
    let mut on_alpha = ssh(&lab, &["alpha", "sleep 600"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ssh alpha");
    let mut on_beta = ssh(&lab, &["beta", "sleep 601"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ssh beta");
    let alpha_sleep = wait_for_remote(&lab, "alpha", "sleep 600");
    let beta_sleep = wait_for_remote(&lab, "beta", "sleep 601");
    // Only what the sessions run is marked: no sshd, and nothing of the
    // other host.
    for host in ["alpha", "beta"] {
        let procs = lab.remote_processes(host);
        assert_eq!(procs.len(), 1, "{host}: {procs:?}");
        assert!(
            procs.iter().all(|(_, c)| !c.starts_with("sshd")),
            "{procs:?}"
        );
    }

    // A client that dies leaves its remote command running (no terminal,
    // so no SIGHUP), orphaned: it is still found.
    let mut orphan_maker = ssh(&lab, &["beta", "sleep 602"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ssh beta");
    let orphan = wait_for_remote(&lab, "beta", "sleep 602");
    orphan_maker.kill().expect("kill the local ssh");
    let _ = orphan_maker.wait();
    wait_until(CEILING, "the orphan's sshd to be gone", || {
        let parent = ppid(orphan).expect("the orphan is alive");
        !std::fs::read_to_string(format!("/proc/{parent}/cmdline"))
            .unwrap_or_default()
            .starts_with("sshd")
    });
    assert!(
        lab.remote_processes("beta")
            .iter()
            .any(|&(p, _)| p == orphan),
        "{:?}",
        lab.remote_processes("beta")
    );

    lab.stop_host("alpha");
    // The connection dropped under the client...
    let status = wait_child(&mut on_alpha, CEILING).expect("ssh alpha to end with its host");
    assert_eq!(status.code(), Some(255), "{status}");
    // ... its command went with the host, and the host refuses newcomers.
    assert!(gone(alpha_sleep));
    assert_eq!(lab.remote_processes("alpha"), []);
    let (code, _, stderr) = ssh_run(&lab, &["alpha", "true"]);
    assert_eq!(code, Some(255), "{stderr}");
    assert!(stderr.contains("Connection refused"), "{stderr}");

    // beta did not notice.
    assert_eq!(on_beta.try_wait().expect("ssh beta's status"), None);
    assert!(!gone(beta_sleep) && !gone(orphan));
    let (code, stdout, stderr) = ssh_run(&lab, &["beta", "echo $CALLPOOL_TEST_HOST"]);
    assert_eq!((code, stdout.as_str()), (Some(0), "beta\n"), "{stderr}");

    // Dropping the lab stops beta the same way, orphan included.
    drop(lab);
    wait_child(&mut on_beta, CEILING).expect("ssh beta to end with the lab");
    assert!(gone(beta_sleep) && gone(orphan));
}

#[test]
fn a_control_master_carries_many_sessions_over_one_connection() {
    let lab = SshLab::start();
    let socket = lab.dir().join("cm");
    let control_path = format!("ControlPath={}", path_text(&socket));
    let mut master = ssh(
        &lab,
        &[
            "-M",
            "-N",
            "-o",
            &control_path,
            "-o",
            "ControlPersist=no",
            "alpha",
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::inherit())
    .spawn()
    .expect("spawn the ssh control master");
    wait_until(CEILING, "the control socket", || {
        if let Some(status) = master.try_wait().expect("the master's status") {
            panic!("the ssh control master exited: {status}");
        }
        socket.exists()
    });
    wait_until(
        CEILING,
        "alpha to hold just the master's connection",
        || lab.connections("alpha") == 1,
    );

    // Each session reports the TCP connection it came over: the master's,
    // for all of them.
    let seen: Vec<(Option<i32>, String, String)> = thread::scope(|s| {
        let runs: Vec<_> = (0..20)
            .map(|_| {
                s.spawn(|| {
                    ssh_run(
                        &lab,
                        &[
                            "-o",
                            "ControlMaster=no",
                            "-o",
                            &control_path,
                            "alpha",
                            "echo $SSH_CONNECTION",
                        ],
                    )
                })
            })
            .collect();
        runs.into_iter()
            .map(|r| r.join().expect("a client thread"))
            .collect()
    });
    for (code, stdout, stderr) in &seen {
        assert_eq!(*code, Some(0), "a multiplexed session failed: {stderr}");
        assert!(!stdout.trim().is_empty(), "{stderr}");
    }
    let connections: HashSet<&str> = seen.iter().map(|(_, out, _)| out.trim()).collect();
    assert_eq!(connections.len(), 1, "{connections:?}");
    assert_eq!(lab.connections("alpha"), 1);

    kill(Pid::from_raw(master.id() as i32), Signal::SIGTERM).expect("signal the master");
    wait_child(&mut master, CEILING).expect("the master to exit on SIGTERM");
    wait_until(CEILING, "the master's connection to close", || {
        lab.connections("alpha") == 0
    });
    assert_eq!(lab.remote_processes("alpha"), []);
}
