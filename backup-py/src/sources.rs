//! The sources a backup reads (the library's snapshotters) and the stores a
//! backup is restored into (its restorers), as Python objects that hold
//! their settings. Each call builds the library's own snapshotter or
//! restorer from them.

use std::path::PathBuf;
use std::time::Duration;

use backup_core::{
    CassandraNode, CassandraRestorer, CassandraSnapshotter, CommandRestorer, CommandSnapshotter,
    DirectoryRestorer, DirectorySnapshotter, EtcdRestorer, EtcdSnapshotter, EtcdTls, Hook, Hooks,
    MariadbMode, MariadbRestorer, MariadbSnapshotter, OnError, PostgresMode, PostgresRestorer,
    PostgresSnapshotter, RecoveryTarget, RedisRestorer, RedisSnapshotter, RestoreOptions, Restorer,
    Selection, Snapshotter, SshAccess,
};
use pyo3::prelude::*;

use crate::errors::{invalid, to_py};

/// One path or several.
#[derive(FromPyObject)]
pub(crate) enum Paths {
    One(PathBuf),
    Many(Vec<PathBuf>),
}

/// The snapshotter of a backup call: the directory source of `paths`, or
/// `source`, with `hooks` around it.
pub(crate) fn snapshotter_for(
    paths: Option<Paths>,
    source: Option<PyRef<'_, PySource>>,
    hooks: Option<PyRef<'_, PyHooks>>,
) -> PyResult<Box<dyn Snapshotter>> {
    let snapshotter: Box<dyn Snapshotter> = match (paths, source) {
        (Some(_), Some(_)) => return Err(invalid("give paths or source, not both")),
        (None, None) => return Err(invalid("nothing to back up: give paths or a source")),
        (Some(paths), None) => {
            let paths = match paths {
                Paths::One(path) => vec![path],
                Paths::Many(paths) => paths,
            };
            if paths.is_empty() {
                return Err(invalid("nothing to back up: paths is empty"));
            }
            Box::new(DirectorySnapshotter::new(paths))
        }
        (None, Some(source)) => source.snapshotter(),
    };
    Ok(match hooks {
        Some(hooks) => hooks.around(snapshotter),
        None => snapshotter,
    })
}

/// What a source is.
#[derive(Clone)]
enum SourceSpec {
    Directory(Vec<PathBuf>, Selection),
    Command {
        argv: Vec<String>,
        file_name: Option<String>,
    },
    Etcd {
        endpoints: Vec<String>,
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        user: Option<String>,
        password: Option<String>,
        file_name: Option<String>,
    },
    Redis {
        url: String,
        user: Option<String>,
        password: Option<String>,
        data_dir: Option<PathBuf>,
        replication: bool,
        save_timeout: Option<Duration>,
        file_name: Option<String>,
    },
    Postgres {
        url: String,
        mode: PostgresMode,
        password: Option<String>,
        bin_dir: Option<PathBuf>,
        databases: Vec<String>,
        jobs: u32,
        globals: bool,
    },
    Mariadb {
        url: String,
        mode: MariadbMode,
        password: Option<String>,
        bin_dir: Option<PathBuf>,
        databases: Vec<String>,
        staging_dir: Option<PathBuf>,
    },
    /// Built (and its command lines checked) when the source is made.
    Cassandra(CassandraSnapshotter),
}

/// A source of a backup: one of `DirectorySource`, `CommandSource`,
/// `EtcdSource`, `RedisSource`, `PostgresSource`, `MariadbSource`,
/// `CassandraSource`.
#[pyclass(name = "Source", module = "backup_toolkit", subclass, frozen)]
pub(crate) struct PySource {
    spec: SourceSpec,
}

impl PySource {
    /// The library's snapshotter for this source.
    pub(crate) fn snapshotter(&self) -> Box<dyn Snapshotter> {
        match &self.spec {
            SourceSpec::Directory(paths, selection) => {
                Box::new(DirectorySnapshotter::new(paths.clone()).with_selection(selection.clone()))
            }
            SourceSpec::Command { argv, file_name } => {
                let mut snapshotter = CommandSnapshotter::new(argv[0].clone(), argv[1..].to_vec());
                if let Some(name) = file_name {
                    snapshotter = snapshotter.with_file_name(name.clone());
                }
                Box::new(snapshotter)
            }
            SourceSpec::Etcd {
                endpoints,
                ca,
                cert,
                key,
                user,
                password,
                file_name,
            } => {
                let mut snapshotter = EtcdSnapshotter::new(endpoints.clone());
                if ca.is_some() || cert.is_some() || key.is_some() {
                    snapshotter =
                        snapshotter.with_tls(EtcdTls::new(ca.clone(), cert.clone(), key.clone()));
                }
                if let (Some(user), Some(password)) = (user, password) {
                    snapshotter = snapshotter.with_credentials(user.clone(), password.clone());
                }
                if let Some(name) = file_name {
                    snapshotter = snapshotter.with_file_name(name.clone());
                }
                Box::new(snapshotter)
            }
            SourceSpec::Redis {
                url,
                user,
                password,
                data_dir,
                replication,
                save_timeout,
                file_name,
            } => {
                let mut snapshotter = RedisSnapshotter::new(url.clone());
                if let Some(password) = password {
                    snapshotter = snapshotter.with_password(user.clone(), password.clone());
                }
                if let Some(dir) = data_dir {
                    snapshotter = snapshotter.with_data_dir(dir.clone());
                }
                if *replication {
                    snapshotter = snapshotter.with_replication_stream();
                }
                if let Some(timeout) = save_timeout {
                    snapshotter = snapshotter.with_save_timeout(*timeout);
                }
                if let Some(name) = file_name {
                    snapshotter = snapshotter.with_file_name(name.clone());
                }
                Box::new(snapshotter)
            }
            SourceSpec::Postgres {
                url,
                mode,
                password,
                bin_dir,
                databases,
                jobs,
                globals,
            } => {
                let mut snapshotter = PostgresSnapshotter::new(url.clone())
                    .with_mode(*mode)
                    .with_databases(databases.clone())
                    .with_jobs(*jobs)
                    .with_globals(*globals);
                if let Some(password) = password {
                    snapshotter = snapshotter.with_password(password.clone());
                }
                if let Some(dir) = bin_dir {
                    snapshotter = snapshotter.with_bin_dir(dir.clone());
                }
                Box::new(snapshotter)
            }
            SourceSpec::Mariadb {
                url,
                mode,
                password,
                bin_dir,
                databases,
                staging_dir,
            } => {
                let mut snapshotter = MariadbSnapshotter::new(url.clone())
                    .with_mode(*mode)
                    .with_databases(databases.clone());
                if let Some(password) = password {
                    snapshotter = snapshotter.with_password(password.clone());
                }
                if let Some(dir) = bin_dir {
                    snapshotter = snapshotter.with_bin_dir(dir.clone());
                }
                if let Some(dir) = staging_dir {
                    snapshotter = snapshotter.with_staging_dir(dir.clone());
                }
                Box::new(snapshotter)
            }
            SourceSpec::Cassandra(snapshotter) => Box::new(snapshotter.clone()),
        }
    }

    /// The library's snapshotter of a Cassandra node (for a cluster
    /// backup); `None` for another kind of source.
    pub(crate) fn cassandra(&self) -> Option<CassandraSnapshotter> {
        match &self.spec {
            SourceSpec::Cassandra(snapshotter) => Some(snapshotter.clone()),
            _ => None,
        }
    }
}

/// The host part of a URL that may carry a password.
fn host_of(url: &str) -> &str {
    url.rsplit('@').next().unwrap_or(url)
}

#[pymethods]
impl PySource {
    /// The kind of backup this source makes (`directory`, `command`,
    /// `etcd`, `redis`, `postgres`, `mariadb`, `cassandra`).
    #[getter]
    pub(crate) fn kind(&self) -> &'static str {
        match self.spec {
            SourceSpec::Directory(..) => "directory",
            SourceSpec::Command { .. } => "command",
            SourceSpec::Etcd { .. } => "etcd",
            SourceSpec::Redis { .. } => "redis",
            SourceSpec::Postgres { .. } => "postgres",
            SourceSpec::Mariadb { .. } => "mariadb",
            SourceSpec::Cassandra(_) => "cassandra",
        }
    }

    fn __repr__(&self) -> String {
        match &self.spec {
            SourceSpec::Directory(paths, _) => format!("DirectorySource({paths:?})"),
            SourceSpec::Command { argv, .. } => format!("CommandSource({argv:?})"),
            SourceSpec::Etcd { endpoints, .. } => format!("EtcdSource({endpoints:?})"),
            // The URL may carry a password: only its host part is shown.
            SourceSpec::Redis { url, .. } => format!("RedisSource({:?})", host_of(url)),
            SourceSpec::Postgres { url, mode, .. } => format!(
                "PostgresSource({:?}, mode={:?})",
                host_of(url),
                mode.as_str()
            ),
            SourceSpec::Mariadb { url, mode, .. } => format!(
                "MariadbSource({:?}, mode={:?})",
                host_of(url),
                mode.as_str()
            ),
            SourceSpec::Cassandra(snapshotter) => {
                format!("CassandraSource({:?})", snapshotter.node().name())
            }
        }
    }
}

/// The files and directories under some paths, read as they are, less
/// what restic's exclude options leave out: `exclude` / `iexclude` (glob
/// patterns matched against each absolute path, the second ignoring case),
/// `exclude_file` / `iexclude_file` (files of such patterns),
/// `exclude_if_present` (`NAME` or `NAME:HEADER`: a directory holding such
/// a file is stored with only that file), `exclude_caches` (the same for
/// `CACHEDIR.TAG`), `exclude_larger_than` (bytes) and `one_file_system`.
#[pyclass(name = "DirectorySource", module = "backup_toolkit", extends = PySource, frozen)]
pub(crate) struct PyDirectorySource;

#[pymethods]
impl PyDirectorySource {
    #[new]
    #[pyo3(signature = (paths, *, exclude=Vec::new(), iexclude=Vec::new(), exclude_file=Vec::new(), iexclude_file=Vec::new(), exclude_if_present=Vec::new(), exclude_caches=false, exclude_larger_than=None, one_file_system=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        paths: Vec<PathBuf>,
        exclude: Vec<String>,
        iexclude: Vec<String>,
        exclude_file: Vec<PathBuf>,
        iexclude_file: Vec<PathBuf>,
        exclude_if_present: Vec<String>,
        exclude_caches: bool,
        exclude_larger_than: Option<u64>,
        one_file_system: bool,
    ) -> PyResult<PyClassInitializer<Self>> {
        if paths.is_empty() {
            return Err(invalid("DirectorySource needs at least one path"));
        }
        let mut selection = Selection::new();
        for pattern in &exclude {
            selection = selection.exclude(pattern).map_err(to_py)?;
        }
        for pattern in &iexclude {
            selection = selection.iexclude(pattern).map_err(to_py)?;
        }
        for file in &exclude_file {
            selection = selection.exclude_file(file).map_err(to_py)?;
        }
        for file in &iexclude_file {
            selection = selection.iexclude_file(file).map_err(to_py)?;
        }
        for spec in &exclude_if_present {
            selection = selection.exclude_if_present(spec).map_err(to_py)?;
        }
        if exclude_caches {
            selection = selection.exclude_caches();
        }
        if let Some(bytes) = exclude_larger_than {
            selection = selection.exclude_larger_than(bytes);
        }
        selection = selection.one_file_system(one_file_system);
        Ok(PyClassInitializer::from(PySource {
            spec: SourceSpec::Directory(paths, selection),
        })
        .add_subclass(PyDirectorySource))
    }
}

/// The standard output of a command (a dump tool), stored as one file.
/// No shell is involved; a command that exits non-zero fails the backup
/// with its standard error.
#[pyclass(name = "CommandSource", module = "backup_toolkit", extends = PySource, frozen)]
pub(crate) struct PyCommandSource;

#[pymethods]
impl PyCommandSource {
    #[new]
    #[pyo3(signature = (argv, *, file_name=None))]
    fn new(argv: Vec<String>, file_name: Option<String>) -> PyResult<PyClassInitializer<Self>> {
        if argv.is_empty() {
            return Err(invalid("CommandSource needs a program to run"));
        }
        Ok(PyClassInitializer::from(PySource {
            spec: SourceSpec::Command { argv, file_name },
        })
        .add_subclass(PyCommandSource))
    }
}

/// An etcd member's snapshot (the Maintenance API's Snapshot stream, its
/// checksum checked), from the first healthy endpoint.
#[pyclass(name = "EtcdSource", module = "backup_toolkit", extends = PySource, frozen)]
pub(crate) struct PyEtcdSource;

#[pymethods]
impl PyEtcdSource {
    #[new]
    #[pyo3(signature = (endpoints, *, ca=None, cert=None, key=None, user=None, password=None, file_name=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        endpoints: Vec<String>,
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
        user: Option<String>,
        password: Option<String>,
        file_name: Option<String>,
    ) -> PyResult<PyClassInitializer<Self>> {
        if endpoints.is_empty() {
            return Err(invalid("EtcdSource needs at least one endpoint"));
        }
        if user.is_some() != password.is_some() {
            return Err(invalid("EtcdSource takes a user and a password together"));
        }
        Ok(PyClassInitializer::from(PySource {
            spec: SourceSpec::Etcd {
                endpoints,
                ca,
                cert,
                key,
                user,
                password,
                file_name,
            },
        })
        .add_subclass(PyEtcdSource))
    }
}

/// A Redis server's RDB snapshot: a BGSAVE read back from its data
/// directory, or the RDB of a replication stream (`replication=True`, for
/// a server whose files this host cannot read).
#[pyclass(name = "RedisSource", module = "backup_toolkit", extends = PySource, frozen)]
pub(crate) struct PyRedisSource;

#[pymethods]
impl PyRedisSource {
    #[new]
    #[pyo3(signature = (url, *, user=None, password=None, data_dir=None, replication=false, save_timeout=None, file_name=None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        url: String,
        user: Option<String>,
        password: Option<String>,
        data_dir: Option<PathBuf>,
        replication: bool,
        save_timeout: Option<Duration>,
        file_name: Option<String>,
    ) -> PyResult<PyClassInitializer<Self>> {
        if user.is_some() && password.is_none() {
            return Err(invalid("RedisSource takes a user only with a password"));
        }
        Ok(PyClassInitializer::from(PySource {
            spec: SourceSpec::Redis {
                url,
                user,
                password,
                data_dir,
                replication,
                save_timeout,
                file_name,
            },
        })
        .add_subclass(PyRedisSource))
    }
}

/// A PostgreSQL server: a physical base backup (`mode="physical"`,
/// `pg_basebackup`'s stream stored file by file, WAL and manifest
/// included) or logical dumps (`mode="logical"`, `pg_dump` of each
/// database and `pg_dumpall --globals-only`). `url` is a libpq connection
/// string; `bin_dir` where PostgreSQL's programs are.
#[pyclass(name = "PostgresSource", module = "backup_toolkit", extends = PySource, frozen)]
pub(crate) struct PyPostgresSource;

#[pymethods]
impl PyPostgresSource {
    #[new]
    #[pyo3(signature = (url, *, mode="physical", password=None, bin_dir=None, databases=Vec::new(), jobs=1, globals=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        url: String,
        mode: &str,
        password: Option<String>,
        bin_dir: Option<PathBuf>,
        databases: Vec<String>,
        jobs: u32,
        globals: bool,
    ) -> PyResult<PyClassInitializer<Self>> {
        let mode = mode
            .parse::<PostgresMode>()
            .map_err(|error| invalid(error.to_string()))?;
        Ok(PyClassInitializer::from(PySource {
            spec: SourceSpec::Postgres {
                url,
                mode,
                password,
                bin_dir,
                databases,
                jobs,
                globals,
            },
        })
        .add_subclass(PyPostgresSource))
    }
}

/// A MariaDB or MySQL server: a dump (`mode="logical"`, `mariadb-dump
/// --single-transaction` with routines, events, triggers and accounts) or
/// a `mariadb-backup` copy (`mode="physical"`, on the server's host).
/// `url` is `mysql://USER@HOST:PORT/`.
#[pyclass(name = "MariadbSource", module = "backup_toolkit", extends = PySource, frozen)]
pub(crate) struct PyMariadbSource;

#[pymethods]
impl PyMariadbSource {
    #[new]
    #[pyo3(signature = (url, *, mode="logical", password=None, bin_dir=None, databases=Vec::new(), staging_dir=None))]
    fn new(
        url: String,
        mode: &str,
        password: Option<String>,
        bin_dir: Option<PathBuf>,
        databases: Vec<String>,
        staging_dir: Option<PathBuf>,
    ) -> PyResult<PyClassInitializer<Self>> {
        let mode = mode
            .parse::<MariadbMode>()
            .map_err(|error| invalid(error.to_string()))?;
        Ok(PyClassInitializer::from(PySource {
            spec: SourceSpec::Mariadb {
                url,
                mode,
                password,
                bin_dir,
                databases,
                staging_dir,
            },
        })
        .add_subclass(PyMariadbSource))
    }
}

/// A path as the text of a command line or a remote path.
fn path_text(what: &str, path: PathBuf) -> PyResult<String> {
    path.into_os_string()
        .into_string()
        .map_err(|path| invalid(format!("{what} {path:?} is not valid UTF-8")))
}

/// A Cassandra node: `nodetool snapshot`, the snapshot's SSTables read
/// from every data directory (here or, with `ssh`, on the node's host over
/// OpenSSH, its host key checked against `known_hosts`) and stored by
/// keyspace and table with the node's identity and tokens; the snapshot is
/// cleared afterwards, on failure too. `nodetool` and `cqlsh` are command
/// lines (split as a shell would, none run); `cqlsh=None` does not run
/// `DESCRIBE SCHEMA` (the tables' own `schema.cql` are stored either way).
/// `system_traces` is left out unless `system_traces=True`. `name` names
/// the node: the last part of its set in a cluster backup.
#[pyclass(name = "CassandraSource", module = "backup_toolkit", extends = PySource, frozen)]
pub(crate) struct PyCassandraSource;

#[pymethods]
impl PyCassandraSource {
    #[new]
    #[pyo3(signature = (name, *, nodetool="nodetool", cqlsh=Some("cqlsh"), data_dirs=None, keyspaces=None, system_traces=false, ssh=None, ssh_port=None, ssh_key=None, known_hosts=None))]
    #[pyo3(
        text_signature = "(name, *, nodetool='nodetool', cqlsh='cqlsh', data_dirs=None, keyspaces=None, system_traces=False, ssh=None, ssh_port=None, ssh_key=None, known_hosts=None)"
    )]
    #[allow(clippy::too_many_arguments)]
    fn new(
        name: String,
        nodetool: &str,
        cqlsh: Option<&str>,
        data_dirs: Option<Vec<PathBuf>>,
        keyspaces: Option<Vec<String>>,
        system_traces: bool,
        ssh: Option<String>,
        ssh_port: Option<u16>,
        ssh_key: Option<PathBuf>,
        known_hosts: Option<PathBuf>,
    ) -> PyResult<PyClassInitializer<Self>> {
        if name.is_empty() {
            return Err(invalid("CassandraSource needs the node's name"));
        }
        let mut node = CassandraNode::new(name)
            .with_nodetool(nodetool)
            .map_err(to_py)?
            .with_cqlsh(cqlsh)
            .map_err(to_py)?;
        if let Some(dirs) = data_dirs {
            if dirs.is_empty() {
                return Err(invalid(
                    "CassandraSource needs at least one data directory (None for the default)",
                ));
            }
            let dirs = dirs
                .into_iter()
                .map(|dir| path_text("the data directory", dir))
                .collect::<PyResult<Vec<_>>>()?;
            node = node.with_data_dirs(dirs);
        }
        match ssh {
            Some(destination) => {
                if destination.is_empty() {
                    return Err(invalid("ssh is \"user@host\" or \"host\", not empty"));
                }
                let mut access = SshAccess::new(destination);
                if let Some(port) = ssh_port {
                    access = access.with_port(port);
                }
                if let Some(key) = ssh_key {
                    access = access.with_identity(key);
                }
                if let Some(file) = known_hosts {
                    access = access.with_known_hosts(file);
                }
                node = node.over_ssh(access);
            }
            None => {
                if ssh_port.is_some() || ssh_key.is_some() || known_hosts.is_some() {
                    return Err(invalid(
                        "ssh_port, ssh_key and known_hosts go with ssh (the node's \"user@host\")",
                    ));
                }
            }
        }
        let snapshotter = CassandraSnapshotter::new(node)
            .with_keyspaces(keyspaces.unwrap_or_default())
            .with_system_traces(system_traces);
        Ok(PyClassInitializer::from(PySource {
            spec: SourceSpec::Cassandra(snapshotter),
        })
        .add_subclass(PyCassandraSource))
    }
}

/// Commands run before and after a source's snapshot (no shell; killed
/// after `timeout` seconds). The after commands run whatever happened.
#[pyclass(name = "Hooks", module = "backup_toolkit", frozen)]
pub(crate) struct PyHooks {
    before: Vec<Vec<String>>,
    after: Vec<Vec<String>>,
    timeout: Option<Duration>,
    on_error: OnError,
}

impl PyHooks {
    /// The snapshotter with these hooks around it.
    pub(crate) fn around(&self, snapshotter: Box<dyn Snapshotter>) -> Box<dyn Snapshotter> {
        let hook = |argv: &Vec<String>| {
            let mut hook = Hook::command(argv.clone()).with_on_error(self.on_error);
            if let Some(timeout) = self.timeout {
                hook = hook.with_timeout(timeout);
            }
            hook
        };
        let mut hooks = Hooks::new();
        for argv in &self.before {
            hooks = hooks.before(hook(argv));
        }
        for argv in &self.after {
            hooks = hooks.after(hook(argv));
        }
        Box::new(hooks.around(snapshotter))
    }
}

#[pymethods]
impl PyHooks {
    #[new]
    #[pyo3(signature = (*, before=Vec::new(), after=Vec::new(), timeout=None, on_error="fail"))]
    fn new(
        before: Vec<Vec<String>>,
        after: Vec<Vec<String>>,
        timeout: Option<Duration>,
        on_error: &str,
    ) -> PyResult<Self> {
        if before.iter().chain(&after).any(Vec::is_empty) {
            return Err(invalid(
                "a hook is a non-empty list: the program and its arguments",
            ));
        }
        let on_error = match on_error {
            "fail" => OnError::Fail,
            "continue" => OnError::Continue,
            other => {
                return Err(invalid(format!(
                    "on_error={other:?}: give \"fail\" or \"continue\""
                )))
            }
        };
        Ok(PyHooks {
            before,
            after,
            timeout,
            on_error,
        })
    }

    fn __repr__(&self) -> String {
        format!("Hooks(before={:?}, after={:?})", self.before, self.after)
    }
}

/// What a restorer is.
#[derive(Clone)]
enum RestorerSpec {
    Directory {
        target: PathBuf,
        include: Vec<String>,
    },
    Command(Vec<String>),
    Etcd {
        data_dir: PathBuf,
        name: Option<String>,
        initial_cluster: Option<String>,
        initial_cluster_token: Option<String>,
        initial_advertise_peer_urls: Option<String>,
        tool: Option<PathBuf>,
    },
    Redis {
        data_dir: PathBuf,
        dbfilename: Option<String>,
        config: Option<PathBuf>,
        server: Option<PathBuf>,
    },
    Postgres {
        data_dir: Option<PathBuf>,
        url: Option<String>,
        bin_dir: Option<PathBuf>,
        password: Option<String>,
        recovery: Option<(String, RecoveryTarget)>,
    },
    Mariadb {
        data_dir: Option<PathBuf>,
        url: Option<String>,
        bin_dir: Option<PathBuf>,
        password: Option<String>,
    },
    Cassandra(CassandraRestorer),
}

/// Where `Repository.restore_into` puts a backup back: one of
/// `DirectoryRestorer`, `CommandRestorer`, `EtcdRestorer`, `RedisRestorer`,
/// `PostgresRestorer`, `MariadbRestorer`, `CassandraRestorer`.
#[pyclass(name = "Restorer", module = "backup_toolkit", subclass, frozen)]
pub(crate) struct PyRestorer {
    spec: RestorerSpec,
}

impl PyRestorer {
    /// The library's restorer.
    pub(crate) fn restorer(&self) -> Box<dyn Restorer> {
        match &self.spec {
            RestorerSpec::Directory { target, include } => Box::new(
                DirectoryRestorer::new(target.clone())
                    .with_options(RestoreOptions::default().with_include(include.clone())),
            ),
            RestorerSpec::Command(argv) => {
                Box::new(CommandRestorer::new(argv[0].clone(), argv[1..].to_vec()))
            }
            RestorerSpec::Etcd {
                data_dir,
                name,
                initial_cluster,
                initial_cluster_token,
                initial_advertise_peer_urls,
                tool,
            } => {
                let mut restorer = EtcdRestorer::new(data_dir.clone());
                if let Some(name) = name {
                    restorer = restorer.with_name(name.clone());
                }
                if let Some(cluster) = initial_cluster {
                    restorer = restorer.with_initial_cluster(cluster.clone());
                }
                if let Some(token) = initial_cluster_token {
                    restorer = restorer.with_initial_cluster_token(token.clone());
                }
                if let Some(urls) = initial_advertise_peer_urls {
                    restorer = restorer.with_initial_advertise_peer_urls(urls.clone());
                }
                if let Some(tool) = tool {
                    restorer = restorer.with_tool(tool.clone());
                }
                Box::new(restorer)
            }
            RestorerSpec::Redis {
                data_dir,
                dbfilename,
                config,
                server,
            } => {
                let mut restorer = RedisRestorer::new(data_dir.clone());
                if let Some(name) = dbfilename {
                    restorer = restorer.with_dbfilename(name.clone());
                }
                if let Some(config) = config {
                    restorer = restorer.with_config(config.clone());
                }
                if let Some(server) = server {
                    restorer = restorer.with_server(server.clone());
                }
                Box::new(restorer)
            }
            RestorerSpec::Postgres {
                data_dir,
                url,
                bin_dir,
                password,
                recovery,
            } => {
                let mut restorer = match (data_dir, url) {
                    (Some(dir), _) => PostgresRestorer::physical(dir.clone()),
                    (None, Some(url)) => PostgresRestorer::logical(url.clone()),
                    (None, None) => PostgresRestorer::physical(PathBuf::new()),
                };
                if let Some(dir) = bin_dir {
                    restorer = restorer.with_bin_dir(dir.clone());
                }
                if let Some(password) = password {
                    restorer = restorer.with_password(password.clone());
                }
                if let Some((command, target)) = recovery {
                    restorer = restorer.with_recovery(command.clone(), target.clone());
                }
                Box::new(restorer)
            }
            RestorerSpec::Mariadb {
                data_dir,
                url,
                bin_dir,
                password,
            } => {
                let mut restorer = match (data_dir, url) {
                    (Some(dir), _) => MariadbRestorer::physical(dir.clone()),
                    (None, Some(url)) => MariadbRestorer::logical(url.clone()),
                    (None, None) => MariadbRestorer::physical(PathBuf::new()),
                };
                if let Some(dir) = bin_dir {
                    restorer = restorer.with_bin_dir(dir.clone());
                }
                if let Some(password) = password {
                    restorer = restorer.with_password(password.clone());
                }
                Box::new(restorer)
            }
            RestorerSpec::Cassandra(restorer) => Box::new(restorer.clone()),
        }
    }

    /// The library's restorer of a Cassandra node (for a cluster restore);
    /// `None` for another kind of restorer.
    pub(crate) fn cassandra(&self) -> Option<CassandraRestorer> {
        match &self.spec {
            RestorerSpec::Cassandra(restorer) => Some(restorer.clone()),
            _ => None,
        }
    }
}

#[pymethods]
impl PyRestorer {
    /// The kind of backup it restores.
    #[getter]
    pub(crate) fn kind(&self) -> &'static str {
        match self.spec {
            RestorerSpec::Directory { .. } => "directory",
            RestorerSpec::Command(_) => "command",
            RestorerSpec::Etcd { .. } => "etcd",
            RestorerSpec::Redis { .. } => "redis",
            RestorerSpec::Postgres { .. } => "postgres",
            RestorerSpec::Mariadb { .. } => "mariadb",
            RestorerSpec::Cassandra(_) => "cassandra",
        }
    }

    fn __repr__(&self) -> String {
        match &self.spec {
            RestorerSpec::Directory { target, .. } => format!("DirectoryRestorer({target:?})"),
            RestorerSpec::Command(argv) => format!("CommandRestorer({argv:?})"),
            RestorerSpec::Etcd { data_dir, .. } => format!("EtcdRestorer({data_dir:?})"),
            RestorerSpec::Redis { data_dir, .. } => format!("RedisRestorer({data_dir:?})"),
            RestorerSpec::Cassandra(restorer) => {
                format!("CassandraRestorer({:?})", restorer.data_dir())
            }
            RestorerSpec::Postgres { data_dir, url, .. }
            | RestorerSpec::Mariadb { data_dir, url, .. } => {
                let name = if matches!(self.spec, RestorerSpec::Postgres { .. }) {
                    "PostgresRestorer"
                } else {
                    "MariadbRestorer"
                };
                match (data_dir, url) {
                    (Some(dir), _) => format!("{name}(data_dir={dir:?})"),
                    (None, Some(url)) => format!("{name}(url={:?})", host_of(url)),
                    (None, None) => format!("{name}()"),
                }
            }
        }
    }
}

/// A directory backup into an empty directory.
#[pyclass(name = "DirectoryRestorer", module = "backup_toolkit", extends = PyRestorer, frozen)]
pub(crate) struct PyDirectoryRestorer;

#[pymethods]
impl PyDirectoryRestorer {
    #[new]
    #[pyo3(signature = (target, *, include=Vec::new()))]
    fn new(target: PathBuf, include: Vec<String>) -> PyClassInitializer<Self> {
        PyClassInitializer::from(PyRestorer {
            spec: RestorerSpec::Directory { target, include },
        })
        .add_subclass(PyDirectoryRestorer)
    }
}

/// A command backup's output piped into a command's standard input (a
/// loader such as `psql` or `redis-cli --pipe`).
#[pyclass(name = "CommandRestorer", module = "backup_toolkit", extends = PyRestorer, frozen)]
pub(crate) struct PyCommandRestorer;

#[pymethods]
impl PyCommandRestorer {
    #[new]
    fn new(argv: Vec<String>) -> PyResult<PyClassInitializer<Self>> {
        if argv.is_empty() {
            return Err(invalid("CommandRestorer needs a program to run"));
        }
        Ok(PyClassInitializer::from(PyRestorer {
            spec: RestorerSpec::Command(argv),
        })
        .add_subclass(PyCommandRestorer))
    }
}

/// An etcd backup into a new member's data directory (etcdutl, or etcdctl
/// where etcdutl is missing), with the new cluster's settings.
#[pyclass(name = "EtcdRestorer", module = "backup_toolkit", extends = PyRestorer, frozen)]
pub(crate) struct PyEtcdRestorer;

#[pymethods]
impl PyEtcdRestorer {
    #[new]
    #[pyo3(signature = (data_dir, *, name=None, initial_cluster=None, initial_cluster_token=None, initial_advertise_peer_urls=None, tool=None))]
    fn new(
        data_dir: PathBuf,
        name: Option<String>,
        initial_cluster: Option<String>,
        initial_cluster_token: Option<String>,
        initial_advertise_peer_urls: Option<String>,
        tool: Option<PathBuf>,
    ) -> PyClassInitializer<Self> {
        PyClassInitializer::from(PyRestorer {
            spec: RestorerSpec::Etcd {
                data_dir,
                name,
                initial_cluster,
                initial_cluster_token,
                initial_advertise_peer_urls,
                tool,
            },
        })
        .add_subclass(PyEtcdRestorer)
    }
}

/// A Redis backup into a stopped server's data directory (its RDB checked
/// first, its version against the server's).
#[pyclass(name = "RedisRestorer", module = "backup_toolkit", extends = PyRestorer, frozen)]
pub(crate) struct PyRedisRestorer;

#[pymethods]
impl PyRedisRestorer {
    #[new]
    #[pyo3(signature = (data_dir, *, dbfilename=None, config=None, server=None))]
    fn new(
        data_dir: PathBuf,
        dbfilename: Option<String>,
        config: Option<PathBuf>,
        server: Option<PathBuf>,
    ) -> PyClassInitializer<Self> {
        PyClassInitializer::from(PyRestorer {
            spec: RestorerSpec::Redis {
                data_dir,
                dbfilename,
                config,
                server,
            },
        })
        .add_subclass(PyRedisRestorer)
    }
}

/// Exactly one of `data_dir` and `url`.
fn one_target(what: &str, data_dir: &Option<PathBuf>, url: &Option<String>) -> PyResult<()> {
    if data_dir.is_some() == url.is_some() {
        return Err(invalid(format!(
            "{what} takes data_dir (a physical backup) or url (a logical one), exactly one"
        )));
    }
    Ok(())
}

/// A PostgreSQL backup: a physical one into an empty data directory
/// (`data_dir`; with `restore_command` and a target, set up for
/// point-in-time recovery from the WAL archive), a logical one into the
/// server of `url`.
#[pyclass(name = "PostgresRestorer", module = "backup_toolkit", extends = PyRestorer, frozen)]
pub(crate) struct PyPostgresRestorer;

#[pymethods]
impl PyPostgresRestorer {
    #[new]
    #[pyo3(signature = (*, data_dir=None, url=None, bin_dir=None, password=None, restore_command=None, target_time=None, target_lsn=None, target_latest=false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        data_dir: Option<PathBuf>,
        url: Option<String>,
        bin_dir: Option<PathBuf>,
        password: Option<String>,
        restore_command: Option<String>,
        target_time: Option<chrono::DateTime<chrono::Utc>>,
        target_lsn: Option<String>,
        target_latest: bool,
    ) -> PyResult<PyClassInitializer<Self>> {
        one_target("PostgresRestorer", &data_dir, &url)?;
        let target = match (target_time, target_lsn, target_latest) {
            (None, None, false) => None,
            (Some(time), None, false) => Some(RecoveryTarget::Time(time)),
            (None, Some(lsn), false) => Some(RecoveryTarget::Lsn(lsn)),
            (None, None, true) => Some(RecoveryTarget::Latest),
            _ => {
                return Err(invalid(
                    "PostgresRestorer takes one of target_time, target_lsn and target_latest",
                ))
            }
        };
        let recovery = match (restore_command, target) {
            (None, None) => None,
            (Some(command), Some(target)) => Some((command, target)),
            (Some(command), None) => Some((command, RecoveryTarget::Latest)),
            (None, Some(_)) => {
                return Err(invalid(
                    "a recovery target needs the restore_command that fetches the archived WAL",
                ))
            }
        };
        if recovery.is_some() && data_dir.is_none() {
            return Err(invalid("point-in-time recovery restores into a data_dir"));
        }
        Ok(PyClassInitializer::from(PyRestorer {
            spec: RestorerSpec::Postgres {
                data_dir,
                url,
                bin_dir,
                password,
                recovery,
            },
        })
        .add_subclass(PyPostgresRestorer))
    }
}

/// A MariaDB backup: a logical one replayed into the server of `url`, a
/// physical one prepared and moved into an empty `data_dir`.
#[pyclass(name = "MariadbRestorer", module = "backup_toolkit", extends = PyRestorer, frozen)]
pub(crate) struct PyMariadbRestorer;

#[pymethods]
impl PyMariadbRestorer {
    #[new]
    #[pyo3(signature = (*, data_dir=None, url=None, bin_dir=None, password=None))]
    fn new(
        data_dir: Option<PathBuf>,
        url: Option<String>,
        bin_dir: Option<PathBuf>,
        password: Option<String>,
    ) -> PyResult<PyClassInitializer<Self>> {
        one_target("MariadbRestorer", &data_dir, &url)?;
        Ok(PyClassInitializer::from(PyRestorer {
            spec: RestorerSpec::Mariadb {
                data_dir,
                url,
                bin_dir,
                password,
            },
        })
        .add_subclass(PyMariadbRestorer))
    }
}

/// A Cassandra node backup into a stopped node that has never started:
/// every keyspace's SSTables (`system_schema` included, `system` left out)
/// into the empty data directory `data_dir`, and, with `yaml`, the old
/// node's tokens written into that `cassandra.yaml` (`initial_token`,
/// `num_tokens`, `auto_bootstrap: false`). With `version` (the Cassandra
/// the node runs), a backup of another major version is refused. Refusals
/// (`RestoreRefusedError`) come before anything is written.
#[pyclass(name = "CassandraRestorer", module = "backup_toolkit", extends = PyRestorer, frozen)]
pub(crate) struct PyCassandraRestorer;

#[pymethods]
impl PyCassandraRestorer {
    #[new]
    #[pyo3(signature = (data_dir, *, yaml=None, version=None))]
    fn new(
        data_dir: PathBuf,
        yaml: Option<PathBuf>,
        version: Option<String>,
    ) -> PyClassInitializer<Self> {
        let mut restorer = CassandraRestorer::new(data_dir);
        if let Some(yaml) = yaml {
            restorer = restorer.with_yaml(yaml);
        }
        if let Some(version) = version {
            restorer = restorer.with_target_version(version);
        }
        PyClassInitializer::from(PyRestorer {
            spec: RestorerSpec::Cassandra(restorer),
        })
        .add_subclass(PyCassandraRestorer)
    }
}
