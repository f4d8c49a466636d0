//! The servos' actor: one OS thread that owns the link to the board and
//! every servo's state. Its inbox carries the handle's requests and the
//! bytes the board sends back, so one `recv_timeout` loop serves both, with
//! the nearest deadline (a move's next frame or end, a query's answer, the
//! next reconnection attempt, the heartbeat) as its timeout. Nothing polls.
//!
//! Set Target, Set Speed and Set Acceleration are not answered: they are
//! written as they come, and a write that fails means a lost board. The
//! queries (Get Errors, Get Position, Get Moving State) are answered with
//! bare bytes that say nothing of what they answer, so they go one at a
//! time: the next is sent once the answer to the one before is in. A query
//! not answered in time means a lost board, with one exception: while the
//! servos' positions are first read, a Get Position the board does not
//! answer is followed by a Get Errors, and a protocol error there means the
//! servo's channel is beyond the board's (the Maestro ignores such a
//! command and says so in its error register).
//!
//! Answers carry no ids, so a late one must not be read as the next
//! query's: after a (re)open and after any answer timeout no query goes out
//! until the line has been quiet for an answer timeout, and bytes that
//! arrive when no query is out are discarded.
//!
//! On a new link the actor reads the error register (the board is there
//! once it answers), reads where the servos whose target it does not know
//! are, then sets each servo's speed limit (its `max_speed`) and
//! acceleration (none) and puts back each known target. Only then do moves
//! start. A Maestro sends its outputs home (off by default) on any error,
//! so whenever the error register is not empty (at a heartbeat or a
//! read-back) the servos are set up and put back the same way.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use serde_json::json;
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use super::{
    BoardReport, MoveBook, MoveId, MoveOutcome, MoveStarted, ServoError, ServosState,
    link::{self, Link},
    message::{Msg, Reply, Request},
    motion::{Easing, Path, Range, plan_duration},
    protocol::{self, Command, Errors},
    settings::{ServoPort, ServoSettings, ServoSpec, beyond},
};
use crate::bus::{Bus, Draft, Topic};

/// First wait before reopening a lost board; it doubles up to the setting.
const FIRST_RETRY: Duration = Duration::from_millis(250);

/// Sync queries sent before a silent board counts as lost.
const SYNC_TRIES: u8 = 2;

/// How often `auto` looks for a board while it uses the virtual servos.
const RESCAN: Duration = Duration::from_secs(5);

/// The channel count of a board nothing says more of: the largest Maestro.
const DEFAULT_CHANNELS: u8 = protocol::MAX_CHANNELS;

/// What the actor starts with.
pub struct Setup {
    pub port: ServoPort,
    pub settings: ServoSettings,
    pub specs: Arc<[ServoSpec]>,
    pub bus: Bus,
    pub state: watch::Sender<ServosState>,
    pub book: Arc<Mutex<MoveBook>>,
    pub ended: watch::Sender<u64>,
    /// Fired once the first attempt to reach the board has an outcome.
    pub first_outcome: oneshot::Sender<()>,
}

/// Where the link stands.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// No link; the next attempt is at `retry`.
    Down { retry: Instant },
    /// Port open; the Get Errors that shows the board is there is out.
    Syncing { tries: u8 },
    /// The board answers; the servos' positions are being read.
    Probing,
    /// Moves run.
    Up,
}

/// Why a query was sent.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Purpose {
    /// The board is there once it answers.
    Sync,
    /// Where servo `i` is, at connection.
    Probe(usize),
    /// Servo `i`'s Get Position went unanswered: is its channel beyond the board?
    ProbeErrors(usize),
    /// The board still answers.
    Heartbeat,
    /// Servo `i`'s position, for a read-back.
    ReadPosition(usize),
    /// The moving state, for a read-back.
    ReadMoving,
    /// The error register, for a read-back.
    ReadErrors,
}

/// A query waiting to be sent, or sent and waiting for its answer.
struct Query {
    command: Command,
    purpose: Purpose,
    /// When the answer is due, once sent.
    deadline: Option<Instant>,
}

/// A read-back being gathered.
struct ReadBack {
    positions: Vec<Option<u16>>,
    moving: bool,
    errors: Vec<String>,
    replies: Vec<Reply<BoardReport>>,
}

/// A running move.
struct Motion {
    id: MoveId,
    path: Path,
    started: Instant,
    /// The next frame; `None` once the last target is out (a `step` waits
    /// for its end).
    next: Option<Instant>,
    ends: Instant,
    correlation: Option<Arc<str>>,
    /// A step the board paces at the servo's speed limit: its goal is the
    /// board's target at once, but the output gets there only at `ends`.
    paced: bool,
}

impl Motion {
    /// Where a paced step has the output at `now` (from + speed × elapsed,
    /// up to the goal); `None` for other moves.
    fn paced_at(&self, speed: Option<f64>, now: Instant) -> Option<u16> {
        let speed = speed.filter(|s| self.paced && s.is_finite() && *s > 0.0)?;
        let (from, to) = (f64::from(self.path.from), f64::from(self.path.to));
        let covered = speed * now.saturating_duration_since(self.started).as_secs_f64();
        let at = if (to - from).abs() <= covered {
            to
        } else {
            from + covered.copysign(to - from)
        };
        Some(at.round() as u16)
    }
}

/// One servo as the actor drives it.
struct Servo {
    spec: ServoSpec,
    range: Range,
    /// `max_speed` in quarter-µs a second.
    speed: Option<f64>,
    /// The last target sent (or read at connection), quarter-µs.
    target: Option<u16>,
    motion: Option<Motion>,
    /// Why it cannot move on this board.
    problem: Option<String>,
}

impl Servo {
    /// Where it is as far as the server knows at `now`: during a paced
    /// step, the estimate of where the board has brought it; else its last
    /// target (which may be outside its range, as read from the board).
    fn current(&self, now: Instant) -> Option<u16> {
        self.motion
            .as_ref()
            .and_then(|m| m.paced_at(self.speed, now))
            .or(self.target)
    }
}

/// The actor's state.
pub struct Actor {
    setup: Setup,
    inbox: mpsc::Receiver<Msg>,
    /// Given to each link's reader.
    outbox: mpsc::Sender<Msg>,
    first_outcome: Option<oneshot::Sender<()>>,
    link: Option<Link>,
    next_link_id: u64,
    phase: Phase,
    backoff: Duration,
    /// The port of the current (or last) link, for people.
    port: String,
    is_virtual: bool,
    /// `auto` found no board and uses the virtual servos; when to look again.
    rescan: Option<Instant>,
    /// A real board answered at least once: `auto` then waits for it rather
    /// than falling back to the virtual servos.
    had_board: bool,
    lost_at: Option<Instant>,
    was_up: bool,
    /// The board was up once: a return is a recovery.
    ever_up: bool,
    servos: Vec<Servo>,
    /// The board's channel count, when known.
    channels: Option<u8>,
    queries: VecDeque<Query>,
    /// Answer bytes not consumed yet.
    rx: Vec<u8>,
    read_back: Option<ReadBack>,
    /// When the last query was answered (or the link opened).
    last_answer: Instant,
    /// No query goes out before then: after a (re)open and after an
    /// answer timeout, the line must be quiet for an answer timeout, so
    /// that a late answer is not read as the next query's. Bytes arriving
    /// meanwhile are discarded and push it back.
    quiet_until: Option<Instant>,
    /// Targets of the frame being sent.
    frame: Vec<u8>,
}

impl Actor {
    /// An actor that has not run yet.
    pub fn new(mut setup: Setup, inbox: mpsc::Receiver<Msg>, outbox: mpsc::Sender<Msg>) -> Actor {
        let first_outcome = Some(std::mem::replace(
            &mut setup.first_outcome,
            oneshot::channel().0,
        ));
        let state = setup.state.borrow().clone();
        let servos = setup
            .specs
            .iter()
            .map(|spec| {
                let range = Range {
                    min: protocol::quarters(f64::from(spec.min_us)),
                    max: protocol::quarters(f64::from(spec.max_us)),
                };
                Servo {
                    speed: spec.max_speed.map(|s| range.speed(s)),
                    spec: spec.clone(),
                    range,
                    target: None,
                    motion: None,
                    problem: None,
                }
            })
            .collect();
        let now = Instant::now();
        Actor {
            port: state.port.clone(),
            is_virtual: state.is_virtual,
            first_outcome,
            inbox,
            outbox,
            link: None,
            next_link_id: 0,
            phase: Phase::Down { retry: now },
            backoff: FIRST_RETRY,
            rescan: None,
            had_board: false,
            lost_at: None,
            was_up: false,
            ever_up: false,
            servos,
            channels: None,
            queries: VecDeque::new(),
            rx: Vec::new(),
            read_back: None,
            last_answer: now,
            quiet_until: None,
            frame: Vec::with_capacity(4 * usize::from(protocol::MAX_CHANNELS)),
            setup,
        }
    }

    /// Runs until [`Msg::Stop`].
    pub fn run(mut self) {
        self.attempt(Instant::now());
        'run: loop {
            self.pump();
            let first = match self.next_deadline() {
                Some(at) => {
                    match self
                        .inbox
                        .recv_timeout(at.saturating_duration_since(Instant::now()))
                    {
                        Ok(msg) => Some(msg),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                None => match self.inbox.recv() {
                    Ok(msg) => Some(msg),
                    Err(_) => break,
                },
            };
            // Everything already here is handled before any deadline is
            // judged: an answer waiting behind requests is not a timeout.
            let mut next = first;
            while let Some(msg) = next {
                if !self.handle(msg) {
                    break 'run;
                }
                next = self.inbox.try_recv().ok();
            }
            self.tick(Instant::now());
        }
        self.finish();
    }

    /// Handles one message; false to stop.
    fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Stop => return false,
            Msg::Request(request) => self.request(request),
            Msg::Received { link, bytes } if self.is_current(link) => self.received(&bytes),
            Msg::Failed { link, error } if self.is_current(link) => self.lose(error),
            // A dropped link's leftovers.
            Msg::Received { .. } | Msg::Failed { .. } => {}
        }
        true
    }

    fn is_current(&self, link: u64) -> bool {
        self.link.as_ref().is_some_and(|l| l.id == link)
    }

    /// The nearest moment something is due.
    fn next_deadline(&self) -> Option<Instant> {
        let mut due: Option<Instant> = None;
        let mut add = |at: Option<Instant>| {
            if let Some(at) = at {
                due = Some(due.map_or(at, |d| d.min(at)));
            }
        };
        match self.phase {
            Phase::Down { retry } => add(Some(retry)),
            Phase::Up => {
                for servo in &self.servos {
                    if let Some(motion) = &servo.motion {
                        add(Some(motion.next.unwrap_or(motion.ends)));
                    }
                }
                add(self.heartbeat_at());
            }
            Phase::Syncing { .. } | Phase::Probing => {}
        }
        add(self.queries.front().and_then(|q| q.deadline));
        add(self.quiet_until);
        add(self.rescan);
        due
    }

    /// When the next heartbeat is due, if one is.
    fn heartbeat_at(&self) -> Option<Instant> {
        let heartbeat = self.setup.settings.heartbeat;
        (!heartbeat.is_zero() && !self.is_virtual && self.queries.is_empty())
            .then(|| self.last_answer + heartbeat)
    }

    /// Does whatever is due at `now`.
    fn tick(&mut self, now: Instant) {
        if self
            .queries
            .front()
            .and_then(|q| q.deadline)
            .is_some_and(|d| d <= now)
        {
            self.unanswered();
        }
        if self.quiet_until.is_some_and(|at| at <= now) {
            self.quiet_until = None;
        }
        match self.phase {
            Phase::Down { retry } if retry <= now => self.attempt(now),
            Phase::Up => {
                self.frames(now);
                if self.phase == Phase::Up && self.heartbeat_at().is_some_and(|at| at <= now) {
                    self.queries
                        .push_back(query(Command::GetErrors, Purpose::Heartbeat));
                }
            }
            _ => {}
        }
        if self.rescan.is_some_and(|at| at <= now) {
            self.rescan = None;
            self.look_for_board(now);
        }
    }

    /// The front query's answer did not come in time.
    fn unanswered(&mut self) {
        let Some(front) = self.queries.pop_front() else {
            return;
        };
        let after = humantime::format_duration(self.setup.settings.answer_timeout);
        // Its answer may still come: wait for a quiet line before the next.
        self.rx.clear();
        self.quiet_until = Some(Instant::now() + self.setup.settings.answer_timeout);
        match front.purpose {
            Purpose::Sync => {
                let Phase::Syncing { tries } = self.phase else {
                    return;
                };
                if tries < SYNC_TRIES {
                    debug!(port = %self.port, "no answer to Get Errors from the servo board yet; asking again");
                    self.phase = Phase::Syncing { tries: tries + 1 };
                    self.queries
                        .push_front(query(Command::GetErrors, Purpose::Sync));
                } else {
                    self.lose(format!(
                        "the board does not answer (no reply to Get Errors, {SYNC_TRIES} times, after opening the port; is it a Maestro, in USB Dual Port mode?)"
                    ));
                }
            }
            Purpose::Probe(i) => {
                // Ignored commands leave no answer: ask the error register
                // whether the channel is beyond the board.
                self.queries
                    .push_front(query(Command::GetErrors, Purpose::ProbeErrors(i)));
            }
            _ => self.lose(format!(
                "no answer to {} within {after}",
                front.command.name()
            )),
        }
    }

    /// Tries to open the link.
    fn attempt(&mut self, now: Instant) {
        let settings = &self.setup.settings;
        // The channel count: the setting, else the board's USB id, else
        // unknown for a real port (probed) and the largest for the virtual one.
        let (path, channels) = match &self.setup.port {
            ServoPort::Virtual => (None, Some(settings.channels.unwrap_or(DEFAULT_CHANNELS))),
            ServoPort::Path(path) => {
                let path = path.display().to_string();
                let channels = settings.channels.or_else(|| link::channels_at(&path));
                (Some(path), channels)
            }
            ServoPort::Auto => match protocol::choose_port(&link::list_ports()) {
                Some((port, channels)) => {
                    info!(port = %port.path, channels, "found the Maestro for the servos");
                    (
                        Some(port.path.clone()),
                        Some(settings.channels.unwrap_or(channels)),
                    )
                }
                None if self.had_board => {
                    self.fail_attempt(
                        now,
                        "no Maestro found (was it unplugged?)".into(),
                        "auto".into(),
                    );
                    return;
                }
                None => {
                    info!(
                        "no Maestro found for the servos: using VIRTUAL servos; set CANTINA_SERVO_PORT to the board's port, or plug it in (looked for every {}s)",
                        RESCAN.as_secs()
                    );
                    self.rescan = Some(now + RESCAN);
                    (None, Some(settings.channels.unwrap_or(DEFAULT_CHANNELS)))
                }
            },
        };
        self.next_link_id += 1;
        let id = self.next_link_id;
        let opened = match &path {
            None => Ok(Link::virtual_board(
                id,
                self.outbox.clone(),
                channels.unwrap_or(DEFAULT_CHANNELS),
            )),
            Some(path) => Link::serial(
                path,
                id,
                self.outbox.clone(),
                self.setup.settings.answer_timeout,
            ),
        };
        let port = path.clone().unwrap_or_else(|| "virtual".into());
        match opened {
            Ok(link) => {
                debug!(port = %port, "servo board's port open; reading its errors");
                self.link = Some(link);
                self.port = port;
                self.is_virtual = path.is_none();
                self.channels = channels;
                self.rx.clear();
                self.last_answer = now;
                // Whatever the port still holds is no answer to this link's
                // queries (the virtual board has no past).
                self.quiet_until =
                    (!self.is_virtual).then(|| now + self.setup.settings.answer_timeout);
                self.mark_beyond();
                self.phase = Phase::Syncing { tries: 1 };
                self.queries.clear();
                self.queries
                    .push_back(query(Command::GetErrors, Purpose::Sync));
            }
            Err(error) => self.fail_attempt(now, error, port),
        }
    }

    /// Notes the servos whose channel the board lacks, when its count is known.
    fn mark_beyond(&mut self) {
        let count = self.channels;
        for servo in &mut self.servos {
            servo.problem = count.and_then(|count| {
                beyond(std::slice::from_ref(&servo.spec), count)
                    .pop()
                    .map(|p| {
                        format!(
                            "servo '{}' is on channel {}, {}",
                            servo.spec.name, servo.spec.channel, p.problem
                        )
                    })
            });
            if let Some(problem) = &servo.problem {
                warn!(servo = %servo.spec.name, "{problem}");
            }
        }
        let problems: Vec<Option<String>> = self.servos.iter().map(|s| s.problem.clone()).collect();
        self.setup.state.send_modify(|s| {
            s.channels = count;
            for (state, problem) in s.servos.iter_mut().zip(problems) {
                state.problem = problem;
            }
        });
    }

    /// `auto` uses the virtual servos: switches to a board that appeared.
    fn look_for_board(&mut self, now: Instant) {
        if !matches!(self.setup.port, ServoPort::Auto) || !self.is_virtual {
            return;
        }
        let moving = self.servos.iter().any(|s| s.motion.is_some());
        let found = protocol::choose_port(&link::list_ports()).map(|(p, _)| p.path.clone());
        let Some(path) = found.filter(|_| !moving && self.queries.is_empty()) else {
            self.rescan = Some(now + RESCAN);
            return;
        };
        info!(port = %path, "a Maestro for the servos appeared: leaving the virtual servos");
        self.link = None;
        // The virtual servos' targets are not the real ones': read where
        // the real servos are rather than sending them there at full speed.
        for servo in &mut self.servos {
            servo.target = None;
        }
        self.setup.state.send_modify(|s| {
            s.connected = false;
            s.port = path;
            s.is_virtual = false;
        });
        self.phase = Phase::Down { retry: now };
        self.attempt(now);
    }

    fn fail_attempt(&mut self, now: Instant, error: String, port: String) {
        self.link = None;
        if self.lost_at.is_none() {
            warn!(port = %port, error = %error, "the servo board cannot be reached; retrying with backoff");
            self.lost_at = Some(now);
        } else {
            debug!(port = %port, error = %error, retry_in = ?self.backoff, "the servo board is still unreachable");
        }
        self.port = port;
        self.is_virtual = false;
        self.down(now, error);
    }

    /// Marks the link down and schedules the next attempt.
    fn down(&mut self, now: Instant, error: String) {
        self.phase = Phase::Down {
            retry: now + self.backoff,
        };
        self.backoff = (self.backoff * 2).min(self.setup.settings.retry_max.max(FIRST_RETRY));
        self.queries.clear();
        self.rx.clear();
        self.quiet_until = None;
        if let Some(read_back) = self.read_back.take() {
            for reply in read_back.replies {
                let _ = reply.send(Err(ServoError::Unavailable(not_connected(&error))));
            }
        }
        let (port, is_virtual) = (self.port.clone(), self.is_virtual);
        self.setup.state.send_if_modified(|s| {
            let changed = s.connected || s.last_error.as_deref() != Some(&error) || s.port != port;
            s.connected = false;
            s.port = port;
            s.is_virtual = is_virtual;
            s.last_error = Some(error);
            changed
        });
        self.outcome();
    }

    /// The link broke (read or write error, no answer).
    fn lose(&mut self, error: String) {
        if matches!(self.phase, Phase::Down { .. }) {
            return;
        }
        let now = Instant::now();
        self.link = None;
        for i in 0..self.servos.len() {
            if let Some(motion) = self.servos[i].motion.take() {
                self.end_motion(
                    i,
                    motion,
                    MoveOutcome::Interrupted {
                        reason: format!("the servo board was lost: {error}"),
                    },
                );
            }
        }
        if self.was_up {
            warn!(port = %self.port, error = %error, "lost the servo board; reconnecting");
            self.emit(
                Topic::ServosConnectionLost,
                json!({ "port": self.port, "error": error }),
                None,
            );
            self.was_up = false;
            self.lost_at = Some(now);
        } else if self.lost_at.is_none() {
            warn!(port = %self.port, error = %error, "the servo board does not answer; retrying with backoff");
            self.lost_at = Some(now);
        }
        self.down(now, error);
    }

    /// The board answered and the servos are where they should be: moves run.
    fn up(&mut self) {
        self.phase = Phase::Up;
        self.backoff = FIRST_RETRY;
        if !self.is_virtual {
            self.had_board = true;
        }
        let downtime = self.lost_at.take().map(|t| t.elapsed());
        let count = self.servos.len();
        if self.is_virtual {
            info!(
                port = "virtual",
                servos = count,
                "the VIRTUAL servos are ready (no Maestro): every move is logged"
            );
        } else {
            info!(port = %self.port, servos = count, channels = self.channels, "the servo board is ready");
        }
        let restored: Vec<&str> = self
            .servos
            .iter()
            .filter(|s| s.target.is_some() && s.problem.is_none())
            .map(|s| s.spec.name.as_str())
            .collect();
        if let Some(downtime) = downtime
            && self.ever_up
        {
            self.emit(
                Topic::ServosConnectionRecovered,
                json!({
                    "port": self.port,
                    "virtual": self.is_virtual,
                    "downtime_ms": downtime.as_millis() as u64,
                    "restored": restored,
                }),
                None,
            );
        }
        self.was_up = true;
        self.ever_up = true;
        let (port, is_virtual) = (self.port.clone(), self.is_virtual);
        self.setup.state.send_modify(|s| {
            s.connected = true;
            s.port = port;
            s.is_virtual = is_virtual;
        });
        for i in 0..self.servos.len() {
            self.publish(i);
        }
        self.outcome();
    }

    fn outcome(&mut self) {
        if let Some(first) = self.first_outcome.take() {
            let _ = first.send(());
        }
    }

    /// The board answered the sync: read where the servos whose target is
    /// unknown are, then set each servo up and put back the targets. The
    /// probes go first: a probe of a channel the board lacks is an error,
    /// and any error sends the board's outputs home.
    fn synced(&mut self) {
        self.phase = Phase::Probing;
        for (i, servo) in self.servos.iter().enumerate() {
            if servo.target.is_none() && servo.problem.is_none() {
                self.queries.push_back(query(
                    Command::GetPosition {
                        channel: servo.spec.channel,
                    },
                    Purpose::Probe(i),
                ));
            }
        }
        self.probed();
    }

    /// Goes up once the last probe is answered and the servos are set up.
    fn probed(&mut self) {
        if self.phase == Phase::Probing
            && !self
                .queries
                .iter()
                .any(|q| matches!(q.purpose, Purpose::Probe(_) | Purpose::ProbeErrors(_)))
        {
            let restored = self.restore();
            if self.phase != Phase::Probing {
                return;
            }
            if restored > 0 {
                info!(port = %self.port, servos = restored, "the servos are back at their last targets");
            }
            self.up();
        }
    }

    /// Sends each servo's speed limit (its `max_speed`), acceleration (none)
    /// and last target, clamped: at connection, and after the board reported
    /// an error (which sends its outputs home). Returns how many targets
    /// were put back; a failed write loses the board.
    fn restore(&mut self) -> usize {
        let mut setup = Vec::new();
        let mut restored = 0;
        for servo in self.servos.iter().filter(|s| s.problem.is_none()) {
            let channel = servo.spec.channel;
            let speed = servo.speed.map_or(0, protocol::speed_units);
            Command::SetSpeed { channel, speed }.encode_into(&mut setup);
            Command::SetAcceleration {
                channel,
                acceleration: 0,
            }
            .encode_into(&mut setup);
            if speed > 0 {
                debug!(servo = %servo.spec.name, speed, "the board's speed limit for this servo: its max_speed, in (0.25 µs)/(10 ms)");
            }
        }
        for servo in self.servos.iter().filter(|s| s.problem.is_none()) {
            if let Some(target) = servo.target {
                Command::SetTarget {
                    channel: servo.spec.channel,
                    target: servo.range.clamp(target),
                }
                .encode_into(&mut setup);
                restored += 1;
            }
        }
        if !setup.is_empty() && !self.write(&setup) {
            return 0;
        }
        restored
    }

    /// Handles the bytes the board sent.
    fn received(&mut self, bytes: &[u8]) {
        if self.quiet_until.is_some() {
            // Late answers, or a previous session's: the line must be quiet
            // for a whole answer timeout before a query goes out.
            debug!(port = %self.port, bytes = ?bytes, "bytes from the servo board while waiting for the line to be quiet; discarded");
            self.rx.clear();
            self.quiet_until = Some(Instant::now() + self.setup.settings.answer_timeout);
            return;
        }
        self.rx.extend_from_slice(bytes);
        loop {
            let Some(front) = self.queries.front().filter(|q| q.deadline.is_some()) else {
                // No query is out: nothing can be its answer.
                if !self.rx.is_empty() {
                    debug!(port = %self.port, bytes = ?self.rx, "bytes from the servo board that no query waits for");
                    self.rx.clear();
                }
                return;
            };
            let len = front.command.answer_len();
            if self.rx.len() < len {
                return;
            }
            let answer: Vec<u8> = self.rx.drain(..len).collect();
            let query = self.queries.pop_front().expect("front exists");
            self.last_answer = Instant::now();
            self.answered(query, &answer);
            if matches!(self.phase, Phase::Down { .. }) {
                return;
            }
        }
    }

    fn answered(&mut self, query: Query, answer: &[u8]) {
        let value = || protocol::answer_value(answer);
        match query.purpose {
            Purpose::Sync => {
                // The targets are put back after the probes anyway.
                self.board_errors(Errors(value()), "at connection", false);
                self.synced();
            }
            Purpose::Probe(i) => {
                let position = value();
                let servo = &mut self.servos[i];
                // 0: the board has it off, so where it is is unknown.
                servo.target = (position > 0).then_some(position);
                debug!(servo = %servo.spec.name, position_us = protocol::micros(position), "where the board has this servo");
                self.publish(i);
                self.probed();
            }
            Purpose::ProbeErrors(i) => {
                let errors = Errors(value());
                let servo = &mut self.servos[i];
                if errors.0 & Errors::SERIAL_PROTOCOL != 0 {
                    let problem = format!(
                        "servo '{}' is on channel {}, which the board does not have (it ignored Get Position for it); check servo_channels and the servo's channel",
                        servo.spec.name, servo.spec.channel
                    );
                    warn!(servo = %servo.spec.name, "{problem}");
                    servo.problem = Some(problem.clone());
                    self.setup.state.send_modify(|s| {
                        s.servos[i].problem = Some(problem.clone());
                        s.last_error = Some(problem);
                    });
                    self.probed();
                } else {
                    let channel = servo.spec.channel;
                    self.lose(format!(
                        "no answer to Get Position for channel {channel} (the board answers Get Errors, without a bad-command error)"
                    ));
                }
            }
            Purpose::Heartbeat => {
                if self.board_errors(Errors(value()), "on its heartbeat", false) {
                    self.reset_outputs();
                }
            }
            Purpose::ReadPosition(i) => {
                if let Some(read_back) = &mut self.read_back {
                    read_back.positions[i] = Some(value()).filter(|p| *p > 0);
                }
            }
            Purpose::ReadMoving => {
                if let Some(read_back) = &mut self.read_back {
                    read_back.moving = value() != 0;
                }
            }
            Purpose::ReadErrors => {
                let errors = Errors(value());
                if self.board_errors(errors, "on request", true) {
                    self.reset_outputs();
                }
                if let Some(mut read_back) = self.read_back.take() {
                    read_back.errors = errors.names();
                    let report = BoardReport {
                        positions: self
                            .servos
                            .iter()
                            .zip(&read_back.positions)
                            .map(|(s, p)| (s.spec.name.clone(), p.map(protocol::micros)))
                            .collect(),
                        moving: read_back.moving,
                        errors: read_back.errors,
                    };
                    for reply in read_back.replies {
                        let _ = reply.send(Ok(report.clone()));
                    }
                }
            }
        }
    }

    /// Reports what the error register said; true if it said anything.
    /// The errors are kept in the state until a read-back (`clears`) finds
    /// none.
    fn board_errors(&mut self, errors: Errors, when: &str, clears: bool) -> bool {
        let names = errors.names();
        if !errors.is_empty() {
            warn!(port = %self.port, errors = %errors, "the servo board reports errors {when}: {errors}");
            let message = format!("the board reported: {errors}");
            self.setup.state.send_modify(|s| {
                for name in names {
                    if !s.board_errors.contains(&name) {
                        s.board_errors.push(name);
                    }
                }
                s.last_error = Some(message);
            });
            true
        } else {
            if clears {
                self.setup.state.send_if_modified(|s| {
                    let changed = !s.board_errors.is_empty();
                    s.board_errors.clear();
                    changed
                });
            }
            false
        }
    }

    /// The board reported an error, so it sent its outputs home (off by
    /// default): set each servo up and put it back at its last target.
    fn reset_outputs(&mut self) {
        let restored = self.restore();
        if matches!(self.phase, Phase::Down { .. }) {
            return;
        }
        warn!(port = %self.port, servos = restored, "the servo board sends its outputs home on an error: the servos' speed limits and last targets were sent again");
    }

    /// Sends the front query when none is out.
    fn pump(&mut self) {
        let Some(front) = self.queries.front() else {
            return;
        };
        if front.deadline.is_some()
            || self.quiet_until.is_some()
            || matches!(self.phase, Phase::Down { .. })
        {
            return;
        }
        let bytes = front.command.encode();
        if self.write(&bytes)
            && let Some(front) = self.queries.front_mut()
        {
            front.deadline = Some(Instant::now() + self.setup.settings.answer_timeout);
        }
    }

    /// Writes to the board; a failure loses it.
    fn write(&mut self, bytes: &[u8]) -> bool {
        let Some(link) = self.link.as_mut() else {
            return false;
        };
        match link.write(bytes) {
            Ok(()) => true,
            Err(e) => {
                self.lose(format!("writing to the port failed: {e}"));
                false
            }
        }
    }

    /// Sends the due frames of the running moves, and ends the moves whose
    /// time is up.
    fn frames(&mut self, now: Instant) {
        self.frame.clear();
        let mut sent = Vec::new();
        let mut ended = Vec::new();
        for (i, servo) in self.servos.iter_mut().enumerate() {
            let Some(motion) = &mut servo.motion else {
                continue;
            };
            match motion.next {
                Some(at) if at <= now => {
                    let elapsed = now.saturating_duration_since(motion.started);
                    let target = servo.range.clamp(motion.path.at(elapsed));
                    if servo.target != Some(target) {
                        Command::SetTarget {
                            channel: servo.spec.channel,
                            target,
                        }
                        .encode_into(&mut self.frame);
                        servo.target = Some(target);
                        sent.push(i);
                    }
                    motion.next = motion
                        .path
                        .next_frame(elapsed)
                        .map(|next| motion.started + next);
                    if motion.next.is_none() {
                        ended.push(i);
                    }
                }
                None if motion.ends <= now => ended.push(i),
                _ => {}
            }
        }
        if !self.frame.is_empty() {
            let frame = std::mem::take(&mut self.frame);
            let written = self.write(&frame);
            self.frame = frame;
            if !written {
                return;
            }
        }
        for &i in &sent {
            if !ended.contains(&i) {
                self.publish(i);
            }
        }
        for i in ended {
            if let Some(motion) = self.servos[i].motion.take() {
                self.end_motion(i, motion, MoveOutcome::Finished);
            }
        }
    }

    /// Handles a request from the handle.
    fn request(&mut self, request: Request) {
        let now = Instant::now();
        // The frames due first: a move whose last frame is due finishes
        // rather than being replaced or halted.
        if self.phase == Phase::Up {
            self.frames(now);
        }
        match request {
            Request::Move {
                servo,
                goal,
                duration,
                easing,
                reply,
                correlation,
            } => {
                let answer = self.ready().and_then(|()| {
                    self.start_move(servo, goal, duration, easing, correlation, now)
                });
                let _ = reply.send(answer);
            }
            Request::Home {
                servos,
                reply,
                correlation,
            } => {
                let answer = self.ready().and_then(|()| {
                    let single = servos.len() == 1;
                    let mut started = Vec::new();
                    for i in servos {
                        if self.servos[i].problem.is_some() && !single {
                            continue;
                        }
                        let goal = protocol::quarters(f64::from(self.servos[i].spec.home_us));
                        let duration = self.setup.settings.home_duration;
                        started.push(self.start_move(
                            i,
                            goal,
                            duration,
                            Easing::EaseInOut,
                            correlation.clone(),
                            now,
                        )?);
                    }
                    Ok(started)
                });
                let _ = reply.send(answer);
            }
            Request::Halt {
                servos,
                reply,
                correlation,
            } => {
                let mut halted = Vec::new();
                for i in servos {
                    if let Some(motion) = self.servos[i].motion.take() {
                        halted.push(motion.id);
                        // A paced step stops where the output is, not at
                        // its goal.
                        let servo = &self.servos[i];
                        if let Some(at) = motion
                            .paced_at(servo.speed, now)
                            .map(|t| servo.range.clamp(t))
                            && servo.target != Some(at)
                        {
                            let channel = servo.spec.channel;
                            if self.write(
                                &Command::SetTarget {
                                    channel,
                                    target: at,
                                }
                                .encode(),
                            ) {
                                self.servos[i].target = Some(at);
                            }
                        }
                        info!(servo = %self.servos[i].spec.name, id = %motion.id, correlation_id = correlation.as_deref(), "servo move halted");
                        self.end_motion(i, motion, MoveOutcome::Halted);
                    }
                }
                let _ = reply.send(Ok(halted));
            }
            Request::ReadBack { reply, correlation } => {
                if let Err(e) = self.ready() {
                    let _ = reply.send(Err(e));
                    return;
                }
                debug!(
                    correlation_id = correlation.as_deref(),
                    "reading back the servo board"
                );
                if let Some(read_back) = &mut self.read_back {
                    read_back.replies.push(reply);
                    return;
                }
                self.read_back = Some(ReadBack {
                    positions: vec![None; self.servos.len()],
                    moving: false,
                    errors: Vec::new(),
                    replies: vec![reply],
                });
                for (i, servo) in self.servos.iter().enumerate() {
                    if servo.problem.is_none() {
                        self.queries.push_back(query(
                            Command::GetPosition {
                                channel: servo.spec.channel,
                            },
                            Purpose::ReadPosition(i),
                        ));
                    }
                }
                self.queries
                    .push_back(query(Command::GetMovingState, Purpose::ReadMoving));
                self.queries
                    .push_back(query(Command::GetErrors, Purpose::ReadErrors));
            }
        }
    }

    /// Whether moves can run now; if not, why and what to check.
    fn ready(&self) -> Result<(), ServoError> {
        match self.phase {
            Phase::Up => Ok(()),
            Phase::Down { .. } => Err(ServoError::Unavailable(not_connected(
                self.setup
                    .state
                    .borrow()
                    .last_error
                    .as_deref()
                    .unwrap_or("not answering"),
            ))),
            Phase::Syncing { .. } | Phase::Probing => Err(ServoError::Unavailable(format!(
                "the servo board on {} is starting (reading where the servos are after opening its port); try again in a moment",
                self.port
            ))),
        }
    }

    /// Starts a move of servo `i` to `goal`, replacing its running one.
    fn start_move(
        &mut self,
        i: usize,
        goal: u16,
        requested: Duration,
        easing: Easing,
        correlation: Option<Arc<str>>,
        now: Instant,
    ) -> Result<MoveStarted, ServoError> {
        let servo = &self.servos[i];
        if let Some(problem) = &servo.problem {
            return Err(ServoError::Invalid(problem.clone()));
        }
        let goal = servo.range.clamp(goal);
        // A target read outside the range (left by someone else) is
        // brought in: nothing is sent outside it. A paced step is replaced
        // from where the output is.
        let from = servo.current(now).map(|t| servo.range.clamp(t));
        let (duration, limited) = match from {
            Some(from) => plan_duration(from, goal, requested, easing, servo.speed),
            None => (requested, false),
        };
        if duration > super::MAX_MOVE {
            return Err(ServoError::Invalid(format!(
                "servo '{}' would take {} to get there at its max_speed; the longest move is {}: raise max_speed",
                servo.spec.name,
                humantime::format_duration(Duration::from_secs(duration.as_secs())),
                humantime::format_duration(super::MAX_MOVE)
            )));
        }
        // Straight to the goal: a step, a move of no time, or a servo
        // whose place is unknown.
        let at_once = easing == Easing::Step || duration.is_zero() || from.is_none();
        let paced = easing == Easing::Step && from.is_some() && servo.speed.is_some();
        let path = Path {
            from: from.unwrap_or(goal),
            to: goal,
            duration,
            easing: if at_once { Easing::Step } else { easing },
        };
        let channel = servo.spec.channel;
        if at_once
            && !self.write(
                &Command::SetTarget {
                    channel,
                    target: goal,
                }
                .encode(),
            )
        {
            return Err(ServoError::Unavailable(not_connected(
                self.setup
                    .state
                    .borrow()
                    .last_error
                    .as_deref()
                    .unwrap_or("not answering"),
            )));
        }
        let id = self.setup.book.lock().expect("move book lock").start();
        let servo = &mut self.servos[i];
        // The new move is in place before the old one ends, so that the
        // state never shows the servo still in between.
        let old = servo.motion.replace(Motion {
            id,
            path,
            started: now,
            next: path.next_frame(Duration::ZERO).map(|d| now + d),
            ends: now + duration,
            correlation: correlation.clone(),
            paced,
        });
        let replaced = old.map(|old| {
            let old_id = old.id;
            self.end_motion(i, old, MoveOutcome::Replaced { by: id });
            old_id
        });
        let servo = &mut self.servos[i];
        if at_once {
            servo.target = Some(goal);
        }
        let started = MoveStarted {
            id,
            servo: servo.spec.name.clone(),
            channel,
            from_us: from.map(protocol::micros),
            to_us: protocol::micros(goal),
            position: servo.range.position(goal),
            easing,
            requested,
            duration,
            started_at: now,
            finishes_at: now + duration,
            limited_by_speed: limited,
            replaced,
            frames: path.frames(),
            is_virtual: self.is_virtual,
        };
        let marker = if self.is_virtual { " (virtual)" } else { "" };
        info!(
            servo = %started.servo,
            id = %id,
            to_us = started.to_us,
            duration_ms = duration.as_millis() as u64,
            easing = %easing,
            correlation_id = correlation.as_deref(),
            "servo {} moves to {:.3}{marker}",
            started.servo,
            started.position
        );
        if limited {
            debug!(servo = %started.servo, requested_ms = requested.as_millis() as u64, duration_ms = duration.as_millis() as u64, "move lengthened to keep within max_speed");
        }
        self.emit(
            Topic::ServoMoveStarted,
            json!({
                "id": id,
                "servo": started.servo,
                "channel": channel,
                "from_us": started.from_us,
                "to_us": started.to_us,
                "position": started.position,
                "easing": easing.as_str(),
                "duration_ms": duration.as_millis() as u64,
                "requested_ms": requested.as_millis() as u64,
                "limited_by_speed": limited,
                "replaced": replaced,
                "virtual": self.is_virtual,
            }),
            correlation,
        );
        self.publish(i);
        Ok(started)
    }

    /// Records how a move ended, announces it and updates the state.
    fn end_motion(&mut self, i: usize, motion: Motion, outcome: MoveOutcome) {
        let servo = &self.servos[i];
        let target_us = servo.target.map(protocol::micros);
        let position = servo
            .target
            .map(|t| servo.range.position(servo.range.clamp(t)));
        debug!(servo = %servo.spec.name, id = %motion.id, outcome = outcome.as_str(), "servo move ended");
        let mut payload = json!({
            "id": motion.id,
            "servo": servo.spec.name,
            "outcome": outcome.as_str(),
            "target_us": target_us,
            "position": position,
            "elapsed_ms": motion.started.elapsed().as_millis() as u64,
        });
        match &outcome {
            MoveOutcome::Replaced { by } => payload["by"] = json!(by),
            MoveOutcome::Interrupted { reason } => payload["reason"] = json!(reason),
            _ => {}
        }
        // The state and the event first: whoever waits for the move looks
        // at them next.
        self.publish(i);
        self.emit(Topic::ServoMoveFinished, payload, motion.correlation);
        self.setup
            .book
            .lock()
            .expect("move book lock")
            .end(motion.id, outcome);
        self.setup.ended.send_modify(|n| *n += 1);
    }

    /// Puts servo `i`'s target and move into the state.
    fn publish(&self, i: usize) {
        let servo = &self.servos[i];
        // During a paced step, where the board has brought it so far.
        let current = servo.current(Instant::now());
        let target_us = current.map(protocol::micros);
        let position = current.map(|t| servo.range.position(servo.range.clamp(t)));
        let move_id = servo.motion.as_ref().map(|m| m.id);
        self.setup.state.send_if_modified(|s| {
            let Some(state) = s.servos.get_mut(i) else {
                return false;
            };
            let changed = state.target_us != target_us || state.move_id != move_id;
            state.target_us = target_us;
            state.position = position;
            state.moving = move_id.is_some();
            state.move_id = move_id;
            changed
        });
    }

    fn emit(&self, topic: Topic, payload: serde_json::Value, correlation: Option<Arc<str>>) {
        let mut draft = Draft::new(topic, "servos", payload);
        if let Some(id) = correlation {
            draft = draft.correlation_id(&*id);
        }
        self.setup.bus.publish(draft);
    }

    /// Ends the running moves, fails what is still waiting and closes the link.
    fn finish(mut self) {
        for i in 0..self.servos.len() {
            if let Some(motion) = self.servos[i].motion.take() {
                self.end_motion(i, motion, MoveOutcome::Stopped);
            }
        }
        if let Some(read_back) = self.read_back.take() {
            for reply in read_back.replies {
                let _ = reply.send(Err(ServoError::Unavailable(
                    "the servos are stopping".into(),
                )));
            }
        }
        self.link = None;
        self.setup.state.send_modify(|s| s.connected = false);
        self.outcome();
    }
}

impl Drop for Actor {
    /// Whatever way the thread ends (a panic too), no move is left running
    /// for `wait_move` to wait on forever: [`Actor::finish`] ends them on a
    /// stop; this ends those left, without anything that could panic again.
    fn drop(&mut self) {
        let mut ended = Vec::new();
        for (i, servo) in self.servos.iter_mut().enumerate() {
            if let Some(motion) = servo.motion.take() {
                ended.push((i, motion.id));
            }
        }
        if ended.is_empty() {
            return;
        }
        {
            let mut book = self
                .setup
                .book
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for &(_, id) in &ended {
                book.end(id, MoveOutcome::Stopped);
            }
        }
        self.setup.state.send_modify(|s| {
            s.connected = false;
            for &(i, _) in &ended {
                if let Some(state) = s.servos.get_mut(i) {
                    state.moving = false;
                    state.move_id = None;
                }
            }
        });
        self.setup.ended.send_modify(|n| *n += 1);
    }
}

/// Why a command cannot reach the board, and what to do.
fn not_connected(error: &str) -> String {
    format!(
        "the servo board is not connected: {error}. The server keeps reconnecting; check the Maestro's USB cable and power, and CANTINA_SERVO_PORT"
    )
}

fn query(command: Command, purpose: Purpose) -> Query {
    Query {
        command,
        purpose,
        deadline: None,
    }
}
