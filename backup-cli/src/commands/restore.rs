//! `backupctl restore`: restore one backup, or several sets at once with
//! `--select`.

use std::path::PathBuf;
use std::process::ExitCode;

use backup_core::{
    base_backup_for, CassandraRestorer, Error, EtcdRestorer, MariadbRestorer, Overwrite,
    PostgresRestorer, RecoveryTarget, RedisRestorer, RestoreOptions, Restorer, Status,
};
use clap::Args;
use serde_json::json;

use super::EXIT_PARTIAL;
use crate::cli::Common;
use crate::output::{human_bytes, out, print_json};
use crate::progress::progress_sink;
use crate::repository::open;

/// Options of `restore`.
#[derive(Args, Debug)]
pub(crate) struct RestoreArgs {
    #[command(flatten)]
    common: Common,
    /// `latest` (newest completed backup) or a backup id (a unique
    /// prefix is enough).
    #[arg(required_unless_present = "select", conflicts_with = "select")]
    backup: Option<String>,
    /// Restore several sets, each into TARGET/SET: SET=latest,
    /// SET=<backup id> or SET=skip (repeatable).
    #[arg(long, value_name = "SET=SELECTOR")]
    select: Vec<String>,
    /// With `latest`: the newest backup of this set.
    #[arg(long)]
    set: Option<String>,
    /// Directory to restore into (created if missing).
    #[arg(long, required_unless_present = "to")]
    target: Option<PathBuf>,
    /// Restore into a store instead: an etcd member's new data directory,
    /// a stopped Redis's data directory (with --data-dir), a PostgreSQL
    /// data directory (a physical backup, --data-dir) or server (a logical
    /// one, --pg-url).
    #[arg(long, value_enum, conflicts_with_all = ["target", "select", "include", "exclude", "iexclude", "delete", "verify"])]
    to: Option<StoreKind>,
    /// The store's data directory (absent or empty for etcd and
    /// PostgreSQL; without an RDB or AOF for Redis).
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// The restored etcd member's name.
    #[arg(long, default_value = "default", value_name = "NAME")]
    etcd_name: String,
    /// The new cluster, NAME=PEER_URL,... (default: this member alone).
    #[arg(long, value_name = "CLUSTER")]
    etcd_initial_cluster: Option<String>,
    /// The restored member's peer URLs.
    #[arg(long, default_value = "http://localhost:2380", value_name = "URLS")]
    etcd_initial_advertise_peer_urls: String,
    /// The new cluster's token.
    #[arg(long, default_value = "etcd-cluster", value_name = "TOKEN")]
    etcd_initial_cluster_token: String,
    /// The Redis configuration file, checked for `appendonly yes`.
    #[arg(long, value_name = "FILE")]
    redis_config: Option<PathBuf>,
    /// The PostgreSQL server a logical backup is restored into (a libpq
    /// connection string).
    #[arg(long, env = "BACKUP_PG_URL", value_name = "CONNINFO")]
    pg_url: Option<String>,
    /// File holding the PostgreSQL password (else PGPASSWORD or ~/.pgpass).
    #[arg(long, value_name = "FILE")]
    pg_password_file: Option<PathBuf>,
    /// Directory of PostgreSQL's programs: pg_restore and psql, and the
    /// postgres whose major version a physical backup must match.
    #[arg(long, value_name = "DIR")]
    pg_bin_dir: Option<PathBuf>,
    /// PostgreSQL point-in-time recovery: restore the newest base backup of
    /// --set that ended before this time (RFC 3339), and have the server
    /// replay the WAL archive up to it.
    #[arg(long, value_name = "TIME", conflicts_with_all = ["target_lsn", "target_latest"])]
    target_time: Option<String>,
    /// PostgreSQL point-in-time recovery up to this WAL position (X/Y).
    #[arg(long, value_name = "LSN", conflicts_with = "target_latest")]
    target_lsn: Option<String>,
    /// PostgreSQL recovery through the whole WAL archive (the newest state).
    #[arg(long)]
    target_latest: bool,
    /// The restore_command written for the recovery (default: this
    /// backupctl's wal-fetch with this restore's --repo, --set and
    /// --password-file, which the server's user must be able to read).
    #[arg(long, value_name = "COMMAND")]
    restore_command: Option<String>,
    /// The MariaDB server a logical backup is replayed into,
    /// mysql://USER@HOST:PORT/.
    #[arg(long, env = "BACKUP_MARIADB_URL", value_name = "URL")]
    mariadb_url: Option<String>,
    /// File holding the MariaDB password.
    #[arg(long, value_name = "FILE")]
    mariadb_password_file: Option<PathBuf>,
    /// Directory of mariadb and mariadb-backup (default: the PATH).
    #[arg(long, value_name = "DIR")]
    mariadb_bin_dir: Option<PathBuf>,
    /// The stopped Cassandra node's (empty) data directory.
    #[arg(long, value_name = "DIR")]
    cassandra_data_dir: Option<PathBuf>,
    /// The node's cassandra.yaml: initial_token, num_tokens and
    /// auto_bootstrap: false are written into it.
    #[arg(long, value_name = "FILE")]
    cassandra_yaml: Option<PathBuf>,
    /// The Cassandra version the node runs (a backup of another major
    /// version is refused).
    #[arg(long, value_name = "VERSION")]
    cassandra_version: Option<String>,
    /// Restore only what matches this glob (repeatable).
    #[arg(long = "include", value_name = "GLOB")]
    include: Vec<String>,
    #[command(flatten)]
    tree: TreeRestoreArgs,
}

/// How a restore treats what is in the target, as restic's restore options.
#[derive(Args, Debug, Default)]
pub(crate) struct TreeRestoreArgs {
    /// Leave out what matches this glob, with all it holds (repeatable;
    /// the syntax of --include).
    #[arg(long, value_name = "GLOB")]
    exclude: Vec<String>,
    /// As --exclude, regardless of case.
    #[arg(long, value_name = "GLOB")]
    iexclude: Vec<String>,
    /// Which files already in the target are replaced: always, if-changed
    /// (size or modification time differ), if-newer (the backup's is newer)
    /// or never.
    #[arg(long, value_enum, default_value = "always")]
    overwrite: OverwriteArg,
    /// Delete what the restored directories hold that the backup does not,
    /// so that the target becomes the backup.
    #[arg(long)]
    delete: bool,
    /// Read every restored file back and check it against the backup.
    #[arg(long)]
    verify: bool,
}

/// The values of `--overwrite`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum OverwriteArg {
    /// Every file is written.
    #[default]
    Always,
    /// Files with the backup's size and modification time are left alone.
    IfChanged,
    /// Files are replaced only by newer ones.
    IfNewer,
    /// Nothing already there is replaced.
    Never,
}

impl TreeRestoreArgs {
    /// The library's options for a restore of `include` with these.
    fn options(self, include: Vec<String>, common: &Common) -> RestoreOptions {
        let mut options = RestoreOptions::default()
            .with_include(include)
            .with_exclude(self.exclude)
            .with_iexclude(self.iexclude)
            .with_overwrite(match self.overwrite {
                OverwriteArg::Always => Overwrite::Always,
                OverwriteArg::IfChanged => Overwrite::IfChanged,
                OverwriteArg::IfNewer => Overwrite::IfNewer,
                OverwriteArg::Never => Overwrite::Never,
            })
            .with_delete(self.delete)
            .with_verify(self.verify);
        options.progress = progress_sink(common);
        options
    }
}

/// The stores `restore --to` restores into.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreKind {
    /// A new etcd member data directory (etcdutl or etcdctl snapshot restore).
    Etcd,
    /// A stopped Redis server's data directory (dump.rdb).
    Redis,
    /// A PostgreSQL data directory (physical) or server (logical).
    Postgres,
    /// A MariaDB server (logical, --mariadb-url) or data directory
    /// (physical, --data-dir).
    Mariadb,
    /// A stopped Cassandra node (--cassandra-data-dir, --cassandra-yaml).
    Cassandra,
}

/// Restores what the arguments select and prints what was restored.
pub(crate) async fn run(mut args: RestoreArgs) -> Result<ExitCode, Error> {
    if args.to.is_some() {
        let backup = args.backup.take().unwrap_or_default();
        return restore_store(args, &backup).await;
    }
    match args.backup.take() {
        Some(backup) => restore_one(args, &backup).await,
        None => restore_sets(args).await,
    }
}

/// `restore --select SET=SELECTOR ...`: each set into `TARGET/SET`.
async fn restore_sets(args: RestoreArgs) -> Result<ExitCode, Error> {
    let RestoreArgs {
        common,
        select,
        target,
        include,
        tree,
        ..
    } = args;
    let selections = select
        .iter()
        .map(|item| {
            item.split_once('=')
                .map(|(set, selector)| (set.to_string(), selector.to_string()))
                .ok_or_else(|| {
                    Error::InvalidArgument(format!("--select {item:?} is not SET=SELECTOR"))
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let repo = open(&common).await?;
    let options = tree.options(include, &common);
    let target = target.unwrap_or_default();
    let results = repo.restore_sets(&selections, &target, &options).await?;
    if common.json {
        print_json(&json!({ "target": target, "sets": results }));
    } else {
        for result in &results {
            match (&result.backup, &result.summary) {
                (Some(id), Some(summary)) => out!(
                    "set {}: restored backup {} to {}: {} files, {}",
                    result.set,
                    id.short(),
                    target.join(&result.set).display(),
                    summary.files,
                    human_bytes(summary.bytes)
                ),
                _ => out!("set {}: skipped", result.set),
            }
        }
    }
    let failures: Vec<_> = results
        .iter()
        .filter_map(|result| Some((&result.set, result.summary.as_ref()?)))
        .flat_map(|(set, summary)| summary.failures.iter().map(move |failure| (set, failure)))
        .collect();
    for (set, failure) in &failures {
        eprintln!(
            "error: set {set}: not restored: {}: {}",
            failure.path, failure.message
        );
    }
    if failures.is_empty() {
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: {} item(s) could not be restored; everything else was",
            failures.len()
        );
        Ok(ExitCode::from(EXIT_PARTIAL))
    }
}

/// `restore BACKUP`: one backup into the target; exits with
/// [`EXIT_PARTIAL`] when some items could not be restored.
async fn restore_one(args: RestoreArgs, backup: &str) -> Result<ExitCode, Error> {
    let RestoreArgs {
        common,
        set,
        target,
        include,
        tree,
        ..
    } = args;
    let target = target.unwrap_or_default();
    let repo = open(&common).await?;
    let backup = repo.find_backup(backup, set.as_deref()).await?;
    let options = tree.options(include, &common);
    let summary = repo.restore(&backup, &target, &options).await?;
    if common.json {
        print_json(&json!({ "id": backup.id.to_hex(), "target": target, "summary": summary }));
    }
    for failure in &summary.failures {
        eprintln!("error: not restored: {}: {}", failure.path, failure.message);
    }
    if summary.status == Status::Completed {
        if !common.json {
            out!(
                "restored backup {} to {}: {} files, {} dirs, {} symlinks, {}",
                backup.id.short(),
                target.display(),
                summary.files,
                summary.dirs,
                summary.symlinks,
                human_bytes(summary.bytes)
            );
            if summary.skipped + summary.deleted + summary.verified > 0 {
                out!(
                    "{} left as they were, {} deleted, {} verified",
                    summary.skipped,
                    summary.deleted,
                    summary.verified
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    } else {
        eprintln!(
            "error: {} item(s) could not be restored; everything else was",
            summary.failures.len()
        );
        Ok(ExitCode::from(EXIT_PARTIAL))
    }
}

/// `restore BACKUP --to etcd|redis --data-dir DIR`: into a store.
async fn restore_store(args: RestoreArgs, backup: &str) -> Result<ExitCode, Error> {
    let data_dir = match (&args.data_dir, args.to) {
        (Some(dir), _) => dir.clone(),
        (None, Some(StoreKind::Postgres | StoreKind::Mariadb | StoreKind::Cassandra)) => {
            PathBuf::new()
        }
        (None, _) => return Err(Error::InvalidArgument("--to needs --data-dir".into())),
    };
    let restorer: Box<dyn Restorer> =
        match args.to {
            Some(StoreKind::Cassandra) => {
                let dir = args.cassandra_data_dir.clone().ok_or_else(|| {
                    Error::InvalidArgument("--to cassandra needs --cassandra-data-dir DIR".into())
                })?;
                let mut restorer = CassandraRestorer::new(dir);
                if let Some(yaml) = &args.cassandra_yaml {
                    restorer = restorer.with_yaml(yaml);
                }
                if let Some(version) = &args.cassandra_version {
                    restorer = restorer.with_target_version(version);
                }
                Box::new(restorer)
            }
            Some(StoreKind::Mariadb) => {
                let mut restorer = match (&args.data_dir, &args.mariadb_url) {
                    (Some(dir), _) => MariadbRestorer::physical(dir),
                    (None, Some(url)) => MariadbRestorer::logical(url),
                    _ => return Err(Error::InvalidArgument(
                        "--to mariadb needs --mariadb-url URL (a logical backup) or --data-dir \
                         DIR (a physical one)"
                            .into(),
                    )),
                };
                if let Some(dir) = &args.mariadb_bin_dir {
                    restorer = restorer.with_bin_dir(dir);
                }
                if let Some(file) = &args.mariadb_password_file {
                    restorer = restorer.with_password(crate::password::read_secret_file(
                        file,
                        "the MariaDB password",
                    )?);
                }
                Box::new(restorer)
            }
            Some(StoreKind::Postgres) => {
                let mut restorer =
                    match (&args.data_dir, &args.pg_url) {
                        (Some(dir), _) => PostgresRestorer::physical(dir),
                        (None, Some(url)) => PostgresRestorer::logical(url),
                        _ => return Err(Error::InvalidArgument(
                            "--to postgres needs --data-dir DIR (a physical backup) or --pg-url \
                         CONNINFO (a logical one)"
                                .into(),
                        )),
                    };
                if let Some(dir) = &args.pg_bin_dir {
                    restorer = restorer.with_bin_dir(dir);
                }
                if let Some(target) = recovery_target(&args)? {
                    restorer = restorer.with_recovery(restore_command(&args)?, target);
                }
                if let Some(file) = &args.pg_password_file {
                    restorer = restorer.with_password(crate::password::read_secret_file(
                        file,
                        "the PostgreSQL password",
                    )?);
                }
                Box::new(restorer)
            }
            Some(StoreKind::Redis) => {
                let mut restorer = RedisRestorer::new(&data_dir);
                if let Some(config) = &args.redis_config {
                    restorer = restorer.with_config(config);
                }
                Box::new(restorer)
            }
            _ => {
                let mut restorer = EtcdRestorer::new(&data_dir)
                    .with_name(&args.etcd_name)
                    .with_initial_advertise_peer_urls(&args.etcd_initial_advertise_peer_urls)
                    .with_initial_cluster_token(&args.etcd_initial_cluster_token);
                if let Some(cluster) = &args.etcd_initial_cluster {
                    restorer = restorer.with_initial_cluster(cluster);
                }
                Box::new(restorer)
            }
        };
    let repo = open(&args.common).await?;
    let backup = match (recovery_target(&args)?, backup) {
        (Some(target), "latest") => {
            let set = args.set.as_deref().ok_or_else(|| {
                Error::InvalidArgument("a recovery target needs --set (of the base backups)".into())
            })?;
            base_backup_for(&repo, set, &target).await?
        }
        _ => repo.find_backup(backup, args.set.as_deref()).await?,
    };
    let restored = repo.restore_into(&backup, restorer.as_ref()).await?;
    if args.common.json {
        print_json(&json!({ "id": backup.id.to_hex(), "restored": restored }));
    } else {
        out!(
            "restored {} backup {} to {}: {}",
            restored.kind,
            backup.id.short(),
            restored.target.display(),
            human_bytes(restored.bytes)
        );
        for (key, value) in &restored.details {
            out!(
                "  {key}: {}",
                value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_string)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The recovery target of `--target-time`, `--target-lsn` or
/// `--target-latest`, if one was given.
fn recovery_target(args: &RestoreArgs) -> Result<Option<RecoveryTarget>, Error> {
    if let Some(text) = &args.target_time {
        let time = chrono::DateTime::parse_from_rfc3339(text)
            .map_err(|error| Error::InvalidArgument(format!("--target-time {text:?}: {error}")))?;
        return Ok(Some(RecoveryTarget::Time(time.with_timezone(&chrono::Utc))));
    }
    if let Some(lsn) = &args.target_lsn {
        return Ok(Some(RecoveryTarget::Lsn(lsn.clone())));
    }
    Ok(args.target_latest.then_some(RecoveryTarget::Latest))
}

/// The `restore_command` for a recovery: the one given, else this
/// program's `wal-fetch` with this restore's repository, set and password
/// file, each word quoted for the shell PostgreSQL runs it with.
fn restore_command(args: &RestoreArgs) -> Result<String, Error> {
    if let Some(command) = &args.restore_command {
        return Ok(command.clone());
    }
    let program = std::env::current_exe()
        .map_err(|error| Error::io("finding this program", "backupctl", error))?;
    let repo = args.common.repo.clone().ok_or_else(|| {
        Error::InvalidArgument(
            "a recovery needs --repo (or BACKUP_REPO), or --restore-command".into(),
        )
    })?;
    let set = args.set.clone().ok_or_else(|| {
        Error::InvalidArgument("a recovery target needs --set (of the base backups)".into())
    })?;
    let mut words = vec![
        program.display().to_string(),
        "wal-fetch".into(),
        "--repo".into(),
        repo,
        "--set".into(),
        set,
    ];
    if let Some(file) = &args.common.password_file {
        let file = std::fs::canonicalize(file).unwrap_or_else(|_| file.clone());
        words.push("--password-file".into());
        words.push(file.display().to_string());
    }
    let mut command = shell_words::join(words);
    command.push_str(" %f %p");
    Ok(command)
}
