//! The operations that read: get (whole or ranged), head and list.

use std::ops::Range;

use backup_core::sink_support::{clamp_range, is_temp_name, list_descends, list_start};
use backup_core::{Error, ObjectMeta};
use bytes::{Bytes, BytesMut};
use futures::stream::{self, FuturesUnordered, StreamExt};
use russh_sftp::protocol::{FileAttributes, OpenFlags, StatusCode};

use super::connection::Connection;
use super::failure::{base_gone, failure, is_status, Failure, Step};
use super::{kind, Kind, SftpSink, IO_PIPELINE, LIST_CONCURRENCY};

impl SftpSink {
    /// One attempt of a (ranged) get.
    pub(super) async fn read_attempt(
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
    pub(super) async fn head_attempt(
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
    pub(super) async fn list_attempt(
        &self,
        connection: &Connection,
        prefix: &str,
    ) -> Step<Vec<ObjectMeta>> {
        let target = &self.inner.target;
        let Some(dir_key) = list_start(prefix) else {
            return Ok(Vec::new());
        };
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
                    return Err(base_gone(target));
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
                        if list_descends(&sub_key, prefix) {
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
