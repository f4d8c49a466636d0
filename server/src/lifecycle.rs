//! Subsystem lifecycle: each part of the droid (audio, eyes, logs, plans …)
//! is a [`Subsystem`] that the [`Supervisor`] starts in a declared order, stops
//! in reverse, and restarts on `reset`. A critical subsystem that cannot start
//! aborts start-up with its reason; a non-critical one is marked ERROR and the
//! droid carries on without it.

use std::{
    future::Future,
    pin::Pin,
    sync::{Arc, Mutex},
    time::{Instant, SystemTime},
};

use tracing::{error, info, warn};

/// A boxed future, so that subsystems can be stored as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One part of the droid with a life of its own.
pub trait Subsystem: Send + Sync + 'static {
    /// Short name, e.g. `audio`; its health service is `cantina.<name>`.
    fn name(&self) -> &'static str;

    /// Whether the droid cannot run without it.
    fn critical(&self) -> bool {
        true
    }

    /// Starts the subsystem; the error says what is wrong and what to do.
    fn start(&self) -> BoxFuture<'_, Result<(), String>>;

    /// Stops the subsystem, releasing what it holds.
    fn stop(&self) -> BoxFuture<'_, ()>;
}

/// Where a subsystem stands in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServiceStatus {
    /// Starting up.
    Starting,
    /// Working normally.
    Running,
    /// Working, with something missing.
    Degraded,
    /// Not working.
    Error,
    /// Shutting down.
    Stopping,
    /// Stopped.
    Stopped,
}

impl ServiceStatus {
    /// The name people and API clients see (`RUNNING`).
    pub fn as_str(self) -> &'static str {
        match self {
            ServiceStatus::Starting => "STARTING",
            ServiceStatus::Running => "RUNNING",
            ServiceStatus::Degraded => "DEGRADED",
            ServiceStatus::Error => "ERROR",
            ServiceStatus::Stopping => "STOPPING",
            ServiceStatus::Stopped => "STOPPED",
        }
    }
}

/// A subsystem's reported state.
#[derive(Clone, Debug)]
pub struct StatusRecord {
    /// The subsystem's name.
    pub name: &'static str,
    /// Where it stands.
    pub status: ServiceStatus,
    /// Why, for people.
    pub message: String,
    /// When the status last changed.
    pub since: SystemTime,
    /// When the current run began, while it runs.
    pub running_since: Option<Instant>,
    /// Whether the droid cannot run without it.
    pub critical: bool,
}

/// Why start-up failed.
#[derive(Debug, thiserror::Error)]
#[error("the {name} subsystem could not start: {reason}")]
pub struct StartError {
    /// The critical subsystem that failed.
    pub name: &'static str,
    /// Its reason.
    pub reason: String,
}

/// Starts, stops and restarts the subsystems in their declared order.
pub struct Supervisor {
    /// The subsystems, in start order.
    subsystems: Vec<Arc<dyn Subsystem>>,
    /// Their reported state, in the same order.
    records: Mutex<Vec<StatusRecord>>,
    /// Serialises start, stop and restart so a `reset` during shutdown (or two
    /// resets at once) cannot interleave.
    op: tokio::sync::Mutex<()>,
}

impl Supervisor {
    /// A supervisor of `subsystems`, in start order; nothing runs yet.
    pub fn new(subsystems: Vec<Arc<dyn Subsystem>>) -> Self {
        let records = subsystems
            .iter()
            .map(|s| StatusRecord {
                name: s.name(),
                status: ServiceStatus::Stopped,
                message: "not started".into(),
                since: SystemTime::now(),
                running_since: None,
                critical: s.critical(),
            })
            .collect();
        Self {
            subsystems,
            records: Mutex::new(records),
            op: tokio::sync::Mutex::new(()),
        }
    }

    /// The state of every subsystem, in start order.
    pub fn snapshot(&self) -> Vec<StatusRecord> {
        self.records.lock().expect("status lock").clone()
    }

    /// The subsystems' names, in start order.
    pub fn names(&self) -> Vec<&'static str> {
        self.subsystems.iter().map(|s| s.name()).collect()
    }

    fn report(&self, index: usize, status: ServiceStatus, message: impl Into<String>) {
        let mut records = self.records.lock().expect("status lock");
        let record = &mut records[index];
        record.status = status;
        record.message = message.into();
        record.since = SystemTime::now();
        record.running_since = match status {
            ServiceStatus::Running | ServiceStatus::Degraded => {
                record.running_since.or(Some(Instant::now()))
            }
            _ => None,
        };
    }

    /// Starts every subsystem in order. When a critical one fails, the ones
    /// already started are stopped again, in reverse, and the failure returned.
    pub async fn start_all(&self) -> Result<(), StartError> {
        let _op = self.op.lock().await;
        self.start_locked().await
    }

    async fn start_locked(&self) -> Result<(), StartError> {
        for (index, subsystem) in self.subsystems.iter().enumerate() {
            self.report(index, ServiceStatus::Starting, "starting");
            match subsystem.start().await {
                Ok(()) => {
                    info!(subsystem = subsystem.name(), "started");
                    self.report(index, ServiceStatus::Running, "running");
                }
                Err(reason) if subsystem.critical() => {
                    error!(subsystem = subsystem.name(), %reason, "critical subsystem failed to start");
                    self.report(index, ServiceStatus::Error, reason.clone());
                    self.stop_range(index).await;
                    return Err(StartError {
                        name: subsystem.name(),
                        reason,
                    });
                }
                Err(reason) => {
                    warn!(subsystem = subsystem.name(), %reason, "subsystem failed to start; carrying on without it");
                    self.report(index, ServiceStatus::Error, reason);
                }
            }
        }
        Ok(())
    }

    /// Stops every subsystem, in reverse order.
    pub async fn stop_all(&self) {
        let _op = self.op.lock().await;
        self.stop_range(self.subsystems.len()).await;
    }

    /// Stops the first `end` subsystems in reverse order, skipping those that
    /// never started.
    async fn stop_range(&self, end: usize) {
        for index in (0..end).rev() {
            let status = self.records.lock().expect("status lock")[index].status;
            if matches!(status, ServiceStatus::Stopped | ServiceStatus::Error) {
                continue;
            }
            let subsystem = &self.subsystems[index];
            self.report(index, ServiceStatus::Stopping, "stopping");
            subsystem.stop().await;
            info!(subsystem = subsystem.name(), "stopped");
            self.report(index, ServiceStatus::Stopped, "stopped");
        }
    }

    /// Stops everything in reverse order and starts it again in order.
    pub async fn restart_all(&self) -> Result<(), StartError> {
        let _op = self.op.lock().await;
        info!(
            subsystems = self.subsystems.len(),
            "restarting every subsystem"
        );
        self.stop_range(self.subsystems.len()).await;
        self.start_locked().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the order of calls; fails to start when told to.
    struct Probe {
        name: &'static str,
        critical: bool,
        fail: bool,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Subsystem for Probe {
        fn name(&self) -> &'static str {
            self.name
        }
        fn critical(&self) -> bool {
            self.critical
        }
        fn start(&self) -> BoxFuture<'_, Result<(), String>> {
            Box::pin(async move {
                self.log
                    .lock()
                    .unwrap()
                    .push(format!("start {}", self.name));
                if self.fail {
                    Err(format!("{} is broken", self.name))
                } else {
                    Ok(())
                }
            })
        }
        fn stop(&self) -> BoxFuture<'_, ()> {
            Box::pin(async move { self.log.lock().unwrap().push(format!("stop {}", self.name)) })
        }
    }

    fn supervisor(spec: &[(&'static str, bool, bool)]) -> (Supervisor, Arc<Mutex<Vec<String>>>) {
        let log = Arc::new(Mutex::new(Vec::new()));
        let subsystems = spec
            .iter()
            .map(|&(name, critical, fail)| {
                Arc::new(Probe {
                    name,
                    critical,
                    fail,
                    log: log.clone(),
                }) as Arc<dyn Subsystem>
            })
            .collect();
        (Supervisor::new(subsystems), log)
    }

    #[tokio::test]
    async fn starts_in_order_and_stops_in_reverse() {
        let (sup, log) = supervisor(&[("logs", true, false), ("eyes", true, false)]);
        sup.start_all().await.unwrap();
        assert!(
            sup.snapshot()
                .iter()
                .all(|r| r.status == ServiceStatus::Running)
        );
        sup.stop_all().await;
        assert_eq!(
            *log.lock().unwrap(),
            ["start logs", "start eyes", "stop eyes", "stop logs"]
        );
        assert!(
            sup.snapshot()
                .iter()
                .all(|r| r.status == ServiceStatus::Stopped)
        );
    }

    #[tokio::test]
    async fn a_critical_failure_aborts_and_unwinds() {
        let (sup, log) = supervisor(&[
            ("logs", true, false),
            ("audio", true, true),
            ("eyes", true, false),
        ]);
        let err = sup.start_all().await.unwrap_err();
        assert_eq!(
            err.to_string(),
            "the audio subsystem could not start: audio is broken"
        );
        assert_eq!(
            *log.lock().unwrap(),
            ["start logs", "start audio", "stop logs"]
        );
        assert_eq!(sup.snapshot()[1].status, ServiceStatus::Error);
    }

    #[tokio::test]
    async fn a_non_critical_failure_is_marked_and_skipped() {
        let (sup, log) = supervisor(&[("eyes", false, true), ("plans", true, false)]);
        sup.start_all().await.unwrap();
        let snapshot = sup.snapshot();
        assert_eq!(snapshot[0].status, ServiceStatus::Error);
        assert_eq!(snapshot[0].message, "eyes is broken");
        assert_eq!(snapshot[1].status, ServiceStatus::Running);
        sup.restart_all().await.unwrap();
        assert_eq!(
            *log.lock().unwrap(),
            [
                "start eyes",
                "start plans",
                "stop plans",
                "start eyes",
                "start plans"
            ]
        );
    }
}
