//! What the eyes' actor receives: the handle's requests and what its links
//! read. Apart from the actor and the links, so that both depend on it and
//! neither on the other.

use std::{sync::Arc, time::Duration};

use tokio::sync::oneshot;

use super::{EyesError, Pattern};

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
pub type Reply<T> = oneshot::Sender<Result<T, EyesError>>;

/// What the handle asks for.
pub enum Request {
    /// `eye pattern`.
    Pattern {
        pattern: Pattern,
        reply: Reply<()>,
        correlation: Option<Arc<str>>,
    },
    /// `eye brightness`.
    Brightness {
        brightness: f64,
        reply: Reply<()>,
        correlation: Option<Arc<str>>,
    },
    /// A brightness level (`0`–`9`) that follows the voice while the droid
    /// speaks, or `None`: back to the brightness set. Neither changes the
    /// brightness the eyes report nor announces anything: 25 a second.
    Level {
        level: Option<u8>,
        reply: Reply<()>,
        correlation: Option<Arc<str>>,
    },
    /// The mode's pattern.
    Follow {
        pattern: Pattern,
        reply: Reply<()>,
        correlation: Option<Arc<str>>,
    },
    /// `eye test`; answered with the length of each step.
    StartTest {
        reply: Reply<Duration>,
        correlation: Option<Arc<str>>,
    },
    /// `eye test stop`.
    StopTest {
        reply: Reply<bool>,
        correlation: Option<Arc<str>>,
    },
}
