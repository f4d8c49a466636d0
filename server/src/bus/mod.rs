//! The event bus: every part of the droid announces what it does here, and
//! other parts (and remote clients, through WatchEvents) react.
//!
//! - **Publishing never waits.** [`Bus::publish`] runs the pre-middleware,
//!   records the event in the bounded history, and pushes it into the inbox of
//!   every matching subscriber without blocking ([`inbox`]); a full inbox loses
//!   events by its overflow policy and every loss is counted. A slow or stuck
//!   subscriber therefore slows nobody but itself.
//! - **Subscribers** choose topics by glob ([`TopicSet`]), a priority (higher
//!   is handed each event first), a filter predicate, `once`, a handler
//!   timeout and their inbox size. Each handler runs on its own task; a
//!   handler that fails or times out puts the event in the dead-letter queue,
//!   and one that fails `max_failures` times in a row is unsubscribed, loudly.
//! - **Request/response**: [`Bus::wait_for`] registers at once and resolves
//!   with the first matching event or a timeout.
//! - Every event carries a sequence number, a timestamp, a correlation id (the
//!   publisher's, the dispatched command's, or its own) and metadata.
//! - Clients' own events (`ext.button.pressed`, published with PublishEvent;
//!   [`client`] says what a client may publish) are [`Topic::External`]
//!   events carrying their full name ([`Event::name`]); globs select them by
//!   that name ([`TopicSelector`]).
//! - [`Bus::metrics`] reports counts per topic, per handler (calls, errors,
//!   timeouts, durations, queue depth, drops) and in total; a subsystem logs
//!   them periodically.

pub mod client;
mod inbox;
mod monitor;
pub mod settings;
mod topic;

use std::{
    collections::{BTreeMap, VecDeque},
    fmt,
    future::Future,
    panic::AssertUnwindSafe,
    sync::{
        Arc, Mutex, RwLock, Weak,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant, SystemTime},
};

use futures_util::FutureExt;
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tracing::{error, warn};

pub use inbox::{Inbox, Item, Overflow, Pushed};
pub use monitor::BusMonitor;
pub use settings::BusConfig;
pub use topic::{
    ExtName, MAX_EXT_NAME, NameError, PatternError, Topic, TopicClass, TopicSelector, TopicSet,
    glob_match,
};

/// One published event.
#[derive(Clone, Debug)]
pub struct Event {
    /// Position on the bus, strictly increasing.
    pub seq: u64,
    /// What happened.
    pub topic: Topic,
    /// The full name of an external event (`ext.button.pressed`); `None` on
    /// every declared topic, whose name is the topic's.
    pub ext: Option<ExtName>,
    /// When it was published.
    pub timestamp: SystemTime,
    /// Ties the event to the request that caused it.
    pub correlation_id: CorrelationId,
    /// The part of the server that published it.
    pub source: &'static str,
    /// The event's data.
    pub payload: Value,
    /// Extra annotations from the publisher and middleware.
    pub metadata: BTreeMap<String, String>,
}

impl Event {
    /// The dotted name: the topic's, or an external event's own.
    pub fn name(&self) -> &str {
        match &self.ext {
            Some(name) => name.as_str(),
            None => self.topic.as_str(),
        }
    }
}

impl Serialize for Event {
    /// As the fields are, with `topic` the full name ([`Event::name`]).
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut event = s.serialize_struct("Event", 7)?;
        event.serialize_field("seq", &self.seq)?;
        event.serialize_field("topic", self.name())?;
        event.serialize_field(
            "timestamp",
            &humantime::format_rfc3339_millis(self.timestamp).to_string(),
        )?;
        event.serialize_field("correlation_id", &self.correlation_id)?;
        event.serialize_field("source", self.source)?;
        event.serialize_field("payload", &self.payload)?;
        event.serialize_field("metadata", &self.metadata)?;
        event.end()
    }
}

fn rfc3339<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_millis(*t))
}

impl Serialize for Topic {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl Event {
    #[cfg(test)]
    pub(crate) fn test(seq: u64, topic: Topic) -> Self {
        Event {
            seq,
            topic,
            ext: None,
            timestamp: SystemTime::now(),
            correlation_id: CorrelationId::Given(Arc::from("")),
            source: "test",
            payload: Value::Null,
            metadata: BTreeMap::new(),
        }
    }
}

/// An event's correlation id: the one it was given, or one the bus made up
/// from its own prefix and the event's sequence number (rendered only when
/// someone looks, since most events are never looked at one by one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CorrelationId {
    /// Given by the publisher or the dispatched command.
    Given(Arc<str>),
    /// Made up by the bus: `<prefix>-<seq>`.
    Own(Arc<str>, u64),
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CorrelationId::Given(id) => f.write_str(id),
            CorrelationId::Own(prefix, seq) => write!(f, "{prefix}-{seq}"),
        }
    }
}

impl PartialEq<&str> for CorrelationId {
    fn eq(&self, other: &&str) -> bool {
        match self {
            CorrelationId::Given(id) => &**id == *other,
            CorrelationId::Own(prefix, seq) => other
                .strip_prefix(&**prefix)
                .and_then(|rest| rest.strip_prefix('-'))
                .is_some_and(|n| n.parse() == Ok(*seq)),
        }
    }
}

impl Serialize for CorrelationId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An event about to be published.
#[derive(Clone, Debug)]
pub struct Draft {
    topic: Topic,
    ext: Option<ExtName>,
    source: &'static str,
    payload: Value,
    correlation_id: Option<String>,
    metadata: BTreeMap<String, String>,
}

impl Draft {
    /// An event on `topic` from `source` carrying `payload`. (An external
    /// event has a name of its own: [`Draft::external`].)
    pub fn new(topic: Topic, source: &'static str, payload: impl Serialize) -> Self {
        debug_assert!(
            topic != Topic::External,
            "external events are made with Draft::external"
        );
        Self::make(topic, None, source, payload)
    }

    /// An external event named `name` from `source` carrying `payload`.
    pub fn external(name: ExtName, source: &'static str, payload: impl Serialize) -> Self {
        Self::make(Topic::External, Some(name), source, payload)
    }

    fn make(
        topic: Topic,
        ext: Option<ExtName>,
        source: &'static str,
        payload: impl Serialize,
    ) -> Self {
        Self {
            topic,
            ext,
            source,
            payload: serde_json::to_value(payload)
                .unwrap_or_else(|e| json!({ "error": e.to_string() })),
            correlation_id: None,
            metadata: BTreeMap::new(),
        }
    }

    /// The event's dotted name.
    pub fn name(&self) -> &str {
        match &self.ext {
            Some(name) => name.as_str(),
            None => self.topic.as_str(),
        }
    }

    /// Ties the event to a request.
    pub fn correlation_id(mut self, id: impl Into<String>) -> Self {
        self.correlation_id = Some(id.into());
        self
    }

    /// Adds a metadata entry.
    pub fn meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }
}

tokio::task_local! {
    /// The correlation id of the command being dispatched on this task.
    static CORRELATION: Arc<str>;
}

/// The correlation id of the command running on this task, if any: for work
/// handed to another thread that publishes on the command's behalf.
pub fn current_correlation() -> Option<Arc<str>> {
    CORRELATION.try_with(Arc::clone).ok()
}

/// Runs `future` with `id` as the correlation id of every event it publishes
/// without one of its own.
pub async fn with_correlation<F: Future>(id: String, future: F) -> F::Output {
    CORRELATION.scope(Arc::from(id), future).await
}

/// A pre-middleware: sees (and may annotate) every event before delivery;
/// returning `false` vetoes it.
pub type Pre = Arc<dyn Fn(&mut Event) -> bool + Send + Sync>;
/// A post-middleware: sees every event after delivery, with what became of it.
pub type Post = Arc<dyn Fn(&Event, &Delivery) + Send + Sync>;
type Filter = Box<dyn Fn(&Event) -> bool + Send + Sync>;

/// What became of one published event.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Subscribers whose topics and filter matched.
    pub matched: usize,
    /// Of those, inboxes that took it (possibly evicting an older event).
    pub queued: usize,
    /// Of those, inboxes that were full and refused it.
    pub dropped: usize,
    /// Older events evicted from full inboxes to make room for it.
    pub evicted: usize,
}

/// A handler's failure, kept in the dead-letter queue.
#[derive(Clone, Debug, Serialize)]
pub struct DeadLetter {
    /// The event that failed.
    pub event: Arc<Event>,
    /// The subscriber whose handler failed.
    pub subscriber: String,
    /// What went wrong.
    pub error: String,
    /// When.
    #[serde(serialize_with = "rfc3339")]
    pub at: SystemTime,
}

/// Why [`Bus::wait_for`] gave up.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// Nothing matching arrived in time.
    #[error("no matching event within {0:?}")]
    Timeout(Duration),
    /// The bus closed first.
    #[error("the event bus closed")]
    Closed,
}

enum Kind {
    /// Runs a handler on its own task.
    Handler,
    /// Consumed by an [`EventStream`].
    Stream,
    /// Resolves a [`Bus::wait_for`]; delivered inline, never queued.
    Waiter(Mutex<Option<oneshot::Sender<Arc<Event>>>>),
}

/// A subscriber's counters, written by its handler task (deliveries and
/// losses are counted by the inbox, under the lock a push holds anyway). On a
/// cache line of their own, so the publisher's core and the handler's do not
/// fight over one.
#[derive(Default)]
struct Stats {
    handler: HandlerStats,
}

#[derive(Default)]
#[repr(align(64))]
struct HandlerStats {
    calls: AtomicU64,
    errors: AtomicU64,
    timeouts: AtomicU64,
    busy_nanos: AtomicU64,
    max_nanos: AtomicU64,
    failures_in_a_row: AtomicU64,
    /// Events taken from the inbox in a batch and not yet handled: still
    /// queued as far as anyone watching the depth is concerned.
    held: AtomicU64,
}

struct Subscriber {
    id: u64,
    name: String,
    patterns: Vec<String>,
    topics: TopicSelector,
    priority: i32,
    filter: Option<Filter>,
    once: bool,
    /// Set when a `once` subscriber has been handed its event.
    spent: AtomicBool,
    timeout: Duration,
    kind: Kind,
    inbox: Inbox,
    stats: Stats,
}

impl Subscriber {
    /// Events waiting for this subscriber: in its inbox, or taken by its
    /// handler task and not yet handled.
    fn depth(&self) -> u64 {
        self.inbox.depth() as u64 + self.stats.handler.held.load(Relaxed)
    }

    fn wants(&self, event: &Event) -> bool {
        self.topics.matches(event.topic, event.name())
            && self.filter.as_ref().is_none_or(|f| f(event))
    }
}

struct Inner {
    config: BusConfig,
    /// Sorted by priority, highest first; replaced, never mutated, so a
    /// publisher works on a snapshot without holding the lock.
    subscribers: RwLock<Arc<Vec<Arc<Subscriber>>>>,
    next_seq: AtomicU64,
    next_id: AtomicU64,
    /// Prefix of the correlation ids the bus makes up for uncorrelated events.
    id_prefix: Arc<str>,
    history: Mutex<VecDeque<Arc<Event>>>,
    dead_letters: Mutex<VecDeque<DeadLetter>>,
    pre: RwLock<Vec<Pre>>,
    post: RwLock<Vec<Post>>,
    /// Whether any middleware is installed: lets publish skip both locks.
    has_middleware: AtomicBool,
    closed: AtomicBool,
    published: AtomicU64,
    vetoed: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    failures: AtomicU64,
    per_topic: Vec<AtomicU64>,
}

/// Handle on the event bus; cheap to clone.
#[derive(Clone)]
pub struct Bus {
    inner: Arc<Inner>,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("published", &self.inner.published.load(Relaxed))
            .finish()
    }
}

impl Default for Bus {
    fn default() -> Self {
        Self::new(BusConfig::default())
    }
}

impl Bus {
    /// A bus with no subscribers.
    pub fn new(config: BusConfig) -> Self {
        let id_prefix: Arc<str> = Arc::from(&uuid::Uuid::new_v4().simple().to_string()[..8]);
        Self {
            inner: Arc::new(Inner {
                history: Mutex::new(VecDeque::with_capacity(config.history)),
                dead_letters: Mutex::new(VecDeque::new()),
                config,
                subscribers: RwLock::new(Arc::new(Vec::new())),
                next_seq: AtomicU64::new(1),
                next_id: AtomicU64::new(1),
                id_prefix,
                pre: RwLock::new(Vec::new()),
                post: RwLock::new(Vec::new()),
                has_middleware: AtomicBool::new(false),
                closed: AtomicBool::new(false),
                published: AtomicU64::new(0),
                vetoed: AtomicU64::new(0),
                delivered: AtomicU64::new(0),
                dropped: AtomicU64::new(0),
                failures: AtomicU64::new(0),
                per_topic: Topic::ALL.iter().map(|_| AtomicU64::new(0)).collect(),
            }),
        }
    }

    /// Publishes an event on `topic` from `source`; see [`Bus::publish`].
    pub fn emit(&self, topic: Topic, source: &'static str, payload: impl Serialize) -> Option<u64> {
        self.publish(Draft::new(topic, source, payload))
    }

    /// Publishes `draft` without waiting for anyone. Returns its sequence
    /// number, or `None` when a pre-middleware vetoed it or the bus is closed.
    pub fn publish(&self, draft: Draft) -> Option<u64> {
        let inner = &self.inner;
        if inner.closed.load(Relaxed) {
            return None;
        }
        let seq = inner.next_seq.fetch_add(1, Relaxed);
        let correlation_id = match draft.correlation_id {
            Some(id) => CorrelationId::Given(Arc::from(id)),
            None => CORRELATION
                .try_with(|id| CorrelationId::Given(id.clone()))
                .unwrap_or_else(|_| CorrelationId::Own(inner.id_prefix.clone(), seq)),
        };
        let mut event = Event {
            seq,
            topic: draft.topic,
            ext: draft.ext,
            timestamp: SystemTime::now(),
            correlation_id,
            source: draft.source,
            payload: draft.payload,
            metadata: draft.metadata,
        };
        let middleware = inner.has_middleware.load(Relaxed);
        if middleware {
            for pre in inner.pre.read().expect("middleware lock").iter() {
                if !pre(&mut event) {
                    inner.vetoed.fetch_add(1, Relaxed);
                    return None;
                }
            }
        }
        let event = Arc::new(event);
        inner.published.fetch_add(1, Relaxed);
        inner.per_topic[event.topic as usize].fetch_add(1, Relaxed);
        {
            let mut history = inner.history.lock().expect("history lock");
            if history.len() == inner.config.history {
                history.pop_front();
            }
            if inner.config.history > 0 {
                history.push_back(event.clone());
            }
        }

        let subscribers = inner.subscribers.read().expect("subscribers lock").clone();
        let mut delivery = Delivery::default();
        let mut finished = Vec::new();
        for sub in subscribers.iter() {
            if !sub.wants(&event) {
                continue;
            }
            if sub.once && sub.spent.swap(true, Relaxed) {
                continue;
            }
            delivery.matched += 1;
            match &sub.kind {
                Kind::Waiter(sender) => {
                    if let Some(sender) = sender.lock().expect("waiter lock").take() {
                        let _ = sender.send(event.clone());
                    }
                    delivery.queued += 1;
                    finished.push(sub.id);
                }
                Kind::Handler | Kind::Stream => match sub.inbox.push(event.clone()) {
                    Pushed::Queued => delivery.queued += 1,
                    Pushed::Evicted => {
                        // The newcomer is in; an older event is lost.
                        delivery.queued += 1;
                        delivery.evicted += 1;
                    }
                    Pushed::Dropped | Pushed::Closed => delivery.dropped += 1,
                },
            }
        }
        inner.delivered.fetch_add(delivery.queued as u64, Relaxed);
        inner
            .dropped
            .fetch_add((delivery.dropped + delivery.evicted) as u64, Relaxed);
        if !finished.is_empty() {
            self.remove(&finished);
        }
        if middleware {
            for post in inner.post.read().expect("middleware lock").iter() {
                post(&event, &delivery);
            }
        }
        Some(seq)
    }

    /// Adds a middleware that runs before delivery, in the order added. It
    /// runs on the publisher's thread, so it must be quick and must not
    /// publish itself.
    pub fn add_pre(&self, middleware: impl Fn(&mut Event) -> bool + Send + Sync + 'static) {
        self.inner
            .pre
            .write()
            .expect("middleware lock")
            .push(Arc::new(middleware));
        self.inner.has_middleware.store(true, Relaxed);
    }

    /// Adds a middleware that runs after delivery, in the order added (quick,
    /// and not publishing, like a pre-middleware).
    pub fn add_post(&self, middleware: impl Fn(&Event, &Delivery) + Send + Sync + 'static) {
        self.inner
            .post
            .write()
            .expect("middleware lock")
            .push(Arc::new(middleware));
        self.inner.has_middleware.store(true, Relaxed);
    }

    /// Starts a subscription to `topics` (a [`Topic`], a [`TopicSet`] or a
    /// [`TopicSelector`]).
    pub fn subscribe(&self, topics: impl Into<TopicSelector>) -> SubscribeBuilder<'_> {
        let topics = topics.into();
        SubscribeBuilder {
            bus: self,
            patterns: topics
                .set()
                .topics()
                .map(|t| t.as_str().to_string())
                .collect(),
            topics,
            name: String::new(),
            priority: 0,
            filter: None,
            once: false,
            timeout: self.inner.config.handler_timeout,
            capacity: self.inner.config.queue_capacity,
            overflow: Overflow::default(),
        }
    }

    /// Starts a subscription to the topics matching glob `patterns`.
    pub fn subscribe_glob<S: AsRef<str>>(
        &self,
        patterns: &[S],
    ) -> Result<SubscribeBuilder<'_>, PatternError> {
        let mut builder = self.subscribe(TopicSelector::parse(patterns)?);
        builder.patterns = patterns.iter().map(|p| p.as_ref().to_string()).collect();
        if builder.patterns.is_empty() {
            builder.patterns.push("*".into());
        }
        Ok(builder)
    }

    /// Waits for the first event on `topics` that `predicate` accepts. The
    /// wait is registered now, before the returned future is polled, so an
    /// event published between this call and the `.await` is not missed.
    pub fn wait_for(
        &self,
        topics: impl Into<TopicSelector>,
        predicate: impl Fn(&Event) -> bool + Send + Sync + 'static,
        timeout: Duration,
    ) -> impl Future<Output = Result<Arc<Event>, WaitError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let mut builder = self
            .subscribe(topics)
            .name("wait_for")
            .filter(predicate)
            .once();
        builder.priority = i32::MAX;
        let id = builder.register(Kind::Waiter(Mutex::new(Some(tx))));
        // The wait leaves the subscribers however it ends: an event, its
        // timeout, or the future dropped unfinished (a step aborted).
        let registered = Registered {
            bus: Arc::downgrade(&self.inner),
            id,
        };
        async move {
            let _registered = registered;
            match tokio::time::timeout(timeout, rx).await {
                Ok(Ok(event)) => Ok(event),
                Ok(Err(_)) => Err(WaitError::Closed),
                Err(_) => Err(WaitError::Timeout(timeout)),
            }
        }
    }

    /// The most recent events, oldest first, optionally of some topics only
    /// (a [`Topic`], a [`TopicSet`] or a [`TopicSelector`]).
    pub fn history(
        &self,
        topics: Option<impl Into<TopicSelector>>,
        limit: usize,
    ) -> Vec<Arc<Event>> {
        let topics = topics.map(Into::into);
        let history = self.inner.history.lock().expect("history lock");
        let mut recent: Vec<_> = history
            .iter()
            .rev()
            .filter(|e| topics.as_ref().is_none_or(|t| t.matches(e.topic, e.name())))
            .take(limit)
            .cloned()
            .collect();
        recent.reverse();
        recent
    }

    /// The most recent handler failures, oldest first.
    pub fn dead_letters(&self) -> Vec<DeadLetter> {
        self.inner
            .dead_letters
            .lock()
            .expect("dead letter lock")
            .iter()
            .cloned()
            .collect()
    }

    /// Subscribers now.
    pub fn subscriber_count(&self) -> usize {
        self.inner
            .subscribers
            .read()
            .expect("subscribers lock")
            .len()
    }

    /// Refuses further events and ends every handler task and stream once it
    /// has drained its inbox.
    pub fn close(&self) {
        self.inner.closed.store(true, Relaxed);
        let subscribers =
            std::mem::take(&mut *self.inner.subscribers.write().expect("subscribers lock"));
        for sub in subscribers.iter() {
            sub.inbox.close();
            if let Kind::Waiter(sender) = &sub.kind {
                sender.lock().expect("waiter lock").take();
            }
        }
    }

    fn remove(&self, ids: &[u64]) {
        let mut list = self.inner.subscribers.write().expect("subscribers lock");
        if !list.iter().any(|s| ids.contains(&s.id)) {
            return;
        }
        let mut kept = Vec::with_capacity(list.len());
        for sub in list.iter() {
            if ids.contains(&sub.id) {
                sub.inbox.close();
            } else {
                kept.push(sub.clone());
            }
        }
        *list = Arc::new(kept);
    }

    /// Counters per topic, per subscriber and in total, as JSON (what
    /// GetStatus and the periodic log report).
    pub fn metrics(&self) -> Value {
        let inner = &self.inner;
        let subscribers = inner.subscribers.read().expect("subscribers lock").clone();
        let topics: serde_json::Map<String, Value> = Topic::ALL
            .iter()
            .filter_map(|t| {
                let n = inner.per_topic[*t as usize].load(Relaxed);
                (n > 0).then(|| (t.as_str().to_string(), json!(n)))
            })
            .collect();
        let handlers: Vec<Value> = subscribers
            .iter()
            .filter(|s| !matches!(s.kind, Kind::Waiter(_)))
            .map(|s| {
                let calls = s.stats.handler.calls.load(Relaxed);
                let (delivered, dropped) = s.inbox.totals();
                let busy = s.stats.handler.busy_nanos.load(Relaxed);
                json!({
                    "id": s.id,
                    "name": s.name,
                    "kind": if matches!(s.kind, Kind::Stream) { "stream" } else { "handler" },
                    "topics": s.patterns,
                    "priority": s.priority,
                    "delivered": delivered,
                    "dropped": dropped,
                    "queue_depth": s.depth(),
                    "calls": calls,
                    "errors": s.stats.handler.errors.load(Relaxed),
                    "timeouts": s.stats.handler.timeouts.load(Relaxed),
                    "avg_ms": if calls == 0 { 0.0 } else { busy as f64 / calls as f64 / 1e6 },
                    "max_ms": s.stats.handler.max_nanos.load(Relaxed) as f64 / 1e6,
                    "failures_in_a_row": s.stats.handler.failures_in_a_row.load(Relaxed),
                })
            })
            .collect();
        json!({
            "published": inner.published.load(Relaxed),
            "delivered": inner.delivered.load(Relaxed),
            "dropped": inner.dropped.load(Relaxed),
            "vetoed": inner.vetoed.load(Relaxed),
            "dead_letters": inner.failures.load(Relaxed),
            "subscribers": subscribers.len(),
            "queue_depth": subscribers.iter().map(|s| s.depth()).sum::<u64>(),
            "topics": topics,
            "handlers": handlers,
        })
    }

    fn fail(
        &self,
        sub: &Arc<Subscriber>,
        event: Arc<Event>,
        error: String,
        timed_out: bool,
    ) -> bool {
        let inner = &self.inner;
        let stats = &sub.stats.handler;
        if timed_out {
            stats.timeouts.fetch_add(1, Relaxed);
        }
        stats.errors.fetch_add(1, Relaxed);
        inner.failures.fetch_add(1, Relaxed);
        let in_a_row = stats.failures_in_a_row.fetch_add(1, Relaxed) + 1;
        warn!(subscriber = %sub.name, topic = %event.name(), seq = event.seq, %error, in_a_row, "event handler failed");
        {
            let mut dead = inner.dead_letters.lock().expect("dead letter lock");
            if dead.len() == inner.config.dead_letters {
                dead.pop_front();
            }
            if inner.config.dead_letters > 0 {
                dead.push_back(DeadLetter {
                    event: event.clone(),
                    subscriber: sub.name.clone(),
                    error: error.clone(),
                    at: SystemTime::now(),
                });
            }
        }
        // Reporting a failure of a failure handler would feed itself.
        if event.topic != Topic::BusHandlerFailed {
            self.publish(
                Draft::new(
                    Topic::BusHandlerFailed,
                    "bus",
                    json!({ "subscriber": sub.name, "topic": event.name(), "seq": event.seq, "error": error }),
                )
                .correlation_id(event.correlation_id.to_string()),
            );
        }
        let limit = inner.config.max_failures;
        if limit > 0 && in_a_row >= u64::from(limit) {
            error!(
                subscriber = %sub.name,
                failures = in_a_row,
                last_error = %error,
                "EVENT HANDLER UNSUBSCRIBED: it failed {in_a_row} times in a row; fix it and subscribe it again"
            );
            self.remove(&[sub.id]);
            self.emit(
                Topic::BusHandlerUnsubscribed,
                "bus",
                json!({ "subscriber": sub.name, "failures": in_a_row, "last_error": error }),
            );
            return true;
        }
        false
    }
}

/// Configures a subscription; finish with [`handler`](Self::handler) or
/// [`stream`](Self::stream).
#[must_use = "a subscription starts only with .handler() or .stream()"]
pub struct SubscribeBuilder<'a> {
    bus: &'a Bus,
    topics: TopicSelector,
    patterns: Vec<String>,
    name: String,
    priority: i32,
    filter: Option<Filter>,
    once: bool,
    timeout: Duration,
    capacity: usize,
    overflow: Overflow,
}

impl SubscribeBuilder<'_> {
    /// A name for logs, metrics and dead letters.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Higher priorities are handed each event first.
    pub fn priority(mut self, priority: i32) -> Self {
        self.priority = priority;
        self
    }

    /// Only events this predicate accepts (checked at publish time, so
    /// rejected events cost the subscriber nothing).
    pub fn filter(mut self, filter: impl Fn(&Event) -> bool + Send + Sync + 'static) -> Self {
        self.filter = Some(Box::new(filter));
        self
    }

    /// Only the first matching event; then the subscription ends.
    pub fn once(mut self) -> Self {
        self.once = true;
        self
    }

    /// How long the handler may take for one event.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many events may wait in the inbox, and what a full inbox gives up.
    pub fn queue(mut self, capacity: usize, overflow: Overflow) -> Self {
        self.capacity = capacity;
        self.overflow = overflow;
        self
    }

    fn register(self, kind: Kind) -> u64 {
        let inner = &self.bus.inner;
        let id = inner.next_id.fetch_add(1, Relaxed);
        let subscriber = Arc::new(Subscriber {
            id,
            name: if self.name.is_empty() {
                format!("subscriber-{id}")
            } else {
                self.name
            },
            patterns: self.patterns,
            topics: self.topics,
            priority: self.priority,
            filter: self.filter,
            once: self.once,
            spent: AtomicBool::new(false),
            timeout: self.timeout,
            kind,
            inbox: Inbox::new(self.capacity, self.overflow),
            stats: Stats::default(),
        });
        let mut list = inner.subscribers.write().expect("subscribers lock");
        if inner.closed.load(Relaxed) {
            subscriber.inbox.close();
            return id;
        }
        let mut next: Vec<_> = list.iter().cloned().collect();
        // Stable: equal priorities keep subscription order.
        let at = next.partition_point(|s| s.priority >= subscriber.priority);
        next.insert(at, subscriber);
        *list = Arc::new(next);
        id
    }

    fn find(bus: &Bus, id: u64) -> Option<Arc<Subscriber>> {
        bus.inner
            .subscribers
            .read()
            .expect("subscribers lock")
            .iter()
            .find(|s| s.id == id)
            .cloned()
    }

    /// Runs `handler` for each event on a task of its own.
    pub fn handler<F, Fut, E>(self, handler: F) -> Subscription
    where
        F: Fn(Arc<Event>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: fmt::Display + Send + 'static,
    {
        let bus = self.bus.clone();
        let id = self.register(Kind::Handler);
        let subscription = Subscription {
            bus: Arc::downgrade(&bus.inner),
            id,
        };
        if let Some(sub) = Self::find(&bus, id) {
            tokio::spawn(run_handler(sub, Arc::downgrade(&bus.inner), handler));
        }
        subscription
    }

    /// Returns the events as a stream (for WatchEvents): items are events and
    /// markers of how many were missed. Dropping the stream unsubscribes.
    pub fn stream(self) -> EventStream {
        let bus = self.bus.clone();
        let id = self.register(Kind::Stream);
        EventStream {
            subscriber: Self::find(&bus, id),
            subscription: Subscription {
                bus: Arc::downgrade(&bus.inner),
                id,
            },
        }
    }
}

/// A [`Bus::wait_for`] registration, removed when dropped.
struct Registered {
    bus: Weak<Inner>,
    id: u64,
}

impl Drop for Registered {
    fn drop(&mut self) {
        if let Some(inner) = self.bus.upgrade() {
            Bus { inner }.remove(&[self.id]);
        }
    }
}

/// Events taken from the inbox at once: amortises the lock and the wake-up,
/// small enough that a critical event arriving meanwhile waits little.
const BATCH: usize = 32;

/// The task of one handler subscription: takes events from its inbox, runs
/// the handler on each under the subscription's timeout, and records the
/// outcome. Kept cheap for handlers that finish at once, which most do: no
/// timer is armed unless the first poll leaves the handler pending, and the
/// clock is read once per batch.
async fn run_handler<F, Fut, E>(sub: Arc<Subscriber>, bus: Weak<Inner>, handler: F)
where
    F: Fn(Arc<Event>) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: fmt::Display + Send + 'static,
{
    let stats = &sub.stats.handler;
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        sub.inbox.take_batch(&mut batch, BATCH).await;
        if batch.is_empty() {
            return;
        }
        // Handlers that finish on their first poll share one clock reading
        // per batch (their time is the batch's, split evenly); one that goes
        // pending is timed on its own and gets a timer for its timeout.
        let batch_started = Instant::now();
        let (mut quick, mut slow_nanos) = (0u64, 0u64);
        let mut left = batch.len() as u64;
        let mut stop = false;
        for item in batch.drain(..) {
            left -= 1;
            stats.held.store(left, Relaxed);
            if stop {
                continue;
            }
            let Item::Event(event) = item else { continue };
            let mut call = std::pin::pin!(AssertUnwindSafe(handler(event.clone())).catch_unwind());
            let result = match futures_util::poll!(call.as_mut()) {
                std::task::Poll::Ready(result) => {
                    quick += 1;
                    Ok(result)
                }
                std::task::Poll::Pending => {
                    let began = Instant::now();
                    let result = tokio::time::timeout_at((began + sub.timeout).into(), call).await;
                    let nanos = nanos(began.elapsed());
                    slow_nanos += nanos;
                    stats.calls.fetch_add(1, Relaxed);
                    stats.busy_nanos.fetch_add(nanos, Relaxed);
                    stats.max_nanos.fetch_max(nanos, Relaxed);
                    result
                }
            };
            let outcome = match result {
                Ok(Ok(Ok(()))) => None,
                Ok(Ok(Err(error))) => Some((error.to_string(), false)),
                Ok(Err(panic)) => Some((
                    format!("handler panicked: {}", panic_message(&panic)),
                    false,
                )),
                Err(_) => Some((format!("handler timed out after {:?}", sub.timeout), true)),
            };
            match outcome {
                None if !sub.once => {
                    if stats.failures_in_a_row.load(Relaxed) != 0 {
                        stats.failures_in_a_row.store(0, Relaxed);
                    }
                    continue;
                }
                None => {}
                Some((error, timed_out)) => {
                    let Some(inner) = bus.upgrade() else { return };
                    let unsubscribed = (Bus { inner }).fail(&sub, event, error, timed_out);
                    if !unsubscribed && !sub.once {
                        continue;
                    }
                }
            }
            if sub.once
                && let Some(inner) = bus.upgrade()
            {
                Bus { inner }.remove(&[sub.id]);
            }
            // Unsubscribed (once, or too many failures): the rest of the
            // batch is not handled.
            stop = true;
        }
        if quick > 0 {
            let quick_nanos = nanos(batch_started.elapsed()).saturating_sub(slow_nanos);
            stats.calls.fetch_add(quick, Relaxed);
            stats.busy_nanos.fetch_add(quick_nanos, Relaxed);
            let each = quick_nanos / quick;
            if each > stats.max_nanos.load(Relaxed) {
                stats.max_nanos.fetch_max(each, Relaxed);
            }
        }
        if stop {
            return;
        }
        if bus.strong_count() == 0 {
            return;
        }
    }
}

fn nanos(d: Duration) -> u64 {
    d.as_nanos().min(u128::from(u64::MAX)) as u64
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// A live subscription; [`unsubscribe`](Self::unsubscribe) ends it. Dropping
/// the handle leaves a handler subscribed (subsystems subscribe for life).
#[derive(Debug)]
pub struct Subscription {
    bus: Weak<Inner>,
    id: u64,
}

impl Subscription {
    /// Ends the subscription; its handler finishes the event in hand.
    pub fn unsubscribe(&self) {
        if let Some(inner) = self.bus.upgrade() {
            Bus { inner }.remove(&[self.id]);
        }
    }

    /// Whether the subscription is still registered (a handler that failed
    /// too often is not).
    pub fn is_active(&self) -> bool {
        self.bus.upgrade().is_some_and(|inner| {
            inner
                .subscribers
                .read()
                .expect("subscribers lock")
                .iter()
                .any(|s| s.id == self.id)
        })
    }
}

/// Events of a stream subscription, in inbox order, with missed markers.
pub struct EventStream {
    subscriber: Option<Arc<Subscriber>>,
    subscription: Subscription,
}

impl EventStream {
    /// The next item; `None` when the bus closed.
    pub async fn next(&mut self) -> Option<Item> {
        match &self.subscriber {
            Some(sub) => sub.inbox.take().await,
            None => None,
        }
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        self.subscription.unsubscribe();
    }
}

/// Counts of the bus that tests and benchmarks read without parsing JSON.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Counters {
    /// Events published.
    pub published: u64,
    /// Deliveries into inboxes.
    pub delivered: u64,
    /// Events lost to full inboxes: refused, or evicted by newer ones.
    pub dropped: u64,
    /// Events vetoed by middleware.
    pub vetoed: u64,
    /// Handler failures.
    pub failures: u64,
}

impl Bus {
    /// The main counters.
    pub fn counters(&self) -> Counters {
        let i = &self.inner;
        Counters {
            published: i.published.load(Relaxed),
            delivered: i.delivered.load(Relaxed),
            dropped: i.dropped.load(Relaxed),
            vetoed: i.vetoed.load(Relaxed),
            failures: i.failures.load(Relaxed),
        }
    }
}

#[cfg(test)]
mod tests;
