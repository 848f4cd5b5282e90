//! Uploads: single requests, multipart uploads with their parts in
//! parallel, and create-only puts (conditional, or through a temporary
//! object and a conditional copy).

use std::sync::atomic::Ordering;

use ::object_store::path::Path;
use ::object_store::{
    CopyMode, CopyOptions, ObjectStoreExt, PutMultipartOptions, PutOptions, PutPayload,
};
use backup_core::sink_support::temp_name;
use backup_core::{Error, Result};
use bytes::Bytes;
use tokio::task::JoinSet;

use super::error::{is_unsupported, sink_error};
use super::ObjectStoreSink;

/// Most parts S3 and GCS accept in one multipart upload.
pub(super) const MAX_PARTS: u64 = 10_000;

impl ObjectStoreSink {
    /// One request with the whole object.
    pub(super) async fn put_single(
        &self,
        key: &str,
        path: &Path,
        data: Bytes,
        mode: ::object_store::PutMode,
    ) -> Result<()> {
        let create = matches!(mode, ::object_store::PutMode::Create);
        let result = {
            let _permit = self.permit("put", key).await?;
            self.store
                .put_opts(path, PutPayload::from_bytes(data), PutOptions::from(mode))
                .await
        };
        match result {
            Ok(_) => {
                self.stats.single_puts.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(
                ::object_store::Error::AlreadyExists { .. }
                | ::object_store::Error::Precondition { .. },
            ) if create => Err(Error::AlreadyExists {
                key: key.to_owned(),
            }),
            Err(error) => Err(sink_error("put", key, error)),
        }
    }

    /// The part size for an object of `len` bytes: the configured one, raised
    /// to stay within the stores' part count limit.
    pub(super) fn part_size_for(&self, len: u64) -> u64 {
        const MIB: u64 = 1024 * 1024;
        let needed = len.div_ceil(MAX_PARTS).div_ceil(MIB) * MIB;
        self.part_size.max(needed)
    }

    /// Uploads `data` to `path` in parts, in parallel, then completes the
    /// upload (or aborts it on failure).
    pub(super) async fn put_multipart(&self, key: &str, path: &Path, data: Bytes) -> Result<()> {
        let mut upload = {
            let _permit = self.permit("put", key).await?;
            self.store
                .put_multipart_opts(path, PutMultipartOptions::default())
                .await
                .map_err(|error| sink_error("put", key, error))?
        };
        let result = self.upload_parts(key, upload.as_mut(), &data).await;
        let result = match result {
            Ok(()) => {
                let _permit = self.permit("put", key).await?;
                upload
                    .complete()
                    .await
                    .map(drop)
                    .map_err(|error| sink_error("put", key, error))
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => {
                self.stats.multipart_uploads.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(error) => {
                if let Err(abort_error) = upload.abort().await {
                    tracing::warn!(key, %abort_error, "could not abort a failed multipart upload");
                }
                Err(error)
            }
        }
    }

    /// Sends the parts of `data`, each holding a request slot while it runs.
    async fn upload_parts(
        &self,
        key: &str,
        upload: &mut dyn ::object_store::MultipartUpload,
        data: &Bytes,
    ) -> Result<()> {
        let len = data.len() as u64;
        let part_size = self.part_size_for(len);
        // Dropping the set (on error or cancellation) aborts the parts still
        // running.
        let mut parts = JoinSet::new();
        let mut start = 0u64;
        while start < len {
            let end = (start + part_size).min(len);
            let permit = self.permit("put", key).await?;
            // Stop early when a part failed meanwhile.
            while let Some(done) = parts.try_join_next() {
                part_result(key, done)?;
            }
            // In range: `start < end <= len == data.len()`.
            let payload = PutPayload::from_bytes(data.slice(start as usize..end as usize));
            let part = upload.put_part(payload);
            parts.spawn(async move {
                let result = part.await;
                drop(permit);
                result
            });
            self.stats.multipart_parts.fetch_add(1, Ordering::Relaxed);
            start = end;
        }
        while let Some(done) = parts.join_next().await {
            part_result(key, done)?;
        }
        Ok(())
    }

    /// A create-only put above the multipart threshold: upload in parts to a
    /// temporary key, copy it to `key` unless `key` exists, delete the
    /// temporary object.
    pub(super) async fn create_large(&self, key: &str, path: &Path, data: Bytes) -> Result<()> {
        if !self.conditional_copy.load(Ordering::Relaxed) {
            return self.create_single(key, path, data).await;
        }
        let temp_key = temp_key_beside(key);
        let temp_path = self.store_path(&temp_key)?;
        self.put_multipart(key, &temp_path, data.clone()).await?;
        let copied = {
            let _permit = self.permit("put", key).await?;
            self.store
                .copy_opts(
                    &temp_path,
                    path,
                    CopyOptions::new().with_mode(CopyMode::Create),
                )
                .await
        };
        self.delete_temp(key, &temp_path).await;
        match copied {
            Ok(()) => {
                self.stats
                    .conditional_copies
                    .fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(
                ::object_store::Error::AlreadyExists { .. }
                | ::object_store::Error::Precondition { .. },
            ) => Err(Error::AlreadyExists {
                key: key.to_owned(),
            }),
            Err(
                error @ (::object_store::Error::NotSupported { .. }
                | ::object_store::Error::NotImplemented { .. }),
            ) => {
                tracing::info!(
                    location = %self.location, %error,
                    "the store cannot copy without overwriting: large create-only puts are sent in one request"
                );
                self.conditional_copy.store(false, Ordering::Relaxed);
                self.create_single(key, path, data).await
            }
            Err(error) => Err(sink_error("put", key, error)),
        }
    }

    /// A create-only put in one request, or the non-atomic emulation when
    /// the store has no conditional put and the options allow it.
    pub(super) async fn create_single(&self, key: &str, path: &Path, data: Bytes) -> Result<()> {
        let result = self
            .put_single(key, path, data.clone(), ::object_store::PutMode::Create)
            .await;
        match result {
            Err(Error::Sink { source, .. })
                if self.allow_non_atomic_create && is_unsupported(source.as_ref()) =>
            {
                self.create_by_head_then_put(key, path, data).await
            }
            other => other,
        }
    }

    /// Create-only put emulated by `head`, then an overwriting put: NOT
    /// atomic, used only with `allow_non_atomic_create`.
    async fn create_by_head_then_put(&self, key: &str, path: &Path, data: Bytes) -> Result<()> {
        match self.head_path(key, path).await {
            Ok(_) => Err(Error::AlreadyExists {
                key: key.to_owned(),
            }),
            Err(Error::NotFound { .. }) => {
                if data.len() as u64 > self.multipart_threshold {
                    self.put_multipart(key, path, data).await
                } else {
                    self.put_single(key, path, data, ::object_store::PutMode::Overwrite)
                        .await
                }
            }
            Err(error) => Err(error),
        }
    }

    /// Deletes a temporary object, logging (not failing) when it cannot.
    async fn delete_temp(&self, key: &str, temp_path: &Path) {
        let result = match self.permit("delete", key).await {
            Ok(_permit) => self.store.delete(temp_path).await,
            Err(_) => return,
        };
        match result {
            Ok(()) | Err(::object_store::Error::NotFound { .. }) => {}
            Err(error) => tracing::warn!(
                temporary_object = %temp_path, %error,
                "could not delete the temporary object of a create-only put; `list` hides it"
            ),
        }
    }
}

/// A fresh temporary key in the same "directory" as `key`.
pub(super) fn temp_key_beside(key: &str) -> String {
    let name = temp_name();
    match key.rsplit_once('/') {
        Some((directory, _)) => format!("{directory}/{name}"),
        None => name,
    }
}

/// The outcome of one part upload task.
fn part_result(
    key: &str,
    done: std::result::Result<::object_store::Result<()>, tokio::task::JoinError>,
) -> Result<()> {
    match done {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(sink_error("put", key, error)),
        Err(error) => Err(Error::Sink {
            operation: "put",
            key: key.to_owned(),
            temporary: false,
            source: Box::new(error),
        }),
    }
}
