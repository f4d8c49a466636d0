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

pub mod decode;
#[cfg(feature = "demo-library")]
pub mod demo;
#[cfg(feature = "testkit")]
pub mod fixtures;
pub mod gain;
pub mod library;
pub mod mixer;
pub mod output;
mod player;

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::warn;

use crate::{
    bus::{self, Bus},
    config::AudioOutput,
    lifecycle::{BoxFuture, ServiceStatus, StatusHandle, Subsystem},
    modes::{Mode, ModeHook},
};
pub use mixer::SampleClock;
use player::Request;

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

/// The audio's settings.
#[derive(Clone, Debug)]
pub struct AudioSettings {
    /// Where the sound goes.
    pub output: AudioOutput,
    /// Frames a second; `None`: the device's default (48,000 for our outputs).
    pub sample_rate: Option<u32>,
    /// Frames per period; `None`: the device's default (1,024 for our outputs).
    pub period_frames: Option<u32>,
    /// The music library; `None`: the generated demo library in `data_dir`.
    pub music_dir: Option<PathBuf>,
    /// Where the demo library is generated.
    pub data_dir: PathBuf,
    /// Longest wait between attempts to reopen a lost output.
    pub retry_max: Duration,
    /// Length of DJ mode's crossfades.
    pub dj_transition: Duration,
}

impl AudioSettings {
    /// The library folder in use.
    pub fn library_dir(&self) -> PathBuf {
        self.music_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("music"))
    }
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
    /// `playing`, `paused` or `stopped`.
    pub state: &'static str,
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

/// The audio's handle and subsystem.
#[derive(Clone)]
pub struct Audio {
    inner: Arc<Inner>,
}

struct Inner {
    settings: AudioSettings,
    bus: Bus,
    state: watch::Sender<AudioState>,
    running: Mutex<Option<Running>>,
}

struct Running {
    tx: mpsc::Sender<player::Envelope>,
    task: tokio::task::JoinHandle<()>,
    watcher: tokio::task::JoinHandle<()>,
    clock: SampleClock,
}

/// A reply to a command: a message for people and data for programs.
pub type Answer = (String, serde_json::Value);

macro_rules! requests {
    ($( $(#[$doc:meta])* $name:ident ( $($arg:ident : $ty:ty),* ) => $variant:ident; )*) => {
        impl Audio {
            $(
                $(#[$doc])*
                pub async fn $name(&self, $($arg: $ty),*) -> Result<Answer, AudioError> {
                    self.call(Request::$variant { $($arg),* }).await
                }
            )*
        }
    };
}

requests! {
    /// `play music <n|title|query>`.
    play(query: String) => Play;
    /// `stop music`.
    stop() => Stop;
    /// `pause music`.
    pause() => Pause;
    /// `resume music`.
    resume() => Resume;
    /// `next music`: the queue first, else a random other track.
    next() => Next;
    /// `queue music <track>`.
    queue(query: String) => Queue;
    /// `volume <0–100>`.
    volume(volume: u8) => Volume;
    /// `crossfade <track> [seconds]`.
    crossfade(query: String, seconds: Option<f64>) => Crossfade;
    /// `duck [level] [fade_ms]`.
    duck(level: Option<f32>, fade_ms: Option<u32>) => Duck;
    /// `unduck [fade_ms]`.
    unduck(fade_ms: Option<u32>) => Unduck;
    /// `list music`.
    list() => List;
    /// `install music <dir>`.
    install(dir: PathBuf) => Install;
    /// `play sound <file>`.
    play_sound(file: String) => Sound;
    /// `dj start`.
    dj_start() => DjStart;
    /// `dj stop`.
    dj_stop() => DjStop;
    /// `dj next`.
    dj_next() => DjNext;
    /// `dj queue <track>`.
    dj_queue(query: String) => DjQueue;
}

impl Audio {
    /// Audio with `settings`, announcing on `bus`; nothing runs until started.
    pub fn new(settings: AudioSettings, bus: Bus) -> Self {
        Self {
            inner: Arc::new(Inner {
                settings,
                bus,
                state: watch::Sender::new(AudioState::default()),
                running: Mutex::new(None),
            }),
        }
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
        self.inner
            .running
            .lock()
            .expect("audio lock")
            .as_ref()
            .map(|r| r.clock.clone())
    }

    /// The hook that stops the music when the droid goes IDLE.
    pub fn mode_hook(&self) -> ModeHook {
        let audio = self.clone();
        Arc::new(move |_, to| {
            let audio = audio.clone();
            Box::pin(async move {
                if to == Mode::Idle
                    && audio.state().state != "stopped"
                    && let Err(e) = audio.stop().await
                {
                    warn!(error = %e, "could not stop the music for IDLE mode");
                }
                Ok(())
            })
        })
    }

    async fn call(&self, request: Request) -> Result<Answer, AudioError> {
        let tx = self
            .inner
            .running
            .lock()
            .expect("audio lock")
            .as_ref()
            .map(|r| r.tx.clone())
            .ok_or_else(|| {
                AudioError::Unavailable(
                    "the audio is not running (stopped, or restarting after 'reset'); try again in a moment".into(),
                )
            })?;
        let (reply, answer) = oneshot::channel();
        let envelope = player::Envelope {
            request,
            reply,
            correlation: bus::current_correlation(),
        };
        tx.try_send(envelope).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => AudioError::Unavailable(
                "the audio is busy: too many requests are waiting; try again".into(),
            ),
            mpsc::error::TrySendError::Closed(_) => {
                AudioError::Unavailable("the audio stopped".into())
            }
        })?;
        answer
            .await
            .unwrap_or_else(|_| Err(AudioError::Unavailable("the audio stopped".into())))
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
            let (tx, rx) = mpsc::channel(64);
            let (player, clock) = player::Player::start(
                inner.settings.clone(),
                inner.bus.clone(),
                inner.state.clone(),
            )
            .await?;
            let watcher = status.follow(inner.state.subscribe(), status_of).await;
            let task = tokio::spawn(player.run(rx));
            *inner.running.lock().expect("audio lock") = Some(Running {
                tx,
                task,
                watcher,
                clock,
            });
            Ok(())
        })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let running = self.inner.running.lock().expect("audio lock").take();
            if let Some(running) = running {
                // Closing the channel ends the player, which stops the output
                // and the decoders.
                running.watcher.abort();
                drop(running.tx);
                let mut task = running.task;
                if tokio::time::timeout(Duration::from_secs(5), &mut task)
                    .await
                    .is_err()
                {
                    // Stuck: cut it off, so that it lets go of the device
                    // before the next start opens it.
                    warn!("the audio task did not stop within 5 s; aborting it");
                    task.abort();
                    let _ = task.await;
                }
            }
        })
    }
}
