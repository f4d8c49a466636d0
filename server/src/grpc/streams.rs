//! Caps on the long-lived streams (TailLogs, WatchEvents, WatchPlans,
//! RunPlan): at most `max_streams` open at once server-wide and
//! `max_streams_per_peer` from one peer address. tower's per-connection
//! concurrency limit cannot do this: it frees its slot when a response
//! starts, not when its stream ends, so one client could hold thousands of
//! follows open on a few connections.
//!
//! A stream is admitted before its handler does any work, and its [`Permit`]
//! is moved into the response stream ([`Permit::hold`]), so the slot is
//! released exactly when the stream is dropped: it ended, the client
//! cancelled it, or its connection closed. Admission takes a mutex for a few
//! instructions and never waits.
//!
//! What each stream buffers is bounded by the settings that already size it:
//! a bus subscription's inbox (`bus_queue_capacity`; WatchEvents, WatchPlans
//! and RunPlan), the log followers' channel (`log_follower_buffer`) and the
//! ring a backlog is taken from (`log_ring_size`; TailLogs). A slow reader
//! loses the oldest items, and is told so (a missed or gap marker), rather
//! than growing the server's memory.

use std::{
    collections::HashMap,
    net::IpAddr,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    task::{Context, Poll},
    time::Instant,
};

use futures_util::Stream;
use tonic::{Request, Status};
use tracing::warn;

use super::peers::{self, Throttle};

/// The stream caps, shared by the services that serve streams.
#[derive(Clone, Debug)]
pub struct StreamLimits {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Most streams open at once, server-wide.
    max: usize,
    /// Most streams open at once from one peer address.
    per_peer: usize,
    /// The streams open now, and when to warn about refusals.
    state: Mutex<State>,
    /// Streams refused since the server started.
    refused: AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    /// Streams open now.
    open: usize,
    /// Streams open now, by peer; a peer leaves when its last one closes.
    peers: HashMap<IpAddr, usize>,
    /// When a refusal is worth a warning line.
    warnings: Throttle,
}

/// The counts GetStatus reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StreamCounts {
    /// Streams open now.
    pub open: usize,
    /// Peer addresses with a stream open now.
    pub peers: usize,
    /// Streams refused since the server started.
    pub refused: u64,
    /// The server-wide cap (`max_streams`).
    pub max: usize,
    /// The per-peer cap (`max_streams_per_peer`).
    pub per_peer: usize,
}

/// Which cap refused a stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cap {
    ServerWide,
    PerPeer,
}

impl StreamLimits {
    /// Caps of `max` streams server-wide and `per_peer` from one address.
    pub fn new(max: usize, per_peer: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                max,
                per_peer,
                state: Mutex::default(),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// Admits one stream of `rpc` for the peer that sent `request`, or
    /// RESOURCE_EXHAUSTED naming the cap it would exceed.
    pub fn admit<T>(&self, rpc: &str, request: &Request<T>) -> Result<Permit, Status> {
        self.admit_from(rpc, request.remote_addr().map(peers::canonical))
    }

    /// Admits one stream of `rpc` from `peer` (`None`: an address the
    /// transport did not give, counted server-wide only).
    fn admit_from(&self, rpc: &str, peer: Option<IpAddr>) -> Result<Permit, Status> {
        let inner = &self.inner;
        let (cap, due) = {
            let mut state = inner.state.lock().expect("stream limits lock");
            let from_peer = peer.map_or(0, |ip| state.peers.get(&ip).copied().unwrap_or(0));
            let cap = if state.open >= inner.max {
                Cap::ServerWide
            } else if peer.is_some() && from_peer >= inner.per_peer {
                Cap::PerPeer
            } else {
                state.open += 1;
                if let Some(ip) = peer {
                    *state.peers.entry(ip).or_default() += 1;
                }
                return Ok(Permit {
                    inner: inner.clone(),
                    peer,
                });
            };
            inner.refused.fetch_add(1, Relaxed);
            (cap, state.warnings.note(peer, Instant::now()))
        };
        let who = peer.map_or_else(|| "this peer".to_string(), |ip| ip.to_string());
        if let Some(due) = due {
            let limit = match cap {
                Cap::ServerWide => "max_streams",
                Cap::PerPeer => "max_streams_per_peer",
            };
            let from = due
                .peer
                .map_or_else(|| "other peers".to_string(), |ip| ip.to_string());
            warn!(
                peer = %from,
                refused = due.count,
                limit,
                "streams refused: a cap on open streams was reached \
                 (the count is since this peer's last such line)"
            );
        }
        Err(Status::resource_exhausted(match cap {
            Cap::ServerWide => format!(
                "{rpc} refused: the server already holds its most streams at once \
                 (max_streams = {}); close some streams (follows, watches, plan runs) \
                 or raise max_streams (CANTINA_MAX_STREAMS)",
                inner.max
            ),
            Cap::PerPeer => format!(
                "{rpc} refused: {who} already holds its most streams at once \
                 (max_streams_per_peer = {}); close some of its streams (follows, \
                 watches, plan runs) or raise max_streams_per_peer \
                 (CANTINA_MAX_STREAMS_PER_PEER)",
                inner.per_peer
            ),
        }))
    }

    /// The counts GetStatus reports.
    pub fn counts(&self) -> StreamCounts {
        let inner = &self.inner;
        let state = inner.state.lock().expect("stream limits lock");
        StreamCounts {
            open: state.open,
            peers: state.peers.len(),
            refused: inner.refused.load(Relaxed),
            max: inner.max,
            per_peer: inner.per_peer,
        }
    }
}

/// One admitted stream's slot, released when dropped.
#[derive(Debug)]
pub struct Permit {
    inner: Arc<Inner>,
    peer: Option<IpAddr>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut state = self.inner.state.lock().expect("stream limits lock");
        state.open -= 1;
        if let Some(ip) = self.peer
            && let Some(count) = state.peers.get_mut(&ip)
        {
            *count -= 1;
            if *count == 0 {
                state.peers.remove(&ip);
            }
        }
    }
}

/// A response stream holding its permit.
pub type Held<T> = Pin<Box<dyn Stream<Item = T> + Send>>;

impl Permit {
    /// `stream`, holding this permit until it is dropped.
    pub fn hold<T: 'static>(self, stream: Held<T>) -> Held<T> {
        Box::pin(Holding {
            stream,
            _permit: self,
        })
    }
}

/// A stream and the permit it holds.
struct Holding<T> {
    stream: Held<T>,
    _permit: Permit,
}

impl<T> Stream for Holding<T> {
    type Item = T;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<T>> {
        self.stream.as_mut().poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.stream.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn the_per_peer_cap_names_itself_and_frees_a_slot_on_drop() {
        let limits = StreamLimits::new(10, 2);
        let first = limits.admit_from("TailLogs", ip(1)).unwrap();
        let _second = limits.admit_from("TailLogs", ip(1)).unwrap();
        let refused = limits.admit_from("WatchEvents", ip(1)).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert!(
            refused.message().contains("max_streams_per_peer = 2")
                && refused
                    .message()
                    .starts_with("WatchEvents refused: 10.0.0.1"),
            "{}",
            refused.message()
        );
        // Another address has its own share.
        let _other = limits.admit_from("TailLogs", ip(2)).unwrap();
        drop(first);
        let _again = limits.admit_from("TailLogs", ip(1)).unwrap();
        assert_eq!(
            limits.counts(),
            StreamCounts {
                open: 3,
                peers: 2,
                refused: 1,
                max: 10,
                per_peer: 2
            }
        );
    }

    #[test]
    fn the_server_wide_cap_counts_every_peer() {
        let limits = StreamLimits::new(2, 5);
        let a = limits.admit_from("RunPlan", ip(1)).unwrap();
        let _b = limits.admit_from("RunPlan", None).unwrap();
        let refused = limits.admit_from("WatchPlans", ip(3)).unwrap_err();
        assert!(
            refused.message().contains("(max_streams = 2)"),
            "{}",
            refused.message()
        );
        drop(a);
        assert!(limits.admit_from("WatchPlans", ip(3)).is_ok());
    }

    #[test]
    fn a_peer_leaves_the_table_with_its_last_stream() {
        let limits = StreamLimits::new(10_000, 10_000);
        let permits: Vec<_> = (0..=255)
            .map(|n| limits.admit_from("TailLogs", ip(n)).unwrap())
            .collect();
        assert_eq!(limits.counts().peers, 256);
        drop(permits);
        let counts = limits.counts();
        assert_eq!((counts.open, counts.peers), (0, 0));
    }

    #[tokio::test]
    async fn the_stream_holds_its_permit_until_dropped() {
        use futures_util::StreamExt;
        let limits = StreamLimits::new(1, 1);
        let permit = limits.admit_from("TailLogs", ip(1)).unwrap();
        let mut stream = permit.hold(Box::pin(futures_util::stream::iter([1, 2])));
        assert_eq!(stream.next().await, Some(1));
        assert!(limits.admit_from("TailLogs", ip(2)).is_err());
        // Ended but not dropped: still held (the transport drops it).
        assert_eq!(stream.next().await, Some(2));
        assert_eq!(stream.next().await, None);
        assert_eq!(limits.counts().open, 1);
        drop(stream);
        assert_eq!(limits.counts().open, 0);
    }
}
