//! The droid's console commands.
//!
//! Each command lives in its own file with the same shape (after mini-redis):
//! a `SPEC` that declares its words, aliases, shortcuts, usage, description,
//! category and argument counts; a `parse` that validates the arguments into a
//! struct; and an `apply` that does the work. Adding a command is one file,
//! one entry in [`all`] and one arm in [`Command::apply`]. A command whose
//! subsystem does not exist yet is simply not here.
//!
//! A line goes through [`Dispatcher::dispatch`]: split into words
//! ([`cantina::line`], quotes honoured),
//! match the longest command phrase, then single words, then shortcuts
//! ([`registry`]), check the argument count, parse, and only then run.

mod debug;
mod eye;
mod help;
mod mode;
mod music;
mod plan;
mod quit;
pub mod registry;
mod reset;
mod servo;
mod speech;
mod status;

use std::{fmt, sync::Arc};

use serde_json::json;
use tracing::info;

use crate::{bus::Topic, droid::Droid};
use cantina::line::{TokenizeError, split};
pub use plan::PlanCommands;
pub use registry::Registry;

/// The group a command is listed under in `help`, in display order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    /// Help, status, reset, quit.
    System,
    /// Behaviour modes.
    Modes,
    /// Music and sounds.
    Music,
    /// DJ mode.
    Dj,
    /// The LED eyes.
    Eyes,
    /// The servos.
    Servos,
    /// The droid's voice.
    Speech,
    /// Timed shows.
    Plans,
    /// Logging and diagnostics.
    Debug,
}

impl Category {
    /// Every category, in display order.
    pub const ALL: &'static [Category] = &[
        Category::System,
        Category::Modes,
        Category::Music,
        Category::Dj,
        Category::Eyes,
        Category::Servos,
        Category::Speech,
        Category::Plans,
        Category::Debug,
    ];

    /// The category's name, as `ListCommands` and `help` show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::System => "system",
            Category::Modes => "modes",
            Category::Music => "music",
            Category::Dj => "dj",
            Category::Eyes => "eyes",
            Category::Servos => "servos",
            Category::Speech => "speech",
            Category::Plans => "plans",
            Category::Debug => "debug",
        }
    }
}

/// A command's declaration: everything `help` shows and the dispatcher checks.
pub struct CommandSpec {
    /// Canonical name, one or more lower-case words (`eye pattern`).
    pub name: &'static str,
    /// Other full spellings, possibly multi-word.
    pub aliases: &'static [&'static str],
    /// Short forms, tried after every full spelling (`e` for `engage`).
    pub shortcuts: &'static [&'static str],
    /// Usage line with the arguments (`help [command]`).
    pub usage: &'static str,
    /// What the command does, in a sentence.
    pub description: &'static str,
    /// The group in `help`.
    pub category: Category,
    /// Fewest arguments.
    pub min_args: usize,
    /// Most arguments; `None` for no limit.
    pub max_args: Option<usize>,
    /// Validates the arguments into a runnable command; runs nothing.
    pub parse: fn(&'static CommandSpec, Vec<String>) -> Result<Command, CommandError>,
}

impl fmt::Debug for CommandSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CommandSpec")
            .field("name", &self.name)
            .finish()
    }
}

impl CommandSpec {
    /// Checks the argument count against the declaration.
    fn check_arity(&'static self, args: &[String]) -> Result<(), CommandError> {
        let n = args.len();
        let plural = |n: usize| if n == 1 { "argument" } else { "arguments" };
        let problem = match self.max_args {
            Some(0) if n > 0 => format!(
                "'{}' takes no arguments, but got {}",
                self.name,
                quote_list(args)
            ),
            Some(max) if n > max => format!(
                "'{}' takes at most {max} {}, but got {n}: {}",
                self.name,
                plural(max),
                quote_list(args)
            ),
            _ if n < self.min_args => format!(
                "'{}' needs {} {}{}",
                self.name,
                if self.max_args == Some(self.min_args) {
                    "exactly"
                } else {
                    "at least"
                },
                self.min_args,
                if n == 0 {
                    format!(" {}", plural(self.min_args))
                } else {
                    format!(" {}, but got {n}", plural(self.min_args))
                }
            ),
            _ => return Ok(()),
        };
        Err(CommandError::BadArgs {
            spec: self,
            problem,
        })
    }
}

fn quote_list(args: &[String]) -> String {
    args.iter()
        .map(|a| format!("'{a}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every command this server offers, in `help` order within each category.
pub fn all() -> Vec<&'static CommandSpec> {
    vec![
        &help::SPEC,
        &status::SPEC,
        &reset::SPEC,
        &quit::SPEC,
        &mode::ENGAGE,
        &mode::DISENGAGE,
        &mode::AMBIENT,
        &mode::IDLE,
        &music::PLAY,
        &music::STOP,
        &music::PAUSE,
        &music::RESUME,
        &music::NEXT,
        &music::QUEUE,
        &music::LIST,
        &music::INSTALL,
        &music::VOLUME,
        &music::CROSSFADE,
        &music::DUCK,
        &music::UNDUCK,
        &music::SOUND,
        &music::DJ_START,
        &music::DJ_STOP,
        &music::DJ_NEXT,
        &music::DJ_QUEUE,
        &eye::PATTERN,
        &eye::BRIGHTNESS,
        &eye::TEST,
        &eye::STATUS,
        &servo::MOVE,
        &servo::HOME,
        &servo::STATUS,
        &servo::LIST,
        &speech::SAY,
        &speech::STOP,
        &speech::STATUS,
        &speech::VOICES,
        &speech::VOICE,
        &speech::PLAY,
        &plan::RUN,
        &plan::LIST,
        &plan::STATUS,
        &plan::STOP,
        &plan::PAUSE,
        &plan::RESUME,
        &plan::PANIC,
        &debug::SPEC,
    ]
}

/// A parsed, validated command, ready to run.
#[derive(Debug)]
pub enum Command {
    /// `help [command]`.
    Help(help::Help),
    /// `status`.
    Status(status::Status),
    /// `engage`, `disengage`, `ambient`, `idle`.
    Mode(mode::SetMode),
    /// `reset`.
    Reset(reset::Reset),
    /// `quit`.
    Quit(quit::Quit),
    /// `debug level`.
    Debug(debug::DebugLevel),
    /// `eye pattern`, `eye brightness`, `eye test`, `eye status`.
    Eye(eye::Eye),
    /// The music and DJ commands.
    Music(music::Music),
    /// `move` and the servo commands.
    Servo(servo::Servo),
    /// `say` and the speech commands.
    Speech(speech::Speech),
    /// The plan commands and `panic`.
    Plan(plan::Plan),
}

impl Command {
    /// Runs the command.
    pub async fn apply(self, ctx: &Context<'_>) -> Result<Reply, CommandError> {
        match self {
            Command::Help(cmd) => cmd.apply(ctx),
            Command::Status(cmd) => cmd.apply(ctx),
            Command::Mode(cmd) => cmd.apply(ctx).await,
            Command::Reset(cmd) => cmd.apply(ctx).await,
            Command::Quit(cmd) => cmd.apply(ctx),
            Command::Debug(cmd) => cmd.apply(ctx),
            Command::Eye(cmd) => cmd.apply(ctx).await,
            Command::Music(cmd) => cmd.apply(ctx).await,
            Command::Servo(cmd) => cmd.apply(ctx).await,
            Command::Speech(cmd) => cmd.apply(ctx).await,
            Command::Plan(cmd) => cmd.apply(ctx).await,
        }
    }
}

/// What a command works with.
pub struct Context<'a> {
    /// The droid's state.
    pub droid: &'a Arc<Droid>,
    /// The command registry (for `help`).
    pub registry: &'a Registry,
}

/// A command's result.
#[derive(Clone, Debug, Default)]
pub struct Reply {
    /// For people, ready to print.
    pub message: String,
    /// For programs, when the command returns data.
    pub data: Option<serde_json::Value>,
}

impl Reply {
    /// A reply with only a message.
    pub fn text(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            data: None,
        }
    }

    /// A reply with a message and data.
    pub fn with_data(message: impl Into<String>, data: serde_json::Value) -> Self {
        Self {
            message: message.into(),
            data: Some(data),
        }
    }
}

/// Why a command line did not run (or failed while running).
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// Nothing but white space.
    #[error("empty command line\nType 'help' to list every command.")]
    Empty,
    /// The line cannot be split into words.
    #[error("{0}")]
    Syntax(#[from] TokenizeError),
    /// No command matches.
    #[error("{}", unknown_message(.input, .suggestions))]
    Unknown {
        /// What was typed in place of a command.
        input: String,
        /// The closest commands, best first.
        suggestions: Vec<&'static CommandSpec>,
    },
    /// The command matched but its arguments are wrong.
    #[error("{problem}\nusage: {}", .spec.usage)]
    BadArgs {
        /// The command.
        spec: &'static CommandSpec,
        /// What is wrong with the arguments.
        problem: String,
    },
    /// A subsystem cannot serve the command right now.
    #[error("{0}")]
    Unavailable(String),
    /// The command does not fit the droid's current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// What the command names does not exist (no track matches).
    #[error("{0}")]
    NotFound(String),
    /// A limit is reached (too many plans queued).
    #[error("{0}")]
    ResourceExhausted(String),
    /// The line is longer than [`MAX_LINE_CHARS`].
    #[error(
        "the command line has {chars} characters; a command line has at most {MAX_LINE_CHARS}: shorten it (say a long text in parts)"
    )]
    TooLong {
        /// How many characters the line has.
        chars: usize,
    },
}

/// The longest command line taken, in characters: well above any real
/// command (the longest text `say` speaks is `speech_max_chars`, 5000 by
/// default, and a plan's `command` step is at most 5000 characters), and low
/// enough that splitting, matching and suggesting stay cheap for a line sent
/// by anyone (a gRPC message may otherwise be 4 MiB).
pub const MAX_LINE_CHARS: usize = 16_384;

fn unknown_message(input: &str, suggestions: &[&'static CommandSpec]) -> String {
    let names: Vec<String> = suggestions
        .iter()
        .map(|s| format!("'{}'", s.name))
        .collect();
    match names.as_slice() {
        [] => format!(
            "unknown command '{input}'\nusage: <command> [arguments…]\nType 'help' to list every command."
        ),
        [one] => format!(
            "unknown command '{input}': did you mean {one}?\nusage: {}\nType 'help' to list every command.",
            suggestions[0].usage
        ),
        [init @ .., last] => format!(
            "unknown command '{input}': did you mean {} or {last}?\nusage: {}\nType 'help' to list every command.",
            init.join(", "),
            suggestions
                .iter()
                .map(|s| s.usage)
                .collect::<Vec<_>>()
                .join(" | ")
        ),
    }
}

/// Parses `line` against `registry` completely, running nothing: split it
/// into words, find the command, check its argument count and parse its
/// arguments. What [`Dispatcher::check`] does, without a droid (the fuzz
/// targets call it).
///
/// # Errors
///
/// The line's problem: too long, empty, not splittable, no such command, bad
/// arguments.
pub fn parse_line(
    registry: &Registry,
    line: &str,
) -> Result<(&'static CommandSpec, Vec<String>, Command), CommandError> {
    // Bytes first: a line of many bytes is long in characters too, and
    // counting stops early.
    if line.len() > MAX_LINE_CHARS {
        let chars = line.chars().count();
        if chars > MAX_LINE_CHARS {
            return Err(CommandError::TooLong { chars });
        }
    }
    let words = split(line)?;
    if words.is_empty() {
        return Err(CommandError::Empty);
    }
    let (spec, used) = registry.resolve(&words)?;
    let args = words[used..].to_vec();
    spec.check_arity(&args)?;
    let command = (spec.parse)(spec, args.clone())?;
    Ok((spec, args, command))
}

/// A successfully dispatched command.
#[derive(Debug)]
pub struct Dispatched {
    /// The canonical name of the command that ran.
    pub command: &'static str,
    /// Its arguments, after tokenizing.
    pub args: Vec<String>,
    /// Its result.
    pub reply: Reply,
}

/// Parses and runs console lines.
pub struct Dispatcher {
    /// The commands on offer.
    registry: Registry,
    /// What they act on.
    droid: Arc<Droid>,
}

impl Dispatcher {
    /// A dispatcher of every command in [`all`].
    pub fn new(droid: Arc<Droid>) -> Self {
        Self {
            registry: Registry::new(all()).expect("the built-in commands do not collide"),
            droid,
        }
    }

    /// The commands on offer.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Parses `line` completely, then runs it; nothing runs unless the whole
    /// line is valid. The outcome is published as `command.executed` or
    /// `command.failed`.
    pub async fn dispatch(&self, line: &str) -> Result<Dispatched, CommandError> {
        let result = self.run(line).await;
        let bus = &self.droid.bus;
        match &result {
            Ok(done) => bus.emit(
                Topic::CommandExecuted,
                "commands",
                json!({ "command": done.command, "args": done.args, "message": done.reply.message }),
            ),
            Err(error) => bus.emit(
                Topic::CommandFailed,
                "commands",
                json!({ "line": line, "error": error.to_string() }),
            ),
        };
        result
    }

    /// Parses `line` completely without running it: what `dispatch` would
    /// refuse before running anything.
    ///
    /// # Errors
    ///
    /// The line's problem, as `dispatch` would give it.
    pub fn check(&self, line: &str) -> Result<(), CommandError> {
        self.parse(line).map(drop)
    }

    fn parse(
        &self,
        line: &str,
    ) -> Result<(&'static CommandSpec, Vec<String>, Command), CommandError> {
        parse_line(&self.registry, line)
    }

    async fn run(&self, line: &str) -> Result<Dispatched, CommandError> {
        let (spec, args, command) = self.parse(line)?;
        info!(command = spec.name, ?args, "running command");
        let ctx = Context {
            droid: &self.droid,
            registry: &self.registry,
        };
        let reply = command.apply(&ctx).await?;
        Ok(Dispatched {
            command: spec.name,
            args,
            reply,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_parsed_without_a_droid_and_bounded_in_length() {
        let registry = Registry::new(all()).unwrap();
        let (spec, args, _) = parse_line(&registry, "eye pattern happy").unwrap();
        assert_eq!(
            (spec.name, args),
            ("eye pattern", vec!["happy".to_string()])
        );
        let longest = format!("say {}", "a".repeat(MAX_LINE_CHARS - 4));
        assert!(!matches!(
            parse_line(&registry, &longest),
            Err(CommandError::TooLong { .. })
        ));
        let e = parse_line(&registry, &format!("{longest}a")).unwrap_err();
        assert!(matches!(e, CommandError::TooLong { chars } if chars == MAX_LINE_CHARS + 1));
        assert!(e.to_string().contains("at most 16384"), "{e}");
        // Characters count, not bytes.
        let wide = format!("say {}", "é".repeat(MAX_LINE_CHARS - 4));
        assert!(!matches!(
            parse_line(&registry, &wide),
            Err(CommandError::TooLong { .. })
        ));
    }
}
