//! Moves as plain data: the easing curves, how long a move must take to
//! stay within a servo's speed limit, where it is at any moment, and when
//! its targets are sent (every [`FRAME`], 50 Hz, the last one exactly at
//! the end, on the goal). Also the parsers the console and the plans use
//! for a move's words.

use std::{fmt, str::FromStr, time::Duration};

use serde::Serialize;

/// The host's interpolation period: 50 targets a second per moving servo,
/// one per servo pulse period of a hobby servo.
pub const FRAME: Duration = Duration::from_millis(20);

/// How a move goes from where a servo is to its goal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Easing {
    /// At a constant speed.
    Linear,
    /// Starts and ends gently: the smoothstep curve `3t² − 2t³`, whose top
    /// speed is 1.5 times the average.
    #[default]
    EaseInOut,
    /// One target at once: the servo goes as fast as it can (or as the
    /// board's speed limit, `max_speed`, lets it).
    Step,
}

impl Easing {
    /// Every easing, for messages.
    pub const ALL: [Easing; 3] = [Easing::Linear, Easing::EaseInOut, Easing::Step];

    /// The easing's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Easing::Linear => "linear",
            Easing::EaseInOut => "ease-in-out",
            Easing::Step => "step",
        }
    }

    /// The fraction of the way covered at `t` (0.0–1.0) of the time.
    pub fn apply(self, t: f64) -> f64 {
        let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
        match self {
            Easing::Linear => t,
            Easing::EaseInOut => t * t * (3.0 - 2.0 * t),
            Easing::Step => {
                if t > 0.0 {
                    1.0
                } else {
                    0.0
                }
            }
        }
    }

    /// The top speed over the average speed: how much longer than
    /// distance ÷ max speed a move must take.
    pub fn peak_factor(self) -> f64 {
        match self {
            Easing::EaseInOut => 1.5,
            Easing::Linear | Easing::Step => 1.0,
        }
    }
}

impl fmt::Display for Easing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Easing {
    type Err = String;

    /// `linear`, `ease-in-out` (also `ease_in_out`, `easeinout`) or `step`.
    fn from_str(s: &str) -> Result<Self, String> {
        let key: String = s
            .trim()
            .to_ascii_lowercase()
            .chars()
            .filter(|c| !matches!(c, '-' | '_'))
            .collect();
        match key.as_str() {
            "linear" => Ok(Easing::Linear),
            "easeinout" => Ok(Easing::EaseInOut),
            "step" => Ok(Easing::Step),
            _ => Err(format!(
                "unknown easing '{s}'; use linear, ease-in-out (the default) or step"
            )),
        }
    }
}

/// A position argument: a number from 0.0 (the servo's `min_us`) to 1.0
/// (its `max_us`).
pub fn parse_position(text: &str) -> Result<f64, String> {
    let value: f64 = text.trim().parse().map_err(|_| {
        format!("'{text}' is not a position; use a number from 0.0 (min_us) to 1.0 (max_us)")
    })?;
    check_position(value)?;
    Ok(value)
}

/// A position must be within 0.0–1.0.
pub fn check_position(value: f64) -> Result<(), String> {
    if value.is_nan() || !(0.0..=1.0).contains(&value) {
        return Err(format!(
            "position {value} is outside the servo's range; use a number from 0.0 (min_us) to 1.0 (max_us)"
        ));
    }
    Ok(())
}

/// A duration argument: seconds (`1.5`) or with a unit (`1500ms`, `2s`).
/// Negative durations are refused.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.starts_with('-') {
        return Err(format!(
            "a move cannot take a negative time ('{text}'); use seconds such as 1.5, or 500ms"
        ));
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds)
            .map_err(|_| format!("'{text}' is not a duration; use seconds such as 1.5, or 500ms"));
    }
    humantime::parse_duration(text)
        .map_err(|_| format!("'{text}' is not a duration; use seconds such as 1.5, or 500ms"))
}

/// How long a move from `from` to `to` (quarter-µs) takes when
/// `requested`, with `easing`, for a servo whose top speed is
/// `max_speed` quarter-µs a second: never less than its speed allows, so
/// the top speed of the curve stays within it. Also whether the speed
/// lengthened it.
pub fn plan_duration(
    from: u16,
    to: u16,
    requested: Duration,
    easing: Easing,
    max_speed: Option<f64>,
) -> (Duration, bool) {
    let distance = f64::from(from.abs_diff(to));
    let Some(speed) = max_speed.filter(|s| s.is_finite() && *s > 0.0) else {
        return (requested, false);
    };
    let needed = distance * easing.peak_factor() / speed;
    // Rounded up to the microsecond, so the curve never beats the speed.
    let needed = Duration::from_micros((needed * 1e6).ceil() as u64);
    if needed > requested {
        (needed, true)
    } else {
        (requested, false)
    }
}

/// A move's path in time, relative to its start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Path {
    /// Quarter-µs at the start.
    pub from: u16,
    /// Quarter-µs at the end.
    pub to: u16,
    /// How long it takes.
    pub duration: Duration,
    /// The curve.
    pub easing: Easing,
}

impl Path {
    /// Where the move is `elapsed` after its start, in quarter-µs: rounded
    /// to the protocol's unit, exactly `to` at and after the end.
    pub fn at(&self, elapsed: Duration) -> u16 {
        if elapsed >= self.duration || self.easing == Easing::Step {
            return self.to;
        }
        let t = elapsed.as_secs_f64() / self.duration.as_secs_f64();
        let from = f64::from(self.from);
        let to = f64::from(self.to);
        (from + (to - from) * self.easing.apply(t)).round() as u16
    }

    /// The moment (after the start) of the frame after `elapsed`: every
    /// [`FRAME`], and the end itself as the last one; `None` once the end
    /// has been sent.
    pub fn next_frame(&self, elapsed: Duration) -> Option<Duration> {
        if self.easing == Easing::Step || elapsed >= self.duration {
            return None;
        }
        let frames = elapsed.as_nanos() / FRAME.as_nanos() + 1;
        let next = FRAME * u32::try_from(frames).unwrap_or(u32::MAX);
        Some(next.min(self.duration))
    }

    /// How many targets the move sends: one per frame, the end included.
    pub fn frames(&self) -> u32 {
        if self.easing == Easing::Step || self.duration.is_zero() {
            return 1;
        }
        let full = self.duration.as_nanos().div_ceil(FRAME.as_nanos());
        u32::try_from(full).unwrap_or(u32::MAX)
    }

    /// When the curve passes `value` (quarter-µs), for a monotonic move: by
    /// bisection. For measuring how late targets come.
    pub fn time_of(&self, value: f64) -> Duration {
        let (from, to) = (f64::from(self.from), f64::from(self.to));
        if from == to || self.easing == Easing::Step {
            return Duration::ZERO;
        }
        let fraction = ((value - from) / (to - from)).clamp(0.0, 1.0);
        let (mut low, mut high) = (0.0f64, 1.0f64);
        for _ in 0..60 {
            let mid = (low + high) / 2.0;
            if self.easing.apply(mid) < fraction {
                low = mid;
            } else {
                high = mid;
            }
        }
        self.duration.mul_f64((low + high) / 2.0)
    }
}

/// A servo's range, in quarter-microseconds, and its position there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Range {
    /// `min_us` × 4.
    pub min: u16,
    /// `max_us` × 4.
    pub max: u16,
}

impl Range {
    /// The target for a position (0.0–1.0, clamped).
    pub fn target(&self, position: f64) -> u16 {
        let position = if position.is_nan() {
            0.0
        } else {
            position.clamp(0.0, 1.0)
        };
        let span = f64::from(self.max - self.min);
        self.clamp((f64::from(self.min) + span * position).round() as u16)
    }

    /// A target kept within the range: nothing is ever sent outside it.
    pub fn clamp(&self, target: u16) -> u16 {
        target.clamp(self.min, self.max)
    }

    /// The position (0.0–1.0) of a target.
    pub fn position(&self, target: u16) -> f64 {
        let span = f64::from(self.max - self.min);
        if span == 0.0 {
            return 0.0;
        }
        ((f64::from(target) - f64::from(self.min)) / span).clamp(0.0, 1.0)
    }

    /// A speed in fractions of the range a second, in quarter-µs a second.
    pub fn speed(&self, fraction_per_s: f64) -> f64 {
        fraction_per_s * f64::from(self.max - self.min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_curves_start_at_0_end_at_1_and_never_go_back() {
        for easing in Easing::ALL {
            assert_eq!(easing.apply(0.0), 0.0, "{easing}");
            assert_eq!(easing.apply(1.0), 1.0, "{easing}");
            let mut last = 0.0;
            for i in 0..=1000 {
                let v = easing.apply(f64::from(i) / 1000.0);
                assert!(v >= last, "{easing} goes back at {i}");
                last = v;
            }
        }
        assert_eq!(Easing::EaseInOut.apply(0.5), 0.5);
        assert!(Easing::EaseInOut.apply(0.1) < 0.1, "starts gently");
        assert!(Easing::EaseInOut.apply(0.9) > 0.9, "ends gently");
        assert_eq!(Easing::Linear.apply(0.25), 0.25);
        assert_eq!(Easing::Linear.apply(f64::NAN), 0.0);
        assert_eq!(Easing::Linear.apply(7.0), 1.0);
        // The smoothstep's top speed, at the middle, is 1.5 times the average.
        let h = 1e-6;
        let slope =
            (Easing::EaseInOut.apply(0.5 + h) - Easing::EaseInOut.apply(0.5 - h)) / (2.0 * h);
        assert!((slope - Easing::EaseInOut.peak_factor()).abs() < 1e-6);
    }

    #[test]
    fn easings_and_arguments_parse() {
        assert_eq!("ease-in-out".parse(), Ok(Easing::EaseInOut));
        assert_eq!("Ease_In_Out".parse(), Ok(Easing::EaseInOut));
        assert_eq!("linear".parse(), Ok(Easing::Linear));
        assert_eq!("step".parse(), Ok(Easing::Step));
        assert!(
            "bounce"
                .parse::<Easing>()
                .unwrap_err()
                .contains("ease-in-out")
        );
        assert_eq!(Easing::default(), Easing::EaseInOut);

        assert_eq!(parse_position("0.25"), Ok(0.25));
        assert_eq!(parse_position("1"), Ok(1.0));
        assert!(parse_position("1.01").unwrap_err().contains("outside"));
        assert!(parse_position("-0.1").is_err());
        assert!(parse_position("NaN").is_err());
        assert!(parse_position("up").unwrap_err().contains("not a position"));

        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("-1").unwrap_err().contains("negative"));
        assert!(parse_duration("-1s").unwrap_err().contains("negative"));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn a_move_is_lengthened_to_keep_within_the_speed() {
        // 4000 quarter-µs at 2000 a second: linear needs 2 s, ease-in-out 3 s.
        let (d, limited) = plan_duration(
            4000,
            8000,
            Duration::from_secs(1),
            Easing::Linear,
            Some(2000.0),
        );
        assert_eq!((d, limited), (Duration::from_secs(2), true));
        let (d, limited) = plan_duration(
            8000,
            4000,
            Duration::from_secs(1),
            Easing::EaseInOut,
            Some(2000.0),
        );
        assert_eq!((d, limited), (Duration::from_secs(3), true));
        // Slow enough already: as asked.
        let (d, limited) = plan_duration(
            4000,
            5000,
            Duration::from_secs(1),
            Easing::EaseInOut,
            Some(2000.0),
        );
        assert_eq!((d, limited), (Duration::from_secs(1), false));
        // No limit: as asked, even at once.
        assert_eq!(
            plan_duration(4000, 8000, Duration::ZERO, Easing::Step, None),
            (Duration::ZERO, false)
        );
        // A step at a limited speed lasts as long as the board takes.
        assert_eq!(
            plan_duration(4000, 8000, Duration::ZERO, Easing::Step, Some(4000.0)),
            (Duration::from_secs(1), true)
        );
    }

    #[test]
    fn a_paths_frames_come_every_20ms_and_end_on_the_goal() {
        let path = Path {
            from: 4000,
            to: 8000,
            duration: Duration::from_secs(1),
            easing: Easing::EaseInOut,
        };
        assert_eq!(path.frames(), 50);
        let mut elapsed = Duration::ZERO;
        let mut frames = Vec::new();
        while let Some(next) = path.next_frame(elapsed) {
            frames.push((next, path.at(next)));
            elapsed = next;
        }
        assert_eq!(frames.len(), 50);
        assert_eq!(frames[0].0, FRAME);
        assert_eq!(frames.last().unwrap(), &(Duration::from_secs(1), 8000));
        assert!(frames.windows(2).all(|w| w[0].1 <= w[1].1), "monotonic");
        assert_eq!(path.at(Duration::from_millis(500)), 6000);
        // A late wake-up skips to the next frame after now.
        assert_eq!(
            path.next_frame(Duration::from_millis(47)),
            Some(Duration::from_millis(60))
        );
        // An uneven length: the last frame is the end.
        let odd = Path {
            duration: Duration::from_millis(50),
            ..path
        };
        assert_eq!(odd.frames(), 3);
        assert_eq!(
            odd.next_frame(Duration::from_millis(40)),
            Some(Duration::from_millis(50))
        );
        assert_eq!(odd.next_frame(Duration::from_millis(50)), None);
        // The inverse.
        let t = path.time_of(6000.0);
        assert!((t.as_secs_f64() - 0.5).abs() < 1e-9, "{t:?}");
    }

    #[test]
    fn ranges_map_positions_and_clamp_targets() {
        let range = Range {
            min: 4000,
            max: 8000,
        };
        assert_eq!(range.target(0.0), 4000);
        assert_eq!(range.target(1.0), 8000);
        assert_eq!(range.target(0.5), 6000);
        assert_eq!(range.target(7.0), 8000);
        assert_eq!(range.target(f64::NAN), 4000);
        assert_eq!(range.clamp(100), 4000);
        assert_eq!(range.clamp(9000), 8000);
        assert_eq!(range.position(7000), 0.75);
        assert_eq!(range.speed(0.5), 2000.0);
    }
}
