//! Merged directory listings with offsets that survive changes between pages.
//!
//! A listing is read in pages: the kernel asks again with the offset of the last entry it got.
//! If offsets were positions in a list, creating or removing a name between two pages would
//! shift every later entry, and a name that was there all along would be skipped or repeated.
//! So an entry's offset is a cookie computed from its name alone (a 62-bit BLAKE3 prefix, as
//! ext4 uses name hashes), the merged entries are sorted by cookie, and a page starts after
//! the last cookie served. Whatever changes between pages, every name present throughout is
//! listed exactly once; a name created meanwhile may or may not appear, as POSIX allows.
//! (Two names with one cookie would lose one of them to paging: about one chance in 10^11 for
//! a directory of 5000 names.)
//!
//! Offsets 1 and 2 are `.` and `..`; cookies start above them.

use super::whiteout::{self, Entry};
use rustix::fs::FileType;
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::unix::ffi::OsStrExt;

/// What one scratch directory says: its names, the lower names it hides, whether it hides
/// all of them.
#[derive(Debug, Default)]
pub struct Upper {
    pub names: Vec<(OsString, FileType)>,
    pub whiteouts: HashSet<OsString>,
    pub opaque: bool,
}

impl Upper {
    /// Read a scratch directory (without `.` and `..`).
    pub fn read(dir: &File) -> io::Result<Upper> {
        let mut up = Upper::default();
        for entry in rustix::fs::Dir::read_from(dir)? {
            let entry = entry?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            match whiteout::classify(name) {
                Entry::Plain(n) => up.names.push((n.to_owned(), entry.file_type())),
                Entry::Whiteout(n) => {
                    up.whiteouts.insert(n.to_owned());
                }
                Entry::Opaque => up.opaque = true,
            }
        }
        Ok(up)
    }

    /// Whether the lower `name` shows through this directory.
    pub fn shows_lower(&self, name: &OsStr) -> bool {
        !self.opaque && !self.whiteouts.contains(name)
    }
}

/// One merged entry; `T` is what the caller keeps per entry (an inode, a kind).
#[derive(Debug, Clone)]
pub struct Merged<T> {
    pub cookie: u64,
    pub name: OsString,
    pub item: T,
}

/// The first cookie: offsets 0, 1 and 2 are the start, `.` and `..`.
pub const FIRST_COOKIE: u64 = 3;

pub fn cookie(name: &[u8]) -> u64 {
    let hash = blake3::hash(name);
    let bytes: [u8; 8] = hash.as_bytes()[..8].try_into().expect("8 bytes");
    (u64::from_le_bytes(bytes) >> 2) + FIRST_COOKIE
}

/// Scratch names over lower names, each name once, sorted by cookie. Lower entries hidden
/// by a whiteout or an opaque directory are left out.
pub fn merge<T>(
    lower: impl IntoIterator<Item = (OsString, T)>,
    upper: &Upper,
    upper_item: impl Fn(&OsStr, FileType) -> T,
) -> Vec<Merged<T>> {
    let mut by_name: HashMap<OsString, T> = HashMap::new();
    for (name, item) in lower {
        if upper.shows_lower(&name) {
            by_name.insert(name, item);
        }
    }
    for (name, kind) in &upper.names {
        by_name.insert(name.clone(), upper_item(name, *kind));
    }
    let mut out: Vec<Merged<T>> = by_name
        .into_iter()
        .map(|(name, item)| Merged {
            cookie: cookie(name.as_bytes()),
            name,
            item,
        })
        .collect();
    out.sort_unstable_by(|a, b| (a.cookie, &a.name).cmp(&(b.cookie, &b.name)));
    out
}

/// The entries a page that resumes after `offset` lists.
pub fn after<T>(entries: &[Merged<T>], offset: u64) -> &[Merged<T>] {
    let start = entries.partition_point(|e| e.cookie <= offset);
    &entries[start..]
}
