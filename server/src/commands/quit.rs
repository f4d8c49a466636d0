//! `quit`: stop the droid's server gracefully, as SIGTERM would: open
//! requests finish, streams end, subsystems stop in reverse order. (The
//! original's `quit` did nothing.)

use super::{Category, Command, CommandError, CommandSpec, Context, Reply};

/// Declaration of `quit`.
pub static SPEC: CommandSpec = CommandSpec {
    name: "quit",
    aliases: &["shutdown"],
    shortcuts: &["q"],
    usage: "quit",
    description: "stop the droid's server (open requests finish first)",
    category: Category::System,
    min_args: 0,
    max_args: Some(0),
    parse,
};

/// `quit` takes nothing.
#[derive(Debug)]
pub struct Quit;

fn parse(_: &'static CommandSpec, _: Vec<String>) -> Result<Command, CommandError> {
    Ok(Command::Quit(Quit))
}

impl Quit {
    pub(super) fn apply(self, ctx: &Context<'_>) -> Result<Reply, CommandError> {
        if ctx.droid.shutdown.is_triggered() {
            return Err(CommandError::FailedPrecondition(
                "the server is already shutting down".into(),
            ));
        }
        ctx.droid.shutdown.trigger("quit command");
        Ok(Reply::text(
            "shutting down: open requests finish, then every subsystem stops",
        ))
    }
}
