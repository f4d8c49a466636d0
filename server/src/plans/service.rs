//! The `plans` subsystem: the conductor. [`Plans`] is the handle (cheap to
//! clone, async) and the subsystem; its actor keeps the [`Layers`] (who
//! runs, who waits, who is paused), starts each plan's [`executor`] task,
//! turns what the executors report into `plan.*` events on the bus and into
//! the state that `ListPlans`, `GetStatus` and `plan status` show.
//!
//! Every event carries the correlation id of the request that started the
//! plan; `RunPlan` and `WatchPlans` are the bus's `plan.*` events, filtered.

use std::{
    collections::{HashMap, HashSet, VecDeque},
    path::PathBuf,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant, SystemTime},
};

use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use super::{
    decode::{Limits, Problem},
    executor::{self, CommandRunner, Control, Report},
    files::PlanFolder,
    layers::{Act, IfBusy, Layers},
    model::{Action, Layer, Plan},
    timeline::{Outcome, Output, StopMode},
};
use crate::{
    actor::{ActorError, Handle, Subject},
    audio::{Audio, library::find as find_track},
    bus::{Bus, Draft, Topic},
    eyes::Eyes,
    lifecycle::{BoxFuture, ServiceStatus, StatusHandle, Subsystem},
    servos::Servos,
    speech::Speech,
};

/// Requests that may wait for the conductor at once; more are refused.
const QUEUE: usize = 64;
/// Ended plans kept for `ListPlans`.
const HISTORY: usize = 32;
/// Plans that may wait in the layers' queues together.
pub const MAX_QUEUED: usize = 16;
/// Plans that may run or be paused at once (one per layer).
const CONTROLS: usize = 64;

/// Why a plan request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The plan is malformed: every problem, each with its path.
    #[error("the plan is not valid: {}", problems_text(.0))]
    Invalid(Vec<Problem>),
    /// A bad request that is not about the plan's content.
    #[error("{0}")]
    BadRequest(String),
    /// No such plan.
    #[error("{0}")]
    NotFound(String),
    /// Too many plans queued.
    #[error("{0}")]
    QueueFull(String),
    /// A plan with that id is active.
    #[error("{0}")]
    AlreadyExists(String),
    /// The conductor is not running.
    #[error("{0}")]
    Unavailable(String),
}

fn problems_text(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

impl From<ActorError> for PlanError {
    fn from(e: ActorError) -> Self {
        PlanError::Unavailable(e.to_string())
    }
}

/// Where a plan stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    /// Queued behind the plan on its layer.
    Pending,
    /// Running.
    Running,
    /// Held by a higher layer or by `PausePlan`.
    Paused,
    /// Every step ran.
    Completed,
    /// Stopped by a request or by a plan that replaced it.
    Cancelled,
    /// A step failed.
    Failed,
    /// Not started: a plan of that name already ran on its layer.
    Skipped,
}

impl PlanStatus {
    /// The name events and replies use.
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::Pending => "pending",
            PlanStatus::Running => "running",
            PlanStatus::Paused => "paused",
            PlanStatus::Completed => "completed",
            PlanStatus::Cancelled => "cancelled",
            PlanStatus::Failed => "failed",
            PlanStatus::Skipped => "skipped",
        }
    }

    /// The status of a name from [`as_str`](Self::as_str).
    pub fn parse(s: &str) -> Option<Self> {
        [
            PlanStatus::Pending,
            PlanStatus::Running,
            PlanStatus::Paused,
            PlanStatus::Completed,
            PlanStatus::Cancelled,
            PlanStatus::Failed,
            PlanStatus::Skipped,
        ]
        .into_iter()
        .find(|status| status.as_str() == s)
    }

    /// Whether the plan is over.
    pub fn is_ended(self) -> bool {
        matches!(
            self,
            PlanStatus::Completed
                | PlanStatus::Cancelled
                | PlanStatus::Failed
                | PlanStatus::Skipped
        )
    }
}

/// The name of a layer in events and replies.
pub fn layer_name(layer: Layer) -> &'static str {
    match layer {
        Layer::Ambient => "ambient",
        Layer::Foreground => "foreground",
        Layer::Override => "override",
    }
}

/// One plan, as listings show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PlanInfo {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its layer.
    #[serde(serialize_with = "serialize_layer")]
    pub layer: Layer,
    /// Where it stands.
    pub status: PlanStatus,
    /// The step running now.
    pub current_step: Option<String>,
    /// Top-level steps.
    pub steps_total: u32,
    /// Top-level steps ended in this loop.
    pub steps_done: u32,
    /// Which loop runs (1-based).
    pub loop_number: u32,
    /// Plan time: how long it has run, paused spans left out, when the
    /// plan last reported (see [`elapsed_now`](Self::elapsed_now)).
    pub elapsed: Duration,
    /// When `elapsed` was taken.
    #[serde(skip)]
    pub elapsed_at: Option<Instant>,
    /// When it was accepted.
    pub accepted_at: SystemTime,
    /// When it started.
    pub started_at: Option<SystemTime>,
    /// When it ended.
    pub ended_at: Option<SystemTime>,
    /// Why it ended so, or why it is paused or waiting.
    pub message: String,
    /// The correlation id of the request that started it.
    pub correlation_id: String,
}

impl PlanInfo {
    /// Plan time now: `elapsed` moved on by the time since, while it runs.
    pub fn elapsed_now(&self) -> Duration {
        match (self.status, self.elapsed_at) {
            (PlanStatus::Running, Some(at)) => self.elapsed + at.elapsed(),
            _ => self.elapsed,
        }
    }
}

fn serialize_layer<S: serde::Serializer>(layer: &Layer, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(layer_name(*layer))
}

/// What the conductor is doing.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PlansState {
    /// Running, paused and queued plans, by layer from the top.
    pub active: Vec<PlanInfo>,
    /// Ended plans, newest first.
    pub ended: Vec<PlanInfo>,
    /// Plans run since the start.
    pub started: u64,
    /// What does not work (the plans folder).
    pub problem: Option<String>,
}

/// A plan accepted by [`Plans::start`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Started {
    /// Its id.
    pub id: String,
    /// Running, paused (ambient under foreground), pending (queued) or
    /// skipped.
    pub status: PlanStatus,
    /// What happened, for people.
    pub message: String,
}

/// A plan after a cancel, pause or resume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Changed {
    /// Its id.
    pub id: String,
    /// Its status now.
    pub status: PlanStatus,
    /// What happened, for people.
    pub message: String,
}

/// The conductor's handle and subsystem.
#[derive(Clone)]
pub struct Plans {
    inner: Arc<Inner>,
}

struct Inner {
    /// The plans folder.
    dir: PathBuf,
    audio: Audio,
    servos: Servos,
    speech: Speech,
    eyes: Eyes,
    bus: Bus,
    limits: Limits,
    /// The dispatcher, for `command` steps; given once the commands exist.
    commands: OnceLock<Arc<dyn CommandRunner>>,
    state: watch::Sender<PlansState>,
    next_id: AtomicU64,
    actor: Handle<Message>,
}

enum Request {
    Start { plan: Plan, if_busy: IfBusy },
    Cancel { plan: String, when: StopMode },
    Pause { plan: String },
    Resume { plan: String },
    CancelAll { reason: String },
}

enum Answer {
    Started(Started),
    Changed(Changed),
    CancelledAll(Vec<String>),
}

type Envelope = crate::actor::Envelope<Request, Result<Answer, PlanError>>;

/// What the conductor's task reads.
enum Message {
    Request(Envelope),
}

impl From<Envelope> for Message {
    fn from(envelope: Envelope) -> Self {
        Message::Request(envelope)
    }
}

/// What a plan's task tells the conductor.
enum Note {
    Report(String, Report),
    Ended(String, Outcome),
}

impl Plans {
    /// The conductor, with named plans in `dir`, driving `audio`, `speech`
    /// and `eyes`, announcing on `bus`; plans are checked against `limits`.
    pub fn new(
        dir: PathBuf,
        audio: Audio,
        speech: Speech,
        eyes: Eyes,
        servos: Servos,
        bus: Bus,
        limits: Limits,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                dir,
                audio,
                servos,
                speech,
                eyes,
                bus,
                limits,
                commands: OnceLock::new(),
                state: watch::Sender::new(PlansState::default()),
                next_id: AtomicU64::new(1),
                actor: Handle::new(Subject::plural("the plans")),
            }),
        }
    }

    /// Gives `command` steps their dispatcher (once; later calls change
    /// nothing).
    pub fn set_commands(&self, runner: Arc<dyn CommandRunner>) {
        let _ = self.inner.commands.set(runner);
    }

    /// The plans folder (made, with the examples, the first time).
    ///
    /// # Errors
    ///
    /// The folder cannot be made or read.
    pub fn folder(&self) -> Result<PlanFolder, PlanError> {
        PlanFolder::open(&self.inner.dir)
            .map(|folder| folder.with_limits(self.inner.limits))
            .map_err(|e| {
                PlanError::Unavailable(format!(
                    "the plans folder {} cannot be used: {e} (check CANTINA_PLANS_DIR and its \
                     permissions)",
                    self.inner.dir.display()
                ))
            })
    }

    /// What the decoder cannot check alone: that every `command` line is a
    /// command that would run, every `move` names a servo and lasts no longer
    /// than the servos take, and every track the plan names is in the music
    /// library (as it is now). Tracks are not checked while the audio cannot
    /// list its library: those steps fail when they run, with the reason.
    pub async fn check(&self, plan: &Plan) -> Vec<Problem> {
        let runner = self.inner.commands.get().map(|r| r.as_ref());
        let mut problems = Vec::new();
        let mut tracks = Vec::new();
        for (path, step) in plan.steps_with_paths() {
            let json = super::resolve::json_path(&path);
            match &step.action {
                Action::Command { line } => {
                    if let Some(runner) = runner
                        && let Err(e) = runner.check(line)
                    {
                        problems.push(Problem {
                            path: format!("{json}.command.line"),
                            message: e,
                        });
                    }
                }
                Action::Move {
                    target, duration, ..
                } => {
                    if let Err(e) = self.inner.servos.spec(target) {
                        problems.push(Problem {
                            path: format!("{json}.move.target"),
                            message: e.to_string(),
                        });
                    }
                    if *duration > crate::servos::MAX_MOVE {
                        problems.push(Problem {
                            path: format!("{json}.move.duration"),
                            message: format!(
                                "a move lasts at most {} s",
                                crate::servos::MAX_MOVE.as_secs()
                            ),
                        });
                    }
                }
                Action::PlayMusic { query } => {
                    tracks.push((format!("{json}.playMusic.query"), query.as_str()));
                }
                Action::MusicCrossfade { track, .. } => {
                    tracks.push((format!("{json}.musicCrossfade.track"), track.as_str()));
                }
                _ => {}
            }
        }
        if tracks.is_empty() {
            return problems;
        }
        let Ok(library) = self.inner.audio.list().await else {
            return problems;
        };
        problems.extend(tracks.into_iter().filter_map(|(path, query)| {
            find_track(&library.tracks, query).err().map(|e| Problem {
                path,
                message: format!("no track matches: {e}"),
            })
        }));
        problems
    }

    /// What plans are checked against.
    pub fn limits(&self) -> &Limits {
        &self.inner.limits
    }

    /// What the conductor is doing now.
    pub fn state(&self) -> PlansState {
        self.inner.state.borrow().clone()
    }

    /// Follows the conductor's state.
    pub fn subscribe(&self) -> watch::Receiver<PlansState> {
        self.inner.state.subscribe()
    }

    /// Gives `plan` an id if it has none (`plan-N`), so that a caller can
    /// follow its events before it starts; returns it.
    pub fn assign_id(&self, plan: &mut Plan) -> String {
        if let Some(id) = &plan.id {
            return id.clone();
        }
        let id = format!(
            "plan-{}",
            self.inner.next_id.fetch_add(1, Ordering::Relaxed)
        );
        plan.id = Some(id.clone());
        id
    }

    /// Starts a decoded plan on its layer, by the layers' rules.
    ///
    /// # Errors
    ///
    /// A plan id already in use, full queues, the conductor stopped.
    pub async fn start(&self, mut plan: Plan, if_busy: IfBusy) -> Result<Started, PlanError> {
        self.assign_id(&mut plan);
        match self
            .inner
            .actor
            .ask(Request::Start { plan, if_busy })
            .await??
        {
            Answer::Started(started) => Ok(started),
            _ => unreachable!("a start answers Started"),
        }
    }

    async fn change(&self, request: Request) -> Result<Changed, PlanError> {
        match self.inner.actor.ask(request).await?? {
            Answer::Changed(changed) => Ok(changed),
            _ => unreachable!("a change answers Changed"),
        }
    }

    /// Cancels a plan (by id, or the name of an active plan): at once (its
    /// running steps stopped; answers when it has ended), after its current
    /// step, or after its current loop.
    ///
    /// # Errors
    ///
    /// No such active plan.
    pub async fn cancel(&self, plan: &str, when: StopMode) -> Result<Changed, PlanError> {
        self.change(Request::Cancel {
            plan: plan.to_string(),
            when,
        })
        .await
    }

    /// Holds a plan where it is, until [`resume`](Self::resume).
    ///
    /// # Errors
    ///
    /// No such active plan.
    pub async fn pause(&self, plan: &str) -> Result<Changed, PlanError> {
        self.change(Request::Pause {
            plan: plan.to_string(),
        })
        .await
    }

    /// Carries on a plan held by [`pause`](Self::pause) (a plan also held by
    /// a higher layer stays paused until that layer is free).
    ///
    /// # Errors
    ///
    /// No such active plan.
    pub async fn resume(&self, plan: &str) -> Result<Changed, PlanError> {
        self.change(Request::Resume {
            plan: plan.to_string(),
        })
        .await
    }

    /// Cancels every plan, running, paused and queued, and waits for their
    /// ends; returns their ids.
    ///
    /// # Errors
    ///
    /// The conductor stopped.
    pub async fn cancel_all(&self, reason: &str) -> Result<Vec<String>, PlanError> {
        match self
            .inner
            .actor
            .ask(Request::CancelAll {
                reason: reason.to_string(),
            })
            .await??
        {
            Answer::CancelledAll(ids) => Ok(ids),
            _ => unreachable!("a cancel-all answers CancelledAll"),
        }
    }

    /// The executor's parts for a plan started under `correlation`.
    fn parts(&self, correlation: &str) -> executor::Parts {
        let inner = &self.inner;
        let commands: Arc<dyn CommandRunner> = Arc::new(Correlated {
            runner: inner.commands.get().cloned(),
            correlation: correlation.to_string(),
        });
        executor::Parts {
            audio: inner.audio.clone(),
            speech: inner.speech.clone(),
            eyes: inner.eyes.clone(),
            servos: inner.servos.clone(),
            bus: inner.bus.clone(),
            commands,
        }
    }
}

/// Runs a plan's `command` steps under the plan's correlation id.
struct Correlated {
    runner: Option<Arc<dyn CommandRunner>>,
    correlation: String,
}

impl CommandRunner for Correlated {
    fn run(&self, line: String) -> BoxFuture<'static, Result<String, String>> {
        let correlation = self.correlation.clone();
        match &self.runner {
            Some(runner) => {
                let run = runner.run(line);
                Box::pin(crate::bus::with_correlation(correlation, run))
            }
            None => Box::pin(async { Err("the console commands are not ready yet".to_string()) }),
        }
    }
}

fn status_of(state: &PlansState) -> (ServiceStatus, String) {
    let running = state
        .active
        .iter()
        .filter(|p| p.status == PlanStatus::Running)
        .count();
    let message = match state.active.len() {
        0 => "no plan running".to_string(),
        n => format!("{running} running, {} paused or queued", n - running),
    };
    match &state.problem {
        Some(problem) => (ServiceStatus::Degraded, format!("{message}; {problem}")),
        None => (ServiceStatus::Running, message),
    }
}

impl Subsystem for Plans {
    fn name(&self) -> &'static str {
        "plans"
    }

    /// The droid carries on without shows.
    fn critical(&self) -> bool {
        false
    }

    fn start(&self, status: StatusHandle) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let inner = &self.inner;
            let folder_problem = self.folder().err().map(|e| e.to_string());
            if let Some(problem) = &folder_problem {
                warn!(%problem, "plans folder");
            }
            inner.state.send_modify(|state| {
                state.active.clear();
                state.problem.clone_from(&folder_problem);
            });
            let (notes_tx, notes_rx) = mpsc::unbounded_channel();
            let actor = Actor {
                plans: self.clone(),
                layers: Layers::new(MAX_QUEUED),
                active: HashMap::new(),
                ended: inner.state.borrow().ended.iter().cloned().collect(),
                notes: notes_tx,
                stop_waiters: Vec::new(),
                started: inner.state.borrow().started,
                stopping: false,
                show: ShowThread::start()
                    .inspect_err(|e| {
                        warn!(error = %e, "no thread of their own for the plans: they share the server's runtime");
                    })
                    .ok(),
            };
            inner
                .actor
                .spawn_task(QUEUE, (), |rx| actor.run(rx, notes_rx));
            inner
                .actor
                .follow(status, inner.state.subscribe(), status_of)
                .await;
            Ok(())
        })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.inner.actor.stop())
    }
}

/// A plan the conductor knows: queued, running or paused.
struct Active {
    info: PlanInfo,
    /// The plan, until it starts.
    plan: Option<Plan>,
    /// Its controls, once started.
    control: Option<mpsc::Sender<Control>>,
    /// Its task, once started (aborted if the conductor stops).
    task: Option<tokio::task::JoinHandle<()>>,
    /// Top-level step ids, to count steps done.
    top_level: HashSet<String>,
    /// Held by `PausePlan`.
    user_paused: bool,
    /// Held by a higher layer: the plan that holds it.
    held_by: Option<String>,
    /// Why it is being cancelled (a replacing plan, a request).
    cancel_reason: Option<String>,
    /// Who waits for its end (a cancel at once).
    waiters: Vec<oneshot::Sender<Result<Answer, PlanError>>>,
}

impl Drop for Active {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// A cancel-all waiting for the plans it cancelled.
struct StopWaiter {
    left: HashSet<String>,
    ids: Vec<String>,
    reply: oneshot::Sender<Result<Answer, PlanError>>,
}

struct Actor {
    plans: Plans,
    layers: Layers,
    active: HashMap<String, Active>,
    ended: VecDeque<PlanInfo>,
    notes: mpsc::UnboundedSender<Note>,
    stop_waiters: Vec<StopWaiter>,
    started: u64,
    /// The conductor is stopping: nothing new starts.
    stopping: bool,
    /// The runtime the plans run on (the server's own, if it could not be made).
    show: Option<ShowThread>,
}

/// The plans' own runtime, on a thread of its own: a plan's steps wake on
/// time whatever load the server's runtime carries (a storm of requests,
/// many log followers). Its tasks end when it is dropped.
struct ShowThread {
    handle: tokio::runtime::Handle,
    stop: Option<oneshot::Sender<()>>,
}

impl ShowThread {
    fn start() -> std::io::Result<Self> {
        let (stop, stopped) = oneshot::channel::<()>();
        let (handle_tx, handle_rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("cantina-plans".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = handle_tx.send(Err(e));
                        return;
                    }
                };
                let _ = handle_tx.send(Ok(runtime.handle().clone()));
                runtime.block_on(async {
                    let _ = stopped.await;
                });
            })?;
        let handle = handle_rx
            .recv()
            .map_err(|_| std::io::Error::other("the plans' thread ended at once"))??;
        Ok(Self {
            handle,
            stop: Some(stop),
        })
    }
}

impl Drop for ShowThread {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

impl Actor {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Message>,
        mut notes: mpsc::UnboundedReceiver<Note>,
    ) {
        loop {
            tokio::select! {
                message = rx.recv() => match message {
                    Some(Message::Request(envelope)) => self.request(envelope),
                    None => break,
                },
                Some(note) = notes.recv() => self.note(note),
            }
            self.publish_state();
        }
        // Stopping (shutdown or reset): every plan ends now, and says so;
        // nothing queued starts.
        self.stopping = true;
        let ids: Vec<String> = self.active.keys().cloned().collect();
        for id in ids {
            if let Some(active) = self.active.get_mut(&id) {
                if let Some(task) = active.task.take() {
                    task.abort();
                }
                active.cancel_reason =
                    Some("the plans stopped (the server is stopping or restarting)".into());
            }
            info!(plan = %id, "plan cancelled: the plans are stopping");
            self.ended_plan(&id, Outcome::Cancelled);
        }
        self.publish_state();
    }

    fn publish_state(&self) {
        let mut active: Vec<PlanInfo> = self.active.values().map(|a| a.info.clone()).collect();
        active.sort_by(|a, b| {
            b.layer
                .cmp(&a.layer)
                .then(a.accepted_at.cmp(&b.accepted_at))
        });
        let ended: Vec<PlanInfo> = self.ended.iter().cloned().collect();
        let started = self.started;
        self.plans.inner.state.send_if_modified(|state| {
            let next = PlansState {
                active,
                ended,
                started,
                problem: state.problem.clone(),
            };
            if *state == next {
                false
            } else {
                *state = next;
                true
            }
        });
    }

    /// The id of an active plan named by id or by name.
    fn find(&self, plan: &str) -> Result<String, PlanError> {
        if self.active.contains_key(plan) {
            return Ok(plan.to_string());
        }
        let by_name: Vec<&Active> = self
            .active
            .values()
            .filter(|a| a.info.name == plan)
            .collect();
        match by_name.as_slice() {
            [one] => Ok(one.info.id.clone()),
            [] => {
                let known: Vec<String> = self
                    .active
                    .values()
                    .map(|a| format!("{} ({})", a.info.id, a.info.name))
                    .collect();
                let ended = self.ended.iter().find(|p| p.id == plan || p.name == plan);
                Err(PlanError::NotFound(match ended {
                    Some(p) => format!(
                        "plan '{plan}' is not active: it ended ({}){}",
                        p.status.as_str(),
                        if p.message.is_empty() {
                            String::new()
                        } else {
                            format!(": {}", p.message)
                        }
                    ),
                    None if known.is_empty() => {
                        format!("no plan '{plan}': no plan is running, paused or queued")
                    }
                    None => format!(
                        "no plan '{plan}' is running, paused or queued; active plans: {}",
                        known.join(", ")
                    ),
                }))
            }
            many => Err(PlanError::BadRequest(format!(
                "{} active plans are named '{plan}'; give an id: {}",
                many.len(),
                many.iter()
                    .map(|a| a.info.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }

    fn request(&mut self, envelope: Envelope) {
        let Envelope {
            request,
            reply,
            correlation,
        } = envelope;
        match request {
            Request::Start { plan, if_busy } => {
                let answer = self.start(plan, if_busy, correlation.as_deref());
                let _ = reply.send(answer.map(Answer::Started));
            }
            Request::Cancel { plan, when } => match self.find(&plan) {
                Ok(id) => self.cancel(&id, when, reply),
                // Ended meanwhile (or before): cancelling it again is done.
                Err(e) => match self.ended.iter().find(|p| p.id == plan || p.name == plan) {
                    Some(ended) => {
                        let _ = reply.send(Ok(Answer::Changed(Changed {
                            id: ended.id.clone(),
                            status: ended.status,
                            message: format!("it had already ended ({})", ended.status.as_str()),
                        })));
                    }
                    None => {
                        let _ = reply.send(Err(e));
                    }
                },
            },
            Request::Pause { plan } => {
                let answer = self.find(&plan).map(|id| self.user_pause(&id, true));
                let _ = reply.send(answer.map(Answer::Changed));
            }
            Request::Resume { plan } => {
                let answer = self.find(&plan).map(|id| self.user_pause(&id, false));
                let _ = reply.send(answer.map(Answer::Changed));
            }
            Request::CancelAll { reason } => self.cancel_all(&reason, reply),
        }
    }

    fn start(
        &mut self,
        plan: Plan,
        if_busy: IfBusy,
        correlation: Option<&str>,
    ) -> Result<Started, PlanError> {
        let id = plan.id.clone().expect("the handle assigns an id");
        if let Some(active) = self.active.get(&id) {
            if if_busy == IfBusy::SkipIfRunning {
                return Ok(Started {
                    id,
                    status: PlanStatus::Skipped,
                    message: format!(
                        "not started: plan '{}' with this id is already {}",
                        active.info.name,
                        active.info.status.as_str()
                    ),
                });
            }
            return Err(PlanError::AlreadyExists(format!(
                "a plan with id '{id}' is already {}; cancel it first, give another planId, or \
                 leave planId empty (the server then gives one)",
                active.info.status.as_str()
            )));
        }
        let name = if plan.name.is_empty() {
            id.clone()
        } else {
            plan.name.clone()
        };
        let acts = self
            .layers
            .request(id.clone(), name.clone(), plan.layer, if_busy)
            .map_err(|full| {
                PlanError::QueueFull(format!(
                    "{} plans are queued already (the most there may be); wait for one to start, \
                     or start this one with ifBusy replace",
                    full.0
                ))
            })?;
        let info = PlanInfo {
            id: id.clone(),
            name,
            layer: plan.layer,
            status: PlanStatus::Pending,
            current_step: None,
            steps_total: plan.steps.len() as u32,
            steps_done: 0,
            loop_number: 1,
            elapsed: Duration::ZERO,
            elapsed_at: None,
            accepted_at: SystemTime::now(),
            started_at: None,
            ended_at: None,
            message: String::new(),
            correlation_id: correlation.map_or_else(|| format!("plan-{id}"), str::to_string),
        };
        if acts
            .iter()
            .any(|a| matches!(a, Act::Skipped(p) if *p == id))
        {
            let mut info = info;
            info.status = PlanStatus::Skipped;
            info.ended_at = Some(SystemTime::now());
            info.message = format!(
                "not started: a plan named '{}' already runs on the {} layer",
                info.name,
                layer_name(info.layer)
            );
            let started = Started {
                id,
                status: PlanStatus::Skipped,
                message: info.message.clone(),
            };
            self.emit_info(&info, Topic::PlanEnded, None, &info.message, json!({}));
            self.remember(info);
            return Ok(started);
        }
        let top_level = plan.steps.iter().map(|s| s.id.clone()).collect();
        self.active.insert(
            id.clone(),
            Active {
                info,
                plan: Some(plan),
                control: None,
                task: None,
                top_level,
                user_paused: false,
                held_by: None,
                cancel_reason: None,
                waiters: Vec::new(),
            },
        );
        self.apply(acts);
        let active = &self.active[&id];
        let message = match active.info.status {
            PlanStatus::Pending => active.info.message.clone(),
            PlanStatus::Paused => active.info.message.clone(),
            _ => format!(
                "plan '{}' started on the {} layer",
                active.info.name,
                layer_name(active.info.layer)
            ),
        };
        Ok(Started {
            id,
            status: active.info.status,
            message,
        })
    }

    /// Carries out what the layers decided.
    fn apply(&mut self, acts: Vec<Act>) {
        for act in acts {
            match act {
                Act::Start(id) => self.launch(&id),
                Act::Cancel { plan, by } => {
                    let by = self.describe(&by);
                    self.stop(&plan, StopMode::Now, format!("replaced by {by}"));
                }
                Act::Pause { plan, by } => {
                    let by_text = self.describe(&by);
                    if let Some(active) = self.active.get_mut(&plan) {
                        active.held_by = Some(by.clone());
                        let message = format!("paused by {by_text}");
                        let was = active.info.status;
                        set_paused(active, true);
                        active.info.message = message.clone();
                        if was != PlanStatus::Paused && active.control.is_some() {
                            self.emit(&plan, Topic::PlanPaused, None, &message, json!({"by": by}));
                        }
                    }
                }
                Act::Resume(id) => {
                    // A plan being cancelled (panic, override) does not resume.
                    if let Some(active) = self
                        .active
                        .get_mut(&id)
                        .filter(|a| a.cancel_reason.is_none())
                    {
                        let by = active.held_by.take().unwrap_or_default();
                        if !active.user_paused {
                            set_paused(active, false);
                            active.info.message.clear();
                            let message = format!("resumed: {} ended", self.describe(&by));
                            self.emit(&id, Topic::PlanResumed, None, &message, json!({"by": by}));
                        }
                    }
                }
                Act::Queued { plan, position } => {
                    if let Some(active) = self.active.get_mut(&plan) {
                        active.info.status = PlanStatus::Pending;
                        active.info.message = format!(
                            "queued on the {} layer: number {position} in line",
                            layer_name(active.info.layer)
                        );
                    }
                }
                Act::Skipped(_) => {}
            }
        }
    }

    /// `plan 'greeting' (plan-3)`, or the id alone when unknown.
    fn describe(&self, id: &str) -> String {
        let name = self
            .active
            .get(id)
            .map(|a| a.info.name.clone())
            .or_else(|| {
                self.ended
                    .iter()
                    .find(|p| p.id == id)
                    .map(|p| p.name.clone())
            });
        match name {
            Some(name) if name != id => format!("plan '{name}' ({id})"),
            _ => format!("plan {id}"),
        }
    }

    /// Starts the task of a plan the layers let run.
    fn launch(&mut self, id: &str) {
        if self.stopping {
            return;
        }
        let Some(active) = self.active.get_mut(id) else {
            return;
        };
        let Some(plan) = active.plan.take() else {
            return;
        };
        let (control_tx, control_rx) = mpsc::channel(CONTROLS);
        // Held from its start (under a higher layer, or paused by request
        // while queued): the executor takes the pause before its first step.
        let held = self
            .layers
            .on(active.info.layer)
            .is_some_and(|(on, paused)| on == id && paused);
        if held || active.user_paused {
            let _ = control_tx.try_send(Control::Pause);
        }
        active.control = Some(control_tx);
        active.info.status = PlanStatus::Running;
        active.info.started_at = Some(SystemTime::now());
        active.info.elapsed_at = Some(Instant::now());
        active.info.message.clear();
        self.started += 1;
        let correlation = active.info.correlation_id.clone();
        let parts = self.plans.parts(&correlation);
        let notes = self.notes.clone();
        let plan_id = id.to_string();
        let run = crate::bus::with_correlation(correlation, async move {
            let reporting = notes.clone();
            let reporter = plan_id.clone();
            let outcome = executor::run(plan, parts, control_rx, move |report| {
                let _ = reporting.send(Note::Report(reporter.clone(), report));
            })
            .await;
            let _ = notes.send(Note::Ended(plan_id, outcome));
        });
        let task = match &self.show {
            Some(show) => show.handle.spawn(run),
            None => tokio::spawn(run),
        };
        active.task = Some(task);
        if active.user_paused {
            // Paused by request while it waited its turn.
            set_paused(active, true);
            active.info.message = "paused by request".into();
        }
        let info = &active.info;
        info!(plan = %info.id, name = %info.name, layer = layer_name(info.layer), "plan started");
        let message = format!(
            "plan '{}' started on the {} layer",
            info.name,
            layer_name(info.layer)
        );
        let steps_total = info.steps_total;
        self.emit(
            id,
            Topic::PlanStarted,
            None,
            &message,
            json!({"steps_total": steps_total}),
        );
    }

    /// Asks a plan to stop; a queued one ends at once.
    fn stop(&mut self, id: &str, when: StopMode, reason: String) {
        let Some(active) = self.active.get_mut(id) else {
            return;
        };
        match &active.control {
            Some(control) => {
                active.cancel_reason = Some(reason);
                if control.try_send(Control::Stop(when)).is_err() {
                    // The controls are full (a storm of pauses): the task
                    // is aborted instead.
                    warn!(plan = %id, "a plan's controls are full: aborting it");
                    if let Some(task) = active.task.take() {
                        task.abort();
                    }
                    let _ = self
                        .notes
                        .send(Note::Ended(id.to_string(), Outcome::Cancelled));
                }
            }
            None => {
                active.cancel_reason = Some(reason);
                let id = id.to_string();
                self.ended_plan(&id, Outcome::Cancelled);
            }
        }
    }

    fn cancel(
        &mut self,
        id: &str,
        when: StopMode,
        reply: oneshot::Sender<Result<Answer, PlanError>>,
    ) {
        let queued = self.active.get(id).is_some_and(|a| a.control.is_none());
        self.stop(id, when, "cancelled by request".into());
        if queued {
            let _ = reply.send(Ok(Answer::Changed(Changed {
                id: id.to_string(),
                status: PlanStatus::Cancelled,
                message: "cancelled before it started".into(),
            })));
            return;
        }
        match (when, self.active.get_mut(id)) {
            (StopMode::Now, Some(active)) => active.waiters.push(reply),
            (_, Some(active)) => {
                let message = match when {
                    StopMode::AfterLoop => "will stop when its current loop ends",
                    _ => "will stop when its current step ends",
                };
                let _ = reply.send(Ok(Answer::Changed(Changed {
                    id: id.to_string(),
                    status: active.info.status,
                    message: message.into(),
                })));
            }
            (_, None) => {
                let status = self
                    .ended
                    .iter()
                    .find(|p| p.id == id)
                    .map_or(PlanStatus::Cancelled, |p| p.status);
                let _ = reply.send(Ok(Answer::Changed(Changed {
                    id: id.to_string(),
                    status,
                    message: "cancelled".into(),
                })));
            }
        }
    }

    fn user_pause(&mut self, id: &str, pause: bool) -> Changed {
        let active = self.active.get_mut(id).expect("found");
        let message;
        if active.control.is_none() {
            message = if pause {
                "queued: it starts paused".to_string()
            } else {
                "queued: it starts when its turn comes".to_string()
            };
            active.user_paused = pause;
            return Changed {
                id: id.to_string(),
                status: active.info.status,
                message,
            };
        }
        if active.user_paused == pause {
            return Changed {
                id: id.to_string(),
                status: active.info.status,
                message: if pause {
                    "already paused".into()
                } else {
                    "not paused".into()
                },
            };
        }
        active.user_paused = pause;
        let held = active.held_by.clone();
        let topic;
        if pause {
            let was = active.info.status;
            set_paused(active, true);
            active.info.message = "paused by request".into();
            message = "paused".to_string();
            topic = (was != PlanStatus::Paused).then_some(Topic::PlanPaused);
        } else if let Some(by) = held {
            message = format!(
                "still paused: {} holds its layer; it resumes when that ends",
                self.describe(&by)
            );
            topic = None;
        } else {
            set_paused(active, false);
            active.info.message.clear();
            message = "resumed".to_string();
            topic = Some(Topic::PlanResumed);
        }
        if let Some(topic) = topic {
            let text = if pause {
                "paused by request"
            } else {
                "resumed by request"
            };
            self.emit(id, topic, None, text, json!({"by": "request"}));
        }
        let status = self.active[id].info.status;
        Changed {
            id: id.to_string(),
            status,
            message,
        }
    }

    fn cancel_all(&mut self, reason: &str, reply: oneshot::Sender<Result<Answer, PlanError>>) {
        let ids: Vec<String> = self.active.keys().cloned().collect();
        // Lower layers first, so that none resumes when a higher one ends.
        let mut order = ids.clone();
        order.sort_by_key(|id| self.active[id].info.layer);
        for id in &order {
            self.stop(id, StopMode::Now, reason.to_string());
        }
        let left: HashSet<String> = ids
            .iter()
            .filter(|id| self.active.contains_key(*id))
            .cloned()
            .collect();
        if left.is_empty() {
            let _ = reply.send(Ok(Answer::CancelledAll(ids)));
        } else {
            self.stop_waiters.push(StopWaiter { left, ids, reply });
        }
    }

    fn note(&mut self, note: Note) {
        match note {
            Note::Report(id, Report::Timeline(now, output, frame)) => {
                let frame = frame.unwrap_or(0);
                self.report(&id, now, output, frame);
            }
            Note::Ended(id, outcome) => self.ended_plan(&id, outcome),
        }
    }

    fn report(&mut self, id: &str, now: Duration, output: Output, frame: u64) {
        let Some(active) = self.active.get_mut(id) else {
            return;
        };
        active.info.elapsed = now;
        active.info.elapsed_at = Some(Instant::now());
        match output {
            Output::Begin {
                id: step, at, late, ..
            } => {
                active.info.current_step = Some(step.clone());
                // `at` is when it starts: its due time, or now if that has
                // passed (`late` ago); the event says when it was due.
                let actual = now.max(at);
                let extra = json!({
                    "scheduled_us": micros(at.saturating_sub(late)),
                    "actual_us": micros(actual),
                    "lateness_us": micros(late),
                    "audio_frame": frame,
                });
                self.emit(id, Topic::PlanStepStarted, Some(&step), "", extra);
            }
            Output::Finished { id: step } => {
                if active.top_level.contains(&step) {
                    active.info.steps_done += 1;
                }
                let extra = json!({"actual_us": micros(now), "audio_frame": frame});
                self.emit(id, Topic::PlanStepFinished, Some(&step), "", extra);
            }
            Output::Failed {
                id: step,
                reason,
                continued,
            } => {
                if active.top_level.contains(&step) && continued {
                    active.info.steps_done += 1;
                }
                warn!(plan = %id, step = %step, reason = %reason, continued, "plan step failed");
                let extra =
                    json!({"actual_us": micros(now), "audio_frame": frame, "continued": continued});
                self.emit(id, Topic::PlanStepFailed, Some(&step), &reason, extra);
            }
            Output::Loop { number } => {
                active.info.loop_number = number;
                active.info.steps_done = 0;
            }
            Output::Abort { .. } | Output::Ended(_) => {}
        }
    }

    fn ended_plan(&mut self, id: &str, outcome: Outcome) {
        let Some(mut active) = self.active.remove(id) else {
            return;
        };
        active.task = None;
        let info = &mut active.info;
        info.elapsed = info.elapsed_now();
        info.elapsed_at = None;
        info.ended_at = Some(SystemTime::now());
        info.current_step = None;
        let (status, message) = match &outcome {
            Outcome::Completed => (PlanStatus::Completed, "every step ran".to_string()),
            Outcome::Failed { step, reason } => (
                PlanStatus::Failed,
                format!("step '{step}' failed: {reason}"),
            ),
            Outcome::Cancelled => (
                PlanStatus::Cancelled,
                active
                    .cancel_reason
                    .clone()
                    .unwrap_or_else(|| "cancelled".into()),
            ),
        };
        info.status = status;
        info.message = message.clone();
        let info = info.clone();
        match status {
            PlanStatus::Failed => warn!(plan = %id, name = %info.name, %message, "plan failed"),
            _ => {
                info!(plan = %id, name = %info.name, status = status.as_str(), %message, "plan ended")
            }
        }
        // The event before the next plan starts, with the plan's own data.
        self.emit_info(&info, Topic::PlanEnded, None, &message, json!({}));
        for waiter in active.waiters.drain(..) {
            let _ = waiter.send(Ok(Answer::Changed(Changed {
                id: id.to_string(),
                status,
                message: message.clone(),
            })));
        }
        self.remember(info);
        let acts = self.layers.ended(id);
        self.apply(acts);
        for waiter in &mut self.stop_waiters {
            waiter.left.remove(id);
        }
        let (done, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.stop_waiters)
            .into_iter()
            .partition(|w| w.left.is_empty());
        self.stop_waiters = waiting;
        for waiter in done {
            let _ = waiter.reply.send(Ok(Answer::CancelledAll(waiter.ids)));
        }
    }

    fn remember(&mut self, info: PlanInfo) {
        self.ended.push_front(info);
        self.ended.truncate(HISTORY);
    }

    fn emit(
        &self,
        id: &str,
        topic: Topic,
        step: Option<&str>,
        message: &str,
        extra: serde_json::Value,
    ) {
        if let Some(active) = self.active.get(id) {
            self.emit_info(&active.info, topic, step, message, extra);
        }
    }

    fn emit_info(
        &self,
        info: &PlanInfo,
        topic: Topic,
        step: Option<&str>,
        message: &str,
        extra: serde_json::Value,
    ) {
        let mut payload = json!({
            "plan_id": info.id,
            "plan_name": info.name,
            "layer": layer_name(info.layer),
            "status": info.status.as_str(),
            "message": message,
            "loop": info.loop_number,
            "elapsed_us": micros(info.elapsed),
        });
        if let Some(step) = step {
            payload["step_id"] = json!(step);
        }
        if let (Some(map), serde_json::Value::Object(extra)) = (payload.as_object_mut(), extra) {
            map.extend(extra);
        }
        self.plans.inner.bus.publish(
            Draft::new(topic, "plans", payload).correlation_id(info.correlation_id.clone()),
        );
    }
}

fn set_paused(active: &mut Active, paused: bool) {
    // Plan time stands still while paused and moves on from where it was.
    active.info.elapsed = active.info.elapsed_now();
    active.info.elapsed_at = Some(Instant::now());
    if paused {
        if active.info.status == PlanStatus::Running
            && let Some(control) = &active.control
        {
            let _ = control.try_send(Control::Pause);
        }
        if active.info.status != PlanStatus::Pending {
            active.info.status = PlanStatus::Paused;
        }
    } else if active.info.status == PlanStatus::Paused {
        if let Some(control) = &active.control {
            let _ = control.try_send(Control::Resume);
        }
        active.info.status = PlanStatus::Running;
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
