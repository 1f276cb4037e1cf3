//! Writes `DIR/runlog.jsonl` (docs/formats.md §7): what the page of
//! `supervisor report` needs and the joblog cannot tell. It is written
//! here, by the binary, from the engine's reports (a wrapper around the
//! console's reporter), never by the engine: run start and end, worker
//! starts and why they replaced others, budget pauses, slowdowns, stops.
//!
//! The run log is a help, not the run's purpose: a run log that cannot be
//! opened or written is one warning, and the run goes on without it.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::SystemTime;

use callpool_pool::Summary;
use callpool_pool::events::LogEvent;
use callpool_pool::folder::SafeDir;
use callpool_pool::{Interrupt, Isolation, PoolConfig, Report, Reporter, Who};
use callpool_report::{Event, RUNLOG_NAME};
use nix::fcntl::OFlag;
use nix::sys::stat::Mode;

/// Now, as the joblog writes times.
fn now() -> String {
    let ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    callpool_report::time::format_ms(ms)
}

/// The run log: opened when the first worker starts, so that a run that
/// stops before (a bad folder, a read-only disk: the engine says why)
/// leaves no run log and no second message.
pub struct RunLog {
    file: Option<File>,
    out: std::path::PathBuf,
    shown: String,
    quiet: bool,
    /// The run's start, written first once the log is open.
    start: Option<Event>,
    /// Whether opening was tried (and so whether an end is written).
    opened: bool,
}

impl RunLog {
    /// Notes the run's start, to be written to `DIR/runlog.jsonl` (opened
    /// for appending, never through a link) when the first worker starts.
    pub fn start(out: &Path, cfg: &PoolConfig, jobs: u64, resume: bool, quiet: bool) -> Self {
        let start = Event::RunStart {
            at: now(),
            pid: std::process::id(),
            workers: cfg.workers as u64,
            isolation: match cfg.isolation {
                Isolation::Threads(_) => "threads".into(),
                _ => "processes".into(),
            },
            hosts: cfg
                .hosts
                .as_ref()
                .map(|h| h.list.iter().map(|p| p.name.clone()).collect())
                .unwrap_or_default(),
            rate: cfg.rate,
            jobs,
            resume,
        };
        RunLog {
            file: None,
            out: out.to_path_buf(),
            shown: out.join(RUNLOG_NAME).display().to_string(),
            quiet,
            start: Some(start),
            opened: false,
        }
    }

    /// Opens the log, once, and writes the run's start.
    fn open(&mut self) {
        if self.opened {
            return;
        }
        self.opened = true;
        let opened = SafeDir::open(&self.out).and_then(|d| {
            d.open_regular(
                RUNLOG_NAME,
                OFlag::O_WRONLY | OFlag::O_APPEND | OFlag::O_CREAT,
                Mode::from_bits_truncate(0o644),
            )
        });
        match opened {
            Ok(f) => self.file = Some(f),
            Err(e) if !self.quiet => eprintln!(
                "supervisor: warning: the run log {} cannot be written ({e}): `supervisor report` will not show this run's worker starts, pauses and stops",
                self.shown
            ),
            Err(_) => {}
        }
        if let Some(start) = self.start.take() {
            self.write(&start);
        }
    }

    fn write(&mut self, e: &Event) {
        if let Some(f) = &mut self.file
            && let Err(err) = f.write_all(e.to_line().as_bytes())
        {
            eprintln!(
                "supervisor: warning: the run log {} could not be written ({err}); it is not written again in this run",
                self.shown
            );
            self.file = None;
        }
    }

    /// The reporter to give the engine: `inner`'s, recording as it goes.
    pub fn recorder<'a, R: Reporter>(&'a mut self, inner: &'a mut R) -> Recorder<'a, R> {
        Recorder {
            log: self,
            inner,
            replacing: Vec::new(),
            paused_until: None,
        }
    }

    /// Writes the run's end (when the run got as far as a worker).
    pub fn end(&mut self, summary: Option<&Summary>, exit: u8) {
        if !self.opened {
            return;
        }
        let s = summary.cloned().unwrap_or_default();
        self.write(&Event::RunEnd {
            at: now(),
            exit,
            ok: s.progress.ok,
            failed: s.progress.failed,
            skipped: s.progress.skipped,
            not_run: s.not_run,
            retried: s.retried,
            dedup_saved: s.dedup_saved,
            failed_by_kind: s.failed_by_kind,
            restarts: s.restarts,
            abandoned: s.abandoned,
        });
    }
}

/// Passes every report on, and writes the ones the page needs.
pub struct Recorder<'a, R> {
    log: &'a mut RunLog,
    inner: &'a mut R,
    /// Why the next worker of a slot replaces the one before.
    replacing: Vec<(usize, &'static str)>,
    paused_until: Option<SystemTime>,
}

impl<R: Reporter> Reporter for Recorder<'_, R> {
    fn report(&mut self, report: Report<'_>) {
        match &report {
            Report::Replacing { slot, why } => self.replacing.push((*slot, why)),
            Report::WorkerStarted { slot, who } => {
                self.log.open();
                let replaces = self
                    .replacing
                    .iter()
                    .position(|(s, _)| s == slot)
                    .map(|i| self.replacing.swap_remove(i).1.to_string());
                let (pid, thread, host) = match who {
                    Who::Process(p) => (Some(i64::from(*p)), None, None),
                    Who::Thread(t) => (None, Some(i64::from(*t)), None),
                    Who::Remote { pid, host } => {
                        (Some(i64::from(*pid)), None, Some(host.to_string()))
                    }
                };
                self.log.write(&Event::WorkerStart {
                    at: now(),
                    slot: *slot as u64,
                    pid,
                    thread,
                    host,
                    replaces,
                });
            }
            Report::Event(LogEvent::Stopping(stop)) => self.log.write(&Event::Stopping {
                at: now(),
                why: match stop.interrupt() {
                    Interrupt::Graceful => "interrupted",
                    Interrupt::Forced => "killed",
                    Interrupt::ApiStop => "stop_if",
                }
                .into(),
            }),
            Report::Event(LogEvent::SlowedDown { rate }) => self.log.write(&Event::SlowDown {
                at: now(),
                rate: *rate,
            }),
            Report::Tick(p) => {
                // A pause shows in every tick while it lasts; it is written
                // when it begins, and again when the server moves its end.
                let until = p.paused.as_ref().map(|(u, _)| *u);
                let moved = match (until, self.paused_until) {
                    (Some(u), Some(before)) => {
                        let d = u.duration_since(before).unwrap_or_else(|e| e.duration());
                        d > std::time::Duration::from_secs(1)
                    }
                    (Some(_), None) => true,
                    _ => false,
                };
                if let (true, Some((u, why))) = (moved, &p.paused) {
                    let ms = u
                        .duration_since(SystemTime::UNIX_EPOCH)
                        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
                    self.log.write(&Event::Pause {
                        at: now(),
                        until: callpool_report::time::format_ms(ms),
                        why: crate::ui::words::pause_why(*why).to_string(),
                    });
                }
                self.paused_until = until;
            }
            _ => {}
        }
        self.inner.report(report);
    }
}
