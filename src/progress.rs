//! A progress bar on stderr for runs long enough to want one: hidden unless stderr is a
//! terminal, and only drawn once a run has taken more than a second.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

const SHOW_AFTER: Duration = Duration::from_secs(1);

pub struct Progress {
    bar: ProgressBar,
    wanted: bool,
    shown: AtomicBool,
    started: Instant,
}

impl Progress {
    /// A bar counting `total` bytes; `wanted` is the caller's choice (e.g. not with `--quiet`).
    pub fn bytes(wanted: bool, total: u64, what: &'static str) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(
                "{msg} [{bar:30}] {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_message(what);
        Progress {
            bar,
            wanted: wanted && std::io::stderr().is_terminal(),
            shown: AtomicBool::new(false),
            started: Instant::now(),
        }
    }

    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        if self.wanted
            && !self.shown.load(Ordering::Relaxed)
            && self.started.elapsed() > SHOW_AFTER
            && !self.shown.swap(true, Ordering::Relaxed)
        {
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.bar.finish_and_clear();
    }
}
