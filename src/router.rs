//! PID routing: which view a FUSE request's caller sees.
//!
//! The router holds whatever the mount serves for a view (see [`Routed`]); it needs of it
//! only the view's id.
//!
//! A registration says "the process tree rooted at this [`ProcId`] sees this view". A caller
//! is routed by walking its ancestry, nearest first; the first registered ancestor wins (a
//! `zmount run` inside another run's tree sees its own view). Callers in no registered tree see
//! nothing (the daemon shows them an empty directory).
//!
//! # The ancestry cache, and why it is safe
//!
//! Walking `/proc` costs a few file reads per ancestor, on every routed request. The cache maps
//! a caller PID to the registration it resolved to, and every entry carries a [`Watch`] on the
//! exact process it was computed for (a pidfd on Linux). An entry is used only while
//!
//! - that process is still alive: a dead process's PID may be reused by a stranger, which then
//!   misses and is resolved afresh; and
//! - no registration was added or removed since it was computed (a generation counter).
//!
//! While a process lives, its ancestry can change only by reparenting when an ancestor dies. A
//! `zmount run` root is a child subreaper, so orphans inside its tree are reparented to the root
//! itself and stay in the same view; when the root goes, its registration goes, which bumps the
//! generation. So a cached answer is the answer a fresh walk would give.

use crate::process::{self, ProcId, Watch};
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};

/// How processes are looked up: the system's, or a table in tests.
pub trait Procs: Send + Sync + 'static {
    fn ancestry(&self, pid: u32) -> io::Result<Vec<ProcId>>;
    fn watch(&self, pid: u32) -> Option<Watch>;
    fn alive(&self, id: ProcId) -> bool;
}

/// The running system's processes.
#[derive(Debug, Default)]
pub struct System;

impl Procs for System {
    fn ancestry(&self, pid: u32) -> io::Result<Vec<ProcId>> {
        process::ancestry(pid)
    }
    fn watch(&self, pid: u32) -> Option<Watch> {
        Watch::new(pid)
    }
    fn alive(&self, id: ProcId) -> bool {
        process::alive(id)
    }
}

/// What a registration routes to: the view's id names it in inode numbers (see
/// [`crate::fuse`]), unique for the daemon's lifetime.
pub trait Routed: Send + Sync + 'static {
    fn id(&self) -> u32;
}

/// Past this many cached callers the cache starts over: each entry holds a descriptor, and the
/// daemon needs descriptors for reads too (it raises its soft limit to the hard one).
const CACHE_MAX: usize = 1024;

struct Cached {
    watch: Watch,
    generation: u64,
    root: Option<ProcId>,
}

struct Table<V> {
    by_root: HashMap<ProcId, Arc<V>>,
    by_id: HashMap<u32, Arc<V>>,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table {
            by_root: HashMap::new(),
            by_id: HashMap::new(),
        }
    }
}

pub struct Router<V, P: Procs = System> {
    procs: P,
    table: RwLock<Table<V>>,
    generation: AtomicU64,
    cache: Mutex<HashMap<u32, Cached>>,
    hits: AtomicU64,
    misses: AtomicU64,
}

/// A live registration, for `status`.
#[derive(Debug)]
pub struct Registration<V> {
    pub root: ProcId,
    pub view: Arc<V>,
}

impl<V> Clone for Registration<V> {
    fn clone(&self) -> Self {
        Registration {
            root: self.root,
            view: self.view.clone(),
        }
    }
}

impl<V: Routed> Router<V, System> {
    pub fn new() -> Self {
        Self::with_procs(System)
    }
}

impl<V: Routed> Default for Router<V, System> {
    fn default() -> Self {
        Self::new()
    }
}

impl<V: Routed, P: Procs> Router<V, P> {
    pub fn with_procs(procs: P) -> Self {
        Router {
            procs,
            table: RwLock::new(Table::default()),
            generation: AtomicU64::new(0),
            cache: Mutex::new(HashMap::new()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    /// Route `root`'s tree to `view`. Registering a root again replaces its view.
    pub fn register(&self, root: ProcId, view: Arc<V>) {
        let mut t = self.table.write().unwrap();
        if let Some(old) = t.by_root.insert(root, view.clone()) {
            t.by_id.remove(&old.id());
        }
        t.by_id.insert(view.id(), view);
        self.generation.fetch_add(1, Relaxed);
    }

    /// Remove the registration of the process with `pid` (any start time); returns it.
    pub fn unregister(&self, pid: u32) -> Option<Registration<V>> {
        let mut t = self.table.write().unwrap();
        let root = *t.by_root.keys().find(|r| r.pid == pid)?;
        let view = t.by_root.remove(&root)?;
        t.by_id.remove(&view.id());
        self.generation.fetch_add(1, Relaxed);
        Some(Registration { root, view })
    }

    /// Drop registrations whose root process has exited; returns them.
    pub fn sweep(&self) -> Vec<Registration<V>> {
        let dead: Vec<ProcId> = {
            let t = self.table.read().unwrap();
            t.by_root
                .keys()
                .filter(|r| !self.procs.alive(**r))
                .copied()
                .collect()
        };
        let mut gone = Vec::new();
        if dead.is_empty() {
            return gone;
        }
        let mut t = self.table.write().unwrap();
        for root in dead {
            if let Some(view) = t.by_root.remove(&root) {
                t.by_id.remove(&view.id());
                gone.push(Registration { root, view });
            }
        }
        self.generation.fetch_add(1, Relaxed);
        gone
    }

    /// The view with this id, if it is still registered.
    pub fn view(&self, id: u32) -> Option<Arc<V>> {
        self.table.read().unwrap().by_id.get(&id).cloned()
    }

    pub fn registrations(&self) -> Vec<Registration<V>> {
        let t = self.table.read().unwrap();
        let mut v: Vec<_> = t
            .by_root
            .iter()
            .map(|(r, v)| Registration {
                root: *r,
                view: v.clone(),
            })
            .collect();
        v.sort_by_key(|r| r.view.id());
        v
    }

    /// The view the caller `pid` sees, if any.
    pub fn route(&self, pid: u32) -> Option<Arc<V>> {
        let generation = self.generation.load(Relaxed);
        let cached = {
            let cache = self.cache.lock().unwrap();
            cache
                .get(&pid)
                .filter(|c| c.generation == generation && c.watch.alive())
                .map(|c| c.root)
        };
        let root = match cached {
            Some(root) => {
                self.hits.fetch_add(1, Relaxed);
                root
            }
            None => {
                self.misses.fetch_add(1, Relaxed);
                // Watch first, then read the ancestry: if the PID changes hands in between,
                // the watch already sees the first holder dead and the entry is never used.
                let watch = self.procs.watch(pid);
                let root = self.resolve(pid);
                if let Some(watch) = watch {
                    let mut cache = self.cache.lock().unwrap();
                    if cache.len() >= CACHE_MAX {
                        cache.clear();
                    }
                    cache.insert(
                        pid,
                        Cached {
                            watch,
                            generation,
                            root,
                        },
                    );
                }
                root
            }
        };
        let t = self.table.read().unwrap();
        t.by_root.get(&root?).cloned()
    }

    fn resolve(&self, pid: u32) -> Option<ProcId> {
        let chain = self.procs.ancestry(pid).ok()?;
        let t = self.table.read().unwrap();
        chain.into_iter().find(|p| t.by_root.contains_key(p))
    }

    /// (hits, misses) of the ancestry cache.
    pub fn cache_stats(&self) -> (u64, u64) {
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A process table: pid -> (start, ppid). Watches are not available, so nothing is cached
    /// and every route is a fresh walk of the table.
    #[derive(Default)]
    struct Fake(Mutex<HashMap<u32, (u64, u32)>>);

    impl Fake {
        fn set(&self, pid: u32, start: u64, ppid: u32) {
            self.0.lock().unwrap().insert(pid, (start, ppid));
        }
        fn id(&self, pid: u32) -> ProcId {
            ProcId {
                pid,
                start: self.0.lock().unwrap()[&pid].0,
            }
        }
    }

    impl Procs for Arc<Fake> {
        fn ancestry(&self, mut pid: u32) -> io::Result<Vec<ProcId>> {
            let t = self.0.lock().unwrap();
            let mut chain = vec![];
            while let Some(&(start, ppid)) = t.get(&pid) {
                chain.push(ProcId { pid, start });
                pid = ppid;
            }
            if chain.is_empty() {
                return Err(io::ErrorKind::NotFound.into());
            }
            Ok(chain)
        }
        fn watch(&self, _pid: u32) -> Option<Watch> {
            None
        }
        fn alive(&self, id: ProcId) -> bool {
            self.0
                .lock()
                .unwrap()
                .get(&id.pid)
                .is_some_and(|p| p.0 == id.start)
        }
    }

    /// All the router needs of a view.
    struct View(u32);

    impl Routed for View {
        fn id(&self) -> u32 {
            self.0
        }
    }

    fn view(id: u32) -> Arc<View> {
        Arc::new(View(id))
    }

    fn tree() -> (Arc<Fake>, Router<View, Arc<Fake>>) {
        let fake = Arc::new(Fake::default());
        // 1 -> 10 (run A) -> 11 -> 12 (grandchild); 1 -> 20 (run B) -> 21 (run C) -> 22
        fake.set(1, 1, 0);
        for (pid, ppid) in [
            (10, 1),
            (11, 10),
            (12, 11),
            (20, 1),
            (21, 20),
            (22, 21),
            (30, 1),
        ] {
            fake.set(pid, 100 + pid as u64, ppid);
        }
        let router = Router::with_procs(fake.clone());
        (fake, router)
    }

    #[test]
    fn descendants_see_their_roots_view_and_outsiders_none() {
        let (fake, r) = tree();
        r.register(fake.id(10), view(1));
        r.register(fake.id(20), view(2));
        assert_eq!(r.route(12).unwrap().id(), 1);
        assert_eq!(r.route(10).unwrap().id(), 1);
        assert_eq!(r.route(22).unwrap().id(), 2);
        assert!(r.route(30).is_none());
        assert!(r.route(1).is_none());
        assert!(r.route(999).is_none());
    }

    #[test]
    fn nearest_registered_ancestor_wins() {
        let (fake, r) = tree();
        r.register(fake.id(20), view(2));
        r.register(fake.id(21), view(3));
        assert_eq!(r.route(22).unwrap().id(), 3);
        assert_eq!(r.route(20).unwrap().id(), 2);
    }

    #[test]
    fn reused_pid_does_not_inherit_a_view() {
        let (fake, r) = tree();
        r.register(fake.id(10), view(1));
        assert_eq!(r.route(12).unwrap().id(), 1);
        // 10 exits; a stranger gets PID 10 (new start time) under init, and so does its child.
        fake.set(10, 999, 1);
        assert!(r.route(10).is_none());
        assert!(
            r.route(12).is_none(),
            "11's parent is now a different process 10"
        );
        assert_eq!(r.sweep().len(), 1);
        assert!(r.registrations().is_empty());
        assert!(r.view(1).is_none());
    }

    #[test]
    fn unregister_and_replace() {
        let (fake, r) = tree();
        r.register(fake.id(10), view(1));
        r.register(fake.id(10), view(4));
        assert!(r.view(1).is_none());
        assert_eq!(r.route(11).unwrap().id(), 4);
        assert_eq!(r.unregister(10).unwrap().view.id(), 4);
        assert!(r.route(11).is_none());
        assert!(r.unregister(10).is_none());
    }

    #[test]
    fn cache_hits_for_a_live_caller_and_misses_after_changes() {
        let r = Router::<View>::new();
        let me = process::stat(std::process::id()).unwrap().id;
        r.register(me, view(7));
        assert_eq!(r.route(me.pid).unwrap().id(), 7);
        assert_eq!(r.route(me.pid).unwrap().id(), 7);
        assert_eq!(r.cache_stats(), (1, 1));
        r.unregister(me.pid);
        assert!(r.route(me.pid).is_none());
        assert_eq!(r.cache_stats(), (1, 2));
    }
}
