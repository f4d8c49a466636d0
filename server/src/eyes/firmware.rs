//! A pure model of the Arduino eyes firmware: bytes in, answers out, no I/O.
//!
//! The firmware already flashed on the droids' Arduinos (the eyes serial protocol:
//! 115200 baud 8N1, one-character commands) reads one byte at a time and answers every command character with a line: `+` when it knows
//! the command, `-` when it does not. CR and LF are separators it skips without
//! answering, so `H\n` and `H\r\n` both produce exactly one answer. This model is what
//! the simulated board (`eyes::sim`, with the `testkit` feature) and the in-process test links run, so the
//! server's protocol code can be checked against the firmware's behaviour without a
//! board on the desk.

/// The boot line: printed once when the board has finished resetting and listens.
///
/// The firmware prints lines with Arduino's `println`, which ends them with CR LF.
pub const READY: &[u8] = b"+\r\n";
/// The answer to a command the firmware knows and has applied.
pub const DONE: &[u8] = b"+\r\n";
/// The answer to a byte the firmware does not know as a command.
pub const UNKNOWN: &[u8] = b"-\r\n";
/// The MAX7219 intensity after boot and after `R`.
pub const DEFAULT_INTENSITY: u8 = 8;

/// The glyph shown after boot and after `R`: idle.
const IDLE: char = 'I';

/// The firmware's state: which pattern the matrices show and how bright.
///
/// Only what the serial protocol can observe or change is modelled; the animation
/// frames themselves live on the board and never cross the wire.
#[derive(Clone, Debug)]
pub struct Firmware {
    /// The current pattern, as its command character (`I`, `S`, `T`, …).
    glyph: char,
    /// The raw MAX7219 intensity (the protocol can set 0–9).
    intensity: u8,
    /// Command characters to refuse as if this firmware version lacked them.
    rejected: String,
}

impl Default for Firmware {
    fn default() -> Self {
        Self::new()
    }
}

impl Firmware {
    /// A freshly booted board: idle glyph, default intensity, every command known.
    pub fn new() -> Self {
        Self {
            glyph: IDLE,
            intensity: DEFAULT_INTENSITY,
            rejected: String::new(),
        }
    }

    /// Feeds one received byte and returns the line the firmware prints in answer.
    ///
    /// CR and LF are ignored (`None`). A known command character (`I S T L E H D A R`,
    /// digits `0`–`9`) is applied and answered [`DONE`]; any other byte, lowercase
    /// letters included, is answered [`UNKNOWN`] and changes nothing. `R` restores the
    /// default intensity and then the idle glyph; a digit sets the intensity to its
    /// value, leaving the glyph alone.
    pub fn receive(&mut self, byte: u8) -> Option<&'static [u8]> {
        if matches!(byte, b'\r' | b'\n') {
            return None;
        }
        // Compared as a char so `set_rejected` can take ordinary text; non-ASCII bytes
        // are unknown commands anyway, whatever they map to.
        if self.rejected.contains(char::from(byte)) {
            return Some(UNKNOWN);
        }
        match byte {
            b'I' | b'S' | b'T' | b'L' | b'E' | b'H' | b'D' | b'A' => {
                self.glyph = char::from(byte);
            }
            b'R' => {
                self.intensity = DEFAULT_INTENSITY;
                self.glyph = IDLE;
            }
            b'0'..=b'9' => self.intensity = byte - b'0',
            _ => return Some(UNKNOWN),
        }
        Some(DONE)
    }

    /// The pattern currently shown, as its command character (e.g. `'H'` for happy).
    pub fn glyph(&self) -> char {
        self.glyph
    }

    /// The current raw intensity (0–9 once set over the wire, 8 after boot).
    pub fn intensity(&self) -> u8 {
        self.intensity
    }

    /// Test hook: answer `-` to these command characters, without applying them, as an
    /// older or different firmware that lacks them would. An empty string restores
    /// normal behaviour. CR and LF stay ignored whatever is listed here.
    pub fn set_rejected(&mut self, chars: &str) {
        self.rejected = chars.to_owned();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds every byte and concatenates the answers, as they would appear on the wire.
    fn feed(firmware: &mut Firmware, input: &[u8]) -> Vec<u8> {
        input
            .iter()
            .filter_map(|&b| firmware.receive(b))
            .flatten()
            .copied()
            .collect()
    }

    #[test]
    fn boots_idle_at_default_intensity() {
        let firmware = Firmware::new();
        assert_eq!(firmware.glyph(), 'I');
        assert_eq!(firmware.intensity(), DEFAULT_INTENSITY);
        assert_eq!(Firmware::default().glyph(), 'I');
    }

    #[test]
    fn answers_are_crlf_lines() {
        assert_eq!(READY, b"+\r\n");
        assert_eq!(DONE, b"+\r\n");
        assert_eq!(UNKNOWN, b"-\r\n");
    }

    #[test]
    fn every_pattern_command_sets_its_glyph() {
        let mut firmware = Firmware::new();
        for glyph in ['S', 'T', 'L', 'E', 'H', 'D', 'A', 'I'] {
            assert_eq!(firmware.receive(glyph as u8), Some(DONE), "{glyph}");
            assert_eq!(firmware.glyph(), glyph);
            assert_eq!(firmware.intensity(), DEFAULT_INTENSITY);
        }
    }

    #[test]
    fn digits_set_raw_intensity_and_keep_the_glyph() {
        let mut firmware = Firmware::new();
        firmware.receive(b'S');
        for digit in 0..=9u8 {
            assert_eq!(firmware.receive(b'0' + digit), Some(DONE));
            assert_eq!(firmware.intensity(), digit);
            assert_eq!(firmware.glyph(), 'S');
        }
    }

    #[test]
    fn reset_restores_intensity_then_idle() {
        let mut firmware = Firmware::new();
        feed(&mut firmware, b"A\n3\n");
        assert_eq!((firmware.glyph(), firmware.intensity()), ('A', 3));
        assert_eq!(firmware.receive(b'R'), Some(DONE));
        assert_eq!((firmware.glyph(), firmware.intensity()), ('I', 8));
    }

    #[test]
    fn cr_and_lf_are_ignored_without_answer() {
        let mut firmware = Firmware::new();
        assert_eq!(firmware.receive(b'\r'), None);
        assert_eq!(firmware.receive(b'\n'), None);
        // One answer per command whatever the line ending.
        assert_eq!(feed(&mut firmware, b"H\n"), b"+\r\n");
        assert_eq!(feed(&mut firmware, b"D\r\n"), b"+\r\n");
        assert_eq!(feed(&mut firmware, b"\r\n\n"), b"");
        assert_eq!(firmware.glyph(), 'D');
    }

    #[test]
    fn unknown_bytes_are_answered_minus_and_change_nothing() {
        let mut firmware = Firmware::new();
        feed(&mut firmware, b"T\n5\n");
        for byte in [b'Q', b'h', b' ', 0, 0x7f, 0xff, b'+', b'-'] {
            assert_eq!(firmware.receive(byte), Some(UNKNOWN), "{byte:#04x}");
        }
        assert_eq!((firmware.glyph(), firmware.intensity()), ('T', 5));
    }

    #[test]
    fn a_stream_of_commands_gets_one_answer_each_in_order() {
        let mut firmware = Firmware::new();
        assert_eq!(
            feed(&mut firmware, b"S\n7\nX\nL\n"),
            b"+\r\n+\r\n-\r\n+\r\n"
        );
        assert_eq!((firmware.glyph(), firmware.intensity()), ('L', 7));
    }

    #[test]
    fn rejected_commands_answer_minus_without_applying() {
        let mut firmware = Firmware::new();
        firmware.set_rejected("H9");
        assert_eq!(firmware.receive(b'H'), Some(UNKNOWN));
        assert_eq!(firmware.receive(b'9'), Some(UNKNOWN));
        assert_eq!((firmware.glyph(), firmware.intensity()), ('I', 8));
        // Others still work, and separators stay silent.
        assert_eq!(firmware.receive(b'S'), Some(DONE));
        assert_eq!(firmware.receive(b'\n'), None);
        firmware.set_rejected("");
        assert_eq!(firmware.receive(b'H'), Some(DONE));
        assert_eq!(firmware.glyph(), 'H');
    }

    #[test]
    fn rejecting_separators_does_not_make_them_answer() {
        let mut firmware = Firmware::new();
        firmware.set_rejected("\r\n");
        assert_eq!(firmware.receive(b'\n'), None);
        assert_eq!(firmware.receive(b'\r'), None);
    }

    #[test]
    fn clones_are_independent() {
        let mut firmware = Firmware::new();
        let snapshot = firmware.clone();
        firmware.receive(b'A');
        assert_eq!(snapshot.glyph(), 'I');
        assert_eq!(firmware.glyph(), 'A');
    }
}
