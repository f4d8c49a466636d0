//! RPC benchmark: the real server beside a bare tonic server, in one run, each
//! on the same pinned core, loaded by `h2load` (Debian's `nghttp2-client`)
//! pinned to another.
//!
//! The bare server is what tonic alone costs: the same transport settings
//! (`TCP_NODELAY`), health, reflection, and a `CommandService` whose
//! `Dispatch` echoes the line back without doing anything. The real server
//! is `cantina_server::start` with virtual audio and eyes and its logs
//! captured as in the binary (without stderr output).
//!
//! 1. **Throughput**: `Dispatch("status")` from many connections × streams
//!    (16 × 10), requests a second. Target: ≥ 0.9× the bare echo.
//! 2. **Single-call latency**: one connection, one call at a time, p50 and
//!    p99 from h2load's per-request log. Target: p50 ≤ bare + 50 µs.
//! 3. Beside them, for reference, through the same harness: `Dispatch("idle")`
//!    while IDLE (the dispatch path around a command with nothing to do),
//!    `Dispatch("help")`,
//!    `GetStatus`, `TailLogs` (a 100-entry backlog, no follow) and a health
//!    check on both servers.
//!
//! 4. **Where the time goes**: the parts of `Dispatch("status")` timed in
//!    process (the dispatcher, its log line and event, the reply's
//!    conversion to proto, the correlation id).
//!
//! Each response's size is shown, so that an error (a trailers-only answer,
//! which h2load counts as success) cannot pass for speed.

use std::{
    io::Write as _,
    net::SocketAddr,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use cantina::v1::{DispatchRequest, DispatchResponse, GetStatusRequest, TailLogsRequest};
use prost::Message;
use tokio::runtime::Runtime;

#[path = "bare/mod.rs"]
mod bare;

/// The core the servers run on, and the one h2load runs on.
const SERVER_CORE: usize = 1;
const LOAD_CORE: usize = 0;

struct Plan {
    /// Seconds of load for a throughput figure (after a 1 s warm-up).
    seconds: u32,
    /// Calls for a latency figure.
    calls: usize,
}

impl Plan {
    const FULL: Plan = Plan {
        seconds: 4,
        calls: 4000,
    };
    const QUICK: Plan = Plan {
        seconds: 1,
        calls: 200,
    };
}

/// Pins the calling thread to `core` (when the machine has it).
fn pin(core: usize) {
    if std::thread::available_parallelism().map_or(1, |n| n.get()) <= core {
        return;
    }
    // SAFETY: a zeroed cpu_set_t is a valid empty set; the calls only read it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// A runtime with one worker whose threads (workers, blocking pool) all run
/// on `core`; threads they start inherit it. The threads are named `name`,
/// so that a profiler can tell the servers apart (`perf report --comm`).
fn pinned_runtime(name: &str, core: usize) -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name(name)
        .on_thread_start(move || pin(core))
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// The bare tonic server: health, reflection and the echo, nothing else.
async fn bare_server() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(bare::serve(listener));
    address
}

/// The real server, as the binary runs it but with virtual hardware.
async fn real_server(dir: &Path) -> cantina_server::RunningServer {
    cantina_server::telemetry::init_capture_only("info");
    let defaults = cantina_server::config::Config::default();
    let config = cantina_server::config::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        log_dir: dir.join("logs"),
        audio: cantina_server::config::AudioSettings {
            data_dir: dir.join("data"),
            music_dir: Some(dir.join("music")),
            output: cantina_server::config::AudioOutput::Virtual,
            ..defaults.audio.clone()
        },
        eyes_port: cantina_server::config::EyesPort::Virtual,
        ..defaults
    };
    std::fs::create_dir_all(dir.join("music")).unwrap();
    cantina_server::start(config).await.expect("server starts")
}

/// A gRPC message body: the 5-byte frame header, then the message.
fn grpc_body(message: &impl Message, path: &Path) -> std::path::PathBuf {
    let bytes = message.encode_to_vec();
    let mut framed = vec![0u8];
    framed.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    framed.extend_from_slice(&bytes);
    std::fs::File::create(path)
        .and_then(|mut f| f.write_all(&framed))
        .expect("writes the request body");
    path.to_path_buf()
}

/// One RPC to load: where, which method, with which body.
struct Call<'a> {
    address: SocketAddr,
    method: &'a str,
    body: &'a Path,
}

/// What h2load measured.
struct Load {
    requests_per_s: f64,
    /// Streams that failed, errored or timed out.
    failed: u64,
    /// Response body bytes per request (frames, not headers).
    bytes_per_response: f64,
}

fn h2load(call: &Call, args: &[String]) -> String {
    let mut command = Command::new("h2load");
    command
        .args(args)
        .args(["-d", &call.body.display().to_string()])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers"])
        .arg(format!("http://{}/{}", call.address, call.method));
    // SAFETY: only sets the child's CPU affinity between fork and exec.
    unsafe {
        use std::os::unix::process::CommandExt as _;
        command.pre_exec(|| {
            pin(LOAD_CORE);
            Ok(())
        });
    }
    let output = command.output().unwrap_or_else(|e| {
        panic!("cannot run h2load ({e}): install it with `apt-get install nghttp2-client`")
    });
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "h2load failed:\n{text}");
    text
}

/// The number right after `label` in h2load's report.
fn number_after(text: &str, label: &str) -> f64 {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("'{label}' in h2load's output:\n{text}"));
    text[at + label.len()..]
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("a number after '{label}':\n{text}"))
}

/// Requests a second from `connections` × `streams`, for `seconds`.
fn throughput(call: &Call, connections: u32, streams: u32, seconds: u32) -> Load {
    let text = h2load(
        call,
        &[
            "-c".into(),
            connections.to_string(),
            "-m".into(),
            streams.to_string(),
            "-t".into(),
            "1".into(),
            "--warm-up-time=1".into(),
            format!("-D{seconds}"),
        ],
    );
    let succeeded = number_after(&text, "done,") as u64;
    Load {
        requests_per_s: number_before(&text, " req/s"),
        failed: ["succeeded,", "failed,", "errored,"]
            .iter()
            .map(|label| number_after(&text, label) as u64)
            .sum(),
        bytes_per_response: number_before(&text, ") data") / succeeded.max(1) as f64,
    }
}

/// The number right before `label` in h2load's report
/// (`12345.67 req/s`, `(4786710) data`).
fn number_before(text: &str, label: &str) -> f64 {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("'{label}' in h2load's output:\n{text}"));
    let digits: String = text[..at]
        .chars()
        .rev()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits
        .chars()
        .rev()
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("a number before '{label}':\n{text}"))
}

/// p50 and p99 of one call at a time on one connection.
fn latency(call: &Call, calls: usize, log: &Path) -> (Duration, Duration) {
    let _ = std::fs::remove_file(log);
    h2load(
        call,
        &[
            "-c1".into(),
            "-m1".into(),
            "-t1".into(),
            format!("-n{calls}"),
            format!("--log-file={}", log.display()),
        ],
    );
    let mut micros: Vec<u64> = std::fs::read_to_string(log)
        .expect("h2load's request log")
        .lines()
        .filter_map(|line| {
            let mut columns = line.split('\t');
            let status = columns.nth(1)?;
            (status == "200").then(|| columns.next()?.trim().parse().ok())?
        })
        .collect();
    assert_eq!(micros.len(), calls, "every call answered 200");
    micros.sort_unstable();
    let at = |q: f64| Duration::from_micros(micros[((micros.len() - 1) as f64 * q) as usize]);
    (at(0.50), at(0.99))
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

fn check(ok: bool) -> &'static str {
    if ok { "✓" } else { "✗" }
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let plan = if full { Plan::FULL } else { Plan::QUICK };
    let dir = tempfile::tempdir().expect("a temporary folder");
    let body =
        |name: &str, message: &dyn Fn(&Path) -> std::path::PathBuf| message(&dir.path().join(name));
    let status = body("status.bin", &|p| {
        grpc_body(
            &DispatchRequest {
                line: "status".into(),
                correlation_id: String::new(),
            },
            p,
        )
    });
    let idle = body("idle.bin", &|p| {
        grpc_body(
            &DispatchRequest {
                line: "idle".into(),
                correlation_id: String::new(),
            },
            p,
        )
    });
    let help = body("help.bin", &|p| {
        grpc_body(
            &DispatchRequest {
                line: "help".into(),
                correlation_id: String::new(),
            },
            p,
        )
    });
    let get_status = body("get_status.bin", &|p| grpc_body(&GetStatusRequest {}, p));
    let tail = body("tail.bin", &|p| {
        grpc_body(
            &TailLogsRequest {
                tail: 100,
                ..TailLogsRequest::default()
            },
            p,
        )
    });
    let health = body("health.bin", &|p| {
        grpc_body(
            &tonic_health::pb::HealthCheckRequest {
                service: String::new(),
            },
            p,
        )
    });

    const DISPATCH: &str = "cantina.v1.CommandService/Dispatch";
    const HEALTH: &str = "grpc.health.v1.Health/Check";
    let on = |address, method, body| Call {
        address,
        method,
        body,
    };
    let log = dir.path().join("requests.log");
    let begun = Instant::now();

    // The bare server alone first, so that the real server's own background
    // work (its paced virtual output, its ticks) weighs on its figures only.
    let bare_runtime = pinned_runtime("bare-tonic", SERVER_CORE);
    let bare_address = bare_runtime.block_on(bare_server());
    let bare = on(bare_address, DISPATCH, &status);
    let base = throughput(&bare, 16, 10, plan.seconds);
    let health_bare = throughput(&on(bare_address, HEALTH, &health), 16, 10, plan.seconds);
    let (bare_p50, bare_p99) = latency(&bare, plan.calls, &log);
    drop(bare_runtime);

    // Then the real server, started from a thread on the same core, so that
    // every thread it starts (log file, eyes, audio output) runs there too.
    pin(SERVER_CORE);
    let real_runtime = pinned_runtime("cantina", SERVER_CORE);
    let real = real_runtime.block_on(real_server(dir.path()));
    let real_address = real.local_addr();

    println!("# RPCs: the real server beside a bare tonic server (h2load)");
    println!();
    if !full {
        println!("QUICK CHECK (no --bench argument): short runs; run `cargo bench` for figures.");
        println!();
    }
    println!(
        "{} build; both servers on core {SERVER_CORE} (one tokio worker each, every thread of theirs there; the bare one measured first, alone), h2load on core {LOAD_CORE}.",
        if cfg!(debug_assertions) {
            "debug (figures meaningless)"
        } else {
            "release"
        }
    );
    println!();

    // 1. Throughput.
    let real_status = throughput(&on(real_address, DISPATCH, &status), 16, 10, plan.seconds);
    let ratio = real_status.requests_per_s / base.requests_per_s;
    println!("## Throughput, 16 connections × 10 streams");
    println!();
    println!(
        "| RPC | server | req/s | bytes/response | failed, errored, timed out | ratio to bare | target |"
    );
    println!("|---|---|---:|---:|---:|---:|---|");
    let row = |name: &str, server: &str, load: &Load, target: &str| {
        println!(
            "| {name} | {server} | {:.0} | {:.0} | {} | {:.2}× | {target} |",
            load.requests_per_s,
            load.bytes_per_response,
            load.failed,
            load.requests_per_s / base.requests_per_s
        );
    };
    row("Dispatch (echo)", "bare tonic", &base, "");
    row(
        "Dispatch(\"status\")",
        "cantina",
        &real_status,
        &format!("≥ 0.90× {}", check(ratio >= 0.9)),
    );
    let others = [
        ("Dispatch(\"idle\"), already IDLE", DISPATCH, &idle),
        ("Dispatch(\"help\")", DISPATCH, &help),
        (
            "GetStatus",
            "cantina.v1.SystemService/GetStatus",
            &get_status,
        ),
        (
            "TailLogs (tail 100, no follow)",
            "cantina.v1.LogService/TailLogs",
            &tail,
        ),
        ("Health/Check", HEALTH, &health),
    ];
    for (name, method, body) in others {
        let load = throughput(&on(real_address, method, body), 16, 10, plan.seconds);
        row(name, "cantina", &load, "");
    }
    row("Health/Check", "bare tonic", &health_bare, "");
    println!();

    // 2. Latency.
    println!("## Single-call latency, 1 connection, 1 call at a time");
    println!();
    println!("| RPC | server | p50 | p99 | p50 − bare | target |");
    println!("|---|---|---:|---:|---:|---|");
    println!(
        "| Dispatch (echo) | bare tonic | {} | {} | | |",
        micros(bare_p50),
        micros(bare_p99)
    );
    let latency_row = |name: &str, call: Call, target: bool| {
        let (p50, p99) = latency(&call, plan.calls, &log);
        let extra = p50.as_secs_f64() * 1e6 - bare_p50.as_secs_f64() * 1e6;
        println!(
            "| {name} | cantina | {} | {} | {extra:+.0} µs | {} |",
            micros(p50),
            micros(p99),
            if target {
                format!("≤ +50 µs {}", check(extra <= 50.0))
            } else {
                String::new()
            }
        );
    };
    latency_row(
        "Dispatch(\"status\")",
        on(real_address, DISPATCH, &status),
        true,
    );
    latency_row(
        "Dispatch(\"help\")",
        on(real_address, DISPATCH, &help),
        false,
    );
    latency_row(
        "GetStatus",
        on(
            real_address,
            "cantina.v1.SystemService/GetStatus",
            &get_status,
        ),
        false,
    );
    latency_row("Health/Check", on(real_address, HEALTH, &health), false);
    println!();

    // 3. Where the time goes.
    println!("## Where Dispatch(\"status\")'s time goes (in process, on core {SERVER_CORE})");
    println!();
    println!("| step | µs per call |");
    println!("|---|---:|");
    let droid = real.droid().clone();
    let dispatcher = cantina_server::commands::Dispatcher::new(droid.clone());
    let rounds = plan.calls * 5;
    let per_call = |elapsed: Duration| elapsed.as_secs_f64() * 1e6 / rounds as f64;
    let (whole, reply) = real_runtime.block_on(async {
        let started = Instant::now();
        let mut last = None;
        for _ in 0..rounds {
            last = Some(dispatcher.dispatch("status").await.expect("status runs"));
        }
        (started.elapsed(), last.expect("ran").reply)
    });
    println!(
        "| `Dispatcher::dispatch(\"status\")`: parse, log line, the command, `command.executed` | {:.1} |",
        per_call(whole)
    );
    let started = Instant::now();
    for _ in 0..rounds {
        tracing::info!(command = "status", args = ?Vec::<String>::new(), "running command");
    }
    println!(
        "| … of which one captured log line (`running command`) | {:.1} |",
        per_call(started.elapsed())
    );
    let started = Instant::now();
    for _ in 0..rounds {
        droid.bus.emit(
            cantina_server::bus::Topic::CommandExecuted,
            "commands",
            serde_json::json!({ "command": "status", "args": Vec::<String>::new(), "message": reply.message }),
        );
    }
    println!(
        "| … of which the `command.executed` event | {:.1} |",
        per_call(started.elapsed())
    );
    let started = Instant::now();
    let mut bytes = 0;
    for _ in 0..rounds {
        let response = DispatchResponse {
            command: "status".into(),
            message: reply.message.clone(),
            correlation_id: String::new(),
            data: reply.data.clone().map(cantina::json::struct_from_json),
            args: Vec::new(),
        };
        bytes += response.encode_to_vec().len();
    }
    println!(
        "| the reply as proto: `data` JSON → `Struct`, encoded ({} bytes) | {:.1} |",
        bytes / rounds,
        per_call(started.elapsed())
    );
    let started = Instant::now();
    for _ in 0..rounds {
        std::hint::black_box(uuid::Uuid::new_v4());
    }
    println!(
        "| a correlation id (UUID v4) | {:.1} |",
        per_call(started.elapsed())
    );
    println!(
        "| for scale: the bare echo's whole request at its throughput | {:.1} |",
        1e6 / base.requests_per_s
    );
    println!();
    println!("(measured in {:.0?})", begun.elapsed());

    let stopped = real_runtime.block_on(real.stop());
    stopped.expect("the server stops cleanly");
}
