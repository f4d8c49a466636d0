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
