//! One bus event as one line of text, or as one line of JSON.
//!
//! The text line is `HH:MM:SS.mmm  topic  source  key=value …  corr=1a2b3c4d`:
//! the payload is flattened one level so that `grep mode=IDLE` works, nested
//! values stay compact JSON, and strings are quoted only when a space or a
//! quote would make the line ambiguous. Topic and source columns widen as
//! longer ones arrive, since a live stream cannot know its widest line ahead.

use std::time::SystemTime;

use anstyle::{AnsiColor, Style};
use cantina::v1::BusEvent;
use prost_types::Struct;

use crate::{
    colour::{self, Colours},
    time,
};

/// How much of a correlation id is shown: enough to tell commands apart.
const CORRELATION_CHARS: usize = 8;

/// The colours of topics whose first segment is unknown; the segment's hash
/// picks one, so a topic keeps its colour from one run to the next.
const PALETTE: [AnsiColor; 6] = [
    AnsiColor::Cyan,
    AnsiColor::Blue,
    AnsiColor::Magenta,
    AnsiColor::Green,
    AnsiColor::BrightBlue,
    AnsiColor::BrightMagenta,
];

/// Renders events as text lines, remembering the column widths seen so far.
#[derive(Debug)]
pub struct EventLines {
    /// Whether to colour the topic, timestamp and correlation id.
    colours: Colours,
    /// Whether lines start with the event's time.
    timestamps: bool,
    /// The widest topic so far.
    topic_width: usize,
    /// The widest source so far.
    source_width: usize,
}

impl EventLines {
    /// A renderer with no lines behind it yet.
    pub fn new(colours: Colours, timestamps: bool) -> Self {
        Self {
            colours,
            timestamps,
            topic_width: 0,
            source_width: 0,
        }
    }

    /// The line for `event`, without a newline: the event itself, or the
    /// warning of a marker event.
    pub fn line(&mut self, event: &BusEvent) -> String {
        let mut line = String::new();
        if self.timestamps {
            // An event without a time (there should be none) gets the time it
            // arrived, so that the column stays a column.
            let clock = event
                .timestamp
                .as_ref()
                .and_then(time::clock)
                .unwrap_or_else(|| time::clock_of(SystemTime::now()));
            line.push_str(&self.colours.paint(colour::DIM, &clock));
            line.push_str("  ");
        }
        if event.missed > 0 {
            line.push_str(&self.colours.paint(
                colour::fg(AnsiColor::Yellow).bold(),
                &format!("⚠ {}", missed_text(event.missed)),
            ));
            return line;
        }

        let source = if event.source.is_empty() {
            "-"
        } else {
            &event.source
        };
        self.topic_width = self.topic_width.max(event.topic.chars().count());
        self.source_width = self.source_width.max(source.chars().count());
        line.push_str(&self.colours.paint(topic_style(&event.topic), &event.topic));
        push_padding(&mut line, self.topic_width, &event.topic);
        line.push_str("  ");
        line.push_str(source);
        push_padding(&mut line, self.source_width, source);

        if let Some(payload) = &event.payload {
            let fields = flatten(payload);
            if !fields.is_empty() {
                line.push_str("  ");
                line.push_str(&fields);
            }
        }
        if !event.correlation_id.is_empty() {
            let short: String = event
                .correlation_id
                .chars()
                .take(CORRELATION_CHARS)
                .collect();
            line.push_str("  ");
            line.push_str(&self.colours.paint(colour::DIM, &format!("corr={short}")));
        }
        // The padding is only there for what follows it.
        line.truncate(line.trim_end().len());
        line
    }
}

/// The warning a marker event stands for.
pub fn missed_text(missed: u64) -> String {
    let events = if missed == 1 { "event" } else { "events" };
    format!("missed {missed} {events} (this client fell behind)")
}

/// The event as one line of proto3 JSON, for `jq` and other JSON Lines tools.
pub fn json_line(event: &BusEvent) -> String {
    cantina::json::to_json(event).to_string()
}

/// `key=value key=value`: the payload's fields in key order, one level deep.
pub fn flatten(payload: &Struct) -> String {
    payload
        .fields
        .iter()
        .map(|(key, value)| {
            let value = match cantina::json::value_to_json(value) {
                serde_json::Value::String(text) => quote_if_needed(text),
                // Numbers, booleans and null read the same in JSON; objects
                // and arrays become compact JSON, which has no spaces.
                other => other.to_string(),
            };
            format!("{key}={value}")
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `text` as is when it is one word, else as a JSON string.
pub fn quote_if_needed(text: String) -> String {
    let plain = !text.is_empty()
        && !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\\');
    if plain {
        text
    } else {
        serde_json::Value::String(text).to_string()
    }
}

/// The colour of a topic, by its first segment.
fn topic_style(topic: &str) -> Style {
    let segment = topic.split('.').next().unwrap_or(topic);
    let colour = match segment {
        "system" => AnsiColor::Cyan,
        "service" => AnsiColor::Blue,
        "music" | "audio" | "speech" => AnsiColor::Magenta,
        "eyes" => AnsiColor::Green,
        "plan" => AnsiColor::Yellow,
        "bus" => AnsiColor::BrightBlack,
        "command" => AnsiColor::BrightCyan,
        "log" => AnsiColor::BrightBlue,
        other => PALETTE[fnv1a(other) % PALETTE.len()],
    };
    colour::fg(colour)
}

/// FNV-1a: a hash that, unlike std's, is the same in every build.
pub fn fnv1a(text: &str) -> usize {
    let hash = text.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    // Only the remainder by a small number is used, so truncating is fine.
    hash as usize
}

fn push_padding(line: &mut String, width: usize, text: &str) {
    let padding = width.saturating_sub(text.chars().count());
    line.extend(std::iter::repeat_n(' ', padding));
}

#[cfg(test)]
mod tests {
    use prost_types::Timestamp;

    use super::*;

    fn event(
        topic: &str,
        source: &str,
        payload: serde_json::Value,
        correlation_id: &str,
    ) -> BusEvent {
        BusEvent {
            topic: topic.into(),
            timestamp: Some(Timestamp {
                seconds: 1_795_879_812,
                nanos: 345_000_000,
            }),
            correlation_id: correlation_id.into(),
            source: source.into(),
            payload: Some(cantina::json::struct_from_json(payload)),
            seq: 7,
            ..BusEvent::default()
        }
    }

    fn mode_changed() -> BusEvent {
        event(
            "system.mode.changed",
            "modes",
            serde_json::json!({"from": "IDLE", "to": "INTERACTIVE"}),
            "3f2a9c1e-77aa-4b1c-9d2e-0123456789ab",
        )
    }

    #[test]
    fn a_plain_line_has_time_topic_source_fields_and_correlation() {
        let mut lines = EventLines::new(Colours::OFF, true);
        assert_eq!(
            lines.line(&mode_changed()),
            "15:30:12.345  system.mode.changed  modes  from=IDLE to=INTERACTIVE  corr=3f2a9c1e"
        );

        let mut lines = EventLines::new(Colours::OFF, false);
        assert_eq!(
            lines.line(&event("bus.metrics", "", serde_json::json!({}), "")),
            "bus.metrics  -"
        );
    }

    #[test]
    fn columns_widen_as_longer_topics_arrive() {
        let mut lines = EventLines::new(Colours::OFF, false);
        let long = event(
            "system.mode.transition.started",
            "modes",
            serde_json::json!({"to": "AMBIENT"}),
            "",
        );
        let short = event(
            "plan.started",
            "plans",
            serde_json::json!({"id": "p-1"}),
            "",
        );
        assert_eq!(
            lines.line(&long),
            "system.mode.transition.started  modes  to=AMBIENT"
        );
        assert_eq!(
            lines.line(&short),
            "plan.started                    plans  id=p-1"
        );
    }

    #[test]
    fn colour_marks_the_topic_by_its_first_segment_and_dims_the_rest() {
        let mut lines = EventLines::new(Colours::ON, true);
        assert_eq!(
            lines.line(&mode_changed()),
            "\u{1b}[2m15:30:12.345\u{1b}[0m  \u{1b}[36msystem.mode.changed\u{1b}[0m  modes  \
             from=IDLE to=INTERACTIVE  \u{1b}[2mcorr=3f2a9c1e\u{1b}[0m"
        );
        assert_eq!(
            topic_style("system.started"),
            topic_style("system.stopping")
        );
        assert_ne!(
            topic_style("system.started"),
            topic_style("music.playback.started")
        );
        // Unknown segments get a colour that does not change between runs.
        assert_eq!(topic_style("weather.rain"), topic_style("weather.sun"));
        assert_eq!(
            topic_style("weather.rain"),
            colour::fg(PALETTE[fnv1a("weather") % PALETTE.len()])
        );
    }

    #[test]
    fn the_payload_flattens_one_level() {
        let payload = cantina::json::struct_from_json(serde_json::json!({
            "track": "Cantina Band",
            "volume": 70,
            "level": 0.25,
            "ducked": false,
            "reason": null,
            "queue": ["a", "b c"],
            "plan": {"id": "p-1", "steps": 5},
            "empty": "",
            "path": "C:\\music",
            "word": "x=y",
        }));
        assert_eq!(
            flatten(&payload),
            r#"ducked=false empty="" level=0.25 path="C:\\music" plan={"id":"p-1","steps":5} queue=["a","b c"] reason=null track="Cantina Band" volume=70 word=x=y"#
        );
        assert_eq!(flatten(&Struct::default()), "");
    }

    #[test]
    fn a_marker_event_is_a_warning() {
        let marker = BusEvent {
            topic: "bus.missed".into(),
            missed: 42,
            ..mode_changed()
        };
        let mut lines = EventLines::new(Colours::OFF, true);
        assert_eq!(
            lines.line(&marker),
            "15:30:12.345  ⚠ missed 42 events (this client fell behind)"
        );
        let mut lines = EventLines::new(Colours::ON, false);
        assert_eq!(
            lines.line(&marker),
            "\u{1b}[1m\u{1b}[33m⚠ missed 42 events (this client fell behind)\u{1b}[0m"
        );
        assert_eq!(missed_text(1), "missed 1 event (this client fell behind)");
    }

    #[test]
    fn json_lines_are_one_compact_object_each() {
        let line = json_line(&mode_changed());
        assert!(!line.contains('\n'), "{line}");
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["topic"], "system.mode.changed");
        assert_eq!(value["timestamp"], "2026-11-28T15:30:12.345Z");
        assert_eq!(value["payload"]["to"], "INTERACTIVE");
        // uint64 is a string in proto3 JSON.
        assert_eq!(value["seq"], "7");
    }
}
