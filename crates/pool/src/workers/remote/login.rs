//! Master connections: one ssh login per host (or per `--ssh-sessions`
//! workers), whose control socket the workers' sessions go through, so
//! that 64 workers on a host are one TCP login, not 64.

use std::fs::File;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::sys::signal::Signal;
use nix::unistd::Pid;

use crate::workers::spawn::set_up_child;

/// A private folder (mode 0700) for the control sockets and the masters'
/// stderr, removed when dropped: at the end of the run, on Ctrl-C and on
/// errors alike.
pub(crate) struct SocketDir {
    dir: tempfile::TempDir,
}

impl SocketDir {
    /// Creates it under the temporary folder, or under `/tmp` when that
    /// path is too long for a socket (108 bytes on Linux).
    pub(crate) fn new() -> io::Result<Self> {
        // ssh reads ControlPath as a line of its config: a space splits it,
        // and `%` starts a token; a socket path is short.
        let mut base = std::env::temp_dir();
        let plain = base.to_str().is_some_and(|p| {
            p.len() <= 60
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b))
        });
        if !plain {
            base = PathBuf::from("/tmp");
        }
        // Owner only: ssh's stderr files are in it too.
        let dir = tempfile::Builder::new()
            .prefix("callpool-ssh-")
            .permissions(std::fs::Permissions::from_mode(0o700))
            .tempdir_in(base)?;
        Ok(Self { dir })
    }

    /// The control socket of login `login` of host `host`.
    pub(crate) fn socket(&self, host: usize, login: usize) -> PathBuf {
        self.dir.path().join(format!("{host}-{login}"))
    }

    fn stderr_file(&self, host: usize, login: usize) -> PathBuf {
        self.dir.path().join(format!("{host}-{login}.err"))
    }

    /// Starts a master connection with `argv`: its own process group, no
    /// input, stderr kept in a file for the message if it fails, and the
    /// parent-death signal, so that it never outlives the supervisor.
    pub(crate) fn start_master(
        &self,
        argv: &[String],
        host: usize,
        login: usize,
    ) -> io::Result<Pid> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "empty ssh command"))?;
        let _ = std::fs::remove_file(self.socket(host, login));
        let err = File::create(self.stderr_file(host, login))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .process_group(0);
        set_up_child(&mut cmd, nix::unistd::getpid(), None);
        let child = cmd.spawn()?;
        let pid = Pid::from_raw(
            i32::try_from(child.id()).map_err(|_| io::Error::other("pid out of range"))?,
        );
        // Reaped by the loop's waitpid(-1), as workers are.
        drop(child);
        Ok(pid)
    }

    /// Whether the master's control socket is there (it is made once the
    /// login has succeeded).
    pub(crate) fn is_up(&self, host: usize, login: usize) -> bool {
        self.socket(host, login).exists()
    }

    /// The last line a master that ended wrote on stderr, if any.
    pub(crate) fn last_line(&self, host: usize, login: usize) -> Option<String> {
        let text = std::fs::read_to_string(self.stderr_file(host, login)).unwrap_or_default();
        text.lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty())
            .map(str::to_string)
    }
}

/// Asks a master to end (it closes its sessions and removes its socket).
pub(crate) fn stop_master(pid: Pid, sig: Signal) {
    let _ = nix::sys::signal::kill(pid, sig);
}
