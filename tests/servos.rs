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
        Easing, MoveId, MoveOutcome, ServoError, Servos,
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
    // Get Errors (the board is there), where each servo is (one query at a
    // time), then each servo's speed limit and acceleration: the probes go
    // first, as a probe the board refuses sends its outputs home.
    let jaw_speed = protocol::speed_units(0.5 * 4000.0);
    assert_eq!(jaw_speed, 20);
    let connect = bytes(&[
        Command::GetErrors,
        Command::GetPosition { channel: 0 },
        Command::GetPosition { channel: 3 },
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
    ]);
    assert_eq!(
        connect,
        [
            0xA1, 0x90, 0, 0x90, 3, 0x87, 0, 0, 0, 0x89, 0, 0, 0, 0x87, 3, 20, 0, 0x89, 3, 0, 0
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

    // Errors the board reports are read, named and kept in the state. Any
    // error sends the board's outputs home (off): the server sets each
    // servo up again and puts it back at its last target.
    board_has(&board, 3, 4000);
    board.raise_errors(protocol::Errors::SERIAL_OVERRUN);
    assert_eq!(board.channel(0).unwrap().target, 0, "the board went home");
    let report = servos.read_back().await.unwrap();
    assert_eq!(report.errors, ["serial overrun"]);
    let restore = bytes(&[
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
        Command::SetTarget {
            channel: 0,
            target: 8000,
        },
        Command::SetTarget {
            channel: 3,
            target: 4000,
        },
    ]);
    let seen = raw(&events, 6 + restore.len());
    assert_eq!(seen[..6], [0x90, 0x00, 0x90, 0x03, 0x93, 0xA1]);
    assert_eq!(seen[6..], restore);
    board_has(&board, 0, 8000);
    board_has(&board, 3, 4000);
    assert_eq!(board.channel(3).unwrap().speed, 20);
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
    // after a frame skipped by a late wake-up), and on average. `at` is when
    // the board read the target, which trails its computing by up to a few
    // ms on a loaded machine: a step may span that much more time.
    for pair in targets.windows(2) {
        let step = pair[0].target.abs_diff(pair[1].target);
        let dt = (pair[1].at - pair[0].at).as_secs_f64().max(0.020);
        assert!(
            f64::from(step) <= 2000.0 * (dt + 0.005) + 2.0,
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
                command:
                    Command::SetTarget {
                        channel: 0,
                        target: 8000,
                    },
                at,
                ..
            }) => break at,
            Ok(_) => {}
            Err(_) => panic!("the move's target never reached the board"),
        }
    };
    let offset = landed.duration_since(sent);
    assert!(
        // Its time, not at once (precision is the benches' to measure; a
        // loaded test machine adds to the call and the start).
        (Duration::from_millis(480)..Duration::from_millis(800)).contains(&offset),
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

/// The console's answer's data.
fn data(response: &cantina::v1::DispatchResponse) -> serde_json::Value {
    cantina::json::struct_to_json(response.data.as_ref().expect("the command returns data"))
}

/// The move ids a `move` or `servo home` answer started.
fn move_ids(response: &cantina::v1::DispatchResponse) -> Vec<MoveId> {
    let data = data(response);
    let one = |m: &serde_json::Value| MoveId(m["id"].as_f64().unwrap() as u64);
    match data.get("moves") {
        Some(moves) => moves.as_array().unwrap().iter().map(one).collect(),
        None => vec![one(&data)],
    }
}

/// Dispatches `line` and waits for the moves it started to end.
async fn dispatch_and_wait(server: &TestServer, line: &str) -> cantina::v1::DispatchResponse {
    let response = server
        .dispatch(line)
        .await
        .unwrap_or_else(|e| panic!("{line}: {e:?}"));
    let servos = servos_of(server);
    for id in move_ids(&response) {
        assert_eq!(
            servos.wait_move(id).await,
            Ok(MoveOutcome::Finished),
            "{line}"
        );
    }
    response
}

#[tokio::test]
async fn the_console_move_turns_the_head_smoothly_onto_its_goal() {
    let (board, _dir) = board();
    let server = TestServer::with_config(config(board.link().to_path_buf())).await;
    // Where it starts: the board had it off, so the first move is straight.
    let first = dispatch_and_wait(&server, "move head 0").await;
    assert!(
        first
            .message
            .starts_with("head sent straight to 0.00 (1000 µs)"),
        "{}",
        first.message
    );
    tokio::time::sleep(Duration::from_millis(20)).await;
    board.clear_targets();

    let response = server.dispatch("move head 0.8 1s").await.unwrap();
    assert_eq!(response.command, "move");
    assert!(
        response
            .message
            .starts_with("head moving 0.00 → 0.80 (1000 → 1800 µs) over 1s, ease-in-out: move #"),
        "{}",
        response.message
    );
    assert!(
        !response.message.contains("virtual"),
        "{}",
        response.message
    );
    let started = data(&response);
    assert_eq!(started["from_us"], 1000.0);
    assert_eq!(started["to_us"], 1800.0);
    assert_eq!(started["duration_ms"], 1000.0);
    assert_eq!(started["easing"], "ease-in-out");
    assert_eq!(started["virtual"], false);
    let servos = servos_of(&server);
    let id = move_ids(&response)[0];
    assert_eq!(servos.wait_move(id).await, Ok(MoveOutcome::Finished));
    tokio::time::sleep(Duration::from_millis(20)).await;

    // 0.8 of 1000–2000 µs is 1800 µs, 7200 quarter-µs: reached smoothly.
    let values: Vec<u16> = board.targets().iter().map(|t| t.target).collect();
    assert!(
        (45..=50).contains(&values.len()),
        "about 50 targets: {values:?}"
    );
    assert!(
        values.windows(2).all(|w| w[0] < w[1]),
        "monotonic: {values:?}"
    );
    assert_eq!(*values.last().unwrap(), 7200, "exactly the goal");
    assert!(values[0] < 4100, "starts gently: {values:?}");
    let biggest = values.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        biggest < 200,
        "no jump (the steepest frame of 3200 quarter-µs over 50 frames eased is ~96): {values:?}"
    );

    // An easing alone, and a move the speed limit lengthens.
    let step = dispatch_and_wait(&server, "move jaw 0 step").await;
    assert!(step.message.contains("jaw"), "{}", step.message);
    let limited = server.dispatch("move jaw 1 200ms linear").await.unwrap();
    assert!(
        limited
            .message
            .contains("over 2s, linear (lengthened from 200ms by its max_speed)"),
        "{}",
        limited.message
    );
    assert_eq!(data(&limited)["limited_by_speed"], true);
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn servo_home_puts_one_or_every_servo_home() {
    let (board, _dir) = board();
    let server = TestServer::with_config(config(board.link().to_path_buf())).await;
    dispatch_and_wait(&server, "move head 0.2").await;
    dispatch_and_wait(&server, "move jaw 0.6 step").await;
    board_has(&board, 0, 4800);

    let one = dispatch_and_wait(&server, "servo home head").await;
    assert_eq!(one.command, "servo home");
    assert!(
        one.message
            .starts_with("head going home over 200ms: head → 1500 µs"),
        "{}",
        one.message
    );
    board_has(&board, 0, 6000);

    dispatch_and_wait(&server, "move head 1 step").await;
    let all = dispatch_and_wait(&server, "servo home").await;
    assert!(
        all.message.starts_with("2 servos going home over "),
        "{}",
        all.message
    );
    assert!(
        all.message.contains("head → 1500 µs, jaw → 1500 µs"),
        "{}",
        all.message
    );
    board_has(&board, 0, 6000);
    board_has(&board, 3, 6000);
    let again = dispatch_and_wait(&server, "servo home all").await;
    assert_eq!(move_ids(&again).len(), 2);
    let state = servos_of(&server).state();
    assert!(
        state
            .servos
            .iter()
            .all(|s| s.position == Some(0.5) && !s.moving),
        "{state:?}"
    );
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn servo_list_and_servo_status_show_every_servo_and_the_board() {
    let (board, _dir) = board();
    let server = TestServer::with_config(config(board.link().to_path_buf())).await;
    let list = server.dispatch("servo list").await.unwrap();
    let port = board.link().display().to_string();
    assert_eq!(
        list.message,
        format!(
            "2 servos on {port}:\n  NAME  CHANNEL  RANGE         HOME     MAX SPEED\n  head  0        1000–2000 µs  1500 µs  none\n  jaw   3        1000–2000 µs  1500 µs  0.5 range/s"
        )
    );
    let servos = data(&list)["servos"].clone();
    assert_eq!(servos[1]["name"], "jaw");
    assert_eq!(servos[1]["channel"], 3.0);
    assert_eq!(servos[1]["max_speed"], 0.5);
    assert_eq!(servos[0]["max_speed"], serde_json::Value::Null);

    dispatch_and_wait(&server, "move head 0.25 step").await;
    board_has(&board, 0, 5000);
    // An error: the board's outputs go off (the read-back sees them off),
    // and the server then puts the head back.
    board.raise_errors(protocol::Errors::SERIAL_OVERRUN);
    let status = server.dispatch("servo status").await.unwrap();
    let text = &status.message;
    for expected in [
        format!("port:         {port}"),
        "connection:   connected".to_string(),
        "board errors: serial overrun".to_string(),
        "board moving: no".to_string(),
        "NAME  CH  TARGET   POSITION  BOARD  MOVING".to_string(),
        "head  0   1250 µs  0.25      off    no".to_string(),
        "jaw   3   unknown  -         off    no".to_string(),
    ] {
        assert!(text.contains(&expected), "no {expected:?} in:\n{text}");
    }
    let data = data(&status);
    assert_eq!(data["board"]["errors"][0], "serial overrun");
    assert_eq!(
        data["board"]["positions"][0]["position_us"],
        serde_json::Value::Null
    );
    assert_eq!(data["servos"][0]["target_us"], 1250.0);
    board_has(&board, 0, 5000);
    assert_eq!(data["virtual"], false);
    // `servos` is `servo status`.
    assert_eq!(
        server.dispatch("servos").await.unwrap().command,
        "servo status"
    );
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn unknown_servos_bad_arguments_and_a_lost_board_are_refused_with_what_to_do() {
    let (board, _dir) = board();
    let server = TestServer::with_config(config(board.link().to_path_buf())).await;
    let unknown = server.dispatch("move haed 0.5").await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    assert!(
        unknown
            .message()
            .contains("no servo named 'haed'; did you mean 'head'?"),
        "{}",
        unknown.message()
    );
    let unknown = server.dispatch("servo home jow").await.unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    assert!(
        unknown.message().contains("did you mean 'jaw'?"),
        "{}",
        unknown.message()
    );
    for (line, problem) in [
        ("move head 1.5", "position 1.5 is outside the servo's range"),
        ("move head -0.2", "outside the servo's range"),
        ("move head 0.5 -1s", "a move cannot take a negative time"),
        ("move head 0.5 1s wobbly", "unknown easing 'wobbly'"),
        ("move head", "'move' needs at least 2 arguments"),
    ] {
        let error = server.dispatch(line).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{line}");
        assert!(
            error.message().contains(problem),
            "{line}: {}",
            error.message()
        );
        assert!(
            error.message().contains("usage: move <servo> <0.0–1.0>"),
            "{line}: {}",
            error.message()
        );
    }
    // Nothing was sent for any of them.
    assert!(board.targets().is_empty(), "{:?}", board.targets());

    board.unplug().unwrap();
    let servos = servos_of(&server);
    // The loss shows at the next write or query.
    let _ = servos.read_back().await;
    eventually(Duration::from_secs(2), || async {
        !servos.state().connected
    })
    .await;
    let lost = server.dispatch("move head 0.5 1s").await.unwrap_err();
    assert_eq!(lost.code(), tonic::Code::Unavailable);
    assert!(
        lost.message()
            .contains("check the Maestro's USB cable and power"),
        "{}",
        lost.message()
    );
    let status = server.dispatch("servo status").await.unwrap();
    assert!(
        status.message.contains("connection:   LOST (reconnecting)"),
        "{}",
        status.message
    );
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn the_panic_button_sends_every_servo_home() {
    let (board, _dir) = board();
    let server = TestServer::with_config(config(board.link().to_path_buf())).await;
    dispatch_and_wait(&server, "move head 0.9 step").await;
    dispatch_and_wait(&server, "move jaw 0.4 step").await;
    board_has(&board, 0, 7600);
    let panic = server.dispatch("panic").await.unwrap();
    assert!(
        panic.message.contains("2 servos going home"),
        "{}",
        panic.message
    );
    board_has(&board, 0, 6000);
    // The jaw (0.1 of its range at half its range a second) takes 0.3 s.
    tokio::time::sleep(Duration::from_millis(300)).await;
    board_has(&board, 3, 6000);
    server.server.stop().await.unwrap();
}

/// Puts the head at 0.1 and the jaw at 0.9, then stops the server; how
/// long stopping took.
async fn stop_away_from_home(server: TestServer) -> Duration {
    dispatch_and_wait(&server, "move head 0.1 step").await;
    dispatch_and_wait(&server, "move jaw 0.9 step").await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    let began = Instant::now();
    server.server.stop().await.unwrap();
    began.elapsed()
}

#[tokio::test]
async fn shutdown_sends_the_servos_home_before_they_stop() {
    let (board, _dir) = board();
    let server = TestServer::with_config(config(board.link().to_path_buf())).await;
    let stopping = stop_away_from_home(server).await;
    // Stopping waited for the servos to get home: the head over 200 ms,
    // the jaw (0.4 of its range at 0.5 a second, eased) over 1.2 s.
    assert!(stopping >= Duration::from_millis(1150), "{stopping:?}");
    board_has(&board, 0, 6000);
    board_has(&board, 3, 6000);
    let head: Vec<u16> = board
        .targets()
        .iter()
        .filter(|t| t.channel == 0)
        .map(|t| t.target)
        .collect();
    let from = head.iter().position(|&t| t == 4400).unwrap();
    assert!(
        head[from..].windows(2).all(|w| w[0] < w[1]) && head.len() - from > 3,
        "eased home: {head:?}"
    );
}

#[tokio::test]
async fn with_servo_home_on_stop_off_shutdown_leaves_the_servos_where_they_are() {
    let (board, _dir) = board();
    let mut config = config(board.link().to_path_buf());
    config.servo.home_on_stop = false;
    let server = TestServer::with_config(config).await;
    stop_away_from_home(server).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(board.channel(0).unwrap().target, 4400);
    assert_eq!(board.channel(3).unwrap().target, 7600);
}

#[tokio::test]
async fn a_probe_the_board_refuses_comes_before_the_targets_are_put_back() {
    // A 6-channel board behind a port that says nothing of its size, and a
    // servo on channel 8: its probe is an error, and an error sends the
    // board's outputs home, so the targets go back after the probes.
    let dir = tempfile::tempdir().unwrap();
    let mut options = SimOptions::new(dir.path().join("maestro"));
    options.channels = 6;
    let board = SimMaestro::start(options).unwrap();
    let mut config = config(board.link().to_path_buf());
    config.servos.push(servo("tail", 8, None));
    let server = TestServer::with_config(config).await;
    let servos = servos_of(&server);
    assert!(servos.state().servos[2].problem.is_some());
    let head = servos
        .move_to("head", 0.25, Duration::ZERO, Easing::Step)
        .await
        .unwrap();
    servos.wait_move(head.id).await.unwrap();
    board_has(&board, 0, 5000);

    board.unplug().unwrap();
    eventually(Duration::from_secs(2), || async {
        !servos.state().connected
    })
    .await;
    board.plug().unwrap();
    eventually(Duration::from_secs(5), || async {
        servos.state().connected
    })
    .await;
    assert!(servos.state().servos[2].problem.is_some());
    board_has(&board, 0, 5000);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(board.channel(0).unwrap().target, 5000, "still there");
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn a_late_answer_is_not_taken_for_the_next_querys() {
    // The board has head at 1250 µs and jaw at 2000 µs; its first answer
    // (to Get Errors) comes after the answer timeout (300 ms). Read as the
    // answer to the next query, it would shift every position by one.
    let (board, _dir) = board();
    board.set_target(0, 5000);
    board.set_target(3, 8000);
    board.delay_next_answer(Duration::from_millis(450));
    let server = TestServer::with_config(config(board.link().to_path_buf())).await;
    let servos = servos_of(&server);
    eventually(Duration::from_secs(5), || async {
        servos.state().connected
    })
    .await;
    let list = servos.list();
    assert_eq!(list[0].target_us, Some(1250.0));
    assert_eq!(list[1].target_us, Some(2000.0));
    assert_eq!(board.channel(0).unwrap().target, 5000);
    assert_eq!(board.channel(3).unwrap().target, 8000);

    // A late answer to a read-back: the read-back fails, nothing shifts.
    board.delay_next_answer(Duration::from_millis(450));
    let late = servos.read_back().await;
    assert!(late.is_err(), "{late:?}");
    eventually(Duration::from_secs(5), || async {
        servos.state().connected
    })
    .await;
    let report = servos.read_back().await.unwrap();
    assert_eq!(
        report.positions,
        [("head".into(), Some(1250.0)), ("jaw".into(), Some(2000.0))]
    );
    let list = servos.list();
    assert_eq!(list[0].target_us, Some(1250.0));
    assert_eq!(list[1].target_us, Some(2000.0));
    board_has(&board, 0, 5000);
    board_has(&board, 3, 8000);
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn a_heartbeat_that_finds_errors_puts_the_servos_back_and_keeps_the_errors() {
    let (board, _dir) = board();
    let mut config = config(board.link().to_path_buf());
    config.servo.heartbeat = Duration::from_millis(100);
    let server = TestServer::with_config(config).await;
    let servos = servos_of(&server);
    let moved = servos
        .move_to("head", 0.75, Duration::ZERO, Easing::Step)
        .await
        .unwrap();
    servos.wait_move(moved.id).await.unwrap();
    board_has(&board, 0, 7000);
    // Line trouble: the board's outputs go off; the next heartbeat sees the
    // error and puts the head back.
    board.raise_errors(protocol::Errors::SERIAL_OVERRUN);
    assert_eq!(board.channel(0).unwrap().target, 0);
    board_has(&board, 0, 7000);
    assert_eq!(servos.state().board_errors, ["serial overrun"]);
    // Later heartbeats (with nothing to report) keep the errors until a
    // read-back.
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert_eq!(servos.state().board_errors, ["serial overrun"]);
    let report = servos.read_back().await.unwrap();
    assert!(report.errors.is_empty(), "{report:?}");
    assert!(servos.state().board_errors.is_empty());
    server.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_plan_stops_the_move_its_step_started() {
    use cantina::v1::{CancelPlanRequest, StartPlanRequest};
    let (board, _dir) = board();
    let server = TestServer::with_config(config(board.link().to_path_buf())).await;
    let servos = servos_of(&server);
    eventually(Duration::from_secs(5), || async {
        servos.state().connected
    })
    .await;
    // From home (a servo the board has off would go straight to its goal).
    servos.home(Some("head")).await.unwrap();
    board_has(&board, 0, 6000);
    let mut plans = server.client().await.plan;
    plans
        .start_plan(StartPlanRequest {
            document: r#"{"name": "slow-turn", "steps": [
                {"move": {"target": "head", "position": 1.0, "duration": "2s", "easing": "linear"}}
            ]}"#
            .into(),
            ..Default::default()
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    plans
        .cancel_plan(CancelPlanRequest {
            plan_id: "slow-turn".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    // The move is halted where it was: the head stops short of its goal.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = board.channel(0).unwrap().target;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let later = board.channel(0).unwrap().target;
    assert_eq!(stopped, later, "the head keeps still after the cancel");
    assert!(
        later < 8000 && later > 6000,
        "it stopped on its way (quarter-µs target {later})"
    );
}
