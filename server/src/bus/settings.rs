//! The bus's settings: inbox sizes, handler timeouts and what the bus keeps
//! for inspection. Declared with [`settings!`](crate::declare): each field's
//! `///` comment is its `--help` text.

use std::time::Duration;

use crate::declare::{self, settings};

settings! {
    /// Settings of the bus.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct BusConfig {
        /// Events that may wait for one subscriber (and one WatchEvents client) before the oldest are dropped
        pub queue_capacity: usize = setting {
            key: "bus_queue_capacity", env: "CANTINA_BUS_QUEUE_CAPACITY", default: "1000",
            parse: declare::positive,
        },
        /// Longest an event handler may take for one event
        pub handler_timeout: Duration = setting {
            key: "bus_handler_timeout", env: "CANTINA_BUS_HANDLER_TIMEOUT", default: "5s",
            parse: declare::duration,
        },
        /// Failures in a row after which an event handler is unsubscribed (0: never)
        pub max_failures: u32 = setting {
            key: "bus_max_failures", env: "CANTINA_BUS_MAX_FAILURES", default: "3",
            parse: |s| s
                .parse::<u32>()
                .map_err(|_| "use a whole number (0: never unsubscribe)".to_string()),
        },
        /// Recent events the bus keeps for inspection
        pub history: usize = setting {
            key: "bus_history", env: "CANTINA_BUS_HISTORY", default: "100",
            parse: declare::whole,
        },
        /// Failed deliveries kept for inspection: not a setting.
        pub dead_letters: usize = fixed { 100 },
    }
}

impl Default for BusConfig {
    /// The embedded defaults, as the server starts with.
    fn default() -> Self {
        declare::defaults()
    }
}
