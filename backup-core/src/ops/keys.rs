//! The passwords of an encrypted repository: listing its key files, adding
//! one, removing one, and changing the password of the one in use (restic's
//! `key list`, `key add`, `key remove` and `key passwd`).
//!
//! Every key file wraps the one master key under one password (FORMAT.md,
//! "Key files"), so these operations change who can open the repository,
//! never its data: they read and write only objects under `keys/`. A new
//! key file is written as `init` writes one ([`write_key_file`]: the same
//! Argon2id costs, a fresh salt).
//!
//! Safety rules. The key a handle was opened with is never removed through
//! it, nor the last readable key file; a password change stores the new
//! key file and reads it back before it removes the old one, so a crash in
//! between leaves both passwords working, never none. There is no lock:
//! two processes removing two different keys at the same moment, each
//! opened with the key the other removes, could leave none; do not remove
//! keys from two places at once.

use std::sync::RwLock;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::crypto::{KdfParams, MasterKey};
use crate::engine::keys::write_key_file;
use crate::engine::{get_checked, list_ids, poisoned, Engine};
use crate::format::config::{KeyFile, KEYS_PREFIX};
use crate::{Error, Id, Result};

/// One key file of an encrypted repository, as
/// [`Repository::keys`](crate::Repository::keys) lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct KeyInfo {
    /// The key file's id (its object is `keys/<id>`).
    pub id: Id,
    /// When the key was added.
    pub created: DateTime<Utc>,
    /// The host that added it.
    pub hostname: String,
    /// Its Argon2id costs.
    pub kdf: KdfParams,
    /// Whether this is the key the repository handle was opened with.
    pub current: bool,
}

/// Which key file opened a repository handle, shared by the handle's
/// clones: a password change makes the new key file the current one.
#[derive(Debug)]
pub(crate) struct OpenedKey {
    /// The config object as read at opening: every key file binds its
    /// digest, so a new one is made for exactly these bytes.
    config_object: Vec<u8>,
    /// The object key (`keys/<id>`) of the key file in use.
    current: RwLock<String>,
}

impl OpenedKey {
    /// The key file `current` (its object key) opened the repository whose
    /// config object is `config_object`.
    pub(crate) fn new(current: String, config_object: Vec<u8>) -> OpenedKey {
        OpenedKey {
            config_object,
            current: RwLock::new(current),
        }
    }

    fn current(&self) -> Result<String> {
        Ok(self.current.read().map_err(|_| poisoned())?.clone())
    }
}

/// The master key and the opened key of an encrypted repository, or the
/// error saying it has no keys.
fn encrypted<'a>(
    engine: &'a Engine,
    opened: Option<&'a OpenedKey>,
) -> Result<(&'a MasterKey, &'a OpenedKey)> {
    match (engine.key(), opened) {
        (Some(master), Some(opened)) => Ok((master, opened)),
        _ => Err(Error::InvalidArgument(format!(
            "the repository at {} is not encrypted: it has no keys or passwords to manage",
            engine.sink.location()
        ))),
    }
}

fn object_key(id: &Id) -> String {
    format!("{KEYS_PREFIX}{id}")
}

/// Reads and decodes one key file (read again when its check fails).
async fn read_key_file(engine: &Engine, id: &Id) -> Result<KeyFile> {
    let key = object_key(id);
    get_checked(engine.sink.as_ref(), &key, |bytes| {
        KeyFile::from_object(&key, bytes)
    })
    .await
}

/// Every readable key file, oldest first; see
/// [`Repository::keys`](crate::Repository::keys).
pub(crate) async fn list(engine: &Engine, opened: Option<&OpenedKey>) -> Result<Vec<KeyInfo>> {
    let (_, opened) = encrypted(engine, opened)?;
    let current = opened.current()?;
    let mut keys = Vec::new();
    for id in list_ids(engine.sink.as_ref(), KEYS_PREFIX).await? {
        match read_key_file(engine, &id).await {
            Ok(file) => keys.push(KeyInfo {
                id,
                created: file.created,
                hostname: file.hostname,
                kdf: file.params,
                current: object_key(&id) == current,
            }),
            // Removed by another process since the listing.
            Err(Error::NotFound { .. }) => {}
            Err(error @ Error::Corrupt { .. }) => {
                tracing::warn!(%error, "damaged key file left out (run verify)");
            }
            Err(error) => return Err(error),
        }
    }
    keys.sort_by_key(|key| (key.created, key.id));
    Ok(keys)
}

/// Adds a key file for `password`; see
/// [`Repository::add_key`](crate::Repository::add_key).
pub(crate) async fn add(
    engine: &Engine,
    opened: Option<&OpenedKey>,
    password: &[u8],
) -> Result<Id> {
    let (master, opened) = encrypted(engine, opened)?;
    if password.is_empty() {
        return Err(Error::InvalidArgument("the new password is empty".into()));
    }
    let id = write_key_file(
        engine.sink.as_ref(),
        master,
        password,
        KdfParams::default(),
        &opened.config_object,
    )
    .await?;
    // Read back before anyone relies on it: the stored bytes must be the
    // ones just made (their hash is the name) and decode as a key file.
    let key = object_key(&id);
    let stored = engine.get_named(&key, &id).await?;
    KeyFile::from_object(&key, &stored)?;
    Ok(id)
}

/// Removes the key file `selector` names; see
/// [`Repository::remove_key`](crate::Repository::remove_key).
pub(crate) async fn remove(
    engine: &Engine,
    opened: Option<&OpenedKey>,
    selector: &str,
) -> Result<Id> {
    let (_, opened) = encrypted(engine, opened)?;
    let ids = list_ids(engine.sink.as_ref(), KEYS_PREFIX).await?;
    let id = select(&ids, selector)?;
    let current = opened.current()?;
    if object_key(&id) == current {
        return Err(Error::InvalidArgument(format!(
            "key {} is the one this repository was opened with: refusing to remove it \
             (open the repository with another key's password to remove this one, or change \
             this key's password instead)",
            id.short()
        )));
    }
    // Only a key file that decodes can open the repository: count those
    // that stay.
    let mut remaining = 0;
    for other in ids.iter().filter(|other| **other != id) {
        match read_key_file(engine, other).await {
            Ok(_) => remaining += 1,
            Err(Error::NotFound { .. } | Error::Corrupt { .. }) => {}
            Err(error) => return Err(error),
        }
    }
    if remaining == 0 {
        return Err(Error::InvalidArgument(format!(
            "key {} is the repository's last readable key: refusing to remove it, since \
             nothing could open the repository afterwards",
            id.short()
        )));
    }
    engine.sink.delete(&object_key(&id)).await?;
    Ok(id)
}

/// Replaces the current key with one for `password`; see
/// [`Repository::change_password`](crate::Repository::change_password).
pub(crate) async fn change_password(
    engine: &Engine,
    opened: Option<&OpenedKey>,
    password: &[u8],
) -> Result<Id> {
    let (_, opened_key) = encrypted(engine, opened)?;
    let old = opened_key.current()?;
    // The new key is stored and read back first: from here on both
    // passwords open the repository, until the old key file is deleted.
    let id = add(engine, opened, password).await?;
    *opened_key.current.write().map_err(|_| poisoned())? = object_key(&id);
    engine.sink.delete(&old).await?;
    Ok(id)
}

/// The one key id in `ids` that starts with `selector` (hex, any case).
fn select(ids: &[Id], selector: &str) -> Result<Id> {
    if selector.is_empty() || !selector.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(Error::InvalidArgument(format!(
            "{selector:?} is not a key id: give the id, or a unique prefix of it, as `key list` \
             shows it"
        )));
    }
    let prefix = selector.to_ascii_lowercase();
    let matches: Vec<&Id> = ids
        .iter()
        .filter(|id| id.to_hex().starts_with(&prefix))
        .collect();
    match matches.as_slice() {
        [id] => Ok(**id),
        [] => Err(Error::InvalidArgument(format!(
            "no key of the repository has an id starting with {selector:?}"
        ))),
        many => Err(Error::InvalidArgument(format!(
            "key id prefix {selector:?} is ambiguous: it matches {} keys",
            many.len()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_selected_by_a_unique_prefix_only() {
        let a: Id = format!("ab{}", "0".repeat(62)).parse().unwrap();
        let b: Id = format!("ac{}", "0".repeat(62)).parse().unwrap();
        let ids = [a, b];
        assert_eq!(select(&ids, "AB").unwrap(), a);
        assert_eq!(select(&ids, &b.to_hex()).unwrap(), b);
        for refused in ["a", "", "zz", "ad"] {
            assert!(
                matches!(select(&ids, refused), Err(Error::InvalidArgument(_))),
                "{refused:?}"
            );
        }
    }
}
