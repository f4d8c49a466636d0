//! Music decoding benchmark: our decoder beside ffmpeg on the same files, and
//! the decoder's memory while streaming an hour of music, in one run.
//!
//! 1. **Decode speed.** A three-minute "music-like" master (a few tones with
//!    slow tremolo and vibrato over pink noise, stereo, 44.1 kHz, 16-bit) is
//!    made with ffmpeg at the start of the run and encoded to mp3 (192 kbit/s),
//!    flac, ogg/vorbis (q5), m4a/aac (192 kbit/s) and wav. Each file is decoded
//!    to interleaved stereo `f32` at its own rate, the same work on both sides:
//!    ours with [`decode_all`] (`out_rate` `None`, a sink that only counts),
//!    ffmpeg with `ffmpeg -v error -nostdin -threads 1 -i F -f f32le -ac 2 -y
//!    /dev/null`. Trials are interleaved (the order alternating), and the
//!    medians are reported as realtime factors and as the ratio ours ÷
//!    ffmpeg's throughput (target ≥ 0.85 for mp3, flac and vorbis). ffmpeg's
//!    wall time includes starting the process; its start-up (the median time
//!    to decode a 0.1 s file) is printed, with the ratio it would give without
//!    it, and so is the ratio by CPU time (ffmpeg's children's `rusage`, our
//!    thread's `CLOCK_THREAD_CPUTIME_ID`), since ffmpeg may spread its work
//!    over threads. Ours resampled to 48 kHz is a separate row, for
//!    information. Before timing, each file is decoded once by both, compared
//!    sample by sample (ffmpeg piped into this process), so the run fails if
//!    the two do not produce the same audio (AAC excepted in length: symphonia
//!    keeps the encoder's priming, which ffmpeg trims through the MP4 edit list).
//! 2. **Memory while streaming an hour.** The mp3 is repeated (ffmpeg's concat
//!    demuxer, stream copy) to 60 minutes and played through
//!    [`Decoder::start`] at 48 kHz with an 8192-frame ring, drained as fast as
//!    possible. This runs in a child process (this binary re-executed with a
//!    hidden argument) so nothing else has touched its memory: it reads
//!    `VmHWM` (peak resident set) from `/proc/self/status` before starting the
//!    decoder and after the stream finished, and a counting global allocator
//!    (counting only in the child) gives the heap's peak above idle. Target:
//!    ≤ 10 MB above idle.
//!
//! Run it with `cargo bench -p cantina-server --bench decode` (two to three
//! minutes on two cores, most of it making the files). Run without `--bench`
//! (as `cargo test --benches` does) it only checks, with seconds-long files,
//! that the machinery works and that both decoders agree. Missing a target
//! does not fail the run: this is a measurement, not a test.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    env, fs,
    hint::black_box,
    io::Read,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, AtomicUsize, Ordering},
    thread,
    time::{Duration, Instant},
};

use cantina_server::audio::decode::{Decoder, decode_all};

/// Counts live heap bytes and their peak, when `COUNTING` is on (only in the
/// memory child, so the speed trials pay nothing but a relaxed load).
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: defers to the system allocator; only bookkeeping is added.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() && COUNTING.load(Ordering::Relaxed) {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) };
        if COUNTING.load(Ordering::Relaxed) {
            // Saturating: a block allocated before counting began may be freed after.
            let _ = LIVE.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |live| {
                Some(live.saturating_sub(layout.size()))
            });
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() && COUNTING.load(Ordering::Relaxed) {
            if new_size >= layout.size() {
                let grow = new_size - layout.size();
                let live = LIVE.fetch_add(grow, Ordering::Relaxed) + grow;
                PEAK.fetch_max(live, Ordering::Relaxed);
            } else {
                let shrink = layout.size() - new_size;
                let _ = LIVE.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |live| {
                    Some(live.saturating_sub(shrink))
                });
            }
        }
        new
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// The hidden argument that makes this binary the memory child.
const MEMORY_CHILD: &str = "--measure-memory";
/// The output rate of the mixer the decoder feeds.
const OUT_RATE: u32 = 48_000;
/// The ring the memory child uses (about 170 ms at 48 kHz).
const RING_FRAMES: usize = 8192;
/// The memory target, in bytes above idle.
const MEMORY_TARGET: u64 = 10_000_000;
/// The speed target, ours ÷ ffmpeg.
const SPEED_TARGET: f64 = 0.85;

/// How big the run is.
struct Scale {
    /// Length of the speed files.
    secs: u32,
    /// Interleaved trials per file.
    trials: usize,
    /// Copies of the mp3 that make the long file.
    long_copies: u32,
}

/// One file of the speed table.
struct Format {
    /// Short name in the table.
    name: &'static str,
    /// File extension.
    ext: &'static str,
    /// ffmpeg's encoder settings.
    encode: &'static [&'static str],
    /// Whether the speed target applies (the others are for information).
    targeted: bool,
}

const FORMATS: [Format; 5] = [
    Format {
        name: "mp3 192k",
        ext: "mp3",
        encode: &["-c:a", "libmp3lame", "-b:a", "192k"],
        targeted: true,
    },
    Format {
        name: "flac 16-bit",
        ext: "flac",
        encode: &["-c:a", "flac"],
        targeted: true,
    },
    Format {
        name: "vorbis q5",
        ext: "ogg",
        encode: &["-c:a", "libvorbis", "-q:a", "5"],
        targeted: true,
    },
    Format {
        name: "aac 192k (m4a)",
        ext: "m4a",
        encode: &["-c:a", "aac", "-b:a", "192k"],
        targeted: false,
    },
    Format {
        name: "wav 16-bit",
        ext: "wav",
        encode: &["-c:a", "pcm_s16le"],
        targeted: false,
    },
];

fn main() {
    let args: Vec<String> = env::args().collect();
    if let Some(i) = args.iter().position(|a| a == MEMORY_CHILD) {
        memory_child(Path::new(&args[i + 1]));
        return;
    }
    let full = args.iter().any(|a| a == "--bench");
    let scale = if full {
        Scale {
            secs: 180,
            trials: 5,
            long_copies: 20,
        }
    } else {
        Scale {
            secs: 4,
            trials: 1,
            long_copies: 3,
        }
    };
    check_ffmpeg();
    let dir = tempfile::tempdir().expect("a temporary folder");
    let started = Instant::now();
    let files = make_files(dir.path(), scale.secs);
    let tiny = dir.path().join("tiny.wav");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        "sine=frequency=440:sample_rate=44100:duration=0.1",
        "-ac",
        "2",
        tiny.to_str().unwrap(),
    ]);
    println!(
        "# Music decoding: ours (symphonia 0.6 + rubato 5) beside ffmpeg\n\n\
         Files made in {:.1} s: {} s of tones over pink noise, stereo 44.1 kHz.\n",
        started.elapsed().as_secs_f64(),
        scale.secs
    );

    for (format, path) in FORMATS.iter().zip(&files) {
        compare_with_ffmpeg(format, path);
    }
    speed(&scale, &files, &tiny);

    let long = dir.path().join("long.mp3");
    concat(dir.path(), &files[0], scale.long_copies, &long);
    memory(&long, scale.secs * scale.long_copies);
}

/// Fails the run, saying how to get ffmpeg, when it is missing.
fn check_ffmpeg() {
    match Command::new("ffmpeg").arg("-version").output() {
        Ok(out) if out.status.success() => {}
        _ => panic!(
            "ffmpeg is not installed; this benchmark compares against it and makes its files \
             with it. Run `./dev.sh test` once, which installs it"
        ),
    }
}

/// Runs ffmpeg to completion, panicking with its message on failure.
fn ffmpeg(args: &[&str]) {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(args)
        .output()
        .expect("ffmpeg runs");
    assert!(
        out.status.success(),
        "ffmpeg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Makes the master and encodes it to every format, the encoders side by side.
fn make_files(dir: &Path, secs: u32) -> Vec<PathBuf> {
    let master = dir.join("master.wav");
    // Tones with slow tremolo and vibrato on each side, over pink noise
    // (a different seed per side): enough going on in every band that the
    // codecs work as they would on music.
    let tones = format!(
        "aevalsrc=exprs=\
         0.20*sin(2*PI*220*t)*(0.6+0.4*sin(2*PI*0.5*t))+0.10*sin(2*PI*331*t)+0.08*sin(2*PI*442*t+2*sin(2*PI*3*t))+0.04*sin(2*PI*1760*t)|\
         0.20*sin(2*PI*277*t)*(0.6+0.4*sin(2*PI*0.7*t))+0.10*sin(2*PI*415*t)+0.08*sin(2*PI*554*t+2*sin(2*PI*2*t))+0.04*sin(2*PI*2217*t)\
         :s=44100:d={secs}"
    );
    let noise_l = format!("anoisesrc=color=pink:amplitude=0.06:r=44100:d={secs}:seed=1");
    let noise_r = format!("anoisesrc=color=pink:amplitude=0.06:r=44100:d={secs}:seed=2");
    ffmpeg(&[
        "-f",
        "lavfi",
        "-i",
        &tones,
        "-f",
        "lavfi",
        "-i",
        &noise_l,
        "-f",
        "lavfi",
        "-i",
        &noise_r,
        "-filter_complex",
        "[1:a][2:a]amerge=inputs=2[n];[0:a][n]amix=inputs=2:normalize=0",
        "-c:a",
        "pcm_s16le",
        master.to_str().unwrap(),
    ]);
    let files: Vec<PathBuf> = FORMATS
        .iter()
        .map(|f| dir.join(format!("music.{}", f.ext)))
        .collect();
    thread::scope(|s| {
        for (format, path) in FORMATS.iter().zip(&files) {
            let master = &master;
            s.spawn(move || {
                let mut args = vec!["-i", master.to_str().unwrap()];
                args.extend(format.encode);
                args.push(path.to_str().unwrap());
                ffmpeg(&args);
            });
        }
    });
    files
}

/// Decodes `path` with both decoders at once and compares them sample by
/// sample, streaming (ffmpeg's output piped into this process). Fails the run
/// if they differ by more than the codec allows: the speed figures must be
/// for the same work.
fn compare_with_ffmpeg(format: &Format, path: &Path) {
    let mut child = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-threads", "1", "-i"])
        .arg(path)
        .args(["-f", "f32le", "-ac", "2", "-"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("ffmpeg runs");
    let mut theirs = child.stdout.take().expect("piped");
    let mut bytes = Vec::new();
    let (mut ours_len, mut compared, mut max_diff, mut sum_sq) = (0usize, 0usize, 0f32, 0f64);
    let lossless = matches!(format.ext, "flac" | "wav");
    // Symphonia keeps AAC's priming (no MP4 edit lists), so its output is
    // shifted: only the lengths are compared for it.
    let aligned = format.ext != "m4a";
    decode_all(path, None, |chunk| {
        ours_len += chunk.len();
        if !aligned {
            return;
        }
        bytes.resize(chunk.len() * 4, 0);
        let mut got = 0;
        while got < bytes.len() {
            match theirs.read(&mut bytes[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) => panic!("reading ffmpeg's output: {e}"),
            }
        }
        for (ours, theirs) in chunk.iter().zip(bytes[..got].chunks_exact(4)) {
            let theirs = f32::from_le_bytes(theirs.try_into().unwrap());
            let diff = (ours - theirs).abs();
            max_diff = max_diff.max(diff);
            sum_sq += f64::from(diff) * f64::from(diff);
            compared += 1;
        }
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let mut rest = Vec::new();
    theirs.read_to_end(&mut rest).expect("ffmpeg's output");
    assert!(child.wait().expect("ffmpeg ends").success());
    let theirs_len = compared + rest.len() / 4;
    let frames_diff = (ours_len as i64 - theirs_len as i64) / 2;
    let rms = (sum_sq / compared.max(1) as f64).sqrt();
    println!(
        "- {}: ours {} frames, ffmpeg {} ({:+}); {}",
        format.name,
        ours_len / 2,
        theirs_len / 2,
        frames_diff,
        if aligned {
            format!("max |ours − ffmpeg| {max_diff:.2e}, rms {rms:.2e}")
        } else {
            "not compared sample by sample (priming kept)".into()
        }
    );
    let allowed_frames = if aligned { 0 } else { 2 * 1024 + 64 };
    assert!(
        frames_diff.abs() <= allowed_frames,
        "{}: ours and ffmpeg's lengths differ by {frames_diff} frames",
        format.name
    );
    if aligned {
        // Bit-exact for PCM and FLAC; float decoders differ in rounding only.
        let allowed = if lossless { 1e-6 } else { 1e-3 };
        assert!(
            rms <= allowed,
            "{}: ours and ffmpeg's audio differ (rms {rms:.2e})",
            format.name
        );
    }
}

/// Wall and CPU seconds of one run.
#[derive(Clone, Copy)]
struct Timing {
    wall: f64,
    cpu: f64,
}

/// Decodes with ours on this thread; returns the timing.
fn time_ours(path: &Path, out_rate: Option<u32>) -> Timing {
    let cpu = thread_cpu();
    let start = Instant::now();
    let mut samples = 0usize;
    decode_all(path, out_rate, |chunk| {
        samples += black_box(chunk).len();
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let timing = Timing {
        wall: start.elapsed().as_secs_f64(),
        cpu: thread_cpu() - cpu,
    };
    assert!(samples > 0);
    timing
}

/// Decodes with ffmpeg to /dev/null; returns the timing (CPU of the child and its threads).
fn time_ffmpeg(path: &Path) -> Timing {
    let cpu = children_cpu();
    let start = Instant::now();
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-threads", "1", "-i"])
        .arg(path)
        .args(["-f", "f32le", "-ac", "2", "-y", "/dev/null"])
        .status()
        .expect("ffmpeg runs");
    let wall = start.elapsed().as_secs_f64();
    assert!(status.success());
    Timing {
        wall,
        cpu: children_cpu() - cpu,
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// The speed table.
fn speed(scale: &Scale, files: &[PathBuf], tiny: &Path) {
    let n = FORMATS.len();
    let mut ours: Vec<Vec<Timing>> = vec![Vec::new(); n];
    let mut theirs: Vec<Vec<Timing>> = vec![Vec::new(); n];
    let mut resampled: Vec<Vec<Timing>> = vec![Vec::new(); n];
    let mut startup: Vec<Timing> = Vec::new();
    // One warm-up pass (page cache, lazy registries), not counted.
    for path in files {
        time_ours(path, None);
    }
    for trial in 0..scale.trials {
        startup.push(time_ffmpeg(tiny));
        for (i, path) in files.iter().enumerate() {
            // Alternate the order so neither side always runs on a warmer machine.
            if trial % 2 == 0 {
                ours[i].push(time_ours(path, None));
                theirs[i].push(time_ffmpeg(path));
                resampled[i].push(time_ours(path, Some(OUT_RATE)));
            } else {
                resampled[i].push(time_ours(path, Some(OUT_RATE)));
                theirs[i].push(time_ffmpeg(path));
                ours[i].push(time_ours(path, None));
            }
        }
    }
    let startup_cpu = median(startup.iter().map(|t| t.cpu).collect());
    let startup = median(startup.iter().map(|t| t.wall).collect());
    let secs = f64::from(scale.secs);
    println!(
        "\n## Decode speed: {} s files, median of {} interleaved trials\n\n\
         Same work on both sides: decode to interleaved stereo f32 at the file's rate \
         (ours: `decode_all(path, None, sink)`; ffmpeg: `-threads 1 … -f f32le -ac 2 /dev/null`). \
         Realtime factor = audio seconds per wall second. ffmpeg's start-up (decoding a 0.1 s file) \
         takes {:.0} ms wall, {:.0} ms CPU; the last two columns take it off ffmpeg's times.\n",
        secs,
        scale.trials,
        startup * 1000.0,
        startup_cpu * 1000.0
    );
    println!(
        "| file | ours × realtime | ffmpeg × realtime | ours ÷ ffmpeg (wall) | target | \
         ours ÷ ffmpeg − start-up (wall) | ours ÷ ffmpeg − start-up (CPU) |"
    );
    println!("|---|---:|---:|---:|---|---:|---:|");
    for (i, format) in FORMATS.iter().enumerate() {
        let o = median(ours[i].iter().map(|t| t.wall).collect());
        let t = median(theirs[i].iter().map(|t| t.wall).collect());
        let o_cpu = median(ours[i].iter().map(|t| t.cpu).collect());
        let t_cpu = median(theirs[i].iter().map(|t| t.cpu).collect());
        let ratio = t / o;
        let target = if format.targeted {
            format!(
                "≥ {SPEED_TARGET} {}",
                if ratio >= SPEED_TARGET { "✅" } else { "❌" }
            )
        } else {
            "(info)".into()
        };
        println!(
            "| {} | {:.0}× | {:.0}× | {:.2} | {} | {:.2} | {:.2} |",
            format.name,
            secs / o,
            secs / t,
            ratio,
            target,
            (t - startup).max(0.0) / o,
            (t_cpu - startup_cpu).max(0.0) / o_cpu
        );
    }
    println!("\nOurs resampled to {OUT_RATE} Hz (rubato FFT), for information:\n");
    println!("| file | ours → 48 kHz × realtime | cost of resampling (wall) |");
    println!("|---|---:|---:|");
    for (i, format) in FORMATS.iter().enumerate() {
        let o = median(ours[i].iter().map(|t| t.wall).collect());
        let r = median(resampled[i].iter().map(|t| t.wall).collect());
        println!(
            "| {} | {:.0}× | {:+.0} % |",
            format.name,
            secs / r,
            (r / o - 1.0) * 100.0
        );
    }
}

/// Repeats `mp3` `copies` times into `out` (stream copy, no re-encoding).
fn concat(dir: &Path, mp3: &Path, copies: u32, out: &Path) {
    let list = dir.join("list.txt");
    let line = format!("file '{}'\n", mp3.display());
    fs::write(&list, line.repeat(copies as usize)).expect("the concat list");
    ffmpeg(&[
        "-f",
        "concat",
        "-safe",
        "0",
        "-i",
        list.to_str().unwrap(),
        "-c",
        "copy",
        out.to_str().unwrap(),
    ]);
}

/// Runs the memory child on `path` and prints its figures.
fn memory(path: &Path, secs: u32) {
    let exe = env::current_exe().expect("this binary");
    let out = Command::new(exe)
        .arg(MEMORY_CHILD)
        .arg(path)
        .output()
        .expect("the memory child runs");
    assert!(
        out.status.success(),
        "the memory child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| -> u64 {
        report
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("the memory child did not report {key}: {report}"))
    };
    let (hwm_idle, hwm_peak) = (field("hwm_idle_kb") * 1024, field("hwm_peak_kb") * 1024);
    let (heap_idle, heap_peak) = (field("heap_idle"), field("heap_peak"));
    let frames = field("frames");
    let millis = field("millis");
    let expected = u64::from(secs) * u64::from(OUT_RATE);
    // Each copy brings its encoder delay and padding (up to ~2,300 frames).
    assert!(
        frames.abs_diff(expected) < expected / 50 + u64::from(OUT_RATE),
        "the child played {frames} frames, expected about {expected}"
    );
    let verdict = |above: u64| {
        if above <= MEMORY_TARGET { "✅" } else { "❌" }
    };
    println!(
        "\n## Memory while streaming {} of mp3\n\n\
         `Decoder::start` at {OUT_RATE} Hz, {RING_FRAMES}-frame ring, drained as fast as possible \
         in a child process: {:.1} min of audio ({} frames) in {:.1} s ({:.0}× realtime).\n",
        if secs >= 60 {
            format!("{} min", secs / 60)
        } else {
            format!("{secs} s")
        },
        frames as f64 / f64::from(OUT_RATE) / 60.0,
        frames,
        millis as f64 / 1000.0,
        frames as f64 / f64::from(OUT_RATE) / (millis as f64 / 1000.0)
    );
    println!("| method | idle | peak while streaming | above idle | target |");
    println!("|---|---:|---:|---:|---|");
    println!(
        "| peak resident set (VmHWM, /proc/self/status) | {:.2} MB | {:.2} MB | {:.2} MB | ≤ 10 MB {} |",
        mb(hwm_idle),
        mb(hwm_peak),
        mb(hwm_peak.saturating_sub(hwm_idle)),
        verdict(hwm_peak.saturating_sub(hwm_idle))
    );
    println!(
        "| heap peak (counting global allocator) | {:.2} MB | {:.2} MB | {:.2} MB | ≤ 10 MB {} |",
        mb(heap_idle),
        mb(heap_peak),
        mb(heap_peak.saturating_sub(heap_idle)),
        verdict(heap_peak.saturating_sub(heap_idle))
    );
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// The memory child: streams `path` through a `Decoder` and prints
/// `key=value` lines for the parent.
fn memory_child(path: &Path) {
    COUNTING.store(true, Ordering::SeqCst);
    let heap_idle = LIVE.load(Ordering::SeqCst);
    PEAK.store(heap_idle, Ordering::SeqCst);
    let hwm_idle = status_kb("VmHWM");
    let start = Instant::now();
    let (decoder, mut consumer, finished, _) =
        Decoder::start(path, OUT_RATE, RING_FRAMES).unwrap_or_else(|e| panic!("{e}"));
    let mut samples = 0u64;
    let mut checksum = 0f32;
    loop {
        let done = finished.load(Ordering::Acquire);
        let n = consumer.slots();
        if n > 0 {
            let chunk = consumer.read_chunk(n).expect("slots are there");
            let (a, b) = chunk.as_slices();
            checksum += a.first().copied().unwrap_or(0.0) + b.first().copied().unwrap_or(0.0);
            chunk.commit_all();
            samples += n as u64;
        } else if done {
            break;
        } else {
            thread::sleep(Duration::from_micros(200));
        }
    }
    let millis = start.elapsed().as_millis();
    if let Some(e) = decoder.error() {
        panic!("the stream failed: {e}");
    }
    decoder.stop();
    black_box(checksum);
    let hwm_peak = status_kb("VmHWM");
    println!("hwm_idle_kb={hwm_idle}");
    println!("hwm_peak_kb={hwm_peak}");
    println!("heap_idle={heap_idle}");
    println!("heap_peak={}", PEAK.load(Ordering::SeqCst));
    println!("frames={}", samples / 2);
    println!("millis={millis}");
}

/// A `kB` field of /proc/self/status.
fn status_kb(key: &str) -> u64 {
    cantina_server::memory::proc_status(None, key)
        .unwrap_or_else(|| panic!("no {key} in /proc/self/status"))
}

/// CPU seconds used by this thread.
fn thread_cpu() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

/// CPU seconds (user + system) used by this process's waited-for children.
fn children_cpu() -> f64 {
    // SAFETY: an all-zero rusage is a valid value to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid `who` and a valid out-pointer.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}
