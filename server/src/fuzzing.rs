//! The bodies of the fuzz targets (`server/fuzz/`, run with `./dev.sh fuzz`):
//! one function per target, taking the fuzzer's bytes and feeding them to
//! the server's own parsers, exactly as the server would, with nothing run.
//! Each must return (an error is fine: it is what bad input gets) without
//! panicking, overflowing its stack, running out of memory or taking long.
//!
//! The fuzz targets are one line each, so that the replay test
//! (`server/tests/fuzz_corpus.rs`) runs every committed corpus file and
//! every regression input through the same functions on stable Rust, in the
//! normal test suite. Not part of the server's API.

use std::{
    sync::{Arc, LazyLock},
    time::{Duration, Instant, SystemTime},
};

use tracing::Level;

use crate::{
    commands::{self, Registry},
    config::Sources,
    eyes::protocol::{Line, LineSplitter},
    grpc::fuzz,
    logs::{
        Entry,
        capture::Record,
        tail::{self, Follower, TailRequest},
    },
    plans::{
        decode::Limits,
        files::parse_document,
        model::Plan,
        resolve,
        timeline::{Input, StopMode, Timeline},
    },
    servos::{
        maestro::Maestro,
        protocol::{self as servo_protocol, Command, Decoder, Errors},
    },
    speech::{Upload, decode_upload},
};

/// A fuzz target's body.
pub type Target = fn(&[u8]);

/// Every fuzz target, by name: what `server/fuzz/fuzz_targets/NAME.rs` calls
/// and the replay test runs each corpus folder (`corpus/NAME`) through.
pub const TARGETS: &[(&str, Target)] = &[
    ("command_line", command_line),
    ("plan_proto", plan_proto),
    ("plan_document", plan_document),
    ("config_file", config_file),
    ("eyes_answer", eyes_answer),
    ("maestro_answer", maestro_answer),
    ("tail_query", tail_query),
    ("speech_audio", speech_audio),
];

/// The registry of every command, built once.
static REGISTRY: LazyLock<Registry> =
    LazyLock::new(|| Registry::new(commands::all()).expect("the built-in commands do not collide"));

/// A console line, split and parsed as `Dispatch` would before running it
/// (`Dispatcher::check`); the error message is rendered too.
pub fn command_line(data: &[u8]) {
    let line = String::from_utf8_lossy(data);
    if let Err(e) = commands::parse_line(&REGISTRY, &line) {
        let _ = e.to_string();
    }
}

/// A `RunPlanRequest` off the wire: prost-decoded, its plan (a `Plan`
/// message or a document) converted and decoded as RunPlan does, then
/// checked and run on a timeline ([`validate`]).
pub fn plan_proto(data: &[u8]) {
    match fuzz::run_plan_request(data, &Limits::default()) {
        Some(Ok(plan)) => validate(plan),
        Some(Err(problems)) => {
            let _: Vec<String> = problems.iter().map(ToString::to_string).collect();
        }
        None => {}
    }
}

/// A plan file's text (JSON or YAML), read and decoded as the plans folder
/// and `RunPlan { document }` do, then checked and run on a timeline.
pub fn plan_document(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match parse_document(text).map(|document| (document.decode(&Limits::default()), document)) {
        Ok((Ok(plan), _)) => validate(plan),
        Ok((Err(problems), _)) | Err(problems) => {
            let _: Vec<String> = problems.iter().map(ToString::to_string).collect();
        }
    }
}

/// The most inputs [`validate`] gives a timeline: plenty for any plan the
/// limits let through to end (or to loop a few times).
const MAX_TICKS: usize = 2_000;

/// Checks a decoded plan as the plans service does before starting it (the
/// resolved timings), then plays it on a timeline: every step that begins
/// ends at once, alternately well and badly, until the plan is over or
/// [`MAX_TICKS`] inputs have gone in; then it is stopped.
fn validate(plan: Plan) {
    let resolved = resolve::resolve(&plan);
    for step in &resolved {
        let _ = resolve::json_path(&step.path);
    }
    let mut timeline = Timeline::new(plan);
    let mut now = Duration::ZERO;
    let mut inputs = vec![Input::Tick];
    let mut given = 0;
    while let Some(input) = inputs.pop() {
        if given == MAX_TICKS || timeline.is_ended() {
            break;
        }
        given += 1;
        for output in timeline.input(now, input) {
            if let crate::plans::timeline::Output::Begin { step, .. } = output {
                let result = if given % 2 == 0 {
                    Ok(())
                } else {
                    Err("failed".to_string())
                };
                inputs.push(Input::Done { step, result });
            }
        }
        if inputs.is_empty() {
            match timeline.next_wake() {
                Some(wake) => {
                    now = now.max(wake);
                    inputs.push(Input::Tick);
                }
                None => break,
            }
        }
    }
    let _ = timeline.input(now, Input::Stop(StopMode::Now));
}

/// A configuration file's text: parsed as TOML and every setting (and
/// `[[servo]]` table) validated as `--config` does; the errors or the
/// configuration printed back.
pub fn config_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let sources = Sources {
        file: Some(("fuzz.toml".into(), text.to_string())),
        overrides: Default::default(),
    };
    match sources.resolve() {
        Ok(config) => {
            let _ = config.to_toml();
        }
        Err(errors) => {
            let _ = errors.to_string();
        }
    }
}

/// Bytes from the eyes board: split into lines and classified as the eyes
/// actor reads them, fed whole and in small pieces.
pub fn eyes_answer(data: &[u8]) {
    let mut lines = Vec::new();
    LineSplitter::default().feed(data, |line| lines.push(line));
    let mut again = Vec::new();
    let mut splitter = LineSplitter::default();
    for piece in data.chunks(3) {
        splitter.feed(piece, |line| again.push(line));
    }
    assert_eq!(lines, again, "lines do not depend on how the bytes arrive");
    let _ = Line::parse(data);
}

/// Bytes from (and to) the Maestro: the first byte picks the queries that
/// wait for answers, the rest answer them as the servo actor reads answers
/// (each cut to its query's length, its value and error names decoded);
/// the same bytes, read as commands, go through the board's decoder and the
/// simulated board.
pub fn maestro_answer(data: &[u8]) {
    let Some((&pick, rest)) = data.split_first() else {
        return;
    };
    let queries = [
        Command::GetErrors,
        Command::GetPosition { channel: pick % 24 },
        Command::GetMovingState,
    ];
    let mut answers = rest;
    let mut i = usize::from(pick);
    while !answers.is_empty() {
        let query = queries[i % queries.len()];
        i = i / 3 + 1;
        let len = query.answer_len().min(answers.len());
        let (answer, left) = answers.split_at(len);
        answers = left;
        let value = servo_protocol::answer_value(answer);
        let errors = Errors(value);
        let _ = (errors.names(), errors.to_string(), errors.is_empty());
        let _ = servo_protocol::micros(value);
    }
    let mut decoder = Decoder::default();
    let now = Instant::now();
    let mut board = Maestro::new(pick % 25, now);
    for (n, &byte) in rest.iter().enumerate() {
        if let Some(command) = decoder.feed(byte).command {
            let _ = (command.encode(), command.name(), command.channel());
        }
        let receipt = board.receive(byte, now + Duration::from_millis(n as u64));
        let _ = receipt.answer;
    }
    board.advance(now + Duration::from_secs(60));
    let _ = (board.errors().names(), board.moving());
}

/// The log entries a tail query is tried on: every level and a few services.
static RING: LazyLock<Vec<Entry>> = LazyLock::new(|| {
    let levels = [
        Level::TRACE,
        Level::DEBUG,
        Level::INFO,
        Level::WARN,
        Level::ERROR,
    ];
    let services = ["eyes", "servos", "speech", "plans", "grpc"];
    let messages = [
        "eye pattern set to SCANNING",
        "servo 'head' moved to 1500 µs",
        "speaking 'Welcome to Oga's Cantina'",
        "plan greeting started",
        "request served in 3 ms",
        "",
        "ünïcödé ✓ \u{0}",
    ];
    (0..35u64)
        .map(|i| Entry {
            seq: i * 3 + 1,
            record: Arc::new(Record {
                timestamp: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + i * 7),
                level: levels[i as usize % levels.len()],
                target: "cantina_server::fuzzing",
                message: messages[i as usize % messages.len()].to_string(),
                fields: Vec::new(),
                correlation_id: None,
            }),
            service: services[i as usize % services.len()],
            repeated: 0,
        })
        .collect()
});

/// A `TailLogsRequest` off the wire: prost-decoded and converted as
/// TailLogs does (the `pattern` compiled, the filters checked), then
/// matched against a ring of entries for the backlog and a follower.
pub fn tail_query(data: &[u8]) {
    let Some(Ok(request)) = fuzz::tail_logs_request(data) else {
        return;
    };
    let TailRequest {
        query,
        tail,
        follow,
    } = request;
    let request = TailRequest {
        query: query.clone(),
        tail: tail.min(1_000),
        follow,
    };
    let backlog = tail::backlog(&RING, &request);
    let boundary = RING.last().map_or(0, |e| e.seq);
    let follower = Follower::new(Arc::new(query), boundary);
    for entry in RING.iter() {
        let _ = follower.wants(entry);
    }
    drop(backlog);
}

/// An uploaded clip, as `SpeakAudio` takes it with no encoding given: the
/// bytes decoded (wav, mp3, ogg, flac, m4a …) into a clip, within 1 MiB.
/// Symphonia's own panics are caught and refused by the decoder (see
/// `audio::decode`); the fuzz target quiets the panic hook for them.
pub fn speech_audio(data: &[u8]) {
    if let Err(e) = decode_upload(Upload::Encoded(data.to_vec()), 1 << 20) {
        let _ = e.to_string();
    }
}
