//! The audio: music, speech and sound effects through one real-time mixer.
//!
//! [`Audio`] is the handle (cheap to clone, async) and the `audio`
//! [`Subsystem`]. Behind it, data flows one way:
//!
//! ```text
//! file ─ decoder thread ([`decode`]: symphonia, rubato) ─ lock-free ring ─┐
//!                                                                         ├─ Mixer::render ─ output
//! control task ([`player`]) ── lock-free command queue ───────────────────┘   (cpal callback, or a
//!                ▲                                                             paced thread: [`output`])
//!                └──────── lock-free event queue (voice ended, underrun …) ────┘
//! ```
//!
//! The control task owns the library ([`library`]), the queue, the decks
//! and DJ mode; it talks to the mixer only through queues, so the callback
//! never locks, allocates, logs or blocks. The gain math ([`gain`]) is pure.
//! The output's sample clock (frames rendered) is the droid's clock for
//! anything timed to the music ([`Audio::clock`]).

mod chime;
pub mod decode;
pub mod demo;
#[cfg(feature = "testkit")]
pub mod fixtures;
pub mod gain;
pub mod library;
pub mod mixer;
mod outcome;
pub mod output;
mod player;
pub mod settings;

use std::{path::PathBuf, sync::Arc, time::Duration};

use serde::Serialize;
use tokio::sync::watch;
use tracing::warn;

use crate::{
    actor::{ActorError, Handle, Subject},
    bus::Bus,
    lifecycle::{BoxFuture, ServiceStatus, StatusHandle, Subsystem},
    modes::{Mode, ModeHook},
};
pub use mixer::SampleClock;
pub use outcome::{
    Chimed, CrossfadeStarted, DjStarted, DjStopped, Ducked, Installed, Library, Paused, Queued,
    Resumed, SoundStarted, SpeechClip, SpeechEnd, SpeechStarted, SpeechStopped, Started, Stopped,
    Transition, Unducked, VolumeChange,
};
use player::{Outcome, Request};
pub use settings::{AudioOutput, AudioSettings};

/// The mixer's sample layout: interleaved stereo `f32`, at the output's rate.
pub const CHANNELS: usize = 2;

/// The mixer's buses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BusId {
    /// Music: two decks for crossfades; ducked under speech.
    Music,
    /// The droid's voice.
    Speech,
    /// Sound effects (`play sound`).
    Effects,
}

impl BusId {
    /// Every bus, in index order.
    pub const ALL: [BusId; 3] = [BusId::Music, BusId::Speech, BusId::Effects];

    /// The bus's index in arrays.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Whether music plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PlaybackState {
    /// A track sounds.
    Playing,
    /// A track holds its place, silent.
    Paused,
    /// No track.
    Stopped,
}

/// What the audio is doing, for status displays.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AudioState {
    /// The output: a device name, `virtual` or `wav:PATH`.
    pub output: String,
    /// True for the paced virtual output.
    #[serde(rename = "virtual")]
    pub is_virtual: bool,
    /// Whether the output works.
    pub connected: bool,
    /// Frames a second.
    pub sample_rate: u32,
    /// Playing, paused or stopped; `None` until the audio first starts.
    pub state: Option<PlaybackState>,
    /// The current track, if any.
    pub track: Option<library::Track>,
    /// Position in the current track, from the sample clock.
    pub position: Duration,
    /// Master volume, 0–100.
    pub volume: u8,
    /// The duck level while ducked.
    pub ducked: Option<f32>,
    /// DJ mode.
    pub dj: bool,
    /// Queued tracks, next first (display names).
    pub queue: Vec<String>,
    /// Tracks in the library.
    pub library_size: usize,
    /// Periods with an underrun, since start.
    pub underruns: u64,
    /// The last thing that went wrong.
    pub last_error: Option<String>,
}

/// Why an audio request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AudioError {
    /// The audio is stopped, or the output is lost.
    #[error("{0}")]
    Unavailable(String),
    /// No track matches; the message lists the closest.
    #[error("{0}")]
    NotFound(String),
    /// The request does not fit (nothing playing, a file that cannot be read …).
    #[error("{0}")]
    Refused(String),
}

impl From<ActorError> for AudioError {
    fn from(e: ActorError) -> Self {
        AudioError::Unavailable(e.to_string())
    }
}

/// Requests that may wait for the control task at once; more are refused.
const QUEUE: usize = 64;

/// The audio's handle and subsystem.
#[derive(Clone)]
pub struct Audio {
    inner: Arc<Inner>,
}

struct Inner {
    settings: AudioSettings,
    bus: Bus,
    state: watch::Sender<AudioState>,
    /// The control task, while it runs, and the output's clock.
    actor: Handle<player::Envelope, SampleClock>,
    /// The master volume the next start begins at: the default, the one
    /// restored from the state file, or the one the last run ended with (a
    /// reset keeps the volume).
    start_volume: std::sync::atomic::AtomicU8,
}

macro_rules! requests {
    ($( $(#[$doc:meta])* $name:ident ( $($arg:ident : $ty:ty),* ) -> $out:ty => $variant:ident; )*) => {
        impl Audio {
            $(
                $(#[$doc])*
                pub async fn $name(&self, $($arg: $ty),*) -> Result<$out, AudioError> {
                    player::expect(self.call(Request::$variant { $($arg),* }).await?)
                }
            )*
        }
    };
}

requests! {
    /// `stop music`.
    stop() -> Stopped => Stop;
    /// Stops the music with a fade (the panic button).
    fade_out(fade: Duration) -> Stopped => FadeOut;
    /// `pause music`.
    pause() -> Paused => Pause;
    /// `resume music`.
    resume() -> Resumed => Resume;
    /// `next music`: the queue first, else a random other track.
    next() -> Started => Next;
    /// `queue music <track>`.
    queue(query: String) -> Queued => Queue;
    /// `volume <0–100>`.
    volume(volume: u8) -> VolumeChange => Volume;
    /// `duck [level] [fade_ms]`.
    duck(level: Option<f32>, fade_ms: Option<u32>) -> Ducked => Duck;
    /// `unduck [fade_ms]`.
    unduck(fade_ms: Option<u32>) -> Unducked => Unduck;
    /// `list music`.
    list() -> Library => List;
    /// `install music <dir>`.
    install(dir: PathBuf) -> Installed => Install;
    /// `dj start`.
    dj_start() -> DjStarted => DjStart;
    /// `dj stop`.
    dj_stop() -> DjStopped => DjStop;
    /// `dj next`.
    dj_next() -> Started => DjNext;
    /// `dj queue <track>`.
    dj_queue(query: String) -> Queued => DjQueue;
    /// Plays an utterance on the speech bus, ducking the music under it
    /// until the last overlapping utterance ends.
    speak(clip: SpeechClip) -> SpeechStarted => Speak;
    /// Stops (with a short fade) one utterance, or all of them.
    stop_speech(voice: Option<mixer::VoiceId>) -> SpeechStopped => StopSpeech;
    /// The chime of a change to `mode`, on the effects bus.
    chime(mode: Mode) -> Chimed => Chime;
}

impl Audio {
    /// `play music <n|title|query>`: the track starts on the output's next
    /// period; `at_frame` says on which frame.
    pub async fn play(&self, query: String) -> Result<Started, AudioError> {
        self.play_at(query, None).await
    }

    /// Starts a track with its first sample on the sample clock's frame
    /// `at` (the one before stops with a short fade from that frame); `None`,
    /// or a frame already past when the output takes it, is the first frame
    /// it can. The answer comes once the output has taken it (a period at
    /// most), its `at_frame` the frame the track's first sample plays on.
    pub async fn play_at(&self, query: String, at: Option<u64>) -> Result<Started, AudioError> {
        let starting = player::expect(self.call(Request::Play { query, at }).await?)?;
        Ok(self.started(starting).await)
    }

    /// `crossfade <track> [seconds]`.
    pub async fn crossfade(
        &self,
        query: String,
        seconds: Option<f64>,
    ) -> Result<Started, AudioError> {
        self.crossfade_at(query, seconds, None).await
    }

    /// [`Audio::crossfade`] from the sample clock's frame `at`: the new
    /// track's first sample plays on it and the old one fades out from it
    /// (see [`Audio::play_at`]).
    pub async fn crossfade_at(
        &self,
        query: String,
        seconds: Option<f64>,
        at: Option<u64>,
    ) -> Result<Started, AudioError> {
        let request = Request::Crossfade { query, seconds, at };
        let starting = player::expect(self.call(request).await?)?;
        Ok(self.started(starting).await)
    }

    /// `play sound <file>`.
    pub async fn play_sound(&self, file: String) -> Result<SoundStarted, AudioError> {
        self.play_sound_at(file, None).await
    }

    /// Plays a sound with its first sample on the sample clock's frame `at`
    /// (see [`Audio::play_at`]): decoded beforehand, it waits in the mixer,
    /// so hand it over a few periods (and [`Audio::output_latency`]) ahead.
    /// `at_frame` is the frame its first sample plays on.
    pub async fn play_sound_at(
        &self,
        file: String,
        at: Option<u64>,
    ) -> Result<SoundStarted, AudioError> {
        let starting: player::Starting<SoundStarted> =
            player::expect(self.call(Request::Sound { file, at }).await?)?;
        let at_frame = starting.settle().await;
        Ok(SoundStarted {
            at_frame,
            ..starting.outcome
        })
    }

    /// A track's start, its frames those the output took it on.
    async fn started(&self, starting: player::Starting<Started>) -> Started {
        let frame = starting.settle().await;
        let mut started = starting.outcome;
        let late = frame.saturating_sub(started.at_frame);
        started.at_frame = frame;
        if let Transition::Crossfade(crossfade) = &mut started.transition {
            crossfade.ends_at_frame += late;
            let rate = self.state().sample_rate.max(1);
            crossfade.ends_at =
                Duration::from_secs_f64(crossfade.ends_at_frame as f64 / f64::from(rate));
        }
        started
    }

    /// The output latency: at most how long after the sample clock counts a
    /// frame rendered it is heard (the output's period, plus a device's
    /// buffer as the device reports it). `None` while no output runs.
    pub fn output_latency(&self) -> Option<Duration> {
        self.clock()?.latency()
    }

    /// Audio with `settings`, announcing on `bus`; nothing runs until started.
    pub fn new(settings: AudioSettings, bus: Bus) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                bus,
                state: watch::Sender::new(AudioState::default()),
                actor: Handle::new(Subject::singular("the audio")),
                start_volume: std::sync::atomic::AtomicU8::new(gain::DEFAULT_VOLUME),
            }),
        }
    }

    /// Sets the master volume (0–100) the audio starts at, before it
    /// starts: the state file's, at boot.
    pub fn restore_volume(&self, volume: u8) {
        self.inner
            .start_volume
            .store(volume.min(100), std::sync::atomic::Ordering::Relaxed);
    }

    /// What the audio is doing now.
    pub fn state(&self) -> AudioState {
        self.inner.state.borrow().clone()
    }

    /// Follows what the audio is doing.
    pub fn subscribe(&self) -> watch::Receiver<AudioState> {
        self.inner.state.subscribe()
    }

    /// The output's sample clock (frames rendered) while the audio runs:
    /// what timed shows synchronise to.
    pub fn clock(&self) -> Option<SampleClock> {
        self.inner.actor.with_running(SampleClock::clone)
    }

    /// The hook that chimes on every mode change (with `mode_chime`) and
    /// stops the music when the droid goes IDLE.
    pub fn mode_hook(&self) -> ModeHook {
        crate::actor::mode_hook(self, |audio: Audio, to| async move {
            // STARTUP (a reset going back through it) has no chime.
            if audio.inner.settings.mode_chime && chime::figure(to).is_some() {
                audio.chime_aside(to);
            }
            if to == Mode::Idle
                && audio.state().state != Some(PlaybackState::Stopped)
                && let Err(e) = audio.stop().await
            {
                warn!(error = %e, "could not stop the music for IDLE mode");
            }
        })
    }

    /// Plays `mode`'s chime without waiting for it: the mode change goes on
    /// at once, and a chime that cannot play (no output, audio stopped) is
    /// only logged. The chime is on the effects bus, so going IDLE, which
    /// stops the music, leaves it sounding.
    fn chime_aside(&self, mode: Mode) {
        let audio = self.clone();
        let correlation = crate::bus::current_correlation();
        let chime = async move {
            if let Err(e) = audio.chime(mode).await {
                warn!(mode = %mode, error = %e, "could not play the mode chime");
            }
        };
        tokio::spawn(async move {
            match correlation {
                Some(id) => crate::bus::with_correlation(id.to_string(), chime).await,
                None => chime.await,
            }
        });
    }

    /// Sends `request` to the control task and waits for its outcome.
    async fn call(&self, request: Request) -> Result<Outcome, AudioError> {
        self.inner.actor.ask(request).await?
    }
}

/// The subsystem status a state means.
fn status_of(state: &AudioState) -> (ServiceStatus, String) {
    if !state.connected {
        (
            ServiceStatus::Degraded,
            format!(
                "output {} lost: {}; reopening",
                state.output,
                state.last_error.as_deref().unwrap_or("not working")
            ),
        )
    } else if state.is_virtual {
        (
            ServiceStatus::Running,
            format!(
                "virtual output (no sound card), {} Hz: sound is mixed in real time and discarded",
                state.sample_rate
            ),
        )
    } else {
        (
            ServiceStatus::Running,
            format!("output {}, {} Hz", state.output, state.sample_rate),
        )
    }
}

impl Subsystem for Audio {
    fn name(&self) -> &'static str {
        "audio"
    }

    /// The droid carries on (eyes, shows without music) without sound.
    fn critical(&self) -> bool {
        false
    }

    fn start(&self, status: StatusHandle) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let inner = &self.inner;
            let (player, clock) = player::Player::start(
                inner.settings.clone(),
                inner.bus.clone(),
                inner.state.clone(),
                inner
                    .start_volume
                    .load(std::sync::atomic::Ordering::Relaxed),
            )
            .await?;
            inner.actor.spawn_task(QUEUE, clock, |rx| player.run(rx));
            inner
                .actor
                .follow(status, inner.state.subscribe(), status_of)
                .await;
            Ok(())
        })
    }

    /// Closing the control task's channel ends it, which stops the output
    /// and the decoders; one stuck past the bound is cut off, so that it
    /// lets go of the device before the next start opens it.
    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.inner.actor.stop().await;
            // The next start (a reset) carries on at the volume set.
            if self.inner.state.borrow().state.is_some() {
                let volume = self.inner.state.borrow().volume;
                self.restore_volume(volume);
            }
        })
    }
}
