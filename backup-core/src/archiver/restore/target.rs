//! What is already in the restore target: which existing files a restore
//! replaces ([`Overwrite`]), what `delete` removes, and reading the
//! restored files back (`verify`).

use std::collections::HashSet;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::plan::Planned;
use super::select::Selector;
use crate::engine::Engine;
use crate::format::tree::Node;
use crate::{Error, Result};

/// Which files already in the target a restore replaces, as restic's
/// `restore --overwrite` takes it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Overwrite {
    /// Every file is written, whatever is there (the default).
    #[default]
    Always,
    /// A file already there with the backup's size and modification time
    /// is left as it is (assumed unchanged, as restic assumes).
    IfChanged,
    /// A file already there is replaced only when the backup's copy is
    /// newer (a later modification time).
    IfNewer,
    /// A file or symlink already there is never replaced.
    Never,
}

impl Overwrite {
    /// Whether the item `node`, found in the target as `existing`, is left
    /// as it is.
    pub(super) fn keeps(self, existing: &std::fs::Metadata, node: &Node) -> bool {
        let mtime_ns = existing
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(existing.mtime_nsec());
        match self {
            Overwrite::Always => false,
            Overwrite::Never => true,
            Overwrite::IfNewer => existing.is_file() && node.mtime_ns <= mtime_ns,
            Overwrite::IfChanged => {
                existing.is_file() && existing.len() == node.size && mtime_ns == node.mtime_ns
            }
        }
    }
}

/// The items of `planned` that `overwrite` leaves as they are in the
/// target at `base`, removed from it; returns how many.
pub(super) async fn keep_existing(
    base: &Path,
    planned: &mut Vec<Planned>,
    overwrite: Overwrite,
) -> u64 {
    if overwrite == Overwrite::Always {
        return 0;
    }
    let before = planned.len();
    let mut kept = Vec::with_capacity(planned.len());
    for item in planned.drain(..) {
        let existing = tokio::fs::symlink_metadata(base.join(&item.relative)).await;
        let keep = existing.is_ok_and(|existing| {
            (existing.is_file() || existing.is_symlink()) && overwrite.keeps(&existing, &item.node)
        });
        if !keep {
            kept.push(item);
        }
    }
    *planned = kept;
    (before - planned.len()) as u64
}

/// What `delete` leaves alone in a restored directory: the names the
/// backup has there, and those the restore's exclude patterns name.
pub(super) struct Keep<'a> {
    pub(super) names: HashSet<&'a str>,
    pub(super) excluded: &'a Exclusion,
}

/// Removes from the directory `dir` (checked, in the target; `relative`
/// in the backup) every entry `keep` does not name, without following
/// symlinks; returns how many were removed.
///
/// # Errors
///
/// [`Error::Io`] when the directory cannot be listed or an entry removed.
pub(super) fn delete_others(dir: &Path, relative: &str, keep: &Keep<'_>) -> Result<u64> {
    let mut deleted = 0;
    let entries =
        std::fs::read_dir(dir).map_err(|source| Error::io("cannot list directory", dir, source))?;
    for entry in entries {
        let entry = entry.map_err(|source| Error::io("cannot list directory", dir, source))?;
        let name = entry.file_name();
        let path = entry.path();
        let Some(text) = name.to_str() else {
            // A name the backup cannot hold is not in it.
            remove(&path)?;
            deleted += 1;
            continue;
        };
        if keep.names.contains(text) || keep.excluded.excludes(&super::join(relative, text), text) {
            continue;
        }
        remove(&path)?;
        deleted += 1;
    }
    Ok(deleted)
}

/// Removes a file, a symlink (not what it points to) or a directory tree.
fn remove(path: &Path) -> Result<()> {
    let metadata = std::fs::symlink_metadata(path)
        .map_err(|source| Error::io("cannot inspect", path, source))?;
    let removed = if metadata.is_dir() {
        // Does not follow symlinks inside the tree.
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    removed.map_err(|source| Error::io("cannot delete", path, source))
}

/// The restore's `exclude` and `iexclude` patterns.
pub(super) struct Exclusion {
    exclude: Option<Selector>,
    iexclude: Option<Selector>,
}

impl Exclusion {
    /// Compiles the patterns (with the syntax of `include`).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an invalid pattern.
    pub(super) fn new(exclude: &[String], iexclude: &[String]) -> Result<Exclusion> {
        let compile = |patterns: &[String], ignore_case| -> Result<Option<Selector>> {
            if patterns.is_empty() {
                Ok(None)
            } else {
                Selector::with_case(patterns, ignore_case).map(Some)
            }
        };
        Ok(Exclusion {
            exclude: compile(exclude, false)?,
            iexclude: compile(iexclude, true)?,
        })
    }

    /// Whether the item at `relative`, named `name`, is left out (with all
    /// it holds).
    pub(super) fn excludes(&self, relative: &str, name: &str) -> bool {
        self.exclude
            .as_ref()
            .is_some_and(|selector| selector.selects(relative, name))
            || self
                .iexclude
                .as_ref()
                .is_some_and(|selector| selector.selects(relative, name))
    }
}

/// Reads the restored file at `path` back and checks each piece against
/// the chunk of `node` it must hold (by its chunk id, so nothing is
/// fetched again); the first difference is an error.
///
/// # Errors
///
/// [`Error::Corrupt`] naming the offset where the file differs from the
/// backup; [`Error::Io`] when it cannot be read.
pub(super) fn verify_file(repo: &Engine, path: &Path, relative: &str, node: &Node) -> Result<()> {
    let lengths = repo.chunk_lengths(&node.content)?;
    let mut file = std::fs::File::open(path)
        .map_err(|source| Error::io("cannot open to verify", path, source))?;
    let mut offset = 0u64;
    let mut buffer = Vec::new();
    let differs = |offset: u64, detail: &str| {
        Error::corrupt(
            format!("restored file {relative:?}"),
            offset,
            format!("verification failed: {detail}"),
        )
    };
    for (id, length) in node.content.iter().zip(lengths) {
        buffer.resize(length as usize, 0);
        file.read_exact(&mut buffer).map_err(|error| {
            if error.kind() == std::io::ErrorKind::UnexpectedEof {
                differs(offset, "the file is shorter than in the backup")
            } else {
                Error::io("cannot read to verify", path, error)
            }
        })?;
        if repo.chunk_id(&buffer) != *id {
            return Err(differs(offset, "its content differs from the backup's"));
        }
        offset += u64::from(length);
    }
    let mut extra = [0u8; 1];
    match file.read(&mut extra) {
        Ok(0) => Ok(()),
        Ok(_) => Err(differs(offset, "the file is longer than in the backup")),
        Err(error) => Err(Error::io("cannot read to verify", path, error)),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::{BackupOptions, DirectorySnapshotter, InitOptions, MemorySink, Repository};

    #[tokio::test]
    async fn verify_reads_the_file_back_and_names_where_it_differs() {
        let source = tempfile::tempdir().unwrap();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let content: Vec<u8> = (0..6_000_000)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        std::fs::write(source.path().join("data.bin"), &content).unwrap();
        let repo = Repository::init(Arc::new(MemorySink::new()), InitOptions::default())
            .await
            .unwrap();
        let summary = repo
            .backup(
                &DirectorySnapshotter::new(vec![source.path().join("data.bin")]),
                BackupOptions::default(),
            )
            .await
            .unwrap();
        let engine = repo.engine();
        let root = engine.load_tree("/", &summary.manifest.root).await.unwrap();
        let node = &root[0];
        assert!(node.content.len() > 1, "several chunks");

        let path = source.path().join("data.bin");
        verify_file(engine, &path, "data.bin", node).unwrap();
        let mut changed = content.clone();
        changed[2_000_000] ^= 1;
        std::fs::write(&path, &changed).unwrap();
        let error = verify_file(engine, &path, "data.bin", node).unwrap_err();
        assert!(error.to_string().contains("differs"), "{error}");
        std::fs::write(&path, &content[..1_000]).unwrap();
        let error = verify_file(engine, &path, "data.bin", node).unwrap_err();
        assert!(error.to_string().contains("shorter"), "{error}");
        let mut longer = content.clone();
        longer.push(0);
        std::fs::write(&path, &longer).unwrap();
        let error = verify_file(engine, &path, "data.bin", node).unwrap_err();
        assert!(error.to_string().contains("longer"), "{error}");
    }

    #[test]
    fn overwrite_rules_follow_restics() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"12345").unwrap();
        let mtime = filetime::FileTime::from_unix_time(1_700_000_000, 5);
        filetime::set_file_mtime(&path, mtime).unwrap();
        let existing = std::fs::metadata(&path).unwrap();
        let mut node = crate::format::tree::Node {
            name: "f".into(),
            kind: crate::format::tree::NodeKind::File,
            mode: 0o644,
            mtime_ns: 1_700_000_000_000_000_005,
            size: 5,
            uid: None,
            gid: None,
            inode: None,
            ctime_ns: None,
            links: None,
            dev: None,
            content: Vec::new(),
            subtree: None,
            target: None,
            xattrs: Vec::new(),
        };
        assert!(!Overwrite::Always.keeps(&existing, &node));
        assert!(Overwrite::Never.keeps(&existing, &node));
        assert!(Overwrite::IfChanged.keeps(&existing, &node));
        assert!(Overwrite::IfNewer.keeps(&existing, &node));
        node.mtime_ns += 1;
        assert!(!Overwrite::IfChanged.keeps(&existing, &node));
        assert!(!Overwrite::IfNewer.keeps(&existing, &node));
        node.mtime_ns -= 2;
        node.size = 6;
        assert!(!Overwrite::IfChanged.keeps(&existing, &node));
        assert!(Overwrite::IfNewer.keeps(&existing, &node));
    }
}
