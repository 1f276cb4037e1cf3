//! The ssh master connections of a run with remote hosts: started, watched
//! for their control socket, signalled and waited for, as the core asks.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use callpool_protocol::PROTOCOL_VERSION;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::PoolConfig;
use crate::error::RunError;
use crate::workers::remote::{Hosts, SocketDir, SshSettings, stop_master};

/// The logins of a run: none without a remote host.
pub(super) struct Logins {
    /// The control sockets' private folder, when a host is remote.
    sockets: Option<SocketDir>,
    /// Each host's name, as given.
    names: Vec<String>,
    /// How to reach the remote ones.
    ssh: Option<SshSettings>,
    /// Masters running: their host and login.
    masters: HashMap<Pid, (usize, usize)>,
    /// Masters whose control socket is not there yet.
    connecting: Vec<(usize, usize)>,
}

impl Logins {
    pub(super) fn new(hosts: Option<&Hosts>) -> Result<Self, RunError> {
        let sockets = match hosts {
            Some(h) if h.list.iter().any(|p| !p.is_local()) => {
                Some(SocketDir::new().map_err(RunError::Setup)?)
            }
            _ => None,
        };
        Ok(Logins {
            sockets,
            names: hosts.map_or_else(Vec::new, |h| {
                h.list.iter().map(|p| p.name.clone()).collect()
            }),
            ssh: hosts.map(|h| h.ssh.clone()),
            masters: HashMap::new(),
            connecting: Vec::new(),
        })
    }

    /// Starts login `l` of host `h`: its master's pid, or why not.
    pub(super) fn start(&mut self, h: usize, l: usize) -> Result<i32, String> {
        let Some(dir) = &self.sockets else {
            return Err("no remote host".into());
        };
        let name = self.names.get(h).map_or("", String::as_str);
        let socket = dir.socket(h, l);
        let Some(ssh) = &self.ssh else {
            return Err("no ssh settings".into());
        };
        let argv = ssh.master_argv(name, &socket.to_string_lossy());
        match dir.start_master(&argv, h, l) {
            Ok(pid) => {
                self.masters.insert(pid, (h, l));
                self.connecting.push((h, l));
                Ok(pid.as_raw())
            }
            Err(e) => Err(format!("cannot start `{}`: {e}", argv[0])),
        }
    }

    /// The logins whose control socket appeared since the last look.
    pub(super) fn came_up(&mut self) -> Vec<(usize, usize)> {
        let Some(dir) = &self.sockets else {
            return Vec::new();
        };
        let mut up = Vec::new();
        self.connecting.retain(|&(h, l)| {
            let is_up = dir.is_up(h, l);
            if is_up {
                up.push((h, l));
            }
            !is_up
        });
        up
    }

    /// A child ended: if it was a master, forget it and say what it last
    /// wrote (`Some(None)` when it wrote nothing).
    pub(super) fn ended(&mut self, pid: Pid) -> Option<Option<String>> {
        let (h, l) = self.masters.remove(&pid)?;
        self.connecting.retain(|&c| c != (h, l));
        Some(self.sockets.as_ref().and_then(|d| d.last_line(h, l)))
    }

    pub(super) fn stop(&self, pid: Pid, kill: bool) {
        stop_master(
            pid,
            if kill {
                Signal::SIGKILL
            } else {
                Signal::SIGTERM
            },
        );
    }

    /// The command line of a worker in `slot` on host `h` over login `l`,
    /// when the host is remote.
    pub(super) fn remote_argv(
        &self,
        cfg: &PoolConfig,
        slot: usize,
        h: usize,
        l: usize,
    ) -> Option<Vec<String>> {
        let (hosts, dir) = (cfg.hosts.as_ref()?, self.sockets.as_ref()?);
        let plan = hosts.list.get(h)?;
        if plan.is_local() {
            return None;
        }
        let mut env = vec![
            ("CALLPOOL_SLOT", slot.to_string()),
            ("CALLPOOL_PROTOCOL", PROTOCOL_VERSION.to_string()),
        ];
        if let Some(limit) = cfg.isolation.memory_limit() {
            env.push(("CALLPOOL_MEMORY_LIMIT", limit.to_string()));
        }
        let socket = dir.socket(h, l);
        Some(
            hosts
                .ssh
                .worker_argv(&plan.name, &socket.to_string_lossy(), &env, cfg.kill_grace),
        )
    }

    /// Ends every master connection and waits (a little) for them, so that
    /// no control socket or ssh process outlives the run.
    pub(super) fn close(&mut self) {
        let pids: Vec<Pid> = self.masters.keys().copied().collect();
        for &pid in &pids {
            stop_master(pid, Signal::SIGTERM);
        }
        let until = Instant::now() + Duration::from_secs(2);
        for pid in pids {
            loop {
                match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) if Instant::now() < until => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Ok(WaitStatus::StillAlive) => {
                        stop_master(pid, Signal::SIGKILL);
                        let _ = waitpid(pid, None);
                        break;
                    }
                    _ => break,
                }
            }
        }
        self.masters.clear();
        self.connecting.clear();
        self.sockets = None;
    }
}
