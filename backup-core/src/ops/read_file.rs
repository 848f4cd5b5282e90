//! Reading one stored file as a stream of checked chunks.

use std::pin::Pin;
use std::sync::Arc;

use futures::stream::{BoxStream, StreamExt};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::engine::Engine;
use crate::format::manifest::Backup;
use crate::format::tree::{Node, NodeKind};
use crate::{Error, Result};

/// Chunks fetched and decoded ahead of the one being read.
const CHUNKS_AHEAD: usize = 4;

/// One stored file, read chunk by chunk; every chunk is checked against its
/// id before it is handed out. Returned by
/// [`Repository::open_file`](crate::Repository::open_file).
pub struct FileReader {
    path: String,
    size: u64,
    mode: u32,
    delivered: u64,
    chunks: BoxStream<'static, Result<Vec<u8>>>,
}

impl std::fmt::Debug for FileReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileReader")
            .field("path", &self.path)
            .field("size", &self.size)
            .field("delivered", &self.delivered)
            .finish_non_exhaustive()
    }
}

impl FileReader {
    /// The file's path in the backup.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The file's size in bytes, as recorded (and checked against the index).
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The file's permission bits.
    pub fn mode(&self) -> u32 {
        self.mode
    }

    /// The next chunk of the file, or `None` at its end.
    ///
    /// # Errors
    ///
    /// Storage errors, and [`Error::Corrupt`] for a chunk that fails its
    /// check or a file whose chunks do not add up to its recorded size.
    pub async fn next_chunk(&mut self) -> Result<Option<Vec<u8>>> {
        match self.chunks.next().await {
            Some(Ok(chunk)) => {
                self.delivered += chunk.len() as u64;
                if self.delivered > self.size {
                    return Err(self.length_mismatch());
                }
                Ok(Some(chunk))
            }
            Some(Err(error)) => Err(error),
            None if self.delivered != self.size => Err(self.length_mismatch()),
            None => Ok(None),
        }
    }

    /// Writes the whole file to `writer` and flushes it; returns the bytes
    /// written.
    ///
    /// # Errors
    ///
    /// As [`FileReader::next_chunk`], and [`Error::Io`] when writing fails.
    pub async fn copy_to<W: AsyncWrite + Unpin + ?Sized>(mut self, writer: &mut W) -> Result<u64> {
        let mut written = 0u64;
        while let Some(chunk) = self.next_chunk().await? {
            writer
                .write_all(&chunk)
                .await
                .map_err(|error| Error::io("writing a stored file", &self.path, error))?;
            written += chunk.len() as u64;
        }
        writer
            .flush()
            .await
            .map_err(|error| Error::io("writing a stored file", &self.path, error))?;
        Ok(written)
    }

    fn length_mismatch(&self) -> Error {
        Error::corrupt(
            format!("file {:?}", self.path),
            self.delivered,
            format!(
                "its chunks do not add up to the recorded size {}",
                self.size
            ),
        )
    }
}

/// Finds `path` (`/`-separated, relative to the backup's root) in a backup.
pub(crate) async fn find_node(engine: &Arc<Engine>, backup: &Backup, path: &str) -> Result<Node> {
    let components: Vec<&str> = path.split('/').filter(|part| !part.is_empty()).collect();
    let not_found = || Error::NotFound {
        key: format!("{path:?} in backup {}", backup.id),
    };
    let Some((last, parents)) = components.split_last() else {
        return Err(Error::InvalidArgument(format!(
            "{path:?} names the backup's root, not a file in it"
        )));
    };
    let mut ids = backup.manifest.root.clone();
    let mut walked = String::new();
    for part in parents {
        let nodes = engine.load_tree(&walked, &ids).await?;
        let node = nodes
            .into_iter()
            .find(|node| node.name == *part)
            .ok_or_else(not_found)?;
        walked = if walked.is_empty() {
            node.name.clone()
        } else {
            format!("{walked}/{}", node.name)
        };
        ids = match (node.kind, node.subtree) {
            (NodeKind::Dir, Some(subtree)) => subtree,
            _ => return Err(not_found()),
        };
    }
    engine
        .load_tree(&walked, &ids)
        .await?
        .into_iter()
        .find(|node| node.name == *last)
        .ok_or_else(not_found)
}

/// Opens a stored regular file; see
/// [`Repository::open_file`](crate::Repository::open_file).
pub(crate) async fn open(engine: &Arc<Engine>, backup: &Backup, path: &str) -> Result<FileReader> {
    let node = find_node(engine, backup, path).await?;
    if node.kind != NodeKind::File {
        return Err(Error::InvalidArgument(format!(
            "{path:?} in backup {} is a {}, not a file",
            backup.id,
            match node.kind {
                NodeKind::Dir => "directory",
                NodeKind::Symlink => "symlink",
                NodeKind::File => "file",
            }
        )));
    }
    open_node(engine, node, path)
}

/// Opens the stored regular file `node`, found at `path` (for messages).
pub(crate) fn open_node(engine: &Arc<Engine>, node: Node, path: &str) -> Result<FileReader> {
    // The index knows every chunk's length: a content list that cannot add
    // up to the recorded size is refused before a byte is handed out.
    let indexed = engine.content_length(&node.content)?;
    if indexed != node.size {
        return Err(Error::corrupt(
            format!("file {path:?}"),
            0,
            format!(
                "its chunks hold {indexed} bytes but the recorded size is {}",
                node.size
            ),
        ));
    }
    let engine = engine.clone();
    let chunks = futures::stream::iter(node.content)
        .map(move |id| {
            let engine = engine.clone();
            async move {
                tokio::spawn(async move { engine.read_blob(&id).await })
                    .await
                    .unwrap_or_else(|error| {
                        Err(Error::io(
                            "reading a stored file",
                            std::path::PathBuf::new(),
                            std::io::Error::other(error),
                        ))
                    })
            }
        })
        .buffered(CHUNKS_AHEAD);
    Ok(FileReader {
        path: path.trim_matches('/').to_string(),
        size: node.size,
        mode: node.mode,
        delivered: 0,
        chunks: Box::pin(chunks) as Pin<Box<_>>,
    })
}
