//! Restoring PostgreSQL backups: a physical one into an empty data
//! directory, a logical one into a running server.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::wal::RecoveryTarget;
use super::{conninfo, facts, major_of, POSTGRES_DATA_DIR, POSTGRES_GLOBALS_FILE};
use crate::format::manifest::Backup;
use crate::format::tree::NodeKind;
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

/// Restores a [`PostgresSnapshotter`](crate::PostgresSnapshotter) backup.
///
/// **Physical** ([`PostgresRestorer::physical`]): the stored data
/// directory is written into an empty (or new) directory, with mode 0700
/// as the server wants it: first under a temporary directory inside it,
/// then moved into place, so that a restore that fails leaves the
/// directory empty. It holds `backup_label` and the WAL to the backup's
/// end, so a server started on it replays to that point by itself; its
/// `backup_manifest` is kept for `pg_verifybackup`. The files belong to
/// whoever restores: run the restore as the server's user (or `chown -R`
/// the directory) before starting the server. With
/// [`with_bin_dir`](Self::with_bin_dir), a backup of another major version
/// than that directory's `postgres` is refused.
///
/// **Logical** ([`PostgresRestorer::logical`]): into the running server of
/// a connection string. Every database of the backup must be absent there
/// (it is created, `pg_restore --create`) or hold no tables (it is
/// restored into); otherwise the restore is refused before anything is
/// written. Roles and tablespaces (`globals.sql`) are replayed first with
/// `psql`, where an object that already exists (the `postgres` role) is
/// not an error; then each database with `pg_restore --exit-on-error`,
/// whose failure fails the restore with its message.
///
/// # Examples
///
/// ```
/// use backup_core::PostgresRestorer;
/// let into_dir = PostgresRestorer::physical("/var/lib/postgresql/15/main");
/// let into_server = PostgresRestorer::logical("postgresql://postgres@new-db/postgres");
/// # let _ = (into_dir, into_server);
/// ```
#[derive(Clone)]
pub struct PostgresRestorer {
    target: Target,
    bin_dir: Option<PathBuf>,
    password: Option<Zeroizing<String>>,
    recovery: Option<(String, RecoveryTarget)>,
}

impl std::fmt::Debug for PostgresRestorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let target = match &self.target {
            Target::DataDir(dir) => dir.display().to_string(),
            Target::Server(conninfo) => conninfo::redact(conninfo),
        };
        f.debug_struct("PostgresRestorer")
            .field("target", &target)
            .field("bin_dir", &self.bin_dir)
            .finish_non_exhaustive()
    }
}

impl PostgresRestorer {
    /// A physical backup into `data_dir`.
    pub fn physical(data_dir: impl Into<PathBuf>) -> PostgresRestorer {
        PostgresRestorer {
            target: Target::DataDir(data_dir.into()),
            bin_dir: None,
            password: None,
            recovery: None,
        }
    }

    /// A logical backup into the server `conninfo` connects to.
    pub fn logical(conninfo: impl Into<String>) -> PostgresRestorer {
        PostgresRestorer {
            target: Target::Server(conninfo.into()),
            bin_dir: None,
            password: None,
            recovery: None,
        }
    }

    /// Where PostgreSQL's programs are (default: the `PATH`).
    pub fn with_bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(dir.into());
        self
    }

    /// Physical: sets the restored directory up for point-in-time
    /// recovery from the WAL archive: `recovery.signal`, and in
    /// `postgresql.auto.conf` the `restore_command` (such as `backupctl
    /// wal-fetch --repo R --set SET %f %p`), the target
    /// (`recovery_target_time` or `recovery_target_lsn`, none for
    /// [`RecoveryTarget::Latest`]) and `recovery_target_action = 'promote'`.
    /// The server then replays the archived WAL to the target and opens.
    pub fn with_recovery(
        mut self,
        restore_command: impl Into<String>,
        target: RecoveryTarget,
    ) -> Self {
        self.recovery = Some((restore_command.into(), target));
        self
    }

    /// The password for a logical restore, passed in `PGPASSWORD`.
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Zeroizing::new(password.into()));
        self
    }

    fn target_name(&self) -> String {
        match &self.target {
            Target::DataDir(dir) => dir.display().to_string(),
            Target::Server(conninfo) => conninfo::redact(conninfo),
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

    fn command(&self, name: &str) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(self.program(name));
        if let Some(password) = &self.password {
            command.env("PGPASSWORD", password.as_str());
        }
        command.kill_on_drop(true);
        command
    }

    async fn physical_restore(
        &self,
        repo: &Repository,
        backup: &Backup,
        data_dir: &Path,
    ) -> Result<StoreRestore> {
        if let Some(bin_dir) = &self.bin_dir {
            let recorded = backup
                .manifest
                .facts
                .get("server_version_num")
                .and_then(serde_json::Value::as_u64)
                .map(major_of);
            if let (Some(recorded), Some(installed)) = (recorded, super::installed_major(bin_dir)) {
                if recorded != installed {
                    return Err(self.refused(format!(
                        "backup {} is of PostgreSQL {recorded}, and {} is PostgreSQL {installed}: \
                         a data directory only starts under its own major version",
                        backup.id,
                        bin_dir.join("postgres").display()
                    )));
                }
            }
        }
        require_empty_dir(data_dir)?;
        std::fs::create_dir_all(data_dir)
            .map_err(|error| Error::io("creating the data directory", data_dir, error))?;
        let staging = data_dir.join(format!(".restoring-{}", std::process::id()));
        let restored = async {
            let summary = restore_all(
                repo,
                backup,
                &staging,
                &crate::RestoreOptions::default().with_include([POSTGRES_DATA_DIR]),
            )
            .await?;
            let stored = staging.join(POSTGRES_DATA_DIR);
            if !stored.join("PG_VERSION").is_file() {
                return Err(Error::corrupt(
                    format!("backup {}", backup.id),
                    0,
                    "it holds no data directory (data/PG_VERSION)",
                ));
            }
            let children = std::fs::read_dir(&stored)
                .map_err(|error| Error::io("reading the restored files", &stored, error))?;
            for child in children {
                let child = child
                    .map_err(|error| Error::io("reading the restored files", &stored, error))?;
                let to = data_dir.join(child.file_name());
                std::fs::rename(child.path(), &to)
                    .map_err(|error| Error::io("moving a restored file into place", &to, error))?;
            }
            Ok(summary)
        }
        .await;
        let _ = std::fs::remove_dir_all(&staging);
        let summary = match restored {
            Ok(summary) => summary,
            Err(error) => {
                // Leave the directory as it was: empty.
                clear_dir(data_dir);
                return Err(error);
            }
        };
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|error| Error::io("setting the data directory's mode", data_dir, error))?;
        if let Some((restore_command, target)) = &self.recovery {
            write_recovery(data_dir, restore_command, target)?;
        }
        let mut report = StoreRestore::new("postgres", data_dir, summary.bytes)
            .with_detail("mode", "physical")
            .with_detail("files", summary.files)
            .with_detail(
                "next",
                "start the server on this directory (owned by its user, mode 0700): it replays \
                 the WAL in pg_wal to the backup's end",
            );
        if let Some((_, target)) = &self.recovery {
            report = report.with_detail(
                "recovery_target",
                match target {
                    RecoveryTarget::Latest => "the end of the WAL archive".to_string(),
                    RecoveryTarget::Time(time) => time.to_rfc3339(),
                    RecoveryTarget::Lsn(lsn) => lsn.clone(),
                },
            );
        }
        for fact in [
            "start_lsn",
            "stop_lsn",
            "timeline",
            "system_identifier",
            "server_version",
        ] {
            if let Some(value) = backup.manifest.facts.get(fact) {
                report = report.with_detail(fact, value.clone());
            }
        }
        Ok(report)
    }

    /// Runs a query with psql against `conninfo`; returns its output,
    /// trimmed.
    async fn query(&self, conninfo: &str, sql: &str) -> Result<String> {
        let mut psql = self.command("psql");
        psql.args([
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "--no-password",
            "-d",
        ])
        .arg(conninfo)
        .args(["-c", sql]);
        Ok(run_to_end(psql, &self.target_name())
            .await?
            .trim()
            .to_string())
    }

    async fn logical_restore(
        &self,
        repo: &Repository,
        backup: &Backup,
        server: &str,
    ) -> Result<StoreRestore> {
        let entries = repo.ls(backup).await?;
        let mut databases = Vec::new();
        let mut globals = false;
        for entry in entries.iter().filter(|entry| !entry.path.contains('/')) {
            match (&entry.kind, entry.path.as_str()) {
                (NodeKind::File, POSTGRES_GLOBALS_FILE) => globals = true,
                (NodeKind::File, name) if name.ends_with(".dump") => databases.push((
                    facts::database_of(name.trim_end_matches(".dump")),
                    entry.path.clone(),
                    false,
                )),
                (NodeKind::Dir, name) => {
                    databases.push((facts::database_of(name), entry.path.clone(), true))
                }
                _ => {}
            }
        }
        // Every check before anything is written.
        let mut plan = Vec::new();
        for (database, stored, directory) in databases {
            let literal = database.replace('\'', "''");
            let exists = self
                .query(
                    server,
                    &format!("SELECT count(*) FROM pg_database WHERE datname = '{literal}'"),
                )
                .await?
                == "1";
            if exists {
                let tables = self
                    .query(
                        &conninfo::for_database(server, &database),
                        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = \
                         c.relnamespace WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f') AND \
                         n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname \
                         NOT LIKE 'pg_toast%'",
                    )
                    .await?;
                if tables != "0" {
                    return Err(self.refused(format!(
                        "database {database:?} exists and holds {tables} tables, views or \
                         sequences: restore into a fresh server or drop it first"
                    )));
                }
            }
            plan.push((database, stored, directory, exists));
        }
        let mut bytes = 0;
        if globals {
            let mut psql = self.command("psql");
            psql.args(["-X", "-q", "--no-password", "-d"])
                .arg(server)
                .args(["-f", "-"]);
            bytes += feed_to(
                repo,
                backup,
                POSTGRES_GLOBALS_FILE,
                psql,
                &self.target_name(),
            )
            .await?;
        }
        let mut restored = Vec::new();
        for (database, stored, directory, exists) in plan {
            let mut pg_restore = self.command("pg_restore");
            pg_restore.args(["--exit-on-error", "--no-password"]);
            if exists {
                pg_restore
                    .arg("-d")
                    .arg(conninfo::for_database(server, &database));
            } else {
                pg_restore.arg("--create").arg("-d").arg(server);
            }
            if directory {
                let staging = tempfile::Builder::new()
                    .prefix("pg_restore-")
                    .tempdir()
                    .map_err(|error| {
                        Error::io(
                            "creating a directory for pg_restore",
                            std::env::temp_dir(),
                            error,
                        )
                    })?;
                let summary = restore_all(
                    repo,
                    backup,
                    staging.path(),
                    &crate::RestoreOptions::default().with_include([stored.clone()]),
                )
                .await?;
                bytes += summary.bytes;
                let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
                pg_restore
                    .arg(format!("--jobs={jobs}"))
                    .arg(staging.path().join(&stored));
                run_to_end(pg_restore, &self.target_name()).await?;
            } else {
                bytes += feed_to(repo, backup, &stored, pg_restore, &self.target_name()).await?;
            }
            restored.push(database);
        }
        Ok(StoreRestore::new("postgres", self.target_name(), bytes)
            .with_detail("mode", "logical")
            .with_detail("databases", restored)
            .with_detail("globals", globals))
    }
}

#[async_trait]
impl Restorer for PostgresRestorer {
    fn kind(&self) -> &str {
        "postgres"
    }

    async fn restore(&self, repo: &Repository, backup: &Backup) -> Result<StoreRestore> {
        let mode = backup
            .manifest
            .facts
            .get("mode")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("physical");
        match (&self.target, mode) {
            (Target::DataDir(dir), "physical") => self.physical_restore(repo, backup, dir).await,
            (Target::Server(server), "logical") => self.logical_restore(repo, backup, server).await,
            (Target::DataDir(_), mode) => Err(self.refused(format!(
                "backup {} is a {mode} backup: it is restored into a running server (a \
                 connection string), not a data directory",
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

/// A value quoted for `postgresql.conf`.
fn conf_value(value: &str) -> String {
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "''"))
}

/// Writes `recovery.signal` and the recovery settings.
fn write_recovery(data_dir: &Path, restore_command: &str, target: &RecoveryTarget) -> Result<()> {
    use std::io::Write;
    let signal = data_dir.join("recovery.signal");
    std::fs::write(&signal, b"")
        .map_err(|error| Error::io("writing recovery.signal", &signal, error))?;
    let mut settings = vec![("restore_command".to_string(), restore_command.to_string())];
    settings.extend(target.settings());
    settings.push(("recovery_target_action".into(), "promote".into()));
    settings.push(("recovery_target_timeline".into(), "latest".into()));
    let mut text = String::from("\n# Point-in-time recovery, written by the restore\n");
    for (name, value) in settings {
        text.push_str(&format!("{name} = {}\n", conf_value(&value)));
    }
    let conf = data_dir.join("postgresql.auto.conf");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&conf)
        .map_err(|error| Error::io("opening postgresql.auto.conf", &conf, error))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|error| Error::io("writing postgresql.auto.conf", &conf, error))
}
