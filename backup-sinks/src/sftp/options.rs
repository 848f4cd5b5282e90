//! How to connect to and authenticate with an SSH server.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use backup_core::RetryPolicy;

use super::Zeroizing;

/// Delay before the first retry on a new connection.
const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
/// Longest delay before a retry.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// How to connect to and authenticate with an SSH server.
///
/// Every field has a default; at least the private key usually needs
/// setting. Build it with the `with_*` methods or by assigning fields:
///
/// ```
/// use std::time::Duration;
/// use backup_sinks::sftp::SftpOptions;
///
/// let mut options = SftpOptions::default()
///     .with_private_key("/etc/backup/id_rsa")
///     .with_passphrase("correct horse battery staple")
///     .with_host_key_fingerprint("SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s");
/// options.connect_timeout = Duration::from_secs(10);
/// // Debug output never shows the passphrase.
/// assert!(!format!("{options:?}").contains("horse"));
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct SftpOptions {
    /// The private key file: ed25519 or RSA (ECDSA works too), in OpenSSH
    /// format (`ssh-keygen`'s default) or PEM/PKCS#8, optionally protected
    /// by [`passphrase`](Self::passphrase).
    ///
    /// Default `None`: the first of `~/.ssh/id_ed25519` and `~/.ssh/id_rsa`
    /// that exists.
    pub private_key: Option<PathBuf>,
    /// The passphrase of an encrypted private key. Never printed.
    pub passphrase: Option<Zeroizing<String>>,
    /// The `known_hosts` file holding the server's host key, in OpenSSH
    /// format (hashed entries `|1|salt|hash` are understood). Ignored when
    /// [`host_key_fingerprint`](Self::host_key_fingerprint) is set.
    ///
    /// Default `None`: `~/.ssh/known_hosts`.
    pub known_hosts: Option<PathBuf>,
    /// The server's host key, pinned by its SHA-256 fingerprint as
    /// `ssh-keygen -lf` prints it (`SHA256:` followed by unpadded base64).
    /// When set, the key must match it and `known_hosts` is not read.
    pub host_key_fingerprint: Option<String>,
    /// Longest time for connecting, authenticating and starting SFTP.
    /// Default 30 seconds.
    pub connect_timeout: Duration,
    /// Longest wait for the answer to one SFTP request; a server silent for
    /// longer counts as a dropped connection. Rounded up to whole seconds.
    /// Default 60 seconds.
    pub request_timeout: Duration,
    /// How often an operation that failed because the connection dropped is
    /// retried on a new connection, waiting 200 ms before the first retry
    /// and twice as long before each further one, up to 10 s (with jitter,
    /// as [`RetryPolicy::backoff`] computes). Default 4.
    pub max_retries: u32,
    /// Operations of the sink running at once. Default 8.
    pub max_concurrency: usize,
    /// Whether [`SftpSink::connect`](super::SftpSink::connect) creates the base directory (and its
    /// parents) when it is missing. Default `false`: a missing base
    /// directory is an error, since it usually means a wrong path or an
    /// unmounted volume on the server. [`create_sink`](crate::create_sink),
    /// which `backupctl init` uses, sets it.
    pub create_base_dir: bool,
}

impl Default for SftpOptions {
    fn default() -> Self {
        Self {
            private_key: None,
            passphrase: None,
            known_hosts: None,
            host_key_fingerprint: None,
            connect_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(60),
            max_retries: 4,
            max_concurrency: 8,
            create_base_dir: false,
        }
    }
}

impl SftpOptions {
    /// Sets [`private_key`](Self::private_key).
    #[must_use]
    pub fn with_private_key(mut self, path: impl Into<PathBuf>) -> Self {
        self.private_key = Some(path.into());
        self
    }

    /// Sets [`passphrase`](Self::passphrase).
    #[must_use]
    pub fn with_passphrase(mut self, passphrase: impl Into<String>) -> Self {
        self.passphrase = Some(Zeroizing::new(passphrase.into()));
        self
    }

    /// Sets [`known_hosts`](Self::known_hosts).
    #[must_use]
    pub fn with_known_hosts(mut self, path: impl Into<PathBuf>) -> Self {
        self.known_hosts = Some(path.into());
        self
    }

    /// Sets [`host_key_fingerprint`](Self::host_key_fingerprint).
    #[must_use]
    pub fn with_host_key_fingerprint(mut self, fingerprint: impl Into<String>) -> Self {
        self.host_key_fingerprint = Some(fingerprint.into());
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    #[must_use]
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets [`max_retries`](Self::max_retries).
    #[must_use]
    pub fn with_max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// Sets [`create_base_dir`](Self::create_base_dir).
    #[must_use]
    pub fn with_create_base_dir(mut self, create: bool) -> Self {
        self.create_base_dir = create;
        self
    }
}

impl fmt::Debug for SftpOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SftpOptions")
            .field("private_key", &self.private_key)
            .field(
                "passphrase",
                &self.passphrase.as_ref().map(|_| "<redacted>"),
            )
            .field("known_hosts", &self.known_hosts)
            .field("host_key_fingerprint", &self.host_key_fingerprint)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("max_retries", &self.max_retries)
            .field("max_concurrency", &self.max_concurrency)
            .field("create_base_dir", &self.create_base_dir)
            .finish()
    }
}

impl SftpOptions {
    /// How an operation is retried after the connection dropped.
    pub(super) fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            max_retries: self.max_retries,
            initial_backoff: INITIAL_BACKOFF,
            max_backoff: MAX_BACKOFF,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_hides_the_passphrase() {
        let options = SftpOptions::default().with_passphrase("hunter2-secret");
        let shown = format!("{options:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn retries_follow_the_options() {
        let policy = SftpOptions::default().with_max_retries(7).retry_policy();
        assert_eq!(policy.max_retries, 7);
        assert_eq!(policy.initial_backoff, INITIAL_BACKOFF);
        assert_eq!(policy.max_backoff, MAX_BACKOFF);
    }
}
