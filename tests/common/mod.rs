//! Shared test support: a real server on port 0, connected clients, and the
//! paths of the workspace's binaries.

#![allow(dead_code)]

use std::{path::PathBuf, time::Duration};

use cantina::client::{Clients, connect};
use cantina_server::{RunningServer, config::Config};

/// A configuration for tests: a free port, a short grace period, session
/// logs in a folder of its own. Also installs log capture in this test
/// process (once), so in-process servers capture their logs as the binary
/// does.
pub fn test_config() -> Config {
    cantina_server::telemetry::init_capture_only("info");
    let log_dir = tempfile::tempdir().expect("a temporary folder").keep();
    let data_dir = tempfile::tempdir().expect("a temporary folder").keep();
    let defaults = Config::default();
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        shutdown_grace: Duration::from_millis(300),
        log_dir,
        audio: cantina_server::config::AudioSettings {
            data_dir,
            // An empty library: no demo library to generate for every server.
            music_dir: Some(tempfile::tempdir().expect("a temporary folder").keep()),
            // Deterministic whatever serial ports and sound cards the machine has.
            output: cantina_server::config::AudioOutput::Virtual,
            ..defaults.audio.clone()
        },
        eyes_port: cantina_server::config::EyesPort::Virtual,
        ..defaults
    }
}

/// A server running in this process.
pub struct TestServer {
    /// The running server.
    pub server: RunningServer,
    /// `127.0.0.1:PORT`.
    pub address: String,
}

impl TestServer {
    /// Starts a server with the test configuration.
    pub async fn start() -> Self {
        Self::with_config(test_config()).await
    }

    /// Starts a server with `config`.
    pub async fn with_config(config: Config) -> Self {
        let server = cantina_server::start(config).await.expect("server starts");
        let address = server.local_addr().to_string();
        Self { server, address }
    }

    /// Clients without a token.
    pub async fn client(&self) -> Clients {
        connect(&self.address, None).await.expect("connects")
    }

    /// Clients sending `token`.
    pub async fn client_with_token(&self, token: &str) -> Clients {
        connect(&self.address, Some(token)).await.expect("connects")
    }

    /// Dispatches a console line, without a correlation id.
    pub async fn dispatch(
        &self,
        line: &str,
    ) -> Result<cantina::v1::DispatchResponse, tonic::Status> {
        self.client()
            .await
            .command
            .dispatch(cantina::v1::DispatchRequest {
                line: line.into(),
                correlation_id: String::new(),
            })
            .await
            .map(tonic::Response::into_inner)
    }

    /// The raw channel, for clients of services outside the contract.
    pub async fn channel(&self) -> tonic::transport::Channel {
        tonic::transport::Endpoint::from_shared(format!("http://{}", self.address))
            .unwrap()
            .connect()
            .await
            .expect("connects")
    }
}

/// The `cantina` CLI pointed at `address`, free of the caller's
/// `CANTINA_*` settings and colours, killed if the test drops it.
pub fn cantina(address: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(bin("cantina"));
    command
        .args(["--server", address])
        .env_remove("CANTINA_TOKEN")
        .env_remove("CANTINA_TOKEN_FILE")
        .env_remove("CANTINA_SERVER")
        .env_remove("CANTINA_TLS_CA")
        .env("NO_COLOR", "1")
        .kill_on_drop(true);
    command
}

/// The path of a workspace binary (`cantina`, `cantina-server`). `cargo test
/// --workspace` builds them, because their packages have integration tests.
pub fn bin(name: &str) -> PathBuf {
    let mut dir = std::env::current_exe().expect("test binary path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the workspace first (`cargo build --workspace --all-targets`, which builds the testkit binaries too; the README's test command does)",
        path.display()
    );
    path
}

/// The next message of a server stream, within 5 s.
pub async fn next_in<T>(stream: &mut tonic::Streaming<T>) -> T {
    use tokio_stream::StreamExt;
    tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .expect("a message arrives")
        .expect("the stream is open")
        .expect("not an error")
}

/// A SystemService client of `server`.
pub async fn system(
    server: &TestServer,
) -> cantina::v1::system_service_client::SystemServiceClient<cantina::client::AuthChannel> {
    cantina::v1::system_service_client::SystemServiceClient::new(server.client().await.channel)
}

/// The events of `server` whose topics match `topics`, live.
pub async fn watch(
    server: &TestServer,
    topics: &[&str],
) -> tonic::Streaming<cantina::v1::BusEvent> {
    system(server)
        .await
        .watch_events(cantina::v1::WatchEventsRequest {
            topics: topics.iter().map(|t| t.to_string()).collect(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// An event's payload as JSON.
pub fn payload(event: &cantina::v1::BusEvent) -> serde_json::Value {
    cantina::json::struct_to_json(event.payload.as_ref().unwrap())
}
