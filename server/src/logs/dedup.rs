//! Dedup without loss: an entry identical to one seen within the window (same
//! service, level, message, fields and correlation id: with structured
//! logging, two lines that differ only in their fields are different lines,
//! and two lines of different commands are different events) is not emitted
//! again; it is counted. The count is reported as it grows, like syslog's
//! "last message repeated N times": [`Dedup::report`] (called at every flush
//! of the session file) emits one entry per window with repeats not yet
//! reported, and when the window closes one more carries what is left.
//!
//! `repeated` on an emitted entry counts the repeats folded *since the
//! previous report* of the same window, never the running total: adding up
//! the `repeated` of every entry gives the number of repeats exactly once,
//! whether the window closed or the server died before it could.
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
    /// Repeats folded since the window opened.
    folded: u32,
    /// Of those, how many a report already emitted.
    reported: u32,
    last: Option<Arc<Record>>,
}

impl Window {
    fn same(&self, service: &'static str, record: &Record) -> bool {
        self.service == service
            && self.first.level == record.level
            && self.first.message == record.message
            && self.first.fields == record.fields
            && self.first.correlation_id == record.correlation_id
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
    /// Windows that folded a repeat since the last report, in the order of
    /// their first unreported repeat (stale places are skipped).
    unreported: Vec<(Instant, u64)>,
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
    record.correlation_id.hash(&mut hasher);
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
            unreported: Vec::new(),
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
                if open.folded == open.reported {
                    self.unreported.push((open.opened, hash));
                }
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
                reported: 0,
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

    /// Reports the repeats folded since the last report, one entry per
    /// window (carrying its latest repeat), without closing any: called at
    /// every flush of the session file, so that a crash loses at most one
    /// flush interval of counts. Touches only the windows that folded since.
    pub fn report(&mut self, out: &mut Vec<Emit>) {
        for (opened, hash) in self.unreported.drain(..) {
            let Some(window) = self.open.get_mut(&hash) else {
                continue;
            };
            if window.opened != opened || window.folded == window.reported {
                continue;
            }
            out.push(Emit {
                record: window
                    .last
                    .clone()
                    .expect("a folded window keeps its last record"),
                repeated: window.folded - window.reported,
            });
            window.reported = window.folded;
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
        self.unreported.clear();
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

/// The entry that settles a closing window: the repeats no report emitted.
fn summary(window: Window) -> Option<Emit> {
    (window.folded > window.reported).then(|| Emit {
        record: window.last.expect("a folded window keeps its last record"),
        repeated: window.folded - window.reported,
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

    fn in_command(message: &str, correlation_id: &str) -> Arc<Record> {
        Arc::new(Record {
            correlation_id: Some(Arc::from(correlation_id)),
            ..(*record(Level::INFO, message)).clone()
        })
    }

    #[test]
    fn lines_of_different_commands_are_never_folded() {
        // 40 `status` commands: the same line 40 times, each with its own id.
        let t0 = Instant::now();
        let mut dedup = Dedup::new(Duration::from_secs(30), 100);
        let mut out = Vec::new();
        for i in 0..40 {
            let line = in_command("running command", &format!("c-{i}"));
            dedup.take(line, "commands", t0, &mut out);
        }
        // The same command's line twice is still a repeat.
        dedup.take(
            in_command("running command", "c-7"),
            "commands",
            t0,
            &mut out,
        );
        let ids: Vec<_> = out
            .iter()
            .map(|e| {
                (
                    e.record.correlation_id.as_deref().unwrap().to_string(),
                    e.repeated,
                )
            })
            .collect();
        assert_eq!(
            ids,
            (0..40).map(|i| (format!("c-{i}"), 0)).collect::<Vec<_>>()
        );
        // A line without an id differs from every line with one.
        dedup.take(
            record(Level::INFO, "running command"),
            "commands",
            t0,
            &mut out,
        );
        assert_eq!(out.len(), 41);
        out.clear();
        dedup.flush(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            (out[0].record.correlation_id.as_deref(), out[0].repeated),
            (Some("c-7"), 1)
        );
    }

    /// Takes `count` repeats of "tick" at `at`, then reports; returns the
    /// counts reported.
    fn fold_then_report(dedup: &mut Dedup, at: Instant, count: usize) -> Vec<u32> {
        let mut out = Vec::new();
        for _ in 0..count {
            dedup.take(record(Level::INFO, "tick"), "svc", at, &mut out);
        }
        out.clear();
        dedup.report(&mut out);
        out.into_iter().map(|e| e.repeated).collect()
    }

    #[test]
    fn reports_carry_the_repeats_since_the_last_one_and_the_close_the_rest() {
        let t0 = Instant::now();
        let second = |s| t0 + Duration::from_secs(s);
        let mut dedup = Dedup::new(Duration::from_secs(30), 100);
        // The first "tick" is emitted as itself; 4 repeats are reported at
        // the next flush.
        assert_eq!(fold_then_report(&mut dedup, t0, 5), [4]);
        // Nothing folded since: nothing to report.
        assert_eq!(fold_then_report(&mut dedup, second(1), 0), [] as [u32; 0]);
        assert_eq!(fold_then_report(&mut dedup, second(2), 3), [3]);
        // Two more, then the window closes: the close carries only those.
        assert_eq!(fold_then_report(&mut dedup, second(3), 0), [] as [u32; 0]);
        let mut out = Vec::new();
        dedup.take(record(Level::INFO, "tick"), "svc", second(4), &mut out);
        dedup.take(record(Level::INFO, "tick"), "svc", second(5), &mut out);
        dedup.expire(second(31), &mut out);
        let counts: Vec<u32> = out.iter().map(|e| e.repeated).collect();
        assert_eq!(counts, [2]);
        // 1 + 4 + 3 + 2 = 10 ticks, each counted once.
    }

    #[test]
    fn a_fully_reported_window_closes_without_a_summary() {
        let t0 = Instant::now();
        let mut dedup = Dedup::new(Duration::from_secs(30), 100);
        assert_eq!(fold_then_report(&mut dedup, t0, 3), [2]);
        let mut out = Vec::new();
        dedup.expire(t0 + Duration::from_secs(31), &mut out);
        dedup.flush(&mut out);
        assert!(out.is_empty(), "{out:?}");
        // A reopened window starts its own count.
        assert_eq!(
            fold_then_report(&mut dedup, t0 + Duration::from_secs(32), 2),
            [1]
        );
    }

    #[test]
    fn reports_come_in_the_order_the_repeats_began() {
        let t0 = Instant::now();
        let mut dedup = Dedup::new(Duration::from_secs(30), 100);
        let mut out = Vec::new();
        for message in ["a", "b", "b", "a", "c"] {
            dedup.take(record(Level::INFO, message), "svc", t0, &mut out);
        }
        out.clear();
        dedup.report(&mut out);
        let reported: Vec<_> = out
            .iter()
            .map(|e| (e.record.message.as_str(), e.repeated))
            .collect();
        assert_eq!(reported, [("b", 1), ("a", 1)]);
    }

    #[test]
    fn a_zero_window_folds_nothing() {
        let t0 = Instant::now();
        let mut dedup = Dedup::new(Duration::ZERO, 100);
        assert_eq!(run(&mut dedup, t0, Level::INFO, "x").len(), 1);
        assert_eq!(run(&mut dedup, t0, Level::INFO, "x").len(), 1);
    }
}
