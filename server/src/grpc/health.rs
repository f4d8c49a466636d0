//! `grpc.health.v1.Health`, driven by the lifecycle: `""` is the whole
//! server (SERVING until shutdown begins), `cantina.<name>` each subsystem
//! (SERVING while RUNNING, NOT_SERVING otherwise, and NOT_SERVING from the
//! start for the ones that exist only later, so probes get an answer rather
//! than NOT_FOUND).

use std::sync::Arc;

use tonic_health::{
    ServingStatus,
    pb::health_server::{Health as HealthService, HealthServer},
    server::HealthReporter,
};

use crate::{
    lifecycle::{BoxFuture, ServiceStatus, StatusChange, StatusObserver},
    shutdown::Shutdown,
};

/// The health service's name for a subsystem.
pub fn service_name(subsystem: &str) -> String {
    format!("cantina.{subsystem}")
}

/// Moves the health service with the subsystems' status changes.
#[derive(Clone)]
pub struct Health {
    reporter: HealthReporter,
}

impl Health {
    /// The reporter and the service it feeds: the server SERVING, each
    /// subsystem of the contract NOT_SERVING until it runs.
    pub async fn new() -> (Self, HealthServer<impl HealthService>) {
        let (reporter, service) = tonic_health::server::health_reporter();
        reporter
            .set_service_status(cantina::health::SERVER, ServingStatus::Serving)
            .await;
        for name in [
            cantina::health::AUDIO,
            cantina::health::EYES,
            cantina::health::LOGS,
            cantina::health::PLANS,
            cantina::health::SPEECH,
            cantina::health::SERVOS,
        ] {
            reporter
                .set_service_status(name, ServingStatus::NotServing)
                .await;
        }
        (Self { reporter }, service)
    }

    /// The server turns NOT_SERVING the moment shutdown begins (not after
    /// the grace period), so watchers hear it at once.
    pub fn not_serving_from(&self, shutdown: &Shutdown) {
        let reporter = self.reporter.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.wait().await;
            reporter
                .set_service_status(cantina::health::SERVER, ServingStatus::NotServing)
                .await;
        });
    }

    /// As a lifecycle observer.
    pub fn observer(&self) -> Arc<dyn StatusObserver> {
        Arc::new(self.clone())
    }
}

impl StatusObserver for Health {
    fn changed<'a>(&'a self, change: &'a StatusChange) -> BoxFuture<'a, ()> {
        let serving = if change.status == ServiceStatus::Running {
            ServingStatus::Serving
        } else {
            ServingStatus::NotServing
        };
        Box::pin(async move {
            self.reporter
                .set_service_status(&service_name(change.subsystem), serving)
                .await;
        })
    }
}

#[cfg(test)]
mod tests {
    use tonic_health::pb::{
        HealthCheckRequest, health_check_response::ServingStatus as S, health_server::Health as _,
    };

    use super::*;
    use crate::lifecycle::{Supervisor, testing::Flaky};

    #[tokio::test]
    async fn status_changes_move_health() {
        let (health, _) = Health::new().await;
        let service =
            tonic_health::server::HealthService::from_health_reporter(health.reporter.clone());
        let check = |name: &'static str| {
            let service = &service;
            async move {
                let request = tonic::Request::new(HealthCheckRequest {
                    service: name.into(),
                });
                service.check(request).await.unwrap().into_inner().status()
            }
        };
        assert_eq!(check(cantina::health::SERVER).await, S::Serving);
        assert_eq!(check("cantina.eyes").await, S::NotServing, "before start");
        let flaky = Arc::new(Flaky::default());
        let sup = Supervisor::new(vec![flaky.clone()], vec![health.observer()]);
        sup.start_all().await.unwrap();
        assert_eq!(check("cantina.eyes").await, S::Serving);
        let handle = flaky.handle();
        handle
            .set(ServiceStatus::Degraded, "serial port gone")
            .await;
        assert_eq!(check("cantina.eyes").await, S::NotServing, "while degraded");
        handle.set(ServiceStatus::Running, "reconnected").await;
        assert_eq!(check("cantina.eyes").await, S::Serving);
        sup.stop_all().await;
        assert_eq!(check("cantina.eyes").await, S::NotServing, "stopped");
    }
}
