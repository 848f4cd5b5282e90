//! Writing an object: a temporary file next to its target, synced, then
//! linked (create-only) or renamed (overwrite) into place, and the
//! directory synced.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::direct::{BlockWriter, DIRECT_MIN};
use super::read::is_missing;
use crate::sink::support::temp_name;
use crate::sink::PutMode;
use crate::{Error, Result};

/// Whether an io error means the device or the user's quota is full.
fn is_storage_full(error: &io::Error) -> bool {
    if error.kind() == io::ErrorKind::StorageFull {
        return true;
    }
    #[cfg(unix)]
    {
        matches!(error.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// Maps an error of a write-side operation, calling out a full disk.
pub(super) fn write_error(context: &'static str, path: &Path, source: io::Error) -> Error {
    if is_storage_full(&source) {
        Error::io("storage full while writing", path, source)
    } else {
        Error::io(context, path, source)
    }
}

/// Removes a temporary file when dropped, unless it was moved into place.
#[derive(Debug)]
pub(super) struct TempFile {
    pub(super) path: PathBuf,
    armed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: a leftover temporary file is invisible to `list`.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// Creates a uniquely named temporary file in `dir`.
pub(super) fn create_temp(dir: &Path) -> io::Result<(File, TempFile)> {
    let mut attempts = 0;
    loop {
        let path = dir.join(temp_name());
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((file, TempFile { path, armed: true })),
            // A collision of 128 random bits: only worth a few retries.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 3 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Creates the directories from `root` (which must exist) down to `dir` and
/// makes their entries durable.
fn create_parents(root: &Path, dir: &Path) -> Result<()> {
    if !root.is_dir() {
        return Err(Error::io(
            "repository directory missing (is the volume mounted?)",
            root,
            io::Error::from(io::ErrorKind::NotFound),
        ));
    }
    fs::create_dir_all(dir).map_err(|e| write_error("creating directory", dir, e))?;
    // Each new directory is an entry in its parent: sync the chain up to root.
    let mut current = dir;
    while current != root {
        let Some(parent) = current.parent() else {
            break;
        };
        sync_dir(parent).map_err(|e| write_error("syncing directory", parent, e))?;
        current = parent;
    }
    Ok(())
}

/// Writes `data` to `path` atomically and durably.
pub(super) fn put_file(
    root: &Path,
    key: &str,
    path: &Path,
    data: &[u8],
    mode: PutMode,
) -> Result<()> {
    let dir = path.parent().unwrap_or(root);
    let (mut file, mut temp) = match create_temp(dir) {
        Ok(created) => created,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create_parents(root, dir)?;
            create_temp(dir).map_err(|e| write_error("creating temporary file in", dir, e))?
        }
        Err(e) => return Err(write_error("creating temporary file in", dir, e)),
    };
    if data.len() >= DIRECT_MIN {
        let mut blocks = BlockWriter::new(&temp.path, file);
        blocks
            .append(data)
            .map_err(|e| write_error("writing object", path, e))?;
        blocks.finish_durably(path)?;
    } else {
        file.write_all(data)
            .and_then(|()| file.set_len(data.len() as u64))
            .map_err(|e| write_error("writing object", path, e))?;
        file.sync_all()
            .map_err(|e| write_error("syncing object", path, e))?;
    }

    match mode {
        PutMode::Create => {
            // link() fails if the target exists: an atomic create-only step.
            match fs::hard_link(&temp.path, path) {
                Ok(()) => {}
                // A directory there holds other keys; it is not this object.
                Err(e) if is_dir(path) => {
                    return Err(Error::io(DIRECTORY_IN_THE_WAY, path, e));
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    return Err(Error::AlreadyExists {
                        key: key.to_owned(),
                    })
                }
                Err(e) if hard_links_unsupported(&e) => {
                    return Err(Error::io(
                        "create-only put needs hard links, which this file system does not support",
                        path,
                        e,
                    ))
                }
                Err(e) => return Err(write_error("linking object into place", path, e)),
            }
            // Dropping the armed guard removes the temporary name.
            drop(temp);
        }
        PutMode::Overwrite => return rename_into_place(root, &mut temp, path),
    }
    sync_dir(dir).map_err(|e| write_error("syncing directory", dir, e))
}

/// Renames the complete, synced temporary file to `path` (creating its
/// directories below `root` when missing) and makes the entry durable.
pub(super) fn rename_into_place(root: &Path, temp: &mut TempFile, path: &Path) -> Result<()> {
    let dir = path.parent().unwrap_or(root);
    let moved = match fs::rename(&temp.path, path) {
        Err(e) if is_missing(&e) && !dir.exists() => {
            create_parents(root, dir)?;
            fs::rename(&temp.path, path)
        }
        other => other,
    };
    moved.map_err(|e| {
        if is_dir(path) {
            Error::io(DIRECTORY_IN_THE_WAY, path, e)
        } else {
            write_error("moving object into place", path, e)
        }
    })?;
    temp.armed = false;
    sync_dir(dir).map_err(|e| write_error("syncing directory", dir, e))
}

/// Context of the error for a put whose target path is a directory.
pub(super) const DIRECTORY_IN_THE_WAY: &str =
    "cannot store the object: a directory holding other keys is in the way at";

/// Whether `path` is a directory (not following a final symlink).
pub(super) fn is_dir(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|meta| meta.is_dir())
}

/// Whether a `hard_link` error means the file system has no hard links.
fn hard_links_unsupported(error: &io::Error) -> bool {
    if error.kind() == io::ErrorKind::Unsupported {
        return true;
    }
    // Linux reports EPERM for file systems without link() (FAT, exFAT); we
    // own the file and can write the directory, so it means nothing else.
    #[cfg(unix)]
    {
        matches!(error.raw_os_error(), Some(libc::EPERM | libc::EOPNOTSUPP))
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// Makes the entries of `dir` durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        match File::open(dir).and_then(|d| d.sync_all()) {
            // Some network and FUSE file systems cannot fsync a directory;
            // there is nothing more we can do there.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::InvalidInput | io::ErrorKind::Unsupported
                ) =>
            {
                Ok(())
            }
            other => other,
        }
    }
    #[cfg(not(unix))]
    {
        // Directories cannot be opened for fsync on other platforms.
        let _ = dir;
        Ok(())
    }
}
