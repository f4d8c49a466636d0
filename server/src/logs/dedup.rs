//! Dedup without loss: an entry identical to one seen within the window (same
//! service, level, message and fields: with structured logging, two lines
//! that differ only in their fields are different lines) is not emitted again; it is counted, and when
//! the window closes one entry carrying the count (`repeated`) is emitted.
//! A pure core: time comes in as an argument, so tests are data in, data out.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use tracing::Level;

use super::capture::Record;

/// What identifies a repeat.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    service: &'static str,
    level: Level,
    message: String,
    fields: Vec<(&'static str, String)>,
}

#[derive(Debug)]
struct Window {
    opened: Instant,
    /// Repeats folded so far, and the last of them (whose fields and time
    /// the summary carries).
    folded: u32,
    last: Option<Arc<Record>>,
}

/// The dedup state.
#[derive(Debug)]
pub struct Dedup {
    window: Duration,
    open: HashMap<Key, Window>,
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

impl Dedup {
    /// Folds repeats within `window`; a zero window folds nothing.
    pub fn new(window: Duration, limit: usize) -> Self {
        Self {
            window,
            open: HashMap::new(),
            limit: limit.max(1),
        }
    }

    /// Takes a record seen at `now`; returns what to emit for it (nothing
    /// when it is a repeat) after whatever summaries closed windows owe.
    pub fn take(
        &mut self,
        record: Arc<Record>,
        service: &'static str,
        now: Instant,
        out: &mut Vec<Emit>,
    ) {
        self.expire(now, out);
        if self.window.is_zero() {
            out.push(Emit {
                record,
                repeated: 0,
            });
            return;
        }
        let key = Key {
            service,
            level: record.level,
            message: record.message.clone(),
            fields: record.fields.clone(),
        };
        if let Some(open) = self.open.get_mut(&key) {
            open.folded += 1;
            open.last = Some(record);
            return;
        }
        if self.open.len() >= self.limit {
            self.close_oldest(out);
        }
        self.open.insert(
            key,
            Window {
                opened: now,
                folded: 0,
                last: None,
            },
        );
        out.push(Emit {
            record,
            repeated: 0,
        });
    }

    /// Closes the windows that are over at `now`, emitting their summaries.
    pub fn expire(&mut self, now: Instant, out: &mut Vec<Emit>) {
        if self.open.is_empty() {
            return;
        }
        let window = self.window;
        let mut closed: Vec<Window> = Vec::new();
        self.open.retain(|_, w| {
            let over = now.duration_since(w.opened) >= window;
            if over {
                closed.push(std::mem::replace(
                    w,
                    Window {
                        opened: now,
                        folded: 0,
                        last: None,
                    },
                ));
            }
            !over
        });
        closed.sort_by_key(|w| w.opened);
        out.extend(closed.into_iter().filter_map(summary));
    }

    /// Closes every window (at shutdown), emitting their summaries.
    pub fn flush(&mut self, out: &mut Vec<Emit>) {
        let mut closed: Vec<Window> = self.open.drain().map(|(_, w)| w).collect();
        closed.sort_by_key(|w| w.opened);
        out.extend(closed.into_iter().filter_map(summary));
    }

    fn close_oldest(&mut self, out: &mut Vec<Emit>) {
        let oldest = self
            .open
            .iter()
            .min_by_key(|(_, w)| w.opened)
            .map(|(k, _)| k.clone());
        if let Some(window) = oldest.and_then(|k| self.open.remove(&k)) {
            out.extend(summary(window));
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
