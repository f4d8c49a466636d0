//! Picking a log stream up where it broke: the cursor, the request that
//! resumes after it, and the backoff between attempts.
//!
//! Everything here is pure so that the rules can be tested without a server.
//! The cursor is the `seq` and session of the last entry printed. A resumed
//! request asks for entries after that `seq` with no `tail` or `since` (a
//! `tail` of 0 means "no limit"), so that nothing is replayed twice and
//! nothing logged during the outage is skipped; entries at or below the
//! cursor are still dropped on arrival, in case a server replays one anyway.
//! `seq` only means something within one server session: before resuming,
//! the caller looks at the server's latest entry, and when its session
//! differs (or its `seq` went backwards, or its ring is empty) the server has
//! restarted, so the cursor is dropped and every entry of the new session is
//! asked for with the original filters: all of them are new to this client,
//! and a `tail` could hide some that were logged before it reconnected.

use std::time::Duration;

use cantina::v1::{LogEntry, TailLogsRequest};

/// Where a stream stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Cursor {
    /// Nothing printed yet: the original request, backlog and all.
    #[default]
    Start,
    /// After the last entry printed.
    After {
        /// Its `seq`.
        seq: u64,
        /// The server session that wrote it; empty if the server sends none.
        session: String,
    },
    /// The server restarted and nothing of its new session is printed yet:
    /// every entry of the new session is new to this client, so all of them
    /// (with the original filters) rather than the original backlog.
    NewSession,
}

/// What to do with an entry that arrives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// New: print it.
    Print,
    /// At or before the cursor: printed already, drop it.
    Duplicate,
    /// From another server session than the entries before it: the server
    /// restarted. Print it, after saying so.
    Restarted,
}

/// Whether the server is still the one the cursor belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Continuity {
    /// Same session (or nothing to compare): carry on from the cursor.
    Same,
    /// A new server session: the cursor means nothing there.
    Restarted,
}

impl Cursor {
    /// A cursor just after `entry`, as if it had been printed (`--tail 0`
    /// starts after the server's latest entry).
    pub fn after(entry: &LogEntry) -> Self {
        Cursor::After {
            seq: entry.seq,
            session: entry.session_id.clone(),
        }
    }

    /// The `seq` of the last entry printed.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Cursor::After { seq, .. } => Some(*seq),
            Cursor::Start | Cursor::NewSession => None,
        }
    }

    /// Judges an arriving entry and, when it is to be printed, moves past it.
    pub fn admit(&mut self, entry: &LogEntry) -> Verdict {
        // A gap marker's other fields are informative only: it is always
        // shown and never moves the cursor.
        if entry.skipped > 0 {
            return Verdict::Print;
        }
        let verdict = match self {
            Cursor::Start | Cursor::NewSession => Verdict::Print,
            Cursor::After { session, .. } if is_other_session(session, &entry.session_id) => {
                Verdict::Restarted
            }
            Cursor::After { seq, .. } if entry.seq <= *seq => return Verdict::Duplicate,
            Cursor::After { .. } => Verdict::Print,
        };
        // A server that stops naming sessions mid-stream keeps the old name,
        // which is still the best guess.
        let session = match self {
            Cursor::After { session, .. } if entry.session_id.is_empty() => std::mem::take(session),
            _ => entry.session_id.clone(),
        };
        *self = Cursor::After {
            seq: entry.seq,
            session,
        };
        verdict
    }

    /// Compares the cursor with the server's latest entry (`None` when its
    /// ring is empty), before resuming.
    pub fn continuity(&self, latest: Option<&LogEntry>) -> Continuity {
        let Cursor::After { seq, session } = self else {
            // Nothing printed to compare with: the request is right either way.
            return Continuity::Same;
        };
        match latest {
            // The ring only loses entries to newer ones, so an empty ring
            // after entries were printed is a new server.
            None => Continuity::Restarted,
            Some(latest) if is_other_session(session, &latest.session_id) || latest.seq < *seq => {
                Continuity::Restarted
            }
            Some(_) => Continuity::Same,
        }
    }

    /// Forgets the old session after a restart.
    pub fn restart(&mut self) {
        *self = Cursor::NewSession;
    }

    /// The request that carries on from here, with the original's filters.
    pub fn next_request(&self, original: &TailLogsRequest) -> TailLogsRequest {
        match self {
            Cursor::Start => original.clone(),
            Cursor::After { seq, .. } => TailLogsRequest {
                tail: 0,
                since: None,
                after_seq: *seq,
                ..original.clone()
            },
            Cursor::NewSession => TailLogsRequest {
                tail: crate::log_args::WHOLE_RING,
                after_seq: 0,
                ..original.clone()
            },
        }
    }
}

/// Whether two session ids name different sessions; an empty one (a server
/// that sends none) matches anything.
fn is_other_session(old: &str, new: &str) -> bool {
    !old.is_empty() && !new.is_empty() && old != new
}

/// The wait before each reconnection attempt: 100 ms, doubling up to 5 s.
#[derive(Clone, Debug)]
pub struct Backoff {
    /// The next wait.
    next: Duration,
}

impl Backoff {
    /// The first wait: short, since a dropped connection often comes back at
    /// once (a server restart takes a moment).
    pub const FIRST: Duration = Duration::from_millis(100);
    /// The longest wait, so that a server back after a long outage is seen
    /// within seconds without hammering it meanwhile.
    pub const MAX: Duration = Duration::from_secs(5);

    /// A backoff at its first wait.
    pub fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// The wait before the next attempt.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        delay
    }

    /// Back to the first wait, once the stream delivers again.
    pub fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, session: &str) -> LogEntry {
        LogEntry {
            seq,
            session_id: session.into(),
            message: format!("entry {seq}"),
            ..LogEntry::default()
        }
    }

    fn gap(skipped: u64) -> LogEntry {
        LogEntry {
            skipped,
            ..entry(999, "s1")
        }
    }

    fn original() -> TailLogsRequest {
        TailLogsRequest {
            min_level: 3,
            services: vec!["audio".into()],
            pattern: "x".into(),
            tail: 100,
            since: Some(prost_types::Timestamp {
                seconds: 5,
                nanos: 0,
            }),
            follow: true,
            ..TailLogsRequest::default()
        }
    }

    #[test]
    fn new_entries_print_and_replays_are_dropped() {
        let mut cursor = Cursor::default();
        assert_eq!(cursor.admit(&entry(5, "s1")), Verdict::Print);
        assert_eq!(cursor.admit(&entry(9, "s1")), Verdict::Print);
        assert_eq!(cursor.seq(), Some(9));
        assert_eq!(cursor.admit(&entry(9, "s1")), Verdict::Duplicate);
        assert_eq!(cursor.admit(&entry(3, "s1")), Verdict::Duplicate);
        assert_eq!(cursor.seq(), Some(9));
        // A server that sends no session still resumes by seq.
        let mut cursor = Cursor::default();
        assert_eq!(cursor.admit(&entry(5, "")), Verdict::Print);
        assert_eq!(cursor.admit(&entry(5, "")), Verdict::Duplicate);
    }

    #[test]
    fn gap_markers_always_print_and_never_move_the_cursor() {
        let mut cursor = Cursor::default();
        assert_eq!(cursor.admit(&gap(3)), Verdict::Print);
        assert_eq!(cursor.seq(), None);
        cursor.admit(&entry(10, "s1"));
        assert_eq!(cursor.admit(&gap(42)), Verdict::Print);
        assert_eq!(cursor.seq(), Some(10));
    }

    #[test]
    fn another_session_in_the_stream_is_a_restart() {
        let mut cursor = Cursor::default();
        cursor.admit(&entry(500, "s1"));
        assert_eq!(cursor.admit(&entry(2, "s2")), Verdict::Restarted);
        assert_eq!(cursor, Cursor::after(&entry(2, "s2")));
        assert_eq!(cursor.admit(&entry(3, "s2")), Verdict::Print);
    }

    #[test]
    fn the_first_request_is_the_original_and_later_ones_resume_after_the_cursor() {
        let mut cursor = Cursor::default();
        assert_eq!(cursor.next_request(&original()), original());
        cursor.admit(&entry(41, "s1"));
        assert_eq!(
            cursor.next_request(&original()),
            TailLogsRequest {
                tail: 0,
                since: None,
                after_seq: 41,
                ..original()
            }
        );
    }

    #[test]
    fn after_a_restart_every_entry_of_the_new_session_is_asked_for() {
        let mut cursor = Cursor::after(&entry(41, "s1"));
        cursor.restart();
        assert_eq!(cursor.seq(), None);
        assert_eq!(
            cursor.next_request(&original()),
            TailLogsRequest {
                tail: crate::log_args::WHOLE_RING,
                after_seq: 0,
                ..original()
            }
        );
        // A second drop before anything printed asks the same again.
        assert_eq!(cursor.continuity(None), Continuity::Same);
        assert_eq!(cursor.admit(&entry(1, "s2")), Verdict::Print);
        assert_eq!(cursor, Cursor::after(&entry(1, "s2")));
    }

    #[test]
    fn the_servers_latest_entry_tells_a_restart() {
        let fresh = Cursor::default();
        assert_eq!(fresh.continuity(None), Continuity::Same);
        assert_eq!(fresh.continuity(Some(&entry(1, "s2"))), Continuity::Same);

        let cursor = Cursor::after(&entry(41, "s1"));
        assert_eq!(cursor.continuity(Some(&entry(41, "s1"))), Continuity::Same);
        assert_eq!(cursor.continuity(Some(&entry(90, "s1"))), Continuity::Same);
        assert_eq!(
            cursor.continuity(Some(&entry(90, "s2"))),
            Continuity::Restarted
        );
        // Without sessions, a seq that went backwards still tells.
        assert_eq!(
            Cursor::after(&entry(41, "")).continuity(Some(&entry(7, ""))),
            Continuity::Restarted
        );
        assert_eq!(
            Cursor::after(&entry(41, "")).continuity(Some(&entry(45, ""))),
            Continuity::Same
        );
        assert_eq!(cursor.continuity(None), Continuity::Restarted);
    }

    #[test]
    fn backoff_doubles_from_100ms_to_5s_and_resets() {
        let mut backoff = Backoff::new();
        let waits: Vec<u64> = (0..9)
            .map(|_| backoff.next_delay().as_millis() as u64)
            .collect();
        assert_eq!(waits, [100, 200, 400, 800, 1600, 3200, 5000, 5000, 5000]);
        backoff.reset();
        assert_eq!(backoff.next_delay(), Backoff::FIRST);
    }
}
