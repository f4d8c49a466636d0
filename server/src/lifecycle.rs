//! Subsystem lifecycle: each part of the droid (audio, eyes, logs, plans …)
//! is a [`Subsystem`] that the [`Supervisor`] starts in a declared order, stops
//! in reverse, and restarts on `reset`. A critical subsystem that cannot start
//! aborts start-up with its reason; a non-critical one is marked ERROR and the
//! droid carries on without it.
//!
//! Every status change (STARTING, RUNNING, DEGRADED, ERROR, STOPPING,
//! STOPPED, with a message) is told to the [`StatusObserver`]s the supervisor
//! was given, in order: the bus publishes it as `service.status.changed`, the
//! gRPC edge moves the health of `cantina.<name>` with it. A running subsystem reports its own
//! changes (a lost serial port) through the [`StatusHandle`] it is given at
//! start.

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
    /// Short name, e.g. `audio` (its gRPC health service is `cantina.<name>`).
    fn name(&self) -> &'static str;

    /// Whether the droid cannot run without it.
    fn critical(&self) -> bool {
        true
    }

    /// Starts the subsystem; the error says what is wrong and what to do.
    /// `status` reports later changes (DEGRADED when hardware goes away …).
    fn start(&self, status: StatusHandle) -> BoxFuture<'_, Result<(), String>>;

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

/// One subsystem's change of status.
#[derive(Clone, Debug)]
pub struct StatusChange {
    /// The subsystem's name.
    pub subsystem: &'static str,
    /// Where it stands now.
    pub status: ServiceStatus,
    /// Where it stood before.
    pub previous: ServiceStatus,
    /// Why, for people.
    pub message: String,
    /// Whether the droid cannot run without it.
    pub critical: bool,
}

/// Told of every status change, in order, before the change is reported
/// done: how the rest of the server (the bus, the gRPC health service)
/// follows the subsystems without the lifecycle knowing them.
pub trait StatusObserver: Send + Sync + 'static {
    /// A subsystem's status changed.
    fn changed<'a>(&'a self, change: &'a StatusChange) -> BoxFuture<'a, ()>;
}

/// Where status changes go: the records and the observers.
struct Reporting {
    /// Each subsystem's state, in start order.
    records: Mutex<Vec<StatusRecord>>,
    /// Follow every change, in this order.
    observers: Vec<Arc<dyn StatusObserver>>,
}

impl Reporting {
    async fn report(&self, index: usize, status: ServiceStatus, message: String) {
        let (name, previous, critical) = {
            let mut records = self.records.lock().expect("status lock");
            let record = &mut records[index];
            let previous = record.status;
            record.status = status;
            record.message.clone_from(&message);
            record.since = SystemTime::now();
            record.running_since = match status {
                ServiceStatus::Running | ServiceStatus::Degraded => {
                    record.running_since.or(Some(Instant::now()))
                }
                _ => None,
            };
            (record.name, previous, record.critical)
        };
        let change = StatusChange {
            subsystem: name,
            status,
            previous,
            message,
            critical,
        };
        for observer in &self.observers {
            observer.changed(&change).await;
        }
    }
}

/// Lets a running subsystem report its own status changes.
#[derive(Clone)]
pub struct StatusHandle {
    reporting: Arc<Reporting>,
    index: usize,
}

impl StatusHandle {
    /// Reports `status` with a message for people.
    pub async fn set(&self, status: ServiceStatus, message: impl Into<String>) {
        self.reporting
            .report(self.index, status, message.into())
            .await;
    }

    /// Reports the status that `state` stands for now, then again whenever
    /// it changes to another, until the returned task is aborted or the
    /// state's sender is gone: for subsystems whose state lives in a
    /// `watch` (a lost board, a lost device).
    pub async fn follow<T: Send + Sync + 'static>(
        self,
        mut state: tokio::sync::watch::Receiver<T>,
        status_of: fn(&T) -> (ServiceStatus, String),
    ) -> tokio::task::JoinHandle<()> {
        let mut last = status_of(&state.borrow_and_update());
        self.set(last.0, last.1.clone()).await;
        tokio::spawn(async move {
            while state.changed().await.is_ok() {
                let now = status_of(&state.borrow_and_update());
                if now != last {
                    self.set(now.0, now.1.clone()).await;
                    last = now;
                }
            }
        })
    }

    /// The subsystem's current status.
    pub fn current(&self) -> ServiceStatus {
        self.reporting.records.lock().expect("status lock")[self.index].status
    }
}

/// Starts, stops and restarts the subsystems in their declared order.
pub struct Supervisor {
    /// The subsystems, in start order.
    subsystems: Vec<Arc<dyn Subsystem>>,
    /// Their reported state, and where changes go.
    reporting: Arc<Reporting>,
    /// Serialises start, stop and restart so a `reset` during shutdown (or two
    /// resets at once) cannot interleave.
    op: tokio::sync::Mutex<()>,
}

impl Supervisor {
    /// A supervisor of `subsystems`, in start order, telling `observers`
    /// every status change; nothing runs yet.
    pub fn new(
        subsystems: Vec<Arc<dyn Subsystem>>,
        observers: Vec<Arc<dyn StatusObserver>>,
    ) -> Self {
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
            reporting: Arc::new(Reporting {
                records: Mutex::new(records),
                observers,
            }),
            op: tokio::sync::Mutex::new(()),
        }
    }

    /// The state of every subsystem, in start order.
    pub fn snapshot(&self) -> Vec<StatusRecord> {
        self.reporting.records.lock().expect("status lock").clone()
    }

    /// The subsystems' names, in start order.
    pub fn names(&self) -> Vec<&'static str> {
        self.subsystems.iter().map(|s| s.name()).collect()
    }

    async fn report(&self, index: usize, status: ServiceStatus, message: impl Into<String>) {
        self.reporting.report(index, status, message.into()).await;
    }

    fn handle(&self, index: usize) -> StatusHandle {
        StatusHandle {
            reporting: self.reporting.clone(),
            index,
        }
    }

    /// Starts every subsystem in order. When a critical one fails, the ones
    /// already started are stopped again, in reverse, and the failure returned.
    pub async fn start_all(&self) -> Result<(), StartError> {
        let _op = self.op.lock().await;
        self.start_locked().await
    }

    async fn start_locked(&self) -> Result<(), StartError> {
        for (index, subsystem) in self.subsystems.iter().enumerate() {
            self.report(index, ServiceStatus::Starting, "starting")
                .await;
            match subsystem.start(self.handle(index)).await {
                Ok(()) => {
                    info!(subsystem = subsystem.name(), "started");
                    // A subsystem that came up degraded said so itself.
                    if self.handle(index).current() == ServiceStatus::Starting {
                        self.report(index, ServiceStatus::Running, "running").await;
                    }
                }
                Err(reason) if subsystem.critical() => {
                    error!(subsystem = subsystem.name(), %reason, "critical subsystem failed to start");
                    self.report(index, ServiceStatus::Error, reason.clone())
                        .await;
                    self.stop_range(index).await;
                    return Err(StartError {
                        name: subsystem.name(),
                        reason,
                    });
                }
                Err(reason) => {
                    warn!(subsystem = subsystem.name(), %reason, "subsystem failed to start; carrying on without it");
                    self.report(index, ServiceStatus::Error, reason).await;
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
            let status = self.handle(index).current();
            if matches!(status, ServiceStatus::Stopped | ServiceStatus::Error) {
                continue;
            }
            let subsystem = &self.subsystems[index];
            self.report(index, ServiceStatus::Stopping, "stopping")
                .await;
            subsystem.stop().await;
            info!(subsystem = subsystem.name(), "stopped");
            self.report(index, ServiceStatus::Stopped, "stopped").await;
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

/// Test support for code that watches the lifecycle.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Keeps the handle it is started with, so a test can report DEGRADED
    /// and back through it, as the eyes do when their board goes away and
    /// comes back. Its name is `eyes`.
    #[derive(Default)]
    pub(crate) struct Flaky(Mutex<Option<StatusHandle>>);

    impl Flaky {
        /// The handle it was last started with.
        pub(crate) fn handle(&self) -> StatusHandle {
            self.0.lock().unwrap().clone().expect("started")
        }
    }

    impl Subsystem for Flaky {
        fn name(&self) -> &'static str {
            "eyes"
        }
        fn start(&self, status: StatusHandle) -> BoxFuture<'_, Result<(), String>> {
            *self.0.lock().unwrap() = Some(status);
            Box::pin(async { Ok(()) })
        }
        fn stop(&self) -> BoxFuture<'_, ()> {
            Box::pin(async {})
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{testing::Flaky, *};
    use crate::bus::{Bus, Topic};

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
        fn start(&self, _: StatusHandle) -> BoxFuture<'_, Result<(), String>> {
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
        (Supervisor::new(subsystems, Vec::new()), log)
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

    /// Records what it is told.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<(&'static str, ServiceStatus)>>);

    impl StatusObserver for Recorder {
        fn changed<'a>(&'a self, change: &'a StatusChange) -> BoxFuture<'a, ()> {
            self.0
                .lock()
                .unwrap()
                .push((change.subsystem, change.status));
            Box::pin(async {})
        }
    }

    #[tokio::test]
    async fn status_changes_are_published_and_observed() {
        let recorder = Arc::new(Recorder::default());
        let bus = Bus::default();
        let flaky = Arc::new(Flaky::default());
        let sup = Supervisor::new(
            vec![flaky.clone()],
            vec![Arc::new(bus.clone()), recorder.clone()],
        );
        sup.start_all().await.unwrap();
        let handle = flaky.handle();
        handle
            .set(ServiceStatus::Degraded, "serial port gone")
            .await;
        let record = &sup.snapshot()[0];
        assert_eq!(
            (record.status, record.message.as_str()),
            (ServiceStatus::Degraded, "serial port gone")
        );
        assert!(
            record.running_since.is_some(),
            "a degraded subsystem still runs"
        );
        handle.set(ServiceStatus::Running, "reconnected").await;
        assert_eq!(
            *recorder.0.lock().unwrap(),
            [
                ("eyes", ServiceStatus::Starting),
                ("eyes", ServiceStatus::Running),
                ("eyes", ServiceStatus::Degraded),
                ("eyes", ServiceStatus::Running)
            ],
            "the observer is told every change, in order"
        );
        let statuses: Vec<_> = bus
            .history(Some(Topic::ServiceStatusChanged), 10)
            .iter()
            .map(|e| {
                (
                    e.payload["status"].as_str().unwrap().to_string(),
                    e.payload["previous"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let statuses: Vec<(&str, &str)> = statuses
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        assert_eq!(
            statuses,
            [
                ("STARTING", "STOPPED"),
                ("RUNNING", "STARTING"),
                ("DEGRADED", "RUNNING"),
                ("RUNNING", "DEGRADED")
            ]
        );
    }
}
