//! The eyes' settings: how the serial link to the board behaves, and where
//! the board is. Declared with [`settings!`](crate::declare): each field's
//! `///` comment is its `--help` text.

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

use crate::declare::{self, Show, quote, settings};

settings! {
    /// How the eyes' serial link behaves.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct EyesSettings {
        /// How long the eyes' board may take to answer a command before it counts as lost
        pub answer_timeout: Duration = setting {
            key: "eyes_answer_timeout", env: "CANTINA_EYES_ANSWER_TIMEOUT", default: "1s",
            parse: declare::duration,
        },
        /// How long to wait for the board's ready line after opening its port
        pub boot_timeout: Duration = setting {
            key: "eyes_boot_timeout", env: "CANTINA_EYES_BOOT_TIMEOUT", default: "3s",
            parse: declare::duration_or_zero,
        },
        /// When the eyes are quiet this long, check that the board still answers (0s: never)
        pub heartbeat: Duration = setting {
            key: "eyes_heartbeat", env: "CANTINA_EYES_HEARTBEAT", default: "2s",
            parse: declare::duration_or_zero,
        },
        /// Longest wait between attempts to reopen a lost board (the wait doubles from 250ms)
        pub retry_max: Duration = setting {
            key: "eyes_retry_max", env: "CANTINA_EYES_RETRY_MAX", default: "3s",
            parse: declare::duration,
        },
        /// How long each `eye test` pattern shows: 1 s, as the original; not a
        /// setting, tests shorten it.
        pub test_step: Duration = fixed { Duration::from_secs(1) },
    }
}

/// Where the eyes are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EyesPort {
    /// Find the Arduino, falling back to `Virtual` when there is none.
    Auto,
    /// The virtual eyes inside the server.
    Virtual,
    /// An explicit serial port.
    Path(PathBuf),
}

impl fmt::Display for EyesPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EyesPort::Auto => f.write_str("auto"),
            EyesPort::Virtual => f.write_str("virtual"),
            EyesPort::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

impl FromStr for EyesPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" => Err("use a serial port path, `auto` or `virtual`".into()),
            "auto" => Ok(EyesPort::Auto),
            "virtual" => Ok(EyesPort::Virtual),
            _ => Ok(EyesPort::Path(PathBuf::from(s))),
        }
    }
}

impl Show for EyesPort {
    const TYPE: &'static str = "port";
    fn show(&self) -> Option<String> {
        Some(quote(&self.to_string()))
    }
}
