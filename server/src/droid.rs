//! The droid: the state every command and RPC works on (session, event bus,
//! mode, subsystems, shutdown), and its boot, reset and halt sequences.
//!
//! [`Parts`] is the wiring: each subsystem is named there once, in start
//! order, and the supervisor's list and the mode hooks follow from it.

use std::{
    net::SocketAddr,
    ops::Deref,
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use serde_json::json;
use tracing::{debug, info, warn};

use crate::{
    audio::Audio,
    bus::{Bus, BusMonitor, Topic},
    eyes::Eyes,
    lifecycle::{StartError, StatusObserver, Subsystem, Supervisor},
    logs::Logs,
    modes::{Mode, ModeChange, ModeError, ModeHook, Modes},
    plans::Plans,
    servos::{MoveOutcome, Servos},
    shutdown::Shutdown,
    speech::Speech,
};

/// A subsystem as [`Parts`] holds it: a cheap handle, or an `Arc` of one
/// that is not.
trait Part {
    /// The subsystem, for the supervisor.
    fn subsystem(&self) -> Arc<dyn Subsystem>;
}

impl<S: Subsystem + Clone> Part for S {
    fn subsystem(&self) -> Arc<dyn Subsystem> {
        Arc::new(self.clone())
    }
}

impl<S: Subsystem> Part for Arc<S> {
    fn subsystem(&self) -> Arc<dyn Subsystem> {
        self.clone()
    }
}

/// Declares [`Parts`] from one list: the subsystems in start order, then
/// the mode hooks in the order they run.
macro_rules! parts {
    (
        $( $(#[$doc:meta])* $part:ident: $ty:ty, )*
        ;
        mode hooks: $( $hooked:ident as $hook:literal ),* $(,)?
    ) => {
        /// The droid's subsystems, each once: the supervisor starts them in
        /// this order and stops them in reverse. Adding one is a folder, a
        /// line here and its construction in [`crate::start`].
        pub struct Parts {
            $( $(#[$doc])* pub $part: $ty, )*
        }

        impl Parts {
            /// Every subsystem, in start order.
            pub fn subsystems(&self) -> Vec<Arc<dyn Subsystem>> {
                vec![$( self.$part.subsystem() ),*]
            }

            /// The mode hooks, by name, in the order they run.
            pub fn mode_hooks(&self) -> Vec<(&'static str, ModeHook)> {
                vec![$( ($hook, self.$hooked.mode_hook()) ),*]
            }
        }
    };
}

parts! {
    /// The log service; first, so that it hears everything the others
    /// say, also while they stop.
    logs: Logs,
    /// Reports the bus's metrics.
    bus_monitor: Arc<BusMonitor>,
    /// Music, speech and sounds.
    audio: Audio,
    /// The LED eyes.
    eyes: Eyes,
    /// The servos on the Maestro.
    servos: Servos,
    /// The droid's voice: after the audio and the eyes it plays through.
    speech: Speech,
    /// The conductor: after everything its plans drive.
    plans: Plans,
    ;
    // The eyes follow the mode first; IDLE stops the music.
    mode hooks: eyes as "eyes", audio as "music",
}

/// The longest shutdown waits for the servos to get home (a second more
/// than this at most).
pub const HOME_WAIT_MAX: Duration = Duration::from_secs(10);

/// How long the panic button fades music out unless told.
pub const PANIC_FADE: Duration = Duration::from_millis(300);

/// What the panic button stopped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Panic {
    /// The plans cancelled.
    pub cancelled: Vec<String>,
    /// What could not be stopped, and why.
    pub failed: Vec<String>,
    /// What was done, for people.
    pub message: String,
}

/// Facts about this server run.
#[derive(Clone, Debug)]
pub struct ServerInfo {
    /// The server's version.
    pub version: &'static str,
    /// Id of this run, `YYYYMMDD-HHMMSS-xxxx` (UTC): log files and entries
    /// carry it so that a session's traces can be found again.
    pub session_id: String,
    /// When the server started, for people.
    pub started_at: SystemTime,
    /// When the server started, for uptime (monotonic).
    pub started: Instant,
    /// The address actually bound (port 0 resolved).
    pub listen: SocketAddr,
    /// Whether RPCs need a bearer token.
    pub token_required: bool,
    /// Whether gRPC is served over TLS.
    pub tls: bool,
}

impl ServerInfo {
    /// How long the server has been running.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }
}

/// Makes a session id from the start time: sortable, and readable in a file name.
pub fn new_session_id(now: SystemTime) -> String {
    let stamp: String = humantime::format_rfc3339_seconds(now)
        .to_string()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..4];
    format!("{}-{}-{suffix}", &stamp[..8], &stamp[8..14])
}

/// Why a reset did not complete.
#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// A critical subsystem did not come back.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The mode change back to IDLE failed.
    #[error(transparent)]
    Mode(#[from] ModeError),
}

/// Everything the commands and RPCs act on.
pub struct Droid {
    /// Facts about this run.
    pub info: ServerInfo,
    /// Where every part announces what it does.
    pub bus: Bus,
    /// The behaviour mode.
    pub modes: Modes,
    /// The subsystems and their state.
    pub supervisor: Supervisor,
    /// The subsystems' handles (`droid.eyes`, `droid.audio` …, through
    /// `Deref`).
    pub parts: Parts,
    /// Triggered by `quit` and by signals.
    pub shutdown: Shutdown,
}

impl Deref for Droid {
    type Target = Parts;

    /// The parts read as the droid's own: `droid.eyes`.
    fn deref(&self) -> &Parts {
        &self.parts
    }
}

impl Droid {
    /// Starts the subsystems in order and moves from STARTUP to IDLE; the
    /// parts with a mode hook (the eyes …) follow the mode.
    pub async fn boot(
        info: ServerInfo,
        bus: Bus,
        parts: Parts,
        observer: Option<Arc<dyn StatusObserver>>,
        shutdown: Shutdown,
    ) -> Result<Arc<Droid>, StartError> {
        let modes = Modes::new(bus.clone());
        for (name, hook) in parts.mode_hooks() {
            modes.add_hook(name, hook);
        }
        // In INTERACTIVE mode the eyes follow the conversation's events;
        // the task ends when the bus closes.
        crate::eyes::conversation::follow(&bus, modes.subscribe(), parts.eyes.clone());
        let droid = Arc::new(Droid {
            info,
            modes,
            supervisor: Supervisor::new(
                parts.subsystems(),
                [Arc::new(bus.clone()) as Arc<dyn StatusObserver>]
                    .into_iter()
                    .chain(observer)
                    .collect(),
            ),
            parts,
            bus,
            shutdown,
        });
        droid.supervisor.start_all().await?;
        if let Err(e) = droid.modes.set(Mode::Idle).await {
            warn!(error = %e, "could not enter IDLE mode at boot");
        }
        droid.bus.emit(
            Topic::SystemStarted,
            "droid",
            json!({
                "session_id": droid.info.session_id,
                "version": droid.info.version,
                "listen": droid.info.listen.to_string(),
            }),
        );
        info!(session = %droid.info.session_id, "droid ready");
        Ok(droid)
    }

    /// Restarts every subsystem (stop in reverse, start in order) and goes
    /// back through STARTUP to IDLE. The server and its connections stay up.
    pub async fn reset(&self) -> Result<ModeChange, ResetError> {
        info!("reset requested: restarting the droid");
        let before = self.modes.set(Mode::Startup).await?.from;
        self.supervisor.restart_all().await?;
        let after = self.modes.set(Mode::Idle).await?;
        Ok(ModeChange {
            from: before,
            to: after.to,
        })
    }

    /// The panic button (`StopAll`, `cantina panic`): every plan cancelled
    /// (none resumes), the music faded out over `fade` (300 ms when `None`)
    /// and its duck lifted, speech stopped with a short fade, the eyes back
    /// to the mode's pattern, every servo sent home (once the plans are
    /// cancelled, so that none moves a servo again; it does not wait for
    /// the servos to get there), all at once. Each part that cannot is named
    /// in `failed`; the others still stop.
    pub async fn panic(&self, fade: Option<Duration>) -> Panic {
        let fade = fade.unwrap_or(PANIC_FADE);
        let pattern = crate::eyes::pattern_for(self.modes.current());
        let ((plans, servos), music, speech, eyes) = tokio::join!(
            async {
                let plans = self.plans.cancel_all("stopped by the panic button").await;
                (plans, self.servos.home(None).await)
            },
            async {
                let stopped = self.audio.fade_out(fade).await;
                // A plan's duck does not outlive the show.
                let _ = self.audio.unduck(Some(0)).await;
                stopped
            },
            self.speech.stop(None),
            self.eyes.set_pattern(pattern),
        );
        let mut done = Vec::new();
        let mut failed = Vec::new();
        let cancelled = match plans {
            Ok(ids) => {
                done.push(match ids.len() {
                    0 => "no plan was running".to_string(),
                    1 => "1 plan cancelled".to_string(),
                    n => format!("{n} plans cancelled"),
                });
                ids
            }
            Err(e) => {
                failed.push(format!("plans: {e}"));
                Vec::new()
            }
        };
        match music {
            Ok(crate::audio::Stopped::NothingPlaying) => {}
            Ok(_) => done.push(format!("music faded out over {} ms", fade.as_millis())),
            Err(e) => failed.push(format!("music: {e}")),
        }
        match speech {
            Ok(0) => {}
            Ok(n) => done.push(format!("{n} utterance(s) stopped")),
            Err(e) => failed.push(format!("speech: {e}")),
        }
        match eyes {
            Ok(()) => done.push(format!("eyes back to {}", pattern.as_str())),
            Err(e) => failed.push(format!("eyes: {e}")),
        }
        match servos {
            Ok(moves) if moves.is_empty() => {}
            Ok(moves) => done.push(match moves.len() {
                1 => format!("servo {} going home", moves[0].servo),
                n => format!("{n} servos going home"),
            }),
            Err(e) => failed.push(format!("servos: {e}")),
        }
        let mut message = done.join("; ");
        if !failed.is_empty() {
            message = format!("{message}; could not stop: {}", failed.join("; "));
        }
        warn!(%message, "panic: everything stopped");
        self.bus.emit(
            Topic::SystemPanic,
            "droid",
            json!({ "cancelled": cancelled, "failed": failed, "message": message }),
        );
        Panic {
            cancelled,
            failed,
            message,
        }
    }

    /// Sends the servos home (unless `servo_home_on_stop` is off) and
    /// waits for them to get there, then stops every subsystem in reverse
    /// order, then closes the bus (which ends every event stream).
    pub async fn halt(&self) {
        self.bus.emit(
            Topic::SystemStopping,
            "droid",
            json!({ "reason": self.shutdown.reason().unwrap_or("unknown") }),
        );
        if self.servos.settings().home_on_stop {
            self.home_servos_before_stopping().await;
        }
        self.supervisor.stop_all().await;
        self.bus.close();
    }

    /// Every servo home, waiting for the moves to end: at most as long as
    /// the longest takes (`servo_home_duration`, or longer when a
    /// `max_speed` asks, up to [`HOME_WAIT_MAX`]) and a second more. The
    /// plans are cancelled first, so that none moves a servo again on the
    /// way. A lost board is logged, and the shutdown goes on.
    async fn home_servos_before_stopping(&self) {
        let servos = &self.servos;
        if servos.names().is_empty() {
            return;
        }
        match tokio::time::timeout(
            Duration::from_secs(2),
            self.plans.cancel_all("the server is stopping"),
        )
        .await
        {
            Ok(Ok(ids)) if !ids.is_empty() => {
                info!(plans = ?ids, "plans cancelled before the servos go home");
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => debug!(error = %e, "no plans to cancel before the servos go home"),
            Err(_) => warn!("the plans did not end within 2s; the servos go home anyway"),
        }
        let moves = match servos.home(None).await {
            Ok(moves) => moves,
            Err(e) => {
                warn!(error = %e, "could not send the servos home before stopping");
                return;
            }
        };
        let longest = moves.iter().map(|m| m.duration).max().unwrap_or_default();
        let bound = longest.min(HOME_WAIT_MAX) + Duration::from_secs(1);
        info!(
            servos = moves.len(),
            within_ms = bound.as_millis() as u64,
            "sending the servos home before stopping"
        );
        let arrivals = futures_util::future::join_all(moves.iter().map(|m| servos.wait_move(m.id)));
        match tokio::time::timeout(bound, arrivals).await {
            Ok(outcomes) => {
                let short: Vec<String> = moves
                    .iter()
                    .zip(outcomes)
                    .filter(|(_, outcome)| !matches!(outcome, Ok(MoveOutcome::Finished)))
                    .map(|(m, outcome)| match outcome {
                        Ok(outcome) => format!("{}: {}", m.servo, outcome.as_str()),
                        Err(e) => format!("{}: {e}", m.servo),
                    })
                    .collect();
                if short.is_empty() {
                    info!("the servos are home");
                } else {
                    warn!(servos = %short.join("; "), "not every servo got home");
                }
            }
            Err(_) => warn!(
                within_ms = bound.as_millis() as u64,
                "the servos were not home in time; stopping anyway"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_start_with_the_utc_time() {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_000_000);
        let id = new_session_id(t);
        assert!(id.starts_with("20261118-110640-"), "{id}");
        assert_eq!(id.len(), "20261118-110640-abcd".len(), "{id}");
    }
}
