//! Speech end to end: a real server making real speech with espeak-ng, the
//! mixer's output written to a WAV file (music ducked under the voice and
//! back after), clips uploaded through SpeakAudio and played from the cache
//! across a restart, the eyes simulator on a pty following the voice, and
//! bad input refused with what to do.

mod common;

use std::{
    path::{Path, PathBuf},
    sync::mpsc,
    time::{Duration, Instant},
};

use cantina::v1::{
    AudioEncoding, GetStatusRequest, SpeakAudioHeader, SpeakAudioRequest, SpeakRequest,
    StopSpeechRequest, system_service_client::SystemServiceClient,
};
use cantina_server::{
    audio::fixtures::{self, Format, Tags},
    bus::TopicSet,
    config::{AudioOutput, Config, EyesPort},
    eyes::sim::{SimBoard, SimEvent, SimOptions},
    speech::{EngineChoice, envelope},
};
use common::{TestServer, test_config};
use tonic::Code;

const RATE: u32 = 48_000;

fn config(music: &Path) -> Config {
    let mut config = test_config();
    config.audio.music_dir = Some(music.to_path_buf());
    config.audio.period_frames = Some(480);
    config.audio.sample_rate = Some(RATE);
    // Only the speech and the music in the measured output.
    config.audio.mode_chime = false;
    config
}

async fn speak(
    server: &TestServer,
    text: &str,
) -> Result<cantina::v1::SpeakResponse, tonic::Status> {
    server
        .client()
        .await
        .speech
        .speak(SpeakRequest {
            text: text.into(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

async fn upload(
    server: &TestServer,
    header: SpeakAudioHeader,
    bytes: &[u8],
) -> Result<cantina::v1::SpeakResponse, tonic::Status> {
    let mut parts = vec![SpeakAudioRequest {
        header: Some(header),
        data: Vec::new(),
    }];
    parts.extend(bytes.chunks(16 * 1024).map(|c| SpeakAudioRequest {
        header: None,
        data: c.to_vec(),
    }));
    server
        .client()
        .await
        .speech
        .speak_audio(tokio_stream::iter(parts))
        .await
        .map(tonic::Response::into_inner)
}

/// The next `speech.ended`'s payload, subscribed now, awaited `within`.
fn speech_end(server: &TestServer, within: Duration) -> impl Future<Output = serde_json::Value> {
    let wait = server.server.droid().bus.wait_for(
        TopicSet::parse(&["speech.ended"]).unwrap(),
        |_| true,
        within,
    );
    async move { wait.await.expect("the speech ends").payload.clone() }
}

/// Waits for `speech.ended` (up to 20 s).
async fn ended(server: &TestServer) -> serde_json::Value {
    speech_end(server, Duration::from_secs(20)).await
}

/// Amplitude of `freq` in `x` (mono), by correlation with a sine and cosine.
fn tone(x: &[f32], freq: f64) -> f64 {
    let (mut s, mut c) = (0.0, 0.0);
    for (i, v) in x.iter().enumerate() {
        let ph = 2.0 * std::f64::consts::PI * freq * i as f64 / f64::from(RATE);
        s += f64::from(*v) * ph.sin();
        c += f64::from(*v) * ph.cos();
    }
    2.0 * (s * s + c * c).sqrt() / x.len() as f64
}

fn rms(x: &[f32]) -> f64 {
    (x.iter().map(|v| f64::from(*v).powi(2)).sum::<f64>() / x.len().max(1) as f64).sqrt()
}

fn left(wav: &Path) -> Vec<f32> {
    hound::WavReader::open(wav)
        .unwrap()
        .into_samples::<f32>()
        .map(Result::unwrap)
        .step_by(2)
        .collect()
}

#[tokio::test]
async fn speech_is_heard_over_the_music_ducked_to_half_and_the_music_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    // A steady tone high above the voice's energy, so both can be measured apart.
    fixtures::make(
        dir.path(),
        "Tone - High",
        Format::Wav,
        3000.0,
        20.0,
        &Tags::none(),
    )
    .unwrap();
    let renders = tempfile::tempdir().unwrap();
    let wav = renders.path().join("mix.wav");
    let mut config = config(dir.path());
    config.audio.output = AudioOutput::Wav(wav.clone());
    let server = TestServer::with_config(config).await;
    server.dispatch("play music 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    let spoken = speak(&server, "Welcome to Oga's Cantina! Have a drink.")
        .await
        .unwrap();
    assert!(!spoken.cached);
    assert!(spoken.engine.starts_with("espeak-ng"), "{}", spoken.engine);
    let said = secs(&spoken.duration);
    assert!((1.0..8.0).contains(&said), "{said}");
    let end = ended(&server).await;
    assert_eq!(end["reason"], "completed", "{end}");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The music's duck under the speech, and its end, are announced as such.
    let ducks: Vec<(String, serde_json::Value)> = server
        .server
        .droid()
        .bus
        .history(Some(TopicSet::parse(&["music.duck.*"]).unwrap()), 10)
        .iter()
        .map(|e| (e.name().to_string(), e.payload["reason"].clone()))
        .collect();
    assert_eq!(
        ducks,
        [
            (
                "music.duck.started".to_string(),
                serde_json::json!("speech")
            ),
            ("music.duck.ended".to_string(), serde_json::json!("speech"))
        ]
    );
    server.server.stop().await.unwrap();

    // 40 ms windows: the tone's amplitude, and what is left (the voice).
    let x = left(&wav);
    let w = (RATE / 25) as usize;
    let windows: Vec<(f64, f64)> = x
        .chunks_exact(w)
        .map(|c| {
            let a = tone(c, 3000.0);
            let residual = (rms(c).powi(2) - a * a / 2.0).max(0.0).sqrt();
            (a, residual)
        })
        .collect();
    // (The first windows hold the music's own 5 ms fade-in.)
    let voiced: Vec<usize> = (3..windows.len())
        .filter(|&i| windows[i].1 > 0.02)
        .collect();
    assert!(
        voiced.len() >= 10,
        "speech energy is in the output: {voiced:?}"
    );
    let (first, last) = (voiced[0], *voiced.last().unwrap());
    let before = windows[first.saturating_sub(12)..first.saturating_sub(2)]
        .iter()
        .map(|w| w.0)
        .sum::<f64>()
        / 10.0;
    assert!(before > 0.05, "the music plays before: {before}");
    // Half a second after the voice starts, the music is at half.
    for (i, window) in windows
        .iter()
        .enumerate()
        .take(last.min(first + 14 + 15))
        .skip(first + 14)
    {
        let ratio = window.0 / before;
        assert!(
            (0.42..0.58).contains(&ratio),
            "window {i}: music at {ratio} of its level under speech"
        );
    }
    // And back to full within the fade (500 ms) after the utterance's end
    // (its last word, then the engine's closing pause).
    let rise = (last..windows.len())
        .find(|&i| windows[i].0 / before > 0.55)
        .expect("the music comes back");
    assert!(
        rise - last < 20,
        "the music comes back after the speech: {rise} vs {last}"
    );
    let after: Vec<f64> = windows[(rise + 14)..(rise + 20).min(windows.len())]
        .iter()
        .map(|w| w.0 / before)
        .collect();
    assert!(
        !after.is_empty() && after.iter().all(|r| (0.9..1.1).contains(r)),
        "{after:?}"
    );
    // The ramp down has no step: consecutive windows differ by little.
    for i in first.saturating_sub(2)..first + 14 {
        let step = (windows[i + 1].0 - windows[i].0).abs() / before;
        assert!(step < 0.12, "a click-free ramp, window {i}: step {step}");
    }
}

fn secs(d: &Option<prost_types::Duration>) -> f64 {
    d.as_ref()
        .map_or(0.0, |d| d.seconds as f64 + f64::from(d.nanos) / 1e9)
}

#[tokio::test]
async fn an_uploaded_mp3_plays_as_speech_is_cached_under_its_key_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clip = fixtures::make(dir.path(), "clip", Format::Mp3, 660.0, 1.0, &Tags::none()).unwrap();
    let bytes = std::fs::read(&clip).unwrap();
    let data_dir = tempfile::tempdir().unwrap().keep();
    let music = tempfile::tempdir().unwrap();
    let make = || {
        let mut c = config(music.path());
        c.audio.data_dir = data_dir.clone();
        c
    };
    let server = TestServer::with_config(make()).await;
    let bus = &server.server.droid().bus;
    let started = bus.wait_for(
        TopicSet::parse(&["speech.started"]).unwrap(),
        |_| true,
        Duration::from_secs(10),
    );
    let finished = speech_end(&server, Duration::from_secs(10));
    let spoken = upload(
        &server,
        SpeakAudioHeader {
            cache_key: "greeting".into(),
            ..Default::default()
        },
        &bytes,
    )
    .await
    .unwrap();
    assert_eq!(spoken.engine, "upload");
    assert!((0.9..1.2).contains(&secs(&spoken.duration)), "{spoken:?}");
    assert_eq!(started.await.unwrap().payload["text"], "uploaded clip");
    assert_eq!(finished.await["reason"], "completed");
    server.server.stop().await.unwrap();

    let server = TestServer::with_config(make()).await;
    let again = server.dispatch("speech play greeting").await.unwrap();
    assert!(again.message.contains("cached"), "{}", again.message);
    let missing = server
        .dispatch("speech play nothing-here")
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    assert!(
        missing.message().contains("SpeakAudio"),
        "{}",
        missing.message()
    );
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn bad_speech_is_refused_with_what_to_do_and_the_music_plays_on() {
    let dir = tempfile::tempdir().unwrap();
    fixtures::make(
        dir.path(),
        "Tone - Low",
        Format::Wav,
        440.0,
        30.0,
        &Tags::none(),
    )
    .unwrap();
    let server = TestServer::with_config(config(dir.path())).await;
    server.dispatch("play music 1").await.unwrap();

    let empty = speak(&server, "   ").await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    let long = speak(&server, &"a".repeat(5001)).await.unwrap_err();
    assert_eq!(long.code(), Code::InvalidArgument);
    assert!(long.message().contains("5000"), "{}", long.message());
    let voice = server
        .client()
        .await
        .speech
        .speak(SpeakRequest {
            text: "hello".into(),
            voice: "xx-klingon".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(voice.code(), Code::InvalidArgument);
    assert!(
        voice.message().contains("speech voices"),
        "{}",
        voice.message()
    );
    let garbage = upload(
        &server,
        SpeakAudioHeader::default(),
        b"this is not audio at all",
    )
    .await
    .unwrap_err();
    assert_eq!(garbage.code(), Code::InvalidArgument);
    assert!(
        garbage.message().contains("wav, mp3, ogg or flac"),
        "{}",
        garbage.message()
    );
    let raw = |rate, channels| SpeakAudioHeader {
        encoding: AudioEncoding::PcmS16le as i32,
        sample_rate: rate,
        channels,
        ..Default::default()
    };
    let empty_clip = upload(&server, raw(16_000, 1), b"").await.unwrap_err();
    assert_eq!(empty_clip.code(), Code::InvalidArgument);
    assert!(
        empty_clip.message().contains("no samples"),
        "{}",
        empty_clip.message()
    );
    let odd = upload(&server, raw(16_000, 2), &[0u8; 6])
        .await
        .unwrap_err();
    assert_eq!(odd.code(), Code::InvalidArgument);
    let no_rate = upload(&server, raw(0, 1), &[0u8; 64]).await.unwrap_err();
    assert!(
        no_rate.message().contains("sample rate"),
        "{}",
        no_rate.message()
    );
    let unknown = server
        .client()
        .await
        .speech
        .stop_speech(StopSpeechRequest {
            speech_id: "speech-999".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    // Raw PCM that is fine plays, and `speech stop` stops it.
    let pcm: Vec<u8> = (0..16_000 * 3)
        .flat_map(|i| (((i as f32 * 0.1).sin() * 8000.0) as i16).to_le_bytes())
        .collect();
    let playing = upload(&server, raw(16_000, 1), &pcm).await.unwrap();
    assert!((2.9..3.1).contains(&secs(&playing.duration)));
    let end = speech_end(&server, Duration::from_secs(10));
    let stopped = server.dispatch("speech stop").await.unwrap();
    assert!(stopped.message.contains("stopped"), "{}", stopped.message);
    assert_eq!(end.await["reason"], "stopped");

    let audio = SystemServiceClient::new(server.channel().await)
        .get_status(GetStatusRequest::default())
        .await
        .unwrap()
        .into_inner()
        .audio
        .unwrap();
    assert_eq!(audio.state, "playing", "the music played through all of it");
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn a_missing_engine_degrades_speech_with_what_to_install_and_uploads_still_play() {
    let music = tempfile::tempdir().unwrap();
    let mut config = config(music.path());
    config.speech.engine = EngineChoice::Piper(PathBuf::from("/nonexistent/voice.onnx"));
    let server = TestServer::with_config(config).await;
    let status = SystemServiceClient::new(server.channel().await)
        .get_status(GetStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let speech = status
        .subsystems
        .iter()
        .find(|s| s.name == "speech")
        .unwrap();
    assert_eq!(speech.status, cantina::v1::ServiceStatus::Degraded as i32);
    assert!(
        speech.message.contains("does not exist"),
        "{}",
        speech.message
    );
    assert!(!status.speech.unwrap().engine_ready);
    let refused = speak(&server, "hello").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().contains("voice.onnx"),
        "{}",
        refused.message()
    );
    let pcm = vec![0x10u8; 3200];
    let header = SpeakAudioHeader {
        encoding: AudioEncoding::PcmS16le as i32,
        sample_rate: 16_000,
        channels: 1,
        ..Default::default()
    };
    upload(&server, header, &pcm).await.unwrap();
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn speech_while_the_audio_output_is_lost_is_unavailable_with_the_reason() {
    let music = tempfile::tempdir().unwrap();
    let mut config = config(music.path());
    config.audio.output = AudioOutput::Wav("/dev/full".into());
    let server = TestServer::with_config(config).await;
    let refused = speak(&server, "hello").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(refused.message().contains("audio"), "{}", refused.message());
    server.server.stop().await.unwrap();
}

// Two workers: the test blocks one waiting for the board's bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_eyes_show_speaking_and_their_brightness_follows_the_voice_at_25_hz() {
    let board_dir = tempfile::tempdir().unwrap();
    let mut options = SimOptions::new(board_dir.path().join("eyes"));
    options.boot_delay = Duration::from_millis(50);
    let board = SimBoard::start(options).expect("a simulated board");
    let events = board.events();
    let renders = tempfile::tempdir().unwrap();
    let wav = renders.path().join("voice.wav");
    let music = tempfile::tempdir().unwrap();
    let mut config = config(music.path());
    config.eyes_port = EyesPort::Path(board.link().to_path_buf());
    config.eyes.heartbeat = Duration::ZERO;
    config.audio.output = AudioOutput::Wav(wav.clone());
    let server = TestServer::with_config(config).await;
    wait_ready(&events);
    server.dispatch("eye pattern happy").await.unwrap();
    let text = "Welcome to Oga's Cantina. I am DJ R3X, and tonight the music never stops.";
    speak(&server, text).await.unwrap();
    ended(&server).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.server.stop().await.unwrap();

    // What the board got: `S`, digits, then the brightness and pattern from before.
    let mut got = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let SimEvent::Command { byte, at, .. } = event {
            got.push((byte, at));
        }
    }
    let s = got
        .iter()
        .position(|(b, _)| *b == b'S')
        .expect("the eyes showed speaking");
    let after: Vec<u8> = got[s + 1..].iter().map(|(b, _)| *b).collect();
    let brightness = cantina_server::eyes::protocol::brightness_digit(0.8);
    assert_eq!(
        after[after.len() - 2..],
        [brightness, b'H'],
        "brightness 0.8 and happy come back: {:?}",
        String::from_utf8_lossy(&after)
    );
    let digits: Vec<(u8, Instant)> = got[s + 1..got.len() - 2]
        .iter()
        .filter(|(b, _)| b.is_ascii_digit())
        .map(|(b, at)| (b - b'0', *at))
        .collect();
    assert!(
        digits.len() >= 20,
        "the brightness moves with the voice: {digits:?}"
    );
    // Never faster than 25 a second (a digit only when the level changes).
    let span = digits.last().unwrap().1 - digits[0].1;
    assert!(digits.len() as f64 <= span.as_secs_f64() * 25.0 + 2.0);

    // The levels sent follow the voice's loudness in the output: window by
    // window from the voice's first sample (the output is quieter by the
    // master volume, a constant offset in dB that correlation ignores).
    let x = left(&wav);
    let w = (RATE / 25) as usize;
    let first = x
        .iter()
        .position(|v| *v != 0.0)
        .expect("speech in the output");
    let heard: Vec<f64> = x[first..]
        .chunks(w)
        .map(|c| f64::from(envelope::level(rms(c) as f32 * 1.6)))
        .collect();
    let t0 = digits[0].1;
    let mut sent = vec![f64::NAN; heard.len()];
    for (level, at) in &digits {
        let k = ((*at - t0).as_secs_f64() * 25.0).round() as usize;
        if k < sent.len() {
            sent[k] = f64::from(*level);
        }
    }
    // A level holds until the next one.
    for k in 1..sent.len() {
        if sent[k].is_nan() {
            sent[k] = sent[k - 1];
        }
    }
    let n = digits.len().min(heard.len());
    let corr = correlation(&sent[..n], &heard[..n]);
    assert!(
        corr > 0.7,
        "digits {sent:?} follow the output's envelope {heard:?}: r = {corr}"
    );
}

fn wait_ready(events: &mpsc::Receiver<SimEvent>) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match events.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(SimEvent::Ready) => return,
            Ok(_) => {}
            Err(_) => panic!("the board never booted"),
        }
    }
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mean = |x: &[f64]| x.iter().sum::<f64>() / n as f64;
    let (ma, mb) = (mean(a), mean(b));
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for i in 0..n {
        let (da, db) = (a[i] - ma, b[i] - mb);
        sab += da * db;
        saa += da * da;
        sbb += db * db;
    }
    sab / (saa * sbb).sqrt().max(1e-9)
}
