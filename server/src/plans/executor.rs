//! Runs one plan: feeds the [`Timeline`] the plan's time on the audio's
//! sample clock, runs each step it hands out through the subsystems' typed
//! handles, and reports what happens. Layers, the plan folder and
//! `PlanService` build on this.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::{sync::mpsc, task::JoinHandle};

use super::{
    model::{Action, OnTimeout, Plan},
    timeline::{Input, Outcome, Output, StepPath, StopMode, Timeline},
};
use crate::{
    audio::{Audio, SampleClock},
    bus::{Bus, TopicSet},
    eyes::Eyes,
    lifecycle::BoxFuture,
    speech::{SpeakOptions, Speech},
};

/// Runs console lines for `command` steps (the dispatcher, given by whoever
/// builds the executor, so that plans need not know the commands).
pub trait CommandRunner: Send + Sync {
    /// Runs `line`; `Ok` with the reply's message, `Err` with why it failed.
    fn run(&self, line: String) -> BoxFuture<'static, Result<String, String>>;
}

/// What a plan drives.
#[derive(Clone)]
pub struct Parts {
    /// Music, sounds.
    pub audio: Audio,
    /// The voice.
    pub speech: Speech,
    /// The eyes.
    pub eyes: Eyes,
    /// Events (`waitForEvent`).
    pub bus: Bus,
    /// `command` steps.
    pub commands: Arc<dyn CommandRunner>,
}

/// Changes asked of a running plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Hold.
    Pause,
    /// Carry on.
    Resume,
    /// Stop.
    Stop(StopMode),
}

/// The plan's time: the audio's sample clock since the start, paused spans
/// left out; the wall clock when no audio runs.
struct PlanClock {
    audio: Option<(SampleClock, u32)>,
    wall: Instant,
    start: Duration,
    paused_at: Option<Duration>,
    paused_total: Duration,
}

impl PlanClock {
    fn new(audio: &Audio) -> Self {
        let rate = audio.state().sample_rate;
        let audio = audio.clock().filter(|_| rate > 0).map(|c| (c, rate));
        let mut clock = Self {
            audio,
            wall: Instant::now(),
            start: Duration::ZERO,
            paused_at: None,
            paused_total: Duration::ZERO,
        };
        clock.start = clock.raw();
        clock
    }

    fn raw(&self) -> Duration {
        match &self.audio {
            Some((clock, rate)) => {
                Duration::from_secs_f64(clock.frames() as f64 / f64::from(*rate))
            }
            None => self.wall.elapsed(),
        }
    }

    /// Plan time now.
    fn now(&self) -> Duration {
        let raw = self.paused_at.unwrap_or_else(|| self.raw());
        raw.saturating_sub(self.start)
            .saturating_sub(self.paused_total)
    }

    fn pause(&mut self) {
        if self.paused_at.is_none() {
            self.paused_at = Some(self.raw());
        }
    }

    fn resume(&mut self) {
        if let Some(at) = self.paused_at.take() {
            self.paused_total += self.raw().saturating_sub(at);
        }
    }

    /// Wall time until plan time `t` (0 if passed).
    fn until(&self, t: Duration) -> Duration {
        t.saturating_sub(self.now())
    }
}

/// The speech a running step started, to stop it with the step.
type SpeechSlot = Arc<std::sync::Mutex<Option<String>>>;

/// What the executor reports, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    /// What the timeline said, with the plan time.
    Timeline(Duration, Output),
}

/// Runs `plan` until it ends; `report` hears every step's life.
pub async fn run(
    plan: Plan,
    parts: Parts,
    mut control: mpsc::Receiver<Control>,
    mut report: impl FnMut(Report) + Send,
) -> Outcome {
    let mut timeline = Timeline::new(plan);
    let mut clock = PlanClock::new(&parts.audio);
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<(u64, Input)>();
    // Each task's run number: the end of an aborted task (already queued
    // when it was aborted) is told apart from a new run of the same step.
    let mut running: HashMap<StepPath, (u64, JoinHandle<()>, SpeechSlot)> = HashMap::new();
    let mut runs: u64 = 0;
    let mut input = Input::Tick;
    // What was asked before the start is taken first: an ambient plan that
    // starts under a foreground one begins paused, its first step unrun.
    while let Ok(c) = control.try_recv() {
        match c {
            Control::Pause => {
                clock.pause();
                timeline.input(clock.now(), Input::Pause);
            }
            Control::Resume => {
                clock.resume();
                timeline.input(clock.now(), Input::Resume);
            }
            Control::Stop(mode) => input = Input::Stop(mode),
        }
    }
    loop {
        let now = clock.now();
        for output in timeline.input(now, input) {
            match &output {
                Output::Begin { step, at, .. } => {
                    let action = timeline.step(step).expect("a step").action.clone();
                    if !matches!(action, Action::Delay { .. } | Action::Parallel { .. }) {
                        let speech_id = Arc::new(std::sync::Mutex::new(None));
                        runs += 1;
                        let task = tokio::spawn(run_step(
                            parts.clone(),
                            action,
                            step.clone(),
                            clock.until(*at),
                            speech_id.clone(),
                            Reply {
                                run: runs,
                                tx: done_tx.clone(),
                            },
                            clock.start,
                        ));
                        running.insert(step.clone(), (runs, task, speech_id));
                    }
                }
                Output::Abort { step } => {
                    if let Some((_, task, speech)) = running.remove(step) {
                        task.abort();
                        let id = speech.lock().expect("id").clone();
                        if let Some(id) = id {
                            let _ = parts.speech.stop(Some(id)).await;
                        }
                    }
                }
                _ => {}
            }
            let ended = match &output {
                Output::Ended(outcome) => Some(outcome.clone()),
                _ => None,
            };
            report(Report::Timeline(now, output));
            if let Some(outcome) = ended {
                for (_, (_, task, speech)) in running.drain() {
                    task.abort();
                    let id = speech.lock().expect("id").clone();
                    if let Some(id) = id {
                        let _ = parts.speech.stop(Some(id)).await;
                    }
                }
                return outcome;
            }
        }
        let wake = timeline.next_wake().map(|t| clock.until(t));
        input = tokio::select! {
            Some((run, done)) = done_rx.recv() => match &done {
                Input::Done { step, .. } => {
                    if running.get(step).is_some_and(|r| r.0 == run) {
                        running.remove(step);
                        done
                    } else {
                        // An aborted run's end: nothing.
                        Input::Tick
                    }
                }
                _ => done,
            },
            Some(c) = control.recv() => match c {
                Control::Pause => { clock.pause(); Input::Pause }
                Control::Resume => { clock.resume(); Input::Resume }
                Control::Stop(mode) => Input::Stop(mode),
            },
            () = sleep(wake) => Input::Tick,
        };
    }
}

async fn sleep(d: Option<Duration>) {
    match d {
        // The clock moves in output periods: wake a little after.
        Some(d) => tokio::time::sleep(d + Duration::from_micros(500)).await,
        None => std::future::pending().await,
    }
}

/// Where a step's task reports, with its run number.
struct Reply {
    run: u64,
    tx: mpsc::UnboundedSender<(u64, Input)>,
}

impl Reply {
    fn send(&self, input: Input) {
        let _ = self.tx.send((self.run, input));
    }
}

/// Waits until the step's time, runs it, says how it ended.
async fn run_step(
    parts: Parts,
    action: Action,
    step: StepPath,
    wait: Duration,
    speech_id: Arc<std::sync::Mutex<Option<String>>>,
    done: Reply,
    clock_start: Duration,
) {
    if !wait.is_zero() {
        tokio::time::sleep(wait).await;
    }
    let result = perform(&parts, action, &speech_id, &done, clock_start).await;
    done.send(Input::Done { step, result });
}

async fn perform(
    parts: &Parts,
    action: Action,
    speech_id: &std::sync::Mutex<Option<String>>,
    done: &Reply,
    clock_start: Duration,
) -> Result<(), String> {
    let track_started = |at_frame: u64| {
        let rate = parts.audio.state().sample_rate.max(1);
        let at =
            Duration::from_secs_f64(at_frame as f64 / f64::from(rate)).saturating_sub(clock_start);
        done.send(Input::TrackStarted { at });
    };
    match action {
        Action::Speak {
            text,
            duck_level,
            duck_fade,
        } => {
            let options = SpeakOptions {
                duck_level,
                duck_fade,
                ..SpeakOptions::default()
            };
            speak_and_wait(&parts.bus, speech_id, parts.speech.speak(&text, options)).await
        }
        Action::PlayCachedSpeech { key, .. } => {
            speak_and_wait(
                &parts.bus,
                speech_id,
                parts.speech.play_cached(&key, SpeakOptions::default()),
            )
            .await
        }
        Action::MusicCrossfade { track, seconds } => {
            let started = parts
                .audio
                .crossfade(track, seconds)
                .await
                .map_err(|e| e.to_string())?;
            track_started(started.at_frame);
            Ok(())
        }
        Action::PlayMusic { query } => {
            let started = parts.audio.play(query).await.map_err(|e| e.to_string())?;
            track_started(started.at_frame);
            Ok(())
        }
        Action::StopMusic => parts
            .audio
            .stop()
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        Action::MusicDuck { level, fade } => parts
            .audio
            .duck(Some(level), Some(fade.as_millis() as u32))
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        Action::MusicUnduck { fade } => parts
            .audio
            .unduck(Some(fade.as_millis() as u32))
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        Action::PlaySound { file } => parts
            .audio
            .play_sound(file)
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        Action::EyePattern {
            pattern,
            brightness,
        } => {
            if let Some(b) = brightness {
                parts
                    .eyes
                    .set_brightness(b)
                    .await
                    .map_err(|e| e.to_string())?;
            }
            parts
                .eyes
                .set_pattern(pattern)
                .await
                .map_err(|e| e.to_string())
        }
        Action::WaitForEvent {
            selector,
            matches,
            timeout,
            on_timeout,
            ..
        } => {
            let wait = timeout.unwrap_or(Duration::from_secs(365 * 24 * 3600));
            let found = parts
                .bus
                .wait_for(
                    selector,
                    move |e| payload_matches(&e.payload, &matches),
                    wait,
                )
                .await;
            match (found, on_timeout) {
                (Ok(_), _) => Ok(()),
                (Err(crate::bus::WaitError::Timeout(_)), OnTimeout::Continue) => Ok(()),
                (Err(e), _) => Err(format!("no matching event: {e}")),
            }
        }
        Action::Command { line } => parts.commands.run(line).await.map(drop),
        Action::Move { .. } => Err("this droid has no servos yet".into()),
        Action::Delay { .. } | Action::Parallel { .. } => Ok(()),
    }
}

/// Starts speech with `start` and waits for its end; the wait is
/// subscribed before the speech starts, so its end is never missed.
async fn speak_and_wait(
    bus: &Bus,
    speech_id: &std::sync::Mutex<Option<String>>,
    start: impl Future<Output = Result<crate::speech::Spoken, crate::speech::SpeechError>>,
) -> Result<(), String> {
    let (id_tx, id_rx) = tokio::sync::watch::channel(None::<String>);
    let ended = bus.wait_for(
        TopicSet::parse(&["speech.ended"]).expect("a topic"),
        move |e| {
            let id = id_rx.borrow();
            id.as_deref().is_some_and(|id| e.payload["id"] == id)
        },
        Duration::from_secs(365 * 24 * 3600),
    );
    let spoken = start.await.map_err(|e| e.to_string())?;
    *speech_id.lock().expect("id") = Some(spoken.id.clone());
    let _ = id_tx.send(Some(spoken.id));
    let end = ended
        .await
        .map_err(|e| format!("the speech's end was not seen: {e}"))?;
    match end.payload["reason"].as_str() {
        Some("failed") => Err(format!(
            "the speech failed: {}",
            end.payload["error"].as_str().unwrap_or("no reason given")
        )),
        _ => Ok(()),
    }
}

/// Whether `payload` holds every field of `matches` with its value.
pub fn payload_matches(payload: &Value, matches: &serde_json::Map<String, Value>) -> bool {
    matches.iter().all(|(k, v)| payload.get(k) == Some(v))
}
