//! Session files: `cantina-session-YYYYMMDD-HHMMSS.log`, one line per entry,
//! written in batches by a thread of their own (file I/O never runs on the
//! logging path or the async runtime). When writing fails (disk full,
//! read-only, folder gone) the entries wait in memory, the failure is
//! reported, and writing is retried every flush interval; when it works again
//! the waiting entries are written first. Closing writes everything.
//! Retention keeps at most a number of files and a total size.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{BufWriter, Write},
    path::{Path, PathBuf},
    sync::mpsc,
    thread::JoinHandle,
    time::Duration,
};

use super::{Entry, settings::LogFileFormat};

/// Messages to the writer thread.
pub enum Msg {
    /// An entry to write.
    Entry(Entry),
    /// Write everything, close the file, and end the thread.
    Close,
}

/// What the writer tells the log service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Writing works (again).
    Writing(PathBuf),
    /// Writing failed: why, and how many entries wait.
    Failing(String),
}

/// Settings of the writer.
#[derive(Clone, Debug)]
pub struct FileSettings {
    /// The folder of the session files.
    pub dir: PathBuf,
    /// The file name (no folder).
    pub name: String,
    /// Line format.
    pub format: LogFileFormat,
    /// Longest an entry waits before the file is flushed.
    pub flush_interval: Duration,
    /// Files kept (0: all).
    pub retention_files: usize,
    /// Total bytes kept.
    pub retention_bytes: u64,
    /// Entries kept waiting while writing fails; older ones are counted lost.
    pub max_pending: usize,
}

/// Starts the writer thread; `report` hears about failures and recoveries.
pub fn spawn(
    settings: FileSettings,
    report: impl Fn(Health) + Send + 'static,
) -> (mpsc::Sender<Msg>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("cantina-logfile".into())
        .spawn(move || Writer::new(settings, report).run(rx))
        .expect("spawn the log file thread");
    (tx, handle)
}

struct Writer<R> {
    settings: FileSettings,
    report: R,
    file: Option<BufWriter<File>>,
    pending: VecDeque<Entry>,
    /// Entries dropped from `pending` while writing failed for long.
    lost: u64,
    failing: Option<String>,
    dirty: bool,
}

impl<R: Fn(Health)> Writer<R> {
    fn new(settings: FileSettings, report: R) -> Self {
        Self {
            settings,
            report,
            file: None,
            pending: VecDeque::new(),
            lost: 0,
            failing: None,
            dirty: false,
        }
    }

    fn path(&self) -> PathBuf {
        self.settings.dir.join(&self.settings.name)
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        self.write_pending();
        loop {
            match rx.recv_timeout(self.settings.flush_interval) {
                Ok(Msg::Entry(entry)) => {
                    self.queue(entry);
                    // Take whatever else is already waiting: one batch.
                    let mut close = false;
                    while let Ok(msg) = rx.try_recv() {
                        match msg {
                            Msg::Entry(entry) => self.queue(entry),
                            Msg::Close => close = true,
                        }
                    }
                    self.write_pending();
                    if close {
                        self.close();
                        return;
                    }
                }
                Ok(Msg::Close) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                    self.close();
                    return;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    self.write_pending();
                    self.flush();
                }
            }
        }
    }

    fn queue(&mut self, entry: Entry) {
        if self.pending.len() >= self.settings.max_pending {
            self.pending.pop_front();
            self.lost += 1;
        }
        self.pending.push_back(entry);
    }

    fn open(&mut self) -> std::io::Result<()> {
        if self.file.is_some() {
            return Ok(());
        }
        fs::create_dir_all(&self.settings.dir)?;
        let path = self.path();
        let fresh = !path.exists();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        self.file = Some(BufWriter::with_capacity(64 * 1024, file));
        if fresh {
            prune(&self.settings, &path);
        }
        Ok(())
    }

    fn write_pending(&mut self) {
        if self.pending.is_empty() && self.lost == 0 {
            return;
        }
        let result = self.open().and_then(|()| {
            let file = self.file.as_mut().expect("opened");
            if self.lost > 0 {
                writeln!(
                    file,
                    "[{}] WARN  logs {} entries could not be written while the log file was failing",
                    humantime::format_rfc3339_millis(std::time::SystemTime::now()),
                    self.lost
                )?;
            }
            let mut line = String::with_capacity(256);
            while let Some(entry) = self.pending.front() {
                line.clear();
                render(&mut line, entry, self.settings.format);
                file.write_all(line.as_bytes())?;
                self.pending.pop_front();
            }
            Ok(())
        });
        match result {
            Ok(()) => {
                self.lost = 0;
                self.dirty = true;
                if self.failing.take().is_some() {
                    self.flush();
                    (self.report)(Health::Writing(self.path()));
                }
            }
            Err(e) => self.fail(e),
        }
    }

    fn flush(&mut self) {
        if !self.dirty {
            return;
        }
        if let Some(file) = self.file.as_mut()
            && let Err(e) = file.flush().and_then(|()| file.get_ref().sync_data())
        {
            self.fail(e);
            return;
        }
        self.dirty = false;
    }

    fn fail(&mut self, error: std::io::Error) {
        // Whatever the buffer held is lost with the handle; reopen next time.
        self.file = None;
        let reason = format!(
            "cannot write the session log {}: {error}; keeping entries in memory and retrying",
            self.path().display()
        );
        if self.failing.as_deref() != Some(reason.as_str()) {
            (self.report)(Health::Failing(reason.clone()));
            self.failing = Some(reason);
        }
    }

    fn close(&mut self) {
        self.write_pending();
        self.flush();
        self.file = None;
    }
}

/// Deletes the oldest session files beyond the retention limits, never `keep`.
fn prune(settings: &FileSettings, keep: &Path) {
    let Ok(dir) = fs::read_dir(&settings.dir) else {
        return;
    };
    let mut files: Vec<(PathBuf, u64)> = dir
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with("cantina-session-")
        })
        .filter_map(|e| Some((e.path(), e.metadata().ok()?.len())))
        .collect();
    // Names carry the start time, so name order is age order.
    files.sort();
    let mut total: u64 = files.iter().map(|(_, size)| size).sum();
    let mut count = files.len();
    for (path, size) in files {
        let too_many = settings.retention_files > 0 && count > settings.retention_files;
        let too_big = total > settings.retention_bytes;
        if !(too_many || too_big) {
            break;
        }
        if path == keep {
            continue;
        }
        if fs::remove_file(&path).is_ok() {
            count -= 1;
            total -= size;
        }
    }
}

/// One line of the session file.
pub fn render(out: &mut String, entry: &Entry, format: LogFileFormat) {
    use std::fmt::Write as _;
    let record = &entry.record;
    match format {
        LogFileFormat::Text => {
            let _ = write!(
                out,
                "[{}] {:<5} {} {}",
                humantime::format_rfc3339_millis(record.timestamp),
                record.level,
                entry.service,
                record.message
            );
            for (key, value) in &record.fields {
                let _ = write!(out, " {key}={value}");
            }
            if let Some(id) = &record.correlation_id {
                let _ = write!(out, " correlation_id={id}");
            }
            if entry.repeated > 0 {
                let _ = write!(out, " repeated={}", entry.repeated);
            }
            out.push('\n');
        }
        LogFileFormat::Json => {
            let line = serde_json::json!({
                "seq": entry.seq,
                "timestamp": humantime::format_rfc3339_micros(record.timestamp).to_string(),
                "level": record.level.as_str(),
                "service": entry.service,
                "target": record.target,
                "message": record.message,
                "fields": record.fields.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(v.as_str()))).collect::<serde_json::Map<_, _>>(),
                "correlation_id": record.correlation_id.as_deref(),
                "repeated": entry.repeated,
            });
            let _ = writeln!(out, "{line}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn settings(dir: &Path, files: usize, bytes: u64) -> FileSettings {
        FileSettings {
            dir: dir.to_path_buf(),
            name: "cantina-session-20261122-120000.log".into(),
            format: LogFileFormat::Text,
            flush_interval: Duration::from_millis(10),
            retention_files: files,
            retention_bytes: bytes,
            max_pending: 100,
        }
    }

    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn retention_deletes_the_oldest_files_beyond_the_count() {
        let dir = tempfile::tempdir().unwrap();
        for day in 1..=4 {
            fs::write(
                dir.path()
                    .join(format!("cantina-session-2026110{day}-000000.log")),
                "x\n",
            )
            .unwrap();
        }
        fs::write(dir.path().join("notes.txt"), "not a session log").unwrap();
        let (tx, thread) = spawn(settings(dir.path(), 3, 1 << 30), |_| {});
        tx.send(Msg::Close).unwrap();
        thread.join().unwrap();
        // Nothing was written yet, so no file of this session was created...
        assert_eq!(names(dir.path()).len(), 5);
        let (tx, thread) = spawn(settings(dir.path(), 3, 1 << 30), |_| {});
        let record = Arc::new(crate::logs::Record {
            timestamp: std::time::SystemTime::now(),
            level: tracing::Level::INFO,
            target: "cantina_server::droid",
            message: "hello".into(),
            fields: vec![("k", "v".into())],
            correlation_id: None,
        });
        tx.send(Msg::Entry(Entry {
            seq: 1,
            record,
            service: "droid",
            repeated: 0,
        }))
        .unwrap();
        tx.send(Msg::Close).unwrap();
        thread.join().unwrap();
        // ...and creating it pruned down to three session files, oldest first.
        assert_eq!(
            names(dir.path()),
            [
                "cantina-session-20261103-000000.log",
                "cantina-session-20261104-000000.log",
                "cantina-session-20261122-120000.log",
                "notes.txt",
            ]
        );
        let text =
            fs::read_to_string(dir.path().join("cantina-session-20261122-120000.log")).unwrap();
        assert!(text.ends_with("] INFO  droid hello k=v\n"), "{text}");
    }

    #[test]
    fn retention_keeps_the_total_size_under_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        for day in 1..=3 {
            fs::write(
                dir.path()
                    .join(format!("cantina-session-2026110{day}-000000.log")),
                vec![b'x'; 1000],
            )
            .unwrap();
        }
        let (tx, thread) = spawn(settings(dir.path(), 0, 2100), |_| {});
        let record = Arc::new(crate::logs::Record {
            timestamp: std::time::SystemTime::now(),
            level: tracing::Level::WARN,
            target: "x",
            message: "m".into(),
            fields: Vec::new(),
            correlation_id: None,
        });
        tx.send(Msg::Entry(Entry {
            seq: 1,
            record,
            service: "x",
            repeated: 3,
        }))
        .unwrap();
        tx.send(Msg::Close).unwrap();
        thread.join().unwrap();
        let kept = names(dir.path());
        assert_eq!(kept.len(), 3, "{kept:?}");
        assert!(!kept.contains(&"cantina-session-20261101-000000.log".to_string()));
    }

    #[test]
    fn json_lines_carry_every_field() {
        let record = Arc::new(crate::logs::Record {
            timestamp: std::time::SystemTime::UNIX_EPOCH,
            level: tracing::Level::ERROR,
            target: "cantina_server::bus",
            message: "boom".into(),
            fields: vec![("subscriber", "eyes".into())],
            correlation_id: Some(Arc::from("c-1")),
        });
        let entry = Entry {
            seq: 9,
            record,
            service: "bus",
            repeated: 2,
        };
        let mut line = String::new();
        render(&mut line, &entry, LogFileFormat::Json);
        let json: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(json["seq"], 9);
        assert_eq!(json["level"], "ERROR");
        assert_eq!(json["fields"]["subscriber"], "eyes");
        assert_eq!(json["correlation_id"], "c-1");
        assert_eq!(json["repeated"], 2);
        let mut text = String::new();
        render(&mut text, &entry, LogFileFormat::Text);
        assert_eq!(
            text,
            "[1970-01-01T00:00:00.000Z] ERROR bus boom subscriber=eyes correlation_id=c-1 repeated=2\n"
        );
    }
}
