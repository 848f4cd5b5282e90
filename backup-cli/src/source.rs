//! What a backup reads: the sources `backupctl backup --source` and the
//! `source` table of `schedule.toml` name, and the hooks around them; one
//! description for both, turned into a snapshotter here.

use std::path::PathBuf;
use std::time::Duration;

use backup_core::{
    files_from, CassandraNode, CassandraSnapshotter, CommandSnapshotter, DirectorySnapshotter,
    Error, EtcdSnapshotter, EtcdTls, FilesFrom, Hook, Hooks, MariadbMode, MariadbSnapshotter,
    OnError, PostgresMode, PostgresSnapshotter, RedisSnapshotter, Selection, Snapshotter,
    SshAccess, DEFAULT_HOOK_TIMEOUT,
};
use serde::Deserialize;

use crate::parse::ExactDuration;
use crate::password::read_secret_file;

/// A source, as `schedule.toml` writes it (`type = "etcd"`, ...) and as the
/// backup command's options build it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum SourceConfig {
    /// Files and directories.
    Directory(DirectorySource),
    /// The standard output of a command, such as `pg_dump`.
    Command {
        /// The command line (split like a shell would, without running a
        /// shell).
        command: String,
        /// Name of the file the output is stored as.
        #[serde(default)]
        file_name: Option<String>,
    },
    /// An etcd member, through its Maintenance API.
    Etcd(EtcdSource),
    /// A Redis server: BGSAVE, then its RDB.
    Redis(RedisSource),
    /// A PostgreSQL server: a base backup or dumps.
    Postgres(PostgresSource),
    /// A MariaDB or MySQL server: a dump or a mariadb-backup copy.
    Mariadb(MariadbSource),
    /// A Cassandra node: a nodetool snapshot of its SSTables.
    Cassandra(CassandraSource),
}

/// Files and directories and what of them is left out, with restic's
/// option names: a `schedule.toml` source and `backup`'s options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub(crate) struct DirectorySource {
    /// The paths backed up.
    #[serde(default)]
    #[arg(skip)]
    pub(crate) paths: Vec<PathBuf>,
    /// Leave out what this pattern matches (repeatable; restic's glob
    /// patterns: `*.tmp`, `/srv/app/cache`, `src/**/*.o`).
    #[serde(default)]
    #[arg(long, value_name = "PATTERN")]
    pub(crate) exclude: Vec<String>,
    /// As --exclude, whatever the case.
    #[serde(default)]
    #[arg(long, value_name = "PATTERN")]
    pub(crate) iexclude: Vec<String>,
    /// Read exclude patterns from this file, one per line (repeatable).
    #[serde(default)]
    #[arg(long, value_name = "FILE")]
    pub(crate) exclude_file: Vec<PathBuf>,
    /// As --exclude-file, whatever the case.
    #[serde(default)]
    #[arg(long, value_name = "FILE")]
    pub(crate) iexclude_file: Vec<PathBuf>,
    /// Store only the file NAME of a directory holding it (that starts
    /// with HEADER, when given) (repeatable).
    #[serde(default)]
    #[arg(long, value_name = "NAME[:HEADER]")]
    pub(crate) exclude_if_present: Vec<String>,
    /// Store only the CACHEDIR.TAG of directories tagged as caches.
    #[serde(default)]
    #[arg(long)]
    pub(crate) exclude_caches: bool,
    /// Leave out files larger than SIZE (bytes, or with k, M, G, T).
    #[serde(default)]
    #[arg(long, value_name = "SIZE")]
    pub(crate) exclude_larger_than: Option<String>,
    /// Stay on each path's file system (mount points stored empty).
    #[serde(default)]
    #[arg(short = 'x', long)]
    pub(crate) one_file_system: bool,
    /// Also back up the paths this file lists, one glob pattern per line,
    /// `#` comments (repeatable).
    #[serde(default)]
    #[arg(long, value_name = "FILE")]
    pub(crate) files_from: Vec<PathBuf>,
    /// Also back up the paths this file lists, one per line, as written.
    #[serde(default)]
    #[arg(long, value_name = "FILE")]
    pub(crate) files_from_verbatim: Vec<PathBuf>,
    /// Also back up the paths this file lists, separated by NUL bytes
    /// (find -print0).
    #[serde(default)]
    #[arg(long, value_name = "FILE")]
    pub(crate) files_from_raw: Vec<PathBuf>,
}

impl DirectorySource {
    /// Every path: those given and those the lists name.
    pub(crate) fn all_paths(&self) -> Result<Vec<PathBuf>, Error> {
        let mut paths = self.paths.clone();
        for (lists, how) in [
            (&self.files_from, FilesFrom::Patterns),
            (&self.files_from_verbatim, FilesFrom::Verbatim),
            (&self.files_from_raw, FilesFrom::Raw),
        ] {
            for list in lists {
                paths.extend(files_from(list, how)?);
            }
        }
        Ok(paths)
    }

    /// What is left out.
    pub(crate) fn selection(&self) -> Result<Selection, Error> {
        let mut selection = Selection::new();
        for pattern in &self.exclude {
            selection = selection.exclude(pattern)?;
        }
        for pattern in &self.iexclude {
            selection = selection.iexclude(pattern)?;
        }
        for file in &self.exclude_file {
            selection = selection.exclude_file(file)?;
        }
        for file in &self.iexclude_file {
            selection = selection.iexclude_file(file)?;
        }
        for spec in &self.exclude_if_present {
            selection = selection.exclude_if_present(spec)?;
        }
        if self.exclude_caches {
            selection = selection.exclude_caches();
        }
        if let Some(size) = &self.exclude_larger_than {
            selection = selection.exclude_larger_than(crate::parse::parse_size(size)?);
        }
        Ok(selection.one_file_system(self.one_file_system))
    }

    /// The snapshotter of every path, with the selection.
    pub(crate) fn snapshotter(&self) -> Result<DirectorySnapshotter, Error> {
        let paths = self.all_paths()?;
        if paths.is_empty() {
            return Err(Error::InvalidArgument(
                "nothing to back up: no paths given, and the --files-from lists name none".into(),
            ));
        }
        Ok(DirectorySnapshotter::new(paths).with_selection(self.selection()?))
    }
}

/// The settings of a Cassandra node: a `schedule.toml` source, a node of
/// a cluster's node list, or `backup --source cassandra`'s options.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CassandraSource {
    /// The node's name, the last part of its backup set in a cluster
    /// (default: this host's name).
    #[serde(default)]
    pub(crate) name: Option<String>,
    /// The nodetool command line (default `nodetool`).
    #[serde(default)]
    pub(crate) nodetool: Option<String>,
    /// The cqlsh command line for `DESCRIBE SCHEMA` (default `cqlsh`;
    /// `none` not to run it).
    #[serde(default)]
    pub(crate) cqlsh: Option<String>,
    /// The node's data directories (default /var/lib/cassandra/data).
    #[serde(default)]
    pub(crate) data_dirs: Vec<String>,
    /// Only these keyspaces (default: all but system_traces).
    #[serde(default)]
    pub(crate) keyspaces: Vec<String>,
    /// Keep system_traces too.
    #[serde(default)]
    pub(crate) system_traces: bool,
    /// Reach the node over SSH: `user@host`.
    #[serde(default)]
    pub(crate) ssh: Option<String>,
    /// The SSH port.
    #[serde(default)]
    pub(crate) ssh_port: Option<u16>,
    /// The SSH private key.
    #[serde(default)]
    pub(crate) ssh_key: Option<PathBuf>,
    /// The known_hosts file holding the node's host key (default
    /// ~/.ssh/known_hosts; unknown hosts are refused).
    #[serde(default)]
    pub(crate) known_hosts: Option<PathBuf>,
}

impl CassandraSource {
    /// The node's snapshotter.
    pub(crate) fn snapshotter(&self) -> Result<CassandraSnapshotter, Error> {
        let name = match &self.name {
            Some(name) => name.clone(),
            None => hostname(),
        };
        let mut node = CassandraNode::new(name);
        if let Some(command) = &self.nodetool {
            node = node.with_nodetool(command)?;
        }
        if let Some(command) = &self.cqlsh {
            node = node.with_cqlsh((command != "none").then_some(command.as_str()))?;
        }
        if !self.data_dirs.is_empty() {
            node = node.with_data_dirs(self.data_dirs.clone());
        }
        if let Some(destination) = &self.ssh {
            let mut ssh = SshAccess::new(destination.clone());
            if let Some(port) = self.ssh_port {
                ssh = ssh.with_port(port);
            }
            if let Some(key) = &self.ssh_key {
                ssh = ssh.with_identity(key.clone());
            }
            if let Some(file) = &self.known_hosts {
                ssh = ssh.with_known_hosts(file.clone());
            }
            node = node.over_ssh(ssh);
        }
        Ok(CassandraSnapshotter::new(node)
            .with_keyspaces(self.keyspaces.clone())
            .with_system_traces(self.system_traces))
    }
}

/// This host's name, for a node named by nothing else.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The settings of a MariaDB source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MariadbSource {
    /// `mysql://USER@HOST:PORT/` (the password better in `password_file`).
    pub(crate) url: String,
    /// `logical` (default: mariadb-dump) or `physical` (mariadb-backup).
    #[serde(default)]
    pub(crate) mode: Option<String>,
    /// File holding the password.
    #[serde(default)]
    pub(crate) password_file: Option<PathBuf>,
    /// Directory of mariadb, mariadb-dump, mariadb-backup (default: PATH).
    #[serde(default)]
    pub(crate) bin_dir: Option<PathBuf>,
    /// Logical: the databases (default: all but the system ones).
    #[serde(default)]
    pub(crate) databases: Vec<String>,
    /// Physical: where mariadb-backup stages its copy.
    #[serde(default)]
    pub(crate) staging_dir: Option<PathBuf>,
}

/// The settings of a PostgreSQL source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PostgresSource {
    /// A libpq connection string: `postgresql://user@host:port/db` or
    /// `host=... user=...` (the password better in `password_file`).
    pub(crate) url: String,
    /// `physical` (default: pg_basebackup) or `logical` (pg_dump).
    #[serde(default)]
    pub(crate) mode: Option<String>,
    /// File holding the password (else libpq's PGPASSWORD or ~/.pgpass).
    #[serde(default)]
    pub(crate) password_file: Option<PathBuf>,
    /// Directory of psql, pg_basebackup, pg_dump (default: the PATH).
    #[serde(default)]
    pub(crate) bin_dir: Option<PathBuf>,
    /// Logical: the databases (default: all that accept connections).
    #[serde(default)]
    pub(crate) databases: Vec<String>,
    /// Logical: parallel pg_dump jobs per database (directory format).
    #[serde(default)]
    pub(crate) jobs: Option<u32>,
    /// Logical: dump roles and tablespaces too (default true).
    #[serde(default)]
    pub(crate) globals: Option<bool>,
}

/// The settings of an etcd source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EtcdSource {
    /// Client URLs; the first healthy member is snapshotted.
    pub(crate) endpoints: Vec<String>,
    /// CA certificate (PEM).
    #[serde(default)]
    pub(crate) cacert: Option<PathBuf>,
    /// Client certificate (PEM).
    #[serde(default)]
    pub(crate) cert: Option<PathBuf>,
    /// Client key (PEM).
    #[serde(default)]
    pub(crate) key: Option<PathBuf>,
    /// User to authenticate as.
    #[serde(default)]
    pub(crate) user: Option<String>,
    /// File holding the user's password (else `ETCDCTL_PASSWORD`).
    #[serde(default)]
    pub(crate) password_file: Option<PathBuf>,
}

/// The settings of a Redis source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RedisSource {
    /// `redis://host:port/` (credentials better in `password_file`).
    pub(crate) url: String,
    /// ACL user, with the password.
    #[serde(default)]
    pub(crate) user: Option<String>,
    /// File holding the password (else `REDISCLI_AUTH`).
    #[serde(default)]
    pub(crate) password_file: Option<PathBuf>,
    /// Where the server's data directory is on this host, when not at the
    /// path the server reports.
    #[serde(default)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Read the RDB over the replication protocol instead of BGSAVE and
    /// the file (for a server whose files are not on this host).
    #[serde(default)]
    pub(crate) replication: bool,
}

/// One hook, as `schedule.toml` writes it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HookConfig {
    /// The command as an argv (no shell).
    pub(crate) command: Vec<String>,
    /// How long it may run (default 30 s).
    #[serde(default)]
    pub(crate) timeout: Option<ExactDuration>,
    /// `fail` (default) or `continue`.
    #[serde(default)]
    pub(crate) on_error: OnError,
}

/// The hooks of a source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HooksConfig {
    /// Run before the snapshot, in order.
    #[serde(default)]
    pub(crate) before: Vec<HookConfig>,
    /// Run after the snapshot whatever happened, in order.
    #[serde(default)]
    pub(crate) after: Vec<HookConfig>,
}

impl HooksConfig {
    fn hooks(&self) -> Result<Hooks, Error> {
        let hook = |config: &HookConfig| -> Result<Hook, Error> {
            if config
                .command
                .first()
                .is_none_or(|program| program.is_empty())
            {
                return Err(Error::InvalidArgument("a hook has an empty command".into()));
            }
            Ok(Hook::command(config.command.clone())
                .with_timeout(
                    config
                        .timeout
                        .map_or(DEFAULT_HOOK_TIMEOUT, |timeout| timeout.0),
                )
                .with_on_error(config.on_error))
        };
        let mut hooks = Hooks::new();
        for config in &self.before {
            hooks = hooks.before(hook(config)?);
        }
        for config in &self.after {
            hooks = hooks.after(hook(config)?);
        }
        Ok(hooks)
    }

    /// Hooks from the command line: each a command line split into an
    /// argv (no shell runs it).
    pub(crate) fn from_command_lines(
        before: &[String],
        after: &[String],
        timeout: Option<Duration>,
        on_error: OnError,
    ) -> Result<HooksConfig, Error> {
        let hook = |line: &String| -> Result<HookConfig, Error> {
            let command = shell_words::split(line).map_err(|error| {
                Error::InvalidArgument(format!("hook {line:?}: unterminated quote ({error})"))
            })?;
            Ok(HookConfig {
                command,
                timeout: timeout.map(ExactDuration),
                on_error,
            })
        };
        Ok(HooksConfig {
            before: before.iter().map(hook).collect::<Result<_, _>>()?,
            after: after.iter().map(hook).collect::<Result<_, _>>()?,
        })
    }
}

impl SourceConfig {
    /// What is wrong with the settings, if anything.
    pub(crate) fn problem(&self) -> Option<&'static str> {
        match self {
            SourceConfig::Directory(dir)
                if dir.paths.is_empty()
                    && dir.files_from.is_empty()
                    && dir.files_from_verbatim.is_empty()
                    && dir.files_from_raw.is_empty() =>
            {
                Some("the directory source has no `paths` (nor `files_from` lists)")
            }
            SourceConfig::Command { command, .. } if command.trim().is_empty() => {
                Some("the command source has an empty `command`")
            }
            SourceConfig::Etcd(etcd) if etcd.endpoints.is_empty() => {
                Some("the etcd source has no `endpoints`")
            }
            SourceConfig::Redis(redis) if redis.url.trim().is_empty() => {
                Some("the redis source has an empty `url`")
            }
            SourceConfig::Postgres(pg) if pg.url.trim().is_empty() => {
                Some("the postgres source has an empty `url`")
            }
            SourceConfig::Mariadb(db) if db.url.trim().is_empty() => {
                Some("the mariadb source has an empty `url`")
            }
            _ => None,
        }
    }

    /// The snapshotter, with `hooks` around it.
    pub(crate) fn snapshotter(&self, hooks: &HooksConfig) -> Result<Box<dyn Snapshotter>, Error> {
        if let Some(problem) = self.problem() {
            return Err(Error::InvalidArgument(problem.into()));
        }
        let snapshotter: Box<dyn Snapshotter> = match self {
            SourceConfig::Directory(dir) => Box::new(dir.snapshotter()?),
            SourceConfig::Command { command, file_name } => {
                let snapshotter = CommandSnapshotter::from_command_line(command)?;
                Box::new(match file_name {
                    Some(name) => snapshotter.with_file_name(name.clone()),
                    None => snapshotter,
                })
            }
            SourceConfig::Etcd(etcd) => {
                let mut snapshotter = EtcdSnapshotter::new(etcd.endpoints.clone());
                if etcd.cacert.is_some() || etcd.cert.is_some() || etcd.key.is_some() {
                    snapshotter = snapshotter.with_tls(EtcdTls::new(
                        etcd.cacert.clone(),
                        etcd.cert.clone(),
                        etcd.key.clone(),
                    ));
                }
                if let Some(user) = &etcd.user {
                    let password = secret(
                        etcd.password_file.as_deref(),
                        "ETCDCTL_PASSWORD",
                        "the etcd password",
                    )?
                    .ok_or_else(|| {
                        Error::InvalidArgument(format!(
                            "etcd user {user:?} needs a password: give --etcd-password-file (or \
                             `password_file`) or set ETCDCTL_PASSWORD"
                        ))
                    })?;
                    snapshotter = snapshotter.with_credentials(user.clone(), password);
                }
                Box::new(snapshotter)
            }
            SourceConfig::Redis(redis) => {
                let mut snapshotter = RedisSnapshotter::new(redis.url.clone());
                if redis.replication {
                    snapshotter = snapshotter.with_replication_stream();
                }
                if let Some(dir) = &redis.data_dir {
                    snapshotter = snapshotter.with_data_dir(dir.clone());
                }
                if let Some(password) = secret(
                    redis.password_file.as_deref(),
                    "REDISCLI_AUTH",
                    "the Redis password",
                )? {
                    snapshotter = snapshotter.with_password(redis.user.clone(), password);
                }
                Box::new(snapshotter)
            }
            SourceConfig::Postgres(pg) => {
                let mode = match pg.mode.as_deref() {
                    Some(mode) => mode.parse::<PostgresMode>()?,
                    None => PostgresMode::Physical,
                };
                let mut snapshotter = PostgresSnapshotter::new(pg.url.clone())
                    .with_mode(mode)
                    .with_databases(pg.databases.clone())
                    .with_globals(pg.globals.unwrap_or(true))
                    .with_jobs(pg.jobs.unwrap_or(1));
                if let Some(dir) = &pg.bin_dir {
                    snapshotter = snapshotter.with_bin_dir(dir.clone());
                }
                if let Some(file) = &pg.password_file {
                    snapshotter = snapshotter
                        .with_password(read_secret_file(file, "the PostgreSQL password")?);
                }
                Box::new(snapshotter)
            }
            SourceConfig::Mariadb(db) => {
                let mode = match db.mode.as_deref() {
                    Some(mode) => mode.parse::<MariadbMode>()?,
                    None => MariadbMode::Logical,
                };
                let mut snapshotter = MariadbSnapshotter::new(db.url.clone())
                    .with_mode(mode)
                    .with_databases(db.databases.clone());
                if let Some(dir) = &db.bin_dir {
                    snapshotter = snapshotter.with_bin_dir(dir.clone());
                }
                if let Some(dir) = &db.staging_dir {
                    snapshotter = snapshotter.with_staging_dir(dir.clone());
                }
                if let Some(file) = &db.password_file {
                    snapshotter =
                        snapshotter.with_password(read_secret_file(file, "the MariaDB password")?);
                }
                Box::new(snapshotter)
            }
            SourceConfig::Cassandra(node) => Box::new(node.snapshotter()?),
        };
        let hooks = hooks.hooks()?;
        Ok(if hooks.is_empty() {
            snapshotter
        } else {
            Box::new(hooks.around(snapshotter))
        })
    }
}

/// A secret from a file, else from an environment variable.
fn secret(
    file: Option<&std::path::Path>,
    variable: &str,
    what: &'static str,
) -> Result<Option<String>, Error> {
    if let Some(file) = file {
        return read_secret_file(file, what).map(Some);
    }
    Ok(std::env::var(variable)
        .ok()
        .filter(|value| !value.is_empty()))
}
