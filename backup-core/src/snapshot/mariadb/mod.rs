//! MariaDB and MySQL: logical dumps through `mariadb-dump`, physical
//! backups through `mariadb-backup`; and their restores.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use zeroize::Zeroizing;

use super::tool::{Tool, ToolStream};
use super::{Entry, Finisher, Snapshot, Snapshotter};
use crate::format::manifest::SourceInfo;
use crate::{Error, Result};

mod restore;

pub use restore::MariadbRestorer;

/// The file a logical backup's dump is stored as.
pub const MARIADB_DUMP_FILE: &str = "dump.sql";

/// The directory a physical backup is stored under.
pub const MARIADB_BACKUP_DIR: &str = "mariadb-backup";

/// What a [`MariadbSnapshotter`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MariadbMode {
    /// SQL (`mariadb-dump --single-transaction`): restored by replaying it
    /// into a running server of the same or a newer version.
    #[default]
    Logical,
    /// The data directory's files (`mariadb-backup --backup`), prepared on
    /// restore and moved into an empty data directory.
    Physical,
}

impl MariadbMode {
    /// `logical` or `physical`, as recorded in the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            MariadbMode::Logical => "logical",
            MariadbMode::Physical => "physical",
        }
    }
}

impl std::str::FromStr for MariadbMode {
    type Err = Error;

    fn from_str(text: &str) -> Result<MariadbMode> {
        match text {
            "logical" => Ok(MariadbMode::Logical),
            "physical" => Ok(MariadbMode::Physical),
            other => Err(Error::InvalidArgument(format!(
                "unknown MariaDB backup mode {other:?}: logical or physical"
            ))),
        }
    }
}

/// Where and how to connect: parsed from `mysql://user[:password]@host[:port]/`
/// (or `mariadb://`; `?socket=/path` for a Unix socket).
#[derive(Clone)]
pub(crate) struct Connection {
    host: Option<String>,
    port: Option<u16>,
    user: Option<String>,
    socket: Option<String>,
    password: Option<Zeroizing<String>>,
}

impl Connection {
    pub(crate) fn parse(url: &str) -> Result<Connection> {
        let invalid = |why: &str| {
            Error::InvalidArgument(format!(
                "MariaDB URL {:?}: {why} (mysql://USER@HOST:PORT/ or mariadb://...)",
                redact(url)
            ))
        };
        let parsed = url::Url::parse(url).map_err(|error| invalid(&error.to_string()))?;
        if !matches!(parsed.scheme(), "mysql" | "mariadb") {
            return Err(invalid("the scheme is not mysql:// or mariadb://"));
        }
        let decode = |text: &str| {
            percent_encoding::percent_decode_str(text)
                .decode_utf8_lossy()
                .into_owned()
        };
        Ok(Connection {
            host: parsed
                .host_str()
                .filter(|host| !host.is_empty())
                .map(str::to_string),
            port: parsed.port(),
            user: Some(parsed.username())
                .filter(|user| !user.is_empty())
                .map(decode),
            socket: parsed
                .query_pairs()
                .find(|(key, _)| key == "socket")
                .map(|(_, value)| value.into_owned()),
            password: parsed
                .password()
                .map(|password| Zeroizing::new(decode(password))),
        })
    }

    /// The client options (`--host`, `--port`, `--user`, `--socket`).
    pub(crate) fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        if let Some(socket) = &self.socket {
            args.push(format!("--socket={socket}"));
        } else if let Some(host) = &self.host {
            args.push(format!("--host={host}"));
            args.push("--protocol=TCP".into());
        }
        if let Some(port) = self.port {
            args.push(format!("--port={port}"));
        }
        if let Some(user) = &self.user {
            args.push(format!("--user={user}"));
        }
        args
    }

    pub(crate) fn password(&self) -> Option<&Zeroizing<String>> {
        self.password.as_ref()
    }

    pub(crate) fn with_password(mut self, password: Option<Zeroizing<String>>) -> Connection {
        if password.is_some() {
            self.password = password;
        }
        self
    }
}

/// The URL without its password.
pub(crate) fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "(a MariaDB URL that does not parse)".into(),
    }
}

/// Backs up a MariaDB (or MySQL) server through its own tools, found in
/// the directory given by [`with_bin_dir`](Self::with_bin_dir) or on the
/// `PATH`; the password (from the URL or
/// [`with_password`](Self::with_password)) is passed in `MYSQL_PWD`, never
/// on a command line, and `~/.my.cnf` applies as it does to `mariadb`.
///
/// **Logical** ([`MariadbMode::Logical`], the default): `mariadb-dump
/// --single-transaction --routines --events --triggers` of the user
/// databases (all but `mysql`, `sys`, `information_schema` and
/// `performance_schema`, or those given), streamed as `dump.sql`, and the
/// accounts and grants (`--system=users`) as `users.sql`. With the binary
/// log on, `--master-data=2 --gtid` records where the dump stands in it:
/// the facts `binlog_file`, `binlog_position` and `gtid` (read from the
/// dump as it streams). Consistent for InnoDB (and other transactional
/// engines): the dump is one transaction's snapshot. MyISAM and Aria
/// tables are not transactional: written during the dump, they may be
/// caught at another moment than the InnoDB ones.
///
/// **Physical** ([`MariadbMode::Physical`]): `mariadb-backup --backup`
/// into a temporary directory on this host (it reads the server's data
/// directory, which must be here; see
/// [`with_staging_dir`](Self::with_staging_dir)), stored under
/// `mariadb-backup/`, then removed. Consistent for InnoDB (its redo log is copied along and applied
/// at `--prepare` on restore) and for MyISAM/Aria, which mariadb-backup
/// copies under a short `BACKUP STAGE` lock. Facts: `binlog_file`,
/// `binlog_position`, `gtid` (from `mariadb_backup_binlog_info`, named
/// `xtrabackup_binlog_info` before MariaDB 11), `server_version`,
/// `innodb_to_lsn`.
///
/// A server that cannot be reached, a refused password or a tool that fails
/// halfway fails the backup with the tool's own message; nothing is
/// recorded.
///
/// # Examples
///
/// ```
/// use backup_core::{MariadbMode, MariadbSnapshotter};
/// let db = MariadbSnapshotter::new("mysql://backup@db.internal:3306/")
///     .with_mode(MariadbMode::Physical);
/// assert_eq!(db.mode(), MariadbMode::Physical);
/// ```
#[derive(Clone)]
pub struct MariadbSnapshotter {
    url: String,
    mode: MariadbMode,
    bin_dir: Option<PathBuf>,
    password: Option<Zeroizing<String>>,
    databases: Vec<String>,
    staging: Option<PathBuf>,
}

impl std::fmt::Debug for MariadbSnapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MariadbSnapshotter")
            .field("url", &redact(&self.url))
            .field("mode", &self.mode)
            .field("bin_dir", &self.bin_dir)
            .field("databases", &self.databases)
            .finish_non_exhaustive()
    }
}

/// Databases a logical backup leaves out by default.
const SYSTEM_DATABASES: [&str; 4] = ["mysql", "sys", "information_schema", "performance_schema"];

impl MariadbSnapshotter {
    /// A logical backup of the server at `url`.
    pub fn new(url: impl Into<String>) -> MariadbSnapshotter {
        MariadbSnapshotter {
            url: url.into(),
            mode: MariadbMode::Logical,
            bin_dir: None,
            password: None,
            databases: Vec::new(),
            staging: None,
        }
    }

    /// Physical: where `mariadb-backup` writes its copy before it is
    /// stored (a directory with room for the data directory's size);
    /// default: the system's temporary directory.
    pub fn with_staging_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.staging = Some(dir.into());
        self
    }

    /// Logical or physical.
    pub fn with_mode(mut self, mode: MariadbMode) -> Self {
        self.mode = mode;
        self
    }

    /// The mode.
    pub fn mode(&self) -> MariadbMode {
        self.mode
    }

    /// Where `mariadb`, `mariadb-dump` and `mariadb-backup` are (default:
    /// the `PATH`).
    pub fn with_bin_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.bin_dir = Some(dir.into());
        self
    }

    /// The password (instead of the URL's).
    pub fn with_password(mut self, password: impl Into<String>) -> Self {
        self.password = Some(Zeroizing::new(password.into()));
        self
    }

    /// Logical: only these databases.
    pub fn with_databases<I, S>(mut self, databases: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.databases = databases.into_iter().map(Into::into).collect();
        self
    }

    fn connection(&self) -> Result<Connection> {
        Ok(Connection::parse(&self.url)?.with_password(self.password.clone()))
    }

    fn source_name(&self) -> String {
        format!("MariaDB at {}", redact(&self.url))
    }

    fn tool(&self, connection: &Connection, program: &str, what: impl Into<String>) -> Tool {
        Tool::new(self.bin_dir.as_deref(), program, what)
            .args(connection.args())
            .secret_env("MYSQL_PWD", connection.password())
    }

    /// Runs `sql` with the `mariadb` client; returns its rows, tab-separated.
    async fn query(&self, connection: &Connection, sql: &str) -> Result<Vec<Vec<String>>> {
        let output = self
            .tool(connection, "mariadb", self.source_name())
            .args(["--batch", "--skip-column-names", "-e", sql])
            .output()
            .await?;
        Ok(output
            .lines()
            .map(|line| line.split('\t').map(str::to_string).collect())
            .collect())
    }

    async fn server_facts(
        &self,
        connection: &Connection,
    ) -> Result<(BTreeMap<String, serde_json::Value>, bool)> {
        let rows = self
            .query(connection, "SELECT VERSION(), @@log_bin, @@datadir")
            .await?;
        let row = rows.first().cloned().unwrap_or_default();
        let field = |at: usize| row.get(at).cloned().unwrap_or_default();
        let mut facts = BTreeMap::new();
        facts.insert("mode".into(), self.mode.as_str().into());
        facts.insert("server_version".into(), field(0).into());
        let log_bin = field(1) == "1";
        facts.insert("log_bin".into(), log_bin.into());
        facts.insert("datadir".into(), field(2).into());
        Ok((facts, log_bin))
    }

    async fn logical(&self) -> Result<Snapshot> {
        let connection = self.connection()?;
        let (mut facts, log_bin) = self.server_facts(&connection).await?;
        let databases = if self.databases.is_empty() {
            self.query(&connection, "SHOW DATABASES")
                .await?
                .into_iter()
                .filter_map(|row| row.into_iter().next())
                .filter(|name| !SYSTEM_DATABASES.contains(&name.as_str()))
                .collect()
        } else {
            self.databases.clone()
        };
        if databases.is_empty() {
            return Err(Error::Snapshot {
                source_name: self.source_name(),
                detail: "the server has no user database to dump".into(),
            });
        }
        let mut dump = self
            .tool(
                &connection,
                "mariadb-dump",
                format!("mariadb-dump of {}", self.source_name()),
            )
            .args([
                "--single-transaction",
                "--routines",
                "--events",
                "--triggers",
                "--hex-blob",
                "--skip-dump-date",
            ]);
        if log_bin {
            dump = dump.args(["--master-data=2", "--gtid"]);
        }
        let dump = dump
            .arg("--databases")
            .args(databases.iter().cloned())
            .stream();
        let sniffed = Arc::new(Mutex::new(Sniffed::default()));
        let users = self
            .tool(
                &connection,
                "mariadb-dump",
                format!("mariadb-dump --system=users of {}", self.source_name()),
            )
            .args(["--system=users", "--skip-dump-date"])
            .stream();
        let entries = vec![
            Entry::Stream {
                name: MARIADB_DUMP_FILE.into(),
                reader: Box::new(SniffingReader {
                    inner: dump.clone(),
                    sniffed: sniffed.clone(),
                }),
                mode: 0o600,
            },
            Entry::Stream {
                name: "users.sql".into(),
                reader: Box::new(users.clone()),
                mode: 0o600,
            },
        ];
        facts.insert("databases".into(), databases.into());
        let mut snapshot = Snapshot::new(
            entries,
            SourceInfo {
                kind: "mariadb".into(),
                paths: vec![redact(&self.url)],
            },
        );
        snapshot.facts = facts;
        Ok(snapshot.with_finisher(Box::new(LogicalFinisher {
            streams: vec![dump, users],
            sniffed,
            log_bin,
        })))
    }

    async fn physical(&self) -> Result<Snapshot> {
        let connection = self.connection()?;
        let (mut facts, _) = self.server_facts(&connection).await?;
        let parent = self.staging.clone().unwrap_or_else(std::env::temp_dir);
        let staging = tempfile::Builder::new()
            .prefix("mariadb-backup-")
            .tempdir_in(&parent)
            .map_err(|error| {
                Error::io("creating a directory for mariadb-backup", &parent, error)
            })?;
        let target = staging.path().join(MARIADB_BACKUP_DIR);
        self.tool(
            &connection,
            "mariadb-backup",
            format!("mariadb-backup of {}", self.source_name()),
        )
        .arg("--backup")
        .arg(format!("--target-dir={}", target.display()))
        .output()
        .await?;
        facts.extend(physical_facts(&target));
        let mut snapshot = Snapshot::new(
            vec![Entry::path(MARIADB_BACKUP_DIR, target)],
            SourceInfo {
                kind: "mariadb".into(),
                paths: vec![redact(&self.url)],
            },
        );
        snapshot.facts = facts;
        Ok(snapshot.with_finisher(Box::new(PhysicalFinisher { _staging: staging })))
    }
}

#[async_trait]
impl Snapshotter for MariadbSnapshotter {
    fn kind(&self) -> &str {
        "mariadb"
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        match self.mode {
            MariadbMode::Logical => self.logical().await,
            MariadbMode::Physical => self.physical().await,
        }
    }
}

/// The binary log position a physical backup records.
fn physical_facts(target: &Path) -> BTreeMap<String, serde_json::Value> {
    let mut facts = BTreeMap::new();
    let info = ["mariadb_backup_binlog_info", "xtrabackup_binlog_info"]
        .iter()
        .find_map(|name| std::fs::read_to_string(target.join(name)).ok());
    if let Some(info) = info {
        let mut fields = info.split_whitespace();
        if let (Some(file), Some(position)) = (fields.next(), fields.next()) {
            facts.insert("binlog_file".into(), file.into());
            facts.insert(
                "binlog_position".into(),
                position.parse::<u64>().unwrap_or(0).into(),
            );
        }
        if let Some(gtid) = fields.next() {
            facts.insert("gtid".into(), gtid.into());
        }
    }
    let info = ["mariadb_backup_info", "xtrabackup_info"]
        .iter()
        .find_map(|name| std::fs::read_to_string(target.join(name)).ok())
        .unwrap_or_default();
    for line in info.lines() {
        if let Some((key, value)) = line.split_once(" = ") {
            match key.trim() {
                "innodb_to_lsn" => {
                    facts.insert(
                        "innodb_to_lsn".into(),
                        value.trim().parse::<u64>().unwrap_or(0).into(),
                    );
                }
                "tool_version" => {
                    facts.insert("backup_tool_version".into(), value.trim().into());
                }
                _ => {}
            }
        }
    }
    facts
}

/// The start and end of a dump, kept as it streams.
#[derive(Default)]
struct Sniffed {
    head: Vec<u8>,
    tail: Vec<u8>,
}

const SNIFF_HEAD: usize = 1 << 20;
const SNIFF_TAIL: usize = 64 << 10;

struct SniffingReader {
    inner: ToolStream,
    sniffed: Arc<Mutex<Sniffed>>,
}

impl Read for SniffingReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let read = self.inner.read(out)?;
        if let Ok(mut sniffed) = self.sniffed.lock() {
            let bytes = &out[..read];
            let room = SNIFF_HEAD.saturating_sub(sniffed.head.len());
            sniffed.head.extend_from_slice(&bytes[..room.min(read)]);
            sniffed.tail.extend_from_slice(bytes);
            let excess = sniffed.tail.len().saturating_sub(SNIFF_TAIL);
            if excess > 0 {
                sniffed.tail.drain(..excess);
            }
        }
        Ok(read)
    }
}

/// The binary log coordinates `--master-data=2 --gtid` writes.
fn dump_coordinates(text: &str) -> BTreeMap<String, serde_json::Value> {
    let mut facts = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("-- CHANGE MASTER TO MASTER_LOG_FILE='") {
            if let Some((file, rest)) = rest.split_once('\'') {
                facts.insert("binlog_file".into(), file.into());
                let position = rest
                    .trim_start_matches(", MASTER_LOG_POS=")
                    .trim_end_matches(';')
                    .parse::<u64>()
                    .unwrap_or(0);
                facts.insert("binlog_position".into(), position.into());
            }
        }
        if let Some(rest) = line
            .strip_prefix("-- SET GLOBAL gtid_slave_pos='")
            .or_else(|| line.strip_prefix("SET GLOBAL gtid_slave_pos='"))
        {
            if let Some((gtid, _)) = rest.split_once('\'') {
                facts.insert("gtid".into(), gtid.into());
            }
        }
    }
    facts
}

struct LogicalFinisher {
    streams: Vec<ToolStream>,
    sniffed: Arc<Mutex<Sniffed>>,
    log_bin: bool,
}

#[async_trait]
impl Finisher for LogicalFinisher {
    async fn finish(self: Box<Self>, success: bool) -> Result<BTreeMap<String, serde_json::Value>> {
        super::tool::finish_all(self.streams.clone(), success).await?;
        let mut facts = BTreeMap::new();
        if success && self.log_bin {
            if let Ok(sniffed) = self.sniffed.lock() {
                facts = dump_coordinates(&String::from_utf8_lossy(&sniffed.head));
                let tail = dump_coordinates(&String::from_utf8_lossy(&sniffed.tail));
                for (key, value) in tail {
                    facts.entry(key).or_insert(value);
                }
            }
        }
        Ok(facts)
    }
}

struct PhysicalFinisher {
    _staging: tempfile::TempDir,
}

#[async_trait]
impl Finisher for PhysicalFinisher {
    async fn finish(
        self: Box<Self>,
        _success: bool,
    ) -> Result<BTreeMap<String, serde_json::Value>> {
        Ok(BTreeMap::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_become_client_options_without_the_password() {
        let connection = Connection::parse("mysql://backup:s%40cret@db.internal:3307/").unwrap();
        assert_eq!(
            connection.args(),
            [
                "--host=db.internal",
                "--protocol=TCP",
                "--port=3307",
                "--user=backup"
            ]
        );
        assert_eq!(connection.password().map(|p| p.as_str()), Some("s@cret"));
        assert_eq!(
            Connection::parse("mariadb://root@localhost/?socket=/run/mysqld/mysqld.sock")
                .unwrap()
                .args(),
            ["--socket=/run/mysqld/mysqld.sock", "--user=root"]
        );
        assert!(Connection::parse("postgresql://x@y/").is_err());
        assert_eq!(redact("mysql://u:secret@h:1/"), "mysql://u:***@h:1/");
    }

    #[test]
    fn a_dump_s_binlog_coordinates_are_read_from_its_comments() {
        let head = "-- CHANGE MASTER TO MASTER_USE_GTID=slave_pos;\n\
                    -- CHANGE MASTER TO MASTER_LOG_FILE='binlog.000001', MASTER_LOG_POS=1087;\n\
                    -- SET GLOBAL gtid_slave_pos='0-1-5';\n";
        let facts = dump_coordinates(head);
        assert_eq!(facts["binlog_file"], "binlog.000001");
        assert_eq!(facts["binlog_position"], 1087);
        assert_eq!(facts["gtid"], "0-1-5");
    }
}
