//! Carrying out the core's actions.

use std::borrow::Cow;

use nix::unistd::Pid;

use super::{Shell, clock};
use crate::core::{Action, Input, Note, SendError, StartError};
use crate::report::Report;
use crate::who::Who;
use crate::workers::transport::{Isolation, SendFailed};

impl Shell<'_> {
    /// Does everything the core asked for, in order, handing it back what
    /// came of it (a worker started, a send that failed).
    pub(super) fn drain_actions(&mut self) {
        while let Some(a) = self.core.poll_action() {
            self.act(a);
        }
    }

    fn act(&mut self, a: Action) {
        match a {
            Action::Start {
                id,
                slot,
                host,
                login,
            } => self.start(id, slot, host, login),
            Action::Send { id, job, line } => {
                let Some(t) = self.workers.get_mut(&id) else {
                    return;
                };
                if let Err(failed) = t.send(&line) {
                    // Nothing more goes to it: jobs the core had queued for
                    // it after this one went back with this one.
                    t.close_input();
                    let error = match failed {
                        SendFailed::Ended => SendError::Ended,
                        SendFailed::Io(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {
                            SendError::BrokenPipe
                        }
                        SendFailed::Io(e) => SendError::Io(e.to_string()),
                    };
                    self.core
                        .handle(Input::SendFailed { id, job, error }, clock());
                }
            }
            Action::CloseInput { id } => {
                if let Some(t) = self.workers.get_mut(&id) {
                    t.close_input();
                }
            }
            Action::Terminate { id } => {
                if let Some(t) = self.workers.get_mut(&id) {
                    t.terminate();
                }
            }
            Action::Kill { id } => {
                if let Some(t) = self.workers.get_mut(&id) {
                    t.kill();
                }
            }
            Action::Forget { id } => {
                self.workers.remove(&id);
                self.by_pid.retain(|_, w| *w != id);
            }
            Action::Attempt { line, id, record } => {
                if let Err(e) = self.out.append_joblog(&line) {
                    self.core.handle(Input::JoblogFailed(e), clock());
                }
                self.rep.report(Report::Attempt {
                    id: &id,
                    record: &record,
                });
            }
            Action::WriteResult(r) => self.out.submit(*r),
            Action::StartLogin { host, login } => {
                let result = self.logins.start(host, login);
                self.core.handle(
                    Input::LoginStarted {
                        host,
                        login,
                        result,
                    },
                    clock(),
                );
            }
            Action::StopLogin { pid, kill } => self.logins.stop(Pid::from_raw(pid), kill),
            Action::MeasureRss(list) => {
                for (id, who) in list {
                    if let Some(bytes) = rss(who) {
                        self.core.handle(Input::Rss { id, bytes }, clock());
                    }
                }
            }
            Action::Note(n) => self.tell(n),
        }
    }

    /// Starts worker `id`: the local command or thread, or over ssh on its
    /// host.
    fn start(&mut self, id: u64, slot: usize, host: usize, login: usize) {
        let launch: Cow<'_, Isolation> = match self.logins.remote_argv(self.cfg, slot, host, login)
        {
            Some(argv) => Cow::Owned(Isolation::Processes {
                argv,
                sets_own_death_signal: false,
                memory_limit: None,
            }),
            None => Cow::Borrowed(&self.cfg.isolation),
        };
        let started =
            crate::workers::transport::start(&launch, id, slot, &self.poller, &self.events);
        drop(launch);
        let input = match started {
            Ok((who, io)) => {
                if let Some(pid) = who.pid() {
                    self.by_pid.insert(Pid::from_raw(pid), id);
                }
                self.workers.insert(id, io);
                Input::Started { id, who }
            }
            Err(source)
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied
                ) =>
            {
                Input::StartFailed {
                    id,
                    error: StartError::Unrunnable(source),
                }
            }
            Err(source) => Input::StartFailed {
                id,
                error: StartError::Failed(source.to_string()),
            },
        };
        self.core.handle(input, clock());
    }

    /// Hands a note to the reporter.
    fn tell(&mut self, n: Note) {
        match n {
            Note::Event(e) => self.rep.report(Report::Event(&e)),
            Note::WorkerStarted { slot, who } => {
                self.rep.report(Report::WorkerStarted { slot, who })
            }
            Note::AllReady { workers, after } => {
                self.rep.report(Report::AllReady { workers, after });
            }
            Note::WorkerStderr {
                slot,
                host,
                pid,
                line,
            } => self.rep.report(Report::WorkerStderr {
                slot,
                host,
                pid,
                line: &line,
            }),
            Note::Replacing { slot, why } => self.rep.report(Report::Replacing { slot, why }),
            Note::Tick(p) => self.rep.report(Report::Tick(&p)),
            Note::Status(mut s) => {
                for row in &mut s.rows {
                    row.rss = row.who.and_then(rss);
                }
                self.rep.report(Report::Status(&s));
            }
        }
    }
}

/// A local worker process's resident memory in bytes
/// (`/proc/PID/statm`); a thread's cannot be told from the supervisor's,
/// and a remote worker's is on its host.
fn rss(who: Who) -> Option<u64> {
    let Who::Process(pid) = who else {
        return None;
    };
    let statm = std::fs::read_to_string(format!("/proc/{pid}/statm")).ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

/// The system's page size, read once.
fn page_size() -> u64 {
    static SIZE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *SIZE.get_or_init(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(4096)
    })
}
