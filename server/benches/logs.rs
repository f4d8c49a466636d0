//! Log service benchmark: the four figures the log issue asks for, each
//! printed beside its target, measured in one run.
//!
//! 1. **Capture cost on the logging thread.** The same `tracing::info!` event
//!    (an ~80-character formatted message and three fields, see
//!    [`typical_event`]) is emitted `N` times under two subscribers, each
//!    installed with `tracing::dispatcher::with_default` on the measuring
//!    thread: `registry + CaptureLayer` with one sink attached (a thread drains
//!    it and drops the records), and `registry + fmt::layer()` writing to
//!    `std::io::sink`. The figure is nanoseconds per event on the logging
//!    thread; the ratio is capture ÷ fmt. The sink's queue holds every event
//!    of a trial and the drain empties it before the next side runs, so no
//!    record can be dropped: a drop, or a record missing from the drain, makes
//!    the run fail, because the figure would then not be the capture cost.
//!    The drain frees the records on its own thread, as the service does when
//!    they leave the ring: the allocator's cross-thread frees are part of the
//!    cost. The logging thread's CPU time per event is printed beside the wall
//!    time (the difference is time spent off the CPU, waiting).
//! 2. **32 gRPC followers at 20,000 events/s offered.** A real server
//!    (`cantina_server::start`, port 0, session file in a temporary folder)
//!    with [`FOLLOWER_BUFFER`] as its follower buffer; 32 `TailLogs { follow,
//!    contains: MARKER }` streams, each on a connection of its own, read as
//!    fast as they can; a task on the server's runtime emits 20 events per
//!    1 ms tick for 3 s through the process's tracing subscriber (the capture
//!    layer the server binary installs). Per follower: events delivered per
//!    second (received ÷ time from the first event produced to the last one
//!    received), the gap markers it got (`skipped > 0`) and whether it saw
//!    every produced event, in order (by the counter in the message; the
//!    entries' `seq` must rise strictly). Target: zero gaps. The followers run
//!    in this process, on the same two cores as the server, so their decoding
//!    competes with the server's encoding: a remote follower costs the droid
//!    less. Events the capture layer dropped because the service's queue was
//!    full (it never blocks) never get a seq, so no gap marker can tell of
//!    them: they are counted from `capture::dropped()` and printed.
//! 3. **The producer's rate, one stalled follower beside none.** A `Logs`
//!    service started by a `Supervisor`, with the server's default settings;
//!    a thread emits `N` events through tracing and the capture layer (the
//!    only way into the service: its `emit` is private) as fast as it can.
//!    Stalled: a `Logs::follow()` receiver held and never polled, as a TailLogs
//!    follower whose client stopped reading holds one. The figure is the
//!    producer's rate at the call site (the target applies to it); the
//!    service's rate (entries numbered per second, until a sentinel event
//!    emitted afterwards reaches the ring) and the records the capture layer
//!    dropped because the service's queue was full are printed beside it,
//!    with the producer thread's CPU time per event (which, unlike the rate,
//!    does not depend on how the two cores were shared).
//! 4. **The ring's memory at capacity.** A counting global allocator (on only
//!    for this measurement, run first, with nothing else running) records the
//!    bytes requested and the malloc footprint (`malloc_usable_size` + the
//!    8-byte chunk header, on glibc) of what is allocated minus what is freed.
//!    The service is started, 10,000 + [`RING_EXTRA`] typical events go through
//!    capture (in chunks, each waited for, so none is dropped) so the ring holds
//!    10,000 of them and nothing else, and the service is stopped: what is still
//!    allocated beyond the empty service is the ring's entries; the backing
//!    array (`VecDeque::with_capacity(ring_size)`, allocated by `Logs::new`) is
//!    added. A bottom-up sum over the ring's entries cross-checks it, and the
//!    whole service while running (dedup windows, queues, file buffer) is
//!    printed too. Target: under 5 MB (5,000,000 bytes).
//!
//! Measurements 2 and 3 also run as *diagnostics* with the dedup window set to
//! zero: with the default window of 30 s and distinct messages, every record
//! makes `Dedup::take` walk all its open windows (up to 10,000), which caps
//! the service's rate; the diagnostic rows show what the rest does without
//! it. They carry no verdict.
//!
//! Measurements 1 and 3 run several trials, the two sides interleaved and the
//! order alternating, and report medians (every trial is listed); measurement
//! 2 runs twice per configuration, interleaved, each trial shown. Missing a
//! target does not fail the run: this is a measurement, not a test. The run
//! fails only when something is wrong: a record lost by the measurement
//! itself, a follower seeing events out of order or missing events that no
//! gap marker or capture drop accounts for, a ring that did not fill.
//!
//! Run it with `cargo bench -p cantina-server --bench logs` (about a minute on
//! two cores); the table is Markdown. Run without `--bench` (as `cargo test
//! --benches` does) it only checks, quickly and with small numbers, that the
//! machinery works and nothing is lost.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    process::ExitCode,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use cantina::v1::{TailLogsRequest, log_service_client::LogServiceClient};
use cantina_server::{
    bus::Bus,
    config::{Config, LogSettings},
    lifecycle::Supervisor,
    logs::{CaptureLayer, Entry, Logs, Record, capture, dedup::Dedup},
};
use tokio::{runtime::Runtime, sync::broadcast::error::TryRecvError};
use tracing::{Dispatch, dispatcher};
use tracing_subscriber::layer::SubscriberExt;

// ---------------------------------------------------------------------------
// The counting allocator (measurement 4).

/// Counts what is allocated while [`COUNTING`] is on; otherwise only forwards
/// to the system allocator (one relaxed load), so that the other measurements
/// pay nothing for it.
struct Counting;

/// Whether allocations are counted now.
static COUNTING: AtomicBool = AtomicBool::new(false);
/// Bytes requested, allocated minus freed, while counting.
static REQUESTED: AtomicI64 = AtomicI64::new(0);
/// Bytes malloc really holds for them (usable size + chunk header).
static FOOTPRINT: AtomicI64 = AtomicI64::new(0);
/// Blocks allocated minus freed, while counting.
static BLOCKS: AtomicI64 = AtomicI64::new(0);

/// What malloc holds for the block at `ptr` of `size` requested bytes.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn footprint(ptr: *mut u8, _size: usize) -> i64 {
    // glibc: an in-use chunk is its usable size plus one 8-byte size word.
    (unsafe { libc::malloc_usable_size(ptr.cast()) } + 8) as i64
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn footprint(_ptr: *mut u8, size: usize) -> i64 {
    size as i64
}

const FOOTPRINT_KNOWN: bool = cfg!(all(target_os = "linux", target_env = "gnu"));

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() && COUNTING.load(Ordering::Relaxed) {
            REQUESTED.fetch_add(layout.size() as i64, Ordering::Relaxed);
            FOOTPRINT.fetch_add(footprint(ptr, layout.size()), Ordering::Relaxed);
            BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() && COUNTING.load(Ordering::Relaxed) {
            REQUESTED.fetch_add(layout.size() as i64, Ordering::Relaxed);
            FOOTPRINT.fetch_add(footprint(ptr, layout.size()), Ordering::Relaxed);
            BLOCKS.fetch_add(1, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            REQUESTED.fetch_sub(layout.size() as i64, Ordering::Relaxed);
            FOOTPRINT.fetch_sub(footprint(ptr, layout.size()), Ordering::Relaxed);
            BLOCKS.fetch_sub(1, Ordering::Relaxed);
        }
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let counting = COUNTING.load(Ordering::Relaxed);
        let before = if counting {
            footprint(ptr, layout.size())
        } else {
            0
        };
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() && counting {
            REQUESTED.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
            FOOTPRINT.fetch_add(footprint(new, new_size) - before, Ordering::Relaxed);
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// The allocator's counters at one moment.
#[derive(Clone, Copy, Debug)]
struct Heap {
    requested: i64,
    footprint: i64,
    blocks: i64,
}

impl Heap {
    fn now() -> Self {
        Self {
            requested: REQUESTED.load(Ordering::SeqCst),
            footprint: FOOTPRINT.load(Ordering::SeqCst),
            blocks: BLOCKS.load(Ordering::SeqCst),
        }
    }

    fn minus(self, other: Heap) -> Heap {
        Heap {
            requested: self.requested - other.requested,
            footprint: self.footprint - other.footprint,
            blocks: self.blocks - other.blocks,
        }
    }
}

// ---------------------------------------------------------------------------
// The events.

/// In the message of every measured event; followers filter on it.
const MARKER: &str = "(bench-logs)";
/// In the message of sentinel events, which tell when the service caught up.
const SENTINEL: &str = "[bench-sentinel]";

/// A typical log line: a formatted message of about 80 characters, unique to
/// `i` (so dedup folds nothing and followers can check that none is missing),
/// and three fields: a string, a number and a `Display` value.
#[inline(never)]
fn typical_event(i: u64) {
    tracing::info!(
        droid = "R2-D2",
        step = i,
        mode = %"patrol",
        "sweep #{i}: dome turned to heading {}°, servo 3 settled in 12 ms (bench-logs)",
        i % 360
    );
}

/// The counter of a message of [`typical_event`].
fn sweep_number(message: &str) -> Option<u64> {
    message
        .strip_prefix("sweep #")?
        .split(':')
        .next()?
        .parse()
        .ok()
}

/// The end of measurement 2's stream (carries [`MARKER`], so followers get it).
fn end_event(k: u64) {
    tracing::info!("sweep end {k} (bench-logs)");
}

/// A sentinel: once it is in the ring, everything captured before it is too.
fn sentinel_event(k: u64) {
    tracing::info!("sentinel {k} [bench-sentinel]");
}

/// This thread's CPU time: with the wall time, it tells running from waiting
/// (for a lock, or for a core).
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a pointer to a timespec we own.
    let ok = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0;
    if ok {
        Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
    } else {
        Duration::ZERO
    }
}

/// The session id the benchmark's log services carry.
const SESSION: &str = "20250101-000000-bench";

/// How long anything may take before the run declares it lost.
const DEADLINE: Duration = Duration::from_secs(30);

/// Emits sentinels (one per millisecond) until one is in the ring; returns
/// when it was seen there.
async fn caught_up(logs: &Logs) -> Result<Instant, String> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let first = NEXT.load(Ordering::Relaxed);
    let began = Instant::now();
    loop {
        sentinel_event(NEXT.fetch_add(1, Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(1)).await;
        let seen = logs.snapshot().iter().rev().take(64).any(|e| {
            e.record.message.contains(SENTINEL)
                && e.record
                    .message
                    .strip_prefix("sentinel ")
                    .and_then(|m| m.split(' ').next())
                    .and_then(|k| k.parse::<u64>().ok())
                    .is_some_and(|k| k >= first)
        });
        if seen {
            return Ok(Instant::now());
        }
        if began.elapsed() > DEADLINE {
            return Err(format!(
                "the log service did not catch up within {DEADLINE:?}"
            ));
        }
    }
}

/// The service's settings as the server's defaults have them; with `dedup`
/// false, the dedup window is zero (folds nothing), for the diagnostic runs.
fn settings(dedup: bool) -> LogSettings {
    let mut settings = Config::default().logs;
    if !dedup {
        settings.dedup_window = Duration::ZERO;
    }
    settings
}

// ---------------------------------------------------------------------------
// How much work a run does.

#[derive(Clone, Copy, Debug)]
struct Plan {
    /// Events per side per trial of measurement 1.
    capture_events: u64,
    capture_trials: usize,
    /// Measurement 2.
    followers: usize,
    per_tick: u64,
    ticks: u64,
    follow_trials: usize,
    /// Events per trial of measurement 3.
    producer_events: u64,
    producer_trials: usize,
}

impl Plan {
    /// `cargo bench`: the figures.
    const FULL: Plan = Plan {
        capture_events: 150_000,
        capture_trials: 7,
        followers: 32,
        per_tick: 20,
        ticks: 3_000,
        follow_trials: 2,
        producer_events: 200_000,
        producer_trials: 5,
    };
    /// Without `--bench`: a quick check that nothing is lost.
    const QUICK: Plan = Plan {
        capture_events: 2_000,
        capture_trials: 1,
        followers: 4,
        per_tick: 2,
        ticks: 300,
        follow_trials: 1,
        producer_events: 5_000,
        producer_trials: 1,
    };
}

/// The follower buffer of measurement 2: one second of the offered rate.
const FOLLOWER_BUFFER: usize = 20_000;
/// Events beyond the ring's size emitted in measurement 4, so that the
/// service's own entries (session note, "started") are pushed out of it.
const RING_EXTRA: u64 = 100;
/// Tokio worker threads (the droid has two cores).
const WORKERS: usize = 2;

// ---------------------------------------------------------------------------
// Measurement 1: capture vs fmt on the logging thread.

struct CaptureFigures {
    capture_ns: Vec<f64>,
    fmt_ns: Vec<f64>,
    /// The logging thread's CPU time per event, by trial.
    capture_cpu_ns: Vec<f64>,
    fmt_cpu_ns: Vec<f64>,
    captured: u64,
    drops: u64,
    message_len: usize,
}

fn capture_vs_fmt(plan: Plan) -> Result<CaptureFigures, String> {
    let n = plan.capture_events;
    let capture_side = Dispatch::new(tracing_subscriber::registry().with(CaptureLayer));
    let fmt_side = Dispatch::new(
        tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::sink)),
    );
    // Prunes the sinks of log services stopped earlier in this run.
    dispatcher::with_default(&capture_side, || {
        tracing::info!("bench: pruning closed sinks")
    });
    let dropped_before = capture::dropped();
    // Room for a whole trial: the drain cannot fall far enough behind to drop.
    let mut records = capture::attach(n as usize + 1_024);
    let received = Arc::new(AtomicU64::new(0));
    let message_len = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let drain = std::thread::Builder::new()
        .name("bench-drain".into())
        .spawn({
            let (received, stop, message_len) =
                (received.clone(), stop.clone(), message_len.clone());
            move || {
                while let Some(record) = records.blocking_recv() {
                    if message_len.load(Ordering::Relaxed) == 0 && record.message.contains(MARKER) {
                        message_len.store(record.message.chars().count(), Ordering::Relaxed);
                    }
                    drop(record);
                    received.fetch_add(1, Ordering::Release);
                    if stop.load(Ordering::Acquire) {
                        break;
                    }
                }
                // `records` is dropped here: the sink is closed and the next
                // captured event removes it.
            }
        })
        .map_err(|e| format!("drain thread: {e}"))?;

    // Wall time and this thread's CPU time.
    let run = |dispatch: &Dispatch, count: u64| -> (Duration, Duration) {
        dispatcher::with_default(dispatch, || {
            let (began, cpu) = (Instant::now(), thread_cpu());
            for i in 0..count {
                typical_event(i);
            }
            (began.elapsed(), thread_cpu().saturating_sub(cpu))
        })
    };
    let mut sent = 0u64;
    let drained = |sent: u64| -> Result<(), String> {
        let began = Instant::now();
        while received.load(Ordering::Acquire) < sent {
            if began.elapsed() > DEADLINE {
                return Err(format!(
                    "capture: the drain got {} of {sent} records",
                    received.load(Ordering::Acquire)
                ));
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        Ok(())
    };

    // Warm-up: caches, allocator arenas, callsite interest.
    let warm = (n / 10).max(100);
    run(&capture_side, warm);
    sent += warm;
    drained(sent)?;
    run(&fmt_side, warm);

    let (mut capture_ns, mut fmt_ns) = (Vec::new(), Vec::new());
    let (mut capture_cpu_ns, mut fmt_cpu_ns) = (Vec::new(), Vec::new());
    let per_event = |d: Duration| d.as_nanos() as f64 / n as f64;
    for trial in 0..plan.capture_trials {
        let capture_first = trial % 2 == 0;
        for side in [capture_first, !capture_first] {
            if side {
                let (took, cpu) = run(&capture_side, n);
                sent += n;
                // The drain empties the queue before the other side runs, so
                // that its work does not overlap the fmt figure.
                drained(sent)?;
                capture_ns.push(per_event(took));
                capture_cpu_ns.push(per_event(cpu));
            } else {
                let (took, cpu) = run(&fmt_side, n);
                fmt_ns.push(per_event(took));
                fmt_cpu_ns.push(per_event(cpu));
            }
        }
    }
    let drops = capture::dropped() - dropped_before;

    // Detach: the drain stops after the next record, then a last event
    // removes the closed sink.
    stop.store(true, Ordering::Release);
    dispatcher::with_default(&capture_side, || {
        tracing::info!("bench: detaching the sink")
    });
    drain
        .join()
        .map_err(|_| "the drain thread panicked".to_string())?;
    dispatcher::with_default(&capture_side, || tracing::info!("bench: sink detached"));
    let got = received.load(Ordering::Acquire);
    if drops > 0 || got < sent + 1 {
        return Err(format!(
            "capture: {drops} records dropped, {got} of {} drained: the figure would not be the capture cost",
            sent + 1
        ));
    }
    Ok(CaptureFigures {
        capture_ns,
        fmt_ns,
        capture_cpu_ns,
        fmt_cpu_ns,
        captured: sent,
        drops,
        message_len: message_len.load(Ordering::Relaxed),
    })
}

// ---------------------------------------------------------------------------
// Measurement 2: gRPC followers.

#[derive(Debug, Default)]
struct Follower {
    /// Produced events received.
    received: u64,
    /// Gap markers, and the entries they said were skipped.
    gap_markers: u64,
    skipped: u64,
    /// Events whose counter was not above the previous one, or whose seq did
    /// not rise (a bug, not a gap).
    disorder: u64,
    /// When it received its last produced event.
    last_at: Option<Instant>,
    /// Whether it got the end event.
    ended: bool,
    error: Option<String>,
}

struct FollowFigures {
    offered_per_second: f64,
    produced: u64,
    drops: u64,
    followers: Vec<Follower>,
    rates: Vec<f64>,
}

async fn followers(plan: Plan, dedup: bool) -> Result<FollowFigures, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
    let mut logs = settings(dedup);
    logs.follower_buffer = FOLLOWER_BUFFER;
    let config = Config {
        listen: "127.0.0.1:0".parse().expect("an address"),
        shutdown_grace: Duration::from_millis(300),
        log_dir: dir.path().to_path_buf(),
        logs,
        ..Config::default()
    };
    let server = cantina_server::start(config)
        .await
        .map_err(|e| format!("server start: {e}"))?;
    let address = server.local_addr().to_string();

    // Every follower subscribed before the first event (TailLogs answers
    // after subscribing).
    let mut streams = Vec::new();
    for i in 0..plan.followers {
        let clients = cantina::client::connect(&address, None)
            .await
            .map_err(|e| format!("follower {i} connect: {e}"))?;
        let mut client = LogServiceClient::new(clients.channel.clone());
        let stream = client
            .tail_logs(TailLogsRequest {
                follow: true,
                contains: MARKER.into(),
                ..Default::default()
            })
            .await
            .map_err(|e| format!("follower {i} TailLogs: {e}"))?
            .into_inner();
        streams.push((clients, client, stream));
    }

    let total = plan.per_tick * plan.ticks;
    let finished = Arc::new(AtomicUsize::new(0));
    let began = Instant::now();
    let mut tasks = Vec::new();
    for (clients, client, mut stream) in streams {
        let finished = finished.clone();
        tasks.push(tokio::spawn(async move {
            let _keep = (clients, client);
            let mut f = Follower::default();
            let (mut next, mut last_seq) = (0u64, 0u64);
            // One deadline for the whole stream, not a timer per message.
            let deadline = tokio::time::sleep_until((began + DEADLINE).into());
            tokio::pin!(deadline);
            loop {
                let entry = tokio::select! {
                    biased;
                    message = stream.message() => match message {
                        Ok(Some(entry)) => entry,
                        Ok(None) => break,
                        Err(status) => {
                            f.error = Some(status.to_string());
                            break;
                        }
                    },
                    () = &mut deadline => {
                        f.error = Some(format!("no end event within {DEADLINE:?}"));
                        break;
                    }
                };
                if entry.skipped > 0 {
                    f.gap_markers += 1;
                    f.skipped += entry.skipped;
                    continue;
                }
                if entry.seq <= last_seq {
                    f.disorder += 1;
                }
                last_seq = entry.seq;
                if entry.message.starts_with("sweep end") {
                    f.ended = true;
                    break;
                }
                match sweep_number(&entry.message) {
                    Some(k) if k >= next => {
                        next = k + 1;
                        f.received += 1;
                        f.last_at = Some(Instant::now());
                    }
                    _ => f.disorder += 1,
                }
            }
            finished.fetch_add(1, Ordering::Release);
            f
        }));
    }

    let dropped_before = capture::dropped();
    let (ticks, per_tick) = (plan.ticks, plan.per_tick);
    let producer = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(1));
        let began = Instant::now();
        let mut i = 0;
        for _ in 0..ticks {
            tick.tick().await;
            for _ in 0..per_tick {
                typical_event(i);
                i += 1;
            }
        }
        (began, began.elapsed())
    });
    let (produce_began, produced_in) = producer.await.map_err(|e| format!("producer: {e}"))?;
    let drops = capture::dropped() - dropped_before;
    // End events until every follower has one (one might be dropped, or
    // skipped by a gap).
    let mut k = 0;
    while finished.load(Ordering::Acquire) < tasks.len() && began.elapsed() < DEADLINE {
        end_event(k);
        k += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.map_err(|e| format!("follower task: {e}"))?);
    }
    let _ = server.stop().await;

    let mut rates = Vec::new();
    for (i, f) in results.iter().enumerate() {
        if let Some(error) = &f.error {
            return Err(format!("follower {i}: {error}"));
        }
        if f.disorder > 0 {
            return Err(format!(
                "follower {i}: {} events out of order or repeated",
                f.disorder
            ));
        }
        // Without a gap marker, every event the capture layer did not drop
        // must have arrived.
        if f.skipped == 0 && f.received + drops < total {
            return Err(format!(
                "follower {i}: {} of {total} events, with no gap marker and only {drops} capture drops to account for the rest",
                f.received
            ));
        }
        let last = f.last_at.unwrap_or(produce_began);
        rates.push(f.received as f64 / last.duration_since(produce_began).as_secs_f64().max(1e-9));
    }
    Ok(FollowFigures {
        offered_per_second: total as f64 / produced_in.as_secs_f64(),
        produced: total,
        drops,
        followers: results,
        rates,
    })
}

// ---------------------------------------------------------------------------
// Measurement 3: the producer, one stalled follower beside none.

struct ProducerTrial {
    producer_per_second: f64,
    /// The producer thread's CPU time per event.
    producer_cpu_ns: f64,
    service_per_second: f64,
    drops: u64,
    /// What the stalled follower would be told it missed.
    lagged: u64,
}

async fn producer_trial(stalled: bool, n: u64, dedup: bool) -> Result<ProducerTrial, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
    let logs = Logs::new(settings(dedup), dir.path().to_path_buf(), SESSION);
    let supervisor = Supervisor::new(vec![Arc::new(logs.clone())], Vec::new());
    supervisor
        .start_all()
        .await
        .map_err(|e| format!("log service start: {e}"))?;
    caught_up(&logs).await?;
    let follower = stalled.then(|| logs.follow());
    let dropped_before = capture::dropped();
    let (began, produced_in, cpu) = tokio::task::spawn_blocking(move || {
        let (began, cpu) = (Instant::now(), thread_cpu());
        for i in 0..n {
            typical_event(i);
        }
        (began, began.elapsed(), thread_cpu().saturating_sub(cpu))
    })
    .await
    .map_err(|e| format!("producer: {e}"))?;
    // Every drop happens at the call site, so all of them are counted now.
    let drops = capture::dropped() - dropped_before;
    let done = caught_up(&logs).await?;

    // The ring: seq rising, the produced events in order.
    let ring = logs.snapshot();
    let mut last = (0u64, None::<u64>);
    for entry in &ring {
        if entry.seq <= last.0 {
            return Err(format!("ring: seq {} after {}", entry.seq, last.0));
        }
        if let Some(k) = sweep_number(&entry.record.message) {
            if last.1.is_some_and(|prev| k <= prev) {
                return Err(format!("ring: event {k} after {:?}", last.1));
            }
            last.1 = Some(k);
        }
        last.0 = entry.seq;
    }
    if drops == 0 && last.1 != Some(n - 1) {
        return Err(format!(
            "the last event produced ({}) is not in the ring, and nothing was dropped",
            n - 1
        ));
    }
    let lagged = match follower.map(|mut rx| rx.try_recv()) {
        Some(Err(TryRecvError::Lagged(k))) => k,
        _ => 0,
    };
    supervisor.stop_all().await;
    let accepted = n - drops;
    Ok(ProducerTrial {
        producer_per_second: n as f64 / produced_in.as_secs_f64(),
        producer_cpu_ns: cpu.as_nanos() as f64 / n as f64,
        service_per_second: accepted as f64 / done.duration_since(began).as_secs_f64(),
        drops,
        lagged,
    })
}

// ---------------------------------------------------------------------------
// Measurement 4: the ring's memory.

struct MemoryFigures {
    ring_size: usize,
    /// The ring: its entries plus its backing array.
    ring: Heap,
    /// The ring's entries alone (without the backing array).
    ring_entries: Heap,
    /// The empty service (`Logs::new`), backing array included.
    empty_service: Heap,
    /// The whole service while running with a full ring, from before
    /// `Logs::new`.
    running: Heap,
    /// The started service, idle, from before `Logs::new`.
    started: Heap,
    /// The dedup windows for the ring's entries (measured on a separate
    /// `Dedup` fed the same records).
    dedup_windows: Heap,
    /// What was still allocated after everything was dropped.
    residual: Heap,
    /// Bottom-up: the requested bytes of the ring's entries, summed.
    bottom_up: Breakdown,
}

#[derive(Debug, Default)]
struct Breakdown {
    entries: usize,
    /// Entry blocks (none: entries are kept by value).
    entry_blocks: usize,
    /// `Arc<Record>` blocks.
    record_blocks: usize,
    /// Message strings: capacity, and length.
    message_capacity: usize,
    message_len: usize,
    /// The fields' vectors (capacity × element size).
    field_vectors: usize,
    field_count: usize,
    /// The fields' strings: capacity, and length.
    field_capacity: usize,
    field_len: usize,
    /// The ring's array of pointers.
    backing: usize,
}

impl Breakdown {
    fn of(ring: &[Entry], ring_size: usize) -> Self {
        // An Arc's block: two counters, then the value.
        let arc = |size: usize| 2 * size_of::<usize>() + size;
        let mut b = Breakdown {
            entries: ring.len(),
            backing: ring_size * size_of::<Entry>(),
            ..Default::default()
        };
        for entry in ring {
            let r = &entry.record;
            b.record_blocks += arc(size_of::<Record>());
            b.message_capacity += r.message.capacity();
            b.message_len += r.message.len();
            b.field_vectors += r.fields.capacity() * size_of::<(&'static str, String)>();
            b.field_count += r.fields.len();
            for (_, value) in &r.fields {
                b.field_capacity += value.capacity();
                b.field_len += value.len();
            }
        }
        b
    }

    fn total(&self) -> usize {
        self.entry_blocks
            + self.record_blocks
            + self.message_capacity
            + self.field_vectors
            + self.field_capacity
            + self.backing
    }
}

fn ring_memory(runtime: &Runtime) -> Result<MemoryFigures, String> {
    let dir = tempfile::tempdir().map_err(|e| format!("temporary folder: {e}"))?;
    let settings = settings(true);
    let dedup_window = settings.dedup_window;
    let ring_size = settings.ring_size;
    let bus = Bus::default();

    COUNTING.store(true, Ordering::SeqCst);
    let m0 = Heap::now();
    let logs = Logs::new(settings, dir.path().to_path_buf(), SESSION);
    let m1 = Heap::now();
    let supervisor = Supervisor::new(vec![Arc::new(logs.clone())], vec![Arc::new(bus.clone())]);
    let filled = runtime.block_on(async {
        supervisor
            .start_all()
            .await
            .map_err(|e| format!("log service start: {e}"))?;
        caught_up(&logs).await?;
        let started = Heap::now();
        let dropped_before = capture::dropped();
        // In chunks, each waited for: the capture queue never fills.
        let total = ring_size as u64 + RING_EXTRA;
        let mut i = 0;
        while i < total {
            let end = (i + 1_000).min(total);
            while i < end {
                typical_event(i);
                i += 1;
            }
            let began = Instant::now();
            while logs
                .snapshot()
                .last()
                .and_then(|e| sweep_number(&e.record.message))
                != Some(end - 1)
            {
                if began.elapsed() > DEADLINE {
                    return Err(format!("memory: event {} never reached the ring", end - 1));
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
        }
        let drops = capture::dropped() - dropped_before;
        Ok::<_, String>((total, drops, started))
    });
    let (total, drops, m2) = match filled {
        Ok(filled) => filled,
        Err(e) => {
            COUNTING.store(false, Ordering::SeqCst);
            return Err(e);
        }
    };
    let m3 = Heap::now();
    let ring = logs.snapshot();
    let bottom_up = Breakdown::of(&ring, ring_size);
    // The dedup windows the service holds for these entries (distinct
    // messages within the window: one each), measured on a dedup state of
    // the same kind fed the same records.
    let mut out = Vec::with_capacity(4);
    let d0 = Heap::now();
    let mut dedup = Dedup::new(dedup_window, ring_size);
    let now = Instant::now();
    for entry in &ring {
        dedup.take(entry.record.clone(), entry.service, now, &mut out);
        out.clear();
    }
    let dedup_windows = Heap::now().minus(d0);
    drop(dedup);
    drop(out);
    let first = total - ring_size as u64;
    let full = ring.len() == ring_size
        && ring
            .iter()
            .enumerate()
            .all(|(k, e)| sweep_number(&e.record.message) == Some(first + k as u64));
    drop(ring);
    runtime.block_on(supervisor.stop_all());
    // Let the service's tasks and threads finish dropping what they hold.
    std::thread::sleep(Duration::from_millis(100));
    let m4 = Heap::now();
    drop(supervisor);
    drop(logs);
    std::thread::sleep(Duration::from_millis(50));
    let m5 = Heap::now();
    COUNTING.store(false, Ordering::SeqCst);
    drop(bus);

    if drops > 0 || !full {
        return Err(format!(
            "memory: the ring did not fill with the {ring_size} last events ({drops} dropped)"
        ));
    }
    let empty_service = m1.minus(m0);
    let backing = (ring_size * size_of::<Entry>()) as i64;
    let entries = m4.minus(m1);
    Ok(MemoryFigures {
        ring_size,
        ring: Heap {
            requested: entries.requested + backing,
            // The backing array is one large block: its header is noise.
            footprint: entries.footprint + backing + 16,
            blocks: entries.blocks + 1,
        },
        ring_entries: entries,
        empty_service,
        running: m3.minus(m0),
        started: m2.minus(m0),
        dedup_windows,
        residual: m5.minus(m0),
        bottom_up,
    })
}

// ---------------------------------------------------------------------------
// Output.

fn median(values: &[f64]) -> f64 {
    let mut values = values.to_vec();
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// With thousands separators.
fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.abs());
    let mut out = String::new();
    if value < 0.0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn megabytes(bytes: i64) -> String {
    format!(
        "{:.2} MB ({:.2} MiB)",
        bytes as f64 / 1e6,
        bytes as f64 / (1024.0 * 1024.0)
    )
}

fn mark(met: bool) -> &'static str {
    if met { "✓" } else { "✗" }
}

fn list(values: &[f64], f: impl Fn(f64) -> String) -> String {
    values.iter().map(|v| f(*v)).collect::<Vec<_>>().join(", ")
}

/// Measurement 3 with one configuration: the trials of each side.
struct ProducerFigures {
    none: Vec<ProducerTrial>,
    stalled: Vec<ProducerTrial>,
}

impl ProducerFigures {
    fn measure(runtime: &Runtime, plan: Plan, dedup: bool) -> Result<Self, String> {
        let (mut none, mut stalled) = (Vec::new(), Vec::new());
        for trial in 0..plan.producer_trials {
            let stalled_first = trial % 2 == 1;
            for side in [stalled_first, !stalled_first] {
                let t = runtime.block_on(producer_trial(side, plan.producer_events, dedup))?;
                if side {
                    stalled.push(t);
                } else {
                    none.push(t);
                }
            }
        }
        Ok(Self { none, stalled })
    }

    fn median(trials: &[ProducerTrial], f: fn(&ProducerTrial) -> f64) -> f64 {
        median(&trials.iter().map(f).collect::<Vec<_>>())
    }

    /// Producer rate: (stalled, none).
    fn producer(&self) -> (f64, f64) {
        (
            Self::median(&self.stalled, |t| t.producer_per_second),
            Self::median(&self.none, |t| t.producer_per_second),
        )
    }

    /// Service rate: (stalled, none).
    fn service(&self) -> (f64, f64) {
        (
            Self::median(&self.stalled, |t| t.service_per_second),
            Self::median(&self.none, |t| t.service_per_second),
        )
    }

    fn drops(&self) -> u64 {
        self.none.iter().chain(&self.stalled).map(|t| t.drops).sum()
    }

    fn row(&self, label: &str, plan: Plan) -> (String, bool) {
        let (stalled, none) = self.producer();
        let ratio = stalled / none;
        let met = ratio >= 0.95;
        (
            format!(
                "| {label} | producer's rate through capture, one stalled follower vs none ({} events × {} trial(s) per side; {} of {} dropped by capture) | stalled: {} events/s | none: {} events/s | **{ratio:.2}×** | ≥ 0.95× | {} |",
                thousands(plan.producer_events as f64),
                plan.producer_trials,
                thousands(self.drops() as f64),
                thousands((2 * plan.producer_events * plan.producer_trials as u64) as f64),
                thousands(stalled),
                thousands(none),
                mark(met)
            ),
            met,
        )
    }

    fn details(&self, label: &str) {
        let describe = |t: &[ProducerTrial]| {
            t.iter()
                .map(|t| {
                    format!(
                        "{} producer events/s ({:.0} ns CPU/event) / {} service events/s, {} dropped, lag {}",
                        thousands(t.producer_per_second),
                        t.producer_cpu_ns,
                        thousands(t.service_per_second),
                        thousands(t.drops as f64),
                        thousands(t.lagged as f64)
                    )
                })
                .collect::<Vec<_>>()
                .join("; ")
        };
        let (stalled, none) = self.service();
        let (stalled_cpu, none_cpu) = (
            Self::median(&self.stalled, |t| t.producer_cpu_ns),
            Self::median(&self.none, |t| t.producer_cpu_ns),
        );
        println!("- {label}, none: {}.", describe(&self.none));
        println!("- {label}, stalled: {}.", describe(&self.stalled));
        println!(
            "- {label}: the service's rate (entries numbered per second until a later sentinel is in the ring), medians: stalled {}, none {} ({:.2}×).",
            thousands(stalled),
            thousands(none),
            stalled / none
        );
        println!(
            "- {label}: the producer thread's CPU time per event, medians: stalled {stalled_cpu:.0} ns, none {none_cpu:.0} ns: as a rate on a core of its own, {:.2}× (stalled ÷ none).",
            none_cpu / stalled_cpu
        );
    }
}

impl FollowFigures {
    fn gaps(&self) -> u64 {
        self.followers.iter().map(|f| f.gap_markers).sum()
    }

    fn complete(&self) -> usize {
        self.followers
            .iter()
            .filter(|f| f.received == self.produced)
            .count()
    }

    fn median_rate(&self) -> f64 {
        median(&self.rates)
    }
}

/// The table row of measurement 2 over its trials, and whether the target
/// was met in every trial.
fn follow_row(label: &str, trials: &[FollowFigures]) -> (String, bool) {
    let joined =
        |f: &dyn Fn(&FollowFigures) -> String| trials.iter().map(f).collect::<Vec<_>>().join(" / ");
    let gaps: u64 = trials.iter().map(FollowFigures::gaps).sum();
    let complete: usize = trials.iter().map(FollowFigures::complete).sum();
    let followers: usize = trials.iter().map(|t| t.followers.len()).sum();
    let met = gaps == 0 && complete == followers;
    let first = &trials[0];
    (
        format!(
            "| {label} | events/s delivered per gRPC follower ({} followers, {} events offered at ~{} events/s, follower buffer {}; {}; dropped by capture before numbering: {}) | median over followers {} | offered {} | {} | zero gaps; every event seen | {gaps} gaps; {complete}/{followers} saw every event {} |",
            first.followers.len(),
            thousands(first.produced as f64),
            thousands(first.offered_per_second),
            thousands(FOLLOWER_BUFFER as f64),
            match trials.len() {
                1 => "one trial".to_string(),
                n => format!("{n} trials, each figure shown per trial"),
            },
            joined(&|t| thousands(t.drops as f64)),
            joined(&|t| thousands(t.median_rate())),
            joined(&|t| thousands(t.offered_per_second)),
            joined(&|t| format!("{:.2}×", t.median_rate() / t.offered_per_second)),
            mark(met)
        ),
        met,
    )
}

fn follow_details(label: &str, trials: &[FollowFigures], plan: Plan) {
    for (k, t) in trials.iter().enumerate() {
        let skipped: u64 = t.followers.iter().map(|f| f.skipped).sum();
        let min = t.rates.iter().copied().fold(f64::INFINITY, f64::min);
        let max = t.rates.iter().copied().fold(0.0, f64::max);
        let received: Vec<u64> = t.followers.iter().map(|f| f.received).collect();
        let (fewest, most) = (
            received.iter().min().copied().unwrap_or(0),
            received.iter().max().copied().unwrap_or(0),
        );
        println!(
            "- {label}, trial {}: {} events produced ({} per 1 ms tick) at {} events/s, {} dropped by capture; {} gap markers ({} entries skipped) over all followers; {}/{} followers saw every event, in order (events received per follower: {}–{}); delivered events/s per follower: median {}, min {}, max {}.",
            k + 1,
            thousands(t.produced as f64),
            plan.per_tick,
            thousands(t.offered_per_second),
            thousands(t.drops as f64),
            t.gaps(),
            thousands(skipped as f64),
            t.complete(),
            t.followers.len(),
            thousands(fewest as f64),
            thousands(most as f64),
            thousands(t.median_rate()),
            thousands(min),
            thousands(max),
        );
    }
}

fn main() -> ExitCode {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not.
    let full = std::env::args().any(|arg| arg == "--bench");
    let plan = if full { Plan::FULL } else { Plan::QUICK };
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("tokio runtime");
    // The subscriber the server binary installs, less its stderr output:
    // filter `info` and the capture layer.
    cantina_server::telemetry::init_capture_only("info");
    let began = Instant::now();
    let defaults = settings(true);

    println!("# Log service: capture, followers, stalled follower, ring memory");
    println!();
    if !full {
        println!(
            "QUICK CHECK (no --bench argument): small numbers, one trial; run `cargo bench` for figures."
        );
        println!();
    }
    println!(
        "Machine: {cores} cores (available_parallelism); tokio multi-thread runtime, {WORKERS} workers; {} build. Settings: the server's defaults (ring {}, dedup window {:?}, follower buffer {}) except where a row says otherwise; rows marked *diagnostic* set the dedup window to 0 to show what the rest of the service does without it.",
        if cfg!(debug_assertions) {
            "debug (figures meaningless)"
        } else {
            "release"
        },
        thousands(defaults.ring_size as f64),
        defaults.dedup_window,
        thousands(defaults.follower_buffer as f64),
    );
    println!();

    let fail = |what: &str, problem: String| {
        eprintln!("SOMETHING IS WRONG in {what}, so the figures would be too: {problem}");
        ExitCode::FAILURE
    };

    // 4 first: the allocator's view must not see the other measurements'
    // leftovers.
    let memory = match ring_memory(&runtime) {
        Ok(m) => m,
        Err(e) => return fail("the ring memory measurement", e),
    };
    let capture = match capture_vs_fmt(plan) {
        Ok(c) => c,
        Err(e) => return fail("the capture measurement", e),
    };
    let mut producers = Vec::new();
    for dedup in [true, false] {
        match ProducerFigures::measure(&runtime, plan, dedup) {
            Ok(p) => producers.push(p),
            Err(e) => return fail("the stalled-follower measurement", e),
        }
    }
    // Trials of both configurations interleaved: [default, dedup off].
    let mut follows: [Vec<FollowFigures>; 2] = Default::default();
    for _ in 0..plan.follow_trials {
        for (side, dedup) in [true, false].into_iter().enumerate() {
            match runtime.block_on(followers(plan, dedup)) {
                Ok(f) => follows[side].push(f),
                Err(e) => return fail("the followers measurement", e),
            }
        }
    }

    let capture_ns = median(&capture.capture_ns);
    let fmt_ns = median(&capture.fmt_ns);
    let capture_ratio = capture_ns / fmt_ns;
    let memory_met = memory.ring.footprint < 5_000_000 && memory.ring.requested < 5_000_000;
    let (row_2, follow_met) = follow_row("2", &follows[0]);
    let (row_2b, _) = follow_row("2b *diagnostic: dedup off*", &follows[1]);
    let (producer_row, producer_met) = producers[0].row("3", plan);
    let (producer_diag, _) = producers[1].row("3b *diagnostic: dedup off*", plan);

    println!("| # | measure | figure | baseline | ratio | target | met |");
    println!("|---|---|---:|---:|---:|---|:-:|");
    println!(
        "| 1 | capture cost per `info!` event on the logging thread (3 fields, ~{}-character message; {} events × {} trial(s) per side; {} dropped) | capture: {:.0} ns/event | fmt → `io::sink`: {:.0} ns/event | **{capture_ratio:.2}×** | ≤ 0.7× | {} |",
        capture.message_len,
        thousands(plan.capture_events as f64),
        plan.capture_trials,
        capture.drops,
        capture_ns,
        fmt_ns,
        mark(capture_ratio <= 0.7)
    );
    println!("{row_2}");
    println!("{row_2b}");
    println!("{producer_row}");
    println!("{producer_diag}");
    println!(
        "| 4 | ring memory at capacity ({} typical entries) | {} malloc footprint; {} requested | — | {:.0} B/entry | < 5 MB | {} |",
        thousands(memory.ring_size as f64),
        megabytes(memory.ring.footprint),
        megabytes(memory.ring.requested),
        memory.ring.footprint as f64 / memory.ring_size as f64,
        mark(memory_met)
    );
    println!();
    println!(
        "Targets: capture {}, followers {}, stalled follower {}, ring memory {} (the verdicts are on the rows 1, 2, 3 and 4; the diagnostic rows are not targets).",
        if capture_ratio <= 0.7 {
            "met"
        } else {
            "MISSED"
        },
        if follow_met { "met" } else { "MISSED" },
        if producer_met { "met" } else { "MISSED" },
        if memory_met { "met" } else { "MISSED" },
    );
    println!();

    println!("## 1. Capture vs fmt");
    println!(
        "- ns/event by trial, capture: [{}]; fmt: [{}] (the sides alternate which goes first).",
        list(&capture.capture_ns, |v| format!("{v:.0}")),
        list(&capture.fmt_ns, |v| format!("{v:.0}"))
    );
    let (capture_cpu, fmt_cpu) = (median(&capture.capture_cpu_ns), median(&capture.fmt_cpu_ns));
    println!(
        "- The logging thread's CPU time per event (medians): capture {capture_cpu:.0} ns, fmt {fmt_cpu:.0} ns ({:.2}×); the rest of the wall time it waited (capture: {:.0} ns/event, fmt: {:.0} ns/event), for a lock or for a core. By trial, capture: [{}]; fmt: [{}].",
        capture_cpu / fmt_cpu,
        (capture_ns - capture_cpu).max(0.0),
        (fmt_ns - fmt_cpu).max(0.0),
        list(&capture.capture_cpu_ns, |v| format!("{v:.0}")),
        list(&capture.fmt_cpu_ns, |v| format!("{v:.0}"))
    );
    println!(
        "- {} records captured and drained by a thread that drops them, {} dropped (queue of {} records, emptied before the fmt side runs).",
        thousands(capture.captured as f64),
        capture.drops,
        thousands((plan.capture_events + 1_024) as f64)
    );
    println!();

    println!("## 2. gRPC followers");
    follow_details("default settings", &follows[0], plan);
    follow_details("dedup off", &follows[1], plan);
    println!();

    println!("## 3. Stalled follower");
    producers[0].details("default settings");
    producers[1].details("dedup off");
    println!();

    println!("## 4. Ring memory");
    let b = &memory.bottom_up;
    println!(
        "- Ring ({} entries): {} bytes footprint, {} requested, {} blocks (what the stopped service still held beyond the empty one, plus the {}-byte backing array).",
        b.entries,
        thousands(memory.ring.footprint as f64),
        thousands(memory.ring.requested as f64),
        thousands(memory.ring.blocks as f64),
        thousands(b.backing as f64)
    );
    println!(
        "- Bottom-up, requested bytes per entry: Entry blocks {}, Arc<Record> {}, message {} (capacity; {} used), fields vector {} ({:.1} fields), field strings {} (capacity; {} used), backing {}; {} blocks; total {} for the ring (measured: {}).",
        b.entry_blocks / b.entries,
        b.record_blocks / b.entries,
        b.message_capacity / b.entries,
        b.message_len / b.entries,
        b.field_vectors / b.entries,
        b.field_count as f64 / b.entries as f64,
        b.field_capacity / b.entries,
        b.field_len / b.entries,
        b.backing / b.entries,
        thousands(memory.ring.blocks as f64 / b.entries as f64),
        thousands(b.total() as f64),
        thousands(memory.ring.requested as f64)
    );
    let other = memory.running.footprint
        - memory.started.footprint
        - memory.ring_entries.footprint
        - memory.dedup_windows.footprint;
    println!(
        "- The whole service, footprint: empty (`Logs::new`: backing array, follower buffer) {}; started and idle {}; running with the ring full {} — of which the dedup windows for these 10,000 distinct messages {} ({} requested), and about {} else (queues, file buffer). Residual after dropping everything: {} bytes requested.",
        megabytes(memory.empty_service.footprint),
        megabytes(memory.started.footprint),
        megabytes(memory.running.footprint),
        megabytes(memory.dedup_windows.footprint),
        megabytes(memory.dedup_windows.requested),
        megabytes(other),
        thousands(memory.residual.requested as f64)
    );
    if !FOOTPRINT_KNOWN {
        println!("- (Not glibc: the footprint is the requested size.)");
    }
    println!();
    println!("Took {:.1} s.", began.elapsed().as_secs_f64());
    ExitCode::SUCCESS
}
