//! Opening the repository key from the key files, and writing a key file.

use std::sync::Arc;

use bytes::Bytes;
use sha2::{Digest, Sha256};

use crate::crypto::{KdfParams, MasterKey};
use crate::engine::*;
use crate::format::config::{KeyFile, CONFIG_KEY, KEYS_PREFIX};
use crate::sink::{PutMode, Sink};
use crate::{Error, Id, Result};

/// The key derivation keeps the cores busy for tens of milliseconds and
/// the storage idle: meanwhile, in a task of its own, hint the sink that
/// the index objects (read next, by [`Repository::open`]) and the backup
/// manifests (read by most commands after it) are wanted, so that their
/// reads find them fetched. Nothing when not on a Tokio runtime.
pub(crate) fn warm_while_deriving(sink: &Arc<dyn Sink>) {
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let sink = Arc::clone(sink);
        runtime.spawn(async move {
            sink.prefetch(INDEX_PREFIX).await;
            sink.prefetch(MANIFEST_PREFIX).await;
        });
    }
}

/// Runs `work` (a key derivation: Argon2id keeps a core busy for tens of
/// milliseconds) on a blocking thread, so that the runtime worker that
/// awaits it goes on running the embedding service's other tasks. Inline
/// when not on a Tokio runtime.
pub(crate) async fn off_runtime<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    if tokio::runtime::Handle::try_current().is_err() {
        return work();
    }
    match tokio::task::spawn_blocking(work).await {
        Ok(outcome) => outcome,
        Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
        Err(_) => Err(Error::InvalidArgument(
            "the runtime shut down during key derivation".into(),
        )),
    }
}

/// Wraps `master` under `password` in a new key file (Argon2id with `kdf`
/// and a fresh salt, derived off the runtime), binding the digest of
/// `config_object`, and stores it create-only under `keys/<SHA-256 of the
/// object>`. Returns its id. What `init` and `key add` both write.
pub(crate) async fn write_key_file(
    sink: &dyn Sink,
    master: &MasterKey,
    password: &[u8],
    kdf: KdfParams,
    config_object: &[u8],
) -> Result<Id> {
    let file = {
        let (master, password, config_object) = (
            master.clone(),
            zeroize::Zeroizing::new(password.to_vec()),
            config_object.to_vec(),
        );
        off_runtime(move || KeyFile::create(&master, &password, kdf, &config_object, hostname()))
            .await?
    };
    let object = file.to_object()?;
    let id = Id(Sha256::digest(&object).into());
    sink.put(
        &format!("{KEYS_PREFIX}{id}"),
        Bytes::from(object),
        PutMode::Create,
    )
    .await?;
    Ok(id)
}

/// Tries the key files with `password`; returns the key (`keys/<id>`) of
/// the first that opens, with the master key it holds.
pub(crate) async fn open_key(
    sink: &dyn Sink,
    password: &[u8],
    config_object: &[u8],
) -> Result<(String, MasterKey)> {
    let keys = sink.list(KEYS_PREFIX).await?;
    let mut damaged = None;
    for meta in keys {
        let file = match get_checked(sink, &meta.key, |bytes| {
            KeyFile::from_object(&meta.key, bytes)
        })
        .await
        {
            Ok(file) => file,
            Err(error) => {
                damaged = Some(error);
                continue;
            }
        };
        let opened = {
            let (key, password, config_object) = (
                meta.key.clone(),
                zeroize::Zeroizing::new(password.to_vec()),
                config_object.to_vec(),
            );
            off_runtime(move || file.open(&key, &password, &config_object)).await
        };
        match opened {
            Ok(Some(master)) => return Ok((meta.key, master)),
            Ok(None) => {}
            // The key opened, but the config is not the one it was made
            // for: that is tampering, not a wrong password.
            Err(error @ Error::Corrupt { .. }) if error_key(&error) == Some(CONFIG_KEY) => {
                return Err(error)
            }
            Err(error) => damaged = Some(error),
        }
    }
    Err(damaged.unwrap_or(Error::WrongPassword))
}
