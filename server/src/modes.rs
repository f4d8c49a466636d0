//! The droid's behaviour mode: STARTUP at boot, then IDLE, AMBIENT or
//! INTERACTIVE on request. The current mode lives in a `watch` channel so that
//! any part can read it without locking and follow its changes.

use std::fmt;

use tokio::sync::watch;
use tracing::info;

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

/// Shared handle on the current mode.
#[derive(Clone, Debug)]
pub struct Modes {
    /// The current mode; the sender is shared so any handle can change it.
    tx: watch::Sender<Mode>,
}

impl Default for Modes {
    fn default() -> Self {
        Self::new()
    }
}

impl Modes {
    /// Starts in STARTUP.
    pub fn new() -> Self {
        Self {
            tx: watch::Sender::new(Mode::Startup),
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

    /// Switches to `target`, atomically with respect to other requests.
    pub fn set(&self, target: Mode) -> ModeChange {
        let mut from = target;
        self.tx.send_if_modified(|mode| {
            from = *mode;
            *mode = target;
            from != target
        });
        let change = ModeChange { from, to: target };
        if change.changed() {
            info!(from = %change.from, to = %change.to, "mode changed");
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_reported_and_repeats_are_not() {
        let modes = Modes::new();
        let mut rx = modes.subscribe();
        assert_eq!(modes.current(), Mode::Startup);
        let change = modes.set(Mode::Interactive);
        assert!(change.changed());
        assert_eq!(change.describe(), "mode STARTUP → INTERACTIVE");
        assert!(rx.has_changed().unwrap());
        rx.mark_unchanged();
        let again = modes.set(Mode::Interactive);
        assert!(!again.changed());
        assert_eq!(again.describe(), "already in INTERACTIVE mode");
        assert!(
            !rx.has_changed().unwrap(),
            "a no-op must not wake followers"
        );
    }
}
