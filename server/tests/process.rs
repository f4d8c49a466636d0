//! The `cantina-server` binary as an operator runs it: configuration errors,
//! `--print-config`, a taken port, and shutdown by SIGTERM/SIGINT with a
//! bounded grace period.

use std::{
    io::{BufRead, BufReader},
    process::{Child, ChildStderr, Command, Stdio},
    sync::mpsc,
    time::Duration,
};

use tokio_stream::StreamExt;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

const SERVER: &str = env!("CARGO_BIN_EXE_cantina-server");

/// A server process and the lines of its stderr.
struct Process {
    child: Child,
    address: String,
    lines: mpsc::Receiver<String>,
}

/// Starts the binary on a free port with JSON logs, and waits for it to say
/// where it listens.
fn spawn(extra: &[&str]) -> Process {
    let mut child = Command::new(SERVER)
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .args(extra)
        .env_remove("CANTINA_TOKEN")
        // Session files out of the source tree; the eyes whatever ports the
        // machine has.
        .env(
            "CANTINA_LOG_DIR",
            std::env::temp_dir().join("cantina-process-test-logs"),
        )
        .env("CANTINA_EYES_PORT", "virtual")
        .env("CANTINA_AUDIO_OUTPUT", "virtual")
        .env(
            "CANTINA_DATA_DIR",
            std::env::temp_dir().join("cantina-process-test-data"),
        )
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("start cantina-server");
    let lines = forward(child.stderr.take().unwrap());
    let address = loop {
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the server logs where it listens");
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        if event["fields"]["message"] == "listening" {
            break event["fields"]["address"].as_str().unwrap().to_string();
        }
    };
    Process {
        child,
        address,
        lines,
    }
}

fn forward(stderr: ChildStderr) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Process {
    fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) with a child's pid has no memory effects.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    /// Waits until the server logs a line containing `needle`.
    fn wait_for_log(&self, needle: &str) {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_else(|_| panic!("the server never logged {needle:?}"));
            if line.contains(needle) {
                return;
            }
        }
    }

    /// Waits for the process to exit; returns its exit code and every line it
    /// logged after start-up.
    fn finish(mut self, within: Duration) -> (Option<i32>, String) {
        let deadline = std::time::Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let log: Vec<String> = self.lines.iter().collect();
                return (status.code(), log.join("\n"));
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the server did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

async fn open_health_watch(
    address: &str,
) -> tonic::Streaming<tonic_health::pb::HealthCheckResponse> {
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel);
    let mut stream = health
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    stream.next().await.unwrap().unwrap();
    stream
}

#[test]
fn sigterm_stops_the_server_cleanly() {
    let server = spawn(&[]);
    server.signal(libc::SIGTERM);
    let (code, log) = server.finish(Duration::from_secs(10));
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("\"signal\":\"SIGTERM\""), "{log}");
    assert!(log.contains("server stopped"), "{log}");
    assert!(
        !log.contains("grace period over"),
        "nothing was open: {log}"
    );
}

#[tokio::test]
async fn an_open_stream_delays_shutdown_only_for_the_grace_period() {
    let server = spawn(&["--shutdown-grace", "500ms"]);
    let mut stream = open_health_watch(&server.address).await;
    server.signal(libc::SIGINT);
    // The watcher hears NOT_SERVING, then the stream is closed at the end of
    // the grace period.
    let update = stream.next().await.unwrap().unwrap();
    assert_eq!(update.status, 2, "NOT_SERVING");
    let (code, log) = tokio::task::spawn_blocking(move || server.finish(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("grace period over"), "{log}");
    while let Some(item) = stream.next().await {
        if item.is_err() {
            break;
        }
    }
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let server = spawn(&["--shutdown-grace", "10m"]);
    let _stream = open_health_watch(&server.address).await;
    server.signal(libc::SIGINT);
    // The second signal must come after the first was handled.
    server.wait_for_log("send it again");
    server.signal(libc::SIGINT);
    let (code, log) = tokio::task::spawn_blocking(move || server.finish(Duration::from_secs(10)))
        .await
        .unwrap();
    assert_eq!(code, Some(130), "{log}");
    assert!(log.contains("second signal"), "{log}");
}

#[test]
fn a_taken_port_is_a_clear_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = holder.local_addr().unwrap().to_string();
    let output = Command::new(SERVER)
        .args(["--listen", &address])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {address}")),
        "{stderr}"
    );
    assert!(stderr.contains("--listen or CANTINA_LISTEN"), "{stderr}");
}

#[test]
fn bad_settings_from_every_source_are_reported_together() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("droid.toml");
    std::fs::write(&file, "concurrency_limit = 0\nlisten_addr = \"x\"\n").unwrap();
    let output = Command::new(SERVER)
        .args(["--config", file.to_str().unwrap(), "--log-format", "xml"])
        .env("CANTINA_REQUEST_TIMEOUT", "never")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("4 bad settings"), "{stderr}");
    assert!(stderr.contains("listen_addr (from "), "{stderr}");
    assert!(stderr.contains("did you mean 'listen'?"), "{stderr}");
    assert!(
        stderr.contains("(from CANTINA_REQUEST_TIMEOUT)"),
        "{stderr}"
    );
    assert!(stderr.contains("(from --log-format)"), "{stderr}");
    assert!(stderr.contains("concurrency_limit = \"0\""), "{stderr}");
}

#[test]
fn print_config_shows_values_and_their_sources() {
    let output = Command::new(SERVER)
        .args(["--print-config", "--eyes-port", "virtual"])
        .env("CANTINA_AUDIO_OUTPUT", "wav:/tmp/show.wav")
        .env("CANTINA_TOKEN", "do-not-print-me")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("eyes_port = \"virtual\"  # CANTINA_EYES_PORT, from --eyes-port"),
        "{stdout}"
    );
    assert!(
        stdout.contains("audio_output = \"wav:/tmp/show.wav\"  # CANTINA_AUDIO_OUTPUT, from CANTINA_AUDIO_OUTPUT"),
        "{stdout}"
    );
    assert!(
        stdout.contains("listen = \"127.0.0.1:50051\"  # CANTINA_LISTEN, from default"),
        "{stdout}"
    );
    assert!(stdout.contains("# token is set (hidden)"), "{stdout}");
    assert!(!stdout.contains("do-not-print-me"), "{stdout}");
}
