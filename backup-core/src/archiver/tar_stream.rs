//! A tar stream stored as the tree it holds ([`Entry::Tar`]): members are
//! parsed on a blocking thread, each file's bytes handed to the same
//! chunking path as any stream, the directories built once the stream ends.
//!
//! [`Entry::Tar`]: crate::snapshot::Entry::Tar

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Component, Path};
use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use futures::future::BoxFuture;

use crate::format::tree::{Node, NodeKind};
use crate::snapshot::TarCapture;
use crate::{Error, Id, Result};

use super::*;

/// Bytes of a member handed over at once.
const BLOCK: usize = 1 << 20;

/// One member of the stream, as the parsing thread hands it over.
pub(super) enum Member {
    Dir {
        path: Vec<String>,
        mode: u32,
        mtime_ns: i64,
    },
    File {
        path: Vec<String>,
        mode: u32,
        mtime_ns: i64,
        data: Receiver<std::io::Result<Vec<u8>>>,
    },
    Symlink {
        path: Vec<String>,
        mtime_ns: i64,
        target: String,
    },
}

impl Member {
    fn path(&self) -> &[String] {
        match self {
            Member::Dir { path, .. } | Member::File { path, .. } | Member::Symlink { path, .. } => {
                path
            }
        }
    }
}

/// A directory being assembled from the members under it.
#[derive(Default)]
pub(super) struct DirBuild {
    /// Its own member's mode and time, when the stream had one.
    pub(super) meta: Option<(u32, i64)>,
    pub(super) files: BTreeMap<String, Node>,
    pub(super) dirs: BTreeMap<String, DirBuild>,
}

impl DirBuild {
    /// The directory at `path`, created on the way.
    pub(super) fn at(&mut self, path: &[String]) -> &mut DirBuild {
        let mut dir = self;
        for name in path {
            dir.files.remove(name);
            dir = dir.dirs.entry(name.clone()).or_default();
        }
        dir
    }
}

/// Reads a member's blocks from the parsing thread.
pub(super) struct ChannelReader {
    pub(super) data: Receiver<std::io::Result<Vec<u8>>>,
    pub(super) block: Vec<u8>,
    pub(super) at: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.block.len() {
            match self.data.recv() {
                Ok(Ok(block)) => {
                    self.block = block;
                    self.at = 0;
                }
                Ok(Err(error)) => return Err(error),
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.block.len() - self.at);
        out[..n].copy_from_slice(&self.block[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}

/// A member's path as names: `./` and empty components dropped; absolute
/// paths and `..` refused.
pub(super) fn member_path(path: &Path) -> std::result::Result<Vec<String>, String> {
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(name) => {
                let name = name
                    .to_str()
                    .ok_or_else(|| format!("member {path:?}: the name is not valid UTF-8"))?;
                crate::format::tree::validate_name(name)
                    .map_err(|error| format!("member {path:?}: {error}"))?;
                names.push(name.to_string());
            }
            Component::RootDir | Component::Prefix(_) | Component::ParentDir => {
                return Err(format!(
                    "member {path:?} is absolute or leaves the archive: refused"
                ))
            }
        }
    }
    Ok(names)
}

/// Parses the stream, sending each member; a file's bytes follow on its
/// own channel. Returns when the stream ends, fails, or the receiver goes.
pub(super) fn parse(
    reader: Box<dyn Read + Send>,
    capture: Option<TarCapture>,
    members: tokio::sync::mpsc::Sender<std::result::Result<Member, String>>,
) {
    let fail = |message: String| {
        let _ = members.blocking_send(Err(message));
    };
    let mut archive = tar::Archive::new(reader);
    let entries = match archive.entries() {
        Ok(entries) => entries,
        Err(error) => return fail(format!("cannot read the tar stream: {error}")),
    };
    for entry in entries {
        let mut entry = match entry {
            Ok(entry) => entry,
            Err(error) => return fail(format!("cannot read the tar stream: {error}")),
        };
        let raw_path = match entry.path() {
            Ok(path) => path.into_owned(),
            Err(error) => return fail(format!("a member's path is unreadable: {error}")),
        };
        let path = match member_path(&raw_path) {
            Ok(path) => path,
            Err(message) => return fail(message),
        };
        let header = entry.header();
        let mode = header.mode().unwrap_or(0o600) & 0o7777;
        let mtime_ns = header
            .mtime()
            .ok()
            .and_then(|seconds| i64::try_from(seconds).ok())
            .map_or(0, |seconds| seconds.saturating_mul(1_000_000_000));
        let kind = header.entry_type();
        let member = if kind.is_dir() {
            if path.is_empty() {
                continue;
            }
            Member::Dir {
                path,
                mode,
                mtime_ns,
            }
        } else if kind.is_symlink() {
            let target = match entry.link_name() {
                Ok(Some(target)) => target.to_string_lossy().into_owned(),
                _ => return fail(format!("symlink {raw_path:?} has no readable target")),
            };
            Member::Symlink {
                path,
                mtime_ns,
                target,
            }
        } else if kind.is_file() || kind == tar::EntryType::Continuous {
            if path.is_empty() {
                return fail(format!("file member {raw_path:?} has no name"));
            }
            let size = entry.size();
            let joined = path.join("/");
            let mut copy = capture
                .as_ref()
                .filter(|capture| capture.wants(&joined, size))
                .map(|_| Vec::with_capacity(size as usize));
            let (sender, data): (SyncSender<_>, _) = sync_channel(2);
            if members
                .blocking_send(Ok(Member::File {
                    path,
                    mode,
                    mtime_ns,
                    data,
                }))
                .is_err()
            {
                return;
            }
            loop {
                let mut block = vec![0u8; BLOCK];
                let mut filled = 0;
                let outcome = loop {
                    match entry.read(&mut block[filled..]) {
                        Ok(0) => break Ok(()),
                        Ok(n) => {
                            filled += n;
                            if filled == BLOCK {
                                break Ok(());
                            }
                        }
                        Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(error) => break Err(error),
                    }
                };
                if let Err(error) = outcome {
                    let _ = sender.send(Err(std::io::Error::new(
                        error.kind(),
                        format!("the tar stream broke inside {joined:?}: {error}"),
                    )));
                    return;
                }
                if filled == 0 {
                    break;
                }
                block.truncate(filled);
                if let Some(copy) = copy.as_mut() {
                    copy.extend_from_slice(&block);
                }
                if sender.send(Ok(block)).is_err() {
                    return;
                }
            }
            if let (Some(capture), Some(copy)) = (capture.as_ref(), copy) {
                capture.put(&joined, copy);
            }
            continue;
        } else {
            return fail(format!(
                "member {raw_path:?} is a {kind:?}: only files, directories and symlinks are \
                 stored from a tar stream"
            ));
        };
        if members.blocking_send(Ok(member)).is_err() {
            return;
        }
    }
}

impl BackupWriter {
    /// Stores a tar stream as the directory `name`.
    pub(super) async fn archive_tar(
        self: &Arc<Self>,
        name: String,
        reader: Box<dyn Read + Send>,
        capture: Option<TarCapture>,
    ) -> Result<Option<Node>, FileFailure> {
        let broken = |detail: String| {
            FileFailure::Fatal(Error::Snapshot {
                source_name: name.clone(),
                detail,
            })
        };
        let (sender, mut members) = tokio::sync::mpsc::channel(1);
        let parsing = tokio::task::spawn_blocking(move || parse(reader, capture, sender));
        let mut root = DirBuild::default();
        let outcome: Result<(), FileFailure> = async {
            while let Some(member) = members.recv().await {
                let member = member.map_err(&broken)?;
                let (parents, leaf) = match member.path().split_last() {
                    Some((leaf, parents)) => (parents.to_vec(), leaf.clone()),
                    None => continue,
                };
                match member {
                    Member::Dir { mode, mtime_ns, .. } => {
                        let mut path = parents;
                        path.push(leaf);
                        root.at(&path).meta = Some((mode, mtime_ns));
                    }
                    Member::File {
                        mode,
                        mtime_ns,
                        data,
                        ..
                    } => {
                        self.tracker
                            .set_current(format!("{name}/{}/{leaf}", parents.join("/")));
                        let reader = ChannelReader {
                            data,
                            block: Vec::new(),
                            at: 0,
                        };
                        let (content, size) = match self.store_stream(Box::new(reader)).await {
                            Ok(stored) => stored,
                            Err(FileFailure::Item(_, message)) => return Err(broken(message)),
                            Err(fatal) => return Err(fatal),
                        };
                        self.stats.files.fetch_add(1, Ordering::Relaxed);
                        self.stats.bytes_total.fetch_add(size, Ordering::Relaxed);
                        self.tracker.file_done();
                        let dir = root.at(&parents);
                        dir.dirs.remove(&leaf);
                        dir.files.insert(
                            leaf.clone(),
                            leaf_node(leaf, NodeKind::File, mode, mtime_ns, size, content, None),
                        );
                    }
                    Member::Symlink {
                        mtime_ns, target, ..
                    } => {
                        self.stats.symlinks.fetch_add(1, Ordering::Relaxed);
                        let dir = root.at(&parents);
                        dir.dirs.remove(&leaf);
                        dir.files.insert(
                            leaf.clone(),
                            leaf_node(
                                leaf,
                                NodeKind::Symlink,
                                0o777,
                                mtime_ns,
                                0,
                                Vec::new(),
                                Some(target),
                            ),
                        );
                    }
                }
            }
            Ok(())
        }
        .await;
        drop(members);
        let _ = parsing.await;
        outcome?;
        root.meta.get_or_insert((0o700, now_ns()));
        let node = self.store_tar_dir(name, root).await?;
        Ok(Some(node))
    }

    /// Stores a directory assembled from the stream, its subdirectories
    /// first.
    pub(super) fn store_tar_dir(&self, name: String, dir: DirBuild) -> BoxFuture<'_, Result<Node>> {
        Box::pin(async move {
            let (mode, mtime_ns) = dir.meta.unwrap_or((0o700, now_ns()));
            let mut nodes: Vec<Node> = dir.files.into_values().collect();
            for (child, build) in dir.dirs {
                nodes.push(self.store_tar_dir(child, build).await?);
            }
            self.stats.dirs.fetch_add(1, Ordering::Relaxed);
            let subtree: Vec<Id> = self.store_tree(nodes).await?;
            let mut node = leaf_node(name, NodeKind::Dir, mode, mtime_ns, 0, Vec::new(), None);
            node.subtree = Some(subtree);
            Ok(node)
        })
    }
}

fn now_ns() -> i64 {
    chrono::Utc::now().timestamp_nanos_opt().unwrap_or(0)
}

pub(super) fn leaf_node(
    name: String,
    kind: NodeKind,
    mode: u32,
    mtime_ns: i64,
    size: u64,
    content: Vec<Id>,
    target: Option<String>,
) -> Node {
    Node {
        name,
        kind,
        mode,
        mtime_ns,
        size,
        uid: None,
        gid: None,
        inode: None,
        ctime_ns: None,
        content,
        subtree: None,
        target,
        links: None,
        dev: None,
        xattrs: Vec::new(),
    }
}
