//! `reset`: restart every subsystem (stop in reverse order, start in order)
//! and go back through STARTUP to IDLE, with the server staying up. The
//! original only shut down here.

use serde_json::json;

use super::{Category, Command, CommandError, CommandSpec, Context, Reply};

/// Declaration of `reset`.
pub static SPEC: CommandSpec = CommandSpec {
    name: "reset",
    aliases: &["restart"],
    shortcuts: &["r"],
    usage: "reset",
    description: "restart every subsystem and return to IDLE; the server stays up",
    category: Category::System,
    min_args: 0,
    max_args: Some(0),
    parse,
};

/// `reset` takes nothing.
#[derive(Debug)]
pub struct Reset;

fn parse(_: &'static CommandSpec, _: Vec<String>) -> Result<Command, CommandError> {
    Ok(Command::Reset(Reset))
}

impl Reset {
    pub(super) async fn apply(self, ctx: &Context<'_>) -> Result<Reply, CommandError> {
        let change = ctx
            .droid
            .reset()
            .await
            .map_err(|e| CommandError::Unavailable(format!("reset failed: {e}")))?;
        let names = ctx.droid.supervisor.names();
        let restarted = if names.is_empty() {
            "no subsystems to restart".to_string()
        } else {
            format!("restarted {}", names.join(", "))
        };
        Ok(Reply::with_data(
            format!(
                "reset: {restarted}; mode {} → STARTUP → {}",
                change.from, change.to
            ),
            json!({
                "restarted": names,
                "previous_mode": change.from.as_str(),
                "mode": change.to.as_str(),
            }),
        ))
    }
}
