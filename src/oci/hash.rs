//! SHA-256 computed where the bytes pass anyway: a writer and a reader that hash and count.

use crate::store::OciBlob;
use sha2::{Digest as _, Sha256};
use std::io::{self, Read, Write};

/// `sha256:<hex>` of a finished hasher.
pub fn name(hasher: Sha256) -> String {
    let bytes = hasher.finalize();
    let mut s = String::with_capacity(71);
    s.push_str("sha256:");
    for b in bytes.iter() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// `sha256:<hex>` of `bytes`.
pub fn of(bytes: &[u8]) -> String {
    name(Sha256::new_with_prefix(bytes))
}

/// Passes writes through to `inner`, hashing and counting them.
pub struct HashWriter<W> {
    pub inner: W,
    hasher: Sha256,
    count: u64,
}

impl<W: Write> HashWriter<W> {
    pub fn new(inner: W) -> Self {
        HashWriter {
            inner,
            hasher: Sha256::new(),
            count: 0,
        }
    }

    pub fn finish(self) -> (W, OciBlob) {
        let blob = OciBlob {
            digest: name(self.hasher),
            size: self.count,
        };
        (self.inner, blob)
    }
}

impl<W: Write> Write for HashWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Passes reads through from `inner`, hashing and counting them, and refusing to give more
/// than `limit` bytes: a blob may not be longer than its descriptor says.
pub struct HashReader<R> {
    inner: R,
    hasher: Sha256,
    pub count: u64,
    limit: u64,
}

impl<R: Read> HashReader<R> {
    pub fn new(inner: R, limit: u64) -> Self {
        HashReader {
            inner,
            hasher: Sha256::new(),
            count: 0,
            limit,
        }
    }

    /// Read what is left (a tar's trailing zeros, a compressor's end) and give the digest.
    pub fn finish(mut self) -> io::Result<(R, OciBlob)> {
        io::copy(&mut self, &mut io::sink())?;
        let blob = OciBlob {
            digest: name(self.hasher),
            size: self.count,
        };
        Ok((self.inner, blob))
    }
}

impl<R: Read> Read for HashReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        if self.count > self.limit {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                TooLong(self.limit),
            ));
        }
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

/// The error a [`HashReader`] gives past its limit.
#[derive(Debug)]
pub struct TooLong(pub u64);

impl std::fmt::Display for TooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "more than the {} bytes its descriptor declares", self.0)
    }
}

impl std::error::Error for TooLong {}
