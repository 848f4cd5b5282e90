//! Checking a repository: structure always, data on request.
//!
//! The structure check reads the config, key files, every index and every
//! manifest (each verified against its checksum and its name), checks every
//! indexed pack exists with the indexed size, and walks every backup's trees
//! (verifying each tree chunk) to check every referenced chunk is indexed.
//! The data check downloads packs, checks each pack's SHA-256 against its
//! name, parses its header, compares it with the index, and decodes and
//! verifies every blob.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use sha2::{Digest, Sha256};

use tokio_util::sync::CancellationToken;

use crate::engine::{get_checked, list_ids, list_packs, Engine, INDEX_PREFIX, MANIFEST_PREFIX};
use crate::format::config::{KeyFile, RepoConfig, CONFIG_KEY, KEYS_PREFIX};
use crate::format::envelope::{self, ObjectKind};
use crate::format::index::{Index, IndexFile};
use crate::format::pack::{self, BlobEntry};
use crate::format::tree::NodeKind;
use crate::outcome::{FailureKind, ItemFailure};
use crate::progress::{Phase, ProgressSink, Tracker};
use crate::sink::SinkExt;
use crate::{Error, Id, Result};

/// What [`Repository::verify`](crate::Repository::verify) checks.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct VerifyOptions {
    /// Also download and check pack data.
    pub read_data: bool,
    /// With `read_data`, check only this share of the packs (0 < share ≤ 1),
    /// chosen at random; `None` checks all.
    pub read_data_share: Option<f64>,
    /// Cancels the verification: it stops and returns [`Error::Cancelled`](crate::Error::Cancelled).
    pub cancellation: Option<CancellationToken>,
    /// Where progress events go: the backups checked and the packs read
    /// count as `files`, the packs' bytes as `bytes`.
    pub progress: Option<ProgressSink>,
}

impl VerifyOptions {
    /// Also downloads and checks the pack data.
    pub fn with_read_data(mut self, read: bool) -> Self {
        self.read_data = read;
        self
    }

    /// With data reading, checks only this share of the packs (0 < share ≤ 1), chosen at random.
    pub fn with_read_data_share(mut self, share: f64) -> Self {
        self.read_data_share = Some(share);
        self
    }
}

progress_and_cancellation_setters!(VerifyOptions, "the verification");

/// One piece of damage found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Problem {
    /// The damaged (or missing) object's key.
    pub object: String,
    /// What is wrong.
    pub message: String,
}

/// The outcome of a verification.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Damage found; empty when the repository is sound.
    pub errors: Vec<Problem>,
    /// Findings that do not make the repository unsound (such as packs left
    /// by an interrupted backup, which prune removes).
    pub warnings: Vec<String>,
    /// Backups checked.
    pub backups: u64,
    /// Index objects checked.
    pub indexes: u64,
    /// Packs in the repository.
    pub packs: u64,
    /// Packs whose data was read and checked.
    pub packs_read: u64,
    /// Blobs decoded and checked (trees always, data with `read_data`).
    pub blobs_checked: u64,
    /// Bytes downloaded by the data check.
    pub bytes_read: u64,
}

impl VerifyReport {
    /// Whether no damage was found.
    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }

    fn problem(&mut self, object: impl Into<String>, message: impl Into<String>) {
        self.errors.push(Problem {
            object: object.into(),
            message: message.into(),
        });
    }
}

/// What decoding an object found wrong: `Err` for damage that a second
/// read may not show (so that the object is read again), otherwise the
/// problem, if any.
fn decode_problem<T>(decoded: Result<T>) -> Result<Option<Error>> {
    match decoded {
        Ok(_) => Ok(None),
        Err(error @ Error::Corrupt { .. }) => Err(error),
        Err(other) => Ok(Some(other)),
    }
}

/// Checks the repository; see [`Repository::verify`](crate::Repository::verify).
pub(crate) async fn run(repo: &Engine, options: &VerifyOptions) -> Result<VerifyReport> {
    let token = options.cancellation.as_ref();
    crate::engine::tracked(
        "verify",
        options.progress.clone(),
        token,
        |report: &VerifyReport| {
            if report.is_ok() {
                Phase::Completed
            } else {
                Phase::PartiallyFailed
            }
        },
        |tracker| async move { verify(repo, options, &tracker).await },
    )
    .await
}

async fn verify(repo: &Engine, options: &VerifyOptions, tracker: &Tracker) -> Result<VerifyReport> {
    let sink = repo.sink.as_ref();
    let key = repo.key();
    let mut report = VerifyReport::default();

    // Config and keys.
    // Read again when a check fails (a broken transfer is not damage); a
    // damaged object is a problem, a storage error ends the verification.
    let config = get_checked(sink, CONFIG_KEY, |bytes| {
        decode_problem(RepoConfig::from_object(bytes))
    });
    match config.await {
        Ok(None) => {}
        Ok(Some(error)) | Err(error @ Error::Corrupt { .. }) => {
            report.problem(CONFIG_KEY, error.to_string());
        }
        Err(error) => return Err(error),
    }
    for meta in sink.list(KEYS_PREFIX).await? {
        let key_file = get_checked(sink, &meta.key, |bytes| {
            decode_problem(KeyFile::from_object(&meta.key, bytes))
        });
        match key_file.await {
            Ok(None) => {}
            Ok(Some(error)) | Err(error @ Error::Corrupt { .. }) => {
                report.problem(&meta.key, error.to_string());
            }
            Err(error) => return Err(error),
        }
    }

    // Indexes, each on its own so that one damaged index does not hide
    // others; superseded ones are checked but not used, as readers do.
    let mut files = Vec::new();
    let mut index_damaged = false;
    let mut index_entries: HashMap<Id, Vec<BlobEntry>> = HashMap::new();
    for id in list_ids(sink, INDEX_PREFIX).await? {
        report.indexes += 1;
        let object = format!("{INDEX_PREFIX}{id}");
        let decoded = async {
            let bytes = repo.get_named(&object, &id).await?;
            let payload = envelope::open(&object, &bytes, ObjectKind::Index, key)?;
            IndexFile::decode(&object, &payload)
        }
        .await;
        match decoded {
            Ok(file) => files.push((id, file)),
            // Deleted by a concurrent prune after the list: not damage.
            Err(Error::NotFound { .. }) => report.indexes -= 1,
            Err(error) => {
                index_damaged = true;
                report.problem(object, error.to_string());
            }
        }
    }
    let superseded: HashSet<Id> = files
        .iter()
        .flat_map(|(_, file)| file.supersedes.iter().copied())
        .collect();
    let mut index = Index::default();
    let (marks, unreadable_marks) = crate::engine::marks::list_marks(repo).await?;
    let marks_unreadable = !unreadable_marks.is_empty();
    for key in unreadable_marks {
        // The error itself was a warning of the listing; what matters here
        // is that readers now take every pack in no index as doomed.
        report.problem(
            key,
            "deletion mark cannot be read: packs in no index are read as doomed until prune removes it",
        );
    }
    index.set_doomed(marks.into_iter().flat_map(|(_, mark)| mark.packs).collect());
    for (id, file) in files.iter().filter(|(id, _)| !superseded.contains(id)) {
        for pack in &file.packs {
            index_entries
                .entry(pack.id)
                .or_default()
                .extend(pack.blobs.iter().copied());
        }
        index.add_file(*id, file);
    }

    // Packs present versus packs indexed.
    let stored = list_packs(sink).await?;
    report.packs = stored.len() as u64;
    for (id, size) in index.packs() {
        match stored.get(id) {
            None => report.problem(pack::pack_key(id), "pack listed in the index is missing"),
            Some(actual) if actual != size => report.problem(
                pack::pack_key(id),
                format!("pack is {actual} bytes, the index says {size}: truncated or replaced"),
            ),
            Some(_) => {}
        }
    }
    let unindexed = stored
        .keys()
        .filter(|id| !index.packs().contains_key(id))
        .count();
    // Backups are checked against what readers can read: beyond the index
    // objects, doomed packs from their headers and, after a damaged index
    // object or mark (reported above), every pack in no index.
    repo.add_unlisted_packs(&mut index, index_damaged, marks_unreadable)
        .await?;
    if unindexed > 0 {
        report.warnings.push(format!(
            "{unindexed} pack(s) are not in any index (left by an interrupted backup; they are reused or removed by prune)"
        ));
    }

    // Backups and their trees.
    let mut trees_seen: HashSet<Vec<Id>> = HashSet::new();
    let manifests = list_ids(sink, MANIFEST_PREFIX).await?;
    let packs_to_read = read_data_selection(options, &stored);
    tracker.set_totals(
        (manifests.len() + packs_to_read.len()) as u64,
        packs_to_read.iter().map(|(_, size)| size).sum(),
    );
    let mut reported = 0;
    for id in manifests {
        report_new_problems(&report, tracker, &mut reported);
        tracker.file_done();
        tracker.set_current(format!("{MANIFEST_PREFIX}{id}"));
        report.backups += 1;
        let backup = match repo.load_backup(&id).await {
            Ok(backup) => backup,
            // Forgotten by a concurrent forget after the list: not damage.
            Err(Error::BackupNotFound { .. }) => {
                report.backups -= 1;
                continue;
            }
            Err(error) => {
                report.problem(format!("{MANIFEST_PREFIX}{id}"), error.to_string());
                continue;
            }
        };
        let mut stack = vec![("/".to_string(), backup.manifest.root.clone())];
        while let Some((path, ids)) = stack.pop() {
            if !trees_seen.insert(ids.clone()) {
                continue;
            }
            for chunk in &ids {
                if !index.readable(chunk) {
                    report.problem(
                        format!("{MANIFEST_PREFIX}{id}"),
                        format!("directory {path:?} uses tree chunk {chunk}, which is in no index"),
                    );
                }
            }
            let nodes = match repo.load_tree(&path, &ids).await {
                Ok(nodes) => nodes,
                Err(error) => {
                    report.problem(
                        problem_object(&error, &id),
                        format!("backup {}: directory {path:?}: {error}", id.short()),
                    );
                    continue;
                }
            };
            report.blobs_checked += ids.len() as u64;
            for node in nodes {
                let child = if path == "/" {
                    format!("/{}", node.name)
                } else {
                    format!("{path}/{}", node.name)
                };
                match node.kind {
                    NodeKind::Dir => stack.push((child, node.subtree.unwrap_or_default())),
                    NodeKind::File => {
                        if let Some(missing) =
                            node.content.iter().find(|chunk| !index.readable(chunk))
                        {
                            report.problem(
                                format!("{MANIFEST_PREFIX}{id}"),
                                format!("file {child:?} uses data chunk {missing}, which is in no index"),
                            );
                        }
                    }
                    NodeKind::Symlink => {}
                }
            }
        }
    }

    if options.read_data {
        let packs = packs_to_read;
        let results: Vec<(u64, u64, Vec<Problem>)> = futures::stream::iter(packs)
            .map(|(id, _)| {
                let expected = index_entries.get(&id).cloned();
                async move {
                    let checked = check_pack(repo, id, expected).await;
                    tracker.set_current(pack::pack_key(&id));
                    tracker.file_done();
                    tracker.bytes_done(checked.0);
                    checked
                }
            })
            .buffer_unordered(4)
            .collect()
            .await;
        for (bytes, blobs, problems) in results {
            report.packs_read += 1;
            report.bytes_read += bytes;
            report.blobs_checked += blobs;
            report.errors.extend(problems);
        }
    }
    report_new_problems(&report, tracker, &mut reported);
    Ok(report)
}

/// The packs a verification with `options` reads: all stored packs with
/// `read_data`, or a random share of them; none without.
fn read_data_selection(options: &VerifyOptions, stored: &HashMap<Id, u64>) -> Vec<(Id, u64)> {
    if !options.read_data {
        return Vec::new();
    }
    let share = options.read_data_share.unwrap_or(1.0).clamp(0.0, 1.0);
    let mut packs: Vec<(Id, u64)> = stored.iter().map(|(id, size)| (*id, *size)).collect();
    packs.sort();
    if share < 1.0 {
        let keep = ((packs.len() as f64 * share).ceil() as usize)
            .max(1)
            .min(packs.len());
        let mut order: Vec<(u64, (Id, u64))> = packs
            .into_iter()
            .map(|pack| (u64::from_le_bytes(crate::crypto::random_bytes()), pack))
            .collect();
        order.sort_by_key(|(rank, _)| *rank);
        packs = order.into_iter().take(keep).map(|(_, pack)| pack).collect();
    }
    packs
}

/// Reports the problems found since the last call (the first `reported`
/// are out) as failure events, each naming the damaged object.
fn report_new_problems(report: &VerifyReport, tracker: &Tracker, reported: &mut usize) {
    for problem in report.errors.iter().skip(*reported) {
        tracker.item_failed(&ItemFailure::new(
            problem.object.clone(),
            FailureKind::Corrupt,
            problem.message.clone(),
        ));
    }
    *reported = report.errors.len();
}

/// The object to blame for a tree that failed to load.
fn problem_object(error: &Error, backup: &Id) -> String {
    match error {
        Error::Corrupt { key, .. } | Error::NotFound { key } => key.clone(),
        _ => format!("{MANIFEST_PREFIX}{backup}"),
    }
}

/// Downloads one pack and checks everything in it.
async fn check_pack(
    repo: &Engine,
    id: Id,
    expected: Option<Vec<BlobEntry>>,
) -> (u64, u64, Vec<Problem>) {
    let object = pack::pack_key(&id);
    let mut problems = Vec::new();
    let bytes = match repo.sink.get(&object).await {
        Ok(bytes) => bytes,
        Err(error) => {
            problems.push(Problem {
                object,
                message: error.to_string(),
            });
            return (0, 0, problems);
        }
    };
    let size = bytes.len() as u64;
    let key = repo.key().cloned();
    let checked = tokio::task::spawn_blocking(move || {
        let mut problems = Vec::new();
        let actual = Id(Sha256::digest(&bytes).into());
        if actual != id {
            problems.push(Problem {
                object: object.clone(),
                message: format!(
                    "pack content hash is {actual}, expected {id} (its name): the pack is damaged"
                ),
            });
        }
        let header = match pack::read_header(&object, &bytes, key.as_ref()) {
            Ok(header) => header,
            Err(error) => {
                problems.push(Problem {
                    object,
                    message: error.to_string(),
                });
                return (0, problems);
            }
        };
        if let Some(expected) = expected {
            let listed: HashSet<_> = header.iter().collect();
            if let Some(entry) = expected.iter().find(|entry| !listed.contains(entry)) {
                problems.push(Problem {
                    object: object.clone(),
                    message: format!(
                        "the index lists blob {} at offset {} but the pack header does not",
                        entry.id, entry.offset
                    ),
                });
            }
        }
        let mut blobs = 0;
        for entry in &header {
            let start = entry.offset as usize;
            let stored = bytes
                .get(start..start + entry.stored_length as usize)
                .unwrap_or_default();
            match pack::decode_blob(&object, entry, stored, key.as_ref()) {
                Ok(_) => blobs += 1,
                Err(error) => problems.push(Problem {
                    object: object.clone(),
                    message: error.to_string(),
                }),
            }
        }
        (blobs, problems)
    })
    .await;
    match checked {
        Ok((blobs, found)) => {
            problems.extend(found);
            (size, blobs, problems)
        }
        Err(error) => {
            problems.push(Problem {
                object: pack::pack_key(&id),
                message: format!("check failed: {error}"),
            });
            (size, 0, problems)
        }
    }
}
