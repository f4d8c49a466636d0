//! Validating plans: the time and memory to decode (with every check) and
//! dry-run a plan of 10,000 steps, beside parsing the same document as
//! plain JSON in the same run, so the ratio is the price of the checks.
//!
//! Memory is counted by a counting allocator: the peak of live bytes above
//! where the run started, for the document's JSON value and for the decoded
//! plan plus its dry run.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicIsize, AtomicUsize, Ordering},
    time::Instant,
};

use cantina_server::plans::{
    decode::{Limits, decode},
    resolve::resolve,
};
use serde_json::{Value, json};

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; counting touches no
// memory the caller owns.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live =
            LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed) + layout.size() as isize;
        PEAK.fetch_max(live.max(0) as usize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> usize {
    LIVE.load(Ordering::Relaxed).max(0) as usize
}

/// Peak live bytes above `base` while `f` runs, and its result.
fn peak<T>(base: usize, f: impl FnOnce() -> T) -> (T, usize) {
    PEAK.store(live(), Ordering::Relaxed);
    let out = f();
    (out, PEAK.load(Ordering::Relaxed).saturating_sub(base))
}

/// A show of `n` steps of every kind, a tenth of them in parallel groups.
fn document(n: usize) -> String {
    let mut steps = Vec::with_capacity(n);
    let mut i = 0;
    while steps.len() < n {
        let step = match i % 10 {
            0 => json!({"speak": {"text": format!("Line number {i} of the show.")}}),
            1 => json!({"delay": {"duration": "0.5s"}}),
            2 => json!({"eyePattern": {"pattern": "happy", "brightness": 0.7}}),
            3 => json!({"musicDuck": {"level": 0.3, "fadeMs": 800}}),
            4 => json!({"at": format!("{}s", i), "command": {"line": "eye pattern sad"}}),
            5 => {
                json!({"waitForEvent": {"topic": "ext.button.*", "timeout": "5s", "onTimeout": "ON_TIMEOUT_CONTINUE"}})
            }
            6 => json!({"parallelSteps": {"steps": [
                {"delay": {"duration": "1s"}},
                {"playSound": {"file": "boom.wav"}}
            ]}}),
            7 => json!({"musicUnduck": {}}),
            8 => json!({"playMusic": {"query": "cantina"}}),
            _ => json!({"id": format!("cue-{i}"), "musicCrossfade": {"track": "2", "seconds": 3}}),
        };
        steps.push(step);
        i += 1;
    }
    serde_json::to_string(&json!({"name": "big show", "steps": steps})).unwrap()
}

fn main() {
    let full = std::env::args().any(|a| a == "--bench");
    let n = 10_000;
    let text = document(n);
    let rounds = if full { 15 } else { 2 };
    let (mut parse_t, mut decode_t, mut resolve_t) = (Vec::new(), Vec::new(), Vec::new());
    let (mut parse_m, mut decode_m) = (0, 0);
    let mut total = 0;
    for _ in 0..rounds {
        let base = live();
        let t = Instant::now();
        let (value, m) = peak(base, || serde_json::from_str::<Value>(&text).unwrap());
        parse_t.push(t.elapsed().as_secs_f64());
        parse_m = m;
        let base = live();
        let t = Instant::now();
        let (plan, m) = peak(base, || {
            decode(&value, &Limits::default()).expect("a valid plan")
        });
        decode_t.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        let (rows, m2) = peak(base, || resolve(&plan));
        resolve_t.push(t.elapsed().as_secs_f64());
        decode_m = m.max(m2);
        total = rows.len();
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] * 1e3
    };
    let (p, d, r) = (
        median(&mut parse_t),
        median(&mut decode_t),
        median(&mut resolve_t),
    );
    println!(
        "# Validating a plan of {n} top-level steps ({total} with nested ones; {} KiB of JSON), median of {rounds}\n",
        text.len() / 1024
    );
    println!("| stage | time | peak memory | ratio to parsing |");
    println!("|---|---:|---:|---:|");
    println!(
        "| parse the JSON (serde_json::Value) | {p:.2} ms | {:.1} MiB | 1.00× |",
        parse_m as f64 / 1048576.0
    );
    println!(
        "| decode with every check (paths, ids, globs, limits) | {d:.2} ms | {:.1} MiB | {:.2}× |",
        decode_m as f64 / 1048576.0,
        d / p
    );
    println!(
        "| dry run (each step's start and length) | {r:.2} ms | | {:.2}× |",
        r / p
    );
    println!(
        "\nValidatePlan's own work per 10,000 steps: {:.2} ms.",
        d + r
    );
}
