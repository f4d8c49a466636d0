//! Dedup without loss: an entry identical to one seen within the window (same
//! service, level, message and fields: with structured logging, two lines
//! that differ only in their fields are different lines) is not emitted again; it is counted, and when
//! the window closes one entry carrying the count (`repeated`) is emitted.
//! A pure core: time comes in as an argument, so tests are data in, data out.

use std::{
    collections::{HashMap, VecDeque, hash_map::DefaultHasher},
    hash::{Hash, Hasher},
    sync::Arc,
    time::{Duration, Instant},
};

use super::capture::Record;

/// An open window: the record that opened it (what later ones are compared
/// with), when, and the repeats folded so far.
#[derive(Debug)]
struct Window {
    first: Arc<Record>,
    service: &'static str,
    opened: Instant,
    folded: u32,
    last: Option<Arc<Record>>,
}

impl Window {
    fn same(&self, service: &'static str, record: &Record) -> bool {
        self.service == service
            && self.first.level == record.level
            && self.first.message == record.message
            && self.first.fields == record.fields
    }
}

/// The dedup state. Per record it touches only the record's own window (a
/// hash look-up, no copies); windows close in opening order, from a queue,
/// so closing never scans.
#[derive(Debug)]
pub struct Dedup {
    window: Duration,
    /// Open windows by the hash of what identifies a repeat.
    open: HashMap<u64, Window>,
    /// Hashes in opening order (a window reopened later appears again; stale
    /// places are skipped when reached).
    order: VecDeque<(Instant, u64)>,
    /// Open windows at most: past this the oldest are closed early, so a
    /// flood of distinct messages cannot grow the map without bound.
    limit: usize,
}

/// What to emit.
#[derive(Debug)]
pub struct Emit {
    /// The record to emit.
    pub record: Arc<Record>,
    /// How many identical records it stands for beyond itself (0: none).
    pub repeated: u32,
}

fn key(service: &'static str, record: &Record) -> u64 {
    let mut hasher = DefaultHasher::new();
    service.hash(&mut hasher);
    record.level.hash(&mut hasher);
    record.message.hash(&mut hasher);
    record.fields.hash(&mut hasher);
    hasher.finish()
}

impl Dedup {
    /// Folds repeats within `window`; a zero window folds nothing.
    pub fn new(window: Duration, limit: usize) -> Self {
        Self {
            window,
            open: HashMap::new(),
            order: VecDeque::new(),
            limit: limit.max(1),
        }
    }

    /// Takes a record seen at `now`; pushes what to emit for it (nothing
    /// when it is a repeat, a summary first when its own window had closed).
    pub fn take(
        &mut self,
        record: Arc<Record>,
        service: &'static str,
        now: Instant,
        out: &mut Vec<Emit>,
    ) {
        if self.window.is_zero() {
            out.push(Emit {
                record,
                repeated: 0,
            });
            return;
        }
        let hash = key(service, &record);
        if let Some(open) = self.open.get_mut(&hash) {
            if !open.same(service, &record) {
                // A hash collision: too rare to fold for; just emit.
                out.push(Emit {
                    record,
                    repeated: 0,
                });
                return;
            }
            if now.duration_since(open.opened) < self.window {
                open.folded += 1;
                open.last = Some(record);
                return;
            }
            // Its window is over: settle it, then this one opens a new one.
            let closed = self.open.remove(&hash).expect("present");
            out.extend(summary(closed));
        }
        while self.open.len() >= self.limit {
            self.close_oldest(out);
        }
        self.open.insert(
            hash,
            Window {
                first: record.clone(),
                service,
                opened: now,
                folded: 0,
                last: None,
            },
        );
        self.order.push_back((now, hash));
        out.push(Emit {
            record,
            repeated: 0,
        });
    }

    /// Closes the windows that are over at `now`, emitting their summaries
    /// (called on a tick; it only looks at the windows that are due).
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Emit>) {
        while let Some(&(opened, hash)) = self.order.front() {
            if now.duration_since(opened) < self.window {
                break;
            }
            self.order.pop_front();
            if self.open.get(&hash).is_some_and(|w| w.opened == opened) {
                let closed = self.open.remove(&hash).expect("present");
                out.extend(summary(closed));
            }
        }
    }

    /// Closes every window (at shutdown), emitting their summaries.
    pub fn flush(&mut self, out: &mut Vec<Emit>) {
        while let Some((opened, hash)) = self.order.pop_front() {
            if self.open.get(&hash).is_some_and(|w| w.opened == opened) {
                let closed = self.open.remove(&hash).expect("present");
                out.extend(summary(closed));
            }
        }
        self.open.clear();
    }

    fn close_oldest(&mut self, out: &mut Vec<Emit>) {
        while let Some((opened, hash)) = self.order.pop_front() {
            if self.open.get(&hash).is_some_and(|w| w.opened == opened) {
                let closed = self.open.remove(&hash).expect("present");
                out.extend(summary(closed));
                return;
            }
        }
    }
}

fn summary(window: Window) -> Option<Emit> {
    (window.folded > 0).then(|| Emit {
        record: window.last.expect("a folded window keeps its last record"),
        repeated: window.folded,
    })
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use tracing::Level;

    use super::*;

    fn record(level: Level, message: &str) -> Arc<Record> {
        Arc::new(Record {
            timestamp: SystemTime::now(),
            level,
            target: "test",
            message: message.into(),
            fields: Vec::new(),
            correlation_id: None,
        })
    }

    fn run(dedup: &mut Dedup, at: Instant, level: Level, message: &str) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        dedup.take(record(level, message), "svc", at, &mut out);
        out.into_iter()
            .map(|e| (e.record.message.clone(), e.repeated))
            .collect()
    }

    #[test]
    fn repeats_within_the_window_are_folded_into_a_count_not_lost() {
        let t0 = Instant::now();
        let mut dedup = Dedup::new(Duration::from_secs(30), 100);
        assert_eq!(
            run(&mut dedup, t0, Level::WARN, "port busy"),
            [("port busy".into(), 0)]
        );
        for i in 1..=4 {
            assert!(
                run(
                    &mut dedup,
                    t0 + Duration::from_secs(i),
                    Level::WARN,
                    "port busy"
                )
                .is_empty()
            );
        }
        // Another level is another entry.
        assert_eq!(run(&mut dedup, t0, Level::ERROR, "port busy").len(), 1);
        // The window closes: one summary with the count, then the next one is new.
        let after = run(
            &mut dedup,
            t0 + Duration::from_secs(31),
            Level::WARN,
            "port busy",
        );
        assert_eq!(
            after,
            [("port busy".to_string(), 4), ("port busy".to_string(), 0)]
        );
    }

    #[test]
    fn lines_that_differ_only_in_their_fields_are_not_repeats() {
        let t0 = Instant::now();
        let mut dedup = Dedup::new(Duration::from_secs(30), 100);
        let with = |value: &str| {
            Arc::new(Record {
                fields: vec![("command", value.to_string())],
                ..(*record(Level::INFO, "running command")).clone()
            })
        };
        let mut out = Vec::new();
        dedup.take(with("engage"), "commands", t0, &mut out);
        dedup.take(with("quit"), "commands", t0, &mut out);
        dedup.take(with("quit"), "commands", t0, &mut out);
        assert_eq!(
            out.len(),
            2,
            "engage and quit are different lines; the second quit repeats"
        );
    }

    #[test]
    fn a_window_without_repeats_emits_no_summary() {
        let t0 = Instant::now();
        let mut dedup = Dedup::new(Duration::from_secs(30), 100);
        run(&mut dedup, t0, Level::INFO, "once");
        let mut out = Vec::new();
        dedup.expire(t0 + Duration::from_secs(60), &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn flush_emits_every_pending_count() {
        let t0 = Instant::now();
        let mut dedup = Dedup::new(Duration::from_secs(30), 100);
        for _ in 0..3 {
            run(&mut dedup, t0, Level::INFO, "tick");
        }
        let mut out = Vec::new();
        dedup.flush(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].repeated, 2);
    }

    #[test]
    fn the_number_of_open_windows_is_bounded() {
        let t0 = Instant::now();
        let mut dedup = Dedup::new(Duration::from_secs(30), 2);
        run(&mut dedup, t0, Level::INFO, "a");
        run(&mut dedup, t0, Level::INFO, "a");
        run(&mut dedup, t0 + Duration::from_millis(1), Level::INFO, "b");
        // A third distinct message closes the oldest window early, count kept.
        let out = run(&mut dedup, t0 + Duration::from_millis(2), Level::INFO, "c");
        assert_eq!(out, [("a".to_string(), 1), ("c".to_string(), 0)]);
    }

    #[test]
    fn a_zero_window_folds_nothing() {
        let t0 = Instant::now();
        let mut dedup = Dedup::new(Duration::ZERO, 100);
        assert_eq!(run(&mut dedup, t0, Level::INFO, "x").len(), 1);
        assert_eq!(run(&mut dedup, t0, Level::INFO, "x").len(), 1);
    }
}
