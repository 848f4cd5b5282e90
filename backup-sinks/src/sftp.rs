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
//! # Examples
//!
//! ```no_run
//! # async fn demo() -> backup_core::Result<()> {
//! use backup_core::sink::{PutMode, Sink, SinkExt};
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

use std::fmt;
use std::future::Future;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use backup_core::sink::{validate_key, ObjectMeta, PutMode, Sink};
use backup_core::{Error, Result};
use bytes::{Bytes, BytesMut};
use futures::stream::{self, FuturesUnordered, StreamExt, TryStreamExt};
use rand::Rng;
use russh::client;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey};
use russh::{ChannelMsg, Disconnect};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};
use tokio::sync::{Mutex, Semaphore};
/// Re-exported: the type of [`SftpOptions::passphrase`].
pub use zeroize::Zeroizing;

/// Default SSH port.
const DEFAULT_PORT: u16 = 22;
/// Prefix of the temporary files puts write before moving them into place.
const TEMP_PREFIX: &str = ".tmp-";
/// Number of hex digits after [`TEMP_PREFIX`] in a temporary file name.
const TEMP_HEX_DIGITS: usize = 32;
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
/// First backoff delay before a retry; doubled on each further attempt.
const BACKOFF_BASE: Duration = Duration::from_millis(200);
/// Longest backoff delay before a retry.
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Context of the error for a put whose target path is a directory.
const DIRECTORY_IN_THE_WAY: &str = "a directory holding other keys is in the way at";

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
    /// retried on a new connection. Default 4.
    pub max_retries: u32,
    /// Operations of the sink running at once. Default 8.
    pub max_concurrency: usize,
    /// Whether [`SftpSink::connect`] creates the base directory (and its
    /// parents) when it is missing. Default `false`: a missing base
    /// directory is an error, since it usually means a wrong path or an
    /// unmounted volume on the server.
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
    max_retries: u32,
    limiter: Semaphore,
    /// The live connection, `None` after it failed.
    current: Mutex<Option<Arc<Connection>>>,
}

/// Where the sink points, parsed from its URL.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    user: String,
    host: String,
    port: u16,
    /// Absolute directory on the server, without a trailing `/` (except
    /// for the root itself).
    base: String,
}

impl Target {
    /// Parses `sftp://[user@]host[:port]/absolute/path`.
    fn parse(url: &str) -> Result<Self> {
        let invalid = |why: &str| {
            Error::InvalidArgument(format!(
                "invalid SFTP URL {url:?}: {why} (expected sftp://user@host:port/absolute/path)"
            ))
        };
        let rest = url
            .strip_prefix("sftp://")
            .ok_or_else(|| invalid("it must start with sftp://"))?;
        let (authority, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => return Err(invalid("the absolute path of the repository is missing")),
        };
        let (user, host_port) = match authority.rsplit_once('@') {
            Some((user, host_port)) => (
                Some(percent_decode(user).map_err(|e| invalid(&e))?),
                host_port,
            ),
            None => (None, authority),
        };
        let (host, port) = if let Some(bracketed) = host_port.strip_prefix('[') {
            // An IPv6 address: [::1] or [::1]:2222.
            let (host, after) = bracketed
                .split_once(']')
                .ok_or_else(|| invalid("unclosed '[' in the host"))?;
            let port = match after {
                "" => None,
                _ => Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| invalid("unexpected text after the host"))?,
                ),
            };
            (host.to_owned(), port)
        } else {
            match host_port.split_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port)),
                None => (host_port.to_owned(), None),
            }
        };
        if host.is_empty() {
            return Err(invalid("the host is missing"));
        }
        let port = match port {
            None | Some("") => DEFAULT_PORT,
            Some(port) => port
                .parse::<u16>()
                .ok()
                .filter(|&port| port != 0)
                .ok_or_else(|| invalid("the port must be a number from 1 to 65535"))?,
        };
        let user = match user {
            Some(user) if !user.is_empty() => user,
            Some(_) => return Err(invalid("the user name is empty")),
            None => std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .ok()
                .filter(|user| !user.is_empty())
                .ok_or_else(|| invalid("no user name given, and $USER is not set to default to"))?,
        };
        let path = percent_decode(path).map_err(|e| invalid(&e))?;
        if path.contains('\0') {
            return Err(invalid("the path contains a NUL byte"));
        }
        let trimmed = path.trim_end_matches('/');
        let base = if trimmed.is_empty() {
            "/".to_owned()
        } else {
            trimmed.to_owned()
        };
        Ok(Self {
            user,
            host,
            port,
            base,
        })
    }

    /// `host:port` for messages, with IPv6 addresses bracketed.
    fn host_port(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The absolute path of a server path below the base.
    fn join(&self, relative: &str) -> String {
        if self.base == "/" {
            format!("/{relative}")
        } else {
            format!("{}/{relative}", self.base)
        }
    }

    fn url(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let port = if self.port == DEFAULT_PORT {
            String::new()
        } else {
            format!(":{}", self.port)
        };
        format!("sftp://{}@{host}{port}{}", self.user, self.base)
    }
}

/// Decodes `%XX` escapes.
fn percent_decode(text: &str) -> std::result::Result<String, String> {
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes().enumerate();
    while let Some((at, byte)) = bytes.next() {
        if byte != b'%' {
            out.push(byte);
            continue;
        }
        let digit = |pair: Option<(usize, u8)>| pair.and_then(|(_, b)| (b as char).to_digit(16));
        match (digit(bytes.next()), digit(bytes.next())) {
            (Some(high), Some(low)) => out.push((high * 16 + low) as u8),
            _ => return Err(format!("bad percent escape at byte {at}")),
        }
    }
    String::from_utf8(out).map_err(|_| "percent escapes do not decode to UTF-8".to_owned())
}

/// How the server's host key is checked.
#[derive(Debug, Clone)]
enum HostKeyPolicy {
    /// Against a pinned `SHA256:...` fingerprint.
    Pinned(String),
    /// Against the entries of a known_hosts file.
    KnownHosts(PathBuf),
}

impl HostKeyPolicy {
    /// Host key algorithms in the order to offer them: those of the keys
    /// known for the host first, as OpenSSH's client does, so that a server
    /// with several host keys presents one we can check.
    fn preferred_algorithms(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let defaults = russh::Preferred::DEFAULT.key;
        let HostKeyPolicy::KnownHosts(path) = self else {
            return defaults.to_vec();
        };
        let known: Vec<Algorithm> =
            russh::keys::known_hosts::known_host_keys_path(host, port, path)
                .unwrap_or_default()
                .into_iter()
                .map(|(_, key)| key.algorithm())
                .collect();
        let is_known = |algorithm: &Algorithm| {
            known.iter().any(|known| {
                known == algorithm
                    || (matches!(known, Algorithm::Rsa { .. })
                        && matches!(algorithm, Algorithm::Rsa { .. }))
            })
        };
        let (first, rest): (Vec<Algorithm>, Vec<Algorithm>) =
            defaults.iter().cloned().partition(is_known);
        first.into_iter().chain(rest).collect()
    }

    /// Checks `key` presented by `host:port`; the error is the message for
    /// the user.
    fn verify(&self, host: &str, port: u16, key: &PublicKey) -> std::result::Result<(), String> {
        let presented = key.fingerprint(HashAlg::Sha256).to_string();
        let algorithm = key.algorithm();
        let host_port = if port == DEFAULT_PORT {
            host.to_owned()
        } else {
            format!("[{host}]:{port}")
        };
        match self {
            HostKeyPolicy::Pinned(expected) => {
                if *expected == presented {
                    Ok(())
                } else {
                    Err(format!(
                        "HOST KEY MISMATCH for {host_port}: expected the pinned fingerprint {expected}, \
                         but the server presented {algorithm} key {presented}. Someone may be \
                         intercepting the connection; if the server's key was changed on purpose, \
                         pin the new fingerprint"
                    ))
                }
            }
            HostKeyPolicy::KnownHosts(path) => {
                let recorded = russh::keys::known_hosts::known_host_keys_path(host, port, path)
                    .map_err(|e| format!("cannot read known_hosts file {}: {e}", path.display()))?;
                if recorded
                    .iter()
                    .any(|(_, known)| known.key_data() == key.key_data())
                {
                    return Ok(());
                }
                if recorded.is_empty() {
                    let missing = if path.exists() {
                        ""
                    } else {
                        " (the file does not exist)"
                    };
                    let keyscan_port = if port == DEFAULT_PORT {
                        String::new()
                    } else {
                        format!("-p {port} ")
                    };
                    return Err(format!(
                        "host {host_port} is not in known_hosts file {}{missing}; the server presented \
                         {algorithm} key {presented}. Check this fingerprint with the server's \
                         administrator (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on the server), \
                         then add the key: ssh-keyscan {keyscan_port}{host} >> {}",
                        path.display(),
                        path.display()
                    ));
                }
                let expected = recorded
                    .iter()
                    .map(|(_, known)| {
                        format!(
                            "{} ({} key)",
                            known.fingerprint(HashAlg::Sha256),
                            known.algorithm()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                Err(format!(
                    "HOST KEY MISMATCH for {host_port}: known_hosts file {} expects {expected}, but \
                     the server presented {algorithm} key {presented}. Someone may be intercepting \
                     the connection; if the server's key was changed on purpose, remove the old \
                     entry (ssh-keygen -R '{host_port}' -f {}) and add the new one",
                    path.display(),
                    path.display()
                ))
            }
        }
    }
}

/// The russh event handler: checks the host key.
struct ClientHandler {
    host: String,
    port: u16,
    host_keys: HostKeyPolicy,
}

/// Errors of the SSH connection setup.
#[derive(Debug)]
enum HandlerError {
    /// A protocol or transport error from russh.
    Ssh(russh::Error),
    /// The host key was refused; the message says why.
    HostKey(String),
}

impl From<russh::Error> for HandlerError {
    fn from(error: russh::Error) -> Self {
        HandlerError::Ssh(error)
    }
}

impl client::Handler for ClientHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_public_key: &russh::keys::PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        let key = match server_public_key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            // Certificate authorities are not supported: check the
            // certified key itself, as a plain key.
            russh::keys::PublicKeyOrCertificate::Certificate(certificate) => {
                PublicKey::from(certificate.public_key().clone())
            }
        };
        self.host_keys
            .verify(&self.host, self.port, &key)
            .map(|()| true)
            .map_err(HandlerError::HostKey)
    }
}

/// One SSH connection with its SFTP session.
struct Connection {
    ssh: client::Handle<ClientHandler>,
    sftp: RawSftpSession,
    /// The server offers `fsync@openssh.com`.
    fsync: bool,
    /// The server offers `posix-rename@openssh.com`.
    posix_rename: bool,
    /// Bytes per read request.
    read_len: u32,
    /// Bytes per write request.
    write_len: usize,
}

/// Why one attempt of an operation failed.
enum Failure {
    /// The connection broke (or went silent): reconnect and retry.
    Connection(String),
    /// The server answered with an error status.
    Status(StatusFailure),
    /// A finished error.
    Done(Error),
    /// A permanent problem described by a message.
    Message(String),
}

/// An error status from the server, with what was being done.
struct StatusFailure {
    code: StatusCode,
    server_message: String,
    /// What was being done, to complete "... {path}".
    action: &'static str,
    path: String,
    /// A write-side step, where a generic failure usually means a full disk.
    writing: bool,
}

/// One put, across its attempts.
#[derive(Clone, Copy)]
struct PutJob<'a> {
    key: &'a str,
    /// The object's absolute path on the server.
    path: &'a str,
    data: &'a Bytes,
    mode: PutMode,
    /// Set once an attempt sent a create-only rename: if its answer was
    /// lost with the connection, the object may be ours.
    rename_sent: &'a AtomicBool,
}

/// The result of one attempt.
type Step<T> = std::result::Result<T, Failure>;

/// Classifies an SFTP client error from a read-side request.
fn failure(error: SftpError, action: &'static str, path: &str) -> Failure {
    classify(error, action, path, false)
}

/// Classifies an SFTP client error from a write-side request.
fn write_failure(error: SftpError, action: &'static str, path: &str) -> Failure {
    classify(error, action, path, true)
}

fn classify(error: SftpError, action: &'static str, path: &str, writing: bool) -> Failure {
    match error {
        SftpError::Status(status) => Failure::Status(StatusFailure {
            code: status.status_code,
            server_message: status.error_message,
            action,
            path: path.to_owned(),
            writing,
        }),
        SftpError::Limited(detail) => Failure::Message(format!(
            "{action} {path}: over the server's limit: {detail}"
        )),
        other => Failure::Connection(format!("{action} {path}: {other}")),
    }
}

/// Whether an SFTP error is the given status.
fn is_status(error: &SftpError, code: StatusCode) -> bool {
    matches!(error, SftpError::Status(status) if status.status_code == code)
}

/// The type bits of a mode.
const S_IFMT: u32 = 0o170_000;
const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFLNK: u32 = 0o120_000;

/// The file type in `attrs`, from the mode's type bits (russh-sftp's own
/// helpers test single bits, which confuses sockets with directories).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    File,
    Dir,
    Symlink,
    Other,
}

fn kind(attrs: &FileAttributes) -> Kind {
    match attrs.permissions.map(|mode| mode & S_IFMT) {
        Some(S_IFREG) => Kind::File,
        Some(S_IFDIR) => Kind::Dir,
        Some(S_IFLNK) => Kind::Symlink,
        _ => Kind::Other,
    }
}

/// Whether `name` is one of our temporary file names.
fn is_temp_name(name: &str) -> bool {
    name.strip_prefix(TEMP_PREFIX).is_some_and(|rest| {
        rest.len() == TEMP_HEX_DIGITS
            && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// The parent directory of an absolute server path.
fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(slash) => &path[..slash],
        None => path,
    }
}

/// Clamps `range` to an object of `len` bytes, per the contract.
fn clamp_range(key: &str, range: Range<u64>, len: u64) -> Result<Range<u64>> {
    if range.start > range.end {
        return Err(Error::InvalidArgument(format!(
            "invalid range {range:?} for {key}: start after end"
        )));
    }
    if range.start == range.end && range.start <= len {
        return Ok(range);
    }
    if range.start >= len {
        return Err(Error::InvalidArgument(format!(
            "range {range:?} starts at or past the end of {key} ({len} bytes)"
        )));
    }
    Ok(range.start..range.end.min(len))
}

/// The delay before retry number `attempt` (from 0): exponential with
/// "equal jitter", so that clients that failed together spread out.
fn backoff(attempt: u32) -> Duration {
    let exponential = BACKOFF_BASE.saturating_mul(1u32 << attempt.min(16));
    let ceiling = exponential.min(BACKOFF_MAX);
    let half = ceiling / 2;
    half + half.mul_f64(rand::thread_rng().gen::<f64>())
}

/// A message-only error, the source of [`Error::Sink`].
#[derive(Debug)]
struct SftpSinkError(String);

impl fmt::Display for SftpSinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SftpSinkError {}

/// Builds an [`Error::Sink`].
fn sink_error(operation: &'static str, key: &str, temporary: bool, message: String) -> Error {
    Error::Sink {
        operation,
        key: key.to_owned(),
        temporary,
        source: Box::new(SftpSinkError(message)),
    }
}

/// The user's home directory.
fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
}

/// Finds the private key file to use.
fn private_key_path(options: &SftpOptions) -> Result<PathBuf> {
    if let Some(path) = &options.private_key {
        return Ok(path.clone());
    }
    let home = home_dir().ok_or_else(|| {
        Error::InvalidArgument(
            "no private key given for the SFTP connection, and $HOME is not set to look for \
             ~/.ssh/id_ed25519 or ~/.ssh/id_rsa"
                .to_owned(),
        )
    })?;
    let candidates = [home.join(".ssh/id_ed25519"), home.join(".ssh/id_rsa")];
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "no private key given for the SFTP connection, and neither {} nor {} exists",
                candidates[0].display(),
                candidates[1].display()
            ))
        })
}

/// Reads and decrypts the private key.
async fn load_private_key(
    path: &Path,
    passphrase: Option<Zeroizing<String>>,
) -> Result<PrivateKey> {
    let owned = path.to_owned();
    let loaded = tokio::task::spawn_blocking(move || {
        russh::keys::load_secret_key(&owned, passphrase.as_ref().map(|p| p.as_str()))
            .map_err(|error| (error, passphrase.is_some()))
    })
    .await
    .map_err(|error| {
        Error::InvalidArgument(format!(
            "loading the SSH private key {}: {error}",
            path.display()
        ))
    })?;
    loaded.map_err(|(error, had_passphrase)| {
        let shown = path.display();
        match error {
            russh::keys::Error::IO(io) => Error::io("reading SSH private key", path, io),
            russh::keys::Error::KeyIsEncrypted => Error::InvalidArgument(format!(
                "the SSH private key {shown} is protected by a passphrase, and none was given"
            )),
            other if had_passphrase => Error::InvalidArgument(format!(
                "cannot decrypt the SSH private key {shown}: wrong passphrase or unsupported key \
                 format ({other})"
            )),
            other => Error::InvalidArgument(format!(
                "cannot read the SSH private key {shown}: {other} (expected an ed25519 or RSA key \
                 in OpenSSH format, as written by ssh-keygen)"
            )),
        }
    })
}

/// Checks that a pinned fingerprint looks like `ssh-keygen -lf` output.
fn validate_fingerprint(fingerprint: &str) -> Result<String> {
    let trimmed = fingerprint.trim();
    let valid = trimmed.strip_prefix("SHA256:").is_some_and(|digest| {
        // 32 bytes are 43 characters of unpadded base64.
        let digest = digest.trim_end_matches('=');
        digest.len() == 43
            && digest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    });
    if !valid {
        return Err(Error::InvalidArgument(format!(
            "invalid host key fingerprint {fingerprint:?}: expected SHA256: followed by 43 \
             base64 characters, as `ssh-keygen -lf <host key>.pub` prints"
        )));
    }
    Ok(trimmed.trim_end_matches('=').to_owned())
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
                max_retries: options.max_retries,
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

    /// Opens a new connection, checking (or creating) the base directory.
    async fn establish(&self, create_base_dir: bool) -> Result<Connection> {
        let inner = &self.inner;
        match tokio::time::timeout(
            inner.connect_timeout,
            self.establish_untimed(create_base_dir),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(sink_error(
                "connect",
                &inner.target.url(),
                true,
                format!(
                    "timed out after {:?} connecting to {} (SSH handshake, authentication or \
                     SFTP start-up did not finish)",
                    inner.connect_timeout,
                    inner.target.host_port()
                ),
            )),
        }
    }

    async fn establish_untimed(&self, create_base_dir: bool) -> Result<Connection> {
        let inner = &self.inner;
        let target = &inner.target;
        let connect_error = |temporary: bool, message: String| {
            sink_error("connect", &target.url(), temporary, message)
        };
        let preferred = russh::Preferred {
            key: inner
                .host_keys
                .preferred_algorithms(&target.host, target.port)
                .into(),
            ..russh::Preferred::default()
        };
        let config = Arc::new(client::Config {
            keepalive_interval: Some(Duration::from_secs(15)),
            keepalive_max: 4,
            nodelay: true,
            preferred,
            ..client::Config::default()
        });
        let handler = ClientHandler {
            host: target.host.clone(),
            port: target.port,
            host_keys: inner.host_keys.clone(),
        };
        let mut ssh = client::connect(config, (target.host.as_str(), target.port), handler)
            .await
            .map_err(|error| match error {
                HandlerError::HostKey(message) => connect_error(false, message),
                HandlerError::Ssh(russh::Error::IO(io)) => connect_error(
                    true,
                    format!("cannot connect to {}: {io}", target.host_port()),
                ),
                HandlerError::Ssh(other) => connect_error(
                    is_transient(&other),
                    format!("SSH handshake with {} failed: {other}", target.host_port()),
                ),
            })?;

        // RSA keys sign with SHA-2 when the server allows it.
        let hash = if inner.key.algorithm().is_rsa() {
            match ssh.best_supported_rsa_hash().await {
                Ok(Some(hash)) => hash,
                _ => Some(HashAlg::Sha256),
            }
        } else {
            None
        };
        let auth = ssh
            .authenticate_publickey(
                target.user.clone(),
                PrivateKeyWithHashAlg::new(inner.key.clone(), hash),
            )
            .await
            .map_err(|error| {
                connect_error(
                    is_transient(&error),
                    format!(
                        "SSH authentication with {} failed: {error}",
                        target.host_port()
                    ),
                )
            })?;
        if !auth.success() {
            return Err(connect_error(
                false,
                format!(
                    "authentication refused: {} did not accept the {} key {} ({}) for user {:?}; \
                     add its public key to ~{}/.ssh/authorized_keys on the server",
                    target.host_port(),
                    inner.key.algorithm(),
                    inner.key_path.display(),
                    inner.key.public_key().fingerprint(HashAlg::Sha256),
                    target.user,
                    target.user
                ),
            ));
        }

        let ssh_failure = |what: &str, error: russh::Error| {
            connect_error(
                is_transient(&error),
                format!("{what} on {} failed: {error}", target.host_port()),
            )
        };
        let mut channel = ssh
            .channel_open_session()
            .await
            .map_err(|e| ssh_failure("opening an SSH session channel", e))?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| ssh_failure("requesting the SFTP subsystem", e))?;
        loop {
            match channel.wait().await {
                Some(ChannelMsg::Success) => break,
                Some(ChannelMsg::Failure) | None => {
                    return Err(connect_error(
                        false,
                        format!(
                            "{} refused to start the SFTP subsystem for user {:?} (is \
                             `Subsystem sftp` configured in sshd_config?)",
                            target.host_port(),
                            target.user
                        ),
                    ))
                }
                // Window adjustments and the like before the answer.
                Some(_) => {}
            }
        }

        let sftp_config = russh_sftp::client::Config {
            request_timeout_secs: inner.request_timeout.as_secs_f64().ceil().max(1.0) as u64,
            ..russh_sftp::client::Config::default()
        };
        let sftp = RawSftpSession::new_with_config(channel.into_stream(), sftp_config);
        let sftp_error = |what: &str, error: SftpError| {
            connect_error(
                true,
                format!("{what} with {} failed: {error}", target.host_port()),
            )
        };
        let version = sftp
            .init()
            .await
            .map_err(|e| sftp_error("starting SFTP", e))?;
        let has = |name: &str, version_text: &str| {
            version
                .extensions
                .get(name)
                .is_some_and(|v| v == version_text)
        };
        let fsync = has("fsync@openssh.com", "1");
        let posix_rename = has("posix-rename@openssh.com", "1");
        let (mut read_len, mut write_len) = (FALLBACK_IO_LEN, FALLBACK_IO_LEN);
        if has("limits@openssh.com", "1") {
            let limits = sftp
                .limits()
                .await
                .map_err(|e| sftp_error("reading the SFTP limits", e))?;
            let pick = |stated: u64| match stated {
                0 => MAX_IO_LEN,
                stated => stated.min(MAX_IO_LEN),
            };
            read_len = pick(limits.max_read_len);
            write_len = pick(limits.max_write_len);
        }
        let connection = Connection {
            ssh,
            sftp,
            fsync,
            posix_rename,
            read_len: u32::try_from(read_len).unwrap_or(u32::MAX),
            write_len: usize::try_from(write_len).unwrap_or(usize::MAX),
        };
        self.check_base(&connection, create_base_dir).await?;
        tracing::debug!(
            location = %target.url(),
            fsync,
            posix_rename,
            read_len,
            write_len,
            "SFTP connection established"
        );
        Ok(connection)
    }

    /// Checks that the base directory exists, creating it if asked.
    async fn check_base(&self, connection: &Connection, create: bool) -> Result<()> {
        let target = &self.inner.target;
        let base = &target.base;
        let error = |message: String| sink_error("connect", &target.url(), false, message);
        match connection.sftp.stat(base.clone()).await {
            Ok(attrs) if kind(&attrs.attrs) == Kind::Dir => Ok(()),
            Ok(_) => Err(error(format!(
                "the base path {base} on {} is not a directory",
                target.host_port()
            ))),
            Err(e) if is_status(&e, StatusCode::NoSuchFile) && create => {
                // mkdir -p, top down.
                let mut path = String::new();
                for segment in base.split('/').filter(|s| !s.is_empty()) {
                    path.push('/');
                    path.push_str(segment);
                    if let Err(e) = connection
                        .sftp
                        .mkdir(path.clone(), FileAttributes::empty())
                        .await
                    {
                        let exists = matches!(
                            connection.sftp.stat(path.clone()).await,
                            Ok(attrs) if kind(&attrs.attrs) == Kind::Dir
                        );
                        if !exists {
                            return Err(error(format!(
                                "cannot create the base directory {base} on {}: creating {path} \
                                 failed: {e}{}",
                                target.host_port(),
                                permission_hint(&e, &target.user)
                            )));
                        }
                    }
                }
                Ok(())
            }
            Err(e) if is_status(&e, StatusCode::NoSuchFile) => Err(error(format!(
                "the base directory {base} does not exist on {}: create it first (for example \
                 `ssh -p {} {}@{} mkdir -p {base}`), or let the sink create it \
                 (SftpOptions::create_base_dir)",
                target.host_port(),
                target.port,
                target.user,
                target.host
            ))),
            Err(e) if is_status(&e, StatusCode::PermissionDenied) => Err(error(format!(
                "permission denied reading the base directory {base} on {} as user {:?}",
                target.host_port(),
                target.user
            ))),
            Err(e) => Err(sink_error(
                "connect",
                &target.url(),
                !matches!(e, SftpError::Status(_)),
                format!(
                    "checking the base directory {base} on {} failed: {e}",
                    target.host_port()
                ),
            )),
        }
    }

    /// The live connection, reconnecting if there is none.
    async fn connection(&self) -> Result<Arc<Connection>> {
        let mut current = self.inner.current.lock().await;
        if let Some(connection) = current.as_ref() {
            if !connection.ssh.is_closed() {
                return Ok(connection.clone());
            }
            tracing::debug!(location = %self.location(), "SSH connection closed; reconnecting");
        }
        *current = None;
        let connection = Arc::new(self.establish(false).await?);
        *current = Some(connection.clone());
        Ok(connection)
    }

    /// Forgets `failed` unless another operation already replaced it.
    async fn discard(&self, failed: &Arc<Connection>) {
        let mut current = self.inner.current.lock().await;
        if current
            .as_ref()
            .is_some_and(|connection| Arc::ptr_eq(connection, failed))
        {
            *current = None;
        }
    }

    /// Runs `attempt` on the live connection, reconnecting and retrying
    /// when the connection fails.
    async fn run<T, F, Fut>(&self, operation: &'static str, key: &str, mut attempt: F) -> Result<T>
    where
        F: FnMut(Arc<Connection>) -> Fut,
        Fut: Future<Output = Step<T>>,
    {
        let _permit = self.inner.limiter.acquire().await.map_err(|e| {
            sink_error(
                operation,
                key,
                false,
                format!("the sink was shut down: {e}"),
            )
        })?;
        let mut retries = 0;
        loop {
            let connection = match self.connection().await {
                Ok(connection) => connection,
                Err(error) if error.is_temporary() && retries < self.inner.max_retries => {
                    tracing::warn!(location = %self.location(), %error, retries, "reconnecting failed; retrying");
                    tokio::time::sleep(backoff(retries)).await;
                    retries += 1;
                    continue;
                }
                Err(error) => return Err(error),
            };
            match attempt(connection.clone()).await {
                Ok(value) => return Ok(value),
                Err(Failure::Connection(detail)) => {
                    self.discard(&connection).await;
                    if retries >= self.inner.max_retries {
                        return Err(sink_error(
                            operation,
                            key,
                            true,
                            format!(
                                "connection to {} lost ({detail}); gave up after {} retries",
                                self.inner.target.host_port(),
                                retries
                            ),
                        ));
                    }
                    tracing::warn!(location = %self.location(), operation, key, %detail, retries, "SFTP connection failed; reconnecting");
                    tokio::time::sleep(backoff(retries)).await;
                    retries += 1;
                }
                Err(Failure::Status(status)) => {
                    return Err(self.status_error(operation, key, &status))
                }
                Err(Failure::Done(error)) => return Err(error),
                Err(Failure::Message(message)) => {
                    return Err(sink_error(operation, key, false, message))
                }
            }
        }
    }

    /// The error for a status the server answered.
    fn status_error(&self, operation: &'static str, key: &str, status: &StatusFailure) -> Error {
        let StatusFailure {
            code,
            server_message,
            action,
            path,
            writing,
        } = status;
        let target = &self.inner.target;
        let host = target.host_port();
        // OpenSSH's messages only repeat the status name.
        let detail = if server_message.is_empty()
            || server_message.eq_ignore_ascii_case(&code.to_string())
            || server_message.eq_ignore_ascii_case("success")
        {
            String::new()
        } else {
            format!(" (server says: {server_message})")
        };
        let message = match *code {
            StatusCode::PermissionDenied => format!(
                "permission denied {action} {path} on {host} as user {:?}{detail}",
                target.user
            ),
            StatusCode::Failure if *writing => format!(
                "storage full or write failed {action} {path} on {host}{detail}: check free \
                 space and quotas on the server"
            ),
            StatusCode::NoSuchFile => {
                format!("{action} {path} on {host}: no such file or directory{detail}")
            }
            other => format!("{action} {path} on {host} failed: {other}{detail}"),
        };
        sink_error(operation, key, false, message)
    }

    /// Validates `key` and returns its absolute path on the server.
    fn path_of(&self, key: &str) -> Result<String> {
        validate_key(key)?;
        let name = key.rsplit('/').next().unwrap_or(key);
        if is_temp_name(name) {
            return Err(Error::InvalidArgument(format!(
                "invalid object key {key:?}: an SFTP sink reserves names of the form \
                 {TEMP_PREFIX}<{TEMP_HEX_DIGITS} hex digits> for its temporary files"
            )));
        }
        Ok(self.inner.target.join(key))
    }

    /// Creates the directories of `key`'s parents below the base.
    async fn create_parents(&self, connection: &Connection, key: &str) -> Step<()> {
        let target = &self.inner.target;
        let segments: Vec<&str> = key.split('/').collect();
        let Some((_, parents)) = segments.split_last() else {
            return Ok(());
        };
        let mut relative = String::new();
        for (depth, segment) in parents.iter().enumerate() {
            if depth > 0 {
                relative.push('/');
            }
            relative.push_str(segment);
            let path = target.join(&relative);
            let Err(error) = connection
                .sftp
                .mkdir(path.clone(), FileAttributes::empty())
                .await
            else {
                continue;
            };
            if !matches!(error, SftpError::Status(_)) {
                return Err(write_failure(error, "creating directory", &path));
            }
            // Usually it exists already (another put made it meanwhile).
            match connection.sftp.stat(path.clone()).await {
                Ok(attrs) if kind(&attrs.attrs) == Kind::Dir => {}
                Ok(_) => {
                    return Err(Failure::Message(format!(
                        "cannot store {key:?}: the object {relative:?} is in the way (its file \
                         {path} on {} would have to be a directory)",
                        target.host_port()
                    )))
                }
                Err(stat_error) if depth == 0 && is_status(&stat_error, StatusCode::NoSuchFile) => {
                    if matches!(connection.sftp.stat(target.base.clone()).await, Err(ref e) if is_status(e, StatusCode::NoSuchFile))
                    {
                        return Err(Failure::Message(format!(
                            "the base directory {} no longer exists on {} (was it removed, or is \
                             its volume unmounted?)",
                            target.base,
                            target.host_port()
                        )));
                    }
                    return Err(write_failure(error, "creating directory", &path));
                }
                Err(_) => return Err(write_failure(error, "creating directory", &path)),
            }
        }
        Ok(())
    }

    /// Opens a new temporary file in `dir` for writing.
    async fn create_temp(&self, connection: &Connection, dir: &str) -> Step<(String, String)> {
        let mut attempt = 0;
        loop {
            let temp = format!(
                "{}/{TEMP_PREFIX}{:032x}",
                if dir == "/" { "" } else { dir },
                rand::random::<u128>()
            );
            let opened = connection
                .sftp
                .open(
                    temp.clone(),
                    OpenFlags::WRITE | OpenFlags::CREATE | OpenFlags::EXCLUDE,
                    FileAttributes::empty(),
                )
                .await;
            match opened {
                Ok(handle) => return Ok((temp, handle.handle)),
                // "Failure" is how OpenSSH reports an existing file: a
                // collision of 128 random bits, only worth a few retries.
                Err(error) if is_status(&error, StatusCode::Failure) && attempt < 2 => attempt += 1,
                Err(error) => {
                    return Err(write_failure(error, "creating a temporary file in", dir))
                }
            }
        }
    }

    /// Removes a file, ignoring every error (for cleaning up).
    async fn remove_quietly(&self, connection: &Connection, path: &str) {
        if let Err(error) = connection.sftp.remove(path.to_owned()).await {
            tracing::debug!(path, %error, "could not remove a temporary file");
        }
    }

    /// Writes `data` through `handle`, syncs and closes it.
    async fn write_file(
        &self,
        connection: &Connection,
        handle: &str,
        path: &str,
        data: &Bytes,
    ) -> Step<()> {
        let chunk_len = connection.write_len.max(1);
        let chunks = data
            .chunks(chunk_len)
            .enumerate()
            .map(|(index, chunk)| Ok::<_, Failure>(((index * chunk_len) as u64, chunk)));
        let written = stream::iter(chunks)
            .try_for_each_concurrent(IO_PIPELINE, |(offset, chunk)| async move {
                connection
                    .sftp
                    .write(handle.to_owned(), offset, chunk.to_vec())
                    .await
                    .map(|_| ())
                    .map_err(|e| write_failure(e, "writing", path))
            })
            .await;
        let synced = match written {
            Ok(()) if connection.fsync => connection
                .sftp
                .fsync(handle.to_owned())
                .await
                .map(|_| ())
                .map_err(|e| write_failure(e, "syncing", path)),
            other => other,
        };
        let closed = connection
            .sftp
            .close(handle.to_owned())
            .await
            .map(|_| ())
            .map_err(|e| write_failure(e, "closing", path));
        synced.and(closed)
    }

    /// Makes a directory's entries durable, where the server can.
    async fn sync_dir(&self, connection: &Connection, dir: &str) {
        if !connection.fsync {
            return;
        }
        // OpenSSH opens directories read-only like files, and
        // fsync@openssh.com then syncs the directory: best effort.
        let Ok(handle) = connection
            .sftp
            .open(dir.to_owned(), OpenFlags::READ, FileAttributes::empty())
            .await
        else {
            return;
        };
        if let Err(error) = connection.sftp.fsync(handle.handle.clone()).await {
            tracing::debug!(dir, %error, "could not sync directory");
        }
        let _ = connection.sftp.close(handle.handle).await;
    }

    /// Moves the temporary file into place.
    async fn move_into_place(
        &self,
        connection: &Connection,
        put: &PutJob<'_>,
        temp: &str,
    ) -> Step<()> {
        let PutJob {
            key,
            path,
            data,
            mode,
            rename_sent,
        } = *put;
        let sftp = &connection.sftp;
        let directory_in_the_way = || {
            Failure::Message(format!(
                "cannot store {key:?}: {DIRECTORY_IN_THE_WAY} {path} on {}",
                self.inner.target.host_port()
            ))
        };
        match mode {
            PutMode::Create => {
                let earlier_attempt_renamed = rename_sent.swap(true, Ordering::SeqCst);
                // SFTPv3 rename refuses to replace a file: OpenSSH links the
                // new name (failing if it exists), then unlinks the old one.
                let Err(error) = sftp.rename(temp.to_owned(), path.to_owned()).await else {
                    return Ok(());
                };
                if !matches!(error, SftpError::Status(_)) {
                    return Err(write_failure(error, "moving into place", path));
                }
                match sftp.stat(path.to_owned()).await {
                    Ok(attrs) if kind(&attrs.attrs) == Kind::Dir => Err(directory_in_the_way()),
                    Ok(_) => {
                        // An earlier attempt whose answer was lost with the
                        // connection may have stored our own data.
                        if earlier_attempt_renamed {
                            if let Ok(stored) = self.read_attempt(connection, key, path, None).await
                            {
                                if stored == *data {
                                    self.remove_quietly(connection, temp).await;
                                    return Ok(());
                                }
                            }
                        }
                        Err(Failure::Done(Error::AlreadyExists {
                            key: key.to_owned(),
                        }))
                    }
                    Err(_) => Err(write_failure(error, "moving into place", path)),
                }
            }
            _ if connection.posix_rename => {
                let Err(error) = posix_rename(sftp, temp, path).await else {
                    return Ok(());
                };
                if matches!(error, SftpError::Status(_))
                    && matches!(sftp.stat(path.to_owned()).await, Ok(attrs) if kind(&attrs.attrs) == Kind::Dir)
                {
                    return Err(directory_in_the_way());
                }
                Err(write_failure(error, "moving into place", path))
            }
            _ => {
                // No atomic replace on this server: remove, then rename.
                let Err(error) = sftp.rename(temp.to_owned(), path.to_owned()).await else {
                    return Ok(());
                };
                match sftp.stat(path.to_owned()).await {
                    Ok(attrs) if kind(&attrs.attrs) == Kind::Dir => Err(directory_in_the_way()),
                    Ok(_) => {
                        sftp.remove(path.to_owned())
                            .await
                            .map_err(|e| write_failure(e, "replacing", path))?;
                        sftp.rename(temp.to_owned(), path.to_owned())
                            .await
                            .map(|_| ())
                            .map_err(|e| write_failure(e, "moving into place", path))
                    }
                    Err(_) => Err(write_failure(error, "moving into place", path)),
                }
            }
        }
    }

    /// One attempt of a put.
    async fn put_attempt(&self, connection: &Connection, put: &PutJob<'_>) -> Step<()> {
        let dir = parent_of(put.path);
        let (temp, handle) = match self.create_temp(connection, dir).await {
            Ok(created) => created,
            Err(Failure::Status(StatusFailure {
                code: StatusCode::NoSuchFile,
                ..
            })) => {
                self.create_parents(connection, put.key).await?;
                self.create_temp(connection, dir).await?
            }
            Err(other) => return Err(other),
        };
        if let Err(failure) = self
            .write_file(connection, &handle, put.path, put.data)
            .await
        {
            self.remove_quietly(connection, &temp).await;
            return Err(failure);
        }
        if let Err(failure) = self.move_into_place(connection, put, &temp).await {
            self.remove_quietly(connection, &temp).await;
            return Err(failure);
        }
        self.sync_dir(connection, dir).await;
        Ok(())
    }

    /// One attempt of a (ranged) get.
    async fn read_attempt(
        &self,
        connection: &Connection,
        key: &str,
        path: &str,
        range: Option<Range<u64>>,
    ) -> Step<Bytes> {
        let sftp = &connection.sftp;
        let not_found = || {
            Failure::Done(Error::NotFound {
                key: key.to_owned(),
            })
        };
        let handle = match sftp
            .open(path.to_owned(), OpenFlags::READ, FileAttributes::empty())
            .await
        {
            Ok(handle) => handle.handle,
            Err(e) if is_status(&e, StatusCode::NoSuchFile) => return Err(not_found()),
            Err(e) => return Err(failure(e, "opening", path)),
        };
        let result = async {
            let attrs = sftp
                .fstat(handle.clone())
                .await
                .map_err(|e| failure(e, "reading the size of", path))?
                .attrs;
            // A directory holds other keys; it is not an object.
            if kind(&attrs) != Kind::File {
                return Err(not_found());
            }
            let len = attrs.size.unwrap_or(0);
            let range = match range {
                Some(range) => clamp_range(key, range, len).map_err(Failure::Done)?,
                None => 0..len,
            };
            let total = usize::try_from(range.end - range.start).map_err(|_| {
                Failure::Done(Error::InvalidArgument(format!(
                    "range of {key} is too large for this platform's memory"
                )))
            })?;
            let step = u64::from(connection.read_len.max(1));
            let pieces = (range.start..range.end)
                .step_by(usize::try_from(step).unwrap_or(usize::MAX))
                .map(|offset| (offset, (range.end - offset).min(step)));
            let mut buffer = BytesMut::with_capacity(total);
            let mut chunks = stream::iter(pieces)
                .map(|(offset, want)| read_exactly(connection, &handle, path, offset, want))
                .buffered(IO_PIPELINE);
            while let Some(chunk) = chunks.next().await {
                buffer.extend_from_slice(&chunk?);
            }
            Ok(buffer.freeze())
        }
        .await;
        // The data is complete; a failed close changes nothing for us.
        if let Err(error) = sftp.close(handle).await {
            tracing::debug!(path, %error, "could not close a read handle");
        }
        result
    }

    /// One attempt of a head.
    async fn head_attempt(
        &self,
        connection: &Connection,
        key: &str,
        path: &str,
    ) -> Step<ObjectMeta> {
        match connection.sftp.stat(path.to_owned()).await {
            Ok(attrs) if kind(&attrs.attrs) == Kind::File => Ok(ObjectMeta {
                key: key.to_owned(),
                size: attrs.attrs.size.unwrap_or(0),
            }),
            // A directory holds other keys; it is not an object.
            Ok(_) => Err(Failure::Done(Error::NotFound {
                key: key.to_owned(),
            })),
            Err(e) if is_status(&e, StatusCode::NoSuchFile) => {
                Err(Failure::Done(Error::NotFound {
                    key: key.to_owned(),
                }))
            }
            Err(e) => Err(failure(e, "reading the attributes of", path)),
        }
    }

    /// One attempt of a delete.
    async fn delete_attempt(&self, connection: &Connection, path: &str) -> Step<()> {
        let Err(error) = connection.sftp.remove(path.to_owned()).await else {
            return Ok(());
        };
        if !matches!(error, SftpError::Status(_)) || is_status(&error, StatusCode::NoSuchFile) {
            return match error {
                SftpError::Status(_) => Ok(()),
                other => Err(failure(other, "deleting", path)),
            };
        }
        // A directory at the path means no object has this key.
        match connection.sftp.stat(path.to_owned()).await {
            Ok(attrs) if kind(&attrs.attrs) == Kind::Dir => Ok(()),
            Err(e) if is_status(&e, StatusCode::NoSuchFile) => Ok(()),
            _ => Err(write_failure(error, "deleting", path)),
        }
    }

    /// Reads the entries of one directory; `None` if it does not exist (or
    /// is not a directory).
    async fn read_dir(
        &self,
        connection: &Connection,
        path: &str,
    ) -> Step<Option<Vec<russh_sftp::protocol::File>>> {
        let sftp = &connection.sftp;
        let handle = match sftp.opendir(path.to_owned()).await {
            Ok(handle) => handle.handle,
            Err(e) if is_status(&e, StatusCode::NoSuchFile) => return Ok(None),
            Err(e) => return Err(failure(e, "listing directory", path)),
        };
        let mut entries = Vec::new();
        let result = loop {
            match sftp.readdir(handle.clone()).await {
                Ok(name) => entries.extend(name.files),
                Err(e) if is_status(&e, StatusCode::Eof) => break Ok(Some(entries)),
                Err(e) => break Err(failure(e, "listing directory", path)),
            }
        };
        if let Err(error) = sftp.close(handle).await {
            tracing::debug!(path, %error, "could not close a directory handle");
        }
        result
    }

    /// One attempt of a list.
    async fn list_attempt(&self, connection: &Connection, prefix: &str) -> Step<Vec<ObjectMeta>> {
        let target = &self.inner.target;
        // Start at the deepest directory named by the prefix's whole segments.
        let (dir_key, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
        if !dir_key.is_empty()
            && dir_key.split('/').any(|segment| {
                segment.is_empty() || segment == "." || segment == ".." || segment.contains('\0')
            })
        {
            // No valid key has such a segment, so nothing can match (and
            // `..` must never lead the walk outside the base).
            return Ok(Vec::new());
        }
        let (start, start_key) = if dir_key.is_empty() {
            (target.base.clone(), String::new())
        } else {
            (target.join(dir_key), format!("{dir_key}/"))
        };

        let mut objects = Vec::new();
        let mut pending = vec![(start, start_key)];
        let mut running = FuturesUnordered::new();
        loop {
            while running.len() < LIST_CONCURRENCY {
                let Some((path, dir_key)) = pending.pop() else {
                    break;
                };
                running.push(async move {
                    let entries = self.read_dir(connection, &path).await;
                    (entries, path, dir_key)
                });
            }
            let Some((entries, dir_path, dir_key)) = running.next().await else {
                break;
            };
            let Some(entries) = entries? else {
                // A missing base is an unmounted volume or a wrong path,
                // not an empty repository.
                if dir_path == target.base {
                    return Err(Failure::Message(format!(
                        "the base directory {} no longer exists on {} (was it removed, or is \
                         its volume unmounted?)",
                        target.base,
                        target.host_port()
                    )));
                }
                // Missing (or removed meanwhile, or a file): nothing below it.
                continue;
            };
            for entry in entries {
                let name = entry.filename;
                if name == "." || name == ".." {
                    continue;
                }
                let key = format!("{dir_key}{name}");
                let path = if dir_path == "/" {
                    format!("/{name}")
                } else {
                    format!("{dir_path}/{name}")
                };
                let mut attrs = entry.attrs;
                if kind(&attrs) == Kind::Symlink || attrs.size.is_none() {
                    // Follow links, as get and put do.
                    attrs = match connection.sftp.stat(path.clone()).await {
                        Ok(attrs) => attrs.attrs,
                        Err(e) if is_status(&e, StatusCode::NoSuchFile) => continue,
                        Err(e) => return Err(failure(e, "reading the attributes of", &path)),
                    };
                }
                match kind(&attrs) {
                    Kind::Dir => {
                        let sub_key = format!("{key}/");
                        // Only descend where keys can still match the prefix.
                        if sub_key.starts_with(prefix) || prefix.starts_with(&sub_key) {
                            pending.push((path, sub_key));
                        }
                    }
                    Kind::File if !is_temp_name(&name) && key.starts_with(prefix) => {
                        objects.push(ObjectMeta {
                            key,
                            size: attrs.size.unwrap_or(0),
                        });
                    }
                    _ => {}
                }
            }
        }
        objects.sort_unstable_by(|a, b| a.key.cmp(&b.key));
        Ok(objects)
    }
}

/// Reads exactly `want` bytes at `offset`, following short reads.
async fn read_exactly(
    connection: &Connection,
    handle: &str,
    path: &str,
    offset: u64,
    want: u64,
) -> Step<Vec<u8>> {
    let mut data = Vec::new();
    while (data.len() as u64) < want {
        let missing = want - data.len() as u64;
        let at = offset + data.len() as u64;
        match connection
            .sftp
            .read(
                handle.to_owned(),
                at,
                u32::try_from(missing).unwrap_or(u32::MAX),
            )
            .await
        {
            Ok(piece) if piece.data.is_empty() => break,
            Ok(piece) => data.extend_from_slice(&piece.data),
            Err(e) if is_status(&e, StatusCode::Eof) => break,
            Err(e) => return Err(failure(e, "reading", path)),
        }
    }
    if (data.len() as u64) < want {
        return Err(Failure::Message(format!(
            "{path} ended at byte {} while reading {want} bytes at offset {offset}: the file \
             was truncated on the server",
            offset + data.len() as u64
        )));
    }
    Ok(data)
}

/// Renames with `posix-rename@openssh.com`, which replaces the target
/// atomically.
async fn posix_rename(
    sftp: &RawSftpSession,
    from: &str,
    to: &str,
) -> std::result::Result<(), SftpError> {
    let mut data = Vec::with_capacity(8 + from.len() + to.len());
    for text in [from, to] {
        let len = u32::try_from(text.len())
            .map_err(|_| SftpError::UnexpectedBehavior("path too long".to_owned()))?;
        data.extend_from_slice(&len.to_be_bytes());
        data.extend_from_slice(text.as_bytes());
    }
    match sftp.extended("posix-rename@openssh.com", data).await? {
        Packet::Status(status) if status.status_code == StatusCode::Ok => Ok(()),
        Packet::Status(status) => Err(SftpError::Status(status)),
        _ => Err(SftpError::UnexpectedPacket),
    }
}

/// Whether a russh error means the network or the server went away, so that
/// trying again later may succeed.
fn is_transient(error: &russh::Error) -> bool {
    matches!(
        error,
        russh::Error::IO(_)
            | russh::Error::Disconnect
            | russh::Error::HUP
            | russh::Error::ConnectionTimeout
            | russh::Error::KeepaliveTimeout
            | russh::Error::InactivityTimeout
            | russh::Error::SendError
            | russh::Error::Elapsed(_)
    )
}

/// A hint to append to a permission error.
fn permission_hint(error: &SftpError, user: &str) -> String {
    if is_status(error, StatusCode::PermissionDenied) {
        format!(" (user {user:?} may not write there)")
    } else {
        String::new()
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
            .field("max_retries", &inner.max_retries)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let target = Target::parse("sftp://backup@127.0.0.1:2222/srv/backups/repo").unwrap();
        assert_eq!(
            target,
            Target {
                user: "backup".into(),
                host: "127.0.0.1".into(),
                port: 2222,
                base: "/srv/backups/repo".into()
            }
        );
        assert_eq!(
            target.url(),
            "sftp://backup@127.0.0.1:2222/srv/backups/repo"
        );
        assert_eq!(target.join("a/b"), "/srv/backups/repo/a/b");

        let target = Target::parse("sftp://me@example.com/data/").unwrap();
        assert_eq!((target.port, target.base.as_str()), (22, "/data"));
        assert_eq!(target.url(), "sftp://me@example.com/data");

        let target = Target::parse("sftp://me@[::1]:2200/with%20space").unwrap();
        assert_eq!(target.host, "::1");
        assert_eq!(target.port, 2200);
        assert_eq!(target.base, "/with space");
        assert_eq!(target.host_port(), "[::1]:2200");

        let target = Target::parse("sftp://me@host/").unwrap();
        assert_eq!(target.join("k"), "/k");

        for bad in [
            "ssh://me@host/x",
            "sftp://me@host",
            "sftp://me@:22/x",
            "sftp://me@host:0/x",
            "sftp://me@host:99999/x",
            "sftp://me@host:port/x",
            "sftp://@host/x",
            "sftp://me@[::1/x",
            "sftp://me@host/%zz",
        ] {
            assert!(
                matches!(Target::parse(bad), Err(Error::InvalidArgument(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn fingerprints() {
        let good = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";
        assert_eq!(validate_fingerprint(good).unwrap(), good);
        assert_eq!(validate_fingerprint(&format!(" {good}= ")).unwrap(), good);
        for bad in [
            "uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s",
            "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48",
            "SHA256:short",
        ] {
            assert!(validate_fingerprint(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges_and_names() {
        assert_eq!(clamp_range("k", 5..50, 10).unwrap(), 5..10);
        assert_eq!(clamp_range("k", 10..10, 10).unwrap(), 10..10);
        assert!(clamp_range("k", 10..11, 10).is_err());
        assert!(is_temp_name(".tmp-0123456789abcdef0123456789abcdef"));
        assert!(!is_temp_name(".tmp-notes"));
        assert_eq!(parent_of("/a/b"), "/a");
        assert_eq!(parent_of("/a"), "/");
        for attempt in 0..40 {
            let delay = backoff(attempt);
            assert!(delay <= BACKOFF_MAX, "{delay:?}");
            assert!(delay >= BACKOFF_BASE / 2, "{delay:?}");
        }
    }

    #[test]
    fn debug_hides_the_passphrase() {
        let options = SftpOptions::default().with_passphrase("hunter2-secret");
        let shown = format!("{options:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn storage_full_is_called_out() {
        // status_error needs a sink; check the classification it relies on.
        let full = write_failure(
            SftpError::Status(russh_sftp::protocol::Status {
                id: 1,
                status_code: StatusCode::Failure,
                error_message: "Failure".into(),
                language_tag: "en".into(),
            }),
            "writing",
            "/repo/x",
        );
        assert!(matches!(
            full,
            Failure::Status(StatusFailure {
                code: StatusCode::Failure,
                writing: true,
                ..
            })
        ));
        assert!(matches!(
            failure(SftpError::Timeout, "reading", "/x"),
            Failure::Connection(_)
        ));
    }
}
