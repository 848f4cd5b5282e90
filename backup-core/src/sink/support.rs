//! What sink implementations share: temporary object names, the
//! contract's range rules, the walk of a listing, and retries.
//!
//! Reachable as `backup_core::sink_support`. A sink that writes an object
//! under a temporary name and then moves it into place (the local, SFTP and
//! object store sinks all do) names it with [`temp_name`], refuses keys that
//! [`reject_temp_name`] reserves, and hides such names from `list` with
//! [`is_temp_name`]. Ranged reads follow [`clamp_range`]. Retries wait
//! [`RetryPolicy::backoff`] between attempts.
//!
//! ```
//! use backup_core::sink_support::{clamp_range, is_temp_name, temp_name};
//!
//! let name = temp_name();
//! assert!(is_temp_name(&name));
//! assert!(!is_temp_name("config"));
//! assert_eq!(clamp_range("key", 4..100, 10)?, 4..10);
//! # Ok::<(), backup_core::Error>(())
//! ```

use std::ops::Range;

pub use super::retry::RetryPolicy;
use crate::{Error, Result};

/// What every temporary name starts with.
pub const TEMP_PREFIX: &str = ".tmp-";
/// How many lowercase hex digits follow [`TEMP_PREFIX`] in a temporary name.
pub const TEMP_HEX_DIGITS: usize = 32;

/// A fresh temporary name: [`TEMP_PREFIX`] and 128 random bits in
/// [`TEMP_HEX_DIGITS`] lowercase hex digits. Two names collide with
/// negligible probability; callers still create temporary files exclusively
/// and retry a few times on a collision.
pub fn temp_name() -> String {
    format!("{TEMP_PREFIX}{:032x}", rand::random::<u128>())
}

/// Whether `name` (one segment of a key, not a whole key) is a temporary
/// name as [`temp_name`] makes them.
///
/// # Examples
///
/// ```
/// use backup_core::sink_support::is_temp_name;
/// assert!(is_temp_name(".tmp-0123456789abcdef0123456789abcdef"));
/// assert!(!is_temp_name(".tmp-0123456789ABCDEF0123456789abcdef"));
/// assert!(!is_temp_name(".tmp-notes"));
/// ```
pub fn is_temp_name(name: &str) -> bool {
    name.strip_prefix(TEMP_PREFIX).is_some_and(|rest| {
        rest.len() == TEMP_HEX_DIGITS
            && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Refuses a key whose last segment is a temporary name: `list` would
/// hide the object. `sink` names the sink in the message ("a local sink").
///
/// # Errors
///
/// [`Error::InvalidArgument`] naming the key.
///
/// # Examples
///
/// ```
/// use backup_core::sink_support::reject_temp_name;
/// assert!(reject_temp_name("data/ab/abcdef", "a local sink").is_ok());
/// assert!(reject_temp_name("data/.tmp-0123456789abcdef0123456789abcdef", "a local sink").is_err());
/// ```
pub fn reject_temp_name(key: &str, sink: &str) -> Result<()> {
    let name = key.rsplit('/').next().unwrap_or(key);
    if is_temp_name(name) {
        return Err(Error::InvalidArgument(format!(
            "invalid object key {key:?}: {sink} reserves names of the form \
             {TEMP_PREFIX}<{TEMP_HEX_DIGITS} hex digits> for its temporary objects"
        )));
    }
    Ok(())
}

/// Applies the contract's range rules to an object of `len` bytes: the
/// bytes to return.
///
/// An empty range (`start == end`) returns nothing as long as `start` is
/// within the object; a range ending past the end is truncated.
///
/// # Errors
///
/// [`Error::InvalidArgument`] when `start > end`, or when `start` is at or
/// past the end of the object for a non-empty range.
///
/// # Examples
///
/// ```
/// use backup_core::sink_support::clamp_range;
/// assert_eq!(clamp_range("k", 5..50, 10)?, 5..10);
/// assert_eq!(clamp_range("k", 10..10, 10)?, 10..10);
/// assert!(clamp_range("k", 10..11, 10).is_err());
/// # Ok::<(), backup_core::Error>(())
/// ```
pub fn clamp_range(key: &str, range: Range<u64>, len: u64) -> Result<Range<u64>> {
    if range.start > range.end {
        return Err(Error::InvalidArgument(format!(
            "invalid range {range:?} for {key}: start after end"
        )));
    }
    if range.start == range.end && range.start <= len {
        return Ok(range);
    }
    if range.start >= len {
        return Err(Error::InvalidArgument(format!(
            "range {range:?} starts at or past the end of {key} ({len} bytes)"
        )));
    }
    Ok(range.start..range.end.min(len))
}

/// Where a listing of `prefix` starts, for sinks that keep keys as paths
/// of directories: the key of the deepest directory the prefix names by
/// whole segments (`""` for the top), or `None` when no valid key can lie
/// below it (a segment that is empty, `.`, `..` or holds a NUL, which must
/// also never lead a walk outside the sink's root).
///
/// # Examples
///
/// ```
/// use backup_core::sink_support::list_start;
/// assert_eq!(list_start("data/ab"), Some("data"));
/// assert_eq!(list_start("index/"), Some("index"));
/// assert_eq!(list_start("snap"), Some(""));
/// assert_eq!(list_start("../x"), None);
/// ```
pub fn list_start(prefix: &str) -> Option<&str> {
    let (directory, _) = prefix.rsplit_once('/').unwrap_or(("", prefix));
    let invalid = !directory.is_empty()
        && directory.split('/').any(|segment| {
            segment.is_empty() || segment == "." || segment == ".." || segment.contains('\0')
        });
    (!invalid).then_some(directory)
}

/// Whether a listing of `prefix` must descend into the directory whose
/// keys start with `directory_key` (ending in `/`): only where keys can
/// still match the prefix.
pub fn list_descends(directory_key: &str, prefix: &str) -> bool {
    directory_key.starts_with(prefix) || prefix.starts_with(directory_key)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(clamp_range("k", 0..5, 10).unwrap(), 0..5);
        assert_eq!(clamp_range("k", 5..50, 10).unwrap(), 5..10);
        assert_eq!(clamp_range("k", 9..10, 10).unwrap(), 9..10);
        assert_eq!(clamp_range("k", 10..10, 10).unwrap(), 10..10);
        assert!(clamp_range("k", 10..11, 10).is_err());
        assert!(clamp_range("k", 11..11, 10).is_err());
        assert!(clamp_range("k", 0..1, 0).is_err());
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = 5..4;
        assert!(clamp_range("k", reversed, 10).is_err());
    }

    #[test]
    fn temp_names() {
        assert!(is_temp_name(".tmp-0123456789abcdef0123456789abcdef"));
        assert!(!is_temp_name(".tmp-0123456789abcdef0123456789abcde"));
        assert!(!is_temp_name(".tmp-0123456789ABCDEF0123456789abcdef"));
        assert!(!is_temp_name(".tmp-notes"));
        assert!(!is_temp_name("data"));
        let name = temp_name();
        assert!(is_temp_name(&name), "{name}");
        assert_ne!(name, temp_name());
        assert!(reject_temp_name(&format!("a/b/{name}"), "a sink").is_err());
        assert!(reject_temp_name(&name, "a sink").is_err());
        assert!(reject_temp_name(&format!("{name}/b"), "a sink").is_ok());
    }

    #[test]
    fn listing_walks() {
        assert_eq!(list_start(""), Some(""));
        assert_eq!(list_start("a/b/c"), Some("a/b"));
        for bad in ["a//b", "./x", "a/../b/", "nul\0/x"] {
            assert_eq!(list_start(bad), None, "{bad:?}");
        }
        // The last segment is part of a name, not a directory.
        assert_eq!(list_start("a/.."), Some("a"));
        assert_eq!(list_start("/x"), Some(""));
        assert!(list_descends("data/", "data/ab"));
        assert!(list_descends("data/ab/", "data/a"));
        assert!(!list_descends("index/", "data/"));
    }

    #[test]
    fn backoff_grows_within_its_bounds() {
        let policy = RetryPolicy {
            max_retries: 4,
            initial_backoff: std::time::Duration::from_millis(200),
            max_backoff: std::time::Duration::from_secs(10),
        };
        for attempt in 0..40 {
            let delay = policy.backoff(attempt);
            let ceiling = (policy
                .initial_backoff
                .saturating_mul(2u32.saturating_pow(attempt.min(30))))
            .min(policy.max_backoff);
            assert!(delay <= ceiling, "{attempt}: {delay:?}");
            assert!(delay >= ceiling / 2, "{attempt}: {delay:?}");
        }
    }
}
