//! What a restore writes: the selected directories, files and symlinks of a
//! backup's tree, found by one walk of its listings.

use super::listings::Listings;
use super::select::Selector;
use super::{display, join};
use crate::format::tree::{Node, NodeKind};
use crate::Id;

/// One item to restore: its path relative to the target and its node.
pub(super) struct Planned {
    pub(super) relative: String,
    pub(super) node: Node,
}

/// The items of a restore by kind, and the directories whose listing could
/// not be read (path, reason).
#[derive(Default)]
pub(super) struct Plan {
    pub(super) dirs: Vec<Planned>,
    pub(super) files: Vec<Planned>,
    pub(super) symlinks: Vec<Planned>,
    pub(super) failures: Vec<crate::outcome::ItemFailure>,
}

impl Plan {
    /// Walks the tree below `root` in `listings`, depth first, taking what
    /// `selector` selects (a selected directory with all it contains).
    pub(super) fn walk(listings: &Listings, root: &[Id], selector: &Selector) -> Plan {
        let mut plan = Plan::default();
        let mut stack = vec![(String::new(), root.to_vec(), selector.selects_everything())];
        while let Some((relative, ids, selected)) = stack.pop() {
            let nodes = match listings.get(&ids) {
                Ok(nodes) => nodes,
                Err(error) => {
                    plan.failures.push(crate::outcome::ItemFailure::new(
                        display(&relative),
                        crate::outcome::FailureKind::Corrupt,
                        format!("directory listing unreadable: {error}"),
                    ));
                    continue;
                }
            };
            for node in nodes.iter().cloned() {
                let child = join(&relative, &node.name);
                let child_selected = selected || selector.selects(&child, &node.name);
                match node.kind {
                    NodeKind::Dir => {
                        let subtree = node.subtree.clone().unwrap_or_default();
                        let descend = child_selected || selector.may_contain(&child);
                        if child_selected {
                            plan.dirs.push(Planned {
                                relative: child.clone(),
                                node,
                            });
                        }
                        if descend {
                            stack.push((child, subtree, child_selected));
                        }
                    }
                    NodeKind::File if child_selected => plan.files.push(Planned {
                        relative: child,
                        node,
                    }),
                    NodeKind::Symlink if child_selected => plan.symlinks.push(Planned {
                        relative: child,
                        node,
                    }),
                    _ => {}
                }
            }
        }
        plan
    }

    /// Whether the walk found nothing at all, not even an unreadable
    /// directory.
    pub(super) fn is_empty(&self) -> bool {
        self.dirs.is_empty()
            && self.files.is_empty()
            && self.symlinks.is_empty()
            && self.failures.is_empty()
    }
}
