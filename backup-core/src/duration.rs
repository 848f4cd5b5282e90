//! Durations, in one grammar wherever one is written (see [`CalendarDuration`]).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration in calendar units, written like restic's: `1y2m3d4h`, `72h`,
/// `30d`, `6m` (`y` years, `m` months, `d` days, `h` hours; each unit at most
/// once, in any order).
///
/// # The grammar every duration shares
///
/// Durations, in one grammar wherever one is written: a number and a unit,
/// several of them in a row (`1y2m3d4h`, `1h30min`).
///
/// | unit | means | in a [`CalendarDuration`] | in an exact duration ([`parse_duration`]) |
/// |---|---|---|---|
/// | `y` | years | yes | refused: a year has no fixed length |
/// | `m` | months (as in restic) | yes | refused: write `min` for minutes |
/// | `w` | weeks, 7 days | refused (restic has none) | yes |
/// | `d` | days, 24 hours | yes | yes |
/// | `h` | hours | yes | yes |
/// | `min` | minutes | refused: the finest retention unit is the hour | yes |
/// | `s` | seconds | refused | yes |
/// | `ms` | milliseconds | refused | yes |
///
/// So a string means the same span wherever it is accepted, and `m` is
/// never minutes: `--keep-within 1m` and `ttl = "1m"` are one month, and
/// `jitter = "5m"` is an error that says to write `5min`. A number without
/// a unit is refused everywhere.
///
/// It is applied to a time calendar-wise, as Go's `time.AddDate` followed by
/// `time.Add` (what restic does): years, months and days are added to the
/// date fields, a day past the end of its month rolling over into the next
/// month (2022-01-31 plus 1 month is "2022-02-31", that is 2022-03-03), and
/// then the hours are added as an exact duration. All in UTC.
///
/// # Examples
///
/// ```
/// use backup_core::CalendarDuration;
/// let d: CalendarDuration = "1y2m3d4h".parse().unwrap();
/// assert_eq!((d.years, d.months, d.days, d.hours), (1, 2, 3, 4));
/// assert_eq!(d.to_string(), "1y2m3d4h");
/// assert_eq!("72h".parse::<CalendarDuration>().unwrap().hours, 72);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CalendarDuration {
    /// Years.
    pub years: u32,
    /// Months.
    pub months: u32,
    /// Days.
    pub days: u32,
    /// Hours.
    pub hours: u32,
}

impl CalendarDuration {
    /// No time at all. A zero duration disables the rule it is given to.
    pub const ZERO: CalendarDuration = CalendarDuration {
        years: 0,
        months: 0,
        days: 0,
        hours: 0,
    };

    /// Whether every unit is zero.
    pub fn is_zero(&self) -> bool {
        *self == CalendarDuration::ZERO
    }

    /// `time` plus this duration, or `None` when the result is out of the
    /// range of representable times.
    pub fn after(&self, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.shift(time, 1)
    }

    /// `time` minus this duration, or `None` when the result is out of the
    /// range of representable times.
    pub fn before(&self, time: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.shift(time, -1)
    }

    /// Go's `time.AddDate(sign*years, sign*months, sign*days)` followed by
    /// `Add(sign*hours)`, in UTC.
    fn shift(&self, time: DateTime<Utc>, sign: i64) -> Option<DateTime<Utc>> {
        let date = time.date_naive();
        let year = i64::from(date.year()) + sign * i64::from(self.years);
        let month0 = i64::from(date.month0()) + sign * i64::from(self.months);
        let day = i64::from(date.day()) + sign * i64::from(self.days);
        // Normalise the month into the year, then count the days from the
        // first of the month, as Go's time.Date does.
        let year = year.checked_add(month0.div_euclid(12))?;
        let month = month0.rem_euclid(12) + 1;
        let first =
            NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, u32::try_from(month).ok()?, 1)?;
        let date = first.checked_add_signed(TimeDelta::try_days(day - 1)?)?;
        date.and_time(time.time())
            .and_utc()
            .checked_add_signed(TimeDelta::try_hours(sign * i64::from(self.hours))?)
    }
}

impl fmt::Display for CalendarDuration {
    /// Writes the non-zero units as `1y2m3d4h`; zero is written `0h`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0h");
        }
        for (value, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if value != 0 {
                write!(f, "{value}{unit}")?;
            }
        }
        Ok(())
    }
}

/// Why a duration could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason}")]
pub struct ParseDurationError {
    /// The text given.
    pub input: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The units of the grammar, in the order they are tried (longest first,
/// so that `ms` and `min` are not read as `m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    Millis,
    Minutes,
    Years,
    Months,
    Weeks,
    Days,
    Hours,
    Seconds,
}

const UNITS: &[(&str, Unit)] = &[
    ("ms", Unit::Millis),
    ("min", Unit::Minutes),
    ("y", Unit::Years),
    ("m", Unit::Months),
    ("w", Unit::Weeks),
    ("d", Unit::Days),
    ("h", Unit::Hours),
    ("s", Unit::Seconds),
];

/// Splits `input` into (number, unit) pairs, each unit at most once; no
/// spaces (as in restic).
fn tokens(input: &str) -> Result<Vec<(u64, Unit)>, ParseDurationError> {
    let error = |reason: String| ParseDurationError {
        input: input.to_string(),
        reason,
    };
    let mut rest = input;
    if rest.is_empty() {
        return Err(error("empty".into()));
    }
    let mut out: Vec<(u64, Unit)> = Vec::new();
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if let Some(space) = rest
            .chars()
            .next()
            .filter(|c| c.is_whitespace() && !out.is_empty())
        {
            return Err(error(format!(
                "unexpected {space:?}: a duration is written without spaces, such as 1h30min"
            )));
        }
        if digits == 0 {
            return Err(error(format!("expected a number at {rest:?}")));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| error("number too large".into()))?;
        rest = &rest[digits..];
        let letters = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let name = &rest[..letters];
        if let Some(other) = rest.chars().next().filter(|c| !c.is_ascii_alphabetic()) {
            return Err(error(format!(
                "unexpected {other:?}: a duration is whole numbers with units, such as 90min"
            )));
        }
        if name.is_empty() {
            return Err(error(format!(
                "a number without a unit: write for example {number}h or {number}d"
            )));
        }
        let unit = UNITS
            .iter()
            .find(|(text, _)| *text == name)
            .map(|(_, unit)| *unit)
            .ok_or_else(|| {
                error(format!(
                    "unknown unit {name:?} (units: y, m (months), w, d, h, min, s, ms)"
                ))
            })?;
        if out.iter().any(|(_, seen)| *seen == unit) {
            return Err(error(format!("the unit {name} is given twice")));
        }
        out.push((number, unit));
        rest = &rest[letters..];
    }
    Ok(out)
}

impl FromStr for CalendarDuration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = |reason: &str| ParseDurationError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        let mut duration = CalendarDuration::ZERO;
        for (number, unit) in tokens(input)? {
            let field = match unit {
                Unit::Years => &mut duration.years,
                Unit::Months => &mut duration.months,
                Unit::Days => &mut duration.days,
                Unit::Hours => &mut duration.hours,
                Unit::Weeks => {
                    return Err(error(
                        "weeks are not a retention unit (as in restic): write 7d for a week",
                    ))
                }
                Unit::Minutes | Unit::Seconds | Unit::Millis => {
                    return Err(error(
                        "a retention duration counts whole hours at the finest (y, m, d, h)",
                    ))
                }
            };
            *field = u32::try_from(number).map_err(|_| error("number too large"))?;
        }
        Ok(duration)
    }
}

/// Parses an exact duration: `30s`, `5min`, `2h`, `1d`, `2w`, `250ms`, or
/// several such as `1h30min` (the grammar is in [`CalendarDuration`]'s documentation).
///
/// # Errors
///
/// When the text is not in the grammar, or uses `y` or `m`: years and
/// months have no fixed length (and `m` is months wherever a duration is
/// written, never minutes).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use backup_core::parse_duration;
/// assert_eq!(parse_duration("1h30min").unwrap(), Duration::from_secs(5400));
/// assert!(parse_duration("5m").unwrap_err().to_string().contains("min"));
/// ```
pub fn parse_duration(input: &str) -> Result<std::time::Duration, ParseDurationError> {
    let error = |reason: &str| ParseDurationError {
        input: input.to_string(),
        reason: reason.to_string(),
    };
    let mut total = std::time::Duration::ZERO;
    for (number, unit) in tokens(input)? {
        let seconds =
            match unit {
                Unit::Millis => {
                    total = total
                        .checked_add(std::time::Duration::from_millis(number))
                        .ok_or_else(|| error("too large"))?;
                    continue;
                }
                Unit::Seconds => 1,
                Unit::Minutes => 60,
                Unit::Hours => 3_600,
                Unit::Days => 86_400,
                Unit::Weeks => 604_800,
                Unit::Months => return Err(error(
                    "m means months, which have no fixed length: write min for minutes, or days",
                )),
                Unit::Years => return Err(error("a year has no fixed length: write days")),
            };
        total = number
            .checked_mul(seconds)
            .map(std::time::Duration::from_secs)
            .and_then(|part| total.checked_add(part))
            .ok_or_else(|| error("too large"))?;
    }
    Ok(total)
}

/// Writes `duration` in the grammar [`parse_duration`] reads back, with the
/// largest units first: `1h30min`, `2w3d`, `1s250ms`, `0s`.
pub fn format_duration(duration: std::time::Duration) -> String {
    let mut seconds = duration.as_secs();
    let millis = duration.subsec_millis();
    if seconds == 0 && millis == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("w", 604_800),
        ("d", 86_400),
        ("h", 3_600),
        ("min", 60),
        ("s", 1),
    ] {
        if seconds >= size {
            out.push_str(&format!("{}{unit}", seconds / size));
            seconds %= size;
        }
    }
    if millis > 0 {
        out.push_str(&format!("{millis}ms"));
    }
    out
}

impl Serialize for CalendarDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CalendarDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retention::fixtures::at;
    use std::time::Duration;

    #[test]
    fn go_add_date_rolls_over_missing_days() {
        let d: CalendarDuration = "3m".parse().unwrap();
        assert_eq!(
            d.before(at("2022-05-31T12:00:00Z")),
            Some(at("2022-03-03T12:00:00Z"))
        );
        let d: CalendarDuration = "1m".parse().unwrap();
        assert_eq!(
            d.after(at("2020-01-31T00:00:00Z")),
            Some(at("2020-03-02T00:00:00Z"))
        );
        let d: CalendarDuration = "1y".parse().unwrap();
        assert_eq!(
            d.after(at("2020-02-29T05:00:00Z")),
            Some(at("2021-03-01T05:00:00Z"))
        );
        let d: CalendarDuration = "1d30h".parse().unwrap();
        assert_eq!(
            d.before(at("2021-03-01T05:00:00Z")),
            Some(at("2021-02-26T23:00:00Z"))
        );
        let d: CalendarDuration = "13m40d".parse().unwrap();
        assert_eq!(
            d.after(at("2021-12-15T00:00:00Z")),
            Some(at("2023-02-24T00:00:00Z"))
        );
        let huge = CalendarDuration {
            years: u32::MAX,
            ..CalendarDuration::ZERO
        };
        assert_eq!(huge.after(at("2021-12-15T00:00:00Z")), None);
        assert_eq!(huge.before(at("2021-12-15T00:00:00Z")), None);
    }

    #[test]
    fn exact_durations_parse_and_print_back() {
        for (text, seconds) in [
            ("30s", 30),
            ("5min", 300),
            ("2h", 7200),
            ("1d", 86_400),
            ("1w", 604_800),
            ("1h30min", 5400),
            ("2w3d", 1_468_800),
        ] {
            assert_eq!(
                parse_duration(text).unwrap(),
                Duration::from_secs(seconds),
                "{text}"
            );
        }
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        for text in ["0s", "30s", "5min", "1h30min", "1d", "2w3d", "1s250ms"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }

    #[test]
    fn nonsense_is_refused_with_the_reason() {
        for (bad, reason) in [
            ("", "empty"),
            ("90", "without a unit"),
            ("5x", "unknown unit \"x\""),
            ("5 minutes", "unexpected ' '"),
            ("1h 30min", "unexpected ' '"),
            (" 1h", "expected a number"),
            ("5minutes", "unknown unit \"minutes\""),
            ("-5min", "expected a number"),
            ("1.5h", "whole numbers"),
            ("1d2d", "twice"),
            ("99999999999999999999s", "too large"),
        ] {
            for message in [
                parse_duration(bad).unwrap_err().to_string(),
                bad.parse::<CalendarDuration>().unwrap_err().to_string(),
            ] {
                assert!(message.starts_with("invalid duration"), "{bad}: {message}");
                assert!(message.contains(reason), "{bad}: {message}");
            }
        }
        assert!(parse_duration("5m")
            .unwrap_err()
            .to_string()
            .contains("write min"));
        assert!("5min".parse::<CalendarDuration>().is_err());
        assert!("1w".parse::<CalendarDuration>().is_err());
    }
}
