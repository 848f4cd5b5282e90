//! Opening the repository a command names: its location turned into a sink
//! (local, object store or SFTP), then opened with the password.

use std::path::PathBuf;
use std::sync::Arc;

use backup_core::{Error, LocalSink, Repository, Sink};

use crate::cli::{Common, StoreArgs};
use crate::password::{password, read_secret_file};

/// Opens the repository of `--repo` with the password.
pub(crate) async fn open(common: &Common) -> Result<Repository, Error> {
    let sink = sink_for(common).await?;
    let password = password(common)?;
    Repository::open(sink, password.as_ref().map(|p| p.as_slice())).await
}

/// The sink of `--repo` (or `BACKUP_REPO`).
pub(crate) async fn sink_for(common: &Common) -> Result<Arc<dyn Sink>, Error> {
    let location = common.repo.as_deref().ok_or_else(|| {
        Error::InvalidArgument("no repository given: use --repo or BACKUP_REPO".into())
    })?;
    open_sink(location, &common.store).await
}

/// Opens the sink for a repository location: a path, file://, s3://, az://,
/// azure://, gs:// or sftp://.
pub(crate) async fn open_sink(location: &str, store: &StoreArgs) -> Result<Arc<dyn Sink>, Error> {
    let scheme = location.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        None => Ok(Arc::new(LocalSink::new(PathBuf::from(location)))),
        Some("file") => Ok(Arc::new(LocalSink::new(PathBuf::from(&location["file://".len()..])))),
        Some("s3" | "az" | "azure" | "gs") => {
            let options = object_store_options(store)?;
            Ok(Arc::new(backup_sinks::ObjectStoreSink::from_url(location, &options)?))
        }
        Some("sftp") => {
            let mut options = backup_sinks::sftp::SftpOptions::default();
            if let Some(key) = &store.ssh_key {
                options = options.with_private_key(key.clone());
            }
            if let Some(path) = &store.ssh_key_passphrase_file {
                options = options.with_passphrase(read_secret_file(path, "cannot read the SSH key passphrase file")?);
            }
            if let Some(path) = &store.known_hosts {
                options = options.with_known_hosts(path.clone());
            }
            if let Some(fingerprint) = &store.host_key_fingerprint {
                options = options.with_host_key_fingerprint(fingerprint.clone());
            }
            Ok(Arc::new(backup_sinks::sftp::SftpSink::connect(location, options).await?))
        }
        Some(other) => Err(Error::InvalidArgument(format!(
            "unknown repository scheme {other}://: use a path, file://, s3://, az://, gs:// or sftp://"
        ))),
    }
}

/// The object store settings of the command line (and environment).
pub(crate) fn object_store_options(
    store: &StoreArgs,
) -> Result<backup_sinks::ObjectStoreOptions, Error> {
    let mut options = backup_sinks::ObjectStoreOptions {
        endpoint: store.endpoint.clone(),
        region: store.region.clone(),
        allow_http: store.allow_http.then_some(true),
        sse_kms_key_id: store.sse_kms_key_id.clone(),
        azure_use_emulator: store.azure_emulator,
        ..Default::default()
    };
    if let Some(path) = &store.sse_c_key_file {
        options.sse_customer_key_base64 =
            Some(read_secret_file(path, "cannot read the SSE-C key file")?);
    }
    Ok(options)
}

/// The directory of a local repository location (a path or file://), which
/// `init` creates; `None` for a remote one.
pub(crate) fn local_root(location: &str) -> Option<&str> {
    match location.split_once("://") {
        None => Some(location),
        Some(("file", rest)) => Some(rest),
        Some(_) => None,
    }
}
