//! Writing large objects in whole blocks, with direct I/O where the file
//! system allows it.

use std::fs::{File, OpenOptions};
use std::io;
use std::path::Path;

use super::write::write_error;
use crate::Result;

/// Objects at least this large (packs) bypass the page cache.
pub(super) const DIRECT_MIN: usize = 1024 * 1024;
/// Buffer and offset alignment of direct writes: the largest logical block
/// size of common devices.
pub(super) const DIRECT_ALIGN: usize = 4096;
/// Bytes per direct write.
pub(super) const DIRECT_BLOCK: usize = 2 * 1024 * 1024;

/// Staging buffers of direct writes, reused: as many as writes ran at once.
static DIRECT_BUFFERS: std::sync::Mutex<Vec<Vec<u8>>> = std::sync::Mutex::new(Vec::new());

/// Writes a file in whole blocks from a reused buffer, with `O_DIRECT`
/// where the file system allows: the bytes go from an aligned buffer to the
/// device instead of being copied into fresh page-cache pages, which costs
/// more CPU than the rest of the write, and a backup does not evict the
/// cache of the programs around it. The last block is padded and the file
/// cut back to its length; durability comes from the caller's `fsync`.
/// Where direct I/O is refused (tmpfs, some network and FUSE file systems)
/// the blocks go through the page cache.
pub(super) struct BlockWriter {
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
    pub(super) fn new(path: &Path, file: File) -> BlockWriter {
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
    pub(super) fn append(&mut self, mut data: &[u8]) -> io::Result<()> {
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
    pub(super) fn finish_durably(&mut self, path: &Path) -> Result<()> {
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
