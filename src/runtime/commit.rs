//! Committing a runtime: its scratch (or its overlay's upper dir) becomes a layer over its
//! base, and the runtime goes on from the new stack or is removed.

use super::{Runtime, discard};
use crate::commit::{Options, Outcome};
use crate::digest::Digest;
use crate::error::{Error, ErrorKind, Result};
use crate::store::Store;

/// What [`commit`] did.
#[derive(Debug)]
pub enum Committed {
    /// Scratch recorded no change: no layer was made. The tag, if one was asked for, now
    /// points at this layer: the top of the runtime's stack, which is what it shows.
    Unchanged { tagged: Option<Digest> },
    /// The new layer (scratch's changes only; it goes over the runtime's base).
    Layer(Outcome),
}

/// What happens to a runtime after [`commit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// The runtime continues on its base plus the new layer, with an empty scratch.
    Continue,
    /// The runtime is removed.
    Discard,
}

/// Turn a runtime's scratch into a layer over its base, through the commit core (scratch's
/// `.wh.NAME` files become whiteouts, `.wh..wh..opq` makes a directory opaque), tag it, then
/// move the runtime onto the new stack or discard it. Refused while a mount holds the runtime.
/// The layer is durable before the runtime changes: a crash in between leaves the runtime as
/// it was, and committing again gives the same layer. With `onto`, the runtime is first
/// rebased onto that upstream stack ([`Runtime::rebase_onto`]), under the same lock.
pub fn commit(
    store: &Store,
    name: &str,
    opts: &Options,
    tag: Option<&str>,
    after: After,
    onto: Option<&[Digest]>,
) -> Result<Committed> {
    if let Some(tag) = tag {
        crate::store::check_tag(tag)?;
    }
    // No sweep between the layer, its tag and the runtime's new base.
    let _lock = store.write_lock()?;
    let mut rt = Runtime::open(store, name)?;
    rt.lock(false)?;
    if let Some(upstream) = onto {
        rt.rebase_onto(upstream)?;
    }
    if !rt.changed()? {
        // The tag must name what the runtime shows, whether or not it changed: a tag left on
        // an older layer would hand a Makefile stale output. Tagged before a discard, so a
        // failure loses nothing.
        let tagged = match tag {
            Some(tag) => {
                let top = rt.base.last().copied().ok_or_else(|| {
                    Error::new(
                        name,
                        ErrorKind::Invalid(format!(
                            "no changes and no base layer: no layer for tag {tag} to point at \
                             (write something in the runtime first)"
                        )),
                    )
                })?;
                store.set_tag(tag, &top)?;
                Some(top)
            }
            None => None,
        };
        match after {
            // Nothing in scratch for a crash to lose.
            After::Continue => crate::backend::forget_volatile(&rt.dir)?,
            After::Discard => {
                drop(rt);
                discard(store, name)?;
            }
        }
        return Ok(Committed::Unchanged { tagged });
    }
    let opts = Options {
        markers: true,
        // Scratch is committed once and then replaced: a cache of it would only go stale.
        cache: false,
        ..opts.clone()
    };
    let outcome = match crate::backend::of_runtime(&rt.dir)? {
        crate::backend::Backend::Fuse => crate::commit::commit(store, &rt.scratch_path(), &opts)?,
        crate::backend::Backend::Kernel => {
            crate::commit::overlay::commit(store, &rt.scratch_path(), rt.base(), &opts)?
        }
    };
    if let Some(tag) = tag {
        store.set_tag(tag, &outcome.digest)?;
    }
    match after {
        After::Continue => {
            let mut base = rt.base.clone();
            base.push(outcome.digest);
            rt.rebase(&base)?;
            crate::backend::forget_volatile(&rt.dir)?;
        }
        After::Discard => {
            drop(rt);
            discard(store, name)?;
        }
    }
    Ok(Committed::Layer(outcome))
}
