//! What the audio's requests did, as data. Each method of [`Audio`](super::Audio)
//! answers with one of these: speech and shows read them, and the console
//! puts them into words (`commands/music.rs`). Times on the sample clock are
//! frames rendered by the output ([`Audio::clock`](super::Audio::clock)).

use std::{path::PathBuf, time::Duration};

use tokio::sync::oneshot;

use super::{
    library::{Skipped, Track},
    mixer::{Source, VoiceId, VoiceStart},
};

/// A track that started: `play music`, `next music`, `crossfade`, `dj next`,
/// or DJ mode's first track.
#[derive(Clone, Debug, PartialEq)]
pub struct Started {
    /// The track; its duration comes from the decoder when the file's headers
    /// did not say.
    pub track: Track,
    /// Its place in the library (0-based, so `list music` shows it as
    /// `index + 1`); `None` when a rescan dropped it since it was queued.
    pub index: Option<usize>,
    /// The sample-clock frame its first sample plays on, from
    /// [`Audio::play_at`](super::Audio::play_at) and
    /// [`Audio::crossfade_at`](super::Audio::crossfade_at) (and `play`,
    /// `crossfade`); for the tracks `next`, `dj next` and DJ mode start, the
    /// clock when it was handed over (it sounds from the output's next period).
    pub at_frame: u64,
    /// What became of the track that played before.
    pub transition: Transition,
}

impl Started {
    /// The crossfade into the track, if it started with one.
    pub fn crossfade(&self) -> Option<&CrossfadeStarted> {
        match &self.transition {
            Transition::Crossfade(crossfade) => Some(crossfade),
            _ => None,
        }
    }
}

/// How a new track took over from the one before.
#[derive(Clone, Debug, PartialEq)]
pub enum Transition {
    /// Nothing was playing.
    Silence,
    /// The track before (playing, or paused) stopped with a short fade.
    Cut {
        /// The track that stopped.
        from: Track,
    },
    /// The track before fades out as the new one fades in.
    Crossfade(CrossfadeStarted),
}

/// A crossfade under way: where it ends is where a show can pick up.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossfadeStarted {
    /// The track fading out.
    pub from: Track,
    /// How long the fade lasts.
    pub length: Duration,
    /// The sample-clock frame at which the new track plays alone: its
    /// length after `at_frame`.
    pub ends_at_frame: u64,
    /// The same moment as time on the sample clock.
    pub ends_at: Duration,
}

/// What `stop music` did.
#[derive(Clone, Debug, PartialEq)]
pub enum Stopped {
    /// The track stopped with a short fade.
    Track {
        /// The track that stopped.
        track: Track,
        /// Where in it it stopped.
        position: Duration,
        /// DJ mode was on, and stopping ended it.
        dj_ended: bool,
    },
    /// No music was playing: nothing changed.
    NothingPlaying,
}

/// What `pause music` did.
#[derive(Clone, Debug, PartialEq)]
pub struct Paused {
    /// The track that holds its place.
    pub track: Track,
    /// Where in it it holds.
    pub position: Duration,
    /// It was paused already: nothing changed.
    pub already: bool,
}

/// What `resume music` did.
#[derive(Clone, Debug, PartialEq)]
pub struct Resumed {
    /// The track that carries on.
    pub track: Track,
    /// Where in it it carries on.
    pub position: Duration,
    /// It was playing already: nothing changed.
    pub already: bool,
}

/// A track added to the queue (`queue music`, `dj queue`).
#[derive(Clone, Debug, PartialEq)]
pub struct Queued {
    /// The track.
    pub track: Track,
    /// Its place in the queue, 1 playing next.
    pub position: usize,
}

/// A change of the master volume (0–100).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VolumeChange {
    /// The volume before.
    pub before: u8,
    /// The volume now (it glides there over 100 ms).
    pub after: u8,
}

/// The music lowered under something (speech, usually).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Ducked {
    /// The level it goes to, 0.0 (silent) to 1.0 (full).
    pub level: f32,
    /// How long it takes to get there.
    pub fade: Duration,
}

/// The music brought back to full level.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Unducked {
    /// The level it was ducked to; `None`: it was not ducked.
    pub previous: Option<f32>,
    /// How long it takes to come back.
    pub fade: Duration,
}

/// The music library (`list music`).
#[derive(Clone, Debug, PartialEq)]
pub struct Library {
    /// The folder the tracks come from.
    pub dir: PathBuf,
    /// The tracks, in `list music`'s order (numbered from 1).
    pub tracks: Vec<Track>,
    /// The index in `tracks` of the track playing (or paused), if any.
    pub playing: Option<usize>,
}

/// What `install music` copied; the library is being rescanned.
#[derive(Clone, Debug, PartialEq)]
pub struct Installed {
    /// The folder (or file) installed from.
    pub from: PathBuf,
    /// The new files in the library.
    pub copied: Vec<PathBuf>,
    /// Files not copied, and why.
    pub skipped: Vec<Skipped>,
}

/// A sound effect that started over the music.
#[derive(Clone, Debug, PartialEq)]
pub struct SoundStarted {
    /// The file playing.
    pub path: PathBuf,
    /// How long it plays, when the file says.
    pub duration: Option<Duration>,
    /// The sample-clock frame its first sample plays on.
    pub at_frame: u64,
}

/// The mode chime that started on the effects bus.
#[derive(Clone, Debug, PartialEq)]
pub struct Chimed {
    /// How long it sounds.
    pub length: Duration,
    /// The sample clock when it started (it sounds from the output's next
    /// period).
    pub at_frame: u64,
}

/// What `dj start` did.
#[derive(Clone, Debug, PartialEq)]
pub struct DjStarted {
    /// DJ mode was on already: nothing changed.
    pub already: bool,
    /// The track DJ mode started, when nothing was playing (or the music was
    /// paused).
    pub started: Option<Started>,
}

/// What `dj stop` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DjStopped {
    /// DJ mode was on (the current track now plays to its end); `false`:
    /// nothing changed.
    pub was_on: bool,
}

/// An utterance for the speech bus: its samples (interleaved stereo at the
/// output's rate, filled as it is synthesized), how the music ducks under
/// it, and where its end is told.
pub struct SpeechClip {
    /// The samples.
    pub source: Source,
    /// The music's level while it plays; the default duck level if `None`.
    pub duck_level: Option<f32>,
    /// How long the music takes to duck and to come back; the default fade if `None`.
    pub duck_fade: Option<Duration>,
    /// Told when the utterance has played out or was stopped.
    pub ended: oneshot::Sender<SpeechEnd>,
}

/// How an utterance ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpeechEnd {
    /// Frames of it that played.
    pub frames_played: u64,
    /// `true`: stopped (`speech stop`, a new utterance in its place); `false`: played out.
    pub stopped: bool,
}

/// An utterance the mixer took.
#[derive(Clone, Debug)]
pub struct SpeechStarted {
    /// Its voice in the mixer.
    pub voice: VoiceId,
    /// Where its first sample plays on the sample clock, once the output took it.
    pub start: VoiceStart,
    /// The sample clock when it was handed over (it sounds from the output's next period).
    pub at_frame: u64,
    /// The music's level under it.
    pub duck_level: f32,
}

/// What `speech stop` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpeechStopped {
    /// Utterances fading out.
    pub stopped: usize,
}
