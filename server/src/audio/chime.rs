//! The mode chime: a few soft sine notes the server synthesizes itself (no
//! file ships with it), played on the effects bus when the droid's mode
//! changes, as the original droid did.
//!
//! Each mode has its own figure: INTERACTIVE rises over three notes (C6 E6
//! G6, "awake"), AMBIENT rises over two (A5 D6), IDLE falls over two (G5 C5,
//! "at rest"); no two figures share a note, so a listener (or a test) can
//! tell them apart. Every note starts with a raised-cosine attack and decays
//! like a struck bell; the whole chime ends with a fade to exact silence, so
//! it clicks neither in nor out. It peaks at [`PEAK`], well below full scale.
//!
//! The samples are computed once, at the output's rate, when the audio
//! starts ([`Chimes`]); playing one copies them into a ring of their own
//! that the mixer reads like any decoded voice ([`Chimes::source`]): no
//! decoder thread, no file, no cache to go stale when the rate changes.

use std::{
    f64::consts::PI,
    sync::{Arc, atomic::AtomicBool},
    time::Duration,
};

use super::{CHANNELS, mixer::Source};
use crate::modes::Mode;

/// The chime's loudest sample (about −14 dBFS): a cue, not an alarm.
pub const PEAK: f32 = 0.2;
/// How long a chime lasts.
pub const LENGTH: Duration = Duration::from_millis(500);
/// Each note's rise from silence (a raised cosine).
const ATTACK: f64 = 0.012;
/// Each note's decay time constant after the attack.
const DECAY: f64 = 0.11;
/// The whole chime fades to silence over its last this long.
const FADE_OUT: f64 = 0.04;

/// A mode's notes (Hz), in the order they sound, and the time between
/// their onsets (s). STARTUP has none: the droid is only booting.
pub fn figure(mode: Mode) -> Option<(&'static [f64], f64)> {
    match mode {
        Mode::Interactive => Some((&[1046.50, 1318.51, 1567.98], 0.09)),
        Mode::Ambient => Some((&[880.00, 1174.66], 0.12)),
        Mode::Idle => Some((&[783.99, 523.25], 0.14)),
        Mode::Startup => None,
    }
}

/// The chime of `mode` at `rate` frames a second, as interleaved stereo
/// (both channels alike); empty for a mode without one.
pub fn render(mode: Mode, rate: u32) -> Vec<f32> {
    let Some((notes, spacing)) = figure(mode) else {
        return Vec::new();
    };
    let rate_f = f64::from(rate);
    let frames = (LENGTH.as_secs_f64() * rate_f).round() as usize;
    let mut mono: Vec<f64> = (0..frames)
        .map(|n| {
            let t = n as f64 / rate_f;
            let sum: f64 = notes
                .iter()
                .enumerate()
                .map(|(i, &freq)| {
                    let local = t - i as f64 * spacing;
                    if local < 0.0 {
                        return 0.0;
                    }
                    let envelope = if local < ATTACK {
                        0.5 - 0.5 * (PI * local / ATTACK).cos()
                    } else {
                        (-(local - ATTACK) / DECAY).exp()
                    };
                    envelope * (2.0 * PI * freq * local).sin()
                })
                .sum();
            let to_end = (frames - 1 - n) as f64 / rate_f;
            let fade = if to_end < FADE_OUT {
                0.5 - 0.5 * (PI * to_end / FADE_OUT).cos()
            } else {
                1.0
            };
            sum * fade
        })
        .collect();
    let loudest = mono.iter().fold(0.0_f64, |m, s| m.max(s.abs()));
    if loudest > 0.0 {
        let scale = f64::from(PEAK) / loudest;
        mono.iter_mut().for_each(|s| *s *= scale);
    }
    mono.into_iter()
        .flat_map(|s| [s as f32; CHANNELS])
        .collect()
}

/// Every mode's chime, computed once at the output's rate.
pub struct Chimes {
    idle: Vec<f32>,
    ambient: Vec<f32>,
    interactive: Vec<f32>,
    rate: u32,
}

impl Chimes {
    /// The chimes at `rate` frames a second.
    pub fn new(rate: u32) -> Self {
        Self {
            idle: render(Mode::Idle, rate),
            ambient: render(Mode::Ambient, rate),
            interactive: render(Mode::Interactive, rate),
            rate,
        }
    }

    fn samples(&self, mode: Mode) -> &[f32] {
        match mode {
            Mode::Idle => &self.idle,
            Mode::Ambient => &self.ambient,
            Mode::Interactive => &self.interactive,
            Mode::Startup => &[],
        }
    }

    /// A mixer source playing `mode`'s chime from memory, and how long it
    /// lasts; `None` for a mode without one. The ring holds the whole chime
    /// and is marked finished at once, so the voice ends when it is played.
    pub fn source(&self, mode: Mode) -> Option<(Source, Duration)> {
        let samples = self.samples(mode);
        if samples.is_empty() {
            return None;
        }
        let (mut producer, consumer) = rtrb::RingBuffer::new(samples.len());
        producer
            .push_entire_slice(samples)
            .expect("the ring is exactly as long as the chime");
        let length =
            Duration::from_secs_f64((samples.len() / CHANNELS) as f64 / f64::from(self.rate));
        Some((
            Source::new(consumer, Arc::new(AtomicBool::new(true))),
            length,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;

    fn left(stereo: &[f32]) -> Vec<f32> {
        stereo.iter().step_by(CHANNELS).copied().collect()
    }

    /// The power of `freq` in `signal` (Goertzel), normalised so that a
    /// full-length sine of amplitude `a` gives about `a² / 4`.
    fn power(signal: &[f32], freq: f64, rate: u32) -> f64 {
        let w = 2.0 * PI * freq / f64::from(rate);
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0, 0.0);
        for &x in signal {
            let s = f64::from(x) + coeff * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        let n = signal.len() as f64;
        (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (n * n)
    }

    #[test]
    fn each_mode_has_a_short_chime_and_startup_none() {
        for mode in [Mode::Idle, Mode::Ambient, Mode::Interactive] {
            let samples = render(mode, RATE);
            let seconds = samples.len() as f64 / CHANNELS as f64 / f64::from(RATE);
            assert!((0.3..=0.6).contains(&seconds), "{mode}: {seconds} s");
        }
        assert!(render(Mode::Startup, RATE).is_empty());
        assert!(Chimes::new(RATE).source(Mode::Startup).is_none());
    }

    #[test]
    fn a_chime_peaks_well_below_full_scale_and_neither_starts_nor_ends_with_a_click() {
        for mode in [Mode::Idle, Mode::Ambient, Mode::Interactive] {
            let samples = left(&render(mode, RATE));
            let peak = samples.iter().fold(0.0_f32, |m, s| m.max(s.abs()));
            assert!((peak - PEAK).abs() < 1e-4, "{mode}: peak {peak}");
            assert_eq!(samples[0], 0.0, "{mode} starts from silence");
            assert!(
                samples.last().unwrap().abs() < 1e-6,
                "{mode} ends in silence"
            );
            // No step larger than its sines, all at the peak at once, could
            // make: the envelope never jumps.
            let (notes, _) = figure(mode).unwrap();
            let steepest = 2.0 * PI * notes.iter().sum::<f64>() * f64::from(PEAK) / f64::from(RATE);
            let jump = samples
                .windows(2)
                .map(|w| (w[1] - w[0]).abs())
                .fold(0.0_f32, f32::max);
            assert!(f64::from(jump) <= steepest, "{mode}: jump {jump}");
            // The first and last 2 ms are quiet: a soft attack, a faded end.
            let edge = (RATE / 500) as usize;
            for s in samples[..edge]
                .iter()
                .chain(&samples[samples.len() - edge..])
            {
                assert!(s.abs() < PEAK / 4.0, "{mode}: {s} at an edge");
            }
        }
    }

    #[test]
    fn each_chime_sounds_its_own_notes_and_not_the_others() {
        let modes = [Mode::Idle, Mode::Ambient, Mode::Interactive];
        for mode in modes {
            let samples = left(&render(mode, RATE));
            let (own, _) = figure(mode).unwrap();
            let quietest_own = own
                .iter()
                .map(|&f| power(&samples, f, RATE))
                .fold(f64::INFINITY, f64::min);
            for other in modes.into_iter().filter(|m| *m != mode) {
                for &f in figure(other).unwrap().0 {
                    let theirs = power(&samples, f, RATE);
                    assert!(
                        theirs * 20.0 < quietest_own,
                        "{mode} at {f} Hz ({other}'s note): {theirs} against {quietest_own}"
                    );
                }
            }
        }
    }

    #[test]
    fn a_source_plays_the_whole_chime_then_ends() {
        let chimes = Chimes::new(RATE);
        let (source, length) = chimes.source(Mode::Ambient).unwrap();
        assert_eq!(length, LENGTH);
        assert_eq!(
            source.buffered_frames(),
            render(Mode::Ambient, RATE).len() / CHANNELS
        );
        assert!(source.finished.load(std::sync::atomic::Ordering::Acquire));
    }
}
