//! Backs up files and directory trees as they are on disk.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;

use super::{Entry, Selection, Snapshot, Snapshotter};
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
    selection: Option<Arc<Selection>>,
}

/// One item a backup of a [`DirectorySnapshotter`] would store, as
/// [`DirectorySnapshotter::dry_run`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedItem {
    /// Where it is on disk.
    pub path: PathBuf,
    /// `file`, `dir`, `symlink` or `other` (not stored, reported).
    pub kind: &'static str,
    /// Its size in bytes (files).
    pub size: u64,
}

impl DirectorySnapshotter {
    /// A snapshotter of `paths`.
    pub fn new(paths: Vec<PathBuf>) -> Self {
        DirectorySnapshotter {
            paths,
            selection: None,
        }
    }

    /// Leaves out of each tree what `selection` excludes.
    pub fn with_selection(mut self, selection: Selection) -> Self {
        self.selection = (!selection.is_empty()).then(|| Arc::new(selection));
        self
    }

    /// The paths it backs up.
    pub fn paths(&self) -> &[PathBuf] {
        &self.paths
    }

    /// What a backup would store, in walk order (each path, then what is
    /// below it), without storing anything: the selection applied as a
    /// backup applies it.
    ///
    /// # Errors
    ///
    /// As [`snapshot`](Snapshotter::snapshot): a path that cannot be read.
    pub async fn dry_run(&self) -> Result<Vec<PlannedItem>> {
        let roots = self.roots().await?;
        let selection = self.selection.clone().unwrap_or_default();
        tokio::task::spawn_blocking(move || {
            let mut items = Vec::new();
            let mut visit = |path: &Path, metadata: &std::fs::Metadata| {
                let kind = if metadata.is_dir() {
                    "dir"
                } else if metadata.is_symlink() {
                    "symlink"
                } else if metadata.is_file() {
                    "file"
                } else {
                    "other"
                };
                items.push(PlannedItem {
                    path: path.to_path_buf(),
                    kind,
                    size: if metadata.is_file() {
                        metadata.len()
                    } else {
                        0
                    },
                });
            };
            for (_, root) in roots {
                if let Ok(metadata) = std::fs::symlink_metadata(&root) {
                    visit(&root, &metadata);
                }
                selection.walk(&root, &mut visit);
            }
            items
        })
        .await
        .map_err(|error| Error::InvalidArgument(format!("dry run failed: {error}")))
    }

    /// Each path made absolute, with the name it is stored under.
    async fn roots(&self) -> Result<Vec<(String, PathBuf)>> {
        if self.paths.is_empty() {
            return Err(Error::InvalidArgument("no paths to back up".into()));
        }
        let mut roots: Vec<(String, PathBuf)> = Vec::with_capacity(self.paths.len());
        for path in &self.paths {
            let absolute = absolute(path)
                .await
                .map_err(|source| Error::io("cannot back up", path, source))?;
            let name = root_name(&absolute)?;
            if roots.iter().any(|(other, _)| *other == name) {
                return Err(Error::InvalidArgument(format!(
                    "two paths would be stored under the same name {name:?}: back them up in separate sets"
                )));
            }
            roots.push((name, absolute));
        }
        Ok(roots)
    }
}

/// `path` made absolute without following a symlink it ends in (a link
/// given is stored as the link, as restic stores it).
async fn absolute(path: &Path) -> std::io::Result<PathBuf> {
    let last = path
        .file_name()
        .filter(|_| !path.ends_with("..") && !path.ends_with("."));
    match last {
        Some(last) => {
            let parent = match path.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            let absolute = tokio::fs::canonicalize(parent).await?.join(last);
            tokio::fs::symlink_metadata(&absolute).await?;
            Ok(absolute)
        }
        None => tokio::fs::canonicalize(path).await,
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
        let roots = self.roots().await?;
        let shown = roots
            .iter()
            .map(|(_, path)| path.display().to_string())
            .collect();
        let entries = roots
            .into_iter()
            .map(|(name, path)| Entry::Path {
                name,
                path,
                selection: self.selection.clone(),
            })
            .collect();
        Ok(Snapshot::new(
            entries,
            SourceInfo {
                kind: "directory".into(),
                paths: shown,
            },
        ))
    }
}
