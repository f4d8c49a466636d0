//! The servos: hobby servos on a Pololu Maestro USB servo controller (6 to
//! 24 channels), driven over serial in the Maestro's compact protocol
//! ([`protocol`]).
//!
//! [`Servos`] is the handle (cheap to clone, async) and the [`Subsystem`];
//! the actor ([`actor`]) owns the serial port on an OS thread of its own,
//! interpolates moves at 50 Hz ([`motion::FRAME`]) with one Set Target per
//! moving servo per frame, and notices a lost board (write error, no answer
//! to Get Errors or Get Position, port gone), reopening it with backoff and
//! putting each servo back at its last target. What the servos do is
//! published in a `watch` ([`ServosState`]) and as `servo.move.*` and
//! `servos.connection.*` events.
//!
//! Every servo is declared in a `[[servo]]` table ([`settings`]) with its
//! channel and its range; a position is a fraction of that range, 0.0
//! (`min_us`) to 1.0 (`max_us`), and nothing is ever sent outside it. A
//! servo's `max_speed` is kept twice: moves are lengthened so their curve
//! never beats it ([`motion::plan_duration`]), and the board's own speed
//! limit (Set Speed) is set to it, so that a `step` move or a restored
//! target is paced by the board too. The board's acceleration limit is set
//! to 0 (none): the easing is the host's.
//!
//! With no board (`virtual`, the default, or `auto` finding none) the
//! servos run against a Maestro emulated inside the server ([`link`],
//! [`maestro`]) at the wire's pace, and are marked virtual in status and
//! logs. `sim` (with the `testkit` feature only) is the same model on a
//! real pseudo-terminal, for tests and demos.

mod actor;
mod link;
pub mod maestro;
mod message;
pub mod motion;
pub mod protocol;
pub mod settings;
#[cfg(feature = "testkit")]
pub mod sim;

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde::Serialize;
use tokio::sync::{oneshot, watch};

use crate::{
    actor::{ActorError, Handle, Subject},
    bus::Bus,
    lifecycle::{BoxFuture, ServiceStatus, StatusHandle, Subsystem},
};
use message::{Msg, Reply, Request};
pub use motion::Easing;
pub use settings::{ServoPort, ServoSettings, ServoSpec};

/// Requests that may be outstanding at once, from sending until the
/// answer; more are refused.
const MAX_QUEUED: usize = 256;

/// How many finished moves are remembered for [`Servos::wait_move`].
const REMEMBERED_MOVES: usize = 1024;

/// The longest move accepted.
pub const MAX_MOVE: Duration = Duration::from_secs(3600);

/// A move's number, unique for the server's run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct MoveId(pub u64);

impl fmt::Display for MoveId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A move that has begun.
#[derive(Clone, Debug, PartialEq)]
pub struct MoveStarted {
    /// Its number, for [`Servos::wait_move`] and the `servo.move.*` events.
    pub id: MoveId,
    /// The servo's name.
    pub servo: String,
    /// The servo's channel.
    pub channel: u8,
    /// Where it starts, µs; `None` when the board had the servo off (no
    /// pulses) and so where it is is unknown: it is then sent straight to
    /// its goal.
    pub from_us: Option<f64>,
    /// Where it ends, µs.
    pub to_us: f64,
    /// Where it ends, as a fraction of the range.
    pub position: f64,
    /// The curve asked for.
    pub easing: Easing,
    /// The duration asked for.
    pub requested: Duration,
    /// The duration it takes: longer than asked when `max_speed` needs it.
    pub duration: Duration,
    /// When it started.
    pub started_at: Instant,
    /// When it ends (`started_at + duration`).
    pub finishes_at: Instant,
    /// Whether the servo's `max_speed` lengthened it.
    pub limited_by_speed: bool,
    /// The running move it replaced, which ends `replaced`.
    pub replaced: Option<MoveId>,
    /// How many Set Targets it sends at most (one per 20 ms frame).
    pub frames: u32,
    /// Whether it runs on the virtual servos.
    pub is_virtual: bool,
}

/// How a move ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MoveOutcome {
    /// Its last target was sent (for `step`: its time is up).
    Finished,
    /// A newer move on the same servo took over from where it was.
    Replaced {
        /// The newer move.
        by: MoveId,
    },
    /// [`Servos::halt`] stopped it where it was.
    Halted,
    /// The board was lost; the servo stays at the last target sent, and is
    /// put back there when the board returns.
    Interrupted {
        /// Why.
        reason: String,
    },
    /// The servos stopped (shutdown or reset).
    Stopped,
}

impl MoveOutcome {
    /// The outcome's name, as events carry it.
    pub fn as_str(&self) -> &'static str {
        match self {
            MoveOutcome::Finished => "finished",
            MoveOutcome::Replaced { .. } => "replaced",
            MoveOutcome::Halted => "halted",
            MoveOutcome::Interrupted { .. } => "interrupted",
            MoveOutcome::Stopped => "stopped",
        }
    }
}

/// One servo: its configuration and where it is.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServoState {
    /// Its name.
    pub name: String,
    /// The board's channel.
    pub channel: u8,
    /// The range it is kept in, µs.
    pub min_us: u16,
    /// The range it is kept in, µs.
    pub max_us: u16,
    /// Where `servo home` puts it, µs.
    pub home_us: u16,
    /// Its top speed, fractions of the range a second.
    pub max_speed: Option<f64>,
    /// The last target sent, µs; `None` until known (the board had it off).
    pub target_us: Option<f64>,
    /// The last target as a fraction of the range.
    pub position: Option<f64>,
    /// Whether a move is running.
    pub moving: bool,
    /// The running move.
    pub move_id: Option<MoveId>,
    /// Why it cannot move (a channel beyond the board's), if so.
    pub problem: Option<String>,
}

impl ServoState {
    fn initial(spec: &ServoSpec) -> Self {
        Self {
            name: spec.name.clone(),
            channel: spec.channel,
            min_us: spec.min_us,
            max_us: spec.max_us,
            home_us: spec.home_us,
            max_speed: spec.max_speed,
            target_us: None,
            position: None,
            moving: false,
            move_id: None,
            problem: None,
        }
    }
}

/// The servos and how their board is connected.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ServosState {
    /// The serial port in use, or `virtual`.
    pub port: String,
    /// True when the servos are the emulated board inside the server.
    #[serde(rename = "virtual")]
    pub is_virtual: bool,
    /// Whether the board answers.
    pub connected: bool,
    /// The board's channel count, when known.
    pub channels: Option<u8>,
    /// The last thing that went wrong, for people.
    pub last_error: Option<String>,
    /// What the board's error register said when last read with errors
    /// (serial overrun, bad command …); empty when it was clear.
    pub board_errors: Vec<String>,
    /// Every configured servo, in configuration order.
    pub servos: Vec<ServoState>,
}

impl ServosState {
    fn initial(port: &ServoPort, specs: &[ServoSpec]) -> Self {
        Self {
            port: port.to_string(),
            is_virtual: matches!(port, ServoPort::Virtual),
            connected: false,
            channels: None,
            last_error: None,
            board_errors: Vec::new(),
            servos: specs.iter().map(ServoState::initial).collect(),
        }
    }
}

/// What the board itself reports, read on request.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BoardReport {
    /// Each servo's output as the board drives it (Get Position), µs; `None`
    /// for a servo it has off, or cannot have (channel beyond the board).
    pub positions: Vec<(String, Option<f64>)>,
    /// Whether any output is still on its way to its target (Get Moving
    /// State; unreliable on the Micro Maestro 6, says Pololu).
    pub moving: bool,
    /// The error register (Get Errors, which clears it).
    pub errors: Vec<String>,
}

/// Why a servo request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServoError {
    /// The request is malformed: a position outside 0–1, a move too long, a
    /// servo on a channel the board lacks.
    #[error("{0}")]
    Invalid(String),
    /// No servo has that name.
    #[error("{}", not_found(.name, .suggestion.as_deref(), .known))]
    NotFound {
        /// What was asked for.
        name: String,
        /// The closest name, if one is close.
        suggestion: Option<String>,
        /// Every servo's name.
        known: Vec<String>,
    },
    /// No move has that id (it never started, or is forgotten).
    #[error("{0}")]
    UnknownMove(String),
    /// The board is lost or starting, the servos are stopped, or too much
    /// is queued.
    #[error("{0}")]
    Unavailable(String),
}

fn not_found(name: &str, suggestion: Option<&str>, known: &[String]) -> String {
    if known.is_empty() {
        return format!(
            "no servo named '{name}': no servos are configured; declare them in [[servo]] tables in the configuration file"
        );
    }
    let hint = suggestion
        .map(|s| format!("; did you mean '{s}'?"))
        .unwrap_or_default();
    format!(
        "no servo named '{name}'{hint} (servos: {}; see `servo list`)",
        known.join(", ")
    )
}

impl From<ActorError> for ServoError {
    fn from(e: ActorError) -> Self {
        ServoError::Unavailable(e.to_string())
    }
}

/// The moves of this run and how they ended: what [`Servos::wait_move`]
/// reads. The actor writes it; shared so that waiting never queues in the
/// actor's inbox.
struct MoveBook {
    /// The last id given.
    last: u64,
    /// By id: `None` while running.
    outcomes: BTreeMap<u64, Option<MoveOutcome>>,
}

impl MoveBook {
    fn new() -> Self {
        Self {
            last: 0,
            outcomes: BTreeMap::new(),
        }
    }

    /// A new running move.
    fn start(&mut self) -> MoveId {
        self.last += 1;
        self.outcomes.insert(self.last, None);
        if self.outcomes.len() > REMEMBERED_MOVES
            && let Some(oldest) = self
                .outcomes
                .iter()
                .find(|(_, outcome)| outcome.is_some())
                .map(|(id, _)| *id)
        {
            self.outcomes.remove(&oldest);
        }
        MoveId(self.last)
    }

    fn end(&mut self, id: MoveId, outcome: MoveOutcome) {
        self.outcomes.insert(id.0, Some(outcome));
    }
}

/// The servos' handle and subsystem.
#[derive(Clone)]
pub struct Servos {
    inner: Arc<Inner>,
}

struct Inner {
    port: ServoPort,
    settings: ServoSettings,
    specs: Arc<[ServoSpec]>,
    bus: Bus,
    state: watch::Sender<ServosState>,
    book: Arc<Mutex<MoveBook>>,
    /// Bumped whenever a move ends.
    ended: watch::Sender<u64>,
    /// The actor's thread, while it runs.
    actor: Handle<Msg>,
}

impl Servos {
    /// The servos `specs` on `port`, announcing on `bus`; nothing runs
    /// until started. The specs are taken as checked by the configuration
    /// ([`settings::parse_tables`]).
    pub fn new(port: ServoPort, settings: ServoSettings, specs: Vec<ServoSpec>, bus: Bus) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: watch::Sender::new(ServosState::initial(&port, &specs)),
                port,
                settings,
                specs: specs.into(),
                bus,
                book: Arc::new(Mutex::new(MoveBook::new())),
                ended: watch::Sender::new(0),
                actor: Handle::new(Subject::plural("the servos")),
            }),
        }
    }

    /// The servos and their board now.
    pub fn state(&self) -> ServosState {
        self.inner.state.borrow().clone()
    }

    /// Follows the servos and their board.
    pub fn subscribe(&self) -> watch::Receiver<ServosState> {
        self.inner.state.subscribe()
    }

    /// Every servo, in configuration order (`servo list`, `servo status`).
    pub fn list(&self) -> Vec<ServoState> {
        self.inner.state.borrow().servos.clone()
    }

    /// How the servos' link behaves (`servo_home_duration`,
    /// `servo_home_on_stop` …).
    pub fn settings(&self) -> &ServoSettings {
        &self.inner.settings
    }

    /// The servos' names, in configuration order.
    pub fn names(&self) -> Vec<String> {
        self.inner.specs.iter().map(|s| s.name.clone()).collect()
    }

    /// The configuration of the servo `name`: for checking a plan's
    /// `move.target` ahead of time, with a suggestion when it is unknown.
    pub fn spec(&self, name: &str) -> Result<ServoSpec, ServoError> {
        self.index(name).map(|i| self.inner.specs[i].clone())
    }

    fn index(&self, name: &str) -> Result<usize, ServoError> {
        let specs = &self.inner.specs;
        if let Some(i) = specs.iter().position(|s| s.name == name) {
            return Ok(i);
        }
        let known = self.names();
        Err(ServoError::NotFound {
            name: name.to_string(),
            suggestion: closest(name, &known),
            known,
        })
    }

    /// Moves servo `name` to `position` (0.0 = `min_us`, 1.0 = `max_us`)
    /// over `duration` along `easing`, from where it is; a move already
    /// running on it is replaced (it ends `replaced`). The move is
    /// lengthened when the servo's `max_speed` needs it. Returns once the
    /// move has started; [`wait_move`](Self::wait_move) waits for its end.
    pub async fn move_to(
        &self,
        name: &str,
        position: f64,
        duration: Duration,
        easing: Easing,
    ) -> Result<MoveStarted, ServoError> {
        let servo = self.index(name)?;
        motion::check_position(position)
            .map_err(|problem| ServoError::Invalid(format!("servo '{name}': {problem}")))?;
        if duration > MAX_MOVE {
            return Err(ServoError::Invalid(format!(
                "a move of {} is too long; the longest is {}",
                humantime::format_duration(duration),
                humantime::format_duration(MAX_MOVE)
            )));
        }
        let spec = &self.inner.specs[servo];
        let range = motion::Range {
            min: protocol::quarters(f64::from(spec.min_us)),
            max: protocol::quarters(f64::from(spec.max_us)),
        };
        let goal = range.target(position);
        self.call(|reply, correlation| Request::Move {
            servo,
            goal,
            duration,
            easing,
            reply,
            correlation,
        })
        .await
    }

    /// Sends servo `name`, or every servo (`None`), home (`home_us`) over
    /// `servo_home_duration`, ease-in-out. Servos that cannot move (a
    /// channel beyond the board's) are left out of "every servo".
    pub async fn home(&self, name: Option<&str>) -> Result<Vec<MoveStarted>, ServoError> {
        let servos = self.chosen(name)?;
        self.call(|reply, correlation| Request::Home {
            servos,
            reply,
            correlation,
        })
        .await
    }

    /// Stops the running move of servo `name`, or of every servo (`None`),
    /// where it is (the moves end `halted`); the ids of the moves stopped.
    /// A `step` move the board paces at `max_speed` goes on to its target
    /// on the board.
    pub async fn halt(&self, name: Option<&str>) -> Result<Vec<MoveId>, ServoError> {
        let servos = self.chosen(name)?;
        self.call(|reply, correlation| Request::Halt {
            servos,
            reply,
            correlation,
        })
        .await
    }

    /// Waits for move `id` to end, and says how. At once for a move that
    /// has ended (the last 1024 are remembered).
    pub async fn wait_move(&self, id: MoveId) -> Result<MoveOutcome, ServoError> {
        let mut ended = self.inner.ended.subscribe();
        loop {
            let known = self
                .inner
                .book
                .lock()
                .expect("move book lock")
                .outcomes
                .get(&id.0)
                .cloned();
            match known {
                None => {
                    return Err(ServoError::UnknownMove(format!(
                        "no move {id}: it never started, or ended too long ago to be remembered (the last {REMEMBERED_MOVES} are)"
                    )));
                }
                Some(Some(outcome)) => return Ok(outcome),
                Some(None) => {
                    // The sender lives as long as `self`.
                    let _ = ended.changed().await;
                }
            }
        }
    }

    /// What the board itself reports: where each servo's output is, whether
    /// any is still moving, and its error register (which reading clears).
    pub async fn read_back(&self) -> Result<BoardReport, ServoError> {
        self.call(|reply, correlation| Request::ReadBack { reply, correlation })
            .await
    }

    fn chosen(&self, name: Option<&str>) -> Result<Vec<usize>, ServoError> {
        match name {
            Some(name) => Ok(vec![self.index(name)?]),
            None => Ok((0..self.inner.specs.len()).collect()),
        }
    }

    async fn call<T>(
        &self,
        request: impl FnOnce(Reply<T>, Option<Arc<str>>) -> Request,
    ) -> Result<T, ServoError> {
        self.inner
            .actor
            .call(|reply, correlation| Msg::Request(request(reply, correlation)))
            .await?
    }
}

/// The closest of `known` to `name`, if one is close (or `name` is a prefix).
fn closest(name: &str, known: &[String]) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    known
        .iter()
        .map(|k| {
            let k_lower = k.to_ascii_lowercase();
            let distance = if k_lower == lower || k_lower.starts_with(&lower) {
                0
            } else {
                strsim::levenshtein(&lower, &k_lower)
            };
            (distance, k)
        })
        .filter(|(d, k)| *d <= (k.len() / 3).max(2))
        .min()
        .map(|(_, k)| k.clone())
}

/// The subsystem status that a state means.
fn status_of(state: &ServosState) -> (ServiceStatus, String) {
    let count = state.servos.len();
    let servos = match count {
        1 => "1 servo".to_string(),
        n => format!("{n} servos"),
    };
    let problems: Vec<&str> = state
        .servos
        .iter()
        .filter_map(|s| s.problem.as_deref())
        .collect();
    if !state.connected {
        return (
            ServiceStatus::Degraded,
            format!(
                "board lost on {}: {}; reconnecting",
                state.port,
                state.last_error.as_deref().unwrap_or("not answering")
            ),
        );
    }
    if !problems.is_empty() {
        return (ServiceStatus::Degraded, problems.join("; "));
    }
    if state.is_virtual {
        (
            ServiceStatus::Running,
            format!("virtual servos (no Maestro): {servos}; moves are emulated and logged"),
        )
    } else {
        (
            ServiceStatus::Running,
            format!("Maestro on {}: {servos}", state.port),
        )
    }
}

impl Subsystem for Servos {
    fn name(&self) -> &'static str {
        "servos"
    }

    /// The droid performs without its servos.
    fn critical(&self) -> bool {
        false
    }

    fn start(&self, status: StatusHandle) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let inner = &self.inner;
            inner
                .state
                .send_replace(ServosState::initial(&inner.port, &inner.specs));
            let (first, first_outcome) = oneshot::channel();
            let setup = actor::Setup {
                port: inner.port.clone(),
                settings: inner.settings.clone(),
                specs: inner.specs.clone(),
                bus: inner.bus.clone(),
                state: inner.state.clone(),
                book: inner.book.clone(),
                ended: inner.ended.clone(),
                first_outcome: first,
            };
            // Emptying the slot (stop, or dropping the servos) tells the
            // actor to stop: it holds a sender of its own inbox, for its
            // links' readers, so it never sees the channel close.
            inner.actor.spawn_thread(
                "servos",
                MAX_QUEUED,
                Msg::Stop,
                (),
                move |inbox, outbox| actor::Actor::new(setup, inbox, outbox).run(),
            )?;
            // The first attempt to reach the board ends in a bounded time
            // (open, sync, one position query per servo).
            let _ = first_outcome.await;
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

#[cfg(test)]
mod tests;
