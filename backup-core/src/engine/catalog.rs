//! The list of backups: reading manifests, `latest`, id prefixes, set names.

use futures::{StreamExt, TryStreamExt};

use crate::engine::*;
use crate::format::envelope::{self, ObjectKind};
use crate::format::manifest::{
    Backup, BackupStatus, Manifest, MANIFEST_VERSION, MANIFEST_VERSION_2,
};
use crate::{Error, Id, Result};

impl Engine {
    /// Reads one manifest.
    ///
    /// # Errors
    ///
    /// [`Error::BackupNotFound`] when missing, [`Error::Corrupt`] when damaged.
    pub async fn load_backup(&self, id: &Id) -> Result<Backup> {
        let key = format!("{MANIFEST_PREFIX}{id}");
        let bytes = match self.get_named(&key, id).await {
            Err(Error::NotFound { .. }) => {
                return Err(Error::BackupNotFound {
                    selector: id.to_string(),
                })
            }
            other => other?,
        };
        let json = envelope::open_named(&key, &bytes, ObjectKind::Manifest, self.key())?;
        let manifest: Manifest = serde_json::from_slice(&json)
            .map_err(|error| Error::corrupt(&key, 8, format!("invalid manifest: {error}")))?;
        if !(MANIFEST_VERSION..=MANIFEST_VERSION_2).contains(&manifest.version) {
            return Err(Error::UnsupportedVersion {
                key,
                found: manifest.version,
                min_supported: MANIFEST_VERSION,
                max_supported: MANIFEST_VERSION_2,
            });
        }
        Ok(Backup { id: *id, manifest })
    }

    /// Lists every backup, oldest first (by the time it represents).
    ///
    /// # Errors
    ///
    /// Storage errors, or [`Error::Corrupt`] for a damaged manifest.
    pub async fn list(&self) -> Result<Vec<Backup>> {
        self.list_checked(false).await
    }

    /// Lists backups; without `strict`, a damaged manifest is skipped with a
    /// warning (`verify` names it) so that it hides no other backup. Prune
    /// lists strictly: it must not delete what a damaged manifest may use.
    pub(crate) async fn list_checked(&self, strict: bool) -> Result<Vec<Backup>> {
        let ids = list_ids(self.sink.as_ref(), MANIFEST_PREFIX).await?;
        let loaded: Vec<Option<Backup>> = futures::stream::iter(ids)
            .map(|id| async move {
                match self.load_backup(&id).await {
                    Ok(backup) => Ok(Some(backup)),
                    // Forgotten between the list and the read.
                    Err(Error::BackupNotFound { .. }) => Ok(None),
                    Err(error @ Error::Corrupt { .. }) if !strict => {
                        tracing::warn!(%error, "damaged manifest skipped (run verify)");
                        Ok(None)
                    }
                    Err(error) => Err(error),
                }
            })
            .buffer_unordered(METADATA_CONCURRENCY)
            .try_collect()
            .await?;
        let mut backups: Vec<Backup> = loaded.into_iter().flatten().collect();
        backups.sort_by(|a, b| a.manifest.time.cmp(&b.manifest.time).then(a.id.cmp(&b.id)));
        Ok(backups)
    }

    /// The newest backup, of `set` when given.
    ///
    /// # Errors
    ///
    /// As [`Repository::list`].
    pub async fn newest(&self, set: Option<&str>) -> Result<Option<Backup>> {
        Ok(self
            .list()
            .await?
            .into_iter()
            .rfind(|backup| set.is_none_or(|set| backup.manifest.set == set)))
    }

    /// The backups `selectors` name (`latest` or id prefixes, as
    /// [`find_backup`](Self::find_backup) takes them), or with none every
    /// backup (of `set` when given); each once, oldest first.
    ///
    /// # Errors
    ///
    /// As [`find_backup`](Self::find_backup), for the first selector that
    /// names no backup; [`Error::InvalidArgument`] for an invalid set name.
    pub async fn select_backups(
        &self,
        selectors: &[String],
        set: Option<&str>,
    ) -> Result<Vec<Backup>> {
        if let Some(set) = set {
            validate_set_name(set)?;
        }
        let mut chosen: Vec<Backup> = if selectors.is_empty() {
            self.list()
                .await?
                .into_iter()
                .filter(|backup| set.is_none_or(|set| backup.manifest.set == set))
                .collect()
        } else {
            let mut found = Vec::with_capacity(selectors.len());
            for selector in selectors {
                found.push(self.find_backup(selector, set).await?);
            }
            found
        };
        chosen.sort_by(|a, b| a.manifest.time.cmp(&b.manifest.time).then(a.id.cmp(&b.id)));
        chosen.dedup_by_key(|backup| backup.id);
        Ok(chosen)
    }

    /// Finds a backup by `latest` (the newest *completed* backup, of `set`
    /// when given, as Velero restores `latest`) or by a unique prefix of its
    /// id.
    ///
    /// # Errors
    ///
    /// [`Error::BackupNotFound`] or [`Error::AmbiguousBackup`].
    pub async fn find_backup(&self, selector: &str, set: Option<&str>) -> Result<Backup> {
        if selector == "latest" {
            return self
                .list()
                .await?
                .into_iter()
                .rfind(|backup| {
                    backup.manifest.status == BackupStatus::Completed
                        && set.is_none_or(|set| backup.manifest.set == set)
                })
                .ok_or_else(|| Error::BackupNotFound {
                    selector: match set {
                        Some(set) => format!("latest (no completed backup of set {set:?})"),
                        None => "latest (no completed backup)".into(),
                    },
                });
        }
        if selector.is_empty() || !selector.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::BackupNotFound {
                selector: selector.into(),
            });
        }
        let selector_lower = selector.to_ascii_lowercase();
        let ids = list_ids(self.sink.as_ref(), MANIFEST_PREFIX).await?;
        let matches: Vec<Id> = ids
            .into_iter()
            .filter(|id| id.to_hex().starts_with(&selector_lower))
            .collect();
        match matches.as_slice() {
            [id] => {
                let backup = self.load_backup(id).await?;
                if set.is_some_and(|set| backup.manifest.set != set) {
                    return Err(Error::BackupNotFound {
                        selector: selector.into(),
                    });
                }
                Ok(backup)
            }
            [] => Err(Error::BackupNotFound {
                selector: selector.into(),
            }),
            many => Err(Error::AmbiguousBackup {
                prefix: selector.into(),
                count: many.len(),
            }),
        }
    }
}

/// Checks a backup set name: 1 to 128 characters, letters, digits, `.`, `_`,
/// `-`, `:` and `/` (not at the start).
///
/// # Errors
///
/// [`Error::InvalidArgument`] describing the rule.
pub fn validate_set_name(set: &str) -> Result<()> {
    let ok = !set.is_empty()
        && set.len() <= 128
        && !set.starts_with('/')
        && set
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '/'));
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid set name {set:?}: use 1 to 128 letters, digits, '.', '_', '-', ':' or '/'"
        )))
    }
}
