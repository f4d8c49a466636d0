//! The audio through the real cpal ALSA backend: the server binary runs with
//! an ALSA configuration written by this test, whose default device is
//! ALSA's `file` plugin over `null`, so the exact PCM that cpal delivered is
//! written to a file. The captured samples are then checked: the tone's
//! frequency, the duck's depth and ramp length, and the crossfade's
//! equal-power shape.
//!
//! The `null` device is not paced like a sound card, so nothing here
//! depends on wall-clock timing: every figure is measured in the captured
//! samples themselves.

mod common;

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use cantina::client::connect;
use cantina::v1::{DispatchRequest, GetStatusRequest, system_service_client::SystemServiceClient};
use cantina_server::audio::fixtures;
use common::bin;

const RATE: usize = 48_000;

/// The ALSA configuration: `default` converts to 48 kHz stereo float and
/// hands it to the `file` plugin, which writes it raw and passes it to `null`.
fn alsa_config(dir: &Path, capture: &Path) -> std::path::PathBuf {
    let conf = dir.join("asound.conf");
    std::fs::write(
        &conf,
        format!(
            r#"pcm.!default {{
    type plug
    slave {{
        pcm "capture"
        format FLOAT_LE
        rate {RATE}
        channels 2
    }}
}}
pcm.capture {{
    type file
    slave.pcm {{ type null }}
    file "{}"
    format "raw"
}}
"#,
            capture.display()
        ),
    )
    .unwrap();
    conf
}

struct Server {
    child: Child,
    address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the server binary on ALSA configured by `conf`; returns it and the
/// output it opened.
fn start(dir: &Path, conf: &Path, music: &Path) -> (Server, String) {
    let mut child = Command::new(bin("cantina-server"))
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("ALSA_CONFIG_PATH", conf)
        .env("CANTINA_AUDIO_OUTPUT", "default")
        .env("CANTINA_AUDIO_SAMPLE_RATE", RATE.to_string())
        .env("CANTINA_AUDIO_PERIOD", "512")
        .env("CANTINA_MUSIC_DIR", music)
        .env("CANTINA_DATA_DIR", dir.join("data"))
        .env("CANTINA_LOG_DIR", dir.join("logs"))
        .env("CANTINA_EYES_PORT", "virtual")
        // The boot's mode chime would sound in the capture this test measures.
        .env("CANTINA_MODE_CHIME", "false")
        .env("CANTINA_SHUTDOWN_GRACE", "100ms")
        .env_remove("CANTINA_TOKEN")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start cantina-server");
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut seen = Vec::new();
    let mut address = None;
    let mut output = None;
    while address.is_none() || output.is_none() {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("the server did not come up:\n{}", seen.join("\n")));
        if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) {
            let fields = &event["fields"];
            if fields["message"] == "listening" {
                address = fields["address"].as_str().map(String::from);
            }
            if fields["message"] == "audio output open" {
                output = fields["output"].as_str().map(String::from);
            }
        }
        seen.push(line);
    }
    std::thread::spawn(move || while rx.recv().is_ok() {});
    (
        Server {
            child,
            address: address.unwrap(),
        },
        output.unwrap(),
    )
}

/// Left channel of the capture, from the first sound on.
fn capture(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).expect("the capture file");
    let left: Vec<f32> = bytes
        .chunks_exact(8)
        .map(|f| f32::from_le_bytes([f[0], f[1], f[2], f[3]]))
        .collect();
    let first = left
        .iter()
        .position(|s| s.abs() > 1e-4)
        .expect("some sound was captured");
    left[first..].to_vec()
}

/// The amplitude of `freq` in `samples` (Goertzel), for a whole number of cycles.
fn tone_level(samples: &[f32], freq: f64) -> f64 {
    let w = 2.0 * std::f64::consts::PI * freq / RATE as f64;
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    2.0 * power.sqrt() / samples.len() as f64
}

type System = SystemServiceClient<cantina::client::AuthChannel>;

async fn system(address: &str) -> System {
    SystemServiceClient::new(connect(address, None).await.unwrap().channel)
}

/// What GetStatus says of the audio.
async fn audio_status(system: &mut System) -> cantina::v1::AudioStatus {
    system
        .get_status(GetStatusRequest::default())
        .await
        .unwrap()
        .into_inner()
        .audio
        .unwrap()
}

/// Waits until `track` has played `seconds`; returns the position reached.
async fn played_until(address: &str, track: &str, seconds: f64) -> f64 {
    let mut system = system(address).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let audio = audio_status(&mut system).await;
        let position = audio
            .position
            .map_or(0.0, |d| d.seconds as f64 + f64::from(d.nanos) / 1e9);
        if audio.track == track && position >= seconds {
            return position;
        }
        assert!(
            Instant::now() < deadline,
            "{track} never reached {seconds} s (at {position} s of {})",
            audio.track
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn dispatch(address: &str, line: &str) {
    let mut client = connect(address, None).await.unwrap().command;
    client
        .dispatch(DispatchRequest {
            line: line.into(),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("{line}: {e}"));
}

/// Plays the scenario through the server binary on the ALSA device: the
/// low tone, a duck to 0.3 over 1.5 s, a crossfade into the high tone over
/// 2 s. Returns the capture's left channel and the underruns the server
/// counted from the duck to the end of the crossfade.
async fn record() -> (Vec<f32>, u64) {
    let dir = tempfile::tempdir().unwrap();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    fixtures::sine_wav(&music.join("Test - Low.wav"), 440.0, 30.0, 48_000, 2).unwrap();
    fixtures::sine_wav(&music.join("Test - High.wav"), 880.0, 30.0, 48_000, 2).unwrap();
    let capture_path = dir.path().join("capture.raw");
    let conf = alsa_config(dir.path(), &capture_path);
    let (server, output) = start(dir.path(), &conf, &music);
    assert_ne!(output, "virtual", "the ALSA device must be used");

    dispatch(&server.address, "list music").await;
    // The library scan runs in the background: wait until it found both.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut client = connect(&server.address, None).await.unwrap().command;
        let played = client
            .dispatch(DispatchRequest {
                line: "play music low".into(),
                ..Default::default()
            })
            .await;
        if played.is_ok() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the library was never scanned: {played:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Each step waits for the music's own clock (the position GetStatus
    // reads from the output's sample clock), not for wall time: the `null`
    // device runs as fast as it is fed.
    played_until(&server.address, "Low", 1.0).await;
    let mut status = system(&server.address).await;
    let underruns_before = audio_status(&mut status).await.underruns;
    dispatch(&server.address, "duck 0.3 1500").await;
    // The position now is past the duck's start: the ramp (1.5 s) is over
    // a full second before the crossfade.
    let ducked = played_until(&server.address, "Low", 0.0).await;
    played_until(&server.address, "Low", ducked + 2.5).await;
    dispatch(&server.address, "crossfade high 2").await;
    played_until(&server.address, "High", 3.5).await;
    let starved = audio_status(&mut status).await.underruns - underruns_before;
    dispatch(&server.address, "stop music").await;
    dispatch(&server.address, "quit").await;
    let mut server = server;
    let status = server.child.wait().unwrap();
    assert!(status.success(), "the server exits cleanly: {status:?}");

    let left = capture(&capture_path);
    assert!(
        left.len() > RATE,
        "at least a second was captured: {} frames",
        left.len()
    );
    (left, starved)
}

#[tokio::test]
async fn the_alsa_device_gets_the_tone_the_duck_and_the_crossfade() {
    // The `null` device takes samples as fast as they come, so a stall of
    // the machine of a few milliseconds starves a voice for a second of
    // music: a gap in the capture, or, in a crossfade, one tone missing
    // while the other plays on. A run whose measurements fail while the
    // server counted underruns in the measured part says nothing about the
    // mixer, and the scenario is played again (at most 5 times; the last
    // failure is reported whatever it is). A run without underruns that
    // fails, fails at once.
    for attempt in 1..=5 {
        let (left, starved) = record().await;
        match std::panic::catch_unwind(|| analyse(&left)) {
            Ok(()) => return,
            Err(_) if starved > 0 && attempt < 5 => {
                eprintln!(
                    "attempt {attempt}: {starved} underruns in the measured part; playing again"
                );
            }
            Err(failure) => std::panic::resume_unwind(failure),
        }
    }
}

/// Checks the capture: the tone, the duck's ramp and depth, the equal-power
/// crossfade.
fn analyse(left: &[f32]) {
    // The `null` device takes samples as fast as they come, faster than a
    // debug build decodes, so the capture has gaps where the decoder fell
    // behind (runs of exact zeros: underruns). The mixer's ramps run on in
    // a gap, so the capture's frame count stays its clock; measurements
    // skip the windows with a gap instead of closing them up.
    let window = RATE / 100; // 10 ms
    let valid: Vec<bool> = left.chunks(window).map(|w| !has_gap(w)).collect();

    // 1. The tone: 440 Hz, from the zero crossings of a gap-free half second.
    let half = (0..valid.len().saturating_sub(50))
        .find(|&i| valid[i..i + 50].iter().all(|v| *v))
        .expect("half a second without a gap");
    let head = &left[half * window..half * window + RATE / 2];
    let rising = head
        .windows(2)
        .filter(|w| w[0] < 0.0 && w[1] >= 0.0)
        .count();
    let frequency = rising as f64 * 2.0;
    assert!((frequency - 440.0).abs() <= 4.0, "tone at {frequency} Hz");

    // 2. The duck: from the full level down to 0.3 of it, a straight line
    // over 1.5 s. The line is fitted through the windows inside the ramp.
    let levels: Vec<Option<f64>> = left
        .chunks(window)
        .zip(&valid)
        .map(|(w, ok)| ok.then(|| f64::from(w.iter().fold(0.0f32, |m, s| m.max(s.abs())))))
        .collect();
    let full = levels[half..half + 50]
        .iter()
        .flatten()
        .copied()
        .fold(0.0, f64::max);
    // The ramp: from the first window below 95 % to the first below 35 %.
    let gain_at = |i: usize| levels[i].map(|l| l / full);
    let from = (half..levels.len())
        .find(|&i| gain_at(i).is_some_and(|g| g < 0.95))
        .expect("the music was ducked");
    let to = (from..levels.len())
        .find(|&i| gain_at(i).is_some_and(|g| g < 0.35))
        .expect("the duck reached its level");
    let inside: Vec<(f64, f64)> = (from..to)
        .filter_map(|i| gain_at(i).map(|g| (i as f64 * 0.01, g)))
        .filter(|(_, g)| (0.4..0.9).contains(g))
        .collect();
    assert!(
        inside.len() >= 20,
        "the duck's ramp is in the capture ({} windows)",
        inside.len()
    );
    let (slope, _) = fit(&inside);
    let ramp = 0.7 / -slope;
    assert!(
        (ramp - 1.5).abs() <= 0.03,
        "duck ramp of {ramp:.3} s, asked for 1.5 s"
    );
    let settled_at = to + 20;
    let settled: Vec<f64> = levels[settled_at..settled_at + 50]
        .iter()
        .flatten()
        .copied()
        .collect();
    let depth = settled.iter().copied().fold(0.0, f64::max) / full;
    assert!(
        (depth - 0.3).abs() <= 0.01,
        "ducked to {depth:.3} of the level, asked for 0.3"
    );

    // 3. The crossfade, in 100 ms blocks (whole cycles of both tones): each
    // tone's gain relative to the ducked level. Equal power: low² + high² =
    // 1, the angle atan2(high, low) rises in a straight line from 0 to 90°
    // over the crossfade's 2 s, and then the new track plays alone.
    let block = RATE / 10;
    let ducked = depth * full;
    let blocks: Vec<Option<(f64, f64)>> = left[settled_at * window..]
        .chunks_exact(block)
        .map(|b| {
            (!has_gap(b)).then(|| (tone_level(b, 440.0) / ducked, tone_level(b, 880.0) / ducked))
        })
        .collect();
    let during: Vec<(f64, (f64, f64))> = blocks
        .iter()
        .enumerate()
        .filter_map(|(i, b)| b.map(|b| (i as f64 * 0.1, b)))
        .filter(|(_, (low, high))| *low > 0.1 && *high > 0.1)
        .collect();
    assert!(
        during.len() >= 10,
        "the crossfade is in the capture ({} blocks)",
        during.len()
    );
    let powers: Vec<f64> = during.iter().map(|(_, (l, h))| l * l + h * h).collect();
    let steady = powers.iter().filter(|p| (*p - 1.0).abs() < 0.06).count();
    assert!(
        steady * 10 >= powers.len() * 9,
        "equal power through the crossfade: low² + high² = {powers:.3?}"
    );
    let angles: Vec<(f64, f64)> = during
        .iter()
        .zip(&powers)
        .filter(|(_, p)| (*p - 1.0).abs() < 0.06)
        .map(|((t, (l, h)), _)| (*t, h.atan2(*l)))
        .collect();
    let (slope, _) = fit(&angles);
    let length = std::f64::consts::FRAC_PI_2 / slope;
    assert!(
        (length - 2.0).abs() <= 0.1,
        "crossfade of {length:.2} s, asked for 2 s"
    );
    // The outgoing tone is below 0.1 only in the crossfade's last 0.13 s.
    let end = ((during.last().unwrap().0 + 0.4) / 0.1) as usize;
    let after = blocks[end..]
        .iter()
        .flatten()
        .take(5)
        .map(|(l, h)| (*l, *h))
        .collect::<Vec<_>>();
    assert_eq!(after.len(), 5, "the new track plays on after the crossfade");
    for (low, high) in after {
        assert!(
            low < 0.02 && (high - 1.0).abs() < 0.03,
            "then the new track alone: {low:.3}, {high:.3}"
        );
    }
}

/// A run of 16 exact zeros: the decoder fell behind (no tone crosses zero
/// on 16 samples in a row).
fn has_gap(samples: &[f32]) -> bool {
    samples.split(|s| *s != 0.0).any(|run| run.len() >= 16)
}

/// Least-squares line through `points`: (slope, intercept).
fn fit(points: &[(f64, f64)]) -> (f64, f64) {
    let n = points.len() as f64;
    let (sx, sy) = points
        .iter()
        .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
    let (mx, my) = (sx / n, sy / n);
    let (sxy, sxx) = points.iter().fold((0.0, 0.0), |(a, b), (x, y)| {
        (a + (x - mx) * (y - my), b + (x - mx) * (x - mx))
    });
    let slope = sxy / sxx;
    (slope, my - slope * mx)
}

/// A server with no sound card (ALSA's `default` leads nowhere, as on a
/// headless machine): `default` falls back to the paced virtual output.
#[tokio::test]
async fn without_a_sound_card_default_falls_back_to_the_virtual_output() {
    let dir = tempfile::tempdir().unwrap();
    let music = dir.path().join("music");
    std::fs::create_dir_all(&music).unwrap();
    let conf = dir.path().join("empty.conf");
    std::fs::write(&conf, "").unwrap();
    let (server, output) = start(dir.path(), &conf, &music);
    assert_eq!(output, "virtual");
    let audio = audio_status(&mut system(&server.address).await).await;
    assert!(audio.connected && audio.r#virtual, "{audio:?}");
}
