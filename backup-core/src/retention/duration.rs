//! [`CalendarDuration`]: restic's durations (`1y2m3d4h`), applied to a
//! time calendar-wise, and their parser.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration in calendar units, written like restic's: `1y2m3d4h`, `72h`,
/// `30d`, `6m` (`y` years, `m` months, `d` days, `h` hours; each unit at most
/// once, in any order).
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

/// Why a [`CalendarDuration`] could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}: {reason} (expected e.g. 1y2m3d4h, 30d, 72h)")]
pub struct ParseDurationError {
    /// The text given.
    pub input: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl FromStr for CalendarDuration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let error = |reason| ParseDurationError {
            input: input.to_string(),
            reason,
        };
        if input.is_empty() {
            return Err(error("empty"));
        }
        let mut duration = CalendarDuration::ZERO;
        let mut seen = [false; 4];
        let mut rest = input;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .ok_or_else(|| error("a number without a unit (y, m, d or h)"))?;
            if digits == 0 {
                return Err(error("expected a number"));
            }
            let (number, tail) = rest.split_at(digits);
            let value: u32 = number.parse().map_err(|_| error("number too large"))?;
            let mut chars = tail.chars();
            let (slot, field) = match chars.next() {
                Some('y') => (0, &mut duration.years),
                Some('m') => (1, &mut duration.months),
                Some('d') => (2, &mut duration.days),
                Some('h') => (3, &mut duration.hours),
                _ => return Err(error("unknown unit (expected y, m, d or h)")),
            };
            if seen
                .get_mut(slot)
                .is_some_and(|seen| std::mem::replace(seen, true))
            {
                return Err(error("a unit is given twice"));
            }
            *field = value;
            rest = chars.as_str();
        }
        Ok(duration)
    }
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
}
