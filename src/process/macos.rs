//! macOS: libproc's `proc_pidinfo(PROC_PIDTBSDINFO)` gives parent and start time.

use super::{ProcId, Stat};
use std::io;

pub fn stat(pid: u32) -> io::Result<Stat> {
    let info = crate::sys::bsdinfo(pid)?;
    Ok(Stat {
        id: ProcId {
            pid,
            start: info.start_usec,
        },
        ppid: info.ppid,
        // libproc's pbi_status would say; a zombie's start time still matches, which only
        // makes a liveness check wait for the reap.
        zombie: false,
    })
}

pub fn owner(pid: u32) -> io::Result<u32> {
    Ok(crate::sys::bsdinfo(pid)?.uid)
}

/// No pidfds: liveness is re-checked through the start time.
#[derive(Debug)]
pub struct Watch(ProcId);

impl Watch {
    pub fn new(pid: u32) -> Option<Watch> {
        stat(pid).ok().map(|s| Watch(s.id))
    }

    pub fn alive(&self) -> bool {
        super::alive(self.0)
    }
}

/// Threads are not processes on macOS: FUSE names the process.
pub fn leader(_pid: u32) -> Option<u32> {
    None
}
