//! Macros shared by the operations' option types.

/// The two setters every long operation's options have: `with_progress` and
/// `with_cancellation`, writing the fields `progress` and `cancellation`.
/// `$what` names the operation in their docs ("the backup").
macro_rules! progress_and_cancellation_setters {
    ($options:ty, $what:literal) => {
        impl $options {
            #[doc = concat!("Sends ", $what, "'s progress events to `progress`.")]
            pub fn with_progress(mut self, progress: $crate::ProgressSink) -> Self {
                self.progress = Some(progress);
                self
            }

            #[doc = concat!("Stops ", $what, " when `token` is cancelled.")]
            pub fn with_cancellation(mut self, token: $crate::CancellationToken) -> Self {
                self.cancellation = Some(token);
                self
            }
        }
    };
}

/// Implements `with_backups` and `with_set` on an options struct with the
/// fields `backups: Vec<String>` and `set: Option<String>`, which name the
/// backups an operation works on (as
/// [`Repository::select_backups`](crate::Repository::select_backups) takes
/// them).
macro_rules! backup_selection_setters {
    ($options:ty, $what:literal) => {
        impl $options {
            #[doc = concat!("Makes ", $what, " take these backups (`latest` or id prefixes) instead of all.")]
            pub fn with_backups<I, S>(mut self, selectors: I) -> Self
            where
                I: IntoIterator<Item = S>,
                S: Into<String>,
            {
                self.backups = selectors.into_iter().map(Into::into).collect();
                self
            }

            #[doc = concat!("Makes ", $what, " take only backups of `set` (with `latest`: its newest completed one).")]
            pub fn with_set(mut self, set: impl Into<String>) -> Self {
                self.set = Some(set.into());
                self
            }
        }
    };
}
