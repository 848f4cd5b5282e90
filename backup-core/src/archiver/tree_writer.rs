//! A backup's writer for trees that come from no snapshot: the caller
//! builds each directory's nodes itself and hands over the files' contents
//! as readers (a backup copied from another repository, `ops::copy`).
//! Contents and listings go through the same chunking, deduplication,
//! packing and indexing as a snapshot's entries.

use std::io::Read;
use std::sync::Arc;

use crate::engine::Engine;
use crate::format::tree::Node;
use crate::progress::Tracker;
use crate::{Error, Id, Result};

use super::*;

/// One backup's writer, fed node by node; see the [module](self).
pub(crate) struct TreeWriter {
    writer: Arc<BackupWriter>,
}

impl std::fmt::Debug for TreeWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TreeWriter").finish_non_exhaustive()
    }
}

impl TreeWriter {
    /// A writer into `repo`, reporting to `tracker`.
    pub(crate) fn new(repo: Arc<Engine>, tracker: Arc<Tracker>) -> TreeWriter {
        TreeWriter {
            writer: Arc::new(BackupWriter::new(repo, tracker)),
        }
    }

    /// Chunks and stores the content `reader` gives (read on a blocking
    /// thread) of the file at `path`; returns its chunk ids and length.
    ///
    /// # Errors
    ///
    /// Storage errors, and [`Error::Io`] when `reader` fails.
    pub(crate) async fn store_file(
        &self,
        path: &str,
        reader: Box<dyn Read + Send>,
    ) -> Result<(Vec<Id>, u64)> {
        match self.writer.store_stream(reader).await {
            Ok(stored) => Ok(stored),
            Err(FileFailure::Item(_, message)) => Err(Error::io(
                "reading a file to store",
                path,
                std::io::Error::other(message),
            )),
            Err(FileFailure::Fatal(error)) => Err(error),
        }
    }

    /// Encodes a directory listing, chunks it and stores the chunks.
    pub(crate) async fn store_tree(&self, nodes: Vec<Node>) -> Result<Vec<Id>> {
        self.writer.store_tree(nodes).await
    }

    /// Ends the backup whose root directory is `root` (see
    /// [`Archiver::archive`]'s contract): uploads what is left and writes the
    /// last index, even when `root` is an error.
    pub(crate) async fn finish(self, root: Result<Vec<Id>>) -> Result<Archived> {
        self.writer.finish(root).await
    }
}
