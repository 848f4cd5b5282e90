//! In-flight markers: how a running backup tells prune it exists.
//!
//! A backup writes `inflight/<random id>` *before* it loads the index and
//! deletes it only *after* its manifest is stored, refreshing the marker's
//! heartbeat while it runs. Prune deletes data only when no live backup
//! started before the data was marked for deletion, so a backup that
//! deduplicated against a doomed pack always finishes (and its manifest is
//! seen by prune's final reference check) first. A marker whose heartbeat is
//! older than [`STALE_AFTER_SECONDS`] belongs to a dead process and is
//! ignored.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::format::envelope::{self, ObjectKind};
use crate::sink::{PutMode, Sink};
use crate::{Id, Result};

/// Prefix of in-flight markers.
pub const INFLIGHT_PREFIX: &str = "inflight/";
/// Seconds between heartbeats of a running backup.
pub const HEARTBEAT_SECONDS: u64 = 60;
/// A marker whose heartbeat is older than this belongs to a dead process.
pub const STALE_AFTER_SECONDS: i64 = 15 * 60;

/// The content of an in-flight marker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InflightMarker {
    /// When the backup started (before it loaded the index).
    pub started: DateTime<Utc>,
    /// Last sign of life.
    pub heartbeat: DateTime<Utc>,
    /// Writer identity.
    pub writer: String,
    /// Host name.
    pub hostname: String,
    /// Process id on that host.
    pub pid: u32,
}

impl InflightMarker {
    /// Whether the marker's process is presumed alive at `now`.
    pub fn is_live(&self, now: DateTime<Utc>) -> bool {
        (now - self.heartbeat).num_seconds() < STALE_AFTER_SECONDS
    }
}

/// Removes the marker when the backup is over.
pub(crate) struct InflightGuard {
    key: String,
    sink: Arc<dyn Sink>,
    stop: tokio::sync::watch::Sender<bool>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

impl InflightGuard {
    /// Writes the marker and starts the heartbeat.
    pub(crate) async fn register(repo: &Arc<Engine>, writer: &str) -> Result<InflightGuard> {
        let id = Id(crate::crypto::random_bytes());
        let key = format!("{INFLIGHT_PREFIX}{id}");
        let now = Utc::now();
        let mut marker = InflightMarker {
            started: now,
            heartbeat: now,
            writer: writer.to_string(),
            hostname: crate::engine::hostname(),
            pid: std::process::id(),
        };
        repo.sink
            .put(&key, encode(repo, &marker)?, PutMode::Create)
            .await?;
        let beat_repo = repo.clone();
        let beat_key = key.clone();
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let heartbeat = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(std::time::Duration::from_secs(HEARTBEAT_SECONDS)) => {}
                    _ = stopped.changed() => break,
                }
                marker.heartbeat = Utc::now();
                let written = match encode(&beat_repo, &marker) {
                    Ok(bytes) => {
                        beat_repo
                            .sink
                            .put(&beat_key, bytes, PutMode::Overwrite)
                            .await
                    }
                    Err(error) => Err(error),
                };
                if let Err(error) = written {
                    tracing::warn!(%error, "could not refresh the in-flight marker");
                }
            }
        });
        Ok(InflightGuard {
            key,
            sink: repo.sink.clone(),
            stop,
            heartbeat: Some(heartbeat),
        })
    }

    /// Stops the heartbeat and deletes the marker.
    pub(crate) async fn release(mut self) {
        // Wait for the heartbeat to stop, so that a refresh in progress
        // cannot write the marker again after it is deleted.
        let _ = self.stop.send(true);
        if let Some(heartbeat) = self.heartbeat.take() {
            let _ = heartbeat.await;
        }
        if let Err(error) = self.sink.delete(&self.key).await {
            tracing::warn!(%error, key = %self.key, "could not remove the in-flight marker; it goes stale by itself");
        }
    }
}

impl Drop for InflightGuard {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

pub(crate) fn encode(repo: &Engine, marker: &InflightMarker) -> Result<Bytes> {
    let json = serde_json::to_vec(marker).map_err(|error| {
        crate::Error::InvalidArgument(format!("encoding in-flight marker: {error}"))
    })?;
    Ok(Bytes::from(envelope::seal(
        ObjectKind::Inflight,
        &json,
        false,
        repo.key(),
    )))
}

/// Reads every in-flight marker; unreadable ones are treated as live and
/// recent (the safe assumption for prune).
pub(crate) async fn list_markers(repo: &Engine) -> Result<Vec<InflightMarker>> {
    let mut markers = Vec::new();
    for meta in repo.sink.list(INFLIGHT_PREFIX).await? {
        let bytes = match repo.sink.get_range(&meta.key, None).await {
            Ok(bytes) => bytes,
            // Finished between the list and the get.
            Err(crate::Error::NotFound { .. }) => continue,
            Err(error) => return Err(error),
        };
        let decoded = envelope::open(&meta.key, &bytes, ObjectKind::Inflight, repo.key())
            .ok()
            .and_then(|json| serde_json::from_slice::<InflightMarker>(&json).ok());
        markers.push(decoded.unwrap_or_else(|| {
            tracing::warn!(key = %meta.key, "unreadable in-flight marker: treated as a live backup");
            let now = Utc::now();
            InflightMarker { started: DateTime::<Utc>::MIN_UTC, heartbeat: now, writer: "unknown".into(), hostname: "unknown".into(), pid: 0 }
        }));
    }
    Ok(markers)
}
