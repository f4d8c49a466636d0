//! PlanService end to end on a real server: plans run, stream their events,
//! pre-empt each other on layers, wait for events published by clients, fail
//! with the step's id, are checked with their paths and lines, and stop all
//! at once; the console's `plan` commands and the plans folder.

mod common;

use std::time::Duration;

use cantina::v1::{
    self as pb, CancelPlanRequest, IfBusy, ListPlansRequest, PausePlanRequest, PlanEvent,
    PlanEventKind, PlanStatus, PublishEventRequest, ResumePlanRequest, RunPlanRequest,
    StartPlanRequest, StopAllRequest, StopWhen, ValidatePlanRequest, WatchPlansRequest,
    plan_service_client::PlanServiceClient,
};
use common::{TestServer, next_in, system};
use tonic::Code;

type Client = PlanServiceClient<cantina::client::AuthChannel>;

async fn client(server: &TestServer) -> Client {
    server.client().await.plan
}

fn start(document: &str) -> StartPlanRequest {
    StartPlanRequest {
        document: document.into(),
        ..Default::default()
    }
}

/// The events of a stream until the plan's end (within 10 s).
async fn until_end(stream: &mut tonic::Streaming<PlanEvent>) -> Vec<PlanEvent> {
    let mut events = Vec::new();
    loop {
        let event = next_in(stream).await;
        let end = event.kind() == PlanEventKind::Ended;
        events.push(event);
        if end {
            return events;
        }
    }
}

/// The next event of `kind` for `plan`, skipping others.
async fn next_of(
    stream: &mut tonic::Streaming<PlanEvent>,
    plan: &str,
    kind: PlanEventKind,
) -> PlanEvent {
    loop {
        let event = next_in(stream).await;
        if event.plan_id == plan && event.kind() == kind {
            return event;
        }
    }
}

fn kinds(events: &[PlanEvent]) -> Vec<(PlanEventKind, String)> {
    events
        .iter()
        .map(|e| (e.kind(), e.step_id.clone()))
        .collect()
}

#[tokio::test]
async fn run_plan_streams_every_step_until_the_end_with_one_correlation_id() {
    let server = TestServer::start().await;
    let mut plans = client(&server).await;
    let document = r#"{
        "name": "blink",
        "steps": [
            {"id": "happy", "eyePattern": {"pattern": "happy", "brightness": 0.5}},
            {"id": "hold", "delay": {"duration": "0.05s"}},
            {"id": "sad", "command": {"line": "eye pattern sad"}}
        ]
    }"#;
    let mut stream = plans
        .run_plan(RunPlanRequest {
            document: document.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let events = until_end(&mut stream).await;
    use PlanEventKind as K;
    assert_eq!(
        kinds(&events),
        [
            (K::Started, String::new()),
            (K::StepStarted, "happy".into()),
            (K::StepFinished, "happy".into()),
            (K::StepStarted, "hold".into()),
            (K::StepFinished, "hold".into()),
            (K::StepStarted, "sad".into()),
            (K::StepFinished, "sad".into()),
            (K::Ended, String::new()),
        ]
    );
    let last = events.last().unwrap();
    assert_eq!(last.status(), PlanStatus::Completed);
    assert_eq!(last.plan_name, "blink");
    let correlation = &events[0].correlation_id;
    assert!(!correlation.is_empty());
    assert!(events.iter().all(|e| &e.correlation_id == correlation));
    // A step's start says when it was due and how late it was.
    let sad = &events[5];
    let scheduled = Duration::try_from(sad.scheduled.unwrap()).unwrap();
    assert!(scheduled >= Duration::from_millis(50), "{scheduled:?}");
    assert!(sad.lateness.is_some() && sad.actual.is_some());
    // The command ran as if dispatched: the eyes show it.
    let status = system(&server)
        .await
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.eyes.unwrap().pattern, "sad");
    // The stream ends after the end.
    use tokio_stream::StreamExt;
    assert!(stream.next().await.is_none());
}

#[tokio::test]
async fn a_step_reached_after_its_time_says_when_it_was_due_and_how_late_it_is() {
    let server = TestServer::start().await;
    let mut plans = client(&server).await;
    let document = r#"{"steps": [
        {"id": "hold", "delay": {"duration": "0.3s"}},
        {"id": "late", "at": "0.1s", "eyePattern": {"pattern": "happy"}}
    ]}"#;
    let mut stream = plans
        .run_plan(RunPlanRequest {
            document: document.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let events = until_end(&mut stream).await;
    let late = events
        .iter()
        .find(|e| e.kind() == PlanEventKind::StepStarted && e.step_id == "late")
        .expect("the late step started");
    let time = |d: Option<prost_types::Duration>| Duration::try_from(d.unwrap()).unwrap();
    let (scheduled, actual, lateness) =
        (time(late.scheduled), time(late.actual), time(late.lateness));
    assert_eq!(scheduled, Duration::from_millis(100), "when it was due");
    assert!(actual >= Duration::from_millis(300), "{actual:?}");
    assert_eq!(lateness, actual - scheduled);
}

#[tokio::test]
async fn a_failing_step_fails_the_plan_naming_the_step_unless_it_may_fail() {
    let server = TestServer::start().await;
    let mut plans = client(&server).await;
    let document = r#"
name: fragile
steps:
  - id: shrug
    continueOnError: true
    command: {line: "resume music"}
  - id: boom
    command: {line: "pause music"}
  - id: never
    delay: {duration: 1s}
"#;
    let mut stream = plans
        .run_plan(RunPlanRequest {
            document: document.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let events = until_end(&mut stream).await;
    let failed: Vec<_> = events
        .iter()
        .filter(|e| e.kind() == PlanEventKind::StepFailed)
        .map(|e| e.step_id.as_str())
        .collect();
    assert_eq!(failed, ["shrug", "boom"]);
    let end = events.last().unwrap();
    assert_eq!(end.status(), PlanStatus::Failed);
    assert!(end.message.contains("'boom'"), "{}", end.message);
    assert!(end.message.contains("music"), "{}", end.message);
    assert!(!events.iter().any(|e| e.step_id == "never"));
}

#[tokio::test]
async fn a_bad_plan_is_refused_with_every_problem_and_its_line_and_nothing_runs() {
    let server = TestServer::start().await;
    let mut plans = client(&server).await;
    let document = "name: broken\nsteps:\n  - id: a\n    delay: {duration: -1s}\n  - id: a\n    eyePattern: {pattern: sparkly}\n";
    let error = plans.start_plan(start(document)).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let message = error.message();
    assert!(message.contains("steps[0].delay.duration"), "{message}");
    assert!(message.contains("line 4"), "{message}");
    assert!(message.contains("steps[1].id"), "{message}");
    assert!(
        message.contains("steps[2]") || message.contains("sparkly"),
        "{message}"
    );
    assert!(message.contains("nothing ran"), "{message}");
    // A command line that would not run, found before anything runs.
    let error = plans
        .start_plan(start(
            "steps:\n  - eyePattern: {pattern: happy}\n  - command: {line: engag}\n",
        ))
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let message = error.message();
    assert!(message.contains("steps[1].command.line"), "{message}");
    assert!(message.contains("line 3"), "{message}");
    assert!(message.contains("did you mean 'engage'"), "{message}");
    let listed = plans
        .list_plans(ListPlansRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed.plans.is_empty(),
        "nothing started: {:?}",
        listed.plans
    );
    // Neither plan nor document: a clear refusal.
    let error = plans
        .start_plan(StartPlanRequest::default())
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("exactly one of"));
    // Malformed text.
    let error = plans.start_plan(start("{\"steps\": [")).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    // A duration the binary encoding carries but proto3 JSON cannot (found
    // by the plan_proto fuzzer: it panicked the handler).
    let error = plans
        .start_plan(StartPlanRequest {
            plan: Some(pb::Plan {
                steps: vec![pb::PlanStep {
                    action: Some(pb::plan_step::Action::Delay(pb::DelayStep {
                        duration: Some(prost_types::Duration {
                            seconds: i64::MAX,
                            nanos: 0,
                        }),
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("duration"), "{}", error.message());
    // The server is unharmed: it still answers.
    system(&server)
        .await
        .get_status(pb::GetStatusRequest {})
        .await
        .unwrap();
}

#[tokio::test]
async fn validate_plan_lists_problems_with_paths_and_lines_or_the_resolved_timeline() {
    let server = TestServer::start().await;
    let mut plans = client(&server).await;
    let bad = r#"{
  "steps": [
    {"delay": {"duration": "1s"}},
    {"parallelSteps": {"steps": [
      {"delay": {"duration": "-2s"}}
    ]}}
  ]
}"#;
    let verdict = plans
        .validate_plan(ValidatePlanRequest {
            document: bad.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!verdict.valid);
    let problem = &verdict.problems[0];
    assert_eq!(
        problem.path,
        "steps[1].parallelSteps.steps[0].delay.duration"
    );
    assert_eq!(problem.line, 5);
    let good = r#"{
  "name": "timed",
  "steps": [
    {"id": "wait", "delay": {"duration": "1.5s"}},
    {"id": "both", "parallelSteps": {"steps": [
      {"id": "short", "delay": {"duration": "0.5s"}},
      {"id": "flash", "at": "3s", "eyePattern": {"pattern": "happy"}}
    ]}}
  ]
}"#;
    let verdict = plans
        .validate_plan(ValidatePlanRequest {
            document: good.into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(verdict.valid, "{:?}", verdict.problems);
    assert_eq!(verdict.name, "timed");
    let flash = verdict
        .timeline
        .iter()
        .find(|s| s.step_id == "flash")
        .unwrap();
    assert_eq!(flash.path, "steps[1].parallelSteps.steps[1]");
    assert_eq!(flash.depth, 1);
    assert_eq!(
        Duration::try_from(flash.start.unwrap()).unwrap(),
        Duration::from_secs(3)
    );
    let short = verdict
        .timeline
        .iter()
        .find(|s| s.step_id == "short")
        .unwrap();
    assert_eq!(
        Duration::try_from(short.start.unwrap()).unwrap(),
        Duration::from_millis(1500)
    );
}

#[tokio::test]
async fn foreground_pauses_ambient_which_resumes_where_it_was() {
    let server = TestServer::start().await;
    let mut plans = client(&server).await;
    let mut watch = plans
        .watch_plans(WatchPlansRequest::default())
        .await
        .unwrap()
        .into_inner();
    let ambient = plans
        .start_plan(start(
            r#"{"name": "idle", "layer": "LAYER_AMBIENT", "steps": [
                {"id": "long", "delay": {"duration": "0.6s"}},
                {"id": "after", "eyePattern": {"pattern": "thinking"}}
            ]}"#,
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(ambient.status(), PlanStatus::Running);
    next_of(&mut watch, &ambient.plan_id, PlanEventKind::StepStarted).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let show = plans
        .start_plan(start(
            r#"{"name": "show", "steps": [{"id": "bit", "delay": {"duration": "0.5s"}}]}"#,
        ))
        .await
        .unwrap()
        .into_inner();
    let paused = next_of(&mut watch, &ambient.plan_id, PlanEventKind::Paused).await;
    assert!(paused.message.contains("show"), "{}", paused.message);
    assert_eq!(paused.status(), PlanStatus::Paused);
    let resumed = next_of(&mut watch, &ambient.plan_id, PlanEventKind::Resumed).await;
    assert!(resumed.message.contains("show"), "{}", resumed.message);
    let paused_at = paused.timestamp.unwrap();
    let resumed_at = resumed.timestamp.unwrap();
    let held = (resumed_at.seconds - paused_at.seconds) as f64
        + f64::from(resumed_at.nanos - paused_at.nanos) / 1e9;
    assert!(held >= 0.45, "held while the show ran: {held}");
    let _ = show;
    // The delay kept its remaining time (~0.4 s): the next step starts
    // about that long after the resume, not at once and not after 0.6 s.
    let after = next_of(&mut watch, &ambient.plan_id, PlanEventKind::StepStarted).await;
    assert_eq!(after.step_id, "after");
    let at = after.timestamp.unwrap();
    let waited =
        (at.seconds - resumed_at.seconds) as f64 + f64::from(at.nanos - resumed_at.nanos) / 1e9;
    assert!(
        (0.25..0.58).contains(&waited),
        "the delay's remaining time after the resume: {waited}"
    );
    let scheduled = Duration::try_from(after.scheduled.unwrap()).unwrap();
    assert!(
        (Duration::from_millis(590)..Duration::from_millis(700)).contains(&scheduled),
        "plan time leaves the pause out: {scheduled:?}"
    );
    let end = next_of(&mut watch, &ambient.plan_id, PlanEventKind::Ended).await;
    assert_eq!(end.status(), PlanStatus::Completed);
}

#[tokio::test]
async fn a_busy_layer_replaces_queues_or_skips_and_override_cancels_below() {
    let server = TestServer::start().await;
    let mut plans = client(&server).await;
    let waiting = |name: &str| {
        format!(r#"{{"name": "{name}", "steps": [{{"waitForEvent": {{"topic": "ext.never"}}}}]}}"#)
    };
    let first = plans
        .start_plan(start(&waiting("first")))
        .await
        .unwrap()
        .into_inner();
    // Queued after it.
    let queued = plans
        .start_plan(StartPlanRequest {
            if_busy: IfBusy::Queue as i32,
            ..start(&waiting("second"))
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(queued.status(), PlanStatus::Pending);
    assert!(queued.message.contains("queued"), "{}", queued.message);
    // Skipped: a plan of that name runs there.
    let skipped = plans
        .start_plan(StartPlanRequest {
            if_busy: IfBusy::SkipIfRunning as i32,
            ..start(&waiting("first"))
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(skipped.status(), PlanStatus::Skipped);
    // The first ends: the queued one starts.
    let cancelled = plans
        .cancel_plan(CancelPlanRequest {
            plan_id: "first".into(),
            when: StopWhen::Now as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(cancelled.plan_id, first.plan_id);
    assert_eq!(cancelled.status(), PlanStatus::Cancelled);
    let listed = plans
        .list_plans(ListPlansRequest {})
        .await
        .unwrap()
        .into_inner();
    let second = listed
        .plans
        .iter()
        .find(|p| p.plan_id == queued.plan_id)
        .unwrap();
    assert_eq!(second.status(), PlanStatus::Running);
    // A replacing plan cancels it, with the reason.
    let mut watch = plans
        .watch_plans(WatchPlansRequest {
            plan_ids: vec![queued.plan_id.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    let urgent = plans
        .start_plan(StartPlanRequest {
            plan: Some(pb::Plan {
                name: "alarm".into(),
                layer: pb::Layer::Override as i32,
                steps: vec![pb::PlanStep {
                    action: Some(pb::plan_step::Action::Delay(pb::DelayStep {
                        duration: Some(prost_types::Duration {
                            seconds: 0,
                            nanos: 10_000_000,
                        }),
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let end = next_of(&mut watch, &queued.plan_id, PlanEventKind::Ended).await;
    assert_eq!(end.status(), PlanStatus::Cancelled);
    assert!(end.message.contains("alarm"), "{}", end.message);
    assert!(!urgent.plan_id.is_empty());
}

#[tokio::test]
async fn wait_for_event_is_released_by_a_matching_published_event() {
    let server = TestServer::start().await;
    let mut plans = client(&server).await;
    let mut stream = plans
        .run_plan(RunPlanRequest {
            document: r#"{"name": "button", "steps": [
                {"id": "press", "waitForEvent": {"topic": "ext.button.*", "match": {"button": "red"}, "timeout": "5s"}},
                {"id": "then", "eyePattern": {"pattern": "surprised"}}
            ]}"#
            .into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    // Waiting.
    loop {
        let event = next_in(&mut stream).await;
        if event.kind() == PlanEventKind::StepStarted && event.step_id == "press" {
            break;
        }
    }
    let publish = |button: &str| PublishEventRequest {
        topic: "ext.button.pressed".into(),
        payload: Some(cantina::json::struct_from_json(
            serde_json::json!({"button": button}),
        )),
        correlation_id: String::new(),
    };
    let mut sys = system(&server).await;
    sys.publish_event(publish("blue")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let listed = plans
        .list_plans(ListPlansRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        listed.plans[0].current_step_id, "press",
        "a blue press does not count"
    );
    sys.publish_event(publish("red")).await.unwrap();
    let events = until_end(&mut stream).await;
    assert_eq!(events.last().unwrap().status(), PlanStatus::Completed);
    assert!(events.iter().any(|e| e.step_id == "then"));
}

#[tokio::test]
async fn pause_resume_and_cancel_after_the_step() {
    let server = TestServer::start().await;
    let mut plans = client(&server).await;
    let started = plans
        .start_plan(start(
            r#"{"name": "slow", "steps": [
                {"id": "one", "delay": {"duration": "0.3s"}},
                {"id": "two", "delay": {"duration": "5s"}}
            ]}"#,
        ))
        .await
        .unwrap()
        .into_inner();
    let id = started.plan_id;
    let paused = plans
        .pause_plan(PausePlanRequest {
            plan_id: "slow".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paused.status(), PlanStatus::Paused);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let listed = plans
        .list_plans(ListPlansRequest {})
        .await
        .unwrap()
        .into_inner();
    let summary = &listed.plans[0];
    assert_eq!(
        summary.current_step_id, "one",
        "held: the delay did not end"
    );
    let resumed = plans
        .resume_plan(ResumePlanRequest {
            plan_id: id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resumed.status(), PlanStatus::Running);
    let mut watch = plans
        .watch_plans(WatchPlansRequest {
            plan_ids: vec![id.clone()],
        })
        .await
        .unwrap()
        .into_inner();
    let cancel = plans
        .cancel_plan(CancelPlanRequest {
            plan_id: id.clone(),
            when: StopWhen::AfterStep as i32,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(cancel.message.contains("step"), "{}", cancel.message);
    let end = next_of(&mut watch, &id, PlanEventKind::Ended).await;
    assert_eq!(end.status(), PlanStatus::Cancelled);
    let error = plans
        .pause_plan(PausePlanRequest {
            plan_id: "nothing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
}

#[tokio::test]
async fn stop_all_cancels_every_plan_on_every_layer() {
    let server = TestServer::start().await;
    let mut plans = client(&server).await;
    let wait = r#"[{"waitForEvent": {"topic": "ext.never"}}]"#;
    for (name, layer) in [("a", "LAYER_AMBIENT"), ("f", "LAYER_FOREGROUND")] {
        plans
            .start_plan(start(&format!(
                r#"{{"name": "{name}", "layer": "{layer}", "steps": {wait}}}"#
            )))
            .await
            .unwrap();
    }
    let stopped = plans
        .stop_all(StopAllRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stopped.cancelled.len(), 2, "{stopped:?}");
    assert!(
        stopped.message.contains("2 plans cancelled"),
        "{}",
        stopped.message
    );
    let listed = plans
        .list_plans(ListPlansRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        listed
            .plans
            .iter()
            .all(|p| p.status() == PlanStatus::Cancelled),
        "{:?}",
        listed.plans
    );
    // The ambient plan did not resume when the foreground one ended.
    assert_eq!(listed.plans.len(), 2);
}

#[tokio::test]
async fn too_many_queued_plans_are_refused() {
    let server = TestServer::start().await;
    let mut plans = client(&server).await;
    let wait = r#"{"steps": [{"waitForEvent": {"topic": "ext.never"}}]}"#;
    plans.start_plan(start(wait)).await.unwrap();
    let mut refused = None;
    for _ in 0..40 {
        match plans
            .start_plan(StartPlanRequest {
                if_busy: IfBusy::Queue as i32,
                ..start(wait)
            })
            .await
        {
            Ok(_) => {}
            Err(e) => {
                refused = Some(e);
                break;
            }
        }
    }
    let refused = refused.expect("the queue is bounded");
    assert_eq!(refused.code(), Code::ResourceExhausted);
    assert!(
        refused.message().contains("queued"),
        "{}",
        refused.message()
    );
    // The console says the same, with the same code.
    let console = server
        .dispatch("plan run greeting queue")
        .await
        .unwrap_err();
    assert_eq!(
        console.code(),
        Code::ResourceExhausted,
        "{}",
        console.message()
    );
}

#[tokio::test]
async fn the_plans_folder_holds_the_examples_which_run_by_name() {
    // A library of two tracks, as the examples' crossfade names track 2.
    let mut config = common::test_config();
    let music = config.audio.music_dir.clone().unwrap();
    for (name, freq) in [("One", 440.0), ("Two", 660.0)] {
        cantina_server::audio::fixtures::sine_wav(
            &music.join(format!("{name}.wav")),
            freq,
            2.0,
            44_100,
            2,
        )
        .unwrap();
    }
    config.audio.mode_chime = false;
    let server = TestServer::with_config(config).await;
    let mut plans = client(&server).await;
    let listed = plans
        .list_plans(ListPlansRequest {})
        .await
        .unwrap()
        .into_inner();
    let names: Vec<&str> = listed.saved.iter().map(|s| s.name.as_str()).collect();
    for example in ["ambient-idle", "dj-intro", "greeting"] {
        assert!(names.contains(&example), "{names:?}");
    }
    assert!(listed.saved.iter().all(|s| s.problem.is_empty()));
    let verdict = plans
        .validate_plan(ValidatePlanRequest {
            plan_name: "dj-intro".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(verdict.valid, "{:?}", verdict.problems);
    let error = plans
        .start_plan(StartPlanRequest {
            plan_name: "greetng".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(error.code(), Code::NotFound);
    assert!(error.message().contains("greeting"), "{}", error.message());
    // The console runs them by name too.
    let reply = server.dispatch("plan run ambient-idle").await.unwrap();
    assert!(reply.message.contains("ambient"), "{}", reply.message);
    let status = server.dispatch("plan status").await.unwrap();
    assert!(
        status.message.contains("ambient-idle"),
        "{}",
        status.message
    );
    let list = server.dispatch("plan list").await.unwrap();
    assert!(list.message.contains("greeting"), "{}", list.message);
    let stop = server.dispatch("plan stop ambient-idle").await.unwrap();
    assert!(stop.message.contains("cancel"), "{}", stop.message);
    let panic = server.dispatch("panic").await.unwrap();
    assert!(
        panic.message.contains("no plan was running"),
        "{}",
        panic.message
    );
}

#[tokio::test]
async fn a_track_no_query_matches_is_refused_before_anything_runs() {
    let server = TestServer::start().await;
    let mut plans = client(&server).await;
    let document = "name: dance\nsteps:\n  - eyePattern: {pattern: happy}\n  - playMusic:\n      query: no such song\n";
    let error = plans.start_plan(start(document)).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    let message = error.message();
    assert!(message.contains("steps[1].playMusic.query"), "{message}");
    assert!(message.contains("line 5"), "{message}");
    assert!(message.contains("library is empty"), "{message}");
    let listed = plans
        .list_plans(ListPlansRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(listed.plans.is_empty(), "nothing ran");
}

#[tokio::test]
async fn a_board_lost_mid_plan_fails_that_step_with_the_reason_and_the_server_runs_on() {
    use cantina_server::{
        config::EyesPort,
        eyes::sim::{SimBoard, SimOptions},
    };
    let dir = tempfile::tempdir().unwrap();
    let mut options = SimOptions::new(dir.path().join("eyes"));
    options.boot_delay = Duration::from_millis(50);
    let board = SimBoard::start(options).unwrap();
    let mut config = common::test_config();
    config.eyes_port = EyesPort::Path(board.link().to_path_buf());
    config.eyes.heartbeat = Duration::ZERO;
    config.eyes.answer_timeout = Duration::from_millis(300);
    let server = TestServer::with_config(config).await;
    let mut plans = client(&server).await;
    let mut stream = plans
        .run_plan(RunPlanRequest {
            document: r#"{"name": "fragile-eyes", "steps": [
                {"id": "smile", "eyePattern": {"pattern": "happy"}},
                {"id": "hold", "waitForEvent": {"topic": "ext.go", "timeout": "10s"}},
                {"id": "frown", "eyePattern": {"pattern": "sad"}},
                {"id": "after", "delay": {"duration": "0.1s"}}
            ]}"#
            .into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    loop {
        let event = next_in(&mut stream).await;
        if event.kind() == PlanEventKind::StepStarted && event.step_id == "hold" {
            break;
        }
    }
    board.unplug().unwrap();
    let mut sys = system(&server).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    loop {
        let status = sys
            .get_status(pb::GetStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if !status.eyes.unwrap().connected {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the board is seen lost"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sys.publish_event(PublishEventRequest {
        topic: "ext.go".into(),
        payload: None,
        correlation_id: String::new(),
    })
    .await
    .unwrap();
    let events = until_end(&mut stream).await;
    let failed = events
        .iter()
        .find(|e| e.kind() == PlanEventKind::StepFailed)
        .expect("a step failed");
    assert_eq!(failed.step_id, "frown");
    assert!(
        failed.message.contains("not connected"),
        "{}",
        failed.message
    );
    let end = events.last().unwrap();
    assert_eq!(end.status(), PlanStatus::Failed);
    assert!(end.message.contains("'frown'"), "{}", end.message);
    assert!(!events.iter().any(|e| e.step_id == "after"));
    // The server runs on.
    server.dispatch("status").await.unwrap();
}

#[tokio::test]
async fn closing_a_run_plan_stream_does_not_cancel_the_plan() {
    let server = TestServer::start().await;
    let mut plans = client(&server).await;
    let mut watch = plans
        .watch_plans(WatchPlansRequest::default())
        .await
        .unwrap()
        .into_inner();
    let mut stream = plans
        .run_plan(RunPlanRequest {
            document: r#"{"name": "on-its-own", "steps": [{"delay": {"duration": "0.3s"}}]}"#
                .into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let started = next_in(&mut stream).await;
    drop(stream);
    let end = next_of(&mut watch, &started.plan_id, PlanEventKind::Ended).await;
    assert_eq!(end.status(), PlanStatus::Completed);
}
