//! Which of zkit's overlays are mounted now, in any mount namespace.
//!
//! A kernel view's overlay can outlive the process that made it: a `zmount run` killed alone
//! leaves CMD (and whatever it started, daemons that closed every descriptor included) in the
//! run's mount namespace, still writing the upper dir; a `zmount mount` holder killed leaves
//! the overlay in the host's table. Locks and pins held by that process are gone then, so
//! whoever asks "may I take this runtime, sweep these layers?" asks the kernel instead: every
//! overlay gets a tag, `zmount:ID`, as its mount source (shown in every mount table it is
//! in), and a tag counts as mounted while some process of this machine is in a mount
//! namespace whose table shows it.
//!
//! Not seen: a namespace no process is in (kept only by a bind mount of `/proc/PID/ns/mnt`
//! or an open descriptor of it) and an overlay detached (`umount -l`) with files still open;
//! also processes in PID namespaces this one cannot see. Each needs a deliberate act.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

/// The prefix of every kernel view's mount source.
pub const SOURCE: &str = "zmount";

/// A new tag, unique on this machine for all practical purposes.
pub fn new_tag() -> String {
    format!("{SOURCE}:{:016x}", crate::sys::random_u64())
}

/// Whether `source` (a mount table's source field) is a zmount mount's: `zmount` (FUSE, and
/// kernel overlays of older versions) or `zmount:ID`.
pub fn is_ours(source: &str) -> bool {
    source == SOURCE
        || source
            .strip_prefix(SOURCE)
            .is_some_and(|r| r.starts_with(':'))
}

/// Where a tagged overlay is mounted: a process of the namespace and the mount point there.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Place {
    pub pid: u32,
    pub mountpoint: PathBuf,
}

/// Every tagged overlay mounted now, by tag (one place each).
pub fn mounted() -> HashMap<String, Place> {
    let mut out = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    let mut seen = HashSet::new();
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        // One table per namespace: its processes all show the same one.
        let Ok(ns) = std::fs::read_link(format!("/proc/{pid}/ns/mnt")) else {
            continue;
        };
        if !seen.insert(ns) {
            continue;
        }
        let Ok(table) = std::fs::read(format!("/proc/{pid}/mountinfo")) else {
            // Gone meanwhile: another process of its namespace, if any, comes later.
            continue;
        };
        for (tag, mountpoint) in tagged(&table) {
            out.entry(tag).or_insert(Place { pid, mountpoint });
        }
    }
    out
}

/// Where the overlay tagged `tag` is mounted, if it is.
pub fn find(tag: &str) -> Option<Place> {
    mounted().remove(tag)
}

/// Detach, in this process's mount namespace, every tagged overlay it copied from the one it
/// came from (`unshare(CLONE_NEWNS)` copies every mount). A run's namespace must not hold
/// other views: while it lived, a view unmounted outside would stay mounted in it, and its
/// runtime would stay taken. Innermost first; a failure leaves that copy (it only delays).
#[cfg(target_os = "linux")]
pub fn detach_copies() {
    let Ok(table) = std::fs::read("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = tagged(&table).into_iter().map(|(_, m)| m).collect();
    points.sort_by_key(|m| std::cmp::Reverse(m.components().count()));
    for mountpoint in points {
        if let Err(e) = rustix::mount::unmount(&mountpoint, rustix::mount::UnmountFlags::DETACH) {
            tracing::debug!(mountpoint = %mountpoint.display(), error = %e, "cannot detach a copied view");
        }
    }
}

/// The tagged overlays of one mountinfo table, with their mount points.
fn tagged(table: &[u8]) -> Vec<(String, PathBuf)> {
    crate::sys::mountinfo::entries(table)
        .filter(|e| e.fstype == "overlay" && e.source != SOURCE && is_ours(&e.source))
        .map(|e| (e.source, e.mountpoint))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_tagged_overlays_count() {
        let table = b"47 27 0:40 / /tmp/a\\040b rw,relatime - overlay zmount:00ff rw,lowerdir=x\n\
            48 27 0:41 / /tmp/c rw - overlay zmount rw\n\
            49 27 0:42 / /tmp/d rw - fuse zmount:00aa rw\n\
            50 27 0:43 / /tmp/e rw shared:1 - overlay zmountx rw\n";
        assert_eq!(
            tagged(table),
            [("zmount:00ff".to_string(), PathBuf::from("/tmp/a b"))]
        );
        assert!(is_ours("zmount") && is_ours("zmount:1") && !is_ours("zmountx"));
    }
}
