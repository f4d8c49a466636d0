//! Crashes lose nothing that was promised: the real `cantina-server` binary,
//! killed with SIGKILL in the middle of a busy session, leaves a session file
//! with every line up to its last flush, whole, and the fold counts so far;
//! the next start writes a new file and says the previous session ended
//! abruptly. The volume and the eyes' brightness come back after a SIGKILL
//! and after a clean stop; a corrupt state file is put aside.

mod common;

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use cantina::{
    client::connect,
    v1::{
        DispatchRequest, GetStatusRequest, LogEntry, TailLogsRequest,
        log_service_client::LogServiceClient, system_service_client::SystemServiceClient,
    },
};
use common::bin;

/// The flush interval the servers here run with.
const FLUSH: Duration = Duration::from_millis(100);

/// A `cantina-server` process, killed if the test ends early.
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

impl Server {
    /// Starts the binary on the data and log folders under `dir`.
    fn start(dir: &Path) -> Server {
        let mut child = Command::new(bin("cantina-server"))
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .env("CANTINA_DATA_DIR", dir.join("data"))
            .env("CANTINA_LOG_DIR", dir.join("logs"))
            .env("CANTINA_MUSIC_DIR", dir.join("music"))
            .env("CANTINA_AUDIO_OUTPUT", "virtual")
            .env("CANTINA_EYES_PORT", "virtual")
            .env("CANTINA_SERVO_PORT", "virtual")
            .env("CANTINA_MODE_CHIME", "false")
            .env("CANTINA_SHUTDOWN_GRACE", "100ms")
            .env("CANTINA_LOG_FILE_FORMAT", "json")
            .env("CANTINA_LOG_FLUSH_INTERVAL", "100ms")
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
        let address = loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .unwrap_or_else(|_| panic!("the server did not come up:\n{}", seen.join("\n")));
            if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
                && event["fields"]["message"] == "listening"
            {
                break event["fields"]["address"].as_str().unwrap().to_string();
            }
            seen.push(line);
        };
        // Keep reading, so that the server never blocks on a full pipe.
        std::thread::spawn(move || while rx.recv().is_ok() {});
        Server { child, address }
    }

    async fn dispatch(&self, line: &str, correlation_id: &str) -> cantina::v1::DispatchResponse {
        connect(&self.address, None)
            .await
            .expect("connects")
            .command
            .dispatch(DispatchRequest {
                line: line.into(),
                correlation_id: correlation_id.into(),
            })
            .await
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .into_inner()
    }

    /// The volume and the eyes' brightness, from GetStatus.
    async fn volume_and_brightness(&self) -> (u32, f64) {
        let channel = connect(&self.address, None).await.unwrap().channel;
        let status = SystemServiceClient::new(channel)
            .get_status(GetStatusRequest::default())
            .await
            .unwrap()
            .into_inner();
        (
            status.audio.unwrap().volume,
            status.eyes.unwrap().brightness,
        )
    }

    /// The log entries in the ring now.
    async fn ring(&self) -> Vec<LogEntry> {
        let channel = connect(&self.address, None).await.unwrap().channel;
        let mut stream = LogServiceClient::new(channel)
            .tail_logs(TailLogsRequest::default())
            .await
            .unwrap()
            .into_inner();
        let mut entries = Vec::new();
        while let Some(entry) = stream.message().await.unwrap() {
            entries.push(entry);
        }
        entries
    }

    /// SIGKILL: no chance to write anything more.
    fn kill(mut self) {
        self.child.kill().expect("SIGKILL");
        self.child.wait().unwrap();
    }

    /// A clean stop (SIGTERM), waited for.
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "the server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// The session files under `dir`, oldest first.
fn session_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir.join("logs")) else {
        return Vec::new();
    };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
        .map(|e| e.unwrap())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("cantina-session-")
        })
        .map(|e| (e.metadata().unwrap().modified().unwrap(), e.path()))
        .collect();
    files.sort();
    files.into_iter().map(|(_, path)| path).collect()
}

/// The lines of a JSON-lines session file, each parsed; panics on a line
/// that does not parse or a file that does not end in `\n`.
fn lines_of(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "{} ends in a torn line: {:?}",
        path.display(),
        text.lines().last()
    );
    text.lines()
        .map(|line| {
            serde_json::from_str(line).unwrap_or_else(|e| {
                panic!("a line of {} does not parse ({e}): {line}", path.display())
            })
        })
        .collect()
}

/// Polls `check` on the session file every few milliseconds until it holds,
/// for at most 10 s; returns the lines it held for.
fn wait_for(
    path: &Path,
    what: &str,
    check: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let lines = lines_of(path);
        if check(&lines) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "{what} never reached {}",
            path.display()
        );
        std::thread::sleep(FLUSH / 4);
    }
}

fn running_status(lines: &[serde_json::Value], id: &str) -> usize {
    lines
        .iter()
        .filter(|l| l["message"] == "running command" && l["correlation_id"] == id)
        .count()
}

/// The `repeated` counts written for command lines of `id`, added up.
fn folded(lines: &[serde_json::Value], id: &str) -> u64 {
    lines
        .iter()
        .filter(|l| l["message"] == "running command" && l["correlation_id"] == id)
        .map(|l| l["repeated"].as_u64().unwrap())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_loses_nothing_flushed_and_the_next_start_says_so() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("music")).unwrap();
    let server = Server::start(dir.path());
    // A busy session: 40 commands with 40 ids, one id's command 6 times
    // (identical lines, folded), and settings that should survive.
    let ids: Vec<String> = (0..40).map(|i| format!("crash-status-{i}")).collect();
    for id in &ids {
        server.dispatch("status", id).await;
    }
    for _ in 0..6 {
        server.dispatch("status", "crash-again").await;
    }
    server.dispatch("volume 35", "crash-volume").await;
    server.dispatch("eye brightness 0.3", "crash-eyes").await;
    assert_eq!(server.volume_and_brightness().await, (35, 0.3));
    let files = session_files(dir.path());
    assert_eq!(files.len(), 1, "{files:?}");
    let first = files[0].clone();
    // Within a flush interval or two every line is in the file, and the
    // folded repeats are counted there too, well before the dedup window
    // (30 s) closes.
    let written = wait_for(&first, "the 40 commands and the 5 repeats", |lines| {
        ids.iter().all(|id| running_status(lines, id) == 1)
            && running_status(lines, "crash-again") >= 1
            && folded(lines, "crash-again") == 5
    });
    let state = dir.path().join("data").join("state.json");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&state).is_ok_and(|s| s.contains("0.3")) {
        assert!(Instant::now() < deadline, "the state file was not written");
        std::thread::sleep(FLUSH / 4);
    }
    server.kill();

    // After the kill: whole lines (lines_of checks), all 40, the counts kept.
    let lines = lines_of(&first);
    assert!(lines.len() >= written.len());
    for id in &ids {
        assert_eq!(running_status(&lines, id), 1, "{id}");
    }
    // The first of the six is a line of its own, the five repeats are
    // counted once each, whether in one report or several.
    assert_eq!(folded(&lines, "crash-again"), 5);
    assert!(
        !lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.ends_with("ended cleanly"))),
        "a killed session cannot have ended cleanly"
    );
    let last_time = lines.last().unwrap()["timestamp"]
        .as_str()
        .unwrap()
        .to_string();

    // The next start: a new file, which says the previous session ended
    // abruptly, naming its file and the time of its last line.
    let server = Server::start(dir.path());
    let files = session_files(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    let second = files.iter().find(|f| **f != first).unwrap().clone();
    let first_name = first.file_name().unwrap().to_string_lossy().into_owned();
    let is_warning = |message: &str| {
        message.contains("ended abruptly")
            && message.contains(&first_name)
            && message.contains(&last_time)
    };
    wait_for(&second, "the abrupt-end warning", |lines| {
        lines
            .iter()
            .any(|l| l["level"] == "WARN" && l["message"].as_str().is_some_and(is_warning))
    });
    assert!(
        server.ring().await.iter().any(|e| is_warning(&e.message)),
        "TailLogs has the warning too"
    );
    // The volume and the brightness came back.
    assert_eq!(server.volume_and_brightness().await, (35, 0.3));
    // The old file was left as it was.
    assert_eq!(lines_of(&first), lines);
    // A reset restarts the parts at what was set, not at the defaults.
    server.dispatch("reset", "crash-reset").await;
    assert_eq!(server.volume_and_brightness().await, (35, 0.3));

    // A clean stop: the file ends with the marker, the next start does not
    // warn, and the settings come back again.
    server.dispatch("volume 60", "crash-volume-2").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&state).is_ok_and(|s| s.contains("60")) {
        assert!(Instant::now() < deadline, "the state file was not written");
        std::thread::sleep(FLUSH / 4);
    }
    server.stop();
    let ended = lines_of(&second);
    assert!(
        ended.last().unwrap()["message"]
            .as_str()
            .unwrap()
            .ends_with("ended cleanly"),
        "{:?}",
        ended.last()
    );
    let server = Server::start(dir.path());
    let files = session_files(dir.path());
    assert_eq!(files.len(), 3, "{files:?}");
    let third = files.last().unwrap().clone();
    assert!(third != first && third != second);
    wait_for(&third, "the start", |lines| {
        lines.iter().any(|l| l["message"] == "droid ready")
    });
    assert!(
        !lines_of(&third).iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("ended abruptly"))),
        "a clean stop is not an abrupt end"
    );
    assert_eq!(server.volume_and_brightness().await, (60, 0.3));
    server.kill();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_last_line_is_reported_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs")).unwrap();
    std::fs::create_dir_all(dir.path().join("music")).unwrap();
    // As a full disk leaves a file: a line cut in the middle.
    let torn = dir
        .path()
        .join("logs")
        .join("cantina-session-20260101-000000.jsonl");
    let text = "{\"timestamp\":\"2026-01-01T00:00:00.000000Z\",\"level\":\"INFO\",\"message\":\"log session 20260101-000000-abcd started\"}\n{\"timestamp\":\"2026-01-01T00:00:01";
    std::fs::write(&torn, text).unwrap();
    let server = Server::start(dir.path());
    let files = session_files(dir.path());
    assert_eq!(files.len(), 2, "{files:?}");
    let new = files.iter().find(|f| **f != torn).unwrap();
    wait_for(new, "the torn-file warning", |lines| {
        lines.iter().any(|l| {
            l["level"] == "WARN"
                && l["message"].as_str().is_some_and(|m| {
                    m.contains("partial line")
                        && m.contains("20260101-000000-abcd")
                        && m.contains("2026-01-01T00:00:00.000000Z")
                })
        })
    });
    server.kill();
    assert_eq!(
        std::fs::read_to_string(&torn).unwrap(),
        text,
        "left as it was"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_state_file_is_put_aside_and_the_defaults_used() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::create_dir_all(dir.path().join("music")).unwrap();
    let state = dir.path().join("data").join("state.json");
    std::fs::write(&state, "{\"volume\": 35, \"eye_bri").unwrap();
    let server = Server::start(dir.path());
    assert_eq!(server.volume_and_brightness().await, (70, 0.8));
    let bad = dir.path().join("data").join("state.json.bad");
    assert_eq!(
        std::fs::read_to_string(&bad).unwrap(),
        "{\"volume\": 35, \"eye_bri"
    );
    let files = session_files(dir.path());
    wait_for(&files[0], "the state file warning", |lines| {
        lines.iter().any(|l| {
            l["level"] == "WARN"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("state.json") && m.contains("state.json.bad"))
        })
    });
    // The server runs on, and keeps what is set from now.
    server.dispatch("volume 20", "").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&state).is_ok_and(|s| s.contains("20")) {
        assert!(Instant::now() < deadline, "the state file was not written");
        std::thread::sleep(FLUSH / 4);
    }
    server.kill();
}
