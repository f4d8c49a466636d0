//! The droid's behaviour mode: STARTUP at boot, then IDLE, AMBIENT or
//! INTERACTIVE on request.
//!
//! A change is a transition with events: `system.mode.transition.started`,
//! then `system.mode.changed`, then the hooks that make the droid follow the
//! mode (the eyes, the music …) run, then `system.mode.transition.completed`.
//! When a hook fails, the previous mode is restored (`system.mode.changed`
//! back) and `system.mode.transition.failed` says why. Asking for the current
//! mode changes nothing and publishes nothing. The current mode lives in a
//! `watch` channel, so any part can read or follow it without locking.

use std::{fmt, sync::Arc, time::Duration};

use serde_json::json;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{
    bus::{Bus, Topic},
    lifecycle::BoxFuture,
};

/// The droid's behaviour mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Booting; moves to IDLE when start-up is done.
    Startup,
    /// Resting: eyes idle, no music.
    Idle,
    /// Background show.
    Ambient,
    /// Talking with people.
    Interactive,
}

impl Mode {
    /// The name people see (`IDLE`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Startup => "STARTUP",
            Mode::Idle => "IDLE",
            Mode::Ambient => "AMBIENT",
            Mode::Interactive => "INTERACTIVE",
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The outcome of a mode request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ModeChange {
    /// The mode before the request.
    pub from: Mode,
    /// The mode after it.
    pub to: Mode,
}

impl ModeChange {
    /// Whether the request changed anything.
    pub fn changed(&self) -> bool {
        self.from != self.to
    }

    /// What happened, for people.
    pub fn describe(&self) -> String {
        if self.changed() {
            format!("mode {} → {}", self.from, self.to)
        } else {
            format!("already in {} mode", self.to)
        }
    }
}

/// A transition that failed and was rolled back.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the change to {to} mode failed ({reason}); the droid stays in {from} mode")]
pub struct ModeError {
    /// The mode kept.
    pub from: Mode,
    /// The mode asked for.
    pub to: Mode,
    /// What failed.
    pub reason: String,
}

/// Makes part of the droid follow a mode change; an error rolls it back.
pub type ModeHook = Arc<dyn Fn(Mode, Mode) -> BoxFuture<'static, Result<(), String>> + Send + Sync>;

/// Longest a hook may take before the transition counts as failed.
const HOOK_TIMEOUT: Duration = Duration::from_secs(5);

/// Shared handle on the current mode.
#[derive(Clone)]
pub struct Modes {
    /// The current mode; the sender is shared so any handle can change it.
    tx: watch::Sender<Mode>,
    /// Where transitions are announced.
    bus: Bus,
    /// Run on every change, in the order added, by name for the logs.
    hooks: Arc<std::sync::RwLock<Vec<(&'static str, ModeHook)>>>,
    /// One transition at a time: a second request waits for the first.
    transition: Arc<tokio::sync::Mutex<()>>,
}

impl fmt::Debug for Modes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Modes")
            .field("current", &self.current())
            .finish()
    }
}

impl Modes {
    /// Starts in STARTUP, announcing transitions on `bus`.
    pub fn new(bus: Bus) -> Self {
        Self {
            tx: watch::Sender::new(Mode::Startup),
            bus,
            hooks: Arc::default(),
            transition: Arc::default(),
        }
    }

    /// The current mode.
    pub fn current(&self) -> Mode {
        *self.tx.borrow()
    }

    /// Follows mode changes.
    pub fn subscribe(&self) -> watch::Receiver<Mode> {
        self.tx.subscribe()
    }

    /// Adds a hook that runs on every change (the eyes follow the mode …).
    /// Hooks run while the transition holds the mode, so a hook must not ask
    /// for a mode change itself.
    pub fn add_hook(&self, name: &'static str, hook: ModeHook) {
        self.hooks.write().expect("hooks lock").push((name, hook));
    }

    /// Switches to `target`: announces the transition, runs the hooks, and
    /// rolls back if one fails. Requests are served one at a time.
    pub async fn set(&self, target: Mode) -> Result<ModeChange, ModeError> {
        let _one_at_a_time = self.transition.lock().await;
        let from = self.current();
        if from == target {
            return Ok(ModeChange { from, to: target });
        }
        let payload = json!({ "from": from.as_str(), "to": target.as_str() });
        self.bus
            .emit(Topic::ModeTransitionStarted, "modes", &payload);
        self.tx.send_replace(target);
        self.bus.emit(Topic::ModeChanged, "modes", &payload);

        let hooks = self.hooks.read().expect("hooks lock").clone();
        for (name, hook) in hooks {
            let failure = match tokio::time::timeout(HOOK_TIMEOUT, hook(from, target)).await {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => format!("{name}: {e}"),
                Err(_) => format!("{name}: no answer within {HOOK_TIMEOUT:?}"),
            };
            warn!(%from, to = %target, reason = %failure, "mode change failed; restoring the previous mode");
            self.tx.send_replace(from);
            self.bus.emit(
                Topic::ModeChanged,
                "modes",
                json!({ "from": target.as_str(), "to": from.as_str(), "reverted": true }),
            );
            self.bus.emit(
                Topic::ModeTransitionFailed,
                "modes",
                json!({ "from": from.as_str(), "to": target.as_str(), "error": failure, "reverted_to": from.as_str() }),
            );
            return Err(ModeError {
                from,
                to: target,
                reason: failure,
            });
        }
        info!(%from, to = %target, "mode changed");
        self.bus
            .emit(Topic::ModeTransitionCompleted, "modes", &payload);
        Ok(ModeChange { from, to: target })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::TopicSet;

    fn topics(bus: &Bus) -> Vec<(String, serde_json::Value)> {
        bus.history(Some(TopicSet::parse(&["system.mode.*"]).unwrap()), 100)
            .iter()
            .map(|e| (e.topic.as_str().to_string(), e.payload.clone()))
            .collect()
    }

    #[tokio::test]
    async fn a_change_is_announced_in_three_steps() {
        let bus = Bus::default();
        let modes = Modes::new(bus.clone());
        let rx = modes.subscribe();
        let change = modes.set(Mode::Interactive).await.unwrap();
        assert_eq!(change.describe(), "mode STARTUP → INTERACTIVE");
        assert!(rx.has_changed().unwrap());
        let names: Vec<_> = topics(&bus).into_iter().map(|(t, _)| t).collect();
        assert_eq!(
            names,
            [
                "system.mode.transition.started",
                "system.mode.changed",
                "system.mode.transition.completed"
            ]
        );
    }

    #[tokio::test]
    async fn asking_for_the_current_mode_changes_and_publishes_nothing() {
        let bus = Bus::default();
        let modes = Modes::new(bus.clone());
        modes.set(Mode::Ambient).await.unwrap();
        let mut rx = modes.subscribe();
        rx.mark_unchanged();
        let before = bus.counters().published;
        let again = modes.set(Mode::Ambient).await.unwrap();
        assert_eq!(again.describe(), "already in AMBIENT mode");
        assert!(
            !rx.has_changed().unwrap(),
            "a no-op must not wake followers"
        );
        assert_eq!(bus.counters().published, before);
    }

    #[tokio::test]
    async fn a_failing_hook_rolls_the_change_back() {
        let bus = Bus::default();
        let modes = Modes::new(bus.clone());
        modes.set(Mode::Idle).await.unwrap();
        modes.add_hook(
            "eyes",
            Arc::new(|_, to| {
                Box::pin(async move {
                    if to == Mode::Ambient {
                        Err("board not answering".to_string())
                    } else {
                        Ok(())
                    }
                })
            }),
        );
        let err = modes.set(Mode::Ambient).await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "the change to AMBIENT mode failed (eyes: board not answering); the droid stays in IDLE mode"
        );
        assert_eq!(modes.current(), Mode::Idle);
        let events = topics(&bus);
        let last: Vec<_> = events[events.len() - 4..]
            .iter()
            .map(|(t, _)| t.as_str())
            .collect();
        assert_eq!(
            last,
            [
                "system.mode.transition.started",
                "system.mode.changed",
                "system.mode.changed",
                "system.mode.transition.failed"
            ]
        );
        assert_eq!(events.last().unwrap().1["reverted_to"], "IDLE");
        // Other changes still work.
        assert!(modes.set(Mode::Interactive).await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hook_that_never_answers_fails_the_change_in_bounded_time() {
        let bus = Bus::default();
        let modes = Modes::new(bus);
        modes.add_hook("stuck", Arc::new(|_, _| Box::pin(std::future::pending())));
        let err = modes.set(Mode::Idle).await.unwrap_err();
        assert!(err.reason.contains("no answer within 5s"), "{err}");
        assert_eq!(modes.current(), Mode::Startup);
    }
}
