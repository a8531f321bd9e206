//! zkit: the shared core of four small Unix tools.
//!
//! - [`atomic`]: replace a file so that readers see the old or the new content, never a mix,
//!   whatever is killed when (`zwrite`).
//! - [`flags`]: inode flags (immutable, append-only) on Linux and the BSDs.
//! - [`digest`], [`manifest`], [`store`]: content-addressed blobs, layers and tags (`zcommit`);
//!   [`store`]'s docs show how to read a layer.
//! - [`link`]: tiered linking, hard link then reflink then copy, for files and trees (`zlink`).
//! - [`commit`], [`checkout`]: a directory into a layer, a stack of layers into a directory.
//! - [`oci`]: stacks as OCI images: export, import, push and pull (`zcommit`).
//! - [`view`], [`router`], [`process`], `fuse`: stacks of layers shown through FUSE, a different
//!   stack per process tree (`zmount`).
//! - [`cli`]: what every binary shares: argument definitions, error reports, exit codes.
//!
//! The binaries in `bin/` only parse arguments and map results to exit codes; everything they
//! do lives here.

pub mod atomic;
pub mod backend;
mod below;
pub mod checkout;
pub mod cli;
pub mod commit;
pub mod diff;
pub mod digest;
pub mod edit;
pub mod error;
pub mod flags;
#[cfg(zkit_fuse)]
pub mod fuse;
pub mod gc;
pub mod link;
pub mod manifest;
pub mod mounted;
pub mod oci;
pub mod overlay;
mod pool;
pub mod process;
pub mod progress;
pub mod quote;
pub mod router;
pub mod runtime;
pub mod scratch;
pub mod store;
mod sys;
pub mod threads;
pub mod view;
#[cfg(zkit_fuse)]
pub mod zmount;

pub use error::{Error, ErrorKind, Result};
