//! The transport under the RPCs: every accepted connection has `TCP_NODELAY`
//! (without it a unary reply's trailers waited ~40 ms for the client's
//! delayed ACK) and TCP keepalive. These check the socket options of the
//! server's real accepted sockets, found among this process's descriptors,
//! not a timing.

mod common;

use std::{
    mem::ManuallyDrop,
    net::TcpStream,
    os::fd::{FromRawFd, RawFd},
};

use common::TestServer;

/// The server's side of every connection accepted on `port`: the sockets of
/// this process whose local port is the server's and that have a peer.
fn accepted(port: u16) -> Vec<(RawFd, ManuallyDrop<TcpStream>)> {
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd is readable")
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<RawFd>().ok())
        .filter_map(|fd| {
            // Borrowed, never closed: the descriptor stays the server's.
            let socket = ManuallyDrop::new(unsafe { TcpStream::from_raw_fd(fd) });
            let local = socket.local_addr().ok()?;
            socket.peer_addr().ok()?;
            (local.port() == port).then_some((fd, socket))
        })
        .collect()
}

#[tokio::test]
async fn accepted_connections_have_nodelay_and_keepalive() {
    let server = TestServer::start().await;
    let port = server.server.local_addr().port();
    // Two connections, each with a call answered on it.
    let (a, b) = (server.client().await, server.client().await);
    for mut clients in [a.clone(), b.clone()] {
        clients
            .command
            .dispatch(cantina::v1::DispatchRequest {
                line: "status".into(),
                correlation_id: String::new(),
            })
            .await
            .expect("status answers");
    }
    let sockets = accepted(port);
    assert!(
        sockets.len() >= 2,
        "the server's accepted sockets are found ({} found)",
        sockets.len()
    );
    for (fd, socket) in &sockets {
        assert!(
            socket.nodelay().expect("TCP_NODELAY is readable"),
            "accepted socket {fd} has TCP_NODELAY"
        );
        assert!(
            socket2::SockRef::from(&**socket)
                .keepalive()
                .expect("SO_KEEPALIVE is readable"),
            "accepted socket {fd} has keepalive"
        );
    }
    drop((a, b));
}
