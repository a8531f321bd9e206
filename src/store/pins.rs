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
//! A kernel view's overlay shows its layers without any process of ours: a `zmount mount`
//! holder or a `zmount run` killed alone leaves the overlay mounted (in the host's table, or
//! in the run's namespace with CMD still in it). Its pin names the overlay's tag
//! (`overlay zmount:ID`, see [`crate::mounted`]), and stays live for as long as that overlay
//! is mounted in any mount namespace, whoever made it; the first sweep after the unmount
//! removes it.
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
        self.pin_with(layers, owner, None)
    }

    /// Pin `layers` for this process and, beyond its life, for as long as the overlay tagged
    /// `tag` is mounted anywhere (see the module docs).
    pub fn pin_overlay(&self, layers: &[Digest], tag: &str) -> Result<Pin> {
        self.pin_with(layers, None, Some(tag))
    }

    fn pin_with(
        &self,
        layers: &[Digest],
        owner: Option<ProcId>,
        overlay: Option<&str>,
    ) -> Result<Pin> {
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
        if let Some(tag) = overlay {
            text.push_str(&format!("overlay {tag}\n"));
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
        // Looked up once per sweep, and only if a dead holder's pin names an overlay.
        let mut mounted = None;
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
            let holder = locked || process::alive(owner);
            let text = std::io::read_to_string(&file).at(&path, "cannot read pin")?;
            let parsed = parse(&text);
            let mut shown = || match parsed.as_ref().and_then(|(_, tag)| tag.as_ref()) {
                Some(tag) => mounted
                    .get_or_insert_with(crate::mounted::mounted)
                    .contains_key(tag),
                None => false,
            };
            if !holder && !shown() {
                out.dead.push(path);
                continue;
            }
            let (layers, _) = parsed.ok_or_else(|| {
                Error::new(
                    &path,
                    ErrorKind::Corrupt(
                        "a pin of a live process that names no layers (end that process, or \
                         remove the file)"
                            .into(),
                    ),
                )
            })?;
            out.live.extend(layers);
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

/// The layers of a pin, and the tag of the overlay it follows, if any.
fn parse(text: &str) -> Option<(Vec<Digest>, Option<String>)> {
    let mut lines = text.lines();
    if lines.next()? != HEADER {
        return None;
    }
    let (mut layers, mut overlay) = (Vec::new(), None);
    for line in lines {
        match line.split_once(' ')? {
            ("layer", hex) => layers.push(Digest::parse(hex)?),
            ("overlay", tag) if overlay.is_none() => overlay = Some(tag.to_owned()),
            _ => return None,
        }
    }
    Some((layers, overlay))
}
