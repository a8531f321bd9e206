//! Processes as the router sees them: a PID plus its start time, and the chain of parents.
//!
//! A PID alone is not an identity: the kernel reuses PIDs, so a registration keyed by PID would
//! hand a view to whichever process gets the number next. A [`ProcId`] pairs the PID with the
//! process's start time (clock ticks since boot on Linux, microseconds since the epoch on
//! macOS), which no later process with the same PID can share.
//!
//! Backends (chosen here, same signatures): Linux reads `/proc/PID/stat`; macOS asks libproc
//! (`proc_pidinfo(PROC_PIDTBSDINFO)`).

#[cfg(any(target_os = "linux", target_os = "android"))]
#[path = "linux.rs"]
mod imp;
#[cfg(target_os = "macos")]
#[path = "macos.rs"]
mod imp;
#[cfg(not(any(target_os = "linux", target_os = "android", target_os = "macos")))]
#[path = "none.rs"]
mod imp;

pub use imp::{Watch, leader, owner, stat};

use std::io;

/// One process, for as long as it lives: a reused PID gets a different start time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct ProcId {
    pub pid: u32,
    pub start: u64,
}

/// What the router needs to know about one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub id: ProcId,
    /// 0 for the first process of a PID namespace (and the kernel's own threads).
    pub ppid: u32,
    /// Exited, waiting to be reaped: its descriptors are closed and it runs nothing.
    pub zombie: bool,
}

/// Longest chain we follow: deeper than any real process tree, and a guard against a parent
/// loop read from a racing `/proc`.
const MAX_DEPTH: usize = 4096;

/// The process and its ancestors, nearest first. A process that vanishes halfway ends the chain
/// there (its children were reparented, and we will see the new parent next time).
///
/// FUSE names the calling *thread*; a thread's parent is its process's parent, so for a thread
/// other than the main one, the process itself (its thread-group leader) comes second.
pub fn ancestry(pid: u32) -> io::Result<Vec<ProcId>> {
    let first = stat(pid)?;
    let mut chain = vec![first.id];
    if let Some(leader) = leader(pid).filter(|&l| l != pid)
        && let Ok(l) = stat(leader)
    {
        chain.push(l.id);
    }
    let mut next = first.ppid;
    while next != 0 && chain.len() < MAX_DEPTH {
        match stat(next) {
            Ok(s) => {
                chain.push(s.id);
                next = s.ppid;
            }
            Err(_) => break,
        }
    }
    Ok(chain)
}

/// Is this exact process (PID and start time) still alive? A zombie is not: it has exited,
/// and whoever should reap it (an init that never does, in some containers) may take long.
pub fn alive(id: ProcId) -> bool {
    stat(id.pid).is_ok_and(|s| s.id.start == id.start && !s.zombie)
}
