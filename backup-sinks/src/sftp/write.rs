//! The operations that change the server: a put writes a temporary file
//! next to its target, syncs it and moves it into place; a delete.

use std::sync::atomic::{AtomicBool, Ordering};

use backup_core::sink_support::temp_name;
use backup_core::{Error, PutMode};
use bytes::Bytes;
use futures::stream::{self, TryStreamExt};
use russh_sftp::client::error::Error as SftpError;
use russh_sftp::client::RawSftpSession;
use russh_sftp::protocol::{FileAttributes, OpenFlags, Packet, StatusCode};

use super::connection::Connection;
use super::failure::{base_gone, failure, is_status, write_failure, Failure, StatusFailure, Step};
use super::{kind, Kind, SftpSink, DIRECTORY_IN_THE_WAY, IO_PIPELINE};

/// One put, across its attempts.
#[derive(Clone, Copy)]
pub(super) struct PutJob<'a> {
    pub(super) key: &'a str,
    /// The object's absolute path on the server.
    pub(super) path: &'a str,
    pub(super) data: &'a Bytes,
    pub(super) mode: PutMode,
    /// Set once an attempt sent a create-only rename: if its answer was
    /// lost with the connection, the object may be ours.
    pub(super) rename_sent: &'a AtomicBool,
}

impl SftpSink {
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
                        return Err(base_gone(target));
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
            let temp = format!("{}/{}", if dir == "/" { "" } else { dir }, temp_name());
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
    pub(super) async fn put_attempt(&self, connection: &Connection, put: &PutJob<'_>) -> Step<()> {
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

    /// One attempt of a delete.
    pub(super) async fn delete_attempt(&self, connection: &Connection, path: &str) -> Step<()> {
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

/// The parent directory of an absolute server path.
fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(slash) => &path[..slash],
        None => path,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parents() {
        assert_eq!(parent_of("/a/b"), "/a");
        assert_eq!(parent_of("/a"), "/");
    }
}
