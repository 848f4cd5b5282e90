//! Deletion marks: a prune's record of the packs it will delete once the
//! grace period is over. Readers add the packs they name to the index
//! (their blobs may still be needed); new backups do not use them.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{list_ids, Engine};
use crate::format::envelope::{self, ObjectKind};
use crate::{Error, Id, Result};

/// Prefix of deletion marks.
pub const PENDING_PREFIX: &str = "pending/";

/// A prune's record of packs to delete once the grace period is over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeletionMark {
    /// When the packs were marked.
    pub marked_at: DateTime<Utc>,
    /// The doomed packs.
    pub packs: Vec<Id>,
}

/// Marks read, and the keys of marks that could not be read.
pub(crate) type Marks = (Vec<(String, DeletionMark)>, Vec<String>);

/// Reads every deletion mark (`pending/<64 hex>`; other names are not
/// marks). A mark that is gone by the time it is read was completed by a
/// prune meanwhile; one that fails a check is returned by key as unreadable.
pub(crate) async fn list_marks(repo: &Engine) -> Result<Marks> {
    let mut marks = Vec::new();
    let mut unreadable = Vec::new();
    for id in list_ids(repo.sink.as_ref(), PENDING_PREFIX).await? {
        let key = format!("{PENDING_PREFIX}{id}");
        let decoded = repo.get_named(&key, &id).await.and_then(|bytes| {
            let json = envelope::open(&key, &bytes, ObjectKind::DeletionMark, repo.key())?;
            serde_json::from_slice::<DeletionMark>(&json)
                .map_err(|error| Error::corrupt(&key, 8, format!("invalid deletion mark: {error}")))
        });
        match decoded {
            Ok(mark) => marks.push((key, mark)),
            Err(Error::NotFound { .. }) => {}
            Err(Error::Corrupt { .. }) => unreadable.push(key),
            Err(error) => return Err(error),
        }
    }
    Ok((marks, unreadable))
}
