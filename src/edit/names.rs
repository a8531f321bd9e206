//! The node table of an editable view: each node is a name in a parent node, kept while the
//! kernel holds its inode.
//!
//! # Lookup counts
//!
//! Every reply that hands the kernel an entry (lookup, create, mkdir, mknod, symlink, link,
//! each readdirplus entry but `.` and `..`) adds one to its node's count ([`Nodes::insert`]
//! with `held`); FORGET and BATCH_FORGET subtract the kernel's own count of those replies
//! ([`Nodes::forget`]). At zero the kernel has no inode of the node left, and the record goes,
//! so the table is bounded by what the kernel holds, not by every path ever looked at.
//!
//! The order that makes this safe: a node is found or made *and* counted in one critical
//! section (under the table's write lock), before the reply leaves. The kernel's FORGET
//! counts only replies it has received, so it can never take a node below the replies still
//! on their way. A FORGET racing a new LOOKUP of the same name therefore either comes first
//! (the record goes; the lookup makes a new one, and the kernel, having dropped its inode,
//! makes a new one too) or second (the count stays above zero: the kernel holds the inode the
//! lookup handed it, which may be a new kernel inode of the same number). Either way every
//! number the kernel holds has its record. A reply the kernel never reads (the caller was
//! killed) leaves one count too many: that node is never dropped, which is the safe way to
//! be wrong.
//!
//! A directory with named children in the table stays too (`kids`), whatever its count: a
//! child's path runs through it, and the kernel forgets children before their parents
//! anyway. Records made without a count (listings, a name an operation looks at on its own)
//! wait in `unheld` and go at a sweep after at least one sweep interval untouched, so that
//! an operation in flight that found one keeps it.
//!
//! # Numbers
//!
//! A node that shows a layer entry at that entry's own path is numbered after it (the layer
//! node's index, below `lower_len`): the same path gets the same inode number again after
//! the kernel forgot it, as in a read-only view. Every other node gets a number from a
//! counter above them that is never reused while the view lives, so the kernel never
//! confuses two files (see [`crate::fuse`]).

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub struct Rec {
    pub parent: u32,
    pub name: OsString,
    /// The layer node showing through at this path (see [`super::Edit`]).
    pub lower: Option<u32>,
    /// Entries of this node the kernel holds (see the module docs).
    lookups: u64,
    /// Names in this directory that the table holds (`by_name` keys).
    kids: u32,
}

/// How long a record nobody counted lasts at least.
const SWEEP_EVERY: Duration = Duration::from_secs(5);

pub struct Nodes {
    recs: HashMap<u32, Rec>,
    by_name: HashMap<(u32, OsString), u32>,
    /// Hard-linked scratch files, by (device, inode): every name of one is one node, so the
    /// kernel's caches of it stay coherent whichever name is written.
    by_inode: HashMap<(u64, u64), u32>,
    /// Numbers below this are layer nodes' own.
    lower_len: u32,
    next: u32,
    /// Records with no count, and the sweep epoch in which they last were touched.
    unheld: HashMap<u32, u64>,
    /// Layer-numbered nodes that lost their last name while the kernel held them: the
    /// number is not given again until the kernel forgets them.
    retired: HashSet<u32>,
    epoch: u64,
    last_sweep: Instant,
}

impl Nodes {
    /// The table of a view over layers with `lower_len` nodes.
    pub fn new(lower_len: usize) -> Nodes {
        let root = Rec {
            parent: super::ROOT,
            name: OsString::new(),
            lower: Some(crate::view::ROOT),
            lookups: 0,
            kids: 0,
        };
        let lower_len = u32::try_from(lower_len).unwrap_or(u32::MAX).max(1);
        Nodes {
            recs: HashMap::from([(super::ROOT, root)]),
            by_name: HashMap::new(),
            by_inode: HashMap::new(),
            lower_len,
            next: lower_len,
            unheld: HashMap::new(),
            retired: HashSet::new(),
            epoch: 0,
            last_sweep: Instant::now(),
        }
    }

    pub fn get(&self, n: u32) -> Option<&Rec> {
        self.recs.get(&n)
    }

    /// How many records the table keeps (the root included).
    pub fn len(&self) -> usize {
        self.recs.len()
    }

    /// The node's path from the root; `None` once it or a directory above it is gone.
    pub fn path(&self, mut n: u32) -> Option<PathBuf> {
        let mut parts = Vec::new();
        while n != super::ROOT {
            let rec = self.recs.get(&n)?;
            parts.push(rec.name.as_os_str());
            n = rec.parent;
        }
        Some(parts.iter().rev().collect())
    }

    /// Count node `n` as handed to the kernel (`held`), or as just looked at.
    fn touch(&mut self, n: u32, held: bool) {
        let Some(rec) = self.recs.get_mut(&n) else {
            return;
        };
        if held {
            rec.lookups += 1;
            self.unheld.remove(&n);
        } else if rec.lookups == 0 && n != super::ROOT {
            self.unheld.insert(n, self.epoch);
        }
    }

    /// A new name `(dir, name)` for node `n`; the directory now has one more kid.
    fn add_name(&mut self, dir: u32, name: &OsStr, n: u32) {
        if self.by_name.insert((dir, name.to_owned()), n).is_none()
            && let Some(d) = self.recs.get_mut(&dir)
        {
            d.kids += 1;
        }
    }

    /// The name `(dir, name)` is no longer in the table; returns the node it named.
    fn remove_name(&mut self, dir: u32, name: &OsStr) -> Option<u32> {
        let n = self.by_name.remove(&(dir, name.to_owned()))?;
        if let Some(d) = self.recs.get_mut(&dir) {
            d.kids = d.kids.saturating_sub(1);
            if d.kids == 0 && d.lookups == 0 && dir != super::ROOT {
                self.unheld.insert(dir, self.epoch);
            }
        }
        Some(n)
    }

    /// The node for `name` in `dir`: the existing one (its `lower` refreshed) or a new one,
    /// counted as handed to the kernel when `held`.
    pub fn insert(&mut self, dir: u32, name: &OsStr, lower: Option<u32>, held: bool) -> u32 {
        let key = (dir, name.to_owned());
        if let Some(&n) = self.by_name.get(&key)
            && let Some(rec) = self.recs.get_mut(&n)
            // Another name of a linked node is that node only while it is that file (see
            // `insert_linked`); a name that is no link now gets a node of its own.
            && rec.parent == dir
            && rec.name == name
        {
            rec.lower = lower;
            self.touch(n, held);
            return n;
        }
        let n = match lower {
            // A layer entry at its own path (see the module docs on numbers).
            Some(l)
                if l < self.lower_len
                    && !self.recs.contains_key(&l)
                    && !self.retired.contains(&l) =>
            {
                l
            }
            _ => {
                let n = self.next;
                self.next += 1;
                n
            }
        };
        self.recs.insert(
            n,
            Rec {
                parent: dir,
                name: name.to_owned(),
                lower,
                lookups: 0,
                kids: 0,
            },
        );
        self.add_name(dir, name, n);
        self.touch(n, held);
        n
    }

    /// The node that `name` in `dir` is now, if the table has one, counted as handed to the
    /// kernel.
    pub fn acquire(&mut self, dir: u32, name: &OsStr) -> Option<u32> {
        let &n = self.by_name.get(&(dir, name.to_owned()))?;
        let rec = self.recs.get(&n)?;
        if rec.parent != dir || rec.name != name {
            return None;
        }
        self.touch(n, true);
        Some(n)
    }

    /// The node of a scratch file with several names (`inode` is its device and inode):
    /// the one its other names have, now also reachable as `name` in `dir`.
    pub fn insert_linked(&mut self, dir: u32, name: &OsStr, inode: (u64, u64), held: bool) -> u32 {
        if let Some(&n) = self.by_inode.get(&inode)
            && self.recs.contains_key(&n)
        {
            self.add_name(dir, name, n);
            self.touch(n, held);
            return n;
        }
        let n = self.insert(dir, name, None, held);
        self.by_inode.insert(inode, n);
        n
    }

    /// The kernel forgot `count` entries of node `n`. Returns the nodes that left the table.
    pub fn forget(&mut self, n: u32, count: u64) -> Vec<u32> {
        let mut gone = Vec::new();
        self.retired.remove(&n);
        if let Some(rec) = self.recs.get_mut(&n)
            && n != super::ROOT
        {
            rec.lookups = rec.lookups.saturating_sub(count);
            if rec.lookups == 0 {
                if rec.kids == 0 {
                    self.drop_node(n, &mut gone);
                } else {
                    self.unheld.insert(n, self.epoch);
                }
            }
        }
        self.sweep(&mut gone);
        gone
    }

    /// Drop the records nobody counted that were not touched for a sweep interval.
    fn sweep(&mut self, gone: &mut Vec<u32>) {
        if self.last_sweep.elapsed() < SWEEP_EVERY {
            return;
        }
        self.last_sweep = Instant::now();
        self.epoch += 1;
        // Touched in this epoch or the one before: maybe in use by an operation in flight.
        let old: Vec<u32> = self
            .unheld
            .iter()
            .filter(|&(_, &e)| e + 2 <= self.epoch)
            .map(|(&n, _)| n)
            .collect();
        for n in old {
            self.unheld.remove(&n);
            if self
                .recs
                .get(&n)
                .is_some_and(|r| r.lookups == 0 && r.kids == 0)
            {
                self.drop_node(n, gone);
            }
        }
    }

    /// Remove record `n` and every name of it.
    fn drop_node(&mut self, n: u32, gone: &mut Vec<u32>) {
        let Some(rec) = self.recs.remove(&n) else {
            return;
        };
        self.unheld.remove(&n);
        gone.push(n);
        let mut names = vec![(rec.parent, rec.name)];
        if self.by_inode.values().any(|&v| v == n) {
            self.by_inode.retain(|_, v| *v != n);
            names.extend(
                self.by_name
                    .iter()
                    .filter(|&(_, &v)| v == n)
                    .map(|(k, _)| k.clone()),
            );
        }
        for (dir, name) in names {
            if self.by_name.get(&(dir, name.clone())) == Some(&n) {
                self.remove_name(dir, &name);
            }
        }
    }

    /// The name is gone. A node with no name left leaves the table (its open files keep
    /// working through the descriptor `Edit` keeps for the orphan); a hard-linked one goes on
    /// under another name.
    pub fn forget_name(&mut self, dir: u32, name: &OsStr) {
        let Some(n) = self.remove_name(dir, name) else {
            return;
        };
        let primary = self
            .recs
            .get(&n)
            .is_some_and(|r| r.parent == dir && r.name == name);
        if !primary {
            return;
        }
        let other = self.by_inode.values().any(|&v| v == n).then(|| {
            self.by_name
                .iter()
                .find(|(_, v)| **v == n)
                .map(|(k, _)| k.clone())
        });
        match other.flatten() {
            Some((d, other_name)) => {
                if let Some(rec) = self.recs.get_mut(&n) {
                    (rec.parent, rec.name) = (d, other_name);
                }
            }
            None => {
                if let Some(rec) = self.recs.remove(&n)
                    && rec.lookups > 0
                    && n < self.lower_len
                {
                    self.retired.insert(n);
                }
                self.unheld.remove(&n);
                self.by_inode.retain(|_, v| *v != n);
            }
        }
    }

    /// A rename: the node moves (its descendants with it); a node it replaced is gone.
    pub fn rename(&mut self, dir: u32, name: &OsStr, newdir: u32, newname: &OsStr) {
        self.forget_name(newdir, newname);
        let Some(n) = self.remove_name(dir, name) else {
            return;
        };
        if let Some(rec) = self.recs.get_mut(&n)
            && rec.parent == dir
            && rec.name == name
        {
            rec.parent = newdir;
            rec.name = newname.to_owned();
            // Only scratch entries move (layer directories answer EXDEV).
            if rec.lower.is_some() {
                rec.lower = None;
            }
        }
        self.add_name(newdir, newname, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> &OsStr {
        OsStr::new(s)
    }

    #[test]
    fn a_node_goes_when_the_kernel_forgets_its_last_entry_and_not_before() {
        let mut t = Nodes::new(10);
        let d = t.insert(super::super::ROOT, name("d"), Some(1), true);
        let f = t.insert(d, name("f"), Some(2), true);
        assert_eq!(
            (d, f),
            (1, 2),
            "layer entries take their layer node's number"
        );
        assert_eq!(t.insert(d, name("f"), Some(2), true), f);
        assert!(t.forget(d, 1).is_empty(), "d still has a child");
        assert!(t.forget(f, 1).is_empty(), "one entry of f left");
        assert_eq!(t.forget(f, 1), [f]);
        assert_eq!(t.len(), 2);
        // d lost its last child while the kernel had forgotten it: it waits for a sweep.
        assert!(t.get(d).is_some());
    }

    #[test]
    fn a_forget_racing_a_new_lookup_keeps_the_node() {
        let mut t = Nodes::new(1);
        let f = t.insert(super::super::ROOT, name("f"), None, true);
        // The kernel evicts its inode (one entry) while a new lookup is answered.
        assert_eq!(t.insert(super::super::ROOT, name("f"), None, true), f);
        assert!(t.forget(f, 1).is_empty());
        assert_eq!(t.path(f).unwrap(), PathBuf::from("f"));
        // FORGET first: the record goes; the next lookup gets a fresh number.
        assert_eq!(t.forget(f, 1), [f]);
        let again = t.insert(super::super::ROOT, name("f"), None, true);
        assert_ne!(again, f, "a scratch entry's number is never reused");
    }

    #[test]
    fn every_name_of_a_linked_node_goes_with_it() {
        let mut t = Nodes::new(1);
        let root = super::super::ROOT;
        let a = t.insert_linked(root, name("a"), (1, 7), true);
        let b = t.insert_linked(root, name("b"), (1, 7), true);
        assert_eq!(a, b);
        assert_eq!(t.forget(a, 2), [a]);
        assert!(t.by_name.is_empty() && t.by_inode.is_empty());
        assert_eq!(t.recs[&root].kids, 0);
    }
}
