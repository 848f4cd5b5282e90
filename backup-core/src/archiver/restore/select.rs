//! Which paths of a backup a restore selects: the `include` (and
//! `exclude`) patterns of [`RestoreOptions`](super::RestoreOptions); `find`
//! matches with the same rules.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

use super::dir_prefix;
use crate::{Error, Result};

/// The compiled `include` patterns of a restore.
pub(crate) struct Selector {
    paths: GlobSet,
    names: GlobSet,
    everything: bool,
    /// Of each pattern with a `/`: the part before its first glob
    /// character. Only directories on the way to, or below, such a prefix
    /// can hold a match.
    literal_prefixes: Vec<String>,
}

impl Selector {
    /// Compiles `patterns`; none selects everything.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for a pattern that is not a valid glob.
    pub(crate) fn new(patterns: &[String]) -> Result<Selector> {
        Selector::with_case(patterns, false)
    }

    /// Compiles `patterns`, matching regardless of case when `ignore_case`.
    ///
    /// # Errors
    ///
    /// As [`Selector::new`].
    pub(crate) fn with_case(patterns: &[String], ignore_case: bool) -> Result<Selector> {
        let mut paths = GlobSetBuilder::new();
        let mut names = GlobSetBuilder::new();
        let mut literal_prefixes = Vec::new();
        for pattern in patterns {
            let glob = GlobBuilder::new(pattern.trim_start_matches('/'))
                .literal_separator(true)
                .case_insensitive(ignore_case)
                .build()
                .map_err(|error| {
                    Error::InvalidArgument(format!("invalid pattern {pattern:?}: {error}"))
                })?;
            let trimmed = pattern.trim_start_matches('/');
            if !pattern.contains('/') {
                names.add(glob.clone());
            } else {
                let end = trimmed
                    .find(['*', '?', '[', '{', '\\'])
                    .unwrap_or(trimmed.len());
                literal_prefixes.push(trimmed[..end].to_string());
            }
            paths.add(glob);
        }
        let build = |builder: GlobSetBuilder| {
            builder
                .build()
                .map_err(|error| Error::InvalidArgument(error.to_string()))
        };
        Ok(Selector {
            paths: build(paths)?,
            names: build(names)?,
            everything: patterns.is_empty(),
            literal_prefixes,
        })
    }

    /// Whether there are no patterns, so everything is selected.
    pub(super) fn selects_everything(&self) -> bool {
        self.everything
    }

    /// Whether the item at `relative`, named `name`, is selected itself
    /// (not only by a selected directory above it).
    pub(crate) fn selects(&self, relative: &str, name: &str) -> bool {
        self.everything || self.paths.is_match(relative) || self.names.is_match(name)
    }

    /// Whether anything below directory `relative` may be selected
    /// regardless of the path it is reached by.
    pub(super) fn needs_all_below(&self, relative: &str) -> bool {
        let prefix = dir_prefix(relative);
        self.everything
            || !self.names.is_empty()
            || self
                .literal_prefixes
                .iter()
                .any(|literal| prefix.starts_with(literal.as_str()))
    }

    /// Whether directory `relative` may hold a selected item.
    pub(super) fn may_contain(&self, relative: &str) -> bool {
        let prefix = dir_prefix(relative);
        self.needs_all_below(relative)
            || self
                .literal_prefixes
                .iter()
                .any(|literal| literal.starts_with(prefix.as_str()))
    }
}
