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
