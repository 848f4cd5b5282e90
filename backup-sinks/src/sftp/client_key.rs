//! Finding, reading and decrypting the client's private key.

use std::path::{Path, PathBuf};

use backup_core::{Error, Result};
use russh::keys::PrivateKey;

use super::{SftpOptions, Zeroizing};

/// The user's home directory.
pub(super) fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|home| !home.is_empty())
        .map(PathBuf::from)
}

/// Finds the private key file to use.
pub(super) fn private_key_path(options: &SftpOptions) -> Result<PathBuf> {
    if let Some(path) = &options.private_key {
        return Ok(path.clone());
    }
    let home = home_dir().ok_or_else(|| {
        Error::InvalidArgument(
            "no private key given for the SFTP connection, and $HOME is not set to look for \
             ~/.ssh/id_ed25519 or ~/.ssh/id_rsa"
                .to_owned(),
        )
    })?;
    let candidates = [home.join(".ssh/id_ed25519"), home.join(".ssh/id_rsa")];
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "no private key given for the SFTP connection, and neither {} nor {} exists",
                candidates[0].display(),
                candidates[1].display()
            ))
        })
}

/// Reads and decrypts the private key.
pub(super) async fn load_private_key(
    path: &Path,
    passphrase: Option<Zeroizing<String>>,
) -> Result<PrivateKey> {
    let owned = path.to_owned();
    let loaded = tokio::task::spawn_blocking(move || {
        russh::keys::load_secret_key(&owned, passphrase.as_ref().map(|p| p.as_str()))
            .map_err(|error| (error, passphrase.is_some()))
    })
    .await
    .map_err(|error| {
        Error::InvalidArgument(format!(
            "loading the SSH private key {}: {error}",
            path.display()
        ))
    })?;
    loaded.map_err(|(error, had_passphrase)| {
        let shown = path.display();
        match error {
            russh::keys::Error::IO(io) => Error::io("reading SSH private key", path, io),
            russh::keys::Error::KeyIsEncrypted => Error::InvalidArgument(format!(
                "the SSH private key {shown} is protected by a passphrase, and none was given"
            )),
            other if had_passphrase => Error::InvalidArgument(format!(
                "cannot decrypt the SSH private key {shown}: wrong passphrase or unsupported key \
                 format ({other})"
            )),
            other => Error::InvalidArgument(format!(
                "cannot read the SSH private key {shown}: {other} (expected an ed25519 or RSA key \
                 in OpenSSH format, as written by ssh-keygen)"
            )),
        }
    })
}
