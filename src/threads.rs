//! Threads the system may refuse. `std::thread::spawn` and `Scope::spawn` panic when `clone`
//! fails (EAGAIN at the user's process limit, or out of memory), and no tool may panic on
//! that. Work that can run on fewer threads does ([`helpers`]); work that needs its thread
//! says why ([`spawn`], [`spawn_scoped`]). clippy.toml forbids the panicking calls.

use crate::error::{Error, Result};
use std::path::Path;
use std::thread::{Builder, JoinHandle, Scope, ScopedJoinHandle};

/// The operation of the error a refused thread gives (its hint names the limit).
pub const NO_THREAD: &str = "cannot start a thread";

/// Start a thread for the work on `path`.
pub fn spawn<T, F>(path: &Path, f: F) -> Result<JoinHandle<T>>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    Builder::new()
        .spawn(f)
        .map_err(|e| Error::io(path, NO_THREAD, e))
}

/// Start a scoped thread for the work on `path`.
pub fn spawn_scoped<'scope, T, F>(
    scope: &'scope Scope<'scope, '_>,
    path: &Path,
    f: F,
) -> Result<ScopedJoinHandle<'scope, T>>
where
    F: FnOnce() -> T + Send + 'scope,
    T: Send + 'scope,
{
    Builder::new()
        .spawn_scoped(scope, f)
        .map_err(|e| Error::io(path, NO_THREAD, e))
}

/// Up to `n` threads running `work` beside the caller, as many as the system gives: the
/// caller runs `work` too, so the work gets done on fewer threads, or on the caller's alone.
pub fn helpers<'scope, T, F>(
    scope: &'scope Scope<'scope, '_>,
    n: usize,
    work: &'scope F,
) -> Vec<ScopedJoinHandle<'scope, T>>
where
    F: Fn() -> T + Sync,
    T: Send + 'scope,
{
    let mut started = Vec::with_capacity(n);
    for _ in 0..n {
        match Builder::new().spawn_scoped(scope, work) {
            Ok(handle) => started.push(handle),
            Err(e) => {
                tracing::debug!(error = %e, started = started.len(), "no more helper threads");
                break;
            }
        }
    }
    started
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn helpers_and_the_caller_share_the_work() {
        let done = AtomicUsize::new(0);
        let work = || done.fetch_add(1, Ordering::SeqCst);
        std::thread::scope(|s| {
            let started = helpers(s, 3, &work);
            work();
            for h in started {
                h.join().unwrap();
            }
        });
        assert_eq!(done.load(Ordering::SeqCst), 4);
    }
}
