//! Replays every committed fuzz input (`server/fuzz/corpus/TARGET/*` and
//! `server/fuzz/regressions/TARGET/*`) through the fuzz targets' bodies
//! (`cantina_server::fuzzing`), on stable Rust: a crash the fuzzer once found
//! comes back as a failing test, without nightly or cargo-fuzz.
//!
//! `cargo test -p cantina-server --test fuzz_corpus -- --ignored write_seeds`
//! (re)writes the seeds made from the server's own data: the example plans
//! (as files and as `RunPlanRequest` messages), the default configuration,
//! tail requests, console lines and board answers. The audio seeds are made
//! with ffmpeg (see server/fuzz/README.md).

use std::{
    fs,
    panic::{AssertUnwindSafe, catch_unwind},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use cantina::v1::{LogLevel, Plan, RunPlanRequest, TailLogsRequest};
use cantina_server::{
    config::Config,
    fuzzing::TARGETS,
    plans::files::{EXAMPLES, parse_document},
};
use prost::Message;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted; none when it does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.expect("a readable entry").path())
                .filter(|p| p.is_file())
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Longer than any input should take, even in a debug build on a busy machine.
const SLOW: Duration = Duration::from_secs(10);

#[test]
fn every_committed_input_passes_its_target() {
    let mut failures = Vec::new();
    for (name, target) in TARGETS {
        let corpus = inputs(&fuzz_dir().join("corpus").join(name));
        assert!(
            !corpus.is_empty(),
            "server/fuzz/corpus/{name} has no inputs: seed it (see server/fuzz/README.md)"
        );
        let regressions = inputs(&fuzz_dir().join("regressions").join(name));
        for file in corpus.iter().chain(&regressions) {
            let data = fs::read(file).expect("a readable input");
            let started = Instant::now();
            let outcome = catch_unwind(AssertUnwindSafe(|| target(&data)));
            let took = started.elapsed();
            if outcome.is_err() {
                failures.push(format!("{}: panicked", file.display()));
            } else if took > SLOW {
                failures.push(format!("{}: took {took:?}", file.display()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_target_has_its_fuzz_target_file() {
    let mut files: Vec<String> = inputs(&fuzz_dir().join("fuzz_targets"))
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut names: Vec<String> = TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    names.sort();
    assert_eq!(
        files, names,
        "server/fuzz/fuzz_targets/ and fuzzing::TARGETS"
    );
    let manifest = fs::read_to_string(fuzz_dir().join("Cargo.toml")).unwrap();
    for name in &names {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "server/fuzz/Cargo.toml has no [[bin]] {name}"
        );
    }
}

/// Writes one seed, named after its content's purpose.
fn seed(target: &str, name: &str, data: &[u8]) {
    let dir = fuzz_dir().join("corpus").join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), data).unwrap();
}

#[test]
#[ignore = "writes the seeds into server/fuzz/corpus; run by hand"]
fn write_seeds() {
    for (file, text) in EXAMPLES {
        seed("plan_document", file, text.as_bytes());
        let value = parse_document(text).expect("an example reads").into_value();
        let plan: Plan =
            cantina::json::from_json(&value.to_string()).expect("an example is a Plan message");
        let request = RunPlanRequest {
            plan: Some(plan),
            ..RunPlanRequest::default()
        };
        seed(
            "plan_proto",
            &format!("{file}.pb"),
            &request.encode_to_vec(),
        );
        let document = RunPlanRequest {
            document: text.to_string(),
            ..RunPlanRequest::default()
        };
        seed(
            "plan_proto",
            &format!("{file}.document.pb"),
            &document.encode_to_vec(),
        );
    }
    seed(
        "config_file",
        "defaults.toml",
        Config::default().to_toml().as_bytes(),
    );
    seed(
        "config_file",
        "servos.toml",
        b"listen = \"127.0.0.1:50051\"\nlog_level = \"debug\"\nservo_channels = 12\n\n\
          [[servo]]\nname = \"head\"\nchannel = 0\nmin_us = 1000\nmax_us = 2000\nhome = 0.5\n\n\
          [[servo]]\nname = \"arm\"\nchannel = 1\nmin_us = 900\nmax_us = 2100\nspeed = 200\n",
    );
    let tails = [
        (
            "follow-errors.pb",
            TailLogsRequest {
                min_level: LogLevel::Warn as i32,
                services: vec!["eyes".into(), "servos".into()],
                follow: true,
                ..TailLogsRequest::default()
            },
        ),
        (
            "pattern.pb",
            TailLogsRequest {
                pattern: r"servo '(\w+)' moved to \d+".into(),
                contains: "moved".into(),
                tail: 20,
                ..TailLogsRequest::default()
            },
        ),
        (
            "resume.pb",
            TailLogsRequest {
                after_seq: 40,
                since: Some(prost_types::Timestamp {
                    seconds: 1_700_000_050,
                    nanos: 0,
                }),
                ..TailLogsRequest::default()
            },
        ),
    ];
    for (name, request) in tails {
        seed("tail_query", name, &request.encode_to_vec());
    }
    let lines = [
        ("help", "help eye pattern"),
        ("say", "say \"Welcome to Oga's Cantina\" --voice en"),
        ("eye", "eye pattern scanning"),
        ("brightness", "eye brightness 0.5"),
        ("move", "move head 0.25 500ms"),
        ("play", "play 'cantina band' --fade 2s"),
        ("volume", "volume 80"),
        ("plan", "plan run greeting --queue"),
        ("debug", "debug level servos=trace,info"),
        ("typo", "eye patern happy"),
    ];
    for (name, line) in lines {
        seed("command_line", name, line.as_bytes());
    }
    seed("eyes_answer", "done", b"+\n");
    seed(
        "eyes_answer",
        "chatter",
        b"boot v1.2\r\n\r\n-\n+\ndebug: pattern=3\n+",
    );
    seed("maestro_answer", "errors", &[0x00, 0x00, 0x00]);
    seed("maestro_answer", "position", &[0x01, 0x70, 0x17]);
    seed("maestro_answer", "moving", &[0x02, 0x01, 0x00, 0x10]);
    seed(
        "maestro_answer",
        "commands",
        &[
            0x05, 0x84, 0x00, 0x70, 0x2E, 0x87, 0x00, 0x10, 0x00, 0x90, 0x00, 0x93, 0xA1, 0xA2,
        ],
    );
}
