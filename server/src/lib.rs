//! The Cantina server: the control plane of an animatronic show droid.
//!
//! [`start`] binds the listener, boots the [`droid::Droid`] (subsystems in
//! order, then STARTUP → IDLE) and serves gRPC until shutdown: SIGINT/SIGTERM
//! in the binary, the `quit` command, or [`RunningServer::stop`]. Shutdown
//! lets open requests finish for the configured grace period, then closes the
//! rest and stops the subsystems in reverse order.
//!
//! Map: [`config`] (settings, assembled from each subsystem's; declared with
//! [`declare`]), [`bus`] (the event bus), [`commands`] (the
//! console: registry, one file per command), [`grpc`] (the only module that
//! knows proto types), [`droid`] (shared state), [`modes`], [`audio`], [`eyes`], [`servos`], [`lifecycle`]
//! (subsystems), [`shutdown`], [`telemetry`], [`memory`] (freed memory handed
//! back); `fuzzing` holds the fuzz targets' bodies (`server/fuzz/`).

pub mod actor;
pub mod atomic_file;
pub mod audio;
pub mod bus;
pub mod commands;
pub mod config;
pub mod declare;
pub mod droid;
pub mod eyes;
#[doc(hidden)]
pub mod fuzzing;
pub mod grpc;
pub mod lifecycle;
pub mod logs;
pub mod memory;
pub mod modes;
pub mod plans;
pub mod servos;
pub mod shutdown;
pub mod speech;
pub mod state;
pub mod telemetry;

use std::{net::SocketAddr, sync::Arc, time::SystemTime};

use tokio::{net::TcpListener, task::JoinHandle};
use tracing::{info, warn};

use crate::{
    audio::Audio,
    bus::{Bus, BusMonitor},
    commands::Dispatcher,
    config::Config,
    droid::{Droid, Parts, ServerInfo},
    eyes::Eyes,
    lifecycle::StartError,
    logs::Logs,
    plans::Plans,
    servos::Servos,
    shutdown::Shutdown,
    speech::Speech,
};

/// The server's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The listen address is taken or not ours.
    #[error(
        "cannot listen on {address}: {source}. Is another Cantina server running there? Choose another address with --listen or CANTINA_LISTEN"
    )]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// Why binding failed.
        #[source]
        source: std::io::Error,
    },
    /// A critical subsystem could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// The router could not be built.
    #[error(transparent)]
    Router(#[from] grpc::RouterError),
    /// The transport failed while serving.
    #[error("the gRPC transport failed: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// The server task panicked or was cancelled.
    #[error("the server task ended abnormally: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A server that is up and serving.
pub struct RunningServer {
    /// The bound address (port 0 resolved).
    local_addr: SocketAddr,
    /// Begins shutdown.
    shutdown: Shutdown,
    /// The droid's state, for callers that embed the server.
    droid: Arc<Droid>,
    /// Serves until shutdown, then stops the subsystems.
    task: JoinHandle<Result<(), ServerError>>,
}

impl RunningServer {
    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The shutdown trigger (what `quit` and the signals pull).
    pub fn shutdown(&self) -> &Shutdown {
        &self.shutdown
    }

    /// The droid's state.
    pub fn droid(&self) -> &Arc<Droid> {
        &self.droid
    }

    /// Waits until the server has stopped by itself (signal or `quit`).
    pub async fn wait(self) -> Result<(), ServerError> {
        self.task.await?
    }

    /// Begins shutdown and waits for it to finish.
    pub async fn stop(self) -> Result<(), ServerError> {
        self.shutdown.trigger("stop requested");
        self.wait().await
    }
}

/// Binds, boots the droid and starts serving in the background.
pub async fn start(config: Config) -> Result<RunningServer, ServerError> {
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|source| ServerError::Bind {
            address: config.listen,
            source,
        })?;
    let local_addr = listener.local_addr().map_err(|source| ServerError::Bind {
        address: config.listen,
        source,
    })?;
    let started_at = SystemTime::now();
    let info = ServerInfo {
        version: VERSION,
        session_id: droid::new_session_id(started_at),
        started_at,
        started: std::time::Instant::now(),
        listen: local_addr,
        token_required: config.token.is_some(),
        tls: config.tls.is_some(),
    };
    let shutdown = Shutdown::new();
    let (health, health_service) = grpc::Health::new().await;
    let bus = Bus::new(config.bus.clone());
    let logs = Logs::new(
        config.logs.clone(),
        config.log_dir.clone(),
        &info.session_id,
    );
    // The subsystems; `droid::Parts` sets their start order (logging
    // first) and their mode hooks.
    let eyes = Eyes::new(config.eyes_port.clone(), config.eyes.clone(), bus.clone());
    let servos = Servos::new(
        config.servo_port.clone(),
        config.servo.clone(),
        config.servos.clone(),
        bus.clone(),
    );
    let audio = Audio::new(config.audio.clone(), bus.clone());
    // What the last run left (volume, eye brightness): read before the
    // parts start, said once the logs run.
    let kept = state::load(&config.audio.data_dir);
    state::restore(&kept.saved, &audio, &eyes);
    let speech = Speech::new(
        config.speech.clone(),
        config.audio.data_dir.clone(),
        audio.clone(),
        eyes.clone(),
        bus.clone(),
    );
    let plans = Plans::new(
        config.plans_folder(),
        audio.clone(),
        speech.clone(),
        eyes.clone(),
        servos.clone(),
        bus.clone(),
        plans::decode::Limits::default(),
    );
    let parts = Parts {
        logs: logs.clone(),
        bus_monitor: Arc::new(BusMonitor::new(bus.clone(), config.bus_metrics_interval)),
        audio,
        eyes,
        servos,
        speech,
        plans,
    };
    let droid = Droid::boot(info, bus, parts, Some(health.observer()), shutdown.clone()).await?;
    if let Some(warning) = &kept.warning {
        warn!("{warning}");
    }
    state::keep(
        config.audio.data_dir.clone(),
        kept.saved,
        &droid.audio,
        &droid.eyes,
    );
    let dispatcher = Arc::new(Dispatcher::new(droid.clone()));
    droid
        .plans
        .set_commands(Arc::new(commands::PlanCommands::new(&dispatcher)));

    // TLS
    match &config.tls {
        Some(files) => info!(cert = %files.cert.display(), "TLS on"),
        None => info!("TLS off: gRPC in plaintext"),
    }
    if let Some(warning) = config.token_file_warning() {
        warn!("{warning}");
    }
    info!(
        address = %local_addr,
        session = %droid.info.session_id,
        version = VERSION,
        token_required = config.token.is_some(),
        "listening"
    );

    tokio::spawn(memory::trim_every(
        config.memory_trim_interval,
        shutdown.clone(),
    ));
    let task = tokio::spawn({
        let shutdown = shutdown.clone();
        let droid = droid.clone();
        async move {
            health.not_serving_from(&shutdown);
            let serve = grpc::serve(
                listener,
                &config,
                dispatcher,
                droid.clone(),
                logs,
                health_service,
                &shutdown,
            );
            tokio::pin!(serve);
            let grace = config.shutdown_grace;
            let served = tokio::select! {
                served = &mut serve => served?.map_err(ServerError::from),
                () = async { shutdown.wait().await; tokio::time::sleep(grace).await } => {
                    warn!(grace = ?grace, "shutdown grace period over: closing the requests and streams still open");
                    Ok(())
                }
            };
            info!(
                reason = shutdown.reason().unwrap_or("unknown"),
                "stopping subsystems"
            );
            droid.halt().await;
            info!("server stopped");
            served
        }
    });

    Ok(RunningServer {
        local_addr,
        shutdown,
        droid,
        task,
    })
}
