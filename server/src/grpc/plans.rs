//! `cantina.v1.PlanService`: plans started, followed, paused, cancelled and
//! checked over gRPC. A plan arrives as a `Plan` message (turned into its
//! proto3 JSON), as a document (a plan file's text, JSON or YAML, whose
//! problems carry line numbers) or by the name of a file in the plans
//! folder; all three go through the same decoder. RunPlan and WatchPlans
//! are the bus's `plan.*` events, filtered and converted.

use std::{pin::Pin, sync::Arc, time::Duration};

use cantina::v1::{
    self as pb, CancelPlanRequest, CancelPlanResponse, ListPlansRequest, ListPlansResponse,
    PausePlanRequest, PausePlanResponse, PlanEvent, PlanEventKind, PlanProblem, PlanSummary,
    ResolvedStep, ResumePlanRequest, ResumePlanResponse, RunPlanRequest, SavedPlan,
    StartPlanRequest, StartPlanResponse, StopAllRequest, StopAllResponse, ValidatePlanRequest,
    ValidatePlanResponse, WatchPlansRequest, plan_service_server::PlanService,
};
use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tracing::debug;

use super::StreamLimits;
use crate::{
    bus::{Event, Item, Topic, TopicSet},
    droid::Droid,
    plans::{
        PlanError, PlanInfo, PlanStatus,
        decode::{self, Problem},
        files::{Document, LoadError, Located, parse_document},
        layers::IfBusy,
        model::{Layer, Plan},
        resolve,
        timeline::StopMode,
    },
};

/// The PlanService implementation.
pub struct PlanApi {
    droid: Arc<Droid>,
    /// The caps RunPlan and WatchPlans streams count against.
    streams: StreamLimits,
}

impl PlanApi {
    /// A service over `droid`, its streams counted against `streams`.
    pub fn new(droid: Arc<Droid>, streams: StreamLimits) -> Self {
        Self { droid, streams }
    }
}

impl From<PlanError> for Status {
    fn from(error: PlanError) -> Self {
        let message = error.to_string();
        match error {
            PlanError::Invalid(_) | PlanError::BadRequest(_) => Status::invalid_argument(message),
            PlanError::NotFound(_) => Status::not_found(message),
            PlanError::QueueFull(_) => Status::resource_exhausted(message),
            PlanError::AlreadyExists(_) => Status::already_exists(message),
            PlanError::Unavailable(_) => Status::unavailable(message),
        }
    }
}

fn layer_to_proto(layer: Layer) -> pb::Layer {
    match layer {
        Layer::Ambient => pb::Layer::Ambient,
        Layer::Foreground => pb::Layer::Foreground,
        Layer::Override => pb::Layer::Override,
    }
}

fn layer_from_name(name: &str) -> pb::Layer {
    match name {
        "ambient" => pb::Layer::Ambient,
        "override" => pb::Layer::Override,
        _ => pb::Layer::Foreground,
    }
}

fn status_to_proto(status: PlanStatus) -> pb::PlanStatus {
    match status {
        PlanStatus::Pending => pb::PlanStatus::Pending,
        PlanStatus::Running => pb::PlanStatus::Running,
        PlanStatus::Paused => pb::PlanStatus::Paused,
        PlanStatus::Completed => pb::PlanStatus::Completed,
        PlanStatus::Cancelled => pb::PlanStatus::Cancelled,
        PlanStatus::Failed => pb::PlanStatus::Failed,
        PlanStatus::Skipped => pb::PlanStatus::Skipped,
    }
}

fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(d).unwrap_or_default()
}

/// A plan as listings show it (also `GetStatus`'s plans).
pub(super) fn summary_to_proto(info: &PlanInfo) -> PlanSummary {
    PlanSummary {
        plan_id: info.id.clone(),
        name: info.name.clone(),
        layer: layer_to_proto(info.layer) as i32,
        status: status_to_proto(info.status) as i32,
        current_step_id: info.current_step.clone().unwrap_or_default(),
        steps_total: info.steps_total,
        steps_done: info.steps_done,
        started_at: info.started_at.map(Into::into),
        ended_at: info.ended_at.map(Into::into),
        message: info.message.clone(),
        r#loop: info.loop_number,
        elapsed: Some(duration(info.elapsed_now())),
        correlation_id: info.correlation_id.clone(),
    }
}

fn micros(payload: &serde_json::Value, key: &str) -> Option<prost_types::Duration> {
    payload[key]
        .as_u64()
        .map(|us| duration(Duration::from_micros(us)))
}

/// A `plan.*` bus event as a `PlanEvent`.
fn event_to_proto(event: &Event) -> PlanEvent {
    let p = &event.payload;
    let text = |key: &str| p[key].as_str().unwrap_or_default().to_string();
    let kind = match event.topic {
        Topic::PlanStarted => PlanEventKind::Started,
        Topic::PlanStepStarted => PlanEventKind::StepStarted,
        Topic::PlanStepFinished => PlanEventKind::StepFinished,
        Topic::PlanStepFailed => PlanEventKind::StepFailed,
        Topic::PlanPaused => PlanEventKind::Paused,
        Topic::PlanResumed => PlanEventKind::Resumed,
        Topic::PlanEnded => PlanEventKind::Ended,
        _ => PlanEventKind::Unspecified,
    };
    PlanEvent {
        plan_id: text("plan_id"),
        kind: kind as i32,
        step_id: text("step_id"),
        status: PlanStatus::parse(p["status"].as_str().unwrap_or_default())
            .map_or(pb::PlanStatus::Unspecified, status_to_proto) as i32,
        message: text("message"),
        timestamp: Some(event.timestamp.into()),
        layer: layer_from_name(p["layer"].as_str().unwrap_or_default()) as i32,
        plan_name: text("plan_name"),
        correlation_id: event.correlation_id.to_string(),
        scheduled: micros(p, "scheduled_us"),
        actual: micros(p, "actual_us"),
        lateness: micros(p, "lateness_us"),
        audio_frame: p["audio_frame"].as_u64().unwrap_or_default(),
        r#loop: p["loop"].as_u64().map_or(0, |n| n as u32),
    }
}

/// The `plan.*` topics.
fn plan_topics() -> TopicSet {
    TopicSet::parse(&["plan.*", "plan.step.*"]).expect("the plan topics")
}

type PlanEventStream = Pin<Box<dyn Stream<Item = Result<PlanEvent, Status>> + Send>>;

/// A plan to decode, as it came.
pub(super) enum Source {
    /// A `Plan` message, as its proto3 JSON.
    Message(serde_json::Value),
    /// A document (given, or a file of the plans folder), read.
    Document(Document),
}

impl Source {
    /// The plan, or every problem (with lines for a document).
    pub(super) fn decode(&self, limits: &decode::Limits) -> Result<Plan, Vec<Located>> {
        match self {
            Source::Message(value) => decode::decode(value, limits).map_err(|problems| {
                problems
                    .into_iter()
                    .map(|problem| Located {
                        problem,
                        line: None,
                    })
                    .collect()
            }),
            Source::Document(document) => document.decode(limits),
        }
    }

    /// `problem` with its line, when the plan came as a document.
    fn locate(&self, problem: Problem) -> Located {
        match self {
            Source::Message(_) => Located {
                problem,
                line: None,
            },
            Source::Document(document) => document.locate(problem),
        }
    }

    fn value(&self) -> &serde_json::Value {
        match self {
            Source::Message(value) => value,
            Source::Document(document) => document.value(),
        }
    }
}

impl PlanApi {
    /// The request's plan, as it came: exactly one of `plan`, `plan_name`
    /// and `document`. `Err(Ok(problems))` when a document does not parse.
    fn source(
        &self,
        plan: Option<pb::Plan>,
        plan_name: String,
        document: String,
    ) -> Result<Result<Source, Vec<Located>>, Status> {
        let given = usize::from(plan.is_some())
            + usize::from(!plan_name.is_empty())
            + usize::from(!document.is_empty());
        if given != 1 {
            return Err(Status::invalid_argument(
                "give exactly one of `plan` (a Plan message), `plan_name` (a plan of the \
                 server's plans folder) and `document` (a plan file's text, JSON or YAML)",
            ));
        }
        if let Some(plan) = plan {
            let plan = cantina::json::try_to_json(&plan).map_err(|e| {
                Status::invalid_argument(format!(
                    "the plan message cannot be read: {e} (durations are at most 24 h)"
                ))
            })?;
            return Ok(Ok(Source::Message(plan)));
        }
        let text = if plan_name.is_empty() {
            document
        } else {
            let (_, text) = self
                .droid
                .plans
                .folder()?
                .read(&plan_name)
                .map_err(|e| match e {
                    LoadError::NotFound { .. } => Status::not_found(e.to_string()),
                    LoadError::Io { .. } => Status::unavailable(e.to_string()),
                    _ => Status::invalid_argument(e.to_string()),
                })?;
            text
        };
        Ok(parse_document(&text).map(Source::Document))
    }

    /// Decodes and checks the request's plan, or INVALID_ARGUMENT with
    /// every problem.
    async fn decode(
        &self,
        plan: Option<pb::Plan>,
        plan_name: String,
        document: String,
    ) -> Result<Plan, Status> {
        let source = self
            .source(plan, plan_name, document)?
            .map_err(|problems| invalid(&problems))?;
        self.check(&source)
            .await
            .map_err(|problems| invalid(&problems))
    }

    /// The plan, decoded and checked against the library, or every problem.
    async fn check(&self, source: &Source) -> Result<Plan, Vec<Located>> {
        let plan = source.decode(self.droid.plans.limits())?;
        let problems = self.droid.plans.check(&plan).await;
        if problems.is_empty() {
            Ok(plan)
        } else {
            Err(problems.into_iter().map(|p| source.locate(p)).collect())
        }
    }

    /// Starts a decoded plan.
    async fn start(&self, plan: Plan, if_busy: i32) -> Result<crate::plans::Started, Status> {
        let if_busy = match pb::IfBusy::try_from(if_busy) {
            Ok(pb::IfBusy::Replace) => IfBusy::Replace,
            Ok(pb::IfBusy::Queue) => IfBusy::Queue,
            Ok(pb::IfBusy::SkipIfRunning) => IfBusy::SkipIfRunning,
            Err(_) => {
                return Err(Status::invalid_argument(
                    "if_busy must be IF_BUSY_REPLACE, IF_BUSY_QUEUE or IF_BUSY_SKIP_IF_RUNNING",
                ));
            }
        };
        Ok(self.droid.plans.start(plan, if_busy).await?)
    }
}

/// INVALID_ARGUMENT listing every problem, each with its path (and line,
/// when the plan came as a document).
fn invalid(problems: &[Located]) -> Status {
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    Status::invalid_argument(format!(
        "the plan is not valid ({} problem{}); nothing ran:\n{}",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        lines.join("\n")
    ))
}

fn problems_to_proto(problems: &[Located]) -> Vec<PlanProblem> {
    problems
        .iter()
        .map(|p| PlanProblem {
            path: p.problem.path.clone(),
            message: p.problem.message.clone(),
            line: p.line.unwrap_or(0),
        })
        .collect()
}

fn stop_when(value: i32) -> Result<StopMode, Status> {
    match pb::StopWhen::try_from(value) {
        Ok(pb::StopWhen::Now) => Ok(StopMode::Now),
        Ok(pb::StopWhen::AfterStep) => Ok(StopMode::AfterStep),
        Ok(pb::StopWhen::AfterLoop) => Ok(StopMode::AfterLoop),
        Err(_) => Err(Status::invalid_argument(
            "when must be STOP_WHEN_NOW, STOP_WHEN_AFTER_STEP or STOP_WHEN_AFTER_LOOP",
        )),
    }
}

fn plan_id(given: &str) -> Result<&str, Status> {
    if given.trim().is_empty() {
        return Err(Status::invalid_argument(
            "plan_id is empty: give a plan's id or the name of an active plan (ListPlans shows them)",
        ));
    }
    Ok(given.trim())
}

/// A synthetic end for a plan that never ran (skipped).
fn skipped_event(id: &str, plan: &Plan, message: &str) -> PlanEvent {
    PlanEvent {
        plan_id: id.to_string(),
        kind: PlanEventKind::Ended as i32,
        status: pb::PlanStatus::Skipped as i32,
        message: message.to_string(),
        timestamp: Some(std::time::SystemTime::now().into()),
        layer: layer_to_proto(plan.layer) as i32,
        plan_name: plan.name.clone(),
        ..PlanEvent::default()
    }
}

#[tonic::async_trait]
impl PlanService for PlanApi {
    type RunPlanStream = PlanEventStream;

    async fn run_plan(
        &self,
        request: Request<RunPlanRequest>,
    ) -> Result<Response<PlanEventStream>, Status> {
        // Admitted before anything runs: a refused RunPlan starts no plan.
        let permit = self.streams.admit("RunPlan", &request)?;
        let RunPlanRequest {
            plan,
            if_busy,
            plan_name,
            document,
        } = request.into_inner();
        let mut plan = self.decode(plan, plan_name, document).await?;
        let id = self.droid.plans.assign_id(&mut plan);
        // Subscribed before the start, so no event of the plan is missed.
        let wanted = id.clone();
        let events = self
            .droid
            .bus
            .subscribe(plan_topics())
            .name(format!("run {id}"))
            .filter(move |e| e.payload["plan_id"] == wanted.as_str())
            .stream();
        let skipped = plan.clone();
        let started = self.start(plan, if_busy).await?;
        if started.status == PlanStatus::Skipped {
            let event = skipped_event(&id, &skipped, &started.message);
            return Ok(Response::new(
                permit.hold(Box::pin(futures_util::stream::iter([Ok(event)]))),
            ));
        }
        let plans = self.droid.plans.clone();
        let stream = futures_util::stream::unfold(
            (events, false, plans, id),
            |(mut events, ended, plans, id)| async move {
                if ended {
                    return None;
                }
                loop {
                    match events.next().await? {
                        Item::Event(event) => {
                            let end = event.topic == Topic::PlanEnded;
                            return Some((Ok(event_to_proto(&event)), (events, end, plans, id)));
                        }
                        // Fell behind: the end may be among what was missed.
                        Item::Missed(_) => {
                            let state = plans.state();
                            if let Some(info) = state.ended.iter().find(|p| p.id == id) {
                                let event = PlanEvent {
                                    plan_id: info.id.clone(),
                                    kind: PlanEventKind::Ended as i32,
                                    status: status_to_proto(info.status) as i32,
                                    message: info.message.clone(),
                                    timestamp: info.ended_at.map(Into::into),
                                    layer: layer_to_proto(info.layer) as i32,
                                    plan_name: info.name.clone(),
                                    correlation_id: info.correlation_id.clone(),
                                    ..PlanEvent::default()
                                };
                                return Some((Ok(event), (events, true, plans, id)));
                            }
                        }
                    }
                }
            },
        )
        .take_until(self.droid.shutdown.wait_owned());
        Ok(Response::new(permit.hold(Box::pin(stream))))
    }

    async fn start_plan(
        &self,
        request: Request<StartPlanRequest>,
    ) -> Result<Response<StartPlanResponse>, Status> {
        let StartPlanRequest {
            plan,
            if_busy,
            plan_name,
            document,
        } = request.into_inner();
        let plan = self.decode(plan, plan_name, document).await?;
        let started = self.start(plan, if_busy).await?;
        Ok(Response::new(StartPlanResponse {
            plan_id: started.id,
            status: status_to_proto(started.status) as i32,
            message: started.message,
        }))
    }

    async fn cancel_plan(
        &self,
        request: Request<CancelPlanRequest>,
    ) -> Result<Response<CancelPlanResponse>, Status> {
        let request = request.into_inner();
        let when = stop_when(request.when)?;
        let changed = self
            .droid
            .plans
            .cancel(plan_id(&request.plan_id)?, when)
            .await?;
        Ok(Response::new(CancelPlanResponse {
            plan_id: changed.id,
            status: status_to_proto(changed.status) as i32,
            message: changed.message,
        }))
    }

    async fn list_plans(
        &self,
        _: Request<ListPlansRequest>,
    ) -> Result<Response<ListPlansResponse>, Status> {
        let state = self.droid.plans.state();
        let plans = state
            .active
            .iter()
            .chain(&state.ended)
            .map(summary_to_proto)
            .collect();
        // The folder is read on a blocking thread; a folder that cannot be
        // used leaves the list of saved plans empty (health says why).
        let folder = self.droid.plans.folder().ok();
        let listed =
            tokio::task::spawn_blocking(move || folder.map(|f| f.list()).unwrap_or_default())
                .await
                .unwrap_or_default();
        let saved = listed
            .into_iter()
            .map(|s| SavedPlan {
                name: s.name,
                path: s.path.display().to_string(),
                layer: s.layer.map_or(pb::Layer::Unspecified, layer_to_proto) as i32,
                steps: s.steps as u32,
                problem: s.problem.unwrap_or_default(),
            })
            .collect();
        Ok(Response::new(ListPlansResponse { plans, saved }))
    }

    type WatchPlansStream = PlanEventStream;

    async fn watch_plans(
        &self,
        request: Request<WatchPlansRequest>,
    ) -> Result<Response<PlanEventStream>, Status> {
        let permit = self.streams.admit("WatchPlans", &request)?;
        let peer = request
            .remote_addr()
            .map(|a| a.to_string())
            .unwrap_or_else(|| "unknown".into());
        let ids = request.into_inner().plan_ids;
        let mut subscribe = self
            .droid
            .bus
            .subscribe(plan_topics())
            .name(format!("watch plans {peer}"));
        if !ids.is_empty() {
            subscribe = subscribe.filter(move |e| {
                e.payload["plan_id"]
                    .as_str()
                    .is_some_and(|id| ids.iter().any(|i| i == id))
            });
        }
        let events = subscribe.stream();
        debug!(%peer, "plan watcher connected");
        let stream = futures_util::stream::unfold(events, |mut events| async move {
            loop {
                match events.next().await? {
                    Item::Event(event) => return Some((Ok(event_to_proto(&event)), events)),
                    Item::Missed(n) => {
                        debug!(missed = n, "a plan watcher fell behind");
                    }
                }
            }
        })
        .take_until(self.droid.shutdown.wait_owned());
        Ok(Response::new(permit.hold(Box::pin(stream))))
    }

    async fn validate_plan(
        &self,
        request: Request<ValidatePlanRequest>,
    ) -> Result<Response<ValidatePlanResponse>, Status> {
        let ValidatePlanRequest {
            plan,
            plan_name,
            document,
        } = request.into_inner();
        let source = match self.source(plan, plan_name, document)? {
            Ok(source) => source,
            // A document that does not parse is a verdict, not an error.
            Err(problems) => {
                return Ok(Response::new(ValidatePlanResponse {
                    valid: false,
                    problems: problems_to_proto(&problems),
                    ..ValidatePlanResponse::default()
                }));
            }
        };
        let name = source.value()["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        Ok(Response::new(match self.check(&source).await {
            Ok(plan) => ValidatePlanResponse {
                valid: true,
                problems: Vec::new(),
                timeline: resolve::resolve(&plan)
                    .into_iter()
                    .map(|r| ResolvedStep {
                        step_id: r.id,
                        path: resolve::json_path(&r.path),
                        kind: r.kind.to_string(),
                        start: r.start.map(duration),
                        earliest: Some(duration(r.earliest)),
                        duration: r.duration.map(duration),
                        on_track: r.on_track,
                        depth: r.path.len().saturating_sub(1) as u32,
                    })
                    .collect(),
                name: plan.name,
                layer: layer_to_proto(plan.layer) as i32,
            },
            Err(problems) => ValidatePlanResponse {
                valid: false,
                problems: problems_to_proto(&problems),
                timeline: Vec::new(),
                name,
                layer: pb::Layer::Unspecified as i32,
            },
        }))
    }

    async fn pause_plan(
        &self,
        request: Request<PausePlanRequest>,
    ) -> Result<Response<PausePlanResponse>, Status> {
        let request = request.into_inner();
        let changed = self.droid.plans.pause(plan_id(&request.plan_id)?).await?;
        Ok(Response::new(PausePlanResponse {
            plan_id: changed.id,
            status: status_to_proto(changed.status) as i32,
            message: changed.message,
        }))
    }

    async fn resume_plan(
        &self,
        request: Request<ResumePlanRequest>,
    ) -> Result<Response<ResumePlanResponse>, Status> {
        let request = request.into_inner();
        let changed = self.droid.plans.resume(plan_id(&request.plan_id)?).await?;
        Ok(Response::new(ResumePlanResponse {
            plan_id: changed.id,
            status: status_to_proto(changed.status) as i32,
            message: changed.message,
        }))
    }

    async fn stop_all(
        &self,
        request: Request<StopAllRequest>,
    ) -> Result<Response<StopAllResponse>, Status> {
        let fade = match request.into_inner().fade {
            None => None,
            Some(fade) => Some(Duration::try_from(fade).map_err(|_| {
                Status::invalid_argument("fade must not be negative (for example \"0.3s\")")
            })?),
        };
        // On a task of its own: the panic finishes even if this call is
        // cancelled (its client gone, its deadline passed).
        let droid = self.droid.clone();
        let panic = tokio::spawn(async move { droid.panic(fade).await })
            .await
            .map_err(|e| Status::internal(format!("the panic button failed: {e}")))?;
        Ok(Response::new(StopAllResponse {
            cancelled: panic.cancelled,
            message: panic.message,
            failed: panic.failed,
        }))
    }
}
