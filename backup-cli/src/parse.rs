//! Parsing the option values several commands share: durations and
//! percentages.

use backup_core::Error;

/// A `--grace` duration such as `1h` or `0s`.
pub(crate) fn parse_grace(text: &str) -> Result<chrono::Duration, Error> {
    let duration = backup_core::schedule::parse_duration(text)
        .map_err(|error| Error::InvalidArgument(format!("--grace {text:?}: {error}")))?;
    chrono::Duration::from_std(duration)
        .map_err(|_| Error::InvalidArgument(format!("--grace {text:?} is too long")))
}

/// A percentage from 0 to 100 (`30%` or `30`) as a share from 0 to 1, for
/// the option `--{flag}`.
pub(crate) fn parse_percent(text: &str, flag: &str) -> Result<f64, Error> {
    text.trim_end_matches('%')
        .parse::<f64>()
        .ok()
        .filter(|p| (0.0..=100.0).contains(p))
        .map(|p| p / 100.0)
        .ok_or_else(|| {
            Error::InvalidArgument(format!("--{flag} {text:?}: give a percentage like 30%"))
        })
}

#[cfg(test)]
mod tests {
    use super::{parse_grace, parse_percent};

    #[test]
    fn grace_reads_the_schedule_duration_grammar() {
        assert_eq!(parse_grace("1h").unwrap(), chrono::Duration::hours(1));
        assert_eq!(parse_grace("0s").unwrap(), chrono::Duration::zero());
        let message = parse_grace("soon").unwrap_err().to_string();
        assert!(message.contains("--grace \"soon\""), "{message}");
    }

    #[test]
    fn percent_accepts_0_to_100_with_or_without_the_sign() {
        assert_eq!(parse_percent("30%", "repack-unused").unwrap(), 0.3);
        assert_eq!(parse_percent("100", "repack-unused").unwrap(), 1.0);
        assert_eq!(parse_percent("0%", "repack-unused").unwrap(), 0.0);
        for bad in ["101%", "-1%", "half"] {
            let message = parse_percent(bad, "repack-unused").unwrap_err().to_string();
            assert!(message.contains("--repack-unused"), "{message}");
        }
    }
}
