//! Listing the files of a backup.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::engine::*;
use crate::format::manifest::Backup;
use crate::format::tree::{Node, NodeKind};
use crate::{Error, Result};

/// One entry listed by [`Repository::ls`](crate::Repository::ls).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct LsEntry {
    /// Path relative to the backup's root, `/`-separated.
    pub path: String,
    /// `file`, `dir` or `symlink`.
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Size in bytes (files).
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Modification time.
    pub mtime: DateTime<Utc>,
    /// Symlink target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// Lists a backup's tree; see [`Repository::ls`](crate::Repository::ls).
pub(crate) async fn run(engine: &Arc<Engine>, backup: &Backup) -> Result<Vec<LsEntry>> {
    matching(engine, backup, |_, _| true).await
}

/// The entries of a backup's tree for which `keep(path, node)` holds,
/// parents before children, each distinct listing read once.
pub(crate) async fn matching(
    engine: &Arc<Engine>,
    backup: &Backup,
    keep: impl Fn(&str, &Node) -> bool,
) -> Result<Vec<LsEntry>> {
    let listings =
        crate::archiver::restore::Listings::read(engine, &backup.manifest.root, None).await?;
    let mut out = Vec::new();
    let mut stack = vec![(String::new(), backup.manifest.root.clone())];
    while let Some((path, ids)) = stack.pop() {
        let nodes = listings.get(&ids).map_err(|detail| {
            Error::corrupt(
                format!("tree of {:?}", if path.is_empty() { "/" } else { &path }),
                0,
                detail,
            )
        })?;
        let mut subdirs = Vec::new();
        for node in nodes.iter() {
            let child = if path.is_empty() {
                node.name.clone()
            } else {
                format!("{path}/{}", node.name)
            };
            if let Some(subtree) = &node.subtree {
                subdirs.push((child.clone(), subtree.clone()));
            }
            if keep(&child, node) {
                out.push(LsEntry {
                    path: child,
                    kind: node.kind,
                    size: node.size,
                    mode: node.mode,
                    mtime: DateTime::from_timestamp_nanos(node.mtime_ns),
                    target: node.target.clone(),
                });
            }
        }
        stack.extend(subdirs.into_iter().rev());
    }
    Ok(out)
}
