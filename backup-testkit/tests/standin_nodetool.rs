//! The stand-in `nodetool` itself: its outputs, the snapshot layout it
//! builds (hard links, manifest.json, schema.cql, index subdirectories in
//! every data directory) and its injected failures.

#![allow(clippy::expect_used)]

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Output};

use backup_testkit::cassandra::{StandInCluster, StandInNode};

fn nodetool(node: &StandInNode, args: &[&str]) -> Output {
    let argv = node.nodetool_argv();
    Command::new(&argv[0])
        .args(&argv[1..])
        .args(args)
        .output()
        .expect("running python3 with the stand-in nodetool")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(node: &StandInNode, args: &[&str]) -> String {
    let out = nodetool(node, args);
    assert!(
        out.status.success(),
        "nodetool {args:?}: {}\n{}{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
    stdout(&out)
}

fn ino(path: &Path) -> u64 {
    fs::metadata(path)
        .unwrap_or_else(|error| panic!("{}: {error}", path.display()))
        .ino()
}

#[test]
fn the_stand_in_answers_like_nodetool_and_snapshots_with_hard_links() {
    let cluster = StandInCluster::create("Stand-in Cluster", 2);
    let node = &cluster.nodes[0];
    assert!(node.nodetool().contains("--home"));

    assert_eq!(ok(node, &["version"]), "ReleaseVersion: 4.0.11\n");

    // The global options are accepted, before or after the command.
    let info = ok(node, &["-h", "127.0.0.1", "-p", "7199", "info", "-T"]);
    let tokens: Vec<String> = info
        .lines()
        .filter_map(|line| line.strip_prefix("Token                  : "))
        .map(str::to_owned)
        .collect();
    assert_eq!(tokens, node.tokens());
    assert_eq!(tokens.len(), 16);
    assert!(info.contains(&format!("ID                     : {}\n", node.host_id())));
    assert!(info.contains("Data Center            : dc1\n"));
    assert!(info.contains("Rack                   : rack1\n"));
    let short = ok(node, &["info"]);
    assert!(
        short.contains("Token                  : (invoke with -T/--tokens to see all 16 tokens)\n")
    );

    let describe = ok(
        node,
        &["describecluster", "-u", "cassandra", "-pw", "secret"],
    );
    assert!(
        describe.starts_with("Cluster Information:\n\tName: Stand-in Cluster\n"),
        "{describe}"
    );
    assert!(
        describe.contains("\t\t") && describe.contains(": [127.0.0.1, 127.0.0.2]"),
        "{describe}"
    );

    let ring = ok(node, &["ring"]);
    assert!(ring.contains("Datacenter: dc1\n"), "{ring}");
    let rows = ring
        .lines()
        .filter(|line| line.starts_with("127.0.0."))
        .count();
    assert_eq!(rows, 32, "{ring}");

    assert!(ok(node, &["listsnapshots"]).contains("There are no snapshots"));

    // A snapshot of every keyspace, in every data directory.
    let out = ok(node, &["snapshot", "-t", "t1"]);
    assert_eq!(
        out,
        "Requested creating snapshot(s) for [all keyspaces] with snapshot name [t1] and options {skipFlush=false}\n\
         Snapshot directory: t1\n"
    );
    let live = node.live_sstables();
    assert!(!live.is_empty());
    for file in &live {
        let table_dir = file
            .ancestors()
            .find(|dir| {
                dir.parent()
                    .and_then(Path::parent)
                    .is_some_and(|data| node.data_dirs().iter().any(|d| d == data))
            })
            .expect("a file in a table directory");
        let relative = file
            .strip_prefix(table_dir)
            .expect("below its table directory");
        let linked = table_dir.join("snapshots/t1").join(relative);
        assert_eq!(
            ino(file),
            ino(&linked),
            "{} is not hard-linked",
            file.display()
        );
    }
    // One snapshot directory per table per data directory.
    let snapshots = node.snapshot_dirs();
    assert_eq!(snapshots.len(), 10 * node.data_dirs().len());
    let mut manifests = 0;
    for dir in &snapshots {
        assert!(dir.join("schema.cql").is_file(), "{}", dir.display());
        if let Ok(text) = fs::read_to_string(dir.join("manifest.json")) {
            manifests += 1;
            let manifest: serde_json::Value =
                serde_json::from_str(&text).expect("manifest.json is JSON");
            for name in manifest["files"].as_array().expect("files") {
                assert!(dir.join(name.as_str().expect("a name")).is_file());
            }
            assert!(manifest["created_at"]
                .as_str()
                .expect("created_at")
                .ends_with('Z'));
            assert!(manifest["expires_at"].is_null());
        }
    }
    assert!(manifests >= 10, "every table has a manifest.json somewhere");
    let orders: Vec<_> = snapshots
        .iter()
        .filter(|dir| dir.to_string_lossy().contains("/shop/orders-"))
        .collect();
    let schema = fs::read_to_string(orders[0].join("schema.cql")).expect("schema.cql");
    assert!(
        schema.starts_with("CREATE TABLE IF NOT EXISTS shop.orders (\n"),
        "{schema}"
    );
    assert!(schema.contains(") WITH ID = "));
    assert!(schema
        .contains("CREATE INDEX IF NOT EXISTS orders_by_customer ON shop.orders (customer_id);"));
    let index_links = orders
        .iter()
        .flat_map(|dir| {
            fs::read_dir(dir.join(".orders_by_customer"))
                .into_iter()
                .flatten()
                .flatten()
        })
        .count();
    assert!(
        index_links >= 8,
        "the index SSTables are linked in .orders_by_customer/"
    );

    // The same tag again is refused.
    let again = nodetool(node, &["snapshot", "-t", "t1", "shop"]);
    assert_eq!(again.status.code(), Some(2));
    assert!(stderr(&again).starts_with("error: Snapshot t1 already exists.\n-- StackTrace --\n"));

    let list = ok(node, &["listsnapshots"]);
    assert!(
        list.starts_with("Snapshot Details: \nSnapshot name Keyspace name"),
        "{list}"
    );
    assert!(
        list.lines()
            .any(|line| line.starts_with("t1 ") && line.contains(" shop ")),
        "{list}"
    );
    assert!(
        list.contains("\nTotal TrueDiskSpaceUsed: 0 bytes\n"),
        "{list}"
    );

    // clearsnapshot needs -t or --all (4.0), then removes everything.
    let bare = nodetool(node, &["clearsnapshot"]);
    assert_eq!(bare.status.code(), Some(2));
    assert!(stderr(&bare).starts_with("error: Specify snapshot name or --all\n"));
    assert_eq!(
        ok(node, &["clearsnapshot", "-t", "t1"]),
        "Requested clearing snapshot(s) for [all keyspaces] with snapshot name [t1]\n"
    );
    assert!(node.snapshot_dirs().is_empty());
    for data in node.data_dirs() {
        for ks in fs::read_dir(&data).expect("data dir").flatten() {
            for table in fs::read_dir(ks.path()).expect("keyspace dir").flatten() {
                assert!(!table.path().join("snapshots").exists());
            }
        }
    }

    // Unknown commands are a bad use.
    let unknown = nodetool(node, &["snapshotx"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(stdout(&unknown).starts_with("nodetool: Found unexpected parameters: [snapshotx]\n"));
}

#[test]
fn injected_failures_leave_what_a_failing_node_leaves() {
    let cluster = StandInCluster::create("Failing Cluster", 2);
    let node = &cluster.nodes[1];

    node.fail_snapshot_after(Some(2));
    let out = nodetool(node, &["snapshot", "-t", "broken"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("error: ") && err.contains("No space left on device"),
        "{err}"
    );
    assert!(err.contains("java.nio.file.FileSystemException"), "{err}");
    assert!(stdout(&out).starts_with("Requested creating snapshot(s) for [all keyspaces]"));
    assert!(!stdout(&out).contains("Snapshot directory"));
    let partial = node.snapshot_dirs();
    assert!(!partial.is_empty(), "the partial snapshot stays on disk");
    // Two tables complete in both data directories, the third partly.
    assert!(
        partial.len() > 2 * node.data_dirs().len() && partial.len() < 10 * node.data_dirs().len()
    );

    node.fail_snapshot_after(None);
    ok(node, &["clearsnapshot", "--all"]);
    assert!(node.snapshot_dirs().is_empty());
    node.make_snapshot_dir("stale");
    assert_eq!(node.snapshot_dirs().len(), 10 * node.data_dirs().len());

    node.set_down(true);
    let down = nodetool(node, &["-h", "10.0.0.9", "version"]);
    assert_eq!(down.status.code(), Some(1));
    assert_eq!(
        stderr(&down),
        "nodetool: Failed to connect to '10.0.0.9:7199' - ConnectException: 'Connection refused (Connection refused)'.\n"
    );
    // The other node sees it down.
    let ring = ok(&cluster.nodes[0], &["ring"]);
    assert!(
        ring.contains(&format!("{:<9}  {:<12}Down", "127.0.0.2", "rack2")),
        "{ring}"
    );
    node.set_down(false);
    ok(node, &["version"]);
}

#[test]
fn new_sstables_and_rewritten_statistics() {
    let cluster = StandInCluster::create("Growing Cluster", 1);
    let node = &cluster.nodes[0];
    let before = node.live_sstables().len();
    let added = node.add_sstables("shop", "customers", 2, 10_000);
    assert_eq!(added.len(), 16);
    assert_eq!(node.live_sstables().len(), before + 16);
    let data = added
        .iter()
        .find(|path| path.to_string_lossy().ends_with("-Data.db"))
        .expect("a Data.db");
    assert_eq!(fs::metadata(data).expect("Data.db").len(), 10_000);

    node.make_snapshot_dir("s");
    let statistics = |node: &StandInNode| {
        node.live_sstables()
            .into_iter()
            .filter(|p| {
                p.to_string_lossy().contains("/shop/customers-")
                    && p.to_string_lossy().ends_with("-Statistics.db")
            })
            .map(|p| (ino(&p), fs::read(&p).expect("Statistics.db"), p))
            .collect::<Vec<_>>()
    };
    let old = statistics(node);
    node.rewrite_statistics("shop", "customers");
    let new = statistics(node);
    let changed: Vec<_> = old.iter().zip(&new).filter(|(a, b)| a.0 != b.0).collect();
    assert_eq!(changed.len(), 1, "one Statistics.db replaced");
    let ((_, old_bytes, _), (_, new_bytes, path)) = changed[0];
    assert_eq!(old_bytes.len(), new_bytes.len());
    assert_ne!(old_bytes, new_bytes);
    assert!(!path.with_extension("db.tmp").exists());
}
