//! A sink in a local directory or a mounted volume.
//!
//! Key `a/b/c` is the file `<root>/a/b/c`. Puts write a temporary file next to
//! the target, fsync it, move it into place and fsync the directory, which
//! gives the atomicity and durability the [`Sink`] contract asks for.
//!
//! The sink's own code is here; how a put writes and moves its temporary
//! file is in `write`, how reads and listings find files in `read`, and the
//! direct-I/O block writer of large objects and staged objects in `direct`.

use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::support::reject_temp_name;
use super::{validate_key, ObjectMeta, PutMode, Sink, StagedObject};
use crate::{Error, Result};

mod direct;
mod read;
mod write;

#[cfg(test)]
mod tests;

use direct::BlockWriter;
use read::{is_missing, list_files, read_error, read_file};
use write::{create_temp, is_dir, put_file, rename_into_place, sync_dir, write_error, TempFile};

/// At most this many files are read ahead for one [`Sink::prefetch`] hint:
/// a hint must not turn into minutes of reading.
const PREFETCH_LIMIT: usize = 4096;

/// A repository stored in a directory of the local file system.
///
/// Works on any file system that supports `rename`, `fsync` and hard links
/// (hard links are how create-only puts stay atomic).
///
/// # Limitations
///
/// Unlike an object store, a directory cannot hold both `a/b` and `a/b/c`:
/// putting a key whose parent path is an existing object, or a key that is
/// an existing directory, fails with [`Error::Io`]. Keys whose last segment
/// looks like one of the sink's temporary files (`.tmp-` followed by 32
/// lowercase hex digits) are rejected with [`Error::InvalidArgument`] because
/// listing would hide them.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> backup_core::Result<()> {
/// use backup_core::{LocalSink, PutMode, Sink, SinkExt};
/// let sink = LocalSink::create("/backups/repo")?;
/// sink.put("config", "hello".into(), PutMode::Create).await?;
/// assert_eq!(sink.get("config").await?, "hello");
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct LocalSink {
    root: PathBuf,
}

impl LocalSink {
    /// A sink rooted at `root`, which should exist.
    ///
    /// Does not touch the disk. Puts create directories below `root` on
    /// demand but never `root` itself: a missing root usually means an
    /// unmounted volume, and writing to the empty mount point would put the
    /// backup on the wrong disk.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// A sink rooted at `root`, creating the directory (and its parents) if
    /// absent.
    ///
    /// Blocks the calling thread for the few file system calls involved.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the directory cannot be created, or `root` exists
    /// but is not a directory.
    pub fn create(root: impl Into<PathBuf>) -> Result<Self> {
        let root = root.into();
        if !root.is_dir() {
            fs::create_dir_all(&root)
                .map_err(|source| write_error("creating repository directory", &root, source))?;
            // Make the new directory's entry durable, like the objects in it.
            if let Some(parent) = root.parent().filter(|p| !p.as_os_str().is_empty()) {
                sync_dir(parent)
                    .map_err(|source| write_error("syncing directory", parent, source))?;
            }
        }
        Ok(Self { root })
    }

    /// The directory holding the repository, as given to the constructor.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Validates `key` and returns its file path.
    fn path_of(&self, key: &str) -> Result<PathBuf> {
        validate_key(key)?;
        // Windows also reads `\` as a separator and `:` as a drive or stream
        // marker, either of which could lead outside the root.
        if cfg!(windows) && key.contains(['\\', ':']) {
            return Err(Error::InvalidArgument(format!(
                "invalid object key {key:?}: a local sink on Windows cannot store '\\' or ':'"
            )));
        }
        let mut path = self.root.clone();
        for segment in key.split('/') {
            path.push(segment);
        }
        reject_temp_name(key, "a local sink")?;
        Ok(path)
    }
}

#[async_trait]
impl Sink for LocalSink {
    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<()> {
        let path = self.path_of(key)?;
        let root = self.root.clone();
        let owned_key = key.to_owned();
        blocking("put", key, move || {
            put_file(&root, &owned_key, &path, &data, mode)
        })
        .await
    }

    async fn get_range(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        let path = self.path_of(key)?;
        let owned_key = key.to_owned();
        blocking("get", key, move || read_file(&owned_key, &path, range)).await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let path = self.path_of(key)?;
        let owned_key = key.to_owned();
        blocking("head", key, move || {
            let meta = fs::metadata(&path)
                .map_err(|e| read_error("reading metadata of", &owned_key, &path, e))?;
            // A directory is where keys below it live, not an object.
            if !meta.is_file() {
                return Err(Error::NotFound { key: owned_key });
            }
            Ok(ObjectMeta {
                key: owned_key,
                size: meta.len(),
            })
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let root = self.root.clone();
        let owned_prefix = prefix.to_owned();
        blocking("list", prefix, move || list_files(&root, &owned_prefix)).await
    }

    /// Asks the kernel to read the files under `prefix` (the first
    /// 4,096 listed) into the page cache, without waiting for
    /// the reads.
    async fn prefetch(&self, prefix: &str) {
        let sink = self.clone();
        let owned_prefix = prefix.to_owned();
        let _ = blocking("prefetch", prefix, move || {
            let paths: Vec<PathBuf> = list_files(&sink.root, &owned_prefix)?
                .iter()
                .take(PREFETCH_LIMIT)
                .filter_map(|object| sink.path_of(&object.key).ok())
                .collect();
            crate::readahead::prefetch(&paths);
            Ok(())
        })
        .await;
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path_of(key)?;
        blocking("delete", key, move || match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if is_missing(&e) => Ok(()),
            // A directory at the path means no object has this key.
            Err(_) if is_dir(&path) => Ok(()),
            Err(e) => Err(Error::io("deleting object", path, e)),
        })
        .await
    }

    fn location(&self) -> String {
        // Absolute for messages, without touching the disk.
        let root = std::path::absolute(&self.root).unwrap_or_else(|_| self.root.clone());
        format!("file://{}", root.display())
    }

    /// Two: writes go straight to the disk, which two keep busy.
    fn write_concurrency(&self) -> usize {
        2
    }

    /// A temporary file in the root, written as the bytes come (with
    /// direct I/O where the file system allows), renamed to its key on
    /// commit.
    fn stage(&self) -> Result<Option<Box<dyn StagedObject>>> {
        let (file, temp) = create_temp(&self.root)
            .map_err(|e| write_error("creating temporary file in", &self.root, e))?;
        let blocks = BlockWriter::new(&temp.path, file);
        Ok(Some(Box::new(StagedFile {
            sink: self.clone(),
            temp,
            blocks,
        })))
    }
}

/// An object being written to a temporary file (see [`Sink::stage`]).
#[derive(Debug)]
struct StagedFile {
    sink: LocalSink,
    temp: TempFile,
    blocks: BlockWriter,
}

impl StagedObject for StagedFile {
    fn append(&mut self, data: &[u8]) -> Result<()> {
        self.blocks
            .append(data)
            .map_err(|e| write_error("writing object", &self.temp.path, e))
    }

    fn commit(mut self: Box<Self>, key: &str) -> Result<()> {
        let path = self.sink.path_of(key)?;
        self.blocks.finish_durably(&path)?;
        rename_into_place(&self.sink.root, &mut self.temp, &path)
    }
}

/// Runs blocking file system work off the async runtime's worker threads.
async fn blocking<T, F>(operation: &'static str, key: &str, work: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|source| Error::Sink {
            operation,
            key: key.to_owned(),
            temporary: false,
            source: Box::new(source),
        })?
}
