//! Event bus benchmark: what the bus costs over a bare
//! `tokio::sync::broadcast` channel, measured side by side in one run.
//!
//! For 1, 8 and 64 subscribers it measures, for both the bus and the channel:
//!
//! - **Throughput**: one task publishes `E` events as fast as it can (yielding
//!   to the scheduler every [`YIELD_EVERY`] events) while every subscriber
//!   handles every event (trivial work: check the payload, bump a counter).
//!   `E` is [`Plan::deliveries`] divided by the subscriber count. The clock runs from the first publish until the last
//!   subscriber has handled the last event (the handler that completes the set
//!   takes the time; nothing polls); the figure is events published per second
//!   with all their deliveries done. Nothing may be lost: the bus inboxes hold
//!   `E` events and the channel holds `E` messages, and the run checks that
//!   every subscriber saw every event, in order, and that the bus counted no
//!   drop. A lost event makes the benchmark exit non-zero, because the figure
//!   would be a lie.
//! - **Latency**, publish → handler start: one event at a time, each carrying
//!   the time it was published; every subscriber records when its handler
//!   starts, and the next event goes out only when all of them have seen this
//!   one, so this is latency, not queueing. p50 and p99 are over every
//!   subscriber's view of every sample (after a warm-up).
//!
//! The channel is measured twice. Carrying the same events as the bus (an
//! `Arc<Event>` built as the bus builds it: sequence number, timestamp,
//! correlation id, JSON payload), it is the baseline of the target: the ratio
//! then charges the bus for what it adds to delivering an event (topic
//! matching, one bounded inbox per subscriber, history, metrics, handler
//! supervision with timeouts and panic catching). Carrying a bare `u64`, it
//! is the floor of any channel at all, printed for transparency. The issue's
//! target is the bus at no less than half the channel's throughput.
//!
//! Everything runs on a tokio multi-thread runtime with two workers (the
//! droid's machine has two cores). Each case runs three times, bus and channel
//! interleaved (the order alternating), so that machine noise hits both alike;
//! the table reports the median of the three and the ratios of the medians,
//! and every trial is listed below it. Missing the target does not fail the
//! run: this is a measurement, not a test.
//!
//! Run it with `cargo bench -p cantina-server --bench bus` (a few seconds);
//! the table is Markdown, ready for the README. Run without `--bench` (as
//! `cargo test --benches` does) it only checks, quickly, that nothing is lost.

use std::{
    future::ready,
    process::ExitCode,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use cantina_server::bus::{Bus, BusConfig, CorrelationId, Event, Overflow, Topic};
use tokio::{
    runtime::Runtime,
    sync::{
        Notify,
        broadcast::{self, error::RecvError},
        mpsc,
    },
    task::JoinHandle,
};

/// Subscriber counts measured.
const SUBSCRIBERS: [usize; 3] = [1, 8, 64];
/// Tokio worker threads (the target machine has two cores).
const WORKERS: usize = 2;
/// The throughput publisher yields to the scheduler after this many events,
/// as a well-behaved task publishing in a loop would. Without it, tokio keeps
/// the subscriber task that the publisher woke in its worker's LIFO slot,
/// which no other worker may steal, until the publisher's task ends: the
/// pipeline would run serially, and how much so would vary from run to run.
const YIELD_EVERY: u64 = 256;
/// How long a trial may wait for its deliveries before it declares them lost.
const DEADLINE: Duration = Duration::from_secs(20);
/// The topic published (a bulk one, like playback progress, the busiest).
const TOPIC: Topic = Topic::MusicPlaybackProgress;

/// How much work a run does.
#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Deliveries (events × subscribers) in one throughput trial: `E` is this
    /// divided by the subscriber count, so every case does the same handler
    /// work.
    deliveries: u64,
    /// Trials per case; the table shows the median.
    trials: usize,
    /// Latency samples kept per trial.
    samples: usize,
    /// Latency samples published and discarded before those.
    warmup: usize,
}

impl Plan {
    /// `cargo bench`: the figures.
    const FULL: Plan = Plan {
        deliveries: 512_000,
        trials: 3,
        samples: 5_000,
        warmup: 500,
    };
    /// Run without `--bench` (`cargo test --benches`): a quick check that
    /// nothing is lost, figures not meant for the README.
    const QUICK: Plan = Plan {
        deliveries: 16_000,
        trials: 1,
        samples: 100,
        warmup: 10,
    };

    /// `E`: events in one throughput trial.
    fn events(self, subscribers: usize) -> u64 {
        self.deliveries / subscribers as u64
    }
}

/// What is measured against what.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Channel {
    /// The event bus, handlers subscribed with `Bus::subscribe`.
    Bus,
    /// A bare `tokio::sync::broadcast` channel of the same `Arc<Event>`s.
    Broadcast,
    /// A bare `tokio::sync::broadcast` channel of `u64`s.
    BroadcastU64,
}

impl Channel {
    const ALL: [Channel; 3] = [Channel::Bus, Channel::Broadcast, Channel::BroadcastU64];

    fn name(self) -> &'static str {
        match self {
            Channel::Bus => "bus",
            Channel::Broadcast => "broadcast<Arc<Event>>",
            Channel::BroadcastU64 => "broadcast<u64>",
        }
    }
}

/// The event the bus would build for `payload` as its `seq`-th event.
fn envelope(prefix: &Arc<str>, seq: u64, payload: u64) -> Arc<Event> {
    Arc::new(Event {
        seq,
        topic: TOPIC,
        ext: None,
        timestamp: std::time::SystemTime::now(),
        correlation_id: CorrelationId::Own(prefix.clone(), seq),
        source: "bench",
        payload: serde_json::to_value(payload).expect("a number is JSON"),
        metadata: std::collections::BTreeMap::new(),
    })
}

/// Counts subscribers down to zero; the one that gets there takes the time and
/// wakes the waiting task.
struct Latch {
    remaining: AtomicUsize,
    finished: Mutex<Option<Instant>>,
    notify: Notify,
}

impl Latch {
    fn new(count: usize) -> Self {
        Self {
            remaining: AtomicUsize::new(count),
            finished: Mutex::new(None),
            notify: Notify::new(),
        }
    }

    /// Expects `count` arrivals (before the event that they answer is out).
    fn arm(&self, count: usize) {
        self.remaining.store(count, Ordering::Release);
    }

    fn arrive(&self) {
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            let now = Instant::now();
            *self.finished.lock().expect("latch lock") = Some(now);
            self.notify.notify_one();
        }
    }

    /// When the last subscriber arrived, or `None` after [`DEADLINE`].
    async fn wait(&self) -> Option<Instant> {
        tokio::time::timeout(DEADLINE, self.notify.notified())
            .await
            .ok()?;
        *self.finished.lock().expect("latch lock")
    }
}

/// What the subscribers of a throughput trial saw.
struct Tally {
    /// Events handled, per subscriber.
    counts: Vec<AtomicU64>,
    /// Events that did not carry the payload expected next (lost, duplicated
    /// or reordered ones).
    out_of_sequence: AtomicU64,
    /// Messages the channel's receivers were told they missed.
    lagged: AtomicU64,
    /// Events each subscriber must see.
    events: u64,
    latch: Latch,
}

impl Tally {
    fn new(subscribers: usize, events: u64) -> Self {
        Self {
            counts: (0..subscribers).map(|_| AtomicU64::new(0)).collect(),
            out_of_sequence: AtomicU64::new(0),
            lagged: AtomicU64::new(0),
            events,
            latch: Latch::new(subscribers),
        }
    }

    /// The handler's work: subscriber `sub` got the event carrying `payload`.
    fn see(&self, sub: usize, payload: Option<u64>) {
        let seen = self.counts[sub].fetch_add(1, Ordering::Relaxed);
        if payload != Some(seen) {
            self.out_of_sequence.fetch_add(1, Ordering::Relaxed);
        }
        if seen + 1 == self.events {
            self.latch.arrive();
        }
    }

    /// Whatever went wrong, if anything.
    fn check(&self) -> Result<(), String> {
        let short: Vec<String> = self
            .counts
            .iter()
            .enumerate()
            .map(|(i, c)| (i, c.load(Ordering::Relaxed)))
            .filter(|(_, c)| *c != self.events)
            .map(|(i, c)| format!("subscriber {i} saw {c}"))
            .collect();
        let out_of_sequence = self.out_of_sequence.load(Ordering::Relaxed);
        let lagged = self.lagged.load(Ordering::Relaxed);
        if short.is_empty() && out_of_sequence == 0 && lagged == 0 {
            return Ok(());
        }
        Err(format!(
            "{} events expected by each subscriber; {}; {out_of_sequence} out of sequence; {lagged} lagged",
            self.events,
            if short.is_empty() {
                "all counts right".to_string()
            } else {
                short.join(", ")
            },
        ))
    }
}

/// The latencies seen by the subscribers of a latency trial.
struct Probe {
    /// Publish times are nanoseconds since this instant.
    base: Instant,
    subscribers: usize,
    /// Samples published first and not kept.
    warmup: usize,
    /// The sample in flight (one at a time).
    sample: AtomicUsize,
    /// Samples published so far.
    published: AtomicUsize,
    /// Latency in nanoseconds, by sample then subscriber.
    nanos: Vec<AtomicU64>,
    latch: Latch,
}

impl Probe {
    fn new(subscribers: usize, plan: Plan) -> Self {
        let slots = subscribers * (plan.warmup + plan.samples);
        Self {
            base: Instant::now(),
            subscribers,
            warmup: plan.warmup,
            sample: AtomicUsize::new(0),
            published: AtomicUsize::new(0),
            nanos: (0..slots).map(|_| AtomicU64::new(u64::MAX)).collect(),
            latch: Latch::new(subscribers),
        }
    }

    /// Now, as the payload of an event about to be published.
    fn stamp(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// The handler's work: subscriber `sub` started on the event stamped
    /// `sent` at `now`.
    fn record(&self, sub: usize, now: Instant, sent: Option<u64>) {
        let at = now.duration_since(self.base).as_nanos() as u64;
        let latency = sent.map_or(u64::MAX, |sent| at.saturating_sub(sent));
        let sample = self.sample.load(Ordering::Acquire);
        self.nanos[sample * self.subscribers + sub].store(latency, Ordering::Relaxed);
        self.latch.arrive();
    }

    /// Publishes the samples one at a time with `publish`, each after every
    /// subscriber has seen the one before.
    async fn run(&self, mut publish: impl FnMut(u64)) -> Result<(), String> {
        for sample in 0..self.nanos.len() / self.subscribers {
            self.sample.store(sample, Ordering::Release);
            self.latch.arm(self.subscribers);
            publish(self.stamp());
            self.published.fetch_add(1, Ordering::Relaxed);
            if self.latch.wait().await.is_none() {
                return Err(format!(
                    "sample {sample} did not reach every subscriber within {DEADLINE:?}"
                ));
            }
        }
        Ok(())
    }

    /// Samples published so far.
    fn published(&self) -> usize {
        self.published.load(Ordering::Relaxed)
    }

    /// The kept latencies, sorted; an error if any subscriber missed a sample.
    fn sorted(&self) -> Result<Vec<u64>, String> {
        let mut kept: Vec<u64> = self.nanos[self.warmup * self.subscribers..]
            .iter()
            .map(|n| n.load(Ordering::Relaxed))
            .collect();
        let missing = kept.iter().filter(|n| **n == u64::MAX).count();
        if missing > 0 {
            return Err(format!("{missing} deliveries of latency samples missing"));
        }
        kept.sort_unstable();
        Ok(kept)
    }
}

/// Subscribers on a fresh bus, configured as the server's (history and dead
/// letters included).
struct BusSide {
    bus: Bus,
    /// Ends when every handler task has ended (each holds a sender).
    gone: mpsc::Receiver<()>,
}

impl BusSide {
    /// `subscribers` handlers with inboxes of `capacity` events, each calling
    /// `work(index, payload)` first thing.
    fn new(
        subscribers: usize,
        capacity: usize,
        work: impl Fn(usize, Option<u64>) + Clone + Send + Sync + 'static,
    ) -> Self {
        let bus = Bus::new(BusConfig::default());
        let (alive, gone) = mpsc::channel::<()>(1);
        for sub in 0..subscribers {
            let work = work.clone();
            let alive = alive.clone();
            bus.subscribe(TOPIC)
                .name(format!("bench-{sub}"))
                .queue(capacity, Overflow::DropNewest)
                .handler(move |event: Arc<Event>| {
                    work(sub, event.payload.as_u64());
                    // Only held, so that `gone` learns when the task ends.
                    let _ = &alive;
                    ready(Ok::<(), String>(()))
                });
        }
        Self { bus, gone }
    }

    /// Closes the bus, waits for its handler tasks to end, and checks that it
    /// published `events` events and delivered each to every subscriber,
    /// dropping none.
    async fn finish(mut self, events: u64, subscribers: usize) -> Result<(), String> {
        let counters = self.bus.counters();
        self.bus.close();
        tokio::time::timeout(DEADLINE, self.gone.recv())
            .await
            .map_err(|_| "the bus handler tasks did not end after close".to_string())?;
        let deliveries = events * subscribers as u64;
        if counters.published != events || counters.delivered != deliveries || counters.dropped != 0
        {
            return Err(format!(
                "the bus counted {} published of {events}, {} delivered of {deliveries}, {} dropped",
                counters.published, counters.delivered, counters.dropped
            ));
        }
        Ok(())
    }
}

/// Receiver tasks on a fresh broadcast channel of `M`.
struct BroadcastSide<M> {
    tx: broadcast::Sender<M>,
    receivers: Vec<JoinHandle<()>>,
    /// Messages the receivers were told they missed.
    lagged: Arc<AtomicU64>,
}

impl<M: Clone + Send + 'static> BroadcastSide<M> {
    /// A channel of `capacity` messages and `subscribers` receiver tasks, each
    /// calling `work(index, payload_of(message))` first thing.
    fn new(
        subscribers: usize,
        capacity: usize,
        work: impl Fn(usize, Option<u64>) + Clone + Send + 'static,
        payload_of: fn(&M) -> Option<u64>,
    ) -> Self {
        let (tx, _) = broadcast::channel::<M>(capacity);
        let lagged = Arc::new(AtomicU64::new(0));
        let receivers = (0..subscribers)
            .map(|sub| {
                let mut rx = tx.subscribe();
                let work = work.clone();
                let lagged = lagged.clone();
                tokio::spawn(async move {
                    loop {
                        match rx.recv().await {
                            Ok(message) => work(sub, payload_of(&message)),
                            Err(RecvError::Lagged(n)) => {
                                lagged.fetch_add(n, Ordering::Relaxed);
                            }
                            Err(RecvError::Closed) => break,
                        }
                    }
                })
            })
            .collect();
        Self {
            tx,
            receivers,
            lagged,
        }
    }

    /// Closes the channel, waits for the receiver tasks to end, and checks
    /// that none lagged.
    async fn finish(self) -> Result<(), String> {
        drop(self.tx);
        for task in self.receivers {
            tokio::time::timeout(DEADLINE, task)
                .await
                .map_err(|_| "a receiver task did not end after close".to_string())?
                .map_err(|e| format!("a receiver task failed: {e}"))?;
        }
        match self.lagged.load(Ordering::Relaxed) {
            0 => Ok(()),
            lagged => Err(format!("the receivers lagged by {lagged} messages")),
        }
    }
}

/// Wall time for `events` events to reach every one of `subscribers`
/// subscribers, from the first publish to the last delivery.
async fn throughput(channel: Channel, subscribers: usize, events: u64) -> Result<Duration, String> {
    let tally = Arc::new(Tally::new(subscribers, events));
    let work = {
        let tally = tally.clone();
        move |sub, payload| tally.see(sub, payload)
    };
    let what = format!("{} throughput, {subscribers} subscribers", channel.name());
    let in_context = |e: String| format!("{what}: {e}");
    let (start, finished) = match channel {
        Channel::Bus => {
            let side = BusSide::new(subscribers, events as usize, work);
            let bus = side.bus.clone();
            let start = tokio::spawn(async move {
                let start = Instant::now();
                for i in 0..events {
                    bus.emit(TOPIC, "bench", i);
                    if i % YIELD_EVERY == YIELD_EVERY - 1 {
                        tokio::task::yield_now().await;
                    }
                }
                start
            })
            .await
            .map_err(|e| in_context(format!("publisher: {e}")))?;
            // A drop means the last delivery will never come: no need to wait.
            let finished = match side.bus.counters().dropped {
                0 => tally.latch.wait().await,
                _ => None,
            };
            side.finish(events, subscribers).await.map_err(in_context)?;
            (start, finished)
        }
        Channel::Broadcast => {
            let prefix: Arc<str> = Arc::from("bench");
            broadcast_throughput(
                BroadcastSide::new(subscribers, events as usize, work, |e: &Arc<Event>| {
                    e.payload.as_u64()
                }),
                events,
                move |i| envelope(&prefix, i + 1, i),
                &tally,
            )
            .await
            .map_err(in_context)?
        }
        Channel::BroadcastU64 => broadcast_throughput(
            BroadcastSide::new(subscribers, events as usize, work, |i: &u64| Some(*i)),
            events,
            |i| i,
            &tally,
        )
        .await
        .map_err(in_context)?,
    };
    tally.check().map_err(in_context)?;
    let finished =
        finished.ok_or_else(|| in_context(format!("deliveries missing after {DEADLINE:?}")))?;
    Ok(finished - start)
}

/// Publishes `events` messages made by `make` on a broadcast side; returns
/// when publishing started and when the last delivery happened.
async fn broadcast_throughput<M: Clone + Send + 'static>(
    side: BroadcastSide<M>,
    events: u64,
    make: impl Fn(u64) -> M + Send + 'static,
    tally: &Tally,
) -> Result<(Instant, Option<Instant>), String> {
    let tx = side.tx.clone();
    let start = tokio::spawn(async move {
        let start = Instant::now();
        for i in 0..events {
            let _ = tx.send(make(i));
            if i % YIELD_EVERY == YIELD_EVERY - 1 {
                tokio::task::yield_now().await;
            }
        }
        start
    })
    .await
    .map_err(|e| format!("publisher: {e}"))?;
    let finished = tally.latch.wait().await;
    side.finish().await?;
    Ok((start, finished))
}

/// Publishes through `probe` on a broadcast side, one message at a time.
async fn broadcast_latency<M: Clone + Send + 'static>(
    side: BroadcastSide<M>,
    probe: Arc<Probe>,
    make: impl Fn(u64) -> M + Send + Sync + 'static,
) -> Result<Result<(), String>, String> {
    let tx = side.tx.clone();
    let ran = tokio::spawn(async move {
        probe
            .run(|stamp| {
                let _ = tx.send(make(stamp));
            })
            .await
    })
    .await
    .map_err(|e| format!("publisher: {e}"));
    side.finish().await?;
    ran
}

/// Publish → handler-start latencies in nanoseconds, sorted.
async fn latency(channel: Channel, subscribers: usize, plan: Plan) -> Result<Vec<u64>, String> {
    let probe = Arc::new(Probe::new(subscribers, plan));
    let work = {
        let probe = probe.clone();
        move |sub, sent| probe.record(sub, Instant::now(), sent)
    };
    let what = format!("{} latency, {subscribers} subscribers", channel.name());
    let in_context = |e: String| format!("{what}: {e}");
    let ran = match channel {
        Channel::Bus => {
            let side = BusSide::new(subscribers, BusConfig::default().queue_capacity, work);
            let bus = side.bus.clone();
            let publisher = probe.clone();
            let ran = tokio::spawn(async move {
                publisher
                    .run(|stamp| {
                        bus.emit(TOPIC, "bench", stamp);
                    })
                    .await
            })
            .await
            .map_err(|e| in_context(format!("publisher: {e}")))?;
            side.finish(probe.published() as u64, subscribers)
                .await
                .map_err(in_context)?;
            ran
        }
        Channel::Broadcast => {
            let prefix: Arc<str> = Arc::from("bench");
            let seq = AtomicU64::new(0);
            broadcast_latency(
                BroadcastSide::new(subscribers, 16, work, |e: &Arc<Event>| e.payload.as_u64()),
                probe.clone(),
                move |stamp| envelope(&prefix, seq.fetch_add(1, Ordering::Relaxed) + 1, stamp),
            )
            .await
            .map_err(in_context)?
        }
        Channel::BroadcastU64 => broadcast_latency(
            BroadcastSide::new(subscribers, 16, work, |i: &u64| Some(*i)),
            probe.clone(),
            |stamp| stamp,
        )
        .await
        .map_err(in_context)?,
    };
    ran.map_err(in_context)?;
    probe.sorted().map_err(in_context)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = (p * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Events per second, with thousands separators.
fn rate(per_second: f64) -> String {
    let digits = format!("{per_second:.0}");
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn micros(nanos: f64) -> String {
    format!("{:.1} µs", nanos / 1e3)
}

/// The median figures of one case.
struct Figures {
    events_per_second: f64,
    p50: f64,
    p99: f64,
}

/// One side's trials of one case.
#[derive(Default)]
struct Trials {
    events_per_second: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
}

impl Trials {
    fn figures(&self) -> Figures {
        Figures {
            events_per_second: median(&self.events_per_second),
            p50: median(&self.p50),
            p99: median(&self.p99),
        }
    }

    fn spread(&self) -> String {
        let list = |v: &[f64], f: fn(f64) -> String| {
            v.iter().map(|x| f(*x)).collect::<Vec<_>>().join(", ")
        };
        format!(
            "events/s [{}]; p50 [{}]; p99 [{}]",
            list(&self.events_per_second, rate),
            list(&self.p50, micros),
            list(&self.p99, micros)
        )
    }
}

/// Runs every trial of the case with `subscribers` subscribers; the trials
/// of each channel, in the order of [`Channel::ALL`].
fn case(runtime: &Runtime, subscribers: usize, plan: Plan) -> Result<[Trials; 3], String> {
    let events = plan.events(subscribers);
    let mut trials: [Trials; 3] = Default::default();
    for trial in 0..plan.trials {
        // Rotate who goes first, so drift in the machine hits every side.
        let mut order = Channel::ALL;
        order.rotate_left(trial % Channel::ALL.len());
        for channel in order {
            let took = runtime.block_on(throughput(channel, subscribers, events))?;
            trials[channel as usize]
                .events_per_second
                .push(events as f64 / took.as_secs_f64());
        }
        for channel in order {
            let sorted = runtime.block_on(latency(channel, subscribers, plan))?;
            let side = &mut trials[channel as usize];
            side.p50.push(percentile(&sorted, 0.50) as f64);
            side.p99.push(percentile(&sorted, 0.99) as f64);
        }
    }
    Ok(trials)
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and
    // gets a quick check instead of minutes of a debug build.
    let full = std::env::args().any(|arg| arg == "--bench");
    let plan = if full { Plan::FULL } else { Plan::QUICK };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let began = Instant::now();

    println!("# Event bus vs. bare tokio::sync::broadcast");
    println!();
    if !full {
        println!(
            "QUICK CHECK (no --bench argument): few events, one trial; run `cargo bench` for figures."
        );
        println!();
    }
    println!(
        "Machine: {cores} cores (available_parallelism); tokio multi-thread runtime, {WORKERS} workers; {} build.",
        if cfg!(debug_assertions) {
            "debug (figures meaningless)"
        } else {
            "release"
        }
    );
    println!(
        "Throughput: E = {} events per trial ({} deliveries ÷ subscribers), each handled by every subscriber.",
        SUBSCRIBERS
            .iter()
            .map(|n| format!("{} for {n}", plan.events(*n)))
            .collect::<Vec<_>>()
            .join(", "),
        plan.deliveries,
    );
    println!(
        "Latency: publish → handler start, {} samples after {} of warm-up, one in flight at a time; p50/p99 over every subscriber's view of every sample.",
        plan.samples, plan.warmup
    );
    println!(
        "Each figure is the median of {} (bus and broadcast interleaved); the ratios are of the medians.",
        match plan.trials {
            1 => "1 trial".to_string(),
            n => format!("{n} trials"),
        }
    );
    println!();

    let mut rows = Vec::new();
    let mut details = Vec::new();
    let mut met = true;
    for subscribers in SUBSCRIBERS {
        let trials = match case(&runtime, subscribers, plan) {
            Ok(trials) => trials,
            Err(problem) => {
                eprintln!("EVENTS LOST, so the figures would be wrong: {problem}");
                return ExitCode::FAILURE;
            }
        };
        let [b, c, u] = [0, 1, 2].map(|i| trials[i].figures());
        let ratio = b.events_per_second / c.events_per_second;
        met &= ratio >= 0.5;
        rows.push(format!(
            "| {subscribers} | {} | {} | **{ratio:.2}×** {} | {} / {} | {} / {} | {:.1}× / {:.1}× | {} | {:.2}× |",
            rate(b.events_per_second),
            rate(c.events_per_second),
            if ratio >= 0.5 { "✓" } else { "✗" },
            micros(b.p50),
            micros(b.p99),
            micros(c.p50),
            micros(c.p99),
            b.p50 / c.p50,
            b.p99 / c.p99,
            rate(u.events_per_second),
            b.events_per_second / u.events_per_second,
        ));
        for channel in Channel::ALL {
            details.push(format!(
                "- {subscribers} × {}: {}",
                channel.name(),
                trials[channel as usize].spread()
            ));
        }
    }

    println!(
        "| subscribers | bus events/s | broadcast events/s (same events) | ratio (target ≥ 0.5×) | bus p50 / p99 latency | broadcast p50 / p99 latency | latency ratio (bus ÷ broadcast, p50 / p99) | broadcast<u64> events/s | bus ÷ broadcast<u64> |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for row in &rows {
        println!("{row}");
    }
    println!();
    if met {
        println!(
            "Throughput target met: the bus reached at least 0.5× the bare channel at every subscriber count."
        );
    } else {
        println!(
            "Throughput target MISSED: the bus fell below 0.5× the bare channel where marked ✗."
        );
    }
    println!();
    println!("Every trial (no event was lost in any):");
    for line in &details {
        println!("{line}");
    }
    println!();
    println!("Took {:.1} s.", began.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}
