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
        servos: droid.servos.clone(),
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
        .map(|executor::Report::Timeline(_, o, _)| o.clone())
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

/// Writes a 16-bit stereo WAV at `rate` of `frames` frames, frame `i` being
/// `sample(i)` (left, right).
fn stereo_wav(
    path: &std::path::Path,
    rate: u32,
    frames: usize,
    sample: impl Fn(usize) -> (f32, f32),
) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).unwrap();
    let quantise = |s: f32| (s * f32::from(i16::MAX)).round() as i16;
    for i in 0..frames {
        let (left, right) = sample(i);
        writer.write_sample(quantise(left)).unwrap();
        writer.write_sample(quantise(right)).unwrap();
    }
    writer.finalize().unwrap();
}

/// The show, end to end through gRPC: a client sends `RunPlan` with
/// a plan that starts a track, and 2.000 s after the track's first sample
/// plays a click and sets the eyes happy. The real server with the real WAV
/// file output and the simulated eyes board on a pty.
///
/// What is measured, and how honestly:
/// - The click's start is exact and read from the output file: the track
///   (a quiet tone on the left channel only, starting on a peak so that its
///   first sample is not 0) and the click (on the right only, its first
///   sample sharp) are told apart by channel, and the click's first sample
///   must be exactly 2 × 48,000 frames after the track's.
/// - The stream's events say the same in plan time: the click's
///   `step.started` is `scheduled` 2 s after the track's first sample, that
///   sample's frame worked out from the file and the plan's start frame (the
///   first step's `audio_frame` less its `actual`), to the frame; it is not
///   late (handed out ahead of its time) and carries the clock's frame.
/// - When the click is heard: a WAV file is not heard, but the paced output
///   renders each period when its first frame is due, in real time, and
///   writes it to the file then. A thread of the test watches the sample
///   clock (every 0.2 ms) and notes when the period that holds the click's
///   frame was rendered; the click is "played" that moment plus its offset
///   into the period. This comes from the clock as the test sees it, not
///   from the server's own idea of when frames are heard (what the executor
///   times the eyes by).
/// - When the eyes light: the simulator's time for the `H` reaching the
///   board's firmware (after the serial line's byte time).
/// - The two must be within one output period (1024 frames, 21.3 ms), and
///   are held to half of one: the paced output renders a period ahead, so
///   eyes sent when the clock counts the click's frame rendered (without the
///   latency compensation) light up to a whole period early, which one
///   period would let pass. Measured on a quiet machine: within about 1 ms.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_show_run_through_grpc_clicks_on_the_very_sample_two_seconds_into_the_track_and_the_eyes_light_with_it()
 {
    use cantina::v1::{PlanEvent, PlanEventKind, PlanStatus, RunPlanRequest};
    use cantina_server::{
        config::{AudioOutput, EyesPort},
        eyes::sim::{SimBoard, SimEvent, SimOptions},
    };
    use std::{
        f32::consts::TAU,
        sync::atomic::{AtomicBool, Ordering},
        time::Instant,
    };

    const RATE: u32 = 48_000;
    const PERIOD: u32 = 1024;
    let music = tempfile::tempdir().unwrap();
    stereo_wav(
        &music.path().join("Test - Quiet Tone.wav"),
        RATE,
        3 * RATE as usize,
        |i| (0.05 * (TAU * 220.0 * i as f32 / RATE as f32).cos(), 0.0),
    );
    let renders = tempfile::tempdir().unwrap();
    let out = renders.path().join("show.wav");
    let eyes_dir = tempfile::tempdir().unwrap();
    let mut options = SimOptions::new(eyes_dir.path().join("eyes"));
    options.boot_delay = Duration::from_millis(50);
    let board = SimBoard::start(options).expect("a simulated board");
    let board_events = board.events();

    let mut config = common::test_config();
    config.audio.output = AudioOutput::Wav(out.clone());
    config.audio.music_dir = Some(music.path().to_path_buf());
    config.audio.sample_rate = Some(RATE);
    config.audio.period_frames = Some(PERIOD);
    config.audio.mode_chime = false;
    config.eyes_port = EyesPort::Path(board.link().to_path_buf());
    config.eyes.heartbeat = Duration::ZERO;
    let sounds = config.audio.data_dir.join("sounds");
    std::fs::create_dir_all(&sounds).unwrap();
    // A sharp first sample, then a quick decay.
    stereo_wav(&sounds.join("click.wav"), RATE, 480, |i| {
        (0.0, 0.9 * (1.0 - i as f32 / 480.0))
    });

    let server = TestServer::with_config(config).await;
    let droid = server.server.droid();
    let deadline = Instant::now() + Duration::from_secs(10);
    while droid.audio.state().library_size != 1 || !droid.eyes.state().connected {
        assert!(
            Instant::now() < deadline,
            "the library or the eyes never came up"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The test's own view of the sample clock: when each value appeared.
    let clock = droid.audio.clock().expect("the audio runs");
    let watching = Arc::new(AtomicBool::new(true));
    let watcher = std::thread::spawn({
        let (clock, watching) = (clock.clone(), watching.clone());
        move || {
            let mut seen = vec![(clock.frames(), Instant::now())];
            while watching.load(Ordering::Relaxed) {
                let frames = clock.frames();
                if frames != seen.last().unwrap().0 {
                    seen.push((frames, Instant::now()));
                }
                std::thread::sleep(Duration::from_micros(200));
            }
            seen
        }
    });

    let document = serde_json::json!({"name": "show", "steps": [
        {"id": "music", "playMusic": {"query": "quiet tone"}},
        {"id": "cue", "at": "2s", "atFrom": "AT_FROM_TRACK", "parallelSteps": {"steps": [
            {"id": "click", "playSound": {"file": "click.wav"}},
            {"id": "happy", "eyePattern": {"pattern": "happy"}}
        ]}}
    ]});
    let mut stream = server
        .client()
        .await
        .plan
        .run_plan(RunPlanRequest {
            document: document.to_string(),
            ..Default::default()
        })
        .await
        .expect("the plan is accepted")
        .into_inner();
    let mut events: Vec<PlanEvent> = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), async {
        use tokio_stream::StreamExt;
        while let Some(event) = stream.next().await {
            events.push(event.expect("not an error"));
        }
    })
    .await
    .expect("the show ends, and its stream with it");
    let end = events.last().expect("events");
    assert_eq!(
        (end.kind(), end.status()),
        (PlanEventKind::Ended, PlanStatus::Completed),
        "{events:#?}"
    );
    // The click has sounded and is in the file.
    tokio::time::sleep(Duration::from_millis(300)).await;
    watching.store(false, Ordering::Relaxed);
    let seen = watcher.join().unwrap();
    let lit = loop {
        match board_events.recv_timeout(Duration::from_secs(1)) {
            Ok(SimEvent::Command { byte: b'H', at, .. }) => break at,
            Ok(_) => {}
            Err(e) => panic!("the board never got H: {e}"),
        }
    };
    assert_eq!(droid.eyes.state().pattern, Pattern::Happy);
    server.server.stop().await.unwrap();

    let samples: Vec<f32> = hound::WavReader::open(&out)
        .unwrap()
        .into_samples::<f32>()
        .map(Result::unwrap)
        .collect();
    let first = |channel: usize| {
        samples
            .chunks(2)
            .position(|frame| frame[channel] != 0.0)
            .expect("it sounds")
    };
    let (track, click) = (first(0), first(1));
    assert_eq!(
        click - track,
        2 * RATE as usize,
        "the click's first sample is exactly 2.000 s after the track's (track at frame {track}, click at {click})"
    );

    // The events, in plan time: the plan starts on the frame the first
    // step's `audio_frame` less its `actual` (it starts at once).
    let started = |step: &str| {
        events
            .iter()
            .find(|e| e.kind() == PlanEventKind::StepStarted && e.step_id == step)
            .unwrap_or_else(|| panic!("{step} started: {events:#?}"))
    };
    let time = |d: Option<prost_types::Duration>| Duration::try_from(d.expect("a time")).unwrap();
    let frames = |d: Duration| (d.as_secs_f64() * f64::from(RATE)).round() as u64;
    let first_step = started("music");
    let plan_start = first_step.audio_frame - frames(time(first_step.actual));
    let cue = started("click");
    let scheduled = time(cue.scheduled);
    let track_in_plan = scheduled
        .checked_sub(Duration::from_secs(2))
        .expect("scheduled after 2 s");
    assert_eq!(
        plan_start + frames(track_in_plan),
        track as u64,
        "the click is scheduled 2 s after the track's first sample in plan time (scheduled {scheduled:?}, plan start at frame {plan_start})"
    );
    let lateness = time(cue.lateness);
    assert!(
        lateness < Duration::from_millis(1),
        "the click is handed out on time: {lateness:?} late"
    );
    assert_eq!(time(cue.actual), scheduled, "not late: it starts when due");
    assert!(
        cue.audio_frame > 0 && cue.audio_frame <= click as u64,
        "the clock's frame as it was handed out, ahead of its frame {click}: {}",
        cue.audio_frame
    );

    // The period that holds the click's frame, as the test saw it rendered.
    let click = click as u64;
    let rendered = seen
        .windows(2)
        .find(|w| w[0].0 <= click && click < w[1].0)
        .expect("the watcher saw the click's period rendered");
    let (period_start, seen_at) = (rendered[0].0, rendered[1].1);
    let played = seen_at + Duration::from_secs_f64((click - period_start) as f64 / f64::from(RATE));
    let gap = if lit >= played {
        (lit - played).as_secs_f64()
    } else {
        -(played - lit).as_secs_f64()
    };
    let period = f64::from(PERIOD) / f64::from(RATE);
    eprintln!(
        "eyes lit {:+.2} ms from the click being played (one period: {:.2} ms)",
        gap * 1e3,
        period * 1e3
    );
    assert!(
        gap.abs() <= period / 2.0,
        "the eyes lit {:.2} ms from the click being played, more than half a period ({:.2} ms)",
        gap * 1e3,
        period * 1e3
    );
}
