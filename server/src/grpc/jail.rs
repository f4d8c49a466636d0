//! Refusing a peer, not only its requests (as fail2ban does). Turning a bad
//! request away is cheap, but not free: a peer that sends thousands of wrong
//! tokens, oversized messages or broken HTTP/2 a second takes a core from the
//! clients that behave. So each of those counts a strike against its IP
//! address, and `peer_ban_after` strikes within a minute ban the address:
//!
//! - its open connections are closed at their next read or write a quarter
//!   of a second after the ban (so the answer that earned it gets through);
//!   HTTP/2 keep-alive pings make sure there is one within half a minute;
//! - its new connections are held, silent, for a second ([`TARPIT`]), then
//!   get an HTTP/2 GOAWAY (ENHANCE_YOUR_CALM) whose debug text says why and
//!   for how long, and are closed: a client that reconnects at once costs an
//!   accept a second, not thousands;
//! - the ban lasts `peer_ban_time`, twice as long each time the peer is banned
//!   again (an hour at most); a peer quiet for an hour starts over.
//!
//! What counts as a strike: a request refused for its bearer token; a gRPC
//! message past `max_message_size` (when the refusal is the response's
//! headers, as for every unary call); a connection that does not open with
//! the HTTP/2 preface (or, with TLS, a TLS handshake); an HTTP/2 protocol
//! error the server closes the connection for (a GOAWAY with an error code;
//! not seen under TLS, where the frames are encrypted below this layer). A
//! stream cap reached is not one: an honest client can reach it.
//!
//! Loopback addresses (clients on the droid itself) are never banned unless
//! `peer_ban_loopback` says so, as fail2ban ignores localhost: their strikes
//! are counted, no more.
//!
//! The table is bounded ([`MAX_PEERS`]): peers neither banned nor recently
//! struck are forgotten first; beyond that, newcomers are not tracked (and so
//! cannot be banned) rather than grow it. Every ban and, once a minute per
//! peer, the connections refused are logged.

use std::{
    collections::HashMap,
    io,
    net::IpAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{
            AtomicU64, AtomicUsize,
            Ordering::{Acquire, Relaxed, Release},
        },
    },
    task::{Context, Poll, ready},
    time::{Duration, Instant},
};

use futures_util::future::BoxFuture;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tonic::{
    codegen::http,
    transport::server::{Connected, TcpConnectInfo},
};
use tracing::warn;

use super::peers::{self, Throttle};

/// Strikes count toward a ban within this long of the first.
pub const WINDOW: Duration = Duration::from_secs(60);

/// The longest ban, however often a peer comes back.
pub const MAX_BAN: Duration = Duration::from_secs(3600);

/// A peer neither struck nor banned for this long starts over from the
/// shortest ban.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);

/// Peers tracked at once.
pub const MAX_PEERS: usize = 4096;

/// What a peer did to earn a strike.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offence {
    /// A request refused for a wrong, missing or malformed bearer token.
    Token,
    /// A gRPC message past `max_message_size`.
    Oversized,
    /// A connection that did not open with the HTTP/2 preface (or a TLS
    /// handshake, with TLS).
    NotHttp2,
    /// An HTTP/2 protocol error the server closed the connection for: the
    /// GOAWAY's error code.
    Protocol(u32),
}

impl std::fmt::Display for Offence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Offence::Token => f.write_str("a request refused for its bearer token"),
            Offence::Oversized => f.write_str("a message past max_message_size"),
            Offence::NotHttp2 => f.write_str("a connection that did not speak HTTP/2"),
            Offence::Protocol(code) => write!(f, "an HTTP/2 protocol error (code {code:#x})"),
        }
    }
}

/// One peer's record.
#[derive(Clone, Copy, Debug)]
struct Record {
    /// Strikes since `window_start`.
    strikes: u32,
    /// When the current window of strikes began.
    window_start: Instant,
    /// Banned from then until then.
    banned: Option<(Instant, Instant)>,
    /// Bans so far (each one twice as long as the last).
    bans: u32,
    /// When it was last struck, or when its last ban ends (a peer that
    /// hammers through its ban is not quiet).
    last_seen: Instant,
}

impl Record {
    fn new(now: Instant) -> Self {
        Self {
            strikes: 0,
            window_start: now,
            banned: None,
            bans: 0,
            last_seen: now,
        }
    }

    /// How long the ban has been on and how long it has left, if it is on.
    fn ban(&self, now: Instant) -> Option<(Duration, Duration)> {
        let (since, until) = self.banned?;
        let left = until.saturating_duration_since(now);
        (!left.is_zero()).then(|| (now.saturating_duration_since(since), left))
    }

    fn banned_for(&self, now: Instant) -> Option<Duration> {
        self.ban(now).map(|(_, left)| left)
    }

    /// Whether it can be forgotten at `now` without losing anything that
    /// matters: not banned, no strike in the window, no ban for an hour.
    fn forgettable(&self, now: Instant) -> bool {
        self.banned_for(now).is_none()
            && now.saturating_duration_since(self.window_start) >= WINDOW
            && (self.bans == 0 || now.saturating_duration_since(self.last_seen) >= FORGET_AFTER)
    }
}

/// What [`Jail::counts`] reports, for GetStatus.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct JailCounts {
    /// Peers banned now.
    pub banned: usize,
    /// Bans since the server started.
    pub bans: u64,
    /// Connections closed at accept because their peer was banned.
    pub refused: u64,
    /// Strikes since the server started.
    pub strikes: u64,
}

#[derive(Debug)]
struct State {
    peers: HashMap<IpAddr, Record>,
    /// When to log the connections refused from a banned peer.
    refusals: Throttle,
}

#[derive(Debug)]
struct Inner {
    /// Strikes within [`WINDOW`] that ban (0: never ban).
    after: u32,
    /// The first ban's length.
    ban_time: Duration,
    /// Whether loopback addresses can be banned.
    loopback: bool,
    max_peers: usize,
    /// Bumped at every ban, so a connection checks its peer only then.
    generation: AtomicU64,
    bans: AtomicU64,
    refused: AtomicU64,
    strikes: AtomicU64,
    /// Connections of banned peers held now ([`TARPIT`]), and at most.
    held: AtomicUsize,
    max_held: usize,
    state: Mutex<State>,
}

/// The peers' strikes and bans, shared by the listener, every connection
/// and the layer that watches responses.
#[derive(Clone, Debug)]
pub struct Jail(Arc<Inner>);

impl Jail {
    /// Bans a peer for `ban_time` after `after` strikes within a minute
    /// (`after` 0: counts strikes, bans no one); loopback addresses only
    /// when `loopback`.
    pub fn new(after: u32, ban_time: Duration, loopback: bool) -> Self {
        Self::with_capacity(after, ban_time, loopback, MAX_PEERS)
    }

    fn with_capacity(after: u32, ban_time: Duration, loopback: bool, max_peers: usize) -> Self {
        Self(Arc::new(Inner {
            after,
            loopback,
            ban_time,
            max_peers,
            generation: AtomicU64::new(0),
            bans: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            strikes: AtomicU64::new(0),
            held: AtomicUsize::new(0),
            max_held: max_held(),
            state: Mutex::new(State {
                peers: HashMap::new(),
                refusals: Throttle::default(),
            }),
        }))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Counts a strike against `peer` at `now`; bans it when it has had
    /// `peer_ban_after` within a minute. Returns the ban's length if this
    /// strike began one.
    pub fn strike(&self, peer: Option<IpAddr>, offence: Offence, now: Instant) -> Option<Duration> {
        let Some(ip) = peer.filter(|ip| self.0.after > 0 && (self.0.loopback || !ip.is_loopback()))
        else {
            self.0.strikes.fetch_add(1, Relaxed);
            return None;
        };
        let mut state = self.state();
        if !state.peers.contains_key(&ip) && state.peers.len() >= self.0.max_peers {
            state.peers.retain(|_, record| !record.forgettable(now));
            if state.peers.len() >= self.0.max_peers {
                self.0.strikes.fetch_add(1, Relaxed);
                return None;
            }
        }
        let record = state.peers.entry(ip).or_insert_with(|| Record::new(now));
        if record.banned_for(now).is_some() {
            // From a connection not yet closed: the ban is already on, and
            // this is not a new strike.
            return None;
        }
        self.0.strikes.fetch_add(1, Relaxed);
        if record.bans > 0 && now.saturating_duration_since(record.last_seen) >= FORGET_AFTER {
            record.bans = 0;
        }
        if now.saturating_duration_since(record.window_start) >= WINDOW {
            record.window_start = now;
            record.strikes = 0;
        }
        record.strikes += 1;
        record.last_seen = now;
        if record.strikes < self.0.after {
            return None;
        }
        let doubling = 2u32.saturating_pow(record.bans.min(16));
        let length = self.0.ban_time.saturating_mul(doubling).min(MAX_BAN);
        record.bans += 1;
        record.strikes = 0;
        record.banned = now.checked_add(length).map(|until| (now, until));
        // The hour of quiet that forgets the bans counts from this one's end.
        record.last_seen = record.banned.map_or(now, |(_, until)| until);
        let bans = record.bans;
        drop(state);
        self.0.bans.fetch_add(1, Relaxed);
        self.0.generation.fetch_add(1, Release);
        warn!(
            peer = %ip,
            seconds = length.as_secs(),
            strikes = self.0.after,
            last = %offence,
            ban = bans,
            "refusing a peer's connections for a while: it had peer_ban_after strikes within \
             a minute (wrong tokens, oversized messages or broken HTTP/2); its open connections \
             are closed. If it is a client of yours, fix it, or raise peer_ban_after (0: never ban)"
        );
        Some(length)
    }

    /// How much longer `peer` is banned at `now`, if it is.
    pub fn banned_for(&self, peer: IpAddr, now: Instant) -> Option<Duration> {
        self.state().peers.get(&peer)?.banned_for(now)
    }

    /// How long `peer`'s ban has been on and has left at `now`, if it is on.
    fn ban(&self, peer: IpAddr, now: Instant) -> Option<(Duration, Duration)> {
        self.state().peers.get(&peer)?.ban(now)
    }

    /// The counts, for GetStatus.
    pub fn counts(&self) -> JailCounts {
        let now = Instant::now();
        JailCounts {
            banned: self
                .state()
                .peers
                .values()
                .filter(|record| record.banned_for(now).is_some())
                .count(),
            bans: self.0.bans.load(Relaxed),
            refused: self.0.refused.load(Relaxed),
            strikes: self.0.strikes.load(Relaxed),
        }
    }

    /// A connection just accepted, watched; `None` (and the connection
    /// closed) when its peer is banned. With `tls`, the connection's first
    /// byte must open a TLS handshake, and its HTTP/2 is not read (it is
    /// encrypted here).
    pub fn admit(&self, stream: TcpStream, tls: bool) -> Option<Guarded> {
        // Read before the check: a ban that lands in between is then seen
        // at the connection's first read or write.
        let seen = self.0.generation.load(Acquire);
        let ip = stream.peer_addr().ok().map(peers::canonical);
        if let Some(ip) = ip
            && self.0.after > 0
        {
            let now = Instant::now();
            if let Some(left) = self.banned_for(ip, now) {
                self.refuse(stream, ip, left, now, tls);
                return None;
            }
        }
        Some(Guarded {
            inner: stream,
            ip,
            jail: self.clone(),
            seen,
            opening: if tls { Opening::Tls } else { Opening::Http2(0) },
            frames: (!tls).then(FrameScanner::default),
        })
    }

    /// Turns away a connection from a banned peer: counts it, logs it once
    /// a minute per peer, holds it for [`TARPIT`] (while fewer than
    /// [`MAX_HELD`] are held), then tells the client why when it can and
    /// closes it.
    fn refuse(&self, stream: TcpStream, ip: IpAddr, left: Duration, now: Instant, tls: bool) {
        self.0.refused.fetch_add(1, Relaxed);
        let due = self.state().refusals.note(Some(ip), now);
        if let Some(due) = due {
            warn!(
                peer = %ip,
                refused = due.count,
                seconds_left = left.as_secs(),
                "connections refused from a banned peer (the count is since this peer's \
                 last such line)"
            );
        }
        let why = (!tls).then(|| {
            goaway(&format!(
                "cantina: this address is refused for {} more seconds after repeated \
                 wrong tokens, oversized messages or broken HTTP/2; see the server's log",
                left.as_secs().max(1)
            ))
        });
        let held = self.0.held.fetch_add(1, Relaxed);
        if held >= self.0.max_held {
            self.0.held.fetch_sub(1, Relaxed);
            say_goodbye(&stream, why.as_deref());
            return;
        }
        let jail = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(TARPIT).await;
            say_goodbye(&stream, why.as_deref());
            jail.0.held.fetch_sub(1, Relaxed);
        });
    }
}

/// How long a connection from a banned peer is held, silent, before it is
/// told why and closed. A client that reconnects as soon as it is closed (as
/// client libraries do) then costs the server one accept a second, not
/// thousands.
pub const TARPIT: Duration = Duration::from_secs(1);

/// Connections held at once, at most; beyond them, banned peers'
/// connections are closed at once. Fewer when the open-files limit is low
/// ([`max_held`]): held connections must not starve the accept loop of
/// descriptors.
pub const MAX_HELD: usize = 1024;

/// [`MAX_HELD`], or a quarter of the soft open-files limit if that is less.
fn max_held() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0 {
        usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX)
    } else {
        1024
    };
    MAX_HELD.min(soft / 4)
}

/// Drains what the client sent (so closing sends a FIN, not a reset that
/// could discard the answer), writes `why` when given, and lets the
/// connection close. Best effort: nothing here waits.
fn say_goodbye(stream: &TcpStream, why: Option<&[u8]>) {
    let mut sink = [0u8; 4096];
    for _ in 0..16 {
        match stream.try_read(&mut sink) {
            Ok(n) if n > 0 => {}
            _ => break,
        }
    }
    if let Some(why) = why {
        let _ = stream.try_write(why);
    }
}

/// HTTP/2 frame types and codes the jail writes or reads.
const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// The client connection preface every HTTP/2 connection opens with.
const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The bytes a server sends to close a connection at once: its (empty)
/// SETTINGS preface, then GOAWAY(ENHANCE_YOUR_CALM) with `why` as debug text.
fn goaway(why: &str) -> Vec<u8> {
    let debug = &why.as_bytes()[..why.len().min(256)];
    let mut bytes = vec![0, 0, 0, SETTINGS, 0, 0, 0, 0, 0];
    let length = (8 + debug.len()) as u32;
    bytes.extend_from_slice(&length.to_be_bytes()[1..]);
    bytes.extend_from_slice(&[GOAWAY, 0, 0, 0, 0, 0]);
    bytes.extend_from_slice(&0u32.to_be_bytes());
    bytes.extend_from_slice(&ENHANCE_YOUR_CALM.to_be_bytes());
    bytes.extend_from_slice(debug);
    bytes
}

/// What a connection's first bytes must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Opening {
    /// The HTTP/2 preface, of which this many bytes have matched.
    Http2(usize),
    /// A TLS record of the handshake (its first byte, 0x16).
    Tls,
    /// Checked.
    Open,
}

impl Opening {
    /// Checks the next `bytes` read; false when they cannot open a
    /// connection of the kind expected.
    fn check(&mut self, bytes: &[u8]) -> bool {
        match *self {
            Opening::Open => true,
            _ if bytes.is_empty() => true,
            Opening::Tls => {
                *self = Opening::Open;
                bytes[0] == 0x16
            }
            Opening::Http2(matched) => {
                let n = (PREFACE.len() - matched).min(bytes.len());
                if bytes[..n] != PREFACE[matched..matched + n] {
                    return false;
                }
                *self = if matched + n == PREFACE.len() {
                    Opening::Open
                } else {
                    Opening::Http2(matched + n)
                };
                true
            }
        }
    }
}

/// Follows the frames the server writes (after the client's preface, a
/// server's bytes are frames from the first) to find a GOAWAY that closes
/// the connection for an error. Payloads are skipped, not copied.
#[derive(Debug, Default)]
struct FrameScanner {
    head: [u8; 9],
    /// Bytes of the next frame header gathered.
    have: usize,
    /// Payload bytes of the current frame still to pass.
    left: usize,
    /// A GOAWAY's first eight payload bytes (last stream, error code), as
    /// they arrive.
    goaway: Option<(usize, [u8; 8])>,
}

impl FrameScanner {
    /// Passes `bytes` the server wrote; the error code of a GOAWAY with one.
    fn feed(&mut self, mut bytes: &[u8]) -> Option<u32> {
        let mut found = None;
        while !bytes.is_empty() {
            if self.left == 0 {
                let take = (self.head.len() - self.have).min(bytes.len());
                self.head[self.have..self.have + take].copy_from_slice(&bytes[..take]);
                self.have += take;
                bytes = &bytes[take..];
                if self.have == self.head.len() {
                    self.have = 0;
                    self.left =
                        u32::from_be_bytes([0, self.head[0], self.head[1], self.head[2]]) as usize;
                    self.goaway = (self.head[3] == GOAWAY && self.left >= 8).then_some((0, [0; 8]));
                }
                continue;
            }
            let take = self.left.min(bytes.len());
            if let Some((got, payload)) = &mut self.goaway {
                let n = (payload.len() - *got).min(take);
                payload[*got..*got + n].copy_from_slice(&bytes[..n]);
                *got += n;
                if *got == payload.len() {
                    let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                    if code != 0 {
                        found = Some(code);
                    }
                    self.goaway = None;
                }
            }
            self.left -= take;
            bytes = &bytes[take..];
        }
        found
    }
}

/// An accepted connection under watch: closed once its peer is banned,
/// struck when it does not open as HTTP/2 should or the server closes it
/// for a protocol error.
#[derive(Debug)]
pub struct Guarded {
    inner: TcpStream,
    ip: Option<IpAddr>,
    jail: Jail,
    /// The jail's generation last checked.
    seen: u64,
    opening: Opening,
    /// `None` under TLS.
    frames: Option<FrameScanner>,
}

/// How long after a ban begins its peer's connections still read and write:
/// the answer to the request that earned it (and what was already on its
/// way, such as the rest of that request) gets through, so the client learns
/// why.
const GRACE: Duration = Duration::from_millis(250);

impl Guarded {
    /// An error once the peer has been banned for [`GRACE`]. The jail is
    /// asked only after a new ban (and at every read and write during the
    /// grace).
    fn still_welcome(&mut self) -> io::Result<()> {
        let generation = self.jail.0.generation.load(Acquire);
        if generation == self.seen {
            return Ok(());
        }
        match self.ip.and_then(|ip| self.jail.ban(ip, Instant::now())) {
            // Asked again next time.
            Some((since, _)) if since < GRACE => Ok(()),
            Some((_, left)) => Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!(
                    "peer banned for {} s after repeated failures",
                    left.as_secs()
                ),
            )),
            None => {
                self.seen = generation;
                Ok(())
            }
        }
    }

    fn wrote(&mut self, bytes: &[u8]) {
        if let Some(code) = self.frames.as_mut().and_then(|f| f.feed(bytes)) {
            self.jail
                .strike(self.ip, Offence::Protocol(code), Instant::now());
        }
    }
}

impl Connected for Guarded {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        this.still_welcome()?;
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        if this.opening != Opening::Open && !this.opening.check(&buf.filled()[before..]) {
            this.jail.strike(this.ip, Offence::NotHttp2, Instant::now());
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the connection did not open with the HTTP/2 preface",
            )));
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.still_welcome()?;
        let n = ready!(Pin::new(&mut this.inner).poll_write(cx, buf))?;
        this.wrote(&buf[..n]);
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        this.still_welcome()?;
        let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, bufs))?;
        if this.frames.is_some() {
            let mut left = n;
            for buf in bufs {
                if left == 0 {
                    break;
                }
                let take = left.min(buf.len());
                this.wrote(&buf[..take]);
                left -= take;
            }
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The prefix of tonic's message for a request message past the limit, as
/// it is in the `grpc-message` header (percent-encoded).
const TOO_LARGE: &[u8] = b"Error,%20decoded%20message%20length%20too%20large";

/// The offence a response reports, if any: UNAUTHENTICATED (the token
/// check), or OUT_OF_RANGE for a message past the limit.
fn offence_of(headers: &http::HeaderMap) -> Option<Offence> {
    match headers.get("grpc-status")?.as_bytes() {
        b"16" => Some(Offence::Token),
        b"11"
            if headers
                .get("grpc-message")
                .is_some_and(|m| m.as_bytes().starts_with(TOO_LARGE)) =>
        {
            Some(Offence::Oversized)
        }
        _ => None,
    }
}

/// The peer of a request, from what the transport put in its extensions.
fn peer_of<B>(request: &http::Request<B>) -> Option<IpAddr> {
    let extensions = request.extensions();
    let addr = extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr);
    let addr = addr.or_else(|| {
        extensions
            .get::<tonic::transport::server::TlsConnectInfo<TcpConnectInfo>>()
            .and_then(|info| info.get_ref().remote_addr())
    });
    addr.map(peers::canonical)
}

/// A tower layer that strikes the peers of responses refusing a token or
/// an oversized message.
#[derive(Clone, Debug)]
pub struct JailLayer(pub Jail);

impl<S> tower::Layer<S> for JailLayer {
    type Service = Watched<S>;

    fn layer(&self, inner: S) -> Watched<S> {
        Watched {
            inner,
            jail: self.0.clone(),
        }
    }
}

/// The service [`JailLayer`] makes.
#[derive(Clone, Debug)]
pub struct Watched<S> {
    inner: S,
    jail: Jail,
}

impl<S, B, R> tower::Service<http::Request<B>> for Watched<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let peer = peer_of(&request);
        let jail = self.jail.clone();
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            if let Some(offence) = offence_of(response.headers()) {
                jail.strike(peer, offence, Instant::now());
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn bans_after_the_strikes_and_doubles_each_time() {
        let jail = Jail::new(3, Duration::from_secs(60), false);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(jail.strike(ip(1), Offence::Token, at(0)), None);
        assert_eq!(jail.strike(ip(1), Offence::Token, at(1)), None);
        assert_eq!(
            jail.strike(ip(2), Offence::Token, at(1)),
            None,
            "its own count"
        );
        assert_eq!(
            jail.strike(ip(1), Offence::Oversized, at(2)),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            jail.banned_for(ip(1).unwrap(), at(2)),
            Some(Duration::from_secs(60))
        );
        assert_eq!(jail.banned_for(ip(2).unwrap(), at(2)), None);
        // Strikes from connections not yet closed do not extend it.
        assert_eq!(jail.strike(ip(1), Offence::Token, at(3)), None);
        assert_eq!(jail.banned_for(ip(1).unwrap(), at(62)), None, "over");
        // Back and at it again: twice as long.
        for s in 62..64 {
            assert_eq!(jail.strike(ip(1), Offence::NotHttp2, at(s)), None);
        }
        assert_eq!(
            jail.strike(ip(1), Offence::Protocol(1), at(64)),
            Some(Duration::from_secs(120))
        );
        let counts = jail.counts();
        assert_eq!(
            (counts.bans, counts.strikes),
            (2, 7),
            "the one while banned is not"
        );
        // An hour's quiet after the ban: back to the first length.
        let later = 64 + 120 + 3600;
        for s in later..later + 2 {
            jail.strike(ip(1), Offence::Token, at(s));
        }
        assert_eq!(
            jail.strike(ip(1), Offence::Token, at(later + 2)),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn the_quiet_that_forgets_bans_counts_from_the_end_of_the_last() {
        let jail = Jail::new(1, Duration::from_secs(60), false);
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(
            jail.strike(ip(1), Offence::Token, at(0)),
            Some(Duration::from_secs(60))
        );
        // An hour after the ban began, but not an hour after it ended.
        assert_eq!(
            jail.strike(ip(1), Offence::Token, at(3659)),
            Some(Duration::from_secs(120))
        );
        // The longest ban does not start the doubling over either.
        let mut t = 3659 + 120;
        let mut last = Duration::ZERO;
        for _ in 0..8 {
            last = jail.strike(ip(1), Offence::Token, at(t)).unwrap();
            t += last.as_secs();
        }
        assert_eq!(last, MAX_BAN);
        assert_eq!(jail.strike(ip(1), Offence::Token, at(t)), Some(MAX_BAN));
    }

    #[test]
    fn strikes_older_than_a_minute_do_not_count() {
        let jail = Jail::new(3, Duration::from_secs(60), false);
        let t0 = Instant::now();
        for s in [0, 30, 61, 100] {
            assert_eq!(
                jail.strike(ip(1), Offence::Token, t0 + Duration::from_secs(s)),
                None
            );
        }
        assert!(
            jail.strike(ip(1), Offence::Token, t0 + Duration::from_secs(110))
                .is_some()
        );
    }

    #[test]
    fn bans_never_with_zero_and_not_the_unknown_peer() {
        let never = Jail::new(0, Duration::from_secs(60), false);
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(never.strike(ip(1), Offence::Token, now), None);
            assert_eq!(never.strike(None, Offence::Token, now), None);
        }
        assert_eq!(never.counts().strikes, 200);
        let jail = Jail::new(1, Duration::from_secs(60), false);
        assert_eq!(jail.strike(None, Offence::Token, now), None);
    }

    #[test]
    fn loopback_is_banned_only_when_asked() {
        let now = Instant::now();
        let local = Some(IpAddr::from([127, 0, 0, 2]));
        let v6 = Some(IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
        let spared = Jail::new(1, Duration::from_secs(60), false);
        assert_eq!(spared.strike(local, Offence::Token, now), None);
        assert_eq!(spared.strike(v6, Offence::Token, now), None);
        assert_eq!(spared.counts().strikes, 2, "counted all the same");
        let strict = Jail::new(1, Duration::from_secs(60), true);
        assert!(strict.strike(local, Offence::Token, now).is_some());
    }

    #[test]
    fn many_peers_cannot_grow_the_table() {
        let jail = Jail::with_capacity(2, Duration::from_secs(60), false, 4);
        let now = Instant::now();
        for n in 0..100 {
            jail.strike(ip(n), Offence::Token, now);
        }
        assert_eq!(jail.state().peers.len(), 4);
        // The tracked ones can still be banned.
        assert!(jail.strike(ip(0), Offence::Token, now).is_some());
        // A minute later, the ones not banned are forgotten for newcomers.
        let later = now + WINDOW;
        jail.strike(ip(200), Offence::Token, later);
        assert!(jail.state().peers.contains_key(&ip(200).unwrap()));
        assert!(jail.state().peers.contains_key(&ip(0).unwrap()), "banned");
    }

    #[test]
    fn the_preface_must_open_the_connection_in_any_pieces() {
        for split in [1, 5, 24] {
            let mut opening = Opening::Http2(0);
            for piece in PREFACE.chunks(split) {
                assert!(opening.check(piece));
            }
            assert_eq!(opening, Opening::Open);
            assert!(opening.check(b"anything after"));
        }
        let mut opening = Opening::Http2(0);
        assert!(opening.check(b"PRI * HT"));
        assert!(!opening.check(b"XP/2.0"));
        assert!(!Opening::Http2(0).check(b"GET / HTTP/1.1\r\n"));
        assert!(Opening::Tls.check(&[0x16, 3, 1]));
        assert!(!Opening::Tls.check(b"PRI"));
        assert!(Opening::Http2(0).check(b""), "nothing yet is not wrong");
    }

    #[test]
    fn finds_a_goaway_with_an_error_in_any_pieces() {
        let mut bytes = vec![0, 0, 6, SETTINGS, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 100];
        // A PING, then a GOAWAY(PROTOCOL_ERROR) with debug text.
        bytes.extend_from_slice(&[0, 0, 8, 0x6, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[7; 8]);
        bytes.extend_from_slice(&[0, 0, 12, GOAWAY, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]);
        bytes.extend_from_slice(b"oops");
        for split in [1, 2, 7, 9, 100] {
            let mut scanner = FrameScanner::default();
            let found: Vec<_> = bytes
                .chunks(split)
                .filter_map(|c| scanner.feed(c))
                .collect();
            assert_eq!(found, [1], "split {split}");
        }
        // A graceful GOAWAY (NO_ERROR) is no offence; nor is a DATA frame
        // whose payload looks like one.
        let mut scanner = FrameScanner::default();
        assert_eq!(scanner.feed(&goaway("x")[..9]), None);
        let mut graceful = vec![0, 0, 8, GOAWAY, 0, 0, 0, 0, 0];
        graceful.extend_from_slice(&[0; 8]);
        let mut data = vec![0, 0, 17, 0x0, 0, 0, 0, 0, 1];
        data.extend_from_slice(&[0, 0, 8, GOAWAY, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        let mut scanner = FrameScanner::default();
        assert_eq!(scanner.feed(&graceful), None);
        assert_eq!(scanner.feed(&data), None);
    }

    #[test]
    fn the_goaway_written_to_a_banned_peer_reads_back() {
        let bytes = goaway("banned");
        let mut scanner = FrameScanner::default();
        assert_eq!(scanner.feed(&bytes), Some(ENHANCE_YOUR_CALM));
        assert!(bytes.ends_with(b"banned"));
    }

    #[test]
    fn responses_that_strike() {
        // The headers as tonic writes them for each status.
        let offence = |status: tonic::Status| offence_of(status.into_http::<()>().headers());
        assert_eq!(
            offence(tonic::Status::unauthenticated("invalid token")),
            Some(Offence::Token)
        );
        assert_eq!(
            offence(tonic::Status::out_of_range(
                "Error, decoded message length too large: found 5242885 bytes, \
                 the limit is: 4194304 bytes"
            )),
            Some(Offence::Oversized)
        );
        assert_eq!(offence(tonic::Status::out_of_range("past the end")), None);
        assert_eq!(
            offence(tonic::Status::invalid_argument("bad command")),
            None
        );
        assert_eq!(offence_of(&http::HeaderMap::new()), None);
    }
}
