//! Files listed in advance ([`Entry::Files`]): those that look as they
//! did in the parent backup are taken from it unread, the others read
//! from the local file system or from the tar stream a [`FetchFiles`]
//! returns, and checked against their listed sizes.
//!
//! [`Entry::Files`]: crate::snapshot::Entry::Files

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::Ordering;

use futures::future::BoxFuture;

use crate::format::tree::{Node, NodeKind};
use crate::snapshot::{FetchFiles, ListedFile};
use crate::Error;

use super::tar_stream::{leaf_node, member_path, parse, ChannelReader, DirBuild, Member};
use super::*;

impl BackupWriter {
    /// Stores the listed `files` as the directory `name`.
    pub(super) async fn archive_files(
        self: &Arc<Self>,
        name: String,
        files: Vec<ListedFile>,
        fetch: Option<Box<dyn FetchFiles>>,
        parent: Option<Node>,
    ) -> Result<Option<Node>, FileFailure> {
        let broken = |detail: String| {
            FileFailure::Fatal(Error::Snapshot {
                source_name: name.clone(),
                detail,
            })
        };
        let parent_files = match parent {
            Some(node) if node.kind == NodeKind::Dir => {
                let mut found = HashMap::new();
                self.flatten(&mut found, String::new(), node).await;
                found
            }
            _ => HashMap::new(),
        };
        let mut root = DirBuild::default();
        let mut wanted: BTreeMap<String, (Vec<String>, ListedFile)> = BTreeMap::new();
        for file in files {
            let path = member_path(Path::new(&file.path)).map_err(&broken)?;
            if path.is_empty() {
                return Err(broken(format!("listed file {:?} has no name", file.source)));
            }
            let key = path.join("/");
            if let Some(before) = parent_files.get(&key) {
                if !file.reread
                    && before.kind == NodeKind::File
                    && before.size == file.size
                    && before.mtime_ns == file.mtime_ns
                    && before.content.iter().all(|id| self.repo.index_contains(id))
                {
                    self.stats.files.fetch_add(1, Ordering::Relaxed);
                    self.stats.files_unchanged.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .bytes_total
                        .fetch_add(file.size, Ordering::Relaxed);
                    self.tracker.bytes_done(file.size);
                    self.tracker.file_done();
                    let node = file_node(&path, &file, before.content.clone());
                    insert(&mut root, &path, node);
                    continue;
                }
            }
            let source = file.source.trim_start_matches('/').to_string();
            if wanted.insert(source, (path, file)).is_some() {
                return Err(broken("a file is listed twice".into()));
            }
        }
        if !wanted.is_empty() {
            match fetch {
                None => {
                    for (path, file) in std::mem::take(&mut wanted).into_values() {
                        let stored = self.store_large_file(Path::new(&file.source)).await;
                        let node = self.listed_stored(&path, &file, stored, &broken)?;
                        insert(&mut root, &path, node);
                    }
                }
                Some(fetch) => {
                    self.fetch_listed(fetch, &mut wanted, &mut root, &broken)
                        .await?;
                }
            }
        }
        if let Some((source, _)) = wanted.into_iter().next() {
            return Err(broken(format!(
                "/{source} was listed but not in the stream that read the files"
            )));
        }
        root.meta
            .get_or_insert((0o755, chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)));
        Ok(Some(self.store_tar_dir(name, root).await?))
    }

    /// Reads the wanted files from the stream `fetch` returns, removing
    /// each from `wanted` as it is stored.
    async fn fetch_listed(
        self: &Arc<Self>,
        fetch: Box<dyn FetchFiles>,
        wanted: &mut BTreeMap<String, (Vec<String>, ListedFile)>,
        root: &mut DirBuild,
        broken: &(dyn Fn(String) -> FileFailure + Sync),
    ) -> Result<(), FileFailure> {
        let sources: Vec<String> = wanted
            .values()
            .map(|(_, file)| file.source.clone())
            .collect();
        let reader = tokio::task::spawn_blocking(move || fetch.fetch(sources))
            .await
            .map_err(|error| broken(format!("the reading task failed: {error}")))?
            .map_err(|error| broken(format!("cannot read the files: {error}")))?;
        let (sender, mut members) = tokio::sync::mpsc::channel(1);
        let parsing = tokio::task::spawn_blocking(move || parse(reader, None, sender));
        let outcome: Result<(), FileFailure> = async {
            while let Some(member) = members.recv().await {
                let member = member.map_err(broken)?;
                let Member::File { path, data, .. } = member else {
                    continue;
                };
                let key = path.join("/");
                let Some((path, file)) = wanted.remove(&key) else {
                    return Err(broken(format!(
                        "the stream holds {key:?}, which was not asked for"
                    )));
                };
                let reader = ChannelReader {
                    data,
                    block: Vec::new(),
                    at: 0,
                };
                self.tracker.set_current(file.source.clone());
                let stored = self.store_stream(Box::new(reader)).await;
                let node = self.listed_stored(&path, &file, stored, broken)?;
                insert(root, &path, node);
            }
            Ok(())
        }
        .await;
        drop(members);
        let _ = parsing.await;
        outcome
    }

    /// The node of a listed file just stored, checked against its listing.
    fn listed_stored(
        &self,
        path: &[String],
        file: &ListedFile,
        stored: Result<(Vec<Id>, u64), FileFailure>,
        broken: &(dyn Fn(String) -> FileFailure + Sync),
    ) -> Result<Node, FileFailure> {
        let (content, size) = match stored {
            Ok(stored) => stored,
            Err(FileFailure::Item(_, message)) => {
                return Err(broken(format!("{}: {message}", file.source)))
            }
            Err(fatal) => return Err(fatal),
        };
        if size != file.size {
            return Err(broken(format!(
                "{} was listed with {} bytes but {size} were read: it changed while it was \
                 backed up",
                file.source, file.size
            )));
        }
        self.stats.files.fetch_add(1, Ordering::Relaxed);
        self.stats.bytes_total.fetch_add(size, Ordering::Relaxed);
        self.tracker.file_done();
        Ok(file_node(path, file, content))
    }

    /// Every file under the parent's directory `node`, by path.
    fn flatten<'a>(
        &'a self,
        found: &'a mut HashMap<String, Node>,
        prefix: String,
        node: Node,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let Some(subtree) = node.subtree.as_deref() else {
                return;
            };
            for child in self.load_parent_tree(&prefix, subtree).await.into_values() {
                let path = if prefix.is_empty() {
                    child.name.clone()
                } else {
                    format!("{prefix}/{}", child.name)
                };
                match child.kind {
                    NodeKind::Dir => self.flatten(found, path, child).await,
                    NodeKind::File => {
                        found.insert(path, child);
                    }
                    _ => {}
                }
            }
        })
    }
}

fn file_node(path: &[String], file: &ListedFile, content: Vec<Id>) -> Node {
    let leaf = path.last().cloned().unwrap_or_default();
    leaf_node(
        leaf,
        NodeKind::File,
        file.mode & 0o7777,
        file.mtime_ns,
        file.size,
        content,
        None,
    )
}

fn insert(root: &mut DirBuild, path: &[String], node: Node) {
    if let Some((leaf, parents)) = path.split_last() {
        let dir = root.at(parents);
        dir.dirs.remove(leaf);
        dir.files.insert(leaf.clone(), node);
    }
}
