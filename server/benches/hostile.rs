//! Hostile clients: what a misbehaving or malicious peer on the droid's
//! network costs a well-behaved one. One run, side by side:
//!
//! The real `cantina-server` binary runs as a child process (so that its
//! resident memory is its own), on loopback, with a token. A well-behaved
//! client sends `Dispatch("status")` one call at a time, first alone, then
//! while an attacker does each of these in turn:
//!
//! 1. **idle connections**: 1,000 connections that send the HTTP/2 preface
//!    and their settings, then nothing;
//! 2. **slowloris**: 200 connections that each send one byte a second of a
//!    request (the preface, then headers), never finishing it;
//! 3. **garbage**: connections that send random bytes, or a valid preface
//!    followed by invalid HTTP/2 frames (a frame on stream 0 that may not be
//!    there, a HEADERS block that is not HPACK, a zero window update, a frame
//!    past the maximum size), over and over;
//! 4. **oversized messages**: `Dispatch` requests of 5 MiB (past the 4 MiB
//!    limit), and requests whose gRPC frame announces 4 GiB and then stops;
//! 5. **wrong tokens**: a storm of `Dispatch` calls with a wrong token;
//! 6. **stream flood**: 5,000 `TailLogs` follow streams opened and held.
//!
//! Each attacker connects from a loopback address of its own (127.0.0.2,
//! 127.0.0.3, …), as a machine on the network would; the well-behaved client
//! from 127.0.0.1. Attackers whose requests fail (wrong tokens, oversized
//! messages, broken HTTP/2) get their address banned (`peer_ban_after`), and
//! the row says after how many strikes and how many connections were then
//! refused at accept.
//!
//! The client runs alone first and again last; the better p99 of the two is
//! the reference. The attackers' threads run at the lowest priority (nice
//! 19): they stand for machines of their own, so the server's work for them
//! competes with the well-behaved client, and their own CPU does not.
//!
//! Targets: the well-behaved client's p99 within 2× of alone, and the
//! server's resident memory back within 10% of where it was before the
//! attack once the attacker has gone. Each row shows what the attacker
//! achieved, so that an attack that did not happen cannot pass.
//!
//! `cargo bench -p cantina-server --bench hostile` (add `-- --quick` for a
//! short run).

use std::{
    io::{BufRead, BufReader},
    net::{IpAddr, SocketAddr},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use cantina::{
    client::{AuthChannel, BearerAuth},
    v1::{
        DispatchRequest, EdgeStatus, GetStatusRequest, TailLogsRequest,
        command_service_client::CommandServiceClient, system_service_client::SystemServiceClient,
    },
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
    task::JoinSet,
};
use tonic::{service::interceptor::InterceptedService, transport::Endpoint};

/// The token the server expects and the well-behaved client sends.
const TOKEN: &str = "bench-token-7f3a";

/// A well-behaved call that takes longer than this counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The HTTP/2 client connection preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// How long each phase measures, and how many calls at most.
struct Plan {
    warm_up: Duration,
    measure: Duration,
    settle: Duration,
}

impl Plan {
    /// The settling time exceeds `memory_trim_interval` (5 s): freed memory
    /// is handed back at its next tick.
    const FULL: Plan = Plan {
        warm_up: Duration::from_secs(6),
        measure: Duration::from_secs(8),
        settle: Duration::from_secs(7),
    };
    const QUICK: Plan = Plan {
        warm_up: Duration::from_secs(1),
        measure: Duration::from_secs(2),
        settle: Duration::from_secs(1),
    };
}

/// The server under attack.
struct Server {
    child: Child,
    address: SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Starts the release binary with virtual hardware, a token from a file,
    /// and waits for its `listening` line.
    fn start(dir: &std::path::Path) -> Server {
        let token_file = dir.join("token");
        std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cantina-server"))
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .env("CANTINA_TOKEN_FILE", &token_file)
            // The attackers are loopback addresses, which are spared by default.
            .env("CANTINA_PEER_BAN_LOOPBACK", "true")
            .env("CANTINA_AUDIO_OUTPUT", "virtual")
            .env("CANTINA_EYES_PORT", "virtual")
            .env("CANTINA_SERVO_PORT", "virtual")
            .env("CANTINA_MUSIC_DIR", dir.join("music"))
            .env("CANTINA_DATA_DIR", dir.join("data"))
            .env("CANTINA_LOG_DIR", dir.join("logs"))
            .env("CANTINA_SHUTDOWN_GRACE", "100ms")
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("start cantina-server (cargo bench builds it)");
        // Killed and reaped on drop, whatever happens from here.
        let mut server = Server {
            child,
            address: SocketAddr::from(([0, 0, 0, 0], 0)),
        };
        std::fs::create_dir_all(dir.join("music")).unwrap();
        let stderr = BufReader::new(server.child.stderr.take().unwrap());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in stderr.lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    // Keep draining so the server never blocks on stderr.
                    continue;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("the server did not say it was listening within 30 s");
            let Ok(event) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if event["fields"]["message"] == "listening" {
                server.address = event["fields"]["address"]
                    .as_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                std::thread::spawn(move || while rx.recv().is_ok() {});
                return server;
            }
        }
    }

    /// Resident memory now, in KiB (VmRSS).
    fn rss_kib(&self) -> u64 {
        rss_of(self.child.id()).expect("the server is running")
    }

    fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// What an attacker achieved, counted as it goes.
#[derive(Default)]
struct Tally {
    /// Connections opened (or streams, for the flood).
    opened: AtomicU64,
    /// Connections or calls refused or ended by the server.
    refused: AtomicU64,
    /// Requests or frames sent.
    sent: AtomicU64,
    /// Bytes sent.
    bytes: AtomicU64,
    /// The first error message the server gave, for the table's notes.
    note: std::sync::Mutex<Option<String>>,
}

impl Tally {
    fn note(&self, text: impl Into<String>) {
        let mut note = self.note.lock().unwrap();
        if note.is_none() {
            *note = Some(text.into());
        }
    }
}

/// The attacks, in order.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Attack {
    None,
    IdleConnections,
    Slowloris,
    Garbage,
    Oversized,
    WrongTokens,
    StreamFlood,
}

impl Attack {
    const ALL: [Attack; 8] = [
        Attack::None,
        Attack::IdleConnections,
        Attack::Slowloris,
        Attack::Garbage,
        Attack::Oversized,
        Attack::WrongTokens,
        Attack::StreamFlood,
        Attack::None,
    ];

    fn name(self) -> &'static str {
        match self {
            Attack::None => "alone",
            Attack::IdleConnections => "1,000 idle connections",
            Attack::Slowloris => "slowloris (200 conns, 1 byte/s)",
            Attack::Garbage => "garbage bytes, invalid HTTP/2 frames",
            Attack::Oversized => "oversized messages",
            Attack::WrongTokens => "wrong-token storm",
            Attack::StreamFlood => "5,000 stream opens",
        }
    }

    /// Starts the attack on `tasks` from the loopback address `from` (an
    /// attacker is a machine of its own); returns once it is fully under way
    /// (every idle connection open, every stream asked for).
    async fn start(
        self,
        target: SocketAddr,
        from: IpAddr,
        tasks: &mut JoinSet<()>,
        tally: &Arc<Tally>,
    ) {
        let address = Peer { target, from };
        match self {
            Attack::None => {}
            Attack::IdleConnections => idle_connections(address, tasks, tally, 1000).await,
            Attack::Slowloris => slowloris(address, tasks, tally, 200),
            Attack::Garbage => {
                for worker in 0..4 {
                    tasks.spawn(garbage(address, tally.clone(), worker));
                }
            }
            Attack::Oversized => {
                tasks.spawn(oversized(address, tally.clone()));
                tasks.spawn(announced_huge(address, tally.clone()));
            }
            Attack::WrongTokens => {
                for _ in 0..4 {
                    tasks.spawn(wrong_tokens(address, tally.clone()));
                }
            }
            Attack::StreamFlood => stream_flood(address, tasks, tally, 5000).await,
        }
    }

    /// What the attacker achieved, for the table.
    fn achieved(self, tally: &Tally, seconds: f64) -> String {
        let opened = tally.opened.load(Relaxed);
        let refused = tally.refused.load(Relaxed);
        let sent = tally.sent.load(Relaxed);
        match self {
            Attack::None => "—".into(),
            Attack::IdleConnections => format!("{opened} open, {refused} refused"),
            Attack::Slowloris => format!("{opened} conns, {sent} bytes dripped"),
            Attack::Garbage => format!(
                "{:.0} conns/s, {:.0} KiB/s, {refused} closed by server",
                opened as f64 / seconds,
                tally.bytes.load(Relaxed) as f64 / 1024.0 / seconds
            ),
            Attack::Oversized => format!(
                "{sent} sent ({:.0} MiB/s), {refused} refused",
                tally.bytes.load(Relaxed) as f64 / (1 << 20) as f64 / seconds
            ),
            Attack::WrongTokens => {
                format!("{:.0} calls/s, {refused} refused", sent as f64 / seconds)
            }
            Attack::StreamFlood => format!("{opened} streams held, {refused} refused"),
        }
    }
}

/// Opens `count` connections that complete the HTTP/2 handshake and then
/// say nothing (their reads drain what the server sends: settings, pings).
async fn idle_connections(
    address: Peer,
    tasks: &mut JoinSet<()>,
    tally: &Arc<Tally>,
    count: usize,
) {
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<bool>(count);
    for _ in 0..count {
        let tally = tally.clone();
        let ready = ready_tx.clone();
        tasks.spawn(async move {
            let Ok(mut stream) = address.connect().await else {
                tally.refused.fetch_add(1, Relaxed);
                let _ = ready.send(false).await;
                return;
            };
            let mut hello = PREFACE.to_vec();
            hello.extend_from_slice(&frame(0x4, 0, 0, &[]));
            if stream.write_all(&hello).await.is_err() {
                tally.refused.fetch_add(1, Relaxed);
                let _ = ready.send(false).await;
                return;
            }
            tally.opened.fetch_add(1, Relaxed);
            let _ = ready.send(true).await;
            // Answer what a real idle client answers: settings and pings.
            let closed = idle_peer(&mut stream).await;
            tally.note(format!("an idle connection was closed: {closed}"));
            tally.refused.fetch_add(1, Relaxed);
            tally.opened.fetch_sub(1, Relaxed);
        });
    }
    drop(ready_tx);
    for _ in 0..count {
        ready_rx.recv().await;
    }
}

/// Reads frames until the connection ends, acknowledging the server's
/// settings and pings as any client must; returns why it ended.
async fn idle_peer(stream: &mut TcpStream) -> String {
    let mut head = [0u8; 9];
    loop {
        if let Err(e) = stream.read_exact(&mut head).await {
            return e.to_string();
        }
        let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
        let mut payload = vec![0u8; length];
        if let Err(e) = stream.read_exact(&mut payload).await {
            return e.to_string();
        }
        let answer = match (head[3], head[4] & 0x1) {
            (0x4, 0) => Some(frame(0x4, 0x1, 0, &[])),
            (0x6, 0) => Some(frame(0x6, 0x1, 0, &payload)),
            (0x7, _) => {
                let code = payload
                    .get(4..8)
                    .map_or(0, |c| u32::from_be_bytes(c.try_into().unwrap()));
                return format!("GOAWAY with error code {code}");
            }
            _ => None,
        };
        if let Some(answer) = answer
            && let Err(e) = stream.write_all(&answer).await
        {
            return e.to_string();
        }
    }
}

/// `count` connections, each dripping a request one byte a second.
fn slowloris(address: Peer, tasks: &mut JoinSet<()>, tally: &Arc<Tally>, count: usize) {
    for i in 0..count {
        let tally = tally.clone();
        tasks.spawn(async move {
            // Spread the connections over the first second.
            tokio::time::sleep(Duration::from_millis((i * 1000 / count) as u64)).await;
            let Ok(mut stream) = address.connect().await else {
                tally.refused.fetch_add(1, Relaxed);
                return;
            };
            tally.opened.fetch_add(1, Relaxed);
            let mut request = PREFACE.to_vec();
            request.extend_from_slice(&frame(0x4, 0, 0, &[]));
            // A HEADERS frame announcing a block longer than what follows.
            request.extend_from_slice(&[0, 0x40, 0, 0x1, 0x4, 0, 0, 0, 1]);
            request.extend(std::iter::repeat_n(0x82u8, 4096));
            for byte in request {
                if stream.write_all(&[byte]).await.is_err() {
                    tally.refused.fetch_add(1, Relaxed);
                    return;
                }
                tally.sent.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
    }
}

/// An HTTP/2 frame: length, type, flags, stream, payload.
fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let length = payload.len() as u32;
    let mut bytes = vec![
        (length >> 16) as u8,
        (length >> 8) as u8,
        length as u8,
        kind,
        flags,
    ];
    bytes.extend_from_slice(&stream.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// The invalid things a garbage connection sends, in turn.
fn garbage_payload(round: u64, rng: &mut u64) -> Vec<u8> {
    let mut random = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                // xorshift: cheap noise, enough for garbage.
                *rng ^= *rng << 13;
                *rng ^= *rng >> 7;
                *rng ^= *rng << 17;
                *rng as u8
            })
            .collect()
    };
    let after_preface = |frames: Vec<u8>| {
        let mut bytes = PREFACE.to_vec();
        bytes.extend_from_slice(&frame(0x4, 0, 0, &[]));
        bytes.extend_from_slice(&frames);
        bytes
    };
    match round % 6 {
        // No preface at all: noise.
        0 => random(1024),
        // DATA on stream 0, which is a connection error.
        1 => after_preface(frame(0x0, 0, 0, &random(64))),
        // HEADERS whose block is not HPACK.
        2 => after_preface(frame(0x1, 0x4 | 0x1, 1, &random(200))),
        // A zero window increment.
        3 => after_preface(frame(0x8, 0, 0, &[0, 0, 0, 0])),
        // A frame longer than the maximum frame size announced.
        4 => {
            let mut bytes = after_preface(Vec::new());
            bytes.extend_from_slice(&[0xff, 0xff, 0xff, 0x0, 0, 0, 0, 0, 1]);
            bytes.extend_from_slice(&random(512));
            bytes
        }
        // SETTINGS of a length that is not a multiple of 6.
        _ => after_preface(frame(0x4, 0, 0, &random(7))),
    }
}

/// Connects, sends garbage, waits for the server to close, again, at most
/// ~100 connections a second per worker.
async fn garbage(address: Peer, tally: Arc<Tally>, worker: u64) {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64 ^ worker;
    let mut round = worker;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    loop {
        tick.tick().await;
        round += 1;
        let Ok(mut stream) = address.connect().await else {
            continue;
        };
        tally.opened.fetch_add(1, Relaxed);
        let bytes = garbage_payload(round, &mut rng);
        if stream.write_all(&bytes).await.is_ok() {
            tally.bytes.fetch_add(bytes.len() as u64, Relaxed);
            tally.sent.fetch_add(1, Relaxed);
        }
        let mut sink = [0u8; 4096];
        let closed = tokio::time::timeout(Duration::from_secs(2), async {
            loop {
                match stream.read(&mut sink).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
            }
        })
        .await;
        if closed.is_ok() {
            tally.refused.fetch_add(1, Relaxed);
        }
    }
}

/// A connected client with the right token (the well-behaved one).
async fn client(address: SocketAddr, token: &str) -> cantina::client::Clients {
    cantina::client::connect(&address.to_string(), Some(token))
        .await
        .expect("connects")
}

/// Where an attacker connects to, and the loopback address it connects from.
#[derive(Clone, Copy, Debug)]
struct Peer {
    target: SocketAddr,
    from: IpAddr,
}

impl Peer {
    /// A TCP connection from `from`.
    async fn connect(self) -> std::io::Result<TcpStream> {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(self.from, 0))?;
        socket.connect(self.target).await
    }

    /// A gRPC channel from `from` sending `token`, connecting (again) when
    /// used, as a client library does after the server closes it.
    fn channel(self, token: &str) -> AuthChannel {
        let channel = Endpoint::from_shared(format!("http://{}", self.target))
            .unwrap()
            .local_address(Some(self.from))
            .tcp_nodelay(true)
            .connect_lazy();
        InterceptedService::new(channel, BearerAuth::new(Some(token)).unwrap())
    }
}

/// Sends 5 MiB Dispatch requests, ~10 a second.
async fn oversized(address: Peer, tally: Arc<Tally>) {
    let mut command = CommandServiceClient::new(address.channel(TOKEN));
    let line = "x".repeat(5 << 20);
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        tick.tick().await;
        tally.sent.fetch_add(1, Relaxed);
        tally.bytes.fetch_add(line.len() as u64, Relaxed);
        let result = command
            .dispatch(DispatchRequest {
                line: line.clone(),
                correlation_id: String::new(),
            })
            .await;
        if let Err(status) = result {
            tally.refused.fetch_add(1, Relaxed);
            tally.note(format!("{:?}: {}", status.code(), status.message()));
        }
    }
}

/// A header in HPACK's "literal without indexing" form (no Huffman).
fn hpack_literal(block: &mut Vec<u8>, name: &str, value: &str) {
    assert!(name.len() < 127 && value.len() < 127);
    block.push(0x00);
    block.push(name.len() as u8);
    block.extend_from_slice(name.as_bytes());
    block.push(value.len() as u8);
    block.extend_from_slice(value.as_bytes());
}

/// Connections whose one gRPC message announces 4 GiB, sends a few bytes of
/// it, then stops: written by hand, since a client library would not.
async fn announced_huge(address: Peer, tally: Arc<Tally>) {
    let mut headers = Vec::new();
    for (name, value) in [
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/cantina.v1.CommandService/Dispatch"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
        ("authorization", &format!("Bearer {TOKEN}")),
    ] {
        hpack_literal(&mut headers, name, value);
    }
    let mut request = PREFACE.to_vec();
    request.extend_from_slice(&frame(0x4, 0, 0, &[]));
    // HEADERS, END_HEADERS, stream 1.
    request.extend_from_slice(&frame(0x1, 0x4, 1, &headers));
    // DATA: the gRPC prefix announcing 0xFFFF_FFF0 bytes, then two.
    request.extend_from_slice(&frame(0x0, 0, 1, &[0, 0xff, 0xff, 0xff, 0xf0, 0x0a, 0x06]));
    let mut tick = tokio::time::interval(Duration::from_millis(50));
    loop {
        tick.tick().await;
        let Ok(mut stream) = address.connect().await else {
            continue;
        };
        if stream.write_all(&request).await.is_err() {
            continue;
        }
        tally.sent.fetch_add(1, Relaxed);
        tally.bytes.fetch_add(request.len() as u64, Relaxed);
        // Wait for the server's answer on stream 1 (HEADERS with the status,
        // or RST_STREAM), reading frame by frame.
        let answered = tokio::time::timeout(Duration::from_secs(2), async {
            let mut head = [0u8; 9];
            loop {
                stream.read_exact(&mut head).await.ok()?;
                let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
                let mut payload = vec![0u8; length];
                stream.read_exact(&mut payload).await.ok()?;
                let stream_id =
                    u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                if stream_id == 1 && (head[3] == 0x1 || head[3] == 0x3) {
                    return Some(());
                }
                if head[3] == 0x4 && head[4] & 0x1 == 0 {
                    // Acknowledge the server's settings, as a client must.
                    stream.write_all(&frame(0x4, 0x1, 0, &[])).await.ok()?;
                }
            }
        })
        .await;
        if let Ok(Some(())) = answered {
            tally.refused.fetch_add(1, Relaxed);
        }
    }
}

/// Dispatch calls with a wrong token, as fast as the server answers.
async fn wrong_tokens(address: Peer, tally: Arc<Tally>) {
    let mut command = CommandServiceClient::new(address.channel("not-the-token"));
    loop {
        tally.sent.fetch_add(1, Relaxed);
        let result = command
            .dispatch(DispatchRequest {
                line: "status".into(),
                correlation_id: String::new(),
            })
            .await;
        match result {
            Err(status) if status.code() == tonic::Code::Unauthenticated => {
                tally.refused.fetch_add(1, Relaxed);
            }
            Err(status) => tally.note(format!("{:?}: {}", status.code(), status.message())),
            Ok(_) => tally.note("a wrong token was accepted"),
        }
    }
}

/// Opens `count` TailLogs follow streams over 50 connections and holds the
/// ones the server accepts until the phase ends.
async fn stream_flood(address: Peer, tasks: &mut JoinSet<()>, tally: &Arc<Tally>, count: usize) {
    let connections = 50;
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(count);
    for _ in 0..connections {
        let channel = address.channel(TOKEN);
        for _ in 0..count / connections {
            let tally = tally.clone();
            let done = done_tx.clone();
            let mut logs = cantina::v1::log_service_client::LogServiceClient::new(channel.clone());
            tasks.spawn(async move {
                let result = logs
                    .tail_logs(TailLogsRequest {
                        follow: true,
                        tail: 0,
                        ..TailLogsRequest::default()
                    })
                    .await;
                match result {
                    Ok(response) => {
                        let mut stream = response.into_inner();
                        // The first message (or its error) tells whether the
                        // server kept the stream.
                        tally.opened.fetch_add(1, Relaxed);
                        let _ = done.send(()).await;
                        while let Ok(Some(_)) = stream.message().await {}
                    }
                    Err(status) => {
                        if status.code() == tonic::Code::ResourceExhausted {
                            tally.refused.fetch_add(1, Relaxed);
                        }
                        tally.note(format!("{:?}: {}", status.code(), status.message()));
                        let _ = done.send(()).await;
                    }
                }
            });
        }
    }
    drop(done_tx);
    // Every open answered, or 30 s: a server that stalls is a result too.
    let _ = tokio::time::timeout(Duration::from_secs(30), async {
        for _ in 0..count {
            done_rx.recv().await;
        }
    })
    .await;
}

/// The well-behaved client's latencies over `measure`, one call at a time,
/// while sampling the server's resident memory. Returns the latencies in µs,
/// the failed calls, and the highest resident memory seen.
async fn measure(
    clients: &mut cantina::client::Clients,
    server_pid: u32,
    measure: Duration,
) -> (Vec<u64>, u64, u64) {
    let start = Instant::now();
    let mut latencies = Vec::new();
    let mut failed = 0;
    let mut peak = 0;
    let mut next_sample = start;
    while start.elapsed() < measure {
        if Instant::now() >= next_sample {
            peak = peak.max(rss_of(server_pid).unwrap_or(0));
            next_sample += Duration::from_millis(100);
        }
        let sent = Instant::now();
        let call = clients.command.dispatch(DispatchRequest {
            line: "status".into(),
            correlation_id: String::new(),
        });
        match tokio::time::timeout(CALL_TIMEOUT, call).await {
            Ok(Ok(_)) => latencies.push(sent.elapsed().as_micros() as u64),
            _ => failed += 1,
        }
    }
    latencies.sort_unstable();
    (latencies, failed, peak.max(rss_of(server_pid).unwrap_or(0)))
}

/// The edge's counters (bans, strikes, refused connections), asked by the
/// well-behaved client.
async fn edge(clients: &cantina::client::Clients) -> EdgeStatus {
    SystemServiceClient::new(clients.channel.clone())
        .get_status(GetStatusRequest {})
        .await
        .expect("GetStatus")
        .into_inner()
        .edge
        .unwrap_or_default()
}

/// Resident memory of process `pid` in KiB (VmRSS), or `None` once it is gone.
fn rss_of(pid: u32) -> Option<u64> {
    cantina_server::memory::proc_status(Some(pid), "VmRSS")
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Puts the calling thread at the lowest scheduling priority (nice 19).
fn lowest_priority() {
    // SAFETY: gettid and setpriority on the calling thread only.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
    }
}

/// Raises the open-files limit to its hard limit: 1,000 idle connections and
/// 5,000 streams need more descriptors than the usual 1,024 (the server, a
/// child, inherits it).
fn raise_file_limit() {
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        let mut limit: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// One row of the table.
struct Row {
    attack: Attack,
    calls: usize,
    failed: u64,
    p50: u64,
    p99: u64,
    before: u64,
    peak: u64,
    after: u64,
    achieved: String,
    note: Option<String>,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let plan = if quick { Plan::QUICK } else { Plan::FULL };
    raise_file_limit();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(dir.path());
    let pid = server.child.id();
    let address = server.address;
    // The well-behaved client on a runtime of its own; the attackers on
    // another whose threads run at the lowest priority, standing for
    // machines of their own: the server's work for them competes with the
    // well-behaved client, their own CPU does not.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let attackers = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("attacker")
        .on_thread_start(lowest_priority)
        .enable_all()
        .build()
        .unwrap();
    let mut rows = Vec::new();
    let mut clients = runtime.block_on(client(address, TOKEN));
    // Warm up: the first calls pay for connection set-up and lazy state,
    // and every call logs a line: the log ring (10,000 entries) fills before
    // memory is compared.
    runtime.block_on(measure(&mut clients, pid, plan.warm_up));
    let baseline = server.rss_kib();

    for (n, attack) in Attack::ALL.into_iter().enumerate() {
        eprintln!("hostile: {} …", attack.name());
        let before = server.rss_kib();
        let edge_before = runtime.block_on(edge(&clients));
        let tally = Arc::new(Tally::default());
        let mut tasks = JoinSet::new();
        let started = Instant::now();
        // Each attacker from a loopback address of its own: 127.0.0.2, …
        let from = IpAddr::from([127, 0, 0, 2 + n as u8]);
        attackers.block_on(attack.start(address, from, &mut tasks, &tally));
        let (latencies, failed, peak) = runtime.block_on(measure(&mut clients, pid, plan.measure));
        let seconds = started.elapsed().as_secs_f64();
        let mut achieved = attack.achieved(&tally, seconds);
        let edge_after = runtime.block_on(edge(&clients));
        let bans = edge_after.peer_bans - edge_before.peer_bans;
        if bans > 0 {
            achieved.push_str(&format!(
                "; banned after {} strikes, then {} conns refused at accept",
                edge_after.strikes - edge_before.strikes,
                edge_after.connections_refused - edge_before.connections_refused
            ));
        }
        attackers.block_on(tasks.shutdown());
        std::thread::sleep(plan.settle);
        assert!(server.alive(), "the server died under {}", attack.name());
        let after = server.rss_kib();
        rows.push(Row {
            attack,
            calls: latencies.len(),
            failed,
            p50: percentile(&latencies, 0.50),
            p99: percentile(&latencies, 0.99),
            before,
            peak,
            after,
            achieved,
            note: tally.note.lock().unwrap().take(),
        });
    }
    let end = server.rss_kib();

    // The reference is the better of the two runs alone (first and last),
    // so that a noisy first run cannot flatter the rows under attack.
    let alone = rows
        .iter()
        .filter(|row| row.attack == Attack::None)
        .map(|row| row.p99)
        .min()
        .unwrap_or(1)
        .max(1) as f64;
    println!(
        "\nHostile clients: Dispatch(\"status\") from a well-behaved client, one call at a time, \
         {} s per row; server resident memory in MiB (before the attack, peak during, {} s after it ended).\n",
        plan.measure.as_secs(),
        plan.settle.as_secs()
    );
    println!(
        "| while | attacker achieved | calls | failed | p50 µs | p99 µs | p99 ÷ alone (≤ 2×) | RSS before | peak | after | after ÷ before (≤ 1.10) |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let mib = |kib: u64| kib as f64 / 1024.0;
    for row in &rows {
        let ratio = row.p99 as f64 / alone;
        let memory = row.after as f64 / row.before.max(1) as f64;
        println!(
            "| {} | {} | {} | {} | {} | {} | {:.2}× {} | {:.1} | {:.1} | {:.1} | {:.3} {} |",
            row.attack.name(),
            row.achieved,
            row.calls,
            row.failed,
            row.p50,
            row.p99,
            ratio,
            if ratio <= 2.0 { "✓" } else { "✗" },
            mib(row.before),
            mib(row.peak),
            mib(row.after),
            memory,
            if memory <= 1.10 { "✓" } else { "✗" },
        );
    }
    println!(
        "\nResident memory after the warm-up {:.1} MiB, at the end {:.1} MiB ({:.3}× {}).",
        mib(baseline),
        mib(end),
        end as f64 / baseline.max(1) as f64,
        if end as f64 <= baseline as f64 * 1.10 {
            "✓"
        } else {
            "✗"
        }
    );
    println!("\nWhat the server said to the attackers (first error of each):");
    for row in &rows {
        if let Some(note) = &row.note {
            println!("- {}: {note}", row.attack.name());
        }
    }
}
