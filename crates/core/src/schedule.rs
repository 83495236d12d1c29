//! Schedule expressions as EventBridge and EventBridge Scheduler read
//! them: `rate(5 minutes)`, `cron(min hour day-of-month month
//! day-of-week year)` in AWS's six-field dialect (`?`, `L`, `W`, `#`,
//! names of months and days), and `at(yyyy-mm-ddThh:mm:ss)`, each in a
//! time zone. A cron time a daylight-saving change skips does not fire;
//! one it repeats fires once (its first occurrence), as AWS does.
//!
//! Parsing is bounded by the text (at most 256 bytes) and finding the
//! next time by the calendar (years up to 2199): untrusted input costs
//! no more than that.

use jiff::civil::{Date, DateTime};
use jiff::tz::{AmbiguousOffset, TimeZone};
use jiff::Timestamp;

/// The longest expression taken (AWS's bound on ScheduleExpression).
pub const MAX_LEN: usize = 256;
const LAST_YEAR: i16 = 2199;
const FIRST_YEAR: i16 = 1970;

#[derive(Debug, Clone, PartialEq)]
pub enum Expression {
    /// Every `every_ms`, counted from the schedule's start.
    Rate {
        every_ms: i64,
    },
    Cron(Box<Cron>),
    /// Once, at a local time.
    At(DateTime),
}

/// A parsed cron expression: each field as the set of values it allows.
#[derive(Debug, Clone, PartialEq)]
pub struct Cron {
    minutes: Vec<i8>,
    hours: Vec<i8>,
    days: DaysOfMonth,
    months: Vec<i8>,
    weekdays: DaysOfWeek,
    years: Vec<i16>,
}

#[derive(Debug, Clone, PartialEq)]
enum DaysOfMonth {
    Any,
    Listed(Vec<i8>),
    Last,
    LastWeekday,
    /// The weekday nearest the day, within its month.
    NearestWeekday(i8),
}

#[derive(Debug, Clone, PartialEq)]
enum DaysOfWeek {
    Any,
    /// Sunday is 1.
    Listed(Vec<i8>),
    /// The last such day of the month (`5L`).
    Last(i8),
    /// The nth such day of the month (`6#3`).
    Nth(i8, i8),
}

impl Expression {
    /// Parses `rate(…)`, `cron(…)` or (if `allow_at`) `at(…)`; the error
    /// says what is wrong.
    pub fn parse(text: &str, allow_at: bool) -> Result<Expression, String> {
        if text.len() > MAX_LEN {
            return Err(format!("longer than {MAX_LEN} characters"));
        }
        let text = text.trim();
        let (name, inner) = text
            .strip_suffix(')')
            .and_then(|t| t.split_once('('))
            .ok_or("not rate(…), cron(…) or at(…)")?;
        match name {
            "rate" => parse_rate(inner.trim()),
            "cron" => Ok(Expression::Cron(Box::new(Cron::parse(inner.trim())?))),
            "at" if allow_at => inner
                .trim()
                .parse::<DateTime>()
                .ok()
                .filter(|_| inner.trim().len() == 19)
                .map(Expression::At)
                .ok_or_else(|| "at() takes yyyy-mm-ddThh:mm:ss".to_string()),
            _ => Err("not rate(…), cron(…) or at(…)".into()),
        }
    }

    /// The first time strictly after `after_ms` (ms since the epoch) at
    /// which the expression fires, in `tz`; a rate counts from
    /// `start_ms`. `None` if there is none (an `at` in the past, a cron
    /// past its last year).
    pub fn next_after(&self, after_ms: i64, start_ms: i64, tz: &TimeZone) -> Option<i64> {
        match self {
            Expression::Rate { every_ms } => {
                if after_ms < start_ms {
                    return Some(start_ms);
                }
                let periods = (after_ms - start_ms) / every_ms + 1;
                Some(start_ms + periods * every_ms)
            }
            Expression::At(at) => {
                let ts = tz.to_ambiguous_timestamp(*at).compatible().ok()?;
                let ms = ts.as_millisecond();
                (ms > after_ms).then_some(ms)
            }
            Expression::Cron(cron) => cron.next_after(after_ms, tz),
        }
    }

    pub fn is_one_time(&self) -> bool {
        matches!(self, Expression::At(_))
    }
}

fn parse_rate(inner: &str) -> Result<Expression, String> {
    let (value, unit) = inner
        .split_once(' ')
        .ok_or("rate() takes a value and a unit: rate(5 minutes)")?;
    let value: i64 = value
        .trim()
        .parse()
        .ok()
        .filter(|v| *v > 0 && *v <= 1_000_000)
        .ok_or("the value of rate() is a positive whole number")?;
    let unit_ms = match (unit.trim(), value) {
        ("minute", 1) | ("minutes", 2..) => 60_000,
        ("hour", 1) | ("hours", 2..) => 3_600_000,
        ("day", 1) | ("days", 2..) => 86_400_000,
        ("minutes" | "hours" | "days", 1) => {
            return Err("a rate of 1 takes a singular unit: rate(1 minute)".into())
        }
        ("minute" | "hour" | "day", _) => {
            return Err("a rate above 1 takes a plural unit: rate(5 minutes)".into())
        }
        _ => return Err("the unit of rate() is minute(s), hour(s) or day(s)".into()),
    };
    Ok(Expression::Rate {
        every_ms: value * unit_ms,
    })
}

const MONTHS: [&str; 12] = [
    "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
];
const WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One field's values: lists of `*`, `n`, `a-b` (wrapping past the end
/// for cyclic fields), each with an optional `/step`; names where given.
fn values(field: &str, what: &str, lo: i32, hi: i32, names: &[&str]) -> Result<Vec<i32>, String> {
    let bad = || format!("the {what} field `{field}` is not valid");
    let number = |s: &str| -> Result<i32, String> {
        let upper = s.to_ascii_uppercase();
        if let Some(i) = names.iter().position(|n| *n == upper) {
            return Ok(lo + i as i32);
        }
        s.parse::<i32>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| format!("{s} is out of range for the {what} field ({lo}-{hi})"))
    };
    let mut out = Vec::new();
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<i32>()
                    .ok()
                    .filter(|s| *s > 0 && *s <= hi - lo + 1)
                    .ok_or_else(bad)?,
            ),
            None => (part, 1),
        };
        let (from, to) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                // `5/15`: from 5 to the end.
                None if part.contains('/') => (number(r)?, hi),
                None => (number(r)?, number(r)?),
            },
        };
        let span = hi - lo + 1;
        let count = if to >= from {
            to - from
        } else {
            to + span - from
        };
        let mut i = 0;
        while i <= count {
            let v = from + i;
            out.push(if v > hi { v - span } else { v });
            i += step;
        }
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

impl Cron {
    pub fn parse(inner: &str) -> Result<Cron, String> {
        let fields: Vec<&str> = inner.split_whitespace().collect();
        let [min, hour, dom, month, dow, year] = fields[..] else {
            return Err(format!(
                "cron() takes six fields (minutes hours day-of-month month day-of-week year), not {}",
                fields.len()
            ));
        };
        let small = |v: Vec<i32>| v.into_iter().map(|v| v as i8).collect::<Vec<i8>>();
        let days = match dom {
            "?" => None,
            d => Some(parse_days_of_month(d)?),
        };
        let weekdays = match dow {
            "?" => None,
            d => Some(parse_days_of_week(d)?),
        };
        let (days, weekdays) = match (days, weekdays) {
            (Some(d), None) => (d, DaysOfWeek::Any),
            (None, Some(w)) => (DaysOfMonth::Any, w),
            _ => {
                return Err(
                    "one of the day-of-month and day-of-week fields must be ?, and only one".into(),
                )
            }
        };
        Ok(Cron {
            minutes: small(values(min, "minutes", 0, 59, &[])?),
            hours: small(values(hour, "hours", 0, 23, &[])?),
            days,
            months: small(values(month, "month", 1, 12, &MONTHS)?),
            weekdays,
            years: values(year, "year", FIRST_YEAR as i32, LAST_YEAR as i32, &[])?
                .into_iter()
                .map(|v| v as i16)
                .collect(),
        })
    }

    /// Whether `date` is one of the days the expression names.
    fn day_matches(&self, date: Date) -> bool {
        let day = date.day();
        let last = date.days_in_month();
        let ok_dom = match &self.days {
            DaysOfMonth::Any => true,
            DaysOfMonth::Listed(days) => days.contains(&day),
            DaysOfMonth::Last => day == last,
            DaysOfMonth::LastWeekday => Some(day) == nearest_weekday(date, last),
            DaysOfMonth::NearestWeekday(n) => Some(day) == nearest_weekday(date, *n),
        };
        let weekday = date.weekday().to_sunday_one_offset();
        let ok_dow = match &self.weekdays {
            DaysOfWeek::Any => true,
            DaysOfWeek::Listed(days) => days.contains(&weekday),
            DaysOfWeek::Last(w) => *w == weekday && day + 7 > last,
            DaysOfWeek::Nth(w, n) => *w == weekday && (day - 1) / 7 + 1 == *n,
        };
        ok_dom && ok_dow
    }

    fn next_after(&self, after_ms: i64, tz: &TimeZone) -> Option<i64> {
        let after = Timestamp::from_millisecond(after_ms).ok()?;
        let local = after.to_zoned(tz.clone()).datetime();
        let start = (
            local.year(),
            local.month(),
            local.day(),
            local.hour(),
            local.minute(),
        );
        for &year in self.years.iter().filter(|y| **y >= start.0) {
            for &month in &self.months {
                if (year, month) < (start.0, start.1) {
                    continue;
                }
                let first = Date::new(year, month, 1).ok()?;
                for day in 1..=first.days_in_month() {
                    if (year, month, day) < (start.0, start.1, start.2) {
                        continue;
                    }
                    let date = Date::new(year, month, day).ok()?;
                    if !self.day_matches(date) {
                        continue;
                    }
                    for &hour in &self.hours {
                        if (year, month, day, hour) < (start.0, start.1, start.2, start.3) {
                            continue;
                        }
                        for &minute in &self.minutes {
                            let civil = date.at(hour, minute, 0, 0);
                            let ts = match tz.to_ambiguous_timestamp(civil).offset() {
                                // Skipped by a daylight-saving change.
                                AmbiguousOffset::Gap { .. } => continue,
                                AmbiguousOffset::Unambiguous { offset } => {
                                    offset.to_timestamp(civil)
                                }
                                // Repeated: only its first occurrence.
                                AmbiguousOffset::Fold { before, .. } => before.to_timestamp(civil),
                            };
                            let Ok(ts) = ts else { continue };
                            if ts.as_millisecond() > after_ms {
                                return Some(ts.as_millisecond());
                            }
                        }
                    }
                }
            }
        }
        None
    }
}

/// The weekday (Monday to Friday) nearest day `n` of `date`'s month,
/// without leaving the month; `None` if `n` is past its end.
fn nearest_weekday(date: Date, n: i8) -> Option<i8> {
    let last = date.days_in_month();
    if n > last {
        return None;
    }
    let target = Date::new(date.year(), date.month(), n).ok()?;
    Some(match target.weekday().to_sunday_one_offset() {
        // Saturday: the Friday before, or the Monday after on the 1st.
        7 if n == 1 => 3,
        7 => n - 1,
        // Sunday: the Monday after, or the Friday before on the last day.
        1 if n == last => n - 2,
        1 => n + 1,
        _ => n,
    })
}

fn parse_days_of_month(field: &str) -> Result<DaysOfMonth, String> {
    match field.to_ascii_uppercase().as_str() {
        "*" => Ok(DaysOfMonth::Any),
        "L" => Ok(DaysOfMonth::Last),
        "LW" => Ok(DaysOfMonth::LastWeekday),
        f if f.ends_with('W') => f[..f.len() - 1]
            .parse::<i8>()
            .ok()
            .filter(|n| (1..=31).contains(n))
            .map(DaysOfMonth::NearestWeekday)
            .ok_or_else(|| format!("the day-of-month field `{field}` is not valid")),
        _ => Ok(DaysOfMonth::Listed(
            values(field, "day-of-month", 1, 31, &[])?
                .into_iter()
                .map(|v| v as i8)
                .collect(),
        )),
    }
}

fn parse_days_of_week(field: &str) -> Result<DaysOfWeek, String> {
    let upper = field.to_ascii_uppercase();
    let weekday = |s: &str| -> Result<i8, String> {
        match values(s, "day-of-week", 1, 7, &WEEKDAYS)?[..] {
            [one] if !s.contains(['-', ',', '/', '*']) => Ok(one as i8),
            _ => Err(format!("the day-of-week field `{field}` is not valid")),
        }
    };
    if upper == "*" {
        return Ok(DaysOfWeek::Any);
    }
    if upper == "L" {
        return Ok(DaysOfWeek::Listed(vec![7]));
    }
    if let Some(day) = upper.strip_suffix('L') {
        return Ok(DaysOfWeek::Last(weekday(day)?));
    }
    if let Some((day, n)) = upper.split_once('#') {
        let n = n
            .parse::<i8>()
            .ok()
            .filter(|n| (1..=5).contains(n))
            .ok_or_else(|| {
                format!("the day-of-week field `{field}` is not valid: # takes 1 to 5")
            })?;
        return Ok(DaysOfWeek::Nth(weekday(day)?, n));
    }
    Ok(DaysOfWeek::Listed(
        values(field, "day-of-week", 1, 7, &WEEKDAYS)?
            .into_iter()
            .map(|v| v as i8)
            .collect(),
    ))
}

/// A time zone by IANA name (`UTC` when none is given); the error names it.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, String> {
    match name {
        None | Some("") | Some("UTC") => Ok(TimeZone::UTC),
        Some(n) if n.len() <= 50 => {
            TimeZone::get(n).map_err(|_| format!("{n} is not a known time zone"))
        }
        Some(n) => Err(format!("{n} is not a known time zone")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(text: &str) -> i64 {
        text.parse::<Timestamp>().unwrap().as_millisecond()
    }

    fn iso(ms: i64) -> String {
        Timestamp::from_millisecond(ms).unwrap().to_string()
    }

    /// The first `n` fire times after `from`, in UTC.
    fn fires(expr: &str, tz: &str, from: &str, n: usize) -> Vec<String> {
        let e = Expression::parse(expr, true).unwrap();
        let tz = time_zone(Some(tz)).unwrap();
        let mut at = ms(from);
        let mut out = Vec::new();
        for _ in 0..n {
            match e.next_after(at, ms(from), &tz) {
                Some(next) => {
                    out.push(iso(next));
                    at = next;
                }
                None => break,
            }
        }
        out
    }

    #[test]
    fn a_time_skipped_by_spring_forward_does_not_fire() {
        // Berlin skips 02:00-03:00 on 29 March 2026.
        assert_eq!(
            fires(
                "cron(30 2 * * ? *)",
                "Europe/Berlin",
                "2026-03-27T12:00:00Z",
                3
            ),
            [
                "2026-03-28T01:30:00Z",
                "2026-03-30T00:30:00Z",
                "2026-03-31T00:30:00Z"
            ]
        );
        // Hourly ticks step over the missing hour.
        assert_eq!(
            fires(
                "cron(0 * * * ? *)",
                "Europe/Berlin",
                "2026-03-29T00:30:00Z",
                2
            ),
            ["2026-03-29T01:00:00Z", "2026-03-29T02:00:00Z"]
        );
    }

    #[test]
    fn a_time_repeated_by_fall_back_fires_once() {
        // Berlin has 02:00-03:00 twice on 25 October 2026.
        assert_eq!(
            fires(
                "cron(30 2 * * ? *)",
                "Europe/Berlin",
                "2026-10-24T12:00:00Z",
                2
            ),
            ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"]
        );
        assert_eq!(
            fires(
                "cron(15 * * * ? *)",
                "Europe/Berlin",
                "2026-10-24T23:30:00Z",
                3
            ),
            [
                "2026-10-25T00:15:00Z",
                // 02:15 CEST; the second 02:15 (CET, 01:15Z) does not fire.
                "2026-10-25T02:15:00Z",
                "2026-10-25T03:15:00Z"
            ]
        );
        // Starting inside the repeated hour does not fire it again.
        assert_eq!(
            fires(
                "cron(30 2 * * ? *)",
                "Europe/Berlin",
                "2026-10-25T01:10:00Z",
                1
            ),
            ["2026-10-26T01:30:00Z"]
        );
    }

    #[test]
    fn southern_and_american_rules_apply_too() {
        // New York springs forward on 8 March 2026 at 02:00.
        assert_eq!(
            fires(
                "cron(30 2 * * ? *)",
                "America/New_York",
                "2026-03-07T12:00:00Z",
                2
            ),
            ["2026-03-09T06:30:00Z", "2026-03-10T06:30:00Z"]
        );
        // Sydney falls back on 5 April 2026 (03:00 → 02:00).
        assert_eq!(
            fires(
                "cron(30 2 * * ? *)",
                "Australia/Sydney",
                "2026-04-03T12:00:00Z",
                3
            ),
            [
                "2026-04-03T15:30:00Z",
                "2026-04-04T15:30:00Z",
                "2026-04-05T16:30:00Z"
            ]
        );
    }

    #[test]
    fn month_ends_and_leap_days() {
        assert_eq!(
            fires("cron(0 0 L * ? *)", "UTC", "2027-12-31T12:00:00Z", 4),
            [
                "2028-01-31T00:00:00Z",
                "2028-02-29T00:00:00Z",
                "2028-03-31T00:00:00Z",
                "2028-04-30T00:00:00Z"
            ]
        );
        assert_eq!(
            fires("cron(0 12 29 2 ? *)", "UTC", "2026-01-01T00:00:00Z", 2),
            ["2028-02-29T12:00:00Z", "2032-02-29T12:00:00Z"]
        );
        // The 31st only in months that have one.
        assert_eq!(
            fires("cron(0 0 31 * ? *)", "UTC", "2026-01-31T00:00:00Z", 2),
            ["2026-03-31T00:00:00Z", "2026-05-31T00:00:00Z"]
        );
        // A year with no such day ends the schedule.
        assert!(fires("cron(0 0 30 2 ? *)", "UTC", "2026-01-01T00:00:00Z", 1).is_empty());
    }

    #[test]
    fn weekdays_nearest_last_and_nth() {
        // 1 Aug 2026 is a Saturday: 1W is Monday the 3rd.
        assert_eq!(
            fires("cron(0 9 1W 8 ? 2026)", "UTC", "2026-01-01T00:00:00Z", 1),
            ["2026-08-03T09:00:00Z"]
        );
        // 15 Nov 2026 is a Sunday: 15W is Monday the 16th.
        assert_eq!(
            fires("cron(0 9 15W 11 ? 2026)", "UTC", "2026-01-01T00:00:00Z", 1),
            ["2026-11-16T09:00:00Z"]
        );
        // The last weekday of May 2026 (the 31st is a Sunday): Friday 29th.
        assert_eq!(
            fires("cron(0 9 LW 5 ? 2026)", "UTC", "2026-01-01T00:00:00Z", 1),
            ["2026-05-29T09:00:00Z"]
        );
        // The third Friday, the last Monday, weekdays by name.
        assert_eq!(
            fires("cron(0 10 ? * 6#3 *)", "UTC", "2026-12-01T00:00:00Z", 2),
            ["2026-12-18T10:00:00Z", "2027-01-15T10:00:00Z"]
        );
        assert_eq!(
            fires("cron(0 10 ? * 2L *)", "UTC", "2026-12-01T00:00:00Z", 1),
            ["2026-12-28T10:00:00Z"]
        );
        assert_eq!(
            fires(
                "cron(0/30 8-9 ? * MON-FRI *)",
                "UTC",
                "2026-12-04T00:00:00Z",
                5
            ),
            [
                "2026-12-04T08:00:00Z",
                "2026-12-04T08:30:00Z",
                "2026-12-04T09:00:00Z",
                "2026-12-04T09:30:00Z",
                "2026-12-07T08:00:00Z"
            ]
        );
    }

    #[test]
    fn rates_count_from_the_start_and_at_fires_once() {
        assert_eq!(
            fires("rate(5 minutes)", "UTC", "2026-12-04T00:00:00Z", 2),
            ["2026-12-04T00:05:00Z", "2026-12-04T00:10:00Z"]
        );
        assert_eq!(
            fires(
                "at(2026-12-24T18:00:00)",
                "Europe/Berlin",
                "2026-12-04T00:00:00Z",
                5
            ),
            ["2026-12-24T17:00:00Z"]
        );
        assert!(fires("at(2025-01-01T00:00:00)", "UTC", "2026-12-04T00:00:00Z", 1).is_empty());
    }

    #[test]
    fn bad_expressions_are_refused_with_a_reason() {
        for bad in [
            "",
            "rate(0 minutes)",
            "rate(1 minutes)",
            "rate(5 minute)",
            "rate(5 weeks)",
            "rate(five minutes)",
            "cron(* * * * *)",
            "cron(0 0 * * * *)",
            "cron(0 0 ? * ? *)",
            "cron(60 0 * * ? *)",
            "cron(0 24 * * ? *)",
            "cron(0 0 32 * ? *)",
            "cron(0 0 * 13 ? *)",
            "cron(0 0 ? * 8 *)",
            "cron(0 0 ? * 2#6 *)",
            "cron(0 0 ? * 2-3#1 *)",
            "cron(0 0 * * ? 2200)",
            "cron(0/0 0 * * ? *)",
            "cron(0 0 40W * ? *)",
            "at(2026-12-24)",
            "at(2026-13-01T00:00:00)",
            "every(5 minutes)",
            "rate(5 minutes",
        ] {
            assert!(Expression::parse(bad, true).is_err(), "{bad}");
        }
        assert!(Expression::parse("at(2026-12-24T00:00:00)", false).is_err());
        assert!(Expression::parse(&format!("cron({})", "1,".repeat(200)), true).is_err());
        assert!(time_zone(Some("Mars/Olympus")).is_err());
    }
}
