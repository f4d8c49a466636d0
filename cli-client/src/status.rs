//! `cantina status` as text: who the server is, then every subsystem as a
//! table, then the audio, the eyes, the servos, the running plans, the
//! bus and the gRPC edge (open streams, refusals), each only when the server
//! reports it.
//!
//! Enum values lose their `MODE_`-style prefixes, because the column or key
//! already says what they are; a value this CLI does not know (a newer server)
//! shows as its number rather than being hidden.

use anstyle::{AnsiColor, Style};
use cantina::v1::{
    AudioStatus, EdgeStatus, EyesStatus, Mode, PlanSummary, ServiceStatus, ServosStatus,
    SubsystemStatus, SystemStatus,
};

use crate::{
    colour::{self, Colours},
    plan_text,
    table::{self, Cell},
    time,
};

/// The bus metrics worth a glance, in the order they are shown.
const BUS_KEYS: [&str; 5] = [
    "published",
    "delivered",
    "dropped",
    "subscribers",
    "dead_letters",
];

/// Stands in for a value the server left empty.
const NONE: &str = "-";

/// The whole status, ending in a newline.
pub fn render(status: &SystemStatus, colours: Colours) -> String {
    let mut sections = vec![header(status), subsystems(&status.subsystems, colours)];
    if let Some(audio) = &status.audio {
        sections.push(audio_block(audio));
    }
    if let Some(eyes) = &status.eyes {
        sections.push(eyes_block(eyes));
    }
    if let Some(speech) = &status.speech {
        sections.push(speech_block(speech));
    }
    if let Some(servos) = &status.servos {
        sections.push(servos_block(servos, colours));
    }
    if !status.plans.is_empty() {
        sections.push(plans(&status.plans, colours));
    }
    if let Some(bus) = status.bus.as_ref().and_then(bus_line) {
        sections.push(bus);
    }
    if let Some(edge) = &status.edge {
        sections.push(edge_line(edge));
    }
    sections.join("\n")
}

/// `Cantina 0.1.0 · session …` and the mode, uptime and start time.
fn header(status: &SystemStatus) -> String {
    let mut title = format!("Cantina {}", or_none(&status.version));
    if !status.session_id.is_empty() {
        title.push_str(" · session ");
        title.push_str(&status.session_id);
    }
    title.push('\n');
    let pairs = [
        (
            "mode",
            enum_name(
                Mode::try_from(status.mode),
                status.mode,
                |m| m.as_str_name(),
                "MODE_",
            ),
        ),
        (
            "uptime",
            status.uptime.as_ref().map_or(NONE.into(), time::duration),
        ),
        (
            "started",
            status
                .started_at
                .as_ref()
                .and_then(time::rfc3339)
                .unwrap_or_else(|| NONE.into()),
        ),
    ];
    title + &key_values(&pairs, "")
}

/// The subsystems, one row each, in the server's (start) order.
fn subsystems(subsystems: &[SubsystemStatus], colours: Colours) -> String {
    if subsystems.is_empty() {
        return "subsystems: none\n".into();
    }
    let header = ["NAME", "STATUS", "UPTIME", "CRITICAL", "MESSAGE"];
    let mut rows = vec![header.map(Cell::from).to_vec()];
    for subsystem in subsystems {
        let known = ServiceStatus::try_from(subsystem.status);
        let name = enum_name(known, subsystem.status, |s| s.as_str_name(), "STATUS_");
        let style = known.map_or(Style::new(), status_style);
        rows.push(vec![
            Cell::from(or_none(&subsystem.name)),
            Cell::styled(name, style),
            Cell::from(
                subsystem
                    .uptime
                    .as_ref()
                    .map_or(NONE.into(), time::duration),
            ),
            Cell::from(yes_no(subsystem.critical)),
            Cell::from(subsystem.message.as_str()),
        ]);
    }
    table::render(&rows, "", colours)
}

/// Green when all is well, yellow in between, red when broken, dim when off.
fn status_style(status: ServiceStatus) -> Style {
    match status {
        ServiceStatus::Running => colour::fg(AnsiColor::Green),
        ServiceStatus::Degraded | ServiceStatus::Starting | ServiceStatus::Stopping => {
            colour::fg(AnsiColor::Yellow)
        }
        ServiceStatus::Error => colour::fg(AnsiColor::Red),
        ServiceStatus::Stopped => colour::DIM,
        ServiceStatus::StatusUnspecified => Style::new(),
    }
}

fn audio_block(audio: &AudioStatus) -> String {
    let output = if audio.output.is_empty() && audio.r#virtual {
        "virtual"
    } else {
        or_none(&audio.output)
    };
    let position = match (&audio.position, &audio.duration) {
        (Some(position), Some(length)) => {
            format!("{} / {}", time::duration(position), time::duration(length))
        }
        (Some(position), None) => time::duration(position),
        (None, _) => NONE.into(),
    };
    let ducked = match (audio.ducked, audio.duck_level) {
        (false, _) => "no".to_string(),
        (true, level) if level > 0.0 => format!("yes ({level:.2})"),
        (true, _) => "yes".to_string(),
    };
    let mut output = output.to_string();
    if audio.sample_rate > 0 {
        output.push_str(&format!(", {} Hz", audio.sample_rate));
    }
    if !audio.connected {
        output.push_str(" (LOST: reopening)");
    }
    let track = match (audio.track.as_str(), audio.artist.as_str()) {
        ("", _) => NONE.to_string(),
        (title, "") => title.to_string(),
        (title, artist) => format!("{artist} - {title}"),
    };
    let mut pairs = vec![
        ("output", output),
        ("state", or_none(&audio.state).to_string()),
        ("track", track),
        ("position", position),
        ("volume", audio.volume.to_string()),
        ("ducked", ducked),
        (
            "dj_mode",
            if audio.dj_mode { "on" } else { "off" }.to_string(),
        ),
    ];
    // Quiet unless there is something to say.
    if !audio.queue.is_empty() {
        pairs.push(("queue", audio.queue.join(", ")));
    }
    if audio.library_size > 0 {
        pairs.push(("library", format!("{} tracks", audio.library_size)));
    }
    if audio.underruns > 0 {
        pairs.push(("underruns", audio.underruns.to_string()));
    }
    if !audio.last_error.is_empty() {
        pairs.push(("last_error", audio.last_error.clone()));
    }
    format!("audio:\n{}", key_values(&pairs, "  "))
}

fn speech_block(speech: &cantina::v1::SpeechStatus) -> String {
    let mut pairs = vec![
        ("engine", or_none(&speech.engine).to_string()),
        ("voice", or_none(&speech.voice).to_string()),
        (
            "speaking",
            if speech.speaking.is_empty() {
                "no".to_string()
            } else {
                speech.speaking.join(", ")
            },
        ),
        (
            "cache",
            format!(
                "{} clips, {} KiB",
                speech.cache_clips,
                speech.cache_bytes / 1024
            ),
        ),
    ];
    if !speech.problem.is_empty() {
        pairs.push(("problem", speech.problem.clone()));
    }
    if !speech.last_error.is_empty() {
        pairs.push(("last_error", speech.last_error.clone()));
    }
    format!("speech:\n{}", key_values(&pairs, "  "))
}

fn eyes_block(eyes: &EyesStatus) -> String {
    let mut pairs = vec![
        ("port", or_none(&eyes.port).to_string()),
        (
            "connected",
            if eyes.connected {
                "yes"
            } else {
                "no (LOST: reconnecting)"
            }
            .to_string(),
        ),
        ("virtual", yes_no(eyes.r#virtual).to_string()),
        (
            "pattern",
            format!(
                "{}{}",
                or_none(&eyes.pattern),
                if eyes.testing { " (eye test)" } else { "" }
            ),
        ),
        ("brightness", format!("{:.2}", eyes.brightness)),
    ];
    // An empty last error is the normal case; a `-` line would only be noise.
    if !eyes.last_error.is_empty() {
        pairs.push(("last_error", eyes.last_error.clone()));
    }
    format!("eyes:\n{}", key_values(&pairs, "  "))
}

/// The servos' board, then a row per servo (none: a line saying so).
fn servos_block(servos: &ServosStatus, colours: Colours) -> String {
    let mut port = or_none(&servos.port).to_string();
    if servos.channels > 0 {
        port.push_str(&format!(" ({} channels)", servos.channels));
    }
    let mut pairs = vec![
        ("port", port),
        (
            "connected",
            if servos.connected {
                "yes"
            } else {
                "no (LOST: reconnecting)"
            }
            .to_string(),
        ),
        ("virtual", yes_no(servos.r#virtual).to_string()),
    ];
    // Quiet unless there is something to say.
    if !servos.board_errors.is_empty() {
        pairs.push(("board_errors", servos.board_errors.join(", ")));
    }
    if !servos.last_error.is_empty() {
        pairs.push(("last_error", servos.last_error.clone()));
    }
    if servos.servos.is_empty() {
        pairs.push(("servos", "none configured".to_string()));
        return format!("servos:\n{}", key_values(&pairs, "  "));
    }
    let header = [
        "NAME", "CH", "RANGE", "HOME", "TARGET", "POSITION", "MOVING",
    ];
    let mut rows = vec![header.map(Cell::from).to_vec()];
    for servo in &servos.servos {
        let mut moving = yes_no(servo.moving).to_string();
        if !servo.problem.is_empty() {
            moving.push_str(&format!(" ({})", servo.problem));
        }
        rows.push(vec![
            Cell::from(or_none(&servo.name)),
            Cell::from(servo.channel.to_string()),
            Cell::from(format!("{}–{} µs", servo.min_us, servo.max_us)),
            Cell::from(format!("{} µs", servo.home_us)),
            Cell::from(
                servo
                    .target_us
                    .map_or(NONE.to_string(), |t| format!("{} µs", micros(t))),
            ),
            Cell::from(
                servo
                    .position
                    .map_or(NONE.to_string(), |p| format!("{p:.2}")),
            ),
            Cell::from(moving),
        ]);
    }
    format!(
        "servos:\n{}{}",
        key_values(&pairs, "  "),
        table::render(&rows, "  ", colours)
    )
}

/// µs whole, or to the Maestro's quarter.
fn micros(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// The running plans, with the step each is on and how far along it is.
fn plans(plans: &[PlanSummary], colours: Colours) -> String {
    format!("plans:\n{}", plan_text::plans_table(plans, "  ", colours))
}

/// `bus: published=… dropped=…` over the metrics that are there, or nothing
/// when none of them is.
fn bus_line(bus: &prost_types::Struct) -> Option<String> {
    let metrics = cantina::json::struct_to_json(bus);
    let shown: Vec<String> = BUS_KEYS
        .iter()
        .filter_map(|&key| {
            let value = metrics.get(key)?;
            // Numbers and words read as they are; anything nested stays
            // compact JSON rather than being guessed at.
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            Some(format!("{key}={text}"))
        })
        .collect();
    (!shown.is_empty()).then(|| format!("bus: {}\n", shown.join(" ")))
}

/// The open streams against their caps, and what the edge refused:
/// `streams: 3/256 open (per peer 32) refused=0 · failed tokens: 0 ·
/// banned peers: 0 (bans=0 refused conns=0)`.
fn edge_line(edge: &EdgeStatus) -> String {
    format!(
        "streams: {}/{} open (per peer {}) refused={} · failed tokens: {} · \
         banned peers: {} (bans={} refused conns={})\n",
        edge.open_streams,
        edge.max_streams,
        edge.max_streams_per_peer,
        edge.streams_refused,
        edge.auth_failures,
        edge.peers_banned,
        edge.peer_bans,
        edge.connections_refused,
    )
}

/// `key:  value` lines with the values aligned.
fn key_values(pairs: &[(&str, String)], indent: &str) -> String {
    let width = pairs
        .iter()
        .map(|(key, _)| key.len() + 1)
        .max()
        .unwrap_or(0);
    pairs
        .iter()
        .map(|(key, value)| {
            let key = format!("{key}:");
            format!("{indent}{key:<width$}  {value}\n")
        })
        .collect()
}

/// The name of a proto enum value without its prefix (`MODE_IDLE` → `IDLE`),
/// or its number when this build does not know it.
pub fn enum_name<E, Err>(
    known: Result<E, Err>,
    raw: i32,
    name: impl Fn(&E) -> &'static str,
    prefix: &str,
) -> String {
    match known {
        Ok(value) => {
            let name = name(&value);
            name.strip_prefix(prefix).unwrap_or(name).to_string()
        }
        Err(_) => raw.to_string(),
    }
}

/// `text`, or `-` when it is empty.
pub fn or_none(text: &str) -> &str {
    if text.is_empty() { NONE } else { text }
}

fn yes_no(flag: bool) -> &'static str {
    if flag { "yes" } else { "no" }
}

#[cfg(test)]
mod tests {
    use cantina::v1::{Layer, PlanStatus};
    use prost_types::{Duration, Timestamp};

    use super::*;

    fn seconds(seconds: i64) -> Option<Duration> {
        Some(Duration { seconds, nanos: 0 })
    }

    fn subsystem(
        name: &str,
        status: ServiceStatus,
        uptime: i64,
        critical: bool,
        message: &str,
    ) -> SubsystemStatus {
        SubsystemStatus {
            name: name.into(),
            status: status as i32,
            message: message.into(),
            uptime: seconds(uptime),
            critical,
            ..SubsystemStatus::default()
        }
    }

    /// A droid with a lost eyes board: every section filled in.
    fn sample() -> SystemStatus {
        SystemStatus {
            version: "0.1.0".into(),
            uptime: seconds(3723),
            mode: Mode::Ambient as i32,
            session_id: "20261128-153012-4f2a".into(),
            subsystems: vec![
                subsystem("audio", ServiceStatus::Running, 3723, true, ""),
                subsystem(
                    "eyes",
                    ServiceStatus::Degraded,
                    302,
                    false,
                    "serial port /dev/ttyACM0 lost",
                ),
                subsystem("plans", ServiceStatus::Stopped, 0, false, ""),
            ],
            audio: Some(AudioStatus {
                output: "virtual".into(),
                r#virtual: true,
                state: "playing".into(),
                track: "Cantina Band".into(),
                position: seconds(62),
                duration: seconds(164),
                volume: 70,
                ducked: true,
                duck_level: 0.3,
                dj_mode: false,
                connected: true,
                ..AudioStatus::default()
            }),
            eyes: Some(EyesStatus {
                port: "/dev/ttyACM0".into(),
                connected: false,
                r#virtual: false,
                pattern: "happy".into(),
                brightness: 0.8,
                last_error: "write timed out".into(),
                testing: false,
            }),
            speech: None,
            servos: Some(ServosStatus {
                port: "/dev/ttyACM1".into(),
                r#virtual: false,
                connected: true,
                last_error: "the board reported: serial overrun".into(),
                board_errors: vec!["serial overrun".into()],
                channels: 6,
                servos: vec![
                    cantina::v1::ServoStatus {
                        name: "head".into(),
                        channel: 0,
                        min_us: 1000,
                        max_us: 2000,
                        home_us: 1500,
                        target_us: Some(1800.25),
                        position: Some(0.80025),
                        moving: true,
                        ..Default::default()
                    },
                    cantina::v1::ServoStatus {
                        name: "jaw".into(),
                        channel: 3,
                        min_us: 1200,
                        max_us: 1800,
                        home_us: 1200,
                        max_speed: Some(0.5),
                        ..Default::default()
                    },
                ],
            }),
            plans: vec![PlanSummary {
                plan_id: "p-1".into(),
                name: "hello".into(),
                layer: Layer::Foreground as i32,
                status: PlanStatus::Running as i32,
                current_step_id: "wave".into(),
                steps_total: 5,
                steps_done: 2,
                elapsed: Some(Duration {
                    seconds: 12,
                    nanos: 500_000_000,
                }),
                ..PlanSummary::default()
            }],
            started_at: Some(Timestamp {
                seconds: 1_795_879_812,
                nanos: 0,
            }),
            bus: Some(cantina::json::struct_from_json(serde_json::json!({
                "published": 1204,
                "dropped": 2,
                "subscribers": 4,
                "per_topic": {"system.mode.changed": 3},
            }))),
            edge: Some(EdgeStatus {
                open_streams: 3,
                max_streams: 256,
                max_streams_per_peer: 32,
                streams_refused: 7,
                auth_failures: 2,
                stream_peers: 2,
                peers_banned: 1,
                peer_bans: 3,
                connections_refused: 40,
                strikes: 31,
            }),
        }
    }

    #[test]
    fn the_whole_status_reads_as_blocks_and_tables() {
        let expected = "\
Cantina 0.1.0 · session 20261128-153012-4f2a
mode:     AMBIENT
uptime:   1h 2m 3s
started:  2026-11-28T15:30:12Z

NAME   STATUS    UPTIME    CRITICAL  MESSAGE
audio  RUNNING   1h 2m 3s  yes
eyes   DEGRADED  5m 2s     no        serial port /dev/ttyACM0 lost
plans  STOPPED   0s        no

audio:
  output:    virtual
  state:     playing
  track:     Cantina Band
  position:  1m 2s / 2m 44s
  volume:    70
  ducked:    yes (0.30)
  dj_mode:   off

eyes:
  port:        /dev/ttyACM0
  connected:   no (LOST: reconnecting)
  virtual:     no
  pattern:     happy
  brightness:  0.80
  last_error:  write timed out

servos:
  port:          /dev/ttyACM1 (6 channels)
  connected:     yes
  virtual:       no
  board_errors:  serial overrun
  last_error:    the board reported: serial overrun
  NAME  CH  RANGE         HOME     TARGET      POSITION  MOVING
  head  0   1000–2000 µs  1500 µs  1800.25 µs  0.80      yes
  jaw   3   1200–1800 µs  1200 µs  -           -         no

plans:
  ID   NAME   LAYER       STATUS   STEP        ELAPSED  MESSAGE
  p-1  hello  FOREGROUND  RUNNING  wave (2/5)  12.5s

bus: published=1204 dropped=2 subscribers=4

streams: 3/256 open (per peer 32) refused=7 · failed tokens: 2 · banned peers: 1 (bans=3 refused conns=40)
";
        assert_eq!(render(&sample(), Colours::OFF), expected);
    }

    #[test]
    fn only_the_status_cell_is_coloured() {
        let text = render(&sample(), Colours::ON);
        assert!(
            text.contains("\u{1b}[32mRUNNING\u{1b}[0m   1h 2m 3s"),
            "{text}"
        );
        assert!(
            text.contains("\u{1b}[33mDEGRADED\u{1b}[0m  5m 2s"),
            "{text}"
        );
        assert!(text.contains("\u{1b}[2mSTOPPED\u{1b}[0m   0s"), "{text}");
        // The plans table has a STATUS column too, but it is not a subsystem's.
        assert!(text.contains("FOREGROUND  RUNNING  wave"), "{text}");
        let escapes = text.matches('\u{1b}').count();
        assert_eq!(escapes, 6, "{text}");
    }

    #[test]
    fn absent_parts_are_left_out_and_unknown_values_show_as_numbers() {
        let status = SystemStatus {
            mode: 42,
            subsystems: vec![SubsystemStatus {
                name: "logs".into(),
                status: 99,
                ..SubsystemStatus::default()
            }],
            bus: Some(cantina::json::struct_from_json(
                serde_json::json!({"other": 1}),
            )),
            ..SystemStatus::default()
        };
        let expected = "\
Cantina -
mode:     42
uptime:   -
started:  -

NAME  STATUS  UPTIME  CRITICAL  MESSAGE
logs  99      -       no
";
        assert_eq!(render(&status, Colours::ON), expected);

        let empty = render(&SystemStatus::default(), Colours::OFF);
        assert!(empty.contains("mode:     UNSPECIFIED\n"), "{empty}");
        assert!(empty.ends_with("\nsubsystems: none\n"), "{empty}");
    }
}
