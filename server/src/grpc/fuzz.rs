//! The gRPC edge's conversions of bytes off the wire, for the fuzz targets
//! (the `fuzzing` module): a `RunPlanRequest` into a plan as RunPlan decodes
//! it, a `TailLogsRequest` into a tail request as TailLogs converts it.
//! Here because only `grpc/` knows proto types.

use cantina::v1::{RunPlanRequest, TailLogsRequest};
use prost::Message;

use super::plans::Source;
use crate::{
    logs::tail::TailRequest,
    plans::{
        decode::Limits,
        files::{Located, parse_document},
        model::Plan,
    },
};

/// Decodes `bytes` as a `RunPlanRequest` and its plan (the `plan` message
/// or the `document`) as RunPlan does, within `limits`; `None` when the
/// bytes are no such message or it holds neither (a `plan_name` needs the
/// plans folder).
pub fn run_plan_request(bytes: &[u8], limits: &Limits) -> Option<Result<Plan, Vec<Located>>> {
    let request = RunPlanRequest::decode(bytes).ok()?;
    let source = match (request.plan, request.document) {
        // RunPlan refuses such a plan with INVALID_ARGUMENT.
        (Some(plan), _) => Source::Message(cantina::json::try_to_json(&plan).ok()?),
        (None, document) if !document.is_empty() => match parse_document(&document) {
            Ok(document) => Source::Document(document),
            Err(problems) => return Some(Err(problems)),
        },
        _ => return None,
    };
    Some(source.decode(limits))
}

/// Decodes `bytes` as a `TailLogsRequest` and converts it as TailLogs
/// does; `None` when the bytes are no such message, `Some(Err)` with the
/// status message when TailLogs would refuse it.
pub fn tail_logs_request(bytes: &[u8]) -> Option<Result<TailRequest, String>> {
    let request = TailLogsRequest::decode(bytes).ok()?;
    Some(super::logs::tail_request(request).map_err(|status| status.message().to_string()))
}
