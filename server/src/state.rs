//! What survives a restart, as MPD keeps its state file: the few settings a
//! person changes while the droid runs and expects to find again, kept in
//! `state.json` in the data folder. Today: the master volume and the eyes'
//! brightness. The speech cache and the plans folder are files of their own
//! already; the mode, the queue and the log level start afresh on purpose
//! (a droid that boots into a show, or with last night's queue, surprises).
//!
//! The file is read once at boot; from then on every change is written
//! atomically ([`atomic_file`]). A file that cannot be read or understood
//! is renamed `state.json.bad`, the server says so and starts with the
//! defaults: nothing a person wrote is lost, and nothing stops the droid.

use std::{
    fs, io,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::{atomic_file, audio::Audio, eyes::Eyes};

/// The state file's name, in the data folder.
pub const FILE_NAME: &str = "state.json";

/// What is kept. A field missing from the file keeps its default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Saved {
    /// The master volume, 0–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume: Option<u8>,
    /// The eyes' brightness, 0.0–1.0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eye_brightness: Option<f64>,
}

impl Saved {
    /// Why the values cannot be used, if they cannot.
    fn check(&self) -> Result<(), String> {
        if let Some(volume) = self.volume
            && volume > 100
        {
            return Err(format!("volume {volume} is not 0–100"));
        }
        if let Some(brightness) = self.eye_brightness
            && !(0.0..=1.0).contains(&brightness)
        {
            return Err(format!("eye_brightness {brightness} is not 0.0–1.0"));
        }
        Ok(())
    }
}

/// What [`load`] found.
#[derive(Debug, Default, PartialEq)]
pub struct Loaded {
    /// The values to start with (the defaults when there is no usable file).
    pub saved: Saved,
    /// What to tell people: the file was bad and where it was put aside.
    pub warning: Option<String>,
}

/// The state file in `data_dir`.
pub fn path(data_dir: &Path) -> PathBuf {
    data_dir.join(FILE_NAME)
}

/// Reads the state file in `data_dir`. No file: the defaults, quietly. A
/// file that cannot be read or parsed, or holds values out of range: it is
/// renamed `state.json.bad` (replacing an older one) and the defaults are
/// used, with a warning that says so.
pub fn load(data_dir: &Path) -> Loaded {
    let file = path(data_dir);
    let problem = match fs::read(&file) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Loaded::default(),
        Err(e) => format!("cannot be read ({e})"),
        Ok(bytes) => match serde_json::from_slice::<Saved>(&bytes)
            .map_err(|e| e.to_string())
            .and_then(|saved| saved.check().map(|()| saved))
        {
            Ok(saved) => {
                return Loaded {
                    saved,
                    warning: None,
                };
            }
            Err(e) => format!("is not a state file ({e})"),
        },
    };
    let bad = file.with_file_name(format!("{FILE_NAME}.bad"));
    let kept = match fs::rename(&file, &bad) {
        Ok(()) => format!("it was renamed {}", bad.display()),
        Err(e) => format!("it could not be renamed {} ({e})", bad.display()),
    };
    Loaded {
        saved: Saved::default(),
        warning: Some(format!(
            "the state file {} {problem}: starting with the default volume and eye brightness; \
             {kept}, look at it or delete it",
            file.display()
        )),
    }
}

/// Writes `saved` to the state file in `data_dir`, atomically.
pub fn save(data_dir: &Path, saved: &Saved) -> io::Result<()> {
    fs::create_dir_all(data_dir)?;
    let mut text = serde_json::to_string_pretty(saved).map_err(io::Error::other)?;
    text.push('\n');
    atomic_file::write(&path(data_dir), text.as_bytes())
}

/// Gives the parts the values of `saved` to start with; call before they start.
pub fn restore(saved: &Saved, audio: &Audio, eyes: &Eyes) {
    if let Some(volume) = saved.volume {
        audio.restore_volume(volume);
    }
    if let Some(brightness) = saved.eye_brightness {
        eyes.restore_brightness(brightness);
    }
}

/// Follows the volume and the brightness and writes the state file when
/// either changes (from any client, a plan, or a reset); ends when both
/// parts are gone. A failed write is a warning: the droid runs on, and the
/// next change tries again.
pub fn keep(data_dir: PathBuf, mut saved: Saved, audio: &Audio, eyes: &Eyes) {
    let mut audio = audio.subscribe();
    let mut eyes = eyes.subscribe();
    // What the parts started with: only a change from it is written (the
    // audio publishes its state often, and a restart is no change).
    let mut volume_seen = {
        let now = audio.borrow_and_update();
        match now.state {
            Some(_) => now.volume,
            None => saved.volume.unwrap_or(crate::audio::gain::DEFAULT_VOLUME),
        }
    };
    let mut brightness_seen = eyes.borrow_and_update().brightness;
    // What should be on disk: every change lands here first, so that a
    // write that failed is retried in full with the next change.
    let mut wanted = saved;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                changed = audio.changed() => if changed.is_err() { break },
                changed = eyes.changed() => if changed.is_err() { break },
            }
            {
                let audio = audio.borrow_and_update();
                // Before the audio first starts its state holds no volume.
                if audio.state.is_some() && audio.volume != volume_seen {
                    wanted.volume = Some(audio.volume);
                    volume_seen = audio.volume;
                }
            }
            {
                let brightness = eyes.borrow_and_update().brightness;
                if brightness != brightness_seen {
                    wanted.eye_brightness = Some(brightness);
                    brightness_seen = brightness;
                }
            }
            // Only a change of its own writes (the audio publishes often).
            if wanted == saved {
                continue;
            }
            let now = wanted;
            let dir = data_dir.clone();
            let written = tokio::task::spawn_blocking(move || save(&dir, &now)).await;
            match written {
                Ok(Ok(())) => saved = now,
                Ok(Err(e)) => warn!(
                    path = %path(&data_dir).display(),
                    error = %e,
                    "could not keep the volume and eye brightness for the next start; check the data folder's free space and permissions"
                ),
                Err(_) => break,
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_file_is_the_defaults_without_a_word() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()), Loaded::default());
    }

    #[test]
    fn what_is_saved_is_loaded() {
        let dir = tempfile::tempdir().unwrap();
        let saved = Saved {
            volume: Some(35),
            eye_brightness: Some(0.25),
        };
        save(dir.path(), &saved).unwrap();
        assert_eq!(
            load(dir.path()),
            Loaded {
                saved,
                warning: None
            }
        );
        // A file of only some fields keeps the defaults of the others.
        fs::write(path(dir.path()), r#"{"volume": 10}"#).unwrap();
        assert_eq!(load(dir.path()).saved.eye_brightness, None);
    }

    #[test]
    fn a_bad_file_is_put_aside_with_a_warning() {
        for bad in [
            "{\"volume\": 4",
            "{\"volume\": 400}",
            "{\"eye_brightness\": 2.0}",
            "{\"volum\": 40}",
            "",
        ] {
            let dir = tempfile::tempdir().unwrap();
            fs::write(path(dir.path()), bad).unwrap();
            let loaded = load(dir.path());
            assert_eq!(loaded.saved, Saved::default(), "{bad}");
            let warning = loaded.warning.expect("a warning");
            assert!(warning.contains("state.json.bad"), "{warning}");
            assert!(!path(dir.path()).exists());
            assert_eq!(
                fs::read_to_string(dir.path().join("state.json.bad")).unwrap(),
                bad,
                "the bad file is kept as it was"
            );
        }
    }
}
