//! Reading a backup's directory listings, each distinct one once, with
//! the limits that keep a hostile repository from describing an endless
//! tree.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::select::Selector;
use super::{display, join};
use crate::engine::Engine;
use crate::format::tree::Node;
use crate::{Error, Id, Result};

/// The most entries (files, directories, symlinks) a backup's tree may
/// expand to before restore or `ls` refuses it. Content addressing lets
/// identical directories share one listing, so a hostile repository could
/// otherwise describe an exponentially large tree in a few kilobytes.
pub const MAX_TREE_ENTRIES: u64 = 100_000_000;

/// The deepest directory nesting read. Paths deeper than this cannot be
/// created on common file systems anyway (`PATH_MAX` is 4096 bytes).
pub const MAX_TREE_DEPTH: usize = 2048;

/// The distinct directory listings of one backup, each read once.
pub(crate) struct Listings {
    loaded: HashMap<Vec<Id>, std::result::Result<Arc<Vec<Node>>, String>>,
}

impl Listings {
    /// Reads the distinct listings below `root` that `selector` may need
    /// (all of them without one) and counts the entries the tree expands
    /// to, refusing trees that are too deep, cyclic, or expand beyond
    /// [`MAX_TREE_ENTRIES`]. A listing that cannot be read is kept as its
    /// error (the caller reports it for that directory).
    pub(crate) async fn read(
        repo: &Engine,
        root: &[Id],
        selector: Option<&Selector>,
    ) -> Result<Listings> {
        let refuse = |detail: String| Error::corrupt("tree of \"/\"", 0, detail);
        let all_below = |relative: &str| selector.is_none_or(|s| s.needs_all_below(relative));
        let mut loaded: HashMap<Vec<Id>, std::result::Result<Arc<Vec<Node>>, String>> =
            HashMap::new();
        // Entries below a listing, for listings whose whole subtree is read
        // (then the count does not depend on the path it is reached by).
        let mut counts: HashMap<Vec<Id>, u64> = HashMap::new();
        let mut open: HashSet<Vec<Id>> = HashSet::new();
        // Per frame: listing, relative path, children pushed, depth, and
        // (when expanded) the count of the children on the path.
        struct Frame {
            ids: Vec<Id>,
            relative: String,
            expanded: bool,
            depth: usize,
        }
        // Entries counted below frames whose subtree is read only in part
        // (bounded: such directories lie on the literal prefix of a pattern).
        let mut partial: Vec<u64> = Vec::new();
        let mut stack = vec![Frame {
            ids: root.to_vec(),
            relative: String::new(),
            expanded: false,
            depth: 0,
        }];
        while let Some(frame) = stack.pop() {
            let whole = all_below(&frame.relative);
            if whole && counts.contains_key(&frame.ids) {
                if let Some(slot) = partial.last_mut() {
                    *slot = slot.saturating_add(counts[&frame.ids]);
                }
                continue;
            }
            let shown = display(&frame.relative);
            if !frame.expanded {
                if frame.depth > MAX_TREE_DEPTH {
                    return Err(refuse(format!(
                        "directories are nested deeper than {MAX_TREE_DEPTH} levels at {shown:?}"
                    )));
                }
                if !open.insert(frame.ids.clone()) {
                    return Err(refuse(format!("directory {shown:?} contains itself")));
                }
                if !loaded.contains_key(&frame.ids) {
                    let listing = repo
                        .load_tree(&shown, &frame.ids)
                        .await
                        .map(Arc::new)
                        .map_err(|error| error.to_string());
                    loaded.insert(frame.ids.clone(), listing);
                }
                let mut children = Vec::new();
                if let Some(Ok(nodes)) = loaded.get(&frame.ids) {
                    for node in nodes.iter() {
                        let Some(subtree) = &node.subtree else {
                            continue;
                        };
                        let child = join(&frame.relative, &node.name);
                        if open.contains(subtree) {
                            return Err(refuse(format!(
                                "directory {child:?} contains one of its own ancestors"
                            )));
                        }
                        if whole || selector.is_none_or(|s| s.may_contain(&child)) {
                            children.push(Frame {
                                ids: subtree.clone(),
                                relative: child,
                                expanded: false,
                                depth: frame.depth + 1,
                            });
                        }
                    }
                }
                stack.push(Frame {
                    expanded: true,
                    ..frame
                });
                partial.push(0);
                stack.extend(children);
            } else {
                let below = partial.pop().unwrap_or(0);
                let own = match loaded.get(&frame.ids) {
                    Some(Ok(nodes)) => nodes.len() as u64,
                    _ => 0,
                };
                let total = own.saturating_add(below);
                if total > MAX_TREE_ENTRIES {
                    return Err(refuse(format!(
                        "directory {shown:?} expands to more than {MAX_TREE_ENTRIES} entries"
                    )));
                }
                open.remove(&frame.ids);
                if whole {
                    counts.insert(frame.ids.clone(), total);
                }
                if let Some(slot) = partial.last_mut() {
                    *slot = slot.saturating_add(total);
                }
            }
        }
        Ok(Listings { loaded })
    }

    /// The listing of one directory, or why it could not be read.
    pub(crate) fn get(&self, ids: &[Id]) -> std::result::Result<Arc<Vec<Node>>, String> {
        match self.loaded.get(ids) {
            Some(listing) => listing.clone(),
            None => Err("directory listing was not read".into()),
        }
    }
}
