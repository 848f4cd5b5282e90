//! Loading the in-memory index: index objects, packs no index names yet,
//! and the packs a prune marked for deletion.

use std::collections::HashSet;

use futures::{StreamExt, TryStreamExt};

use crate::engine::*;
use crate::format::envelope::{self, ObjectKind};
use crate::format::index::{Index, IndexFile, IndexedPack};
use crate::format::pack::{self};
use crate::{Error, Id, Result};

impl Engine {
    /// Indexes packs that are stored but in no index, reading only their
    /// headers: such packs are left by a backup that was killed before it
    /// wrote its index, and indexing them lets the next backup reuse them.
    /// A pack whose header is damaged is skipped (verify reports it).
    ///
    /// Returns the number of packs indexed.
    pub(crate) async fn index_unindexed_packs(&self) -> Result<usize> {
        let stored = list_packs(self.sink.as_ref()).await?;
        // Packs a prune marked for deletion must not come back into use.
        let (marks, unreadable) = crate::engine::marks::list_marks(self).await?;
        if !unreadable.is_empty() {
            // Without knowing what those marks doom, indexing orphan packs
            // could bring doomed data back into use.
            tracing::warn!(
                marks = unreadable.len(),
                "unreadable deletion marks: packs of interrupted backups are not reused"
            );
            return Ok(0);
        }
        let doomed: HashSet<Id> = marks.into_iter().flat_map(|(_, mark)| mark.packs).collect();
        let orphans: Vec<(Id, u64)> = {
            let index = self.index.read().map_err(|_| poisoned())?;
            stored
                .into_iter()
                .filter(|(id, _)| !index.is_listed(id) && !doomed.contains(id))
                .collect()
        };
        if orphans.is_empty() {
            return Ok(0);
        }
        let recovered = self.read_pack_headers(orphans).await;
        let count = recovered.len();
        for packs in recovered.chunks(256) {
            let file = IndexFile {
                supersedes: vec![IndexFile::uniqueness_marker()],
                packs: packs.to_vec(),
            };
            let id = self
                .put_named(INDEX_PREFIX, ObjectKind::Index, &file.encode())
                .await?;
            self.index
                .write()
                .map_err(|_| poisoned())?
                .add_file(id, &file);
        }
        if count > 0 {
            tracing::info!(packs = count, "indexed packs left by an interrupted backup");
        }
        Ok(count)
    }

    /// Reads the headers of `packs` (id, size), concurrently; a pack whose
    /// header cannot be read is skipped with a warning (verify reports it).
    pub(crate) async fn read_pack_headers(&self, packs: Vec<(Id, u64)>) -> Vec<IndexedPack> {
        futures::stream::iter(packs)
            .map(|(id, size)| async move {
                match self.read_pack_header(&id, size).await {
                    Ok(blobs) => Some(IndexedPack { id, size, blobs }),
                    Err(error) => {
                        tracing::warn!(%error, "pack in no index skipped");
                        None
                    }
                }
            })
            .buffer_unordered(METADATA_CONCURRENCY)
            .filter_map(|pack| async move { pack })
            .collect()
            .await
    }

    /// Reads a pack's header with two ranged reads (trailer, then header).
    pub(crate) async fn read_pack_header(
        &self,
        id: &Id,
        size: u64,
    ) -> Result<Vec<crate::format::pack::BlobEntry>> {
        let key = pack::pack_key(id);
        let trailer_len = pack::PACK_TRAILER_LEN as u64;
        let tail = self
            .sink
            .get_range(&key, Some(size.saturating_sub(trailer_len)..size))
            .await?;
        let header_length = u64::from(pack::read_trailer(&key, size, &tail)?);
        let header_start = size - trailer_len - header_length;
        let header = self
            .sink
            .get_range(&key, Some(header_start..size - trailer_len))
            .await?;
        pack::decode_header(&key, &header, header_start, self.key())
    }

    /// Loads the union of the index objects, skipping (with a warning) any
    /// that is damaged: its chunks are then stored again by the next backup,
    /// its packs re-indexed from their headers, and `verify` names it.
    pub(crate) async fn load_index(&self) -> Result<Index> {
        self.load_index_checked(false).await
    }

    /// Loads the index; with `strict`, a damaged index object is an error
    /// (prune must never decide what is unused on partial knowledge).
    pub(crate) async fn load_index_checked(&self, strict: bool) -> Result<Index> {
        // A prune may delete superseded index objects between our list and
        // our reads; their replacements exist by then, so list again.
        let mut attempt = 0;
        let damaged = std::sync::atomic::AtomicUsize::new(0);
        let damaged = &damaged;
        let files: Vec<(Id, IndexFile)> = loop {
            let ids = list_ids(self.sink.as_ref(), INDEX_PREFIX).await?;
            match self.read_index_files(ids, strict, damaged).await {
                Err(Error::NotFound { .. }) if attempt < INDEX_LOAD_ATTEMPTS => attempt += 1,
                other => break other?,
            }
        };
        let superseded: HashSet<Id> = files
            .iter()
            .flat_map(|(_, file)| file.supersedes.iter().copied())
            .collect();
        let mut index = Index::default();
        let (doomed, marks_unreadable) = self.doomed_packs().await?;
        index.set_doomed(doomed);
        let live: Vec<&(Id, IndexFile)> = files
            .iter()
            .filter(|(id, _)| !superseded.contains(id))
            .collect();
        let packs = live.iter().flat_map(|(_, file)| &file.packs);
        index.reserve(
            packs.clone().map(|pack| pack.blobs.len()).sum(),
            packs.count(),
        );
        for (id, file) in live {
            index.add_file(*id, file);
        }
        // A damaged mark may have named any pack that is in no index; prune
        // (strict) deletes such marks and decides on the packs anew.
        let index_damaged = damaged.load(std::sync::atomic::Ordering::Relaxed) > 0;
        self.add_unlisted_packs(&mut index, index_damaged, marks_unreadable && !strict)
            .await?;
        Ok(index)
    }

    /// Adds to `index` what readers read beyond the index objects (FORMAT.md,
    /// "Reading a repository", step 3): the doomed packs (`index.doomed()`)
    /// that no index object lists, from their own headers; and, after a
    /// damaged index object or deletion mark, every stored pack that no
    /// index object lists.
    pub(crate) async fn add_unlisted_packs(
        &self,
        index: &mut Index,
        index_damaged: bool,
        marks_unreadable: bool,
    ) -> Result<()> {
        // Doomed packs are in no index once prune has marked them, yet a
        // backup that started before the mark may have finished referencing
        // them: keep them readable (never deduplicated against) until prune
        // either deletes them or puts them back.
        let doomed: Vec<Id> = index.doomed().iter().copied().collect();
        for pack_id in doomed {
            if index.packs().contains_key(&pack_id) {
                continue;
            }
            let key = pack::pack_key(&pack_id);
            let Ok(meta) = self.sink.head(&key).await else {
                continue;
            };
            match self.read_pack_header(&pack_id, meta.size).await {
                Ok(blobs) => index.add_pack(&IndexedPack {
                    id: pack_id,
                    size: meta.size,
                    blobs,
                }),
                Err(error) => tracing::warn!(%error, "pack marked for deletion is unreadable"),
            }
        }
        if index_damaged || marks_unreadable {
            // What a damaged index listed is still in its packs, and what a
            // damaged mark named is in packs in no index: read their
            // headers, so that no chunk a backup references becomes
            // unreadable. After a damaged index these packs count as
            // unlisted (the next backup writes an index for them); after a
            // damaged mark they are doomed (readable, never deduplicated
            // against, not indexed again).
            let stored = list_packs(self.sink.as_ref()).await?;
            let orphans: Vec<(Id, u64)> = stored
                .into_iter()
                .filter(|(id, _)| !index.packs().contains_key(id))
                .collect();
            if marks_unreadable {
                let mut doomed = index.doomed().clone();
                doomed.extend(orphans.iter().map(|(id, _)| *id));
                index.set_doomed(doomed);
            }
            let recovered = self.read_pack_headers(orphans).await;
            for pack in &recovered {
                index.add_pack(pack);
            }
            tracing::info!(
                packs = recovered.len(),
                "packs read from their headers in place of a damaged index or deletion mark"
            );
        }
        Ok(())
    }

    /// Reads and decodes the index objects `ids`, concurrently. Unless
    /// `strict`, a damaged one is skipped with a warning and counted in
    /// `damaged`.
    async fn read_index_files(
        &self,
        ids: Vec<Id>,
        strict: bool,
        damaged: &std::sync::atomic::AtomicUsize,
    ) -> Result<Vec<(Id, IndexFile)>> {
        let loaded: Vec<Option<(Id, IndexFile)>> = futures::stream::iter(ids)
            .map(|id| async move {
                let key = format!("{INDEX_PREFIX}{id}");
                // Decrypting and decoding a large index object takes
                // milliseconds of CPU: on blocking threads, several objects
                // are checked and decoded at once instead of one after
                // another on the thread polling this stream.
                let master = self.key().cloned();
                let decoded = self
                    .get_named_decoded(key, id, move |key, bytes| {
                        let payload =
                            envelope::open_named(key, bytes, ObjectKind::Index, master.as_ref())?;
                        IndexFile::decode(key, &payload)
                    })
                    .await;
                match decoded {
                    Ok(file) => Ok(Some((id, file))),
                    Err(error @ Error::Corrupt { .. }) if !strict => {
                        tracing::warn!(%error, "damaged index object skipped (run verify)");
                        damaged.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        Ok(None)
                    }
                    Err(error) => Err(error),
                }
            })
            .buffer_unordered(METADATA_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(loaded.into_iter().flatten().collect())
    }

    /// Brings the in-memory index up to date with the stored one, reading
    /// only the index objects written since it was loaded (by this process
    /// or another). Loads it whole when anything else changed: an index
    /// object it holds is gone or superseded (a prune rewrote the index), a
    /// deletion mark came or went, or a new index object cannot be read.
    pub(crate) async fn refresh_index(&self) -> Result<()> {
        let stored: HashSet<Id> = list_ids(self.sink.as_ref(), INDEX_PREFIX)
            .await?
            .into_iter()
            .collect();
        let (doomed, marks_unreadable) = self.doomed_packs().await?;
        let new: Option<Vec<Id>> = {
            let index = self.index.read().map_err(|_| poisoned())?;
            (!marks_unreadable && index.files().is_subset(&stored) && index.doomed() == &doomed)
                .then(|| stored.difference(index.files()).copied().collect())
        };
        if let Some(new) = new {
            let none_damaged = std::sync::atomic::AtomicUsize::new(0);
            if let Ok(files) = self.read_index_files(new, true, &none_damaged).await {
                let mut index = self.index.write().map_err(|_| poisoned())?;
                let supersedes_any = files.iter().any(|(_, file)| {
                    file.supersedes.iter().any(|old| {
                        index.files().contains(old) || files.iter().any(|(id, _)| id == old)
                    })
                });
                if !supersedes_any {
                    for (id, file) in &files {
                        index.add_file(*id, file);
                    }
                    return Ok(());
                }
            }
        }
        let index = self.load_index().await?;
        *self.index.write().map_err(|_| poisoned())? = index;
        Ok(())
    }

    /// Packs named in deletion marks, and whether any mark could not be
    /// read. An unreadable mark is reported with a warning: readers then
    /// take every pack in no index as doomed (see `load_index_checked`),
    /// and prune removes the mark.
    pub(crate) async fn doomed_packs(&self) -> Result<(HashSet<Id>, bool)> {
        let (marks, unreadable) = crate::engine::marks::list_marks(self).await?;
        for key in &unreadable {
            tracing::warn!(%key, "unreadable deletion mark: packs in no index are read as doomed");
        }
        Ok((
            marks.into_iter().flat_map(|(_, mark)| mark.packs).collect(),
            !unreadable.is_empty(),
        ))
    }
}
