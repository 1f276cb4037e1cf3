//! Who a worker is and how it ended: plain data shared by the core (which
//! decides), the shell (which spawns, reaps and signals) and the reports.
//! No system call here: a process is named by its number.

use std::fmt;

/// Who a worker is, for people and records: a process id or a thread id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// A child process (also its process group).
    Process(i32),
    /// A thread of the supervisor, by its Linux thread id.
    Thread(i32),
    /// A worker on another host: the local `ssh` process that carries its
    /// session (also that process's group).
    Remote {
        /// The local ssh's pid.
        pid: i32,
        /// The host, as given to `--host`.
        host: &'static str,
    },
}

impl Who {
    /// The number alone, for tables.
    pub fn number(self) -> i32 {
        match self {
            Who::Process(pid) | Who::Remote { pid, .. } => pid,
            Who::Thread(tid) => tid,
        }
    }

    /// The local process to wait for and signal, if it is one.
    pub fn pid(self) -> Option<i32> {
        match self {
            Who::Process(pid) | Who::Remote { pid, .. } => Some(pid),
            Who::Thread(_) => None,
        }
    }

    /// The host it runs on, when it is a remote worker.
    pub fn host(self) -> Option<&'static str> {
        match self {
            Who::Remote { host, .. } => Some(host),
            Who::Process(_) | Who::Thread(_) => None,
        }
    }

    /// The process that ran a job, for result files: the worker's own (for
    /// a remote one, its local ssh), or the supervisor's (`own`) for a
    /// thread.
    pub fn process_id(self, own: i32) -> i32 {
        match self {
            Who::Process(pid) | Who::Remote { pid, .. } => pid,
            Who::Thread(_) => own,
        }
    }

    /// Whether it is a thread: a thread cannot be killed, only abandoned.
    pub fn is_thread(self) -> bool {
        matches!(self, Who::Thread(_))
    }
}

impl fmt::Display for Who {
    /// `pid 123`, `thread 456` or `alpha, ssh pid 789`, as log lines name
    /// a worker.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Who::Process(pid) => write!(f, "pid {pid}"),
            Who::Thread(tid) => write!(f, "thread {tid}"),
            Who::Remote { pid, host } => write!(f, "{host}, ssh pid {pid}"),
        }
    }
}

/// How a worker thread ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ThreadEnd {
    /// Its job channel was closed and it returned.
    Returned,
    /// It could not start, or was sent a job line it cannot read.
    Failed(String),
    /// Its work function panicked (the message, when it had one).
    Panicked(String),
}

/// Linux signal numbers the core reasons about (a person's kill, an
/// out-of-memory death). The numbers are the same on every Linux
/// architecture callpool builds for.
pub mod sig {
    /// SIGHUP.
    pub const HUP: i32 = 1;
    /// SIGINT.
    pub const INT: i32 = 2;
    /// SIGABRT.
    pub const ABRT: i32 = 6;
    /// SIGBUS.
    pub const BUS: i32 = 7;
    /// SIGKILL.
    pub const KILL: i32 = 9;
    /// SIGSEGV.
    pub const SEGV: i32 = 11;
    /// SIGTERM.
    pub const TERM: i32 = 15;

    const NAMES: [&str; 32] = [
        "",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];

    /// `SIGKILL` for 9; `signal 40` style for the rest.
    pub fn name(n: i32) -> String {
        match usize::try_from(n).ok().and_then(|i| NAMES.get(i)) {
            Some(s) if !s.is_empty() => (*s).to_string(),
            _ => format!("SIG{n}"),
        }
    }
}

/// How a worker ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExitHow {
    /// A process exited with this code.
    Code(i32),
    /// A signal (its number) killed a process.
    Signal(i32),
    /// A thread ended.
    Thread(ThreadEnd),
    /// A thread the supervisor stopped waiting for (it cannot be killed).
    Abandoned,
}

impl ExitHow {
    /// In words: `exit status 3`, `signal SIGKILL`, `a panic: ...`.
    pub fn describe(&self) -> String {
        match self {
            ExitHow::Code(c) => format!("exit status {c}"),
            ExitHow::Signal(s) => format!("signal {}", sig::name(*s)),
            ExitHow::Thread(ThreadEnd::Returned) => "its thread returned".into(),
            ExitHow::Thread(ThreadEnd::Failed(why)) => format!("an error: {why}"),
            ExitHow::Thread(ThreadEnd::Panicked(msg)) => format!("a panic: {msg}"),
            ExitHow::Abandoned => "abandoned".into(),
        }
    }

    /// Whether it looks like a person's `kill` rather than the worker's own
    /// failure.
    pub fn by_a_person(&self) -> bool {
        matches!(
            self,
            ExitHow::Signal(sig::KILL | sig::TERM | sig::INT | sig::HUP)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_persons_kill_is_told_from_a_crash() {
        assert!(ExitHow::Signal(sig::KILL).by_a_person());
        assert!(!ExitHow::Signal(sig::SEGV).by_a_person());
        assert!(!ExitHow::Thread(ThreadEnd::Panicked("x".into())).by_a_person());
        assert_eq!(ExitHow::Signal(9).describe(), "signal SIGKILL");
        assert_eq!(
            ExitHow::Thread(ThreadEnd::Panicked("boom".into())).describe(),
            "a panic: boom"
        );
    }

    #[test]
    fn signal_names_match_the_system() {
        use nix::sys::signal::Signal;
        for s in Signal::iterator() {
            assert_eq!(sig::name(s as i32), s.as_str(), "{s:?}");
        }
    }
}
