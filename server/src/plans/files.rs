//! Plan documents and the plans folder.
//!
//! A plan document is the proto3 JSON of `cantina.v1.Plan`, written as JSON
//! or as YAML, so that the same file works with `grpcurl -d @` and with the
//! server's plans folder. [`parse_document`] reads either (JSON when the
//! text is JSON, YAML otherwise) into a [`Document`]: the JSON value that
//! [`decode`] takes, and the line of every node, so that each of decode's
//! problems (`steps[2].delay.duration: …`) can say on which line it is
//! ([`Located`]). YAML is read as YAML 1.2: `yes`, `no`, `on` and `off` are
//! text, not booleans, and a problem on one of them says so.
//!
//! [`PlanFolder`] is the folder of named plans (`plans_dir`): `greeting`
//! is `greeting.yaml` (or `.yml`, or `.json`). A new, empty folder gets the
//! example plans ([`EXAMPLES`]) once.

use std::{
    collections::{HashMap, HashSet},
    fmt, fs,
    io::{self, Read},
    path::{Path, PathBuf},
    sync::LazyLock,
};

use regex::Regex;
use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use serde_json::{Map, Number, Value};

use super::{
    decode::{Limits, Problem, decode},
    model::{Layer, Plan},
};

/// The largest plan document read, in bytes (1 MiB): a plan file above it
/// is refused, and so is a document sent as text.
pub const MAX_DOCUMENT_BYTES: usize = 1 << 20;

/// How deep lists and objects may nest in a document.
const MAX_NESTING: usize = 128;

/// How many nodes a YAML document may have once its aliases (`*name`) are
/// expanded: a few aliases of aliases must not make a huge document.
const MAX_NODES: usize = 1_000_000;

/// Which syntax a document was written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// JSON.
    Json,
    /// YAML (1.2).
    Yaml,
}

/// A plan document, read: its JSON value and the line of each node.
#[derive(Clone, Debug)]
pub struct Document {
    value: Value,
    format: Format,
    /// The line (1-based) of each node, by its JSON path with proto3 JSON
    /// field names (`steps[0].parallelSteps`): for a field, the line of its
    /// key; for a list item, the line where it begins.
    lines: HashMap<String, u32>,
    /// The paths of YAML plain scalars that YAML 1.1 would read as
    /// booleans (`yes`, `off` …), which YAML 1.2 reads as text.
    yaml11_booleans: HashSet<String>,
}

/// A problem of a plan document, with its line when the document has one
/// for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// The problem: its JSON path and what is wrong.
    pub problem: Problem,
    /// Its line in the document (1-based), if known.
    pub line: Option<u32>,
}

impl fmt::Display for Located {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.problem),
            None => write!(f, "{}", self.problem),
        }
    }
}

fn whole(message: impl Into<String>, line: Option<u32>) -> Located {
    Located {
        problem: Problem {
            path: String::new(),
            message: message.into(),
        },
        line,
    }
}

impl Document {
    /// The document as JSON, what [`decode`] takes.
    pub fn value(&self) -> &Value {
        &self.value
    }

    /// The document as JSON, owned.
    pub fn into_value(self) -> Value {
        self.value
    }

    /// The syntax it was written in.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The line (1-based) of the deepest node of the document on `path`, a
    /// JSON path as decode writes them (`steps[2].delay.duration`, `name`,
    /// `""` for the whole document): a field's own line, or for a field
    /// that is missing, the line of the object that should hold it.
    /// Field names may be given in either spelling (`parallel_steps`).
    pub fn line_of(&self, path: &str) -> Option<u32> {
        let mut path = camel_path(path);
        loop {
            if let Some(line) = self.lines.get(&path) {
                return Some(*line);
            }
            if path.is_empty() {
                return None;
            }
            parent(&mut path);
        }
    }

    /// `problem` with its line, and for a YAML `yes`/`no`/`on`/`off`
    /// where something else was expected, why it was read as text.
    pub fn locate(&self, mut problem: Problem) -> Located {
        if self.yaml11_booleans.contains(&camel_path(&problem.path)) {
            problem.message.push_str(
                " (YAML 1.2 reads yes, no, on and off as text: write true or false for a boolean, or quote the text)",
            );
        }
        let line = self.line_of(&problem.path);
        Located { problem, line }
    }

    /// Decodes the document into a plan, or says everything wrong with it,
    /// each problem with its line.
    ///
    /// # Errors
    ///
    /// Every problem [`decode`] finds, located.
    pub fn decode(&self, limits: &Limits) -> Result<Plan, Vec<Located>> {
        decode(&self.value, limits)
            .map_err(|problems| problems.into_iter().map(|p| self.locate(p)).collect())
    }
}

/// Reads a plan document: JSON when it is JSON (it begins with `{` or `[`
/// and parses as JSON), YAML otherwise.
///
/// # Errors
///
/// Text that is not a document: malformed (with its line and column),
/// empty, larger than [`MAX_DOCUMENT_BYTES`], several YAML documents,
/// duplicate keys (each of them), nesting deeper than 128 levels.
pub fn parse_document(text: &str) -> Result<Document, Vec<Located>> {
    if text.len() > MAX_DOCUMENT_BYTES {
        return Err(vec![whole(
            format!(
                "the document is {} bytes: a plan document is at most {MAX_DOCUMENT_BYTES} bytes (1 MiB)",
                text.len()
            ),
            None,
        )]);
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let start = text.trim_start();
    let document = if start.starts_with('{') || start.starts_with('[') {
        match serde_json::from_str::<Value>(text) {
            Ok(value) => json_document(text, value),
            // Flow YAML (`{name: hello, steps: […]}`) is not JSON.
            Err(json) => yaml_document(text).map_err(|_| vec![json_problem(&json)]),
        }
    } else {
        yaml_document(text)
    };
    document.map(unwrap_request)
}

/// The plan of a document that is a request holding it (`{"plan": {…}}`,
/// the body of `RunPlan` and `StartPlan`), so that one file works with
/// `grpcurl -d @` as it is and with the CLI; its lines stay the file's.
fn unwrap_request(mut document: Document) -> Document {
    let Value::Object(map) = &document.value else {
        return document;
    };
    let Some(plan) = map.get("plan").filter(|p| p.is_object() && map.len() == 1) else {
        return document;
    };
    document.value = plan.clone();
    let inner = |path: &str| {
        if path == "plan" {
            Some(String::new())
        } else {
            path.strip_prefix("plan.").map(str::to_string)
        }
    };
    document.lines = document
        .lines
        .iter()
        .filter_map(|(path, line)| inner(path).map(|p| (p, *line)))
        .collect();
    document.yaml11_booleans = document
        .yaml11_booleans
        .iter()
        .filter_map(|path| inner(path))
        .collect();
    document
}

/// Reads and decodes a plan document (see [`parse_document`] and
/// [`decode`]).
///
/// # Errors
///
/// The document's problems, or the plan's, each with its line when known.
pub fn decode_document(text: &str, limits: &Limits) -> Result<Plan, Vec<Located>> {
    parse_document(text)?.decode(limits)
}

fn json_problem(e: &serde_json::Error) -> Located {
    let text = e.to_string();
    let what = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(what, _)| what);
    let line = u32::try_from(e.line()).ok().filter(|l| *l > 0);
    whole(
        format!(
            "not valid JSON at line {}, column {}: {what}",
            e.line(),
            e.column()
        ),
        line,
    )
}

/// Accepts both proto3 JSON names (`planId`) and the proto's own (`plan_id`),
/// as decode does.
fn camel(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
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

/// A JSON path with every field name in its proto3 JSON spelling.
fn camel_path(path: &str) -> String {
    if !path.contains('_') {
        return path.to_string();
    }
    path.split('.').map(camel).collect::<Vec<_>>().join(".")
}

/// `a.b[2]` → `a.b` → `a` → ``.
fn parent(path: &mut String) {
    if path.ends_with(']')
        && let Some(open) = path.rfind('[')
    {
        path.truncate(open);
    } else if let Some(dot) = path.rfind('.') {
        path.truncate(dot);
    } else {
        path.clear();
    }
}

fn field_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        camel(key)
    } else {
        format!("{path}.{}", camel(key))
    }
}

// --- JSON -------------------------------------------------------------------

fn json_document(text: &str, value: Value) -> Result<Document, Vec<Located>> {
    let mut locator = JsonLocator {
        text,
        pos: 0,
        line: 1,
        lines: HashMap::new(),
        problems: Vec::new(),
    };
    locator.ws();
    locator.lines.insert(String::new(), locator.line);
    locator.value("");
    if !locator.problems.is_empty() {
        return Err(locator.problems);
    }
    Ok(Document {
        value,
        format: Format::Json,
        lines: locator.lines,
        yaml11_booleans: HashSet::new(),
    })
}

/// Walks JSON text that serde_json has read already, noting each node's
/// line (JSON has no line breaks inside strings, so lines are counted
/// between tokens) and each duplicate key, which serde_json lets pass.
struct JsonLocator<'t> {
    text: &'t str,
    pos: usize,
    line: u32,
    lines: HashMap<String, u32>,
    problems: Vec<Located>,
}

impl JsonLocator<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.as_bytes().get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b) = self.peek() {
            match b {
                b'\n' => self.line += 1,
                b' ' | b'\t' | b'\r' => {}
                _ => break,
            }
            self.pos += 1;
        }
    }

    /// The value at `pos` (white space skipped), whose path is `path`.
    fn value(&mut self, path: &str) {
        self.ws();
        match self.peek() {
            Some(b'{') => {
                self.pos += 1;
                let mut keys = HashSet::new();
                loop {
                    self.ws();
                    match self.peek() {
                        None => return,
                        Some(b'}') => {
                            self.pos += 1;
                            return;
                        }
                        Some(b'"') => {
                            let line = self.line;
                            let key = self.string();
                            let child = field_path(path, &key);
                            if keys.insert(key.clone()) {
                                self.lines.entry(child.clone()).or_insert(line);
                            } else {
                                self.problems.push(Located {
                                    problem: Problem {
                                        path: child.clone(),
                                        message: format!(
                                            "'{key}' is given twice in the same object: keep one"
                                        ),
                                    },
                                    line: Some(line),
                                });
                            }
                            self.ws();
                            if self.peek() == Some(b':') {
                                self.pos += 1;
                            }
                            self.value(&child);
                        }
                        // `,`, or anything serde_json would not have let by.
                        Some(_) => self.pos += 1,
                    }
                }
            }
            Some(b'[') => {
                self.pos += 1;
                let mut index = 0;
                loop {
                    self.ws();
                    match self.peek() {
                        None => return,
                        Some(b']') => {
                            self.pos += 1;
                            return;
                        }
                        Some(b',') => self.pos += 1,
                        Some(_) => {
                            let child = format!("{path}[{index}]");
                            self.lines.entry(child.clone()).or_insert(self.line);
                            let before = self.pos;
                            self.value(&child);
                            if self.pos == before {
                                self.pos += 1;
                            }
                            index += 1;
                        }
                    }
                }
            }
            Some(b'"') => {
                self.string();
            }
            Some(_) => {
                while self.peek().is_some_and(|b| {
                    !matches!(b, b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n')
                }) {
                    self.pos += 1;
                }
            }
            None => {}
        }
    }

    /// The string at `pos` (its opening quote), unescaped.
    fn string(&mut self) -> String {
        let start = self.pos;
        self.pos += 1;
        while let Some(b) = self.peek() {
            self.pos += 1;
            match b {
                b'\\' => self.pos += 1,
                b'"' => break,
                _ => {}
            }
        }
        let raw = self
            .text
            .get(start..self.pos.min(self.text.len()))
            .unwrap_or("");
        if raw.contains('\\') {
            serde_json::from_str(raw).unwrap_or_default()
        } else {
            raw.strip_prefix('"')
                .and_then(|r| r.strip_suffix('"'))
                .unwrap_or("")
                .to_string()
        }
    }
}

// --- YAML -------------------------------------------------------------------

fn yaml_document(text: &str) -> Result<Document, Vec<Located>> {
    let mut builder = YamlBuilder::default();
    for event in Parser::new_from_str(text) {
        match event {
            Ok((event, span)) => builder.event(event, span)?,
            Err(e) => {
                let at = e.marker();
                return Err(vec![whole(
                    format!(
                        "not valid YAML at line {}, column {}: {}",
                        at.line(),
                        at.col() + 1,
                        e.info()
                    ),
                    u32::try_from(at.line()).ok(),
                )]);
            }
        }
    }
    if !builder.problems.is_empty() {
        return Err(builder.problems);
    }
    match builder.root {
        None | Some(Value::Null) => Err(vec![whole(
            "the document is empty: a plan has at least `steps`, a list of steps",
            None,
        )]),
        Some(value) => Ok(Document {
            value,
            format: Format::Yaml,
            lines: builder.lines,
            yaml11_booleans: builder.yaml11_booleans,
        }),
    }
}

/// An object or a list being read.
enum Frame {
    Map {
        map: Map<String, Value>,
        path: String,
        /// The key read, whose value comes next.
        key: Option<String>,
        anchor: usize,
        nodes_before: usize,
    },
    Seq {
        items: Vec<Value>,
        path: String,
        anchor: usize,
        nodes_before: usize,
    },
}

/// Where the next node goes.
enum Slot {
    /// It is a key of the object being read.
    Key,
    /// It is a value, at this path.
    Value(String),
}

/// Builds the JSON value of a YAML document from the parser's events.
#[derive(Default)]
struct YamlBuilder {
    stack: Vec<Frame>,
    root: Option<Value>,
    /// Anchored values, and how many nodes each has.
    anchors: HashMap<usize, (Value, usize)>,
    nodes: usize,
    documents: usize,
    lines: HashMap<String, u32>,
    yaml11_booleans: HashSet<String>,
    problems: Vec<Located>,
}

fn line(span: &Span) -> u32 {
    u32::try_from(span.start.line()).unwrap_or(u32::MAX)
}

impl YamlBuilder {
    fn slot(&mut self, line: u32) -> Slot {
        let path = match self.stack.last() {
            None => String::new(),
            Some(Frame::Map { key: None, .. }) => return Slot::Key,
            Some(Frame::Map {
                key: Some(key),
                path,
                ..
            }) => return Slot::Value(field_path(path, key)),
            Some(Frame::Seq { items, path, .. }) => format!("{path}[{}]", items.len()),
        };
        self.lines.entry(path.clone()).or_insert(line);
        Slot::Value(path)
    }

    fn put(&mut self, value: Value) {
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Map { map, key, .. }) => {
                if let Some(key) = key.take() {
                    map.insert(key, value);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(value),
        }
    }

    fn count(&mut self, nodes: usize, line: u32) -> Result<(), Vec<Located>> {
        self.nodes += nodes;
        if self.nodes > MAX_NODES {
            return Err(vec![whole(
                format!(
                    "the document has more than {MAX_NODES} values once its aliases are expanded"
                ),
                Some(line),
            )]);
        }
        Ok(())
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), Vec<Located>> {
        let line = line(&span);
        let fatal = |message: String| Err(vec![whole(message, Some(line))]);
        match event {
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return fatal(
                        "a second YAML document begins here: a plan file holds one plan".into(),
                    );
                }
            }
            Event::Scalar(text, style, anchor, tag) => match self.slot(line) {
                Slot::Key => {
                    if tag.is_some() {
                        return fatal("a key is plain text, without a tag".into());
                    }
                    let Some(Frame::Map { map, path, key, .. }) = self.stack.last_mut() else {
                        unreachable!("a key is in an object");
                    };
                    let child = field_path(path, &text);
                    if map.contains_key(text.as_ref()) {
                        self.problems.push(Located {
                            problem: Problem {
                                path: child,
                                message: format!(
                                    "'{text}' is given twice in the same object: keep one"
                                ),
                            },
                            line: Some(line),
                        });
                    } else {
                        self.lines.entry(child).or_insert(line);
                    }
                    *key = Some(text.into_owned());
                }
                Slot::Value(path) => {
                    self.count(1, line)?;
                    let value = match scalar(&text, style, tag.as_deref()) {
                        Ok(value) => value,
                        Err(message) => {
                            self.problems.push(Located {
                                problem: Problem {
                                    path: path.clone(),
                                    message,
                                },
                                line: Some(line),
                            });
                            Value::Null
                        }
                    };
                    if style == ScalarStyle::Plain && tag.is_none() && yaml11_boolean(&text) {
                        self.yaml11_booleans.insert(path);
                    }
                    if anchor > 0 {
                        self.anchors.insert(anchor, (value.clone(), 1));
                    }
                    self.put(value);
                }
            },
            Event::MappingStart(anchor, _) | Event::SequenceStart(anchor, _) => {
                let Slot::Value(path) = self.slot(line) else {
                    return fatal("a key is plain text, not an object or a list".into());
                };
                if self.stack.len() >= MAX_NESTING {
                    return fatal(format!(
                        "lists and objects nest deeper than {MAX_NESTING} levels"
                    ));
                }
                self.count(1, line)?;
                let nodes_before = self.nodes;
                self.stack
                    .push(if matches!(event, Event::MappingStart(..)) {
                        Frame::Map {
                            map: Map::new(),
                            path,
                            key: None,
                            anchor,
                            nodes_before,
                        }
                    } else {
                        Frame::Seq {
                            items: Vec::new(),
                            path,
                            anchor,
                            nodes_before,
                        }
                    });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                let (value, anchor, nodes_before) = match self.stack.pop() {
                    Some(Frame::Map {
                        map,
                        anchor,
                        nodes_before,
                        ..
                    }) => (Value::Object(map), anchor, nodes_before),
                    Some(Frame::Seq {
                        items,
                        anchor,
                        nodes_before,
                        ..
                    }) => (Value::Array(items), anchor, nodes_before),
                    None => return Ok(()),
                };
                if anchor > 0 {
                    let nodes = self.nodes - nodes_before + 1;
                    self.anchors.insert(anchor, (value.clone(), nodes));
                }
                self.put(value);
            }
            Event::Alias(anchor) => {
                let Slot::Value(_) = self.slot(line) else {
                    return fatal("a key is plain text, not an alias".into());
                };
                let Some(nodes) = self.anchors.get(&anchor).map(|(_, nodes)| *nodes) else {
                    return fatal("this alias names no anchor before it".into());
                };
                self.count(nodes, line)?;
                let value = self.anchors[&anchor].0.clone();
                self.put(value);
            }
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => {}
        }
        Ok(())
    }
}

/// YAML 1.1's booleans that YAML 1.2 reads as text.
fn yaml11_boolean(text: &str) -> bool {
    matches!(
        text,
        "y" | "Y"
            | "yes"
            | "Yes"
            | "YES"
            | "n"
            | "N"
            | "no"
            | "No"
            | "NO"
            | "on"
            | "On"
            | "ON"
            | "off"
            | "Off"
            | "OFF"
    )
}

static INT: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[-+]?[0-9]+$").expect("a regex"));
static FLOAT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$").expect("a regex")
});

/// A scalar as JSON, by YAML 1.2's core schema: quoted scalars and block
/// text are strings; plain ones are null, booleans, numbers or strings.
fn scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(tag) = tag {
        let core = tag.is_yaml_core_schema();
        return match (core, tag.suffix.as_str()) {
            (true, "str") | (false, "") => Ok(Value::String(text.to_string())),
            (true, "null") => Ok(Value::Null),
            (true, "bool") => match text {
                "true" | "True" | "TRUE" => Ok(Value::Bool(true)),
                "false" | "False" | "FALSE" => Ok(Value::Bool(false)),
                _ => Err(format!("'{text}' is not a boolean: write true or false")),
            },
            (true, "int" | "float") => match plain(text) {
                Ok(Value::Number(n)) => Ok(Value::Number(n)),
                _ => Err(format!("'{text}' is not a number")),
            },
            _ => Err(format!(
                "the tag {tag} is not understood here: write the value without it"
            )),
        };
    }
    if style == ScalarStyle::Plain {
        plain(text)
    } else {
        Ok(Value::String(text.to_string()))
    }
}

fn plain(text: &str) -> Result<Value, String> {
    Ok(match text {
        "" | "~" | "null" | "Null" | "NULL" => Value::Null,
        "true" | "True" | "TRUE" => Value::Bool(true),
        "false" | "False" | "FALSE" => Value::Bool(false),
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" | "-.inf" | "-.Inf" | "-.INF"
        | ".nan" | ".NaN" | ".NAN" => {
            return Err(format!(
                "{text} is not a number JSON can hold: write a finite number"
            ));
        }
        _ if INT.is_match(text) => {
            let digits = text.strip_prefix('+').unwrap_or(text);
            if let Ok(n) = digits.parse::<u64>() {
                Value::Number(n.into())
            } else if let Ok(n) = digits.parse::<i64>() {
                Value::Number(n.into())
            } else {
                float(text)?
            }
        }
        _ if text.starts_with("0o") && text.len() > 2 => match u64::from_str_radix(&text[2..], 8) {
            Ok(n) => Value::Number(n.into()),
            Err(_) => Value::String(text.to_string()),
        },
        _ if text.starts_with("0x") && text.len() > 2 => {
            match u64::from_str_radix(&text[2..], 16) {
                Ok(n) => Value::Number(n.into()),
                Err(_) => Value::String(text.to_string()),
            }
        }
        _ if FLOAT.is_match(text) => float(text)?,
        _ => Value::String(text.to_string()),
    })
}

fn float(text: &str) -> Result<Value, String> {
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
        .ok_or_else(|| format!("{text} is not a number JSON can hold: write a finite number"))
}

// --- the plans folder ------------------------------------------------------

/// The example plans written into a new plans folder: file name, text.
/// Each runs on the demo library and on virtual hardware.
pub const EXAMPLES: [(&str, &str); 3] = [
    ("greeting.json", GREETING),
    ("dj-intro.json", DJ_INTRO),
    ("ambient-idle.yaml", AMBIENT_IDLE),
];

const GREETING: &str = r#"{
  "plan": {
    "name": "greeting",
    "layer": "LAYER_FOREGROUND",
    "steps": [
      {"id": "smile", "eyePattern": {"pattern": "happy", "brightness": 1.0}},
      {"id": "welcome", "speak": {"text": "Welcome to Oga's Cantina! Find a seat, the band is about to play.", "duckLevel": 0.3}},
      {"id": "linger", "delay": {"duration": "1.5s"}},
      {"id": "rest", "eyePattern": {"pattern": "idle"}}
    ]
  }
}
"#;

const DJ_INTRO: &str = r#"{
  "name": "dj-intro",
  "layer": "LAYER_FOREGROUND",
  "steps": [
    {"id": "attention", "eyePattern": {"pattern": "engaged"}},
    {"id": "duck", "musicDuck": {"level": 0.2, "fadeMs": 800}},
    {"id": "intro", "speak": {"text": "Patrons of the cantina, your attention please! Straight from the Outer Rim, here is our next tune."}},
    {"id": "drop", "musicCrossfade": {"track": "2", "seconds": 2}},
    {"id": "unduck", "musicUnduck": {"fadeMs": 1500}},
    {"id": "flash", "at": "1.5s", "atFrom": "AT_FROM_TRACK", "eyePattern": {"pattern": "surprised", "brightness": 1}},
    {"id": "groove", "at": "3s", "atFrom": "AT_FROM_TRACK", "eyePattern": {"pattern": "happy"}},
    {"id": "settle", "at": "12s", "atFrom": "AT_FROM_TRACK", "eyePattern": {"pattern": "idle"}}
  ]
}
"#;

const AMBIENT_IDLE: &str = r#"# What the droid does when nothing else happens: quiet eyes, over and
# over. It runs on the ambient layer: a foreground plan pauses it, and it
# resumes where it was when that plan ends.
name: ambient-idle
layer: LAYER_AMBIENT
loop: true
steps:
  - id: rest
    eyePattern:
      pattern: idle
      brightness: 0.4
  - delay:
      duration: 20s
  - id: ponder
    eyePattern:
      pattern: thinking
      brightness: 0.3
  - delay:
      duration: 4s
  - id: look-around
    eyePattern:
      pattern: listening
      brightness: 0.4
  - delay:
      duration: 6s
"#;

/// The file that says the examples were written, so that an example
/// deleted stays deleted.
const EXAMPLES_MARKER: &str = ".examples-written";

const EXTENSIONS: [&str; 3] = ["json", "yaml", "yml"];

/// A plan file of the folder, as listed.
#[derive(Clone, Debug, PartialEq)]
pub struct SavedPlanInfo {
    /// Its name: the file's name without the extension.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// The plan's layer; `None` when the plan does not decode.
    pub layer: Option<Layer>,
    /// How many steps it has, nested ones included (0 when it does not
    /// decode).
    pub steps: usize,
    /// Its first problem (with its line), if any.
    pub problem: Option<String>,
}

/// Why a named plan cannot be had.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The name is not a plan's name (a path, a hidden file …).
    #[error("'{name}' is not a plan name: {why}")]
    BadName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        why: &'static str,
    },
    /// No plan has that name.
    #[error("{}", not_found(.name, .dir, .available, .suggestion.as_deref()))]
    NotFound {
        /// The name given.
        name: String,
        /// The plans folder.
        dir: PathBuf,
        /// The names of the plans there.
        available: Vec<String>,
        /// The closest name, if one is close.
        suggestion: Option<String>,
    },
    /// Several files have that name (`greeting.json` and `greeting.yaml`).
    #[error("'{name}' is the name of several files ({}): rename one, or give the name with its extension", .files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "))]
    Ambiguous {
        /// The name given.
        name: String,
        /// The files.
        files: Vec<PathBuf>,
    },
    /// The file is larger than [`MAX_DOCUMENT_BYTES`].
    #[error("{} is {size} bytes: a plan file is at most {limit} bytes (1 MiB)", .path.display())]
    TooBig {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The largest size read.
        limit: u64,
    },
    /// The file cannot be read.
    #[error("cannot read {}: {error}", .path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// Why.
        error: io::Error,
    },
    /// The file is not a valid plan.
    #[error("{}", invalid(.path, .problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem, with its line.
        problems: Vec<Located>,
    },
}

fn not_found(name: &str, dir: &Path, available: &[String], suggestion: Option<&str>) -> String {
    let mut out = format!("no plan named '{name}' in {}", dir.display());
    if let Some(s) = suggestion {
        out.push_str(&format!(": did you mean '{s}'?"));
    }
    if available.is_empty() {
        out.push_str(" (the folder has no plans)");
    } else {
        out.push_str(&format!(" (the plans: {})", available.join(", ")));
    }
    out
}

fn invalid(path: &Path, problems: &[Located]) -> String {
    let n = problems.len();
    let mut out = format!(
        "{} is not a valid plan ({n} problem{}):",
        path.display(),
        if n == 1 { "" } else { "s" }
    );
    for p in problems {
        out.push_str(&format!("\n  {p}"));
    }
    out
}

/// The name among `names` closest to `name` (a typo, or its beginning), if
/// one is close enough to suggest.
fn closest<'n>(name: &str, names: &'n [String]) -> Option<&'n str> {
    let wanted = name.to_lowercase();
    names
        .iter()
        .filter_map(|candidate| {
            let lower = candidate.to_lowercase();
            let distance = if lower.starts_with(&wanted) {
                0
            } else {
                strsim::damerau_levenshtein(&wanted, &lower)
            };
            let tolerance = (lower.chars().count() / 3).max(2);
            (distance <= tolerance).then_some((distance, candidate.as_str()))
        })
        .min()
        .map(|(_, c)| c)
}

/// The folder of named plans.
#[derive(Clone, Debug)]
pub struct PlanFolder {
    dir: PathBuf,
    limits: Limits,
}

impl PlanFolder {
    /// The folder at `dir`, made if missing. A folder seen for the first
    /// time with no plan in it gets the [`EXAMPLES`], once: a marker file
    /// (`.examples-written`) keeps a deleted example from coming back.
    ///
    /// # Errors
    ///
    /// The folder cannot be made or read, or the examples cannot be written.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<PlanFolder> {
        let folder = PlanFolder {
            dir: dir.into(),
            limits: Limits::default(),
        };
        fs::create_dir_all(&folder.dir)?;
        let marker = folder.dir.join(EXAMPLES_MARKER);
        if !marker.exists() {
            if folder.files()?.is_empty() {
                for (file, text) in EXAMPLES {
                    write_atomically(&folder.dir.join(file), text)?;
                }
            }
            write_atomically(
                &marker,
                "Cantina wrote its example plans (greeting, dj-intro, ambient-idle) into this \
                 folder when it was new.\nWhile this file is here they are not written again: \
                 an example deleted stays deleted.\n",
            )?;
        }
        Ok(folder)
    }

    /// The same folder, decoding plans within `limits` (the default limits
    /// otherwise).
    #[must_use]
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The plan files: name and path, sorted by name.
    fn files(&self) -> io::Result<Vec<(String, PathBuf)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let (Some(stem), Some(ext)) = (
                path.file_stem().and_then(|s| s.to_str()),
                path.extension().and_then(|e| e.to_str()),
            ) else {
                continue;
            };
            if stem.is_empty()
                || stem.starts_with('.')
                || !EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str())
                || !path.is_file()
            {
                continue;
            }
            out.push((stem.to_string(), path));
        }
        out.sort();
        Ok(out)
    }

    /// Every plan file of the folder (`.json`, `.yaml`, `.yml`), sorted by
    /// name, each with its layer and step count, or its first problem. An
    /// unreadable folder lists nothing (and says so in the log).
    pub fn list(&self) -> Vec<SavedPlanInfo> {
        let files = match self.files() {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!(folder = %self.dir.display(), "cannot list the plans folder: {e}");
                return Vec::new();
            }
        };
        files
            .iter()
            .map(|(name, path)| {
                let twin = files.iter().find(|(n, p)| n == name && p != path);
                let decoded = read_limited(path).and_then(|text| {
                    decode_document(&text, &self.limits).map_err(|problems| LoadError::Invalid {
                        path: path.clone(),
                        problems,
                    })
                });
                let (layer, steps, problem) = match decoded {
                    Ok(plan) => (Some(plan.layer), plan.all_steps().len(), None),
                    Err(LoadError::Invalid { problems, .. }) => {
                        (None, 0, problems.first().map(ToString::to_string))
                    }
                    Err(e) => (None, 0, Some(e.to_string())),
                };
                let problem = match twin {
                    Some((_, other)) => Some(format!(
                        "{} has the same name: rename one of them",
                        other.display()
                    )),
                    None => problem,
                };
                SavedPlanInfo {
                    name: name.clone(),
                    path: path.clone(),
                    layer,
                    steps,
                    problem,
                }
            })
            .collect()
    }

    /// The file of the plan named `name` (`greeting`, or `greeting.yaml`)
    /// and its text.
    ///
    /// # Errors
    ///
    /// A name that is a path, no such plan (with the names there and the
    /// closest one), several files of that name, a file too big or
    /// unreadable.
    pub fn read(&self, name: &str) -> Result<(PathBuf, String), LoadError> {
        let bad = |why| {
            Err(LoadError::BadName {
                name: name.to_string(),
                why,
            })
        };
        if name.trim().is_empty() {
            return bad("give the name of a plan of the plans folder, such as 'greeting'");
        }
        if name.contains(['/', '\\']) || name.contains("..") {
            return bad("a plan is named by its file's name in the plans folder, not by a path");
        }
        if name.starts_with('.') || name.chars().any(char::is_control) {
            return bad("plan names do not begin with a dot nor hold control characters");
        }
        let files = self.files().map_err(|error| LoadError::Io {
            path: self.dir.clone(),
            error,
        })?;
        let (stem, ext) = match name.rsplit_once('.') {
            Some((stem, ext)) if EXTENSIONS.contains(&ext.to_ascii_lowercase().as_str()) => {
                (stem, Some(ext))
            }
            _ => (name, None),
        };
        let found: Vec<&PathBuf> = files
            .iter()
            .filter(|(n, p)| {
                n == stem && ext.is_none_or(|e| p.extension().and_then(|x| x.to_str()) == Some(e))
            })
            .map(|(_, p)| p)
            .collect();
        match found.as_slice() {
            [] => {
                let mut available: Vec<String> = files.into_iter().map(|(n, _)| n).collect();
                available.dedup();
                let suggestion = closest(stem, &available).map(str::to_string);
                Err(LoadError::NotFound {
                    name: name.to_string(),
                    dir: self.dir.clone(),
                    available,
                    suggestion,
                })
            }
            [path] => Ok(((*path).clone(), read_limited(path)?)),
            many => Err(LoadError::Ambiguous {
                name: name.to_string(),
                files: many.iter().map(|p| (*p).clone()).collect(),
            }),
        }
    }

    /// The plan named `name`, decoded, and its text.
    ///
    /// # Errors
    ///
    /// As [`PlanFolder::read`], and a plan with problems
    /// ([`LoadError::Invalid`], every problem with its line).
    pub fn load(&self, name: &str) -> Result<(Plan, String), LoadError> {
        let (path, text) = self.read(name)?;
        match decode_document(&text, &self.limits) {
            Ok(plan) => Ok((plan, text)),
            Err(problems) => Err(LoadError::Invalid { path, problems }),
        }
    }
}

/// The text of a plan file, refused above [`MAX_DOCUMENT_BYTES`].
fn read_limited(path: &Path) -> Result<String, LoadError> {
    let io = |error| LoadError::Io {
        path: path.to_path_buf(),
        error,
    };
    let limit = MAX_DOCUMENT_BYTES as u64;
    let file = fs::File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let too_big = |size| LoadError::TooBig {
        path: path.to_path_buf(),
        size,
        limit,
    };
    if size > limit {
        return Err(too_big(size));
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).map_err(io)?;
    if bytes.len() as u64 > limit {
        return Err(too_big(bytes.len() as u64));
    }
    String::from_utf8(bytes).map_err(|e| {
        io(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("not UTF-8 text (byte {})", e.utf8_error().valid_up_to()),
        ))
    })
}

/// Writes `text` to `path` whole or not at all: a temporary file beside it,
/// renamed over it.
fn write_atomically(path: &Path, text: &str) -> io::Result<()> {
    crate::atomic_file::write(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::plans::model::{Action, Repeat};

    fn lines_of(text: &str, paths: &[&str]) -> Vec<Option<u32>> {
        let doc = parse_document(text).unwrap_or_else(|e| panic!("{e:?}"));
        paths.iter().map(|p| doc.line_of(p)).collect()
    }

    fn problems(text: &str) -> Vec<String> {
        match parse_document(text) {
            Ok(doc) => panic!("no problem: {:?}", doc.value()),
            Err(problems) => problems.iter().map(ToString::to_string).collect(),
        }
    }

    const YAML: &str = "\
# a comment
name: hello
layer: LAYER_AMBIENT
repeat: 3
steps:
  - speak:
      text: Hello there
      duckLevel: 0.25
  - id: wait
    at: 1.5s
    parallel_steps:
      join: JOIN_ANY
      steps:
        - delay:
            duration: 2s
        - waitForEvent:
            topic: ext.button.*
            match: {button: 3, pressed: true}
  - playMusic:
      stop: true
";

    const JSON: &str = r#"{
  "name": "hello",
  "layer": "LAYER_AMBIENT",
  "repeat": 3,
  "steps": [
    {"speak": {"text": "Hello there", "duckLevel": 0.25}},
    {
      "id": "wait",
      "at": "1.5s",
      "parallel_steps": {
        "join": "JOIN_ANY",
        "steps": [
          {"delay": {"duration": "2s"}},
          {"waitForEvent": {
            "topic": "ext.button.*",
            "match": {"button": 3, "pressed": true}
          }}
        ]
      }
    },
    {"playMusic": {"stop": true}}
  ]
}
"#;

    #[test]
    fn json_and_yaml_give_the_same_value() {
        let yaml = parse_document(YAML).unwrap();
        let json = parse_document(JSON).unwrap();
        assert_eq!(yaml.format(), Format::Yaml);
        assert_eq!(json.format(), Format::Json);
        assert_eq!(yaml.value(), json.value());
        assert_eq!(yaml.value()["repeat"], json!(3));
        assert_eq!(yaml.value()["steps"][0]["speak"]["duckLevel"], json!(0.25));
        assert_eq!(yaml.value()["steps"][1]["at"], json!("1.5s"));
        let plan = decode_document(YAML, &Limits::default()).unwrap();
        assert_eq!(plan.repeat, Repeat::Times(3));
        assert_eq!(plan, decode_document(JSON, &Limits::default()).unwrap());
        // A byte-order mark and flow YAML that is not JSON.
        let flow =
            parse_document("\u{feff}{name: hello, steps: [{delay: {duration: 1s}}]}").unwrap();
        assert_eq!(flow.format(), Format::Yaml);
        assert_eq!(
            flow.into_value(),
            json!({"name": "hello", "steps": [{"delay": {"duration": "1s"}}]})
        );
    }

    #[test]
    fn every_path_has_the_line_of_its_deepest_node() {
        let paths = [
            "",
            "name",
            "steps",
            "steps[0]",
            "steps[0].speak.text",
            "steps[1].parallelSteps.steps[0].delay.duration",
            "steps[1].parallel_steps.steps[1].waitForEvent.match.button",
            // Missing: the line of the object that should hold it.
            "steps[2].playMusic.query",
            "steps[1].parallelSteps.steps[0].delay.duration.nanos",
            "planId",
            "steps[9].delay",
        ];
        assert_eq!(
            lines_of(YAML, &paths),
            [2, 2, 5, 6, 7, 15, 18, 19, 15, 2, 5].map(Some)
        );
        assert_eq!(
            lines_of(JSON, &paths),
            [1, 2, 5, 6, 6, 13, 16, 21, 13, 1, 5].map(Some)
        );
    }

    #[test]
    fn decode_problems_come_with_their_lines() {
        let text = "\
name: broken
steps:
  - delay:
      duration: 2 seconds
  - eyePattern: {pattern: grumpy}
  - parallelSteps:
      steps:
        - delay: {}
";
        let problems: Vec<String> = decode_document(text, &Limits::default())
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        let want = [
            "line 4: steps[0].delay.duration: '2 seconds' is not a duration",
            "line 5: steps[1].eyePattern.pattern: unknown eye pattern 'grumpy'",
            "line 8: steps[2].parallelSteps.steps[0].delay.duration: missing",
        ];
        assert_eq!(problems.len(), want.len(), "{problems:#?}");
        for (got, want) in problems.iter().zip(want) {
            assert!(got.starts_with(want), "{got:?} should start with {want:?}");
        }
        let json = "{\n  \"steps\": [\n    {\"delay\": {\"duration\": \"-1s\"}},\n    {\"dealy\": {}}\n  ]\n}";
        let problems = decode_document(json, &Limits::default()).unwrap_err();
        let lines: Vec<_> = problems.iter().map(|p| p.line).collect();
        assert_eq!(lines, [Some(3), Some(4), Some(4)], "{problems:#?}");
    }

    #[test]
    fn malformed_text_says_where() {
        let json = problems(
            "{\n  \"name\": \"x\",\n  \"steps\": [\n    {\"delay\": {\"duration\": \"1s\"}}\n    {\"delay\": {}}\n  ]\n}",
        );
        assert_eq!(json.len(), 1);
        assert!(
            json[0].starts_with("line 5: not valid JSON at line 5, column 5: expected"),
            "{json:?}"
        );
        let yaml = problems("name: x\nsteps:\n  - delay:\n      duration: 1s\n   - delay: 2s\n");
        assert_eq!(yaml.len(), 1);
        assert!(
            yaml[0].starts_with("line 5: not valid YAML at line 5, column 4: "),
            "{yaml:?}"
        );
        let unclosed = problems("name: \"x\nsteps: []\n");
        assert!(unclosed[0].contains("not valid YAML"), "{unclosed:?}");
        assert_eq!(
            problems("# nothing but a comment\n"),
            ["the document is empty: a plan has at least `steps`, a list of steps"]
        );
        assert_eq!(problems("   ").len(), 1);
        let two = problems("name: a\nsteps: []\n---\nname: b\n");
        assert_eq!(
            two,
            ["line 3: a second YAML document begins here: a plan file holds one plan"]
        );
    }

    #[test]
    fn duplicate_keys_are_problems_in_both_formats() {
        assert_eq!(
            problems("name: a\nsteps: []\nname: b\n"),
            ["line 3: name: 'name' is given twice in the same object: keep one"]
        );
        assert_eq!(
            problems("{\"steps\": [{\"delay\": {},\n \"delay\": {}}]}"),
            ["line 2: steps[0].delay: 'delay' is given twice in the same object: keep one"]
        );
    }

    #[test]
    fn yaml_is_read_as_yaml_1_2() {
        let doc = parse_document(
            "\
text: no
flag: yes
switch: on
real: true
quoted: 'true'
nothing: ~
empty:
octal: 010
octal2: 0o10
hex: 0x1F
time: 1:30
duration: 1.5s
float: 1.5e3
negative: -7
version: 1.2.3
tagged: !!str 3
block: |
  two
  lines
",
        )
        .unwrap();
        assert_eq!(
            doc.value(),
            &json!({
                "text": "no", "flag": "yes", "switch": "on", "real": true,
                "quoted": "true", "nothing": null, "empty": null, "octal": 10,
                "octal2": 8, "hex": 31, "time": "1:30", "duration": "1.5s",
                "float": 1500.0, "negative": -7, "version": "1.2.3", "tagged": "3",
                "block": "two\nlines\n"
            })
        );
        // Where a boolean is wanted, the problem says why `yes` is text.
        let problems = decode_document(
            "loop: yes\nsteps:\n  - speak: {text: no}\n    continueOnError: off\n",
            &Limits::default(),
        )
        .unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert_eq!(problems[0].line, Some(1));
        assert!(
            problems[0]
                .to_string()
                .contains("YAML 1.2 reads yes, no, on and off as text"),
            "{problems:#?}"
        );
        assert_eq!(problems[1].problem.path, "steps[0].continueOnError");
        assert_eq!(problems[1].line, Some(4));
        let inf = problems_of("steps: [{musicDuck: {level: .inf}}]\n");
        assert!(inf[0].contains("not a number JSON can hold"), "{inf:?}");
    }

    fn problems_of(text: &str) -> Vec<String> {
        problems(text)
    }

    #[test]
    fn aliases_are_expanded_within_bounds() {
        let doc = parse_document(
            "steps:\n  - &flash\n    eyePattern: {pattern: surprised}\n  - delay: {duration: 1s}\n  - *flash\n",
        )
        .unwrap();
        assert_eq!(doc.value()["steps"][2], doc.value()["steps"][0]);
        assert_eq!(doc.line_of("steps[2].eyePattern.pattern"), Some(5));
        // A billion laughs stops early.
        let mut bomb = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let prev = (b'a' + i - 1) as char;
            let name = (b'a' + i) as char;
            bomb.push_str(&format!(
                "{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        let found = problems(&bomb);
        assert!(
            found[0].contains("once its aliases are expanded"),
            "{found:?}"
        );
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(parse_document(&deep).is_err());
    }

    #[test]
    fn a_document_too_big_is_refused() {
        let big = format!("name: x\nsteps: []\n#{}\n", "x".repeat(MAX_DOCUMENT_BYTES));
        let found = problems(&big);
        assert!(found[0].contains("at most 1048576 bytes"), "{found:?}");
    }

    #[test]
    fn a_request_holding_the_plan_is_read_as_the_plan_with_the_files_lines() {
        let text = "{\n  \"plan\": {\n    \"steps\": [\n      {\"delay\": {\"duration\": \"-1s\"}}\n    ]\n  }\n}\n";
        let document = parse_document(text).unwrap();
        assert!(document.value().get("steps").is_some());
        let problems = document.decode(&Limits::default()).unwrap_err();
        assert_eq!(problems[0].problem.path, "steps[0].delay.duration");
        assert_eq!(problems[0].line, Some(4));
        // Another field beside `plan`: not a request, and said so.
        let mixed = parse_document("{\"plan\": {}, \"steps\": []}").unwrap();
        assert!(mixed.value().get("plan").is_some());
    }

    #[test]
    fn the_examples_decode_and_suit_the_demo_library() {
        for (file, text) in EXAMPLES {
            let plan = decode_document(text, &Limits::default())
                .unwrap_or_else(|e| panic!("{file}: {e:#?}"));
            let format = parse_document(text).unwrap().format();
            assert_eq!(format == Format::Json, file.ends_with(".json"), "{file}");
            assert_eq!(plan.name, file.split('.').next().unwrap(), "{file}");
            for step in plan.all_steps() {
                match &step.action {
                    Action::Move { .. } => panic!("{file}: a move step"),
                    // The demo library has four tracks.
                    Action::MusicCrossfade { track, .. } | Action::PlayMusic { query: track } => {
                        let n: usize = track.parse().expect("a track by number");
                        assert!((1..=4).contains(&n), "{file}: track {n}");
                    }
                    _ => {}
                }
            }
        }
        let ambient = decode_document(AMBIENT_IDLE, &Limits::default()).unwrap();
        assert_eq!(ambient.layer, Layer::Ambient);
        assert_eq!(ambient.repeat, Repeat::Forever);
        assert!(
            ambient
                .all_steps()
                .iter()
                .all(|s| matches!(s.action, Action::EyePattern { .. } | Action::Delay { .. }))
        );
        let dj = decode_document(DJ_INTRO, &Limits::default()).unwrap();
        assert!(dj.steps.iter().any(|s| s.at.is_some()));
    }

    /// The YAML and JSON examples of `docs/plans.md` are valid and the same
    /// plan, and the problems it shows are the ones decode gives.
    #[test]
    fn the_examples_of_the_docs_hold() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/plans.md");
        let text = fs::read_to_string(&path).unwrap();
        let block = |fence: &str| {
            let start = text.find(fence).expect("the block") + fence.len();
            let end = start + text[start..].find("```").expect("its end");
            text[start..end].to_string()
        };
        let yaml = decode_document(&block("```yaml\n"), &Limits::default()).unwrap();
        let json = decode_document(&block("```json\n"), &Limits::default()).unwrap();
        assert_eq!(yaml, json);
        let shown = format!("line 4{}", block("```\nline 4"));
        let broken = "name: broken\nsteps:\n  - delay:\n      duration: 2 seconds\n  - eyePattern: {pattern: grumpy}\n";
        let problems: Vec<String> = decode_document(broken, &Limits::default())
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        let shown: Vec<&str> = shown.lines().map(|l| l.trim_end_matches('…')).collect();
        assert_eq!(shown.len(), problems.len(), "{shown:#?}");
        for (shown, problem) in shown.iter().zip(&problems) {
            assert!(problem.starts_with(shown), "{problem:?} is not {shown:?}");
        }
    }

    #[test]
    fn a_new_folder_gets_the_examples_once() {
        let dir = tempfile::tempdir().unwrap();
        let plans = dir.path().join("plans");
        let folder = PlanFolder::open(&plans).unwrap();
        let names: Vec<String> = folder.list().into_iter().map(|p| p.name).collect();
        assert_eq!(names, ["ambient-idle", "dj-intro", "greeting"]);
        // Deleted, an example stays deleted.
        fs::remove_file(plans.join("greeting.json")).unwrap();
        fs::remove_file(plans.join("dj-intro.json")).unwrap();
        fs::remove_file(plans.join("ambient-idle.yaml")).unwrap();
        let folder = PlanFolder::open(&plans).unwrap();
        assert!(folder.list().is_empty());
        // A folder that has plans of its own gets none.
        let own = dir.path().join("own");
        fs::create_dir(&own).unwrap();
        fs::write(own.join("mine.yml"), "steps: [{delay: {duration: 1s}}]\n").unwrap();
        let folder = PlanFolder::open(&own).unwrap();
        let listed = folder.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].name, "mine");
        // No temporary file is left behind.
        let leftovers: Vec<_> = fs::read_dir(&plans)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(leftovers, [EXAMPLES_MARKER]);
    }

    #[test]
    fn the_list_says_what_each_file_holds() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(EXAMPLES_MARKER), "").unwrap();
        let folder = PlanFolder::open(dir.path()).unwrap();
        let write = |name: &str, text: &str| fs::write(dir.path().join(name), text).unwrap();
        write("b-show.yaml", GREETING);
        write(
            "a-broken.json",
            "{\"steps\": [\n {\"delay\": {\"duration\": \"soon\"}}]}",
        );
        write("notes.txt", "not a plan");
        write(".hidden.yaml", GREETING);
        write("twin.json", DJ_INTRO);
        write("twin.yml", AMBIENT_IDLE);
        let listed = folder.list();
        let names: Vec<&str> = listed.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["a-broken", "b-show", "twin", "twin"]);
        assert_eq!(listed[0].layer, None);
        assert!(
            listed[0]
                .problem
                .as_deref()
                .unwrap()
                .starts_with("line 2: steps[0].delay.duration: 'soon' is not a duration"),
            "{listed:#?}"
        );
        assert_eq!(listed[1].layer, Some(Layer::Foreground));
        assert_eq!(listed[1].steps, 4);
        assert_eq!(listed[1].problem, None);
        assert!(listed[2].problem.as_deref().unwrap().contains("same name"));
        // The twins are told apart by their extension.
        assert!(matches!(
            folder.load("twin"),
            Err(LoadError::Ambiguous { ref files, .. }) if files.len() == 2
        ));
        let (plan, _) = folder.load("twin.yml").unwrap();
        assert_eq!(plan.layer, Layer::Ambient);
        let err = folder.load("a-broken").unwrap_err();
        assert!(
            matches!(err, LoadError::Invalid { ref problems, .. } if problems[0].line == Some(2))
        );
        assert!(
            err.to_string()
                .contains("is not a valid plan (1 problem):\n  line 2: "),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_name_gets_the_names_and_the_closest() {
        let dir = tempfile::tempdir().unwrap();
        let folder = PlanFolder::open(dir.path()).unwrap();
        let (plan, text) = folder.load("greeting").unwrap();
        assert_eq!(plan.name, "greeting");
        assert_eq!(text, GREETING);
        assert!(folder.load("greeting.json").is_ok());
        let err = folder.load("gretting").unwrap_err();
        assert!(
            matches!(err, LoadError::NotFound { ref suggestion, .. } if suggestion.as_deref() == Some("greeting"))
        );
        assert_eq!(
            err.to_string(),
            format!(
                "no plan named 'gretting' in {}: did you mean 'greeting'? (the plans: ambient-idle, dj-intro, greeting)",
                dir.path().display()
            )
        );
        let err = folder.load("dj").unwrap_err();
        assert!(
            err.to_string().contains("did you mean 'dj-intro'?"),
            "{err}"
        );
        let err = folder.load("fireworks").unwrap_err();
        assert!(!err.to_string().contains("did you mean"), "{err}");
    }

    #[test]
    fn paths_are_not_names() {
        let dir = tempfile::tempdir().unwrap();
        let plans = dir.path().join("plans");
        let folder = PlanFolder::open(&plans).unwrap();
        fs::write(dir.path().join("secret.yaml"), GREETING).unwrap();
        for name in [
            "../secret",
            "..",
            "a/b",
            "/etc/passwd",
            "..\\secret",
            ".examples-written",
            "",
            " ",
        ] {
            assert!(
                matches!(folder.load(name), Err(LoadError::BadName { .. })),
                "{name:?} should be refused"
            );
        }
    }

    #[test]
    fn a_file_too_big_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let folder = PlanFolder::open(dir.path()).unwrap();
        let mut text = String::from(GREETING);
        text.push_str(&format!("# {}\n", "x".repeat(MAX_DOCUMENT_BYTES)));
        fs::write(dir.path().join("huge.yaml"), &text).unwrap();
        let err = folder.load("huge").unwrap_err();
        assert!(matches!(err, LoadError::TooBig { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("a plan file is at most 1048576 bytes (1 MiB)"),
            "{err}"
        );
        let listed = folder.list();
        let huge = listed.iter().find(|p| p.name == "huge").unwrap();
        assert!(
            huge.problem.as_deref().unwrap().contains("at most"),
            "{huge:?}"
        );
    }
}
