//! Speech: how fast the droid's voice is made and how soon, and how closely
//! the eyes follow it, side by side in one run.
//!
//! 1. **Synthesis speed**: the same 20-sentence text made by the `espeak-ng`
//!    program (`--stdout`, the whole text at once) and by the server's engine
//!    thread (libespeak-ng, sentence by sentence, every sample handed out).
//!    Target: the server's engine at least as fast as the program (≥ 1×).
//! 2. **`say` → first speech sample at the output**, in output periods, for
//!    a one-sentence text and a 20-sentence text that begins with the same
//!    sentence, on a real [`Audio`] rendering to the paced WAV output (frame
//!    `n` of the file is frame `n` of the sample clock). The clock `C` is read
//!    before the call; the first non-silent frame after it in the file is the
//!    first speech sample. Target: the long text no slower than the short one
//!    plus the time to make one sentence.
//! 3. **Envelope digit → board**: the eyes on the simulated board on a real
//!    pseudo-terminal, the speech alone at volume 100, so the output file
//!    holds the speech voice's samples exactly. The levels the server must
//!    send are worked out from the file with the same envelope (espeak-ng's
//!    output varies by a few samples between syntheses, so a second
//!    synthesis is no reference); each digit's window begins at frame
//!    `S + k·W` (`S`: the voice's first frame, on a period boundary); the
//!    bench's clock watcher gives the moment the output had rendered that
//!    frame, and the board stamps the moment the digit's byte finished
//!    arriving. Target: p99 ≤ one period + the wire's 2 bytes.
//!
//! `cargo bench` passes `--bench`; without it (`cargo test --benches`) this
//! is a quick check with few trials.

use std::{
    path::Path,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use cantina_server::{
    audio::{Audio, AudioSettings},
    bus::{Bus, TopicSet},
    config::{AudioOutput, EyesPort},
    declare,
    eyes::{
        Eyes, EyesSettings,
        sim::{SimBoard, SimEvent, SimOptions},
    },
    lifecycle::Supervisor,
    speech::{
        EngineChoice, SpeakOptions, Speech, SpeechSettings,
        engine::{EngineThread, Out, Params},
        envelope::Envelope,
        text,
    },
};

const RATE: u32 = 48_000;
const PERIOD: u32 = 512;
const SHORT: &str = "Welcome to Oga's Cantina, where the drinks are cold and the music is hot.";

fn long_text() -> String {
    let mut text = String::from(SHORT);
    let things = [
        "the band",
        "the bartender",
        "a Wookiee",
        "the pilot",
        "a droid",
        "the smuggler",
        "the captain",
        "a Jawa",
        "the dancer",
        "the stranger",
    ];
    for i in 0..19 {
        text.push_str(&format!(
            " Tonight {} asks for song number {} and dances until dawn.",
            things[i % things.len()],
            i + 3
        ));
    }
    text
}

fn settings() -> SpeechSettings {
    SpeechSettings {
        cache_max: 0,
        ..declare::defaults()
    }
}

fn params() -> Params {
    let s = settings();
    Params {
        voice: s.voice,
        rate: s.rate,
        pitch: s.pitch,
    }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Makes `sentences` on `engine`; returns (mono samples, wall seconds).
fn synth(engine: &EngineThread, sentences: &[String]) -> (Vec<i16>, f64) {
    let t = Instant::now();
    let rx = engine.synth(
        sentences.to_vec(),
        params(),
        Arc::new(AtomicBool::new(false)),
    );
    let mut samples = Vec::new();
    while let Ok(out) = rx.recv() {
        match out {
            Out::Audio(pcm) => samples.extend(pcm),
            Out::SentenceEnd(_) => {}
            Out::Done(result) => {
                result.expect("espeak-ng speaks");
                break;
            }
        }
    }
    (samples, t.elapsed().as_secs_f64())
}

/// The `espeak-ng` program on `text`; wall seconds and bytes of WAV.
fn program(text: &str) -> (f64, usize) {
    let s = settings();
    let t = Instant::now();
    let out = Command::new("espeak-ng")
        .args([
            "-v",
            &s.voice,
            "-s",
            &s.rate.to_string(),
            "-p",
            &s.pitch.to_string(),
            "--stdout",
            text,
        ])
        .output()
        .expect("the espeak-ng program (./dev.sh installs it)");
    assert!(out.status.success());
    (t.elapsed().as_secs_f64(), out.stdout.len())
}

/// Watches the sample clock from a thread: every change, with its time.
struct Watcher {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Vec<(u64, Instant)>>,
}

impl Watcher {
    fn start(clock: cantina_server::audio::SampleClock) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = thread::spawn(move || {
            let mut seen = vec![(clock.frames(), Instant::now())];
            while !flag.load(Ordering::Relaxed) {
                let f = clock.frames();
                if f != seen.last().expect("one").0 {
                    seen.push((f, Instant::now()));
                }
                thread::sleep(Duration::from_micros(50));
            }
            seen
        });
        Self { stop, thread }
    }

    fn finish(self) -> Vec<(u64, Instant)> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the watcher")
    }
}

fn read_wav(path: &Path) -> Vec<f32> {
    hound::WavReader::open(path)
        .expect("the output file")
        .into_samples::<f32>()
        .map(Result::unwrap)
        .step_by(2)
        .collect()
}

struct Droid {
    audio: Audio,
    speech: Speech,
    bus: Bus,
    supervisor: Supervisor,
}

async fn droid(dir: &Path, wav: &Path, eyes_port: EyesPort) -> Droid {
    let bus = Bus::default();
    let audio = Audio::new(
        AudioSettings {
            output: AudioOutput::Wav(wav.to_path_buf()),
            sample_rate: Some(RATE),
            period_frames: Some(PERIOD),
            music_dir: Some(dir.join("music")),
            data_dir: dir.join("data"),
            retry_max: Duration::from_secs(1),
            dj_transition: Duration::from_secs(5),
            dj_commentary_lead: Duration::ZERO,
            mode_chime: false,
        },
        bus.clone(),
    );
    let eyes_settings = EyesSettings {
        heartbeat: Duration::ZERO,
        ..declare::defaults()
    };
    let eyes = Eyes::new(eyes_port, eyes_settings, bus.clone());
    let speech = Speech::new(
        settings(),
        dir.join("data"),
        audio.clone(),
        eyes.clone(),
        bus.clone(),
    );
    std::fs::create_dir_all(dir.join("music")).unwrap();
    let supervisor = Supervisor::new(
        vec![
            Arc::new(audio.clone()),
            Arc::new(eyes),
            Arc::new(speech.clone()),
        ],
        vec![Arc::new(bus.clone())],
    );
    supervisor.start_all().await.expect("the droid starts");
    Droid {
        audio,
        speech,
        bus,
        supervisor,
    }
}

async fn wait_silent(droid: &Droid) {
    let ended = droid.bus.wait_for(
        TopicSet::parse(&["speech.ended"]).unwrap(),
        |_| true,
        Duration::from_secs(10),
    );
    droid.speech.stop(None).await.unwrap();
    let _ = ended.await;
    tokio::time::sleep(Duration::from_millis(100)).await;
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(full));
}

async fn run(full: bool) {
    let long = long_text();
    let sentences = text::sentences(&long);
    assert_eq!(sentences.len(), 20);
    let engine = EngineThread::start(&EngineChoice::Espeak)
        .await
        .expect("libespeak-ng (./dev.sh installs espeak-ng)")
        .expect("an engine");
    let engine_rate = engine.info().rate;
    println!(
        "# Speech ({}, voice {}, {} Hz output, {PERIOD}-frame periods)\n",
        engine.info().name,
        settings().voice,
        RATE
    );

    // 1. Synthesis speed.
    let n = if full { 7 } else { 1 };
    let (mut ours, mut theirs, mut first) = (Vec::new(), Vec::new(), Vec::new());
    let mut made = 0;
    for _ in 0..n {
        let (samples, secs) = synth(&engine, &sentences);
        made = samples.len();
        ours.push(secs);
        theirs.push(program(&long).0);
        first.push(synth(&engine, &sentences[..1]).1);
    }
    let audio_secs = made as f64 / f64::from(engine_rate);
    let (ours, theirs, first) = (median(&mut ours), median(&mut theirs), median(&mut first));
    println!("## 1. Synthesis of 20 sentences ({audio_secs:.1} s of speech), median of {n}\n");
    println!("| engine | wall | × real time | ratio (program / ours) |");
    println!("|---|---:|---:|---:|");
    println!(
        "| `espeak-ng` program (`--stdout`) | {:.1} ms | {:.0}× | |",
        theirs * 1e3,
        audio_secs / theirs
    );
    println!(
        "| server engine (libespeak-ng, sentence by sentence) | {:.1} ms | {:.0}× | **{:.2}×** (target ≥ 1× {}) |",
        ours * 1e3,
        audio_secs / ours,
        theirs / ours,
        if theirs / ours >= 1.0 { "✓" } else { "✗" }
    );
    println!(
        "| one sentence, server engine | {:.1} ms | | |\n",
        first * 1e3
    );

    // 2. say → first speech sample.
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("latency.wav");
    let d = droid(dir.path(), &wav, EyesPort::Virtual).await;
    let clock = d.audio.clock().expect("the audio runs");
    let trials = if full { 12 } else { 2 };
    let mut calls: Vec<(bool, u64, f64)> = Vec::new();
    for i in 0..trials * 2 {
        let is_long = i % 2 == 1;
        // Land at every phase of a period.
        let phase = Duration::from_micros(((i * 3779) % 10_667) as u64);
        tokio::time::sleep(Duration::from_millis(20) + phase).await;
        let c = clock.frames();
        let t = Instant::now();
        d.speech
            .speak(if is_long { &long } else { SHORT }, SpeakOptions::default())
            .await
            .expect("speaks");
        calls.push((is_long, c, t.elapsed().as_secs_f64()));
        tokio::time::sleep(Duration::from_millis(150)).await;
        wait_silent(&d).await;
    }
    d.supervisor.stop_all().await;
    let x = read_wav(&wav);
    let (mut short_p, mut long_p, mut reply) = (Vec::new(), Vec::new(), Vec::new());
    for (is_long, c, replied) in &calls {
        let s = (*c as usize..x.len())
            .find(|&i| x[i].abs() > 1e-3)
            .expect("speech after the call");
        let periods = (s as f64 - *c as f64) / f64::from(PERIOD);
        if *is_long {
            long_p.push(periods)
        } else {
            short_p.push(periods)
        }
        reply.push(replied * f64::from(RATE) / f64::from(PERIOD));
    }
    let allowance = first * f64::from(RATE) / f64::from(PERIOD);
    println!(
        "## 2. `say` → first speech sample at the output, in periods ({:.1} ms each), {trials} trials each\n",
        f64::from(PERIOD) / f64::from(RATE) * 1e3
    );
    println!("| text | p50 | p90 | max |");
    println!("|---|---:|---:|---:|");
    for (name, v) in [("1 sentence", &short_p), ("20 sentences", &long_p)] {
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} |",
            percentile(v, 0.5),
            percentile(v, 0.9),
            percentile(v, 1.0)
        );
    }
    let (s50, l50) = (percentile(&short_p, 0.5), percentile(&long_p, 0.5));
    println!(
        "\nlong − short, p50: {:+.2} periods; allowance (one sentence made): {allowance:.2} periods → **{}** (target: long ≤ short + one sentence); the call's own reply took {:.2} periods p50\n",
        l50 - s50,
        if l50 <= s50 + allowance { "✓" } else { "✗" },
        percentile(&reply, 0.5)
    );

    // 3. Envelope digit → board.
    let board_dir = tempfile::tempdir().unwrap();
    let mut options = SimOptions::new(board_dir.path().join("eyes"));
    options.boot_delay = Duration::from_millis(50);
    let board = SimBoard::start(options).expect("a simulated board");
    let byte_time = board.byte_time();
    let events = board.events();
    let dir = tempfile::tempdir().unwrap();
    let wav = dir.path().join("eyes.wav");
    let d = droid(dir.path(), &wav, EyesPort::Path(board.link().to_path_buf())).await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !tokio::task::block_in_place(|| board_ready(&events)) {
        assert!(
            Instant::now() < deadline,
            "the simulated board never booted"
        );
    }
    // The link synchronises after the boot line.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let clock = d.audio.clock().expect("the audio runs");
    let watcher = Watcher::start(clock.clone());
    let text_eyes: String = sentences[..if full { 8 } else { 2 }].join(" ");
    // At full volume the file holds the speech's samples as the server measured them.
    d.audio.volume(100).await.expect("volume");
    let c = clock.frames();
    let ended = d.bus.wait_for(
        TopicSet::parse(&["speech.ended"]).unwrap(),
        |_| true,
        Duration::from_secs(60),
    );
    d.speech
        .speak(&text_eyes, SpeakOptions::default())
        .await
        .expect("speaks");
    ended.await.expect("the speech ends");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let seen = watcher.finish();
    d.supervisor.stop_all().await;
    let mut got = Vec::new();
    while let Ok(event) = events.try_recv() {
        if let SimEvent::Command { byte, at, .. } = event {
            got.push((byte, at));
        }
    }
    let start_s = got.iter().position(|(b, _)| *b == b'S').expect("S sent");
    let digits: Vec<(u8, Instant)> = got[start_s + 1..]
        .iter()
        .filter(|(b, _)| b.is_ascii_digit())
        .map(|(b, at)| (b - b'0', *at))
        .collect();
    // The last is the brightness put back after the speech.
    let mut digits = digits;
    digits.pop();

    // The levels the server had to send, worked out from the output: at
    // volume 100 with nothing else playing, the file holds the speech voice's
    // samples exactly (f32), from the voice's first frame S, which is on a
    // period boundary (a voice starts with a render). espeak-ng's output
    // varies by a few samples from one synthesis to the next, so the file,
    // not a second synthesis, is the reference.
    let x = read_wav(&wav);
    let first_sound = (c as usize..x.len())
        .find(|&i| x[i] != 0.0)
        .expect("speech in the file") as u64;
    let window = u64::from(RATE / 25);
    let transitions = |start: u64| {
        let mut env = Envelope::new(RATE);
        let stereo: Vec<f32> = x[start as usize..].iter().flat_map(|&v| [v, v]).collect();
        let mut levels = Vec::new();
        env.push(&stereo, &mut levels);
        env.finish(&mut levels);
        let mut due = Vec::new();
        let mut last = None;
        for (k, l) in levels.iter().enumerate() {
            if last != Some(*l) {
                last = Some(*l);
                due.push((k as u64, *l));
            }
        }
        due
    };
    let base = first_sound / u64::from(PERIOD) * u64::from(PERIOD);
    let (start, due) = (0..12u64)
        .filter_map(|back| base.checked_sub(back * u64::from(PERIOD)))
        .map(|start| (start, transitions(start)))
        .max_by_key(|(_, due)| digits.iter().zip(due).filter(|(d, e)| d.0 == e.1).count())
        .expect("a start");
    let matched = digits.iter().zip(&due).filter(|(d, e)| d.0 == e.1).count();
    let mut delays = Vec::new();
    for ((_, at), (k, _)) in digits.iter().zip(&due) {
        let frame = start + k * window;
        let Some((_, rendered)) = seen.iter().find(|(f, _)| *f > frame) else {
            continue;
        };
        let delay = if *at >= *rendered {
            (*at - *rendered).as_secs_f64()
        } else {
            -(*rendered - *at).as_secs_f64()
        };
        delays.push(delay * 1e3);
    }
    let budget = (f64::from(PERIOD) / f64::from(RATE) + 2.0 * byte_time.as_secs_f64()) * 1e3;
    let p99 = percentile(&delays, 0.99);
    println!(
        "## 3. Envelope digit → board, against the sample clock ({} digits; {matched} of them the level the output's envelope calls for)\n",
        digits.len()
    );
    println!("| measure | p50 | p99 | max | budget (1 period + 2 bytes) | ratio p99 / budget |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| digit at the board − its window's first frame rendered | {:.2} ms | {:.2} ms | {:.2} ms | {budget:.2} ms | **{:.2}×** {} |",
        percentile(&delays, 0.5),
        p99,
        percentile(&delays, 1.0),
        p99 / budget,
        if p99 <= budget { "✓" } else { "✗" }
    );
    assert!(
        matched * 10 >= digits.len() * 9,
        "the digits sent are the levels of the speech ({matched} of {})",
        digits.len()
    );
}

fn board_ready(events: &std::sync::mpsc::Receiver<SimEvent>) -> bool {
    matches!(
        events.recv_timeout(Duration::from_millis(50)),
        Ok(SimEvent::Ready)
    )
}
