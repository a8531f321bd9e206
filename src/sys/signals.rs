//! Remove named temporary files when SIGINT, SIGTERM or SIGHUP ends the process.
//!
//! A fixed table of path slots lives in static memory. [`register`] puts a path in a free slot and
//! the returned guard takes it out again; the handler unlinks every path still present, restores
//! the default disposition and raises the signal again, so the process still dies of it (exit
//! status 128+N in a shell). `unlink` and `raise` are async-signal-safe; the handler allocates
//! nothing. Nothing is installed until a binary calls [`install`]: a library must not take over a
//! host program's signals.

use std::ffi::{CString, c_char, c_int};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::null_mut;
use std::sync::Once;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering::SeqCst};

const SLOTS: usize = 64;
static PATHS: [AtomicPtr<c_char>; SLOTS] = [const { AtomicPtr::new(null_mut()) }; SLOTS];
/// Set once a handler runs: from then on a guard leaks its path instead of freeing memory the
/// handler may be reading.
static DYING: AtomicBool = AtomicBool::new(false);
const SIGNALS: [c_int; 3] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP];

/// Install the cleanup handler (once per process). Signals that are ignored, as `nohup` leaves
/// SIGHUP, stay ignored.
pub fn install() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for sig in SIGNALS {
            // SAFETY: a zeroed sigaction is a valid "no handler, no flags, empty mask"; we pass
            // valid pointers and install a handler that only calls async-signal-safe functions.
            unsafe {
                let mut old: libc::sigaction = std::mem::zeroed();
                if libc::sigaction(sig, std::ptr::null(), &mut old) != 0
                    || old.sa_sigaction == libc::SIG_IGN
                {
                    continue;
                }
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = on_signal as *const () as libc::sighandler_t;
                act.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut act.sa_mask);
                libc::sigaction(sig, &act, std::ptr::null_mut());
            }
        }
    });
}

extern "C" fn on_signal(sig: c_int) {
    DYING.store(true, SeqCst);
    for slot in &PATHS {
        let path = slot.load(SeqCst);
        if !path.is_null() {
            // SAFETY: a non-null slot holds a NUL-terminated string that a guard frees only
            // after emptying the slot and seeing DYING unset (and DYING is set above).
            unsafe { libc::unlink(path) };
        }
    }
    // SAFETY: plain libc calls with valid arguments. The signal is blocked while its handler
    // runs, so the raised one is delivered, with the default action, as soon as we return.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
        libc::raise(sig);
    }
}

/// While alive, `path` is unlinked if the process is killed by one of the handled signals.
pub struct Registration(Option<usize>);

pub fn register(path: &Path) -> Registration {
    let Ok(c) = CString::new(path.as_os_str().as_bytes()) else {
        return Registration(None);
    };
    let raw = c.into_raw();
    for (i, slot) in PATHS.iter().enumerate() {
        if slot
            .compare_exchange(null_mut(), raw, SeqCst, SeqCst)
            .is_ok()
        {
            return Registration(Some(i));
        }
    }
    // Every slot taken: cleanup on signal is best effort, the write itself goes on.
    // SAFETY: `raw` came from `into_raw` above and was not published.
    drop(unsafe { CString::from_raw(raw) });
    Registration(None)
}

impl Drop for Registration {
    fn drop(&mut self) {
        let Some(i) = self.0 else { return };
        let raw = PATHS[i].swap(null_mut(), SeqCst);
        if !raw.is_null() && !DYING.load(SeqCst) {
            // SAFETY: `raw` came from `into_raw` in `register`, and the slot no longer holds it.
            drop(unsafe { CString::from_raw(raw) });
        }
    }
}

/// Hold back SIGINT, SIGTERM and SIGHUP in the calling thread until the guard is dropped; they
/// stay pending and are delivered (to the handler above, or with their default action) then.
/// For the few steps that must not be cut in the middle; SIGKILL cannot be held.
pub fn hold() -> Held {
    // SAFETY: sigemptyset/sigaddset initialise a set we own; pthread_sigmask reads it and writes
    // the previous mask into memory we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in SIGNALS {
            libc::sigaddset(&mut set, sig);
        }
        let mut old: libc::sigset_t = std::mem::zeroed();
        let held = libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old) == 0;
        Held(held.then_some(old))
    }
}

/// Restores the signal mask [`hold`] changed.
pub struct Held(Option<libc::sigset_t>);

impl Drop for Held {
    fn drop(&mut self) {
        if let Some(old) = &self.0 {
            // SAFETY: `old` is the mask pthread_sigmask gave us; restoring it delivers any held
            // signal.
            unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, old, std::ptr::null_mut()) };
        }
    }
}
