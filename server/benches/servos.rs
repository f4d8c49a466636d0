//! Servos benchmark: the actor against the simulated Maestro on a real
//! pseudo-terminal, beside what a 115,200-baud line itself allows, in one run.
//!
//! The servos (`Servos` handle, actor thread, `serialport`) are started by a
//! `Supervisor` on the simulated board ([`SimMaestro`]), which paces bytes
//! at 115,200 baud 8N1 (11,520 bytes/s) like the Maestro's UART and records
//! when each Set Target finished arriving.
//!
//! 1. **Targets per second.** `step` moves on 8 servos, each one Set Target
//!    of 4 bytes, asked as fast as `move_to` returns. The wire carries at
//!    most 2,880 of them a second; the rate is measured at the board, from
//!    the first target's arrival to the last's. Target: ≥ 0.8× the wire.
//! 2. **Timing of interpolated moves.** 1 s ease-in-out moves on 4 servos
//!    at once (50 Hz each, 200 targets a second): for every target the
//!    board got, how far its arrival is from the moment the ideal curve
//!    passes that value. Target: p99 ≤ one 20 ms frame.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use cantina_server::{
    bus::Bus,
    config::{Config, ServoPort, ServoSpec},
    lifecycle::Supervisor,
    servos::{
        Easing, Servos,
        motion::Path,
        protocol,
        sim::{SimMaestro, SimOptions, TargetRecord},
    },
};

/// Bytes a second on a 115,200-baud 8N1 line.
const WIRE_BYTES_PER_S: f64 = 115_200.0 / 10.0;
/// A Set Target on the wire.
const TARGET_BYTES: f64 = 4.0;
/// One frame of host interpolation.
const FRAME: Duration = Duration::from_millis(20);

struct Plan {
    targets: usize,
    moves: usize,
}

impl Plan {
    const FULL: Plan = Plan {
        targets: 20_000,
        moves: 10,
    };
    const QUICK: Plan = Plan {
        targets: 1_000,
        moves: 2,
    };
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

async fn start(board: &SimMaestro, servos: usize) -> (Servos, Supervisor) {
    let mut settings = Config::default().servo;
    settings.heartbeat = Duration::ZERO;
    let specs = (0..servos)
        .map(|i| ServoSpec {
            name: format!("s{i}"),
            channel: i as u8,
            min_us: 1000,
            max_us: 2000,
            home_us: 1500,
            max_speed: None,
        })
        .collect();
    let bus = Bus::default();
    let handle = Servos::new(
        ServoPort::Path(board.link().to_path_buf()),
        settings,
        specs,
        bus.clone(),
    );
    let supervisor = Supervisor::new(vec![Arc::new(handle.clone())], vec![Arc::new(bus)]);
    supervisor.start_all().await.expect("the servos start");
    assert!(
        handle.state().connected,
        "the servos reach the simulated board"
    );
    (handle, supervisor)
}

/// Waits until the board has recorded `n` targets.
fn await_targets(board: &SimMaestro, n: usize) -> Vec<TargetRecord> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let targets = board.targets();
        if targets.len() >= n {
            return targets;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {n} targets arrived",
            targets.len()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Targets a second at the board, and `move_to` calls a second at the host.
async fn throughput(board: &SimMaestro, servos: &Servos, n: usize) -> (f64, f64) {
    let names = servos.names();
    board.clear_targets();
    let began = Instant::now();
    for i in 0..n {
        let name = &names[i % names.len()];
        // Alternate ends, so every target differs from the one before.
        let position = if (i / names.len()).is_multiple_of(2) {
            1.0
        } else {
            0.0
        };
        servos
            .move_to(name, position, Duration::ZERO, Easing::Step)
            .await
            .expect("the move starts");
    }
    let calls = n as f64 / began.elapsed().as_secs_f64();
    let targets = await_targets(board, n);
    let (first, last) = (targets[0], targets[n - 1]);
    let span = (last.at - first.at).as_secs_f64();
    ((n - 1) as f64 / span, calls)
}

/// The arrival error of every target of `moves` rounds of 1 s eased moves
/// on four servos at once.
async fn timing(board: &SimMaestro, servos: &Servos, moves: usize) -> Vec<Duration> {
    let names: Vec<String> = servos.names().into_iter().take(4).collect();
    let mut errors = Vec::new();
    for round in 0..moves {
        // From one end...
        let from = if round.is_multiple_of(2) { 0.0 } else { 1.0 };
        for name in &names {
            let moved = servos
                .move_to(name, from, Duration::ZERO, Easing::Step)
                .await
                .unwrap();
            servos.wait_move(moved.id).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        board.clear_targets();
        // ...to the other, a few milliseconds apart.
        let mut started = Vec::new();
        for name in &names {
            started.push(
                servos
                    .move_to(name, 1.0 - from, Duration::from_secs(1), Easing::EaseInOut)
                    .await
                    .unwrap(),
            );
            tokio::time::sleep(Duration::from_millis(3)).await;
        }
        for moved in &started {
            servos.wait_move(moved.id).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        for record in board.targets() {
            let moved = started
                .iter()
                .find(|m| m.channel == record.channel)
                .expect("a target of a move");
            let path = Path {
                from: protocol::quarters(moved.from_us.expect("a known start")),
                to: protocol::quarters(moved.to_us),
                duration: moved.duration,
                easing: moved.easing,
            };
            let ideal = moved.started_at + path.time_of(f64::from(record.target));
            let error = if record.at >= ideal {
                record.at - ideal
            } else {
                ideal - record.at
            };
            errors.push(error);
        }
    }
    errors.sort();
    errors
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
    let board = SimMaestro::start(SimOptions::new(dir.path().join("maestro")))
        .expect("the simulated Maestro");

    println!("# Servos: the actor on a simulated Maestro at 115,200 baud (pty, real serialport)");
    println!();
    if !full {
        println!("QUICK CHECK (no --bench argument): few targets; run `cargo bench` for figures.");
        println!();
    }
    println!(
        "{} build; the board paces its input at {WIRE_BYTES_PER_S:.0} bytes/s.",
        if cfg!(debug_assertions) {
            "debug (figures meaningless)"
        } else {
            "release"
        }
    );
    runtime.block_on(async {
        let (servos, supervisor) = start(&board, 8).await;
        let wire = WIRE_BYTES_PER_S / TARGET_BYTES;
        let (rate, calls) = throughput(&board, &servos, plan.targets).await;
        let errors = timing(&board, &servos, plan.moves).await;
        let p99 = percentile(&errors, 0.99);
        println!();
        println!(
            "## {} step moves on 8 servos; {} rounds of 1 s ease-in-out moves on 4 servos ({} targets timed)",
            plan.targets,
            plan.moves,
            errors.len()
        );
        println!();
        println!("| measure | result | target | ratio | |");
        println!("|---|---:|---:|---:|---|");
        let ratio = rate / wire;
        println!(
            "| Set Targets a second at the board (4 bytes each) | {rate:.0}/s | ≥ 0.8 × the wire's {wire:.0}/s | {ratio:.2}× | {} |",
            if ratio >= 0.8 { "ok" } else { "MISSED" }
        );
        println!(
            "| `move_to` calls a second at the host (step) | {calls:.0}/s | (the wire's {wire:.0}/s) | {:.2}× | |",
            calls / wire
        );
        let timing_ratio = p99.as_secs_f64() / FRAME.as_secs_f64();
        println!(
            "| interpolated targets: arrival vs the ideal curve, p99 | {} | ≤ one frame, {} | {timing_ratio:.2}× | {} |",
            millis(p99),
            millis(FRAME),
            if timing_ratio <= 1.0 { "ok" } else { "MISSED" }
        );
        println!(
            "| … p50 / max | {} / {} | | | |",
            millis(percentile(&errors, 0.5)),
            millis(*errors.last().expect("targets timed"))
        );
        supervisor.stop_all().await;
    });
}
