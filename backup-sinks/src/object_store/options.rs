//! [`ObjectStoreOptions`]: how to reach a cloud store and how the sink uses it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use backup_core::{Error, Result};

/// Default for [`ObjectStoreOptions::max_concurrency`].
pub const DEFAULT_MAX_CONCURRENCY: usize = 8;
/// Default for [`ObjectStoreOptions::multipart_threshold`]: 16 MiB.
pub const DEFAULT_MULTIPART_THRESHOLD: u64 = 16 * 1024 * 1024;
/// Default for [`ObjectStoreOptions::multipart_part_size`]: 8 MiB.
pub const DEFAULT_PART_SIZE: u64 = 8 * 1024 * 1024;
/// Smallest allowed [`ObjectStoreOptions::multipart_part_size`]: 5 MiB, the
/// smallest part S3 and GCS accept (except for the last one).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;
/// Largest allowed [`ObjectStoreOptions::multipart_part_size`]: 4000 MiB, the
/// block limit of Azure (S3 and GCS allow 5 GiB).
pub const MAX_PART_SIZE: u64 = 4000 * 1024 * 1024;
/// Default for [`ObjectStoreOptions::max_retries`].
pub const DEFAULT_MAX_RETRIES: usize = 10;
/// Default for [`ObjectStoreOptions::retry_initial_backoff`].
pub const DEFAULT_INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Default for [`ObjectStoreOptions::retry_max_backoff`].
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(15);
/// Default for [`ObjectStoreOptions::retry_timeout`].
pub const DEFAULT_RETRY_TIMEOUT: Duration = Duration::from_secs(3 * 60);

/// Shown instead of a secret by the `Debug` output of options and sinks.
pub(super) const REDACTED: &str = "<redacted>";

/// How to reach an object store and how the sink uses it.
///
/// Every field has a default (`ObjectStoreOptions::default()`), so set only
/// what differs:
///
/// ```
/// use backup_sinks::object_store::ObjectStoreOptions;
///
/// let options = ObjectStoreOptions {
///     endpoint: Some("http://127.0.0.1:9000".into()),
///     allow_http: Some(true),
///     region: Some("us-east-1".into()),
///     ..Default::default()
/// };
/// assert_eq!(options.max_concurrency, 8);
/// // Secrets never show up in Debug output.
/// let with_secret = ObjectStoreOptions { secret_access_key: Some("hunter2".into()), ..options };
/// assert!(!format!("{with_secret:?}").contains("hunter2"));
/// ```
///
/// # Connection fields and the environment
///
/// [`ObjectStoreSink::from_url`](super::ObjectStoreSink::from_url) first
/// reads each cloud's usual environment variables (`AWS_*` through
/// object_store's `AmazonS3Builder::from_env`, `AZURE_*` through
/// `MicrosoftAzureBuilder::from_env`, `GOOGLE_*` through
/// `GoogleCloudStorageBuilder::from_env`), then applies every field set
/// here, so an explicit option wins over the environment. Fields for another
/// cloud than the URL's are ignored.
///
/// # Sink fields
///
/// `max_concurrency`, `multipart_threshold`, `multipart_part_size` and
/// `allow_non_atomic_create` shape how the sink uses any store, including
/// one given to
/// [`ObjectStoreSink::with_options`](super::ObjectStoreSink::with_options).
/// The retry fields configure the cloud stores' HTTP clients (object_store's
/// `RetryConfig`: exponential backoff with jitter).
#[derive(Clone)]
pub struct ObjectStoreOptions {
    /// Service endpoint, for S3-compatible servers (MinIO, s3s-fs, moto, R2),
    /// an Azure blob endpoint (`https://account.blob.core.windows.net`, or an
    /// Azurite address with `azure_use_emulator`), or a GCS base URL.
    /// Default: the cloud's own endpoint (or `AWS_ENDPOINT` and the like).
    pub endpoint: Option<String>,
    /// S3 region. Default: `AWS_REGION`/`AWS_DEFAULT_REGION`, else `us-east-1`.
    pub region: Option<String>,
    /// Allow plain `http://` endpoints. Default: `AWS_ALLOW_HTTP` or
    /// `AZURE_ALLOW_HTTP`, else `false` (HTTPS only).
    pub allow_http: Option<bool>,
    /// S3 access key id. Default: `AWS_ACCESS_KEY_ID`, else the instance's,
    /// container's or web identity's credentials.
    pub access_key_id: Option<String>,
    /// S3 secret access key. Default: `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<String>,
    /// S3 session token of temporary credentials. Default:
    /// `AWS_SESSION_TOKEN`.
    pub session_token: Option<String>,
    /// S3 server-side encryption with this KMS key (SSE-KMS: the
    /// `x-amz-server-side-encryption: aws:kms` header with this key id).
    /// Default: `AWS_SSE_KMS_KEY_ID` with `AWS_SERVER_SIDE_ENCRYPTION=aws:kms`,
    /// else the bucket's default encryption.
    pub sse_kms_key_id: Option<String>,
    /// S3 server-side encryption with a customer-provided key (SSE-C): the
    /// base64 encoding of a 256-bit key, sent with every request. Every
    /// read needs the same key. Cannot be combined with `sse_kms_key_id`.
    pub sse_customer_key_base64: Option<String>,
    /// How S3 create-only puts are made (object_store's
    /// `S3ConditionalPut`): `"etag"` (the default: `If-None-Match: *`) or
    /// `"disabled"` for servers without conditional writes (create-only puts
    /// then fail unless `allow_non_atomic_create`).
    pub s3_conditional_put: Option<String>,
    /// How S3 copies without overwriting, used by create-only puts above the
    /// multipart threshold (object_store's `S3CopyIfNotExists`). Default
    /// `"multipart"`: a one-part multipart copy completed with
    /// `If-None-Match: *`, which AWS S3, s3s-fs and moto support. Cloudflare R2
    /// wants `"header: cf-copy-destination-if-none-match: *"`.
    pub s3_copy_if_not_exists: Option<String>,
    /// Azure storage account name. Default: `AZURE_STORAGE_ACCOUNT_NAME`.
    pub azure_account: Option<String>,
    /// Azure storage account key (base64). Default:
    /// `AZURE_STORAGE_ACCOUNT_KEY`, else other Azure credentials
    /// (`AZURE_CLIENT_ID`..., managed identity).
    pub azure_access_key: Option<String>,
    /// Talk to the Azurite emulator. With `endpoint` set, requests go to
    /// `<endpoint>/<account>/<container>` over HTTP, the account defaulting to
    /// Azurite's `devstoreaccount1` and the key to its well-known key;
    /// without, to `AZURITE_BLOB_STORAGE_URL` or `http://127.0.0.1:10000`.
    pub azure_use_emulator: bool,
    /// Path of a GCS service account JSON key file. Default:
    /// `GOOGLE_SERVICE_ACCOUNT` / `GOOGLE_SERVICE_ACCOUNT_PATH`, else
    /// `GOOGLE_APPLICATION_CREDENTIALS` or the instance's credentials.
    pub gcs_service_account_path: Option<PathBuf>,
    /// Most requests in flight at once through one sink (each `put` part,
    /// `get`, `head`, `list`, `delete` holds one). Default 8.
    pub max_concurrency: usize,
    /// Retries of a failed request (5xx, connection errors, timeouts of safe
    /// requests, interrupted or timed-out deletes) before the error reaches
    /// the caller; 0 disables retries.
    /// Default 10.
    pub max_retries: usize,
    /// Wait before the first retry; doubled (with jitter) on each next one.
    /// Default 100 ms.
    pub retry_initial_backoff: Duration,
    /// Longest wait between two retries. Default 15 s.
    pub retry_max_backoff: Duration,
    /// No retry starts later than this after the first attempt. Default 3 min.
    pub retry_timeout: Duration,
    /// Objects larger than this many bytes are uploaded in parts (multipart
    /// upload, block list, resumable upload). Default 16 MiB.
    pub multipart_threshold: u64,
    /// Size of each part of a multipart upload, at least 5 MiB. Raised
    /// automatically when an object would need more than 10,000 parts.
    /// Default 8 MiB.
    pub multipart_part_size: u64,
    /// For stores that cannot create objects conditionally (S3-compatible
    /// servers without `If-None-Match`, configured with
    /// `s3_conditional_put: "disabled"`): emulate create-only puts by a `head`
    /// followed by a put. **Not atomic**: two writers racing for one key can
    /// both succeed, the later one replacing the earlier object. Default
    /// `false`: such puts fail.
    pub allow_non_atomic_create: bool,
}

impl Default for ObjectStoreOptions {
    fn default() -> Self {
        Self {
            endpoint: None,
            region: None,
            allow_http: None,
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
            sse_kms_key_id: None,
            sse_customer_key_base64: None,
            s3_conditional_put: None,
            s3_copy_if_not_exists: None,
            azure_account: None,
            azure_access_key: None,
            azure_use_emulator: false,
            gcs_service_account_path: None,
            max_concurrency: DEFAULT_MAX_CONCURRENCY,
            max_retries: DEFAULT_MAX_RETRIES,
            retry_initial_backoff: DEFAULT_INITIAL_BACKOFF,
            retry_max_backoff: DEFAULT_MAX_BACKOFF,
            retry_timeout: DEFAULT_RETRY_TIMEOUT,
            multipart_threshold: DEFAULT_MULTIPART_THRESHOLD,
            multipart_part_size: DEFAULT_PART_SIZE,
            allow_non_atomic_create: false,
        }
    }
}

impl fmt::Debug for ObjectStoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Written by hand so that no secret is ever printed: credentials show
        // only whether they are set.
        let secret = |value: &Option<String>| value.as_ref().map(|_| REDACTED);
        f.debug_struct("ObjectStoreOptions")
            .field(
                "endpoint",
                &self.endpoint.as_deref().map(redact_url_credentials),
            )
            .field("region", &self.region)
            .field("allow_http", &self.allow_http)
            .field("access_key_id", &secret(&self.access_key_id))
            .field("secret_access_key", &secret(&self.secret_access_key))
            .field("session_token", &secret(&self.session_token))
            .field("sse_kms_key_id", &self.sse_kms_key_id)
            .field(
                "sse_customer_key_base64",
                &secret(&self.sse_customer_key_base64),
            )
            .field("s3_conditional_put", &self.s3_conditional_put)
            .field("s3_copy_if_not_exists", &self.s3_copy_if_not_exists)
            .field("azure_account", &self.azure_account)
            .field("azure_access_key", &secret(&self.azure_access_key))
            .field("azure_use_emulator", &self.azure_use_emulator)
            .field("gcs_service_account_path", &self.gcs_service_account_path)
            .field("max_concurrency", &self.max_concurrency)
            .field("max_retries", &self.max_retries)
            .field("retry_initial_backoff", &self.retry_initial_backoff)
            .field("retry_max_backoff", &self.retry_max_backoff)
            .field("retry_timeout", &self.retry_timeout)
            .field("multipart_threshold", &self.multipart_threshold)
            .field("multipart_part_size", &self.multipart_part_size)
            .field("allow_non_atomic_create", &self.allow_non_atomic_create)
            .finish()
    }
}

impl ObjectStoreOptions {
    /// Checks the sink fields.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] naming the field when `max_concurrency` is
    /// 0, `multipart_threshold` is 0, `multipart_part_size` is outside
    /// [`MIN_PART_SIZE`]..=[`MAX_PART_SIZE`], the backoffs are inverted, or
    /// both kinds of S3 server-side encryption are set.
    pub fn validate(&self) -> Result<()> {
        if self.max_concurrency == 0 {
            return Err(invalid("max_concurrency must be at least 1"));
        }
        if self.multipart_threshold == 0 {
            return Err(invalid("multipart_threshold must be at least 1 byte"));
        }
        if !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&self.multipart_part_size) {
            return Err(invalid(format!(
                "multipart_part_size must be between {MIN_PART_SIZE} (5 MiB) and {MAX_PART_SIZE} bytes, not {}",
                self.multipart_part_size
            )));
        }
        if self.retry_initial_backoff > self.retry_max_backoff {
            return Err(invalid(format!(
                "retry_initial_backoff ({:?}) is longer than retry_max_backoff ({:?})",
                self.retry_initial_backoff, self.retry_max_backoff
            )));
        }
        if self.sse_kms_key_id.is_some() && self.sse_customer_key_base64.is_some() {
            return Err(invalid(
                "sse_kms_key_id and sse_customer_key_base64 cannot both be set: choose SSE-KMS or SSE-C",
            ));
        }
        Ok(())
    }

    /// object_store's retry configuration built from the retry fields.
    #[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
    pub(super) fn retry_config(&self) -> ::object_store::RetryConfig {
        ::object_store::RetryConfig {
            backoff: ::object_store::BackoffConfig {
                init_backoff: self.retry_initial_backoff,
                max_backoff: self.retry_max_backoff,
                base: 2.0,
            },
            max_retries: self.max_retries,
            retry_timeout: self.retry_timeout,
        }
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidArgument(format!("object store options: {}", message.into()))
}

/// Replaces the user information of a URL (`https://user:pass@host`), which
/// may hold a password, by [`REDACTED`].
pub(super) fn redact_url_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{REDACTED}@{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let options = ObjectStoreOptions::default();
        options.validate().unwrap();
        assert_eq!(options.multipart_threshold, 16 * 1024 * 1024);
        assert_eq!(options.max_concurrency, 8);
    }

    #[test]
    fn invalid_values_are_named() {
        let cases = [
            ObjectStoreOptions {
                max_concurrency: 0,
                ..Default::default()
            },
            ObjectStoreOptions {
                multipart_part_size: 1024,
                ..Default::default()
            },
            ObjectStoreOptions {
                multipart_threshold: 0,
                ..Default::default()
            },
            ObjectStoreOptions {
                retry_initial_backoff: Duration::from_secs(60),
                ..Default::default()
            },
            ObjectStoreOptions {
                sse_kms_key_id: Some("key".into()),
                sse_customer_key_base64: Some("c2VjcmV0".into()),
                ..Default::default()
            },
        ];
        for (options, field) in cases.iter().zip([
            "max_concurrency",
            "multipart_part_size",
            "multipart_threshold",
            "retry_initial_backoff",
            "sse_kms_key_id",
        ]) {
            let error = options.validate().unwrap_err();
            assert!(error.to_string().contains(field), "{field}: {error}");
            // The message never echoes the customer key.
            assert!(!error.to_string().contains("c2VjcmV0"));
        }
    }

    #[test]
    fn url_credentials_are_redacted() {
        assert_eq!(
            redact_url_credentials("https://user:pass@example.com/path?q=1"),
            "https://<redacted>@example.com/path?q=1"
        );
        assert_eq!(
            redact_url_credentials("http://127.0.0.1:9000"),
            "http://127.0.0.1:9000"
        );
        assert_eq!(redact_url_credentials("http://host/a@b"), "http://host/a@b");
        assert_eq!(redact_url_credentials("not a url"), "not a url");
    }
}
