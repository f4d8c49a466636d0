//! `cantina`, the command-line client of the Cantina droid server.
//!
//! `cantina eye pattern happy` sends one console line to the droid, `cantina
//! shell` opens the `DJ-R3X> ` console, `cantina commands` lists what the
//! server understands, `cantina status` shows the droid at a glance,
//! `cantina events` follows its event bus and `cantina logs` its log,
//! `cantina plan …` runs and follows plans and `cantina panic` stops them
//! all. This file only parses the arguments, starts the runtime and hands
//! over to [`run`], [`events`], [`logs`], [`plans`] or [`shell`]; every path
//! ends in an exit code chosen by [`error::Failure::exit_code`] (or, for a
//! plan, [`error::plan_exit_code`]).

mod args;
mod colour;
mod complete;
mod error;
mod event_line;
mod events;
mod log_args;
mod log_line;
mod log_resume;
mod logs;
mod output;
mod plan_args;
mod plan_text;
mod plans;
mod remote;
mod run;
mod shell;
mod status;
mod table;
mod time;

use std::process::ExitCode;

use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    // One worker thread keeps the HTTP/2 connection serviced while the shell
    // blocks the main thread in `readline`; two cores need no more.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let global = &cli.global;
    match &cli.command {
        Command::Commands { category } => run::commands(&runtime, global, category.as_deref()),
        Command::Status => run::status(&runtime, global),
        Command::Events(args) => events::run(&runtime, global, args),
        Command::Publish { topic, payload } => {
            run::publish(&runtime, global, topic, payload.as_deref())
        }
        Command::Logs(args) => logs::run(&runtime, global, args),
        Command::LogLevel { filter } => run::log_level(&runtime, global, filter),
        Command::Plan(args) => plans::run(&runtime, global, args),
        Command::Panic(args) => plans::panic(&runtime, global, args),
        Command::Shell(args) => shell::run(&runtime, global, args),
        Command::Completions { shell } => run::completions(*shell),
        Command::Line(words) => run::dispatch(&runtime, global, &cantina::line::join(words)),
    }
}
