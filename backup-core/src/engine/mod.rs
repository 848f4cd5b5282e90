//! The engine below the facade: what every operation shares on an open
//! repository. Object access with checks and rereads, the in-memory index
//! and how it is loaded, the key, read windows for small blobs, the list of
//! backups, and in-flight markers. It knows the format (`crate::format`)
//! and the sink, and nothing of the operations built on it.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::chunker::Chunker;
use crate::crypto::MasterKey;
use crate::format::config::RepoConfig;
use crate::format::envelope::{self, ObjectKind};
use crate::format::index::Index;
use crate::format::pack::{self, BlobKind};
use crate::format::tree::{self, Node};
use crate::sink::{PutMode, Sink, SinkExt};
use crate::{Error, Id, Result};

pub(crate) mod catalog;
pub(crate) mod index;
pub(crate) mod inflight;
pub(crate) mod keys;
pub(crate) mod marks;
pub(crate) mod windows;

pub use catalog::validate_set_name;
pub(crate) use keys::{open_key, warm_while_deriving};
pub(crate) use windows::{ReadWindows, WINDOW_BLOB_MAX};

/// Prefix of index objects.
pub const INDEX_PREFIX: &str = "index/";
/// Prefix of manifests.
pub const MANIFEST_PREFIX: &str = "manifests/";
/// Prefix of packs.
pub const DATA_PREFIX: &str = "data/";

/// How many times an object that fails its check is read again before the
/// damage is reported: a broken transfer must not pass for broken storage.
pub(crate) const REREADS: u32 = 3;

/// How often the index is listed again when an index object vanished
/// between listing and reading (a concurrent prune replaced it).
pub(crate) const INDEX_LOAD_ATTEMPTS: u32 = 5;

/// How many metadata objects are fetched at once.
pub(crate) const METADATA_CONCURRENCY: usize = 16;

/// State shared by every operation on an open repository.
#[derive(Debug)]
pub(crate) struct Engine {
    pub(crate) sink: Arc<dyn Sink>,
    pub(crate) config: RepoConfig,
    pub(crate) key: Option<MasterKey>,
    pub(crate) index: RwLock<Index>,
    pub(crate) chunker: Chunker,
    pub(crate) tree_chunker: Chunker,
    /// Pack ranges read lately for small blobs.
    pub(crate) windows: ReadWindows,
}

impl Engine {
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

    /// Reads, checks and decodes one blob. The callers check its indexed
    /// kind against the reference first ([`Engine::load_tree`],
    /// [`Engine::content_length`]).
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
        Ok(self
            .chunk_lengths(content)?
            .into_iter()
            .fold(0u64, |total, length| {
                total.saturating_add(u64::from(length))
            }))
    }

    /// The length of each data chunk of `content`, as the index has it.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] for a chunk in no index, or one that is not a
    /// data chunk.
    pub(crate) fn chunk_lengths(&self, content: &[Id]) -> Result<Vec<u32>> {
        let index = self.index.read().map_err(|_| poisoned())?;
        content
            .iter()
            .map(|id| {
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
                Ok(location.entry.raw_length)
            })
            .collect()
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

    /// [`Engine::get_named`] followed by `decode`, with the hash check
    /// and `decode` on a blocking thread (for a large object both are
    /// milliseconds of CPU work).
    pub(crate) async fn get_named_decoded<T, F>(&self, key: String, id: Id, decode: F) -> Result<T>
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
}

/// Runs `work` until it ends or `token` (if any) is cancelled; then `work`
/// is dropped, at whatever await it was, and the result is
/// [`Error::Cancelled`] for `operation`. Every operation is safe to stop
/// at any await (as a killed process is), so dropping is the stop.
pub(crate) async fn cancellable<T>(
    token: Option<&tokio_util::sync::CancellationToken>,
    operation: &'static str,
    work: impl std::future::Future<Output = Result<T>>,
) -> Result<T> {
    match token {
        None => work.await,
        Some(token) => tokio::select! {
            biased;
            () = token.cancelled() => Err(Error::Cancelled { operation }),
            outcome = work => outcome,
        },
    }
}

/// Runs `work` as the long operation `operation`: it reports through the
/// tracker it is given to `progress`, stops when `token` is cancelled
/// ([`cancellable`]), and the last event's phase is `phase` of its outcome,
/// or [`Phase::Failed`](crate::Phase::Failed) for an error.
pub(crate) async fn tracked<T, Work>(
    operation: &'static str,
    progress: Option<crate::ProgressSink>,
    token: Option<&tokio_util::sync::CancellationToken>,
    phase: impl FnOnce(&T) -> crate::Phase,
    work: impl FnOnce(Arc<crate::progress::Tracker>) -> Work,
) -> Result<T>
where
    Work: std::future::Future<Output = Result<T>>,
{
    let tracker = crate::progress::Tracker::new(operation);
    let reporter = crate::progress::Reporter::start(tracker.clone(), progress);
    let outcome = cancellable(token, operation, work(tracker)).await;
    reporter.finish(match &outcome {
        Ok(value) => phase(value),
        Err(_) => crate::Phase::Failed,
    });
    outcome
}

pub(crate) fn poisoned() -> Error {
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
/// The error for an object whose content hash is not its name.
pub(crate) fn name_mismatch(key: &str, actual: &Id) -> Error {
    Error::corrupt(
        key,
        0,
        format!("content hash {actual} does not match the object's name"),
    )
}

pub(crate) fn error_key(error: &Error) -> Option<&str> {
    match error {
        Error::Corrupt { key, .. } => Some(key),
        _ => None,
    }
}

/// The host name, from the kernel.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "unknown-host".to_string())
}
