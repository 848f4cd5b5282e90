//! Parsing the option values several commands share: durations,
//! percentages and retention counts.

use backup_core::{CalendarDuration, Error, KeepPolicy};

/// A `--grace` duration such as `1h` or `0s`: an exact duration in the
/// library's one grammar ([`backup_core::parse_duration`]).
pub(crate) fn parse_grace(text: &str) -> Result<chrono::Duration, Error> {
    let duration = backup_core::parse_duration(text)
        .map_err(|error| Error::InvalidArgument(format!("--grace {text:?}: {error}")))?;
    chrono::Duration::from_std(duration)
        .map_err(|_| Error::InvalidArgument(format!("--grace {text:?} is too long")))
}

/// A size such as `500`, `64k`, `100M`, `2G` or `1T` (binary units, as
/// restic reads `--exclude-larger-than`).
pub(crate) fn parse_size(text: &str) -> Result<u64, Error> {
    let bad = || {
        Error::InvalidArgument(format!(
            "size {text:?}: give a number of bytes, optionally followed by k, M, G or T"
        ))
    };
    let trimmed = text.trim();
    let (digits, shift) = match trimmed.chars().last() {
        Some('k' | 'K') => (&trimmed[..trimmed.len() - 1], 10),
        Some('m' | 'M') => (&trimmed[..trimmed.len() - 1], 20),
        Some('g' | 'G') => (&trimmed[..trimmed.len() - 1], 30),
        Some('t' | 'T') => (&trimmed[..trimmed.len() - 1], 40),
        _ => (trimmed, 0),
    };
    let number: u64 = digits.parse().map_err(|_| bad())?;
    number.checked_mul(1u64 << shift).ok_or_else(bad)
}

/// A retention duration such as `30d` or `1y6m` for the option `--{flag}`
/// (the same grammar; `m` is months).
pub(crate) fn parse_calendar(text: &str, flag: &str) -> Result<CalendarDuration, Error> {
    text.parse::<CalendarDuration>()
        .map_err(|error| Error::InvalidArgument(format!("--{flag} {text:?}: {error}")))
}

/// An exact duration in a configuration file: a string in the library's
/// grammar (`5min`, `1h30min`; `m` is refused, being months), or an
/// integer number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ExactDuration(pub(crate) std::time::Duration);

impl<'de> serde::Deserialize<'de> for ExactDuration {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        #[serde(untagged)]
        enum Written {
            Seconds(u64),
            Text(String),
        }
        match Written::deserialize(deserializer)? {
            Written::Seconds(seconds) => Ok(ExactDuration(std::time::Duration::from_secs(seconds))),
            Written::Text(text) => backup_core::parse_duration(&text)
                .map(ExactDuration)
                .map_err(serde::de::Error::custom),
        }
    }
}

/// A retention count, as `forget --keep-last` and the other `--keep-*`
/// counts take it (restic 0.17's grammar): a number of backups, `0` (the
/// rule off), or `unlimited`, also written `-1` ([`KeepPolicy::UNLIMITED`]).
pub(crate) fn parse_keep_count(text: &str) -> Result<i64, String> {
    let trimmed = text.trim();
    if trimmed.eq_ignore_ascii_case("unlimited") {
        return Ok(KeepPolicy::UNLIMITED);
    }
    match trimmed.parse::<i64>() {
        Ok(count) if count >= KeepPolicy::UNLIMITED => Ok(count),
        _ => Err(format!(
            "{text:?} is not a count: give a number of backups, 0 (off), or unlimited (or -1)"
        )),
    }
}

/// A retention count in a configuration file: an integer or a string, in
/// the grammar of [`parse_keep_count`] (`keep_daily = 7`,
/// `keep_monthly = "unlimited"`).
pub(crate) fn deserialize_keep_count<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    struct Count;

    impl serde::de::Visitor<'_> for Count {
        type Value = i64;

        fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            formatter.write_str("a count of backups, 0 (off), or \"unlimited\" (or -1)")
        }

        fn visit_i64<E: serde::de::Error>(self, count: i64) -> Result<i64, E> {
            parse_keep_count(&count.to_string()).map_err(E::custom)
        }

        fn visit_u64<E: serde::de::Error>(self, count: u64) -> Result<i64, E> {
            parse_keep_count(&count.to_string()).map_err(E::custom)
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<i64, E> {
            parse_keep_count(text).map_err(E::custom)
        }
    }

    deserializer.deserialize_any(Count).map(Some)
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
    use super::*;
    use crate::commands::schedule::config::ScheduleConfig;

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

    /// What a duration string means: a calendar span (retention), an exact
    /// span, or refused.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Means {
        /// Accepted only as a calendar span (years or months in it).
        Calendar,
        /// Accepted only as an exact span of this many seconds.
        Exact(u64),
        /// Accepted everywhere, as this many seconds.
        Both(u64),
        /// Refused everywhere.
        Neither,
    }

    /// A schedule file with one job whose `field` (a job key or a
    /// `retention` key) is `text`.
    fn schedule_with(field: &str, text: &str) -> String {
        let (job, retention) = match field.strip_prefix("retention.") {
            Some(key) => (String::new(), format!("{key} = {text:?}")),
            None => (format!("{field} = {text:?}\n"), "keep_last = 1".to_string()),
        };
        format!(
            "[[job]]\nname = \"a\"\ncron = \"0 * * * *\"\nrepository = \"/r\"\n{job}\
             source = {{ type = \"directory\", paths = [\"/d\"] }}\nretention = {{ {retention} }}\n"
        )
    }

    #[test]
    fn a_duration_means_the_same_span_in_every_place_that_parses_one() {
        use Means::*;
        let table = [
            ("1h", Both(3_600)),
            ("36h", Both(129_600)),
            ("2d", Both(172_800)),
            ("1d12h", Both(129_600)),
            ("1m", Calendar),
            ("6m", Calendar),
            ("1y", Calendar),
            ("1y2m3d4h", Calendar),
            ("90min", Exact(5_400)),
            ("1h30min", Exact(5_400)),
            ("30s", Exact(30)),
            ("1w", Exact(604_800)),
            ("250ms", Exact(0)),
            ("90", Neither),
            ("5 mins", Neither),
            ("1.5h", Neither),
            ("-1h", Neither),
            ("", Neither),
        ];
        let start = chrono::DateTime::parse_from_rfc3339("2024-01-31T00:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        for (text, means) in table {
            // Every calendar place: forget's --keep-within, --keep-within-*
            // and --ttl (all through parse_calendar), and the schedule
            // file's retention.keep_within and retention.ttl.
            let mut calendar = vec![parse_calendar(text, "keep-within").ok()];
            for field in ["retention.keep_within", "retention.ttl"] {
                calendar.push(
                    ScheduleConfig::from_toml_str(&schedule_with(field, text))
                        .ok()
                        .map(|config| {
                            let retention = &config.jobs[0].retention;
                            retention.keep_within.or(retention.ttl).expect(field)
                        }),
                );
            }
            // Every exact place: --grace of forget, prune and schedule
            // (all through parse_grace), and the schedule file's jitter and
            // stale_grace.
            let mut exact: Vec<Option<std::time::Duration>> =
                vec![parse_grace(text).ok().map(|grace| grace.to_std().unwrap())];
            for field in ["jitter", "stale_grace"] {
                exact.push(
                    ScheduleConfig::from_toml_str(&schedule_with(field, text))
                        .ok()
                        .map(|config| {
                            let job = &config.jobs[0];
                            job.jitter.or(job.stale_grace).expect(field).0
                        }),
                );
            }
            let calendar_ok = matches!(means, Calendar | Both(_));
            let exact_seconds = match means {
                Exact(seconds) | Both(seconds) => Some(seconds),
                _ => None,
            };
            for (place, parsed) in calendar.iter().enumerate() {
                assert_eq!(
                    parsed.is_some(),
                    calendar_ok,
                    "{text:?} at calendar place {place}"
                );
            }
            assert!(
                calendar.windows(2).all(|pair| pair[0] == pair[1]),
                "{text:?}: {calendar:?}"
            );
            for (place, parsed) in exact.iter().enumerate() {
                assert_eq!(
                    parsed.map(|duration| duration.as_secs()),
                    exact_seconds,
                    "{text:?} at exact place {place}"
                );
            }
            // Where both accept it, it is one span.
            if let (Some(Some(span)), Some(Some(duration))) = (calendar.first(), exact.first()) {
                assert_eq!(
                    span.after(start),
                    Some(start + chrono::Duration::from_std(*duration).unwrap()),
                    "{text:?}"
                );
            }
        }
        // `m` is never minutes: where exact spans are read, the error says
        // what to write instead.
        let message = parse_grace("5m").unwrap_err().to_string();
        assert!(message.contains("write min for minutes"), "{message}");
    }

    #[test]
    fn a_keep_count_means_the_same_on_the_command_line_and_in_a_schedule_file() {
        let table = [
            ("7", Some(7)),
            ("0", Some(0)),
            ("unlimited", Some(KeepPolicy::UNLIMITED)),
            ("-1", Some(KeepPolicy::UNLIMITED)),
            ("many", None),
            ("-2", None),
            ("1.5", None),
            ("", None),
        ];
        let from_file = |value: &str| {
            let text = format!(
                "[[job]]\nname = \"a\"\ncron = \"0 * * * *\"\nrepository = \"/r\"\n\
                 source = {{ type = \"directory\", paths = [\"/d\"] }}\n\
                 retention = {{ keep_daily = {value} }}\n"
            );
            ScheduleConfig::from_toml_str(&text)
                .map(|config| config.jobs[0].retention.keep_policy().keep_daily)
                .map_err(|error| error.to_string())
        };
        for (text, count) in table {
            // forget's --keep-* options (their value parser).
            assert_eq!(parse_keep_count(text).ok(), count, "{text:?}");
            // The schedule file: as a string, and as a TOML number where
            // it is one.
            assert_eq!(
                from_file(&format!("{text:?}")).ok().flatten(),
                count,
                "{text:?}"
            );
            if text.parse::<f64>().is_ok() {
                assert_eq!(from_file(text).ok().flatten(), count, "{text}");
            }
        }
        // The refusals say what a count is.
        let message = parse_keep_count("many").unwrap_err();
        assert!(
            message.contains("\"many\"") && message.contains("unlimited"),
            "{message}"
        );
        let message = from_file("\"many\"").unwrap_err();
        assert!(
            message.contains("many") && message.contains("unlimited"),
            "{message}"
        );
        let message = from_file("true").unwrap_err();
        assert!(message.contains("unlimited"), "{message}");
    }
}
