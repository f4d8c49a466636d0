//! The tower limits, through a client that stalls mid-request (headers
//! sent, message never), as a slow or broken client would: the unary timeout
//! ends it, and while it holds the only slot of a connection, further
//! requests on that connection are shed at once instead of queueing.

mod common;

use std::time::Duration;

use cantina::v1::{DispatchRequest, DispatchResponse};
use common::TestServer;
use tonic::{Code, codegen::http::uri::PathAndQuery, transport::Channel};

/// A Dispatch call whose request message never comes.
async fn stalled_dispatch(channel: Channel) -> Result<(), tonic::Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("channel ready");
    let codec = tonic_prost::ProstCodec::<DispatchRequest, DispatchResponse>::default();
    grpc.streaming(
        tonic::Request::new(tokio_stream::pending::<DispatchRequest>()),
        PathAndQuery::from_static("/cantina.v1.CommandService/Dispatch"),
        codec,
    )
    .await
    .map(drop)
}

async fn status(channel: Channel) -> Result<(), tonic::Status> {
    cantina::v1::command_service_client::CommandServiceClient::new(channel)
        .dispatch(DispatchRequest {
            line: "status".into(),
            correlation_id: String::new(),
        })
        .await
        .map(drop)
}

#[tokio::test]
async fn a_stalled_request_is_ended_by_the_request_timeout() {
    let mut config = common::test_config();
    config.request_timeout = Duration::from_millis(300);
    let server = TestServer::with_config(config).await;
    let status = tokio::time::timeout(
        Duration::from_secs(10),
        stalled_dispatch(server.channel().await),
    )
    .await
    .expect("the server ends the request")
    .unwrap_err();
    assert_eq!(status.code(), Code::Cancelled, "{status:?}");
    assert!(status.message().contains("Timeout expired"), "{status:?}");
}

#[tokio::test]
async fn requests_over_the_concurrency_limit_are_shed_not_queued() {
    let mut config = common::test_config();
    config.concurrency_limit = 1;
    let server = TestServer::with_config(config).await;
    let channel = server.channel().await;

    let stalled = tokio::spawn(stalled_dispatch(channel.clone()));
    // The stalled call takes the connection's only slot as soon as the server
    // sees its headers; until then a request may still get through.
    let mut shed = None;
    for _ in 0..200 {
        let answer = tokio::time::timeout(Duration::from_secs(5), status(channel.clone()))
            .await
            .expect("a request over the limit is refused at once, not queued");
        match answer {
            Ok(()) => tokio::task::yield_now().await,
            Err(status) => {
                shed = Some(status);
                break;
            }
        }
    }
    let shed = shed.expect("a request over the limit is refused");
    assert_eq!(shed.code(), Code::ResourceExhausted, "{shed:?}");

    // Another connection has its own slots.
    status(server.channel().await)
        .await
        .expect("a second connection is served");

    // Once the stalled call is gone, the slot is free again.
    stalled.abort();
    let mut recovered = false;
    for _ in 0..200 {
        if status(channel.clone()).await.is_ok() {
            recovered = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(recovered, "the slot was released");
}
