//! The servos' settings: where the board is, how its link behaves (declared
//! with [`settings!`](crate::declare), each field's `///` comment its
//! `--help` text), and the servos themselves, one `[[servo]]` table each in
//! the configuration file:
//!
//! ```toml
//! servo_port = "auto"   # or a path, or "virtual" (the default)
//!
//! [[servo]]
//! name = "head"
//! channel = 0
//! min_us = 1000         # never driven outside min_us..max_us
//! max_us = 2000
//! home_us = 1500        # where `servo home`, panic and shutdown put it (default: the middle)
//! max_speed = 0.5       # optional: fractions of the range a second
//! ```
//!
//! [`parse_tables`] reads the tables and reports every problem at once.

use std::{collections::BTreeMap, fmt, path::PathBuf, str::FromStr, time::Duration};

use super::protocol::{self, MAX_CHANNELS, MAX_TARGET};
use crate::declare::{self, Show, quote, settings};

settings! {
    /// How the servos' serial link behaves.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub struct ServoSettings {
        /// How long the servo board may take to answer a query before it counts as lost
        pub answer_timeout: Duration = setting {
            key: "servo_answer_timeout", env: "CANTINA_SERVO_ANSWER_TIMEOUT", default: "500ms",
            parse: declare::duration,
        },
        /// How often to check that the servo board still answers, reading its errors (0s: never)
        pub heartbeat: Duration = setting {
            key: "servo_heartbeat", env: "CANTINA_SERVO_HEARTBEAT", default: "1s",
            parse: declare::duration_or_zero,
        },
        /// Longest wait between attempts to reopen a lost servo board (the wait doubles from 250ms)
        pub retry_max: Duration = setting {
            key: "servo_retry_max", env: "CANTINA_SERVO_RETRY_MAX", default: "3s",
            parse: declare::duration,
        },
        /// Channels of the Maestro: `auto` (from its USB id, else 24), or 6, 12, 18 or 24
        pub channels: Option<u8> = setting {
            key: "servo_channels", env: "CANTINA_SERVO_CHANNELS", default: "auto",
            type: "channels",
            parse: parse_channels,
            show: show_channels,
        },
        /// How long `servo home` takes (ease-in-out; longer when a servo's max_speed asks)
        pub home_duration: Duration = setting {
            key: "servo_home_duration", env: "CANTINA_SERVO_HOME_DURATION", default: "1s",
            parse: declare::duration_or_zero,
        },
        /// Send every servo home when the server stops (the panic button always does)
        pub home_on_stop: bool = setting {
            key: "servo_home_on_stop", env: "CANTINA_SERVO_HOME_ON_STOP", default: "true",
            parse: declare::parse_bool,
        },
    }
}

fn parse_channels(s: &str) -> Result<Option<u8>, String> {
    match s {
        "auto" => Ok(None),
        "6" | "12" | "18" | "24" => Ok(s.parse().ok()),
        _ => Err("use `auto`, or a Maestro's channel count: 6, 12, 18 or 24".into()),
    }
}

fn show_channels(value: &Option<u8>) -> Option<String> {
    Some(quote(&value.map_or("auto".to_string(), |n| n.to_string())))
}

/// Where the servo board is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServoPort {
    /// Find a Maestro by its USB id, falling back to `Virtual` when there is none.
    Auto,
    /// Virtual servos inside the server: every move works and is logged.
    Virtual,
    /// An explicit serial port (the Maestro's Command Port).
    Path(PathBuf),
}

impl fmt::Display for ServoPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServoPort::Auto => f.write_str("auto"),
            ServoPort::Virtual => f.write_str("virtual"),
            ServoPort::Path(path) => write!(f, "{}", path.display()),
        }
    }
}

impl FromStr for ServoPort {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "" => Err("use a serial port path, `auto` or `virtual`".into()),
            "auto" => Ok(ServoPort::Auto),
            "virtual" => Ok(ServoPort::Virtual),
            _ => Ok(ServoPort::Path(PathBuf::from(s))),
        }
    }
}

impl Show for ServoPort {
    const TYPE: &'static str = "port";
    fn show(&self) -> Option<String> {
        Some(quote(&self.to_string()))
    }
}

/// One servo, as its `[[servo]]` table declares it.
#[derive(Clone, Debug, PartialEq)]
pub struct ServoSpec {
    /// Its name in commands and plans (letters, digits, `_`, `-`).
    pub name: String,
    /// The board's channel, 0–23.
    pub channel: u8,
    /// The shortest pulse it is ever sent, µs.
    pub min_us: u16,
    /// The longest pulse it is ever sent, µs.
    pub max_us: u16,
    /// Where `servo home`, panic and shutdown put it, µs.
    pub home_us: u16,
    /// Its top speed, in fractions of its range a second.
    pub max_speed: Option<f64>,
}

/// The longest pulse a Maestro target carries, in whole µs.
pub const MAX_US: u16 = MAX_TARGET / 4;

/// The keys a `[[servo]]` table takes.
const KEYS: [&str; 6] = [
    "name",
    "channel",
    "min_us",
    "max_us",
    "home_us",
    "max_speed",
];

/// One problem in the `[[servo]]` tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableProblem {
    /// Where: `servo[2].channel` (tables counted from 1, as people do).
    pub key: String,
    /// The offending value, as written.
    pub value: Option<String>,
    /// What is wrong and what to do.
    pub problem: String,
}

/// Reads the file's `servo` value (an array of tables), reporting every
/// problem at once: bad or missing keys in each table, then duplicate names
/// and channels, min ≥ max and homes outside the range.
pub fn parse_tables(value: &toml::Value) -> Result<Vec<ServoSpec>, Vec<TableProblem>> {
    let mut problems = Vec::new();
    let Some(tables) = value.as_array() else {
        return Err(vec![TableProblem {
            key: "servo".into(),
            value: Some(value.to_string()),
            problem: "declare each servo in a [[servo]] table (name, channel, min_us, max_us, home_us, max_speed)".into(),
        }]);
    };
    let mut specs = Vec::new();
    for (i, table) in tables.iter().enumerate() {
        let at = format!("servo[{}]", i + 1);
        let Some(table) = table.as_table() else {
            problems.push(TableProblem {
                key: at,
                value: Some(table.to_string()),
                problem: "not a table; declare each servo in a [[servo]] table".into(),
            });
            continue;
        };
        if let Some(spec) = parse_table(&at, table, &mut problems) {
            specs.push(spec);
        }
    }
    check_together(&specs, &mut problems);
    if problems.is_empty() {
        Ok(specs)
    } else {
        Err(problems)
    }
}

fn parse_table(
    at: &str,
    table: &toml::Table,
    problems: &mut Vec<TableProblem>,
) -> Option<ServoSpec> {
    let mut bad = |key: &str, value: Option<&toml::Value>, problem: String| {
        problems.push(TableProblem {
            key: format!("{at}.{key}"),
            value: value.map(ToString::to_string),
            problem,
        });
    };
    for (key, value) in table {
        if !KEYS.contains(&key.as_str()) {
            let hint = KEYS
                .iter()
                .map(|k| {
                    let part = k.starts_with(key.as_str()) || k.ends_with(key.as_str());
                    (if part { 0 } else { strsim::levenshtein(key, k) }, *k)
                })
                .filter(|(d, _)| *d <= 2)
                .min()
                .map(|(_, k)| format!("; did you mean '{k}'?"))
                .unwrap_or_default();
            bad(
                key,
                Some(value),
                format!("unknown key{hint} (a servo takes {})", KEYS.join(", ")),
            );
        }
    }
    let name = match table.get("name") {
        None => {
            bad("name", None, "missing: every servo needs a name".into());
            None
        }
        Some(toml::Value::String(name)) if valid_name(name) => Some(name.clone()),
        Some(value) => {
            bad(
                "name",
                Some(value),
                "use a name of letters, digits, '_' and '-' (it is typed in commands and plans)"
                    .into(),
            );
            None
        }
    };
    let mut whole = |key: &str, low: i64, high: i64, what: &str| -> Option<Option<i64>> {
        match table.get(key) {
            None => Some(None),
            Some(toml::Value::Integer(n)) if (low..=high).contains(n) => Some(Some(*n)),
            Some(value) => {
                bad(
                    key,
                    Some(value),
                    format!("use a whole number from {low} to {high}{what}"),
                );
                None
            }
        }
    };
    let channel = whole(
        "channel",
        0,
        i64::from(MAX_CHANNELS) - 1,
        " (the Maestro's channel)",
    );
    let min_us = whole("min_us", 1, i64::from(MAX_US), " (microseconds)");
    let max_us = whole("max_us", 1, i64::from(MAX_US), " (microseconds)");
    let home_us = whole("home_us", 1, i64::from(MAX_US), " (microseconds)");
    let max_speed = match table.get("max_speed") {
        None => Some(None),
        Some(value) => match value
            .as_float()
            .or_else(|| value.as_integer().map(|n| n as f64))
        {
            Some(speed) if speed.is_finite() && speed > 0.0 => Some(Some(speed)),
            _ => {
                bad(
                    "max_speed",
                    Some(value),
                    "use a number above 0: fractions of the servo's range a second (0.5 crosses it in 2 s)".into(),
                );
                None
            }
        },
    };
    for (key, value) in [
        ("channel", &channel),
        ("min_us", &min_us),
        ("max_us", &max_us),
    ] {
        if matches!(value, Some(None)) {
            bad(key, None, format!("missing: every servo needs its {key}"));
        }
    }
    let (name, channel, min_us, max_us, home_us, max_speed) =
        (name?, channel??, min_us??, max_us??, home_us?, max_speed?);
    let home_us = home_us.unwrap_or((min_us + max_us) / 2);
    Some(ServoSpec {
        name,
        channel: channel as u8,
        min_us: min_us as u16,
        max_us: max_us as u16,
        home_us: home_us as u16,
        max_speed,
    })
}

/// The checks across keys and across tables.
fn check_together(specs: &[ServoSpec], problems: &mut Vec<TableProblem>) {
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut channels: BTreeMap<u8, &str> = BTreeMap::new();
    for spec in specs {
        let at = format!("servo {:?}", spec.name);
        if spec.min_us >= spec.max_us {
            problems.push(TableProblem {
                key: format!("{at}.min_us"),
                value: Some(spec.min_us.to_string()),
                problem: format!(
                    "min_us must be below max_us ({}); swap them if the servo turns the other way round",
                    spec.max_us
                ),
            });
        } else if let Some(slowest) = spec
            .max_speed
            .map(|speed| (speed, slowest_speed(spec.min_us, spec.max_us)))
            .filter(|(speed, slowest)| speed < slowest)
            .map(|(_, slowest)| slowest)
        {
            problems.push(TableProblem {
                key: format!("{at}.max_speed"),
                value: spec.max_speed.map(|s| s.to_string()),
                problem: format!(
                    "below the Maestro's slowest speed limit (1 unit: 25 µs a second, {slowest:.4} of this servo's range a second); use at least {slowest:.4}, or no max_speed"
                ),
            });
        } else if !(spec.min_us..=spec.max_us).contains(&spec.home_us) {
            problems.push(TableProblem {
                key: format!("{at}.home_us"),
                value: Some(spec.home_us.to_string()),
                problem: format!(
                    "home_us is outside the servo's range {}–{} µs; it must be within min_us and max_us",
                    spec.min_us, spec.max_us
                ),
            });
        }
        let seen = names.entry(&spec.name).or_default();
        *seen += 1;
        if *seen == 2 {
            problems.push(TableProblem {
                key: format!("{at}.name"),
                value: Some(spec.name.clone()),
                problem: "two servos have this name; give each its own".into(),
            });
        }
        if let Some(other) = channels.insert(spec.channel, &spec.name) {
            problems.push(TableProblem {
                key: format!("{at}.channel"),
                value: Some(spec.channel.to_string()),
                problem: format!(
                    "servo {other:?} is on channel {} too; each servo needs its own channel",
                    spec.channel
                ),
            });
        }
    }
}

/// The slowest `max_speed` (fractions of the range a second) the board can
/// keep to: its speed limit's unit, (0.25 µs)/(10 ms), that is 100
/// quarter-µs a second. Anything slower would be paced faster by the board.
pub fn slowest_speed(min_us: u16, max_us: u16) -> f64 {
    let range = 4.0 * f64::from(max_us.saturating_sub(min_us).max(1));
    protocol::SPEED_UNIT_PER_S / range
}

/// The servos whose channel a board of `count` channels lacks.
pub fn beyond(specs: &[ServoSpec], count: u8) -> Vec<TableProblem> {
    specs
        .iter()
        .filter(|spec| spec.channel >= count)
        .map(|spec| TableProblem {
            key: format!("servo {:?}.channel", spec.name),
            value: Some(spec.channel.to_string()),
            problem: format!(
                "beyond the board's {count} channels (0–{}); check servo_channels and the servo's wiring",
                count - 1
            ),
        })
        .collect()
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

/// The servos as `[[servo]]` tables, for `--print-config`: they read back
/// as the same servos.
pub fn to_toml(specs: &[ServoSpec]) -> String {
    let mut out = String::new();
    for spec in specs {
        out.push_str("\n[[servo]]\n");
        out.push_str(&format!("name = {}\n", quote(&spec.name)));
        out.push_str(&format!("channel = {}\n", spec.channel));
        out.push_str(&format!("min_us = {}\n", spec.min_us));
        out.push_str(&format!("max_us = {}\n", spec.max_us));
        out.push_str(&format!("home_us = {}\n", spec.home_us));
        if let Some(speed) = spec.max_speed {
            out.push_str(&format!("max_speed = {}\n", toml::Value::Float(speed)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<ServoSpec>, Vec<TableProblem>> {
        let table: toml::Table = text.parse().unwrap();
        parse_tables(&table["servo"])
    }

    #[test]
    fn servos_are_read_from_their_tables() {
        let specs = parse(
            r#"
            [[servo]]
            name = "head"
            channel = 0
            min_us = 1000
            max_us = 2000
            home_us = 1500
            max_speed = 0.5

            [[servo]]
            name = "jaw"
            channel = 5
            min_us = 1200
            max_us = 1800
            "#,
        )
        .unwrap();
        assert_eq!(
            specs,
            [
                ServoSpec {
                    name: "head".into(),
                    channel: 0,
                    min_us: 1000,
                    max_us: 2000,
                    home_us: 1500,
                    max_speed: Some(0.5)
                },
                ServoSpec {
                    name: "jaw".into(),
                    channel: 5,
                    min_us: 1200,
                    max_us: 1800,
                    home_us: 1500,
                    max_speed: None
                }
            ]
        );
        // And they print back as the same tables.
        let printed = format!("x = 1\n{}", to_toml(&specs));
        assert_eq!(parse(&printed).unwrap(), specs);
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let problems = parse(
            r#"
            [[servo]]
            name = "head"
            channel = 0
            min_us = 2000
            max_us = 1000

            [[servo]]
            name = "head"
            channel = 0
            min_us = 1000
            max_us = 2000
            home_us = 2500

            [[servo]]
            name = "jaw lower"
            channel = 31
            min_us = 0
            max_speed = -1
            speed = 2

            [[servo]]
            channel = 3
            min_us = 1000
            max_us = 2000
            "#,
        )
        .unwrap_err();
        let found: Vec<(&str, &str)> = problems
            .iter()
            .map(|p| (p.key.as_str(), p.problem.as_str()))
            .collect();
        let keys: Vec<&str> = found.iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "servo[3].speed",
                "servo[3].name",
                "servo[3].channel",
                "servo[3].min_us",
                "servo[3].max_speed",
                "servo[3].max_us",
                "servo[4].name",
                "servo \"head\".min_us",
                "servo \"head\".home_us",
                "servo \"head\".name",
                "servo \"head\".channel",
            ],
            "{problems:#?}"
        );
        assert!(
            found[0].1.contains("did you mean 'max_speed'?"),
            "{}",
            found[0].1
        );
        assert!(found[7].1.contains("below max_us"), "{}", found[7].1);
        assert!(
            found[8].1.contains("outside the servo's range"),
            "{}",
            found[8].1
        );
        assert!(found[10].1.contains("channel 0 too"), "{}", found[10].1);
    }

    #[test]
    fn a_scalar_servo_is_not_a_table() {
        let table: toml::Table = "servo = \"head\"".parse().unwrap();
        let problems = parse_tables(&table["servo"]).unwrap_err();
        assert!(problems[0].problem.contains("[[servo]]"), "{problems:?}");
    }

    #[test]
    fn a_max_speed_below_the_boards_slowest_is_refused() {
        // 1000 µs of range: one unit (25 µs/s) is 0.025 of it a second.
        assert!((slowest_speed(1000, 2000) - 0.025).abs() < 1e-12);
        let table = |speed: &str| {
            format!(
                "[[servo]]\nname = \"tail\"\nchannel = 1\nmin_us = 1000\nmax_us = 2000\nmax_speed = {speed}\n"
            )
        };
        let problems = parse(&table("0.01")).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].key, "servo \"tail\".max_speed");
        assert!(
            problems[0].problem.contains("use at least 0.0250"),
            "{problems:?}"
        );
        assert!(parse(&table("0.025")).is_ok());
    }

    #[test]
    fn channels_beyond_the_board_are_named() {
        let specs =
            parse("[[servo]]\nname = \"tail\"\nchannel = 7\nmin_us = 1000\nmax_us = 2000\n")
                .unwrap();
        let problems = beyond(&specs, 6);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].problem.contains("6 channels (0–5)"),
            "{problems:?}"
        );
        assert!(beyond(&specs, 12).is_empty());
    }

    #[test]
    fn the_port_and_the_channel_count_parse() {
        assert_eq!("auto".parse(), Ok(ServoPort::Auto));
        assert_eq!("virtual".parse(), Ok(ServoPort::Virtual));
        assert_eq!(
            "/dev/ttyACM0".parse(),
            Ok(ServoPort::Path("/dev/ttyACM0".into()))
        );
        assert!("".parse::<ServoPort>().is_err());
        assert_eq!(parse_channels("auto"), Ok(None));
        assert_eq!(parse_channels("12"), Ok(Some(12)));
        assert!(parse_channels("8").is_err());
        assert_eq!(show_channels(&Some(6)).as_deref(), Some("\"6\""));
    }
}
