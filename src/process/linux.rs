//! Linux: `/proc/PID/stat` for parent and start time, pidfds for cheap liveness checks.

use super::{ProcId, Stat};
use rustix::fd::OwnedFd;
use rustix::process::{Pid, PidfdFlags};
use std::io;
use std::os::unix::fs::MetadataExt;

/// Read `/proc/PID/stat`.
pub fn stat(pid: u32) -> io::Result<Stat> {
    let bytes = std::fs::read(format!("/proc/{pid}/stat"))?;
    parse_stat(pid, &bytes).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("cannot parse /proc/{pid}/stat"),
        )
    })
}

/// Parse one `/proc/PID/stat` line. The command name (field 2) sits in parentheses and may
/// itself hold spaces and parentheses (`prctl(PR_SET_NAME)` lets a process call itself
/// `a) 1 2 (b`), so the fields after it are found from the *last* `)`, never by splitting the
/// whole line.
pub(crate) fn parse_stat(pid: u32, bytes: &[u8]) -> Option<Stat> {
    let close = bytes.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&bytes[close + 1..]).ok()?;
    let mut fields = rest.split_ascii_whitespace();
    // After the name: state (3), ppid (4), ... starttime (22).
    let state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let start = fields.nth(17)?.parse().ok()?;
    Some(Stat {
        id: ProcId { pid, start },
        ppid,
        zombie: matches!(state, "Z" | "X"),
    })
}

/// The thread-group leader (the process) of a thread id, from `/proc/TID/status`.
pub fn leader(tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The user that owns a process (its effective uid, as `/proc/PID` shows it).
pub fn owner(pid: u32) -> io::Result<u32> {
    Ok(std::fs::metadata(format!("/proc/{pid}"))?.uid())
}

/// A handle on one process that says, with one `poll`, whether it is still alive: a pidfd
/// refers to the process itself, never to a later process that reuses the PID.
#[derive(Debug)]
pub struct Watch(OwnedFd);

impl Watch {
    /// Watch the process that now has `pid`. `None` if it is gone (or pidfds are unsupported,
    /// Linux < 5.3: the caller then simply does not cache).
    pub fn new(pid: u32) -> Option<Watch> {
        let pid = Pid::from_raw(i32::try_from(pid).ok()?)?;
        rustix::process::pidfd_open(pid, PidfdFlags::empty())
            .ok()
            .map(Watch)
    }

    /// A pidfd becomes readable when its process exits (zombies included).
    pub fn alive(&self) -> bool {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        let mut fds = [PollFd::new(&self.0, PollFlags::IN)];
        let zero = Timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        matches!(poll(&mut fds, Some(&zero)), Ok(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(comm: &str, ppid: u32, start: u64) -> Vec<u8> {
        format!(
            "4242 ({comm}) S {ppid} 4242 4242 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 {start} \
             1000 100 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
        )
        .into_bytes()
    }

    #[test]
    fn stat_with_plain_name() {
        let s = parse_stat(4242, &line("bash", 17, 98765)).unwrap();
        assert_eq!((s.ppid, s.id.start), (17, 98765));
    }

    #[test]
    fn stat_name_with_spaces_and_parentheses() {
        let s = parse_stat(4242, &line("a) 1 2 (b c))", 99, 123456789)).unwrap();
        assert_eq!((s.ppid, s.id.start), (99, 123456789));
    }

    #[test]
    fn stat_truncated_is_rejected() {
        assert!(parse_stat(1, b"1 (init) S 0 1 1").is_none());
        assert!(parse_stat(1, b"garbage").is_none());
    }

    #[test]
    fn own_process_is_alive_and_has_parent() {
        let me = std::process::id();
        let s = stat(me).unwrap();
        assert_eq!(
            s.ppid,
            rustix::process::getppid().unwrap().as_raw_nonzero().get() as u32
        );
        assert!(super::super::alive(s.id));
        assert!(!super::super::alive(ProcId {
            pid: me,
            start: s.id.start + 1
        }));
        assert!(Watch::new(me).unwrap().alive());
        let chain = super::super::ancestry(me).unwrap();
        assert_eq!(chain[0], s.id);
        assert!(chain.len() >= 2);
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // a test: a refused thread may fail it
    fn a_threads_ancestry_includes_its_process() {
        let me = stat(std::process::id()).unwrap().id;
        let chain = std::thread::spawn(|| {
            let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
            super::super::ancestry(tid).unwrap()
        })
        .join()
        .unwrap();
        assert_ne!(chain[0].pid, me.pid);
        assert_eq!(chain[1], me);
    }

    #[test]
    fn watch_sees_exit() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let w = Watch::new(child.id()).unwrap();
        child.wait().unwrap();
        assert!(!w.alive());
    }
}
