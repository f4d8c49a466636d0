//! The wire under the servos' actor: a real serial port (the `serialport`
//! crate) or the virtual Maestro inside the server. Either way the actor
//! writes bytes, and what the board sends back arrives in the actor's inbox
//! as [`Msg::Received`], tagged with the link's id so that a stale link's
//! bytes are told apart from the current one's.

use std::{
    collections::VecDeque,
    io::{self, Read, Write},
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread::{self, JoinHandle},
    time::{Duration, Instant},
};

use serialport::{ClearBuffer, DataBits, FlowControl, Parity, SerialPort, StopBits};

use super::{
    maestro::Maestro,
    message::Msg,
    protocol::{self, BAUD, PortInfo, byte_time},
};

/// How long the reader waits in one read before checking whether it should
/// stop: bounds how long dropping a link takes.
const READ_POLL: Duration = Duration::from_millis(50);

/// An open link to a board.
pub struct Link {
    /// Tags this link's messages.
    pub id: u64,
    writer: Writer,
    stop: Arc<AtomicBool>,
    reader: Option<JoinHandle<()>>,
}

enum Writer {
    Serial(Box<dyn SerialPort>),
    Virtual(mpsc::Sender<Vec<u8>>),
}

impl Link {
    /// Opens the serial port at `path` at 115,200 baud 8N1 and starts
    /// reading it. (A Maestro does not reset when its port is opened.)
    pub fn serial(
        path: &str,
        id: u64,
        inbox: mpsc::Sender<Msg>,
        write_timeout: Duration,
    ) -> Result<Link, String> {
        let port = serialport::new(path, BAUD)
            .data_bits(DataBits::Eight)
            .parity(Parity::None)
            .stop_bits(StopBits::One)
            .flow_control(FlowControl::None)
            .timeout(write_timeout)
            .open()
            .map_err(|e| describe_open_error(path, &e))?;
        // Whatever a previous session left in the buffers is not an answer.
        let _ = port.clear(ClearBuffer::All);
        let mut reader = port
            .try_clone()
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        reader
            .set_timeout(READ_POLL)
            .map_err(|e| format!("cannot read {path}: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let reader = thread::Builder::new()
            .name("servos-serial-rx".into())
            .spawn({
                let stop = stop.clone();
                move || {
                    let mut buf = [0u8; 256];
                    while !stop.load(Ordering::Relaxed) {
                        let failure = match reader.read(&mut buf) {
                            Ok(0) => "the port was closed (end of file)".to_string(),
                            Ok(n) => {
                                let _ = inbox.send(Msg::Received {
                                    link: id,
                                    bytes: buf[..n].to_vec(),
                                });
                                continue;
                            }
                            Err(e)
                                if matches!(
                                    e.kind(),
                                    io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                                ) =>
                            {
                                continue;
                            }
                            Err(e) => format!("reading the port failed: {e}"),
                        };
                        let _ = inbox.send(Msg::Failed {
                            link: id,
                            error: failure,
                        });
                        break;
                    }
                }
            })
            .map_err(|e| format!("cannot start the serial reader: {e}"))?;
        Ok(Link {
            id,
            writer: Writer::Serial(port),
            stop,
            reader: Some(reader),
        })
    }

    /// Starts the virtual Maestro of `channels` channels: the board model on
    /// a thread, at the pace of a 115,200-baud line.
    pub fn virtual_board(id: u64, inbox: mpsc::Sender<Msg>, channels: u8) -> Link {
        let (tx, rx) = mpsc::channel::<Vec<u8>>();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = thread::Builder::new()
            .name("servos-virtual".into())
            .spawn(move || run_virtual(id, &rx, &inbox, channels))
            .ok();
        Link {
            id,
            writer: Writer::Virtual(tx),
            stop,
            reader,
        }
    }

    /// Sends bytes to the board.
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match &mut self.writer {
            Writer::Serial(port) => port.write_all(bytes),
            Writer::Virtual(tx) => tx.send(bytes.to_vec()).map_err(|_| {
                io::Error::new(io::ErrorKind::BrokenPipe, "the virtual board stopped")
            }),
        }
    }
}

impl Drop for Link {
    /// Closes the port and waits for the reader, so that the port can be
    /// opened again at once (it is opened exclusively).
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the writer closes the port or ends the virtual board.
        self.writer = Writer::Virtual(mpsc::channel().0);
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// The virtual board: every byte "arrives" one byte-time after the one
/// before and is handled by the board model; each answer goes back when the
/// line would have carried it. Both directions run at once, as on a real
/// (full-duplex) line.
fn run_virtual(id: u64, rx: &mpsc::Receiver<Vec<u8>>, inbox: &mpsc::Sender<Msg>, channels: u8) {
    let tick = byte_time(BAUD);
    let mut board = Maestro::new(channels, Instant::now());
    let send = |bytes: Vec<u8>| inbox.send(Msg::Received { link: id, bytes }).is_ok();
    let mut wire_in = Instant::now();
    let mut wire_out = Instant::now();
    // Answers on their way back, with when their last byte arrives.
    let mut pending: VecDeque<(Instant, Vec<u8>)> = VecDeque::new();
    loop {
        let now = Instant::now();
        let mut due = Vec::new();
        while pending.front().is_some_and(|(at, _)| *at <= now) {
            let (_, answer) = pending.pop_front().expect("front exists");
            due.extend(answer);
        }
        if !due.is_empty() && !send(due) {
            return;
        }
        let incoming = match pending.front() {
            Some((at, _)) => match rx.recv_timeout(at.saturating_duration_since(now)) {
                Ok(bytes) => Some(bytes),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            },
            None => match rx.recv() {
                Ok(bytes) => Some(bytes),
                Err(_) => return,
            },
        };
        for b in incoming.into_iter().flatten() {
            wire_in = wire_in.max(Instant::now()) + tick;
            let receipt = board.receive(b, wire_in);
            if !receipt.answer.is_empty() {
                wire_out = wire_out.max(wire_in) + tick * receipt.answer.len() as u32;
                pending.push_back((wire_out, receipt.answer));
            }
        }
    }
}

/// Says what went wrong opening a port, and what to do.
fn describe_open_error(path: &str, e: &serialport::Error) -> String {
    match e.kind() {
        serialport::ErrorKind::NoDevice | serialport::ErrorKind::Io(io::ErrorKind::NotFound) => {
            format!("no device at {path} (is the Maestro plugged in and powered?)")
        }
        serialport::ErrorKind::Io(io::ErrorKind::PermissionDenied) => format!(
            "permission denied opening {path}: add the server's user to the port's group (often `dialout`)"
        ),
        _ if e.description.contains("busy") || e.description.contains("Busy") => {
            format!("{path} is in use by another program (the Maestro Control Center?): {e}")
        }
        _ => format!("cannot open {path}: {e}"),
    }
}

/// The serial ports present, as the protocol's port choice needs them.
pub fn list_ports() -> Vec<PortInfo> {
    serialport::available_ports()
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            let usb = match p.port_type {
                serialport::SerialPortType::UsbPort(usb) => Some((usb.vid, usb.pid)),
                _ => None,
            };
            PortInfo {
                path: p.port_name,
                usb,
            }
        })
        .collect()
}

/// The channel count of the Maestro at `path`, when the port listing knows
/// it by its USB id (through a symlink too).
pub fn channels_at(path: &str) -> Option<u8> {
    let wanted = Path::new(path).canonicalize().ok();
    list_ports().into_iter().find_map(|p| {
        let same =
            p.path == path || wanted.is_some() && Path::new(&p.path).canonicalize().ok() == wanted;
        let (vid, pid) = p.usb?;
        same.then(|| protocol::channels_of(vid, pid)).flatten()
    })
}
