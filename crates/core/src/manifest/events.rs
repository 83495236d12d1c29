//! `[bus.NAME]`, `[[rule]]` and `[[schedule]]`: event buses, the rules
//! that route their events (or fire on a schedule) to functions, queues
//! and other buses, and EventBridge Scheduler schedules.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::ManifestError;
use crate::pattern::Pattern;
use crate::schedule::{time_zone, Expression};

type Locate<'a> = &'a dyn Fn(Range<usize>, String, Option<String>) -> ManifestError;

/// A bus as the manifest declares it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestBus {
    pub name: String,
    pub description: Option<String>,
}

/// Where a rule's or a schedule's target delivers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetRef {
    Function(String),
    Queue(String),
    Bus(String),
}

impl TargetRef {
    pub fn name(&self) -> &str {
        match self {
            TargetRef::Function(n) | TargetRef::Queue(n) | TargetRef::Bus(n) => n,
        }
    }
}

/// What a failed delivery is retried with and where it goes after.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ManifestRetry {
    pub attempts: Option<u32>,
    pub max_age_secs: Option<u32>,
    /// A declared queue.
    pub dead_letter: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestTarget {
    pub id: String,
    pub to: TargetRef,
    /// Constant JSON input.
    pub input: Option<String>,
    pub input_path: Option<String>,
    /// InputPathsMap and InputTemplate.
    pub transformer: Option<(BTreeMap<String, String>, String)>,
    pub retry: ManifestRetry,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestRule {
    pub bus: String,
    pub name: String,
    /// The event pattern, as JSON text.
    pub pattern: Option<String>,
    pub schedule: Option<String>,
    pub description: Option<String>,
    pub enabled: bool,
    pub targets: Vec<ManifestTarget>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestSchedule {
    pub name: String,
    pub expression: String,
    pub timezone: Option<String>,
    /// The flexible window, in minutes (`None`: off).
    pub window_minutes: Option<u32>,
    pub to: TargetRef,
    pub input: Option<String>,
    /// A bus target's event: detail-type and source.
    pub detail_type: Option<String>,
    pub source: Option<String>,
    pub enabled: bool,
    pub retry: ManifestRetry,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBus {
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    bus: Option<Spanned<String>>,
    name: Spanned<String>,
    pattern: Option<Spanned<toml::Value>>,
    schedule: Option<Spanned<String>>,
    description: Option<String>,
    enabled: Option<bool>,
    #[serde(default)]
    targets: Vec<Spanned<RawTarget>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    id: Option<String>,
    function: Option<String>,
    queue: Option<String>,
    bus: Option<String>,
    input: Option<toml::Value>,
    input_path: Option<String>,
    transformer: Option<RawTransformer>,
    retry: Option<RawRetry>,
    dead_letter: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransformer {
    #[serde(default)]
    paths: BTreeMap<String, String>,
    template: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    attempts: Option<u32>,
    max_age: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSchedule {
    name: Option<Spanned<String>>,
    expression: Spanned<String>,
    timezone: Option<Spanned<String>>,
    window: Option<Spanned<String>>,
    function: Option<String>,
    queue: Option<String>,
    bus: Option<String>,
    input: Option<toml::Value>,
    detail_type: Option<String>,
    source: Option<String>,
    enabled: Option<bool>,
    retry: Option<RawRetry>,
    dead_letter: Option<String>,
}

impl RawRule {
    pub(super) fn name_span(&self) -> Range<usize> {
        self.name.span()
    }
}

impl RawSchedule {
    pub(super) fn expression_span(&self) -> Range<usize> {
        self.expression.span()
    }
}

/// What is declared, for checking what targets name.
pub(super) struct Declared<'a> {
    pub functions: &'a [String],
    pub queues: &'a [String],
    pub buses: &'a [String],
}

impl Declared<'_> {
    fn target(
        &self,
        function: &Option<String>,
        queue: &Option<String>,
        bus: &Option<String>,
    ) -> Result<TargetRef, (String, Option<String>)> {
        let to = match (function, queue, bus) {
            (Some(f), None, None) => TargetRef::Function(f.clone()),
            (None, Some(q), None) => TargetRef::Queue(q.clone()),
            (None, None, Some(b)) => TargetRef::Bus(b.clone()),
            _ => {
                return Err((
                    "a target names exactly one of `function`, `queue` or `bus`".into(),
                    None,
                ))
            }
        };
        let (known, table) = match &to {
            TargetRef::Function(f) => (self.functions.contains(f), format!("[function.{f}]")),
            TargetRef::Queue(q) => (self.queues.contains(q), format!("[queue.{q}]")),
            TargetRef::Bus(b) => (
                b == "default" || self.buses.contains(b),
                format!("[bus.{b}]"),
            ),
        };
        if !known {
            return Err((
                format!("the target `{}` is not declared", to.name()),
                Some(format!("declare it: {table}")),
            ));
        }
        Ok(to)
    }

    fn dead_letter(&self, q: &Option<String>) -> Result<Option<String>, (String, Option<String>)> {
        match q {
            Some(q) if !self.queues.contains(q) => Err((
                format!("dead_letter names an undeclared queue `{q}`"),
                Some(format!("declare it: [queue.{q}]")),
            )),
            other => Ok(other.clone()),
        }
    }
}

fn check_name(what: &str, name: &str, max: usize) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= max
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
    match ok {
        true => Ok(()),
        false => Err(format!(
            "{what} `{name}`: names are 1 to {max} of A-Z, a-z, 0-9, ., - and _"
        )),
    }
}

pub(super) fn bus(
    name: &str,
    b: RawBus,
    span: Range<usize>,
    locate: Locate<'_>,
) -> Result<ManifestBus, ManifestError> {
    let ok = name != "default"
        && !name.is_empty()
        && name.len() <= 256
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c));
    if !ok {
        return Err(locate(
            span,
            format!("bus `{name}`: names are 1 to 256 of A-Z, a-z, 0-9, ., -, _ and /, and not `default`"),
            Some("the default bus always exists: use `bus = \"default\"` in a rule".into()),
        ));
    }
    Ok(ManifestBus {
        name: name.to_string(),
        description: b.description,
    })
}

/// A pattern or input given as TOML (a table) or JSON (text): as JSON text.
fn json_of(v: &toml::Value) -> Result<serde_json::Value, String> {
    match v {
        toml::Value::String(s) => serde_json::from_str(s).map_err(|e| format!("not JSON: {e}")),
        other => serde_json::to_value(other).map_err(|e| e.to_string()),
    }
}

fn retry(
    r: Option<&RawRetry>,
    dead_letter: &Option<String>,
    declared: &Declared<'_>,
) -> Result<ManifestRetry, (String, Option<String>)> {
    let mut out = ManifestRetry {
        dead_letter: declared.dead_letter(dead_letter)?,
        ..Default::default()
    };
    if let Some(r) = r {
        if let Some(a) = r.attempts {
            if a > 185 {
                return Err((format!("retry attempts {a} must be from 0 to 185"), None));
            }
            out.attempts = Some(a);
        }
        if let Some(age) = &r.max_age {
            let secs = crate::duration::parse(age)
                .map_err(|m| (m, None))?
                .as_secs();
            if !(60..=86_400).contains(&secs) {
                return Err((
                    format!("retry max_age `{age}` must be from 1m to 24h"),
                    None,
                ));
            }
            out.max_age_secs = Some(secs as u32);
        }
    }
    Ok(out)
}

fn target(
    t: RawTarget,
    declared: &Declared<'_>,
) -> Result<ManifestTarget, (String, Option<String>)> {
    let to = declared.target(&t.function, &t.queue, &t.bus)?;
    let given = [
        t.input.is_some(),
        t.input_path.is_some(),
        t.transformer.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err((
            "a target takes one of `input`, `input_path` or `transformer`".into(),
            None,
        ));
    }
    let input = match &t.input {
        Some(v) => Some(
            json_of(v)
                .map_err(|e| (format!("input: {e}"), None))?
                .to_string(),
        ),
        None => None,
    };
    let kind = match &to {
        TargetRef::Function(_) => "function",
        TargetRef::Queue(_) => "queue",
        TargetRef::Bus(_) => "bus",
    };
    let id = t.id.unwrap_or_else(|| {
        format!("{kind}-{}", to.name())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "._-".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .take(64)
            .collect()
    });
    check_name("target id", &id, 64).map_err(|m| (m, None))?;
    Ok(ManifestTarget {
        id,
        retry: retry(t.retry.as_ref(), &t.dead_letter, declared)?,
        to,
        input,
        input_path: t.input_path,
        transformer: t.transformer.map(|x| (x.paths, x.template)),
    })
}

pub(super) fn rule(
    r: RawRule,
    declared: &Declared<'_>,
    locate: Locate<'_>,
) -> Result<ManifestRule, ManifestError> {
    let name = r.name.get_ref().clone();
    check_name("rule", &name, 64).map_err(|m| locate(r.name.span(), m, None))?;
    let bus = r
        .bus
        .as_ref()
        .map_or_else(|| "default".to_string(), |b| b.get_ref().clone());
    if let Some(b) = &r.bus {
        if bus != "default" && !declared.buses.contains(&bus) {
            return Err(locate(
                b.span(),
                format!("rule `{name}` is on an undeclared bus `{bus}`"),
                Some(format!("declare it: [bus.{bus}]")),
            ));
        }
    }
    let pattern = match &r.pattern {
        Some(p) => {
            let json = json_of(p.get_ref())
                .map_err(|e| locate(p.span(), format!("pattern: {e}"), None))?;
            Pattern::from_value(&json).map_err(|e| {
                locate(
                    p.span(),
                    format!("pattern: {}", e.0),
                    Some("an EventBridge pattern, e.g. `pattern = { source = [\"shop\"] }`".into()),
                )
            })?;
            Some(json.to_string())
        }
        None => None,
    };
    let schedule = match &r.schedule {
        Some(s) => {
            Expression::parse(s.get_ref(), false)
                .map_err(|e| locate(s.span(), format!("schedule `{}`: {e}", s.get_ref()), None))?;
            if bus != "default" {
                return Err(locate(
                    s.span(),
                    format!("rule `{name}`: a schedule is only for rules on the default bus"),
                    None,
                ));
            }
            Some(s.get_ref().clone())
        }
        None => None,
    };
    if pattern.is_none() && schedule.is_none() {
        return Err(locate(
            r.name.span(),
            format!("rule `{name}` needs a `pattern` or a `schedule`"),
            None,
        ));
    }
    if r.targets.len() > 5 {
        return Err(locate(
            r.name.span(),
            format!("rule `{name}` has {} targets; at most 5", r.targets.len()),
            None,
        ));
    }
    let mut targets = Vec::new();
    for t in r.targets {
        let span = t.span();
        let t =
            target(t.into_inner(), declared).map_err(|(m, help)| locate(span.clone(), m, help))?;
        if targets.iter().any(|have: &ManifestTarget| have.id == t.id) {
            return Err(locate(
                span,
                format!("two targets of rule `{name}` have the id `{}`", t.id),
                Some("give one an `id`".into()),
            ));
        }
        targets.push(t);
    }
    Ok(ManifestRule {
        bus,
        name,
        pattern,
        schedule,
        description: r.description,
        enabled: r.enabled.unwrap_or(true),
        targets,
    })
}

pub(super) fn schedule(
    s: RawSchedule,
    index: usize,
    declared: &Declared<'_>,
    locate: Locate<'_>,
) -> Result<ManifestSchedule, ManifestError> {
    let expr = s.expression.get_ref().clone();
    let span = s.expression.span();
    Expression::parse(&expr, true).map_err(|e| {
        locate(
            span.clone(),
            format!("schedule `{expr}`: {e}"),
            Some("rate(5 minutes), cron(0 3 * * ? *) or at(2026-12-01T00:00:00)".into()),
        )
    })?;
    let to = declared
        .target(&s.function, &s.queue, &s.bus)
        .map_err(|(m, help)| locate(span.clone(), m, help))?;
    let name = match &s.name {
        Some(n) => {
            check_name("schedule", n.get_ref(), 64).map_err(|m| locate(n.span(), m, None))?;
            n.get_ref().clone()
        }
        None => {
            let stem: String = to
                .name()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || "._-".contains(c) {
                        c
                    } else {
                        '-'
                    }
                })
                .take(56)
                .collect();
            format!("{stem}-{}", index + 1)
        }
    };
    if let Some(tz) = &s.timezone {
        time_zone(Some(tz.get_ref())).map_err(|e| {
            locate(
                tz.span(),
                e,
                Some("an IANA zone, e.g. Europe/Berlin".into()),
            )
        })?;
    }
    let window_minutes = match &s.window {
        Some(w) => {
            let secs = crate::duration::parse(w.get_ref())
                .map_err(|m| locate(w.span(), m, None))?
                .as_secs();
            if secs % 60 != 0 || !(60..=86_400).contains(&secs) {
                return Err(locate(
                    w.span(),
                    format!(
                        "window `{}` must be whole minutes from 1m to 24h",
                        w.get_ref()
                    ),
                    None,
                ));
            }
            Some((secs / 60) as u32)
        }
        None => None,
    };
    let input = match &s.input {
        Some(v) => Some(
            json_of(v)
                .map_err(|e| locate(span.clone(), format!("input: {e}"), None))?
                .to_string(),
        ),
        None => None,
    };
    if matches!(to, TargetRef::Bus(_)) && (s.detail_type.is_none() || s.source.is_none()) {
        return Err(locate(
            span,
            format!("schedule `{name}` sends to a bus: give it `detail_type` and `source`"),
            None,
        ));
    }
    let retry = retry(s.retry.as_ref(), &s.dead_letter, declared)
        .map_err(|(m, help)| locate(span.clone(), m, help))?;
    Ok(ManifestSchedule {
        name,
        expression: expr,
        timezone: s.timezone.map(|t| t.into_inner()),
        window_minutes,
        to,
        input,
        detail_type: s.detail_type,
        source: s.source,
        enabled: s.enabled.unwrap_or(true),
        retry,
    })
}
