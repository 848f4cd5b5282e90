//! The repository: a config, keys, packs, indexes and manifests in a sink.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use sha2::{Digest, Sha256};

use crate::archiver::{Archiver, ChunkArchiver};
use crate::chunker::Chunker;
use crate::config::{KeyFile, RepoConfig, CONFIG_KEY, KEYS_PREFIX};
use crate::crypto::{KdfParams, MasterKey};
use crate::format::envelope::{self, ObjectKind};
use crate::index::{Index, IndexFile, IndexedPack};
use crate::inflight::InflightGuard;
use crate::manifest::{BackupStatus, Manifest, MANIFEST_VERSION};
use crate::pack::{self, BlobKind};
use crate::progress::{Phase, ProgressSink, Reporter, Tracker};
use crate::restore::{RestoreOptions, RestoreSummary};
use crate::retention::{Decision, RetentionPolicy};
use crate::sink::{PutMode, Sink, SinkExt};
use crate::snapshot::Snapshotter;
use crate::tree::{self, Node, NodeKind};
use crate::verify::{VerifyOptions, VerifyReport};
use crate::{Error, Id, Result};

/// Prefix of index objects.
pub const INDEX_PREFIX: &str = "index/";
/// Prefix of manifests.
pub const MANIFEST_PREFIX: &str = "manifests/";
/// Prefix of packs.
pub const DATA_PREFIX: &str = "data/";

/// How many times an object that fails its check is read again before the
/// damage is reported: a broken transfer must not pass for broken storage.
const REREADS: u32 = 3;

/// How often the index is listed again when an index object vanished
/// between listing and reading (a concurrent prune replaced it).
const INDEX_LOAD_ATTEMPTS: u32 = 5;

/// How many metadata objects are fetched at once.
const METADATA_CONCURRENCY: usize = 16;

/// State shared by every operation on an open repository.
#[derive(Debug)]
pub(crate) struct RepoShared {
    pub(crate) sink: Arc<dyn Sink>,
    pub(crate) config: RepoConfig,
    pub(crate) key: Option<MasterKey>,
    pub(crate) index: RwLock<Index>,
    pub(crate) chunker: Chunker,
    pub(crate) tree_chunker: Chunker,
    /// Pack ranges read lately for small blobs.
    pub(crate) windows: ReadWindows,
}

/// Small blobs are read with the range of their pack around them: restoring
/// many small files reads blobs that a backup stored near each other (a
/// backup walks sibling directories at once, so a directory's files are
/// spread over a few MiB of a pack), and one read costs far less than a
/// read and a hand-off to a blocking thread per blob. Measured on the
/// benchmark's mixed tree: 256 KiB windows, 64 kept, restore 15% faster
/// than without; 4 MiB windows, 8 kept, twice as slow (ranges read again
/// and again).
const READ_WINDOW: u64 = 256 * 1024;
/// Windows kept: their memory is `READ_WINDOWS * READ_WINDOW` (16 MiB).
const READ_WINDOWS: usize = 64;
/// Blobs up to this size are read through a window.
const WINDOW_BLOB_MAX: u64 = 64 * 1024;

/// One range of a pack, read once by whichever reader needs it first.
#[derive(Debug)]
struct ReadWindow {
    key: String,
    start: u64,
    bytes: tokio::sync::OnceCell<Bytes>,
}

/// The most recently used pack ranges (see [`READ_WINDOW`]).
#[derive(Debug, Default)]
pub(crate) struct ReadWindows {
    recent: Mutex<std::collections::VecDeque<Arc<ReadWindow>>>,
}

impl ReadWindows {
    /// The bytes `range` of pack `key` from a window, reading the window
    /// if no reader did; `None` when the window cannot be read or does not
    /// hold the whole range (the caller then reads the range itself, and
    /// reports what is wrong).
    async fn read(&self, sink: &dyn Sink, key: &str, range: Range<u64>) -> Option<Bytes> {
        let start = range.start - range.start % READ_WINDOW;
        if range.end > start + READ_WINDOW {
            return None;
        }
        let window = {
            let mut recent = self.recent.lock().ok()?;
            let found = recent
                .iter()
                .position(|window| window.start == start && window.key == key);
            let window = match found {
                Some(position) => recent.remove(position)?,
                None => Arc::new(ReadWindow {
                    key: key.to_string(),
                    start,
                    bytes: tokio::sync::OnceCell::new(),
                }),
            };
            recent.push_front(window.clone());
            recent.truncate(READ_WINDOWS);
            window
        };
        let bytes = window
            .bytes
            .get_or_try_init(|| sink.get_range(key, Some(start..start + READ_WINDOW)))
            .await;
        let Ok(bytes) = bytes else {
            // Not kept: the next reader tries again, or reads directly.
            if let Ok(mut recent) = self.recent.lock() {
                recent.retain(|other| !Arc::ptr_eq(other, &window));
            }
            return None;
        };
        let offset = usize::try_from(range.start - start).ok()?;
        let end = usize::try_from(range.end - start).ok()?;
        (end <= bytes.len()).then(|| bytes.slice(offset..end))
    }

    /// Drops the window holding `offset` of pack `key`: its bytes failed a
    /// check, and other blobs must not be read from them.
    fn forget(&self, key: &str, offset: u64) {
        let start = offset - offset % READ_WINDOW;
        if let Ok(mut recent) = self.recent.lock() {
            recent.retain(|window| !(window.start == start && window.key == key));
        }
    }
}

impl RepoShared {
    pub(crate) fn key(&self) -> Option<&MasterKey> {
        self.key.as_ref()
    }

    /// The id of a plaintext chunk in this repository.
    pub(crate) fn chunk_id(&self, plaintext: &[u8]) -> Id {
        match &self.key {
            Some(key) => key.chunk_id(plaintext),
            None => Id::digest(plaintext),
        }
    }

    pub(crate) fn index_contains(&self, id: &Id) -> bool {
        self.index
            .read()
            .map(|index| index.contains(id))
            .unwrap_or(false)
    }

    /// Reads, checks and decodes one blob.
    pub(crate) async fn read_blob(&self, id: &Id) -> Result<Vec<u8>> {
        let location = self
            .index
            .read()
            .ok()
            .and_then(|index| index.get(id))
            .ok_or_else(|| {
                Error::corrupt(
                    format!("blob {id}"),
                    0,
                    "the blob is referenced but not in any index",
                )
            })?;
        let key = pack::pack_key(&location.pack);
        let start = u64::from(location.entry.offset);
        let end = start + u64::from(location.entry.stored_length);
        // A damaged transfer (short read, flipped bit on the wire) must not
        // be mistaken for damaged storage: fetch once more before reporting.
        let mut rereads = 0;
        // Small blobs are read through a window at first; a reread reads
        // only the blob.
        let windowed = end - start <= WINDOW_BLOB_MAX;
        loop {
            let from_window = if windowed && rereads == 0 {
                self.windows.read(&*self.sink, &key, start..end).await
            } else {
                None
            };
            let stored = match from_window {
                Some(stored) => stored,
                None => match self.sink.get_range(&key, Some(start..end)).await {
                    Ok(stored) => stored,
                    // The pack is shorter than its index says: damage, not a
                    // mistake of the caller.
                    Err(Error::InvalidArgument(detail)) => {
                        return Err(Error::corrupt(
                            &key,
                            start,
                            format!("blob {id} cannot be read: {detail}"),
                        ))
                    }
                    Err(other) => return Err(other),
                },
            };
            match pack::decode_blob(&key, &location.entry, &stored, self.key()) {
                Err(Error::Corrupt { .. }) if rereads < REREADS => {
                    tracing::warn!(%key, blob = %id, "blob failed its check; reading it again");
                    if windowed {
                        self.windows.forget(&key, start);
                    }
                    rereads += 1;
                }
                outcome => return outcome,
            }
        }
    }

    /// The total length of a file's chunks, from the index alone.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] if a chunk is in no index.
    pub(crate) fn content_length(&self, content: &[Id]) -> Result<u64> {
        let index = self.index.read().map_err(|_| poisoned())?;
        content.iter().try_fold(0u64, |total, id| {
            let location = index.get(id).ok_or_else(|| {
                Error::corrupt(
                    format!("blob {id}"),
                    0,
                    "the blob is referenced but not in any index",
                )
            })?;
            if location.entry.kind != BlobKind::Data {
                return Err(Error::corrupt(
                    format!("blob {id}"),
                    0,
                    "the blob is directory metadata, not file content",
                ));
            }
            Ok(total.saturating_add(u64::from(location.entry.raw_length)))
        })
    }

    /// Reads and decodes a directory listing stored as tree chunks.
    pub(crate) async fn load_tree(&self, what: &str, ids: &[Id]) -> Result<Vec<Node>> {
        let mut bytes = Vec::new();
        let mut planned = 0u64;
        for id in ids {
            let location = self.index.read().ok().and_then(|index| index.get(id));
            if let Some(location) = location {
                if location.entry.kind == BlobKind::Data {
                    return Err(Error::corrupt(
                        format!("tree of {what:?}"),
                        0,
                        format!("chunk {id} is a data chunk, not directory metadata"),
                    ));
                }
                planned += u64::from(location.entry.raw_length);
                if planned > MAX_LISTING_BYTES {
                    return Err(Error::corrupt(
                        format!("tree of {what:?}"),
                        0,
                        format!(
                            "the directory listing is larger than {} MiB",
                            MAX_LISTING_BYTES >> 20
                        ),
                    ));
                }
            }
            bytes.extend_from_slice(&self.read_blob(id).await?);
        }
        tree::decode(what, &bytes)
    }

    /// Fetches an object and checks it is stored under its own hash.
    pub(crate) async fn get_named(&self, key: &str, id: &Id) -> Result<Bytes> {
        let mut rereads = 0;
        loop {
            let bytes = self.sink.get(key).await?;
            let actual = Id(Sha256::digest(&bytes).into());
            if &actual == id {
                return Ok(bytes);
            }
            if rereads == REREADS {
                return Err(name_mismatch(key, &actual));
            }
            rereads += 1;
        }
    }

    /// [`RepoShared::get_named`] followed by `decode`, with the hash check
    /// and `decode` on a blocking thread (for a large object both are
    /// milliseconds of CPU work).
    async fn get_named_decoded<T, F>(&self, key: String, id: Id, decode: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&str, &[u8]) -> Result<T> + Send + Sync + 'static,
    {
        let key = Arc::new(key);
        let decode = Arc::new(decode);
        let mut rereads = 0;
        loop {
            let bytes = self.sink.get(&key).await?;
            let (name, decoder) = (Arc::clone(&key), Arc::clone(&decode));
            let outcome = tokio::task::spawn_blocking(move || {
                let actual = Id(Sha256::digest(&bytes).into());
                if actual == id {
                    Ok(decoder(&name, &bytes))
                } else {
                    Err(actual)
                }
            })
            .await
            .map_err(|error| Error::Io {
                context: "decoding a repository object",
                path: std::path::PathBuf::from(key.as_str()),
                source: std::io::Error::other(error),
            })?;
            match outcome {
                Ok(decoded) => return decoded,
                Err(actual) if rereads == REREADS => return Err(name_mismatch(&key, &actual)),
                Err(_) => rereads += 1,
            }
        }
    }

    /// Writes a metadata object under `prefix<hash of the object>`.
    pub(crate) async fn put_named(
        &self,
        prefix: &str,
        kind: ObjectKind,
        payload: &[u8],
    ) -> Result<Id> {
        let object = envelope::seal(kind, payload, true, self.key());
        let id = Id(Sha256::digest(&object).into());
        let key = format!("{prefix}{id}");
        let object = Bytes::from(object);
        match self.sink.put(&key, object.clone(), PutMode::Create).await {
            Ok(()) => {}
            // The name is the content's hash: an intact object under it is
            // this very object; a damaged one is replaced.
            Err(Error::AlreadyExists { .. }) => {
                let intact = match self.sink.get(&key).await {
                    Ok(stored) => Id(Sha256::digest(&stored).into()) == id,
                    Err(_) => false,
                };
                if !intact {
                    self.sink.put(&key, object, PutMode::Overwrite).await?;
                }
            }
            Err(other) => return Err(other),
        }
        Ok(id)
    }

    /// Indexes packs that are stored but in no index, reading only their
    /// headers: such packs are left by a backup that was killed before it
    /// wrote its index, and indexing them lets the next backup reuse them.
    /// A pack whose header is damaged is skipped (verify reports it).
    ///
    /// Returns the number of packs indexed.
    pub(crate) async fn index_unindexed_packs(&self) -> Result<usize> {
        let stored = list_packs(self.sink.as_ref()).await?;
        // Packs a prune marked for deletion must not come back into use.
        let (marks, unreadable) = crate::prune::list_marks(self).await?;
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
    async fn read_pack_headers(&self, packs: Vec<(Id, u64)>) -> Vec<IndexedPack> {
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
    ) -> Result<Vec<crate::pack::BlobEntry>> {
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
            let loaded: Result<Vec<Option<(Id, IndexFile)>>> = futures::stream::iter(ids)
                .map(|id| async move {
                    let key = format!("{INDEX_PREFIX}{id}");
                    // Decrypting and decoding a large index object takes
                    // milliseconds of CPU: on blocking threads, several
                    // objects are checked and decoded at once instead of one
                    // after another on the thread polling this stream.
                    let master = self.key().cloned();
                    let decoded = self
                        .get_named_decoded(key, id, move |key, bytes| {
                            let payload = envelope::open_named(
                                key,
                                bytes,
                                ObjectKind::Index,
                                master.as_ref(),
                            )?;
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
                .await;
            match loaded {
                Err(Error::NotFound { .. }) if attempt < INDEX_LOAD_ATTEMPTS => attempt += 1,
                other => break other?.into_iter().flatten().collect(),
            }
        };
        let superseded: HashSet<Id> = files
            .iter()
            .flat_map(|(_, file)| file.supersedes.iter().copied())
            .collect();
        let mut index = Index::default();
        let doomed = self.doomed_packs().await?;
        index.set_doomed(doomed.clone());
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
        // Doomed packs are in no index once prune has marked them, yet a
        // backup that started before the mark may have finished referencing
        // them: keep them readable (never deduplicated against) until prune
        // either deletes them or puts them back.
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
        if damaged.load(std::sync::atomic::Ordering::Relaxed) > 0 {
            // What the damaged index listed is still in its packs: read
            // their headers, so that nothing it described becomes
            // unreadable. These packs count as unlisted, and the next
            // backup writes an index for them.
            let stored = list_packs(self.sink.as_ref()).await?;
            let orphans: Vec<(Id, u64)> = stored
                .into_iter()
                .filter(|(id, _)| !index.packs().contains_key(id))
                .collect();
            let recovered = self.read_pack_headers(orphans).await;
            for pack in &recovered {
                index.add_pack(pack);
            }
            tracing::info!(
                packs = recovered.len(),
                "packs read from their headers in place of a damaged index"
            );
        }
        Ok(index)
    }

    /// Packs named in deletion marks. An unreadable mark is skipped with a
    /// warning: prune treats it (it removes unreadable marks), and its packs
    /// are in no index since the mark was written.
    pub(crate) async fn doomed_packs(&self) -> Result<HashSet<Id>> {
        let (marks, unreadable) = crate::prune::list_marks(self).await?;
        for key in unreadable {
            tracing::warn!(%key, "unreadable deletion mark ignored");
        }
        Ok(marks.into_iter().flat_map(|(_, mark)| mark.packs).collect())
    }
}

fn poisoned() -> Error {
    Error::Io {
        context: "internal lock poisoned",
        path: std::path::PathBuf::new(),
        source: std::io::Error::other("a thread panicked while holding the index"),
    }
}

/// The largest directory listing read (the JSON Lines of one directory):
/// about three million entries, or the chunk list of a 15 TiB file.
pub(crate) const MAX_LISTING_BYTES: u64 = 1 << 30;

/// Fetches a whole object and decodes it with `decode`; when the check
/// fails, fetches once more before reporting the damage, so a broken
/// transfer is not mistaken for broken storage.
pub(crate) async fn get_checked<T>(
    sink: &dyn Sink,
    key: &str,
    decode: impl Fn(&[u8]) -> Result<T>,
) -> Result<T> {
    let mut rereads = 0;
    loop {
        let bytes = sink.get(key).await?;
        match decode(&bytes) {
            Err(Error::Corrupt { .. }) if rereads < REREADS => rereads += 1,
            outcome => return outcome,
        }
    }
}

/// Every stored pack with its size (keys that are not a pack's canonical
/// `data/<2 hex>/<id>` are ignored).
pub(crate) async fn list_packs(sink: &dyn Sink) -> Result<HashMap<Id, u64>> {
    Ok(sink
        .list(DATA_PREFIX)
        .await?
        .into_iter()
        .filter_map(|meta| {
            let id: Id = meta.key.rsplit('/').next()?.parse().ok()?;
            (meta.key == pack::pack_key(&id)).then_some((id, meta.size))
        })
        .collect())
}

/// Lists object ids under a prefix, ignoring keys that are not ids.
pub(crate) async fn list_ids(sink: &dyn Sink, prefix: &str) -> Result<Vec<Id>> {
    Ok(sink
        .list(prefix)
        .await?
        .into_iter()
        .filter_map(|meta| {
            // Only the canonical (lowercase hex) name of an id counts.
            meta.key
                .strip_prefix(prefix)
                .and_then(|rest| rest.parse::<Id>().ok().filter(|id| id.to_hex() == rest))
        })
        .collect())
}

/// Options for [`Repository::init`].
///
/// [`Repository::init`] takes the options by value and zeroizes the
/// password once the key file is written; `Debug` never shows it.
#[derive(Clone, Default)]
pub struct InitOptions {
    /// Encrypt with this password; `None` creates an unencrypted repository.
    pub password: Option<Vec<u8>>,
    /// Key derivation costs (default: 64 MiB, 3 passes, 4 lanes).
    pub kdf: KdfParams,
}

impl std::fmt::Debug for InitOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InitOptions")
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("kdf", &self.kdf)
            .finish()
    }
}

/// Which earlier backup to compare files against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParentSelection {
    /// The newest completed backup of the same set.
    #[default]
    Latest,
    /// Read every file again.
    None,
    /// This backup.
    Id(Id),
}

/// Options for [`Repository::backup`].
#[derive(Debug, Clone)]
pub struct BackupOptions {
    /// Name of the backup set.
    pub set: String,
    /// Tags recorded in the manifest.
    pub tags: BTreeMap<String, String>,
    /// The time the backup represents (default: now).
    pub time: Option<DateTime<Utc>>,
    /// Writer identity (default: the host name).
    pub writer: Option<String>,
    /// The parent used to skip unchanged files.
    pub parent: ParentSelection,
    /// Refuse to write when the newest backup of the set was written by
    /// another writer ([`Error::Collision`]); scheduled backups set this.
    pub check_collision: bool,
    /// Where progress events go.
    pub progress: Option<ProgressSink>,
}

impl Default for BackupOptions {
    fn default() -> Self {
        BackupOptions {
            set: "default".into(),
            tags: BTreeMap::new(),
            time: None,
            writer: None,
            parent: ParentSelection::Latest,
            check_collision: false,
            progress: None,
        }
    }
}

/// A backup: its id and manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Backup {
    /// The manifest's id.
    pub id: Id,
    /// The manifest.
    pub manifest: Manifest,
}

/// What [`Repository::restore_sets`] did for one set.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SetRestore {
    /// The backup set.
    pub set: String,
    /// The backup restored, or `None` when the set was skipped.
    pub backup: Option<Id>,
    /// What was restored.
    pub summary: Option<RestoreSummary>,
}

/// One entry listed by [`Repository::ls`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LsEntry {
    /// Path relative to the backup's root, `/`-separated.
    pub path: String,
    /// `file`, `dir` or `symlink`.
    #[serde(rename = "type")]
    pub kind: NodeKind,
    /// Size in bytes (files).
    pub size: u64,
    /// Permission bits.
    pub mode: u32,
    /// Modification time.
    pub mtime: DateTime<Utc>,
    /// Symlink target.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// The host name, from the kernel.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}

/// An open repository.
///
/// # Examples
///
/// ```
/// # async fn demo() -> backup_core::Result<()> {
/// use std::sync::Arc;
/// use backup_core::{BackupOptions, MemorySink, Repository, InitOptions};
/// use backup_core::snapshot::DirectorySnapshotter;
///
/// let source = tempfile::tempdir().unwrap();
/// std::fs::write(source.path().join("hello.txt"), b"hello").unwrap();
/// let repo = Repository::init(Arc::new(MemorySink::new()), InitOptions::default()).await?;
/// let summary = repo
///     .backup(&DirectorySnapshotter::new(vec![source.path().into()]), BackupOptions::default())
///     .await?;
/// assert_eq!(summary.manifest.stats.files, 1);
/// let target = tempfile::tempdir().unwrap();
/// let backup = repo.find_backup("latest", None).await?;
/// repo.restore(&backup, target.path(), &Default::default()).await?;
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Repository {
    shared: Arc<RepoShared>,
}

/// What [`Repository::backup`] reports.
#[derive(Debug, Clone)]
pub struct BackupSummary {
    /// The new backup's id.
    pub id: Id,
    /// Its manifest.
    pub manifest: Manifest,
}

impl Repository {
    /// Creates a repository in an empty sink.
    ///
    /// # Errors
    ///
    /// [`Error::RepositoryExists`] when the sink already holds one.
    pub async fn init(sink: Arc<dyn Sink>, options: InitOptions) -> Result<Repository> {
        if sink.exists(CONFIG_KEY).await? {
            return Err(Error::RepositoryExists {
                location: sink.location(),
            });
        }
        let config = RepoConfig::new(options.password.is_some());
        let config_object = config.to_object()?;
        let password = zeroize::Zeroizing::new(options.password);
        let key = match password.as_ref() {
            Some(password) => {
                let master = MasterKey::generate();
                let file =
                    KeyFile::create(&master, password, options.kdf, &config_object, hostname())?;
                let object = file.to_object()?;
                let id = Id(Sha256::digest(&object).into());
                sink.put(
                    &format!("{KEYS_PREFIX}{id}"),
                    Bytes::from(object),
                    PutMode::Create,
                )
                .await?;
                Some(master)
            }
            None => None,
        };
        // The config is written last: it is what makes the repository exist.
        sink.put(CONFIG_KEY, Bytes::from(config_object), PutMode::Create)
            .await
            .map_err(|error| match error {
                Error::AlreadyExists { .. } => Error::RepositoryExists {
                    location: sink.location(),
                },
                other => other,
            })?;
        Repository::from_parts(sink, config, key, Index::default())
    }

    /// Opens the repository in `sink`, with `password` if it is encrypted.
    ///
    /// # Errors
    ///
    /// [`Error::NoRepository`], [`Error::PasswordRequired`],
    /// [`Error::WrongPassword`], [`Error::UnsupportedVersion`], or
    /// [`Error::Corrupt`] for a damaged config, key or index.
    pub async fn open(sink: Arc<dyn Sink>, password: Option<&[u8]>) -> Result<Repository> {
        // Read again when the check fails, like every other object: a
        // broken transfer is not a damaged config.
        let checked = get_checked(sink.as_ref(), CONFIG_KEY, |bytes| {
            RepoConfig::from_object(bytes).map(|config| (config, bytes.to_vec()))
        })
        .await;
        let (config, config_object) = match checked {
            Ok(pair) => pair,
            Err(Error::NotFound { .. }) => {
                return Err(Error::NoRepository {
                    location: sink.location(),
                })
            }
            Err(other) => return Err(other),
        };
        let key = match (config.encryption.is_some(), password) {
            (true, Some(password)) => {
                warm_while_deriving(&sink);
                Some(open_key(sink.as_ref(), password, &config_object).await?)
            }
            (true, None) => return Err(Error::PasswordRequired),
            (false, None) => None,
            // Whoever can write to the storage could replace an encrypted
            // repository with an unencrypted one; a caller that expects
            // encryption must not silently write plaintext into it.
            (false, Some(_)) => {
                return Err(Error::NotEncrypted {
                    location: sink.location(),
                })
            }
        };
        let repo = Repository::from_parts(sink, config, key, Index::default())?;
        let index = repo.shared.load_index().await?;
        if let Ok(mut slot) = repo.shared.index.write() {
            *slot = index;
        }
        Ok(repo)
    }

    fn from_parts(
        sink: Arc<dyn Sink>,
        config: RepoConfig,
        key: Option<MasterKey>,
        index: Index,
    ) -> Result<Repository> {
        let seed = key.as_ref().map(MasterKey::chunker_seed).unwrap_or(0);
        let chunker = Chunker::new(config.chunker, seed)?;
        let tree_chunker = Chunker::new(config.tree_chunker, seed)?;
        Ok(Repository {
            shared: Arc::new(RepoShared {
                sink,
                config,
                key,
                index: RwLock::new(index),
                chunker,
                tree_chunker,
                windows: ReadWindows::default(),
            }),
        })
    }

    pub(crate) fn shared(&self) -> &Arc<RepoShared> {
        &self.shared
    }

    /// The repository's config.
    pub fn config(&self) -> &RepoConfig {
        &self.shared.config
    }

    /// Whether the repository is encrypted.
    pub fn is_encrypted(&self) -> bool {
        self.shared.key.is_some()
    }

    /// The sink the repository lives in.
    pub fn sink(&self) -> &Arc<dyn Sink> {
        &self.shared.sink
    }

    /// Takes a snapshot and stores it as a new backup.
    ///
    /// The backup becomes visible only when its manifest is written, after
    /// every pack and index it needs. If anything fails, nothing is listed,
    /// and the packs already uploaded are reused by the next backup.
    ///
    /// # Errors
    ///
    /// Snapshot, storage or encoding errors. Files that cannot be read are
    /// not errors: they are recorded in the manifest, whose status becomes
    /// [`BackupStatus::PartiallyFailed`].
    pub async fn backup(
        &self,
        snapshotter: &dyn Snapshotter,
        options: BackupOptions,
    ) -> Result<BackupSummary> {
        validate_set_name(&options.set)?;
        let writer = options.writer.clone().unwrap_or_else(hostname);
        // Announce the backup before reading the index, so that a prune
        // running meanwhile never deletes data this backup deduplicates
        // against (see `crate::prune`).
        let inflight = InflightGuard::register(&self.shared, &writer).await?;
        let tracker = Tracker::new("backup");
        let reporter = Reporter::start(tracker.clone(), options.progress.clone());
        let outcome = self
            .backup_registered(snapshotter, options, writer, tracker)
            .await;
        inflight.release().await;
        reporter.finish(match &outcome {
            Ok(summary) if summary.manifest.status == BackupStatus::Completed => Phase::Completed,
            Ok(_) => Phase::PartiallyFailed,
            Err(_) => Phase::Failed,
        });
        outcome
    }

    async fn backup_registered(
        &self,
        snapshotter: &dyn Snapshotter,
        options: BackupOptions,
        writer: String,
        tracker: Arc<Tracker>,
    ) -> Result<BackupSummary> {
        let started = Utc::now();
        let clock = std::time::Instant::now();
        let index = self.shared.load_index().await?;
        if let Ok(mut slot) = self.shared.index.write() {
            *slot = index;
        }
        self.shared.index_unindexed_packs().await?;
        let newest = self.latest(Some(&options.set)).await?;
        if options.check_collision {
            check_collision(&options.set, &writer, newest.as_ref())?;
        }
        let parent = match &options.parent {
            ParentSelection::None => None,
            ParentSelection::Id(id) => Some(self.load_backup(id).await?),
            ParentSelection::Latest => newest,
        };
        let mut snapshot = snapshotter.snapshot().await?;
        let finisher = snapshot.take_finisher();
        let entries = std::mem::take(&mut snapshot.entries);
        let paths: Vec<std::path::PathBuf> = entries
            .iter()
            .filter_map(|entry| match entry {
                crate::snapshot::Entry::Path { path, .. } => Some(path.clone()),
                crate::snapshot::Entry::Stream { .. } => None,
            })
            .collect();
        // Streams have no size known in advance; trees are counted beside
        // the backup, so that it starts at once.
        let scanner = (options.progress.is_some() && paths.len() == entries.len()).then(|| {
            let tracker = tracker.clone();
            tokio::spawn(async move {
                let (files, bytes) = crate::progress::scan_totals(paths).await;
                tracker.set_totals(files, bytes);
            })
        });
        let archiver = ChunkArchiver::new(self.shared.clone()).with_tracker(tracker);
        let archived = archiver
            .archive(entries, parent.as_ref().map(|p| p.manifest.root.as_slice()))
            .await;
        let mut facts = snapshot.facts;
        let finished_facts = match finisher {
            Some(finisher) => finisher.finish(archived.is_ok()).await,
            None => Ok(BTreeMap::new()),
        };
        if let Some(scanner) = scanner {
            scanner.abort();
        }
        let archived = archived?;
        facts.extend(finished_facts?);
        if options.check_collision {
            // Another writer may have finished while this one ran.
            check_collision(
                &options.set,
                &writer,
                self.latest(Some(&options.set)).await?.as_ref(),
            )?;
        }
        let mut stats = archived.stats;
        stats.duration_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
        let manifest = Manifest {
            version: MANIFEST_VERSION,
            set: options.set,
            time: options.time.unwrap_or(started),
            started,
            finished: Utc::now(),
            writer,
            hostname: hostname(),
            source: snapshot.source,
            tags: options.tags,
            root: archived.root,
            parent: parent.map(|p| p.id),
            facts,
            stats,
            status: if archived.errors.is_empty() {
                BackupStatus::Completed
            } else {
                BackupStatus::PartiallyFailed
            },
            errors: archived.errors,
        };
        let json = serde_json::to_vec(&manifest)
            .map_err(|error| Error::InvalidArgument(format!("encoding manifest: {error}")))?;
        let id = self
            .shared
            .put_named(MANIFEST_PREFIX, ObjectKind::Manifest, &json)
            .await?;
        Ok(BackupSummary { id, manifest })
    }

    /// Applies a retention policy: deletes the manifests it does not keep
    /// (unless `dry_run`). Returns every backup with its decision. The data
    /// of forgotten backups is freed by [`Repository::prune`].
    ///
    /// # Errors
    ///
    /// Storage errors; [`Error::Corrupt`] for a damaged manifest.
    pub async fn forget(
        &self,
        policy: &dyn RetentionPolicy,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> Result<Vec<(Backup, Decision)>> {
        self.forget_matching(policy, now, dry_run, |_| true).await
    }

    /// [`Repository::forget`] over the backups `filter` selects (a set, a
    /// host); the others are neither decided on nor touched.
    ///
    /// # Errors
    ///
    /// As [`Repository::forget`].
    pub async fn forget_matching(
        &self,
        policy: &dyn RetentionPolicy,
        now: DateTime<Utc>,
        dry_run: bool,
        filter: impl Fn(&Backup) -> bool,
    ) -> Result<Vec<(Backup, Decision)>> {
        let backups: Vec<Backup> = self
            .list()
            .await?
            .into_iter()
            .filter(|backup| filter(backup))
            .collect();
        let decisions = policy.decide(&backups, now);
        let aligned = decisions.len() == backups.len()
            && decisions
                .iter()
                .zip(&backups)
                .all(|(decision, backup)| decision.id == backup.id);
        if !aligned {
            return Err(Error::InvalidArgument(
                "the retention policy did not return one decision per backup, in order".into(),
            ));
        }
        if !dry_run {
            for decision in decisions.iter().filter(|decision| !decision.keep) {
                self.shared
                    .sink
                    .delete(&format!("{MANIFEST_PREFIX}{}", decision.id))
                    .await?;
            }
        }
        Ok(backups.into_iter().zip(decisions).collect())
    }

    /// Reads one manifest.
    ///
    /// # Errors
    ///
    /// [`Error::BackupNotFound`] when missing, [`Error::Corrupt`] when damaged.
    pub async fn load_backup(&self, id: &Id) -> Result<Backup> {
        let key = format!("{MANIFEST_PREFIX}{id}");
        let bytes = match self.shared.get_named(&key, id).await {
            Err(Error::NotFound { .. }) => {
                return Err(Error::BackupNotFound {
                    selector: id.to_string(),
                })
            }
            other => other?,
        };
        let json = envelope::open_named(&key, &bytes, ObjectKind::Manifest, self.shared.key())?;
        let manifest: Manifest = serde_json::from_slice(&json)
            .map_err(|error| Error::corrupt(&key, 8, format!("invalid manifest: {error}")))?;
        if manifest.version != MANIFEST_VERSION {
            return Err(Error::UnsupportedVersion {
                key,
                found: manifest.version,
                min_supported: MANIFEST_VERSION,
                max_supported: MANIFEST_VERSION,
            });
        }
        Ok(Backup { id: *id, manifest })
    }

    /// Lists every backup, oldest first (by the time it represents).
    ///
    /// # Errors
    ///
    /// Storage errors, or [`Error::Corrupt`] for a damaged manifest.
    pub async fn list(&self) -> Result<Vec<Backup>> {
        self.list_checked(false).await
    }

    /// Lists backups; without `strict`, a damaged manifest is skipped with a
    /// warning (`verify` names it) so that it hides no other backup. Prune
    /// lists strictly: it must not delete what a damaged manifest may use.
    pub(crate) async fn list_checked(&self, strict: bool) -> Result<Vec<Backup>> {
        let ids = list_ids(self.shared.sink.as_ref(), MANIFEST_PREFIX).await?;
        let loaded: Vec<Option<Backup>> = futures::stream::iter(ids)
            .map(|id| async move {
                match self.load_backup(&id).await {
                    Ok(backup) => Ok(Some(backup)),
                    // Forgotten between the list and the read.
                    Err(Error::BackupNotFound { .. }) => Ok(None),
                    Err(error @ Error::Corrupt { .. }) if !strict => {
                        tracing::warn!(%error, "damaged manifest skipped (run verify)");
                        Ok(None)
                    }
                    Err(error) => Err(error),
                }
            })
            .buffer_unordered(METADATA_CONCURRENCY)
            .try_collect()
            .await?;
        let mut backups: Vec<Backup> = loaded.into_iter().flatten().collect();
        backups.sort_by(|a, b| a.manifest.time.cmp(&b.manifest.time).then(a.id.cmp(&b.id)));
        Ok(backups)
    }

    /// The newest backup, of `set` when given.
    ///
    /// # Errors
    ///
    /// As [`Repository::list`].
    pub async fn latest(&self, set: Option<&str>) -> Result<Option<Backup>> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .rfind(|backup| set.is_none_or(|set| backup.manifest.set == set)))
    }

    /// Finds a backup by `latest` (the newest *completed* backup, of `set`
    /// when given, as Velero restores `latest`) or by a unique prefix of its
    /// id.
    ///
    /// # Errors
    ///
    /// [`Error::BackupNotFound`] or [`Error::AmbiguousBackup`].
    pub async fn find_backup(&self, selector: &str, set: Option<&str>) -> Result<Backup> {
        if selector == "latest" {
            return self
                .list()
                .await?
                .into_iter()
                .rfind(|backup| {
                    backup.manifest.status == BackupStatus::Completed
                        && set.is_none_or(|set| backup.manifest.set == set)
                })
                .ok_or_else(|| Error::BackupNotFound {
                    selector: match set {
                        Some(set) => format!("latest (no completed backup of set {set:?})"),
                        None => "latest (no completed backup)".into(),
                    },
                });
        }
        if selector.is_empty() || !selector.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::BackupNotFound {
                selector: selector.into(),
            });
        }
        let selector_lower = selector.to_ascii_lowercase();
        let ids = list_ids(self.shared.sink.as_ref(), MANIFEST_PREFIX).await?;
        let matches: Vec<Id> = ids
            .into_iter()
            .filter(|id| id.to_hex().starts_with(&selector_lower))
            .collect();
        match matches.as_slice() {
            [id] => {
                let backup = self.load_backup(id).await?;
                if set.is_some_and(|set| backup.manifest.set != set) {
                    return Err(Error::BackupNotFound {
                        selector: selector.into(),
                    });
                }
                Ok(backup)
            }
            [] => Err(Error::BackupNotFound {
                selector: selector.into(),
            }),
            many => Err(Error::AmbiguousBackup {
                prefix: selector.into(),
                count: many.len(),
            }),
        }
    }

    /// Restores several backup sets at once, each into `target/<set>`: each
    /// set names `latest`, a backup id (prefix), or `skip` (as a Velero
    /// restore of several schedules does). All selections are resolved
    /// before anything is written, so a bad one restores nothing.
    ///
    /// # Errors
    ///
    /// [`Error::BackupNotFound`] for a selection that matches nothing (or a
    /// backup of another set); restore errors as [`Repository::restore`].
    pub async fn restore_sets(
        &self,
        selections: &[(String, String)],
        target: &Path,
        options: &RestoreOptions,
    ) -> Result<Vec<SetRestore>> {
        let mut chosen = Vec::new();
        for (set, selector) in selections {
            validate_set_name(set)?;
            let backup = match selector.as_str() {
                "skip" => None,
                selector => Some(self.find_backup(selector, Some(set)).await?),
            };
            chosen.push((set.clone(), backup));
        }
        let mut results = Vec::new();
        for (set, backup) in chosen {
            let summary = match &backup {
                Some(backup) => Some(
                    self.restore(backup, &target.join(set.replace('/', "_")), options)
                        .await?,
                ),
                None => None,
            };
            results.push(SetRestore {
                set,
                backup: backup.map(|b| b.id),
                summary,
            });
        }
        Ok(results)
    }

    /// Lists every file, directory and symlink of a backup, depth first.
    ///
    /// # Errors
    ///
    /// Storage or corruption errors.
    pub async fn ls(&self, backup: &Backup) -> Result<Vec<LsEntry>> {
        let listings =
            crate::restore::Listings::read(&self.shared, &backup.manifest.root, None).await?;
        let mut out = Vec::with_capacity(usize::try_from(listings.entries).unwrap_or(0));
        let mut stack = vec![(String::new(), backup.manifest.root.clone())];
        while let Some((path, ids)) = stack.pop() {
            let nodes = listings.get(&ids).map_err(|detail| {
                Error::corrupt(
                    format!("tree of {:?}", if path.is_empty() { "/" } else { &path }),
                    0,
                    detail,
                )
            })?;
            let mut subdirs = Vec::new();
            for node in nodes.iter().cloned() {
                let child = if path.is_empty() {
                    node.name.clone()
                } else {
                    format!("{path}/{}", node.name)
                };
                if let Some(subtree) = &node.subtree {
                    subdirs.push((child.clone(), subtree.clone()));
                }
                out.push(LsEntry {
                    path: child,
                    kind: node.kind,
                    size: node.size,
                    mode: node.mode,
                    mtime: DateTime::from_timestamp_nanos(node.mtime_ns),
                    target: node.target,
                });
            }
            stack.extend(subdirs.into_iter().rev());
        }
        Ok(out)
    }

    /// Restores a backup (or the parts selected by `options`) under `target`.
    ///
    /// Never writes outside `target`. Files whose data is damaged or missing
    /// are not written; the others are, and the damaged ones are reported in
    /// [`Error::PartialRestore`].
    ///
    /// # Errors
    ///
    /// [`Error::PartialRestore`] listing the files that failed; storage or
    /// corruption errors for the directory metadata.
    pub async fn restore(
        &self,
        backup: &Backup,
        target: &Path,
        options: &RestoreOptions,
    ) -> Result<RestoreSummary> {
        ChunkArchiver::new(self.shared.clone())
            .restore(&backup.manifest.root, target, options)
            .await
    }

    /// Checks the repository's structure and, optionally, its data.
    ///
    /// # Errors
    ///
    /// Only for failures to run the check (an unreachable sink); damage found
    /// is reported in the returned [`VerifyReport`].
    pub async fn verify(&self, options: &VerifyOptions) -> Result<VerifyReport> {
        crate::verify::verify(self, options).await
    }

    /// Reads one data or tree chunk by id (checked against its id).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] when the chunk is missing or damaged.
    pub async fn read_chunk(&self, id: &Id) -> Result<Vec<u8>> {
        self.shared.read_blob(id).await
    }

    /// Every stored pack with its size in bytes.
    ///
    /// # Errors
    ///
    /// Storage errors.
    pub async fn packs(&self) -> Result<Vec<(Id, u64)>> {
        let mut packs: Vec<(Id, u64)> = list_packs(self.shared.sink.as_ref())
            .await?
            .into_iter()
            .collect();
        packs.sort();
        Ok(packs)
    }

    /// The blobs a pack holds, read from its own header (two ranged reads),
    /// for inspection and repair tools.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] if there is no such pack, [`Error::Corrupt`] if
    /// its header is damaged.
    pub async fn pack_blobs(&self, pack: &Id) -> Result<Vec<crate::pack::BlobEntry>> {
        let size = self.shared.sink.head(&pack::pack_key(pack)).await?.size;
        self.shared.read_pack_header(pack, size).await
    }

    /// The blob kind of an indexed chunk.
    pub fn chunk_kind(&self, id: &Id) -> Option<BlobKind> {
        self.shared
            .index
            .read()
            .ok()
            .and_then(|index| index.get(id).map(|location| location.entry.kind))
    }
}

/// The key derivation keeps the cores busy for tens of milliseconds and
/// the storage idle: meanwhile, in a task of its own, hint the sink that
/// the index objects (read next, by [`Repository::open`]) and the backup
/// manifests (read by most commands after it) are wanted, so that their
/// reads find them fetched. Nothing when not on a Tokio runtime.
fn warm_while_deriving(sink: &Arc<dyn Sink>) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let sink = Arc::clone(sink);
        runtime.spawn(async move {
            sink.prefetch(INDEX_PREFIX).await;
            sink.prefetch(MANIFEST_PREFIX).await;
        });
    }
}

async fn open_key(sink: &dyn Sink, password: &[u8], config_object: &[u8]) -> Result<MasterKey> {
    let keys = sink.list(KEYS_PREFIX).await?;
    let mut damaged = None;
    for meta in keys {
        let file = match get_checked(sink, &meta.key, |bytes| {
            KeyFile::from_object(&meta.key, bytes)
        })
        .await
        {
            Ok(file) => file,
            Err(error) => {
                damaged = Some(error);
                continue;
            }
        };
        match file.open(&meta.key, password, config_object) {
            Ok(Some(master)) => return Ok(master),
            Ok(None) => {}
            // The key opened, but the config is not the one it was made
            // for: that is tampering, not a wrong password.
            Err(error @ Error::Corrupt { .. }) if error_key(&error) == Some(CONFIG_KEY) => {
                return Err(error)
            }
            Err(error) => damaged = Some(error),
        }
    }
    Err(damaged.unwrap_or(Error::WrongPassword))
}

/// The error for an object whose content hash is not its name.
fn name_mismatch(key: &str, actual: &Id) -> Error {
    Error::corrupt(
        key,
        0,
        format!("content hash {actual} does not match the object's name"),
    )
}

fn error_key(error: &Error) -> Option<&str> {
    match error {
        Error::Corrupt { key, .. } => Some(key),
        _ => None,
    }
}

/// Fails with [`Error::Collision`] when the newest backup of the set was
/// written by someone else.
fn check_collision(set: &str, writer: &str, newest: Option<&Backup>) -> Result<()> {
    match newest {
        Some(backup) if backup.manifest.writer != writer => Err(Error::Collision {
            set: set.to_string(),
            writer: writer.to_string(),
            other_writer: backup.manifest.writer.clone(),
            backup: backup.id.to_string(),
        }),
        _ => Ok(()),
    }
}

/// Checks a backup set name: 1 to 128 characters, letters, digits, `.`, `_`,
/// `-`, `:` and `/` (not at the start).
///
/// # Errors
///
/// [`Error::InvalidArgument`] describing the rule.
pub fn validate_set_name(set: &str) -> Result<()> {
    let ok = !set.is_empty()
        && set.len() <= 128
        && !set.starts_with('/')
        && set
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid set name {set:?}: use 1 to 128 letters, digits, '.', '_', '-', ':' or '/'"
        )))
    }
}
