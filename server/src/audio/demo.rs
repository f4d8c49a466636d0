//! The demo library: what a droid with no `music_dir` plays.
//!
//! With the `demo-library` feature (on by default), [`ensure_demo_library`] writes a few short
//! tunes synthesized by this module's synthesizer (`demo/synth.rs`) into the library folder, so a
//! fresh droid has something to play without shipping any recording. Without the feature, it
//! leaves an empty library folder and says in the log how to get music. The player calls it before
//! each scan when no `music_dir` is set.

use std::{
    io,
    path::{Path, PathBuf},
};

#[cfg(feature = "demo-library")]
mod synth;

/// Makes sure the demo tracks are in `dir`, writing those that are missing, and returns their
/// paths: what the player does when no `music_dir` is set. The tracks are synthesized here, the
/// same bytes every time (`Cantina Demo - <Title>.wav`, 44.1 kHz stereo, 16-bit).
#[cfg(feature = "demo-library")]
pub fn ensure_demo_library(dir: &Path) -> io::Result<Vec<PathBuf>> {
    synth::ensure_demo_library(dir)
}

/// Without the `demo-library` feature there are no demo tracks: makes sure `dir` exists (so the
/// library is empty rather than unreadable), says in the log how to get music, and returns no
/// paths.
#[cfg(not(feature = "demo-library"))]
pub fn ensure_demo_library(dir: &Path) -> io::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    tracing::warn!(
        folder = %dir.display(),
        "no music_dir is set and this build has no demo library (the demo-library feature is off): \
         the music library is empty; set music_dir, or put music in with `install music <folder>`"
    );
    Ok(Vec::new())
}

// The synthesizer's own test (the library written once, deterministically, and playable) is in
// `demo/synth.rs`.
#[cfg(all(test, not(feature = "demo-library")))]
mod tests {
    use super::*;
    use crate::audio::library::scan;

    /// A build without the demo library leaves the folder empty (and there), so the scan finds
    /// an empty library rather than failing.
    #[test]
    fn without_the_demo_library_the_library_is_an_empty_folder() {
        let dir = tempfile::tempdir().unwrap();
        let library = dir.path().join("music");
        assert_eq!(
            ensure_demo_library(&library).unwrap(),
            Vec::<PathBuf>::new()
        );
        let scan = scan(&library).unwrap();
        assert!(scan.tracks.is_empty() && scan.skipped.is_empty());
    }
}
