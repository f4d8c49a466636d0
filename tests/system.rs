//! `SystemService` end to end: GetStatus, SetMode, WatchEvents (filters,
//! correlation, the missed-events marker, shutdown), and the lifecycle moving
//! health and publishing status events.

mod common;

use std::time::Duration;

use cantina::v1::{
    DispatchRequest, GetStatusRequest, Mode, ServiceStatus, SetModeRequest, WatchEventsRequest,
};
use cantina_server::bus::Topic;
use common::{TestServer, next_in as next, payload, system, watch};
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

#[tokio::test]
async fn get_status_reports_the_whole_droid() {
    let server = TestServer::start().await;
    let status = system(&server)
        .await
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.version, cantina_server::VERSION);
    assert_eq!(status.mode(), Mode::Idle);
    assert_eq!(status.session_id, server.server.droid().info.session_id);
    assert!(status.uptime.is_some() && status.started_at.is_some());
    // Logging starts first; the droid runs on without it, not without the bus.
    let names: Vec<_> = status
        .subsystems
        .iter()
        .map(|s| (s.name.as_str(), s.status(), s.critical))
        .collect();
    assert_eq!(
        names,
        [
            ("logs", ServiceStatus::Running, false),
            ("bus", ServiceStatus::Running, true),
            ("audio", ServiceStatus::Running, false),
            ("eyes", ServiceStatus::Running, false),
            ("servos", ServiceStatus::Running, false),
            ("speech", ServiceStatus::Running, false),
            ("plans", ServiceStatus::Running, false)
        ]
    );
    let metrics = cantina::json::struct_to_json(status.bus.as_ref().unwrap());
    assert!(
        metrics["published"].as_u64().unwrap() >= 4,
        "boot events: {metrics}"
    );
    assert!(
        metrics["topics"]["system.started"].as_u64().unwrap() >= 1,
        "{metrics}"
    );
    let audio = status.audio.unwrap();
    assert_eq!(
        (
            audio.output.as_str(),
            audio.connected,
            audio.r#virtual,
            audio.state.as_str()
        ),
        ("virtual", true, true, "stopped")
    );
    assert_eq!(audio.volume, 70);
    let eyes = status.eyes.unwrap();
    assert_eq!(
        (eyes.port.as_str(), eyes.connected, eyes.r#virtual),
        ("virtual", true, true)
    );
    assert_eq!((eyes.pattern.as_str(), eyes.brightness), ("idle", 0.8));
    // No `[[servo]]` tables: the virtual board, and no servos.
    let servos = status.servos.unwrap();
    assert_eq!(
        (servos.port.as_str(), servos.connected, servos.r#virtual),
        ("virtual", true, true)
    );
    assert!(servos.servos.is_empty() && servos.board_errors.is_empty());
}

#[tokio::test]
async fn get_status_reports_each_servo() {
    let mut config = common::test_config();
    config.servos = vec![cantina_server::config::ServoSpec {
        name: "head".into(),
        channel: 2,
        min_us: 1000,
        max_us: 2000,
        home_us: 1250,
        max_speed: Some(0.5),
    }];
    let server = TestServer::with_config(config).await;
    server.dispatch("move head 0.75").await.unwrap();
    let status = system(&server)
        .await
        .get_status(GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let servos = status.servos.unwrap();
    assert!(servos.r#virtual && servos.connected);
    assert_eq!(
        servos.channels, 24,
        "the virtual Maestro is a Mini Maestro 24"
    );
    let head = &servos.servos[0];
    assert_eq!(
        (
            head.name.as_str(),
            head.channel,
            head.min_us,
            head.max_us,
            head.home_us,
            head.max_speed
        ),
        ("head", 2, 1000, 2000, 1250, Some(0.5))
    );
    // The virtual board had it off (where it was is unknown), so it went
    // straight to its goal.
    assert_eq!((head.target_us, head.position), (Some(1750.0), Some(0.75)));
    assert!(head.problem.is_empty());
}

#[tokio::test]
async fn set_mode_changes_the_mode_or_says_it_already_is() {
    let server = TestServer::start().await;
    let mut client = system(&server).await;
    let changed = client
        .set_mode(SetModeRequest {
            mode: Mode::Interactive as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (changed.mode(), changed.previous_mode(), changed.changed),
        (Mode::Interactive, Mode::Idle, true)
    );
    assert_eq!(changed.message, "mode IDLE → INTERACTIVE");
    let again = client
        .set_mode(SetModeRequest {
            mode: Mode::Interactive as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.changed);
    assert_eq!(again.message, "already in INTERACTIVE mode");
    let startup = client
        .set_mode(SetModeRequest {
            mode: Mode::Startup as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(startup.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn watch_events_streams_mode_transitions_with_the_commands_correlation_id() {
    let server = TestServer::start().await;
    let mut events = watch(&server, &["system.mode.*"]).await;
    server
        .client()
        .await
        .command
        .dispatch(DispatchRequest {
            line: "engage".into(),
            correlation_id: "show-7".into(),
        })
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let event = next(&mut events).await;
        assert_eq!(event.correlation_id, "show-7", "{event:?}");
        assert_eq!(event.source, "modes");
        assert_eq!(payload(&event)["to"], "INTERACTIVE");
        seen.push(event.topic);
    }
    assert_eq!(
        seen,
        [
            "system.mode.transition.started",
            "system.mode.changed",
            "system.mode.transition.completed"
        ]
    );
}

#[tokio::test]
async fn watch_events_only_sends_matching_topics() {
    let server = TestServer::start().await;
    let mut events = watch(&server, &["command.*"]).await;
    let mut client = server.client().await.command;
    for line in ["engage", "engag"] {
        let _ = client
            .dispatch(DispatchRequest {
                line: line.into(),
                correlation_id: String::new(),
            })
            .await;
    }
    let ok = next(&mut events).await;
    assert_eq!(
        (ok.topic.as_str(), payload(&ok)["command"].as_str()),
        ("command.executed", Some("engage"))
    );
    let failed = next(&mut events).await;
    assert_eq!(failed.topic, "command.failed");
    assert!(
        payload(&failed)["error"]
            .as_str()
            .unwrap()
            .contains("did you mean 'engage'?")
    );
}

#[tokio::test]
async fn a_glob_matching_no_topic_is_refused_with_a_suggestion() {
    let server = TestServer::start().await;
    let status = system(&server)
        .await
        .watch_events(WatchEventsRequest {
            topics: vec!["sytem.*".into()],
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("did you mean 'system.*'?"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn a_client_that_falls_behind_gets_a_marker_with_what_it_missed() {
    let mut config = common::test_config();
    config.bus.queue_capacity = 8;
    let server = TestServer::with_config(config).await;
    let mut slow = watch(&server, &["music.playback.progress"]).await;
    // The client reads nothing while the droid publishes far more than its
    // inbox and the connection's buffers hold; publishing must not wait.
    let bus = &server.server.droid().bus;
    let total = 20_000u64;
    let padding = "x".repeat(200);
    for i in 0..total {
        bus.emit(
            Topic::MusicPlaybackProgress,
            "test",
            serde_json::json!({ "i": i, "pad": padding }),
        );
    }
    let (mut received, mut missed, mut last_i, mut markers) = (0u64, 0u64, None::<u64>, 0);
    while received + missed < total {
        let event = next(&mut slow).await;
        if event.missed > 0 {
            markers += 1;
            missed += event.missed;
            continue;
        }
        let i = payload(&event)["i"].as_u64().unwrap();
        // In order, and every gap was announced: each event is exactly the
        // one after all that was received or reported missed before it.
        assert_eq!(i, received + missed, "after {last_i:?}");
        last_i = Some(i);
        received += 1;
    }
    assert!(
        markers >= 1 && missed > 0,
        "received {received}, missed {missed}"
    );
    assert_eq!(received + missed, total);
}

#[tokio::test]
async fn shutdown_ends_event_streams_cleanly_without_waiting_out_the_grace() {
    let mut config = common::test_config();
    config.shutdown_grace = Duration::from_secs(60);
    let server = TestServer::with_config(config).await;
    let mut events = watch(&server, &[]).await;
    let stopped = tokio::spawn(server.server.stop());
    loop {
        match tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("the stream ends")
        {
            Some(Ok(_)) => continue,
            Some(Err(status)) => panic!("the stream ended with an error: {status:?}"),
            None => break,
        }
    }
    tokio::time::timeout(Duration::from_secs(5), stopped)
        .await
        .expect("shutdown did not wait for the grace period")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn status_changes_are_events_and_move_health() {
    let server = TestServer::start().await;
    let mut health = HealthClient::new(server.channel().await);
    let mut bus_health = health
        .watch(HealthCheckRequest {
            service: "cantina.bus".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let first = bus_health.next().await.unwrap().unwrap();
    assert_eq!(first.status(), ServingStatus::Serving);

    let mut events = watch(&server, &["service.status.changed"]).await;
    let reply = server
        .client()
        .await
        .command
        .dispatch(DispatchRequest {
            line: "reset".into(),
            correlation_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(
        reply
            .message
            .contains("restarted logs, bus, audio, eyes, servos, speech, plans"),
        "{}",
        reply.message
    );
    let mut statuses = Vec::new();
    while statuses.len() < 28 {
        let event = next(&mut events).await;
        let p = payload(&event);
        statuses.push(format!(
            "{} {}",
            p["service"].as_str().unwrap(),
            p["status"].as_str().unwrap()
        ));
    }
    // Stopped in reverse order, started in order.
    assert_eq!(
        statuses,
        [
            "plans STOPPING",
            "plans STOPPED",
            "speech STOPPING",
            "speech STOPPED",
            "servos STOPPING",
            "servos STOPPED",
            "eyes STOPPING",
            "eyes STOPPED",
            "audio STOPPING",
            "audio STOPPED",
            "bus STOPPING",
            "bus STOPPED",
            "logs STOPPING",
            "logs STOPPED",
            "logs STARTING",
            "logs RUNNING",
            "bus STARTING",
            "bus RUNNING",
            "audio STARTING",
            "audio RUNNING",
            "eyes STARTING",
            "eyes RUNNING",
            "servos STARTING",
            "servos RUNNING",
            "speech STARTING",
            "speech RUNNING",
            "plans STARTING",
            "plans RUNNING",
        ]
    );

    // Health follows (the watch coalesces, so only the state after the reset
    // is certain here; the lifecycle's own tests check each transition).
    let after = health
        .check(HealthCheckRequest {
            service: "cantina.bus".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.status(), ServingStatus::Serving);
    drop(bus_health);
}
