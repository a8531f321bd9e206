//! The one place where op results become FUSE replies.

use super::ops::{Entry, Listing, Opened, Statfs};
use fuser::{
    Errno, FileAttr, Generation, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr,
};
use std::time::Duration;

pub trait Respond<R> {
    fn respond(self, reply: R);
}

macro_rules! respond {
    ($reply:ty, $t:ty, |$r:ident, $v:ident| $ok:expr) => {
        impl Respond<$reply> for Result<$t, Errno> {
            fn respond(self, $r: $reply) {
                match self {
                    Ok($v) => $ok,
                    Err(e) => $r.error(e),
                }
            }
        }
    };
}

respond!(ReplyEntry, Entry, |r, e| r.entry_with_ttls(
    &e.attr_ttl,
    &e.entry_ttl,
    &e.attr,
    Generation(0)
));
respond!(ReplyAttr, (Duration, FileAttr), |r, a| r.attr(&a.0, &a.1));
respond!(ReplyData, Vec<u8>, |r, d| r.data(&d));
respond!(ReplyOpen, Opened, |r, o| r
    .opened(fuser::FileHandle(o.fh), o.flags));
respond!(ReplyEmpty, (), |r, _v| r.ok());
respond!(ReplyWrite, u32, |r, n| r.written(n));
respond!(ReplyStatfs, Statfs, |r, s| r
    .statfs(s.blocks, 0, 0, s.files, 0, s.bsize, 255, s.bsize));
respond!(ReplyXattr, Xattr, |r, x| match x {
    Xattr::Size(n) => r.size(n),
    Xattr::Data(d) => r.data(&d),
});
respond!(ReplyCreate, (Entry, Opened), |r, c| r.created(
    &c.0.entry_ttl,
    &c.0.attr,
    Generation(0),
    fuser::FileHandle(c.1.fh),
    c.1.flags
));

respond!(ReplyDirectory, Listing, |r, l| {
    let mut r = r;
    for item in l.items() {
        if r.add(fuser::INodeNo(item.ino), item.next, item.kind, item.name) {
            break;
        }
    }
    r.ok()
});

respond!(ReplyDirectoryPlus, Listing, |r, l| {
    let mut r = r;
    for item in l.items() {
        let attr = l.attr(&item);
        if r.add(
            fuser::INodeNo(item.ino),
            item.next,
            item.name,
            &l.ttl,
            &attr,
            Generation(0),
        ) {
            break;
        }
    }
    r.ok()
});

/// An extended attribute answer: its size (when the caller asked with size 0) or its bytes.
pub enum Xattr {
    Size(u32),
    Data(Vec<u8>),
}

impl Xattr {
    /// Answer a list or get request for `value` with the caller's buffer `size`.
    pub fn answer(value: &[u8], size: u32) -> Result<Xattr, Errno> {
        if size == 0 {
            Ok(Xattr::Size(value.len() as u32))
        } else if value.len() > size as usize {
            Err(Errno::ERANGE)
        } else {
            Ok(Xattr::Data(value.to_vec()))
        }
    }
}
