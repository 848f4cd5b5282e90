//! Cloud locations: parsing `s3://`, `az://`/`azure://` and `gs://` URLs and
//! building the matching object_store client from the environment and
//! [`ObjectStoreOptions`].

use std::sync::Arc;

use ::object_store::ObjectStore;
use backup_core::{Error, Result};

use super::ObjectStoreOptions;

/// Azurite's development account, used with `azure_use_emulator`.
#[cfg(feature = "azure")]
pub(super) const AZURITE_ACCOUNT: &str = "devstoreaccount1";
/// Azurite's published development key (not a secret: every Azurite
/// installation uses it).
#[cfg(feature = "azure")]
pub(super) const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Which cloud a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cloud {
    /// `s3://`
    S3,
    /// `az://` or `azure://`
    Azure,
    /// `gs://`
    Gcs,
}

/// A parsed object store URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct StoreUrl {
    pub(super) cloud: Cloud,
    /// The bucket or container.
    pub(super) bucket: String,
    /// Key prefix, without leading or trailing `/` (checked later).
    pub(super) prefix: String,
}

impl StoreUrl {
    /// Parses `scheme://bucket[/prefix]`.
    pub(super) fn parse(url: &str) -> Result<Self> {
        let invalid = |why: &str| {
            Error::InvalidArgument(format!(
                "invalid object store URL {:?}: {why}",
                super::options::redact_url_credentials(url)
            ))
        };
        let (scheme, rest) = url.split_once("://").ok_or_else(|| {
            invalid("expected s3://bucket/prefix, az://container/prefix or gs://bucket/prefix")
        })?;
        let cloud = match scheme.to_ascii_lowercase().as_str() {
            "s3" => Cloud::S3,
            "az" | "azure" => Cloud::Azure,
            "gs" => Cloud::Gcs,
            _ => {
                return Err(invalid(
                    "unknown scheme: use s3://, az:// (or azure://) or gs://",
                ))
            }
        };
        if rest.contains(['?', '#']) {
            return Err(invalid(
                "query strings and fragments are not supported: pass settings in ObjectStoreOptions or the environment",
            ));
        }
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(invalid("the bucket (or container) name is missing"));
        }
        if bucket.contains('@') {
            return Err(invalid(
                "credentials and account names in the URL are not supported: pass them in ObjectStoreOptions or the environment",
            ));
        }
        Ok(Self {
            cloud,
            bucket: bucket.to_owned(),
            prefix: prefix.trim_matches('/').to_owned(),
        })
    }

    /// The URL in canonical form, for [`Sink::location`](backup_core::Sink::location).
    pub(super) fn location(&self) -> String {
        let scheme = match self.cloud {
            Cloud::S3 => "s3",
            Cloud::Azure => "az",
            Cloud::Gcs => "gs",
        };
        if self.prefix.is_empty() {
            format!("{scheme}://{}", self.bucket)
        } else {
            format!("{scheme}://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// Builds the client for `url`'s cloud, with its URL signer.
pub(super) fn build_signing_store(
    url: &StoreUrl,
    options: &ObjectStoreOptions,
) -> Result<(
    Arc<dyn ObjectStore>,
    Arc<dyn ::object_store::signer::Signer>,
)> {
    match url.cloud {
        #[cfg(feature = "s3")]
        Cloud::S3 => {
            let store = Arc::new(build_s3(url, options)?);
            Ok((store.clone(), store))
        }
        #[cfg(feature = "azure")]
        Cloud::Azure => {
            let store = Arc::new(build_azure(url, options)?);
            Ok((store.clone(), store))
        }
        #[cfg(feature = "gcs")]
        Cloud::Gcs => {
            let store = Arc::new(build_gcs(url, options)?);
            Ok((store.clone(), store))
        }
        #[allow(unreachable_patterns)]
        _ => match build_store(url, options) {
            Err(error) => Err(error),
            Ok(_) => Err(Error::InvalidArgument(format!(
                "{} cannot sign URLs",
                url.location()
            ))),
        },
    }
}

/// Builds the client for `url`'s cloud.
pub(super) fn build_store(
    url: &StoreUrl,
    options: &ObjectStoreOptions,
) -> Result<Arc<dyn ObjectStore>> {
    match url.cloud {
        #[cfg(feature = "s3")]
        Cloud::S3 => Ok(Arc::new(build_s3(url, options)?)),
        #[cfg(feature = "azure")]
        Cloud::Azure => Ok(Arc::new(build_azure(url, options)?)),
        #[cfg(feature = "gcs")]
        Cloud::Gcs => Ok(Arc::new(build_gcs(url, options)?)),
        #[allow(unreachable_patterns)]
        cloud => {
            let feature = match cloud {
                Cloud::S3 => "s3",
                Cloud::Azure => "azure",
                Cloud::Gcs => "gcs",
            };
            let _ = options;
            Err(Error::InvalidArgument(format!(
                "{} needs backup-sinks to be built with the `{feature}` cargo feature",
                url.location()
            )))
        }
    }
}

/// Turns a builder's error into an [`Error::InvalidArgument`] naming the
/// location.
#[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
fn configuration_error(url: &StoreUrl, error: ::object_store::Error) -> Error {
    Error::InvalidArgument(format!(
        "cannot configure the object store for {}: {error}",
        url.location()
    ))
}

#[cfg(feature = "s3")]
fn build_s3(url: &StoreUrl, options: &ObjectStoreOptions) -> Result<::object_store::aws::AmazonS3> {
    use ::object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey, S3CopyIfNotExists};

    let mut builder = AmazonS3Builder::from_env().with_bucket_name(&url.bucket);
    if let Some(endpoint) = &options.endpoint {
        builder = builder.with_endpoint(endpoint);
    }
    if let Some(region) = &options.region {
        builder = builder.with_region(region);
    }
    if let Some(allow_http) = options.allow_http {
        builder = builder.with_allow_http(allow_http);
    }
    if let Some(id) = &options.access_key_id {
        builder = builder.with_access_key_id(id);
    }
    if let Some(secret) = &options.secret_access_key {
        builder = builder.with_secret_access_key(secret);
    }
    if let Some(token) = &options.session_token {
        builder = builder.with_token(token);
    }
    if let Some(key_id) = &options.sse_kms_key_id {
        builder = builder.with_sse_kms_encryption(key_id);
    }
    if let Some(key) = &options.sse_customer_key_base64 {
        builder = builder.with_ssec_encryption(key);
    }
    if let Some(mode) = &options.s3_conditional_put {
        builder = builder.with_config(AmazonS3ConfigKey::ConditionalPut, mode);
    }
    // Large create-only puts copy a temporary object without overwriting;
    // AWS S3 (and s3s-fs and moto) do that with a one-part multipart copy
    // completed with `If-None-Match: *`.
    if let Some(mode) = &options.s3_copy_if_not_exists {
        builder = builder.with_config(AmazonS3ConfigKey::CopyIfNotExists, mode);
    } else if builder
        .get_config_value(&AmazonS3ConfigKey::CopyIfNotExists)
        .is_none()
    {
        builder = builder.with_copy_if_not_exists(S3CopyIfNotExists::Multipart);
    }
    // The sink deletes one key per call: a plain DeleteObject, part of the
    // core S3 API, rather than a one-key bulk DeleteObjects, which some
    // S3-compatible stores lack (and s3s-fs fails for a key below an object).
    // (AWS_DISABLE_BULK_DELETE, when set, still decides.)
    if std::env::var_os("AWS_DISABLE_BULK_DELETE").is_none() {
        builder = builder.with_disable_bulk_delete(true);
    }
    let store = builder
        .with_retry(options.retry_config())
        .build()
        .map_err(|error| configuration_error(url, error))?;
    Ok(store)
}

#[cfg(feature = "azure")]
fn build_azure(
    url: &StoreUrl,
    options: &ObjectStoreOptions,
) -> Result<::object_store::azure::MicrosoftAzure> {
    use ::object_store::azure::MicrosoftAzureBuilder;

    let mut builder = MicrosoftAzureBuilder::from_env().with_container_name(&url.bucket);
    if let Some(account) = &options.azure_account {
        builder = builder.with_account(account);
    }
    if let Some(key) = &options.azure_access_key {
        builder = builder.with_access_key(key);
    }
    match (&options.endpoint, options.azure_use_emulator) {
        (Some(endpoint), true) => {
            // object_store's emulator mode takes its address only from
            // AZURITE_BLOB_STORAGE_URL; an explicit Azurite address is an
            // endpoint whose path is the account, as Azurite expects.
            let account = options.azure_account.as_deref().unwrap_or(AZURITE_ACCOUNT);
            builder = builder
                .with_account(account)
                .with_endpoint(format!("{}/{account}", endpoint.trim_end_matches('/')))
                .with_allow_http(true);
            if options.azure_access_key.is_none() {
                builder = builder.with_access_key(AZURITE_KEY);
            }
        }
        (None, true) => builder = builder.with_use_emulator(true),
        (Some(endpoint), false) => builder = builder.with_endpoint(endpoint.clone()),
        (None, false) => {}
    }
    if let Some(allow_http) = options.allow_http {
        builder = builder.with_allow_http(allow_http);
    }
    let store = builder
        .with_retry(options.retry_config())
        .build()
        .map_err(|error| configuration_error(url, error))?;
    Ok(store)
}

#[cfg(feature = "gcs")]
fn build_gcs(
    url: &StoreUrl,
    options: &ObjectStoreOptions,
) -> Result<::object_store::gcp::GoogleCloudStorage> {
    use ::object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
    use ::object_store::ClientConfigKey;

    let mut builder = GoogleCloudStorageBuilder::from_env().with_bucket_name(&url.bucket);
    if let Some(path) = &options.gcs_service_account_path {
        let path = path.to_str().ok_or_else(|| {
            Error::InvalidArgument(format!(
                "the GCS service account path {path:?} is not valid UTF-8"
            ))
        })?;
        builder = builder.with_service_account_path(path);
    }
    if let Some(endpoint) = &options.endpoint {
        builder = builder.with_base_url(endpoint);
    }
    if let Some(allow_http) = options.allow_http {
        // Through the config key, which keeps the other client settings
        // read from the environment.
        builder = builder.with_config(
            GoogleConfigKey::Client(ClientConfigKey::AllowHttp),
            allow_http.to_string(),
        );
    }
    let store = builder
        .with_retry(options.retry_config())
        .build()
        .map_err(|error| configuration_error(url, error))?;
    Ok(store)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse() {
        let cases = [
            ("s3://bucket", Cloud::S3, "bucket", "", "s3://bucket"),
            ("s3://bucket/", Cloud::S3, "bucket", "", "s3://bucket"),
            (
                "S3://bucket/a/b/",
                Cloud::S3,
                "bucket",
                "a/b",
                "s3://bucket/a/b",
            ),
            ("az://c/p", Cloud::Azure, "c", "p", "az://c/p"),
            ("azure://c/p/q", Cloud::Azure, "c", "p/q", "az://c/p/q"),
            ("gs://b/x", Cloud::Gcs, "b", "x", "gs://b/x"),
        ];
        for (text, cloud, bucket, prefix, location) in cases {
            let url = StoreUrl::parse(text).unwrap();
            assert_eq!(url.cloud, cloud, "{text}");
            assert_eq!(url.bucket, bucket, "{text}");
            assert_eq!(url.prefix, prefix, "{text}");
            assert_eq!(url.location(), location, "{text}");
        }
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_credentials() {
        for (text, why) in [
            ("bucket/prefix", "expected s3://"),
            ("ftp://host/x", "unknown scheme"),
            ("s3://", "bucket"),
            ("s3:///prefix", "bucket"),
            ("s3://bucket/p?region=x", "query strings"),
            ("az://container@account.blob.core.windows.net/p", "account"),
            ("s3://key:secret@bucket/p", "credentials"),
        ] {
            let error = StoreUrl::parse(text).unwrap_err().to_string();
            assert!(error.contains(why), "{text}: {error}");
            assert!(!error.contains("secret"), "{text}: {error}");
        }
    }
}
