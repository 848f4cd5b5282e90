//! Exporting one stored file as a plain object, and presigned GET URLs for
//! it: how a hosted control plane is handed a snapshot to restore from.

use std::sync::Arc;
use std::time::Duration;

use ::object_store::path::Path;
use ::object_store::signer::{Method, Signer};
use ::object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use backup_core::{Error, FileReader, Result};

use super::cloud::{build_signing_store, StoreUrl};
use super::error::sink_error;
use super::ObjectStoreOptions;

/// Parts uploaded at once.
const PARTS_IN_FLIGHT: usize = 4;

/// A plain object named by a URL (`s3://bucket/path/to/object`,
/// `az://container/...`, `gs://bucket/...`), written from a stored file
/// and signed for download.
///
/// # Examples
///
/// ```
/// use backup_sinks::object_store::{ExportTarget, ObjectStoreOptions};
/// let options = ObjectStoreOptions {
///     endpoint: Some("http://127.0.0.1:9000".into()),
///     allow_http: Some(true),
///     access_key_id: Some("key".into()),
///     secret_access_key: Some("secret".into()),
///     region: Some("us-east-1".into()),
///     ..Default::default()
/// };
/// let target = ExportTarget::from_url("s3://snapshots/etcd/2026-12-07.db", &options)?;
/// assert_eq!(target.location(), "s3://snapshots/etcd/2026-12-07.db");
/// assert!(ExportTarget::from_url("s3://snapshots", &options).is_err());
/// # Ok::<(), backup_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct ExportTarget {
    store: Arc<dyn ObjectStore>,
    signer: Arc<dyn Signer>,
    path: Path,
    location: String,
}

impl ExportTarget {
    /// The object named by `url`, reached with `options` and the
    /// environment (as a repository URL is).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a URL that names no object or cloud
    /// settings that are refused.
    pub fn from_url(url: &str, options: &ObjectStoreOptions) -> Result<ExportTarget> {
        options.validate()?;
        let parsed = StoreUrl::parse(url)?;
        if parsed.prefix.is_empty() || parsed.prefix.ends_with('/') {
            return Err(Error::InvalidArgument(format!(
                "{} names a bucket or a folder, not an object: add the object's name",
                parsed.location()
            )));
        }
        let path = Path::parse(&parsed.prefix)
            .map_err(|error| Error::InvalidArgument(format!("{}: {error}", parsed.location())))?;
        let (store, signer) = build_signing_store(&parsed, options)?;
        Ok(ExportTarget {
            store,
            signer,
            path,
            location: parsed.location(),
        })
    }

    /// The object's URL, as given.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// Writes the file as the object (replacing one of the same name), in
    /// parts as it is read; returns its size. The object appears only when
    /// every part is stored.
    ///
    /// # Errors
    ///
    /// Storage errors, and the reader's errors (a damaged chunk): the
    /// upload is then aborted and no object appears.
    pub async fn write(&self, mut reader: FileReader) -> Result<u64> {
        let key = self.path.to_string();
        let upload = self
            .store
            .put_multipart(&self.path)
            .await
            .map_err(|error| sink_error("put", &key, error))?;
        let mut writer = WriteMultipart::new(upload);
        let mut written = 0u64;
        let copied: Result<()> = async {
            while let Some(chunk) = reader.next_chunk().await? {
                writer
                    .wait_for_capacity(PARTS_IN_FLIGHT)
                    .await
                    .map_err(|error| sink_error("put", &key, error))?;
                written += chunk.len() as u64;
                writer.put(chunk.into());
            }
            Ok(())
        }
        .await;
        match copied {
            Ok(()) => {
                writer
                    .finish()
                    .await
                    .map_err(|error| sink_error("put", &key, error))?;
                Ok(written)
            }
            Err(error) => {
                let _ = writer.abort().await;
                Err(error)
            }
        }
    }

    /// A URL that downloads the object with a plain HTTP GET until
    /// `expires_in` has passed (S3 allows at most 7 days).
    ///
    /// # Errors
    ///
    /// When the store cannot sign (no credentials that can sign, such as
    /// an instance role on some clouds).
    pub async fn presign_get(&self, expires_in: Duration) -> Result<String> {
        self.signer
            .signed_url(Method::GET, &self.path, expires_in)
            .await
            .map(|url| url.to_string())
            .map_err(|error| sink_error("presign", self.path.as_ref(), error))
    }
}
