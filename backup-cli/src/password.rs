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

/// The variable holding the password of `copy`'s source repository when no
/// password file is given.
pub(crate) const FROM_PASSWORD: &str = "BACKUP_FROM_PASSWORD";

/// The password of `copy`'s source repository: the content of
/// `--from-password-file` (or `BACKUP_FROM_PASSWORD_FILE`) without its
/// trailing newline, else `BACKUP_FROM_PASSWORD`, else none; as the
/// destination's comes from `--password-file` or `BACKUP_PASSWORD`.
pub(crate) fn from_password(
    file: Option<&std::path::Path>,
) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
    password_from(file, FROM_PASSWORD)
}

/// The content of `file` without its trailing newline when one is given,
/// else the environment variable `variable`, else none.
fn password_from(
    file: Option<&std::path::Path>,
    variable: &str,
) -> Result<Option<Zeroizing<Vec<u8>>>, Error> {
    Ok(match file {
        Some(file) => Some(Zeroizing::new(backup_sinks::read_password_file(file)?)),
        None => std::env::var_os(variable).map(|value| Zeroizing::new(value.into_encoded_bytes())),
    })
}

/// The variable holding the new password of `key add` and `key passwd`
/// when no new password file is given.
pub(crate) const NEW_PASSWORD: &str = "BACKUP_NEW_PASSWORD";

/// The new password of `key add` and `key passwd`: the content of
/// `--new-password-file` (or `BACKUP_NEW_PASSWORD_FILE`) without its
/// trailing newline, else `BACKUP_NEW_PASSWORD`; never a command-line
/// argument, which other users of the host could read.
///
/// # Errors
///
/// [`Error::InvalidArgument`] when neither gives one, or it is empty.
pub(crate) fn new_password(file: Option<&std::path::Path>) -> Result<Zeroizing<Vec<u8>>, Error> {
    password_from(file, NEW_PASSWORD)?
        .filter(|password| !password.is_empty())
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "no new password given: use --new-password-file (or BACKUP_NEW_PASSWORD_FILE) \
                 or {NEW_PASSWORD}"
            ))
        })
}
