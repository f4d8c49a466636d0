//! The options of `cantina logs`, and how they become a `TailLogsRequest`.
//!
//! Arguments are checked here, before any connection: a bad `--grep` regex or
//! `--since` time is a usage error (exit 2, as clap's own) that a person
//! should see at once, not after a round trip. `--since 5m` is resolved
//! against this machine's clock when the request is built, so that the pure
//! conversion can be tested with a fixed "now".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cantina::v1::{LogLevel, TailLogsRequest};
use clap::{Args, ValueEnum};

/// `tail` asking for every entry the server still has: the API's `tail` is
/// a count, like `tail -n`, so 0 would mean none.
pub const WHOLE_RING: u32 = u32::MAX;

/// How many entries `cantina logs` replays when neither `--tail` nor
/// `--since` says: a screenful and a bit, enough to see what just happened
/// without flooding the terminal with the whole ring.
pub const DEFAULT_TAIL: u32 = 100;

/// Examples and defaults shown at the end of `cantina logs --help`.
pub const LOGS_HELP: &str = "\
Examples:
  cantina logs                                   the last 100 entries
  cantina logs -f --level info --service audio   follow one service live
  cantina logs --since 5m --grep 'timeout|refused'
  cantina logs --tail all -o json | jq -r .message
  cantina logs -f --tail 0                       only what comes next

Without --tail the last 100 matching entries are printed; with --since, every
matching entry since then. Without -f the command exits 0 after them; with -f
it keeps printing until Ctrl-C, and when the connection drops or the server
restarts it reconnects and resumes after the last entry printed, with no
duplicates. A line `⚠ skipped N entries` marks entries this client missed
because it fell behind.

Output (-o): pretty (the default) is `[HH:MM:SS.mmm] LEVEL service message
key=value` with (×N) when N identical entries were folded into one; raw is the
message alone; json is one proto3 JSON object per line. Times are UTC;
--timestamps writes the full date and time instead of the time of day.";

/// Options of `cantina logs`.
// A heading of their own keeps them together in --help, apart from the
// connection options every subcommand shares.
#[derive(Debug, Args)]
#[command(next_help_heading = "Log options")]
pub struct LogsArgs {
    /// Keep streaming new entries after the backlog, until Ctrl-C.
    #[arg(short, long)]
    pub follow: bool,

    /// Start with the last N matching entries; `all` for every one the server
    /// keeps, 0 for none (only new entries) [default: 100, or all with
    /// --since].
    #[arg(long, value_name = "N", value_parser = parse_tail)]
    pub tail: Option<Tail>,

    /// Only entries since then: a duration back from now (`30s`, `5m`,
    /// `1h30m`) or a UTC time (`2026-11-22T15:00:00Z`).
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<Since>,

    /// Only entries at this level or more severe [default: every level].
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub level: Option<Level>,

    /// Only entries of this service (`audio`, `eyes`…); repeat the option or
    /// separate names with commas for several.
    #[arg(long = "service", value_name = "NAME", value_delimiter = ',')]
    pub services: Vec<String>,

    /// Only entries whose message matches this regular expression (Rust
    /// `regex` syntax).
    #[arg(long, value_name = "REGEX", value_parser = parse_regex)]
    pub grep: Option<String>,

    /// Only entries whose message contains this text.
    #[arg(long, value_name = "TEXT")]
    pub contains: Option<String>,

    /// Start each line with the full UTC date and time (RFC 3339) instead of
    /// the time of day; with `-o raw`, add it in front of the message.
    #[arg(long)]
    pub timestamps: bool,

    /// Never colour the output, even at a terminal (as NO_COLOR=1 does).
    #[arg(long)]
    pub no_color: bool,
}

/// How much backlog to replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tail {
    /// The last N matching entries; 0 for none.
    Last(u32),
    /// Every matching entry the server still keeps.
    All,
}

/// Where `--since` starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Since {
    /// This long before now.
    Ago(Duration),
    /// This moment.
    At(SystemTime),
}

impl Since {
    /// The moment meant, with `now` as the reference for a duration. A
    /// duration longer than the time since 1970 means "from the start".
    pub fn resolve(self, now: SystemTime) -> SystemTime {
        match self {
            Since::Ago(ago) => now.checked_sub(ago).unwrap_or(UNIX_EPOCH).max(UNIX_EPOCH),
            Since::At(at) => at,
        }
    }
}

/// The levels of `--level`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Level {
    /// Everything.
    Trace,
    /// Debugging detail and up.
    Debug,
    /// Normal operation and up.
    Info,
    /// Problems the server handled, and errors.
    #[value(alias = "warning")]
    Warn,
    /// Failures only.
    Error,
}

impl From<Level> for LogLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        }
    }
}

impl LogsArgs {
    /// Whether the user asked for no backlog at all (`--tail 0`): the
    /// contract has no way to say so (a `tail` of 0 means "no limit"), so the
    /// caller starts after the server's latest entry instead.
    pub fn only_new(&self) -> bool {
        self.tail == Some(Tail::Last(0))
    }

    /// The request these options stand for, with `now` resolving `--since`.
    ///
    /// `tail` is the whole ring ([`WHOLE_RING`]) for `--tail all`; 0 for
    /// `--tail 0` (the caller adds a resume cursor) and when only `--since`
    /// bounds the backlog (the server then sends everything since).
    pub fn request(&self, now: SystemTime) -> TailLogsRequest {
        let tail = match (self.tail, self.since) {
            (Some(Tail::Last(n)), _) => n,
            (Some(Tail::All), _) => WHOLE_RING,
            (None, Some(_)) => 0,
            (None, None) => DEFAULT_TAIL,
        };
        TailLogsRequest {
            min_level: self.level.map_or(LogLevel::Unspecified, LogLevel::from) as i32,
            services: self.services.clone(),
            contains: self.contains.clone().unwrap_or_default(),
            pattern: self.grep.clone().unwrap_or_default(),
            tail,
            since: self.since.map(|since| since.resolve(now).into()),
            after_seq: 0,
            follow: self.follow,
        }
    }
}

/// `--tail`: a count, `all`, or kubectl's `-1` for all.
fn parse_tail(text: &str) -> Result<Tail, String> {
    match text.trim() {
        "all" | "-1" => Ok(Tail::All),
        number => number
            .parse()
            .map(Tail::Last)
            .map_err(|_| "expected a number of entries or `all`".to_string()),
    }
}

/// `--since`: a humantime duration (`5m`, `1h30m`) or an RFC 3339 time.
pub fn parse_since(text: &str) -> Result<Since, String> {
    let text = text.trim();
    if let Ok(ago) = humantime::parse_duration(text) {
        return Ok(Since::Ago(ago));
    }
    humantime::parse_rfc3339_weak(text)
        .map(Since::At)
        .map_err(|_| {
            "expected a duration such as 5m or 1h30m, or a UTC time such as \
             2026-11-22T15:00:00Z"
                .to_string()
        })
}

/// `--grep`: checked here so that a typo fails at once with the regex
/// crate's pointer to the problem, rather than as the server's refusal.
fn parse_regex(text: &str) -> Result<String, String> {
    regex::Regex::new(text)
        .map(|_| text.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> LogsArgs {
        LogsArgs {
            follow: false,
            tail: None,
            since: None,
            level: None,
            services: Vec::new(),
            grep: None,
            contains: None,
            timestamps: false,
            no_color: false,
        }
    }

    #[test]
    fn since_takes_durations_and_times() {
        assert_eq!(parse_since("5m"), Ok(Since::Ago(Duration::from_secs(300))));
        assert_eq!(
            parse_since("1h30m"),
            Ok(Since::Ago(Duration::from_secs(5400)))
        );
        let at = UNIX_EPOCH + Duration::from_secs(1_795_359_600);
        assert_eq!(parse_since("2026-11-22T15:00:00Z"), Ok(Since::At(at)));
        // The weak form takes a space and no zone, as people type it.
        assert_eq!(parse_since("2026-11-22 15:00:00"), Ok(Since::At(at)));
        for bad in ["", "5 parsecs", "yesterday", "2026-13-01T00:00:00Z"] {
            let error = parse_since(bad).unwrap_err();
            assert!(error.contains("5m"), "{bad}: {error}");
        }
    }

    #[test]
    fn since_resolves_against_now_and_stops_at_1970() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        assert_eq!(
            Since::Ago(Duration::from_secs(300)).resolve(now),
            UNIX_EPOCH + Duration::from_secs(700)
        );
        assert_eq!(
            Since::Ago(Duration::from_secs(5_000)).resolve(now),
            UNIX_EPOCH
        );
        assert_eq!(Since::At(UNIX_EPOCH).resolve(now), UNIX_EPOCH);
    }

    #[test]
    fn tail_takes_counts_and_all() {
        assert_eq!(parse_tail("50"), Ok(Tail::Last(50)));
        assert_eq!(parse_tail("0"), Ok(Tail::Last(0)));
        assert_eq!(parse_tail("all"), Ok(Tail::All));
        assert_eq!(parse_tail("-1"), Ok(Tail::All));
        assert!(parse_tail("many").is_err());
        assert!(parse_tail("-5").is_err());
    }

    #[test]
    fn grep_must_be_a_regex() {
        assert_eq!(
            parse_regex("time(out)?|refused").as_deref(),
            Ok("time(out)?|refused")
        );
        let error = parse_regex("x(").unwrap_err();
        assert!(error.contains("unclosed group"), "{error}");
    }

    #[test]
    fn the_request_carries_the_filters() {
        let now = UNIX_EPOCH + Duration::from_secs(1_000);
        let request = LogsArgs {
            follow: true,
            level: Some(Level::Warn),
            services: vec!["audio".into(), "eyes".into()],
            grep: Some("fail".into()),
            contains: Some("port".into()),
            since: Some(Since::Ago(Duration::from_secs(60))),
            ..args()
        }
        .request(now);
        assert_eq!(
            request,
            TailLogsRequest {
                min_level: LogLevel::Warn as i32,
                services: vec!["audio".into(), "eyes".into()],
                contains: "port".into(),
                pattern: "fail".into(),
                tail: 0,
                since: Some(prost_types::Timestamp {
                    seconds: 940,
                    nanos: 0
                }),
                after_seq: 0,
                follow: true,
            }
        );
    }

    #[test]
    fn the_backlog_is_100_entries_unless_tail_or_since_say_otherwise() {
        let now = SystemTime::now();
        assert_eq!(args().request(now).tail, DEFAULT_TAIL);
        assert_eq!(args().request(now).min_level, LogLevel::Unspecified as i32);
        let tail = |tail| LogsArgs { tail, ..args() }.request(now).tail;
        assert_eq!(tail(Some(Tail::Last(7))), 7);
        assert_eq!(tail(Some(Tail::All)), WHOLE_RING);
        assert_eq!(tail(Some(Tail::Last(0))), 0);
        let since = LogsArgs {
            since: Some(Since::At(UNIX_EPOCH)),
            ..args()
        };
        assert_eq!(since.request(now).tail, 0);
        assert!(!since.only_new());
        assert!(
            LogsArgs {
                tail: Some(Tail::Last(0)),
                ..args()
            }
            .only_new()
        );
    }
}
