//! A state machine's definition: parsed from its JSON into typed states,
//! with the checks CreateStateMachine and ValidateStateMachineDefinition
//! make, each a diagnostic with AWS's code, message and location
//! (`SCHEMA_VALIDATION_FAILED: The field 'Next' should be non-null at
//! /States/A`). Paths, templates and Choice rules are compiled here, so a
//! running execution never meets a definition error.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::choice::Rule;
use crate::jsonata::{self, Form};
use crate::path::{Path, Root};
use crate::payload::{self, Given, Template};

/// Bounds of a definition.
pub const MAX_DEFINITION_BYTES: usize = 1024 * 1024;
pub const MAX_STATE_NAME: usize = 80;
const MAX_NESTING: usize = 16;

#[derive(Debug, Clone, PartialEq)]
pub struct StateMachine {
    pub start_at: String,
    pub states: BTreeMap<String, State>,
    pub timeout_seconds: Option<u64>,
    pub comment: Option<String>,
}

pub type PathField = Given<(String, Path)>;

#[derive(Debug, Clone, PartialEq)]
pub struct State {
    pub name: String,
    pub kind: Kind,
    /// The next state, or `None` where the state ends the machine.
    pub next: Option<String>,
    pub input_path: PathField,
    pub output_path: PathField,
    pub result_path: PathField,
    pub parameters: Option<Template>,
    pub result_selector: Option<Template>,
    pub retry: Vec<Retrier>,
    pub catch: Vec<Catcher>,
    /// The state's query language is JSONata (its own QueryLanguage, or
    /// the machine's): it takes Arguments and Output instead of the paths.
    pub jsonata: bool,
    pub arguments: Option<Form>,
    pub output: Option<Form>,
    /// Variables the state sets when it ends (in either language).
    pub assign: Option<Shape>,
}

/// A value shaped from the state's data: a payload template (JSONPath)
/// or a JSONata form.
#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Paths(Template),
    Jsonata(Form),
}

/// One of a Choice state's rules: when it holds, where it leads, and
/// what it sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Choice {
    pub when: When,
    pub next: String,
    pub assign: Option<Shape>,
    pub output: Option<Form>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum When {
    Rule(Rule),
    /// JSONata: a boolean, or an expression that yields one.
    Condition(Form),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    Pass {
        result: Option<Value>,
    },
    Task {
        resource: String,
        timeout: Option<Seconds>,
        heartbeat: Option<Seconds>,
    },
    Choice {
        choices: Vec<Choice>,
        default: Option<String>,
    },
    Wait(Wait),
    Succeed,
    Fail {
        error: Option<Text>,
        cause: Option<Text>,
    },
    Parallel {
        branches: Vec<StateMachine>,
    },
    Map(Box<MapState>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct MapState {
    pub processor: StateMachine,
    pub items_path: PathField,
    /// JSONata: the items (an array, or an expression that yields one).
    pub items: Option<Form>,
    pub item_selector: Option<Shape>,
    pub max_concurrency: Option<Seconds>,
    pub tolerated_failure_count: Option<Seconds>,
    pub tolerated_failure_percentage: Option<Percent>,
    /// ItemBatcher: MaxItemsPerBatch and BatchInput.
    pub batch: Option<(u64, Option<Value>)>,
    pub distributed: bool,
    pub label: Option<String>,
}

/// A number given as a value, read from a path (`…Path` fields) or
/// yielded by a JSONata expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Seconds {
    Fixed(u64),
    Path(Path),
    Expr(Form),
}

/// ToleratedFailurePercentage: 0 to 100, in any of the three ways.
#[derive(Debug, Clone, PartialEq)]
pub enum Percent {
    Fixed(f64),
    Path(Path),
    Expr(Form),
}

/// A text given as a value, read from a path (Fail's Error and Cause)
/// or yielded by a JSONata expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Text {
    Fixed(String),
    Path(Path),
    Expr(Form),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Wait {
    Seconds(Seconds),
    Timestamp(String),
    TimestampPath(Path),
    TimestampExpr(Form),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Retrier {
    pub error_equals: Vec<String>,
    pub interval_seconds: f64,
    pub max_attempts: u32,
    pub backoff_rate: f64,
    pub max_delay_seconds: Option<f64>,
    pub full_jitter: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Catcher {
    pub error_equals: Vec<String>,
    pub next: String,
    pub result_path: PathField,
    pub output: Option<Form>,
    pub assign: Option<Shape>,
}

/// One thing wrong with a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: &'static str,
    pub message: String,
    pub location: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {} at {}", self.code, self.message, self.location)
    }
}

/// InvalidDefinition's message for `diagnostics`, as AWS writes it.
pub fn invalid_definition(diagnostics: &[Diagnostic]) -> String {
    let all: Vec<String> = diagnostics.iter().map(Diagnostic::to_string).collect();
    format!("Invalid State Machine Definition: '{}'", all.join(", "))
}

const SCHEMA: &str = "SCHEMA_VALIDATION_FAILED";

struct Checker {
    found: Vec<Diagnostic>,
}

impl Checker {
    fn add(&mut self, code: &'static str, message: impl Into<String>, location: &str) {
        if self.found.len() < 100 {
            self.found.push(Diagnostic {
                code,
                message: message.into(),
                location: location.to_string(),
            });
        }
    }

    fn schema(&mut self, message: impl Into<String>, location: &str) {
        self.add(SCHEMA, message, location);
    }

    fn string(&mut self, m: &Map<String, Value>, field: &str, at: &str) -> Option<String> {
        match m.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.schema(
                    format!("The value for the field '{field}' must be a STRING"),
                    &format!("{at}/{field}"),
                );
                None
            }
        }
    }

    fn path_field(
        &mut self,
        m: &Map<String, Value>,
        field: &str,
        at: &str,
        reference: bool,
    ) -> PathField {
        match m.get(field) {
            None => Given::Absent,
            Some(Value::Null) => Given::Null,
            Some(Value::String(s)) => {
                let parsed = if reference {
                    Path::parse_reference(s)
                } else {
                    Path::parse(s)
                };
                match parsed {
                    Ok(p) if reference && p.root != Root::Input => {
                        self.schema(
                            format!("The field '{field}' must be a path into the state's data (starting with $ but not $$ or a variable)"),
                            &format!("{at}/{field}"),
                        );
                        Given::Absent
                    }
                    Ok(p) => Given::Set((s.clone(), p)),
                    Err(e) => {
                        self.schema(e.0, &format!("{at}/{field}"));
                        Given::Absent
                    }
                }
            }
            Some(_) => {
                self.schema(
                    format!("The value for the field '{field}' must be a STRING"),
                    &format!("{at}/{field}"),
                );
                Given::Absent
            }
        }
    }

    /// A JSONata field: any JSON, its `{% … %}` strings expressions.
    fn form(&mut self, m: &Map<String, Value>, field: &str, at: &str) -> Option<Form> {
        let v = m.get(field)?;
        match jsonata::compile(v) {
            Ok(f) => Some(f),
            Err(e) => {
                self.schema(e, &format!("{at}/{field}"));
                None
            }
        }
    }

    /// Assign: an object of variables, each value JSON with paths (`.$`
    /// fields, JSONPath) or expressions (JSONata).
    fn assign(&mut self, m: &Map<String, Value>, at: &str, jsonata: bool) -> Option<Shape> {
        let v = m.get("Assign")?;
        let loc = format!("{at}/Assign");
        let Some(fields) = v.as_object() else {
            self.schema("The value for the field 'Assign' must be an OBJECT", &loc);
            return None;
        };
        for key in fields.keys() {
            let name = if jsonata {
                key.as_str()
            } else {
                key.strip_suffix(".$").unwrap_or(key)
            };
            if name == "states" {
                self.schema("The variable name 'states' is reserved", &loc);
            } else if name.is_empty()
                || name.chars().count() > 80
                || crate::path::variable_name(name) != name.len()
            {
                self.schema(
                    format!("'{name}' is not a valid variable name (a letter or _, then letters, digits or _, at most 80)"),
                    &loc,
                );
            }
        }
        if jsonata {
            self.form(m, "Assign", at).map(Shape::Jsonata)
        } else {
            self.template(m, "Assign", at).map(Shape::Paths)
        }
    }

    fn template(&mut self, m: &Map<String, Value>, field: &str, at: &str) -> Option<Template> {
        let v = m.get(field)?;
        match payload::compile(v) {
            Ok(t) => Some(t),
            Err(e) => {
                self.schema(e, &format!("{at}/{field}"));
                None
            }
        }
    }

    fn seconds(&mut self, m: &Map<String, Value>, field: &str, at: &str) -> Option<Seconds> {
        let path_field = format!("{field}Path");
        if let Some(e) = m
            .get(field)
            .and_then(Value::as_str)
            .and_then(jsonata::expression)
        {
            return match jsonata::compile(&Value::String(format!("{{%{e}%}}"))) {
                Ok(f) => Some(Seconds::Expr(f)),
                Err(why) => {
                    self.schema(why, &format!("{at}/{field}"));
                    None
                }
            };
        }
        match (m.get(field), m.get(&path_field)) {
            (Some(_), Some(_)) => {
                self.schema(
                    format!("Only one of '{field}' and '{path_field}' can be given"),
                    at,
                );
                None
            }
            (Some(v), None) => match v.as_u64() {
                Some(n) if n <= 99_999_999 => Some(Seconds::Fixed(n)),
                _ => {
                    self.schema(
                        format!("The value for the field '{field}' must be a non-negative INTEGER"),
                        &format!("{at}/{field}"),
                    );
                    None
                }
            },
            (None, Some(v)) => match v.as_str().map(Path::parse_reference) {
                Some(Ok(p)) => Some(Seconds::Path(p)),
                _ => {
                    self.schema(
                        format!("The value for the field '{path_field}' must be a reference path"),
                        &format!("{at}/{path_field}"),
                    );
                    None
                }
            },
            (None, None) => None,
        }
    }

    fn text(&mut self, m: &Map<String, Value>, field: &str, at: &str) -> Option<Text> {
        let path_field = format!("{field}Path");
        match (m.get(field), m.get(&path_field)) {
            (Some(_), Some(_)) => {
                self.schema(
                    format!("Only one of '{field}' and '{path_field}' can be given"),
                    at,
                );
                None
            }
            (Some(_), None) => {
                let text = self.string(m, field, at)?;
                if jsonata::expression(&text).is_none() {
                    return Some(Text::Fixed(text));
                }
                self.form(m, field, at).map(Text::Expr)
            }
            (None, Some(_)) => {
                let text = self.string(m, &path_field, at)?;
                match Path::parse(&text) {
                    Ok(p) => Some(Text::Path(p)),
                    Err(e) => {
                        self.schema(e.0, &format!("{at}/{path_field}"));
                        None
                    }
                }
            }
            (None, None) => None,
        }
    }
}

/// The fields of the JSONPath query language, refused in JSONata states.
const JSONPATH_ONLY: [&str; 17] = [
    "InputPath",
    "OutputPath",
    "ResultPath",
    "Parameters",
    "ResultSelector",
    "Result",
    "ItemsPath",
    "Iterator",
    "SecondsPath",
    "TimestampPath",
    "TimeoutSecondsPath",
    "HeartbeatSecondsPath",
    "ErrorPath",
    "CausePath",
    "MaxConcurrencyPath",
    "ToleratedFailureCountPath",
    "ToleratedFailurePercentagePath",
];

/// The fields of the JSONata query language, refused in JSONPath states.
const JSONATA_ONLY: [&str; 3] = ["Arguments", "Output", "Items"];

/// The fields each state type takes (besides Type, Comment and
/// QueryLanguage), in either query language.
fn allowed(kind: &str) -> &'static [&'static str] {
    const IO: [&str; 3] = ["InputPath", "OutputPath", "Output"];
    match kind {
        "Pass" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "Result",
            "Assign",
            "Output",
        ],
        "Task" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Retry",
            "Catch",
            "Resource",
            "TimeoutSeconds",
            "TimeoutSecondsPath",
            "HeartbeatSeconds",
            "HeartbeatSecondsPath",
            "Credentials",
            "Assign",
            "Arguments",
            "Output",
        ],
        "Choice" => &[
            "InputPath",
            "OutputPath",
            "Choices",
            "Default",
            "Assign",
            "Output",
        ],
        "Wait" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "Seconds",
            "SecondsPath",
            "Timestamp",
            "TimestampPath",
            "Assign",
            "Output",
        ],
        "Succeed" => &IO,
        "Fail" => &["Error", "ErrorPath", "Cause", "CausePath"],
        "Parallel" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Retry",
            "Catch",
            "Branches",
            "Assign",
            "Arguments",
            "Output",
        ],
        "Map" => &[
            "Next",
            "End",
            "InputPath",
            "OutputPath",
            "ResultPath",
            "Parameters",
            "ResultSelector",
            "Retry",
            "Catch",
            "Iterator",
            "ItemProcessor",
            "ItemsPath",
            "ItemSelector",
            "MaxConcurrency",
            "MaxConcurrencyPath",
            "ToleratedFailureCount",
            "ToleratedFailureCountPath",
            "ToleratedFailurePercentage",
            "ToleratedFailurePercentagePath",
            "ItemBatcher",
            "ItemReader",
            "ResultWriter",
            "Label",
            "Assign",
            "Output",
            "Items",
        ],
        _ => &[],
    }
}

impl StateMachine {
    /// Parses and checks a definition; every problem found, or the machine.
    pub fn parse(text: &str) -> Result<StateMachine, Vec<Diagnostic>> {
        let at = "/";
        let diag = |code, message: &str| {
            vec![Diagnostic {
                code,
                message: message.to_string(),
                location: at.to_string(),
            }]
        };
        if text.len() > MAX_DEFINITION_BYTES {
            return Err(diag(SCHEMA, "The definition is larger than 1 MB"));
        }
        let v: Value = serde_json::from_str(text).map_err(|e| {
            diag(
                "INVALID_JSON_DESCRIPTION",
                &format!("The definition is not JSON: {e}"),
            )
        })?;
        let mut checker = Checker { found: Vec::new() };
        let jsonata = match v.get("QueryLanguage") {
            None => false,
            Some(l) => match l.as_str() {
                Some("JSONPath") => false,
                Some("JSONata") => true,
                _ => {
                    return Err(diag(
                        SCHEMA,
                        "The value for the field 'QueryLanguage' must be JSONPath or JSONata",
                    ))
                }
            },
        };
        let machine = machine(&mut checker, &v, "", 0, jsonata);
        if let Some(m) = &machine {
            scopes(&mut checker, m, &BTreeSet::new(), "");
        }
        match (machine, checker.found.is_empty()) {
            (Some(m), true) => Ok(m),
            _ => Err(checker.found),
        }
    }
}

/// The variables a state may set (its Assign, its rules', its catchers').
fn assigned_names(s: &State) -> BTreeSet<String> {
    let mut shapes: Vec<&Shape> = s.assign.iter().collect();
    if let Kind::Choice { choices, .. } = &s.kind {
        shapes.extend(choices.iter().filter_map(|c| c.assign.as_ref()));
    }
    shapes.extend(s.catch.iter().filter_map(|c| c.assign.as_ref()));
    let mut names = BTreeSet::new();
    for shape in shapes {
        match shape {
            Shape::Paths(Template::Object(fields)) => {
                names.extend(fields.iter().map(|(k, _)| k.clone()));
            }
            Shape::Paths(Template::Fixed(Value::Object(m)))
            | Shape::Jsonata(Form::Fixed(Value::Object(m))) => names.extend(m.keys().cloned()),
            Shape::Jsonata(Form::Object(fields)) => {
                names.extend(fields.iter().map(|(k, _)| k.clone()));
            }
            _ => {}
        }
    }
    names
}

/// A Parallel's branches and a Map's processor read the variables of
/// the scopes around them, but may not set one of theirs (AWS's rule).
fn scopes(c: &mut Checker, m: &StateMachine, outer: &BTreeSet<String>, at: &str) {
    let mut here = outer.clone();
    for s in m.states.values() {
        here.extend(assigned_names(s));
    }
    for (name, s) in &m.states {
        let loc = format!("{at}/States/{name}");
        for clash in assigned_names(s).intersection(outer) {
            c.schema(
                format!("The variable '{clash}' is set in an outer scope and may not be set in an inner one"),
                &loc,
            );
        }
        match &s.kind {
            Kind::Parallel { branches } => {
                for (i, b) in branches.iter().enumerate() {
                    scopes(c, b, &here, &format!("{loc}/Branches[{i}]"));
                }
            }
            Kind::Map(map) => scopes(c, &map.processor, &here, &format!("{loc}/ItemProcessor")),
            _ => {}
        }
    }
}

/// A machine, or a Parallel's branch or a Map's processor (`jsonata`: the
/// top-level QueryLanguage, which states inherit at every level).
fn machine(
    c: &mut Checker,
    v: &Value,
    at: &str,
    depth: usize,
    jsonata: bool,
) -> Option<StateMachine> {
    let here = if at.is_empty() { "/" } else { at };
    if depth > MAX_NESTING {
        c.schema(
            format!("States nest deeper than {MAX_NESTING} levels"),
            here,
        );
        return None;
    }
    let Some(m) = v.as_object() else {
        c.schema("A state machine is a JSON object", here);
        return None;
    };
    for key in m.keys() {
        if ![
            "StartAt",
            "States",
            "Comment",
            "TimeoutSeconds",
            "Version",
            "QueryLanguage",
            "ProcessorConfig",
        ]
        .contains(&key.as_str())
        {
            c.schema(format!("Field '{key}' is not supported"), here);
        }
    }
    let start_at = c.string(m, "StartAt", at);
    if start_at.is_none() {
        c.schema("The field 'StartAt' should be non-null", here);
    }
    let Some(states_v) = m.get("States").and_then(Value::as_object) else {
        c.schema("The field 'States' should be non-null", here);
        return None;
    };
    if states_v.is_empty() {
        c.schema(
            "The field 'States' should have at least one state",
            &format!("{at}/States"),
        );
    }
    let timeout_seconds = match m.get("TimeoutSeconds") {
        None => None,
        Some(v) => match v.as_u64() {
            Some(n) if n > 0 && n <= 99_999_999 => Some(n),
            _ => {
                c.schema(
                    "The value for the field 'TimeoutSeconds' must be a positive INTEGER",
                    &format!("{at}/TimeoutSeconds"),
                );
                None
            }
        },
    };
    let mut states = BTreeMap::new();
    for (name, sv) in states_v {
        let loc = format!("{at}/States/{name}");
        if name.is_empty() || name.chars().count() > MAX_STATE_NAME {
            c.schema(
                format!("State names are 1 to {MAX_STATE_NAME} characters"),
                &loc,
            );
            continue;
        }
        if let Some(s) = state(c, name, sv, &loc, depth, jsonata) {
            states.insert(name.clone(), s);
        }
    }
    // Transitions name states of this machine; every state is reachable.
    let names: BTreeSet<&String> = states_v.keys().collect();
    if let Some(start) = &start_at {
        if !names.contains(start) {
            c.add(
                "MISSING_TRANSITION_TARGET",
                format!("Missing 'Next' target: {start}"),
                &format!("{at}/StartAt"),
            );
        }
    }
    let mut edges: BTreeMap<&String, Vec<&String>> = BTreeMap::new();
    for (name, s) in &states {
        let loc = format!("{at}/States/{name}");
        let mut targets: Vec<(&String, String)> = Vec::new();
        if let Some(n) = &s.next {
            targets.push((n, format!("{loc}/Next")));
        }
        if let Kind::Choice { choices, default } = &s.kind {
            for (i, choice) in choices.iter().enumerate() {
                targets.push((&choice.next, format!("{loc}/Choices[{i}]/Next")));
            }
            if let Some(d) = default {
                targets.push((d, format!("{loc}/Default")));
            }
        }
        for (i, catcher) in s.catch.iter().enumerate() {
            targets.push((&catcher.next, format!("{loc}/Catch[{i}]/Next")));
        }
        for (t, tloc) in &targets {
            if !names.contains(t) {
                c.add(
                    "MISSING_TRANSITION_TARGET",
                    format!("Missing 'Next' target: {t}"),
                    tloc,
                );
            }
        }
        edges.insert(name, targets.into_iter().map(|(t, _)| t).collect());
    }
    if let Some(start) = start_at.as_ref().filter(|s| states.contains_key(*s)) {
        let mut seen: BTreeSet<&String> = BTreeSet::new();
        let mut todo = vec![start];
        while let Some(n) = todo.pop() {
            if seen.insert(n) {
                todo.extend(edges.get(n).into_iter().flatten().copied());
            }
        }
        for name in states.keys().filter(|n| !seen.contains(n)) {
            c.add(
                "UNREACHABLE_STATE",
                format!("State '{name}' is not reachable"),
                &format!("{at}/States/{name}"),
            );
        }
    }
    Some(StateMachine {
        start_at: start_at?,
        states,
        timeout_seconds,
        comment: m.get("Comment").and_then(Value::as_str).map(String::from),
    })
}

/// The objects of a list field (Retry, Catch), each with its location
/// and whether it is the last.
fn objects<'a>(
    c: &mut Checker,
    m: &'a Map<String, Value>,
    field: &str,
    what: &str,
    at: &str,
) -> Vec<(String, &'a Map<String, Value>, bool)> {
    let Some(list) = m.get(field) else {
        return Vec::new();
    };
    let Some(list) = list.as_array() else {
        c.schema(
            format!("The value for the field '{field}' must be an ARRAY"),
            &format!("{at}/{field}"),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for (i, r) in list.iter().enumerate() {
        let loc = format!("{at}/{field}[{i}]");
        match r.as_object() {
            Some(r) => out.push((loc, r, i + 1 == list.len())),
            None => c.schema(format!("A {what} is an object"), &loc),
        }
    }
    out
}

fn retriers(c: &mut Checker, m: &Map<String, Value>, at: &str) -> Vec<Retrier> {
    let mut out = Vec::new();
    for (loc, r, last) in objects(c, m, "Retry", "retrier", at) {
        let error_equals = error_equals(c, r, &loc, last);
        let num = |c: &mut Checker, field: &str, min: f64, default: f64| -> f64 {
            match r.get(field) {
                None => default,
                Some(v) => match v.as_f64() {
                    Some(x) if x >= min && x.is_finite() => x,
                    _ => {
                        c.schema(
                            format!("The value for the field '{field}' must be at least {min}"),
                            &format!("{loc}/{field}"),
                        );
                        default
                    }
                },
            }
        };
        let interval_seconds = num(c, "IntervalSeconds", 1.0, 1.0);
        let max_attempts = num(c, "MaxAttempts", 0.0, 3.0);
        let backoff_rate = num(c, "BackoffRate", 1.0, 2.0);
        let max_delay_seconds = r
            .contains_key("MaxDelaySeconds")
            .then(|| num(c, "MaxDelaySeconds", 1.0, 1.0));
        let full_jitter = match r.get("JitterStrategy").and_then(Value::as_str) {
            None | Some("NONE") => false,
            Some("FULL") => true,
            Some(other) => {
                c.schema(
                    format!("JitterStrategy is FULL or NONE, not {other}"),
                    &format!("{loc}/JitterStrategy"),
                );
                false
            }
        };
        out.push(Retrier {
            error_equals,
            interval_seconds,
            max_attempts: max_attempts.min(99_999_999.0) as u32,
            backoff_rate,
            max_delay_seconds,
            full_jitter,
        });
    }
    out
}

fn error_equals(c: &mut Checker, r: &Map<String, Value>, loc: &str, last: bool) -> Vec<String> {
    let names: Vec<String> = r
        .get("ErrorEquals")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|e| e.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    if names.is_empty() {
        c.schema(
            "The field 'ErrorEquals' should be a non-empty array of strings",
            &format!("{loc}/ErrorEquals"),
        );
    }
    if names.iter().any(|n| n == crate::errors::ALL) && (names.len() > 1 || !last) {
        c.schema(
            "States.ALL must appear alone in the last element of ErrorEquals lists",
            &format!("{loc}/ErrorEquals"),
        );
    }
    names
}

fn catchers(c: &mut Checker, m: &Map<String, Value>, at: &str, jsonata: bool) -> Vec<Catcher> {
    let mut out = Vec::new();
    for (loc, r, last) in objects(c, m, "Catch", "catcher", at) {
        let error_equals = error_equals(c, r, &loc, last);
        for key in r.keys() {
            if ![
                "ErrorEquals",
                "Next",
                "ResultPath",
                "Output",
                "Assign",
                "Comment",
            ]
            .contains(&key.as_str())
            {
                c.schema(format!("Field '{key}' is not supported"), &loc);
            }
        }
        language(c, r, &loc, jsonata, &["ResultPath"], &["Output"]);
        let Some(next) = c.string(r, "Next", &loc) else {
            c.schema("The field 'Next' should be non-null", &loc);
            continue;
        };
        out.push(Catcher {
            error_equals,
            next,
            result_path: c.path_field(r, "ResultPath", &loc, true),
            output: c.form(r, "Output", &loc),
            assign: c.assign(r, &loc, jsonata),
        });
    }
    out
}

/// Refuses the fields of the other query language.
fn language(
    c: &mut Checker,
    m: &Map<String, Value>,
    at: &str,
    jsonata: bool,
    jsonpath_only: &[&str],
    jsonata_only: &[&str],
) {
    let (refused, name) = if jsonata {
        (jsonpath_only, "JSONata")
    } else {
        (jsonata_only, "JSONPath")
    };
    for field in refused.iter().filter(|f| m.contains_key(**f)) {
        c.schema(
            format!("The field '{field}' is not supported when QueryLanguage is {name}"),
            &format!("{at}/{field}"),
        );
    }
}

/// One rule of a Choice state.
fn choice(c: &mut Checker, rule: &Value, loc: &str, jsonata: bool) -> Option<Choice> {
    let Some(m) = rule.as_object() else {
        c.schema("A choice rule is an object", loc);
        return None;
    };
    let Some(next) = c.string(m, "Next", loc) else {
        c.schema("The field 'Next' should be non-null", loc);
        return None;
    };
    let when = if jsonata {
        for key in m.keys() {
            if !["Condition", "Next", "Assign", "Output", "Comment"].contains(&key.as_str()) {
                c.schema(
                    format!("Field '{key}' is not supported when QueryLanguage is JSONata"),
                    loc,
                );
            }
        }
        match m.get("Condition") {
            Some(Value::Bool(_)) => When::Condition(c.form(m, "Condition", loc)?),
            Some(Value::String(s)) if jsonata::expression(s).is_some() => {
                When::Condition(c.form(m, "Condition", loc)?)
            }
            _ => {
                c.schema(
                    "The field 'Condition' must be a boolean or a JSONata expression",
                    &format!("{loc}/Condition"),
                );
                return None;
            }
        }
    } else {
        language(c, m, loc, false, &[], &["Condition", "Output"]);
        match Rule::compile(rule, true) {
            Ok(r) => When::Rule(r),
            Err(e) => {
                c.schema(e, loc);
                return None;
            }
        }
    };
    Some(Choice {
        when,
        next,
        assign: c.assign(m, loc, jsonata),
        output: c.form(m, "Output", loc),
    })
}

fn state(
    c: &mut Checker,
    name: &str,
    v: &Value,
    at: &str,
    depth: usize,
    top_jsonata: bool,
) -> Option<State> {
    let Some(m) = v.as_object() else {
        c.schema("A state is a JSON object", at);
        return None;
    };
    let jsonata = match m.get("QueryLanguage") {
        None => top_jsonata,
        Some(l) => match l.as_str() {
            Some("JSONata") => true,
            Some("JSONPath") if top_jsonata => {
                c.schema(
                    "'QueryLanguage' can not be 'JSONPath' if set to 'JSONata' for whole state machine",
                    at,
                );
                true
            }
            Some("JSONPath") => false,
            _ => {
                c.schema(
                    "The value for the field 'QueryLanguage' must be JSONPath or JSONata",
                    &format!("{at}/QueryLanguage"),
                );
                top_jsonata
            }
        },
    };
    language(c, m, at, jsonata, &JSONPATH_ONLY, &JSONATA_ONLY);
    if let Some(args) = m.get("Arguments") {
        let text = args.to_string();
        if text.contains("$states.result") || text.contains("$states.errorOutput") {
            c.schema(
                "Arguments may not use $states.result or $states.errorOutput (there is none yet)",
                &format!("{at}/Arguments"),
            );
        }
    }
    let Some(kind_name) = c.string(m, "Type", at) else {
        c.schema("The field 'Type' should be non-null", at);
        return None;
    };
    let fields = allowed(&kind_name);
    if fields.is_empty() {
        c.schema(format!("The value for the field 'Type' must be one of Pass, Task, Choice, Wait, Succeed, Fail, Parallel, Map, not {kind_name}"), &format!("{at}/Type"));
        return None;
    }
    for key in m.keys() {
        if !["Type", "Comment", "QueryLanguage"].contains(&key.as_str())
            && !fields.contains(&key.as_str())
        {
            c.schema(format!("Field '{key}' is not supported"), at);
        }
    }
    let terminal = matches!(kind_name.as_str(), "Succeed" | "Fail" | "Choice");
    let next = c.string(m, "Next", at);
    let end = m.get("End").and_then(Value::as_bool).unwrap_or(false);
    if !terminal {
        match (&next, end) {
            (Some(_), true) => c.schema("Only one of 'Next' and 'End' can be given", at),
            (None, false) => c.schema("The field 'Next' should be non-null (or 'End' true)", at),
            _ => {}
        }
    }
    let kind = match kind_name.as_str() {
        "Pass" => Kind::Pass {
            result: m.get("Result").cloned(),
        },
        "Task" => {
            let resource = c.string(m, "Resource", at);
            if resource.is_none() {
                c.schema("The field 'Resource' should be non-null", at);
            }
            Kind::Task {
                resource: resource.unwrap_or_default(),
                timeout: c.seconds(m, "TimeoutSeconds", at),
                heartbeat: c.seconds(m, "HeartbeatSeconds", at),
            }
        }
        "Choice" => {
            let mut choices = Vec::new();
            match m.get("Choices").and_then(Value::as_array) {
                Some(list) if !list.is_empty() => {
                    for (i, rule) in list.iter().enumerate() {
                        let loc = format!("{at}/Choices[{i}]");
                        choices.extend(choice(c, rule, &loc, jsonata));
                    }
                }
                _ => c.schema("The field 'Choices' should be a non-empty array", at),
            }
            Kind::Choice {
                choices,
                default: c.string(m, "Default", at),
            }
        }
        "Wait" => {
            let given: Vec<&str> = ["Seconds", "SecondsPath", "Timestamp", "TimestampPath"]
                .into_iter()
                .filter(|f| m.contains_key(*f))
                .collect();
            if given.len() != 1 {
                c.schema("A Wait state takes exactly one of Seconds, SecondsPath, Timestamp and TimestampPath", at);
                return None;
            }
            let wait = match given[0] {
                "Timestamp"
                    if jsonata
                        && m["Timestamp"]
                            .as_str()
                            .and_then(jsonata::expression)
                            .is_some() =>
                {
                    Wait::TimestampExpr(c.form(m, "Timestamp", at)?)
                }
                "Timestamp" => {
                    let t = c.string(m, "Timestamp", at)?;
                    if time::OffsetDateTime::parse(
                        &t,
                        &time::format_description::well_known::Rfc3339,
                    )
                    .is_err()
                    {
                        c.schema(
                            "The value for the field 'Timestamp' must be an ISO-8601 timestamp",
                            &format!("{at}/Timestamp"),
                        );
                    }
                    Wait::Timestamp(t)
                }
                "TimestampPath" => {
                    let t = c.string(m, "TimestampPath", at)?;
                    match Path::parse_reference(&t) {
                        Ok(p) => Wait::TimestampPath(p),
                        Err(e) => {
                            c.schema(e.0, &format!("{at}/TimestampPath"));
                            return None;
                        }
                    }
                }
                _ => Wait::Seconds(c.seconds(m, "Seconds", at)?),
            };
            Kind::Wait(wait)
        }
        "Succeed" => Kind::Succeed,
        "Fail" => Kind::Fail {
            error: c.text(m, "Error", at),
            cause: c.text(m, "Cause", at),
        },
        "Parallel" => {
            let mut branches = Vec::new();
            match m.get("Branches").and_then(Value::as_array) {
                Some(list) if !list.is_empty() => {
                    for (i, b) in list.iter().enumerate() {
                        let loc = format!("{at}/Branches[{i}]");
                        if let Some(b) = machine(c, b, &loc, depth + 1, top_jsonata) {
                            branches.push(b);
                        }
                    }
                }
                _ => c.schema("The field 'Branches' should be a non-empty array", at),
            }
            Kind::Parallel { branches }
        }
        "Map" => {
            let (field, processor) = match (m.get("ItemProcessor"), m.get("Iterator")) {
                (Some(p), None) => ("ItemProcessor", p),
                (None, Some(p)) => ("Iterator", p),
                _ => {
                    c.schema(
                        "A Map state takes exactly one of ItemProcessor and Iterator",
                        at,
                    );
                    return None;
                }
            };
            let distributed = processor
                .pointer("/ProcessorConfig/Mode")
                .and_then(Value::as_str)
                == Some("DISTRIBUTED");
            if m.contains_key("ItemReader") {
                c.schema("ItemReader (reading items from S3) is not supported by wisp: pass the items in the input", &format!("{at}/ItemReader"));
            }
            let processor = machine(
                c,
                processor,
                &format!("{at}/{field}"),
                depth + 1,
                top_jsonata,
            )?;
            let batch = m.get("ItemBatcher").map(|b| {
                (
                    b.get("MaxItemsPerBatch")
                        .and_then(Value::as_u64)
                        .unwrap_or(100_000),
                    b.get("BatchInput").cloned(),
                )
            });
            let percentage = percent(c, m, at);
            if let Some(label) = m.get("Label") {
                let ok = label.as_str().is_some_and(|l| {
                    !l.is_empty()
                        && l.chars().count() <= 40
                        && !l.chars().any(|ch| {
                            ch.is_whitespace()
                                || ch.is_control()
                                || "<>{}[]?*\"#%\\^|~`$&,;:/".contains(ch)
                        })
                });
                if !ok {
                    c.schema(
                        "The value for the field 'Label' must be 1 to 40 characters, without whitespace or any of <>{}[]?*\"#%\\^|~`$&,;:/",
                        &format!("{at}/Label"),
                    );
                }
            }
            let item_selector = if jsonata {
                c.form(m, "ItemSelector", at).map(Shape::Jsonata)
            } else {
                c.template(m, "ItemSelector", at)
                    .or_else(|| c.template(m, "Parameters", at))
                    .map(Shape::Paths)
            };
            Kind::Map(Box::new(MapState {
                processor,
                items_path: c.path_field(m, "ItemsPath", at, false),
                items: c.form(m, "Items", at),
                item_selector,
                max_concurrency: c.seconds(m, "MaxConcurrency", at),
                tolerated_failure_count: c.seconds(m, "ToleratedFailureCount", at),
                tolerated_failure_percentage: percentage,
                batch,
                distributed,
                label: c.string(m, "Label", at),
            }))
        }
        _ => return None,
    };
    let parameters = match &kind {
        // A Map's Parameters are its ItemSelector (the older name).
        Kind::Map(_) => None,
        _ => c.template(m, "Parameters", at),
    };
    Some(State {
        name: name.to_string(),
        next: if end { None } else { next },
        input_path: c.path_field(m, "InputPath", at, false),
        output_path: c.path_field(m, "OutputPath", at, false),
        result_path: c.path_field(m, "ResultPath", at, true),
        parameters,
        result_selector: c.template(m, "ResultSelector", at),
        retry: retriers(c, m, at),
        catch: catchers(c, m, at, jsonata),
        jsonata,
        arguments: c.form(m, "Arguments", at),
        output: c.form(m, "Output", at),
        assign: c.assign(m, at, jsonata),
        kind,
    })
}

/// ToleratedFailurePercentage (0 to 100) or its Path, or an expression.
fn percent(c: &mut Checker, m: &Map<String, Value>, at: &str) -> Option<Percent> {
    const FIELD: &str = "ToleratedFailurePercentage";
    let loc = format!("{at}/{FIELD}");
    if let Some(path) = m.get("ToleratedFailurePercentagePath") {
        return match path.as_str().map(Path::parse_reference) {
            Some(Ok(p)) => Some(Percent::Path(p)),
            _ => {
                c.schema("The value for the field 'ToleratedFailurePercentagePath' must be a reference path", &format!("{loc}Path"));
                None
            }
        };
    }
    match m.get(FIELD)? {
        Value::String(s) if jsonata::expression(s).is_some() => {
            c.form(m, FIELD, at).map(Percent::Expr)
        }
        v => match v.as_f64() {
            Some(p) if (0.0..=100.0).contains(&p) => Some(Percent::Fixed(p)),
            _ => {
                c.schema("ToleratedFailurePercentage is from 0 to 100", &loc);
                None
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(definition: Value) -> Vec<String> {
        match StateMachine::parse(&definition.to_string()) {
            Ok(_) => Vec::new(),
            Err(d) => d.iter().map(|d| d.to_string()).collect(),
        }
    }

    #[test]
    fn a_booking_saga_parses() {
        let d = json!({
            "Comment": "reserve a flight and a hotel, undo on failure",
            "StartAt": "ReserveFlight",
            "States": {
                "ReserveFlight": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                    "Parameters": {"FunctionName": "flight", "Payload.$": "$"},
                    "ResultSelector": {"flight.$": "$.Payload"}, "ResultPath": "$.flight",
                    "Retry": [{"ErrorEquals": ["States.Timeout"], "MaxAttempts": 2, "JitterStrategy": "FULL"}],
                    "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Undo"}],
                    "Next": "Check"},
                "Check": {"Type": "Choice", "Choices": [
                    {"Variable": "$.flight.ok", "BooleanEquals": true, "Next": "Wait"}], "Default": "Undo"},
                "Wait": {"Type": "Wait", "SecondsPath": "$.delay", "Next": "Items"},
                "Items": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
                    "ItemProcessor": {"StartAt": "One", "States": {"One": {"Type": "Pass", "End": true}}},
                    "Next": "Both"},
                "Both": {"Type": "Parallel", "Branches": [
                    {"StartAt": "A", "States": {"A": {"Type": "Succeed"}}},
                    {"StartAt": "B", "States": {"B": {"Type": "Pass", "Result": 1, "End": true}}}],
                    "Next": "Done"},
                "Done": {"Type": "Succeed"},
                "Undo": {"Type": "Fail", "Error": "Booking.Failed", "CausePath": "$.error.Cause"}
            }
        });
        let m = StateMachine::parse(&d.to_string()).unwrap();
        assert_eq!(m.start_at, "ReserveFlight");
        let task = &m.states["ReserveFlight"];
        assert!(task.retry[0].full_jitter && task.retry[0].max_attempts == 2);
        assert_eq!(task.retry[0].backoff_rate, 2.0);
        assert_eq!(task.catch[0].next, "Undo");
        assert!(
            matches!(&m.states["Items"].kind, Kind::Map(map) if map.max_concurrency == Some(Seconds::Fixed(2)))
        );
        assert_eq!(m.states["Done"].next, None);
    }

    #[test]
    fn bad_definitions_get_aws_codes_and_locations() {
        let cases = [
            (
                json!({"States": {"A": {"Type": "Succeed"}}}),
                "SCHEMA_VALIDATION_FAILED: The field 'StartAt' should be non-null at /",
            ),
            (
                json!({"StartAt": "B", "States": {"A": {"Type": "Succeed"}}}),
                "MISSING_TRANSITION_TARGET: Missing 'Next' target: B at /StartAt",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Next": "X"}}}),
                "MISSING_TRANSITION_TARGET: Missing 'Next' target: X at /States/A/Next",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Pass"}}}),
                "The field 'Next' should be non-null (or 'End' true) at /States/A",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true}, "B": {"Type": "Succeed"}}}),
                "UNREACHABLE_STATE: State 'B' is not reachable at /States/B",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Nope"}}}),
                "must be one of Pass",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Foo": 1}}}),
                "Field 'Foo' is not supported at /States/A",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Task", "End": true}}}),
                "The field 'Resource' should be non-null",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Wait", "Seconds": 1, "Timestamp": "2026-01-01T00:00:00Z", "End": true}}}),
                "exactly one of Seconds",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "InputPath": "nope"}}}),
                "at /States/A/InputPath",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "ResultPath": "$.a[*]"}}}),
                "reference path",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Task", "Resource": "x", "End": true,
                "Retry": [{"ErrorEquals": ["States.ALL", "X"]}]}}}),
                "States.ALL must appear alone",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Choice", "Choices": [
                {"Variable": "$.a", "StringEquals": 1, "Next": "A"}]}}}),
                "at /States/A/Choices[0]",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Parameters": {"x.$": "States.Nope()"}}}}),
                "not an intrinsic function",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Map", "End": true, "ItemReader": {},
                "ItemProcessor": {"StartAt": "B", "States": {"B": {"Type": "Succeed"}}}}}}),
                "ItemReader",
            ),
            (
                json!({"StartAt": "A", "QueryLanguage": "JSONata", "States": {"A": {"Type": "Pass", "End": true, "InputPath": "$.a"}}}),
                "The field 'InputPath' is not supported when QueryLanguage is JSONata at /States/A/InputPath",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Output": 1}}}),
                "The field 'Output' is not supported when QueryLanguage is JSONPath",
            ),
            (
                json!({"StartAt": "A", "QueryLanguage": "JSONata", "States": {"A": {"Type": "Pass", "End": true, "QueryLanguage": "JSONPath"}}}),
                "'QueryLanguage' can not be 'JSONPath' if set to 'JSONata' for whole state machine",
            ),
            (
                json!({"StartAt": "A", "QueryLanguage": "JSONata", "States": {"A": {"Type": "Pass", "End": true, "Output": "{% $states.input. %}"}}}),
                "is not valid",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Assign": {"states": 1}}}}),
                "The variable name 'states' is reserved",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "Assign": {"a.b": 1}}}}),
                "is not a valid variable name",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "End": true, "ResultPath": "$x"}}}),
                "must be a path into the state's data",
            ),
            (
                json!({"StartAt": "A", "States": {"A": {"Type": "Pass", "Assign": {"x": 1}, "Next": "P"},
                "P": {"Type": "Parallel", "End": true, "Branches": [{"StartAt": "B", "States": {
                    "B": {"Type": "Pass", "Assign": {"x.$": "$"}, "End": true}}}]}}}),
                "The variable 'x' is set in an outer scope and may not be set in an inner one at /States/P/Branches[0]/States/B",
            ),
            (
                json!({"StartAt": "A", "QueryLanguage": "JSONata", "States": {"A": {"Type": "Task", "Resource": "x",
                "Arguments": {"a": "{% $states.result %}"}, "End": true}}}),
                "Arguments may not use $states.result",
            ),
            (
                json!({"StartAt": "A", "QueryLanguage": "JSONata", "States": {"A": {"Type": "Choice", "Default": "B",
                "Choices": [{"Variable": "$.a", "IsPresent": true, "Next": "B"}]}, "B": {"Type": "Succeed"}}}),
                "Field 'Variable' is not supported when QueryLanguage is JSONata",
            ),
        ];
        for (definition, want) in cases {
            let got = errors(definition.clone());
            assert!(
                got.iter().any(|e| e.contains(want)),
                "{definition}\n want {want}\n got {got:?}"
            );
        }
        let e = StateMachine::parse("not json").unwrap_err();
        assert_eq!(e[0].code, "INVALID_JSON_DESCRIPTION");
        let message = invalid_definition(
            &StateMachine::parse(r#"{"StartAt": "A", "States": {}}"#).unwrap_err(),
        );
        assert!(
            message.starts_with("Invalid State Machine Definition: 'SCHEMA_VALIDATION_FAILED"),
            "{message}"
        );
    }
}
