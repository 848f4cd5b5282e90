//! A sink in a local directory or a mounted volume.
//!
//! Key `a/b/c` is the file `<root>/a/b/c`. Puts write a temporary file next to
//! the target, fsync it, move it into place and fsync the directory, which
//! gives the atomicity and durability the [`Sink`] contract asks for.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::memory::clamp_range;
use super::{validate_key, ObjectMeta, PutMode, Sink, StagedObject};
use crate::{Error, Result};

/// Prefix of the temporary files puts write before moving them into place.
const TEMP_PREFIX: &str = ".tmp-";
/// Number of hex digits after [`TEMP_PREFIX`] in a temporary file name.
const TEMP_HEX_DIGITS: usize = 32;
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
        if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(is_temp_name)
        {
            return Err(Error::InvalidArgument(format!(
                "invalid object key {key:?}: a local sink reserves names of the form \
                 {TEMP_PREFIX}<{TEMP_HEX_DIGITS} hex digits> for its temporary files"
            )));
        }
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

/// Writes a file in whole blocks from a reused buffer, with `O_DIRECT`
/// where the file system allows: the bytes go from an aligned buffer to the
/// device instead of being copied into fresh page-cache pages, which costs
/// more CPU than the rest of the write, and a backup does not evict the
/// cache of the programs around it. The last block is padded and the file
/// cut back to its length; durability comes from the caller's `fsync`.
/// Where direct I/O is refused (tmpfs, some network and FUSE file systems)
/// the blocks go through the page cache.
struct BlockWriter {
    /// The file, opened without direct I/O.
    file: File,
    /// The same file opened with `O_DIRECT`, while it is accepted.
    direct: Option<File>,
    buffer: Vec<u8>,
    /// Where the aligned block starts in `buffer`.
    start: usize,
    /// Bytes of the block filled.
    filled: usize,
    /// File offset of the block.
    offset: u64,
}

impl std::fmt::Debug for BlockWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockWriter")
            .field("direct", &self.direct.is_some())
            .field("filled", &self.filled)
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl BlockWriter {
    /// A writer of `file`, at `path`, from its start.
    fn new(path: &Path, file: File) -> BlockWriter {
        let buffer = DIRECT_BUFFERS
            .lock()
            .ok()
            .and_then(|mut pool| pool.pop())
            .unwrap_or_else(|| vec![0; DIRECT_BLOCK + DIRECT_ALIGN]);
        let start = buffer.as_ptr().align_offset(DIRECT_ALIGN);
        BlockWriter {
            file,
            direct: open_direct(path),
            buffer,
            start,
            filled: 0,
            offset: 0,
        }
    }

    /// Copies `data` into the block, writing each block once it is full
    /// and more follows.
    fn append(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            if self.filled == DIRECT_BLOCK {
                self.write_block()?;
            }
            let take = (DIRECT_BLOCK - self.filled).min(data.len());
            let at = self.start + self.filled;
            self.buffer[at..at + take].copy_from_slice(&data[..take]);
            self.filled += take;
            data = &data[take..];
        }
        Ok(())
    }

    /// Writes the filled part of the block (a direct write padded to the
    /// alignment, which [`finish_durably`](Self::finish_durably) cuts off again).
    fn write_block(&mut self) -> io::Result<()> {
        use std::os::unix::fs::FileExt;
        let block = &mut self.buffer[self.start..self.start + DIRECT_BLOCK];
        if let Some(direct) = &self.direct {
            let padded = self.filled.next_multiple_of(DIRECT_ALIGN);
            block[self.filled..padded].fill(0);
            match direct.write_all_at(&block[..padded], self.offset) {
                Ok(()) => {
                    self.offset += self.filled as u64;
                    self.filled = 0;
                    return Ok(());
                }
                // Opened, but refused on the first write (some FUSE and
                // network file systems): the page cache from now on.
                Err(e) if self.offset == 0 && e.raw_os_error() == Some(libc::EINVAL) => {
                    self.direct = None;
                }
                Err(e) => return Err(e),
            }
        }
        self.file.write_all_at(&block[..self.filled], self.offset)?;
        self.offset += self.filled as u64;
        self.filled = 0;
        Ok(())
    }

    /// Writes what is left, cuts the file to the bytes appended and syncs
    /// it; errors name `path`, the object being written.
    fn finish_durably(&mut self, path: &Path) -> Result<()> {
        if self.filled > 0 {
            self.write_block()
                .map_err(|e| write_error("writing object", path, e))?;
        }
        self.file
            .set_len(self.offset)
            .map_err(|e| write_error("writing object", path, e))?;
        self.file
            .sync_all()
            .map_err(|e| write_error("syncing object", path, e))
    }
}

/// Opens `path` for direct writes; `None` where refused.
#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok()
}

/// Direct I/O is only used on Linux.
#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> Option<File> {
    None
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        if let Ok(mut pool) = DIRECT_BUFFERS.lock() {
            pool.push(std::mem::take(&mut self.buffer));
        }
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

/// Whether an io error means "no object here".
fn is_missing(error: &io::Error) -> bool {
    // NotADirectory: a parent path is a file, so the key cannot exist.
    matches!(
        error.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Maps an error of a read-side operation.
fn read_error(context: &'static str, key: &str, path: &Path, source: io::Error) -> Error {
    if is_missing(&source) {
        Error::NotFound {
            key: key.to_owned(),
        }
    } else {
        Error::io(context, path, source)
    }
}

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
fn write_error(context: &'static str, path: &Path, source: io::Error) -> Error {
    if is_storage_full(&source) {
        Error::io("storage full while writing", path, source)
    } else {
        Error::io(context, path, source)
    }
}

/// Whether `name` is one of our temporary file names.
fn is_temp_name(name: &str) -> bool {
    name.strip_prefix(TEMP_PREFIX).is_some_and(|rest| {
        rest.len() == TEMP_HEX_DIGITS
            && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Removes a temporary file when dropped, unless it was moved into place.
#[derive(Debug)]
struct TempFile {
    path: PathBuf,
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
fn create_temp(dir: &Path) -> io::Result<(File, TempFile)> {
    let mut attempts = 0;
    loop {
        let name = format!("{TEMP_PREFIX}{:032x}", rand::random::<u128>());
        let path = dir.join(name);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((file, TempFile { path, armed: true })),
            // A collision of 128 random bits: only worth a few retries.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 3 => attempts += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Objects at least this large (packs) bypass the page cache.
const DIRECT_MIN: usize = 1024 * 1024;
/// Buffer and offset alignment of direct writes: the largest logical block
/// size of common devices.
const DIRECT_ALIGN: usize = 4096;
/// Bytes per direct write.
const DIRECT_BLOCK: usize = 2 * 1024 * 1024;

/// Staging buffers of direct writes, reused: as many as writes ran at once.
static DIRECT_BUFFERS: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

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
fn put_file(root: &Path, key: &str, path: &Path, data: &[u8], mode: PutMode) -> Result<()> {
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
fn rename_into_place(root: &Path, temp: &mut TempFile, path: &Path) -> Result<()> {
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
const DIRECTORY_IN_THE_WAY: &str =
    "cannot store the object: a directory holding other keys is in the way at";

/// Whether `path` is a directory (not following a final symlink).
fn is_dir(path: &Path) -> bool {
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
fn sync_dir(dir: &Path) -> io::Result<()> {
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

/// Reads the whole object or `range` of it.
fn read_file(key: &str, path: &Path, range: Option<Range<u64>>) -> Result<Bytes> {
    let mut file = File::open(path).map_err(|e| read_error("opening object", key, path, e))?;
    let meta = file
        .metadata()
        .map_err(|e| read_error("reading metadata of", key, path, e))?;
    if !meta.is_file() {
        return Err(Error::NotFound {
            key: key.to_owned(),
        });
    }
    let range = match range {
        Some(range) => clamp_range(key, range, meta.len())?,
        None => 0..meta.len(),
    };
    let len = usize::try_from(range.end - range.start).map_err(|_| {
        Error::InvalidArgument(format!(
            "range of {key} is too large for this platform's memory"
        ))
    })?;
    if range.start > 0 {
        file.seek(SeekFrom::Start(range.start))
            .map_err(|e| Error::io("seeking in object", path, e))?;
    }
    let mut buffer = vec![0; len];
    file.read_exact(&mut buffer)
        .map_err(|e| Error::io("reading object", path, e))?;
    Ok(Bytes::from(buffer))
}

/// Lists the files below `root` whose keys start with `prefix`.
fn list_files(root: &Path, prefix: &str) -> Result<Vec<ObjectMeta>> {
    // Start at the deepest directory named by the prefix's whole segments.
    let (dir_key, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
    let mut start = root.to_path_buf();
    if !dir_key.is_empty() {
        for segment in dir_key.split('/') {
            // No valid key has such a segment, so nothing can match (and
            // `..` must never lead the walk outside the root).
            if segment.is_empty() || segment == "." || segment == ".." || segment.contains('\0') {
                return Ok(Vec::new());
            }
            start.push(segment);
        }
    }
    let start_key = if dir_key.is_empty() {
        String::new()
    } else {
        format!("{dir_key}/")
    };

    let mut objects = Vec::new();
    // Directories still to read, with the key prefix of their entries.
    let mut pending = vec![(start, start_key)];
    while let Some((dir, dir_key)) = pending.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Missing (or removed meanwhile, or a file): nothing below it.
            Err(e) if is_missing(&e) => continue,
            Err(e) => return Err(Error::io("listing directory", dir, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| Error::io("listing directory", &dir, e))?;
            // Names that are not UTF-8 cannot be keys we wrote.
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            let key = format!("{dir_key}{name}");
            let path = entry.path();
            let file_type = match entry.file_type() {
                Ok(file_type) => file_type,
                Err(e) if is_missing(&e) => continue,
                Err(e) => return Err(Error::io("listing directory", path, e)),
            };
            let (is_dir, is_file) = if file_type.is_symlink() {
                // Follow links, as get and put do.
                match fs::metadata(&path) {
                    Ok(meta) => (meta.is_dir(), meta.is_file()),
                    Err(e) if is_missing(&e) => continue,
                    Err(e) => return Err(Error::io("listing directory", path, e)),
                }
            } else {
                (file_type.is_dir(), file_type.is_file())
            };
            if is_dir {
                let sub_key = format!("{key}/");
                // Only descend where keys can still match the prefix.
                if sub_key.starts_with(prefix) || prefix.starts_with(&sub_key) {
                    pending.push((path, sub_key));
                }
            } else if is_file && !is_temp_name(&name) && key.starts_with(prefix) {
                let size = match fs::metadata(&path) {
                    Ok(meta) => meta.len(),
                    // Deleted since the directory was read.
                    Err(e) if is_missing(&e) => continue,
                    Err(e) => return Err(Error::io("reading metadata of", path, e)),
                };
                objects.push(ObjectMeta { key, size });
            }
        }
    }
    objects.sort_unstable_by(|a, b| a.key.cmp(&b.key));
    Ok(objects)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::sink::SinkExt;

    #[test]
    fn storage_full_is_called_out() {
        let error = write_error(
            "writing object",
            Path::new("/repo/x"),
            io::Error::from_raw_os_error(28),
        );
        assert!(
            matches!(error, Error::Io { context, .. } if context == "storage full while writing"),
            "{error:?}"
        );
        let error = write_error(
            "writing object",
            Path::new("/repo/x"),
            io::Error::from(io::ErrorKind::PermissionDenied),
        );
        assert!(matches!(
            error,
            Error::Io {
                context: "writing object",
                ..
            }
        ));
    }

    #[test]
    fn temp_names() {
        assert!(is_temp_name(".tmp-0123456789abcdef0123456789abcdef"));
        assert!(!is_temp_name(".tmp-0123456789abcdef0123456789abcde"));
        assert!(!is_temp_name(".tmp-0123456789ABCDEF0123456789abcdef"));
        assert!(!is_temp_name(".tmp-notes"));
        assert!(!is_temp_name("data"));
    }

    /// Every file and directory below `dir`, relative, with `/` separators.
    fn walk(dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        let mut pending = vec![(dir.to_path_buf(), String::new())];
        while let Some((dir, prefix)) = pending.pop() {
            for entry in fs::read_dir(&dir).unwrap() {
                let entry = entry.unwrap();
                let name = format!("{prefix}{}", entry.file_name().to_string_lossy());
                if entry.file_type().unwrap().is_dir() {
                    pending.push((entry.path(), format!("{name}/")));
                }
                found.push(name);
            }
        }
        found.sort();
        found
    }

    #[tokio::test]
    async fn new_does_not_touch_disk_and_create_does() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("a").join("repo");
        let sink = LocalSink::new(&root);
        assert!(!root.exists());
        assert_eq!(sink.root(), root);
        // A missing root lists as empty but is not created by a put.
        assert!(sink.list("").await.unwrap().is_empty());
        let error = sink
            .put("k", "v".into(), PutMode::Overwrite)
            .await
            .unwrap_err();
        assert!(matches!(error, Error::Io { .. }), "{error:?}");
        assert!(!root.exists());

        let sink = LocalSink::create(&root).unwrap();
        assert!(root.is_dir());
        sink.put("k", "v".into(), PutMode::Overwrite).await.unwrap();
        // Creating again over an existing repository is fine.
        let again = LocalSink::create(&root).unwrap();
        assert_eq!(again.get("k").await.unwrap(), "v");
        assert_eq!(sink.location(), format!("file://{}", root.display()));

        // A root that is a file is refused.
        let file = tmp.path().join("file");
        fs::write(&file, "x").unwrap();
        assert!(LocalSink::create(&file).is_err());
    }

    #[tokio::test]
    async fn prefetch_is_a_hint_that_changes_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        // A root that does not exist: nothing to read ahead, nothing made.
        let missing = LocalSink::new(tmp.path().join("missing"));
        missing.prefetch("index/").await;
        assert!(!tmp.path().join("missing").exists());

        let sink = LocalSink::create(tmp.path().join("repo")).unwrap();
        for key in ["index/a", "index/b", "manifests/c", "data/0f/d"] {
            sink.put(key, key.as_bytes().to_vec().into(), PutMode::Create)
                .await
                .unwrap();
        }
        let before = walk(sink.root());
        for prefix in [
            "index/",
            "manifests/",
            "data/",
            "",
            "nothing/",
            "../",
            "index/a",
        ] {
            sink.prefetch(prefix).await;
        }
        assert_eq!(walk(sink.root()), before);
        for key in ["index/a", "index/b", "manifests/c", "data/0f/d"] {
            assert_eq!(sink.get(key).await.unwrap(), key.as_bytes());
        }
    }

    /// A directory on the disk, and one on tmpfs where there is one (which
    /// may refuse `O_DIRECT`: the buffered fallback).
    fn disk_and_tmpfs() -> Vec<tempfile::TempDir> {
        let mut roots = vec![tempfile::tempdir().unwrap()];
        if Path::new("/dev/shm").is_dir() {
            roots.push(tempfile::tempdir_in("/dev/shm").unwrap());
        }
        roots
    }

    #[tokio::test]
    async fn large_objects_written_directly_read_back_exactly() {
        for tmp in &disk_and_tmpfs() {
            write_and_read_large_objects(tmp.path()).await;
        }
    }

    async fn write_and_read_large_objects(root: &Path) {
        let sink = LocalSink::create(root).unwrap();
        // Around the direct-write threshold, whole and partial blocks, and
        // an overwrite of a longer object by a shorter one.
        let sizes = [
            DIRECT_MIN - 1,
            DIRECT_MIN,
            DIRECT_MIN + 1,
            DIRECT_BLOCK * 2,
            DIRECT_BLOCK * 2 + 4095,
            DIRECT_BLOCK + DIRECT_ALIGN + 7,
        ];
        for (index, size) in sizes.into_iter().enumerate() {
            let data: Vec<u8> = (0..size).map(|i| (i * 31 + index) as u8).collect();
            sink.put("p/object", Bytes::from(data.clone()), PutMode::Overwrite)
                .await
                .unwrap();
            let back = sink.get("p/object").await.unwrap();
            assert_eq!(back.len(), size);
            assert!(back == data, "content of the {size}-byte object differs");
            let path = root.join("p/object");
            assert_eq!(std::fs::metadata(&path).unwrap().len(), size as u64);
        }
    }

    #[tokio::test]
    async fn staged_objects_are_whole_on_commit_and_nothing_when_dropped() {
        for tmp in &disk_and_tmpfs() {
            let root = tmp.path();
            let sink = LocalSink::create(root).unwrap();
            // Pieces that end inside a block, exactly on one, and span
            // several; a shorter object then replaces a longer one.
            let plans: [&[usize]; 4] = [
                &[],
                &[7],
                &[
                    DIRECT_BLOCK - 1,
                    1,
                    DIRECT_BLOCK,
                    3 * DIRECT_BLOCK + 5,
                    4096,
                ],
                &[DIRECT_BLOCK + DIRECT_ALIGN + 7],
            ];
            for (index, pieces) in plans.into_iter().enumerate() {
                let mut staged = sink.stage().unwrap().unwrap();
                let mut expected = Vec::new();
                for (number, &size) in pieces.iter().enumerate() {
                    let piece: Vec<u8> =
                        (0..size).map(|i| (i * 7 + number + index) as u8).collect();
                    staged.append(&piece).unwrap();
                    expected.extend_from_slice(&piece);
                }
                // Invisible until committed: the listing shows the
                // previous object only.
                let before = sink.list("").await.unwrap();
                assert_eq!(before.len(), usize::from(index > 0), "{before:?}");
                staged.commit("data/ab/object").unwrap();
                let back = sink.get("data/ab/object").await.unwrap();
                assert_eq!(back.len(), expected.len());
                assert!(back == expected, "staged object {index} differs");
                let listed = sink.list("").await.unwrap();
                assert_eq!(listed.len(), 1, "{listed:?}");
                assert_eq!(listed[0].size, expected.len() as u64);
            }
            // Dropped uncommitted: no object, no temporary file.
            let mut staged = sink.stage().unwrap().unwrap();
            staged.append(&vec![1u8; DIRECT_BLOCK + 1]).unwrap();
            drop(staged);
            let names: Vec<String> = std::fs::read_dir(root)
                .unwrap()
                .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            assert_eq!(names, ["data"], "{}", root.display());
            // A key a local sink cannot store is refused at commit.
            let staged = sink.stage().unwrap().unwrap();
            assert!(staged.commit("../escape").is_err());
            assert!(!root.parent().unwrap().join("escape").exists());
        }
    }

    #[tokio::test]
    async fn puts_leave_no_temporary_files() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = LocalSink::create(tmp.path()).unwrap();
        let puts = (0..16).map(|i| {
            let sink = &sink;
            async move {
                let key = format!("d/{}", i % 4);
                sink.put(
                    &key,
                    Bytes::from(vec![i as u8; 1000 + i]),
                    PutMode::Overwrite,
                )
                .await
                .unwrap();
                // Create-only puts that win and lose, which remove their
                // temporary files on both paths.
                let _ = sink
                    .put(&format!("c/{}", i % 2), "x".into(), PutMode::Create)
                    .await;
                // Listing while others write never shows temporary files.
                for object in sink.list("").await.unwrap() {
                    assert!(!object.key.contains(TEMP_PREFIX), "{object:?}");
                }
            }
        });
        futures::future::join_all(puts).await;
        assert_eq!(
            walk(tmp.path()),
            ["c", "c/0", "c/1", "d", "d/0", "d/1", "d/2", "d/3"]
        );

        // A temporary file left by a crash stays hidden.
        let stray = tmp
            .path()
            .join("d")
            .join(format!("{TEMP_PREFIX}{:032x}", 7));
        fs::write(&stray, "partial").unwrap();
        let keys: Vec<_> = sink
            .list("d/")
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.key)
            .collect();
        assert_eq!(keys, ["d/0", "d/1", "d/2", "d/3"]);
        // Keys that would be hidden like it are refused.
        let hidden = format!("d/{TEMP_PREFIX}{:032x}", 8);
        let error = sink
            .put(&hidden, "x".into(), PutMode::Overwrite)
            .await
            .unwrap_err();
        assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
        // Similar names that are not temporary names are ordinary keys.
        sink.put("d/.tmp-notes", "x".into(), PutMode::Overwrite)
            .await
            .unwrap();
        assert_eq!(sink.list("d/.tmp").await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn file_in_the_way_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let sink = LocalSink::create(tmp.path()).unwrap();
        sink.put("a", "file".into(), PutMode::Overwrite)
            .await
            .unwrap();
        for mode in [PutMode::Overwrite, PutMode::Create] {
            for key in ["a/b", "a/b/c"] {
                let error = sink.put(key, "x".into(), mode).await.unwrap_err();
                assert!(matches!(error, Error::Io { .. }), "{key}: {error:?}");
            }
        }
        // Keys below an object do not exist.
        assert!(matches!(sink.get("a/b").await, Err(Error::NotFound { .. })));
        assert!(matches!(
            sink.head("a/b").await,
            Err(Error::NotFound { .. })
        ));
        sink.delete("a/b").await.unwrap();
        assert_eq!(sink.get("a").await.unwrap(), "file");

        // A directory where the object should go.
        sink.put("d/x", "x".into(), PutMode::Overwrite)
            .await
            .unwrap();
        for mode in [PutMode::Overwrite, PutMode::Create] {
            let error = sink.put("d", "x".into(), mode).await.unwrap_err();
            assert!(
                matches!(
                    error,
                    Error::Io {
                        context: DIRECTORY_IN_THE_WAY,
                        ..
                    }
                ),
                "{error:?}"
            );
        }
        assert!(matches!(sink.get("d").await, Err(Error::NotFound { .. })));
        assert!(matches!(sink.head("d").await, Err(Error::NotFound { .. })));
        sink.delete("d").await.unwrap();
        assert_eq!(sink.get("d/x").await.unwrap(), "x");
        // The failed puts cleaned up their temporary files.
        assert_eq!(walk(tmp.path()), ["a", "d", "d/x"]);
    }

    #[tokio::test]
    async fn keys_stay_inside_the_root() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("repo");
        let sink = LocalSink::create(&root).unwrap();
        for key in ["../x", "a/../../x", "/x", "./x"] {
            assert!(sink.put(key, "x".into(), PutMode::Overwrite).await.is_err());
        }
        assert!(sink.list("../").await.unwrap().is_empty());
        assert_eq!(walk(tmp.path()), ["repo"]);
    }
}
