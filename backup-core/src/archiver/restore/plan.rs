//! What a restore writes: the selected directories, files and symlinks of a
//! backup's tree, found by one walk of its listings.

use super::listings::Listings;
use super::select::Selector;
use super::target::Exclusion;
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
    /// Files restored as hard links of a file in `files`: each with the
    /// path of that file.
    pub(super) links: Vec<(Planned, String)>,
    pub(super) failures: Vec<crate::outcome::ItemFailure>,
}

impl Plan {
    /// Walks the tree below `root` in `listings`, depth first, taking what
    /// `selector` selects (a selected directory with all it contains).
    pub(super) fn walk(
        listings: &Listings,
        root: &[Id],
        selector: &Selector,
        exclusion: &Exclusion,
    ) -> Plan {
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
                if exclusion.excludes(&child, &node.name) {
                    continue;
                }
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
        plan.group_hard_links();
        plan
    }

    /// Moves the files that are hard links of another one selected (same
    /// `dev` and `inode`, both with `links`, and the same content and size:
    /// nodes that disagree are restored as separate files) from `files` to
    /// `links`, each with the first of its group by path, which is written.
    fn group_hard_links(&mut self) {
        type Key = (u64, u64, u64, Vec<Id>);
        let key = |node: &Node| -> Option<Key> {
            node.links?;
            Some((node.dev?, node.inode?, node.size, node.content.clone()))
        };
        if !self.files.iter().any(|file| file.node.links.is_some()) {
            return;
        }
        let mut first: std::collections::HashMap<Key, String> = std::collections::HashMap::new();
        let mut linked: Vec<&Planned> = self
            .files
            .iter()
            .filter(|file| key(&file.node).is_some())
            .collect();
        linked.sort_by(|a, b| a.relative.cmp(&b.relative));
        for file in linked {
            if let Some(key) = key(&file.node) {
                first.entry(key).or_insert_with(|| file.relative.clone());
            }
        }
        let files = std::mem::take(&mut self.files);
        for file in files {
            match key(&file.node).and_then(|key| first.get(&key)) {
                Some(head) if *head != file.relative => {
                    let head = head.clone();
                    self.links.push((file, head));
                }
                _ => self.files.push(file),
            }
        }
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
