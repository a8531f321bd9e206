//! What a run learns about (source device, destination device) pairs: EXDEV for hard links,
//! "no reflinks here" for clones. Both are facts about the pair, not the file, so the first
//! call for a pair is a probe: concurrent workers wait for its answer instead of racing it,
//! and a pair that fails is never tried again. A cross-device run of 100k files with 8 workers
//! makes exactly one failing `linkat`.
//!
//! Keyed by `st_dev` of the directories involved. Two mounts of one file system (a bind mount)
//! share a `st_dev` yet refuse links between them; their first EXDEV marks the pair and the
//! rest of the run falls back, which is right for that run.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex, MutexGuard};

pub type Pair = (u64, u64);

#[derive(Default)]
pub struct Memory {
    pub link: Facts,
    pub reflink: Facts,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Probing,
    Works,
    Fails,
}

/// Whether one kind of call works for each pair seen so far.
#[derive(Default)]
pub struct Facts {
    states: Mutex<HashMap<Pair, State>>,
    settled: Condvar,
}

/// The answer to [`Facts::ask`].
pub enum Ask<'a> {
    /// Known to fail for this pair: skip the call.
    Skip,
    /// Make the call. With a probe, this caller is the first for the pair and must report
    /// the outcome through it (dropping it unsettled lets the next caller probe).
    Go(Option<Probe<'a>>),
}

impl Facts {
    pub fn ask(&self, pair: Pair) -> Ask<'_> {
        let mut states = self.lock();
        loop {
            match states.get(&pair) {
                Some(State::Works) => return Ask::Go(None),
                Some(State::Fails) => return Ask::Skip,
                Some(State::Probing) => {
                    states = self.settled.wait(states).unwrap_or_else(|e| e.into_inner());
                }
                None => {
                    states.insert(pair, State::Probing);
                    return Ask::Go(Some(Probe {
                        facts: self,
                        pair,
                        settled: false,
                    }));
                }
            }
        }
    }

    /// Record a failure seen without a probe (a pair that worked, then did not).
    pub fn learn_fails(&self, pair: Pair) {
        self.lock().insert(pair, State::Fails);
    }

    fn set(&self, pair: Pair, state: Option<State>) {
        let mut states = self.lock();
        match state {
            Some(s) => states.insert(pair, s),
            None => states.remove(&pair),
        };
        self.settled.notify_all();
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Pair, State>> {
        // The map stays consistent whatever panicked while holding it.
        self.states.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The first caller's duty to say whether the call works for its pair.
pub struct Probe<'a> {
    facts: &'a Facts,
    pair: Pair,
    settled: bool,
}

impl Probe<'_> {
    pub fn settle(mut self, works: bool) {
        self.settled = true;
        let state = if works { State::Works } else { State::Fails };
        self.facts.set(self.pair, Some(state));
    }
}

impl Drop for Probe<'_> {
    fn drop(&mut self) {
        if !self.settled {
            self.facts.set(self.pair, None);
        }
    }
}

impl Ask<'_> {
    /// Report the outcome of the call made after [`Ask::Go`]: `Some(works)` when it says
    /// something about the pair, `None` when it was about this file only.
    pub fn report(self, facts: &Facts, pair: Pair, outcome: Option<bool>) {
        match (self, outcome) {
            (Ask::Go(Some(probe)), Some(works)) => probe.settle(works),
            (Ask::Go(None), Some(false)) => facts.learn_fails(pair),
            _ => {}
        }
    }
}
