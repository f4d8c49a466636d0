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

use rand::seq::IndexedRandom;
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{debug, info, warn};

use super::{
    Answer, AudioError, AudioSettings, AudioState, BusId,
    decode::Decoder,
    gain::{self, Curve},
    library::{self, Track},
    mixer::{self, MixerControl, MixerEvent, SampleClock, Source, VoiceId},
    output::{self, Format, MixerSlot, Output, OutputKind},
};
use crate::{
    bus::{Bus, Topic},
    config::AudioOutput,
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

/// First wait before reopening a lost output; it doubles up to the setting.
const FIRST_RETRY: Duration = Duration::from_millis(250);

/// A request and where its answer goes.
pub struct Envelope {
    pub request: Request,
    pub reply: oneshot::Sender<Result<Answer, AudioError>>,
    pub correlation: Option<Arc<str>>,
}

/// What the handle asks for.
pub enum Request {
    Play {
        query: String,
    },
    Stop {},
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
    },
    DjStart {},
    DjStop {},
    DjNext {},
    DjQueue {
        query: String,
    },
}

/// A playing track.
struct Deck {
    voice: VoiceId,
    track: Track,
    decoder: Decoder,
    ending_soon_sent: bool,
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
}

impl Player {
    /// Creates the mixer, opens the output and starts scanning the library.
    pub async fn start(
        settings: AudioSettings,
        bus: Bus,
        state: watch::Sender<AudioState>,
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
            volume: gain::DEFAULT_VOLUME,
            ducked: None,
            crossfading: None,
            last_error: None,
            scans,
            scans_tx,
            scanning: false,
            last_progress: now,
            underruns_reported: 0,
            clock_seen: (0, now),
            xruns: 0,
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
            MixerEvent::VoiceEnded { id, stopped, .. } => {
                self.effects.retain(|(voice, _)| *voice != id);
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
            let next = self
                .queue
                .pop_front()
                .or_else(|| if self.dj { self.dj_pick() } else { None });
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

    /// DJ mode: starts the crossfade into the next track so that it ends
    /// as the current one does.
    async fn dj_advance(&mut self) {
        if self.paused || self.crossfading.is_some() {
            return;
        }
        let Some(deck) = &self.current else { return };
        let Some(duration) = deck.track.duration else {
            return;
        };
        let remaining = duration.saturating_sub(self.position(deck.voice));
        let transition = self
            .settings
            .dj_transition
            .min(duration / 3)
            .max(Duration::from_millis(500));
        if remaining > transition {
            return;
        }
        let Some(next) = self.queue.pop_front().or_else(|| self.dj_pick()) else {
            return;
        };
        self.emit_queue();
        if let Err(e) = self
            .start_track(next, Some(remaining.max(CLICK_FADE)))
            .await
        {
            warn!(error = %e, "DJ mode could not start the next track");
            self.last_error = Some(e.to_string());
        }
    }

    /// A random track, not among the last ten played (fewer when the
    /// library is small), and never the one playing.
    fn dj_pick(&self) -> Option<Track> {
        let playing = self.current.as_ref().map(|d| d.track.path.clone());
        let keep = DJ_MEMORY.min(self.tracks.len().saturating_sub(1));
        let recent: Vec<&PathBuf> = self.recent.iter().rev().take(keep).collect();
        let fresh: Vec<&Track> = self
            .tracks
            .iter()
            .filter(|t| !recent.contains(&&t.path) && Some(&t.path) != playing.as_ref())
            .collect();
        let pool: Vec<&Track> = if fresh.is_empty() {
            self.tracks
                .iter()
                .filter(|t| Some(&t.path) != playing.as_ref())
                .collect()
        } else {
            fresh
        };
        pool.choose(&mut rand::rng()).map(|t| (*t).clone())
    }

    // --- requests -------------------------------------------------------------

    async fn request(&mut self, request: Request) -> Result<Answer, AudioError> {
        match request {
            Request::List {} => {
                self.not_scanning()?;
                Ok(self.list())
            }
            Request::Play { query } => {
                self.output_up()?;
                let track = self.find(&query)?;
                self.start_track(track, None).await
            }
            Request::Stop {} => self.stop_music("stopped"),
            Request::Pause {} => self.pause(),
            Request::Resume {} => self.resume(),
            Request::Next {} => {
                let next = self.take_next()?;
                self.start_track(next, None).await
            }
            Request::Queue { query } | Request::DjQueue { query } => {
                let track = self.find(&query)?;
                self.queue.push_back(track.clone());
                self.emit_queue();
                let position = self.queue.len();
                Ok((
                    format!("queued {} (position {position})", track.display_name()),
                    json!({ "track": track, "position": position }),
                ))
            }
            Request::Volume { volume } => self.set_volume(volume),
            Request::Crossfade { query, seconds } => {
                self.output_up()?;
                let track = self.find(&query)?;
                let length = seconds
                    .map(Duration::from_secs_f64)
                    .unwrap_or(gain::DEFAULT_CROSSFADE);
                // With nothing playing it simply starts (see start_track).
                self.start_track(track, Some(length)).await
            }
            Request::Duck { level, fade_ms } => self.duck(level, fade_ms),
            Request::Unduck { fade_ms } => self.unduck(fade_ms),
            Request::Install { dir } => self.install(dir).await,
            Request::Sound { file } => self.play_sound(&file).await,
            Request::DjStart {} => {
                self.output_up()?;
                self.not_scanning()?;
                if self.dj {
                    return Ok(("DJ mode is already on".into(), json!({ "dj": true })));
                }
                let mut message = "DJ mode on: tracks crossfade on their own".to_string();
                if self.current.is_none() || self.paused {
                    let track = self.dj_pick().ok_or_else(|| {
                        AudioError::Refused(
                            "the library is empty: nothing to play; 'install music <folder>' adds some".into(),
                        )
                    })?;
                    let (started, _) = self.start_track(track, None).await?;
                    message = format!("{message}; {started}");
                }
                // On only once something plays.
                self.dj = true;
                self.emit(Topic::MusicDjStarted, json!({}));
                Ok((message, json!({ "dj": true })))
            }
            Request::DjStop {} => {
                let was = std::mem::replace(&mut self.dj, false);
                if was {
                    self.emit(Topic::MusicDjStopped, json!({}));
                }
                Ok((
                    if was {
                        "DJ mode off: the current track plays to its end"
                    } else {
                        "DJ mode was not on"
                    }
                    .into(),
                    json!({ "dj": false }),
                ))
            }
            Request::DjNext {} => {
                let next = self.take_next()?;
                let fade = self.settings.dj_transition;
                self.start_track(next, Some(fade)).await
            }
        }
    }

    /// What `next` plays: the queue's first, else a random other track.
    fn take_next(&mut self) -> Result<Track, AudioError> {
        self.output_up()?;
        self.not_scanning()?;
        let next = self
            .queue
            .pop_front()
            .or_else(|| self.dj_pick())
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
        mut track: Track,
        crossfade: Option<Duration>,
    ) -> Result<Answer, AudioError> {
        self.output_up()?;
        // A paused track is not faded from: it is silent already.
        let crossfade = crossfade.filter(|_| self.current.is_some() && !self.paused);
        let (voice_id, decoder) = self
            .open_voice(&track.path, BusId::Music, crossfade.is_some())
            .await?;
        if track.duration.is_none() {
            track.duration = decoder.info().duration;
        }
        // Whatever still fades out from before is cut short: only the track
        // this change leaves may sound beside the new one.
        self.stop_fading();
        let message = match (&self.current, crossfade) {
            (Some(old), Some(length)) => {
                let (old_voice, old_name) = (old.voice, old.track.display_name());
                let frames = gain::frames_for(length, self.rate);
                if let Err(e) = self.mixer(|m| m.crossfade(old_voice, voice_id, frames)) {
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
                format!(
                    "crossfading from {old_name} to {} over {:.1} s",
                    track.display_name(),
                    length.as_secs_f64()
                )
            }
            (Some(old), None) => {
                let old_voice = old.voice;
                let fade = gain::frames_for(CLICK_FADE, self.rate);
                if let Err(e) = self.mixer(|m| m.stop_voice(old_voice, fade)) {
                    let _ = self.control.stop_voice(voice_id, 0);
                    return Err(e);
                }
                format!("playing {}", track.display_name())
            }
            (None, _) => format!("playing {}", track.display_name()),
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
        self.recent.push_back(track.path.clone());
        while self.recent.len() > DJ_MEMORY {
            self.recent.pop_front();
        }
        let data = json!({ "track": &track });
        self.current = Some(Deck {
            voice: voice_id,
            track,
            decoder,
            ending_soon_sent: false,
        });
        Ok((message, data))
    }

    /// Starts decoding `path` and adds its voice once the first period is
    /// decoded, so that it sounds at the next period boundary.
    async fn open_voice(
        &mut self,
        path: &Path,
        bus: BusId,
        silent: bool,
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
            .add_voice(bus, Source { samples, finished }, gain, fade)
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

    fn stop_music(&mut self, reason: &str) -> Result<Answer, AudioError> {
        let Some(voice) = self.current.as_ref().map(|d| d.voice) else {
            return Ok(("no music is playing".into(), json!({ "state": "stopped" })));
        };
        let fade = gain::frames_for(CLICK_FADE, self.rate);
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
        let message = format!(
            "stopped {}{}",
            deck.track.display_name(),
            if dj { " (DJ mode off)" } else { "" }
        );
        self.fading.push(deck);
        Ok((message, json!({ "state": "stopped" })))
    }

    fn pause(&mut self) -> Result<Answer, AudioError> {
        let Some(deck) = &self.current else {
            return Err(AudioError::Refused("no music is playing".into()));
        };
        if self.paused {
            return Ok((
                "the music is already paused".into(),
                json!({ "state": "paused" }),
            ));
        }
        let (voice, name) = (deck.voice, deck.track.display_name());
        let fade = gain::frames_for(CLICK_FADE, self.rate);
        if self.crossfading.is_some() {
            // Pausing ends a crossfade where it is: the old track goes, the
            // new one will resume at full level.
            self.stop_fading();
            self.mixer(|m| m.set_voice_gain(voice, 1.0, fade, Curve::Linear))?;
        }
        self.mixer(|m| m.pause_voice(voice, fade))?;
        self.paused = true;
        Ok(self.announce(Topic::MusicPlaybackPaused, "paused", voice, &name))
    }

    /// Publishes a pause or a resume and says it.
    fn announce(&self, topic: Topic, what: &str, voice: VoiceId, name: &str) -> Answer {
        let position = self.position(voice);
        self.emit(
            topic,
            json!({ "track": name, "position_ms": position.as_millis() as u64 }),
        );
        let state = if self.paused { "paused" } else { "playing" };
        (
            format!("{what} {name} at {}", clock_time(position)),
            json!({ "state": state }),
        )
    }

    fn resume(&mut self) -> Result<Answer, AudioError> {
        self.output_up()?;
        let Some(deck) = &self.current else {
            return Err(AudioError::Refused(
                "no music is paused; 'play music <track>' starts some".into(),
            ));
        };
        if !self.paused {
            return Ok((
                "the music is already playing".into(),
                json!({ "state": "playing" }),
            ));
        }
        let (voice, name) = (deck.voice, deck.track.display_name());
        let fade = gain::frames_for(CLICK_FADE, self.rate);
        self.mixer(|m| m.resume_voice(voice, fade))?;
        self.paused = false;
        Ok(self.announce(Topic::MusicPlaybackResumed, "resumed", voice, &name))
    }

    fn set_volume(&mut self, volume: u8) -> Result<Answer, AudioError> {
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
        Ok((
            format!("volume {volume}"),
            json!({ "volume": volume, "previous": previous }),
        ))
    }

    fn duck(&mut self, level: Option<f32>, fade_ms: Option<u32>) -> Result<Answer, AudioError> {
        let level = level.unwrap_or(gain::DEFAULT_DUCK_LEVEL);
        let fade = fade_ms
            .map(|ms| Duration::from_millis(u64::from(ms)))
            .unwrap_or(gain::DEFAULT_DUCK_FADE);
        let frames = gain::frames_for(fade, self.rate);
        self.mixer(|m| m.duck(level, frames))?;
        self.ducked = Some(level);
        self.emit(
            Topic::MusicDuckStarted,
            json!({ "level": level, "fade_ms": fade.as_millis() as u64 }),
        );
        Ok((
            format!("music ducked to {level} over {} ms", fade.as_millis()),
            json!({ "level": level, "fade_ms": fade.as_millis() as u64 }),
        ))
    }

    fn unduck(&mut self, fade_ms: Option<u32>) -> Result<Answer, AudioError> {
        let fade = fade_ms
            .map(|ms| Duration::from_millis(u64::from(ms)))
            .unwrap_or(gain::DEFAULT_DUCK_FADE);
        let frames = gain::frames_for(fade, self.rate);
        self.mixer(|m| m.unduck(frames))?;
        let was = self.ducked.take();
        if was.is_some() {
            self.emit(
                Topic::MusicDuckEnded,
                json!({ "fade_ms": fade.as_millis() as u64 }),
            );
        }
        Ok((
            match was {
                Some(_) => format!("music back to full level over {} ms", fade.as_millis()),
                None => "the music was not ducked".to_string(),
            },
            json!({ "fade_ms": fade.as_millis() as u64 }),
        ))
    }

    fn list(&self) -> Answer {
        let mut text = if self.tracks.is_empty() {
            format!(
                "the library at {} has no tracks; 'install music <dir>' adds some",
                self.settings.library_dir().display()
            )
        } else {
            format!("{} tracks\n", self.tracks.len())
        };
        let width = self.tracks.len().to_string().len();
        for (i, track) in self.tracks.iter().enumerate() {
            let playing = self
                .current
                .as_ref()
                .is_some_and(|d| d.track.path == track.path);
            text.push_str(&format!(
                "{}{:>width$}. {}{}\n",
                if playing { "▶ " } else { "  " },
                i + 1,
                track.display_name(),
                track
                    .duration
                    .map(|d| format!("  ({})", clock_time(d)))
                    .unwrap_or_default(),
            ));
        }
        (
            text.trim_end().to_string(),
            json!({ "tracks": self.tracks, "library": self.settings.library_dir() }),
        )
    }

    async fn install(&mut self, from: PathBuf) -> Result<Answer, AudioError> {
        let library = self.settings.library_dir();
        let source = from.clone();
        let report = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&library)?;
            library::install(&source, &library)
        })
        .await
        .map_err(|e| AudioError::Refused(format!("the install failed: {e}")))?
        .map_err(|e| AudioError::Refused(format!("cannot install from {}: {e}", from.display())))?;
        let mut message = format!(
            "installed {} files from {}",
            report.copied.len(),
            from.display()
        );
        for skipped in &report.skipped {
            message.push_str(&format!(
                "\nskipped {}: {}",
                skipped.path.display(),
                skipped.reason
            ));
        }
        message.push_str("\nrescanning the library");
        self.rescan();
        Ok((
            message,
            json!({
                "copied": report.copied,
                "skipped": report.skipped.iter().map(|s| json!({ "path": s.path, "reason": s.reason })).collect::<Vec<_>>(),
            }),
        ))
    }

    async fn play_sound(&mut self, file: &str) -> Result<Answer, AudioError> {
        self.output_up()?;
        if self.effects.len() >= MAX_EFFECTS {
            return Err(AudioError::Refused(format!(
                "{MAX_EFFECTS} sounds are already playing; wait for one to end"
            )));
        }
        let path = self.sound_path(file)?;
        let (voice, decoder) = self.open_voice(&path, BusId::Effects, false).await?;
        self.effects.push((voice, decoder));
        self.emit(Topic::AudioSoundStarted, json!({ "path": path }));
        Ok((
            format!("playing sound {}", path.display()),
            json!({ "path": path }),
        ))
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
                if self.settings.music_dir.is_none() {
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
                    library::ensure_demo_library(&dir).map_err(|e| {
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
            state: match (&self.current, self.paused) {
                (None, _) => "stopped",
                (Some(_), true) => "paused",
                (Some(_), false) => "playing",
            },
            track: self.current.as_ref().map(|d| d.track.clone()),
            position: self
                .current
                .as_ref()
                .map(|d| self.position(d.voice))
                .unwrap_or_default(),
            volume: self.volume,
            ducked: self.ducked,
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
        let _ = tokio::task::spawn_blocking(move || {
            drop(output);
            drop((decks, effects));
        })
        .await;
        self.state.send_modify(|s| {
            s.connected = false;
            s.state = "stopped";
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

/// `m:ss`.
fn clock_time(d: Duration) -> String {
    let secs = d.as_secs();
    format!("{}:{:02}", secs / 60, secs % 60)
}
