//! `cantina-server`: reads the configuration, sets up logging and runs the
//! server until SIGINT/SIGTERM or the `quit` command. A second signal during
//! the grace period exits at once.

use std::process::ExitCode;

use cantina_server::{
    config::{self, Sources},
    shutdown, telemetry,
};
use clap::{Arg, ArgAction, Command};
use tracing::{error, warn};

fn cli() -> Command {
    let command = Command::new("cantina-server")
        .version(cantina_server::VERSION)
        .about("The Cantina server: the control plane of an animatronic show droid")
        .after_help(
            "Every setting is read, in rising priority, from the embedded defaults, the TOML file \
             (--config), its CANTINA_* variable and its flag.",
        )
        .arg(
            Arg::new("print-config")
                .long("print-config")
                .action(ArgAction::SetTrue)
                .help("Print the configuration in force, as TOML, and exit"),
        );
    config::add_args(command)
}

fn main() -> ExitCode {
    // Before any thread starts: freed memory goes back to the system.
    cantina_server::memory::configure();
    let matches = cli().get_matches();
    let config = match Sources::from_matches(&matches).and_then(|s| s.resolve()) {
        Ok(config) => config,
        Err(errors) => {
            eprintln!("cantina-server: {errors}");
            return ExitCode::from(2);
        }
    };
    if matches.get_flag("print-config") {
        print!("{}", config.to_toml());
        return ExitCode::SUCCESS;
    }
    telemetry::init(&config);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cantina-server: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let mut signals = match shutdown::Signals::install() {
            Ok(signals) => signals,
            Err(e) => {
                eprintln!("cantina-server: cannot install the signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        let server = match cantina_server::start(config).await {
            Ok(server) => server,
            Err(e) => {
                error!(error = %e, "cannot start");
                eprintln!("cantina-server: {e}");
                return ExitCode::FAILURE;
            }
        };
        let trigger = server.shutdown().clone();
        tokio::spawn(async move {
            let first = signals.recv().await;
            warn!(
                signal = first,
                "shutting down; send it again to exit at once"
            );
            trigger.trigger(first);
            let second = signals.recv().await;
            warn!(signal = second, "second signal: exiting now");
            std::process::exit(130);
        });
        match server.wait().await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                error!(error = %e, "server failed");
                ExitCode::FAILURE
            }
        }
    })
}
