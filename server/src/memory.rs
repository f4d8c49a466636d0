//! Giving freed memory back to the system.
//!
//! glibc adapts its thresholds as a program runs: once a large block it had
//! mapped on its own is freed, it raises the size above which blocks get
//! their own mapping, and with it the free space it keeps at the top of each
//! arena before shrinking it, up to 64 MiB. A first start (the demo tunes
//! synthesized in large buffers) left 17 MB free but held in three thread
//! arenas, which `malloc_trim` does not shrink from the top. [`configure`]
//! fixes both thresholds, so that large blocks (audio buffers, decoded
//! clips, a burst of connections) go back when freed.
//!
//! glibc's allocator keeps what the program frees in its arenas, for reuse:
//! after a burst (a thousand connections come and gone, a flood of streams
//! refused) the server's resident memory would stay at the burst's peak for
//! the rest of the day. Every `memory_trim_interval`, when the allocator
//! holds more than [`TRIM_THRESHOLD`] freed, [`trim`] hands it back with
//! `malloc_trim(0)`, which releases the free pages of every arena. Asking
//! how much is free (`mallinfo`) walks only the allocator's bins, so the
//! idle check costs microseconds; the trim itself runs on a blocking thread.
//!
//! On other allocators (musl, macOS) this does nothing: they return memory
//! by themselves or not at all.

use std::time::Duration;

use tracing::debug;

use crate::shutdown::Shutdown;

/// Freed memory the allocator may keep before it is handed back: below it, a
/// trim would cost more than it returns.
pub const TRIM_THRESHOLD: usize = 1 << 20;

/// Blocks from this size get a mapping of their own, returned when freed.
pub const MMAP_THRESHOLD: usize = 256 << 10;

/// Free space at the top of an arena past which it is shrunk.
pub const TOP_PAD_LIMIT: usize = 1 << 20;

/// Fixes the allocator's thresholds (see the module's text). Call it once,
/// at the start of the program; a no-op beyond glibc.
pub fn configure() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets the allocator's parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TOP_PAD_LIMIT as libc::c_int);
    }
}

/// What the allocator holds, in bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Allocated and in use.
    pub in_use: usize,
    /// Freed but kept by the allocator (what a trim can return, at most).
    pub free: usize,
}

/// What the allocator holds now (zeros where it cannot say).
pub fn usage() -> Usage {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // `mallinfo`, not `mallinfo2`: the latter needs glibc 2.33, which a
        // droid on Debian 11 or Raspberry Pi OS Bullseye does not have. Its
        // counts are C ints, exact below 2 GiB, which the server stays far under.
        // SAFETY: mallinfo takes no arguments and returns a plain struct.
        let info = unsafe { libc::mallinfo() };
        let bytes = |n: libc::c_int| usize::try_from(n).unwrap_or(0);
        Usage {
            in_use: bytes(info.uordblks) + bytes(info.hblkhd),
            free: bytes(info.fordblks),
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    Usage::default()
}

/// A `kB` figure of `/proc/PID/status` (`key` as `VmRSS`, `RssAnon`, …), in
/// KiB, or a count such as `Threads`; for this process when `pid` is `None`.
/// `None` when there is no such process or line (not Linux).
pub fn proc_status(pid: Option<u32>, key: &str) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_string(),
    };
    let status = std::fs::read_to_string(path).ok()?;
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Resident memory of this process not backed by files (heap, stacks), in
/// bytes, from `/proc/self/statm` (0 where there is none).
pub fn resident_anonymous() -> usize {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let mut pages = statm
        .split_whitespace()
        .skip(1)
        .map(|n| n.parse::<usize>().unwrap_or(0));
    let (resident, shared) = (pages.next().unwrap_or(0), pages.next().unwrap_or(0));
    // SAFETY: sysconf only reads a system constant.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    resident.saturating_sub(shared) * page
}

/// Hands freed memory back to the system when the allocator holds more than
/// [`TRIM_THRESHOLD`] of it; returns by how much resident memory fell.
pub fn trim() -> usize {
    if usage().free <= TRIM_THRESHOLD {
        return 0;
    }
    let before = resident_anonymous();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases pages the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
    before.saturating_sub(resident_anonymous())
}

/// Trims every `interval` until shutdown begins (never, for zero).
pub async fn trim_every(interval: Duration, shutdown: Shutdown) {
    if interval.is_zero() {
        return;
    }
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = shutdown.wait() => return,
        }
        if usage().free <= TRIM_THRESHOLD {
            continue;
        }
        if let Ok(returned) = tokio::task::spawn_blocking(trim).await
            && returned > 0
        {
            debug!(
                returned_kib = returned / 1024,
                "freed memory handed back to the system"
            );
        }
    }
}
