//! Restoring a node backup into a stopped node: its SSTables into the
//! table directories, its tokens into `cassandra.yaml`.

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::super::restorer::{check_kind, clear_dir, require_empty_dir, restore_all};
use super::super::{Restorer, StoreRestore};
use super::{major, CASSANDRA_DATA_DIR, CASSANDRA_KIND};
use crate::format::manifest::Backup;
use crate::repository::Repository;
use crate::{Error, Result};

/// Keyspaces of node-local state that a new node builds for itself (its
/// host id, tokens, peers): not restored.
const NODE_LOCAL_KEYSPACES: &[&str] = &["system"];

/// Restores a Cassandra node backup into a stopped node that has never
/// started (an empty data directory): every keyspace's table directories
/// (`system_schema` included, so the node starts with the schema; `system`
/// left out, as it holds the old node's own identity and peers), and, with
/// [`with_yaml`](CassandraRestorer::with_yaml), the old node's tokens in
/// `cassandra.yaml`: `initial_token` (comma-separated), `num_tokens` and
/// `auto_bootstrap: false`, so that the node takes the same token ranges
/// without streaming from the others.
///
/// Refused before anything is written: a backup of another kind, a data
/// directory that is not empty, a `cassandra.yaml` that cannot be read,
/// and (with [`with_target_version`](CassandraRestorer::with_target_version))
/// a Cassandra of another major version than the backup's. Restore within
/// the tables' `gc_grace_seconds` of the backup, or deleted data can come
/// back.
///
/// # Examples
///
/// ```
/// use backup_core::{CassandraRestorer, Restorer};
/// let restorer = CassandraRestorer::new("/var/lib/cassandra/data")
///     .with_yaml("/etc/cassandra/cassandra.yaml")
///     .with_target_version("4.0.11");
/// assert_eq!(restorer.kind(), "cassandra");
/// ```
#[derive(Debug, Clone)]
pub struct CassandraRestorer {
    data_dir: PathBuf,
    yaml: Option<PathBuf>,
    version: Option<String>,
}

impl CassandraRestorer {
    /// Restores into the data directory `data_dir` (the node's first
    /// `data_file_directories` entry; Cassandra finds SSTables in any).
    pub fn new(data_dir: impl Into<PathBuf>) -> CassandraRestorer {
        CassandraRestorer {
            data_dir: data_dir.into(),
            yaml: None,
            version: None,
        }
    }

    /// Writes the tokens into this `cassandra.yaml`.
    pub fn with_yaml(mut self, yaml: impl Into<PathBuf>) -> CassandraRestorer {
        self.yaml = Some(yaml.into());
        self
    }

    /// The Cassandra version the node runs: a backup of another major
    /// version is refused.
    pub fn with_target_version(mut self, version: impl Into<String>) -> CassandraRestorer {
        self.version = Some(version.into());
        self
    }

    /// The data directory restored into.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Everything checked before writing.
    pub(crate) fn preflight(&self, backup: &Backup) -> Result<()> {
        let target = self.data_dir.display().to_string();
        check_kind(backup, CASSANDRA_KIND, &target)?;
        require_empty_dir(&self.data_dir)?;
        let facts = &backup.manifest.facts;
        if tokens(backup).is_empty() {
            return Err(Error::RestoreRefused {
                target,
                reason: format!("backup {} records no tokens", backup.id),
            });
        }
        if let Some(version) = &self.version {
            let recorded = facts
                .get("cassandra_version")
                .and_then(|value| value.as_str())
                .unwrap_or_default();
            if major(recorded) != major(version) {
                return Err(Error::RestoreRefused {
                    target,
                    reason: format!(
                        "backup {} is of Cassandra {recorded} and the node runs {version}: \
                         restore into a node of the same major version",
                        backup.id
                    ),
                });
            }
        }
        if let Some(yaml) = &self.yaml {
            std::fs::read_to_string(yaml).map_err(|error| Error::RestoreRefused {
                target: yaml.display().to_string(),
                reason: format!("cannot read the node's cassandra.yaml: {error}"),
            })?;
        }
        Ok(())
    }

    async fn restore_checked(&self, repo: &Repository, backup: &Backup) -> Result<StoreRestore> {
        let staging = self
            .data_dir
            .join(format!(".restoring-{}", backup.id.short()));
        let options = crate::RestoreOptions::default().with_include([CASSANDRA_DATA_DIR]);
        let summary = restore_all(repo, backup, &staging, &options).await?;
        let restored = staging.join(CASSANDRA_DATA_DIR);
        let mut keyspaces = Vec::new();
        let children = std::fs::read_dir(&restored)
            .map_err(|error| Error::io("reading the restored tables", &restored, error))?;
        for child in children {
            let child = child
                .map_err(|error| Error::io("reading the restored tables", &restored, error))?;
            let name = child.file_name().to_string_lossy().into_owned();
            if NODE_LOCAL_KEYSPACES.contains(&name.as_str()) {
                continue;
            }
            let to = self.data_dir.join(&name);
            std::fs::rename(child.path(), &to)
                .map_err(|error| Error::io("moving a keyspace into place", &to, error))?;
            keyspaces.push(name);
        }
        std::fs::remove_dir_all(&staging)
            .map_err(|error| Error::io("removing the staging directory", &staging, error))?;
        keyspaces.sort();
        let tokens = tokens(backup);
        if let Some(yaml) = &self.yaml {
            write_tokens(yaml, &tokens)?;
        }
        let facts = &backup.manifest.facts;
        let mut report = StoreRestore::new(CASSANDRA_KIND, &self.data_dir, summary.bytes)
            .with_detail("keyspaces", keyspaces)
            .with_detail("files", summary.files)
            .with_detail("initial_token", tokens.join(","))
            .with_detail("num_tokens", tokens.len());
        for key in ["node", "host_id", "datacenter", "rack", "cluster_name"] {
            if let Some(value) = facts.get(key) {
                report = report.with_detail(format!("source_{key}"), value.clone());
            }
        }
        if let Some(yaml) = &self.yaml {
            report = report.with_detail("cassandra_yaml", yaml.display().to_string());
        }
        Ok(report)
    }
}

/// A node backup's tokens.
pub(crate) fn tokens(backup: &Backup) -> Vec<String> {
    backup
        .manifest
        .facts
        .get("tokens")
        .and_then(|value| value.as_array())
        .map(|tokens| {
            tokens
                .iter()
                .filter_map(|token| token.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[async_trait]
impl Restorer for CassandraRestorer {
    fn kind(&self) -> &str {
        CASSANDRA_KIND
    }

    async fn restore(&self, repo: &Repository, backup: &Backup) -> Result<StoreRestore> {
        self.preflight(backup)?;
        std::fs::create_dir_all(&self.data_dir)
            .map_err(|error| Error::io("creating the data directory", &self.data_dir, error))?;
        let outcome = self.restore_checked(repo, backup).await;
        if outcome.is_err() {
            clear_dir(&self.data_dir);
        }
        outcome
    }
}

/// Sets `initial_token`, `num_tokens` and `auto_bootstrap: false` in the
/// YAML file, through a temporary file renamed over it.
fn write_tokens(yaml: &Path, tokens: &[String]) -> Result<()> {
    let text = std::fs::read_to_string(yaml)
        .map_err(|error| Error::io("reading cassandra.yaml", yaml, error))?;
    let updated = set_keys(
        &text,
        &[
            ("initial_token", tokens.join(",")),
            ("num_tokens", tokens.len().to_string()),
            ("auto_bootstrap", "false".into()),
        ],
    );
    let temporary = yaml.with_extension("yaml.restoring");
    std::fs::write(&temporary, updated)
        .map_err(|error| Error::io("writing cassandra.yaml", &temporary, error))?;
    if let Ok(meta) = std::fs::metadata(yaml) {
        let _ = std::fs::set_permissions(&temporary, meta.permissions());
    }
    std::fs::rename(&temporary, yaml)
        .map_err(|error| Error::io("writing cassandra.yaml", yaml, error))
}

/// `text` with each top-level `key:` line set to `key: value` (the first
/// of each; commented lines left alone), and the keys it lacked appended.
pub(crate) fn set_keys(text: &str, settings: &[(&str, String)]) -> String {
    let mut done = vec![false; settings.len()];
    let mut out = String::with_capacity(text.len() + 128);
    for line in text.lines() {
        let mut replaced = false;
        for (at, (key, value)) in settings.iter().enumerate() {
            let is_key = line
                .strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'));
            if is_key {
                if !done[at] {
                    out.push_str(&format!("{key}: {value}\n"));
                    done[at] = true;
                }
                replaced = true;
                break;
            }
        }
        if !replaced {
            out.push_str(line);
            out.push('\n');
        }
    }
    let missing: Vec<_> = settings
        .iter()
        .zip(&done)
        .filter(|(_, done)| !**done)
        .collect();
    if !missing.is_empty() {
        out.push_str(
            "\n# Set by the restore of a backup: this node's tokens are the backed-up node's.\n",
        );
        for ((key, value), _) in missing {
            out.push_str(&format!("{key}: {value}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_keys_set_and_appended() {
        let text =
            "cluster_name: 'Test'\nnum_tokens: 16\n# initial_token:\nseed_provider:\n  - x\n";
        let out = set_keys(
            text,
            &[
                ("initial_token", "-1,2".into()),
                ("num_tokens", "2".into()),
                ("auto_bootstrap", "false".into()),
            ],
        );
        assert!(out.contains("num_tokens: 2\n"), "{out}");
        assert!(!out.contains("num_tokens: 16"), "{out}");
        assert!(out.contains("# initial_token:\n"), "{out}");
        assert!(out.contains("\ninitial_token: -1,2\n"), "{out}");
        assert!(out.contains("\nauto_bootstrap: false\n"), "{out}");
        assert!(out.contains("seed_provider:\n  - x\n"), "{out}");
    }
}
