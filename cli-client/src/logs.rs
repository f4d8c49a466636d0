//! `cantina logs`: the server's log, its recent entries and, with `-f`, live.
//!
//! One TailLogs stream, printed an entry per line (pretty, raw or JSON Lines)
//! and flushed after each, so that `| grep` and `| jq` see entries as they
//! happen. Without `-f` it ends with the backlog (exit 0). With `-f` it runs
//! until Ctrl-C (exit 130, quietly): a broken connection, an UNAVAILABLE
//! server or a clean end of the stream (a server shutting down, perhaps to
//! restart) is announced on stderr and retried with backoff for as long as it
//! takes, resuming after the last entry printed ([`log_resume`] decides how).
//! Only the first connection must work at once, so that a wrong `--server`
//! fails fast instead of waiting forever.

use std::{
    io::{self, IsTerminal},
    process::ExitCode,
    time::SystemTime,
};

use cantina::v1::{LogEntry, TailLogsRequest};
use tokio::runtime::Runtime;
use tonic::Streaming;

use crate::{
    args::{Format, GlobalArgs},
    colour::Colours,
    error::Failure,
    log_args::LogsArgs,
    log_line::{self, LogLines},
    log_resume::{Backoff, Continuity, Cursor, Verdict},
    output,
    remote::Remote,
};

/// Attempts to resume a backlog (no `-f`) before giving up: a backlog is
/// finite, so someone is waiting for the command to end.
const RETRIES_WITHOUT_FOLLOW: u32 = 3;

/// What the user is told when the server turns out to have restarted.
const RESTARTED: &str = "the server restarted; following its new session from the start";

/// How the command ended, when it was not a failure.
#[derive(Debug)]
enum End {
    /// The backlog is printed (no `-f`).
    Done,
    /// Nobody reads stdout any more (`cantina logs | head -3`).
    StdoutClosed,
    /// The user pressed Ctrl-C.
    Interrupted,
}

/// How one stream ended.
#[derive(Debug)]
enum StreamEnd {
    /// The server closed it with an OK status.
    Finished,
    /// It broke, or the server ended it with an error.
    Broken(Failure),
    /// Nobody reads stdout any more.
    StdoutClosed,
}

/// Prints the log until its end, Ctrl-C or a failure.
pub fn run(runtime: &Runtime, global: &GlobalArgs, args: &LogsArgs) -> ExitCode {
    let colours = if args.no_color {
        Colours::OFF
    } else {
        Colours::for_stdout()
    };
    let mut printer = Printer {
        format: global.output,
        lines: LogLines::new(colours, args.timestamps),
        printed: 0,
    };
    let end = runtime.block_on(async {
        tokio::select! {
            end = tail(global, args, &mut printer) => end,
            // If the handler cannot be installed this branch is disabled and
            // Ctrl-C kills the process as usual, which is fine here too.
            Ok(()) = tokio::signal::ctrl_c() => Ok(End::Interrupted),
        }
    });
    match end {
        Ok(End::Done) => {
            if printer.printed == 0 && chatty(global) {
                output::note("no log entries match");
            }
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

/// Whether to tell a person what is going on: text output and stderr at a
/// terminal. Scripts get no chatter, but always the warnings.
fn chatty(global: &GlobalArgs) -> bool {
    global.output != Format::Json && io::stderr().is_terminal()
}

/// Connects, streams and, while following, reconnects.
async fn tail(global: &GlobalArgs, args: &LogsArgs, printer: &mut Printer) -> Result<End, Failure> {
    let remote = Remote::connect(global).await?;
    let original = args.request(SystemTime::now());
    // `--tail 0`: a `tail` of 0 means "no limit" in the contract, so start
    // after the server's latest entry instead, by its own count rather than
    // by a clock that may differ from ours.
    let mut cursor = if args.only_new() {
        latest(&remote)
            .await?
            .as_ref()
            .map_or(Cursor::Start, Cursor::after)
    } else {
        Cursor::Start
    };
    let mut stream = remote.tail_logs(cursor.next_request(&original)).await?;
    if args.follow && chatty(global) {
        output::note(format!(
            "following the log at {}; Ctrl-C to stop",
            remote.address()
        ));
    }
    let mut backoff = Backoff::new();
    loop {
        let broke = match pump(&remote, &mut stream, &mut cursor, printer, &mut backoff).await {
            StreamEnd::StdoutClosed => return Ok(End::StdoutClosed),
            StreamEnd::Finished if !args.follow => return Ok(End::Done),
            StreamEnd::Finished => {
                output::note(
                    "the server ended the log stream; it may be restarting. Reconnecting…",
                );
                None
            }
            StreamEnd::Broken(failure) if failure.is_transient() => {
                match &failure {
                    Failure::Server(_) => output::note(format!(
                        "the server is unavailable ({failure}); reconnecting…"
                    )),
                    _ => output::note(format!(
                        "lost the log stream from {}; reconnecting…",
                        remote.address()
                    )),
                }
                Some(failure)
            }
            StreamEnd::Broken(failure) => return Err(failure),
        };
        stream = reconnect(
            &remote,
            &original,
            &mut cursor,
            &mut backoff,
            args.follow,
            broke,
        )
        .await?;
        match cursor.seq() {
            Some(seq) => output::note(format!("reconnected; resuming after entry {seq}")),
            None => output::note("reconnected"),
        }
    }
}

/// Prints a stream's entries until it ends.
async fn pump(
    remote: &Remote,
    stream: &mut Streaming<LogEntry>,
    cursor: &mut Cursor,
    printer: &mut Printer,
    backoff: &mut Backoff,
) -> StreamEnd {
    loop {
        let entry = match stream.message().await {
            Ok(Some(entry)) => entry,
            Ok(None) => return StreamEnd::Finished,
            Err(status) => return StreamEnd::Broken(remote.failure(status)),
        };
        // The connection works again: the next outage starts its waits short.
        backoff.reset();
        match cursor.admit(&entry) {
            Verdict::Duplicate => continue,
            Verdict::Restarted => output::note(RESTARTED),
            Verdict::Print => {}
        }
        if !printer.print(&entry) {
            return StreamEnd::StdoutClosed;
        }
    }
}

/// Waits and tries again until a stream is open: for ever while following,
/// a few times otherwise. `last` is why the stream broke, if it broke.
async fn reconnect(
    remote: &Remote,
    original: &TailLogsRequest,
    cursor: &mut Cursor,
    backoff: &mut Backoff,
    follow: bool,
    mut last: Option<Failure>,
) -> Result<Streaming<LogEntry>, Failure> {
    let mut attempts = 0;
    loop {
        if !follow
            && attempts >= RETRIES_WITHOUT_FOLLOW
            && let Some(failure) = last.take()
        {
            return Err(failure);
        }
        attempts += 1;
        tokio::time::sleep(backoff.next_delay()).await;
        match resume(remote, original, cursor).await {
            Ok(stream) => return Ok(stream),
            Err(failure) if failure.is_transient() => last = Some(failure),
            Err(failure) => return Err(failure),
        }
    }
}

/// Opens the stream that carries on from `cursor`, after checking that the
/// server is still the one the cursor's `seq` belongs to.
async fn resume(
    remote: &Remote,
    original: &TailLogsRequest,
    cursor: &mut Cursor,
) -> Result<Streaming<LogEntry>, Failure> {
    if cursor.seq().is_some() {
        let latest = latest(remote).await?;
        if cursor.continuity(latest.as_ref()) == Continuity::Restarted {
            output::note(RESTARTED);
            cursor.restart();
        }
    }
    remote.tail_logs(cursor.next_request(original)).await
}

/// The server's latest entry, whatever its level or service; `None` when its
/// ring is empty.
async fn latest(remote: &Remote) -> Result<Option<LogEntry>, Failure> {
    let request = TailLogsRequest {
        tail: 1,
        ..TailLogsRequest::default()
    };
    let mut stream = remote.tail_logs(request).await?;
    let mut latest = None;
    loop {
        match stream.message().await {
            // Reading to the end keeps this right even if a server sent more
            // than asked: the last entry is the latest.
            Ok(Some(entry)) if entry.skipped == 0 => latest = Some(entry),
            Ok(Some(_)) => {}
            Ok(None) => return Ok(latest),
            Err(status) => return Err(remote.failure(status)),
        }
    }
}

/// Prints entries in the chosen format.
#[derive(Debug)]
struct Printer {
    /// Pretty, raw or JSON Lines.
    format: Format,
    /// The text renderer, with the column widths seen so far.
    lines: LogLines,
    /// Entries printed, gap markers included.
    printed: u64,
}

impl Printer {
    /// Prints one entry; false when stdout is gone.
    fn print(&mut self, entry: &LogEntry) -> bool {
        let line = match self.format {
            Format::Text => self.lines.pretty(entry),
            Format::Raw => self.lines.raw(entry),
            Format::Json => {
                // The marker is a JSON line like any other, which a `jq`
                // filter may well drop; stderr makes sure a person notices.
                if entry.skipped > 0 {
                    output::warning(log_line::skipped_text(entry.skipped));
                }
                log_line::json_line(entry)
            }
        };
        self.printed += 1;
        output::to_stdout(|out| output::line(out, &line))
    }
}
