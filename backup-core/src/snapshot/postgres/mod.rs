//! PostgreSQL: physical base backups through `pg_basebackup`, streamed and
//! stored file by file; logical dumps through `pg_dump` and `pg_dumpall`;
//! and their restores.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::tool::{Tool, ToolStream};
use super::{Entry, Finisher, Snapshot, Snapshotter, TarCapture};
use crate::format::manifest::SourceInfo;
use crate::{Error, Result};

mod conninfo;
mod facts;
mod restore;
mod wal;

pub use restore::PostgresRestorer;
pub use wal::{
    base_backup_for, wal_set, ArchivedWal, RecoveryTarget, WalArchive, WalGap, WalPush, WAL_KIND,
};

/// The directory a physical backup's data directory is stored under.
pub const POSTGRES_DATA_DIR: &str = "data";

/// The file a logical backup's roles and tablespaces are stored in.
pub const POSTGRES_GLOBALS_FILE: &str = "globals.sql";

/// What a [`PostgresSnapshotter`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PostgresMode {
    /// The whole cluster's files, consistent with the WAL that comes with
    /// them (`pg_basebackup`): restored into a data directory, the server
    /// replays to the end of the backup. The base of point-in-time restore.
    #[default]
    Physical,
    /// SQL-level dumps (`pg_dump` of each database, `pg_dumpall` for roles
    /// and tablespaces): restored into any server of the same or a newer
    /// major version.
    Logical,
}

impl PostgresMode {
    /// `physical` or `logical`, as recorded in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            PostgresMode::Physical => "physical",
            PostgresMode::Logical => "logical",
        }
    }
}

impl std::str::FromStr for PostgresMode {
    type Err = Error;

    fn from_str(text: &str) -> Result<PostgresMode> {
        match text {
            "physical" => Ok(PostgresMode::Physical),
            "logical" => Ok(PostgresMode::Logical),
            other => Err(Error::InvalidArgument(format!(
                "unknown PostgreSQL backup mode {other:?}: physical or logical"
            ))),
        }
    }
}

/// Backs up a PostgreSQL server, through its own tools (found in the
/// directory given by [`with_bin_dir`](Self::with_bin_dir), else on the
/// `PATH`), connecting with a libpq connection string (a
/// `postgresql://` URL or `host=... user=...` keywords; `PGPASSFILE`,
/// `PGSSLMODE` and the other libpq variables apply as they do to `psql`).
///
/// **Physical** ([`PostgresMode::Physical`], the default): `pg_basebackup
/// -D - -Ft -X fetch` streams the cluster as a tar, which is stored file by
/// file under `data/` as it arrives (nothing is staged on local disk), so
/// that relation segments that did not change cost nothing in the next
/// backup and changed ones only their changed chunks. The stream holds the
/// WAL from the backup's start to its end (`pg_wal/`), `backup_label`,
/// `tablespace_map` and the server's `backup_manifest`, so that a restored
/// data directory starts by itself and passes `pg_verifybackup`. While it
/// runs, a temporary physical replication slot held by a `psql` session
/// keeps the server from recycling that WAL before it is fetched; the slot
/// goes with the session, even when this process is killed. The role needs
/// the `REPLICATION` attribute (and `pg_hba.conf` a `replication` line).
/// Tablespaces outside the data directory are not supported in this mode
/// (`pg_basebackup` refuses to stream them).
///
/// Why `pg_basebackup` and not the low-level API (`pg_backup_start` and
/// reading the data directory): the stream works for a server on another
/// host, brings the WAL and the manifest, and stores nothing twice on this
/// host's disk either way; the low-level API would need the data directory
/// here and the WAL from an archive to be restorable.
///
/// **Logical** ([`PostgresMode::Logical`]): `pg_dumpall --globals-only`
/// (roles, tablespaces) as `globals.sql`, then each database (all that
/// accept connections, or those given) as `<database>.dump`, `pg_dump
/// --format=custom --compress=0` (uncompressed, so that chunks deduplicate
/// across backups), each a consistent snapshot of its database. With
/// [`with_jobs`](Self::with_jobs) above 1, each database is dumped in the
/// directory format with that many parallel jobs to a temporary directory
/// first (`<database>/`).
///
/// A server that cannot be reached, a refused password, or a tool that
/// fails halfway fails the backup with the tool's own message, and nothing
/// is recorded.
///
/// Facts recorded (physical): `mode`, `server_version`,
/// `server_version_num`, `system_identifier`, `timeline`, `start_lsn`,
/// `stop_lsn`, `wal_segment_size`, `wal_start` and `wal_stop` (the first and
/// last WAL segment files the backup needs), `start_time`, `backup_label`
/// (its text). Logical: `mode`, `server_version`, `server_version_num`,
/// `databases`, `format`, `globals`.
///
/// # Examples
///
/// ```
/// use backup_core::{PostgresMode, PostgresSnapshotter};
/// let pg = PostgresSnapshotter::new("postgresql://backup@db.internal/postgres")
///     .with_mode(PostgresMode::Logical)
///     .with_databases(["app"]);
/// assert_eq!(pg.mode(), PostgresMode::Logical);
/// ```
#[derive(Clone)]
pub struct PostgresSnapshotter {
    conninfo: String,
    mode: PostgresMode,
    bin_dir: Option<PathBuf>,
    password: Option<Zeroizing<String>>,
    databases: Vec<String>,
    globals: bool,
    jobs: u32,
    fast_checkpoint: bool,
}

impl std::fmt::Debug for PostgresSnapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresSnapshotter")
            .field("conninfo", &conninfo::redact(&self.conninfo))
            .field("mode", &self.mode)
            .field("bin_dir", &self.bin_dir)
            .field("databases", &self.databases)
            .field("globals", &self.globals)
            .field("jobs", &self.jobs)
            .field("fast_checkpoint", &self.fast_checkpoint)
            .finish_non_exhaustive()
    }
}

impl PostgresSnapshotter {
    /// A physical backup of the server `conninfo` connects to.
    pub fn new(conninfo: impl Into<String>) -> PostgresSnapshotter {
        PostgresSnapshotter {
            conninfo: conninfo.into(),
            mode: PostgresMode::Physical,
            bin_dir: None,
            password: None,
            databases: Vec::new(),
            globals: true,
            jobs: 1,
            fast_checkpoint: true,
        }
    }

    /// Physical or logical.
    pub fn with_mode(mut self, mode: PostgresMode) -> Self {
        self.mode = mode;
        self
    }

    /// The mode.
    pub fn mode(&self) -> PostgresMode {
        self.mode
    }

    /// Where `psql`, `pg_basebackup`, `pg_dump` and `pg_dumpall` are
    /// (Debian: `/usr/lib/postgresql/<major>/bin`); default: the `PATH`.
    pub fn with_bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(dir.into());
        self
    }

    /// The password, passed to the tools in `PGPASSWORD` (never on a
    /// command line); default: the connection string's, or libpq's own
    /// lookup (`PGPASSWORD`, `~/.pgpass`).
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Zeroizing::new(password.into()));
        self
    }

    /// Logical: only these databases (default: every database that
    /// accepts connections, templates excepted).
    pub fn with_databases<I, S>(mut self, databases: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.databases = databases.into_iter().map(Into::into).collect();
        self
    }

    /// Logical: whether to dump roles and tablespaces (`pg_dumpall
    /// --globals-only`, which needs a superuser); default yes.
    pub fn with_globals(mut self, globals: bool) -> Self {
        self.globals = globals;
        self
    }

    /// Logical: parallel `pg_dump` jobs per database (directory format,
    /// staged in a temporary directory); default 1 (custom format,
    /// streamed).
    pub fn with_jobs(mut self, jobs: u32) -> Self {
        self.jobs = jobs.max(1);
        self
    }

    /// Physical: whether the backup starts with an immediate checkpoint
    /// (`--checkpoint=fast`, the default) or waits for a spread one.
    pub fn with_fast_checkpoint(mut self, fast: bool) -> Self {
        self.fast_checkpoint = fast;
        self
    }

    fn tool(&self, program: &str, what: impl Into<String>) -> Tool {
        Tool::new(self.bin_dir.as_deref(), program, what)
            .secret_env("PGPASSWORD", self.password.as_ref())
    }

    fn source_name(&self) -> String {
        format!("PostgreSQL at {}", conninfo::redact(&self.conninfo))
    }

    /// Runs one query with `psql`; returns its rows, fields split on `|`.
    async fn query(&self, conninfo: &str, sql: &str) -> Result<Vec<Vec<String>>> {
        let output = self
            .tool("psql", self.source_name())
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(conninfo)
            .args(["-c", sql])
            .output()
            .await?;
        Ok(output
            .lines()
            .filter(|line| !line.is_empty())
            .map(|line| line.split('|').map(str::to_string).collect())
            .collect())
    }

    /// The server's version and identity.
    async fn server_facts(&self) -> Result<BTreeMap<String, serde_json::Value>> {
        let rows = self
            .query(
                &self.conninfo,
                "SELECT current_setting('server_version'), current_setting('server_version_num'), \
                 (SELECT system_identifier FROM pg_control_system()), \
                 (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'), \
                 pg_is_in_recovery()",
            )
            .await?;
        let row = rows.first().ok_or_else(|| Error::Snapshot {
            source_name: self.source_name(),
            detail: "psql returned no row for the server's version".into(),
        })?;
        let field = |at: usize| row.get(at).cloned().unwrap_or_default();
        let mut facts = BTreeMap::new();
        facts.insert("mode".into(), self.mode.as_str().into());
        facts.insert("server_version".into(), field(0).into());
        facts.insert(
            "server_version_num".into(),
            field(1).parse::<u64>().unwrap_or(0).into(),
        );
        facts.insert("system_identifier".into(), field(2).into());
        facts.insert(
            "wal_segment_size".into(),
            field(3).parse::<u64>().unwrap_or(16 << 20).into(),
        );
        facts.insert("in_recovery".into(), (field(4) == "t").into());
        Ok(facts)
    }

    async fn physical(&self) -> Result<Snapshot> {
        let facts = self.server_facts().await?;
        let slot = SlotSession::open(self).await;
        let mut base = self
            .tool("pg_basebackup", self.source_name())
            .args(["-D", "-", "-F", "tar", "-X", "fetch", "--no-password"])
            .arg(if self.fast_checkpoint {
                "--checkpoint=fast"
            } else {
                "--checkpoint=spread"
            })
            .args(["--label", "backup-toolkit"])
            .arg("-d")
            .arg(&self.conninfo);
        if let Some(slot) = slot.as_ref() {
            // The slot keeps the WAL; pg_basebackup only reads it.
            tracing::debug!(slot = %slot.name, "holding WAL with a temporary slot");
        }
        base = base.args(["--manifest-checksums", "CRC32C"]);
        let stream = base.stream();
        let capture = TarCapture::new(["backup_label", "backup_manifest", "tablespace_map"]);
        let entry = Entry::Tar {
            name: POSTGRES_DATA_DIR.into(),
            reader: Box::new(stream.clone()),
            capture: Some(capture.clone()),
        };
        let mut snapshot = Snapshot::new(
            vec![entry],
            SourceInfo {
                kind: "postgres".into(),
                paths: vec![conninfo::redact(&self.conninfo)],
            },
        );
        snapshot.facts = facts.clone();
        Ok(snapshot.with_finisher(Box::new(PhysicalFinisher {
            stream,
            slot,
            capture,
            facts,
            source_name: self.source_name(),
        })))
    }

    async fn logical(&self) -> Result<Snapshot> {
        let mut facts = self.server_facts().await?;
        let databases = if self.databases.is_empty() {
            self.query(
                &self.conninfo,
                "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate \
                 ORDER BY datname",
            )
            .await?
            .into_iter()
            .filter_map(|row| row.into_iter().next())
            .collect()
        } else {
            self.databases.clone()
        };
        let mut entries = Vec::new();
        let mut streams = Vec::new();
        if self.globals {
            let stream = self
                .tool(
                    "pg_dumpall",
                    format!("pg_dumpall --globals-only of {}", self.source_name()),
                )
                .args(["--globals-only", "--no-password", "-d"])
                .arg(&self.conninfo)
                .stream();
            entries.push(Entry::Stream {
                name: POSTGRES_GLOBALS_FILE.into(),
                reader: Box::new(stream.clone()),
                mode: 0o600,
            });
            streams.push(stream);
        }
        let staging = if self.jobs > 1 {
            Some(
                tempfile::Builder::new()
                    .prefix("pg_dump-")
                    .tempdir()
                    .map_err(|error| {
                        Error::io(
                            "creating a directory for pg_dump",
                            std::env::temp_dir(),
                            error,
                        )
                    })?,
            )
        } else {
            None
        };
        for database in &databases {
            let target = conninfo::for_database(&self.conninfo, database);
            let name = facts::stored_name(database);
            let what = format!(
                "pg_dump of database {database:?} at {}",
                conninfo::redact(&self.conninfo)
            );
            match &staging {
                None => {
                    let stream = self
                        .tool("pg_dump", what)
                        .args(["--format=custom", "--compress=0", "--no-password", "-d"])
                        .arg(&target)
                        .stream();
                    entries.push(Entry::Stream {
                        name: format!("{name}.dump"),
                        reader: Box::new(stream.clone()),
                        mode: 0o600,
                    });
                    streams.push(stream);
                }
                Some(dir) => {
                    let out = dir.path().join(&name);
                    self.tool("pg_dump", what)
                        .args(["--format=directory", "--compress=0", "--no-password"])
                        .arg(format!("--jobs={}", self.jobs))
                        .arg("-f")
                        .arg(&out)
                        .arg("-d")
                        .arg(&target)
                        .output()
                        .await?;
                    entries.push(Entry::path(name, out));
                }
            }
        }
        facts.insert("databases".into(), databases.clone().into());
        facts.insert(
            "format".into(),
            if staging.is_some() {
                "directory"
            } else {
                "custom"
            }
            .into(),
        );
        facts.insert("globals".into(), self.globals.into());
        let mut snapshot = Snapshot::new(
            entries,
            SourceInfo {
                kind: "postgres".into(),
                paths: vec![conninfo::redact(&self.conninfo)],
            },
        );
        snapshot.facts = facts;
        Ok(snapshot.with_finisher(Box::new(LogicalFinisher {
            streams,
            _staging: staging,
        })))
    }
}

#[async_trait]
impl Snapshotter for PostgresSnapshotter {
    fn kind(&self) -> &str {
        "postgres"
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        match self.mode {
            PostgresMode::Physical => self.physical().await,
            PostgresMode::Logical => self.logical().await,
        }
    }
}

/// A `psql` session holding a temporary physical replication slot: the
/// server keeps the WAL from the slot's creation on while it is open, and
/// drops the slot when the session ends (this process killed included).
struct SlotSession {
    name: String,
    child: Arc<Mutex<Option<Child>>>,
}

impl SlotSession {
    /// Opens one, or returns `None` (with a warning) when the server
    /// refuses (no free slot, a role without `REPLICATION`): the backup
    /// then relies on the server keeping its WAL long enough
    /// (`wal_keep_size`), and fails loudly if it does not.
    async fn open(snapshotter: &PostgresSnapshotter) -> Option<SlotSession> {
        let name = format!(
            "backup_toolkit_{}_{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let tool = snapshotter
            .tool("psql", snapshotter.source_name())
            .args([
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "--no-password",
                "-d",
            ])
            .arg(&snapshotter.conninfo);
        let mut child = match tool.spawn_session() {
            Ok(child) => child,
            Err(error) => {
                tracing::warn!(%error, "no replication slot for the base backup");
                return None;
            }
        };
        let sql = format!(
            "SELECT pg_create_physical_replication_slot('{name}', true, true);\n\\echo SLOT-READY\n"
        );
        let stdin = child
            .stdin
            .as_mut()
            .map(|stdin| stdin.write_all(sql.as_bytes()));
        if !matches!(stdin, Some(Ok(()))) {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        let stdout = child.stdout.take();
        let ready = tokio::task::spawn_blocking(move || {
            let Some(stdout) = stdout else { return false };
            std::io::BufReader::new(stdout)
                .lines()
                .map_while(std::result::Result::ok)
                .any(|line| line.trim() == "SLOT-READY")
        })
        .await
        .unwrap_or(false);
        if !ready {
            let stderr = super::tool::drain_stderr(child.stderr.take());
            let _ = child.wait();
            let message = stderr.join().unwrap_or_default();
            tracing::warn!(
                message = %message.trim(),
                "the server refused a temporary replication slot; the base backup relies on \
                 wal_keep_size to keep its WAL"
            );
            return None;
        }
        Some(SlotSession {
            name,
            child: Arc::new(Mutex::new(Some(child))),
        })
    }

    /// Ends the session (the server drops the slot).
    fn close(&self) {
        if let Some(mut child) = self.child.lock().ok().and_then(|mut guard| guard.take()) {
            drop(child.stdin.take());
            let _ = child.wait();
        }
    }
}

impl Drop for SlotSession {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.lock().ok().and_then(|mut guard| guard.take()) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

struct PhysicalFinisher {
    stream: ToolStream,
    slot: Option<SlotSession>,
    capture: TarCapture,
    facts: BTreeMap<String, serde_json::Value>,
    source_name: String,
}

#[async_trait]
impl Finisher for PhysicalFinisher {
    async fn finish(self: Box<Self>, success: bool) -> Result<BTreeMap<String, serde_json::Value>> {
        let PhysicalFinisher {
            stream,
            slot,
            capture,
            mut facts,
            source_name,
        } = *self;
        let ended = tokio::task::spawn_blocking(move || {
            let ended = stream.finish(success);
            if let Some(slot) = slot {
                slot.close();
            }
            ended
        })
        .await
        .map_err(|error| Error::Snapshot {
            source_name: source_name.clone(),
            detail: format!("the base backup's end could not be awaited: {error}"),
        })?;
        ended?;
        if !success {
            return Ok(BTreeMap::new());
        }
        let incomplete = |what: &str| Error::Snapshot {
            source_name: source_name.clone(),
            detail: format!("the base backup's stream held no {what}: it is not complete"),
        };
        let label = capture
            .get("backup_label")
            .ok_or_else(|| incomplete("backup_label"))?;
        let manifest = capture
            .get("backup_manifest")
            .ok_or_else(|| incomplete("backup_manifest"))?;
        let segment_size = facts
            .get("wal_segment_size")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(16 << 20);
        let found = facts::physical_facts(&label, &manifest, segment_size).map_err(|detail| {
            Error::Snapshot {
                source_name: source_name.clone(),
                detail,
            }
        })?;
        facts.extend(found);
        Ok(facts)
    }
}

struct LogicalFinisher {
    streams: Vec<ToolStream>,
    _staging: Option<tempfile::TempDir>,
}

#[async_trait]
impl Finisher for LogicalFinisher {
    async fn finish(self: Box<Self>, success: bool) -> Result<BTreeMap<String, serde_json::Value>> {
        super::tool::finish_all(self.streams.clone(), success).await?;
        Ok(BTreeMap::new())
    }
}

/// The PostgreSQL major version of `server_version_num` (`150018` → 15,
/// `90624` → 9).
pub(crate) fn major_of(version_num: u64) -> u64 {
    if version_num >= 100_000 {
        version_num / 10_000
    } else {
        version_num / 100
    }
}

/// The major version of the `postgres` in `bin_dir` (from `postgres -V`).
pub(crate) fn installed_major(bin_dir: &Path) -> Option<u64> {
    let output = std::process::Command::new(bin_dir.join("postgres"))
        .arg("-V")
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let version = text.split_whitespace().last()?;
    version.split('.').next()?.parse().ok()
}
