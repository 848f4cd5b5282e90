//! The restore side of a snapshotter: puts a backup back into a store.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::format::manifest::Backup;
use crate::repository::Repository;
use crate::{Error, Result};

/// Puts a backup made by one kind of [`Snapshotter`](crate::Snapshotter)
/// back into a store: an etcd member's data directory, a stopped Redis's
/// `dump.rdb`, a directory, a command's standard input.
///
/// Call it through [`Repository::restore_into`], which checks the kind first.
///
/// # Contract
///
/// * [`kind`](Restorer::kind) is the [`Snapshotter::kind`](crate::Snapshotter::kind)
///   whose backups it restores; a backup of another kind is refused with
///   [`Error::RestoreRefused`] before anything is read or written
///   ([`Repository::restore_into`] does this).
/// * Before writing anything, `restore` refuses a target that is not empty
///   (an existing data directory with files in it, a file it would replace)
///   and a backup whose recorded version the target cannot take, with
///   [`Error::RestoreRefused`] naming the target and the reason.
/// * It checks the store's own integrity format (etcd's trailer, the RDB's
///   checksum) of what it restores before the store sees it, and reports a
///   mismatch as [`Error::Corrupt`].
/// * It leaves nothing half-written under the final name: a restore that
///   fails removes what it wrote, so that it can be run again.
/// * It writes only under the target it was given.
#[async_trait]
pub trait Restorer: Send + Sync {
    /// The kind of snapshotter whose backups this restores.
    fn kind(&self) -> &str;

    /// Restores `backup`, read from `repo`.
    ///
    /// # Errors
    ///
    /// [`Error::RestoreRefused`] before anything is written; storage,
    /// corruption and I/O errors, and the store tool's own message when it
    /// fails.
    async fn restore(&self, repo: &Repository, backup: &Backup) -> Result<StoreRestore>;
}

/// What a [`Restorer`] did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct StoreRestore {
    /// The kind restored (`etcd`, `redis`, ...).
    pub kind: String,
    /// Where: a data directory, a file.
    pub target: PathBuf,
    /// Bytes of the backup written there.
    pub bytes: u64,
    /// What the store needs to know next (the member name, the files
    /// written, a command to run).
    pub details: BTreeMap<String, serde_json::Value>,
}

impl StoreRestore {
    /// A report of `bytes` restored to `target`.
    pub fn new(kind: impl Into<String>, target: impl Into<PathBuf>, bytes: u64) -> StoreRestore {
        StoreRestore {
            kind: kind.into(),
            target: target.into(),
            bytes,
            details: BTreeMap::new(),
        }
    }

    /// Adds a detail.
    pub fn with_detail(
        mut self,
        key: impl Into<String>,
        value: impl Into<serde_json::Value>,
    ) -> Self {
        self.details.insert(key.into(), value.into());
        self
    }
}

/// Refuses `backup` unless a snapshotter of `kind` made it.
pub(crate) fn check_kind(backup: &Backup, kind: &str, target: &str) -> Result<()> {
    let made_by = &backup.manifest.source.kind;
    if made_by == kind {
        return Ok(());
    }
    Err(Error::RestoreRefused {
        target: target.to_string(),
        reason: format!(
            "backup {} was made by the {made_by:?} snapshotter, and this restorer restores \
             {kind:?} backups",
            backup.id
        ),
    })
}

/// Refuses a directory that exists and is not empty; an absent one is fine.
///
/// # Errors
///
/// [`Error::RestoreRefused`] for a non-empty directory or a path that is
/// not a directory, [`Error::Io`] when it cannot be read.
pub(crate) fn require_empty_dir(dir: &Path) -> Result<()> {
    let refused = |reason: String| Error::RestoreRefused {
        target: dir.display().to_string(),
        reason,
    };
    match std::fs::symlink_metadata(dir) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(Error::io("reading the restore target", dir, error)),
        Ok(meta) if !meta.is_dir() => Err(refused("it exists and is not a directory".into())),
        Ok(_) => {
            let mut entries = std::fs::read_dir(dir)
                .map_err(|error| Error::io("reading the restore target", dir, error))?;
            match entries.next() {
                None => Ok(()),
                Some(entry) => {
                    let name = entry
                        .map(|entry| entry.file_name().to_string_lossy().into_owned())
                        .unwrap_or_default();
                    Err(refused(format!(
                        "the directory is not empty (it holds {name:?}); restore into an empty or \
                         new directory"
                    )))
                }
            }
        }
    }
}

/// Removes everything in `dir`, leaving it empty: how a restore that failed
/// leaves a data directory as it found it. Best effort.
#[cfg(any(feature = "postgres", feature = "mariadb", feature = "cassandra"))]
pub(crate) fn clear_dir(dir: &Path) {
    if let Ok(children) = std::fs::read_dir(dir) {
        for child in children.flatten() {
            let path = child.path();
            let _ = if path.is_dir() && !path.is_symlink() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
}

/// Writes one stored file of `backup` to `target` through a temporary name
/// beside it, synced, then renamed into place; returns the bytes written.
/// `target` must not exist.
#[cfg(any(feature = "etcd", feature = "redis"))]
pub(crate) async fn write_stored_file(
    repo: &Repository,
    backup: &Backup,
    stored: &str,
    target: &Path,
    mode: u32,
) -> Result<u64> {
    use std::os::unix::fs::OpenOptionsExt;
    let parent = target.parent().unwrap_or_else(|| Path::new("."));
    let name = target
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temporary = parent.join(format!(".{name}.restoring-{}", std::process::id()));
    let reader = repo.open_file(backup, stored).await?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&temporary)
        .map_err(|error| Error::io("creating a restored file", &temporary, error))?;
    let mut file = tokio::fs::File::from_std(file);
    let written = async {
        let written = reader.copy_to(&mut file).await?;
        file.sync_all()
            .await
            .map_err(|error| Error::io("syncing a restored file", &temporary, error))?;
        drop(file);
        if std::fs::symlink_metadata(target).is_ok() {
            return Err(Error::RestoreRefused {
                target: target.display().to_string(),
                reason: "it appeared while the restore ran".into(),
            });
        }
        std::fs::rename(&temporary, target)
            .map_err(|error| Error::io("renaming a restored file", target, error))?;
        Ok(written)
    }
    .await;
    if written.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    written
}

/// [`Repository::restore`] that fails with the first item it could not
/// restore (the others are in the error's log lines): how a restorer
/// writes the stored tree it needs whole.
///
/// # Errors
///
/// As [`Repository::restore`], and [`Error::Io`] for the first failure.
pub(crate) async fn restore_all(
    repo: &Repository,
    backup: &Backup,
    target: &Path,
    options: &crate::RestoreOptions,
) -> Result<crate::RestoreSummary> {
    let summary = repo.restore(backup, target, options).await?;
    if let Some(failure) = summary.failures.first() {
        return Err(Error::Io {
            context: "restoring a file",
            path: target.join(&failure.path),
            source: std::io::Error::other(failure.message.clone()),
        });
    }
    Ok(summary)
}

/// Restores a directory backup into an empty or new directory: the
/// restorer of [`DirectorySnapshotter`](crate::DirectorySnapshotter)'s
/// backups ([`Repository::restore`] is the same without the kind and
/// emptiness checks, for restoring into a tree that already has files).
///
/// A restore in which some files could not be written fails with the first
/// failure's message; the others are in the error's log lines.
#[derive(Debug, Clone)]
pub struct DirectoryRestorer {
    target: PathBuf,
    options: crate::RestoreOptions,
}

impl DirectoryRestorer {
    /// A restore under `target`.
    pub fn new(target: impl Into<PathBuf>) -> DirectoryRestorer {
        DirectoryRestorer {
            target: target.into(),
            options: crate::RestoreOptions::default(),
        }
    }

    /// Sets the restore options (a subset by glob, progress, cancellation).
    pub fn with_options(mut self, options: crate::RestoreOptions) -> Self {
        self.options = options;
        self
    }
}

#[async_trait]
impl Restorer for DirectoryRestorer {
    fn kind(&self) -> &str {
        "directory"
    }

    async fn restore(&self, repo: &Repository, backup: &Backup) -> Result<StoreRestore> {
        require_empty_dir(&self.target)?;
        let summary = restore_all(repo, backup, &self.target, &self.options).await?;
        Ok(StoreRestore::new("directory", &self.target, summary.bytes)
            .with_detail("files", summary.files)
            .with_detail("dirs", summary.dirs)
            .with_detail("symlinks", summary.symlinks))
    }
}

/// Restores a command backup by running a command with the stored output
/// on its standard input (`pg_restore -d app`, `mariadb app`): the
/// restorer of [`CommandSnapshotter`](crate::CommandSnapshotter)'s backups.
/// The restore fails with the command's exit status and the end of its
/// standard error when it exits non-zero.
#[derive(Debug, Clone)]
pub struct CommandRestorer {
    program: String,
    args: Vec<String>,
}

impl CommandRestorer {
    /// A restorer running `program` with `args` (no shell).
    pub fn new<I, S>(program: impl Into<String>, args: I) -> CommandRestorer
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        CommandRestorer {
            program: program.into(),
            args: args.into_iter().map(Into::into).collect(),
        }
    }
}

#[async_trait]
impl Restorer for CommandRestorer {
    fn kind(&self) -> &str {
        "command"
    }

    async fn restore(&self, repo: &Repository, backup: &Backup) -> Result<StoreRestore> {
        let entries = repo.ls(backup).await?;
        let stored = match entries.as_slice() {
            [only] => only.path.clone(),
            _ => {
                return Err(Error::RestoreRefused {
                    target: self.program.clone(),
                    reason: format!(
                        "backup {} holds {} entries, not one command's output",
                        backup.id,
                        entries.len()
                    ),
                })
            }
        };
        let reader = repo.open_file(backup, &stored).await?;
        let mut child = tokio::process::Command::new(&self.program)
            .args(&self.args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::inherit())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|error| Error::io("starting the restore command", &self.program, error))?;
        let mut stdin = child.stdin.take();
        let mut fed = Ok(0);
        if let Some(stdin) = stdin.as_mut() {
            fed = reader.copy_to(stdin).await;
        }
        drop(stdin);
        let output = child
            .wait_with_output()
            .await
            .map_err(|error| Error::io("waiting for the restore command", &self.program, error))?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(Error::Snapshot {
                source_name: format!("restore command {}", self.program),
                detail: format!(
                    "it exited with {}: {}",
                    output.status,
                    stderr[stderr.len().saturating_sub(2048)..].trim()
                ),
            });
        }
        let bytes = fed?;
        Ok(StoreRestore::new("command", &self.program, bytes).with_detail("file", stored))
    }
}

/// Reads the file at `path` in 1 MiB blocks, handing each to `each`: how a
/// restorer checks a store's integrity format on the file it wrote.
#[cfg(any(feature = "etcd", feature = "redis"))]
pub(crate) fn read_blocks(
    path: &Path,
    mut each: impl FnMut(&[u8]) -> std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)
        .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let read = file
            .read(&mut buffer)
            .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        if read == 0 {
            return Ok(());
        }
        each(&buffer[..read])?;
    }
}

/// The first `name` that is a file in a directory of the `PATH`: the store's
/// own tool a restorer runs or asks for its version.
#[cfg(any(feature = "etcd", feature = "redis"))]
pub(crate) fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}
