//! The music commands: `play music`, `stop music`, `pause music`, `resume
//! music`, `next music`, `queue music`, `list music`, `install music`,
//! `volume`, `crossfade`, `duck`, `unduck`, `play sound`, and DJ mode
//! (`dj start`, `dj stop`, `dj next`, `dj queue`). Each declares its words
//! here, hands the work to the audio's handle, and puts what it did into
//! words (and data) for the console.

use std::{path::PathBuf, time::Duration};

use serde_json::{Value, json};

use super::{Category, Command, CommandError, CommandSpec, Context, Reply};
use crate::audio::{
    AudioError, DjStarted, DjStopped, Ducked, Installed, Library, Paused, Queued, Resumed,
    SoundStarted, Started, Stopped, Transition, Unducked, VolumeChange,
};

/// A music command, parsed and checked.
#[derive(Debug)]
pub enum Music {
    Play(String),
    Stop,
    Pause,
    Resume,
    Next,
    Queue(String),
    List,
    Install(PathBuf),
    Volume(u8),
    Crossfade(String, Option<f64>),
    Duck(Option<f32>, Option<u32>),
    Unduck(Option<u32>),
    Sound(String),
    DjStart,
    DjStop,
    DjNext,
    DjQueue(String),
}

macro_rules! spec {
    ($name:ident, $words:literal, $aliases:expr, $shortcuts:expr, $usage:literal, $desc:literal, $cat:ident, $min:literal, $max:expr, $parse:expr) => {
        #[doc = concat!("Declaration of `", $words, "`.")]
        pub static $name: CommandSpec = CommandSpec {
            name: $words,
            aliases: $aliases,
            shortcuts: $shortcuts,
            usage: $usage,
            description: $desc,
            category: Category::$cat,
            min_args: $min,
            max_args: $max,
            parse: $parse,
        };
    };
}

/// The rest of the line as one query (`play music cantina band`).
fn query(args: &[String]) -> String {
    args.join(" ")
}

spec!(
    PLAY,
    "play music",
    &["play"],
    &["p"],
    "play music <number|title|query>",
    "play a track: its number in 'list music', its exact title, or the best match",
    Music,
    1,
    None,
    |_, args| Ok(Command::Music(Music::Play(query(&args))))
);
spec!(
    STOP,
    "stop music",
    &["stop"],
    &["s"],
    "stop music",
    "stop the music (and DJ mode)",
    Music,
    0,
    Some(0),
    |_, _| Ok(Command::Music(Music::Stop))
);
spec!(
    PAUSE,
    "pause music",
    &["pause"],
    &[],
    "pause music",
    "pause the music where it is",
    Music,
    0,
    Some(0),
    |_, _| Ok(Command::Music(Music::Pause))
);
spec!(
    RESUME,
    "resume music",
    &["resume"],
    &[],
    "resume music",
    "carry on from where the music was paused",
    Music,
    0,
    Some(0),
    |_, _| Ok(Command::Music(Music::Resume))
);
spec!(
    NEXT,
    "next music",
    &["next"],
    &["n"],
    "next music",
    "play the next queued track, or a random other one",
    Music,
    0,
    Some(0),
    |_, _| Ok(Command::Music(Music::Next))
);
spec!(
    QUEUE,
    "queue music",
    &["queue"],
    &[],
    "queue music <number|title|query>",
    "add a track to the queue",
    Music,
    1,
    None,
    |_, args| Ok(Command::Music(Music::Queue(query(&args))))
);
spec!(
    LIST,
    "list music",
    &["list"],
    &["l"],
    "list music",
    "the numbered track list",
    Music,
    0,
    Some(0),
    |_, _| Ok(Command::Music(Music::List))
);
spec!(
    INSTALL,
    "install music",
    &[],
    &[],
    "install music <folder>",
    "copy the audio files of a folder into the library and rescan",
    Music,
    1,
    Some(1),
    |_, args| Ok(Command::Music(Music::Install(PathBuf::from(&args[0]))))
);
spec!(
    VOLUME,
    "volume",
    &[],
    &["v"],
    "volume <0–100>",
    "set the master volume",
    Music,
    1,
    Some(1),
    parse_volume
);
spec!(
    CROSSFADE,
    "crossfade",
    &[],
    &["xf"],
    "crossfade <number|title|query> [seconds]",
    "fade from the current track into another, equal-power (3 s unless told)",
    Music,
    1,
    None,
    parse_crossfade
);
spec!(
    DUCK,
    "duck",
    &[],
    &[],
    "duck [level 0.0–1.0] [fade_ms]",
    "lower the music to a level (0.5) over a fade (500 ms)",
    Music,
    0,
    Some(2),
    parse_duck
);
spec!(
    UNDUCK,
    "unduck",
    &[],
    &[],
    "unduck [fade_ms]",
    "bring the music back to full level over a fade (500 ms)",
    Music,
    0,
    Some(1),
    parse_unduck
);
spec!(
    SOUND,
    "play sound",
    &[],
    &[],
    "play sound <file>",
    "play a sound effect over the music",
    Music,
    1,
    None,
    |_, args| Ok(Command::Music(Music::Sound(query(&args))))
);
spec!(
    DJ_START,
    "dj start",
    &[],
    &["dj"],
    "dj start",
    "DJ mode: random tracks, crossfading on their own",
    Dj,
    0,
    Some(0),
    |_, _| Ok(Command::Music(Music::DjStart))
);
spec!(
    DJ_STOP,
    "dj stop",
    &[],
    &["djs"],
    "dj stop",
    "end DJ mode (the track plays to its end)",
    Dj,
    0,
    Some(0),
    |_, _| Ok(Command::Music(Music::DjStop))
);
spec!(
    DJ_NEXT,
    "dj next",
    &[],
    &["djn"],
    "dj next",
    "crossfade into the next track now",
    Dj,
    0,
    Some(0),
    |_, _| Ok(Command::Music(Music::DjNext))
);
spec!(
    DJ_QUEUE,
    "dj queue",
    &[],
    &["djq"],
    "dj queue <number|title|query>",
    "play this track next in DJ mode",
    Dj,
    1,
    None,
    |_, args| Ok(Command::Music(Music::DjQueue(query(&args))))
);

fn parse_volume(spec: &'static CommandSpec, args: Vec<String>) -> Result<Command, CommandError> {
    match args[0].parse::<u8>() {
        Ok(v) if v <= 100 => Ok(Command::Music(Music::Volume(v))),
        _ => Err(CommandError::BadArgs {
            spec,
            problem: format!(
                "'{}' is not a volume; use a whole number from 0 to 100",
                args[0]
            ),
        }),
    }
}

fn parse_crossfade(spec: &'static CommandSpec, args: Vec<String>) -> Result<Command, CommandError> {
    // A last word that is a number is the length, unless it is the only word
    // (then it is a track number).
    let (track, seconds) = match args.split_last() {
        Some((last, rest)) if !rest.is_empty() && last.parse::<f64>().is_ok() => {
            let seconds: f64 = last.parse().expect("checked");
            if !(seconds > 0.0 && seconds <= 600.0) {
                return Err(CommandError::BadArgs {
                    spec,
                    problem: format!(
                        "a crossfade of {last} s is out of range; use 0.1 to 600 seconds"
                    ),
                });
            }
            (query(rest), Some(seconds))
        }
        _ => (query(&args), None),
    };
    Ok(Command::Music(Music::Crossfade(track, seconds)))
}

fn parse_level(spec: &'static CommandSpec, text: &str) -> Result<f32, CommandError> {
    match text.parse::<f32>() {
        Ok(level) if (0.0..=1.0).contains(&level) => Ok(level),
        _ => Err(CommandError::BadArgs {
            spec,
            problem: format!(
                "'{text}' is not a level; use a number from 0.0 (silent) to 1.0 (full)"
            ),
        }),
    }
}

fn parse_fade(spec: &'static CommandSpec, text: &str) -> Result<u32, CommandError> {
    match text.parse::<u32>() {
        Ok(ms) if ms <= 60_000 => Ok(ms),
        _ => Err(CommandError::BadArgs {
            spec,
            problem: format!("'{text}' is not a fade time; use whole milliseconds from 0 to 60000"),
        }),
    }
}

fn parse_duck(spec: &'static CommandSpec, args: Vec<String>) -> Result<Command, CommandError> {
    let level = args.first().map(|a| parse_level(spec, a)).transpose()?;
    let fade = args.get(1).map(|a| parse_fade(spec, a)).transpose()?;
    Ok(Command::Music(Music::Duck(level, fade)))
}

fn parse_unduck(spec: &'static CommandSpec, args: Vec<String>) -> Result<Command, CommandError> {
    let fade = args.first().map(|a| parse_fade(spec, a)).transpose()?;
    Ok(Command::Music(Music::Unduck(fade)))
}

impl From<AudioError> for CommandError {
    fn from(e: AudioError) -> Self {
        match e {
            AudioError::Unavailable(m) => CommandError::Unavailable(m),
            AudioError::NotFound(m) => CommandError::NotFound(m),
            AudioError::Refused(m) => CommandError::FailedPrecondition(m),
        }
    }
}

impl Music {
    pub(super) async fn apply(self, ctx: &Context<'_>) -> Result<Reply, CommandError> {
        let audio = &ctx.droid.audio;
        let (message, data) = match self {
            Music::Play(q) => started(&audio.play(q).await?),
            Music::Stop => stopped(&audio.stop().await?),
            Music::Pause => paused(&audio.pause().await?),
            Music::Resume => resumed(&audio.resume().await?),
            Music::Next => started(&audio.next().await?),
            Music::Queue(q) => queued(&audio.queue(q).await?),
            Music::List => library(&audio.list().await?),
            Music::Install(dir) => installed(&audio.install(dir).await?),
            Music::Volume(v) => volume(&audio.volume(v).await?),
            Music::Crossfade(q, s) => started(&audio.crossfade(q, s).await?),
            Music::Duck(level, fade) => ducked(&audio.duck(level, fade).await?),
            Music::Unduck(fade) => unducked(&audio.unduck(fade).await?),
            Music::Sound(file) => sound(&audio.play_sound(file).await?),
            Music::DjStart => dj_started(&audio.dj_start().await?),
            Music::DjStop => dj_stopped(&audio.dj_stop().await?),
            Music::DjNext => started(&audio.dj_next().await?),
            Music::DjQueue(q) => queued(&audio.dj_queue(q).await?),
        };
        Ok(Reply::with_data(message, data))
    }
}

// --- what the audio did, in words and data -------------------------------------

/// `m:ss`.
fn clock_time(d: Duration) -> String {
    let secs = d.as_secs();
    format!("{}:{:02}", secs / 60, secs % 60)
}

/// Whole milliseconds, as the data gives fades.
fn millis(d: Duration) -> u64 {
    d.as_millis() as u64
}

/// What a track start says: "playing …", or the crossfade.
fn started_text(started: &Started) -> String {
    match &started.transition {
        Transition::Crossfade(crossfade) => format!(
            "crossfading from {} to {} over {:.1} s",
            crossfade.from.display_name(),
            started.track.display_name(),
            crossfade.length.as_secs_f64()
        ),
        Transition::Silence | Transition::Cut { .. } => {
            format!("playing {}", started.track.display_name())
        }
    }
}

fn started(started: &Started) -> (String, Value) {
    (started_text(started), json!({ "track": &started.track }))
}

fn stopped(stopped: &Stopped) -> (String, Value) {
    let message = match stopped {
        Stopped::Track {
            track, dj_ended, ..
        } => format!(
            "stopped {}{}",
            track.display_name(),
            if *dj_ended { " (DJ mode off)" } else { "" }
        ),
        Stopped::NothingPlaying => "no music is playing".into(),
    };
    (message, json!({ "state": "stopped" }))
}

fn paused(paused: &Paused) -> (String, Value) {
    let message = if paused.already {
        "the music is already paused".into()
    } else {
        format!(
            "paused {} at {}",
            paused.track.display_name(),
            clock_time(paused.position)
        )
    };
    (message, json!({ "state": "paused" }))
}

fn resumed(resumed: &Resumed) -> (String, Value) {
    let message = if resumed.already {
        "the music is already playing".into()
    } else {
        format!(
            "resumed {} at {}",
            resumed.track.display_name(),
            clock_time(resumed.position)
        )
    };
    (message, json!({ "state": "playing" }))
}

fn queued(queued: &Queued) -> (String, Value) {
    let Queued { track, position } = queued;
    (
        format!("queued {} (position {position})", track.display_name()),
        json!({ "track": track, "position": position }),
    )
}

/// The numbered track list, the one playing marked.
fn library(library: &Library) -> (String, Value) {
    let Library {
        dir,
        tracks,
        playing,
    } = library;
    let mut text = if tracks.is_empty() {
        format!(
            "the library at {} has no tracks; 'install music <dir>' adds some",
            dir.display()
        )
    } else {
        format!("{} tracks\n", tracks.len())
    };
    let width = tracks.len().to_string().len();
    for (i, track) in tracks.iter().enumerate() {
        text.push_str(&format!(
            "{}{:>width$}. {}{}\n",
            if *playing == Some(i) { "▶ " } else { "  " },
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
        json!({ "tracks": tracks, "library": dir }),
    )
}

fn installed(installed: &Installed) -> (String, Value) {
    let Installed {
        from,
        copied,
        skipped,
    } = installed;
    let mut message = format!("installed {} files from {}", copied.len(), from.display());
    for skipped in skipped {
        message.push_str(&format!(
            "\nskipped {}: {}",
            skipped.path.display(),
            skipped.reason
        ));
    }
    message.push_str("\nrescanning the library");
    (
        message,
        json!({
            "copied": copied,
            "skipped": skipped.iter().map(|s| json!({ "path": s.path, "reason": s.reason })).collect::<Vec<_>>(),
        }),
    )
}

fn volume(change: &VolumeChange) -> (String, Value) {
    (
        format!("volume {}", change.after),
        json!({ "volume": change.after, "previous": change.before }),
    )
}

fn ducked(ducked: &Ducked) -> (String, Value) {
    let Ducked { level, fade } = ducked;
    (
        format!("music ducked to {level} over {} ms", fade.as_millis()),
        json!({ "level": level, "fade_ms": millis(*fade) }),
    )
}

fn unducked(unducked: &Unducked) -> (String, Value) {
    let fade = unducked.fade;
    (
        match unducked.previous {
            Some(_) => format!("music back to full level over {} ms", fade.as_millis()),
            None => "the music was not ducked".to_string(),
        },
        json!({ "fade_ms": millis(fade) }),
    )
}

fn sound(sound: &SoundStarted) -> (String, Value) {
    (
        format!("playing sound {}", sound.path.display()),
        json!({ "path": sound.path }),
    )
}

fn dj_started(dj: &DjStarted) -> (String, Value) {
    let message = if dj.already {
        "DJ mode is already on".to_string()
    } else {
        let on = "DJ mode on: tracks crossfade on their own";
        match &dj.started {
            Some(started) => format!("{on}; {}", started_text(started)),
            None => on.to_string(),
        }
    };
    (message, json!({ "dj": true }))
}

fn dj_stopped(dj: &DjStopped) -> (String, Value) {
    (
        if dj.was_on {
            "DJ mode off: the current track plays to its end"
        } else {
            "DJ mode was not on"
        }
        .into(),
        json!({ "dj": false }),
    )
}

#[cfg(test)]
mod tests {
    use crate::audio::{CrossfadeStarted, library::Track};

    use super::*;

    fn track(artist: Option<&str>, title: &str, seconds: Option<u64>) -> Track {
        Track {
            path: PathBuf::from(format!("/music/{title}.flac")),
            title: title.to_string(),
            artist: artist.map(str::to_string),
            album: None,
            genre: None,
            duration: seconds.map(Duration::from_secs),
            format: "flac",
        }
    }

    fn started_with(transition: Transition) -> Started {
        Started {
            track: track(Some("Max Rebo"), "Lapti Nek", Some(6)),
            index: Some(2),
            at_frame: 48_000,
            transition,
        }
    }

    #[test]
    fn a_start_says_playing_or_the_crossfade() {
        let old = track(Some("Figrin Dan"), "Cantina Band", Some(6));
        let (text, data) = started(&started_with(Transition::Silence));
        assert_eq!(text, "playing Max Rebo - Lapti Nek");
        assert_eq!(data["track"]["title"], "Lapti Nek");
        assert_eq!(data["track"]["duration"], 6.0);
        let (text, _) = started(&started_with(Transition::Cut { from: old.clone() }));
        assert_eq!(text, "playing Max Rebo - Lapti Nek");
        let crossfade = started_with(Transition::Crossfade(CrossfadeStarted {
            from: old,
            length: Duration::from_millis(2_500),
            ends_at_frame: 168_000,
            ends_at: Duration::from_millis(3_500),
        }));
        assert_eq!(
            started(&crossfade).0,
            "crossfading from Figrin Dan - Cantina Band to Max Rebo - Lapti Nek over 2.5 s"
        );
        let (text, data) = dj_started(&DjStarted {
            already: false,
            started: Some(started_with(Transition::Silence)),
        });
        assert_eq!(
            text,
            "DJ mode on: tracks crossfade on their own; playing Max Rebo - Lapti Nek"
        );
        assert_eq!(data, json!({ "dj": true }));
    }

    #[test]
    fn the_list_numbers_the_tracks_and_marks_the_one_playing() {
        let tracks: Vec<Track> = (1..=10)
            .map(|i| track(None, &format!("Song {i}"), (i != 3).then_some(60 + i)))
            .collect();
        let (text, data) = library(&Library {
            dir: PathBuf::from("/music"),
            tracks,
            playing: Some(1),
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "10 tracks");
        assert_eq!(lines[1], "   1. Song 1  (1:01)");
        assert_eq!(lines[2], "▶  2. Song 2  (1:02)");
        assert_eq!(lines[3], "   3. Song 3");
        assert_eq!(lines[10], "  10. Song 10  (1:10)");
        assert_eq!(data["library"], "/music");
        assert_eq!(data["tracks"].as_array().unwrap().len(), 10);

        let (text, _) = library(&Library {
            dir: PathBuf::from("/music"),
            tracks: Vec::new(),
            playing: None,
        });
        assert_eq!(
            text,
            "the library at /music has no tracks; 'install music <dir>' adds some"
        );
    }

    #[test]
    fn pauses_and_stops_say_where() {
        let lapti = track(Some("Max Rebo"), "Lapti Nek", Some(6));
        let (text, data) = paused(&Paused {
            track: lapti.clone(),
            position: Duration::from_millis(65_900),
            already: false,
        });
        assert_eq!(text, "paused Max Rebo - Lapti Nek at 1:05");
        assert_eq!(data, json!({ "state": "paused" }));
        let (text, data) = resumed(&Resumed {
            track: lapti.clone(),
            position: Duration::ZERO,
            already: true,
        });
        assert_eq!(text, "the music is already playing");
        assert_eq!(data, json!({ "state": "playing" }));
        let (text, data) = stopped(&Stopped::Track {
            track: lapti,
            position: Duration::from_secs(3),
            dj_ended: true,
        });
        assert_eq!(text, "stopped Max Rebo - Lapti Nek (DJ mode off)");
        assert_eq!(data, json!({ "state": "stopped" }));
    }

    #[test]
    fn levels_and_volumes_keep_their_numbers() {
        let (text, data) = volume(&VolumeChange {
            before: 70,
            after: 40,
        });
        assert_eq!(text, "volume 40");
        assert_eq!(data, json!({ "volume": 40, "previous": 70 }));
        let (text, data) = ducked(&Ducked {
            level: 0.3,
            fade: Duration::from_millis(250),
        });
        assert_eq!(text, "music ducked to 0.3 over 250 ms");
        assert_eq!(data, json!({ "level": 0.3f32, "fade_ms": 250 }));
        let (text, _) = unducked(&Unducked {
            previous: None,
            fade: Duration::from_millis(500),
        });
        assert_eq!(text, "the music was not ducked");
    }
}
