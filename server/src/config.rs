//! Configuration: one validated [`Config`] built from the embedded defaults, a
//! TOML file, `CANTINA_*` environment variables and command-line flags, each
//! later source winning over the earlier ones.
//!
//! Each setting is declared once, in the struct that holds it, with the
//! `settings!` macro of [`declare`](crate::declare): its field, type, key, variable, default, parser and,
//! as its `///` comment, its `--help` text. Subsystems declare their own
//! settings beside their code (`audio/settings.rs`, `eyes/settings.rs`,
//! `logs/settings.rs`, `bus/settings.rs`); [`Config`] holds each of those
//! structs whole. Everything else (the flags, the file's keys, `--help`,
//! `--print-config`, `docs/settings.md`) is derived from the declarations.
//!
//! One rule, so nobody has to look anything up: the TOML key `music_dir` is
//! the variable `CANTINA_MUSIC_DIR` and the flag `--music-dir` (a test holds
//! every declaration to it). Every bad setting is reported at once, each with
//! where its value came from, because fixing one error per start is a
//! miserable way to configure a droid.

use std::{
    collections::BTreeMap,
    fmt,
    net::{SocketAddr, ToSocketAddrs},
    path::{Path, PathBuf},
    sync::LazyLock,
    time::Duration,
};

use clap::{Arg, ArgAction, ArgMatches, Command, parser::ValueSource};

use crate::declare::{
    Setting, Settings, Validator, duration, duration_or_zero, flag_name, parse_bool, parse_bytes,
    parse_path, positive, settings, whole,
};
pub use crate::{
    audio::{AudioOutput, AudioSettings},
    bus::BusConfig,
    declare::{ConfigError, Origin},
    eyes::{EyesPort, EyesSettings},
    logs::{LogFileFormat, LogFormat, LogSettings},
    servos::{ServoPort, ServoSettings, ServoSpec},
    speech::SpeechSettings,
};

/// Every setting of the server, in declaration order.
pub static SETTINGS: LazyLock<Vec<&'static Setting>> = LazyLock::new(|| {
    let mut settings = Vec::new();
    Config::describe(&mut settings);
    settings
});

/// The environment variable naming the configuration file.
pub const CONFIG_ENV: &str = "CANTINA_CONFIG";

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

settings! {
    /// The validated configuration of the server.
    #[derive(Clone, Debug, PartialEq)]
    pub struct Config {
        /// Address the gRPC server listens on (HOST:PORT; port 0 picks a free port)
        pub listen: SocketAddr = setting {
            key: "listen", env: "CANTINA_LISTEN", default: "127.0.0.1:50051",
            parse: parse_listen,
        },
        /// Bearer token required on every RPC but health and reflection
        pub token: Option<String> = setting {
            key: "token", env: "CANTINA_TOKEN", unset: None,
            parse: |s| parse_token(s).map(Some),
            secret: true,
        },
        /// File holding the bearer token (its text, the trailing newline trimmed): keeps it out of the environment and process list; instead of `token`
        pub token_file: Option<PathBuf> = setting {
            key: "token_file", env: "CANTINA_TOKEN_FILE", unset: None,
            parse: parse_path,
        },
        /// Allow listening on a non-loopback address with neither a token nor TLS
        pub allow_insecure_remote: bool = setting {
            key: "allow_insecure_remote", env: "CANTINA_ALLOW_INSECURE_REMOTE", default: "false",
            parse: parse_bool,
            switch: true,
        },
        /// The TLS certificate and key (`tls_cert`, `tls_key`); `None` serves
        /// plaintext gRPC.
        pub tls: Option<TlsFiles> = group {},
        /// Where session log files go
        pub log_dir: PathBuf = setting {
            key: "log_dir", env: "CANTINA_LOG_DIR", default: "logs",
            parse: parse_path_required,
        },
        /// The audio's settings, and where generated data lives.
        pub audio: AudioSettings = group {},
        /// Folder of the named plans, JSON or YAML files [default: `plans` in the data folder]
        pub plans_dir: Option<PathBuf> = setting {
            key: "plans_dir", env: "CANTINA_PLANS_DIR", unset: None,
            parse: parse_path,
        },
        /// Serial port of the eyes' Arduino, `auto`, or `virtual`
        pub eyes_port: EyesPort = setting {
            key: "eyes_port", env: "CANTINA_EYES_PORT", default: "auto",
            parse: str::parse,
        },
        /// How the eyes' link behaves.
        pub eyes: EyesSettings = group {},
        /// Serial port of the servos' Pololu Maestro (its Command Port), `auto`, or `virtual`
        pub servo_port: ServoPort = setting {
            key: "servo_port", env: "CANTINA_SERVO_PORT", default: "virtual",
            parse: str::parse,
        },
        /// How the servos' link behaves.
        pub servo: ServoSettings = group {},
        /// The servos, one `[[servo]]` table each in the file (not a
        /// setting: `servos::settings::parse_tables` reads them).
        pub servos: Vec<ServoSpec> = fixed { Vec::new() },
        /// The speech's engine, voice, ducking, eyes and cache.
        pub speech: SpeechSettings = group {},
        /// What to log: a level or EnvFilter directives such as `info,cantina_server=debug`
        pub log_level: String = setting {
            key: "log_level", env: "CANTINA_LOG_LEVEL", default: "info",
            type: "filter",
            parse: parse_log_level,
        },
        /// Log format on stderr: `pretty` or `json`
        pub log_format: LogFormat = setting {
            key: "log_format", env: "CANTINA_LOG_FORMAT", default: "pretty",
            parse: str::parse,
        },
        /// The log service's settings.
        pub logs: LogSettings = group {},
        /// Longest time a unary request may take
        pub request_timeout: Duration = setting {
            key: "request_timeout", env: "CANTINA_REQUEST_TIMEOUT", default: "30s",
            parse: duration,
        },
        /// How long shutdown waits for open requests and streams before closing them
        pub shutdown_grace: Duration = setting {
            key: "shutdown_grace", env: "CANTINA_SHUTDOWN_GRACE", default: "5s",
            parse: duration_or_zero,
        },
        /// Requests handled at once per connection; more are refused (RESOURCE_EXHAUSTED)
        pub concurrency_limit: usize = setting {
            key: "concurrency_limit", env: "CANTINA_CONCURRENCY_LIMIT", default: "256",
            parse: positive,
        },
        /// Long-lived streams (TailLogs, WatchEvents, WatchPlans, RunPlan) open at once, server-wide; more are refused (RESOURCE_EXHAUSTED)
        pub max_streams: usize = setting {
            key: "max_streams", env: "CANTINA_MAX_STREAMS", default: "256",
            parse: positive,
        },
        /// Long-lived streams one peer address may hold open at once; more are refused (RESOURCE_EXHAUSTED)
        pub max_streams_per_peer: usize = setting {
            key: "max_streams_per_peer", env: "CANTINA_MAX_STREAMS_PER_PEER", default: "32",
            parse: positive,
        },
        /// Failures from one address within a minute (wrong tokens, oversized messages, broken HTTP/2) that get it refused for `peer_ban_time` (0: never)
        pub peer_ban_after: usize = setting {
            key: "peer_ban_after", env: "CANTINA_PEER_BAN_AFTER", default: "10",
            parse: whole,
        },
        /// How long a peer is refused after `peer_ban_after` failures; twice as long each time again, an hour at most
        pub peer_ban_time: Duration = setting {
            key: "peer_ban_time", env: "CANTINA_PEER_BAN_TIME", default: "60s",
            parse: duration,
        },
        /// Whether loopback addresses (clients on the droid itself) can be banned too; by default they never are, as fail2ban ignores localhost
        pub peer_ban_loopback: bool = setting {
            key: "peer_ban_loopback", env: "CANTINA_PEER_BAN_LOOPBACK", default: "false",
            parse: parse_bool,
        },
        /// The event bus's settings.
        pub bus: BusConfig = group {},
        /// How often the bus logs its metrics (0s: never)
        pub bus_metrics_interval: Duration = setting {
            key: "bus_metrics_interval", env: "CANTINA_BUS_METRICS_INTERVAL", default: "60s",
            parse: duration_or_zero,
        },
        /// How often freed memory is handed back to the system when over 1 MiB is kept (0s: never)
        pub memory_trim_interval: Duration = setting {
            key: "memory_trim_interval", env: "CANTINA_MEMORY_TRIM_INTERVAL", default: "5s",
            parse: duration_or_zero,
        },
        /// Largest gRPC message accepted or sent (bytes, or with KiB/MiB)
        pub max_message_size: usize = setting {
            key: "max_message_size", env: "CANTINA_MAX_MESSAGE_SIZE", default: "4MiB",
            type: "size",
            parse: parse_size,
        },
        /// Where each value came from, by key, for `--print-config`.
        pub origins: BTreeMap<&'static str, Origin> = fixed { BTreeMap::new() },
    }
}

impl Config {
    /// The plans folder in use: `plans_dir`, or `plans` in the data folder.
    pub fn plans_folder(&self) -> PathBuf {
        self.plans_dir
            .clone()
            .unwrap_or_else(|| self.audio.data_dir.join("plans"))
    }
}

impl Default for Config {
    /// The embedded defaults: runs on a laptop with no hardware.
    fn default() -> Self {
        Sources::default()
            .resolve()
            .expect("the embedded defaults are valid")
    }
}

settings! {
    /// The TLS settings as given, before the both-or-neither check.
    struct TlsSettings {
        /// TLS certificate chain, a PEM file (with tls_key: serve gRPC over TLS)
        cert: Option<PathBuf> = setting {
            key: "tls_cert", env: "CANTINA_TLS_CERT", unset: None,
            parse: parse_path,
        },
        /// Private key of the TLS certificate, a PEM file
        key: Option<PathBuf> = setting {
            key: "tls_key", env: "CANTINA_TLS_KEY", unset: None,
            parse: parse_path,
        },
    }
}

/// TLS is both files or neither, and both usable.
impl Settings for Option<TlsFiles> {
    fn describe(out: &mut Vec<&'static Setting>) {
        TlsSettings::describe(out);
    }

    fn resolve(v: &mut Validator<'_>) -> Option<Self> {
        let TlsSettings { cert, key } = TlsSettings::resolve(v)?;
        match (cert, key) {
            (None, None) => Some(None),
            (Some(_), None) => {
                v.report(
                    "tls_cert",
                    "a certificate needs its private key: set tls_key (CANTINA_TLS_KEY, --tls-key) \
                     too, or remove tls_cert to serve without TLS"
                        .into(),
                );
                None
            }
            (None, Some(_)) => {
                v.report(
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
                    Ok(_) => Some(Some(files)),
                    Err(problems) => {
                        for (key, problem) in problems {
                            v.report(key, problem);
                        }
                        None
                    }
                }
            }
        }
    }

    fn print(&self, out: &mut Vec<(&'static Setting, Option<String>)>) {
        TlsSettings {
            cert: self.as_ref().map(|t| t.cert.clone()),
            key: self.as_ref().map(|t| t.key.clone()),
        }
        .print(out);
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
        for setting in SETTINGS.iter() {
            let Some(value) = matches.get_one::<String>(setting.key) else {
                continue;
            };
            let origin = match matches.value_source(setting.key) {
                Some(ValueSource::EnvVariable) => Origin::Env(setting.env),
                _ => Origin::Flag(setting.flag()),
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
        for setting in SETTINGS.iter() {
            if let Some(default) = setting.default {
                raw.insert(setting.key, (default.to_string(), Origin::Default));
            }
        }
        let mut servo_tables = None;
        if let Some((path, text)) = &self.file {
            servo_tables = read_file(path, text, &mut raw, &mut errors);
        }
        for (key, value) in &self.overrides {
            raw.insert(key, value.clone());
        }

        let mut config = Config::resolve(&mut Validator::new(&raw, &mut errors));
        if let Some(config) = config.as_mut() {
            read_token_file(config, &raw, &mut errors);
        }
        check_remote(&raw, &mut errors);
        let servos = match (&self.file, servo_tables) {
            (Some((path, _)), Some(tables)) => {
                let channels = config.as_ref().and_then(|c| c.servo.channels);
                read_servos(path, &tables, channels, &mut errors)
            }
            _ => Vec::new(),
        };
        if !errors.is_empty() {
            return Err(ConfigErrors(errors));
        }
        let mut config = config.expect("no problem reported");
        config.servos = servos;
        config.origins = raw.into_iter().map(|(k, (_, o))| (k, o)).collect();
        Ok(config)
    }
}

/// Sets the token from `token_file`, when one is given: the file's text
/// without its trailing newline. Both `token` and `token_file`, a file that
/// cannot be read, or one that holds no usable token is a problem naming the
/// file.
fn read_token_file(
    config: &mut Config,
    raw: &BTreeMap<&'static str, (String, Origin)>,
    errors: &mut Vec<ConfigError>,
) {
    let Some(path) = config.token_file.clone() else {
        return;
    };
    let (value, origin) = raw["token_file"].clone();
    let mut report = |problem: String| {
        errors.push(ConfigError {
            key: "token_file".into(),
            value: Some(value.clone()),
            origin: origin.clone(),
            problem,
        });
    };
    if config.token.is_some() {
        report(
            "both token and token_file are set: pick one (token_file keeps the token out of \
             the environment and the process list)"
                .into(),
        );
        return;
    }
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            return report(format!(
                "cannot read the token file {}: {e}; fix its path or permissions",
                path.display()
            ));
        }
    };
    let token = text.strip_suffix('\n').unwrap_or(&text);
    let token = token.strip_suffix('\r').unwrap_or(token);
    match token {
        "" => report(format!(
            "the token file {} is empty: write the token into it (one line), or remove \
             token_file",
            path.display()
        )),
        token => match parse_token(token) {
            Ok(token) => config.token = Some(token),
            Err(problem) => report(format!(
                "the token in {} is not usable: {problem}",
                path.display()
            )),
        },
    }
}

impl Config {
    /// A warning when the token file can be read by its group or by others
    /// (as ssh warns about a private key): `None` when it is private, or
    /// there is no token file.
    pub fn token_file_warning(&self) -> Option<String> {
        let path = self.token_file.as_ref()?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).ok()?.permissions().mode();
            (mode & 0o077 != 0).then(|| {
                format!(
                    "the token file {} can be read by others (mode {:03o}): \
                     run `chmod 600 {}`",
                    path.display(),
                    mode & 0o777,
                    path.display()
                )
            })
        }
        #[cfg(not(unix))]
        {
            let _ = path;
            None
        }
    }
}

/// A non-loopback listen address needs a token, TLS or explicit consent. A
/// bad listen address or switch is reported as such, not again here; a bad
/// token counts as none.
fn check_remote(raw: &BTreeMap<&'static str, (String, Origin)>, errors: &mut Vec<ConfigError>) {
    let value = |key: &str| raw.get(key).map(|(value, _)| value.trim());
    let listen = value("listen").and_then(|s| parse_listen(s).ok());
    let allowed = value("allow_insecure_remote").and_then(|s| parse_bool(s).ok());
    let token = value("token").is_some_and(|s| parse_token(s).is_ok())
        || value("token_file").is_some_and(|s| !s.is_empty());
    let tls_wanted = ["tls_cert", "tls_key"]
        .into_iter()
        .any(|key| value(key).is_some_and(|s| !s.is_empty()));
    if let (Some(listen), Some(false)) = (listen, allowed)
        && !listen.ip().is_loopback()
        && !token
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
}

/// The `[[servo]]` tables' key in the file.
const SERVO_TABLES: &str = "servo";

/// Reads the file's settings into `raw`; returns its `[[servo]]` tables,
/// which are not settings.
fn read_file(
    path: &Path,
    text: &str,
    raw: &mut BTreeMap<&'static str, (String, Origin)>,
    errors: &mut Vec<ConfigError>,
) -> Option<toml::Value> {
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
            return None;
        }
    };
    let mut servo_tables = None;
    for (key, value) in table {
        if key == SERVO_TABLES {
            servo_tables = Some(value);
            continue;
        }
        let Some(setting) = SETTINGS.iter().find(|s| s.key == key) else {
            let hint = if strsim::levenshtein(&key, SERVO_TABLES) <= 2 {
                format!("; did you mean [[{SERVO_TABLES}]] tables?")
            } else {
                closest_key(&key)
                    .map(|k| format!("; did you mean '{k}'?"))
                    .unwrap_or_default()
            };
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
    servo_tables
}

/// The servos of the file's `[[servo]]` tables, every problem reported
/// (with channels beyond `servo_channels` when it is set).
fn read_servos(
    path: &Path,
    tables: &toml::Value,
    channels: Option<u8>,
    errors: &mut Vec<ConfigError>,
) -> Vec<ServoSpec> {
    use crate::servos::settings::{beyond, parse_tables};

    let origin = Origin::File(path.to_path_buf());
    let mut report = |problems: Vec<crate::servos::settings::TableProblem>| {
        errors.extend(problems.into_iter().map(|p| ConfigError {
            key: p.key,
            value: p.value,
            origin: origin.clone(),
            problem: p.problem,
        }));
    };
    match parse_tables(tables) {
        Ok(specs) => {
            let problems = channels.map(|n| beyond(&specs, n)).unwrap_or_default();
            let ok = problems.is_empty();
            report(problems);
            if ok { specs } else { Vec::new() }
        }
        Err(problems) => {
            report(problems);
            Vec::new()
        }
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

fn parse_token(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("an empty token would accept anyone; remove the setting or set a secret".into())
    } else if !s.chars().all(|c| c.is_ascii_graphic()) {
        Err("use printable ASCII without spaces (it travels in an HTTP header)".into())
    } else {
        Ok(s.to_string())
    }
}

fn parse_log_level(s: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(s)
        .map(|_| s.to_string())
        .map_err(|e| format!("not a log filter ({e}); use a level such as `info` or directives such as `info,cantina_server=debug`"))
}

fn parse_path_required(s: &str) -> Result<PathBuf, String> {
    parse_path(s)?.ok_or_else(|| "give a folder".to_string())
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
    for setting in SETTINGS.iter() {
        let mut arg = Arg::new(setting.key)
            .long(flag_name(setting.key))
            .env(setting.env)
            .help(setting.help())
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
            arg = arg.help(format!("{} [default: {default}]", setting.help()));
        }
        if setting.secret {
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
        let mut values = Vec::new();
        self.print(&mut values);
        for (setting, value) in values {
            let origin = self
                .origins
                .get(setting.key)
                .map(ToString::to_string)
                .unwrap_or_else(|| "default".into());
            match value {
                // Never printed: the output is meant to be shared and pasted.
                Some(_) if setting.secret => out.push_str(&format!(
                    "# {} is set (hidden)  # {}\n",
                    setting.key, setting.env
                )),
                Some(value) => out.push_str(&format!(
                    "{} = {value}  # {}, from {origin}\n",
                    setting.key, setting.env
                )),
                None => out.push_str(&format!(
                    "# {} is unset  # {}: {}\n",
                    setting.key,
                    setting.env,
                    setting.help()
                )),
            }
        }
        // Tables after every key: TOML puts keys after a table inside it.
        out.push_str(&crate::servos::settings::to_toml(&self.servos));
        out
    }
}

/// The table of every setting in `docs/settings.md`, generated from the
/// declarations.
pub fn settings_table() -> String {
    let cell = |text: &str| {
        text.replace('|', "\\|")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    };
    let mut out = String::from(
        "| Key | Variable | Flag | Type | Default | Meaning |\n\
         |-----|----------|------|------|---------|---------|\n",
    );
    for setting in SETTINGS.iter() {
        let default = setting
            .default
            .map_or("unset".to_string(), |d| format!("`{d}`"));
        out.push_str(&format!(
            "| `{}` | `{}` | `{}` | {} | {default} | {} |\n",
            setting.key,
            setting.env,
            setting.flag(),
            setting.type_name,
            cell(setting.help()),
        ));
    }
    out
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
        assert_eq!(config.audio.output, AudioOutput::Default);
        assert_eq!(config.eyes_port, EyesPort::Auto);
        assert_eq!(config.log_dir, PathBuf::from("logs"));
        assert_eq!(config.plans_folder(), config.audio.data_dir.join("plans"));
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

    const SERVOS: &str = r#"
servo_port = "/dev/ttyACM1"

[[servo]]
name = "head"
channel = 0
min_us = 1000
max_us = 2000
home_us = 1500
max_speed = 0.5

[[servo]]
name = "jaw"
channel = 7
min_us = 1100
max_us = 1900
"#;

    fn from_file(text: &str) -> Result<Config, ConfigErrors> {
        Sources {
            file: Some(("droid.toml".into(), text.into())),
            overrides: BTreeMap::new(),
        }
        .resolve()
    }

    #[test]
    fn servo_tables_are_read_printed_and_read_back() {
        let config = from_file(SERVOS).unwrap();
        assert_eq!(config.servo_port, ServoPort::Path("/dev/ttyACM1".into()));
        let names: Vec<_> = config.servos.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["head", "jaw"]);
        assert_eq!(config.servos[1].home_us, 1500, "the middle by default");
        assert_eq!(config.servos[0].max_speed, Some(0.5));
        let text = config.to_toml();
        assert!(text.contains("\n[[servo]]\nname = \"head\"\n"), "{text}");
        let mut again = from_file(&text).unwrap();
        again.origins = config.origins.clone();
        assert_eq!(again, config);
        assert!(Config::default().servos.is_empty());
        assert_eq!(Config::default().servo_port, ServoPort::Virtual);
    }

    #[test]
    fn every_servo_problem_is_reported_with_the_other_settings() {
        let text = "log_format = \"xml\"\nservo_channels = 6\n\n\
                    [[servo]]\nname = \"head\"\nchannel = 0\nmin_us = 2000\nmax_us = 1000\n\n\
                    [[servo]]\nname = \"head\"\nchannel = 0\nmin_us = 1000\nmax_us = 2000\nhome_us = 900\n";
        let errors = from_file(text).unwrap_err();
        let keys: Vec<_> = errors.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "log_format",
                "servo \"head\".min_us",
                "servo \"head\".home_us",
                "servo \"head\".name",
                "servo \"head\".channel"
            ],
            "{errors}"
        );
        assert!(
            errors
                .0
                .iter()
                .all(|e| e.origin == Origin::File("droid.toml".into()))
        );
        // A channel beyond servo_channels.
        let text = "servo_channels = \"6\"\n[[servo]]\nname = \"tail\"\nchannel = 9\nmin_us = 1000\nmax_us = 2000\n";
        let errors = from_file(text).unwrap_err().to_string();
        assert!(errors.contains("beyond the board's 6 channels"), "{errors}");
        // A misspelt table name is pointed at the tables.
        let errors = from_file("[[servos]]\nname = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            errors.contains("did you mean [[servo]] tables?"),
            "{errors}"
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
        assert_eq!(again.audio.music_dir, Some(PathBuf::from("/srv/music")));
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
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert!(duration("0s").is_err());
        assert_eq!(duration_or_zero("0s"), Ok(Duration::ZERO));
    }

    #[test]
    fn every_variable_and_flag_follows_the_key() {
        let mut keys = std::collections::BTreeSet::new();
        for setting in SETTINGS.iter() {
            assert!(keys.insert(setting.key), "{} declared twice", setting.key);
            assert_eq!(
                setting.env,
                format!("CANTINA_{}", setting.key.to_ascii_uppercase()),
                "the variable of {}",
                setting.key
            );
            assert_eq!(
                setting.flag(),
                format!("--{}", setting.key.replace('_', "-")),
                "the flag of {}",
                setting.key
            );
            assert!(!setting.help().is_empty(), "{} has no help", setting.key);
        }
        let command = add_args(Command::new("test"));
        for setting in SETTINGS.iter() {
            let arg = command
                .get_arguments()
                .find(|a| a.get_id() == setting.key)
                .unwrap_or_else(|| panic!("no flag for {}", setting.key));
            assert_eq!(
                arg.get_long().map(|l| format!("--{l}")),
                Some(setting.flag())
            );
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(setting.env));
        }
    }

    /// `config` printed, then read back as a configuration file (the token,
    /// which is never printed, given again as a variable).
    fn read_back(config: &Config) -> Config {
        let mut overrides = BTreeMap::new();
        if let Some(token) = config
            .token
            .as_ref()
            .filter(|_| config.token_file.is_none())
        {
            overrides.insert("token", (token.clone(), Origin::Env("CANTINA_TOKEN")));
        }
        let mut again = Sources {
            file: Some(("printed.toml".into(), config.to_toml())),
            overrides,
        }
        .resolve()
        .unwrap_or_else(|e| panic!("{e}\n{}", config.to_toml()));
        again.origins = config.origins.clone();
        again
    }

    fn with_token_file(path: &Path, token: Option<&str>) -> Result<Config, String> {
        let mut overrides = BTreeMap::from([(
            "token_file",
            (
                path.display().to_string(),
                Origin::Env("CANTINA_TOKEN_FILE"),
            ),
        )]);
        if let Some(token) = token {
            overrides.insert("token", (token.into(), Origin::Env("CANTINA_TOKEN")));
        }
        Sources {
            file: None,
            overrides,
        }
        .resolve()
        .map_err(|e| e.to_string())
    }

    #[test]
    fn the_token_file_is_read_without_its_trailing_newline() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let config = with_token_file(&path, None).unwrap();
        assert_eq!(config.token.as_deref(), Some("s3cret"));
        assert_eq!(config.token_file_warning(), None);
        // Printed, it reads back (the file again, not the token).
        assert!(!config.to_toml().contains("s3cret"));
        assert_eq!(read_back(&config), config);

        std::fs::write(&path, "s3cret\r\n").unwrap();
        assert_eq!(
            with_token_file(&path, None).unwrap().token.as_deref(),
            Some("s3cret")
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let warning = with_token_file(&path, None)
            .unwrap()
            .token_file_warning()
            .unwrap();
        assert!(
            warning.contains("chmod 600") && warning.contains("644"),
            "{warning}"
        );
    }

    #[test]
    fn a_token_file_that_cannot_be_used_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let shown = path.display().to_string();
        let missing = with_token_file(&path, None).unwrap_err();
        assert!(
            missing.contains("cannot read the token file") && missing.contains(&shown),
            "{missing}"
        );
        std::fs::write(&path, "\n").unwrap();
        let empty = with_token_file(&path, None).unwrap_err();
        assert!(
            empty.contains("is empty") && empty.contains(&shown),
            "{empty}"
        );
        std::fs::write(&path, "two words").unwrap();
        let spaced = with_token_file(&path, None).unwrap_err();
        assert!(spaced.contains("without spaces"), "{spaced}");
        std::fs::write(&path, "s3cret").unwrap();
        let both = with_token_file(&path, Some("other")).unwrap_err();
        assert!(both.contains("pick one"), "{both}");
    }

    #[test]
    fn printed_defaults_read_back_as_the_defaults() {
        let config = Config::default();
        assert_eq!(read_back(&config), config);
    }

    #[test]
    fn printed_config_with_every_setting_changed_reads_back_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = tls_files(dir.path());
        let changed: BTreeMap<&'static str, &str> = [
            ("listen", "0.0.0.0:7000"),
            ("token", "s3cret"),
            ("allow_insecure_remote", "true"),
            ("tls_cert", cert.as_str()),
            ("tls_key", key.as_str()),
            ("log_dir", "/var/log/cantina"),
            ("data_dir", "/srv/cantina"),
            ("music_dir", "/srv/music"),
            ("plans_dir", "/srv/plans"),
            ("audio_output", "wav:/tmp/show.wav"),
            ("audio_sample_rate", "44100"),
            ("audio_period", "256"),
            ("audio_retry_max", "10s"),
            ("dj_transition", "1m 30s"),
            ("dj_commentary_lead", "0s"),
            ("mode_chime", "false"),
            ("speech_engine", "piper:/srv/voices/droid.onnx"),
            ("speech_voice", "en-gb+m3"),
            ("speech_rate", "200"),
            ("speech_pitch", "20"),
            ("speech_duck_level", "0.25"),
            ("speech_duck_fade", "1s"),
            ("speech_eyes", "false"),
            ("speech_cache_max", "1GiB"),
            ("speech_max_chars", "800"),
            ("speech_upload_max", "4MiB"),
            ("eyes_port", "/dev/ttyACM0"),
            ("eyes_answer_timeout", "250ms"),
            ("eyes_boot_timeout", "0s"),
            ("eyes_heartbeat", "0s"),
            ("eyes_retry_max", "5s"),
            ("servo_port", "/dev/ttyACM1"),
            ("servo_answer_timeout", "200ms"),
            ("servo_heartbeat", "0s"),
            ("servo_retry_max", "10s"),
            ("servo_channels", "12"),
            ("servo_home_duration", "2s"),
            ("servo_home_on_stop", "false"),
            ("log_level", "debug,cantina_server=trace"),
            ("log_format", "json"),
            ("log_ring_size", "500"),
            ("log_dedup_window", "0s"),
            ("log_file_format", "json"),
            ("log_flush_interval", "100ms"),
            ("log_retention_files", "0"),
            ("log_retention_size", "2GiB"),
            ("log_follower_buffer", "64"),
            ("request_timeout", "2m"),
            ("shutdown_grace", "0s"),
            ("concurrency_limit", "16"),
            ("max_streams", "64"),
            ("max_streams_per_peer", "8"),
            ("peer_ban_after", "0"),
            ("peer_ban_time", "10m"),
            ("peer_ban_loopback", "true"),
            ("bus_queue_capacity", "10"),
            ("bus_handler_timeout", "1s"),
            ("bus_max_failures", "0"),
            ("bus_history", "0"),
            ("bus_metrics_interval", "0s"),
            ("memory_trim_interval", "30s"),
            ("max_message_size", "16MiB"),
        ]
        .into_iter()
        .collect();
        let keys: Vec<_> = SETTINGS.iter().map(|s| s.key).collect();
        let mut changed_keys: Vec<_> = changed.keys().copied().collect();
        changed_keys.push("token");
        // Set with `token`, it is an error: its own test reads it back.
        changed_keys.push("token_file");
        changed_keys.sort();
        changed_keys.dedup();
        let mut all_keys = keys.clone();
        all_keys.sort();
        assert_eq!(changed_keys, all_keys, "change every setting in this test");

        let config = Sources {
            file: None,
            overrides: changed
                .iter()
                .map(|(&key, value)| flag(key, value))
                .collect(),
        }
        .resolve()
        .unwrap();
        let defaults = Config::default();
        let mut printed = Vec::new();
        config.print(&mut printed);
        let mut printed_defaults = Vec::new();
        defaults.print(&mut printed_defaults);
        for ((setting, value), (_, default)) in printed.iter().zip(&printed_defaults) {
            if setting.key == "token_file" {
                continue; // With `token` an error: its own test reads it back.
            }
            assert_ne!(value, default, "{} is not changed", setting.key);
        }
        assert_eq!(read_back(&config), config);
    }

    #[test]
    fn the_settings_doc_is_up_to_date() {
        const BEGIN: &str = "<!-- settings table: generated from the declarations; \
                             regenerate with CANTINA_BLESS=1 -->\n";
        const END: &str = "<!-- end of the settings table -->";
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/settings.md");
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let (before, rest) = text.split_once(BEGIN).expect("the table's opening marker");
        let (_, after) = rest.split_once(END).expect("the table's closing marker");
        let wanted = format!("{before}{BEGIN}{}{END}{after}", settings_table());
        if wanted == text {
            return;
        }
        if std::env::var("CANTINA_BLESS").is_ok_and(|v| v == "1") {
            std::fs::write(&path, wanted).unwrap();
            return;
        }
        for setting in SETTINGS.iter() {
            assert!(
                text.contains(&format!("| `{}` |", setting.key)),
                "{} is missing from docs/settings.md",
                setting.key
            );
        }
        panic!(
            "docs/settings.md's table is out of date with the settings declared in the code; \
             regenerate it with `CANTINA_BLESS=1 cargo test -p cantina-server --lib config`"
        );
    }
}
