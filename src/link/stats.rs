//! Counters a run updates from every worker, and the summary they add up to.

use super::{Placed, Tier};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// Live counters, shared by the workers of a run (and read by a progress display).
#[derive(Default, Debug)]
pub struct Stats {
    hardlinked: AtomicU64,
    reflinked: AtomicU64,
    copied: AtomicU64,
    bytes_copied: AtomicU64,
    unchanged: AtomicU64,
    replaced: AtomicU64,
    dirs: AtomicU64,
    symlinks: AtomicU64,
}

impl Stats {
    pub fn record(&self, placed: &Placed) {
        let counter = match placed.tier {
            None => &self.unchanged,
            Some(Tier::Hardlink) => &self.hardlinked,
            Some(Tier::Reflink) => &self.reflinked,
            Some(Tier::Copy) => &self.copied,
        };
        counter.fetch_add(1, Relaxed);
        if placed.bytes > 0 {
            self.bytes_copied.fetch_add(placed.bytes, Relaxed);
        }
        if placed.replaced {
            self.replaced.fetch_add(1, Relaxed);
        }
    }

    pub fn add_dir(&self) {
        self.dirs.fetch_add(1, Relaxed);
    }

    pub fn add_symlink(&self) {
        self.symlinks.fetch_add(1, Relaxed);
    }

    /// A snapshot; `elapsed` is the run's wall time so far.
    pub fn summary(&self, elapsed: Duration) -> Summary {
        Summary {
            hardlinked: self.hardlinked.load(Relaxed),
            reflinked: self.reflinked.load(Relaxed),
            copied: self.copied.load(Relaxed),
            bytes_copied: self.bytes_copied.load(Relaxed),
            unchanged: self.unchanged.load(Relaxed),
            replaced: self.replaced.load(Relaxed),
            dirs: self.dirs.load(Relaxed),
            symlinks: self.symlinks.load(Relaxed),
            elapsed,
        }
    }
}

/// What a run did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub hardlinked: u64,
    pub reflinked: u64,
    pub copied: u64,
    pub bytes_copied: u64,
    /// Destinations that already were the source's inode.
    pub unchanged: u64,
    /// Existing destinations replaced (`-f`); also counted under their tier.
    pub replaced: u64,
    /// Directories created or entered.
    pub dirs: u64,
    /// Symlinks recreated.
    pub symlinks: u64,
    pub elapsed: Duration,
}

impl Summary {
    /// Regular files handled, whatever the tier.
    pub fn files(&self) -> u64 {
        self.hardlinked + self.reflinked + self.copied + self.unchanged
    }

    /// One JSON object, keys fixed, for scripts.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"files\":{},\"hardlinked\":{},\"reflinked\":{},\"copied\":{},\
             \"bytes_copied\":{},\"unchanged\":{},\"replaced\":{},\"dirs\":{},\
             \"symlinks\":{},\"seconds\":{:.6}}}",
            self.files(),
            self.hardlinked,
            self.reflinked,
            self.copied,
            self.bytes_copied,
            self.unchanged,
            self.replaced,
            self.dirs,
            self.symlinks,
            self.elapsed.as_secs_f64()
        )
    }
}

/// `1234 files: 1200 hard-linked, 0 reflinked, 34 copied (1.2 MiB), 0 already linked; 56 dirs,
/// 7 symlinks in 0.12s`
impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} hard-linked, {} reflinked, {} copied ({}), {} already linked",
            Count(self.files(), "file"),
            self.hardlinked,
            self.reflinked,
            self.copied,
            Bytes(self.bytes_copied),
            self.unchanged
        )?;
        if self.replaced > 0 {
            write!(f, ", {} replaced", self.replaced)?;
        }
        write!(
            f,
            "; {}, {} in {:.2}s",
            Count(self.dirs, "dir"),
            Count(self.symlinks, "symlink"),
            self.elapsed.as_secs_f64()
        )
    }
}

/// A count for people: `1 file`, `2 files`; `1 entry`, `0 entries`.
pub struct Count<'a>(pub u64, pub &'a str);

impl fmt::Display for Count<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.0, self.1.strip_suffix('y')) {
            (1, _) => write!(f, "1 {}", self.1),
            (n, Some(stem)) => write!(f, "{n} {stem}ies"),
            (n, None) => write!(f, "{n} {}s", self.1),
        }
    }
}

/// A byte count for people: `0 B`, `512 B`, `1.5 KiB`, `3.2 GiB`.
pub struct Bytes(pub u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
        if self.0 < 1024 {
            return write!(f, "{} B", self.0);
        }
        let mut value = self.0 as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit < UNITS.len() - 1 {
            value /= 1024.0;
            unit += 1;
        }
        write!(f, "{value:.1} {}", UNITS[unit])
    }
}
