//! Typed manifest values: durations, percentages, weights, and the cron schedules of backups.
//!
//! Each parses from the text operators write (`1m30s`, `0.5%`) and serializes back to it, so
//! `wharf render` prints what a person would have written.

use std::fmt;
use std::str::FromStr;
use std::time::Duration as StdDuration;

use serde::{Serialize, Serializer};

/// A length of time written as number-unit pairs: `500ms`, `30s`, `1m30s`, `2h`, `90d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Duration(pub StdDuration);

impl Duration {
    pub const fn from_secs(secs: u64) -> Self {
        Duration(StdDuration::from_secs(secs))
    }

    pub const fn from_millis(millis: u64) -> Self {
        Duration(StdDuration::from_millis(millis))
    }

    pub fn as_std(self) -> StdDuration {
        self.0
    }
}

/// The longest duration any field takes (about ten years, for ages such as a secret's
/// `max_age`); longer values would overflow the clocks that add them to "now".
pub const MAX_DURATION: Duration = Duration::from_secs(3650 * 86_400);

/// The longest wait a timer field takes (a pause, an interval, a timeout, a deadline): 30
/// days. A longer one is a typo, and would outlive any control plane that runs it.
pub const MAX_TIMER: Duration = Duration::from_secs(30 * 86_400);

/// What a duration field accepts, checked by the decoder so every field is bounded: nothing
/// `wharf validate` accepts can overflow a clock or hand a zero period to a timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DurationRule {
    /// How often or how long something may take (a probe's interval and timeout, a latency
    /// bound, a deadline): more than zero, at most [`MAX_TIMER`].
    Period,
    /// A wait that may be skipped (a step's pause, a start period, a drain): zero to
    /// [`MAX_TIMER`].
    Wait,
    /// An age (a secret's `max_age`, a backup's): more than zero, at most [`MAX_DURATION`].
    Age,
}

impl DurationRule {
    /// Why `value` is refused, as the diagnostic's message tail and hint; `None` if it fits.
    pub fn check(self, value: Duration) -> Option<(String, String)> {
        let (positive, max) = match self {
            DurationRule::Period => (true, MAX_TIMER),
            DurationRule::Wait => (false, MAX_TIMER),
            DurationRule::Age => (true, MAX_DURATION),
        };
        if positive && value.0.is_zero() {
            return Some((
                "must be more than zero".to_owned(),
                "a zero period would fire without pause; leave the key out for the default"
                    .to_owned(),
            ));
        }
        (value > max).then(|| {
            (
                format!("{value} is longer than the maximum {max}"),
                format!("use at most {max}"),
            )
        })
    }
}

/// Why a duration did not parse; the text is the hint shown to the user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValueError(pub String);

impl FromStr for Duration {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        const UNITS: &str = "use a number with a unit: ms, s, m, h or d (e.g. `500ms`, `1m30s`)";
        let text = text.trim();
        if text.is_empty() {
            return Err(ValueError(UNITS.to_owned()));
        }
        if text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ValueError(format!(
                "`{text}` has no unit; write `{text}s` for seconds"
            )));
        }
        let mut total = StdDuration::ZERO;
        let mut rest = text;
        while !rest.is_empty() {
            let digits = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(|| ValueError(UNITS.to_owned()))?;
            let number: f64 = rest[..digits]
                .parse()
                .map_err(|_| ValueError(UNITS.to_owned()))?;
            let unit_end = rest[digits..]
                .find(|c: char| c.is_ascii_digit())
                .map_or(rest.len(), |i| digits + i);
            let seconds = match &rest[digits..unit_end] {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                "d" => 86_400.0,
                unit => return Err(ValueError(format!("unknown unit `{unit}`; {UNITS}"))),
            };
            total = StdDuration::try_from_secs_f64(number * seconds)
                .ok()
                .and_then(|part| total.checked_add(part))
                .filter(|sum| *sum <= MAX_DURATION.0)
                .ok_or_else(|| {
                    ValueError(format!(
                        "durations are at most {MAX_DURATION} ({} days)",
                        MAX_DURATION.0.as_secs() / 86_400
                    ))
                })?;
            rest = &rest[unit_end..];
        }
        Ok(Duration(total))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut millis = self.0.as_millis();
        if millis == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [
            ("d", 86_400_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1000),
        ] {
            if millis >= size {
                write!(f, "{}{unit}", millis / size)?;
                millis %= size;
            }
        }
        if millis > 0 {
            write!(f, "{millis}ms")?;
        }
        Ok(())
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A percentage such as `1%` or `0.5%`, kept as a fraction in `0.0..=1.0`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default)]
pub struct Percent(f64);

impl Percent {
    /// The fraction: `1%` is `0.01`.
    pub fn fraction(self) -> f64 {
        self.0
    }
}

impl FromStr for Percent {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let number = text
            .trim()
            .strip_suffix('%')
            .ok_or_else(|| ValueError(format!("write a percentage with `%`, e.g. `{text}%`")))?;
        let value: f64 = number
            .trim()
            .parse()
            .map_err(|_| ValueError("write a percentage such as `1%` or `0.5%`".to_owned()))?;
        if !(0.0..=100.0).contains(&value) {
            return Err(ValueError(
                "a percentage lies between 0% and 100%".to_owned(),
            ));
        }
        Ok(Percent(value / 100.0))
    }
}

impl fmt::Display for Percent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Round to remove binary noise (0.5% → 0.005 → 0.5).
        let percent = (self.0 * 100.0 * 1e6).round() / 1e6;
        write!(f, "{percent}%")
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// A traffic weight in percent, `0..=100`. Cannot be built out of range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Weight(u8);

impl Weight {
    pub const FULL: Weight = Weight(100);

    pub fn new(value: u64) -> Option<Weight> {
        u8::try_from(value).ok().filter(|v| *v <= 100).map(Weight)
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

/// A five-field cron expression (minute hour day-of-month month day-of-week), checked when the
/// manifest is validated so a typo is caught before the first backup is missed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct CronSchedule(String);

impl CronSchedule {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn cron(&self) -> Option<croner::Cron> {
        croner::parser::CronParser::new().parse(&self.0).ok()
    }

    /// The first time the schedule fires strictly after `after_ms` (Unix milliseconds, UTC:
    /// schedules are read in UTC, whatever the machine's zone).
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let at = chrono::DateTime::from_timestamp_millis(after_ms)?;
        let next = self.cron()?.find_next_occurrence(&at, false).ok()?;
        Some(next.timestamp_millis())
    }

    /// The last time the schedule fired at or before `at_ms` (Unix milliseconds, UTC).
    pub fn last_at_or_before(&self, at_ms: i64) -> Option<i64> {
        let at = chrono::DateTime::from_timestamp_millis(at_ms)?;
        let previous = self.cron()?.find_previous_occurrence(&at, true).ok()?;
        Some(previous.timestamp_millis())
    }
}

impl FromStr for CronSchedule {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        let fields = text.split_whitespace().count();
        let is_nickname = text.starts_with('@');
        if !is_nickname && fields != 5 {
            return Err(ValueError(format!(
                "a cron schedule has 5 fields (minute hour day month weekday), this one has {fields}; e.g. `0 3 * * *`"
            )));
        }
        croner::parser::CronParser::new()
            .parse(text)
            .map_err(|err| ValueError(format!("invalid cron schedule: {err}")))?;
        Ok(CronSchedule(text.trim().to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_and_print_back() {
        for (text, millis, shown) in [
            ("500ms", 500, "500ms"),
            ("30s", 30_000, "30s"),
            ("1m30s", 90_000, "1m30s"),
            ("90d", 90 * 86_400_000, "90d"),
            ("1.5s", 1500, "1s500ms"),
        ] {
            let d: Duration = text.parse().unwrap();
            assert_eq!(d.0.as_millis(), millis, "{text}");
            assert_eq!(d.to_string(), shown);
        }
        for bad in [
            "",
            "30",
            "5x",
            "s",
            "1m30",
            "-1s",
            "18446744073709551s",
            "1844674407370955161s1844674407370955161s",
            "3651d",
        ] {
            assert!(bad.parse::<Duration>().is_err(), "{bad}");
        }
    }

    #[test]
    fn duration_rules_bound_each_kind_of_field() {
        let d = |text: &str| text.parse::<Duration>().unwrap();
        assert!(DurationRule::Period.check(d("0s")).is_some());
        assert!(DurationRule::Period.check(d("1ms")).is_none());
        assert!(DurationRule::Period.check(d("30d")).is_none());
        assert!(DurationRule::Period.check(d("31d")).is_some());
        assert!(DurationRule::Wait.check(d("0s")).is_none());
        assert!(DurationRule::Wait.check(d("31d")).is_some());
        assert!(DurationRule::Age.check(d("365d")).is_none());
        assert!(DurationRule::Age.check(d("0s")).is_some());
    }

    #[test]
    fn cron_schedules_fire_in_utc() {
        let daily: CronSchedule = "30 2 * * *".parse().unwrap();
        // 2026-12-05T12:00:00Z
        let noon = 1_796_472_000_000;
        let next = daily.next_after(noon).unwrap();
        assert_eq!(next, noon + (14 * 60 + 30) * 60_000, "02:30 the next day");
        assert_eq!(
            daily.last_at_or_before(noon).unwrap(),
            noon - (9 * 60 + 30) * 60_000
        );
        assert_eq!(daily.last_at_or_before(next).unwrap(), next, "inclusive");
        assert_eq!(daily.next_after(next).unwrap(), next + 86_400_000);
    }

    #[test]
    fn percents_are_fractions() {
        assert_eq!("1%".parse::<Percent>().unwrap().fraction(), 0.01);
        assert_eq!("0.5%".parse::<Percent>().unwrap().to_string(), "0.5%");
        assert!("1".parse::<Percent>().is_err());
        assert!("101%".parse::<Percent>().is_err());
    }

    #[test]
    fn cron_needs_five_valid_fields() {
        assert!("0 3 * * *".parse::<CronSchedule>().is_ok());
        assert!("0 3 * *".parse::<CronSchedule>().is_err());
        assert!("61 3 * * *".parse::<CronSchedule>().is_err());
        assert!("@daily".parse::<CronSchedule>().is_ok());
    }
}
