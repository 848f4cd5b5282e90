//! Opening the repository a command names: its location turned into a sink
//! (local, object store or SFTP), limited to the bandwidth of
//! `--limit-upload` and `--limit-download`, then opened with the password.

use std::sync::Arc;

use backup_core::{Error, Repository, Sink, ThrottleLimits, ThrottleSink};
use backup_sinks::StorageOptions;

use crate::cli::{Common, LimitArgs, StoreArgs};
use crate::password::password;

/// Opens the repository of `--repo` with the password.
pub(crate) async fn open(common: &Common) -> Result<Repository, Error> {
    let sink = sink_for(common).await?;
    let password = password(common)?;
    Repository::open(sink, password.as_ref().map(|p| p.as_slice())).await
}

/// The sink of `--repo` (or `BACKUP_REPO`).
pub(crate) async fn sink_for(common: &Common) -> Result<Arc<dyn Sink>, Error> {
    open_sink(repo_location(common)?, &common.store).await
}

/// The sink of `--repo` for `init`: its directory is created when missing
/// (a local one, or the base directory on an SFTP server).
pub(crate) async fn create_sink_for(common: &Common) -> Result<Arc<dyn Sink>, Error> {
    let location = repo_location(common)?;
    let sink = backup_sinks::create_sink(location, &storage_options(&common.store)).await?;
    Ok(ThrottleSink::wrap(
        sink,
        throttle_limits(&common.store.limits),
    ))
}

/// `--repo` (or `BACKUP_REPO`).
fn repo_location(common: &Common) -> Result<&str, Error> {
    common.repo.as_deref().ok_or_else(|| {
        Error::InvalidArgument("no repository given: use --repo or BACKUP_REPO".into())
    })
}

/// Opens the sink for a repository location: a path, file://, s3://, az://,
/// azure://, gs:// or sftp://, within the bandwidth limits.
pub(crate) async fn open_sink(location: &str, store: &StoreArgs) -> Result<Arc<dyn Sink>, Error> {
    let sink = backup_sinks::open_sink(location, &storage_options(store)).await?;
    Ok(ThrottleSink::wrap(sink, throttle_limits(&store.limits)))
}

/// The limits of `--limit-upload` and `--limit-download`, given in KiB/s
/// as restic takes them.
fn throttle_limits(limits: &LimitArgs) -> ThrottleLimits {
    let bytes = |kib: Option<u64>| kib.unwrap_or(0).saturating_mul(1024);
    ThrottleLimits::default()
        .with_upload(bytes(limits.limit_upload))
        .with_download(bytes(limits.limit_download))
}

/// The object store settings of the command line (and environment).
pub(crate) fn object_store_options(
    store: &StoreArgs,
) -> Result<backup_sinks::ObjectStoreOptions, Error> {
    storage_options(store).object_store_options()
}

/// The storage options of the command line (clap has already applied the
/// environment's defaults).
fn storage_options(store: &StoreArgs) -> StorageOptions {
    let mut options = StorageOptions::default();
    options.endpoint = store.endpoint.clone();
    options.region = store.region.clone();
    options.allow_http = store.allow_http;
    options.sse_kms_key_id = store.sse_kms_key_id.clone();
    options.sse_c_key_file = store.sse_c_key_file.clone();
    options.azure_emulator = store.azure_emulator;
    options.ssh_key = store.ssh_key.clone();
    options.ssh_key_passphrase_file = store.ssh_key_passphrase_file.clone();
    options.known_hosts = store.known_hosts.clone();
    options.host_key_fingerprint = store.host_key_fingerprint.clone();
    options
}
