//! The servos end to end: a real server driving the simulated Maestro on a
//! real pseudo-terminal through the `serialport` code path: the exact bytes
//! of each command, an eased move seen as the board gets it, clamping to
//! the range and the speed, a board that stops answering, a board pulled
//! out and plugged back in while the server runs, and virtual servos
//! without a board.

mod common;

use std::{
    path::PathBuf,
    sync::mpsc,
    time::{Duration, Instant},
};

use cantina_server::{
    bus::TopicSet,
    config::{Config, ServoPort, ServoSpec},
    lifecycle::ServiceStatus,
    servos::{
        Easing, MoveOutcome, ServoError, Servos,
        protocol::{self, Command},
        sim::{SimEvent, SimMaestro, SimOptions},
    },
};
use common::{TestServer, test_config};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};

fn board() -> (SimMaestro, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let options = SimOptions::new(dir.path().join("maestro"));
    (
        SimMaestro::start(options).expect("a simulated Maestro"),
        dir,
    )
}

fn servo(name: &str, channel: u8, max_speed: Option<f64>) -> ServoSpec {
    ServoSpec {
        name: name.into(),
        channel,
        min_us: 1000,
        max_us: 2000,
        home_us: 1500,
        max_speed,
    }
}

/// A server whose servos (`head` on channel 0, `jaw` on channel 3 at half
/// the range a second) are on `link`, without heartbeats so that the board
/// gets only what the tests cause.
fn config(link: PathBuf) -> Config {
    let mut config = test_config();
    config.servo_port = ServoPort::Path(link);
    config.servos = vec![servo("head", 0, None), servo("jaw", 3, Some(0.5))];
    config.servo.heartbeat = Duration::ZERO;
    config.servo.answer_timeout = Duration::from_millis(300);
    config.servo.retry_max = Duration::from_millis(500);
    config.servo.home_duration = Duration::from_millis(200);
    config
}

fn servos_of(server: &TestServer) -> Servos {
    server.server.droid().servos.clone()
}

/// Every raw byte the board read, until there are `n`.
fn raw(events: &mpsc::Receiver<SimEvent>, n: usize) -> Vec<u8> {
    let mut raw = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while raw.len() < n {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(SimEvent::Received { bytes, .. }) => raw.extend(bytes),
            Ok(_) => {}
            Err(_) => panic!("the board read only {raw:02X?}, expected {n} bytes"),
        }
    }
    raw
}

fn bytes(commands: &[Command]) -> Vec<u8> {
    commands.iter().flat_map(|c| c.encode()).collect()
}

async fn health(server: &TestServer) -> ServingStatus {
    let mut health = HealthClient::new(server.channel().await);
    let status = health
        .check(HealthCheckRequest {
            service: cantina::health::SERVOS.into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status;
    ServingStatus::try_from(status).unwrap()
}

fn subsystem(server: &TestServer) -> (ServiceStatus, String) {
    let record = server
        .server
        .droid()
        .supervisor
        .snapshot()
        .into_iter()
        .find(|r| r.name == "servos")
        .unwrap();
    (record.status, record.message)
}

/// Waits (up to a second) until the board has `target` on `channel`: a
/// move's last target is sent when it ends, and crosses the wire after.
fn board_has(board: &SimMaestro, channel: u8, target: u16) {
    let deadline = Instant::now() + Duration::from_secs(1);
    while board.channel(channel).unwrap().target != target {
        assert!(
            Instant::now() < deadline,
            "the board has {:?} on channel {channel}, not {target}",
            board.channel(channel)
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Polls `check` every 20 ms for up to `within`.
async fn eventually<F, Fut>(within: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !check().await {
        assert!(start.elapsed() < within, "not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn every_command_reaches_the_board_as_its_bytes() {
    let (board, _dir) = board();
    let events = board.events();
    let server = TestServer::with_config(config(board.link().to_path_buf())).await;
    // Get Errors (the board is there), each servo's speed limit and
    // acceleration, then where each servo is (one query at a time).
    let jaw_speed = protocol::speed_units(0.5 * 4000.0);
    assert_eq!(jaw_speed, 20);
    let connect = bytes(&[
        Command::GetErrors,
        Command::SetSpeed {
            channel: 0,
            speed: 0,
        },
        Command::SetAcceleration {
            channel: 0,
            acceleration: 0,
        },
        Command::SetSpeed {
            channel: 3,
            speed: jaw_speed,
        },
        Command::SetAcceleration {
            channel: 3,
            acceleration: 0,
        },
        Command::GetPosition { channel: 0 },
        Command::GetPosition { channel: 3 },
    ]);
    assert_eq!(
        connect,
        [
            0xA1, 0x87, 0, 0, 0, 0x89, 0, 0, 0, 0x87, 3, 20, 0, 0x89, 3, 0, 0, 0x90, 0, 0x90, 3
        ]
    );
    assert_eq!(raw(&events, connect.len()), connect);
    assert_eq!(health(&server).await, ServingStatus::Serving);
    let servos = servos_of(&server);
    let state = servos.state();
    assert!(state.connected && !state.is_virtual, "{state:?}");
    assert_eq!(state.port, board.link().display().to_string());

    // A step: one Set Target, 1500 µs = 6000 quarter-µs = 0x70, 0x2E.
    let moved = servos
        .move_to("head", 0.5, Duration::ZERO, Easing::Step)
        .await
        .unwrap();
    assert_eq!(raw(&events, 4), [0x84, 0x00, 0x70, 0x2E]);
    assert_eq!(servos.wait_move(moved.id).await, Ok(MoveOutcome::Finished));
    board_has(&board, 0, 6000);
    // The ends of the range: 1000 µs and 2000 µs.
    servos
        .move_to("jaw", 0.0, Duration::ZERO, Easing::Step)
        .await
        .unwrap();
    assert_eq!(raw(&events, 4), [0x84, 0x03, 0x20, 0x1F]);
    servos
        .move_to("head", 1.0, Duration::ZERO, Easing::Step)
        .await
        .unwrap();
    assert_eq!(raw(&events, 4), [0x84, 0x00, 0x40, 0x3E]);

    // Reading back: Get Position for each, Get Moving State, Get Errors.
    let report = servos.read_back().await.unwrap();
    assert_eq!(raw(&events, 6), [0x90, 0x00, 0x90, 0x03, 0x93, 0xA1]);
    assert_eq!(report.positions[0], ("head".into(), Some(2000.0)));
    assert!(report.errors.is_empty());

    // Errors the board reports are read, named and kept in the state.
    board.raise_errors(protocol::Errors::SERIAL_OVERRUN);
    let report = servos.read_back().await.unwrap();
    assert_eq!(report.errors, ["serial overrun"]);
    assert_eq!(servos.state().board_errors, ["serial overrun"]);
    assert!(
        servos
            .state()
            .last_error
            .unwrap()
            .contains("serial overrun")
    );
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn a_one_second_eased_move_is_fifty_targets_ending_on_the_goal() {
    let (board, _dir) = board();
    let server = TestServer::with_config(config(board.link().to_path_buf())).await;
    let servos = servos_of(&server);
    let first = servos
        .move_to("head", 0.0, Duration::ZERO, Easing::Step)
        .await
        .unwrap();
    servos.wait_move(first.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    board.clear_targets();

    let started = servos
        .move_to("head", 1.0, Duration::from_secs(1), Easing::EaseInOut)
        .await
        .unwrap();
    assert_eq!(started.from_us, Some(1000.0));
    assert_eq!(started.frames, 50);
    assert_eq!(
        servos.wait_move(started.id).await,
        Ok(MoveOutcome::Finished)
    );
    let ended = Instant::now();
    tokio::time::sleep(Duration::from_millis(20)).await;

    let targets = board.targets();
    let values: Vec<u16> = targets.iter().map(|t| t.target).collect();
    assert!(
        (45..=50).contains(&targets.len()),
        "about 50 targets: {values:?}"
    );
    assert!(targets.iter().all(|t| t.channel == 0));
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "monotonic: {values:?}"
    );
    assert_eq!(*values.last().unwrap(), 8000, "exactly the goal");
    assert!(values[0] < 4100, "starts gently: {values:?}");
    // 20 ms apart, at the wire's end too.
    let mut gaps: Vec<Duration> = targets.windows(2).map(|w| w[1].at - w[0].at).collect();
    gaps.sort();
    let median = gaps[gaps.len() / 2];
    assert!(
        median > Duration::from_millis(17) && median < Duration::from_millis(23),
        "{gaps:?}"
    );
    // The last target arrives when the move ends.
    let last = targets.last().unwrap().at;
    let late = last.saturating_duration_since(started.finishes_at);
    assert!(late < Duration::from_millis(30), "{late:?} late");
    assert!(ended >= started.finishes_at);
    // And the state says where it is.
    let head = &servos.list()[0];
    assert_eq!(
        (head.target_us, head.position, head.moving),
        (Some(2000.0), Some(1.0), false)
    );
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn nothing_moves_beyond_its_range_or_faster_than_its_speed() {
    let (board, _dir) = board();
    let server = TestServer::with_config(config(board.link().to_path_buf())).await;
    let servos = servos_of(&server);
    let first = servos
        .move_to("jaw", 0.0, Duration::ZERO, Easing::Step)
        .await
        .unwrap();
    servos.wait_move(first.id).await.unwrap();
    assert_eq!(board.channel(3).unwrap().speed, 20, "the board's own limit");
    tokio::time::sleep(Duration::from_millis(20)).await;
    board.clear_targets();

    // Across the range in 0.2 s is 10 times too fast for 0.5 range a second:
    // ease-in-out takes 3 s instead (top speed 1.5 × the average). Halted
    // after 1 s to keep the test short.
    let fast = servos
        .move_to("jaw", 1.0, Duration::from_millis(200), Easing::Linear)
        .await
        .unwrap();
    assert!(fast.limited_by_speed);
    assert_eq!(fast.duration, Duration::from_secs(2), "linear: 2 s");
    tokio::time::sleep(Duration::from_millis(600)).await;
    servos.halt(Some("jaw")).await.unwrap();
    let targets = board.targets();
    assert!(targets.len() > 20, "{}", targets.len());
    // 2000 quarter-µs a second at most: 40 per 20 ms frame (more only
    // after a frame skipped by a late wake-up), and on average.
    for pair in targets.windows(2) {
        let step = pair[0].target.abs_diff(pair[1].target);
        let dt = (pair[1].at - pair[0].at).as_secs_f64().max(0.020);
        assert!(
            f64::from(step) <= 2000.0 * dt + 2.0,
            "{step} quarter-µs in {dt} s"
        );
    }
    let (first, last) = (targets[0], *targets.last().unwrap());
    let average = f64::from(last.target - first.target) / (last.at - first.at).as_secs_f64();
    assert!(average <= 2000.0 * 1.05, "{average} quarter-µs a second");
    assert!(targets.iter().all(|t| (4000..=8000).contains(&t.target)));

    // Positions outside 0–1 are refused, not clamped into a move.
    let error = servos
        .move_to("jaw", 1.2, Duration::ZERO, Easing::Step)
        .await
        .unwrap_err();
    assert!(matches!(error, ServoError::Invalid(_)), "{error:?}");
    let error = servos
        .move_to("jow", 0.2, Duration::ZERO, Easing::Step)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("did you mean 'jaw'?"), "{error}");

    // A target the board had outside the range is brought in: the first
    // target sent is within it.
    server.server.stop().await.unwrap();
    board.set_target(0, 2000);
    let server = TestServer::with_config(config(board.link().to_path_buf())).await;
    let servos = servos_of(&server);
    assert_eq!(
        servos.list()[0].target_us,
        Some(500.0),
        "as the board had it"
    );
    assert_eq!(servos.list()[0].position, Some(0.0));
    board.clear_targets();
    let moved = servos
        .move_to("head", 0.1, Duration::from_millis(100), Easing::Linear)
        .await
        .unwrap();
    assert_eq!(moved.from_us, Some(1000.0));
    servos.wait_move(moved.id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(
        board
            .targets()
            .iter()
            .all(|t| (4000..=8000).contains(&t.target))
    );
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn a_board_that_stops_answering_is_lost() {
    let (board, _dir) = board();
    let mut config = config(board.link().to_path_buf());
    config.servo.heartbeat = Duration::from_millis(100);
    let server = TestServer::with_config(config).await;
    let servos = servos_of(&server);
    assert!(servos.state().connected);
    board.set_muted(true);
    eventually(Duration::from_secs(3), || async {
        !servos.state().connected
    })
    .await;
    let error = servos.state().last_error.unwrap();
    assert!(error.contains("no answer to Get Errors"), "{error}");
    board.set_muted(false);
    eventually(Duration::from_secs(5), || async {
        servos.state().connected
    })
    .await;
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn a_pulled_board_is_reported_lost_and_the_servos_put_back() {
    let (board, _dir) = board();
    let server = TestServer::with_config(config(board.link().to_path_buf())).await;
    let servos = servos_of(&server);
    let head = servos
        .move_to("head", 0.25, Duration::ZERO, Easing::Step)
        .await
        .unwrap();
    servos.wait_move(head.id).await.unwrap();
    let jaw = servos
        .move_to("jaw", 0.0, Duration::ZERO, Easing::Step)
        .await
        .unwrap();
    servos.wait_move(jaw.id).await.unwrap();
    // A long move that the loss interrupts.
    let long = servos
        .move_to("jaw", 1.0, Duration::from_secs(5), Easing::Linear)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    board.unplug().unwrap();
    eventually(Duration::from_secs(2), || async {
        !servos.state().connected
    })
    .await;
    let outcome = servos.wait_move(long.id).await.unwrap();
    assert!(
        matches!(&outcome, MoveOutcome::Interrupted { reason } if reason.contains("lost")),
        "{outcome:?}"
    );
    let jaw_target = servos.list()[1].target_us.unwrap();
    assert!(jaw_target > 1000.0 && jaw_target < 2000.0, "{jaw_target}");
    eventually(Duration::from_secs(2), || async {
        subsystem(&server).0 == ServiceStatus::Degraded
    })
    .await;
    let (_, message) = subsystem(&server);
    assert!(message.contains("lost"), "{message}");
    assert_eq!(health(&server).await, ServingStatus::NotServing);
    let error = servos
        .move_to("head", 0.5, Duration::ZERO, Easing::Step)
        .await
        .unwrap_err();
    assert!(matches!(error, ServoError::Unavailable(_)), "{error:?}");
    assert!(
        error.to_string().contains("check the Maestro's USB cable"),
        "{error}"
    );
    assert!(matches!(
        servos.home(None).await,
        Err(ServoError::Unavailable(_))
    ));

    // Back: each servo at its last target (the board lost power: its
    // outputs were off).
    board.plug().unwrap();
    eventually(Duration::from_secs(5), || async {
        health(&server).await == ServingStatus::Serving
    })
    .await;
    eventually(Duration::from_secs(1), || async {
        board.channel(0).unwrap().target == protocol::quarters(1250.0)
            && board.channel(3).unwrap().target == protocol::quarters(jaw_target)
    })
    .await;
    assert_eq!(board.channel(3).unwrap().speed, 20, "the speed limit again");
    eventually(Duration::from_secs(2), || async {
        subsystem(&server).0 == ServiceStatus::Running
    })
    .await;
    let again = servos
        .move_to("head", 0.5, Duration::ZERO, Easing::Step)
        .await
        .unwrap();
    servos.wait_move(again.id).await.unwrap();
    board_has(&board, 0, 6000);

    // The loss and the recovery were announced, once each.
    let topics = TopicSet::parse(&["servos.connection.*"]).unwrap();
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
            ("servos.connection.lost", port.clone()),
            ("servos.connection.recovered", port)
        ]
    );
    let recovered = server.server.droid().bus.history(
        Some(TopicSet::parse(&["servos.connection.recovered"]).unwrap()),
        1,
    );
    assert_eq!(
        recovered[0].payload["restored"],
        serde_json::json!(["head", "jaw"])
    );
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn virtual_servos_work_without_a_board() {
    let mut config = test_config();
    config.servos = vec![servo("head", 0, None)];
    assert_eq!(config.servo_port, ServoPort::Virtual, "the default");
    let server = TestServer::with_config(config).await;
    let servos = servos_of(&server);
    let state = servos.state();
    assert!(state.connected && state.is_virtual, "{state:?}");
    assert_eq!(health(&server).await, ServingStatus::Serving);
    let (status, message) = subsystem(&server);
    assert_eq!(status, ServiceStatus::Running);
    assert!(message.contains("virtual servos"), "{message}");
    let homed = servos.home(None).await.unwrap();
    assert_eq!(homed.len(), 1);
    assert!(homed[0].is_virtual);
    assert_eq!(
        servos.wait_move(homed[0].id).await,
        Ok(MoveOutcome::Finished)
    );
    let moved = servos
        .move_to("head", 0.75, Duration::from_millis(200), Easing::EaseInOut)
        .await
        .unwrap();
    assert_eq!(moved.from_us, Some(1500.0));
    assert_eq!(servos.wait_move(moved.id).await, Ok(MoveOutcome::Finished));
    assert_eq!(servos.list()[0].target_us, Some(1750.0));
    let report = servos.read_back().await.unwrap();
    assert_eq!(report.positions, [("head".to_string(), Some(1750.0))]);
    let events = server
        .server
        .droid()
        .bus
        .history(Some(TopicSet::parse(&["servo.move.*"]).unwrap()), 10);
    assert_eq!(events.len(), 4);
    assert_eq!(events[0].payload["virtual"], true);
    server.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plans_move_step_lands_at_its_time_and_waits_for_the_move() {
    use cantina::v1::{PlanEventKind, PlanStatus, RunPlanRequest};
    let (board, _dir) = board();
    let events = board.events();
    let server = TestServer::with_config(config(board.link().to_path_buf())).await;
    // The connection's own commands first.
    while !matches!(
        events.recv_timeout(Duration::from_secs(5)),
        Ok(SimEvent::Command {
            command: Command::SetAcceleration { channel: 3, .. },
            ..
        })
    ) {}
    let mut plans = server.client().await.plan;
    let sent = Instant::now();
    let mut stream = plans
        .run_plan(RunPlanRequest {
            document: r#"{"name": "nod", "steps": [
                {"id": "turn", "at": "0.5s", "move": {"target": "head", "position": 1.0, "easing": "step"}},
                {"id": "sweep", "move": {"target": "head", "position": 0.0, "duration": "0.3s", "easing": "linear"}},
                {"id": "after", "eyePattern": {"pattern": "happy"}}
            ]}"#
            .into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // The step lands at 0.5 s: its target reaches the board then.
    let landed = loop {
        match events.recv_timeout(Duration::from_secs(5)) {
            Ok(SimEvent::Command {
                command: Command::SetTarget { channel: 0, target },
                at,
                ..
            }) if target == 8000 => break at,
            Ok(_) => {}
            Err(_) => panic!("the move's target never reached the board"),
        }
    };
    let offset = landed.duration_since(sent);
    assert!(
        (Duration::from_millis(480)..Duration::from_millis(560)).contains(&offset),
        "the move landed {offset:?} after the plan was sent, for at 0.5 s"
    );
    let mut ended = None;
    let mut sweep_done = None;
    while ended.is_none() {
        let event = common::next_in(&mut stream).await;
        if event.kind() == PlanEventKind::StepFinished && event.step_id == "sweep" {
            sweep_done = Some(Instant::now());
        }
        if event.kind() == PlanEventKind::Ended {
            ended = Some(event);
        }
    }
    let ended = ended.unwrap();
    assert_eq!(ended.status(), PlanStatus::Completed, "{}", ended.message);
    // The sweep step waited for its 0.3 s move.
    let swept = sweep_done.unwrap().duration_since(landed);
    assert!(swept >= Duration::from_millis(290), "{swept:?}");
    board_has(&board, 0, 4000);

    // An unknown servo is refused before anything runs, with a suggestion.
    let error = plans
        .start_plan(cantina::v1::StartPlanRequest {
            document: "steps:\n  - move: {target: haed, position: 0.5}\n".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(
        error.message().contains("steps[0].move.target"),
        "{}",
        error.message()
    );
    assert!(
        error.message().contains("did you mean 'head'"),
        "{}",
        error.message()
    );
}
