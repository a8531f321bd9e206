//! A layer's meta image: the EROFS file system overlayfs stacks, written from its manifest.
//!
//! One image is one layer: every directory, symlink, FIFO and device node as it is, each
//! whiteout as a character device 0:0, each opaque directory with `trusted.overlay.opaque=y`,
//! and each non-empty regular file as an inode of its size, mode and time with no data (one
//! null chunk) carrying `trusted.overlay.metacopy` (empty) and `trusted.overlay.redirect`
//! naming its blob below `ROOT/blobs`, the data-only layer. Empty files are plain empty files.
//! Owners are root's (a layer records none).
//!
//! Writing the whole tree as one file costs one write and one sync, where a tree of sparse
//! files costs several system calls per entry; the kernel mounts the file as it is
//! (file-backed EROFS, Linux 6.12+).
//!
//! # Layout (`Documentation/filesystems/erofs.rst`, `fs/erofs/erofs_fs.h`)
//!
//! ```text
//! 0     1024 bytes of zeros
//! 1024  superblock (128 bytes): 4 KiB blocks, root nid 36, chunked files
//! 1152  inodes in manifest order (breadth first, root first), 32-byte aligned (an inode's
//!       number, its nid, is its offset / 32), each 64-byte extended inode followed by its
//!       inline xattrs and then its inline data, never crossing a 4 KiB block:
//!         directory, symlink  the last partial block of its data when at most 2048 bytes
//!         regular file        its chunk index: one null address per 8 TiB
//! then  data blocks, in inode order: directories' full blocks, longer tails
//! ```
//!
//! A directory's data is its entries, `.` and `..` included, sorted by name bytes and packed
//! into blocks that each start with their 12-byte records (nid, name offset, type) and end
//! with the names. Nothing depends on the time or the machine: the same manifest gives the
//! same bytes, which is how `zcommit verify` checks an image.

use super::xattr;
use crate::digest::Digest;
use crate::manifest::{Kind, Manifest};
use std::os::unix::ffi::OsStrExt;

const BLOCK: usize = 4096;
const BLOCK_BITS: u8 = 12;
const SUPER_OFFSET: usize = 1024;
const SUPER_SIZE: usize = 128;
const MAGIC: u32 = 0xE0F5_E1E2;
const INCOMPAT_CHUNKED_FILE: u32 = 0x4;
/// The root's nid: the first slot after the superblock.
const ROOT_NID: usize = (SUPER_OFFSET + SUPER_SIZE) / SLOT;
const SLOT: usize = 32;
const INODE_SIZE: usize = 64;
/// Data tails up to this size are stored after their inode; longer ones get a block.
const INLINE_MAX: usize = 2048;
/// Chunks of 2^(12 + 31) bytes: one chunk (a null one) covers any file below 8 TiB.
const CHUNK_BITS: u16 = 31;
const NULL_ADDR: u32 = u32::MAX;
const XATTR_HEADER: usize = 12;
/// `trusted.`, the prefix index every attribute here uses.
const XATTR_TRUSTED: u8 = 4;

/// `i_format`: bit 0 marks the extended inode, bits 1..3 the data layout.
const EXTENDED: u16 = 1;
const FLAT_PLAIN: u16 = 0;
const FLAT_INLINE: u16 = 2 << 1;
const CHUNK_BASED: u16 = 4 << 1;

/// Directory entry types.
const FT_REG_FILE: u8 = 1;
const FT_DIR: u8 = 2;
const FT_CHRDEV: u8 = 3;
const FT_BLKDEV: u8 = 4;
const FT_FIFO: u8 = 5;
const FT_SYMLINK: u8 = 7;

/// Why an entry cannot be in an image, if one cannot: overlayfs reads a character device
/// 0:0 as a whiteout, and an inode holds a device number of 12 major and 20 minor bits.
pub fn unrepresentable(m: &Manifest, i: u32) -> Option<String> {
    let Kind::Device(d) = m.entry(i).kind else {
        return None;
    };
    match () {
        _ if !d.block && d.major == 0 && d.minor == 0 => {
            Some("a character device 0:0, which overlayfs reads as a whiteout".into())
        }
        _ if d.major > 0xfff || d.minor > 0xf_ffff => Some(format!(
            "device {}:{}, wider than the 12:20 bits an EROFS inode holds",
            d.major, d.minor
        )),
        _ => None,
    }
}

/// Where one entry goes and what it holds besides its inode.
struct Plan {
    /// Byte offset of its inode (a multiple of [`SLOT`]).
    offset: usize,
    layout: u16,
    size: u64,
    xattrs: Vec<u8>,
    /// Bytes after the inode and its xattrs.
    inline: usize,
    /// Data blocks of its own (a directory's or a long tail's).
    blocks: usize,
    first_block: usize,
}

impl Plan {
    fn meta_len(&self) -> usize {
        INODE_SIZE + self.xattrs.len() + self.inline
    }
}

/// The image of `m` (see the module docs). Entries [`unrepresentable`] refuses must have been
/// refused before: here a device number is cut to its 32-bit encoding.
pub fn image(m: &Manifest) -> Vec<u8> {
    let mut plans: Vec<Plan> = (0..m.len() as u32).map(|i| plan(m, i)).collect();
    let mut at = ROOT_NID * SLOT;
    for p in &mut plans {
        if at % BLOCK + p.meta_len() > BLOCK {
            at = at.next_multiple_of(BLOCK);
        }
        p.offset = at;
        at = (at + p.meta_len()).next_multiple_of(SLOT);
    }
    let mut block = at.div_ceil(BLOCK);
    for p in &mut plans {
        p.first_block = block;
        block += p.blocks;
    }
    let mut img = vec![0u8; block * BLOCK];
    superblock(&mut img, m.len() as u64, block as u32);
    let nid = |i: u32| (plans[i as usize].offset / SLOT) as u64;
    for (i, p) in plans.iter().enumerate() {
        let i = i as u32;
        write_inode(&mut img, m, i, p);
        let tail_at = p.offset + INODE_SIZE + p.xattrs.len();
        img[p.offset + INODE_SIZE..tail_at].copy_from_slice(&p.xattrs);
        let data = match m.entry(i).kind {
            Kind::Dir { .. } => dir_data(m, i, &nid),
            Kind::Symlink { .. } => m.target(i).unwrap_or_default().as_bytes().to_vec(),
            Kind::File { size, .. } if size > 0 => {
                for c in 0..chunks(size) {
                    let at = tail_at + 4 * c;
                    img[at..at + 4].copy_from_slice(&NULL_ADDR.to_le_bytes());
                }
                continue;
            }
            _ => continue,
        };
        let in_blocks = data.len() - p.inline;
        let start = p.first_block * BLOCK;
        img[start..start + in_blocks].copy_from_slice(&data[..in_blocks]);
        img[tail_at..tail_at + p.inline].copy_from_slice(&data[in_blocks..]);
    }
    img
}

fn plan(m: &Manifest, i: u32) -> Plan {
    let e = m.entry(i);
    let mut attrs: Vec<(&str, Vec<u8>)> = Vec::new();
    let (layout, size, inline, blocks) = match e.kind {
        Kind::Dir { opaque, .. } => {
            if opaque {
                attrs.push((xattr::OPAQUE, b"y".to_vec()));
            }
            tailed(dir_data(m, i, &|_| 0).len())
        }
        Kind::Symlink { .. } => tailed(m.target(i).unwrap_or_default().len()),
        Kind::File { size, digest } if size > 0 => {
            attrs.push((xattr::METACOPY, Vec::new()));
            attrs.push((xattr::REDIRECT, redirect_of(&digest).into_bytes()));
            (CHUNK_BASED, size, 4 * chunks(size), 0)
        }
        _ => (FLAT_PLAIN, 0, 0, 0),
    };
    Plan {
        offset: 0,
        layout,
        size,
        xattrs: xattr_body(&attrs),
        inline,
        blocks,
        first_block: 0,
    }
}

/// Layout, size, inline bytes and blocks of data of `len` bytes.
fn tailed(len: usize) -> (u16, u64, usize, usize) {
    let tail = len % BLOCK;
    match tail > 0 && tail <= INLINE_MAX {
        true => (FLAT_INLINE, len as u64, tail, len / BLOCK),
        false => (FLAT_PLAIN, len as u64, 0, len.div_ceil(BLOCK)),
    }
}

fn chunks(size: u64) -> usize {
    size.div_ceil(1 << (BLOCK_BITS as u64 + CHUNK_BITS as u64)) as usize
}

/// The redirect a file with this content gets: its blob's path below `ROOT/blobs`.
pub fn redirect_of(digest: &Digest) -> String {
    let hex = digest.to_hex();
    format!("/{}/{hex}", &hex[..2])
}

/// Inline xattrs: a 12-byte header (no shared ones), then each entry, 4-byte aligned.
fn xattr_body(attrs: &[(&str, Vec<u8>)]) -> Vec<u8> {
    if attrs.is_empty() {
        return Vec::new();
    }
    let mut out = vec![0u8; XATTR_HEADER];
    for (name, value) in attrs {
        let name = name
            .strip_prefix("trusted.")
            .expect("a trusted.* attribute");
        out.push(name.len() as u8);
        out.push(XATTR_TRUSTED);
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(value);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    out
}

/// A directory's data, with each entry's nid from `nid`.
fn dir_data(m: &Manifest, dir: u32, nid: &dyn Fn(u32) -> u64) -> Vec<u8> {
    let mut entries: Vec<(&[u8], u32, u8)> = m
        .children(dir)
        .map(|c| (m.name(c).as_bytes(), c, file_type(&m.entry(c).kind)))
        .collect();
    entries.push((b".", dir, FT_DIR));
    entries.push((b"..", m.entry(dir).parent, FT_DIR));
    entries.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut out = Vec::new();
    let mut rest = &entries[..];
    while !rest.is_empty() {
        let mut used = 0;
        let fit = rest
            .iter()
            .take_while(|e| {
                used += 12 + e.0.len();
                used <= BLOCK
            })
            .count();
        let (here, next) = rest.split_at(fit);
        let start = out.len();
        let mut name_at = 12 * here.len();
        for &(name, target, ft) in here {
            out.extend_from_slice(&nid(target).to_le_bytes());
            out.extend_from_slice(&(name_at as u16).to_le_bytes());
            out.extend_from_slice(&[ft, 0]);
            name_at += name.len();
        }
        for (name, ..) in here {
            out.extend_from_slice(name);
        }
        rest = next;
        if !rest.is_empty() {
            out.resize(start + BLOCK, 0);
        }
    }
    out
}

fn file_type(kind: &Kind) -> u8 {
    match kind {
        Kind::Dir { .. } => FT_DIR,
        Kind::File { .. } => FT_REG_FILE,
        Kind::Symlink { .. } => FT_SYMLINK,
        Kind::Fifo => FT_FIFO,
        Kind::Device(d) if d.block => FT_BLKDEV,
        Kind::Device(_) | Kind::Whiteout => FT_CHRDEV,
    }
}

fn superblock(img: &mut [u8], inodes: u64, blocks: u32) {
    let sb = &mut img[SUPER_OFFSET..SUPER_OFFSET + SUPER_SIZE];
    sb[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    sb[12] = BLOCK_BITS;
    sb[14..16].copy_from_slice(&(ROOT_NID as u16).to_le_bytes());
    sb[16..24].copy_from_slice(&inodes.to_le_bytes());
    sb[36..40].copy_from_slice(&blocks.to_le_bytes());
    sb[80..84].copy_from_slice(&INCOMPAT_CHUNKED_FILE.to_le_bytes());
}

#[allow(clippy::unnecessary_cast)] // mode_t is u16 on macOS
fn write_inode(img: &mut [u8], m: &Manifest, i: u32, p: &Plan) {
    let e = m.entry(i);
    let (kind_bits, union, nlink) = match e.kind {
        Kind::Dir { .. } => {
            let subdirs = m
                .children(i)
                .filter(|&c| matches!(m.entry(c).kind, Kind::Dir { .. }))
                .count();
            (
                libc::S_IFDIR as u32,
                p.first_block as u32,
                2 + subdirs as u32,
            )
        }
        Kind::File { size, .. } if size > 0 => (libc::S_IFREG as u32, CHUNK_BITS as u32, 1),
        Kind::File { .. } => (libc::S_IFREG as u32, 0, 1),
        Kind::Symlink { .. } => (libc::S_IFLNK as u32, p.first_block as u32, 1),
        Kind::Fifo => (libc::S_IFIFO as u32, 0, 1),
        Kind::Device(d) => (d.file_type_bits(), encode_dev(d.major, d.minor), 1),
        Kind::Whiteout => (libc::S_IFCHR as u32, 0, 1),
    };
    let perm = match e.kind {
        Kind::Whiteout => 0,
        Kind::Symlink { .. } => 0o777,
        _ => e.mode & 0o7777,
    };
    let icount = match p.xattrs.len() {
        0 => 0,
        n => (n - XATTR_HEADER) / 4 + 1,
    };
    let b = &mut img[p.offset..p.offset + INODE_SIZE];
    b[0..2].copy_from_slice(&(EXTENDED | p.layout).to_le_bytes());
    b[2..4].copy_from_slice(&(icount as u16).to_le_bytes());
    b[4..6].copy_from_slice(&((kind_bits | perm) as u16).to_le_bytes());
    b[8..16].copy_from_slice(&p.size.to_le_bytes());
    b[16..20].copy_from_slice(&union.to_le_bytes());
    b[20..24].copy_from_slice(&(i + 1).to_le_bytes());
    b[32..40].copy_from_slice(&e.mtime.secs.to_le_bytes());
    b[40..44].copy_from_slice(&e.mtime.nanos.to_le_bytes());
    b[44..48].copy_from_slice(&nlink.to_le_bytes());
}

/// The kernel's `new_encode_dev`.
fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Node, NodeKind, ROOT};

    fn dir_of(names: impl Iterator<Item = Vec<u8>>) -> Manifest {
        let mut root = Node::dir(0o755);
        for name in names {
            let kids = root.children_mut().unwrap();
            kids.insert(name, Node::dir(0o700));
        }
        Manifest::from_tree(&root)
    }

    /// Every block of a large directory holds whole records and names, in name order.
    #[test]
    fn a_large_directory_fills_whole_blocks_in_name_order() {
        let m = dir_of((0..700).map(|i| format!("{i:03}{}", "x".repeat(100)).into_bytes()));
        let data = dir_data(&m, ROOT, &|i| i as u64);
        assert!(data.len() > 4 * BLOCK);
        let mut names: Vec<Vec<u8>> = Vec::new();
        for block in data.chunks(BLOCK) {
            let first = u16::from_le_bytes([block[8], block[9]]) as usize;
            let count = first / 12;
            for k in 0..count {
                let off = u16::from_le_bytes([block[12 * k + 8], block[12 * k + 9]]) as usize;
                let end = match k + 1 < count {
                    true => u16::from_le_bytes([block[12 * k + 20], block[12 * k + 21]]) as usize,
                    false => block[off..]
                        .iter()
                        .position(|&b| b == 0)
                        .map_or(block.len(), |n| off + n),
                };
                names.push(block[off..end].to_vec());
            }
        }
        assert_eq!(names.len(), 702);
        assert!(names.windows(2).all(|w| w[0] < w[1]), "not sorted");
        assert_eq!(&names[..2], &[b".".to_vec(), b"..".to_vec()]);
    }

    #[test]
    fn the_same_manifest_gives_the_same_image() {
        let mut root = Node::dir(0o755);
        root.children_mut().unwrap().insert(
            b"f".to_vec(),
            Node {
                mode: 0o644,
                mtime: Default::default(),
                kind: NodeKind::File {
                    size: 3,
                    digest: Digest::of_blob(b"abc"),
                },
            },
        );
        let m = Manifest::from_tree(&root);
        let img = image(&m);
        assert_eq!(img, image(&m));
        assert_eq!(img.len() % BLOCK, 0);
        assert_eq!(&img[SUPER_OFFSET..SUPER_OFFSET + 4], &MAGIC.to_le_bytes());
    }
}
