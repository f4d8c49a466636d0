//! Freed memory goes back to the system: a burst allocated and freed leaves
//! resident memory where it was once [`cantina_server::memory::trim`] has
//! run. Its own test binary, so that no other test allocates meanwhile.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

use cantina_server::memory::{TRIM_THRESHOLD, trim, usage};

/// Resident anonymous memory of this process, in KiB.
fn rss_anon_kib() -> usize {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn a_burst_freed_is_handed_back() {
    let before = rss_anon_kib();
    // Many small blocks (below the mmap threshold, so they live in the heap
    // as a connection's buffers do), touched, then all freed but one made
    // last, which pins the top of the heap so that free() alone cannot
    // shrink it.
    let mut blocks: Vec<Vec<u8>> = (0..4000).map(|i| vec![i as u8; 8 << 10]).collect();
    let pin = vec![1u8; 64];
    let peak = rss_anon_kib();
    assert!(
        peak > before + 24 * 1024,
        "the burst was not resident: {before} → {peak} KiB"
    );
    blocks.clear();
    blocks.shrink_to_fit();
    let freed = rss_anon_kib();
    assert!(usage().free > TRIM_THRESHOLD, "{:?}", usage());
    let returned = trim();
    let after = rss_anon_kib();
    assert!(returned > 24 << 20, "returned only {returned} bytes");
    assert!(
        after < before + 4 * 1024,
        "resident {after} KiB after the trim; {before} before the burst, {freed} once freed, {peak} at the peak"
    );
    drop(pin);
}
