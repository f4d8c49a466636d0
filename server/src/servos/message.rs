//! What the servos' actor receives: the handle's requests and what its
//! links read. Apart from the actor and the links, so that both depend on
//! it and neither on the other.

use std::{sync::Arc, time::Duration};

use tokio::sync::oneshot;

use super::{BoardReport, MoveId, MoveStarted, ServoError, motion::Easing};

/// A message to the actor.
pub enum Msg {
    /// From the handle.
    Request(Request),
    /// Bytes the board sent on link `link`.
    Received {
        /// The link's id.
        link: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// Link `link` broke.
    Failed {
        /// The link's id.
        link: u64,
        /// What happened.
        error: String,
    },
    /// Stop the actor.
    Stop,
}

/// Where a request's answer goes.
pub type Reply<T> = oneshot::Sender<Result<T, ServoError>>;

/// What the handle asks for. Servos are named by their index in the
/// configuration, checked by the handle.
pub enum Request {
    /// A move to `goal` (quarter-µs, within the servo's range).
    Move {
        servo: usize,
        goal: u16,
        duration: Duration,
        easing: Easing,
        reply: Reply<MoveStarted>,
        correlation: Option<Arc<str>>,
    },
    /// These servos to their homes.
    Home {
        servos: Vec<usize>,
        reply: Reply<Vec<MoveStarted>>,
        correlation: Option<Arc<str>>,
    },
    /// These servos' moves stopped where they are.
    Halt {
        servos: Vec<usize>,
        reply: Reply<Vec<MoveId>>,
        correlation: Option<Arc<str>>,
    },
    /// What the board itself says: positions, moving state, errors.
    ReadBack {
        reply: Reply<BoardReport>,
        correlation: Option<Arc<str>>,
    },
}
