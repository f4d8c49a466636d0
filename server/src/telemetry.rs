//! Tracing: a filter that can change at run time (SetLogLevel, `debug
//! level`), the capture layer that feeds the log service, and the output on
//! stderr for people (`pretty`) or log collectors (`json`).

use std::{
    io::IsTerminal,
    sync::{Mutex, OnceLock},
};

use tracing_subscriber::{
    EnvFilter, Registry, fmt, layer::SubscriberExt, reload, util::SubscriberInitExt,
};

use serde_json::json;

use crate::{
    bus::{Bus, Topic},
    config::{Config, LogFormat},
    logs::CaptureLayer,
};

/// The installed filter and the directives it was built from.
struct Filter {
    handle: reload::Handle<EnvFilter, Registry>,
    directives: Mutex<String>,
}

static FILTER: OnceLock<Filter> = OnceLock::new();

/// Installs the global subscriber with stderr output; a second call changes
/// nothing.
pub fn init(config: &Config) {
    install(&config.log_level, Some(config.log_format));
}

/// Installs capture without stderr output: for test processes, whose
/// in-process servers then capture their logs like the real binary.
pub fn init_capture_only(directives: &str) {
    install(directives, None);
}

fn install(directives: &str, output: Option<LogFormat>) {
    let filter = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry()
        .with(filter)
        .with(CaptureLayer);
    let installed = match output {
        None => registry.try_init(),
        Some(LogFormat::Pretty) => registry
            .with(
                fmt::layer()
                    .with_writer(std::io::stderr)
                    .with_ansi(std::io::stderr().is_terminal()),
            )
            .try_init(),
        Some(LogFormat::Json) => registry
            .with(
                fmt::layer()
                    .json()
                    .with_writer(std::io::stderr)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
    };
    if installed.is_ok() {
        let _ = FILTER.set(Filter {
            handle,
            directives: Mutex::new(directives.to_string()),
        });
    }
}

/// Why the filter was not changed.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    /// Not an EnvFilter directive string.
    #[error(
        "'{directives}' is not a log filter ({reason}); use a level such as `info` or directives such as `info,cantina_server::bus=debug`"
    )]
    Invalid {
        /// What was given.
        directives: String,
        /// Why it does not parse.
        reason: String,
    },
    /// This process has no reloadable filter (it did not install tracing).
    #[error("log capture is not installed in this process")]
    NotInstalled,
}

/// The filter directives in force.
pub fn current_filter() -> Option<String> {
    FILTER
        .get()
        .map(|f| f.directives.lock().expect("filter lock").clone())
}

/// Changes what is captured (SetLogLevel, `debug level`): replaces the
/// filter, says so in the log and on the bus (`log.level.changed`); returns
/// the previous directives.
pub fn change_filter(bus: &Bus, directives: &str) -> Result<String, FilterError> {
    let previous = set_filter(directives)?;
    tracing::info!(filter = directives, previous = %previous, "log filter changed");
    bus.emit(
        Topic::LogLevelChanged,
        "logs",
        json!({ "filter": directives, "previous": previous }),
    );
    Ok(previous)
}

/// Replaces the filter; returns the previous directives.
fn set_filter(directives: &str) -> Result<String, FilterError> {
    let parsed = EnvFilter::try_new(directives).map_err(|e| FilterError::Invalid {
        directives: directives.to_string(),
        reason: e.to_string(),
    })?;
    let filter = FILTER.get().ok_or(FilterError::NotInstalled)?;
    let mut current = filter.directives.lock().expect("filter lock");
    filter
        .handle
        .reload(parsed)
        .map_err(|_| FilterError::NotInstalled)?;
    Ok(std::mem::replace(&mut *current, directives.to_string()))
}
