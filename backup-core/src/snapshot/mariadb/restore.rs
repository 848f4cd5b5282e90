//! Restoring MariaDB backups: a logical one replayed into a running server,
//! a physical one prepared and moved into an empty data directory.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::{redact, Connection, MARIADB_BACKUP_DIR, MARIADB_DUMP_FILE};
use crate::format::manifest::Backup;
use crate::repository::Repository;
use crate::snapshot::restorer::{
    clear_dir, require_empty_dir, restore_all, Restorer, StoreRestore,
};
use crate::snapshot::tool::{feed_to, run_to_end};
use crate::{Error, Result};

#[derive(Debug, Clone)]
enum Target {
    DataDir(PathBuf),
    Server(String),
}

/// Restores a [`MariadbSnapshotter`](crate::MariadbSnapshotter) backup.
///
/// **Logical** ([`MariadbRestorer::logical`]): into the running server of
/// a URL. Refused before anything is written when one of the backup's
/// databases already holds tables there. `dump.sql` is replayed with
/// `mariadb`, whose failure fails the restore with its message; then the
/// accounts (`users.sql`) with `mariadb --force` (an account that exists,
/// such as `root`, is not an error). The accounts come last because they
/// carry the source's passwords: the target's `root` then has the source's.
///
/// **Physical** ([`MariadbRestorer::physical`]): the stored backup is
/// written to a temporary directory beside the data directory, prepared
/// (`mariadb-backup --prepare`, which applies the copied redo log), and
/// moved into the data directory, which must be empty or absent
/// (`mariadb-backup --move-back`). The files belong to whoever restores:
/// run it as the server's user, or `chown -R mysql:` the directory, before
/// starting the server.
///
/// # Examples
///
/// ```
/// use backup_core::MariadbRestorer;
/// let into_server = MariadbRestorer::logical("mysql://root@new-db:3306/");
/// let into_dir = MariadbRestorer::physical("/var/lib/mysql");
/// # let _ = (into_server, into_dir);
/// ```
#[derive(Clone)]
pub struct MariadbRestorer {
    target: Target,
    bin_dir: Option<PathBuf>,
    password: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for MariadbRestorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MariadbRestorer")
            .field("target", &self.target_name())
            .field("bin_dir", &self.bin_dir)
            .finish_non_exhaustive()
    }
}

impl MariadbRestorer {
    /// A logical backup into the server at `url`.
    pub fn logical(url: impl Into<String>) -> MariadbRestorer {
        MariadbRestorer {
            target: Target::Server(url.into()),
            bin_dir: None,
            password: None,
        }
    }

    /// A physical backup into `data_dir`.
    pub fn physical(data_dir: impl Into<PathBuf>) -> MariadbRestorer {
        MariadbRestorer {
            target: Target::DataDir(data_dir.into()),
            bin_dir: None,
            password: None,
        }
    }

    /// Where `mariadb` and `mariadb-backup` are (default: the `PATH`).
    pub fn with_bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(dir.into());
        self
    }

    /// The password for a logical restore (instead of the URL's).
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Zeroizing::new(password.into()));
        self
    }

    fn target_name(&self) -> String {
        match &self.target {
            Target::DataDir(dir) => dir.display().to_string(),
            Target::Server(url) => redact(url),
        }
    }

    fn refused(&self, reason: impl Into<String>) -> Error {
        Error::RestoreRefused {
            target: self.target_name(),
            reason: reason.into(),
        }
    }

    fn program(&self, name: &str) -> PathBuf {
        match &self.bin_dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        }
    }

    fn command(&self, name: &str, connection: Option<&Connection>) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(self.program(name));
        if let Some(connection) = connection {
            command.args(connection.args());
            if let Some(password) = connection.password() {
                command.env("MYSQL_PWD", password.as_str());
            }
        }
        command.kill_on_drop(true);
        command
    }

    async fn logical_restore(
        &self,
        repo: &Repository,
        backup: &Backup,
        url: &str,
    ) -> Result<StoreRestore> {
        let connection = Connection::parse(url)?.with_password(self.password.clone());
        let databases: Vec<String> = backup
            .manifest
            .facts
            .get("databases")
            .and_then(serde_json::Value::as_array)
            .map(|names| {
                names
                    .iter()
                    .filter_map(|name| name.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default();
        if !databases.is_empty() {
            let list = databases
                .iter()
                .map(|name| format!("'{}'", name.replace('\\', "\\\\").replace('\'', "''")))
                .collect::<Vec<_>>()
                .join(", ");
            let mut query = self.command("mariadb", Some(&connection));
            query.args([
                "--batch",
                "--skip-column-names",
                "-e",
                &format!(
                    "SELECT table_schema, count(*) FROM information_schema.tables WHERE \
                     table_schema IN ({list}) GROUP BY table_schema"
                ),
            ]);
            let used = run_to_end(query, &self.target_name()).await?;
            if let Some(line) = used.lines().find(|line| !line.trim().is_empty()) {
                let (database, tables) = line.split_once('\t').unwrap_or((line, "?"));
                return Err(self.refused(format!(
                    "database {database:?} exists and holds {tables} tables: restore into a \
                     fresh server or drop it first"
                )));
            }
        }
        let entries = repo.ls(backup).await?;
        let has = |name: &str| entries.iter().any(|entry| entry.path == name);
        if !has(MARIADB_DUMP_FILE) {
            return Err(Error::corrupt(
                format!("backup {}", backup.id),
                0,
                format!("it holds no {MARIADB_DUMP_FILE}"),
            ));
        }
        let dump = self.command("mariadb", Some(&connection));
        let mut bytes = feed_to(repo, backup, MARIADB_DUMP_FILE, dump, &self.target_name()).await?;
        // The accounts last: they may change the password this restore
        // connects with (the source's root).
        if has("users.sql") {
            let mut users = self.command("mariadb", Some(&connection));
            users.arg("--force");
            bytes += feed_to(repo, backup, "users.sql", users, &self.target_name()).await?;
        }
        Ok(StoreRestore::new("mariadb", self.target_name(), bytes)
            .with_detail("mode", "logical")
            .with_detail("databases", databases))
    }

    async fn physical_restore(
        &self,
        repo: &Repository,
        backup: &Backup,
        data_dir: &Path,
    ) -> Result<StoreRestore> {
        require_empty_dir(data_dir)?;
        let parent = data_dir
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .unwrap_or_else(|| Path::new("."));
        let staging = tempfile::Builder::new()
            .prefix(".mariadb-restore-")
            .tempdir_in(parent)
            .map_err(|error| Error::io("creating a directory for the restore", parent, error))?;
        let outcome = async {
            let summary = restore_all(
                repo,
                backup,
                staging.path(),
                &crate::RestoreOptions::default().with_include([MARIADB_BACKUP_DIR]),
            )
            .await?;
            let stored = staging.path().join(MARIADB_BACKUP_DIR);
            let mut prepare = self.command("mariadb-backup", None);
            prepare
                .arg("--prepare")
                .arg(format!("--target-dir={}", stored.display()));
            run_to_end(prepare, &self.target_name()).await?;
            std::fs::create_dir_all(data_dir)
                .map_err(|error| Error::io("creating the data directory", data_dir, error))?;
            let mut move_back = self.command("mariadb-backup", None);
            move_back
                .arg("--move-back")
                .arg(format!("--target-dir={}", stored.display()))
                .arg(format!("--datadir={}", data_dir.display()));
            run_to_end(move_back, &self.target_name()).await?;
            Ok(summary)
        }
        .await;
        drop(staging);
        let summary = match outcome {
            Ok(summary) => summary,
            Err(error) => {
                clear_dir(data_dir);
                return Err(error);
            }
        };
        let mut report = StoreRestore::new("mariadb", data_dir, summary.bytes)
            .with_detail("mode", "physical")
            .with_detail(
                "next",
                "start the server on this directory (owned by its user): the backup is prepared",
            );
        for fact in ["binlog_file", "binlog_position", "gtid", "server_version"] {
            if let Some(value) = backup.manifest.facts.get(fact) {
                report = report.with_detail(fact, value.clone());
            }
        }
        Ok(report)
    }
}

#[async_trait]
impl Restorer for MariadbRestorer {
    fn kind(&self) -> &str {
        "mariadb"
    }

    async fn restore(&self, repo: &Repository, backup: &Backup) -> Result<StoreRestore> {
        let mode = backup
            .manifest
            .facts
            .get("mode")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("logical");
        match (&self.target, mode) {
            (Target::Server(url), "logical") => self.logical_restore(repo, backup, url).await,
            (Target::DataDir(dir), "physical") => self.physical_restore(repo, backup, dir).await,
            (Target::DataDir(_), mode) => Err(self.refused(format!(
                "backup {} is a {mode} backup: it is replayed into a running server (a URL), \
                 not a data directory",
                backup.id
            ))),
            (Target::Server(_), mode) => Err(self.refused(format!(
                "backup {} is a {mode} backup: it is restored into a data directory, not a \
                 running server",
                backup.id
            ))),
        }
    }
}
