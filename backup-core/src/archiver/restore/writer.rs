//! The file system side of a restore: directories checked on the way
//! down, files created with `O_NOFOLLOW` under a temporary name and renamed
//! into place once complete.

use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::single::write_verified;
use super::task_failed;
use crate::engine::Engine;
use crate::format::tree::Node;
use crate::progress::Tracker;
use crate::{Error, Result};

/// Writes below `base` only, never through a symlink.
pub(super) struct SafeWriter {
    base: PathBuf,
    /// Relative directories already checked to be real directories.
    checked: Mutex<HashSet<String>>,
    pub(super) tracker: Arc<Tracker>,
}

impl SafeWriter {
    /// A writer below `base` (an existing, canonical directory) that
    /// reports to `tracker`.
    pub(super) fn new(base: PathBuf, tracker: Arc<Tracker>) -> Self {
        SafeWriter {
            base,
            checked: Mutex::new(HashSet::new()),
            tracker,
        }
    }

    /// Creates (or checks) the directory `relative` and all its parents.
    pub(super) async fn directory(&self, relative: &str) -> Result<PathBuf> {
        let mut path = self.base.clone();
        let mut so_far = String::new();
        for component in relative.split('/').filter(|c| !c.is_empty()) {
            crate::format::tree::validate_name(component)?;
            path.push(component);
            if !so_far.is_empty() {
                so_far.push('/');
            }
            so_far.push_str(component);
            if self
                .checked
                .lock()
                .map(|set| set.contains(&so_far))
                .unwrap_or(false)
            {
                continue;
            }
            match tokio::fs::symlink_metadata(&path).await {
                Ok(metadata) if metadata.is_dir() => {}
                Ok(_) => return Err(Error::UnsafePath {
                    path: so_far,
                    reason:
                        "exists in the target and is not a directory (a symlink is never followed)",
                }),
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                    match tokio::fs::create_dir(&path).await {
                        Ok(()) => {}
                        Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                            let metadata = tokio::fs::symlink_metadata(&path)
                                .await
                                .map_err(|source| Error::io("cannot inspect", &path, source))?;
                            if !metadata.is_dir() {
                                return Err(Error::UnsafePath {
                                    path: so_far,
                                    reason:
                                        "appeared in the target as something other than a directory",
                                });
                            }
                        }
                        Err(source) => {
                            return Err(Error::io("cannot create directory", &path, source))
                        }
                    }
                }
                Err(source) => return Err(Error::io("cannot inspect", &path, source)),
            }
            if let Ok(mut set) = self.checked.lock() {
                set.insert(so_far.clone());
            }
        }
        Ok(path)
    }

    /// The checked parent directory and the final path of `relative`.
    pub(super) async fn place(&self, relative: &str) -> Result<(PathBuf, PathBuf, String)> {
        let (parent, name) = match relative.rsplit_once('/') {
            Some((parent, name)) => (parent, name),
            None => ("", relative),
        };
        crate::format::tree::validate_name(name)?;
        let parent_path = self.directory(parent).await?;
        let path = parent_path.join(name);
        Ok((parent_path, path, name.to_string()))
    }

    pub(super) async fn file(
        &self,
        repo: &Arc<Engine>,
        relative: &str,
        node: &Node,
    ) -> Result<u64> {
        let (parent, path, _) = self.place(relative).await?;
        self.tracker.set_current(relative);
        let job = FileJob::new(&parent, path, relative, node);
        write_verified(repo, job, node, &self.tracker).await
    }

    pub(super) async fn symlink(&self, relative: &str, node: &Node) -> Result<()> {
        let (_, path, _) = self.place(relative).await?;
        let target = node.target.clone().unwrap_or_default();
        if let Ok(metadata) = tokio::fs::symlink_metadata(&path).await {
            if metadata.is_dir() {
                return Err(Error::UnsafePath {
                    path: relative.into(),
                    reason: "a directory is in the way of this symlink",
                });
            }
            tokio::fs::remove_file(&path)
                .await
                .map_err(|source| Error::io("cannot replace", &path, source))?;
        }
        tokio::fs::symlink(&target, &path)
            .await
            .map_err(|source| Error::io("cannot create symlink", &path, source))?;
        let mtime = filetime_from_ns(node.mtime_ns);
        let _ = filetime::set_symlink_file_times(&path, mtime, mtime);
        if let (Some(uid), Some(gid)) = (node.uid, node.gid) {
            // Ownership is restored when permitted (as root); otherwise the
            // restoring user owns the file, as with tar and restic.
            let _ = std::os::unix::fs::lchown(&path, Some(uid), Some(gid));
        }
        Ok(())
    }

    pub(super) async fn finish_directory(&self, relative: &str, node: &Node) -> Result<()> {
        let path = self.directory(relative).await?;
        let mode = node.mode;
        let mtime = filetime_from_ns(node.mtime_ns);
        let owner = node.uid.zip(node.gid);
        tokio::task::spawn_blocking(move || {
            if let Some((uid, gid)) = owner {
                let _ = std::os::unix::fs::lchown(&path, Some(uid), Some(gid));
            }
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
                .map_err(|source| Error::io("cannot set permissions", &path, source))?;
            filetime::set_file_times(&path, mtime, mtime)
                .map_err(|source| Error::io("cannot set times", &path, source))
        })
        .await
        .map_err(task_failed)?
    }
}

fn filetime_from_ns(ns: i64) -> filetime::FileTime {
    filetime::FileTime::from_unix_time(
        ns.div_euclid(1_000_000_000),
        u32::try_from(ns.rem_euclid(1_000_000_000)).unwrap_or(0),
    )
}

/// The file system side of restoring one file.
pub(super) struct FileJob {
    temporary: PathBuf,
    path: PathBuf,
    relative: String,
    size: u64,
    mode: u32,
    mtime: filetime::FileTime,
    owner: Option<(u32, u32)>,
}

impl FileJob {
    /// The job of writing `node` to `path` (in the checked directory
    /// `parent`) through a temporary file beside it.
    pub(super) fn new(parent: &Path, path: PathBuf, relative: &str, node: &Node) -> Self {
        let temporary = parent.join(format!(
            ".restore-{}.tmp",
            hex::encode(crate::crypto::random_bytes::<8>())
        ));
        FileJob {
            temporary,
            path,
            relative: relative.to_string(),
            size: node.size,
            mode: node.mode,
            mtime: filetime_from_ns(node.mtime_ns),
            owner: node.uid.zip(node.gid),
        }
    }

    /// Writes the chunks `next` delivers until it returns `None`; on any
    /// failure (including fewer bytes than the size) removes the temporary
    /// file.
    pub(super) fn run(self, next: impl FnMut() -> Option<Vec<u8>>) -> Result<u64> {
        let outcome = self.write(next);
        if outcome.is_err() {
            let _ = std::fs::remove_file(&self.temporary);
        }
        outcome
    }

    fn write(&self, mut next: impl FnMut() -> Option<Vec<u8>>) -> Result<u64> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.temporary)
            .map_err(|source| Error::io("cannot create", &self.temporary, source))?;
        let mut written = 0u64;
        while let Some(data) = next() {
            written += data.len() as u64;
            if written > self.size {
                return Err(Error::corrupt(
                    format!("file {:?}", self.relative),
                    written,
                    format!("content is longer than the recorded size {}", self.size),
                ));
            }
            file.write_all(&data)
                .map_err(|source| Error::io("cannot write", &self.temporary, source))?;
        }
        if written != self.size {
            return Err(Error::corrupt(
                format!("file {:?}", self.relative),
                written,
                format!(
                    "content is {written} bytes but the recorded size is {}",
                    self.size
                ),
            ));
        }
        if let Some((uid, gid)) = self.owner {
            let _ = std::os::unix::fs::fchown(&file, Some(uid), Some(gid));
        }
        file.set_permissions(std::fs::Permissions::from_mode(self.mode))
            .map_err(|source| Error::io("cannot set permissions", &self.temporary, source))?;
        filetime::set_file_handle_times(&file, Some(self.mtime), Some(self.mtime))
            .map_err(|source| Error::io("cannot set times", &self.temporary, source))?;
        drop(file);
        std::fs::rename(&self.temporary, &self.path).map_err(|source| {
            // Checked here rather than before: a directory is seldom in
            // the way, and a look per file costs a system call per file.
            if std::fs::symlink_metadata(&self.path).is_ok_and(|metadata| metadata.is_dir()) {
                Error::UnsafePath {
                    path: self.relative.clone(),
                    reason: "a directory is in the way of this file",
                }
            } else {
                Error::io("cannot move restored file into place", &self.path, source)
            }
        })?;
        Ok(written)
    }
}
