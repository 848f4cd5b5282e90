//! Redis: `BGSAVE`, waited on until it really finished, then the RDB file
//! streamed with its header and CRC-64 checked; and its restore.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::{Entry, Finisher, Snapshot, Snapshotter};
use crate::format::manifest::SourceInfo;
use crate::{Error, Result};

pub(crate) mod rdb;
mod replication;
mod restore;

use rdb::{CheckedRdb, RdbCheck};
pub use restore::RedisRestorer;

/// The name the RDB is stored under by default.
pub const REDIS_SNAPSHOT_FILE: &str = "dump.rdb";

/// How often the save's progress is polled.
const POLL: Duration = Duration::from_millis(100);

/// Backs up a Redis server: `BGSAVE`, then its RDB file, stored as one file
/// (`dump.rdb`).
///
/// The save is waited on until it really finished and succeeded
/// (`rdb_bgsave_in_progress:0`, `rdb_last_bgsave_status:ok`, and the
/// count of saves or `LASTSAVE` moved past the one before it; a save
/// already running is waited out first). The file is then opened and
/// streamed into the repository; its `REDIS` header is checked as it starts
/// and its CRC-64 as it ends, and a file that fails either fails the
/// backup, with nothing recorded. Redis writes each save to a temporary
/// file renamed into place, so the open file is one whole save whatever the
/// server does meanwhile.
///
/// The server's data directory must be readable on this host: at the path
/// the server reports (`CONFIG GET dir`), or where it is mounted here
/// ([`RedisSnapshotter::with_data_dir`]).
///
/// Facts recorded: `redis_version`, `role`, `master_repl_offset`,
/// `dir`, `dbfilename`, `appendonly`, `keyspace` (keys per database just
/// before the save), `rdb_version`, `rdb_size`, `crc64` (hexadecimal, or
/// absent with `rdbchecksum no`) and `file`.
///
/// # Examples
///
/// ```
/// use backup_core::RedisSnapshotter;
/// let redis = RedisSnapshotter::new("redis://:secret@127.0.0.1:6379/");
/// assert_eq!(redis.to_string(), "redis://127.0.0.1:6379/");
/// ```
#[derive(Clone)]
pub struct RedisSnapshotter {
    url: String,
    credentials: Option<(Option<String>, zeroize::Zeroizing<String>)>,
    data_dir: Option<PathBuf>,
    file_name: String,
    save_timeout: Duration,
    replication: bool,
}

impl std::fmt::Debug for RedisSnapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisSnapshotter")
            .field("url", &self.to_string())
            .field("data_dir", &self.data_dir)
            .field("file_name", &self.file_name)
            .finish()
    }
}

impl std::fmt::Display for RedisSnapshotter {
    /// The URL without its credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match url::Url::parse(&self.url) {
            Ok(mut url) => {
                let _ = url.set_password(None);
                let _ = url.set_username("");
                write!(f, "{url}")
            }
            Err(_) => f.write_str("redis"),
        }
    }
}

impl RedisSnapshotter {
    /// A snapshotter of the server at `url`
    /// (`redis://[user:password@]host:port/`, `rediss://` for TLS,
    /// `redis+unix:///path`).
    pub fn new(url: impl Into<String>) -> RedisSnapshotter {
        RedisSnapshotter {
            url: url.into(),
            credentials: None,
            data_dir: None,
            file_name: REDIS_SNAPSHOT_FILE.into(),
            save_timeout: Duration::from_secs(3600),
            replication: false,
        }
    }

    /// Logs in with this password (and ACL user), when the URL has none:
    /// keeps the secret out of the URL and the process list.
    pub fn with_password(mut self, user: Option<String>, password: impl Into<String>) -> Self {
        self.credentials = Some((user, zeroize::Zeroizing::new(password.into())));
        self
    }

    /// Reads the RDB from this directory rather than the one the server
    /// reports (the server's volume mounted elsewhere here).
    pub fn with_data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Sets the name the RDB is stored under (default `dump.rdb`).
    pub fn with_file_name(mut self, name: impl Into<String>) -> Self {
        self.file_name = name.into();
        self
    }

    /// Reads the RDB over the replication protocol instead of saving it
    /// (`REPLCONF rdb-only 1`, `PSYNC ? -1`): for a server whose data
    /// directory is not on this host. With diskless sync on the server
    /// (`repl-diskless-sync yes`, the default since 7.0) nothing is written
    /// to its disk; `sync_offset` records the replication offset the RDB
    /// holds. Not over TLS.
    pub fn with_replication_stream(mut self) -> Self {
        self.replication = true;
        self
    }

    /// How long the save may take (default one hour).
    pub fn with_save_timeout(mut self, timeout: Duration) -> Self {
        self.save_timeout = timeout;
        self
    }

    fn failed(&self, detail: impl Into<String>) -> Error {
        Error::Snapshot {
            source_name: format!("redis {self}"),
            detail: detail.into(),
        }
    }
}

/// `field:value` lines of an `INFO` section.
fn info_fields(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.trim().split_once(':'))
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect()
}

async fn query<T: redis::FromRedisValue>(
    connection: &mut redis::aio::MultiplexedConnection,
    command: &mut redis::Cmd,
) -> std::result::Result<T, String> {
    command
        .query_async(connection)
        .await
        .map_err(|error| error.to_string())
}

struct RdbReader {
    file: Box<dyn Read + Send>,
    check: Option<RdbCheck>,
    outcome: Arc<Mutex<Option<CheckedRdb>>>,
}

impl Read for RdbReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let read = self.file.read(buf)?;
        let invalid = |message| std::io::Error::new(std::io::ErrorKind::InvalidData, message);
        if read > 0 {
            if let Some(check) = &mut self.check {
                check.update(&buf[..read]).map_err(invalid)?;
            }
            return Ok(read);
        }
        if let Some(check) = self.check.take() {
            let checked = check.finish().map_err(invalid)?;
            if let Ok(mut outcome) = self.outcome.lock() {
                *outcome = Some(checked);
            }
        }
        Ok(0)
    }
}

struct RedisFinisher {
    outcome: Arc<Mutex<Option<CheckedRdb>>>,
    source_name: String,
}

#[async_trait]
impl Finisher for RedisFinisher {
    async fn finish(self: Box<Self>, success: bool) -> Result<BTreeMap<String, serde_json::Value>> {
        let checked = self.outcome.lock().ok().and_then(|outcome| outcome.clone());
        let mut facts = BTreeMap::new();
        match checked {
            Some(checked) => {
                facts.insert("rdb_version".into(), checked.version.into());
                facts.insert("rdb_size".into(), checked.size.into());
                if let Some(crc) = checked.crc64 {
                    facts.insert("crc64".into(), format!("{crc:016x}").into());
                }
                Ok(facts)
            }
            None if !success => Ok(facts),
            None => Err(Error::Snapshot {
                source_name: self.source_name,
                detail: "the RDB was not read to its checked end".into(),
            }),
        }
    }
}

impl RedisSnapshotter {
    /// BGSAVE, waited on until it really finished, then the RDB file opened.
    async fn save_and_open(
        &self,
        con: &mut redis::aio::MultiplexedConnection,
        dir: &str,
        dbfilename: &str,
    ) -> Result<Box<dyn Read + Send>> {
        // Save, waiting out a save already running; then wait for ours.
        let deadline = tokio::time::Instant::now() + self.save_timeout;
        let persistence = |text: String| info_fields(&text);
        let mut before;
        loop {
            before = persistence(
                query(con, redis::cmd("INFO").arg("persistence"))
                    .await
                    .map_err(|error| self.failed(format!("INFO failed: {error}")))?,
            );
            if before.get("rdb_bgsave_in_progress").map(String::as_str) != Some("1") {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.failed("a save already running did not finish in time"));
            }
            tokio::time::sleep(POLL).await;
        }
        let lastsave_before: i64 = query(con, &mut redis::cmd("LASTSAVE"))
            .await
            .map_err(|error| self.failed(format!("LASTSAVE failed: {error}")))?;
        let saves_before = before.get("rdb_saves").and_then(|n| n.parse::<u64>().ok());
        if saves_before.is_none() {
            // Without a save counter (before 7.0), LASTSAVE has to move, and
            // it counts whole seconds.
            tokio::time::sleep(Duration::from_millis(1100)).await;
        }
        let started: std::result::Result<String, String> =
            query(con, &mut redis::cmd("BGSAVE")).await;
        if let Err(error) = started {
            return Err(self.failed(format!("BGSAVE failed: {error}")));
        }
        loop {
            tokio::time::sleep(POLL).await;
            let now = persistence(
                query(con, redis::cmd("INFO").arg("persistence"))
                    .await
                    .map_err(|error| self.failed(format!("INFO failed: {error}")))?,
            );
            let running = now.get("rdb_bgsave_in_progress").map(String::as_str) == Some("1");
            let moved = match saves_before {
                Some(before) => now
                    .get("rdb_saves")
                    .and_then(|n| n.parse::<u64>().ok())
                    .is_some_and(|saves| saves > before),
                None => {
                    let lastsave: i64 = query(con, &mut redis::cmd("LASTSAVE"))
                        .await
                        .map_err(|error| self.failed(format!("LASTSAVE failed: {error}")))?;
                    lastsave > lastsave_before
                }
            };
            let status = now
                .get("rdb_last_bgsave_status")
                .cloned()
                .unwrap_or_default();
            if !running && status != "ok" {
                return Err(self.failed(format!(
                    "the background save failed (rdb_last_bgsave_status:{status}); see the \
                     server's log"
                )));
            }
            if !running && moved {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(self.failed("the background save did not finish in time"));
            }
        }
        let local_dir = self.data_dir.clone().unwrap_or_else(|| PathBuf::from(dir));
        let path = local_dir.join(dbfilename);
        let file = std::fs::File::open(&path).map_err(|error| {
            self.failed(format!(
                "the save finished but {} cannot be opened here: {error} (is the server's data \
                 directory on this host? give it with the data-dir option)",
                path.display()
            ))
        })?;
        Ok(Box::new(file))
    }
}

#[async_trait]
impl Snapshotter for RedisSnapshotter {
    fn kind(&self) -> &str {
        "redis"
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        crate::format::tree::validate_name(&self.file_name)?;
        use redis::IntoConnectionInfo;
        let info = self
            .url
            .as_str()
            .into_connection_info()
            .map_err(|error| self.failed(format!("invalid URL: {error}")))?;
        // Log in with AUTH ourselves, so that a refusal reaches the user in
        // the server's own words (WRONGPASS ...).
        let settings = info.redis_settings();
        let credentials = settings
            .password()
            .map(|password| {
                (
                    settings.username().map(str::to_string),
                    password.to_string(),
                )
            })
            .or_else(|| {
                self.credentials
                    .as_ref()
                    .map(|(user, password)| (user.clone(), password.to_string()))
            });
        let db = settings.db();
        let addr = info.addr().clone();
        let info = info.set_redis_settings(redis::RedisConnectionInfo::default().set_db(0));
        let client = redis::Client::open(info)
            .map_err(|error| self.failed(format!("invalid URL: {error}")))?;
        let mut connection = tokio::time::timeout(
            Duration::from_secs(10),
            client.get_multiplexed_async_connection(),
        )
        .await
        .map_err(|_| self.failed("no answer within 10 s"))?
        .map_err(|error| self.failed(format!("cannot connect: {error}")))?;
        let con = &mut connection;
        if let Some((user, password)) = &credentials {
            let mut auth = redis::cmd("AUTH");
            if let Some(user) = user {
                auth.arg(user);
            }
            let _: () = query(con, auth.arg(password.as_str()))
                .await
                .map_err(|error| self.failed(format!("AUTH failed: {error}")))?;
        }
        if db != 0 {
            let _: () = query(con, redis::cmd("SELECT").arg(db))
                .await
                .map_err(|error| self.failed(format!("SELECT {db} failed: {error}")))?;
        }
        let info: String = query(con, redis::cmd("INFO").arg("everything"))
            .await
            .map_err(|error| self.failed(format!("INFO failed: {error}")))?;
        let fields = info_fields(&info);
        let config: Vec<String> = query(
            con,
            redis::cmd("CONFIG")
                .arg("GET")
                .arg("dir")
                .arg("dbfilename")
                .arg("appendonly"),
        )
        .await
        .map_err(|error| self.failed(format!("CONFIG GET failed: {error}")))?;
        let config: BTreeMap<String, String> = config
            .chunks(2)
            .filter_map(|pair| match pair {
                [key, value] => Some((key.clone(), value.clone())),
                _ => None,
            })
            .collect();
        let dir = config.get("dir").cloned().unwrap_or_default();
        let dbfilename = config
            .get("dbfilename")
            .cloned()
            .unwrap_or_else(|| "dump.rdb".into());
        let keyspace: serde_json::Map<String, serde_json::Value> = fields
            .iter()
            .filter(|(key, _)| {
                key.starts_with("db") && key[2..].chars().all(|c| c.is_ascii_digit())
            })
            .filter_map(|(key, value)| {
                let keys = value
                    .split(',')
                    .find_map(|part| part.strip_prefix("keys="))?
                    .parse::<u64>()
                    .ok()?;
                Some((key.clone(), keys.into()))
            })
            .collect();
        let mut extra: Vec<(&str, serde_json::Value)> = Vec::new();
        let rdb: Box<dyn Read + Send> = if self.replication {
            let credentials = credentials.clone();
            let (reader, resync) =
                tokio::task::spawn_blocking(move || replication::open(&addr, credentials))
                    .await
                    .map_err(|error| self.failed(format!("the replication task failed: {error}")))?
                    .map_err(|detail| self.failed(detail))?;
            extra.push(("mode", "replication".into()));
            extra.push(("master_replid", resync.replid.into()));
            extra.push(("rdb_only", resync.rdb_only.into()));
            extra.push(("diskless", resync.diskless.into()));
            extra.push(("sync_offset", resync.offset.into()));
            reader
        } else {
            extra.push(("mode", "save".into()));
            self.save_and_open(con, &dir, &dbfilename).await?
        };
        let outcome = Arc::new(Mutex::new(None));
        let mut snapshot = Snapshot::new(
            vec![Entry::Stream {
                name: self.file_name.clone(),
                reader: Box::new(RdbReader {
                    file: rdb,
                    check: Some(RdbCheck::default()),
                    outcome: outcome.clone(),
                }),
                mode: 0o600,
            }],
            SourceInfo {
                kind: "redis".into(),
                paths: vec![self.to_string()],
            },
        );
        let text = |key: &str| -> serde_json::Value {
            fields.get(key).cloned().unwrap_or_default().into()
        };
        let facts = [
            ("redis_version", text("redis_version")),
            ("role", text("role")),
            (
                "master_repl_offset",
                fields
                    .get("master_repl_offset")
                    .and_then(|offset| offset.parse::<u64>().ok())
                    .map_or(serde_json::Value::Null, Into::into),
            ),
            ("dir", dir.into()),
            ("dbfilename", dbfilename.into()),
            (
                "appendonly",
                config.get("appendonly").cloned().unwrap_or_default().into(),
            ),
            ("keyspace", serde_json::Value::Object(keyspace)),
            ("file", self.file_name.clone().into()),
        ];
        let facts = facts.into_iter().chain(extra);
        snapshot.facts.extend(
            facts
                .into_iter()
                .map(|(key, value): (&str, serde_json::Value)| (key.to_string(), value)),
        );
        Ok(snapshot.with_finisher(Box::new(RedisFinisher {
            outcome,
            source_name: format!("redis {self}"),
        })))
    }
}
