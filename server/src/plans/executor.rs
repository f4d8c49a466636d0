//! Runs one plan: feeds the [`Timeline`] the plan's time on the audio's
//! sample clock, runs each step it hands out through the subsystems' typed
//! handles, and reports what happens. Layers, the plan folder and
//! `PlanService` build on this.
//!
//! Plan time `t` is the sample clock's frame `start + paused + t × rate`.
//! The executor looks ahead: sounds go to the mixer before their time with
//! that frame and start on that very sample; eyes are sent as the frame is
//! heard, the output latency after the clock counts it rendered (see
//! `Moment`).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};

use super::{
    model::{Action, OnTimeout, Plan},
    timeline::{Input, Outcome, Output, StepPath, StopMode, Timeline},
};
use crate::{
    audio::{Audio, SampleClock},
    bus::{Bus, TopicSet},
    eyes::Eyes,
    lifecycle::BoxFuture,
    servos::{MoveOutcome, Servos},
    speech::{SpeakOptions, Speech},
};

/// Runs console lines for `command` steps (the dispatcher, given by whoever
/// builds the executor, so that plans need not know the commands).
pub trait CommandRunner: Send + Sync {
    /// Runs `line`; `Ok` with the reply's message, `Err` with why it failed.
    fn run(&self, line: String) -> BoxFuture<'static, Result<String, String>>;

    /// Whether `line` is a command that would run (known, with valid
    /// arguments), without running it; `Err` says what is wrong.
    fn check(&self, line: &str) -> Result<(), String> {
        let _ = line;
        Ok(())
    }
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
    /// The servos (`move`).
    pub servos: Servos,
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
///
/// Kept in the clock's own units ("ticks": frames of the sample clock, or
/// nanoseconds of the wall clock), so that plan time `t` is exactly the
/// frame `start + paused + t × rate` and a sound can be handed to the mixer
/// with it. The steps' tasks follow where plan time lies through a
/// [`Placement`].
struct PlanClock {
    /// The ticks.
    ticks: Ticks,
    /// The plan's start, in ticks.
    start: u64,
    /// When the pause under way began, in ticks.
    paused_at: Option<u64>,
    /// Ticks spent paused before.
    paused_total: u64,
    /// `start + paused_total` for the steps' tasks; `None` while paused.
    shift: watch::Sender<Option<u64>>,
}

/// What a plan's time counts: the audio's frames, or the wall clock's nanoseconds.
#[derive(Clone, Debug)]
enum Ticks {
    /// Frames of the output's sample clock.
    Audio(SampleClock),
    /// Nanoseconds since this instant.
    Wall(Instant),
}

impl Ticks {
    /// The clock now. With audio, between the output's periods too: the
    /// frame rendered now, worked out from when the output hears its frames
    /// (the clock's count moves a whole period at a time), kept between the
    /// count and the count plus one latency, so a stalled output stalls it.
    fn now(&self) -> u64 {
        match self {
            Ticks::Audio(clock) => {
                let counted = clock.frames();
                let (Some(origin), Some(latency)) = (clock.heard_at(0), clock.latency()) else {
                    return counted;
                };
                let rate = u128::from(clock.sample_rate());
                let since = Instant::now().saturating_duration_since(origin) + latency;
                let between =
                    u64::try_from(since.as_nanos() * rate / 1_000_000_000).unwrap_or(u64::MAX);
                between.clamp(counted, counted + self.of(latency))
            }
            Ticks::Wall(wall) => u64::try_from(wall.elapsed().as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// `d` in ticks (to the nearest frame).
    fn of(&self, d: Duration) -> u64 {
        match self {
            Ticks::Audio(clock) => {
                let rate = u128::from(clock.sample_rate());
                u64::try_from((d.as_nanos() * rate + 500_000_000) / 1_000_000_000)
                    .unwrap_or(u64::MAX)
            }
            Ticks::Wall(_) => u64::try_from(d.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// `ticks` as time.
    fn duration(&self, ticks: u64) -> Duration {
        match self {
            Ticks::Audio(clock) => {
                let rate = u128::from(clock.sample_rate());
                let nanos = u128::from(ticks) * 1_000_000_000 / rate;
                Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
            }
            Ticks::Wall(_) => Duration::from_nanos(ticks),
        }
    }
}

impl PlanClock {
    fn new(audio: &Audio) -> Self {
        Self::on(match audio.clock() {
            Some(clock) => Ticks::Audio(clock),
            None => Ticks::Wall(Instant::now()),
        })
    }

    /// A plan clock starting now on `ticks`.
    fn on(ticks: Ticks) -> Self {
        let start = ticks.now();
        Self {
            ticks,
            start,
            paused_at: None,
            paused_total: 0,
            shift: watch::Sender::new(Some(start)),
        }
    }

    /// Plan time now.
    fn now(&self) -> Duration {
        let raw = self.paused_at.unwrap_or_else(|| self.ticks.now());
        self.ticks.duration(
            raw.saturating_sub(self.start)
                .saturating_sub(self.paused_total),
        )
    }

    fn pause(&mut self) {
        if self.paused_at.is_none() {
            self.paused_at = Some(self.ticks.now());
            self.shift.send_replace(None);
        }
    }

    fn resume(&mut self) {
        if let Some(at) = self.paused_at.take() {
            self.paused_total += self.ticks.now().saturating_sub(at);
            self.shift
                .send_replace(Some(self.start + self.paused_total));
        }
    }

    /// Wall time until plan time `t` (0 if passed).
    fn until(&self, t: Duration) -> Duration {
        t.saturating_sub(self.now())
    }

    /// The sample clock's frame of plan time `t` (paused spans as they
    /// stand), with audio.
    fn frame_of(&self, t: Duration) -> Option<u64> {
        matches!(self.ticks, Ticks::Audio(_))
            .then(|| self.start + self.paused_total + self.ticks.of(t))
    }

    /// Where plan time lies, for a step's task.
    fn placement(&self) -> Placement {
        Placement {
            ticks: self.ticks.clone(),
            shift: self.shift.subscribe(),
        }
    }
}

/// Where plan time lies on the clock, as a step's task sees it: it follows
/// the plan's pauses.
#[derive(Clone)]
struct Placement {
    ticks: Ticks,
    /// The plan clock's start plus the time paused; `None` while paused.
    shift: watch::Receiver<Option<u64>>,
}

/// When a step acts, for what it does to land on its time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Moment {
    /// Sounds: handed to the mixer with their frame, ahead of it by the
    /// output latency and [`LOOK_AHEAD`] (to decode the file's start).
    HandOver,
    /// Eyes (and servos): sent as the step's frame is heard, so the light
    /// lands with the sound; the latency after the clock has rendered it.
    Heard,
    /// Anything else (a duck is a mixer command, taken at its next period):
    /// sent as the clock renders the step's frame.
    Rendered,
}

/// How long before the output must have a sound a step hands it over: time
/// to find and probe the file and decode its first period, and a few periods
/// to spare. A late hand-over still plays, late by what it missed.
const LOOK_AHEAD: Duration = Duration::from_millis(300);

impl Placement {
    /// The moment a step should act at to land on plan time `t`, if it is
    /// not paused: the instant, and `t` in ticks of the clock.
    fn deadline(&self, shift: u64, t: Duration, moment: Moment) -> (Instant, u64) {
        let target = shift + self.ticks.of(t);
        let instant = match &self.ticks {
            Ticks::Wall(wall) => *wall + Duration::from_nanos(target),
            Ticks::Audio(clock) => {
                let latency = clock.latency().unwrap_or_default();
                // Before the output's first period: from the clock's count.
                let heard = clock.heard_at(target).unwrap_or_else(|| {
                    Instant::now()
                        + self.ticks.duration(target.saturating_sub(clock.frames()))
                        + latency
                });
                match moment {
                    Moment::Heard => heard,
                    Moment::Rendered => heard.checked_sub(latency).unwrap_or(heard),
                    Moment::HandOver => heard.checked_sub(latency + LOOK_AHEAD).unwrap_or(heard),
                }
            }
        };
        (instant, target)
    }

    /// Waits for the moment to act for plan time `t` (holding while the plan
    /// is paused, then on for the time it was); returns `t` in ticks: the
    /// sample clock's frame, with audio.
    async fn wait(&mut self, t: Duration, moment: Moment) -> u64 {
        loop {
            let shift = *self.shift.borrow_and_update();
            let Some(shift) = shift else {
                if self.shift.changed().await.is_err() {
                    // The plan is over: this task is aborted.
                    std::future::pending::<()>().await;
                }
                continue;
            };
            let (deadline, target) = self.deadline(shift, t, moment);
            if deadline <= Instant::now() {
                return target;
            }
            tokio::select! {
                () = sleep_until(deadline) => return target,
                changed = self.shift.changed() => if changed.is_err() {
                    std::future::pending::<()>().await;
                },
            }
        }
    }

    /// The sample clock's frame `frame` as plan time, given that plan time
    /// `t` is the frame `target`.
    fn plan_time(&self, t: Duration, target: u64, frame: u64) -> Duration {
        if frame >= target {
            t + self.ticks.duration(frame - target)
        } else {
            t.saturating_sub(self.ticks.duration(target - frame))
        }
    }

    /// The sample clock's frame for a sound, with audio.
    fn frame(&self, target: u64) -> Option<u64> {
        matches!(self.ticks, Ticks::Audio(_)).then_some(target)
    }
}

/// A step's task, aborted when dropped: a plan whose executor is dropped
/// (its own task aborted) leaves no step running behind it.
struct StepTask(JoinHandle<()>);

impl StepTask {
    fn abort(&self) {
        self.0.abort();
    }
}

impl Drop for StepTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Stops what an aborted step started: its speech, its servo's move. On
/// tasks of their own, so the plan's loop never waits for them.
fn stop_what_it_started(parts: &Parts, speech: &SpeechSlot, servo: Option<String>) {
    if let Some(id) = speech.lock().expect("id").clone() {
        let speech = parts.speech.clone();
        tokio::spawn(async move {
            let _ = speech.stop(Some(id)).await;
        });
    }
    if let Some(name) = servo {
        let servos = parts.servos.clone();
        tokio::spawn(async move {
            let _ = servos.halt(Some(&name)).await;
        });
    }
}

/// The speech a running step started, to stop it with the step.
type SpeechSlot = Arc<std::sync::Mutex<Option<String>>>;

/// What the executor reports, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Report {
    /// What the timeline said, with the plan time, and the sample clock's
    /// frame it stands for (a step's start: the frame it starts on), with
    /// audio.
    Timeline(Duration, Output, Option<u64>),
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
    let mut running: HashMap<StepPath, (u64, StepTask, SpeechSlot, Option<String>)> =
        HashMap::new();
    // The steps' tasks carry the plan's correlation id, as its events do.
    let correlation = crate::bus::current_correlation();
    let mut runs: u64 = 0;
    let mut input = Input::Tick;
    let mut first = true;
    // What was asked before the start is taken first: an ambient plan that
    // starts under a foreground one begins paused, its first step unrun.
    while let Ok(c) = control.try_recv() {
        match c {
            Control::Pause => {
                clock.pause();
                timeline.input(Duration::ZERO, Input::Pause);
            }
            Control::Resume => {
                clock.resume();
                timeline.input(Duration::ZERO, Input::Resume);
            }
            Control::Stop(mode) => input = Input::Stop(mode),
        }
    }
    loop {
        // The plan starts at plan time 0 exactly (its clock started a few
        // microseconds ago), so its first loop's offsets are the plan's.
        let now = if std::mem::take(&mut first) {
            Duration::ZERO
        } else {
            clock.now()
        };
        for output in timeline.input(now, input) {
            match &output {
                Output::Begin { step, at, .. } => {
                    let action = timeline.step(step).expect("a step").action.clone();
                    if !matches!(action, Action::Delay { .. } | Action::Parallel { .. }) {
                        let speech_id = Arc::new(std::sync::Mutex::new(None));
                        let servo = match &action {
                            Action::Move { target, .. } => Some(target.clone()),
                            _ => None,
                        };
                        runs += 1;
                        let work = run_step(
                            parts.clone(),
                            action,
                            step.clone(),
                            *at,
                            clock.placement(),
                            speech_id.clone(),
                            Reply {
                                run: runs,
                                tx: done_tx.clone(),
                            },
                        );
                        let task = match &correlation {
                            Some(id) => {
                                tokio::spawn(crate::bus::with_correlation(id.to_string(), work))
                            }
                            None => tokio::spawn(work),
                        };
                        running.insert(step.clone(), (runs, StepTask(task), speech_id, servo));
                    }
                }
                Output::Abort { step } => {
                    if let Some((_, task, speech, servo)) = running.remove(step) {
                        task.abort();
                        stop_what_it_started(&parts, &speech, servo);
                    }
                }
                _ => {}
            }
            let ended = match &output {
                Output::Ended(outcome) => Some(outcome.clone()),
                _ => None,
            };
            let frame = match &output {
                Output::Begin { at, .. } => clock.frame_of(*at),
                _ => clock.frame_of(now),
            };
            report(Report::Timeline(now, output, frame));
            if let Some(outcome) = ended {
                for (_, (_, task, speech, servo)) in running.drain() {
                    task.abort();
                    stop_what_it_started(&parts, &speech, servo);
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
        Some(d) => sleep_until(Instant::now() + d).await,
        None => std::future::pending().await,
    }
}

/// How early the runtime's timer (whole milliseconds, and late by up to one
/// more) hands over to a thread's own sleep for the rest.
const TIMER_SLACK: Duration = Duration::from_millis(3);

/// Sleeps until `deadline`, to well under a millisecond: the runtime's timer
/// until shortly before, then a blocking thread's sleep (the kernel's
/// high-resolution timer) for the rest.
async fn sleep_until(deadline: Instant) {
    if let Some(early) = deadline.checked_sub(TIMER_SLACK)
        && early > Instant::now()
    {
        tokio::time::sleep_until(early.into()).await;
    }
    if deadline > Instant::now() {
        let _ = tokio::task::spawn_blocking(move || {
            let left = deadline.saturating_duration_since(Instant::now());
            if !left.is_zero() {
                std::thread::sleep(left);
            }
        })
        .await;
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
///
/// The executor looks ahead: a sound is handed to the mixer before its time
/// with the sample clock's frame it must start on, and starts on that very
/// sample; eyes are sent as that frame is heard, the output latency after
/// the clock has rendered it, so that the light lands with the sound. A
/// sound handed over plays even if the plan pauses or stops in the moment
/// ([`LOOK_AHEAD`] and the latency) before it sounds.
async fn run_step(
    parts: Parts,
    action: Action,
    step: StepPath,
    at: Duration,
    mut placement: Placement,
    speech_id: Arc<std::sync::Mutex<Option<String>>>,
    done: Reply,
) {
    let moment = match action {
        Action::PlaySound { .. } | Action::PlayMusic { .. } | Action::MusicCrossfade { .. } => {
            Moment::HandOver
        }
        Action::EyePattern { .. } | Action::Move { .. } => Moment::Heard,
        _ => Moment::Rendered,
    };
    let target = placement.wait(at, moment).await;
    let when = When {
        at,
        target,
        placement: &placement,
    };
    let result = perform(&parts, action, &speech_id, &done, when).await;
    if moment == Moment::HandOver && result.is_ok() {
        // A sound handed over ahead of its frame has not begun yet: the
        // step ends when it does, so what follows it comes after it.
        placement.wait(at, Moment::Rendered).await;
    }
    done.send(Input::Done { step, result });
}

/// A step's time: plan time `at`, and the same in ticks of the plan's clock.
struct When<'a> {
    at: Duration,
    target: u64,
    placement: &'a Placement,
}

async fn perform(
    parts: &Parts,
    action: Action,
    speech_id: &std::sync::Mutex<Option<String>>,
    done: &Reply,
    when: When<'_>,
) -> Result<(), String> {
    // A frame already passed (a step without `at`) starts at once.
    let frame = when.placement.frame(when.target);
    let track_started = |at_frame: u64| {
        let at = when.placement.plan_time(when.at, when.target, at_frame);
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
                .crossfade_at(track, seconds, frame)
                .await
                .map_err(|e| e.to_string())?;
            track_started(started.at_frame);
            Ok(())
        }
        Action::PlayMusic { query } => {
            let started = parts
                .audio
                .play_at(query, frame)
                .await
                .map_err(|e| e.to_string())?;
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
            .play_sound_at(file, frame)
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
        Action::Move {
            target,
            position,
            duration,
            easing,
        } => {
            let started = parts
                .servos
                .move_to(&target, position, duration, easing)
                .await
                .map_err(|e| e.to_string())?;
            match parts
                .servos
                .wait_move(started.id)
                .await
                .map_err(|e| e.to_string())?
            {
                MoveOutcome::Finished | MoveOutcome::Replaced { .. } => Ok(()),
                MoveOutcome::Halted => Err(format!("the move of '{target}' was halted")),
                MoveOutcome::Interrupted { reason } => {
                    Err(format!("the move of '{target}' was cut short: {reason}"))
                }
                MoveOutcome::Stopped => Err("the servos stopped".into()),
            }
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::mixer::mixer;

    const RATE: u32 = 48_000;

    /// A sample clock and the mixer that advances it.
    fn clock() -> (crate::audio::mixer::Mixer, SampleClock) {
        let (mixer, control) = mixer(RATE, 4096);
        let clock = control.clock();
        drop(control);
        (mixer, clock)
    }

    fn advance(mixer: &mut crate::audio::mixer::Mixer, frames: usize) {
        let mut out = vec![0.0; frames * 2];
        mixer.render(&mut out);
    }

    #[test]
    fn plan_time_is_the_start_frame_plus_the_pauses_plus_t_in_frames() {
        let (mut mixer, clock) = clock();
        advance(&mut mixer, 1000);
        let mut plan = PlanClock::on(Ticks::Audio(clock));
        let place = plan.placement();
        let target = |place: &Placement, t: Duration| {
            let shift = (*place.shift.borrow()).expect("not paused");
            place.deadline(shift, t, Moment::Rendered).1
        };
        assert_eq!(target(&place, Duration::from_secs(2)), 1000 + 96_000);
        assert_eq!(target(&place, Duration::from_micros(10_417)), 1000 + 500);
        advance(&mut mixer, 480);
        assert_eq!(plan.now(), Duration::from_millis(10));
        plan.pause();
        assert_eq!(*place.shift.borrow(), None, "paused: no frame is known");
        advance(&mut mixer, 4800);
        assert_eq!(plan.now(), Duration::from_millis(10), "time holds");
        plan.resume();
        assert_eq!(plan.now(), Duration::from_millis(10));
        assert_eq!(
            target(&place, Duration::from_secs(2)),
            1000 + 4800 + 96_000,
            "on by the time paused"
        );
    }

    #[test]
    fn a_track_frame_as_plan_time_gives_the_same_frame_back() {
        let (mut mixer, clock) = clock();
        advance(&mut mixer, 777);
        let plan = PlanClock::on(Ticks::Audio(clock));
        let place = plan.placement();
        let shift = 777;
        for (t, late) in [(0_u64, 0_u64), (1, 1), (12_345, 3), (96_001, 1023)] {
            let at = place.ticks.duration(t);
            let target = place.deadline(shift, at, Moment::HandOver).1;
            assert_eq!(target, shift + t);
            let track = place.plan_time(at, target, target + late);
            // What a step 2 s after the track is handed: exactly 2 s of frames later.
            let cue = place
                .deadline(shift, track + Duration::from_secs(2), Moment::HandOver)
                .1;
            assert_eq!(cue, target + late + 96_000, "t {t}, late {late}");
        }
    }

    #[test]
    fn eyes_go_out_as_the_frame_is_heard_and_sounds_ahead_of_it() {
        let (mut mixer, clock) = clock();
        advance(&mut mixer, 4800);
        let heard = Instant::now() + Duration::from_secs(1);
        clock.mark_heard(4800, heard, Duration::from_millis(40));
        let plan = PlanClock::on(Ticks::Audio(clock));
        let place = plan.placement();
        let at = Duration::from_millis(500);
        let eyes = place.deadline(4800, at, Moment::Heard).0;
        assert_eq!(eyes, heard + at);
        let rendered = place.deadline(4800, at, Moment::Rendered).0;
        assert_eq!(rendered, heard + at - Duration::from_millis(40));
        let sound = place.deadline(4800, at, Moment::HandOver).0;
        assert_eq!(sound, heard + at - Duration::from_millis(40) - LOOK_AHEAD);
    }
}
