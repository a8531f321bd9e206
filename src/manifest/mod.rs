//! The layer format: a manifest of every path in a layer, as a tree that loads fast.
//!
//! # Shape
//!
//! Entries live in one array in breadth-first order: entry 0 ([`ROOT`]) is the layer's root
//! directory, and the children of every directory are one contiguous run sorted by name bytes.
//! So an entry's index is a stable inode-like handle, a directory's listing is a slice
//! ([`Manifest::children`]), and finding a name in a directory is a binary search
//! ([`Manifest::lookup`]). Each entry knows its parent, for `..` and for rebuilding its path.
//!
//! Each entry has a name (bytes, not UTF-8: any name but empty, `.`, `..`, or one containing `/`
//! or NUL), a mode (the permission bits with setuid/setgid/sticky, `& 0o7777`), a modification
//! time (seconds and nanoseconds since the epoch) and a [`Kind`]: a directory (with its opaque
//! bit: it hides everything below it in lower layers), a regular file (size and the BLAKE3
//! digest of its content, a blob in the store), a symlink (its target bytes), a FIFO, a
//! character or block device (major and minor numbers) or a whiteout (the name is deleted:
//! lower layers' entries are hidden). Owners and xattrs are not part of a layer. Times are, so
//! that `make` and `rsync -t` see the tree they committed; a commit can fix them
//! (`--reproducible`) so that the same content gives the same layer wherever it is committed.
//!
//! # Encoding, version 2
//!
//! ```text
//! "ZKITLAYR" 0x02 COUNT ENTRY*COUNT
//! ENTRY = KIND:u8 NAMELEN NAME MODE SECS NANOS BODY
//!   KIND 0 dir:         FLAGS:u8 (bit 0: opaque) CHILDCOUNT
//!   KIND 1 file:        SIZE DIGEST:32 bytes
//!   KIND 2 symlink:     TARGETLEN TARGET
//!   KIND 3 whiteout:    (nothing)
//!   KIND 4 fifo:        (nothing)
//!   KIND 5 char device: MAJOR MINOR
//!   KIND 6 block device: MAJOR MINOR
//! ```
//!
//! Numbers are unsigned LEB128 varints, shortest form only; SECS is zigzag-coded (times before
//! 1970 exist) and NANOS is below 10^9. Children are implied by the breadth-first order and
//! each directory's CHILDCOUNT, so there is no redundant index that could disagree. Exactly
//! one byte string encodes a given tree: names must be strictly increasing within a directory,
//! flags and varints canonical, nothing may trail. [`decode`] checks all of it, whoever wrote
//! the file, so a manifest can never name a path outside its root or make a cycle.
//!
//! Version 1 (the same without SECS and NANOS, and without kinds 4 to 6) is still read: its
//! entries have [`Time::FIXED`], the one time every view showed before layers recorded times,
//! so a layer keeps the digest and the times it always had.

mod codec;
mod stack;
mod tree;

pub use codec::DecodeError;
pub use stack::merge;
pub use tree::{Node, NodeKind};

use crate::digest::Digest;
use std::ffi::OsStr;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// The index of the root directory.
pub const ROOT: u32 = 0;

/// The current encoding version.
pub const VERSION: u8 = 2;

/// A modification time: seconds since the epoch (negative before it) and nanoseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Time {
    pub secs: i64,
    /// Below 10^9.
    pub nanos: u32,
}

impl Time {
    /// 1970-01-01 00:00:01: what layers of version 1 show, and `--reproducible` records
    /// without `SOURCE_DATE_EPOCH` (Nix's choice too: not 0, which some tools read as unset).
    pub const FIXED: Time = Time { secs: 1, nanos: 0 };

    /// A modification time as `fstatat` gave it.
    #[allow(clippy::unnecessary_cast)] // stat field widths differ across platforms
    pub fn of_stat(st: &rustix::fs::Stat) -> Time {
        Time {
            secs: st.st_mtime as i64,
            nanos: (st.st_mtime_nsec as i64).clamp(0, 999_999_999) as u32,
        }
    }

    pub fn to_system_time(self) -> std::time::SystemTime {
        let nanos = std::time::Duration::from_nanos(self.nanos as u64);
        match u64::try_from(self.secs) {
            Ok(secs) => std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs) + nanos,
            Err(_) => {
                std::time::UNIX_EPOCH - std::time::Duration::from_secs(self.secs.unsigned_abs())
                    + nanos
            }
        }
    }

    /// The time as a `timespec` for `utimensat`/`futimens`.
    pub fn to_timespec(self) -> rustix::fs::Timespec {
        rustix::fs::Timespec {
            tv_sec: self.secs,
            tv_nsec: self.nanos as _,
        }
    }
}

/// One path in a layer. Its name and a symlink's target are in the manifest's byte heap:
/// read them with [`Manifest::name`] and [`Manifest::target`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    name: Span,
    /// The directory that holds this entry ([`ROOT`] for the root itself).
    pub parent: u32,
    /// Permission bits with setuid/setgid/sticky (`& 0o7777`).
    pub mode: u32,
    pub mtime: Time,
    pub kind: Kind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `children` are the indices of its entries; `opaque` hides lower layers' contents.
    Dir {
        opaque: bool,
        first: u32,
        len: u32,
    },
    File {
        size: u64,
        digest: Digest,
    },
    Symlink {
        target: Span,
    },
    Fifo,
    Device(Device),
    Whiteout,
}

/// A character or block device node's identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Device {
    pub block: bool,
    pub major: u32,
    pub minor: u32,
}

impl Device {
    /// The device a `stat` of a character or block device found.
    #[allow(clippy::unnecessary_cast)] // dev_t's width differs across platforms
    pub fn of_stat(st: &rustix::fs::Stat) -> Device {
        Device {
            block: rustix::fs::FileType::from_raw_mode(st.st_mode)
                == rustix::fs::FileType::BlockDevice,
            major: rustix::fs::major(st.st_rdev as _),
            minor: rustix::fs::minor(st.st_rdev as _),
        }
    }

    pub fn rdev(self) -> u64 {
        rustix::fs::makedev(self.major, self.minor) as u64
    }

    /// The `S_IFBLK` or `S_IFCHR` bits of a mode.
    #[allow(clippy::unnecessary_cast)] // mode_t is u16 on macOS
    pub fn file_type_bits(self) -> u32 {
        (if self.block {
            libc::S_IFBLK
        } else {
            libc::S_IFCHR
        }) as u32
    }
}

/// Bytes in the manifest's heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    start: u32,
    len: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    entries: Vec<Entry>,
    heap: Vec<u8>,
}

impl Manifest {
    /// Decode and validate an encoded manifest (see the module docs).
    pub fn decode(bytes: &[u8]) -> Result<Manifest, DecodeError> {
        codec::decode(bytes)
    }

    /// The root directory's mode in an encoded manifest, without decoding the rest.
    pub fn decode_root_mode(bytes: &[u8]) -> Result<u32, DecodeError> {
        codec::root_mode(bytes)
    }

    /// The canonical encoding; its [`Digest::of_layer`] is the layer's digest.
    pub fn encode(&self) -> Vec<u8> {
        codec::encode(self)
    }

    /// Build the manifest of a tree whose top node is the root directory.
    pub fn from_tree(root: &Node) -> Manifest {
        tree::flatten(root)
    }

    /// The tree form, for merging layers or editing.
    pub fn to_tree(&self) -> Node {
        tree::unflatten(self, ROOT)
    }

    /// Number of entries, the root included.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.len() <= 1
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    pub fn entry(&self, index: u32) -> &Entry {
        &self.entries[index as usize]
    }

    pub fn name(&self, index: u32) -> &OsStr {
        OsStr::from_bytes(self.bytes(self.entry(index).name))
    }

    /// A symlink's target; `None` for other kinds.
    pub fn target(&self, index: u32) -> Option<&OsStr> {
        match self.entry(index).kind {
            Kind::Symlink { target } => Some(OsStr::from_bytes(self.bytes(target))),
            _ => None,
        }
    }

    /// Indices of a directory's entries, sorted by name; empty for other kinds.
    pub fn children(&self, index: u32) -> Range<u32> {
        match self.entry(index).kind {
            Kind::Dir { first, len, .. } => first..first + len,
            _ => 0..0,
        }
    }

    /// The entry called `name` in directory `dir`, by binary search.
    pub fn lookup(&self, dir: u32, name: &OsStr) -> Option<u32> {
        let range = self.children(dir);
        let slice = &self.entries[range.start as usize..range.end as usize];
        slice
            .binary_search_by(|e| self.bytes(e.name).cmp(name.as_bytes()))
            .ok()
            .map(|i| range.start + i as u32)
    }

    /// The entry at a relative path (`""` or `"."` is the root). Does not look through
    /// whiteouts: a whiteout entry is returned as such.
    pub fn find(&self, path: &Path) -> Option<u32> {
        let mut at = ROOT;
        for part in path.components() {
            match part {
                std::path::Component::Normal(name) => at = self.lookup(at, name)?,
                std::path::Component::CurDir => {}
                _ => return None,
            }
        }
        Some(at)
    }

    /// The entry's path relative to the layer's root (empty for the root).
    pub fn path(&self, index: u32) -> PathBuf {
        let mut parts = Vec::new();
        let mut at = index;
        while at != ROOT {
            parts.push(self.name(at));
            at = self.entry(at).parent;
        }
        parts.iter().rev().collect()
    }

    /// Every entry but the root, depth first in name order (the order of `find | sort` on
    /// names), with its path.
    pub fn walk(&self) -> impl Iterator<Item = (PathBuf, u32)> + '_ {
        let mut stack: Vec<(PathBuf, u32)> = self
            .children(ROOT)
            .rev()
            .map(|i| (PathBuf::from(self.name(i)), i))
            .collect();
        std::iter::from_fn(move || {
            let (path, index) = stack.pop()?;
            for child in self.children(index).rev() {
                stack.push((path.join(self.name(child)), child));
            }
            Some((path, index))
        })
    }

    fn bytes(&self, span: Span) -> &[u8] {
        &self.heap[span.start as usize..(span.start + span.len) as usize]
    }
}

/// Whether `name` may be an entry's name: not empty, `.` or `..`, no `/` and no NUL.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.iter().any(|&b| b == b'/' || b == 0)
}
