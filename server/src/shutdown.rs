//! Shutdown: one token that every long-lived task watches, triggered by
//! SIGINT/SIGTERM or by the `quit` command, with the reason kept for the logs.

use std::sync::{Arc, OnceLock};

use tokio_util::sync::CancellationToken;

/// A cheap, clonable shutdown trigger and signal.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    /// Cancelled once, when shutdown begins.
    token: CancellationToken,
    /// Why shutdown began: the first trigger wins.
    reason: Arc<OnceLock<String>>,
}

impl Shutdown {
    /// A shutdown that has not begun.
    pub fn new() -> Self {
        Self::default()
    }

    /// Begins shutdown; later triggers keep the first reason.
    pub fn trigger(&self, reason: impl Into<String>) {
        let _ = self.reason.set(reason.into());
        self.token.cancel();
    }

    /// Whether shutdown has begun.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Why shutdown began, once it has.
    pub fn reason(&self) -> Option<&str> {
        self.reason.get().map(String::as_str)
    }

    /// Resolves when shutdown begins.
    pub async fn wait(&self) {
        self.token.cancelled().await;
    }

    /// An owned future that resolves when shutdown begins, for APIs that need
    /// `'static`.
    pub fn wait_owned(&self) -> tokio_util::sync::WaitForCancellationFutureOwned {
        self.token.clone().cancelled_owned()
    }
}

/// SIGINT and SIGTERM handlers. Install them before the server announces
/// itself, so that a signal sent as soon as it listens is never fatal.
pub struct Signals {
    #[cfg(unix)]
    term: tokio::signal::unix::Signal,
    #[cfg(unix)]
    int: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers; needs a running tokio runtime.
    pub fn install() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                term: signal(SignalKind::terminate())?,
                int: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Resolves with the signal's name at the next SIGINT or SIGTERM.
    pub async fn recv(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.term.recv() => "SIGTERM",
                _ = self.int.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn first_reason_wins_and_waiters_wake() {
        let shutdown = Shutdown::new();
        let waiter = tokio::spawn({
            let shutdown = shutdown.clone();
            async move { shutdown.wait().await }
        });
        assert!(!shutdown.is_triggered());
        shutdown.trigger("quit command");
        shutdown.trigger("SIGTERM");
        waiter.await.unwrap();
        assert_eq!(shutdown.reason(), Some("quit command"));
    }
}
