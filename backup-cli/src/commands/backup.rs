//! `backupctl backup`: back up paths, or the output of a command.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use backup_core::{BackupOptions, BackupStatus, Error, OnError, ParentSelection};
use chrono::{DateTime, Utc};
use clap::Args;
use serde_json::json;

use super::EXIT_PARTIAL;
use crate::cli::Common;
use crate::output::{human_bytes, out, print_json};
use crate::progress::progress_sink;
use crate::repository::open;
use crate::source::{
    CassandraSource, DirectorySource, EtcdSource, HooksConfig, MariadbSource, PostgresSource,
    RedisSource, SourceConfig,
};

/// The kinds of source `--source` takes.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SourceKind {
    /// Files and directories (the paths given).
    Directory,
    /// The standard output of `--stdin-from-command`.
    Command,
    /// An etcd member (`--etcd-endpoints`).
    Etcd,
    /// A Redis server (`--redis-url`).
    Redis,
    /// A PostgreSQL server (`--pg-url`, `--pg-mode`).
    Postgres,
    /// A MariaDB or MySQL server (`--mariadb-url`, `--mariadb-mode`).
    Mariadb,
    /// A Cassandra node (`--nodetool`, `--cassandra-data-dir`).
    Cassandra,
}

/// `--mariadb-mode`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MariadbModeArg {
    /// mariadb-dump --single-transaction, replayed into a server.
    Logical,
    /// mariadb-backup, prepared into a data directory on restore.
    Physical,
}

/// `--pg-mode`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PgMode {
    /// A base backup (pg_basebackup), restored into a data directory.
    Physical,
    /// Dumps (pg_dump, pg_dumpall --globals-only), restored into a server.
    Logical,
}

/// `--etcd-*` and `--redis-*` options of `backup --source`.
#[derive(Args, Debug)]
pub(crate) struct StoreSourceArgs {
    /// etcd client URLs, comma-separated or repeated; the first healthy
    /// member is snapshotted.
    #[arg(
        long,
        env = "ETCDCTL_ENDPOINTS",
        value_delimiter = ',',
        value_name = "URL"
    )]
    etcd_endpoints: Vec<String>,
    /// CA certificate of etcd's client port (PEM).
    #[arg(long, env = "ETCDCTL_CACERT", value_name = "FILE")]
    etcd_cacert: Option<PathBuf>,
    /// Client certificate for etcd (PEM).
    #[arg(long, env = "ETCDCTL_CERT", value_name = "FILE")]
    etcd_cert: Option<PathBuf>,
    /// Client key for etcd (PEM).
    #[arg(long, env = "ETCDCTL_KEY", value_name = "FILE")]
    etcd_key: Option<PathBuf>,
    /// etcd user (the snapshot needs the root role when auth is on).
    #[arg(long, value_name = "USER")]
    etcd_user: Option<String>,
    /// File holding the etcd user's password (else ETCDCTL_PASSWORD).
    #[arg(long, value_name = "FILE")]
    etcd_password_file: Option<PathBuf>,
    /// The Redis server, redis://HOST:PORT/ (rediss:// for TLS).
    #[arg(long, env = "REDIS_URL", value_name = "URL")]
    redis_url: Option<String>,
    /// Redis ACL user.
    #[arg(long, value_name = "USER")]
    redis_user: Option<String>,
    /// File holding the Redis password (else REDISCLI_AUTH).
    #[arg(long, value_name = "FILE")]
    redis_password_file: Option<PathBuf>,
    /// Where the Redis data directory is on this host, when not at the
    /// path the server reports (CONFIG GET dir).
    #[arg(long, value_name = "DIR")]
    redis_data_dir: Option<PathBuf>,
    /// Read the RDB over the replication protocol (REPLCONF rdb-only, PSYNC)
    /// instead of BGSAVE and the server's file: for a server whose data
    /// directory is not on this host.
    #[arg(long)]
    redis_replication: bool,
    /// The PostgreSQL server: a libpq connection string,
    /// postgresql://USER@HOST:PORT/DB or "host=... user=...".
    #[arg(long, env = "BACKUP_PG_URL", value_name = "CONNINFO")]
    pg_url: Option<String>,
    /// physical (pg_basebackup; the role needs REPLICATION) or logical
    /// (pg_dump of each database, pg_dumpall --globals-only).
    #[arg(long, value_enum, default_value_t = PgMode::Physical)]
    pg_mode: PgMode,
    /// File holding the PostgreSQL password (else PGPASSWORD or ~/.pgpass,
    /// as libpq looks them up).
    #[arg(long, value_name = "FILE")]
    pg_password_file: Option<PathBuf>,
    /// Directory of psql, pg_basebackup and pg_dump (default: the PATH;
    /// Debian: /usr/lib/postgresql/MAJOR/bin).
    #[arg(long, value_name = "DIR")]
    pg_bin_dir: Option<PathBuf>,
    /// Logical: dump this database (repeatable; default: all that accept
    /// connections).
    #[arg(long = "pg-database", value_name = "NAME")]
    pg_databases: Vec<String>,
    /// Logical: parallel pg_dump jobs per database (directory format,
    /// staged in a temporary directory).
    #[arg(long, value_name = "N")]
    pg_jobs: Option<u32>,
    /// Logical: leave out roles and tablespaces (pg_dumpall needs a
    /// superuser).
    #[arg(long)]
    pg_no_globals: bool,
    /// The MariaDB or MySQL server, mysql://USER@HOST:PORT/.
    #[arg(long, env = "BACKUP_MARIADB_URL", value_name = "URL")]
    mariadb_url: Option<String>,
    /// logical (mariadb-dump) or physical (mariadb-backup; the server's
    /// data directory must be on this host).
    #[arg(long, value_enum, default_value_t = MariadbModeArg::Logical)]
    mariadb_mode: MariadbModeArg,
    /// File holding the MariaDB password.
    #[arg(long, value_name = "FILE")]
    mariadb_password_file: Option<PathBuf>,
    /// Directory of mariadb, mariadb-dump and mariadb-backup (default: the
    /// PATH).
    #[arg(long, value_name = "DIR")]
    mariadb_bin_dir: Option<PathBuf>,
    /// Logical: dump this database (repeatable; default: all but the
    /// system databases).
    #[arg(long = "mariadb-database", value_name = "NAME")]
    mariadb_databases: Vec<String>,
    /// Physical: where mariadb-backup stages its copy (default: the
    /// temporary directory).
    #[arg(long, value_name = "DIR")]
    mariadb_staging_dir: Option<PathBuf>,
    /// The Cassandra node's nodetool command line (default `nodetool`).
    #[arg(long, value_name = "COMMAND")]
    nodetool: Option<String>,
    /// The node's data directory (repeatable: every data_file_directories
    /// entry; default /var/lib/cassandra/data).
    #[arg(long = "cassandra-data-dir", value_name = "DIR")]
    cassandra_data_dirs: Vec<String>,
    /// Only this keyspace (repeatable; default all but system_traces).
    #[arg(long = "keyspace", value_name = "NAME")]
    keyspaces: Vec<String>,
    /// The node's name recorded in its facts (default: this host's name).
    #[arg(long, value_name = "NAME")]
    cassandra_node: Option<String>,
    /// The cqlsh command line whose DESCRIBE SCHEMA is stored (default
    /// `cqlsh` when it runs; `none` not to try).
    #[arg(long, value_name = "COMMAND")]
    cqlsh: Option<String>,
    /// Reach the node over SSH (user@host): its nodetool run there and its
    /// files read with tar, the host key checked against known_hosts.
    #[arg(long, value_name = "USER@HOST")]
    cassandra_ssh: Option<String>,
    /// The node's SSH port.
    #[arg(long, value_name = "PORT")]
    cassandra_ssh_port: Option<u16>,
    /// Run this command line before the snapshot (an argv, no shell;
    /// repeatable, in order).
    #[arg(long = "hook-before", value_name = "COMMAND")]
    hook_before: Vec<String>,
    /// Run this command line after the snapshot, whatever happened to it
    /// (repeatable).
    #[arg(long = "hook-after", value_name = "COMMAND")]
    hook_after: Vec<String>,
    /// How long each hook may run (default 30s).
    #[arg(long, value_name = "DURATION")]
    hook_timeout: Option<String>,
    /// What a failing hook does: fail the backup, or continue.
    #[arg(long, value_enum, default_value_t = HookOnError::Fail)]
    hook_on_error: HookOnError,
}

/// `--hook-on-error`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum HookOnError {
    /// The backup fails and is not recorded.
    Fail,
    /// The failure is logged and the backup goes on.
    Continue,
}

/// Options of `backup`.
#[derive(Args, Debug)]
pub(crate) struct BackupArgs {
    #[command(flatten)]
    common: Common,
    /// Backup set name.
    #[arg(long, default_value = "default")]
    set: String,
    /// Tag to record, KEY=VALUE (repeatable).
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    tags: Vec<String>,
    /// Record the backup as taken at this time (RFC 3339).
    #[arg(long)]
    time: Option<String>,
    /// Writer identity recorded in the manifest (default: host name).
    #[arg(long, env = "BACKUP_WRITER")]
    writer: Option<String>,
    /// Read every file again instead of skipping unchanged ones.
    #[arg(long)]
    force: bool,
    /// Stop with a collision error if the newest backup of the set was
    /// written by another writer (for scheduled backups, as a CronJob).
    #[arg(long)]
    check_collision: bool,
    /// Back up the standard output of this command line.
    #[arg(long, value_name = "COMMAND", conflicts_with = "paths")]
    stdin_from_command: Option<String>,
    /// File name for the command's output in the backup.
    #[arg(long, default_value = "stdin", requires = "stdin_from_command")]
    stdin_filename: String,
    /// What to back up (default: the paths, or the command's output).
    #[arg(long, value_enum)]
    source: Option<SourceKind>,
    #[command(flatten)]
    stores: StoreSourceArgs,
    #[command(flatten)]
    directory: DirectorySource,
    /// List what would be stored (paths, and totals) and store nothing.
    #[arg(short = 'n', long)]
    dry_run: bool,
    /// Files and directories to back up.
    paths: Vec<PathBuf>,
}

/// Backs up and prints the new backup's summary; exits with
/// [`EXIT_PARTIAL`] when some files could not be read.
pub(crate) async fn run(args: BackupArgs) -> Result<ExitCode, Error> {
    let BackupArgs {
        common,
        set,
        tags,
        time,
        writer,
        force,
        check_collision,
        stdin_from_command,
        stdin_filename,
        source,
        stores,
        mut directory,
        dry_run,
        paths,
    } = args;
    let listed = !directory.files_from.is_empty()
        || !directory.files_from_verbatim.is_empty()
        || !directory.files_from_raw.is_empty();
    let kind = source.unwrap_or(if stdin_from_command.is_some() {
        SourceKind::Command
    } else {
        SourceKind::Directory
    });
    if kind != SourceKind::Directory && (!paths.is_empty() || listed) {
        return Err(Error::InvalidArgument(format!(
            "paths are backed up by the directory source, not --source {}",
            format!("{kind:?}").to_lowercase()
        )));
    }
    let config = match kind {
        SourceKind::Directory if paths.is_empty() && !listed => return Err(Error::InvalidArgument(
            "nothing to back up: give paths, --files-from, --stdin-from-command or --source etcd|redis|postgres|mariadb|cassandra"
                .into(),
        )),
        SourceKind::Directory => {
            directory.paths = paths;
            if dry_run {
                return dry_run_listing(&directory, common.json).await;
            }
            SourceConfig::Directory(directory)
        }
        _ if dry_run => {
            return Err(Error::InvalidArgument(
                "--dry-run lists the files of a directory backup; a store's snapshot is only known once taken".into(),
            ))
        }
        SourceKind::Command => SourceConfig::Command {
            command: stdin_from_command.ok_or_else(|| {
                Error::InvalidArgument("--source command needs --stdin-from-command".into())
            })?,
            file_name: Some(stdin_filename),
        },
        SourceKind::Etcd if stores.etcd_endpoints.is_empty() => {
            return Err(Error::InvalidArgument(
                "--source etcd needs --etcd-endpoints (or ETCDCTL_ENDPOINTS)".into(),
            ))
        }
        SourceKind::Etcd => SourceConfig::Etcd(EtcdSource {
            endpoints: stores.etcd_endpoints,
            cacert: stores.etcd_cacert,
            cert: stores.etcd_cert,
            key: stores.etcd_key,
            user: stores.etcd_user,
            password_file: stores.etcd_password_file,
        }),
        SourceKind::Redis => SourceConfig::Redis(RedisSource {
            url: stores.redis_url.ok_or_else(|| {
                Error::InvalidArgument("--source redis needs --redis-url (or REDIS_URL)".into())
            })?,
            user: stores.redis_user,
            password_file: stores.redis_password_file,
            data_dir: stores.redis_data_dir,
            replication: stores.redis_replication,
        }),
        SourceKind::Postgres => SourceConfig::Postgres(PostgresSource {
            url: stores.pg_url.ok_or_else(|| {
                Error::InvalidArgument("--source postgres needs --pg-url (or BACKUP_PG_URL)".into())
            })?,
            mode: Some(
                match stores.pg_mode {
                    PgMode::Physical => "physical",
                    PgMode::Logical => "logical",
                }
                .into(),
            ),
            password_file: stores.pg_password_file,
            bin_dir: stores.pg_bin_dir,
            databases: stores.pg_databases,
            jobs: stores.pg_jobs,
            globals: Some(!stores.pg_no_globals),
        }),
        SourceKind::Cassandra => SourceConfig::Cassandra(CassandraSource {
            name: stores.cassandra_node,
            nodetool: stores.nodetool,
            cqlsh: stores.cqlsh,
            data_dirs: stores.cassandra_data_dirs,
            keyspaces: stores.keyspaces,
            system_traces: false,
            ssh: stores.cassandra_ssh,
            ssh_port: stores.cassandra_ssh_port,
            ssh_key: common.store.ssh_key.clone(),
            known_hosts: common.store.known_hosts.clone(),
        }),
        SourceKind::Mariadb => SourceConfig::Mariadb(MariadbSource {
            url: stores.mariadb_url.ok_or_else(|| {
                Error::InvalidArgument(
                    "--source mariadb needs --mariadb-url (or BACKUP_MARIADB_URL)".into(),
                )
            })?,
            mode: Some(
                match stores.mariadb_mode {
                    MariadbModeArg::Logical => "logical",
                    MariadbModeArg::Physical => "physical",
                }
                .into(),
            ),
            password_file: stores.mariadb_password_file,
            bin_dir: stores.mariadb_bin_dir,
            databases: stores.mariadb_databases,
            staging_dir: stores.mariadb_staging_dir,
        }),
    };
    let hook_timeout = stores
        .hook_timeout
        .as_deref()
        .map(|text| {
            backup_core::parse_duration(text).map_err(|error| {
                Error::InvalidArgument(format!("--hook-timeout {text:?}: {error}"))
            })
        })
        .transpose()?;
    let hooks = HooksConfig::from_command_lines(
        &stores.hook_before,
        &stores.hook_after,
        hook_timeout,
        match stores.hook_on_error {
            HookOnError::Fail => OnError::Fail,
            HookOnError::Continue => OnError::Continue,
        },
    )?;
    let snapshotter = config.snapshotter(&hooks)?;
    let time = time
        .map(|text| {
            DateTime::parse_from_rfc3339(&text)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|error| Error::InvalidArgument(format!("--time {text:?}: {error}")))
        })
        .transpose()?;
    let repo = open(&common).await?;
    let options = {
        let mut options = BackupOptions::default();
        options.set = set;
        options.tags = parse_tags(&tags)?;
        options.time = time;
        options.writer = writer;
        options.parent = if force {
            ParentSelection::None
        } else {
            ParentSelection::Latest
        };
        options.progress = progress_sink(&common);
        options.check_collision = check_collision;
        options
    };
    let summary = repo.backup(snapshotter.as_ref(), options).await?;
    let manifest = &summary.manifest;
    let stats = &manifest.stats;
    if common.json {
        print_json(&json!({
            "id": summary.id.to_hex(),
            "short_id": summary.id.short(),
            "set": manifest.set,
            "time": manifest.time.to_rfc3339(),
            "writer": manifest.writer,
            "hostname": manifest.hostname,
            "status": manifest.status,
            "files": stats.files,
            "dirs": stats.dirs,
            "files_unchanged": stats.files_unchanged,
            "bytes_total": stats.bytes_total,
            "bytes_read": stats.bytes_read,
            "bytes_added": stats.bytes_added,
            "source": manifest.source,
            "facts": manifest.facts,
            "duration_seconds": stats.duration_ms as f64 / 1000.0,
            "errors": summary.failures,
        }));
    } else {
        out!(
            "backup {} of set {:?}: {} files ({} unchanged), {} dirs, {} read, {} added, in {:.2}s",
            summary.id.short(),
            manifest.set,
            stats.files,
            stats.files_unchanged,
            stats.dirs,
            human_bytes(stats.bytes_read),
            human_bytes(stats.bytes_added),
            stats.duration_ms as f64 / 1000.0
        );
        for error in &manifest.errors {
            eprintln!("warning: not backed up: {}: {}", error.path, error.message);
        }
    }
    Ok(if manifest.status == BackupStatus::Completed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PARTIAL)
    })
}

/// `--dry-run`: prints what a backup of `directory` would store, one line
/// per item (`file`, `dir`, `symlink`, with sizes), then the totals.
async fn dry_run_listing(directory: &DirectorySource, json: bool) -> Result<ExitCode, Error> {
    let items = directory.snapshotter()?.dry_run().await?;
    let files = items.iter().filter(|item| item.kind == "file").count();
    let dirs = items.iter().filter(|item| item.kind == "dir").count();
    let bytes: u64 = items.iter().map(|item| item.size).sum();
    if json {
        print_json(&json!({
            "dry_run": true,
            "items": items
                .iter()
                .map(|item| json!({
                    "path": item.path.display().to_string(),
                    "type": item.kind,
                    "size": item.size,
                }))
                .collect::<Vec<_>>(),
            "files": files,
            "dirs": dirs,
            "bytes": bytes,
        }));
    } else {
        for item in &items {
            match item.kind {
                "file" => out!(
                    "would store file    {} ({})",
                    item.path.display(),
                    human_bytes(item.size)
                ),
                "other" => out!("would skip special  {}", item.path.display()),
                kind => out!("would store {kind:<8}{}", item.path.display()),
            }
        }
        out!(
            "dry run: would store {files} files and {dirs} dirs, {} (nothing written)",
            human_bytes(bytes)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `--tag KEY=VALUE` options as a map (a later tag of the same key wins).
fn parse_tags(tags: &[String]) -> Result<BTreeMap<String, String>, Error> {
    tags.iter()
        .map(|tag| {
            tag.split_once('=')
                .filter(|(key, _)| !key.is_empty())
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .ok_or_else(|| Error::InvalidArgument(format!("tag {tag:?} is not KEY=VALUE")))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_tags;

    #[test]
    fn tags_are_key_value_pairs_with_a_non_empty_key() {
        let tags = parse_tags(&["env=prod".into(), "note=a=b".into(), "empty=".into()]).unwrap();
        assert_eq!(tags["env"], "prod");
        assert_eq!(tags["note"], "a=b");
        assert_eq!(tags["empty"], "");
        for bad in ["novalue", "=value"] {
            let message = parse_tags(&[bad.into()]).unwrap_err().to_string();
            assert!(message.contains("is not KEY=VALUE"), "{message}");
        }
    }
}
