//! The commit cache: like git's index, it remembers each file's `lstat` and digest so that an
//! unchanged file is not read again.
//!
//! An entry is used only when device, inode, size, mtime and ctime (to the nanosecond) all
//! match, and only if it was *not racy* when saved: git's rule. A file changed in the same
//! clock tick as it was hashed can keep its mtime, so an entry is saved only when the file's
//! mtime and ctime are older than the moment the walk started. Other files
//! are hashed again next time, then saved. ctime cannot be set by users, so `touch -d` cannot
//! fake an old timestamp either. The start is read from the clock the kernel stamps files with
//! ([`crate::sys::file_clock_now`]), so a file on a network file system whose server's clock
//! runs behind ours could be trusted too early: commit those with `--no-cache`.
//!
//! One index per committed directory (by absolute path) in `STORE/index/`. It is only a cache:
//! written without fsync, checked by a trailing BLAKE3 of its bytes, and ignored whole when
//! missing, damaged, or from another version.

use crate::digest::Digest;
use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

const MAGIC: &[u8; 8] = b"ZKITIDX1";

/// What identifies a file's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl Stamp {
    pub fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }

    /// The same from an `fstatat`. (Field types differ between platforms, hence the casts.)
    #[allow(clippy::unnecessary_cast)]
    pub fn of_stat(st: &rustix::fs::Stat) -> Stamp {
        Stamp {
            dev: crate::link::dev_of(st),
            ino: st.st_ino as u64,
            size: st.st_size as u64,
            mtime: (st.st_mtime as i64, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime as i64, st.st_ctime_nsec as i64),
        }
    }

    /// Changed no later than `start`'s clock tick: safe to trust next time.
    pub fn settled_before(&self, start: (i64, i64)) -> bool {
        self.mtime < start && self.ctime < start
    }
}

#[derive(Default)]
pub struct Index {
    entries: HashMap<Vec<u8>, (Stamp, Digest)>,
}

impl Index {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Index {
    /// The saved index, or an empty one when there is none usable.
    pub fn load(path: &Path) -> Index {
        Index::read(path).unwrap_or_default()
    }

    /// The saved index, `None` when it is missing, damaged or from another version.
    pub fn read(path: &Path) -> Option<Index> {
        std::fs::read(path).ok().and_then(|b| decode(&b))
    }

    /// The blob of every entry.
    pub fn digests(&self) -> impl Iterator<Item = &Digest> {
        self.entries.values().map(|(_, d)| d)
    }

    /// The digest of the file at `rel` if its stamp is unchanged.
    pub fn get(&self, rel: &[u8], stamp: &Stamp) -> Option<Digest> {
        match self.entries.get(rel) {
            Some((saved, digest)) if saved == stamp => Some(*digest),
            _ => None,
        }
    }
}

/// Encode the entries that were settled before `start`.
pub fn encode<'a>(
    entries: impl Iterator<Item = (&'a [u8], Stamp, Digest)>,
    start: (i64, i64),
) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    for (rel, s, digest) in entries.filter(|(_, s, _)| s.settled_before(start)) {
        out.extend_from_slice(&(rel.len() as u32).to_le_bytes());
        out.extend_from_slice(rel);
        for n in [s.dev, s.ino, s.size] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        for n in [s.mtime.0, s.mtime.1, s.ctime.0, s.ctime.1] {
            out.extend_from_slice(&n.to_le_bytes());
        }
        out.extend_from_slice(digest.as_bytes());
    }
    let check = Digest::of_blob(&out);
    out.extend_from_slice(check.as_bytes());
    out
}

fn decode(bytes: &[u8]) -> Option<Index> {
    let (body, check) = bytes.split_at_checked(bytes.len().checked_sub(32)?)?;
    if !body.starts_with(MAGIC) || Digest::of_blob(body).as_bytes() != check {
        return None;
    }
    let mut r = &body[MAGIC.len()..];
    let mut take = |n: usize| -> Option<&[u8]> {
        let (a, b) = r.split_at_checked(n)?;
        r = b;
        Some(a)
    };
    let mut index = Index::default();
    let u64_at = |b: &[u8], i: usize| u64::from_le_bytes(b[i * 8..i * 8 + 8].try_into().unwrap());
    while let Some(len) = take(4) {
        let len = u32::from_le_bytes(len.try_into().ok()?) as usize;
        let rel = take(len)?.to_vec();
        let nums = take(7 * 8)?;
        let stamp = Stamp {
            dev: u64_at(nums, 0),
            ino: u64_at(nums, 1),
            size: u64_at(nums, 2),
            mtime: (u64_at(nums, 3) as i64, u64_at(nums, 4) as i64),
            ctime: (u64_at(nums, 5) as i64, u64_at(nums, 6) as i64),
        };
        let digest = Digest::from_bytes(take(32)?.try_into().ok()?);
        index.entries.insert(rel, (stamp, digest));
    }
    Some(index)
}
