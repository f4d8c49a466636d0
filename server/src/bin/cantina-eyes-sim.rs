//! `cantina-eyes-sim`: a simulated eyes board (the droid's Arduino) on a pseudo-terminal,
//! for demos and end-to-end tests without the hardware.
//!
//! ```text
//! cantina-eyes-sim --link /tmp/eyes [--boot-ms 1500] [--baud 115200] [--raw]
//! CANTINA_EYES_PORT=/tmp/eyes cantina-server        # in another terminal
//! ```
//!
//! `--link` is a symlink to the pty the board listens on; it stays the same across
//! `unplug`/`plug`, so the server can keep it as its port. The board behaves like the
//! real one on its serial line: opening the port resets it, it is deaf for `--boot-ms`
//! and then prints `+`; it answers each command `+` or `-` at the paced `--baud` speed.
//! See `cantina_server::eyes::sim` for the details. The program is test tooling: it is built
//! only with the `testkit` feature
//! (`cargo run -p cantina-server --features testkit --bin cantina-eyes-sim -- --link /tmp/eyes`;
//! the workspace's test build turns the feature on by itself).
//!
//! **Output** (stdout, one line per event, flushed at once):
//! - `ready <link> <slave>`: first line; the board is plugged in, waiting for an open;
//! - `opened`: a client opened the port, the board resets and is deaf;
//! - `booted`: the boot line `+` is out, commands are answered;
//! - `rx <char> <answer>`: a command reached the firmware, answered `+` (done), `-`
//!   (unknown or rejected) or `(muted)`; control bytes are escaped (`\x01`, `\t`);
//!   CR and LF are separators the firmware skips, so they get no line;
//! - `deaf <bytes>`: bytes dropped because the board was booting (escaped: `H\n`);
//! - `eyes: <glyph> intensity <n>`: what the eyes show, whenever it changes;
//! - `closed`, `unplugged`, `plugged <slave>`;
//! - with `--raw`, also `read <bytes>` for every chunk read from the port and
//!   `sent <bytes>` for every chunk written to it.
//!
//! **Control** (stdin, one command per line), each answered `ok <command>` or
//! `error <why>`: `unplug`, `plug`, `mute`, `unmute` (a muted board swallows commands
//! and never answers), `reject <chars>` (answer `-` to these commands; `reject` alone
//! clears), `state` (prints the `eyes:` line), `quit`. The answer comes after the event
//! lines the command caused (`unplugged` before `ok unplug`). End of input, SIGTERM,
//! SIGINT or SIGHUP also quit; the link is removed on the way out.

use std::{
    io::{self, BufRead, Write},
    path::PathBuf,
    process::ExitCode,
    sync::mpsc,
    thread,
    time::Duration,
};

use cantina_server::eyes::sim::{
    DEFAULT_BAUD, DEFAULT_BOOT_DELAY, LinkState, SimBoard, SimEvent, SimOptions, SimState,
};
use clap::Parser;
use nix::libc;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "cantina-eyes-sim",
    version = cantina_server::VERSION,
    about = "A simulated eyes board (the droid's Arduino) on a pseudo-terminal",
    after_help = "Point the server at the link: CANTINA_EYES_PORT=/tmp/eyes cantina-server. \
                  Control it on stdin: unplug, plug, mute, unmute, reject <chars>, state, quit."
)]
struct Args {
    /// Symlink to create to the board's pty; give this path to the server as its port
    #[arg(long, value_name = "PATH")]
    link: PathBuf,
    /// How long the board stays deaf after the port is opened, in milliseconds
    #[arg(long, value_name = "MS", default_value_t = DEFAULT_BOOT_DELAY.as_millis() as u64)]
    boot_ms: u64,
    /// Line speed to simulate: bytes go through at baud/10 per second each way
    #[arg(long, default_value_t = DEFAULT_BAUD, value_parser = clap::value_parser!(u32).range(1..))]
    baud: u32,
    /// Also print every raw chunk read from the port (`read`) and written to it (`sent`)
    #[arg(long)]
    raw: bool,
}

/// What the main loop handles, from every thread, in arrival order.
enum Msg {
    /// From the board thread.
    Event(SimEvent),
    /// A control line from stdin.
    Line(String),
    /// A line to print after everything queued before it (see `main`).
    Reply(String),
    /// Time to go: `quit`, end of input or a signal.
    Quit,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Blocked before any thread starts, so every thread inherits the mask and the
    // signals wait for `sigwait` below instead of killing the process, which would
    // leave the symlink behind.
    let signals = match block_exit_signals() {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("cantina-eyes-sim: cannot set up the signal handling: {e}");
            return ExitCode::FAILURE;
        }
    };
    let board = match SimBoard::start(SimOptions {
        link: args.link.clone(),
        boot_delay: Duration::from_millis(args.boot_ms),
        baud: args.baud,
    }) {
        Ok(board) => board,
        Err(e) => {
            eprintln!(
                "cantina-eyes-sim: cannot start the simulated board at {}: {e}",
                args.link.display()
            );
            return ExitCode::FAILURE;
        }
    };

    // One channel and one printing thread (this one), so lines never interleave and
    // come out in the order things happened.
    let (tx, rx) = mpsc::channel();
    board.on_event({
        let tx = tx.clone();
        move |event| {
            let _ = tx.send(Msg::Event(event.clone()));
        }
    });
    thread::spawn({
        let tx = tx.clone();
        move || {
            wait_for_signal(&signals);
            let _ = tx.send(Msg::Quit);
        }
    });
    thread::spawn({
        let tx = tx.clone();
        move || {
            for line in io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if tx.send(Msg::Line(line)).is_err() {
                    return;
                }
            }
            let _ = tx.send(Msg::Quit);
        }
    });

    let slave = board
        .slave_path()
        .map_or_else(|| "-".to_owned(), |p| p.display().to_string());
    let mut printer = Printer {
        raw: args.raw,
        shown: board.state(),
    };
    if printer
        .line(&format!("ready {} {slave}", board.link().display()))
        .is_err()
    {
        return ExitCode::SUCCESS;
    }
    for msg in rx {
        let printed = match msg {
            Msg::Event(event) => printer.event(&event, &board),
            Msg::Line(line) => {
                // The board emits the events of a control call before returning, but
                // they are still queued here: the reply goes behind them, so
                // `unplugged` always precedes `ok unplug`.
                for reply in control(&board, &line) {
                    let quit = matches!(reply, Reply::Quit);
                    let _ = tx.send(match reply {
                        Reply::Line(text) => Msg::Reply(text),
                        Reply::Quit => Msg::Quit,
                    });
                    if quit {
                        break;
                    }
                }
                Ok(())
            }
            Msg::Reply(text) => printer.line(&text),
            Msg::Quit => break,
        };
        // Nobody reads our output any more (EPIPE): nothing left to do but clean up.
        if printed.is_err() {
            break;
        }
    }
    // Stops the board thread, hangs up the pty and removes the link.
    drop(board);
    ExitCode::SUCCESS
}

/// Prints events as lines, tracking what the eyes show to report changes.
struct Printer {
    raw: bool,
    /// The state last printed (or the initial one).
    shown: SimState,
}

impl Printer {
    /// Prints one line and flushes, so a reading process sees it at once.
    fn line(&self, text: &str) -> io::Result<()> {
        let mut out = io::stdout().lock();
        writeln!(out, "{text}")?;
        out.flush()
    }

    fn event(&mut self, event: &SimEvent, board: &SimBoard) -> io::Result<()> {
        match event {
            SimEvent::Opened => {
                self.line("opened")?;
                // The reset brings the eyes back to idle.
                self.state(board.state())
            }
            SimEvent::Ready => self.line("booted"),
            SimEvent::Received { bytes, .. } if self.raw => {
                self.line(&format!("read {}", escape(bytes)))
            }
            SimEvent::Sent { bytes, .. } if self.raw => {
                self.line(&format!("sent {}", escape(bytes)))
            }
            SimEvent::Received { .. } | SimEvent::Sent { .. } => Ok(()),
            SimEvent::Discarded { bytes, .. } => self.line(&format!("deaf {}", escape(bytes))),
            SimEvent::Command {
                byte,
                answer,
                state,
                ..
            } => {
                let answer = answer.map_or_else(
                    || "(muted)".to_owned(),
                    |line| String::from_utf8_lossy(line).trim_end().to_owned(),
                );
                self.line(&format!("rx {} {answer}", escape(&[*byte])))?;
                self.state(*state)
            }
            SimEvent::Closed => self.line("closed"),
            SimEvent::Unplugged => self.line("unplugged"),
            SimEvent::Plugged => {
                let slave = board
                    .slave_path()
                    .map_or_else(|| "-".to_owned(), |p| p.display().to_string());
                self.line(&format!("plugged {slave}"))
            }
        }
    }

    /// Prints the state line if the eyes changed.
    fn state(&mut self, state: SimState) -> io::Result<()> {
        if state == self.shown {
            return Ok(());
        }
        self.shown = state;
        self.line(&state_line(state))
    }
}

/// `eyes: H intensity 7`
fn state_line(state: SimState) -> String {
    format!("eyes: {} intensity {}", state.glyph, state.intensity)
}

/// Shows bytes on one line: printable ASCII as is, the rest escaped like Rust strings
/// (`\n`, `\r`, `\t`, `\\`, `\x1b`), and space as `\x20` so it cannot vanish at the
/// end of a line or look like a separator.
fn escape(bytes: &[u8]) -> String {
    let mut text = String::new();
    for &byte in bytes {
        match byte {
            b'\n' => text.push_str("\\n"),
            b'\r' => text.push_str("\\r"),
            b'\t' => text.push_str("\\t"),
            b'\\' => text.push_str("\\\\"),
            b'!'..=b'~' => text.push(char::from(byte)),
            _ => text.push_str(&format!("\\x{byte:02x}")),
        }
    }
    text
}

/// What a control line asks the main loop to do.
enum Reply {
    Line(String),
    Quit,
}

/// Runs one control line and returns what to print (and whether to quit).
fn control(board: &SimBoard, line: &str) -> Vec<Reply> {
    let line = line.trim();
    let (command, argument) = line
        .split_once(char::is_whitespace)
        .map_or((line, ""), |(command, rest)| (command, rest.trim()));
    let ok = || Reply::Line(format!("ok {line}"));
    let error = |why: String| vec![Reply::Line(format!("error {why}"))];
    if !argument.is_empty() && command != "reject" {
        return error(format!("{command} takes no argument"));
    }
    match command {
        "" => Vec::new(),
        "unplug" if board.link_state() == LinkState::Unplugged => error("already unplugged".into()),
        "unplug" => match board.unplug() {
            Ok(()) => vec![ok()],
            Err(e) => error(format!("cannot unplug: {e}")),
        },
        "plug" if board.link_state() != LinkState::Unplugged => error("already plugged in".into()),
        "plug" => match board.plug() {
            Ok(()) => vec![ok()],
            Err(e) => error(format!("cannot plug in: {e}")),
        },
        "mute" | "unmute" => {
            board.set_muted(command == "mute");
            vec![ok()]
        }
        "reject" => {
            // Spaces are never commands the firmware knows, so `reject H S` means HS.
            let chars: String = argument.chars().filter(|c| !c.is_whitespace()).collect();
            board.set_rejected(&chars);
            vec![ok()]
        }
        "state" => vec![Reply::Line(state_line(board.state())), ok()],
        "quit" => vec![ok(), Reply::Quit],
        _ => error(format!(
            "unknown command {command:?}: try unplug, plug, mute, unmute, reject <chars>, state or quit"
        )),
    }
}

/// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (and the threads it will
/// start) and returns the set for [`wait_for_signal`].
fn block_exit_signals() -> io::Result<libc::sigset_t> {
    // SAFETY: `set` is plain data, initialised by sigemptyset before any other use;
    // pthread_sigmask only changes the calling thread's mask.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        match libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) {
            0 => Ok(set),
            error => Err(io::Error::from_raw_os_error(error)),
        }
    }
}

/// Waits until one of the blocked exit signals arrives.
fn wait_for_signal(set: &libc::sigset_t) {
    let mut signal = 0;
    // SAFETY: `set` was initialised by `block_exit_signals`; `signal` is a valid out
    // pointer. sigwait only fails for an invalid set, and then returns at once, which
    // quits: better than hanging on for a signal that cannot be awaited.
    unsafe {
        libc::sigwait(set, &mut signal);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_control_bytes_readably() {
        assert_eq!(escape(b"H\n"), "H\\n");
        assert_eq!(escape(b"\r\t\\ \x01\xff"), "\\r\\t\\\\\\x20\\x01\\xff");
        assert_eq!(escape(b"+-09AZaz~"), "+-09AZaz~");
    }

    #[test]
    fn state_line_format() {
        assert_eq!(
            state_line(SimState {
                glyph: 'H',
                intensity: 7
            }),
            "eyes: H intensity 7"
        );
    }

    #[test]
    fn parses_the_arguments() {
        let args = Args::try_parse_from(["cantina-eyes-sim", "--link", "/tmp/eyes"]).unwrap();
        assert_eq!(args.link, PathBuf::from("/tmp/eyes"));
        assert_eq!((args.boot_ms, args.baud, args.raw), (1500, 115_200, false));
        assert!(
            Args::try_parse_from(["cantina-eyes-sim"]).is_err(),
            "--link is required"
        );
        assert!(Args::try_parse_from(["cantina-eyes-sim", "--link", "x", "--baud", "0"]).is_err());
    }
}
