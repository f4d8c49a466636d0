//! The bus in the lifecycle: the `bus` subsystem logs the bus's metrics
//! periodically and publishes them as `bus.metrics`, so a slow or failing
//! subscriber shows up in the logs without anyone asking; and the bus
//! publishes every subsystem's status change as `service.status.changed`.

use std::{sync::Mutex, time::Duration};

use serde_json::json;
use tokio::task::JoinHandle;
use tracing::info;

use super::{Bus, Topic};
use crate::lifecycle::{BoxFuture, StatusChange, StatusHandle, StatusObserver, Subsystem};

/// Publishes each status change as `service.status.changed`.
impl StatusObserver for Bus {
    fn changed<'a>(&'a self, change: &'a StatusChange) -> BoxFuture<'a, ()> {
        self.emit(
            Topic::ServiceStatusChanged,
            "supervisor",
            json!({
                "service": change.subsystem,
                "status": change.status.as_str(),
                "previous": change.previous.as_str(),
                "message": change.message,
                "critical": change.critical,
            }),
        );
        Box::pin(async {})
    }
}

/// Reports the bus's metrics every `interval` (never when zero).
pub struct BusMonitor {
    bus: Bus,
    interval: Duration,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl BusMonitor {
    /// A monitor of `bus`.
    pub fn new(bus: Bus, interval: Duration) -> Self {
        Self {
            bus,
            interval,
            task: Mutex::new(None),
        }
    }
}

impl Subsystem for BusMonitor {
    fn name(&self) -> &'static str {
        "bus"
    }

    fn start(&self, _status: StatusHandle) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            if self.interval.is_zero() {
                return Ok(());
            }
            let (bus, interval) = (self.bus.clone(), self.interval);
            let task = tokio::spawn(async move {
                let mut ticks = tokio::time::interval(interval);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    let m = bus.metrics();
                    info!(
                        published = %m["published"],
                        delivered = %m["delivered"],
                        dropped = %m["dropped"],
                        dead_letters = %m["dead_letters"],
                        subscribers = %m["subscribers"],
                        queue_depth = %m["queue_depth"],
                        "event bus metrics"
                    );
                    bus.emit(Topic::BusMetrics, "bus", m);
                }
            });
            if let Some(old) = self.task.lock().expect("monitor lock").replace(task) {
                old.abort();
            }
            Ok(())
        })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Some(task) = self.task.lock().expect("monitor lock").take() {
                task.abort();
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::lifecycle::Supervisor;

    #[tokio::test(start_paused = true)]
    async fn metrics_are_published_every_interval_until_stopped() {
        let bus = Bus::default();
        let monitor = Arc::new(BusMonitor::new(bus.clone(), Duration::from_secs(60)));
        let supervisor = Supervisor::new(vec![monitor], vec![Arc::new(bus.clone())]);
        supervisor.start_all().await.unwrap();
        let started = tokio::time::Instant::now();
        let first = bus
            .wait_for(Topic::BusMetrics, |_| true, Duration::from_secs(120))
            .await
            .unwrap();
        assert_eq!(started.elapsed(), Duration::from_secs(60));
        assert!(
            first.payload["published"].as_u64().unwrap() >= 2,
            "{}",
            first.payload
        );
        assert!(first.payload["handlers"].is_array());
        supervisor.stop_all().await;
        let none = bus
            .wait_for(Topic::BusMetrics, |_| true, Duration::from_secs(300))
            .await;
        assert!(none.is_err(), "no metrics after stop");
    }
}
