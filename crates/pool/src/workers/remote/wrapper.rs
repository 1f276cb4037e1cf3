//! The remote wrapper: a POSIX `sh` script sent with each remote worker's
//! command, so that nothing has to be installed on the host.
//!
//! Without a terminal, sshd sends no signal when a session ends, so a
//! worker that ignores its stdin would outlive the connection (GNU parallel
//! solves this with a Perl wrapper). This one:
//! - copies stdin to the worker with `cat` (one extra copy of each job
//!   line), so that it sees the end of the input even when the worker does
//!   not read it;
//! - at that end, probes the session by writing an empty line to stderr:
//!   the supervisor closes a worker's input only when it holds no job, and
//!   such a worker exits by itself, so a probe that fails means the session
//!   is gone (the supervisor stopped it, or the connection died). Then it
//!   sends TERM to the whole remote process group, and KILL after the
//!   grace. sshd starts each session's command in a new session, so that
//!   group is this worker's and nothing else's;
//! - when the worker exits, sends TERM to what is left of the group (its
//!   children, and the `cat`), and KILL after the grace from a detached
//!   killer, as the supervisor does to a local worker's group, and exits with the worker's status (254 for 255, which the
//!   supervisor reads as ssh's own failure: a broken connection).
//!
//! It is one line, because csh-like login shells refuse a quoted newline.

/// The script; run as `sh -c SCRIPT callpool-remote GRACE PROGRAM ARGS...`.
pub(crate) const SCRIPT: &str = concat!(
    // The session's stderr moves to fd 4, for the worker and the probes:
    // the shells' own stderr is silenced, where they would say
    // "Terminated" of what they kill.
    // It survives TERM, HUP and INT sent to the group (by itself, or by a
    // worker signalling its group), to report the worker's status.
    "g=$1; shift; exec 3<&0 </dev/null 4>&2 2>/dev/null; trap : TERM HUP INT; ",
    // The watchdog: feeds the worker, then watches the session. Its first
    // line tells the worker's side that it runs with its own traps: until
    // a forked subshell has reset them, a TERM would hit the wrapper's
    // `trap :` and be lost, and the watchdog would outlive the worker.
    "( trap '' PIPE; echo; cat <&3 3<&-; exec >/dev/null; n=0; ",
    "while printf '\\n' >&4; do n=$((n+1)); ",
    "if [ $n -lt 20 ]; then sleep 0.1 2>/dev/null || sleep 1; else sleep 1; fi; done; ",
    "trap : TERM; kill -s TERM 0; sleep \"$g\" || sleep 1; kill -s KILL 0 ) | ",
    // The worker, once the watchdog runs; when it is gone, what it left
    // behind goes too.
    "{ read -r r; \"$@\" 3<&- 2>&4 4>&-; s=$?; trap '' TERM; kill -s TERM 0 2>/dev/null; ",
    // ... and KILL after the grace, for what ignores TERM (and would hold
    // the session open), from a killer that holds none of its files.
    "( sleep \"$g\" || sleep 1; kill -s KILL 0 ) </dev/null >/dev/null 2>&1 3<&- 4>&- & ",
    // 255 is ssh's own failure (a broken connection): never the worker's.
    "[ $s -ne 255 ] || s=254; exit $s; }"
);

/// The remote command line for one worker: `exec env VARS sh -c SCRIPT
/// callpool-remote GRACE ARGV...`, quoted for the remote login shell.
/// `exec` leaves no login shell in between, so the wrapper is the session's
/// first process and its group is the worker's.
pub(crate) fn remote_command(env: &[(&str, String)], grace_secs: f64, argv: &[String]) -> String {
    let mut words: Vec<String> = vec!["exec".into(), "env".into()];
    words.extend(env.iter().map(|(k, v)| format!("{k}={v}")));
    words.push("sh".into());
    words.push("-c".into());
    words.push(SCRIPT.into());
    words.push("callpool-remote".into());
    words.push(format!("{grace_secs}"));
    words.extend(argv.iter().cloned());
    words.iter().map(|w| quote(w)).collect::<Vec<_>>().join(" ")
}

/// Quotes a word for a POSIX shell: as is when it is plain, otherwise in
/// single quotes. Not `shlex::try_quote`: the remote login shell may be
/// tcsh or fish, and only plain single quotes (with `!` and backslashes
/// refused before this) read the same in all of them.
fn quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    /// The wrapper as sshd would run it: in a process group of its own.
    fn wrapped(argv: &[&str], grace: f64) -> Command {
        let argv: Vec<String> = argv.iter().map(|a| a.to_string()).collect();
        let cmd = remote_command(&[("CALLPOOL_SLOT", "3".into())], grace, &argv);
        let mut c = Command::new("sh");
        c.args(["-c", &cmd]).process_group(0);
        c
    }

    /// Runs it to its end with `input` on its stdin, or kills its group
    /// and fails after a minute: a wrapper that hangs must fail the test,
    /// not hang it.
    fn output(mut cmd: Command, input: &[u8]) -> std::process::Output {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the wrapper");
        let group = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(input).expect("write");
        }
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait_with_output());
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(out) => out.expect("wait"),
            Err(_) => {
                let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
                panic!("the wrapper did not end within 60 s");
            }
        }
    }

    #[test]
    fn quoting_survives_a_shell() {
        let out = output(
            wrapped(&["printf", "%s|", "it's", "a b", "", "$HOME"], 1.0),
            b"",
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's|a b||$HOME|");
        assert!(!SCRIPT.contains('\n'));
    }

    #[test]
    fn the_worker_gets_its_input_and_its_status_comes_back() {
        let out = output(
            wrapped(
                &["sh", "-c", "cat; echo \"slot $CALLPOOL_SLOT\"; exit 7"],
                1.0,
            ),
            b"one\ntwo\n",
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), "one\ntwo\nslot 3\n");
        assert_eq!(out.status.code(), Some(7));
        // Nothing from the shells themselves ("Terminated"), blank probes
        // at most.
        assert!(
            String::from_utf8_lossy(&out.stderr).trim().is_empty(),
            "{out:?}"
        );
        let out = output(wrapped(&["sh", "-c", "exit 255"], 1.0), b"");
        assert_eq!(
            out.status.code(),
            Some(254),
            "255 is kept for ssh's own failures"
        );
    }

    /// A worker that exits leaving a child that ignores TERM and holds the
    /// session's stdout: the child is killed after the grace, so the
    /// session ends (else ssh, and the supervisor, would wait for ever).
    #[test]
    fn what_a_worker_leaves_behind_is_killed_after_the_grace() {
        let out = output(
            wrapped(
                &[
                    "sh",
                    "-c",
                    "(trap '' TERM; exec sleep 302) & sleep 0.2; exit 3",
                ],
                0.3,
            ),
            b"",
        );
        assert_eq!(out.status.code(), Some(3));
    }

    /// The session is gone (its stdin ended and its stderr has no reader):
    /// a worker that ignores TERM and HUP and never reads stdin is killed
    /// with its child, by the wrapper's SIGKILL to the group.
    #[test]
    fn a_stubborn_worker_dies_with_its_session() {
        let mut child = wrapped(
            &["sh", "-c", "trap '' TERM HUP; sleep 300 & sleep 301"],
            0.2,
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the wrapper");
        let group = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
        drop(child.stderr.take());
        drop(child.stdin.take());
        let limit = Instant::now() + Duration::from_secs(60);
        while nix::sys::signal::killpg(group, None).is_ok() {
            let _ = child.try_wait();
            assert!(Instant::now() < limit, "the worker's group is still there");
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.wait();
    }
}
