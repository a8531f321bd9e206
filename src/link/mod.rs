//! Tiered linking: give a destination the content of a source by the cheapest means that works,
//! a hard link, then a reflink, then a copy, for one file ([`Linker::link_file`]) or a whole tree
//! ([`tree::mirror`]).
//!
//! # Tiers and when they give way
//!
//! | tier | cost | shares | gives way on |
//! |---|---|---|---|
//! | hard link (`linkat`) | O(1) | the inode | EPERM (immutable/append-only sources, `protected_hardlinks`, macOS signed bundles), EMLINK, EXDEV |
//! | reflink (`FICLONE`) | O(extents) | data blocks, copy-on-write | EOPNOTSUPP/ENOTSUP/ENOTTY (no reflinks here), EINVAL, EXDEV |
//! | copy (`copy_file_range`, else read/write) | O(size) | nothing | nothing: it is the last resort |
//!
//! A failed tier moves on to the next one for that file only, except EXDEV and "this file system
//! has no reflinks", which are facts about a (source device, destination device) pair: the
//! [`Linker`] learns them once and never repeats the doomed call for that pair, so a cross-device
//! run of 100k files makes one failing `linkat`, not 100k. ENOENT, EACCES, ENOSPC, EIO and
//! everything else not listed are errors, never reasons to try something slower.
//!
//! A strict [`Mode`] has one tier; when it cannot serve a file the error names the errno and the
//! mode that would work ([`crate::ErrorKind::TierRefused`]).
//!
//! # What a new inode keeps
//!
//! A reflink or copy is a new file: it gets the source's mode bits (setuid/setgid/sticky
//! included), access and modification times, extended attributes (ACLs, security labels)
//! where the destination takes them, and, when we run as root, its owner and group. A mirrored
//! directory gets its source's mode, times and (as root) owner. A hard link shares all of it
//! by definition.
//!
//! Nothing here calls `fsync`: like `cp`, a link tree is as durable as the file system makes it.

mod backend;
mod data;
mod linker;
mod memory;
mod stats;
pub mod tree;

pub use data::{clone_or_copy, try_clone};
pub use linker::{Linker, Placed};
pub(crate) use linker::{Side, dev_of, mode_of, perm};
pub use stats::{Bytes, Count, Stats, Summary};

/// Which tiers a run may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Mode {
    /// Hard link, else reflink, else copy, decided per file.
    Auto,
    /// Hard links only: the destination shares the source's inode.
    Hardlink,
    /// Reflinks only: a new inode sharing data blocks copy-on-write.
    Reflink,
    /// Copies only: a new inode with its own blocks (the kernel may still share them).
    Copy,
    /// Reflink, else copy: never shares an inode, safe when the destination will be edited.
    CloneOrCopy,
}

/// The means by which one file was linked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Tier {
    Hardlink,
    Reflink,
    Copy,
}

impl Mode {
    /// The tiers tried, in order.
    pub fn tiers(self) -> &'static [Tier] {
        match self {
            Mode::Auto => &[Tier::Hardlink, Tier::Reflink, Tier::Copy],
            Mode::Hardlink => &[Tier::Hardlink],
            Mode::Reflink => &[Tier::Reflink],
            Mode::Copy => &[Tier::Copy],
            Mode::CloneOrCopy => &[Tier::Reflink, Tier::Copy],
        }
    }

    pub fn allows(self, tier: Tier) -> bool {
        self.tiers().contains(&tier)
    }

    /// The name on the command line (`clone-or-copy`).
    pub fn name(self) -> &'static str {
        match self {
            Mode::Auto => "auto",
            Mode::Hardlink => "hardlink",
            Mode::Reflink => "reflink",
            Mode::Copy => "copy",
            Mode::CloneOrCopy => "clone-or-copy",
        }
    }
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::Hardlink => "hardlink",
            Tier::Reflink => "reflink",
            Tier::Copy => "copy",
        }
    }
}

impl std::fmt::Display for Tier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
