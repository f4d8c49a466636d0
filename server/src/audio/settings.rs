//! The audio's settings: where the sound goes, how the output is driven,
//! where the music is. Declared with [`settings!`](crate::declare): each
//! field's `///` comment is its `--help` text.

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

use crate::declare::{self, Show, quote, settings};

settings! {
    /// The audio's settings.
    // The help texts are written for `--help`, not for rustdoc.
    #[allow(rustdoc::invalid_html_tags)]
    #[derive(Clone, Debug, PartialEq)]
    pub struct AudioSettings {
        /// Where generated and persistent data lives [default: <per-user data folder>/cantina]
        pub data_dir: PathBuf = setting {
            key: "data_dir", env: "CANTINA_DATA_DIR", unset: declare::default_data_dir(),
            parse: |s| Ok(declare::parse_path(s)?.unwrap_or_else(declare::default_data_dir)),
        },
        /// The music library folder [default: the generated demo library in the data folder]
        pub music_dir: Option<PathBuf> = setting {
            key: "music_dir", env: "CANTINA_MUSIC_DIR", unset: None,
            parse: declare::parse_path,
        },
        /// `default`, a sound device name, `virtual`, or `wav:PATH`
        pub output: AudioOutput = setting {
            key: "audio_output", env: "CANTINA_AUDIO_OUTPUT", default: "default",
            parse: str::parse,
        },
        /// Output sample rate in Hz, or `auto` (the device's own; 48000 for the virtual and WAV outputs)
        pub sample_rate: Option<u32> = setting {
            key: "audio_sample_rate", env: "CANTINA_AUDIO_SAMPLE_RATE", default: "auto",
            type: "integer or `auto`",
            parse: declare::auto_or(8_000, 192_000, "Hz"),
            show: declare::show_auto,
        },
        /// Frames the output asks for at a time, or `auto` (the device's own; 1024 for the virtual and WAV outputs)
        pub period_frames: Option<u32> = setting {
            key: "audio_period", env: "CANTINA_AUDIO_PERIOD", default: "auto",
            type: "integer or `auto`",
            parse: declare::auto_or(16, 4096, "frames"),
            show: declare::show_auto,
        },
        /// Longest wait between attempts to reopen a lost audio output (the wait doubles from 250ms)
        pub retry_max: Duration = setting {
            key: "audio_retry_max", env: "CANTINA_AUDIO_RETRY_MAX", default: "3s",
            parse: declare::duration,
        },
        /// How long DJ mode's crossfades between tracks last
        pub dj_transition: Duration = setting {
            key: "dj_transition", env: "CANTINA_DJ_TRANSITION", default: "8s",
            parse: declare::duration,
        },
        /// How long before each DJ crossfade `music.dj.transition.upcoming` names the tracks, for commentary (0s: never)
        pub dj_commentary_lead: Duration = setting {
            key: "dj_commentary_lead", env: "CANTINA_DJ_COMMENTARY_LEAD", default: "12s",
            parse: declare::duration_or_zero,
        },
        /// Play a short chime on the effects bus when the mode changes
        pub mode_chime: bool = setting {
            key: "mode_chime", env: "CANTINA_MODE_CHIME", default: "true",
            parse: declare::parse_bool,
        },
    }
}

impl AudioSettings {
    /// The library folder in use.
    pub fn library_dir(&self) -> PathBuf {
        self.music_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("music"))
    }
}

/// Where the sound goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AudioOutput {
    /// The system's default device, falling back to `Virtual` when there is none.
    Default,
    /// A device by name.
    Device(String),
    /// The paced virtual output: no sound card needed.
    Virtual,
    /// A WAV file, for offline renders.
    Wav(PathBuf),
}

impl fmt::Display for AudioOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudioOutput::Default => f.write_str("default"),
            AudioOutput::Device(name) => f.write_str(name),
            AudioOutput::Virtual => f.write_str("virtual"),
            AudioOutput::Wav(path) => write!(f, "wav:{}", path.display()),
        }
    }
}

impl FromStr for AudioOutput {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" => Err("use `default`, a device name, `virtual` or `wav:PATH`".into()),
            "default" => Ok(AudioOutput::Default),
            "virtual" => Ok(AudioOutput::Virtual),
            _ => match s.strip_prefix("wav:") {
                Some("") => Err("`wav:` needs a file path, as in `wav:/tmp/show.wav`".into()),
                Some(path) => Ok(AudioOutput::Wav(PathBuf::from(path))),
                None => Ok(AudioOutput::Device(s.to_string())),
            },
        }
    }
}

impl Show for AudioOutput {
    const TYPE: &'static str = "output";
    fn show(&self) -> Option<String> {
        Some(quote(&self.to_string()))
    }
}
