//! The Cassandra operator seed: back up every node of a data center to S3
//! (or GCS, Azure) as one cluster backup, each node in its own set
//! `DC/NODE`, with per-node progress as an operator writes it into the
//! resource's status; then restore it into a new cluster of as many
//! nodes, each new node getting one old node's SSTables, schema and
//! tokens.
//!
//! ```sh
//! export AWS_ACCESS_KEY_ID=... AWS_SECRET_ACCESS_KEY=... AWS_REGION=eu-west-1
//! export BACKUP_PASSWORD='...'
//! cargo run --example cassandra_operator -- s3://backups/cassandra dc1 nodes.txt backup
//! cargo run --example cassandra_operator -- s3://backups/cassandra dc1 nodes.txt \
//!     restore /new/a/data:/new/a/cassandra.yaml /new/b/data:/new/b/cassandra.yaml ...
//! ```
//!
//! `nodes.txt` has one node per line: its name, its data directories
//! (comma-separated) and its nodetool command line, separated by spaces:
//!
//! ```text
//! cass-0 /var/lib/cassandra/data nodetool -h 10.0.0.10
//! cass-1 /var/lib/cassandra/data nodetool -h 10.0.0.11
//! cass-2 /var/lib/cassandra/data nodetool -h 10.0.0.12
//! ```
//!
//! (the data directories are read where the program runs: a node's volume
//! mounted, or the node reached over SSH with `CassandraNode::over_ssh`).

use backup_core::{
    CassandraNode, CassandraRestorer, CassandraSnapshotter, ClusterBackup, ClusterRecord,
    ClusterRestore, ClusterState, Repository,
};
use std::sync::atomic::{AtomicU64, Ordering};

use backup_sinks::{open_sink, read_password, StorageOptions};

fn read_nodes(path: &str) -> Result<Vec<CassandraSnapshotter>, Box<dyn std::error::Error>> {
    let mut nodes = Vec::new();
    for line in std::fs::read_to_string(path)?.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.splitn(3, ' ');
        let (Some(name), Some(dirs), Some(nodetool)) =
            (fields.next(), fields.next(), fields.next())
        else {
            return Err(format!("{path}: {line:?} is not `NAME DIRS NODETOOL...`").into());
        };
        let node = CassandraNode::new(name)
            .with_nodetool(nodetool)?
            .with_data_dirs(dirs.split(','));
        nodes.push(CassandraSnapshotter::new(node));
    }
    Ok(nodes)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: cassandra_operator REPOSITORY_URL DC NODES_FILE \
                 (backup | restore DATA_DIR:YAML...)";
    let [location, dc, nodes_file, command, targets @ ..] = args.as_slice() else {
        return Err(usage.into());
    };
    let options = StorageOptions::from_env();
    let sink = open_sink(location, &options).await?;
    let password = read_password(
        std::env::var_os("BACKUP_PASSWORD_FILE")
            .as_deref()
            .map(std::path::Path::new),
    )?;
    let repo = Repository::open(sink, password.as_deref()).await?;

    match command.as_str() {
        "backup" => {
            let nodes = read_nodes(nodes_file)?;
            let printed = AtomicU64::new(0);
            let report = ClusterBackup::cassandra(dc.clone(), nodes)
                .with_parallelism(2)
                .with_progress(move |event| {
                    // What an operator puts in the resource's status: one
                    // line per node when its state changes, and the whole.
                    match &event.node {
                        Some(node) if event.state != ClusterState::Running => println!(
                            "  {node}: {:?} {:.0}%{}",
                            event.state,
                            event.percent,
                            event
                                .error
                                .as_deref()
                                .map(|error| format!(" ({error})"))
                                .unwrap_or_default()
                        ),
                        // The whole, as `RUNNING 66%`, at every quarter.
                        None if event.state != ClusterState::Running
                            || (event.percent as u64 / 25)
                                > printed.swap(event.percent as u64 / 25, Ordering::Relaxed) =>
                        {
                            println!(
                                "{} {}: {:?} {:.0}% ({}/{} nodes)",
                                event.cluster,
                                event.cluster_backup_id,
                                event.state,
                                event.percent,
                                event.nodes_completed,
                                event.nodes_total
                            )
                        }
                        _ => {}
                    }
                })
                .run(&repo)
                .await?;
            report.ensure_completed()?;
            println!("cluster backup {} COMPLETED", report.id);
        }
        "restore" => {
            let record = ClusterRecord::find(&repo, dc, "latest").await?;
            let restorers = targets
                .iter()
                .map(|target| {
                    let (dir, yaml) = target.split_once(':').ok_or(usage)?;
                    Ok(CassandraRestorer::new(dir).with_yaml(yaml))
                })
                .collect::<Result<Vec<_>, &str>>()?;
            for restored in ClusterRestore::new(restorers).run(&repo, &record).await? {
                println!(
                    "{} <- {}: {} bytes, initial_token {} tokens",
                    restored.target.display(),
                    restored.details["source_node"],
                    restored.bytes,
                    restored.details["num_tokens"]
                );
            }
        }
        _ => return Err(usage.into()),
    }
    Ok(())
}
