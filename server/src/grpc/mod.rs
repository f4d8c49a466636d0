//! The gRPC edge: the only place that knows proto types. It builds the
//! router (reflection v1 and v1alpha, health, the Cantina services behind the
//! token check), the tower limits (unary timeout, per-connection concurrency
//! limit with load shedding, message size), the caps on long-lived streams
//! ([`StreamLimits`]), and maps domain errors to `Status` codes in one place.

mod auth;
mod command;
#[doc(hidden)]
pub mod fuzz;
mod health;
mod jail;
mod logs;
mod peers;
mod plans;
mod speech;
mod streams;
mod system;

use std::sync::Arc;

use cantina::v1::{
    command_service_server::CommandServiceServer, log_service_server::LogServiceServer,
    plan_service_server::PlanServiceServer, speech_service_server::SpeechServiceServer,
    system_service_server::SystemServiceServer,
};
use tokio::net::TcpListener;
use tonic::{
    Status,
    server::NamedService,
    service::interceptor::InterceptedService,
    transport::{Server, server::TcpIncoming},
};
use tonic_health::pb::health_server::{Health as HealthService, HealthServer};

pub use auth::Auth;
pub use command::CommandApi;
pub use health::Health;
pub use jail::{Jail, JailCounts};
pub use logs::LogApi;
pub use plans::PlanApi;
pub use speech::SpeechApi;
pub use streams::{StreamCounts, StreamLimits};
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
            | CommandError::BadArgs { .. }
            | CommandError::TooLong { .. } => Status::invalid_argument(message),
            CommandError::Unavailable(_) => Status::unavailable(message),
            CommandError::FailedPrecondition(_) => Status::failed_precondition(message),
            CommandError::NotFound(_) => Status::not_found(message),
            CommandError::ResourceExhausted(_) => Status::resource_exhausted(message),
        }
    }
}

impl From<crate::bus::client::PublishError> for Status {
    /// Every refusal is about the request itself: what may be published.
    fn from(error: crate::bus::client::PublishError) -> Self {
        Status::invalid_argument(error.to_string())
    }
}

/// Why the router could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    /// The reflection service rejected the descriptors (a build problem).
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The TLS files changed since the configuration was checked (TLS).
    #[error("TLS: {0}")]
    TlsFiles(String),
    /// The transport refused the TLS identity (TLS).
    #[error("TLS: {0}")]
    Tls(#[from] tonic::transport::Error),
}

// --- TLS -------------------------------------------------------------------

/// A server builder that speaks TLS when the configuration says so. The
/// files were checked with the configuration; they are read again here.
fn server_builder(config: &Config) -> Result<Server, RouterError> {
    let Some(files) = &config.tls else {
        return Ok(Server::builder());
    };
    let pem = files.load().map_err(|problems| {
        RouterError::TlsFiles(
            problems
                .into_iter()
                .map(|(_, problem)| problem)
                .collect::<Vec<_>>()
                .join("; "),
        )
    })?;
    let identity = tonic::transport::Identity::from_pem(pem.cert, pem.key);
    Ok(
        Server::builder()
            .tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?,
    )
}

// --- end TLS ---------------------------------------------------------------

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
    logs: crate::logs::Logs,
    health: HealthServer<impl HealthService>,
    shutdown: &Shutdown,
) -> Result<Result<(), tonic::transport::Error>, RouterError> {
    let limit = config.max_message_size;
    let auth = Auth::new(config.token.as_deref());
    // Strikes and bans, shared by the listener, the connections and the
    // layer that reads responses.
    let jail = Jail::new(
        u32::try_from(config.peer_ban_after).unwrap_or(u32::MAX),
        config.peer_ban_time,
        config.peer_ban_loopback,
    );
    // One set of caps for every service that serves long-lived streams.
    let streams = StreamLimits::new(config.max_streams, config.max_streams_per_peer);
    let commands = CommandServiceServer::new(CommandApi::new(commands))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let log_service = LogServiceServer::new(LogApi::new(
        logs,
        droid.bus.clone(),
        droid.shutdown.clone(),
        streams.clone(),
    ))
    .max_decoding_message_size(limit)
    .max_encoding_message_size(limit);
    let speech = SpeechServiceServer::new(SpeechApi::new(droid.speech.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let plans = PlanServiceServer::new(PlanApi::new(droid.clone(), streams.clone()))
        .max_decoding_message_size(limit)
        .max_encoding_message_size(limit);
    let system =
        SystemServiceServer::new(SystemApi::new(droid, streams, auth.clone(), jail.clone()))
            .max_decoding_message_size(limit)
            .max_encoding_message_size(limit);

    // Every service added below, and nothing else.
    let served = [
        <CommandServiceServer<CommandApi> as NamedService>::NAME,
        <SystemServiceServer<SystemApi> as NamedService>::NAME,
        <LogServiceServer<LogApi> as NamedService>::NAME,
        <SpeechServiceServer<SpeechApi> as NamedService>::NAME,
        <PlanServiceServer<PlanApi> as NamedService>::NAME,
        <HealthServer<()> as NamedService>::NAME,
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    ];

    let router = server_builder(config)?
        .timeout(config.request_timeout)
        .concurrency_limit_per_connection(config.concurrency_limit)
        .load_shed(true)
        // Pings find peers that vanished without closing (a laptop's Wi-Fi
        // gone), so their event and log streams end instead of lingering.
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)))
        .layer(jail::JailLayer(jail.clone()))
        .add_service(health)
        .add_service(reflection(&served).build_v1()?)
        .add_service(reflection(&served).build_v1alpha()?)
        .add_service(InterceptedService::new(commands, auth.clone()))
        .add_service(InterceptedService::new(system, auth.clone()))
        .add_service(InterceptedService::new(speech, auth.clone()))
        .add_service(InterceptedService::new(plans, auth.clone()))
        .add_service(InterceptedService::new(log_service, auth));

    Ok(router
        .serve_with_incoming_shutdown(
            guarded(incoming(listener), jail, config.tls.is_some()),
            shutdown.wait_owned(),
        )
        .await)
}

/// How long an accepted connection may be idle before the kernel probes it.
const TCP_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(60);

/// The accepted connections of `listener`, each with `TCP_NODELAY` (a reply's
/// last frames, the trailers, leave at once instead of waiting for the
/// client's delayed ACK: without it every unary call took ~40 ms) and TCP
/// keepalive (a peer that vanished is found even with HTTP/2 pings off).
pub fn incoming(listener: TcpListener) -> TcpIncoming {
    TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(TCP_KEEPALIVE))
}

/// The accepted connections, each watched by `jail`; those of banned peers
/// are closed at once instead.
fn guarded(
    incoming: TcpIncoming,
    jail: Jail,
    tls: bool,
) -> impl futures_util::Stream<Item = std::io::Result<jail::Guarded>> {
    use futures_util::StreamExt;
    incoming.filter_map(move |accepted| {
        let admitted = match accepted {
            Ok(stream) => jail.admit(stream, tls).map(Ok),
            Err(e) => Some(Err(e)),
        };
        std::future::ready(admitted)
    })
}
