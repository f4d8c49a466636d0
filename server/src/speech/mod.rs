//! The droid's voice: text into speech on the mixer's speech bus.
//!
//! [`Speech`] is the handle (cheap to clone, async) and the `speech`
//! [`Subsystem`]. An utterance flows:
//!
//! ```text
//! text ─ sentences ([`text`]) ─ engine thread ([`engine`]: libespeak-ng, or piper)
//!   ─ samples as made ─ feeder thread ([`feed`]: resample, loudness, ring) ─ speech voice ─ mixer
//!                                        └─ 25 Hz levels ─ eyes, on the sample clock
//! ```
//!
//! The first sentence plays while the rest is made. The music ducks under
//! speech (the audio's [`speak`](crate::audio::Audio::speak)); the eyes show
//! `speaking` and follow the voice's loudness. Clips are kept in a bounded
//! cache in the data folder ([`cache`]) by what made them or by a key, so a
//! repeated line plays without synthesis, across restarts.

pub mod cache;
pub mod engine;
pub mod envelope;
mod espeak;
mod feed;
pub mod settings;
mod synth;
pub mod text;

use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::{
    actor::{ActorError, Handle, Subject},
    audio::{Audio, AudioError, SpeechClip, SpeechEnd, mixer::Source as VoiceSource},
    bus::{Bus, Topic},
    eyes::{Eyes, Pattern},
    lifecycle::{BoxFuture, ServiceStatus, StatusHandle, Subsystem},
};
use cache::Cache;
pub use cache::Clip;
pub use engine::VoiceInfo;
use engine::{EngineThread, Params};
pub use settings::{EngineChoice, SpeechSettings};

/// Requests that may wait for the speech's task at once; more are refused.
const QUEUE: usize = 64;
/// Output audio buffered ahead of the speech voice.
const RING: Duration = Duration::from_secs(1);
/// Audio made before an utterance starts playing.
const PREFILL: Duration = Duration::from_millis(200);
/// The longest clip one utterance takes.
const MAX_CLIP: Duration = Duration::from_secs(600);
/// Utterances that may be on their way or playing at once; more are refused.
const MAX_RUNNING: usize = 8;
/// A rough pace of speech for estimates: characters a second at 165 words a minute.
const CHARS_PER_SECOND: f64 = 15.0;

/// Why a speech request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SpeechError {
    /// Bad input: empty or too long text, an unknown voice, a clip that is not audio …
    #[error("{0}")]
    Invalid(String),
    /// No such cached clip or utterance.
    #[error("{0}")]
    NotFound(String),
    /// No engine, no audio output, or the speech is stopped.
    #[error("{0}")]
    Unavailable(String),
    /// Too many utterances at once.
    #[error("{0}")]
    Busy(String),
    /// Stopped (`speech stop`) before it began to play.
    #[error("{0}")]
    Stopped(String),
}

impl From<ActorError> for SpeechError {
    fn from(e: ActorError) -> Self {
        SpeechError::Unavailable(e.to_string())
    }
}

impl From<AudioError> for SpeechError {
    fn from(e: AudioError) -> Self {
        match e {
            AudioError::Unavailable(m) => {
                SpeechError::Unavailable(format!("the audio cannot play speech now: {m}"))
            }
            AudioError::NotFound(m) | AudioError::Refused(m) => SpeechError::Unavailable(m),
        }
    }
}

/// How one utterance is spoken; `None` fields take the settings.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SpeakOptions {
    /// The engine's voice.
    pub voice: Option<String>,
    /// Keep (and find) the clip under this key rather than by its text.
    pub cache_key: Option<String>,
    /// The music's level under it.
    pub duck_level: Option<f32>,
    /// How fast the music ducks and comes back.
    pub duck_fade: Option<Duration>,
}

/// An utterance that started playing.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Spoken {
    /// Its id (for `StopSpeech` and the events).
    pub id: String,
    /// How long it plays (an estimate while long text is still being made).
    pub duration: Duration,
    /// `duration` is an estimate.
    pub estimated: bool,
    /// It came from the cache.
    pub cached: bool,
    /// What made it.
    pub engine: String,
    /// The sample-clock frame it was handed to the mixer at.
    pub at_frame: u64,
}

/// An uploaded clip, before decoding.
#[derive(Clone, Debug)]
pub enum Upload {
    /// A wav, mp3, ogg or flac file's bytes.
    Encoded(Vec<u8>),
    /// Raw signed 16-bit little-endian PCM.
    Raw {
        /// The bytes.
        bytes: Vec<u8>,
        /// Frames a second.
        rate: u32,
        /// 1 or 2.
        channels: u16,
    },
}

/// An utterance playing, for status displays.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Speaking {
    /// Its id.
    pub id: String,
    /// Its text (cut to 80 characters), or "uploaded clip".
    pub text: String,
}

/// What the speech is doing.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SpeechState {
    /// The engine (name and version), `none`, or what is missing.
    pub engine: String,
    /// The engine works.
    pub engine_ready: bool,
    /// The voice in use.
    pub voice: String,
    /// Utterances playing.
    pub speaking: Vec<Speaking>,
    /// Utterances since start.
    pub utterances: u64,
    /// Clips in the cache.
    pub cache_clips: usize,
    /// Their size.
    pub cache_bytes: u64,
    /// Where they are.
    pub cache_dir: PathBuf,
    /// What keeps speech from working fully, for people.
    pub problem: Option<String>,
    /// The last thing that went wrong.
    pub last_error: Option<String>,
}

/// The speech's handle and subsystem.
#[derive(Clone)]
pub struct Speech {
    inner: Arc<Inner>,
}

struct Inner {
    settings: SpeechSettings,
    data_dir: PathBuf,
    audio: Audio,
    eyes: Eyes,
    bus: Bus,
    state: watch::Sender<SpeechState>,
    actor: Handle<Envelope>,
}

type Envelope = crate::actor::Envelope<Request, Result<Outcome, SpeechError>>;

enum Request {
    Speak { text: String, options: SpeakOptions },
    PlayCached { key: String, options: SpeakOptions },
    PlayClip { clip: Clip, options: SpeakOptions },
    Stop { id: Option<String> },
    Voices,
    SetVoice { voice: String },
}

enum Outcome {
    Spoken(Spoken),
    Stopped(usize),
    Voices(Vec<VoiceInfo>),
    VoiceSet,
}

impl Speech {
    /// Speech with `settings`, keeping its cache under `data_dir`, playing
    /// through `audio`, lighting `eyes`, announcing on `bus`.
    pub fn new(
        settings: SpeechSettings,
        data_dir: PathBuf,
        audio: Audio,
        eyes: Eyes,
        bus: Bus,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                data_dir,
                audio,
                eyes,
                bus,
                state: watch::Sender::new(SpeechState::default()),
                actor: Handle::new(Subject::singular("the speech")),
            }),
        }
    }

    /// What the speech is doing now.
    pub fn state(&self) -> SpeechState {
        self.inner.state.borrow().clone()
    }

    /// The speech's settings.
    pub fn settings(&self) -> &SpeechSettings {
        &self.inner.settings
    }

    /// Speaks `text`; returns once it plays.
    ///
    /// # Errors
    ///
    /// Bad text or voice, no engine, no audio.
    pub async fn speak(&self, text: &str, options: SpeakOptions) -> Result<Spoken, SpeechError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SpeechError::Invalid(
                "nothing to say: give some text, such as 'say Welcome to Oga's Cantina'".into(),
            ));
        }
        let max = self.inner.settings.max_chars;
        let chars = text.chars().count();
        if chars > max {
            return Err(SpeechError::Invalid(format!(
                "the text has {chars} characters; one utterance takes at most {max} (speech_max_chars): split it"
            )));
        }
        check_options(&options)?;
        self.spoken(Request::Speak {
            text: text.to_string(),
            options,
        })
        .await
    }

    /// Plays the clip cached under `key`.
    ///
    /// # Errors
    ///
    /// No such clip, no audio.
    pub async fn play_cached(
        &self,
        key: &str,
        options: SpeakOptions,
    ) -> Result<Spoken, SpeechError> {
        let key = key.trim();
        if key.is_empty() {
            return Err(SpeechError::Invalid("give the key of a cached clip".into()));
        }
        check_options(&options)?;
        self.spoken(Request::PlayCached {
            key: key.to_string(),
            options,
        })
        .await
    }

    /// Plays an uploaded clip as speech (kept under `options.cache_key` if given).
    ///
    /// # Errors
    ///
    /// Not audio, too big, empty; no audio output.
    pub async fn play_upload(
        &self,
        upload: Upload,
        options: SpeakOptions,
    ) -> Result<Spoken, SpeechError> {
        check_options(&options)?;
        let max = self.inner.settings.upload_max;
        let clip = tokio::task::spawn_blocking(move || decode_upload(upload, max))
            .await
            .map_err(|e| SpeechError::Invalid(format!("decoding the clip failed: {e}")))??;
        self.spoken(Request::PlayClip { clip, options }).await
    }

    /// Stops utterance `id`, or all; returns how many.
    ///
    /// # Errors
    ///
    /// No utterance `id`; the speech is stopped.
    pub async fn stop(&self, id: Option<String>) -> Result<usize, SpeechError> {
        match self.ask(Request::Stop { id }).await? {
            Outcome::Stopped(n) => Ok(n),
            _ => Err(wrong()),
        }
    }

    /// The engine's voices.
    ///
    /// # Errors
    ///
    /// No engine.
    pub async fn voices(&self) -> Result<Vec<VoiceInfo>, SpeechError> {
        match self.ask(Request::Voices).await? {
            Outcome::Voices(v) => Ok(v),
            _ => Err(wrong()),
        }
    }

    /// Changes the voice used from now on.
    ///
    /// # Errors
    ///
    /// An unknown voice; no engine.
    pub async fn set_voice(&self, voice: &str) -> Result<(), SpeechError> {
        match self
            .ask(Request::SetVoice {
                voice: voice.trim().to_string(),
            })
            .await?
        {
            Outcome::VoiceSet => Ok(()),
            _ => Err(wrong()),
        }
    }

    async fn ask(&self, request: Request) -> Result<Outcome, SpeechError> {
        self.inner.actor.ask(request).await?
    }

    /// Asks for an utterance; answers with it once it plays.
    async fn spoken(&self, request: Request) -> Result<Spoken, SpeechError> {
        match self.ask(request).await? {
            Outcome::Spoken(spoken) => Ok(spoken),
            _ => Err(wrong()),
        }
    }
}

fn wrong() -> SpeechError {
    SpeechError::Unavailable(
        "the speech answered with the wrong kind of outcome; this is a bug: please report it"
            .into(),
    )
}

fn check_options(options: &SpeakOptions) -> Result<(), SpeechError> {
    if let Some(level) = options.duck_level
        && !(0.0..=1.0).contains(&level)
    {
        return Err(SpeechError::Invalid(format!(
            "duck level {level} is outside 0.0–1.0"
        )));
    }
    if let Some(fade) = options.duck_fade
        && fade > Duration::from_secs(30)
    {
        return Err(SpeechError::Invalid(
            "a duck fade longer than 30 s makes no sense for speech".into(),
        ));
    }
    if let Some(key) = &options.cache_key
        && (key.len() > 256 || key.chars().any(char::is_control))
    {
        return Err(SpeechError::Invalid(
            "a cache key has at most 256 characters and no control characters".into(),
        ));
    }
    Ok(())
}

/// Decodes an upload into a clip at its own rate.
pub(crate) fn decode_upload(upload: Upload, max: u64) -> Result<Clip, SpeechError> {
    let too_big = |n: usize| {
        SpeechError::Invalid(format!(
            "the clip is {n} bytes; at most {max} are accepted (speech_upload_max)"
        ))
    };
    let clip = match upload {
        Upload::Raw {
            bytes,
            rate,
            channels,
        } => {
            if bytes.len() as u64 > max {
                return Err(too_big(bytes.len()));
            }
            if !(1..=2).contains(&channels) {
                return Err(SpeechError::Invalid(format!(
                    "raw PCM with {channels} channels: send 1 (mono) or 2 (stereo)"
                )));
            }
            if !(8_000..=192_000).contains(&rate) {
                return Err(SpeechError::Invalid(format!(
                    "raw PCM at {rate} Hz: give its sample rate, from 8000 to 192000"
                )));
            }
            let frame = 2 * usize::from(channels);
            if bytes.len() % frame != 0 {
                return Err(SpeechError::Invalid(format!(
                    "raw PCM of {} bytes is not whole frames of signed 16-bit little-endian samples ({frame} bytes a frame)",
                    bytes.len()
                )));
            }
            let clip = Clip {
                samples: bytes
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]]))
                    .collect(),
                channels,
                rate,
            };
            if clip.duration() > MAX_CLIP {
                return Err(SpeechError::Invalid(format!(
                    "the clip plays longer than {} minutes, the most one utterance takes: send it in parts",
                    MAX_CLIP.as_secs() / 60
                )));
            }
            clip
        }
        Upload::Encoded(mut bytes) => {
            if bytes.len() as u64 > max {
                return Err(too_big(bytes.len()));
            }
            fix_streamed_wav(&mut bytes);
            if bytes.is_empty() {
                return Err(SpeechError::Invalid("the clip is empty".into()));
            }
            let upload = TempFile::write(&bytes)
                .map_err(|e| SpeechError::Unavailable(format!("cannot hold the upload: {e}")))?;
            let path = upload.0.clone();
            let mut samples = Vec::new();
            let mut too_long = false;
            // A small file may hold hours of audio (silence compresses well):
            // decoding stops at the longest clip taken.
            let cap = MAX_CLIP.as_secs() as usize * 192_000 * 2;
            let info = crate::audio::decode::decode_while(&path, None, |stereo| {
                samples.extend(
                    stereo
                        .iter()
                        .map(|&x| (x.clamp(-1.0, 1.0) * 32767.0).round() as i16),
                );
                too_long = samples.len() > cap;
                !too_long
            })
            .map_err(|e| {
                SpeechError::Invalid(format!(
                    "the clip is not audio that can be played ({}): send wav, mp3, ogg or flac, or raw PCM with its rate",
                    e.to_string().replace(&path.display().to_string(), "the upload")
                ))
            })?;
            let clip = Clip {
                samples,
                channels: 2,
                rate: info.sample_rate,
            };
            if too_long || clip.duration() > MAX_CLIP {
                return Err(SpeechError::Invalid(format!(
                    "the clip plays longer than {} minutes, the most one utterance takes: send it in parts",
                    MAX_CLIP.as_secs() / 60
                )));
            }
            clip
        }
    };
    if clip.frames() == 0 {
        return Err(SpeechError::Invalid(
            "the clip has no samples: nothing to play".into(),
        ));
    }
    Ok(clip)
}

/// A WAV written to a pipe (`espeak-ng --stdout`, `sox … -t wav -`) cannot
/// know its length, and says "as long as can be" in its RIFF and `data`
/// sizes; with the whole upload at hand, those sizes are set to what arrived
/// (so the decoder does not take the clip for one cut short). Anything else
/// is left alone.
fn fix_streamed_wav(bytes: &mut [u8]) {
    if bytes.len() < 12 || &bytes[..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return;
    }
    let size_at = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let size = size_at(bytes, at + 4) as usize;
        let body = at + 8;
        if &bytes[at..at + 4] == b"data" {
            let left = bytes.len() - body;
            // The "unknown length" sizes writers use: 0, or near 2³¹ or 2³².
            let unknown = size == 0 || size >= 0x7fff_0000;
            if unknown && size != left {
                let fixed = u32::try_from(left - left % 2).unwrap_or(u32::MAX);
                bytes[at + 4..at + 8].copy_from_slice(&fixed.to_le_bytes());
                let riff = u32::try_from(bytes.len() - 8).unwrap_or(u32::MAX);
                bytes[4..8].copy_from_slice(&riff.to_le_bytes());
            }
            return;
        }
        // Chunks are padded to an even size.
        at = body.saturating_add(size).saturating_add(size % 2);
    }
}

/// A file in the temporary folder, removed when dropped: the decoders read files.
struct TempFile(PathBuf);

impl TempFile {
    fn write(bytes: &[u8]) -> std::io::Result<Self> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "cantina-upload-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, bytes)?;
        Ok(Self(path))
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The subsystem status a state means.
fn status_of(state: &SpeechState) -> (ServiceStatus, String) {
    match &state.problem {
        Some(problem) => (ServiceStatus::Degraded, problem.clone()),
        None if !state.engine_ready => (
            ServiceStatus::Running,
            "no speech engine (speech_engine = none): uploaded and cached clips play".into(),
        ),
        None => (
            ServiceStatus::Running,
            format!("{}, voice {}", state.engine, state.voice),
        ),
    }
}

impl Subsystem for Speech {
    fn name(&self) -> &'static str {
        "speech"
    }

    /// The droid carries on without a voice.
    fn critical(&self) -> bool {
        false
    }

    fn start(&self, status: StatusHandle) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let inner = &self.inner;
            let settings = inner.settings.clone();
            let mut problems = Vec::new();
            let engine = match EngineThread::start(&settings.engine).await {
                Ok(engine) => engine,
                Err(e) => {
                    warn!(error = %e, "no speech engine");
                    problems.push(e);
                    None
                }
            };
            if let Some(engine) = &engine
                && let Err(e) = engine.check_voice(&settings.voice)
            {
                problems.push(format!("{e} (speech_voice)"));
            }
            let cache = Cache::new(inner.data_dir.join("speech-cache"), settings.cache_max);
            let cache_problem = cache.check().err();
            if let Some(e) = &cache_problem {
                warn!(error = %e, "speech cache");
            }
            let usage = cache.usage();
            inner.state.send_replace(SpeechState {
                engine: engine.as_ref().map_or_else(
                    || {
                        if settings.engine == EngineChoice::None {
                            "none".into()
                        } else {
                            format!("{} (not working)", settings.engine)
                        }
                    },
                    |e| e.info().name.clone(),
                ),
                engine_ready: engine.is_some(),
                voice: settings.voice.clone(),
                speaking: Vec::new(),
                utterances: 0,
                cache_clips: usage.clips,
                cache_bytes: usage.bytes,
                cache_dir: cache.dir().to_path_buf(),
                problem: join_problems(&problems, cache_problem.as_deref()),
                last_error: None,
            });
            let (done_tx, done_rx) = mpsc::unbounded_channel();
            let actor = Actor {
                speech: self.clone(),
                voice: settings.voice.clone(),
                engine,
                engine_problems: problems,
                cache,
                cache_problem,
                running: HashMap::new(),
                next_id: 1,
                done_tx,
                eyes: Arc::new(EyesShare::default()),
            };
            inner
                .actor
                .spawn_task(QUEUE, (), |rx| actor.run(rx, done_rx));
            inner
                .actor
                .follow(status, inner.state.subscribe(), status_of)
                .await;
            Ok(())
        })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.inner.actor.stop())
    }
}

fn join_problems(engine: &[String], cache: Option<&str>) -> Option<String> {
    let all: Vec<&str> = engine.iter().map(String::as_str).chain(cache).collect();
    (!all.is_empty()).then(|| all.join("; "))
}

/// Who drives the eyes: the first of overlapping utterances; the last to
/// end puts back what was shown before.
#[derive(Default)]
struct EyesShare {
    active: AtomicUsize,
    /// The pattern to put back; held across each save-and-show and each
    /// check-and-restore, so back-to-back utterances never interleave them.
    before: tokio::sync::Mutex<Option<Pattern>>,
}

/// An utterance on its way.
struct Running {
    cancel: Arc<AtomicBool>,
    voice: Arc<Mutex<Option<crate::audio::mixer::VoiceId>>>,
}

/// The speech's task: takes requests, starts utterances, keeps the state.
struct Actor {
    speech: Speech,
    voice: String,
    engine: Option<Arc<EngineThread>>,
    engine_problems: Vec<String>,
    cache: Cache,
    cache_problem: Option<String>,
    running: HashMap<String, Running>,
    next_id: u64,
    done_tx: mpsc::UnboundedSender<Done>,
    eyes: Arc<EyesShare>,
}

/// An utterance's end, told to the task.
struct Done {
    id: String,
    cache_error: Option<Option<String>>,
    error: Option<String>,
    /// What the cache holds now, when the utterance wrote to it.
    usage: Option<cache::Usage>,
}

impl Actor {
    async fn run(
        mut self,
        mut requests: mpsc::Receiver<Envelope>,
        mut done: mpsc::UnboundedReceiver<Done>,
    ) {
        loop {
            tokio::select! {
                envelope = requests.recv() => {
                    let Some(envelope) = envelope else { break };
                    self.request(envelope).await;
                }
                Some(d) = done.recv() => self.finished(d),
            }
        }
        for running in self.running.values() {
            running.cancel.store(true, Ordering::Relaxed);
        }
        let _ = self.speech.inner.audio.stop_speech(None).await;
    }

    async fn request(&mut self, envelope: Envelope) {
        let crate::actor::Envelope {
            request,
            reply,
            correlation,
        } = envelope;
        if matches!(
            request,
            Request::Speak { .. } | Request::PlayCached { .. } | Request::PlayClip { .. }
        ) && self.running.len() >= MAX_RUNNING
        {
            let _ = reply.send(Err(SpeechError::Busy(format!(
                "{MAX_RUNNING} utterances are already being made or played; wait for one to end, or 'speech stop'"
            ))));
            return;
        }
        match request {
            Request::Speak { text, options } => self.speak(text, options, reply, correlation).await,
            Request::PlayCached { key, options } => {
                let answer = match self.cache_get(cache::named_key(&key)).await {
                    Ok(Some(clip)) => {
                        self.start(
                            Source::Cached(key),
                            feed::Input::Clip(clip),
                            true,
                            options,
                            reply,
                            correlation,
                        );
                        return;
                    }
                    Ok(None) => SpeechError::NotFound(format!(
                        "no clip is cached under '{key}': speak it once with that cache key, or upload it with SpeakAudio"
                    )),
                    Err(e) => SpeechError::NotFound(format!("{e}; speak or upload '{key}' again")),
                };
                let _ = reply.send(Err(answer));
            }
            Request::PlayClip { clip, options } => {
                if let Some(key) = &options.cache_key {
                    let (cache, key, kept) =
                        (self.cache.clone(), cache::named_key(key), clip.clone());
                    let put = tokio::task::spawn_blocking(move || cache.put(&key, &kept))
                        .await
                        .unwrap_or_else(|e| Err(e.to_string()));
                    if let Err(e) = put {
                        self.cache_failed(e);
                    }
                }
                self.start(
                    Source::Upload,
                    feed::Input::Clip(clip),
                    false,
                    options,
                    reply,
                    correlation,
                );
            }
            Request::Stop { id } => {
                let answer = self.stop(id).await;
                let _ = reply.send(answer.map(Outcome::Stopped));
            }
            Request::Voices => {
                let answer = match &self.engine {
                    Some(engine) => Ok(Outcome::Voices(engine.voices())),
                    None => Err(self.no_engine()),
                };
                let _ = reply.send(answer);
            }
            Request::SetVoice { voice } => {
                let answer = match &self.engine {
                    Some(engine) => match engine.check_voice(&voice) {
                        Ok(()) => {
                            info!(voice = %voice, "speech voice set");
                            self.voice = voice.clone();
                            // A bad configured voice is fixed now.
                            self.engine_problems
                                .retain(|p| !p.ends_with("(speech_voice)"));
                            self.speech.inner.state.send_modify(|s| {
                                s.voice = voice;
                            });
                            self.refresh_problem();
                            Ok(Outcome::VoiceSet)
                        }
                        Err(e) => Err(SpeechError::Invalid(e)),
                    },
                    None => Err(self.no_engine()),
                };
                let _ = reply.send(answer);
            }
        }
    }

    /// A cached clip, read off the runtime.
    async fn cache_get(&self, key: String) -> Result<Option<Clip>, String> {
        let cache = self.cache.clone();
        tokio::task::spawn_blocking(move || cache.get(&key))
            .await
            .unwrap_or_else(|e| Err(e.to_string()))
    }

    fn no_engine(&self) -> SpeechError {
        SpeechError::Unavailable(match self.engine_problems.first() {
            Some(p) if self.speech.inner.settings.engine != EngineChoice::None => {
                format!("no speech engine works: {p}")
            }
            _ => "no speech engine is configured (speech_engine = none): set speech_engine to `espeak-ng`, or send speech with SpeakAudio".into(),
        })
    }

    async fn speak(
        &mut self,
        text: String,
        options: SpeakOptions,
        reply: oneshot::Sender<Result<Outcome, SpeechError>>,
        correlation: Option<Arc<str>>,
    ) {
        let settings = &self.speech.inner.settings;
        let voice = options.voice.clone().unwrap_or_else(|| self.voice.clone());
        let engine_id = self.engine.as_ref().map(|e| e.info().id.clone());
        let key = match (&options.cache_key, &engine_id) {
            (Some(key), _) => Some(cache::named_key(key)),
            (None, Some(id)) => Some(cache::text_key(
                id,
                &voice,
                settings.rate,
                settings.pitch,
                &text,
            )),
            (None, None) => None,
        };
        if let Some(key) = &key {
            match self.cache_get(key.clone()).await {
                Ok(Some(clip)) => {
                    self.start(
                        Source::Text(text),
                        feed::Input::Clip(clip),
                        true,
                        options,
                        reply,
                        correlation,
                    );
                    return;
                }
                Ok(None) => {}
                Err(e) => warn!(error = %e, "speech cache"),
            }
        }
        let Some(engine) = self.engine.clone() else {
            let _ = reply.send(Err(self.no_engine()));
            return;
        };
        if options.voice.is_some()
            && let Err(e) = engine.check_voice(&voice)
        {
            let _ = reply.send(Err(SpeechError::Invalid(e)));
            return;
        }
        let sentences = text::sentences(&text);
        if sentences.is_empty() {
            let _ = reply.send(Err(SpeechError::Invalid(format!(
                "'{text}' has nothing to say aloud: give words"
            ))));
            return;
        }
        let cancel = Arc::new(AtomicBool::new(false));
        let rx = engine.synth(
            sentences,
            Params {
                voice,
                rate: settings.rate,
                pitch: settings.pitch,
            },
            cancel.clone(),
        );
        let input = feed::Input::Engine {
            rx,
            rate: engine.info().rate,
        };
        self.start_with(
            Source::Made { text, key },
            input,
            false,
            options,
            reply,
            correlation,
            cancel,
        );
    }

    fn start(
        &mut self,
        source: Source,
        input: feed::Input,
        cached: bool,
        options: SpeakOptions,
        reply: oneshot::Sender<Result<Outcome, SpeechError>>,
        correlation: Option<Arc<str>>,
    ) {
        let cancel = Arc::new(AtomicBool::new(false));
        self.start_with(source, input, cached, options, reply, correlation, cancel);
    }

    #[allow(clippy::too_many_arguments)]
    fn start_with(
        &mut self,
        source: Source,
        input: feed::Input,
        cached: bool,
        options: SpeakOptions,
        reply: oneshot::Sender<Result<Outcome, SpeechError>>,
        correlation: Option<Arc<str>>,
        cancel: Arc<AtomicBool>,
    ) {
        let id = format!("speech-{}", self.next_id);
        self.next_id += 1;
        let voice = Arc::new(Mutex::new(None));
        self.running.insert(
            id.clone(),
            Running {
                cancel: cancel.clone(),
                voice: voice.clone(),
            },
        );
        let text = source.describe();
        self.speech.inner.state.send_modify(|s| {
            s.speaking.push(Speaking {
                id: id.clone(),
                text: text.chars().take(80).collect(),
            });
            s.utterances += 1;
        });
        let utterance = Utterance {
            speech: self.speech.clone(),
            id,
            source,
            cached,
            options,
            cancel,
            voice,
            engine: self.state_engine(),
            cache: self.cache.clone(),
            eyes: self.eyes.clone(),
            done: self.done_tx.clone(),
        };
        let run = utterance.run(input, reply);
        tokio::spawn(async move {
            match correlation {
                Some(c) => crate::bus::with_correlation(c.to_string(), run).await,
                None => run.await,
            }
        });
    }

    fn state_engine(&self) -> String {
        self.speech.inner.state.borrow().engine.clone()
    }

    async fn stop(&mut self, id: Option<String>) -> Result<usize, SpeechError> {
        let targets: Vec<(&String, &Running)> = match &id {
            Some(id) => match self.running.get_key_value(id) {
                Some(r) => vec![r],
                None => {
                    return Err(SpeechError::NotFound(format!(
                        "no utterance '{id}' is playing ('speech status' lists them)"
                    )));
                }
            },
            None => self.running.iter().collect(),
        };
        let mut voices = Vec::new();
        for (_, running) in &targets {
            running.cancel.store(true, Ordering::Relaxed);
            if let Some(v) = *running.voice.lock().expect("voice") {
                voices.push(v);
            }
        }
        let n = targets.len();
        for v in voices {
            self.speech
                .inner
                .audio
                .stop_speech(Some(v))
                .await
                .map_err(SpeechError::from)?;
        }
        Ok(n)
    }

    fn finished(&mut self, done: Done) {
        self.running.remove(&done.id);
        if let Some(result) = done.cache_error {
            match result {
                Some(e) => self.cache_failed(e),
                None => {
                    if self.cache_problem.take().is_some() {
                        info!("the speech cache can be written again");
                    }
                }
            }
        }
        let usage = done.usage;
        self.speech.inner.state.send_modify(|s| {
            s.speaking.retain(|u| u.id != done.id);
            if let Some(usage) = usage {
                s.cache_clips = usage.clips;
                s.cache_bytes = usage.bytes;
            }
            if let Some(e) = done.error {
                s.last_error = Some(e);
            }
        });
        self.refresh_problem();
    }

    fn cache_failed(&mut self, e: String) {
        warn!(error = %e, "speech cache");
        self.cache_problem = Some(e);
        self.refresh_problem();
    }

    fn refresh_problem(&self) {
        let problem = join_problems(&self.engine_problems, self.cache_problem.as_deref());
        self.speech.inner.state.send_modify(|s| s.problem = problem);
    }
}

/// What an utterance says.
enum Source {
    /// Text made by the engine now, kept under `key`.
    Made { text: String, key: Option<String> },
    /// Text found in the cache.
    Text(String),
    /// A clip played by key.
    Cached(String),
    /// An uploaded clip.
    Upload,
}

impl Source {
    fn describe(&self) -> String {
        match self {
            Source::Made { text, .. } | Source::Text(text) => text.clone(),
            Source::Cached(key) => format!("cached clip '{key}'"),
            Source::Upload => "uploaded clip".into(),
        }
    }
}

/// One utterance, from its samples to its end.
struct Utterance {
    speech: Speech,
    id: String,
    source: Source,
    cached: bool,
    options: SpeakOptions,
    cancel: Arc<AtomicBool>,
    voice: Arc<Mutex<Option<crate::audio::mixer::VoiceId>>>,
    engine: String,
    cache: Cache,
    eyes: Arc<EyesShare>,
    done: mpsc::UnboundedSender<Done>,
}

impl Utterance {
    async fn run(self, input: feed::Input, reply: oneshot::Sender<Result<Outcome, SpeechError>>) {
        let inner = &self.speech.inner;
        let mut done = Done {
            id: self.id.clone(),
            cache_error: None,
            error: None,
            usage: None,
        };
        let out_rate = inner.audio.state().sample_rate;
        if out_rate == 0 {
            let _ = reply.send(Err(SpeechError::Unavailable(
                "the audio is not running, so speech cannot play: see 'status'".into(),
            )));
            let _ = self.done.send(done);
            return;
        }
        let known = match &input {
            feed::Input::Clip(clip) => Some(clip.duration()),
            feed::Input::Engine { .. } => None,
        };
        let (producer, consumer) =
            rtrb::RingBuffer::new(crate::audio::gain::frames_for(RING, out_rate) as usize * 2);
        let finished = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready) = oneshot::channel();
        let (levels_tx, levels) = mpsc::unbounded_channel();
        let progress = Arc::new(Mutex::new(feed::Progress::default()));
        let keep = matches!(&self.source, Source::Made { key: Some(_), .. });
        let feeder = feed::Feeder {
            input,
            producer,
            finished: finished.clone(),
            out_rate,
            cancel: self.cancel.clone(),
            ready: ready_tx,
            prefill: u64::from(crate::audio::gain::frames_for(PREFILL, out_rate)),
            levels: levels_tx,
            progress: progress.clone(),
            keep,
        };
        let fed = tokio::task::spawn_blocking(move || feeder.run());
        let t0 = Instant::now();
        match ready.await {
            Ok(Ok(())) => {}
            Ok(Err(_)) if self.cancel.load(Ordering::Relaxed) => {
                let _ = reply.send(Err(SpeechError::Stopped(
                    "the speech was stopped before it began to play".into(),
                )));
                let _ = self.done.send(done);
                return;
            }
            Ok(Err(e)) => {
                let _ = reply.send(Err(SpeechError::Unavailable(format!(
                    "the speech could not be made: {e}"
                ))));
                done.error = Some(e);
                let _ = self.done.send(done);
                return;
            }
            Err(_) => {
                let _ = reply.send(Err(SpeechError::Unavailable(
                    "the speech could not be made: its feeder stopped".into(),
                )));
                let _ = self.done.send(done);
                return;
            }
        }
        if self.cancel.load(Ordering::Relaxed) {
            let _ = reply.send(Err(SpeechError::Stopped(
                "the speech was stopped before it began to play".into(),
            )));
            let _ = self.done.send(done);
            return;
        }
        let (ended_tx, ended) = oneshot::channel();
        let settings = &inner.settings;
        let clip = SpeechClip {
            source: VoiceSource::new(consumer, finished),
            duck_level: Some(self.options.duck_level.unwrap_or(settings.duck_level)),
            duck_fade: Some(self.options.duck_fade.unwrap_or(settings.duck_fade)),
            ended: ended_tx,
        };
        let started = match inner.audio.speak(clip).await {
            Ok(started) => started,
            Err(e) => {
                self.cancel.store(true, Ordering::Relaxed);
                let e = SpeechError::from(e);
                done.error = Some(e.to_string());
                let _ = reply.send(Err(e));
                let _ = self.done.send(done);
                return;
            }
        };
        *self.voice.lock().expect("voice") = Some(started.voice);
        // Stopped while it was being handed over: stop what the mixer got.
        if self.cancel.load(Ordering::Relaxed) {
            let _ = inner.audio.stop_speech(Some(started.voice)).await;
        }
        let (duration, estimated) = match known {
            Some(d) => (d, false),
            None => estimate(&progress, out_rate, &self.source),
        };
        let spoken = Spoken {
            id: self.id.clone(),
            duration,
            estimated,
            cached: self.cached,
            engine: if matches!(self.source, Source::Upload) {
                "upload".into()
            } else {
                self.engine.clone()
            },
            at_frame: started.at_frame,
        };
        info!(
            id = %self.id,
            cached = self.cached,
            made_in_ms = t0.elapsed().as_millis() as u64,
            "speaking: {}",
            preview(&self.source.describe())
        );
        inner.bus.emit(
            Topic::SpeechStarted,
            "speech",
            json!({
                "id": self.id,
                "text": self.source.describe(),
                "engine": spoken.engine,
                "duration_ms": duration.as_millis() as u64,
                "duration_estimated": estimated,
                "cached": self.cached,
                "duck_level": started.duck_level,
            }),
        );
        let _ = reply.send(Ok(Outcome::Spoken(spoken)));

        // The eyes follow the voice until it ends.
        let lead = self.eyes.active.fetch_add(1, Ordering::AcqRel) == 0;
        let eyes_on = settings.eyes;
        let mut ended = ended;
        let end = if eyes_on && lead {
            let driver = drive_eyes(&self.speech, &self.eyes, started.start.clone(), levels);
            tokio::pin!(driver);
            tokio::select! {
                end = &mut ended => end,
                () = &mut driver => ended.await,
            }
        } else {
            drop(levels);
            ended.await
        };
        let last = self.eyes.active.fetch_sub(1, Ordering::AcqRel) == 1;
        if eyes_on && last {
            restore_eyes(&self.speech, &self.eyes).await;
        } else if eyes_on && lead {
            // Others still speak, but their levels are not followed: the
            // eyes keep `speaking` at the brightness set, not frozen on this
            // voice's last level.
            let _ = inner.eyes.voice_level(None).await;
        }
        let fed = fed.await.unwrap_or_else(|e| feed::FeedEnd {
            error: Some(format!("the speech's feeder failed: {e}")),
            ..Default::default()
        });
        let (reason, error) = match (&end, &fed.error) {
            (Ok(SpeechEnd { stopped: true, .. }), _) => ("stopped", None),
            (Ok(_), _) if fed.cancelled || self.cancel.load(Ordering::Relaxed) => ("stopped", None),
            (_, Some(e)) => ("failed", Some(e.clone())),
            (Ok(_), _) => ("completed", None),
            (Err(_), _) => ("failed", Some("the audio stopped".to_string())),
        };
        if let (Some(made), Source::Made { key: Some(key), .. }) = (fed.made, &self.source)
            && reason == "completed"
        {
            let cache = self.cache.clone();
            let key = key.clone();
            let result = tokio::task::spawn_blocking(move || {
                let put = cache.put(&key, &made);
                (put, cache.usage())
            })
            .await
            .map_err(|e| e.to_string());
            match result {
                Ok((put, usage)) => {
                    done.cache_error = Some(put.err());
                    done.usage = Some(usage);
                }
                Err(e) => done.cache_error = Some(Some(e)),
            }
        }
        let played = end.map(|e| e.frames_played).unwrap_or(0);
        info!(id = %self.id, reason, "speech ended");
        inner.bus.emit(
            Topic::SpeechEnded,
            "speech",
            json!({
                "id": self.id,
                "reason": reason,
                "error": error,
                "played_ms": (played as f64 * 1000.0 / f64::from(out_rate)) as u64,
            }),
        );
        done.error = error;
        let _ = self.done.send(done);
    }
}

fn preview(text: &str) -> String {
    let mut p: String = text.chars().take(60).collect();
    if p.len() < text.len() {
        p.push('…');
    }
    p
}

/// How long a partly made utterance will play: what is made, scaled by the
/// text still to make.
fn estimate(progress: &Mutex<feed::Progress>, rate: u32, source: &Source) -> (Duration, bool) {
    let p = *progress.lock().expect("progress");
    let made = p.frames as f64 / f64::from(rate);
    if p.done {
        return (Duration::from_secs_f64(made), false);
    }
    let Source::Made { text, .. } = source else {
        return (Duration::from_secs_f64(made), true);
    };
    let sentences = text::sentences(text);
    let chars_done: usize = sentences
        .iter()
        .take(p.sentences)
        .map(|s| s.chars().count())
        .sum();
    let chars_all: usize = sentences.iter().map(|s| s.chars().count()).sum();
    let per_char = if chars_done > 0 {
        made / chars_done as f64
    } else {
        1.0 / CHARS_PER_SECOND
    };
    (
        Duration::from_secs_f64((per_char * chars_all as f64).max(made)),
        true,
    )
}

/// Shows `speaking` and sends each loudness level when its window plays.
async fn drive_eyes(
    speech: &Speech,
    share: &EyesShare,
    start: crate::audio::mixer::VoiceStart,
    mut levels: mpsc::UnboundedReceiver<Vec<u8>>,
) {
    let eyes = &speech.inner.eyes;
    let audio = &speech.inner.audio;
    {
        let mut saved = share.before.lock().await;
        let before = eyes.state().pattern;
        if saved.is_none() && before != Pattern::Speaking {
            *saved = Some(before);
        }
        if let Err(e) = eyes.set_pattern(Pattern::Speaking).await {
            tracing::debug!(error = %e, "the eyes cannot show speech");
            return;
        }
    }
    let Some(clock) = audio.clock() else { return };
    let rate = audio.state().sample_rate.max(1);
    let window = u64::from(rate / envelope::RATE_HZ).max(1);
    // The output takes the voice at its next period.
    let start = loop {
        if let Some(frame) = start.frame() {
            break frame;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    };
    let mut k: u64 = 0;
    let mut last = None;
    while let Some(batch) = levels.recv().await {
        for level in batch {
            let due = start + k * window;
            k += 1;
            // Sent when the output renders the window's first frame: the
            // sound reaches the speaker an output latency later, the digit
            // reaches the board two bytes' time later.
            loop {
                let now = clock.frames();
                if now >= due {
                    break;
                }
                let wait = (due - now) as f64 / f64::from(rate);
                tokio::time::sleep(Duration::from_secs_f64(wait.max(0.000_5))).await;
            }
            if last != Some(level) {
                last = Some(level);
                if eyes.voice_level(Some(level)).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Puts back the brightness set and the pattern shown before the speech,
/// unless another utterance began meanwhile (it puts them back at its end).
async fn restore_eyes(speech: &Speech, share: &EyesShare) {
    let eyes = &speech.inner.eyes;
    let mut saved = share.before.lock().await;
    if share.active.load(Ordering::Acquire) != 0 {
        return;
    }
    let _ = eyes.voice_level(None).await;
    let before = saved.take().map(|p| match p {
        // A reply spoken ends the listening or thinking before it: the
        // conversation goes back to INTERACTIVE's resting pattern.
        Pattern::Listening | Pattern::Thinking => {
            crate::eyes::pattern_for(crate::modes::Mode::Interactive)
        }
        other => other,
    });
    if let Some(before) = before
        && eyes.state().pattern == Pattern::Speaking
        && let Err(e) = eyes.set_pattern(before).await
    {
        tracing::debug!(error = %e, "the eyes could not go back after speech");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(data_size: u32, samples: usize) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend(b"RIFF");
        b.extend(0x7fff_f024u32.to_le_bytes());
        b.extend(b"WAVEfmt ");
        b.extend(16u32.to_le_bytes());
        b.extend(1u16.to_le_bytes()); // PCM
        b.extend(1u16.to_le_bytes()); // mono
        b.extend(22_050u32.to_le_bytes());
        b.extend(44_100u32.to_le_bytes());
        b.extend(2u16.to_le_bytes());
        b.extend(16u16.to_le_bytes());
        b.extend(b"data");
        b.extend(data_size.to_le_bytes());
        for i in 0..samples {
            b.extend((((i as f32 * 0.05).sin() * 9000.0) as i16).to_le_bytes());
        }
        b
    }

    #[test]
    fn a_wav_from_a_pipe_plays_whole() {
        let streamed = wav(0x7fff_f000, 22_050);
        let clip = decode_upload(Upload::Encoded(streamed), 1 << 20).expect("a streamed WAV plays");
        assert_eq!(clip.rate, 22_050);
        assert_eq!(clip.frames(), 22_050);
    }

    #[test]
    fn a_wav_that_is_really_cut_short_is_left_alone() {
        let mut b = wav(1000, 10);
        let before = b.clone();
        fix_streamed_wav(&mut b[..]);
        assert_eq!(b, before, "a file cut short stays cut short");
        assert!(decode_upload(Upload::Encoded(b), 1 << 20).is_err());
        let mut fine = wav(20, 10);
        let kept = fine.clone();
        fix_streamed_wav(&mut fine);
        assert_eq!(fine, kept);
        let mut junk = b"RIFF\xff\xff".to_vec();
        fix_streamed_wav(&mut junk);
    }

    #[test]
    fn an_upload_that_decodes_to_more_than_the_longest_clip_is_refused() {
        // 11 minutes of raw mono at 8 kHz.
        let raw = Upload::Raw {
            bytes: vec![0; 8_000 * 2 * 660],
            rate: 8_000,
            channels: 1,
        };
        let e = decode_upload(raw, 1 << 30).unwrap_err();
        assert!(e.to_string().contains("10 minutes"), "{e}");
    }
}
