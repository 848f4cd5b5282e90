//! Cassandra: a node's `nodetool snapshot`, read from its data
//! directories (locally or over SSH), stored by keyspace and table with
//! the node's identity and tokens; whole clusters as one cluster backup;
//! restores into stopped nodes of a new cluster.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use super::tool::{Tool, ToolStream};
use super::{Entry, FetchFiles, Finisher, ListedFile, Snapshot, Snapshotter};
use crate::format::manifest::SourceInfo;
use crate::{Error, Result};

mod cluster;
mod nodetool;
mod restore;

pub use cluster::{
    cluster_set, ClusterBackup, ClusterBackupReport, ClusterNodeReport, ClusterProgress,
    ClusterRecord, ClusterRestore, ClusterState, RecordedNode, CLUSTER_KIND,
};
pub use restore::CassandraRestorer;

/// The snapshotter kind of a node backup.
pub const CASSANDRA_KIND: &str = "cassandra";

/// Where a node backup keeps the SSTables: `data/<keyspace>/<table>-<id>/`.
pub const CASSANDRA_DATA_DIR: &str = "data";

/// The schema as `cqlsh`'s `DESCRIBE SCHEMA` printed it, when it could run.
pub const CASSANDRA_SCHEMA_FILE: &str = "schema.cql";

/// Snapshot tags this toolkit takes start with this: `nodetool
/// listsnapshots` shows them, and a run clears those an earlier, killed
/// run left behind.
pub const SNAPSHOT_TAG_PREFIX: &str = "backup-toolkit-";

/// A snapshot of ours older than this is taken for one a killed run left
/// behind, and cleared by the next backup of the node.
pub const DEFAULT_STALE_SNAPSHOT_AGE: Duration = Duration::from_secs(12 * 3600);

/// How a node's programs are run and its files read on another host: with
/// OpenSSH's `ssh`, the host key checked against a `known_hosts` file
/// (`StrictHostKeyChecking=yes`: an unknown or changed key is refused, as
/// the SFTP sink refuses it), no password prompts (`BatchMode=yes`).
///
/// # Examples
///
/// ```
/// use backup_core::SshAccess;
/// let ssh = SshAccess::new("cassandra@10.0.0.7")
///     .with_port(2222)
///     .with_identity("/etc/backup/id_ed25519")
///     .with_known_hosts("/etc/backup/known_hosts");
/// assert_eq!(ssh.destination(), "cassandra@10.0.0.7");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshAccess {
    destination: String,
    port: Option<u16>,
    identity: Option<PathBuf>,
    known_hosts: Option<PathBuf>,
    program: PathBuf,
}

impl SshAccess {
    /// Logs in to `destination` (`user@host` or `host`).
    pub fn new(destination: impl Into<String>) -> SshAccess {
        SshAccess {
            destination: destination.into(),
            port: None,
            identity: None,
            known_hosts: None,
            program: PathBuf::from("ssh"),
        }
    }

    /// The port (default 22).
    pub fn with_port(mut self, port: u16) -> SshAccess {
        self.port = Some(port);
        self
    }

    /// The private key to log in with (default: ssh's own choice).
    pub fn with_identity(mut self, key: impl Into<PathBuf>) -> SshAccess {
        self.identity = Some(key.into());
        self
    }

    /// The `known_hosts` file holding the host's key (default
    /// `~/.ssh/known_hosts`).
    pub fn with_known_hosts(mut self, file: impl Into<PathBuf>) -> SshAccess {
        self.known_hosts = Some(file.into());
        self
    }

    /// The `ssh` program (default `ssh` on the `PATH`).
    pub fn with_program(mut self, program: impl Into<PathBuf>) -> SshAccess {
        self.program = program.into();
        self
    }

    /// The destination logged in to.
    pub fn destination(&self) -> &str {
        &self.destination
    }

    /// `argv` run on the host.
    fn tool(&self, argv: &[String], what: String) -> Tool {
        let mut tool = Tool::new(None, "ssh", what).args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=yes",
        ]);
        tool = tool.with_program(self.program.clone());
        if let Some(file) = &self.known_hosts {
            tool = tool
                .arg("-o")
                .arg(format!("UserKnownHostsFile={}", file.display()));
        }
        if let Some(port) = self.port {
            tool = tool.arg("-p").arg(port.to_string());
        }
        if let Some(key) = &self.identity {
            tool = tool
                .arg("-i")
                .arg(key.as_os_str())
                .arg("-o")
                .arg("IdentitiesOnly=yes");
        }
        tool.arg("--")
            .arg(&self.destination)
            .arg(shell_words::join(argv))
    }
}

/// One Cassandra node: how to run its `nodetool` (and `cqlsh`), where its
/// data directories are, and whether it is reached over SSH.
///
/// # Examples
///
/// ```
/// use backup_core::{CassandraNode, SshAccess};
/// let node = CassandraNode::new("cass-0")
///     .with_nodetool("nodetool -h 127.0.0.1 -p 7199")?
///     .with_data_dirs(["/var/lib/cassandra/data"])
///     .over_ssh(SshAccess::new("cassandra@10.0.0.7"));
/// assert_eq!(node.name(), "cass-0");
/// # Ok::<(), backup_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct CassandraNode {
    name: String,
    nodetool: Vec<String>,
    cqlsh: Option<Vec<String>>,
    data_dirs: Vec<String>,
    ssh: Option<SshAccess>,
}

impl CassandraNode {
    /// The node `name` (its backup set's last part: a host or pod name),
    /// with `nodetool` and `cqlsh` from the `PATH` and the data directory
    /// `/var/lib/cassandra/data`, run on this host.
    pub fn new(name: impl Into<String>) -> CassandraNode {
        CassandraNode {
            name: name.into(),
            nodetool: vec!["nodetool".into()],
            cqlsh: Some(vec!["cqlsh".into()]),
            data_dirs: vec!["/var/lib/cassandra/data".into()],
            ssh: None,
        }
    }

    /// The `nodetool` command line (split as a shell would, without
    /// running one): `nodetool -h 10.0.0.7 -u cassandra -pwf /etc/jmx.pw`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an empty or badly quoted line.
    pub fn with_nodetool(mut self, command: &str) -> Result<CassandraNode> {
        self.nodetool = split_command("nodetool", command)?;
        Ok(self)
    }

    /// The `cqlsh` command line whose `DESCRIBE SCHEMA` is stored beside
    /// the tables' own `schema.cql`; `None` not to run it. When it cannot
    /// run (not installed, refused), the backup goes on with the tables'
    /// schema files and says so in its facts.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for an empty or badly quoted line.
    pub fn with_cqlsh(mut self, command: Option<&str>) -> Result<CassandraNode> {
        self.cqlsh = command
            .map(|command| split_command("cqlsh", command))
            .transpose()?;
        Ok(self)
    }

    /// The node's `data_file_directories`, all of them.
    pub fn with_data_dirs<I, S>(mut self, dirs: I) -> CassandraNode
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.data_dirs = dirs
            .into_iter()
            .map(|dir| {
                let dir: String = dir.into();
                let trimmed = dir.trim_end_matches('/');
                if trimmed.is_empty() {
                    "/".to_string()
                } else {
                    trimmed.to_string()
                }
            })
            .collect();
        self
    }

    /// Runs its programs and reads its files on another host.
    pub fn over_ssh(mut self, ssh: SshAccess) -> CassandraNode {
        self.ssh = Some(ssh);
        self
    }

    /// The node's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its data directories.
    pub fn data_dirs(&self) -> &[String] {
        &self.data_dirs
    }

    /// `argv` run on the node's host.
    fn tool(&self, argv: &[String], what: String) -> Tool {
        match &self.ssh {
            Some(ssh) => ssh.tool(argv, what),
            None => {
                let (program, args) = argv
                    .split_first()
                    .map_or(("true", &[][..]), |(p, a)| (p.as_str(), a));
                Tool::new(None, program, what).args(args)
            }
        }
    }

    fn nodetool_tool(&self, args: &[&str]) -> Tool {
        let mut argv = self.nodetool.clone();
        argv.extend(args.iter().map(|arg| (*arg).to_string()));
        self.tool(
            &argv,
            format!(
                "nodetool {} of Cassandra node {}",
                args.first().copied().unwrap_or_default(),
                self.name
            ),
        )
    }

    async fn nodetool(&self, args: &[&str]) -> Result<String> {
        self.nodetool_tool(args).output().await
    }

    /// Removes snapshot `tag`, blocking (from a drop too).
    fn clear_snapshot_blocking(&self, tag: &str) -> Result<()> {
        self.nodetool_tool(&["clearsnapshot", "-t", tag])
            .run_blocking()
            .map(|_| ())
    }
}

impl std::fmt::Debug for CassandraNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CassandraNode")
            .field("name", &self.name)
            .field("nodetool", &redacted(&self.nodetool))
            .field("cqlsh", &self.cqlsh.as_deref().map(redacted))
            .field("data_dirs", &self.data_dirs)
            .field("ssh", &self.ssh)
            .finish()
    }
}

/// A command line with the values of password options (`-pw`,
/// `--password`, cqlsh's `-p`) replaced, for `Debug`.
fn redacted(argv: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    let mut hide = false;
    for arg in argv {
        if hide {
            out.push("<redacted>".to_string());
            hide = false;
            continue;
        }
        match arg.split_once('=') {
            Some((option, _)) if matches!(option, "-pw" | "--password") => {
                out.push(format!("{option}=<redacted>"));
            }
            _ => {
                hide = matches!(arg.as_str(), "-pw" | "--password" | "-p");
                out.push(arg.clone());
            }
        }
    }
    out
}

fn split_command(what: &str, command: &str) -> Result<Vec<String>> {
    let argv = shell_words::split(command).map_err(|error| {
        Error::InvalidArgument(format!("the {what} command line {command:?}: {error}"))
    })?;
    if argv.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "the {what} command line is empty"
        )));
    }
    Ok(argv)
}

/// Backs up one Cassandra node: `nodetool snapshot -t TAG`, the snapshot's
/// hard-linked SSTables found under every data directory and stored by
/// keyspace and table (`data/<keyspace>/<table>-<id>/`, secondary-index
/// `.<index>/` subdirectories and each table's `schema.cql` included), the
/// schema from `cqlsh` when it runs, and the node's identity and ring in
/// the manifest's facts; then `nodetool clearsnapshot -t TAG`, on failure
/// and cancellation too.
///
/// SSTables never change once written, so a file whose path, size and
/// modification time (to the nanosecond) are the parent backup's is not
/// read again: the next backup of the node reads only new SSTables. The
/// components Cassandra rewrites (`-Statistics.db`, `-Summary.db`) are
/// written as new files, with new times, and so are read again when they
/// were.
///
/// Facts: `node`, `cluster_name`, `host_id`, `datacenter`, `rack`,
/// `tokens`, `num_tokens`, `cassandra_version`, `partitioner`, `snitch`,
/// `schema_versions`, `snapshot_tag`, `keyspaces`, `tables`, `files`,
/// `data_dirs`, `schema_cql` (`cqlsh` or `per-table`) and, when an earlier
/// run's snapshots were cleared, `stale_snapshots_cleared`.
///
/// # Examples
///
/// ```
/// use backup_core::{CassandraNode, CassandraSnapshotter, Snapshotter};
/// let node = CassandraNode::new("cass-0").with_data_dirs(["/var/lib/cassandra/data"]);
/// let snapshotter = CassandraSnapshotter::new(node).with_keyspaces(["shop"]);
/// assert_eq!(snapshotter.kind(), "cassandra");
/// ```
#[derive(Debug, Clone)]
pub struct CassandraSnapshotter {
    node: CassandraNode,
    keyspaces: Vec<String>,
    include_traces: bool,
    stale_after: Duration,
}

impl CassandraSnapshotter {
    /// Backs up every keyspace of `node` but `system_traces`.
    pub fn new(node: CassandraNode) -> CassandraSnapshotter {
        CassandraSnapshotter {
            node,
            keyspaces: Vec::new(),
            include_traces: false,
            stale_after: DEFAULT_STALE_SNAPSHOT_AGE,
        }
    }

    /// Only these keyspaces (empty: all).
    pub fn with_keyspaces<I, S>(mut self, keyspaces: I) -> CassandraSnapshotter
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.keyspaces = keyspaces.into_iter().map(Into::into).collect();
        self
    }

    /// Keeps `system_traces` too (left out by default: it only holds
    /// query traces).
    pub fn with_system_traces(mut self, include: bool) -> CassandraSnapshotter {
        self.include_traces = include;
        self
    }

    /// Clears snapshots of ours older than `age` (default
    /// [`DEFAULT_STALE_SNAPSHOT_AGE`]) before taking a new one.
    pub fn with_stale_snapshot_age(mut self, age: Duration) -> CassandraSnapshotter {
        self.stale_after = age;
        self
    }

    /// The node it backs up.
    pub fn node(&self) -> &CassandraNode {
        &self.node
    }

    /// Clears our snapshots older than the limit; returns their tags.
    async fn clear_stale(&self, now: i64) -> Result<Vec<String>> {
        let listed = self.node.nodetool(&["listsnapshots"]).await?;
        let mut cleared = Vec::new();
        for tag in nodetool::parse_listsnapshots(&listed) {
            let Some(taken) = tag_time(&tag) else {
                continue;
            };
            if now.saturating_sub(taken)
                > i64::try_from(self.stale_after.as_secs()).unwrap_or(i64::MAX)
            {
                self.node.nodetool(&["clearsnapshot", "-t", &tag]).await?;
                tracing::warn!(node = %self.node.name, %tag, "cleared a snapshot an earlier run left behind");
                cleared.push(tag);
            }
        }
        Ok(cleared)
    }

    /// Lists the snapshot's files: `(size, mtime_ns, mode, path)`.
    async fn list(&self, tag: &str) -> Result<Vec<(u64, i64, u32, String)>> {
        let mut argv = vec!["find".to_string(), "-H".to_string()];
        argv.extend(self.node.data_dirs.iter().cloned());
        argv.extend(
            [
                "-mindepth",
                "5",
                "-path",
                &format!("*/snapshots/{tag}/*"),
                "-type",
                "f",
                "-printf",
                "%s %T@ %m %p\\0",
            ]
            .map(String::from),
        );
        let what = format!("listing the snapshot of Cassandra node {}", self.node.name);
        let output = self.node.tool(&argv, what.clone()).output().await?;
        let broken = |detail: String| Error::Snapshot {
            source_name: what.clone(),
            detail,
        };
        let mut files = Vec::new();
        for record in output.split('\0').filter(|record| !record.is_empty()) {
            let mut fields = record.splitn(4, ' ');
            let (Some(size), Some(time), Some(mode), Some(path)) =
                (fields.next(), fields.next(), fields.next(), fields.next())
            else {
                return Err(broken(format!("unexpected find output {record:?}")));
            };
            let size = size
                .parse()
                .map_err(|_| broken(format!("unexpected size in {record:?}")))?;
            let mtime = parse_find_time(time)
                .ok_or_else(|| broken(format!("unexpected time in {record:?}")))?;
            let mode = u32::from_str_radix(mode, 8)
                .map_err(|_| broken(format!("unexpected mode in {record:?}")))?;
            files.push((size, mtime, mode, path.to_string()));
        }
        Ok(files)
    }

    /// The schema from `cqlsh`, or why there is none.
    async fn describe_schema(&self) -> std::result::Result<Vec<u8>, String> {
        let Some(cqlsh) = &self.node.cqlsh else {
            return Err("cqlsh not configured".into());
        };
        let mut argv = cqlsh.clone();
        argv.extend(["-e".to_string(), "DESCRIBE SCHEMA".to_string()]);
        let what = format!("cqlsh of Cassandra node {}", self.node.name);
        match self.node.tool(&argv, what).output().await {
            Ok(schema) if !schema.trim().is_empty() => Ok(schema.into_bytes()),
            Ok(_) => Err("cqlsh printed no schema".into()),
            Err(error) => Err(error.to_string()),
        }
    }
}

/// `%T@` of GNU find (`1733600000.1234567890`) in nanoseconds.
fn parse_find_time(text: &str) -> Option<i64> {
    let (seconds, fraction) = text.split_once('.').unwrap_or((text, ""));
    let seconds: i64 = seconds.parse().ok()?;
    let mut digits: String = fraction.chars().take(9).collect();
    if !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    while digits.len() < 9 {
        digits.push('0');
    }
    let nanos: i64 = digits.parse().ok()?;
    seconds.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// The Unix time a tag of ours was taken at.
fn tag_time(tag: &str) -> Option<i64> {
    tag.strip_prefix(SNAPSHOT_TAG_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

#[async_trait]
impl Snapshotter for CassandraSnapshotter {
    fn kind(&self) -> &str {
        CASSANDRA_KIND
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        let node = &self.node;
        let version_text = node.nodetool(&["version"]).await?;
        let version = nodetool::parse_version(&version_text).ok_or_else(|| Error::Snapshot {
            source_name: format!("Cassandra node {}", node.name),
            detail: format!("`nodetool version` printed no ReleaseVersion: {version_text:?}"),
        })?;
        let info =
            nodetool::parse_info(&node.nodetool(&["info", "-T"]).await?).map_err(|detail| {
                Error::Snapshot {
                    source_name: format!("Cassandra node {}", node.name),
                    detail,
                }
            })?;
        let cluster = nodetool::parse_describecluster(&node.nodetool(&["describecluster"]).await?)
            .map_err(|detail| Error::Snapshot {
                source_name: format!("Cassandra node {}", node.name),
                detail,
            })?;
        let now = chrono::Utc::now().timestamp();
        let stale = self.clear_stale(now).await?;
        let tag = format!("{SNAPSHOT_TAG_PREFIX}{now}-{:08x}", rand::random::<u32>());
        let mut args = vec!["snapshot", "-t", tag.as_str()];
        args.extend(self.keyspaces.iter().map(String::as_str));
        // From here on the snapshot is removed whatever happens.
        let guard = SnapshotGuard {
            node: node.clone(),
            tag: tag.clone(),
            cleared: false,
        };
        if let Err(error) = node.nodetool(&args).await {
            guard.clear().await?;
            return Err(error);
        }
        let listed = match self.list(&tag).await {
            Ok(listed) => listed,
            Err(error) => {
                guard.clear().await?;
                return Err(error);
            }
        };
        let schema = self.describe_schema().await;
        let files = match self.arrange(&tag, listed) {
            Ok(files) => files,
            Err(error) => {
                guard.clear().await?;
                return Err(error);
            }
        };
        let mut keyspaces: Vec<String> = Vec::new();
        let mut tables: Vec<String> = Vec::new();
        for file in &files {
            let mut parts = file.path.split('/');
            if let (Some(keyspace), Some(table)) = (parts.next(), parts.next()) {
                if !keyspaces.iter().any(|known| known == keyspace) {
                    keyspaces.push(keyspace.to_string());
                }
                let table = format!("{keyspace}/{table}");
                if !tables.contains(&table) {
                    tables.push(table);
                }
            }
        }
        keyspaces.sort();
        let mut facts = BTreeMap::new();
        facts.insert("node".into(), node.name.clone().into());
        facts.insert("cluster_name".into(), cluster.name.clone().into());
        facts.insert("host_id".into(), info.host_id.clone().into());
        facts.insert("datacenter".into(), info.datacenter.clone().into());
        facts.insert("rack".into(), info.rack.clone().into());
        facts.insert("num_tokens".into(), info.tokens.len().into());
        facts.insert("tokens".into(), info.tokens.clone().into());
        facts.insert("cassandra_version".into(), version.into());
        facts.insert("partitioner".into(), cluster.partitioner.into());
        facts.insert("snitch".into(), cluster.snitch.into());
        facts.insert(
            "schema_versions".into(),
            serde_json::to_value(&cluster.schema_versions).unwrap_or_default(),
        );
        if cluster.schema_versions.len() > 1 {
            tracing::warn!(node = %node.name, "the cluster's nodes disagree on the schema");
        }
        facts.insert("snapshot_tag".into(), tag.clone().into());
        facts.insert("keyspaces".into(), keyspaces.into());
        facts.insert("tables".into(), tables.len().into());
        facts.insert("files".into(), files.len().into());
        facts.insert("data_dirs".into(), node.data_dirs.clone().into());
        if !stale.is_empty() {
            facts.insert("stale_snapshots_cleared".into(), stale.into());
        }
        let mut entries = vec![Entry::Files {
            name: CASSANDRA_DATA_DIR.into(),
            files,
            fetch: node
                .ssh
                .as_ref()
                .map(|_| Box::new(SshFetch { node: node.clone() }) as Box<dyn FetchFiles>),
        }];
        match schema {
            Ok(schema) => {
                facts.insert("schema_cql".into(), "cqlsh".into());
                entries.push(Entry::Stream {
                    name: CASSANDRA_SCHEMA_FILE.into(),
                    reader: Box::new(std::io::Cursor::new(schema)),
                    mode: 0o644,
                });
            }
            Err(why) => {
                tracing::info!(node = %node.name, %why, "no cqlsh schema; the tables' schema.cql files are stored");
                facts.insert("schema_cql".into(), "per-table".into());
            }
        }
        let mut snapshot = Snapshot::new(
            entries,
            SourceInfo {
                kind: CASSANDRA_KIND.into(),
                paths: node
                    .data_dirs
                    .iter()
                    .map(|dir| match &node.ssh {
                        Some(ssh) => format!("{}:{dir}", ssh.destination),
                        None => dir.clone(),
                    })
                    .collect(),
            },
        );
        snapshot.facts = facts;
        Ok(snapshot.with_finisher(Box::new(guard)))
    }
}

impl CassandraSnapshotter {
    /// The snapshot's files as they are stored: `<keyspace>/<table>/...`,
    /// every data directory's merged, `manifest.json` left out (the
    /// backup's manifest lists the files), `system_traces` and keyspaces
    /// not chosen left out.
    fn arrange(&self, tag: &str, listed: Vec<(u64, i64, u32, String)>) -> Result<Vec<ListedFile>> {
        let mut files: BTreeMap<String, ListedFile> = BTreeMap::new();
        for (size, mtime, mode, source) in listed {
            let Some(relative) = self.node.data_dirs.iter().find_map(|dir| {
                source
                    .strip_prefix(dir.as_str())
                    .and_then(|rest| rest.strip_prefix('/'))
            }) else {
                continue;
            };
            let parts: Vec<&str> = relative.split('/').collect();
            let [keyspace, table, "snapshots", found_tag, rest @ ..] = parts.as_slice() else {
                continue;
            };
            if *found_tag != tag || rest.is_empty() {
                continue;
            }
            if *keyspace == "system_traces" && !self.include_traces {
                continue;
            }
            if !self.keyspaces.is_empty() && !self.keyspaces.iter().any(|k| k == keyspace) {
                continue;
            }
            if rest == ["manifest.json"] {
                continue;
            }
            let path = format!("{keyspace}/{table}/{}", rest.join("/"));
            // A component Cassandra rewrites (-Statistics.db, -Summary.db:
            // a new file renamed over the old, or written again) has a new
            // time, so it is read again without being marked.
            let file = ListedFile::new(path.clone(), source.clone(), size, mtime).with_mode(mode);
            match files.get(&path) {
                None => {
                    files.insert(path, file);
                }
                // The same table's schema in each data directory.
                Some(_) if rest == ["schema.cql"] => {}
                Some(first) => {
                    return Err(Error::Snapshot {
                        source_name: format!("Cassandra node {}", self.node.name),
                        detail: format!(
                            "{} and {} are the same SSTable component in two data directories",
                            first.source, source
                        ),
                    })
                }
            }
        }
        Ok(files.into_values().collect())
    }
}

/// Removes the node's snapshot: when the backup finishes, however it
/// ends, or when it is dropped.
struct SnapshotGuard {
    node: CassandraNode,
    tag: String,
    cleared: bool,
}

impl SnapshotGuard {
    async fn clear(mut self) -> Result<()> {
        self.cleared = true;
        let node = self.node.clone();
        let tag = self.tag.clone();
        tokio::task::spawn_blocking(move || node.clear_snapshot_blocking(&tag))
            .await
            .map_err(|error| Error::Snapshot {
                source_name: format!("Cassandra node {}", self.node.name),
                detail: format!("clearing the snapshot: {error}"),
            })?
    }
}

impl Drop for SnapshotGuard {
    fn drop(&mut self) {
        if !self.cleared {
            if let Err(error) = self.node.clear_snapshot_blocking(&self.tag) {
                tracing::warn!(node = %self.node.name, tag = %self.tag, %error, "the snapshot could not be cleared; the next backup of the node clears it");
            }
        }
    }
}

#[async_trait]
impl Finisher for SnapshotGuard {
    async fn finish(
        self: Box<Self>,
        _success: bool,
    ) -> Result<BTreeMap<String, serde_json::Value>> {
        let node = self.node.name.clone();
        let tag = self.tag.clone();
        let mut facts = BTreeMap::new();
        match (*self).clear().await {
            Ok(()) => {
                facts.insert("snapshot_cleared".into(), true.into());
            }
            // The backup holds every file: a snapshot left on disk costs
            // space, not correctness, and the next run clears it.
            Err(error) => {
                tracing::warn!(%node, %tag, %error, "the snapshot could not be cleared; the next backup of the node clears it");
                facts.insert("snapshot_cleared".into(), false.into());
            }
        }
        Ok(facts)
    }
}

/// Reads a remote node's files with `tar` over SSH.
struct SshFetch {
    node: CassandraNode,
}

impl FetchFiles for SshFetch {
    fn fetch(self: Box<Self>, sources: Vec<String>) -> std::io::Result<Box<dyn Read + Send>> {
        let mut names = Vec::new();
        for source in &sources {
            names.extend_from_slice(source.trim_start_matches('/').as_bytes());
            names.push(0);
        }
        let argv: Vec<String> = [
            "tar",
            "--null",
            "--no-recursion",
            "-C",
            "/",
            "-T",
            "-",
            "-cf",
            "-",
        ]
        .map(String::from)
        .to_vec();
        let what = format!("reading the snapshot of Cassandra node {}", self.node.name);
        let stream: ToolStream = self.node.tool(&argv, what).stdin_bytes(names).stream();
        Ok(Box::new(stream))
    }
}

/// The node's identity and tokens as `backupctl show` prints them, from a
/// node backup's facts; `None` for another kind of backup.
pub fn describe_node(facts: &BTreeMap<String, serde_json::Value>) -> Option<String> {
    let text = |key: &str| {
        facts
            .get(key)
            .and_then(|v| v.as_str())
            .unwrap_or("?")
            .to_string()
    };
    facts.get("host_id")?;
    let tokens: Vec<String> = facts
        .get("tokens")
        .and_then(|v| v.as_array())
        .map(|tokens| {
            tokens
                .iter()
                .filter_map(|token| token.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    Some(format!(
        "Cassandra node {} of cluster {:?}: host id {}, data center {}, rack {}, version {}, \
         {} tokens\ninitial_token: {}",
        text("node"),
        text("cluster_name"),
        text("host_id"),
        text("datacenter"),
        text("rack"),
        text("cassandra_version"),
        tokens.len(),
        tokens.join(",")
    ))
}

pub(crate) use nodetool::major;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_times_and_tags() {
        assert_eq!(
            parse_find_time("1733600000.1234567890"),
            Some(1_733_600_000_123_456_789)
        );
        assert_eq!(parse_find_time("5.5"), Some(5_500_000_000));
        assert_eq!(parse_find_time("7"), Some(7_000_000_000));
        assert_eq!(parse_find_time("x"), None);
        assert_eq!(
            tag_time("backup-toolkit-1733600000-0badf00d"),
            Some(1_733_600_000)
        );
        assert_eq!(tag_time("nightly"), None);
    }

    #[test]
    fn passwords_on_command_lines_are_not_in_debug() {
        let node = CassandraNode::new("n1")
            .with_nodetool("nodetool -u cassandra -pw s3cret-jmx")
            .unwrap()
            .with_cqlsh(Some("cqlsh -u cassandra -p s3cret-cql --password=again"))
            .unwrap();
        let shown = format!("{node:?} {:?}", CassandraSnapshotter::new(node.clone()));
        assert!(
            !shown.contains("s3cret") && !shown.contains("again"),
            "{shown}"
        );
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn ssh_command_line() {
        let node = CassandraNode::new("n1")
            .with_nodetool("nodetool -h 'a b'")
            .unwrap()
            .over_ssh(
                SshAccess::new("cass@host")
                    .with_port(2222)
                    .with_known_hosts("/k"),
            );
        let tool = node.nodetool_tool(&["info", "-T"]);
        let line = format!("{:?}", tool.argv());
        assert!(line.contains("StrictHostKeyChecking=yes"), "{line}");
        assert!(line.contains("UserKnownHostsFile=/k"), "{line}");
        assert!(line.contains("\"nodetool -h 'a b' info -T\""), "{line}");
    }
}
