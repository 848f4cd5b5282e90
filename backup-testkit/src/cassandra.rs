//! Stand-in Cassandra nodes for the tests of the Cassandra snapshotter.
//!
//! **This is a stand-in, not Cassandra.** Cassandra cannot run on the test
//! machines, so a node here is a directory: `node.json` (the node's state:
//! cluster, data center, rack, tokens, host id, schema, peers) and one or
//! more data directories holding `<keyspace>/<table>-<32 hex id>/` with
//! SSTable components in Cassandra 4.0's `nb` naming
//! (`nb-<generation>-big-Data.db`, `-Index.db`, `-Statistics.db`,
//! `-Summary.db`, `-Filter.db`, `-CompressionInfo.db`, `-Digest.crc32`,
//! `-TOC.txt`), secondary index SSTables in `.<index>/` below the table
//! directory. The program `backup-testkit/standin/nodetool` (python3,
//! standard library only) acts on that directory.
//!
//! What it reproduces: nodetool's command lines (the global options `-h`,
//! `-p`, `-u`, `-pw`, `-pwf`, accepted and ignored), the output formats of
//! Cassandra 4.0's `version`, `info`, `describecluster`, `ring`,
//! `snapshot`, `clearsnapshot` and `listsnapshots`, its error reporting
//! (`error: …` and `-- StackTrace --` on stderr with status 2, parse
//! errors on stdout with status 1, the connection error of a node that is
//! down with status 1), and the snapshot layout: for each table, in every
//! data directory, `snapshots/<tag>/` with hard links of the live
//! components, `snapshots/<tag>/.<index>/` for index SSTables,
//! `manifest.json` and `schema.cql`. Failures are injected through
//! `node.json`: a node that is down, a snapshot that fails after N tables
//! (leaving the partial snapshot on disk) and a slow snapshot.
//!
//! What it does **not** prove: that memtables are flushed before a
//! snapshot, anything about real SSTable contents (the components are
//! random bytes), compaction racing a snapshot, JMX authentication, or that
//! a restored node starts and serves the data. Tests passing against it
//! show that the snapshotter drives nodetool and reads the layout as
//! Cassandra 4.0 presents them, no more.
//!
//! ```no_run
//! use backup_testkit::cassandra::StandInCluster;
//!
//! let cluster = StandInCluster::create("Test Cluster", 2);
//! let node = &cluster.nodes[0];
//! let argv = node.nodetool_argv();
//! let out = std::process::Command::new(&argv[0])
//!     .args(&argv[1..])
//!     .args(["snapshot", "-t", "t1"])
//!     .output()
//!     .unwrap();
//! assert!(out.status.success());
//! assert!(!node.snapshot_dirs().is_empty());
//! ```

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::RngCore;
use serde_json::{json, Value};
use tempfile::TempDir;

use crate::rng::TestRng;
use crate::KIB;

/// The components of an SSTable, in the order a 4.0 `TOC.txt` lists them.
const COMPONENTS: [&str; 8] = [
    "Digest.crc32",
    "Data.db",
    "Statistics.db",
    "TOC.txt",
    "Summary.db",
    "Index.db",
    "CompressionInfo.db",
    "Filter.db",
];

/// One table of the stand-in schema.
struct TableDef {
    keyspace: &'static str,
    name: &'static str,
    columns: &'static [(&'static str, &'static str)],
    primary_key: &'static str,
    /// (index name, indexed column).
    indexes: &'static [(&'static str, &'static str)],
    /// Cassandra's fixed id of a system table; user tables get one derived
    /// from the cluster name (the same on every node of a cluster).
    fixed_id: Option<&'static str>,
}

impl TableDef {
    fn system(&self) -> bool {
        self.keyspace.starts_with("system")
    }
}

const TABLES: &[TableDef] = &[
    TableDef {
        keyspace: "system",
        name: "local",
        columns: &[
            ("key", "text"),
            ("bootstrapped", "text"),
            ("cluster_name", "text"),
            ("data_center", "text"),
            ("host_id", "uuid"),
            ("rack", "text"),
            ("release_version", "text"),
            ("schema_version", "uuid"),
            ("tokens", "set<text>"),
        ],
        primary_key: "key",
        indexes: &[],
        fixed_id: Some("7ad54392bcdd35a684174e047860b377"),
    },
    TableDef {
        keyspace: "system",
        name: "peers_v2",
        columns: &[
            ("peer", "inet"),
            ("peer_port", "int"),
            ("data_center", "text"),
            ("host_id", "uuid"),
            ("rack", "text"),
            ("release_version", "text"),
            ("schema_version", "uuid"),
            ("tokens", "set<text>"),
        ],
        primary_key: "peer, peer_port",
        indexes: &[],
        fixed_id: Some("c4325fbb8e5e3bafbd070f9250ed818e"),
    },
    TableDef {
        keyspace: "system_schema",
        name: "keyspaces",
        columns: &[
            ("keyspace_name", "text"),
            ("durable_writes", "boolean"),
            ("replication", "frozen<map<text, text>>"),
        ],
        primary_key: "keyspace_name",
        indexes: &[],
        fixed_id: Some("abac5682dea631c5b535b3d6cffd0fb6"),
    },
    TableDef {
        keyspace: "system_schema",
        name: "tables",
        columns: &[
            ("keyspace_name", "text"),
            ("table_name", "text"),
            ("comment", "text"),
            ("id", "uuid"),
        ],
        primary_key: "keyspace_name, table_name",
        indexes: &[],
        fixed_id: Some("afddfb9dbc1e30688056eed6c302ba09"),
    },
    TableDef {
        keyspace: "system_traces",
        name: "sessions",
        columns: &[
            ("session_id", "uuid"),
            ("client", "inet"),
            ("command", "text"),
            ("coordinator", "inet"),
            ("duration", "int"),
            ("request", "text"),
            ("started_at", "timestamp"),
        ],
        primary_key: "session_id",
        indexes: &[],
        fixed_id: Some("c5e99f1686773914b17e960613512345"),
    },
    TableDef {
        keyspace: "system_traces",
        name: "events",
        columns: &[
            ("session_id", "uuid"),
            ("event_id", "timeuuid"),
            ("activity", "text"),
            ("source", "inet"),
            ("source_elapsed", "int"),
            ("thread", "text"),
        ],
        primary_key: "(session_id), event_id",
        indexes: &[],
        fixed_id: Some("8826e8e9e16a372887533bc1fc713c25"),
    },
    TableDef {
        keyspace: "system_auth",
        name: "roles",
        columns: &[
            ("role", "text"),
            ("can_login", "boolean"),
            ("is_superuser", "boolean"),
            ("member_of", "set<text>"),
            ("salted_hash", "text"),
        ],
        primary_key: "role",
        indexes: &[],
        fixed_id: Some("5bc52802de2535edaeab188eecebb090"),
    },
    TableDef {
        keyspace: "shop",
        name: "orders",
        columns: &[
            ("order_id", "uuid"),
            ("customer_id", "uuid"),
            ("placed_at", "timestamp"),
            ("status", "text"),
            ("total", "decimal"),
        ],
        primary_key: "order_id",
        indexes: &[("orders_by_customer", "customer_id")],
        fixed_id: None,
    },
    TableDef {
        keyspace: "shop",
        name: "customers",
        columns: &[
            ("customer_id", "uuid"),
            ("email", "text"),
            ("name", "text"),
            ("since", "date"),
        ],
        primary_key: "customer_id",
        indexes: &[],
        fixed_id: None,
    },
    TableDef {
        keyspace: "inventory",
        name: "items",
        columns: &[
            ("sku", "text"),
            ("warehouse", "text"),
            ("description", "text"),
            ("quantity", "int"),
        ],
        primary_key: "(sku), warehouse",
        indexes: &[],
        fixed_id: None,
    },
];

/// The keyspaces in the order Cassandra lists them, with their replication.
fn keyspace_replication(name: &str, datacenter: &str) -> Value {
    match name {
        "system" | "system_schema" => json!({"class": "LocalStrategy"}),
        "system_auth" => json!({"class": "SimpleStrategy", "replication_factor": "1"}),
        "system_traces" => json!({"class": "SimpleStrategy", "replication_factor": "2"}),
        _ => json!({"class": "NetworkTopologyStrategy", datacenter: "3"}),
    }
}

/// What a stand-in node is.
#[derive(Debug, Clone)]
pub struct NodeSpec {
    /// The cluster's name (`describecluster`'s `Name:`); table ids and the
    /// schema version derive from it, so nodes of one cluster share them.
    pub cluster: String,
    /// The data center (`info`'s `Data Center`).
    pub datacenter: String,
    /// The rack.
    pub rack: String,
    /// How many tokens (vnodes) the node owns.
    pub num_tokens: usize,
    /// How many data directories (`data1` … `dataN` below the home).
    pub data_dirs: usize,
    /// The release version (`nodetool version`), such as `4.0.11`.
    pub version: String,
    /// The seed of the node's tokens, host id and SSTables.
    pub seed: u64,
}

impl Default for NodeSpec {
    /// One node of "Test Cluster" in dc1/rack1: 16 tokens, 2 data
    /// directories, 4.0.11, seed 1.
    fn default() -> NodeSpec {
        NodeSpec {
            cluster: "Test Cluster".to_owned(),
            datacenter: "dc1".to_owned(),
            rack: "rack1".to_owned(),
            num_tokens: 16,
            data_dirs: 2,
            version: "4.0.11".to_owned(),
            seed: 1,
        }
    }
}

/// One table of a node: where its directories are called.
#[derive(Debug, Clone)]
struct TableInfo {
    keyspace: String,
    name: String,
    id: String,
    indexes: Vec<String>,
}

/// A stand-in Cassandra node: a home directory with `node.json` and data
/// directories, driven through the stand-in `nodetool` ([`Self::nodetool`]).
#[derive(Debug)]
pub struct StandInNode {
    home: PathBuf,
    spec: NodeSpec,
    host_id: String,
    tokens: Vec<String>,
    data_dirs: Vec<PathBuf>,
    tables: Vec<TableInfo>,
    address: String,
}

/// FNV-1a, 64 bits: a stable hash for deriving seeds from names.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// 32 lowercase hex digits of a UUID of `version` drawn from `rng`.
fn uuid_hex(rng: &mut TestRng, version: u8) -> String {
    let mut bytes = [0u8; 16];
    rng.fill_bytes(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | (version << 4);
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `hex` (32 digits) in the 8-4-4-4-12 form.
fn dashed(hex: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// CRC-32 (IEEE), as Cassandra writes into `-Digest.crc32`.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &byte in data {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A path quoted for a POSIX shell (as is when nothing needs quoting).
fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+=:,@%".contains(&b));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The generation of an `nb-<generation>-big-…` file name.
fn generation_of(name: &str) -> Option<u64> {
    let mut parts = name.splitn(4, '-');
    let format = parts.next()?;
    let generation = parts.next()?.parse().ok()?;
    (format.len() == 2 && parts.next()? == "big" && parts.next().is_some()).then_some(generation)
}

/// The SSTable component files directly in `dir`, sorted.
fn component_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| entry.file_type().map(|t| t.is_file()).unwrap_or(false))
        .filter(|entry| generation_of(&entry.file_name().to_string_lossy()).is_some())
        .map(|entry| entry.path())
        .collect();
    out.sort();
    out
}

fn write(path: &Path, bytes: &[u8]) {
    fs::write(path, bytes).unwrap_or_else(|error| panic!("writing {}: {error}", path.display()));
}

fn random(rng: &mut TestRng, len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8; len];
    rng.fill_bytes(&mut bytes);
    bytes
}

/// Writes the components of SSTable `generation` into `dir` with a
/// `data_size`-byte Data.db, returning the files.
fn write_sstable(dir: &Path, generation: u64, data_size: usize, rng: &mut TestRng) -> Vec<PathBuf> {
    fs::create_dir_all(dir).unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
    let name = |component: &str| dir.join(format!("nb-{generation}-big-{component}"));
    let data = random(rng, data_size);
    let chunks = data_size / (16 * KIB as usize) + 1;
    let stats_len = rng.range(4_500, 10_500) as usize;
    let mut files = Vec::new();
    for component in COMPONENTS {
        let bytes = match component {
            "Data.db" => data.clone(),
            "Digest.crc32" => crc32(&data).to_string().into_bytes(),
            "TOC.txt" => COMPONENTS.map(|c| format!("{c}\n")).concat().into_bytes(),
            "Statistics.db" => random(rng, stats_len),
            "Summary.db" => random(rng, 56 + data_size / 2048),
            "Index.db" => random(rng, 64 + data_size / 16),
            "CompressionInfo.db" => random(rng, 43 + 8 * chunks),
            _ => random(rng, 16 + data_size / 512),
        };
        let path = name(component);
        write(&path, &bytes);
        files.push(path);
    }
    files
}

/// Reads `home/node.json`.
fn read_state(home: &Path) -> Value {
    let path = home.join("node.json");
    let text = fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
    serde_json::from_str(&text)
        .unwrap_or_else(|error| panic!("parsing {}: {error}", path.display()))
}

/// Writes `home/node.json` (a temporary file renamed over it, so the
/// stand-in never reads half a state).
fn write_state(home: &Path, state: &Value) {
    let path = home.join("node.json");
    let temporary = home.join("node.json.tmp");
    let text = serde_json::to_string_pretty(state).expect("a JSON value serialises");
    write(&temporary, text.as_bytes());
    fs::rename(&temporary, &path)
        .unwrap_or_else(|error| panic!("renaming {}: {error}", temporary.display()));
}

impl StandInNode {
    /// Creates the node at `home` (created if missing): `node.json`, the
    /// data directories `home/data1` … `home/dataN`, and the schema —
    /// `system` (`local`, `peers_v2`), `system_schema` (`keyspaces`,
    /// `tables`), `system_traces` (`sessions`, `events`), `system_auth`
    /// (`roles`), `shop` (`orders` with the secondary index
    /// `orders_by_customer`, `customers`) and `inventory` (`items`) — each
    /// table with 1-3 SSTable generations spread over the data directories
    /// (Data.db of a few KiB to ~300 KiB for user tables, under 8 KiB for
    /// system ones). Tokens are distinct random Murmur3 tokens, sorted; the
    /// host id derives from `spec.seed`. The address is 127.0.0.1.
    ///
    /// # Panics
    ///
    /// When a file cannot be written, or `spec` asks for no data directory
    /// or no token.
    pub fn create(home: &Path, spec: &NodeSpec) -> StandInNode {
        assert!(spec.data_dirs > 0, "a node needs a data directory");
        assert!(spec.num_tokens > 0, "a node needs a token");
        fs::create_dir_all(home)
            .unwrap_or_else(|error| panic!("creating {}: {error}", home.display()));
        let home = fs::canonicalize(home)
            .unwrap_or_else(|error| panic!("resolving {}: {error}", home.display()));
        let mut rng = TestRng::new(spec.seed);
        let host_id = dashed(&uuid_hex(&mut rng, 4));
        let mut tokens = BTreeSet::new();
        while tokens.len() < spec.num_tokens {
            tokens.insert(rng.next_u64() as i64);
        }
        let tokens: Vec<String> = tokens.into_iter().map(|t| t.to_string()).collect();
        let data_dirs: Vec<PathBuf> = (1..=spec.data_dirs)
            .map(|i| home.join(format!("data{i}")))
            .collect();

        let mut schema_rng = TestRng::new(fnv(&spec.cluster));
        let schema_version = dashed(&uuid_hex(&mut schema_rng, 3));
        let tables: Vec<TableInfo> = TABLES
            .iter()
            .map(|def| TableInfo {
                keyspace: def.keyspace.to_owned(),
                name: def.name.to_owned(),
                id: match def.fixed_id {
                    Some(id) => id.to_owned(),
                    None => uuid_hex(
                        &mut TestRng::new(fnv(&format!(
                            "{}/{}.{}",
                            spec.cluster, def.keyspace, def.name
                        ))),
                        1,
                    ),
                },
                indexes: def
                    .indexes
                    .iter()
                    .map(|(name, _)| (*name).to_owned())
                    .collect(),
            })
            .collect();

        let mut keyspaces: Vec<Value> = Vec::new();
        for (def, info) in TABLES.iter().zip(&tables) {
            let table = json!({
                "name": def.name,
                "id": info.id,
                "columns": def.columns.iter().map(|(n, t)| json!([n, t])).collect::<Vec<_>>(),
                "primary_key": def.primary_key,
                "indexes": def.indexes.iter().map(|(n, c)| json!({"name": n, "column": c})).collect::<Vec<_>>(),
            });
            match keyspaces.iter_mut().find(|ks| ks["name"] == def.keyspace) {
                Some(ks) => ks["tables"]
                    .as_array_mut()
                    .expect("tables is an array")
                    .push(table),
                None => keyspaces.push(json!({
                    "name": def.keyspace,
                    "replication": keyspace_replication(def.keyspace, &spec.datacenter),
                    "tables": [table],
                })),
            }
        }

        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("the clock is after 1970")
            .as_secs();
        let started_at = now - 3_600 - spec.seed % 1_000;
        let state = json!({
            "standin": "backup-testkit stand-in for a Cassandra 4.0 node, not Cassandra",
            "cluster": spec.cluster,
            "datacenter": spec.datacenter,
            "rack": spec.rack,
            "version": spec.version,
            "address": "127.0.0.1",
            "host_id": host_id,
            "tokens": tokens,
            "data_dirs": data_dirs.iter().map(|d| d.to_string_lossy().into_owned()).collect::<Vec<_>>(),
            "snitch": "org.apache.cassandra.locator.GossipingPropertyFileSnitch",
            "schema_version": schema_version,
            "generation": started_at,
            "started_at": started_at,
            "keyspaces": keyspaces,
            "peers": [],
            "down": false,
            "fail_snapshot_after": null,
            "slow_snapshot_ms": null,
        });
        write_state(&home, &state);

        let node = StandInNode {
            home,
            spec: spec.clone(),
            host_id,
            tokens,
            data_dirs,
            tables,
            address: "127.0.0.1".to_owned(),
        };
        // Cassandra creates a table's directory (and its indexes') in every
        // data directory, whether SSTables go there or not.
        for table in &node.tables {
            for dir in node.table_dirs(table) {
                for index in &table.indexes {
                    let index_dir = dir.join(format!(".{index}"));
                    fs::create_dir_all(&index_dir).unwrap_or_else(|error| {
                        panic!("creating {}: {error}", index_dir.display())
                    });
                }
                fs::create_dir_all(&dir)
                    .unwrap_or_else(|error| panic!("creating {}: {error}", dir.display()));
            }
        }
        for (def, table) in TABLES.iter().zip(&node.tables) {
            let (low, high) = if def.system() {
                (200, 8 * KIB)
            } else {
                (4 * KIB, 300 * KIB)
            };
            let count = rng.range(1, 4);
            for generation in 1..=count {
                let dir = &node.table_dirs(table)[rng.below(spec.data_dirs as u64) as usize];
                write_sstable(dir, generation, rng.range(low, high) as usize, &mut rng);
            }
            for index in &table.indexes {
                for generation in 1..=rng.range(1, 3) {
                    let dir = node.table_dirs(table)[rng.below(spec.data_dirs as u64) as usize]
                        .join(format!(".{index}"));
                    write_sstable(
                        &dir,
                        generation,
                        rng.range(KIB, 40 * KIB) as usize,
                        &mut rng,
                    );
                }
            }
        }
        node
    }

    /// The node's home directory (holding `node.json`).
    pub fn home(&self) -> &Path {
        &self.home
    }

    /// The path of the stand-in `nodetool` script.
    fn script() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("standin/nodetool")
    }

    /// The command line that runs the stand-in `nodetool` for this node,
    /// for a shell: `python3 <script> --home <home>` (paths quoted); append
    /// nodetool's options and command.
    pub fn nodetool(&self) -> String {
        self.nodetool_argv()
            .iter()
            .map(|part| shell_quote(part))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// [`Self::nodetool`] as separate arguments, the program first.
    pub fn nodetool_argv(&self) -> Vec<String> {
        vec![
            "python3".to_owned(),
            Self::script().to_string_lossy().into_owned(),
            "--home".to_owned(),
            self.home.to_string_lossy().into_owned(),
        ]
    }

    /// The data directories, absolute.
    pub fn data_dirs(&self) -> Vec<PathBuf> {
        self.data_dirs.clone()
    }

    /// The node's tokens, sorted as numbers (signed 64-bit Murmur3 tokens).
    pub fn tokens(&self) -> Vec<String> {
        self.tokens.clone()
    }

    /// The host id (a UUID with dashes).
    pub fn host_id(&self) -> String {
        self.host_id.clone()
    }

    /// The cluster's name.
    pub fn cluster_name(&self) -> String {
        self.spec.cluster.clone()
    }

    /// The data center.
    pub fn datacenter(&self) -> String {
        self.spec.datacenter.clone()
    }

    /// The rack.
    pub fn rack(&self) -> String {
        self.spec.rack.clone()
    }

    /// The release version (`ReleaseVersion:` of `nodetool version`).
    pub fn version(&self) -> String {
        self.spec.version.clone()
    }

    /// The node's address in `ring` and `describecluster` (127.0.0.1, or
    /// 127.0.0.<n> for node n of a [`StandInCluster`]).
    pub fn address(&self) -> String {
        self.address.clone()
    }

    /// The table's directory in each data directory.
    fn table_dirs(&self, table: &TableInfo) -> Vec<PathBuf> {
        self.data_dirs
            .iter()
            .map(|data| {
                data.join(&table.keyspace)
                    .join(format!("{}-{}", table.name, table.id))
            })
            .collect()
    }

    fn table(&self, keyspace: &str, table: &str) -> &TableInfo {
        self.tables
            .iter()
            .find(|t| t.keyspace == keyspace && t.name == table)
            .unwrap_or_else(|| panic!("the stand-in schema has no table {keyspace}.{table}"))
    }

    /// Every live SSTable component file (index SSTables included,
    /// snapshots not), absolute, sorted.
    pub fn live_sstables(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for table in &self.tables {
            for dir in self.table_dirs(table) {
                out.extend(component_files(&dir));
                for index in &table.indexes {
                    out.extend(component_files(&dir.join(format!(".{index}"))));
                }
            }
        }
        out.sort();
        out
    }

    /// Adds `count` new SSTable generations (after the highest one in any
    /// data directory) of `keyspace.table`, each with a `size`-byte Data.db,
    /// spread over the data directories; returns the new files (all
    /// components).
    ///
    /// # Panics
    ///
    /// When the table is not in the stand-in schema or a file cannot be
    /// written.
    pub fn add_sstables(
        &self,
        keyspace: &str,
        table: &str,
        count: usize,
        size: usize,
    ) -> Vec<PathBuf> {
        let info = self.table(keyspace, table);
        let dirs = self.table_dirs(info);
        let highest = dirs
            .iter()
            .flat_map(|dir| component_files(dir))
            .filter_map(|path| generation_of(&path.file_name()?.to_string_lossy()))
            .max()
            .unwrap_or(0);
        let mut rng = TestRng::new(self.spec.seed ^ fnv(&format!("{keyspace}.{table}/{highest}")));
        let mut out = Vec::new();
        for generation in highest + 1..=highest + count as u64 {
            let dir = &dirs[(generation % dirs.len() as u64) as usize];
            out.extend(write_sstable(dir, generation, size, &mut rng));
        }
        out
    }

    /// Rewrites the newest live `-Statistics.db` of `keyspace.table` with
    /// new content of the same size, written to `<name>.tmp` and renamed
    /// over it, as Cassandra does when it changes an SSTable's repair or
    /// level metadata: the live file gets a new inode, hard links in
    /// snapshots keep the old content.
    ///
    /// # Panics
    ///
    /// When the table is unknown or has no live SSTable.
    pub fn rewrite_statistics(&self, keyspace: &str, table: &str) {
        let info = self.table(keyspace, table);
        let path = self
            .table_dirs(info)
            .iter()
            .flat_map(|dir| component_files(dir))
            .filter(|path| path.to_string_lossy().ends_with("-Statistics.db"))
            .max_by_key(|path| {
                path.file_name()
                    .and_then(|n| generation_of(&n.to_string_lossy()))
            })
            .unwrap_or_else(|| panic!("{keyspace}.{table} has no live SSTable"));
        let old =
            fs::read(&path).unwrap_or_else(|error| panic!("reading {}: {error}", path.display()));
        let new: Vec<u8> = old.iter().map(|byte| byte ^ 0xa5).collect();
        let mut temporary = path.clone().into_os_string();
        temporary.push(".tmp");
        let temporary = PathBuf::from(temporary);
        write(&temporary, &new);
        fs::rename(&temporary, &path)
            .unwrap_or_else(|error| panic!("renaming {}: {error}", temporary.display()));
    }

    /// Every `snapshots/<tag>` directory under any data directory (what a
    /// leaked snapshot looks like), sorted.
    pub fn snapshot_dirs(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let entries = |dir: &Path| -> Vec<PathBuf> {
            fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .map(|entry| entry.path())
                .filter(|path| path.is_dir())
                .collect()
        };
        for data in &self.data_dirs {
            for keyspace in entries(data) {
                for table in entries(&keyspace) {
                    out.extend(entries(&table.join("snapshots")));
                }
            }
        }
        out.sort();
        out
    }

    /// Takes the snapshot `tag` with the stand-in's `nodetool snapshot -t
    /// tag` (for tests of stale snapshots).
    ///
    /// # Panics
    ///
    /// When the command fails.
    pub fn make_snapshot_dir(&self, tag: &str) {
        let argv = self.nodetool_argv();
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .args(["snapshot", "-t", tag])
            .output()
            .unwrap_or_else(|error| panic!("running {}: {error}", argv.join(" ")));
        assert!(
            out.status.success(),
            "nodetool snapshot -t {tag} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Sets one field of `node.json`.
    fn set_state(&self, key: &str, value: Value) {
        let mut state = read_state(&self.home);
        state[key] = value;
        write_state(&self.home, &state);
    }

    /// Marks the node down (every nodetool command fails as against a JMX
    /// port that refuses: status 1) or up again.
    pub fn set_down(&self, down: bool) {
        self.set_state("down", json!(down));
    }

    /// Makes `snapshot` fail after `n` table snapshots (`error: …` naming
    /// the next table's files, status 2, the partial snapshot left on disk),
    /// or succeed again (`None`).
    pub fn fail_snapshot_after(&self, n: Option<usize>) {
        self.set_state("fail_snapshot_after", json!(n));
    }

    /// Makes `snapshot` sleep `ms` milliseconds after linking, before it
    /// returns (`None`: no sleep).
    pub fn slow_snapshot(&self, ms: Option<u64>) {
        self.set_state("slow_snapshot_ms", json!(ms));
    }
}

/// Stand-in nodes of one cluster in a temporary directory (removed when
/// dropped): each sees the others in `ring` and `describecluster`.
#[derive(Debug)]
pub struct StandInCluster {
    /// The nodes, node 1 (127.0.0.1, rack1) first.
    pub nodes: Vec<StandInNode>,
    dir: TempDir,
}

impl StandInCluster {
    /// A cluster called `name` of `nodes` nodes in `dir/node1` …: each with
    /// 2 data directories, 16 tokens, data center `dc1`, rack `rack<n>`,
    /// address 127.0.0.<n>, version 4.0.11 and a seed of its own.
    ///
    /// # Panics
    ///
    /// When the temporary directory or a file cannot be made.
    pub fn create(name: &str, nodes: usize) -> StandInCluster {
        let dir = tempfile::tempdir().expect("a temporary directory for the stand-in cluster");
        let mut created: Vec<StandInNode> = (1..=nodes)
            .map(|n| {
                let spec = NodeSpec {
                    cluster: name.to_owned(),
                    datacenter: "dc1".to_owned(),
                    rack: format!("rack{n}"),
                    num_tokens: 16,
                    data_dirs: 2,
                    version: "4.0.11".to_owned(),
                    seed: fnv(name).wrapping_add(1_000_003 * n as u64),
                };
                StandInNode::create(&dir.path().join(format!("node{n}")), &spec)
            })
            .collect();
        let homes: Vec<String> = created
            .iter()
            .map(|node| node.home.to_string_lossy().into_owned())
            .collect();
        for (i, node) in created.iter_mut().enumerate() {
            node.address = format!("127.0.0.{}", i + 1);
            let mut state = read_state(&node.home);
            state["address"] = json!(node.address);
            state["peers"] = json!(homes
                .iter()
                .enumerate()
                .filter(|(j, _)| *j != i)
                .map(|(_, home)| home)
                .collect::<Vec<_>>());
            write_state(&node.home, &state);
        }
        StandInCluster {
            nodes: created,
            dir,
        }
    }

    /// The directory holding the nodes' homes.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_and_quoting_and_generations() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        assert_eq!(shell_quote("/a/b-c"), "/a/b-c");
        assert_eq!(shell_quote("/a b/it's"), r"'/a b/it'\''s'");
        assert_eq!(generation_of("nb-12-big-Data.db"), Some(12));
        assert_eq!(generation_of("manifest.json"), None);
    }
}
