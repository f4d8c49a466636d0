//! `CommandService` end to end: every outcome of `Dispatch` and
//! `ListCommands`, against a real server on port 0.

mod common;

use cantina::v1::{DispatchRequest, DispatchResponse, ListCommandsRequest};
use common::TestServer;
use serde_json::Value;
use tonic::Code;

async fn dispatch(server: &TestServer, line: &str) -> Result<DispatchResponse, tonic::Status> {
    server.dispatch(line).await
}

fn data(response: &DispatchResponse) -> Value {
    cantina::json::struct_to_json(response.data.as_ref().expect("the command returns data"))
}

async fn mode(server: &TestServer) -> String {
    let status = dispatch(server, "status").await.unwrap();
    data(&status)["mode"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn boots_into_idle_and_reports_status() {
    let server = TestServer::start().await;
    let response = dispatch(&server, "status").await.unwrap();
    assert_eq!(response.command, "status");
    let data = data(&response);
    assert_eq!(data["mode"], "IDLE");
    assert_eq!(data["version"], cantina_server::VERSION);
    assert_eq!(data["listen"], server.address);
    assert!(data["session_id"].as_str().unwrap().len() >= 15);
    assert!(
        response.message.contains("mode        IDLE"),
        "{}",
        response.message
    );
    assert!(
        response.message.contains("no token"),
        "{}",
        response.message
    );
}

#[tokio::test]
async fn mode_commands_change_the_mode_and_say_when_nothing_changes() {
    let server = TestServer::start().await;
    let engaged = dispatch(&server, "engage").await.unwrap();
    assert_eq!(engaged.command, "engage");
    assert_eq!(engaged.message, "mode IDLE → INTERACTIVE");
    assert_eq!(data(&engaged)["changed"], true);

    let again = dispatch(&server, "ENGAGE").await.unwrap();
    assert_eq!(again.message, "already in INTERACTIVE mode");
    assert_eq!(data(&again)["changed"], false);

    for (line, command, expected) in [
        ("a", "ambient", "AMBIENT"),
        ("e", "engage", "INTERACTIVE"),
        ("d", "disengage", "IDLE"),
        ("ambient", "ambient", "AMBIENT"),
        ("i", "idle", "IDLE"),
    ] {
        let response = dispatch(&server, line).await.unwrap();
        assert_eq!(response.command, command, "{line}");
        assert_eq!(mode(&server).await, expected, "after {line}");
    }
}

#[tokio::test]
async fn shortcuts_resolve_to_their_canonical_command() {
    let server = TestServer::start().await;
    for (line, command) in [
        ("h", "help"),
        ("?", "help"),
        ("st", "status"),
        ("r", "reset"),
        ("restart", "reset"),
    ] {
        assert_eq!(
            dispatch(&server, line).await.unwrap().command,
            command,
            "{line}"
        );
    }
}

#[tokio::test]
async fn a_typo_is_invalid_argument_with_usage_and_a_suggestion() {
    let server = TestServer::start().await;
    let status = dispatch(&server, "engag").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let message = status.message();
    assert!(message.contains("unknown command 'engag'"), "{message}");
    assert!(message.contains("did you mean 'engage'?"), "{message}");
    assert!(message.contains("usage: engage"), "{message}");
    assert!(message.contains("Type 'help'"), "{message}");
    assert!(status.metadata().get("x-correlation-id").is_some());
}

#[tokio::test]
async fn nonsense_is_invalid_argument_without_a_suggestion() {
    let server = TestServer::start().await;
    let status = dispatch(&server, "xyzzy plugh").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().starts_with("unknown command 'xyzzy'\n"),
        "{}",
        status.message()
    );
    assert!(
        !status.message().contains("did you mean"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn bad_arguments_are_refused_before_anything_runs() {
    let server = TestServer::start().await;
    let status = dispatch(&server, r#"engage "right now""#)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert_eq!(
        status.message(),
        "'engage' takes no arguments, but got 'right now'\nusage: engage"
    );
    assert_eq!(
        mode(&server).await,
        "IDLE",
        "a refused command must not run"
    );

    let status = dispatch(&server, "status now").await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().ends_with("usage: status"),
        "{}",
        status.message()
    );
}

#[tokio::test]
async fn malformed_lines_are_invalid_argument() {
    let server = TestServer::start().await;
    let empty = dispatch(&server, "   ").await.unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    assert!(
        empty.message().starts_with("empty command line"),
        "{}",
        empty.message()
    );

    let quote = dispatch(&server, r#"help "engage"#).await.unwrap_err();
    assert_eq!(quote.code(), Code::InvalidArgument);
    assert!(
        quote
            .message()
            .contains("unterminated double quote starting at column 6"),
        "{}",
        quote.message()
    );
}

#[tokio::test]
async fn help_lists_every_command_and_describes_one() {
    let server = TestServer::start().await;
    let overview = dispatch(&server, "help").await.unwrap();
    for word in [
        "system",
        "modes",
        "help [command]",
        "status",
        "engage",
        "quit",
        "shortcuts: h/? help, st status",
        "eyes",
        "eye pattern <idle|",
        "eye patterns: idle, startup, engaged",
    ] {
        assert!(
            overview.message.contains(word),
            "help lacks {word:?}:\n{}",
            overview.message
        );
    }
    let commands = data(&overview)["commands"].as_array().unwrap().len();
    assert_eq!(commands, 47);

    let one = dispatch(&server, "help e").await.unwrap();
    assert!(
        one.message
            .starts_with("engage: switch to INTERACTIVE mode"),
        "{}",
        one.message
    );
    assert!(one.message.contains("aliases: e"), "{}", one.message);
    assert_eq!(data(&one)["name"], "engage");

    let typo = dispatch(&server, "help engag").await.unwrap_err();
    assert_eq!(typo.code(), Code::InvalidArgument);
    assert!(
        typo.message().contains("did you mean 'engage'?"),
        "{}",
        typo.message()
    );
}

#[tokio::test]
async fn reset_restarts_and_returns_to_idle() {
    let server = TestServer::start().await;
    dispatch(&server, "engage").await.unwrap();
    let reset = dispatch(&server, "reset").await.unwrap();
    assert_eq!(reset.command, "reset");
    assert!(
        reset.message.contains("INTERACTIVE → STARTUP → IDLE"),
        "{}",
        reset.message
    );
    assert_eq!(mode(&server).await, "IDLE");
    // The server itself stays up.
    assert_eq!(dispatch(&server, "status").await.unwrap().command, "status");
}

#[tokio::test]
async fn quit_stops_the_server_gracefully() {
    let server = TestServer::start().await;
    let response = dispatch(&server, "quit").await.unwrap();
    assert_eq!(response.command, "quit");
    assert!(
        response.message.starts_with("shutting down"),
        "{}",
        response.message
    );
    let stopped =
        tokio::time::timeout(std::time::Duration::from_secs(5), server.server.wait()).await;
    stopped
        .expect("the server stops after quit")
        .expect("cleanly");
}

#[tokio::test]
async fn quit_while_shutting_down_is_a_failed_precondition() {
    let server = TestServer::start().await;
    let dispatcher = cantina_server::commands::Dispatcher::new(server.server.droid().clone());
    server.server.shutdown().trigger("test");
    let error = dispatcher.dispatch("quit").await.unwrap_err();
    assert_eq!(tonic::Status::from(error).code(), Code::FailedPrecondition);
}

#[tokio::test]
async fn correlation_ids_are_echoed_or_generated() {
    let server = TestServer::start().await;
    let mut client = server.client().await.command;
    let given = client
        .dispatch(DispatchRequest {
            line: "status".into(),
            correlation_id: "show-42".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(given.correlation_id, "show-42");

    let generated = dispatch(&server, "status").await.unwrap();
    assert_eq!(
        generated.correlation_id.len(),
        36,
        "a UUID: {}",
        generated.correlation_id
    );

    let bad = client
        .dispatch(DispatchRequest {
            line: "status".into(),
            correlation_id: "has spaces".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
}

#[tokio::test]
async fn list_commands_describes_every_command_by_category() {
    let server = TestServer::start().await;
    let mut client = server.client().await.command;
    let all = client
        .list_commands(ListCommandsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .commands;
    let names: Vec<_> = all.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "help",
            "status",
            "reset",
            "quit",
            "engage",
            "disengage",
            "ambient",
            "idle",
            "play music",
            "stop music",
            "pause music",
            "resume music",
            "next music",
            "queue music",
            "list music",
            "install music",
            "volume",
            "crossfade",
            "duck",
            "unduck",
            "play sound",
            "dj start",
            "dj stop",
            "dj next",
            "dj queue",
            "eye pattern",
            "eye brightness",
            "eye test",
            "eye status",
            "move",
            "servo home",
            "servo status",
            "servo list",
            "say",
            "speech stop",
            "speech status",
            "speech voices",
            "speech voice",
            "speech play",
            "plan run",
            "plan list",
            "plan status",
            "plan stop",
            "plan pause",
            "plan resume",
            "panic",
            "debug level"
        ]
    );
    let status = &all[1];
    assert_eq!(
        (
            status.usage.as_str(),
            status.category.as_str(),
            status.aliases.as_slice()
        ),
        ("status", "system", ["st".to_string()].as_slice())
    );
    assert_eq!((status.min_args, status.max_args), (0, Some(0)));
    assert_eq!(all[0].max_args, None, "help takes any number of words");

    let modes = client
        .list_commands(ListCommandsRequest {
            category: "modes".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .commands;
    assert_eq!(modes.len(), 4);

    let unknown = client
        .list_commands(ListCommandsRequest {
            category: "dance".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::InvalidArgument);
    assert!(
        unknown
            .message()
            .contains("system, modes, music, dj, eyes, servos, speech, plans, debug"),
        "{}",
        unknown.message()
    );
}

#[tokio::test]
async fn a_configured_token_is_required() {
    let mut config = common::test_config();
    config.token = Some("s3cret".into());
    let server = TestServer::with_config(config).await;

    let missing = dispatch(&server, "status").await.unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    assert!(
        missing.message().contains("requires a token"),
        "{}",
        missing.message()
    );

    let mut wrong = server.client_with_token("guess").await.command;
    let wrong = wrong
        .list_commands(ListCommandsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);

    let mut right = server.client_with_token("s3cret").await.command;
    let ok = right
        .dispatch(DispatchRequest {
            line: "status".into(),
            correlation_id: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(data(&ok)["token_required"], true);
}

#[tokio::test]
async fn oversized_messages_are_refused() {
    let mut config = common::test_config();
    config.max_message_size = 1024;
    let server = TestServer::with_config(config).await;
    let status = dispatch(&server, &format!("help {}", "x".repeat(4096)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");
}
