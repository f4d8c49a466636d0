//! What an engine is: the [`Engine`] trait every text-to-speech engine
//! implements, and the types its jobs take and hand out.

use serde::Serialize;

/// How a job speaks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Params {
    /// The engine's voice.
    pub voice: String,
    /// Words a minute.
    pub rate: u32,
    /// 0–99.
    pub pitch: u32,
}

/// A voice an engine offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct VoiceInfo {
    /// What `speech voice` takes.
    pub name: String,
    /// For people.
    pub description: String,
    /// `male`, `female` or empty.
    pub gender: String,
}

/// What a job hands out as it goes.
#[derive(Debug)]
pub enum Piece<'a> {
    /// Mono 16-bit samples at the engine's rate.
    Audio(&'a [i16]),
    /// Sentence `n` (0-based) is done.
    SentenceEnd(usize),
}

/// A text-to-speech engine, used from one thread.
pub trait Engine {
    /// Its name and version, for people.
    fn name(&self) -> String;
    /// Its short name, part of the cache's keys.
    fn id(&self) -> String;
    /// Frames a second of what it makes (mono).
    fn rate(&self) -> u32;
    /// The voices it offers.
    fn voices(&mut self) -> Vec<VoiceInfo>;
    /// Whether it has `voice`.
    ///
    /// # Errors
    ///
    /// Which voice is missing and how to list them.
    fn check_voice(&mut self, voice: &str) -> Result<(), String>;
    /// Speaks `sentences` in order, handing each piece to `sink` as soon as
    /// it is made; stops early when `sink` returns false.
    ///
    /// # Errors
    ///
    /// What went wrong, for people.
    fn synth(
        &mut self,
        sentences: &[String],
        params: &Params,
        sink: &mut dyn FnMut(Piece<'_>) -> bool,
    ) -> Result<(), String>;
}

/// Longest voice name taken (libespeak-ng copies names into small buffers).
pub const MAX_VOICE_NAME: usize = 30;

/// Whether `voice` is one of `voices`: a language, optionally with a
/// `+variant` listed as `+name`; or, where `speakers` is set (a piper model),
/// a speaker number. Checked here, before any engine sees the name.
///
/// # Errors
///
/// What is wrong with the name, and where the list is.
pub fn check_voice(voices: &[VoiceInfo], speakers: bool, voice: &str) -> Result<(), String> {
    let unknown = || {
        format!(
            "no voice '{voice}': 'speech voices' lists them (a language such as `en-us`, optionally with a `+variant` such as `+robosoft`)"
        )
    };
    if voice.is_empty()
        || voice.len() > MAX_VOICE_NAME
        || !voice
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+'))
        || voice.matches('+').count() > 1
    {
        return Err(unknown());
    }
    if speakers && voice.chars().all(|c| c.is_ascii_digit()) {
        return Ok(());
    }
    let (language, variant) = match voice.split_once('+') {
        Some((l, v)) => (l, Some(v)),
        None => (voice, None),
    };
    let has = |name: &str| voices.iter().any(|v| v.name.eq_ignore_ascii_case(name));
    let language_ok = has(language) && !language.is_empty();
    let variant_ok = variant.is_none_or(|v| !v.is_empty() && has(&format!("+{v}")));
    if language_ok && variant_ok {
        Ok(())
    } else {
        Err(unknown())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voice(name: &str) -> VoiceInfo {
        VoiceInfo {
            name: name.into(),
            description: String::new(),
            gender: String::new(),
        }
    }

    #[test]
    fn only_listed_languages_and_variants_pass_and_nothing_long_or_odd_reaches_an_engine() {
        let voices = [voice("en-us"), voice("de"), voice("+robosoft")];
        assert!(check_voice(&voices, false, "en-us").is_ok());
        assert!(check_voice(&voices, false, "EN-US+robosoft").is_ok());
        assert!(check_voice(&voices, false, "de+robosoft").is_ok());
        assert!(check_voice(&voices, false, "xx").is_err());
        assert!(check_voice(&voices, false, "en-us+nope").is_err());
        assert!(check_voice(&voices, false, "en-us+").is_err());
        assert!(check_voice(&voices, false, "+robosoft").is_err());
        assert!(check_voice(&voices, false, &format!("en+{}", "x".repeat(55))).is_err());
        assert!(check_voice(&voices, false, "../../etc/passwd").is_err());
        assert!(check_voice(&voices, false, "en-us+robosoft+x").is_err());
        assert!(check_voice(&voices, false, "3").is_err());
        assert!(check_voice(&voices, true, "3").is_ok());
    }
}
