//! `cantina plan run|start|validate|list|watch|cancel|pause|resume` and
//! `cantina panic`: the PlanService from the command line.
//!
//! `plan run` follows its plan's events (RunPlan) and exits by how the plan
//! ended ([`error::plan_exit_code`]: 0 completed, 1 failed, 3 cancelled or
//! skipped); Ctrl-C only stops following (130), the plan carries on.
//! `plan watch` follows every plan (WatchPlans) until Ctrl-C, as `events`
//! does. A plan file that the server refuses (`run`, `start`) is checked
//! again with ValidatePlan so that its problems are printed as
//! `FILE:LINE: path: message`, as `plan validate` prints them. Any other
//! words after `plan` are a console line (`cantina plan status`).

use std::{
    io::{self, IsTerminal},
    process::ExitCode,
};

use cantina::v1::{
    CancelPlanRequest, IfBusy, PlanEvent, PlanEventKind, PlanStatus, RunPlanRequest,
    StartPlanRequest, ValidatePlanRequest,
};
use tokio::runtime::Runtime;
use tonic::{Code, Status, Streaming};

use crate::{
    args::{Format, GlobalArgs},
    colour::Colours,
    error::{self, Failure},
    output,
    plan_args::{
        CancelArgs, PanicArgs, Plan, PlanArgs, PlanCommand, RunArgs, StartArgs, TargetArgs,
        ValidateArgs, WatchArgs,
    },
    plan_text::{self, PlanLines},
    remote::Remote,
    run::{self, done, failed},
};

/// Runs `cantina plan …`.
pub fn run(runtime: &Runtime, global: &GlobalArgs, args: &PlanArgs) -> ExitCode {
    match &args.command {
        PlanCommand::Run(args) => run_plan(runtime, global, args),
        PlanCommand::Start(args) => start(runtime, global, args),
        PlanCommand::Validate(args) => validate(runtime, global, args),
        PlanCommand::List => list(runtime, global),
        PlanCommand::Watch(args) => watch(runtime, global, args),
        PlanCommand::Cancel(args) => cancel(runtime, global, args),
        PlanCommand::Pause(target) => pause(runtime, global, target),
        PlanCommand::Resume(target) => resume(runtime, global, target),
        PlanCommand::Line(words) => {
            let mut line = vec!["plan".to_string()];
            line.extend(words.iter().cloned());
            run::dispatch(runtime, global, &cantina::line::join(&line))
        }
    }
}

/// `cantina panic`: StopAll.
pub fn panic(runtime: &Runtime, global: &GlobalArgs, args: &PanicArgs) -> ExitCode {
    let fade = args
        .fade
        .map(|fade| prost_types::Duration::try_from(fade).unwrap_or_default());
    let result = runtime.block_on(async { Remote::connect(global).await?.stop_all(fade).await });
    match result {
        Ok(response) => done(output::to_stdout(|out| {
            output::stopped(out, global.output, &response)
        })),
        Err(failure) => failed(&failure),
    }
}

/// The plan named on the command line, or exit 2 when its file cannot be
/// read.
fn plan_of(argument: &str) -> Result<Plan, ExitCode> {
    Plan::from_argument(argument).map_err(|problem| {
        output::error(problem);
        ExitCode::from(2)
    })
}

/// How following a stream of plan events ended, when it was not a failure.
#[derive(Debug)]
enum End {
    /// The plan ended (`plan run`), with this status.
    Ended(PlanStatus),
    /// The server closed the stream with an OK status (`plan watch`).
    ServerClosed,
    /// Nobody reads stdout any more.
    StdoutClosed,
    /// The user pressed Ctrl-C.
    Interrupted,
}

/// Prints plan events in the chosen format, remembering the plan followed.
#[derive(Debug)]
struct Printer {
    /// Text lines or JSON Lines.
    format: Format,
    /// The text renderer, with the column widths seen so far.
    lines: PlanLines,
    /// The id of the plan of the last event, for the word after Ctrl-C.
    last: Option<String>,
}

impl Printer {
    fn new(format: Format, timestamps: bool) -> Self {
        Self {
            format,
            lines: PlanLines::new(Colours::for_stdout(), timestamps),
            last: None,
        }
    }

    /// Prints one event; false when stdout is gone.
    fn print(&mut self, event: &PlanEvent) -> bool {
        self.last = Some(event.plan_id.clone());
        let line = match self.format {
            Format::Text | Format::Raw => self.lines.line(event),
            Format::Json => plan_text::json_line(event),
        };
        output::to_stdout(|out| output::line(out, &line))
    }
}

/// Prints the events of `stream` until it ends, stdout closes or, with
/// `until_end`, the plan ends.
async fn follow(
    remote: &Remote,
    mut stream: Streaming<PlanEvent>,
    printer: &mut Printer,
    until_end: bool,
) -> Result<End, Failure> {
    loop {
        match stream.message().await {
            Ok(Some(event)) => {
                if !printer.print(&event) {
                    return Ok(End::StdoutClosed);
                }
                if until_end && event.kind() == PlanEventKind::Ended {
                    return Ok(End::Ended(event.status()));
                }
            }
            Ok(None) => return Ok(End::ServerClosed),
            Err(status) => return Err(remote.failure(status)),
        }
    }
}

/// Runs `work` until it ends or Ctrl-C.
fn interruptible(
    runtime: &Runtime,
    work: impl Future<Output = Result<End, Failure>>,
) -> Result<End, Failure> {
    runtime.block_on(async {
        tokio::select! {
            end = work => end,
            // If the handler cannot be installed this branch is disabled and
            // Ctrl-C kills the process as usual, which is fine here too.
            Ok(()) = tokio::signal::ctrl_c() => Ok(End::Interrupted),
        }
    })
}

/// `cantina plan run`: RunPlan, followed to the plan's end.
fn run_plan(runtime: &Runtime, global: &GlobalArgs, args: &RunArgs) -> ExitCode {
    let plan = match plan_of(&args.source.plan) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let (document, plan_name) = plan.fields();
    let request = RunPlanRequest {
        plan: None,
        if_busy: IfBusy::from(args.if_busy) as i32,
        plan_name,
        document,
    };
    let mut printer = Printer::new(global.output, !args.no_timestamps);
    let end = interruptible(runtime, async {
        let remote = Remote::connect(global).await?;
        let stream = match remote.run_plan(request).await {
            Ok(stream) => stream,
            Err(failure) => return Err(explain(&remote, &plan, failure).await),
        };
        follow(&remote, stream, &mut printer, true).await
    });
    match end {
        Ok(End::Ended(status)) => error::plan_exit_code(status),
        Ok(End::ServerClosed) => failed(&Failure::Server(Status::unavailable(
            "the server ended the plan's events before the plan ended; it is probably \
             shutting down",
        ))),
        Ok(End::StdoutClosed) => ExitCode::FAILURE,
        Ok(End::Interrupted) => {
            // Said even to scripts (on stderr): the plan outlives the command.
            let plan = printer.last.unwrap_or_else(|| args.source.plan.clone());
            output::note(format!(
                "stopped following; the plan goes on (`cantina plan cancel {plan}` stops it)"
            ));
            Failure::Interrupted.exit_code()
        }
        Err(failure) => failed(&failure),
    }
}

/// `cantina plan start`: StartPlan.
fn start(runtime: &Runtime, global: &GlobalArgs, args: &StartArgs) -> ExitCode {
    let plan = match plan_of(&args.source.plan) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let (document, plan_name) = plan.fields();
    let request = StartPlanRequest {
        plan: None,
        if_busy: IfBusy::from(args.if_busy) as i32,
        plan_name,
        document,
    };
    let result = runtime.block_on(async {
        let remote = Remote::connect(global).await?;
        match remote.start_plan(request).await {
            Ok(started) => Ok(started),
            Err(failure) => Err(explain(&remote, &plan, failure).await),
        }
    });
    match result {
        Ok(started) => {
            let printed = output::to_stdout(|out| {
                output::plan_change(
                    out,
                    global.output,
                    &started.plan_id,
                    started.status,
                    &started.message,
                    cantina::json::to_json(&started),
                )
            });
            if printed {
                error::plan_exit_code(started.status())
            } else {
                ExitCode::FAILURE
            }
        }
        Err(failure) => failed(&failure),
    }
}

/// The failure of a run or start, with a refused plan file's problems
/// printed as `FILE:LINE: path: message` first (from ValidatePlan, which
/// gives them one by one), and its message cut to the summary.
async fn explain(remote: &Remote, plan: &Plan, failure: Failure) -> Failure {
    let refused = matches!(&failure, Failure::Server(s) if s.code() == Code::InvalidArgument);
    let (document, _) = plan.fields();
    if !refused || document.is_empty() {
        return failure;
    }
    let request = ValidatePlanRequest {
        document,
        ..ValidatePlanRequest::default()
    };
    match remote.validate_plan(request).await {
        Ok(verdict) if !verdict.valid && !verdict.problems.is_empty() => {
            let label = plan.label();
            for problem in &verdict.problems {
                output::diagnostic(plan_text::problem_line(&label, problem));
            }
            let n = verdict.problems.len();
            Failure::Server(Status::invalid_argument(format!(
                "{label} is not a valid plan ({n} problem{}); nothing ran",
                if n == 1 { "" } else { "s" }
            )))
        }
        _ => failure,
    }
}

/// `cantina plan validate`: ValidatePlan; exit 1 when not valid.
fn validate(runtime: &Runtime, global: &GlobalArgs, args: &ValidateArgs) -> ExitCode {
    let plan = match plan_of(&args.source.plan) {
        Ok(plan) => plan,
        Err(code) => return code,
    };
    let (document, plan_name) = plan.fields();
    let request = ValidatePlanRequest {
        plan: None,
        plan_name,
        document,
    };
    let result =
        runtime.block_on(async { Remote::connect(global).await?.validate_plan(request).await });
    match result {
        Ok(verdict) => {
            let printed = output::to_stdout(|out| {
                output::validation(
                    out,
                    global.output,
                    &plan.label(),
                    &verdict,
                    args.timeline,
                    Colours::for_stdout(),
                )
            });
            if printed && verdict.valid {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(failure) => failed(&failure),
    }
}

/// `cantina plan list`: ListPlans.
fn list(runtime: &Runtime, global: &GlobalArgs) -> ExitCode {
    let result = runtime.block_on(async { Remote::connect(global).await?.list_plans().await });
    match result {
        Ok(list) => done(output::to_stdout(|out| {
            output::plans(out, global.output, &list, Colours::for_stdout())
        })),
        Err(failure) => failed(&failure),
    }
}

/// `cantina plan watch`: WatchPlans until Ctrl-C.
fn watch(runtime: &Runtime, global: &GlobalArgs, args: &WatchArgs) -> ExitCode {
    let mut printer = Printer::new(global.output, !args.no_timestamps);
    let end = interruptible(runtime, async {
        let remote = Remote::connect(global).await?;
        let stream = remote.watch_plans(&args.ids).await?;
        // A person sees a blank screen until a plan does something; say
        // that the watch is live. Scripts get no chatter.
        if global.output != Format::Json && io::stderr().is_terminal() {
            let what = if args.ids.is_empty() {
                "every plan".to_string()
            } else {
                args.ids.join(" ")
            };
            output::note(format!(
                "watching {what} at {}; Ctrl-C to stop",
                remote.address()
            ));
        }
        follow(&remote, stream, &mut printer, false).await
    });
    match end {
        Ok(End::ServerClosed) => {
            output::note("the server ended the plan events; it is probably shutting down");
            ExitCode::SUCCESS
        }
        // Only `plan run` stops at a plan's end.
        Ok(End::Ended(_)) => ExitCode::SUCCESS,
        Ok(End::StdoutClosed) => ExitCode::FAILURE,
        Ok(End::Interrupted) => Failure::Interrupted.exit_code(),
        Err(failure) => failed(&failure),
    }
}

/// `cantina plan cancel`: CancelPlan.
fn cancel(runtime: &Runtime, global: &GlobalArgs, args: &CancelArgs) -> ExitCode {
    let request = CancelPlanRequest {
        plan_id: args.target.plan.clone(),
        when: args.when() as i32,
    };
    let result =
        runtime.block_on(async { Remote::connect(global).await?.cancel_plan(request).await });
    match result {
        Ok(r) => changed(
            global,
            &r.plan_id,
            r.status,
            &r.message,
            cantina::json::to_json(&r),
        ),
        Err(failure) => failed(&failure),
    }
}

/// `cantina plan pause`: PausePlan.
fn pause(runtime: &Runtime, global: &GlobalArgs, target: &TargetArgs) -> ExitCode {
    let result = runtime.block_on(async {
        Remote::connect(global)
            .await?
            .pause_plan(&target.plan)
            .await
    });
    match result {
        Ok(r) => changed(
            global,
            &r.plan_id,
            r.status,
            &r.message,
            cantina::json::to_json(&r),
        ),
        Err(failure) => failed(&failure),
    }
}

/// `cantina plan resume`: ResumePlan.
fn resume(runtime: &Runtime, global: &GlobalArgs, target: &TargetArgs) -> ExitCode {
    let result = runtime.block_on(async {
        Remote::connect(global)
            .await?
            .resume_plan(&target.plan)
            .await
    });
    match result {
        Ok(r) => changed(
            global,
            &r.plan_id,
            r.status,
            &r.message,
            cantina::json::to_json(&r),
        ),
        Err(failure) => failed(&failure),
    }
}

/// Prints what a cancel, pause or resume did.
fn changed(
    global: &GlobalArgs,
    plan_id: &str,
    status: i32,
    message: &str,
    whole: serde_json::Value,
) -> ExitCode {
    done(output::to_stdout(|out| {
        output::plan_change(out, global.output, plan_id, status, message, whole)
    }))
}
