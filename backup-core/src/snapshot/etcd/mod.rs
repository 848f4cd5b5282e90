//! etcd: a member's snapshot through the Maintenance `Snapshot` gRPC
//! stream, its SHA-256 trailer checked while it streams; and its restore.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use zeroize::Zeroizing;

use super::{Entry, Finisher, Snapshot, Snapshotter};
use crate::format::manifest::SourceInfo;
use crate::{Error, Result};

mod proto;
mod restore;
pub(crate) mod trailer;

pub use restore::EtcdRestorer;
use trailer::{TrailerCheck, Verified};

/// The name the snapshot is stored under by default.
pub const ETCD_SNAPSHOT_FILE: &str = "etcd.db";

/// How long connecting to one endpoint may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a status or member call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS settings for etcd's client port: PEM files.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct EtcdTls {
    /// The CA that signed the members' certificates (`--cacert`).
    pub ca: Option<PathBuf>,
    /// The client certificate (`--cert`).
    pub cert: Option<PathBuf>,
    /// The client certificate's key (`--key`).
    pub key: Option<PathBuf>,
}

impl EtcdTls {
    /// TLS with these files; any may be `None`.
    pub fn new(ca: Option<PathBuf>, cert: Option<PathBuf>, key: Option<PathBuf>) -> EtcdTls {
        EtcdTls { ca, cert, key }
    }
}

/// Backs up an etcd member: its database through the Maintenance
/// `Snapshot` stream, stored as one file (`etcd.db`) holding exactly what
/// `etcdctl snapshot save` writes (the bbolt database and its 32-byte
/// SHA-256 trailer), with no temporary copy on disk.
///
/// Of the endpoints, the first that answers a status call without errors
/// is snapshotted. The trailer is checked while the bytes stream into the
/// repository: a stream that is cut off, lacks its trailer or does not hash
/// to it fails the backup, and nothing is recorded.
///
/// Facts recorded: `endpoint`, `member_name`, `member_id`, `cluster_id`
/// (hexadecimal, as etcdctl prints them), `revision` (the member's revision
/// when the snapshot began: the snapshot holds it; a writer running meanwhile
/// may add later ones), `raft_term`, `etcd_version`, `db_size` (bytes of
/// the database), `sha256` (the trailer) and `file`.
///
/// # Examples
///
/// ```
/// use backup_core::EtcdSnapshotter;
/// let etcd = EtcdSnapshotter::new(["https://10.0.0.1:2379", "https://10.0.0.2:2379"])
///     .with_credentials("root", "secret");
/// assert_eq!(etcd.endpoints().len(), 2);
/// ```
#[derive(Clone)]
pub struct EtcdSnapshotter {
    endpoints: Vec<String>,
    tls: Option<EtcdTls>,
    credentials: Option<(String, Zeroizing<String>)>,
    file_name: String,
}

impl std::fmt::Debug for EtcdSnapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdSnapshotter")
            .field("endpoints", &self.endpoints)
            .field("tls", &self.tls)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .field("file_name", &self.file_name)
            .finish()
    }
}

impl EtcdSnapshotter {
    /// A snapshotter of the member behind one of `endpoints` (`host:port`
    /// or a URL; `https://` when TLS is set).
    pub fn new<I, S>(endpoints: I) -> EtcdSnapshotter
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        EtcdSnapshotter {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            tls: None,
            credentials: None,
            file_name: ETCD_SNAPSHOT_FILE.into(),
        }
    }

    /// Connects with TLS.
    pub fn with_tls(mut self, tls: EtcdTls) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Authenticates as `user` (the snapshot needs the root role when auth
    /// is on).
    pub fn with_credentials(
        mut self,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        self.credentials = Some((user.into(), Zeroizing::new(password.into())));
        self
    }

    /// Sets the name the snapshot is stored under (default `etcd.db`).
    pub fn with_file_name(mut self, name: impl Into<String>) -> Self {
        self.file_name = name.into();
        self
    }

    /// The endpoints tried, in order.
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    fn url(&self, endpoint: &str) -> String {
        if endpoint.contains("://") {
            endpoint.to_string()
        } else if self.tls.is_some() {
            format!("https://{endpoint}")
        } else {
            format!("http://{endpoint}")
        }
    }

    async fn channel(
        &self,
        endpoint: &str,
    ) -> std::result::Result<tonic::transport::Channel, String> {
        let url = self.url(endpoint);
        let mut builder = tonic::transport::Endpoint::from_shared(url.clone())
            .map_err(|error| format!("{url:?} is not an endpoint URL: {error}"))?
            .connect_timeout(CONNECT_TIMEOUT)
            // A member that stalls mid-stream without closing the
            // connection fails the backup rather than hanging it.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(true);
        if let Some(tls) = &self.tls {
            let read = |path: &PathBuf| {
                std::fs::read(path)
                    .map_err(|error| format!("cannot read {}: {error}", path.display()))
            };
            let mut config = tonic::transport::ClientTlsConfig::new();
            if let Some(ca) = &tls.ca {
                config = config.ca_certificate(tonic::transport::Certificate::from_pem(read(ca)?));
            }
            match (&tls.cert, &tls.key) {
                (Some(cert), Some(key)) => {
                    config = config.identity(tonic::transport::Identity::from_pem(
                        read(cert)?,
                        read(key)?,
                    ));
                }
                (None, None) => {}
                _ => {
                    return Err(
                        "a client certificate needs its key, and a key its certificate".into(),
                    )
                }
            }
            builder = builder
                .tls_config(config)
                .map_err(|error| format!("TLS settings refused: {error}"))?;
        }
        builder.connect().await.map_err(|error| {
            let mut message = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                message.push_str(&format!(": {cause}"));
                source = cause.source();
            }
            format!("cannot connect to {url}: {message}")
        })
    }

    /// Connects to the first healthy member; returns its client, endpoint
    /// and status.
    async fn healthy_member(&self) -> Result<(proto::Client, String, proto::StatusResponse)> {
        let mut failures = Vec::new();
        for endpoint in &self.endpoints {
            let attempt = async {
                let channel = self.channel(endpoint).await?;
                let mut client = proto::Client::new(channel);
                if let Some((user, password)) = &self.credentials {
                    timed(client.authenticate(user, password))
                        .await
                        .map_err(|status| format!("authentication as {user:?} failed: {status}"))?;
                }
                let status = timed(client.status())
                    .await
                    .map_err(|status| status.to_string())?;
                if !status.errors.is_empty() {
                    return Err(format!(
                        "the member reports errors: {}",
                        status.errors.join("; ")
                    ));
                }
                Ok((client, status))
            };
            match attempt.await {
                Ok((client, status)) => return Ok((client, endpoint.clone(), status)),
                Err(message) => failures.push(format!("{endpoint}: {message}")),
            }
        }
        Err(Error::Snapshot {
            source_name: self.source_name(),
            detail: if failures.is_empty() {
                "no endpoint given".into()
            } else {
                format!("no healthy member: {}", failures.join("; "))
            },
        })
    }

    fn source_name(&self) -> String {
        format!("etcd {}", self.endpoints.join(","))
    }
}

async fn timed<T>(
    call: impl std::future::Future<Output = std::result::Result<T, tonic::Status>>,
) -> std::result::Result<T, tonic::Status> {
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("no answer within 10 s")))
}

/// What the streaming task hands the reader.
enum Piece {
    Bytes(Vec<u8>),
    Failed(String),
}

/// The snapshot's bytes as a blocking reader, checked as they pass.
struct SnapshotReader {
    pieces: tokio::sync::mpsc::Receiver<Piece>,
    current: Vec<u8>,
    offset: usize,
    check: Option<TrailerCheck>,
    expected_db_size: Arc<Mutex<Option<u64>>>,
    outcome: Arc<Mutex<Option<Verified>>>,
}

impl Read for SnapshotReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.offset == self.current.len() {
            match self.pieces.blocking_recv() {
                Some(Piece::Bytes(bytes)) => {
                    if let Some(check) = &mut self.check {
                        check.update(&bytes);
                    }
                    self.current = bytes;
                    self.offset = 0;
                }
                Some(Piece::Failed(message)) => return Err(std::io::Error::other(message)),
                None => {
                    let Some(check) = self.check.take() else {
                        return Ok(0);
                    };
                    let expected = self.expected_db_size.lock().ok().and_then(|size| *size);
                    let verified = check.finish(expected).map_err(|message| {
                        std::io::Error::new(std::io::ErrorKind::InvalidData, message)
                    })?;
                    if let Ok(mut outcome) = self.outcome.lock() {
                        *outcome = Some(verified);
                    }
                    return Ok(0);
                }
            }
        }
        let count = buf.len().min(self.current.len() - self.offset);
        buf[..count].copy_from_slice(&self.current[self.offset..self.offset + count]);
        self.offset += count;
        Ok(count)
    }
}

struct EtcdFinisher {
    task: tokio::task::JoinHandle<()>,
    outcome: Arc<Mutex<Option<Verified>>>,
    source_name: String,
}

impl Drop for EtcdFinisher {
    fn drop(&mut self) {
        // Ends the stream (and the member's snapshot) if the backup was abandoned.
        self.task.abort();
    }
}

#[async_trait]
impl Finisher for EtcdFinisher {
    async fn finish(self: Box<Self>, success: bool) -> Result<BTreeMap<String, serde_json::Value>> {
        self.task.abort();
        let verified = self.outcome.lock().ok().and_then(|outcome| outcome.clone());
        let mut facts = BTreeMap::new();
        match verified {
            Some(verified) => {
                facts.insert("db_size".into(), verified.db_size.into());
                facts.insert("sha256".into(), hex::encode(verified.digest).into());
                Ok(facts)
            }
            None if !success => Ok(facts),
            None => Err(Error::Snapshot {
                source_name: self.source_name.clone(),
                detail: "the snapshot stream was not read to its verified end".into(),
            }),
        }
    }
}

#[async_trait]
impl Snapshotter for EtcdSnapshotter {
    fn kind(&self) -> &str {
        "etcd"
    }

    async fn snapshot(&self) -> Result<Snapshot> {
        crate::format::tree::validate_name(&self.file_name)?;
        let (mut client, endpoint, status) = self.healthy_member().await?;
        let failed = |detail: String| Error::Snapshot {
            source_name: format!("etcd {endpoint}"),
            detail,
        };
        let header = status.header.clone().unwrap_or_default();
        let members = timed(client.member_list())
            .await
            .map_err(|status| failed(format!("listing the members failed: {status}")))?;
        let member_name = members
            .members
            .iter()
            .find(|member| member.id == header.member_id)
            .map(|member| member.name.clone())
            .unwrap_or_default();
        let mut stream = client
            .snapshot()
            .await
            .map_err(|status| failed(format!("the snapshot call failed: {status}")))?;
        // The first message says how large the database is, and its arrival
        // means the member holds the snapshot's read transaction.
        let first = match stream.next().await {
            Some(Ok(first)) => first,
            Some(Err(status)) => {
                return Err(failed(format!("the snapshot stream failed: {status}")))
            }
            None => return Err(failed("the snapshot stream ended before any data".into())),
        };
        let revision = first
            .header
            .as_ref()
            .map(|header| header.revision)
            .filter(|revision| *revision > 0)
            .unwrap_or(header.revision);
        let expected_db_size = Arc::new(Mutex::new(Some(
            first.remaining_bytes + first.blob.len() as u64,
        )));
        let (sender, pieces) = tokio::sync::mpsc::channel(8);
        let outcome = Arc::new(Mutex::new(None));
        let task = tokio::spawn(async move {
            if sender.send(Piece::Bytes(first.blob)).await.is_err() {
                return;
            }
            while let Some(message) = stream.next().await {
                let piece = match message {
                    Ok(message) => Piece::Bytes(message.blob),
                    Err(status) => Piece::Failed(format!("the snapshot stream failed: {status}")),
                };
                let failed = matches!(piece, Piece::Failed(_));
                if sender.send(piece).await.is_err() || failed {
                    return;
                }
            }
        });
        let reader = SnapshotReader {
            pieces,
            current: Vec::new(),
            offset: 0,
            check: Some(TrailerCheck::default()),
            expected_db_size,
            outcome: outcome.clone(),
        };
        let mut snapshot = Snapshot::new(
            vec![Entry::Stream {
                name: self.file_name.clone(),
                reader: Box::new(reader),
                mode: 0o600,
            }],
            SourceInfo {
                kind: "etcd".into(),
                paths: vec![endpoint.clone()],
            },
        );
        let facts = [
            ("endpoint", endpoint.clone().into()),
            ("member_name", member_name.into()),
            ("member_id", format!("{:x}", header.member_id).into()),
            ("cluster_id", format!("{:x}", header.cluster_id).into()),
            ("revision", revision.into()),
            ("raft_term", header.raft_term.into()),
            ("etcd_version", status.version.clone().into()),
            ("file", self.file_name.clone().into()),
        ];
        snapshot.facts.extend(
            facts
                .into_iter()
                .map(|(key, value): (&str, serde_json::Value)| (key.to_string(), value)),
        );
        Ok(snapshot.with_finisher(Box::new(EtcdFinisher {
            task,
            outcome,
            source_name: format!("etcd {endpoint}"),
        })))
    }
}
