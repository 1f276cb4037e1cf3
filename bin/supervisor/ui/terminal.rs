//! The terminal under the progress bar: whether the run owns it, and the
//! echo of control characters while the bar is drawn.

/// Whether this process is in the foreground of its terminal (stderr):
/// None when stderr is not its controlling terminal (then no shell shares it).
pub(super) fn foreground() -> Option<bool> {
    nix::unistd::tcgetpgrp(std::io::stderr())
        .ok()
        .map(|pg| pg == nix::unistd::getpgrp())
}

/// Turns off the terminal's echo of control characters while the bar is
/// drawn. The bar keeps the cursor at the right edge of its last line, so
/// the `^C` a terminal echoes on Ctrl-C would wrap it and leave a stale copy
/// of the bar above the summary. Restored when the bar goes away; only ever
/// changed while the run is in the foreground (a background process group
/// changing it would get SIGTTOU, which means "one worker fewer" here).
#[derive(Default)]
pub(super) struct EchoCtl {
    saved: Option<nix::sys::termios::Termios>,
}

impl EchoCtl {
    pub(super) fn hide(&mut self) {
        use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
        if self.saved.is_some() || foreground() != Some(true) {
            return;
        }
        let Ok(saved) = tcgetattr(std::io::stderr()) else {
            return;
        };
        if !saved.local_flags.contains(LocalFlags::ECHOCTL) {
            return;
        }
        let mut quiet = saved.clone();
        quiet.local_flags.remove(LocalFlags::ECHOCTL);
        if tcsetattr(std::io::stderr(), SetArg::TCSANOW, &quiet).is_ok() {
            self.saved = Some(saved);
        }
    }

    pub(super) fn restore(&mut self) {
        if let Some(saved) = self.saved.take() {
            if foreground() == Some(true) {
                let _ = nix::sys::termios::tcsetattr(
                    std::io::stderr(),
                    nix::sys::termios::SetArg::TCSANOW,
                    &saved,
                );
            }
        }
    }

    /// In the background the shell owns the terminal's settings.
    pub(super) fn forget(&mut self) {
        self.saved = None;
    }
}
