//! Secrets read from files or the environment: the repository password and
//! the files named by the storage options (SSE-C key, SSH key passphrase).

use std::path::Path;

use backup_core::Error;
use zeroize::Zeroizing;

use crate::cli::Common;

/// The repository password: the content of `--password-file` without its
/// trailing newline, else `BACKUP_PASSWORD`, else none.
pub(crate) fn password(common: &Common) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
    if let Some(path) = &common.password_file {
        let mut bytes = Zeroizing::new(
            std::fs::read(path)
                .map_err(|source| Error::io("cannot read the password file", path, source))?,
        );
        // A trailing newline is not part of the password.
        if bytes.last() == Some(&b'\n') {
            bytes.pop();
            if bytes.last() == Some(&b'\r') {
                bytes.pop();
            }
        }
        return Ok(Some(bytes));
    }
    Ok(std::env::var_os("BACKUP_PASSWORD").map(|value| Zeroizing::new(value.into_encoded_bytes())))
}

/// The text of a secret file without its trailing line ending; `what` says
/// which file in the error.
pub(crate) fn read_secret_file(path: &Path, what: &'static str) -> Result<String, Error> {
    let text = std::fs::read_to_string(path).map_err(|source| Error::io(what, path, source))?;
    Ok(text.trim_end_matches(['\n', '\r']).to_string())
}
