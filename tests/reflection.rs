//! Reflection, v1 and v1alpha, as grpcurl, evans and Postman use it; and a
//! client nobody here wrote (Python's grpcio) discovering the API through
//! reflection and calling it.

mod common;

use common::TestServer;
use prost::Message;
use prost_types::FileDescriptorProto;
use tokio_stream::StreamExt;

/// The services listed by one reflection version, and the descriptor files
/// it returns for `cantina.v1.CommandService`.
macro_rules! reflect {
    ($version:ident, $channel:expr) => {{
        use tonic_reflection::pb::$version::{
            ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
            server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        };
        let mut client = ServerReflectionClient::new($channel);
        let requests = tokio_stream::iter([
            MessageRequest::ListServices(String::new()),
            MessageRequest::FileContainingSymbol("cantina.v1.CommandService".into()),
        ])
        .map(|message_request| ServerReflectionRequest {
            host: String::new(),
            message_request: Some(message_request),
        });
        let mut responses = client
            .server_reflection_info(requests)
            .await
            .unwrap()
            .into_inner();
        let mut services = Vec::new();
        let mut files = Vec::new();
        while let Some(response) = responses.next().await {
            match response.unwrap().message_response.unwrap() {
                MessageResponse::ListServicesResponse(list) => {
                    services = list.service.into_iter().map(|s| s.name).collect::<Vec<_>>();
                }
                MessageResponse::FileDescriptorResponse(fds) => {
                    files = fds
                        .file_descriptor_proto
                        .iter()
                        .map(|bytes| FileDescriptorProto::decode(bytes.as_slice()).unwrap())
                        .collect::<Vec<_>>();
                }
                other => panic!("unexpected reflection response {other:?}"),
            }
        }
        (services, files)
    }};
}

fn check(services: &[String], files: &[FileDescriptorProto]) {
    for expected in [
        "cantina.v1.CommandService",
        "cantina.v1.SystemService",
        "cantina.v1.LogService",
        "cantina.v1.SpeechService",
        "cantina.v1.PlanService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ] {
        assert!(
            services.iter().any(|s| s == expected),
            "{expected} missing from {services:?}"
        );
    }
    // Exactly what the router serves: nothing listed that does not answer.
    assert_eq!(services.len(), 8, "{services:?}");
    let command = files
        .iter()
        .find(|f| f.name() == "cantina/v1/command.proto")
        .expect("the file defining CommandService");
    let comments: Vec<&str> = command
        .source_code_info
        .as_ref()
        .expect("descriptors keep their doc comments for `grpcurl describe`")
        .location
        .iter()
        .filter_map(|l| l.leading_comments.as_deref())
        .collect();
    assert!(
        comments
            .iter()
            .any(|c| c.contains("Dispatch parses one command line")),
        "{comments:?}"
    );
}

#[tokio::test]
async fn reflection_v1_lists_services_and_serves_documented_descriptors() {
    let server = TestServer::start().await;
    let (services, files) = reflect!(v1, server.channel().await);
    check(&services, &files);
}

#[tokio::test]
async fn reflection_v1alpha_lists_services_and_serves_documented_descriptors() {
    let server = TestServer::start().await;
    let (services, files) = reflect!(v1alpha, server.channel().await);
    check(&services, &files);
}

#[tokio::test]
async fn reflection_needs_no_token() {
    let mut config = common::test_config();
    config.token = Some("s3cret".into());
    let server = TestServer::with_config(config).await;
    let (services, _) = reflect!(v1, server.channel().await);
    assert!(services.iter().any(|s| s == "cantina.v1.CommandService"));
}

/// The Python interpreter with grpcio and grpcio-reflection: the one the
/// README's test command prepares, or `python3`.
fn python() -> String {
    std::env::var("CANTINA_TEST_PYTHON").unwrap_or_else(|_| "python3".into())
}

#[tokio::test]
async fn a_foreign_client_discovers_the_api_by_reflection_and_dispatches() {
    let mut config = common::test_config();
    config.token = Some("py-token".into());
    let server = TestServer::with_config(config).await;
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/python/reflect_dispatch.py"
    );
    let output = tokio::process::Command::new(python())
        .args([script, &server.address, "py-token"])
        .output()
        .await
        .expect("run python (the README's test command installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the Python client failed (does it have grpcio and grpcio-reflection? \
         the README's test command installs them):\n{stdout}\n{stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_str(stdout.trim()).expect("the script prints JSON");
    assert_eq!(report["dispatch"]["command"], "engage");
    assert_eq!(report["dispatch"]["message"], "mode IDLE → INTERACTIVE");
    assert_eq!(report["error"]["code"], "INVALID_ARGUMENT");
    assert!(
        report["error"]["details"]
            .as_str()
            .unwrap()
            .contains("did you mean 'engage'?"),
        "{report}"
    );
    assert_eq!(report["unauthenticated"], "UNAUTHENTICATED");
    assert!(
        report["methods"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m == "Dispatch")
    );
    // The call really reached this server: its mode changed.
    assert_eq!(
        server.server.droid().modes.current(),
        cantina_server::modes::Mode::Interactive
    );
}
