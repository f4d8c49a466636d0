//! The logs' settings: the ring, dedup, session files and followers, and the
//! formats of the lines on stderr and in the files. Declared with
//! [`settings!`](crate::declare): each field's `///` comment is its `--help`
//! text.

use std::{fmt, str::FromStr, time::Duration};

use crate::declare::{self, Show, quote, settings};

settings! {
    /// Settings of log capture, the ring, dedup, session files and followers.
    // The help texts are written for `--help`, not for rustdoc.
    #[allow(rustdoc::broken_intra_doc_links)]
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct LogSettings {
        /// Recent log entries kept in memory for TailLogs
        pub ring_size: usize = setting {
            key: "log_ring_size", env: "CANTINA_LOG_RING_SIZE", default: "10000",
            parse: declare::positive,
        },
        /// Identical entries (service, level, message, fields, correlation id) within this window are folded into counts, reported at every flush (0s: never)
        pub dedup_window: Duration = setting {
            key: "log_dedup_window", env: "CANTINA_LOG_DEDUP_WINDOW", default: "30s",
            parse: declare::duration_or_zero,
        },
        /// Session log file format: `text` ([time] LEVEL service message key=value) or `json` (JSON lines)
        pub file_format: LogFileFormat = setting {
            key: "log_file_format", env: "CANTINA_LOG_FILE_FORMAT", default: "text",
            parse: str::parse,
        },
        /// Longest an entry or a dedup count waits before the session file is written and synced: the most a crash loses
        pub flush_interval: Duration = setting {
            key: "log_flush_interval", env: "CANTINA_LOG_FLUSH_INTERVAL", default: "1s",
            parse: declare::duration,
        },
        /// Session log files kept (oldest deleted first; 0: keep all)
        pub retention_files: usize = setting {
            key: "log_retention_files", env: "CANTINA_LOG_RETENTION_FILES", default: "20",
            parse: declare::whole,
        },
        /// Total size of the session log files kept (oldest deleted first)
        pub retention_bytes: u64 = setting {
            key: "log_retention_size", env: "CANTINA_LOG_RETENTION_SIZE", default: "100MiB",
            type: "size",
            parse: |s| match declare::parse_bytes(s)? {
                n if n >= 1 << 20 => Ok(n),
                _ => Err("keep at least 1MiB of session logs".to_string()),
            },
        },
        /// Entries that may wait for one TailLogs follower before it gets a gap marker
        pub follower_buffer: usize = setting {
            key: "log_follower_buffer", env: "CANTINA_LOG_FOLLOWER_BUFFER", default: "1024",
            parse: declare::positive,
        },
    }
}

/// How log lines look on stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// For people: one coloured line per event.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFormat::Pretty => "pretty",
            LogFormat::Json => "json",
        })
    }
}

impl FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "pretty" | "text" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            _ => Err("use `pretty` or `json`".into()),
        }
    }
}

impl Show for LogFormat {
    const TYPE: &'static str = "format";
    fn show(&self) -> Option<String> {
        Some(quote(&self.to_string()))
    }
}

/// How session log files are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFileFormat {
    /// `[iso-time] LEVEL service message key=value…`
    Text,
    /// One JSON object per line.
    Json,
}

impl fmt::Display for LogFileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LogFileFormat::Text => "text",
            LogFileFormat::Json => "json",
        })
    }
}

impl FromStr for LogFileFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "text" => Ok(LogFileFormat::Text),
            "json" => Ok(LogFileFormat::Json),
            _ => Err("use `text` or `json`".into()),
        }
    }
}

impl Show for LogFileFormat {
    const TYPE: &'static str = "format";
    fn show(&self) -> Option<String> {
        Some(quote(&self.to_string()))
    }
}
