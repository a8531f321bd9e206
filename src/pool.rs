//! The two shapes of parallel work a commit has, on scoped threads: a queue that grows as
//! directories are discovered, and a fixed list of files. The first error stops everyone.

use crate::error::{Error, Result};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

/// Run `work` on every item, and on every item it pushes, with `jobs` threads. Each thread
/// gets its own `state` (from `init`), returned at the end.
pub fn queue<T, S, I, W>(jobs: usize, seed: Vec<T>, init: I, work: W) -> Result<Vec<S>>
where
    T: Send,
    S: Send,
    I: Fn() -> S + Sync,
    W: Fn(&mut S, T, &mut Vec<T>) -> Result<()> + Sync,
{
    struct Shared<T> {
        items: Vec<T>,
        busy: usize,
        failed: Option<Error>,
    }
    let shared = Mutex::new(Shared {
        items: seed,
        busy: 0,
        failed: None,
    });
    let wake = Condvar::new();
    let worker = || {
        let mut state = init();
        let mut found = Vec::new();
        loop {
            let item = {
                let mut s = shared.lock().unwrap();
                loop {
                    if s.failed.is_some() {
                        return state;
                    }
                    if let Some(item) = s.items.pop() {
                        s.busy += 1;
                        break item;
                    }
                    if s.busy == 0 {
                        wake.notify_all();
                        return state;
                    }
                    s = wake.wait(s).unwrap();
                }
            };
            let result = work(&mut state, item, &mut found);
            let mut s = shared.lock().unwrap();
            s.busy -= 1;
            match result {
                Ok(()) => s.items.append(&mut found),
                Err(e) => {
                    s.failed.get_or_insert(e);
                }
            }
            wake.notify_all();
        }
    };
    let states = crate::threads::on_threads(jobs, &worker);
    match shared.into_inner().unwrap().failed {
        Some(e) => Err(e),
        None => Ok(states),
    }
}

/// Run `work(state, i)` for every `i` in `0..n` with `jobs` threads, each with its own state,
/// then `finish(state)` on each thread once its share is done.
pub fn each<S, I, W, F>(jobs: usize, n: usize, init: I, work: W, finish: F) -> Result<Vec<S>>
where
    S: Send,
    I: Fn() -> Result<S> + Sync,
    W: Fn(&mut S, usize) -> Result<()> + Sync,
    F: Fn(&mut S) -> Result<()> + Sync,
{
    let next = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let worker = || {
        let mut state = init()?;
        while !stop.load(Ordering::Relaxed) {
            let i = next.fetch_add(1, Ordering::Relaxed);
            if i >= n {
                break;
            }
            if let Err(e) = work(&mut state, i) {
                stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
        if stop.load(Ordering::Relaxed) {
            return Ok(state);
        }
        finish(&mut state).inspect_err(|_| stop.store(true, Ordering::Relaxed))?;
        Ok(state)
    };
    crate::threads::on_threads(jobs, &worker)
        .into_iter()
        .collect()
}
