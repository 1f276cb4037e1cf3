//! How a run looks on stderr: log lines, worker stderr, a live progress bar
//! (on a terminal) or a progress line every few seconds (elsewhere), and the
//! closing summary, for people and as JSON for scripts.

use std::collections::VecDeque;
use std::fmt::Display;
use std::io::{IsTerminal, Write};
use std::time::Duration;

use callpool_pool::{Level, Progress, Report, Reporter, Who};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::ColorWhen;
use terminal::{EchoCtl, foreground};

/// Whether stderr is a terminal that can show a progress bar: a tty whose
/// `TERM` is set and not `dumb` (indicatif draws nothing otherwise).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
        && std::env::var("TERM").is_ok_and(|t| !t.is_empty() && t != "dumb")
}

/// Whether to colour stderr, by the usual conventions: `--color always` or
/// `never` decide; `auto` colours a terminal unless `NO_COLOR` is set to a
/// non-empty value. Also tells `console` (and so indicatif) the answer.
pub fn decide_color(when: ColorWhen) -> bool {
    let on = match when {
        ColorWhen::Always => true,
        ColorWhen::Never => false,
        ColorWhen::Auto => {
            stderr_is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
        }
    };
    console::set_colors_enabled_stderr(on);
    console::set_colors_enabled(on);
    on
}

/// Colours text when colour is on, and leaves it alone otherwise.
#[derive(Debug, Clone, Copy)]
pub struct Paint(pub bool);

impl Paint {
    fn apply(self, s: impl Display, f: impl FnOnce(console::Style) -> console::Style) -> String {
        if self.0 {
            f(console::Style::new().force_styling(true))
                .apply_to(s)
                .to_string()
        } else {
            s.to_string()
        }
    }
    /// Good news.
    pub fn green(self, s: impl Display) -> String {
        self.apply(s, |st| st.green())
    }
    /// Bad news.
    pub fn red(self, s: impl Display) -> String {
        self.apply(s, |st| st.red())
    }
    /// Something to look at.
    pub fn yellow(self, s: impl Display) -> String {
        self.apply(s, |st| st.yellow())
    }
    /// A heading or the word that matters.
    pub fn bold(self, s: impl Display) -> String {
        self.apply(s, |st| st.bold())
    }
    /// Less important.
    pub fn dim(self, s: impl Display) -> String {
        self.apply(s, |st| st.dim())
    }
    /// Red if the count is not zero.
    fn red_if(self, n: u64, s: impl Display) -> String {
        if n > 0 { self.red(s) } else { s.to_string() }
    }
    /// Yellow if the count is not zero.
    fn yellow_if(self, n: u64, s: impl Display) -> String {
        if n > 0 { self.yellow(s) } else { s.to_string() }
    }
}

/// How the console shows a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The most detailed level shown.
    pub level: Level,
    /// Draw a live progress bar (stderr is a terminal and not `--quiet`).
    pub bar: bool,
    /// Without a bar: print a progress line this often (None: never).
    pub progress_every: Option<Duration>,
    /// Colour on.
    pub color: bool,
    /// Jobs in the file, for the bar's length before the first tick.
    pub total: u64,
}

/// More worker starts than this at once are told in one line when a bar is
/// shown (256 workers would otherwise push everything off the screen).
const STARTS_LISTED: usize = 3;
/// The window over which the current pace (and so the ETA) is measured.
const SPEED_WINDOW: Duration = Duration::from_secs(10);
/// A job in flight longer than this is named in the progress display.
const SLOW: Duration = Duration::from_secs(1);

/// The engine's reporter for the command line: log lines, worker stderr,
/// attempts, the status table, and progress as a bar or as lines.
pub struct Console {
    opts: Options,
    paint: Paint,
    /// The bar (None without a terminal); drawn from the first tick on.
    bar: Option<ProgressBar>,
    shown: bool,
    speed: Speed,
    last_line: Duration,
    /// Worker starts not told yet (bar mode only).
    starts: Vec<(usize, Who)>,
    announced: bool,
    /// The terminal's settings while the bar hides the `^C` echo.
    echo: EchoCtl,
}

impl Console {
    /// A console for one run.
    pub fn new(opts: Options) -> Self {
        let bar = opts.bar.then(|| {
            let style = ProgressStyle::with_template(
                "{spinner:.green} {bar:25.cyan/blue} {pos}/{len} {prefix}\n  {wide_msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("█▉▊▋▌▍▎▏ ");
            let bar = ProgressBar::with_draw_target(Some(opts.total), ProgressDrawTarget::hidden());
            bar.set_style(style);
            bar
        });
        Console {
            paint: Paint(opts.color),
            opts,
            bar,
            shown: false,
            speed: Speed::default(),
            last_line: Duration::ZERO,
            starts: Vec::new(),
            announced: false,
            echo: EchoCtl::default(),
        }
    }

    /// Prints one line (or several) above the bar, or plainly without one.
    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) if self.shown => bar.println(text),
            _ => {
                let _ = writeln!(std::io::stderr().lock(), "{text}");
            }
        }
    }

    /// Removes the bar, so that what follows (the summary, an error) starts
    /// on a clean line. Lines still pending are printed first.
    pub fn finish(&mut self) {
        self.flush_starts(false);
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        self.shown = false;
        self.echo.restore();
    }

    fn log(&self, level: Level, msg: &str) {
        let text = match level {
            Level::Error => self.paint.red(msg),
            Level::Warn => self.paint.yellow(msg),
            Level::Info | Level::Debug => msg.to_string(),
        };
        self.line(&format!("supervisor: {text}"));
    }

    /// Tells the worker starts gathered since the last tick: one line each
    /// when they are few, one line for all when they are many; the first
    /// time, while the run goes on, also the supervisor's own pid.
    fn flush_starts(&mut self, running: bool) {
        if self.starts.is_empty() {
            return;
        }
        let starts = std::mem::take(&mut self.starts);
        if starts.len() <= STARTS_LISTED {
            for (slot, who) in &starts {
                self.line(&format!("supervisor: worker {slot} started ({who})"));
            }
        } else {
            let lo = starts
                .iter()
                .map(|s| s.1.number())
                .min()
                .unwrap_or_default();
            let hi = starts
                .iter()
                .map(|s| s.1.number())
                .max()
                .unwrap_or_default();
            let ids = match starts[0].1 {
                Who::Process(_) | Who::Remote { .. } => "pids",
                Who::Thread(_) => "threads",
            };
            self.line(&format!(
                "supervisor: {} workers started ({ids} {lo} to {hi})",
                starts.len()
            ));
        }
        if running && !self.announced {
            self.announced = true;
            let me = std::process::id();
            self.line(&self.paint.dim(format!(
                "supervisor: pid {me} (kill -USR1 {me} prints a status table with every worker's pid)"
            )));
        }
    }

    fn tick(&mut self, p: &Progress) {
        self.speed.record(p);
        if let Some(bar) = &self.bar {
            // Drawn only while the run owns the terminal: after Ctrl-Z and
            // `bg` (or when started with `&`) the shell does, and a bar would
            // scribble over its prompt; log lines go on as plain lines.
            match (foreground(), self.shown) {
                (Some(false), true) => {
                    bar.set_draw_target(ProgressDrawTarget::hidden());
                    self.shown = false;
                    self.echo.forget();
                }
                (Some(true) | None, false) => {
                    bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(10));
                    self.shown = true;
                    self.echo.hide();
                }
                _ => {}
            }
            self.flush_starts(p.workers > 0);
            if let Some(bar) = self.bar.as_ref().filter(|_| self.shown) {
                bar.set_length(p.total);
                bar.set_position(p.done());
                bar.set_prefix(counts(p, self.paint));
                bar.set_message(pace(p, &self.speed, " · "));
                bar.tick();
            }
        } else if let Some(every) = self.opts.progress_every {
            if self.opts.level >= Level::Info && p.elapsed >= self.last_line + every {
                self.last_line = p.elapsed;
                self.line(&progress_line(p, &self.speed));
            }
        }
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Reporter for Console {
    fn report(&mut self, report: Report<'_>) {
        let level = self.opts.level;
        match report {
            Report::Event(e) if e.level() <= level => self.log(e.level(), &words::say(e)),
            Report::WorkerStarted { slot, who } if level >= Level::Info => {
                if self.bar.is_some() {
                    self.starts.push((slot, who));
                } else {
                    self.log(Level::Info, &format!("worker {slot} started ({who})"));
                }
            }
            Report::AllReady { workers, after } if level >= Level::Info => {
                let msg = format!("all {workers} workers ready in {:.3}s", after.as_secs_f64());
                self.log(Level::Info, &msg);
            }
            Report::WorkerStderr {
                slot,
                host,
                pid,
                line,
            } if level >= Level::Warn => {
                let who = match (slot, host) {
                    (Some(s), Some(h)) => format!("[worker {s} {h}, ssh pid {pid}]"),
                    (Some(s), None) => format!("[worker {s} pid {pid}]"),
                    (None, _) => format!("[pid {pid}]"),
                };
                self.line(&format!("{} {line}", self.paint.dim(who)));
            }
            Report::Attempt { id, record } if level >= Level::Debug => self.line(&format!(
                "supervisor: job {id:?} attempt {} on worker {} (pid {}): {}{} in {:.1} ms",
                record.attempt,
                record.slot,
                record.pid,
                record.outcome,
                record.status.map(|s| format!(" {s}")).unwrap_or_default(),
                record.elapsed_ms
            )),
            Report::Status(view) => self.line(&status::format(view)),
            Report::Tick(p) => self.tick(p),
            _ => {}
        }
    }
}

/// The pace of a run, measured over the last few seconds so that the ETA
/// follows changes (a slower API, fewer workers).
#[derive(Debug, Default)]
struct Speed {
    samples: VecDeque<(Duration, u64)>,
}

impl Speed {
    fn record(&mut self, p: &Progress) {
        let ran = p.ok + p.failed;
        self.samples.push_back((p.elapsed, ran));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|s| p.elapsed.saturating_sub(s.0) >= SPEED_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// Jobs finished per second: over the window once it spans a second,
    /// over the whole run before that.
    fn per_sec(&self) -> f64 {
        let (Some(first), Some(last)) = (self.samples.front(), self.samples.back()) else {
            return 0.0;
        };
        let span = last.0.saturating_sub(first.0).as_secs_f64();
        if span >= 1.0 {
            (last.1 - first.1.min(last.1)) as f64 / span
        } else if last.0 > Duration::ZERO {
            last.1 as f64 / last.0.as_secs_f64()
        } else {
            0.0
        }
    }
}

/// "1190 ok, 10 failed, 3 retrying" (and skipped, when some were).
fn counts(p: &Progress, paint: Paint) -> String {
    let mut s = format!(
        "{}, {}, {}",
        paint.green(format!("{} ok", p.ok)),
        paint.red_if(p.failed, format!("{} failed", p.failed)),
        paint.yellow_if(p.retrying, format!("{} retrying", p.retrying)),
    );
    if p.skipped > 0 {
        s.push_str(&format!(", {} skipped", p.skipped));
    }
    s
}

/// "240 jobs/s, ETA 16s, 8 workers" and the slowest job in flight when one
/// has taken more than a second.
fn pace(p: &Progress, speed: &Speed, sep: &str) -> String {
    let rate = speed.per_sec();
    let left = p.total.saturating_sub(p.done());
    let eta = if left == 0 {
        "0s".to_string()
    } else if rate > 0.0 {
        human(Duration::from_secs_f64((left as f64 / rate).min(1e9)))
    } else {
        "?".to_string()
    };
    let mut s = format!(
        "{} jobs/s{sep}ETA {eta}{sep}{} elapsed{sep}{} worker{}",
        rate_text(rate),
        human(p.elapsed),
        p.workers,
        if p.workers == 1 { "" } else { "s" }
    );
    if !p.hosts.is_empty() {
        // "(alpha 32, beta 31, gamma down)"
        let hosts: Vec<String> = p
            .hosts
            .iter()
            .map(|h| {
                if h.down {
                    format!("{} down", h.name)
                } else {
                    format!("{} {}", h.name, h.workers)
                }
            })
            .collect();
        s.push_str(&format!(" ({})", hosts.join(", ")));
    }
    if let Some((id, d)) = p.slowest.as_ref().filter(|(_, d)| *d >= SLOW) {
        s.push_str(&format!("{sep}slowest: {id} ({})", human(*d)));
    }
    if let Some((until, why)) = &p.paused {
        let left = until
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default();
        s.push_str(&format!(
            "{sep}paused {} more ({}, until {})",
            human(left),
            words::pause_why(*why),
            humantime::format_rfc3339_seconds(*until)
        ));
    }
    s
}

/// The line printed every `--progress-every` when there is no bar:
/// `progress: 1200/5000 done (1190 ok, 10 failed, 3 retrying), 240 jobs/s, ETA 16s, ...`
fn progress_line(p: &Progress, speed: &Speed) -> String {
    format!(
        "progress: {}/{} done ({}), {}",
        p.done(),
        p.total,
        counts(p, Paint(false)),
        pace(p, speed, ", ")
    )
}

pub(super) fn rate_text(rate: f64) -> String {
    if rate < 10.0 {
        format!("{rate:.1}")
    } else {
        format!("{rate:.0}")
    }
}

/// 0.5s, 16s, 2m05s, 1h02m.
pub(super) fn human(d: Duration) -> String {
    if d < Duration::from_secs(10) {
        return format!("{:.1}s", d.as_secs_f64());
    }
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    }
}

/// A latency for people: 3.2 ms, 1.25 s.
pub(super) fn latency(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

mod status;
mod summary;
mod terminal;
pub mod words;
pub use summary::{print_summary, summary_json, write_atomically};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_millis(510)), "0.5s");
        assert_eq!(human(Duration::from_millis(2500)), "2.5s");
        assert_eq!(human(Duration::from_secs(16)), "16s");
        assert_eq!(human(Duration::from_secs(125)), "2m05s");
        assert_eq!(human(Duration::from_secs(3720)), "1h02m");
    }

    #[test]
    fn the_progress_line_says_everything_in_one_line() {
        let mut speed = Speed::default();
        let mut p = Progress {
            total: 5000,
            workers: 8,
            ..Progress::default()
        };
        for i in 0..=20u64 {
            p.elapsed = Duration::from_millis(i * 100);
            p.ok = i * 24;
            speed.record(&p);
        }
        p.failed = 10;
        p.ok = 1190;
        p.retrying = 3;
        p.elapsed = Duration::from_secs(5);
        speed.record(&p);
        p.slowest = Some(("job-00042".into(), Duration::from_millis(2100)));
        let line = progress_line(&p, &speed);
        assert!(
            line.starts_with("progress: 1200/5000 done (1190 ok, 10 failed, 3 retrying), "),
            "{line}"
        );
        assert!(line.contains(" jobs/s, ETA "), "{line}");
        assert!(
            line.contains(", 8 workers, slowest: job-00042 (2.1s)"),
            "{line}"
        );
        assert!(!line.contains('\x1b'), "{line}");
    }

    #[test]
    fn the_pace_follows_the_last_seconds() {
        let mut speed = Speed::default();
        let mut p = Progress::default();
        // 100 jobs/s for 20 s, then 10 jobs/s for 20 s.
        for t in 0..=400u64 {
            p.elapsed = Duration::from_millis(t * 100);
            p.ok = if t <= 200 { t * 10 } else { 2000 + (t - 200) };
            speed.record(&p);
        }
        let r = speed.per_sec();
        assert!((9.0..=11.0).contains(&r), "{r}");
    }
}
