//! One server log entry as one line: pretty, raw or JSON.
//!
//! Pretty is `[15:30:12.345] INFO  audio  message key=value corr=1a2b3c4d
//! (×3)`, the layout of the server's own session files, with the level in its
//! colour and each service in a colour of its own that stays the same from one
//! run to the next; the service column widens as longer names arrive, as a
//! live stream cannot know its widest line ahead. Raw is the message alone,
//! as `kubectl logs` prints it, for piping into other tools. A gap marker is
//! a warning line in both, since a silent hole in a log misleads.

use std::time::SystemTime;

use anstyle::{AnsiColor, Style};
use cantina::v1::{LogEntry, LogLevel};

use crate::{
    colour::{self, Colours},
    event_line::{fnv1a, quote_if_needed},
    time,
};

/// How much of a correlation id is shown: enough to tell commands apart.
const CORRELATION_CHARS: usize = 8;

/// The width of the level column: `ERROR`, `DEBUG` and `TRACE`.
const LEVEL_WIDTH: usize = 5;

/// The colours of services, picked by a hash of the name. Red, yellow and
/// green are left out so that a service never looks like a level.
const PALETTE: [AnsiColor; 6] = [
    AnsiColor::Cyan,
    AnsiColor::Magenta,
    AnsiColor::BrightBlue,
    AnsiColor::BrightMagenta,
    AnsiColor::BrightCyan,
    AnsiColor::Blue,
];

/// Renders log entries as lines of text.
#[derive(Debug)]
pub struct LogLines {
    /// Whether pretty lines are coloured (raw lines never are).
    colours: Colours,
    /// Full RFC 3339 times instead of the time of day (pretty), or a time in
    /// front of the message (raw).
    timestamps: bool,
    /// The widest service name so far.
    service_width: usize,
}

impl LogLines {
    /// A renderer with no lines behind it yet.
    pub fn new(colours: Colours, timestamps: bool) -> Self {
        Self {
            colours,
            timestamps,
            service_width: 0,
        }
    }

    /// The pretty line for `entry`, without a newline.
    pub fn pretty(&mut self, entry: &LogEntry) -> String {
        let time = if self.timestamps {
            full_time(entry)
        } else {
            entry
                .timestamp
                .as_ref()
                .and_then(time::clock)
                .unwrap_or_else(|| time::clock_of(SystemTime::now()))
        };
        let mut line = self.colours.paint(colour::DIM, &format!("[{time}]"));
        line.push(' ');
        if entry.skipped > 0 {
            line.push_str(&self.colours.paint(WARNING, &gap_line(entry.skipped)));
            return line;
        }

        let (name, style) = level(entry.level);
        line.push_str(&self.colours.paint(style, name));
        push_padding(&mut line, LEVEL_WIDTH, name);
        line.push(' ');

        let service = if entry.service.is_empty() {
            "-"
        } else {
            &entry.service
        };
        self.service_width = self.service_width.max(service.chars().count());
        line.push_str(&self.colours.paint(service_style(service), service));
        push_padding(&mut line, self.service_width, service);
        line.push(' ');

        line.push_str(&entry.message);
        let fields = fields(entry);
        if !fields.is_empty() {
            line.push(' ');
            line.push_str(&fields);
        }
        if !entry.correlation_id.is_empty() {
            let short: String = entry
                .correlation_id
                .chars()
                .take(CORRELATION_CHARS)
                .collect();
            line.push(' ');
            line.push_str(&self.colours.paint(colour::DIM, &format!("corr={short}")));
        }
        if let Some(times) = times(entry) {
            line.push(' ');
            line.push_str(&self.colours.paint(colour::DIM, &times));
        }
        // The padding is only there for what follows it.
        line.truncate(line.trim_end().len());
        line
    }

    /// The raw line for `entry`: the message and how many times it came, with
    /// the full time in front when asked for. Never coloured.
    pub fn raw(&self, entry: &LogEntry) -> String {
        let mut line = if self.timestamps {
            format!("{} ", full_time(entry))
        } else {
            String::new()
        };
        if entry.skipped > 0 {
            line.push_str(&gap_line(entry.skipped));
            return line;
        }
        line.push_str(&entry.message);
        if let Some(times) = times(entry) {
            line.push(' ');
            line.push_str(&times);
        }
        line
    }
}

/// Gap markers stand out: something is missing from the log.
const WARNING: Style = colour::fg(AnsiColor::Yellow).bold();

/// What a gap marker says, in a warning on stderr.
pub fn skipped_text(skipped: u64) -> String {
    let entries = if skipped == 1 { "entry" } else { "entries" };
    format!("skipped {skipped} {entries} (this client fell behind)")
}

/// A gap marker as a line of the log itself.
fn gap_line(skipped: u64) -> String {
    format!("⚠ {}", skipped_text(skipped))
}

/// The entry as one line of proto3 JSON, for `jq` and other JSON Lines tools.
pub fn json_line(entry: &LogEntry) -> String {
    cantina::json::to_json(entry).to_string()
}

/// `2026-11-22T15:30:12.345Z`, or the time it arrived for an entry without a
/// valid time (there should be none), so that the column stays a column.
fn full_time(entry: &LogEntry) -> String {
    entry
        .timestamp
        .as_ref()
        .and_then(time::rfc3339_millis)
        .unwrap_or_else(|| humantime::format_rfc3339_millis(SystemTime::now()).to_string())
}

/// `(×3)` when dedup folded several identical entries into this one.
fn times(entry: &LogEntry) -> Option<String> {
    (entry.repeated > 1).then(|| format!("(×{})", entry.repeated))
}

/// The level's name and colour.
fn level(level: i32) -> (&'static str, Style) {
    match LogLevel::try_from(level) {
        Ok(LogLevel::Error) => ("ERROR", colour::fg(AnsiColor::Red).bold()),
        Ok(LogLevel::Warn) => ("WARN", colour::fg(AnsiColor::Yellow)),
        Ok(LogLevel::Info) => ("INFO", colour::fg(AnsiColor::Green)),
        Ok(LogLevel::Debug) => ("DEBUG", colour::fg(AnsiColor::Blue)),
        Ok(LogLevel::Trace) => ("TRACE", colour::DIM),
        // Unset or from a newer contract: shown, but as unknown.
        Ok(LogLevel::Unspecified) | Err(_) => ("-", Style::new()),
    }
}

/// The colour of a service: the same name always gets the same colour.
fn service_style(service: &str) -> Style {
    colour::fg(PALETTE[fnv1a(service) % PALETTE.len()])
}

/// `key=value key=value` in key order (the map has none of its own), quoted
/// only where a space or a quote would make the line ambiguous.
fn fields(entry: &LogEntry) -> String {
    let mut fields: Vec<(&String, &String)> = entry.fields.iter().collect();
    fields.sort();
    fields
        .into_iter()
        .map(|(key, value)| format!("{key}={}", quote_if_needed(value.clone())))
        .collect::<Vec<_>>()
        .join(" ")
}

fn push_padding(line: &mut String, width: usize, text: &str) {
    let padding = width.saturating_sub(text.chars().count());
    line.extend(std::iter::repeat_n(' ', padding));
}

#[cfg(test)]
mod tests {
    use prost_types::Timestamp;

    use super::*;

    fn entry(level: LogLevel, service: &str, message: &str) -> LogEntry {
        LogEntry {
            seq: 42,
            timestamp: Some(Timestamp {
                seconds: 1_795_879_812,
                nanos: 345_000_000,
            }),
            level: level as i32,
            service: service.into(),
            target: format!("cantina_server::{service}"),
            message: message.into(),
            session_id: "s1".into(),
            ..LogEntry::default()
        }
    }

    fn track_started() -> LogEntry {
        let mut entry = entry(LogLevel::Info, "audio", "track started");
        entry.fields.insert("track".into(), "Cantina Band".into());
        entry.fields.insert("volume".into(), "70".into());
        entry.correlation_id = "3f2a9c1e-77aa-4b1c-9d2e-0123456789ab".into();
        entry
    }

    fn gap() -> LogEntry {
        LogEntry {
            skipped: 42,
            ..entry(LogLevel::Unspecified, "", "")
        }
    }

    #[test]
    fn a_pretty_line_has_time_level_service_message_fields_and_correlation() {
        let mut lines = LogLines::new(Colours::OFF, false);
        assert_eq!(
            lines.pretty(&track_started()),
            r#"[15:30:12.345] INFO  audio track started track="Cantina Band" volume=70 corr=3f2a9c1e"#
        );
        // The service column widens for longer names and stays wide.
        assert_eq!(
            lines.pretty(&entry(LogLevel::Error, "scheduler", "plan failed")),
            "[15:30:12.345] ERROR scheduler plan failed"
        );
        assert_eq!(
            lines.pretty(&entry(LogLevel::Warn, "eyes", "port busy")),
            "[15:30:12.345] WARN  eyes      port busy"
        );
        assert_eq!(
            lines.pretty(&entry(LogLevel::Unspecified, "", "")),
            "[15:30:12.345] -     -"
        );
    }

    #[test]
    fn timestamps_write_the_full_time() {
        let mut lines = LogLines::new(Colours::OFF, true);
        assert_eq!(
            lines.pretty(&entry(LogLevel::Debug, "bus", "drained")),
            "[2026-11-28T15:30:12.345Z] DEBUG bus drained"
        );
        assert_eq!(
            lines.raw(&entry(LogLevel::Debug, "bus", "drained")),
            "2026-11-28T15:30:12.345Z drained"
        );
    }

    #[test]
    fn colour_marks_the_level_and_the_service() {
        let mut lines = LogLines::new(Colours::ON, false);
        let audio = service_style("audio");
        assert_eq!(
            lines.pretty(&entry(LogLevel::Error, "audio", "no device")),
            format!(
                "\u{1b}[2m[15:30:12.345]\u{1b}[0m \u{1b}[1m\u{1b}[31mERROR\u{1b}[0m \
                 {audio}audio{audio:#} no device"
            )
        );
        for (level, escape) in [
            (LogLevel::Warn, "\u{1b}[33mWARN\u{1b}[0m"),
            (LogLevel::Info, "\u{1b}[32mINFO\u{1b}[0m"),
            (LogLevel::Debug, "\u{1b}[34mDEBUG\u{1b}[0m"),
            (LogLevel::Trace, "\u{1b}[2mTRACE\u{1b}[0m"),
        ] {
            let line = lines.pretty(&entry(level, "audio", "x"));
            assert!(line.contains(escape), "{level:?}: {line:?}");
        }
        // A service keeps its colour; the palette holds no level colour.
        assert_eq!(service_style("eyes"), service_style("eyes"));
        assert_eq!(
            service_style("eyes"),
            colour::fg(PALETTE[fnv1a("eyes") % PALETTE.len()])
        );
        for level_colour in [AnsiColor::Red, AnsiColor::Yellow, AnsiColor::Green] {
            assert!(!PALETTE.contains(&level_colour));
        }
    }

    #[test]
    fn raw_is_the_message_alone_and_never_coloured() {
        let lines = LogLines::new(Colours::ON, false);
        assert_eq!(lines.raw(&track_started()), "track started");
    }

    #[test]
    fn folded_entries_say_how_many_they_stand_for() {
        let mut lines = LogLines::new(Colours::OFF, false);
        let mut entry = entry(LogLevel::Warn, "eyes", "serial timeout");
        entry.repeated = 1;
        assert_eq!(
            lines.pretty(&entry),
            "[15:30:12.345] WARN  eyes serial timeout"
        );
        entry.repeated = 17;
        assert_eq!(
            lines.pretty(&entry),
            "[15:30:12.345] WARN  eyes serial timeout (×17)"
        );
        assert_eq!(lines.raw(&entry), "serial timeout (×17)");
    }

    #[test]
    fn a_gap_marker_is_a_warning_line() {
        let mut lines = LogLines::new(Colours::OFF, false);
        assert_eq!(
            lines.pretty(&gap()),
            "[15:30:12.345] ⚠ skipped 42 entries (this client fell behind)"
        );
        assert_eq!(
            lines.raw(&gap()),
            "⚠ skipped 42 entries (this client fell behind)"
        );
        let mut lines = LogLines::new(Colours::ON, false);
        assert_eq!(
            lines.pretty(&gap()),
            "\u{1b}[2m[15:30:12.345]\u{1b}[0m \
             \u{1b}[1m\u{1b}[33m⚠ skipped 42 entries (this client fell behind)\u{1b}[0m"
        );
        assert_eq!(skipped_text(1), "skipped 1 entry (this client fell behind)");
    }

    #[test]
    fn json_lines_are_one_compact_object_each() {
        let line = json_line(&track_started());
        assert!(!line.contains('\n'), "{line}");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["message"], "track started");
        assert_eq!(value["level"], "LOG_LEVEL_INFO");
        assert_eq!(value["timestamp"], "2026-11-28T15:30:12.345Z");
        assert_eq!(value["fields"]["track"], "Cantina Band");
        // uint64 is a string in proto3 JSON.
        assert_eq!(value["seq"], "42");

        let marker: serde_json::Value = serde_json::from_str(&json_line(&gap())).unwrap();
        assert_eq!(marker["skipped"], "42");
    }
}
