//! The one-shot subcommands: a console line (`cantina eye pattern happy`),
//! `cantina status`, `cantina commands`, `cantina publish`, `cantina
//! log-level` and `cantina completions`.
//!
//! Each connects, makes one call, prints the result or the failure and returns
//! the exit code; `shell` and `events` have their own modules because they
//! loop, and the plan commands theirs in [`plans`](crate::plans).

use std::process::ExitCode;

use clap::CommandFactory;

use crate::{
    args::{Cli, Format, GlobalArgs},
    colour::Colours,
    error::Failure,
    output,
    remote::Remote,
};

/// Shows the state of the droid (`SystemService.GetStatus`).
pub fn status(runtime: &tokio::runtime::Runtime, global: &GlobalArgs) -> ExitCode {
    let result = runtime.block_on(async { Remote::connect(global).await?.get_status().await });
    match result {
        Ok(status) => done(output::to_stdout(|out| {
            output::system_status(out, global.output, &status, Colours::for_stdout())
        })),
        Err(failure) => failed(&failure),
    }
}

/// Sends `line` to the server and prints the result.
pub fn dispatch(runtime: &tokio::runtime::Runtime, global: &GlobalArgs, line: &str) -> ExitCode {
    let result = runtime.block_on(async { Remote::connect(global).await?.dispatch(line).await });
    match result {
        Ok(response) => done(output::to_stdout(|out| {
            output::response(out, global.output, &response)
        })),
        Err(failure) => failed(&failure),
    }
}

/// Lists the server's commands, optionally of one category.
pub fn commands(
    runtime: &tokio::runtime::Runtime,
    global: &GlobalArgs,
    category: Option<&str>,
) -> ExitCode {
    let category = category.unwrap_or_default();
    let result =
        runtime.block_on(async { Remote::connect(global).await?.list_commands(category).await });
    match result {
        Ok(list) => {
            // An empty table would look like a hang-up; say why it is empty.
            if list.commands.is_empty() && global.output != Format::Json {
                if category.is_empty() {
                    output::warning("the server offers no commands");
                } else {
                    output::warning(format!("no commands in category '{category}'"));
                }
            }
            done(output::to_stdout(|out| {
                output::commands(out, global.output, &list)
            }))
        }
        Err(failure) => failed(&failure),
    }
}

/// Puts an event on the droid's bus (`SystemService.PublishEvent`).
pub fn publish(
    runtime: &tokio::runtime::Runtime,
    global: &GlobalArgs,
    topic: &str,
    payload: Option<&str>,
) -> ExitCode {
    let payload = match payload.map(serde_json::from_str::<serde_json::Value>) {
        None => None,
        Some(Ok(value @ serde_json::Value::Object(_))) => {
            Some(cantina::json::struct_from_json(value))
        }
        Some(Ok(other)) => {
            output::error(format!(
                "the payload must be a JSON object such as '{{\"button\": 3}}', not {other}"
            ));
            return ExitCode::from(2);
        }
        Some(Err(e)) => {
            output::error(format!("the payload is not valid JSON: {e}"));
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async {
        Remote::connect(global)
            .await?
            .publish_event(topic, payload)
            .await
    });
    match result {
        Ok(response) => done(output::to_stdout(|out| {
            output::published(out, global.output, &response)
        })),
        Err(failure) => failed(&failure),
    }
}

/// Changes what the server logs (`LogService.SetLogLevel`).
pub fn log_level(runtime: &tokio::runtime::Runtime, global: &GlobalArgs, filter: &str) -> ExitCode {
    let result =
        runtime.block_on(async { Remote::connect(global).await?.set_log_level(filter).await });
    match result {
        Ok(response) => done(output::to_stdout(|out| {
            output::log_level(out, global.output, &response)
        })),
        Err(failure) => failed(&failure),
    }
}

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    // Generated into memory first: clap_complete panics on a write error,
    // and a closed pipe should not be a panic.
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "cantina", &mut script);
    done(output::to_stdout(|out| out.write_all(&script)))
}

/// Success when the result was printed.
pub fn done(printed: bool) -> ExitCode {
    if printed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Prints `failure` and returns its exit code.
pub fn failed(failure: &Failure) -> ExitCode {
    output::failure(failure);
    failure.exit_code()
}
