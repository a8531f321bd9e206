//! Pins: the layers a live view shows, kept from `zcommit gc` for as long as the view lives,
//! tagged or not.
//!
//! A pin is `ROOT/pins/PID-START-N` (the process whose life it follows: its pid and start
//! time, as in [`crate::process::ProcId`], and a counter), holding `zkit-pin 1` and then
//! `layer HEX` per layer. It is written atomically under [`Store::write_lock`], by the same
//! hold that resolved the layers' names, so a sweep either ran before the names were
//! resolved (and the layers are gone: the view fails to start, naming them) or sees the pin.
//! Its writer also holds a `flock` on it while it lives. A sweep takes every pin as a root
//! whose file is locked or whose process (pid and start time) still runs, and removes the
//! others: a killed `zmount run` leaves a pin that the next sweep removes.
//!
//! `zmount run` pins its stack for itself; `zmount mount` for its server (the client's pin
//! covers the moments until the server's own is written); `zmount register PID` for PID.

use super::Store;
use crate::atomic::TempFile;
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, IoContext, Result};
use crate::process::{self, ProcId};
use std::fs::{File, TryLockError};
use std::io::ErrorKind as Io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

const HEADER: &str = "zkit-pin 1";

/// A pin; removed when dropped, unless [`Pin::keep`] is called.
#[derive(Debug)]
pub struct Pin {
    path: PathBuf,
    /// Holds the pin's flock (see the module docs).
    file: Option<File>,
}

/// What a sweep found in `pins/`.
#[derive(Debug, Default)]
pub(crate) struct Pins {
    /// Layers that live pins name.
    pub live: Vec<Digest>,
    /// Pins whose process is gone.
    pub dead: Vec<PathBuf>,
}

impl Store {
    /// Pin `layers` for the process `owner` (this one if `None`) until the pin is dropped or,
    /// after [`Pin::keep`], until that process ends.
    pub fn pin(&self, layers: &[Digest], owner: Option<ProcId>) -> Result<Pin> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let _lock = self.write_lock()?;
        let owner = match owner {
            Some(o) => o,
            None => {
                let pid = std::process::id();
                process::stat(pid)
                    .map(|s| s.id)
                    .unwrap_or(ProcId { pid, start: 0 })
            }
        };
        let dir_path = self.root.join("pins");
        std::fs::create_dir_all(&dir_path).at(&dir_path, "cannot create pins directory")?;
        let dir = File::open(&dir_path).at(&dir_path, "cannot open directory")?;
        let name = format!(
            "{}-{}-{}",
            owner.pid,
            owner.start,
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = dir_path.join(&name);
        let mut text = format!("{HEADER}\n");
        for d in layers {
            text.push_str(&format!("layer {d}\n"));
        }
        let mut temp = TempFile::new_in(&dir, &dir_path, name.as_ref())
            .at(&dir_path, "cannot create temporary file")?;
        std::io::Write::write_all(&mut temp.file(), text.as_bytes())
            .at(&path, "cannot write pin")?;
        temp.prepare(false).at(&path, "cannot write pin")?;
        temp.rename_to(name.as_ref())
            .at(&path, "cannot write pin")?;
        drop(temp);
        // Opened by its name: a descriptor of the (once anonymous) temporary would show as a
        // deleted file in /proc. Between the two, the pid speaks for us. From here on the
        // pin is removed on any error.
        let mut pin = Pin { path, file: None };
        let file = File::open(&pin.path).at(&pin.path, "cannot open pin")?;
        // A sweep holds it only for as long as it takes to look.
        file.lock().at(&pin.path, "cannot lock pin")?;
        pin.file = Some(file);
        Ok(pin)
    }

    /// Every pin: the layers of live ones, and the dead ones.
    pub(crate) fn pins(&self) -> Result<Pins> {
        let dir = self.root.join("pins");
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == Io::NotFound => return Ok(Pins::default()),
            Err(e) => return Err(Error::io(&dir, "cannot list pins", e)),
        };
        let mut out = Pins::default();
        for entry in entries {
            let entry = entry.at(&dir, "cannot list pins")?;
            let name = entry.file_name();
            let Some(owner) = name.to_str().and_then(parse_name) else {
                continue;
            };
            let path = entry.path();
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == Io::NotFound => continue,
                Err(e) => return Err(Error::io(&path, "cannot read pin", e)),
            };
            let locked = matches!(file.try_lock(), Err(TryLockError::WouldBlock));
            if !locked && !process::alive(owner) {
                out.dead.push(path);
                continue;
            }
            let text = std::io::read_to_string(&file).at(&path, "cannot read pin")?;
            out.live.extend(parse(&text).ok_or_else(|| {
                Error::new(
                    &path,
                    ErrorKind::Corrupt(
                        "a pin of a live process that names no layers (end that process, or \
                         remove the file)"
                            .into(),
                    ),
                )
            })?);
        }
        Ok(out)
    }
}

impl Pin {
    /// Leave the pin for the sweep that finds its process gone.
    pub fn keep(mut self) {
        self.file = None;
        self.path = PathBuf::new();
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Pin {
    fn drop(&mut self) {
        if !self.path.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// `PID-START-N` -> the process.
fn parse_name(name: &str) -> Option<ProcId> {
    let mut parts = name.split('-');
    let pid = parts.next()?.parse().ok()?;
    let start = parts.next()?.parse().ok()?;
    parts.next()?.parse::<u64>().ok()?;
    parts.next().is_none().then_some(ProcId { pid, start })
}

fn parse(text: &str) -> Option<Vec<Digest>> {
    let mut lines = text.lines();
    if lines.next()? != HEADER {
        return None;
    }
    lines
        .map(|l| l.strip_prefix("layer ").and_then(Digest::parse))
        .collect()
}
