//! The repository password: from `--password-file` or the environment.

use backup_core::Error;
pub(crate) use backup_sinks::read_secret_file;
use zeroize::Zeroizing;

use crate::cli::Common;

/// The repository password: the content of `--password-file` without its
/// trailing newline, else `BACKUP_PASSWORD`, else none.
pub(crate) fn password(common: &Common) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
    if let Some(path) = &common.password_file {
        return Ok(Some(Zeroizing::new(backup_sinks::read_password_file(
            path,
        )?)));
    }
    Ok(std::env::var_os(backup_sinks::location::env::PASSWORD)
        .map(|value| Zeroizing::new(value.into_encoded_bytes())))
}
