//! A sink on an SSH server, reached over SFTP.
//!
//! Key `a/b/c` of a sink at `sftp://backup@host:2222/srv/backups/repo` is the
//! file `/srv/backups/repo/a/b/c` on the server. The sink speaks plain SFTP
//! version 3 as OpenSSH's `sftp-server` and `internal-sftp` implement it,
//! through the pure-Rust [`russh`] and [`russh_sftp`] crates: no `ssh`
//! binary, no agent, no C library.
//!
//! # How the contract is kept
//!
//! * **Atomic puts**: an object is written to a temporary file next to its
//!   target (`.tmp-` followed by 32 hex digits, never listed), flushed to
//!   disk with `fsync@openssh.com` when the server offers it, and then moved
//!   into place. Overwriting puts use `posix-rename@openssh.com`, an atomic
//!   replace. Create-only puts use the plain SFTP rename, which OpenSSH
//!   implements with `link(2)` and which therefore fails when the target
//!   exists: the check and the write are one atomic step on the server.
//! * **Durability**: after the rename the sink also opens the directory and
//!   syncs it with `fsync@openssh.com`, which makes the new directory entry
//!   durable on Linux servers running OpenSSH. Servers without the extension
//!   get no explicit sync (see *Limitations*).
//! * **Missing keys** map SFTP's "no such file" to
//!   [`Error::NotFound`].
//!
//! # Security
//!
//! The server's host key is always verified, on the first connection and on
//! every reconnection: it must match the pinned fingerprint
//! ([`SftpOptions::host_key_fingerprint`]) or an entry for the host in the
//! `known_hosts` file (hashed entries included). There is no
//! trust-on-first-use: an unknown host is refused with the fingerprint it
//! presented and the command that adds it. Passphrases and key material
//! never appear in `Debug` output or in errors.
//!
//! # Connections
//!
//! One SSH connection with one SFTP session serves every operation of a sink
//! (and of its clones); requests of concurrent operations are pipelined on
//! it. At most [`SftpOptions::max_concurrency`] operations run at once. When
//! the connection drops, the next operation reconnects (verifying the host
//! key again) and the failed operation is retried, up to
//! [`SftpOptions::max_retries`] times with exponential backoff and jitter.
//!
//! # Limitations
//!
//! * Paths are absolute on the server; `~` is not expanded.
//! * Create-only puts are atomic only where the server's `rename` refuses to
//!   replace an existing file, as OpenSSH's does on file systems with hard
//!   links. On file systems without hard links OpenSSH falls back to a
//!   check-then-rename that two racing writers can both pass.
//! * On servers without `posix-rename@openssh.com`, an overwriting put
//!   removes the old object before renaming the new one into place, so a
//!   reader may briefly find no object.
//! * On servers without `fsync@openssh.com`, puts return once the server has
//!   the data, not once it is on disk.
//! * A put interrupted by a dropped connection may leave a temporary file
//!   behind; it is invisible to `list` and can be deleted by hand.
//! * Like [`LocalSink`](backup_core::LocalSink), the sink cannot hold both
//!   `a/b` and `a/b/c`, and it reserves the temporary-file names.
//!
//! # Layout
//!
//! This module holds the sink and its [`Sink`] implementation; `options`
//! the [`SftpOptions`]; `target` the parsing of the URL; `host_keys` the
//! host key checks and `client_key` the loading of the private key;
//! `connection` connecting, reconnecting and retrying; `read` and `write`
//! the SFTP requests of each operation; `failure` the errors.
//!
//! # Examples
//!
//! ```no_run
//! # async fn demo() -> backup_core::Result<()> {
//! use backup_core::{PutMode, Sink, SinkExt};
//! use backup_sinks::sftp::{SftpOptions, SftpSink};
//!
//! let options = SftpOptions::default()
//!     .with_private_key("/etc/backup/id_ed25519")
//!     .with_known_hosts("/etc/backup/known_hosts");
//! let sink = SftpSink::connect("sftp://backup@backup.example.com:2222/srv/backups/repo", options).await?;
//! sink.put("config", "hello".into(), PutMode::Create).await?;
//! assert_eq!(sink.get("config").await?, "hello");
//! # Ok(())
//! # }
//! ```

mod client_key;
mod connection;
mod failure;
mod host_keys;
mod options;
mod read;
mod target;
mod write;

use std::fmt;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backup_core::sink_support::reject_temp_name;
use backup_core::{validate_key, Error, ObjectMeta, PutMode, Result, RetryPolicy, Sink};
use bytes::Bytes;
use russh::keys::{HashAlg, PrivateKey};
use russh::Disconnect;
use russh_sftp::protocol::FileAttributes;
use tokio::sync::{Mutex, Semaphore};
/// Re-exported: the type of [`SftpOptions::passphrase`].
pub use zeroize::Zeroizing;

use client_key::{home_dir, load_private_key, private_key_path};
use connection::Connection;
use host_keys::{validate_fingerprint, HostKeyPolicy};
pub use options::SftpOptions;
use target::Target;
use write::PutJob;

/// Default SSH port.
const DEFAULT_PORT: u16 = 22;
/// Largest read or write request: OpenSSH's limit (256 KiB less 1 KiB of
/// headroom for the packet header).
const MAX_IO_LEN: u64 = 255 * 1024;
/// Read and write request size for servers that do not state their limits;
/// every SFTP server must accept 32 KiB.
const FALLBACK_IO_LEN: u64 = 32 * 1024;
/// Read or write requests of one object in flight at once.
const IO_PIPELINE: usize = 16;
/// Directories read at once by `list`.
const LIST_CONCURRENCY: usize = 8;
/// Context of the error for a put whose target path is a directory.
const DIRECTORY_IN_THE_WAY: &str = "a directory holding other keys is in the way at";

/// A repository directory on an SSH server, reached over SFTP.
///
/// Cloning is cheap: clones share the connection.
///
/// See the [module documentation](self) for how the [`Sink`] contract is
/// kept, and its limitations.
#[derive(Clone)]
pub struct SftpSink {
    inner: Arc<Inner>,
}

/// What the clones of one sink share.
struct Inner {
    target: Target,
    /// The decrypted client key, kept for reconnecting.
    key: Arc<PrivateKey>,
    key_path: PathBuf,
    host_keys: HostKeyPolicy,
    connect_timeout: Duration,
    request_timeout: Duration,
    /// How an operation is retried on a new connection.
    retry: RetryPolicy,
    limiter: Semaphore,
    /// The live connection, `None` after it failed.
    current: Mutex<Option<Arc<Connection>>>,
}

impl SftpSink {
    /// Connects to the server named by `url`
    /// (`sftp://user@host:port/absolute/path`, port 22 by default, user
    /// `$USER` by default), verifies its host key, authenticates with the
    /// private key and checks that the base directory exists (creating it
    /// when [`SftpOptions::create_base_dir`] is set).
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a malformed URL or fingerprint, or a
    /// key that cannot be read or decrypted; [`Error::Sink`] with operation
    /// `connect` when the server cannot be reached (temporary), its host key
    /// is unknown or does not match (the message names the expected and
    /// presented `SHA256:` fingerprints), the key is refused, or the base
    /// directory is missing or unusable.
    pub async fn connect(url: &str, options: SftpOptions) -> Result<Self> {
        let target = Target::parse(url)?;
        let host_keys = match &options.host_key_fingerprint {
            Some(fingerprint) => HostKeyPolicy::Pinned(validate_fingerprint(fingerprint)?),
            None => HostKeyPolicy::KnownHosts(match &options.known_hosts {
                Some(path) => path.clone(),
                None => home_dir()
                    .ok_or_else(|| {
                        Error::InvalidArgument(
                            "no known_hosts file given, and $HOME is not set to find \
                             ~/.ssh/known_hosts"
                                .to_owned(),
                        )
                    })?
                    .join(".ssh/known_hosts"),
            }),
        };
        let key_path = private_key_path(&options)?;
        let key = load_private_key(&key_path, options.passphrase.clone()).await?;
        let sink = Self {
            inner: Arc::new(Inner {
                target,
                key: Arc::new(key),
                key_path,
                host_keys,
                connect_timeout: options.connect_timeout,
                request_timeout: options.request_timeout,
                retry: options.retry_policy(),
                limiter: Semaphore::new(options.max_concurrency.max(1)),
                current: Mutex::new(None),
            }),
        };
        let connection = sink.establish(options.create_base_dir).await?;
        *sink.inner.current.lock().await = Some(Arc::new(connection));
        Ok(sink)
    }

    /// The directory on the server that holds the objects.
    pub fn base_path(&self) -> &str {
        &self.inner.target.base
    }

    /// Closes the connection politely. Later operations reconnect.
    pub async fn disconnect(&self) {
        let connection = self.inner.current.lock().await.take();
        if let Some(connection) = connection {
            let _ = connection.sftp.close_session();
            let _ = connection
                .ssh
                .disconnect(Disconnect::ByApplication, "", "en")
                .await;
        }
    }

    /// Validates `key` and returns its absolute path on the server.
    fn path_of(&self, key: &str) -> Result<String> {
        validate_key(key)?;
        reject_temp_name(key, "an SFTP sink")?;
        Ok(self.inner.target.join(key))
    }
}

/// The type bits of a mode.
const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

/// The file type in `attrs`, from the mode's type bits (russh-sftp's own
/// helpers test single bits, which confuses sockets with directories).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

pub(super) fn kind(attrs: &FileAttributes) -> Kind {
    match attrs.permissions.map(|mode| mode & S_IFMT) {
        Some(S_IFREG) => Kind::File,
        Some(S_IFDIR) => Kind::Dir,
        Some(S_IFLNK) => Kind::Symlink,
        _ => Kind::Other,
    }
}

#[async_trait]
impl Sink for SftpSink {
    async fn put(&self, key: &str, data: Bytes, mode: PutMode) -> Result<()> {
        let path = self.path_of(key)?;
        let rename_sent = AtomicBool::new(false);
        let put = PutJob {
            key,
            path: &path,
            data: &data,
            mode,
            rename_sent: &rename_sent,
        };
        self.run("put", key, |connection| {
            let put = &put;
            async move { self.put_attempt(&connection, put).await }
        })
        .await
    }

    async fn get_range(&self, key: &str, range: Option<Range<u64>>) -> Result<Bytes> {
        let path = self.path_of(key)?;
        self.run("get", key, |connection| {
            let (path, range) = (&path, range.clone());
            async move { self.read_attempt(&connection, key, path, range).await }
        })
        .await
    }

    async fn head(&self, key: &str) -> Result<ObjectMeta> {
        let path = self.path_of(key)?;
        self.run("head", key, |connection| {
            let path = &path;
            async move { self.head_attempt(&connection, key, path).await }
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        self.run("list", prefix, |connection| async move {
            self.list_attempt(&connection, prefix).await
        })
        .await
    }

    async fn delete(&self, key: &str) -> Result<()> {
        let path = self.path_of(key)?;
        self.run("delete", key, |connection| {
            let path = &path;
            async move { self.delete_attempt(&connection, path).await }
        })
        .await
    }

    fn location(&self) -> String {
        self.inner.target.url()
    }
}

impl fmt::Debug for SftpSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = &self.inner;
        f.debug_struct("SftpSink")
            .field("location", &inner.target.url())
            .field("private_key", &inner.key_path)
            .field(
                "client_key_fingerprint",
                &inner
                    .key
                    .public_key()
                    .fingerprint(HashAlg::Sha256)
                    .to_string(),
            )
            .field("host_keys", &inner.host_keys)
            .field("connect_timeout", &inner.connect_timeout)
            .field("request_timeout", &inner.request_timeout)
            .field("max_retries", &inner.retry.max_retries)
            .finish_non_exhaustive()
    }
}
