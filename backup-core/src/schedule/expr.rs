//! Cron expressions and the time zones they are evaluated in.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, FixedOffset, TimeZone, Utc};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::ScheduleError;

/// A parsed cron expression.
///
/// Accepts the standard five fields (`minute hour day-of-month month
/// day-of-week`, with crontab(5) meaning: day-of-week `0`/`7` is Sunday and
/// two restricted day fields match either), six or seven fields (seconds
/// first, optional year last, passed to the `cron` crate as written) and the
/// shorthands `@yearly`/`@annually`, `@monthly`, `@weekly`, `@daily`/
/// `@midnight` and `@hourly`.
#[derive(Debug, Clone)]
pub(crate) struct CronExpr {
    source: String,
    /// One schedule, or two whose union is the expression (a five-field
    /// expression restricting both day-of-month and day-of-week).
    schedules: Vec<cron::Schedule>,
}

impl CronExpr {
    /// Parses `expression`; the error is a human-readable reason (callers add
    /// the job's name, see [`JobSpec::new`](super::JobSpec::new)).
    pub(crate) fn parse(expression: &str) -> Result<CronExpr, String> {
        let trimmed = expression.trim();
        let schedules = if let Some(name) = trimmed.strip_prefix('@') {
            let canonical = match name.to_ascii_lowercase().as_str() {
                "yearly" | "annually" => "@yearly",
                "monthly" => "@monthly",
                "weekly" => "@weekly",
                "daily" | "midnight" => "@daily",
                "hourly" => "@hourly",
                "reboot" => return Err("@reboot is not supported by the scheduler".into()),
                _ => {
                    return Err(format!(
                    "unknown shorthand @{name}; use @yearly, @monthly, @weekly, @daily or @hourly"
                ))
                }
            };
            vec![parse_cron(canonical)?]
        } else {
            let fields: Vec<&str> = trimmed.split_whitespace().collect();
            match fields.as_slice() {
                [minute, hour, day_of_month, month, day_of_week] => {
                    let (days, days_restricted) = standard_day_of_week(day_of_week)?;
                    let dom_restricted =
                        !(day_of_month.starts_with('*') || day_of_month.starts_with('?'));
                    if dom_restricted && days_restricted {
                        // crontab(5): "the command runs when either field matches".
                        vec![
                            parse_cron(&format!("0 {minute} {hour} {day_of_month} {month} *"))?,
                            parse_cron(&format!("0 {minute} {hour} * {month} {days}"))?,
                        ]
                    } else {
                        vec![parse_cron(&format!(
                            "0 {minute} {hour} {day_of_month} {month} {days}"
                        ))?]
                    }
                }
                [_, _, _, _, _, _] | [_, _, _, _, _, _, _] => vec![parse_cron(trimmed)?],
                _ => {
                    return Err(format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week) or 6-7 fields \
                         (seconds first, optional year last), found {}",
                    fields.len()
                ))
                }
            }
        };
        let expr = CronExpr {
            source: expression.to_owned(),
            schedules,
        };
        if expr
            .next_after(DateTime::UNIX_EPOCH, JobTimeZone::Utc)
            .is_none()
        {
            return Err("the expression never matches a date".into());
        }
        Ok(expr)
    }

    /// The expression as written.
    pub(crate) fn as_str(&self) -> &str {
        &self.source
    }

    /// The first occurrence strictly after `after`, evaluated in `zone`;
    /// `None` if there is none (an expression limited to past years).
    pub(crate) fn next_after(
        &self,
        after: DateTime<Utc>,
        zone: JobTimeZone,
    ) -> Option<DateTime<Utc>> {
        self.schedules
            .iter()
            .filter_map(|schedule| match zone {
                JobTimeZone::Utc => next_in(schedule, after, Utc),
                JobTimeZone::Named(tz) => next_in(schedule, after, tz),
                JobTimeZone::Fixed(offset) => next_in(schedule, after, offset),
            })
            .min()
    }

    /// The last occurrence strictly before `before`, evaluated in `zone`.
    pub(crate) fn previous_before(
        &self,
        before: DateTime<Utc>,
        zone: JobTimeZone,
    ) -> Option<DateTime<Utc>> {
        self.schedules
            .iter()
            .filter_map(|schedule| match zone {
                JobTimeZone::Utc => previous_in(schedule, before, Utc),
                JobTimeZone::Named(tz) => previous_in(schedule, before, tz),
                JobTimeZone::Fixed(offset) => previous_in(schedule, before, offset),
            })
            .max()
    }

    /// The time between the last occurrence at or before `at` and the next
    /// one after it: the schedule's period around `at`.
    pub(crate) fn interval_around(
        &self,
        at: DateTime<Utc>,
        zone: JobTimeZone,
    ) -> Option<chrono::Duration> {
        let next = self.next_after(at, zone)?;
        let previous = self.previous_before(next, zone)?;
        Some(next - previous)
    }
}

impl fmt::Display for CronExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn parse_cron(expression: &str) -> Result<cron::Schedule, String> {
    expression.parse::<cron::Schedule>().map_err(|error| {
        // The `cron` crate points a caret at the field on the lines before
        // its message; the expression it saw may be our translation, so
        // keep the message only.
        let text = error.to_string();
        text.lines()
            .rev()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .unwrap_or("unparsable expression")
            .to_owned()
    })
}

fn next_in<Z: TimeZone>(
    schedule: &cron::Schedule,
    after: DateTime<Utc>,
    zone: Z,
) -> Option<DateTime<Utc>> {
    schedule
        .after(&after.with_timezone(&zone))
        .next()
        .map(|time| time.with_timezone(&Utc))
}

fn previous_in<Z: TimeZone>(
    schedule: &cron::Schedule,
    before: DateTime<Utc>,
    zone: Z,
) -> Option<DateTime<Utc>> {
    schedule
        .after(&before.with_timezone(&zone))
        .next_back()
        .map(|time| time.with_timezone(&Utc))
}

const DAY_NAMES: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// Translates a crontab(5) day-of-week field (0-7, Sunday = 0 or 7, names,
/// lists, ranges, steps) into day names the `cron` crate reads the same way.
/// Returns the translation and whether the field restricts the days (does
/// not start with `*`, as crontab(5) decides it).
fn standard_day_of_week(field: &str) -> Result<(String, bool), String> {
    if field == "*" || field == "?" {
        return Ok(("*".into(), false));
    }
    let restricted = !field.starts_with('*');
    let mut days = [false; 7];
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((range, step)) => {
                let step: usize = step.parse().ok().filter(|step| *step > 0).ok_or_else(|| {
                    format!("invalid step {step:?} in day-of-week field {field:?}")
                })?;
                (range, Some(step))
            }
            None => (part, None),
        };
        let (low, high) = if range == "*" || range == "?" {
            (0, 6)
        } else if let Some((low, high)) = range.split_once('-') {
            let low = day_number(low, field)?;
            let mut high = day_number(high, field)?;
            if high == 0 && low > 0 {
                // `FRI-SUN`: Sunday as the end of the week.
                high = 7;
            }
            if low > high {
                return Err(format!(
                    "day-of-week range {range:?} in {field:?} runs backwards"
                ));
            }
            (low, high)
        } else {
            let day = day_number(range, field)?;
            (day, if step.is_some() { 7 } else { day })
        };
        for day in (low..=high).step_by(step.unwrap_or(1)) {
            days[day % 7] = true;
        }
    }
    let names: Vec<&str> = DAY_NAMES
        .iter()
        .zip(days)
        .filter_map(|(name, selected)| selected.then_some(*name))
        .collect();
    Ok((names.join(","), restricted))
}

fn day_number(text: &str, field: &str) -> Result<usize, String> {
    if let Ok(number) = text.parse::<usize>() {
        if number <= 7 {
            return Ok(number);
        }
    }
    let lower = text.to_ascii_lowercase();
    DAY_NAMES
        .iter()
        .position(|name| {
            let name = name.to_ascii_lowercase();
            lower == name || (lower.len() > 3 && full_day_name(&name) == lower)
        })
        .ok_or_else(|| {
            let place = if text == field {
                String::new()
            } else {
                format!(" in {field:?}")
            };
            format!("invalid day of week {text:?}{place}: use 0-7 (0 and 7 are Sunday) or SUN-SAT")
        })
}

fn full_day_name(short: &str) -> &'static str {
    match short {
        "sun" => "sunday",
        "mon" => "monday",
        "tue" => "tuesday",
        "wed" => "wednesday",
        "thu" => "thursday",
        "fri" => "friday",
        _ => "saturday",
    }
}

/// The time zone a job's cron expression is evaluated in.
///
/// Parsed from `UTC` (or `Z`), an IANA zone name such as `Europe/Berlin`
/// (case-insensitive), or a fixed offset such as `+02:00`, `-0530`, `+02`
/// or `UTC+2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum JobTimeZone {
    /// Coordinated Universal Time, the default.
    #[default]
    Utc,
    /// A zone of the IANA database, following its daylight-saving rules.
    Named(chrono_tz::Tz),
    /// A fixed offset from UTC.
    Fixed(FixedOffset),
}

impl FromStr for JobTimeZone {
    type Err = ScheduleError;

    fn from_str(text: &str) -> Result<JobTimeZone, ScheduleError> {
        let trimmed = text.trim();
        let error = || ScheduleError::InvalidTimeZone {
            value: text.to_owned(),
        };
        if trimmed.eq_ignore_ascii_case("utc") || trimmed == "Z" {
            return Ok(JobTimeZone::Utc);
        }
        let offset_text = if trimmed.len() > 3 && trimmed[..3].eq_ignore_ascii_case("utc") {
            &trimmed[3..]
        } else {
            trimmed
        };
        if offset_text.starts_with('+') || offset_text.starts_with('-') {
            return parse_offset(offset_text)
                .map(JobTimeZone::Fixed)
                .ok_or_else(error);
        }
        if let Ok(tz) = trimmed.parse::<chrono_tz::Tz>() {
            return Ok(JobTimeZone::Named(tz));
        }
        chrono_tz::TZ_VARIANTS
            .iter()
            .find(|tz| tz.name().eq_ignore_ascii_case(trimmed))
            .map(|tz| JobTimeZone::Named(*tz))
            .ok_or_else(error)
    }
}

/// Parses `+HH`, `+HHMM` or `+HH:MM` (or with `-`), up to 18 hours.
fn parse_offset(text: &str) -> Option<FixedOffset> {
    let (sign, rest) = match text.split_at_checked(1)? {
        ("+", rest) => (1, rest),
        ("-", rest) => (-1, rest),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if !digits.bytes().all(|b| b.is_ascii_digit()) || rest.matches(':').count() > 1 {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        1 | 2 => (digits.parse::<i32>().ok()?, 0),
        3 | 4 => {
            let (hours, minutes) = digits.split_at(digits.len() - 2);
            (hours.parse::<i32>().ok()?, minutes.parse::<i32>().ok()?)
        }
        _ => return None,
    };
    if hours > 18 || minutes > 59 || (hours == 18 && minutes > 0) {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60))
}

impl fmt::Display for JobTimeZone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobTimeZone::Utc => f.write_str("UTC"),
            JobTimeZone::Named(tz) => f.write_str(tz.name()),
            JobTimeZone::Fixed(offset) => write!(f, "{offset}"),
        }
    }
}

impl Serialize for JobTimeZone {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JobTimeZone {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JobTimeZone, D::Error> {
        struct ZoneVisitor;

        impl Visitor<'_> for ZoneVisitor {
            type Value = JobTimeZone;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a time zone such as \"UTC\", \"Europe/Berlin\" or \"+02:00\"")
            }

            fn visit_str<E: de::Error>(self, text: &str) -> Result<JobTimeZone, E> {
                text.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(ZoneVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s).unwrap()
    }

    #[test]
    fn five_fields_get_a_seconds_field() {
        let expr = CronExpr::parse("0 */2 * * *").unwrap();
        let next = expr.next_after(utc(2024, 1, 1, 0, 0, 0), JobTimeZone::Utc);
        assert_eq!(next, Some(utc(2024, 1, 1, 2, 0, 0)));
        assert_eq!(
            expr.interval_around(utc(2024, 1, 1, 1, 0, 0), JobTimeZone::Utc),
            Some(chrono::Duration::hours(2))
        );
        assert_eq!(
            expr.interval_around(utc(2024, 1, 1, 2, 0, 0), JobTimeZone::Utc),
            Some(chrono::Duration::hours(2))
        );
    }

    #[test]
    fn day_of_week_follows_crontab() {
        // 2024-01-01 is a Monday.
        let monday = CronExpr::parse("0 3 * * 1").unwrap();
        assert_eq!(
            monday.next_after(utc(2024, 1, 1, 4, 0, 0), JobTimeZone::Utc),
            Some(utc(2024, 1, 8, 3, 0, 0))
        );
        for sunday in ["0 3 * * 0", "0 3 * * 7", "0 3 * * sun", "0 3 * * Sunday"] {
            let expr = CronExpr::parse(sunday).unwrap();
            assert_eq!(
                expr.next_after(utc(2024, 1, 1, 0, 0, 0), JobTimeZone::Utc),
                Some(utc(2024, 1, 7, 3, 0, 0)),
                "{sunday}"
            );
        }
        let weekdays = CronExpr::parse("0 3 * * 1-5").unwrap();
        assert_eq!(
            weekdays.next_after(utc(2024, 1, 5, 4, 0, 0), JobTimeZone::Utc),
            Some(utc(2024, 1, 8, 3, 0, 0))
        );
        // Over a weekend the period is three days.
        assert_eq!(
            weekdays.interval_around(utc(2024, 1, 6, 12, 0, 0), JobTimeZone::Utc),
            Some(chrono::Duration::days(3))
        );
        let weekend = CronExpr::parse("0 3 * * FRI-SUN").unwrap();
        assert_eq!(
            weekend.next_after(utc(2024, 1, 1, 0, 0, 0), JobTimeZone::Utc),
            Some(utc(2024, 1, 5, 3, 0, 0))
        );
        let every_other = CronExpr::parse("0 3 * * */2").unwrap();
        // Sunday, Tuesday, Thursday, Saturday.
        assert_eq!(
            every_other.next_after(utc(2024, 1, 1, 0, 0, 0), JobTimeZone::Utc),
            Some(utc(2024, 1, 2, 3, 0, 0))
        );
    }

    #[test]
    fn both_day_fields_match_either() {
        // The 15th or any Monday.
        let expr = CronExpr::parse("0 0 15 * 1").unwrap();
        let mut at = utc(2024, 1, 1, 0, 0, 0);
        let mut seen = Vec::new();
        for _ in 0..4 {
            at = expr.next_after(at, JobTimeZone::Utc).unwrap();
            seen.push(at);
        }
        assert_eq!(
            seen,
            vec![
                utc(2024, 1, 8, 0, 0, 0),
                utc(2024, 1, 15, 0, 0, 0),
                utc(2024, 1, 22, 0, 0, 0),
                utc(2024, 1, 29, 0, 0, 0),
            ]
        );
        let expr = CronExpr::parse("0 0 14 * 1").unwrap();
        assert_eq!(
            expr.next_after(utc(2024, 1, 8, 0, 0, 0), JobTimeZone::Utc),
            Some(utc(2024, 1, 14, 0, 0, 0))
        );
    }

    #[test]
    fn six_and_seven_fields_and_shorthands() {
        let expr = CronExpr::parse("*/30 * * * * *").unwrap();
        assert_eq!(
            expr.next_after(utc(2024, 1, 1, 0, 0, 0), JobTimeZone::Utc),
            Some(utc(2024, 1, 1, 0, 0, 30))
        );
        let expr = CronExpr::parse("0 0 3 * * * 2025").unwrap();
        assert_eq!(
            expr.next_after(utc(2024, 1, 1, 0, 0, 0), JobTimeZone::Utc),
            Some(utc(2025, 1, 1, 3, 0, 0))
        );
        let expr = CronExpr::parse("@daily").unwrap();
        assert_eq!(
            expr.next_after(utc(2024, 1, 1, 0, 0, 0), JobTimeZone::Utc),
            Some(utc(2024, 1, 2, 0, 0, 0))
        );
        assert!(CronExpr::parse("@midnight").is_ok());
        assert!(CronExpr::parse("@reboot").is_err());
    }

    #[test]
    fn rejects_bad_expressions() {
        for bad in [
            "",
            "* * *",
            "61 * * * *",
            "0 25 * * *",
            "0 0 * * 8",
            "0 0 * * MON-XYZ",
            "a b c d e f g h",
        ] {
            assert!(CronExpr::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn error_messages_are_one_line() {
        let reason = CronExpr::parse("61 * * * *").unwrap_err();
        assert!(!reason.contains('\n'), "{reason}");
        assert!(reason.contains("Minutes"), "{reason}");
        assert_eq!(
            CronExpr::parse("0 0 31 2 *").unwrap_err(),
            "the expression never matches a date"
        );
        assert_eq!(
            CronExpr::parse("0 0 * * 8").unwrap_err(),
            "invalid day of week \"8\": use 0-7 (0 and 7 are Sunday) or SUN-SAT"
        );
    }

    #[test]
    fn time_zones() {
        assert_eq!("UTC".parse::<JobTimeZone>().unwrap(), JobTimeZone::Utc);
        assert_eq!(
            "Europe/Berlin".parse::<JobTimeZone>().unwrap(),
            JobTimeZone::Named(chrono_tz::Europe::Berlin)
        );
        assert_eq!(
            "europe/berlin".parse::<JobTimeZone>().unwrap(),
            JobTimeZone::Named(chrono_tz::Europe::Berlin)
        );
        let plus_two = JobTimeZone::Fixed(FixedOffset::east_opt(7200).unwrap());
        for text in ["+02:00", "+0200", "+02", "+2", "UTC+2", "utc+02:00"] {
            assert_eq!(text.parse::<JobTimeZone>().unwrap(), plus_two, "{text}");
        }
        assert_eq!(
            "-05:30".parse::<JobTimeZone>().unwrap(),
            JobTimeZone::Fixed(FixedOffset::west_opt(5 * 3600 + 1800).unwrap())
        );
        for bad in ["Mars/Olympus", "+25:00", "+02:60", "+", "2", ""] {
            let err = bad.parse::<JobTimeZone>().unwrap_err().to_string();
            assert!(err.contains("unknown time zone"), "{bad}: {err}");
        }
        assert_eq!(plus_two.to_string(), "+02:00");
        assert_eq!(
            JobTimeZone::Named(chrono_tz::Europe::Berlin).to_string(),
            "Europe/Berlin"
        );
    }

    #[test]
    fn daylight_saving_days() {
        let berlin = JobTimeZone::Named(chrono_tz::Europe::Berlin);
        // 02:30 does not exist on 2024-03-31 in Berlin: that day is skipped.
        let expr = CronExpr::parse("30 2 * * *").unwrap();
        assert_eq!(
            expr.next_after(utc(2024, 3, 30, 12, 0, 0), berlin),
            Some(utc(2024, 4, 1, 0, 30, 0))
        );
        // 02:30 happens twice on 2024-10-27: the job runs once.
        let first = expr
            .next_after(utc(2024, 10, 26, 12, 0, 0), berlin)
            .unwrap();
        assert_eq!(first, utc(2024, 10, 27, 0, 30, 0));
        assert_eq!(
            expr.next_after(first, berlin),
            Some(utc(2024, 10, 28, 1, 30, 0))
        );
    }
}
