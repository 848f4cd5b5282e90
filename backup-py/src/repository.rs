//! `Repository`: the library's repository, its operations each as a
//! blocking call (the GIL released, Ctrl-C honoured) and an `*_async` twin.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;

use backup_core::{
    Backup, BackupOptions, CancellationToken, ClusterBackup, ClusterProgress, ClusterRecord,
    ClusterRestore, Error, ForgetOptions, InitOptions, Overwrite, PruneOptions, Repository,
    RestoreOptions, VerifyOptions,
};
use backup_sinks::StorageOptions;
use chrono::{DateTime, FixedOffset, Utc};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};

use crate::errors::{backup_error, invalid, to_py};
use crate::policy::PyKeepPolicy;
use crate::reader::PyFileReader;
use crate::runtime::{async_progress, awaitable, forward_to_loop, wait, ProgressPump};
use crate::sources::{snapshotter_for, Paths, PyHooks, PyRestorer, PySource};
use crate::types::{
    json_to_py, Bytes, Json, PyBackup, PyBackupSummary, PyEntry, PyForgetDecision, PyPruneReport,
    PyRestoreSummary, PyStoreRestore, PyVerifyReport,
};

/// A password given as text or bytes.
#[derive(FromPyObject)]
enum Secret {
    Text(String),
    Bytes(Vec<u8>),
}

/// A backup: a `Backup` object, or a selector (`latest`, an id or a unique
/// prefix of one) resolved in the call.
#[derive(Clone)]
pub(crate) enum BackupRef {
    Backup(Box<Backup>),
    Selector(String),
}

impl<'a, 'py> FromPyObject<'a, 'py> for BackupRef {
    type Error = PyErr;

    fn extract(object: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        if let Ok(backup) = object.cast::<PyBackup>() {
            return Ok(BackupRef::Backup(Box::new(backup.get().inner.clone())));
        }
        if let Ok(selector) = object.extract::<String>() {
            return Ok(BackupRef::Selector(selector));
        }
        Err(invalid(
            "a backup is a Backup, \"latest\" or a backup id (or a unique prefix of one)",
        ))
    }
}

impl BackupRef {
    /// The backup, looked up in `repository` for a selector (of `set` when
    /// given).
    pub(crate) async fn resolve(
        self,
        repository: &Repository,
        set: Option<&str>,
    ) -> backup_core::Result<Backup> {
        match self {
            BackupRef::Backup(backup) => Ok(*backup),
            BackupRef::Selector(selector) => repository.find_backup(&selector, set).await,
        }
    }
}

/// The keyword arguments of storage, over the defaults of the environment.
fn storage_options(storage: Option<&Bound<'_, PyDict>>) -> PyResult<StorageOptions> {
    let mut options = StorageOptions::from_env();
    let Some(storage) = storage else {
        return Ok(options);
    };
    for (key, value) in storage.iter() {
        let key: String = key.extract()?;
        if value.is_none() {
            continue;
        }
        let wrong = |expected: &str| invalid(format!("storage option {key}: expected {expected}"));
        let text = || value.extract::<String>().map_err(|_| wrong("a str"));
        let path = || value.extract::<PathBuf>().map_err(|_| wrong("a path"));
        let flag = || value.extract::<bool>().map_err(|_| wrong("a bool"));
        match key.as_str() {
            "endpoint" => options.endpoint = Some(text()?),
            "region" => options.region = Some(text()?),
            "allow_http" => options.allow_http = flag()?,
            "sse_kms_key_id" => options.sse_kms_key_id = Some(text()?),
            "sse_c_key_file" => options.sse_c_key_file = Some(path()?),
            "azure_emulator" => options.azure_emulator = flag()?,
            "ssh_key" => options.ssh_key = Some(path()?),
            "ssh_key_passphrase_file" => options.ssh_key_passphrase_file = Some(path()?),
            "known_hosts" => options.known_hosts = Some(path()?),
            "host_key_fingerprint" => options.host_key_fingerprint = Some(text()?),
            other => {
                return Err(invalid(format!(
                    "unknown storage option {other:?}: the options are endpoint, region, \
                     allow_http, sse_kms_key_id, sse_c_key_file, azure_emulator, ssh_key, \
                     ssh_key_passphrase_file, known_hosts, host_key_fingerprint"
                )))
            }
        }
    }
    Ok(options)
}

/// Where the password comes from: the argument, the file, else
/// `BACKUP_PASSWORD_FILE`, else `BACKUP_PASSWORD` (as for `backupctl`).
struct PasswordSource {
    given: Option<Vec<u8>>,
    file: Option<PathBuf>,
}

impl PasswordSource {
    fn new(password: Option<Secret>, password_file: Option<PathBuf>) -> PyResult<PasswordSource> {
        if password.is_some() && password_file.is_some() {
            return Err(invalid("give password or password_file, not both"));
        }
        Ok(PasswordSource {
            given: password.map(|secret| match secret {
                Secret::Text(text) => text.into_bytes(),
                Secret::Bytes(bytes) => bytes,
            }),
            file: password_file,
        })
    }

    fn read(self) -> backup_core::Result<Option<Vec<u8>>> {
        if let Some(password) = self.given {
            return Ok(Some(password));
        }
        let file = self.file.or_else(|| {
            std::env::var_os(backup_sinks::location::env::PASSWORD_FILE).map(PathBuf::from)
        });
        backup_sinks::read_password(file.as_deref())
    }
}

/// A repository: backups of directories and data stores, deduplicated and
/// (by default) encrypted, in a local directory, an object store or on an
/// SSH server.
#[pyclass(name = "Repository", module = "backup_toolkit", frozen)]
pub(crate) struct PyRepository {
    inner: Repository,
    location: String,
}

/// The pieces of a blocking call and its async twin.
struct Call<F> {
    future: F,
    cancel: Option<CancellationToken>,
    pump: Option<ProgressPump>,
}

impl<F, T> Call<F>
where
    F: Future<Output = backup_core::Result<T>> + Send + 'static,
    T: Send + 'static,
{
    fn new(future: F) -> Call<F> {
        Call {
            future,
            cancel: None,
            pump: None,
        }
    }

    fn wait<R>(self, py: Python<'_>, convert: impl FnOnce(T) -> R) -> PyResult<R> {
        wait(py, self.future, self.cancel, self.pump).map(convert)
    }

    fn awaitable<'py, R>(
        self,
        py: Python<'py>,
        convert: impl FnOnce(T) -> R + Send + 'static,
    ) -> PyResult<Bound<'py, PyAny>>
    where
        R: for<'a> IntoPyObject<'a> + Send + 'static,
    {
        let future = self.future;
        awaitable(py, async move { future.await.map(convert).map_err(to_py) })
    }
}

/// The progress of a call: a pump for a blocking call, a sink on the event
/// loop for an async one.
fn progress(
    py: Python<'_>,
    asynchronous: bool,
    on_progress: Option<Py<PyAny>>,
) -> PyResult<(Option<backup_core::ProgressSink>, Option<ProgressPump>)> {
    if asynchronous {
        Ok((async_progress(py, on_progress)?, None))
    } else {
        Ok(ProgressPump::new(on_progress))
    }
}

fn time_argument(time: Option<&Bound<'_, PyAny>>) -> PyResult<Option<DateTime<Utc>>> {
    match time {
        None => Ok(None),
        Some(time) if time.is_none() => Ok(None),
        Some(time) => time
            .extract::<DateTime<FixedOffset>>()
            .map(|time| Some(time.with_timezone(&Utc)))
            .map_err(|_| invalid("time must be a timezone-aware datetime")),
    }
}

/// How to open or create a repository, gathered with the GIL.
struct Location {
    url: String,
    storage: StorageOptions,
    password: PasswordSource,
}

impl Location {
    async fn open(self) -> backup_core::Result<PyRepository> {
        let sink = backup_sinks::open_sink(&self.url, &self.storage).await?;
        let password = self.password.read()?;
        let inner = Repository::open(sink.clone(), password.as_deref()).await?;
        Ok(PyRepository {
            inner,
            location: sink.location(),
        })
    }

    async fn init(self, encryption: bool) -> backup_core::Result<PyRepository> {
        let password = self
            .password
            .read()?
            .filter(|password| !password.is_empty());
        let password = match (encryption, password) {
            (true, Some(password)) => Some(password),
            (true, None) => {
                return Err(Error::InvalidArgument(
                    "a password is needed for an encrypted repository: give password or \
                     password_file (or set BACKUP_PASSWORD), or encryption=False"
                        .into(),
                ))
            }
            (false, None) => None,
            (false, Some(_)) => {
                return Err(Error::InvalidArgument(
                    "encryption=False takes no password".into(),
                ))
            }
        };
        if let Some(root) = backup_sinks::local_root(&self.url) {
            std::fs::create_dir_all(root).map_err(|source| {
                Error::io("cannot create the repository directory", root, source)
            })?;
        }
        let sink = backup_sinks::open_sink(&self.url, &self.storage).await?;
        let mut options = InitOptions::default();
        options.password = password;
        let inner = Repository::init(sink.clone(), options).await?;
        Ok(PyRepository {
            inner,
            location: sink.location(),
        })
    }
}

impl PyRepository {
    #[allow(clippy::too_many_arguments)]
    fn backup_call(
        &self,
        py: Python<'_>,
        asynchronous: bool,
        paths: Option<Paths>,
        set: &str,
        tags: Option<BTreeMap<String, String>>,
        time: Option<&Bound<'_, PyAny>>,
        source: Option<PyRef<'_, PySource>>,
        hooks: Option<PyRef<'_, PyHooks>>,
        check_collision: bool,
        writer: Option<String>,
        on_progress: Option<Py<PyAny>>,
    ) -> PyResult<Call<impl Future<Output = backup_core::Result<backup_core::BackupSummary>>>> {
        let snapshotter = snapshotter_for(paths, source, hooks)?;
        let mut options = BackupOptions::default()
            .with_set(set)
            .with_tags(tags.unwrap_or_default())
            .with_check_collision(check_collision);
        if let Some(time) = time_argument(time)? {
            options = options.with_time(time);
        }
        if let Some(writer) = writer {
            options = options.with_writer(writer);
        }
        let cancel = CancellationToken::new();
        options.cancellation = Some(cancel.clone());
        let (sink, pump) = progress(py, asynchronous, on_progress)?;
        options.progress = sink;
        let repository = self.inner.clone();
        Ok(Call {
            future: async move { repository.backup(snapshotter.as_ref(), options).await },
            cancel: Some(cancel),
            pump,
        })
    }

    fn restore_call(
        &self,
        py: Python<'_>,
        asynchronous: bool,
        backup: BackupRef,
        target: PathBuf,
        tree: TreeRestore,
        on_progress: Option<Py<PyAny>>,
    ) -> PyResult<Call<impl Future<Output = backup_core::Result<backup_core::RestoreSummary>>>>
    {
        let cancel = CancellationToken::new();
        let mut options = tree.options()?;
        options.cancellation = Some(cancel.clone());
        let (sink, pump) = progress(py, asynchronous, on_progress)?;
        options.progress = sink;
        let repository = self.inner.clone();
        Ok(Call {
            future: async move {
                let backup = backup.resolve(&repository, None).await?;
                repository.restore(&backup, &target, &options).await
            },
            cancel: Some(cancel),
            pump,
        })
    }

    fn verify_call(
        &self,
        py: Python<'_>,
        asynchronous: bool,
        read_data: bool,
        read_data_subset: Option<f64>,
        on_progress: Option<Py<PyAny>>,
    ) -> PyResult<Call<impl Future<Output = backup_core::Result<backup_core::VerifyReport>>>> {
        if let Some(share) = read_data_subset {
            if !(0.0..=1.0).contains(&share) {
                return Err(invalid(format!(
                    "read_data_subset={share}: give the share of packs to read, from 0 to 1"
                )));
            }
        }
        let cancel = CancellationToken::new();
        let mut options = VerifyOptions::default();
        options.read_data = read_data || read_data_subset.is_some();
        options.read_data_share = read_data_subset;
        options.cancellation = Some(cancel.clone());
        let (sink, pump) = progress(py, asynchronous, on_progress)?;
        options.progress = sink;
        let repository = self.inner.clone();
        Ok(Call {
            future: async move { repository.verify(&options).await },
            cancel: Some(cancel),
            pump,
        })
    }

    fn forget_call(
        &self,
        policy: &PyKeepPolicy,
        set: Option<String>,
        dry_run: bool,
    ) -> Call<impl Future<Output = backup_core::Result<Vec<(Backup, backup_core::Decision)>>>> {
        let policy = policy.inner.clone();
        let cancel = CancellationToken::new();
        let mut options = ForgetOptions::default();
        options.dry_run = dry_run;
        options.cancellation = Some(cancel.clone());
        let repository = self.inner.clone();
        let mut call = Call::new(async move {
            repository
                .forget_matching(&policy, Utc::now(), &options, |backup| {
                    set.as_deref().is_none_or(|set| backup.manifest.set == set)
                })
                .await
        });
        call.cancel = Some(cancel);
        call
    }

    fn prune_call(
        &self,
        py: Python<'_>,
        asynchronous: bool,
        grace: Option<chrono::TimeDelta>,
        dry_run: bool,
        on_progress: Option<Py<PyAny>>,
    ) -> PyResult<Call<impl Future<Output = backup_core::Result<backup_core::PruneReport>>>> {
        let cancel = CancellationToken::new();
        let mut options = PruneOptions::default();
        if let Some(grace) = grace {
            if grace < chrono::TimeDelta::zero() {
                return Err(invalid("grace must not be negative"));
            }
            options.grace = grace;
        }
        options.dry_run = dry_run;
        options.cancellation = Some(cancel.clone());
        let (sink, pump) = progress(py, asynchronous, on_progress)?;
        options.progress = sink;
        let repository = self.inner.clone();
        Ok(Call {
            future: async move { repository.prune(&options).await },
            cancel: Some(cancel),
            pump,
        })
    }

    fn list_call(
        &self,
        set: Option<String>,
    ) -> Call<impl Future<Output = backup_core::Result<Vec<Backup>>>> {
        let repository = self.inner.clone();
        Call::new(async move {
            let mut backups = repository.list().await?;
            if let Some(set) = set {
                backups.retain(|backup| backup.manifest.set == set);
            }
            Ok(backups)
        })
    }

    fn find_call(
        &self,
        selector: String,
        set: Option<String>,
    ) -> Call<impl Future<Output = backup_core::Result<Backup>>> {
        let repository = self.inner.clone();
        Call::new(async move { repository.find_backup(&selector, set.as_deref()).await })
    }

    fn ls_call(
        &self,
        backup: BackupRef,
    ) -> Call<impl Future<Output = backup_core::Result<Vec<backup_core::LsEntry>>>> {
        let repository = self.inner.clone();
        Call::new(async move {
            let backup = backup.resolve(&repository, None).await?;
            repository.ls(&backup).await
        })
    }

    fn read_file_call(
        &self,
        backup: BackupRef,
        path: String,
    ) -> Call<impl Future<Output = backup_core::Result<Vec<u8>>>> {
        let repository = self.inner.clone();
        Call::new(async move {
            let backup = backup.resolve(&repository, None).await?;
            let reader = repository.open_file(&backup, &path).await?;
            let mut bytes = Vec::with_capacity(usize::try_from(reader.size()).unwrap_or(0));
            reader.copy_to(&mut bytes).await?;
            Ok(bytes)
        })
    }

    fn open_file_call(
        &self,
        backup: BackupRef,
        path: String,
    ) -> Call<impl Future<Output = backup_core::Result<backup_core::FileReader>>> {
        let repository = self.inner.clone();
        Call::new(async move {
            let backup = backup.resolve(&repository, None).await?;
            repository.open_file(&backup, &path).await
        })
    }

    fn restore_into_call(
        &self,
        backup: BackupRef,
        restorer: &PyRestorer,
    ) -> Call<impl Future<Output = backup_core::Result<backup_core::StoreRestore>>> {
        let restorer = restorer.restorer();
        let repository = self.inner.clone();
        Call::new(async move {
            let backup = backup.resolve(&repository, None).await?;
            repository.restore_into(&backup, restorer.as_ref()).await
        })
    }
}

/// A library report that could not be encoded (it always can).
fn encoding(error: serde_json::Error) -> Error {
    Error::InvalidArgument(format!("encoding the result: {error}"))
}

/// One event of a cluster backup as the dict its callback receives.
fn cluster_event(py: Python<'_>, event: ClusterProgress) -> PyResult<Py<PyAny>> {
    let value = serde_json::to_value(&event)
        .map_err(|error| backup_error(format!("encoding a progress event: {error}")))?;
    json_to_py(py, &value)
}

/// A completed cluster backup's group record as a dict, with its own
/// backup id under `record`.
fn record_json(record: &ClusterRecord) -> backup_core::Result<Json> {
    let mut value = serde_json::to_value(record).map_err(encoding)?;
    if let serde_json::Value::Object(map) = &mut value {
        let id = serde_json::to_value(record.record).map_err(encoding)?;
        map.insert("record".into(), id);
    }
    Ok(Json(value))
}

impl PyRepository {
    #[allow(clippy::too_many_arguments)]
    fn cluster_backup_call(
        &self,
        py: Python<'_>,
        asynchronous: bool,
        cluster: String,
        nodes: Vec<PyRef<'_, PySource>>,
        parallelism: usize,
        progress: Option<Py<PyAny>>,
        writer: Option<String>,
    ) -> PyResult<Call<impl Future<Output = backup_core::Result<Json>>>> {
        if parallelism == 0 {
            return Err(invalid("parallelism must be at least 1"));
        }
        let snapshotters = nodes
            .iter()
            .enumerate()
            .map(|(at, node)| {
                node.cassandra().ok_or_else(|| {
                    invalid(format!(
                        "cluster_backup takes CassandraSource nodes; node {at} is a {} source",
                        node.kind()
                    ))
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let cancel = CancellationToken::new();
        let mut backup = ClusterBackup::cassandra(cluster, snapshotters)
            .with_parallelism(parallelism)
            .with_cancellation(cancel.clone());
        if let Some(writer) = writer {
            backup = backup.with_writer(writer);
        }
        let mut pump = None;
        if let Some(callback) = progress {
            // The library calls back from its tasks: the events queue up
            // without the GIL and reach Python on the caller's thread (or
            // its event loop), as every other progress does.
            let (sender, receiver) = tokio::sync::mpsc::unbounded_channel::<ClusterProgress>();
            backup = backup.with_progress(move |event: &ClusterProgress| {
                let _ = sender.send(event.clone());
            });
            if asynchronous {
                forward_to_loop(py, receiver, callback, cluster_event)?;
            } else {
                pump = Some(ProgressPump::events(receiver, callback, cluster_event));
            }
        }
        let repository = self.inner.clone();
        let stop = cancel.clone();
        Ok(Call {
            future: async move {
                // Dropping this future (an awaitable cancelled) cancels the
                // cluster backup.
                let guard = stop.drop_guard();
                let report = backup.run(&repository).await;
                guard.disarm();
                let report = report?;
                serde_json::to_value(&report).map(Json).map_err(encoding)
            },
            cancel: Some(cancel),
            pump,
        })
    }

    fn cluster_backups_call(
        &self,
        cluster: String,
    ) -> Call<impl Future<Output = backup_core::Result<Vec<Json>>>> {
        let repository = self.inner.clone();
        Call::new(async move {
            ClusterRecord::list(&repository, &cluster)
                .await?
                .iter()
                .map(record_json)
                .collect()
        })
    }

    fn cluster_restore_call(
        &self,
        cluster: String,
        targets: Vec<PyRef<'_, PyRestorer>>,
        backup: String,
    ) -> PyResult<Call<impl Future<Output = backup_core::Result<Vec<Json>>>>> {
        let targets = targets
            .iter()
            .enumerate()
            .map(|(at, target)| {
                target.cassandra().ok_or_else(|| {
                    invalid(format!(
                        "cluster_restore takes CassandraRestorer targets; target {at} is a {} \
                         restorer",
                        target.kind()
                    ))
                })
            })
            .collect::<PyResult<Vec<_>>>()?;
        let repository = self.inner.clone();
        Ok(Call::new(async move {
            let record = ClusterRecord::find(&repository, &cluster, &backup).await?;
            ClusterRestore::new(targets)
                .run(&repository, &record)
                .await?
                .iter()
                .map(|report| serde_json::to_value(report).map(Json).map_err(encoding))
                .collect()
        }))
    }
}

fn backups(list: Vec<Backup>) -> Vec<PyBackup> {
    list.into_iter().map(|inner| PyBackup { inner }).collect()
}

fn entries(list: Vec<backup_core::LsEntry>) -> Vec<PyEntry> {
    list.into_iter().map(PyEntry::from).collect()
}

fn decisions(list: Vec<(Backup, backup_core::Decision)>) -> Vec<PyForgetDecision> {
    list.into_iter().map(PyForgetDecision::from).collect()
}

#[pymethods]
impl PyRepository {
    /// Creates a repository at `url` and opens it.
    #[classmethod]
    #[pyo3(signature = (url, *, password=None, password_file=None, encryption=true, **storage_options))]
    fn init(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        url: String,
        password: Option<Secret>,
        password_file: Option<PathBuf>,
        encryption: bool,
        storage_options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyRepository> {
        let location = Location {
            url,
            storage: self::storage_options(storage_options)?,
            password: PasswordSource::new(password, password_file)?,
        };
        Call::new(location.init(encryption)).wait(py, |repository| repository)
    }

    /// `init`, as an awaitable.
    #[classmethod]
    #[pyo3(signature = (url, *, password=None, password_file=None, encryption=true, **storage_options))]
    fn init_async<'py>(
        _cls: &Bound<'py, PyType>,
        py: Python<'py>,
        url: String,
        password: Option<Secret>,
        password_file: Option<PathBuf>,
        encryption: bool,
        storage_options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let location = Location {
            url,
            storage: self::storage_options(storage_options)?,
            password: PasswordSource::new(password, password_file)?,
        };
        Call::new(location.init(encryption)).awaitable(py, |repository| repository)
    }

    /// Opens the repository at `url`.
    #[classmethod]
    #[pyo3(signature = (url, *, password=None, password_file=None, **storage_options))]
    fn open(
        _cls: &Bound<'_, PyType>,
        py: Python<'_>,
        url: String,
        password: Option<Secret>,
        password_file: Option<PathBuf>,
        storage_options: Option<&Bound<'_, PyDict>>,
    ) -> PyResult<PyRepository> {
        let location = Location {
            url,
            storage: self::storage_options(storage_options)?,
            password: PasswordSource::new(password, password_file)?,
        };
        Call::new(location.open()).wait(py, |repository| repository)
    }

    /// `open`, as an awaitable.
    #[classmethod]
    #[pyo3(signature = (url, *, password=None, password_file=None, **storage_options))]
    fn open_async<'py>(
        _cls: &Bound<'py, PyType>,
        py: Python<'py>,
        url: String,
        password: Option<Secret>,
        password_file: Option<PathBuf>,
        storage_options: Option<&Bound<'py, PyDict>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let location = Location {
            url,
            storage: self::storage_options(storage_options)?,
            password: PasswordSource::new(password, password_file)?,
        };
        Call::new(location.open()).awaitable(py, |repository| repository)
    }

    /// Where the repository is.
    #[getter]
    fn location(&self) -> &str {
        &self.location
    }

    /// The repository's id, in hex.
    #[getter]
    fn id(&self) -> String {
        self.inner.id().to_hex()
    }

    /// Whether the repository is encrypted.
    #[getter]
    fn encrypted(&self) -> bool {
        self.inner.is_encrypted()
    }

    /// The repository's format version.
    #[getter]
    fn format_version(&self) -> u32 {
        self.inner.format_version()
    }

    /// Backs up `paths` (a directory source) or `source` as a new backup
    /// of `set`.
    #[pyo3(signature = (paths=None, *, set="default", tags=None, time=None, source=None, hooks=None, check_collision=false, writer=None, on_progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn backup(
        &self,
        py: Python<'_>,
        paths: Option<Paths>,
        set: &str,
        tags: Option<BTreeMap<String, String>>,
        time: Option<&Bound<'_, PyAny>>,
        source: Option<PyRef<'_, PySource>>,
        hooks: Option<PyRef<'_, PyHooks>>,
        check_collision: bool,
        writer: Option<String>,
        on_progress: Option<Py<PyAny>>,
    ) -> PyResult<PyBackupSummary> {
        self.backup_call(
            py,
            false,
            paths,
            set,
            tags,
            time,
            source,
            hooks,
            check_collision,
            writer,
            on_progress,
        )?
        .wait(py, PyBackupSummary::from)
    }

    /// `backup`, as an awaitable; `on_progress` is called on the event loop.
    #[pyo3(signature = (paths=None, *, set="default", tags=None, time=None, source=None, hooks=None, check_collision=false, writer=None, on_progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn backup_async<'py>(
        &self,
        py: Python<'py>,
        paths: Option<Paths>,
        set: &str,
        tags: Option<BTreeMap<String, String>>,
        time: Option<&Bound<'py, PyAny>>,
        source: Option<PyRef<'py, PySource>>,
        hooks: Option<PyRef<'py, PyHooks>>,
        check_collision: bool,
        writer: Option<String>,
        on_progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.backup_call(
            py,
            true,
            paths,
            set,
            tags,
            time,
            source,
            hooks,
            check_collision,
            writer,
            on_progress,
        )?
        .awaitable(py, PyBackupSummary::from)
    }

    /// Every backup (of `set` when given), oldest first.
    #[pyo3(signature = (set=None))]
    fn list(&self, py: Python<'_>, set: Option<String>) -> PyResult<Vec<PyBackup>> {
        self.list_call(set).wait(py, backups)
    }

    /// `list`, as an awaitable.
    #[pyo3(signature = (set=None))]
    fn list_async<'py>(&self, py: Python<'py>, set: Option<String>) -> PyResult<Bound<'py, PyAny>> {
        self.list_call(set).awaitable(py, backups)
    }

    /// The backup `selector` names: `latest` (the newest completed one, of
    /// `set` when given), or an id or a unique prefix of one.
    #[pyo3(signature = (selector="latest", set=None))]
    fn find(&self, py: Python<'_>, selector: &str, set: Option<String>) -> PyResult<PyBackup> {
        self.find_call(selector.to_owned(), set)
            .wait(py, |inner| PyBackup { inner })
    }

    /// `find`, as an awaitable.
    #[pyo3(signature = (selector="latest", set=None))]
    fn find_async<'py>(
        &self,
        py: Python<'py>,
        selector: &str,
        set: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.find_call(selector.to_owned(), set)
            .awaitable(py, |inner| PyBackup { inner })
    }

    /// Every file, directory and symlink of a backup, depth first.
    fn ls(&self, py: Python<'_>, backup: BackupRef) -> PyResult<Vec<PyEntry>> {
        self.ls_call(backup).wait(py, entries)
    }

    /// `ls`, as an awaitable.
    fn ls_async<'py>(&self, py: Python<'py>, backup: BackupRef) -> PyResult<Bound<'py, PyAny>> {
        self.ls_call(backup).awaitable(py, entries)
    }

    /// Restores a backup (or the paths `include` selects: globs or
    /// prefixes) into the directory `target`.
    /// `exclude` / `iexclude` leave out what they match (with all it
    /// holds), `overwrite` says which files already there are replaced
    /// (`"always"`, `"if-changed"`, `"if-newer"`, `"never"`), `delete`
    /// removes what the restored directories hold that the backup does
    /// not, and `verify` reads every restored file back and checks it, as
    /// restic's restore options.
    #[pyo3(signature = (backup, target, *, include=None, exclude=None, iexclude=None, overwrite="always", delete=false, verify=false, on_progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn restore(
        &self,
        py: Python<'_>,
        backup: BackupRef,
        target: PathBuf,
        include: Option<Vec<String>>,
        exclude: Option<Vec<String>>,
        iexclude: Option<Vec<String>>,
        overwrite: &str,
        delete: bool,
        verify: bool,
        on_progress: Option<Py<PyAny>>,
    ) -> PyResult<PyRestoreSummary> {
        let tree = TreeRestore {
            include,
            exclude,
            iexclude,
            overwrite: overwrite.to_string(),
            delete,
            verify,
        };
        self.restore_call(py, false, backup, target, tree, on_progress)?
            .wait(py, PyRestoreSummary::from)
    }

    /// `restore`, as an awaitable.
    #[pyo3(signature = (backup, target, *, include=None, exclude=None, iexclude=None, overwrite="always", delete=false, verify=false, on_progress=None))]
    #[allow(clippy::too_many_arguments)]
    fn restore_async<'py>(
        &self,
        py: Python<'py>,
        backup: BackupRef,
        target: PathBuf,
        include: Option<Vec<String>>,
        exclude: Option<Vec<String>>,
        iexclude: Option<Vec<String>>,
        overwrite: &str,
        delete: bool,
        verify: bool,
        on_progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let tree = TreeRestore {
            include,
            exclude,
            iexclude,
            overwrite: overwrite.to_string(),
            delete,
            verify,
        };
        self.restore_call(py, true, backup, target, tree, on_progress)?
            .awaitable(py, PyRestoreSummary::from)
    }

    /// Puts a backup back into a store with `restorer` (an
    /// `EtcdRestorer`, a `RedisRestorer`, ...), after checking that the
    /// backup is of the restorer's kind.
    fn restore_into(
        &self,
        py: Python<'_>,
        backup: BackupRef,
        restorer: PyRef<'_, PyRestorer>,
    ) -> PyResult<PyStoreRestore> {
        self.restore_into_call(backup, &restorer)
            .wait(py, PyStoreRestore::from)
    }

    /// `restore_into`, as an awaitable.
    fn restore_into_async<'py>(
        &self,
        py: Python<'py>,
        backup: BackupRef,
        restorer: PyRef<'py, PyRestorer>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.restore_into_call(backup, &restorer)
            .awaitable(py, PyStoreRestore::from)
    }

    /// Backs up every node of a Cassandra cluster (`nodes`, each a
    /// `CassandraSource` named by its node) under one cluster backup id:
    /// each node's backup in the set `<cluster>/<node>`, at most
    /// `parallelism` at once, then, only when every node's is stored, a
    /// group record in the set `<cluster>` that makes the cluster backup
    /// restorable. `on_progress` is called (on this thread) with a dict per
    /// event, of a node or (`node` None) of the whole: `cluster_backup_id`,
    /// `cluster`, `node`, `state` (`PENDING`, `RUNNING`, `COMPLETED`,
    /// `FAILED`), `percent`, `bytes_done`, `bytes_total`,
    /// `nodes_completed`, `nodes_failed`, `nodes_total`, `error`.
    ///
    /// Returns the report as a dict: `id`, `cluster`, `state`, `nodes`
    /// (each `node`, `set`, `state`, `backup`, `bytes_total`, `bytes_read`,
    /// `bytes_added`, `error`) and `record`. A node that fails does not
    /// stop the others, and a cluster backup that failed is returned, not
    /// raised: check `report["state"] == "COMPLETED"` (a failed one has no
    /// record and is never offered for restore). Raises for bad arguments
    /// (no nodes, a name twice) and for storage errors writing the record.
    #[pyo3(signature = (cluster, nodes, *, parallelism=2, on_progress=None, writer=None))]
    fn cluster_backup(
        &self,
        py: Python<'_>,
        cluster: String,
        nodes: Vec<PyRef<'_, PySource>>,
        parallelism: usize,
        on_progress: Option<Py<PyAny>>,
        writer: Option<String>,
    ) -> PyResult<Json> {
        self.cluster_backup_call(py, false, cluster, nodes, parallelism, on_progress, writer)?
            .wait(py, |report| report)
    }

    /// `cluster_backup`, as an awaitable (`on_progress` is called on the event
    /// loop).
    #[pyo3(signature = (cluster, nodes, *, parallelism=2, on_progress=None, writer=None))]
    fn cluster_backup_async<'py>(
        &self,
        py: Python<'py>,
        cluster: String,
        nodes: Vec<PyRef<'py, PySource>>,
        parallelism: usize,
        on_progress: Option<Py<PyAny>>,
        writer: Option<String>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.cluster_backup_call(py, true, cluster, nodes, parallelism, on_progress, writer)?
            .awaitable(py, |report| report)
    }

    /// The completed cluster backups of `cluster`, oldest first, each a
    /// dict: `id` (the cluster backup's id), `cluster`, `store`, `nodes`
    /// (each `node`, `set`, `backup`, `host_id`, `datacenter`, `rack`,
    /// `tokens`, `cassandra_version`) and `record` (its group record's
    /// backup id). Cluster backups in which a node failed are not listed.
    fn cluster_backups(&self, py: Python<'_>, cluster: String) -> PyResult<Vec<Json>> {
        self.cluster_backups_call(cluster).wait(py, |list| list)
    }

    /// `cluster_backups`, as an awaitable.
    fn cluster_backups_async<'py>(
        &self,
        py: Python<'py>,
        cluster: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.cluster_backups_call(cluster)
            .awaitable(py, |list| list)
    }

    /// Restores the completed cluster backup `backup` of `cluster`
    /// (`latest`, its id, or its record's backup id or a prefix of it) into
    /// a new cluster of as many nodes: the recorded nodes, sorted by name,
    /// each into one `CassandraRestorer` of `targets` (the first into the
    /// first). Every target is checked before anything is written: another
    /// node count, a data directory that is not empty or another major
    /// version raises `RestoreRefusedError`. Returns one dict per node:
    /// `kind`, `target`, `bytes` and `details` (the source node, its
    /// tokens, the keyspaces restored).
    #[pyo3(signature = (cluster, targets, backup="latest"))]
    fn cluster_restore(
        &self,
        py: Python<'_>,
        cluster: String,
        targets: Vec<PyRef<'_, PyRestorer>>,
        backup: &str,
    ) -> PyResult<Vec<Json>> {
        self.cluster_restore_call(cluster, targets, backup.to_owned())?
            .wait(py, |list| list)
    }

    /// `cluster_restore`, as an awaitable.
    #[pyo3(signature = (cluster, targets, backup="latest"))]
    fn cluster_restore_async<'py>(
        &self,
        py: Python<'py>,
        cluster: String,
        targets: Vec<PyRef<'py, PyRestorer>>,
        backup: &str,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.cluster_restore_call(cluster, targets, backup.to_owned())?
            .awaitable(py, |list| list)
    }

    /// The content of one file of a backup (`path` relative to its root,
    /// `/`-separated), every chunk checked.
    fn read_file(&self, py: Python<'_>, backup: BackupRef, path: String) -> PyResult<Bytes> {
        self.read_file_call(backup, path).wait(py, Bytes)
    }

    /// `read_file`, as an awaitable.
    fn read_file_async<'py>(
        &self,
        py: Python<'py>,
        backup: BackupRef,
        path: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.read_file_call(backup, path).awaitable(py, Bytes)
    }

    /// One file of a backup opened for reading, chunk by chunk (only the
    /// chunks read are fetched).
    fn open_file(&self, py: Python<'_>, backup: BackupRef, path: String) -> PyResult<PyFileReader> {
        self.open_file_call(backup, path)
            .wait(py, PyFileReader::new)
    }

    /// `open_file`, as an awaitable.
    fn open_file_async<'py>(
        &self,
        py: Python<'py>,
        backup: BackupRef,
        path: String,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.open_file_call(backup, path)
            .awaitable(py, PyFileReader::new)
    }

    /// Checks the repository's structure and, with `read_data` (or a share
    /// of the packs, `read_data_subset`, from 0 to 1), its data.
    #[pyo3(signature = (*, read_data=false, read_data_subset=None, on_progress=None))]
    fn verify(
        &self,
        py: Python<'_>,
        read_data: bool,
        read_data_subset: Option<f64>,
        on_progress: Option<Py<PyAny>>,
    ) -> PyResult<PyVerifyReport> {
        self.verify_call(py, false, read_data, read_data_subset, on_progress)?
            .wait(py, PyVerifyReport::from)
    }

    /// `verify`, as an awaitable.
    #[pyo3(signature = (*, read_data=false, read_data_subset=None, on_progress=None))]
    fn verify_async<'py>(
        &self,
        py: Python<'py>,
        read_data: bool,
        read_data_subset: Option<f64>,
        on_progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.verify_call(py, true, read_data, read_data_subset, on_progress)?
            .awaitable(py, PyVerifyReport::from)
    }

    /// Applies a retention policy to the backups (of `set` when given):
    /// forgets those it does not keep (unless `dry_run`), and returns every
    /// decision with its reasons.
    #[pyo3(signature = (policy, *, set=None, dry_run=false))]
    fn forget(
        &self,
        py: Python<'_>,
        policy: PyRef<'_, PyKeepPolicy>,
        set: Option<String>,
        dry_run: bool,
    ) -> PyResult<Vec<PyForgetDecision>> {
        self.forget_call(&policy, set, dry_run).wait(py, decisions)
    }

    /// `forget`, as an awaitable.
    #[pyo3(signature = (policy, *, set=None, dry_run=false))]
    fn forget_async<'py>(
        &self,
        py: Python<'py>,
        policy: PyRef<'py, PyKeepPolicy>,
        set: Option<String>,
        dry_run: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.forget_call(&policy, set, dry_run)
            .awaitable(py, decisions)
    }

    /// Frees the space of data no backup references; unused packs are
    /// deleted after `grace` (a `timedelta`, one hour by default).
    #[pyo3(signature = (*, grace=None, dry_run=false, on_progress=None))]
    fn prune(
        &self,
        py: Python<'_>,
        grace: Option<chrono::TimeDelta>,
        dry_run: bool,
        on_progress: Option<Py<PyAny>>,
    ) -> PyResult<PyPruneReport> {
        self.prune_call(py, false, grace, dry_run, on_progress)?
            .wait(py, PyPruneReport::from)
    }

    /// `prune`, as an awaitable.
    #[pyo3(signature = (*, grace=None, dry_run=false, on_progress=None))]
    fn prune_async<'py>(
        &self,
        py: Python<'py>,
        grace: Option<chrono::TimeDelta>,
        dry_run: bool,
        on_progress: Option<Py<PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.prune_call(py, true, grace, dry_run, on_progress)?
            .awaitable(py, PyPruneReport::from)
    }

    fn __repr__(&self) -> String {
        format!(
            "Repository({:?}, id={:?}, encrypted={})",
            self.location,
            self.inner.id().short(),
            if self.inner.is_encrypted() {
                "True"
            } else {
                "False"
            }
        )
    }
}

impl PyRepository {
    /// The library's repository (for the scheduler's jobs).
    pub(crate) fn inner(&self) -> &Repository {
        &self.inner
    }
}

/// The options of `restore` and `restore_async` for a restore into a
/// directory, as Python passes them.
struct TreeRestore {
    include: Option<Vec<String>>,
    exclude: Option<Vec<String>>,
    iexclude: Option<Vec<String>>,
    overwrite: String,
    delete: bool,
    verify: bool,
}

impl TreeRestore {
    /// The library's options.
    fn options(self) -> PyResult<RestoreOptions> {
        let overwrite = match self.overwrite.as_str() {
            "always" => Overwrite::Always,
            "if-changed" => Overwrite::IfChanged,
            "if-newer" => Overwrite::IfNewer,
            "never" => Overwrite::Never,
            other => {
                return Err(invalid(format!(
                "overwrite is \"always\", \"if-changed\", \"if-newer\" or \"never\", not {other:?}"
            )))
            }
        };
        Ok(RestoreOptions::default()
            .with_include(self.include.unwrap_or_default())
            .with_exclude(self.exclude.unwrap_or_default())
            .with_iexclude(self.iexclude.unwrap_or_default())
            .with_overwrite(overwrite)
            .with_delete(self.delete)
            .with_verify(self.verify))
    }
}
