//! Temporaries whose writer is gone, and how a later writer recognises and removes them.
//!
//! A named temporary is `.NAME.zw-PID-START-RAND`: the writer's process id, its start time
//! (clock ticks since boot, from `/proc/PID/stat`; 0 where there is no `/proc`) and random bits.
//! A pid alone would not do: pids are reused, and a reused pid would keep a leftover alive
//! forever, or worse a live writer's name could look stale. The writer also holds a `flock` on
//! its temporary from before it has a name (an `O_TMPFILE` is locked while still anonymous), and
//! the kernel drops that lock when the writer dies, however it dies.
//!
//! [`remove`] unlinks a `.NAME.zw-*` entry only when both say the writer is gone: no process
//! has that pid and start time, and we can take the file's lock ourselves. It then checks,
//! still holding the lock, that the name still holds the inode it locked. So a live writer's
//! temporary is never removed: between its creation and its lock the pid check covers it,
//! after that the lock does (also for a writer in another pid namespace, whose pid means
//! nothing here). Only regular files are removed; the names of leftovers from older zkit
//! versions, which record no writer, are left alone.

use rustix::fs::{AtFlags, FileType, Mode, OFlags, openat, statat, unlinkat};
use std::ffi::{OsStr, OsString};
use std::fs::{File, TryLockError};
use std::os::unix::ffi::OsStrExt;
use std::sync::OnceLock;

/// The part of a temporary's name that records its writer: `PID-START-`, ours.
pub fn writer_tag() -> String {
    format!("{}-{}-", std::process::id(), own_start_time())
}

/// Remove the temporaries for `stem` in `dir` whose writers are gone. Best effort: whatever
/// cannot be read or removed stays, and the write goes on.
pub fn remove(dir: &File, stem: &OsStr) {
    let mut prefix = OsString::from(".");
    prefix.push(stem);
    prefix.push(".zw-");
    let Ok(entries) = rustix::fs::Dir::read_from(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        let Some(rest) = name.as_bytes().strip_prefix(prefix.as_bytes()) else {
            continue;
        };
        if let Some((pid, start)) = parse_writer(rest)
            && !alive(pid, start)
        {
            remove_if_unlocked(dir, name);
        }
    }
}

/// Remove every temporary in `dir`, whatever file it was for, whose writer is gone (for
/// `zcommit gc`); how many went. Best effort, as [`remove`].
pub fn remove_all(dir: &File) -> usize {
    let Ok(entries) = rustix::fs::Dir::read_from(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        let bytes = name.as_bytes();
        let Some(at) = bytes.windows(4).rposition(|w| w == b".zw-") else {
            continue;
        };
        if bytes.starts_with(b".")
            && let Some((pid, start)) = parse_writer(&bytes[at + 4..])
            && !alive(pid, start)
        {
            removed += usize::from(remove_if_unlocked(dir, name));
        }
    }
    removed
}

/// `PID-START-RANDHEX` -> (pid, start).
fn parse_writer(rest: &[u8]) -> Option<(u32, u64)> {
    let rest = std::str::from_utf8(rest).ok()?;
    let mut parts = rest.split('-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    let random = parts.next()?;
    let hex = random.len() == 8 && random.bytes().all(|b| b.is_ascii_hexdigit());
    (hex && parts.next().is_none()).then_some((pid, start))
}

fn remove_if_unlocked(dir: &File, name: &OsStr) -> bool {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let Ok(fd) = openat(dir, name, flags, Mode::empty()) else {
        return false;
    };
    let file = File::from(fd);
    let Ok(st) = rustix::fs::fstat(&file) else {
        return false;
    };
    if FileType::from_raw_mode(st.st_mode) != FileType::RegularFile {
        return false;
    }
    match file.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock | TryLockError::Error(_)) => return false,
    }
    // Another cleaner may have removed it and a new writer reused the name meanwhile.
    let same = statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|now| (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino));
    same && unlinkat(dir, name, AtFlags::empty()).is_ok()
}

/// Whether the process that recorded (`pid`, `start`) still runs.
fn alive(pid: u32, start: u64) -> bool {
    match start_time(pid) {
        Some(now) => now == start,
        // No /proc entry: either no such process, or no /proc. Then the pid alone decides,
        // which can only err towards keeping a leftover.
        None => match rustix::process::Pid::from_raw(pid as i32) {
            Some(p) => rustix::process::test_kill_process(p) != Err(rustix::io::Errno::SRCH),
            None => true,
        },
    }
}

fn own_start_time() -> u64 {
    static START: OnceLock<u64> = OnceLock::new();
    *START.get_or_init(|| start_time(std::process::id()).unwrap_or(0))
}

/// A process's start time in clock ticks since boot (field 22 of `/proc/PID/stat`).
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or ')'.
    let after = &stat[stat.iter().rposition(|&b| b == b')')? + 1..];
    let fields = std::str::from_utf8(after).ok()?;
    fields.split_ascii_whitespace().nth(19)?.parse().ok()
}
