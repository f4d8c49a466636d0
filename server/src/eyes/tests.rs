//! The handle and the actor against the virtual board: the firmware model
//! behind a paced in-process wire. The same code on a real pseudo-terminal
//! is tested end to end in the workspace's `tests/eyes.rs`.

use std::{sync::Arc, time::Duration};

use super::*;
use crate::{
    bus::{Bus, TopicSet},
    declare,
    lifecycle::Supervisor,
};

fn settings() -> EyesSettings {
    EyesSettings {
        test_step: Duration::from_millis(20),
        ..declare::defaults::<EyesSettings>()
    }
}

async fn started(port: EyesPort) -> (Eyes, Bus, Supervisor) {
    let bus = Bus::default();
    let eyes = Eyes::new(port, settings(), bus.clone());
    let supervisor = Supervisor::new(vec![Arc::new(eyes.clone())], vec![Arc::new(bus.clone())]);
    supervisor.start_all().await.unwrap();
    (eyes, bus, supervisor)
}

fn events(bus: &Bus, glob: &str) -> Vec<serde_json::Value> {
    bus.history(Some(TopicSet::parse(&[glob]).unwrap()), 1000)
        .iter()
        .map(|e| {
            let mut payload = e.payload.clone();
            payload["topic"] = e.topic.as_str().into();
            payload
        })
        .collect()
}

#[tokio::test]
async fn the_virtual_board_confirms_patterns_and_brightness() {
    let (eyes, bus, supervisor) = started(EyesPort::Virtual).await;
    let state = eyes.state();
    assert!(state.connected && state.is_virtual, "{state:?}");
    assert_eq!(state.port, "virtual");
    assert_eq!(supervisor.snapshot()[0].status, ServiceStatus::Running);

    crate::bus::with_correlation("c-eyes".into(), eyes.set_pattern(Pattern::Happy))
        .await
        .unwrap();
    eyes.set_brightness(0.3).await.unwrap();
    let state = eyes.state();
    assert_eq!((state.pattern, state.brightness), (Pattern::Happy, 0.3));

    let changed = bus.history(
        Some(TopicSet::parse(&["eyes.pattern.changed"]).unwrap()),
        10,
    );
    let last = changed.last().unwrap();
    assert_eq!(last.payload["pattern"], "happy");
    assert_eq!(last.payload["glyph"], "H");
    assert_eq!(last.payload["source"], "command");
    assert_eq!(last.correlation_id, "c-eyes");
    assert_eq!(
        events(&bus, "eyes.brightness.changed").last().unwrap()["level"],
        2
    );
    supervisor.stop_all().await;
}

#[tokio::test]
async fn out_of_range_brightness_is_clamped_not_sent_raw() {
    let (eyes, _bus, supervisor) = started(EyesPort::Virtual).await;
    eyes.set_brightness(3.0).await.unwrap();
    assert_eq!(eyes.state().brightness, 1.0);
    eyes.set_brightness(f64::NAN).await.unwrap();
    assert_eq!(eyes.state().brightness, 0.0);
    supervisor.stop_all().await;
}

#[tokio::test]
async fn the_eye_test_cycles_eight_glyphs_and_restores_the_pattern() {
    let (eyes, bus, supervisor) = started(EyesPort::Virtual).await;
    eyes.set_pattern(Pattern::Sad).await.unwrap();
    let finished = bus.wait_for(
        TopicSet::parse(&["eyes.test.finished"]).unwrap(),
        |_| true,
        Duration::from_secs(10),
    );
    let restored = bus.wait_for(
        TopicSet::parse(&["eyes.pattern.changed"]).unwrap(),
        |e| e.payload["source"] == "restore",
        Duration::from_secs(10),
    );
    eyes.start_test().await.unwrap();
    assert!(eyes.state().testing);
    let again = eyes.start_test().await.unwrap_err();
    assert!(matches!(again, EyesError::Conflict(_)), "{again}");
    assert_eq!(finished.await.unwrap().payload["outcome"], "completed");
    assert_eq!(restored.await.unwrap().payload["pattern"], "sad");
    assert_eq!(eyes.state().pattern, Pattern::Sad);
    let shown: Vec<String> = events(&bus, "eyes.pattern.changed")
        .iter()
        .filter(|e| e["source"] == "test" || e["source"] == "restore")
        .map(|e| e["glyph"].as_str().unwrap().to_string())
        .collect();
    // The eight glyphs, then sad (D) again.
    assert_eq!(shown.concat(), "ISTLEHDAD");
    supervisor.stop_all().await;
}

#[tokio::test]
async fn a_pattern_command_cancels_the_test_and_stays() {
    let (eyes, bus, supervisor) = started(EyesPort::Virtual).await;
    eyes.start_test().await.unwrap();
    eyes.set_pattern(Pattern::Angry).await.unwrap();
    let state = eyes.state();
    assert!(!state.testing);
    assert_eq!(state.pattern, Pattern::Angry);
    let finished = events(&bus, "eyes.test.finished");
    assert_eq!(finished.len(), 1);
    assert_eq!(finished[0]["outcome"], "cancelled by 'eye pattern'");
    assert!(!eyes.stop_test().await.unwrap(), "nothing left to stop");
    supervisor.stop_all().await;
}

#[tokio::test]
async fn the_eyes_follow_the_mode_through_the_hook() {
    let (eyes, _bus, supervisor) = started(EyesPort::Virtual).await;
    let hook = eyes.mode_hook();
    hook(Mode::Idle, Mode::Ambient).await.unwrap();
    assert_eq!(eyes.state().pattern, Pattern::Happy);
    hook(Mode::Ambient, Mode::Interactive).await.unwrap();
    assert_eq!(eyes.state().pattern, Pattern::Engaged);
    hook(Mode::Interactive, Mode::Idle).await.unwrap();
    assert_eq!(eyes.state().pattern, Pattern::Idle);
    supervisor.stop_all().await;
}

#[tokio::test]
async fn a_missing_port_degrades_the_eyes_and_commands_say_why() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ttyACM9");
    let (eyes, _bus, supervisor) = started(EyesPort::Path(path.clone())).await;
    let record = &supervisor.snapshot()[0];
    assert_eq!(record.status, ServiceStatus::Degraded);
    assert!(record.message.contains("ttyACM9"), "{}", record.message);
    let state = eyes.state();
    assert!(!state.connected && !state.is_virtual);
    assert!(
        state
            .last_error
            .as_deref()
            .unwrap()
            .contains("no device at"),
        "{state:?}"
    );
    let err = eyes.set_pattern(Pattern::Happy).await.unwrap_err();
    assert!(matches!(err, EyesError::Unavailable(_)), "{err}");
    assert!(err.to_string().contains("not connected"), "{err}");
    // The mode's pattern is kept for when the board comes back.
    eyes.follow(Pattern::Engaged).await.unwrap();
    supervisor.stop_all().await;
}

#[tokio::test]
async fn a_stopped_eyes_handle_answers_unavailable() {
    let (eyes, _bus, supervisor) = started(EyesPort::Virtual).await;
    supervisor.stop_all().await;
    let err = eyes.set_pattern(Pattern::Happy).await.unwrap_err();
    assert!(err.to_string().contains("not running"), "{err}");
}

#[tokio::test]
async fn a_mode_change_after_a_pattern_command_stays_the_resting_pattern() {
    let (eyes, bus, supervisor) = started(EyesPort::Virtual).await;
    let (shown, followed) = tokio::join!(
        eyes.set_pattern(Pattern::Happy),
        eyes.follow(Pattern::Engaged)
    );
    shown.unwrap();
    followed.unwrap();
    assert_eq!(eyes.state().pattern, Pattern::Engaged);
    // The test ends by showing the resting pattern: the newer request's.
    let finished = bus.wait_for(
        TopicSet::parse(&["eyes.test.finished"]).unwrap(),
        |_| true,
        Duration::from_secs(10),
    );
    eyes.start_test().await.unwrap();
    finished.await.unwrap();
    let mut rx = eyes.subscribe();
    rx.wait_for(|s| !s.testing && s.pattern == Pattern::Engaged)
        .await
        .unwrap();
    supervisor.stop_all().await;
}
