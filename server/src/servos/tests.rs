//! The handle and the actor against the virtual Maestro: the board model
//! behind a paced in-process wire. The same code on a real
//! pseudo-terminal is tested end to end in the workspace's
//! `tests/servos.rs`.

use std::{sync::Arc, time::Duration};

use super::*;
use crate::{
    bus::{Bus, TopicSet},
    declare,
    lifecycle::Supervisor,
};

fn spec(name: &str, channel: u8, max_speed: Option<f64>) -> ServoSpec {
    ServoSpec {
        name: name.into(),
        channel,
        min_us: 1000,
        max_us: 2000,
        home_us: 1500,
        max_speed,
    }
}

fn settings() -> ServoSettings {
    ServoSettings {
        home_duration: Duration::from_millis(100),
        ..declare::defaults::<ServoSettings>()
    }
}

async fn started_with(settings: ServoSettings, specs: Vec<ServoSpec>) -> (Servos, Bus, Supervisor) {
    let bus = Bus::default();
    let servos = Servos::new(ServoPort::Virtual, settings, specs, bus.clone());
    let supervisor = Supervisor::new(vec![Arc::new(servos.clone())], vec![Arc::new(bus.clone())]);
    supervisor.start_all().await.unwrap();
    (servos, bus, supervisor)
}

async fn started() -> (Servos, Bus, Supervisor) {
    started_with(
        settings(),
        vec![spec("head", 0, None), spec("jaw", 5, Some(2.0))],
    )
    .await
}

fn events(bus: &Bus, glob: &str) -> Vec<serde_json::Value> {
    bus.history(Some(TopicSet::parse(&[glob]).unwrap()), 1000)
        .iter()
        .map(|e| {
            let mut payload = e.payload.clone();
            payload["topic"] = e.topic.as_str().into();
            payload["correlation_id"] = e.correlation_id.to_string().into();
            payload
        })
        .collect()
}

#[tokio::test]
async fn virtual_servos_run_without_a_board() {
    let (servos, bus, supervisor) = started().await;
    let state = servos.state();
    assert!(state.connected && state.is_virtual, "{state:?}");
    assert_eq!((state.port.as_str(), state.channels), ("virtual", Some(24)));
    assert_eq!(servos.names(), ["head", "jaw"]);
    assert_eq!(supervisor.snapshot()[0].status, ServiceStatus::Running);
    assert!(
        supervisor.snapshot()[0].message.contains("virtual servos"),
        "{:?}",
        supervisor.snapshot()
    );
    // The virtual board has every output off: where they are is unknown.
    assert_eq!(state.servos[0].target_us, None);

    let started = crate::bus::with_correlation(
        "c-servo".into(),
        servos.move_to("head", 1.0, Duration::ZERO, Easing::Step),
    )
    .await
    .unwrap();
    assert_eq!((started.to_us, started.position), (2000.0, 1.0));
    assert!(started.is_virtual);
    assert_eq!(
        servos.wait_move(started.id).await,
        Ok(MoveOutcome::Finished)
    );
    let head = &servos.list()[0];
    assert_eq!((head.target_us, head.position), (Some(2000.0), Some(1.0)));
    assert!(!head.moving);

    let moves = events(&bus, "servo.move.*");
    assert_eq!(moves.len(), 2, "{moves:#?}");
    assert_eq!(moves[0]["topic"], "servo.move.started");
    assert_eq!(moves[0]["servo"], "head");
    assert_eq!(moves[0]["to_us"], 2000.0);
    assert_eq!(moves[0]["correlation_id"], "c-servo");
    assert_eq!(moves[1]["topic"], "servo.move.finished");
    assert_eq!(moves[1]["outcome"], "finished");
    assert_eq!(moves[1]["id"], started.id.0);
    assert_eq!(moves[1]["correlation_id"], "c-servo");

    // What the board itself says.
    let report = servos.read_back().await.unwrap();
    assert_eq!(report.positions[0], ("head".into(), Some(2000.0)));
    assert_eq!(report.positions[1], ("jaw".into(), None));
    assert!(!report.moving);
    assert!(report.errors.is_empty());
    supervisor.stop_all().await;
}

#[tokio::test]
async fn an_eased_move_goes_through_the_curve_and_ends_on_the_goal() {
    let (servos, _bus, supervisor) = started().await;
    let first = servos
        .move_to("head", 0.0, Duration::ZERO, Easing::Step)
        .await
        .unwrap();
    servos.wait_move(first.id).await.unwrap();
    let mut watch = servos.subscribe();
    let started = servos
        .move_to("head", 1.0, Duration::from_millis(300), Easing::EaseInOut)
        .await
        .unwrap();
    assert_eq!(started.from_us, Some(1000.0));
    assert_eq!(started.frames, 15);
    assert!(!started.limited_by_speed);
    let mut seen = Vec::new();
    while watch.changed().await.is_ok() {
        let head = watch.borrow_and_update().servos[0].clone();
        seen.push(head.target_us.unwrap());
        if !head.moving {
            break;
        }
    }
    assert_eq!(
        servos.wait_move(started.id).await,
        Ok(MoveOutcome::Finished)
    );
    assert!(seen.len() >= 5, "{seen:?}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "monotonic: {seen:?}");
    assert_eq!(*seen.last().unwrap(), 2000.0);
    assert!(started.finishes_at - started.started_at == Duration::from_millis(300));
    supervisor.stop_all().await;
}

#[tokio::test]
async fn a_new_move_replaces_the_running_one_from_where_it_is() {
    let (servos, bus, supervisor) = started().await;
    let first = servos
        .move_to("head", 0.0, Duration::ZERO, Easing::Step)
        .await
        .unwrap();
    servos.wait_move(first.id).await.unwrap();
    let long = servos
        .move_to("head", 1.0, Duration::from_secs(2), Easing::Linear)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = servos
        .move_to("head", 0.0, Duration::from_millis(100), Easing::Linear)
        .await
        .unwrap();
    assert_eq!(second.replaced, Some(long.id));
    let from = second.from_us.unwrap();
    assert!(from > 1000.0 && from < 1500.0, "from where it was: {from}");
    assert_eq!(
        servos.wait_move(long.id).await,
        Ok(MoveOutcome::Replaced { by: second.id })
    );
    assert_eq!(servos.wait_move(second.id).await, Ok(MoveOutcome::Finished));
    let finished = events(&bus, "servo.move.finished");
    let replaced = finished.iter().find(|e| e["id"] == long.id.0).unwrap();
    assert_eq!(replaced["outcome"], "replaced");
    assert_eq!(replaced["by"], second.id.0);
    supervisor.stop_all().await;
}

#[tokio::test]
async fn max_speed_lengthens_a_move() {
    let (servos, _bus, supervisor) = started().await;
    let first = servos
        .move_to("jaw", 0.0, Duration::ZERO, Easing::Step)
        .await
        .unwrap();
    // A step at 2 ranges a second from where it is unknown: at once.
    assert_eq!(first.duration, Duration::ZERO);
    servos.wait_move(first.id).await.unwrap();
    // Across the range, ease-in-out, at 2 ranges a second: 0.75 s, not 0.1 s.
    let moved = servos
        .move_to("jaw", 1.0, Duration::from_millis(100), Easing::EaseInOut)
        .await
        .unwrap();
    assert!(moved.limited_by_speed);
    assert_eq!(moved.requested, Duration::from_millis(100));
    assert_eq!(moved.duration, Duration::from_millis(750));
    // A step back is paced by the board: within half a second.
    tokio::time::sleep(Duration::from_millis(200)).await;
    servos.halt(Some("jaw")).await.unwrap();
    let back = servos
        .move_to("jaw", 0.0, Duration::ZERO, Easing::Step)
        .await
        .unwrap();
    assert!(back.limited_by_speed);
    assert!(back.duration > Duration::ZERO);
    supervisor.stop_all().await;
}

#[tokio::test]
async fn a_paced_step_is_estimated_where_the_board_has_it() {
    let (servos, _bus, supervisor) = started().await;
    let first = servos
        .move_to("jaw", 0.0, Duration::ZERO, Easing::Step)
        .await
        .unwrap();
    servos.wait_move(first.id).await.unwrap();
    // Across the range at 2 ranges a second: the board takes 0.5 s.
    let step = servos
        .move_to("jaw", 1.0, Duration::ZERO, Easing::Step)
        .await
        .unwrap();
    assert_eq!(step.duration, Duration::from_millis(500));
    tokio::time::sleep(Duration::from_millis(150)).await;
    // Replaced from where the output is, not from the goal.
    let again = servos
        .move_to("jaw", 1.0, Duration::ZERO, Easing::Step)
        .await
        .unwrap();
    let from = again.from_us.unwrap();
    assert!(from > 1200.0 && from < 1500.0, "{from}");
    let listed = servos.list()[1].target_us.unwrap();
    assert!(listed < 2000.0, "the state shows the estimate: {listed}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Halted where it is: that is the board's new target.
    servos.halt(Some("jaw")).await.unwrap();
    let halted = servos.list()[1].target_us.unwrap();
    assert!(halted > from && halted < 1800.0, "{halted}");
    tokio::time::sleep(Duration::from_millis(400)).await;
    let report = servos.read_back().await.unwrap();
    let (_, board) = &report.positions[1];
    assert!(
        (board.unwrap() - halted).abs() < 60.0,
        "{board:?} on the board, {halted} in the state"
    );
    assert_eq!(servos.list()[1].target_us, Some(halted));
    supervisor.stop_all().await;
}

#[tokio::test]
async fn a_move_max_speed_makes_too_long_is_refused() {
    // Not from the configuration (which refuses such a max_speed): a
    // thousandth of the range an hour.
    let (servos, _bus, supervisor) =
        started_with(settings(), vec![spec("slow", 0, Some(1.0 / 3_600_000.0))]).await;
    let first = servos
        .move_to("slow", 0.0, Duration::ZERO, Easing::Step)
        .await
        .unwrap();
    servos.wait_move(first.id).await.unwrap();
    let error = servos
        .move_to("slow", 1.0, Duration::from_secs(1), Easing::Linear)
        .await
        .unwrap_err();
    assert!(matches!(error, ServoError::Invalid(_)), "{error:?}");
    assert!(error.to_string().contains("longest move"), "{error}");
    assert_eq!(servos.list()[0].target_us, Some(1000.0), "nothing sent");
    supervisor.stop_all().await;
}

#[tokio::test]
async fn bad_requests_are_refused_with_what_to_do() {
    let (servos, _bus, supervisor) = started().await;
    let error = servos
        .move_to("hed", 0.5, Duration::ZERO, Easing::Step)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, ServoError::NotFound { suggestion: Some(s), .. } if s == "head"),
        "{error:?}"
    );
    assert_eq!(
        error.to_string(),
        "no servo named 'hed'; did you mean 'head'? (servos: head, jaw; see `servo list`)"
    );
    for position in [1.5, -0.1, f64::NAN] {
        let error = servos
            .move_to("head", position, Duration::ZERO, Easing::Step)
            .await
            .unwrap_err();
        assert!(matches!(error, ServoError::Invalid(_)), "{error:?}");
        assert!(error.to_string().contains("0.0 (min_us) to 1.0"), "{error}");
    }
    let error = servos
        .move_to("head", 0.5, Duration::from_secs(7200), Easing::Linear)
        .await
        .unwrap_err();
    assert!(error.to_string().contains("too long"), "{error}");
    assert!(matches!(
        servos.home(Some("nose")).await,
        Err(ServoError::NotFound { .. })
    ));
    assert!(matches!(
        servos.wait_move(MoveId(999)).await,
        Err(ServoError::UnknownMove(_))
    ));
    assert!(servos.spec("jaw").is_ok());
    supervisor.stop_all().await;

    // No servos at all says how to declare them.
    let (none, _bus, supervisor) = started_with(settings(), Vec::new()).await;
    let error = none.spec("head").unwrap_err().to_string();
    assert!(error.contains("[[servo]]"), "{error}");
    supervisor.stop_all().await;
}

#[tokio::test]
async fn home_halt_and_stop() {
    let (servos, _bus, supervisor) = started().await;
    let homed = servos.home(None).await.unwrap();
    assert_eq!(homed.len(), 2);
    for moved in &homed {
        assert_eq!(servos.wait_move(moved.id).await, Ok(MoveOutcome::Finished));
    }
    assert!(servos.list().iter().all(|s| s.target_us == Some(1500.0)));

    let long = servos
        .move_to("head", 1.0, Duration::from_secs(5), Easing::Linear)
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(servos.halt(None).await.unwrap(), [long.id]);
    assert_eq!(servos.wait_move(long.id).await, Ok(MoveOutcome::Halted));
    let stopped_at = servos.list()[0].target_us.unwrap();
    assert!(stopped_at > 1500.0 && stopped_at < 2000.0, "{stopped_at}");

    // Stopping the servos ends a running move.
    let running = servos
        .move_to("head", 0.0, Duration::from_secs(5), Easing::Linear)
        .await
        .unwrap();
    supervisor.stop_all().await;
    assert_eq!(servos.wait_move(running.id).await, Ok(MoveOutcome::Stopped));
    assert!(matches!(
        servos
            .move_to("head", 0.0, Duration::ZERO, Easing::Step)
            .await,
        Err(ServoError::Unavailable(_))
    ));
}

#[tokio::test]
async fn a_servo_beyond_the_boards_channels_cannot_move() {
    let settings = ServoSettings {
        channels: Some(6),
        ..settings()
    };
    let (servos, _bus, supervisor) =
        started_with(settings, vec![spec("head", 0, None), spec("tail", 9, None)]).await;
    let state = servos.state();
    assert_eq!(state.channels, Some(6));
    let problem = state.servos[1].problem.clone().unwrap();
    assert!(
        problem.contains("beyond the board's 6 channels"),
        "{problem}"
    );
    let snapshot = &supervisor.snapshot()[0];
    assert_eq!(snapshot.status, ServiceStatus::Degraded);
    let error = servos
        .move_to("tail", 0.5, Duration::ZERO, Easing::Step)
        .await
        .unwrap_err();
    assert!(matches!(error, ServoError::Invalid(_)), "{error:?}");
    // The others still move, and "every servo" leaves it out.
    assert_eq!(servos.home(None).await.unwrap().len(), 1);
    supervisor.stop_all().await;
}

#[test]
fn closest_names() {
    let known: Vec<String> = ["head", "jaw", "left-ear"].map(String::from).into();
    assert_eq!(closest("hed", &known).as_deref(), Some("head"));
    assert_eq!(closest("left", &known).as_deref(), Some("left-ear"));
    assert_eq!(closest("JAW", &known).as_deref(), Some("jaw"));
    assert_eq!(closest("tail", &known), None);
}
