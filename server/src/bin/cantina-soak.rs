//! `cantina-soak`: the soak test. Runs the real `cantina-server` for a while under every load
//! the droid meets at once, then prints what the server's memory did, every drop counter and
//! every error, and fails when something leaked, went missing or went wrong unexplained.
//!
//! ```text
//! ./dev.sh soak [MINUTES]                  # builds in release, then runs this
//! cantina-soak --minutes 30 [--sample 10s] [--keep]
//! ```
//!
//! **The server** is the release `cantina-server` next to this program (or `--server PATH`), a
//! child process on a free port with a data folder, a log folder and a configuration file of its
//! own in a temporary folder: the virtual audio output, the demo library, espeak-ng, the eyes and
//! a Maestro on simulated boards behind real pseudo-terminals (`eyes::sim`, `servos::sim`, run in
//! this process), two servos, JSON logs on stderr.
//!
//! **The load**, all at once for the whole run:
//! - music in DJ mode (`dj start`), checked at every sample;
//! - a plan on each layer, in a loop: an `ambient` plan that loops by itself (eyes and the head),
//!   a `foreground` plan every few seconds (eyes, speech with the jaw, a console command), an
//!   `override` plan every half minute or so (which cancels the two others; they start again);
//!   their steps that drive a board go on when the board is out (`continueOnError`);
//! - speech requests (`Speak`) every few seconds;
//! - the eyes board and the Maestro each pulled out and plugged back in at random (the
//!   simulators' `unplug`/`plug`, as the end-to-end tests do);
//! - 32 `TailLogs` followers and one `WatchEvents` watcher of every topic;
//! - a steady `Dispatch` load (`status`, a few hundred a second from a few connections).
//!
//! **Measured**: the server's resident memory (VmRSS), open files and threads every `--sample`;
//! Dispatch latency p50/p99 per sample; the tailers' gap markers and the watcher's missed
//! markers; the server's own counters (`GetStatus`: the bus's drops, dead letters and handler
//! errors, audio underruns); every RPC error and every WARN or ERROR line the server wrote,
//! grouped; each unplug's detection and recovery time.
//!
//! **Fails** (exit status 1, saying why) on:
//! - memory growth after warm-up: warm-up is the first fifth of the run, at most 5 minutes; over
//!   the samples after it, the least-squares slope of VmRSS extrapolates to more than
//!   `--max-growth` MB an hour (10) *and* the median of the last quarter of those samples is
//!   above the median of the first quarter by more than `--min-growth` MB (2). The slope alone
//!   would fail a short run on allocator noise; the medians alone would miss nothing a slope
//!   catches over a long run, but the pair says "steady growth, and enough of it to matter";
//! - open files after warm-up growing by more than 16 (a leaked port or connection);
//! - any unexplained error: an RPC that failed, a WARN or ERROR line, a failed plan step, a plan
//!   cancelled by anything but the override plan, unless it came from a board pulled out (the
//!   board's own subsystem, the plans, speech and the bus, while that board is out or within
//!   5 s of its recovery);
//! - any lost event: a tailer that sees a gap in `seq` no gap marker accounts for, bus events the
//!   watcher neither received nor was told it missed, events the bus dropped, an unplug the
//!   server did not report lost, or a replug it did not report recovered within 30 s, a board
//!   reported lost while plugged in, a layer whose plans made no progress for a minute, DJ mode
//!   found off, the server exiting before the end or not cleanly at the end.
//!
//! Gap and missed markers themselves are drops the protocol reports by design: they are
//! printed, not failed on. Neither are audio underruns (the paced virtual output on a busy
//! machine): printed. The temporary folder is removed after a pass, kept after a failure (or with
//! `--keep`), with the server's stderr in `server.stderr.jsonl`.
//!
//! Test tooling: built only with the package's `testkit` feature, like `cantina-eyes-sim`.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    io::{BufRead, BufReader, Write as _},
    path::{Path, PathBuf},
    process::{ExitCode, Stdio},
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use cantina::{
    client::{AuthChannel, Clients, connect},
    v1::{
        BusEvent, DispatchRequest, GetStatusRequest, LogEntry, PlanEvent, PlanEventKind,
        PlanStatus, RunPlanRequest, SpeakRequest, StopAllRequest, SystemStatus, TailLogsRequest,
        WatchEventsRequest, log_service_client::LogServiceClient,
        system_service_client::SystemServiceClient,
    },
};
use cantina_server::{
    eyes::sim::{SimBoard, SimOptions as EyesOptions},
    servos::sim::{SimMaestro, SimOptions as MaestroOptions},
};
use clap::Parser;
use tokio::{sync::watch, task::JoinSet};
use tokio_stream::StreamExt;
use tokio_util::sync::CancellationToken;

/// Command-line arguments.
#[derive(Debug, Parser)]
#[command(
    name = "cantina-soak",
    version = cantina_server::VERSION,
    about = "Soak test: the real server under every load at once, its memory, drops and errors"
)]
struct Args {
    /// How long to run the load, in minutes
    #[arg(long, default_value_t = 30.0)]
    minutes: f64,
    /// The server program [default: cantina-server next to this program]
    #[arg(long, value_name = "PATH")]
    server: Option<PathBuf>,
    /// How often to sample memory, latency and counters
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    sample: Duration,
    /// Dispatch `status` calls a second, all clients together
    #[arg(long, default_value_t = 300)]
    dispatch_rate: u32,
    /// Connections the Dispatch load is spread over
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..))]
    dispatch_clients: u32,
    /// TailLogs followers
    #[arg(long, default_value_t = 32)]
    tailers: usize,
    /// Memory growth after warm-up that fails the run, in MB an hour (with --min-growth)
    #[arg(long, default_value_t = 10.0)]
    max_growth: f64,
    /// Least rise of the last quarter's median over the first quarter's that fails the run, MB
    #[arg(long, default_value_t = 2.0)]
    min_growth: f64,
    /// Shortest and longest wait between a board's unplugs
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    unplug_min: Duration,
    /// Longest wait between a board's unplugs
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    unplug_max: Duration,
    /// Keep the temporary folder (data, logs, the server's stderr) even after a pass
    #[arg(long)]
    keep: bool,
}

/// How long after a board's recovery its errors still count as explained by the unplug.
const GRACE: Duration = Duration::from_secs(5);
/// How long the server has to report a pulled board lost.
const LOSS_DEADLINE: Duration = Duration::from_secs(10);
/// How long the server has to report a plugged board recovered.
const RECOVERY_DEADLINE: Duration = Duration::from_secs(30);
/// A layer whose plans finish no step for this long has stopped.
const STALL: Duration = Duration::from_secs(60);
/// Open files may grow by this many after warm-up.
const FD_SLACK: i64 = 16;
/// The longest warm-up.
const WARMUP_MAX: Duration = Duration::from_secs(300);

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cantina-soak: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("cantina-soak: {e:#}");
            ExitCode::from(2)
        }
    }
}

// --- shared state ------------------------------------------------------------

/// One group of errors: the same source and message (digits folded).
#[derive(Default)]
struct Tally {
    explained: u64,
    unexplained: u64,
    reasons: BTreeSet<&'static str>,
    example: String,
}

/// A board the soak pulls out and plugs back in.
struct Device {
    /// `eyes` or `servos`: its subsystem and its events' topic prefix.
    name: &'static str,
    /// Since when it is out (from the unplug until the server reported it recovered).
    out_since: Mutex<Option<Instant>>,
    /// When the server last reported it recovered.
    back_at: Mutex<Option<Instant>>,
    /// (lost, recovered) reports seen on the bus so far.
    reports: watch::Sender<(u64, u64)>,
    unplugs: AtomicU64,
    /// Seconds from each unplug to the server's `lost`.
    detections: Mutex<Vec<f64>>,
    /// Seconds from each replug to the server's `recovered`.
    recoveries: Mutex<Vec<f64>>,
}

impl Device {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            out_since: Mutex::new(None),
            back_at: Mutex::new(None),
            reports: watch::channel((0, 0)).0,
            unplugs: AtomicU64::new(0),
            detections: Mutex::new(Vec::new()),
            recoveries: Mutex::new(Vec::new()),
        }
    }

    /// Whether trouble now may come from this board being out.
    fn excuses(&self, now: Instant) -> bool {
        lock(&self.out_since).is_some()
            || lock(&self.back_at).is_some_and(|at| now.saturating_duration_since(at) < GRACE)
    }
}

/// What one layer's plans did.
#[derive(Default)]
struct LayerStats {
    runs: u64,
    completed: u64,
    preempted: u64,
    other_ends: u64,
    steps: u64,
    step_failures: u64,
    paused: u64,
    resumed: u64,
    last_progress: Option<Instant>,
    stalled: bool,
}

/// What the WatchEvents watcher saw.
#[derive(Default)]
struct WatcherStats {
    events: u64,
    markers: u64,
    missed: u64,
    min_seq: Option<u64>,
    max_seq: u64,
    per_topic: BTreeMap<String, u64>,
}

/// What one TailLogs follower saw.
#[derive(Default)]
struct TailerStats {
    entries: AtomicU64,
    markers: AtomicU64,
    skipped: AtomicU64,
    unmarked: AtomicU64,
}

/// Everything the load tasks share.
struct Soak {
    start: Instant,
    stop: CancellationToken,
    /// Set once the server is being stopped: what it logs then is judged apart.
    stopping: AtomicBool,
    errors: Mutex<BTreeMap<(String, String), Tally>>,
    /// Problems found by the checks (not errors the server reported).
    lost: Mutex<Vec<String>>,
    eyes: Device,
    servos: Device,
    latencies: Mutex<Vec<u32>>,
    all_latencies: Mutex<Vec<u32>>,
    dispatched: AtomicU64,
    dispatch_errors: AtomicU64,
    speeches: AtomicU64,
    speech_errors: AtomicU64,
    layers: [Mutex<LayerStats>; 3],
    watcher: Mutex<WatcherStats>,
    tailers: Vec<TailerStats>,
    log_lines: Mutex<BTreeMap<String, u64>>,
    dj_off: AtomicU64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Soak {
    /// Records an error from `source`, explained by `why` or not.
    fn error(&self, source: &str, message: &str, why: Option<&'static str>) {
        let key = (source.to_owned(), fold_digits(message));
        let mut errors = lock(&self.errors);
        let tally = errors.entry(key).or_default();
        match why {
            Some(why) => {
                tally.explained += 1;
                tally.reasons.insert(why);
            }
            None => tally.unexplained += 1,
        }
        if tally.example.is_empty() {
            tally.example = message.chars().take(300).collect();
        }
    }

    /// Records a lost event or a stopped loop (always a failure).
    fn lost(&self, what: String) {
        println!("  !! {what}");
        lock(&self.lost).push(what);
    }

    /// Why trouble from `target` (a module path or a subsystem) now is expected, if it is.
    fn excuse(&self, target: &str, now: Instant) -> Option<&'static str> {
        let eyes = self.eyes.excuses(now);
        let servos = self.servos.excuses(now);
        if target.contains("eyes") && eyes {
            Some("the eyes board was out")
        } else if target.contains("servos") && servos {
            Some("the Maestro was out")
        } else if ["plans", "speech", "bus", "commands"]
            .iter()
            .any(|t| target.contains(t))
            && (eyes || servos)
        {
            Some("a board was out")
        } else {
            None
        }
    }

    fn minutes(&self) -> f64 {
        self.start.elapsed().as_secs_f64() / 60.0
    }
}

/// `lost 3 of 12` → `lost # of #`: one group for messages that differ only in numbers.
fn fold_digits(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_number = false;
    for c in text.chars() {
        if c.is_ascii_digit() {
            if !in_number {
                out.push('#');
            }
            in_number = true;
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

// --- the server --------------------------------------------------------------

/// The server under test: its process and where it listens.
struct Server {
    child: tokio::process::Child,
    pid: u32,
    address: String,
}

/// The configuration file: every part on its simulated or virtual device.
fn config_file(dir: &Path, eyes: &Path, maestro: &Path) -> String {
    let path = |p: &Path| {
        p.display()
            .to_string()
            .replace('\\', "\\\\")
            .replace('"', "\\\"")
    };
    format!(
        r#"listen = "127.0.0.1:0"
log_dir = "{logs}"
data_dir = "{data}"
audio_output = "virtual"
eyes_port = "{eyes}"
servo_port = "{maestro}"
log_format = "json"
shutdown_grace = "2s"
# Every client here is one address (loopback): 32 tailers, the watcher and
# the plans' RunPlan streams are more than the per-address default of 32.
max_streams_per_peer = 64

[[servo]]
name = "head"
channel = 0
min_us = 1000
max_us = 2000
max_speed = 1.0

[[servo]]
name = "jaw"
channel = 3
min_us = 1200
max_us = 1800
"#,
        logs = path(&dir.join("logs")),
        data = path(&dir.join("data")),
        eyes = path(eyes),
        maestro = path(maestro),
    )
}

/// Starts the server with `config`, its stderr read by a thread of its own (WARN and ERROR
/// lines judged, every line copied to `server.stderr.jsonl`); returns once it listens.
async fn start_server(
    program: &Path,
    dir: &Path,
    config: &Path,
    soak: &Arc<Soak>,
) -> anyhow::Result<Server> {
    let mut command = tokio::process::Command::new(program);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("CANTINA_") {
            command.env_remove(key);
        }
    }
    let mut child = command
        .arg("--config")
        .arg(config)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("cannot start {}: {e}", program.display()))?;
    let pid = child.id().unwrap_or_default();
    let stderr = child
        .stderr
        .take()
        .expect("stderr is piped")
        .into_owned_fd()?;
    let (address_tx, address_rx) = std::sync::mpsc::channel();
    let copy = std::fs::File::create(dir.join("server.stderr.jsonl"))?;
    let soak = soak.clone();
    std::thread::spawn(move || read_stderr(std::fs::File::from(stderr), copy, &soak, address_tx));
    let address = tokio::task::spawn_blocking(move || {
        address_rx.recv_timeout(Duration::from_secs(120))
    })
    .await?
    .map_err(|_| {
        anyhow::anyhow!(
            "the server did not say where it listens within 2 minutes: see server.stderr.jsonl"
        )
    })?;
    Ok(Server {
        child,
        pid,
        address,
    })
}

/// Reads the server's JSON log lines: the address it listens on, then every WARN and ERROR.
fn read_stderr(
    stderr: std::fs::File,
    copy: std::fs::File,
    soak: &Soak,
    address: std::sync::mpsc::Sender<String>,
) {
    let mut copy = std::io::BufWriter::new(copy);
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        let _ = writeln!(copy, "{line}");
        let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
            soak.error(
                "server stderr",
                &format!("not a JSON log line: {line}"),
                None,
            );
            continue;
        };
        let level = event["level"].as_str().unwrap_or("?").to_owned();
        let fields = &event["fields"];
        let message = fields["message"].as_str().unwrap_or_default();
        *lock(&soak.log_lines).entry(level.clone()).or_default() += 1;
        if message == "listening"
            && let Some(a) = fields["address"].as_str()
        {
            let _ = address.send(a.to_owned());
        }
        if level != "WARN" && level != "ERROR" {
            continue;
        }
        let target = event["target"].as_str().unwrap_or_default();
        let mut text = format!("{level} {message}");
        if let Some(map) = fields.as_object() {
            for (key, value) in map.iter().filter(|(k, _)| *k != "message") {
                let value = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                let _ = write!(text, " {key}={value}");
            }
        }
        let source = format!("log {target}");
        let why = if soak.stopping.load(Relaxed) {
            // Shutdown's own notices; an ERROR while stopping is still one.
            (level == "WARN").then_some("the server was being stopped")
        } else {
            soak.excuse(target, Instant::now())
        };
        // The group is the message; the fields (ids, times) are the example.
        soak.error(&source, &format!("{level} {message}"), why);
        let mut errors = lock(&soak.errors);
        if let Some(tally) = errors.get_mut(&(source, fold_digits(&format!("{level} {message}"))))
            && tally.explained + tally.unexplained == 1
        {
            tally.example = text.chars().take(300).collect();
        }
    }
    let _ = copy.flush();
}

/// The server's VmRSS (KiB) and thread count from /proc, and its open files.
fn process_stats(pid: u32) -> Option<(u64, u64, u64)> {
    let field = |name: &str| cantina_server::memory::proc_status(Some(pid), name);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count() as u64;
    Some((field("VmRSS")?, field("Threads")?, fds))
}

// --- the load ----------------------------------------------------------------

/// Sleeps `duration`, or less if the soak stops; says whether it is still on.
async fn nap(soak: &Soak, duration: Duration) -> bool {
    tokio::select! {
        () = tokio::time::sleep(duration) => !soak.stop.is_cancelled(),
        () = soak.stop.cancelled() => false,
    }
}

/// A random duration between `low` and `high`.
fn between(low: Duration, high: Duration) -> Duration {
    if high <= low {
        return low;
    }
    Duration::from_secs_f64(rand::random_range(low.as_secs_f64()..high.as_secs_f64()))
}

/// `status` from one connection at `rate` a second.
async fn dispatcher(soak: Arc<Soak>, mut clients: Clients, rate: f64) {
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = soak.stop.cancelled() => return,
        }
        let started = Instant::now();
        let result = clients
            .command
            .dispatch(DispatchRequest {
                line: "status".into(),
                correlation_id: String::new(),
            })
            .await;
        let micros = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
        match result {
            Ok(_) => {
                soak.dispatched.fetch_add(1, Relaxed);
                lock(&soak.latencies).push(micros);
            }
            Err(status) => {
                soak.dispatch_errors.fetch_add(1, Relaxed);
                soak.error(
                    "rpc Dispatch",
                    &format!("{:?}: {}", status.code(), status.message()),
                    None,
                );
            }
        }
    }
}

/// One TailLogs follower of every entry, checking that `seq` never jumps without a marker.
async fn tailer(soak: Arc<Soak>, index: usize, channel: AuthChannel) {
    let stats = &soak.tailers[index];
    let request = TailLogsRequest {
        follow: true,
        ..Default::default()
    };
    let mut stream = match LogServiceClient::new(channel).tail_logs(request).await {
        Ok(response) => response.into_inner(),
        Err(status) => {
            soak.error("rpc TailLogs", &status.to_string(), None);
            return;
        }
    };
    let mut last: Option<u64> = None;
    let mut told: u64 = 0;
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            () = soak.stop.cancelled() => return,
        };
        let entry: LogEntry = match next {
            Some(Ok(entry)) => entry,
            Some(Err(status)) => {
                soak.error("rpc TailLogs", &status.to_string(), None);
                return;
            }
            None => {
                soak.lost(format!("tailer {index}: the TailLogs stream ended"));
                return;
            }
        };
        if entry.skipped > 0 {
            stats.markers.fetch_add(1, Relaxed);
            stats.skipped.fetch_add(entry.skipped, Relaxed);
            told += entry.skipped;
            continue;
        }
        stats.entries.fetch_add(1, Relaxed);
        if let Some(last) = last {
            if entry.seq <= last {
                soak.lost(format!(
                    "tailer {index}: seq {} after {last}: out of order",
                    entry.seq
                ));
            } else {
                let gap = entry.seq - last - 1;
                if gap > told {
                    stats.unmarked.fetch_add(gap - told, Relaxed);
                    soak.lost(format!(
                        "tailer {index}: seq {} after {last} with {told} reported skipped",
                        entry.seq
                    ));
                }
            }
        }
        told = 0;
        last = Some(entry.seq);
    }
}

/// Watches every bus event: counts them, notes what it missed, and tells the unplug tasks
/// when a board is reported lost or recovered.
async fn watcher(soak: Arc<Soak>, channel: AuthChannel) {
    let mut stream = match SystemServiceClient::new(channel)
        .watch_events(WatchEventsRequest::default())
        .await
    {
        Ok(response) => response.into_inner(),
        Err(status) => {
            soak.error("rpc WatchEvents", &status.to_string(), None);
            return;
        }
    };
    loop {
        let next = tokio::select! {
            next = stream.next() => next,
            () = soak.stop.cancelled() => return,
        };
        let event: BusEvent = match next {
            Some(Ok(event)) => event,
            Some(Err(status)) => {
                soak.error("rpc WatchEvents", &status.to_string(), None);
                return;
            }
            None => {
                soak.lost("the WatchEvents stream ended".into());
                return;
            }
        };
        {
            let mut w = lock(&soak.watcher);
            if event.missed > 0 {
                w.markers += 1;
                w.missed += event.missed;
                continue;
            }
            w.events += 1;
            w.min_seq = Some(w.min_seq.map_or(event.seq, |m| m.min(event.seq)));
            w.max_seq = w.max_seq.max(event.seq);
            *w.per_topic.entry(event.topic.clone()).or_default() += 1;
        }
        for device in [&soak.eyes, &soak.servos] {
            let Some(what) = event
                .topic
                .strip_prefix(device.name)
                .and_then(|rest| rest.strip_prefix(".connection."))
            else {
                continue;
            };
            match what {
                "lost" => {
                    if lock(&device.out_since).is_none() {
                        soak.lost(format!(
                            "{} reported lost while plugged in (seq {})",
                            device.name, event.seq
                        ));
                    }
                    device.reports.send_modify(|(lost, _)| *lost += 1);
                }
                "recovered" => {
                    *lock(&device.back_at) = Some(Instant::now());
                    device.reports.send_modify(|(_, recovered)| *recovered += 1);
                }
                _ => {}
            }
        }
    }
}

/// A simulated board's cable, as the unplug task pulls it.
trait Cable: Send + Sync + 'static {
    fn unplug(&self) -> std::io::Result<()>;
    fn plug(&self) -> std::io::Result<()>;
}

impl Cable for SimBoard {
    fn unplug(&self) -> std::io::Result<()> {
        SimBoard::unplug(self)
    }
    fn plug(&self) -> std::io::Result<()> {
        SimBoard::plug(self)
    }
}

impl Cable for SimMaestro {
    fn unplug(&self) -> std::io::Result<()> {
        SimMaestro::unplug(self)
    }
    fn plug(&self) -> std::io::Result<()> {
        SimMaestro::plug(self)
    }
}

/// Pulls one board out and plugs it back in at random, checking that the server reports
/// each loss and each recovery.
async fn unplugger(
    soak: Arc<Soak>,
    device: &'static str,
    cable: Arc<dyn Cable>,
    every: (Duration, Duration),
) {
    let device = if device == "eyes" {
        &soak.eyes
    } else {
        &soak.servos
    };
    let mut reports = device.reports.subscribe();
    loop {
        if !nap(&soak, between(every.0, every.1)).await {
            return;
        }
        let (lost_before, recovered_before) = *reports.borrow_and_update();
        *lock(&device.out_since) = Some(Instant::now());
        let pulled = Instant::now();
        let c = cable.clone();
        if let Err(e) = tokio::task::spawn_blocking(move || c.unplug())
            .await
            .expect("unplug")
        {
            soak.error(
                "simulator",
                &format!("cannot unplug {}: {e}", device.name),
                None,
            );
            *lock(&device.out_since) = None;
            continue;
        }
        device.unplugs.fetch_add(1, Relaxed);
        let detected = tokio::time::timeout(
            LOSS_DEADLINE,
            reports.wait_for(|(lost, _)| *lost > lost_before),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if detected {
            lock(&device.detections).push(pulled.elapsed().as_secs_f64());
        } else {
            soak.lost(format!(
                "{} pulled out at {:.1} min: no {}.connection.lost within {LOSS_DEADLINE:?}",
                device.name,
                soak.minutes(),
                device.name
            ));
        }
        // Out for a few seconds (the plan steps and speech meanwhile meet a missing board).
        let out_for = between(Duration::from_secs(2), Duration::from_secs(8));
        let still_on = nap(&soak, out_for).await;
        let c = cable.clone();
        let plugged = Instant::now();
        if let Err(e) = tokio::task::spawn_blocking(move || c.plug())
            .await
            .expect("plug")
        {
            soak.error(
                "simulator",
                &format!("cannot plug {} in: {e}", device.name),
                None,
            );
        }
        let recovered = tokio::time::timeout(
            RECOVERY_DEADLINE,
            reports.wait_for(|(_, recovered)| *recovered > recovered_before),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        if recovered {
            lock(&device.recoveries).push(plugged.elapsed().as_secs_f64());
        } else {
            soak.lost(format!(
                "{} plugged back in at {:.1} min: no {}.connection.recovered within {RECOVERY_DEADLINE:?}",
                device.name,
                soak.minutes(),
                device.name
            ));
        }
        *lock(&device.out_since) = None;
        if !still_on {
            return;
        }
    }
}

/// A layer's plan loop: what it runs and how long it rests between runs.
struct LayerSpec {
    index: usize,
    name: &'static str,
    rest: (Duration, Duration),
}

static LAYERS: [LayerSpec; 3] = [
    LayerSpec {
        index: 0,
        name: "ambient",
        rest: (Duration::from_millis(200), Duration::from_millis(500)),
    },
    LayerSpec {
        index: 1,
        name: "foreground",
        rest: (Duration::from_secs(2), Duration::from_secs(6)),
    },
    LayerSpec {
        index: 2,
        name: "override",
        rest: (Duration::from_secs(25), Duration::from_secs(45)),
    },
];

/// Lines the droid says, in turn: a bounded set, so the speech cache fills and is then hit.
const LINES: [&str; 8] = [
    "Another round for the band!",
    "The cantina is open, find a seat.",
    "Has anyone seen a droid with a restraining bolt?",
    "Next tune, straight from the Outer Rim.",
    "No blasters at the bar, please.",
    "Tonight's special: blue milk.",
    "The band takes requests. Mostly.",
    "Mind the Wookiee, he bites.",
];

/// The plan document of `layer`'s `run`th run.
fn plan_document(layer: &LayerSpec, run: u64) -> String {
    let id = format!("soak-{}-{run}", layer.name);
    let steps = match layer.index {
        0 => serde_json::json!([
            {"id": "rest", "continueOnError": true, "eyePattern": {"pattern": "idle", "brightness": 0.4}},
            {"id": "look-left", "continueOnError": true, "move": {"target": "head", "position": 0.3, "duration": "1s"}},
            {"id": "wait", "delay": {"duration": "1.5s"}},
            {"id": "ponder", "continueOnError": true, "eyePattern": {"pattern": "thinking", "brightness": 0.3}},
            {"id": "look-right", "continueOnError": true, "move": {"target": "head", "position": 0.7, "duration": "1s"}},
            {"id": "wait-more", "delay": {"duration": "1.5s"}}
        ]),
        1 => serde_json::json!([
            {"id": "smile", "continueOnError": true, "eyePattern": {"pattern": "happy", "brightness": 1.0}},
            {"id": "talk", "parallelSteps": {"steps": [
                {"id": "line", "continueOnError": true, "speak": {"text": LINES[run as usize % LINES.len()], "duckLevel": 0.3}},
                {"id": "jaw-open", "continueOnError": true, "move": {"target": "jaw", "position": 1.0, "duration": "0.4s"}}
            ]}},
            {"id": "jaw-shut", "continueOnError": true, "move": {"target": "jaw", "position": 0.0, "duration": "0.3s"}},
            {"id": "dim", "continueOnError": true, "command": {"line": "eye brightness 0.6"}},
            {"id": "linger", "delay": {"duration": "1s"}},
            {"id": "calm", "continueOnError": true, "eyePattern": {"pattern": "idle"}}
        ]),
        _ => serde_json::json!([
            {"id": "alarm", "continueOnError": true, "eyePattern": {"pattern": "angry", "brightness": 1.0}},
            {"id": "centre", "continueOnError": true, "move": {"target": "head", "position": 0.5, "duration": "0.3s"}},
            {"id": "hold", "delay": {"duration": "1s"}},
            {"id": "calm", "continueOnError": true, "eyePattern": {"pattern": "idle"}}
        ]),
    };
    serde_json::json!({
        "planId": id,
        "name": format!("soak-{}", layer.name),
        "layer": format!("LAYER_{}", layer.name.to_uppercase()),
        "loop": layer.index == 0,
        "steps": steps,
    })
    .to_string()
}

/// Runs `layer`'s plan again and again, following each run's events to its end.
async fn layer_loop(soak: Arc<Soak>, mut clients: Clients, layer: &'static LayerSpec) {
    let stats = &soak.layers[layer.index];
    lock(stats).last_progress = Some(Instant::now());
    let mut run = 0;
    while !soak.stop.is_cancelled() {
        run += 1;
        lock(stats).runs += 1;
        let request = RunPlanRequest {
            document: plan_document(layer, run),
            ..Default::default()
        };
        let source = format!("plan {}", layer.name);
        let mut stream = match clients.plan.run_plan(request).await {
            Ok(response) => response.into_inner(),
            Err(status) => {
                soak.error("rpc RunPlan", &status.to_string(), None);
                if !nap(&soak, Duration::from_secs(1)).await {
                    return;
                }
                continue;
            }
        };
        let mut ended = false;
        while !ended {
            let next = tokio::select! {
                next = stream.next() => next,
                () = soak.stop.cancelled() => return,
            };
            let event: PlanEvent = match next {
                Some(Ok(event)) => event,
                Some(Err(status)) => {
                    soak.error("rpc RunPlan", &status.to_string(), None);
                    break;
                }
                None => {
                    if !soak.stop.is_cancelled() {
                        soak.lost(format!(
                            "{} plan {run}: the RunPlan stream ended before the plan did",
                            layer.name
                        ));
                    }
                    break;
                }
            };
            let now = Instant::now();
            let mut s = lock(stats);
            match PlanEventKind::try_from(event.kind).unwrap_or_default() {
                PlanEventKind::StepFinished => {
                    s.steps += 1;
                    s.last_progress = Some(now);
                    s.stalled = false;
                }
                PlanEventKind::StepFailed => {
                    s.step_failures += 1;
                    drop(s);
                    soak.error(
                        &source,
                        &format!("step {} failed: {}", event.step_id, event.message),
                        soak.excuse("plans", now),
                    );
                }
                PlanEventKind::Paused => s.paused += 1,
                PlanEventKind::Resumed => s.resumed += 1,
                PlanEventKind::Ended => {
                    ended = true;
                    match PlanStatus::try_from(event.status).unwrap_or_default() {
                        PlanStatus::Completed => s.completed += 1,
                        PlanStatus::Cancelled if event.message.contains("soak-override") => {
                            s.preempted += 1;
                        }
                        status => {
                            s.other_ends += 1;
                            drop(s);
                            soak.error(
                                &source,
                                &format!("plan ended {status:?}: {}", event.message),
                                None,
                            );
                        }
                    }
                }
                _ => {}
            }
        }
        if !nap(&soak, between(layer.rest.0, layer.rest.1)).await {
            return;
        }
    }
}

/// Speech requests every few seconds.
async fn speaker(soak: Arc<Soak>, mut clients: Clients) {
    let mut n = 0usize;
    while nap(
        &soak,
        between(Duration::from_secs(3), Duration::from_secs(8)),
    )
    .await
    {
        n += 1;
        let request = SpeakRequest {
            text: LINES[(n * 3) % LINES.len()].into(),
            ..Default::default()
        };
        match clients.speech.speak(request).await {
            Ok(_) => {
                soak.speeches.fetch_add(1, Relaxed);
            }
            Err(status) => {
                soak.speech_errors.fetch_add(1, Relaxed);
                let why = soak.excuse("speech", Instant::now());
                soak.error(
                    "rpc Speak",
                    &format!("{:?}: {}", status.code(), status.message()),
                    why,
                );
            }
        }
    }
}

// --- sampling ----------------------------------------------------------------

/// One row of the table.
struct Sample {
    at: Duration,
    rss_kib: u64,
    threads: u64,
    fds: u64,
    dispatched: usize,
    p50_ms: f64,
    p99_ms: f64,
    bus_published: u64,
}

/// The `q` quantile of sorted `values` (nearest rank).
fn quantile<T: Copy>(sorted: &[T], q: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn ms(micros: Option<u32>) -> f64 {
    micros.map_or(f64::NAN, |m| f64::from(m) / 1000.0)
}

/// A number out of the bus metrics.
fn bus_number(status: &SystemStatus, key: &str) -> u64 {
    status
        .bus
        .as_ref()
        .map(cantina::json::struct_to_json)
        .and_then(|bus| bus[key].as_u64())
        .unwrap_or_default()
}

/// Handler errors and timeouts, summed over the bus's subscribers.
fn bus_handler_sums(status: &SystemStatus) -> (u64, u64, u64) {
    let bus = status
        .bus
        .as_ref()
        .map(cantina::json::struct_to_json)
        .unwrap_or_default();
    let handlers = bus["handlers"].as_array().cloned().unwrap_or_default();
    let sum = |key: &str| {
        handlers
            .iter()
            .map(|h| h[key].as_u64().unwrap_or_default())
            .sum::<u64>()
    };
    (sum("errors"), sum("timeouts"), sum("dropped"))
}

async fn get_status(system: &mut SystemServiceClient<AuthChannel>) -> Option<SystemStatus> {
    system
        .get_status(GetStatusRequest::default())
        .await
        .ok()
        .map(tonic::Response::into_inner)
}

/// Samples memory, latency and counters every `every`, printing a row each time, until the
/// soak stops; also checks DJ mode and the layers' progress.
async fn sampler(
    soak: Arc<Soak>,
    pid: u32,
    mut system: SystemServiceClient<AuthChannel>,
    mut clients: Clients,
    every: Duration,
) -> Vec<Sample> {
    let mut samples = Vec::new();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    println!(
        "{:>6} {:>8} {:>5} {:>7} {:>8} {:>7} {:>7} {:>9} {:>8}  audio",
        "min", "RSS MB", "fds", "threads", "disp/s", "p50 ms", "p99 ms", "tail/s", "bus ev"
    );
    let mut last_tail = 0;
    let mut last_at = Duration::ZERO;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            () = soak.stop.cancelled() => return samples,
        }
        let at = soak.start.elapsed();
        let span = (at - last_at).as_secs_f64();
        last_at = at;
        let Some((rss_kib, threads, fds)) = process_stats(pid) else {
            soak.lost("the server's /proc entry is gone: it exited".into());
            return samples;
        };
        let mut latencies = std::mem::take(&mut *lock(&soak.latencies));
        latencies.sort_unstable();
        lock(&soak.all_latencies).extend_from_slice(&latencies);
        let tail_entries: u64 = soak.tailers.iter().map(|t| t.entries.load(Relaxed)).sum();
        let status = get_status(&mut system).await;
        let mut audio = String::from("(no status)");
        if let Some(status) = &status {
            if let Some(a) = &status.audio {
                audio = format!(
                    "{} dj={} underruns={} {}",
                    a.state,
                    if a.dj_mode { "on" } else { "off" },
                    a.underruns,
                    a.track
                );
                if !a.dj_mode && !soak.stop.is_cancelled() {
                    soak.dj_off.fetch_add(1, Relaxed);
                    soak.lost(format!(
                        "DJ mode was off at {:.1} min ({}): started again",
                        soak.minutes(),
                        a.state
                    ));
                    let _ = clients
                        .command
                        .dispatch(DispatchRequest {
                            line: "dj start".into(),
                            correlation_id: String::new(),
                        })
                        .await;
                }
            }
        } else {
            soak.error("rpc GetStatus", "GetStatus failed", None);
        }
        let sample = Sample {
            at,
            rss_kib,
            threads,
            fds,
            dispatched: latencies.len(),
            p50_ms: ms(quantile(&latencies, 0.5)),
            p99_ms: ms(quantile(&latencies, 0.99)),
            bus_published: status.as_ref().map_or(0, |s| bus_number(s, "published")),
        };
        println!(
            "{:>6.1} {:>8.1} {:>5} {:>7} {:>8.0} {:>7.2} {:>7.2} {:>9.0} {:>8}  {audio}",
            at.as_secs_f64() / 60.0,
            rss_kib as f64 / 1024.0,
            fds,
            threads,
            sample.dispatched as f64 / span,
            sample.p50_ms,
            sample.p99_ms,
            (tail_entries - last_tail) as f64 / span,
            sample.bus_published,
        );
        last_tail = tail_entries;
        samples.push(sample);
        for layer in &LAYERS {
            let mut s = lock(&soak.layers[layer.index]);
            let idle = s.last_progress.map_or(Duration::ZERO, |t| t.elapsed());
            let limit = STALL + layer.rest.1;
            if idle > limit && !s.stalled {
                s.stalled = true;
                drop(s);
                soak.lost(format!(
                    "the {} layer finished no step for {:.0} s (at {:.1} min)",
                    layer.name,
                    idle.as_secs_f64(),
                    soak.minutes()
                ));
            }
        }
    }
}

// --- the verdict -------------------------------------------------------------

/// The least-squares slope of `points` (x, y).
fn slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    if points.len() < 2 {
        return 0.0;
    }
    let mx = points.iter().map(|p| p.0).sum::<f64>() / n;
    let my = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxy: f64 = points.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum();
    let sxx: f64 = points.iter().map(|p| (p.0 - mx).powi(2)).sum();
    if sxx == 0.0 { 0.0 } else { sxy / sxx }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    quantile(&sorted, 0.5).unwrap_or(f64::NAN)
}

/// `n, p50 x, max y` of durations in seconds.
fn spread(values: &[f64]) -> String {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match (quantile(&sorted, 0.5), sorted.last()) {
        (Some(p50), Some(max)) => format!("p50 {p50:.2} s, max {max:.2} s"),
        _ => "none".into(),
    }
}

/// Judges the memory samples; prints the phases; returns the failures.
fn judge_memory(samples: &[Sample], warmup: Duration, args: &Args) -> Vec<String> {
    let mut failures = Vec::new();
    let after: Vec<&Sample> = samples.iter().filter(|s| s.at >= warmup).collect();
    println!(
        "\nResident memory (VmRSS, MB) by phase (warm-up: the first {:.1} min):",
        warmup.as_secs_f64() / 60.0
    );
    let mb = |s: &&Sample| s.rss_kib as f64 / 1024.0;
    let phase = |name: &str, part: &[&Sample]| {
        if part.is_empty() {
            return;
        }
        let values: Vec<f64> = part.iter().map(mb).collect();
        println!(
            "  {name:<9} {:>5.1}–{:>5.1} min  min {:>7.1}  median {:>7.1}  max {:>7.1}  fds {}–{}",
            part[0].at.as_secs_f64() / 60.0,
            part[part.len() - 1].at.as_secs_f64() / 60.0,
            values.iter().copied().fold(f64::INFINITY, f64::min),
            median(&values),
            values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            part.iter().map(|s| s.fds).min().unwrap_or_default(),
            part.iter().map(|s| s.fds).max().unwrap_or_default(),
        );
    };
    let warm: Vec<&Sample> = samples.iter().filter(|s| s.at < warmup).collect();
    phase("warm-up", &warm);
    if after.len() < 4 {
        failures.push(format!(
            "too few samples after warm-up to judge memory ({}): run longer or sample more often",
            after.len()
        ));
        return failures;
    }
    let quarter = after.len() / 4;
    let quarters: Vec<&[&Sample]> = vec![
        &after[..quarter],
        &after[quarter..2 * quarter],
        &after[2 * quarter..3 * quarter],
        &after[3 * quarter..],
    ];
    for (i, part) in quarters.iter().enumerate() {
        phase(&format!("quarter {}", i + 1), part);
    }
    let points: Vec<(f64, f64)> = after
        .iter()
        .map(|s| (s.at.as_secs_f64() / 3600.0, mb(s)))
        .collect();
    let per_hour = slope(&points);
    let first: Vec<f64> = quarters[0].iter().map(mb).collect();
    let last: Vec<f64> = quarters[3].iter().map(mb).collect();
    let rise = median(&last) - median(&first);
    println!(
        "  after warm-up: slope {per_hour:+.2} MB/hour (limit {}), last quarter's median {rise:+.2} MB over the first's (limit {})",
        args.max_growth, args.min_growth
    );
    if per_hour > args.max_growth && rise > args.min_growth {
        failures.push(format!(
            "resident memory grows after warm-up: {per_hour:+.1} MB/hour, the last quarter's median {rise:+.1} MB over the first's"
        ));
    }
    let fds_first = after[0].fds as i64;
    let fds_last = after[after.len() - 1].fds as i64;
    if fds_last - fds_first > FD_SLACK {
        failures.push(format!(
            "open files grow after warm-up: {fds_first} → {fds_last}"
        ));
    }
    failures
}

/// Runs the whole soak; `Ok(true)` on a pass.
async fn run(args: Args) -> anyhow::Result<bool> {
    let program = match &args.server {
        Some(path) => path.clone(),
        None => std::env::current_exe()?
            .parent()
            .expect("a program is in a folder")
            .join("cantina-server"),
    };
    anyhow::ensure!(
        program.exists(),
        "{} is missing: build it (`cargo build --release -p cantina-server`) or give --server",
        program.display()
    );
    let duration = Duration::from_secs_f64(args.minutes * 60.0);
    anyhow::ensure!(
        duration >= Duration::from_secs(30),
        "--minutes must be at least 0.5"
    );
    let warmup = (duration / 5).min(WARMUP_MAX);
    let dir = std::env::temp_dir().join(format!(
        "cantina-soak-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs()
    ));
    std::fs::create_dir_all(&dir)?;
    println!(
        "cantina-soak: {} min against {} (folder {})",
        args.minutes,
        program.display(),
        dir.display()
    );

    // The simulated boards, on pseudo-terminals, in this process.
    let eyes_board = Arc::new(SimBoard::start(EyesOptions::new(dir.join("eyes")))?);
    let maestro = Arc::new(SimMaestro::start(MaestroOptions::new(dir.join("maestro")))?);
    let config = dir.join("cantina.toml");
    std::fs::write(
        &config,
        config_file(&dir, eyes_board.link(), maestro.link()),
    )?;

    let soak = Arc::new(Soak {
        start: Instant::now(),
        stop: CancellationToken::new(),
        stopping: AtomicBool::new(false),
        errors: Mutex::default(),
        lost: Mutex::default(),
        eyes: Device::new("eyes"),
        servos: Device::new("servos"),
        latencies: Mutex::default(),
        all_latencies: Mutex::default(),
        dispatched: AtomicU64::new(0),
        dispatch_errors: AtomicU64::new(0),
        speeches: AtomicU64::new(0),
        speech_errors: AtomicU64::new(0),
        layers: Default::default(),
        watcher: Mutex::default(),
        tailers: (0..args.tailers).map(|_| TailerStats::default()).collect(),
        log_lines: Mutex::default(),
        dj_off: AtomicU64::new(0),
    });
    let mut server = start_server(&program, &dir, &config, &soak).await?;
    println!("server pid {} on {}", server.pid, server.address);
    let clients = connect(&server.address, None).await?;
    let mut system = SystemServiceClient::new(clients.channel.clone());

    // The boards come up (the eyes boot in 1.5 s) before the load starts.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let status = get_status(&mut system).await;
        let up = status.as_ref().is_some_and(|s| {
            s.eyes.as_ref().is_some_and(|e| e.connected)
                && s.servos.as_ref().is_some_and(|s| s.connected)
                && s.audio.as_ref().is_some_and(|a| a.library_size > 0)
        });
        if up {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the eyes, the servos and the music library were not all ready within a minute: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut tasks = JoinSet::new();
    tasks.spawn(watcher(soak.clone(), clients.channel.clone()));
    for index in 0..args.tailers {
        let channel = connect(&server.address, None).await?.channel;
        tasks.spawn(tailer(soak.clone(), index, channel));
    }
    let dj = clients
        .command
        .clone()
        .dispatch(DispatchRequest {
            line: "dj start".into(),
            correlation_id: String::new(),
        })
        .await?;
    println!("{}", dj.into_inner().message);
    let rate = f64::from(args.dispatch_rate.max(1)) / f64::from(args.dispatch_clients);
    for _ in 0..args.dispatch_clients {
        let clients = connect(&server.address, None).await?;
        tasks.spawn(dispatcher(soak.clone(), clients, rate));
    }
    for layer in &LAYERS {
        tasks.spawn(layer_loop(soak.clone(), clients.clone(), layer));
    }
    tasks.spawn(speaker(soak.clone(), clients.clone()));
    let every = (args.unplug_min, args.unplug_max);
    tasks.spawn(unplugger(soak.clone(), "eyes", eyes_board.clone(), every));
    tasks.spawn(unplugger(soak.clone(), "servos", maestro.clone(), every));
    let sampling = tokio::spawn(sampler(
        soak.clone(),
        server.pid,
        system.clone(),
        clients.clone(),
        args.sample,
    ));

    // The run; the server must not exit meanwhile.
    let exited_early = tokio::select! {
        () = tokio::time::sleep(duration) => None,
        status = server.child.wait() => Some(status),
    };
    if let Some(status) = &exited_early {
        soak.lost(format!("the server exited during the run: {status:?}"));
    }
    soak.stop.cancel();
    let samples = sampling.await?;
    // The unpluggers end with their board plugged back in and recovered.
    while tokio::time::timeout(
        RECOVERY_DEADLINE + Duration::from_secs(10),
        tasks.join_next(),
    )
    .await
    .ok()
    .flatten()
    .is_some()
    {}
    let final_status = get_status(&mut system).await;
    // From here on the server is being stopped: the panic button's notice and shutdown's.
    soak.stopping.store(true, Relaxed);
    let _ = clients
        .plan
        .clone()
        .stop_all(StopAllRequest::default())
        .await;

    // Stop the server as a signal would, and see it go cleanly.
    let mut clean = false;
    if exited_early.is_none() {
        // SAFETY: kill with a pid of our own child and a valid signal number has no
        // memory-safety requirements.
        unsafe {
            nix::libc::kill(server.pid as i32, nix::libc::SIGTERM);
        }
        match tokio::time::timeout(Duration::from_secs(20), server.child.wait()).await {
            Ok(Ok(status)) if status.success() => clean = true,
            Ok(status) => soak.lost(format!("the server did not exit cleanly: {status:?}")),
            Err(_) => {
                soak.lost("the server did not exit within 20 s of SIGTERM".into());
                let _ = server.child.kill().await;
            }
        }
    }
    // Let the stderr thread read the last lines.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let failures = report(&soak, &args, &samples, warmup, final_status.as_ref(), clean);
    drop(eyes_board);
    drop(maestro);
    if failures.is_empty() {
        println!("\nPASS: {} min soak", args.minutes);
        if !args.keep {
            let _ = std::fs::remove_dir_all(&dir);
        }
        Ok(true)
    } else {
        println!("\nFAIL:");
        for failure in &failures {
            println!("  - {failure}");
        }
        println!(
            "(the server's data, logs and stderr are in {})",
            dir.display()
        );
        Ok(false)
    }
}

/// Prints everything measured and returns the failures.
fn report(
    soak: &Soak,
    args: &Args,
    samples: &[Sample],
    warmup: Duration,
    status: Option<&SystemStatus>,
    clean: bool,
) -> Vec<String> {
    let mut failures = judge_memory(samples, warmup, args);

    let mut all = std::mem::take(&mut *lock(&soak.all_latencies));
    all.sort_unstable();
    println!(
        "\nDispatch `status`: {} calls, {} errors; latency p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.2} ms",
        soak.dispatched.load(Relaxed),
        soak.dispatch_errors.load(Relaxed),
        ms(quantile(&all, 0.5)),
        ms(quantile(&all, 0.99)),
        ms(quantile(&all, 0.999)),
        ms(all.last().copied()),
    );
    if let (Some(first), Some(last)) = (samples.first(), samples.last()) {
        let rows: Vec<&Sample> = samples.iter().filter(|s| s.dispatched > 0).collect();
        let worst = rows.iter().map(|s| s.p99_ms).fold(0.0, f64::max);
        println!(
            "  per sample: p99 from {:.2} ms (first) to {:.2} ms (last), worst {worst:.2} ms; threads {}–{}",
            first.p99_ms,
            last.p99_ms,
            samples.iter().map(|s| s.threads).min().unwrap_or_default(),
            samples.iter().map(|s| s.threads).max().unwrap_or_default(),
        );
    }

    println!("\nDrop counters:");
    let entries: Vec<u64> = soak
        .tailers
        .iter()
        .map(|t| t.entries.load(Relaxed))
        .collect();
    let sum = |f: fn(&TailerStats) -> u64| soak.tailers.iter().map(f).sum::<u64>();
    let markers = sum(|t| t.markers.load(Relaxed));
    let skipped = sum(|t| t.skipped.load(Relaxed));
    let unmarked = sum(|t| t.unmarked.load(Relaxed));
    println!(
        "  TailLogs ×{}: {} entries each (min) to {} (max); gap markers {markers}, entries skipped {skipped}, gaps without a marker {unmarked}",
        soak.tailers.len(),
        entries.iter().min().unwrap_or(&0),
        entries.iter().max().unwrap_or(&0),
    );
    for (i, t) in soak.tailers.iter().enumerate() {
        let skipped = t.skipped.load(Relaxed);
        if skipped > 0 {
            println!(
                "    tailer {i}: {} gap markers, {skipped} skipped",
                t.markers.load(Relaxed)
            );
        }
    }
    if unmarked > 0 {
        failures.push(format!(
            "TailLogs followers lost {unmarked} entries without a gap marker"
        ));
    }
    if entries.contains(&0) {
        failures.push("a TailLogs follower got no entry at all".into());
    }
    let vetoed = status.map_or(0, |s| bus_number(s, "vetoed"));
    {
        let w = lock(&soak.watcher);
        let span = w.min_seq.map_or(0, |min| w.max_seq - min + 1);
        let unaccounted = span as i64 - w.events as i64 - w.missed as i64 - vetoed as i64;
        println!(
            "  WatchEvents: {} events (seq {}–{}), missed markers {} for {} events, unaccounted {unaccounted}",
            w.events,
            w.min_seq.unwrap_or_default(),
            w.max_seq,
            w.markers,
            w.missed
        );
        let mut topics: Vec<(&String, &u64)> = w.per_topic.iter().collect();
        topics.sort_by(|a, b| b.1.cmp(a.1));
        let top: Vec<String> = topics
            .iter()
            .take(12)
            .map(|(t, n)| format!("{t} {n}"))
            .collect();
        println!("    busiest topics: {}", top.join(", "));
        if unaccounted != 0 {
            failures.push(format!(
                "the WatchEvents watcher has {unaccounted} events neither received nor reported missed"
            ));
        }
        if w.events == 0 {
            failures.push("the WatchEvents watcher got no event".into());
        }
    }
    match status {
        Some(s) => {
            let (errors, timeouts, handler_drops) = bus_handler_sums(s);
            let dropped = bus_number(s, "dropped");
            let dead = bus_number(s, "dead_letters");
            println!(
                "  bus (GetStatus): published {}, delivered {}, dropped {dropped}, vetoed {vetoed}, dead letters {dead}; handlers: errors {errors}, timeouts {timeouts}, dropped {handler_drops}",
                bus_number(s, "published"),
                bus_number(s, "delivered"),
            );
            if dropped > 0 || handler_drops > 0 {
                failures.push(format!(
                    "the bus dropped {dropped} events ({handler_drops} from its handlers' queues)"
                ));
            }
            if timeouts > 0 {
                failures.push(format!("bus handlers timed out {timeouts} times"));
            }
            if let Some(a) = &s.audio {
                println!(
                    "  audio: underruns {} (printed, not judged), state {}, DJ mode {}, library {} tracks, last error {:?}",
                    a.underruns,
                    a.state,
                    if a.dj_mode { "on" } else { "off" },
                    a.library_size,
                    a.last_error
                );
            }
            if let Some(sp) = &s.speech {
                println!(
                    "  speech: {} utterances, engine {}, cache {} clips ({} KiB), problem {:?}, last error {:?}",
                    sp.utterances,
                    sp.engine,
                    sp.cache_clips,
                    sp.cache_bytes / 1024,
                    sp.problem,
                    sp.last_error
                );
            }
            for sub in &s.subsystems {
                if sub.status != cantina::v1::ServiceStatus::Running as i32 {
                    failures.push(format!(
                        "subsystem {} ended the run {:?}: {}",
                        sub.name,
                        cantina::v1::ServiceStatus::try_from(sub.status).unwrap_or_default(),
                        sub.message
                    ));
                }
            }
        }
        None => failures.push("GetStatus failed at the end of the run".into()),
    }
    println!(
        "  DJ mode found off: {} times; server log lines: {:?}",
        soak.dj_off.load(Relaxed),
        lock(&soak.log_lines)
    );

    println!(
        "\nPlans (runs, completed, pre-empted by the override, other ends, steps done, steps failed, paused, resumed):"
    );
    for layer in &LAYERS {
        let s = lock(&soak.layers[layer.index]);
        println!(
            "  {:<10} {:>5} {:>5} {:>5} {:>5} {:>7} {:>5} {:>5} {:>5}",
            layer.name,
            s.runs,
            s.completed,
            s.preempted,
            s.other_ends,
            s.steps,
            s.step_failures,
            s.paused,
            s.resumed
        );
        if s.steps == 0 {
            failures.push(format!("the {} layer finished no step", layer.name));
        }
    }
    println!(
        "Speech requests: {} spoken, {} refused",
        soak.speeches.load(Relaxed),
        soak.speech_errors.load(Relaxed)
    );

    println!("\nUnplugs:");
    for device in [&soak.eyes, &soak.servos] {
        let unplugs = device.unplugs.load(Relaxed);
        println!(
            "  {:<7} {unplugs} unplugged; reported lost {}; recovered after replug {}",
            device.name,
            spread(&lock(&device.detections)),
            spread(&lock(&device.recoveries)),
        );
        if unplugs == 0 && args.minutes * 60.0 > args.unplug_max.as_secs_f64() * 2.0 {
            failures.push(format!("the {} board was never unplugged", device.name));
        }
    }

    println!("\nErrors (explained / unexplained, by source and message):");
    let errors = lock(&soak.errors);
    if errors.is_empty() {
        println!("  none");
    }
    let mut unexplained = 0;
    for ((source, _), tally) in errors.iter() {
        let reasons: Vec<&str> = tally.reasons.iter().copied().collect();
        println!(
            "  {:>6} / {:<6} {source}: {}{}",
            tally.explained,
            tally.unexplained,
            tally.example,
            if reasons.is_empty() {
                String::new()
            } else {
                format!("  [{}]", reasons.join("; "))
            }
        );
        unexplained += tally.unexplained;
    }
    if unexplained > 0 {
        failures.push(format!("{unexplained} unexplained errors (see above)"));
    }
    let lost = lock(&soak.lost);
    if !lost.is_empty() {
        println!("\nLost events and stopped loops:");
        for what in lost.iter() {
            println!("  {what}");
        }
        failures.extend(lost.iter().cloned());
    }
    if !clean && failures.is_empty() {
        failures.push("the server did not stop cleanly".into());
    }
    failures
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_fold_into_one_group() {
        assert_eq!(fold_digits("lost 3 of 12 (seq 99)"), "lost # of # (seq #)");
        assert_eq!(fold_digits("no digits"), "no digits");
    }

    #[test]
    fn the_slope_of_a_line_is_its_growth() {
        let points: Vec<(f64, f64)> = (0..10)
            .map(|i| (f64::from(i), 2.0 * f64::from(i) + 5.0))
            .collect();
        assert!((slope(&points) - 2.0).abs() < 1e-9);
        let flat: Vec<(f64, f64)> = (0..10).map(|i| (f64::from(i), 7.0)).collect();
        assert_eq!(slope(&flat), 0.0);
    }

    #[test]
    fn quantiles_are_nearest_rank() {
        let values: Vec<u32> = (1..=100).collect();
        assert_eq!(quantile(&values, 0.5), Some(50));
        assert_eq!(quantile(&values, 0.99), Some(99));
        assert_eq!(quantile(&values, 1.0), Some(100));
        assert_eq!(quantile::<u32>(&[], 0.5), None);
    }

    #[test]
    fn plan_documents_are_plans() {
        for layer in &LAYERS {
            let plan: cantina::v1::Plan =
                cantina::json::from_json(&plan_document(layer, 3)).expect("a valid plan");
            assert_eq!(plan.plan_id, format!("soak-{}-3", layer.name));
            assert!(!plan.steps.is_empty());
        }
    }
}
