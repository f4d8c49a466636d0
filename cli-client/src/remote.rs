//! The connection to the server and the calls the CLI makes over it.
//!
//! Errors leave this module as [`Failure`] so that every caller prints them
//! and picks exit codes the same way.

use cantina::{
    client::{AuthChannel, ConnectError},
    v1::{
        BusEvent, DispatchRequest, DispatchResponse, GetStatusRequest, ListCommandsRequest,
        ListCommandsResponse, PublishEventRequest, PublishEventResponse, SystemStatus,
        WatchEventsRequest, command_service_client::CommandServiceClient,
        system_service_client::SystemServiceClient,
    },
};

use cantina::v1::{
    LogEntry, SetLogLevelRequest, SetLogLevelResponse, TailLogsRequest,
    log_service_client::LogServiceClient,
};

use cantina::v1::{
    CancelPlanRequest, CancelPlanResponse, ListPlansRequest, ListPlansResponse, PausePlanRequest,
    PausePlanResponse, PlanEvent, ResumePlanRequest, ResumePlanResponse, RunPlanRequest,
    StartPlanRequest, StartPlanResponse, StopAllRequest, StopAllResponse, ValidatePlanRequest,
    ValidatePlanResponse, WatchPlansRequest, plan_service_client::PlanServiceClient,
};

use std::error::Error as _;

use tonic::{Status, Streaming};

use crate::{args::GlobalArgs, error::Failure};

/// Connected clients and what every call sends with them. Cloning is cheap:
/// the clones share the connection.
#[derive(Clone, Debug)]
pub struct Remote {
    /// The client; tonic reconnects it by itself after the server comes back,
    /// which is what lets the shell survive a server restart.
    client: CommandServiceClient<AuthChannel>,
    /// `SystemService`, on the same channel and so with the same token.
    system: SystemServiceClient<AuthChannel>,
    /// `LogService`, on the same channel.
    logs: LogServiceClient<AuthChannel>,
    /// `PlanService`, on the same channel.
    plan: PlanServiceClient<AuthChannel>,
    /// Sent with every Dispatch when the user chose one.
    correlation_id: Option<String>,
    /// Where the server is, for messages about losing it.
    address: String,
}

impl Remote {
    /// Connects to the server named by the global options.
    pub async fn connect(global: &GlobalArgs) -> Result<Self, Failure> {
        // TLS: the CA file, read here so that its name is in the messages.
        let tls_ca = match &global.tls_ca {
            Some(path) => Some(std::fs::read(path).map_err(|e| {
                ConnectError::BadCa(format!("cannot read {}: {e}", path.display()))
            })?),
            None => None,
        };
        let token = global.token()?;
        let clients =
            cantina::client::connect_with(&global.server, token.as_deref(), tls_ca.as_deref())
                .await
                .map_err(|e| match (e, &global.tls_ca) {
                    (ConnectError::BadCa(problem), Some(path)) => {
                        ConnectError::BadCa(format!("{}: {problem}", path.display()))
                    }
                    (e, _) => e,
                })?;
        Ok(Self {
            system: SystemServiceClient::new(clients.channel.clone()),
            logs: LogServiceClient::new(clients.channel.clone()),
            plan: clients.plan,
            client: clients.command,
            correlation_id: global.correlation_id.clone(),
            address: clients.address.clone(),
        })
    }

    /// Runs one console line on the server.
    pub async fn dispatch(&self, line: &str) -> Result<DispatchResponse, Failure> {
        let request = DispatchRequest {
            line: line.to_string(),
            correlation_id: self.correlation_id.clone().unwrap_or_default(),
        };
        self.answer(self.client.clone().dispatch(request).await)
    }

    /// The commands the server offers, optionally of one category.
    pub async fn list_commands(&self, category: &str) -> Result<ListCommandsResponse, Failure> {
        let request = ListCommandsRequest {
            category: category.to_string(),
        };
        self.answer(self.client.clone().list_commands(request).await)
    }

    /// The state of the whole droid.
    pub async fn get_status(&self) -> Result<SystemStatus, Failure> {
        self.answer(self.system.clone().get_status(GetStatusRequest {}).await)
    }

    /// Opens the stream of bus events whose topic matches one of `topics`
    /// (every event when empty).
    pub async fn watch_events(&self, topics: &[String]) -> Result<Streaming<BusEvent>, Failure> {
        let request = WatchEventsRequest {
            topics: topics.to_vec(),
        };
        self.answer(self.system.clone().watch_events(request).await)
    }

    /// Puts an event on the bus, with the chosen correlation id if any.
    pub async fn publish_event(
        &self,
        topic: &str,
        payload: Option<prost_types::Struct>,
    ) -> Result<PublishEventResponse, Failure> {
        let request = PublishEventRequest {
            topic: topic.to_string(),
            payload,
            correlation_id: self.correlation_id.clone().unwrap_or_default(),
        };
        self.answer(self.system.clone().publish_event(request).await)
    }

    /// Opens a stream of the server's log entries.
    pub async fn tail_logs(
        &self,
        request: TailLogsRequest,
    ) -> Result<Streaming<LogEntry>, Failure> {
        self.answer(self.logs.clone().tail_logs(request).await)
    }

    /// Changes what the server logs.
    pub async fn set_log_level(&self, filter: &str) -> Result<SetLogLevelResponse, Failure> {
        let request = SetLogLevelRequest {
            filter: filter.to_string(),
        };
        self.answer(self.logs.clone().set_log_level(request).await)
    }

    /// Starts a plan and opens the stream of its events, which ends with
    /// the plan's end.
    pub async fn run_plan(&self, request: RunPlanRequest) -> Result<Streaming<PlanEvent>, Failure> {
        self.answer(self.plan.clone().run_plan(request).await)
    }

    /// Starts a plan and returns at once.
    pub async fn start_plan(
        &self,
        request: StartPlanRequest,
    ) -> Result<StartPlanResponse, Failure> {
        self.answer(self.plan.clone().start_plan(request).await)
    }

    /// Checks a plan without running it.
    pub async fn validate_plan(
        &self,
        request: ValidatePlanRequest,
    ) -> Result<ValidatePlanResponse, Failure> {
        self.answer(self.plan.clone().validate_plan(request).await)
    }

    /// The plans running and recently ended, and those of the plans folder.
    pub async fn list_plans(&self) -> Result<ListPlansResponse, Failure> {
        self.answer(self.plan.clone().list_plans(ListPlansRequest {}).await)
    }

    /// Opens the stream of the events of the plans `plan_ids` (of every
    /// plan when empty).
    pub async fn watch_plans(&self, plan_ids: &[String]) -> Result<Streaming<PlanEvent>, Failure> {
        let request = WatchPlansRequest {
            plan_ids: plan_ids.to_vec(),
        };
        self.answer(self.plan.clone().watch_plans(request).await)
    }

    /// Cancels a plan, by id or by the name of an active plan.
    pub async fn cancel_plan(
        &self,
        request: CancelPlanRequest,
    ) -> Result<CancelPlanResponse, Failure> {
        self.answer(self.plan.clone().cancel_plan(request).await)
    }

    /// Holds a plan where it is.
    pub async fn pause_plan(&self, plan: &str) -> Result<PausePlanResponse, Failure> {
        let request = PausePlanRequest {
            plan_id: plan.to_string(),
        };
        self.answer(self.plan.clone().pause_plan(request).await)
    }

    /// Carries on a paused plan.
    pub async fn resume_plan(&self, plan: &str) -> Result<ResumePlanResponse, Failure> {
        let request = ResumePlanRequest {
            plan_id: plan.to_string(),
        };
        self.answer(self.plan.clone().resume_plan(request).await)
    }

    /// The panic button: every plan cancelled, sound faded out over `fade`
    /// (the server's default when `None`).
    pub async fn stop_all(
        &self,
        fade: Option<prost_types::Duration>,
    ) -> Result<StopAllResponse, Failure> {
        self.answer(self.plan.clone().stop_all(StopAllRequest { fade }).await)
    }

    /// The message of a call, or the failure it becomes: the cloned client
    /// is a cheap handle on the shared channel, which keeps the methods `&self`.
    fn answer<T>(&self, result: Result<tonic::Response<T>, tonic::Status>) -> Result<T, Failure> {
        result
            .map(tonic::Response::into_inner)
            .map_err(|s| self.failure(s))
    }

    /// Where the server is, as messages name it.
    pub fn address(&self) -> &str {
        &self.address
    }

    /// Why a call or an open stream failed: a lost connection, or an error
    /// the server sent. tonic attaches the transport error as the source of
    /// the former only, whatever code the HTTP/2 error maps to (INTERNAL,
    /// UNKNOWN, CANCELLED…; a plaintext call to a TLS server breaks at once
    /// as UNKNOWN or INTERNAL), so the source alone tells them apart.
    pub fn failure(&self, status: Status) -> Failure {
        if status.source().is_some() {
            Failure::Disconnected {
                address: self.address.clone(),
                status,
            }
        } else {
            Failure::Server(status)
        }
    }
}
