//! Eyes benchmark: the actor against the simulated board on a real
//! pseudo-terminal, beside what a 115,200-baud line itself allows, in one run.
//!
//! The eyes (`Eyes` handle, actor thread, `serialport`) are started by a
//! `Supervisor` on the simulated board ([`SimBoard`]), which paces bytes at
//! 115,200 baud 8N1 (11,520 bytes/s) in both directions like the Arduino's
//! UART, answers each command `+\r\n` (Arduino's `println`) and reports when
//! it read each byte from the pty.
//!
//! 1. **Command → bytes on the wire.** One `set_pattern` at a time (the
//!    answer awaited before the next): the time from the call to the moment
//!    the simulator read the command's bytes from the pty, and the whole
//!    round trip (call → confirmed). Beside them the line's own times: 2 bytes
//!    out (174 µs); and for the round trip the command character in and the
//!    3-byte answer back (347 µs: the firmware answers as soon as it has the
//!    character, while the `\n` is still on its way).
//! 2. **Commands per second.** `C` callers each sending commands as fast as
//!    their answers come back, alternating two patterns so every command
//!    changes something. The wire's limit is set by the longer direction:
//!    3 answer bytes per command back = 3,840 commands/s. One caller (stop and
//!    wait: out and back in turn, at best 4 byte-times a command = 2,880/s)
//!    is shown beside many callers
//!    (pipelined: up to `WINDOW` commands in flight). Target: ≥ 0.8× the
//!    wire's limit.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use cantina_server::{
    bus::Bus,
    config::{Config, EyesPort},
    eyes::{
        Eyes, Pattern,
        sim::{SimBoard, SimEvent, SimOptions},
    },
    lifecycle::Supervisor,
};

/// Bytes a second on a 115,200-baud 8N1 line.
const WIRE_BYTES_PER_S: f64 = 115_200.0 / 10.0;
/// A command on the wire: its character and `\n`.
const COMMAND_BYTES: f64 = 2.0;
/// An answer on the wire: `+\r\n`.
const ANSWER_BYTES: f64 = 3.0;

struct Plan {
    latency_samples: usize,
    throughput_commands: usize,
    callers: &'static [usize],
}

impl Plan {
    const FULL: Plan = Plan {
        latency_samples: 1000,
        throughput_commands: 12_000,
        callers: &[1, 4, 16, 64],
    };
    const QUICK: Plan = Plan {
        latency_samples: 20,
        throughput_commands: 200,
        callers: &[1, 16],
    };
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn micros(d: Duration) -> String {
    format!("{:.0} µs", d.as_secs_f64() * 1e6)
}

async fn start(board: &SimBoard) -> (Eyes, Supervisor) {
    let mut settings = Config::default().eyes;
    settings.heartbeat = Duration::ZERO;
    let bus = Bus::default();
    let eyes = Eyes::new(
        EyesPort::Path(board.link().to_path_buf()),
        settings,
        bus.clone(),
    );
    let supervisor = Supervisor::new(vec![Arc::new(eyes.clone())], vec![Arc::new(bus)]);
    supervisor.start_all().await.expect("the eyes start");
    assert!(eyes.state().connected, "the eyes reach the simulated board");
    (eyes, supervisor)
}

/// Call → bytes read by the board, and call → confirmed, one at a time.
async fn latency(board: &SimBoard, eyes: &Eyes, samples: usize) -> (Vec<Duration>, Vec<Duration>) {
    let events = board.events();
    let mut to_wire = Vec::with_capacity(samples);
    let mut round_trip = Vec::with_capacity(samples);
    for i in 0..samples {
        let pattern = if i % 2 == 0 {
            Pattern::Happy
        } else {
            Pattern::Sad
        };
        let began = Instant::now();
        eyes.set_pattern(pattern).await.expect("the board confirms");
        round_trip.push(began.elapsed());
        let read_at = loop {
            match events
                .recv_timeout(Duration::from_secs(5))
                .expect("an event")
            {
                SimEvent::Received { read_at, .. } => break read_at,
                _ => continue,
            }
        };
        to_wire.push(read_at.saturating_duration_since(began));
        // Drain the rest of this command's events.
        while events.try_recv().is_ok() {}
    }
    to_wire.sort();
    round_trip.sort();
    (to_wire, round_trip)
}

/// Commands per second with `callers` concurrent callers.
async fn throughput(eyes: &Eyes, callers: usize, total: usize) -> f64 {
    let per_caller = total / callers;
    let began = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let eyes = eyes.clone();
            tokio::spawn(async move {
                for i in 0..per_caller {
                    let pattern = if (i + c) % 2 == 0 {
                        Pattern::Thinking
                    } else {
                        Pattern::Listening
                    };
                    eyes.set_pattern(pattern).await.expect("the board confirms");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("caller");
    }
    (per_caller * callers) as f64 / began.elapsed().as_secs_f64()
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let plan = if full { Plan::FULL } else { Plan::QUICK };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let mut options = SimOptions::new(dir.path().join("eyes"));
    options.boot_delay = Duration::from_millis(50);
    let board = SimBoard::start(options).expect("the simulated board");

    println!("# Eyes: the actor on a simulated board at 115,200 baud (pty, real serialport)");
    println!();
    if !full {
        println!("QUICK CHECK (no --bench argument): few commands; run `cargo bench` for figures.");
        println!();
    }
    println!(
        "{} build; the board paces both directions at {WIRE_BYTES_PER_S:.0} bytes/s.",
        if cfg!(debug_assertions) {
            "debug (figures meaningless)"
        } else {
            "release"
        }
    );
    runtime.block_on(async {
        let (eyes, supervisor) = start(&board).await;
        let wire_out = Duration::from_secs_f64(COMMAND_BYTES / WIRE_BYTES_PER_S);
        let wire_round = Duration::from_secs_f64((1.0 + ANSWER_BYTES) / WIRE_BYTES_PER_S);

        let (to_wire, round_trip) = latency(&board, &eyes, plan.latency_samples).await;
        println!();
        println!("## Latency ({} commands, one at a time)", plan.latency_samples);
        println!();
        println!("| measure | p50 | p99 | the line's own time | p50 ÷ line |");
        println!("|---|---:|---:|---:|---:|");
        println!(
            "| call → bytes read by the board | {} | {} | 2 bytes out: {} | {:.2}× |",
            micros(percentile(&to_wire, 0.5)),
            micros(percentile(&to_wire, 0.99)),
            micros(wire_out),
            percentile(&to_wire, 0.5).as_secs_f64() / wire_out.as_secs_f64()
        );
        println!(
            "| call → confirmed (round trip) | {} | {} | 1 in + 3 back: {} | {:.2}× |",
            micros(percentile(&round_trip, 0.5)),
            micros(percentile(&round_trip, 0.99)),
            micros(wire_round),
            percentile(&round_trip, 0.5).as_secs_f64() / wire_round.as_secs_f64()
        );

        let limit = WIRE_BYTES_PER_S / ANSWER_BYTES.max(COMMAND_BYTES);
        let stop_and_wait = WIRE_BYTES_PER_S / (1.0 + ANSWER_BYTES);
        println!();
        println!(
            "## Throughput ({} commands per row; wire limit {limit:.0} commands/s, stop-and-wait limit {stop_and_wait:.0}/s)",
            plan.throughput_commands
        );
        println!();
        println!("| callers | commands/s | ÷ wire limit (target ≥ 0.8×) |");
        println!("|---:|---:|---:|");
        for &callers in plan.callers {
            let rate = throughput(&eyes, callers, plan.throughput_commands).await;
            let ratio = rate / limit;
            let mark = if ratio >= 0.8 { " ✓" } else { "" };
            println!("| {callers} | {rate:.0} | **{ratio:.2}×**{mark} |");
        }
        supervisor.stop_all().await;
    });
}
