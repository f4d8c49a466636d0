//! Idle footprint: where an idle server's resident memory goes, beside a
//! bare tonic server's, in one run.
//!
//! Each server runs as a child process and is left idle for a few seconds
//! once it listens; then its memory map (`/proc/PID/smaps`) is read and
//! every mapping's resident size is put in one of these groups:
//!
//! - **program**: the executable's own pages (code, constants, data);
//! - **system libraries**: libc, libm, libgcc, the loader, the locale;
//! - **other libraries**: everything else mapped from a file, named;
//! - **heap**: the allocator's arenas (`[heap]` and the anonymous regions
//!   glibc reserves for each thread's arena, recognised by the reserved,
//!   inaccessible remainder that follows them);
//! - **thread stacks**: anonymous regions right after a guard page;
//! - **other anonymous**: what is left (large allocations mapped on their own).
//!
//! The real server runs with virtual hardware and otherwise its defaults,
//! and again with single parts turned off or shrunk, so that the table can
//! say what each megabyte buys. The bare server is this very program,
//! started again with `--bare`: health, reflection and an echoing
//! `CommandService` on tonic, as `benches/dispatch.rs` has it.
//!
//! Target: the real server at no more than 2× the bare one, or every
//! remaining megabyte accounted for.
//!
//! `cargo bench -p cantina-server --bench footprint` (`-- --quick` idles 1 s
//! instead of 5).

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

#[path = "bare/mod.rs"]
mod bare;

/// The bare server, run in this process: prints `listening <address>` and
/// serves until killed.
fn bare_server() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        println!("listening {}", listener.local_addr().unwrap());
        bare::serve(listener).await.unwrap();
    });
}

/// A server under measurement, killed and reaped on drop.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits for a line containing `listening` on the child's stdout or stderr.
fn wait_listening(child: &mut Child, from_stderr: bool) {
    let output: Box<dyn std::io::Read + Send> = if from_stderr {
        Box::new(child.stderr.take().unwrap())
    } else {
        Box::new(child.stdout.take().unwrap())
    };
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines().map_while(Result::ok) {
            if line.contains("listening") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the server did not say it was listening within 60 s");
}

/// Resident kilobytes by group (and the named libraries), plus threads.
#[derive(Default)]
struct Footprint {
    groups: BTreeMap<&'static str, u64>,
    libraries: BTreeMap<String, u64>,
    threads: usize,
    total: u64,
    /// Resident memory of the process's own (anonymous) pages: what it holds
    /// that no file backs and no other process shares.
    private: u64,
}

const PROGRAM: &str = "program";
const SYSTEM: &str = "system libraries";
const LIBRARIES: &str = "other libraries";
const HEAP: &str = "heap";
const STACKS: &str = "thread stacks";
const ANON: &str = "other anonymous";
const GROUPS: [&str; 6] = [PROGRAM, SYSTEM, LIBRARIES, HEAP, STACKS, ANON];

fn system_library(path: &str) -> bool {
    let name = path.rsplit('/').next().unwrap_or(path);
    [
        "libc.so",
        "libm.so",
        "libgcc_s.so",
        "ld-linux",
        "libpthread",
        "libdl.so",
    ]
    .iter()
    .any(|p| name.starts_with(p))
        || path.starts_with("/usr/lib/locale")
}

/// One mapping of smaps: its range, permissions, path and resident KiB.
struct Mapping {
    start: u64,
    end: u64,
    perms: String,
    path: String,
    rss: u64,
}

fn mappings(pid: u32) -> Vec<Mapping> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).expect("smaps");
    let mut out: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or("");
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        {
            let perms = fields.next().unwrap_or("").to_string();
            let path = fields.nth(3).unwrap_or("").to_string();
            out.push(Mapping {
                start,
                end,
                perms,
                path,
                rss: 0,
            });
        } else if first == "Rss:"
            && let Some(last) = out.last_mut()
        {
            last.rss = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
        }
    }
    out
}

fn measure(pid: u32, program: &Path) -> Footprint {
    let maps = mappings(pid);
    let program = program.canonicalize().unwrap().display().to_string();
    let mut footprint = Footprint {
        threads: std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count()),
        private: cantina_server::memory::proc_status(Some(pid), "RssAnon").unwrap_or(0),
        ..Footprint::default()
    };
    for (i, map) in maps.iter().enumerate() {
        let previous = i.checked_sub(1).map(|j| &maps[j]);
        let next = maps.get(i + 1);
        let group = if map.path == program || map.path.ends_with(" (deleted)") {
            PROGRAM
        } else if map.path.starts_with('/') {
            if system_library(&map.path) {
                SYSTEM
            } else {
                let name = map.path.rsplit('/').next().unwrap_or(&map.path).to_string();
                *footprint.libraries.entry(name).or_default() += map.rss;
                LIBRARIES
            }
        } else if map.path == "[heap]" {
            HEAP
        } else if map.path.starts_with('[') {
            // [stack] of the main thread, [vdso], [vvar].
            if map.path == "[stack]" { STACKS } else { ANON }
        } else if previous.is_some_and(|p| {
            p.end == map.start && p.perms.starts_with("---") && p.end - p.start <= 64 << 10
        }) {
            STACKS
        } else if next.is_some_and(|n| n.start == map.end && n.perms.starts_with("---"))
            && map.perms.starts_with("rw")
        {
            HEAP
        } else {
            ANON
        };
        *footprint.groups.entry(group).or_default() += map.rss;
        footprint.total += map.rss;
    }
    footprint
}

/// Starts the real server with `env` on top of virtual hardware, waits for
/// it to idle, measures it.
fn cantina(dir: &Path, env: &[(&str, &str)], idle: Duration) -> Footprint {
    let program = Path::new(env!("CARGO_BIN_EXE_cantina-server"));
    let mut command = Command::new(program);
    command
        .args(["--listen", "127.0.0.1:0"])
        .env("CANTINA_AUDIO_OUTPUT", "virtual")
        .env("CANTINA_EYES_PORT", "virtual")
        .env("CANTINA_SERVO_PORT", "virtual")
        .env("CANTINA_DATA_DIR", dir.join("data"))
        .env("CANTINA_LOG_DIR", dir.join("logs"))
        .env_remove("CANTINA_TOKEN")
        .env_remove("CANTINA_MUSIC_DIR")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut server = Running(command.spawn().expect("start cantina-server"));
    wait_listening(&mut server.0, true);
    std::thread::sleep(idle);
    measure(server.0.id(), program)
}

fn bare(idle: Duration) -> Footprint {
    let program = std::env::current_exe().unwrap();
    let mut server = Running(
        Command::new(&program)
            .arg("--bare")
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the bare server"),
    );
    wait_listening(&mut server.0, false);
    std::thread::sleep(idle);
    measure(server.0.id(), &program)
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.iter().any(|a| a == "--bare") {
        bare_server();
        return;
    }
    let idle = if args.iter().any(|a| a == "--quick") {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let bare = bare(idle);
    // A first start writes the demo tunes into its data folder; the droid's
    // everyday start finds them there. The table is the everyday start.
    let first = cantina(&dir.path().join("full"), &[], idle);
    let full = cantina(&dir.path().join("full"), &[], idle);
    // The same server with one part at a time left out or shrunk.
    let variants: [(&str, &[(&str, &str)]); 3] = [
        (
            "speech engine off (`speech_engine = none`)",
            &[("CANTINA_SPEECH_ENGINE", "none")],
        ),
        (
            "log ring of 1,000 entries (`log_ring_size`, default 10,000)",
            &[("CANTINA_LOG_RING_SIZE", "1000")],
        ),
        (
            "bus history of 10 events (`bus_history`)",
            &[("CANTINA_BUS_HISTORY", "10")],
        ),
    ];
    let measured: Vec<(&str, Footprint)> = variants
        .iter()
        .enumerate()
        .map(|(i, (name, env))| (*name, cantina(&dir.path().join(format!("v{i}")), env, idle)))
        .collect();

    println!(
        "\nIdle footprint: resident memory {} s after `listening`, by where it lies (MiB).\n",
        idle.as_secs()
    );
    println!("| | bare tonic | cantina-server | difference |");
    println!("|---|---:|---:|---:|");
    for group in GROUPS {
        let b = bare.groups.get(group).copied().unwrap_or(0);
        let c = full.groups.get(group).copied().unwrap_or(0);
        println!(
            "| {group} | {} | {} | {:+.1} |",
            mib(b),
            mib(c),
            (c as f64 - b as f64) / 1024.0
        );
    }
    println!(
        "| threads | {} | {} | {:+} |",
        bare.threads,
        full.threads,
        full.threads as i64 - bare.threads as i64
    );
    println!(
        "| of which private (anonymous) | {} | {} | {:+.1} |",
        mib(bare.private),
        mib(full.private),
        (full.private as f64 - bare.private as f64) / 1024.0
    );
    let ratio = full.total as f64 / bare.total.max(1) as f64;
    println!(
        "| **total** | **{}** | **{}** | **{:.2}×** {} (target ≤ 2×) |",
        mib(bare.total),
        mib(full.total),
        ratio,
        if ratio <= 2.0 { "✓" } else { "✗" }
    );
    println!("\nOther libraries of cantina-server (resident KiB, largest first):\n");
    let mut libraries: Vec<_> = full.libraries.iter().collect();
    libraries.sort_by(|a, b| b.1.cmp(a.1));
    let listed: Vec<String> = libraries
        .iter()
        .filter(|(_, kib)| **kib >= 64)
        .map(|(name, kib)| format!("{name} {kib}"))
        .collect();
    println!("{}", listed.join(", "));
    println!(
        "\nThe same server with one part changed (total MiB, and the change from the default):\n"
    );
    println!("| variant | total | change |");
    println!("|---|---:|---:|");
    println!(
        "| first start (the demo tunes synthesized and written) | {} | {:+.1} |",
        mib(first.total),
        (first.total as f64 - full.total as f64) / 1024.0
    );
    for (name, footprint) in &measured {
        println!(
            "| {name} | {} | {:+.1} |",
            mib(footprint.total),
            (footprint.total as f64 - full.total as f64) / 1024.0
        );
    }
    eprintln!("footprint: {:.0} s", started.elapsed().as_secs_f64());
}
