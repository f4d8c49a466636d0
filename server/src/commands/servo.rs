//! `move <servo> <0.0–1.0> [duration] [easing]`, `servo home [name|all]`,
//! `servo status`, `servo list`: the servos by hand. `move` and `servo
//! home` answer once the move has started (not when it ends), saying from
//! where to where, how long it takes and whether the servos are virtual.
//!
//! Errors: a bad position, duration or easing is refused before anything
//! runs (INVALID_ARGUMENT, with the usage); a servo no table declares is
//! NOT_FOUND with the closest name, as an unknown track is; a lost or
//! starting board is UNAVAILABLE saying what to check; a servo the board
//! cannot drive (a channel beyond its own) is FAILED_PRECONDITION.

use std::time::Duration;

use serde_json::json;

use super::{Category, Command, CommandError, CommandSpec, Context, Reply};
use crate::servos::{
    BoardReport, Easing, MAX_MOVE, MoveStarted, ServoError, ServosState,
    motion::{parse_duration, parse_position},
};

/// Declaration of `move`.
pub static MOVE: CommandSpec = CommandSpec {
    name: "move",
    aliases: &["servo move"],
    shortcuts: &[],
    usage: "move <servo> <0.0–1.0> [duration] [linear|ease-in-out|step]",
    description: "move a servo to a fraction of its range (0.0 min_us, 1.0 max_us) over a duration (1s, 500ms; none: at once), ease-in-out unless told",
    category: Category::Servos,
    min_args: 2,
    max_args: Some(4),
    parse: parse_move,
};

/// Declaration of `servo home`.
pub static HOME: CommandSpec = CommandSpec {
    name: "servo home",
    aliases: &["servos home", "home servos"],
    shortcuts: &[],
    usage: "servo home [name|all]",
    description: "send one servo, or all, to its home_us over servo_home_duration (ease-in-out)",
    category: Category::Servos,
    min_args: 0,
    max_args: Some(1),
    parse: |_, args| {
        let which = args
            .into_iter()
            .next()
            .filter(|a| !a.eq_ignore_ascii_case("all"));
        Ok(Command::Servo(Servo::Home(which)))
    },
};

/// Declaration of `servo status`.
pub static STATUS: CommandSpec = CommandSpec {
    name: "servo status",
    aliases: &["servos status", "servos"],
    shortcuts: &[],
    usage: "servo status",
    description: "the servo board's port, connection and errors, and each servo's target, position and movement (read back from the board)",
    category: Category::Servos,
    min_args: 0,
    max_args: Some(0),
    parse: |_, _| Ok(Command::Servo(Servo::Status)),
};

/// Declaration of `servo list`.
pub static LIST: CommandSpec = CommandSpec {
    name: "servo list",
    aliases: &["servos list", "list servos"],
    shortcuts: &[],
    usage: "servo list",
    description: "every configured servo: channel, range, home and top speed",
    category: Category::Servos,
    min_args: 0,
    max_args: Some(0),
    parse: |_, _| Ok(Command::Servo(Servo::List)),
};

/// A servos command.
#[derive(Debug)]
pub enum Servo {
    /// `move`.
    Move {
        /// The servo's name.
        servo: String,
        /// Where to, 0.0–1.0.
        position: f64,
        /// How long, as asked.
        duration: Duration,
        /// Along which curve.
        easing: Easing,
    },
    /// `servo home`: one servo, or all (`None`).
    Home(Option<String>),
    /// `servo status`.
    Status,
    /// `servo list`.
    List,
}

fn parse_move(spec: &'static CommandSpec, args: Vec<String>) -> Result<Command, CommandError> {
    let bad = |problem: String| CommandError::BadArgs { spec, problem };
    let mut args = args.into_iter();
    let servo = args.next().unwrap_or_default();
    let position = parse_position(&args.next().unwrap_or_default()).map_err(bad)?;
    let mut duration = None;
    let mut easing = None;
    // The duration and the easing, each at most once; the easing may come
    // alone (`move head 0.8 step`).
    for arg in args {
        if duration.is_none() && easing.is_none() && starts_like_a_number(&arg) {
            let d = parse_duration(&arg).map_err(bad)?;
            if d > MAX_MOVE {
                return Err(bad(format!(
                    "a move of {} is too long; the longest is {}",
                    humantime::format_duration(d),
                    humantime::format_duration(MAX_MOVE)
                )));
            }
            duration = Some(d);
        } else if easing.is_none() {
            easing = Some(arg.parse::<Easing>().map_err(bad)?);
        } else {
            return Err(bad(format!(
                "'{arg}' is one argument too many: the easing comes last"
            )));
        }
    }
    Ok(Command::Servo(Servo::Move {
        servo,
        position,
        duration: duration.unwrap_or(Duration::ZERO),
        easing: easing.unwrap_or_default(),
    }))
}

/// Whether `arg` is meant as a duration (`1s`, `.5`, `-1s`) rather than an
/// easing.
fn starts_like_a_number(arg: &str) -> bool {
    arg.trim_start()
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_digit() || c == '.' || c == '-' || c == '+')
}

impl From<ServoError> for CommandError {
    fn from(e: ServoError) -> Self {
        match e {
            ServoError::NotFound { .. } => CommandError::NotFound(e.to_string()),
            ServoError::UnknownMove(m) => CommandError::NotFound(m),
            // What reaches here was checked as written: what is left is a
            // servo the board cannot drive.
            ServoError::Invalid(m) => CommandError::FailedPrecondition(m),
            ServoError::Unavailable(m) => CommandError::Unavailable(m),
        }
    }
}

impl Servo {
    pub(super) async fn apply(self, ctx: &Context<'_>) -> Result<Reply, CommandError> {
        let servos = &ctx.droid.servos;
        Ok(match self {
            Servo::Move {
                servo,
                position,
                duration,
                easing,
            } => {
                let started = servos.move_to(&servo, position, duration, easing).await?;
                let from = servos
                    .spec(&servo)
                    .ok()
                    .zip(started.from_us)
                    .map(|(spec, from)| fraction(from, spec.min_us, spec.max_us));
                Reply::with_data(
                    format!(
                        "{}{}",
                        describe(&started, from),
                        virtual_mark(started.is_virtual)
                    ),
                    move_data(&started, from),
                )
            }
            Servo::Home(which) => {
                let started = servos.home(which.as_deref()).await?;
                let is_virtual = servos.state().is_virtual;
                if started.is_empty() {
                    return Ok(Reply::with_data(
                        if servos.names().is_empty() {
                            "no servos are configured; declare them in [[servo]] tables in the configuration file"
                        } else {
                            "no servo can move (every channel is beyond the board's)"
                        },
                        json!({ "moves": [] }),
                    ));
                }
                let longest = started.iter().map(|m| m.duration).max().unwrap_or_default();
                let each: Vec<String> = started
                    .iter()
                    .map(|m| format!("{} → {} µs", m.servo, us(m.to_us)))
                    .collect();
                Reply::with_data(
                    format!(
                        "{} home over {}: {}{}",
                        match started.len() {
                            1 => format!("{} going", started[0].servo),
                            n => format!("{n} servos going"),
                        },
                        humantime::format_duration(longest),
                        each.join(", "),
                        virtual_mark(is_virtual)
                    ),
                    json!({ "moves": started.iter().map(|m| move_data(m, None)).collect::<Vec<_>>() }),
                )
            }
            Servo::Status => {
                let state = servos.state();
                // Only a board that answers can be read; the reply says
                // why there is nothing read back otherwise.
                let report = if state.connected {
                    Some(servos.read_back().await.map_err(|e| e.to_string()))
                } else {
                    None
                };
                // Reading the board refreshes its errors in the state.
                status(&servos.state(), report)
            }
            Servo::List => list(&servos.state()),
        })
    }
}

fn virtual_mark(is_virtual: bool) -> &'static str {
    if is_virtual { " (virtual servos)" } else { "" }
}

/// `value` µs as a fraction of `min`–`max`.
fn fraction(value: f64, min: u16, max: u16) -> f64 {
    let span = f64::from(max) - f64::from(min);
    if span <= 0.0 {
        return 0.0;
    }
    ((value - f64::from(min)) / span).clamp(0.0, 1.0)
}

/// µs as people read them: whole, or to the board's quarter.
fn us(value: f64) -> String {
    if value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// A position to two decimals (the board's quarter-µs are finer).
fn pos(value: f64) -> String {
    format!("{value:.2}")
}

/// `head moving 0.50 → 0.80 (1500 → 1800 µs) over 1s, ease-in-out: move #3`.
fn describe(m: &MoveStarted, from: Option<f64>) -> String {
    let mut text = match (m.from_us, from) {
        (Some(from_us), Some(from)) if m.duration.is_zero() || m.easing == Easing::Step => format!(
            "{} sent from {} to {} ({} → {} µs) at once",
            m.servo,
            pos(from),
            pos(m.position),
            us(from_us),
            us(m.to_us)
        ),
        (Some(from_us), Some(from)) => format!(
            "{} moving {} → {} ({} → {} µs) over {}, {}",
            m.servo,
            pos(from),
            pos(m.position),
            us(from_us),
            us(m.to_us),
            humantime::format_duration(m.duration),
            m.easing.as_str()
        ),
        _ => format!(
            "{} sent straight to {} ({} µs): where it was is unknown (the board had it off)",
            m.servo,
            pos(m.position),
            us(m.to_us)
        ),
    };
    if m.limited_by_speed {
        text.push_str(&format!(
            " (lengthened from {} by its max_speed)",
            humantime::format_duration(m.requested)
        ));
    }
    if let Some(replaced) = m.replaced {
        text.push_str(&format!(", replacing move {replaced}"));
    }
    text.push_str(&format!(": move {}", m.id));
    text
}

fn move_data(m: &MoveStarted, from: Option<f64>) -> serde_json::Value {
    json!({
        "id": m.id,
        "servo": m.servo,
        "channel": m.channel,
        "from_us": m.from_us,
        "from_position": from,
        "to_us": m.to_us,
        "position": m.position,
        "easing": m.easing.as_str(),
        "duration_ms": m.duration.as_millis() as u64,
        "requested_ms": m.requested.as_millis() as u64,
        "limited_by_speed": m.limited_by_speed,
        "replaced": m.replaced,
        "frames": m.frames,
        "virtual": m.is_virtual,
    })
}

/// Rows in columns two spaces apart, the last column unpadded, each line
/// indented by two.
fn columns(rows: &[Vec<String>]) -> String {
    let count = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..count)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|cell| cell.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    rows.iter()
        .map(|row| {
            let mut line = String::from(" ");
            for (c, cell) in row.iter().enumerate() {
                line.push(' ');
                if c + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:<width$} ", width = widths[c]));
                }
            }
            line.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// `servo status` as text and data.
fn status(state: &ServosState, report: Option<Result<BoardReport, String>>) -> Reply {
    let connection = match (state.connected, state.is_virtual) {
        (true, true) => "virtual (no Maestro; moves are emulated and logged)".to_string(),
        (true, false) => "connected".to_string(),
        (false, _) => format!(
            "LOST (reconnecting): {}; check the Maestro's USB cable and power, and servo_port",
            state.last_error.as_deref().unwrap_or("not answering")
        ),
    };
    let channels = state
        .channels
        .map(|n| format!(" ({n} channels)"))
        .unwrap_or_default();
    let board = match &report {
        Some(Ok(report)) => Some(report),
        _ => None,
    };
    let board_errors = board
        .map(|r| r.errors.clone())
        .unwrap_or_else(|| state.board_errors.clone());
    let mut text = format!(
        "port:         {}{channels}\nconnection:   {connection}\nboard errors: {}\nlast error:   {}",
        state.port,
        if board_errors.is_empty() {
            "none".to_string()
        } else {
            board_errors.join(", ")
        },
        state.last_error.as_deref().unwrap_or("none"),
    );
    match &report {
        Some(Ok(report)) => text.push_str(&format!(
            "\nboard moving: {}",
            if report.moving { "yes" } else { "no" }
        )),
        Some(Err(e)) => text.push_str(&format!("\nread back:    failed: {e}")),
        None => {}
    }
    let read = |name: &str| -> Option<Option<f64>> {
        board.and_then(|r| r.positions.iter().find(|(n, _)| n == name).map(|(_, p)| *p))
    };
    if state.servos.is_empty() {
        text.push_str(
            "\nservos:       none configured; declare them in [[servo]] tables in the configuration file",
        );
    } else {
        let mut rows = vec![
            ["NAME", "CH", "TARGET", "POSITION", "BOARD", "MOVING"]
                .map(String::from)
                .to_vec(),
        ];
        for servo in &state.servos {
            let board_cell = match read(&servo.name) {
                Some(Some(p)) => format!("{} µs", us(p)),
                Some(None) => "off".to_string(),
                None => "-".to_string(),
            };
            let mut moving = match (servo.moving, servo.move_id) {
                (true, Some(id)) => format!("yes (move {id})"),
                (true, None) => "yes".to_string(),
                (false, _) => "no".to_string(),
            };
            if let Some(problem) = &servo.problem {
                moving.push_str(&format!("; {problem}"));
            }
            rows.push(vec![
                servo.name.clone(),
                servo.channel.to_string(),
                servo
                    .target_us
                    .map_or("unknown".to_string(), |t| format!("{} µs", us(t))),
                servo.position.map_or("-".to_string(), pos),
                board_cell,
                moving,
            ]);
        }
        text.push_str("\nservos:\n");
        text.push_str(&columns(&rows));
    }
    let mut data = serde_json::to_value(state).unwrap_or_default();
    if let Some(object) = data.as_object_mut() {
        object.insert(
            "board".into(),
            match &report {
                Some(Ok(report)) => json!({
                    "positions": report.positions.iter().map(|(name, us)| json!({"name": name, "position_us": us})).collect::<Vec<_>>(),
                    "moving": report.moving,
                    "errors": report.errors,
                }),
                Some(Err(e)) => json!({ "error": e }),
                None => serde_json::Value::Null,
            },
        );
    }
    Reply::with_data(text, data)
}

/// `servo list` as text and data.
fn list(state: &ServosState) -> Reply {
    if state.servos.is_empty() {
        return Reply::with_data(
            "no servos are configured; declare them in [[servo]] tables in the configuration file",
            json!({ "servos": [] }),
        );
    }
    let mut rows = vec![
        ["NAME", "CHANNEL", "RANGE", "HOME", "MAX SPEED"]
            .map(String::from)
            .to_vec(),
    ];
    for servo in &state.servos {
        rows.push(vec![
            servo.name.clone(),
            servo.channel.to_string(),
            format!("{}–{} µs", servo.min_us, servo.max_us),
            format!("{} µs", servo.home_us),
            servo
                .max_speed
                .map_or("none".to_string(), |s| format!("{s} range/s")),
        ]);
    }
    let count = match state.servos.len() {
        1 => "1 servo".to_string(),
        n => format!("{n} servos"),
    };
    Reply::with_data(
        format!(
            "{count} on {}{}:\n{}",
            state.port,
            virtual_mark(state.is_virtual),
            columns(&rows)
        ),
        json!({
            "servos": state.servos.iter().map(|s| json!({
                "name": s.name,
                "channel": s.channel,
                "min_us": s.min_us,
                "max_us": s.max_us,
                "home_us": s.home_us,
                "max_speed": s.max_speed,
            })).collect::<Vec<_>>(),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(line: &str) -> Result<Servo, String> {
        let args: Vec<String> = line.split_whitespace().map(String::from).collect();
        match parse_move(&MOVE, args) {
            Ok(Command::Servo(servo)) => Ok(servo),
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e.to_string()),
        }
    }

    #[test]
    fn move_takes_a_duration_and_an_easing_in_that_order_or_the_easing_alone() {
        let Ok(Servo::Move {
            servo,
            position,
            duration,
            easing,
        }) = parse("head 0.8 1s")
        else {
            panic!()
        };
        assert_eq!(
            (servo.as_str(), position, duration, easing),
            ("head", 0.8, Duration::from_secs(1), Easing::EaseInOut)
        );
        let Ok(Servo::Move {
            duration, easing, ..
        }) = parse("head 0.8 500ms linear")
        else {
            panic!()
        };
        assert_eq!(
            (duration, easing),
            (Duration::from_millis(500), Easing::Linear)
        );
        let Ok(Servo::Move {
            duration, easing, ..
        }) = parse("head 1 step")
        else {
            panic!()
        };
        assert_eq!((duration, easing), (Duration::ZERO, Easing::Step));
    }

    #[test]
    fn bad_positions_durations_and_easings_are_refused_with_the_usage() {
        for (line, problem) in [
            ("head 1.2", "outside the servo's range"),
            ("head -0.1", "outside the servo's range"),
            ("head up", "'up' is not a position"),
            ("head 0.5 -1s", "negative time"),
            ("head 0.5 2h", "too long"),
            ("head 0.5 1s wobbly", "wobbly"),
            ("head 0.5 1s step linear", "one argument too many"),
        ] {
            let error = parse(line).unwrap_err();
            assert!(error.contains(problem), "{line}: {error}");
            assert!(error.contains("usage: move <servo>"), "{line}: {error}");
        }
    }

    #[test]
    fn microseconds_read_whole_or_to_the_quarter() {
        assert_eq!(us(1500.0), "1500");
        assert_eq!(us(1500.25), "1500.25");
        assert_eq!(us(1500.5), "1500.5");
    }
}
