//! Progress on long runs: a bar on a terminal, nothing when stderr is not one (or `--quiet`).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Debug, Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar on stderr if it is a terminal and not `quiet`; hidden otherwise.
    pub fn new(quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self::hidden();
        }
        let bar = ProgressBar::new(0);
        if let Ok(style) =
            ProgressStyle::with_template("{msg:>10} [{bar:40}] {pos}/{len} ({per_sec}, {eta})")
        {
            bar.set_style(style.progress_chars("=> "));
        }
        Self { bar }
    }

    /// Shows nothing.
    pub fn hidden() -> Self {
        Self {
            bar: ProgressBar::hidden(),
        }
    }

    pub fn start(&self, what: &'static str, len: u64) {
        self.bar.reset();
        self.bar.set_message(what);
        self.bar.set_length(len);
        self.bar.set_position(0);
    }

    pub fn set(&self, done: u64) {
        self.bar.set_position(done);
    }

    pub fn inc(&self) {
        self.bar.inc(1);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
