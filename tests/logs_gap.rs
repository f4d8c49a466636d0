//! A follower that stalls gets a gap marker while a healthy one sees every
//! entry. In a test binary of its own: log capture is per process, and other
//! tests' lines would make even the healthy follower fall behind its small
//! buffer.

mod common;

use cantina::v1::{LogEntry, TailLogsRequest, log_service_client::LogServiceClient};
use common::{TestServer, next_in as next};
use tonic::Streaming;

async fn tail(server: &TestServer, request: TailLogsRequest) -> Streaming<LogEntry> {
    LogServiceClient::new(server.client().await.channel)
        .tail_logs(request)
        .await
        .unwrap()
        .into_inner()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_follower_gets_a_gap_marker_while_a_healthy_one_sees_every_entry() {
    let mut config = common::test_config();
    config.logs.follower_buffer = 16;
    let server = TestServer::with_config(config).await;
    let mark = format!("gap-{}", std::process::id());
    let filter = TailLogsRequest {
        follow: true,
        contains: mark.clone(),
        ..Default::default()
    };
    let mut stalled = tail(&server, filter.clone()).await;
    let mut healthy = tail(&server, filter).await;
    // The producer never waits for the stalled one; the healthy one keeps up
    // because each line waits until it has arrived there (a signal, no sleep).
    // About 8 MB in all: far past what the HTTP/2 windows of the stalled
    // connection can buffer (a few MB), so the server must skip for it.
    let total = 4000;
    let mut seen = Vec::with_capacity(total);
    for i in 0..total {
        tracing::info!(target: "cantina_server::droid", "{i} {mark} {}", "x".repeat(2000));
        let entry = next(&mut healthy).await;
        assert_eq!(entry.skipped, 0, "the healthy follower must not lag");
        seen.push(entry.seq);
    }
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    let mut skipped = 0;
    let mut received = 0;
    while received + skipped < total as u64 {
        let entry = next(&mut stalled).await;
        if entry.skipped > 0 {
            skipped += entry.skipped;
            assert!(entry.message.contains("fell behind"), "{entry:?}");
        } else {
            received += 1;
        }
        if skipped > 0 && received > 0 {
            break;
        }
    }
    assert!(skipped > 0, "the stalled follower got a gap marker");
}
