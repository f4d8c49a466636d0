//! `cantina shell`: the droid's console, `DJ-R3X> `, over gRPC.
//!
//! On a terminal it is a rustyline editor with history and tab completion of
//! command names and of the plans that plan commands name. When stdin is not a terminal (a script or a test piping lines
//! in) it reads plain lines and prints only results: no banner, no prompt, no
//! history file. Either way each non-empty line is sent as typed; a failure is
//! printed and the shell goes on, even when the server has gone away (tonic
//! reconnects on the next line). `exit` and end of input leave without telling
//! the server; `quit` is the server's command that stops the droid, and the
//! shell leaves once it succeeds.

use std::{
    io::{self, BufRead, IsTerminal},
    path::{Path, PathBuf},
    process::ExitCode,
    time::Duration,
};

use rustyline::{CompletionType, Config, Editor, error::ReadlineError, history::DefaultHistory};
use tokio::runtime::Runtime;

use crate::{
    args::{GlobalArgs, ShellArgs},
    complete::{PlanNames, PlanSource, ShellHelper},
    error::Failure,
    output,
    remote::Remote,
};

/// The prompt of the original console.
const PROMPT: &str = "DJ-R3X> ";

/// The line that leaves the shell without a word to the server.
const EXIT: &str = "exit";

/// Canonical name of the server's command that stops the droid.
const QUIT: &str = "quit";

/// How long <Tab> waits for the server's plan names before offering none.
const PLAN_NAMES_TIMEOUT: Duration = Duration::from_millis(800);

/// Runs the shell until `exit`, end of input or a successful `quit`.
pub fn run(runtime: &Runtime, global: &GlobalArgs, args: &ShellArgs) -> ExitCode {
    let remote = match runtime.block_on(Remote::connect(global)) {
        Ok(remote) => remote,
        Err(failure) => return fail(&failure),
    };
    // The command list feeds tab completion. When the server is there but
    // cannot list (an older server, say), the shell still works without it;
    // when every line would fail the same way, there is no point starting.
    let commands = match runtime.block_on(remote.list_commands("")) {
        Ok(list) => list.commands,
        Err(failure) if failure.is_fatal_at_start() => return fail(&failure),
        Err(failure) => {
            output::warning(format!("no tab completion: {failure}"));
            Vec::new()
        }
    };
    let session = Session {
        runtime,
        remote: &remote,
        global,
    };
    if io::stdin().is_terminal() {
        let helper = ShellHelper::new(&commands, plan_names(runtime, &remote));
        interactive(&session, helper, args)
    } else {
        scripted(&session)
    }
}

/// What every line needs: where to send it and how to print the result.
struct Session<'a> {
    /// Drives the calls from the blocking read loop.
    runtime: &'a Runtime,
    /// The server.
    remote: &'a Remote,
    /// The address (for the banner) and the output format.
    global: &'a GlobalArgs,
}

/// Whether the shell goes on after a line.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    /// Read another line.
    Continue,
    /// Leave the shell with a success.
    Leave,
}

impl Session<'_> {
    /// Runs one line. `interruptible` lets Ctrl-C abandon the wait for the
    /// server, which only makes sense with a person at a terminal.
    fn line(&self, line: &str, interruptible: bool) -> Next {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            return Next::Continue;
        }
        if trimmed.eq_ignore_ascii_case(EXIT) {
            return Next::Leave;
        }
        let result = self.runtime.block_on(async {
            if !interruptible {
                return self.remote.dispatch(line).await;
            }
            tokio::select! {
                result = self.remote.dispatch(line) => result,
                // If the signal handler cannot be installed this branch is
                // disabled and the call simply runs to its end.
                Ok(()) = tokio::signal::ctrl_c() => Err(Failure::Interrupted),
            }
        });
        match result {
            Ok(response) => {
                let printed =
                    output::to_stdout(|out| output::response(out, self.global.output, &response));
                // Nobody reads what we print any more: stop.
                if !printed || response.command == QUIT {
                    Next::Leave
                } else {
                    Next::Continue
                }
            }
            Err(failure) => {
                output::failure(&failure);
                Next::Continue
            }
        }
    }
}

/// The console for a person: prompt, line editing, history, completion.
fn interactive(session: &Session<'_>, helper: ShellHelper, args: &ShellArgs) -> ExitCode {
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .history_ignore_space(true)
        .max_history_size(1000)
        .and_then(|c| c.history_ignore_dups(true))
        .map(|c| c.build());
    let editor = config.and_then(Editor::<ShellHelper, DefaultHistory>::with_config);
    let mut editor = match editor {
        Ok(editor) => editor,
        Err(e) => {
            output::error(format!("cannot open the terminal: {e}"));
            return ExitCode::FAILURE;
        }
    };
    editor.set_helper(Some(helper));

    let history = args.history.clone().or_else(default_history_path);
    if let Some(path) = &history {
        load_history(&mut editor, path);
    }

    println!(
        "Connected to the Cantina server at {}; type 'help' for commands, '{EXIT}' to leave.",
        session.global.server
    );
    let mut code = ExitCode::SUCCESS;
    loop {
        match editor.readline(PROMPT) {
            Ok(line) => {
                if !line.trim().is_empty() {
                    // Only fails when the history is full and cannot drop an
                    // entry, which is not worth stopping for.
                    let _ = editor.add_history_entry(line.as_str());
                }
                if session.line(&line, true) == Next::Leave {
                    break;
                }
            }
            // Ctrl-C clears the line, as in a shell.
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break,
            Err(e) => {
                output::error(format!("cannot read the terminal: {e}"));
                code = ExitCode::FAILURE;
                break;
            }
        }
    }

    if let Some(path) = &history {
        save_history(&mut editor, path);
    }
    code
}

/// The shell for a script: plain lines in, results out.
fn scripted(session: &Session<'_>) -> ExitCode {
    for line in io::stdin().lock().lines() {
        match line {
            Ok(line) => {
                if session.line(&line, false) == Next::Leave {
                    break;
                }
            }
            Err(e) => {
                output::error(format!("cannot read stdin: {e}"));
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

/// Asks the server for the plan names at each <Tab> that completes one:
/// saved plans come and go while the shell is open, and so do running ones.
/// Readline calls it on this (the main) thread, outside the runtime, so it
/// may block on the call; a server that does not answer in time gives none.
fn plan_names(runtime: &Runtime, remote: &Remote) -> PlanSource {
    let handle = runtime.handle().clone();
    let remote = remote.clone();
    Box::new(move || {
        // The timer must be made inside the runtime, hence the async block.
        handle
            .block_on(async { tokio::time::timeout(PLAN_NAMES_TIMEOUT, remote.list_plans()).await })
            .ok()
            .and_then(Result::ok)
            .map(|list| PlanNames::from(&list))
            .unwrap_or_default()
    })
}

/// `<data dir>/cantina/cli-history`, when the platform has a data folder.
fn default_history_path() -> Option<PathBuf> {
    dirs::data_dir().map(|dir| dir.join("cantina").join("cli-history"))
}

fn load_history(editor: &mut Editor<ShellHelper, DefaultHistory>, path: &Path) {
    match editor.load_history(path) {
        Ok(()) => {}
        // The first session has no history yet.
        Err(ReadlineError::Io(e)) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => output::warning(format!("cannot read the history {}: {e}", path.display())),
    }
}

fn save_history(editor: &mut Editor<ShellHelper, DefaultHistory>, path: &Path) {
    // A lost history is a pity, not a failed session.
    let saved = match path.parent() {
        Some(dir) => std::fs::create_dir_all(dir).map_err(ReadlineError::Io),
        None => Ok(()),
    }
    .and_then(|()| editor.save_history(path));
    if let Err(e) = saved {
        output::warning(format!(
            "cannot save the history to {}: {e}",
            path.display()
        ));
    }
}

fn fail(failure: &Failure) -> ExitCode {
    output::failure(failure);
    failure.exit_code()
}
