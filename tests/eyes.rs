//! The eyes end to end: a real server driving the simulated board on a real
//! pseudo-terminal through the `serialport` code path, the bytes on the
//! wire, refused and unanswered commands, a board pulled out and plugged
//! back in while the server runs, and the eyes following a conversation
//! published with PublishEvent.

mod common;

use std::{
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use cantina::v1::{
    GetStatusRequest, PublishEventRequest, WatchEventsRequest,
    system_service_client::SystemServiceClient,
};
use cantina_server::{
    bus::TopicSet,
    config::{Config, EyesPort},
    eyes::sim::{SimBoard, SimEvent, SimOptions},
};
use common::{TestServer, bin, cantina, test_config};
use serde_json::json;
use tonic::Code;
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

/// A board that boots quickly, in a folder of its own.
fn board() -> (SimBoard, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut options = SimOptions::new(dir.path().join("eyes"));
    options.boot_delay = Duration::from_millis(50);
    (SimBoard::start(options).expect("a simulated board"), dir)
}

/// A server whose eyes are on `link`, without heartbeats so that the
/// board receives only what the tests cause.
fn config(link: PathBuf) -> Config {
    let mut config = test_config();
    config.eyes_port = EyesPort::Path(link);
    config.eyes.heartbeat = Duration::ZERO;
    config.eyes.answer_timeout = Duration::from_millis(300);
    config.eyes.retry_max = Duration::from_millis(500);
    config
}

/// The command bytes (neither CR nor LF) the board's firmware got, waiting
/// up to 5 s for `want` of them.
fn commands(events: &mpsc::Receiver<SimEvent>, want: usize) -> String {
    let mut got = String::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < want {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(SimEvent::Command { byte, .. }) => got.push(byte as char),
            Ok(_) => {}
            Err(_) => panic!("the board got only {got:?}, expected {want} commands"),
        }
    }
    got
}

/// Every raw byte the board read, until `n` newlines arrived.
fn raw_lines(events: &mpsc::Receiver<SimEvent>, n: usize) -> Vec<u8> {
    let mut raw = Vec::new();
    while raw.iter().filter(|b| **b == b'\n').count() < n {
        match events.recv_timeout(Duration::from_secs(5)) {
            Ok(SimEvent::Received { bytes, .. }) => raw.extend(bytes),
            Ok(_) => {}
            Err(_) => panic!("the board read only {raw:?}"),
        }
    }
    raw
}

/// Waits for a sim event matching `want`.
fn wait_event(events: &mpsc::Receiver<SimEvent>, want: impl Fn(&SimEvent) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(event) if want(&event) => return,
            Ok(_) => {}
            Err(_) => panic!("the awaited board event never came"),
        }
    }
}

async fn dispatch(server: &TestServer, line: &str) -> Result<String, tonic::Status> {
    server.dispatch(line).await.map(|r| r.message)
}

async fn eyes_health(server: &TestServer) -> ServingStatus {
    let mut health = HealthClient::new(server.channel().await);
    let status = health
        .check(HealthCheckRequest {
            service: "cantina.eyes".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    ServingStatus::try_from(status).unwrap()
}

async fn eyes_status(
    server: &TestServer,
) -> (cantina::v1::EyesStatus, cantina::v1::SubsystemStatus) {
    let status = SystemServiceClient::new(server.channel().await)
        .get_status(GetStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let subsystem = status
        .subsystems
        .iter()
        .find(|s| s.name == "eyes")
        .unwrap()
        .clone();
    (status.eyes.unwrap(), subsystem)
}

/// Polls `check` every 20 ms for up to `within`.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < within, "not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn every_command_reaches_the_board_as_its_bytes() {
    let (board, _dir) = board();
    let events = board.events();
    let server = TestServer::with_config(config(board.link().to_path_buf())).await;
    // Once the board is ready: the sync probe (answered `-`), the brightness (0.8 → 7) and the
    // startup glyph, then the IDLE mode's pattern.
    assert_eq!(commands(&events, 4), "?7II");
    assert_eq!(eyes_health(&server).await, ServingStatus::Serving);

    assert_eq!(
        dispatch(&server, "eye pattern happy").await.unwrap(),
        "eyes show happy"
    );
    assert_eq!(raw_lines(&events, 1), b"H\n", "one character and a newline");
    assert_eq!(commands(&events, 1), "H");
    assert_eq!(board.state().glyph, 'H');

    let patterns = [
        ("idle", 'I'),
        ("startup", 'I'),
        ("engaged", 'E'),
        ("listening", 'L'),
        ("thinking", 'T'),
        ("speaking", 'S'),
        ("sad", 'D'),
        ("angry", 'A'),
        ("surprised", 'H'),
        ("error", 'A'),
        ("custom", 'I'),
    ];
    for (name, glyph) in patterns {
        dispatch(&server, &format!("eye pattern {name}"))
            .await
            .unwrap();
        assert_eq!(commands(&events, 1), glyph.to_string(), "{name}");
        assert_eq!(board.state().glyph, glyph, "{name}");
    }
    for (value, digit) in [("0", 0), ("0.5", 4), ("1.0", 9), ("0.8", 7)] {
        dispatch(&server, &format!("eye brightness {value}"))
            .await
            .unwrap();
        assert_eq!(commands(&events, 1), digit.to_string(), "{value}");
        assert_eq!(board.state().intensity, digit);
    }
    let (eyes, _) = eyes_status(&server).await;
    assert_eq!(eyes.port, board.link().display().to_string());
    assert!(eyes.connected && !eyes.r#virtual);
    assert_eq!((eyes.pattern.as_str(), eyes.brightness), ("custom", 0.8));

    // Mode changes move the eyes too.
    dispatch(&server, "ambient").await.unwrap();
    assert_eq!(commands(&events, 1), "H");
    dispatch(&server, "engage").await.unwrap();
    assert_eq!(commands(&events, 1), "E");
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn a_refused_command_is_an_error_and_the_link_stays_up() {
    let (board, _dir) = board();
    let events = board.events();
    let server = TestServer::with_config(config(board.link().to_path_buf())).await;
    commands(&events, 4);
    board.set_rejected("D");
    let error = dispatch(&server, "eye pattern sad").await.unwrap_err();
    assert_eq!(error.code(), Code::FailedPrecondition, "{error:?}");
    assert!(
        error.message().contains("answered '-'"),
        "{}",
        error.message()
    );
    let (eyes, subsystem) = eyes_status(&server).await;
    assert_eq!(eyes.pattern, "idle", "a refused pattern is not shown");
    assert!(eyes.last_error.contains("answered '-'"));
    assert_eq!(subsystem.status, cantina::v1::ServiceStatus::Running as i32);
    dispatch(&server, "eye pattern happy").await.unwrap();
    assert_eq!(board.state().glyph, 'H');
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn a_silent_board_is_lost_then_reopened_with_its_state() {
    let (board, _dir) = board();
    let events = board.events();
    let server = TestServer::with_config(config(board.link().to_path_buf())).await;
    commands(&events, 4);
    dispatch(&server, "eye pattern thinking").await.unwrap();
    commands(&events, 1);
    board.set_muted(true);
    let error = dispatch(&server, "eye pattern happy").await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable, "{error:?}");
    assert!(
        error.message().contains("did not answer 'H'"),
        "{}",
        error.message()
    );
    board.set_muted(false);
    // The server reopens the port: the board resets, boots, and gets its
    // brightness and pattern again.
    wait_event(&events, |e| *e == SimEvent::Opened);
    assert_eq!(commands(&events, 3), "?7T");
    eventually(Duration::from_secs(5), || async {
        eyes_status(&server).await.0.connected
    })
    .await;
    assert_eq!(board.state().glyph, 'T');
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn a_pulled_board_is_reported_lost_and_recovers_with_its_pattern() {
    let (board, _dir) = board();
    let events = board.events();
    let server = TestServer::with_config(config(board.link().to_path_buf())).await;
    commands(&events, 4);
    dispatch(&server, "eye pattern happy").await.unwrap();
    dispatch(&server, "eye brightness 0.3").await.unwrap();
    assert_eq!(commands(&events, 2), "H2");

    board.unplug().unwrap();
    let took = eventually(Duration::from_secs(2), || async {
        !eyes_status(&server).await.0.connected
    })
    .await;
    assert!(took < Duration::from_secs(2));
    let (eyes, subsystem) = eyes_status(&server).await;
    assert_eq!(
        subsystem.status,
        cantina::v1::ServiceStatus::Degraded as i32
    );
    assert!(subsystem.message.contains("lost"), "{}", subsystem.message);
    assert!(!eyes.last_error.is_empty());
    assert_eq!(eyes_health(&server).await, ServingStatus::NotServing);
    let error = dispatch(&server, "eye pattern sad").await.unwrap_err();
    assert_eq!(error.code(), Code::Unavailable);
    assert!(
        error.message().contains("not connected"),
        "{}",
        error.message()
    );
    // The mode moves on meanwhile; the eyes will show it when back.
    dispatch(&server, "ambient").await.unwrap();

    board.plug().unwrap();
    wait_event(&events, |e| *e == SimEvent::Ready);
    assert_eq!(
        commands(&events, 3),
        "?2H",
        "synchronised, then brightness and pattern re-applied"
    );
    eventually(Duration::from_secs(5), || async {
        eyes_health(&server).await == ServingStatus::Serving
    })
    .await;
    let (eyes, subsystem) = eyes_status(&server).await;
    assert!(eyes.connected);
    assert_eq!((eyes.pattern.as_str(), eyes.brightness), ("happy", 0.3));
    assert_eq!(subsystem.status, cantina::v1::ServiceStatus::Running as i32);
    dispatch(&server, "eye pattern sad").await.unwrap();
    assert_eq!(board.state().glyph, 'D');

    // The loss and the recovery were announced, once each.
    let topics = TopicSet::parse(&["eyes.connection.*"]).unwrap();
    let announced: Vec<_> = server
        .server
        .droid()
        .bus
        .history(Some(topics), 100)
        .iter()
        .map(|e| (e.topic.as_str(), e.payload["port"].clone()))
        .collect();
    let port = serde_json::Value::from(board.link().display().to_string());
    assert_eq!(
        announced,
        [
            ("eyes.connection.lost", port.clone()),
            ("eyes.connection.recovered", port)
        ]
    );
    server.server.stop().await.unwrap();
}

/// The simulator program, its event lines and its control input.
struct SimProcess {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl SimProcess {
    fn start(link: &std::path::Path) -> Self {
        let mut child = Command::new(bin("cantina-eyes-sim"))
            .args(["--link", link.to_str().unwrap(), "--boot-ms", "50"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start cantina-eyes-sim");
        let stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let sim = Self {
            child,
            stdin,
            lines,
        };
        sim.expect(|l| l.starts_with("ready "));
        sim
    }

    /// Waits up to 5 s for a line satisfying `want`; returns it.
    fn expect(&self, want: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if want(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!("the simulator never printed the awaited line"),
            }
        }
    }

    fn control(&mut self, command: &str) {
        writeln!(self.stdin, "{command}").unwrap();
        self.expect(|l| l == format!("ok {command}"));
    }
}

impl Drop for SimProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn cli_status(address: &str) -> String {
    let out = cantina(address).arg("status").output().await.unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// The "done when": the CLI and the simulator program, a board
/// pulled and plugged back without restarting the server.
#[tokio::test]
async fn the_cli_drives_the_simulator_program_through_unplug_and_replug() {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("eyes");
    let mut sim = SimProcess::start(&link);
    let server = TestServer::with_config(config(link)).await;
    sim.expect(|l| l == "rx ? -");
    sim.expect(|l| l == "rx I +");

    let out = cantina(&server.address)
        .args(["eye", "pattern", "happy"])
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "eyes show happy"
    );
    sim.expect(|l| l == "rx H +");

    sim.control("unplug");
    let took = eventually(Duration::from_secs(2), || async {
        cli_status(&server.address).await.contains("LOST")
    })
    .await;
    assert!(took < Duration::from_secs(2));
    let status = cli_status(&server.address).await;
    assert!(status.contains("DEGRADED"), "{status}");

    sim.control("plug");
    sim.expect(|l| l == "rx H +");
    eventually(Duration::from_secs(5), || async {
        let status = cli_status(&server.address).await;
        status.contains("connected:   yes") && status.contains("pattern:     happy")
    })
    .await;
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn a_quiet_link_is_checked_so_a_hung_board_is_noticed_without_commands() {
    let (board, _dir) = board();
    let events = board.events();
    let mut config = config(board.link().to_path_buf());
    config.eyes.heartbeat = Duration::from_millis(100);
    let server = TestServer::with_config(config).await;
    commands(&events, 4);
    // Nothing to do: the heartbeat re-sends the brightness.
    assert_eq!(commands(&events, 2), "77");
    board.set_muted(true);
    let took = eventually(Duration::from_secs(2), || async {
        !eyes_status(&server).await.0.connected
    })
    .await;
    assert!(took < Duration::from_secs(2), "{took:?}");
    let (eyes, _) = eyes_status(&server).await;
    assert!(
        eyes.last_error.contains("no answer to '7'"),
        "{}",
        eyes.last_error
    );
    server.server.stop().await.unwrap();
}

/// A board slower to boot than the boot timeout: its late ready line must
/// not be taken for an answer (which would shift every answer after it).
#[tokio::test]
async fn a_board_slower_than_the_boot_timeout_is_synchronised_not_misread() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = SimOptions::new(dir.path().join("eyes"));
    options.boot_delay = Duration::from_millis(450);
    let board = SimBoard::start(options).unwrap();
    let events = board.events();
    let mut config = config(board.link().to_path_buf());
    config.eyes.boot_timeout = Duration::from_millis(300);
    let server = TestServer::with_config(config).await;
    // The first probe falls into the boot and is lost; the second is answered.
    wait_event(&events, |e| *e == SimEvent::Ready);
    assert_eq!(commands(&events, 4), "?7II");
    dispatch(&server, "eye pattern happy").await.unwrap();
    assert_eq!(commands(&events, 1), "H");
    assert_eq!(board.state().glyph, 'H');
    let lost = TopicSet::parse(&["eyes.connection.*"]).unwrap();
    assert!(
        server.server.droid().bus.history(Some(lost), 10).is_empty(),
        "the link never flapped"
    );
    server.server.stop().await.unwrap();
}

/// Publishes a client's event with PublishEvent.
async fn say(server: &TestServer, topic: &str, payload: serde_json::Value, correlation_id: &str) {
    SystemServiceClient::new(server.client().await.channel)
        .publish_event(PublishEventRequest {
            topic: topic.into(),
            payload: Some(cantina::json::struct_from_json(payload)),
            correlation_id: correlation_id.into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{topic}: {e:?}"));
}

/// Waits until the eyes' conversation follower has been handed `delivered`
/// events and decided on each (it decides on an event in the same step as
/// it takes it from its queue, so an empty queue means decided).
async fn conversation_settled(server: &TestServer, delivered: u64) {
    eventually(Duration::from_secs(5), || async {
        let metrics = server.server.droid().bus.metrics();
        let follower = metrics["handlers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["name"] == "eyes: conversation")
            .expect("the eyes follow the conversation")
            .clone();
        follower["delivered"].as_u64() >= Some(delivered) && follower["queue_depth"] == 0
    })
    .await;
}

// Two workers: the test blocks one waiting for the board's bytes while the
// server, which acts on published events after PublishEvent answers, runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_interactive_mode_the_eyes_follow_the_conversation() {
    let (board, _dir) = board();
    let events = board.events();
    let server = TestServer::with_config(config(board.link().to_path_buf())).await;
    assert_eq!(commands(&events, 4), "?7II");
    dispatch(&server, "engage").await.unwrap();
    assert_eq!(commands(&events, 1), "E");
    let mut changes = SystemServiceClient::new(server.client().await.channel)
        .watch_events(WatchEventsRequest {
            topics: vec!["eyes.pattern.changed".into()],
        })
        .await
        .unwrap()
        .into_inner();

    say(&server, "voice.listening.started", json!({}), "talk-1").await;
    assert_eq!(commands(&events, 1), "L");
    // The change carries the conversation's correlation id.
    let change = common::next_in(&mut changes).await;
    assert_eq!(change.correlation_id, "talk-1");
    let pattern =
        cantina::json::struct_to_json(change.payload.as_ref().unwrap())["pattern"].clone();
    assert_eq!(pattern, "listening");
    say(&server, "voice.listening.stopped", json!({}), "").await;
    assert_eq!(commands(&events, 1), "E", "back to INTERACTIVE's pattern");
    say(&server, "voice.thinking.started", json!({}), "").await;
    assert_eq!(commands(&events, 1), "T");
    say(&server, "voice.thinking.stopped", json!({}), "").await;
    assert_eq!(commands(&events, 1), "E");

    // Listening that ends after thinking began leaves thinking on show.
    say(&server, "voice.listening.started", json!({}), "").await;
    assert_eq!(commands(&events, 1), "L");
    say(&server, "voice.thinking.started", json!({}), "").await;
    assert_eq!(commands(&events, 1), "T");
    say(&server, "voice.listening.stopped", json!({}), "").await;
    conversation_settled(&server, 7).await;
    assert_eq!(board.state().glyph, 'T');

    // A sentiment shows for 2 s, then what was before it.
    say(&server, "voice.sentiment", json!({"sentiment": "sad"}), "").await;
    assert_eq!(commands(&events, 1), "D");
    let shown = Instant::now();
    assert_eq!(
        commands(&events, 1),
        "T",
        "thinking again after the sentiment"
    );
    let held = shown.elapsed();
    assert!(
        held >= Duration::from_millis(1900) && held < Duration::from_secs(4),
        "{held:?}"
    );
    say(&server, "voice.thinking.stopped", json!({}), "").await;
    assert_eq!(commands(&events, 1), "E");
    // Surprised has no glyph of its own: happy's.
    say(
        &server,
        "voice.sentiment",
        json!({"sentiment": "surprised"}),
        "",
    )
    .await;
    assert_eq!(commands(&events, 1), "H");
    assert_eq!(commands(&events, 1), "E");
    server.server.stop().await.unwrap();
}

// Two workers: the test blocks one waiting for the board's bytes while the
// server, which acts on published events after PublishEvent answers, runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outside_interactive_mode_the_conversation_leaves_the_eyes_alone() {
    let (board, _dir) = board();
    let events = board.events();
    let server = TestServer::with_config(config(board.link().to_path_buf())).await;
    assert_eq!(commands(&events, 4), "?7II");
    let conversation = [
        ("voice.listening.started", json!({})),
        ("voice.sentiment", json!({"sentiment": "angry"})),
        ("voice.thinking.started", json!({})),
        ("voice.listening.stopped", json!({})),
    ];
    let mut delivered = 0;
    // IDLE, then AMBIENT: after the events, the next thing the board gets
    // is the marker pattern asked for afterwards, and nothing else.
    for (mode, mode_glyph, marker, marker_glyph) in [
        (None, 'I', "sad", "D"),
        (Some("ambient"), 'H', "engaged", "E"),
    ] {
        if let Some(mode) = mode {
            dispatch(&server, mode).await.unwrap();
            assert_eq!(commands(&events, 1), mode_glyph.to_string());
        }
        for (topic, payload) in &conversation {
            say(&server, topic, payload.clone(), "").await;
        }
        delivered += conversation.len() as u64;
        conversation_settled(&server, delivered).await;
        assert_eq!(board.state().glyph, mode_glyph);
        dispatch(&server, &format!("eye pattern {marker}"))
            .await
            .unwrap();
        assert_eq!(commands(&events, 1), marker_glyph, "{mode:?}");
    }
    server.server.stop().await.unwrap();
}
