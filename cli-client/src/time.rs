//! Times and durations of the contract, written for people: RFC 3339 in UTC,
//! clock times with milliseconds, `1h 2m 3s`, and the finer `1.5s` and
//! `0.4ms` of plan timelines and lateness.
//!
//! The server's clock and its `Timestamp`s are not ours to trust blindly:
//! humantime panics before 1970 and fails after 9999, so anything out of that
//! range reads as absent rather than taking the CLI down.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The last second humantime can write (9999-12-31T23:59:59Z).
const LAST_SECOND: i64 = 253_402_300_799;

/// The timestamp as a `SystemTime`, when it is one humantime can write.
fn system_time(timestamp: &prost_types::Timestamp) -> Option<SystemTime> {
    let seconds = u64::try_from(timestamp.seconds)
        .ok()
        .filter(|&s| s <= LAST_SECOND as u64)?;
    let nanos = u32::try_from(timestamp.nanos)
        .ok()
        .filter(|&n| n < 1_000_000_000)?;
    Some(UNIX_EPOCH + Duration::new(seconds, nanos))
}

/// `2026-11-22T15:30:12Z`: RFC 3339 in UTC, to the second.
pub fn rfc3339(timestamp: &prost_types::Timestamp) -> Option<String> {
    system_time(timestamp).map(|t| humantime::format_rfc3339_seconds(t).to_string())
}

/// `2026-11-22T15:30:12.345Z`: RFC 3339 in UTC, to the millisecond, for
/// log lines where entries come many to the second.
pub fn rfc3339_millis(timestamp: &prost_types::Timestamp) -> Option<String> {
    system_time(timestamp).map(|t| humantime::format_rfc3339_millis(t).to_string())
}

/// `15:30:12.345`: the UTC time of day, to the millisecond.
pub fn clock(timestamp: &prost_types::Timestamp) -> Option<String> {
    system_time(timestamp).map(clock_of)
}

/// The UTC time of day of `time`, to the millisecond.
pub fn clock_of(time: SystemTime) -> String {
    // `YYYY-MM-DDTHH:MM:SS.mmmZ`: the clock is the part between `T` and `Z`.
    let text = humantime::format_rfc3339_millis(time).to_string();
    text.get(11..23).unwrap_or(&text).to_string()
}

/// `1h 2m 3s`, in whole seconds as people read an uptime (the server's own
/// `status` line writes it the same way); negative reads as `0s`.
pub fn duration(duration: &prost_types::Duration) -> String {
    let seconds = u64::try_from(duration.seconds).unwrap_or(0);
    humantime::format_duration(Duration::from_secs(seconds)).to_string()
}

/// `1.5s`, `0.05s`, `12s`: seconds to the millisecond under a minute, where
/// a plan's steps are timed; `duration`'s `1m 2s` from a minute on.
pub fn seconds(duration: &prost_types::Duration) -> String {
    if duration.seconds >= 60 {
        return self::duration(duration);
    }
    let millis = duration.seconds.max(0) * 1000 + i64::from(duration.nanos.max(0)) / 1_000_000;
    let text = format!("{}.{:03}", millis / 1000, millis % 1000);
    format!("{}s", text.trim_end_matches('0').trim_end_matches('.'))
}

/// `0.4ms`, `12.3ms`: a short delay to the tenth of a millisecond, as
/// `seconds` from a second on.
pub fn millis(duration: &prost_types::Duration) -> String {
    if duration.seconds >= 1 {
        return seconds(duration);
    }
    let tenths = i64::from(duration.nanos.max(0)) / 100_000;
    format!("{}.{}ms", tenths / 10, tenths % 10)
}

#[cfg(test)]
mod tests {
    use prost_types::{Duration as ProtoDuration, Timestamp};

    use super::*;

    fn seconds(seconds: i64) -> ProtoDuration {
        ProtoDuration { seconds, nanos: 0 }
    }

    #[test]
    fn durations_read_as_hours_minutes_seconds() {
        assert_eq!(duration(&seconds(3723)), "1h 2m 3s");
        assert_eq!(duration(&seconds(3600)), "1h");
        assert_eq!(duration(&seconds(42)), "42s");
        assert_eq!(duration(&seconds(0)), "0s");
        assert_eq!(duration(&seconds(-5)), "0s");
        // Fractions are dropped, not rounded.
        let almost = ProtoDuration {
            seconds: 59,
            nanos: 999_000_000,
        };
        assert_eq!(duration(&almost), "59s");
    }

    #[test]
    fn plan_times_read_to_the_millisecond_and_lateness_to_the_tenth() {
        let d = |seconds, nanos| ProtoDuration { seconds, nanos };
        assert_eq!(super::seconds(&d(1, 500_000_000)), "1.5s");
        assert_eq!(super::seconds(&d(0, 50_000_000)), "0.05s");
        assert_eq!(super::seconds(&d(12, 0)), "12s");
        assert_eq!(super::seconds(&d(0, 0)), "0s");
        assert_eq!(super::seconds(&d(0, 400)), "0s");
        assert_eq!(super::seconds(&d(62, 500_000_000)), "1m 2s");
        assert_eq!(millis(&d(0, 400_000)), "0.4ms");
        assert_eq!(millis(&d(0, 12_345_678)), "12.3ms");
        assert_eq!(millis(&d(0, 0)), "0.0ms");
        assert_eq!(millis(&d(2, 250_000_000)), "2.25s");
    }

    #[test]
    fn timestamps_read_as_utc() {
        let t = Timestamp {
            seconds: 1_795_879_812,
            nanos: 345_678_000,
        };
        assert_eq!(rfc3339(&t).as_deref(), Some("2026-11-28T15:30:12Z"));
        assert_eq!(clock(&t).as_deref(), Some("15:30:12.345"));
        assert_eq!(
            rfc3339_millis(&t).as_deref(),
            Some("2026-11-28T15:30:12.345Z")
        );
    }

    #[test]
    fn timestamps_out_of_range_are_absent() {
        let before_1970 = Timestamp {
            seconds: -1,
            nanos: 0,
        };
        let after_9999 = Timestamp {
            seconds: LAST_SECOND + 1,
            nanos: 0,
        };
        let bad_nanos = Timestamp {
            seconds: 0,
            nanos: -1,
        };
        for t in [before_1970, after_9999, bad_nanos] {
            assert_eq!(rfc3339(&t), None, "{t:?}");
            assert_eq!(clock(&t), None, "{t:?}");
            assert_eq!(rfc3339_millis(&t), None, "{t:?}");
        }
        let last = Timestamp {
            seconds: LAST_SECOND,
            nanos: 999_999_999,
        };
        assert_eq!(clock(&last).as_deref(), Some("23:59:59.999"));
    }
}
