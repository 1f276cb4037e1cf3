//! What the loop sleeps on: every worker pipe, plus a waker that other
//! threads (signals, result writers, the job source) poke after queueing
//! something for the loop.

use std::io;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::time::Duration;

use crossbeam_channel::Sender;
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::workers::event::Event;
use crate::workers::pipes::{LongLines, SharedLongLines};

/// The token [`Poller::wait`] reports for the waker.
pub const WAKER_TOKEN: u64 = u64::MAX;

/// An epoll set and its waker.
pub struct Poller {
    epoll: Epoll,
    waker: Arc<Waker>,
    events: Vec<EpollEvent>,
    long_lines: SharedLongLines,
}

impl Poller {
    /// A poller watching only its waker.
    pub fn new() -> io::Result<Self> {
        let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC)?;
        let waker = Arc::new(Waker {
            fd: EventFd::from_flags(EfdFlags::EFD_CLOEXEC | EfdFlags::EFD_NONBLOCK)?,
            wanted: AtomicBool::new(false),
            // Asleep until the loop first says it is not: a sender before
            // the first turn wakes it, as before.
            sleeping: AtomicBool::new(true),
        });
        epoll.add(&waker.fd, EpollEvent::new(EpollFlags::EPOLLIN, WAKER_TOKEN))?;
        Ok(Self {
            epoll,
            waker,
            events: vec![EpollEvent::empty(); 256],
            long_lines: LongLines::shared(),
        })
    }

    /// The waker, for other threads.
    pub fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// The loop is about to sleep (`true`, before it looks at its channel
    /// one last time) or is awake again (`false`): only a sleeping loop is
    /// woken by [`EventSender::send`], so that a burst of results costs one
    /// eventfd write and one wake-up, not one per result.
    pub fn sleeping(&self, asleep: bool) {
        self.waker.sleeping.store(asleep, Ordering::SeqCst);
        // The store must be visible before the loop's last look at its
        // channel (the sender has the matching fence in `send`).
        fence(Ordering::SeqCst);
    }

    /// See [`Waker::want_job`]: the loop says whether it waits for a job.
    pub fn want_job(&self, wanted: bool) {
        self.waker.want_job(wanted);
    }

    /// Watches `fd` for input (and hang-up), reported as `token`.
    pub fn watch(&self, fd: impl AsFd, token: u64) -> io::Result<()> {
        Ok(self
            .epoll
            .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token))?)
    }

    /// The long-line turn shared by the stdout pipes it watches.
    pub fn long_lines(&self) -> &SharedLongLines {
        &self.long_lines
    }

    /// Stops watching `fd` (closing it does that too).
    pub fn unwatch(&self, fd: impl AsFd) {
        let _ = self.epoll.delete(fd);
    }

    /// Sleeps until a watched fd is readable, the waker is poked, or
    /// `timeout` passes; returns the tokens that are ready. The waker is
    /// reset before it is reported.
    pub fn wait(&mut self, timeout: Duration, ready: &mut Vec<u64>) {
        ready.clear();
        // epoll counts whole milliseconds: round up, so that a timer due in
        // 0.3 ms does not make the loop spin until it is.
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let timeout = EpollTimeout::try_from(ms).unwrap_or(EpollTimeout::MAX);
        let n = self.epoll.wait(&mut self.events, timeout).unwrap_or(0);
        for ev in &self.events[..n] {
            if ev.data() == WAKER_TOKEN {
                let _ = self.waker.fd.read();
            }
            ready.push(ev.data());
        }
    }
}

/// Wakes the loop from another thread.
pub struct Waker {
    fd: EventFd,
    /// Set by the loop while it waits for a job from the source; the source
    /// pokes the waker only then, instead of once per job.
    wanted: AtomicBool,
    /// Set while the loop sleeps (or is about to): events wake it only
    /// then.
    sleeping: AtomicBool,
}

impl Waker {
    /// Wakes the loop (it may already be awake; that is fine).
    pub fn wake(&self) {
        let _ = self.fd.write(1);
    }

    /// The loop is about to sleep until a job comes: the next
    /// [`Waker::job_sent`] pokes it.
    pub fn want_job(&self, wanted: bool) {
        self.wanted.store(wanted, Ordering::SeqCst);
        // The loop next looks at the channel: this store must be visible
        // before that load, or a job sent in between could wake nobody
        // (the store-load pair that only a full fence orders; the source
        // has the matching one in `job_sent`). A lost wake-up would cost
        // one tick (100 ms), not a hang.
        fence(Ordering::SeqCst);
    }

    /// The job source queued a job: wakes the loop if it waits for one.
    pub fn job_sent(&self) {
        fence(Ordering::SeqCst);
        if self.wanted.swap(false, Ordering::SeqCst) {
            self.wake();
        }
    }
}

/// Sends events to the loop from another thread, waking it.
#[derive(Clone)]
pub struct EventSender {
    tx: Sender<Event>,
    waker: Arc<Waker>,
}

impl EventSender {
    /// Sends through `tx` and pokes `waker`.
    pub fn new(tx: Sender<Event>, waker: Arc<Waker>) -> Self {
        Self { tx, waker }
    }

    /// Queues `ev` for the loop and wakes it if it sleeps; false once the
    /// loop is gone.
    pub fn send(&self, ev: Event) -> bool {
        let ok = self.tx.send(ev).is_ok();
        // Either the loop sees this event when it last looks at its
        // channel before sleeping, or this sees it asleep and wakes it.
        fence(Ordering::SeqCst);
        if self.waker.sleeping.swap(false, Ordering::SeqCst) {
            self.waker.wake();
        }
        ok
    }
}

impl crate::jobs::feeder::Wake for Waker {
    fn job_sent(&self) {
        Waker::job_sent(self);
    }

    fn wake(&self) {
        Waker::wake(self);
    }
}

impl crate::files::output::Failures for EventSender {
    fn write_failed(&self, id: String, error: std::io::Error) {
        self.send(crate::workers::event::Event::WriteFailed { id, error });
    }
}
