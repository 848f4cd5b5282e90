//! Restoring a file on its own: its chunks fetched and decoded ahead,
//! each in a task of its own, and streamed to the file's writer.

use std::sync::Arc;

use futures::StreamExt;

use super::plan::Planned;
use super::task_failed;
use super::writer::{FileJob, SafeWriter};
use crate::engine::Engine;
use crate::format::tree::Node;
use crate::progress::Tracker;
use crate::{Error, Result};

/// Files restored at once (each in a task of its own, so that their chunks
/// are decoded on every core).
const FILES_IN_FLIGHT: usize = 4;
/// Chunks of one file fetched and decoded ahead of the one being written.
const CHUNKS_AHEAD: usize = 3;

/// Restores files one by one, a few at a time, each chunk fetched and
/// decoded in a task of its own.
pub(super) async fn restore_singles(
    repo: &Arc<Engine>,
    writer: &Arc<SafeWriter>,
    files: Vec<Planned>,
) -> Vec<(String, Result<u64>)> {
    futures::stream::iter(files)
        .map(|file| {
            let repo = repo.clone();
            let writer = writer.clone();
            let relative = file.relative.clone();
            let task =
                tokio::spawn(async move { writer.file(&repo, &file.relative, &file.node).await });
            async move {
                let outcome = task.await.unwrap_or_else(|error| Err(task_failed(error)));
                (relative, outcome)
            }
        })
        .buffer_unordered(FILES_IN_FLIGHT)
        .collect()
        .await
}

/// Writes a file's chunks, each verified, to a new file at `temporary`,
/// then renames it to `path`.
///
/// Chunks are fetched and decoded ahead, each in a task of its own; one
/// blocking task per file does all the file system work (create, write,
/// permissions, times, rename), so a small file costs one hand-off.
pub(super) async fn write_verified(
    repo: &Arc<Engine>,
    job: FileJob,
    node: &Node,
    tracker: &Tracker,
) -> Result<u64> {
    // The index knows every chunk's length: a content list that cannot add
    // up to the recorded size (a huge declared size, a missing chunk) is
    // refused before a byte is written.
    let indexed = repo.content_length(&node.content)?;
    if indexed != node.size {
        return Err(Error::corrupt(
            format!("file {:?}", node.name),
            0,
            format!(
                "its chunks hold {indexed} bytes but the recorded size is {}",
                node.size
            ),
        ));
    }
    let (sender, mut receiver) = tokio::sync::mpsc::channel::<Vec<u8>>(2);
    let writer = tokio::task::spawn_blocking(move || job.run(|| receiver.blocking_recv()));
    let mut fetched = Ok(());
    let mut chunks = futures::stream::iter(node.content.clone())
        .map(|id| {
            let repo = repo.clone();
            tokio::spawn(async move { repo.read_blob(&id).await })
        })
        .buffered(CHUNKS_AHEAD);
    while let Some(joined) = chunks.next().await {
        match joined.unwrap_or_else(|error| Err(task_failed(error))) {
            Ok(data) => {
                let length = data.len() as u64;
                if sender.send(data).await.is_err() {
                    // The writer stopped; its error says why.
                    break;
                }
                tracker.bytes_done(length);
            }
            Err(error) => {
                fetched = Err(error);
                break;
            }
        }
    }
    drop(chunks);
    drop(sender);
    let written = writer.await.unwrap_or_else(|error| Err(task_failed(error)));
    // A damaged chunk is the reason, not the short file it left.
    fetched?;
    written
}
