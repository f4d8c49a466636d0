//! `cantina plan …` and `cantina panic` against a real server: a plan file
//! run to its end and its exit codes (0 completed, 1 failed, 3 cancelled or
//! skipped), problems as `FILE:LINE:` lines, the timeline, the listing of
//! running and saved plans, pause, resume, watch and the panic button.

mod common;

use std::{path::PathBuf, process::Output, process::Stdio, time::Duration};

use common::TestServer;
use tokio::{
    io::{AsyncBufReadExt, BufReader, Lines},
    process::ChildStdout,
};

async fn run(server: &TestServer, args: &[&str]) -> Output {
    common::cantina(&server.address)
        .args(args)
        .output()
        .await
        .expect("run cantina")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A plan file of `text` in a folder of its own.
fn plan_file(name: &str, text: &str) -> PathBuf {
    let dir = tempfile::tempdir().expect("a temporary folder").keep();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The next line containing `needle` (within 10 s).
async fn line_with(lines: &mut Lines<BufReader<ChildStdout>>, needle: &str) -> String {
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the command is still printing");
            if line.contains(needle) {
                return line;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no line with {needle:?}"))
}

/// A waiting plan: it runs until it is cancelled.
const WAITING: &str = "name: waiting\nsteps:\n  - id: hold\n    waitForEvent: {topic: ext.never}\n";

#[tokio::test]
async fn a_plan_file_runs_to_its_end_with_a_line_per_event_and_exits_0() {
    let server = TestServer::start().await;
    let file = plan_file(
        "blink.yaml",
        r#"name: blink
steps:
  - id: happy
    eyePattern: {pattern: happy}
  - id: hold
    delay: {duration: 0.02s}
  - id: sad
    command: {line: "eye pattern sad"}
"#,
    );
    let output = run(&server, &["plan", "run", file.to_str().unwrap()]).await;
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 8, "{stdout}");
    assert!(
        lines[0].contains("blink") && lines[0].contains("started"),
        "{stdout}"
    );
    let sad = lines
        .iter()
        .find(|l| l.contains(" sad ") && l.contains("step-started"))
        .expect("the step's start");
    assert!(sad.contains("ms late") && sad.contains("RUNNING"), "{sad}");
    assert!(
        lines[7].contains("ended") && lines[7].contains("COMPLETED"),
        "{stdout}"
    );
    // Each line starts with the time of day.
    assert_eq!(lines[0].as_bytes()[2], b':', "{stdout}");

    // JSON Lines: one proto3 object per event.
    let output = run(
        &server,
        &["-o", "json", "plan", "run", file.to_str().unwrap()],
    )
    .await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    let events: Vec<serde_json::Value> = text(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(events.len(), 8);
    assert_eq!(events[7]["kind"], "PLAN_EVENT_KIND_ENDED");
    assert_eq!(events[7]["status"], "PLAN_STATUS_COMPLETED");
    assert_eq!(events[5]["stepId"], "sad");
}

#[tokio::test]
async fn a_failing_step_exits_1_and_a_refused_plan_2_with_its_lines() {
    let server = TestServer::start().await;
    let file = plan_file(
        "fragile.yaml",
        "name: fragile\nsteps:\n  - id: boom\n    command: {line: \"pause music\"}\n",
    );
    let output = run(&server, &["plan", "run", file.to_str().unwrap()]).await;
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("boom") && l.contains("step-failed")),
        "{stdout}"
    );
    let last = stdout.lines().last().unwrap();
    assert!(last.contains("FAILED") && last.contains("'boom'"), "{last}");
    // A multi-line reason stays on its line.
    assert_eq!(stdout.lines().count(), 4, "{stdout}");

    let bad = plan_file(
        "bad.json",
        "{\n  \"steps\": [\n    {\"delay\": {\"duration\": \"-1s\"}}\n  ]\n}\n",
    );
    let path = bad.to_str().unwrap();
    let output = run(&server, &["plan", "run", path]).await;
    let stderr = text(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{path}:3: steps[0].delay.duration: ")),
        "{stderr}"
    );
    assert!(stderr.contains("nothing ran"), "{stderr}");
    assert!(output.stdout.is_empty());

    let output = run(&server, &["plan", "start", "greetng"]).await;
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output.stderr).contains("did you mean 'greeting'?"));
}

#[tokio::test]
async fn a_plan_cancelled_by_another_client_exits_3() {
    let server = TestServer::start().await;
    let file = plan_file("waiting.yaml", WAITING);
    let mut follower = common::cantina(&server.address)
        .args(["plan", "run", file.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(follower.stdout.take().unwrap()).lines();
    line_with(&mut lines, "step-started").await;

    let cancel = run(&server, &["plan", "cancel", "waiting"]).await;
    assert_eq!(cancel.status.code(), Some(0), "{}", text(&cancel.stderr));
    let cancelled = text(&cancel.stdout);
    assert!(
        cancelled.starts_with("plan-") && cancelled.contains("CANCELLED"),
        "{cancelled}"
    );
    let end = line_with(&mut lines, "ended").await;
    assert!(end.contains("CANCELLED"), "{end}");
    let status = tokio::time::timeout(Duration::from_secs(10), follower.wait())
        .await
        .expect("the follower ends with the plan")
        .unwrap();
    assert_eq!(status.code(), Some(3));
}

#[tokio::test]
async fn validate_prints_problems_compiler_style_or_the_timeline() {
    let server = TestServer::start().await;
    let bad = plan_file(
        "broken.yaml",
        "name: broken\nsteps:\n  - id: a\n    delay: {duration: -1s}\n  - id: b\n    eyePattern: {pattern: sparkly}\n",
    );
    let path = bad.to_str().unwrap();
    let output = run(&server, &["plan", "validate", path]).await;
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}{}",
        text(&output.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{stdout}");
    assert!(
        lines[0].starts_with(&format!("{path}:4: steps[0].delay.duration: ")),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with(&format!("{path}:6: steps[1].eyePattern.pattern: "))
            && lines[1].contains("sparkly"),
        "{stdout}"
    );
    // The whole verdict as JSON, still exiting 1.
    let output = run(&server, &["-o", "json", "plan", "validate", path]).await;
    assert_eq!(output.status.code(), Some(1));
    let verdict: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(verdict["problems"][1]["line"], 6);

    let good = plan_file(
        "timed.json",
        r#"{
  "name": "timed",
  "steps": [
    {"id": "hello", "command": {"line": "eye pattern happy"}},
    {"id": "wait", "at": "1.5s", "delay": {"duration": "0.5s"}},
    {"id": "both", "parallelSteps": {"steps": [
      {"id": "short", "delay": {"duration": "0.25s"}},
      {"id": "flash", "eyePattern": {"pattern": "happy"}}
    ]}}
  ]
}"#,
    );
    let output = run(
        &server,
        &["plan", "validate", good.to_str().unwrap(), "--timeline"],
    )
    .await;
    let stdout = text(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        text(&output.stderr)
    );
    assert!(stdout.starts_with("valid: 5 steps"), "{stdout}");
    let row = |id: &str| {
        stdout
            .lines()
            .find(|l| l.trim_start().starts_with(id))
            .unwrap_or_else(|| panic!("no row for {id}: {stdout}"))
            .to_string()
    };
    assert!(stdout.lines().any(|l| l.starts_with("STEP")), "{stdout}");
    assert!(row("hello").contains("command"), "{stdout}");
    // After a command only the earliest start is known.
    assert!(row("wait").contains("after 1.5s"), "{stdout}");
    assert!(row("wait").contains("0.5s"), "{stdout}");
    assert!(row("short").starts_with("  short"), "nested: {stdout}");

    // A name of the server's plans folder, when no such file exists.
    let output = run(&server, &["plan", "validate", "greeting"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(text(&output.stdout).starts_with("valid: 4 steps"));
}

#[tokio::test]
async fn list_start_pause_resume_skip_status_and_panic() {
    let server = TestServer::start().await;
    let output = run(&server, &["plan", "list"]).await;
    let stdout = text(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert!(stdout.contains("plans: none"), "{stdout}");
    for example in ["greeting", "dj-intro", "ambient-idle"] {
        assert!(
            stdout.lines().any(|l| l.trim_start().starts_with(example)),
            "{example} missing:\n{stdout}"
        );
    }

    let started = run(&server, &["plan", "start", "ambient-idle"]).await;
    let started_text = text(&started.stdout);
    assert_eq!(started.status.code(), Some(0), "{}", text(&started.stderr));
    assert!(started_text.contains("RUNNING"), "{started_text}");
    let id = started_text.split_whitespace().next().unwrap().to_string();
    assert!(id.starts_with("plan-"), "{started_text}");

    let skipped = run(
        &server,
        &["plan", "run", "ambient-idle", "--if-busy", "skip"],
    )
    .await;
    assert_eq!(skipped.status.code(), Some(3), "{}", text(&skipped.stdout));
    assert!(text(&skipped.stdout).contains("SKIPPED"));

    let paused = run(&server, &["plan", "pause", "ambient-idle"]).await;
    assert_eq!(paused.status.code(), Some(0), "{}", text(&paused.stderr));
    assert!(text(&paused.stdout).starts_with(&format!("{id}  PAUSED")));
    let list = text(&run(&server, &["plan", "list"]).await.stdout);
    assert!(
        list.lines()
            .any(|l| l.contains(&id) && l.contains("ambient-idle") && l.contains("PAUSED")),
        "{list}"
    );
    let resumed = run(&server, &["plan", "resume", &id]).await;
    assert!(text(&resumed.stdout).starts_with(&format!("{id}  RUNNING")));

    let status = text(&run(&server, &["status"]).await.stdout);
    let plans = status.split("plans:").nth(1).expect("a plans section");
    assert!(plans.contains(&id) && plans.contains("AMBIENT"), "{status}");

    let panic = run(&server, &["panic", "--fade", "50ms"]).await;
    let stdout = text(&panic.stdout);
    assert_eq!(panic.status.code(), Some(0), "{}", text(&panic.stderr));
    assert!(stdout.contains("1 plan cancelled"), "{stdout}");
    assert!(stdout.contains(&format!("cancelled: {id}")), "{stdout}");
    let again = run(&server, &["-o", "json", "panic"]).await;
    let response: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert!(
        response["message"]
            .as_str()
            .unwrap()
            .contains("no plan was running")
    );

    // Other words after `plan` are the console's.
    let console = run(&server, &["plan", "status", &id]).await;
    assert_eq!(console.status.code(), Some(0), "{}", text(&console.stderr));
    assert!(text(&console.stdout).contains("ambient-idle"));
}

#[tokio::test]
async fn watch_follows_the_plans_it_is_given_live() {
    let server = TestServer::start().await;
    let file = plan_file("waiting.yaml", WAITING);
    let started = run(&server, &["plan", "start", file.to_str().unwrap()]).await;
    let id = text(&started.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let mut watcher = common::cantina(&server.address)
        .args(["plan", "watch", &id, "--no-timestamps"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watcher.stdout.take().unwrap()).lines();
    // Pause and resume until the watcher, once subscribed, shows it.
    let paused = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            run(&server, &["plan", "pause", &id]).await;
            run(&server, &["plan", "resume", &id]).await;
            if let Ok(Ok(Some(line))) =
                tokio::time::timeout(Duration::from_millis(300), lines.next_line()).await
            {
                return line;
            }
        }
    })
    .await
    .expect("a live line");
    assert!(paused.starts_with(&format!("{id}  waiting")), "{paused}");
    run(&server, &["plan", "cancel", &id]).await;
    let end = line_with(&mut lines, "ended").await;
    assert!(end.contains("CANCELLED"), "{end}");
}
