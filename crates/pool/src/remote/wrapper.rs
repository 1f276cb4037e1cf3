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
//!   children, and the `cat`), as the supervisor does to a local worker's
//!   group, and exits with the worker's status.
//!
//! It is one line, because csh-like login shells refuse a quoted newline.

/// The script; run as `sh -c SCRIPT callpool-remote GRACE PROGRAM ARGS...`.
pub(crate) const SCRIPT: &str = concat!(
    // The session's stderr moves to fd 4, for the worker and the probes:
    // the shells' own stderr is silenced, where they would say
    // "Terminated" of what they kill.
    "g=$1; shift; exec 3<&0 </dev/null 4>&2 2>/dev/null; trap : TERM; ",
    // The watchdog: feeds the worker, then watches the session.
    "( trap '' PIPE; cat <&3 3<&-; exec >/dev/null; n=0; ",
    "while printf '\\n' >&4; do n=$((n+1)); ",
    "if [ $n -lt 20 ]; then sleep 0.1 2>/dev/null || sleep 1; else sleep 1; fi; done; ",
    "trap : TERM; kill -s TERM 0; sleep \"$g\" || sleep 1; kill -s KILL 0 ) | ",
    // The worker; when it is gone, what it left behind goes too.
    "{ \"$@\" 3<&- 2>&4 4>&-; s=$?; trap '' TERM; kill -s TERM 0 2>/dev/null; exit $s; }"
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
/// single quotes.
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

    #[test]
    fn quoting_survives_a_shell() {
        let argv = vec!["printf".to_string(), "%s|".into(), "it's".into(), "a b".into(), "".into()];
        let cmd = remote_command(&[("CALLPOOL_SLOT", "3".into())], 0.5, &argv);
        let out = std::process::Command::new("sh")
            .args(["-c", &cmd])
            .stdin(std::process::Stdio::null())
            .output()
            .expect("run sh");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "it's|a b||");
        assert!(!SCRIPT.contains('\n'));
    }
}
