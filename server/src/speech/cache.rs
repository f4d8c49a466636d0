//! The speech cache: clips in the data folder, one WAV file each, named by a
//! hash of what made them (engine, voice, settings and text) or of the key a
//! client gave. Bounded in size, oldest used evicted first; files are
//! written to a temporary name and renamed, so a crash never leaves half a
//! clip under a real name; survives restarts.

use std::{
    fs,
    io::ErrorKind,
    path::{Path, PathBuf},
    time::{Duration, SystemTime},
};

use sha2::{Digest, Sha256};

/// A clip: interleaved 16-bit samples.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Clip {
    /// Interleaved samples.
    pub samples: Vec<i16>,
    /// 1 or 2.
    pub channels: u16,
    /// Frames a second.
    pub rate: u32,
}

impl Clip {
    /// Frames in the clip.
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }

    /// How long it plays.
    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.frames() as f64 / f64::from(self.rate.max(1)))
    }
}

/// What the cache holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Clips.
    pub clips: usize,
    /// Their total size.
    pub bytes: u64,
}

/// The cache's folder and bound.
#[derive(Clone, Debug)]
pub struct Cache {
    dir: PathBuf,
    max: u64,
}

/// The cache name of synthesized text.
pub fn text_key(engine: &str, voice: &str, rate: u32, pitch: u32, text: &str) -> String {
    hash(&[
        "text",
        engine,
        voice,
        &rate.to_string(),
        &pitch.to_string(),
        text,
    ])
}

/// The cache name of a clip a client named `key`.
pub fn named_key(key: &str) -> String {
    hash(&["key", key])
}

fn hash(parts: &[&str]) -> String {
    let mut h = Sha256::new();
    for part in parts {
        // Length-prefixed, so that no two part lists hash alike.
        h.update((part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    h.finalize()[..16]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Cache {
    /// The cache in `dir`, holding at most `max` bytes (0: nothing is kept).
    pub fn new(dir: PathBuf, max: u64) -> Self {
        Self { dir, max }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.wav"))
    }

    /// Makes the folder and checks that it can be written.
    ///
    /// # Errors
    ///
    /// Why not, for people.
    pub fn check(&self) -> Result<(), String> {
        fs::create_dir_all(&self.dir)
            .and_then(|()| {
                // What a crash left half written.
                for entry in fs::read_dir(&self.dir)?.flatten() {
                    let path = entry.path();
                    if path.extension().is_some_and(|x| x == "tmp" || x == "part") {
                        let _ = fs::remove_file(path);
                    }
                }
                let probe = self.dir.join(".write-test");
                fs::write(&probe, b"")?;
                fs::remove_file(probe)
            })
            .map_err(|e| {
                format!(
                    "the speech cache {} cannot be written ({e}); speech plays but is not kept: check the folder's permissions and free space, or set data_dir",
                    self.dir.display()
                )
            })
    }

    /// The clip under `key`, if kept (marked as just used).
    ///
    /// # Errors
    ///
    /// A file that is there but cannot be read as a clip (it is removed).
    pub fn get(&self, key: &str) -> Result<Option<Clip>, String> {
        let path = self.path(key);
        let reader = match hound::WavReader::open(&path) {
            Ok(reader) => reader,
            Err(hound::Error::IoError(e)) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                let _ = fs::remove_file(&path);
                return Err(format!(
                    "a damaged clip in the speech cache was removed ({e})"
                ));
            }
        };
        let spec = reader.spec();
        let samples: Result<Vec<i16>, _> = reader.into_samples::<i16>().collect();
        match samples {
            Ok(samples) if spec.channels > 0 && spec.channels <= 2 => {
                // Used now: evicted last.
                if let Ok(file) = fs::File::options().append(true).open(&path) {
                    let _ = file.set_modified(SystemTime::now());
                }
                Ok(Some(Clip {
                    samples,
                    channels: spec.channels,
                    rate: spec.sample_rate,
                }))
            }
            Ok(_) | Err(_) => {
                let _ = fs::remove_file(&path);
                Err("a damaged clip in the speech cache was removed".into())
            }
        }
    }

    /// Keeps `clip` under `key`, then evicts the oldest clips over the bound.
    ///
    /// # Errors
    ///
    /// Why it could not be written (the clip still played).
    pub fn put(&self, key: &str, clip: &Clip) -> Result<(), String> {
        // A clip bigger than the whole cache would only evict the others.
        let size = 44 + 2 * clip.samples.len() as u64;
        if self.max == 0 || size > self.max {
            return Ok(());
        }
        let write = || -> Result<(), hound::Error> {
            fs::create_dir_all(&self.dir)?;
            let spec = hound::WavSpec {
                channels: clip.channels,
                sample_rate: clip.rate,
                bits_per_sample: 16,
                sample_format: hound::SampleFormat::Int,
            };
            // A temporary name of its own, so two utterances of the same
            // text never share one.
            crate::atomic_file::write_with(&self.path(key), |file| {
                let mut writer = hound::WavWriter::new(std::io::BufWriter::new(file), spec)?;
                let mut w = writer.get_i16_writer(clip.samples.len() as u32);
                for &s in &clip.samples {
                    w.write_sample(s);
                }
                w.flush()?;
                writer.finalize()
            })
        };
        write().map_err(|e| {
            format!(
                "could not keep the clip in the speech cache {} ({e}); it played but is not cached: check free space and permissions",
                self.dir.display()
            )
        })?;
        self.evict();
        Ok(())
    }

    /// Whether a clip is kept under `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.path(key).is_file()
    }

    /// What the cache holds.
    pub fn usage(&self) -> Usage {
        let clips = self.clips();
        Usage {
            clips: clips.len(),
            bytes: clips.iter().map(|c| c.1).sum(),
        }
    }

    /// Clips with their size and last use, oldest first.
    fn clips(&self) -> Vec<(PathBuf, u64, SystemTime)> {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        let mut clips: Vec<_> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "wav"))
            .filter_map(|e| {
                let meta = e.metadata().ok()?;
                Some((e.path(), meta.len(), meta.modified().ok()?))
            })
            .collect();
        clips.sort_by_key(|c| c.2);
        clips
    }

    /// Removes the oldest clips until the rest fit the bound.
    fn evict(&self) {
        let clips = self.clips();
        let mut total: u64 = clips.iter().map(|c| c.1).sum();
        for (path, size, _) in clips {
            if total <= self.max {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total -= size;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clip(frames: usize, value: i16) -> Clip {
        Clip {
            samples: vec![value; frames],
            channels: 1,
            rate: 22_050,
        }
    }

    #[test]
    fn keys_depend_on_everything_that_changes_the_sound() {
        let k = text_key("espeak-ng", "en", 165, 50, "hello");
        assert_eq!(k, text_key("espeak-ng", "en", 165, 50, "hello"));
        assert_ne!(k, text_key("espeak-ng", "en", 166, 50, "hello"));
        assert_ne!(k, text_key("espeak-ng", "en", 165, 51, "hello"));
        assert_ne!(k, text_key("espeak-ng", "de", 165, 50, "hello"));
        assert_ne!(k, text_key("piper:x", "en", 165, 50, "hello"));
        assert_ne!(k, text_key("espeak-ng", "en", 165, 50, "hello!"));
        assert_ne!(named_key("a"), named_key("b"));
        assert_eq!(k.len(), 32);
    }

    #[test]
    fn a_clip_comes_back_as_it_was_kept_across_instances() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().join("c"), 1 << 20);
        assert_eq!(cache.get("k").unwrap(), None);
        let c = clip(1000, 1234);
        cache.put("k", &c).unwrap();
        let again = Cache::new(dir.path().join("c"), 1 << 20);
        assert_eq!(again.get("k").unwrap(), Some(c));
        assert_eq!(again.usage().clips, 1);
    }

    #[test]
    fn the_oldest_used_clips_go_first_when_over_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        // Each clip: 44-byte header + 2000 bytes.
        let cache = Cache::new(dir.path().to_path_buf(), 5000);
        let set_age = |key: &str, secs: u64| {
            let f = fs::File::options()
                .append(true)
                .open(dir.path().join(format!("{key}.wav")))
                .unwrap();
            f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
                .unwrap();
        };
        cache.put("a", &clip(1000, 1)).unwrap();
        set_age("a", 100);
        cache.put("b", &clip(1000, 2)).unwrap();
        set_age("b", 200);
        // Using `a` makes `b` the oldest.
        cache.get("a").unwrap().unwrap();
        cache.put("c", &clip(1000, 3)).unwrap();
        assert!(cache.contains("a"));
        assert!(!cache.contains("b"));
        assert!(cache.contains("c"));
        assert!(cache.usage().bytes <= 5000);
    }

    #[test]
    fn a_damaged_clip_is_an_error_once_then_gone() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::new(dir.path().to_path_buf(), 1 << 20);
        fs::write(dir.path().join("bad.wav"), b"not a wav at all").unwrap();
        assert!(cache.get("bad").is_err());
        assert_eq!(cache.get("bad").unwrap(), None);
    }

    #[test]
    fn a_folder_that_cannot_be_written_is_reported_with_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a-file");
        fs::write(&file, b"").unwrap();
        let cache = Cache::new(file.join("cache"), 1 << 20);
        let e = cache.check().unwrap_err();
        assert!(e.contains("cannot be written"), "{e}");
        assert!(cache.put("k", &clip(10, 1)).is_err());
    }
}
