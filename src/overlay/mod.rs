//! Kernel overlayfs over the store: what the `kernel` backend of zmount stands on.
//!
//! - [`meta`]: each layer's meta image, `ROOT/meta/<layer>`, built once from its manifest:
//!   the tree overlayfs stacks (directories, symlinks, whiteouts, opaque directories and one
//!   data-less "metacopy" file per regular file, redirected to its blob) as an EROFS image
//!   ([`erofs`] writes it).
//! - [`mount`]: the overlay of a stack of meta images over `ROOT/blobs` (the one data-only
//!   lower layer), made with the new mount API so that no option-length limit caps the stack.
//! - [`xattr`]: the `trusted.overlay.*` attributes, by name, and how a commit of an upper
//!   dir ([`crate::commit::overlay`]) reads them.
//!
//! Only root (`CAP_SYS_ADMIN`) can mount EROFS and overlayfs and read `trusted.*`
//! attributes, so all of this runs as root; [`mount::probe`] says whether it can.

pub mod erofs;
pub mod meta;
#[cfg(target_os = "linux")]
pub mod mount;
pub mod xattr;

/// The first entry of the upper dir `upper` (a kernel runtime's) whose meaning depends on
/// the lower layers by path: a metadata-only copy-up (its content is the lower file's) or a
/// renamed lower directory (its content is the lower one's). Such a runtime cannot move to
/// other lower layers as it is: the same path there may hold something else.
pub fn depends_on_lower(upper: &std::path::Path) -> std::io::Result<Option<std::path::PathBuf>> {
    let dir = std::fs::File::open(upper)?;
    for entry in std::fs::read_dir(upper)? {
        let entry = entry?;
        let name = entry.file_name();
        for attr in [xattr::METACOPY, xattr::REDIRECT] {
            if xattr::get(&dir, &name, attr)?.is_some() {
                return Ok(Some(entry.path()));
            }
        }
        if entry.file_type()?.is_dir()
            && let Some(found) = depends_on_lower(&entry.path())?
        {
            return Ok(Some(found));
        }
    }
    Ok(None)
}
