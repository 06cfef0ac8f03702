//! A job's schedule: a cron expression evaluated in an IANA time zone.
//!
//! Part of the scheduler (`root/scheduler`, [`super`]). Expressions have 5 fields (minute
//! granularity) or 6 (a leading seconds field), parsed by `croner` (names such as `MON` and
//! `JAN`, ranges, steps, `L`, `W`, `#`, and the aliases `@hourly`, `@daily`, ...); a year
//! field is refused. Times are computed in the job's time zone with `jiff` (the system's
//! zoneinfo, or jiff's bundled copy), so a daily `0 9 * * *` in `Europe/Paris` stays at 09:00
//! local across DST changes; a wall-clock time skipped by a DST gap runs at the first instant
//! after the gap, and one repeated by an overlap runs once.

use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};
use jiff::Timestamp;
use jiff::tz::TimeZone;

/// The longest accepted expression, in bytes.
pub const MAX_EXPRESSION: usize = 200;
/// The longest accepted time-zone name, in bytes.
pub const MAX_TZ: usize = 64;

/// A parsed schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: TimeZone,
}

impl Schedule {
    /// Parses `expression` in the time zone named `tz` (`UTC`, `Europe/Paris`, ...). The error
    /// says what is wrong, naming the field (`schedule` or `tz`).
    pub fn parse(expression: &str, tz: &str) -> Result<Self, String> {
        if expression.len() > MAX_EXPRESSION {
            return Err(format!(
                "`schedule` is {} bytes; at most {MAX_EXPRESSION}",
                expression.len()
            ));
        }
        let fields = expression.split_whitespace().count();
        if !(expression.trim_start().starts_with('@') || fields == 5 || fields == 6) {
            return Err(format!(
                "`schedule` must be a cron expression of 5 fields (minute hour day-of-month \
                 month day-of-week) or 6 (a leading seconds field), not {fields}: {expression:?}"
            ));
        }
        let parser = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build();
        let cron = parser.parse(expression).map_err(|e| {
            format!("`schedule` {expression:?} is not a valid cron expression: {e}")
        })?;
        let tz = zone(tz)?;
        Ok(Self { cron, tz })
    }

    /// The first time the schedule fires strictly after `after_ms` (Unix milliseconds), if it
    /// ever does.
    pub fn next_after(&self, after_ms: i64) -> Option<i64> {
        let start = Timestamp::from_millisecond(after_ms)
            .ok()?
            .to_zoned(self.tz.clone());
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|z| z.timestamp().as_millisecond())
            .filter(|&next| next > after_ms)
    }

    /// The last time the schedule fired at or before `at_ms`, if it did.
    pub fn last_at_or_before(&self, at_ms: i64) -> Option<i64> {
        let start = Timestamp::from_millisecond(at_ms)
            .ok()?
            .to_zoned(self.tz.clone());
        self.cron
            .find_previous_occurrence(&start, true)
            .ok()
            .map(|z| z.timestamp().as_millisecond())
            .filter(|&last| last <= at_ms)
    }

    /// How many times the schedule fires in `[from_ms, to_ms]`, counting at most `cap`.
    pub fn count_between(&self, from_ms: i64, to_ms: i64, cap: u32) -> u32 {
        let mut n = 0;
        let mut at = from_ms - 1;
        while n < cap {
            match self.next_after(at) {
                Some(next) if next <= to_ms => {
                    n += 1;
                    at = next;
                }
                _ => break,
            }
        }
        n
    }
}

/// The time zone named `name`, with a precise error.
pub fn zone(name: &str) -> Result<TimeZone, String> {
    if name.is_empty() || name.len() > MAX_TZ {
        return Err(format!(
            "`tz` must be an IANA time-zone name of 1 to {MAX_TZ} bytes (e.g. \"UTC\", \
             \"Europe/Paris\")"
        ));
    }
    if name.eq_ignore_ascii_case("utc") {
        return Ok(TimeZone::UTC);
    }
    TimeZone::get(name).map_err(|_| {
        format!("`tz` {name:?} is not a known IANA time zone (e.g. \"UTC\", \"America/New_York\")")
    })
}

/// `ms` (Unix milliseconds) in RFC 3339 (UTC).
pub fn rfc3339(ms: i64) -> String {
    Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_else(|_| ms.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_millisecond()
    }

    #[test]
    fn five_and_six_fields_and_their_errors() {
        let every_minute = Schedule::parse("* * * * *", "UTC").unwrap();
        assert_eq!(
            every_minute.next_after(ms("2026-01-01T00:00:30Z")),
            Some(ms("2026-01-01T00:01:00Z"))
        );
        let every_second = Schedule::parse("*/1 * * * * *", "UTC").unwrap();
        assert_eq!(
            every_second.next_after(ms("2026-01-01T00:00:30Z")),
            Some(ms("2026-01-01T00:00:31Z"))
        );
        let e = Schedule::parse("* * *", "UTC").unwrap_err();
        assert!(e.contains("not 3"), "{e}");
        let e = Schedule::parse("* * * * * * 2030", "UTC").unwrap_err();
        assert!(e.contains("not 7"), "{e}");
        let e = Schedule::parse("61 * * * *", "UTC").unwrap_err();
        assert!(e.contains("not a valid cron expression"), "{e}");
        let e = Schedule::parse("* * * * *", "Mars/Olympus").unwrap_err();
        assert!(e.contains("not a known IANA time zone"), "{e}");
        assert!(Schedule::parse("@hourly", "UTC").is_ok());
    }

    #[test]
    fn a_zone_keeps_local_time_across_dst() {
        // 09:00 in Paris: 08:00 UTC in winter, 07:00 UTC in summer (DST began 2026-03-29).
        let s = Schedule::parse("0 9 * * *", "Europe/Paris").unwrap();
        assert_eq!(
            s.next_after(ms("2026-03-28T12:00:00Z")),
            Some(ms("2026-03-29T07:00:00Z"))
        );
        assert_eq!(
            s.next_after(ms("2026-03-27T12:00:00Z")),
            Some(ms("2026-03-28T08:00:00Z"))
        );
        assert_eq!(
            s.last_at_or_before(ms("2026-03-29T07:00:00Z")),
            Some(ms("2026-03-29T07:00:00Z"))
        );
        assert_eq!(
            s.count_between(ms("2026-03-01T00:00:00Z"), ms("2026-03-10T23:00:00Z"), 100),
            10
        );
    }
}
