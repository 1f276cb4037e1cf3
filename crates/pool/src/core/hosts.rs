//! Hosts: which host each slot's workers run on, the master connections
//! of the remote ones, and hosts that fail. A run without `--host` has one
//! host, this machine, and behaves as before: its start failures stop the
//! run. With `--host`, a host whose workers (or logins) fail to start
//! `--max-start-failures` times in a row is marked down, its jobs go to the
//! others, and only when every host is down does the run stop.

use super::*;
use crate::who::ExitHow;
use worker::KillReason;

/// Whether ssh's last stderr line says the host will refuse every try, so
/// that retrying is pointless: a refused key, an unknown or changed host
/// key, a name that does not resolve.
fn refuses_for_good(line: &str) -> bool {
    [
        "Permission denied",
        "Host key verification failed",
        "Could not resolve hostname",
        "Too many authentication failures",
        "No such file or directory",
        "Bad configuration option",
        "bad ssh2 cipher spec",
        "Bad owner or permissions",
    ]
    .iter()
    .any(|p| line.contains(p))
}

/// Where a login (an ssh master connection) is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Login {
    /// Not started yet: due at `at` (the first logins are spaced by
    /// `--ssh-delay`; a failed one waits its backoff).
    Waiting {
        /// When to start it.
        at: Instant,
    },
    /// Asked of the shell ([`Action::StartLogin`]), not answered yet.
    Starting,
    /// `ssh -M` runs; its control socket is not there yet.
    Connecting {
        /// The master's pid.
        pid: i32,
        /// When it started.
        since: Instant,
    },
    /// Its control socket is there: workers can start over it.
    Up {
        /// The master's pid.
        pid: i32,
    },
    /// Stopped for good (its host is down, or the run is over).
    Closed,
}

impl Login {
    /// The master's pid while one runs.
    pub(crate) fn pid(self) -> Option<i32> {
        match self {
            Login::Connecting { pid, .. } | Login::Up { pid } => Some(pid),
            Login::Waiting { .. } | Login::Starting | Login::Closed => None,
        }
    }
}

/// A host as the loop tracks it.
pub(crate) struct Host {
    /// As given (`:` for this machine).
    pub name: &'static str,
    /// Whether it is this machine.
    pub local: bool,
    /// Its master connections (none for this machine).
    pub logins: Vec<Login>,
    /// Workers or logins in a row that failed to start.
    pub failures: u32,
    /// Distinct jobs that killed one of its workers (each the first time
    /// it did) since its workers last answered a job.
    pub kills: u32,
    /// A probe job (docs/lifecycle.md §3) is out on one of its workers.
    pub probe_sent: bool,
    /// Why it was given up, once it was.
    pub down: Option<String>,
    /// Workers started there.
    pub started: u64,
    /// Jobs its workers finished.
    pub jobs_done: u64,
}

impl Host {
    fn new(name: &'static str, local: bool) -> Self {
        Host {
            name,
            local,
            logins: Vec::new(),
            failures: 0,
            kills: 0,
            probe_sent: false,
            down: None,
            started: 0,
            jobs_done: 0,
        }
    }
}

/// The hosts of a run, and the order in which slots are given to them:
/// interleaved, so that one worker fewer (TTOU) or more (TTIN) changes the
/// hosts in turn.
pub(crate) fn plan(hosts: Option<&HostsConfig>) -> (Vec<Host>, Vec<usize>) {
    let Some(hosts) = hosts else {
        return (vec![Host::new(":", true)], vec![0]);
    };
    // The names live as long as the process: a few strings per run, so
    // that a worker's `Who` can name its host and stay `Copy`.
    let list: Vec<Host> = hosts
        .list
        .iter()
        .map(|(name, _, local)| Host::new(Box::leak(name.clone().into_boxed_str()), *local))
        .collect();
    let mut left: Vec<usize> = hosts.list.iter().map(|(_, n, _)| *n).collect();
    let mut order = Vec::new();
    while left.iter().any(|&n| n > 0) {
        for (h, n) in left.iter_mut().enumerate() {
            if *n > 0 {
                *n -= 1;
                order.push(h);
            }
        }
    }
    (list, order)
}

impl Core {
    /// A new slot, `index`, on the host whose turn it is.
    pub(super) fn new_slot(&mut self, index: usize, now: Instant) -> Slot {
        let host = self.host_order[index % self.host_order.len()];
        let before = self.slots.iter().filter(|s| s.host == host).count();
        let sessions = self.cfg.hosts.as_ref().map_or(1, |h| h.sessions.max(1));
        let login = before / sessions;
        let h = &mut self.hosts[host];
        if !h.local {
            while h.logins.len() <= login {
                // Logins are spaced by --ssh-delay, across hosts.
                let delay = self.cfg.hosts.as_ref().map_or(Duration::ZERO, |c| c.delay);
                let at = self.next_login_at.max(now);
                self.next_login_at = at + delay;
                h.logins.push(Login::Waiting { at });
            }
        }
        Slot {
            host,
            login,
            ..Slot::default()
        }
    }

    /// The host of `slot`, while the slot exists (TTOU removes the last
    /// ones).
    pub(super) fn host_of(&self, slot: usize) -> Option<usize> {
        self.slots.get(slot).map(|s| s.host)
    }

    /// Whether a worker can start in `slot` now: its host is not down and,
    /// for a remote one, its login is up.
    pub(super) fn slot_can_start(&self, slot: usize) -> bool {
        let Some(s) = self.slots.get(slot) else {
            return false;
        };
        let h = &self.hosts[s.host];
        h.down.is_none() && (h.local || matches!(h.logins.get(s.login), Some(Login::Up { .. })))
    }

    /// Whether `slot`'s host is given up.
    pub(super) fn slot_host_down(&self, slot: usize) -> bool {
        self.host_of(slot)
            .is_some_and(|h| self.hosts[h].down.is_some())
    }

    /// Starts the logins that are due, and gives up on the ones that take
    /// too long to come up.
    pub(super) fn tend_logins(&mut self, now: Instant) {
        if self.cfg.hosts.is_none() {
            return;
        }
        let wanted = self.may_spawn();
        let mut actions = Vec::new();
        for (h, host) in self.hosts.iter_mut().enumerate() {
            if host.down.is_some() {
                continue;
            }
            for (l, login) in host.logins.iter_mut().enumerate() {
                match *login {
                    Login::Waiting { at } if wanted && at <= now => {
                        *login = Login::Starting;
                        actions.push(Action::StartLogin { host: h, login: l });
                    }
                    Login::Connecting { pid, since }
                        if now.saturating_duration_since(since) > self.cfg.start_timeout =>
                    {
                        // Its end is handled when it is reaped.
                        actions.push(Action::StopLogin { pid, kill: true });
                    }
                    _ => {}
                }
            }
        }
        self.actions.extend(actions);
    }

    /// A login asked for runs, or could not start.
    pub(super) fn on_login_started(
        &mut self,
        h: usize,
        l: usize,
        result: Result<i32, String>,
        now: Instant,
    ) {
        let Some(login) = self
            .hosts
            .get_mut(h)
            .and_then(|host| host.logins.get_mut(l))
        else {
            return;
        };
        match result {
            Ok(pid) => {
                *login = Login::Connecting { pid, since: now };
                self.masters.insert(pid, (h, l));
            }
            Err(why) => self.login_failed(h, l, why, now),
        }
    }

    /// A login's control socket appeared.
    pub(super) fn on_login_up(&mut self, h: usize, l: usize) {
        let Some(host) = self.hosts.get_mut(h) else {
            return;
        };
        let n = host.logins.len();
        let Some(login) = host.logins.get_mut(l) else {
            return;
        };
        let Login::Connecting { pid, .. } = *login else {
            return;
        };
        *login = Login::Up { pid };
        let host = host.name;
        self.tell(LogEvent::HostLoggedIn {
            host,
            login: l,
            logins: n,
        });
    }

    /// A master connection's ssh ended. While the run goes on it is
    /// started again after a backoff, or its host is given up.
    pub(super) fn on_login_end(
        &mut self,
        pid: i32,
        how: &ExitHow,
        said: Option<String>,
        now: Instant,
    ) {
        let Some((h, l)) = self.masters.remove(&pid) else {
            return;
        };
        let host = &mut self.hosts[h];
        let was = host
            .logins
            .get_mut(l)
            .map(|login| std::mem::replace(login, Login::Closed));
        // Still connecting past the start timeout: killed by tend_logins.
        let slow = matches!(was, Some(Login::Connecting { since, .. })
            if now.saturating_duration_since(since) > self.cfg.start_timeout);
        if host.down.is_some() || self.phase != Phase::Running {
            return;
        }
        let said = said.unwrap_or_else(|| how.describe());
        let why = if slow {
            crate::reasons::login_slow(self.cfg.start_timeout, &said)
        } else {
            crate::reasons::login_ended(how, &said)
        };
        if refuses_for_good(&said) {
            self.host_down(h, why, now);
        } else {
            self.login_failed(h, l, why, now);
        }
    }

    /// A login failed: try again after a backoff, or give the host up.
    fn login_failed(&mut self, h: usize, l: usize, why: String, now: Instant) {
        let host = &mut self.hosts[h];
        host.failures += 1;
        match restart_delay(host.failures, self.cfg.max_start_failures) {
            Some(wait) => {
                if let Some(login) = host.logins.get_mut(l) {
                    *login = Login::Waiting { at: now + wait };
                }
                let host = host.name;
                self.tell(LogEvent::LoginRetry { host, why, wait });
            }
            None => self.host_down(h, why, now),
        }
    }

    /// Gives a host up: one line says why, its logins end, and its workers
    /// are stopped; the jobs they held go back to the queue uncharged.
    /// When no host is left, the run stops.
    pub(super) fn host_down(&mut self, h: usize, why: String, now: Instant) {
        let host = &mut self.hosts[h];
        if host.down.is_some() {
            return;
        }
        let name = host.name;
        host.down = Some(why.clone());
        let mut stops = Vec::new();
        for login in &mut host.logins {
            if let Some(pid) = login.pid() {
                stops.push(Action::StopLogin { pid, kill: false });
            }
            if !matches!(login, Login::Connecting { .. } | Login::Up { .. }) {
                *login = Login::Closed;
            }
        }
        self.actions.extend(stops);
        let ids: Vec<u64> = self
            .workers
            .values()
            .filter(|w| self.host_of(w.slot) == Some(h))
            .map(|w| w.id)
            .collect();
        for id in ids {
            self.stop_worker(id, KillReason::HostDown, now);
        }
        if self.hosts.iter().all(|h| h.down.is_some()) {
            self.fail(self.hosts_down());
        } else {
            self.tell(LogEvent::HostDown { host: name, why });
        }
    }

    /// Stops the run when jobs are left but no worker runs and no slot can
    /// ever start one: every wanted slot is on a host that is down (after
    /// TTOU, say), though some other host is up.
    pub(super) fn check_stranded(&mut self) {
        if self.cfg.hosts.is_none() || !self.may_spawn() || !self.workers.is_empty() {
            return;
        }
        if (0..self.target.min(self.slots.len())).any(|i| !self.slot_host_down(i)) {
            return;
        }
        self.fail(self.hosts_down());
    }

    /// The error that stops a run with no host left: the hosts that are
    /// down, and why.
    fn hosts_down(&self) -> RunError {
        let hosts = self
            .hosts
            .iter()
            .filter_map(|h| Some((h.name.to_string(), h.down.clone()?)))
            .collect();
        RunError::HostsDown { hosts }
    }

    /// The next time a login needs the loop: a due start, or a look for
    /// the control socket of one that is connecting.
    pub(super) fn next_login_wakeup(&self, now: Instant) -> Option<Instant> {
        let wanted = self.may_spawn();
        self.hosts
            .iter()
            .filter(|h| h.down.is_none())
            .flat_map(|h| h.logins.iter())
            .filter_map(|l| match *l {
                Login::Waiting { at } if wanted => Some(at),
                Login::Connecting { .. } => Some(now + Duration::from_millis(10)),
                _ => None,
            })
            .min()
    }

    /// Per host, for the progress line and the status table: its name,
    /// live workers, and whether it is down. Empty without `--host`.
    pub(super) fn host_counts(&self) -> Vec<crate::report::HostCount> {
        if self.cfg.hosts.is_none() {
            return Vec::new();
        }
        self.hosts
            .iter()
            .enumerate()
            .map(|(i, h)| crate::report::HostCount {
                name: h.name,
                workers: self
                    .workers
                    .values()
                    .filter(|w| self.host_of(w.slot) == Some(i))
                    .count(),
                down: h.down.is_some(),
            })
            .collect()
    }

    /// Per host, for the summary. Empty without `--host`.
    pub(super) fn host_summaries(&self) -> Vec<crate::report::HostSummary> {
        if self.cfg.hosts.is_none() {
            return Vec::new();
        }
        self.hosts
            .iter()
            .map(|h| crate::report::HostSummary {
                name: h.name.to_string(),
                workers_started: h.started,
                jobs_done: h.jobs_done,
                down: h.down.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_go_to_the_hosts_in_turn() {
        let hosts = HostsConfig {
            list: [("alpha", 3, false), ("beta", 1, false), (":", 2, true)]
                .into_iter()
                .map(|(name, workers, local)| (name.to_string(), workers, local))
                .collect(),
            delay: Duration::ZERO,
            sessions: 10,
        };
        let (list, order) = plan(Some(&hosts));
        assert_eq!(order, vec![0, 1, 2, 0, 2, 0]);
        assert!(list[2].local && !list[0].local);
        let (list, order) = plan(None);
        assert_eq!((list.len(), order), (1, vec![0]));
    }
}
