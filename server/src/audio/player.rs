//! The audio's control task: the library, the decks, the queue, DJ mode,
//! the output's life, and everything the music announces. It owns the
//! mixer's control side and talks to the real-time side only through its
//! lock-free queues; decoding and file work happen on other threads.

use std::{
    collections::VecDeque,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use rand::{Rng, seq::IndexedRandom};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

use super::{
    AudioError, AudioSettings, AudioState, BusId, Chimed, CrossfadeStarted, DjStarted, DjStopped,
    Ducked, Installed, Library, Paused, PlaybackState, Queued, Resumed, SoundStarted, SpeechClip,
    SpeechEnd, SpeechStarted, SpeechStopped, Started, Stopped, Transition, Unducked, VolumeChange,
    chime::Chimes,
    decode::Decoder,
    demo,
    gain::{self, Curve},
    library::{self, Track},
    mixer::{self, MixerControl, MixerEvent, SampleClock, Source, VoiceId, VoiceStart},
    output::{self, Format, MixerSlot, Output, OutputKind},
    settings::AudioOutput,
};
use crate::{
    bus::{Bus, Topic},
    modes::Mode,
};

/// How often the control task looks at the mixer and the output.
const TICK: Duration = Duration::from_millis(20);
/// Decoded audio kept ahead of the output, per voice.
const RING: Duration = Duration::from_millis(500);
/// "Track ending soon" comes this long before the end.
const ENDING_SOON: Duration = Duration::from_secs(30);
/// Short fades that keep stops, pauses and jumps free of clicks.
const CLICK_FADE: Duration = Duration::from_millis(30);
/// Volume changes glide over this long.
const VOLUME_RAMP: Duration = Duration::from_millis(100);
/// DJ mode avoids the last this many tracks.
const DJ_MEMORY: usize = 10;
/// An output whose clock stands this long is taken as lost.
const STALL: Duration = Duration::from_millis(1500);
/// Effects that may sound at once (the mixer has 16 voices; music needs 2).
const MAX_EFFECTS: usize = 8;
/// Utterances that may overlap (what is left of the mixer's voices).
const MAX_UTTERANCES: usize = 4;

/// First wait before reopening a lost output; it doubles up to the setting.
const FIRST_RETRY: Duration = Duration::from_millis(250);

/// A request, where its answer goes and the asking command's correlation id.
pub type Envelope = crate::actor::Envelope<Request, Result<Outcome, AudioError>>;

macro_rules! outcomes {
    ($( $(#[$doc:meta])* $variant:ident($ty:ty), )*) => {
        /// What a request did: one of the outcomes the handle's methods return.
        #[derive(Debug)]
        pub enum Outcome {
            $( $(#[$doc])* $variant($ty), )*
        }

        $(
            impl From<$ty> for Outcome {
                fn from(outcome: $ty) -> Self {
                    Outcome::$variant(outcome)
                }
            }

            impl TryFrom<Outcome> for $ty {
                type Error = Outcome;

                fn try_from(outcome: Outcome) -> Result<Self, Outcome> {
                    match outcome {
                        Outcome::$variant(outcome) => Ok(outcome),
                        #[allow(unreachable_patterns)]
                        other => Err(other),
                    }
                }
            }
        )*
    };
}

outcomes! {
    /// A track started.
    Started(Started),
    /// A track handed to the mixer, to start on a frame.
    TrackStarting(Starting<Started>),
    /// A sound handed to the mixer, to start on a frame.
    SoundStarting(Starting<SoundStarted>),
    /// `stop`.
    Stopped(Stopped),
    /// `pause`.
    Paused(Paused),
    /// `resume`.
    Resumed(Resumed),
    /// `queue`, `dj queue`.
    Queued(Queued),
    /// `volume`.
    Volume(VolumeChange),
    /// `duck`.
    Ducked(Ducked),
    /// `unduck`.
    Unducked(Unducked),
    /// `list`.
    Library(Library),
    /// `install`.
    Installed(Installed),
    /// `play sound`.
    Sound(SoundStarted),
    /// `dj start`.
    DjStarted(DjStarted),
    /// `dj stop`.
    DjStopped(DjStopped),
    /// An utterance started.
    Speaking(SpeechStarted),
    /// `speech stop`.
    SpeechStopped(SpeechStopped),
    /// The mode chime.
    Chimed(Chimed),
}

/// What a request that starts a voice did, and where the voice starts: the
/// handle waits for the output to take it (see [`Starting::settle`]).
#[derive(Debug)]
pub struct Starting<T> {
    /// What the request did; its `at_frame` is the frame handed over.
    pub outcome: T,
    /// The frame asked for, or the clock when handed over.
    pub asked: u64,
    /// Where the voice starts, once the output took it.
    pub start: VoiceStart,
}

impl<T> Starting<T> {
    /// The frame the voice's first sample plays on: `asked`, or a later one
    /// if that had passed when the output took it. Waits for the output's
    /// next period; one that takes no sound for a second leaves `asked`.
    pub async fn settle(&self) -> u64 {
        let deadline = Instant::now() + SETTLE;
        loop {
            if let Some(frame) = self.start.frame() {
                return frame;
            }
            if Instant::now() >= deadline {
                return self.asked;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

/// How long [`Starting::settle`] waits for the output to take a voice.
const SETTLE: Duration = Duration::from_secs(1);

/// The outcome a request promises. Each request has one kind of outcome (the
/// handle's methods name it), so another one is a bug, reported as such
/// rather than a panic.
pub fn expect<T: TryFrom<Outcome, Error = Outcome>>(outcome: Outcome) -> Result<T, AudioError> {
    T::try_from(outcome).map_err(|other| {
        AudioError::Unavailable(format!(
            "the audio answered with the wrong kind of outcome ({other:?}); this is a bug: please report it"
        ))
    })
}

/// What the handle asks for.
pub enum Request {
    Play {
        query: String,
        at: Option<u64>,
    },
    Stop {},
    FadeOut {
        fade: std::time::Duration,
    },
    Pause {},
    Resume {},
    Next {},
    Queue {
        query: String,
    },
    Volume {
        volume: u8,
    },
    Crossfade {
        query: String,
        seconds: Option<f64>,
        at: Option<u64>,
    },
    Duck {
        level: Option<f32>,
        fade_ms: Option<u32>,
    },
    Unduck {
        fade_ms: Option<u32>,
    },
    List {},
    Install {
        dir: PathBuf,
    },
    Sound {
        file: String,
        at: Option<u64>,
    },
    DjStart {},
    DjStop {},
    DjNext {},
    DjQueue {
        query: String,
    },
    Speak {
        clip: SpeechClip,
    },
    StopSpeech {
        voice: Option<VoiceId>,
    },
    Chime {
        mode: Mode,
    },
}

/// An utterance playing on the speech bus.
struct Utterance {
    voice: VoiceId,
    /// The music's level under it.
    duck_level: f32,
    /// How fast the music ducks for it and comes back after it.
    fade: Duration,
    ended: Option<tokio::sync::oneshot::Sender<SpeechEnd>>,
}

/// A playing track.
struct Deck {
    voice: VoiceId,
    track: Track,
    decoder: Decoder,
    ending_soon_sent: bool,
}

/// DJ mode's next transition, announced (`music.dj.transition.upcoming`)
/// before its crossfade and then played as announced.
struct DjPlan {
    /// The voice of the track it leaves: a plan never outlives its track.
    from: VoiceId,
    /// The track it crossfades into.
    to: Track,
    /// `to` is the queue's first; it leaves the queue when the crossfade
    /// starts, not before, so the queue shows it until then.
    queued: bool,
}

/// The output's state.
enum Link {
    Up(Output),
    Down { retry: Instant, since: Instant },
}

pub struct Player {
    settings: AudioSettings,
    bus: Bus,
    state: watch::Sender<AudioState>,
    slot: Arc<MixerSlot>,
    control: MixerControl,
    rate: u32,
    link: Link,
    backoff: Duration,
    /// The output is the virtual one because no device was found.
    fallback_virtual: bool,
    tracks: Vec<Track>,
    current: Option<Deck>,
    /// Decks fading out (crossfade, stop): kept until their voice ends.
    fading: Vec<Deck>,
    /// Effects voices and their decoders.
    effects: Vec<(VoiceId, Decoder)>,
    paused: bool,
    queue: VecDeque<Track>,
    recent: VecDeque<PathBuf>,
    dj: bool,
    volume: u8,
    ducked: Option<f32>,
    /// Utterances on the speech bus; the music ducks while there are any.
    speaking: Vec<Utterance>,
    /// The music's duck level as set in the mixer (the user's and the speech's lower).
    duck_applied: Option<f32>,
    crossfading: Option<(VoiceId, VoiceId)>,
    last_error: Option<String>,
    scans: mpsc::Receiver<Result<library::Scan, String>>,
    scans_tx: mpsc::Sender<Result<library::Scan, String>>,
    /// A scan is running.
    scanning: bool,
    last_progress: Instant,
    underruns_reported: u64,
    /// The output's clock when last seen to move, and when.
    clock_seen: (u64, Instant),
    /// Device glitches (xruns) of outputs since dropped.
    xruns: u64,
    /// The mode chimes, synthesized at the output's rate.
    chimes: Chimes,
    /// The mode chime sounding, if any: a new one replaces it.
    chime: Option<VoiceId>,
    /// DJ mode's next transition, once announced.
    dj_plan: Option<DjPlan>,
}

impl Player {
    /// Creates the mixer at master `volume` (0–100), opens the output and
    /// starts scanning the library.
    pub async fn start(
        settings: AudioSettings,
        bus: Bus,
        state: watch::Sender<AudioState>,
        volume: u8,
    ) -> Result<(Player, SampleClock), String> {
        let device = match (&settings.output, settings.sample_rate) {
            (AudioOutput::Default, None) => Some(None),
            (AudioOutput::Device(name), None) => Some(Some(name.clone())),
            _ => None,
        };
        let rate = match (device, settings.sample_rate) {
            (_, Some(rate)) => rate,
            // Listing and asking ALSA blocks: not on the runtime.
            (Some(name), None) => tokio::task::spawn_blocking(move || {
                output::device_rate(name.as_deref()).unwrap_or(output::DEFAULT_RATE)
            })
            .await
            .unwrap_or(output::DEFAULT_RATE),
            (None, None) => output::DEFAULT_RATE,
        };
        let (mixer, control) = mixer::mixer(rate, output::MAX_PERIOD);
        let clock = control.clock();
        let slot = MixerSlot::new(mixer);
        let (scans_tx, scans) = mpsc::channel(4);
        let now = Instant::now();
        let mut player = Player {
            settings,
            bus,
            state,
            slot,
            control,
            rate,
            link: Link::Down {
                retry: now,
                since: now,
            },
            backoff: FIRST_RETRY,
            fallback_virtual: false,
            tracks: Vec::new(),
            current: None,
            fading: Vec::new(),
            effects: Vec::new(),
            paused: false,
            queue: VecDeque::new(),
            recent: VecDeque::new(),
            dj: false,
            volume: volume.min(100),
            ducked: None,
            speaking: Vec::new(),
            duck_applied: None,
            crossfading: None,
            last_error: None,
            scans,
            scans_tx,
            scanning: false,
            last_progress: now,
            underruns_reported: 0,
            clock_seen: (0, now),
            xruns: 0,
            chimes: Chimes::new(rate),
            chime: None,
            dj_plan: None,
        };
        player
            .control
            .set_master(gain::volume_to_gain(player.volume), 0)
            .map_err(|_| "the mixer's queue is full at start".to_string())?;
        player.open_output(true).await;
        player.rescan();
        player.publish();
        Ok((player, clock))
    }

    /// Serves requests until the handle's channel closes.
    pub async fn run(mut self, mut requests: mpsc::Receiver<Envelope>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                envelope = requests.recv() => {
                    let Some(envelope) = envelope else { break };
                    // The command's id follows every event the request causes.
                    let answer = match envelope.correlation {
                        Some(id) => {
                            crate::bus::with_correlation(id.to_string(), self.request(envelope.request))
                                .await
                        }
                        None => self.request(envelope.request).await,
                    };
                    let _ = envelope.reply.send(answer);
                    self.publish();
                }
                Some(scan) = self.scans.recv() => {
                    self.scanned(scan);
                    self.publish();
                }
                _ = tick.tick() => {
                    self.tick().await;
                    self.publish();
                }
            }
        }
        self.shutdown().await;
    }

    // --- output ------------------------------------------------------------

    /// Opens the configured output; `first` lets `default` fall back to the
    /// virtual output when there is no sound device. Opening blocks (device
    /// lists, ALSA, files), so it runs off the runtime.
    async fn open_output(&mut self, first: bool) {
        let format = Format {
            sample_rate: Some(self.rate),
            period_frames: self.settings.period_frames,
        };
        let slot = self.slot.clone();
        let wanted = self.settings.output.clone();
        let fallback_virtual = self.fallback_virtual;
        let opened = tokio::task::spawn_blocking(move || match &wanted {
            AudioOutput::Virtual => (output::open_virtual(format, slot), false),
            AudioOutput::Wav(path) => (output::open_wav(path, format, slot, !first), false),
            AudioOutput::Device(name) => (output::open_device(Some(name), format, slot), false),
            AudioOutput::Default if fallback_virtual => (output::open_virtual(format, slot), true),
            AudioOutput::Default => match output::open_device(None, format, slot.clone()) {
                Ok(out) => (Ok(out), false),
                // A machine without a usable sound device (none at all, or
                // ALSA's `default` leading nowhere, as on a server) gets the
                // virtual output; a device another program holds is waited
                // for instead.
                Err(e) if first && !e.contains(output::BUSY) => {
                    info!(
                        reason = %e,
                        "no sound device: using the VIRTUAL output (sound is mixed in real time and discarded); set CANTINA_AUDIO_OUTPUT to a device name or wav:PATH"
                    );
                    (output::open_virtual(format, slot), true)
                }
                Err(e) => (Err(e), false),
            },
        })
        .await;
        let opened = match opened {
            Ok((opened, virtual_fallback)) => {
                self.fallback_virtual |= virtual_fallback;
                opened
            }
            Err(e) => Err(format!("opening the audio output failed: {e}")),
        };
        let now = Instant::now();
        match opened {
            Ok(out) => {
                if let Link::Down { since, .. } = self.link
                    && !first
                {
                    info!(output = %out.kind().describe(), "the audio output is back");
                    self.emit(
                        Topic::AudioDeviceRecovered,
                        json!({
                            "output": out.kind().describe(),
                            "downtime_ms": since.elapsed().as_millis() as u64,
                        }),
                    );
                } else {
                    info!(
                        output = %out.kind().describe(),
                        sample_rate = out.sample_rate(),
                        period_frames = out.period_frames(),
                        channels = out.channels(),
                        "audio output open"
                    );
                }
                self.backoff = FIRST_RETRY;
                self.link = Link::Up(out);
            }
            Err(error) => {
                if first {
                    warn!(output = %self.settings.output, error = %error, "cannot open the audio output; retrying with backoff");
                } else {
                    debug!(output = %self.settings.output, error = %error, "the audio output is still unavailable");
                }
                self.last_error = Some(error);
                let since = match self.link {
                    Link::Down { since, .. } => since,
                    Link::Up(_) => now,
                };
                self.link = Link::Down {
                    retry: now + self.backoff,
                    since,
                };
                self.backoff = (self.backoff * 2).min(self.settings.retry_max.max(FIRST_RETRY));
            }
        }
    }

    async fn check_output(&mut self) {
        match &self.link {
            Link::Up(out) => {
                // A device can also just stop calling back: the clock stands.
                let frames = self.control.clock().frames();
                let now = Instant::now();
                if frames != self.clock_seen.0 {
                    self.clock_seen = (frames, now);
                }
                let stalled = now.duration_since(self.clock_seen.1) > STALL;
                let failure = out.failure().or_else(|| {
                    stalled.then(|| {
                        format!(
                            "the output stopped taking sound (its clock has stood still for {} ms)",
                            STALL.as_millis()
                        )
                    })
                });
                if let Some(failure) = failure {
                    warn!(output = %out.kind().describe(), error = %failure, "lost the audio output; reopening");
                    self.emit(
                        Topic::AudioDeviceLost,
                        json!({ "output": out.kind().describe(), "error": failure }),
                    );
                    self.last_error = Some(failure);
                    self.xruns += out.xruns();
                    // Dropping the output stops its thread (a join, so off
                    // the runtime); the mixer, and so the music's place,
                    // stays in the slot.
                    let down = Link::Down {
                        retry: now + self.backoff,
                        since: now,
                    };
                    let old = std::mem::replace(&mut self.link, down);
                    let _ = tokio::task::spawn_blocking(move || drop(old)).await;
                }
            }
            Link::Down { retry, .. } if *retry <= Instant::now() => {
                self.open_output(false).await;
                self.clock_seen = (self.control.clock().frames(), Instant::now());
            }
            Link::Down { .. } => {}
        }
    }

    fn output_up(&self) -> Result<(), AudioError> {
        match &self.link {
            Link::Up(_) => Ok(()),
            Link::Down { .. } => Err(AudioError::Unavailable(format!(
                "the audio output {} is not working ({}); it is being reopened: check the sound device or CANTINA_AUDIO_OUTPUT",
                self.settings.output,
                self.last_error.as_deref().unwrap_or("unknown error")
            ))),
        }
    }

    // --- the periodic work --------------------------------------------------

    async fn tick(&mut self) {
        self.check_output().await;
        // A duck change the mixer could not take (its queue was full while
        // the output stalled) is made now.
        if duck_target(self.ducked, self.speaking.iter().map(|u| u.duck_level)) != self.duck_applied
            && let Err(e) = self.apply_duck_for(gain::DEFAULT_DUCK_FADE, Some("retry"))
        {
            debug!(error = %e, "the music's duck still waits for the mixer");
        }
        for event in self.control.poll() {
            self.mixer_event(event).await;
        }
        let underruns = self.control.underruns();
        if underruns > self.underruns_reported
            && self.last_progress.elapsed() >= Duration::from_secs(1)
        {
            self.emit(
                Topic::AudioUnderrun,
                json!({ "new": underruns - self.underruns_reported, "total": underruns }),
            );
            self.underruns_reported = underruns;
        }
        if let Some(deck) = &self.current
            && let Some(error) = deck.decoder.error()
            && self.last_error.as_deref() != Some(error.as_str())
        {
            warn!(track = %deck.track.display_name(), error = %error, "decoding failed mid-track");
            self.last_error = Some(error);
        }
        self.ending_soon();
        if self.dj {
            self.dj_advance().await;
        } else {
            self.dj_plan = None;
        }
        if self.last_progress.elapsed() >= Duration::from_secs(1) {
            self.last_progress = Instant::now();
            if let Some(deck) = &self.current
                && !self.paused
            {
                let position = self.position(deck.voice);
                self.emit(
                    Topic::MusicPlaybackProgress,
                    json!({
                        "track": deck.track.display_name(),
                        "position_ms": position.as_millis() as u64,
                        "duration_ms": deck.track.duration.map(|d| d.as_millis() as u64),
                    }),
                );
            }
        }
    }

    async fn mixer_event(&mut self, event: MixerEvent) {
        match event {
            MixerEvent::VoiceEnded {
                id,
                stopped,
                frames_played,
            } => {
                self.effects.retain(|(voice, _)| *voice != id);
                self.speech_ended(
                    id,
                    SpeechEnd {
                        frames_played,
                        stopped,
                    },
                );
                if self.chime == Some(id) {
                    self.chime = None;
                }
                self.fading.retain(|deck| deck.voice != id);
                // A crossfade one of whose voices is gone is over (its
                // CrossfadeDone may never come); DJ mode must not wait on it.
                if self
                    .crossfading
                    .is_some_and(|(from, to)| id == to || (id == from && !stopped))
                {
                    self.crossfading = None;
                }
                let ended = self.current.as_ref().is_some_and(|d| d.voice == id);
                if ended && !stopped {
                    let deck = self.current.take().expect("checked");
                    info!(track = %deck.track.display_name(), "track ended");
                    self.emit(
                        Topic::MusicPlaybackEnded,
                        json!({ "track": deck.track.display_name(), "path": deck.track.path }),
                    );
                    self.after_track().await;
                }
            }
            MixerEvent::CrossfadeDone { from, to } if self.crossfading == Some((from, to)) => {
                self.crossfading = None;
                self.emit(
                    Topic::MusicCrossfadeCompleted,
                    json!({ "to": self.current.as_ref().map(|d| d.track.display_name()) }),
                );
            }
            MixerEvent::DuckDone { .. } | MixerEvent::Underrun { .. } => {}
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// A track played out: the queue's next, DJ mode's pick, or silence.
    /// A next track that cannot be played is skipped (a few at most).
    async fn after_track(&mut self) {
        for _ in 0..3 {
            let next = self.take_queued_or_pick(self.dj);
            let Some(track) = next else { break };
            self.emit_queue();
            match self.start_track(track, None).await {
                Ok(_) => return,
                Err(e) => {
                    warn!(error = %e, "could not play the next track; skipping it");
                    self.last_error = Some(e.to_string());
                }
            }
        }
        self.paused = false;
        if std::mem::replace(&mut self.dj, false) {
            self.emit(
                Topic::MusicDjStopped,
                json!({ "reason": "nothing left to play" }),
            );
        }
        self.emit(
            Topic::MusicPlaybackStopped,
            json!({ "reason": "the last track ended" }),
        );
    }

    fn ending_soon(&mut self) {
        let Some(deck) = &self.current else { return };
        let (Some(duration), false) = (deck.track.duration, deck.ending_soon_sent) else {
            return;
        };
        let position = self.position(deck.voice);
        if duration > ENDING_SOON && duration.saturating_sub(position) <= ENDING_SOON {
            let payload = json!({
                "track": deck.track.display_name(),
                "remaining_ms": duration.saturating_sub(position).as_millis() as u64,
            });
            if let Some(deck) = self.current.as_mut() {
                deck.ending_soon_sent = true;
            }
            self.emit(Topic::MusicTrackEndingSoon, payload);
        }
    }

    /// DJ mode: announces the next transition `dj_commentary_lead` ahead
    /// (see [`Player::dj_announce`]), then starts the crossfade into the
    /// track announced so that it ends as the current one does.
    async fn dj_advance(&mut self) {
        if self.paused {
            return;
        }
        let Some(deck) = &self.current else { return };
        let Some(duration) = deck.track.duration else {
            return;
        };
        let voice = deck.voice;
        let position = self.position(voice);
        self.dj_announce(voice, duration, position);
        if self.crossfading.is_some() {
            return;
        }
        let Some(fade) = dj_crossfade_due(self.settings.dj_transition, duration, position) else {
            return;
        };
        let Some(next) = self
            .take_announced(voice)
            .or_else(|| self.take_queued_or_pick(true))
        else {
            return;
        };
        self.emit_queue();
        if let Err(e) = self.start_track(next, Some(fade)).await {
            warn!(error = %e, "DJ mode could not start the next track");
            self.last_error = Some(e.to_string());
        }
    }

    /// DJ mode's pick (see [`dj_pick`]).
    fn dj_pick(&self) -> Option<Track> {
        let playing = self.current.as_ref().map(|d| d.track.path.as_path());
        dj_pick(&self.tracks, &self.recent, playing, &mut rand::rng()).cloned()
    }

    /// Takes what plays next (see [`next_track`]): the queue's first, else,
    /// when `pick`, DJ mode's pick.
    fn take_queued_or_pick(&mut self, pick: bool) -> Option<Track> {
        let (tracks, recent) = (&self.tracks, &self.recent);
        let playing = self.current.as_ref().map(|d| d.track.path.as_path());
        next_track(&mut self.queue, || {
            pick.then(|| dj_pick(tracks, recent, playing, &mut rand::rng()).cloned())
                .flatten()
        })
    }

    // --- DJ commentary -----------------------------------------------------------
    //
    // Each DJ transition is announced once, `dj_commentary_lead` before its
    // crossfade starts (at once when less remains), naming both tracks, so
    // that a commentary client's speech can land over it; the crossfade then
    // goes into the very track announced. When the user changes what comes
    // next (a track queued after a random pick was announced) the plan is
    // dropped and the new next track announced at once (`revised`). Another
    // track started by hand simply leaves the old plan behind.

    /// Drops an announced plan that no longer holds, and announces the next
    /// transition when it is due and not announced yet.
    fn dj_announce(&mut self, voice: VoiceId, duration: Duration, position: Duration) {
        let front = self.queue.front().map(|t| t.path.as_path());
        let mut revised = false;
        if let Some(plan) = &self.dj_plan
            && !dj_plan_holds(plan.from, &plan.to.path, plan.queued, voice, front)
        {
            revised = plan.from == voice;
            debug!(track = %plan.to.display_name(), "the announced DJ transition no longer holds");
            self.dj_plan = None;
        }
        if self.dj_plan.is_some() {
            return;
        }
        let (lead, setting) = (
            self.settings.dj_commentary_lead,
            self.settings.dj_transition,
        );
        let Some(starts_in) = dj_announce_due(lead, setting, duration, position) else {
            return;
        };
        let (to, queued) = match self.queue.front() {
            Some(track) => (track.clone(), true),
            None => match self.dj_pick() {
                Some(track) => (track, false),
                None => return,
            },
        };
        let Some(deck) = &self.current else { return };
        let crossfade = dj_transition(setting, duration);
        self.emit_upcoming(&deck.track, &to, crossfade, starts_in, queued, revised);
        self.dj_plan = Some(DjPlan {
            from: voice,
            to,
            queued,
        });
    }

    /// The track announced to follow the one on `voice`, if that still
    /// holds; a queued one leaves the queue.
    fn take_announced(&mut self, voice: VoiceId) -> Option<Track> {
        let plan = self.dj_plan.take()?;
        let front = self.queue.front().map(|t| t.path.as_path());
        if !dj_plan_holds(plan.from, &plan.to.path, plan.queued, voice, front) {
            return None;
        }
        if plan.queued {
            self.queue.pop_front();
        }
        Some(plan.to)
    }

    /// What `dj next` crossfades into at once: the track already announced,
    /// else the queue's next or a pick, which DJ mode announces then with
    /// no lead (`starts_in_ms` 0). Either way each transition is announced
    /// once.
    fn dj_next_track(&mut self) -> Result<Track, AudioError> {
        self.output_up()?;
        let playing = self.current.as_ref().map(|d| d.voice);
        if let Some(track) = playing.and_then(|voice| self.take_announced(voice)) {
            self.emit_queue();
            return Ok(track);
        }
        let queued = !self.queue.is_empty();
        let next = self.take_next()?;
        if self.dj
            && !self.paused
            && let Some(deck) = &self.current
        {
            let fade = self.settings.dj_transition;
            self.emit_upcoming(&deck.track, &next, fade, Duration::ZERO, queued, false);
        }
        Ok(next)
    }

    /// Publishes `music.dj.transition.upcoming`: from `from` into `to`, a
    /// crossfade of `crossfade` starting in `starts_in` (to within a tick).
    fn emit_upcoming(
        &self,
        from: &Track,
        to: &Track,
        crossfade: Duration,
        starts_in: Duration,
        queued: bool,
        revised: bool,
    ) {
        let describe = |t: &Track| {
            json!({
                "track": t.display_name(),
                "title": t.title,
                "artist": t.artist,
                "path": t.path,
                "duration_ms": t.duration.map(|d| d.as_millis() as u64),
            })
        };
        let now = self.control.clock().frames();
        info!(from = %from.display_name(), to = %to.display_name(), starts_in = ?starts_in, "DJ transition upcoming");
        self.emit(
            Topic::MusicDjTransitionUpcoming,
            json!({
                "from": describe(from),
                "to": describe(to),
                "crossfade_ms": crossfade.as_millis() as u64,
                "starts_in_ms": starts_in.as_millis() as u64,
                "starts_at_frame": now + u64::from(gain::frames_for(starts_in, self.rate)),
                "sample_rate": self.rate,
                "queued": queued,
                "revised": revised,
            }),
        );
    }

    // --- requests -------------------------------------------------------------

    async fn request(&mut self, request: Request) -> Result<Outcome, AudioError> {
        Ok(match request {
            Request::List {} => {
                self.not_scanning()?;
                self.list().into()
            }
            Request::Play { query, at } => {
                self.output_up()?;
                let track = self.find(&query)?;
                self.start_track_at(track, None, at).await?.into()
            }
            Request::Stop {} => self.stop_music("stopped")?.into(),
            Request::FadeOut { fade } => self.stop_music_over("panic", fade)?.into(),
            Request::Pause {} => self.pause()?.into(),
            Request::Resume {} => self.resume()?.into(),
            Request::Next {} => {
                let next = self.take_next()?;
                self.start_track(next, None).await?.into()
            }
            Request::Queue { query } | Request::DjQueue { query } => {
                let track = self.find(&query)?;
                let position = enqueue(&mut self.queue, track.clone());
                self.emit_queue();
                Queued { track, position }.into()
            }
            Request::Volume { volume } => self.set_volume(volume)?.into(),
            Request::Crossfade { query, seconds, at } => {
                self.output_up()?;
                let track = self.find(&query)?;
                let length = seconds
                    .map(Duration::from_secs_f64)
                    .unwrap_or(gain::DEFAULT_CROSSFADE);
                // With nothing playing it simply starts (see start_track).
                self.start_track_at(track, Some(length), at).await?.into()
            }
            Request::Duck { level, fade_ms } => self.duck(level, fade_ms)?.into(),
            Request::Unduck { fade_ms } => self.unduck(fade_ms)?.into(),
            Request::Install { dir } => self.install(dir).await?.into(),
            Request::Sound { file, at } => self.play_sound(&file, at).await?.into(),
            Request::DjStart {} => {
                self.output_up()?;
                self.not_scanning()?;
                if self.dj {
                    return Ok(DjStarted {
                        already: true,
                        started: None,
                    }
                    .into());
                }
                let mut started = None;
                if self.current.is_none() || self.paused {
                    let track = self.dj_pick().ok_or_else(|| {
                        AudioError::Refused(
                            "the library is empty: nothing to play; 'install music <folder>' adds some".into(),
                        )
                    })?;
                    started = Some(self.start_track(track, None).await?);
                }
                // On only once something plays.
                self.dj = true;
                self.emit(Topic::MusicDjStarted, json!({}));
                DjStarted {
                    already: false,
                    started,
                }
                .into()
            }
            Request::DjStop {} => {
                let was_on = std::mem::replace(&mut self.dj, false);
                if was_on {
                    self.emit(Topic::MusicDjStopped, json!({}));
                }
                DjStopped { was_on }.into()
            }
            Request::DjNext {} => {
                let next = self.dj_next_track()?;
                let fade = self.settings.dj_transition;
                self.start_track(next, Some(fade)).await?.into()
            }
            Request::Speak { clip } => self.speak(clip)?.into(),
            Request::StopSpeech { voice } => self.stop_speech(voice).into(),
            Request::Chime { mode } => self.play_chime(mode)?.into(),
        })
    }

    /// What `next` plays: the queue's first, else a random other track.
    fn take_next(&mut self) -> Result<Track, AudioError> {
        self.output_up()?;
        self.not_scanning()?;
        let next = self
            .take_queued_or_pick(true)
            .ok_or_else(|| AudioError::Refused("the library has no other track".into()))?;
        self.emit_queue();
        Ok(next)
    }

    fn find(&self, query: &str) -> Result<Track, AudioError> {
        self.not_scanning()?;
        library::find(&self.tracks, query)
            .map(|i| self.tracks[i].clone())
            .map_err(|e| AudioError::NotFound(e.to_string()))
    }

    /// Starts `track` on a new voice: at once (the current one stops with a
    /// short fade), or crossfading over `crossfade`.
    async fn start_track(
        &mut self,
        track: Track,
        crossfade: Option<Duration>,
    ) -> Result<Started, AudioError> {
        Ok(self.start_track_at(track, crossfade, None).await?.outcome)
    }

    /// [`Player::start_track`], the track's first sample (and the fade or
    /// the crossfade from the one before) on the clock's frame `at` if given.
    async fn start_track_at(
        &mut self,
        mut track: Track,
        crossfade: Option<Duration>,
        at: Option<u64>,
    ) -> Result<Starting<Started>, AudioError> {
        self.output_up()?;
        // A paused track is not faded from: it is silent already.
        let crossfade = crossfade.filter(|_| self.current.is_some() && !self.paused);
        let (voice_id, decoder) = self
            .open_voice(&track.path, BusId::Music, crossfade.is_some(), at)
            .await?;
        let start = self
            .control
            .start_of(voice_id)
            .expect("the voice was just added");
        let change = at.unwrap_or(0);
        if track.duration.is_none() {
            track.duration = decoder.info().duration;
        }
        // Whatever still fades out from before is cut short: only the track
        // this change leaves may sound beside the new one.
        self.stop_fading();
        let at_frame = at.unwrap_or_else(|| self.control.clock().frames());
        let transition = match (&self.current, crossfade) {
            (Some(old), Some(length)) => {
                let (old_voice, old_name) = (old.voice, old.track.display_name());
                let from = old.track.clone();
                let frames = gain::frames_for(length, self.rate);
                if let Err(e) = self.mixer(|m| m.crossfade_at(old_voice, voice_id, frames, change))
                {
                    let _ = self.control.stop_voice(voice_id, 0);
                    return Err(e);
                }
                self.crossfading = Some((old_voice, voice_id));
                self.emit(
                    Topic::MusicCrossfadeStarted,
                    json!({
                        "from": old_name,
                        "to": track.display_name(),
                        "seconds": length.as_secs_f64(),
                    }),
                );
                let ends_at_frame = crossfade_end(at_frame, length, self.rate);
                Transition::Crossfade(CrossfadeStarted {
                    from,
                    length,
                    ends_at_frame,
                    ends_at: frame_time(ends_at_frame, self.rate),
                })
            }
            (Some(old), None) => {
                let (old_voice, from) = (old.voice, old.track.clone());
                let fade = gain::frames_for(CLICK_FADE, self.rate);
                if let Err(e) = self.mixer(|m| m.stop_voice_at(old_voice, fade, change)) {
                    let _ = self.control.stop_voice(voice_id, 0);
                    return Err(e);
                }
                Transition::Cut { from }
            }
            (None, _) => Transition::Silence,
        };
        if let Some(old) = self.current.take() {
            self.fading.push(old);
        }
        if self.paused {
            self.paused = false;
        }
        info!(track = %track.display_name(), path = %track.path.display(), "playing");
        self.emit(
            Topic::MusicPlaybackStarted,
            json!({
                "track": track.display_name(),
                "title": track.title,
                "artist": track.artist,
                "path": track.path,
                "duration_ms": track.duration.map(|d| d.as_millis() as u64),
                "start_time": humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
                "crossfade": crossfade.map(|d| d.as_secs_f64()),
            }),
        );
        remember(&mut self.recent, track.path.clone());
        let started = Started {
            index: self.tracks.iter().position(|t| t.path == track.path),
            track: track.clone(),
            at_frame,
            transition,
        };
        self.current = Some(Deck {
            voice: voice_id,
            track,
            decoder,
            ending_soon_sent: false,
        });
        Ok(Starting {
            outcome: started,
            asked: at_frame,
            start,
        })
    }

    /// Starts decoding `path` and adds its voice once the first period is
    /// decoded, so that it sounds at the next period boundary, or on the
    /// clock's frame `at` if given.
    async fn open_voice(
        &mut self,
        path: &Path,
        bus: BusId,
        silent: bool,
        at: Option<u64>,
    ) -> Result<(VoiceId, Decoder), AudioError> {
        let rate = self.rate;
        let ring = gain::frames_for(RING, rate) as usize;
        let period = self
            .settings
            .period_frames
            .unwrap_or(output::DEFAULT_PERIOD) as usize;
        let path = path.to_path_buf();
        let started = tokio::task::spawn_blocking(move || {
            let (decoder, samples, finished, _info) = Decoder::start(&path, rate, ring)?;
            decoder.wait_buffered(&samples, period.min(ring), Duration::from_secs(2));
            Ok::<_, super::decode::DecodeError>((decoder, samples, finished))
        })
        .await
        .map_err(|e| AudioError::Refused(format!("the decoder failed: {e}")))?;
        let (decoder, samples, finished) =
            started.map_err(|e| AudioError::Refused(e.to_string()))?;
        let fade = if silent {
            None
        } else {
            Some((
                gain::frames_for(Duration::from_millis(5), rate),
                Curve::Linear,
            ))
        };
        let gain = if silent { 0.0 } else { 1.0 };
        let voice = self
            .control
            .add_voice_at(
                bus,
                Source { samples, finished },
                gain,
                fade,
                at.unwrap_or(0),
            )
            .map_err(|_| mixer_full())?;
        Ok((voice, decoder))
    }

    fn mixer(
        &mut self,
        f: impl FnOnce(&mut MixerControl) -> Result<(), mixer::MixerFull>,
    ) -> Result<(), AudioError> {
        f(&mut self.control).map_err(|_| mixer_full())
    }

    /// Stops, quickly, the decks still fading out (a crossfade's old track).
    fn stop_fading(&mut self) {
        let fade = gain::frames_for(CLICK_FADE, self.rate);
        for deck in &self.fading {
            // Best effort: a full queue only means it fades out at its pace.
            let _ = self.control.stop_voice(deck.voice, fade);
        }
        self.crossfading = None;
    }

    fn stop_music(&mut self, reason: &str) -> Result<Stopped, AudioError> {
        self.stop_music_over(reason, CLICK_FADE)
    }

    /// Stops the music with a fade of `fade` (the DJ mode too).
    fn stop_music_over(&mut self, reason: &str, fade: Duration) -> Result<Stopped, AudioError> {
        let Some(voice) = self.current.as_ref().map(|d| d.voice) else {
            return Ok(Stopped::NothingPlaying);
        };
        let fade = gain::frames_for(fade.max(CLICK_FADE), self.rate);
        self.mixer(|m| m.stop_voice(voice, fade))?;
        self.stop_fading();
        let deck = self.current.take().expect("checked");
        let position = self.position(deck.voice);
        let dj = std::mem::replace(&mut self.dj, false);
        if dj {
            self.emit(Topic::MusicDjStopped, json!({}));
        }
        self.paused = false;
        info!(track = %deck.track.display_name(), reason, "music stopped");
        self.emit(
            Topic::MusicPlaybackStopped,
            json!({
                "track": deck.track.display_name(),
                "position_ms": position.as_millis() as u64,
                "reason": reason,
            }),
        );
        let stopped = Stopped::Track {
            track: deck.track.clone(),
            position,
            dj_ended: dj,
        };
        self.fading.push(deck);
        Ok(stopped)
    }

    fn pause(&mut self) -> Result<Paused, AudioError> {
        let Some(deck) = &self.current else {
            return Err(AudioError::Refused("no music is playing".into()));
        };
        let (voice, track) = (deck.voice, deck.track.clone());
        if self.paused {
            return Ok(Paused {
                position: self.position(voice),
                track,
                already: true,
            });
        }
        let fade = gain::frames_for(CLICK_FADE, self.rate);
        if self.crossfading.is_some() {
            // Pausing ends a crossfade where it is: the old track goes, the
            // new one will resume at full level.
            self.stop_fading();
            self.mixer(|m| m.set_voice_gain(voice, 1.0, fade, Curve::Linear))?;
        }
        self.mixer(|m| m.pause_voice(voice, fade))?;
        self.paused = true;
        let position = self.announce(Topic::MusicPlaybackPaused, voice, &track);
        Ok(Paused {
            track,
            position,
            already: false,
        })
    }

    /// Publishes a pause or a resume; returns the position it happened at.
    fn announce(&self, topic: Topic, voice: VoiceId, track: &Track) -> Duration {
        let position = self.position(voice);
        self.emit(
            topic,
            json!({ "track": track.display_name(), "position_ms": position.as_millis() as u64 }),
        );
        position
    }

    fn resume(&mut self) -> Result<Resumed, AudioError> {
        self.output_up()?;
        let Some(deck) = &self.current else {
            return Err(AudioError::Refused(
                "no music is paused; 'play music <track>' starts some".into(),
            ));
        };
        let (voice, track) = (deck.voice, deck.track.clone());
        if !self.paused {
            return Ok(Resumed {
                position: self.position(voice),
                track,
                already: true,
            });
        }
        let fade = gain::frames_for(CLICK_FADE, self.rate);
        self.mixer(|m| m.resume_voice(voice, fade))?;
        self.paused = false;
        let position = self.announce(Topic::MusicPlaybackResumed, voice, &track);
        Ok(Resumed {
            track,
            position,
            already: false,
        })
    }

    fn set_volume(&mut self, volume: u8) -> Result<VolumeChange, AudioError> {
        let volume = volume.min(100);
        let frames = gain::frames_for(VOLUME_RAMP, self.rate);
        self.mixer(|m| m.set_master(gain::volume_to_gain(volume), frames))?;
        let previous = std::mem::replace(&mut self.volume, volume);
        if previous != volume {
            self.emit(
                Topic::MusicVolumeChanged,
                json!({ "volume": volume, "previous": previous }),
            );
        }
        Ok(VolumeChange {
            before: previous,
            after: volume,
        })
    }

    fn duck(&mut self, level: Option<f32>, fade_ms: Option<u32>) -> Result<Ducked, AudioError> {
        let level = level.unwrap_or(gain::DEFAULT_DUCK_LEVEL);
        let fade = fade_ms
            .map(|ms| Duration::from_millis(u64::from(ms)))
            .unwrap_or(gain::DEFAULT_DUCK_FADE);
        let before = self.ducked.replace(level);
        if let Err(e) = self.apply_duck(fade) {
            self.ducked = before;
            return Err(e);
        }
        self.emit(
            Topic::MusicDuckStarted,
            json!({ "level": level, "fade_ms": fade.as_millis() as u64, "reason": "duck" }),
        );
        Ok(Ducked { level, fade })
    }

    fn unduck(&mut self, fade_ms: Option<u32>) -> Result<Unducked, AudioError> {
        let fade = fade_ms
            .map(|ms| Duration::from_millis(u64::from(ms)))
            .unwrap_or(gain::DEFAULT_DUCK_FADE);
        let was = self.ducked.take();
        if let Err(e) = self.apply_duck(fade) {
            self.ducked = was;
            return Err(e);
        }
        if was.is_some() {
            self.emit(
                Topic::MusicDuckEnded,
                json!({ "fade_ms": fade.as_millis() as u64, "reason": "unduck" }),
            );
        }
        Ok(Unducked {
            previous: was,
            fade,
        })
    }

    // --- speech -----------------------------------------------------------------

    /// Puts an utterance on the speech bus and ducks the music under it.
    fn speak(&mut self, clip: SpeechClip) -> Result<SpeechStarted, AudioError> {
        self.output_up()?;
        if self.speaking.len() >= MAX_UTTERANCES {
            return Err(AudioError::Refused(format!(
                "{MAX_UTTERANCES} utterances are already playing; wait for one to end or 'speech stop'"
            )));
        }
        let duck_level = clip
            .duck_level
            .unwrap_or(gain::DEFAULT_DUCK_LEVEL)
            .clamp(0.0, 1.0);
        let fade = clip.duck_fade.unwrap_or(gain::DEFAULT_DUCK_FADE);
        let voice = self
            .control
            .add_voice(
                BusId::Speech,
                clip.source,
                1.0,
                Some((
                    gain::frames_for(Duration::from_millis(5), self.rate),
                    Curve::Linear,
                )),
            )
            .map_err(|_| mixer_full())?;
        let start = self
            .control
            .start_of(voice)
            .expect("the voice was just added");
        let at_frame = self.control.clock().frames();
        self.speaking.push(Utterance {
            voice,
            duck_level,
            fade,
            ended: Some(clip.ended),
        });
        if let Err(e) = self.apply_duck_for(fade, Some("speech")) {
            warn!(error = %e, "could not duck the music under speech");
        }
        Ok(SpeechStarted {
            voice,
            start,
            at_frame,
            duck_level,
        })
    }

    /// Fades out one utterance, or all.
    fn stop_speech(&mut self, voice: Option<VoiceId>) -> SpeechStopped {
        let fade = gain::frames_for(CLICK_FADE, self.rate);
        let mut stopped = 0;
        for u in &self.speaking {
            if voice.is_none_or(|v| v == u.voice) && self.control.stop_voice(u.voice, fade).is_ok()
            {
                stopped += 1;
            }
        }
        SpeechStopped { stopped }
    }

    /// An utterance's voice ended: tell its owner, and bring the music back
    /// when it was the last.
    fn speech_ended(&mut self, voice: VoiceId, end: SpeechEnd) {
        let Some(i) = self.speaking.iter().position(|u| u.voice == voice) else {
            return;
        };
        let mut utterance = self.speaking.remove(i);
        if let Some(ended) = utterance.ended.take() {
            let _ = ended.send(end);
        }
        if let Err(e) = self.apply_duck_for(utterance.fade, Some("speech")) {
            warn!(error = %e, "could not bring the music back after speech");
        }
    }

    /// Sets the music bus's duck to what is asked now: the lower of the
    /// user's `duck` and every utterance's level, or none; over `fade`.
    ///
    /// `announce` names a change that is not the user's own `duck` or
    /// `unduck` (which announce themselves): `speech`, or `retry`.
    fn apply_duck_for(&mut self, fade: Duration, announce: Option<&str>) -> Result<(), AudioError> {
        let target = duck_target(self.ducked, self.speaking.iter().map(|u| u.duck_level));
        if target == self.duck_applied {
            return Ok(());
        }
        let frames = gain::frames_for(fade, self.rate);
        match target {
            Some(level) => self.mixer(|m| m.duck(level, frames))?,
            None => self.mixer(|m| m.unduck(frames))?,
        }
        self.duck_applied = target;
        if let Some(reason) = announce {
            let fade_ms = fade.as_millis() as u64;
            match target {
                Some(level) => self.emit(
                    Topic::MusicDuckStarted,
                    json!({ "level": level, "fade_ms": fade_ms, "reason": reason }),
                ),
                None => self.emit(
                    Topic::MusicDuckEnded,
                    json!({ "fade_ms": fade_ms, "reason": reason }),
                ),
            }
        }
        Ok(())
    }

    fn apply_duck(&mut self, fade: Duration) -> Result<(), AudioError> {
        self.apply_duck_for(fade, None)
    }

    fn list(&self) -> Library {
        let playing = self.current.as_ref().and_then(|d| {
            self.tracks
                .iter()
                .position(|track| track.path == d.track.path)
        });
        Library {
            dir: self.settings.library_dir(),
            tracks: self.tracks.clone(),
            playing,
        }
    }

    async fn install(&mut self, from: PathBuf) -> Result<Installed, AudioError> {
        let library = self.settings.library_dir();
        let source = from.clone();
        let report = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&library)?;
            library::install(&source, &library)
        })
        .await
        .map_err(|e| AudioError::Refused(format!("the install failed: {e}")))?
        .map_err(|e| AudioError::Refused(format!("cannot install from {}: {e}", from.display())))?;
        self.rescan();
        Ok(Installed {
            from,
            copied: report.copied,
            skipped: report.skipped,
        })
    }

    async fn play_sound(
        &mut self,
        file: &str,
        at: Option<u64>,
    ) -> Result<Starting<SoundStarted>, AudioError> {
        self.output_up()?;
        if self.effects.len() >= MAX_EFFECTS {
            return Err(AudioError::Refused(format!(
                "{MAX_EFFECTS} sounds are already playing; wait for one to end"
            )));
        }
        let path = self.sound_path(file)?;
        let (voice, decoder) = self.open_voice(&path, BusId::Effects, false, at).await?;
        let start = self
            .control
            .start_of(voice)
            .expect("the voice was just added");
        let duration = decoder.info().duration;
        let at_frame = at.unwrap_or_else(|| self.control.clock().frames());
        self.effects.push((voice, decoder));
        self.emit(Topic::AudioSoundStarted, json!({ "path": path }));
        Ok(Starting {
            outcome: SoundStarted {
                path,
                duration,
                at_frame,
            },
            asked: at_frame,
            start,
        })
    }

    /// A sound file: as given, or in the data folder's `sounds`, or in the
    /// library.
    fn sound_path(&self, file: &str) -> Result<PathBuf, AudioError> {
        let given = PathBuf::from(file);
        let candidates = [
            given.clone(),
            self.settings.data_dir.join("sounds").join(file),
            self.settings.library_dir().join(file),
        ];
        candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
            AudioError::NotFound(format!(
                "no sound file '{file}': give a path, or put it in {}",
                self.settings.data_dir.join("sounds").display()
            ))
        })
    }

    // --- mode chime -------------------------------------------------------------

    /// Plays `mode`'s chime on the effects bus, from memory (see
    /// [`super::chime`]); a chime still sounding from a change just before
    /// fades out quickly, so quick changes never pile chimes up.
    fn play_chime(&mut self, mode: Mode) -> Result<Chimed, AudioError> {
        self.output_up()?;
        let Some((source, length)) = self.chimes.source(mode) else {
            return Err(AudioError::Refused(format!("{mode} mode has no chime")));
        };
        if let Some(old) = self.chime.take() {
            let fade = gain::frames_for(CLICK_FADE, self.rate);
            // Best effort: a full queue only means both sound a moment.
            let _ = self.control.stop_voice(old, fade);
        }
        // The samples fade in and out themselves.
        let voice = self
            .control
            .add_voice(BusId::Effects, source, 1.0, None)
            .map_err(|_| mixer_full())?;
        self.chime = Some(voice);
        let at_frame = self.control.clock().frames();
        debug!(%mode, "mode chime");
        self.emit(
            Topic::AudioSoundStarted,
            json!({
                "chime": mode.as_str(),
                "duration_ms": length.as_millis() as u64,
                "at_frame": at_frame,
            }),
        );
        Ok(Chimed { length, at_frame })
    }

    // --- library ----------------------------------------------------------------

    /// Scans the library in the background (generating the demo library
    /// first when no folder is configured).
    /// Refuses, saying why, while the first scan (or the demo library's
    /// generation) has not finished: an empty list then would be a lie.
    fn not_scanning(&self) -> Result<(), AudioError> {
        if self.scanning && self.tracks.is_empty() {
            return Err(AudioError::Unavailable(format!(
                "the music library in {} is still being scanned{}; try again in a moment",
                self.settings.library_dir().display(),
                if self.settings.music_dir.is_none() && cfg!(feature = "demo-library") {
                    " (the demo library is generated on first run)"
                } else {
                    ""
                }
            )));
        }
        Ok(())
    }

    fn rescan(&mut self) {
        self.scanning = true;
        let dir = self.settings.library_dir();
        let demo = self.settings.music_dir.is_none();
        let tx = self.scans_tx.clone();
        tokio::task::spawn_blocking(move || {
            let scan = (|| {
                if demo {
                    demo::ensure_demo_library(&dir).map_err(|e| {
                        format!("cannot write the demo library to {}: {e}", dir.display())
                    })?;
                }
                library::scan(&dir)
                    .map_err(|e| format!("cannot read the music folder {}: {e}", dir.display()))
            })();
            let _ = tx.blocking_send(scan);
        });
    }

    fn scanned(&mut self, scan: Result<library::Scan, String>) {
        self.scanning = false;
        match scan {
            Ok(scan) => {
                for skipped in &scan.skipped {
                    warn!(path = %skipped.path.display(), reason = %skipped.reason, "skipped a file in the music library");
                }
                info!(
                    tracks = scan.tracks.len(),
                    skipped = scan.skipped.len(),
                    folder = %self.settings.library_dir().display(),
                    took = ?scan.elapsed,
                    "music library scanned"
                );
                self.emit(
                    Topic::MusicLibraryUpdated,
                    json!({
                        "tracks": scan.tracks.len(),
                        "skipped": scan.skipped.iter().map(|s| json!({ "path": s.path, "reason": s.reason })).collect::<Vec<_>>(),
                        "folder": self.settings.library_dir(),
                    }),
                );
                self.tracks = scan.tracks;
            }
            Err(error) => {
                warn!(error = %error, "the music library could not be scanned");
                self.last_error = Some(error);
            }
        }
    }

    // --- state ----------------------------------------------------------------

    fn position(&self, voice: VoiceId) -> Duration {
        let frames = self.control.position(voice).unwrap_or(0);
        Duration::from_secs_f64(frames as f64 / f64::from(self.rate))
    }

    fn emit_queue(&self) {
        self.emit(
            Topic::MusicQueueUpdated,
            json!({ "queue": self.queue.iter().map(Track::display_name).collect::<Vec<_>>() }),
        );
    }

    fn emit(&self, topic: Topic, payload: Value) {
        self.bus.emit(topic, "audio", payload);
    }

    fn publish(&self) {
        let (output, is_virtual, connected) = match &self.link {
            Link::Up(out) => (
                out.kind().describe(),
                *out.kind() == OutputKind::Virtual,
                true,
            ),
            Link::Down { .. } => (self.settings.output.to_string(), false, false),
        };
        let state = AudioState {
            output,
            is_virtual,
            connected,
            sample_rate: self.rate,
            state: Some(match (&self.current, self.paused) {
                (None, _) => PlaybackState::Stopped,
                (Some(_), true) => PlaybackState::Paused,
                (Some(_), false) => PlaybackState::Playing,
            }),
            track: self.current.as_ref().map(|d| d.track.clone()),
            position: self
                .current
                .as_ref()
                .map(|d| self.position(d.voice))
                .unwrap_or_default(),
            volume: self.volume,
            ducked: self.duck_applied,
            dj: self.dj,
            queue: self.queue.iter().map(Track::display_name).collect(),
            library_size: self.tracks.len(),
            underruns: self.control.underruns()
                + self.xruns
                + match &self.link {
                    Link::Up(out) => out.xruns(),
                    Link::Down { .. } => 0,
                },
            last_error: self.last_error.clone(),
        };
        self.state.send_if_modified(|s| {
            let changed = *s != state;
            *s = state;
            changed
        });
    }

    async fn shutdown(mut self) {
        // The output stops first, so the mixer is idle when the decoders go;
        // both join threads, so off the runtime.
        let output = std::mem::replace(
            &mut self.link,
            Link::Down {
                retry: Instant::now(),
                since: Instant::now(),
            },
        );
        let decks: Vec<Deck> = self
            .current
            .take()
            .into_iter()
            .chain(self.fading.drain(..))
            .collect();
        let effects = std::mem::take(&mut self.effects);
        // Their owners hear of the end when the senders drop.
        self.speaking.clear();
        let _ = tokio::task::spawn_blocking(move || {
            drop(output);
            drop((decks, effects));
        })
        .await;
        self.state.send_modify(|s| {
            s.connected = false;
            s.state = Some(PlaybackState::Stopped);
            s.track = None;
        });
    }
}

fn mixer_full() -> AudioError {
    AudioError::Unavailable(format!(
        "the mixer cannot take this now: all its {} voices are in use, or its command queue is full because the output is not taking sound; see 'status'",
        mixer::MAX_VOICES
    ))
}

// --- decisions ------------------------------------------------------------------
//
// Pure, so that their tests are data in, data out.

/// The music's duck level: the lowest of the user's `duck` and the
/// utterances playing; `None` (full level) when there is neither.
fn duck_target(user: Option<f32>, speech: impl Iterator<Item = f32>) -> Option<f32> {
    speech.fold(user, |low, level| Some(low.map_or(level, |l| l.min(level))))
}

/// Adds `track` at the end of the queue; returns its place, 1 playing next.
fn enqueue(queue: &mut VecDeque<Track>, track: Track) -> usize {
    queue.push_back(track);
    queue.len()
}

/// What plays next: the queue's first, in the order queued; only with the
/// queue empty, `pick` (DJ mode's choice, or nothing).
fn next_track(queue: &mut VecDeque<Track>, pick: impl FnOnce() -> Option<Track>) -> Option<Track> {
    queue.pop_front().or_else(pick)
}

/// Remembers a track that started, for DJ mode to avoid (the last
/// [`DJ_MEMORY`]).
fn remember(recent: &mut VecDeque<PathBuf>, path: PathBuf) {
    recent.push_back(path);
    while recent.len() > DJ_MEMORY {
        recent.pop_front();
    }
}

/// DJ mode's choice from `tracks`: a random one, not among the last ten
/// started (`recent`, oldest first), or the last `n - 1` in a library of
/// `n` ≤ 10 tracks; never `playing`. Only when that leaves nothing, any
/// track but the one playing.
fn dj_pick<'a, R: Rng + ?Sized>(
    tracks: &'a [Track],
    recent: &VecDeque<PathBuf>,
    playing: Option<&Path>,
    rng: &mut R,
) -> Option<&'a Track> {
    let keep = DJ_MEMORY.min(tracks.len().saturating_sub(1));
    let recent: Vec<&PathBuf> = recent.iter().rev().take(keep).collect();
    let not_playing = |t: &&Track| Some(t.path.as_path()) != playing;
    let fresh: Vec<&Track> = tracks
        .iter()
        .filter(not_playing)
        .filter(|t| !recent.contains(&&t.path))
        .collect();
    let pool: Vec<&Track> = if fresh.is_empty() {
        tracks.iter().filter(not_playing).collect()
    } else {
        fresh
    };
    pool.choose(rng).copied()
}

/// How long DJ mode's crossfades last for a track of `duration`: the
/// setting, but at most a third of the track, and at least half a second.
fn dj_transition(setting: Duration, duration: Duration) -> Duration {
    setting.min(duration / 3).max(Duration::from_millis(500))
}

/// Whether DJ mode starts crossfading into the next track now, at `position`
/// in a track of `duration`: once what remains fits the transition, over
/// what remains, so the new track plays alone as the old one ends.
fn dj_crossfade_due(setting: Duration, duration: Duration, position: Duration) -> Option<Duration> {
    let remaining = duration.saturating_sub(position);
    (remaining <= dj_transition(setting, duration)).then(|| remaining.max(CLICK_FADE))
}

/// Whether DJ mode announces its next transition now, at `position` in a
/// track of `duration`: once the crossfade (see [`dj_crossfade_due`]) starts
/// within `lead`, which for a track shorter than the lead is at once.
/// Returns how soon the crossfade starts; a zero lead announces nothing.
fn dj_announce_due(
    lead: Duration,
    setting: Duration,
    duration: Duration,
    position: Duration,
) -> Option<Duration> {
    let starts_at = duration.saturating_sub(dj_transition(setting, duration));
    let starts_in = starts_at.saturating_sub(position);
    (!lead.is_zero() && starts_in <= lead).then_some(starts_in)
}

/// Whether an announced transition from the track on voice `from` into
/// `to` (the queue's first when `queued`, else a pick made with the queue
/// empty) still holds, with `playing` on and `front` first in the queue: the
/// same track plays, and the queue has not put another one first.
fn dj_plan_holds(
    from: VoiceId,
    to: &Path,
    queued: bool,
    playing: VoiceId,
    front: Option<&Path>,
) -> bool {
    from == playing
        && match front {
            Some(front) => queued && front == to,
            None => !queued,
        }
}

/// The sample-clock frame at which a crossfade of `length` from `start`
/// ends, at `rate` frames a second.
fn crossfade_end(start: u64, length: Duration, rate: u32) -> u64 {
    start + u64::from(gain::frames_for(length, rate))
}

/// A sample-clock frame as time, at `rate` frames a second.
fn frame_time(frame: u64, rate: u32) -> Duration {
    Duration::from_secs_f64(frame as f64 / f64::from(rate))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use rand::{SeedableRng, rngs::StdRng};

    use super::*;

    fn track(name: &str) -> Track {
        Track {
            path: PathBuf::from(format!("/music/{name}.mp3")),
            title: name.to_string(),
            artist: None,
            album: None,
            genre: None,
            duration: Some(Duration::from_secs(180)),
            format: "mp3",
        }
    }

    fn library(n: usize) -> Vec<Track> {
        (0..n).map(|i| track(&format!("track {i}"))).collect()
    }

    /// DJ mode's memory after `played` started in this order.
    fn played(tracks: &[Track], played: &[usize]) -> VecDeque<PathBuf> {
        let mut recent = VecDeque::new();
        for &i in played {
            remember(&mut recent, tracks[i].path.clone());
        }
        recent
    }

    /// The indexes DJ mode picks in many tries.
    fn picks(
        tracks: &[Track],
        recent: &VecDeque<PathBuf>,
        playing: Option<usize>,
    ) -> HashSet<usize> {
        let mut rng = StdRng::seed_from_u64(7);
        let playing = playing.map(|i| tracks[i].path.as_path());
        (0..500)
            .map(|_| {
                let pick = dj_pick(tracks, recent, playing, &mut rng).expect("a pick");
                tracks.iter().position(|t| t == pick).unwrap()
            })
            .collect()
    }

    #[test]
    fn the_queue_plays_in_the_order_queued_and_before_any_pick() {
        let mut queue = VecDeque::new();
        assert_eq!(enqueue(&mut queue, track("a")), 1);
        assert_eq!(enqueue(&mut queue, track("b")), 2);
        assert_eq!(enqueue(&mut queue, track("c")), 3);
        let never = || -> Option<Track> { panic!("no pick while tracks are queued") };
        assert_eq!(next_track(&mut queue, never), Some(track("a")));
        assert_eq!(next_track(&mut queue, never), Some(track("b")));
        // Queued behind what is left.
        assert_eq!(enqueue(&mut queue, track("d")), 2);
        assert_eq!(next_track(&mut queue, never), Some(track("c")));
        assert_eq!(next_track(&mut queue, never), Some(track("d")));
        assert_eq!(
            next_track(&mut queue, || Some(track("picked"))),
            Some(track("picked"))
        );
        assert_eq!(next_track(&mut queue, || None), None);
    }

    #[test]
    fn dj_mode_remembers_the_last_ten_tracks() {
        let tracks = library(15);
        let recent = played(&tracks, &(0..15).collect::<Vec<_>>());
        let expected: VecDeque<PathBuf> = tracks[5..].iter().map(|t| t.path.clone()).collect();
        assert_eq!(recent, expected);
    }

    #[test]
    fn dj_mode_never_picks_one_of_the_last_ten() {
        let tracks = library(15);
        // Track 9 plays; 0 to 9 are the last ten.
        let recent = played(&tracks, &[12, 13, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        assert_eq!(
            picks(&tracks, &recent, Some(9)),
            HashSet::from([10, 11, 12, 13, 14]),
            "any of the others, and only those"
        );
        // Stopped: the one played last is still avoided.
        assert_eq!(
            picks(&tracks, &recent, None),
            HashSet::from([10, 11, 12, 13, 14])
        );
    }

    #[test]
    fn in_a_library_of_ten_or_fewer_dj_mode_picks_the_one_not_among_the_last_played() {
        for n in 2..=10 {
            let tracks = library(n);
            // Each track played once, then all but the first again: the last
            // n - 1 are 1 to n - 1, and n - 1 plays.
            let order: Vec<usize> = (0..n).chain(1..n).collect();
            let recent = played(&tracks, &order);
            assert_eq!(
                picks(&tracks, &recent, Some(n - 1)),
                HashSet::from([0]),
                "{n} tracks"
            );
            assert_eq!(
                picks(&tracks, &recent, None),
                HashSet::from([0]),
                "{n} tracks"
            );
        }
    }

    #[test]
    fn dj_mode_never_picks_the_track_playing() {
        // Nothing fresh (the track playing is not among the last two, which
        // a library of three remembers): any other than the one playing.
        let tracks = library(3);
        let recent = played(&tracks, &[0, 1]);
        assert_eq!(picks(&tracks, &recent, Some(2)), HashSet::from([0, 1]));
        // One track, playing: nothing to pick.
        let one = library(1);
        let recent = played(&one, &[0]);
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(dj_pick(&one, &recent, Some(&one[0].path), &mut rng), None);
        assert_eq!(dj_pick(&one, &recent, None, &mut rng), Some(&one[0]));
        assert_eq!(dj_pick(&[], &recent, None, &mut rng), None);
    }

    #[test]
    fn a_crossfade_ends_its_length_after_it_starts_on_the_sample_clock() {
        let end = crossfade_end(48_000, Duration::from_secs(3), 48_000);
        assert_eq!(end, 192_000);
        assert_eq!(frame_time(end, 48_000), Duration::from_secs(4));
        let end = crossfade_end(1_000, Duration::from_millis(2_500), 44_100);
        assert_eq!(end, 1_000 + 110_250);
        assert_eq!(crossfade_end(7, Duration::ZERO, 48_000), 7);
    }

    #[test]
    fn dj_transitions_last_the_setting_a_third_of_a_short_track_and_half_a_second_at_least() {
        let setting = Duration::from_secs(8);
        assert_eq!(dj_transition(setting, Duration::from_secs(180)), setting);
        assert_eq!(
            dj_transition(setting, Duration::from_secs(6)),
            Duration::from_secs(2)
        );
        assert_eq!(
            dj_transition(setting, Duration::from_secs(1)),
            Duration::from_millis(500)
        );
    }

    #[test]
    fn the_music_ducks_to_the_lowest_level_asked_and_only_while_asked() {
        assert_eq!(duck_target(None, [].into_iter()), None);
        assert_eq!(duck_target(Some(0.3), [].into_iter()), Some(0.3));
        assert_eq!(duck_target(None, [0.5].into_iter()), Some(0.5));
        assert_eq!(duck_target(None, [0.5, 0.2].into_iter()), Some(0.2));
        // A user's deeper duck stays in force under speech, and after it.
        assert_eq!(duck_target(Some(0.1), [0.5].into_iter()), Some(0.1));
        assert_eq!(duck_target(Some(0.7), [0.5].into_iter()), Some(0.5));
    }

    #[test]
    fn dj_mode_starts_its_crossfade_the_transition_before_the_end() {
        let setting = Duration::from_secs(8);
        let track = Duration::from_secs(180);
        let at = Duration::from_secs_f64;
        assert_eq!(dj_crossfade_due(setting, track, at(0.0)), None);
        assert_eq!(dj_crossfade_due(setting, track, at(171.9)), None);
        // Over what remains, so that the next track plays alone as this one ends.
        assert_eq!(
            dj_crossfade_due(setting, track, at(172.0)),
            Some(Duration::from_secs(8))
        );
        assert_eq!(
            dj_crossfade_due(setting, track, at(175.5)),
            Some(Duration::from_millis(4_500))
        );
        // At the very end (or past it, the clock running on): a click-free fade.
        assert_eq!(
            dj_crossfade_due(setting, track, at(179.99)),
            Some(CLICK_FADE)
        );
        assert_eq!(
            dj_crossfade_due(setting, track, at(200.0)),
            Some(CLICK_FADE)
        );
        // A short track: a third of it.
        let short = Duration::from_secs(6);
        assert_eq!(dj_crossfade_due(setting, short, at(3.9)), None);
        assert_eq!(
            dj_crossfade_due(setting, short, at(4.0)),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn dj_mode_announces_its_transition_the_lead_before_the_crossfade_starts() {
        let (lead, setting) = (Duration::from_secs(12), Duration::from_secs(8));
        let track = Duration::from_secs(180);
        let at = Duration::from_secs_f64;
        // The crossfade starts at 172 s: announced from 160 s on.
        assert_eq!(dj_announce_due(lead, setting, track, at(0.0)), None);
        assert_eq!(dj_announce_due(lead, setting, track, at(159.9)), None);
        assert_eq!(
            dj_announce_due(lead, setting, track, at(160.0)),
            Some(Duration::from_secs(12))
        );
        assert_eq!(
            dj_announce_due(lead, setting, track, at(170.5)),
            Some(Duration::from_millis(1_500))
        );
        // Due with the crossfade itself, and after it: no time left.
        assert_eq!(
            dj_announce_due(lead, setting, track, at(172.0)),
            Some(Duration::ZERO)
        );
        assert_eq!(
            dj_announce_due(lead, setting, track, at(179.0)),
            Some(Duration::ZERO)
        );
        // The announcement is due no later than the crossfade, at every position.
        for tenth in 0..=1_800 {
            let position = at(f64::from(tenth) / 10.0);
            if dj_crossfade_due(setting, track, position).is_some() {
                assert!(dj_announce_due(lead, setting, track, position).is_some());
            }
        }
    }

    #[test]
    fn a_track_shorter_than_the_lead_is_announced_at_once_and_a_zero_lead_never() {
        let (lead, setting) = (Duration::from_secs(12), Duration::from_secs(8));
        // 9 s track: a 3 s crossfade (a third) from 6 s; 6 s ahead at the start.
        let short = Duration::from_secs(9);
        assert_eq!(
            dj_announce_due(lead, setting, short, Duration::ZERO),
            Some(Duration::from_secs(6))
        );
        let never = Duration::ZERO;
        let track = Duration::from_secs(180);
        for position in [0.0, 160.0, 172.0, 179.9] {
            let position = Duration::from_secs_f64(position);
            assert_eq!(dj_announce_due(never, setting, track, position), None);
            assert_eq!(dj_announce_due(never, setting, short, position), None);
        }
    }

    #[test]
    fn an_announced_transition_holds_until_its_track_or_the_queue_changes() {
        let (a, b) = (track("a"), track("b"));
        let (a, b) = (a.path.as_path(), b.path.as_path());
        // A pick, announced with the queue empty: holds while it stays empty.
        assert!(dj_plan_holds(1, a, false, 1, None));
        // Something queued since: it plays next, so the pick no longer holds.
        assert!(!dj_plan_holds(1, a, false, 1, Some(b)));
        assert!(!dj_plan_holds(1, a, false, 1, Some(a)));
        // The queue's first, announced: holds while it is still first, even
        // with more queued behind it.
        assert!(dj_plan_holds(1, a, true, 1, Some(a)));
        assert!(!dj_plan_holds(1, a, true, 1, Some(b)));
        assert!(!dj_plan_holds(1, a, true, 1, None));
        // Another track playing (started by hand, or the next one): never.
        assert!(!dj_plan_holds(1, a, false, 2, None));
        assert!(!dj_plan_holds(1, a, true, 2, Some(a)));
    }
}
