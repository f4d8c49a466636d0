//! `engage`, `disengage`, `ambient`, `idle`: switch the droid's mode.
//! Asking for the mode it is already in changes nothing and says so.

use serde_json::json;

use super::{Category, Command, CommandError, CommandSpec, Context, Reply};
use crate::modes::Mode;

const fn mode_spec(
    name: &'static str,
    shortcut: &'static [&'static str],
    description: &'static str,
) -> CommandSpec {
    CommandSpec {
        name,
        aliases: &[],
        shortcuts: shortcut,
        usage: name,
        description,
        category: Category::Modes,
        min_args: 0,
        max_args: Some(0),
        parse,
    }
}

/// Declaration of `engage`.
pub static ENGAGE: CommandSpec = mode_spec(
    "engage",
    &["e"],
    "switch to INTERACTIVE mode: the droid talks with people",
);
/// Declaration of `disengage`.
pub static DISENGAGE: CommandSpec = mode_spec(
    "disengage",
    &["d"],
    "leave interaction and rest in IDLE mode",
);
/// Declaration of `ambient`.
pub static AMBIENT: CommandSpec = mode_spec(
    "ambient",
    &["a"],
    "switch to AMBIENT mode: the background show",
);
/// Declaration of `idle`.
pub static IDLE: CommandSpec = mode_spec("idle", &["i"], "switch to IDLE mode: the droid rests");

/// A request for a mode.
#[derive(Debug)]
pub struct SetMode {
    /// The mode asked for.
    target: Mode,
}

fn parse(spec: &'static CommandSpec, _: Vec<String>) -> Result<Command, CommandError> {
    let target = match spec.name {
        "engage" => Mode::Interactive,
        "ambient" => Mode::Ambient,
        _ => Mode::Idle,
    };
    Ok(Command::Mode(SetMode { target }))
}

impl SetMode {
    pub(super) async fn apply(self, ctx: &Context<'_>) -> Result<Reply, CommandError> {
        let change = ctx
            .droid
            .modes
            .set(self.target)
            .await
            .map_err(|e| CommandError::Unavailable(e.to_string()))?;
        Ok(Reply::with_data(
            change.describe(),
            json!({
                "mode": change.to.as_str(),
                "previous_mode": change.from.as_str(),
                "changed": change.changed(),
            }),
        ))
    }
}
