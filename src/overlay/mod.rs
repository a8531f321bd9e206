//! Kernel overlayfs over the store: what the `kernel` backend of zmount stands on.
//!
//! - [`meta`]: each layer's metadata tree, `ROOT/meta/<layer>/`, built once from its manifest:
//!   the tree overlayfs stacks (directories, symlinks, whiteouts, opaque directories and one
//!   sparse "metacopy" file per regular file, redirected to its blob).
//! - [`mount`]: the overlay of a stack of meta trees over `ROOT/blobs` (the one data-only
//!   lower layer), made with the new mount API so that no option-length limit caps the stack.
//! - [`xattr`]: the `trusted.overlay.*` attributes both of them, and a commit of an upper
//!   dir ([`crate::commit::overlay`]), read and write.
//!
//! Only root (`CAP_SYS_ADMIN`) can write `trusted.*` attributes and mount overlayfs, so all of
//! this runs as root; [`mount::probe`] says whether it can.

pub mod meta;
#[cfg(target_os = "linux")]
pub mod mount;
pub mod xattr;
