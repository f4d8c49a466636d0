//! Session files: `cantina-session-YYYYMMDD-HHMMSS.log`, one line per entry,
//! written in batches by a thread of their own (file I/O never runs on the
//! logging path or the async runtime). Every write is of whole lines, so a
//! crash between writes leaves a file that ends in `\n`; a write that fails
//! half way (disk full) is cut back to the last whole line and tried again.
//! Lines wait in memory at most one flush interval (or until 64 KiB are
//! waiting), then are written and synced, however busy the server is.
//!
//! When writing fails (disk full, read-only, folder gone) the entries wait in
//! memory, the failure is reported, and writing is retried every flush
//! interval; when it works again the waiting entries are written first.
//! Closing writes everything. Retention keeps at most a number of files and
//! a total size. [`previous_session`] reads how the session before this one
//! ended.

use std::{
    collections::VecDeque,
    fs::{self, File, OpenOptions},
    io::{BufRead, BufReader, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    sync::mpsc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use super::{Entry, settings::LogFileFormat};

/// Messages to the writer thread.
pub enum Msg {
    /// An entry to write.
    Entry(Entry),
    /// Write what waits and sync it now (the log service sends it at every
    /// flush interval, right after the dedup counts so far).
    Flush,
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

/// Rendered lines written before the flush interval is up once this many
/// bytes wait.
const BATCH_BYTES: usize = 64 * 1024;

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
    /// The session file, opened for appending once there is a line to write.
    file: Option<File>,
    /// Its length after the last write that succeeded: always at the end of
    /// a whole line, and where a failed write is cut back to.
    good_len: u64,
    /// Entries not rendered yet (they pile up here while writing fails).
    pending: VecDeque<Entry>,
    /// Whole lines rendered and not written yet.
    lines: String,
    /// Entries dropped from `pending` while writing failed for long.
    lost: u64,
    failing: Option<String>,
    /// Written since the last sync.
    dirty: bool,
}

impl<R: Fn(Health)> Writer<R> {
    fn new(settings: FileSettings, report: R) -> Self {
        Self {
            settings,
            report,
            file: None,
            good_len: 0,
            pending: VecDeque::new(),
            lines: String::new(),
            lost: 0,
            failing: None,
            dirty: false,
        }
    }

    fn path(&self) -> PathBuf {
        self.settings.dir.join(&self.settings.name)
    }

    fn run(mut self, rx: mpsc::Receiver<Msg>) {
        let interval = self.settings.flush_interval;
        // A deadline, not a timeout per message: a busy server, whose
        // entries never leave the channel idle, is flushed as often.
        // (A huge interval saturates instead of overflowing the clock.)
        let after_interval = || {
            let now = Instant::now();
            now.checked_add(interval)
                .unwrap_or_else(|| now + Duration::from_secs(86_400 * 365))
        };
        let mut next_flush = after_interval();
        loop {
            let wait = next_flush.saturating_duration_since(Instant::now());
            let mut flush = false;
            let mut close = false;
            match rx.recv_timeout(wait) {
                Ok(Msg::Entry(entry)) => {
                    self.queue(entry);
                    // Take whatever else is already waiting: one batch,
                    // bounded, so that a flood cannot hold off the flush.
                    for _ in 0..4096 {
                        let Ok(msg) = rx.try_recv() else { break };
                        match msg {
                            Msg::Entry(entry) => self.queue(entry),
                            Msg::Flush => flush = true,
                            Msg::Close => close = true,
                        }
                    }
                    self.render_pending();
                    if self.lines.len() >= BATCH_BYTES {
                        self.write_lines();
                    }
                }
                Ok(Msg::Flush) => flush = true,
                Ok(Msg::Close) | Err(mpsc::RecvTimeoutError::Disconnected) => close = true,
                Err(mpsc::RecvTimeoutError::Timeout) => flush = true,
            }
            if close {
                self.close();
                return;
            }
            if flush || Instant::now() >= next_flush {
                self.render_pending();
                self.write_lines();
                self.sync();
                next_flush = after_interval();
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

    /// Renders the waiting entries into whole lines, unless writing fails
    /// (then they wait as entries, where `max_pending` bounds them).
    fn render_pending(&mut self) {
        if self.failing.is_some() {
            return;
        }
        if self.lost > 0 {
            use std::fmt::Write as _;
            let _ = writeln!(
                self.lines,
                "[{}] WARN  logs {} entries could not be written while the log file was failing",
                humantime::format_rfc3339_millis(std::time::SystemTime::now()),
                self.lost
            );
            self.lost = 0;
        }
        for entry in self.pending.drain(..) {
            render(&mut self.lines, &entry, self.settings.format);
        }
    }

    fn open(&mut self) -> std::io::Result<()> {
        if self.file.is_some() {
            return Ok(());
        }
        fs::create_dir_all(&self.settings.dir)?;
        let path = self.path();
        let fresh = !path.exists();
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)?;
        // A write of ours that failed half way and could not be cut back
        // then: its lines are still waiting, so the fragment goes.
        self.good_len = whole_lines_len(&file)?;
        if file.metadata()?.len() != self.good_len {
            file.set_len(self.good_len)?;
        }
        self.file = Some(file);
        if fresh {
            prune(&self.settings, &path);
        }
        Ok(())
    }

    /// Writes the rendered lines in one write of whole lines.
    fn write_lines(&mut self) {
        if self.lines.is_empty() {
            if self.failing.is_some() {
                // Retry: the entries waiting while it failed go first.
                self.failing_retry();
            }
            return;
        }
        let result = self.open().and_then(|()| {
            let file = self.file.as_mut().expect("opened");
            file.write_all(self.lines.as_bytes())
        });
        match result {
            Ok(()) => {
                self.good_len += self.lines.len() as u64;
                self.lines.clear();
                self.dirty = true;
                if self.failing.take().is_some() {
                    self.sync();
                    (self.report)(Health::Writing(self.path()));
                }
            }
            Err(e) => {
                // Cut a half-written batch back to the last whole line; the
                // batch stays and is written whole next time.
                if let Some(file) = self.file.as_ref() {
                    let _ = file.set_len(self.good_len);
                }
                self.fail(e);
            }
        }
    }

    /// While failing, entries wait unrendered; try to write them.
    fn failing_retry(&mut self) {
        let failing = self.failing.take();
        self.render_pending();
        self.failing = failing;
        if !self.lines.is_empty() {
            self.write_lines();
        }
    }

    fn sync(&mut self) {
        if !self.dirty {
            return;
        }
        if let Some(file) = self.file.as_ref()
            && let Err(e) = file.sync_data()
        {
            self.fail(e);
            return;
        }
        self.dirty = false;
    }

    fn fail(&mut self, error: std::io::Error) {
        // Reopen next time (the folder may come back).
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
        if self.failing.is_some() {
            self.failing_retry();
        } else {
            self.render_pending();
            self.write_lines();
        }
        self.sync();
        self.file = None;
    }
}

/// The length of `file` up to and with its last `\n` (0 when it has none).
fn whole_lines_len(mut file: &File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    let mut end = len;
    let mut chunk = [0u8; 4096];
    while end > 0 {
        let start = end.saturating_sub(chunk.len() as u64);
        let part = &mut chunk[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(part)?;
        if let Some(at) = part.iter().rposition(|&b| b == b'\n') {
            return Ok(start + at as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The marker a clean shutdown writes last: the message of the final entry.
pub fn clean_end_message(session_id: &str) -> String {
    format!("log session {session_id} ended cleanly")
}

/// How the most recent session before this one ended, read from its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Previous {
    /// Its session file.
    pub path: PathBuf,
    /// Its session id, from its first line (when that says it).
    pub session_id: Option<String>,
    /// The time of its last whole line, as written there.
    pub last_time: Option<String>,
    /// How it ended.
    pub end: PreviousEnd,
}

/// How a previous session ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PreviousEnd {
    /// Its last line is the clean-end marker.
    Clean,
    /// It stops without the marker: killed, crashed, or the power went.
    Abrupt,
    /// It ends in a partial line (the disk filled, or a write was cut).
    Torn,
}

impl Previous {
    /// What the new session says about it, or `None` when it ended cleanly.
    pub fn warning(&self) -> Option<String> {
        let who = match &self.session_id {
            Some(id) => format!("the previous session {id} ({})", self.path.display()),
            None => format!("the previous session ({})", self.path.display()),
        };
        let last = match &self.last_time {
            Some(time) => format!("its last line is from {time}"),
            None => "it has no whole line".to_string(),
        };
        match self.end {
            PreviousEnd::Clean => None,
            PreviousEnd::Abrupt => Some(format!(
                "{who} ended abruptly (killed, crashed or lost power): {last}; \
                 what it logged after its last flush is lost"
            )),
            PreviousEnd::Torn => Some(format!(
                "{who} ended abruptly and its file ends in a partial line (was the disk full?): \
                 {last}; the file is left as it is and this session writes to a new one"
            )),
        }
    }
}

/// The most recent session file in `dir` other than `current` (by time of
/// last change, then name), and how it ended; `None` when there is none.
pub fn previous_session(dir: &Path, current: &str) -> Option<Previous> {
    let path = fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("cantina-session-") && name != current
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.file_name(), e.path())))
        .max()?
        .2;
    let mut file = File::open(&path).ok()?;
    let len = file.metadata().ok()?.len();
    let mut first = String::new();
    let _ = BufReader::new(&file).take(4096).read_line(&mut first);
    let session_id = first
        .split("log session ")
        .nth(1)
        .and_then(|rest| rest.split(" started").next())
        .filter(|id| !id.is_empty() && !id.contains(char::is_whitespace))
        .map(str::to_string);
    // The last line fits in the last 64 KiB.
    let from = len.saturating_sub(64 * 1024);
    file.seek(SeekFrom::Start(from)).ok()?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail).ok()?;
    let tail = String::from_utf8_lossy(&tail);
    let torn = !tail.is_empty() && !tail.ends_with('\n');
    let whole = match tail.rfind('\n') {
        Some(at) => &tail[..at],
        None => "",
    };
    let last = whole.rsplit('\n').next().filter(|l| !l.is_empty());
    let end = if torn {
        PreviousEnd::Torn
    } else if let (Some(line), Some(id)) = (last, &session_id)
        && is_clean_end(line, id)
    {
        PreviousEnd::Clean
    } else {
        PreviousEnd::Abrupt
    };
    Some(Previous {
        path,
        session_id,
        last_time: last.and_then(line_time),
        end,
    })
}

/// Whether `line` is the clean-end marker of session `id`, written by the
/// logs service itself: the whole line, not text that merely contains it (a
/// client can put any words in a logged command line).
fn is_clean_end(line: &str, id: &str) -> bool {
    let message = clean_end_message(id);
    if let Some(rest) = line.strip_prefix('[') {
        return rest
            .split_once("] ")
            .is_some_and(|(_, rest)| rest == format!("{:<5} logs {message}", "INFO"));
    }
    serde_json::from_str::<serde_json::Value>(line).is_ok_and(|json| {
        json["service"] == "logs"
            && json["message"] == message.as_str()
            && json["fields"]
                .as_object()
                .is_none_or(serde_json::Map::is_empty)
    })
}

/// The time a session file line carries, in either format.
fn line_time(line: &str) -> Option<String> {
    if let Some(rest) = line.strip_prefix('[') {
        return rest.split(']').next().map(str::to_string);
    }
    let json: serde_json::Value = serde_json::from_str(line).ok()?;
    json["timestamp"].as_str().map(str::to_string)
}

/// A session file name for `stamp` not taken in `dir`: the first start in a
/// second gets `cantina-session-STAMP.EXT`, another in the same second
/// `cantina-session-STAMP_1.EXT` and so on (a new session never appends to
/// an old one's file).
pub fn free_name(dir: &Path, stamp: &str, extension: &str) -> String {
    let plain = format!("cantina-session-{stamp}.{extension}");
    if !dir.join(&plain).exists() {
        return plain;
    }
    (1..)
        .map(|n| format!("cantina-session-{stamp}_{n}.{extension}"))
        .find(|name| !dir.join(name).exists())
        .expect("a free name")
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

    #[test]
    fn a_fragment_of_our_own_failed_write_is_cut_before_writing_on() {
        let dir = tempfile::tempdir().unwrap();
        let settings = settings(dir.path(), 0, 1 << 30);
        let path = dir.path().join(&settings.name);
        fs::write(&path, "[t] INFO  x whole\n[t] INFO  x ha").unwrap();
        let (tx, thread) = spawn(settings, |_| {});
        let record = Arc::new(crate::logs::Record {
            timestamp: std::time::SystemTime::UNIX_EPOCH,
            level: tracing::Level::INFO,
            target: "x",
            message: "next".into(),
            fields: Vec::new(),
            correlation_id: None,
        });
        tx.send(Msg::Entry(Entry {
            seq: 1,
            record,
            service: "x",
            repeated: 0,
        }))
        .unwrap();
        tx.send(Msg::Close).unwrap();
        thread.join().unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "[t] INFO  x whole\n[1970-01-01T00:00:00.000Z] INFO  x next\n"
        );
    }

    #[test]
    fn the_previous_session_says_how_it_ended() {
        let dir = tempfile::tempdir().unwrap();
        let ended = |name: &str, text: &str| {
            fs::write(dir.path().join(name), text).unwrap();
            previous_session(dir.path(), "cantina-session-current.log").unwrap()
        };
        let start =
            "[2026-01-01T00:00:00.000Z] INFO  logs log session 20260101-000000-abcd started\n";
        let clean = ended(
            "cantina-session-a.log",
            &format!(
                "{start}[2026-01-01T00:00:09.000Z] INFO  logs log session 20260101-000000-abcd ended cleanly\n"
            ),
        );
        assert_eq!(clean.end, PreviousEnd::Clean);
        assert_eq!(clean.warning(), None);
        let abrupt = ended("cantina-session-a.log", start);
        assert_eq!(abrupt.end, PreviousEnd::Abrupt);
        assert_eq!(abrupt.session_id.as_deref(), Some("20260101-000000-abcd"));
        assert_eq!(
            abrupt.last_time.as_deref(),
            Some("2026-01-01T00:00:00.000Z")
        );
        assert!(abrupt.warning().unwrap().contains("ended abruptly"));
        // A client's words in a logged command line are not the marker,
        // nor is another session's marker.
        let spoofed = ended(
            "cantina-session-a.log",
            &format!(
                "{start}[2026-01-01T00:00:09.000Z] INFO  commands running command \
                 line=say logs log session 20260101-000000-abcd ended cleanly\n"
            ),
        );
        assert_eq!(spoofed.end, PreviousEnd::Abrupt);
        let other = ended(
            "cantina-session-a.log",
            &format!(
                "{start}[2026-01-01T00:00:09.000Z] INFO  logs log session 20250101-000000-ffff ended cleanly\n"
            ),
        );
        assert_eq!(other.end, PreviousEnd::Abrupt);
        let json_clean = ended(
            "cantina-session-a.log",
            "{\"service\":\"logs\",\"message\":\"log session 20260101-000000-abcd started\",\"fields\":{}}\n\
                 {\"timestamp\":\"2026-01-01T00:00:09Z\",\"service\":\"logs\",\"message\":\"log session 20260101-000000-abcd ended cleanly\",\"fields\":{}}\n",
        );
        assert_eq!(json_clean.end, PreviousEnd::Clean);
        let torn = ended(
            "cantina-session-a.log",
            &format!("{start}[2026-01-01T00:00:0"),
        );
        assert_eq!(torn.end, PreviousEnd::Torn);
        assert_eq!(torn.last_time.as_deref(), Some("2026-01-01T00:00:00.000Z"));
        // The current session's own file is never the previous one.
        fs::remove_file(dir.path().join("cantina-session-a.log")).unwrap();
        fs::write(dir.path().join("cantina-session-current.log"), start).unwrap();
        assert_eq!(
            previous_session(dir.path(), "cantina-session-current.log"),
            None
        );
    }

    #[test]
    fn a_second_start_in_the_same_second_gets_a_file_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let stamp = "20260101-000000";
        assert_eq!(
            free_name(dir.path(), stamp, "log"),
            "cantina-session-20260101-000000.log"
        );
        fs::write(dir.path().join("cantina-session-20260101-000000.log"), "").unwrap();
        assert_eq!(
            free_name(dir.path(), stamp, "log"),
            "cantina-session-20260101-000000_1.log"
        );
    }
}
