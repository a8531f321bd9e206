//! Tags: names like `app/1.0` pointing at a layer or a stack of layers, each a small file
//! `tags/NAME` holding one digest a line, bottom first, replaced atomically (see
//! [`crate::atomic`]) so a reader sees the old or the new stack. A tag of one layer is one
//! line, as it always was; a stack tag (an imported image, `zcommit tag NAME L1 L2`) is what
//! `zmount run NAME` and `zcommit checkout DEST NAME` show whole.

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

/// [`valid_tag`] as an error that names the rule, for callers that check a tag before the
/// work whose result it will name.
pub fn check_tag(name: &str) -> Result<()> {
    match valid_tag(name) {
        true => Ok(()),
        false => Err(Error::new(
            name,
            ErrorKind::Invalid(
                "invalid tag name (use letters, digits, `._+-@=`, parts separated by `/`)".into(),
            ),
        )),
    }
}

impl Store {
    /// The layers a tag points at, bottom first (one for a plain tag); `None` if there is no
    /// such tag.
    pub fn tag(&self, name: &str) -> Result<Option<Vec<Digest>>> {
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
        let stack: Option<Vec<Digest>> = std::str::from_utf8(&content)
            .ok()
            .and_then(|s| s.strip_suffix('\n'))
            .and_then(|s| s.split('\n').map(Digest::parse).collect());
        match stack {
            Some(d) if !d.is_empty() => Ok(Some(d)),
            _ => Err(Error::new(
                &path,
                ErrorKind::Corrupt("a tag must hold 64-hex digests, one a line".into()),
            )),
        }
    }

    /// Point `name` at `digest`, atomically and durably.
    pub fn set_tag(&self, name: &str, digest: &Digest) -> Result<()> {
        self.set_stack_tag(name, std::slice::from_ref(digest))
    }

    /// Point `name` at a stack of layers (bottom first), atomically and durably.
    pub fn set_stack_tag(&self, name: &str, stack: &[Digest]) -> Result<()> {
        check_tag(name)?;
        if stack.is_empty() {
            return Err(Error::new(
                name,
                ErrorKind::Invalid("a tag needs at least one layer".into()),
            ));
        }
        // No sweep between the check and the tag: it would leave a tag without its layers.
        let _lock = self.write_lock()?;
        for digest in stack {
            if !self.has_layer(digest)? {
                return Err(Error::new(digest.to_hex(), ErrorKind::UnknownLayer));
            }
        }
        let path = self.root.join("tags").join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).at(parent, "cannot create tag directory")?;
        }
        let line: String = stack.iter().map(|d| format!("{d}\n")).collect();
        let opts = atomic::Options {
            new_mode: Some(0o644),
            ..Default::default()
        };
        atomic::replace(&path, atomic::Source::Bytes(line.as_bytes()), &opts)?;
        Ok(())
    }

    /// Remove tag `name` (one `unlink`, so readers see it or not, never half of it); `false`
    /// when there is no such tag. Directories the tag leaves empty are removed too.
    pub fn remove_tag(&self, name: &str) -> Result<bool> {
        if !valid_tag(name) {
            return Ok(false);
        }
        let top = self.root.join("tags");
        let path = top.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(Error::io(&path, "cannot remove tag", e)),
        }
        // Best effort: a concurrent set_tag may have just made one of them non-empty again.
        let mut dir = path.parent();
        while let Some(d) = dir.filter(|d| *d != top) {
            if std::fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(true)
    }

    /// Every tag and its layer, sorted by name. A tag that cannot be read, or holds no
    /// digest, does not hide the others: it is in [`Tags::bad`]. `Err` only when the tags
    /// directory itself cannot be listed.
    pub fn tags(&self) -> Result<Tags> {
        let mut tags = Tags::default();
        let top = self.root.join("tags");
        let entries = std::fs::read_dir(&top).at(&top, "cannot list tags")?;
        self.collect_tags(entries, &top, "", &mut tags);
        tags.sound.sort();
        tags.bad.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(tags)
    }

    fn collect_tags(&self, entries: std::fs::ReadDir, dir: &Path, prefix: &str, out: &mut Tags) {
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    out.bad.push(Error::io(dir, "cannot list tags", e));
                    return;
                }
            };
            let Some(name) = entry.file_name().to_str().map(|n| format!("{prefix}{n}")) else {
                continue;
            };
            if !valid_tag(&name) {
                continue;
            }
            let path = entry.path();
            let kind = match entry.file_type() {
                Ok(k) => k,
                Err(e) => {
                    out.bad.push(Error::io(&path, "cannot stat", e));
                    continue;
                }
            };
            if kind.is_dir() {
                match std::fs::read_dir(&path) {
                    Ok(sub) => self.collect_tags(sub, &path, &format!("{name}/"), out),
                    Err(e) => out.bad.push(Error::io(&path, "cannot list tags", e)),
                }
                continue;
            }
            match self.tag(&name) {
                Ok(Some(digest)) => out.sound.push((name, digest)),
                // Removed meanwhile.
                Ok(None) => {}
                Err(e) => out.bad.push(e),
            }
        }
    }
}

/// What [`Store::tags`] found.
#[derive(Debug, Default)]
pub struct Tags {
    /// Tags and their layers (bottom first), sorted by name.
    pub sound: Vec<(String, Vec<Digest>)>,
    /// Tags that could not be read or hold no digest, each naming its file.
    pub bad: Vec<Error>,
}

/// Whether tag `name` matches `pattern`, where `*` stands for any run of characters but `/`
/// and `?` for one such character (as a shell matches one path component at a time).
pub fn tag_matches(pattern: &str, name: &str) -> bool {
    fn go(p: &[u8], n: &[u8]) -> bool {
        match (p.first(), n.first()) {
            (None, None) => true,
            (Some(b'*'), _) => {
                go(&p[1..], n) || (n.first().is_some_and(|&c| c != b'/') && go(p, &n[1..]))
            }
            (Some(b'?'), Some(&c)) if c != b'/' => go(&p[1..], &n[1..]),
            (Some(a), Some(b)) if a == b && *a != b'?' => go(&p[1..], &n[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), name.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::tag_matches;

    #[test]
    fn patterns_match_within_one_part_of_a_tag() {
        assert!(tag_matches("app/*", "app/1.0"));
        assert!(!tag_matches("app/*", "app/x/1.0"));
        assert!(tag_matches("app/*/*", "app/x/1.0"));
        assert!(tag_matches("ci-??", "ci-42") && !tag_matches("ci-??", "ci-4"));
        assert!(tag_matches("exact", "exact") && !tag_matches("exact", "exactly"));
        assert!(tag_matches("*", "x") && !tag_matches("*", "a/b"));
    }
}
