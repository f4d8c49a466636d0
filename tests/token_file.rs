//! `token_file` (`CANTINA_TOKEN_FILE`): the server binary reads its token
//! from a file, so it is in no environment or process list; a right token
//! passes, a wrong one is refused and counted; the CLI reads its token from
//! a file the same way (`--token-file`). A file readable by others is
//! warned about, and a file that cannot be used stops the server at start
//! with a message naming it.

mod common;

use std::{
    io::{BufRead, BufReader},
    os::unix::fs::PermissionsExt,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use cantina::v1::{GetStatusRequest, system_service_client::SystemServiceClient};
use common::bin;
use tonic::Code;

/// The server binary, killed when dropped.
struct Server {
    child: Child,
    address: String,
    /// Its stderr lines up to "listening".
    lines: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server binary with `env` set, on a free port, its files in `dir`.
fn command(dir: &Path, env: &[(&str, &Path)]) -> Command {
    let mut command = Command::new(bin("cantina-server"));
    command
        .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
        .env("CANTINA_DATA_DIR", dir.join("data"))
        .env("CANTINA_LOG_DIR", dir.join("logs"))
        .env("CANTINA_MUSIC_DIR", dir)
        .env("CANTINA_AUDIO_OUTPUT", "virtual")
        .env("CANTINA_EYES_PORT", "virtual")
        .env("CANTINA_SHUTDOWN_GRACE", "100ms")
        .env_remove("CANTINA_TOKEN")
        .env_remove("CANTINA_TOKEN_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    command
}

/// Starts the server binary; returns once it listens.
fn start(dir: &Path, env: &[(&str, &Path)]) -> Server {
    let mut server = Server {
        child: command(dir, env).spawn().expect("start cantina-server"),
        address: String::new(),
        lines: Vec::new(),
    };
    let stderr = BufReader::new(server.child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while server.address.is_empty() {
        let line = rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .unwrap_or_else(|_| panic!("the server did not come up:\n{}", server.lines.join("\n")));
        if let Ok(event) = serde_json::from_str::<serde_json::Value>(&line)
            && event["fields"]["message"] == "listening"
        {
            server.address = event["fields"]["address"].as_str().unwrap().to_string();
        }
        server.lines.push(line);
    }
    std::thread::spawn(move || while rx.recv().is_ok() {});
    server
}

/// GetStatus with `token`.
async fn get_status(address: &str, token: &str) -> Result<cantina::v1::SystemStatus, Code> {
    let clients = cantina::client::connect(address, Some(token))
        .await
        .expect("connects");
    SystemServiceClient::new(clients.channel)
        .get_status(GetStatusRequest {})
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| status.code())
}

fn write_token(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn the_server_takes_its_token_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    write_token(&token_file, "from-a-file\n", 0o600);
    let server = start(dir.path(), &[("CANTINA_TOKEN_FILE", &token_file)]);
    assert!(
        !server.lines.iter().any(|l| l.contains("chmod 600")),
        "a private file is not warned about"
    );

    // The trailing newline is not part of the token; nothing less is.
    assert!(get_status(&server.address, "from-a-file").await.is_ok());
    assert_eq!(
        get_status(&server.address, "from-a-fil").await.err(),
        Some(Code::Unauthenticated)
    );
    assert_eq!(
        get_status(&server.address, "wrong").await.err(),
        Some(Code::Unauthenticated)
    );
    let status = get_status(&server.address, "from-a-file").await.unwrap();
    assert_eq!(status.edge.unwrap().auth_failures, 2);

    // The CLI reads its token from a file too.
    let cli_token = dir.path().join("cli-token");
    write_token(&cli_token, "from-a-file\n", 0o600);
    let output = common::cantina(&server.address)
        .arg("--token-file")
        .arg(&cli_token)
        .arg("status")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(stdout.contains("failed tokens: 2"), "{stdout}");

    write_token(&cli_token, "not-it\n", 0o600);
    let output = common::cantina(&server.address)
        .env("CANTINA_TOKEN_FILE", &cli_token)
        .arg("status")
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(77), "{stderr}");
    assert!(stderr.contains("--token-file"), "{stderr}");
}

#[tokio::test]
async fn a_token_file_others_can_read_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    write_token(&token_file, "s3cret", 0o644);
    let server = start(dir.path(), &[("CANTINA_TOKEN_FILE", &token_file)]);
    let warning = server
        .lines
        .iter()
        .find(|l| l.contains("chmod 600"))
        .unwrap_or_else(|| panic!("no warning:\n{}", server.lines.join("\n")));
    assert!(warning.contains("\"WARN\""), "{warning}");
    assert!(
        warning.contains(&token_file.display().to_string()),
        "{warning}"
    );
    assert!(get_status(&server.address, "s3cret").await.is_ok());
}

/// The server binary's exit code and stderr, when it does not start.
fn refuses_to_start(dir: &Path, env: &[(&str, &Path)]) -> String {
    let output = command(dir, env).output().expect("runs cantina-server");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "{stderr}");
    stderr
}

#[test]
fn a_token_file_that_cannot_be_used_stops_the_server_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let stderr = refuses_to_start(dir.path(), &[("CANTINA_TOKEN_FILE", &missing)]);
    assert!(
        stderr.contains("token_file") && stderr.contains(&missing.display().to_string()),
        "{stderr}"
    );

    let empty = dir.path().join("empty");
    write_token(&empty, "\n", 0o600);
    let stderr = refuses_to_start(dir.path(), &[("CANTINA_TOKEN_FILE", &empty)]);
    assert!(
        stderr.contains("is empty") && stderr.contains(&empty.display().to_string()),
        "{stderr}"
    );

    let both = dir.path().join("both");
    write_token(&both, "s3cret", 0o600);
    let stderr = refuses_to_start(
        dir.path(),
        &[
            ("CANTINA_TOKEN_FILE", &both),
            ("CANTINA_TOKEN", Path::new("also-s3cret")),
        ],
    );
    assert!(stderr.contains("pick one"), "{stderr}");
}
