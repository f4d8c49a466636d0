//! Real audio files for tests and benchmarks.
//!
//! Tests of the music library, the decoder and the mixer work on real files rather than fakes
//! (STYLE habit 9), so this module writes them: WAV directly through `hound`, every other format
//! by encoding that WAV with the `ffmpeg` program, the encoder real music files come from. It is
//! a public module of the library (not `#[cfg(test)]`) because integration tests in other crates
//! of the workspace and the benchmarks use it too, but it exists only with the package's
//! `testkit` feature: a production build never compiles it.
//!
//! Without `ffmpeg` the encoding functions fail with an error that says how to install it: a
//! test that needs an MP3 must fail, not quietly skip, when it cannot make one.

use std::{
    ffi::OsString,
    fs, io,
    path::{Path, PathBuf},
    process::Command,
    sync::atomic::{AtomicU64, Ordering},
};

use super::library::hound_error;

/// Said when `ffmpeg` is not installed: what to run to get it.
pub const FFMPEG_MISSING: &str = "ffmpeg is needed to make the test audio files: run ./dev.sh test, which installs it (or apt-get install ffmpeg)";

/// Writes a sine tone as a 16-bit WAV file (amplitude 0.5, the same in every channel).
pub fn sine_wav(
    path: &Path,
    frequency_hz: f32,
    seconds: f32,
    sample_rate: u32,
    channels: u16,
) -> io::Result<()> {
    let frames = frame_count(seconds, sample_rate);
    let step = std::f64::consts::TAU * f64::from(frequency_hz) / f64::from(sample_rate);
    write_wav(path, sample_rate, channels, frames, |frame, _channel| {
        // The phase in f64 so long tones stay in tune.
        0.5 * (step * frame as f64).sin() as f32
    })
}

/// The formats the fixtures can be written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// 16-bit PCM WAV.
    Wav,
    /// MP3 (LAME), with a Xing/Info header as every common encoder writes.
    Mp3,
    /// FLAC, lossless.
    Flac,
    /// Vorbis in Ogg.
    Vorbis,
    /// AAC in an MPEG-4 (iTunes-style `.m4a`) container.
    M4a,
}

impl Format {
    /// Every format, for tests that go through them all.
    pub const ALL: [Format; 5] = [
        Format::Wav,
        Format::Mp3,
        Format::Flac,
        Format::Vorbis,
        Format::M4a,
    ];

    /// The file name extension, without the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Format::Wav => "wav",
            Format::Mp3 => "mp3",
            Format::Flac => "flac",
            Format::Vorbis => "ogg",
            Format::M4a => "m4a",
        }
    }

    /// Whether the format keeps every sample exactly (so durations are exact too).
    pub fn is_lossless(self) -> bool {
        matches!(self, Format::Wav | Format::Flac)
    }

    /// ffmpeg's name for the encoder.
    fn encoder(self) -> &'static str {
        match self {
            Format::Wav => "pcm_s16le",
            Format::Mp3 => "libmp3lame",
            Format::Flac => "flac",
            Format::Vorbis => "libvorbis",
            Format::M4a => "aac",
        }
    }
}

/// Tags to write into a file; `None` writes no tag at all (not an empty one).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tags {
    /// The track's title.
    pub title: Option<String>,
    /// The performer.
    pub artist: Option<String>,
    /// The album.
    pub album: Option<String>,
    /// The genre.
    pub genre: Option<String>,
}

impl Tags {
    /// No tags: the library must fall back to the file name.
    pub fn none() -> Tags {
        Tags::default()
    }

    /// A title and an artist, the usual pair.
    pub fn new(artist: &str, title: &str) -> Tags {
        Tags {
            title: Some(title.to_owned()),
            artist: Some(artist.to_owned()),
            ..Tags::default()
        }
    }

    /// With an album.
    pub fn album(mut self, album: &str) -> Tags {
        self.album = Some(album.to_owned());
        self
    }

    /// With a genre.
    pub fn genre(mut self, genre: &str) -> Tags {
        self.genre = Some(genre.to_owned());
        self
    }

    /// ffmpeg's `-metadata key=value` arguments.
    fn ffmpeg_args(&self) -> Vec<OsString> {
        [
            ("title", &self.title),
            ("artist", &self.artist),
            ("album", &self.album),
            ("genre", &self.genre),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.as_ref().map(|value| (key, value)))
        .flat_map(|(key, value)| ["-metadata".into(), format!("{key}={value}").into()])
        .collect()
    }

    /// Whether there is no tag to write.
    fn is_empty(&self) -> bool {
        *self == Tags::default()
    }
}

/// Encodes a WAV file as `format` into `out`, with `tags`, through ffmpeg. Fails with
/// [`FFMPEG_MISSING`] when ffmpeg is not installed, and with ffmpeg's own message when it fails.
pub fn encode(wav: &Path, out: &Path, format: Format, tags: &Tags) -> io::Result<()> {
    encode_with(wav, out, format, tags, &[])
}

/// [`encode`] with extra ffmpeg output options (before the output file), for the odd file a test
/// needs, such as an MP3 without its Xing header (`-write_xing 0`).
pub fn encode_with(
    wav: &Path,
    out: &Path,
    format: Format,
    tags: &Tags,
    extra: &[&str],
) -> io::Result<()> {
    run_encoder("ffmpeg", wav, out, format, tags, extra)
}

/// Runs `program` as ffmpeg (a parameter so the tests can see what happens without it).
fn run_encoder(
    program: &str,
    wav: &Path,
    out: &Path,
    format: Format,
    tags: &Tags,
    extra: &[&str],
) -> io::Result<()> {
    let mut command = Command::new(program);
    command
        .args(["-nostdin", "-v", "error", "-y", "-i"])
        .arg(wav)
        .args(tags.ffmpeg_args())
        .args(["-c:a", format.encoder()])
        .args(extra)
        .arg(out);
    let output = command.output().map_err(|err| {
        if err.kind() == io::ErrorKind::NotFound {
            io::Error::new(io::ErrorKind::NotFound, FFMPEG_MISSING)
        } else {
            io::Error::new(err.kind(), format!("cannot run ffmpeg: {err}"))
        }
    })?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "ffmpeg could not encode {} as {format:?} ({}): {}",
            wav.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok(())
}

/// Makes `dir/<name>.<extension>`: a sine tone of `frequency_hz` lasting `seconds` at 44.1 kHz
/// stereo, encoded as `format` with `tags`. `name` may contain folders (`"a/b/Artist - Title"`),
/// which are created. Returns the file's path.
pub fn make(
    dir: &Path,
    name: &str,
    format: Format,
    frequency_hz: f32,
    seconds: f32,
    tags: &Tags,
) -> io::Result<PathBuf> {
    const SAMPLE_RATE: u32 = 44_100;
    let out = dir.join(format!("{name}.{}", format.extension()));
    if let Some(parent) = out.parent() {
        fs::create_dir_all(parent)?;
    }
    if format == Format::Wav && tags.is_empty() {
        sine_wav(&out, frequency_hz, seconds, SAMPLE_RATE, 2)?;
        return Ok(out);
    }
    // The source WAV goes outside `dir`, so a test scanning `dir` never sees it.
    let source = TempFile::new("wav");
    sine_wav(source.path(), frequency_hz, seconds, SAMPLE_RATE, 2)?;
    encode(source.path(), &out, format, tags)?;
    Ok(out)
}

/// The number of frames in `seconds` at `sample_rate`.
fn frame_count(seconds: f32, sample_rate: u32) -> u64 {
    (f64::from(seconds.max(0.0)) * f64::from(sample_rate)).round() as u64
}

/// Writes a 16-bit WAV whose samples come from `sample(frame, channel)` in -1.0..=1.0.
fn write_wav(
    path: &Path,
    sample_rate: u32,
    channels: u16,
    frames: u64,
    mut sample: impl FnMut(u64, u16) -> f32,
) -> io::Result<()> {
    let spec = hound::WavSpec {
        channels,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).map_err(hound_error)?;
    for frame in 0..frames {
        for channel in 0..channels {
            let value = (sample(frame, channel).clamp(-1.0, 1.0) * f32::from(i16::MAX)) as i16;
            writer.write_sample(value).map_err(hound_error)?;
        }
    }
    writer.finalize().map_err(hound_error)
}

/// A file in the system's temporary folder, removed when dropped. (The `tempfile` crate is only a
/// dev-dependency, and this module is part of the library.)
struct TempFile(PathBuf);

impl TempFile {
    fn new(extension: &str) -> TempFile {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        TempFile(std::env::temp_dir().join(format!(
            "cantina-fixture-{}-{n}.{extension}",
            std::process::id()
        )))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sine_wav_has_the_asked_length_and_level() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wav");
        sine_wav(&path, 441.0, 0.5, 44_100, 2).unwrap();
        let reader = hound::WavReader::open(&path).unwrap();
        assert_eq!(reader.spec().channels, 2);
        assert_eq!(reader.duration(), 22_050);
        let peak = reader
            .into_samples::<i16>()
            .map(|s| s.unwrap().unsigned_abs())
            .max()
            .unwrap();
        // Amplitude 0.5 of full scale.
        assert!((16_000..=16_400).contains(&peak), "peak {peak}");
    }

    #[test]
    fn every_format_is_encoded_with_its_extension() {
        let dir = tempfile::tempdir().unwrap();
        for format in Format::ALL {
            let path = make(
                dir.path(),
                "nested/Tone",
                format,
                440.0,
                0.3,
                &Tags::new("Artist", "Tone"),
            )
            .unwrap_or_else(|err| panic!("{format:?}: {err}"));
            assert_eq!(path.extension().unwrap(), format.extension());
            assert!(fs::metadata(&path).unwrap().len() > 100, "{format:?}");
        }
    }

    #[test]
    fn a_missing_ffmpeg_says_how_to_install_it() {
        let dir = tempfile::tempdir().unwrap();
        let wav = dir.path().join("a.wav");
        sine_wav(&wav, 440.0, 0.1, 8_000, 1).unwrap();
        let err = run_encoder(
            "cantina-test-no-such-ffmpeg",
            &wav,
            &dir.path().join("a.mp3"),
            Format::Mp3,
            &Tags::none(),
            &[],
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert_eq!(err.to_string(), FFMPEG_MISSING);
    }

    #[test]
    fn ffmpeg_failures_are_reported_with_its_message() {
        let dir = tempfile::tempdir().unwrap();
        let not_wav = dir.path().join("not.wav");
        fs::write(&not_wav, "not audio").unwrap();
        let err = encode(
            &not_wav,
            &dir.path().join("out.mp3"),
            Format::Mp3,
            &Tags::none(),
        )
        .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("ffmpeg could not encode"), "{message}");
        assert!(message.contains("not.wav"), "{message}");
    }
}
