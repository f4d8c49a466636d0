//! A simulated eyes board on a real pseudo-terminal.
//!
//! [`SimBoard`] runs the [`Firmware`] model behind a Linux pty so that the server's real
//! serial code (the `serialport` crate, termios, reconnects) talks to it exactly as it
//! would to the Arduino: point the server at [`SimOptions::link`], a symlink to the
//! pty's slave side that stays put across unplug/plug, as socat's `link=` does.
//!
//! What it reproduces of the real board:
//! - **Reset on open.** Opening the port toggles DTR, which resets an Arduino: it is
//!   deaf for a while, then prints `+\r\n`. The simulator notices the client opening
//!   the slave, resets the firmware, discards whatever arrives during
//!   [`SimOptions::boot_delay`] and then writes [`firmware::READY`].
//! - **Wire speed.** 8N1 puts 10 bits on the wire per byte, so at 115200 baud a byte
//!   takes 86.8 µs. A received byte reaches the firmware one byte-time after the
//!   previous one (or after it was written, whichever is later), and answers leave no
//!   faster than one byte per byte-time. Deadlines follow a running clock rather than a
//!   sleep per byte, so late wake-ups are caught up and the average rate stays exact.
//! - **Unplugging.** [`SimBoard::unplug`] closes the pty master, so the client's port
//!   fails the way a pulled USB board's does, and removes the symlink;
//!   [`SimBoard::plug`] brings a fresh pty up behind the same link.
//! - **Faults for tests.** A muted board swallows commands without answering (timeouts);
//!   rejected commands are answered `-` as by a firmware that lacks them.
//!
//! How an open is detected (Linux, checked on a 6.x kernel): a pty master whose slave
//! has been opened and closed once reports `POLLHUP` for as long as nobody has the
//! slave open, and the flag clears the moment someone opens it. (A brand-new pty whose
//! slave was never opened reports nothing, hence the simulator opens and closes the
//! slave once itself before publishing the link.) While `POLLHUP` is set, `poll`
//! returns at once, so a closed board checks the master every 20 ms instead of
//! blocking on it; an open board blocks in `ppoll` until data, a hang-up, a control
//! call or its next pacing deadline. Bytes the client wrote just before closing stay
//! readable after the hang-up, and reading past them fails with `EIO`.
//!
//! Everything observable is reported as [`SimEvent`]s, through [`SimBoard::events`]
//! or [`SimBoard::on_event`]. The board runs on one std thread; [`SimBoard`]'s
//! methods are synchronous: when `unplug()` returns, the client's port is dead and the
//! link is gone.
//!
//! This is test and demo tooling: the module exists only with the package's `testkit`
//! feature, so a production build (`cargo build --release -p cantina-server`) never
//! compiles it.

use std::{
    cmp::max,
    collections::VecDeque,
    fs,
    io::{self, Read, Write},
    os::{
        fd::{AsFd, AsRawFd, RawFd},
        unix::{fs::OpenOptionsExt, net::UnixStream},
    },
    path::{Path, PathBuf},
    sync::{Arc, Mutex, MutexGuard, PoisonError, mpsc},
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use nix::{
    fcntl::{FcntlArg, OFlag, fcntl},
    libc,
    pty::{PtyMaster, grantpt, posix_openpt, ptsname_r, unlockpt},
    sys::termios::{FlushArg, SetArg, cfmakeraw, tcflush, tcgetattr, tcsetattr},
};
use tracing::warn;

use super::{
    firmware::{self, Firmware},
    protocol::byte_time,
};

/// How long a real board stays deaf after the port is opened, before printing `+`.
pub const DEFAULT_BOOT_DELAY: Duration = Duration::from_millis(1500);
/// The eyes firmware's line speed.
pub const DEFAULT_BAUD: u32 = super::protocol::BAUD;
/// How often a closed board checks whether the client has opened the port.
///
/// `poll` cannot block on a hung-up master (it reports `POLLHUP` at once), so the
/// open is sampled; this bounds how late the simulated reset starts.
const CLOSED_CHECK: Duration = Duration::from_millis(20);
/// The most bytes taken from the pty in one read.
const READ_CHUNK: usize = 4096;

/// How to run a simulated board.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// Where to put the symlink to the current pty slave (replaced if it is already a
    /// symlink, refused if it is anything else). Stable across unplug/plug.
    pub link: PathBuf,
    /// How long the board stays deaf after the port is opened before printing `+`.
    pub boot_delay: Duration,
    /// The simulated line speed; bytes are paced at `baud / 10` per second each way.
    pub baud: u32,
}

impl SimOptions {
    /// Options for a board at `link` with the real board's boot delay and baud rate.
    pub fn new(link: impl Into<PathBuf>) -> Self {
        Self {
            link: link.into(),
            ..Self::default()
        }
    }
}

impl Default for SimOptions {
    /// No link (set one before starting), [`DEFAULT_BOOT_DELAY`], [`DEFAULT_BAUD`].
    fn default() -> Self {
        Self {
            link: PathBuf::new(),
            boot_delay: DEFAULT_BOOT_DELAY,
            baud: DEFAULT_BAUD,
        }
    }
}

/// What the eyes show: the firmware's observable state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SimState {
    /// The current pattern as its command character (`'I'`, `'H'`, …).
    pub glyph: char,
    /// The raw intensity (0–9 over the wire, 8 after boot).
    pub intensity: u8,
}

impl SimState {
    /// The state of a given firmware.
    fn of(firmware: &Firmware) -> Self {
        Self {
            glyph: firmware.glyph(),
            intensity: firmware.intensity(),
        }
    }
}

/// Where the board is in its connection life cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// No pty and no link: the USB cable is out.
    Unplugged,
    /// Plugged in, nobody has the port open. The firmware keeps its state (and still
    /// digests bytes the last client wrote before closing).
    Closed,
    /// The port was opened: the board is resetting and deaf.
    Booting,
    /// The boot line is out; commands are answered.
    Ready,
}

/// Something that happened on the simulated board, reported in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SimEvent {
    /// The client opened the port: the firmware was reset and the board is deaf until
    /// [`SimEvent::Ready`].
    Opened,
    /// The boot line `+\r\n` has been written: the board now answers commands.
    Ready,
    /// Raw bytes read from the pty, exactly as the client wrote them (CR and LF
    /// included, bytes that will be discarded too), stamped when read, before pacing.
    Received {
        /// The bytes, in order.
        bytes: Vec<u8>,
        /// When the simulator read them from the pty master.
        read_at: Instant,
    },
    /// Bytes that reached the board while it was deaf (booting, or reset by a new
    /// open before they were processed) and were dropped.
    Discarded {
        /// The bytes, in order.
        bytes: Vec<u8>,
        /// When the last of them arrived on the simulated wire.
        at: Instant,
    },
    /// A byte other than CR or LF reached the firmware.
    Command {
        /// The byte received.
        byte: u8,
        /// The firmware's answer ([`firmware::DONE`] or [`firmware::UNKNOWN`]); `None`
        /// when the board is muted. It is written back only if the port is open.
        answer: Option<&'static [u8]>,
        /// The eyes' state after the command.
        state: SimState,
        /// When the byte finished arriving on the simulated wire: the moment the
        /// firmware got it. Always at least one byte-time after `read_at`.
        at: Instant,
        /// When the simulator read the byte from the pty master.
        read_at: Instant,
    },
    /// Bytes written to the client (boot line and answers), as they went out.
    Sent {
        /// The bytes, in order.
        bytes: Vec<u8>,
        /// When they were written to the pty master.
        at: Instant,
    },
    /// The client closed the port.
    Closed,
    /// The board was unplugged: pty closed, link removed.
    Unplugged,
    /// The board was plugged back in: a fresh pty behind the same link, waiting for the
    /// client to open it.
    Plugged,
}

/// A callback receiving events; returns `false` to unsubscribe.
type Subscriber = Box<dyn FnMut(&SimEvent) -> bool + Send>;

/// What the board thread publishes for [`SimBoard`]'s getters.
#[derive(Debug)]
struct Status {
    state: SimState,
    link: LinkState,
    slave: Option<PathBuf>,
}

/// State shared between [`SimBoard`] and its thread.
struct Shared {
    status: Mutex<Status>,
    subscribers: Mutex<Vec<Subscriber>>,
}

/// Locks a mutex, going on with the data if a holder panicked: every value kept under
/// these locks is valid at all times.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A control call to the board thread.
#[derive(Debug)]
enum Control {
    Unplug,
    Plug,
    Muted(bool),
    Rejected(String),
    Quit,
}

/// A control call and where to acknowledge it.
struct Request {
    control: Control,
    ack: Option<mpsc::SyncSender<io::Result<()>>>,
}

/// A simulated eyes board behind a pseudo-terminal; see the [module docs](self).
///
/// Dropping it stops its thread, hangs up the pty and removes the link.
pub struct SimBoard {
    link: PathBuf,
    byte_time: Duration,
    shared: Arc<Shared>,
    controls: mpsc::Sender<Request>,
    /// Written to wake the board thread out of `ppoll` when a control call is queued.
    waker: UnixStream,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SimBoard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimBoard")
            .field("link", &self.link)
            .field("byte_time", &self.byte_time)
            .field("status", &*lock(&self.shared.status))
            .finish_non_exhaustive()
    }
}

impl SimBoard {
    /// Creates the pty and the link and starts the board thread. The board is plugged
    /// in and waits for a client to open the port.
    pub fn start(options: SimOptions) -> io::Result<SimBoard> {
        if options.baud == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the baud rate must be positive",
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
        let shared = Arc::new(Shared {
            status: Mutex::new(Status {
                state: SimState::of(&Firmware::new()),
                link: LinkState::Closed,
                slave: Some(pty.slave.clone()),
            }),
            subscribers: Mutex::new(Vec::new()),
        });
        let (waker, wakee) = UnixStream::pair()?;
        // Neither side may block: a full socket already means "wake up".
        waker.set_nonblocking(true)?;
        wakee.set_nonblocking(true)?;
        let (controls, requests) = mpsc::channel();
        let now = Instant::now();
        let board = Board {
            link: options.link.clone(),
            byte_time,
            boot_delay: options.boot_delay,
            shared: shared.clone(),
            requests,
            wakee,
            pty: Some(pty),
            phase: Phase::Closed,
            firmware: Firmware::new(),
            rejected: String::new(),
            muted: false,
            rx: VecDeque::new(),
            rx_clock: now,
            tx: VecDeque::new(),
            tx_clock: now,
            tx_blocked: false,
            tx_written: 0,
            ready_mark: None,
            buf: vec![0; READ_CHUNK],
            out: Vec::new(),
        };
        // If spawning fails the closure, and with it the board, is dropped, which
        // removes the link again.
        let thread = thread::Builder::new()
            .name("eyes-sim".into())
            .spawn(move || board.run())?;
        Ok(SimBoard {
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

    /// The current pty slave (`/dev/pts/N`) the link points at; `None` while unplugged.
    pub fn slave_path(&self) -> Option<PathBuf> {
        lock(&self.shared.status).slave.clone()
    }

    /// How long one byte takes on the simulated wire (10 bits at the baud rate,
    /// rounded up to the nanosecond so the simulator never outruns the line).
    pub fn byte_time(&self) -> Duration {
        self.byte_time
    }

    /// What the eyes show now.
    pub fn state(&self) -> SimState {
        lock(&self.shared.status).state
    }

    /// Where the board is in its connection life cycle.
    pub fn link_state(&self) -> LinkState {
        lock(&self.shared.status).link
    }

    /// A new receiver of every event from now on, in order.
    ///
    /// The channel is unbounded: keep draining it, or drop it (the board notices and
    /// stops sending) — a receiver left alone during a long benchmark grows without end.
    pub fn events(&self) -> mpsc::Receiver<SimEvent> {
        let (tx, rx) = mpsc::channel();
        self.subscribe(Box::new(move |event| tx.send(event.clone()).is_ok()));
        rx
    }

    /// Calls `f` with every event from now on, in order, on the board's thread.
    ///
    /// `f` must be quick (it delays the simulated wire) and must not call this board's
    /// methods other than the getters (`state`, `link_state`, `slave_path`, …): the
    /// control calls wait for the very thread `f` runs on.
    pub fn on_event(&self, mut f: impl FnMut(&SimEvent) + Send + 'static) {
        self.subscribe(Box::new(move |event| {
            f(event);
            true
        }));
    }

    fn subscribe(&self, subscriber: Subscriber) {
        lock(&self.shared.subscribers).push(subscriber);
    }

    /// Pulls the cable: closes the pty master, so the client's port fails (reads and
    /// writes error out, poll reports a hang-up), and removes the link. Does nothing if
    /// already unplugged.
    pub fn unplug(&self) -> io::Result<()> {
        self.control(Control::Unplug)
    }

    /// Plugs the cable back in: a fresh pty behind the same link, waiting for the client
    /// to open it (which resets the board). Does nothing if already plugged in.
    pub fn plug(&self) -> io::Result<()> {
        self.control(Control::Plug)
    }

    /// A muted board swallows commands (they change nothing) and never answers, for
    /// testing the client's timeouts. The boot line is still printed.
    pub fn set_muted(&self, muted: bool) {
        // The only failure is a stopped board thread, where there is nothing to mute.
        let _ = self.control(Control::Muted(muted));
    }

    /// Answers `-` to these command characters without applying them, as a firmware
    /// lacking them would (see [`Firmware::set_rejected`]); empty restores them. Kept
    /// across resets.
    pub fn set_rejected(&self, chars: &str) {
        // As in `set_muted`: failing means no board left to configure.
        let _ = self.control(Control::Rejected(chars.to_owned()));
    }

    /// Hands a control call to the board thread and waits until it is done.
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
        // WouldBlock means wake-ups are already pending, which is all we need.
        let _ = (&self.waker).write(&[1]);
    }
}

impl Drop for SimBoard {
    fn drop(&mut self) {
        let _ = self.controls.send(Request {
            control: Control::Quit,
            ack: None,
        });
        self.wake();
        if let Some(thread) = self.thread.take() {
            // The board's own Drop closes the pty and removes the link, even after a
            // panic; a panic has been reported on stderr already.
            let _ = thread.join();
        }
    }
}

/// The error for control calls after the board thread has gone.
fn stopped() -> io::Error {
    io::Error::other("the simulated board's thread has stopped")
}

/// A pty pair: the master the board keeps, and the slave's path for clients.
/// (Shared with the simulated servo board, `servos::sim`.)
pub(crate) struct Pty {
    pub(crate) master: PtyMaster,
    pub(crate) slave: PathBuf,
}

impl Pty {
    /// Opens a pty pair, puts the slave in raw mode and arms hang-up detection.
    pub(crate) fn open() -> io::Result<Pty> {
        // CLOEXEC: a server or test child spawned from this process must not inherit
        // the master, or unplugging would not hang up the slave.
        let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let slave = PathBuf::from(ptsname_r(&master)?);
        {
            // Opening and closing the slave once makes the master report POLLHUP until
            // the next open, which is how the board sees the client arrive. Raw mode
            // lets bytes through untouched for clients that do not set it themselves
            // (cat, screen); the serialport crate sets it anyway.
            let file = fs::OpenOptions::new()
                .read(true)
                .write(true)
                .custom_flags(libc::O_NOCTTY)
                .open(&slave)?;
            let mut termios = tcgetattr(&file)?;
            cfmakeraw(&mut termios);
            tcsetattr(&file, SetArg::TCSANOW, &termios)?;
        }
        // Non-blocking so a client that stops reading cannot stall the board thread.
        fcntl(&master, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
        if poll_now(master.as_raw_fd(), libc::POLLIN)? & libc::POLLHUP == 0 {
            return Err(io::Error::other(
                "the pty master does not report a hang-up while its slave is closed, \
                 so the simulated board could not tell when the port is opened",
            ));
        }
        Ok(Pty { master, slave })
    }
}

/// Points `link` at `target`, atomically replacing an existing symlink.
pub(crate) fn replace_link(link: &Path, target: &Path) -> io::Result<()> {
    if let Ok(meta) = fs::symlink_metadata(link)
        && !meta.file_type().is_symlink()
    {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!(
                "{} exists and is not a symlink: not replacing it",
                link.display()
            ),
        ));
    }
    // A temporary link renamed over the old one, so the path never vanishes meanwhile.
    let name = link.file_name().unwrap_or_default().to_string_lossy();
    let temp = link.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_file(&temp);
    std::os::unix::fs::symlink(target, &temp)?;
    fs::rename(&temp, link).inspect_err(|_| {
        let _ = fs::remove_file(&temp);
    })
}

/// Removes `link` if it still points at `target` (someone may have reused the path).
pub(crate) fn remove_link(link: &Path, target: &Path) {
    if fs::read_link(link).is_ok_and(|points_to| points_to == target) {
        let _ = fs::remove_file(link);
    }
}

/// Waits for any of `fds` to be ready, or until `timeout` (`None` = forever).
///
/// `ppoll` rather than `poll` for its nanosecond timeout: pacing deadlines are a
/// fraction of a millisecond apart.
pub(crate) fn wait(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<()> {
    let timespec = timeout.map(|t| {
        // An hour is as good as forever and keeps the seconds in range everywhere.
        let t = t.min(Duration::from_secs(3600));
        libc::timespec {
            tv_sec: t.as_secs() as libc::time_t,
            tv_nsec: t.subsec_nanos() as libc::c_long,
        }
    });
    let timespec_ptr = timespec
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `fds` is a valid, exclusively borrowed array of `pollfd` of the given
    // length; `timespec_ptr` is null or points at a live local; a null signal mask
    // leaves the thread's mask alone.
    let ready = unsafe {
        libc::ppoll(
            fds.as_mut_ptr(),
            fds.len() as libc::nfds_t,
            timespec_ptr,
            std::ptr::null(),
        )
    };
    if ready < 0 {
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    }
    Ok(())
}

/// The events pending on `fd` right now.
pub(crate) fn poll_now(fd: RawFd, events: libc::c_short) -> io::Result<libc::c_short> {
    let mut fds = [libc::pollfd {
        fd,
        events,
        revents: 0,
    }];
    wait(&mut fds, Some(Duration::ZERO))?;
    Ok(fds[0].revents)
}

/// Asks the kernel to wake this thread close to its deadlines: the default 50 µs of
/// timer slack is more than half a byte-time at 115200 baud.
pub(crate) fn tighten_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes one unsigned long and only affects this thread.
    // Failure just leaves the default slack, which the running clock absorbs.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1 as libc::c_ulong);
    }
}

/// A byte on its way into the firmware.
#[derive(Clone, Copy, Debug)]
struct RxByte {
    byte: u8,
    /// When it finishes arriving on the simulated wire.
    at: Instant,
    /// When it was read from the pty.
    read_at: Instant,
}

/// The board's phase, with what the thread needs to time it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Unplugged,
    Closed,
    Booting {
        until: Instant,
    },
    /// Listening (the boot line may still be going out).
    Ready,
}

/// The board thread's state: the pty, the firmware and the two paced queues.
struct Board {
    link: PathBuf,
    byte_time: Duration,
    boot_delay: Duration,
    shared: Arc<Shared>,
    requests: mpsc::Receiver<Request>,
    wakee: UnixStream,
    pty: Option<Pty>,
    phase: Phase,
    firmware: Firmware,
    /// Kept here too, because a reset (new open) starts a fresh firmware.
    rejected: String,
    muted: bool,
    /// Bytes read but not yet arrived on the simulated wire.
    rx: VecDeque<RxByte>,
    /// When the incoming wire is free again.
    rx_clock: Instant,
    /// Bytes to send, each with the moment it has fully gone out.
    tx: VecDeque<(u8, Instant)>,
    /// When the outgoing wire is free again.
    tx_clock: Instant,
    /// The pty buffer is full (the client is not reading): wait for POLLOUT.
    tx_blocked: bool,
    /// Bytes written since the pty was created.
    tx_written: u64,
    /// `tx_written` once the boot line is out, to report [`SimEvent::Ready`].
    ready_mark: Option<u64>,
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
                // Nothing sensible to retry on the same descriptors: go on as an
                // unplugged board that still takes control calls.
                warn!(%error, "simulated eyes board: polling failed; unplugging it");
                self.unplug();
            }
        }
    }

    /// Applies the queued control calls. Returns `false` when asked to quit.
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
                Control::Rejected(chars) => {
                    self.firmware.set_rejected(&chars);
                    self.rejected = chars;
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
        // The link first, so a client reacting to the hang-up finds no port to reopen.
        remove_link(&self.link, &pty.slave);
        drop(pty);
        self.discard_rx(Instant::now());
        self.clear_tx();
        self.phase = Phase::Unplugged;
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
        {
            let mut status = lock(&self.shared.status);
            status.link = LinkState::Closed;
            status.slave = Some(pty.slave.clone());
        }
        self.pty = Some(pty);
        self.tx_written = 0;
        self.phase = Phase::Closed;
        self.emit(|| SimEvent::Plugged);
        Ok(())
    }

    /// Does whatever is due by `now`: bytes arriving at the firmware, the end of the
    /// boot, bytes going out.
    fn advance(&mut self, now: Instant) {
        let mut discarded = Vec::new();
        let mut last_discarded = now;
        while let Some(rx) = self.rx.front().copied() {
            if rx.at > now {
                break;
            }
            self.rx.pop_front();
            // The boot may end between two bytes: those before it are lost, those
            // after it are heard.
            self.finish_boot_by(rx.at);
            if matches!(self.phase, Phase::Booting { .. }) {
                discarded.push(rx.byte);
                last_discarded = rx.at;
            } else {
                self.deliver(rx);
            }
        }
        self.finish_boot_by(now);
        if !discarded.is_empty() {
            self.emit(|| SimEvent::Discarded {
                bytes: discarded,
                at: last_discarded,
            });
        }
        self.flush_tx(now);
    }

    /// Ends the boot if it is over by `t`: the board starts listening and prints its
    /// boot line.
    fn finish_boot_by(&mut self, t: Instant) {
        if let Phase::Booting { until } = self.phase
            && until <= t
        {
            self.phase = Phase::Ready;
            self.queue_tx(firmware::READY, until);
            self.ready_mark = Some(self.tx_written + self.tx.len() as u64);
        }
    }

    /// Hands one arrived byte to the firmware and queues its answer.
    fn deliver(&mut self, rx: RxByte) {
        if matches!(rx.byte, b'\r' | b'\n') {
            return;
        }
        let answer = if self.muted {
            None
        } else {
            self.firmware.receive(rx.byte)
        };
        let state = SimState::of(&self.firmware);
        lock(&self.shared.status).state = state;
        if self.phase == Phase::Ready
            && let Some(answer) = answer
        {
            self.queue_tx(answer, rx.at);
        }
        self.emit(|| SimEvent::Command {
            byte: rx.byte,
            answer,
            state,
            at: rx.at,
            read_at: rx.read_at,
        });
    }

    /// Schedules `bytes` to go out one byte-time apart, starting no earlier than `from`.
    fn queue_tx(&mut self, bytes: &[u8], from: Instant) {
        for &byte in bytes {
            self.tx_clock = max(self.tx_clock, from) + self.byte_time;
            self.tx.push_back((byte, self.tx_clock));
        }
    }

    /// Writes every byte whose time has come, in one write.
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
                self.tx_written += written as u64;
                self.tx_blocked = written < due;
                let sent = &self.out[..written];
                self.emit(|| SimEvent::Sent {
                    bytes: sent.to_vec(),
                    at,
                });
                if self.ready_mark.is_some_and(|mark| self.tx_written >= mark) {
                    self.ready_mark = None;
                    lock(&self.shared.status).link = LinkState::Ready;
                    self.emit(|| SimEvent::Ready);
                }
            }
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => self.tx_blocked = true,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                // Seen only when the client is gone; the hang-up is handled by poll.
                warn!(%error, "simulated eyes board: writing to the pty failed");
                self.clear_tx();
            }
        }
    }

    /// The next moment something is due, if anything is.
    fn next_deadline(&self) -> Option<Instant> {
        let rx = self.rx.front().map(|rx| rx.at);
        let tx = (!self.tx_blocked)
            .then(|| self.tx.front().map(|(_, at)| *at))
            .flatten();
        let boot = match self.phase {
            Phase::Booting { until } => Some(until),
            _ => None,
        };
        [rx, tx, boot].into_iter().flatten().min()
    }

    /// Sleeps until input, a control call, a hang-up or the next deadline, and takes
    /// in what arrived.
    fn wait_and_read(&mut self) -> io::Result<()> {
        let open = matches!(self.phase, Phase::Booting { .. } | Phase::Ready);
        let mut timeout = self
            .next_deadline()
            .map(|deadline| deadline.saturating_duration_since(Instant::now()));
        if self.phase == Phase::Closed {
            timeout = Some(timeout.map_or(CLOSED_CHECK, |t| t.min(CLOSED_CHECK)));
        }
        let master_fd = self.pty.as_ref().map(|pty| pty.master.as_raw_fd());
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
        // A hung-up master would make ppoll return at once, so it is only watched
        // while the port is open; a closed board samples it below instead.
        let watched = if open && master_fd.is_some() { 2 } else { 1 };
        wait(&mut fds[..watched], timeout)?;
        if fds[0].revents != 0 {
            self.drain_wakeups();
        }
        let Some(master_fd) = master_fd else {
            return Ok(());
        };
        if open {
            let revents = fds[1].revents;
            if revents & libc::POLLOUT != 0 {
                self.tx_blocked = false;
            }
            if revents & libc::POLLIN != 0 {
                // Data first: a client that writes and closes leaves both flags set.
                self.read_input();
            } else if revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                self.on_closed();
            }
        } else if self.phase == Phase::Closed {
            let revents = poll_now(master_fd, libc::POLLIN)?;
            if revents & libc::POLLHUP == 0 {
                self.on_opened();
            }
            if revents & libc::POLLIN != 0 {
                self.read_input();
            }
        }
        Ok(())
    }

    fn drain_wakeups(&mut self) {
        let mut sink = [0; 64];
        while matches!((&self.wakee).read(&mut sink), Ok(n) if n > 0) {}
    }

    /// Reads what the client wrote and puts it on the simulated wire.
    fn read_input(&mut self) {
        let Some(pty) = &self.pty else {
            return;
        };
        match (&pty.master).read(&mut self.buf) {
            Ok(0) => {}
            Ok(n) => {
                let read_at = Instant::now();
                let bytes = &self.buf[..n];
                // Each byte takes a byte-time on the wire, starting when it was written
                // or when the previous one is through, whichever is later.
                for &byte in bytes {
                    self.rx_clock = max(self.rx_clock, read_at) + self.byte_time;
                    self.rx.push_back(RxByte {
                        byte,
                        at: self.rx_clock,
                        read_at,
                    });
                }
                self.emit(|| SimEvent::Received {
                    bytes: bytes.to_vec(),
                    read_at,
                });
            }
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            // EIO: the slave is closed and everything it wrote has been read.
            Err(error) if error.raw_os_error() == Some(libc::EIO) => {
                if matches!(self.phase, Phase::Booting { .. } | Phase::Ready) {
                    self.on_closed();
                }
            }
            Err(error) => warn!(%error, "simulated eyes board: reading the pty failed"),
        }
    }

    /// The client opened the port: DTR resets the board, which goes deaf while booting.
    fn on_opened(&mut self) {
        let now = Instant::now();
        // Whatever was still on its way belonged to the board before the reset.
        self.discard_rx(now);
        self.clear_tx();
        self.firmware = Firmware::new();
        self.firmware.set_rejected(&self.rejected);
        self.phase = Phase::Booting {
            until: now + self.boot_delay,
        };
        {
            let mut status = lock(&self.shared.status);
            status.state = SimState::of(&self.firmware);
            status.link = LinkState::Booting;
        }
        self.emit(|| SimEvent::Opened);
    }

    /// The client closed the port. The board keeps running (closing does not reset an
    /// Arduino), so bytes already on the wire still reach the firmware, but its
    /// answers go nowhere.
    fn on_closed(&mut self) {
        if matches!(self.phase, Phase::Booting { .. }) {
            // They arrived while the board was deaf.
            self.discard_rx(Instant::now());
        }
        self.clear_tx();
        if let Some(pty) = &self.pty {
            // Drop what we wrote and nobody read, so the next client does not get a
            // stale answer before the boot line.
            let _ = tcflush(&pty.master, FlushArg::TCOFLUSH);
        }
        self.phase = Phase::Closed;
        lock(&self.shared.status).link = LinkState::Closed;
        self.emit(|| SimEvent::Closed);
    }

    /// Drops the bytes still on their way in, reporting them.
    fn discard_rx(&mut self, at: Instant) {
        if self.rx.is_empty() {
            return;
        }
        let bytes: Vec<u8> = self.rx.drain(..).map(|rx| rx.byte).collect();
        self.emit(|| SimEvent::Discarded { bytes, at });
    }

    fn clear_tx(&mut self) {
        self.tx.clear();
        self.tx_blocked = false;
        self.ready_mark = None;
    }

    /// Sends an event to the subscribers, building it only if someone listens.
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
    use std::io::ErrorKind;

    use serialport::{SerialPort, TTYPort};

    use super::*;

    /// Long enough for any CI machine to react; waits end as soon as the event comes.
    const PATIENCE: Duration = Duration::from_secs(5);

    fn options(dir: &tempfile::TempDir) -> SimOptions {
        SimOptions {
            link: dir.path().join("eyes"),
            boot_delay: Duration::from_millis(50),
            baud: DEFAULT_BAUD,
        }
    }

    fn start() -> (tempfile::TempDir, SimBoard, mpsc::Receiver<SimEvent>) {
        let dir = tempfile::tempdir().unwrap();
        let board = SimBoard::start(options(&dir)).unwrap();
        let events = board.events();
        (dir, board, events)
    }

    /// Opens the port the way the server does.
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

    /// Opens the port and waits for the boot line.
    fn open_booted(board: &SimBoard) -> TTYPort {
        let mut port = open(board.link());
        assert_eq!(read_n(&mut port, 3), firmware::READY);
        port
    }

    /// Skips events until one matches; panics with what was seen after `PATIENCE`.
    fn wait_for(
        events: &mpsc::Receiver<SimEvent>,
        what: &str,
        matches: impl Fn(&SimEvent) -> bool,
    ) -> SimEvent {
        let deadline = Instant::now() + PATIENCE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match events.recv_timeout(left) {
                Ok(event) if matches(&event) => return event,
                Ok(event) => seen.push(event),
                Err(_) => panic!("no {what} event; saw {seen:#?}"),
            }
        }
    }

    /// Collects the raw bytes received until `want` has been seen in full.
    fn wait_for_bytes(events: &mpsc::Receiver<SimEvent>, want: &[u8]) -> Vec<u8> {
        let mut all = Vec::new();
        while !all.windows(want.len()).any(|w| w == want) {
            if let SimEvent::Received { bytes, .. } = wait_for(events, "Received", |e| {
                matches!(e, SimEvent::Received { .. })
            }) {
                all.extend(bytes);
            }
        }
        all
    }

    #[test]
    fn the_board_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<SimBoard>();
        shareable::<SimEvent>();
    }

    #[test]
    fn byte_time_is_ten_bits_rounded_up() {
        assert_eq!(byte_time(115_200), Duration::from_nanos(86_806));
        assert_eq!(byte_time(9_600), Duration::from_nanos(1_041_667));
        assert_eq!(byte_time(10), Duration::from_secs(1));
    }

    #[test]
    fn boots_on_open_then_answers_commands() {
        let (_dir, board, events) = start();
        assert_eq!(board.link_state(), LinkState::Closed);
        let slave = board.slave_path().unwrap();
        assert_eq!(fs::read_link(board.link()).unwrap(), slave);

        let mut port = open_booted(&board);
        wait_for(&events, "Opened", |e| *e == SimEvent::Opened);
        wait_for(&events, "Ready", |e| *e == SimEvent::Ready);
        assert_eq!(board.link_state(), LinkState::Ready);

        port.write_all(b"H\n").unwrap();
        assert_eq!(read_n(&mut port, 3), firmware::DONE);
        assert_eq!(
            board.state(),
            SimState {
                glyph: 'H',
                intensity: 8
            }
        );
        assert!(wait_for_bytes(&events, b"H\n").ends_with(b"H\n"));
        let SimEvent::Command {
            byte,
            answer,
            state,
            at,
            read_at,
        } = wait_for(&events, "Command", |e| {
            matches!(e, SimEvent::Command { .. })
        })
        else {
            unreachable!()
        };
        assert_eq!(
            (byte, answer, state.glyph),
            (b'H', Some(firmware::DONE), 'H')
        );
        assert!(at >= read_at + board.byte_time());
        let SimEvent::Sent { bytes, .. } =
            wait_for(&events, "Sent", |e| matches!(e, SimEvent::Sent { .. }))
        else {
            unreachable!()
        };
        assert!(firmware::DONE.starts_with(&bytes));

        port.write_all(b"7\r\n").unwrap();
        assert_eq!(read_n(&mut port, 3), firmware::DONE);
        assert_eq!(board.state().intensity, 7);
        assert_eq!(port.bytes_to_read().unwrap(), 0, "one answer per command");
    }

    #[test]
    fn unknown_and_rejected_commands_are_answered_minus() {
        let (_dir, board, events) = start();
        let mut port = open_booted(&board);

        port.write_all(b"Q\n").unwrap();
        assert_eq!(read_n(&mut port, 3), firmware::UNKNOWN);
        wait_for(
            &events,
            "Command Q",
            |e| matches!(e, SimEvent::Command { byte: b'Q', answer: Some(a), .. } if *a == firmware::UNKNOWN),
        );

        board.set_rejected("H");
        port.write_all(b"H\n").unwrap();
        assert_eq!(read_n(&mut port, 3), firmware::UNKNOWN);
        assert_eq!(
            board.state().glyph,
            'I',
            "a rejected command is not applied"
        );

        board.set_rejected("");
        port.write_all(b"H\n").unwrap();
        assert_eq!(read_n(&mut port, 3), firmware::DONE);
        assert_eq!(board.state().glyph, 'H');
    }

    #[test]
    fn rejected_commands_stay_rejected_across_a_reset() {
        let (_dir, board, _events) = start();
        board.set_rejected("S");
        let mut port = open_booted(&board);
        port.write_all(b"S\n").unwrap();
        assert_eq!(read_n(&mut port, 3), firmware::UNKNOWN);
    }

    #[test]
    fn a_muted_board_swallows_commands() {
        let (_dir, board, events) = start();
        let mut port = open_booted(&board);

        board.set_muted(true);
        // Q would be answered `-` by a board that talks.
        port.write_all(b"Q\nH\n").unwrap();
        wait_for(&events, "muted Command", |e| {
            matches!(
                e,
                SimEvent::Command {
                    byte: b'H',
                    answer: None,
                    ..
                }
            )
        });
        assert_eq!(
            board.state().glyph,
            'I',
            "a swallowed command changes nothing"
        );

        board.set_muted(false);
        port.write_all(b"S\n").unwrap();
        // Had the muted board answered Q, its `-` would come first.
        assert_eq!(read_n(&mut port, 3), firmware::DONE);
        assert_eq!(board.state().glyph, 'S');
    }

    #[test]
    fn bytes_sent_while_booting_are_discarded() {
        let dir = tempfile::tempdir().unwrap();
        let board = SimBoard::start(SimOptions {
            // Ample time for the write below to land inside the boot.
            boot_delay: Duration::from_millis(500),
            ..options(&dir)
        })
        .unwrap();
        let events = board.events();
        let mut port = open(board.link());
        port.write_all(b"A\n").unwrap();
        // Bytes are dropped as they arrive, one byte-time apart, so maybe in pieces.
        let mut discarded = Vec::new();
        while discarded.len() < 2 {
            if let SimEvent::Discarded { bytes, .. } = wait_for(&events, "Discarded", |e| {
                matches!(e, SimEvent::Discarded { .. })
            }) {
                discarded.extend(bytes);
            }
        }
        assert_eq!(discarded, b"A\n");
        assert_eq!(read_n(&mut port, 3), firmware::READY);
        assert_eq!(board.state().glyph, 'I');

        port.write_all(b"T\n").unwrap();
        assert_eq!(read_n(&mut port, 3), firmware::DONE);
        assert_eq!(board.state().glyph, 'T');
    }

    #[test]
    fn reopening_the_port_resets_the_board() {
        let (_dir, board, events) = start();
        let mut port = open_booted(&board);
        port.write_all(b"A\n3\n").unwrap();
        assert_eq!(read_n(&mut port, 6), b"+\r\n+\r\n");
        drop(port);
        wait_for(&events, "Closed", |e| *e == SimEvent::Closed);
        assert_eq!(board.link_state(), LinkState::Closed);
        // Closing does not reset an Arduino; only the next open does.
        assert_eq!(
            board.state(),
            SimState {
                glyph: 'A',
                intensity: 3
            }
        );

        let port = open_booted(&board);
        wait_for(&events, "Opened", |e| *e == SimEvent::Opened);
        assert_eq!(
            board.state(),
            SimState {
                glyph: 'I',
                intensity: 8
            }
        );
        assert_eq!(
            port.bytes_to_read().unwrap(),
            0,
            "nothing stale after the boot line"
        );
    }

    #[test]
    fn unplug_kills_the_port_and_plug_brings_a_fresh_one() {
        let (_dir, board, events) = start();
        let mut port = open_booted(&board);

        board.unplug().unwrap();
        wait_for(&events, "Unplugged", |e| *e == SimEvent::Unplugged);
        assert_eq!(board.link_state(), LinkState::Unplugged);
        assert_eq!(board.slave_path(), None);
        assert!(fs::symlink_metadata(board.link()).is_err(), "link removed");
        let mut buf = [0; 8];
        assert!(port.read(&mut buf).is_err(), "reads fail after unplug");
        assert!(port.write_all(b"H\n").is_err(), "writes fail after unplug");
        board.unplug().unwrap();

        board.plug().unwrap();
        wait_for(&events, "Plugged", |e| *e == SimEvent::Plugged);
        assert_eq!(board.link_state(), LinkState::Closed);
        let slave = board.slave_path().unwrap();
        assert_eq!(fs::read_link(board.link()).unwrap(), slave);
        board.plug().unwrap();

        let mut fresh = open_booted(&board);
        fresh.write_all(b"L\n").unwrap();
        assert_eq!(read_n(&mut fresh, 3), firmware::DONE);
        assert!(port.read(&mut buf).is_err(), "the old port stays dead");
    }

    #[test]
    fn traffic_is_paced_at_the_baud_rate() {
        let (_dir, board, events) = start();
        let mut port = open_booted(&board);
        let commands = 200;
        let started = Instant::now();
        port.write_all(&b"S\n".repeat(commands)).unwrap();
        let answers = read_n(&mut port, 3 * commands);
        let elapsed = started.elapsed();
        assert_eq!(answers, firmware::DONE.repeat(commands));

        // Three answer bytes per two-byte command: the outgoing wire is the limit.
        let wire = board.byte_time() * (3 * commands as u32);
        assert!(elapsed >= wire, "{elapsed:?} beat the wire's {wire:?}");
        assert!(
            elapsed < wire * 2 + Duration::from_millis(50),
            "{elapsed:?} is far slower than the wire's {wire:?}"
        );

        // Commands reach the firmware two byte-times apart, never sooner.
        let mut arrivals = Vec::new();
        while arrivals.len() < commands {
            if let SimEvent::Command { at, read_at, .. } = wait_for(&events, "Command", |e| {
                matches!(e, SimEvent::Command { .. })
            }) {
                assert!(at >= read_at + board.byte_time());
                arrivals.push(at);
            }
        }
        for pair in arrivals.windows(2) {
            assert!(pair[1] - pair[0] >= board.byte_time() * 2);
        }
    }

    #[test]
    fn replaces_a_stale_link_but_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("eyes");
        std::os::unix::fs::symlink("/nonexistent/tty", &link).unwrap();
        let board = SimBoard::start(options(&dir)).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), board.slave_path().unwrap());
        drop(board);
        assert!(
            fs::symlink_metadata(&link).is_err(),
            "drop removes the link"
        );

        fs::write(&link, "not a tty").unwrap();
        let error = SimBoard::start(options(&dir)).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::AlreadyExists);
        assert_eq!(fs::read_to_string(&link).unwrap(), "not a tty");
    }

    #[test]
    fn dropping_the_board_hangs_up_the_client() {
        let (_dir, board, _events) = start();
        let mut port = open_booted(&board);
        let link = board.link().to_owned();
        drop(board);
        assert!(fs::symlink_metadata(&link).is_err());
        let mut buf = [0; 8];
        assert!(port.read(&mut buf).is_err());
    }

    #[test]
    fn bad_options_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let zero_baud = SimOptions {
            baud: 0,
            ..options(&dir)
        };
        assert_eq!(
            SimBoard::start(zero_baud).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            SimBoard::start(SimOptions::default()).unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }
}
