//! BLAKE3 digests, written as 64 lowercase hex characters.
//!
//! Two domains, so that no byte string can be both a blob and a layer (SPFS once confused an
//! empty platform with a blob of the same hash):
//! - a blob's digest is the plain BLAKE3 hash of its content, the same as `b3sum FILE` prints;
//! - a layer's digest is BLAKE3 in key-derivation mode with the context [`LAYER_CONTEXT`] over
//!   the manifest's encoded bytes, which never equals a plain hash of the same bytes.

use std::fmt;

/// The BLAKE3 `derive_key` context that separates layer digests from blob digests.
pub const LAYER_CONTEXT: &str = "zkit 2026-11 layer manifest v1";

/// Length of a digest in hex characters.
pub const HEX_LEN: usize = 64;

#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest([u8; 32]);

impl Digest {
    pub const fn from_bytes(bytes: [u8; 32]) -> Digest {
        Digest(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The digest of a blob's content.
    pub fn of_blob(content: &[u8]) -> Digest {
        Digest(*blake3::hash(content).as_bytes())
    }

    /// A hasher for blob content fed in pieces; finish with [`Digest::from`].
    pub fn blob_hasher() -> blake3::Hasher {
        blake3::Hasher::new()
    }

    /// The digest of a layer, from its encoded manifest.
    pub fn of_layer(manifest: &[u8]) -> Digest {
        let mut h = blake3::Hasher::new_derive_key(LAYER_CONTEXT);
        h.update(manifest);
        Digest(*h.finalize().as_bytes())
    }

    /// Parse exactly 64 hex characters (either case).
    pub fn parse(hex: &str) -> Option<Digest> {
        if hex.len() != HEX_LEN {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(Digest(out))
    }

    pub fn to_hex(&self) -> String {
        self.to_string()
    }
}

impl From<blake3::Hash> for Digest {
    fn from(h: blake3::Hash) -> Digest {
        Digest(*h.as_bytes())
    }
}

/// Whether `s` could start a digest: 1 to 64 lowercase hex characters.
pub fn is_hex_prefix(s: &str) -> bool {
    !s.is_empty() && s.len() <= HEX_LEN && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips() {
        let d = Digest::of_blob(b"hello");
        assert_eq!(Digest::parse(&d.to_hex()), Some(d));
        assert_eq!(d.to_hex().len(), HEX_LEN);
        assert!(Digest::parse("xyz").is_none());
    }

    #[test]
    fn layer_digests_differ_from_blob_digests_of_the_same_bytes() {
        assert_ne!(Digest::of_blob(b""), Digest::of_layer(b""));
        assert_ne!(Digest::of_blob(b"abc"), Digest::of_layer(b"abc"));
    }
}
