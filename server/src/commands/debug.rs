//! `debug level <component|all> <LEVEL>`: change what is logged at run time,
//! for one service (its targets in the service table) or everything. (Broken
//! in the original.)

use serde_json::json;

use super::{Category, Command, CommandError, CommandSpec, Context, Reply};
use crate::{logs::SERVICES, telemetry::FilterError};

/// Declaration of `debug level`.
pub static SPEC: CommandSpec = CommandSpec {
    name: "debug level",
    aliases: &["log level"],
    shortcuts: &[],
    usage: "debug level <component|all> <trace|debug|info|warn|error>",
    description: "change what one component (or all) logs, at run time",
    category: Category::Debug,
    min_args: 2,
    max_args: Some(2),
    parse,
};

/// A level change.
#[derive(Debug)]
pub struct DebugLevel {
    /// `None` for all components.
    component: Option<&'static str>,
    level: &'static str,
}

/// The component names people can give: the services of the table.
fn components() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = SERVICES.iter().map(|(_, name)| *name).collect();
    names.sort_unstable();
    names.dedup();
    names
}

fn parse(spec: &'static CommandSpec, args: Vec<String>) -> Result<Command, CommandError> {
    let bad = |problem: String| CommandError::BadArgs { spec, problem };
    let level = match args[1].to_ascii_lowercase().as_str() {
        "trace" => "trace",
        "debug" => "debug",
        "info" => "info",
        "warn" | "warning" => "warn",
        "error" => "error",
        other => {
            return Err(bad(format!(
                "'{other}' is not a level; use trace, debug, info, warn or error"
            )));
        }
    };
    let wanted = args[0].to_ascii_lowercase();
    let component = if wanted == "all" {
        None
    } else {
        match components().into_iter().find(|c| *c == wanted) {
            Some(found) => Some(found),
            None => {
                let names = components();
                let close = names
                    .iter()
                    .min_by_key(|c| strsim::levenshtein(c, &wanted))
                    .filter(|c| strsim::levenshtein(c, &wanted) <= 2)
                    .map(|c| format!("did you mean '{c}'? "))
                    .unwrap_or_default();
                return Err(bad(format!(
                    "unknown component '{wanted}'; {close}components: all, {}",
                    names.join(", ")
                )));
            }
        }
    };
    Ok(Command::Debug(DebugLevel { component, level }))
}

impl DebugLevel {
    pub(super) fn apply(self, ctx: &Context<'_>) -> Result<Reply, CommandError> {
        let directives = match self.component {
            None => self.level.to_string(),
            Some(component) => {
                let base = crate::telemetry::current_filter().unwrap_or_else(|| "info".into());
                SERVICES
                    .iter()
                    .filter(|(_, name)| *name == component)
                    .fold(base, |acc, (target, _)| {
                        format!("{acc},{target}={}", self.level)
                    })
            }
        };
        let previous =
            crate::telemetry::change_filter(&ctx.droid.bus, &directives).map_err(|e| match e {
                FilterError::Invalid { .. } => CommandError::FailedPrecondition(e.to_string()),
                FilterError::NotInstalled => CommandError::FailedPrecondition(e.to_string()),
            })?;
        Ok(Reply::with_data(
            format!("log filter: {previous} → {directives}"),
            json!({ "filter": directives, "previous": previous }),
        ))
    }
}
