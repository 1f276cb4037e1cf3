//! Workers on other hosts, through the system's OpenSSH client, as GNU
//! parallel's `--sshlogin` runs them: a remote worker is a local `ssh`
//! process whose stdin and stdout carry the protocol, so the loop treats it
//! as any other worker process. What differs is here: the command lines of
//! the master connections and of the workers, and the wrapper that makes a
//! remote worker die with its session ([`wrapper`]).

mod login;
mod wrapper;

use std::time::Duration;

pub(crate) use login::{SocketDir, stop_master};

/// Where the workers of a run go (`--host`, `--hosts`).
#[derive(Debug, Clone)]
pub struct Hosts {
    /// Each host and its number of workers, in the order given.
    pub list: Vec<HostPlan>,
    /// How to reach the remote ones.
    pub ssh: SshSettings,
}

/// One host of the run.
#[derive(Debug, Clone)]
pub struct HostPlan {
    /// As given: an ssh destination (`user@host`, an alias of the ssh
    /// config, `ssh://host:port`), or `:` for this machine.
    pub name: String,
    /// How many workers run there.
    pub workers: usize,
}

impl HostPlan {
    /// Whether it is this machine (`:`, as in GNU parallel).
    pub fn is_local(&self) -> bool {
        self.name == ":"
    }
}

/// How remote workers are started.
#[derive(Debug, Clone)]
pub struct SshSettings {
    /// The ssh program and the options the person gave (`--ssh`).
    pub ssh: Vec<String>,
    /// The worker command on the remote hosts (`--remote-worker-cmd`).
    pub command: Vec<String>,
    /// Between two logins (`--ssh-delay`), so that many at once do not
    /// trip sshd's `MaxStartups`.
    pub delay: Duration,
    /// Workers per connection (`--ssh-sessions`): sshd refuses more than
    /// its `MaxSessions` (10 by default) on one connection.
    pub sessions: usize,
}

/// Options the supervisor needs whatever the person's ssh config says: no
/// password prompt (it would hang without a terminal), no terminal (`-tt`
/// would mix stderr into stdout and turn LF into CRLF).
const ALWAYS: [&str; 3] = ["-T", "-o", "BatchMode=yes"];

impl SshSettings {
    /// The master connection to `dest`: logs in, holds the control socket
    /// at `socket`, runs nothing. Ours come first: ssh keeps the first
    /// value it sees for an option. The keepalive comes after the person's
    /// options, so theirs win there.
    pub(crate) fn master_argv(&self, dest: &str, socket: &str) -> Vec<String> {
        let mut argv = self.program();
        argv.extend(ALWAYS.map(String::from));
        for o in [
            "ControlMaster=yes".to_string(),
            format!("ControlPath={socket}"),
            "ControlPersist=no".to_string(),
        ] {
            argv.push("-o".into());
            argv.push(o);
        }
        argv.extend(self.options());
        for o in ["ServerAliveInterval=10", "ServerAliveCountMax=3"] {
            argv.push("-o".into());
            argv.push(o.into());
        }
        argv.push("-N".into());
        argv.push(dest.to_string());
        argv
    }

    /// One worker's ssh: a session over the master's socket, running the
    /// worker under the wrapper.
    pub(crate) fn worker_argv(
        &self,
        dest: &str,
        socket: &str,
        env: &[(&str, String)],
        grace: Duration,
    ) -> Vec<String> {
        let mut argv = self.program();
        argv.extend(ALWAYS.map(String::from));
        for o in [
            "ControlMaster=no".to_string(),
            format!("ControlPath={socket}"),
        ] {
            argv.push("-o".into());
            argv.push(o);
        }
        argv.extend(self.options());
        argv.push(dest.to_string());
        argv.push(wrapper::remote_command(
            env,
            grace.as_secs_f64(),
            &self.command,
        ));
        argv
    }

    fn program(&self) -> Vec<String> {
        self.ssh.first().cloned().into_iter().collect()
    }

    fn options(&self) -> impl Iterator<Item = String> + '_ {
        self.ssh.iter().skip(1).cloned()
    }
}
