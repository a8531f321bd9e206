//! Threads the system may refuse. `std::thread::spawn` and `Scope::spawn` panic when `clone`
//! fails (EAGAIN at the user's process limit, or out of memory), and no tool may panic on
//! that. Work that can run on fewer threads does ([`on_threads`]); work that needs its thread
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

/// `worker` on `jobs` threads, the caller's among them, or on fewer (down to the caller's
/// alone) if the system refuses some; what each returned.
pub fn on_threads<S: Send, W: Fn() -> S + Sync>(jobs: usize, worker: &W) -> Vec<S> {
    std::thread::scope(|scope| {
        let mut helpers = Vec::with_capacity(jobs.max(1) - 1);
        for _ in 1..jobs {
            match Builder::new().spawn_scoped(scope, worker) {
                Ok(handle) => helpers.push(handle),
                Err(e) => {
                    tracing::debug!(error = %e, started = helpers.len(), "no more helper threads");
                    break;
                }
            }
        }
        let mine = worker();
        let mut states: Vec<S> = helpers
            .into_iter()
            .map(|h| h.join().expect("worker panicked"))
            .collect();
        states.push(mine);
        states
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn helpers_and_the_caller_share_the_work() {
        let done = AtomicUsize::new(0);
        let work = || done.fetch_add(1, Ordering::SeqCst);
        assert_eq!(on_threads(4, &work).len(), 4);
        assert_eq!(done.load(Ordering::SeqCst), 4);
    }
}
