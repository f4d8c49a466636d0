//! The gRPC edge: the only place that knows proto types. It builds the
//! router (reflection v1 and v1alpha, health, the Cantina services behind the
//! token check), the tower limits (unary timeout, per-connection concurrency
//! limit with load shedding, message size), and maps domain errors to
//! `Status` codes in one place.

mod auth;
mod command;
mod system;

use std::sync::Arc;

use cantina::v1::{
    command_service_server::CommandServiceServer, system_service_server::SystemServiceServer,
};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{
    Status, server::NamedService, service::interceptor::InterceptedService, transport::Server,
};
use tonic_health::pb::health_server::{Health, HealthServer};

pub use auth::Auth;
pub use command::CommandApi;
pub use system::{MISSED_TOPIC, SystemApi};

use crate::{
    commands::{CommandError, Dispatcher},
    config::Config,
    shutdown::Shutdown,
};

impl From<CommandError> for Status {
    fn from(error: CommandError) -> Self {
        let message = error.to_string();
        match error {
            CommandError::Empty
            | CommandError::Syntax(_)
            | CommandError::Unknown { .. }
            | CommandError::BadArgs { .. } => Status::invalid_argument(message),
            CommandError::Unavailable(_) => Status::unavailable(message),
            CommandError::FailedPrecondition(_) => Status::failed_precondition(message),
        }
    }
}

/// Why the router could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The reflection service rejected the descriptors (a build problem).
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
}

/// Reflection over the whole contract, advertising only `served`: the
/// descriptors of services that later releases implement stay resolvable, but
/// `grpcurl list` shows only what answers.
fn reflection(served: &[&'static str]) -> tonic_reflection::server::Builder<'static> {
    served.iter().fold(
        tonic_reflection::server::Builder::configure()
            .include_reflection_service(false)
            .register_encoded_file_descriptor_set(cantina::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            ),
        |builder, name| builder.with_service_name(*name),
    )
}

/// Serves the Cantina services, health and reflection on `listener` until `shutdown` begins and the open
/// requests have finished.
pub async fn serve(
    listener: TcpListener,
    config: &Config,
    commands: Arc<Dispatcher>,
    droid: Arc<crate::droid::Droid>,
    health: HealthServer<impl Health>,
    shutdown: &Shutdown,
) -> Result<Result<(), tonic::transport::Error>, RouterError> {
    let limit = config.max_message_size;
    let auth = Auth::new(config.token.as_deref());
    let commands = CommandServiceServer::new(CommandApi::new(commands))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let system = SystemServiceServer::new(SystemApi::new(droid))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);

    // Every service added below, and nothing else.
    let served = [
        <CommandServiceServer<CommandApi> as NamedService>::NAME,
        <SystemServiceServer<SystemApi> as NamedService>::NAME,
        <HealthServer<()> as NamedService>::NAME,
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];

    let router = Server::builder()
        .timeout(config.request_timeout)
        .concurrency_limit_per_connection(config.concurrency_limit)
        .load_shed(true)
        .add_service(health)
        .add_service(reflection(&served).build_v1()?)
        .add_service(reflection(&served).build_v1alpha()?)
        .add_service(InterceptedService::new(commands, auth.clone()))
        .add_service(InterceptedService::new(system, auth));

    Ok(router
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown.wait_owned())
        .await)
}
