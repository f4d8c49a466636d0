//! The mixer's gain math: ramps, fade curves and the master volume taper.
//!
//! Pure arithmetic with no I/O and no allocation, so the real-time mixer can
//! call it per frame and its tests are plain data in, data out. A gain is a
//! linear amplitude factor (1.0 = unchanged, 0.0 = silence).
//!
//! Every change of gain in the mixer goes through a [`Ramp`]: a jump in gain
//! is a step in the waveform, which is heard as a click.

use std::{f64::consts::FRAC_PI_2, time::Duration};

/// The master volume the server starts with, on the 0–100 scale of [`volume_to_gain`].
pub const DEFAULT_VOLUME: u8 = 70;

/// How far the music is lowered while the droid speaks (a gain, 0.5 ≈ −6 dB).
pub const DEFAULT_DUCK_LEVEL: f32 = 0.5;

/// How long the music takes to duck, and to come back.
pub const DEFAULT_DUCK_FADE: Duration = Duration::from_millis(500);

/// How long a crossfade between two songs lasts.
pub const DEFAULT_CROSSFADE: Duration = Duration::from_secs(3);

/// The shape of a ramp from its start to its target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Curve {
    /// Straight line in amplitude: the same step every frame.
    #[default]
    Linear,
    /// The rising half of an equal-power pair: the ramp covers `sin(t·π/2)` of
    /// the way at `t` (fast first, slow at the end). From 0 to 1 it is exactly
    /// `sin(t·π/2)`.
    EqualPowerIn,
    /// The falling half of an equal-power pair: the ramp covers
    /// `1 − cos(t·π/2)` of the way at `t` (slow first, fast at the end). From 1
    /// to 0 it is exactly `cos(t·π/2)`, so beside an [`EqualPowerIn`] ramp of
    /// the same length from 0 to 1 the two squares sum to 1 at every frame:
    /// the crossfade keeps a constant power, without the dip in loudness that
    /// two linear ramps make halfway through.
    ///
    /// [`EqualPowerIn`]: Curve::EqualPowerIn
    EqualPowerOut,
}

impl Curve {
    /// The fraction of the way from start to target covered at `t` ∈ [0, 1].
    fn shape(self, t: f64) -> f64 {
        match self {
            Curve::Linear => t,
            Curve::EqualPowerIn => (t * FRAC_PI_2).sin(),
            Curve::EqualPowerOut => 1.0 - (t * FRAC_PI_2).cos(),
        }
    }
}

/// A per-frame gain moving from its current value to a target over a number
/// of frames, along a [`Curve`].
///
/// Frame `k` of an `N`-frame ramp (counting from 1) has the value at
/// `t = k / N`, so the `N`-th frame is exactly the target and the frame before
/// the ramp began is where it started from: no step at either end. Values are
/// computed from the frame count, not accumulated, so a long ramp does not
/// drift.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ramp {
    /// Where the ramp started: the value when [`Ramp::to`] was called.
    start: f32,
    /// Where the ramp ends.
    target: f32,
    /// The value of the last frame produced (or `start` before the first).
    value: f32,
    /// The ramp's length; 0 when it is a fixed value.
    frames: u32,
    /// Frames produced so far, up to `frames`.
    elapsed: u32,
    /// `1 / frames`, kept so a frame costs a multiplication, not a division.
    step: f64,
    /// The ramp's shape.
    curve: Curve,
}

impl Ramp {
    /// A gain that stays at `value` until told to move.
    pub const fn fixed(value: f32) -> Ramp {
        Ramp {
            start: value,
            target: value,
            value,
            frames: 0,
            elapsed: 0,
            step: 0.0,
            curve: Curve::Linear,
        }
    }

    /// Moves to `target` over `frames` frames along `curve`, starting from the
    /// current value, so retargeting a ramp halfway never jumps. Zero frames
    /// jumps at once: only for when a jump is really wanted.
    pub fn to(&mut self, target: f32, frames: u32, curve: Curve) {
        self.start = self.value;
        self.target = target;
        self.frames = frames;
        self.elapsed = 0;
        self.step = if frames == 0 {
            0.0
        } else {
            1.0 / f64::from(frames)
        };
        self.curve = curve;
        if frames == 0 {
            self.value = target;
        }
    }

    /// The value for this frame; then the ramp moves on by one frame.
    #[expect(
        clippy::should_implement_trait,
        reason = "a ramp never ends, so `Iterator`'s `Option` would only add a branch to the mixer's hot loop"
    )]
    pub fn next(&mut self) -> f32 {
        if self.elapsed < self.frames {
            self.elapsed += 1;
            self.value = if self.elapsed == self.frames {
                // Exactly the target, whatever the rounding on the way.
                self.target
            } else {
                let t = f64::from(self.elapsed) * self.step;
                let (start, target) = (f64::from(self.start), f64::from(self.target));
                (start + (target - start) * self.curve.shape(t)) as f32
            };
        }
        self.value
    }

    /// Fills `out` with the values of the next `out.len()` frames: the same as
    /// calling [`Ramp::next`] for each, cheaper once the ramp is done.
    pub fn fill(&mut self, out: &mut [f32]) {
        let moving = (self.remaining() as usize).min(out.len());
        let (ramping, steady) = out.split_at_mut(moving);
        for value in ramping {
            *value = self.next();
        }
        steady.fill(self.value);
    }

    /// The value of the last frame produced: where a new ramp would start from.
    pub fn value(&self) -> f32 {
        self.value
    }

    /// Where the ramp is going (its value once done).
    pub fn target(&self) -> f32 {
        self.target
    }

    /// Whether the target has been reached.
    pub fn is_done(&self) -> bool {
        self.elapsed >= self.frames
    }

    /// Frames left until the target is reached (0 once done).
    pub fn remaining(&self) -> u32 {
        self.frames - self.elapsed
    }
}

impl Default for Ramp {
    /// Unity gain, not moving.
    fn default() -> Ramp {
        Ramp::fixed(1.0)
    }
}

/// The gain for a master volume from 0 (silence) to 100 (1.0, unchanged);
/// above 100 counts as 100.
///
/// The taper is cubic, `(volume / 100)³`, the mapping PulseAudio uses for its
/// software volume: loudness is heard roughly logarithmically, and a cube
/// spreads about 60 dB over the scale (10 → −60 dB, 50 → −18 dB,
/// 70 → −9.3 dB) while still reaching true silence at 0, which a pure decibel
/// scale never does. Strictly increasing, so a higher volume is never quieter.
pub fn volume_to_gain(volume: u8) -> f32 {
    let fraction = f32::from(volume.min(100)) / 100.0;
    fraction * fraction * fraction
}

/// The number of frames `duration` lasts at `sample_rate`, to the nearest
/// frame (saturating at `u32::MAX`, about 24 hours at 48 kHz).
pub fn frames_for(duration: Duration, sample_rate: u32) -> u32 {
    let frames = (duration.as_nanos() * u128::from(sample_rate) + 500_000_000) / 1_000_000_000;
    u32::try_from(frames).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The values of the ramp's next `n` frames.
    fn take(ramp: &mut Ramp, n: usize) -> Vec<f32> {
        (0..n).map(|_| ramp.next()).collect()
    }

    #[test]
    fn a_fixed_ramp_stays_put() {
        let mut ramp = Ramp::fixed(0.25);
        assert!(ramp.is_done());
        assert_eq!(take(&mut ramp, 5), vec![0.25; 5]);
        assert_eq!((ramp.value(), ramp.target()), (0.25, 0.25));
        assert_eq!(Ramp::default().value(), 1.0);
    }

    #[test]
    fn a_ramp_reaches_its_target_after_exactly_n_frames() {
        for curve in [Curve::Linear, Curve::EqualPowerIn, Curve::EqualPowerOut] {
            for frames in [1u32, 2, 3, 7, 256, 1000, 48_000, 144_000] {
                for (from, to) in [(0.0f32, 1.0f32), (1.0, 0.0), (0.7, 0.3), (0.1, 0.9)] {
                    let mut ramp = Ramp::fixed(from);
                    ramp.to(to, frames, curve);
                    for k in 1..frames {
                        ramp.next();
                        assert!(!ramp.is_done(), "{curve:?} {frames}: done after {k}");
                        assert_eq!(ramp.remaining(), frames - k);
                    }
                    assert_eq!(ramp.next(), to, "{curve:?} {frames} {from}→{to}");
                    assert!(ramp.is_done());
                    assert_eq!(ramp.remaining(), 0);
                    assert_eq!(take(&mut ramp, 3), vec![to; 3], "stays at the target");
                }
            }
        }
    }

    #[test]
    fn a_linear_ramp_takes_equal_steps_from_where_it_was() {
        let mut ramp = Ramp::fixed(0.2);
        ramp.to(1.0, 8, Curve::Linear);
        let values = take(&mut ramp, 8);
        for (k, value) in values.iter().enumerate() {
            let expected = 0.2 + 0.8 * (k as f32 + 1.0) / 8.0;
            assert!(
                (value - expected).abs() < 1e-7,
                "frame {k}: {value} ≠ {expected}"
            );
        }
    }

    #[test]
    fn zero_frames_jump_at_once() {
        let mut ramp = Ramp::fixed(1.0);
        ramp.to(0.0, 0, Curve::Linear);
        assert!(ramp.is_done());
        assert_eq!(ramp.value(), 0.0);
        assert_eq!(ramp.next(), 0.0);
    }

    #[test]
    fn retargeting_halfway_continues_from_the_current_value() {
        for curve in [Curve::Linear, Curve::EqualPowerIn, Curve::EqualPowerOut] {
            let mut ramp = Ramp::fixed(0.0);
            ramp.to(1.0, 100, curve);
            let before = take(&mut ramp, 40);
            let last = *before.last().unwrap();
            assert_eq!(ramp.value(), last);
            ramp.to(0.0, 100, curve);
            let step_before = (before[39] - before[38]).abs();
            let first = ramp.next();
            // The first frame of the new ramp is one small step from the last
            // frame of the old one: no jump back to either end.
            assert!(
                (first - last).abs() <= step_before.max(0.02),
                "{curve:?}: {last} → {first}"
            );
            let rest = take(&mut ramp, 99);
            assert_eq!(*rest.last().unwrap(), 0.0);
        }
    }

    #[test]
    fn equal_power_fades_keep_constant_power() {
        for frames in [2u32, 3, 10, 441, 48_000, 144_000] {
            let mut fade_in = Ramp::fixed(0.0);
            let mut fade_out = Ramp::fixed(1.0);
            fade_in.to(1.0, frames, Curve::EqualPowerIn);
            fade_out.to(0.0, frames, Curve::EqualPowerOut);
            for k in 1..=frames {
                let (a, b) = (fade_in.next(), fade_out.next());
                let power = a * a + b * b;
                assert!(
                    (power - 1.0).abs() < 1e-6,
                    "{frames} frames, frame {k}: {power}"
                );
            }
        }
    }

    #[test]
    fn equal_power_follows_sine_and_cosine() {
        let mut fade_in = Ramp::fixed(0.0);
        let mut fade_out = Ramp::fixed(1.0);
        fade_in.to(1.0, 4, Curve::EqualPowerIn);
        fade_out.to(0.0, 4, Curve::EqualPowerOut);
        for k in 1..=4 {
            let t = f64::from(k) / 4.0;
            let (a, b) = (fade_in.next(), fade_out.next());
            assert!((f64::from(a) - (t * FRAC_PI_2).sin()).abs() < 1e-7);
            assert!((f64::from(b) - (t * FRAC_PI_2).cos()).abs() < 1e-7);
        }
    }

    #[test]
    fn every_curve_is_monotonic_in_both_directions() {
        for curve in [Curve::Linear, Curve::EqualPowerIn, Curve::EqualPowerOut] {
            let mut up = Ramp::fixed(0.0);
            up.to(1.0, 10_000, curve);
            let rising = take(&mut up, 10_000);
            assert!(rising.windows(2).all(|w| w[0] <= w[1]), "{curve:?} rising");
            assert!(rising[0] > 0.0, "{curve:?}: the first frame already moves");

            let mut down = Ramp::fixed(1.0);
            down.to(0.25, 10_000, curve);
            let falling = take(&mut down, 10_000);
            assert!(
                falling.windows(2).all(|w| w[0] >= w[1]),
                "{curve:?} falling"
            );
            assert!(
                falling.iter().all(|v| (0.25..=1.0).contains(v)),
                "{curve:?} bounded"
            );
        }
    }

    #[test]
    fn fill_matches_next_frame_by_frame() {
        for curve in [Curve::Linear, Curve::EqualPowerIn, Curve::EqualPowerOut] {
            let mut a = Ramp::fixed(0.9);
            let mut b = a;
            a.to(0.1, 300, curve);
            b.to(0.1, 300, curve);
            let mut filled = vec![0.0; 256];
            let mut expected = Vec::new();
            for _ in 0..2 {
                a.fill(&mut filled);
                expected.clear();
                expected.extend((0..256).map(|_| b.next()));
                assert_eq!(filled, expected, "{curve:?}");
            }
            assert_eq!(a, b);
        }
    }

    #[test]
    fn the_volume_taper_runs_from_silence_to_unity_and_only_rises() {
        assert_eq!(volume_to_gain(0), 0.0);
        assert_eq!(volume_to_gain(100), 1.0);
        assert_eq!(volume_to_gain(255), 1.0, "above 100 counts as 100");
        let gains: Vec<f32> = (0..=100).map(volume_to_gain).collect();
        assert!(gains.windows(2).all(|w| w[0] < w[1]), "strictly increasing");
        // The default sits near −9 dB: loud enough, with headroom for three buses.
        let db = 20.0 * volume_to_gain(DEFAULT_VOLUME).log10();
        assert!((-9.5..-9.0).contains(&db), "{db} dB");
        let half = 20.0 * volume_to_gain(50).log10();
        assert!((-18.2..-17.9).contains(&half), "{half} dB");
    }

    #[test]
    fn durations_become_whole_frames() {
        assert_eq!(frames_for(DEFAULT_DUCK_FADE, 48_000), 24_000);
        assert_eq!(frames_for(DEFAULT_CROSSFADE, 44_100), 132_300);
        assert_eq!(frames_for(Duration::ZERO, 48_000), 0);
        // 1 ms at 44.1 kHz is 44.1 frames: to the nearest.
        assert_eq!(frames_for(Duration::from_millis(1), 44_100), 44);
        assert_eq!(frames_for(Duration::from_micros(1_500), 1_000), 2);
        assert_eq!(frames_for(Duration::from_secs(u64::MAX), 48_000), u32::MAX);
    }
}
