//! `zcommit gc`: removing what nothing reaches.
//!
//! # What stays
//!
//! The roots are every tag's layer, every runtime's base stack (`runtimes/NAME/state`), the
//! layers of live pins (views being shown: see `store/pins.rs`) and the layers the caller keeps.
//! A layer stays if it is a root; a blob stays if a staying layer names it; a layer's data
//! in a per-layer area ([`LAYER_AREAS`]: `meta/HEX`, `oci/HEX`) stays with its layer; a
//! commit cache (`index/NAME`) stays if it names a staying blob. Everything else goes, and so
//! do pins of processes that are gone and temporaries whose writers are gone. Tags and
//! runtimes are never removed.
//!
//! # Running beside writers (see `store/lock.rs`)
//!
//! 1. List the store's objects. Only objects in this listing can go: whatever appears later
//!    is newer than the sweep's start and waits for the next one (the grace period).
//! 2. Read the roots and mark what they reach, without any lock: this is the slow part
//!    (every reachable manifest is read), and writers go on meanwhile.
//! 3. Take the store lock exclusively. No writer is between "is it there?" and naming it
//!    now. Read the roots again, take every layer that was not in the listing as a root
//!    too (a commit that finished meanwhile, tagged or not), and mark what they add.
//!    Per-layer data is listed again now: it only ever goes with its layer.
//! 4. Remove, in an order that keeps every prefix of the work sound (a SIGKILL may stop it
//!    anywhere): per-layer data first (each renamed to `.gc-NAME` in one step, then
//!    removed, so a half-removed tree is never under its layer's name; the next gc removes
//!    `.gc-*` leftovers), then layers, then a sync, so that no layer's removal can be lost
//!    when its blobs' is not, then commit caches, blobs, dead pins and stale temporaries.
//!    A remaining layer therefore never names a removed blob, and `zcommit verify` is clean
//!    after any interruption; the next gc removes the rest.
//!
//! Two gcs at once are fine: the second waits for the first's lock, and what the first
//! removed is simply missing to the second.

pub mod usage;

use crate::digest::Digest;
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::manifest::Kind;
use crate::store::Store;
use crate::store::index::Index;
use std::collections::HashSet;
use std::fs::File;
use std::io::ErrorKind as Io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Directories of `ROOT` holding data per layer, named by the layer's hex digest: removed
/// with their layer. A name starting with `.gc-` is one a gc was removing.
pub const LAYER_AREAS: &[&str] = &["meta", "oci"];

/// The prefix of a per-layer entry being removed.
const TRASH: &str = ".gc-";
/// The prefix of a meta image being built (see [`crate::overlay::meta`]): under the sweep's
/// lock no one is building, so one is a killed build's.
const BUILD: &str = ".build-";

#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Layers to keep besides the roots.
    pub keep: Vec<Digest>,
    /// Find what would go, remove nothing.
    pub dry_run: bool,
    /// Threads that remove.
    pub jobs: usize,
}

/// Kinds of things a gc removes, in the order it removes them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum What {
    /// A layer's data in a per-layer area.
    Area,
    Layer,
    /// A commit cache.
    Cache,
    Blob,
    /// A pin of a process that is gone.
    Pin,
}

impl What {
    pub fn name(self) -> &'static str {
        match self {
            What::Area => "per-layer",
            What::Layer => "layer",
            What::Cache => "cache",
            What::Blob => "blob",
            What::Pin => "pin",
        }
    }
}

/// One thing removed (or, in a dry run, to be removed).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Item {
    pub what: What,
    /// Relative to the store's root, like `blobs/ab/abcd…`.
    pub path: PathBuf,
    /// Its size: a file's length, or for a directory the disk space its files take (an older
    /// zkit's meta trees held sparse files: their length is not what they cost).
    pub bytes: u64,
}

/// What a gc did (or would do).
#[derive(Debug, Default)]
pub struct Swept {
    /// Sorted by kind (the removal order), then path.
    pub items: Vec<Item>,
    /// Temporaries whose writers were gone.
    pub temporaries: usize,
}

impl Swept {
    pub fn count(&self, what: What) -> usize {
        self.items.iter().filter(|i| i.what == what).count()
    }

    pub fn bytes(&self) -> u64 {
        self.items.iter().map(|i| i.bytes).sum()
    }
}

/// The objects a gc may remove: those there when it started.
struct Listing {
    layers: Vec<Digest>,
    blobs: Vec<Digest>,
    caches: Vec<String>,
    /// (area, entry name).
    areas: Vec<(&'static str, String)>,
}

/// What the roots reach.
#[derive(Default)]
struct Marks {
    layers: HashSet<Digest>,
    blobs: HashSet<Digest>,
    dead_pins: Vec<PathBuf>,
}

impl Store {
    /// Remove what no tag, runtime, live pin or `opts.keep` reaches (see the module docs).
    pub fn gc(&self, opts: &Options) -> Result<Swept> {
        let listing = self.listing()?;
        let mut marks = Marks::default();
        let roots = self.roots(&opts.keep, &mut marks)?;
        self.mark(roots, &mut marks)?;
        if opts.dry_run {
            return self.plan(&listing, &marks);
        }
        let lock = self.sweep_lock()?;
        let mut marks = Marks {
            dead_pins: Vec::new(),
            ..marks
        };
        let mut roots = self.roots(&opts.keep, &mut marks)?;
        // Per-layer data is listed again: what was made meanwhile for a layer that goes,
        // goes with it (no one makes any now).
        let listing = Listing {
            areas: self.areas()?,
            ..listing
        };
        let old: HashSet<&Digest> = listing.layers.iter().collect();
        roots.extend(self.layers()?.into_iter().filter(|d| !old.contains(d)));
        self.mark(roots, &mut marks)?;
        let plan = self.plan(&listing, &marks)?;
        let mut swept = self.sweep(plan, opts.jobs)?;
        drop(lock);
        swept.temporaries = self.remove_temporaries();
        Ok(swept)
    }

    fn listing(&self) -> Result<Listing> {
        let index = self.root().join("index");
        let mut caches = Vec::new();
        for entry in std::fs::read_dir(&index).at(&index, "cannot list commit caches")? {
            let entry = entry.at(&index, "cannot list commit caches")?;
            if let Some(name) = entry
                .file_name()
                .to_str()
                .filter(|n| Digest::parse(n).is_some())
            {
                caches.push(name.to_owned());
            }
        }
        Ok(Listing {
            layers: self.layers()?,
            blobs: self.blob_files()?.into_iter().map(|(_, d)| d).collect(),
            caches,
            areas: self.areas()?,
        })
    }

    /// The entries of the per-layer areas: by layer, and leftovers of interrupted removals
    /// (`.gc-HEX`) and builds (`.build-HEX`, see [`crate::overlay::meta`]).
    fn areas(&self) -> Result<Vec<(&'static str, String)>> {
        let mut areas = Vec::new();
        for area in LAYER_AREAS {
            let dir = self.root().join(area);
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == Io::NotFound => continue,
                Err(e) => return Err(Error::io(&dir, "cannot list", e)),
            };
            for entry in entries {
                let entry = entry.at(&dir, "cannot list")?;
                if let Some(name) = entry.file_name().to_str().filter(|n| {
                    Digest::parse(n).is_some()
                        || [TRASH, BUILD]
                            .iter()
                            .any(|p| n.strip_prefix(p).and_then(Digest::parse).is_some())
                }) {
                    areas.push((*area, name.to_owned()));
                }
            }
        }
        Ok(areas)
    }

    /// The layers the roots name; pins of dead processes go to `marks`.
    fn roots(&self, keep: &[Digest], marks: &mut Marks) -> Result<Vec<Digest>> {
        let tags = self.tags()?;
        if let Some(bad) = tags.bad.into_iter().next() {
            return Err(Error::new(
                bad.path.clone(),
                ErrorKind::Invalid(format!(
                    "{}; gc cannot tell which layer this tag keeps (repair the tag, or \
                     `zcommit untag` it)",
                    bad.kind
                )),
            ));
        }
        let mut roots: Vec<Digest> = tags.sound.into_iter().flat_map(|(_, d)| d).collect();
        roots.extend(self.runtime_bases()?);
        let pins = self.pins()?;
        roots.extend(pins.live);
        marks.dead_pins = pins.dead;
        roots.extend_from_slice(keep);
        Ok(roots)
    }

    /// Every runtime's base stack.
    fn runtime_bases(&self) -> Result<Vec<Digest>> {
        let all = crate::runtime::open_all(self)?;
        Ok(all
            .iter()
            .flat_map(|rt| rt.base().iter().copied())
            .collect())
    }

    /// Mark `roots` and the blobs they name. A root whose layer is missing reaches nothing
    /// (`verify` reports a tag that names one); a damaged one stops the gc, since what it
    /// names cannot be known.
    fn mark(&self, roots: Vec<Digest>, marks: &mut Marks) -> Result<()> {
        for layer in roots {
            if !marks.layers.insert(layer) {
                continue;
            }
            let manifest = match self.load_layer(&layer) {
                Ok(m) => m,
                Err(Error {
                    kind: ErrorKind::UnknownLayer,
                    ..
                }) => continue,
                Err(e) => {
                    return Err(Error::new(
                        e.path.clone(),
                        ErrorKind::Invalid(format!(
                            "{}; gc cannot tell which blobs this kept layer needs (run `zcommit \
                             verify --repair`, then commit the layer's tree again)",
                            e.kind
                        )),
                    ));
                }
            };
            for e in manifest.entries() {
                if let Kind::File { digest, .. } = e.kind {
                    marks.blobs.insert(digest);
                }
            }
        }
        Ok(())
    }

    /// What goes, given what is marked.
    fn plan(&self, listing: &Listing, marks: &Marks) -> Result<Swept> {
        let mut items = Vec::new();
        let file_item = |what, rel: PathBuf| -> Result<Option<Item>> {
            let path = self.root().join(&rel);
            match std::fs::symlink_metadata(&path) {
                Ok(m) => Ok(Some(Item {
                    what,
                    path: rel,
                    bytes: m.len(),
                })),
                // Removed meanwhile (another gc, `verify --repair`).
                Err(e) if e.kind() == Io::NotFound => Ok(None),
                Err(e) => Err(Error::io(&path, "cannot stat", e)),
            }
        };
        for (area, name) in &listing.areas {
            let layer = Digest::parse(name);
            if layer.is_some_and(|d| marks.layers.contains(&d)) {
                continue;
            }
            let rel = Path::new(area).join(name);
            if let Some(bytes) = disk_usage(&self.root().join(&rel))? {
                items.push(Item {
                    what: What::Area,
                    path: rel,
                    bytes,
                });
            }
        }
        for layer in listing.layers.iter().filter(|d| !marks.layers.contains(d)) {
            let rel = Path::new("layers").join(layer.to_hex());
            items.extend(file_item(What::Layer, rel)?);
        }
        for name in &listing.caches {
            let rel = Path::new("index").join(name);
            let kept = Index::read(&self.root().join(&rel))
                .is_some_and(|index| index.digests().any(|d| marks.blobs.contains(d)));
            if !kept {
                items.extend(file_item(What::Cache, rel)?);
            }
        }
        for blob in listing.blobs.iter().filter(|d| !marks.blobs.contains(d)) {
            let hex = blob.to_hex();
            let rel = Path::new("blobs").join(&hex[..2]).join(&hex);
            items.extend(file_item(What::Blob, rel)?);
        }
        for pin in &marks.dead_pins {
            if let Ok(rel) = pin.strip_prefix(self.root()) {
                items.extend(file_item(What::Pin, rel.to_owned())?);
            }
        }
        items.sort_by(|a, b| (a.what, &a.path).cmp(&(b.what, &b.path)));
        Ok(Swept {
            items,
            temporaries: 0,
        })
    }

    /// Remove what `plan` lists, one kind after the other, each with `jobs` threads; the
    /// removals of per-layer data and then of layers are made durable (their directories
    /// synced) before the next kind's begin, so a power cut cannot keep a layer whose blobs'
    /// removal reached the disk. Only what was there to remove is reported.
    fn sweep(&self, plan: Swept, jobs: usize) -> Result<Swept> {
        let mut done = Swept::default();
        let mut items = plan.items;
        while !items.is_empty() {
            let what = items[0].what;
            let n = items.iter().take_while(|i| i.what == what).count();
            let phase: Vec<Item> = items.drain(..n).collect();
            // One thread for per-layer data: `HEX` and a killed gc's `.gc-HEX` are one tree.
            let threads = if what == What::Area { 1 } else { jobs };
            let removed = crate::pool::each(
                threads,
                phase.len(),
                || Ok(Vec::new()),
                |gone: &mut Vec<usize>, i| {
                    let path = self.root().join(&phase[i].path);
                    let removed = match what {
                        What::Area => remove_area(&path)?,
                        _ => match std::fs::remove_file(&path) {
                            Ok(()) => true,
                            Err(e) if e.kind() == Io::NotFound => false,
                            Err(e) => return Err(Error::io(&path, "cannot remove", e)),
                        },
                    };
                    if removed {
                        gone.push(i);
                    }
                    Ok(())
                },
                |_| Ok(()),
            )?;
            let mut gone: Vec<usize> = removed.into_iter().flatten().collect();
            gone.sort_unstable();
            // Nothing depends on the removal of a cache, a blob or a pin being durable.
            if what <= What::Layer {
                let mut dirs: Vec<PathBuf> = gone
                    .iter()
                    .filter_map(|&i| {
                        self.root()
                            .join(&phase[i].path)
                            .parent()
                            .map(Path::to_owned)
                    })
                    .collect();
                dirs.dedup();
                for dir in dirs {
                    File::open(&dir)
                        .and_then(|d| d.sync_all())
                        .at(&dir, "cannot sync directory")?;
                }
            }
            let mut phase: Vec<Option<Item>> = phase.into_iter().map(Some).collect();
            done.items
                .extend(gone.iter().filter_map(|&i| phase[i].take()));
        }
        Ok(done)
    }

    /// Temporaries of writers that are gone, in every directory writers make them in.
    fn remove_temporaries(&self) -> usize {
        let mut dirs: Vec<PathBuf> = ["layers", "index", "pins"]
            .iter()
            .chain(LAYER_AREAS)
            .map(|d| self.root().join(d))
            .collect();
        if let Ok(fans) = std::fs::read_dir(self.root().join("blobs")) {
            dirs.extend(fans.flatten().map(|e| e.path()));
        }
        dirs.iter()
            .filter_map(|d| File::open(d).ok())
            .map(|d| crate::atomic::remove_stale_temporaries(&d))
            .sum()
    }
}

/// Remove one per-layer entry: renamed to `.gc-NAME` first (one step, so the layer's name
/// never holds half a tree), then removed. `false` when it was not there.
fn remove_area(path: &Path) -> Result<bool> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let trash = match name.starts_with(TRASH) || name.starts_with(BUILD) {
        true => path.to_owned(),
        false => {
            let trash = path.with_file_name(format!("{TRASH}{name}"));
            // A leftover of a killed gc under the same name goes first.
            if std::fs::symlink_metadata(&trash).is_ok() {
                remove_tree(&trash)?;
            }
            match std::fs::rename(path, &trash) {
                Ok(()) => trash,
                Err(e) if e.kind() == Io::NotFound => return Ok(false),
                Err(e) => return Err(Error::io(path, "cannot remove", e)),
            }
        }
    };
    remove_tree(&trash)?;
    Ok(true)
}

/// `rm -rf`, also through directories without write permission (a layer's read-only dirs).
fn remove_tree(path: &Path) -> Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == Io::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(path, "cannot stat", e)),
    };
    if !meta.is_dir() {
        return match std::fs::remove_file(path) {
            Err(e) if e.kind() != Io::NotFound => Err(Error::io(path, "cannot remove", e)),
            _ => Ok(()),
        };
    }
    if meta.permissions().mode() & 0o700 != 0o700 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
            .at(path, "cannot change mode")?;
    }
    for entry in std::fs::read_dir(path).at(path, "cannot list")? {
        remove_tree(&entry.at(path, "cannot list")?.path())?;
    }
    match std::fs::remove_dir(path) {
        Err(e) if e.kind() != Io::NotFound => Err(Error::io(path, "cannot remove", e)),
        _ => Ok(()),
    }
}

/// The disk space of the files below `path` (`None`: not there).
fn disk_usage(path: &Path) -> Result<Option<u64>> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == Io::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, "cannot stat", e)),
    };
    let mut total = meta.blocks() * 512;
    if meta.is_dir() {
        let entries = match std::fs::read_dir(path) {
            Ok(e) => e,
            // A read-only dir of a tree a gc was removing: counted as empty.
            Err(e) if e.kind() == Io::PermissionDenied => return Ok(Some(total)),
            Err(e) => return Err(Error::io(path, "cannot list", e)),
        };
        for entry in entries {
            total += disk_usage(&entry.at(path, "cannot list")?.path())?.unwrap_or(0);
        }
    }
    Ok(Some(total))
}
