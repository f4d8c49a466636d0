//! Refusing a failing peer (`peer_ban_after`, `peer_ban_time`): wrong
//! tokens, oversized messages, connections that do not speak HTTP/2 and
//! HTTP/2 protocol errors each count a strike against the address; enough
//! of them within a minute ban it. A banned address's open connections are
//! closed, its new ones are closed at accept with a GOAWAY that says why,
//! and every other address is served as before. Each peer is a loopback
//! address of its own (127.0.0.2, …), as machines on a network would be.

mod common;

use std::{
    error::Error,
    net::{IpAddr, SocketAddr},
    time::Duration,
};

use cantina::v1::{
    DispatchRequest, EdgeStatus, GetStatusRequest, LogLevel, TailLogsRequest,
    command_service_client::CommandServiceClient, log_service_client::LogServiceClient,
    system_service_client::SystemServiceClient,
};
use common::TestServer;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpSocket, TcpStream},
};
use tonic::{
    Code, Request, Status,
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Channel, Endpoint},
};

const TOKEN: &str = "s3cret";

/// The HTTP/2 client preface.
const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A server with a token that bans after `after` strikes, its messages
/// limited to 64 KiB.
async fn server(after: usize) -> TestServer {
    let mut config = common::test_config();
    config.token = Some(TOKEN.into());
    config.peer_ban_after = after;
    // The peers here are loopback addresses, spared by default.
    config.peer_ban_loopback = true;
    config.peer_ban_time = Duration::from_secs(60);
    config.max_message_size = 64 << 10;
    TestServer::with_config(config).await
}

fn loopback(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// Sends `authorization: Bearer <token>`.
#[derive(Clone)]
struct Bearer(&'static str);

impl Interceptor for Bearer {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let value = format!("Bearer {}", self.0).parse().unwrap();
        request.metadata_mut().insert("authorization", value);
        Ok(request)
    }
}

/// A connection from `127.0.0.<last>`, or why there is none.
async fn channel(server: &TestServer, last: u8) -> Result<Channel, tonic::transport::Error> {
    Endpoint::from_shared(format!("http://{}", server.address))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .local_address(Some(loopback(last)))
        .connect()
        .await
}

type Commands = CommandServiceClient<InterceptedService<Channel, Bearer>>;

fn commands(channel: &Channel, token: &'static str) -> Commands {
    CommandServiceClient::with_interceptor(channel.clone(), Bearer(token))
}

async fn status(commands: &mut Commands) -> Result<(), Status> {
    commands
        .dispatch(DispatchRequest {
            line: "status".into(),
            correlation_id: String::new(),
        })
        .await
        .map(drop)
}

/// Whether a call failed because the server closed or refused the
/// connection (the codes a client library gives a connection that ended;
/// RESOURCE_EXHAUSTED is the GOAWAY(ENHANCE_YOUR_CALM) of a refused one,
/// whose text must then say why).
fn cut_off(status: &Status) -> bool {
    let transport = status
        .source()
        .map(|e| format!("{e:?}"))
        .unwrap_or_default();
    match status.code() {
        Code::Unavailable | Code::Cancelled | Code::Unknown => !transport.is_empty(),
        Code::ResourceExhausted => transport.contains("this address is refused for"),
        _ => false,
    }
}

/// The edge's part of GetStatus, asked from 127.0.0.1.
async fn edge(server: &TestServer) -> EdgeStatus {
    let channel = channel(server, 1).await.expect("127.0.0.1 is served");
    SystemServiceClient::with_interceptor(channel, Bearer(TOKEN))
        .get_status(GetStatusRequest {})
        .await
        .expect("GetStatus")
        .into_inner()
        .edge
        .expect("the edge")
}

/// A plain TCP connection from `127.0.0.<last>`.
async fn raw(server: &TestServer, last: u8) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::new(loopback(last), 0))
        .expect("binds a loopback address");
    socket
        .connect(server.address.parse().unwrap())
        .await
        .expect("TCP connects (the ban is applied after accept)")
}

/// Reads the server's frames until a GOAWAY or the end: the GOAWAY's error
/// code and debug text.
async fn goaway(stream: &mut TcpStream) -> Option<(u32, String)> {
    tokio::time::timeout(Duration::from_secs(5), async {
        let mut head = [0u8; 9];
        loop {
            stream.read_exact(&mut head).await.ok()?;
            let length = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
            let mut payload = vec![0u8; length];
            stream.read_exact(&mut payload).await.ok()?;
            if head[3] == 0x7 {
                let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                return Some((code, String::from_utf8_lossy(&payload[8..]).into_owned()));
            }
        }
    })
    .await
    .expect("the server answers or closes within 5 s")
}

/// Connects from `127.0.0.<last>` and expects to be turned away at once:
/// the GOAWAY's debug text.
async fn turned_away(server: &TestServer, last: u8) -> String {
    let mut stream = raw(server, last).await;
    let (code, why) = goaway(&mut stream)
        .await
        .expect("a banned peer gets a GOAWAY");
    assert_eq!(code, 0xb, "ENHANCE_YOUR_CALM: {why}");
    let mut rest = Vec::new();
    let _ = stream.read_to_end(&mut rest).await;
    why
}

/// The server's log lines containing `text` about `peer` (the log capture
/// is shared by the tests running at once in this process; each test's
/// peers are its own).
async fn log_lines(server: &TestServer, text: &str, peer: &str) -> Vec<cantina::v1::LogEntry> {
    let channel = channel(server, 1).await.unwrap();
    let mut stream = LogServiceClient::with_interceptor(channel, Bearer(TOKEN))
        .tail_logs(TailLogsRequest {
            min_level: LogLevel::Warn.into(),
            contains: text.into(),
            ..TailLogsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    let mut lines = Vec::new();
    while let Some(entry) = stream.message().await.unwrap() {
        if entry.fields.get("peer").map(String::as_str) == Some(peer) {
            lines.push(entry);
        }
    }
    lines
}

#[tokio::test]
async fn wrong_tokens_get_the_peer_refused_and_only_that_peer() {
    let server = server(3).await;
    let good = channel(&server, 1).await.unwrap();
    status(&mut commands(&good, TOKEN)).await.unwrap();

    let bad = channel(&server, 2).await.unwrap();
    let mut wrong = commands(&bad, "guess");
    for _ in 0..3 {
        let refused = status(&mut wrong).await.unwrap_err();
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }
    // Its new connections are turned away, saying why…
    let why = turned_away(&server, 2).await;
    assert!(
        why.contains("this address is refused for") && why.contains("wrong tokens"),
        "{why}"
    );
    // …even with the right token now, until the ban ends.
    match channel(&server, 2).await {
        Err(_) => {}
        Ok(again) => {
            let refused = status(&mut commands(&again, TOKEN)).await.unwrap_err();
            assert!(cut_off(&refused), "{refused:?}");
        }
    }
    // Everyone else is served as before.
    status(&mut commands(&good, TOKEN)).await.unwrap();
    status(&mut commands(&channel(&server, 3).await.unwrap(), TOKEN))
        .await
        .unwrap();

    let edge = edge(&server).await;
    assert_eq!(edge.peers_banned, 1, "{edge:?}");
    assert_eq!(edge.peer_bans, 1, "{edge:?}");
    assert_eq!(edge.auth_failures, 3, "{edge:?}");
    assert_eq!(edge.strikes, 3, "{edge:?}");
    assert!(edge.connections_refused >= 1, "{edge:?}");

    let bans = log_lines(&server, "refusing a peer's connections", "127.0.0.2").await;
    assert_eq!(bans.len(), 1, "one line for the ban: {bans:?}");
    assert_eq!(
        bans[0].fields.get("seconds").map(String::as_str),
        Some("60")
    );
    let refusals = log_lines(
        &server,
        "connections refused from a banned peer",
        "127.0.0.2",
    )
    .await;
    assert_eq!(refusals.len(), 1, "{refusals:?}");
}

#[tokio::test]
async fn a_banned_peers_open_connections_are_closed() {
    let server = server(3).await;
    // A follow stream from 127.0.0.4 with the right token…
    let first = channel(&server, 4).await.unwrap();
    let mut follow = LogServiceClient::with_interceptor(first.clone(), Bearer(TOKEN))
        .tail_logs(TailLogsRequest {
            follow: true,
            tail: 0,
            ..TailLogsRequest::default()
        })
        .await
        .unwrap()
        .into_inner();
    // …then wrong tokens from the same address on another connection.
    let second = channel(&server, 4).await.unwrap();
    let mut wrong = commands(&second, "guess");
    for _ in 0..3 {
        let _ = status(&mut wrong).await;
    }
    // The stream carries the ban's own warning, then what other clients
    // cause (127.0.0.1's commands); a write past the grace finds the peer
    // banned, and the connection ends.
    let good = channel(&server, 1).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            tokio::select! {
                message = follow.message() => match message {
                    Ok(Some(_)) => {}
                    Ok(None) => panic!("the follow ended cleanly instead of being cut off"),
                    Err(status) => return status,
                },
                _ = tokio::time::sleep(Duration::from_millis(50)) => {
                    status(&mut commands(&good, TOKEN)).await.unwrap();
                }
            }
        }
    })
    .await
    .expect("the banned peer's stream ends within 10 s");
    assert!(cut_off(&ended), "{ended:?}");
    let refused = status(&mut commands(&first, TOKEN)).await.unwrap_err();
    assert!(cut_off(&refused), "{refused:?}");
    status(&mut commands(&channel(&server, 1).await.unwrap(), TOKEN))
        .await
        .unwrap();
}

#[tokio::test]
async fn connections_that_do_not_speak_http2_get_the_peer_refused() {
    let server = server(3).await;
    for _ in 0..3 {
        let mut stream = raw(&server, 5).await;
        stream
            .write_all(b"GET / HTTP/1.1\r\nHost: droid\r\n\r\n")
            .await
            .unwrap();
        // Closed without an answer.
        let mut rest = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest))
            .await
            .expect("closed within 5 s");
    }
    turned_away(&server, 5).await;
    assert_eq!(edge(&server).await.strikes, 3);
}

#[tokio::test]
async fn http2_protocol_errors_get_the_peer_refused() {
    let server = server(3).await;
    for _ in 0..3 {
        let mut stream = raw(&server, 6).await;
        let mut bytes = PREFACE.to_vec();
        // An empty SETTINGS, then DATA on stream 0 (a connection error).
        bytes.extend_from_slice(&[0, 0, 0, 0x4, 0, 0, 0, 0, 0]);
        bytes.extend_from_slice(&[0, 0, 4, 0x0, 0, 0, 0, 0, 0, 1, 2, 3, 4]);
        stream.write_all(&bytes).await.unwrap();
        let (code, _) = goaway(&mut stream).await.expect("the server says goodbye");
        assert_eq!(code, 0x1, "PROTOCOL_ERROR");
    }
    turned_away(&server, 6).await;
    let edge = edge(&server).await;
    assert_eq!((edge.strikes, edge.peer_bans), (3, 1), "{edge:?}");
}

#[tokio::test]
async fn oversized_messages_get_the_peer_refused() {
    let server = server(3).await;
    let channel = channel(&server, 7).await.unwrap();
    let mut client = commands(&channel, TOKEN);
    for _ in 0..3 {
        let refused = client
            .dispatch(DispatchRequest {
                line: "x".repeat(100 << 10),
                correlation_id: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::OutOfRange, "{refused:?}");
    }
    turned_away(&server, 7).await;
    // Its open connection ends once the ban's grace (a quarter second) is
    // over: the answers that earned it got through first.
    let refused = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Err(refused) = status(&mut client).await {
                return refused;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the banned peer's connection ends within 5 s");
    assert!(cut_off(&refused), "{refused:?}");
}

#[tokio::test]
async fn loopback_is_spared_by_default() {
    let mut config = common::test_config();
    config.token = Some(TOKEN.into());
    config.peer_ban_after = 3;
    assert!(!config.peer_ban_loopback, "the default");
    let server = TestServer::with_config(config).await;
    let first = channel(&server, 9).await.unwrap();
    let mut wrong = commands(&first, "guess");
    for _ in 0..10 {
        let _ = status(&mut wrong).await;
    }
    status(&mut commands(&first, TOKEN)).await.unwrap();
    status(&mut commands(&channel(&server, 9).await.unwrap(), TOKEN))
        .await
        .unwrap();
    let edge = edge(&server).await;
    assert_eq!((edge.strikes, edge.peer_bans), (10, 0), "{edge:?}");
}

#[tokio::test]
async fn zero_counts_but_never_bans() {
    let server = server(0).await;
    let channel = channel(&server, 8).await.unwrap();
    let mut wrong = commands(&channel, "guess");
    for _ in 0..20 {
        let _ = status(&mut wrong).await;
    }
    status(&mut commands(&channel, TOKEN)).await.unwrap();
    let edge = edge(&server).await;
    assert_eq!((edge.strikes, edge.peer_bans), (20, 0), "{edge:?}");
}
