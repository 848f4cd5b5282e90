//! The Cassandra snapshotter, cluster backups and restores against
//! **stand-in** nodes (`backup_testkit::cassandra`): Cassandra cannot be
//! installed on the test machines, so each node is a directory of SSTable
//! files driven by a stand-in `nodetool` with Cassandra 4.0's command lines,
//! outputs and snapshot layout (hard links, `manifest.json`, `schema.cql`,
//! index subdirectories, two data directories per node). What this proves:
//! that the snapshotter drives nodetool, reads the snapshot layout, stores
//! and restores the files byte for byte with the node's tokens, and cleans
//! up. What it does not prove: that memtables are flushed, that real
//! SSTables are read back by Cassandra, or that a restored node starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use backup_core::snapshot_conformance::{run_snapshotter_suite, FailingSource, SnapshotterFixture};
use backup_core::{
    Backup, BackupOptions, CassandraNode, CassandraRestorer, CassandraSnapshotter, ClusterBackup,
    ClusterProgress, ClusterRecord, ClusterRestore, ClusterState, Error, Repository, Snapshotter,
    SshAccess,
};
use backup_testkit::cassandra::{StandInCluster, StandInNode};
use backup_testkit::server::sshd::Sshd;

use super::local_repo;

fn node_name(at: usize) -> String {
    format!("node{}", at + 1)
}

fn snapshotter(node: &StandInNode, name: &str) -> CassandraSnapshotter {
    let dirs: Vec<String> = node
        .data_dirs()
        .iter()
        .map(|dir| dir.display().to_string())
        .collect();
    CassandraSnapshotter::new(
        CassandraNode::new(name)
            .with_nodetool(&node.nodetool())
            .unwrap()
            .with_cqlsh(None)
            .unwrap()
            .with_data_dirs(dirs),
    )
}

fn cluster_backup(cluster: &StandInCluster) -> ClusterBackup {
    ClusterBackup::cassandra(
        "dc1",
        cluster
            .nodes
            .iter()
            .enumerate()
            .map(|(at, node)| snapshotter(node, &node_name(at))),
    )
}

/// Where a live file of `node` is stored in its backup:
/// `data/<keyspace>/<table dir>/<rest>`, or `None` for files of keyspaces
/// that are not stored (system_traces).
fn stored_path(node: &StandInNode, file: &Path) -> Option<String> {
    let relative = node
        .data_dirs()
        .iter()
        .find_map(|dir| file.strip_prefix(dir).ok())?
        .to_string_lossy()
        .into_owned();
    (!relative.starts_with("system_traces/")).then(|| format!("data/{relative}"))
}

/// Every stored file of the backup by path, with its size.
async fn stored_files(repo: &Repository, backup: &Backup) -> BTreeMap<String, u64> {
    repo.ls(backup)
        .await
        .unwrap()
        .into_iter()
        .filter(|entry| entry.kind == backup_core::NodeKind::File)
        .map(|entry| (entry.path, entry.size))
        .collect()
}

fn no_snapshots_left(cluster: &StandInCluster) {
    for (at, node) in cluster.nodes.iter().enumerate() {
        assert_eq!(
            node.snapshot_dirs(),
            Vec::<PathBuf>::new(),
            "snapshots left on {}",
            node_name(at)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_backup_stores_every_sstable_with_identity_and_clears_its_snapshot() {
    let cluster = StandInCluster::create("Test Cluster", 1);
    let node = &cluster.nodes[0];
    let (_dir, repo) = local_repo().await;
    let summary = repo
        .backup(
            &snapshotter(node, "node1"),
            BackupOptions::default().with_set("dc1/node1"),
        )
        .await
        .unwrap();
    let backup = repo.load_backup(&summary.id).await.unwrap();
    let facts = &backup.manifest.facts;
    assert_eq!(backup.manifest.source.kind, "cassandra");
    assert_eq!(facts["tokens"], serde_json::json!(node.tokens()));
    assert_eq!(facts["num_tokens"], node.tokens().len());
    assert_eq!(facts["host_id"], node.host_id().as_str());
    assert_eq!(facts["cluster_name"], node.cluster_name().as_str());
    assert_eq!(facts["datacenter"], node.datacenter().as_str());
    assert_eq!(facts["rack"], node.rack().as_str());
    assert_eq!(facts["cassandra_version"], node.version().as_str());
    assert_eq!(facts["schema_cql"], "per-table");
    assert_eq!(facts["snapshot_cleared"], true);
    assert!(facts["snapshot_tag"]
        .as_str()
        .unwrap()
        .starts_with(backup_core::SNAPSHOT_TAG_PREFIX));
    let keyspaces = facts["keyspaces"].as_array().unwrap();
    assert!(keyspaces.iter().any(|k| k == "shop"), "{keyspaces:?}");
    assert!(
        !keyspaces.iter().any(|k| k == "system_traces"),
        "{keyspaces:?}"
    );

    // Every live component (of both data directories, index SSTables
    // included) is stored under its keyspace and table, with its size.
    let stored = stored_files(&repo, &backup).await;
    let mut expected = 0;
    let mut index_files = 0;
    for file in node.live_sstables() {
        let Some(path) = stored_path(node, &file) else {
            continue;
        };
        expected += 1;
        index_files += usize::from(path.contains("/."));
        assert_eq!(
            stored.get(&path).copied(),
            Some(std::fs::metadata(&file).unwrap().len()),
            "{path} not stored as it is on the node"
        );
    }
    assert!(index_files > 0, "no secondary-index SSTable was stored");
    let schemas = stored
        .keys()
        .filter(|path| path.ends_with("/schema.cql"))
        .count();
    assert!(schemas > 0, "no table's schema.cql stored");
    assert!(!stored.keys().any(|path| path.ends_with("manifest.json")));
    assert_eq!(stored.len(), expected + schemas, "{stored:#?}");
    println!(
        "node backup: {} SSTable components ({index_files} of indexes) and {schemas} schema files",
        expected
    );
    no_snapshots_left(&cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cqlsh_schema_is_stored_when_cqlsh_runs_and_its_failure_does_not_fail_the_backup() {
    let cluster = StandInCluster::create("Test Cluster", 1);
    let node = &cluster.nodes[0];
    let with_cqlsh = |cqlsh: &str| {
        let dirs = snapshotter(node, "node1").node().data_dirs().to_vec();
        CassandraSnapshotter::new(
            CassandraNode::new("node1")
                .with_nodetool(&node.nodetool())
                .unwrap()
                .with_cqlsh(Some(cqlsh))
                .unwrap()
                .with_data_dirs(dirs),
        )
    };
    let (_dir, repo) = local_repo().await;
    // A cqlsh that prints its arguments: the schema stored is its output,
    // and it was asked for DESCRIBE SCHEMA.
    let summary = repo
        .backup(
            &with_cqlsh("echo CREATE KEYSPACE shop;"),
            BackupOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(summary.manifest.facts["schema_cql"], "cqlsh");
    let backup = repo.load_backup(&summary.id).await.unwrap();
    let mut schema = Vec::new();
    let mut reader = repo.open_file(&backup, "schema.cql").await.unwrap();
    while let Some(chunk) = reader.next_chunk().await.unwrap() {
        schema.extend(chunk);
    }
    assert_eq!(schema, b"CREATE KEYSPACE shop; -e DESCRIBE SCHEMA\n");
    // A cqlsh that fails (not installed, refused): the tables' own
    // schema.cql files are what the backup has, and it says so.
    for cqlsh in ["false", "/nonexistent/cqlsh"] {
        let summary = repo
            .backup(&with_cqlsh(cqlsh), BackupOptions::default())
            .await
            .unwrap();
        assert_eq!(summary.manifest.facts["schema_cql"], "per-table", "{cqlsh}");
    }
    no_snapshots_left(&cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_cluster_backup_reads_only_the_new_sstables() {
    let cluster = StandInCluster::create("Test Cluster", 3);
    let (_dir, repo) = local_repo().await;
    let first = cluster_backup(&cluster).run(&repo).await.unwrap();
    assert_eq!(first.state, ClusterState::Completed, "{first:#?}");

    let mut new_files = BTreeMap::new();
    for (at, node) in cluster.nodes.iter().enumerate() {
        let mut added: Vec<PathBuf> = node.add_sstables("shop", "orders", 2, 150 * 1024);
        added.extend(node.add_sstables("inventory", "items", 1, 80 * 1024));
        new_files.insert(node_name(at), added);
        // Cassandra rewrites a -Statistics.db by renaming a new file over it.
        node.rewrite_statistics("shop", "customers");
    }
    let second = cluster_backup(&cluster).run(&repo).await.unwrap();
    assert_eq!(second.state, ClusterState::Completed, "{second:#?}");
    for (report, node) in second.nodes.iter().zip(&cluster.nodes) {
        let before = listing(&repo, report_backup(&first, &report.node)).await;
        let after = listing(&repo, report.backup.unwrap()).await;
        // What was read: every file not stored before with its size and
        // time. That must be the new SSTables, the rewritten Statistics
        // and the tables' schema.cql (each snapshot writes them anew).
        let changed: BTreeMap<&String, u64> = after
            .iter()
            .filter(|(path, meta)| before.get(*path) != Some(meta))
            .map(|(path, (size, _))| (path, *size))
            .collect();
        let new: BTreeMap<String, u64> = new_files[&report.node]
            .iter()
            .map(|file| {
                (
                    stored_path(node, file).unwrap(),
                    file.metadata().unwrap().len(),
                )
            })
            .collect();
        let mut others: Vec<&&String> = changed
            .keys()
            .filter(|path| !new.contains_key(**path) && !path.ends_with("/schema.cql"))
            .collect();
        assert_eq!(others.len(), 1, "{others:?}");
        let rewritten = others.pop().unwrap();
        assert!(
            rewritten.starts_with("data/shop/customers-") && rewritten.ends_with("-Statistics.db"),
            "{rewritten}"
        );
        assert!(new.keys().all(|path| changed.contains_key(path)));
        let read: u64 = changed.values().sum();
        let new_bytes: u64 = new.values().sum();
        println!(
            "{}: {} in all, {} read: new SSTables {new_bytes}, the rewritten {} and schema \
             files {}; {} added",
            report.node,
            report.bytes_total,
            report.bytes_read,
            rewritten.rsplit('/').next().unwrap(),
            read - new_bytes,
            report.bytes_added
        );
        assert_eq!(report.bytes_read, read, "{report:#?}");
        assert!(report.bytes_read < new_bytes + 32 * 1024, "{report:#?}");
        assert!(report.bytes_added <= read + 16 * 1024, "{report:#?}");
        assert!(report.bytes_added >= new_bytes * 9 / 10, "{report:#?}");
    }
    no_snapshots_left(&cluster);
}

/// Every stored file of a backup with its size and modification time.
async fn listing(
    repo: &Repository,
    id: backup_core::Id,
) -> BTreeMap<String, (u64, chrono::DateTime<chrono::Utc>)> {
    let backup = repo.load_backup(&id).await.unwrap();
    repo.ls(&backup)
        .await
        .unwrap()
        .into_iter()
        .filter(|entry| entry.kind == backup_core::NodeKind::File)
        .map(|entry| (entry.path, (entry.size, entry.mtime)))
        .collect()
}

/// The backup of `node` in the cluster backup `report`.
fn report_backup(report: &backup_core::ClusterBackupReport, node: &str) -> backup_core::Id {
    report
        .nodes
        .iter()
        .find(|n| n.node == node)
        .and_then(|n| n.backup)
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_backup_restores_into_a_new_cluster_and_refuses_another_size() {
    let cluster = StandInCluster::create("Test Cluster", 3);
    let (_dir, repo) = local_repo().await;
    let events: Arc<Mutex<Vec<ClusterProgress>>> = Arc::default();
    let seen = events.clone();
    let report = cluster_backup(&cluster)
        .with_progress(move |event| seen.lock().unwrap().push(event.clone()))
        .run(&repo)
        .await
        .unwrap();
    assert_eq!(report.state, ClusterState::Completed, "{report:#?}");
    let events = events.lock().unwrap().clone();
    for at in 0..3 {
        let name = node_name(at);
        let last = events
            .iter()
            .rev()
            .find(|event| event.node.as_deref() == Some(name.as_str()))
            .unwrap();
        assert_eq!(last.state, ClusterState::Completed, "{last:?}");
        assert_eq!(last.percent, 100.0, "{last:?}");
    }
    let whole = events.last().unwrap();
    assert_eq!(
        (whole.node.as_deref(), whole.state),
        (None, ClusterState::Completed)
    );
    assert_eq!(whole.nodes_completed, 3);
    assert!(
        events
            .iter()
            .any(|event| event.node.is_none() && event.state == ClusterState::Running),
        "no running event of the whole"
    );

    let record = ClusterRecord::find(&repo, "dc1", "latest").await.unwrap();
    assert_eq!(record.id, report.id);
    assert_eq!(record.nodes.len(), 3);

    let place = tempfile::tempdir().unwrap();
    let targets: Vec<(PathBuf, PathBuf)> = (0..3)
        .map(|at| {
            let yaml = place.path().join(format!("new{at}.yaml"));
            std::fs::write(
                &yaml,
                "cluster_name: 'Test Cluster'\nnum_tokens: 16\n# initial_token:\n",
            )
            .unwrap();
            (place.path().join(format!("new{at}/data")), yaml)
        })
        .collect();
    let restorers = |count: usize| {
        targets[..count]
            .iter()
            .map(|(dir, yaml)| {
                CassandraRestorer::new(dir)
                    .with_yaml(yaml)
                    .with_target_version("4.0.11")
            })
            .collect::<Vec<_>>()
    };

    // Two nodes for a backup of three: refused, nothing written.
    let error = ClusterRestore::new(restorers(2))
        .run(&repo, &record)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::RestoreRefused { .. }), "{error}");
    assert!(
        error.to_string().contains("has 3 nodes and 2 were given"),
        "{error}"
    );
    for (dir, yaml) in &targets {
        assert!(
            !dir.exists(),
            "{} written by a refused restore",
            dir.display()
        );
        assert!(!std::fs::read_to_string(yaml)
            .unwrap()
            .contains("auto_bootstrap"));
    }
    // Another major version: refused before writing.
    let other = targets
        .iter()
        .map(|(dir, _)| CassandraRestorer::new(dir).with_target_version("5.0.2"))
        .collect();
    let error = ClusterRestore::new(other)
        .run(&repo, &record)
        .await
        .unwrap_err();
    assert!(
        error
            .to_string()
            .contains("Cassandra 4.0.11 and the node runs 5.0.2"),
        "{error}"
    );
    assert!(targets.iter().all(|(dir, _)| !dir.exists()));

    let restored = ClusterRestore::new(restorers(3))
        .run(&repo, &record)
        .await
        .unwrap();
    assert_eq!(restored.len(), 3);
    for (at, ((dir, yaml), node)) in targets.iter().zip(&cluster.nodes).enumerate() {
        assert_eq!(restored[at].details["source_node"], node_name(at).as_str());
        let mut compared = 0;
        for file in node.live_sstables() {
            let Some(path) = stored_path(node, &file) else {
                continue;
            };
            let relative = path.strip_prefix("data/").unwrap();
            let restored_file = dir.join(relative);
            if relative.starts_with("system/") {
                assert!(!restored_file.exists(), "node-local {relative} restored");
                continue;
            }
            assert_eq!(
                std::fs::read(&restored_file).unwrap_or_else(|e| panic!("{relative}: {e}")),
                std::fs::read(&file).unwrap(),
                "{relative} differs on new node {at}"
            );
            compared += 1;
        }
        assert!(compared > 10, "{compared}");
        let text = std::fs::read_to_string(yaml).unwrap();
        assert!(
            text.contains(&format!("\ninitial_token: {}\n", node.tokens().join(","))),
            "{text}"
        );
        assert!(
            text.contains(&format!("\nnum_tokens: {}\n", node.tokens().len())),
            "{text}"
        );
        assert!(text.contains("\nauto_bootstrap: false\n"), "{text}");
        assert!(text.contains("cluster_name: 'Test Cluster'\n"), "{text}");
        println!(
            "new node {at}: {compared} files byte-identical to node{}",
            at + 1
        );
    }
    // Into nodes that now hold data: refused.
    let error = ClusterRestore::new(restorers(3))
        .run(&repo, &record)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("not empty"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_failing_halfway_fails_the_cluster_backup_and_leaves_no_snapshot() {
    let cluster = StandInCluster::create("Test Cluster", 3);
    let (_dir, repo) = local_repo().await;
    cluster.nodes[1].fail_snapshot_after(Some(3));
    let events: Arc<Mutex<Vec<ClusterProgress>>> = Arc::default();
    let seen = events.clone();
    let report = cluster_backup(&cluster)
        .with_progress(move |event| seen.lock().unwrap().push(event.clone()))
        .run(&repo)
        .await
        .unwrap();
    assert_eq!(report.state, ClusterState::Failed, "{report:#?}");
    assert!(report.record.is_none());
    let failed = &report.nodes[1];
    assert_eq!(
        (failed.node.as_str(), failed.state),
        ("node2", ClusterState::Failed)
    );
    let message = failed.error.as_deref().unwrap();
    assert!(message.contains("No space left on device"), "{message}");
    let error = report.ensure_completed().unwrap_err().to_string();
    assert!(
        error.contains("FAILED") && error.contains("node2"),
        "{error}"
    );
    assert!(report.nodes[0].backup.is_some() && report.nodes[2].backup.is_some());
    let whole = events.lock().unwrap().last().cloned().unwrap();
    assert_eq!((whole.node, whole.state), (None, ClusterState::Failed));
    assert!(whole.error.unwrap().contains("node node2 failed"));

    // Not offered for restore.
    let error = ClusterRecord::find(&repo, "dc1", "latest")
        .await
        .unwrap_err();
    assert!(matches!(error, Error::BackupNotFound { .. }), "{error}");
    let error = ClusterRecord::find(&repo, "dc1", &report.id)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("never recorded"), "{error}");
    // The partial snapshot of the failing node was cleared too.
    no_snapshots_left(&cluster);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forget_keeps_the_node_backups_a_kept_cluster_backup_needs() {
    let cluster = StandInCluster::create("Test Cluster", 3);
    let (_dir, repo) = local_repo().await;
    let complete = cluster_backup(&cluster).run(&repo).await.unwrap();
    assert_eq!(complete.state, ClusterState::Completed);
    // Two failed cluster backups later, node1 and node3 have newer backups
    // of their own that no record lists.
    cluster.nodes[1].fail_snapshot_after(Some(1));
    for _ in 0..2 {
        let failed = cluster_backup(&cluster).run(&repo).await.unwrap();
        assert_eq!(failed.state, ClusterState::Failed);
    }
    let keep_last = backup_core::KeepPolicy {
        keep_last: Some(1),
        ..Default::default()
    };
    let decisions = repo
        .forget(&keep_last, chrono::Utc::now(), &Default::default())
        .await
        .unwrap();
    let first_of_node1 = report_backup(&complete, "node1");
    let (_, decision) = decisions
        .iter()
        .find(|(backup, _)| backup.id == first_of_node1)
        .unwrap();
    assert!(decision.keep, "{decision:?}");
    assert_eq!(
        decision.reasons,
        [format!("part of the kept cluster backup {}", complete.id)]
    );
    // So the cluster backup still restores.
    let record = ClusterRecord::find(&repo, "dc1", "latest").await.unwrap();
    let place = tempfile::tempdir().unwrap();
    let targets = (0..3)
        .map(|at| CassandraRestorer::new(place.path().join(format!("n{at}"))))
        .collect();
    ClusterRestore::new(targets)
        .run(&repo, &record)
        .await
        .unwrap();
    // Once a newer cluster backup completes and the old record goes, its
    // node backups follow their own set's rules again.
    cluster.nodes[1].fail_snapshot_after(None);
    let newer = cluster_backup(&cluster).run(&repo).await.unwrap();
    assert_eq!(newer.state, ClusterState::Completed);
    repo.forget(&keep_last, chrono::Utc::now(), &Default::default())
        .await
        .unwrap();
    let left: Vec<backup_core::Id> = repo.list().await.unwrap().iter().map(|b| b.id).collect();
    assert!(!left.contains(&first_of_node1));
    assert!(!left.contains(&complete.record.unwrap()));
    assert_eq!(
        left.len(),
        4,
        "the newest record and its three node backups"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshots_an_earlier_killed_run_left_are_cleared_and_others_kept() {
    let cluster = StandInCluster::create("Test Cluster", 1);
    let node = &cluster.nodes[0];
    let now = chrono::Utc::now().timestamp();
    let stale = format!(
        "{}{}-0badf00d",
        backup_core::SNAPSHOT_TAG_PREFIX,
        now - 48 * 3600
    );
    let recent = format!("{}{}-00c0ffee", backup_core::SNAPSHOT_TAG_PREFIX, now - 60);
    for tag in [&stale, &recent, &"operator-snapshot".to_string()] {
        node.make_snapshot_dir(tag);
    }
    let (_dir, repo) = local_repo().await;
    let summary = repo
        .backup(&snapshotter(node, "node1"), BackupOptions::default())
        .await
        .unwrap();
    assert_eq!(
        summary.manifest.facts["stale_snapshots_cleared"],
        serde_json::json!([stale])
    );
    let left: std::collections::BTreeSet<String> = node
        .snapshot_dirs()
        .iter()
        .map(|dir| dir.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left,
        [recent, "operator-snapshot".to_string()]
            .into_iter()
            .collect()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_over_ssh_is_read_with_its_host_key_checked() {
    let sshd = Sshd::start();
    let cluster = StandInCluster::create("Test Cluster", 1);
    let node = &cluster.nodes[0];
    let over_ssh = |known_hosts: PathBuf| {
        let local = snapshotter(node, "node1");
        let dirs = local.node().data_dirs().to_vec();
        CassandraSnapshotter::new(
            CassandraNode::new("node1")
                .with_nodetool(&node.nodetool())
                .unwrap()
                .with_cqlsh(None)
                .unwrap()
                .with_data_dirs(dirs)
                .over_ssh(
                    SshAccess::new(format!("{}@127.0.0.1", sshd.user))
                        .with_port(sshd.port())
                        .with_identity(sshd.path("client_ed25519"))
                        .with_known_hosts(known_hosts),
                ),
        )
    };
    let (_dir, repo) = local_repo().await;
    let first = repo
        .backup(
            &over_ssh(sshd.path("known_hosts")),
            BackupOptions::default(),
        )
        .await
        .unwrap();
    let backup = repo.load_backup(&first.id).await.unwrap();
    assert!(backup.manifest.source.paths[0].starts_with(&format!("{}@127.0.0.1:", sshd.user)));
    // Restored, the files are the node's.
    let target = tempfile::tempdir().unwrap();
    repo.restore(&backup, target.path(), &Default::default())
        .await
        .unwrap();
    let mut compared = 0;
    for file in node.live_sstables() {
        if let Some(path) = stored_path(node, &file) {
            assert_eq!(
                std::fs::read(target.path().join(&path)).unwrap(),
                std::fs::read(&file).unwrap(),
                "{path}"
            );
            compared += 1;
        }
    }
    assert!(compared > 10);
    no_snapshots_left(&cluster);

    // The next backup over SSH reads only the new SSTables (and the
    // rewritten components).
    let new: u64 = node
        .add_sstables("shop", "orders", 1, 200 * 1024)
        .iter()
        .map(|file| std::fs::metadata(file).unwrap().len())
        .sum();
    let second = repo
        .backup(
            &over_ssh(sshd.path("known_hosts")),
            BackupOptions::default(),
        )
        .await
        .unwrap();
    let stats = &second.manifest.stats;
    let before = listing(&repo, first.id).await;
    let after = listing(&repo, second.id).await;
    let rewritten: u64 = after
        .iter()
        .filter(|(path, meta)| before.get(*path) != Some(meta))
        .map(|(_, (size, _))| size)
        .sum::<u64>()
        - new;
    println!(
        "over ssh: first read {} bytes, second read {} of {} (new SSTable {new})",
        first.manifest.stats.bytes_read, stats.bytes_read, stats.bytes_total
    );
    assert_eq!(stats.bytes_read, new + rewritten, "{stats:?}");
    no_snapshots_left(&cluster);

    // A known_hosts holding another key for the host: refused by ssh,
    // nothing run on the node.
    let other = std::fs::read_to_string(sshd.path("other_host_ed25519.pub")).unwrap();
    let changed = sshd.write_known_hosts("changed_known_hosts", &other);
    let listed = repo.list().await.unwrap().len();
    let error = repo
        .backup(&over_ssh(changed), BackupOptions::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("Host key verification failed"), "{error}");
    assert_eq!(repo.list().await.unwrap().len(), listed);
}

/// The snapshotter conformance suite against a stand-in node.
struct CassandraFixture {
    cluster: StandInCluster,
    down: StandInCluster,
}

#[async_trait]
impl SnapshotterFixture for CassandraFixture {
    fn working(&self) -> Box<dyn Snapshotter> {
        Box::new(snapshotter(&self.cluster.nodes[0], "node1"))
    }

    fn failing(&self) -> Vec<FailingSource> {
        vec![
            FailingSource {
                case: "a node that is down".into(),
                snapshotter: Box::new(snapshotter(&self.down.nodes[0], "down")),
                message: "Failed to connect to '127.0.0.1:7199'".into(),
            },
            FailingSource {
                case: "nodetool missing".into(),
                snapshotter: Box::new(CassandraSnapshotter::new(
                    CassandraNode::new("missing")
                        .with_nodetool("/nonexistent/nodetool")
                        .unwrap(),
                )),
                message: "cannot start /nonexistent/nodetool".into(),
            },
        ]
    }

    fn expected_facts(&self) -> Vec<&'static str> {
        vec![
            "node",
            "cluster_name",
            "host_id",
            "datacenter",
            "rack",
            "tokens",
            "num_tokens",
            "cassandra_version",
            "partitioner",
            "snapshot_tag",
            "keyspaces",
            "tables",
            "files",
            "data_dirs",
            "snapshot_cleared",
        ]
    }

    async fn leftovers(&self) -> Vec<String> {
        self.cluster.nodes[0]
            .snapshot_dirs()
            .iter()
            .map(|dir| dir.display().to_string())
            .collect()
    }

    async fn check_consistent(&self, repo: &Repository, backup: &Backup) -> Result<(), String> {
        let node = &self.cluster.nodes[0];
        let stored = stored_files(repo, backup).await;
        for file in node.live_sstables() {
            if let Some(path) = stored_path(node, &file) {
                let size = std::fs::metadata(&file).map_err(|e| e.to_string())?.len();
                if stored.get(&path) != Some(&size) {
                    return Err(format!("{path} is not stored with {size} bytes"));
                }
            }
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cassandra_keeps_the_snapshotter_contract() {
    let down = StandInCluster::create("Test Cluster", 1);
    down.nodes[0].set_down(true);
    let fixture = CassandraFixture {
        cluster: StandInCluster::create("Test Cluster", 1),
        down,
    };
    run_snapshotter_suite(&fixture).await;
}
