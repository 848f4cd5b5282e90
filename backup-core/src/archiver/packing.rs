//! Packing: encoded chunks into packs, packs uploaded (or staged as
//! they fill) with bounded concurrency, and indexes written.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::engine::INDEX_PREFIX;
use crate::format::envelope::ObjectKind;
use crate::format::index::{IndexFile, IndexedPack};
use crate::format::pack::{self, BlobKind, PackBuilder};
use crate::sink::{PutMode, StagedObject};
use crate::{Error, Id, Result};

use super::*;

/// Buffers of finished work kept for the next: fresh memory costs a page
/// fault for each of its pages when it is first written.
pub(super) struct BufferPool {
    pub(super) buffers: Mutex<Vec<Vec<u8>>>,
    /// The most buffers kept; more are freed.
    pub(super) keep: usize,
}

impl BufferPool {
    pub(super) fn new(keep: usize) -> BufferPool {
        BufferPool {
            buffers: Mutex::new(Vec::new()),
            keep,
        }
    }

    /// A kept buffer, if there is one.
    pub(super) fn take(&self) -> Option<Vec<u8>> {
        self.buffers
            .lock()
            .ok()
            .and_then(|mut buffers| buffers.pop())
    }

    /// Keeps `buffer` for a later [`take`](Self::take), unless enough are kept.
    pub(super) fn give(&self, buffer: Vec<u8>) {
        if let Ok(mut buffers) = self.buffers.lock() {
            if buffers.len() < self.keep {
                buffers.push(buffer);
            }
        }
    }
}

/// The outcome of hashing and encoding one chunk on the CPU pool.
pub(super) enum Encoded {
    Known(Id),
    New {
        id: Id,
        stored: Vec<u8>,
        flags: u8,
        raw_length: u32,
    },
}

impl BackupWriter {
    /// Hashes a chunk and, if new, encodes it and adds it to a pack.
    pub(super) async fn store_chunk(&self, kind: BlobKind, plaintext: Vec<u8>) -> Result<Id> {
        let repo = self.repo.clone();
        let claimed = self.claimed.clone();
        let (sender, receiver) = tokio::sync::oneshot::channel();
        rayon::spawn(move || {
            let _ = sender.send(encode_chunk(&repo, &claimed, kind, &plaintext));
        });
        let encoded = receiver.await.map_err(|_| closed())?;
        self.finish_chunk(kind, encoded).await
    }

    /// Adds an encoded chunk to a pack if it is new; returns its id.
    pub(super) async fn finish_chunk(&self, kind: BlobKind, encoded: Encoded) -> Result<Id> {
        match encoded {
            Encoded::Known(id) => Ok(id),
            Encoded::New {
                id,
                stored,
                flags,
                raw_length,
            } => {
                if kind == BlobKind::Data {
                    self.stats.chunks_added.fetch_add(1, Ordering::Relaxed);
                }
                self.add_to_pack(kind, id, flags, raw_length, stored)
                    .await?;
                Ok(id)
            }
        }
    }

    pub(super) async fn add_to_pack(
        &self,
        kind: BlobKind,
        id: Id,
        flags: u8,
        raw_length: u32,
        stored: Vec<u8>,
    ) -> Result<()> {
        let pack_size = self.repo.config.pack_size as usize;
        let full = {
            let mut pack = match kind {
                BlobKind::Data => self.data_pack.lock().await,
                BlobKind::Tree => self.tree_pack.lock().await,
            };
            // A blob that would take the pack past its size goes to the next
            // pack: packs stay within one buffer of a fixed size.
            let full = if !pack.builder.is_empty() && pack.builder.len() + stored.len() > pack_size
            {
                Some(std::mem::take(&mut *pack))
            } else {
                None
            };
            if pack.builder.is_empty() {
                *pack = self.open_pack(kind, pack_size.max(stored.len())).await?;
            }
            let OpenPack { builder, stream } = &mut *pack;
            match stream {
                None => builder.add(id, kind, flags, raw_length, &stored),
                // Written as it fills, in blocks of exactly STREAM_BLOCK
                // bytes: a large blob is cut across blocks, so block
                // buffers never grow past their size.
                Some(stream) => {
                    builder.add_entry(id, kind, flags, raw_length, stored.len());
                    let mut rest = stored.as_slice();
                    while !rest.is_empty() {
                        let room = STREAM_BLOCK.saturating_sub(builder.pending()).max(1);
                        let (piece, after) = rest.split_at(room.min(rest.len()));
                        builder.append(piece);
                        rest = after;
                        if builder.pending() < STREAM_BLOCK {
                            continue;
                        }
                        let next = stream
                            .spare
                            .take()
                            .unwrap_or_else(|| Vec::with_capacity(STREAM_BLOCK));
                        let block = builder.take_pending(next);
                        if stream.blocks.send(StreamBlock::Bytes(block)).await.is_err() {
                            // The writer stopped: its outcome says why.
                            let failed = std::mem::take(&mut *pack);
                            return Err(failed.writer_error().await);
                        }
                    }
                }
            }
            full
        };
        if let Some(full) = full {
            self.upload(full).await?;
        }
        Ok(())
    }

    /// A new, empty pack for blobs of `kind` that will hold `size` bytes
    /// of blobs (the pack size, or a larger first blob): written as it
    /// fills when it is a data pack and the sink stages objects, otherwise
    /// kept whole in a buffer (sized once so it never grows by doubling,
    /// and reused for data packs: fresh memory costs a page fault per page;
    /// a tree pack fills slowly, and its untouched pages cost no memory).
    pub(super) async fn open_pack(&self, kind: BlobKind, size: usize) -> Result<OpenPack> {
        if kind == BlobKind::Data && !self.no_staging.load(Ordering::Relaxed) {
            let sink = self.repo.sink.clone();
            let staged = tokio::task::spawn_blocking(move || sink.stage())
                .await
                .map_err(|_| closed())??;
            match staged {
                Some(staged) => {
                    return Ok(OpenPack {
                        builder: PackBuilder::with_capacity(STREAM_BLOCK),
                        stream: Some(PackStream::start(staged, self.block_buffers.clone())),
                    })
                }
                None => self.no_staging.store(true, Ordering::Relaxed),
            }
        }
        let capacity = size + PACK_HEADER_ROOM;
        let reused = match kind {
            BlobKind::Data => self.pack_buffers.take(),
            BlobKind::Tree => None,
        };
        let builder = match reused {
            Some(buffer) if buffer.capacity() >= capacity => PackBuilder::with_buffer(buffer),
            _ => PackBuilder::with_capacity(capacity),
        };
        Ok(OpenPack {
            builder,
            stream: None,
        })
    }

    /// Finishes a pack and uploads it in the background (bounded).
    pub(super) async fn upload(&self, pack: OpenPack) -> Result<()> {
        let permit = self
            .upload_slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| closed())?;
        // Surface upload failures early instead of piling up more work.
        let mut uploads = self.uploads.lock().await;
        while let Some(done) = uploads.try_join_next() {
            self.on_uploaded(done).await?;
        }
        let repo = self.repo.clone();
        let OpenPack { builder, stream } = pack;
        if let Some(stream) = stream {
            uploads.spawn(async move {
                let key = repo.key().cloned();
                let (tail, blobs) = builder.finish_pending(key.as_ref());
                let outcome = stream.finish(tail).await;
                drop(permit);
                let (id, size) = outcome?;
                Ok(IndexedPack { id, size, blobs })
            });
            return Ok(());
        }
        let pool = self.pack_buffers.clone();
        uploads.spawn(async move {
            let key = repo.key().cloned();
            let (id, bytes, blobs) =
                tokio::task::spawn_blocking(move || builder.finish(key.as_ref()))
                    .await
                    .map_err(|_| closed())?;
            let size = bytes.len() as u64;
            let pack_key = pack::pack_key(&id);
            let bytes = Bytes::from(bytes);
            repo.sink
                .put(&pack_key, bytes.clone(), PutMode::Overwrite)
                .await?;
            // The buffer back for the next pack, unless the sink kept it.
            if let Ok(buffer) = bytes.try_into_mut() {
                pool.give(Vec::from(buffer));
            }
            drop(permit);
            Ok(IndexedPack { id, size, blobs })
        });
        Ok(())
    }

    pub(super) async fn on_uploaded(
        &self,
        done: Result<Result<IndexedPack>, tokio::task::JoinError>,
    ) -> Result<()> {
        let pack = done.map_err(|_| closed())??;
        self.bytes_added.fetch_add(pack.size, Ordering::Relaxed);
        let mut unindexed = self.unindexed.lock().await;
        unindexed.push(pack);
        if unindexed.len() >= INDEX_EVERY_PACKS {
            let packs = std::mem::take(&mut *unindexed);
            drop(unindexed);
            self.write_index(packs).await?;
        }
        Ok(())
    }

    pub(super) async fn write_index(&self, packs: Vec<IndexedPack>) -> Result<()> {
        if packs.is_empty() {
            return Ok(());
        }
        let file = IndexFile {
            supersedes: vec![IndexFile::uniqueness_marker()],
            packs,
        };
        let id = self
            .repo
            .put_named(INDEX_PREFIX, ObjectKind::Index, &file.encode())
            .await?;
        if let Ok(mut index) = self.repo.index.write() {
            index.add_file(id, &file);
        }
        Ok(())
    }

    /// Uploads the partly filled packs, waits for every upload and writes
    /// the last index.
    pub(super) async fn flush(&self) -> Result<()> {
        let mut first_error = None;
        for pack in [&self.data_pack, &self.tree_pack] {
            let open = std::mem::take(&mut *pack.lock().await);
            if !open.builder.is_empty() {
                if let Err(error) = self.upload(open).await {
                    first_error.get_or_insert(error);
                }
            }
        }
        loop {
            let next = self.uploads.lock().await.join_next().await;
            match next {
                Some(done) => {
                    if let Err(error) = self.on_uploaded(done).await {
                        first_error.get_or_insert(error);
                    }
                }
                None => break,
            }
        }
        let packs = std::mem::take(&mut *self.unindexed.lock().await);
        if let Err(error) = self.write_index(packs).await {
            first_error.get_or_insert(error);
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// The pack being filled: its blobs, and its writer when the pack is
/// written as it fills (handed [`STREAM_BLOCK`] bytes at a time).
#[derive(Default)]
pub(super) struct OpenPack {
    pub(super) builder: PackBuilder,
    pub(super) stream: Option<PackStream>,
}

impl OpenPack {
    /// Why the writer of this (streamed) pack stopped early.
    pub(super) async fn writer_error(self) -> Error {
        match self.stream {
            Some(stream) => match stream.writer.await {
                Ok(Err(error)) => error,
                _ => closed(),
            },
            None => closed(),
        }
    }
}

/// What a pack's writer receives.
pub(super) enum StreamBlock {
    /// More of the pack.
    Bytes(Vec<u8>),
    /// The pack's last bytes (header and trailer): hash, commit, done.
    Last(Vec<u8>),
}

/// A blocking task that appends a pack's bytes to a staged object as they
/// come, hashing them, and commits the object under the pack's id once it
/// has the last bytes. A pack abandoned before (a failed backup) is
/// discarded, never committed.
pub(super) struct PackStream {
    pub(super) blocks: tokio::sync::mpsc::Sender<StreamBlock>,
    pub(super) writer: tokio::task::JoinHandle<Result<(Id, u64)>>,
    /// Buffers of blocks written (shared by the writer's packs).
    pub(super) spare: Arc<BufferPool>,
}

impl PackStream {
    pub(super) fn start(mut staged: Box<dyn StagedObject>, spare: Arc<BufferPool>) -> PackStream {
        use sha2::{Digest, Sha256};
        let (blocks, mut receiver) = tokio::sync::mpsc::channel(STREAM_BLOCKS_QUEUED);
        let returned = spare.clone();
        let writer = tokio::task::spawn_blocking(move || {
            let mut hasher = Sha256::new();
            let mut size = 0u64;
            while let Some(block) = receiver.blocking_recv() {
                let (bytes, last) = match block {
                    StreamBlock::Bytes(bytes) => (bytes, false),
                    StreamBlock::Last(bytes) => (bytes, true),
                };
                hasher.update(&bytes);
                size += bytes.len() as u64;
                staged.append(&bytes)?;
                returned.give(bytes);
                if last {
                    let id = Id(hasher.finalize().into());
                    staged.commit(&pack::pack_key(&id))?;
                    return Ok((id, size));
                }
            }
            // Dropped unfinished: the staged object goes with it.
            Err(closed())
        });
        PackStream {
            blocks,
            writer,
            spare,
        }
    }

    /// Sends the pack's last bytes and waits for it to be stored.
    pub(super) async fn finish(self, tail: Vec<u8>) -> Result<(Id, u64)> {
        // A send fails only when the writer stopped; its outcome says why.
        let _ = self.blocks.send(StreamBlock::Last(tail)).await;
        drop(self.blocks);
        self.writer.await.map_err(|_| closed())?
    }
}

pub(super) fn closed() -> Error {
    Error::Io {
        context: "backup pipeline stopped",
        path: PathBuf::new(),
        source: std::io::Error::other("a worker task ended unexpectedly"),
    }
}
