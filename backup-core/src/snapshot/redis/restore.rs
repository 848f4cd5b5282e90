//! Restoring an RDB into a stopped Redis server's data directory.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::rdb;
use crate::format::manifest::Backup;
use crate::repository::Repository;
use crate::snapshot::restorer::{find_in_path, write_stored_file, Restorer, StoreRestore};
use crate::{Error, Result};

/// Restores a Redis backup: its RDB written as `dump.rdb` (or the given
/// `dbfilename`) into a stopped server's data directory, checked (header
/// and CRC-64) before it takes its final name.
///
/// Refused before anything is written: a data directory that already holds
/// the RDB file or an append-only file (`appendonlydir`,
/// `appendonly.aof`), a configuration file that says `appendonly yes`
/// (an empty AOF would win over the restored RDB at start, and the data
/// would be lost: start with `appendonly no`, then `CONFIG SET appendonly
/// yes` and `CONFIG REWRITE`), and an RDB version newer than the installed
/// `redis-server` loads.
///
/// # Examples
///
/// ```
/// use backup_core::RedisRestorer;
/// let restore = RedisRestorer::new("/var/lib/redis").with_config("/etc/redis/redis.conf");
/// assert_eq!(restore.target().to_str(), Some("/var/lib/redis/dump.rdb"));
/// ```
#[derive(Debug, Clone)]
pub struct RedisRestorer {
    data_dir: PathBuf,
    dbfilename: String,
    config: Option<PathBuf>,
    server: Option<PathBuf>,
}

impl RedisRestorer {
    /// A restore into `data_dir` (the server's `dir`).
    pub fn new(data_dir: impl Into<PathBuf>) -> RedisRestorer {
        RedisRestorer {
            data_dir: data_dir.into(),
            dbfilename: super::REDIS_SNAPSHOT_FILE.into(),
            config: None,
            server: None,
        }
    }

    /// The file name the server loads (its `dbfilename`, default `dump.rdb`).
    pub fn with_dbfilename(mut self, name: impl Into<String>) -> Self {
        self.dbfilename = name.into();
        self
    }

    /// The server's configuration file, checked for `appendonly yes`.
    pub fn with_config(mut self, config: impl Into<PathBuf>) -> Self {
        self.config = Some(config.into());
        self
    }

    /// The `redis-server` whose version the RDB must suit (default: the
    /// one on the `PATH`, when there is one).
    pub fn with_server(mut self, server: impl Into<PathBuf>) -> Self {
        self.server = Some(server.into());
        self
    }

    /// The file the restore writes.
    pub fn target(&self) -> PathBuf {
        self.data_dir.join(&self.dbfilename)
    }

    fn refused(&self, reason: impl Into<String>) -> Error {
        Error::RestoreRefused {
            target: self.data_dir.display().to_string(),
            reason: reason.into(),
        }
    }

    fn check_target(&self) -> Result<()> {
        for name in [self.dbfilename.as_str(), "appendonlydir", "appendonly.aof"] {
            let path = self.data_dir.join(name);
            if std::fs::symlink_metadata(&path).is_ok() {
                return Err(self.refused(format!(
                    "{} exists: restore into a stopped server's empty data directory (move it away first)",
                    path.display()
                )));
            }
        }
        if let Some(config) = &self.config {
            let text = std::fs::read_to_string(config)
                .map_err(|error| Error::io("reading the Redis configuration", config, error))?;
            let appendonly = text.lines().rev().find_map(|line| {
                let mut words = line.split_whitespace();
                match (words.next(), words.next()) {
                    (Some(key), Some(value)) if key.eq_ignore_ascii_case("appendonly") => {
                        Some(value.trim_matches('"').eq_ignore_ascii_case("yes"))
                    }
                    _ => None,
                }
            });
            if appendonly == Some(true) {
                return Err(self.refused(format!(
                    "{} says `appendonly yes`: at start the server would load an empty \
                     append-only file instead of the restored RDB, and the data would be lost. \
                     Set `appendonly no`, start the server, then `CONFIG SET appendonly yes` and \
                     `CONFIG REWRITE`",
                    config.display()
                )));
            }
        }
        Ok(())
    }

    fn server_version(&self) -> Option<(u32, u32)> {
        let server = self
            .server
            .clone()
            .or_else(|| find_in_path("redis-server"))?;
        let output = std::process::Command::new(server)
            .arg("--version")
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let version = text
            .split_whitespace()
            .find_map(|word| word.strip_prefix("v="))?;
        let mut parts = version.split('.');
        Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
    }
}

#[async_trait]
impl Restorer for RedisRestorer {
    fn kind(&self) -> &str {
        "redis"
    }

    async fn restore(&self, repo: &Repository, backup: &Backup) -> Result<StoreRestore> {
        crate::format::tree::validate_name(&self.dbfilename)?;
        self.check_target()?;
        let recorded = backup
            .manifest
            .facts
            .get("rdb_version")
            .and_then(serde_json::Value::as_u64);
        if let (Some(recorded), Some((major, minor))) = (recorded, self.server_version()) {
            let loads = rdb::max_rdb_version(major, minor);
            if recorded > u64::from(loads) {
                return Err(self.refused(format!(
                    "the backup is an RDB of version {recorded} and the installed Redis \
                     {major}.{minor} loads version {loads} at most"
                )));
            }
        }
        let stored = backup
            .manifest
            .facts
            .get("file")
            .and_then(|file| file.as_str())
            .unwrap_or(super::REDIS_SNAPSHOT_FILE)
            .to_string();
        std::fs::create_dir_all(&self.data_dir)
            .map_err(|error| Error::io("creating the data directory", &self.data_dir, error))?;
        let target = self.target();
        let temporary = self.data_dir.join(format!(
            ".{}.restoring-{}",
            self.dbfilename,
            std::process::id()
        ));
        let _ = std::fs::remove_file(&temporary);
        let outcome = async {
            let bytes = write_stored_file(repo, backup, &stored, &temporary, 0o660).await?;
            let checked_path = temporary.clone();
            let checked = tokio::task::spawn_blocking(move || rdb::check_file(&checked_path))
                .await
                .map_err(|error| {
                    Error::io("checking the RDB", &temporary, std::io::Error::other(error))
                })?
                .map_err(|detail| {
                    Error::corrupt(format!("{stored:?} in backup {}", backup.id), 0, detail)
                })?;
            place(&temporary, &target)?;
            Ok(StoreRestore::new("redis", &target, bytes)
                .with_detail("rdb_version", checked.version)
                .with_detail(
                    "next",
                    "start the server with `appendonly no`; to turn the append-only file on, \
                     then run CONFIG SET appendonly yes and CONFIG REWRITE",
                ))
        }
        .await;
        let _ = std::fs::remove_file(&temporary);
        outcome
    }
}

/// Renames `temporary` to `target`, refusing to replace a file that
/// appeared meanwhile.
fn place(temporary: &Path, target: &Path) -> Result<()> {
    std::fs::hard_link(temporary, target).map_err(|error| {
        if error.kind() == std::io::ErrorKind::AlreadyExists {
            Error::RestoreRefused {
                target: target.display().to_string(),
                reason: "it appeared while the restore ran".into(),
            }
        } else {
            Error::io("placing the restored RDB", target, error)
        }
    })?;
    std::fs::remove_file(temporary)
        .map_err(|error| Error::io("removing the temporary RDB", temporary, error))
}
