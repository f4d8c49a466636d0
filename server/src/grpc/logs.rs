//! `cantina.v1.LogService`: TailLogs and SetLogLevel, converting between
//! proto and the log service ([`Logs::tail`] does the querying, backlog and
//! gaps; [`telemetry::change_filter`] the level change).

use std::{pin::Pin, sync::Arc, time::SystemTime};

use cantina::v1::{
    LogEntry, LogLevel, SetLogLevelRequest, SetLogLevelResponse, TailLogsRequest,
    log_service_server::LogService,
};
use futures_util::{Stream, StreamExt};
use tonic::{Request, Response, Status};
use tracing::Level;

use super::StreamLimits;
use crate::{
    bus::Bus,
    logs::{
        Entry, Logs,
        tail::{Item, Query, TailRequest},
    },
    shutdown::Shutdown,
    telemetry::{self, FilterError},
};

/// The LogService implementation.
pub struct LogApi {
    logs: Logs,
    bus: Bus,
    shutdown: Shutdown,
    /// The caps TailLogs streams count against.
    streams: StreamLimits,
}

impl LogApi {
    /// A service over `logs`, announcing level changes on `bus`, its
    /// streams counted against `streams`.
    pub fn new(logs: Logs, bus: Bus, shutdown: Shutdown, streams: StreamLimits) -> Self {
        Self {
            logs,
            bus,
            shutdown,
            streams,
        }
    }
}

fn level_to_proto(level: Level) -> LogLevel {
    match level {
        Level::TRACE => LogLevel::Trace,
        Level::DEBUG => LogLevel::Debug,
        Level::INFO => LogLevel::Info,
        Level::WARN => LogLevel::Warn,
        Level::ERROR => LogLevel::Error,
    }
}

fn level_from_proto(value: i32) -> Result<Option<Level>, Status> {
    match LogLevel::try_from(value) {
        Ok(LogLevel::Unspecified) => Ok(None),
        Ok(LogLevel::Trace) => Ok(Some(Level::TRACE)),
        Ok(LogLevel::Debug) => Ok(Some(Level::DEBUG)),
        Ok(LogLevel::Info) => Ok(Some(Level::INFO)),
        Ok(LogLevel::Warn) => Ok(Some(Level::WARN)),
        Ok(LogLevel::Error) => Ok(Some(Level::ERROR)),
        Err(_) => Err(Status::invalid_argument(format!(
            "unknown min_level {value}"
        ))),
    }
}

/// The domain request of a proto one.
pub(crate) fn tail_request(request: TailLogsRequest) -> Result<TailRequest, Status> {
    Query::check_filters(&request.services, &request.contains).map_err(Status::invalid_argument)?;
    let since = request
        .since
        .map(|t| {
            SystemTime::try_from(t).map_err(|_| Status::invalid_argument("since is out of range"))
        })
        .transpose()?;
    Ok(TailRequest {
        query: Query {
            min_level: level_from_proto(request.min_level)?,
            services: request.services,
            contains: request.contains,
            pattern: Query::pattern(&request.pattern).map_err(Status::invalid_argument)?,
            since,
            after_seq: request.after_seq,
        },
        tail: request.tail as usize,
        follow: request.follow,
    })
}

fn entry_to_proto(entry: &Entry, session: &str) -> LogEntry {
    let record = &entry.record;
    LogEntry {
        seq: entry.seq,
        timestamp: Some(record.timestamp.into()),
        level: level_to_proto(record.level) as i32,
        service: entry.service.to_string(),
        target: record.target.to_string(),
        message: record.message.clone(),
        fields: record
            .fields
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        correlation_id: record
            .correlation_id
            .as_deref()
            .unwrap_or_default()
            .to_string(),
        session_id: session.to_string(),
        repeated: entry.repeated,
        skipped: 0,
    }
}

fn gap_marker(skipped: u64, session: &str) -> LogEntry {
    LogEntry {
        timestamp: Some(SystemTime::now().into()),
        level: LogLevel::Warn as i32,
        service: "logs".into(),
        target: "cantina_server::logs".into(),
        message: format!(
            "{skipped} entries skipped: this follower fell behind (the server never waits for a slow reader)"
        ),
        session_id: session.to_string(),
        skipped,
        ..LogEntry::default()
    }
}

type EntryStream = Pin<Box<dyn Stream<Item = Result<LogEntry, Status>> + Send>>;

#[tonic::async_trait]
impl LogService for LogApi {
    type TailLogsStream = EntryStream;

    async fn tail_logs(
        &self,
        request: Request<TailLogsRequest>,
    ) -> Result<Response<EntryStream>, Status> {
        let permit = self.streams.admit("TailLogs", &request)?;
        let request = tail_request(request.into_inner())?;
        let follow = request.follow;
        let session: Arc<str> = Arc::from(self.logs.session_id());
        let items = self.logs.tail(request).map(move |item| {
            Ok(match item {
                Item::Entry(entry) => entry_to_proto(&entry, &session),
                Item::Gap { skipped } => gap_marker(skipped, &session),
            })
        });
        let stream: EntryStream = if follow {
            Box::pin(items.take_until(self.shutdown.wait_owned()))
        } else {
            Box::pin(items)
        };
        Ok(Response::new(permit.hold(stream)))
    }

    async fn set_log_level(
        &self,
        request: Request<SetLogLevelRequest>,
    ) -> Result<Response<SetLogLevelResponse>, Status> {
        let filter = request.into_inner().filter;
        let previous = telemetry::change_filter(&self.bus, &filter).map_err(|e| match e {
            FilterError::Invalid { .. } => Status::invalid_argument(e.to_string()),
            FilterError::NotInstalled => Status::failed_precondition(e.to_string()),
        })?;
        Ok(Response::new(SetLogLevelResponse {
            filter,
            previous_filter: previous,
        }))
    }
}
