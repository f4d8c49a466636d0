//! Tailing the logs (what `TailLogs` serves), as a pure core: which entries a
//! request wants ([`Query`]), which of the ring's entries make its backlog
//! and whether a resume cursor fell out of the ring ([`backlog`]), and which
//! live entries a follower passes on ([`Follower`]). [`Logs::tail`] puts them
//! together over the ring and the broadcast channel; the gRPC edge only
//! converts.

use std::{pin::Pin, sync::Arc, time::SystemTime};

use futures_util::{Stream, StreamExt};
use regex::{Regex, RegexBuilder};
use tokio::sync::broadcast::error::RecvError;
use tracing::Level;

use super::{Entry, Logs};

/// Which entries a request wants.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// The least severe level wanted (`None`: all).
    pub min_level: Option<Level>,
    /// Only these services (empty: all).
    pub services: Vec<String>,
    /// Only messages containing this text (empty: all).
    pub contains: String,
    /// Only messages matching this regular expression.
    pub pattern: Option<Regex>,
    /// Only entries at or after this time.
    pub since: Option<SystemTime>,
    /// Only entries after this sequence number (a resume cursor; 0: none).
    pub after_seq: u64,
}

/// The longest `pattern` taken, in bytes: a log filter is a few words, and
/// the regex crate's compile time grows with the pattern.
pub const MAX_PATTERN_BYTES: usize = 1024;

/// The most memory a compiled `pattern` may take (its program and its lazy
/// DFA's cache each), in bytes: `a{1000}{1000}` is short but would compile to
/// hundreds of megabytes; real filters need a few kilobytes.
pub const MAX_PATTERN_MEMORY: usize = 1 << 20;

/// The most `services` a request may name: there are a dozen.
pub const MAX_SERVICES: usize = 64;

/// The longest service name (or `contains` text) a request may give, in
/// bytes: service names are single words.
pub const MAX_FILTER_BYTES: usize = 1024;

impl Query {
    /// Compiles `pattern` (empty: none), within [`MAX_PATTERN_BYTES`] and
    /// [`MAX_PATTERN_MEMORY`]; the error says what is wrong with it.
    pub fn pattern(pattern: &str) -> Result<Option<Regex>, String> {
        match pattern {
            "" => Ok(None),
            p if p.len() > MAX_PATTERN_BYTES => Err(format!(
                "pattern is {} bytes; a pattern is at most {MAX_PATTERN_BYTES} bytes: use a shorter regular expression",
                p.len()
            )),
            p => RegexBuilder::new(p)
                .size_limit(MAX_PATTERN_MEMORY)
                .dfa_size_limit(MAX_PATTERN_MEMORY)
                .build()
                .map(Some)
                .map_err(|e| match e {
                    regex::Error::CompiledTooBig(_) => format!(
                        "pattern compiles to more than {MAX_PATTERN_MEMORY} bytes (the limit of a pattern): \
                         use a simpler regular expression (fewer or smaller repetitions)"
                    ),
                    e => format!("pattern is not a regular expression: {e}"),
                }),
        }
    }

    /// Checks the `services` and `contains` filters against [`MAX_SERVICES`]
    /// and [`MAX_FILTER_BYTES`].
    ///
    /// # Errors
    ///
    /// What is too big, and the limit.
    pub fn check_filters(services: &[String], contains: &str) -> Result<(), String> {
        if services.len() > MAX_SERVICES {
            return Err(format!(
                "{} services named; a request names at most {MAX_SERVICES}: leave services empty for all",
                services.len()
            ));
        }
        if let Some(long) = services.iter().find(|s| s.len() > MAX_FILTER_BYTES) {
            return Err(format!(
                "a service name of {} bytes; a service name is at most {MAX_FILTER_BYTES} bytes",
                long.len()
            ));
        }
        if contains.len() > MAX_FILTER_BYTES {
            return Err(format!(
                "contains is {} bytes; it is at most {MAX_FILTER_BYTES} bytes: use a shorter text",
                contains.len()
            ));
        }
        Ok(())
    }

    /// Whether `entry` is wanted.
    pub fn matches(&self, entry: &Entry) -> bool {
        let record = &entry.record;
        // tracing orders levels by verbosity: TRACE is the "greatest".
        self.min_level.is_none_or(|min| record.level <= min)
            && entry.seq > self.after_seq
            && (self.services.is_empty() || self.services.iter().any(|s| s == entry.service))
            && (self.contains.is_empty() || record.message.contains(&self.contains))
            && self
                .pattern
                .as_ref()
                .is_none_or(|p| p.is_match(&record.message))
            && self.since.is_none_or(|since| record.timestamp >= since)
    }

    /// Whether the request asks for history: a count, a time or a cursor.
    fn wants_history(&self, tail: usize) -> bool {
        tail > 0 || self.since.is_some() || self.after_seq > 0
    }
}

/// A tail request: what to match, how much backlog, whether to follow.
#[derive(Clone, Debug, Default)]
pub struct TailRequest {
    /// Which entries.
    pub query: Query,
    /// Replay at most this many recent matching entries (0: no limit, or,
    /// with `follow` and no `since`/cursor, none).
    pub tail: usize,
    /// Keep streaming new entries.
    pub follow: bool,
}

/// What a tail yields.
#[derive(Clone, Debug)]
pub enum Item {
    /// A log entry.
    Entry(Entry),
    /// `skipped` entries this reader did not get: it fell behind the live
    /// stream, or its cursor is older than the ring.
    Gap {
        /// How many.
        skipped: u64,
    },
}

/// The backlog `request` gets from `ring` (the ring's entries, oldest
/// first): the matching entries, the last `tail` of them; none for `follow`
/// alone; led by a gap when the resume cursor is older than the ring.
pub fn backlog(ring: &[Entry], request: &TailRequest) -> Vec<Item> {
    let query = &request.query;
    let mut wanted: Vec<&Entry> = ring.iter().filter(|e| query.matches(e)).collect();
    if request.tail > 0 {
        let excess = wanted.len().saturating_sub(request.tail);
        wanted.drain(..excess);
    } else if request.follow && !query.wants_history(request.tail) {
        // `-f` alone: only what happens from now on.
        wanted.clear();
    }
    // A resume cursor older than the ring: say what fell out of it, so a
    // client coming back from a long outage sees the gap.
    // Checked: a cursor may be any u64 (u64::MAX overflowed here; found by
    // fuzzing, server/fuzz/regressions/tail_query/after-seq-max.pb).
    let gap = ring
        .first()
        .filter(|_| query.after_seq > 0)
        .and_then(|oldest| oldest.seq.checked_sub(query.after_seq)?.checked_sub(1))
        .filter(|skipped| *skipped > 0)
        .map(|skipped| Item::Gap { skipped });
    gap.into_iter()
        .chain(wanted.into_iter().cloned().map(Item::Entry))
        .collect()
}

/// Picks a follower's live entries: those after the backlog's last entry
/// (`boundary`) that match.
#[derive(Clone, Debug)]
pub struct Follower {
    query: Arc<Query>,
    boundary: u64,
}

impl Follower {
    /// A follower of `query` whose backlog ended at sequence `boundary`.
    pub fn new(query: Arc<Query>, boundary: u64) -> Self {
        Self { query, boundary }
    }

    /// Whether the live `entry` is passed on.
    pub fn wants(&self, entry: &Entry) -> bool {
        entry.seq > self.boundary && self.query.matches(entry)
    }
}

/// A stream of tail items.
pub type TailStream = Pin<Box<dyn Stream<Item = Item> + Send>>;

impl Logs {
    /// Serves `request`: its backlog from the ring, then, when it follows,
    /// new entries from the broadcast channel (a gap for those it fell
    /// behind on) until the logs close.
    pub fn tail(&self, request: TailRequest) -> TailStream {
        // Subscribe before taking the backlog, so nothing falls between.
        let live = request.follow.then(|| self.follow());
        let ring = self.snapshot();
        let boundary = ring.last().map_or(0, |e| e.seq);
        let backlog = futures_util::stream::iter(backlog(&ring, &request));
        let Some(live) = live else {
            return Box::pin(backlog);
        };
        let follower = Follower::new(Arc::new(request.query), boundary);
        let follow = futures_util::stream::unfold((live, follower), |(mut live, follower)| async {
            loop {
                match live.recv().await {
                    Ok(entry) if !follower.wants(&entry) => continue,
                    Ok(entry) => return Some((Item::Entry(entry), (live, follower))),
                    Err(RecvError::Lagged(skipped)) => {
                        return Some((Item::Gap { skipped }, (live, follower)));
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        });
        Box::pin(backlog.chain(follow))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::logs::Record;

    fn entry(seq: u64, level: Level, service: &'static str, message: &str) -> Entry {
        Entry {
            seq,
            record: Arc::new(Record {
                timestamp: SystemTime::UNIX_EPOCH + Duration::from_secs(seq),
                level,
                target: "cantina_server::test",
                message: message.into(),
                fields: Vec::new(),
                correlation_id: None,
            }),
            service,
            repeated: 0,
        }
    }

    /// Ten entries, seq 11–20: odd ones WARN from the bus, even ones INFO
    /// from the commands, each message naming its number.
    fn ring() -> Vec<Entry> {
        (11..=20)
            .map(|seq| {
                if seq % 2 == 1 {
                    entry(seq, Level::WARN, "bus", &format!("bus warning {seq}"))
                } else {
                    entry(seq, Level::INFO, "commands", &format!("ran command {seq}"))
                }
            })
            .collect()
    }

    fn seqs(items: &[Item]) -> Vec<String> {
        items
            .iter()
            .map(|item| match item {
                Item::Entry(e) => e.seq.to_string(),
                Item::Gap { skipped } => format!("gap {skipped}"),
            })
            .collect()
    }

    fn request(query: Query, tail: usize, follow: bool) -> TailRequest {
        TailRequest {
            query,
            tail,
            follow,
        }
    }

    #[test]
    fn a_plain_request_gets_the_whole_ring() {
        let items = backlog(&ring(), &request(Query::default(), 0, false));
        assert_eq!(
            seqs(&items),
            (11..=20).map(|s| s.to_string()).collect::<Vec<_>>()
        );
    }

    #[test]
    fn tail_keeps_the_last_matching_entries() {
        let query = Query {
            min_level: Some(Level::WARN),
            ..Query::default()
        };
        let items = backlog(&ring(), &request(query, 3, false));
        assert_eq!(seqs(&items), ["15", "17", "19"]);
    }

    #[test]
    fn follow_alone_has_no_backlog_but_follow_with_history_does() {
        assert!(backlog(&ring(), &request(Query::default(), 0, true)).is_empty());
        let items = backlog(&ring(), &request(Query::default(), 2, true));
        assert_eq!(seqs(&items), ["19", "20"]);
        let since = Query {
            since: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(19)),
            ..Query::default()
        };
        assert_eq!(
            seqs(&backlog(&ring(), &request(since, 0, true))),
            ["19", "20"]
        );
    }

    #[test]
    fn filters_combine() {
        let query = Query {
            services: vec!["commands".into()],
            contains: "command".into(),
            pattern: Query::pattern("1[26]$").unwrap(),
            ..Query::default()
        };
        assert_eq!(
            seqs(&backlog(&ring(), &request(query, 0, false))),
            ["12", "16"]
        );
        assert!(
            Query::pattern("(")
                .unwrap_err()
                .contains("not a regular expression")
        );
    }

    #[test]
    fn a_cursor_inside_the_ring_resumes_after_it_without_a_gap() {
        let query = Query {
            after_seq: 17,
            ..Query::default()
        };
        assert_eq!(
            seqs(&backlog(&ring(), &request(query, 0, true))),
            ["18", "19", "20"]
        );
        let just_before = Query {
            after_seq: 10,
            ..Query::default()
        };
        assert_eq!(backlog(&ring(), &request(just_before, 0, false)).len(), 10);
    }

    #[test]
    fn a_cursor_older_than_the_ring_gets_a_gap_first() {
        let query = Query {
            after_seq: 4,
            ..Query::default()
        };
        let items = backlog(&ring(), &request(query, 2, false));
        assert_eq!(seqs(&items), ["gap 6", "19", "20"]);
    }

    #[test]
    fn followers_pass_on_only_new_matching_entries() {
        let query = Arc::new(Query {
            services: vec!["bus".into()],
            ..Query::default()
        });
        let follower = Follower::new(query, 20);
        assert!(!follower.wants(&entry(19, Level::WARN, "bus", "old")));
        assert!(!follower.wants(&entry(22, Level::INFO, "commands", "other")));
        assert!(follower.wants(&entry(21, Level::WARN, "bus", "new")));
    }

    #[test]
    fn a_pattern_is_bounded_in_length_and_compiled_size() {
        assert!(Query::pattern(r"servo '\w+' moved").unwrap().is_some());
        assert!(Query::pattern("").unwrap().is_none());
        let long = "a".repeat(MAX_PATTERN_BYTES + 1);
        let e = Query::pattern(&long).unwrap_err();
        assert!(e.contains("at most 1024 bytes"), "{e}");
        // Short, but a million states once compiled.
        let e = Query::pattern("a{1000}{1000}").unwrap_err();
        assert!(e.contains("compiles to more than 1048576 bytes"), "{e}");
        let e = Query::pattern("(").unwrap_err();
        assert!(e.contains("not a regular expression"), "{e}");
    }

    #[test]
    fn the_filters_are_bounded() {
        assert!(Query::check_filters(&["eyes".into()], "moved").is_ok());
        let many = vec!["eyes".to_string(); MAX_SERVICES + 1];
        let e = Query::check_filters(&many, "").unwrap_err();
        assert!(e.contains("at most 64"), "{e}");
        let e = Query::check_filters(&["x".repeat(MAX_FILTER_BYTES + 1)], "").unwrap_err();
        assert!(e.contains("at most 1024 bytes"), "{e}");
        let e = Query::check_filters(&[], &"x".repeat(MAX_FILTER_BYTES + 1)).unwrap_err();
        assert!(e.contains("contains is 1025 bytes"), "{e}");
    }

    #[test]
    fn a_cursor_beyond_every_entry_is_no_gap() {
        let ring = vec![entry(5, Level::INFO, "eyes", "a")];
        let request = TailRequest {
            query: Query {
                after_seq: u64::MAX,
                ..Query::default()
            },
            ..TailRequest::default()
        };
        assert!(backlog(&ring, &request).is_empty());
    }
}
