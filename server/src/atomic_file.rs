//! Files written whole or not at all: the one way the server writes a file
//! that must survive a crash (the state file, plans, speech clips, installed
//! and demo tracks). The bytes go to a hidden temporary file in the same
//! folder, which is synced, then renamed (or linked) over the real name, and
//! the folder is synced so that the new name itself survives a power cut. A
//! reader sees the old file or the new one, never half of one; a failure
//! leaves the old file as it was and no temporary file behind.

use std::{
    fs::{self, File},
    io::{self, Write},
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
};

/// Replaces `path` with `bytes`, atomically.
pub fn write(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_with(path, |file| file.write_all(bytes))
}

/// Replaces `path` with what `fill` writes into a new file, atomically (for
/// writers that stream, or seek back to fill in a header).
pub fn write_with<E: From<io::Error>>(
    path: &Path,
    fill: impl FnOnce(&mut File) -> Result<(), E>,
) -> Result<(), E> {
    let temp = temp_name(path);
    let result = fill_temp(&temp, fill).and_then(|()| Ok(commit(&temp, path)?));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

/// Creates `path` with what `fill` writes, atomically, unless something is
/// there already: then nothing changes and the answer is `false` (linking,
/// unlike renaming, fails rather than replaces if another writer took the
/// name in between).
pub fn create_new_with<E: From<io::Error>>(
    path: &Path,
    fill: impl FnOnce(&mut File) -> Result<(), E>,
) -> Result<bool, E> {
    let temp = temp_name(path);
    let result = fill_temp(&temp, fill).and_then(|()| {
        let placed = match fs::hard_link(&temp, path) {
            Ok(()) => true,
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => false,
            // Some file systems (FAT on a memory stick) have no hard links.
            Err(_) if !path.exists() => {
                fs::rename(&temp, path)?;
                true
            }
            Err(_) => false,
        };
        if placed {
            sync_dir(path)?;
        }
        Ok(placed)
    });
    // Gone already after a rename; after a link or a failure, not wanted.
    let _ = fs::remove_file(&temp);
    result
}

/// Puts the written file `temp` (in `path`'s folder) in place of `path`:
/// syncs it, renames it, syncs the folder.
pub fn commit(temp: &Path, path: &Path) -> io::Result<()> {
    File::open(temp)?.sync_all()?;
    fs::rename(temp, path)?;
    sync_dir(path)
}

/// A hidden name, unique in this process, next to `path` for writing it:
/// `.NAME.PID-N.part` (hidden, so that a folder scan skips it).
pub fn temp_name(path: &Path) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}-{n}.part", std::process::id()))
}

fn fill_temp<E: From<io::Error>>(
    temp: &Path,
    fill: impl FnOnce(&mut File) -> Result<(), E>,
) -> Result<(), E> {
    let mut file = File::create(temp)?;
    fill(&mut file)?;
    file.sync_all()?;
    Ok(())
}

/// Syncs the folder of `path`, so that a rename in it is on disk. Folders
/// that cannot be opened or synced (some platforms and file systems) are
/// skipped: the rename is still atomic, only perhaps not yet durable.
fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if let Ok(dir) = File::open(dir) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with('.'))
            .collect()
    }

    #[test]
    fn a_write_replaces_the_file_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write(&path, b"one").unwrap();
        write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write(&path, b"old").unwrap();
        let failed = write_with(&path, |file| {
            file.write_all(b"half")?;
            Err(io::Error::other("the disk filled"))
        });
        assert!(failed.is_err());
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn create_new_never_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("track.wav");
        assert!(create_new_with(&path, |f| f.write_all(b"first")).unwrap());
        assert!(!create_new_with(&path, |f| f.write_all(b"second")).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"first");
        assert!(leftovers(dir.path()).is_empty());
    }
}
