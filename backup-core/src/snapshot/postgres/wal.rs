//! The WAL archive of a set of base backups: segments pushed by
//! PostgreSQL's `archive_command`, fetched by its `restore_command`, kept
//! as long as a kept base backup needs them, and checked for gaps.
//!
//! Each archived file is a backup of its own in the set `<SET>/wal` (one
//! file, named as PostgreSQL names it), so that it is stored, deduplicated,
//! encrypted, verified and pruned as every backup is, and repositories
//! written by earlier versions read it without a format change.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::Path;

use async_trait::async_trait;
use sha2::{Digest, Sha256};

use super::facts::{format_lsn, parse_lsn, segment_name};
use crate::format::manifest::{Backup, BackupStatus, SourceInfo};
use crate::repository::Repository;
use crate::retention::{Decision, RetentionPolicy};
use crate::snapshot::{Entry, Snapshot, Snapshotter};
use crate::{BackupOptions, Error, ForgetOptions, ParentSelection, Result};

/// The snapshotter kind of an archived WAL file.
pub const WAL_KIND: &str = "postgres-wal";

/// The set a base backup set's WAL is archived in: `<set>/wal`.
pub fn wal_set(base_set: &str) -> String {
    format!("{base_set}/wal")
}

/// What kind of file PostgreSQL archived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WalFile {
    /// `TTTTTTTTXXXXXXXXYYYYYYYY`: a segment of timeline T.
    Segment { timeline: u32, number: u64 },
    /// `TTTTTTTT.history`: a timeline's history.
    History,
    /// `<segment>.<offset>.backup`: a base backup's history file.
    BackupHistory { number: u64 },
    /// `<segment>.partial`: the last, partial segment of a timeline.
    Partial { number: u64 },
}

/// The number of a segment name's segment (`XXXXXXXXYYYYYYYY`), counted in
/// segments of `segment_size`.
fn segment_number(name: &str, segment_size: u64) -> Option<(u32, u64)> {
    if name.len() != 24 || !name.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let timeline = u32::from_str_radix(&name[..8], 16).ok()?;
    let log = u64::from_str_radix(&name[8..16], 16).ok()?;
    let seg = u64::from_str_radix(&name[16..24], 16).ok()?;
    let per_log = 0x1_0000_0000 / segment_size.max(1 << 20);
    Some((timeline, log * per_log + seg))
}

fn classify(name: &str, segment_size: u64) -> Option<WalFile> {
    if let Some((timeline, number)) = segment_number(name, segment_size) {
        return Some(WalFile::Segment { timeline, number });
    }
    if let Some(timeline) = name.strip_suffix(".history") {
        return (timeline.len() == 8 && timeline.bytes().all(|b| b.is_ascii_hexdigit()))
            .then_some(WalFile::History);
    }
    if let Some(segment) = name.strip_suffix(".partial") {
        let (_, number) = segment_number(segment, segment_size)?;
        return Some(WalFile::Partial { number });
    }
    if let Some(rest) = name.strip_suffix(".backup") {
        let (segment, offset) = rest.split_once('.')?;
        if offset.len() == 8 && offset.bytes().all(|b| b.is_ascii_hexdigit()) {
            let (_, number) = segment_number(segment, segment_size)?;
            return Some(WalFile::BackupHistory { number });
        }
    }
    None
}

/// One archived WAL file.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ArchivedWal {
    /// Its name, as PostgreSQL names it.
    pub name: String,
    /// Its size in bytes.
    pub size: u64,
    /// SHA-256 of its contents, hexadecimal.
    pub sha256: String,
    /// The backup that holds it.
    pub backup: Backup,
}

/// A run of WAL segments missing from the archive.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct WalGap {
    /// The first missing segment.
    pub first: String,
    /// The last missing segment.
    pub last: String,
    /// How many segments are missing.
    pub segments: u64,
}

/// What [`WalArchive::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WalPush {
    /// The file was stored.
    Stored,
    /// The same contents were archived before: nothing was written.
    AlreadyArchived,
}

/// One base backup set's WAL archive in a repository: what `backupctl
/// wal-push` and `wal-fetch` run.
///
/// # Examples
///
/// ```
/// use backup_core::wal_set;
/// assert_eq!(wal_set("pg"), "pg/wal");
/// ```
#[derive(Debug)]
pub struct WalArchive<'a> {
    repo: &'a Repository,
    base_set: String,
    segment_size: u64,
}

impl<'a> WalArchive<'a> {
    /// The archive of the base backups of `base_set`, with 16 MiB segments
    /// unless [`with_segment_size`](Self::with_segment_size) says otherwise.
    pub fn new(repo: &'a Repository, base_set: impl Into<String>) -> WalArchive<'a> {
        WalArchive {
            repo,
            base_set: base_set.into(),
            segment_size: 16 << 20,
        }
    }

    /// The server's `wal_segment_size` (a power of two, 1 MiB to 1 GiB).
    pub fn with_segment_size(mut self, bytes: u64) -> Self {
        self.segment_size = bytes;
        self
    }

    /// The set the WAL is archived in.
    pub fn set(&self) -> String {
        wal_set(&self.base_set)
    }

    /// Every archived file, oldest first by name.
    ///
    /// # Errors
    ///
    /// As [`Repository::list`].
    pub async fn files(&self) -> Result<Vec<ArchivedWal>> {
        Ok(self.files_in(self.repo.list().await?))
    }

    /// The archived files among `backups`, oldest first by name.
    fn files_in(&self, backups: Vec<Backup>) -> Vec<ArchivedWal> {
        let set = self.set();
        let mut files: Vec<ArchivedWal> = backups
            .into_iter()
            .filter(|backup| {
                backup.manifest.set == set
                    && backup.manifest.source.kind == WAL_KIND
                    && backup.manifest.status == BackupStatus::Completed
            })
            .filter_map(|backup| {
                let facts = &backup.manifest.facts;
                Some(ArchivedWal {
                    name: facts.get("wal_file")?.as_str()?.to_string(),
                    size: facts.get("size")?.as_u64()?,
                    sha256: facts.get("sha256")?.as_str()?.to_string(),
                    backup,
                })
            })
            .collect();
        files.sort_by(|a, b| a.name.cmp(&b.name));
        files
    }

    /// Archives the WAL file at `path` (what `archive_command` gives as
    /// `%p`), returning only once it is durably stored. The same contents
    /// pushed again succeed without writing; other contents under a name
    /// already archived fail, and nothing is written.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a name that is not a WAL file's,
    /// [`Error::Snapshot`] for other contents under an archived name, and
    /// the errors of reading the file and of [`Repository::backup`].
    pub async fn push(&self, path: &Path) -> Result<WalPush> {
        let name = path
            .file_name()
            .and_then(|name| name.to_str())
            .ok_or_else(|| {
                Error::InvalidArgument(format!("{}: not a WAL file's name", path.display()))
            })?
            .to_string();
        let kind = classify(&name, self.segment_size).ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{name:?} is not the name of a WAL segment, history or backup history file"
            ))
        })?;
        let contents = tokio::fs::read(path)
            .await
            .map_err(|error| Error::io("reading a WAL file", path, error))?;
        let sha256 = hex::encode(Sha256::digest(&contents));
        let archived: Vec<ArchivedWal> = self
            .files()
            .await?
            .into_iter()
            .filter(|file| file.name == name)
            .collect();
        if archived.iter().any(|file| file.sha256 == sha256) {
            return Ok(WalPush::AlreadyArchived);
        }
        if let Some(other) = archived.first() {
            return Err(Error::Snapshot {
                source_name: format!("WAL file {name}"),
                detail: format!(
                    "it is already archived in set {:?} with other contents (sha256 {} in backup \
                     {}, this one {sha256}): refusing to archive it twice; two servers may be \
                     archiving into one set",
                    self.set(),
                    other.sha256,
                    other.backup.id
                ),
            });
        }
        let mut facts = BTreeMap::new();
        facts.insert(
            "wal_file".to_string(),
            serde_json::Value::from(name.clone()),
        );
        facts.insert("sha256".into(), sha256.into());
        facts.insert("size".into(), (contents.len() as u64).into());
        match kind {
            WalFile::Segment { timeline, number } => {
                facts.insert("timeline".into(), timeline.into());
                facts.insert("segment".into(), number.into());
                facts.insert("type".into(), "segment".into());
            }
            WalFile::History => {
                facts.insert("type".into(), "history".into());
            }
            WalFile::BackupHistory { number } => {
                facts.insert("segment".into(), number.into());
                facts.insert("type".into(), "backup_history".into());
            }
            WalFile::Partial { number } => {
                facts.insert("segment".into(), number.into());
                facts.insert("type".into(), "partial".into());
            }
        }
        let source = WalFileSource {
            name,
            contents: std::sync::Mutex::new(Some(contents)),
            facts,
        };
        let mut options = BackupOptions::default().with_set(self.set());
        options.parent = ParentSelection::None;
        self.repo.backup(&source, options).await?;
        Ok(WalPush::Stored)
    }

    /// Writes the archived file `name` (what `restore_command` gives as
    /// `%f`) to `to` (its `%p`), through a temporary name beside it, its
    /// SHA-256 checked. Returns `false` when it is not archived (the end of
    /// the archive, for PostgreSQL).
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] when the stored contents do not hash as archived,
    /// [`Error::Snapshot`] when two different files were archived under the
    /// name, and storage and I/O errors.
    pub async fn fetch(&self, name: &str, to: &Path) -> Result<bool> {
        let archived: Vec<ArchivedWal> = self
            .files()
            .await?
            .into_iter()
            .filter(|file| file.name == name)
            .collect();
        let Some(file) = archived.first() else {
            return Ok(false);
        };
        if archived.iter().any(|other| other.sha256 != file.sha256) {
            return Err(Error::Snapshot {
                source_name: format!("WAL file {name}"),
                detail: format!(
                    "set {:?} holds it with different contents (backups {}): refusing to guess",
                    self.set(),
                    archived
                        .iter()
                        .map(|file| file.backup.id.short())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        let parent = to
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        let temporary = parent.join(format!(".{name}.fetching-{}", std::process::id()));
        let written = async {
            let reader = self.repo.open_file(&file.backup, name).await?;
            let mut out = tokio::fs::File::create(&temporary)
                .await
                .map_err(|error| Error::io("creating a fetched WAL file", &temporary, error))?;
            reader.copy_to(&mut out).await?;
            out.sync_all()
                .await
                .map_err(|error| Error::io("syncing a fetched WAL file", &temporary, error))?;
            drop(out);
            let contents = tokio::fs::read(&temporary)
                .await
                .map_err(|error| Error::io("reading a fetched WAL file", &temporary, error))?;
            let sha256 = hex::encode(Sha256::digest(&contents));
            if sha256 != file.sha256 {
                return Err(Error::corrupt(
                    format!("backup {}", file.backup.id),
                    0,
                    format!(
                        "WAL file {name} hashes to {sha256}, archived as {}",
                        file.sha256
                    ),
                ));
            }
            tokio::fs::rename(&temporary, to)
                .await
                .map_err(|error| Error::io("renaming a fetched WAL file", to, error))
        }
        .await;
        if written.is_err() {
            let _ = tokio::fs::remove_file(&temporary).await;
        }
        written.map(|()| true)
    }

    /// The completed physical base backups of the set among `backups`,
    /// oldest first.
    fn base_backups_in(&self, backups: &[Backup]) -> Vec<Backup> {
        let mut bases: Vec<Backup> = backups
            .iter()
            .filter(|backup| is_base_backup(backup, &self.base_set))
            .cloned()
            .collect();
        bases.sort_by_key(|backup| backup.manifest.time);
        bases
    }

    /// The first segment the oldest base backup needs, as a number.
    fn first_needed(&self, bases: &[Backup]) -> Option<u64> {
        bases
            .iter()
            .filter_map(|backup| backup.manifest.facts.get("wal_start")?.as_str())
            .filter_map(|name| segment_number(name, self.segment_size))
            .map(|(_, number)| number)
            .min()
    }

    /// The segments missing between the oldest base backup's first
    /// segment and the newest archived one: each gap is a stretch of time
    /// no restore can reach past.
    ///
    /// # Errors
    ///
    /// As [`Repository::list`].
    pub async fn gaps(&self) -> Result<Vec<WalGap>> {
        // One listing for both the base backups and the archived files.
        let backups = self.repo.list().await?;
        let bases = self.base_backups_in(&backups);
        let files = self.files_in(backups);
        let mut present = BTreeSet::new();
        let mut timeline_at = BTreeMap::new();
        for file in &files {
            if let Some(WalFile::Segment { timeline, number }) =
                classify(&file.name, self.segment_size)
            {
                present.insert(number);
                timeline_at.insert(number, timeline);
            }
        }
        let Some(&last) = present.iter().next_back() else {
            return Ok(Vec::new());
        };
        let first = self
            .first_needed(&bases)
            .or_else(|| present.iter().next().copied())
            .unwrap_or(last);
        let timeline_of = |number: u64| {
            timeline_at
                .range(..=number)
                .next_back()
                .map_or(1, |(_, timeline)| *timeline)
        };
        let name_of = |number: u64| {
            segment_name(
                timeline_of(number),
                number * self.segment_size,
                self.segment_size,
            )
        };
        let mut gaps = Vec::new();
        let mut number = first;
        while number <= last {
            if present.contains(&number) {
                number += 1;
                continue;
            }
            let start = number;
            while number <= last && !present.contains(&number) {
                number += 1;
            }
            gaps.push(WalGap {
                first: name_of(start),
                last: name_of(number - 1),
                segments: number - start,
            });
        }
        Ok(gaps)
    }

    /// Forgets the archived WAL that no kept base backup needs: segments
    /// (and their partial and backup history files) before the first
    /// segment of the oldest completed base backup of the set. Timeline
    /// history files are always kept. Run it after the base backups' own
    /// retention; with no base backup, nothing is forgotten.
    ///
    /// # Errors
    ///
    /// As [`Repository::forget_matching`].
    pub async fn apply_retention(
        &self,
        options: &ForgetOptions,
    ) -> Result<Vec<(Backup, Decision)>> {
        let bases = self.base_backups_in(&self.repo.list().await?);
        let Some(first) = self.first_needed(&bases) else {
            return Ok(Vec::new());
        };
        let policy = WalRetention {
            first,
            segment_size: self.segment_size,
        };
        let set = self.set();
        self.repo
            .forget_matching(&policy, chrono::Utc::now(), options, |backup| {
                backup.manifest.set == set && backup.manifest.source.kind == WAL_KIND
            })
            .await
    }
}

/// Whether `backup` is a completed physical base backup of `set`.
pub(crate) fn is_base_backup(backup: &Backup, set: &str) -> bool {
    backup.manifest.set == set
        && backup.manifest.source.kind == "postgres"
        && backup.manifest.status == BackupStatus::Completed
        && backup
            .manifest
            .facts
            .get("mode")
            .and_then(serde_json::Value::as_str)
            == Some("physical")
}

/// Keeps WAL from segment `first` on, and every history file.
struct WalRetention {
    first: u64,
    segment_size: u64,
}

impl RetentionPolicy for WalRetention {
    fn decide(&self, backups: &[Backup], _now: chrono::DateTime<chrono::Utc>) -> Vec<Decision> {
        backups
            .iter()
            .map(|backup| {
                let name = backup
                    .manifest
                    .facts
                    .get("wal_file")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("");
                let (keep, reason) = match classify(name, self.segment_size) {
                    Some(WalFile::History) => (true, "timeline history".to_string()),
                    Some(
                        WalFile::Segment { number, .. }
                        | WalFile::Partial { number }
                        | WalFile::BackupHistory { number },
                    ) if number < self.first => (
                        false,
                        format!(
                            "before the oldest kept base backup's first segment ({})",
                            format_lsn(self.first * self.segment_size)
                        ),
                    ),
                    Some(_) => (true, "needed by a kept base backup".to_string()),
                    None => (true, "not a WAL file name".to_string()),
                };
                Decision {
                    id: backup.id,
                    keep,
                    reasons: vec![reason],
                }
            })
            .collect()
    }
}

/// Where a point-in-time restore stops.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RecoveryTarget {
    /// Replay every archived segment (the newest state).
    Latest,
    /// Stop at this time (`recovery_target_time`): transactions committed
    /// at or before it are kept.
    Time(chrono::DateTime<chrono::Utc>),
    /// Stop at this WAL position (`recovery_target_lsn`, `X/Y`).
    Lsn(String),
}

impl RecoveryTarget {
    /// The settings PostgreSQL takes for it.
    pub(crate) fn settings(&self) -> Vec<(String, String)> {
        match self {
            RecoveryTarget::Latest => Vec::new(),
            RecoveryTarget::Time(time) => vec![(
                "recovery_target_time".into(),
                time.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
            )],
            RecoveryTarget::Lsn(lsn) => vec![("recovery_target_lsn".into(), lsn.clone())],
        }
    }
}

/// The newest completed physical base backup of `set` from which
/// `target` can be reached: one that ended before the target time, or whose
/// end position is at or before the target position.
///
/// # Errors
///
/// [`Error::InvalidArgument`] for an unreadable position,
/// [`Error::BackupNotFound`] when no base backup ended early enough.
pub async fn base_backup_for(
    repo: &Repository,
    set: &str,
    target: &RecoveryTarget,
) -> Result<Backup> {
    let wanted_lsn = match target {
        RecoveryTarget::Lsn(lsn) => Some(parse_lsn(lsn).ok_or_else(|| {
            Error::InvalidArgument(format!("{lsn:?} is not a WAL position (X/Y, hexadecimal)"))
        })?),
        _ => None,
    };
    let mut bases: Vec<Backup> = repo
        .list()
        .await?
        .into_iter()
        .filter(|backup| is_base_backup(backup, set))
        .filter(|backup| match target {
            RecoveryTarget::Latest => true,
            RecoveryTarget::Time(time) => backup.manifest.finished <= *time,
            RecoveryTarget::Lsn(_) => backup
                .manifest
                .facts
                .get("stop_lsn")
                .and_then(serde_json::Value::as_str)
                .and_then(parse_lsn)
                .zip(wanted_lsn)
                .is_some_and(|(stop, wanted)| stop <= wanted),
        })
        .collect();
    bases.sort_by_key(|backup| backup.manifest.time);
    bases.pop().ok_or_else(|| Error::BackupNotFound {
        selector: match target {
            RecoveryTarget::Latest => format!("a base backup of set {set:?}"),
            RecoveryTarget::Time(time) => {
                format!("a base backup of set {set:?} that ended before {time}")
            }
            RecoveryTarget::Lsn(lsn) => {
                format!("a base backup of set {set:?} that ended at or before {lsn}")
            }
        },
    })
}

/// One archived WAL file, as a snapshot.
struct WalFileSource {
    name: String,
    contents: std::sync::Mutex<Option<Vec<u8>>>,
    facts: BTreeMap<String, serde_json::Value>,
}

#[async_trait]
impl Snapshotter for WalFileSource {
    fn kind(&self) -> &str {
        WAL_KIND
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let contents = self
            .contents
            .lock()
            .ok()
            .and_then(|mut contents| contents.take())
            .unwrap_or_default();
        let mut snapshot = Snapshot::new(
            vec![Entry::Stream {
                name: self.name.clone(),
                reader: Box::new(Cursor::new(contents)),
                mode: 0o600,
            }],
            SourceInfo {
                kind: WAL_KIND.into(),
                paths: vec![self.name.clone()],
            },
        );
        snapshot.facts = self.facts.clone();
        Ok(snapshot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wal_file_names_are_told_apart() {
        let size = 16 << 20;
        assert_eq!(
            classify("000000010000000100000003", size),
            Some(WalFile::Segment {
                timeline: 1,
                number: 0x103
            })
        );
        assert_eq!(classify("00000002.history", size), Some(WalFile::History));
        assert_eq!(
            classify("000000010000000000000002.00000028.backup", size),
            Some(WalFile::BackupHistory { number: 2 })
        );
        assert_eq!(
            classify("000000010000000000000005.partial", size),
            Some(WalFile::Partial { number: 5 })
        );
        for bad in [
            "postgresql.conf",
            "0000000100000000000000",
            "../etc/passwd",
            "x.history",
        ] {
            assert_eq!(classify(bad, size), None, "{bad}");
        }
    }

    #[test]
    fn recovery_targets_become_postgresql_settings() {
        let time = chrono::DateTime::parse_from_rfc3339("2026-12-07T14:16:10.5Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        assert_eq!(
            RecoveryTarget::Time(time).settings(),
            [(
                "recovery_target_time".to_string(),
                "2026-12-07 14:16:10.500000+00".to_string()
            )]
        );
        assert!(RecoveryTarget::Latest.settings().is_empty());
    }
}
