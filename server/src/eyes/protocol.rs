//! The eyes' serial protocol as plain data (docs/eyes-protocol.md): pattern names
//! and their firmware glyphs, the brightness mapping, the answers, and which
//! serial port is the eyes' board. No I/O here.

use std::fmt;

/// A pattern the droid's software can ask the eyes for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// Resting (static 3×3 grid).
    Idle,
    /// Booting; the firmware has no glyph of its own, so idle.
    Startup,
    /// Interactive mode (breathing diamond).
    Engaged,
    /// The microphone is open (pulsing intensity).
    Listening,
    /// A reply is being prepared (rotating dot).
    Thinking,
    /// Speech is playing (waveform animation).
    Speaking,
    /// Happy.
    Happy,
    /// Sad.
    Sad,
    /// Angry.
    Angry,
    /// Surprised; shown as happy.
    Surprised,
    /// Something failed; shown as angry.
    Error,
    /// A custom show; the firmware shows idle.
    Custom,
}

impl Pattern {
    /// Every pattern, in the order `help` lists them.
    pub const ALL: [Pattern; 12] = [
        Pattern::Idle,
        Pattern::Startup,
        Pattern::Engaged,
        Pattern::Listening,
        Pattern::Thinking,
        Pattern::Speaking,
        Pattern::Happy,
        Pattern::Sad,
        Pattern::Angry,
        Pattern::Surprised,
        Pattern::Error,
        Pattern::Custom,
    ];

    /// The eight patterns with a glyph of their own: what `eye test` cycles.
    pub const TEST_CYCLE: [Pattern; 8] = [
        Pattern::Idle,
        Pattern::Speaking,
        Pattern::Thinking,
        Pattern::Listening,
        Pattern::Engaged,
        Pattern::Happy,
        Pattern::Sad,
        Pattern::Angry,
    ];

    /// The name people type and see (`happy`).
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::Idle => "idle",
            Pattern::Startup => "startup",
            Pattern::Engaged => "engaged",
            Pattern::Listening => "listening",
            Pattern::Thinking => "thinking",
            Pattern::Speaking => "speaking",
            Pattern::Happy => "happy",
            Pattern::Sad => "sad",
            Pattern::Angry => "angry",
            Pattern::Surprised => "surprised",
            Pattern::Error => "error",
            Pattern::Custom => "custom",
        }
    }

    /// The firmware's command character for this pattern.
    pub fn glyph(self) -> u8 {
        match self {
            Pattern::Idle | Pattern::Startup | Pattern::Custom => b'I',
            Pattern::Speaking => b'S',
            Pattern::Thinking => b'T',
            Pattern::Listening => b'L',
            Pattern::Engaged => b'E',
            Pattern::Happy | Pattern::Surprised => b'H',
            Pattern::Sad => b'D',
            Pattern::Angry | Pattern::Error => b'A',
        }
    }

    /// Reads a pattern name, ignoring case.
    pub fn parse(name: &str) -> Result<Pattern, UnknownPattern> {
        let lower = name.to_ascii_lowercase();
        Pattern::ALL
            .into_iter()
            .find(|p| p.as_str() == lower)
            .ok_or_else(|| UnknownPattern {
                name: name.to_string(),
                closest: Pattern::ALL
                    .into_iter()
                    .map(|p| (strsim::jaro_winkler(&lower, p.as_str()), p))
                    .filter(|(score, _)| *score > 0.75)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, p)| p),
            })
    }

    /// Every pattern name, comma-separated, for messages.
    pub fn names() -> String {
        Pattern::ALL
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A pattern name that does not exist.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown eye pattern '{name}'{}; the patterns are {}", .closest.map(|p| format!(": did you mean '{p}'?")).unwrap_or_default(), Pattern::names())]
pub struct UnknownPattern {
    /// What was asked for.
    pub name: String,
    /// The closest real name, if one is close.
    pub closest: Option<Pattern>,
}

/// The firmware's line speed (8N1).
pub const BAUD: u32 = 115_200;

/// One byte on an 8N1 line (a start bit, eight data bits, a stop bit),
/// rounded up so that pacing by it never beats the wire.
pub fn byte_time(baud: u32) -> std::time::Duration {
    std::time::Duration::from_nanos((10 * 1_000_000_000u64).div_ceil(u64::from(baud)))
}

/// The brightness the eyes start with (as on the original droid).
pub const DEFAULT_BRIGHTNESS: f64 = 0.8;

/// A brightness made valid: clamped to 0.0–1.0, NaN counting as 0.
pub fn clamp_brightness(brightness: f64) -> f64 {
    if brightness.is_nan() {
        0.0
    } else {
        brightness.clamp(0.0, 1.0)
    }
}

/// The firmware's intensity level for 0.0–1.0: `int(b × 9)`, as the old
/// software sent it, clamped.
pub fn brightness_level(brightness: f64) -> u8 {
    (clamp_brightness(brightness) * 9.0) as u8
}

/// The firmware's brightness command: the level's digit.
pub fn brightness_digit(brightness: f64) -> u8 {
    b'0' + brightness_level(brightness)
}

/// Reads a brightness argument: a number from 0.0 to 1.0.
pub fn parse_brightness(text: &str) -> Result<f64, String> {
    let value: f64 = text
        .parse()
        .map_err(|_| format!("'{text}' is not a number; brightness goes from 0.0 to 1.0"))?;
    if !(0.0..=1.0).contains(&value) {
        return Err(format!(
            "brightness {text} is out of range; it goes from 0.0 (off) to 1.0 (full)"
        ));
    }
    Ok(value)
}

/// A character the firmware does not know, sent to synchronise: its `-`
/// answer marks where the answers to our commands begin.
pub const SYNC: u8 = b'?';

/// The bytes of a one-character command: the character and a newline.
pub fn frame(command: u8) -> [u8; 2] {
    [command, b'\n']
}

/// A line from the firmware.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Line {
    /// `+`: done (and, after a reset, "ready").
    Done,
    /// `-`: unknown command.
    Unknown,
    /// Anything else (debug prints of newer firmware); ignored.
    Other(String),
    /// An empty line; ignored.
    Empty,
}

impl Line {
    /// Classifies one line, without its line ending.
    pub fn parse(line: &[u8]) -> Line {
        match line.trim_ascii() {
            b"+" => Line::Done,
            b"-" => Line::Unknown,
            b"" => Line::Empty,
            other => Line::Other(String::from_utf8_lossy(other).into_owned()),
        }
    }
}

/// Splits the incoming byte stream into lines at LF; CR is dropped.
#[derive(Debug, Default)]
pub struct LineSplitter {
    pending: Vec<u8>,
}

/// Longest line kept: firmware debug chatter beyond this is cut.
const MAX_LINE: usize = 256;

impl LineSplitter {
    /// Feeds bytes; calls `line` for each complete line.
    pub fn feed(&mut self, bytes: &[u8], mut line: impl FnMut(Line)) {
        for &b in bytes {
            match b {
                b'\n' => {
                    line(Line::parse(&self.pending));
                    self.pending.clear();
                }
                b'\r' => {}
                _ if self.pending.len() < MAX_LINE => self.pending.push(b),
                _ => {}
            }
        }
    }

    /// Forgets a partial line (after reconnecting).
    pub fn clear(&mut self) {
        self.pending.clear();
    }
}

/// What the port listing says of one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Its path, `/dev/ttyACM0`.
    pub path: String,
    /// USB vendor and product ids, when it is a USB port.
    pub usb: Option<(u16, u16)>,
    /// The USB manufacturer string, when known.
    pub manufacturer: Option<String>,
}

/// USB ids of the boards the eyes are known to use: Arduino (any product),
/// CH340 clones, FTDI adapters.
const KNOWN_BOARDS: [(u16, Option<u16>); 3] = [
    (0x2341, None),
    (0x1A86, Some(0x7523)),
    (0x0403, Some(0x6001)),
];

/// Pololu's USB vendor id: a Maestro servo controller (`servo_port`) is
/// never the eyes, though its ports are `ttyACM*` too. (The servos name it
/// too; the eyes do not import them, which import the eyes' pty.)
const POLOLU_VID: u16 = 0x1FFB;

/// Port names of USB serial adapters.
const BOARD_NAMES: [&str; 3] = ["ttyACM", "ttyUSB", "usbmodem"];

/// Picks the eyes' port as docs/eyes-protocol.md says: known USB ids, then known
/// names, then a manufacturer saying "arduino", then the only port present.
/// Returns the port and why it was chosen. A Pololu board (the servos'
/// Maestro) is never chosen.
///
/// Motherboard UARTs (`/dev/ttyS*`) never count as "the only port": Linux
/// lists them on most PCs and servers whether anything is wired or not, and
/// taking one for the eyes would leave a laptop waiting for a board that
/// does not exist instead of using the virtual eyes.
pub fn choose_port(ports: &[PortInfo]) -> Option<(&PortInfo, &'static str)> {
    let ports: Vec<&PortInfo> = ports
        .iter()
        .filter(|p| p.usb.is_none_or(|(vid, _)| vid != POLOLU_VID))
        .collect();
    let known = |p: &&PortInfo| {
        p.usb.is_some_and(|(vid, pid)| {
            KNOWN_BOARDS
                .iter()
                .any(|(v, want)| *v == vid && want.is_none_or(|w| w == pid))
        })
    };
    let named = |p: &&PortInfo| {
        let name = p.path.rsplit('/').next().unwrap_or(&p.path);
        BOARD_NAMES.iter().any(|n| name.contains(n))
    };
    let arduino = |p: &&PortInfo| {
        p.manufacturer
            .as_deref()
            .is_some_and(|m| m.to_ascii_lowercase().contains("arduino"))
    };
    if let Some(p) = ports.iter().copied().find(known) {
        return Some((p, "a known board's USB id"));
    }
    if let Some(p) = ports.iter().copied().find(named) {
        return Some((p, "a USB serial port name"));
    }
    if let Some(p) = ports.iter().copied().find(arduino) {
        return Some((p, "its manufacturer"));
    }
    let candidates: Vec<&PortInfo> = ports
        .iter()
        .copied()
        .filter(|p| {
            let name = p.path.rsplit('/').next().unwrap_or(&p.path);
            !(name.starts_with("ttyS") && name[4..].chars().all(|c| c.is_ascii_digit()))
        })
        .collect();
    match candidates.as_slice() {
        [only] => Some((only, "the only serial port")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_pattern_has_its_glyph() {
        let glyphs: String = Pattern::ALL.iter().map(|p| p.glyph() as char).collect();
        assert_eq!(glyphs, "IIELTSHDAHAI");
        let cycle: String = Pattern::TEST_CYCLE
            .iter()
            .map(|p| p.glyph() as char)
            .collect();
        assert_eq!(cycle, "ISTLEHDA", "the test shows every glyph once");
    }

    #[test]
    fn names_round_trip_and_ignore_case() {
        for p in Pattern::ALL {
            assert_eq!(Pattern::parse(p.as_str()), Ok(p));
        }
        assert_eq!(Pattern::parse("HAPPY"), Ok(Pattern::Happy));
    }

    #[test]
    fn an_unknown_pattern_suggests_the_closest_and_lists_them_all() {
        let err = Pattern::parse("hapy").unwrap_err();
        assert_eq!(err.closest, Some(Pattern::Happy));
        let text = err.to_string();
        assert!(text.starts_with("unknown eye pattern 'hapy': did you mean 'happy'?"));
        assert!(text.ends_with("surprised, error, custom"), "{text}");
        assert_eq!(Pattern::parse("zzzzzzzz").unwrap_err().closest, None);
    }

    #[test]
    fn brightness_maps_as_the_old_software_did_and_clamps() {
        let digit = |b| brightness_digit(b) as char;
        assert_eq!(digit(0.0), '0');
        assert_eq!(digit(0.8), '7');
        assert_eq!(digit(0.5), '4');
        assert_eq!(digit(1.0), '9');
        assert_eq!(digit(0.999), '8');
        assert_eq!(digit(7.0), '9');
        assert_eq!(digit(-1.0), '0');
        assert_eq!(digit(f64::NAN), '0');
    }

    #[test]
    fn brightness_arguments_are_checked() {
        assert_eq!(parse_brightness("0.25"), Ok(0.25));
        assert_eq!(parse_brightness("1"), Ok(1.0));
        assert!(
            parse_brightness("1.5")
                .unwrap_err()
                .contains("out of range")
        );
        assert!(
            parse_brightness("bright")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(
            parse_brightness("NaN")
                .unwrap_err()
                .contains("out of range")
        );
    }

    #[test]
    fn lines_are_split_at_lf_without_cr() {
        let mut split = LineSplitter::default();
        let mut lines = Vec::new();
        split.feed(b"+\r\n-\r", |l| lines.push(l));
        split.feed(b"\nhello\n\r\n+", |l| lines.push(l));
        assert_eq!(
            lines,
            [
                Line::Done,
                Line::Unknown,
                Line::Other("hello".into()),
                Line::Empty
            ]
        );
        split.feed(b"\n", |l| lines.push(l));
        assert_eq!(lines.last(), Some(&Line::Done));
    }

    fn port(path: &str, usb: Option<(u16, u16)>, manufacturer: Option<&str>) -> PortInfo {
        PortInfo {
            path: path.into(),
            usb,
            manufacturer: manufacturer.map(String::from),
        }
    }

    #[test]
    fn ports_are_chosen_in_the_documented_order() {
        let serial = port("/dev/ttyS0", None, None);
        let acm = port("/dev/ttyACM3", None, None);
        let uno = port("/dev/ttyX1", Some((0x2341, 0x0043)), None);
        let ch340 = port("/dev/ttyX2", Some((0x1a86, 0x7523)), None);
        let other_ch = port("/dev/ttyX3", Some((0x1a86, 0x5523)), None);
        let maker = port("/dev/ttyX4", Some((0x1111, 1)), Some("Arduino LLC"));
        let lone = port("/dev/pts/7", None, None);

        let pick = |ports: &[PortInfo]| choose_port(ports).map(|(p, why)| (p.path.clone(), why));
        assert_eq!(
            pick(&[acm.clone(), uno.clone()]),
            Some(("/dev/ttyX1".into(), "a known board's USB id"))
        );
        assert_eq!(
            pick(&[other_ch.clone(), ch340.clone()]).unwrap().0,
            "/dev/ttyX2"
        );
        assert_eq!(
            pick(&[serial.clone(), maker.clone(), acm.clone()]),
            Some(("/dev/ttyACM3".into(), "a USB serial port name"))
        );
        assert_eq!(
            pick(&[serial.clone(), other_ch.clone(), maker.clone()]),
            Some(("/dev/ttyX4".into(), "its manufacturer"))
        );
        assert_eq!(
            pick(&[serial.clone(), lone.clone()]),
            Some(("/dev/pts/7".into(), "the only serial port"))
        );
        assert_eq!(
            pick(std::slice::from_ref(&serial)),
            None,
            "a motherboard UART is not the eyes"
        );
        assert_eq!(
            pick(&[lone.clone(), other_ch]),
            None,
            "two unknown ports: no guess"
        );
        assert_eq!(pick(&[]), None);
    }

    #[test]
    fn a_pololu_maestro_is_never_the_eyes() {
        // The Maestro's two ports: ttyACM names, Pololu's vendor id.
        let command = port("/dev/ttyACM0", Some((0x1FFB, 0x0089)), Some("Pololu"));
        let ttl = port("/dev/ttyACM1", Some((0x1FFB, 0x0089)), Some("Pololu"));
        let pick = |ports: &[PortInfo]| choose_port(ports).map(|(p, _)| p.path.clone());
        assert_eq!(pick(&[command.clone(), ttl.clone()]), None);
        assert_eq!(pick(std::slice::from_ref(&command)), None, "not even alone");
        let arduino = port("/dev/ttyACM2", None, None);
        assert_eq!(
            pick(&[command, ttl, arduino]),
            Some("/dev/ttyACM2".into()),
            "the ACM port that is not the Maestro's"
        );
    }
}
