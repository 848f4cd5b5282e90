//! The SSH connection with its SFTP session: establishing it (host key,
//! authentication, SFTP start-up, the base directory), and running an
//! operation on it, reconnecting and retrying when it drops.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use backup_core::{Result, Sink};
use russh::keys::{HashAlg, PrivateKeyWithHashAlg};
use russh::{client, ChannelMsg};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, StatusCode};

use super::failure::{is_status, sink_error, unauthenticated, Failure, Step};
use super::host_keys::{ClientHandler, HandlerError};
use super::{kind, Kind, SftpSink, FALLBACK_IO_LEN, MAX_IO_LEN};

/// One SSH connection with its SFTP session.
pub(super) struct Connection {
    pub(super) ssh: client::Handle<ClientHandler>,
    pub(super) sftp: RawSftpSession,
    /// The server offers `fsync@openssh.com`.
    pub(super) fsync: bool,
    /// The server offers `posix-rename@openssh.com`.
    pub(super) posix_rename: bool,
    /// Bytes per read request.
    pub(super) read_len: u32,
    /// Bytes per write request.
    pub(super) write_len: usize,
}

impl SftpSink {
    /// Opens a new connection, checking (or creating) the base directory.
    pub(super) async fn establish(&self, create_base_dir: bool) -> Result<Connection> {
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
            return Err(unauthenticated(
                &target.url(),
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
                "the base directory {base} does not exist on {}: check the repository's path \
                 (a volume not mounted?); creating a new repository there (`init`) creates \
                 it, or create it yourself (`ssh -p {} {}@{} mkdir -p {base}`)",
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
    pub(super) async fn run<T, F, Fut>(
        &self,
        operation: &'static str,
        key: &str,
        mut attempt: F,
    ) -> Result<T>
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
                Err(error) if error.is_temporary() && retries < self.inner.retry.max_retries => {
                    tracing::warn!(location = %self.location(), %error, retries, "reconnecting failed; retrying");
                    tokio::time::sleep(self.inner.retry.backoff(retries)).await;
                    retries += 1;
                    continue;
                }
                Err(error) => return Err(error),
            };
            match attempt(connection.clone()).await {
                Ok(value) => return Ok(value),
                Err(Failure::Connection(detail)) => {
                    self.discard(&connection).await;
                    if retries >= self.inner.retry.max_retries {
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
                    tokio::time::sleep(self.inner.retry.backoff(retries)).await;
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
