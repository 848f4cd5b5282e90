//! The native module of the `backup_toolkit` Python package
//! (`backup_toolkit._native`): a thin binding of `backup-core` and
//! `backup-sinks`. It holds no backup logic of its own: each call turns its
//! arguments into the library's own values, runs the library's operation on
//! one shared tokio runtime without the GIL, and turns the result into a
//! frozen Python object. The Python package (`python/backup_toolkit`)
//! re-exports it with the exception tree and the type stubs.

// PyO3's generated glue is allowed its unsafe code; ours has none.
#![allow(unsafe_code)]

mod errors;
mod policy;
mod reader;
mod repository;
mod runtime;
mod schedule;

mod sources;
mod types;

use pyo3::prelude::*;

/// The native module.
#[pymodule]
fn _native(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    module.add_class::<repository::PyRepository>()?;
    module.add_class::<reader::PyFileReader>()?;
    module.add_class::<policy::PyKeepPolicy>()?;
    module.add_class::<sources::PySource>()?;
    module.add_class::<sources::PyDirectorySource>()?;
    module.add_class::<sources::PyCommandSource>()?;
    module.add_class::<sources::PyEtcdSource>()?;
    module.add_class::<sources::PyRedisSource>()?;
    module.add_class::<sources::PyPostgresSource>()?;
    module.add_class::<sources::PyMariadbSource>()?;
    module.add_class::<sources::PyCassandraSource>()?;
    module.add_class::<sources::PyHooks>()?;
    module.add_class::<sources::PyRestorer>()?;
    module.add_class::<sources::PyDirectoryRestorer>()?;
    module.add_class::<sources::PyCommandRestorer>()?;
    module.add_class::<sources::PyEtcdRestorer>()?;
    module.add_class::<sources::PyRedisRestorer>()?;
    module.add_class::<sources::PyPostgresRestorer>()?;
    module.add_class::<sources::PyMariadbRestorer>()?;
    module.add_class::<sources::PyCassandraRestorer>()?;
    module.add_class::<types::PyBackup>()?;
    module.add_class::<types::PyBackupStats>()?;
    module.add_class::<types::PyBackupSummary>()?;
    module.add_class::<types::PyRestoreSummary>()?;
    module.add_class::<types::PyStoreRestore>()?;
    module.add_class::<types::PyVerifyReport>()?;
    module.add_class::<types::PyProblem>()?;
    module.add_class::<types::PyForgetDecision>()?;
    module.add_class::<types::PyPruneReport>()?;
    module.add_class::<types::PyEntry>()?;
    module.add_class::<types::PyProgress>()?;
    module.add_class::<types::PyItemFailure>()?;

    module.add_class::<schedule::PyScheduler>()?;
    module.add_class::<schedule::PyJobStatus>()?;
    module.add_class::<schedule::PyScheduleEvent>()?;
    Ok(())
}
