//! The plans by hand: `plan run <name>`, `plan list`, `plan status`,
//! `plan stop`, `plan pause`, `plan resume` and `panic`; and
//! [`PlanCommands`], which runs the `command` steps of plans through the
//! dispatcher, as `Dispatch` would.

use std::sync::{Arc, Weak};

use serde_json::json;

use super::{Category, Command, CommandError, CommandSpec, Context, Dispatcher, Reply};
use crate::{
    lifecycle::BoxFuture,
    plans::{
        Changed, PlanError, PlanInfo, PlanStatus, Plans, executor::CommandRunner, files::LoadError,
        layers::IfBusy, service::layer_name, timeline::StopMode,
    },
};

/// Runs plans' `command` steps through the dispatcher. It holds the
/// dispatcher weakly: the dispatcher holds the droid, which holds the plans.
pub struct PlanCommands {
    dispatcher: Weak<Dispatcher>,
}

impl PlanCommands {
    /// A runner over `dispatcher`.
    pub fn new(dispatcher: &Arc<Dispatcher>) -> Self {
        Self {
            dispatcher: Arc::downgrade(dispatcher),
        }
    }
}

impl CommandRunner for PlanCommands {
    fn check(&self, line: &str) -> Result<(), String> {
        match self.dispatcher.upgrade() {
            Some(dispatcher) => dispatcher.check(line).map_err(|e| {
                // The first line of the refusal: the usage and the hint to
                // type 'help' belong to the console.
                e.to_string().lines().next().unwrap_or_default().to_string()
            }),
            None => Ok(()),
        }
    }

    fn run(&self, line: String) -> BoxFuture<'static, Result<String, String>> {
        let dispatcher = self.dispatcher.clone();
        Box::pin(async move {
            let Some(dispatcher) = dispatcher.upgrade() else {
                return Err("the server is stopping".to_string());
            };
            // On a task of its own, with the plan's correlation id: a line
            // that stops the plan itself (`panic`, `plan stop`, `reset`)
            // aborts the step, and must still finish its work.
            let correlation = crate::bus::current_correlation();
            let work = async move {
                dispatcher
                    .dispatch(&line)
                    .await
                    .map(|done| done.reply.message)
                    .map_err(|e| e.to_string())
            };
            let task = match correlation {
                Some(id) => tokio::spawn(crate::bus::with_correlation(id.to_string(), work)),
                None => tokio::spawn(work),
            };
            task.await
                .unwrap_or_else(|e| Err(format!("the command did not finish: {e}")))
        })
    }
}

/// Declaration of `plan run`.
pub static RUN: CommandSpec = CommandSpec {
    name: "plan run",
    aliases: &["run plan"],
    shortcuts: &[],
    usage: "plan run <name> [replace|queue|skip]",
    description: "start a plan of the plans folder (a busy layer: replace its plan, queue after it, or skip if that plan already runs)",
    category: Category::Plans,
    min_args: 1,
    max_args: Some(2),
    parse: |spec, args| {
        let if_busy = match args.get(1).map(String::as_str) {
            None | Some("replace") => IfBusy::Replace,
            Some("queue") => IfBusy::Queue,
            Some("skip") => IfBusy::SkipIfRunning,
            Some(other) => {
                return Err(CommandError::BadArgs {
                    spec,
                    problem: format!(
                        "'{other}' is not what to do when the layer is busy: give replace, queue or skip"
                    ),
                });
            }
        };
        Ok(Command::Plan(Plan::Run(args[0].clone(), if_busy)))
    },
};

/// Declaration of `plan list`.
pub static LIST: CommandSpec = CommandSpec {
    name: "plan list",
    aliases: &["list plans", "plans"],
    shortcuts: &[],
    usage: "plan list",
    description: "the plans of the plans folder, and the plans running, paused or queued",
    category: Category::Plans,
    min_args: 0,
    max_args: Some(0),
    parse: |_, _| Ok(Command::Plan(Plan::List)),
};

/// Declaration of `plan status`.
pub static STATUS: CommandSpec = CommandSpec {
    name: "plan status",
    aliases: &[],
    shortcuts: &[],
    usage: "plan status [id|name]",
    description: "what each plan on the layers is doing (or one plan, also one that ended)",
    category: Category::Plans,
    min_args: 0,
    max_args: Some(1),
    parse: |_, args| Ok(Command::Plan(Plan::Status(args.into_iter().next()))),
};

/// Declaration of `plan stop`.
pub static STOP: CommandSpec = CommandSpec {
    name: "plan stop",
    aliases: &["plan cancel", "stop plan"],
    shortcuts: &[],
    usage: "plan stop <id|name|all> [now|after-step|after-loop]",
    description: "cancel a plan: at once (default), when its current step ends, or when its loop ends",
    category: Category::Plans,
    min_args: 1,
    max_args: Some(2),
    parse: |spec, args| {
        let when = match args.get(1).map(String::as_str) {
            None | Some("now") => StopMode::Now,
            Some("after-step") => StopMode::AfterStep,
            Some("after-loop") => StopMode::AfterLoop,
            Some(other) => {
                return Err(CommandError::BadArgs {
                    spec,
                    problem: format!(
                        "'{other}' is not when to stop: give now, after-step or after-loop"
                    ),
                });
            }
        };
        Ok(Command::Plan(Plan::Stop(args[0].clone(), when)))
    },
};

/// Declaration of `plan pause`.
pub static PAUSE: CommandSpec = CommandSpec {
    name: "plan pause",
    aliases: &["pause plan"],
    shortcuts: &[],
    usage: "plan pause [id|name]",
    description: "hold a plan where it is (without a name: the one plan running)",
    category: Category::Plans,
    min_args: 0,
    max_args: Some(1),
    parse: |_, args| Ok(Command::Plan(Plan::Pause(args.into_iter().next()))),
};

/// Declaration of `plan resume`.
pub static RESUME: CommandSpec = CommandSpec {
    name: "plan resume",
    aliases: &["resume plan"],
    shortcuts: &[],
    usage: "plan resume [id|name]",
    description: "carry on a plan held by 'plan pause' (without a name: the one paused)",
    category: Category::Plans,
    min_args: 0,
    max_args: Some(1),
    parse: |_, args| Ok(Command::Plan(Plan::Resume(args.into_iter().next()))),
};

/// Declaration of `panic`.
pub static PANIC: CommandSpec = CommandSpec {
    name: "panic",
    aliases: &["stop all"],
    shortcuts: &[],
    usage: "panic",
    description: "stop everything: every plan cancelled, music and speech faded out, eyes to the mode's pattern, servos home",
    category: Category::Plans,
    min_args: 0,
    max_args: Some(0),
    parse: |_, _| Ok(Command::Plan(Plan::Panic)),
};

/// A plan command.
#[derive(Debug)]
pub enum Plan {
    /// `plan run`.
    Run(String, IfBusy),
    /// `plan list`.
    List,
    /// `plan status`.
    Status(Option<String>),
    /// `plan stop`.
    Stop(String, StopMode),
    /// `plan pause`.
    Pause(Option<String>),
    /// `plan resume`.
    Resume(Option<String>),
    /// `panic`.
    Panic,
}

impl From<PlanError> for CommandError {
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::Invalid(_) | PlanError::BadRequest(_) | PlanError::AlreadyExists(_) => {
                CommandError::FailedPrecondition(e.to_string())
            }
            PlanError::NotFound(m) => CommandError::NotFound(m),
            PlanError::QueueFull(m) => CommandError::ResourceExhausted(m),
            PlanError::Unavailable(m) => CommandError::Unavailable(m),
        }
    }
}

fn plan_data(info: &PlanInfo) -> serde_json::Value {
    serde_json::to_value(info).unwrap_or_default()
}

/// One line of a plan for people.
fn line(info: &PlanInfo) -> String {
    let mut text = format!(
        "{:<10} {:<10} {:<10} {} ({})",
        layer_name(info.layer),
        info.status.as_str(),
        info.id,
        info.name,
        match info.current_step.as_deref() {
            Some(step) if !info.status.is_ended() => format!(
                "step {}/{} '{step}', {:.1} s",
                (info.steps_done + 1).min(info.steps_total),
                info.steps_total,
                info.elapsed_now().as_secs_f64()
            ),
            _ => format!("{} steps", info.steps_total),
        }
    );
    if info.loop_number > 1 {
        text.push_str(&format!(", loop {}", info.loop_number));
    }
    if !info.message.is_empty() {
        text.push_str(&format!(": {}", info.message));
    }
    text
}

impl Plan {
    pub(super) async fn apply(self, ctx: &Context<'_>) -> Result<Reply, CommandError> {
        let plans = &ctx.droid.plans;
        Ok(match self {
            Plan::Run(name, if_busy) => {
                let (plan, _) = plans.folder()?.load(&name).map_err(|e| match e {
                    LoadError::NotFound { .. } => CommandError::NotFound(e.to_string()),
                    LoadError::Io { .. } => CommandError::Unavailable(e.to_string()),
                    _ => CommandError::FailedPrecondition(e.to_string()),
                })?;
                let problems = plans.check(&plan).await;
                if !problems.is_empty() {
                    return Err(PlanError::Invalid(problems).into());
                }
                let started = plans.start(plan, if_busy).await?;
                Reply::with_data(
                    format!("{} ({})", started.message, started.id),
                    json!({"plan_id": started.id, "status": started.status, "message": started.message}),
                )
            }
            Plan::List => {
                let folder = plans.folder()?;
                let saved = folder.list();
                let state = plans.state();
                let mut text = format!("plans in {}:\n", folder.dir().display());
                if saved.is_empty() {
                    text.push_str("  (none: put .json or .yaml plan files there)\n");
                }
                for s in &saved {
                    match &s.problem {
                        None => text.push_str(&format!(
                            "  {:<20} {:<10} {} steps\n",
                            s.name,
                            s.layer.map_or("?", layer_name),
                            s.steps
                        )),
                        Some(problem) => {
                            text.push_str(&format!("  {:<20} not valid: {problem}\n", s.name));
                        }
                    }
                }
                if state.active.is_empty() {
                    text.push_str("no plan running");
                } else {
                    text.push_str("active:\n");
                    for info in &state.active {
                        text.push_str(&format!("  {}\n", line(info)));
                    }
                }
                let saved: Vec<serde_json::Value> = saved
                    .iter()
                    .map(|s| {
                        json!({
                            "name": s.name,
                            "path": s.path.display().to_string(),
                            "layer": s.layer.map(layer_name),
                            "steps": s.steps,
                            "problem": s.problem,
                        })
                    })
                    .collect();
                Reply::with_data(
                    text.trim_end().to_string(),
                    json!({"saved": saved, "active": state.active.iter().map(plan_data).collect::<Vec<_>>()}),
                )
            }
            Plan::Status(None) => {
                let state = plans.state();
                let mut text = String::new();
                if state.active.is_empty() {
                    text.push_str("no plan running, paused or queued");
                } else {
                    for info in &state.active {
                        text.push_str(&format!("{}\n", line(info)));
                    }
                }
                if let Some(last) = state.ended.first() {
                    text.push_str(&format!("\nlast ended: {}", line(last)));
                }
                Reply::with_data(
                    text.trim_end().to_string(),
                    json!({
                        "active": state.active.iter().map(plan_data).collect::<Vec<_>>(),
                        "ended": state.ended.iter().map(plan_data).collect::<Vec<_>>(),
                    }),
                )
            }
            Plan::Status(Some(which)) => {
                let state = plans.state();
                let info = state
                    .active
                    .iter()
                    .chain(&state.ended)
                    .find(|p| p.id == which || p.name == which)
                    .ok_or_else(|| {
                        CommandError::NotFound(format!(
                            "no plan '{which}' is active or ended lately; 'plan status' lists them"
                        ))
                    })?;
                Reply::with_data(line(info), plan_data(info))
            }
            Plan::Stop(which, when) if which == "all" && when == StopMode::Now => {
                let ids = plans.cancel_all("cancelled by 'plan stop all'").await?;
                Reply::with_data(
                    match ids.len() {
                        0 => "no plan was running".to_string(),
                        n => format!("{n} plan(s) cancelled: {}", ids.join(", ")),
                    },
                    json!({"cancelled": ids}),
                )
            }
            Plan::Stop(which, when) if which == "all" => {
                let ids: Vec<String> = plans.state().active.iter().map(|p| p.id.clone()).collect();
                for id in &ids {
                    plans.cancel(id, when).await?;
                }
                Reply::with_data(
                    format!(
                        "{} plan(s) will stop {}",
                        ids.len(),
                        if when == StopMode::AfterLoop {
                            "when their loops end"
                        } else {
                            "when their steps end"
                        }
                    ),
                    json!({"stopping": ids}),
                )
            }
            Plan::Stop(which, when) => changed(plans.cancel(&which, when).await?),
            Plan::Pause(which) => {
                let which = which_one(plans, which, PlanStatus::Running, "running")?;
                changed(plans.pause(&which).await?)
            }
            Plan::Resume(which) => {
                let which = which_one(plans, which, PlanStatus::Paused, "paused")?;
                changed(plans.resume(&which).await?)
            }
            Plan::Panic => {
                let panic = ctx.droid.panic(None).await;
                Reply::with_data(panic.message.clone(), json!({"cancelled": panic.cancelled}))
            }
        })
    }
}

fn changed(changed: Changed) -> Reply {
    Reply::with_data(
        format!("{}: {}", changed.id, changed.message),
        json!({"plan_id": changed.id, "status": changed.status, "message": changed.message}),
    )
}

/// The plan named, or the one plan in `status` when none is named.
fn which_one(
    plans: &Plans,
    which: Option<String>,
    status: PlanStatus,
    word: &str,
) -> Result<String, CommandError> {
    if let Some(which) = which {
        return Ok(which);
    }
    let state = plans.state();
    let candidates: Vec<&PlanInfo> = state.active.iter().filter(|p| p.status == status).collect();
    match candidates.as_slice() {
        [one] => Ok(one.id.clone()),
        [] => Err(CommandError::FailedPrecondition(format!(
            "no plan is {word}"
        ))),
        many => Err(CommandError::FailedPrecondition(format!(
            "{} plans are {word}; name one: {}",
            many.len(),
            many.iter()
                .map(|p| format!("{} ({})", p.id, p.name))
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}
