//! The caps on long-lived streams (`max_streams`, `max_streams_per_peer`),
//! against a real server on port 0 with small caps: a stream over a cap is
//! RESOURCE_EXHAUSTED naming the cap and its value, a slot is held for the
//! stream's whole life and freed when the client drops it, all four
//! streaming RPCs count, unary calls and health still answer while capped,
//! and GetStatus's counts go back to zero. Clients connect from other
//! loopback addresses (127.0.0.2, …) to be other peers.

mod common;

use std::{
    net::IpAddr,
    time::{Duration, Instant},
};

use cantina::v1::{
    EdgeStatus, GetStatusRequest, LogEntry, RunPlanRequest, TailLogsRequest, WatchEventsRequest,
    WatchPlansRequest, log_service_client::LogServiceClient,
    plan_service_client::PlanServiceClient, system_service_client::SystemServiceClient,
};
use common::TestServer;
use tonic::{
    Code, Status, Streaming,
    transport::{Channel, Endpoint},
};

/// A server whose caps are `max` streams server-wide and `per_peer` from
/// one address.
async fn server(max: usize, per_peer: usize) -> TestServer {
    let mut config = common::test_config();
    config.max_streams = max;
    config.max_streams_per_peer = per_peer;
    TestServer::with_config(config).await
}

/// A connection to `server` from the loopback address `127.0.0.<last>`.
async fn from(server: &TestServer, last: u8) -> Channel {
    Endpoint::from_shared(format!("http://{}", server.address))
        .unwrap()
        .local_address(Some(IpAddr::from([127, 0, 0, last])))
        .connect()
        .await
        .expect("connects")
}

/// A TailLogs follow on `channel`.
async fn follow(channel: &Channel) -> Result<Streaming<LogEntry>, Status> {
    LogServiceClient::new(channel.clone())
        .tail_logs(TailLogsRequest {
            follow: true,
            ..TailLogsRequest::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

/// The edge's part of GetStatus.
async fn edge(server: &TestServer) -> EdgeStatus {
    common::system(server)
        .await
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner()
        .edge
        .expect("GetStatus reports the edge")
}

/// Waits (10 s at most) until `open` streams are open; the last status.
async fn until_open(server: &TestServer, open: u32) -> EdgeStatus {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let edge = edge(server).await;
        if edge.open_streams == open {
            return edge;
        }
        assert!(
            Instant::now() < deadline,
            "{open} streams open wanted, {} still are",
            edge.open_streams
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Tries `open` until it succeeds, 10 s at most: a dropped stream's slot is
/// freed once the server sees the client's reset.
async fn until_admitted<T, F, Fut>(open: F) -> T
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<T, Status>>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match open().await {
            Ok(stream) => return stream,
            Err(status) if status.code() == Code::ResourceExhausted => {
                assert!(Instant::now() < deadline, "still refused: {status:?}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(status) => panic!("{status:?}"),
        }
    }
}

fn refused(result: Result<impl Sized, Status>) -> Status {
    match result {
        Ok(_) => panic!("a stream over the cap was admitted"),
        Err(status) => {
            assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
            status
        }
    }
}

#[tokio::test]
async fn a_peer_over_its_cap_is_refused_until_it_closes_a_stream() {
    let server = server(100, 3).await;
    let channel = from(&server, 1).await;
    let mut streams = Vec::new();
    for _ in 0..3 {
        streams.push(follow(&channel).await.unwrap());
    }
    let status = refused(follow(&channel).await);
    assert!(
        status.message().contains("max_streams_per_peer = 3")
            && status.message().contains("CANTINA_MAX_STREAMS_PER_PEER")
            && status.message().starts_with("TailLogs refused: 127.0.0.1"),
        "{status:?}"
    );
    // Another connection from the same address shares the cap…
    let same_peer = from(&server, 1).await;
    refused(follow(&same_peer).await);
    // …another address does not.
    let other = from(&server, 2).await;
    let _other_stream = follow(&other).await.unwrap();

    // Unary calls and health still answer.
    let reply = common::system(&server)
        .await
        .get_status(GetStatusRequest {})
        .await;
    assert!(reply.is_ok(), "{reply:?}");
    assert!(server.dispatch("status").await.is_ok());
    let health = tonic_health::pb::health_client::HealthClient::new(channel.clone())
        .check(tonic_health::pb::HealthCheckRequest {
            service: String::new(),
        })
        .await;
    assert!(health.is_ok(), "{health:?}");

    let edge = until_open(&server, 4).await;
    assert_eq!(
        (
            edge.max_streams,
            edge.max_streams_per_peer,
            edge.stream_peers
        ),
        (100, 3, 2)
    );
    assert_eq!(edge.streams_refused, 2);

    // Dropping one frees its slot.
    streams.pop();
    streams.push(until_admitted(|| follow(&channel)).await);
    refused(follow(&channel).await);

    drop((streams, _other_stream));
    let edge = until_open(&server, 0).await;
    assert_eq!(edge.stream_peers, 0);
}

#[tokio::test]
async fn the_server_wide_cap_counts_every_peer() {
    let server = server(2, 10).await;
    let one = from(&server, 1).await;
    let two = from(&server, 2).await;
    let three = from(&server, 3).await;
    let first = follow(&one).await.unwrap();
    let _second = follow(&two).await.unwrap();
    let status = refused(follow(&three).await);
    assert!(
        status.message().contains("(max_streams = 2)")
            && status.message().contains("CANTINA_MAX_STREAMS"),
        "{status:?}"
    );
    drop(first);
    let _third = until_admitted(|| follow(&three)).await;
    refused(follow(&one).await);
    assert_eq!(edge(&server).await.streams_refused, 2);
}

/// A plan that runs long enough to be a stream held open.
const LONG_PLAN: &str =
    r#"{"name": "long", "steps": [{"id": "wait", "delay": {"duration": "60s"}}]}"#;

#[tokio::test]
async fn each_streaming_rpc_counts_and_a_refused_run_starts_nothing() {
    let server = server(100, 4).await;
    let channel = from(&server, 1).await;
    let mut system = SystemServiceClient::new(channel.clone());
    let mut plans = PlanServiceClient::new(channel.clone());
    let logs = follow(&channel).await.unwrap();
    let events = system
        .watch_events(WatchEventsRequest::default())
        .await
        .unwrap();
    let watched = plans
        .watch_plans(WatchPlansRequest::default())
        .await
        .unwrap();
    let run = plans
        .run_plan(RunPlanRequest {
            document: LONG_PLAN.into(),
            ..RunPlanRequest::default()
        })
        .await
        .unwrap();
    assert_eq!(until_open(&server, 4).await.open_streams, 4);

    // Every one of the four is refused over the cap, naming itself.
    let refusals = [
        refused(follow(&channel).await),
        refused(system.watch_events(WatchEventsRequest::default()).await),
        refused(plans.watch_plans(WatchPlansRequest::default()).await),
        refused(
            plans
                .run_plan(RunPlanRequest {
                    document: LONG_PLAN.replace("long", "refused"),
                    ..RunPlanRequest::default()
                })
                .await,
        ),
    ];
    for (status, rpc) in refusals
        .iter()
        .zip(["TailLogs", "WatchEvents", "WatchPlans", "RunPlan"])
    {
        assert!(status.message().starts_with(rpc), "{status:?}");
    }
    let status = common::system(&server)
        .await
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = status.plans.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["long"], "the refused run started nothing");
    assert_eq!(status.edge.unwrap().streams_refused, 4);

    drop((logs, events, watched, run));
    until_open(&server, 0).await;
}

/// The issue's client: thousands of follows opened and closed on a handful
/// of connections leave nothing open behind them.
#[tokio::test]
async fn five_thousand_streams_opened_and_closed_leave_none_open() {
    const STREAMS: usize = 5_000;
    const BATCH: usize = 50;
    let server = server(256, BATCH).await;
    let mut channels = Vec::new();
    for _ in 0..4 {
        channels.push(from(&server, 1).await);
    }
    let started = Instant::now();
    for batch in 0..STREAMS / BATCH {
        let mut opening = tokio::task::JoinSet::new();
        for n in 0..BATCH {
            let channel = channels[(batch + n) % channels.len()].clone();
            opening.spawn(async move { follow(&channel).await });
        }
        let opened = opening.join_all().await;
        for stream in &opened {
            assert!(stream.is_ok(), "batch {batch}: {stream:?}");
        }
        drop(opened);
        until_open(&server, 0).await;
    }
    let edge = edge(&server).await;
    assert_eq!((edge.open_streams, edge.stream_peers), (0, 0));
    assert_eq!(edge.streams_refused, 0);
    eprintln!(
        "{STREAMS} streams opened and closed in {:?}",
        started.elapsed()
    );
}
