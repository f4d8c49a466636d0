//! The Pololu Maestro's compact serial protocol, as plain data (Pololu's
//! Maestro user's guide, "Serial Servo Commands"): what the server sends,
//! how many bytes each answer has, how a board reads the bytes
//! ([`Decoder`], for the board model), the error register's bits, and the
//! units (targets in quarter-microseconds, speeds in quarter-microseconds
//! per 10 ms).
//!
//! A command is a command byte with its high bit set, then data bytes with
//! it clear. Only the queries answer, with raw bytes and no framing: Get
//! Position and Get Errors two (low byte first), Get Moving State one. The
//! answers are matched to the queries in the order they were sent.

use std::{fmt, time::Duration};

/// The line speed of the Maestro's UART and of its virtual COM port (8N1).
pub const BAUD: u32 = 115_200;

/// One byte on an 8N1 line (a start bit, eight data bits, a stop bit),
/// rounded up so that pacing by it never beats the wire.
pub fn byte_time(baud: u32) -> Duration {
    Duration::from_nanos((10 * 1_000_000_000u64).div_ceil(u64::from(baud)))
}

/// Set Target: `0x84, channel, target & 0x7F, (target >> 7) & 0x7F`.
pub const SET_TARGET: u8 = 0x84;
/// Set Speed: `0x87, channel, speed low 7 bits, speed high 7 bits`.
pub const SET_SPEED: u8 = 0x87;
/// Set Acceleration: `0x89, channel, low 7 bits, high 7 bits`.
pub const SET_ACCELERATION: u8 = 0x89;
/// Get Position: `0x90, channel`; answered with 2 bytes, low first.
pub const GET_POSITION: u8 = 0x90;
/// Get Moving State: `0x93`; answered `0x00` (still) or `0x01` (moving).
pub const GET_MOVING_STATE: u8 = 0x93;
/// Get Errors: `0xA1`; answered with 2 bytes, low first, and clears them.
pub const GET_ERRORS: u8 = 0xA1;
/// Go Home: `0xA2`; every channel to the home the board was configured with.
pub const GO_HOME: u8 = 0xA2;

/// The largest target the protocol carries: 14 bits of quarter-microseconds.
pub const MAX_TARGET: u16 = 0x3FFF;
/// The most channels a Maestro has (the Mini Maestro 24).
pub const MAX_CHANNELS: u8 = 24;
/// The largest acceleration the board takes.
pub const MAX_ACCELERATION: u16 = 255;

/// One command of the compact protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// The pulse width to drive, in quarter-microseconds (0: no pulses).
    SetTarget {
        /// The channel.
        channel: u8,
        /// Quarter-microseconds.
        target: u16,
    },
    /// The speed limit, in quarter-microseconds per 10 ms (0: none).
    SetSpeed {
        /// The channel.
        channel: u8,
        /// (0.25 µs)/(10 ms).
        speed: u16,
    },
    /// The acceleration limit, in (0.25 µs)/(10 ms)/(80 ms) (0: none).
    SetAcceleration {
        /// The channel.
        channel: u8,
        /// 0–255.
        acceleration: u16,
    },
    /// Where the channel's output is now (2-byte answer).
    GetPosition {
        /// The channel.
        channel: u8,
    },
    /// Whether any output is still on its way to its target (1-byte answer).
    GetMovingState,
    /// The error register, cleared by reading (2-byte answer).
    GetErrors,
    /// Every channel to its configured home.
    GoHome,
}

impl Command {
    /// The command's bytes.
    pub fn encode(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4);
        self.encode_into(&mut out);
        out
    }

    /// Appends the command's bytes to `out`.
    pub fn encode_into(self, out: &mut Vec<u8>) {
        let two = |out: &mut Vec<u8>, code: u8, channel: u8, value: u16| {
            out.extend_from_slice(&[
                code,
                channel & 0x7F,
                (value & 0x7F) as u8,
                ((value >> 7) & 0x7F) as u8,
            ]);
        };
        match self {
            Command::SetTarget { channel, target } => two(out, SET_TARGET, channel, target),
            Command::SetSpeed { channel, speed } => two(out, SET_SPEED, channel, speed),
            Command::SetAcceleration {
                channel,
                acceleration,
            } => two(out, SET_ACCELERATION, channel, acceleration),
            Command::GetPosition { channel } => out.extend_from_slice(&[GET_POSITION, channel]),
            Command::GetMovingState => out.push(GET_MOVING_STATE),
            Command::GetErrors => out.push(GET_ERRORS),
            Command::GoHome => out.push(GO_HOME),
        }
    }

    /// How many bytes the board answers with.
    pub fn answer_len(self) -> usize {
        match self {
            Command::GetPosition { .. } | Command::GetErrors => 2,
            Command::GetMovingState => 1,
            _ => 0,
        }
    }

    /// The channel the command is about, if any.
    pub fn channel(self) -> Option<u8> {
        match self {
            Command::SetTarget { channel, .. }
            | Command::SetSpeed { channel, .. }
            | Command::SetAcceleration { channel, .. }
            | Command::GetPosition { channel } => Some(channel),
            _ => None,
        }
    }

    /// The command's name in the user's guide.
    pub fn name(self) -> &'static str {
        match self {
            Command::SetTarget { .. } => "Set Target",
            Command::SetSpeed { .. } => "Set Speed",
            Command::SetAcceleration { .. } => "Set Acceleration",
            Command::GetPosition { .. } => "Get Position",
            Command::GetMovingState => "Get Moving State",
            Command::GetErrors => "Get Errors",
            Command::GoHome => "Go Home",
        }
    }
}

/// A two-byte answer (low byte first) as its value.
pub fn decode_u16(answer: [u8; 2]) -> u16 {
    u16::from_le_bytes(answer)
}

/// The value of a query's answer, however many bytes it has: two (low byte
/// first) for Get Position and Get Errors, one for Get Moving State; 0 for
/// anything else (no query is answered so).
pub fn answer_value(answer: &[u8]) -> u16 {
    match answer {
        [low, high] => decode_u16([*low, *high]),
        [one] => u16::from(*one),
        _ => 0,
    }
}

/// How a board reads the byte stream: one command at a time, data bytes
/// after their command byte. What does not fit is a serial protocol error,
/// as the Maestro counts it.
#[derive(Clone, Debug, Default)]
pub struct Decoder {
    /// The command byte and the data bytes so far.
    partial: Vec<u8>,
}

/// Why a byte did not make a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Malformed {
    /// A byte with the high bit set that is no command.
    UnknownCommand(u8),
    /// A data byte with no command before it.
    StrayData(u8),
    /// A command byte came before the previous command was complete; the
    /// incomplete one is dropped.
    Interrupted(u8),
}

/// What one byte did: completed a command, broke one, or both (a command
/// byte that cuts the one before short and is complete by itself).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fed {
    /// What did not make a command.
    pub malformed: Option<Malformed>,
    /// The command completed.
    pub command: Option<Command>,
}

impl Decoder {
    /// Takes one byte.
    pub fn feed(&mut self, byte: u8) -> Fed {
        let mut fed = Fed::default();
        if byte & 0x80 != 0 {
            if let Some(&code) = self.partial.first() {
                fed.malformed = Some(Malformed::Interrupted(code));
            }
            self.partial.clear();
            if data_len(byte).is_none() {
                fed.malformed = Some(Malformed::UnknownCommand(byte));
                return fed;
            }
            self.partial.push(byte);
        } else {
            if self.partial.is_empty() {
                fed.malformed = Some(Malformed::StrayData(byte));
                return fed;
            }
            self.partial.push(byte);
        }
        fed.command = self.complete();
        fed
    }

    /// The command in `partial` once all its bytes are in.
    fn complete(&mut self) -> Option<Command> {
        let code = *self.partial.first()?;
        let need = data_len(code)?;
        if self.partial.len() < 1 + need {
            return None;
        }
        let bytes = std::mem::take(&mut self.partial);
        let channel = bytes.get(1).copied().unwrap_or(0);
        let value = || u16::from(bytes[2]) | (u16::from(bytes[3]) << 7);
        Some(match code {
            SET_TARGET => Command::SetTarget {
                channel,
                target: value(),
            },
            SET_SPEED => Command::SetSpeed {
                channel,
                speed: value(),
            },
            SET_ACCELERATION => Command::SetAcceleration {
                channel,
                acceleration: value(),
            },
            GET_POSITION => Command::GetPosition { channel },
            GET_MOVING_STATE => Command::GetMovingState,
            GET_ERRORS => Command::GetErrors,
            _ => Command::GoHome,
        })
    }

    /// Forgets an incomplete command.
    pub fn clear(&mut self) {
        self.partial.clear();
    }
}

/// The data bytes after a command byte; `None` for unknown commands.
fn data_len(code: u8) -> Option<usize> {
    match code {
        SET_TARGET | SET_SPEED | SET_ACCELERATION => Some(3),
        GET_POSITION => Some(1),
        GET_MOVING_STATE | GET_ERRORS | GO_HOME => Some(0),
        _ => None,
    }
}

/// The Maestro's error register (user's guide, "Errors"), as Get Errors
/// answers it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Errors(pub u16);

impl Errors {
    /// A bad stop bit: wrong baud rate, or noise on the line.
    pub const SERIAL_SIGNAL: u16 = 1 << 0;
    /// The UART got a byte before it had read the one before.
    pub const SERIAL_OVERRUN: u16 = 1 << 1;
    /// The receive buffer filled up.
    pub const SERIAL_BUFFER_FULL: u16 = 1 << 2;
    /// A CRC byte did not match (only with CRC enabled).
    pub const SERIAL_CRC: u16 = 1 << 3;
    /// A malformed or unknown command, or a channel beyond the board's.
    pub const SERIAL_PROTOCOL: u16 = 1 << 4;
    /// The serial timeout setting ran out without a command.
    pub const SERIAL_TIMEOUT: u16 = 1 << 5;
    /// The board's script overflowed its data stack.
    pub const SCRIPT_STACK: u16 = 1 << 6;
    /// The board's script overflowed its call stack.
    pub const SCRIPT_CALL_STACK: u16 = 1 << 7;
    /// The board's script jumped outside its program.
    pub const SCRIPT_PROGRAM_COUNTER: u16 = 1 << 8;

    const NAMES: [(u16, &'static str); 9] = [
        (Self::SERIAL_SIGNAL, "serial signal error"),
        (Self::SERIAL_OVERRUN, "serial overrun"),
        (Self::SERIAL_BUFFER_FULL, "serial receive buffer full"),
        (Self::SERIAL_CRC, "serial CRC error"),
        (Self::SERIAL_PROTOCOL, "bad command (serial protocol error)"),
        (Self::SERIAL_TIMEOUT, "serial timeout"),
        (Self::SCRIPT_STACK, "script stack error"),
        (Self::SCRIPT_CALL_STACK, "script call stack error"),
        (Self::SCRIPT_PROGRAM_COUNTER, "script program counter error"),
    ];

    /// Whether no error is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The names of the errors set, in bit order (unknown bits by number).
    pub fn names(self) -> Vec<String> {
        let mut names: Vec<String> = Self::NAMES
            .iter()
            .filter(|(bit, _)| self.0 & bit != 0)
            .map(|(_, name)| (*name).to_string())
            .collect();
        for bit in 9..16 {
            if self.0 & (1 << bit) != 0 {
                names.push(format!("error bit {bit}"));
            }
        }
        names
    }
}

impl fmt::Display for Errors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("no errors");
        }
        f.write_str(&self.names().join(", "))
    }
}

/// Microseconds as the protocol's quarter-microseconds, rounded and kept
/// within what it carries.
pub fn quarters(us: f64) -> u16 {
    if us.is_nan() {
        return 0;
    }
    (us * 4.0).round().clamp(0.0, f64::from(MAX_TARGET)) as u16
}

/// Quarter-microseconds as microseconds.
pub fn micros(quarters: u16) -> f64 {
    f64::from(quarters) / 4.0
}

/// One unit of the board's speed limit, (0.25 µs)/(10 ms), in quarter-µs
/// a second: the slowest it can pace an output.
pub const SPEED_UNIT_PER_S: f64 = 100.0;

/// The board's speed unit, (0.25 µs)/(10 ms), for a speed in
/// quarter-microseconds per second: rounded up (so that the board never
/// holds back a move the host keeps within the speed), at least 1 (the
/// configuration refuses a `max_speed` below one unit).
pub fn speed_units(quarters_per_s: f64) -> u16 {
    if !quarters_per_s.is_finite() || quarters_per_s <= 0.0 {
        return 0;
    }
    (quarters_per_s / SPEED_UNIT_PER_S)
        .ceil()
        .clamp(1.0, f64::from(MAX_TARGET)) as u16
}

/// Pololu's USB vendor id.
pub const POLOLU_VID: u16 = 0x1FFB;

/// The channel count of a Maestro by its USB ids: Micro Maestro 6, Mini
/// Maestro 12, 18 and 24.
pub fn channels_of(vid: u16, pid: u16) -> Option<u8> {
    if vid != POLOLU_VID {
        return None;
    }
    match pid {
        0x0089 => Some(6),
        0x008A => Some(12),
        0x008B => Some(18),
        0x008C => Some(24),
        _ => None,
    }
}

/// What the port listing says of one port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortInfo {
    /// Its path, `/dev/ttyACM0`.
    pub path: String,
    /// USB vendor and product ids, when it is a USB port.
    pub usb: Option<(u16, u16)>,
}

/// The Maestro's Command Port among the ports present, and its channel
/// count. A Maestro shows two ports, the Command Port first and the TTL
/// Port second, so of a Maestro's ports the first by name is taken
/// (`ttyACM0` before `ttyACM1`, numbers compared as numbers).
pub fn choose_port(ports: &[PortInfo]) -> Option<(&PortInfo, u8)> {
    let mut maestros: Vec<(&PortInfo, u8)> = ports
        .iter()
        .filter_map(|p| {
            let (vid, pid) = p.usb?;
            Some((p, channels_of(vid, pid)?))
        })
        .collect();
    maestros.sort_by_key(|(p, _)| natural_key(&p.path));
    maestros.into_iter().next()
}

/// `ttyACM10` after `ttyACM9`: the text, then the trailing number.
fn natural_key(path: &str) -> (String, u64) {
    let digits = path.len() - path.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    let (text, number) = path.split_at(path.len() - digits);
    (text.to_string(), number.parse().unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_target_is_the_guides_example() {
        // The guide: channel 2 to 1500 µs is 0x84, 0x02, 0x70, 0x2E.
        let bytes = Command::SetTarget {
            channel: 2,
            target: quarters(1500.0),
        }
        .encode();
        assert_eq!(bytes, [0x84, 0x02, 0x70, 0x2E]);
        // And channel 0 of the compact protocol's own example.
        assert_eq!(
            Command::SetTarget {
                channel: 0,
                target: 6000
            }
            .encode(),
            [0x84, 0x00, 0x70, 0x2E]
        );
    }

    #[test]
    fn every_command_has_its_bytes() {
        // The guide's Set Speed example: channel 5 to 140.
        assert_eq!(
            Command::SetSpeed {
                channel: 5,
                speed: 140
            }
            .encode(),
            [0x87, 0x05, 0x0C, 0x01]
        );
        assert_eq!(
            Command::SetAcceleration {
                channel: 1,
                acceleration: 255
            }
            .encode(),
            [0x89, 0x01, 0x7F, 0x01]
        );
        assert_eq!(Command::GetPosition { channel: 23 }.encode(), [0x90, 0x17]);
        assert_eq!(Command::GetMovingState.encode(), [0x93]);
        assert_eq!(Command::GetErrors.encode(), [0xA1]);
        assert_eq!(Command::GoHome.encode(), [0xA2]);
        assert_eq!(Command::GetPosition { channel: 0 }.answer_len(), 2);
        assert_eq!(Command::GetErrors.answer_len(), 2);
        assert_eq!(Command::GetMovingState.answer_len(), 1);
        assert_eq!(
            Command::SetTarget {
                channel: 0,
                target: 0
            }
            .answer_len(),
            0
        );
        // The largest target keeps 14 bits; data bytes never have the high bit.
        let max = Command::SetTarget {
            channel: 0,
            target: MAX_TARGET,
        }
        .encode();
        assert_eq!(max, [0x84, 0x00, 0x7F, 0x7F]);
    }

    #[test]
    fn the_decoder_reads_back_what_is_encoded() {
        let commands = [
            Command::SetTarget {
                channel: 3,
                target: 4000,
            },
            Command::SetSpeed {
                channel: 4,
                speed: 20,
            },
            Command::SetAcceleration {
                channel: 5,
                acceleration: 0,
            },
            Command::GetPosition { channel: 6 },
            Command::GetMovingState,
            Command::GetErrors,
            Command::GoHome,
        ];
        let mut decoder = Decoder::default();
        let mut decoded = Vec::new();
        for command in commands {
            for byte in command.encode() {
                let fed = decoder.feed(byte);
                assert_eq!(fed.malformed, None);
                decoded.extend(fed.command);
            }
        }
        assert_eq!(decoded, commands);
    }

    #[test]
    fn the_decoder_reports_malformed_input() {
        let mut decoder = Decoder::default();
        let bad = |m| Fed {
            malformed: Some(m),
            command: None,
        };
        assert_eq!(decoder.feed(0x05), bad(Malformed::StrayData(0x05)));
        assert_eq!(decoder.feed(0xFF), bad(Malformed::UnknownCommand(0xFF)));
        // An incomplete Set Target cut short by Get Errors: the error counted
        // and the new command taken.
        assert_eq!(decoder.feed(0x84), Fed::default());
        assert_eq!(decoder.feed(0x01), Fed::default());
        assert_eq!(
            decoder.feed(0xA1),
            Fed {
                malformed: Some(Malformed::Interrupted(0x84)),
                command: Some(Command::GetErrors)
            }
        );
        assert_eq!(decoder.feed(0x84), Fed::default());
        assert_eq!(decoder.feed(0x90), bad(Malformed::Interrupted(0x84)));
        assert_eq!(
            decoder.feed(0x02).command,
            Some(Command::GetPosition { channel: 2 })
        );
    }

    #[test]
    fn errors_have_names() {
        assert_eq!(Errors(0).to_string(), "no errors");
        let errors = Errors(Errors::SERIAL_OVERRUN | Errors::SERIAL_PROTOCOL | 1 << 12);
        assert_eq!(
            errors.names(),
            [
                "serial overrun",
                "bad command (serial protocol error)",
                "error bit 12"
            ]
        );
        assert_eq!(decode_u16([0x12, 0x00]), 0x12);
        assert_eq!(decode_u16([0x70, 0x17]), 6000);
    }

    #[test]
    fn units() {
        assert_eq!(quarters(1500.0), 6000);
        assert_eq!(quarters(1000.1), 4000);
        assert_eq!(quarters(-5.0), 0);
        assert_eq!(quarters(1e9), MAX_TARGET);
        assert_eq!(micros(6001), 1500.25);
        // 0.5 of a 1000 µs range per second: 2000 quarters/s = 20 units
        // of (0.25 µs)/(10 ms).
        assert_eq!(speed_units(2000.0), 20);
        assert_eq!(speed_units(2001.0), 21, "rounded up");
        assert_eq!(speed_units(1.0), 1);
        assert_eq!(speed_units(0.0), 0);
        assert_eq!(byte_time(BAUD), Duration::from_nanos(86_806));
    }

    #[test]
    fn the_maestros_command_port_is_chosen() {
        let port = |path: &str, usb: Option<(u16, u16)>| PortInfo {
            path: path.into(),
            usb,
        };
        let ports = [
            port("/dev/ttyS0", None),
            port("/dev/ttyACM0", Some((0x2341, 0x0043))),
            port("/dev/ttyACM10", Some((POLOLU_VID, 0x008A))),
            port("/dev/ttyACM9", Some((POLOLU_VID, 0x008A))),
        ];
        let (chosen, channels) = choose_port(&ports).unwrap();
        assert_eq!((chosen.path.as_str(), channels), ("/dev/ttyACM9", 12));
        assert!(choose_port(&ports[..2]).is_none(), "no Maestro, no port");
        assert_eq!(channels_of(POLOLU_VID, 0x0089), Some(6));
        assert_eq!(channels_of(POLOLU_VID, 0x008C), Some(24));
        assert_eq!(channels_of(0x2341, 0x0089), None);
    }
}
