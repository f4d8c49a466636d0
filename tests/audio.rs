//! The audio end to end on the paced virtual output: a real server, a music
//! folder of real files made by the tests (every supported format, one
//! corrupt), and the console commands over gRPC. Positions come from the
//! output's sample clock, which the virtual output advances in real time.

mod common;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use cantina::v1::{AudioStatus, GetStatusRequest, system_service_client::SystemServiceClient};
use cantina_server::{
    audio::fixtures::{self, Format, Tags},
    bus::TopicSet,
    config::{AudioOutput, Config},
};
use common::{TestServer, test_config};
use tonic::Code;

/// A library with one track per format and a corrupt file.
fn library(dir: &Path) {
    let tracks = [
        (Format::Wav, "Figrin Dan - Cantina Band", 440.0),
        (Format::Mp3, "Figrin Dan - Mad About Me", 523.25),
        (Format::Flac, "Max Rebo - Lapti Nek", 587.33),
        (Format::Vorbis, "Max Rebo - Jedi Rocks", 659.25),
        (Format::M4a, "Sy Snootles - Galactic Dance", 698.46),
    ];
    for (format, name, freq) in tracks {
        let (artist, title) = name.split_once(" - ").unwrap();
        fixtures::make(dir, name, format, freq, 6.0, &Tags::new(artist, title))
            .expect("a test track (needs ffmpeg: ./dev.sh test installs it)");
    }
    std::fs::write(
        dir.join("Broken - Not Music.mp3"),
        b"this is not an mp3 file at all",
    )
    .unwrap();
}

fn config(music: &Path) -> Config {
    let mut config = test_config();
    config.audio.output = AudioOutput::Virtual;
    config.audio.music_dir = Some(music.to_path_buf());
    config.audio.period_frames = Some(256);
    config
}

async fn status(server: &TestServer) -> AudioStatus {
    SystemServiceClient::new(server.channel().await)
        .get_status(GetStatusRequest::default())
        .await
        .unwrap()
        .into_inner()
        .audio
        .unwrap()
}

fn secs(d: &Option<prost_types::Duration>) -> f64 {
    d.as_ref()
        .map_or(0.0, |d| d.seconds as f64 + f64::from(d.nanos) / 1e9)
}

/// Waits (polling every 20 ms, up to 5 s) until the library is scanned.
async fn scanned(server: &TestServer, tracks: u32) {
    let start = Instant::now();
    while status(server).await.library_size != tracks {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the library was not scanned"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn music_plays_pauses_and_resumes_in_real_time_on_the_virtual_output() {
    let dir = tempfile::tempdir().unwrap();
    library(dir.path());
    let server = TestServer::with_config(config(dir.path())).await;
    scanned(&server, 5).await;
    let audio = status(&server).await;
    assert_eq!(
        (audio.output.as_str(), audio.r#virtual, audio.connected),
        ("virtual", true, true)
    );
    assert_eq!(audio.volume, 70);

    let listed = server.dispatch("list music").await.unwrap().message;
    for title in [
        "Cantina Band",
        "Mad About Me",
        "Lapti Nek",
        "Jedi Rocks",
        "Galactic Dance",
    ] {
        assert!(listed.contains(title), "{listed}");
    }
    assert!(
        !listed.contains("Not Music"),
        "the corrupt file is skipped: {listed}"
    );
    // The skipped file was reported by name.
    let updated = server.server.droid().bus.history(
        Some(TopicSet::parse(&["music.library.updated"]).unwrap()),
        10,
    );
    let skipped = updated.last().unwrap().payload["skipped"].to_string();
    assert!(skipped.contains("Broken - Not Music.mp3"), "{skipped}");

    let played = server.dispatch("play music lapti nek").await.unwrap();
    assert_eq!(played.message, "playing Max Rebo - Lapti Nek");
    let began = Instant::now();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let playing = status(&server).await;
    assert_eq!(
        (playing.state.as_str(), playing.track.as_str()),
        ("playing", "Lapti Nek")
    );
    let position = secs(&playing.position);
    let elapsed = began.elapsed().as_secs_f64();
    assert!(
        (position - elapsed).abs() < 0.15,
        "the sample clock runs in real time: position {position:.3} s after {elapsed:.3} s"
    );
    assert!((secs(&playing.duration) - 6.0).abs() < 0.05);

    server.dispatch("pause music").await.unwrap();
    let held = secs(&status(&server).await.position);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paused = status(&server).await;
    assert_eq!(paused.state, "paused");
    assert!(
        (secs(&paused.position) - held).abs() < 0.05,
        "a paused track holds its place"
    );
    server.dispatch("resume music").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(secs(&status(&server).await.position) > held + 0.2);

    server.dispatch("stop music").await.unwrap();
    assert_eq!(status(&server).await.state, "stopped");
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn tracks_are_found_by_number_title_or_best_match_and_a_miss_lists_the_closest() {
    let dir = tempfile::tempdir().unwrap();
    library(dir.path());
    let server = TestServer::with_config(config(dir.path())).await;
    scanned(&server, 5).await;

    let by_number = server.dispatch("play music 1").await.unwrap();
    assert!(
        by_number.message.starts_with("playing "),
        "{}",
        by_number.message
    );
    let exact = server.dispatch("p Jedi Rocks").await.unwrap();
    assert_eq!(exact.message, "playing Max Rebo - Jedi Rocks");
    let fuzzy = server.dispatch("play music galactc dance").await.unwrap();
    assert_eq!(fuzzy.message, "playing Sy Snootles - Galactic Dance");

    let missing = server
        .dispatch("play music ewok celebration")
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound, "{missing:?}");
    assert!(
        missing.message().contains("closest"),
        "{}",
        missing.message()
    );
    let out_of_range = server.dispatch("play music 40").await.unwrap_err();
    assert_eq!(out_of_range.code(), Code::NotFound);
    assert!(
        out_of_range.message().contains("5 tracks"),
        "{}",
        out_of_range.message()
    );
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn volume_duck_crossfade_queue_and_dj_mode_are_announced() {
    let dir = tempfile::tempdir().unwrap();
    library(dir.path());
    let mut config = config(dir.path());
    config.audio.dj_transition = Duration::from_millis(500);
    let server = TestServer::with_config(config).await;
    scanned(&server, 5).await;
    let bus = server.server.droid().bus.clone();

    server.dispatch("play music cantina band").await.unwrap();
    assert_eq!(
        server.dispatch("volume 50").await.unwrap().message,
        "volume 50"
    );
    assert_eq!(status(&server).await.volume, 50);
    let bad = server.dispatch("volume 150").await.unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);

    server.dispatch("duck 0.3 200").await.unwrap();
    let ducked = status(&server).await;
    assert!(ducked.ducked && (ducked.duck_level - 0.3).abs() < 1e-6);
    server.dispatch("unduck 200").await.unwrap();
    assert!(!status(&server).await.ducked);

    let crossfade = server.dispatch("crossfade lapti nek 1").await.unwrap();
    assert!(
        crossfade.message.contains("over 1.0 s"),
        "{}",
        crossfade.message
    );
    let completed = bus.wait_for(
        TopicSet::parse(&["music.crossfade.completed"]).unwrap(),
        |_| true,
        Duration::from_secs(5),
    );
    completed.await.expect("the crossfade completes");
    assert_eq!(status(&server).await.track, "Lapti Nek");

    server.dispatch("queue music jedi rocks").await.unwrap();
    assert_eq!(status(&server).await.queue, ["Max Rebo - Jedi Rocks"]);
    server.dispatch("next music").await.unwrap();
    let next = status(&server).await;
    assert_eq!(next.track, "Jedi Rocks");
    assert!(next.queue.is_empty());

    // DJ mode crossfades into another track before this one ends.
    server.dispatch("dj start").await.unwrap();
    let dj_fade = bus.wait_for(
        TopicSet::parse(&["music.crossfade.started"]).unwrap(),
        |_| true,
        Duration::from_secs(10),
    );
    let started = dj_fade.await.expect("DJ mode moves on by itself");
    assert_eq!(started.payload["from"], "Max Rebo - Jedi Rocks");
    assert!(status(&server).await.dj_mode);
    server.dispatch("dj stop").await.unwrap();

    let topics: Vec<String> = bus
        .history(Some(TopicSet::parse(&["music.*"]).unwrap()), 200)
        .iter()
        .map(|e| e.topic.as_str().to_string())
        .collect();
    for topic in [
        "music.playback.started",
        "music.volume.changed",
        "music.duck.started",
        "music.duck.ended",
        "music.crossfade.started",
        "music.crossfade.completed",
        "music.queue.updated",
        "music.dj.started",
        "music.dj.stopped",
    ] {
        assert!(
            topics.iter().any(|t| t == topic),
            "{topic} missing from {topics:?}"
        );
    }
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn a_track_that_ends_is_announced_and_the_queue_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    fixtures::make(
        dir.path(),
        "A - Short One",
        Format::Wav,
        440.0,
        0.4,
        &Tags::none(),
    )
    .unwrap();
    fixtures::make(
        dir.path(),
        "B - Short Two",
        Format::Flac,
        880.0,
        0.4,
        &Tags::none(),
    )
    .unwrap();
    let server = TestServer::with_config(config(dir.path())).await;
    scanned(&server, 2).await;
    let bus = server.server.droid().bus.clone();
    let ended = bus.wait_for(
        TopicSet::parse(&["music.playback.stopped"]).unwrap(),
        |_| true,
        Duration::from_secs(5),
    );
    server.dispatch("play music 1").await.unwrap();
    server.dispatch("queue music 2").await.unwrap();
    let stopped = ended.await.expect("the music stops after the queue");
    assert_eq!(stopped.payload["reason"], "the last track ended");
    let history: Vec<String> = bus
        .history(Some(TopicSet::parse(&["music.playback.*"]).unwrap()), 50)
        .iter()
        .filter(|e| e.topic.as_str() != "music.playback.progress")
        .map(|e| {
            format!(
                "{} {}",
                e.topic.as_str(),
                e.payload["track"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(
        history,
        [
            "music.playback.started A - Short One",
            "music.playback.ended A - Short One",
            "music.playback.started B - Short Two",
            "music.playback.ended B - Short Two",
            "music.playback.stopped ",
        ]
    );
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn a_fresh_machine_gets_the_generated_demo_library() {
    let data = tempfile::tempdir().unwrap();
    let mut config = test_config();
    config.audio.output = AudioOutput::Virtual;
    config.audio.data_dir = data.path().to_path_buf();
    config.audio.music_dir = None;
    let server = TestServer::with_config(config).await;
    let start = Instant::now();
    while status(&server).await.library_size == 0 {
        assert!(start.elapsed() < Duration::from_secs(20), "no demo library");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(data.path().join("music").is_dir());
    server.dispatch("play music 1").await.unwrap();
    assert_eq!(status(&server).await.state, "playing");
    server.server.stop().await.unwrap();
}

async fn audio_health(
    server: &TestServer,
) -> tonic_health::pb::health_check_response::ServingStatus {
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};
    HealthClient::new(server.channel().await)
        .check(HealthCheckRequest {
            service: "cantina.audio".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .status()
}

#[tokio::test]
async fn an_output_that_cannot_be_written_is_reported_and_reopened_when_it_can() {
    use tonic_health::pb::health_check_response::ServingStatus;
    let dir = tempfile::tempdir().unwrap();
    fixtures::make(
        dir.path(),
        "A - Tone",
        Format::Wav,
        440.0,
        2.0,
        &Tags::none(),
    )
    .unwrap();
    let out_dir = dir.path().join("renders");
    let wav = out_dir.join("show.wav");
    let mut config = config(dir.path());
    config.audio.output = AudioOutput::Wav(wav.clone());
    config.audio.retry_max = Duration::from_millis(200);
    let server = TestServer::with_config(config).await;

    let lost = status(&server).await;
    assert!(!lost.connected);
    assert!(
        lost.last_error.contains("renders/show.wav"),
        "{}",
        lost.last_error
    );
    assert_eq!(audio_health(&server).await, ServingStatus::NotServing);
    let refused = server.dispatch("play music 1").await.unwrap_err();
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(
        refused.message().contains("being reopened"),
        "{}",
        refused.message()
    );

    // The folder appears: the output opens on its next attempt.
    let recovered = server.server.droid().bus.wait_for(
        TopicSet::parse(&["audio.device.recovered"]).unwrap(),
        |_| true,
        Duration::from_secs(5),
    );
    std::fs::create_dir_all(&out_dir).unwrap();
    recovered.await.expect("the output comes back");
    assert!(status(&server).await.connected);
    assert_eq!(audio_health(&server).await, ServingStatus::Serving);
    scanned(&server, 1).await;
    server.dispatch("play music 1").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.server.stop().await.unwrap();
    let written = hound::WavReader::open(&wav).expect("a valid WAV file");
    assert!(written.duration() > 48_000 / 10, "the mix was written");
}

#[tokio::test]
async fn a_full_disk_is_reported_and_the_server_runs_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.audio.output = AudioOutput::Wav("/dev/full".into());
    let server = TestServer::with_config(config).await;
    let audio = status(&server).await;
    assert!(!audio.connected);
    assert!(
        audio.last_error.contains("No space left on device"),
        "{}",
        audio.last_error
    );
    let eyes = server.dispatch("eye pattern happy").await.unwrap();
    assert_eq!(eyes.message, "eyes show happy (virtual eyes)");
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn stopping_during_a_crossfade_silences_both_tracks() {
    let dir = tempfile::tempdir().unwrap();
    fixtures::make(
        dir.path(),
        "A - Low",
        Format::Wav,
        440.0,
        8.0,
        &Tags::none(),
    )
    .unwrap();
    fixtures::make(
        dir.path(),
        "B - High",
        Format::Wav,
        880.0,
        8.0,
        &Tags::none(),
    )
    .unwrap();
    let renders = tempfile::tempdir().unwrap();
    let wav = renders.path().join("mix.wav");
    let mut config = config(dir.path());
    config.audio.output = AudioOutput::Wav(wav.clone());
    let server = TestServer::with_config(config).await;
    scanned(&server, 2).await;
    server.dispatch("play music low").await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.dispatch("crossfade high 10").await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.dispatch("stop music").await.unwrap();
    tokio::time::sleep(Duration::from_millis(400)).await;
    server.server.stop().await.unwrap();
    let samples: Vec<f32> = hound::WavReader::open(&wav)
        .unwrap()
        .into_samples::<f32>()
        .map(Result::unwrap)
        .collect();
    let tail = &samples[samples.len() - 48_000 / 5 * 2..];
    assert!(
        tail.iter().all(|s| *s == 0.0),
        "after 'stop music' nothing sounds, not even the track that was fading out"
    );
    assert!(
        samples.iter().any(|s| s.abs() > 0.1),
        "music was written before"
    );
}

#[tokio::test]
async fn dj_mode_on_an_empty_library_says_so_and_stays_off() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::with_config(config(dir.path())).await;
    scanned(&server, 0).await;
    let refused = server.dispatch("dj start").await.unwrap_err();
    assert!(
        refused.message().contains("install music"),
        "{}",
        refused.message()
    );
    assert!(!status(&server).await.dj_mode);
    server.server.stop().await.unwrap();
}

#[tokio::test]
async fn a_queued_track_that_vanished_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    fixtures::make(
        dir.path(),
        "A - One",
        Format::Wav,
        440.0,
        0.3,
        &Tags::none(),
    )
    .unwrap();
    let two = fixtures::make(
        dir.path(),
        "B - Two",
        Format::Wav,
        550.0,
        0.3,
        &Tags::none(),
    )
    .unwrap();
    fixtures::make(
        dir.path(),
        "C - Three",
        Format::Wav,
        660.0,
        5.0,
        &Tags::none(),
    )
    .unwrap();
    let server = TestServer::with_config(config(dir.path())).await;
    scanned(&server, 3).await;
    let bus = server.server.droid().bus.clone();
    let three = bus.wait_for(
        TopicSet::parse(&["music.playback.started"]).unwrap(),
        |e| e.payload["track"] == "C - Three",
        Duration::from_secs(5),
    );
    server.dispatch("play music one").await.unwrap();
    server.dispatch("queue music two").await.unwrap();
    server.dispatch("queue music three").await.unwrap();
    std::fs::remove_file(two).unwrap();
    three.await.expect("the track after the missing one plays");
    let audio = status(&server).await;
    assert!(audio.last_error.contains("B - Two"), "{}", audio.last_error);
    server.server.stop().await.unwrap();
}
