//! `cantina.v1.CommandService`: a thin shell over the [`Dispatcher`]. It
//! assigns the correlation id, runs the command inside a span that carries
//! it, and converts between proto and domain types.

use std::sync::Arc;

use cantina::v1::{
    CommandInfo, DispatchRequest, DispatchResponse, ListCommandsRequest, ListCommandsResponse,
    command_service_server::CommandService,
};
use tonic::{Request, Response, Status, metadata::MetadataValue};
use tracing::{Instrument, info, info_span};

use crate::commands::{Category, Dispatcher};

/// The CommandService implementation.
pub struct CommandApi {
    /// Parses and runs the lines.
    dispatcher: Arc<Dispatcher>,
}

impl CommandApi {
    /// A service over `dispatcher`.
    pub fn new(dispatcher: Arc<Dispatcher>) -> Self {
        Self { dispatcher }
    }
}

/// The request's correlation id, or a new one (PublishEvent's too).
pub(super) fn correlation_id(given: String) -> Result<String, Status> {
    if given.is_empty() {
        return Ok(uuid::Uuid::new_v4().to_string());
    }
    if given.len() > 128 || !given.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Status::invalid_argument(
            "correlation_id must be at most 128 printable ASCII characters without spaces \
             (leave it empty to have one generated)",
        ));
    }
    Ok(given)
}

#[tonic::async_trait]
impl CommandService for CommandApi {
    async fn dispatch(
        &self,
        request: Request<DispatchRequest>,
    ) -> Result<Response<DispatchResponse>, Status> {
        let DispatchRequest {
            line,
            correlation_id: given,
        } = request.into_inner();
        let correlation_id = correlation_id(given)?;
        let span = info_span!("dispatch", correlation_id = %correlation_id);
        // Every event the command causes carries its correlation id.
        let dispatched =
            crate::bus::with_correlation(correlation_id.clone(), self.dispatcher.dispatch(&line));
        match dispatched.instrument(span.clone()).await {
            Ok(done) => Ok(Response::new(DispatchResponse {
                command: done.command.to_string(),
                message: done.reply.message,
                correlation_id,
                data: done.reply.data.map(cantina::json::struct_from_json),
                args: done.args,
            })),
            Err(error) => {
                span.in_scope(|| info!(%line, %error, "command refused"));
                let mut status = Status::from(error);
                if let Ok(value) = MetadataValue::try_from(correlation_id.as_str()) {
                    status.metadata_mut().insert("x-correlation-id", value);
                }
                Err(status)
            }
        }
    }

    async fn list_commands(
        &self,
        request: Request<ListCommandsRequest>,
    ) -> Result<Response<ListCommandsResponse>, Status> {
        let wanted = request.into_inner().category;
        if !wanted.is_empty() && !Category::ALL.iter().any(|c| c.as_str() == wanted) {
            let known: Vec<_> = Category::ALL.iter().map(|c| c.as_str()).collect();
            return Err(Status::invalid_argument(format!(
                "unknown category '{wanted}'; the categories are: {}",
                known.join(", ")
            )));
        }
        let mut specs: Vec<_> = self
            .dispatcher
            .registry()
            .specs()
            .iter()
            .filter(|s| wanted.is_empty() || s.category.as_str() == wanted)
            .collect();
        // Grouped by category in display order; stable within a category.
        specs.sort_by_key(|s| s.category);
        let commands = specs
            .into_iter()
            .map(|spec| CommandInfo {
                name: spec.name.into(),
                usage: spec.usage.into(),
                description: spec.description.into(),
                aliases: spec
                    .aliases
                    .iter()
                    .chain(spec.shortcuts)
                    .map(|a| a.to_string())
                    .collect(),
                category: spec.category.as_str().into(),
                shortcuts: spec.shortcuts.iter().map(|s| s.to_string()).collect(),
                min_args: spec.min_args as u32,
                max_args: spec.max_args.map(|n| n as u32),
            })
            .collect();
        Ok(Response::new(ListCommandsResponse { commands }))
    }
}
