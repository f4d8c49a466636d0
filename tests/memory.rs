//! Freed memory goes back to the system: a burst allocated and freed leaves
//! resident memory where it was once [`cantina_server::memory::trim`] has
//! run. Its own test binary, so that no other test allocates meanwhile.

#![cfg(all(target_os = "linux", target_env = "gnu"))]

use cantina_server::memory::{TRIM_THRESHOLD, proc_status, trim, usage};

/// Resident anonymous memory of this process, in KiB.
fn rss_anon_kib() -> usize {
    proc_status(None, "RssAnon").expect("RssAnon in /proc/self/status") as usize
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

#[test]
fn proc_status_reads_figures_and_counts() {
    let rss = proc_status(None, "VmRSS").expect("VmRSS");
    assert!(rss > 1000, "a test binary holds more than 1 MB: {rss} KiB");
    let me = proc_status(Some(std::process::id()), "VmRSS").expect("by pid");
    assert!(me.abs_diff(rss) < 100_000, "{me} vs {rss}");
    assert!(proc_status(None, "Threads").unwrap() >= 1);
    // A key must be whole: "Vm" is no key, nor is one that is not there.
    assert_eq!(proc_status(None, "Vm"), None);
    assert_eq!(proc_status(None, "NoSuchKey"), None);
    assert_eq!(
        proc_status(Some(u32::MAX), "VmRSS"),
        None,
        "no such process"
    );
}
