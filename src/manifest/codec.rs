//! The manifest's bytes, version 2, and version 1 read (described in the module docs above).

use super::tree::push;
use super::{Device, Entry, Kind, Manifest, ROOT, Time, VERSION, valid_name};
use crate::digest::Digest;
use std::fmt;

const MAGIC: &[u8; 8] = b"ZKITLAYR";
const DIR: u8 = 0;
const FILE: u8 = 1;
const SYMLINK: u8 = 2;
const WHITEOUT: u8 = 3;
const FIFO: u8 = 4;
const CHAR_DEVICE: u8 = 5;
const BLOCK_DEVICE: u8 = 6;
/// Version 1: no times, no FIFOs or devices.
const VERSION_1: u8 = 1;
const OPAQUE: u8 = 1;

/// Why bytes are not a valid manifest, with the entry's index where there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DecodeError {}

pub(super) fn encode(m: &Manifest) -> Vec<u8> {
    let mut out = Vec::with_capacity(16 + m.entries.len() * 48 + m.heap.len());
    out.extend_from_slice(MAGIC);
    out.push(VERSION);
    varint(&mut out, m.entries.len() as u64);
    for e in &m.entries {
        let name = m.bytes(e.name);
        out.push(match e.kind {
            Kind::Dir { .. } => DIR,
            Kind::File { .. } => FILE,
            Kind::Symlink { .. } => SYMLINK,
            Kind::Whiteout => WHITEOUT,
            Kind::Fifo => FIFO,
            Kind::Device(d) if d.block => BLOCK_DEVICE,
            Kind::Device(_) => CHAR_DEVICE,
        });
        varint(&mut out, name.len() as u64);
        out.extend_from_slice(name);
        varint(&mut out, e.mode as u64);
        varint(&mut out, zigzag(e.mtime.secs));
        varint(&mut out, e.mtime.nanos as u64);
        match e.kind {
            Kind::Dir { opaque, len, .. } => {
                out.push(if opaque { OPAQUE } else { 0 });
                varint(&mut out, len as u64);
            }
            Kind::File { size, digest } => {
                varint(&mut out, size);
                out.extend_from_slice(digest.as_bytes());
            }
            Kind::Symlink { target } => {
                let target = m.bytes(target);
                varint(&mut out, target.len() as u64);
                out.extend_from_slice(target);
            }
            Kind::Device(d) => {
                varint(&mut out, d.major as u64);
                varint(&mut out, d.minor as u64);
            }
            Kind::Whiteout | Kind::Fifo => {}
        }
    }
    out
}

/// Signed to unsigned, small magnitudes small: 0, -1, 1, -2 ... become 0, 1, 2, 3 ...
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

pub(super) fn decode(bytes: &[u8]) -> Result<Manifest, DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    let (version, count) = header(&mut r)?;
    let mut m = Manifest {
        entries: Vec::with_capacity(count as usize),
        heap: Vec::with_capacity(bytes.len()),
    };
    // Breadth-first order: the next directory's children start at `next`, and entry `i` is the
    // child of the directory `owner[i]` assigned to it.
    let mut next = 1u32;
    let mut parents: Vec<u32> = Vec::with_capacity(count as usize);
    parents.push(ROOT);
    for i in 0..count {
        let bad = |what: String| DecodeError(format!("entry {i}: {what}"));
        if i >= next {
            return Err(bad("belongs to no directory".into()));
        }
        let parent = parents[i as usize];
        let (kind, name, mode) = entry_head(&mut r, i)?;
        // Siblings are strictly increasing: sorted for binary search, and no duplicates.
        if i > 1
            && parents[i as usize - 1] == parent
            && m.bytes(m.entries[i as usize - 1].name) >= name
        {
            return Err(bad("names in a directory are not strictly sorted".into()));
        }
        let mtime = match version {
            VERSION_1 => Time::FIXED,
            _ => {
                let secs = unzigzag(r.varint()?);
                let nanos = r.varint()?;
                if nanos >= 1_000_000_000 {
                    return Err(bad(format!("invalid nanoseconds {nanos}")));
                }
                Time {
                    secs,
                    nanos: nanos as u32,
                }
            }
        };
        let name = push(&mut m.heap, name);
        let kind = match kind {
            DIR => {
                let flags = r.byte()?;
                if flags & !OPAQUE != 0 {
                    return Err(bad(format!("unknown directory flags {flags:#x}")));
                }
                let len = r.varint()?;
                if len > (count - next) as u64 {
                    return Err(bad("more children than entries".into()));
                }
                let (first, len) = (next, len as u32);
                next += len;
                parents.extend(std::iter::repeat_n(i, len as usize));
                Kind::Dir {
                    opaque: flags & OPAQUE != 0,
                    first,
                    len,
                }
            }
            FILE => {
                let size = r.varint()?;
                let digest: [u8; 32] = r.take(32)?.try_into().expect("32 bytes");
                Kind::File {
                    size,
                    digest: Digest::from_bytes(digest),
                }
            }
            SYMLINK => {
                let len = r.len()?;
                let target = r.take(len)?;
                if target.is_empty() || target.contains(&0) {
                    return Err(bad("invalid symlink target".into()));
                }
                Kind::Symlink {
                    target: push(&mut m.heap, target),
                }
            }
            WHITEOUT => Kind::Whiteout,
            FIFO if version != VERSION_1 => Kind::Fifo,
            CHAR_DEVICE | BLOCK_DEVICE if version != VERSION_1 => {
                let number = |r: &mut Reader| -> Result<u32, DecodeError> {
                    u32::try_from(r.varint()?).map_err(|_| bad("device number too large".into()))
                };
                Kind::Device(Device {
                    block: kind == BLOCK_DEVICE,
                    major: number(&mut r)?,
                    minor: number(&mut r)?,
                })
            }
            other => return Err(bad(format!("unknown kind {other}"))),
        };
        m.entries.push(Entry {
            name,
            parent,
            mode,
            mtime,
            kind,
        });
    }
    if next != count {
        return Err(DecodeError(
            "directories claim fewer entries than there are".into(),
        ));
    }
    if r.at != bytes.len() {
        return Err(DecodeError("trailing bytes after the last entry".into()));
    }
    Ok(m)
}

/// The mode of the root directory, read from the front of the bytes: what a new runtime needs
/// of its top layer, without decoding every entry after it.
pub(super) fn root_mode(bytes: &[u8]) -> Result<u32, DecodeError> {
    let mut r = Reader { bytes, at: 0 };
    header(&mut r)?;
    Ok(entry_head(&mut r, ROOT)?.2)
}

/// Magic, version and entry count.
fn header(r: &mut Reader) -> Result<(u8, u32), DecodeError> {
    if r.take(MAGIC.len())? != MAGIC {
        return Err(DecodeError("not a zkit layer manifest".into()));
    }
    let version = r.byte()?;
    if version != VERSION && version != VERSION_1 {
        return Err(DecodeError(format!(
            "manifest version {version} is not supported (this zkit reads versions \
             {VERSION_1} to {VERSION}: a newer zkit wrote it)"
        )));
    }
    let count = r.varint()?;
    // Every entry takes at least 4 bytes, so a count beyond that is a lie, not an allocation.
    if count == 0 || count > (r.bytes.len() / 4) as u64 {
        return Err(DecodeError(format!("implausible entry count {count}")));
    }
    Ok((version, count as u32))
}

/// An entry's kind byte, name and mode, which every kind starts with; the root must be the
/// unnamed directory.
fn entry_head<'a>(r: &mut Reader<'a>, i: u32) -> Result<(u8, &'a [u8], u32), DecodeError> {
    let bad = |what: String| DecodeError(format!("entry {i}: {what}"));
    let kind = r.byte()?;
    let name_len = r.len()?;
    let name = r.take(name_len)?;
    if i == ROOT {
        if !name.is_empty() || kind != DIR {
            return Err(bad("the root must be an unnamed directory".into()));
        }
    } else if !valid_name(name) {
        return Err(bad(format!(
            "invalid name {:?} (empty, \".\", \"..\", or with '/' or NUL)",
            String::from_utf8_lossy(name)
        )));
    }
    let mode = r.varint()?;
    if mode > 0o7777 {
        return Err(bad(format!("invalid mode {mode:o}")));
    }
    Ok((kind, name, mode as u32))
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| DecodeError("truncated".into()))?;
        let s = &self.bytes[self.at..end];
        self.at = end;
        Ok(s)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    /// Unsigned LEB128, shortest form only (one encoding per number keeps digests canonical).
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.byte()?;
            if shift == 63 && b > 1 {
                break;
            }
            v |= ((b & 0x7f) as u64) << shift;
            if b & 0x80 == 0 {
                if b == 0 && shift > 0 {
                    return Err(DecodeError("overlong number".into()));
                }
                return Ok(v);
            }
        }
        Err(DecodeError("number too large".into()))
    }

    fn len(&mut self) -> Result<usize, DecodeError> {
        let v = self.varint()?;
        usize::try_from(v)
            .ok()
            .filter(|&n| n <= self.bytes.len() - self.at)
            .ok_or_else(|| DecodeError("truncated".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Node, NodeKind};
    const T: Time = Time {
        secs: 1_700_000_000,
        nanos: 123_456_789,
    };
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    fn sample() -> Node {
        let mut root = Node::dir(0o755).at(T);
        let kids = root.children_mut().unwrap();
        let mut sub = Node::dir(0o700).at(Time {
            secs: -86_400,
            nanos: 0,
        });
        sub.children_mut().unwrap().insert(
            b"deep\nname\xff".to_vec(),
            Node {
                mode: 0o4755,
                mtime: Time::FIXED,
                kind: NodeKind::File {
                    size: 3,
                    digest: Digest::of_blob(b"abc"),
                },
            },
        );
        if let NodeKind::Dir { opaque, .. } = &mut sub.kind {
            *opaque = true;
        }
        kids.insert(b"sub".to_vec(), sub);
        kids.insert(
            b"link".to_vec(),
            Node {
                mode: 0o777,
                mtime: T,
                kind: NodeKind::Symlink {
                    target: "../nowhere".into(),
                },
            },
        );
        kids.insert(
            b"gone".to_vec(),
            Node {
                mode: 0,
                mtime: Time::default(),
                kind: NodeKind::Whiteout,
            },
        );
        kids.insert(
            b"fifo".to_vec(),
            Node {
                mode: 0o644,
                mtime: T,
                kind: NodeKind::Fifo,
            },
        );
        kids.insert(
            b"null".to_vec(),
            Node {
                mode: 0o666,
                mtime: T,
                kind: NodeKind::Device(Device {
                    block: false,
                    major: 1,
                    minor: 3,
                }),
            },
        );
        kids.insert(
            b"sda".to_vec(),
            Node {
                mode: 0o660,
                mtime: T,
                kind: NodeKind::Device(Device {
                    block: true,
                    major: 8,
                    minor: 0,
                }),
            },
        );
        kids.insert(b"empty".to_vec(), Node::dir(0o755).at(T));
        root
    }

    #[test]
    fn encoding_round_trips_and_is_canonical() {
        let m = Manifest::from_tree(&sample());
        let bytes = m.encode();
        let back = Manifest::decode(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.encode(), bytes);
        assert_eq!(back.to_tree(), sample());
        let sub = back.lookup(ROOT, OsStr::new("sub")).unwrap();
        let deep = back
            .lookup(sub, OsStr::from_bytes(b"deep\nname\xff"))
            .unwrap();
        assert_eq!(
            back.path(deep).as_os_str().as_bytes(),
            b"sub/deep\nname\xff"
        );
        assert_eq!(back.find(&back.path(deep)), Some(deep));
        let walked: Vec<_> = back.walk().map(|(p, _)| p).collect();
        assert_eq!(walked.len(), back.len() - 1);
        assert_eq!(walked[0], std::path::Path::new("empty"));
    }

    #[test]
    fn the_root_mode_is_read_from_the_front() {
        let mut root = sample();
        root.mode = 0o1750;
        let bytes = Manifest::from_tree(&root).encode();
        assert_eq!(Manifest::decode_root_mode(&bytes), Ok(0o1750));
        // Magic, version, count, then the root's kind, name length and two-byte mode.
        let head = 8 + 1 + 1 + 1 + 1 + 2;
        for n in 0..head {
            assert!(
                Manifest::decode_root_mode(&bytes[..n]).is_err(),
                "prefix {n}"
            );
        }
        let mut named = bytes.clone();
        named[8 + 1 + 1 + 1] = 1; // the root's name length
        assert!(Manifest::decode_root_mode(&named).is_err());
    }

    #[test]
    fn every_truncation_and_dot_dot_name_is_rejected() {
        let bytes = Manifest::from_tree(&sample()).encode();
        for n in 0..bytes.len() {
            assert!(
                Manifest::decode(&bytes[..n]).is_err(),
                "prefix {n} accepted"
            );
        }
        let mut evil = bytes.clone();
        let at = evil.windows(3).position(|w| w == b"sub").unwrap();
        evil[at..at + 3].copy_from_slice(b"..\0");
        assert!(Manifest::decode(&evil).is_err());
        let mut root = Node::dir(0o755).at(T);
        root.children_mut()
            .unwrap()
            .insert(b"..".to_vec(), Node::dir(0o755).at(T));
        let err = Manifest::decode(&Manifest::from_tree(&root).encode()).unwrap_err();
        assert!(err.to_string().contains("\"..\""), "{err}");
    }

    #[test]
    fn version_1_layers_are_read_with_the_fixed_time() {
        // A root holding the file "a" (mode 644, 3 bytes) and the symlink "l" -> "a", as
        // zkit wrote them before layers recorded times.
        let digest = Digest::of_blob(b"abc");
        let mut v1 = b"ZKITLAYR\x01\x03".to_vec();
        v1.extend_from_slice(&[DIR, 0, 0xed, 0x03, 0, 2]);
        v1.extend_from_slice(&[FILE, 1, b'a', 0xa4, 0x03, 3]);
        v1.extend_from_slice(digest.as_bytes());
        v1.extend_from_slice(&[SYMLINK, 1, b'l', 0xff, 0x03, 1, b'a']);
        let m = Manifest::decode(&v1).unwrap();
        assert_eq!(m.len(), 3);
        assert!(m.entries().iter().all(|e| e.mtime == Time::FIXED));
        let a = m.lookup(ROOT, OsStr::new("a")).unwrap();
        assert_eq!(m.entry(a).kind, Kind::File { size: 3, digest });
        assert_eq!(
            m.target(m.lookup(ROOT, OsStr::new("l")).unwrap()),
            Some(OsStr::new("a"))
        );
        // Version 1 had no FIFOs: kind 4 there is damage, not a FIFO.
        let mut bad = b"ZKITLAYR\x01\x02".to_vec();
        bad.extend_from_slice(&[DIR, 0, 0xed, 0x03, 0, 1, FIFO, 1, b'p', 0xa4, 0x03]);
        assert!(Manifest::decode(&bad).is_err());
    }

    #[test]
    fn times_and_device_numbers_are_canonical() {
        for secs in [0i64, 1, -1, i64::MAX, i64::MIN, 1_700_000_000] {
            assert_eq!(unzigzag(zigzag(secs)), secs);
        }
        let mut bytes = Manifest::from_tree(&sample()).encode();
        // The root's nanoseconds (after magic, version, count, kind, name, mode, secs).
        let at = 8 + 1 + 1 + 1 + 1 + 2 + 5;
        assert_eq!(&bytes[at..at + 4], &[0x95, 0x9a, 0xef, 0x3a]);
        let mut too_many = Vec::new();
        varint(&mut too_many, 1_000_000_000);
        bytes.splice(at..at + 4, too_many);
        let err = Manifest::decode(&bytes).unwrap_err();
        assert!(err.to_string().contains("nanoseconds"), "{err}");
    }
}
