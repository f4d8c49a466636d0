//! The command line, declared with clap's derive API.
//!
//! Only `commands`, `status`, `events`, `publish`, `logs`, `log-level`,
//! `plan`, `panic`, `shell` and `completions` are subcommands of the CLI
//! itself (the options of `logs` are in [`log_args`](crate::log_args), those
//! of `plan` and `panic` in [`plan_args`](crate::plan_args)); any other words
//! are a console line for the server, captured by an external subcommand. clap's `help` subcommand is
//! switched off so that `cantina help engage` reaches the server, which owns
//! the command list.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::{
    log_args::{self, LogsArgs},
    plan_args::{self, PanicArgs, PlanArgs},
};

/// Command-line client of the Cantina droid server.
#[derive(Debug, Parser)]
#[command(
    name = "cantina",
    version,
    disable_help_subcommand = true,
    arg_required_else_help = true,
    after_help = "Any other words are a console command for the droid, sent as one line:\n  \
                  cantina eye pattern happy\n  \
                  cantina play music \"cantina band\"\n  \
                  cantina help engage\n\
                  Options go before the command words; everything after them is sent as is."
)]
pub struct Cli {
    /// Connection and output options, accepted before any subcommand.
    #[command(flatten)]
    pub global: GlobalArgs,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand shares.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Address of the server: host:port, :port, http://host:port, or
    /// https://host:port for TLS.
    #[arg(
        long,
        global = true,
        env = "CANTINA_SERVER",
        default_value = cantina::client::DEFAULT_SERVER,
        value_name = "ADDR"
    )]
    pub server: String,

    /// Bearer token, when the server requires one.
    // The value never appears in --help, only the variable's name.
    #[arg(
        long,
        global = true,
        env = "CANTINA_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<String>,

    /// File holding the bearer token (its text, the trailing newline
    /// trimmed), which keeps the token out of the process list and the
    /// environment; instead of --token.
    #[arg(
        long,
        global = true,
        env = "CANTINA_TOKEN_FILE",
        value_name = "FILE",
        conflicts_with = "token"
    )]
    pub token_file: Option<PathBuf>,

    /// CA certificate (PEM) to trust for TLS, such as the server's own
    /// self-signed certificate; without it, https:// trusts the system's
    /// roots. With it, an address without a scheme uses https://.
    #[arg(long, global = true, env = "CANTINA_TLS_CA", value_name = "FILE")]
    pub tls_ca: Option<PathBuf>,

    /// How to print results.
    #[arg(
        short,
        long,
        global = true,
        value_enum,
        default_value_t = Format::Text,
        value_name = "FORMAT"
    )]
    pub output: Format,

    /// Id that ties together the logs and events a command causes; the server
    /// generates one when it is not given.
    #[arg(long, global = true, value_name = "ID")]
    pub correlation_id: Option<String>,
}

impl GlobalArgs {
    /// The token to send: `--token`, or the text of `--token-file` without
    /// its trailing newline; an unreadable or empty file says so.
    pub fn token(&self) -> Result<Option<String>, cantina::client::ConnectError> {
        let Some(path) = &self.token_file else {
            return Ok(self.token.clone());
        };
        let bad = |problem: String| {
            cantina::client::ConnectError::BadTokenFile(format!(
                "the token file {} {problem}",
                path.display()
            ))
        };
        let text =
            std::fs::read_to_string(path).map_err(|e| bad(format!("cannot be read: {e}")))?;
        let token = text.strip_suffix('\n').unwrap_or(&text);
        let token = token.strip_suffix('\r').unwrap_or(token);
        if token.is_empty() {
            return Err(bad("is empty: write the token into it".into()));
        }
        Ok(Some(token.to_string()))
    }
}

/// The output formats of `-o`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// For people: the server's message, the status tables, one line per
    /// event or log entry (alias: pretty).
    #[value(alias = "pretty")]
    Text,
    /// The bare message of each log entry (`logs`); as text elsewhere.
    Raw,
    /// The whole response as proto3 JSON, as grpcurl prints it; one compact
    /// object per line for `events`, `logs`, `plan run` and `plan watch`
    /// (JSON Lines).
    Json,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the commands the server understands.
    Commands {
        /// Only commands of this category, for example `system`.
        #[arg(long, value_name = "C")]
        category: Option<String>,
    },
    /// Show the state of the droid and its subsystems.
    Status,
    /// Print the droid's events live, until Ctrl-C.
    #[command(after_help = "Examples:\n  \
                            cantina events                    every event\n  \
                            cantina events 'system.*'         modes, start and stop\n  \
                            cantina events 'music.*' 'eyes.*'\n  \
                            cantina -o json events | jq .payload\n\
                            Quote globs so that the shell leaves them alone.")]
    Events(EventsArgs),
    /// Put an event on the droid's bus: one of your own under `ext.`, or a
    /// conversation event (`voice.listening.started` …).
    #[command(after_help = "Examples:\n  \
                            cantina publish ext.button.pressed '{\"button\": 3}'\n  \
                            cantina publish voice.listening.started\n  \
                            cantina publish voice.sentiment '{\"sentiment\": \"happy\"}'\n\
                            Clients publish topics under ext. (lowercase letters, digits, _ and -\n\
                            between dots) and voice.listening.started|stopped,\n\
                            voice.thinking.started|stopped and voice.sentiment (happy, sad,\n\
                            angry or surprised); the server refuses any other.")]
    Publish {
        /// The topic, such as `ext.button.pressed`.
        #[arg(value_name = "TOPIC")]
        topic: String,
        /// The payload: a JSON object.
        #[arg(value_name = "JSON")]
        payload: Option<String>,
    },
    /// Print the server's recent log entries, or follow them live with -f.
    #[command(after_help = log_args::LOGS_HELP)]
    Logs(LogsArgs),
    /// Change what the server logs, with a level or EnvFilter directives.
    #[command(after_help = "Examples:\n  \
                            cantina log-level debug\n  \
                            cantina log-level 'info,cantina_server::audio=trace'")]
    LogLevel {
        /// A level (`trace`, `debug`, `info`, `warn`, `error`) or EnvFilter
        /// directives such as `info,cantina_server::audio=debug`.
        #[arg(value_name = "FILTER")]
        filter: String,
    },
    /// Run, check, list, follow and stop plans: timed shows of speech,
    /// music and eyes.
    #[command(after_help = plan_args::PLAN_HELP, arg_required_else_help = true)]
    Plan(PlanArgs),
    /// The panic button: cancel every plan, fade out music and speech, and
    /// put the eyes back to the mode's pattern.
    Panic(PanicArgs),
    /// Open the interactive console (`DJ-R3X> `).
    Shell(ShellArgs),
    /// Print a shell completion script for cantina.
    Completions {
        /// The shell to write the script for.
        shell: clap_complete::Shell,
    },
    /// A console line for the server, word by word.
    #[command(external_subcommand)]
    Line(Vec<String>),
}

/// Options of `cantina events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Topic globs: `*` matches any characters, dots included, and `?` one
    /// character (`system.*`, `*.started`). An event is printed when its topic
    /// matches any glob; without globs, every event is. The server refuses a
    /// glob that matches no topic.
    #[arg(value_name = "TOPIC_GLOB")]
    pub topics: Vec<String>,

    /// Leave out the time (UTC, HH:MM:SS.mmm) at the start of each line.
    #[arg(long)]
    pub no_timestamps: bool,
}

/// Options of `cantina shell`.
#[derive(Debug, Args)]
pub struct ShellArgs {
    /// History file [default: <data dir>/cantina/cli-history].
    #[arg(long, value_name = "FILE")]
    pub history: Option<PathBuf>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_declaration_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn help_and_unknown_words_are_console_lines() {
        let cli = Cli::try_parse_from(["cantina", "help", "engage"]).unwrap();
        assert!(matches!(cli.command, Command::Line(words) if words == ["help", "engage"]));

        let cli = Cli::try_parse_from(["cantina", "-o", "json", "eye", "pattern", "-x"]).unwrap();
        assert_eq!(cli.global.output, Format::Json);
        assert!(matches!(cli.command, Command::Line(words) if words == ["eye", "pattern", "-x"]));
    }

    #[test]
    fn events_take_globs_and_global_options_after_them() {
        let cli = Cli::try_parse_from(["cantina", "events", "system.*", "music.*", "-o", "json"])
            .unwrap();
        assert_eq!(cli.global.output, Format::Json);
        let Command::Events(args) = cli.command else {
            panic!("expected events, got {:?}", cli.command);
        };
        assert_eq!(args.topics, ["system.*", "music.*"]);
        assert!(!args.no_timestamps);

        let cli = Cli::try_parse_from(["cantina", "events", "--no-timestamps"]).unwrap();
        assert!(
            matches!(cli.command, Command::Events(args) if args.topics.is_empty() && args.no_timestamps)
        );
    }

    #[test]
    fn publish_takes_a_topic_and_an_optional_json_payload() {
        let cli = Cli::try_parse_from(["cantina", "publish", "ext.b", "{\"n\": 1}"]).unwrap();
        assert!(matches!(cli.command,
            Command::Publish { topic, payload: Some(p) } if topic == "ext.b" && p == "{\"n\": 1}"));
        let cli = Cli::try_parse_from(["cantina", "publish", "voice.thinking.started"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Publish { payload: None, .. }
        ));
    }

    #[test]
    fn logs_take_filters_and_pretty_raw_json() {
        let cli = Cli::try_parse_from([
            "cantina",
            "logs",
            "-f",
            "--level",
            "warning",
            "--service",
            "audio",
            "--service",
            "eyes,bus",
            "--grep",
            "fail(ed)?",
            "-o",
            "raw",
        ])
        .unwrap();
        assert_eq!(cli.global.output, Format::Raw);
        let Command::Logs(args) = cli.command else {
            panic!("expected logs, got {:?}", cli.command);
        };
        assert!(args.follow);
        assert_eq!(args.level, Some(log_args::Level::Warn));
        assert_eq!(args.services, ["audio", "eyes", "bus"]);
        assert_eq!(args.grep.as_deref(), Some("fail(ed)?"));

        let cli = Cli::try_parse_from(["cantina", "-o", "pretty", "logs"]).unwrap();
        assert_eq!(cli.global.output, Format::Text);
        assert!(Cli::try_parse_from(["cantina", "logs", "--grep", "("]).is_err());
        assert!(Cli::try_parse_from(["cantina", "logs", "--since", "soon"]).is_err());

        let cli = Cli::try_parse_from(["cantina", "log-level", "debug"]).unwrap();
        assert!(matches!(cli.command, Command::LogLevel { filter } if filter == "debug"));
    }

    #[test]
    fn plan_subcommands_take_a_plan_and_their_options() {
        use crate::plan_args::{IfBusyArg, PlanCommand};
        let plan = |args: &[&str]| match Cli::try_parse_from(args).unwrap().command {
            Command::Plan(plan) => plan.command,
            other => panic!("expected plan, got {other:?}"),
        };
        let PlanCommand::Run(run) =
            plan(&["cantina", "plan", "run", "show.yaml", "--if-busy", "queue"])
        else {
            panic!("expected plan run");
        };
        assert_eq!(run.source.plan, "show.yaml");
        assert_eq!(run.if_busy, IfBusyArg::Queue);
        let PlanCommand::Start(start) = plan(&[
            "cantina",
            "plan",
            "start",
            "greeting",
            "--if-busy",
            "skip-if-running",
        ]) else {
            panic!("expected plan start");
        };
        assert_eq!(start.if_busy, IfBusyArg::Skip);
        assert!(matches!(
            plan(&["cantina", "plan", "validate", "x.json", "--timeline"]),
            PlanCommand::Validate(v) if v.timeline && v.source.plan == "x.json"
        ));
        assert!(matches!(
            plan(&["cantina", "plan", "watch", "plan-1", "plan-2"]),
            PlanCommand::Watch(w) if w.ids == ["plan-1", "plan-2"]
        ));
        assert!(matches!(
            plan(&["cantina", "plan", "cancel", "greeting", "--after-loop"]),
            PlanCommand::Cancel(c) if c.when() == cantina::v1::StopWhen::AfterLoop
        ));
        assert!(
            Cli::try_parse_from([
                "cantina",
                "plan",
                "cancel",
                "x",
                "--after-step",
                "--after-loop"
            ])
            .is_err()
        );
        // Other words are a console line for the server.
        assert!(matches!(
            plan(&["cantina", "plan", "status", "greeting"]),
            PlanCommand::Line(words) if words == ["status", "greeting"]
        ));
    }

    #[test]
    fn panic_takes_a_humantime_fade() {
        let cli = Cli::try_parse_from(["cantina", "panic", "--fade", "300ms"]).unwrap();
        assert!(matches!(cli.command,
            Command::Panic(p) if p.fade == Some(std::time::Duration::from_millis(300))));
        let cli = Cli::try_parse_from(["cantina", "panic"]).unwrap();
        assert!(matches!(cli.command, Command::Panic(p) if p.fade.is_none()));
        assert!(Cli::try_parse_from(["cantina", "panic", "--fade", "soon"]).is_err());
    }
}
