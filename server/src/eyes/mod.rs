//! The eyes: two LED matrices on the droid's Arduino, driven over serial in
//! the firmware's protocol (docs/eyes-protocol.md).
//!
//! [`Eyes`] is the handle (cheap to clone, async) and the [`Subsystem`]; the
//! actor ([`actor`]) owns the serial port on an OS thread of its own, sends
//! one command after another, matches each `+`/`-` answer to its command,
//! and notices a lost board (write error, no answer, port gone), reopening it
//! with backoff and re-applying the pattern and brightness. What the eyes
//! show is published in a `watch` ([`EyesState`]) and as `eyes.*` events.
//!
//! With no Arduino (`virtual`, or `auto` finding none) the eyes run against
//! a board emulated inside the server ([`link`]) that answers like the
//! firmware, at the wire's pace, and is marked virtual in status and logs.
//! `sim` (with the `testkit` feature only) is the same firmware ([`firmware`])
//! on a real pseudo-terminal, for tests and demos; [`protocol`] is the
//! protocol as plain data. In INTERACTIVE mode the eyes also follow the
//! conversation's events on the bus ([`conversation`]).

mod actor;
pub mod conversation;
pub mod firmware;
mod link;
mod message;
pub mod protocol;
pub mod settings;
#[cfg(feature = "testkit")]
pub mod sim;

use std::{sync::Arc, time::Duration};

use serde::Serialize;
use tokio::sync::{oneshot, watch};
use tracing::warn;

use crate::{
    actor::{ActorError, Handle, Subject},
    bus::Bus,
    lifecycle::{BoxFuture, ServiceStatus, StatusHandle, Subsystem},
    modes::{Mode, ModeHook},
};
use message::{Msg, Reply, Request};
pub use protocol::{DEFAULT_BRIGHTNESS, Pattern};
pub use settings::{EyesPort, EyesSettings};

/// Requests that may be outstanding at once, from sending until the
/// answer (wherever they wait: inbox, queue, window); more are refused.
const MAX_QUEUED: usize = 256;

/// What the eyes show and how they are connected.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct EyesState {
    /// The serial port in use, or `virtual`.
    pub port: String,
    /// True when the eyes are the emulated board inside the server.
    #[serde(rename = "virtual")]
    pub is_virtual: bool,
    /// Whether the board answers.
    pub connected: bool,
    /// What the eyes show (as the board confirmed it).
    pub pattern: Pattern,
    /// Brightness, 0.0–1.0 (as the board confirmed it).
    pub brightness: f64,
    /// The last thing that went wrong, for people.
    pub last_error: Option<String>,
    /// Whether `eye test` is cycling the patterns.
    pub testing: bool,
}

impl EyesState {
    fn initial(port: &EyesPort) -> Self {
        Self {
            port: port.to_string(),
            is_virtual: matches!(port, EyesPort::Virtual),
            connected: false,
            pattern: Pattern::Startup,
            brightness: DEFAULT_BRIGHTNESS,
            last_error: None,
            testing: false,
        }
    }
}

/// Why an eyes request failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EyesError {
    /// The board is lost, the eyes are stopped, or too much is queued.
    #[error("{0}")]
    Unavailable(String),
    /// The firmware answered `-`.
    #[error(
        "the eyes' board answered '-' (unknown command) to '{command}': its firmware does not know that command; check that it is the eyes firmware of docs/eyes-protocol.md"
    )]
    Rejected {
        /// The command character.
        command: char,
    },
    /// The firmware did not answer in time; the link is being reopened.
    #[error(
        "the eyes' board did not answer '{command}' within {}: the link is being reopened (is the board powered and on this port?)",
        humantime::format_duration(*.after)
    )]
    Timeout {
        /// The command character.
        command: char,
        /// The answer timeout.
        after: Duration,
    },
    /// The request does not fit what the eyes are doing.
    #[error("{0}")]
    Conflict(String),
}

impl From<ActorError> for EyesError {
    fn from(e: ActorError) -> Self {
        EyesError::Unavailable(e.to_string())
    }
}

/// The eyes' handle and subsystem.
#[derive(Clone)]
pub struct Eyes {
    inner: Arc<Inner>,
}

struct Inner {
    port: EyesPort,
    settings: EyesSettings,
    bus: Bus,
    state: watch::Sender<EyesState>,
    /// The actor's thread, while it runs.
    actor: Handle<Msg>,
    /// The brightness the next start begins at (as `f64` bits): the
    /// default, the one restored from the state file, or the one the last
    /// run ended with (a reset keeps the brightness).
    start_brightness: std::sync::atomic::AtomicU64,
}

impl Eyes {
    /// Eyes on `port`, announcing on `bus`; nothing runs until started.
    pub fn new(port: EyesPort, settings: EyesSettings, bus: Bus) -> Self {
        Self {
            inner: Arc::new(Inner {
                state: watch::Sender::new(EyesState::initial(&port)),
                port,
                settings,
                bus,
                actor: Handle::new(Subject::plural("the eyes")),
                start_brightness: std::sync::atomic::AtomicU64::new(DEFAULT_BRIGHTNESS.to_bits()),
            }),
        }
    }

    /// Sets the brightness (0.0–1.0, clamped) the eyes start at, before
    /// they start: the state file's, at boot.
    pub fn restore_brightness(&self, brightness: f64) {
        let brightness = if brightness.is_finite() {
            brightness.clamp(0.0, 1.0)
        } else {
            DEFAULT_BRIGHTNESS
        };
        self.inner
            .start_brightness
            .store(brightness.to_bits(), std::sync::atomic::Ordering::Relaxed);
    }

    /// What the eyes show now.
    pub fn state(&self) -> EyesState {
        self.inner.state.borrow().clone()
    }

    /// Follows what the eyes show.
    pub fn subscribe(&self) -> watch::Receiver<EyesState> {
        self.inner.state.subscribe()
    }

    /// Shows `pattern` (cancelling a running `eye test`); returns once the
    /// board confirmed it.
    pub async fn set_pattern(&self, pattern: Pattern) -> Result<(), EyesError> {
        self.call(|reply, correlation| Request::Pattern {
            pattern,
            reply,
            correlation,
        })
        .await
    }

    /// Sets the brightness (0.0–1.0, clamped); returns once the board
    /// confirmed it.
    pub async fn set_brightness(&self, brightness: f64) -> Result<(), EyesError> {
        self.call(|reply, correlation| Request::Brightness {
            brightness,
            reply,
            correlation,
        })
        .await
    }

    /// While the droid speaks: shows brightness `level` (`0`–`9`) without
    /// changing the brightness set or announcing it; `None` goes back to the
    /// brightness set. Returns once the board confirmed it.
    pub async fn voice_level(&self, level: Option<u8>) -> Result<(), EyesError> {
        self.call(|reply, correlation| Request::Level {
            level,
            reply,
            correlation,
        })
        .await
    }

    /// Makes `pattern` what the eyes rest on (the mode's pattern). Unlike
    /// [`set_pattern`](Self::set_pattern) it is kept while the board is
    /// lost, shown when it comes back, and does not interrupt `eye test`.
    pub async fn follow(&self, pattern: Pattern) -> Result<(), EyesError> {
        self.call(|reply, correlation| Request::Follow {
            pattern,
            reply,
            correlation,
        })
        .await
    }

    /// Starts `eye test`: the eight glyphs, one step each (1 s), then the
    /// pattern from before. Returns at once, with the step's length.
    pub async fn start_test(&self) -> Result<Duration, EyesError> {
        self.call(|reply, correlation| Request::StartTest { reply, correlation })
            .await
    }

    /// Cancels a running `eye test`, restoring the pattern from before;
    /// false when none was running.
    pub async fn stop_test(&self) -> Result<bool, EyesError> {
        self.call(|reply, correlation| Request::StopTest { reply, correlation })
            .await
    }

    /// The hook that makes the eyes follow the droid's mode. A lost board
    /// does not fail the mode change: the pattern is shown when it returns.
    pub fn mode_hook(&self) -> ModeHook {
        crate::actor::mode_hook(self, |eyes: Eyes, to| async move {
            if let Err(e) = eyes.follow(pattern_for(to)).await {
                warn!(mode = %to, error = %e, "the eyes could not follow the mode");
            }
        })
    }

    async fn call<T>(
        &self,
        request: impl FnOnce(Reply<T>, Option<Arc<str>>) -> Request,
    ) -> Result<T, EyesError> {
        self.inner
            .actor
            .call(|reply, correlation| Msg::Request(request(reply, correlation)))
            .await?
    }
}

/// The pattern the eyes rest on in each mode.
pub fn pattern_for(mode: Mode) -> Pattern {
    match mode {
        Mode::Startup => Pattern::Startup,
        Mode::Idle => Pattern::Idle,
        Mode::Ambient => Pattern::Happy,
        Mode::Interactive => Pattern::Engaged,
    }
}

/// The subsystem status that a state means.
fn status_of(state: &EyesState) -> (ServiceStatus, String) {
    if state.connected && state.is_virtual {
        (
            ServiceStatus::Running,
            "virtual eyes (no Arduino): patterns are emulated and logged".into(),
        )
    } else if state.connected {
        (ServiceStatus::Running, format!("board on {}", state.port))
    } else {
        (
            ServiceStatus::Degraded,
            format!(
                "board lost on {}: {}; reconnecting",
                state.port,
                state.last_error.as_deref().unwrap_or("not answering")
            ),
        )
    }
}

impl Subsystem for Eyes {
    fn name(&self) -> &'static str {
        "eyes"
    }

    /// The droid performs without its eyes.
    fn critical(&self) -> bool {
        false
    }

    fn start(&self, status: StatusHandle) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let inner = &self.inner;
            inner.state.send_replace(EyesState {
                brightness: f64::from_bits(
                    inner
                        .start_brightness
                        .load(std::sync::atomic::Ordering::Relaxed),
                ),
                ..EyesState::initial(&inner.port)
            });
            let (first, first_outcome) = oneshot::channel();
            let (port, settings, bus, state) = (
                inner.port.clone(),
                inner.settings.clone(),
                inner.bus.clone(),
                inner.state.clone(),
            );
            // Emptying the slot (stop, or dropping the eyes) tells the actor
            // to stop: it holds a sender of its own inbox, for its links'
            // readers, so it never sees the channel close.
            inner
                .actor
                .spawn_thread("eyes", MAX_QUEUED, Msg::Stop, (), move |inbox, outbox| {
                    actor::Actor::new(actor::Setup {
                        port,
                        settings,
                        bus,
                        state,
                        inbox,
                        outbox,
                        first_outcome: first,
                    })
                    .run()
                })?;
            // The first attempt to reach the board ends in a bounded time
            // (open, boot line or its timeout, sync).
            let _ = first_outcome.await;
            inner
                .actor
                .follow(status, inner.state.subscribe(), status_of)
                .await;
            Ok(())
        })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            self.inner.actor.stop().await;
            // The next start (a reset) carries on at the brightness set.
            let brightness = self.inner.state.borrow().brightness;
            self.restore_brightness(brightness);
        })
    }
}

#[cfg(test)]
mod tests;
