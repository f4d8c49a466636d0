//! `cantina logs` and `cantina log-level` against real servers: the JSON
//! backlog, following live as commands run, resuming across a server
//! restart, and changing the filter. A binary of its own, since the log
//! filter and capture are per process.

mod common;

use std::{process::Stdio, time::Duration};

use common::{TestServer, cantina};
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::ChildStdout,
};

async fn line_with(lines: &mut Lines<BufReader<ChildStdout>>, needle: &str) -> String {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the follower is still running");
            if line.contains(needle) {
                return line;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no line with {needle:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backlog_as_json_lines() {
    let server = TestServer::start().await;
    for i in 0..5 {
        tracing::info!(target: "cantina_server::droid", "backlog line {i}");
    }
    // The follower's view proves the lines are in the ring before we ask.
    let mut follow = cantina(&server.address)
        .args([
            "logs",
            "--tail",
            "all",
            "-f",
            "--contains",
            "backlog line 4",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    line_with(&mut lines, "backlog line 4").await;
    drop(follow);

    let output = cantina(&server.address)
        .args([
            "logs",
            "--tail",
            "50",
            "-o",
            "json",
            "--contains",
            "backlog line",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let entries: Vec<serde_json::Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(entries.len(), 5);
    assert_eq!(entries[0]["service"], "droid");
    assert_eq!(entries[4]["message"], "backlog line 4");
    assert_eq!(entries[0]["level"], "LOG_LEVEL_INFO");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_shows_lines_live_as_commands_run() {
    let server = TestServer::start().await;
    let mut follow = cantina(&server.address)
        .args([
            "logs",
            "-f",
            "--tail",
            "0",
            "--level",
            "info",
            "--service",
            "commands",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    // Engage until the follower, once connected, shows it.
    let shown = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            cantina(&server.address)
                .arg("engage")
                .output()
                .await
                .unwrap();
            cantina(&server.address).arg("idle").output().await.unwrap();
            if let Ok(Ok(Some(line))) =
                tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await
            {
                return line;
            }
        }
    })
    .await
    .expect("a live line");
    assert!(
        shown.contains("INFO") && shown.contains("commands") && shown.contains("running command"),
        "{shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn following_resumes_across_a_server_restart() {
    let first = TestServer::start().await;
    let address = first.address.clone();
    let mut follow = cantina(&address)
        .args(["logs", "-f", "--tail", "all", "--contains", "restart-probe"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follow.stdout.take().unwrap()).lines();
    let mut notes = BufReader::new(follow.stderr.take().unwrap()).lines();
    tracing::info!(target: "cantina_server::droid", "restart-probe before");
    line_with(&mut lines, "restart-probe before").await;

    first.server.stop().await.unwrap();
    let mut config = common::test_config();
    config.listen = address.parse().unwrap();
    let second = TestServer::with_config(config).await;
    let note = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let line = notes.next_line().await.unwrap().expect("stderr open");
            if line.contains("restarted") {
                return line;
            }
        }
    })
    .await
    .expect("the follower notices the restart");
    assert!(note.contains("new session"), "{note}");
    tracing::info!(target: "cantina_server::droid", "restart-probe after");
    line_with(&mut lines, "restart-probe after").await;
    drop(second);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_level_changes_the_filter_and_refuses_nonsense() {
    let server = TestServer::start().await;
    let output = cantina(&server.address)
        .args(["log-level", "info,cantina_server::modes=debug"])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim_end(),
        "log filter: info → info,cantina_server::modes=debug"
    );
    let bad = cantina(&server.address)
        .args(["log-level", "info,[=x"])
        .output()
        .await
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a log filter"));
}
