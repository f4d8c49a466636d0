//! The eyes' actor: one OS thread that owns the link to the board and every
//! piece of the eyes' state. Its inbox carries the handle's requests and the
//! bytes the board sends back, so one `recv_timeout` loop serves both, with
//! the nearest deadline (an answer's timeout, the boot line's, the next
//! reconnection attempt, the next `eye test` step, the heartbeat) as its
//! timeout. Nothing polls.
//!
//! Commands are pipelined: up to [`WINDOW`] go out before their answers
//! come back, and answers are matched to commands in order (the firmware
//! answers each command, in order). The window stays far below the
//! Arduino's 64-byte receive buffer. A missing answer means a lost board:
//! the link is dropped and reopened with backoff, and once the board is
//! back the brightness and pattern are sent again.
//!
//! Before trusting answers on a new link the actor synchronises: it sends a
//! character the firmware does not know (`?`) and waits for its `-`,
//! ignoring every `+` until then. A `+` alone cannot be told apart from a
//! late ready line or an answer left over from before, and taking one for
//! an answer would shift every answer after it onto the wrong command.

use std::{
    collections::VecDeque,
    sync::{Arc, mpsc},
    time::{Duration, Instant},
};

use serde_json::json;
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use super::{
    EyesError, EyesState, Pattern,
    link::{self, Link},
    message::{Msg, Reply, Request},
    protocol::{self, Line, LineSplitter},
    settings::{EyesPort, EyesSettings},
};
use crate::bus::{Bus, Draft, Topic};

/// Commands in flight at once: 2 bytes each, well inside the Arduino's
/// 64-byte receive buffer.
pub const WINDOW: usize = 16;

/// First wait before reopening a lost board; it doubles up to the setting.
const FIRST_RETRY: Duration = Duration::from_millis(250);

/// Sync probes sent before a silent board counts as lost.
const SYNC_TRIES: u8 = 3;

/// How often `auto` looks for a board while it uses the virtual eyes.
const RESCAN: Duration = Duration::from_secs(5);

/// What the actor starts with.
pub struct Setup {
    pub port: EyesPort,
    pub settings: EyesSettings,
    pub bus: Bus,
    pub state: watch::Sender<EyesState>,
    pub inbox: mpsc::Receiver<Msg>,
    /// Given to each link's reader.
    pub outbox: mpsc::Sender<Msg>,
    /// Fired once the first attempt to reach the board has an outcome.
    pub first_outcome: oneshot::Sender<()>,
}

/// Where the link stands.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// No link; the next attempt is at `retry`.
    Down { retry: Instant },
    /// Port open; waiting for the ready line until `deadline`.
    Booting { deadline: Instant },
    /// The sync probe `?` is out; the board is up once its `-` comes back.
    Syncing { deadline: Instant, tries: u8 },
    /// The board answers.
    Up,
}

/// Why a pattern is being shown.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Source {
    Command,
    Mode,
    Test,
    Restore,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Command => "command",
            Source::Mode => "mode",
            Source::Test => "test",
            Source::Restore => "restore",
        }
    }
}

/// What a confirmed command changes.
#[derive(Clone, Copy, Debug)]
enum Effect {
    Pattern(Pattern, Source),
    Brightness(f64),
    /// A level digit that follows the voice: changes nothing reported.
    Level(u8),
    /// A re-send of the brightness to check that the board answers.
    Heartbeat,
}

impl Effect {
    fn command(self, brightness: f64) -> u8 {
        match self {
            Effect::Pattern(p, _) => p.glyph(),
            Effect::Brightness(b) => protocol::brightness_digit(b),
            Effect::Level(level) => b'0' + level.min(9),
            Effect::Heartbeat => protocol::brightness_digit(brightness),
        }
    }
}

/// A command waiting to be sent, or sent and waiting for its answer.
struct Job {
    command: u8,
    effect: Effect,
    reply: Option<Reply<()>>,
    correlation: Option<Arc<str>>,
    /// When the answer is due, once sent.
    deadline: Option<Instant>,
    /// For pattern requests: their order of arrival, so that a confirmation
    /// never overrides a newer resting pattern.
    seq: u64,
}

/// A running `eye test`.
struct Test {
    /// The next pattern of the cycle to show.
    step: usize,
    /// When to show it.
    next: Instant,
    correlation: Option<Arc<str>>,
}

/// The actor's state.
pub struct Actor {
    setup: Setup,
    first_outcome: Option<oneshot::Sender<()>>,
    link: Option<Link>,
    next_link_id: u64,
    phase: Phase,
    backoff: Duration,
    /// The port of the current (or last) link, for people.
    port: String,
    is_virtual: bool,
    /// `auto` found no board and fell back to the virtual eyes; when to look again.
    rescan: Option<Instant>,
    /// A real board answered at least once: `auto` then waits for it rather
    /// than falling back to the virtual eyes.
    had_board: bool,
    /// The board answered since the link was last lost or opened.
    lost_at: Option<Instant>,
    was_up: bool,
    sent: VecDeque<Job>,
    waiting: VecDeque<Job>,
    splitter: LineSplitter,
    /// The pattern the eyes rest on (set by commands and the mode).
    base: Pattern,
    /// The request that set `base`, and the last request's number.
    base_seq: u64,
    next_seq: u64,
    /// Ports `auto` tried that never answered like the eyes' board: not
    /// taken again (opening one resets whatever device it is).
    rejected: Vec<String>,
    /// The confirmed brightness.
    brightness: f64,
    /// The level following the voice, while the droid speaks: what a
    /// heartbeat re-sends instead of the brightness.
    voice_level: Option<u8>,
    test: Option<Test>,
    last_traffic: Instant,
}

impl Actor {
    /// An actor that has not run yet.
    pub fn new(mut setup: Setup) -> Actor {
        let first_outcome = Some(std::mem::replace(
            &mut setup.first_outcome,
            oneshot::channel().0,
        ));
        let state = setup.state.borrow().clone();
        let now = Instant::now();
        Actor {
            port: state.port.clone(),
            is_virtual: state.is_virtual,
            first_outcome,
            link: None,
            next_link_id: 0,
            phase: Phase::Down { retry: now },
            backoff: FIRST_RETRY,
            rescan: None,
            had_board: false,
            lost_at: None,
            was_up: false,
            sent: VecDeque::new(),
            waiting: VecDeque::new(),
            splitter: LineSplitter::default(),
            base: state.pattern,
            base_seq: 0,
            next_seq: 0,
            rejected: Vec::new(),
            brightness: state.brightness,
            voice_level: None,
            test: None,
            last_traffic: now,
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
                        .setup
                        .inbox
                        .recv_timeout(at.saturating_duration_since(Instant::now()))
                    {
                        Ok(msg) => Some(msg),
                        Err(mpsc::RecvTimeoutError::Timeout) => None,
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                None => match self.setup.inbox.recv() {
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
                next = self.setup.inbox.try_recv().ok();
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
        let mut due: Vec<Instant> = Vec::with_capacity(5);
        match self.phase {
            Phase::Down { retry } => due.push(retry),
            Phase::Booting { deadline } => due.push(deadline),
            Phase::Syncing { deadline, .. } => due.push(deadline),
            Phase::Up => {
                if let Some(test) = &self.test {
                    due.push(test.next);
                }
                due.extend(self.heartbeat_at());
            }
        }
        if let Some(at) = self.sent.front().and_then(|j| j.deadline) {
            due.push(at);
        }
        due.extend(self.rescan);
        due.into_iter().min()
    }

    /// Does whatever is due at `now`.
    fn tick(&mut self, now: Instant) {
        if let Some(job) = self.sent.front()
            && job.deadline.is_some_and(|d| d <= now)
        {
            let job = self.sent.pop_front().expect("front exists");
            let after = self.setup.settings.answer_timeout;
            let command = job.command as char;
            if let Some(reply) = job.reply {
                let _ = reply.send(Err(EyesError::Timeout { command, after }));
            }
            self.lose(format!(
                "no answer to '{command}' within {}",
                humantime::format_duration(after)
            ));
        }
        match self.phase {
            Phase::Down { retry } if retry <= now => self.attempt(now),
            Phase::Booting { deadline } if deadline <= now => {
                // Boards that do not reset on open never print the ready
                // line: the sync probe decides.
                debug!(port = %self.port, "no ready line from the eyes' board; probing it");
                self.sync(now, 1);
            }
            Phase::Syncing { deadline, tries } if deadline <= now => {
                if tries < SYNC_TRIES {
                    self.sync(now, tries + 1);
                } else {
                    self.lose(format!(
                        "the board does not answer (no reply to {SYNC_TRIES} probes after opening the port)"
                    ));
                }
            }
            Phase::Up => {
                if self.test.as_ref().is_some_and(|t| t.next <= now) {
                    self.step_test(now);
                }
                if self.waiting.is_empty() && self.heartbeat_at().is_some_and(|at| at <= now) {
                    let effect = self.voice_level.map_or(Effect::Heartbeat, Effect::Level);
                    self.waiting
                        .push_back(job(effect, self.brightness, None, None));
                }
            }
            _ => {}
        }
        if self.rescan.is_some_and(|at| at <= now) {
            self.rescan = None;
            self.look_for_board(now);
        }
    }

    /// When a quiet real link is next checked, if it is quiet now.
    fn heartbeat_at(&self) -> Option<Instant> {
        let heartbeat = self.setup.settings.heartbeat;
        (!heartbeat.is_zero() && !self.is_virtual && self.sent.is_empty())
            .then(|| self.last_traffic + heartbeat)
    }

    /// The board `auto` would take: the protocol's choice among the ports
    /// present, leaving out those that proved not to be the eyes.
    fn find_board(&self) -> Option<(String, &'static str)> {
        let mut ports = link::list_ports();
        ports.retain(|p| !self.rejected.contains(&p.path));
        protocol::choose_port(&ports).map(|(p, why)| (p.path.clone(), why))
    }

    /// Tries to open the link.
    fn attempt(&mut self, now: Instant) {
        let path = match &self.setup.port {
            EyesPort::Virtual => None,
            EyesPort::Path(path) => Some(path.display().to_string()),
            EyesPort::Auto => match self.find_board() {
                Some((port, why)) => {
                    info!(port = %port, chosen_by = why, "found the eyes' board");
                    Some(port)
                }
                None if self.had_board => {
                    self.fail_attempt(
                        now,
                        "no eyes board found (was it unplugged?)".into(),
                        "auto".into(),
                    );
                    return;
                }
                None => {
                    info!(
                        "no Arduino found for the eyes: using the VIRTUAL eyes; set CANTINA_EYES_PORT to the board's port, or plug it in (looked for every {}s)",
                        RESCAN.as_secs()
                    );
                    self.rescan = Some(now + RESCAN);
                    None
                }
            },
        };
        self.next_link_id += 1;
        let id = self.next_link_id;
        let opened = match &path {
            None => Ok(Link::virtual_board(id, self.setup.outbox.clone())),
            Some(path) => Link::serial(
                path,
                id,
                self.setup.outbox.clone(),
                self.setup.settings.answer_timeout,
            ),
        };
        let port = path.clone().unwrap_or_else(|| "virtual".into());
        match opened {
            Ok(link) => {
                debug!(port = %port, "eyes' port open; waiting for the board's ready line");
                self.link = Some(link);
                self.port = port;
                self.is_virtual = path.is_none();
                self.splitter.clear();
                self.phase = Phase::Booting {
                    deadline: now + self.setup.settings.boot_timeout,
                };
            }
            Err(error) => self.fail_attempt(now, error, port),
        }
    }

    /// `auto` uses the virtual eyes: switches to a board that appeared.
    fn look_for_board(&mut self, now: Instant) {
        if !matches!(self.setup.port, EyesPort::Auto) || !self.is_virtual {
            return;
        }
        let found = self.find_board().map(|(path, _)| path);
        let Some(path) = found.filter(|_| self.sent.is_empty()) else {
            self.rescan = Some(now + RESCAN);
            return;
        };
        info!(port = %path, "a board for the eyes appeared: leaving the virtual eyes");
        self.link = None;
        self.setup.state.send_modify(|s| {
            s.connected = false;
            s.port = path;
            s.is_virtual = false;
        });
        self.phase = Phase::Down { retry: now };
        self.attempt(now);
    }

    /// `auto` took a port that never answered like the eyes: leave it alone
    /// and use the virtual eyes again.
    fn reject_port(&mut self, now: Instant, error: &str) -> bool {
        if !matches!(self.setup.port, EyesPort::Auto) || self.had_board || self.is_virtual {
            return false;
        }
        warn!(port = %self.port, error = %error, "this port does not answer like the eyes' board; leaving it alone and using the virtual eyes");
        self.rejected.push(self.port.clone());
        self.link = None;
        self.phase = Phase::Down { retry: now };
        self.attempt(now);
        true
    }

    fn fail_attempt(&mut self, now: Instant, error: String, port: String) {
        self.link = None;
        if port != "auto" && port != "virtual" {
            self.port = port.clone();
            self.is_virtual = false;
            if self.reject_port(now, &error) {
                return;
            }
        }
        let first = self.lost_at.is_none();
        if first {
            warn!(port = %port, error = %error, "the eyes' board cannot be reached; retrying with backoff");
            self.lost_at = Some(now);
        } else {
            debug!(port = %port, error = %error, retry_in = ?self.backoff, "the eyes' board is still unreachable");
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
        let unavailable = not_connected(&error);
        for job in self.sent.drain(..).chain(self.waiting.drain(..)) {
            if let Some(reply) = job.reply {
                let _ = reply.send(Err(EyesError::Unavailable(unavailable.clone())));
            }
        }
        if self.test.is_some() {
            self.end_test("failed: the board was lost");
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
        if !self.was_up && self.reject_port(now, &error) {
            return;
        }
        if self.was_up {
            warn!(port = %self.port, error = %error, "lost the eyes' board; reconnecting");
            self.emit(
                Topic::EyesConnectionLost,
                json!({ "port": self.port, "error": error }),
                None,
            );
            self.was_up = false;
            self.lost_at = Some(now);
        } else if self.lost_at.is_none() {
            warn!(port = %self.port, error = %error, "the eyes' board does not answer; retrying with backoff");
            self.lost_at = Some(now);
        }
        self.down(now, error);
    }

    /// The board answered: the link is up.
    fn up(&mut self) {
        self.phase = Phase::Up;
        self.backoff = FIRST_RETRY;
        if !self.is_virtual {
            self.had_board = true;
        }
        let downtime = self.lost_at.take().map(|t| t.elapsed());
        if self.is_virtual {
            info!(
                port = "virtual",
                "the VIRTUAL eyes are ready (no Arduino): every pattern is logged"
            );
        } else {
            info!(port = %self.port, "the eyes' board is ready");
        }
        if let Some(downtime) = downtime {
            self.emit(
                Topic::EyesConnectionRecovered,
                json!({
                    "port": self.port,
                    "virtual": self.is_virtual,
                    "downtime_ms": downtime.as_millis() as u64,
                }),
                None,
            );
        }
        self.was_up = true;
        let (port, is_virtual) = (self.port.clone(), self.is_virtual);
        self.setup.state.send_modify(|s| {
            s.connected = true;
            s.port = port;
            s.is_virtual = is_virtual;
        });
        self.outcome();
    }

    fn outcome(&mut self) {
        if let Some(first) = self.first_outcome.take() {
            let _ = first.send(());
        }
    }

    /// Queues the state to show again, ahead of everything waiting: the
    /// board resets when its port is opened.
    fn reapply(&mut self) {
        let pattern = match &self.test {
            Some(t) if t.step > 0 => Pattern::TEST_CYCLE[t.step - 1],
            _ => self.base,
        };
        self.waiting.push_front(job(
            Effect::Pattern(pattern, Source::Restore),
            self.brightness,
            None,
            None,
        ));
        self.waiting.push_front(job(
            Effect::Brightness(self.brightness),
            self.brightness,
            None,
            None,
        ));
    }

    /// Handles the bytes the board sent.
    fn received(&mut self, bytes: &[u8]) {
        self.last_traffic = Instant::now();
        let mut lines = Vec::new();
        self.splitter.feed(bytes, |line| lines.push(line));
        for line in lines {
            match line {
                Line::Done | Line::Unknown => self.answer(line == Line::Done),
                Line::Other(text) => {
                    debug!(port = %self.port, line = %text, "the eyes' board says")
                }
                Line::Empty => {}
            }
            if matches!(self.phase, Phase::Down { .. }) {
                return;
            }
        }
    }

    fn answer(&mut self, done: bool) {
        match self.phase {
            Phase::Booting { .. } => {
                if done {
                    // The ready line.
                    self.sync(Instant::now(), 1);
                }
                return;
            }
            Phase::Syncing { .. } => {
                // Only the probe's `-` counts; a `+` is a late ready line or
                // an answer from before.
                if !done {
                    self.up();
                    self.reapply();
                }
                return;
            }
            _ => {}
        }
        let Some(job) = self.sent.pop_front() else {
            debug!(port = %self.port, "an answer from the eyes' board that no command waits for");
            return;
        };
        if done {
            self.confirmed(job);
        } else {
            let error = EyesError::Rejected {
                command: job.command as char,
            };
            warn!(port = %self.port, command = %(job.command as char), correlation_id = job.correlation.as_deref(), "the eyes' board refused a command");
            match job.effect {
                Effect::Pattern(_, Source::Test) => {
                    self.end_test("failed: the board refused a pattern");
                }
                // What shows may be a glyph of the test this command
                // cancelled: back to the resting pattern.
                Effect::Pattern(..) if self.setup.state.borrow().pattern != self.base => {
                    self.restore_base();
                }
                _ => {}
            }
            self.setup
                .state
                .send_modify(|s| s.last_error = Some(error.to_string()));
            if let Some(reply) = job.reply {
                let _ = reply.send(Err(error));
            }
        }
    }

    /// Sends the sync probe (`?`, which the firmware answers `-`).
    fn sync(&mut self, now: Instant, tries: u8) {
        self.phase = Phase::Syncing {
            deadline: now + self.setup.settings.answer_timeout,
            tries,
        };
        let written = match self.link.as_mut() {
            Some(link) => link.write(&protocol::frame(protocol::SYNC)),
            None => return,
        };
        self.last_traffic = now;
        if let Err(e) = written {
            self.lose(format!("writing to the port failed: {e}"));
        }
    }

    /// Applies what a confirmed command changed.
    fn confirmed(&mut self, job: Job) {
        let marker = if self.is_virtual { " (virtual)" } else { "" };
        match job.effect {
            Effect::Pattern(pattern, source) => {
                if source == Source::Command && job.seq > self.base_seq {
                    self.base = pattern;
                    self.base_seq = job.seq;
                }
                let previous = self.setup.state.borrow().pattern;
                if previous != pattern {
                    self.setup.state.send_modify(|s| s.pattern = pattern);
                    info!(pattern = %pattern, source = source.as_str(), correlation_id = job.correlation.as_deref(), "eyes show {pattern}{marker}");
                    self.emit(
                        Topic::EyesPatternChanged,
                        json!({
                            "pattern": pattern.as_str(),
                            "previous": previous.as_str(),
                            "glyph": (pattern.glyph() as char).to_string(),
                            "source": source.as_str(),
                            "virtual": self.is_virtual,
                        }),
                        job.correlation.clone(),
                    );
                }
            }
            Effect::Brightness(brightness) => {
                let previous = self.brightness;
                self.brightness = brightness;
                if previous != brightness {
                    self.setup.state.send_modify(|s| s.brightness = brightness);
                    info!(
                        brightness,
                        correlation_id = job.correlation.as_deref(),
                        "eyes' brightness {brightness}{marker}"
                    );
                    self.emit(
                        Topic::EyesBrightnessChanged,
                        json!({
                            "brightness": brightness,
                            "previous": previous,
                            "level": protocol::brightness_level(brightness),
                            "virtual": self.is_virtual,
                        }),
                        job.correlation.clone(),
                    );
                }
            }
            // What a heartbeat re-sends was set when the request came.
            Effect::Level(_) => {}
            Effect::Heartbeat => {}
        }
        if let Some(reply) = job.reply {
            let _ = reply.send(Ok(()));
        }
    }

    /// Handles a request from the handle.
    fn request(&mut self, request: Request) {
        // The voice's level holds from when it is asked, in the order asked
        // (also while the board is down), so a heartbeat never re-sends a
        // level the speech has already left.
        if let Request::Level { level, .. } = &request {
            self.voice_level = level.map(|l| l.min(9));
        }
        // Only a board that answers takes commands; while it (re)boots
        // they would wait seconds, or fail, behind the sync.
        let down = self.phase != Phase::Up;
        let unavailable = || {
            EyesError::Unavailable(match self.phase {
                Phase::Down { .. } => not_connected(
                    self.setup
                        .state
                        .borrow()
                        .last_error
                        .as_deref()
                        .unwrap_or("not answering"),
                ),
                _ => format!(
                    "the eyes' board on {} is starting (waiting for it to answer after opening its port); try again in a moment",
                    self.port
                ),
            })
        };
        let request = match request {
            // These need the board.
            Request::Pattern { reply, .. }
            | Request::Brightness { reply, .. }
            | Request::Level { reply, .. }
                if down =>
            {
                let _ = reply.send(Err(unavailable()));
                return;
            }
            Request::StartTest { reply, .. } if down => {
                let _ = reply.send(Err(unavailable()));
                return;
            }
            other => other,
        };
        match request {
            Request::Pattern {
                pattern,
                reply,
                correlation,
            } => {
                if self.test.is_some() {
                    self.test.take();
                    self.finish_test_event("cancelled by 'eye pattern'", correlation.clone());
                }
                self.next_seq += 1;
                let mut job = job(
                    Effect::Pattern(pattern, Source::Command),
                    self.brightness,
                    Some(reply),
                    correlation,
                );
                job.seq = self.next_seq;
                self.waiting.push_back(job);
            }
            Request::Brightness {
                brightness,
                reply,
                correlation,
            } => {
                let brightness = protocol::clamp_brightness(brightness);
                self.waiting.push_back(job(
                    Effect::Brightness(brightness),
                    self.brightness,
                    Some(reply),
                    correlation,
                ));
            }
            Request::Level {
                level,
                reply,
                correlation,
            } => {
                let effect = match level {
                    Some(level) => Effect::Level(level.min(9)),
                    None => Effect::Brightness(self.brightness),
                };
                self.waiting
                    .push_back(job(effect, self.brightness, Some(reply), correlation));
            }
            Request::Follow {
                pattern,
                reply,
                correlation,
            } => {
                self.next_seq += 1;
                self.base = pattern;
                self.base_seq = self.next_seq;
                if self.phase == Phase::Up && self.test.is_none() {
                    self.waiting.push_back(job(
                        Effect::Pattern(pattern, Source::Mode),
                        self.brightness,
                        Some(reply),
                        correlation,
                    ));
                    return;
                }
                // Otherwise it is shown once the board answers (the state is
                // re-sent then), or when the test ends.
                let _ = reply.send(Ok(()));
            }
            Request::StartTest { reply, correlation } => {
                let answer = if self.test.is_some() {
                    Err(EyesError::Conflict(
                        "an eye test is already running; 'eye test stop' ends it".into(),
                    ))
                } else {
                    let step = self.setup.settings.test_step;
                    info!(
                        correlation_id = correlation.as_deref(),
                        step_ms = step.as_millis() as u64,
                        "eye test: cycling the 8 glyphs"
                    );
                    self.emit(
                        Topic::EyesTestStarted,
                        json!({
                            "patterns": Pattern::TEST_CYCLE.map(Pattern::as_str),
                            "step_ms": step.as_millis() as u64,
                            "restores": self.base.as_str(),
                        }),
                        correlation.clone(),
                    );
                    self.test = Some(Test {
                        step: 0,
                        next: Instant::now(),
                        correlation,
                    });
                    self.setup.state.send_modify(|s| s.testing = true);
                    Ok(step)
                };
                let _ = reply.send(answer);
            }
            Request::StopTest { reply, correlation } => {
                let running = self.test.is_some();
                if running {
                    self.test.take();
                    self.finish_test_event("cancelled", correlation);
                    if !down {
                        self.restore_base();
                    }
                }
                let _ = reply.send(Ok(running));
            }
        }
    }

    fn step_test(&mut self, now: Instant) {
        let Some(test) = self.test.as_mut() else {
            return;
        };
        if test.step < Pattern::TEST_CYCLE.len() {
            let pattern = Pattern::TEST_CYCLE[test.step];
            test.step += 1;
            test.next = now.max(test.next) + self.setup.settings.test_step;
            let correlation = test.correlation.clone();
            self.waiting.push_back(job(
                Effect::Pattern(pattern, Source::Test),
                self.brightness,
                None,
                correlation,
            ));
        } else {
            self.end_test("completed");
        }
    }

    /// Ends the test and shows the resting pattern again.
    fn end_test(&mut self, outcome: &str) {
        if let Some(test) = self.test.take() {
            self.finish_test_event(outcome, test.correlation);
            if !matches!(self.phase, Phase::Down { .. }) {
                self.restore_base();
            }
        }
    }

    fn finish_test_event(&mut self, outcome: &str, correlation: Option<Arc<str>>) {
        info!(
            outcome,
            correlation_id = correlation.as_deref(),
            "eye test ended"
        );
        self.setup.state.send_modify(|s| s.testing = false);
        self.emit(
            Topic::EyesTestFinished,
            json!({ "outcome": outcome, "restores": self.base.as_str() }),
            correlation,
        );
    }

    fn restore_base(&mut self) {
        self.waiting.push_back(job(
            Effect::Pattern(self.base, Source::Restore),
            self.brightness,
            None,
            None,
        ));
    }

    /// Sends waiting commands while the board answers, up to the window.
    fn pump(&mut self) {
        while self.phase == Phase::Up && self.sent.len() < WINDOW {
            let Some(mut job) = self.waiting.pop_front() else {
                return;
            };
            let Some(link) = self.link.as_mut() else {
                self.waiting.push_front(job);
                return;
            };
            let now = Instant::now();
            match link.write(&protocol::frame(job.command)) {
                Ok(()) => {
                    job.deadline = Some(now + self.setup.settings.answer_timeout);
                    self.last_traffic = now;
                    self.sent.push_back(job);
                }
                Err(e) => {
                    self.waiting.push_front(job);
                    self.lose(format!("writing to the port failed: {e}"));
                    return;
                }
            }
        }
    }

    fn emit(&self, topic: Topic, payload: serde_json::Value, correlation: Option<Arc<str>>) {
        let mut draft = Draft::new(topic, "eyes", payload);
        if let Some(id) = correlation {
            draft = draft.correlation_id(&*id);
        }
        self.setup.bus.publish(draft);
    }

    /// Fails what is still waiting and closes the link.
    fn finish(mut self) {
        for job in self.sent.drain(..).chain(self.waiting.drain(..)) {
            if let Some(reply) = job.reply {
                let _ = reply.send(Err(EyesError::Unavailable("the eyes are stopping".into())));
            }
        }
        self.link = None;
        self.setup.state.send_modify(|s| s.connected = false);
        self.outcome();
    }
}

/// Why a command cannot reach the board, and what to do.
fn not_connected(error: &str) -> String {
    format!(
        "the eyes' board is not connected: {error}. The server keeps reconnecting; check the USB cable and CANTINA_EYES_PORT"
    )
}

fn job(
    effect: Effect,
    brightness: f64,
    reply: Option<Reply<()>>,
    correlation: Option<Arc<str>>,
) -> Job {
    Job {
        command: effect.command(brightness),
        effect,
        reply,
        correlation,
        deadline: None,
        seq: 0,
    }
}
