//! The real-time mixer: voices on three buses, summed into the output's buffer.
//!
//! [`mixer`] makes a pair. The [`Mixer`] goes to the output (the cpal device
//! callback, the paced virtual thread or the WAV writer), which calls
//! [`Mixer::render`] once per period. The [`MixerControl`] stays with the
//! control side, which sends it commands and reads its events.
//!
//! The two halves share nothing but lock-free single-producer single-consumer
//! queues (`rtrb`) and atomics, because the callback must never lock,
//! allocate, free, log or block: a missed deadline is an audible dropout.
//!
//! - **Commands** (control → callback): every change, applied at the start of
//!   the next period, all of them at once. A voice's heap parts (its `Box`,
//!   its source's ring) are allocated by the control side and moved in
//!   through this queue. A voice may be given the clock's frame to start on,
//!   and a stop or a crossfade the frame to begin on: the voice waits in the
//!   table, reading nothing, and the period that holds the frame is mixed in
//!   two parts around it, so the change lands on that very sample.
//! - **Retired voices** (callback → control): a voice that ended is handed
//!   back rather than dropped, so the memory is freed by
//!   [`MixerControl::poll`], never in the callback. The control side keeps at
//!   most [`MAX_VOICES`] voices out at once, so this queue and the voice
//!   table can never be full.
//! - **Events** (callback → control): voice ended, underrun, duck done… If
//!   nobody polls and the queue fills, further events are counted and dropped
//!   ([`MixerControl::dropped_events`]: should be 0), never waited for.
//!
//! The gain of a sample is the product of its voice's ramp, its bus's ramp,
//! the duck ramp (music bus only) and the master ramp, each advanced per
//! frame, so every change is a smooth ramp, never a click (see
//! [`gain`](super::gain)). The sum is then clamped to [-1, 1].
//!
//! Everything the `Mixer` plays (voices, ramps, the clock) lives in it, so it
//! outlives the outputs: it sits in an `output::MixerSlot`, which the running
//! output borrows for each period, and a reopened output takes it over where
//! the last one left it.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rtrb::{Consumer, Producer, RingBuffer};

use super::{
    BusId, CHANNELS,
    gain::{Curve, DEFAULT_VOLUME, Ramp, volume_to_gain},
};

/// Identifies a voice for as long as the mixer lives; never reused.
pub type VoiceId = u64;

/// Voices that may be playing (or waiting to be reclaimed) at once.
pub const MAX_VOICES: usize = 16;

/// Commands that may wait for the next period. Generous: a period applies
/// every waiting command, so only a stalled output fills it.
const COMMAND_CAPACITY: usize = 256;

/// Events that may wait for [`MixerControl::poll`].
const EVENT_CAPACITY: usize = 1024;

/// What a voice plays: interleaved stereo samples at the output rate, and
/// whether the producer is done.
///
/// A decoder thread keeps `samples` filled. When the ring is empty the mixer
/// looks at `finished`: set, the voice has ended; not set, the decoder fell
/// behind (an underrun: that voice plays silence until samples come again).
pub struct Source {
    /// Interleaved stereo samples (left, right, left, …) at the mixer's rate.
    pub samples: Consumer<f32>,
    /// Set (with `Release`) by the producer after its last sample is pushed.
    pub finished: Arc<AtomicBool>,
}

impl Source {
    /// A source reading `samples`, ended once `finished` is set and the ring is drained.
    pub fn new(samples: Consumer<f32>, finished: Arc<AtomicBool>) -> Source {
        Source { samples, finished }
    }

    /// Whole stereo frames waiting in the ring.
    pub fn buffered_frames(&self) -> usize {
        self.samples.slots() / CHANNELS
    }
}

/// The mixer cannot take this now: its command queue is full (the output has
/// stopped calling [`Mixer::render`]), or, for a new voice, [`MAX_VOICES`]
/// voices are still out.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "the audio mixer is full: too many voices at once or commands waiting for the output; \
     stop a voice or check that the audio output is running, then try again"
)]
pub struct MixerFull;

/// Something the callback reports back, read with [`MixerControl::poll`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum MixerEvent {
    /// A voice is gone; its memory is freed by the next `poll`.
    VoiceEnded {
        /// The voice.
        id: VoiceId,
        /// Frames of its source that it played.
        frames_played: u64,
        /// `true`: removed by `stop_voice` or `crossfade`; `false`: its source finished.
        stopped: bool,
    },
    /// A voice's source had fewer frames than a `render` call needed; the rest was silence.
    Underrun {
        /// The voice.
        id: VoiceId,
        /// Frames of silence played in its place during that `render` call.
        frames: u32,
    },
    /// The music bus's duck ramp has reached `level` (1.0 after `unduck`).
    DuckDone {
        /// The level reached.
        level: f32,
    },
    /// A crossfade finished: `from` has faded out and been removed.
    CrossfadeDone {
        /// The voice faded out.
        from: VoiceId,
        /// The voice faded in.
        to: VoiceId,
    },
    /// A pause's fade-out finished: the voice is paused, its position holding.
    FadeDone {
        /// The voice.
        id: VoiceId,
    },
}

/// A voice's start frame before the output has taken it.
const NOT_STARTED: u64 = u64::MAX;

/// Where a voice starts on the [`SampleClock`], once the output has taken it.
#[derive(Clone, Debug)]
pub struct VoiceStart(Arc<AtomicU64>);

impl VoiceStart {
    /// The clock's frame on which the voice's first sample plays, if it has started.
    pub fn frame(&self) -> Option<u64> {
        let frame = self.0.load(Ordering::Acquire);
        (frame != NOT_STARTED).then_some(frame)
    }
}

/// The output's sample clock: frames rendered since the mixer was made, and
/// when the output says they are heard.
///
/// Advanced once per [`Mixer::render`] call, after the whole buffer is
/// written; cloned freely to wherever times must follow the audio (plans,
/// lip sync) rather than the wall clock.
///
/// The mixer renders ahead of what is heard: a device plays a buffer some
/// time after its callback asked for it, and every output counts a whole
/// period as rendered before its last frame sounds. Each output tells the
/// clock, once a period, when the first frame it just rendered is heard
/// ([`SampleClock::mark_heard`]); [`SampleClock::heard_at`] maps any frame
/// to that moment and [`SampleClock::latency`] says how far ahead the
/// mixing runs.
#[derive(Clone, Debug)]
pub struct SampleClock(Arc<ClockState>);

/// What a [`SampleClock`] shares.
#[derive(Debug)]
struct ClockState {
    /// Frames rendered.
    frames: AtomicU64,
    /// Frames a second.
    rate: u32,
    /// What `origin` counts from.
    epoch: Instant,
    /// When frame 0 is heard, in nanoseconds after `epoch` (negative:
    /// before it), as the output said last; [`NOT_HEARD`] until it says.
    origin: AtomicI64,
    /// The output latency in nanoseconds; `u64::MAX` until the output says.
    latency: AtomicU64,
}

/// `origin` before any output said when its sound is heard.
const NOT_HEARD: i64 = i64::MIN;

impl SampleClock {
    /// A clock at frame 0, counting `sample_rate` frames a second.
    pub fn new(sample_rate: u32) -> Self {
        SampleClock(Arc::new(ClockState {
            frames: AtomicU64::new(0),
            rate: sample_rate.max(1),
            epoch: Instant::now(),
            origin: AtomicI64::new(NOT_HEARD),
            latency: AtomicU64::new(u64::MAX),
        }))
    }

    /// Frames rendered so far.
    pub fn frames(&self) -> u64 {
        self.0.frames.load(Ordering::Acquire)
    }

    /// Seconds rendered so far at `sample_rate`.
    pub fn seconds(&self, sample_rate: u32) -> f64 {
        self.frames() as f64 / f64::from(sample_rate)
    }

    /// Frames a second.
    pub fn sample_rate(&self) -> u32 {
        self.0.rate
    }

    /// When `frame` is (or was) heard, from what the output said of the
    /// period it rendered last; `None` before any output said.
    pub fn heard_at(&self, frame: u64) -> Option<Instant> {
        let origin = self.0.origin.load(Ordering::Acquire);
        if origin == NOT_HEARD {
            return None;
        }
        let nanos = i128::from(origin) + frames_to_nanos(frame, self.0.rate);
        let epoch = self.0.epoch;
        if nanos >= 0 {
            epoch.checked_add(Duration::from_nanos(u64::try_from(nanos).ok()?))
        } else {
            epoch.checked_sub(Duration::from_nanos(u64::try_from(-nanos).ok()?))
        }
    }

    /// The output latency: at most how long after the clock counts a frame
    /// rendered it is heard (the period, plus a device's buffer); `None`
    /// before any output said.
    pub fn latency(&self) -> Option<Duration> {
        let nanos = self.0.latency.load(Ordering::Relaxed);
        (nanos != u64::MAX).then(|| Duration::from_nanos(nanos))
    }

    /// Says that `frame` is heard at `at`, and that the output's latency is
    /// `latency`. Called by the output once a period, from its real-time
    /// thread: atomics and integer arithmetic only.
    pub fn mark_heard(&self, frame: u64, at: Instant, latency: Duration) {
        let since_epoch = match at.checked_duration_since(self.0.epoch) {
            Some(after) => i128::try_from(after.as_nanos()).unwrap_or(i128::MAX),
            None => -i128::try_from((self.0.epoch - at).as_nanos()).unwrap_or(i128::MAX),
        };
        let origin = since_epoch - frames_to_nanos(frame, self.0.rate);
        let origin = i64::try_from(origin)
            .unwrap_or(NOT_HEARD + 1)
            .max(NOT_HEARD + 1);
        self.0.origin.store(origin, Ordering::Release);
        let latency = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX - 1);
        self.0
            .latency
            .store(latency.min(u64::MAX - 1), Ordering::Relaxed);
    }

    /// Counts `frames` more as rendered.
    fn advance(&self, frames: u64) {
        // Release: whoever sees the new clock also sees what was published before.
        let clock = &self.0.frames;
        clock.store(clock.load(Ordering::Relaxed) + frames, Ordering::Release);
    }

    /// Frames rendered, for the thread that renders them.
    fn rendered(&self) -> u64 {
        self.0.frames.load(Ordering::Relaxed)
    }
}

/// `frames` at `rate` as nanoseconds.
fn frames_to_nanos(frames: u64, rate: u32) -> i128 {
    i128::from(frames) * 1_000_000_000 / i128::from(rate.max(1))
}

/// Counters the callback keeps for the control side.
#[derive(Debug, Default)]
struct Stats {
    /// Render calls in which a voice ran short of samples (one per voice per call).
    underruns: AtomicU64,
    /// Output samples outside [-1, 1] (or not a number) that were clamped.
    clipped: AtomicU64,
    /// Events dropped because the event queue was full.
    dropped_events: AtomicU64,
}

/// A change for the callback to apply at the start of its next period.
enum Command {
    /// A new voice; boxed so moving it through the queue copies a pointer.
    Add(Box<Voice>),
    /// Ramp a voice's gain.
    VoiceGain {
        id: VoiceId,
        target: f32,
        frames: u32,
        curve: Curve,
    },
    /// Fade a voice out from frame `at` (now if passed), then remove it.
    Stop { id: VoiceId, frames: u32, at: u64 },
    /// Fade a voice out, then hold it.
    Pause { id: VoiceId, frames: u32 },
    /// Fade a paused voice back in.
    Resume { id: VoiceId, frames: u32 },
    /// Ramp a bus's gain.
    BusGain {
        bus: BusId,
        target: f32,
        frames: u32,
    },
    /// Ramp the master gain.
    Master { target: f32, frames: u32 },
    /// Ramp the music bus's duck multiplier (1.0 = not ducked).
    Duck { level: f32, frames: u32 },
    /// Equal-power crossfade from one voice to another, from frame `at`
    /// (now if passed).
    Crossfade {
        from: VoiceId,
        to: VoiceId,
        frames: u32,
        at: u64,
    },
}

/// A change a voice makes on a frame of the clock, not at the start of a period.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Cue {
    /// Fade out over `frames`, then go: linearly, or as the outgoing half
    /// of a crossfade into `crossfade_to` (equal power).
    Stop {
        frames: u32,
        crossfade_to: Option<VoiceId>,
    },
    /// Fade in to 1.0 over `frames` as the incoming half of a crossfade.
    CrossfadeIn { frames: u32 },
}

/// A [`Cue`] and the clock's frame it happens on.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Scheduled {
    at: u64,
    cue: Cue,
}

/// Where a voice is in its life.
#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    /// Reading its source, its gain heading for `level`.
    Playing,
    /// Reading its source while fading to 0; then `Paused`.
    Pausing,
    /// Not reading its source: its position holds.
    Paused,
    /// Reading its source while fading to 0; then removed.
    Stopping {
        /// The voice fading in, when this stop is the outgoing half of a crossfade.
        crossfade_to: Option<VoiceId>,
    },
}

/// One voice in the callback's table.
struct Voice {
    /// Its id, for commands and events.
    id: VoiceId,
    /// The bus it plays on.
    bus: BusId,
    /// Its samples.
    source: Source,
    /// Its gain, per frame.
    gain: Ramp,
    /// The gain it plays at when not fading out: what `resume` returns to.
    level: f32,
    /// Playing, pausing, paused or stopping.
    state: State,
    /// Frames of its source played so far.
    played: u64,
    /// `played`, published once per render call for [`MixerControl::position`].
    position: Arc<AtomicU64>,
    /// The clock's frame its first sample plays on: asked by the control
    /// side, then (once taken) the later of that and the clock.
    start_at: u64,
    /// `start_at` once the output has taken the voice, for the control side
    /// ([`NOT_STARTED`] until then).
    started: Arc<AtomicU64>,
    /// A change due on a later frame (the last one asked wins).
    cue: Option<Scheduled>,
    /// Frames of silence played for lack of samples during this render call.
    short: u32,
    /// It ran short in the last render call too: the underrun goes on, and
    /// is counted but not reported again (a starved voice would otherwise
    /// fill the event queue and crowd out its own end).
    starving: bool,
}

impl Voice {
    /// Makes `cue` happen on frame `at`, or at once if that is not after `now`.
    fn cue_at(&mut self, at: u64, now: u64, cue: Cue) {
        if at > now {
            self.cue = Some(Scheduled { at, cue });
        } else {
            // A change now replaces one due later.
            self.cue = None;
            self.apply(cue);
        }
    }

    /// Makes `cue` happen now.
    fn apply(&mut self, cue: Cue) {
        match cue {
            Cue::Stop {
                frames,
                crossfade_to: None,
            } => {
                // A stop during a stop retimes the fade (e.g. "stop
                // everything now"), keeping the crossfade it belongs to.
                if !matches!(self.state, State::Stopping { .. }) {
                    self.state = State::Stopping { crossfade_to: None };
                }
                self.gain.to(0.0, frames, Curve::Linear);
            }
            Cue::Stop {
                frames,
                crossfade_to,
            } => {
                if !matches!(self.state, State::Stopping { .. }) {
                    self.state = State::Stopping { crossfade_to };
                    self.gain.to(0.0, frames, Curve::EqualPowerOut);
                }
            }
            Cue::CrossfadeIn { frames } => {
                if !matches!(self.state, State::Stopping { .. }) {
                    self.state = State::Playing;
                    self.level = 1.0;
                    self.gain.to(1.0, frames, Curve::EqualPowerIn);
                }
            }
        }
    }
}

/// What became of a voice after a chunk.
enum Fate {
    /// Still in the table.
    Keep,
    /// Paused just now: its fade-out ended.
    Paused,
    /// To be removed: its fade-out ended (`true`) or its source finished (`false`).
    Ended { stopped: bool },
}

/// Per-frame buffers the callback computes into, allocated once by [`mixer`].
struct Scratch {
    /// The master ramp's values.
    master: Vec<f32>,
    /// The duck ramp's values.
    duck: Vec<f32>,
    /// Each bus's total gain: bus × master (× duck for music).
    bus: [Vec<f32>; 3],
    /// The current voice's gain ramp.
    voice: Vec<f32>,
    /// The current voice's samples, copied out of its ring.
    samples: Vec<f32>,
}

/// The real-time half: owned by the output, which calls [`Mixer::render`] once per period.
///
/// `Send` but used from one thread at a time. Dropping it drops its voices
/// (and frees them) on the dropping thread: do that off the callback.
pub struct Mixer {
    /// Output frames per second; fixed for the mixer's life.
    sample_rate: u32,
    /// The longest chunk rendered in one go: the scratch buffers' length.
    max_period_frames: usize,
    /// Changes from the control side.
    commands: Consumer<Command>,
    /// Ended voices, going back to be freed off the callback.
    retired: Producer<Box<Voice>>,
    /// Reports to the control side.
    events: Producer<MixerEvent>,
    /// The voices; capacity [`MAX_VOICES`] from the start, never grown.
    #[expect(
        clippy::vec_box,
        reason = "a voice arrives and leaves as the Box the control side allocated: unboxing it here would free in the callback"
    )]
    voices: Vec<Box<Voice>>,
    /// The master gain.
    master: Ramp,
    /// Each bus's gain, by [`BusId::index`].
    buses: [Ramp; 3],
    /// The music bus's duck multiplier.
    duck: Ramp,
    /// A duck or unduck is under way: report `DuckDone` when it ends.
    duck_pending: bool,
    /// Buffers computed into each chunk.
    scratch: Scratch,
    /// Frames rendered.
    clock: SampleClock,
    /// Counters shared with the control side.
    stats: Arc<Stats>,
}

/// The control half: sends commands to the [`Mixer`] and reads its events.
///
/// Every method returns at once: a full queue is an error, never a wait.
pub struct MixerControl {
    /// Output frames per second.
    sample_rate: u32,
    /// Changes for the callback.
    commands: Producer<Command>,
    /// Ended voices, dropped here.
    retired: Consumer<Box<Voice>>,
    /// Reports from the callback.
    events: Consumer<MixerEvent>,
    /// The id the next voice gets.
    next_id: VoiceId,
    /// Position counters of the voices out (added and not yet reclaimed);
    /// their number is kept ≤ [`MAX_VOICES`] so the callback's table and
    /// retire queue always have room.
    positions: HashMap<VoiceId, Arc<AtomicU64>>,
    /// Where each voice out started on the clock, for [`MixerControl::started_at`].
    starts: HashMap<VoiceId, Arc<AtomicU64>>,
    /// Frames rendered.
    clock: SampleClock,
    /// Counters shared with the callback.
    stats: Arc<Stats>,
}

/// Creates the pair: the [`Mixer`] goes to the output's callback, the
/// [`MixerControl`] stays with the control side.
///
/// `max_period_frames` is the longest buffer the callback renders in one go
/// (its scratch buffers' size); a longer `render` is split into chunks, so it
/// only needs to be about the device's usual period. Master starts at
/// [`DEFAULT_VOLUME`], buses at 1.0, not ducked.
pub fn mixer(sample_rate: u32, max_period_frames: usize) -> (Mixer, MixerControl) {
    let max_period_frames = max_period_frames.max(1);
    let (command_tx, command_rx) = RingBuffer::new(COMMAND_CAPACITY);
    // One slot per voice that may be out: the control side never has more,
    // so the callback's push never fails (and never has to drop a voice).
    let (retired_tx, retired_rx) = RingBuffer::new(MAX_VOICES);
    let (event_tx, event_rx) = RingBuffer::new(EVENT_CAPACITY);
    let clock = SampleClock::new(sample_rate);
    let stats = Arc::new(Stats::default());
    let frames = || vec![0.0; max_period_frames];
    let mixer = Mixer {
        sample_rate,
        max_period_frames,
        commands: command_rx,
        retired: retired_tx,
        events: event_tx,
        voices: Vec::with_capacity(MAX_VOICES),
        master: Ramp::fixed(volume_to_gain(DEFAULT_VOLUME)),
        buses: [Ramp::fixed(1.0); 3],
        duck: Ramp::fixed(1.0),
        duck_pending: false,
        scratch: Scratch {
            master: frames(),
            duck: frames(),
            bus: [frames(), frames(), frames()],
            voice: frames(),
            samples: vec![0.0; max_period_frames * CHANNELS],
        },
        clock: clock.clone(),
        stats: stats.clone(),
    };
    let control = MixerControl {
        sample_rate,
        commands: command_tx,
        retired: retired_rx,
        events: event_rx,
        next_id: 1,
        positions: HashMap::with_capacity(MAX_VOICES),
        starts: HashMap::with_capacity(MAX_VOICES),
        clock,
        stats,
    };
    (mixer, control)
}

impl Mixer {
    /// Renders `out.len() / 2` stereo frames into `out` (overwriting it),
    /// after applying every pending command.
    ///
    /// Never locks, allocates, frees, logs or blocks. Any length works:
    /// beyond `max_period_frames` it renders in chunks. An odd trailing
    /// sample is set to 0.
    pub fn render(&mut self, out: &mut [f32]) {
        self.apply_commands();
        for voice in &mut self.voices {
            voice.short = 0;
        }
        let frames = out.len() / CHANNELS;
        let (whole, rest) = out.split_at_mut(frames * CHANNELS);
        rest.fill(0.0);
        let mut first = self.clock.rendered();
        for chunk in whole.chunks_mut(self.max_period_frames * CHANNELS) {
            self.render_chunk(chunk, first);
            first += (chunk.len() / CHANNELS) as u64;
        }
        for voice in &mut self.voices {
            voice.position.store(voice.played, Ordering::Relaxed);
            if voice.short > 0 {
                Self::report_underrun(&self.stats, &mut self.events, voice);
            }
            voice.starving = voice.short > 0;
        }
        // Whoever sees the new clock also sees the positions above.
        self.clock.advance(frames as u64);
    }

    /// Output frames per second.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// The sample clock this mixer advances, for its output to say when
    /// frames are heard ([`SampleClock::mark_heard`]).
    pub fn clock_ref(&self) -> &SampleClock {
        &self.clock
    }

    /// The longest chunk rendered in one go.
    pub fn max_period_frames(&self) -> usize {
        self.max_period_frames
    }

    /// Applies every waiting command, in order.
    fn apply_commands(&mut self) {
        // Commands apply before the buffer renders: this is its first frame.
        let now = self.clock.rendered();
        while let Ok(command) = self.commands.pop() {
            match command {
                Command::Add(mut voice) => {
                    // A start already passed is now: the voice starts on the
                    // buffer's first frame, and the control side sees how late.
                    voice.start_at = voice.start_at.max(now);
                    voice.started.store(voice.start_at, Ordering::Release);
                    if self.voices.len() < self.voices.capacity() {
                        self.voices.push(voice);
                    } else {
                        // Unreachable while the control side keeps to
                        // MAX_VOICES; hand it back rather than grow or free.
                        let _ = self.retired.push(voice);
                    }
                }
                Command::VoiceGain {
                    id,
                    target,
                    frames,
                    curve,
                } => {
                    if let Some(voice) = self.voice(id) {
                        match voice.state {
                            State::Playing => {
                                voice.level = target;
                                voice.gain.to(target, frames, curve);
                            }
                            // Takes effect on resume.
                            State::Pausing | State::Paused => voice.level = target,
                            State::Stopping { .. } => {}
                        }
                    }
                }
                Command::Stop { id, frames, at } => {
                    if let Some(voice) = self.voice(id) {
                        let cue = Cue::Stop {
                            frames,
                            crossfade_to: None,
                        };
                        voice.cue_at(at, now, cue);
                    }
                }
                Command::Pause { id, frames } => {
                    if let Some(voice) = self.voice(id)
                        && voice.state == State::Playing
                    {
                        if voice.start_at > now {
                            // Not sounding yet: nothing to fade.
                            voice.state = State::Paused;
                            voice.gain.to(0.0, 0, Curve::Linear);
                            Self::report(
                                &self.stats,
                                &mut self.events,
                                MixerEvent::FadeDone { id },
                            );
                        } else {
                            voice.state = State::Pausing;
                            voice.gain.to(0.0, frames, Curve::Linear);
                        }
                    }
                }
                Command::Resume { id, frames } => {
                    if let Some(voice) = self.voice(id)
                        && matches!(voice.state, State::Pausing | State::Paused)
                    {
                        voice.state = State::Playing;
                        voice.gain.to(voice.level, frames, Curve::Linear);
                    }
                }
                Command::BusGain {
                    bus,
                    target,
                    frames,
                } => self.buses[bus.index()].to(target, frames, Curve::Linear),
                Command::Master { target, frames } => self.master.to(target, frames, Curve::Linear),
                Command::Duck { level, frames } => {
                    self.duck.to(level, frames, Curve::Linear);
                    self.duck_pending = true;
                }
                Command::Crossfade {
                    from,
                    to,
                    frames,
                    at,
                } => {
                    if let Some(voice) = self.voice(from) {
                        let cue = Cue::Stop {
                            frames,
                            crossfade_to: Some(to),
                        };
                        voice.cue_at(at, now, cue);
                    }
                    if let Some(voice) = self.voice(to) {
                        voice.cue_at(at, now, Cue::CrossfadeIn { frames });
                    }
                }
            }
        }
    }

    /// The voice `id`, if it is in the table.
    fn voice(&mut self, id: VoiceId) -> Option<&mut Voice> {
        self.voices
            .iter_mut()
            .find(|voice| voice.id == id)
            .map(|voice| &mut **voice)
    }

    /// Mixes one chunk (at most `max_period_frames`), whose first frame is
    /// the clock's `first`, into `out`.
    fn render_chunk(&mut self, out: &mut [f32], first: u64) {
        let frames = out.len() / CHANNELS;
        out.fill(0.0);

        let scratch = &mut self.scratch;
        let master = &mut scratch.master[..frames];
        let duck = &mut scratch.duck[..frames];
        self.master.fill(master);
        self.duck.fill(duck);
        for bus in BusId::ALL {
            let gains = &mut scratch.bus[bus.index()][..frames];
            self.buses[bus.index()].fill(gains);
            for (gain, master) in gains.iter_mut().zip(master.iter()) {
                *gain *= master;
            }
            if bus == BusId::Music {
                for (gain, duck) in gains.iter_mut().zip(duck.iter()) {
                    *gain *= duck;
                }
            }
        }
        if self.duck_pending && self.duck.is_done() {
            self.duck_pending = false;
            let level = self.duck.target();
            Self::report(
                &self.stats,
                &mut self.events,
                MixerEvent::DuckDone { level },
            );
        }

        let mut index = 0;
        while index < self.voices.len() {
            let voice = &mut self.voices[index];
            let (fate, paused) = play_voice(
                voice,
                out,
                first,
                &scratch.bus[voice.bus.index()][..frames],
                &mut scratch.voice,
                &mut scratch.samples,
            );
            if paused {
                let id = voice.id;
                Self::report(&self.stats, &mut self.events, MixerEvent::FadeDone { id });
            }
            match fate {
                Fate::Keep | Fate::Paused => index += 1,
                Fate::Ended { stopped } => {
                    // swap_remove moves the last voice here: it is mixed next,
                    // without the index moving on.
                    let voice = self.voices.swap_remove(index);
                    Self::retire(
                        &self.stats,
                        &mut self.events,
                        &mut self.retired,
                        voice,
                        stopped,
                    );
                }
            }
        }

        for sample in out.iter_mut() {
            // A NaN (a broken decoder) is silenced rather than passed to the device.
            if sample.abs() > 1.0 || sample.is_nan() {
                *sample = if sample.is_nan() {
                    0.0
                } else {
                    sample.signum()
                };
                self.stats.clipped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Reports a voice's end and hands it back to the control side to be freed.
    fn retire(
        stats: &Stats,
        events: &mut Producer<MixerEvent>,
        retired: &mut Producer<Box<Voice>>,
        voice: Box<Voice>,
        stopped: bool,
    ) {
        voice.position.store(voice.played, Ordering::Relaxed);
        if voice.short > 0 {
            Self::report_underrun(stats, events, &voice);
        }
        let (id, frames_played) = (voice.id, voice.played);
        let ended = MixerEvent::VoiceEnded {
            id,
            frames_played,
            stopped,
        };
        Self::report(stats, events, ended);
        if let State::Stopping {
            crossfade_to: Some(to),
        } = voice.state
        {
            Self::report(stats, events, MixerEvent::CrossfadeDone { from: id, to });
        }
        // Never full: the control side keeps at most MAX_VOICES out.
        let _ = retired.push(voice);
    }

    /// Counts an underrun, and reports it when it begins.
    fn report_underrun(stats: &Stats, events: &mut Producer<MixerEvent>, voice: &Voice) {
        stats.underruns.fetch_add(1, Ordering::Relaxed);
        if voice.starving {
            return;
        }
        let event = MixerEvent::Underrun {
            id: voice.id,
            frames: voice.short,
        };
        Self::report(stats, events, event);
    }

    /// Queues an event; if the queue is full, counts it as dropped instead of waiting.
    fn report(stats: &Stats, events: &mut Producer<MixerEvent>, event: MixerEvent) {
        if events.push(event).is_err() {
            stats.dropped_events.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Plays `voice` into `out` (one chunk, whose first frame is the clock's
/// `first`) with the bus's per-frame gains: silence before the voice's
/// start, and its cue on its very frame. Says what became of it, and
/// whether it paused in this chunk.
fn play_voice(
    voice: &mut Voice,
    out: &mut [f32],
    first: u64,
    bus_gains: &[f32],
    gains: &mut [f32],
    samples: &mut [f32],
) -> (Fate, bool) {
    let frames = out.len() / CHANNELS;
    let end = first + frames as u64;
    let mut from = 0;
    if voice.start_at > first {
        if matches!(voice.state, State::Stopping { .. }) {
            // Stopped before it sounded.
            return (Fate::Ended { stopped: true }, false);
        }
        if voice.start_at >= end {
            return (Fate::Keep, false);
        }
        from = (voice.start_at - first) as usize;
    }
    let mut paused = false;
    loop {
        let now = first + from as u64;
        if let Some(due) = voice.cue.filter(|c| c.at <= now) {
            voice.cue = None;
            voice.apply(due.cue);
        }
        // Up to the next cue's frame, or the chunk's end.
        let to = match voice.cue {
            Some(cue) if cue.at < end => (cue.at - first) as usize,
            _ => frames,
        };
        let fate = mix_voice(
            voice,
            &mut out[from * CHANNELS..to * CHANNELS],
            &bus_gains[from..to],
            gains,
            samples,
        );
        match fate {
            Fate::Keep => {}
            Fate::Paused => paused = true,
            ended @ Fate::Ended { .. } => return (ended, paused),
        }
        if to == frames {
            return (Fate::Keep, paused);
        }
        from = to;
    }
}

/// Mixes `voice` into `out` (a chunk, or the part of one from its start or
/// up to its cue) with the bus's per-frame gains, using `gains` and
/// `samples` as scratch; says what became of it.
fn mix_voice(
    voice: &mut Voice,
    out: &mut [f32],
    bus_gains: &[f32],
    gains: &mut [f32],
    samples: &mut [f32],
) -> Fate {
    let frames = out.len() / CHANNELS;
    // A fading-out voice reads only as far as its fade goes, so a paused
    // voice resumes exactly where it went silent.
    let active = match voice.state {
        State::Paused => return Fate::Keep,
        State::Playing => frames,
        State::Pausing | State::Stopping { .. } => frames.min(voice.gain.remaining() as usize),
    };

    let wanted = &mut samples[..active * CHANNELS];
    let mut got = read_frames(&mut voice.source.samples, wanted);
    let mut ended = false;
    if got < active {
        // Acquire pairs with the producer's Release: having seen `finished`,
        // every sample pushed before it is visible, so look once more.
        if voice.source.finished.load(Ordering::Acquire) {
            got += read_frames(&mut voice.source.samples, &mut wanted[got * CHANNELS..]);
            ended = got < active;
        }
        if !ended {
            voice.short += (active - got) as u32;
        }
    }

    // The voice's ramp runs in time, samples or not.
    let gains = &mut gains[..active];
    voice.gain.fill(gains);
    let mixed = out[..got * CHANNELS].chunks_exact_mut(CHANNELS);
    let frames_in = samples[..got * CHANNELS].chunks_exact(CHANNELS);
    for (((out, frame), gain), bus_gain) in mixed.zip(frames_in).zip(gains.iter()).zip(bus_gains) {
        let gain = gain * bus_gain;
        out[0] += frame[0] * gain;
        out[1] += frame[1] * gain;
    }
    voice.played += got as u64;

    if ended {
        let stopped = matches!(voice.state, State::Stopping { .. });
        return Fate::Ended { stopped };
    }
    match voice.state {
        State::Pausing if voice.gain.is_done() => {
            voice.state = State::Paused;
            Fate::Paused
        }
        State::Stopping { .. } if voice.gain.is_done() => Fate::Ended { stopped: true },
        _ => Fate::Keep,
    }
}

/// Copies as many whole frames as are waiting (up to `dst`'s length) out of
/// `ring` into `dst`; returns the number of frames.
fn read_frames(ring: &mut Consumer<f32>, dst: &mut [f32]) -> usize {
    let samples = dst.len().min(ring.slots() / CHANNELS * CHANNELS);
    // Cannot fail: this is the only consumer, and `slots` were there.
    if samples == 0 || ring.pop_entire_slice(&mut dst[..samples]).is_err() {
        return 0;
    }
    samples / CHANNELS
}

impl MixerControl {
    /// Adds a voice on `bus` playing `source` at `gain`, from silence over
    /// `fade_in` (frames, curve) if given. Fill the source's ring first: an
    /// empty ring on the first period is an underrun.
    ///
    /// On `Err` the source is dropped (its producer sees the ring abandoned).
    pub fn add_voice(
        &mut self,
        bus: BusId,
        source: Source,
        gain: f32,
        fade_in: Option<(u32, Curve)>,
    ) -> Result<VoiceId, MixerFull> {
        self.add_voice_at(bus, source, gain, fade_in, 0)
    }

    /// [`MixerControl::add_voice`], its first sample (and its fade-in) on
    /// the clock's frame `start`: the period that holds that frame plays
    /// silence before it. A frame already rendered when the output takes the
    /// voice means the first frame it can: [`MixerControl::started_at`] then
    /// says how late. The voice reads nothing from its source before its
    /// start, so it may be added long before (it holds one of the
    /// [`MAX_VOICES`] meanwhile).
    pub fn add_voice_at(
        &mut self,
        bus: BusId,
        source: Source,
        gain: f32,
        fade_in: Option<(u32, Curve)>,
        start: u64,
    ) -> Result<VoiceId, MixerFull> {
        self.reclaim();
        if self.positions.len() >= MAX_VOICES || self.commands.is_full() {
            return Err(MixerFull);
        }
        let level = sane(gain);
        let ramp = match fade_in {
            Some((frames, curve)) => {
                let mut ramp = Ramp::fixed(0.0);
                ramp.to(level, frames, curve);
                ramp
            }
            None => Ramp::fixed(level),
        };
        let id = self.next_id;
        let position = Arc::new(AtomicU64::new(0));
        let started = Arc::new(AtomicU64::new(NOT_STARTED));
        let voice = Box::new(Voice {
            id,
            bus,
            source,
            gain: ramp,
            level,
            state: State::Playing,
            played: 0,
            position: position.clone(),
            start_at: start,
            started: started.clone(),
            cue: None,
            short: 0,
            starving: false,
        });
        self.send(Command::Add(voice))?;
        self.next_id += 1;
        self.positions.insert(id, position);
        self.starts.insert(id, started);
        Ok(id)
    }

    /// Ramps a voice's gain to `target` over `frames` along `curve`; for a
    /// paused voice, sets the gain it resumes at. Ignored for a voice that is
    /// stopping or gone.
    pub fn set_voice_gain(
        &mut self,
        id: VoiceId,
        target: f32,
        frames: u32,
        curve: Curve,
    ) -> Result<(), MixerFull> {
        let target = sane(target);
        self.send(Command::VoiceGain {
            id,
            target,
            frames,
            curve,
        })
    }

    /// Fades a voice out linearly over `fade_frames`, then removes it
    /// (`VoiceEnded` with `stopped: true`). On a voice already fading out
    /// (stopping or crossfading), retimes its fade from where it is.
    pub fn stop_voice(&mut self, id: VoiceId, fade_frames: u32) -> Result<(), MixerFull> {
        self.stop_voice_at(id, fade_frames, 0)
    }

    /// [`MixerControl::stop_voice`], the fade starting on the clock's frame
    /// `at` (at once if that has passed). A voice stopped before its start
    /// never sounds.
    pub fn stop_voice_at(
        &mut self,
        id: VoiceId,
        fade_frames: u32,
        at: u64,
    ) -> Result<(), MixerFull> {
        self.send(Command::Stop {
            id,
            frames: fade_frames,
            at,
        })
    }

    /// Fades a playing voice out over `fade_frames`, then stops reading its
    /// source, so its position holds (`FadeDone` when paused).
    pub fn pause_voice(&mut self, id: VoiceId, fade_frames: u32) -> Result<(), MixerFull> {
        self.send(Command::Pause {
            id,
            frames: fade_frames,
        })
    }

    /// Fades a paused (or pausing) voice back to its gain over `fade_frames`,
    /// playing on from where it paused.
    pub fn resume_voice(&mut self, id: VoiceId, fade_frames: u32) -> Result<(), MixerFull> {
        self.send(Command::Resume {
            id,
            frames: fade_frames,
        })
    }

    /// Ramps a bus's gain linearly to `target` over `frames`.
    pub fn set_bus_gain(&mut self, bus: BusId, target: f32, frames: u32) -> Result<(), MixerFull> {
        let target = sane(target);
        self.send(Command::BusGain {
            bus,
            target,
            frames,
        })
    }

    /// Ramps the master gain linearly to `target` over `frames`; for a 0–100
    /// volume, pass [`volume_to_gain`].
    pub fn set_master(&mut self, target: f32, frames: u32) -> Result<(), MixerFull> {
        let target = sane(target);
        self.send(Command::Master { target, frames })
    }

    /// Ducks the music bus: its multiplier ramps linearly to exactly `level`
    /// over exactly `frames` (`DuckDone` then).
    pub fn duck(&mut self, level: f32, frames: u32) -> Result<(), MixerFull> {
        let level = sane(level);
        self.send(Command::Duck { level, frames })
    }

    /// Brings the music bus back to 1.0 over `frames` (`DuckDone { level: 1.0 }` then).
    pub fn unduck(&mut self, frames: u32) -> Result<(), MixerFull> {
        self.send(Command::Duck { level: 1.0, frames })
    }

    /// Crossfades over `frames`: `from` fades out along
    /// [`Curve::EqualPowerOut`] and is removed (`VoiceEnded`, then
    /// `CrossfadeDone`); `to` fades along [`Curve::EqualPowerIn`] to 1.0 from
    /// its current gain (add it with gain 0 first, in the same period, so it
    /// starts in step). A `from` at 1.0 and a `to` at 0 keep a constant power.
    pub fn crossfade(&mut self, from: VoiceId, to: VoiceId, frames: u32) -> Result<(), MixerFull> {
        self.crossfade_at(from, to, frames, 0)
    }

    /// [`MixerControl::crossfade`] from the clock's frame `at` (at once if
    /// that has passed): add `to` to start on `at` with gain 0, and the old
    /// voice fades out from the very frame the new one's first sample plays on.
    pub fn crossfade_at(
        &mut self,
        from: VoiceId,
        to: VoiceId,
        frames: u32,
        at: u64,
    ) -> Result<(), MixerFull> {
        self.send(Command::Crossfade {
            from,
            to,
            frames,
            at,
        })
    }

    /// The events since the last poll; also frees the voices the callback
    /// handed back. Call it regularly (every few periods).
    pub fn poll(&mut self) -> Vec<MixerEvent> {
        let mut events = Vec::with_capacity(self.events.slots());
        while let Ok(event) = self.events.pop() {
            events.push(event);
        }
        self.reclaim();
        events
    }

    /// The output's sample clock.
    pub fn clock(&self) -> SampleClock {
        self.clock.clone()
    }

    /// Frames this voice has played, as of the last `render`; `None` once
    /// the voice has ended and been reclaimed (or was never added).
    pub fn position(&self, id: VoiceId) -> Option<u64> {
        self.positions
            .get(&id)
            .map(|position| position.load(Ordering::Relaxed))
    }

    /// The clock's frame on which this voice's first sample plays, once the
    /// output has taken it (`None` before, and once the voice is reclaimed).
    /// Timed things that go with a voice (lip sync, cues) count from here.
    pub fn started_at(&self, id: VoiceId) -> Option<u64> {
        self.start_of(id)?.frame()
    }

    /// A handle on where this voice starts, readable from any thread.
    pub fn start_of(&self, id: VoiceId) -> Option<VoiceStart> {
        self.starts.get(&id).map(|s| VoiceStart(s.clone()))
    }

    /// Underruns so far: render calls in which a voice ran short (counted once per voice).
    pub fn underruns(&self) -> u64 {
        self.stats.underruns.load(Ordering::Relaxed)
    }

    /// Output samples clamped so far because the mix went beyond [-1, 1]:
    /// if it grows, lower the gains.
    pub fn clipped_samples(&self) -> u64 {
        self.stats.clipped.load(Ordering::Relaxed)
    }

    /// Events dropped because nobody polled in time: should be 0.
    pub fn dropped_events(&self) -> u64 {
        self.stats.dropped_events.load(Ordering::Relaxed)
    }

    /// Voices added and not yet reclaimed (at most [`MAX_VOICES`]).
    pub fn voices(&self) -> usize {
        self.positions.len()
    }

    /// Output frames per second.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Whether the [`Mixer`] has been dropped: nothing will render these
    /// commands any more (the queue fills, and every call says [`MixerFull`]).
    pub fn mixer_dropped(&self) -> bool {
        self.commands.is_abandoned()
    }

    /// Queues a command, or says the queue is full.
    fn send(&mut self, command: Command) -> Result<(), MixerFull> {
        self.commands.push(command).map_err(|_| MixerFull)
    }

    /// Frees the voices the callback handed back.
    fn reclaim(&mut self) {
        while let Ok(voice) = self.retired.pop() {
            self.positions.remove(&voice.id);
            self.starts.remove(&voice.id);
        }
    }
}

/// A gain the mixer can use: negative or not a finite number counts as 0,
/// so one bad value cannot turn the whole output into noise or NaN.
fn sane(gain: f32) -> f32 {
    if gain.is_finite() { gain.max(0.0) } else { 0.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RATE: u32 = 48_000;
    const PERIOD: usize = 256;

    /// The decoder's end of a test source.
    struct Feed {
        samples: Producer<f32>,
        finished: Arc<AtomicBool>,
    }

    impl Feed {
        /// Pushes `frames` frames of the constant (`left`, `right`).
        fn constant(&mut self, frames: usize, left: f32, right: f32) {
            for _ in 0..frames {
                self.samples.push(left).unwrap();
                self.samples.push(right).unwrap();
            }
        }

        /// Pushes frames `from..to` of a ramp whose frame `i` is `i / 10_000` on both channels.
        fn counting(&mut self, from: usize, to: usize) {
            for i in from..to {
                let value = i as f32 / 10_000.0;
                self.samples.push(value).unwrap();
                self.samples.push(value).unwrap();
            }
        }

        fn finish(&self) {
            self.finished.store(true, Ordering::Release);
        }
    }

    /// A source with room for `frames` frames, and its feed.
    fn source(frames: usize) -> (Feed, Source) {
        let (samples, consumer) = RingBuffer::new(frames * CHANNELS);
        let finished = Arc::new(AtomicBool::new(false));
        let feed = Feed {
            samples,
            finished: finished.clone(),
        };
        (feed, Source::new(consumer, finished))
    }

    /// A source holding `frames` frames of the constant (`left`, `right`), not finished.
    fn constant(frames: usize, left: f32, right: f32) -> (Feed, Source) {
        let (mut feed, source) = source(frames);
        feed.constant(frames, left, right);
        (feed, source)
    }

    /// A mixer at unity master gain (the default volume would scale every expectation).
    fn unity_mixer() -> (Mixer, MixerControl) {
        let (mixer, mut control) = mixer(RATE, PERIOD);
        control.set_master(1.0, 0).unwrap();
        (mixer, control)
    }

    /// Renders `frames` frames in one call.
    fn render(mixer: &mut Mixer, frames: usize) -> Vec<f32> {
        let mut out = vec![f32::NAN; frames * CHANNELS];
        mixer.render(&mut out);
        out
    }

    fn left(out: &[f32]) -> Vec<f32> {
        out.iter().step_by(2).copied().collect()
    }

    fn right(out: &[f32]) -> Vec<f32> {
        out.iter().skip(1).step_by(2).copied().collect()
    }

    #[test]
    fn a_constant_source_at_unity_gains_renders_exactly_its_value() {
        let (mut mixer, mut control) = unity_mixer();
        let (_feed, src) = constant(1024, 0.5, 0.5);
        let id = control.add_voice(BusId::Speech, src, 1.0, None).unwrap();
        let out = render(&mut mixer, PERIOD);
        assert!(out.iter().all(|&s| s == 0.5), "{out:?}");
        assert_eq!(control.position(id), Some(PERIOD as u64));
        let clock = control.clock();
        assert_eq!(clock.frames(), PERIOD as u64);
        assert_eq!(clock.seconds(RATE), PERIOD as f64 / 48_000.0);
        assert_eq!(control.poll(), vec![]);
        assert_eq!((control.underruns(), control.clipped_samples()), (0, 0));
    }

    /// The index of the first frame whose left sample is not 0.
    fn first_sound(out: &[f32]) -> Option<usize> {
        left(out).iter().position(|&s| s != 0.0)
    }

    /// Renders `total` frames in buffers of `period` frames (the last one shorter).
    fn render_in(mixer: &mut Mixer, total: usize, period: usize) -> Vec<f32> {
        let mut out = Vec::with_capacity(total * CHANNELS);
        while out.len() < total * CHANNELS {
            let frames = period.min(total - out.len() / CHANNELS);
            out.extend(render(mixer, frames));
        }
        out
    }

    #[test]
    fn a_voice_scheduled_on_a_frame_plays_its_first_sample_on_that_very_frame() {
        // Mid-period, on a period's first and last frame, across several
        // periods, in buffers of other sizes and longer than the mixer's chunk.
        for period in [PERIOD, 100, 333, 1000, 1] {
            for start in [0, 1, 100, 255, 256, 257, 511, 512, 700, 3 * 256 + 17] {
                let (mut mixer, mut control) = unity_mixer();
                let (mut feed, src) = source(2048);
                feed.counting(1, 1001);
                let id = control
                    .add_voice_at(BusId::Effects, src, 1.0, None, start as u64)
                    .unwrap();
                let out = left(&render_in(&mut mixer, start + 500, period));
                let context = format!("start {start}, buffers of {period}");
                assert_eq!(out.iter().position(|&s| s != 0.0), Some(start), "{context}");
                assert_eq!(
                    out[start],
                    1.0 / 10_000.0,
                    "its very first sample: {context}"
                );
                assert_eq!(out[start + 499], 500.0 / 10_000.0, "{context}");
                assert_eq!(control.started_at(id), Some(start as u64), "{context}");
                assert_eq!(control.position(id), Some(500), "{context}");
                assert_eq!(
                    control.poll(),
                    vec![],
                    "no underrun before its start: {context}"
                );
            }
        }
    }

    #[test]
    fn a_voice_waiting_for_its_frame_reads_nothing_and_its_fade_in_starts_there() {
        let (mut mixer, mut control) = unity_mixer();
        let (mut feed, src) = source(1024);
        feed.constant(600, 0.5, 0.5);
        let fade = Some((100, Curve::Linear));
        control
            .add_voice_at(BusId::Music, src, 1.0, fade, 1300)
            .unwrap();
        let free = feed.samples.slots();
        assert!(
            render_in(&mut mixer, 1024, PERIOD)
                .iter()
                .all(|&s| s == 0.0)
        );
        assert_eq!(feed.samples.slots(), free, "nothing read before the start");
        let out = left(&render_in(&mut mixer, 512, PERIOD));
        let start = 1300 - 1024;
        assert!(out[..start].iter().all(|&s| s == 0.0));
        assert!((out[start] - 0.5 * 0.01).abs() < 1e-7, "{}", out[start]);
        assert_eq!(
            out[start + 99],
            0.5,
            "the fade-in ends 100 frames after the start"
        );
    }

    #[test]
    fn a_start_already_rendered_is_now_and_the_control_side_sees_how_late() {
        let (mut mixer, mut control) = unity_mixer();
        render(&mut mixer, 1000);
        let (_feed, src) = constant(1024, 0.5, 0.5);
        let id = control
            .add_voice_at(BusId::Effects, src, 1.0, None, 300)
            .unwrap();
        assert_eq!(control.started_at(id), None, "not taken yet");
        let out = render(&mut mixer, PERIOD);
        assert_eq!(first_sound(&out), Some(0), "at once");
        assert_eq!(control.started_at(id), Some(1000), "700 frames late");
    }

    #[test]
    fn a_crossfade_on_a_frame_begins_on_that_frame_for_both_voices() {
        for at in [600_u64, 512, 257] {
            let (mut mixer, mut control) = unity_mixer();
            // The outgoing voice on the left, the incoming one on the right.
            let (_old_feed, old) = constant(4096, 1.0, 0.0);
            let (_new_feed, new) = constant(4096, 0.0, 1.0);
            let from = control.add_voice(BusId::Music, old, 1.0, None).unwrap();
            render(&mut mixer, PERIOD);
            let to = control
                .add_voice_at(BusId::Music, new, 0.0, None, at)
                .unwrap();
            control.crossfade_at(from, to, 100, at).unwrap();
            let out = render_in(&mut mixer, 1024, PERIOD);
            let split = at as usize - PERIOD;
            assert!(
                out[..split * 2].chunks(2).all(|f| f == [1.0, 0.0]),
                "the old voice alone, untouched, up to the frame: at {at}"
            );
            for (k, frame) in out[split * 2..].chunks(2).enumerate().take(100) {
                let power = frame[0] * frame[0] + frame[1] * frame[1];
                assert!((power - 1.0).abs() < 1e-6, "at {at}, frame {k}: {power}");
                assert!(frame[1] > 0.0, "the new voice sounds from the frame on");
            }
            assert_eq!(&out[(split + 99) * 2..(split + 100) * 2], &[0.0, 1.0]);
            assert_eq!(
                control.poll(),
                vec![
                    MixerEvent::VoiceEnded {
                        id: from,
                        frames_played: at + 100,
                        stopped: true
                    },
                    MixerEvent::CrossfadeDone { from, to },
                ]
            );
        }
    }

    #[test]
    fn a_stop_on_a_frame_fades_from_that_frame_and_one_before_the_start_is_never_heard() {
        let (mut mixer, mut control) = unity_mixer();
        let (_feed, src) = constant(4096, 0.5, 0.5);
        let id = control.add_voice(BusId::Effects, src, 1.0, None).unwrap();
        control.stop_voice_at(id, 0, 500).unwrap();
        let out = left(&render_in(&mut mixer, 1024, PERIOD));
        assert!(out[..500].iter().all(|&s| s == 0.5));
        assert!(out[500..].iter().all(|&s| s == 0.0));
        let ended = MixerEvent::VoiceEnded {
            id,
            frames_played: 500,
            stopped: true,
        };
        assert_eq!(control.poll(), vec![ended]);

        let (_feed, src) = constant(4096, 0.5, 0.5);
        let id = control
            .add_voice_at(BusId::Effects, src, 1.0, None, 5000)
            .unwrap();
        render(&mut mixer, PERIOD);
        control.stop_voice(id, 1000).unwrap();
        assert!(
            render_in(&mut mixer, 8192, PERIOD)
                .iter()
                .all(|&s| s == 0.0)
        );
        let ended = MixerEvent::VoiceEnded {
            id,
            frames_played: 0,
            stopped: true,
        };
        assert_eq!(
            control.poll(),
            vec![ended],
            "gone at once, not at its start"
        );
        assert_eq!(control.voices(), 0);
    }

    #[test]
    fn the_clock_maps_frames_to_when_the_output_says_they_are_heard() {
        let clock = SampleClock::new(RATE);
        assert_eq!((clock.heard_at(0), clock.latency()), (None, None));
        let at = Instant::now() + Duration::from_millis(40);
        clock.mark_heard(4800, at, Duration::from_millis(30));
        assert_eq!(clock.heard_at(4800), Some(at));
        assert_eq!(
            clock.heard_at(4800 + 48_000),
            Some(at + Duration::from_secs(1))
        );
        assert_eq!(
            clock.heard_at(4800 + 24),
            Some(at + Duration::from_micros(500))
        );
        assert_eq!(clock.heard_at(0), Some(at - Duration::from_millis(100)));
        assert_eq!(clock.latency(), Some(Duration::from_millis(30)));
        assert_eq!(clock.sample_rate(), RATE);
    }

    #[test]
    fn the_master_starts_at_the_default_volume() {
        let (mut mixer, mut control) = mixer(RATE, PERIOD);
        let (_feed, src) = constant(PERIOD, 0.5, 0.5);
        control.add_voice(BusId::Music, src, 1.0, None).unwrap();
        let expected = 0.5 * volume_to_gain(DEFAULT_VOLUME);
        assert!(render(&mut mixer, PERIOD).iter().all(|&s| s == expected));
    }

    #[test]
    fn a_master_ramp_is_per_sample_linear_and_exact() {
        let (mut mixer, mut control) = unity_mixer();
        let (_feed, src) = constant(4096, 0.5, 0.5);
        control.add_voice(BusId::Effects, src, 1.0, None).unwrap();
        render(&mut mixer, PERIOD);
        control.set_master(0.25, 1000).unwrap();
        // 512-frame buffers: two chunks each, the ramp crossing chunk and call boundaries.
        let mut out = Vec::new();
        for _ in 0..3 {
            out.extend(left(&render(&mut mixer, 512)));
        }
        for (k, &sample) in out.iter().enumerate().take(1000) {
            let frame = (k + 1) as f64;
            let expected = 0.5 * (1.0 - 0.75 * frame / 1000.0);
            assert!(
                (f64::from(sample) - expected).abs() < 1e-7,
                "frame {frame}: {sample} ≠ {expected}"
            );
        }
        assert_eq!(out[999], 0.125, "the target exactly on the last frame");
        assert!(out[1000..].iter().all(|&s| s == 0.125));
    }

    #[test]
    fn ducking_reaches_the_level_exactly_and_comes_back() {
        let (mut mixer, mut control) = unity_mixer();
        // Music on the left, speech on the right: only the left is ducked.
        let (_music_feed, music) = constant(8192, 0.5, 0.0);
        let (_speech_feed, speech) = constant(8192, 0.0, 0.5);
        control.add_voice(BusId::Music, music, 1.0, None).unwrap();
        control.add_voice(BusId::Speech, speech, 1.0, None).unwrap();
        control.duck(0.3, 1000).unwrap();
        let mut out = Vec::new();
        for period in 0..4 {
            out.extend(render(&mut mixer, PERIOD));
            let events = control.poll();
            if period < 3 {
                assert_eq!(events, vec![], "not done before frame 1000");
            } else {
                assert_eq!(events, vec![MixerEvent::DuckDone { level: 0.3 }]);
            }
        }
        let (music, speech) = (left(&out), right(&out));
        assert!(speech.iter().all(|&s| s == 0.5), "speech is not ducked");
        for k in 1..1000 {
            let expected = 0.5 * (1.0 - 0.7 * k as f32 / 1000.0);
            assert!((music[k - 1] - expected).abs() < 1e-6, "frame {k}");
        }
        assert!(
            music[..1000].windows(2).all(|w| w[0] > w[1]),
            "falls every frame"
        );
        assert_eq!(
            music[999],
            0.5 * 0.3,
            "exactly the level after exactly 1000 frames"
        );
        assert!(music[1000..].iter().all(|&s| s == 0.5 * 0.3));

        control.unduck(500).unwrap();
        let out = left(&render(&mut mixer, 512));
        assert!(out.windows(2).all(|w| w[0] < w[1] || w[1] == 0.5));
        assert_eq!(out[499], 0.5, "back to 1.0 after exactly 500 frames");
        assert!(out[500..].iter().all(|&s| s == 0.5));
        assert_eq!(control.poll(), vec![MixerEvent::DuckDone { level: 1.0 }]);
    }

    #[test]
    fn a_crossfade_keeps_constant_power_and_leaves_only_the_new_voice() {
        let (mut mixer, mut control) = unity_mixer();
        // The outgoing voice on the left, the incoming one on the right: the
        // output shows each one's gain.
        let (_old_feed, old) = constant(4096, 1.0, 0.0);
        let (_new_feed, new) = constant(4096, 0.0, 1.0);
        let from = control.add_voice(BusId::Music, old, 1.0, None).unwrap();
        render(&mut mixer, PERIOD);
        let to = control.add_voice(BusId::Music, new, 0.0, None).unwrap();
        control.crossfade(from, to, 1000).unwrap();
        let mut out = Vec::new();
        for _ in 0..4 {
            out.extend(render(&mut mixer, PERIOD));
        }
        for (k, frame) in out.chunks(2).enumerate().take(1000) {
            let power = frame[0] * frame[0] + frame[1] * frame[1];
            assert!((power - 1.0).abs() < 1e-6, "frame {}: power {power}", k + 1);
        }
        assert_eq!(
            &out[999 * 2..1000 * 2],
            &[0.0, 1.0],
            "exactly swapped at the end"
        );
        assert!(out[1000 * 2..].chunks(2).all(|f| f == [0.0, 1.0]));
        assert_eq!(
            control.poll(),
            vec![
                MixerEvent::VoiceEnded {
                    id: from,
                    frames_played: PERIOD as u64 + 1000,
                    stopped: true
                },
                MixerEvent::CrossfadeDone { from, to },
            ]
        );
        assert_eq!(control.position(from), None, "reclaimed");
        assert_eq!(control.position(to), Some(1024));
        assert_eq!(control.voices(), 1);
        assert!(
            render(&mut mixer, PERIOD)
                .chunks(2)
                .all(|f| f == [0.0, 1.0])
        );
    }

    #[test]
    fn pause_holds_the_position_and_resume_plays_on_from_there() {
        let (mut mixer, mut control) = unity_mixer();
        let (mut feed, src) = source(4096);
        feed.counting(0, 2000);
        let id = control.add_voice(BusId::Speech, src, 1.0, None).unwrap();
        let out = left(&render(&mut mixer, PERIOD));
        assert_eq!(out[255], 255.0 / 10_000.0);

        control.pause_voice(id, 100).unwrap();
        let out = left(&render(&mut mixer, PERIOD));
        for j in 1..=100 {
            let expected = (255 + j) as f32 / 10_000.0 * (1.0 - j as f32 / 100.0);
            assert!((out[j - 1] - expected).abs() < 1e-6, "fade frame {j}");
        }
        assert!(out[99..].iter().all(|&s| s == 0.0), "silent once paused");
        assert_eq!(
            control.position(id),
            Some(356),
            "read only as far as the fade"
        );
        assert_eq!(control.poll(), vec![MixerEvent::FadeDone { id }]);

        let free = feed.samples.slots();
        let out = render(&mut mixer, 1024);
        assert!(out.iter().all(|&s| s == 0.0));
        assert_eq!(feed.samples.slots(), free, "a paused voice reads nothing");
        assert_eq!(control.position(id), Some(356));
        assert_eq!(control.poll(), vec![], "no underrun while paused");

        control.resume_voice(id, 0).unwrap();
        let out = left(&render(&mut mixer, PERIOD));
        assert_eq!(out[0], 356.0 / 10_000.0, "plays on from the held position");
        assert_eq!(out[255], 611.0 / 10_000.0);
        assert_eq!(control.position(id), Some(612));
    }

    #[test]
    fn a_gain_set_while_paused_is_the_gain_resumed_at() {
        let (mut mixer, mut control) = unity_mixer();
        let (_feed, src) = constant(4096, 0.5, 0.5);
        let id = control.add_voice(BusId::Speech, src, 1.0, None).unwrap();
        control.pause_voice(id, 0).unwrap();
        control.set_voice_gain(id, 0.5, 0, Curve::Linear).unwrap();
        assert!(render(&mut mixer, PERIOD).iter().all(|&s| s == 0.0));
        control.resume_voice(id, 10).unwrap();
        let out = left(&render(&mut mixer, PERIOD));
        assert!(
            (out[0] - 0.5 * 0.05).abs() < 1e-7,
            "fades back in: {}",
            out[0]
        );
        assert_eq!(out[9], 0.25);
        assert!(out[9..].iter().all(|&s| s == 0.25));
    }

    #[test]
    fn stop_fades_out_linearly_then_removes_the_voice() {
        let (mut mixer, mut control) = unity_mixer();
        let (_feed, src) = constant(4096, 0.5, 0.5);
        let id = control.add_voice(BusId::Effects, src, 1.0, None).unwrap();
        control.stop_voice(id, 100).unwrap();
        let out = left(&render(&mut mixer, PERIOD));
        for j in 1..=100 {
            let expected = 0.5 * (1.0 - j as f32 / 100.0);
            assert!((out[j - 1] - expected).abs() < 1e-7, "frame {j}");
        }
        assert!(out[99..].iter().all(|&s| s == 0.0));
        let ended = MixerEvent::VoiceEnded {
            id,
            frames_played: 100,
            stopped: true,
        };
        assert_eq!(control.poll(), vec![ended]);
        assert_eq!((control.voices(), control.position(id)), (0, None));
        // A second stop retimes a fade under way.
        let (_feed, src) = constant(4096, 0.5, 0.5);
        let id = control.add_voice(BusId::Effects, src, 1.0, None).unwrap();
        control.stop_voice(id, 1000).unwrap();
        render(&mut mixer, 100);
        control.stop_voice(id, 0).unwrap();
        assert!(render(&mut mixer, PERIOD).iter().all(|&s| s == 0.0));
        let ended = MixerEvent::VoiceEnded {
            id,
            frames_played: 100,
            stopped: true,
        };
        assert_eq!(control.poll(), vec![ended]);
        // Commands for a voice that is gone are ignored.
        control.set_voice_gain(id, 1.0, 0, Curve::Linear).unwrap();
        assert!(render(&mut mixer, PERIOD).iter().all(|&s| s == 0.0));
    }

    #[test]
    fn a_fade_in_starts_from_silence() {
        let (mut mixer, mut control) = unity_mixer();
        let (_feed, src) = constant(1024, 0.5, 0.5);
        control
            .add_voice(BusId::Music, src, 0.8, Some((100, Curve::Linear)))
            .unwrap();
        let out = left(&render(&mut mixer, PERIOD));
        assert!((out[0] - 0.5 * 0.008).abs() < 1e-7);
        assert_eq!(out[99], 0.4);
        assert!(out[99..].iter().all(|&s| s == 0.4));
    }

    #[test]
    fn a_finished_source_ends_its_voice() {
        let (mut mixer, mut control) = unity_mixer();
        let (feed, src) = constant(100, 0.5, 0.5);
        feed.finish();
        let id = control.add_voice(BusId::Effects, src, 1.0, None).unwrap();
        let out = left(&render(&mut mixer, PERIOD));
        assert!(out[..100].iter().all(|&s| s == 0.5));
        assert!(out[100..].iter().all(|&s| s == 0.0));
        let ended = MixerEvent::VoiceEnded {
            id,
            frames_played: 100,
            stopped: false,
        };
        assert_eq!(control.poll(), vec![ended], "an end, not an underrun");
        assert_eq!((control.voices(), control.underruns()), (0, 0));
    }

    #[test]
    fn samples_pushed_before_finished_are_all_played() {
        let (mut mixer, mut control) = unity_mixer();
        let (mut feed, src) = source(1024);
        let id = control.add_voice(BusId::Speech, src, 1.0, None).unwrap();
        feed.constant(300, 0.5, 0.5);
        feed.finish();
        let out = left(&render(&mut mixer, 512));
        assert!(out[..300].iter().all(|&s| s == 0.5));
        assert!(out[300..].iter().all(|&s| s == 0.0));
        let ended = MixerEvent::VoiceEnded {
            id,
            frames_played: 300,
            stopped: false,
        };
        assert_eq!(control.poll(), vec![ended]);
    }

    #[test]
    fn an_empty_unfinished_source_is_an_underrun_played_as_silence() {
        let (mut mixer, mut control) = unity_mixer();
        let (mut feed, src) = source(1024);
        let id = control.add_voice(BusId::Speech, src, 1.0, None).unwrap();
        assert!(render(&mut mixer, PERIOD).iter().all(|&s| s == 0.0));
        assert_eq!(
            control.poll(),
            vec![MixerEvent::Underrun { id, frames: 256 }]
        );

        // The underrun goes on: counted, not reported again.
        render(&mut mixer, 1024);
        assert_eq!(control.poll(), vec![]);

        // What there is plays, then silence for the rest.
        feed.constant(100, 0.5, 0.5);
        let out = left(&render(&mut mixer, PERIOD));
        assert!(out[..100].iter().all(|&s| s == 0.5));
        assert!(out[100..].iter().all(|&s| s == 0.0));
        assert_eq!(control.poll(), vec![]);
        assert_eq!(control.underruns(), 3);
        assert_eq!(
            control.position(id),
            Some(100),
            "silence does not move the position"
        );

        feed.constant(256, 0.5, 0.5);
        render(&mut mixer, PERIOD);
        assert_eq!(control.poll(), vec![], "fed again: no underrun");
    }

    #[test]
    fn every_command_sent_before_a_period_is_applied_in_it() {
        let (mut mixer, mut control) = unity_mixer();
        let (_f1, music) = constant(1024, 0.1, 0.1);
        let (_f2, speech) = constant(1024, 0.2, 0.2);
        let (_f3, effects) = constant(1024, 0.3, 0.3);
        let music = control.add_voice(BusId::Music, music, 1.0, None).unwrap();
        control.add_voice(BusId::Speech, speech, 1.0, None).unwrap();
        control
            .add_voice(BusId::Effects, effects, 1.0, None)
            .unwrap();
        // Many retargets in a row: the last one wins.
        for step in 0..=100 {
            control
                .set_voice_gain(music, step as f32 / 50.0, 0, Curve::Linear)
                .unwrap();
        }
        control.set_bus_gain(BusId::Effects, 0.5, 0).unwrap();
        control.duck(0.5, 0).unwrap();
        control.set_master(0.5, 0).unwrap();
        let out = render(&mut mixer, PERIOD);
        // (0.1 × 2 × 0.5 duck + 0.2 + 0.3 × 0.5) × 0.5 master
        let expected = (0.1 + 0.2 + 0.15) * 0.5;
        assert!(
            out.iter().all(|&s| (s - expected).abs() < 1e-6),
            "{}",
            out[0]
        );
        assert_eq!(control.poll(), vec![MixerEvent::DuckDone { level: 0.5 }]);
    }

    #[test]
    fn the_sum_is_clamped_to_full_scale_and_counted() {
        let (mut mixer, mut control) = unity_mixer();
        let (_f1, a) = constant(PERIOD, 0.8, -0.8);
        let (_f2, b) = constant(PERIOD, 0.8, -0.8);
        control.add_voice(BusId::Music, a, 1.0, None).unwrap();
        control.add_voice(BusId::Effects, b, 1.0, None).unwrap();
        let out = render(&mut mixer, PERIOD);
        assert!(out.chunks(2).all(|f| f == [1.0, -1.0]));
        assert_eq!(control.clipped_samples(), 2 * PERIOD as u64);

        let (_f3, bad) = constant(PERIOD, f32::NAN, 0.25);
        control.add_voice(BusId::Speech, bad, 1.0, None).unwrap();
        let out = render(&mut mixer, PERIOD);
        assert!(out.chunks(2).all(|f| f == [0.0, 0.25]), "a NaN is silenced");
    }

    #[test]
    fn a_long_buffer_renders_like_the_same_frames_in_short_ones() {
        let setup = || {
            let (mut mixer, mut control) = mixer(RATE, PERIOD);
            let (mut feed, src) = source(8192);
            feed.counting(0, 4000);
            let (other_feed, other) = constant(8192, 0.2, -0.1);
            let fade_in = Some((700, Curve::EqualPowerIn));
            control.add_voice(BusId::Music, src, 0.9, fade_in).unwrap();
            let other = control.add_voice(BusId::Effects, other, 1.0, None).unwrap();
            control.set_master(0.8, 900).unwrap();
            control.duck(0.4, 333).unwrap();
            control.set_bus_gain(BusId::Effects, 0.3, 1200).unwrap();
            control.stop_voice(other, 1500).unwrap();
            // Both mixers take the commands in their first call.
            render(&mut mixer, 0);
            (mixer, control, [feed, other_feed])
        };
        let (mut long, _control, _feeds) = setup();
        let (mut short, _other_control, _other_feeds) = setup();
        let whole = render(&mut long, 3000);
        let mut pieces = Vec::new();
        for frames in [1, 255, 256, 257, 1000, 231, 1000] {
            pieces.extend(render(&mut short, frames));
        }
        assert_eq!(whole.len(), pieces.len());
        assert_eq!(whole, pieces);
    }

    #[test]
    fn an_odd_trailing_sample_is_silenced() {
        let (mut mixer, mut control) = unity_mixer();
        let (_feed, src) = constant(16, 0.5, 0.5);
        control.add_voice(BusId::Speech, src, 1.0, None).unwrap();
        let mut out = [f32::NAN; 5];
        mixer.render(&mut out);
        assert_eq!(out, [0.5, 0.5, 0.5, 0.5, 0.0]);
        assert_eq!(control.clock().frames(), 2);
    }

    #[test]
    fn more_than_max_voices_or_a_full_queue_is_refused() {
        let (mut mixer, mut control) = unity_mixer();
        let mut feeds = Vec::new();
        let mut ids = Vec::new();
        for _ in 0..MAX_VOICES {
            let (feed, src) = constant(64, 0.01, 0.01);
            feeds.push(feed);
            ids.push(control.add_voice(BusId::Effects, src, 1.0, None).unwrap());
        }
        let (_feed, src) = constant(64, 0.01, 0.01);
        assert_eq!(
            control.add_voice(BusId::Effects, src, 1.0, None),
            Err(MixerFull)
        );
        control.stop_voice(ids[0], 0).unwrap();
        render(&mut mixer, PERIOD);
        // The ended voice came back (reclaimed by add_voice itself), so there is room.
        let (_feed, src) = constant(64, 0.01, 0.01);
        let id = control.add_voice(BusId::Effects, src, 1.0, None).unwrap();
        assert!(id > ids[MAX_VOICES - 1], "ids are never reused");

        // With no output rendering, the command queue fills and says so.
        let mut sent = 0;
        while control.set_master(1.0, 0).is_ok() {
            sent += 1;
        }
        assert_eq!(sent, COMMAND_CAPACITY - 1);
        assert_eq!(control.unduck(0), Err(MixerFull));
        render(&mut mixer, PERIOD);
        assert_eq!(control.unduck(0), Ok(()));
    }

    #[test]
    fn events_beyond_the_queue_are_counted_not_waited_for() {
        let (mut mixer, mut control) = unity_mixer();
        let mut out = [0.0; 2];
        // One DuckDone per render, and nobody polling.
        for i in 0..EVENT_CAPACITY + 10 {
            control.duck(if i % 2 == 0 { 0.5 } else { 0.4 }, 0).unwrap();
            mixer.render(&mut out);
        }
        assert_eq!(control.dropped_events(), 10);
        assert_eq!(control.poll().len(), EVENT_CAPACITY);
    }

    #[test]
    fn a_starving_voice_reports_its_underrun_once_and_counts_every_period() {
        let (mut mixer, mut control) = unity_mixer();
        let (_feed, src) = source(16);
        let id = control.add_voice(BusId::Speech, src, 1.0, None).unwrap();
        let mut out = [0.0; 2];
        for _ in 0..EVENT_CAPACITY + 10 {
            mixer.render(&mut out);
        }
        assert_eq!(control.underruns(), EVENT_CAPACITY as u64 + 10);
        assert_eq!(control.poll(), vec![MixerEvent::Underrun { id, frames: 1 }]);
        assert_eq!(
            control.dropped_events(),
            0,
            "the queue stays free for a voice's end"
        );
    }

    #[test]
    fn both_halves_can_move_to_their_threads() {
        fn send<T: Send>() {}
        send::<Mixer>();
        send::<MixerControl>();
        let (mixer, control) = mixer(RATE, PERIOD);
        assert_eq!((mixer.sample_rate(), control.sample_rate()), (RATE, RATE));
        assert!(!control.mixer_dropped());
        drop(mixer);
        assert!(control.mixer_dropped());
    }

    #[test]
    fn rendering_never_grows_a_buffer() {
        let (mut mixer, mut control) = unity_mixer();
        let capacities = |mixer: &Mixer| {
            let s = &mixer.scratch;
            let buffers = [
                &s.master, &s.duck, &s.bus[0], &s.bus[1], &s.bus[2], &s.voice, &s.samples,
            ];
            let mut seen: Vec<(usize, usize)> = buffers
                .iter()
                .map(|b| (b.capacity(), b.as_ptr() as usize))
                .collect();
            seen.push((mixer.voices.capacity(), mixer.voices.as_ptr() as usize));
            seen
        };
        let before = capacities(&mixer);
        let mut feeds = Vec::new();
        let mut ids = Vec::new();
        for i in 0..MAX_VOICES {
            let (mut feed, src) = source(1024);
            feed.constant(300 + i * 20, 0.01, -0.01);
            feeds.push(feed);
            let bus = BusId::ALL[i % 3];
            let fade = Some((500, Curve::EqualPowerIn));
            let start = if i % 4 == 1 { 777 } else { 0 };
            ids.push(control.add_voice_at(bus, src, 0.5, fade, start).unwrap());
        }
        control.duck(0.2, 700).unwrap();
        control.crossfade_at(ids[0], ids[3], 400, 300).unwrap();
        control.stop_voice_at(ids[4], 20, 5000).unwrap();
        control.pause_voice(ids[1], 50).unwrap();
        control.stop_voice(ids[2], 10).unwrap();
        feeds[5].finish();
        let mut out = vec![0.0; 4096 * CHANNELS];
        for frames in [64, 256, 4096, 1, 999] {
            mixer.render(&mut out[..frames * CHANNELS]);
        }
        assert_eq!(capacities(&mixer), before);
        let events = control.poll();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, MixerEvent::Underrun { .. }))
        );
        assert!(
            events
                .iter()
                .any(|e| matches!(e, MixerEvent::CrossfadeDone { .. }))
        );
    }
}
