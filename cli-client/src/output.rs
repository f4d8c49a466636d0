//! Everything the CLI prints: results on stdout, failures and warnings on
//! stderr.
//!
//! In text mode a result is the server's message and nothing else, so that
//! scripts can use it as is (the status table and event lines are laid out by
//! [`status`](crate::status) and [`event_line`](crate::event_line)); in JSON
//! mode it is the whole response in the proto3 JSON mapping, as grpcurl prints
//! it. Failures and notes are text on stderr in both modes, which keeps stdout
//! empty (or valid JSON) for pipelines.

use std::{
    fmt::{self, Write as _},
    io::{self, Write},
};

use cantina::v1::{
    CommandInfo, DispatchResponse, ListCommandsResponse, ListPlansResponse, PublishEventResponse,
    SetLogLevelResponse, StopAllResponse, SystemStatus, ValidatePlanResponse,
};

use crate::{args::Format, colour::Colours, error::Failure, plan_text, status};

/// Prints the result of a dispatched line.
pub fn response(
    out: &mut dyn Write,
    format: Format,
    response: &DispatchResponse,
) -> io::Result<()> {
    match format {
        Format::Text | Format::Raw => message(out, &response.message),
        Format::Json => json(out, &cantina::json::to_json(response)),
    }
}

/// Prints the command list: a table grouped by category, or the response as
/// JSON.
pub fn commands(
    out: &mut dyn Write,
    format: Format,
    list: &ListCommandsResponse,
) -> io::Result<()> {
    match format {
        Format::Text | Format::Raw => message(out, &commands_table(&list.commands)),
        Format::Json => json(out, &cantina::json::to_json(list)),
    }
}

/// Prints the state of the droid: the status layout, or the whole message as
/// JSON.
pub fn system_status(
    out: &mut dyn Write,
    format: Format,
    system: &SystemStatus,
    colours: Colours,
) -> io::Result<()> {
    match format {
        Format::Text | Format::Raw => message(out, &status::render(system, colours)),
        Format::Json => json(out, &cantina::json::to_json(system)),
    }
}

/// Prints the server's log filter before and after a change.
pub fn log_level(
    out: &mut dyn Write,
    format: Format,
    response: &SetLogLevelResponse,
) -> io::Result<()> {
    match format {
        Format::Text | Format::Raw => message(out, &log_level_text(response)),
        Format::Json => json(out, &cantina::json::to_json(response)),
    }
}

/// What `cantina publish` published.
pub fn published(
    out: &mut dyn Write,
    format: Format,
    response: &PublishEventResponse,
) -> io::Result<()> {
    match format {
        Format::Text | Format::Raw => message(
            out,
            &format!(
                "published {} (seq {}, correlation id {})",
                response.topic, response.seq, response.correlation_id
            ),
        ),
        Format::Json => json(out, &cantina::json::to_json(response)),
    }
}

/// What a plan request did: `plan-3  RUNNING  plan 'greeting' started …`
/// (the id first, for `cut -d' ' -f1`), or `whole`, the response as JSON.
pub fn plan_change(
    out: &mut dyn Write,
    format: Format,
    plan_id: &str,
    status: i32,
    text: &str,
    whole: serde_json::Value,
) -> io::Result<()> {
    match format {
        Format::Text | Format::Raw => {
            let line = format!("{plan_id}  {}  {text}", plan_text::status_name(status));
            message(out, line.trim_end())
        }
        Format::Json => json(out, &whole),
    }
}

/// The plans under way and recently ended, then the plans of the server's
/// folder; a heading says when either is empty.
pub fn plans(
    out: &mut dyn Write,
    format: Format,
    list: &ListPlansResponse,
    colours: Colours,
) -> io::Result<()> {
    match format {
        Format::Text | Format::Raw => {
            let mut text = if list.plans.is_empty() {
                "plans: none running or recently ended\n".to_string()
            } else {
                format!(
                    "plans:\n{}",
                    plan_text::plans_table(&list.plans, "  ", colours)
                )
            };
            text.push('\n');
            if list.saved.is_empty() {
                text.push_str("saved plans: none in the server's plans folder\n");
            } else {
                text.push_str("saved plans (cantina plan run NAME):\n");
                text.push_str(&plan_text::saved_table(&list.saved, "  ", colours));
            }
            message(out, &text)
        }
        Format::Json => json(out, &cantina::json::to_json(list)),
    }
}

/// A plan's check: its problems as `FILE:LINE: path: message` lines, or
/// `valid: N steps` and, with `timeline`, the dry run.
pub fn validation(
    out: &mut dyn Write,
    format: Format,
    label: &str,
    verdict: &ValidatePlanResponse,
    timeline: bool,
    colours: Colours,
) -> io::Result<()> {
    match format {
        Format::Text | Format::Raw => message(
            out,
            &plan_text::validation(label, verdict, timeline, colours),
        ),
        Format::Json => json(out, &cantina::json::to_json(verdict)),
    }
}

/// What the panic button stopped: the server's summary and the plans
/// cancelled.
pub fn stopped(out: &mut dyn Write, format: Format, response: &StopAllResponse) -> io::Result<()> {
    match format {
        Format::Text | Format::Raw => {
            let mut text = response.message.clone();
            if !response.cancelled.is_empty() {
                let _ = write!(text, "\ncancelled: {}", response.cancelled.join(", "));
            }
            message(out, &text)
        }
        Format::Json => json(out, &cantina::json::to_json(response)),
    }
}

/// `log filter: info → debug`.
fn log_level_text(response: &SetLogLevelResponse) -> String {
    let or_none = |filter: &str| {
        if filter.is_empty() {
            "(none)".to_string()
        } else {
            filter.to_string()
        }
    };
    format!(
        "log filter: {} → {}",
        or_none(&response.previous_filter),
        or_none(&response.filter)
    )
}

/// Writes one line and flushes it, so that a pipe reader sees it at once.
pub fn line(out: &mut dyn Write, text: &str) -> io::Result<()> {
    writeln!(out, "{text}")?;
    out.flush()
}

/// Runs `write` on the locked stdout. Returns false when stdout is gone: a
/// closed pipe (`cantina commands | head -1`) ends the program quietly, any
/// other write error is reported.
pub fn to_stdout(write: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> bool {
    match write(&mut io::stdout().lock()) {
        Ok(()) => true,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => false,
        Err(e) => {
            error(format!("cannot write the output: {e}"));
            false
        }
    }
}

/// Prints why a command failed, with a hint when there is one.
pub fn failure(failure: &Failure) {
    let mut text = format!("error: {failure}");
    if let Some(hint) = failure.hint() {
        // Writing to a String cannot fail.
        let _ = write!(text, "\nhint: {hint}");
    }
    stderr_line(&text);
}

/// Prints a failure of the CLI itself rather than of the server.
pub fn error(message: impl fmt::Display) {
    stderr_line(&format!("error: {message}"));
}

/// Prints a problem that does not stop the command.
pub fn warning(message: impl fmt::Display) {
    stderr_line(&format!("warning: {message}"));
}

/// Prints a line about the user's input as is, such as a compiler-style
/// `FILE:LINE: message` that editors jump to.
pub fn diagnostic(text: impl fmt::Display) {
    stderr_line(&text.to_string());
}

/// Prints something worth knowing that is not a result.
pub fn note(message: impl fmt::Display) {
    stderr_line(&format!("note: {message}"));
}

/// Writes one line to stderr; if even stderr is gone there is nobody left to
/// tell, so the error is dropped rather than turned into a panic.
fn stderr_line(text: &str) {
    let _ = writeln!(io::stderr().lock(), "{text}");
}

/// Writes `text` ending in exactly one newline; an empty text writes nothing,
/// so commands that only act leave no blank line behind.
fn message(out: &mut dyn Write, text: &str) -> io::Result<()> {
    if text.is_empty() {
        return Ok(());
    }
    out.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        out.write_all(b"\n")?;
    }
    out.flush()
}

fn json(out: &mut dyn Write, value: &serde_json::Value) -> io::Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(io::Error::other)?;
    writeln!(out, "{text}")?;
    out.flush()
}

/// Lays out the commands grouped by category (in the server's order), with
/// usage, description and aliases in aligned columns.
fn commands_table(commands: &[CommandInfo]) -> String {
    let mut groups: Vec<(&str, Vec<&CommandInfo>)> = Vec::new();
    for command in commands {
        let category = command.category.as_str();
        match groups.iter_mut().find(|(name, _)| *name == category) {
            Some((_, members)) => members.push(command),
            None => groups.push((category, vec![command])),
        }
    }

    let usage_width = commands
        .iter()
        .map(|c| c.usage.chars().count())
        .max()
        .unwrap_or(0);
    let description_width = commands
        .iter()
        .map(|c| c.description.chars().count())
        .max()
        .unwrap_or(0);

    let mut table = String::new();
    for (index, (category, members)) in groups.iter().enumerate() {
        if index > 0 {
            table.push('\n');
        }
        let category = if category.is_empty() {
            "other"
        } else {
            category
        };
        table.push_str(category);
        table.push_str(":\n");
        for command in members {
            let usage = if command.usage.is_empty() {
                &command.name
            } else {
                &command.usage
            };
            let row = format!(
                "  {usage:<usage_width$}  {:<description_width$}  {}",
                command.description,
                other_names(command).join(", "),
            );
            table.push_str(row.trim_end());
            table.push('\n');
        }
    }
    table
}

/// The aliases, then any shortcut the server did not also list as an alias.
fn other_names(command: &CommandInfo) -> Vec<&str> {
    let mut names: Vec<&str> = command.aliases.iter().map(String::as_str).collect();
    for shortcut in &command.shortcuts {
        if !names.contains(&shortcut.as_str()) {
            names.push(shortcut);
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(
        name: &str,
        usage: &str,
        description: &str,
        aliases: &[&str],
        category: &str,
    ) -> CommandInfo {
        CommandInfo {
            name: name.into(),
            usage: usage.into(),
            description: description.into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
            category: category.into(),
            ..CommandInfo::default()
        }
    }

    #[test]
    fn the_table_groups_by_category_and_aligns_columns() {
        let commands = [
            info("status", "status", "Show the state.", &["st"], "system"),
            info(
                "eye pattern",
                "eye pattern <pattern>",
                "Set the eyes.",
                &["ep"],
                "eyes",
            ),
            info(
                "help",
                "help [command]",
                "List the commands.",
                &[],
                "system",
            ),
        ];
        let expected = "\
system:
  status                 Show the state.     st
  help [command]         List the commands.

eyes:
  eye pattern <pattern>  Set the eyes.       ep
";
        assert_eq!(commands_table(&commands), expected);
    }

    #[test]
    fn text_results_are_the_message_alone() {
        let response = DispatchResponse {
            command: "engage".into(),
            message: "Engaged.".into(),
            ..DispatchResponse::default()
        };
        let mut out = Vec::new();
        self::response(&mut out, Format::Text, &response).unwrap();
        assert_eq!(out, b"Engaged.\n");

        let mut out = Vec::new();
        self::response(&mut out, Format::Text, &DispatchResponse::default()).unwrap();
        assert!(out.is_empty());
    }

    #[test]
    fn a_log_level_change_shows_before_and_after() {
        let response = SetLogLevelResponse {
            filter: "debug,cantina_server::audio=trace".into(),
            previous_filter: "info".into(),
        };
        let mut out = Vec::new();
        log_level(&mut out, Format::Text, &response).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "log filter: info → debug,cantina_server::audio=trace\n"
        );
        assert_eq!(
            log_level_text(&SetLogLevelResponse::default()),
            "log filter: (none) → (none)"
        );

        let mut out = Vec::new();
        log_level(&mut out, Format::Json, &response).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["previousFilter"], "info");
    }

    #[test]
    fn json_results_are_the_whole_response() {
        let response = DispatchResponse {
            command: "eye pattern".into(),
            message: "Eyes: happy.".into(),
            correlation_id: "c-1".into(),
            args: vec!["happy".into()],
            ..DispatchResponse::default()
        };
        let mut out = Vec::new();
        self::response(&mut out, Format::Json, &response).unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            value,
            serde_json::json!({
                "command": "eye pattern",
                "message": "Eyes: happy.",
                "correlationId": "c-1",
                "args": ["happy"],
            })
        );
    }
}
