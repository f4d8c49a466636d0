//! The mode chime and DJ mode's commentary hook, end to end on a real
//! server: the chime heard (by its notes) in the mix the WAV output writes
//! after a mode change, and not at all with `mode_chime` off; DJ mode's
//! `music.dj.transition.upcoming`, watched over gRPC, naming the track it
//! then really crossfades into.

mod common;

use std::{
    f64::consts::PI,
    path::Path,
    time::{Duration, Instant},
};

use cantina::v1::{
    BusEvent, Mode, SetModeRequest, WatchEventsRequest, system_service_client::SystemServiceClient,
};
use cantina_server::{
    audio::{
        SampleClock,
        fixtures::{self, Format, Tags},
    },
    config::{AudioOutput, Config},
};
use common::{TestServer, next_in, test_config};
use tonic::Streaming;

const RATE: u32 = 48_000;
/// The chimes' notes (Hz), as `audio::chime` synthesizes them.
const INTERACTIVE: [f64; 3] = [1046.50, 1318.51, 1567.98];
const AMBIENT: [f64; 2] = [880.00, 1174.66];
const IDLE: [f64; 2] = [783.99, 523.25];

fn config(music: &Path, wav: &Path, chime: bool) -> Config {
    let mut config = test_config();
    config.audio.music_dir = Some(music.to_path_buf());
    config.audio.output = AudioOutput::Wav(wav.to_path_buf());
    config.audio.sample_rate = Some(RATE);
    config.audio.period_frames = Some(256);
    config.audio.mode_chime = chime;
    config
}

fn clock(server: &TestServer) -> SampleClock {
    server.server.droid().audio.clock().expect("the audio runs")
}

/// Waits until the output has rendered `frame` (it renders in real time).
async fn until_frame(clock: &SampleClock, frame: u64) {
    let start = Instant::now();
    while clock.frames() < frame {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the output stopped rendering"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn frames(seconds: f64) -> u64 {
    (seconds * f64::from(RATE)) as u64
}

/// The left channel of a 32-bit float stereo WAV.
fn left_channel(wav: &Path) -> Vec<f32> {
    let samples: Vec<f32> = hound::WavReader::open(wav)
        .unwrap()
        .into_samples::<f32>()
        .map(Result::unwrap)
        .collect();
    samples.iter().step_by(2).copied().collect()
}

/// The power of `freq` in `signal` (Goertzel), per sample squared.
fn power(signal: &[f32], freq: f64) -> f64 {
    let w = 2.0 * PI * freq / f64::from(RATE);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0, 0.0);
    for &x in signal {
        let s = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let n = signal.len() as f64;
    (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (n * n)
}

/// Asserts that `window` holds every note of `own` clearly, and the notes
/// of `others` (other chimes) at most faintly.
fn assert_chime(window: &[f32], what: &str, own: &[f64], others: &[f64]) {
    let quietest = own
        .iter()
        .map(|&f| power(window, f))
        .fold(f64::INFINITY, f64::min);
    // A note of the chime at full volume is ~1e-5 here; silence is 0.
    assert!(
        quietest > 1e-7,
        "{what}: its notes are missing ({quietest:e})"
    );
    for &f in others {
        let theirs = power(window, f);
        assert!(
            theirs * 20.0 < quietest,
            "{what}: {f} Hz, another chime's note, at {theirs:e} against {quietest:e}"
        );
    }
}

#[tokio::test]
async fn a_mode_change_chimes_on_the_effects_bus_even_as_idle_stops_the_music() {
    let music = tempfile::tempdir().unwrap();
    fixtures::make(
        music.path(),
        "A - Low",
        Format::Wav,
        200.0,
        8.0,
        &Tags::none(),
    )
    .unwrap();
    let out = tempfile::tempdir().unwrap();
    let wav = out.path().join("mix.wav");
    let server = TestServer::with_config(config(music.path(), &wav, true)).await;
    let clock = clock(&server);
    // The boot's chime (into IDLE) is over.
    until_frame(&clock, frames(0.8)).await;

    let engaged = clock.frames();
    server.dispatch("engage").await.unwrap();
    until_frame(&clock, engaged + frames(0.7)).await;

    // Music plays; SetMode IDLE stops it, and the IDLE chime still sounds.
    let start = Instant::now();
    while server.dispatch("play music low").await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "never scanned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    until_frame(&clock, clock.frames() + frames(0.3)).await;
    let idled = clock.frames();
    SystemServiceClient::new(server.channel().await)
        .set_mode(SetModeRequest {
            mode: Mode::Idle as i32,
        })
        .await
        .unwrap();
    until_frame(&clock, idled + frames(0.7)).await;
    server.server.stop().await.unwrap();

    let left = left_channel(&wav);
    let window = |from: u64, seconds: f64| &left[from as usize..(from + frames(seconds)) as usize];
    let others = |own: &[f64]| -> Vec<f64> {
        [&INTERACTIVE[..], &AMBIENT, &IDLE]
            .concat()
            .into_iter()
            .filter(|f| !own.contains(f))
            .collect()
    };
    // Shortly after the change: its notes within 0.6 s of the request.
    assert_chime(
        window(engaged, 0.6),
        "engage",
        &INTERACTIVE,
        &others(&INTERACTIVE),
    );
    assert_chime(window(idled, 0.6), "SetMode IDLE", &IDLE, &others(&IDLE));
    // And the music really stopped under it: no 200 Hz once its fade is over.
    let after = window(idled + frames(0.15), 0.4);
    assert!(
        power(after, 200.0) < 1e-9,
        "the music plays on after IDLE ({:e})",
        power(after, 200.0)
    );
    // Peaks stay well below full scale.
    let peak = left.iter().fold(0.0_f32, |m, s| m.max(s.abs()));
    assert!(peak < 0.5, "peak {peak}");
}

#[tokio::test]
async fn with_mode_chime_off_a_mode_change_is_silent() {
    let music = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let wav = out.path().join("mix.wav");
    let server = TestServer::with_config(config(music.path(), &wav, false)).await;
    let clock = clock(&server);
    let start = clock.frames();
    server.dispatch("engage").await.unwrap();
    server.dispatch("ambient").await.unwrap();
    server.dispatch("idle").await.unwrap();
    until_frame(&clock, start + frames(0.7)).await;
    server.server.stop().await.unwrap();
    let left = left_channel(&wav);
    assert!(
        left.len() as u64 >= start + frames(0.7),
        "the mix was written"
    );
    assert!(
        left.iter().all(|s| *s == 0.0),
        "with mode_chime off nothing sounds"
    );
}

async fn watch(server: &TestServer, topics: &[&str]) -> Streaming<BusEvent> {
    SystemServiceClient::new(server.client().await.channel)
        .watch_events(WatchEventsRequest {
            topics: topics.iter().map(|t| t.to_string()).collect(),
        })
        .await
        .unwrap()
        .into_inner()
}

fn payload(event: &BusEvent) -> serde_json::Value {
    cantina::json::struct_to_json(event.payload.as_ref().unwrap())
}

fn millis(event: &BusEvent) -> i64 {
    let t = event.timestamp.as_ref().unwrap();
    t.seconds * 1000 + i64::from(t.nanos) / 1_000_000
}

/// The next event, as its topic and payload.
async fn next(events: &mut Streaming<BusEvent>) -> (String, serde_json::Value, i64) {
    let event = next_in(events).await;
    (event.topic.clone(), payload(&event), millis(&event))
}

#[tokio::test]
async fn dj_mode_announces_each_transition_ahead_and_crossfades_into_the_track_it_named() {
    let music = tempfile::tempdir().unwrap();
    // Eight tracks, so that DJ mode's random picks really vary: a crossfade
    // into another track than the one announced would show.
    let names: Vec<String> = (0..8).map(|i| format!("Band - Tune {i}")).collect();
    for (i, name) in names.iter().enumerate() {
        let freq = 300.0 + 50.0 * i as f32;
        fixtures::make(music.path(), name, Format::Wav, freq, 3.0, &Tags::none()).unwrap();
    }
    let mut config = test_config();
    config.audio.music_dir = Some(music.path().to_path_buf());
    config.audio.period_frames = Some(256);
    config.audio.mode_chime = false;
    // 3 s tracks: 1 s crossfades from 2 s in, announced 1.5 s ahead (at 0.5 s).
    config.audio.dj_transition = Duration::from_secs(1);
    config.audio.dj_commentary_lead = Duration::from_millis(1500);
    let server = TestServer::with_config(config).await;
    let mut events = watch(
        &server,
        &[
            "music.dj.transition.upcoming",
            "music.crossfade.started",
            "music.playback.started",
        ],
    )
    .await;
    let start = Instant::now();
    while server.dispatch("dj start").await.is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "never scanned");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let (topic, first, _) = next(&mut events).await;
    assert_eq!(topic, "music.playback.started");
    let first = first["track"].as_str().unwrap().to_string();

    // The first transition is announced ahead, naming both tracks.
    let (topic, upcoming, announced_at) = next(&mut events).await;
    assert_eq!(topic, "music.dj.transition.upcoming", "{upcoming}");
    assert_eq!(upcoming["from"]["track"], first.as_str());
    assert!(upcoming["from"]["path"].as_str().unwrap().ends_with(".wav"));
    assert_eq!(upcoming["crossfade_ms"], 1000);
    assert_eq!(upcoming["revised"], false);
    let starts_in = upcoming["starts_in_ms"].as_u64().unwrap();
    assert!((1300..=1500).contains(&starts_in), "{upcoming}");
    assert!(upcoming["starts_at_frame"].as_u64().unwrap() > 0);
    let picked = upcoming["to"]["track"].as_str().unwrap().to_string();
    assert_ne!(picked, first);

    // Queuing a third track puts it first: announced again, revised.
    let third = names
        .iter()
        .find(|n| **n != first && **n != picked)
        .unwrap()
        .clone();
    server.dispatch(&format!("dj queue {third}")).await.unwrap();
    let (topic, revised, _) = next(&mut events).await;
    assert_eq!(topic, "music.dj.transition.upcoming", "{revised}");
    assert_eq!(revised["from"]["track"], first.as_str());
    assert_eq!(revised["to"]["track"], third.as_str());
    assert_eq!(revised["queued"], true);
    assert_eq!(revised["revised"], true);

    // Then the crossfade, into that very track, about when announced.
    let (topic, crossfade, crossfade_at) = next(&mut events).await;
    assert_eq!(topic, "music.crossfade.started", "{crossfade}");
    assert_eq!(crossfade["from"], first.as_str());
    assert_eq!(crossfade["to"], third.as_str());
    let late = crossfade_at - announced_at - starts_in as i64;
    assert!(
        (-50..=300).contains(&late),
        "{late} ms off the announcement"
    );
    let (topic, started, _) = next(&mut events).await;
    assert_eq!(topic, "music.playback.started");
    assert_eq!(started["track"], third.as_str());

    // The next two transitions, random picks: each announced once, then
    // played as announced.
    let mut playing = third;
    for _ in 0..2 {
        let (topic, upcoming, _) = next(&mut events).await;
        assert_eq!(topic, "music.dj.transition.upcoming", "{upcoming}");
        assert_eq!(upcoming["from"]["track"], playing.as_str());
        assert_eq!(upcoming["revised"], false);
        assert_eq!(upcoming["queued"], false);
        let to = upcoming["to"]["track"].as_str().unwrap().to_string();
        let (topic, crossfade, _) = next(&mut events).await;
        assert_eq!(
            topic, "music.crossfade.started",
            "announced once: {crossfade}"
        );
        assert_eq!(crossfade["from"], playing.as_str());
        assert_eq!(crossfade["to"], to.as_str(), "the track announced");
        let (topic, started, _) = next(&mut events).await;
        assert_eq!(topic, "music.playback.started");
        assert_eq!(started["track"], to.as_str());
        playing = to;
    }

    server.dispatch("dj stop").await.unwrap();
    server.server.stop().await.unwrap();
}
