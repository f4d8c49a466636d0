//! The options of `cantina plan …` and `cantina panic`, and how a `FILE|NAME`
//! argument becomes the plan a request carries.
//!
//! A plan is given as a file (its text is sent as the request's `document`,
//! so that the server reports problems with their line numbers) or as the
//! name of a plan in the server's plans folder (`plan_name`). The file is
//! read here, before any connection, so that a missing file is a usage error
//! (exit 2) at once.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use cantina::v1::{IfBusy, StopWhen};
use clap::{Args, Subcommand, ValueEnum, ValueHint};

/// The extensions of plan files: an argument ending in one is always a file.
const PLAN_EXTENSIONS: [&str; 3] = ["json", "yaml", "yml"];

/// Examples and exit codes shown at the end of `cantina plan --help`.
pub const PLAN_HELP: &str = "\
Examples:
  cantina plan run show.yaml              run a plan file, print its events live
  cantina plan run greeting               run a plan of the server's plans folder
  cantina plan start dj-intro --if-busy queue
  cantina plan validate show.yaml --timeline
  cantina plan list
  cantina plan watch
  cantina plan cancel greeting --after-step
  cantina panic                           stop everything (also `cantina panic --fade 1s`)

FILE|NAME is a file when such a file exists (or it ends in .json, .yaml or
.yml, or holds a /): its text is sent and the server checks it. Otherwise it is
the name of a plan in the server's plans folder (`cantina plan list` shows
them). Any other words after `plan` are a console line for the server
(`cantina plan status`).";

/// Exit codes of `plan run` and `plan start`, at the end of their help.
pub const RUN_HELP: &str = "\
Exit codes: 0 the plan completed, 1 it failed (a step failed), 3 it was
cancelled or skipped (--if-busy skip and a plan of that name runs), 2 the plan
is not valid or not found (nothing ran), 69 the server cannot be reached or
went away, 130 Ctrl-C.

Ctrl-C only stops following: the plan carries on on the droid. Stop it with
`cantina plan cancel ID|NAME` (or `cantina panic`).";

/// Exit codes of `plan start`, at the end of its help.
pub const START_HELP: &str = "\
Prints `ID  STATUS  message`: RUNNING, PAUSED (an ambient plan under a
foreground one), PENDING (queued) or SKIPPED. Exit codes: 0 started or queued,
3 skipped, 2 the plan is not valid or not found (nothing ran), 69 the server
cannot be reached. `cantina plan watch ID` follows it.";

/// Options of `cantina plan`.
#[derive(Debug, Args)]
pub struct PlanArgs {
    /// What to do with plans.
    #[command(subcommand)]
    pub command: PlanCommand,
}

/// The subcommands of `cantina plan`.
#[derive(Debug, Subcommand)]
pub enum PlanCommand {
    /// Run a plan and print its events live until it ends; the exit code
    /// says how it ended.
    #[command(after_help = RUN_HELP)]
    Run(RunArgs),
    /// Start a plan and print its id and status at once.
    #[command(after_help = START_HELP)]
    Start(StartArgs),
    /// Check a plan file without running it: every problem as
    /// `FILE:LINE: path: message`; exit 1 when it is not valid.
    Validate(ValidateArgs),
    /// List the running and recently ended plans, and the plans of the
    /// server's plans folder.
    List,
    /// Print the events of every plan (or of the plans ID…) live, until
    /// Ctrl-C.
    Watch(WatchArgs),
    /// Cancel a plan: at once, or when its step or its loop ends.
    Cancel(CancelArgs),
    /// Hold a running plan where it is.
    Pause(TargetArgs),
    /// Carry on a plan held by `plan pause`.
    Resume(TargetArgs),
    /// Any other words: a console line `plan …` for the server.
    #[command(external_subcommand)]
    Line(Vec<String>),
}

/// A plan to run: a file or a name.
#[derive(Debug, Args)]
pub struct PlanSource {
    /// A plan file (JSON or YAML), or the name of a plan in the server's
    /// plans folder.
    #[arg(value_name = "FILE|NAME", value_hint = ValueHint::FilePath)]
    pub plan: String,
}

/// Options of `cantina plan run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The plan.
    #[command(flatten)]
    pub source: PlanSource,

    /// What to do when the plan's layer is busy.
    #[arg(long, value_enum, default_value_t = IfBusyArg::Replace, value_name = "WHAT")]
    pub if_busy: IfBusyArg,

    /// Leave out the time (UTC, HH:MM:SS.mmm) at the start of each line.
    #[arg(long)]
    pub no_timestamps: bool,
}

/// Options of `cantina plan start`.
#[derive(Debug, Args)]
pub struct StartArgs {
    /// The plan.
    #[command(flatten)]
    pub source: PlanSource,

    /// What to do when the plan's layer is busy.
    #[arg(long, value_enum, default_value_t = IfBusyArg::Replace, value_name = "WHAT")]
    pub if_busy: IfBusyArg,
}

/// Options of `cantina plan validate`.
#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// The plan.
    #[command(flatten)]
    pub source: PlanSource,

    /// Also print the resolved timeline of a valid plan: when each step
    /// starts and how long it lasts, where that is known before the show.
    #[arg(long)]
    pub timeline: bool,
}

/// Options of `cantina plan watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// Only the events of these plans (ids); without any, every plan's.
    #[arg(value_name = "ID")]
    pub ids: Vec<String>,

    /// Leave out the time (UTC, HH:MM:SS.mmm) at the start of each line.
    #[arg(long)]
    pub no_timestamps: bool,
}

/// Options of `cantina plan cancel`.
#[derive(Debug, Args)]
pub struct CancelArgs {
    /// The plan.
    #[command(flatten)]
    pub target: TargetArgs,

    /// Stop when the step running now ends, rather than at once.
    #[arg(long, conflicts_with = "after_loop")]
    pub after_step: bool,

    /// Stop when the current loop of a repeating plan ends.
    #[arg(long)]
    pub after_loop: bool,
}

impl CancelArgs {
    /// When the plan stops.
    pub fn when(&self) -> StopWhen {
        match (self.after_step, self.after_loop) {
            (true, _) => StopWhen::AfterStep,
            (_, true) => StopWhen::AfterLoop,
            _ => StopWhen::Now,
        }
    }
}

/// A plan that runs, by id or name.
#[derive(Debug, Args)]
pub struct TargetArgs {
    /// The plan's id (`plan list` shows them), or the name of an active plan.
    #[arg(value_name = "ID|NAME")]
    pub plan: String,
}

/// Options of `cantina panic`.
#[derive(Debug, Args)]
pub struct PanicArgs {
    /// How long music and speech fade out, such as `300ms` or `1s`
    /// [default: the server's, 300ms].
    #[arg(long, value_name = "DURATION", value_parser = parse_fade)]
    pub fade: Option<Duration>,
}

/// `--if-busy`: what a new plan does when its layer is busy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum IfBusyArg {
    /// Cancel the plan on the layer and start.
    Replace,
    /// Start when the plans on the layer have ended.
    Queue,
    /// Do nothing when a plan of the same name runs on the layer.
    #[value(alias = "skip-if-running")]
    Skip,
}

impl From<IfBusyArg> for IfBusy {
    fn from(arg: IfBusyArg) -> Self {
        match arg {
            IfBusyArg::Replace => IfBusy::Replace,
            IfBusyArg::Queue => IfBusy::Queue,
            IfBusyArg::Skip => IfBusy::SkipIfRunning,
        }
    }
}

/// The plan a request carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Plan {
    /// A file's text, sent as `document`.
    Document {
        /// The file, as given: problems are reported against it.
        path: PathBuf,
        /// Its text.
        text: String,
    },
    /// The name of a plan of the server's folder, sent as `plan_name`.
    Name(String),
}

impl Plan {
    /// The plan `argument` stands for: a file when such a file exists or
    /// the argument looks like a path (a plan extension, a `/`), a name
    /// otherwise. Errs when a file cannot be read.
    pub fn from_argument(argument: &str) -> Result<Self, String> {
        let path = Path::new(argument);
        let looks_like_a_file = path.is_file()
            || argument.contains(['/', std::path::MAIN_SEPARATOR])
            || path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                PLAN_EXTENSIONS
                    .iter()
                    .any(|known| e.eq_ignore_ascii_case(known))
            });
        if !looks_like_a_file {
            return Ok(Plan::Name(argument.to_string()));
        }
        std::fs::read_to_string(path)
            .map(|text| Plan::Document {
                path: path.to_path_buf(),
                text,
            })
            .map_err(|e| format!("cannot read the plan file {argument}: {e}"))
    }

    /// What problems are reported against: the file, or the plan's name.
    pub fn label(&self) -> String {
        match self {
            Plan::Document { path, .. } => path.display().to_string(),
            Plan::Name(name) => name.clone(),
        }
    }

    /// The request's `document` and `plan_name`, one of them empty.
    pub fn fields(&self) -> (String, String) {
        match self {
            Plan::Document { text, .. } => (text.clone(), String::new()),
            Plan::Name(name) => (String::new(), name.clone()),
        }
    }
}

/// `--fade`: a humantime duration (`300ms`, `1s`, `1.5s`).
fn parse_fade(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    humantime::parse_duration(text)
        .or_else(|e| {
            // humantime takes no fractions; `1.5s` is how people write it.
            text.strip_suffix('s')
                .and_then(|seconds| seconds.parse::<f64>().ok())
                .and_then(|seconds| Duration::try_from_secs_f64(seconds).ok())
                .ok_or(e)
        })
        .map_err(|_| "expected a duration such as 300ms, 1s or 1.5s".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_file_or_a_plan_extension_is_a_file_else_a_name() {
        let dir = std::env::temp_dir().join(format!("cantina-plan-args-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("show");
        std::fs::write(&file, "steps: []\n").unwrap();
        let argument = file.to_str().unwrap();
        assert_eq!(
            Plan::from_argument(argument).unwrap(),
            Plan::Document {
                path: file.clone(),
                text: "steps: []\n".into()
            }
        );
        assert_eq!(
            Plan::from_argument("greeting").unwrap(),
            Plan::Name("greeting".into())
        );
        assert_eq!(Plan::from_argument("greeting").unwrap().label(), "greeting");
        for missing in ["missing.yaml", "missing.JSON", "plans/missing"] {
            let error = Plan::from_argument(missing).unwrap_err();
            assert!(error.contains(missing), "{error}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_request_carries_the_text_or_the_name() {
        let document = Plan::Document {
            path: "a.yaml".into(),
            text: "x".into(),
        };
        assert_eq!(document.fields(), ("x".into(), String::new()));
        assert_eq!(document.label(), "a.yaml");
        assert_eq!(
            Plan::Name("greeting".into()).fields(),
            (String::new(), "greeting".into())
        );
    }

    #[test]
    fn fades_are_humantime_or_decimal_seconds() {
        assert_eq!(parse_fade("300ms"), Ok(Duration::from_millis(300)));
        assert_eq!(parse_fade("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_fade("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_fade("soon").is_err());
        assert!(parse_fade("-1s").is_err());
    }

    #[test]
    fn cancel_stops_now_unless_told_otherwise() {
        let cancel = |after_step, after_loop| CancelArgs {
            target: TargetArgs { plan: "p".into() },
            after_step,
            after_loop,
        };
        assert_eq!(cancel(false, false).when(), StopWhen::Now);
        assert_eq!(cancel(true, false).when(), StopWhen::AfterStep);
        assert_eq!(cancel(false, true).when(), StopWhen::AfterLoop);
    }
}
