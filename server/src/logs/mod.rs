//! Logs: every line the server and its dependencies write is captured
//! ([`capture`]), named by service, deduplicated without loss ([`dedup`]),
//! numbered, kept in a bounded ring, streamed to any number of followers
//! (TailLogs) through a broadcast channel that never waits for a slow one,
//! and written in batches to the session file ([`file`]).
//!
//! The `logs` subsystem starts first and stops last, so that everything the
//! others say reaches the file. A crash loses at most one flush interval:
//! lines and dedup counts so far are written (whole lines only) and synced
//! at every flush. A clean stop ends the file with a marker
//! ([`file::clean_end_message`]); the next start looks for it in the most
//! recent previous file and, when it is missing, warns that the previous
//! session ended abruptly. Each session writes a file of its own. A failing disk does not stop it: it goes
//! DEGRADED, keeps the entries in memory, and recovers when writing works.

pub mod capture;
pub mod dedup;
pub mod file;
pub mod settings;
pub mod tail;

use std::{
    collections::VecDeque,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Instant, SystemTime},
};

use tokio::sync::{broadcast, oneshot};
use tracing::Level;

pub use capture::{CaptureLayer, Record};
pub use settings::{LogFileFormat, LogFormat, LogSettings};

use crate::lifecycle::{BoxFuture, ServiceStatus, StatusHandle, Subsystem};

/// The friendly service name of each target prefix: one table, most specific
/// first. Anything else is named by its crate.
pub const SERVICES: &[(&str, &str)] = &[
    ("cantina_server::bus", "bus"),
    ("cantina_server::commands", "commands"),
    ("cantina_server::grpc", "grpc"),
    ("cantina_server::modes", "modes"),
    ("cantina_server::lifecycle", "supervisor"),
    ("cantina_server::droid", "droid"),
    ("cantina_server::logs", "logs"),
    ("cantina_server::telemetry", "logs"),
    ("cantina_server::config", "config"),
    ("cantina_server::audio", "audio"),
    ("cantina_server::eyes", "eyes"),
    ("cantina_server::plans", "plans"),
    ("cantina_server", "server"),
    ("tonic", "transport"),
    ("h2", "transport"),
    ("hyper", "transport"),
    ("hyper_util", "transport"),
    ("tower", "transport"),
];

/// The service name of a target.
pub fn service_of(target: &'static str) -> &'static str {
    SERVICES
        .iter()
        .find(|(prefix, _)| {
            target
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
        })
        .map(|(_, name)| *name)
        .unwrap_or_else(|| target.split("::").next().unwrap_or(target))
}

/// One numbered log entry. Kept by value in the ring (cloning it clones one
/// `Arc`): a box of its own per entry would cost a heap block each.
#[derive(Clone, Debug)]
pub struct Entry {
    /// Strictly increasing for the server's life.
    pub seq: u64,
    /// What was logged.
    pub record: Arc<Record>,
    /// The friendly service name.
    pub service: &'static str,
    /// A dedup report: how many repeats of this entry were folded since
    /// the previous report of the same repeat (0: an entry of its own).
    /// Adding up `repeated` over the entries gives each repeat once.
    pub repeated: u32,
}

/// Messages to the processor task.
enum Control {
    /// Drain everything, write it, close the file, then answer.
    Stop(oneshot::Sender<()>),
}

struct Running {
    control: tokio::sync::mpsc::Sender<Control>,
    task: tokio::task::JoinHandle<()>,
}

struct Inner {
    settings: LogSettings,
    dir: PathBuf,
    file_name: String,
    session_id: String,
    ring: Mutex<VecDeque<Entry>>,
    followers: broadcast::Sender<Entry>,
    next_seq: AtomicU64,
    running: Mutex<Option<Running>>,
    /// Whether the previous session's file was looked at (once per process:
    /// a reset restarts the service on this session's own file).
    previous_checked: std::sync::atomic::AtomicBool,
}

/// The log service; cheap to clone.
#[derive(Clone)]
pub struct Logs {
    inner: Arc<Inner>,
}

impl Logs {
    /// A log service writing session `session_id` into `dir`.
    pub fn new(settings: LogSettings, dir: PathBuf, session_id: &str) -> Self {
        let (followers, _) = broadcast::channel(settings.follower_buffer);
        let stamp = session_id.get(..15).unwrap_or(session_id);
        let extension = match settings.file_format {
            LogFileFormat::Text => "log",
            LogFileFormat::Json => "jsonl",
        };
        Self {
            inner: Arc::new(Inner {
                ring: Mutex::new(VecDeque::with_capacity(settings.ring_size)),
                settings,
                file_name: file::free_name(&dir, stamp, extension),
                dir,
                session_id: session_id.to_string(),
                followers,
                next_seq: AtomicU64::new(1),
                running: Mutex::new(None),
                previous_checked: std::sync::atomic::AtomicBool::new(false),
            }),
        }
    }

    /// The session file's path.
    pub fn file_path(&self) -> PathBuf {
        self.inner.dir.join(&self.inner.file_name)
    }

    /// The session id entries carry.
    pub fn session_id(&self) -> &str {
        &self.inner.session_id
    }

    /// The entries in the ring now, oldest first.
    pub fn snapshot(&self) -> Vec<Entry> {
        self.inner
            .ring
            .lock()
            .expect("ring lock")
            .iter()
            .cloned()
            .collect()
    }

    /// Follows new entries; a follower that falls behind by more than the
    /// follower buffer is told how many it missed (`Lagged`).
    pub fn follow(&self) -> broadcast::Receiver<Entry> {
        self.inner.followers.subscribe()
    }

    /// Numbers `record` and hands it to the ring, the followers and the file.
    fn emit(
        &self,
        record: Arc<Record>,
        service: &'static str,
        repeated: u32,
        file: &std::sync::mpsc::Sender<file::Msg>,
    ) {
        let entry = Entry {
            seq: self.inner.next_seq.fetch_add(1, Relaxed),
            record,
            service,
            repeated,
        };
        {
            let mut ring = self.inner.ring.lock().expect("ring lock");
            if ring.len() == self.inner.settings.ring_size {
                ring.pop_front();
            }
            ring.push_back(entry.clone());
        }
        // No follower is fine: the ring and the file still have it.
        let _ = self.inner.followers.send(entry.clone());
        let _ = file.send(file::Msg::Entry(entry));
    }

    /// An entry of the log service's own, straight into the stream (never
    /// through tracing, which would capture it again).
    fn note(&self, level: Level, message: String, file: &std::sync::mpsc::Sender<file::Msg>) {
        let record = Arc::new(Record {
            timestamp: SystemTime::now(),
            level,
            target: "cantina_server::logs",
            message,
            fields: Vec::new(),
            correlation_id: None,
        });
        self.emit(record, "logs", 0, file);
    }

    async fn process(
        self,
        mut records: tokio::sync::mpsc::Receiver<Arc<Record>>,
        mut control: tokio::sync::mpsc::Receiver<Control>,
        file: std::sync::mpsc::Sender<file::Msg>,
        writer: std::thread::JoinHandle<()>,
        previous: Option<String>,
    ) {
        let settings = &self.inner.settings;
        let mut dedup = dedup::Dedup::new(settings.dedup_window, 10_000);
        let mut out = Vec::new();
        // Every flush interval: close the windows that are over, report the
        // counts so far, then have the file written and synced.
        let mut tick = tokio::time::interval(settings.flush_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut lost_seen = capture::dropped();
        self.note(
            Level::INFO,
            format!("log session {} started", self.inner.session_id),
            &file,
        );
        if let Some(warning) = previous {
            self.note(Level::WARN, warning, &file);
        }
        let stop = loop {
            let mut flush = false;
            tokio::select! {
                Some(record) = records.recv() => {
                    let service = service_of(record.target);
                    dedup.take(record, service, Instant::now(), &mut out);
                }
                _ = tick.tick() => {
                    dedup.expire(Instant::now(), &mut out);
                    dedup.report(&mut out);
                    flush = true;
                    let lost = capture::dropped();
                    if lost > lost_seen {
                        self.note(
                            Level::WARN,
                            format!("{} log records were lost: the capture queue was full", lost - lost_seen),
                            &file,
                        );
                        lost_seen = lost;
                    }
                }
                message = control.recv() => match message {
                    Some(Control::Stop(done)) => break Some(done),
                    None => break None,
                },
            }
            for emit in out.drain(..) {
                let service = service_of(emit.record.target);
                self.emit(emit.record, service, emit.repeated, &file);
            }
            if flush {
                let _ = file.send(file::Msg::Flush);
            }
        };
        // Everything captured so far reaches the ring and the file.
        records.close();
        while let Ok(record) = records.try_recv() {
            let service = service_of(record.target);
            dedup.take(record, service, Instant::now(), &mut out);
        }
        dedup.flush(&mut out);
        for emit in out.drain(..) {
            let service = service_of(emit.record.target);
            self.emit(emit.record, service, emit.repeated, &file);
        }
        if stop.is_some() {
            // The marker the next start looks for: this session ended well.
            self.note(
                Level::INFO,
                file::clean_end_message(&self.inner.session_id),
                &file,
            );
        }
        let _ = file.send(file::Msg::Close);
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        if let Some(done) = stop {
            let _ = done.send(());
        }
    }
}

impl Subsystem for Logs {
    fn name(&self) -> &'static str {
        "logs"
    }

    fn critical(&self) -> bool {
        // The droid runs on without logs rather than not at all.
        false
    }

    fn start(&self, status: StatusHandle) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let settings = &self.inner.settings;
            // Room for bursts (a second of a busy droid): a record waiting
            // here costs a pointer; one dropped is a line lost.
            let records = capture::attach(65_536);
            let (control_tx, control_rx) = tokio::sync::mpsc::channel(1);
            let (health_tx, mut health_rx) = tokio::sync::mpsc::unbounded_channel();
            let (file_tx, writer) = file::spawn(
                file::FileSettings {
                    dir: self.inner.dir.clone(),
                    name: self.inner.file_name.clone(),
                    format: settings.file_format,
                    flush_interval: settings.flush_interval,
                    retention_files: settings.retention_files,
                    retention_bytes: settings.retention_bytes,
                    max_pending: settings.ring_size,
                },
                move |health| {
                    let _ = health_tx.send(health);
                },
            );
            // The writer's health becomes the subsystem's status.
            tokio::spawn(async move {
                while let Some(health) = health_rx.recv().await {
                    match health {
                        file::Health::Writing(path) => {
                            if status.current() == ServiceStatus::Degraded {
                                status
                                    .set(
                                        ServiceStatus::Running,
                                        format!("writing {}", path.display()),
                                    )
                                    .await;
                            }
                        }
                        file::Health::Failing(reason) => {
                            status.set(ServiceStatus::Degraded, reason).await;
                        }
                    }
                }
            });
            // How the session before this one ended, once per process (a
            // reset restarts the service on this session's own file).
            let previous = if self.inner.previous_checked.swap(true, Relaxed) {
                None
            } else {
                let dir = self.inner.dir.clone();
                let current = self.inner.file_name.clone();
                tokio::task::spawn_blocking(move || file::previous_session(&dir, &current))
                    .await
                    .ok()
                    .flatten()
                    .and_then(|previous| previous.warning())
            };
            let task = tokio::spawn(
                self.clone()
                    .process(records, control_rx, file_tx, writer, previous),
            );
            *self.inner.running.lock().expect("running lock") = Some(Running {
                control: control_tx,
                task,
            });
            Ok(())
        })
    }

    fn stop(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let running = self.inner.running.lock().expect("running lock").take();
            if let Some(running) = running {
                let (done, finished) = oneshot::channel();
                if running.control.send(Control::Stop(done)).await.is_ok() {
                    let _ = finished.await;
                }
                let _ = running.task.await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_are_named_by_the_most_specific_prefix() {
        assert_eq!(service_of("cantina_server::bus::monitor"), "bus");
        assert_eq!(service_of("cantina_server::commands"), "commands");
        assert_eq!(service_of("cantina_server"), "server");
        assert_eq!(service_of("cantina_server_extra"), "cantina_server_extra");
        assert_eq!(service_of("h2::codec"), "transport");
        assert_eq!(service_of("rustls::client"), "rustls");
    }
}
