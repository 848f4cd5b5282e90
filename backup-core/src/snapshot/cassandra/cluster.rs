//! Whole clusters: one node backup per node under one cluster backup id,
//! made visible by a group record written after every node's manifest;
//! and the restore of such a backup into a new cluster of as many nodes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::super::{Entry, Restorer, Snapshot, Snapshotter, StoreRestore};
use super::restore::tokens;
use super::{CassandraRestorer, CassandraSnapshotter, CASSANDRA_KIND};
use crate::format::manifest::{Backup, SourceInfo};
use crate::progress::{Phase, Progress, ProgressSink};
use crate::repository::Repository;
use crate::{BackupOptions, Error, Id, Result};

/// The snapshotter kind of a cluster backup's group record.
pub const CLUSTER_KIND: &str = "cluster";

/// The backup set of a cluster's group records: the cluster's name. Its
/// nodes' backups are in `<cluster>/<node>`.
pub fn cluster_set(cluster: &str) -> String {
    cluster.to_string()
}

/// Where a cluster backup, or one of its nodes, stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[non_exhaustive]
pub enum ClusterState {
    /// Not started yet (waiting for a free slot).
    Pending,
    /// Working.
    Running,
    /// Stored (for the whole: every node stored and the record written).
    Completed,
    /// Failed (for the whole: some node failed; no record, not offered
    /// for restore).
    Failed,
}

/// One progress event of a cluster backup: of one node (`node` set) or of
/// the whole (`node` empty), each as an operator puts it in a resource's
/// status (`RUNNING 66%`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct ClusterProgress {
    /// The cluster backup's id.
    pub cluster_backup_id: String,
    /// The cluster's name.
    pub cluster: String,
    /// The node this event is about; `None` for the whole cluster.
    pub node: Option<String>,
    /// Where it stands.
    pub state: ClusterState,
    /// Percent done: a node's bytes, or the nodes' mean.
    pub percent: f64,
    /// Bytes read or found unchanged so far.
    pub bytes_done: u64,
    /// Bytes in all, once known.
    pub bytes_total: Option<u64>,
    /// Nodes stored so far.
    pub nodes_completed: usize,
    /// Nodes failed so far.
    pub nodes_failed: usize,
    /// Nodes in all.
    pub nodes_total: usize,
    /// Why it failed.
    pub error: Option<String>,
}

/// What happened to one node.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct ClusterNodeReport {
    /// The node's name.
    pub node: String,
    /// Its backup set.
    pub set: String,
    /// How it ended.
    pub state: ClusterState,
    /// Its backup, when stored.
    pub backup: Option<Id>,
    /// Bytes of its files.
    pub bytes_total: u64,
    /// Bytes read (files not found unchanged in its previous backup).
    pub bytes_read: u64,
    /// Bytes added to the repository.
    pub bytes_added: u64,
    /// Why it failed.
    pub error: Option<String>,
}

/// What a cluster backup did.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct ClusterBackupReport {
    /// The cluster backup's id.
    pub id: String,
    /// The cluster's name.
    pub cluster: String,
    /// [`ClusterState::Completed`] only when every node's backup and the
    /// group record were stored.
    pub state: ClusterState,
    /// Each node, in the order given.
    pub nodes: Vec<ClusterNodeReport>,
    /// The group record's backup id, when written.
    pub record: Option<Id>,
}

impl ClusterBackupReport {
    /// `Ok` when the cluster backup completed.
    ///
    /// # Errors
    ///
    /// [`Error::Snapshot`] naming the nodes that failed and why.
    pub fn ensure_completed(&self) -> Result<()> {
        if self.state == ClusterState::Completed {
            return Ok(());
        }
        let failed: Vec<String> = self
            .nodes
            .iter()
            .filter(|node| node.state != ClusterState::Completed)
            .map(|node| {
                format!(
                    "{}: {}",
                    node.node,
                    node.error.as_deref().unwrap_or("not completed")
                )
            })
            .collect();
        Err(Error::Snapshot {
            source_name: format!("cluster backup {} of {}", self.id, self.cluster),
            detail: format!("FAILED; {}", failed.join("; ")),
        })
    }
}

/// One node of a completed cluster backup, as its group record lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct RecordedNode {
    /// The node's name.
    pub node: String,
    /// Its backup set.
    pub set: String,
    /// Its backup.
    pub backup: Id,
    /// Its host id, data center, rack, version (from its facts).
    pub host_id: String,
    /// Its data center.
    pub datacenter: String,
    /// Its rack.
    pub rack: String,
    /// Its tokens.
    pub tokens: Vec<String>,
    /// Its Cassandra version.
    pub cassandra_version: String,
}

/// A completed cluster backup: its group record.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ClusterRecord {
    /// The cluster backup's id.
    pub id: String,
    /// The cluster's name.
    pub cluster: String,
    /// The store (`cassandra`).
    pub store: String,
    /// Every node, by name.
    pub nodes: Vec<RecordedNode>,
    /// The record's own backup id (set when loaded).
    #[serde(skip)]
    pub record: Option<Id>,
}

impl ClusterRecord {
    fn from_backup(backup: &Backup) -> Result<ClusterRecord> {
        let value = backup
            .manifest
            .facts
            .get("cluster_record")
            .cloned()
            .ok_or_else(|| Error::Corrupt {
                key: format!("manifest {}", backup.id),
                offset: 0,
                detail: "a cluster record without its cluster_record fact".into(),
            })?;
        let mut record: ClusterRecord =
            serde_json::from_value(value).map_err(|error| Error::Corrupt {
                key: format!("manifest {}", backup.id),
                offset: 0,
                detail: format!("a cluster record that cannot be read: {error}"),
            })?;
        record.record = Some(backup.id);
        Ok(record)
    }

    /// Every completed cluster backup of `cluster`, oldest first.
    ///
    /// # Errors
    ///
    /// Storage errors; [`Error::Corrupt`] for a damaged record.
    pub async fn list(repo: &Repository, cluster: &str) -> Result<Vec<ClusterRecord>> {
        let set = cluster_set(cluster);
        let mut records = Vec::new();
        for backup in repo.list().await? {
            if backup.manifest.set == set && backup.manifest.source.kind == CLUSTER_KIND {
                records.push(ClusterRecord::from_backup(&backup)?);
            }
        }
        Ok(records)
    }

    /// The completed cluster backup `selector` names: `latest`, its id, or
    /// its record's backup id (or a prefix of it). A cluster backup that did
    /// not complete has no record and is not found.
    ///
    /// # Errors
    ///
    /// [`Error::BackupNotFound`] when there is none.
    pub async fn find(repo: &Repository, cluster: &str, selector: &str) -> Result<ClusterRecord> {
        let records = ClusterRecord::list(repo, cluster).await?;
        let found = if selector == "latest" {
            records.into_iter().last()
        } else {
            records.into_iter().find(|record| {
                record.id == selector
                    || record
                        .record
                        .is_some_and(|id| id.to_string().starts_with(selector))
            })
        };
        found.ok_or_else(|| Error::BackupNotFound {
            selector: format!(
                "{selector} (no completed cluster backup of cluster {cluster:?} matches; a \
                 cluster backup in which a node failed is never recorded)"
            ),
        })
    }
}

type ProgressCallback = Arc<dyn Fn(&ClusterProgress) + Send + Sync>;

/// Backs up every node of a cluster under one cluster backup id: each
/// node's backup in its own set `<cluster>/<node>`, at most `parallelism`
/// at once, then, only when every node's backup is stored, a group record
/// (a backup of kind [`CLUSTER_KIND`] in the set `<cluster>`) listing
/// them. A cluster backup without its record is never offered for restore
/// by [`ClusterRecord::find`]; the node backups that did complete stay, as
/// ordinary backups of their sets, and make the next run quicker.
///
/// # Examples
///
/// ```
/// use backup_core::{CassandraNode, CassandraSnapshotter, ClusterBackup};
/// let nodes = ["cass-0", "cass-1", "cass-2"]
///     .map(|name| CassandraSnapshotter::new(CassandraNode::new(name)));
/// let backup = ClusterBackup::cassandra("dc1", nodes).with_parallelism(2);
/// assert_eq!(backup.node_names(), ["cass-0", "cass-1", "cass-2"]);
/// ```
pub struct ClusterBackup {
    cluster: String,
    store: String,
    nodes: Vec<(String, Arc<dyn Snapshotter>)>,
    parallelism: usize,
    progress: Option<ProgressCallback>,
    writer: Option<String>,
    cancellation: Option<CancellationToken>,
}

impl std::fmt::Debug for ClusterBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterBackup")
            .field("cluster", &self.cluster)
            .field("nodes", &self.node_names())
            .field("parallelism", &self.parallelism)
            .finish_non_exhaustive()
    }
}

impl ClusterBackup {
    /// A cluster backup of Cassandra nodes, each named by its node.
    pub fn cassandra(
        cluster: impl Into<String>,
        nodes: impl IntoIterator<Item = CassandraSnapshotter>,
    ) -> ClusterBackup {
        let mut backup = ClusterBackup {
            cluster: cluster.into(),
            store: CASSANDRA_KIND.into(),
            nodes: Vec::new(),
            parallelism: 2,
            progress: None,
            writer: None,
            cancellation: None,
        };
        for node in nodes {
            let name = node.node().name().to_string();
            backup.nodes.push((name, Arc::new(node)));
        }
        backup
    }

    /// Backs up at most `parallelism` nodes at once (default 2; at least 1).
    pub fn with_parallelism(mut self, parallelism: usize) -> ClusterBackup {
        self.parallelism = parallelism.max(1);
        self
    }

    /// Calls `callback` with every progress event, of each node and of the
    /// whole (from background tasks: keep it quick).
    pub fn with_progress(
        mut self,
        callback: impl Fn(&ClusterProgress) + Send + Sync + 'static,
    ) -> ClusterBackup {
        self.progress = Some(Arc::new(callback));
        self
    }

    /// The writer identity recorded on every backup (see
    /// [`BackupOptions::with_writer`]).
    pub fn with_writer(mut self, writer: impl Into<String>) -> ClusterBackup {
        self.writer = Some(writer.into());
        self
    }

    /// Cancels every node's backup; the cluster backup then fails.
    pub fn with_cancellation(mut self, token: CancellationToken) -> ClusterBackup {
        self.cancellation = Some(token);
        self
    }

    /// The nodes' names, in order.
    pub fn node_names(&self) -> Vec<String> {
        self.nodes.iter().map(|(name, _)| name.clone()).collect()
    }

    /// Runs it. A node that fails does not stop the others; the report
    /// says which failed and why, and the cluster backup is then
    /// [`ClusterState::Failed`] with no record.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for no nodes, two nodes of one name or a
    /// name that makes no set name; storage errors writing the record.
    pub async fn run(&self, repo: &Repository) -> Result<ClusterBackupReport> {
        if self.nodes.is_empty() {
            return Err(Error::InvalidArgument(
                "a cluster backup needs nodes".into(),
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for (name, _) in &self.nodes {
            if !seen.insert(name.as_str()) {
                return Err(Error::InvalidArgument(format!(
                    "node {name:?} is given twice"
                )));
            }
            crate::engine::catalog::validate_set_name(&format!("{}/{name}", self.cluster))?;
        }
        let now = chrono::Utc::now();
        let id = format!(
            "{}-{:04x}",
            now.format("%Y%m%dT%H%M%SZ"),
            rand::random::<u16>()
        );
        let board = Arc::new(Board {
            id: id.clone(),
            cluster: self.cluster.clone(),
            nodes: Mutex::new(
                self.nodes
                    .iter()
                    .map(|(name, _)| NodeBoard {
                        name: name.clone(),
                        state: ClusterState::Pending,
                        percent: 0.0,
                        bytes_done: 0,
                        bytes_total: None,
                    })
                    .collect(),
            ),
            callback: self.progress.clone(),
        });
        // Boxed, and built before they are polled: a stream mapping the
        // nodes through a closure would make the whole future not `Send`.
        let mut runs: Vec<futures::future::BoxFuture<'_, (usize, ClusterNodeReport)>> = Vec::new();
        for (at, (name, snapshotter)) in self.nodes.iter().enumerate() {
            let board = board.clone();
            let set = format!("{}/{name}", self.cluster);
            let mut options = BackupOptions::default()
                .with_set(set.clone())
                .with_tag("cluster_backup", id.clone())
                .with_tag("cluster", self.cluster.clone())
                .with_tag("node", name.clone())
                .with_time(now);
            if let Some(writer) = &self.writer {
                options = options.with_writer(writer.clone());
            }
            if let Some(token) = &self.cancellation {
                options = options.with_cancellation(token.clone());
            }
            let progress_board = board.clone();
            options = options.with_progress(ProgressSink::new(move |event: &Progress| {
                progress_board.node_event(at, event);
            }));
            let name = name.clone();
            let snapshotter = snapshotter.clone();
            runs.push(Box::pin(async move {
                board.set_state(at, ClusterState::Running, None);
                let outcome = repo.backup(snapshotter.as_ref(), options).await;
                let report = match outcome {
                    Ok(summary) => ClusterNodeReport {
                        node: name,
                        set,
                        state: ClusterState::Completed,
                        backup: Some(summary.id),
                        bytes_total: summary.manifest.stats.bytes_total,
                        bytes_read: summary.manifest.stats.bytes_read,
                        bytes_added: summary.manifest.stats.bytes_added,
                        error: None,
                    },
                    Err(error) => ClusterNodeReport {
                        node: name,
                        set,
                        state: ClusterState::Failed,
                        backup: None,
                        bytes_total: 0,
                        bytes_read: 0,
                        bytes_added: 0,
                        error: Some(error.to_string()),
                    },
                };
                board.set_state(at, report.state, report.error.clone());
                (at, report)
            }));
        }
        let mut reports: Vec<(usize, ClusterNodeReport)> = futures::stream::iter(runs)
            .buffer_unordered(self.parallelism)
            .collect()
            .await;
        reports.sort_by_key(|(at, _)| *at);
        let nodes: Vec<ClusterNodeReport> = reports.into_iter().map(|(_, report)| report).collect();
        let mut report = ClusterBackupReport {
            id: id.clone(),
            cluster: self.cluster.clone(),
            state: ClusterState::Failed,
            nodes,
            record: None,
        };
        if report
            .nodes
            .iter()
            .all(|node| node.state == ClusterState::Completed)
        {
            match self.write_record(repo, &report, now).await {
                Ok(record) => {
                    report.record = Some(record);
                    report.state = ClusterState::Completed;
                }
                Err(error) => {
                    board.finish(ClusterState::Failed, Some(error.to_string()));
                    return Err(error);
                }
            }
        }
        let error = (report.state == ClusterState::Failed).then(|| {
            report
                .nodes
                .iter()
                .filter(|node| node.state == ClusterState::Failed)
                .map(|node| format!("node {} failed", node.node))
                .collect::<Vec<_>>()
                .join(", ")
        });
        board.finish(report.state, error);
        Ok(report)
    }

    /// Writes the group record of a cluster backup whose nodes all stored.
    async fn write_record(
        &self,
        repo: &Repository,
        report: &ClusterBackupReport,
        now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Id> {
        let mut nodes = Vec::new();
        for node in &report.nodes {
            let Some(id) = node.backup else { continue };
            let backup = repo.load_backup(&id).await?;
            let text = |key: &str| {
                backup
                    .manifest
                    .facts
                    .get(key)
                    .and_then(|value| value.as_str())
                    .unwrap_or_default()
                    .to_string()
            };
            nodes.push(RecordedNode {
                node: node.node.clone(),
                set: node.set.clone(),
                backup: id,
                host_id: text("host_id"),
                datacenter: text("datacenter"),
                rack: text("rack"),
                tokens: tokens(&backup),
                cassandra_version: text("cassandra_version"),
            });
        }
        let record = ClusterRecord {
            id: report.id.clone(),
            cluster: self.cluster.clone(),
            store: self.store.clone(),
            nodes,
            record: None,
        };
        let mut options = BackupOptions::default()
            .with_set(cluster_set(&self.cluster))
            .with_tag("cluster_backup", report.id.clone())
            .with_tag("cluster", self.cluster.clone())
            .with_time(now);
        if let Some(writer) = &self.writer {
            options = options.with_writer(writer.clone());
        }
        let summary = repo.backup(&RecordSnapshotter { record }, options).await?;
        Ok(summary.id)
    }
}

/// The group record as a backup: `cluster.json` and the same in a fact.
struct RecordSnapshotter {
    record: ClusterRecord,
}

#[async_trait]
impl Snapshotter for RecordSnapshotter {
    fn kind(&self) -> &str {
        CLUSTER_KIND
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let value = serde_json::to_value(&self.record).map_err(|error| {
            Error::InvalidArgument(format!("encoding the cluster record: {error}"))
        })?;
        let text = serde_json::to_vec_pretty(&value).unwrap_or_default();
        let mut snapshot = Snapshot::new(
            vec![Entry::Stream {
                name: "cluster.json".into(),
                reader: Box::new(std::io::Cursor::new(text)),
                mode: 0o644,
            }],
            SourceInfo {
                kind: CLUSTER_KIND.into(),
                paths: self
                    .record
                    .nodes
                    .iter()
                    .map(|node| node.set.clone())
                    .collect(),
            },
        );
        snapshot.facts = BTreeMap::from([
            ("cluster_record".to_string(), value),
            (
                "cluster_backup_id".to_string(),
                self.record.id.clone().into(),
            ),
            ("nodes".to_string(), self.record.nodes.len().into()),
        ]);
        Ok(snapshot)
    }
}

struct NodeBoard {
    name: String,
    state: ClusterState,
    percent: f64,
    bytes_done: u64,
    bytes_total: Option<u64>,
}

/// The states of a running cluster backup's nodes, and where events go.
struct Board {
    id: String,
    cluster: String,
    nodes: Mutex<Vec<NodeBoard>>,
    callback: Option<ProgressCallback>,
}

impl Board {
    fn event(
        &self,
        nodes: &[NodeBoard],
        at: Option<usize>,
        error: Option<String>,
    ) -> ClusterProgress {
        let completed = nodes
            .iter()
            .filter(|n| n.state == ClusterState::Completed)
            .count();
        let failed = nodes
            .iter()
            .filter(|n| n.state == ClusterState::Failed)
            .count();
        match at.and_then(|at| nodes.get(at)) {
            Some(node) => ClusterProgress {
                cluster_backup_id: self.id.clone(),
                cluster: self.cluster.clone(),
                node: Some(node.name.clone()),
                state: node.state,
                percent: node.percent,
                bytes_done: node.bytes_done,
                bytes_total: node.bytes_total,
                nodes_completed: completed,
                nodes_failed: failed,
                nodes_total: nodes.len(),
                error,
            },
            None => {
                let percent =
                    nodes.iter().map(|n| n.percent).sum::<f64>() / nodes.len().max(1) as f64;
                let totals: Option<u64> = nodes.iter().map(|n| n.bytes_total).sum();
                // Completed only once the record is written ([`Board::finish`]).
                let state = if failed > 0 {
                    ClusterState::Failed
                } else {
                    ClusterState::Running
                };
                let percent = percent.min(99.9);
                ClusterProgress {
                    cluster_backup_id: self.id.clone(),
                    cluster: self.cluster.clone(),
                    node: None,
                    state,
                    percent: (percent * 10.0).round() / 10.0,
                    bytes_done: nodes.iter().map(|n| n.bytes_done).sum(),
                    bytes_total: totals,
                    nodes_completed: completed,
                    nodes_failed: failed,
                    nodes_total: nodes.len(),
                    error,
                }
            }
        }
    }

    fn emit(&self, events: Vec<ClusterProgress>) {
        if let Some(callback) = &self.callback {
            for event in &events {
                callback(event);
            }
        }
    }

    fn node_event(&self, at: usize, progress: &Progress) {
        let events = {
            let Ok(mut nodes) = self.nodes.lock() else {
                return;
            };
            let Some(node) = nodes.get_mut(at) else {
                return;
            };
            if node.state != ClusterState::Running || progress.phase != Phase::Running {
                return;
            }
            node.bytes_done = progress.bytes_done;
            node.bytes_total = progress.bytes_total;
            node.percent = progress.percent.unwrap_or(0.0).min(99.9);
            vec![
                self.event(&nodes, Some(at), None),
                self.event(&nodes, None, None),
            ]
        };
        self.emit(events);
    }

    fn set_state(&self, at: usize, state: ClusterState, error: Option<String>) {
        let events = {
            let Ok(mut nodes) = self.nodes.lock() else {
                return;
            };
            let Some(node) = nodes.get_mut(at) else {
                return;
            };
            node.state = state;
            if state == ClusterState::Completed {
                node.percent = 100.0;
                if let Some(total) = node.bytes_total {
                    node.bytes_done = total;
                }
            }
            vec![
                self.event(&nodes, Some(at), error),
                self.event(&nodes, None, None),
            ]
        };
        self.emit(events);
    }

    fn finish(&self, state: ClusterState, error: Option<String>) {
        let event = {
            let Ok(nodes) = self.nodes.lock() else { return };
            let mut event = self.event(&nodes, None, error);
            event.state = state;
            if state == ClusterState::Completed {
                event.percent = 100.0;
            }
            event
        };
        self.emit(vec![event]);
    }
}

/// Restores a completed cluster backup into a new cluster of as many
/// nodes: the recorded nodes, by name, each into one target (the first
/// into the first), with its SSTables, schema and tokens (see
/// [`CassandraRestorer`]). Every target is checked before anything is
/// written: another node count, a non-empty data directory or another
/// Cassandra major version is refused.
///
/// # Examples
///
/// ```
/// use backup_core::{CassandraRestorer, ClusterRestore};
/// let restore = ClusterRestore::new(vec![
///     CassandraRestorer::new("/new/a/data").with_yaml("/new/a/cassandra.yaml"),
///     CassandraRestorer::new("/new/b/data").with_yaml("/new/b/cassandra.yaml"),
/// ]);
/// assert_eq!(restore.targets().len(), 2);
/// ```
#[derive(Debug, Clone)]
pub struct ClusterRestore {
    targets: Vec<CassandraRestorer>,
}

impl ClusterRestore {
    /// One target per node of the backup, in the order of the record's
    /// nodes (sorted by name).
    pub fn new(targets: Vec<CassandraRestorer>) -> ClusterRestore {
        ClusterRestore { targets }
    }

    /// The targets.
    pub fn targets(&self) -> &[CassandraRestorer] {
        &self.targets
    }

    /// Restores `record`: node `i` (by name) into target `i`. Returns one
    /// report per node, whose details name the source node.
    ///
    /// # Errors
    ///
    /// [`Error::RestoreRefused`] before anything is written (another node
    /// count, a target that is not empty, another major version);
    /// storage, corruption and I/O errors.
    pub async fn run(
        &self,
        repo: &Repository,
        record: &ClusterRecord,
    ) -> Result<Vec<StoreRestore>> {
        if record.nodes.len() != self.targets.len() {
            return Err(Error::RestoreRefused {
                target: self
                    .targets
                    .iter()
                    .map(|target| target.data_dir().display().to_string())
                    .collect::<Vec<_>>()
                    .join(", "),
                reason: format!(
                    "cluster backup {} has {} nodes and {} were given: a cluster is restored \
                     into as many nodes as it had",
                    record.id,
                    record.nodes.len(),
                    self.targets.len()
                ),
            });
        }
        let mut nodes = record.nodes.clone();
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        let mut backups = Vec::new();
        for (node, target) in nodes.iter().zip(&self.targets) {
            let backup = repo.load_backup(&node.backup).await?;
            target.preflight(&backup)?;
            backups.push(backup);
        }
        let mut reports = Vec::new();
        for (backup, target) in backups.iter().zip(&self.targets) {
            reports.push(target.restore(repo, backup).await?);
        }
        Ok(reports)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}

    #[tokio::test]
    async fn a_cluster_backup_can_be_spawned() {
        let repo = Repository::init(
            Arc::new(crate::MemorySink::new()),
            crate::InitOptions::default(),
        )
        .await
        .unwrap();
        let backup = ClusterBackup::cassandra("dc1", Vec::new());
        let future = backup.run(&repo);
        assert_send(&future);
        assert!(future.await.is_err());
    }
}
