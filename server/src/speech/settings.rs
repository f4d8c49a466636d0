//! The speech's settings: the engine and its voice, how the music ducks
//! under speech, the eyes, the cache and the limits. Declared with
//! [`settings!`](crate::declare): each field's `///` comment is its `--help`
//! text.

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

use crate::declare::{self, Show, quote, settings};

settings! {
    /// The speech's settings.
    // The help texts are written for `--help`, not for rustdoc.
    #[allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]
    #[derive(Clone, Debug, PartialEq)]
    pub struct SpeechSettings {
        /// Text-to-speech engine: `espeak-ng` (built in, offline), `piper:<model.onnx>` (the piper program with a voice model you have), or `none`
        pub engine: EngineChoice = setting {
            key: "speech_engine", env: "CANTINA_SPEECH_ENGINE", default: "espeak-ng",
            parse: str::parse,
        },
        /// The engine's voice (`speech voices` lists them; for espeak-ng a language with an optional `+variant`, such as `en-us+robosoft`)
        pub voice: String = setting {
            key: "speech_voice", env: "CANTINA_SPEECH_VOICE", default: "en-us+robosoft",
            parse: parse_voice,
        },
        /// Speaking rate in words a minute (80–450)
        pub rate: u32 = setting {
            key: "speech_rate", env: "CANTINA_SPEECH_RATE", default: "165",
            parse: |s| range(s, 80, 450, "words a minute"),
        },
        /// Voice pitch, 0–99 (50 is the voice's own)
        pub pitch: u32 = setting {
            key: "speech_pitch", env: "CANTINA_SPEECH_PITCH", default: "40",
            parse: |s| range(s, 0, 99, "pitch"),
        },
        /// The music's level while the droid speaks (0.0–1.0)
        pub duck_level: f32 = setting {
            key: "speech_duck_level", env: "CANTINA_SPEECH_DUCK_LEVEL", default: "0.5",
            parse: parse_level,
        },
        /// How long the music takes to duck under speech and to come back after it
        pub duck_fade: Duration = setting {
            key: "speech_duck_fade", env: "CANTINA_SPEECH_DUCK_FADE", default: "500ms",
            parse: declare::duration_or_zero,
        },
        /// While the droid speaks, the eyes show `speaking` and their brightness follows the voice
        pub eyes: bool = setting {
            key: "speech_eyes", env: "CANTINA_SPEECH_EYES", default: "true",
            parse: declare::parse_bool,
            switch: true,
        },
        /// Total size of the speech cache in the data folder (oldest clips evicted first; 0: cache nothing)
        pub cache_max: u64 = setting {
            key: "speech_cache_max", env: "CANTINA_SPEECH_CACHE_MAX", default: "256MiB",
            type: "size",
            parse: declare::parse_bytes,
        },
        /// Longest text one utterance may have, in characters
        pub max_chars: usize = setting {
            key: "speech_max_chars", env: "CANTINA_SPEECH_MAX_CHARS", default: "5000",
            parse: declare::positive,
        },
        /// Largest clip `SpeakAudio` accepts (bytes, or with KiB/MiB)
        pub upload_max: u64 = setting {
            key: "speech_upload_max", env: "CANTINA_SPEECH_UPLOAD_MAX", default: "32MiB",
            type: "size",
            parse: |s| match declare::parse_bytes(s)? {
                0 => Err("allow at least 1 byte".to_string()),
                n => Ok(n),
            },
        },
    }
}

/// Which engine makes speech.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    /// libespeak-ng, loaded at start.
    Espeak,
    /// The `piper` program with this voice model.
    Piper(PathBuf),
    /// No speech engine: only uploaded and cached clips play.
    None,
}

impl fmt::Display for EngineChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EngineChoice::Espeak => f.write_str("espeak-ng"),
            EngineChoice::Piper(model) => write!(f, "piper:{}", model.display()),
            EngineChoice::None => f.write_str("none"),
        }
    }
}

impl FromStr for EngineChoice {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        match s.to_ascii_lowercase().as_str() {
            "espeak-ng" | "espeak" => return Ok(EngineChoice::Espeak),
            "none" | "off" => return Ok(EngineChoice::None),
            _ => {}
        }
        match s.split_once(':') {
            Some((engine, model)) if engine.eq_ignore_ascii_case("piper") => {
                if model.trim().is_empty() {
                    Err("give piper its voice model: `piper:/path/to/voice.onnx`".into())
                } else {
                    Ok(EngineChoice::Piper(PathBuf::from(model.trim())))
                }
            }
            _ => Err(format!(
                "unknown speech engine '{s}': use `espeak-ng`, `piper:<model.onnx>` or `none`"
            )),
        }
    }
}

impl Show for EngineChoice {
    const TYPE: &'static str = "engine";
    fn show(&self) -> Option<String> {
        Some(quote(&self.to_string()))
    }
}

fn parse_voice(s: &str) -> Result<String, String> {
    let s = s.trim();
    if s.is_empty() || s.len() > 64 || s.chars().any(|c| c.is_control()) {
        return Err(
            "give a voice name such as `en-us` or `en-us+robosoft` (`speech voices` lists them)"
                .into(),
        );
    }
    Ok(s.to_string())
}

fn range(s: &str, low: u32, high: u32, what: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if (low..=high).contains(&n) => Ok(n),
        _ => Err(format!("use a whole number of {what} from {low} to {high}")),
    }
}

/// A level from 0.0 to 1.0.
pub fn parse_level(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err("use a level from 0.0 (silent) to 1.0 (full)".into()),
    }
}
