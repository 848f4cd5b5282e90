//! The repository config (`config`) and key files (`keys/<id>`).
//!
//! The config is JSON in an unencrypted envelope of kind `Config`, so a reader
//! learns the format version and whether a password is needed before it has
//! one. In an encrypted repository each key file holds the master key wrapped
//! with an Argon2id-derived key, together with the SHA-256 of the config
//! object, which makes any change to the config detectable once the key is
//! opened.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::chunker::ChunkerParams;
use crate::crypto::{self, KdfParams, MasterKey, MASTER_KEY_LEN};
use crate::format::envelope::{self, ObjectKind};
use crate::{Error, Id, Result};

/// Key of the config object.
pub const CONFIG_KEY: &str = "config";
/// Prefix of key files.
pub const KEYS_PREFIX: &str = "keys/";
/// The only encryption scheme of format version 1.
pub const ENCRYPTION_SCHEME: &str = "xchacha20poly1305-argon2id";

/// Settings fixed when a repository is created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RepoConfig {
    /// Format version of the repository.
    pub version: u32,
    /// Random repository id.
    pub id: Id,
    /// When it was created.
    pub created: DateTime<Utc>,
    /// Chunk sizes for file content.
    pub chunker: ChunkerParams,
    /// Chunk sizes for directory metadata.
    pub tree_chunker: ChunkerParams,
    /// zstd level for chunks (0: no compression).
    pub compression_level: i32,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// `null`, or the encryption scheme.
    pub encryption: Option<String>,
}

impl RepoConfig {
    /// A new config with default settings.
    pub fn new(encrypted: bool) -> RepoConfig {
        RepoConfig {
            version: crate::format::FORMAT_VERSION,
            id: Id(crypto::random_bytes()),
            created: Utc::now(),
            chunker: ChunkerParams::default(),
            tree_chunker: ChunkerParams::for_trees(),
            compression_level: 3,
            pack_size: 16 * 1024 * 1024,
            encryption: encrypted.then(|| ENCRYPTION_SCHEME.to_string()),
        }
    }

    /// Encodes the stored object.
    pub fn to_object(&self) -> Result<Vec<u8>> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|error| Error::InvalidArgument(format!("encoding config: {error}")))?;
        Ok(envelope::seal(ObjectKind::Config, &json, false, None))
    }

    /// Decodes and validates the stored object.
    ///
    /// # Errors
    ///
    /// [`Error::UnsupportedVersion`] for a version this build does not read;
    /// [`Error::Corrupt`] for damage or invalid settings.
    pub fn from_object(bytes: &[u8]) -> Result<RepoConfig> {
        let json = envelope::open(CONFIG_KEY, bytes, ObjectKind::Config, None)?;
        let version = serde_json::from_slice::<serde_json::Value>(&json)
            .ok()
            .and_then(|value| value.get("version").and_then(|v| v.as_u64()));
        if let Some(version) = version {
            let version = u32::try_from(version).unwrap_or(u32::MAX);
            if !(crate::format::MIN_FORMAT_VERSION..=crate::format::FORMAT_VERSION)
                .contains(&version)
            {
                return Err(Error::UnsupportedVersion {
                    key: CONFIG_KEY.into(),
                    found: version,
                    min_supported: crate::format::MIN_FORMAT_VERSION,
                    max_supported: crate::format::FORMAT_VERSION,
                });
            }
        }
        let config: RepoConfig = serde_json::from_slice(&json)
            .map_err(|error| Error::corrupt(CONFIG_KEY, 8, format!("invalid config: {error}")))?;
        let invalid = |detail: String| Error::corrupt(CONFIG_KEY, 8, detail);
        config
            .chunker
            .validate()
            .map_err(|e| invalid(e.to_string()))?;
        config
            .tree_chunker
            .validate()
            .map_err(|e| invalid(e.to_string()))?;
        if !(0..=22).contains(&config.compression_level) {
            return Err(invalid(format!(
                "compression level {} out of range",
                config.compression_level
            )));
        }
        if !(1024 * 1024..=512 * 1024 * 1024).contains(&config.pack_size) {
            return Err(invalid(format!(
                "pack size {} out of range",
                config.pack_size
            )));
        }
        match config.encryption.as_deref() {
            None | Some(ENCRYPTION_SCHEME) => {}
            Some(other) => return Err(invalid(format!("unknown encryption scheme {other:?}"))),
        }
        Ok(config)
    }
}

/// A stored key file: the master key wrapped by a password-derived key.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyFile {
    /// Always `argon2id`.
    pub kdf: String,
    /// Argon2id costs.
    pub params: KdfParams,
    /// Random salt, hex.
    pub salt: String,
    /// When the key was added.
    pub created: DateTime<Utc>,
    /// Host that added it.
    pub hostname: String,
    /// `nonce || ciphertext || tag` of `master key (72) || config digest (32)`, hex.
    pub data: String,
}

const KEY_WRAP_AAD: &[u8] = b"backup-toolkit key v1";

impl KeyFile {
    /// Wraps `master` under `password`, binding the config object's digest.
    pub fn create(
        master: &MasterKey,
        password: &[u8],
        params: KdfParams,
        config_object: &[u8],
        hostname: String,
    ) -> Result<KeyFile> {
        let salt: [u8; 32] = crypto::random_bytes();
        let kek = params.derive(password, &salt)?;
        let mut secret = master.to_bytes();
        secret.extend_from_slice(&Sha256::digest(config_object));
        Ok(KeyFile {
            kdf: "argon2id".into(),
            params,
            salt: hex::encode(salt),
            created: Utc::now(),
            hostname,
            data: hex::encode(crypto::wrap(&kek, &secret, KEY_WRAP_AAD)),
        })
    }

    /// Encodes the stored object.
    pub fn to_object(&self) -> Result<Vec<u8>> {
        let json = serde_json::to_vec_pretty(self)
            .map_err(|error| Error::InvalidArgument(format!("encoding key file: {error}")))?;
        Ok(envelope::seal(ObjectKind::Key, &json, false, None))
    }

    /// Decodes a stored key file.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] naming `key` when damaged.
    pub fn from_object(key: &str, bytes: &[u8]) -> Result<KeyFile> {
        let json = envelope::open(key, bytes, ObjectKind::Key, None)?;
        let file: KeyFile = serde_json::from_slice(&json)
            .map_err(|error| Error::corrupt(key, 8, format!("invalid key file: {error}")))?;
        if file.kdf != "argon2id" {
            return Err(Error::corrupt(
                key,
                8,
                format!("unknown key derivation {:?}", file.kdf),
            ));
        }
        Ok(file)
    }

    /// Opens the master key with `password` and checks the config digest.
    ///
    /// Returns `Ok(None)` when the password does not open this key.
    ///
    /// # Errors
    ///
    /// [`Error::Corrupt`] when the key opens but the config does not match
    /// the digest it was created with (the config was modified).
    pub fn open(
        &self,
        key_name: &str,
        password: &[u8],
        config_object: &[u8],
    ) -> Result<Option<MasterKey>> {
        let salt =
            hex::decode(&self.salt).map_err(|_| Error::corrupt(key_name, 8, "invalid salt"))?;
        let sealed =
            hex::decode(&self.data).map_err(|_| Error::corrupt(key_name, 8, "invalid key data"))?;
        let kek = self.params.derive(password, &salt)?;
        let Some(secret) = crypto::unwrap(&kek, &sealed, KEY_WRAP_AAD) else {
            return Ok(None);
        };
        let secret: Zeroizing<Vec<u8>> = secret;
        let (master, digest) = secret.split_at(MASTER_KEY_LEN.min(secret.len()));
        let master = MasterKey::from_bytes(master)
            .ok_or_else(|| Error::corrupt(key_name, 8, "invalid master key length"))?;
        if digest != Sha256::digest(config_object).as_slice() {
            return Err(Error::corrupt(
                CONFIG_KEY,
                0,
                "the config does not match the one this repository's key was created with: it was modified",
            ));
        }
        Ok(Some(master))
    }
}
