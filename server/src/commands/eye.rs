//! `eye pattern <name>`, `eye brightness <0.0–1.0>`, `eye test [stop]`,
//! `eye status`: the eyes by hand. Each returns once the board confirmed
//! (or refused) the change; `eye test` runs in the background.

use serde_json::json;

use super::{Category, Command, CommandError, CommandSpec, Context, Reply};
use crate::eyes::{
    EyesError, EyesState, Pattern,
    protocol::{brightness_level, parse_brightness},
};

/// Declaration of `eye pattern`.
pub static PATTERN: CommandSpec = CommandSpec {
    name: "eye pattern",
    aliases: &["eyes pattern"],
    shortcuts: &[],
    usage: "eye pattern <idle|startup|engaged|listening|thinking|speaking|happy|sad|angry|surprised|error|custom>",
    description: "show a pattern on the eyes",
    category: Category::Eyes,
    min_args: 1,
    max_args: Some(1),
    parse: parse_pattern,
};

/// Declaration of `eye brightness`.
pub static BRIGHTNESS: CommandSpec = CommandSpec {
    name: "eye brightness",
    aliases: &["eyes brightness"],
    shortcuts: &[],
    usage: "eye brightness <0.0–1.0>",
    description: "set the eyes' brightness (0.0 off, 1.0 full)",
    category: Category::Eyes,
    min_args: 1,
    max_args: Some(1),
    parse: parse_brightness_command,
};

/// Declaration of `eye test`.
pub static TEST: CommandSpec = CommandSpec {
    name: "eye test",
    aliases: &["eyes test"],
    shortcuts: &[],
    usage: "eye test [stop]",
    description: "cycle 8 patterns, 1 s each, then show the previous one again ('eye test stop' cancels)",
    category: Category::Eyes,
    min_args: 0,
    max_args: Some(1),
    parse: parse_test,
};

/// Declaration of `eye status`.
pub static STATUS: CommandSpec = CommandSpec {
    name: "eye status",
    aliases: &["eyes status", "eyes"],
    shortcuts: &[],
    usage: "eye status",
    description: "the eyes' port, connection, pattern, brightness and last error",
    category: Category::Eyes,
    min_args: 0,
    max_args: Some(0),
    parse: |_, _| Ok(Command::Eye(Eye::Status)),
};

/// An eyes command.
#[derive(Debug)]
pub enum Eye {
    /// `eye pattern`.
    Pattern(Pattern),
    /// `eye brightness`.
    Brightness(f64),
    /// `eye test`.
    Test,
    /// `eye test stop`.
    StopTest,
    /// `eye status`.
    Status,
}

fn parse_pattern(spec: &'static CommandSpec, args: Vec<String>) -> Result<Command, CommandError> {
    Pattern::parse(&args[0])
        .map(|p| Command::Eye(Eye::Pattern(p)))
        .map_err(|e| CommandError::BadArgs {
            spec,
            problem: e.to_string(),
        })
}

fn parse_brightness_command(
    spec: &'static CommandSpec,
    args: Vec<String>,
) -> Result<Command, CommandError> {
    parse_brightness(&args[0])
        .map(|b| Command::Eye(Eye::Brightness(b)))
        .map_err(|problem| CommandError::BadArgs { spec, problem })
}

fn parse_test(spec: &'static CommandSpec, args: Vec<String>) -> Result<Command, CommandError> {
    match args.first().map(|a| a.to_ascii_lowercase()).as_deref() {
        None => Ok(Command::Eye(Eye::Test)),
        Some("stop" | "cancel") => Ok(Command::Eye(Eye::StopTest)),
        Some(other) => Err(CommandError::BadArgs {
            spec,
            problem: format!("'{other}' is not an eye test option; 'eye test stop' cancels a test"),
        }),
    }
}

impl From<EyesError> for CommandError {
    fn from(e: EyesError) -> Self {
        match e {
            EyesError::Unavailable(_) | EyesError::Timeout { .. } => {
                CommandError::Unavailable(e.to_string())
            }
            EyesError::Rejected { .. } | EyesError::Conflict(_) => {
                CommandError::FailedPrecondition(e.to_string())
            }
        }
    }
}

impl Eye {
    pub(super) async fn apply(self, ctx: &Context<'_>) -> Result<Reply, CommandError> {
        let eyes = &ctx.droid.eyes;
        let reply = match self {
            Eye::Pattern(pattern) => {
                eyes.set_pattern(pattern).await?;
                let glyph = pattern.glyph() as char;
                Reply::with_data(
                    format!("eyes show {pattern}{}", virtual_mark(&eyes.state())),
                    json!({ "pattern": pattern.as_str(), "glyph": glyph.to_string() }),
                )
            }
            Eye::Brightness(brightness) => {
                eyes.set_brightness(brightness).await?;
                let level = brightness_level(brightness);
                Reply::with_data(
                    format!(
                        "eyes' brightness {brightness} (firmware level {level} of 9){}",
                        virtual_mark(&eyes.state())
                    ),
                    json!({ "brightness": brightness, "level": level }),
                )
            }
            Eye::Test => {
                let step = eyes.start_test().await?;
                let names: Vec<&str> = Pattern::TEST_CYCLE.iter().map(|p| p.as_str()).collect();
                Reply::with_data(
                    format!(
                        "eye test: {} ({} each), then the pattern from before; 'eye test stop' cancels",
                        names.join(", "),
                        humantime::format_duration(step)
                    ),
                    json!({ "patterns": names, "step_ms": step.as_millis() as u64 }),
                )
            }
            Eye::StopTest => {
                if eyes.stop_test().await? {
                    Reply::text("eye test cancelled; the previous pattern is back")
                } else {
                    Reply::text("no eye test is running")
                }
            }
            Eye::Status => status(&eyes.state()),
        };
        Ok(reply)
    }
}

fn virtual_mark(state: &EyesState) -> &'static str {
    if state.is_virtual {
        " (virtual eyes)"
    } else {
        ""
    }
}

/// `eye status` as text and data.
fn status(state: &EyesState) -> Reply {
    let connection = match (state.connected, state.is_virtual) {
        (true, true) => "virtual (no Arduino; patterns are emulated and logged)".to_string(),
        (true, false) => "connected".to_string(),
        (false, _) => "LOST (reconnecting)".to_string(),
    };
    let mut text = format!(
        "port:       {}\nconnection: {connection}\npattern:    {}{}\nbrightness: {} (level {})",
        state.port,
        state.pattern,
        if state.testing {
            " (eye test running)"
        } else {
            ""
        },
        state.brightness,
        brightness_level(state.brightness),
    );
    text.push_str(&format!(
        "\nlast error: {}",
        state.last_error.as_deref().unwrap_or("none")
    ));
    let data = serde_json::to_value(state).unwrap_or_default();
    Reply::with_data(text, data)
}
