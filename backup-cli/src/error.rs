//! How a failed command's error is shown: the error with its chain of
//! causes, and for the errors a flag or another command fixes, a hint
//! naming it (the library's messages speak of the library, not of
//! `backupctl`'s options).

use backup_core::Error;

/// The error with its chain of causes and, where one helps, a hint.
pub(crate) fn describe(error: &Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    if let Some(hint) = hint(error) {
        // Written so that a message already carrying the hint is shown as
        // it is.
        if !text.contains(hint.trim_start_matches([' ', ':', '('])) {
            text.push_str(hint);
        }
    }
    text
}

/// What the user of `backupctl` can do about `error`, appended to its
/// message.
fn hint(error: &Error) -> Option<&'static str> {
    match error {
        Error::PasswordRequired => Some(" (--password-file or BACKUP_PASSWORD)"),
        Error::NoRepository { .. } => Some(": run `backupctl init` first"),
        Error::Unauthenticated { .. } => {
            Some(" (check the credentials: the key file, or the AWS_/AZURE_/GOOGLE_ variables)")
        }
        Error::PermissionDenied { .. } => {
            Some(" (check the credentials and what they are allowed to do on this repository)")
        }
        Error::InvalidArgument(message) if message.contains("BACKUP_WRITER") => {
            Some(" (or give --writer)")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::describe;
    use backup_core::Error;

    #[test]
    fn a_missing_password_names_the_option_and_the_variable_once() {
        let text = describe(&Error::PasswordRequired);
        assert!(
            text.starts_with("the repository is encrypted: a password is required"),
            "{text}"
        );
        assert!(
            text.ends_with(" (--password-file or BACKUP_PASSWORD)"),
            "{text}"
        );
        assert_eq!(text.matches("--password-file").count(), 1, "{text}");
    }

    #[test]
    fn a_missing_repository_points_to_init_once() {
        let text = describe(&Error::NoRepository {
            location: "/backups/repo".into(),
        });
        assert!(
            text.starts_with("no repository found at /backups/repo"),
            "{text}"
        );
        assert!(text.ends_with(": run `backupctl init` first"), "{text}");
        assert_eq!(text.matches("backupctl init").count(), 1, "{text}");
    }

    #[test]
    fn causes_are_appended_unless_already_shown() {
        let error = Error::io(
            "cannot read the password file",
            "/nowhere",
            std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        );
        let text = describe(&error);
        assert_eq!(text.matches("gone").count(), 1, "{text}");
        assert!(text.starts_with("cannot read the password file"), "{text}");
    }
}
