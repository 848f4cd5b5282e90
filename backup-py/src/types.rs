//! The frozen result objects: what the library returns, as Python sees it.
//!
//! Each is built from the library's own record after the call, with the
//! GIL, and holds plain Python values: `datetime`s are timezone-aware (UTC),
//! ids are hex strings, a backup's facts are the JSON values they are in the
//! manifest.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList};

use backup_core::{
    Backup, BackupStats, BackupStatus, BackupSummary, Decision, FailureKind, ItemFailure, LsEntry,
    NodeKind, Phase, Problem, Progress, PruneReport, RestoreSummary, Status, StoreRestore,
    VerifyReport,
};

/// A JSON value as the Python value `json.loads` would give.
pub(crate) fn json_to_py(py: Python<'_>, value: &serde_json::Value) -> PyResult<Py<PyAny>> {
    Ok(match value {
        serde_json::Value::Null => py.None(),
        serde_json::Value::Bool(flag) => flag.into_pyobject(py)?.to_owned().into_any().unbind(),
        serde_json::Value::Number(number) => {
            if let Some(n) = number.as_u64() {
                n.into_pyobject(py)?.into_any().unbind()
            } else if let Some(n) = number.as_i64() {
                n.into_pyobject(py)?.into_any().unbind()
            } else {
                number
                    .as_f64()
                    .unwrap_or(f64::NAN)
                    .into_pyobject(py)?
                    .into_any()
                    .unbind()
            }
        }
        serde_json::Value::String(text) => text.into_pyobject(py)?.into_any().unbind(),
        serde_json::Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any().unbind()
        }
        serde_json::Value::Object(map) => facts_to_py(py, map.iter())?,
    })
}

/// A library report as the Python value `json.loads` would give for its
/// JSON (dicts, lists, str, int, float, None): for results whose shape is
/// the library's serialised form.
pub(crate) struct Json(pub(crate) serde_json::Value);

impl<'py> IntoPyObject<'py> for Json {
    type Target = PyAny;
    type Output = Bound<'py, PyAny>;
    type Error = PyErr;

    fn into_pyobject(self, py: Python<'py>) -> PyResult<Self::Output> {
        Ok(json_to_py(py, &self.0)?.into_bound(py))
    }
}

/// A map of JSON values as a dict.
fn facts_to_py<'a>(
    py: Python<'_>,
    facts: impl Iterator<Item = (&'a String, &'a serde_json::Value)>,
) -> PyResult<Py<PyAny>> {
    let dict = PyDict::new(py);
    for (key, value) in facts {
        dict.set_item(key, json_to_py(py, value)?)?;
    }
    Ok(dict.into_any().unbind())
}

fn status_name(status: Status) -> &'static str {
    match status {
        Status::Completed => "completed",
        Status::PartiallyFailed => "partially_failed",
        _ => "failed",
    }
}

fn failure_kind_name(kind: FailureKind) -> &'static str {
    match kind {
        FailureKind::PermissionDenied => "permission_denied",
        FailureKind::Unauthenticated => "unauthenticated",
        FailureKind::NotFound => "not_found",
        FailureKind::Corrupt => "corrupt",
        FailureKind::Storage => "storage",
        FailureKind::Io => "io",
        FailureKind::Refused => "refused",
        FailureKind::Unsupported => "unsupported",
        FailureKind::Changed => "changed",
        _ => "other",
    }
}

/// One item (a file, a directory) an operation could not handle; the
/// operation went on without it.
#[pyclass(name = "ItemFailure", module = "backup_toolkit", frozen, get_all)]
#[derive(Clone)]
pub(crate) struct PyItemFailure {
    /// The item's path.
    path: String,
    /// What kind of failure: `permission_denied`, `not_found`, `io`, ...
    kind: &'static str,
    /// What went wrong.
    message: String,
}

impl From<&ItemFailure> for PyItemFailure {
    fn from(failure: &ItemFailure) -> Self {
        PyItemFailure {
            path: failure.path.clone(),
            kind: failure_kind_name(failure.kind),
            message: failure.message.clone(),
        }
    }
}

#[pymethods]
impl PyItemFailure {
    fn __repr__(&self) -> String {
        format!(
            "ItemFailure(path={:?}, kind={:?}, message={:?})",
            self.path, self.kind, self.message
        )
    }
}

fn failures(list: &[ItemFailure]) -> Vec<PyItemFailure> {
    list.iter().map(PyItemFailure::from).collect()
}

/// What a backup counted.
#[pyclass(name = "BackupStats", module = "backup_toolkit", frozen, get_all)]
#[derive(Clone)]
pub(crate) struct PyBackupStats {
    files: u64,
    dirs: u64,
    symlinks: u64,
    files_unchanged: u64,
    bytes_total: u64,
    bytes_read: u64,
    bytes_added: u64,
    chunks_added: u64,
    skipped: u64,
    duration_ms: u64,
}

impl From<&BackupStats> for PyBackupStats {
    fn from(stats: &BackupStats) -> Self {
        PyBackupStats {
            files: stats.files,
            dirs: stats.dirs,
            symlinks: stats.symlinks,
            files_unchanged: stats.files_unchanged,
            bytes_total: stats.bytes_total,
            bytes_read: stats.bytes_read,
            bytes_added: stats.bytes_added,
            chunks_added: stats.chunks_added,
            skipped: stats.skipped,
            duration_ms: stats.duration_ms,
        }
    }
}

#[pymethods]
impl PyBackupStats {
    fn __repr__(&self) -> String {
        format!(
            "BackupStats(files={}, dirs={}, bytes_total={}, bytes_added={}, files_unchanged={})",
            self.files, self.dirs, self.bytes_total, self.bytes_added, self.files_unchanged
        )
    }
}

/// One backup in a repository: its manifest.
#[pyclass(name = "Backup", module = "backup_toolkit", frozen)]
#[derive(Clone)]
pub(crate) struct PyBackup {
    pub(crate) inner: Backup,
}

#[pymethods]
impl PyBackup {
    /// The backup's id, in hex.
    #[getter]
    fn id(&self) -> String {
        self.inner.id.to_hex()
    }
    /// The first eight hex digits of the id.
    #[getter]
    fn short_id(&self) -> String {
        self.inner.id.short()
    }
    /// The backup set.
    #[getter]
    fn set(&self) -> &str {
        &self.inner.manifest.set
    }
    /// The time the backup represents.
    #[getter]
    fn time(&self) -> DateTime<Utc> {
        self.inner.manifest.time
    }
    /// When the backup started.
    #[getter]
    fn started(&self) -> DateTime<Utc> {
        self.inner.manifest.started
    }
    /// When it finished.
    #[getter]
    fn finished(&self) -> DateTime<Utc> {
        self.inner.manifest.finished
    }
    /// Who wrote it.
    #[getter]
    fn writer(&self) -> &str {
        &self.inner.manifest.writer
    }
    /// The host it was taken on.
    #[getter]
    fn hostname(&self) -> &str {
        &self.inner.manifest.hostname
    }
    /// The kind of source: `directory`, `command`, `etcd`, `redis`, ...
    #[getter]
    fn kind(&self) -> &str {
        &self.inner.manifest.source.kind
    }
    /// The paths backed up (for a directory source).
    #[getter]
    fn paths(&self) -> Vec<String> {
        self.inner.manifest.source.paths.clone()
    }
    /// The tags, a dict of str.
    #[getter]
    fn tags(&self) -> BTreeMap<String, String> {
        self.inner.manifest.tags.clone()
    }
    /// The id of the backup it was compared against, if any.
    #[getter]
    fn parent(&self) -> Option<String> {
        self.inner.manifest.parent.map(|id| id.to_hex())
    }
    /// What the source recorded (an etcd revision, a Redis replication
    /// offset, ...), as JSON values.
    #[getter]
    fn facts(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        facts_to_py(py, self.inner.manifest.facts.iter())
    }
    /// What it counted.
    #[getter]
    fn stats(&self) -> PyBackupStats {
        PyBackupStats::from(&self.inner.manifest.stats)
    }
    /// `completed`, or `partially_failed` when some items could not be read.
    #[getter]
    fn status(&self) -> &'static str {
        match self.inner.manifest.status {
            BackupStatus::Completed => "completed",
            _ => "partially_failed",
        }
    }
    /// The items it could not read.
    #[getter]
    fn errors(&self) -> Vec<PyItemFailure> {
        failures(&self.inner.manifest.errors)
    }

    fn __repr__(&self) -> String {
        format!(
            "Backup(id={:?}, set={:?}, time={:?}, kind={:?}, status={:?})",
            self.inner.id.short(),
            self.inner.manifest.set,
            self.inner.manifest.time.to_rfc3339(),
            self.inner.manifest.source.kind,
            self.status()
        )
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyBackup>()
            .is_ok_and(|other| other.get().inner.id == self.inner.id)
    }

    fn __hash__(&self) -> u64 {
        let bytes = self.inner.id.as_bytes();
        let mut first = [0u8; 8];
        first.copy_from_slice(&bytes[..8]);
        u64::from_le_bytes(first)
    }
}

/// What a backup did.
#[pyclass(name = "BackupSummary", module = "backup_toolkit", frozen, get_all)]
pub(crate) struct PyBackupSummary {
    /// The new backup.
    backup: PyBackup,
    /// `completed` or `partially_failed`.
    status: &'static str,
    /// The items it could not read.
    failures: Vec<PyItemFailure>,
}

impl From<BackupSummary> for PyBackupSummary {
    fn from(summary: BackupSummary) -> Self {
        PyBackupSummary {
            status: status_name(summary.status),
            failures: failures(&summary.failures),
            backup: PyBackup {
                inner: Backup {
                    id: summary.id,
                    manifest: summary.manifest,
                },
            },
        }
    }
}

#[pymethods]
impl PyBackupSummary {
    /// The new backup's id.
    #[getter]
    fn id(&self) -> String {
        self.backup.id()
    }
    /// What it counted.
    #[getter]
    fn stats(&self) -> PyBackupStats {
        self.backup.stats()
    }
    fn __repr__(&self) -> String {
        let stats = &self.backup.inner.manifest.stats;
        format!(
            "BackupSummary(id={:?}, status={:?}, files={}, bytes_added={}, failures={})",
            self.backup.inner.id.short(),
            self.status,
            stats.files,
            stats.bytes_added,
            self.failures.len()
        )
    }
}

/// What a restore into a directory did.
#[pyclass(name = "RestoreSummary", module = "backup_toolkit", frozen, get_all)]
pub(crate) struct PyRestoreSummary {
    status: &'static str,
    failures: Vec<PyItemFailure>,
    files: u64,
    dirs: u64,
    symlinks: u64,
    bytes: u64,
    skipped: u64,
    deleted: u64,
    verified: u64,
}

impl From<RestoreSummary> for PyRestoreSummary {
    fn from(summary: RestoreSummary) -> Self {
        PyRestoreSummary {
            status: status_name(summary.status),
            failures: failures(&summary.failures),
            files: summary.files,
            dirs: summary.dirs,
            symlinks: summary.symlinks,
            bytes: summary.bytes,
            skipped: summary.skipped,
            deleted: summary.deleted,
            verified: summary.verified,
        }
    }
}

#[pymethods]
impl PyRestoreSummary {
    fn __repr__(&self) -> String {
        format!(
            "RestoreSummary(status={:?}, files={}, dirs={}, symlinks={}, bytes={}, failures={})",
            self.status,
            self.files,
            self.dirs,
            self.symlinks,
            self.bytes,
            self.failures.len()
        )
    }
}

/// What a restore into a data store did.
#[pyclass(name = "StoreRestore", module = "backup_toolkit", frozen)]
pub(crate) struct PyStoreRestore {
    inner: StoreRestore,
}

impl From<StoreRestore> for PyStoreRestore {
    fn from(inner: StoreRestore) -> Self {
        PyStoreRestore { inner }
    }
}

#[pymethods]
impl PyStoreRestore {
    /// The kind of store (`etcd`, `redis`, ...).
    #[getter]
    fn kind(&self) -> &str {
        &self.inner.kind
    }
    /// Where it was restored: a data directory.
    #[getter]
    fn target(&self) -> std::path::PathBuf {
        self.inner.target.clone()
    }
    /// Bytes written.
    #[getter]
    fn bytes(&self) -> u64 {
        self.inner.bytes
    }
    /// What the restorer recorded (the tool used, the member name, ...).
    #[getter]
    fn details(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        facts_to_py(py, self.inner.details.iter())
    }
    fn __repr__(&self) -> String {
        format!(
            "StoreRestore(kind={:?}, target={:?}, bytes={})",
            self.inner.kind, self.inner.target, self.inner.bytes
        )
    }
}

/// One thing `verify` found wrong.
#[pyclass(name = "Problem", module = "backup_toolkit", frozen, get_all)]
#[derive(Clone)]
pub(crate) struct PyProblem {
    /// The object (key) concerned.
    object: String,
    /// What is wrong with it.
    message: String,
}

impl From<&Problem> for PyProblem {
    fn from(problem: &Problem) -> Self {
        PyProblem {
            object: problem.object.clone(),
            message: problem.message.clone(),
        }
    }
}

#[pymethods]
impl PyProblem {
    fn __repr__(&self) -> String {
        format!(
            "Problem(object={:?}, message={:?})",
            self.object, self.message
        )
    }
}

/// What `verify` checked and found.
#[pyclass(name = "VerifyReport", module = "backup_toolkit", frozen, get_all)]
pub(crate) struct PyVerifyReport {
    errors: Vec<PyProblem>,
    warnings: Vec<String>,
    backups: u64,
    indexes: u64,
    packs: u64,
    packs_read: u64,
    blobs_checked: u64,
    bytes_read: u64,
}

impl From<VerifyReport> for PyVerifyReport {
    fn from(report: VerifyReport) -> Self {
        PyVerifyReport {
            errors: report.errors.iter().map(PyProblem::from).collect(),
            warnings: report.warnings,
            backups: report.backups,
            indexes: report.indexes,
            packs: report.packs,
            packs_read: report.packs_read,
            blobs_checked: report.blobs_checked,
            bytes_read: report.bytes_read,
        }
    }
}

#[pymethods]
impl PyVerifyReport {
    /// No errors found.
    #[getter]
    fn ok(&self) -> bool {
        self.errors.is_empty()
    }
    fn __bool__(&self) -> bool {
        self.ok()
    }
    fn __repr__(&self) -> String {
        format!(
            "VerifyReport(ok={}, errors={}, warnings={}, backups={}, packs={}, packs_read={})",
            if self.ok() { "True" } else { "False" },
            self.errors.len(),
            self.warnings.len(),
            self.backups,
            self.packs,
            self.packs_read
        )
    }
}

/// What `forget` decided for one backup, and why.
#[pyclass(name = "ForgetDecision", module = "backup_toolkit", frozen, get_all)]
pub(crate) struct PyForgetDecision {
    /// The backup.
    backup: PyBackup,
    /// Kept (else forgotten, or to be forgotten in a dry run).
    keep: bool,
    /// The rules that kept it (`last`, `daily 2024-01-01`, ...).
    reasons: Vec<String>,
}

impl From<(Backup, Decision)> for PyForgetDecision {
    fn from((backup, decision): (Backup, Decision)) -> Self {
        PyForgetDecision {
            backup: PyBackup { inner: backup },
            keep: decision.keep,
            reasons: decision.reasons,
        }
    }
}

#[pymethods]
impl PyForgetDecision {
    fn __repr__(&self) -> String {
        format!(
            "ForgetDecision(backup={:?}, keep={}, reasons={:?})",
            self.backup.inner.id.short(),
            if self.keep { "True" } else { "False" },
            self.reasons
        )
    }
}

/// What `prune` did.
#[pyclass(name = "PruneReport", module = "backup_toolkit", frozen, get_all)]
pub(crate) struct PyPruneReport {
    packs_before: u64,
    bytes_before: u64,
    packs_marked: u64,
    packs_repacked: u64,
    packs_written: u64,
    packs_deleted: u64,
    bytes_deleted: u64,
    packs_rescued: u64,
    marks_waiting: u64,
    marks_postponed: u64,
}

impl From<PruneReport> for PyPruneReport {
    fn from(report: PruneReport) -> Self {
        PyPruneReport {
            packs_before: report.packs_before,
            bytes_before: report.bytes_before,
            packs_marked: report.packs_marked,
            packs_repacked: report.packs_repacked,
            packs_written: report.packs_written,
            packs_deleted: report.packs_deleted,
            bytes_deleted: report.bytes_deleted,
            packs_rescued: report.packs_rescued,
            marks_waiting: report.marks_waiting,
            marks_postponed: report.marks_postponed,
        }
    }
}

#[pymethods]
impl PyPruneReport {
    fn __repr__(&self) -> String {
        format!(
            "PruneReport(packs_before={}, packs_marked={}, packs_deleted={}, bytes_deleted={}, marks_waiting={})",
            self.packs_before, self.packs_marked, self.packs_deleted, self.bytes_deleted, self.marks_waiting
        )
    }
}

/// One file, directory or symlink of a backup.
#[pyclass(name = "Entry", module = "backup_toolkit", frozen, get_all)]
pub(crate) struct PyEntry {
    /// Its path in the backup, `/`-separated.
    path: String,
    /// `file`, `dir` or `symlink`.
    kind: &'static str,
    /// Size in bytes (files).
    size: u64,
    /// Unix permission bits.
    mode: u32,
    /// Modification time.
    mtime: DateTime<Utc>,
    /// A symlink's target.
    target: Option<String>,
}

impl From<LsEntry> for PyEntry {
    fn from(entry: LsEntry) -> Self {
        PyEntry {
            path: entry.path,
            kind: match entry.kind {
                NodeKind::Dir => "dir",
                NodeKind::Symlink => "symlink",
                _ => "file",
            },
            size: entry.size,
            mode: entry.mode,
            mtime: entry.mtime,
            target: entry.target,
        }
    }
}

#[pymethods]
impl PyEntry {
    fn __repr__(&self) -> String {
        format!(
            "Entry(path={:?}, kind={:?}, size={})",
            self.path, self.kind, self.size
        )
    }
}

/// A progress report of a running operation.
#[pyclass(name = "Progress", module = "backup_toolkit", frozen, get_all)]
pub(crate) struct PyProgress {
    /// The operation: `backup`, `restore`, `verify`, `prune`, ...
    operation: &'static str,
    /// `running`, `completed`, `partially_failed` or `failed`.
    phase: &'static str,
    files_done: u64,
    files_total: Option<u64>,
    bytes_done: u64,
    bytes_total: Option<u64>,
    /// 0 to 100 once the totals are known.
    percent: Option<f64>,
    /// The item being worked on.
    current: Option<String>,
    /// Seconds since the operation started.
    elapsed: f64,
    /// An item that just failed (the operation goes on).
    failure: Option<PyItemFailure>,
}

impl From<Progress> for PyProgress {
    fn from(event: Progress) -> Self {
        PyProgress {
            operation: event.operation,
            phase: match event.phase {
                Phase::Running => "running",
                Phase::Completed => "completed",
                Phase::PartiallyFailed => "partially_failed",
                _ => "failed",
            },
            files_done: event.files_done,
            files_total: event.files_total,
            bytes_done: event.bytes_done,
            bytes_total: event.bytes_total,
            percent: event.percent,
            current: event.current,
            elapsed: event.elapsed_ms as f64 / 1000.0,
            failure: event.failure.as_ref().map(PyItemFailure::from),
        }
    }
}

#[pymethods]
impl PyProgress {
    fn __repr__(&self) -> String {
        let percent = self
            .percent
            .map_or_else(|| "None".to_owned(), |p| format!("{p:.1}"));
        format!(
            "Progress(operation={:?}, phase={:?}, percent={percent}, files_done={}, bytes_done={})",
            self.operation, self.phase, self.files_done, self.bytes_done
        )
    }
}

/// File content, given to Python as `bytes`.
pub(crate) struct Bytes(pub(crate) Vec<u8>);

impl<'py> IntoPyObject<'py> for Bytes {
    type Target = pyo3::types::PyBytes;
    type Output = Bound<'py, pyo3::types::PyBytes>;
    type Error = std::convert::Infallible;

    fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
        Ok(pyo3::types::PyBytes::new(py, &self.0))
    }
}
