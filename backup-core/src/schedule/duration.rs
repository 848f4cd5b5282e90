//! Human-written durations: `30s`, `5m`, `2h`, `1d`, `1h30m`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ScheduleError;

/// Units understood by [`parse_duration`], longest suffix first so `ms` is
/// not read as `m`.
const UNITS: &[(&str, u64)] = &[
    ("ms", 0),
    ("s", 1),
    ("m", 60),
    ("h", 3_600),
    ("d", 86_400),
    ("w", 604_800),
];

/// Parses a duration such as `30s`, `5m`, `2h`, `1d`, `2w`, `250ms` or a
/// sum of them such as `1h30m`. A bare number is seconds.
///
/// Units: `ms`, `s`, `m` (minutes), `h`, `d` (24 hours), `w` (7 days).
/// Months and years are not accepted because their length varies; write
/// `30d` or `365d`.
pub fn parse_duration(text: &str) -> Result<Duration, ScheduleError> {
    let error = |reason: String| ScheduleError::InvalidDuration {
        value: text.to_owned(),
        reason,
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(error(
            "empty; write for example \"30s\", \"5m\" or \"2h\"".into(),
        ));
    }
    if trimmed.bytes().all(|b| b.is_ascii_digit()) {
        let seconds = trimmed
            .parse::<u64>()
            .map_err(|_| error("number too large".into()))?;
        return Ok(Duration::from_secs(seconds));
    }
    let mut rest = trimmed;
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(error(format!(
                "expected a number at {rest:?}; write for example \"1h30m\""
            )));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| error("number too large".into()))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = rest[unit_len..].trim_start();
        let part = match UNITS.iter().find(|(name, _)| *name == unit) {
            Some((_, 0)) => Some(Duration::from_millis(number)),
            Some((_, seconds)) => number.checked_mul(*seconds).map(Duration::from_secs),
            None if unit.is_empty() => {
                return Err(error(format!(
                    "missing unit after {number}; use ms, s, m, h, d or w"
                )))
            }
            None => {
                return Err(error(format!(
                    "unknown unit {unit:?}; use ms, s, m (minutes), h, d or w"
                )))
            }
        };
        total = part
            .and_then(|part| total.checked_add(part))
            .ok_or_else(|| error("too large".into()))?;
    }
    Ok(total)
}

/// A [`Duration`] written and read as text such as `5m` or `1h30m` (see
/// [`parse_duration`]). In configuration files it also accepts a bare
/// integer number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The wrapped duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl From<Duration> for HumanDuration {
    fn from(duration: Duration) -> HumanDuration {
        HumanDuration(duration)
    }
}

impl From<HumanDuration> for Duration {
    fn from(duration: HumanDuration) -> Duration {
        duration.0
    }
}

impl FromStr for HumanDuration {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<HumanDuration, ScheduleError> {
        parse_duration(text).map(HumanDuration)
    }
}

impl fmt::Display for HumanDuration {
    /// Writes the shortest form [`parse_duration`] reads back, such as
    /// `1h30m` or `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut seconds = self.0.as_secs();
        let millis = self.0.subsec_millis();
        if seconds == 0 && millis == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in UNITS.iter().rev() {
            if *size == 0 {
                continue;
            }
            if seconds >= *size {
                write!(f, "{}{unit}", seconds / size)?;
                seconds %= size;
            }
        }
        if millis > 0 {
            write!(f, "{millis}ms")?;
        }
        Ok(())
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<HumanDuration, D::Error> {
        struct DurationVisitor;

        impl Visitor<'_> for DurationVisitor {
            type Value = HumanDuration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as \"30s\", \"5m\", \"2h\" or \"1d\"")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<HumanDuration, E> {
                text.parse().map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, seconds: u64) -> Result<HumanDuration, E> {
                Ok(HumanDuration(Duration::from_secs(seconds)))
            }

            fn visit_i64<E: de::Error>(self, seconds: i64) -> Result<HumanDuration, E> {
                u64::try_from(seconds)
                    .map(|seconds| HumanDuration(Duration::from_secs(seconds)))
                    .map_err(|_| E::custom("a duration cannot be negative"))
            }
        }

        deserializer.deserialize_any(DurationVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_units_and_sums() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse_duration("1d").unwrap(), Duration::from_secs(86_400));
        assert_eq!(
            parse_duration("720h").unwrap(),
            Duration::from_secs(2_592_000)
        );
        assert_eq!(parse_duration("1w").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse_duration(" 90 ").unwrap(), Duration::from_secs(90));
    }

    #[test]
    fn rejects_nonsense_with_reason() {
        for bad in [
            "",
            "m",
            "5x",
            "5 minutes",
            "-5m",
            "1.5h",
            "99999999999999999999s",
        ] {
            let err = parse_duration(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid duration"), "{bad}: {err}");
        }
        let err = parse_duration("5x").unwrap_err().to_string();
        assert!(err.contains("unknown unit \"x\""), "{err}");
    }

    #[test]
    fn displays_round_trip() {
        for text in ["0s", "30s", "5m", "1h30m", "1d", "2w3d", "1s250ms"] {
            let duration: HumanDuration = text.parse().unwrap();
            assert_eq!(duration.to_string(), text);
        }
    }
}
