//! Checking a whole store: every blob rehashed, every layer loaded (digest and validation),
//! every blob a layer names present, every tag pointing at a layer.
//!
//! With `repair`, a blob whose content does not hash to its name and a layer that fails its
//! digest or validation are removed: a damaged object is worse than a missing one, which
//! every reader reports by name and which the next commit of the same content (or an
//! import) writes again. Tags are never removed; one that names a removed layer works
//! again once the layer is committed again (same tree, same digest).

use super::Store;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::manifest::Kind;
use std::collections::HashSet;
use std::fs::File;
use std::path::PathBuf;
use std::sync::Mutex;

/// What [`Store::verify`] found.
#[derive(Debug, Default)]
pub struct Report {
    pub blobs: usize,
    pub layers: usize,
    pub tags: usize,
    /// One error per damaged or missing object, naming it.
    pub problems: Vec<Error>,
    /// Damaged objects removed (with `repair`).
    pub removed: Vec<PathBuf>,
}

impl Store {
    /// Rehash every blob with `jobs` threads and check every layer and tag. Damage is
    /// reported in [`Report::problems`]; `Err` means the store could not be read at all.
    /// With `repair`, damaged blobs and layers are removed ([`Report::removed`]); a removal
    /// that fails is a problem too.
    pub fn verify(&self, jobs: usize, repair: bool) -> Result<Report> {
        let mut report = Report::default();
        let blobs = self.blob_files()?;
        report.blobs = blobs.len();
        let problems = Mutex::new(Vec::new());
        crate::pool::each(
            jobs,
            blobs.len(),
            || Ok(()),
            |(), i| {
                let (path, digest) = &blobs[i];
                let found = File::open(path)
                    .and_then(|f| super::hash_file(&f))
                    .at(path, "cannot read blob");
                let problem = match found {
                    Ok(d) if d == *digest => return Ok(()),
                    Ok(d) => Error::new(
                        path,
                        ErrorKind::Corrupt(format!("blob content hashes to {d}")),
                    ),
                    Err(e) => e,
                };
                problems.lock().unwrap().push(problem);
                Ok(())
            },
            |()| Ok(()),
        )?;
        report.problems = problems.into_inner().unwrap();
        report.problems.sort_by(|a, b| a.path.cmp(&b.path));
        let mut damaged: Vec<PathBuf> = report
            .problems
            .iter()
            .filter(|p| matches!(p.kind, ErrorKind::Corrupt(_)))
            .map(|p| p.path.clone())
            .collect();

        let mut present: HashSet<Digest> = blobs.iter().map(|(_, d)| *d).collect();
        if repair {
            for (path, digest) in &blobs {
                if damaged.contains(path) {
                    present.remove(digest);
                }
            }
        }
        for layer in self.layers()? {
            report.layers += 1;
            let manifest = match self.load_layer(&layer) {
                Ok(m) => m,
                Err(e) => {
                    if matches!(e.kind, ErrorKind::Corrupt(_)) {
                        damaged.push(e.path.clone());
                    }
                    report.problems.push(e);
                    continue;
                }
            };
            for e in manifest.entries() {
                if let Kind::File { digest, .. } = e.kind
                    && !present.contains(&digest)
                {
                    let what = format!("layer names blob {digest}, which is missing");
                    let problem = Error::new(self.layer_path(&layer), ErrorKind::Corrupt(what));
                    report.problems.push(problem);
                }
            }
        }
        let tags = self.tags()?;
        report.tags = tags.sound.len() + tags.bad.len();
        report.problems.extend(tags.bad);
        for (name, stack) in tags.sound {
            for digest in stack {
                if !self.has_layer(&digest)? {
                    let what = format!("tag points at layer {digest}, which is missing");
                    let path = self.root.join("tags").join(&name);
                    report
                        .problems
                        .push(Error::new(path, ErrorKind::Corrupt(what)));
                }
            }
        }
        if repair {
            for path in damaged {
                match std::fs::remove_file(&path) {
                    Ok(()) => report.removed.push(path),
                    Err(e) => {
                        report
                            .problems
                            .push(Error::io(path, "cannot remove damaged object", e))
                    }
                }
            }
        }
        Ok(report)
    }

    /// Every file under `blobs/` named like a digest, with that digest. Temporaries (names
    /// starting with `.`) are not objects and are left alone.
    pub(crate) fn blob_files(&self) -> Result<Vec<(PathBuf, Digest)>> {
        let top = self.root.join("blobs");
        let mut out = Vec::new();
        for fan in std::fs::read_dir(&top).at(&top, "cannot list blobs")? {
            let fan = fan.at(&top, "cannot list blobs")?.path();
            if !fan.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(&fan).at(&fan, "cannot list blobs")? {
                let entry = entry.at(&fan, "cannot list blobs")?;
                if let Some(d) = entry.file_name().to_str().and_then(Digest::parse) {
                    out.push((entry.path(), d));
                }
            }
        }
        out.sort();
        Ok(out)
    }
}
