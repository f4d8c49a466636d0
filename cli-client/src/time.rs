//! Times and durations of the contract, written for people: RFC 3339 in UTC,
//! clock times with milliseconds, and `1h 2m 3s`.
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
