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
use crate::format::tree::{Node, Xattr};
use crate::outcome::ItemFailure;
use crate::progress::Tracker;
use crate::{Error, Result};

/// Metadata not restored on items that were (an extended attribute the
/// target refused): reported as failures of those items.
pub(super) type Notes = Arc<Mutex<Vec<ItemFailure>>>;

/// Writes below `base` only, never through a symlink.
pub(super) struct SafeWriter {
    base: PathBuf,
    /// Relative directories already checked to be real directories.
    checked: Mutex<HashSet<String>>,
    pub(super) tracker: Arc<Tracker>,
    pub(super) notes: Notes,
}

impl SafeWriter {
    /// A writer below `base` (an existing, canonical directory) that
    /// reports to `tracker`.
    pub(super) fn new(base: PathBuf, tracker: Arc<Tracker>) -> Self {
        SafeWriter {
            base,
            checked: Mutex::new(HashSet::new()),
            tracker,
            notes: Arc::default(),
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
        let job = FileJob::new(&parent, path, relative, node, &self.notes);
        write_verified(repo, job, node, &self.tracker).await
    }

    /// Makes `relative` a hard link of the restored file `first` (both
    /// relative to the target): linked under a temporary name beside it,
    /// then renamed into place, so that whatever was at `relative` is
    /// replaced only by the complete link.
    pub(super) async fn hard_link(&self, first: &str, relative: &str) -> Result<()> {
        let (_, existing, _) = self.place(first).await?;
        let (parent, path, _) = self.place(relative).await?;
        let temporary = temporary_name(&parent);
        tokio::fs::hard_link(&existing, &temporary)
            .await
            .map_err(|source| Error::io("cannot create hard link", &path, source))?;
        if let Err(source) = tokio::fs::rename(&temporary, &path).await {
            let _ = tokio::fs::remove_file(&temporary).await;
            if tokio::fs::symlink_metadata(&path)
                .await
                .is_ok_and(|m| m.is_dir())
            {
                return Err(Error::UnsafePath {
                    path: relative.into(),
                    reason: "a directory is in the way of this file",
                });
            }
            return Err(Error::io("cannot move hard link into place", &path, source));
        }
        Ok(())
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
        let xattrs = node.xattrs.clone();
        let notes = self.notes.clone();
        let display = super::display(relative);
        tokio::task::spawn_blocking(move || {
            if let Some((uid, gid)) = owner {
                let _ = std::os::unix::fs::lchown(&path, Some(uid), Some(gid));
            }
            // Before the mode: a read-only directory takes attributes too,
            // but an ACL set after the mode would change the mode's group
            // bits back to its mask.
            for xattr in &xattrs {
                if let Err(error) = xattr::set(&path, &xattr.name, &xattr.value) {
                    note(&notes, &display, &xattr.name, &error);
                }
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

/// Records that the extended attribute `name` of `relative` (restored) was
/// not set.
fn note(notes: &Notes, relative: &str, name: &str, error: &std::io::Error) {
    if let Ok(mut notes) = notes.lock() {
        notes.push(ItemFailure::new(
            relative.to_string(),
            crate::outcome::FailureKind::of_io(error),
            format!("restored without its extended attribute {name:?}: {error}"),
        ));
    }
}

/// The granularity of the holes a restore leaves: a run of zeros this long,
/// aligned to it in the file, is not written.
const HOLE_BLOCK: usize = 64 * 1024;

/// Writes `data` at `offset`, the file's position, leaving aligned blocks
/// of zeros as holes (each run of other blocks is one write); returns
/// whether it ended in a hole (the file's length must then be set).
fn write_sparse(file: &mut std::fs::File, data: &[u8], offset: u64) -> std::io::Result<bool> {
    use std::io::{Seek, SeekFrom, Write};
    let mut at = 0;
    let mut pending = 0..0;
    let mut hole = false;
    while at < data.len() {
        // The block boundary after `at`, in file offsets.
        let into_block = ((offset + at as u64) % HOLE_BLOCK as u64) as usize;
        let end = (at + HOLE_BLOCK - into_block).min(data.len());
        let zeros = end - at == HOLE_BLOCK && data[at..end].iter().all(|byte| *byte == 0);
        if zeros {
            if !pending.is_empty() {
                file.write_all(&data[pending.clone()])?;
            }
            file.seek(SeekFrom::Current((end - at) as i64))?;
            pending = end..end;
        } else if pending.is_empty() {
            pending = at..end;
        } else {
            pending.end = end;
        }
        hole = zeros;
        at = end;
    }
    if !pending.is_empty() {
        file.write_all(&data[pending])?;
    }
    Ok(hole)
}

/// A temporary name in the checked directory `parent`.
fn temporary_name(parent: &Path) -> PathBuf {
    parent.join(format!(
        ".restore-{}.tmp",
        hex::encode(crate::crypto::random_bytes::<8>())
    ))
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
    xattrs: Vec<Xattr>,
    notes: Notes,
}

impl FileJob {
    /// The job of writing `node` to `path` (in the checked directory
    /// `parent`) through a temporary file beside it.
    pub(super) fn new(
        parent: &Path,
        path: PathBuf,
        relative: &str,
        node: &Node,
        notes: &Notes,
    ) -> Self {
        FileJob {
            temporary: temporary_name(parent),
            path,
            relative: relative.to_string(),
            size: node.size,
            mode: node.mode,
            mtime: filetime_from_ns(node.mtime_ns),
            owner: node.uid.zip(node.gid),
            xattrs: node.xattrs.clone(),
            notes: notes.clone(),
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
        use std::os::unix::fs::OpenOptionsExt;
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.temporary)
            .map_err(|source| Error::io("cannot create", &self.temporary, source))?;
        let mut written = 0u64;
        let mut hole_at_end = false;
        while let Some(data) = next() {
            written += data.len() as u64;
            if written > self.size {
                return Err(Error::corrupt(
                    format!("file {:?}", self.relative),
                    written,
                    format!("content is longer than the recorded size {}", self.size),
                ));
            }
            // Runs of zeros (a sparse file's holes, as the backup read them)
            // are skipped over: they read back as zeros, and take no space
            // on file systems that keep holes.
            hole_at_end = write_sparse(&mut file, &data, written - data.len() as u64)
                .map_err(|source| Error::io("cannot write", &self.temporary, source))?;
        }
        if hole_at_end {
            // The length says where the file ends.
            file.set_len(written)
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
        // Before the mode, which an access ACL would otherwise change.
        for xattr in &self.xattrs {
            if let Err(error) = xattr::FileExt::set_xattr(&file, &xattr.name, &xattr.value) {
                note(&self.notes, &self.relative, &xattr.name, &error);
            }
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

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn aligned_blocks_of_zeros_become_holes_and_the_bytes_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse");
        let mut file = std::fs::File::create(&path).unwrap();
        // Data, then 4 MiB of zeros not aligned to a block, data, zeros.
        let mut expected = vec![1u8; 1000];
        expected.extend(vec![0u8; 4 << 20]);
        expected.extend(vec![2u8; 70_000]);
        // Zeros to a block boundary and three blocks more.
        let tail = 4 * HOLE_BLOCK - expected.len() % HOLE_BLOCK;
        expected.extend(vec![0u8; tail]);
        let mut offset = 0u64;
        let mut hole = false;
        for piece in expected.chunks(1 << 20) {
            hole = write_sparse(&mut file, piece, offset).unwrap();
            offset += piece.len() as u64;
        }
        assert!(hole, "the tail ends in whole zero blocks");
        file.set_len(offset).unwrap();
        drop(file);
        let mut read = Vec::new();
        std::fs::File::open(&path)
            .unwrap()
            .read_to_end(&mut read)
            .unwrap();
        assert_eq!(read, expected);
        let allocated = std::fs::metadata(&path).unwrap().blocks() * 512;
        assert!(allocated < 1 << 20, "{allocated} bytes allocated");
    }
}
