//! The system's side of workers: child processes on pipes, threads on
//! channels, sessions over ssh; the epoll poller the loop sleeps on, and
//! the events other threads hand it.

pub(crate) mod escaped;
pub mod event;
pub mod pipes;
pub mod poller;
pub mod remote;
pub(crate) mod spawn;
pub mod thread;
pub mod transport;
