//! Large files and byte streams: read in blocks on a blocking thread,
//! cut by the chunker, chunks encoded on the CPU pool as they come.

use std::io::Read;
use std::path::Path;
use std::sync::atomic::Ordering;

use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};

use crate::format::pack::BlobKind;
use crate::format::tree::{Node, NodeKind};
use crate::{Error, Id, Result};

use super::*;

impl BackupWriter {
    /// Streams a file larger than one maximum chunk through the chunker.
    pub(super) async fn store_large_file(
        &self,
        path: &Path,
    ) -> Result<(Vec<Id>, u64), FileFailure> {
        let _slot = self
            .file_slots
            .acquire()
            .await
            .map_err(|_| FileFailure::Fatal(closed()))?;
        self.tracker.set_current(path.display().to_string());
        let file = std::fs::File::open(path).map_err(|error| {
            FileFailure::Item(FailureKind::of_io(&error), format!("cannot open: {error}"))
        })?;
        self.store_stream(Box::new(file)).await
    }

    pub(super) async fn archive_stream(
        &self,
        name: String,
        reader: Box<dyn Read + Send>,
        mode: u32,
    ) -> Result<Option<Node>, FileFailure> {
        let (content, size) = match self.store_stream(reader).await {
            Ok(done) => done,
            Err(FileFailure::Item(_, message)) => {
                return Err(FileFailure::Fatal(Error::Snapshot {
                    source_name: name,
                    detail: message,
                }))
            }
            Err(fatal) => return Err(fatal),
        };
        self.stats.files.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_total.fetch_add(size, Ordering::Relaxed);
        self.tracker.file_done();
        let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0);
        Ok(Some(Node {
            name,
            kind: NodeKind::File,
            mode: mode & 0o7777,
            mtime_ns: now,
            size,
            uid: None,
            gid: None,
            inode: None,
            ctime_ns: None,
            content,
            subtree: None,
            target: None,
            links: None,
            dev: None,
            xattrs: Vec::new(),
        }))
    }

    /// Chunks and stores a byte stream; returns its chunk ids and length.
    pub(super) async fn store_stream(
        &self,
        reader: Box<dyn Read + Send>,
    ) -> Result<(Vec<Id>, u64), FileFailure> {
        // The reader takes each chunk's share of the memory budget before
        // handing it over, so only what is in the budget waits in the
        // channel or in flight.
        let (sender, mut receiver) = tokio::sync::mpsc::channel::<
            std::io::Result<(Vec<u8>, tokio::sync::OwnedSemaphorePermit)>,
        >(2);
        let chunker = self.repo.chunker;
        let memory = self.memory.clone();
        let windows = self.windows.clone();
        let runtime = tokio::runtime::Handle::current();
        let reading = tokio::task::spawn_blocking(move || {
            let mut chunks = chunker.chunks_in(reader, windows.take().unwrap_or_default());
            for chunk in &mut chunks {
                let item = match chunk {
                    Ok(chunk) => {
                        let wanted = Self::memory_permits(chunk.len() as u64);
                        let Ok(permit) =
                            runtime.block_on(memory.clone().acquire_many_owned(wanted))
                        else {
                            break;
                        };
                        Ok((chunk, permit))
                    }
                    Err(error) => Err(error),
                };
                let failed = item.is_err();
                if sender.blocking_send(item).is_err() || failed {
                    break;
                }
            }
            windows.give(chunks.into_window());
        });
        let mut in_flight = FuturesOrdered::new();
        let mut ids = Vec::new();
        let mut size = 0u64;
        let mut done_reading = false;
        let mut read_error = None;
        let mut fatal = None;
        // Every chunk handed to `store_chunk` is driven to completion, even
        // after a read error: a chunk claimed by this backup must end up in
        // a pack, since other files may already reference it. The chunks in
        // flight are driven while waiting for the next: their permits are
        // what the reader may be waiting for.
        loop {
            let receiving =
                !done_reading && fatal.is_none() && in_flight.len() < CHUNKS_IN_FLIGHT_PER_FILE;
            if !receiving && in_flight.is_empty() {
                break;
            }
            tokio::select! {
                received = receiver.recv(), if receiving => match received {
                    Some(Ok((chunk, permit))) => {
                        size += chunk.len() as u64;
                        self.stats
                            .bytes_read
                            .fetch_add(chunk.len() as u64, Ordering::Relaxed);
                        self.tracker.bytes_done(chunk.len() as u64);
                        in_flight.push_back(self.store_chunk(BlobKind::Data, chunk).map(
                            move |done| {
                                drop(permit);
                                done
                            },
                        ));
                    }
                    Some(Err(error)) => {
                        read_error = Some(error);
                        done_reading = true;
                    }
                    None => done_reading = true,
                },
                Some(done) = in_flight.next(), if !in_flight.is_empty() => match done {
                    Ok(id) => ids.push(id),
                    Err(error) => {
                        fatal.get_or_insert(error);
                    }
                },
            }
        }
        drop(receiver);
        let _ = reading.await;
        if let Some(error) = fatal {
            return Err(FileFailure::Fatal(error));
        }
        if let Some(error) = read_error {
            return Err(FileFailure::Item(
                FailureKind::of_io(&error),
                format!("read failed: {error}"),
            ));
        }
        Ok((ids, size))
    }
}
