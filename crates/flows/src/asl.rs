//! A state machine's definition: parsed from its JSON into typed states,
//! with the checks CreateStateMachine and ValidateStateMachineDefinition
//! make, each a diagnostic with AWS's code, message and location
//! (`SCHEMA_VALIDATION_FAILED: The field 'Next' should be non-null at
//! /States/A`). Paths, templates and Choice rules are compiled here, so a
//! running execution never meets a definition error.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use crate::choice::Rule;
use crate::path::Path;
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
        choices: Vec<(Rule, String)>,
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
    pub item_selector: Option<Template>,
    pub max_concurrency: Option<Seconds>,
    pub tolerated_failure_count: Option<Seconds>,
    pub tolerated_failure_percentage: Option<f64>,
    /// ItemBatcher: MaxItemsPerBatch and BatchInput.
    pub batch: Option<(u64, Option<Value>)>,
    pub distributed: bool,
    pub label: Option<String>,
}

/// A number given as a value or read from a path (`…Path` fields).
#[derive(Debug, Clone, PartialEq)]
pub enum Seconds {
    Fixed(u64),
    Path(Path),
}

/// A text given as a value or read from a path (Fail's Error and Cause).
#[derive(Debug, Clone, PartialEq)]
pub enum Text {
    Fixed(String),
    Path(Path),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Wait {
    Seconds(Seconds),
    Timestamp(String),
    TimestampPath(Path),
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
            (Some(_), None) => self.string(m, field, at).map(Text::Fixed),
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

/// The fields each state type takes (besides Type and Comment).
fn allowed(kind: &str) -> &'static [&'static str] {
    const IO: [&str; 2] = ["InputPath", "OutputPath"];
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
        ],
        "Choice" => &["InputPath", "OutputPath", "Choices", "Default", "Assign"],
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
        if v.get("QueryLanguage").and_then(Value::as_str) == Some("JSONata") {
            return Err(diag(
                SCHEMA,
                "QueryLanguage JSONata is not supported by wisp yet; use JSONPath",
            ));
        }
        let mut checker = Checker { found: Vec::new() };
        let machine = machine(&mut checker, &v, "", 0);
        match (machine, checker.found.is_empty()) {
            (Some(m), true) => Ok(m),
            _ => Err(checker.found),
        }
    }
}

fn machine(c: &mut Checker, v: &Value, at: &str, depth: usize) -> Option<StateMachine> {
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
        if let Some(s) = state(c, name, sv, &loc, depth) {
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
            for (i, (_, n)) in choices.iter().enumerate() {
                targets.push((n, format!("{loc}/Choices[{i}]/Next")));
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

fn catchers(c: &mut Checker, m: &Map<String, Value>, at: &str) -> Vec<Catcher> {
    let mut out = Vec::new();
    for (loc, r, last) in objects(c, m, "Catch", "catcher", at) {
        let error_equals = error_equals(c, r, &loc, last);
        let Some(next) = c.string(r, "Next", &loc) else {
            c.schema("The field 'Next' should be non-null", &loc);
            continue;
        };
        out.push(Catcher {
            error_equals,
            next,
            result_path: c.path_field(r, "ResultPath", &loc, true),
        });
    }
    out
}

fn state(c: &mut Checker, name: &str, v: &Value, at: &str, depth: usize) -> Option<State> {
    let Some(m) = v.as_object() else {
        c.schema("A state is a JSON object", at);
        return None;
    };
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
        if key != "Type" && key != "Comment" && !fields.contains(&key.as_str()) {
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
                        let next = rule.get("Next").and_then(Value::as_str);
                        let Some(next) = next else {
                            c.schema("The field 'Next' should be non-null", &loc);
                            continue;
                        };
                        match Rule::compile(rule, true) {
                            Ok(r) => choices.push((r, next.to_string())),
                            Err(e) => c.schema(e, &loc),
                        }
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
                        if let Some(b) = machine(c, b, &format!("{at}/Branches[{i}]"), depth + 1) {
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
            let processor = machine(c, processor, &format!("{at}/{field}"), depth + 1)?;
            let batch = m.get("ItemBatcher").map(|b| {
                (
                    b.get("MaxItemsPerBatch")
                        .and_then(Value::as_u64)
                        .unwrap_or(100_000),
                    b.get("BatchInput").cloned(),
                )
            });
            let percentage = m.get("ToleratedFailurePercentage").and_then(Value::as_f64);
            if percentage.is_some_and(|p| !(0.0..=100.0).contains(&p)) {
                c.schema(
                    "ToleratedFailurePercentage is from 0 to 100",
                    &format!("{at}/ToleratedFailurePercentage"),
                );
            }
            Kind::Map(Box::new(MapState {
                processor,
                items_path: c.path_field(m, "ItemsPath", at, false),
                item_selector: c
                    .template(m, "ItemSelector", at)
                    .or_else(|| c.template(m, "Parameters", at)),
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
        catch: catchers(c, m, at),
        kind,
    })
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
                json!({"StartAt": "A", "QueryLanguage": "JSONata", "States": {"A": {"Type": "Succeed"}}}),
                "JSONata",
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
