//! Checking the server's host key: against a pinned fingerprint or the
//! entries of a `known_hosts` file, on every connection. There is no
//! trust-on-first-use.

use std::path::PathBuf;

use backup_core::{Error, Result};
use russh::client;
use russh::keys::{Algorithm, HashAlg, PublicKey};

use super::DEFAULT_PORT;

/// How the server's host key is checked.
#[derive(Debug, Clone)]
pub(super) enum HostKeyPolicy {
    /// Against a pinned `SHA256:...` fingerprint.
    Pinned(String),
    /// Against the entries of a known_hosts file.
    KnownHosts(PathBuf),
}

impl HostKeyPolicy {
    /// Host key algorithms in the order to offer them: those of the keys
    /// known for the host first, as OpenSSH's client does, so that a server
    /// with several host keys presents one we can check.
    pub(super) fn preferred_algorithms(&self, host: &str, port: u16) -> Vec<Algorithm> {
        let defaults = russh::Preferred::DEFAULT.key;
        let HostKeyPolicy::KnownHosts(path) = self else {
            return defaults.to_vec();
        };
        let known: Vec<Algorithm> =
            russh::keys::known_hosts::known_host_keys_path(host, port, path)
                .unwrap_or_default()
                .into_iter()
                .map(|(_, key)| key.algorithm())
                .collect();
        let is_known = |algorithm: &Algorithm| {
            known.iter().any(|known| {
                known == algorithm
                    || (matches!(known, Algorithm::Rsa { .. })
                        && matches!(algorithm, Algorithm::Rsa { .. }))
            })
        };
        let (first, rest): (Vec<Algorithm>, Vec<Algorithm>) =
            defaults.iter().cloned().partition(is_known);
        first.into_iter().chain(rest).collect()
    }

    /// Checks `key` presented by `host:port`; the error is the message for
    /// the user.
    fn verify(&self, host: &str, port: u16, key: &PublicKey) -> std::result::Result<(), String> {
        let presented = key.fingerprint(HashAlg::Sha256).to_string();
        let algorithm = key.algorithm();
        let host_port = if port == DEFAULT_PORT {
            host.to_owned()
        } else {
            format!("[{host}]:{port}")
        };
        match self {
            HostKeyPolicy::Pinned(expected) => {
                if *expected == presented {
                    Ok(())
                } else {
                    Err(format!(
                        "HOST KEY MISMATCH for {host_port}: expected the pinned fingerprint {expected}, \
                         but the server presented {algorithm} key {presented}. Someone may be \
                         intercepting the connection; if the server's key was changed on purpose, \
                         pin the new fingerprint"
                    ))
                }
            }
            HostKeyPolicy::KnownHosts(path) => {
                let recorded = russh::keys::known_hosts::known_host_keys_path(host, port, path)
                    .map_err(|e| format!("cannot read known_hosts file {}: {e}", path.display()))?;
                if recorded
                    .iter()
                    .any(|(_, known)| known.key_data() == key.key_data())
                {
                    return Ok(());
                }
                if recorded.is_empty() {
                    let missing = if path.exists() {
                        ""
                    } else {
                        " (the file does not exist)"
                    };
                    let keyscan_port = if port == DEFAULT_PORT {
                        String::new()
                    } else {
                        format!("-p {port} ")
                    };
                    return Err(format!(
                        "host {host_port} is not in known_hosts file {}{missing}; the server presented \
                         {algorithm} key {presented}. Check this fingerprint with the server's \
                         administrator (ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub on the server), \
                         then add the key: ssh-keyscan {keyscan_port}{host} >> {}",
                        path.display(),
                        path.display()
                    ));
                }
                let expected = recorded
                    .iter()
                    .map(|(_, known)| {
                        format!(
                            "{} ({} key)",
                            known.fingerprint(HashAlg::Sha256),
                            known.algorithm()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join(", ");
                Err(format!(
                    "HOST KEY MISMATCH for {host_port}: known_hosts file {} expects {expected}, but \
                     the server presented {algorithm} key {presented}. Someone may be intercepting \
                     the connection; if the server's key was changed on purpose, remove the old \
                     entry (ssh-keygen -R '{host_port}' -f {}) and add the new one",
                    path.display(),
                    path.display()
                ))
            }
        }
    }
}

/// The russh event handler: checks the host key.
pub(super) struct ClientHandler {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) host_keys: HostKeyPolicy,
}

/// Errors of the SSH connection setup.
#[derive(Debug)]
pub(super) enum HandlerError {
    /// A protocol or transport error from russh.
    Ssh(russh::Error),
    /// The host key was refused; the message says why.
    HostKey(String),
}

impl From<russh::Error> for HandlerError {
    fn from(error: russh::Error) -> Self {
        HandlerError::Ssh(error)
    }
}

impl client::Handler for ClientHandler {
    type Error = HandlerError;

    async fn check_server_key(
        &mut self,
        server_public_key: &russh::keys::PublicKeyOrCertificate,
    ) -> std::result::Result<bool, Self::Error> {
        let key = match server_public_key {
            russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } => key.clone(),
            // Certificate authorities are not supported: check the
            // certified key itself, as a plain key.
            russh::keys::PublicKeyOrCertificate::Certificate(certificate) => {
                PublicKey::from(certificate.public_key().clone())
            }
        };
        self.host_keys
            .verify(&self.host, self.port, &key)
            .map(|()| true)
            .map_err(HandlerError::HostKey)
    }
}

/// Checks that a pinned fingerprint looks like `ssh-keygen -lf` output.
pub(super) fn validate_fingerprint(fingerprint: &str) -> Result<String> {
    let trimmed = fingerprint.trim();
    let valid = trimmed.strip_prefix("SHA256:").is_some_and(|digest| {
        // 32 bytes are 43 characters of unpadded base64.
        let digest = digest.trim_end_matches('=');
        digest.len() == 43
            && digest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    });
    if !valid {
        return Err(Error::InvalidArgument(format!(
            "invalid host key fingerprint {fingerprint:?}: expected SHA256: followed by 43 \
             base64 characters, as `ssh-keygen -lf <host key>.pub` prints"
        )));
    }
    Ok(trimmed.trim_end_matches('=').to_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints() {
        let good = "SHA256:uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s";
        assert_eq!(validate_fingerprint(good).unwrap(), good);
        assert_eq!(validate_fingerprint(&format!(" {good}= ")).unwrap(), good);
        for bad in [
            "uNiVztksCsDhcc0u9e8BujQXVUpKZIDTMczCvj3tD2s",
            "MD5:16:27:ac:a5:76:28:2d:36:63:1b:56:4d:eb:df:a6:48",
            "SHA256:short",
        ] {
            assert!(validate_fingerprint(bad).is_err(), "{bad}");
        }
    }
}
