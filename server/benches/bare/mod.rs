//! The bare tonic server the benches compare against: health, reflection
//! and a `CommandService` whose `Dispatch` echoes the line, nothing else.
//! Shared by `dispatch` (latency) and `footprint` (memory).

use cantina::v1::{
    DispatchRequest, DispatchResponse, ListCommandsRequest, ListCommandsResponse,
    command_service_server::{CommandService, CommandServiceServer},
};
use tonic::{Request, Response, Status};

/// `Dispatch` that does nothing but echo the line.
struct Echo;

#[tonic::async_trait]
impl CommandService for Echo {
    async fn dispatch(
        &self,
        request: Request<DispatchRequest>,
    ) -> Result<Response<DispatchResponse>, Status> {
        let request = request.into_inner();
        Ok(Response::new(DispatchResponse {
            command: request.line.clone(),
            message: request.line,
            correlation_id: request.correlation_id,
            ..DispatchResponse::default()
        }))
    }

    async fn list_commands(
        &self,
        _: Request<ListCommandsRequest>,
    ) -> Result<Response<ListCommandsResponse>, Status> {
        Ok(Response::new(ListCommandsResponse::default()))
    }
}

/// Serves the bare server on `listener` (with `TCP_NODELAY`, as the real
/// server) until the future is dropped or fails.
pub async fn serve(listener: tokio::net::TcpListener) -> Result<(), tonic::transport::Error> {
    let (_, health) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(cantina::FILE_DESCRIPTOR_SET)
        .build_v1()
        .unwrap();
    tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(CommandServiceServer::new(Echo))
        .serve_with_incoming(
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true)),
        )
        .await
}
