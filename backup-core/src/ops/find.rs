//! Finding files by glob patterns across backups.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::archiver::restore::Selector;
use crate::engine::Engine;
use crate::format::manifest::Backup;
use crate::ops::ls::LsEntry;
use crate::{Error, Id, Result};

/// What [`Repository::find`](crate::Repository::find) looks for.
///
/// A pattern without `/` is matched against each entry's name; a pattern
/// with `/` against its whole path from the backup's root (a leading `/`
/// is optional). `*` and `?` do not match `/`, `**` does; `[abc]` and
/// `{a,b}` work as in a shell.
///
/// # Examples
///
/// ```
/// use backup_core::FindOptions;
///
/// let options = FindOptions::new(["*.log", "etc/**/*.conf"]).with_ignore_case(true);
/// assert_eq!(options.patterns.len(), 2);
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FindOptions {
    /// The glob patterns; an entry matching any of them is found.
    pub patterns: Vec<String>,
    /// Match regardless of case.
    pub ignore_case: bool,
}

impl FindOptions {
    /// Looks for entries matching any of `patterns`.
    pub fn new(patterns: impl IntoIterator<Item = impl Into<String>>) -> Self {
        FindOptions {
            patterns: patterns.into_iter().map(Into::into).collect(),
            ignore_case: false,
        }
    }

    /// Matches regardless of case (default: case matters).
    pub fn with_ignore_case(mut self, ignore_case: bool) -> Self {
        self.ignore_case = ignore_case;
        self
    }
}

/// The entries of one backup that matched, from
/// [`Repository::find`](crate::Repository::find).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct FindMatches {
    /// The backup's id.
    pub id: Id,
    /// Its set.
    pub set: String,
    /// The time it represents.
    pub time: DateTime<Utc>,
    /// The entries that matched, depth first, each directory before its
    /// entries, names in byte order.
    pub entries: Vec<LsEntry>,
}

/// Looks for matching entries in each backup; see
/// [`Repository::find`](crate::Repository::find).
pub(crate) async fn run(
    engine: &Arc<Engine>,
    backups: &[Backup],
    options: &FindOptions,
) -> Result<Vec<FindMatches>> {
    if options.patterns.is_empty() {
        return Err(Error::InvalidArgument(
            "find needs at least one pattern".into(),
        ));
    }
    let matcher = Selector::with_case(&options.patterns, options.ignore_case)?;
    let mut found = Vec::new();
    for backup in backups {
        let entries = find_in(engine, backup, &matcher).await?;
        if !entries.is_empty() {
            found.push(FindMatches {
                id: backup.id,
                set: backup.manifest.set.clone(),
                time: backup.manifest.time,
                entries,
            });
        }
    }
    Ok(found)
}

/// The matching entries of one backup, its tree read as `ls` reads it
/// (each distinct listing once, within the same limits), sorted by path.
async fn find_in(
    engine: &Arc<Engine>,
    backup: &Backup,
    matcher: &Selector,
) -> Result<Vec<LsEntry>> {
    let mut out = crate::ops::ls::matching(engine, backup, |path, node| {
        matcher.selects(path, &node.name)
    })
    .await?;
    out.sort_by(|a, b| a.path.split('/').cmp(b.path.split('/')));
    Ok(out)
}
