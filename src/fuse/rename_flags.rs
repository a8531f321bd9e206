//! What a rename's flags ask of an editable view. Only "do not replace" is supported: the
//! exchanging and whiteout-making renames, and any flag unknown here, answer `EINVAL`, as
//! `renameat2(2)` says a file system without them must.
//!
//! The names differ by platform: Linux's `renameat2` has `RENAME_NOREPLACE` (and
//! `RENAME_EXCHANGE`, `RENAME_WHITEOUT`), macOS's `renamex_np` has `RENAME_EXCL` (and
//! `RENAME_SWAP`), and fuser defines its `RenameFlags` constants on Linux only. So the bits
//! are read here, against the platform's own constant.

use fuser::{Errno, RenameFlags};

// FUSE views exist on Linux and macOS only (see build.rs).
#[cfg(target_os = "linux")]
const NOREPLACE: u32 = libc::RENAME_NOREPLACE;
#[cfg(target_os = "macos")]
const NOREPLACE: u32 = libc::RENAME_EXCL;

/// Whether the rename must fail with `EEXIST` when the new name exists.
pub fn noreplace(flags: RenameFlags) -> Result<bool, Errno> {
    let bits = flags.bits();
    if bits & !NOREPLACE != 0 {
        return Err(Errno::EINVAL);
    }
    Ok(bits & NOREPLACE != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_noreplace_is_taken() {
        let of = RenameFlags::from_bits_retain;
        assert_eq!(noreplace(RenameFlags::empty()), Ok(false));
        assert_eq!(noreplace(of(NOREPLACE)), Ok(true));
        #[cfg(target_os = "linux")]
        let refused = [libc::RENAME_EXCHANGE, libc::RENAME_WHITEOUT];
        #[cfg(target_os = "macos")]
        let refused = [libc::RENAME_SWAP, libc::RENAME_SWAP | libc::RENAME_EXCL];
        for bits in refused {
            assert_eq!(noreplace(of(bits)), Err(Errno::EINVAL), "{bits:#x}");
        }
    }
}
