//! Warnings about a peer at most once a minute: the stream caps and the
//! token check log what they turn away, and a client hammering the server
//! must not turn the log into its echo. The first refusal from a peer is
//! logged at once; later ones are counted, and the next line, a minute on or
//! later, carries how many there were. The bookkeeping is bounded: peers
//! quiet for a minute are forgotten first, and when the table is still full,
//! newcomers share one tally ("other peers") instead of growing it.

use std::{
    collections::HashMap,
    net::IpAddr,
    time::{Duration, Instant},
};

/// How often one peer may cause a warning line.
pub const WARN_EVERY: Duration = Duration::from_secs(60);

/// Peers tracked one by one; beyond them, newcomers share a tally.
pub const MAX_PEERS: usize = 1024;

/// Refusals from one peer (or from the peers sharing the overflow tally).
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    /// When its last line was logged (`None`: never).
    logged: Option<Instant>,
    /// Refusals since that line, not yet logged.
    pending: u64,
}

impl Tally {
    /// Counts one refusal at `now`; the count to log when a line is due.
    fn note(&mut self, now: Instant, every: Duration) -> Option<u64> {
        self.pending += 1;
        match self.logged {
            Some(at) if now.saturating_duration_since(at) < every => None,
            _ => {
                self.logged = Some(now);
                Some(std::mem::take(&mut self.pending))
            }
        }
    }
}

/// A warning line that is due: who, and how many refusals it covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Due {
    /// The peer; `None` for the peers sharing the overflow tally (or whose
    /// address is unknown).
    pub peer: Option<IpAddr>,
    /// Refusals since the peer's last line, this one included.
    pub count: u64,
}

/// Decides when a refusal from a peer is worth a warning line.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    max_peers: usize,
    peers: HashMap<IpAddr, Tally>,
    others: Tally,
}

impl Default for Throttle {
    /// One line per peer per [`WARN_EVERY`], [`MAX_PEERS`] peers tracked.
    fn default() -> Self {
        Self::new(WARN_EVERY, MAX_PEERS)
    }
}

impl Throttle {
    /// One line per peer per `every`, at most `max_peers` tracked one by one.
    pub fn new(every: Duration, max_peers: usize) -> Self {
        Self {
            every,
            max_peers,
            peers: HashMap::new(),
            others: Tally::default(),
        }
    }

    /// Counts a refusal from `peer` at `now`; `Some` when a line is due.
    pub fn note(&mut self, peer: Option<IpAddr>, now: Instant) -> Option<Due> {
        let every = self.every;
        let Some(ip) = peer else {
            return self
                .others
                .note(now, every)
                .map(|count| Due { peer, count });
        };
        if !self.peers.contains_key(&ip) && self.peers.len() >= self.max_peers {
            // Forget the peers quiet for a while; what they had not yet
            // logged goes to the shared tally, so no refusal goes uncounted.
            let mut unlogged = 0;
            self.peers.retain(|_, tally| {
                let quiet = tally
                    .logged
                    .is_none_or(|at| now.saturating_duration_since(at) >= every);
                if quiet {
                    unlogged += tally.pending;
                }
                !quiet
            });
            self.others.pending += unlogged;
        }
        if !self.peers.contains_key(&ip) && self.peers.len() >= self.max_peers {
            return self
                .others
                .note(now, every)
                .map(|count| Due { peer: None, count });
        }
        self.peers
            .entry(ip)
            .or_default()
            .note(now, every)
            .map(|count| Due { peer, count })
    }

    /// Peers tracked one by one now.
    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.peers.len()
    }
}

/// The address as the caps and the logs know it: an IPv4 address reached
/// over IPv6 (`::ffff:a.b.c.d`) is that IPv4 address.
pub fn canonical(addr: std::net::SocketAddr) -> IpAddr {
    addr.ip().to_canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> Option<IpAddr> {
        Some(IpAddr::from([10, 0, 0, last]))
    }

    #[test]
    fn one_line_per_peer_per_minute_with_the_count_since_the_last() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut throttle = Throttle::default();
        assert_eq!(
            throttle.note(ip(1), at(0)),
            Some(Due {
                peer: ip(1),
                count: 1
            })
        );
        for s in 1..10 {
            assert_eq!(throttle.note(ip(1), at(s)), None);
        }
        // Another peer has its own minute.
        assert_eq!(throttle.note(ip(2), at(5)).map(|d| d.count), Some(1));
        // A minute after the first line: the nine held back and this one.
        assert_eq!(
            throttle.note(ip(1), at(60)),
            Some(Due {
                peer: ip(1),
                count: 10
            })
        );
        assert_eq!(throttle.note(ip(1), at(61)), None);
    }

    #[test]
    fn many_peers_cannot_grow_the_table() {
        let start = Instant::now();
        let mut throttle = Throttle::new(WARN_EVERY, 4);
        for n in 0..100 {
            throttle.note(ip(n), start);
        }
        assert_eq!(throttle.tracked(), 4);
        // The newcomers share one tally: one line for all of them.
        let mut lines = 0;
        let mut throttle = Throttle::new(WARN_EVERY, 4);
        for n in 0..100 {
            lines += usize::from(throttle.note(ip(n), start).is_some());
        }
        assert_eq!(lines, 5, "four peers, then one line for the others");
        // A minute later the quiet peers are forgotten, their unlogged
        // refusals counted in the shared tally's next line.
        let later = start + WARN_EVERY;
        let due = throttle.note(ip(200), later).unwrap();
        assert_eq!(due.peer, ip(200));
        assert_eq!(throttle.tracked(), 1);
        let others = throttle.note(None, later).unwrap();
        assert_eq!(others.count, 96, "95 held back, and this one");
    }
}
