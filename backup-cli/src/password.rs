//! The repository password: from `--password-file` or the environment.

use backup_core::Error;
pub(crate) use backup_sinks::read_secret_file;
use zeroize::Zeroizing;

use crate::cli::Common;

/// The repository password: the content of `--password-file` without its
/// trailing newline, else `BACKUP_PASSWORD`, else none.
pub(crate) fn password(common: &Common) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
    Ok(backup_sinks::read_password(common.password_file.as_deref())?.map(Zeroizing::new))
}
