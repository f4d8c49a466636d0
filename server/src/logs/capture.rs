//! The capture layer: a `tracing` layer that turns every event of the server
//! and its dependencies into a [`Record`] and hands it, without ever waiting,
//! to each attached log service. With nothing attached it returns at once, so
//! it costs close to nothing when no one is listening. It never logs itself
//! (that would recurse); what it could not hand over is counted, and the log
//! service reports the count as an entry of its own.

use std::{
    fmt::{self, Write as _},
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed},
    },
    time::SystemTime,
};

use tokio::sync::mpsc::{self, error::TrySendError};
use tracing::{
    Event, Level, Subscriber,
    field::{Field, Visit},
    span,
};
use tracing_subscriber::{Layer, layer::Context, registry::LookupSpan};

/// One captured event, before dedup and numbering.
#[derive(Clone, Debug)]
pub struct Record {
    /// When it happened.
    pub timestamp: SystemTime,
    /// Its level.
    pub level: Level,
    /// The module path that logged it.
    pub target: &'static str,
    /// The message.
    pub message: String,
    /// The other fields, rendered as text, in the order they were given.
    pub fields: Vec<(&'static str, String)>,
    /// The correlation id of the innermost span that carries one.
    pub correlation_id: Option<Arc<str>>,
}

/// Where records go: one sender per attached log service.
static SINKS: RwLock<Vec<mpsc::Sender<Arc<Record>>>> = RwLock::new(Vec::new());
/// How many sinks are attached, readable without the lock.
static ATTACHED: AtomicUsize = AtomicUsize::new(0);
/// Records that found a sink's queue full.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// Attaches a log service: returns the receiving end of a queue of
/// `capacity` records.
pub fn attach(capacity: usize) -> mpsc::Receiver<Arc<Record>> {
    let (tx, rx) = mpsc::channel(capacity);
    let mut sinks = SINKS.write().expect("sinks lock");
    sinks.push(tx);
    ATTACHED.store(sinks.len(), Relaxed);
    rx
}

/// Records lost so far because a log service's queue was full.
pub fn dropped() -> u64 {
    DROPPED.load(Relaxed)
}

/// The correlation id a span carries, kept in its extensions.
struct SpanCorrelation(Arc<str>);

/// The capture layer; install it once per process (see `telemetry::init`).
#[derive(Clone, Copy, Debug, Default)]
pub struct CaptureLayer;

impl<S> Layer<S> for CaptureLayer
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, ctx: Context<'_, S>) {
        let mut finder = CorrelationFinder(None);
        attrs.record(&mut finder);
        if let (Some(found), Some(span)) = (finder.0, ctx.span(id)) {
            span.extensions_mut()
                .insert(SpanCorrelation(Arc::from(found)));
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        if ATTACHED.load(Relaxed) == 0 {
            return;
        }
        let metadata = event.metadata();
        let mut visitor = RecordVisitor {
            message: String::new(),
            fields: Vec::with_capacity(metadata.fields().len().saturating_sub(1)),
            correlation_id: None,
        };
        event.record(&mut visitor);
        let correlation_id = visitor.correlation_id.map(Arc::from).or_else(|| {
            ctx.event_scope(event)?.find_map(|span| {
                span.extensions()
                    .get::<SpanCorrelation>()
                    .map(|c| c.0.clone())
            })
        });
        let record = Arc::new(Record {
            timestamp: SystemTime::now(),
            level: *metadata.level(),
            target: metadata.target(),
            message: visitor.message,
            fields: visitor.fields,
            correlation_id,
        });
        let sinks = SINKS.read().expect("sinks lock");
        let mut closed = false;
        for sink in sinks.iter() {
            match sink.try_send(record.clone()) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) => {
                    DROPPED.fetch_add(1, Relaxed);
                }
                Err(TrySendError::Closed(_)) => closed = true,
            }
        }
        drop(sinks);
        if closed {
            // A log service stopped: forget it.
            let mut sinks = SINKS.write().expect("sinks lock");
            sinks.retain(|s| !s.is_closed());
            ATTACHED.store(sinks.len(), Relaxed);
        }
    }
}

/// Collects an event's message and fields as text.
struct RecordVisitor {
    message: String,
    fields: Vec<(&'static str, String)>,
    correlation_id: Option<String>,
}

thread_local! {
    /// Where values are formatted before being copied out at their exact
    /// size: formatting straight into a new `String` grows it step by step
    /// (several allocations, and up to twice the memory, for every record
    /// the ring then keeps).
    static SCRATCH: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// `value` rendered with `Debug`, in a string of exactly its length.
fn exact(value: &dyn fmt::Debug) -> String {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut buffer) => {
            buffer.clear();
            let _ = write!(buffer, "{value:?}");
            String::from(buffer.as_str())
        }
        // Re-entered (a value whose Debug logs): format directly.
        Err(_) => format!("{value:?}"),
    })
}

impl Visit for RecordVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "message" => self.message = value.to_string(),
            "correlation_id" => self.correlation_id = Some(value.to_string()),
            name => self.fields.push((name, value.to_string())),
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        match field.name() {
            "message" => self.message = exact(value),
            "correlation_id" => self.correlation_id = Some(exact(value)),
            name => self.fields.push((name, exact(value))),
        }
    }
}

/// Finds a `correlation_id` field among a span's attributes.
struct CorrelationFinder(Option<String>);

impl Visit for CorrelationFinder {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "correlation_id" {
            self.0 = Some(value.to_string());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "correlation_id" {
            self.0 = Some(format!("{value:?}"));
        }
    }
}
