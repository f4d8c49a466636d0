//! `say <text>`, `speech stop [id]`, `speech status`, `speech voices`,
//! `speech voice <name>`, `speech play <key>`: the droid's voice by hand.
//! `say` returns once the speech plays (not when it ends).

use serde_json::json;

use super::{Category, Command, CommandError, CommandSpec, Context, Reply};
use crate::speech::{SpeakOptions, SpeechError, SpeechState};

/// Declaration of `say`.
pub static SAY: CommandSpec = CommandSpec {
    name: "say",
    aliases: &["speak"],
    shortcuts: &[],
    usage: "say <text>",
    description: "speak the text now (the music ducks under it; the eyes follow the voice)",
    category: Category::Speech,
    min_args: 1,
    max_args: None,
    parse: |_, args| Ok(Command::Speech(Speech::Say(args.join(" ")))),
};

/// Declaration of `speech stop`.
pub static STOP: CommandSpec = CommandSpec {
    name: "speech stop",
    aliases: &["stop speech", "shut up"],
    shortcuts: &[],
    usage: "speech stop [speech-id]",
    description: "stop speaking (one utterance by its id, or all)",
    category: Category::Speech,
    min_args: 0,
    max_args: Some(1),
    parse: |_, args| Ok(Command::Speech(Speech::Stop(args.into_iter().next()))),
};

/// Declaration of `speech status`.
pub static STATUS: CommandSpec = CommandSpec {
    name: "speech status",
    aliases: &["speech"],
    shortcuts: &[],
    usage: "speech status",
    description: "the speech engine, voice, what is being said and the cache",
    category: Category::Speech,
    min_args: 0,
    max_args: Some(0),
    parse: |_, _| Ok(Command::Speech(Speech::Status)),
};

/// Declaration of `speech voices`.
pub static VOICES: CommandSpec = CommandSpec {
    name: "speech voices",
    aliases: &[],
    shortcuts: &[],
    usage: "speech voices [filter]",
    description: "the voices the speech engine offers (optionally only those containing the filter)",
    category: Category::Speech,
    min_args: 0,
    max_args: Some(1),
    parse: |_, args| Ok(Command::Speech(Speech::Voices(args.into_iter().next()))),
};

/// Declaration of `speech voice`.
pub static VOICE: CommandSpec = CommandSpec {
    name: "speech voice",
    aliases: &[],
    shortcuts: &[],
    usage: "speech voice <name>",
    description: "speak with another voice from now on (see 'speech voices')",
    category: Category::Speech,
    min_args: 1,
    max_args: Some(1),
    parse: |_, args| Ok(Command::Speech(Speech::Voice(args[0].clone()))),
};

/// Declaration of `speech play`.
pub static PLAY: CommandSpec = CommandSpec {
    name: "speech play",
    aliases: &["play cached speech"],
    shortcuts: &[],
    usage: "speech play <cache-key>",
    description: "play the speech clip cached under a key (from Speak or SpeakAudio with cache_key)",
    category: Category::Speech,
    min_args: 1,
    max_args: Some(1),
    parse: |_, args| Ok(Command::Speech(Speech::Play(args[0].clone()))),
};

/// A speech command.
#[derive(Debug)]
pub enum Speech {
    /// `say`.
    Say(String),
    /// `speech stop`.
    Stop(Option<String>),
    /// `speech status`.
    Status,
    /// `speech voices`.
    Voices(Option<String>),
    /// `speech voice`.
    Voice(String),
    /// `speech play`.
    Play(String),
}

impl From<SpeechError> for CommandError {
    fn from(e: SpeechError) -> Self {
        match e {
            SpeechError::Invalid(m) => CommandError::FailedPrecondition(m),
            SpeechError::NotFound(m) => CommandError::NotFound(m),
            SpeechError::Unavailable(m) | SpeechError::Busy(m) => CommandError::Unavailable(m),
            SpeechError::Stopped(m) => CommandError::FailedPrecondition(m),
        }
    }
}

impl Speech {
    pub(super) async fn apply(self, ctx: &Context<'_>) -> Result<Reply, CommandError> {
        let speech = &ctx.droid.speech;
        Ok(match self {
            Speech::Say(text) => {
                let spoken = speech.speak(&text, SpeakOptions::default()).await?;
                spoken_reply("saying", &spoken)
            }
            Speech::Play(key) => {
                let spoken = speech.play_cached(&key, SpeakOptions::default()).await?;
                spoken_reply(&format!("playing cached '{key}'"), &spoken)
            }
            Speech::Stop(id) => {
                let n = speech.stop(id).await?;
                Reply::with_data(
                    match n {
                        0 => "nothing was being said".to_string(),
                        1 => "speech stopped".to_string(),
                        n => format!("{n} utterances stopped"),
                    },
                    json!({ "stopped": n }),
                )
            }
            Speech::Status => status(&speech.state()),
            Speech::Voices(filter) => {
                let mut voices = speech.voices().await?;
                if let Some(f) = &filter {
                    let f = f.to_lowercase();
                    voices.retain(|v| {
                        v.name.to_lowercase().contains(&f)
                            || v.description.to_lowercase().contains(&f)
                    });
                }
                let lines: Vec<String> = voices
                    .iter()
                    .map(|v| format!("  {:<12} {} {}", v.name, v.description, v.gender))
                    .collect();
                Reply::with_data(
                    format!(
                        "{} voices (use one with 'speech voice <name>'; espeak-ng also takes `+variant`, such as en-us+robosoft):\n{}",
                        voices.len(),
                        lines.join("\n")
                    ),
                    json!({ "voices": voices }),
                )
            }
            Speech::Voice(voice) => {
                speech.set_voice(&voice).await?;
                Reply::with_data(
                    format!("speaking with voice {voice} from now on"),
                    json!({ "voice": voice }),
                )
            }
        })
    }
}

fn spoken_reply(what: &str, spoken: &crate::speech::Spoken) -> Reply {
    let secs = spoken.duration.as_secs_f64();
    Reply::with_data(
        format!(
            "{what} ({}{:.1} s{}): {}",
            if spoken.estimated { "about " } else { "" },
            secs,
            if spoken.cached {
                ", from the cache"
            } else {
                ""
            },
            spoken.id
        ),
        json!({
            "speech_id": spoken.id,
            "duration_ms": spoken.duration.as_millis() as u64,
            "estimated": spoken.estimated,
            "cached": spoken.cached,
            "engine": spoken.engine,
        }),
    )
}

/// `speech status` as text and data.
fn status(state: &SpeechState) -> Reply {
    let speaking = if state.speaking.is_empty() {
        "nothing".to_string()
    } else {
        state
            .speaking
            .iter()
            .map(|s| format!("{} \"{}\"", s.id, s.text))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = format!(
        "engine:   {}\nvoice:    {}\nspeaking: {speaking}\nspoken:   {} since start\ncache:    {} clips, {} KiB in {}\nproblem:  {}\nlast error: {}",
        state.engine,
        state.voice,
        state.utterances,
        state.cache_clips,
        state.cache_bytes / 1024,
        state.cache_dir.display(),
        state.problem.as_deref().unwrap_or("none"),
        state.last_error.as_deref().unwrap_or("none"),
    );
    Reply::with_data(text, serde_json::to_value(state).unwrap_or_default())
}
