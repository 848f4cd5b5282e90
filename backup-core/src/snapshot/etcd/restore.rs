//! Restoring an etcd snapshot into a new member data directory.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::trailer;
use crate::format::manifest::Backup;
use crate::repository::Repository;
use crate::snapshot::restorer::{
    find_in_path, require_empty_dir, write_stored_file, Restorer, StoreRestore,
};
use crate::{Error, Result};

/// Restores an etcd backup into a new data directory for one member, with
/// `etcdutl snapshot restore` where it is installed, else `etcdctl
/// snapshot restore` (`ETCDCTL_API=3`). Several members restore from the
/// same backup, each with its own name and peer URLs and the same initial
/// cluster and token.
///
/// The data directory must be absent or empty. The stored snapshot is
/// written beside it and its SHA-256 trailer checked before the tool sees
/// it; a snapshot of a newer etcd minor version than the tool is refused.
/// Defaults are etcd's: name `default`, initial cluster
/// `default=http://localhost:2380`, token `etcd-cluster`, peer URL
/// `http://localhost:2380`.
///
/// # Examples
///
/// ```
/// use backup_core::EtcdRestorer;
/// let member = EtcdRestorer::new("/var/lib/etcd/m1")
///     .with_name("m1")
///     .with_initial_cluster("m1=https://10.0.0.1:2380,m2=https://10.0.0.2:2380")
///     .with_initial_advertise_peer_urls("https://10.0.0.1:2380")
///     .with_initial_cluster_token("prod");
/// assert_eq!(member.data_dir().to_str(), Some("/var/lib/etcd/m1"));
/// ```
#[derive(Debug, Clone)]
pub struct EtcdRestorer {
    data_dir: PathBuf,
    name: String,
    initial_cluster: Option<String>,
    initial_cluster_token: String,
    initial_advertise_peer_urls: String,
    tool: Option<PathBuf>,
}

impl EtcdRestorer {
    /// A restore into `data_dir` (absent or empty).
    pub fn new(data_dir: impl Into<PathBuf>) -> EtcdRestorer {
        EtcdRestorer {
            data_dir: data_dir.into(),
            name: "default".into(),
            initial_cluster: None,
            initial_cluster_token: "etcd-cluster".into(),
            initial_advertise_peer_urls: "http://localhost:2380".into(),
            tool: None,
        }
    }

    /// The member's name (default `default`).
    pub fn with_name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The initial cluster, `name=peer-url,...` (default: this member alone
    /// at its peer URLs).
    pub fn with_initial_cluster(mut self, cluster: impl Into<String>) -> Self {
        self.initial_cluster = Some(cluster.into());
        self
    }

    /// The initial cluster token (default `etcd-cluster`).
    pub fn with_initial_cluster_token(mut self, token: impl Into<String>) -> Self {
        self.initial_cluster_token = token.into();
        self
    }

    /// This member's peer URLs (default `http://localhost:2380`).
    pub fn with_initial_advertise_peer_urls(mut self, urls: impl Into<String>) -> Self {
        self.initial_advertise_peer_urls = urls.into();
        self
    }

    /// Runs this `etcdutl` or `etcdctl` rather than the one on the `PATH`.
    pub fn with_tool(mut self, tool: impl Into<PathBuf>) -> Self {
        self.tool = Some(tool.into());
        self
    }

    /// The data directory restored into.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    fn refused(&self, reason: impl Into<String>) -> Error {
        Error::RestoreRefused {
            target: self.data_dir.display().to_string(),
            reason: reason.into(),
        }
    }

    /// The tool and whether it is etcdutl.
    fn tool(&self) -> Result<(PathBuf, bool)> {
        if let Some(tool) = &self.tool {
            let is_etcdutl = tool
                .file_name()
                .is_some_and(|name| name.to_string_lossy().contains("etcdutl"));
            return Ok((tool.clone(), is_etcdutl));
        }
        for (name, is_etcdutl) in [("etcdutl", true), ("etcdctl", false)] {
            if let Some(found) = find_in_path(name) {
                return Ok((found, is_etcdutl));
            }
        }
        Err(self.refused(
            "neither etcdutl nor etcdctl is installed (restoring needs one of them on the PATH)",
        ))
    }
}

/// `major.minor` of a version string such as `3.4.23`.
fn minor_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.trim().trim_start_matches('v').split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts
        .next()?
        .trim_end_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()?;
    Some((major, minor))
}

/// The version a tool prints (`etcdctl version: 3.4.23`, `etcdutl version: 3.5.9`).
fn tool_version(tool: &Path) -> Option<(u32, u32)> {
    let output = std::process::Command::new(tool)
        .arg("version")
        .env("ETCDCTL_API", "3")
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| {
            line.split_once("version:")
                .and_then(|(_, version)| minor_version(version))
        })
}

#[async_trait]
impl Restorer for EtcdRestorer {
    fn kind(&self) -> &str {
        "etcd"
    }

    async fn restore(&self, repo: &Repository, backup: &Backup) -> Result<StoreRestore> {
        require_empty_dir(&self.data_dir)?;
        let (tool, is_etcdutl) = self.tool()?;
        let recorded = backup
            .manifest
            .facts
            .get("etcd_version")
            .and_then(|version| version.as_str())
            .and_then(minor_version);
        if let (Some(recorded), Some(have)) = (recorded, tool_version(&tool)) {
            if recorded > have {
                return Err(self.refused(format!(
                    "the snapshot is of etcd {}.{} and {} is {}.{}: restore with a tool of the \
                     same or a newer version",
                    recorded.0,
                    recorded.1,
                    tool.display(),
                    have.0,
                    have.1
                )));
            }
        }
        let stored = backup
            .manifest
            .facts
            .get("file")
            .and_then(|file| file.as_str())
            .unwrap_or(super::ETCD_SNAPSHOT_FILE)
            .to_string();
        let parent = match self.data_dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
            _ => PathBuf::from("."),
        };
        std::fs::create_dir_all(&parent)
            .map_err(|error| Error::io("creating the data directory's parent", &parent, error))?;
        let existed = self.data_dir.exists();
        let snapshot_file = parent.join(format!(
            ".etcd-restore-{}-{}.db",
            self.name,
            std::process::id()
        ));
        let _ = std::fs::remove_file(&snapshot_file);
        let outcome = async {
            let bytes = write_stored_file(repo, backup, &stored, &snapshot_file, 0o600).await?;
            let checked = snapshot_file.clone();
            let verified = tokio::task::spawn_blocking(move || trailer::check_file(&checked))
                .await
                .map_err(|error| {
                    Error::io(
                        "checking the snapshot",
                        &snapshot_file,
                        std::io::Error::other(error),
                    )
                })?
                .map_err(|detail| {
                    Error::corrupt(format!("{stored:?} in backup {}", backup.id), 0, detail)
                })?;
            // etcd wants the directory absent or empty; an empty one is
            // removed so that both tools take it.
            if existed {
                std::fs::remove_dir(&self.data_dir).map_err(|error| {
                    Error::io("preparing the data directory", &self.data_dir, error)
                })?;
            }
            let initial_cluster = self
                .initial_cluster
                .clone()
                .unwrap_or_else(|| format!("{}={}", self.name, self.initial_advertise_peer_urls));
            let mut command = tokio::process::Command::new(&tool);
            command
                .arg("snapshot")
                .arg("restore")
                .arg(&snapshot_file)
                .arg(format!("--data-dir={}", self.data_dir.display()))
                .arg(format!("--name={}", self.name))
                .arg(format!("--initial-cluster={initial_cluster}"))
                .arg(format!(
                    "--initial-cluster-token={}",
                    self.initial_cluster_token
                ))
                .arg(format!(
                    "--initial-advertise-peer-urls={}",
                    self.initial_advertise_peer_urls
                ))
                .stdin(std::process::Stdio::null())
                .kill_on_drop(true);
            if !is_etcdutl {
                command.env("ETCDCTL_API", "3");
            }
            let output = command
                .output()
                .await
                .map_err(|error| Error::io("running the etcd restore tool", &tool, error))?;
            if !output.status.success() {
                let _ = std::fs::remove_dir_all(&self.data_dir);
                let stderr = String::from_utf8_lossy(&output.stderr);
                let tail = &stderr[stderr.len().saturating_sub(2048)..];
                return Err(Error::Snapshot {
                    source_name: format!("restore of etcd member {:?}", self.name),
                    detail: format!(
                        "{} snapshot restore exited with {}: {}",
                        tool.display(),
                        output.status,
                        tail.trim()
                    ),
                });
            }
            Ok(StoreRestore::new("etcd", &self.data_dir, bytes)
                .with_detail("name", self.name.clone())
                .with_detail("initial_cluster", initial_cluster)
                .with_detail("initial_cluster_token", self.initial_cluster_token.clone())
                .with_detail(
                    "initial_advertise_peer_urls",
                    self.initial_advertise_peer_urls.clone(),
                )
                .with_detail("sha256", hex::encode(verified.digest))
                .with_detail("tool", tool.display().to_string()))
        }
        .await;
        let _ = std::fs::remove_file(&snapshot_file);
        if outcome.is_err() && existed && !self.data_dir.exists() {
            let _ = std::fs::create_dir(&self.data_dir);
        }
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_to_their_minor() {
        assert_eq!(minor_version("3.4.23"), Some((3, 4)));
        assert_eq!(minor_version(" v3.5.0-rc.1"), Some((3, 5)));
        assert_eq!(minor_version("3"), None);
        assert_eq!(minor_version(""), None);
    }
}
