//! Backs up files and directory trees as they are on disk.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{Entry, Snapshot, Snapshotter};
use crate::format::manifest::SourceInfo;
use crate::{Error, Result};

/// Snapshots one or more local paths.
///
/// Each path becomes a top-level entry of the backup named by its last
/// component (`/srv/data` is stored as `data`), so restoring to `/restore`
/// gives `/restore/data`. The view is not atomic: files that change during
/// the backup are stored as read (use a file-system snapshot for atomicity).
///
/// # Examples
///
/// ```
/// use backup_core::DirectorySnapshotter;
/// let snapshotter = DirectorySnapshotter::new(vec!["/etc".into()]);
/// assert_eq!(snapshotter.paths().len(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct DirectorySnapshotter {
    paths: Vec<PathBuf>,
}

impl DirectorySnapshotter {
    /// A snapshotter of `paths`.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        DirectorySnapshotter { paths }
    }

    /// The paths it backs up.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }
}

/// The name a path is stored under at the backup's root.
fn root_name(path: &Path) -> Result<String> {
    let name = match path.file_name() {
        Some(name) => name,
        None => return Ok("root".to_string()),
    };
    name.to_str().map(str::to_string).ok_or_else(|| {
        Error::InvalidArgument(format!("path {path:?} has a name that is not UTF-8"))
    })
}

#[async_trait]
impl Snapshotter for DirectorySnapshotter {
    fn kind(&self) -> &str {
        "directory"
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        if self.paths.is_empty() {
            return Err(Error::InvalidArgument("no paths to back up".into()));
        }
        let mut entries = Vec::with_capacity(self.paths.len());
        let mut shown = Vec::new();
        for path in &self.paths {
            let absolute = tokio::fs::canonicalize(path)
                .await
                .map_err(|source| Error::io("cannot back up", path, source))?;
            let name = root_name(&absolute)?;
            if entries.iter().any(|entry: &Entry| entry.name() == name) {
                return Err(Error::InvalidArgument(format!(
                    "two paths would be stored under the same name {name:?}: back them up in separate sets"
                )));
            }
            shown.push(absolute.display().to_string());
            entries.push(Entry::Path {
                name,
                path: absolute,
            });
        }
        Ok(Snapshot::new(
            entries,
            SourceInfo {
                kind: "directory".into(),
                paths: shown,
            },
        ))
    }
}
