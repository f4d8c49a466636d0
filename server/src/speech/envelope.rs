//! The loudness of speech as the eyes show it: an RMS envelope at 25 Hz,
//! computed from the samples before they play, mapped onto the firmware's
//! brightness digits.

/// Envelope values a second.
pub const RATE_HZ: u32 = 25;

/// The quietest level shown while speaking: the eyes dim between words but
/// do not go dark.
pub const FLOOR: u8 = 1;
/// The loudest.
pub const CEILING: u8 = 9;

/// Loudness (dBFS) shown at [`FLOOR`] and below.
const QUIET_DB: f32 = -45.0;
/// Loudness (dBFS) shown at [`CEILING`] and above.
const LOUD_DB: f32 = -12.0;

/// The brightness digit (`0`–`9`) for one window's RMS (full scale 1.0).
pub fn level(rms: f32) -> u8 {
    if rms.is_nan() || rms <= 0.0 {
        return FLOOR;
    }
    let db = 20.0 * rms.log10();
    let x = ((db - QUIET_DB) / (LOUD_DB - QUIET_DB)).clamp(0.0, 1.0);
    FLOOR + (x * f32::from(CEILING - FLOOR)).round() as u8
}

/// Folds interleaved stereo into one level per window of `1 / RATE_HZ` s.
#[derive(Debug)]
pub struct Envelope {
    window: usize,
    sum: f64,
    frames: usize,
}

impl Envelope {
    /// An envelope of audio at `rate` frames a second.
    pub fn new(rate: u32) -> Self {
        Self {
            window: (rate / RATE_HZ).max(1) as usize,
            sum: 0.0,
            frames: 0,
        }
    }

    /// Frames in one window.
    pub fn window(&self) -> usize {
        self.window
    }

    /// Adds `stereo` samples; each window completed adds its level to `levels`.
    pub fn push(&mut self, stereo: &[f32], levels: &mut Vec<u8>) {
        for frame in stereo.chunks_exact(2) {
            let (l, r) = (f64::from(frame[0]), f64::from(frame[1]));
            self.sum += (l * l + r * r) / 2.0;
            self.frames += 1;
            if self.frames == self.window {
                levels.push(self.take());
            }
        }
    }

    /// The level of the last, partial window, if any.
    pub fn finish(&mut self, levels: &mut Vec<u8>) {
        if self.frames > 0 {
            levels.push(self.take());
        }
    }

    fn take(&mut self) -> u8 {
        let rms = (self.sum / self.frames as f64).sqrt() as f32;
        self.sum = 0.0;
        self.frames = 0;
        level(rms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_is_the_floor_and_full_scale_the_ceiling() {
        assert_eq!(level(0.0), FLOOR);
        assert_eq!(level(f32::NAN), FLOOR);
        assert_eq!(level(1e-4), FLOOR);
        assert_eq!(level(1.0), CEILING);
        assert_eq!(level(0.5), CEILING);
    }

    #[test]
    fn louder_is_brighter() {
        let levels: Vec<u8> = [0.006, 0.01, 0.03, 0.06, 0.1, 0.2]
            .into_iter()
            .map(level)
            .collect();
        assert!(levels.windows(2).all(|w| w[0] <= w[1]), "{levels:?}");
        assert!(levels[0] < levels[5]);
    }

    #[test]
    fn one_level_per_window_of_a_25th_of_a_second() {
        let mut env = Envelope::new(48_000);
        assert_eq!(env.window(), 1920);
        let mut levels = Vec::new();
        // 0.1 s of a loud tone then 0.1 s of silence, in odd-sized pieces.
        let mut samples = Vec::new();
        for i in 0..4800 {
            let s = (i as f32 * 0.05).sin() * 0.5;
            samples.extend([s, s]);
        }
        samples.extend(std::iter::repeat_n(0.0, 9600));
        for piece in samples.chunks(1234) {
            env.push(piece, &mut levels);
        }
        env.finish(&mut levels);
        assert_eq!(levels.len(), 5); // 9600 frames = 5 windows
        assert_eq!(levels[0], CEILING);
        assert_eq!(*levels.last().unwrap(), FLOOR);
    }
}
