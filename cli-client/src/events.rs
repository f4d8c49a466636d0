//! `cantina events [TOPIC_GLOB…]`: the droid's event bus, live.
//!
//! One WatchEvents stream, printed an event per line (JSON Lines with `-o
//! json`) and flushed after each, so that `| grep` and `| jq` see events as
//! they happen. It runs until Ctrl-C, which exits 130 without a word, as a
//! shell reports an interrupted program; or until the server ends the stream:
//! a clean end means the server is going away on purpose (exit 0, with a note
//! on stderr), a broken connection exits 69 as for every other command.

use std::{
    io::{self, IsTerminal},
    process::ExitCode,
};

use cantina::v1::BusEvent;
use tokio::runtime::Runtime;

use crate::{
    args::{EventsArgs, Format, GlobalArgs},
    colour::Colours,
    error::Failure,
    event_line::{self, EventLines},
    output,
    remote::Remote,
};

/// How the watch ended, when it was not a failure.
#[derive(Debug)]
enum End {
    /// The server closed the stream with an OK status.
    ServerClosed,
    /// Nobody reads stdout any more (`cantina events | head -3`).
    StdoutClosed,
    /// The user pressed Ctrl-C.
    Interrupted,
}

/// Prints events until Ctrl-C or the end of the stream.
pub fn run(runtime: &Runtime, global: &GlobalArgs, args: &EventsArgs) -> ExitCode {
    let mut printer = Printer {
        format: global.output,
        lines: EventLines::new(Colours::for_stdout(), !args.no_timestamps),
    };
    let end = runtime.block_on(async {
        tokio::select! {
            end = watch(global, &args.topics, &mut printer) => end,
            // If the handler cannot be installed this branch is disabled and
            // Ctrl-C kills the process as usual, which is fine here too.
            Ok(()) = tokio::signal::ctrl_c() => Ok(End::Interrupted),
        }
    });
    match end {
        Ok(End::ServerClosed) => {
            output::note("the server ended the event stream; it is probably shutting down");
            ExitCode::SUCCESS
        }
        Ok(End::StdoutClosed) => ExitCode::FAILURE,
        Ok(End::Interrupted) => Failure::Interrupted.exit_code(),
        Err(failure) => {
            output::failure(&failure);
            failure.exit_code()
        }
    }
}

/// Connects, subscribes and prints until the stream or stdout ends.
async fn watch(
    global: &GlobalArgs,
    topics: &[String],
    printer: &mut Printer,
) -> Result<End, Failure> {
    let remote = Remote::connect(global).await?;
    let mut stream = remote.watch_events(topics).await?;
    // A person at a terminal sees a blank screen until the first event; say
    // that the subscription is live. Scripts read stdout and get no chatter.
    if global.output != Format::Json && io::stderr().is_terminal() {
        let what = if topics.is_empty() {
            "every event".to_string()
        } else {
            topics.join(" ")
        };
        output::note(format!(
            "watching {what} at {}; Ctrl-C to stop",
            remote.address()
        ));
    }
    loop {
        match stream.message().await {
            Ok(Some(event)) => {
                if !printer.print(&event) {
                    return Ok(End::StdoutClosed);
                }
            }
            Ok(None) => return Ok(End::ServerClosed),
            Err(status) => return Err(remote.failure(status)),
        }
    }
}

/// Prints events in the chosen format.
#[derive(Debug)]
struct Printer {
    /// Text lines or JSON Lines.
    format: Format,
    /// The text renderer, with the column widths seen so far.
    lines: EventLines,
}

impl Printer {
    /// Prints one event; false when stdout is gone.
    fn print(&mut self, event: &BusEvent) -> bool {
        let line = match self.format {
            // Raw is for log messages; an event has none, so it is text.
            Format::Text | Format::Raw => self.lines.line(event),
            Format::Json => {
                // The marker is a JSON line like any other, which a `jq`
                // filter may well drop; stderr makes sure a person notices.
                if event.missed > 0 {
                    output::warning(event_line::missed_text(event.missed));
                }
                event_line::json_line(event)
            }
        };
        output::to_stdout(|out| output::line(out, &line))
    }
}
