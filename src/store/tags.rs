//! Tags: names like `app/1.0` pointing at layers, each a small file `tags/NAME` holding the
//! digest, replaced atomically (see [`crate::atomic`]) so a reader sees the old or new layer.

use super::Store;
use crate::atomic;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, IoContext, Result};
use std::io::ErrorKind as Io;
use std::path::Path;

/// Whether `name` can be a tag: `/`-separated parts of letters, digits and `._+-@=`, none
/// empty or starting with `.` (so no `..`, and temporaries never look like tags).
pub fn valid_tag(name: &str) -> bool {
    name.len() <= 1024
        && name.split('/').all(|part| {
            !part.is_empty()
                && part.len() <= 200
                && !part.starts_with('.')
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._+-@=".contains(&b))
        })
}

impl Store {
    /// The layer a tag points at, `None` if there is no such tag.
    pub fn tag(&self, name: &str) -> Result<Option<Digest>> {
        let path = self.root.join("tags").join(name);
        let content = match std::fs::read(&path) {
            Ok(c) => c,
            Err(e)
                if matches!(
                    e.kind(),
                    Io::NotFound | Io::NotADirectory | Io::IsADirectory
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(Error::io(&path, "cannot read tag", e)),
        };
        let digest = std::str::from_utf8(&content)
            .ok()
            .and_then(|s| Digest::parse(s.trim_end()));
        match digest {
            Some(d) => Ok(Some(d)),
            None => Err(Error::new(
                &path,
                ErrorKind::Corrupt("a tag must hold a 64-hex digest".into()),
            )),
        }
    }

    /// Point `name` at `digest`, atomically and durably.
    pub fn set_tag(&self, name: &str, digest: &Digest) -> Result<()> {
        if !valid_tag(name) {
            return Err(Error::new(
                name,
                ErrorKind::Invalid(
                    "invalid tag name (use letters, digits, `._+-@=`, parts separated by `/`)"
                        .into(),
                ),
            ));
        }
        if !self.has_layer(digest)? {
            return Err(Error::new(digest.to_hex(), ErrorKind::UnknownLayer));
        }
        let path = self.root.join("tags").join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).at(parent, "cannot create tag directory")?;
        }
        let line = format!("{digest}\n");
        let opts = atomic::Options {
            new_mode: Some(0o644),
            ..Default::default()
        };
        atomic::replace(&path, atomic::Source::Bytes(line.as_bytes()), &opts)?;
        Ok(())
    }

    /// Every tag and its layer, sorted by name.
    pub fn tags(&self) -> Result<Vec<(String, Digest)>> {
        let mut out = Vec::new();
        self.collect_tags(&self.root.join("tags"), "", &mut out)?;
        out.sort();
        Ok(out)
    }

    fn collect_tags(
        &self,
        dir: &Path,
        prefix: &str,
        out: &mut Vec<(String, Digest)>,
    ) -> Result<()> {
        for entry in std::fs::read_dir(dir).at(dir, "cannot list tags")? {
            let entry = entry.at(dir, "cannot list tags")?;
            let Some(name) = entry.file_name().to_str().map(|n| format!("{prefix}{n}")) else {
                continue;
            };
            if !valid_tag(&name) {
                continue;
            }
            let kind = entry.file_type().at(&entry.path(), "cannot stat")?;
            if kind.is_dir() {
                self.collect_tags(&entry.path(), &format!("{name}/"), out)?;
            } else if let Some(digest) = self.tag(&name)? {
                out.push((name, digest));
            }
        }
        Ok(())
    }
}
