//! Restoring small files in batches, from one range read of a pack.

use std::sync::Arc;

use super::plan::Planned;
use super::task_failed;
use super::writer::{FileJob, SafeWriter};
use crate::engine::Engine;
use crate::format::index::Index;
use crate::format::pack::{self, BlobEntry, BlobKind};
use crate::Id;
use crate::Result;

/// Small files are restored in batches: files whose chunks lie close
/// together in one pack are fetched with one range read, then decoded and
/// written by one blocking task, so a small file costs no hand-off between
/// threads (a backup stores a directory's small files next to each other).
/// Files up to this size are batched.
const BATCH_FILE_MAX: u64 = 1024 * 1024;
/// The most pack bytes one batch reads.
const BATCH_SPAN_MAX: u64 = 4 * 1024 * 1024;
/// The most bytes between two of a batch's blobs that it reads for nothing
/// (only a partial restore leaves such gaps).
const BATCH_GAP_MAX: u64 = 256 * 1024;
/// The most files in one batch.
const BATCH_FILES_MAX: usize = 512;
/// Batches read, decoded and written at once.
pub(super) const BATCHES_IN_FLIGHT: usize = 4;

/// A small file whose chunks are all in one pack, with their entries in
/// content order.
struct BatchFile {
    file: Planned,
    blobs: Vec<BlobEntry>,
}

/// Small files restored together from one range of one pack.
pub(super) struct Batch {
    /// The pack; `None` while the batch holds only empty files.
    pack: Option<Id>,
    /// The pack range read: from the first blob's start to the last one's end.
    span: std::ops::Range<u64>,
    files: Vec<BatchFile>,
}

pub(super) enum BatchOutcome {
    /// Restored, or failed for a reason that reading again cannot change.
    Done(String, Result<u64>),
    /// To be restored alone (see [`restore_singles`](super::single::restore_singles)).
    Again(Planned),
}

/// Splits `files` into batches of small files (see [`BATCH_FILE_MAX`]) and
/// the files restored alone: large ones, and any the index cannot place
/// in a single pack with the recorded size (the single-file path reports
/// what is wrong with them).
pub(super) fn plan_batches(index: &Index, files: Vec<Planned>) -> (Vec<Batch>, Vec<Planned>) {
    let mut singles = Vec::new();
    let mut small: Vec<(Option<Id>, std::ops::Range<u64>, BatchFile)> = Vec::new();
    for file in files {
        if file.node.size > BATCH_FILE_MAX {
            singles.push(file);
            continue;
        }
        let mut pack = None;
        let mut blobs = Vec::with_capacity(file.node.content.len());
        let mut fits = true;
        for id in &file.node.content {
            match index.get(id) {
                Some(location)
                    if location.entry.kind == BlobKind::Data
                        && pack.is_none_or(|pack| pack == location.pack) =>
                {
                    pack = Some(location.pack);
                    blobs.push(location.entry);
                }
                _ => {
                    fits = false;
                    break;
                }
            }
        }
        let raw: u64 = blobs.iter().map(|blob| u64::from(blob.raw_length)).sum();
        let start = blobs.iter().map(|blob| u64::from(blob.offset)).min();
        let end = blobs.iter().map(blob_end).max();
        let extent = start.unwrap_or(0)..end.unwrap_or(0);
        if !fits || raw != file.node.size || extent.end - extent.start > BATCH_SPAN_MAX {
            singles.push(file);
            continue;
        }
        small.push((pack, extent, BatchFile { file, blobs }));
    }
    // Pack order: neighbours in a pack become neighbours in a batch.
    small.sort_by_key(|(pack, extent, _)| (*pack, extent.start));
    let mut batches: Vec<Batch> = Vec::new();
    for (pack, std::ops::Range { start, end }, file) in small {
        let joins = batches.last().is_some_and(|batch| {
            batch.files.len() < BATCH_FILES_MAX
                && match (batch.pack, pack) {
                    // Empty files (no pack) go together, before the rest.
                    (None, None) => true,
                    (None, Some(_)) | (Some(_), None) => false,
                    (Some(current), Some(pack)) => {
                        current == pack
                            && start <= batch.span.end + BATCH_GAP_MAX
                            && end.max(batch.span.end) - batch.span.start <= BATCH_SPAN_MAX
                    }
                }
        });
        match batches.last_mut() {
            Some(batch) if joins => {
                batch.span.end = batch.span.end.max(end);
                batch.files.push(file);
            }
            _ => batches.push(Batch {
                pack,
                span: start..end,
                files: vec![file],
            }),
        }
    }
    (batches, singles)
}

fn blob_end(blob: &BlobEntry) -> u64 {
    u64::from(blob.offset) + u64::from(blob.stored_length)
}

/// Reads a batch's range of its pack, then decodes and writes its files in
/// one blocking task.
pub(super) async fn restore_batch(
    repo: &Arc<Engine>,
    writer: &Arc<SafeWriter>,
    batch: Batch,
) -> Vec<BatchOutcome> {
    let again = |batch: Batch| {
        batch
            .files
            .into_iter()
            .map(|file| BatchOutcome::Again(file.file))
            .collect()
    };
    let (key, span) = match batch.pack {
        Some(pack) => {
            let key = pack::pack_key(&pack);
            match repo.sink.get_range(&key, Some(batch.span.clone())).await {
                Ok(span) if span.len() as u64 == batch.span.end - batch.span.start => (key, span),
                _ => return again(batch),
            }
        }
        None => (String::new(), bytes::Bytes::new()),
    };
    let mut outcomes = Vec::with_capacity(batch.files.len());
    let mut jobs = Vec::with_capacity(batch.files.len());
    for file in batch.files {
        match writer.place(&file.file.relative).await {
            Ok((parent, path, _)) => jobs.push((file, parent, path)),
            Err(error) => outcomes.push(BatchOutcome::Done(file.file.relative, Err(error))),
        }
    }
    let names: Vec<String> = jobs
        .iter()
        .map(|(file, _, _)| file.file.relative.clone())
        .collect();
    let repo = repo.clone();
    let tracker = writer.tracker.clone();
    let notes = writer.notes.clone();
    let start = batch.span.start;
    let task = tokio::task::spawn_blocking(move || {
        jobs.into_iter()
            .map(|(file, parent, path)| {
                let mut chunks = Vec::with_capacity(file.blobs.len());
                for blob in &file.blobs {
                    let from = (u64::from(blob.offset) - start) as usize;
                    let stored = &span[from..from + blob.stored_length as usize];
                    match pack::decode_blob(&key, blob, stored, repo.key()) {
                        Ok(chunk) => chunks.push(chunk),
                        Err(_) => return BatchOutcome::Again(file.file),
                    }
                }
                let relative = file.file.relative;
                tracker.set_current(&relative);
                let job = FileJob::new(&parent, path, &relative, &file.file.node, &notes);
                let mut chunks = chunks.into_iter();
                let outcome = job.run(|| chunks.next());
                if let Ok(bytes) = outcome {
                    tracker.bytes_done(bytes);
                }
                BatchOutcome::Done(relative, outcome)
            })
            .collect::<Vec<_>>()
    });
    match task.await {
        Ok(done) => outcomes.extend(done),
        // Only a panic ends the task early: each file is reported.
        Err(error) => {
            let reason = error.to_string();
            outcomes.extend(
                names
                    .into_iter()
                    .map(|relative| BatchOutcome::Done(relative, Err(task_failed(reason.clone())))),
            );
        }
    }
    outcomes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::index::IndexedPack;
    use crate::format::tree::{Node, NodeKind};

    fn id(n: u32) -> Id {
        Id::digest(&n.to_le_bytes())
    }

    /// A pack `pack` holding blobs `(blob, offset, stored length)`, each
    /// of raw length `stored length`.
    fn pack_of(pack: u32, blobs: &[(u32, u32, u32)]) -> IndexedPack {
        IndexedPack {
            id: id(pack),
            size: 64 << 20,
            blobs: blobs
                .iter()
                .map(|&(blob, offset, length)| BlobEntry {
                    id: id(blob),
                    kind: BlobKind::Data,
                    flags: 0,
                    offset,
                    stored_length: length,
                    raw_length: length,
                })
                .collect(),
        }
    }

    fn file(name: &str, size: u64, content: &[u32]) -> Planned {
        Planned {
            relative: name.into(),
            node: Node {
                name: name.into(),
                kind: NodeKind::File,
                mode: 0o644,
                mtime_ns: 0,
                size,
                uid: None,
                gid: None,
                inode: None,
                ctime_ns: None,
                content: content.iter().map(|&n| id(n)).collect(),
                subtree: None,
                target: None,
                links: None,
                dev: None,
                xattrs: Vec::new(),
            },
        }
    }

    fn names(batch: &Batch) -> Vec<&str> {
        batch
            .files
            .iter()
            .map(|file| file.file.relative.as_str())
            .collect()
    }

    #[test]
    fn small_files_are_batched_by_pack_and_neighbourhood() {
        let mut index = Index::default();
        const K: u32 = 1024;
        index.add_pack(&pack_of(
            1,
            &[
                (10, 0, 4 * K),
                (11, 4 * K, 4 * K),
                (12, 8 * K, 4 * K),
                // Far beyond the gap a batch reads for nothing.
                (13, 8 * 1024 * K, 4 * K),
                // A 2 MiB chunk: its file is too large for a batch.
                (14, 9 * 1024 * K, 2048 * K),
            ],
        ));
        index.add_pack(&pack_of(2, &[(20, 0, 4 * K), (21, 4 * K, 4 * K)]));
        let files = vec![
            // Listed out of pack order: batches follow the packs.
            file("c", 4096, &[12]),
            file("b-and-d", 8192, &[11, 21]),
            file("a", 4096, &[10]),
            file("e", 4096, &[20]),
            file("f", 8192, &[20, 21]),
            file("far", 4096, &[13]),
            file("big", 2 << 20, &[14]),
            file("missing", 4096, &[99]),
            file("wrong-size", 4097, &[10]),
            file("empty", 0, &[]),
            file("twice", 8192, &[10, 10]),
        ];
        let (batches, singles) = plan_batches(&index, files);
        let mut single_names: Vec<&str> = singles.iter().map(|f| f.relative.as_str()).collect();
        single_names.sort_unstable();
        // A file over two packs, a large one, one the index does not know
        // and one whose chunks do not add up to its size go alone.
        assert_eq!(single_names, ["b-and-d", "big", "missing", "wrong-size"]);
        let grouped: Vec<Vec<&str>> = batches.iter().map(names).collect();
        // Empty files need no read: they go together, in a batch of no pack.
        let empty: Vec<&Batch> = batches.iter().filter(|b| b.pack.is_none()).collect();
        assert_eq!(empty.len(), 1, "{grouped:?}");
        assert_eq!(names(empty[0]), ["empty"]);
        // Pack 1: a, twice (the same blob twice) and c read together;
        // `far` on its own.
        let pack1: Vec<&Batch> = batches.iter().filter(|b| b.pack == Some(id(1))).collect();
        assert_eq!(pack1.len(), 2, "{grouped:?}");
        let near = names(pack1[0]);
        assert_eq!(near.len(), 3, "{grouped:?}");
        for name in ["a", "twice", "c"] {
            assert!(near.contains(&name), "{grouped:?}");
        }
        assert_eq!(pack1[0].span, 0..12 * K as u64);
        assert_eq!(names(pack1[1]), ["far"]);
        assert_eq!(pack1[1].span, 8192 * K as u64..8196 * K as u64);
        let pack2: Vec<&Batch> = batches.iter().filter(|b| b.pack == Some(id(2))).collect();
        assert_eq!(pack2.len(), 1, "{grouped:?}");
        assert_eq!(pack2[0].span, 0..8 * K as u64);
        let mut in_pack2 = names(pack2[0]);
        in_pack2.sort_unstable();
        assert_eq!(in_pack2, ["e", "f"]);
    }

    #[test]
    fn a_batch_reads_at_most_its_span_and_files_limit() {
        let mut index = Index::default();
        // 1,000 blobs of 16 KiB back to back: 16,000 KiB of pack.
        let blobs: Vec<(u32, u32, u32)> = (0..1000)
            .map(|n| (100 + n, n * 16 * 1024, 16 * 1024))
            .collect();
        index.add_pack(&pack_of(1, &blobs));
        let files = (0..1000)
            .map(|n| file(&format!("f{n:04}"), 16 * 1024, &[100 + n]))
            .collect();
        let (batches, singles) = plan_batches(&index, files);
        assert!(singles.is_empty());
        let total: usize = batches.iter().map(|batch| batch.files.len()).sum();
        assert_eq!(total, 1000);
        for batch in &batches {
            assert!(batch.span.end - batch.span.start <= BATCH_SPAN_MAX);
            assert!(batch.files.len() <= BATCH_FILES_MAX);
            for file in &batch.files {
                for blob in &file.blobs {
                    assert!(u64::from(blob.offset) >= batch.span.start);
                    assert!(blob_end(blob) <= batch.span.end);
                }
            }
        }
        // 4 MiB spans: four batches for 16,000 KiB.
        assert_eq!(batches.len(), 4);
    }
}
