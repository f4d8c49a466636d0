//! A plan document (the proto3 JSON of `cantina.v1.Plan`, from a file or
//! converted from a gRPC request) into a [`Plan`], or every problem at once,
//! each with its JSON path (`steps[2].parallelSteps.steps[0].delay.duration`)
//! and what to write instead. Pure: no I/O, nothing runs.

use std::{collections::HashSet, fmt, time::Duration};

use serde_json::{Map, Value};

use super::model::{Action, Anchor, At, Join, Layer, OnTimeout, Plan, Repeat, Step};
use crate::{bus::TopicSelector, eyes::Pattern, servos::Easing};

/// How big a plan may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Steps in all, nested ones included.
    pub max_steps: usize,
    /// `parallelSteps` inside `parallelSteps` …
    pub max_depth: usize,
    /// The longest duration anywhere (delays, timeouts, offsets).
    pub max_duration: Duration,
    /// The longest text of a step.
    pub max_text: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_steps: 20_000,
            max_depth: 8,
            max_duration: Duration::from_secs(24 * 3600),
            max_text: 5_000,
        }
    }
}

/// One thing wrong with a plan document.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where: a JSON path from the plan (`steps[0].delay.duration`); empty
    /// for the document itself.
    pub path: String,
    /// What is wrong and what to write instead.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

const PLAN_FIELDS: &[&str] = &["planId", "name", "layer", "steps", "repeat", "loop"];
const STEP_FIELDS: &[&str] = &["id", "at", "atFrom", "continueOnError"];
const ACTIONS: &[&str] = &[
    "speak",
    "playCachedSpeech",
    "musicCrossfade",
    "musicDuck",
    "musicUnduck",
    "parallelSteps",
    "playMusic",
    "playSound",
    "eyePattern",
    "delay",
    "waitForEvent",
    "move",
    "command",
];

/// Decodes a plan document, or says everything wrong with it.
///
/// # Errors
///
/// Every problem found, in document order.
pub fn decode(document: &Value, limits: &Limits) -> Result<Plan, Vec<Problem>> {
    let mut given = HashSet::new();
    given_ids(document, &mut given, 0);
    let mut d = Decoder {
        problems: Vec::new(),
        limits,
        ids: HashSet::new(),
        given,
        count: 0,
        next_id: 0,
    };
    let plan = d.plan(document);
    if d.problems.is_empty() {
        let plan = plan.expect("no problems");
        match too_quick_a_loop(&plan) {
            Some(problem) => Err(vec![problem]),
            None => Ok(plan),
        }
    } else {
        Err(d.problems)
    }
}

/// The shortest a loop may take when every step's length is known: a loop
/// of instant steps would run hundreds of times a second.
pub const MIN_LOOP: Duration = Duration::from_millis(50);

/// A repeating plan whose loop is known to take less than [`MIN_LOOP`].
fn too_quick_a_loop(plan: &Plan) -> Option<Problem> {
    if plan.repeat == Repeat::Once {
        return None;
    }
    let mut length = Duration::ZERO;
    for step in super::resolve::resolve(plan)
        .iter()
        .filter(|r| r.path.len() == 1)
    {
        length = length.max(step.start? + step.duration?);
    }
    (length < MIN_LOOP).then(|| Problem {
        path: if plan.repeat == Repeat::Forever {
            "loop".into()
        } else {
            "repeat".into()
        },
        message: format!(
            "one round of the steps takes {} ms: a repeating plan must take at least {} ms a round \
             (add a delay), or it would run hundreds of times a second",
            length.as_millis(),
            MIN_LOOP.as_millis()
        ),
    })
}

/// The ids the author gave, anywhere in the plan.
fn given_ids(value: &Value, out: &mut HashSet<String>, depth: usize) {
    if depth > 64 {
        return;
    }
    let steps = value.get("steps").and_then(Value::as_array);
    for step in steps.into_iter().flatten() {
        if let Some(id) = step.get("id").and_then(Value::as_str) {
            out.insert(id.to_string());
        }
        for group in ["parallelSteps", "parallel_steps"] {
            if let Some(g) = step.get(group) {
                given_ids(g, out, depth + 1);
            }
        }
    }
}

struct Decoder<'a> {
    problems: Vec<Problem>,
    limits: &'a Limits,
    ids: HashSet<String>,
    given: HashSet<String>,
    count: usize,
    next_id: usize,
}

/// Accepts both proto3 JSON names (`planId`) and the proto's own (`plan_id`).
fn camel(name: &str) -> String {
    let mut out = String::new();
    let mut upper = false;
    for c in name.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// An object's fields under their proto3 JSON names, borrowed.
type Fields<'v> = std::collections::BTreeMap<String, &'v Value>;

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

impl Decoder<'_> {
    fn problem(&mut self, path: &str, message: impl Into<String>) {
        self.problems.push(Problem {
            path: path.to_string(),
            message: message.into(),
        });
    }

    /// The object at `path` with its fields under their proto3 JSON names;
    /// unknown fields are problems (naming the closest known one).
    fn object<'v>(&mut self, value: &'v Value, path: &str, known: &[&str]) -> Option<Fields<'v>> {
        let Value::Object(map) = value else {
            self.problem(path, format!("expected an object, not {}", describe(value)));
            return None;
        };
        let mut out = Fields::new();
        for (key, v) in map {
            let name = camel(key);
            if known.contains(&name.as_str()) {
                out.insert(name, v);
            } else {
                let closest = known
                    .iter()
                    .map(|k| (strsim::jaro_winkler(k, &name), *k))
                    .filter(|(score, _)| *score > 0.8)
                    .max_by(|a, b| a.0.total_cmp(&b.0))
                    .map(|(_, k)| format!(" (did you mean '{k}'?)"))
                    .unwrap_or_default();
                self.problem(
                    &join(path, key),
                    format!(
                        "unknown field{closest}; the fields here are {}",
                        known.join(", ")
                    ),
                );
            }
        }
        Some(out)
    }

    fn string(&mut self, map: &Fields<'_>, path: &str, field: &str) -> Option<String> {
        match map.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                if s.chars().count() > self.limits.max_text {
                    self.problem(
                        &join(path, field),
                        format!("longer than {} characters", self.limits.max_text),
                    );
                }
                Some(s.clone())
            }
            Some(other) => {
                self.problem(
                    &join(path, field),
                    format!("expected a string, not {}", describe(other)),
                );
                None
            }
        }
    }

    fn required_string(
        &mut self,
        map: &Fields<'_>,
        path: &str,
        field: &str,
        example: &str,
    ) -> String {
        match self.string(map, path, field) {
            Some(s) if !s.trim().is_empty() => s,
            Some(_) => {
                self.problem(
                    &join(path, field),
                    format!("must not be empty, e.g. {example}"),
                );
                String::new()
            }
            None => {
                if map.get(field).is_none_or(|v| v.is_null()) {
                    self.problem(&join(path, field), format!("missing, e.g. {example}"));
                }
                String::new()
            }
        }
    }

    /// A track: text, or a whole number (its 1-based place in the
    /// library, as YAML writes `track: 2`).
    fn track(&mut self, map: &Fields<'_>, path: &str, field: &str, example: &str) -> String {
        match map.get(field) {
            Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n > 0) => n.to_string(),
            _ => self.required_string(map, path, field, example),
        }
    }

    fn number(&mut self, map: &Fields<'_>, path: &str, field: &str) -> Option<f64> {
        match map.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => n.as_f64(),
            // proto3 JSON allows numbers as strings.
            Some(Value::String(s)) if s.parse::<f64>().is_ok() => s.parse().ok(),
            Some(other) => {
                self.problem(
                    &join(path, field),
                    format!("expected a number, not {}", describe(other)),
                );
                None
            }
        }
    }

    fn fraction(&mut self, map: &Fields<'_>, path: &str, field: &str) -> Option<f64> {
        let x = self.number(map, path, field)?;
        if (0.0..=1.0).contains(&x) {
            Some(x)
        } else {
            self.problem(&join(path, field), format!("{x} is outside 0.0–1.0"));
            None
        }
    }

    fn boolean(&mut self, map: &Fields<'_>, path: &str, field: &str) -> bool {
        match map.get(field) {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                self.problem(
                    &join(path, field),
                    format!("expected true or false, not {}", describe(other)),
                );
                false
            }
        }
    }

    /// A proto3 JSON duration (`"1.5s"`), within the limits.
    fn duration(&mut self, map: &Fields<'_>, path: &str, field: &str) -> Option<Duration> {
        let value = map.get(field)?;
        let path = join(path, field);
        let parsed = match value {
            Value::Null => return None,
            Value::String(s) => parse_duration(s),
            other => Err(format!(
                "expected a duration such as \"1.5s\", not {}",
                describe(other)
            )),
        };
        match parsed {
            Ok(d) if d > self.limits.max_duration => {
                self.problem(
                    &path,
                    format!(
                        "{} is longer than the longest allowed ({})",
                        humantime::format_duration(d),
                        humantime::format_duration(self.limits.max_duration)
                    ),
                );
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.problem(&path, e);
                None
            }
        }
    }

    fn millis(&mut self, map: &Fields<'_>, path: &str, field: &str, default: u64) -> Duration {
        match self.number(map, path, field) {
            None => Duration::from_millis(default),
            Some(ms) if ms < 0.0 || ms.fract() != 0.0 => {
                self.problem(
                    &join(path, field),
                    "a whole number of milliseconds, 0 or more",
                );
                Duration::ZERO
            }
            Some(0.0) => Duration::from_millis(default),
            Some(ms) => {
                let d = Duration::from_millis(ms as u64);
                if d > self.limits.max_duration {
                    self.problem(&join(path, field), "longer than the longest allowed");
                }
                d
            }
        }
    }

    fn plan(&mut self, value: &Value) -> Option<Plan> {
        let map = self.object(value, "", PLAN_FIELDS)?;
        let id = self.string(&map, "", "planId").filter(|s| !s.is_empty());
        let name = self.string(&map, "", "name").unwrap_or_default();
        let layer = match map.get("layer") {
            None | Some(Value::Null) => Layer::Foreground,
            Some(v) => match layer(v) {
                Some(l) => l,
                None => {
                    self.problem(
                        "layer",
                        format!(
                            "unknown layer {v}: use LAYER_AMBIENT, LAYER_FOREGROUND or LAYER_OVERRIDE"
                        ),
                    );
                    Layer::Foreground
                }
            },
        };
        let repeat = match map.get("repeat") {
            None | Some(Value::Null) => Repeat::Once,
            // proto3 JSON may write a uint32 as a string.
            Some(Value::String(t)) if t.parse::<u32>().is_ok() => {
                match t.parse::<u32>().unwrap_or(1) {
                    0 | 1 => Repeat::Once,
                    n => Repeat::Times(n),
                }
            }
            Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= 1) => Repeat::Once,
            Some(Value::Number(n)) if n.as_u64().is_some_and(|n| n <= u64::from(u32::MAX)) => {
                Repeat::Times(n.as_u64().unwrap_or(1) as u32)
            }
            Some(other) => {
                self.problem(
                    "repeat",
                    format!(
                        "expected how many times the steps run (a whole number; `\"loop\": true` runs them until cancelled), not {}",
                        describe(other)
                    ),
                );
                Repeat::Once
            }
        };
        let repeat = if self.boolean(&map, "", "loop") {
            if repeat != Repeat::Once {
                self.problem(
                    "loop",
                    "`loop` runs the steps until cancelled and `repeat` a number of times: give one of them",
                );
            }
            Repeat::Forever
        } else {
            repeat
        };
        let steps = match map.get("steps") {
            Some(v) => self.steps(v, "steps", 1),
            None => {
                self.problem("steps", "a plan needs at least one step");
                Vec::new()
            }
        };
        Some(Plan {
            id,
            name,
            layer,
            steps,
            repeat,
        })
    }

    fn steps(&mut self, value: &Value, path: &str, depth: usize) -> Vec<Step> {
        let Value::Array(items) = value else {
            self.problem(
                path,
                format!("expected a list of steps, not {}", describe(value)),
            );
            return Vec::new();
        };
        if items.is_empty() {
            self.problem(path, "at least one step is needed");
        }
        if depth > self.limits.max_depth {
            self.problem(
                path,
                format!(
                    "parallel steps nest deeper than {} levels",
                    self.limits.max_depth
                ),
            );
            return Vec::new();
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            self.count += 1;
            if self.count == self.limits.max_steps + 1 {
                self.problem(
                    &format!("{path}[{i}]"),
                    format!("a plan has at most {} steps", self.limits.max_steps),
                );
            }
            if self.count > self.limits.max_steps {
                return out;
            }
            if let Some(step) = self.step(item, &format!("{path}[{i}]"), depth) {
                out.push(step);
            }
        }
        out
    }

    fn step(&mut self, value: &Value, path: &str, depth: usize) -> Option<Step> {
        let mut known: Vec<&str> = STEP_FIELDS.to_vec();
        known.extend(ACTIONS);
        let map = self.object(value, path, &known)?;
        self.next_id += 1;
        let id = match self.string(&map, path, "id").filter(|s| !s.is_empty()) {
            Some(id) => id,
            // Numbered in order, skipping the ids the author gave.
            None => loop {
                let id = format!("step-{}", self.next_id);
                if !self.given.contains(&id) && !self.ids.contains(&id) {
                    break id;
                }
                self.next_id += 1;
            },
        };
        if !self.ids.insert(id.clone()) {
            self.problem(
                &join(path, "id"),
                format!("'{id}' is the id of another step: ids are unique in a plan"),
            );
        }
        let anchor = match map.get("atFrom") {
            None | Some(Value::Null) => Anchor::Plan,
            Some(Value::String(s)) if matches!(s.as_str(), "AT_FROM_PLAN" | "plan") => Anchor::Plan,
            Some(Value::String(s)) if matches!(s.as_str(), "AT_FROM_TRACK" | "track") => {
                Anchor::Track
            }
            Some(other) => {
                self.problem(
                    &join(path, "atFrom"),
                    format!("use AT_FROM_PLAN or AT_FROM_TRACK, not {other}"),
                );
                Anchor::Plan
            }
        };
        let at = self
            .duration(&map, path, "at")
            .map(|offset| At { offset, anchor });
        if at.is_none() && map.contains_key("atFrom") {
            self.problem(&join(path, "atFrom"), "atFrom needs an `at` offset");
        }
        let continue_on_error = self.boolean(&map, path, "continueOnError");
        let actions: Vec<&str> = ACTIONS
            .iter()
            .copied()
            .filter(|a| map.contains_key(*a))
            .collect();
        let action = match actions.as_slice() {
            [one] => {
                let body = &map[*one];
                self.action(one, body, &join(path, one), depth)
            }
            [] => {
                self.problem(
                    path,
                    format!("a step needs an action: one of {}", ACTIONS.join(", ")),
                );
                None
            }
            many => {
                self.problem(
                    path,
                    format!(
                        "a step has exactly one action, not {} ({})",
                        many.len(),
                        many.join(", ")
                    ),
                );
                None
            }
        }?;
        Some(Step {
            id,
            at,
            continue_on_error,
            action,
        })
    }

    fn action(&mut self, kind: &str, body: &Value, path: &str, depth: usize) -> Option<Action> {
        Some(match kind {
            "speak" => {
                let m = self.object(
                    body,
                    path,
                    &["text", "audioFile", "duckLevel", "duckFadeMs"],
                )?;
                if m.contains_key("audioFile") {
                    self.problem(
                        &join(path, "audioFile"),
                        "speech made elsewhere is uploaded with SpeechService.SpeakAudio and a cache key, then played with playCachedSpeech",
                    );
                }
                let text = self.required_string(&m, path, "text", "\"Welcome to Oga's Cantina\"");
                let duck_level = self
                    .fraction(&m, path, "duckLevel")
                    .filter(|l| *l > 0.0)
                    .map(|l| l as f32);
                let fade = self.number(&m, path, "duckFadeMs").filter(|f| *f != 0.0);
                let duck_fade = fade.map(|_| self.millis(&m, path, "duckFadeMs", 500));
                Action::Speak {
                    text,
                    duck_level,
                    duck_fade,
                }
            }
            "playCachedSpeech" => {
                let m = self.object(body, path, &["cacheKey", "text"])?;
                Action::PlayCachedSpeech {
                    key: self.required_string(&m, path, "cacheKey", "\"greeting\""),
                    text: self.string(&m, path, "text").unwrap_or_default(),
                }
            }
            "musicCrossfade" => {
                let m = self.object(body, path, &["track", "seconds"])?;
                let track = self.track(&m, path, "track", "\"Cantina Band\" or 2");
                let seconds = self.number(&m, path, "seconds");
                let seconds = match seconds {
                    Some(s) if !(0.0..=600.0).contains(&s) => {
                        self.problem(
                            &join(path, "seconds"),
                            format!("{s} s: a crossfade lasts 0–600 s"),
                        );
                        None
                    }
                    Some(s) if s > 0.0 => Some(s),
                    _ => None,
                };
                Action::MusicCrossfade { track, seconds }
            }
            "musicDuck" => {
                let m = self.object(body, path, &["level", "fadeMs"])?;
                let level = self
                    .fraction(&m, path, "level")
                    .filter(|l| *l > 0.0)
                    .unwrap_or(0.3) as f32;
                Action::MusicDuck {
                    level,
                    fade: self.millis(&m, path, "fadeMs", 1500),
                }
            }
            "musicUnduck" => {
                let m = self.object(body, path, &["fadeMs"])?;
                Action::MusicUnduck {
                    fade: self.millis(&m, path, "fadeMs", 1500),
                }
            }
            "parallelSteps" => {
                let m = self.object(body, path, &["steps", "join"])?;
                let join_mode = match m.get("join") {
                    None | Some(Value::Null) => Join::All,
                    Some(Value::String(s)) if matches!(s.as_str(), "JOIN_ALL" | "all") => Join::All,
                    Some(Value::String(s)) if matches!(s.as_str(), "JOIN_ANY" | "any") => Join::Any,
                    Some(other) => {
                        self.problem(
                            &join(path, "join"),
                            format!("use JOIN_ALL or JOIN_ANY, not {other}"),
                        );
                        Join::All
                    }
                };
                let steps = match m.get("steps") {
                    Some(v) => self.steps(v, &join(path, "steps"), depth + 1),
                    None => {
                        self.problem(&join(path, "steps"), "missing: the steps to run together");
                        Vec::new()
                    }
                };
                Action::Parallel {
                    steps,
                    join: join_mode,
                }
            }
            "playMusic" => {
                let m = self.object(body, path, &["query", "stop"])?;
                if self.boolean(&m, path, "stop") {
                    Action::StopMusic
                } else {
                    Action::PlayMusic {
                        query: self.track(
                            &m,
                            path,
                            "query",
                            "\"Cantina Band\" or 1 (or \"stop\": true)",
                        ),
                    }
                }
            }
            "playSound" => {
                let m = self.object(body, path, &["file"])?;
                Action::PlaySound {
                    file: self.required_string(&m, path, "file", "\"blaster.wav\""),
                }
            }
            "eyePattern" => {
                let m = self.object(body, path, &["pattern", "brightness"])?;
                let name = self.required_string(&m, path, "pattern", "\"happy\"");
                let brightness = self.fraction(&m, path, "brightness");
                let pattern = match Pattern::parse(&name) {
                    Ok(p) => p,
                    Err(e) => {
                        if !name.is_empty() {
                            self.problem(&join(path, "pattern"), e.to_string());
                        }
                        Pattern::Idle
                    }
                };
                Action::EyePattern {
                    pattern,
                    brightness,
                }
            }
            "delay" => {
                let m = self.object(body, path, &["duration"])?;
                let duration = self.duration(&m, path, "duration");
                if !m.contains_key("duration") {
                    self.problem(&join(path, "duration"), "missing, e.g. \"1.5s\"");
                }
                Action::Delay {
                    duration: duration.unwrap_or_default(),
                }
            }
            "waitForEvent" => {
                let m = self.object(body, path, &["topic", "match", "timeout", "onTimeout"])?;
                let topic = self.required_string(
                    &m,
                    path,
                    "topic",
                    "\"ext.button.pressed\" or \"music.*\"",
                );
                let selector = if topic.is_empty() {
                    TopicSelector::default()
                } else {
                    match TopicSelector::parse(&[topic.as_str()]) {
                        Ok(s) => s,
                        Err(e) => {
                            self.problem(&join(path, "topic"), e.to_string());
                            TopicSelector::default()
                        }
                    }
                };
                let matches = match m.get("match") {
                    None | Some(Value::Null) => Map::new(),
                    Some(Value::Object(o)) => o.clone(),
                    Some(other) => {
                        self.problem(
                            &join(path, "match"),
                            format!(
                                "expected an object of payload fields, not {}",
                                describe(other)
                            ),
                        );
                        Map::new()
                    }
                };
                let timeout = self.duration(&m, path, "timeout");
                let on_timeout = match m.get("onTimeout") {
                    None | Some(Value::Null) => OnTimeout::Fail,
                    Some(Value::String(s)) if matches!(s.as_str(), "ON_TIMEOUT_FAIL" | "fail") => {
                        OnTimeout::Fail
                    }
                    Some(Value::String(s))
                        if matches!(s.as_str(), "ON_TIMEOUT_CONTINUE" | "continue") =>
                    {
                        OnTimeout::Continue
                    }
                    Some(other) => {
                        self.problem(
                            &join(path, "onTimeout"),
                            format!("use ON_TIMEOUT_FAIL or ON_TIMEOUT_CONTINUE, not {other}"),
                        );
                        OnTimeout::Fail
                    }
                };
                Action::WaitForEvent {
                    topic,
                    selector,
                    matches,
                    timeout,
                    on_timeout,
                }
            }
            "move" => {
                let m = self.object(body, path, &["target", "position", "duration", "easing"])?;
                let target = self.required_string(&m, path, "target", "\"head\"");
                if m.get("position").is_none_or(|v| v.is_null()) {
                    self.problem(
                        &join(path, "position"),
                        "missing: where to, 0.0 (the servo's min_us) to 1.0 (its max_us), e.g. 0.5",
                    );
                }
                let position = self.fraction(&m, path, "position").unwrap_or(0.5);
                let duration = self.duration(&m, path, "duration").unwrap_or_default();
                let easing = match self.string(&m, path, "easing") {
                    None => Easing::default(),
                    Some(s) if s.is_empty() => Easing::default(),
                    Some(s) => s.parse().unwrap_or_else(|e: String| {
                        self.problem(&join(path, "easing"), e);
                        Easing::default()
                    }),
                };
                Action::Move {
                    target,
                    position,
                    duration,
                    easing,
                }
            }
            "command" => {
                let m = self.object(body, path, &["line"])?;
                Action::Command {
                    line: self.required_string(&m, path, "line", "\"eye pattern happy\""),
                }
            }
            _ => unreachable!("the actions are listed"),
        })
    }
}

fn layer(value: &Value) -> Option<Layer> {
    match value {
        Value::String(s) => match s.to_ascii_uppercase().trim_start_matches("LAYER_") {
            "AMBIENT" => Some(Layer::Ambient),
            "FOREGROUND" | "UNSPECIFIED" => Some(Layer::Foreground),
            "OVERRIDE" => Some(Layer::Override),
            _ => None,
        },
        Value::Number(n) => match n.as_u64()? {
            0 | 2 => Some(Layer::Foreground),
            1 => Some(Layer::Ambient),
            3 => Some(Layer::Override),
            _ => None,
        },
        _ => None,
    }
}

/// A proto3 JSON duration: seconds with an `s`, up to 9 decimals (`"1.5s"`).
fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || {
        format!(
            "'{text}' is not a duration: write seconds with an `s`, such as \"1.5s\" or \"90s\""
        )
    };
    let number = text.trim().strip_suffix('s').ok_or_else(bad)?;
    if number.starts_with('-') {
        return Err(format!("'{text}' is negative: durations are 0 or more"));
    }
    let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
    if whole.is_empty() && frac.is_empty()
        || !whole.chars().all(|c| c.is_ascii_digit())
        || !frac.chars().all(|c| c.is_ascii_digit())
        || frac.len() > 9
    {
        return Err(bad());
    }
    let secs: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| bad())?
    };
    let nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").parse().map_err(|_| bad())?
    };
    Ok(Duration::new(secs, nanos))
}

fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => format!("\"{}\"", s.chars().take(40).collect::<String>()),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_loop_of_instant_steps_is_refused() {
        let quick =
            problems(json!({"loop": true, "steps": [{"eyePattern": {"pattern": "happy"}}]}));
        assert_eq!(quick.len(), 1, "{quick:?}");
        assert!(quick[0].starts_with("loop: one round"), "{quick:?}");
        let repeated = problems(json!({"repeat": 3, "steps": [{"delay": {"duration": "0.01s"}}]}));
        assert!(repeated[0].starts_with("repeat:"), "{repeated:?}");
        // A round of unknown length (speech, an event) or long enough is fine.
        for ok in [
            json!({"loop": true, "steps": [{"speak": {"text": "hi"}}]}),
            json!({"loop": true, "steps": [{"eyePattern": {"pattern": "happy"}}, {"delay": {"duration": "0.05s"}}]}),
        ] {
            decode(&ok, &Limits::default()).unwrap();
        }
    }

    #[test]
    fn a_track_may_be_its_place_in_the_library() {
        let plan = decode(
            &json!({"steps": [
                {"musicCrossfade": {"track": 2}},
                {"playMusic": {"query": 1}}
            ]}),
            &Limits::default(),
        )
        .unwrap();
        assert!(
            matches!(&plan.steps[0].action, Action::MusicCrossfade { track, .. } if track == "2")
        );
        assert!(matches!(&plan.steps[1].action, Action::PlayMusic { query } if query == "1"));
        let wrong = problems(json!({"steps": [{"playMusic": {"query": 0}}]}));
        assert_eq!(wrong.len(), 1, "{wrong:?}");
    }

    fn problems(doc: Value) -> Vec<String> {
        decode(&doc, &Limits::default())
            .expect_err("problems")
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_plan_with_every_step_type_decodes_with_its_defaults() {
        let plan = decode(
            &json!({
                "name": "greeting",
                "layer": "LAYER_AMBIENT",
                "repeat": 2,
                "steps": [
                    {"speak": {"text": "Hello"}},
                    {"id": "duck", "musicDuck": {}},
                    {"musicUnduck": {"fadeMs": 200}},
                    {"at": "1.250s", "atFrom": "AT_FROM_TRACK", "eyePattern": {"pattern": "happy", "brightness": 0.5}},
                    {"parallelSteps": {"join": "JOIN_ANY", "steps": [
                        {"delay": {"duration": "2s"}},
                        {"waitForEvent": {"topic": "ext.button.*", "match": {"button": 3}, "timeout": "10s", "onTimeout": "ON_TIMEOUT_CONTINUE"}}
                    ]}},
                    {"play_music": {"query": "cantina"}},
                    {"playMusic": {"stop": true}},
                    {"musicCrossfade": {"track": "2", "seconds": 4}},
                    {"playCachedSpeech": {"cacheKey": "hello"}},
                    {"playSound": {"file": "blaster.wav"}},
                    {"command": {"line": "eye pattern sad"}, "continueOnError": true}
                ]
            }),
            &Limits::default(),
        )
        .expect("a valid plan");
        assert_eq!(plan.layer, Layer::Ambient);
        assert_eq!(plan.repeat, Repeat::Times(2));
        assert_eq!(plan.all_steps().len(), 13);
        assert_eq!(plan.steps[0].id, "step-1");
        assert_eq!(plan.steps[1].id, "duck");
        assert_eq!(
            plan.steps[1].action,
            Action::MusicDuck {
                level: 0.3,
                fade: Duration::from_millis(1500)
            }
        );
        assert_eq!(
            plan.steps[3].at,
            Some(At {
                offset: Duration::from_millis(1250),
                anchor: Anchor::Track
            })
        );
        assert!(
            matches!(plan.steps[4].action, Action::Parallel { join: Join::Any, ref steps } if steps.len() == 2)
        );
        assert_eq!(plan.steps[6].action, Action::StopMusic);
        assert!(plan.steps[10].continue_on_error);
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_path() {
        let found = problems(json!({
            "name": "broken",
            "layr": "LAYER_AMBIENT",
            "steps": [
                {"delay": {"duration": "-1s"}},
                {"id": "x", "eyePattern": {"pattern": "grumpy"}},
                {"id": "x", "delay": {"duration": "2 seconds"}},
                {"parallelSteps": {"steps": [{"delay": {"duration": "1s"}}, {"delay": {}}]}},
                {"waitForEvent": {"topic": "sytem.mode.*"}},
                {"speak": {"text": "hi"}, "delay": {"duration": "1s"}},
                {},
                {"musicDuck": {"level": 1.5}},
                {"move": {"target": "head", "position": 0.5, "easing": "wobbly"}}
            ]
        }));
        let expect = [
            "layr: unknown field (did you mean 'layer'?)",
            "steps[0].delay.duration: '-1s' is negative",
            "steps[1].eyePattern.pattern: ",
            "steps[2].id: 'x' is the id of another step",
            "steps[2].delay.duration: '2 seconds' is not a duration",
            "steps[3].parallelSteps.steps[1].delay.duration: missing",
            "steps[4].waitForEvent.topic: no topic matches 'sytem.mode.*'",
            "steps[5]: a step has exactly one action, not 2",
            "steps[6]: a step needs an action",
            "steps[7].musicDuck.level: 1.5 is outside 0.0–1.0",
            "steps[8].move.easing: ",
        ];
        assert_eq!(found.len(), expect.len(), "{found:#?}");
        for (got, want) in found.iter().zip(expect) {
            assert!(
                got.starts_with(want),
                "{got:?} should start with {want:?}\nall: {found:#?}"
            );
        }
    }

    #[test]
    fn generated_ids_skip_the_ids_the_author_gave() {
        let plan = decode(
            &json!({"repeat": "3", "steps": [
                {"delay": {"duration": "1s"}},
                {"id": "step-2", "delay": {"duration": "1s"}},
                {"delay": {"duration": "1s"}}
            ]}),
            &Limits::default(),
        )
        .unwrap();
        let ids: Vec<&str> = plan.steps.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["step-1", "step-2", "step-3"]);
        assert_eq!(plan.repeat, Repeat::Times(3));
        let both =
            problems(json!({"loop": true, "repeat": 2, "steps": [{"delay": {"duration": "1s"}}]}));
        assert!(both[0].starts_with("loop: "), "{both:?}");
    }

    #[test]
    fn a_plan_needs_steps_and_an_object() {
        assert_eq!(
            problems(json!({"name": "x"})),
            ["steps: a plan needs at least one step"]
        );
        assert_eq!(
            problems(json!({"steps": []})),
            ["steps: at least one step is needed"]
        );
        assert_eq!(problems(json!([1, 2])), ["expected an object, not a list"]);
    }

    #[test]
    fn size_and_nesting_are_bounded() {
        let limits = Limits {
            max_steps: 3,
            max_depth: 2,
            ..Limits::default()
        };
        let many = json!({"steps": (0..5).map(|_| json!({"delay": {"duration": "1s"}})).collect::<Vec<_>>()});
        let e = decode(&many, &limits).unwrap_err();
        assert_eq!(e.len(), 1);
        assert!(
            e[0].to_string()
                .starts_with("steps[3]: a plan has at most 3 steps"),
            "{e:?}"
        );
        let mut deep = json!({"delay": {"duration": "1s"}});
        for _ in 0..3 {
            deep = json!({"parallelSteps": {"steps": [deep]}});
        }
        let e = decode(&json!({"steps": [deep]}), &limits).unwrap_err();
        assert!(e[0].message.contains("nest deeper than 2"), "{e:?}");
        let absurd = json!({"steps": [{"delay": {"duration": "999999999s"}}]});
        assert!(
            decode(&absurd, &Limits::default()).unwrap_err()[0]
                .message
                .contains("longer than the longest")
        );
    }

    #[test]
    fn proto3_durations_parse_exactly() {
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0.000000001s"), Ok(Duration::from_nanos(1)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("1.5").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1.0000000001s").is_err());
    }
}
