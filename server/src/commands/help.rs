//! `help [command]`: every command grouped by category with its shortcuts, or
//! one command in detail.

use serde_json::json;

use super::{Category, Command, CommandError, CommandSpec, Context, Reply};

/// Declaration of `help`.
pub static SPEC: CommandSpec = CommandSpec {
    name: "help",
    aliases: &[],
    shortcuts: &["h", "?"],
    usage: "help [command]",
    description: "list every command by category, or describe one command",
    category: Category::System,
    min_args: 0,
    max_args: None,
    parse,
};

/// `help`, with the command asked about, if any.
#[derive(Debug)]
pub struct Help {
    /// The words naming the command to describe; empty for the overview.
    topic: Vec<String>,
}

fn parse(_: &'static CommandSpec, args: Vec<String>) -> Result<Command, CommandError> {
    Ok(Command::Help(Help { topic: args }))
}

/// A command as data, for `help` and `ListCommands` alike.
pub fn describe(spec: &CommandSpec) -> serde_json::Value {
    json!({
        "name": spec.name,
        "usage": spec.usage,
        "description": spec.description,
        "category": spec.category.as_str(),
        "aliases": spec.aliases.iter().chain(spec.shortcuts).collect::<Vec<_>>(),
        "shortcuts": spec.shortcuts,
    })
}

impl Help {
    pub(super) fn apply(self, ctx: &Context<'_>) -> Result<Reply, CommandError> {
        if self.topic.is_empty() {
            Ok(overview(ctx.registry.specs()))
        } else {
            let (spec, _) = ctx.registry.resolve(&self.topic)?;
            Ok(detail(spec))
        }
    }
}

fn overview(specs: &[&'static CommandSpec]) -> Reply {
    let usage_width = specs.iter().map(|s| s.usage.len()).max().unwrap_or(0);
    let short_width = specs
        .iter()
        .map(|s| s.shortcuts.join(", ").len())
        .max()
        .unwrap_or(0);
    let mut text = String::from("DJ-R3X console commands\n");
    for &category in Category::ALL {
        let in_category: Vec<_> = specs.iter().filter(|s| s.category == category).collect();
        if in_category.is_empty() {
            continue;
        }
        text.push_str(&format!("\n{}\n", category.as_str()));
        for spec in in_category {
            text.push_str(&format!(
                "  {:usage_width$}  {:short_width$}  {}\n",
                spec.usage,
                spec.shortcuts.join(", "),
                spec.description
            ));
        }
    }
    let shortcuts: Vec<String> = specs
        .iter()
        .filter(|s| !s.shortcuts.is_empty())
        .map(|s| format!("{} {}", s.shortcuts.join("/"), s.name))
        .collect();
    text.push_str(&format!("\nshortcuts: {}\n", shortcuts.join(", ")));
    if specs.iter().any(|s| s.category == Category::Eyes) {
        text.push_str(&format!(
            "eye patterns: {}\n",
            crate::eyes::Pattern::names()
        ));
    }
    text.push_str("Type 'help <command>' for details.");
    let data = json!({
        "categories": Category::ALL.iter().map(|c| c.as_str()).collect::<Vec<_>>(),
        "commands": specs.iter().map(|s| describe(s)).collect::<Vec<_>>(),
        "eye_patterns": crate::eyes::Pattern::ALL.map(|p| p.as_str()),
    });
    Reply::with_data(text, data)
}

fn detail(spec: &CommandSpec) -> Reply {
    let mut text = format!("{}: {}\nusage: {}", spec.name, spec.description, spec.usage);
    let aliases: Vec<&str> = spec.aliases.iter().chain(spec.shortcuts).copied().collect();
    if !aliases.is_empty() {
        text.push_str(&format!("\naliases: {}", aliases.join(", ")));
    }
    text.push_str(&format!("\ncategory: {}", spec.category.as_str()));
    Reply::with_data(text, describe(spec))
}
