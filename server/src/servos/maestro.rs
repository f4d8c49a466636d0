//! A pure model of a Pololu Maestro as its serial protocol sees it: bytes
//! in, answers out, no I/O. The virtual board inside the server and the
//! simulated board on a pseudo-terminal (`servos::sim`, testkit only) both
//! run it.
//!
//! What is modelled: each channel's target, speed and acceleration limits,
//! and where its output is. An output follows its target at the speed limit
//! (quarter-microseconds per 10 ms, continuously rather than in the board's
//! 10 ms steps), or at once without one, or when it was off (target 0) —
//! as the board does, a channel's first pulse is not speed-limited. The
//! acceleration limit is kept and reported but not modelled (the server
//! sets it to 0). Malformed commands and channels beyond the board's count
//! set the serial protocol error, which Get Errors reads and clears. Any
//! error sends every output home, as the real board does: its home
//! setting is "off" by default, so the outputs go off (the client must set
//! them again). Go Home turns every output off too.

use std::time::Instant;

use super::protocol::{self, Command, Decoder, Errors};

/// One channel of the board.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Channel {
    /// Quarter-microseconds (0: off).
    pub target: u16,
    /// Where the output is, in quarter-microseconds.
    pub position: f64,
    /// (0.25 µs)/(10 ms); 0: unlimited.
    pub speed: u16,
    /// Kept, not modelled.
    pub acceleration: u16,
}

/// What one byte did on the board.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receipt {
    /// The command the byte completed, if any (even when refused for its
    /// channel, which sets the protocol error).
    pub command: Option<Command>,
    /// The bytes the board answers with.
    pub answer: Vec<u8>,
    /// Whether the byte set an error.
    pub error: bool,
}

/// The board's state.
#[derive(Clone, Debug)]
pub struct Maestro {
    channels: Vec<Channel>,
    decoder: Decoder,
    errors: u16,
    /// When the outputs were last brought up to date.
    updated: Instant,
}

impl Maestro {
    /// A board of `channels` channels (1–24), every output off.
    pub fn new(channels: u8, now: Instant) -> Self {
        let count = channels.clamp(1, protocol::MAX_CHANNELS);
        Self {
            channels: vec![Channel::default(); usize::from(count)],
            decoder: Decoder::default(),
            errors: 0,
            updated: now,
        }
    }

    /// How many channels the board has.
    pub fn count(&self) -> u8 {
        self.channels.len() as u8
    }

    /// Takes one byte that arrived at `now`.
    pub fn receive(&mut self, byte: u8, now: Instant) -> Receipt {
        self.advance(now);
        let fed = self.decoder.feed(byte);
        let mut receipt = Receipt {
            command: fed.command,
            ..Receipt::default()
        };
        if fed.malformed.is_some() {
            self.fail(Errors::SERIAL_PROTOCOL);
            receipt.error = true;
        }
        let Some(command) = fed.command else {
            return receipt;
        };
        if let Some(channel) = command.channel()
            && usize::from(channel) >= self.channels.len()
        {
            // The board ignores it and says so in its error register; a
            // query about it is not answered.
            self.fail(Errors::SERIAL_PROTOCOL);
            receipt.error = true;
            return receipt;
        }
        match command {
            Command::SetTarget { channel, target } => {
                let ch = &mut self.channels[usize::from(channel)];
                ch.target = target;
                if ch.speed == 0 || ch.position == 0.0 || target == 0 {
                    ch.position = f64::from(target);
                }
            }
            Command::SetSpeed { channel, speed } => {
                self.channels[usize::from(channel)].speed = speed;
            }
            Command::SetAcceleration {
                channel,
                acceleration,
            } => {
                self.channels[usize::from(channel)].acceleration =
                    acceleration.min(protocol::MAX_ACCELERATION);
            }
            Command::GetPosition { channel } => {
                let position = self.position(channel);
                receipt.answer = position.to_le_bytes().to_vec();
            }
            Command::GetMovingState => receipt.answer = vec![u8::from(self.moving())],
            Command::GetErrors => {
                receipt.answer = self.errors.to_le_bytes().to_vec();
                self.errors = 0;
            }
            Command::GoHome => self.home(),
        }
        receipt
    }

    /// Sets error bits: on any error the board sends every output home
    /// (off, its default home setting).
    fn fail(&mut self, errors: u16) {
        self.errors |= errors;
        self.home();
    }

    /// Every output off.
    fn home(&mut self) {
        for ch in &mut self.channels {
            ch.target = 0;
            ch.position = 0.0;
        }
    }

    /// Brings the outputs up to `now`.
    pub fn advance(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.updated = self.updated.max(now);
        if elapsed == 0.0 {
            return;
        }
        for ch in &mut self.channels {
            let target = f64::from(ch.target);
            if ch.speed == 0 || ch.position == target {
                ch.position = target;
                continue;
            }
            // speed quarter-µs per 10 ms.
            let step = f64::from(ch.speed) * 100.0 * elapsed;
            let gap = target - ch.position;
            ch.position = if gap.abs() <= step {
                target
            } else {
                ch.position + step.copysign(gap)
            };
        }
    }

    /// Where a channel's output is, as Get Position answers (quarter-µs).
    pub fn position(&self, channel: u8) -> u16 {
        self.channels
            .get(usize::from(channel))
            .map_or(0, |ch| ch.position.round() as u16)
    }

    /// Whether any output is still on its way to its target.
    pub fn moving(&self) -> bool {
        self.channels
            .iter()
            .any(|ch| (ch.position - f64::from(ch.target)).abs() >= 0.5)
    }

    /// One channel's state.
    pub fn channel(&self, channel: u8) -> Option<Channel> {
        self.channels.get(usize::from(channel)).copied()
    }

    /// The error register, not cleared.
    pub fn errors(&self) -> Errors {
        Errors(self.errors)
    }

    /// Sets error bits, as line trouble would (for tests); like any error,
    /// it sends every output home (off).
    pub fn raise(&mut self, errors: u16) {
        if errors != 0 {
            self.fail(errors);
        }
    }

    /// Forgets an incomplete command (the line was closed mid-command).
    pub fn clear_partial(&mut self) {
        self.decoder.clear();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn feed(board: &mut Maestro, command: Command, now: Instant) -> Vec<u8> {
        let mut answer = Vec::new();
        for byte in command.encode() {
            answer.extend(board.receive(byte, now).answer);
        }
        answer
    }

    #[test]
    fn targets_are_applied_and_positions_answered() {
        let t0 = Instant::now();
        let mut board = Maestro::new(6, t0);
        assert_eq!(
            feed(&mut board, Command::GetPosition { channel: 0 }, t0),
            [0, 0]
        );
        let set = Command::SetTarget {
            channel: 0,
            target: 6000,
        };
        assert!(
            feed(&mut board, set, t0).is_empty(),
            "Set Target is not answered"
        );
        assert_eq!(
            feed(&mut board, Command::GetPosition { channel: 0 }, t0),
            [0x70, 0x17]
        );
        assert_eq!(feed(&mut board, Command::GetMovingState, t0), [0]);
        assert_eq!(feed(&mut board, Command::GetErrors, t0), [0, 0]);
    }

    #[test]
    fn the_speed_limit_paces_the_output() {
        let t0 = Instant::now();
        let mut board = Maestro::new(6, t0);
        feed(
            &mut board,
            Command::SetTarget {
                channel: 1,
                target: 4000,
            },
            t0,
        );
        // 20 units: 2000 quarter-µs per second.
        feed(
            &mut board,
            Command::SetSpeed {
                channel: 1,
                speed: 20,
            },
            t0,
        );
        feed(
            &mut board,
            Command::SetTarget {
                channel: 1,
                target: 8000,
            },
            t0,
        );
        assert_eq!(feed(&mut board, Command::GetMovingState, t0), [1]);
        let half = t0 + Duration::from_secs(1);
        assert_eq!(
            feed(&mut board, Command::GetPosition { channel: 1 }, half),
            6000u16.to_le_bytes()
        );
        let done = t0 + Duration::from_secs(3);
        assert_eq!(
            feed(&mut board, Command::GetPosition { channel: 1 }, done),
            8000u16.to_le_bytes()
        );
        assert_eq!(feed(&mut board, Command::GetMovingState, done), [0]);
    }

    #[test]
    fn bad_commands_and_channels_set_the_protocol_error() {
        let t0 = Instant::now();
        let mut board = Maestro::new(6, t0);
        assert!(board.receive(0x7F, t0).error, "a stray data byte");
        let beyond = Command::SetTarget {
            channel: 6,
            target: 6000,
        };
        assert!(feed(&mut board, beyond, t0).is_empty());
        assert_eq!(board.channel(6), None);
        assert!(
            feed(&mut board, Command::GetPosition { channel: 9 }, t0).is_empty(),
            "no answer for a channel the board lacks"
        );
        let errors = feed(&mut board, Command::GetErrors, t0);
        assert_eq!(errors, Errors::SERIAL_PROTOCOL.to_le_bytes());
        assert_eq!(
            feed(&mut board, Command::GetErrors, t0),
            [0, 0],
            "reading clears them"
        );
        board.raise(Errors::SERIAL_OVERRUN);
        assert_eq!(board.errors(), Errors(Errors::SERIAL_OVERRUN));
    }

    #[test]
    fn any_error_sends_the_outputs_home() {
        let t0 = Instant::now();
        let mut board = Maestro::new(6, t0);
        let set = Command::SetTarget {
            channel: 2,
            target: 7000,
        };
        feed(&mut board, set, t0);
        feed(&mut board, Command::GetPosition { channel: 9 }, t0);
        assert_eq!(
            board.channel(2).unwrap().target,
            0,
            "off after a bad channel"
        );
        assert_eq!(board.position(2), 0);
        feed(&mut board, set, t0);
        board.receive(0x7F, t0);
        assert_eq!(
            board.channel(2).unwrap().target,
            0,
            "off after a stray byte"
        );
        feed(&mut board, set, t0);
        board.raise(Errors::SERIAL_OVERRUN);
        assert_eq!(
            board.channel(2).unwrap().target,
            0,
            "off after line trouble"
        );
        // The speed limits stay.
        feed(
            &mut board,
            Command::SetSpeed {
                channel: 2,
                speed: 5,
            },
            t0,
        );
        board.raise(Errors::SERIAL_OVERRUN);
        assert_eq!(board.channel(2).unwrap().speed, 5);
    }

    #[test]
    fn go_home_turns_the_outputs_off() {
        let t0 = Instant::now();
        let mut board = Maestro::new(12, t0);
        feed(
            &mut board,
            Command::SetTarget {
                channel: 11,
                target: 7000,
            },
            t0,
        );
        feed(&mut board, Command::GoHome, t0);
        assert_eq!(board.channel(11).unwrap().target, 0);
        assert_eq!(board.count(), 12);
    }
}
