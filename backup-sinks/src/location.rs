//! Repository locations: a path or URL turned into a sink, with the storage
//! options of every kind of sink and the environment variables that give
//! them defaults.
//!
//! This is how `backupctl` and the Python binding open a repository, so that
//! a location and its options mean the same everywhere.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use backup_core::{Error, LocalSink, Result, Sink};

/// The environment variables that give [`StorageOptions`] and the password
/// their defaults (the same names `backupctl` reads).
pub mod env {
    /// The repository location.
    pub const REPO: &str = "BACKUP_REPO";
    /// The repository password itself.
    pub const PASSWORD: &str = "BACKUP_PASSWORD";
    /// A file holding the repository password.
    pub const PASSWORD_FILE: &str = "BACKUP_PASSWORD_FILE";
    /// [`StorageOptions::endpoint`](super::StorageOptions::endpoint).
    pub const ENDPOINT: &str = "BACKUP_ENDPOINT";
    /// [`StorageOptions::region`](super::StorageOptions::region).
    pub const REGION: &str = "BACKUP_REGION";
    /// [`StorageOptions::allow_http`](super::StorageOptions::allow_http).
    pub const ALLOW_HTTP: &str = "BACKUP_ALLOW_HTTP";
    /// [`StorageOptions::sse_kms_key_id`](super::StorageOptions::sse_kms_key_id).
    pub const SSE_KMS_KEY_ID: &str = "BACKUP_SSE_KMS_KEY_ID";
    /// [`StorageOptions::sse_c_key_file`](super::StorageOptions::sse_c_key_file).
    pub const SSE_C_KEY_FILE: &str = "BACKUP_SSE_C_KEY_FILE";
    /// [`StorageOptions::azure_emulator`](super::StorageOptions::azure_emulator).
    pub const AZURE_EMULATOR: &str = "BACKUP_AZURE_EMULATOR";
    /// [`StorageOptions::ssh_key`](super::StorageOptions::ssh_key).
    pub const SSH_KEY: &str = "BACKUP_SSH_KEY";
    /// [`StorageOptions::ssh_key_passphrase_file`](super::StorageOptions::ssh_key_passphrase_file).
    pub const SSH_KEY_PASSPHRASE_FILE: &str = "BACKUP_SSH_KEY_PASSPHRASE_FILE";
    /// [`StorageOptions::known_hosts`](super::StorageOptions::known_hosts).
    pub const KNOWN_HOSTS: &str = "BACKUP_KNOWN_HOSTS";
    /// [`StorageOptions::host_key_fingerprint`](super::StorageOptions::host_key_fingerprint).
    pub const HOST_KEY_FINGERPRINT: &str = "BACKUP_HOST_KEY_FINGERPRINT";
}

/// The options of remote repositories (`s3://`, `az://`, `gs://`,
/// `sftp://`); a local one needs none. Cloud credentials come from each
/// cloud's usual environment variables (`AWS_ACCESS_KEY_ID`,
/// `AZURE_STORAGE_ACCOUNT_NAME`, `GOOGLE_SERVICE_ACCOUNT`, ...).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct StorageOptions {
    /// Object store endpoint, for S3-compatible servers and emulators.
    pub endpoint: Option<String>,
    /// Object store region.
    pub region: Option<String>,
    /// Allow plain HTTP to the endpoint (tests and local emulators only).
    pub allow_http: bool,
    /// S3 server-side encryption with this KMS key id (SSE-KMS).
    pub sse_kms_key_id: Option<String>,
    /// S3 server-side encryption with a customer key (SSE-C): a file holding
    /// the base64 of a 256-bit key.
    pub sse_c_key_file: Option<PathBuf>,
    /// Use the Azure storage emulator (Azurite).
    pub azure_emulator: bool,
    /// SSH private key for `sftp://` (ed25519 or RSA, OpenSSH format).
    pub ssh_key: Option<PathBuf>,
    /// File holding the SSH key's passphrase.
    pub ssh_key_passphrase_file: Option<PathBuf>,
    /// `known_hosts` file checked for the server's host key (default
    /// `~/.ssh/known_hosts`).
    pub known_hosts: Option<PathBuf>,
    /// Pinned SHA-256 host key fingerprint (as `ssh-keygen -lf` prints it),
    /// instead of `known_hosts`.
    pub host_key_fingerprint: Option<String>,
}

impl StorageOptions {
    /// The options the [`env`] variables give; unset variables leave their
    /// option unset. A flag variable is off when empty or one of `0`,
    /// `false`, `no`, `off`, `n`, `f` (any case), on otherwise, as on
    /// `backupctl`'s command line.
    ///
    /// # Examples
    ///
    /// ```
    /// let options = backup_sinks::StorageOptions::from_env();
    /// // Nothing in this test's environment names an endpoint.
    /// assert_eq!(options.endpoint, std::env::var("BACKUP_ENDPOINT").ok());
    /// ```
    pub fn from_env() -> StorageOptions {
        StorageOptions::from_lookup(|name| std::env::var_os(name))
    }

    /// [`StorageOptions::from_env`] with the variables looked up through
    /// `lookup`.
    fn from_lookup(lookup: impl Fn(&str) -> Option<std::ffi::OsString>) -> StorageOptions {
        let text = |name: &str| lookup(name).map(|value| value.to_string_lossy().into_owned());
        let path = |name: &str| lookup(name).map(PathBuf::from);
        let flag = |name: &str| {
            text(name).is_some_and(|value| {
                !matches!(
                    value.trim().to_ascii_lowercase().as_str(),
                    "" | "0" | "false" | "no" | "off" | "n" | "f"
                )
            })
        };
        StorageOptions {
            endpoint: text(env::ENDPOINT),
            region: text(env::REGION),
            allow_http: flag(env::ALLOW_HTTP),
            sse_kms_key_id: text(env::SSE_KMS_KEY_ID),
            sse_c_key_file: path(env::SSE_C_KEY_FILE),
            azure_emulator: flag(env::AZURE_EMULATOR),
            ssh_key: path(env::SSH_KEY),
            ssh_key_passphrase_file: path(env::SSH_KEY_PASSPHRASE_FILE),
            known_hosts: path(env::KNOWN_HOSTS),
            host_key_fingerprint: text(env::HOST_KEY_FINGERPRINT),
        }
    }

    /// The object store settings of these options (the SSE-C key read from
    /// its file).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the SSE-C key file cannot be read.
    #[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
    pub fn object_store_options(&self) -> Result<crate::ObjectStoreOptions> {
        let mut options = crate::ObjectStoreOptions {
            endpoint: self.endpoint.clone(),
            region: self.region.clone(),
            allow_http: self.allow_http.then_some(true),
            sse_kms_key_id: self.sse_kms_key_id.clone(),
            azure_use_emulator: self.azure_emulator,
            ..Default::default()
        };
        if let Some(path) = &self.sse_c_key_file {
            options.sse_customer_key_base64 =
                Some(read_secret_file(path, "cannot read the SSE-C key file")?);
        }
        Ok(options)
    }

    /// The SFTP settings of these options (the key passphrase read from its
    /// file).
    ///
    /// # Errors
    ///
    /// [`Error::Io`] when the passphrase file cannot be read.
    #[cfg(feature = "sftp")]
    pub fn sftp_options(&self) -> Result<crate::sftp::SftpOptions> {
        let mut options = crate::sftp::SftpOptions::default();
        if let Some(key) = &self.ssh_key {
            options = options.with_private_key(key.clone());
        }
        if let Some(path) = &self.ssh_key_passphrase_file {
            options = options.with_passphrase(read_secret_file(
                path,
                "cannot read the SSH key passphrase file",
            )?);
        }
        if let Some(path) = &self.known_hosts {
            options = options.with_known_hosts(path.clone());
        }
        if let Some(fingerprint) = &self.host_key_fingerprint {
            options = options.with_host_key_fingerprint(fingerprint.clone());
        }
        Ok(options)
    }
}

/// Opens the sink of a repository location: a path, `file://`, `s3://`,
/// `az://`, `azure://`, `gs://` or `sftp://` (an SFTP server is connected
/// to, its host key checked).
///
/// # Errors
///
/// [`Error::InvalidArgument`] for an unknown scheme or one whose cargo
/// feature is off; the errors of building an object store or of connecting
/// to an SFTP server.
///
/// # Examples
///
/// ```
/// # async fn demo() -> backup_core::Result<()> {
/// use backup_sinks::{open_sink, StorageOptions};
/// let place = tempfile::tempdir().unwrap();
/// let sink = open_sink(&place.path().display().to_string(), &StorageOptions::default()).await?;
/// assert!(sink.location().contains(&place.path().display().to_string()));
/// assert!(open_sink("ftp://old.example/backups", &StorageOptions::default()).await.is_err());
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
pub async fn open_sink(location: &str, options: &StorageOptions) -> Result<Arc<dyn Sink>> {
    let scheme = location.split_once("://").map(|(scheme, _)| scheme);
    match scheme {
        None => Ok(Arc::new(LocalSink::new(PathBuf::from(location)))),
        Some("file") => Ok(Arc::new(LocalSink::new(PathBuf::from(
            &location["file://".len()..],
        )))),
        #[cfg(any(feature = "s3", feature = "azure", feature = "gcs"))]
        Some("s3" | "az" | "azure" | "gs") => Ok(Arc::new(crate::ObjectStoreSink::from_url(
            location,
            &options.object_store_options()?,
        )?)),
        #[cfg(feature = "sftp")]
        Some("sftp") => Ok(Arc::new(
            crate::sftp::SftpSink::connect(location, options.sftp_options()?).await?,
        )),
        Some(other) => {
            // Without the features, the options of remote sinks are unused.
            let _ = options;
            Err(Error::InvalidArgument(format!(
                "unknown repository scheme {other}://: use a path, file://, s3://, az://, gs:// or sftp://"
            )))
        }
    }
}

/// Opens the sink of a location where a new repository is to be created,
/// creating its directory when missing, as `mkdir -p` would: the local
/// directory of a path or `file://`, or the base directory on the server of
/// an `sftp://` location ([`SftpOptions::create_base_dir`]). Object stores
/// have no directories; their sinks open as with [`open_sink`]. Opening an
/// existing repository never creates anything: a missing directory there
/// usually means a wrong path or a volume that is not mounted.
///
/// [`SftpOptions::create_base_dir`]: crate::sftp::SftpOptions::create_base_dir
///
/// # Errors
///
/// [`Error::Io`] when a local directory cannot be created; an SFTP sink
/// error when the server refuses to create its directory; otherwise the
/// errors of [`open_sink`].
///
/// # Examples
///
/// ```
/// # async fn demo() -> backup_core::Result<()> {
/// use backup_sinks::{create_sink, StorageOptions};
/// let place = tempfile::tempdir().unwrap();
/// let root = place.path().join("new/nested/repo");
/// let sink = create_sink(&root.display().to_string(), &StorageOptions::default()).await?;
/// assert!(root.is_dir());
/// assert!(sink.location().contains("new/nested/repo"));
/// # Ok(()) }
/// # tokio::runtime::Runtime::new().unwrap().block_on(demo()).unwrap();
/// ```
pub async fn create_sink(location: &str, options: &StorageOptions) -> Result<Arc<dyn Sink>> {
    if let Some(root) = local_root(location) {
        std::fs::create_dir_all(root)
            .map_err(|source| Error::io("cannot create the repository directory", root, source))?;
    }
    #[cfg(feature = "sftp")]
    if location.starts_with("sftp://") {
        let options = options.sftp_options()?.with_create_base_dir(true);
        return Ok(Arc::new(
            crate::sftp::SftpSink::connect(location, options).await?,
        ));
    }
    open_sink(location, options).await
}

/// The directory of a local repository location (a path or `file://`),
/// which creating a repository creates; `None` for a remote one.
///
/// # Examples
///
/// ```
/// use backup_sinks::local_root;
/// assert_eq!(local_root("/srv/backups"), Some("/srv/backups"));
/// assert_eq!(local_root("file:///srv/backups"), Some("/srv/backups"));
/// assert_eq!(local_root("s3://bucket/backups"), None);
/// ```
pub fn local_root(location: &str) -> Option<&str> {
    match location.split_once("://") {
        None => Some(location),
        Some(("file", rest)) => Some(rest),
        Some(_) => None,
    }
}

/// The text of a secret file without its trailing line ending; `what` says
/// which file in the error.
///
/// # Errors
///
/// [`Error::Io`] when the file cannot be read or is not UTF-8.
pub fn read_secret_file(path: &Path, what: &'static str) -> Result<String> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::io(what, path, source))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}

/// A repository password read from a file: its bytes without one trailing
/// line ending (`\n` or `\r\n`), which is not part of the password.
///
/// # Errors
///
/// [`Error::Io`] when the file cannot be read.
///
/// # Examples
///
/// ```
/// let place = tempfile::tempdir().unwrap();
/// let file = place.path().join("password");
/// std::fs::write(&file, "correct horse\n").unwrap();
/// assert_eq!(backup_sinks::read_password_file(&file).unwrap(), b"correct horse");
/// ```
pub fn read_password_file(path: &Path) -> Result<Vec<u8>> {
    let mut bytes = std::fs::read(path)
        .map_err(|source| Error::io("cannot read the password file", path, source))?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    Ok(bytes)
}

/// The repository password: the content of `file` (without one trailing
/// line ending) when one is given, else the [`env::PASSWORD`] variable,
/// else none.
///
/// # Errors
///
/// [`Error::Io`] when the file cannot be read.
pub fn read_password(file: Option<&Path>) -> Result<Option<Vec<u8>>> {
    match file {
        Some(file) => read_password_file(file).map(Some),
        None => Ok(std::env::var_os(env::PASSWORD).map(|value| value.into_encoded_bytes())),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::ffi::OsString;

    use super::*;

    #[test]
    fn environment_variables_fill_the_options_and_flags_read_like_the_cli() {
        let vars: HashMap<&str, &str> = [
            (env::ENDPOINT, "http://127.0.0.1:9000"),
            (env::ALLOW_HTTP, "true"),
            (env::AZURE_EMULATOR, "off"),
            (env::KNOWN_HOSTS, "/etc/ssh/ssh_known_hosts"),
        ]
        .into_iter()
        .collect();
        let options = StorageOptions::from_lookup(|name| vars.get(name).map(OsString::from));
        assert_eq!(options.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert!(options.allow_http);
        assert!(!options.azure_emulator);
        assert_eq!(
            options.known_hosts.as_deref(),
            Some(Path::new("/etc/ssh/ssh_known_hosts"))
        );
        assert_eq!(options.region, None);
        for off in ["", "0", "FALSE", "no", "Off"] {
            let options = StorageOptions::from_lookup(|name| {
                (name == env::ALLOW_HTTP).then(|| OsString::from(off))
            });
            assert!(!options.allow_http, "{off:?} is off");
        }
    }

    #[test]
    fn a_password_file_loses_one_line_ending_only() {
        let place = tempfile::tempdir().unwrap();
        let file = place.path().join("password");
        std::fs::write(&file, "secret \r\n").unwrap();
        assert_eq!(read_password_file(&file).unwrap(), b"secret ");
        std::fs::write(&file, "two\n\n").unwrap();
        assert_eq!(read_password_file(&file).unwrap(), b"two\n");
        let missing = read_password_file(&place.path().join("none")).unwrap_err();
        assert!(missing
            .to_string()
            .contains("cannot read the password file"));
    }
}
