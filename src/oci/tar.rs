//! The tar format of OCI layers: ustar headers, PAX extended headers (long names, nanosecond
//! times, large sizes) and GNU long names, written deterministically and read with every size
//! bounded.
//!
//! Written here rather than by a tar crate because both directions need control a general
//! library does not give: export must give the same bytes for the same layer on any machine
//! (no owners, no host names, fixed PAX header names), and import must refuse a header whose
//! declared size is absurd before reading it (a PAX record of 8 GiB would otherwise be read
//! into memory).

use crate::manifest::Time;
use std::io::{self, Read, Write};

pub const BLOCK: usize = 512;

/// The most bytes a PAX or GNU long-name record may hold.
pub const MAX_RECORD: u64 = 1 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Type {
    File,
    HardLink,
    Symlink,
    Char,
    Block,
    Dir,
    Fifo,
}

impl Type {
    fn flag(self) -> u8 {
        match self {
            Type::File => b'0',
            Type::HardLink => b'1',
            Type::Symlink => b'2',
            Type::Char => b'3',
            Type::Block => b'4',
            Type::Dir => b'5',
            Type::Fifo => b'6',
        }
    }
}

/// One entry's header, as written or as read (after PAX and GNU records are applied).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    pub path: Vec<u8>,
    pub kind: Type,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: Time,
    pub size: u64,
    pub link: Vec<u8>,
    pub major: u32,
    pub minor: u32,
}

/// Write `h` (and a PAX header before it when a field does not fit ustar). The caller then
/// writes `h.size` bytes of content and [`pad`].
pub fn write_header(out: &mut impl Write, h: &Header) -> io::Result<()> {
    let mut pax: Vec<(&str, Vec<u8>)> = Vec::new();
    if h.path.len() > 100 {
        pax.push(("path", h.path.clone()));
    }
    if h.link.len() > 100 {
        pax.push(("linkpath", h.link.clone()));
    }
    if h.size >= 1 << 33 {
        pax.push(("size", h.size.to_string().into_bytes()));
    }
    if h.mtime.nanos != 0 || h.mtime.secs < 0 || h.mtime.secs >= 1 << 33 {
        pax.push(("mtime", pax_time(h.mtime).into_bytes()));
    }
    if !pax.is_empty() {
        let mut body = Vec::new();
        for (key, value) in &pax {
            body.extend_from_slice(&pax_record(key, value));
        }
        let x = Header {
            path: b"././@PaxHeader".to_vec(),
            kind: Type::File,
            mode: 0o644,
            uid: 0,
            gid: 0,
            mtime: Time { secs: 0, nanos: 0 },
            size: body.len() as u64,
            link: Vec::new(),
            major: 0,
            minor: 0,
        };
        out.write_all(&ustar_block(&x, b'x'))?;
        out.write_all(&body)?;
        pad(out, body.len() as u64)?;
    }
    out.write_all(&ustar_block(h, h.kind.flag()))
}

/// Zeros up to the next block boundary after `size` bytes of content.
pub fn pad(out: &mut impl Write, size: u64) -> io::Result<()> {
    let rest = (BLOCK - (size % BLOCK as u64) as usize) % BLOCK;
    out.write_all(&[0u8; BLOCK][..rest])
}

/// The end of an archive: two zero blocks.
pub fn finish(out: &mut impl Write) -> io::Result<()> {
    out.write_all(&[0u8; 2 * BLOCK])
}

/// `secs.nanos` as PAX writes a time (negative times count down from the epoch).
fn pax_time(t: Time) -> String {
    if t.secs < 0 && t.nanos > 0 {
        format!("-{}.{:09}", -(t.secs + 1), 1_000_000_000 - t.nanos)
    } else if t.nanos > 0 {
        format!("{}.{:09}", t.secs, t.nanos)
    } else {
        t.secs.to_string()
    }
}

fn parse_pax_time(v: &[u8]) -> Option<Time> {
    let s = std::str::from_utf8(v).ok()?;
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: i64 = whole.parse().ok()?;
    let mut nanos: u32 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += (b - b'0') as u32 * 10u32.pow(8 - i as u32);
    }
    Some(match (neg, nanos) {
        (false, _) => Time { secs, nanos },
        (true, 0) => Time { secs: -secs, nanos },
        (true, n) => Time {
            secs: -secs - 1,
            nanos: 1_000_000_000 - n,
        },
    })
}

/// `"%d key=value\n"`, where the length counts itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let base = key.len() + value.len() + 3;
    let mut len = base + 1;
    while len != base + len.to_string().len() {
        len = base + len.to_string().len();
    }
    let mut r = format!("{len} {key}=").into_bytes();
    r.extend_from_slice(value);
    r.push(b'\n');
    r
}

fn ustar_block(h: &Header, flag: u8) -> [u8; BLOCK] {
    let mut b = [0u8; BLOCK];
    let name = &h.path[..h.path.len().min(100)];
    b[..name.len()].copy_from_slice(name);
    octal(&mut b[100..108], (h.mode & 0o7777) as u64);
    octal(&mut b[108..116], h.uid);
    octal(&mut b[116..124], h.gid);
    octal(&mut b[124..136], h.size.min((1 << 33) - 1));
    octal(
        &mut b[136..148],
        h.mtime.secs.clamp(0, (1 << 33) - 1) as u64,
    );
    b[156] = flag;
    let link = &h.link[..h.link.len().min(100)];
    b[157..157 + link.len()].copy_from_slice(link);
    b[257..263].copy_from_slice(b"ustar\0");
    b[263..265].copy_from_slice(b"00");
    if matches!(h.kind, Type::Char | Type::Block) {
        octal(&mut b[329..337], h.major as u64);
        octal(&mut b[337..345], h.minor as u64);
    }
    b[148..156].copy_from_slice(b"        ");
    let sum: u32 = b.iter().map(|&x| x as u32).sum();
    octal(&mut b[148..155], sum as u64);
    b[155] = b' ';
    b
}

/// Octal digits, zero-padded, NUL-terminated; base-256 (GNU) when the value does not fit.
fn octal(field: &mut [u8], value: u64) {
    let digits = field.len() - 1;
    if digits < 22 && value >= 1u64 << (3 * digits) {
        field.fill(0);
        field[0] = 0x80;
        let bytes = value.to_be_bytes();
        let len = field.len();
        let n = (len - 1).min(8);
        field[len - n..].copy_from_slice(&bytes[8 - n..]);
        return;
    }
    let s = format!("{value:0digits$o}");
    field[..digits].copy_from_slice(s.as_bytes());
    field[digits] = 0;
}

fn parse_number(field: &[u8]) -> Option<u64> {
    if field.first().is_some_and(|&b| b & 0x80 != 0) {
        // Base-256: big-endian, the first byte's high bit the marker (negative refused).
        if field[0] & 0x40 != 0 {
            return None;
        }
        let mut v: u64 = (field[0] & 0x3f) as u64;
        for &b in &field[1..] {
            v = v.checked_mul(256)?.checked_add(b as u64)?;
        }
        return Some(v);
    }
    let s: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| b != 0 && b != b' ')
        .collect();
    if s.is_empty() {
        return Some(0);
    }
    if !s.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(&s).ok()?, 8).ok()
}

fn cstr(field: &[u8]) -> &[u8] {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    &field[..end]
}

/// Why an archive cannot be read.
#[derive(Debug)]
pub enum ReadError {
    Io(io::Error),
    Bad(String),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

fn bad<T>(what: impl Into<String>) -> Result<T, ReadError> {
    Err(ReadError::Bad(what.into()))
}

/// Reads entries from a tar stream, one header at a time; the caller reads each entry's
/// content through [`Reader::content`] (or lets [`Reader::next_header`] skip it).
pub struct Reader<R: Read> {
    inner: R,
    /// Content bytes of the current entry not yet read, and its padding.
    left: u64,
    padding: u64,
    pub entries: u64,
}

impl<R: Read> Reader<R> {
    pub fn new(inner: R) -> Self {
        Reader {
            inner,
            left: 0,
            padding: 0,
            entries: 0,
        }
    }

    pub fn inner_ref(&self) -> &R {
        &self.inner
    }

    /// The current entry's content (exactly its size, then nothing).
    pub fn content(&mut self) -> Content<'_, R> {
        Content { reader: self }
    }

    /// The next entry's header, or `None` at the end of the archive. Global PAX headers are
    /// skipped; types other than files, links, devices, directories and FIFOs are refused.
    pub fn next_header(&mut self) -> Result<Option<Header>, ReadError> {
        self.skip_rest()?;
        let mut long_name: Option<Vec<u8>> = None;
        let mut long_link: Option<Vec<u8>> = None;
        let mut pax: Vec<Record> = Vec::new();
        loop {
            let mut b = [0u8; BLOCK];
            if !read_block(&mut self.inner, &mut b)? {
                // EOF without the end blocks: accepted, as tar does.
                return Ok(None);
            }
            if b.iter().all(|&x| x == 0) {
                return Ok(None);
            }
            let stored = parse_number(&b[148..156]);
            let mut check = b;
            check[148..156].copy_from_slice(b"        ");
            let sum: u64 = check.iter().map(|&x| x as u64).sum();
            if stored != Some(sum) {
                return bad("a tar header's checksum is wrong (the archive is damaged)");
            }
            let size = parse_number(&b[124..136])
                .ok_or_else(|| ReadError::Bad("a tar header's size is not a number".into()))?;
            let flag = b[156];
            if matches!(flag, b'x' | b'g' | b'L' | b'K') {
                if size > MAX_RECORD {
                    return bad(format!(
                        "an extended tar header declares {size} bytes (more than {MAX_RECORD})"
                    ));
                }
                let mut data = vec![0u8; size as usize];
                self.inner.read_exact(&mut data).map_err(truncated)?;
                skip(&mut self.inner, padding_of(size))?;
                match flag {
                    b'x' => pax.extend(parse_pax(&data)?),
                    b'L' => long_name = Some(cstr(&data).to_vec()),
                    b'K' => long_link = Some(cstr(&data).to_vec()),
                    _ => {} // global: nothing a layer needs
                }
                continue;
            }
            self.entries += 1;
            let kind = match flag {
                b'0' | 0 | b'7' => Type::File,
                b'1' => Type::HardLink,
                b'2' => Type::Symlink,
                b'3' => Type::Char,
                b'4' => Type::Block,
                b'5' => Type::Dir,
                b'6' => Type::Fifo,
                other => {
                    return bad(format!(
                        "tar entry type {:?} is not supported (files, links, devices, \
                         directories and FIFOs are)",
                        other as char
                    ));
                }
            };
            let ustar = &b[257..263] == b"ustar\0";
            let mut path = cstr(&b[..100]).to_vec();
            if ustar && b[345] != 0 {
                let mut full = cstr(&b[345..500]).to_vec();
                full.push(b'/');
                full.extend_from_slice(&path);
                path = full;
            }
            let number = |r: std::ops::Range<usize>, what: &str| {
                parse_number(&b[r])
                    .ok_or_else(|| ReadError::Bad(format!("a tar header's {what} is not a number")))
            };
            let mut h = Header {
                path: long_name.take().unwrap_or(path),
                kind,
                mode: (number(100..108, "mode")? & 0o7777) as u32,
                uid: number(108..116, "uid")?,
                gid: number(116..124, "gid")?,
                mtime: Time {
                    secs: number(136..148, "mtime")? as i64,
                    nanos: 0,
                },
                size,
                link: long_link
                    .take()
                    .unwrap_or_else(|| cstr(&b[157..257]).to_vec()),
                major: 0,
                minor: 0,
            };
            if matches!(kind, Type::Char | Type::Block) {
                h.major = u32::try_from(number(329..337, "device major")?)
                    .map_err(|_| ReadError::Bad("a device major number is too large".into()))?;
                h.minor = u32::try_from(number(337..345, "device minor")?)
                    .map_err(|_| ReadError::Bad("a device minor number is too large".into()))?;
            }
            for (key, value) in pax {
                match &key[..] {
                    b"path" => h.path = value,
                    b"linkpath" => h.link = value,
                    b"size" => {
                        h.size = std::str::from_utf8(&value)
                            .ok()
                            .and_then(|v| v.parse().ok())
                            .ok_or_else(|| ReadError::Bad("a PAX size is not a number".into()))?
                    }
                    b"mtime" => {
                        h.mtime = parse_pax_time(&value)
                            .ok_or_else(|| ReadError::Bad("a PAX mtime is not a time".into()))?
                    }
                    b"uid" | b"gid" => {}
                    _ => {}
                }
            }
            // Only files carry content; a link's or directory's size field is not read.
            self.left = match kind {
                Type::File => h.size,
                _ => 0,
            };
            if kind != Type::File {
                h.size = 0;
            }
            self.padding = padding_of(self.left);
            return Ok(Some(h));
        }
    }

    fn skip_rest(&mut self) -> Result<(), ReadError> {
        let n = self.left + self.padding;
        self.left = 0;
        self.padding = 0;
        skip(&mut self.inner, n)
    }
}

/// The current entry's content.
pub struct Content<'a, R: Read> {
    reader: &'a mut Reader<R>,
}

impl<R: Read> Read for Content<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.reader.left;
        if left == 0 {
            return Ok(0);
        }
        let want = buf.len().min(left.min(usize::MAX as u64) as usize);
        let n = self.reader.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the archive ends inside a file",
            ));
        }
        self.reader.left -= n as u64;
        Ok(n)
    }
}

fn padding_of(size: u64) -> u64 {
    (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64
}

fn truncated(e: io::Error) -> ReadError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => ReadError::Bad("the archive ends inside an entry".into()),
        _ => ReadError::Io(e),
    }
}

fn skip(r: &mut impl Read, n: u64) -> Result<(), ReadError> {
    let copied = io::copy(&mut r.take(n), &mut io::sink())?;
    if copied < n {
        return bad("the archive ends inside an entry");
    }
    Ok(())
}

/// A whole block, `false` at a clean end of stream.
fn read_block(r: &mut impl Read, b: &mut [u8; BLOCK]) -> Result<bool, ReadError> {
    let mut at = 0;
    while at < BLOCK {
        match r.read(&mut b[at..]) {
            Ok(0) if at == 0 => return Ok(false),
            Ok(0) => return bad("the archive ends inside a header"),
            Ok(n) => at += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(true)
}

/// A PAX record: key and value.
type Record = (Vec<u8>, Vec<u8>);

fn parse_pax(mut data: &[u8]) -> Result<Vec<Record>, ReadError> {
    let mut out = Vec::new();
    while !data.is_empty() && data[0] != 0 {
        let space = data
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| ReadError::Bad("a PAX record has no length".into()))?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|&l| l > space + 1 && l <= data.len())
            .ok_or_else(|| ReadError::Bad("a PAX record's length is wrong".into()))?;
        let record = &data[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        let eq = record
            .iter()
            .position(|&b| b == b'=')
            .ok_or_else(|| ReadError::Bad("a PAX record has no `=`".into()))?;
        out.push((record[..eq].to_vec(), record[eq + 1..].to_vec()));
        data = &data[len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(path: &[u8], kind: Type, size: u64) -> Header {
        Header {
            path: path.to_vec(),
            kind,
            mode: 0o4755,
            uid: 0,
            gid: 0,
            mtime: Time {
                secs: 1_700_000_000,
                nanos: 123_456_789,
            },
            size,
            link: Vec::new(),
            major: 0,
            minor: 0,
        }
    }

    #[test]
    fn written_entries_read_back_with_long_names_and_nanoseconds() {
        let long = vec![b'n'; 300];
        let mut dev = header(b"dev/null", Type::Char, 0);
        (dev.major, dev.minor) = (1, 3);
        let mut link = header(b"l", Type::Symlink, 0);
        link.link = vec![b't'; 150];
        link.mtime = Time {
            secs: -5,
            nanos: 250_000_000,
        };
        let mut out = Vec::new();
        let file = header(&long, Type::File, 5);
        write_header(&mut out, &file).unwrap();
        out.extend_from_slice(b"hello");
        pad(&mut out, 5).unwrap();
        write_header(&mut out, &dev).unwrap();
        write_header(&mut out, &link).unwrap();
        finish(&mut out).unwrap();
        let mut r = Reader::new(&out[..]);
        assert_eq!(r.next_header().unwrap().unwrap(), file);
        let mut content = Vec::new();
        r.content().read_to_end(&mut content).unwrap();
        assert_eq!(content, b"hello");
        assert_eq!(r.next_header().unwrap().unwrap(), dev);
        assert_eq!(r.next_header().unwrap().unwrap(), link);
        assert!(r.next_header().unwrap().is_none());
    }

    #[test]
    fn an_oversized_extended_header_is_refused_before_it_is_read() {
        let mut h = header(b"x", Type::File, 0);
        h.size = 1 << 40;
        let mut b = ustar_block(&h, b'x');
        // ustar_block clamps the size; declare it in base-256 instead.
        b[124..136].fill(0);
        b[124] = 0x80;
        b[130] = 1;
        b[148..156].copy_from_slice(b"        ");
        let sum: u32 = b.iter().map(|&x| x as u32).sum();
        octal(&mut b[148..155], sum as u64);
        let err = Reader::new(&b[..]).next_header().unwrap_err();
        assert!(matches!(err, ReadError::Bad(m) if m.contains("extended")));
    }
}
