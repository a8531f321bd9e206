//! Checking a whole store: every blob rehashed, every layer loaded (digest and validation),
//! every blob a layer names present, every tag pointing at a layer.

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
}

impl Store {
    /// Rehash every blob with `jobs` threads and check every layer and tag. Damage is
    /// reported in [`Report::problems`]; `Err` means the store could not be read at all.
    pub fn verify(&self, jobs: usize) -> Result<Report> {
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

        let present: HashSet<Digest> = blobs.iter().map(|(_, d)| *d).collect();
        for layer in self.layers()? {
            report.layers += 1;
            let manifest = match self.load_layer(&layer) {
                Ok(m) => m,
                Err(e) => {
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
        match self.tags() {
            Ok(tags) => {
                for (name, digest) in tags {
                    report.tags += 1;
                    if !self.has_layer(&digest)? {
                        let what = format!("tag points at layer {digest}, which is missing");
                        let path = self.root.join("tags").join(name);
                        report
                            .problems
                            .push(Error::new(path, ErrorKind::Corrupt(what)));
                    }
                }
            }
            Err(e) => report.problems.push(e),
        }
        Ok(report)
    }

    /// Every file under `blobs/` named like a digest, with that digest. Temporaries (names
    /// starting with `.`) are not objects and are left alone.
    fn blob_files(&self) -> Result<Vec<(PathBuf, Digest)>> {
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
