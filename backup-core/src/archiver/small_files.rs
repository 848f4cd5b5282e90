//! Small files: read whole (from the page cache on the CPU pool when
//! they are cached, on a blocking thread otherwise), chunked and encoded.

use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use crate::engine::Engine;
use crate::format::pack::{self, BlobKind};
use crate::readahead::{self, Cached};
use crate::{Id, Result};

use super::*;

/// Hashes a chunk and, unless it is stored or claimed already, claims and
/// encodes it (on the CPU pool).
pub(super) fn encode_chunk(
    repo: &Engine,
    claimed: &Mutex<HashSet<Id>>,
    kind: BlobKind,
    plaintext: &[u8],
) -> Encoded {
    let id = repo.chunk_id(plaintext);
    let is_new =
        !repo.index_contains(&id) && claimed.lock().map(|mut set| set.insert(id)).unwrap_or(true);
    if is_new {
        let level = repo.config.compression_level;
        let (stored, flags) = pack::encode_blob(&id, kind, plaintext, repo.key(), level);
        Encoded::New {
            id,
            stored,
            flags,
            raw_length: u32::try_from(plaintext.len()).unwrap_or(u32::MAX),
        }
    } else {
        Encoded::Known(id)
    }
}

/// Reads a whole file of about `size` bytes (its size when it was listed):
/// `std::fs::read` would ask the file system for the size once more.
pub(super) fn read_whole(path: &Path, size: u64) -> std::io::Result<Vec<u8>> {
    let mut file = std::fs::File::open(path)?;
    let mut data = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    file.read_to_end(&mut data)?;
    Ok(data)
}

/// A file read whole and encoded on the CPU pool
/// ([`BackupWriter::store_small_file`]).
pub(super) struct SmallFile {
    pub(super) repo: Arc<Engine>,
    pub(super) claimed: Arc<Mutex<HashSet<Id>>>,
    pub(super) path: PathBuf,
    /// Its size when it was listed.
    pub(super) size: u64,
    pub(super) sender: tokio::sync::oneshot::Sender<std::io::Result<(u64, Vec<Encoded>)>>,
}

impl SmallFile {
    /// Chunks, hashes and encodes the file's bytes (on the CPU pool).
    pub(super) fn encode(self, data: Vec<u8>) {
        let encoded: Vec<Encoded> = self
            .repo
            .chunker
            .split(&data)
            .into_iter()
            .map(|chunk| encode_chunk(&self.repo, &self.claimed, BlobKind::Data, chunk))
            .collect();
        let _ = self.sender.send(Ok((data.len() as u64, encoded)));
    }

    pub(super) fn fail(self, error: std::io::Error) {
        let _ = self.sender.send(Err(error));
    }

    /// Reads the file on a blocking thread, which hands the bytes to the
    /// CPU pool.
    pub(super) fn read_blocking(self, runtime: &tokio::runtime::Handle) {
        drop(
            runtime.spawn_blocking(move || match read_whole(&self.path, self.size) {
                Ok(data) => rayon::spawn(move || self.encode(data)),
                Err(error) => self.fail(error),
            }),
        );
    }
}

impl BackupWriter {
    /// Reads a small file whole, then chunks, hashes and encodes it in one
    /// task on the CPU pool; stores the new chunks.
    pub(super) async fn store_small_file(
        &self,
        path: &Path,
        size: u64,
    ) -> Result<(Vec<Id>, u64), FileFailure> {
        // Up to a maximum-size chunk is read at once: small files share many
        // slots, larger ones the few slots of streamed files.
        let slots = if size <= SMALL_FILE {
            &self.small_file_slots
        } else {
            &self.file_slots
        };
        let _slot = slots
            .acquire()
            .await
            .map_err(|_| FileFailure::Fatal(closed()))?;
        // Held until the file's new chunks are in a pack.
        let _memory = self
            .memory
            .acquire_many(Self::memory_permits(size))
            .await
            .map_err(|_| FileFailure::Fatal(closed()))?;
        let repo = self.repo.clone();
        let claimed = self.claimed.clone();
        let path_owned = path.to_path_buf();
        // The CPU pool reads the file itself when its bytes are in the page
        // cache (the walk asked for them to be read ahead, see
        // [`readahead`]): one thread wake-up for the whole file. Otherwise
        // the read waits on the disk in the blocking pool, which has many
        // threads (a cold cache needs many reads outstanding), and the
        // thread that read the file hands the bytes to the CPU pool itself:
        // this task wakes once, when the chunks are encoded. (Encoding in
        // the blocking pool too costs more: one zstd context per thread,
        // and more threads competing for the cores.)
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let job = SmallFile {
            repo,
            claimed,
            path: path_owned,
            size,
            sender,
        };
        let runtime = tokio::runtime::Handle::current();
        if self.cached_reads.load(Ordering::Relaxed) {
            let cached_reads = self.cached_reads.clone();
            rayon::spawn(move || match readahead::read_cached(&job.path, job.size) {
                Ok(Cached::Read(data)) => job.encode(data),
                Ok(Cached::WouldWait) => job.read_blocking(&runtime),
                Ok(Cached::Unsupported) => {
                    cached_reads.store(false, Ordering::Relaxed);
                    job.read_blocking(&runtime);
                }
                Err(error) => job.fail(error),
            });
        } else {
            job.read_blocking(&runtime);
        }
        let (size, encoded) = receiver
            .await
            .map_err(|_| FileFailure::Fatal(closed()))?
            .map_err(|error| {
                FileFailure::Item(FailureKind::of_io(&error), format!("read failed: {error}"))
            })?;
        self.stats.bytes_read.fetch_add(size, Ordering::Relaxed);
        self.tracker.bytes_done(size);
        let mut ids = Vec::with_capacity(encoded.len());
        for chunk in encoded {
            ids.push(self.finish_chunk(BlobKind::Data, chunk).await?);
        }
        Ok((ids, size))
    }
}
