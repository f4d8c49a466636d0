//! The demo library's tunes: a few short tunes synthesized here (a tiny sequencer and
//! synthesizer), so a fresh droid with no `music_dir` has something to play without shipping any
//! recording.
//!
//! Only with the `demo-library` feature (on by default). Without it, a droid with no `music_dir`
//! starts with an empty library ([`super::ensure_demo_library`] says so in the log).

use std::{
    f64::consts::TAU,
    fs, io,
    path::{Path, PathBuf},
    thread,
};

use crate::{
    atomic_file,
    audio::library::{DEMO_ARTIST, hound_error},
};

/// Makes sure the demo tracks are in `dir`, writing those that are missing, and returns their
/// paths. The droid then has music on a fresh machine without shipping any recording: a few short
/// tunes synthesized here, the same bytes every time (`Cantina Demo - <Title>.wav`, 44.1 kHz
/// stereo, 16-bit).
pub(super) fn ensure_demo_library(dir: &Path) -> io::Result<Vec<PathBuf>> {
    fs::create_dir_all(dir)?;
    let paths: Vec<PathBuf> = SONGS
        .iter()
        .map(|song| dir.join(format!("{DEMO_ARTIST} - {}.wav", song.title)))
        .collect();
    // Rendering is pure CPU work (about a second a tune in an unoptimized build), so each missing
    // tune gets a thread of its own.
    let results: Vec<io::Result<()>> = thread::scope(|scope| {
        let writers: Vec<_> = SONGS
            .iter()
            .zip(&paths)
            .filter(|(_, path)| !path.exists())
            .map(|(song, path)| scope.spawn(move || write_demo(song, path)))
            .collect();
        writers
            .into_iter()
            .map(|writer| writer.join().expect("a demo track writer panicked"))
            .collect()
    });
    results.into_iter().collect::<io::Result<()>>()?;
    Ok(paths)
}

/// Writes one demo track under a hidden name and renames it into place, so an interrupted run
/// leaves no half track that the next run would take as done.
fn write_demo(song: &Song, path: &Path) -> io::Result<()> {
    let partial = atomic_file::temp_name(path);
    let written = write(song, &partial).and_then(|()| atomic_file::commit(&partial, path));
    if written.is_err() {
        let _ = fs::remove_file(&partial);
    }
    written?;
    tracing::info!(path = %path.display(), "wrote a demo track");
    Ok(())
}

/// A small, fast, seeded random number generator (SplitMix64). Generated audio must be the same
/// bytes on every machine and with every version of every crate, which `rand`'s generators do
/// not promise.
#[derive(Clone, Debug)]
struct Noise(u64);

impl Noise {
    fn new(seed: u64) -> Noise {
        Noise(seed)
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in -1.0..1.0.
    fn next_f32(&mut self) -> f32 {
        // The top 24 bits: exactly representable in an f32.
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    /// Uniform in 0..n.
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

const SAMPLE_RATE: u32 = 44_100;
const RATE: f64 = SAMPLE_RATE as f64;

/// Semitones of the major scale's degrees.
const MAJOR: [i32; 7] = [0, 2, 4, 5, 7, 9, 11];
/// Natural minor.
const MINOR: [i32; 7] = [0, 2, 3, 5, 7, 8, 10];
/// Mixolydian: major with a flat seventh, the blues' scale here.
const MIXOLYDIAN: [i32; 7] = [0, 2, 4, 5, 7, 9, 10];

/// One tune.
struct Song {
    title: &'static str,
    /// Seeds the melody and the drums' noise.
    seed: u64,
    bpm: f64,
    beats_per_bar: usize,
    /// The MIDI note of the key's root (60 is middle C).
    root: i32,
    scale: [i32; 7],
    /// The chord of each bar, as a scale degree (0-based), repeated.
    progression: &'static [i32],
    bars: usize,
    /// How late the off-beat eighths fall, as a fraction of an eighth (0 is straight).
    swing: f64,
    lead: Wave,
}

/// Four tunes in different keys, meters and tempi, 25–35 s each.
const SONGS: [Song; 4] = [
    Song {
        title: "Droid Shuffle",
        seed: 1,
        bpm: 120.0,
        beats_per_bar: 4,
        root: 60,
        scale: MAJOR,
        progression: &[0, 5, 3, 4],
        bars: 16,
        swing: 0.33,
        lead: Wave::Triangle,
    },
    Song {
        title: "Twin Moons Waltz",
        seed: 2,
        bpm: 132.0,
        beats_per_bar: 3,
        root: 57,
        scale: MINOR,
        progression: &[0, 3, 6, 2, 0, 3, 4, 4],
        bars: 20,
        swing: 0.0,
        lead: Wave::Sine,
    },
    Song {
        title: "Hyperspace Hop",
        seed: 3,
        bpm: 144.0,
        beats_per_bar: 4,
        root: 62,
        scale: MAJOR,
        progression: &[0, 4, 5, 3],
        bars: 20,
        swing: 0.0,
        lead: Wave::Square,
    },
    Song {
        title: "Moisture Farm Blues",
        seed: 4,
        bpm: 96.0,
        beats_per_bar: 4,
        root: 52,
        scale: MIXOLYDIAN,
        progression: &[0, 0, 0, 0, 3, 3, 0, 0, 4, 3, 0, 4],
        bars: 12,
        swing: 0.33,
        lead: Wave::Triangle,
    },
];

#[derive(Clone, Copy)]
enum Wave {
    Sine,
    Triangle,
    /// A soft square: the first odd harmonics only, so it does not buzz.
    Square,
}

impl Wave {
    fn at(self, phase: f64) -> f64 {
        match self {
            Wave::Sine => phase.sin(),
            Wave::Triangle => {
                let x = (phase / TAU).fract();
                4.0 * (x - 0.5).abs() - 1.0
            }
            Wave::Square => {
                phase.sin() + (3.0 * phase).sin() / 3.0 + (5.0 * phase).sin() / 5.0 * 0.7
            }
        }
    }
}

/// Interleaved stereo samples being mixed.
struct Mix {
    samples: Vec<f32>,
}

/// A note to add to the mix.
struct Note {
    start: f64,
    length: f64,
    hz: f64,
    wave: Wave,
    gain: f64,
    /// -1 left … 1 right.
    pan: f64,
    attack: f64,
    /// Seconds for the level to fall by about 63 %.
    decay: f64,
    /// Depth of a 5 Hz vibrato, as a fraction of the pitch.
    vibrato: f64,
}

impl Mix {
    fn new(seconds: f64) -> Mix {
        Mix {
            samples: vec![0.0; 2 * (seconds * RATE) as usize],
        }
    }

    fn frames(&self) -> usize {
        self.samples.len() / 2
    }

    /// The frames from `start` lasting `length` seconds (plus a short release), clipped to
    /// the mix.
    fn span(&self, start: f64, length: f64) -> std::ops::Range<usize> {
        let first = ((start * RATE) as usize).min(self.frames());
        let last = (((start + length) * RATE) as usize).min(self.frames());
        first..last
    }

    fn add_note(&mut self, note: &Note) {
        const RELEASE: f64 = 0.03;
        let (left, right) = pan_gains(note.pan);
        let span = self.span(note.start, note.length + RELEASE);
        // Seconds into the note at its first frame (a fraction of a frame at most).
        let offset = span.start as f64 / RATE - note.start;
        // The envelope and the oscillator advance by steps: an `exp` and a `sin` fewer per
        // sample, which matters in the unoptimized builds the tests run.
        let rise = 1.0 / (note.attack * RATE);
        let fall = (-1.0 / (note.decay * RATE)).exp();
        let step = TAU * note.hz / RATE;
        let (mut attack, mut decay, mut phase) = (0.0f64, 1.0, 0.0);
        // The release ramp only matters in the note's last frames.
        let release_from = ((note.length - offset) * RATE) as usize;
        let samples = &mut self.samples;
        let mut i = 0;
        while i < span.len() {
            attack = (attack + rise).min(1.0);
            decay *= fall;
            let mut level = note.gain * attack * decay;
            if i >= release_from {
                let t = offset + i as f64 / RATE;
                level *= ((note.length + RELEASE - t) / RELEASE).clamp(0.0, 1.0);
            }
            phase += if note.vibrato > 0.0 {
                let t = offset + i as f64 / RATE;
                step * (1.0 + note.vibrato * (TAU * 5.0 * t).sin())
            } else {
                step
            };
            if phase > TAU {
                phase -= TAU;
            }
            let value = (level * note.wave.at(phase)) as f32;
            let at = 2 * (span.start + i);
            samples[at] += value * left;
            samples[at + 1] += value * right;
            i += 1;
        }
    }

    /// A kick drum: a sine falling from 110 to 45 Hz.
    fn add_kick(&mut self, start: f64, gain: f64) {
        let span = self.span(start, 0.25);
        let (pitch_fall, level_fall) = ((-1.0 / (0.03 * RATE)).exp(), (-1.0 / (0.08 * RATE)).exp());
        let (mut sweep, mut level, mut phase) = (65.0, gain, 0.0f64);
        for frame in span {
            phase += TAU * (45.0 + sweep) / RATE;
            sweep *= pitch_fall;
            level *= level_fall;
            let value = (level * phase.sin()) as f32;
            self.samples[2 * frame] += value;
            self.samples[2 * frame + 1] += value;
        }
    }

    /// A noise burst: a hi-hat tick (short, bright) or a snare (longer, with a tone).
    fn add_noise(&mut self, noise: &mut Noise, start: f64, decay: f64, gain: f64, pan: f64) {
        let (left, right) = pan_gains(pan);
        let span = self.span(start, decay * 5.0);
        let fall = (-1.0 / (decay * RATE)).exp();
        let snare = decay > 0.05;
        let (mut level, mut previous, mut phase) = (gain, 0.0, 0.0f64);
        for frame in span {
            level *= fall;
            let white = f64::from(noise.next_f32());
            // The difference of successive samples: a crude high-pass, for a brighter tick.
            let bright = white - previous;
            previous = white;
            let body = if snare {
                phase += TAU * 190.0 / RATE;
                0.5 * phase.sin()
            } else {
                0.0
            };
            let value = (level * (0.5 * bright + body)) as f32;
            self.samples[2 * frame] += value * left;
            self.samples[2 * frame + 1] += value * right;
        }
    }
}

/// Equal-power panning.
fn pan_gains(pan: f64) -> (f32, f32) {
    let angle = (pan.clamp(-1.0, 1.0) + 1.0) * std::f64::consts::FRAC_PI_4;
    (angle.cos() as f32, angle.sin() as f32)
}

fn hz(midi: i32) -> f64 {
    440.0 * 2f64.powf(f64::from(midi - 69) / 12.0)
}

impl Song {
    /// The MIDI note of a scale degree (any integer; 7 is the octave above 0).
    fn note(&self, degree: i32) -> i32 {
        self.root + 12 * degree.div_euclid(7) + self.scale[degree.rem_euclid(7) as usize]
    }

    fn beat(&self) -> f64 {
        60.0 / self.bpm
    }

    fn seconds(&self) -> f64 {
        (self.bars * self.beats_per_bar) as f64 * self.beat() + 1.0
    }

    /// When eighth number `eighth` of bar `bar` sounds, with swing.
    fn eighth_at(&self, bar: usize, eighth: usize) -> f64 {
        let beat = self.beat();
        let on_beat = (bar * self.beats_per_bar) as f64 * beat + (eighth / 2) as f64 * beat;
        if eighth.is_multiple_of(2) {
            on_beat
        } else {
            on_beat + beat / 2.0 * (1.0 + self.swing)
        }
    }

    fn render(&self) -> Vec<f32> {
        let mut mix = Mix::new(self.seconds());
        let mut noise = Noise::new(self.seed);
        let beat = self.beat();
        let bar_length = self.beats_per_bar as f64 * beat;
        let melody = self.melody(&mut noise);
        for (bar, tune) in melody.iter().enumerate() {
            let chord = self.progression[bar % self.progression.len()];
            let bar_start = bar as f64 * bar_length;
            // Pad: the chord's three notes, held for the bar, soft and wide.
            for (i, step) in [0, 2, 4].into_iter().enumerate() {
                mix.add_note(&Note {
                    start: bar_start,
                    length: bar_length,
                    hz: hz(self.note(chord + step)),
                    wave: Wave::Triangle,
                    gain: 0.06,
                    pan: [-0.6, 0.0, 0.6][i],
                    attack: 0.15,
                    decay: 4.0,
                    vibrato: 0.0,
                });
            }
            // Bass: root, then fifth, two octaves down, on the strong beats.
            for beat_in_bar in (0..self.beats_per_bar).step_by(2) {
                let step = if beat_in_bar == 0 { 0 } else { 4 };
                mix.add_note(&Note {
                    start: bar_start + beat_in_bar as f64 * beat,
                    length: beat * 0.9,
                    hz: hz(self.note(chord + step) - 24),
                    wave: Wave::Sine,
                    gain: 0.22,
                    pan: 0.0,
                    attack: 0.01,
                    decay: 0.6,
                    vibrato: 0.0,
                });
            }
            self.drums(&mut mix, &mut noise, bar);
            // Lead: the bar's melody, eighth by eighth; a held note lasts until the next.
            let eighths = 2 * self.beats_per_bar;
            for eighth in 0..eighths {
                let Some(degree) = tune[eighth] else {
                    continue;
                };
                let held = tune[eighth + 1..]
                    .iter()
                    .take_while(|n| n.is_none())
                    .count()
                    + 1;
                let start = self.eighth_at(bar, eighth);
                mix.add_note(&Note {
                    start,
                    length: held as f64 * beat / 2.0 * 0.9,
                    hz: hz(self.note(degree) + 12),
                    wave: self.lead,
                    gain: 0.3,
                    pan: 0.25,
                    attack: 0.012,
                    decay: 0.5,
                    vibrato: 0.004,
                });
            }
        }
        master(&mut mix.samples);
        mix.samples
    }

    /// Kick on the first beat (and the third in 4/4), snare on the back beats, ticks on
    /// the eighths. The last bar is an ending: one kick, nothing after.
    fn drums(&self, mix: &mut Mix, noise: &mut Noise, bar: usize) {
        let last = bar + 1 == self.bars;
        let beat_length = self.beat();
        let bar_start = (bar * self.beats_per_bar) as f64 * beat_length;
        mix.add_kick(bar_start, 0.3);
        if last {
            return;
        }
        for beat in 1..self.beats_per_bar {
            let at = bar_start + beat as f64 * beat_length;
            if self.beats_per_bar == 4 && beat == 2 {
                mix.add_kick(at, 0.25);
            }
            if self.beats_per_bar == 4 && beat % 2 == 1 {
                mix.add_noise(noise, at, 0.09, 0.15, -0.1);
            }
        }
        for eighth in 0..2 * self.beats_per_bar {
            let accent = if eighth % 2 == 0 { 0.10 } else { 0.06 };
            mix.add_noise(noise, self.eighth_at(bar, eighth), 0.018, accent, 0.4);
        }
    }

    /// The lead's scale degrees per bar and eighth (`None`: hold the previous note or rest).
    /// Two-bar phrases: a motif made of chord tones on the beats and steps between them,
    /// repeated over the next chords, with a new motif every eight bars and a long final
    /// note.
    fn melody(&self, noise: &mut Noise) -> Vec<Vec<Option<i32>>> {
        let eighths = 2 * self.beats_per_bar;
        let mut bars = Vec::with_capacity(self.bars);
        let mut motif = Vec::new();
        for bar in 0..self.bars {
            if bar % 8 == 0 {
                motif = self.motif(noise, 2 * eighths);
            }
            let chord = self.progression[bar % self.progression.len()];
            let half = (bar % 2) * eighths;
            let mut notes: Vec<Option<i32>> = motif[half..half + eighths]
                .iter()
                .map(|step| step.map(|step| chord + step))
                .collect();
            if bar + 1 == self.bars {
                // End on the root, held.
                notes = vec![None; eighths];
                notes[0] = Some(7);
            }
            bars.push(notes);
        }
        bars
    }

    /// Steps above the chord's root, per eighth, for two bars.
    fn motif(&self, noise: &mut Noise, length: usize) -> Vec<Option<i32>> {
        const CHORD_TONES: [i32; 4] = [0, 2, 4, 7];
        let mut steps = Vec::with_capacity(length);
        let mut current = CHORD_TONES[noise.below(4)];
        for eighth in 0..length {
            let on_beat = eighth % 2 == 0;
            // Rests and held notes give the phrase room to breathe; never at its start.
            if eighth > 0 && noise.below(10) < if on_beat { 2 } else { 4 } {
                steps.push(None);
                continue;
            }
            current = if on_beat {
                // The chord tone nearest a small leap from here.
                let target = current + noise.below(5) as i32 - 2;
                *CHORD_TONES
                    .iter()
                    .min_by_key(|tone| (*tone - target).abs())
                    .expect("chord tones")
            } else {
                (current + if noise.below(2) == 0 { 1 } else { -1 }).clamp(-2, 9)
            };
            steps.push(Some(current));
        }
        steps
    }
}

/// Fades in and out, rounds off the drum hits' peaks (which would otherwise set the level
/// and leave the tune quiet), then scales to a peak of 0.8 so every tune is about as loud.
fn master(samples: &mut [f32]) {
    const DRIVE: f32 = 1.5;
    let frames = samples.len() / 2;
    let fade_in = (0.02 * RATE) as usize;
    let fade_out = (1.5 * RATE) as usize;
    for (frame, pair) in samples.chunks_mut(2).enumerate() {
        let from_end = frames - frame;
        let gain = (frame as f32 / fade_in as f32)
            .min(from_end as f32 / fade_out as f32)
            .min(1.0);
        pair[0] *= gain;
        pair[1] *= gain;
    }
    let peak = samples.iter().fold(0.0f32, |peak, s| peak.max(s.abs()));
    if peak > 0.0 {
        // tanh: linear for quiet samples, gently flattening toward the peak.
        let scale = 0.8 / (DRIVE).tanh();
        samples
            .iter_mut()
            .for_each(|s| *s = (*s / peak * DRIVE).tanh() * scale);
    }
}

/// Renders `song` into a 16-bit stereo WAV file.
fn write(song: &Song, path: &Path) -> io::Result<()> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(hound_error)?;
    {
        // The fast path writes whole frames without per-sample checks.
        let samples = song.render();
        let mut block = writer.get_i16_writer(samples.len() as u32);
        for sample in samples {
            block.write_sample((sample * f32::from(i16::MAX)).round() as i16);
        }
        block.flush().map_err(hound_error)?;
    }
    writer.finalize().map_err(hound_error)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::audio::library::{Track, find, scan};

    fn seconds(track: &Track) -> f64 {
        track.duration.expect("a duration").as_secs_f64()
    }

    #[test]
    fn the_demo_library_is_written_once_deterministically_and_plays() {
        let dir = tempfile::tempdir().unwrap();
        let library = dir.path().join("music");
        let paths = ensure_demo_library(&library).unwrap();
        assert_eq!(paths.len(), SONGS.len());
        let written: Vec<SystemTime> = paths
            .iter()
            .map(|p| fs::metadata(p).unwrap().modified().unwrap())
            .collect();
        // A second call writes nothing.
        assert_eq!(ensure_demo_library(&library).unwrap(), paths);
        for (path, modified) in paths.iter().zip(&written) {
            assert_eq!(fs::metadata(path).unwrap().modified().unwrap(), *modified);
        }
        // The same bytes every time. (One tune suffices: they all come from the same code, and
        // each takes a second to render in a debug build.)
        let again = dir.path().join("again.wav");
        write_demo(&SONGS[1], &again).unwrap();
        assert_eq!(fs::read(&again).unwrap(), fs::read(&paths[1]).unwrap());

        let scan = scan(&library).unwrap();
        assert!(scan.skipped.is_empty(), "{:?}", scan.skipped);
        assert_eq!(scan.tracks.len(), SONGS.len());
        for track in &scan.tracks {
            assert_eq!(track.artist.as_deref(), Some(DEMO_ARTIST));
            assert_eq!(track.format, "wav");
            let length = seconds(track);
            assert!(
                (20.0..=40.0).contains(&length),
                "{}: {length} s",
                track.title
            );
            // 44.1 kHz stereo 16-bit, loud enough to hear and never clipped. (Read as raw bytes
            // after the 44-byte header hound writes: hound's sample iterator is slow in debug
            // builds.)
            let spec = hound::WavReader::open(&track.path).unwrap().spec();
            assert_eq!(
                (spec.channels, spec.sample_rate, spec.bits_per_sample),
                (2, 44_100, 16)
            );
            let bytes = fs::read(&track.path).unwrap();
            let peak = bytes[44..]
                .chunks_exact(2)
                .map(|pair| i16::from_le_bytes([pair[0], pair[1]]).unsigned_abs())
                .max()
                .unwrap();
            assert!(
                (20_000..32_767).contains(&peak),
                "{}: peak {peak}",
                track.title
            );
        }
        // Every title is different, so `play music <title>` finds each.
        for (i, track) in scan.tracks.iter().enumerate() {
            assert_eq!(find(&scan.tracks, &track.title), Ok(i));
        }
    }
}
