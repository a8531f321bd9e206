//! What a mount serves for one view: the merged layers ([`View`], immutable) and, for an
//! editable view, the scratch dir on top ([`Edit`]).
//!
//! The pairing lives here, where the file system is assembled, so that a view knows nothing
//! of editing: [`crate::edit`] builds on [`crate::view`], never the other way round.

use crate::edit::Edit;
use crate::router::Routed;
use crate::view::View;
use std::sync::Arc;

pub struct Served {
    pub view: View,
    edit: Option<Arc<Edit>>,
}

impl Served {
    /// A stack of layers alone: every write answers `EROFS`.
    pub fn read_only(view: View) -> Served {
        Served { view, edit: None }
    }

    /// Scratch on top of `view`: the view becomes editable, its nodes those of `edit`.
    pub fn editable(view: View, edit: Edit) -> Served {
        Served {
            view,
            edit: Some(Arc::new(edit)),
        }
    }

    pub fn edit(&self) -> Option<&Arc<Edit>> {
        self.edit.as_ref()
    }

    /// Every write goes through here. A stack of layers is read-only; an editable view
    /// answers `Ok` and takes the write.
    pub fn writable(&self) -> Result<(), i32> {
        match self.edit {
            Some(_) => Ok(()),
            None => Err(libc::EROFS),
        }
    }

    /// Whether `n` names a node: an editable view's own node table, else the merged tree.
    pub fn has_node(&self, n: u32) -> bool {
        match &self.edit {
            Some(edit) => edit.has(n),
            None => self.view.node(n).is_some(),
        }
    }
}

impl std::fmt::Debug for Served {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Served")
            .field("view", &self.view)
            .field("editable", &self.edit.is_some())
            .finish()
    }
}

impl Routed for Served {
    fn id(&self) -> u32 {
        self.view.id
    }
}
