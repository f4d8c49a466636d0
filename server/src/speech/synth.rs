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
