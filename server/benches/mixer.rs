//! Mixer benchmark: the time `Mixer::render` takes for one 256-frame period
//! at 48 kHz, as a share of the period itself (256 / 48,000 s = 5.33 ms),
//! with 1, 8 and 16 voices, in one run.
//!
//! Each voice count is measured twice, side by side: with every gain steady,
//! and with every gain moving (each voice's ramp, alternating linear and
//! equal-power curves, plus the duck ramp and the master ramp, all retargeted
//! before they finish, so the per-frame curve math never takes its shortcut).
//! Sources are refilled between periods, outside the timed region, the way a
//! decoder thread keeps them fed. Target: p99 ≤ 5 % of the period, leaving
//! the rest of the deadline to the device driver and a loaded machine.
//!
//! The process's allocator counts every allocation and free; the benchmark
//! fails if a single one happens inside `render`.
//!
//! `cargo bench` passes `--bench`; without it (`cargo test --benches`) this
//! is a quick check with few periods.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    hint::black_box,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use cantina_server::audio::{
    BusId, CHANNELS,
    gain::Curve,
    mixer::{MixerControl, Source, VoiceId, mixer},
};

/// The system allocator, counting calls, so the benchmark can prove `render`
/// makes none.
struct Counting;

/// Allocations, reallocations and frees so far, on any thread.
static HEAP_CALLS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is passed unchanged to `System`, which upholds the
// `GlobalAlloc` contract; counting touches no memory the caller owns.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HEAP_CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: the caller's guarantees about `layout` are passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        HEAP_CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        HEAP_CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator, that is from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HEAP_CALLS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: `ptr` came from this allocator, that is from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

const RATE: u32 = 48_000;
const PERIOD: usize = 256;
/// Each source's ring: a little under 100 ms, like a decoder's.
const RING_FRAMES: usize = 4096;
/// Ramps are this long and retargeted every `RETARGET` periods, so they are
/// always under way.
const RAMP_FRAMES: u32 = 8192;
const RETARGET: usize = 16;
/// The share of the period `render` may take.
const TARGET: f64 = 0.05;

struct Plan {
    warmup: usize,
    periods: usize,
    voices: &'static [usize],
}

impl Plan {
    const FULL: Plan = Plan {
        warmup: 500,
        periods: 20_000,
        voices: &[1, 8, 16],
    };
    const QUICK: Plan = Plan {
        warmup: 10,
        periods: 200,
        voices: &[1, 8, 16],
    };
}

/// The decoder's end of one voice.
struct Feed {
    samples: rtrb::Producer<f32>,
    /// Where in the shared signal this feed is.
    offset: usize,
    /// Kept so the source never looks finished-and-dropped.
    _finished: Arc<AtomicBool>,
}

/// A quiet pseudo-random stereo signal, one second long: sixteen voices of
/// it stay well under full scale, so clamping does not flatter the figures.
fn signal() -> Vec<f32> {
    let mut state = 0x2545_f491_u32;
    (0..RATE as usize * CHANNELS)
        .map(|_| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (state >> 8) as f32 / (1u32 << 24) as f32 * 0.1 - 0.05
        })
        .collect()
}

impl Feed {
    /// Tops the ring up from `signal`, a period's worth at a time.
    fn refill(&mut self, signal: &[f32]) {
        const STEP: usize = PERIOD * CHANNELS;
        while self.samples.slots() >= STEP {
            if self.offset + STEP > signal.len() {
                self.offset = 0;
            }
            let chunk = &signal[self.offset..self.offset + STEP];
            self.samples
                .push_entire_slice(chunk)
                .expect("room was checked");
            self.offset += STEP;
        }
    }
}

/// Timings of one scenario, sorted.
struct Measured {
    sorted: Vec<Duration>,
}

impl Measured {
    fn percentile(&self, p: f64) -> Duration {
        self.sorted[((self.sorted.len() - 1) as f64 * p).round() as usize]
    }
}

/// Runs `voices` voices for `plan.periods` timed periods, gains moving or steady.
fn run(plan: &Plan, voices: usize, moving: bool, signal: &[f32]) -> Measured {
    let (mut mixer, mut control) = mixer(RATE, PERIOD);
    control.set_master(0.8, 0).expect("room");
    let mut feeds = Vec::with_capacity(voices);
    let mut ids = Vec::with_capacity(voices);
    for i in 0..voices {
        let (samples, consumer) = rtrb::RingBuffer::new(RING_FRAMES * CHANNELS);
        let finished = Arc::new(AtomicBool::new(false));
        let mut feed = Feed {
            samples,
            // Each voice from a different place, so they are not one signal.
            offset: (i * 7919 * CHANNELS) % (signal.len() - PERIOD * CHANNELS),
            _finished: finished.clone(),
        };
        feed.refill(signal);
        let bus = BusId::ALL[i % BusId::ALL.len()];
        let id = control
            .add_voice(bus, Source::new(consumer, finished), 0.7, None)
            .expect("a free voice");
        feeds.push(feed);
        ids.push(id);
    }

    let mut out = vec![0.0f32; PERIOD * CHANNELS];
    let mut times = Vec::with_capacity(plan.periods);
    let mut heap_calls = 0;
    for period in 0..plan.warmup + plan.periods {
        // Outside the timed region: feed the sources, move the gains, read events.
        for feed in &mut feeds {
            feed.refill(signal);
        }
        if moving && period % RETARGET == 0 {
            retarget(&mut control, &ids, period / RETARGET);
        }
        let events = control.poll();
        assert!(events.is_empty(), "a fed mixer reports nothing: {events:?}");

        let heap_before = HEAP_CALLS.load(Ordering::Relaxed);
        let began = Instant::now();
        mixer.render(black_box(&mut out));
        let took = began.elapsed();
        heap_calls += HEAP_CALLS.load(Ordering::Relaxed) - heap_before;
        black_box(&out);
        if period >= plan.warmup {
            times.push(took);
        }
    }
    assert_eq!(
        heap_calls, 0,
        "render allocated or freed {heap_calls} times"
    );
    assert_eq!(control.underruns(), 0, "the sources were kept fed");
    times.sort();
    Measured { sorted: times }
}

/// Sends every voice, the duck and the master somewhere new over `RAMP_FRAMES`.
fn retarget(control: &mut MixerControl, ids: &[VoiceId], round: usize) {
    const CURVES: [Curve; 3] = [Curve::Linear, Curve::EqualPowerIn, Curve::EqualPowerOut];
    let high = round.is_multiple_of(2);
    for (i, &id) in ids.iter().enumerate() {
        let target = if high { 0.9 } else { 0.4 };
        let curve = CURVES[(i + round) % CURVES.len()];
        control
            .set_voice_gain(id, target, RAMP_FRAMES, curve)
            .expect("room");
    }
    if high {
        control.duck(0.3, RAMP_FRAMES).expect("room");
    } else {
        control.unduck(RAMP_FRAMES).expect("room");
    }
    let master = if high { 0.6 } else { 0.9 };
    control.set_master(master, RAMP_FRAMES).expect("room");
}

fn micros(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

fn share(d: Duration, period: Duration) -> String {
    format!("{:.2} %", d.as_secs_f64() / period.as_secs_f64() * 100.0)
}

fn main() {
    let full = std::env::args().any(|arg| arg == "--bench");
    let plan = if full { Plan::FULL } else { Plan::QUICK };
    let period = Duration::from_secs_f64(PERIOD as f64 / f64::from(RATE));
    let signal = signal();

    println!(
        "# Mixer: one {PERIOD}-frame period at {RATE} Hz ({})",
        micros(period)
    );
    println!();
    if !full {
        println!("QUICK CHECK (no --bench argument): few periods; run `cargo bench` for figures.");
        println!();
    }
    println!(
        "{} build; {} timed periods per row after {} warm-up; target: p99 ≤ {:.0} % of the period.",
        if cfg!(debug_assertions) {
            "debug (figures meaningless)"
        } else {
            "release"
        },
        plan.periods,
        plan.warmup,
        TARGET * 100.0,
    );
    println!();
    println!(
        "| voices | gains | p50 / period | p99 / period | p50 share | p99 share | p50 ÷ steady | p99 ≤ 5 % |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|:---:|");
    for &voices in plan.voices {
        let steady = run(&plan, voices, false, &signal);
        let moving = run(&plan, voices, true, &signal);
        let steady_p50 = steady.percentile(0.5);
        for (label, measured) in [("steady", &steady), ("all ramping", &moving)] {
            let (p50, p99) = (measured.percentile(0.5), measured.percentile(0.99));
            println!(
                "| {voices} | {label} | {} | {} | {} | {} | {:.2}× | {} |",
                micros(p50),
                micros(p99),
                share(p50, period),
                share(p99, period),
                p50.as_secs_f64() / steady_p50.as_secs_f64(),
                if p99.as_secs_f64() <= TARGET * period.as_secs_f64() {
                    "yes"
                } else {
                    "NO"
                },
            );
        }
    }
    println!();
    println!("Allocations and frees inside render: 0 (checked on every period).");
}
