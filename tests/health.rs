//! `grpc.health.v1.Health`: the whole server under `""`, each subsystem under
//! its own name (NOT_SERVING until it exists and runs).

mod common;

use common::TestServer;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

fn request(service: &str) -> HealthCheckRequest {
    HealthCheckRequest {
        service: service.into(),
    }
}

#[tokio::test]
async fn the_server_is_serving_and_needs_no_token_to_say_so() {
    let mut config = common::test_config();
    config.token = Some("s3cret".into());
    let server = TestServer::with_config(config).await;
    let mut health = HealthClient::new(server.channel().await);
    let response = health
        .check(request(cantina::health::SERVER))
        .await
        .unwrap();
    assert_eq!(response.into_inner().status(), ServingStatus::Serving);
}

#[tokio::test]
async fn each_subsystem_has_its_health() {
    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel().await);
    // The logs, the (virtual) audio output, the (virtual) eyes, the
    // (virtual) servos and the plans exist and run.
    for name in [
        cantina::health::LOGS,
        cantina::health::AUDIO,
        cantina::health::EYES,
        cantina::health::SERVOS,
        cantina::health::PLANS,
    ] {
        let response = health.check(request(name)).await.unwrap().into_inner();
        assert_eq!(response.status(), ServingStatus::Serving, "{name}");
    }
    let unknown = health.check(request("cantina.jetpack")).await.unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
}

#[tokio::test]
async fn watchers_see_not_serving_when_shutdown_begins() {
    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel().await);
    let mut updates = health.watch(request("")).await.unwrap().into_inner();
    let first = updates.next().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    server.server.shutdown().trigger("test");
    let next = updates.next().await.unwrap().unwrap();
    assert_eq!(next.status(), ServingStatus::NotServing);
    // The watch stream is open, so shutdown waits out the grace period, then
    // closes it and stops.
    tokio::time::timeout(std::time::Duration::from_secs(5), server.server.wait())
        .await
        .expect("shutdown is bounded by the grace period")
        .unwrap();
}
