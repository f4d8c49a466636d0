//! Configuration: one validated [`Config`] built from the embedded defaults, a
//! TOML file, `CANTINA_*` environment variables and command-line flags, each
//! later source winning over the earlier ones.
//!
//! One table, [`SETTINGS`], names every setting once; the rest follows a single
//! rule so nobody has to look anything up: the TOML key `music_dir` is the
//! variable `CANTINA_MUSIC_DIR` and the flag `--music-dir`. Every bad setting
//! is reported at once, each with where its value came from, because fixing
//! one error per start is a miserable way to configure a droid.

use std::{
    collections::BTreeMap,
    fmt,
    net::{SocketAddr, ToSocketAddrs},
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{Arg, ArgAction, ArgMatches, Command, parser::ValueSource};

/// One setting: its TOML key, its environment variable and what it means.
#[derive(Debug)]
pub struct Setting {
    /// TOML key; the flag is this with dashes.
    pub key: &'static str,
    /// Environment variable (`CANTINA_` + the key in capitals).
    pub env: &'static str,
    /// The default, as text; `None` when unset by default.
    pub default: Option<&'static str>,
    /// One line for `--help` and `--print-config`.
    pub help: &'static str,
    /// Whether the flag takes no value (`--allow-insecure-remote`).
    pub switch: bool,
}

const fn setting(
    key: &'static str,
    env: &'static str,
    default: Option<&'static str>,
    help: &'static str,
) -> Setting {
    Setting {
        key,
        env,
        default,
        help,
        switch: false,
    }
}

/// Every setting of the server. The variable names of API.md are fixed.
pub const SETTINGS: &[Setting] = &[
    setting(
        "listen",
        "CANTINA_LISTEN",
        Some("127.0.0.1:50051"),
        "Address the gRPC server listens on (HOST:PORT; port 0 picks a free port)",
    ),
    setting(
        "token",
        "CANTINA_TOKEN",
        None,
        "Bearer token required on every RPC but health and reflection",
    ),
    Setting {
        switch: true,
        ..setting(
            "allow_insecure_remote",
            "CANTINA_ALLOW_INSECURE_REMOTE",
            Some("false"),
            "Allow listening on a non-loopback address with neither a token nor TLS",
        )
    },
    setting(
        "tls_cert",
        "CANTINA_TLS_CERT",
        None,
        "TLS certificate chain, a PEM file (with tls_key: serve gRPC over TLS)",
    ),
    setting(
        "tls_key",
        "CANTINA_TLS_KEY",
        None,
        "Private key of the TLS certificate, a PEM file",
    ),
    setting(
        "data_dir",
        "CANTINA_DATA_DIR",
        None,
        "Where generated and persistent data lives [default: <per-user data folder>/cantina]",
    ),
    setting(
        "log_dir",
        "CANTINA_LOG_DIR",
        Some("logs"),
        "Where session log files go",
    ),
    setting(
        "music_dir",
        "CANTINA_MUSIC_DIR",
        None,
        "The music library folder [default: the generated demo library in the data folder]",
    ),
    setting(
        "audio_output",
        "CANTINA_AUDIO_OUTPUT",
        Some("default"),
        "`default`, a sound device name, `virtual`, or `wav:PATH`",
    ),
    setting(
        "audio_sample_rate",
        "CANTINA_AUDIO_SAMPLE_RATE",
        Some("auto"),
        "Output sample rate in Hz, or `auto` (the device's own; 48000 for the virtual and WAV outputs)",
    ),
    setting(
        "audio_period",
        "CANTINA_AUDIO_PERIOD",
        Some("auto"),
        "Frames the output asks for at a time, or `auto` (the device's own; 1024 for the virtual and WAV outputs)",
    ),
    setting(
        "audio_retry_max",
        "CANTINA_AUDIO_RETRY_MAX",
        Some("3s"),
        "Longest wait between attempts to reopen a lost audio output (the wait doubles from 250ms)",
    ),
    setting(
        "dj_transition",
        "CANTINA_DJ_TRANSITION",
        Some("8s"),
        "How long DJ mode's crossfades between tracks last",
    ),
    setting(
        "eyes_port",
        "CANTINA_EYES_PORT",
        Some("auto"),
        "Serial port of the eyes' Arduino, `auto`, or `virtual`",
    ),
    setting(
        "eyes_answer_timeout",
        "CANTINA_EYES_ANSWER_TIMEOUT",
        Some("1s"),
        "How long the eyes' board may take to answer a command before it counts as lost",
    ),
    setting(
        "eyes_boot_timeout",
        "CANTINA_EYES_BOOT_TIMEOUT",
        Some("3s"),
        "How long to wait for the board's ready line after opening its port",
    ),
    setting(
        "eyes_heartbeat",
        "CANTINA_EYES_HEARTBEAT",
        Some("2s"),
        "When the eyes are quiet this long, check that the board still answers (0s: never)",
    ),
    setting(
        "eyes_retry_max",
        "CANTINA_EYES_RETRY_MAX",
        Some("3s"),
        "Longest wait between attempts to reopen a lost board (the wait doubles from 250ms)",
    ),
    setting(
        "log_level",
        "CANTINA_LOG_LEVEL",
        Some("info"),
        "What to log: a level or EnvFilter directives such as `info,cantina_server=debug`",
    ),
    setting(
        "log_format",
        "CANTINA_LOG_FORMAT",
        Some("pretty"),
        "Log format on stderr: `pretty` or `json`",
    ),
    setting(
        "log_ring_size",
        "CANTINA_LOG_RING_SIZE",
        Some("10000"),
        "Recent log entries kept in memory for TailLogs",
    ),
    setting(
        "log_dedup_window",
        "CANTINA_LOG_DEDUP_WINDOW",
        Some("30s"),
        "Identical entries (service, level, message) within this window are folded into one with a count (0s: never)",
    ),
    setting(
        "log_file_format",
        "CANTINA_LOG_FILE_FORMAT",
        Some("text"),
        "Session log file format: `text` ([time] LEVEL service message key=value) or `json` (JSON lines)",
    ),
    setting(
        "log_flush_interval",
        "CANTINA_LOG_FLUSH_INTERVAL",
        Some("1s"),
        "Longest an entry waits before the session file is flushed",
    ),
    setting(
        "log_retention_files",
        "CANTINA_LOG_RETENTION_FILES",
        Some("20"),
        "Session log files kept (oldest deleted first; 0: keep all)",
    ),
    setting(
        "log_retention_size",
        "CANTINA_LOG_RETENTION_SIZE",
        Some("100MiB"),
        "Total size of the session log files kept (oldest deleted first)",
    ),
    setting(
        "log_follower_buffer",
        "CANTINA_LOG_FOLLOWER_BUFFER",
        Some("1024"),
        "Entries that may wait for one TailLogs follower before it gets a gap marker",
    ),
    setting(
        "request_timeout",
        "CANTINA_REQUEST_TIMEOUT",
        Some("30s"),
        "Longest time a unary request may take",
    ),
    setting(
        "shutdown_grace",
        "CANTINA_SHUTDOWN_GRACE",
        Some("5s"),
        "How long shutdown waits for open requests and streams before closing them",
    ),
    setting(
        "concurrency_limit",
        "CANTINA_CONCURRENCY_LIMIT",
        Some("256"),
        "Requests handled at once per connection; more are refused (RESOURCE_EXHAUSTED)",
    ),
    setting(
        "bus_queue_capacity",
        "CANTINA_BUS_QUEUE_CAPACITY",
        Some("1000"),
        "Events that may wait for one subscriber (and one WatchEvents client) before the oldest are dropped",
    ),
    setting(
        "bus_handler_timeout",
        "CANTINA_BUS_HANDLER_TIMEOUT",
        Some("5s"),
        "Longest an event handler may take for one event",
    ),
    setting(
        "bus_max_failures",
        "CANTINA_BUS_MAX_FAILURES",
        Some("3"),
        "Failures in a row after which an event handler is unsubscribed (0: never)",
    ),
    setting(
        "bus_history",
        "CANTINA_BUS_HISTORY",
        Some("100"),
        "Recent events the bus keeps for inspection",
    ),
    setting(
        "bus_metrics_interval",
        "CANTINA_BUS_METRICS_INTERVAL",
        Some("60s"),
        "How often the bus logs its metrics (0s: never)",
    ),
    setting(
        "max_message_size",
        "CANTINA_MAX_MESSAGE_SIZE",
        Some("4MiB"),
        "Largest gRPC message accepted or sent (bytes, or with KiB/MiB)",
    ),
];

/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "CANTINA_CONFIG";

/// Where a setting's value came from, for error messages and `--print-config`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The embedded default.
    Default,
    /// The configuration file.
    File(PathBuf),
    /// An environment variable.
    Env(&'static str),
    /// A command-line flag.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => f.write_str("default"),
            Origin::File(path) => write!(f, "{}", path.display()),
            Origin::Env(var) => f.write_str(var),
            Origin::Flag(flag) => f.write_str(flag),
        }
    }
}

/// One bad setting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The setting's key (or the file, for file-level problems).
    pub key: String,
    /// The offending value, when there is one.
    pub value: Option<String>,
    /// Where it came from.
    pub origin: Origin,
    /// What is wrong and what to do about it.
    pub problem: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(value) => write!(
                f,
                "{} = {:?} (from {}): {}",
                self.key, value, self.origin, self.problem
            ),
            None => write!(f, "{} (from {}): {}", self.key, self.origin, self.problem),
        }
    }
}

/// Every bad setting found, reported together.
#[derive(Debug, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(f, "{n} bad setting{}:", if n == 1 { "" } else { "s" })?;
        for error in &self.0 {
            writeln!(f, "  - {error}")?;
        }
        write!(
            f,
            "Run `cantina-server --help` for every setting, or `--print-config` to see the values in force."
        )
    }
}

/// Where the sound goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AudioOutput {
    /// The system's default device, falling back to `Virtual` when there is none.
    Default,
    /// A device by name.
    Device(String),
    /// The paced virtual output: no sound card needed.
    Virtual,
    /// A WAV file, for offline renders.
    Wav(PathBuf),
}

impl fmt::Display for AudioOutput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AudioOutput::Default => f.write_str("default"),
            AudioOutput::Device(name) => f.write_str(name),
            AudioOutput::Virtual => f.write_str("virtual"),
            AudioOutput::Wav(path) => write!(f, "wav:{}", path.display()),
        }
    }
}

/// How the eyes' serial link behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EyesSettings {
    /// How long the board may take to answer a command.
    pub answer_timeout: Duration,
    /// How long to wait for the ready line after opening the port.
    pub boot_timeout: Duration,
    /// Quiet time after which the link is checked; zero for never.
    pub heartbeat: Duration,
    /// Longest wait between reconnection attempts.
    pub retry_max: Duration,
    /// How long each `eye test` pattern shows: 1 s, as the original; not a
    /// setting, tests shorten it.
    pub test_step: Duration,
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

/// The server's TLS certificate chain and private key, as PEM files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, server certificate first.
    pub cert: PathBuf,
    /// The private key of the server certificate.
    pub key: PathBuf,
}

/// The contents of [`TlsFiles`], checked: what the transport is given.
#[derive(Clone)]
pub struct TlsPem {
    /// The PEM certificate chain.
    pub cert: Vec<u8>,
    /// The PEM private key.
    pub key: Vec<u8>,
}

impl fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the key, not even in a debug dump.
        f.debug_struct("TlsPem")
            .field("cert", &format_args!("{} bytes", self.cert.len()))
            .finish_non_exhaustive()
    }
}

impl TlsFiles {
    /// Reads both files and checks that rustls can serve with them: a PEM
    /// certificate chain, a PEM private key, and a key that belongs to the
    /// certificate. Each problem comes with its setting (`tls_cert` or
    /// `tls_key`), so that all of them are reported with the other settings.
    pub fn load(&self) -> Result<TlsPem, Vec<(&'static str, String)>> {
        use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

        let mut problems = Vec::new();
        let cert = std::fs::read(&self.cert)
            .map_err(|e| format!("cannot read the certificate file: {e}"))
            .and_then(|pem| {
                match CertificateDer::pem_slice_iter(&pem).collect::<Result<Vec<_>, _>>() {
                    Ok(chain) if !chain.is_empty() => Ok((pem, chain)),
                    Ok(_) => Err(format!(
                        "no certificate in {}: expected a PEM file with -----BEGIN CERTIFICATE-----",
                        self.cert.display()
                    )),
                    Err(e) => Err(format!(
                        "{} is not a valid PEM certificate chain: {e}",
                        self.cert.display()
                    )),
                }
            })
            .map_err(|problem| problems.push(("tls_cert", problem)))
            .ok();
        let key = std::fs::read(&self.key)
            .map_err(|e| format!("cannot read the key file: {e}"))
            .and_then(|pem| match PrivateKeyDer::from_pem_slice(&pem) {
                Ok(der) => Ok((pem, der)),
                Err(rustls::pki_types::pem::Error::NoItemsFound) => Err(format!(
                    "no private key in {}: expected a PEM file with -----BEGIN PRIVATE KEY----- \
                     (or RSA/EC PRIVATE KEY)",
                    self.key.display()
                )),
                Err(e) => Err(format!(
                    "{} is not a valid PEM private key: {e}",
                    self.key.display()
                )),
            })
            .map_err(|problem| problems.push(("tls_key", problem)))
            .ok();
        let (Some((cert, chain)), Some((key, der))) = (cert, key) else {
            return Err(problems);
        };
        // What the transport will do at start, done now: an unsupported key
        // or one that belongs to another certificate is a setting problem.
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let checked = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|builder| builder.with_no_client_auth().with_single_cert(chain, der));
        match checked {
            Ok(_) => Ok(TlsPem { cert, key }),
            Err(e) => Err(vec![(
                "tls_key",
                format!(
                    "cannot serve TLS with this key and the certificate in {}: {e}",
                    self.cert.display()
                ),
            )]),
        }
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

/// How session log files are written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFileFormat {
    /// `[iso-time] LEVEL service message key=value…`
    Text,
    /// One JSON object per line.
    Json,
}

/// Settings of log capture, the ring, dedup, session files and followers.
#[derive(Clone, Debug)]
pub struct LogSettings {
    /// Recent entries kept in memory.
    pub ring_size: usize,
    /// Identical entries within this window are folded; zero disables.
    pub dedup_window: Duration,
    /// Session file format.
    pub file_format: LogFileFormat,
    /// Longest an entry waits before the file is flushed.
    pub flush_interval: Duration,
    /// Session files kept; zero keeps all.
    pub retention_files: usize,
    /// Total bytes of session files kept.
    pub retention_bytes: u64,
    /// Entries that may wait for one follower.
    pub follower_buffer: usize,
}

/// The validated configuration of the server.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address the gRPC server listens on.
    pub listen: SocketAddr,
    /// Bearer token required on every RPC but health and reflection.
    pub token: Option<String>,
    /// Whether a non-loopback listen address with neither a token nor TLS
    /// is accepted.
    pub allow_insecure_remote: bool,
    /// The TLS certificate and key; `None` serves plaintext gRPC.
    pub tls: Option<TlsFiles>,
    /// Where generated and persistent data lives.
    pub data_dir: PathBuf,
    /// Where session log files go.
    pub log_dir: PathBuf,
    /// The music library; `None` means the generated demo library.
    pub music_dir: Option<PathBuf>,
    /// Where the sound goes.
    pub audio_output: AudioOutput,
    /// Output sample rate; `None`: the device's own.
    pub audio_sample_rate: Option<u32>,
    /// Output period in frames; `None`: the device's own.
    pub audio_period: Option<u32>,
    /// Longest wait between attempts to reopen a lost output.
    pub audio_retry_max: Duration,
    /// DJ mode's crossfade length.
    pub dj_transition: Duration,
    /// Where the eyes are.
    pub eyes_port: EyesPort,
    /// How the eyes' link behaves.
    pub eyes: EyesSettings,
    /// The tracing filter directives.
    pub log_level: String,
    /// How log lines look on stderr.
    pub log_format: LogFormat,
    /// Longest time a unary request may take.
    pub request_timeout: Duration,
    /// How long shutdown waits for open requests and streams.
    pub shutdown_grace: Duration,
    /// Requests handled at once per connection.
    pub concurrency_limit: usize,
    /// Largest gRPC message accepted or sent, in bytes.
    pub max_message_size: usize,
    /// The log service's settings.
    pub logs: LogSettings,
    /// The event bus's settings.
    pub bus: crate::bus::BusConfig,
    /// How often the bus logs its metrics; zero for never.
    pub bus_metrics_interval: Duration,
    /// Where each value came from, by key, for `--print-config`.
    pub origins: BTreeMap<&'static str, Origin>,
}

impl Default for Config {
    /// The embedded defaults: runs on a laptop with no hardware.
    fn default() -> Self {
        Sources::default()
            .resolve()
            .expect("the embedded defaults are valid")
    }
}

/// Raw values gathered from every source, before validation.
#[derive(Clone, Debug, Default)]
pub struct Sources {
    /// The configuration file's path and text, when one is used.
    pub file: Option<(PathBuf, String)>,
    /// Values from the environment or flags, by key, with their origin.
    pub overrides: BTreeMap<&'static str, (String, Origin)>,
}

impl Sources {
    /// Reads the flags (and, through clap, the environment) of a parsed
    /// command line built with [`add_args`], and the file they name.
    pub fn from_matches(matches: &ArgMatches) -> Result<Self, ConfigErrors> {
        let mut sources = Sources::default();
        for setting in SETTINGS {
            let Some(value) = matches.get_one::<String>(setting.key) else {
                continue;
            };
            let origin = match matches.value_source(setting.key) {
                Some(ValueSource::EnvVariable) => Origin::Env(setting.env),
                _ => Origin::Flag(format!("--{}", flag_name(setting.key))),
            };
            sources
                .overrides
                .insert(setting.key, (value.clone(), origin));
        }
        if let Some(path) = matches.get_one::<PathBuf>("config") {
            let origin = match matches.value_source("config") {
                Some(ValueSource::EnvVariable) => Origin::Env(CONFIG_ENV),
                _ => Origin::Flag("--config".into()),
            };
            match std::fs::read_to_string(path) {
                Ok(text) => sources.file = Some((path.clone(), text)),
                Err(e) => {
                    return Err(ConfigErrors(vec![ConfigError {
                        key: "config".into(),
                        value: Some(path.display().to_string()),
                        origin,
                        problem: format!("cannot read the configuration file: {e}"),
                    }]));
                }
            }
        }
        Ok(sources)
    }

    /// Merges the sources over the defaults and validates every setting,
    /// collecting all problems.
    pub fn resolve(&self) -> Result<Config, ConfigErrors> {
        let mut errors = Vec::new();
        let mut raw: BTreeMap<&'static str, (String, Origin)> = BTreeMap::new();
        for setting in SETTINGS {
            if let Some(default) = setting.default {
                raw.insert(setting.key, (default.to_string(), Origin::Default));
            }
        }
        if let Some((path, text)) = &self.file {
            read_file(path, text, &mut raw, &mut errors);
        }
        for (key, value) in &self.overrides {
            raw.insert(key, value.clone());
        }

        let mut v = Validator {
            raw: &raw,
            errors: &mut errors,
        };
        let listen = v.parse("listen", parse_listen);
        let token = v.optional("token", |s| {
            if s.is_empty() {
                Err("an empty token would accept anyone; remove the setting or set a secret".into())
            } else if !s.chars().all(|c| c.is_ascii_graphic()) {
                Err("use printable ASCII without spaces (it travels in an HTTP header)".into())
            } else {
                Ok(s.to_string())
            }
        });
        let allow_insecure_remote = v.parse("allow_insecure_remote", parse_bool);
        let tls_cert = v.optional("tls_cert", parse_path).flatten().flatten();
        let tls_key = v.optional("tls_key", parse_path).flatten().flatten();
        let tls_wanted = tls_cert.is_some() || tls_key.is_some();
        let tls = resolve_tls(tls_cert, tls_key, &raw, v.errors);
        let data_dir = v
            .optional("data_dir", parse_path)
            .flatten()
            .flatten()
            .unwrap_or_else(default_data_dir);
        let log_dir = v.parse("log_dir", parse_path_required);
        let music_dir = v.optional("music_dir", parse_path).flatten().flatten();
        let audio_output = v.parse("audio_output", parse_audio_output);
        let auto_or = |low: u32, high: u32, what: &'static str| {
            move |s: &str| -> Result<Option<u32>, String> {
                if s.eq_ignore_ascii_case("auto") {
                    return Ok(None);
                }
                match s.parse::<u32>() {
                    Ok(n) if (low..=high).contains(&n) => Ok(Some(n)),
                    _ => Err(format!(
                        "use `auto` or a whole number of {what} from {low} to {high}"
                    )),
                }
            }
        };
        let audio_sample_rate = v.parse("audio_sample_rate", auto_or(8_000, 192_000, "Hz"));
        let audio_period = v.parse("audio_period", auto_or(16, 4096, "frames"));
        let audio_retry_max = v.parse("audio_retry_max", |s| parse_duration(s, false));
        let dj_transition = v.parse("dj_transition", |s| parse_duration(s, false));
        let eyes_port = v.parse("eyes_port", parse_eyes_port);
        let eyes_answer_timeout = v.parse("eyes_answer_timeout", |s| parse_duration(s, false));
        let eyes_boot_timeout = v.parse("eyes_boot_timeout", |s| parse_duration(s, true));
        let eyes_heartbeat = v.parse("eyes_heartbeat", |s| parse_duration(s, true));
        let eyes_retry_max = v.parse("eyes_retry_max", |s| parse_duration(s, false));
        let log_level = v.parse("log_level", |s| {
            tracing_subscriber::EnvFilter::try_new(s)
                .map(|_| s.to_string())
                .map_err(|e| format!("not a log filter ({e}); use a level such as `info` or directives such as `info,cantina_server=debug`"))
        });
        let log_format = v.parse("log_format", |s| match s.to_ascii_lowercase().as_str() {
            "pretty" | "text" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            _ => Err("use `pretty` or `json`".into()),
        });
        let request_timeout = v.parse("request_timeout", |s| parse_duration(s, false));
        let shutdown_grace = v.parse("shutdown_grace", |s| parse_duration(s, true));
        let concurrency_limit = v.parse("concurrency_limit", |s| match s.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err("use a whole number of at least 1".into()),
        });
        let max_message_size = v.parse("max_message_size", parse_size);
        let whole = |s: &str| {
            s.parse::<usize>()
                .map_err(|_| "use a whole number".to_string())
        };
        let positive = |s: &str| match s.parse::<usize>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err("use a whole number of at least 1".to_string()),
        };
        let bus_queue_capacity = v.parse("bus_queue_capacity", positive);
        let log_ring_size = v.parse("log_ring_size", positive);
        let log_dedup_window = v.parse("log_dedup_window", |s| parse_duration(s, true));
        let log_file_format = v.parse("log_file_format", |s| {
            match s.to_ascii_lowercase().as_str() {
                "text" => Ok(LogFileFormat::Text),
                "json" => Ok(LogFileFormat::Json),
                _ => Err("use `text` or `json`".to_string()),
            }
        });
        let log_flush_interval = v.parse("log_flush_interval", |s| parse_duration(s, false));
        let log_retention_files = v.parse("log_retention_files", whole);
        let log_retention_size = v.parse("log_retention_size", |s| match parse_bytes(s)? {
            n if n >= 1 << 20 => Ok(n),
            _ => Err("keep at least 1MiB of session logs".to_string()),
        });
        let log_follower_buffer = v.parse("log_follower_buffer", positive);
        let bus_handler_timeout = v.parse("bus_handler_timeout", |s| parse_duration(s, false));
        let bus_max_failures = v.parse("bus_max_failures", |s| {
            s.parse::<u32>()
                .map_err(|_| "use a whole number (0: never unsubscribe)".to_string())
        });
        let bus_history = v.parse("bus_history", whole);
        let bus_metrics_interval = v.parse("bus_metrics_interval", |s| parse_duration(s, true));

        // A bad TLS setting is reported as such, not again here.
        if let (Some(listen), Some(false)) = (listen, allow_insecure_remote)
            && !listen.ip().is_loopback()
            && token.as_ref().is_none_or(Option::is_none)
            && !tls_wanted
        {
            let (value, origin) = raw["listen"].clone();
            errors.push(ConfigError {
                key: "listen".into(),
                value: Some(value),
                origin,
                problem: "this exposes the droid to the network with neither a token nor TLS: \
                          set a token (CANTINA_TOKEN or `token` in the file) or TLS (tls_cert and \
                          tls_key), listen on 127.0.0.1, or pass --allow-insecure-remote if that \
                          is really wanted"
                    .into(),
            });
        }

        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        Ok(Config {
            listen: listen.expect("validated"),
            token: token.flatten(),
            allow_insecure_remote: allow_insecure_remote.expect("validated"),
            tls,
            data_dir,
            log_dir: log_dir.expect("validated"),
            music_dir,
            audio_output: audio_output.expect("validated"),
            audio_sample_rate: audio_sample_rate.expect("validated"),
            audio_period: audio_period.expect("validated"),
            audio_retry_max: audio_retry_max.expect("validated"),
            dj_transition: dj_transition.expect("validated"),
            eyes_port: eyes_port.expect("validated"),
            eyes: EyesSettings {
                answer_timeout: eyes_answer_timeout.expect("validated"),
                boot_timeout: eyes_boot_timeout.expect("validated"),
                heartbeat: eyes_heartbeat.expect("validated"),
                retry_max: eyes_retry_max.expect("validated"),
                test_step: Duration::from_secs(1),
            },
            log_level: log_level.expect("validated"),
            log_format: log_format.expect("validated"),
            request_timeout: request_timeout.expect("validated"),
            shutdown_grace: shutdown_grace.expect("validated"),
            concurrency_limit: concurrency_limit.expect("validated"),
            max_message_size: max_message_size.expect("validated"),
            logs: LogSettings {
                ring_size: log_ring_size.expect("validated"),
                dedup_window: log_dedup_window.expect("validated"),
                file_format: log_file_format.expect("validated"),
                flush_interval: log_flush_interval.expect("validated"),
                retention_files: log_retention_files.expect("validated"),
                retention_bytes: log_retention_size.expect("validated"),
                follower_buffer: log_follower_buffer.expect("validated"),
            },
            bus: crate::bus::BusConfig {
                queue_capacity: bus_queue_capacity.expect("validated"),
                handler_timeout: bus_handler_timeout.expect("validated"),
                max_failures: bus_max_failures.expect("validated"),
                history: bus_history.expect("validated"),
                ..crate::bus::BusConfig::default()
            },
            bus_metrics_interval: bus_metrics_interval.expect("validated"),
            origins: raw.into_iter().map(|(k, (_, o))| (k, o)).collect(),
        })
    }
}

/// Both TLS files or neither, and both usable: problems go to `errors`.
fn resolve_tls(
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    raw: &BTreeMap<&'static str, (String, Origin)>,
    errors: &mut Vec<ConfigError>,
) -> Option<TlsFiles> {
    let mut report = |key: &'static str, problem: String| {
        let (value, origin) = raw[key].clone();
        errors.push(ConfigError {
            key: key.into(),
            value: Some(value),
            origin,
            problem,
        });
    };
    match (cert, key) {
        (None, None) => None,
        (Some(_), None) => {
            report(
                "tls_cert",
                "a certificate needs its private key: set tls_key (CANTINA_TLS_KEY, --tls-key) \
                 too, or remove tls_cert to serve without TLS"
                    .into(),
            );
            None
        }
        (None, Some(_)) => {
            report(
                "tls_key",
                "a private key needs its certificate: set tls_cert (CANTINA_TLS_CERT, \
                 --tls-cert) too, or remove tls_key to serve without TLS"
                    .into(),
            );
            None
        }
        (Some(cert), Some(key)) => {
            let files = TlsFiles { cert, key };
            match files.load() {
                Ok(_) => Some(files),
                Err(problems) => {
                    for (key, problem) in problems {
                        report(key, problem);
                    }
                    None
                }
            }
        }
    }
}

/// Parses each raw value, keeping every failure.
struct Validator<'a> {
    raw: &'a BTreeMap<&'static str, (String, Origin)>,
    errors: &'a mut Vec<ConfigError>,
}

impl Validator<'_> {
    /// A setting that has a default: `None` only when its value is bad.
    fn parse<T>(&mut self, key: &str, f: impl FnOnce(&str) -> Result<T, String>) -> Option<T> {
        self.optional(key, f).flatten()
    }

    /// A setting that may be unset: `Some(None)` when unset, `None` when bad.
    fn optional<T>(
        &mut self,
        key: &str,
        f: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<Option<T>> {
        let Some((value, origin)) = self.raw.get(key) else {
            return Some(None);
        };
        match f(value.trim()) {
            Ok(parsed) => Some(Some(parsed)),
            Err(problem) => {
                self.errors.push(ConfigError {
                    key: key.into(),
                    value: Some(value.clone()),
                    origin: origin.clone(),
                    problem,
                });
                None
            }
        }
    }
}

fn read_file(
    path: &Path,
    text: &str,
    raw: &mut BTreeMap<&'static str, (String, Origin)>,
    errors: &mut Vec<ConfigError>,
) {
    let origin = Origin::File(path.to_path_buf());
    let table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(e) => {
            errors.push(ConfigError {
                key: "config".into(),
                value: None,
                origin,
                problem: format!("not valid TOML: {}", e.to_string().trim_end()),
            });
            return;
        }
    };
    for (key, value) in table {
        let Some(setting) = SETTINGS.iter().find(|s| s.key == key) else {
            let hint = closest_key(&key)
                .map(|k| format!("; did you mean '{k}'?"))
                .unwrap_or_default();
            errors.push(ConfigError {
                key: key.clone(),
                value: None,
                origin: origin.clone(),
                problem: format!("unknown setting{hint}"),
            });
            continue;
        };
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Float(f) => f.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                errors.push(ConfigError {
                    key: key.clone(),
                    value: Some(other.to_string()),
                    origin: origin.clone(),
                    problem: "use a string, number or boolean".into(),
                });
                continue;
            }
        };
        raw.insert(setting.key, (text, origin.clone()));
    }
}

fn closest_key(key: &str) -> Option<&'static str> {
    SETTINGS
        .iter()
        .map(|s| {
            // `listen_addr` for `listen`: a prefix counts as close.
            let prefix = key.starts_with(s.key) || s.key.starts_with(key);
            let distance = if prefix {
                1
            } else {
                strsim::levenshtein(key, s.key)
            };
            (distance, s.key)
        })
        .filter(|(d, s)| *d <= (s.len() / 3).max(2))
        .min()
        .map(|(_, k)| k)
}

fn flag_name(key: &str) -> String {
    key.replace('_', "-")
}

/// The per-user data folder (`~/.local/share/cantina` on Linux).
fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("cantina"))
        .unwrap_or_else(|| PathBuf::from("cantina-data"))
}

fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse() {
        return Ok(addr);
    }
    // Host names are resolved once, at start-up; `localhost:50051` is common.
    match s.to_socket_addrs().map(|mut addrs| addrs.next()) {
        Ok(Some(addr)) => Ok(addr),
        _ => Err("not an address to listen on; use HOST:PORT such as 127.0.0.1:50051".into()),
    }
}

fn parse_bool(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("use true or false".into()),
    }
}

fn parse_path(s: &str) -> Result<Option<PathBuf>, String> {
    Ok((!s.is_empty()).then(|| PathBuf::from(s)))
}

fn parse_path_required(s: &str) -> Result<PathBuf, String> {
    parse_path(s)?.ok_or_else(|| "give a folder".to_string())
}

fn parse_audio_output(s: &str) -> Result<AudioOutput, String> {
    match s {
        "" => Err("use `default`, a device name, `virtual` or `wav:PATH`".into()),
        "default" => Ok(AudioOutput::Default),
        "virtual" => Ok(AudioOutput::Virtual),
        _ => match s.strip_prefix("wav:") {
            Some("") => Err("`wav:` needs a file path, as in `wav:/tmp/show.wav`".into()),
            Some(path) => Ok(AudioOutput::Wav(PathBuf::from(path))),
            None => Ok(AudioOutput::Device(s.to_string())),
        },
    }
}

fn parse_eyes_port(s: &str) -> Result<EyesPort, String> {
    match s {
        "" => Err("use a serial port path, `auto` or `virtual`".into()),
        "auto" => Ok(EyesPort::Auto),
        "virtual" => Ok(EyesPort::Virtual),
        _ => Ok(EyesPort::Path(PathBuf::from(s))),
    }
}

fn parse_duration(s: &str, zero_ok: bool) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if zero_ok || !d.is_zero() => Ok(d),
        Ok(_) => Err("must be longer than zero".into()),
        Err(_) => Err("not a duration; use a number with a unit, such as 500ms, 5s or 2m".into()),
    }
}

/// A number of bytes, optionally with a unit (`KiB`, `MiB`, `GiB`).
fn parse_bytes(s: &str) -> Result<u64, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(
                "use a number of bytes, optionally with KiB, MiB or GiB, such as 4MiB".into(),
            );
        }
    };
    number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(multiplier))
        .ok_or_else(|| {
            "use a number of bytes, optionally with KiB, MiB or GiB, such as 4MiB".into()
        })
}

fn parse_size(s: &str) -> Result<usize, String> {
    match parse_bytes(s)? {
        n if (1024..=(1 << 30)).contains(&n) => Ok(n as usize),
        _ => Err("must be between 1KiB and 1GiB".into()),
    }
}

/// Adds the `--config` flag and one flag per setting to a clap command.
pub fn add_args(mut command: Command) -> Command {
    command = command.arg(
        Arg::new("config")
            .long("config")
            .short('c')
            .env(CONFIG_ENV)
            .value_name("FILE")
            .value_parser(clap::value_parser!(PathBuf))
            .help("TOML configuration file (keys as in --print-config)"),
    );
    for setting in SETTINGS {
        let mut arg = Arg::new(setting.key)
            .long(flag_name(setting.key))
            .env(setting.env)
            .help(setting.help)
            .action(ArgAction::Set);
        if setting.switch {
            arg = arg
                .num_args(0..=1)
                .value_name("BOOL")
                .default_missing_value("true");
        } else {
            arg = arg.value_name(setting.key.to_ascii_uppercase());
        }
        if let Some(default) = setting.default {
            // Shown in --help; the value itself comes from `Sources::resolve`,
            // so that a default never masks the file.
            arg = arg.help(format!("{} [default: {default}]", setting.help));
        }
        if setting.key == "token" {
            arg = arg.hide_env_values(true);
        }
        command = command.arg(arg);
    }
    command
}

impl Config {
    /// The configuration as TOML, with the origin of each value, secrets
    /// hidden: what `--print-config` prints, and a valid configuration file.
    pub fn to_toml(&self) -> String {
        let mut out = String::from("# Cantina server configuration in force\n");
        let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
        for setting in SETTINGS {
            let value = match setting.key {
                "listen" => Some(quote(&self.listen.to_string())),
                "token" if self.token.is_some() => {
                    // Never printed: the output is meant to be shared and pasted.
                    out.push_str("# token is set (hidden)  # CANTINA_TOKEN\n");
                    continue;
                }
                "token" => None,
                "allow_insecure_remote" => Some(self.allow_insecure_remote.to_string()),
                "tls_cert" => self
                    .tls
                    .as_ref()
                    .map(|t| quote(&t.cert.display().to_string())),
                "tls_key" => self
                    .tls
                    .as_ref()
                    .map(|t| quote(&t.key.display().to_string())),
                "data_dir" => Some(quote(&self.data_dir.display().to_string())),
                "log_dir" => Some(quote(&self.log_dir.display().to_string())),
                "music_dir" => self
                    .music_dir
                    .as_ref()
                    .map(|p| quote(&p.display().to_string())),
                "audio_output" => Some(quote(&self.audio_output.to_string())),
                "audio_sample_rate" => Some(quote(
                    &self
                        .audio_sample_rate
                        .map_or("auto".to_string(), |n| n.to_string()),
                )),
                "audio_period" => Some(quote(
                    &self
                        .audio_period
                        .map_or("auto".to_string(), |n| n.to_string()),
                )),
                "audio_retry_max" => Some(quote(
                    &humantime::format_duration(self.audio_retry_max).to_string(),
                )),
                "dj_transition" => Some(quote(
                    &humantime::format_duration(self.dj_transition).to_string(),
                )),
                "eyes_port" => Some(quote(&self.eyes_port.to_string())),
                "eyes_answer_timeout" => Some(quote(
                    &humantime::format_duration(self.eyes.answer_timeout).to_string(),
                )),
                "eyes_boot_timeout" => Some(quote(
                    &humantime::format_duration(self.eyes.boot_timeout).to_string(),
                )),
                "eyes_heartbeat" => Some(quote(
                    &humantime::format_duration(self.eyes.heartbeat).to_string(),
                )),
                "eyes_retry_max" => Some(quote(
                    &humantime::format_duration(self.eyes.retry_max).to_string(),
                )),
                "log_level" => Some(quote(&self.log_level)),
                "log_format" => Some(quote(match self.log_format {
                    LogFormat::Pretty => "pretty",
                    LogFormat::Json => "json",
                })),
                "request_timeout" => Some(quote(
                    &humantime::format_duration(self.request_timeout).to_string(),
                )),
                "shutdown_grace" => Some(quote(
                    &humantime::format_duration(self.shutdown_grace).to_string(),
                )),
                "concurrency_limit" => Some(self.concurrency_limit.to_string()),
                "max_message_size" => Some(self.max_message_size.to_string()),
                "bus_queue_capacity" => Some(self.bus.queue_capacity.to_string()),
                "log_ring_size" => Some(self.logs.ring_size.to_string()),
                "log_dedup_window" => Some(quote(
                    &humantime::format_duration(self.logs.dedup_window).to_string(),
                )),
                "log_file_format" => Some(quote(match self.logs.file_format {
                    LogFileFormat::Text => "text",
                    LogFileFormat::Json => "json",
                })),
                "log_flush_interval" => Some(quote(
                    &humantime::format_duration(self.logs.flush_interval).to_string(),
                )),
                "log_retention_files" => Some(self.logs.retention_files.to_string()),
                "log_retention_size" => Some(self.logs.retention_bytes.to_string()),
                "log_follower_buffer" => Some(self.logs.follower_buffer.to_string()),
                "bus_handler_timeout" => Some(quote(
                    &humantime::format_duration(self.bus.handler_timeout).to_string(),
                )),
                "bus_max_failures" => Some(self.bus.max_failures.to_string()),
                "bus_history" => Some(self.bus.history.to_string()),
                "bus_metrics_interval" => Some(quote(
                    &humantime::format_duration(self.bus_metrics_interval).to_string(),
                )),
                other => unreachable!("setting {other} has no printer"),
            };
            let origin = self
                .origins
                .get(setting.key)
                .map(ToString::to_string)
                .unwrap_or_else(|| "default".into());
            match value {
                Some(value) => out.push_str(&format!(
                    "{} = {value}  # {}, from {origin}\n",
                    setting.key, setting.env
                )),
                None => out.push_str(&format!(
                    "# {} is unset  # {}: {}\n",
                    setting.key, setting.env, setting.help
                )),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flag(key: &'static str, value: &str) -> (&'static str, (String, Origin)) {
        (
            key,
            (
                value.to_string(),
                Origin::Flag(format!("--{}", flag_name(key))),
            ),
        )
    }

    #[test]
    fn defaults_run_on_a_laptop() {
        let config = Config::default();
        assert_eq!(config.listen, "127.0.0.1:50051".parse().unwrap());
        assert_eq!(config.token, None);
        assert_eq!(config.audio_output, AudioOutput::Default);
        assert_eq!(config.eyes_port, EyesPort::Auto);
        assert_eq!(config.log_dir, PathBuf::from("logs"));
        assert_eq!(config.max_message_size, 4 << 20);
    }

    #[test]
    fn later_sources_win_and_keep_their_origin() {
        let sources = Sources {
            file: Some((
                "droid.toml".into(),
                "listen = \"127.0.0.1:7000\"\nconcurrency_limit = 8\n".into(),
            )),
            overrides: [flag("listen", "127.0.0.1:7001")].into_iter().collect(),
        };
        let config = sources.resolve().unwrap();
        assert_eq!(config.listen.port(), 7001);
        assert_eq!(config.concurrency_limit, 8);
        assert_eq!(
            config.origins["concurrency_limit"],
            Origin::File("droid.toml".into())
        );
        assert_eq!(config.origins["listen"], Origin::Flag("--listen".into()));
    }

    #[test]
    fn every_bad_setting_is_reported_together() {
        let sources = Sources {
            file: Some((
                "droid.toml".into(),
                "lisen = \"x\"\nrequest_timeout = \"soon\"\n".into(),
            )),
            overrides: [
                flag("listen", "nowhere"),
                flag("log_format", "xml"),
                flag("max_message_size", "12 parsecs"),
                (
                    "audio_output",
                    ("wav:".into(), Origin::Env("CANTINA_AUDIO_OUTPUT")),
                ),
            ]
            .into_iter()
            .collect(),
        };
        let errors = sources.resolve().unwrap_err();
        let keys: Vec<_> = errors.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "lisen",
                "listen",
                "audio_output",
                "log_format",
                "request_timeout",
                "max_message_size"
            ]
        );
        let text = errors.to_string();
        assert!(text.starts_with("6 bad settings:"), "{text}");
        assert!(text.contains("did you mean 'listen'?"), "{text}");
        assert!(text.contains("(from CANTINA_AUDIO_OUTPUT)"), "{text}");
        assert!(text.contains("(from droid.toml): not a duration"), "{text}");
    }

    #[test]
    fn a_remote_listen_address_needs_a_token_or_explicit_consent() {
        let remote = |extra: Vec<(&'static str, (String, Origin))>| Sources {
            file: None,
            overrides: [flag("listen", "0.0.0.0:50051")]
                .into_iter()
                .chain(extra)
                .collect(),
        };
        let err = remote(vec![]).resolve().unwrap_err().to_string();
        assert!(err.contains("--allow-insecure-remote"), "{err}");
        assert!(err.contains("neither a token nor TLS"), "{err}");
        assert!(remote(vec![flag("token", "s3cret")]).resolve().is_ok());
        assert!(
            remote(vec![flag("allow_insecure_remote", "true")])
                .resolve()
                .is_ok()
        );
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = tls_files(dir.path());
        let config = remote(vec![flag("tls_cert", &cert), flag("tls_key", &key)])
            .resolve()
            .unwrap();
        assert_eq!(
            config.tls,
            Some(TlsFiles {
                cert: cert.into(),
                key: key.into()
            })
        );
    }

    /// A self-signed certificate for localhost and its key, written to `dir`.
    fn tls_files(dir: &Path) -> (String, String) {
        let generated = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        std::fs::write(&cert, generated.cert.pem()).unwrap();
        std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
        (cert.display().to_string(), key.display().to_string())
    }

    fn tls_errors(cert: &str, key: &str) -> ConfigErrors {
        Sources {
            file: None,
            overrides: [flag("tls_cert", cert), flag("tls_key", key)]
                .into_iter()
                .filter(|(_, (value, _))| !value.is_empty())
                .collect(),
        }
        .resolve()
        .unwrap_err()
    }

    #[test]
    fn tls_needs_both_files() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = tls_files(dir.path());

        let errors = tls_errors(&cert, "");
        assert_eq!(errors.0.len(), 1, "{errors}");
        assert_eq!(errors.0[0].key, "tls_cert");
        assert!(errors.0[0].problem.contains("--tls-key"), "{errors}");

        let errors = tls_errors("", &key);
        assert_eq!(errors.0.len(), 1, "{errors}");
        assert_eq!(errors.0[0].key, "tls_key");
        assert!(errors.0[0].problem.contains("--tls-cert"), "{errors}");
    }

    #[test]
    fn unusable_tls_files_are_reported_with_the_other_settings() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = tls_files(dir.path());
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let garbage = garbage.display().to_string();
        let missing = dir.path().join("missing.pem").display().to_string();

        // Garbage for both, and another bad setting: all three at once.
        let errors = Sources {
            file: None,
            overrides: [
                flag("tls_cert", &garbage),
                flag("tls_key", &garbage),
                flag("log_format", "xml"),
            ]
            .into_iter()
            .collect(),
        }
        .resolve()
        .unwrap_err();
        let keys: Vec<_> = errors.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["tls_cert", "tls_key", "log_format"], "{errors}");
        let text = errors.to_string();
        assert!(
            text.contains(&format!("no certificate in {garbage}")),
            "{text}"
        );
        assert!(
            text.contains(&format!("no private key in {garbage}")),
            "{text}"
        );

        // A missing file says so.
        let errors = tls_errors(&missing, &key);
        assert_eq!(errors.0.len(), 1, "{errors}");
        assert!(
            errors.0[0]
                .problem
                .contains("cannot read the certificate file"),
            "{errors}"
        );

        // Swapped files: neither is what it should be.
        let errors = tls_errors(&key, &cert);
        let keys: Vec<_> = errors.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["tls_cert", "tls_key"], "{errors}");

        // A key that belongs to another certificate.
        let other = tempfile::tempdir().unwrap();
        let (_, other_key) = tls_files(other.path());
        let errors = tls_errors(&cert, &other_key);
        assert_eq!(errors.0.len(), 1, "{errors}");
        assert_eq!(errors.0[0].key, "tls_key");
        assert!(
            errors.0[0]
                .problem
                .contains("cannot serve TLS with this key"),
            "{errors}"
        );
    }

    #[test]
    fn tls_files_are_printed_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = tls_files(dir.path());
        let config = Sources {
            file: None,
            overrides: [flag("tls_cert", &cert), flag("tls_key", &key)]
                .into_iter()
                .collect(),
        }
        .resolve()
        .unwrap();
        let text = config.to_toml();
        assert!(text.contains("CANTINA_TLS_CERT, from --tls-cert"), "{text}");
        let again = Sources {
            file: Some(("printed.toml".into(), text)),
            overrides: BTreeMap::new(),
        }
        .resolve()
        .unwrap();
        assert_eq!(again.tls, config.tls);
        assert!(Config::default().to_toml().contains("# tls_cert is unset"));
    }

    #[test]
    fn malformed_toml_is_reported_with_its_position() {
        let sources = Sources {
            file: Some(("droid.toml".into(), "listen = \n".into())),
            overrides: BTreeMap::new(),
        };
        let err = sources.resolve().unwrap_err().to_string();
        assert!(
            err.contains("not valid TOML") && err.contains("line 1"),
            "{err}"
        );
    }

    #[test]
    fn printed_config_reads_back_as_the_same_config() {
        let sources = Sources {
            file: None,
            overrides: [
                flag("music_dir", "/srv/music"),
                flag("eyes_port", "/dev/ttyACM0"),
            ]
            .into_iter()
            .collect(),
        };
        let config = sources.resolve().unwrap();
        let text = config.to_toml();
        let again = Sources {
            file: Some(("printed.toml".into(), text.clone())),
            overrides: BTreeMap::new(),
        }
        .resolve()
        .unwrap();
        assert_eq!(again.music_dir, Some(PathBuf::from("/srv/music")));
        assert_eq!(again.eyes_port, EyesPort::Path("/dev/ttyACM0".into()));
        assert_eq!(again.request_timeout, config.request_timeout);
        assert!(
            text.contains("CANTINA_EYES_PORT, from --eyes-port"),
            "{text}"
        );
    }

    #[test]
    fn sizes_and_durations_accept_units() {
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size("16KiB"), Ok(16384));
        assert_eq!(parse_size("8 MiB"), Ok(8 << 20));
        assert!(parse_size("1").is_err());
        assert_eq!(
            parse_duration("500ms", false),
            Ok(Duration::from_millis(500))
        );
        assert!(parse_duration("0s", false).is_err());
        assert_eq!(parse_duration("0s", true), Ok(Duration::ZERO));
    }
}
