//! A simulated Pololu Maestro on a real pseudo-terminal.
//!
//! [`SimMaestro`] runs the [`Maestro`] board model behind a Linux pty so that
//! the server's real serial code (the `serialport` crate, termios,
//! reconnects) talks to it exactly as it would to the board's Command Port:
//! point the server at [`SimOptions::link`], a symlink to the pty's slave
//! side that stays put across unplug/plug. The pty plumbing is the eyes
//! simulator's (`eyes::sim`).
//!
//! What it reproduces of the real board:
//! - **The compact protocol.** Bytes are decoded as the Maestro does;
//!   Set Target, Set Speed, Set Acceleration and Go Home are applied, Get
//!   Position, Get Moving State and Get Errors answered; malformed commands
//!   and channels beyond [`SimOptions::channels`] set the serial protocol
//!   error (and a query about such a channel is not answered).
//! - **Wire speed.** Both directions are paced at the baud rate (10 bits a
//!   byte): a byte reaches the board one byte-time after the one before,
//!   answers leave no faster. Deadlines follow a running clock, so late
//!   wake-ups are caught up and the average rate stays exact.
//! - **No reset on open.** Unlike an Arduino, opening the port changes
//!   nothing on a Maestro.
//! - **Unplugging.** [`SimMaestro::unplug`] closes the pty master, so the
//!   client's port fails the way a pulled USB board's does, and removes the
//!   link; the board loses power (a Maestro powered over USB), so once
//!   [`SimMaestro::plug`]ged in again every output is off until the client
//!   sets it.
//! - **Faults for tests.** A muted board ignores everything and answers
//!   nothing (a hung board); [`SimMaestro::raise_errors`] sets error bits
//!   (and, as any error does on a Maestro, turns every output off);
//!   [`SimMaestro::delay_next_answer`] holds the next answer back (a late
//!   answer, arriving after the client gave up on it).
//!
//! Every Set Target is recorded with when it arrived ([`SimMaestro::targets`]);
//! everything observable is reported as [`SimEvent`]s ([`SimMaestro::events`]).
//! The board runs on one std thread; the control calls are synchronous.
//!
//! Test and demo tooling: the module exists only with the package's
//! `testkit` feature.

use std::{
    cmp::max,
    collections::VecDeque,
    io::{self, Read, Write},
    os::{
        fd::{AsFd, AsRawFd},
        unix::net::UnixStream,
    },
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use nix::{
    libc,
    sys::termios::{FlushArg, tcflush},
};
use tracing::warn;

use super::{
    maestro::{Channel, Maestro},
    protocol::{self, Command, Errors, byte_time},
};
use crate::eyes::sim::{Pty, poll_now, remove_link, replace_link, tighten_timer_slack, wait};

/// The Maestro's line speed.
pub const DEFAULT_BAUD: u32 = protocol::BAUD;
/// The largest Maestro's channels.
pub const DEFAULT_CHANNELS: u8 = protocol::MAX_CHANNELS;
/// How often a closed board checks whether the client has opened the port.
const CLOSED_CHECK: Duration = Duration::from_millis(20);
/// The most bytes taken from the pty in one read.
const READ_CHUNK: usize = 4096;

/// How to run a simulated board.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Where to put the symlink to the current pty slave (replaced if it is
    /// already a symlink, refused if it is anything else).
    pub link: PathBuf,
    /// The simulated line speed; bytes are paced at `baud / 10` a second each way.
    pub baud: u32,
    /// The board's channel count (6, 12, 18 or 24 on real Maestros).
    pub channels: u8,
}

impl SimOptions {
    /// A 24-channel board at 115,200 baud behind `link`.
    pub fn new(link: impl Into<PathBuf>) -> Self {
        Self {
            link: link.into(),
            baud: DEFAULT_BAUD,
            channels: DEFAULT_CHANNELS,
        }
    }
}

/// One Set Target as the board got it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetRecord {
    /// The channel.
    pub channel: u8,
    /// Quarter-microseconds.
    pub target: u16,
    /// When its last byte arrived on the simulated wire.
    pub at: Instant,
    /// When the simulator read its first byte from the pty.
    pub read_at: Instant,
}

/// Where the board is in its connection life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// No pty and no link: the USB cable is out.
    Unplugged,
    /// Plugged in, nobody has the port open.
    Closed,
    /// A client has the port open.
    Open,
}

/// Something that happened on the simulated board, reported in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimEvent {
    /// The client opened the port.
    Opened,
    /// The client closed the port.
    Closed,
    /// Raw bytes read from the pty, as the client wrote them, stamped when
    /// read, before pacing.
    Received {
        /// The bytes.
        bytes: Vec<u8>,
        /// When they were read from the pty master.
        read_at: Instant,
    },
    /// A command the board decoded (also one it ignored for its channel, or
    /// because it is muted).
    Command {
        /// The command.
        command: Command,
        /// What the board answered (empty for commands that are not
        /// answered, and when it ignored it).
        answer: Vec<u8>,
        /// When its last byte arrived on the simulated wire.
        at: Instant,
        /// When its last byte was read from the pty.
        read_at: Instant,
    },
    /// A byte that set the serial protocol error (malformed input, or a
    /// command for a channel the board lacks).
    ProtocolError {
        /// The byte.
        byte: u8,
        /// When it arrived.
        at: Instant,
    },
    /// Bytes written to the client (answers), as they went out.
    Sent {
        /// The bytes.
        bytes: Vec<u8>,
        /// When they were written to the pty master.
        at: Instant,
    },
    /// The board was unplugged: pty closed, link removed, power lost.
    Unplugged,
    /// The board was plugged back in: a fresh pty behind the same link and
    /// a freshly powered board.
    Plugged,
}

type Subscriber = Box<dyn FnMut(&SimEvent) -> bool + Send>;

/// What the board thread publishes for [`SimMaestro`]'s getters.
#[derive(Debug)]
struct Status {
    link: LinkState,
    slave: Option<PathBuf>,
    channels: Vec<Channel>,
    errors: u16,
    targets: Vec<TargetRecord>,
}

struct Shared {
    status: Mutex<Status>,
    subscribers: Mutex<Vec<Subscriber>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Debug)]
enum Control {
    Unplug,
    Plug,
    Muted(bool),
    Raise(u16),
    Delay(Duration),
    Target(u8, u16),
    Quit,
}

struct Request {
    control: Control,
    ack: Option<mpsc::SyncSender<io::Result<()>>>,
}

/// A simulated Maestro behind a pseudo-terminal; see the [module docs](self).
///
/// Dropping it stops its thread, hangs up the pty and removes the link.
pub struct SimMaestro {
    link: PathBuf,
    byte_time: Duration,
    shared: Arc<Shared>,
    controls: mpsc::Sender<Request>,
    waker: UnixStream,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SimMaestro {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimMaestro")
            .field("link", &self.link)
            .field("byte_time", &self.byte_time)
            .finish_non_exhaustive()
    }
}

impl SimMaestro {
    /// Creates the pty and the link and starts the board thread: plugged
    /// in, every output off, waiting for a client.
    pub fn start(options: SimOptions) -> io::Result<SimMaestro> {
        if options.baud == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the baud rate must be positive",
            ));
        }
        if !(1..=protocol::MAX_CHANNELS).contains(&options.channels) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a Maestro has 1 to 24 channels",
            ));
        }
        if options.link.file_name().is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "the link path {:?} must name a file",
                    options.link.display()
                ),
            ));
        }
        let byte_time = byte_time(options.baud);
        let pty = Pty::open()?;
        replace_link(&options.link, &pty.slave)?;
        let now = Instant::now();
        let board = Maestro::new(options.channels, now);
        let shared = Arc::new(Shared {
            status: Mutex::new(Status {
                link: LinkState::Closed,
                slave: Some(pty.slave.clone()),
                channels: channels_of(&board),
                errors: 0,
                targets: Vec::new(),
            }),
            subscribers: Mutex::new(Vec::new()),
        });
        let (waker, wakee) = UnixStream::pair()?;
        waker.set_nonblocking(true)?;
        wakee.set_nonblocking(true)?;
        let (controls, requests) = mpsc::channel();
        let thread_board = Board {
            link: options.link.clone(),
            byte_time,
            count: options.channels,
            shared: shared.clone(),
            requests,
            wakee,
            pty: Some(pty),
            open: false,
            board,
            muted: false,
            delay: None,
            rx: VecDeque::new(),
            rx_clock: now,
            tx: VecDeque::new(),
            tx_clock: now,
            tx_blocked: false,
            buf: vec![0; READ_CHUNK],
            out: Vec::new(),
        };
        let thread = thread::Builder::new()
            .name("maestro-sim".into())
            .spawn(move || thread_board.run())?;
        Ok(SimMaestro {
            link: options.link,
            byte_time,
            shared,
            controls,
            waker,
            thread: Some(thread),
        })
    }

    /// The link path clients open.
    pub fn link(&self) -> &Path {
        &self.link
    }

    /// The current pty slave the link points at; `None` while unplugged.
    pub fn slave_path(&self) -> Option<PathBuf> {
        lock(&self.shared.status).slave.clone()
    }

    /// How long one byte takes on the simulated wire.
    pub fn byte_time(&self) -> Duration {
        self.byte_time
    }

    /// Where the board is in its connection life cycle.
    pub fn link_state(&self) -> LinkState {
        lock(&self.shared.status).link
    }

    /// A channel's state as of the last command the board handled.
    pub fn channel(&self, channel: u8) -> Option<Channel> {
        lock(&self.shared.status)
            .channels
            .get(usize::from(channel))
            .copied()
    }

    /// The error register now (not cleared).
    pub fn errors(&self) -> Errors {
        Errors(lock(&self.shared.status).errors)
    }

    /// Every Set Target the board got since it started (or since
    /// [`clear_targets`](Self::clear_targets)), in order, with its times.
    pub fn targets(&self) -> Vec<TargetRecord> {
        lock(&self.shared.status).targets.clone()
    }

    /// Forgets the recorded targets.
    pub fn clear_targets(&self) {
        lock(&self.shared.status).targets.clear();
    }

    /// A new receiver of every event from now on, in order. Keep draining
    /// it, or drop it.
    pub fn events(&self) -> mpsc::Receiver<SimEvent> {
        let (tx, rx) = mpsc::channel();
        lock(&self.shared.subscribers).push(Box::new(move |event| tx.send(event.clone()).is_ok()));
        rx
    }

    /// Pulls the cable: the client's port fails, the link goes, the board
    /// loses power. Does nothing if already unplugged.
    pub fn unplug(&self) -> io::Result<()> {
        self.control(Control::Unplug)
    }

    /// Plugs the cable back in: a fresh pty behind the same link, a fresh
    /// board (every output off). Does nothing if already plugged in.
    pub fn plug(&self) -> io::Result<()> {
        self.control(Control::Plug)
    }

    /// A muted board ignores every byte and answers nothing.
    pub fn set_muted(&self, muted: bool) {
        let _ = self.control(Control::Muted(muted));
    }

    /// Sets error bits in the board's register ([`Errors`]' constants).
    pub fn raise_errors(&self, bits: u16) {
        let _ = self.control(Control::Raise(bits));
    }

    /// Holds the board's next answer back by `delay` (once), as a busy or
    /// stalled line would: a late answer, and every answer after it queued
    /// behind.
    pub fn delay_next_answer(&self, delay: Duration) {
        let _ = self.control(Control::Delay(delay));
    }

    /// Sets a channel's target on the board itself, as its script or the
    /// Maestro Control Center would (not recorded as a received target).
    pub fn set_target(&self, channel: u8, target: u16) {
        let _ = self.control(Control::Target(channel, target));
    }

    fn control(&self, control: Control) -> io::Result<()> {
        let (ack, done) = mpsc::sync_channel(1);
        self.controls
            .send(Request {
                control,
                ack: Some(ack),
            })
            .map_err(|_| stopped())?;
        self.wake();
        done.recv().map_err(|_| stopped())?
    }

    fn wake(&self) {
        let _ = (&self.waker).write(&[1]);
    }
}

impl Drop for SimMaestro {
    fn drop(&mut self) {
        let _ = self.controls.send(Request {
            control: Control::Quit,
            ack: None,
        });
        self.wake();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn stopped() -> io::Error {
    io::Error::other("the simulated Maestro's thread has stopped")
}

fn channels_of(board: &Maestro) -> Vec<Channel> {
    (0..board.count())
        .filter_map(|c| board.channel(c))
        .collect()
}

/// A byte on its way into the board.
#[derive(Clone, Copy, Debug)]
struct RxByte {
    byte: u8,
    at: Instant,
    read_at: Instant,
}

/// The board thread's state.
struct Board {
    link: PathBuf,
    byte_time: Duration,
    count: u8,
    shared: Arc<Shared>,
    requests: mpsc::Receiver<Request>,
    wakee: UnixStream,
    pty: Option<Pty>,
    /// A client has the port open.
    open: bool,
    board: Maestro,
    muted: bool,
    /// Holds the next answer back this long (once).
    delay: Option<Duration>,
    rx: VecDeque<RxByte>,
    rx_clock: Instant,
    tx: VecDeque<(u8, Instant)>,
    tx_clock: Instant,
    tx_blocked: bool,
    buf: Vec<u8>,
    out: Vec<u8>,
}

impl Drop for Board {
    fn drop(&mut self) {
        if let Some(pty) = &self.pty {
            remove_link(&self.link, &pty.slave);
        }
    }
}

impl Board {
    fn run(mut self) {
        tighten_timer_slack();
        loop {
            if !self.handle_controls() {
                return;
            }
            self.advance(Instant::now());
            if let Err(error) = self.wait_and_read() {
                warn!(%error, "simulated Maestro: polling failed; unplugging it");
                self.unplug();
            }
        }
    }

    fn handle_controls(&mut self) -> bool {
        while let Ok(Request { control, ack }) = self.requests.try_recv() {
            let result = match control {
                Control::Quit => return false,
                Control::Unplug => {
                    self.unplug();
                    Ok(())
                }
                Control::Plug => self.plug(),
                Control::Muted(muted) => {
                    self.muted = muted;
                    Ok(())
                }
                Control::Raise(bits) => {
                    self.board.raise(bits);
                    let mut status = lock(&self.shared.status);
                    status.errors = self.board.errors().0;
                    status.channels = channels_of(&self.board);
                    Ok(())
                }
                Control::Delay(delay) => {
                    self.delay = Some(delay);
                    Ok(())
                }
                Control::Target(channel, target) => {
                    let now = Instant::now();
                    for byte in (Command::SetTarget { channel, target }).encode() {
                        self.board.receive(byte, now);
                    }
                    lock(&self.shared.status).channels = channels_of(&self.board);
                    Ok(())
                }
            };
            if let Some(ack) = ack {
                let _ = ack.send(result);
            }
        }
        true
    }

    fn unplug(&mut self) {
        let Some(pty) = self.pty.take() else {
            return;
        };
        remove_link(&self.link, &pty.slave);
        drop(pty);
        self.rx.clear();
        self.tx.clear();
        self.tx_blocked = false;
        self.open = false;
        {
            let mut status = lock(&self.shared.status);
            status.link = LinkState::Unplugged;
            status.slave = None;
        }
        self.emit(|| SimEvent::Unplugged);
    }

    fn plug(&mut self) -> io::Result<()> {
        if self.pty.is_some() {
            return Ok(());
        }
        let pty = Pty::open()?;
        replace_link(&self.link, &pty.slave)?;
        // Powered up afresh: every output off.
        self.board = Maestro::new(self.count, Instant::now());
        {
            let mut status = lock(&self.shared.status);
            status.link = LinkState::Closed;
            status.slave = Some(pty.slave.clone());
            status.channels = channels_of(&self.board);
            status.errors = 0;
        }
        self.pty = Some(pty);
        self.open = false;
        self.emit(|| SimEvent::Plugged);
        Ok(())
    }

    /// Hands the bytes that have arrived by `now` to the board, and sends
    /// the answers whose time has come.
    fn advance(&mut self, now: Instant) {
        let mut changed = false;
        while self.rx.front().is_some_and(|rx| rx.at <= now) {
            let rx = self.rx.pop_front().expect("front exists");
            self.deliver(rx);
            changed = true;
        }
        if changed {
            self.board.advance(now);
            let channels = channels_of(&self.board);
            let mut status = lock(&self.shared.status);
            status.channels = channels;
            status.errors = self.board.errors().0;
        }
        self.flush_tx(now);
    }

    fn deliver(&mut self, rx: RxByte) {
        if self.muted {
            return;
        }
        let receipt = self.board.receive(rx.byte, rx.at);
        if receipt.error {
            self.emit(|| SimEvent::ProtocolError {
                byte: rx.byte,
                at: rx.at,
            });
        }
        let Some(command) = receipt.command else {
            return;
        };
        if let Command::SetTarget { channel, target } = command {
            lock(&self.shared.status).targets.push(TargetRecord {
                channel,
                target,
                at: rx.at,
                read_at: rx.read_at,
            });
        }
        if self.open && !receipt.answer.is_empty() {
            if let Some(delay) = self.delay.take() {
                self.tx_clock = max(self.tx_clock, rx.at) + delay;
            }
            for &byte in &receipt.answer {
                self.tx_clock = max(self.tx_clock, rx.at) + self.byte_time;
                self.tx.push_back((byte, self.tx_clock));
            }
        }
        self.emit(|| SimEvent::Command {
            command,
            answer: receipt.answer,
            at: rx.at,
            read_at: rx.read_at,
        });
    }

    fn flush_tx(&mut self, now: Instant) {
        if self.tx_blocked {
            return;
        }
        let Some(pty) = &self.pty else {
            return;
        };
        let due = self.tx.iter().take_while(|(_, at)| *at <= now).count();
        if due == 0 {
            return;
        }
        self.out.clear();
        self.out
            .extend(self.tx.iter().take(due).map(|(byte, _)| *byte));
        match (&pty.master).write(&self.out) {
            Ok(written) => {
                let at = Instant::now();
                self.tx.drain(..written);
                self.tx_blocked = written < due;
                let sent = self.out[..written].to_vec();
                self.emit(|| SimEvent::Sent { bytes: sent, at });
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => self.tx_blocked = true,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                warn!(%error, "simulated Maestro: writing to the pty failed");
                self.tx.clear();
            }
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        let rx = self.rx.front().map(|rx| rx.at);
        let tx = (!self.tx_blocked)
            .then(|| self.tx.front().map(|(_, at)| *at))
            .flatten();
        [rx, tx].into_iter().flatten().min()
    }

    /// Sleeps until input, a control call, a hang-up or the next deadline,
    /// and takes in what arrived.
    fn wait_and_read(&mut self) -> io::Result<()> {
        let mut timeout = self
            .next_deadline()
            .map(|deadline| deadline.saturating_duration_since(Instant::now()));
        let master_fd = self.pty.as_ref().map(|pty| pty.master.as_raw_fd());
        if master_fd.is_some() && !self.open {
            timeout = Some(timeout.map_or(CLOSED_CHECK, |t| t.min(CLOSED_CHECK)));
        }
        let mut fds = [
            libc::pollfd {
                fd: self.wakee.as_fd().as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: master_fd.unwrap_or(-1),
                events: libc::POLLIN | if self.tx_blocked { libc::POLLOUT } else { 0 },
                revents: 0,
            },
        ];
        // A hung-up master makes ppoll return at once, so it is watched only
        // while the port is open; a closed board samples it below.
        let watched = if self.open && master_fd.is_some() {
            2
        } else {
            1
        };
        wait(&mut fds[..watched], timeout)?;
        if fds[0].revents != 0 {
            let mut sink = [0; 64];
            while matches!((&self.wakee).read(&mut sink), Ok(n) if n > 0) {}
        }
        let Some(master_fd) = master_fd else {
            return Ok(());
        };
        if self.open {
            let revents = fds[1].revents;
            if revents & libc::POLLOUT != 0 {
                self.tx_blocked = false;
            }
            if revents & libc::POLLIN != 0 {
                self.read_input();
            } else if revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                self.on_closed();
            }
        } else {
            let revents = poll_now(master_fd, libc::POLLIN)?;
            if revents & libc::POLLHUP == 0 {
                self.open = true;
                lock(&self.shared.status).link = LinkState::Open;
                self.emit(|| SimEvent::Opened);
            }
            if revents & libc::POLLIN != 0 {
                self.read_input();
            }
        }
        Ok(())
    }

    fn read_input(&mut self) {
        let Some(pty) = &self.pty else {
            return;
        };
        match (&pty.master).read(&mut self.buf) {
            Ok(0) => {}
            Ok(n) => {
                let read_at = Instant::now();
                for &byte in &self.buf[..n] {
                    self.rx_clock = max(self.rx_clock, read_at) + self.byte_time;
                    self.rx.push_back(RxByte {
                        byte,
                        at: self.rx_clock,
                        read_at,
                    });
                }
                let bytes = self.buf[..n].to_vec();
                self.emit(|| SimEvent::Received { bytes, read_at });
            }
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            // EIO: the slave is closed and everything it wrote has been read.
            Err(error) if error.raw_os_error() == Some(libc::EIO) => {
                if self.open {
                    self.on_closed();
                }
            }
            Err(error) => warn!(%error, "simulated Maestro: reading the pty failed"),
        }
    }

    /// The client closed the port: the board keeps its state (bytes already
    /// on the wire still reach it), but its answers go nowhere.
    fn on_closed(&mut self) {
        self.tx.clear();
        self.tx_blocked = false;
        if let Some(pty) = &self.pty {
            let _ = tcflush(&pty.master, FlushArg::TCOFLUSH);
        }
        self.open = false;
        lock(&self.shared.status).link = LinkState::Closed;
        self.emit(|| SimEvent::Closed);
    }

    fn emit(&self, make: impl FnOnce() -> SimEvent) {
        let mut subscribers = lock(&self.shared.subscribers);
        if subscribers.is_empty() {
            return;
        }
        let event = make();
        subscribers.retain_mut(|subscriber| subscriber(&event));
    }
}

#[cfg(test)]
mod tests {
    use serialport::{SerialPort, TTYPort};

    use super::*;

    const PATIENCE: Duration = Duration::from_secs(5);

    fn start(channels: u8) -> (tempfile::TempDir, SimMaestro) {
        let dir = tempfile::tempdir().unwrap();
        let mut options = SimOptions::new(dir.path().join("maestro"));
        options.channels = channels;
        let board = SimMaestro::start(options).unwrap();
        (dir, board)
    }

    fn open(path: &Path) -> TTYPort {
        serialport::new(path.to_string_lossy(), DEFAULT_BAUD)
            .timeout(PATIENCE)
            .open_native()
            .unwrap()
    }

    fn read_n(port: &mut TTYPort, n: usize) -> Vec<u8> {
        let mut buf = vec![0; n];
        port.read_exact(&mut buf).unwrap();
        buf
    }

    fn send(port: &mut TTYPort, command: Command) {
        port.write_all(&command.encode()).unwrap();
    }

    #[test]
    fn answers_queries_and_records_targets() {
        let (_dir, board) = start(12);
        let events = board.events();
        let mut port = open(board.link());
        send(&mut port, Command::GetPosition { channel: 3 });
        assert_eq!(read_n(&mut port, 2), [0, 0], "off at power-up");
        let before = Instant::now();
        send(
            &mut port,
            Command::SetTarget {
                channel: 3,
                target: 6000,
            },
        );
        send(&mut port, Command::GetPosition { channel: 3 });
        assert_eq!(read_n(&mut port, 2), 6000u16.to_le_bytes());
        send(&mut port, Command::GetMovingState);
        assert_eq!(read_n(&mut port, 1), [0]);
        let targets = board.targets();
        assert_eq!(targets.len(), 1);
        assert_eq!((targets[0].channel, targets[0].target), (3, 6000));
        assert!(targets[0].at >= before + board.byte_time() * 4);
        assert_eq!(board.channel(3).unwrap().target, 6000);

        // A channel the board lacks: ignored, no answer, a protocol error.
        send(&mut port, Command::GetPosition { channel: 12 });
        send(&mut port, Command::GetErrors);
        assert_eq!(read_n(&mut port, 2), Errors::SERIAL_PROTOCOL.to_le_bytes());
        board.raise_errors(Errors::SERIAL_OVERRUN);
        send(&mut port, Command::GetErrors);
        assert_eq!(read_n(&mut port, 2), Errors::SERIAL_OVERRUN.to_le_bytes());
        assert_eq!(port.bytes_to_read().unwrap(), 0);

        let mut seen = Vec::new();
        while let Ok(event) = events.recv_timeout(Duration::from_millis(200)) {
            if let SimEvent::Command { command, .. } = event {
                seen.push(command.name());
            }
        }
        assert_eq!(
            seen,
            [
                "Get Position",
                "Set Target",
                "Get Position",
                "Get Moving State",
                "Get Position",
                "Get Errors",
                "Get Errors"
            ]
        );
        assert_eq!(board.link_state(), LinkState::Open);
    }

    #[test]
    fn unplugging_kills_the_port_and_powers_the_board_down() {
        let (_dir, board) = start(6);
        let mut port = open(board.link());
        send(
            &mut port,
            Command::SetTarget {
                channel: 0,
                target: 7000,
            },
        );
        send(&mut port, Command::GetPosition { channel: 0 });
        assert_eq!(read_n(&mut port, 2), 7000u16.to_le_bytes());
        board.unplug().unwrap();
        assert_eq!(board.link_state(), LinkState::Unplugged);
        assert!(std::fs::symlink_metadata(board.link()).is_err());
        let mut buf = [0; 4];
        assert!(port.read(&mut buf).is_err(), "reads fail after unplug");
        board.plug().unwrap();
        assert_eq!(board.channel(0).unwrap().target, 0, "powered down");
        let mut fresh = open(board.link());
        send(&mut fresh, Command::GetPosition { channel: 0 });
        assert_eq!(read_n(&mut fresh, 2), [0, 0]);
    }

    #[test]
    fn a_muted_board_answers_nothing() {
        let (_dir, board) = start(6);
        let mut port = open(board.link());
        board.set_muted(true);
        send(&mut port, Command::GetErrors);
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(port.bytes_to_read().unwrap(), 0);
        board.set_muted(false);
        send(&mut port, Command::GetErrors);
        assert_eq!(read_n(&mut port, 2), [0, 0]);
    }

    #[test]
    fn traffic_is_paced_at_the_baud_rate() {
        let (_dir, board) = start(24);
        let mut port = open(board.link());
        let n = 300u16;
        let mut bytes = Vec::new();
        for i in 0..n {
            Command::SetTarget {
                channel: (i % 24) as u8,
                target: 4000 + i,
            }
            .encode_into(&mut bytes);
        }
        port.write_all(&bytes).unwrap();
        send(&mut port, Command::GetErrors);
        assert_eq!(read_n(&mut port, 2), [0, 0]);
        let targets = board.targets();
        assert_eq!(targets.len(), usize::from(n));
        for pair in targets.windows(2) {
            assert!(pair[1].at - pair[0].at >= board.byte_time() * 4);
        }
    }
}
