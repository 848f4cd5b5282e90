//! `backupctl cluster-backup`, `cluster-restore` and `cluster-list`: every
//! node of a Cassandra cluster under one cluster backup id, and its
//! restore into a new cluster of as many nodes.

use std::path::PathBuf;
use std::process::ExitCode;

use backup_core::{
    CassandraRestorer, ClusterBackup, ClusterRecord, ClusterRestore, ClusterState, Error,
};
use clap::Args;
use serde::Deserialize;
use serde_json::json;

use crate::cli::{Common, ProgressMode};
use crate::output::{human_bytes, out, print_json};
use crate::repository::open;
use crate::source::CassandraSource;

/// The node list of a cluster: a TOML file.
///
/// ```toml
/// cluster = "apigee-dc1"
/// parallelism = 2
/// [[node]]
/// name = "cass-0"
/// nodetool = "nodetool -h 10.0.0.7"
/// data_dirs = ["/var/lib/cassandra/data"]
/// ssh = "cassandra@10.0.0.7"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeList {
    /// The cluster's name: the set of its records, the first part of its
    /// nodes' sets.
    pub(crate) cluster: String,
    /// Nodes backed up at once (default 2).
    #[serde(default)]
    pub(crate) parallelism: Option<usize>,
    /// The nodes; each needs a `name`.
    #[serde(rename = "node")]
    pub(crate) nodes: Vec<CassandraSource>,
}

impl NodeList {
    /// Reads and checks a node list.
    pub(crate) fn read(path: &std::path::Path) -> Result<NodeList, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|error| Error::io("reading the node list", path, error))?;
        let list: NodeList = toml::from_str(&text).map_err(|error| {
            Error::InvalidArgument(format!("node list {}: {error}", path.display()))
        })?;
        if list.nodes.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "node list {}: no [[node]]",
                path.display()
            )));
        }
        if let Some(at) = list.nodes.iter().position(|node| node.name.is_none()) {
            return Err(Error::InvalidArgument(format!(
                "node list {}: node {} has no name",
                path.display(),
                at + 1
            )));
        }
        Ok(list)
    }

    /// The cluster backup of these nodes.
    pub(crate) fn backup(&self) -> Result<ClusterBackup, Error> {
        let nodes = self
            .nodes
            .iter()
            .map(CassandraSource::snapshotter)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ClusterBackup::cassandra(self.cluster.clone(), nodes)
            .with_parallelism(self.parallelism.unwrap_or(2)))
    }
}

/// Options of `cluster-backup`.
#[derive(Args, Debug)]
pub(crate) struct ClusterBackupArgs {
    #[command(flatten)]
    common: Common,
    /// The node list (TOML: `cluster`, `parallelism`, `[[node]]` tables
    /// with `name`, `nodetool`, `data_dirs`, `keyspaces`, `ssh`, ...).
    #[arg(long, value_name = "FILE")]
    nodes: PathBuf,
    /// Nodes backed up at once (default: the list's, else 2).
    #[arg(long, value_name = "N")]
    parallelism: Option<usize>,
    /// Writer identity recorded on every backup (default: host name).
    #[arg(long, env = "BACKUP_WRITER")]
    writer: Option<String>,
}

/// Backs up every node; exits 1 when the cluster backup failed.
pub(crate) async fn backup(args: ClusterBackupArgs) -> Result<ExitCode, Error> {
    let list = NodeList::read(&args.nodes)?;
    let mut cluster = list.backup()?;
    if let Some(parallelism) = args.parallelism {
        cluster = cluster.with_parallelism(parallelism);
    }
    if let Some(writer) = &args.writer {
        cluster = cluster.with_writer(writer.clone());
    }
    if args.common.progress == ProgressMode::Json {
        cluster = cluster.with_progress(|event| {
            if let Ok(line) = serde_json::to_string(event) {
                eprintln!("{line}");
            }
        });
    } else if args.common.progress != ProgressMode::None {
        cluster = cluster.with_progress(|event| {
            if let (Some(node), ClusterState::Completed | ClusterState::Failed) =
                (&event.node, event.state)
            {
                eprintln!(
                    "node {node}: {:?} ({}/{} nodes done)",
                    event.state,
                    event.nodes_completed + event.nodes_failed,
                    event.nodes_total
                );
            }
        });
    }
    let repo = open(&args.common).await?;
    let report = cluster.run(&repo).await?;
    if args.common.json {
        print_json(&json!(report));
    } else {
        let state = serde_json::to_value(report.state).unwrap_or_default();
        out!(
            "cluster backup {} of {}: {}",
            report.id,
            report.cluster,
            state.as_str().unwrap_or_default()
        );
        for node in &report.nodes {
            match (&node.backup, &node.error) {
                (Some(id), _) => out!(
                    "  {}: backup {} of set {:?}, {} read, {} added",
                    node.node,
                    id.short(),
                    node.set,
                    human_bytes(node.bytes_read),
                    human_bytes(node.bytes_added)
                ),
                (None, error) => out!(
                    "  {}: FAILED: {}",
                    node.node,
                    error.as_deref().unwrap_or("not completed")
                ),
            }
        }
    }
    if report.state == ClusterState::Completed {
        Ok(ExitCode::SUCCESS)
    } else {
        if !args.common.json {
            eprintln!(
                "error: cluster backup {} FAILED: it is not recorded and will not be offered for \
                 restore",
                report.id
            );
        }
        Ok(ExitCode::FAILURE)
    }
}

/// Options of `cluster-restore`.
#[derive(Args, Debug)]
pub(crate) struct ClusterRestoreArgs {
    #[command(flatten)]
    common: Common,
    /// `latest`, a cluster backup id or its record's backup id.
    #[arg(default_value = "latest")]
    backup: String,
    /// The cluster's name (as in its node list).
    #[arg(long)]
    cluster: String,
    /// A new node's empty data directory, one per node of the backup, in
    /// the order of the backup's node names (repeatable).
    #[arg(long = "cassandra-data-dir", value_name = "DIR", required = true)]
    data_dirs: Vec<PathBuf>,
    /// The new nodes' cassandra.yaml files, in the same order (repeatable).
    #[arg(long = "cassandra-yaml", value_name = "FILE")]
    yamls: Vec<PathBuf>,
    /// The Cassandra version the new nodes run (another major is refused).
    #[arg(long, value_name = "VERSION")]
    cassandra_version: Option<String>,
}

/// Restores a completed cluster backup into new nodes.
pub(crate) async fn restore(args: ClusterRestoreArgs) -> Result<ExitCode, Error> {
    if !args.yamls.is_empty() && args.yamls.len() != args.data_dirs.len() {
        return Err(Error::InvalidArgument(format!(
            "{} --cassandra-data-dir and {} --cassandra-yaml given: give one yaml per node",
            args.data_dirs.len(),
            args.yamls.len()
        )));
    }
    let targets = args
        .data_dirs
        .iter()
        .enumerate()
        .map(|(at, dir)| {
            let mut target = CassandraRestorer::new(dir);
            if let Some(yaml) = args.yamls.get(at) {
                target = target.with_yaml(yaml);
            }
            if let Some(version) = &args.cassandra_version {
                target = target.with_target_version(version);
            }
            target
        })
        .collect();
    let repo = open(&args.common).await?;
    let record = ClusterRecord::find(&repo, &args.cluster, &args.backup).await?;
    let restored = ClusterRestore::new(targets).run(&repo, &record).await?;
    if args.common.json {
        print_json(&json!({ "cluster_backup": record.id, "restored": restored }));
    } else {
        out!(
            "restored cluster backup {} of {} into {} nodes",
            record.id,
            record.cluster,
            restored.len()
        );
        for report in &restored {
            let detail = |key: &str| {
                report
                    .details
                    .get(key)
                    .map(|value| {
                        value
                            .as_str()
                            .map_or_else(|| value.to_string(), str::to_string)
                    })
                    .unwrap_or_default()
            };
            out!(
                "  {} <- node {}: {}, {} tokens",
                report.target.display(),
                detail("source_node"),
                human_bytes(report.bytes),
                detail("num_tokens")
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Options of `cluster-list`.
#[derive(Args, Debug)]
pub(crate) struct ClusterListArgs {
    #[command(flatten)]
    common: Common,
    /// The cluster's name.
    #[arg(long)]
    cluster: String,
}

/// Lists the completed cluster backups of a cluster.
pub(crate) async fn list(args: ClusterListArgs) -> Result<ExitCode, Error> {
    let repo = open(&args.common).await?;
    let records = ClusterRecord::list(&repo, &args.cluster).await?;
    if args.common.json {
        print_json(&json!(records
            .iter()
            .map(|record| json!({
                "id": record.id,
                "record": record.record.map(|id| id.to_hex()),
                "cluster": record.cluster,
                "nodes": record.nodes,
            }))
            .collect::<Vec<_>>()));
    } else {
        for record in &records {
            let nodes: Vec<&str> = record.nodes.iter().map(|node| node.node.as_str()).collect();
            out!("{}  {} nodes: {}", record.id, nodes.len(), nodes.join(", "));
        }
    }
    Ok(ExitCode::SUCCESS)
}
