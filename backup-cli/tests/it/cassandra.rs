//! Cassandra through backupctl against **stand-in** nodes
//! (`backup_testkit::cassandra`: a stand-in nodetool with Cassandra 4.0's
//! command lines, outputs and snapshot layout; not Cassandra, which cannot
//! be installed here): a three-node cluster backup to S3 (s3s-fs) and to
//! an SSH server (sshd; one node read over SSH too) with per-node progress
//! JSON lines, `show` of a
//! node's identity and tokens, a restore into three new nodes, a restore
//! into two refused, a node failing halfway.

use std::fs;
use std::path::{Path, PathBuf};

use backup_testkit::backupctl::Backupctl;
use backup_testkit::cassandra::{StandInCluster, StandInNode};
use backup_testkit::server::s3::start_s3s_fs;
use backup_testkit::server::sshd::Sshd;
use serde_json::Value;

use crate::backupctl;

const PASSWORD: &str = "cassandra test password";

/// A node list for `cluster-backup`; with `sshd`, the first node is
/// reached over SSH.
fn node_list(cluster: &StandInCluster, path: &Path, sshd: Option<&Sshd>) {
    let mut text = String::from("cluster = \"dc1\"\nparallelism = 2\n");
    for (at, node) in cluster.nodes.iter().enumerate() {
        let dirs: Vec<String> = node
            .data_dirs()
            .iter()
            .map(|dir| format!("{:?}", dir.display().to_string()))
            .collect();
        text.push_str(&format!(
            "\n[[node]]\nname = \"node{}\"\nnodetool = {:?}\ncqlsh = \"none\"\ndata_dirs = [{}]\n",
            at + 1,
            node.nodetool(),
            dirs.join(", ")
        ));
        if let (0, Some(sshd)) = (at, sshd) {
            text.push_str(&format!(
                "ssh = \"{}@127.0.0.1\"\nssh_port = {}\nssh_key = {:?}\nknown_hosts = {:?}\n",
                sshd.user,
                sshd.port(),
                sshd.path("client_ed25519").display().to_string(),
                sshd.path("known_hosts").display().to_string()
            ));
        }
    }
    fs::write(path, text).unwrap();
}

/// JSON lines of stderr.
fn json_lines(stderr: &str) -> Vec<Value> {
    stderr
        .lines()
        .filter_map(|line| serde_json::from_str(line).ok())
        .collect()
}

fn no_snapshots_left(cluster: &StandInCluster) {
    for node in &cluster.nodes {
        assert_eq!(node.snapshot_dirs(), Vec::<PathBuf>::new());
    }
}

/// Backs up the three nodes, checks progress, show, the restore into three
/// new nodes and the refusal of two.
fn cluster_round_trip(
    cli: &Backupctl,
    cluster: &StandInCluster,
    scratch: &Path,
    sshd: Option<&Sshd>,
) {
    cli.run(["init"]).ok();
    let nodes = scratch.join("nodes.toml");
    node_list(cluster, &nodes, sshd);
    let nodes_arg = nodes.display().to_string();
    let out = cli
        .run([
            "cluster-backup",
            "--nodes",
            &nodes_arg,
            "--progress",
            "json",
            "--json",
        ])
        .ok();
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(report["state"], "COMPLETED", "{report:#}");
    let events = json_lines(&out.stderr);
    for name in ["node1", "node2", "node3"] {
        let last = events
            .iter()
            .rev()
            .find(|event| event["node"] == name)
            .unwrap_or_else(|| panic!("no progress line of {name}:\n{}", out.stderr));
        assert_eq!(last["state"], "COMPLETED", "{last}");
        assert_eq!(last["percent"], 100.0, "{last}");
        assert!(
            events
                .iter()
                .any(|event| event["node"] == name && event["state"] == "RUNNING"),
            "no RUNNING line of {name}"
        );
    }
    let whole = events.last().unwrap();
    assert!(
        whole["node"].is_null() && whole["state"] == "COMPLETED",
        "{whole}"
    );
    assert_eq!(whole["nodes_completed"], 3);
    println!(
        "{} progress lines; last: {}",
        events.len(),
        serde_json::to_string(whole).unwrap()
    );
    no_snapshots_left(cluster);

    // show prints the node's identity and tokens.
    let shown = cli
        .run(["show", "latest", "--set", "dc1/node2"])
        .ok()
        .stdout;
    let node2: &StandInNode = &cluster.nodes[1];
    assert!(shown.contains(&node2.host_id()), "{shown}");
    assert!(
        shown.contains(&format!("initial_token: {}", node2.tokens().join(","))),
        "{shown}"
    );

    let listed = cli.run(["cluster-list", "--cluster", "dc1"]).ok().stdout;
    assert!(listed.contains(report["id"].as_str().unwrap()), "{listed}");

    // Into two new nodes: refused before writing.
    let targets: Vec<(PathBuf, PathBuf)> = (0..3)
        .map(|at| {
            let yaml = scratch.join(format!("new{at}.yaml"));
            fs::write(&yaml, "cluster_name: 'Test Cluster'\nnum_tokens: 16\n").unwrap();
            (scratch.join(format!("new{at}/data")), yaml)
        })
        .collect();
    let restore_args = |count: usize| {
        let mut args: Vec<String> =
            vec!["cluster-restore".into(), "--cluster".into(), "dc1".into()];
        for (dir, yaml) in &targets[..count] {
            args.push("--cassandra-data-dir".into());
            args.push(dir.display().to_string());
            args.push("--cassandra-yaml".into());
            args.push(yaml.display().to_string());
        }
        args.extend(["--cassandra-version".into(), "4.0.11".into()]);
        args
    };
    let refused = cli.run(restore_args(2)).fails();
    assert!(
        refused.stderr.contains("has 3 nodes and 2 were given"),
        "{}",
        refused.describe()
    );
    assert!(targets.iter().all(|(dir, _)| !dir.exists()));

    let restored = cli.run(restore_args(3)).ok().stdout;
    println!("{restored}");
    for (at, ((dir, yaml), node)) in targets.iter().zip(&cluster.nodes).enumerate() {
        let mut compared = 0;
        for file in node.live_sstables() {
            let relative = node
                .data_dirs()
                .iter()
                .find_map(|data| file.strip_prefix(data).ok())
                .unwrap()
                .to_path_buf();
            let text = relative.to_string_lossy();
            if text.starts_with("system/") || text.starts_with("system_traces/") {
                continue;
            }
            assert_eq!(
                fs::read(dir.join(&relative)).unwrap(),
                fs::read(&file).unwrap(),
                "{text} on new node {at}"
            );
            compared += 1;
        }
        assert!(compared > 10);
        let yaml = fs::read_to_string(yaml).unwrap();
        assert!(
            yaml.contains(&format!("initial_token: {}\n", node.tokens().join(","))),
            "{yaml}"
        );
        assert!(yaml.contains("auto_bootstrap: false\n"), "{yaml}");
    }
}

#[test]
fn a_three_node_cluster_to_s3_with_progress_restored_into_a_new_cluster() {
    let s3 = start_s3s_fs();
    let scratch = tempfile::tempdir().unwrap();
    let cluster = StandInCluster::create("Test Cluster", 3);
    let cli = backupctl()
        .s3_repo(&s3, "cassandra")
        .env("BACKUP_PASSWORD", PASSWORD);
    cluster_round_trip(&cli, &cluster, scratch.path(), None);
}

#[test]
fn a_three_node_cluster_to_an_ssh_server_and_a_node_failing_halfway() {
    let sshd = Sshd::start();
    let scratch = tempfile::tempdir().unwrap();
    let repo = scratch.path().join("repo");
    fs::create_dir(&repo).unwrap();
    let cluster = StandInCluster::create("Test Cluster", 3);
    let cli = backupctl()
        .env("BACKUP_PASSWORD", PASSWORD)
        .global(["--repo", &sshd.url(&repo)])
        .global([
            "--ssh-key".as_ref(),
            sshd.path("client_ed25519").as_os_str(),
        ])
        .global([
            "--known-hosts".as_ref(),
            sshd.path("known_hosts").as_os_str(),
        ]);
    // node1 is read over SSH, from the same server.
    let connections = sshd.connections();
    cluster_round_trip(&cli, &cluster, scratch.path(), Some(&sshd));
    assert!(repo.join("config").is_file());
    let shown = cli
        .run(["show", "latest", "--set", "dc1/node1"])
        .ok()
        .stdout;
    assert!(
        shown.contains(&format!("{}@127.0.0.1:", sshd.user)),
        "{shown}"
    );
    assert!(sshd.connections() > connections + 3, "{}", sshd.log());

    // node3 fails halfway through its snapshot: the cluster backup is
    // FAILED, names it, leaves no snapshot, and is not offered for restore.
    cluster.nodes[2].fail_snapshot_after(Some(2));
    let nodes = scratch.path().join("nodes.toml").display().to_string();
    let out = cli
        .run(["cluster-backup", "--nodes", &nodes, "--progress", "json"])
        .fails();
    assert!(out.stdout.contains("node3: FAILED"), "{}", out.describe());
    assert!(
        out.stdout.contains("No space left on device"),
        "{}",
        out.describe()
    );
    let events = json_lines(&out.stderr);
    let whole = events.last().unwrap();
    assert_eq!(whole["state"], "FAILED", "{whole}");
    assert!(
        whole["error"].as_str().unwrap().contains("node3"),
        "{whole}"
    );
    no_snapshots_left(&cluster);
    let failed_id = events[0]["cluster_backup_id"].as_str().unwrap().to_string();
    let refused = cli
        .run([
            "cluster-restore",
            &failed_id,
            "--cluster",
            "dc1",
            "--cassandra-data-dir",
            "/nonexistent/a",
            "--cassandra-data-dir",
            "/nonexistent/b",
            "--cassandra-data-dir",
            "/nonexistent/c",
        ])
        .fails();
    assert!(
        refused.stderr.contains("never recorded"),
        "{}",
        refused.describe()
    );
    let listed = cli.run(["cluster-list", "--cluster", "dc1"]).ok().stdout;
    assert!(!listed.contains(&failed_id), "{listed}");
}

#[test]
fn one_node_through_backup_and_restore_to_cassandra() {
    let scratch = tempfile::tempdir().unwrap();
    let cluster = StandInCluster::create("Test Cluster", 1);
    let node = &cluster.nodes[0];
    let cli = backupctl()
        .env("BACKUP_PASSWORD", PASSWORD)
        .global(["--repo", &scratch.path().join("repo").display().to_string()]);
    cli.run(["init"]).ok();
    let mut args: Vec<String> = vec![
        "backup".into(),
        "--source".into(),
        "cassandra".into(),
        "--set".into(),
        "dc1/node1".into(),
        "--cassandra-node".into(),
        "node1".into(),
        "--nodetool".into(),
        node.nodetool(),
        "--cqlsh".into(),
        "none".into(),
        "--keyspace".into(),
        "shop".into(),
        "--json".into(),
    ];
    for dir in node.data_dirs() {
        args.push("--cassandra-data-dir".into());
        args.push(dir.display().to_string());
    }
    let out = cli.run(&args).ok();
    let backup: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(backup["facts"]["keyspaces"], serde_json::json!(["shop"]));
    assert_eq!(node.snapshot_dirs(), Vec::<PathBuf>::new());

    let target = scratch.path().join("new/data");
    let yaml = scratch.path().join("cassandra.yaml");
    fs::write(&yaml, "num_tokens: 16\n").unwrap();
    let restore = |version: &str| {
        cli.run([
            "restore",
            "latest",
            "--set",
            "dc1/node1",
            "--to",
            "cassandra",
            "--cassandra-data-dir",
            &target.display().to_string(),
            "--cassandra-yaml",
            &yaml.display().to_string(),
            "--cassandra-version",
            version,
        ])
    };
    let refused = restore("3.11.17").fails();
    assert!(
        refused
            .stderr
            .contains("Cassandra 4.0.11 and the node runs 3.11.17"),
        "{}",
        refused.describe()
    );
    assert!(!target.exists());
    let out = restore("4.0.11").ok();
    assert!(out.stdout.contains("initial_token"), "{}", out.describe());
    assert!(target.join("shop").is_dir());
    assert!(!target.join("system").exists());
    assert!(fs::read_to_string(&yaml)
        .unwrap()
        .contains("auto_bootstrap: false"));
    let again = restore("4.0.11").fails();
    assert!(again.stderr.contains("not empty"), "{}", again.describe());
}
