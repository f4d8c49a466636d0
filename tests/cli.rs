//! The `cantina` binary against a real server: dispatching words, errors and
//! their exit codes, JSON output, tokens, and the shell fed through a pipe.

mod common;

use std::process::Output;

use common::TestServer;
use tokio::{io::AsyncWriteExt, process::Command};

fn cantina(server: &TestServer) -> Command {
    common::cantina(&server.address)
}

async fn run(server: &TestServer, args: &[&str]) -> Output {
    cantina(server)
        .args(args)
        .output()
        .await
        .expect("run cantina")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn a_typo_fails_with_usage_and_a_suggestion() {
    let server = TestServer::start().await;
    let output = run(&server, &["engag"]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("did you mean 'engage'?"), "{stderr}");
    assert!(stderr.contains("usage: engage"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[tokio::test]
async fn words_are_dispatched_as_one_line() {
    let server = TestServer::start().await;
    let output = run(&server, &["engage"]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).trim_end(), "mode IDLE → INTERACTIVE");

    let help = run(&server, &["help", "engage"]).await;
    assert!(
        text(&help.stdout).starts_with("engage: switch to INTERACTIVE mode"),
        "{}",
        text(&help.stdout)
    );
}

#[tokio::test]
async fn quoted_words_reach_the_server_as_one_argument() {
    let server = TestServer::start().await;
    let output = run(&server, &["engage", "right now"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output.stderr).contains("got 'right now'"),
        "{}",
        text(&output.stderr)
    );
}

#[tokio::test]
async fn json_output_is_the_proto3_mapping() {
    let server = TestServer::start().await;
    let output = run(&server, &["-o", "json", "engage"]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let response: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("JSON on stdout");
    assert_eq!(response["command"], "engage");
    assert_eq!(response["data"]["mode"], "INTERACTIVE");
    assert_eq!(response["correlationId"].as_str().unwrap().len(), 36);

    let status = run(&server, &["-o", "json", "status"]).await;
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).expect("JSON on stdout");
    assert_eq!(status["mode"], "MODE_INTERACTIVE");
    assert_eq!(status["subsystems"][0]["status"], "RUNNING");
}

#[tokio::test]
async fn commands_lists_the_server_commands() {
    let server = TestServer::start().await;
    let output = run(&server, &["commands"]).await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    for word in ["system", "modes", "help [command]", "disengage", "quit"] {
        assert!(stdout.contains(word), "{word} missing:\n{stdout}");
    }
    let json = run(&server, &["-o", "json", "commands", "--category", "modes"]).await;
    let response: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(response["commands"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn the_token_is_sent_from_the_flag_or_the_environment() {
    let mut config = common::test_config();
    config.token = Some("s3cret".into());
    let server = TestServer::with_config(config).await;

    let missing = run(&server, &["status"]).await;
    assert_eq!(missing.status.code(), Some(77), "{}", text(&missing.stderr));
    assert!(
        text(&missing.stderr).contains("requires a token"),
        "{}",
        text(&missing.stderr)
    );

    let flag = run(&server, &["--token", "s3cret", "status"]).await;
    assert!(flag.status.success(), "{}", text(&flag.stderr));

    let env = cantina(&server)
        .env("CANTINA_TOKEN", "s3cret")
        .arg("status")
        .output()
        .await
        .unwrap();
    assert!(env.status.success(), "{}", text(&env.stderr));
}

async fn shell(server: &TestServer, input: &str) -> Output {
    let mut child = cantina(server)
        .arg("shell")
        .arg("--history")
        .arg(std::env::temp_dir().join(format!("cantina-history-{}", std::process::id())))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).await.unwrap();
    drop(stdin);
    child.wait_with_output().await.unwrap()
}

#[tokio::test]
async fn the_shell_runs_piped_lines_and_survives_errors() {
    let server = TestServer::start().await;
    let output = shell(&server, "status\nengage\nengag\nidle\nexit\n").await;
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("mode        IDLE"), "{stdout}");
    assert!(stdout.contains("mode IDLE → INTERACTIVE"), "{stdout}");
    assert!(
        stdout.contains("mode INTERACTIVE → IDLE"),
        "the shell carried on after the error: {stdout}"
    );
    assert!(stderr.contains("did you mean 'engage'?"), "{stderr}");
    assert!(
        !stdout.contains("DJ-R3X>"),
        "no prompt without a terminal: {stdout}"
    );
}

#[tokio::test]
async fn quit_in_the_shell_stops_the_server_and_the_shell() {
    let server = TestServer::start().await;
    let output = shell(&server, "quit\nstatus\n").await;
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        text(&output.stdout).contains("shutting down"),
        "{}",
        text(&output.stdout)
    );
    tokio::time::timeout(std::time::Duration::from_secs(5), server.server.wait())
        .await
        .expect("the server stopped")
        .unwrap();
}

#[tokio::test]
async fn status_shows_every_subsystem_as_a_table() {
    let server = TestServer::start().await;
    let output = run(&server, &["status"]).await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(stdout.contains("mode:     IDLE"), "{stdout}");
    let header = stdout
        .lines()
        .find(|l| l.starts_with("NAME"))
        .expect("a table header");
    assert!(
        header.contains("STATUS") && header.contains("UPTIME"),
        "{header}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("bus") && l.contains("RUNNING")),
        "{stdout}"
    );
}

#[tokio::test]
async fn events_shows_transitions_live_while_another_client_engages() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let server = TestServer::start().await;
    let mut watcher = cantina(&server)
        .args(["events", "system.*"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    // Engage until the watcher has subscribed and shows the transition; the
    // first engage may land before its subscription exists.
    let mut seen = Vec::new();
    let mut target = "engage";
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while !seen
        .iter()
        .any(|l: &String| l.contains("system.mode.transition.completed"))
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no transition shown: {seen:?}"
        );
        run(&server, &[target]).await;
        target = if target == "engage" { "idle" } else { "engage" };
        while let Ok(Ok(Some(line))) =
            tokio::time::timeout(std::time::Duration::from_millis(300), lines.next_line()).await
        {
            seen.push(line);
        }
    }
    let completed = seen
        .iter()
        .find(|l| l.contains("system.mode.transition.completed"))
        .unwrap();
    assert!(completed.contains("modes"), "{completed}");
    assert!(completed.contains("to="), "{completed}");
    assert!(completed.contains("corr="), "{completed}");
    assert!(
        !seen.iter().any(|l| l.contains("command.")),
        "only system.* topics: {seen:?}"
    );
}

#[tokio::test]
async fn publish_puts_an_event_on_the_bus_or_says_why_not() {
    let server = TestServer::start().await;
    let bus = server.server.droid().bus.clone();
    let pressed = bus.wait_for(
        cantina_server::bus::TopicSelector::parse(&["ext.button.*"]).unwrap(),
        |_| true,
        std::time::Duration::from_secs(10),
    );
    let output = run(
        &server,
        &[
            "--correlation-id",
            "cli-7",
            "publish",
            "ext.button.pressed",
            r#"{"button": 3}"#,
        ],
    )
    .await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        stdout.starts_with("published ext.button.pressed (seq ") && stdout.contains("cli-7"),
        "{stdout}"
    );
    let event = pressed.await.unwrap();
    assert_eq!(event.payload, serde_json::json!({"button": 3}));
    assert_eq!(event.correlation_id, "cli-7");

    let refused = run(&server, &["publish", "system.mode.changed"]).await;
    let stderr = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot be published by a client"),
        "{stderr}"
    );
    let bad_json = run(&server, &["publish", "ext.x", "{button"]).await;
    assert_eq!(bad_json.status.code(), Some(2));
    assert!(text(&bad_json.stderr).contains("not valid JSON"));
}

#[tokio::test]
async fn move_turns_the_simulated_head_and_status_shows_the_servos() {
    use cantina_server::{
        config::{ServoPort, ServoSpec},
        servos::sim::{SimMaestro, SimOptions},
    };
    let dir = tempfile::tempdir().unwrap();
    let board = SimMaestro::start(SimOptions::new(dir.path().join("maestro"))).unwrap();
    let mut config = common::test_config();
    config.servo_port = ServoPort::Path(board.link().to_path_buf());
    config.servos = vec![ServoSpec {
        name: "head".into(),
        channel: 0,
        min_us: 1000,
        max_us: 2000,
        home_us: 1500,
        max_speed: None,
    }];
    let server = TestServer::with_config(config).await;

    let output = run(&server, &["move", "head", "0.8", "1s"]).await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        stdout.starts_with("head sent straight to 0.80 (1800 µs)")
            || stdout.starts_with("head moving "),
        "{stdout}"
    );
    let output = run(&server, &["move", "head", "0.2", "1s"]).await;
    let stdout = text(&output.stdout);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(
        stdout.starts_with("head moving 0.80 → 0.20 (1800 → 1200 µs) over 1s, ease-in-out"),
        "{stdout}"
    );
    // The board gets the targets one frame at a time, on their way down.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    while board.channel(0).unwrap().target != 4800 {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            board.targets()
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let down: Vec<u16> = board
        .targets()
        .iter()
        .map(|t| t.target)
        .skip_while(|&t| t != 7200)
        .collect();
    assert!(down.len() > 40, "{down:?}");
    assert!(down.windows(2).all(|w| w[0] > w[1]), "{down:?}");

    let unknown = run(&server, &["move", "haed", "0.5"]).await;
    assert_ne!(unknown.status.code(), Some(0));
    assert!(
        text(&unknown.stderr).contains("did you mean 'head'?"),
        "{}",
        text(&unknown.stderr)
    );

    let status = run(&server, &["status"]).await;
    let stdout = text(&status.stdout);
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(stdout.contains("\nservos:\n"), "{stdout}");
    let row = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("head "))
        .expect("a row for the head");
    assert!(
        row.contains("1000–2000 µs") && row.contains("1200 µs") && row.contains("0.20"),
        "{row}"
    );
}
