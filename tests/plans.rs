//! Plan documents as gRPC clients send them: a `cantina.v1.Plan` with every
//! step type and option, turned into proto3 JSON by the same mapping the
//! server uses, is what the plan decoder takes.

use cantina::v1::{
    AtFrom, DelayStep, EyePatternStep, Join, Layer, OnTimeout, ParallelSteps, Plan, PlanStep,
    PlaySoundStep, SpeakStep, WaitForEventStep, plan_step::Action as Proto,
};
use cantina_server::plans::{
    decode::{Limits, decode},
    model::{Action, Anchor, Join as J, Layer as L, OnTimeout as T, Repeat},
};

fn step(id: &str, action: Proto) -> PlanStep {
    PlanStep {
        id: id.into(),
        action: Some(action),
        ..Default::default()
    }
}

#[test]
fn a_proto_plan_in_proto3_json_is_what_the_decoder_takes() {
    let plan = Plan {
        name: "show".into(),
        layer: Layer::Ambient as i32,
        repeat: 3,
        steps: vec![
            step(
                "hello",
                Proto::Speak(SpeakStep {
                    text: "Welcome".into(),
                    duck_level: 0.25,
                    ..Default::default()
                }),
            ),
            PlanStep {
                at: Some(prost_types::Duration {
                    seconds: 83,
                    nanos: 500_000_000,
                }),
                at_from: AtFrom::Track as i32,
                continue_on_error: true,
                ..step(
                    "flash",
                    Proto::EyePattern(EyePatternStep {
                        pattern: "happy".into(),
                        brightness: Some(0.5),
                    }),
                )
            },
            step(
                "race",
                Proto::ParallelSteps(ParallelSteps {
                    join: Join::Any as i32,
                    steps: vec![
                        step(
                            "wait",
                            Proto::Delay(DelayStep {
                                duration: Some(prost_types::Duration {
                                    seconds: 2,
                                    nanos: 0,
                                }),
                            }),
                        ),
                        step(
                            "button",
                            Proto::WaitForEvent(WaitForEventStep {
                                topic: "ext.button.*".into(),
                                on_timeout: OnTimeout::Continue as i32,
                                ..Default::default()
                            }),
                        ),
                    ],
                }),
            ),
            step(
                "boom",
                Proto::PlaySound(PlaySoundStep {
                    file: "boom.wav".into(),
                }),
            ),
        ],
        ..Default::default()
    };
    let json = cantina::json::to_json(&plan);
    let decoded = decode(&json, &Limits::default()).unwrap_or_else(|e| panic!("{e:?}\n{json:#}"));
    assert_eq!(decoded.layer, L::Ambient);
    assert_eq!(decoded.repeat, Repeat::Times(3));
    assert!(
        matches!(decoded.steps[0].action, Action::Speak { duck_level: Some(l), .. } if (l - 0.25).abs() < 1e-6)
    );
    let at = decoded.steps[1].at.expect("an at");
    assert_eq!(at.anchor, Anchor::Track);
    assert_eq!(at.offset.as_millis(), 83_500);
    assert!(decoded.steps[1].continue_on_error);
    let Action::Parallel { join, steps } = &decoded.steps[2].action else {
        panic!("a group");
    };
    assert_eq!(*join, J::Any);
    assert!(matches!(
        steps[1].action,
        Action::WaitForEvent {
            on_timeout: T::Continue,
            ..
        }
    ));
    assert_eq!(
        decoded.steps[3].action,
        Action::PlaySound {
            file: "boom.wav".into()
        }
    );

    let looping = Plan {
        r#loop: true,
        steps: vec![step("d", Proto::Delay(DelayStep::default()))],
        ..Default::default()
    };
    let problems = decode(&cantina::json::to_json(&looping), &Limits::default()).unwrap_err();
    assert_eq!(problems[0].path, "steps[0].delay.duration", "{problems:?}");
}

mod common;

use std::{sync::Arc, time::Duration};

use cantina::v1::{PublishEventRequest, system_service_client::SystemServiceClient};
use cantina_server::{
    eyes::Pattern,
    lifecycle::BoxFuture,
    plans::{
        executor::{self, CommandRunner, Parts},
        timeline::{Outcome, Output},
    },
};
use common::TestServer;

/// `command` steps through the server's own Dispatch, as a client would.
struct Dispatch(String);

impl CommandRunner for Dispatch {
    fn run(&self, line: String) -> BoxFuture<'static, Result<String, String>> {
        let address = self.0.clone();
        Box::pin(async move {
            let mut clients = cantina::client::connect(&address, None)
                .await
                .map_err(|e| e.to_string())?;
            clients
                .command
                .dispatch(cantina::v1::DispatchRequest {
                    line,
                    correlation_id: String::new(),
                })
                .await
                .map(|r| r.into_inner().message)
                .map_err(|e| e.message().to_string())
        })
    }
}

/// The server's own subsystems, for the executor.
fn parts(server: &TestServer) -> Parts {
    let droid = server.server.droid();
    Parts {
        audio: droid.audio.clone(),
        speech: droid.speech.clone(),
        eyes: droid.eyes.clone(),
        bus: droid.bus.clone(),
        commands: Arc::new(Dispatch(server.address.clone())),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_speaks_sets_the_eyes_waits_for_a_button_and_runs_a_command() {
    let server = TestServer::start().await;
    let droid = server.server.droid();
    let parts = parts(&server);
    let plan = decode(
        &serde_json::json!({"steps": [
            {"id": "hello", "speak": {"text": "Hello there."}},
            {"id": "eyes", "eyePattern": {"pattern": "happy"}},
            {"id": "race", "parallelSteps": {"join": "JOIN_ANY", "steps": [
                {"id": "button", "waitForEvent": {"topic": "ext.button.*", "match": {"button": 3}}},
                {"id": "timeout", "delay": {"duration": "20s"}}
            ]}},
            {"id": "sad", "command": {"line": "eye pattern sad"}}
        ]}),
        &Limits::default(),
    )
    .unwrap();
    let (_control, rx) = tokio::sync::mpsc::channel(4);
    let reports = Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = reports.clone();
    let run = tokio::spawn(executor::run(plan, parts, rx, move |r| {
        log.lock().unwrap().push(r)
    }));

    // Once the eyes are happy the wait has begun: press the button (a
    // wrong one first, which must not release it).
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while droid.eyes.state().pattern != Pattern::Happy {
        assert!(
            std::time::Instant::now() < deadline,
            "the plan never set the eyes"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut system = SystemServiceClient::new(server.channel().await);
    for button in [2, 3] {
        system
            .publish_event(PublishEventRequest {
                topic: "ext.button.pressed".into(),
                payload: Some(cantina::json::struct_from_json(
                    serde_json::json!({"button": button}),
                )),
                correlation_id: String::new(),
            })
            .await
            .unwrap();
    }
    let outcome = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .expect("the plan ends long before its 20 s timeout")
        .unwrap();
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(
        droid.eyes.state().pattern,
        Pattern::Sad,
        "the command step ran"
    );
    let outputs: Vec<Output> = reports
        .lock()
        .unwrap()
        .iter()
        .map(|executor::Report::Timeline(_, o)| o.clone())
        .collect();
    let finished: Vec<&str> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Finished { id } => Some(id.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(finished, ["hello", "eyes", "button", "race", "sad"]);
    assert!(
        outputs.contains(&Output::Abort { step: vec![2, 1] }),
        "{outputs:?}"
    );
    server.server.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_paused_before_it_starts_runs_nothing_until_resumed() {
    let server = TestServer::start().await;
    let droid = server.server.droid();
    let parts = parts(&server);
    let plan = decode(
        &serde_json::json!({"steps": [{"id": "eyes", "eyePattern": {"pattern": "angry"}}]}),
        &Limits::default(),
    )
    .unwrap();
    let (control, rx) = tokio::sync::mpsc::channel(4);
    control.send(executor::Control::Pause).await.unwrap();
    let run = tokio::spawn(executor::run(plan, parts, rx, |_| {}));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_ne!(
        droid.eyes.state().pattern,
        Pattern::Angry,
        "nothing ran while paused"
    );
    control.send(executor::Control::Resume).await.unwrap();
    let outcome = tokio::time::timeout(Duration::from_secs(10), run)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(outcome, Outcome::Completed);
    assert_eq!(droid.eyes.state().pattern, Pattern::Angry);
    server.server.stop().await.unwrap();
}
