//! Which processes use a mount: what `zmount umount` names when the kernel says "busy".
//!
//! A mount is busy while a process has its working or root directory, an open file or a
//! mapped file in it (`/proc/PID/{cwd,root,fd/*,maps}`). Only link *names* are read, never
//! the files behind them: a `stat` would ask the mount's own server, which may be dead or the
//! very process doing the scan. Processes of other users are invisible without privilege
//! and are simply not listed.

// /proc is read on Linux only; elsewhere no process is ever named.
#![cfg_attr(not(target_os = "linux"), allow(dead_code))]

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

/// One process that uses the mount, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub pid: u32,
    /// Its command name (`/proc/PID/comm`).
    pub name: String,
    /// `cwd`, `root`, `open file` or `mapped file`, the first found.
    pub how: &'static str,
}

/// The processes using something at or below `mountpoint` (absolute, canonical), ourselves
/// excluded, by PID.
#[cfg(target_os = "linux")]
pub fn users(mountpoint: &Path) -> Vec<User> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<User> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| {
            let how = how_used(pid, mountpoint)?;
            let name = std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .map(|c| c.trim_end().to_string())
                .unwrap_or_default();
            Some(User { pid, name, how })
        })
        .collect();
    found.sort_by_key(|u| u.pid);
    found
}

#[cfg(not(target_os = "linux"))]
pub fn users(_mountpoint: &Path) -> Vec<User> {
    Vec::new()
}

fn how_used(pid: u32, mountpoint: &Path) -> Option<&'static str> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let under = |p: &Path| p.starts_with(mountpoint);
    for (link, how) in [("cwd", "cwd"), ("root", "root")] {
        if std::fs::read_link(proc.join(link)).is_ok_and(|t| under(&t)) {
            return Some(how);
        }
    }
    if let Ok(fds) = std::fs::read_dir(proc.join("fd"))
        && fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| under(&t)))
    {
        return Some("open file");
    }
    let maps = std::fs::read(proc.join("maps")).ok()?;
    maps.split(|&b| b == b'\n')
        .filter_map(mapped_path)
        .any(|p| under(&p))
        .then_some("mapped file")
}

/// The path of one `/proc/PID/maps` line: the sixth field, which runs to the end of the line
/// (it may hold spaces), when it is a path.
fn mapped_path(line: &[u8]) -> Option<PathBuf> {
    let mut rest = line;
    for _ in 0..5 {
        let space = rest.iter().position(|&b| b == b' ')?;
        rest = &rest[space + 1..];
        while rest.first() == Some(&b' ') {
            rest = &rest[1..];
        }
    }
    let path = rest.strip_suffix(b" (deleted)").unwrap_or(rest);
    path.starts_with(b"/")
        .then(|| PathBuf::from(OsString::from_vec(path.to_vec())))
}

/// `pid 123 (sh, cwd), pid 456 (less, open file)`; at most a few, then how many more.
pub fn describe(users: &[User]) -> String {
    const SHOWN: usize = 5;
    let mut parts: Vec<String> = users
        .iter()
        .take(SHOWN)
        .map(|u| format!("pid {} ({}, {})", u.pid, u.name, u.how))
        .collect();
    if users.len() > SHOWN {
        parts.push(format!("{} more", users.len() - SHOWN));
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_maps_line_gives_its_path_spaces_and_all() {
        let line = b"7f00-7f01 r--p 00000000 00:3a 12  /mnt/a b/lib.so (deleted)";
        assert_eq!(mapped_path(line), Some(PathBuf::from("/mnt/a b/lib.so")));
        assert_eq!(mapped_path(b"7f00-7f01 rw-p 00000000 00:00 0 "), None);
        assert_eq!(
            mapped_path(b"7f00-7f01 rw-p 00000000 00:00 0    [heap]"),
            None
        );
    }
}
