//! `cantina.v1.LogService`: TailLogs (backlog from the ring, then, with
//! `follow`, new entries from the broadcast channel; a follower that falls
//! behind gets a gap marker with the count it missed) and SetLogLevel.

use std::{pin::Pin, sync::Arc, time::SystemTime};

use cantina::v1::{
    LogEntry, LogLevel, SetLogLevelRequest, SetLogLevelResponse, TailLogsRequest,
    log_service_server::LogService,
};
use futures_util::{Stream, StreamExt};
use regex::Regex;
use serde_json::json;
use tokio::sync::broadcast::error::RecvError;
use tonic::{Request, Response, Status};
use tracing::Level;

use crate::{
    bus::{Bus, Topic},
    logs::{Entry, Logs},
    shutdown::Shutdown,
    telemetry::{self, FilterError},
};

/// The LogService implementation.
pub struct LogApi {
    logs: Logs,
    bus: Bus,
    shutdown: Shutdown,
}

impl LogApi {
    /// A service over `logs`, announcing level changes on `bus`.
    pub fn new(logs: Logs, bus: Bus, shutdown: Shutdown) -> Self {
        Self {
            logs,
            bus,
            shutdown,
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

/// Which entries a request wants.
struct Query {
    min_level: Option<Level>,
    services: Vec<String>,
    contains: String,
    pattern: Option<Regex>,
    since: Option<SystemTime>,
    after_seq: u64,
}

impl Query {
    fn new(request: &TailLogsRequest) -> Result<Self, Status> {
        let pattern = match request.pattern.as_str() {
            "" => None,
            p => Some(Regex::new(p).map_err(|e| {
                Status::invalid_argument(format!("pattern is not a regular expression: {e}"))
            })?),
        };
        let since = request
            .since
            .map(|t| {
                SystemTime::try_from(t)
                    .map_err(|_| Status::invalid_argument("since is out of range"))
            })
            .transpose()?;
        Ok(Self {
            min_level: level_from_proto(request.min_level)?,
            services: request.services.clone(),
            contains: request.contains.clone(),
            pattern,
            since,
            after_seq: request.after_seq,
        })
    }

    fn matches(&self, entry: &Entry) -> bool {
        let record = &entry.record;
        // tracing orders levels by verbosity: TRACE is the "greatest".
        self.min_level.is_none_or(|min| record.level <= min)
            && entry.seq > self.after_seq
            && (self.services.is_empty() || self.services.iter().any(|s| s == entry.service))
            && (self.contains.is_empty() || record.message.contains(&self.contains))
            && self
                .pattern
                .as_ref()
                .is_none_or(|p| p.is_match(&record.message))
            && self.since.is_none_or(|since| record.timestamp >= since)
    }
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
        let request = request.into_inner();
        let query = Arc::new(Query::new(&request)?);
        // Subscribe before taking the backlog, so nothing falls between.
        let live = request.follow.then(|| self.logs.follow());
        let snapshot = self.logs.snapshot();
        let boundary = snapshot.last().map_or(0, |e| e.seq);
        let session: Arc<str> = Arc::from(self.logs.session_id());
        let mut backlog: Vec<LogEntry> = snapshot
            .iter()
            .filter(|e| query.matches(e))
            .map(|e| entry_to_proto(e, &session))
            .collect();
        let wants_history = request.tail > 0 || query.since.is_some() || query.after_seq > 0;
        if request.tail > 0 {
            let keep = request.tail as usize;
            if backlog.len() > keep {
                backlog.drain(..backlog.len() - keep);
            }
        } else if request.follow && !wants_history {
            // `-f` alone: only what happens from now on.
            backlog.clear();
        }
        // A resume cursor older than the ring: say what fell out of it, so a
        // client coming back from a long outage sees the gap.
        if let Some(oldest) = snapshot.first()
            && query.after_seq > 0
            && oldest.seq > query.after_seq + 1
        {
            backlog.insert(0, gap_marker(oldest.seq - query.after_seq - 1, &session));
        }
        let backlog = futures_util::stream::iter(backlog.into_iter().map(Ok));
        let stream: EntryStream = match live {
            None => Box::pin(backlog),
            Some(live) => {
                let follow = futures_util::stream::unfold(live, move |mut live| {
                    let (query, session) = (query.clone(), session.clone());
                    async move {
                        loop {
                            match live.recv().await {
                                Ok(entry) if entry.seq <= boundary || !query.matches(&entry) => {
                                    continue;
                                }
                                Ok(entry) => {
                                    return Some((Ok(entry_to_proto(&entry, &session)), live));
                                }
                                Err(RecvError::Lagged(n)) => {
                                    return Some((Ok(gap_marker(n, &session)), live));
                                }
                                Err(RecvError::Closed) => return None,
                            }
                        }
                    }
                });
                Box::pin(backlog.chain(follow).take_until(self.shutdown.wait_owned()))
            }
        };
        Ok(Response::new(stream))
    }

    async fn set_log_level(
        &self,
        request: Request<SetLogLevelRequest>,
    ) -> Result<Response<SetLogLevelResponse>, Status> {
        let filter = request.into_inner().filter;
        let previous = set_filter(&self.bus, &filter).map_err(|e| match e {
            FilterError::Invalid { .. } => Status::invalid_argument(e.to_string()),
            FilterError::NotInstalled => Status::failed_precondition(e.to_string()),
        })?;
        Ok(Response::new(SetLogLevelResponse {
            filter,
            previous_filter: previous,
        }))
    }
}

/// Changes the capture filter and announces it on the bus.
pub fn set_filter(bus: &Bus, filter: &str) -> Result<String, FilterError> {
    let previous = telemetry::set_filter(filter)?;
    tracing::info!(filter, previous = %previous, "log filter changed");
    bus.emit(
        Topic::LogLevelChanged,
        "logs",
        json!({ "filter": filter, "previous": previous }),
    );
    Ok(previous)
}
