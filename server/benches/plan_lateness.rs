//! Plan step lateness on the audio clock, idle and under load, beside the
//! tokio timer's own lateness in the same run; sounds exact to the sample;
//! RunPlan → first `step.started`.
//!
//! **Setup.** A real server in this process (`cantina_server::start`: port 0,
//! the WAV file output paced at 48 kHz in 1,024-frame periods, the simulated
//! eyes board on a pty at 115,200 baud, logs captured), a music library of
//! one 60 s tone on the left channel only, and a click (right channel only,
//! its first sample sharp) in the data folder's `sounds`. Plans go through
//! `PlanService.RunPlan`, as a client sends them.
//!
//! **Plans.**
//! - *Timed*: a 0.1 s delay, then one `parallelSteps` group of N steps, step
//!   `k` at `0.5 s + k × 20 ms` plus a random 0–999 µs (so due moments fall
//!   at every phase of tokio's 1 ms timer tick): every fifth a `playSound`
//!   of the click, the others in turn an `eyePattern` and a `command` step
//!   (`eye pattern …`), the eyes alternating happy (`H`) and sad (`D`).
//! - *Chained*: a 0.1 s delay, then N/2 pairs of a `delay` (20 ms plus a
//!   random part of up to a period, so that delays end at every phase of
//!   the output's period) and an untimed `eyePattern`: each pattern is due
//!   when its delay ends.
//! - *Start*: plans of one `eyePattern` step, one after another.
//!
//! **How lateness is measured** (not from the events' `lateness`, which is
//! the timeline's view when it hands a step out, ahead of its time):
//! - The due frame. The plan starts on the frame its first step's
//!   `step.started` gives as `audio_frame` less its `actual` (the first step
//!   starts at once). A timed step is due on that frame plus its `at` in
//!   frames (rounded as the executor does); a chained pattern on the frame of
//!   its delay's start (`actual` of the delay's `step.started`) plus 20 ms.
//! - When a frame is heard, as the bench sees the clock: a thread of the
//!   bench reads the sample clock every ~100 µs and notes when each period
//!   appeared rendered. The paced output renders the period starting at
//!   frame `F` when `F` is due, on an absolute clock, so frame `D` is heard
//!   at `origin + D / rate`; `origin` is the earliest any period was seen
//!   (the minimum over every observation of its time less its first frame's
//!   time), so it does not take the server's word (`SampleClock::heard_at`)
//!   for it. How late the output itself rendered each period (as seen, so
//!   the watcher's delay included) is printed too.
//! - When the step began: the moment the simulated board read the pattern's
//!   byte from the pty (`SimEvent::Command::read_at`), so the step's whole
//!   path counts (the executor's timer, the eyes' actor, the serial write;
//!   `command` steps also the dispatcher). The board's bytes are matched to
//!   the steps in order and must be exactly the expected ones, or the run
//!   fails.
//! - Due moments follow the executor's contract: an `eyePattern` acts as its
//!   frame is heard; any other step (`command`) as it is rendered, the
//!   output latency (one period, 21.3 ms) before it is heard.
//! - The tokio timer: a task of the same runtime sleeps (`sleep_until`)
//!   to a schedule of the same shape (every 20 ms plus the same random
//!   sub-millisecond part) while the timed and chained plans run, and
//!   measures how late it woke against `Instant`.
//! - Sounds: the WAV file is read back after the run; each click's first
//!   non-zero sample on the right channel must be on its due frame.
//! - Start: from the RunPlan call to the first `step.started` message
//!   received.
//!
//! **Load.** Music playing (`play music 1`), 4 clients calling
//! `Dispatch("status")` in a loop, 32 `TailLogs` followers (follow, info and
//! up; the log dedup folds the storm's identical `running command` lines, so
//! they carry what is left), all in this process on the same two cores.
//!
//! Targets (the issue's): p99 ≤ 1 ms idle, ≤ 3 ms loaded; sounds exact to
//! the sample. Missing a target does not fail the run: this is a
//! measurement; broken measurements (the board's bytes not those expected, a
//! click not found) do. `cargo bench` passes `--bench`; without it (`cargo
//! test --benches`) this is a quick check with few steps. The full run takes
//! about 30 s.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use cantina::{
    client::AuthChannel,
    v1::{
        DispatchRequest, LogLevel, PlanEvent, PlanEventKind, PlanStatus, RunPlanRequest,
        TailLogsRequest, log_service_client::LogServiceClient,
        plan_service_client::PlanServiceClient,
    },
};
use cantina_server::{
    audio::SampleClock,
    config::{AudioOutput, Config, EyesPort},
    eyes::sim::{SimBoard, SimEvent, SimOptions},
};
use serde_json::{Value, json};
use tokio_stream::StreamExt;

const RATE: u32 = 48_000;
const PERIOD: u32 = 1024;
/// Between timed steps, before the random part.
const SPACING: Duration = Duration::from_millis(20);
/// The first timed step's `at`.
const FIRST_AT: Duration = Duration::from_millis(500);
/// A chained pattern's delay.
const CHAIN_DELAY: Duration = Duration::from_millis(20);
/// How often the clock watcher looks.
const WATCH_NAP: Duration = Duration::from_micros(100);
/// The click's length in frames (10 ms).
const CLICK_FRAMES: usize = 480;

struct Scale {
    /// Steps of the timed plan.
    timed: usize,
    /// Delay + pattern pairs of the chained plan.
    chained: usize,
    /// Plans for the start latency.
    starts: usize,
    /// Clients of the Dispatch storm.
    storm: usize,
    /// TailLogs followers.
    followers: usize,
}

impl Scale {
    const FULL: Scale = Scale {
        timed: 200,
        chained: 100,
        starts: 100,
        storm: 4,
        followers: 32,
    };
    const QUICK: Scale = Scale {
        timed: 20,
        chained: 10,
        starts: 10,
        storm: 2,
        followers: 4,
    };
}

type Plans = PlanServiceClient<AuthChannel>;

/// Tiny xorshift, for the sub-millisecond parts.
struct Jitter(u64);

impl Jitter {
    fn micros(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % 1000
    }
}

/// `d` in frames, rounded to the nearest as the executor does.
fn frames(d: Duration) -> u64 {
    u64::try_from((d.as_nanos() * u128::from(RATE) + 500_000_000) / 1_000_000_000).unwrap()
}

fn time(d: Option<prost_types::Duration>) -> Duration {
    Duration::try_from(d.expect("a time")).expect("not negative")
}

/// Timestamps every change of the sample clock, on a thread of its own.
struct Watcher {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Vec<(u64, Instant)>>,
}

impl Watcher {
    fn start(clock: SampleClock) -> Watcher {
        let stop = Arc::new(AtomicBool::new(false));
        let thread = thread::spawn({
            let stop = stop.clone();
            move || {
                let mut seen = Vec::with_capacity(1 << 14);
                let mut last = clock.frames();
                while !stop.load(Ordering::Relaxed) {
                    let frames = clock.frames();
                    if frames != last {
                        seen.push((frames, Instant::now()));
                        last = frames;
                    }
                    thread::sleep(WATCH_NAP);
                }
                seen
            }
        });
        Watcher { stop, thread }
    }

    fn finish(self) -> Vec<(u64, Instant)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the clock watcher")
    }
}

/// The output's timeline as the bench saw it: frame `D` is heard at
/// `origin + D / rate`.
struct Heard {
    origin: Instant,
}

impl Heard {
    /// From the watcher's observations: a change to `frames` seen at `t`
    /// means the period starting at `frames − PERIOD` was rendered by `t`,
    /// so `origin ≤ t − (frames − PERIOD) / rate`.
    fn fit(seen: &[(u64, Instant)]) -> Heard {
        let origin = seen
            .iter()
            .filter_map(|&(frames, t)| t.checked_sub(seconds(frames - u64::from(PERIOD))))
            .min()
            .expect("the watcher saw periods rendered");
        Heard { origin }
    }

    fn at(&self, frame: u64) -> Instant {
        self.origin + seconds(frame)
    }

    /// How late each period was seen rendered, in ms.
    fn render_lateness(&self, seen: &[(u64, Instant)], from: Instant, to: Instant) -> Vec<f64> {
        seen.iter()
            .filter(|(_, t)| (from..to).contains(t))
            .map(|&(frames, t)| ms_between(self.at(frames - u64::from(PERIOD)), t))
            .collect()
    }
}

fn seconds(frames: u64) -> Duration {
    Duration::from_nanos(
        u64::try_from(u128::from(frames) * 1_000_000_000 / u128::from(RATE)).unwrap(),
    )
}

/// `b − a` in ms, signed.
fn ms_between(a: Instant, b: Instant) -> f64 {
    if b >= a {
        (b - a).as_secs_f64() * 1e3
    } else {
        -(a - b).as_secs_f64() * 1e3
    }
}

/// A 16-bit stereo WAV of `frames` frames, frame `i` being `sample(i)`.
fn stereo_wav(path: &Path, frames: usize, sample: impl Fn(usize) -> (f32, f32)) {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut writer = hound::WavWriter::create(path, spec).expect("a WAV file");
    let quantise = |s: f32| (s * f32::from(i16::MAX)).round() as i16;
    for i in 0..frames {
        let (left, right) = sample(i);
        writer.write_sample(quantise(left)).unwrap();
        writer.write_sample(quantise(right)).unwrap();
    }
    writer.finalize().unwrap();
}

/// What a measured step does.
#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Click,
    Eyes,
    Command,
    /// An `eyePattern` after a delay.
    Chained,
}

/// A step whose start is measured: its kind, the frame it is due on, and
/// the byte the board must get (eyes and commands).
struct Due {
    kind: Kind,
    frame: u64,
    byte: Option<u8>,
}

/// The pattern of the `j`-th `eyePattern` step of a plan, and its byte.
fn pattern(j: usize) -> (&'static str, u8) {
    if j.is_multiple_of(2) {
        ("happy", b'H')
    } else {
        ("sad", b'D')
    }
}

/// The pattern of the `j`-th `command` step of a plan, and its byte: others
/// than the `eyePattern` steps', as a command acts a period before its frame
/// is heard, so before the `eyePattern` step due just ahead of it.
fn command_pattern(j: usize) -> (&'static str, u8) {
    if j.is_multiple_of(2) {
        ("angry", b'A')
    } else {
        ("thinking", b'T')
    }
}

/// Whether `byte` is one of the `command` steps'.
fn is_command(byte: u8) -> bool {
    matches!(byte, b'A' | b'T')
}

/// The timed plan, and each step's `at`, kind and byte.
fn timed_plan(n: usize, jitter: &mut Jitter) -> (Value, Vec<(Duration, Kind, Option<u8>)>) {
    let mut steps = Vec::with_capacity(n);
    let mut schedule = Vec::with_capacity(n);
    let (mut eyes, mut commands) = (0, 0);
    for k in 0..n {
        let at = FIRST_AT + SPACING * k as u32 + Duration::from_micros(jitter.micros());
        let at_text = format!("{:.6}s", at.as_secs_f64());
        let id = format!("t{k}");
        let (step, kind, byte) = match k % 5 {
            0 => (
                json!({"id": id, "at": at_text, "playSound": {"file": "click.wav"}}),
                Kind::Click,
                None,
            ),
            r => {
                if r % 2 == 1 {
                    let (name, byte) = pattern(eyes);
                    eyes += 1;
                    (
                        json!({"id": id, "at": at_text, "eyePattern": {"pattern": name}}),
                        Kind::Eyes,
                        Some(byte),
                    )
                } else {
                    let (name, byte) = command_pattern(commands);
                    commands += 1;
                    (
                        json!({"id": id, "at": at_text, "command": {"line": format!("eye pattern {name}")}}),
                        Kind::Command,
                        Some(byte),
                    )
                }
            }
        };
        steps.push(step);
        schedule.push((at, kind, byte));
    }
    let plan = json!({"name": "timed", "steps": [
        {"id": "start", "delay": {"duration": "0.1s"}},
        {"id": "show", "parallelSteps": {"steps": steps}}
    ]});
    (plan, schedule)
}

/// The chained plan, and its delays.
fn chained_plan(n: usize, jitter: &mut Jitter) -> (Value, Vec<Duration>) {
    let mut steps = vec![json!({"id": "start", "delay": {"duration": "0.1s"}})];
    let mut delays = Vec::with_capacity(n);
    for i in 0..n {
        // 20 ms and up to a period more, so that delays end at every phase
        // of the output's period.
        let period_us = u64::from(PERIOD) * 1_000_000 / u64::from(RATE);
        let delay = CHAIN_DELAY + Duration::from_micros(jitter.micros() * period_us / 1000);
        let text = format!("{:.6}s", delay.as_secs_f64());
        steps.push(json!({"id": format!("d{i}"), "delay": {"duration": text}}));
        steps.push(json!({"id": format!("e{i}"), "eyePattern": {"pattern": pattern(i).0}}));
        delays.push(delay);
    }
    (json!({"name": "chained", "steps": steps}), delays)
}

/// Runs `plan` through RunPlan; its events until the end.
async fn run(plans: &mut Plans, plan: &Value) -> Vec<PlanEvent> {
    let mut stream = plans
        .run_plan(RunPlanRequest {
            document: plan.to_string(),
            ..Default::default()
        })
        .await
        .expect("the plan is accepted")
        .into_inner();
    let mut events = Vec::new();
    while let Some(event) = stream.next().await {
        events.push(event.expect("not an error"));
    }
    let end = events.last().expect("events");
    assert_eq!(
        (end.kind(), end.status()),
        (PlanEventKind::Ended, PlanStatus::Completed),
        "{}: {}",
        end.plan_name,
        end.message
    );
    events
}

fn started<'a>(events: &'a [PlanEvent], step: &str) -> &'a PlanEvent {
    events
        .iter()
        .find(|e| e.kind() == PlanEventKind::StepStarted && e.step_id == step)
        .unwrap_or_else(|| panic!("step {step} started"))
}

/// The frame plan time 0 is (the clock's frame when its first step started,
/// less its plan time), and the loop's start in frames (the first step's
/// plan time: 0 unless a period was rendered as the plan started).
fn plan_start(events: &[PlanEvent]) -> (u64, u64) {
    let first = started(events, "start");
    let loop_start = frames(time(first.actual));
    (first.audio_frame - loop_start, loop_start)
}

/// The board's commands since the last call (waits a moment for stragglers).
async fn board_commands(events: &mpsc::Receiver<SimEvent>) -> Vec<(u8, Instant)> {
    tokio::time::sleep(Duration::from_millis(100)).await;
    events
        .try_iter()
        .filter_map(|e| match e {
            SimEvent::Command { byte, read_at, .. } => Some((byte, read_at)),
            _ => None,
        })
        .collect()
}

/// The tokio timer on the plans' schedule: wakes every 20 ms plus a random
/// sub-millisecond part until stopped; how late each wake was, in ms.
fn tokio_timer(stop: Arc<AtomicBool>, mut jitter: Jitter) -> tokio::task::JoinHandle<Vec<f64>> {
    tokio::spawn(async move {
        let mut late = Vec::new();
        let mut due = Instant::now() + SPACING;
        while !stop.load(Ordering::Relaxed) {
            tokio::time::sleep_until(due.into()).await;
            late.push(ms_between(due, Instant::now()));
            due += SPACING + Duration::from_micros(jitter.micros());
        }
        late
    })
}

/// One phase's measurements.
#[derive(Default)]
struct Phase {
    /// Lateness in ms.
    eyes: Vec<f64>,
    commands: Vec<f64>,
    chained: Vec<f64>,
    tokio: Vec<f64>,
    /// RunPlan call → first step.started, in ms.
    start: Vec<f64>,
    /// Due frames of the clicks.
    clicks: Vec<u64>,
    /// When the phase ran, for the output's own lateness.
    span: Option<(Instant, Instant)>,
}

async fn phase(
    scale: &Scale,
    plans: &mut Plans,
    board: &mpsc::Receiver<SimEvent>,
    seed: u64,
) -> (Phase, Vec<(Due, Instant)>) {
    let began = Instant::now();
    let mut out = Phase::default();
    let _ = board_commands(board).await;
    let stop = Arc::new(AtomicBool::new(false));
    let timer = tokio_timer(stop.clone(), Jitter(seed ^ 0xA5A5));

    // The timed plan.
    let (plan, schedule) = timed_plan(scale.timed, &mut Jitter(seed));
    let events = run(plans, &plan).await;
    let (start, loop_start) = plan_start(&events);
    let mut dues = Vec::new();
    for (k, &(at, kind, byte)) in schedule.iter().enumerate() {
        let event = started(&events, &format!("t{k}"));
        // Handed out ahead: it says when it is due, to the microsecond.
        let said = time(event.scheduled).as_micros();
        let due = (seconds(loop_start) + at).as_micros();
        assert!(
            said.abs_diff(due) <= 1,
            "t{k} is scheduled when it is due: {said} µs, not {due} µs"
        );
        dues.push(Due {
            kind,
            frame: start + loop_start + frames(at),
            byte,
        });
    }
    let bytes = board_commands(board).await;
    // Each kind's bytes in its steps' order.
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut measured: Vec<(Due, Instant)> = Vec::new();
    for commands in [false, true] {
        let got: Vec<&(u8, Instant)> = bytes
            .iter()
            .filter(|b| is_command(b.0) == commands)
            .collect();
        let mine: Vec<&Due> = dues
            .iter()
            .filter(|d| d.byte.is_some_and(|b| is_command(b) == commands))
            .collect();
        assert_eq!(
            text(&got.iter().map(|b| b.0).collect::<Vec<_>>()),
            text(&mine.iter().filter_map(|d| d.byte).collect::<Vec<_>>()),
            "the board got the patterns in order, and nothing else"
        );
        for (due, &&(_, at)) in mine.into_iter().zip(&got) {
            measured.push((
                Due {
                    kind: due.kind,
                    frame: due.frame,
                    byte: due.byte,
                },
                at,
            ));
        }
    }
    out.clicks = dues
        .iter()
        .filter(|d| d.kind == Kind::Click)
        .map(|d| d.frame)
        .collect();

    // The chained plan.
    let (plan, delays) = chained_plan(scale.chained, &mut Jitter(seed ^ 0x5A5A));
    let events = run(plans, &plan).await;
    let (start, _) = plan_start(&events);
    let bytes = board_commands(board).await;
    assert_eq!(bytes.len(), scale.chained, "a byte per pattern");
    for (i, &(got, at)) in bytes.iter().enumerate() {
        assert_eq!(got, pattern(i).1, "the board got the patterns in order");
        let delay = started(&events, &format!("d{i}"));
        // The delay began on a frame (plan time is the clock's frames).
        let frame = start + frames(time(delay.actual)) + frames(delays[i]);
        measured.push((
            Due {
                kind: Kind::Chained,
                frame,
                byte: Some(got),
            },
            at,
        ));
    }
    stop.store(true, Ordering::Relaxed);
    out.tokio = timer.await.expect("the timer task");

    // Start → first step.
    for i in 0..scale.starts {
        let plan = json!({"name": "blink", "steps": [{"id": "go", "eyePattern": {"pattern": pattern(i).0}}]});
        let called = Instant::now();
        let mut stream = plans
            .run_plan(RunPlanRequest {
                document: plan.to_string(),
                ..Default::default()
            })
            .await
            .expect("the plan is accepted")
            .into_inner();
        let mut first = None;
        while let Some(event) = stream.next().await {
            let event = event.expect("not an error");
            if event.kind() == PlanEventKind::StepStarted && first.is_none() {
                first = Some(called.elapsed().as_secs_f64() * 1e3);
            }
        }
        out.start.push(first.expect("the step started"));
    }
    let _ = board_commands(board).await;
    out.span = Some((began, Instant::now()));
    (out, measured)
}

/// Fills the lateness of a phase's eyes, commands and chained patterns once
/// the output's timeline is known.
fn lateness(phase: &mut Phase, measured: &[(Due, Instant)], heard: &Heard) {
    let latency = seconds(u64::from(PERIOD));
    for (due, acted) in measured {
        let heard_at = heard.at(due.frame);
        match due.kind {
            Kind::Eyes => phase.eyes.push(ms_between(heard_at, *acted)),
            Kind::Chained => phase.chained.push(ms_between(heard_at, *acted)),
            Kind::Command => phase.commands.push(ms_between(heard_at - latency, *acted)),
            Kind::Click => {}
        }
    }
}

/// The clicks that start on their due frame; the others' offsets.
fn exact(samples: &[f32], clicks: &[u64]) -> (usize, Vec<i64>) {
    let mut misses = Vec::new();
    let mut hits = 0;
    for &due in clicks {
        let from = due.saturating_sub(2000) as usize;
        let to = (due as usize + 2400).min(samples.len() / 2);
        let found = (from..to).find(|&f| samples[2 * f + 1] != 0.0);
        match found {
            Some(f) if f as u64 == due => hits += 1,
            Some(f) => misses.push(f as i64 - due as i64),
            None => panic!("no click near frame {due}"),
        }
    }
    (hits, misses)
}

fn percentile(values: &[f64], q: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

/// The load: music, a Dispatch storm and log followers, until `stop`.
async fn load(
    address: &str,
    scale: &Scale,
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
    entries: Arc<AtomicU64>,
) -> Vec<tokio::task::JoinHandle<()>> {
    let mut tasks = Vec::new();
    for _ in 0..scale.followers {
        let clients = cantina::client::connect(address, None)
            .await
            .expect("connects");
        let mut logs = LogServiceClient::new(clients.channel.clone());
        let mut stream = logs
            .tail_logs(TailLogsRequest {
                follow: true,
                min_level: LogLevel::Info as i32,
                ..Default::default()
            })
            .await
            .expect("TailLogs")
            .into_inner();
        let (stop, entries) = (stop.clone(), entries.clone());
        tasks.push(tokio::spawn(async move {
            let _clients = clients;
            while !stop.load(Ordering::Relaxed) {
                match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
                    Ok(Some(Ok(_))) => {
                        entries.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(_) => panic!("a follower's stream ended"),
                    Err(_) => {}
                }
            }
        }));
    }
    for _ in 0..scale.storm {
        let mut clients = cantina::client::connect(address, None)
            .await
            .expect("connects");
        let (stop, calls) = (stop.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                clients
                    .command
                    .dispatch(DispatchRequest {
                        line: "status".into(),
                        correlation_id: String::new(),
                    })
                    .await
                    .expect("status");
                calls.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tasks
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let scale = if full { Scale::FULL } else { Scale::QUICK };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    stereo_wav(
        &music.join("Bench - Left Tone.wav"),
        60 * RATE as usize,
        |i| {
            let t = i as f32 / RATE as f32;
            (0.05 * (std::f32::consts::TAU * 220.0 * t).sin(), 0.0)
        },
    );
    let out = dir.path().join("out.wav");
    let mut options = SimOptions::new(dir.path().join("eyes"));
    options.boot_delay = Duration::from_millis(50);
    let board = SimBoard::start(options).expect("the simulated board");
    let board_events = board.events();

    cantina_server::telemetry::init_capture_only("info");
    let defaults = Config::default();
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        shutdown_grace: Duration::from_millis(300),
        log_dir: dir.path().join("logs"),
        audio: cantina_server::config::AudioSettings {
            data_dir: dir.path().join("data"),
            music_dir: Some(music),
            output: AudioOutput::Wav(out.clone()),
            sample_rate: Some(RATE),
            period_frames: Some(PERIOD),
            mode_chime: false,
            ..defaults.audio.clone()
        },
        eyes_port: EyesPort::Path(board.link().to_path_buf()),
        ..defaults
    };
    config.eyes.heartbeat = Duration::ZERO;
    let sounds = config.audio.data_dir.join("sounds");
    std::fs::create_dir_all(&sounds).unwrap();
    stereo_wav(&sounds.join("click.wav"), CLICK_FRAMES, |i| {
        (0.0, 0.9 * (1.0 - i as f32 / CLICK_FRAMES as f32))
    });

    println!("# Plan step lateness on the audio clock, beside the tokio timer (one run)");
    println!();
    if !full {
        println!("QUICK CHECK (no --bench argument): few steps; run `cargo bench` for figures.");
        println!();
    }
    let build = if cfg!(debug_assertions) {
        "debug (figures meaningless)"
    } else {
        "release"
    };

    let (mut idle, mut loaded, watched, load_counts) = runtime.block_on(async {
        let server = cantina_server::start(config).await.expect("server starts");
        let address = server.local_addr().to_string();
        let droid = server.droid().clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        while droid.audio.state().library_size != 1 || !droid.eyes.state().connected {
            assert!(
                Instant::now() < deadline,
                "the library or the eyes never came up"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let watcher = Watcher::start(droid.audio.clock().expect("the audio runs"));
        let mut plans = cantina::client::connect(&address, None)
            .await
            .expect("connects")
            .plan;

        let idle = phase(&scale, &mut plans, &board_events, 0x9E37_79B9_7F4A_7C15).await;

        let mut clients = cantina::client::connect(&address, None)
            .await
            .expect("connects");
        clients
            .command
            .dispatch(DispatchRequest {
                line: "play music 1".into(),
                correlation_id: String::new(),
            })
            .await
            .expect("the music plays");
        let stop = Arc::new(AtomicBool::new(false));
        let (calls, entries) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let tasks = load(
            &address,
            &scale,
            stop.clone(),
            calls.clone(),
            entries.clone(),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let load_began = Instant::now();
        let calls_before = calls.load(Ordering::Relaxed);
        let loaded = phase(&scale, &mut plans, &board_events, 0x2545_F491_4F6C_DD1D).await;
        let load_secs = load_began.elapsed().as_secs_f64();
        let rate = (calls.load(Ordering::Relaxed) - calls_before) as f64 / load_secs;
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.expect("a load task");
        }
        let entries = entries.load(Ordering::Relaxed);
        assert!(droid.audio.state().connected, "the output stayed up");
        let watched = watcher.finish();
        server.stop().await.expect("the server stops");
        (idle, loaded, watched, (rate, entries))
    });

    let heard = Heard::fit(&watched);
    let samples: Vec<f32> = hound::WavReader::open(&out)
        .expect("the WAV output")
        .into_samples::<f32>()
        .map(Result::unwrap)
        .collect();
    let mut rows = Vec::new();
    for (name, (phase, measured), target) in [
        ("idle", (&mut idle.0, &idle.1), 1.0),
        ("loaded", (&mut loaded.0, &loaded.1), 3.0),
    ] {
        lateness(phase, measured, &heard);
        let (from, to) = phase.span.expect("ran");
        let output = heard.render_lateness(&watched, from, to);
        let (hits, misses) = exact(&samples, &phase.clicks);
        rows.push((name, target, output, hits, misses));
    }

    println!(
        "{build} build, 2 tokio workers; WAV output at {RATE} Hz in {PERIOD}-frame periods ({:.1} ms); eyes on the simulated board (115,200 baud). Lateness in ms, signed (negative: early).",
        f64::from(PERIOD) / f64::from(RATE) * 1e3
    );
    println!(
        "Loaded: music playing, {} clients calling Dispatch(\"status\") ({:.0} calls/s), {} TailLogs followers ({} entries delivered).",
        scale.storm, load_counts.0, scale.followers, load_counts.1
    );
    println!();
    println!("| metric | n | p50 | p99 | min | target | p99 ÷ target | p99 ÷ tokio's p99 |");
    println!("|---|---:|---:|---:|---:|---|---:|---:|");
    for (phase, (name, target, output, hits, misses)) in [&idle.0, &loaded.0].into_iter().zip(&rows)
    {
        let tokio_p99 = percentile(&phase.tokio, 0.99);
        let row = |label: &str, v: &[f64], target: Option<f64>, vs_tokio: bool| {
            let p99 = percentile(v, 0.99);
            let (target_text, ratio) = match target {
                Some(t) => {
                    let mark = if p99 <= t { "✓" } else { "✗" };
                    (format!("≤ {t} ms"), format!("**{:.2}×** {mark}", p99 / t))
                }
                None => (String::new(), String::new()),
            };
            let vs = if vs_tokio {
                format!("{:.2}×", p99 / tokio_p99)
            } else {
                String::new()
            };
            println!(
                "| {label}, {name} | {} | {:.2} | {:.2} | {:.2} | {target_text} | {ratio} | {vs} |",
                v.len(),
                percentile(v, 0.5),
                p99,
                min(v),
            );
        };
        row(
            "tokio `sleep_until`, same schedule",
            &phase.tokio,
            None,
            false,
        );
        row(
            "`eyePattern` at `at` (board read − frame heard)",
            &phase.eyes,
            Some(*target),
            true,
        );
        row(
            "`command` at `at` (board read − frame rendered)",
            &phase.commands,
            Some(*target),
            true,
        );
        row(
            "`eyePattern` after a `delay` (board read − delay's end heard)",
            &phase.chained,
            Some(*target),
            true,
        );
        let total = phase.clicks.len();
        let mark = if *hits == total { "✓" } else { "✗" };
        println!(
            "| `playSound` at `at`, first sample on the due frame, {name} | {total} | exact: {hits}/{total} | {} | | exact | {mark} | |",
            if misses.is_empty() {
                String::new()
            } else {
                format!("off by {misses:?} frames")
            }
        );
        row(
            "RunPlan call → first `step.started` received",
            &phase.start,
            None,
            false,
        );
        row(
            "the output's own render, as seen (for reference)",
            output,
            None,
            false,
        );
    }
}
