//! The node table of an editable view: each node is a name in a parent node.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

pub struct Rec {
    pub parent: u32,
    pub name: OsString,
    /// The layer node showing through at this path (see [`super::Edit`]).
    pub lower: Option<u32>,
}

pub struct Nodes {
    recs: HashMap<u32, Rec>,
    by_name: HashMap<(u32, OsString), u32>,
    /// Hard-linked scratch files, by (device, inode): every name of one is one node, so the
    /// kernel's caches of it stay coherent whichever name is written.
    by_inode: HashMap<(u64, u64), u32>,
    next: u32,
}

impl Nodes {
    pub fn new() -> Nodes {
        let root = Rec {
            parent: super::ROOT,
            name: OsString::new(),
            lower: Some(crate::view::ROOT),
        };
        Nodes {
            recs: HashMap::from([(super::ROOT, root)]),
            by_name: HashMap::new(),
            by_inode: HashMap::new(),
            next: super::ROOT + 1,
        }
    }

    pub fn get(&self, n: u32) -> Option<&Rec> {
        self.recs.get(&n)
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

    /// The node for `name` in `dir`: the existing one (its `lower` refreshed) or a new one.
    /// Numbers are never reused.
    pub fn insert(&mut self, dir: u32, name: &OsStr, lower: Option<u32>) -> u32 {
        let key = (dir, name.to_owned());
        if let Some(&n) = self.by_name.get(&key)
            && let Some(rec) = self.recs.get_mut(&n)
            // Another name of a linked node is that node only while it is that file (see
            // `insert_linked`); a name that is no link now gets a node of its own.
            && rec.parent == dir
            && rec.name == name
        {
            rec.lower = lower;
            return n;
        }
        let n = self.next;
        self.next += 1;
        self.recs.insert(
            n,
            Rec {
                parent: dir,
                name: name.to_owned(),
                lower,
            },
        );
        self.by_name.insert(key, n);
        n
    }

    /// The node of a scratch file with several names (`inode` is its device and inode):
    /// the one its other names have, now also reachable as `name` in `dir`.
    pub fn insert_linked(&mut self, dir: u32, name: &OsStr, inode: (u64, u64)) -> u32 {
        if let Some(&n) = self.by_inode.get(&inode)
            && self.recs.contains_key(&n)
        {
            self.by_name.insert((dir, name.to_owned()), n);
            return n;
        }
        let n = self.insert(dir, name, None);
        self.by_inode.insert(inode, n);
        n
    }

    /// The name is gone. A node with no name left leaves the table (its open files keep
    /// working through the descriptor `Edit` keeps for the orphan); a hard-linked one goes on
    /// under another name.
    pub fn forget_name(&mut self, dir: u32, name: &OsStr) {
        let Some(n) = self.by_name.remove(&(dir, name.to_owned())) else {
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
                self.recs.remove(&n);
                self.by_inode.retain(|_, v| *v != n);
            }
        }
    }

    /// A rename: the node moves (its descendants with it); a node it replaced is gone.
    pub fn rename(&mut self, dir: u32, name: &OsStr, newdir: u32, newname: &OsStr) {
        self.forget_name(newdir, newname);
        let Some(n) = self.by_name.remove(&(dir, name.to_owned())) else {
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
        self.by_name.insert((newdir, newname.to_owned()), n);
    }
}
