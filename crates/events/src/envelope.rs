//! What PutEvents makes of an entry (the envelope AWS builds around the
//! caller's detail), and what a target gets of an event: all of it, a
//! constant `Input`, the part an `InputPath` names, or an
//! `InputTransformer`'s template filled from the event.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::model::InputTransformer;

/// The most bytes of all entries of one PutEvents call, by AWS's count.
pub const MAX_ENTRIES_BYTES: usize = 256 * 1024;
/// The most entries in one PutEvents call.
pub const MAX_ENTRIES: usize = 10;

/// One entry of PutEvents, as given.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Entry {
    /// Seconds since the epoch (botocore sends a number) or RFC 3339.
    pub time: Option<Value>,
    pub source: Option<String>,
    #[serde(default)]
    pub resources: Vec<String>,
    pub detail_type: Option<String>,
    pub detail: Option<String>,
    pub event_bus_name: Option<String>,
    pub trace_header: Option<String>,
}

impl Entry {
    /// The entry's size as AWS counts it against the 256 KiB of a call.
    pub fn size(&self) -> usize {
        let len = |s: &Option<String>| s.as_ref().map_or(0, |s| s.len());
        self.time.as_ref().map_or(0, |_| 14)
            + len(&self.source)
            + len(&self.detail_type)
            + len(&self.detail)
            + self.resources.iter().map(|r| r.len()).sum::<usize>()
    }
}

/// Why one entry was refused: PutEvents' per-entry ErrorCode and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryError {
    pub code: &'static str,
    pub message: String,
}

fn invalid(field: &str, reason: &str) -> EntryError {
    EntryError {
        code: "InvalidArgument",
        message: format!("Parameter {field} is not valid. Reason: {reason}"),
    }
}

/// RFC 3339 in UTC to the second, as EventBridge writes `time`.
pub fn rfc3339(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second]Z"
    ))
    .unwrap_or_default()
}

fn entry_time(given: &Value) -> Result<i64, EntryError> {
    let bad = || invalid("Time", "Time must be a timestamp.");
    match given {
        Value::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite() && s.abs() < 1e13)
            .map(|s| (s * 1000.0) as i64)
            .ok_or_else(bad),
        Value::String(s) => {
            let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| bad())?;
            Ok((t.unix_timestamp_nanos() / 1_000_000) as i64)
        }
        _ => Err(bad()),
    }
}

/// The event EventBridge makes of a valid entry.
pub fn build(
    entry: &Entry,
    id: &str,
    account: &str,
    region: &str,
    now_ms: i64,
) -> Result<Value, EntryError> {
    let source = entry
        .source
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("Source", "Source is a required argument."))?;
    let detail_type = entry
        .detail_type
        .as_deref()
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid("DetailType", "DetailType is a required argument."))?;
    let detail = entry
        .detail
        .as_deref()
        .ok_or_else(|| invalid("Detail", "Detail is a required argument."))?;
    let detail: Value = match serde_json::from_str(detail) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            return Err(EntryError {
                code: "MalformedDetail",
                message: "Detail is malformed.".into(),
            })
        }
    };
    if source.starts_with("aws.") {
        return Err(EntryError {
            code: "NotAuthorizedForSourceException",
            message: "Not authorized for the source.".into(),
        });
    }
    let time = match &entry.time {
        Some(t) => entry_time(t)?,
        None => now_ms,
    };
    Ok(json!({
        "version": "0",
        "id": id,
        "detail-type": detail_type,
        "source": source,
        "account": account,
        "time": rfc3339(time),
        "region": region,
        "resources": entry.resources,
        "detail": detail,
    }))
}

/// A path into an event: `$`, `$.a.b`, with `[n]` for array elements.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath(Vec<Step>);

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(usize),
}

impl JsonPath {
    pub fn parse(text: &str) -> Result<JsonPath, String> {
        let rest = text
            .strip_prefix('$')
            .ok_or_else(|| format!("the JSON path `{text}` must start with `$`"))?;
        let mut steps = Vec::new();
        let mut chars = rest.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '.' => {
                    let mut name = String::new();
                    while let Some(&c) = chars.peek() {
                        if c == '.' || c == '[' {
                            break;
                        }
                        name.push(c);
                        chars.next();
                    }
                    if name.is_empty() {
                        return Err(format!("the JSON path `{text}` has an empty field"));
                    }
                    steps.push(Step::Field(name));
                }
                '[' => {
                    let mut digits = String::new();
                    for c in chars.by_ref() {
                        if c == ']' {
                            break;
                        }
                        digits.push(c);
                    }
                    let n = digits
                        .parse()
                        .map_err(|_| format!("the JSON path `{text}` has a bad index"))?;
                    steps.push(Step::Index(n));
                }
                _ => return Err(format!("the JSON path `{text}` is not in dot notation")),
            }
        }
        if text.len() > 256 {
            return Err("a JSON path has at most 256 characters".into());
        }
        Ok(JsonPath(steps))
    }

    pub fn get<'a>(&self, mut value: &'a Value) -> Option<&'a Value> {
        for step in &self.0 {
            value = match step {
                Step::Field(f) => value.get(f)?,
                Step::Index(i) => value.get(i)?,
            };
        }
        Some(value)
    }
}

/// A compiled InputTransformer: the template cut at its placeholders.
#[derive(Debug, Clone)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone)]
enum Part {
    Text(String),
    /// A placeholder; whether it sits inside a JSON string of the template.
    Value {
        source: Source,
        in_string: bool,
    },
}

#[derive(Debug, Clone)]
enum Source {
    Path(JsonPath),
    RuleArn,
    RuleName,
    IngestionTime,
    /// The whole event, as escaped text (`aws.events.event`) or as JSON
    /// (`aws.events.event.json`).
    Event,
    EventJson,
}

/// What a template is filled for: the rule's name and ARN, when the
/// event came in.
pub struct Context<'a> {
    pub rule_name: &'a str,
    pub rule_arn: &'a str,
    pub ingestion_ms: i64,
}

impl Template {
    pub fn compile(t: &InputTransformer) -> Result<Template, String> {
        let empty = BTreeMap::new();
        let paths = t.input_paths_map.as_ref().unwrap_or(&empty);
        if paths.len() > 100 {
            return Err("InputPathsMap has at most 100 entries".into());
        }
        let mut compiled = BTreeMap::new();
        for (name, path) in paths {
            if name.is_empty()
                || name.len() > 256
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(format!(
                    "InputPathsMap key `{name}` must match [A-Za-z0-9_-]+"
                ));
            }
            compiled.insert(name.as_str(), JsonPath::parse(path)?);
        }
        if t.input_template.is_empty() || t.input_template.len() > 8192 {
            return Err("InputTemplate has 1 to 8192 characters".into());
        }
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut in_string = false;
        let mut escaped = false;
        let mut rest = t.input_template.as_str();
        while let Some(c) = rest.chars().next() {
            if c == '<' {
                if let Some(end) = rest.find('>') {
                    let name = &rest[1..end];
                    let source = match name {
                        "aws.events.rule-arn" => Some(Source::RuleArn),
                        "aws.events.rule-name" => Some(Source::RuleName),
                        "aws.events.event.ingestion-time" => Some(Source::IngestionTime),
                        "aws.events.event" => Some(Source::Event),
                        "aws.events.event.json" => Some(Source::EventJson),
                        _ => compiled.get(name).cloned().map(Source::Path),
                    };
                    if let Some(source) = source {
                        parts.push(Part::Text(std::mem::take(&mut text)));
                        parts.push(Part::Value { source, in_string });
                        rest = &rest[end + 1..];
                        continue;
                    }
                }
            }
            // Follow JSON strings, so a placeholder knows whether it is in one.
            if c == '"' && !escaped {
                in_string = !in_string;
            }
            escaped = in_string && c == '\\' && !escaped;
            text.push(c);
            rest = &rest[c.len_utf8()..];
        }
        parts.push(Part::Text(text));
        Ok(Template { parts })
    }

    /// The template filled from `event`. In a JSON string a value goes in
    /// as text (a string without its quotes, anything else as its JSON,
    /// escaped); elsewhere as JSON. A path the event lacks is `null`
    /// (nothing, in a string).
    pub fn render(&self, event: &Value, cx: &Context) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Value { source, in_string } => {
                    let value = match source {
                        Source::Path(p) => p.get(event).cloned().unwrap_or(Value::Null),
                        Source::RuleArn => Value::String(cx.rule_arn.into()),
                        Source::RuleName => Value::String(cx.rule_name.into()),
                        Source::IngestionTime => Value::String(rfc3339(cx.ingestion_ms)),
                        Source::Event => Value::String(event.to_string()),
                        Source::EventJson => event.clone(),
                    };
                    if *in_string {
                        let text = match value {
                            Value::Null => String::new(),
                            Value::String(s) => s,
                            other => other.to_string(),
                        };
                        let quoted = Value::String(text).to_string();
                        out.push_str(&quoted[1..quoted.len() - 1]);
                    } else {
                        out.push_str(&value.to_string());
                    }
                }
            }
        }
        out
    }
}

/// What a target gets of `event`.
pub enum Input {
    Whole,
    Constant(String),
    Path(JsonPath),
    Transformed(Template),
}

impl Input {
    pub fn of(target: &crate::model::Target) -> Result<Input, String> {
        Ok(
            match (&target.input, &target.input_path, &target.input_transformer) {
                (Some(c), _, _) => Input::Constant(c.clone()),
                (_, Some(p), _) => Input::Path(JsonPath::parse(p)?),
                (_, _, Some(t)) => Input::Transformed(Template::compile(t)?),
                _ => Input::Whole,
            },
        )
    }

    pub fn render(&self, event: &Value, cx: &Context) -> String {
        match self {
            Input::Whole => event.to_string(),
            Input::Constant(c) => c.clone(),
            Input::Path(p) => p.get(event).unwrap_or(&Value::Null).to_string(),
            Input::Transformed(t) => t.render(event, cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Value {
        json!({
            "id": "e1", "source": "shop", "detail-type": "Order Placed",
            "detail": {"order": {"id": 42, "lines": ["a", "b"]}, "who": "Zoë \"Z\"", "n": 3.5, "ok": true}
        })
    }

    fn render(paths: &[(&str, &str)], template: &str) -> String {
        let t = InputTransformer {
            input_paths_map: Some(
                paths
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            input_template: template.into(),
        };
        let cx = Context {
            rule_name: "r",
            rule_arn: "arn:aws:events:us-east-1:000000000000:rule/r",
            ingestion_ms: 0,
        };
        Template::compile(&t).unwrap().render(&event(), &cx)
    }

    #[test]
    fn values_go_in_as_json_outside_strings_and_as_text_inside() {
        let paths = [
            ("who", "$.detail.who"),
            ("order", "$.detail.order"),
            ("n", "$.detail.n"),
            ("ok", "$.detail.ok"),
            ("first", "$.detail.order.lines[0]"),
        ];
        assert_eq!(
            render(
                &paths,
                r#"{"who": <who>, "order": <order>, "n": <n>, "ok": <ok>}"#
            ),
            r#"{"who": "Zoë \"Z\"", "order": {"id":42,"lines":["a","b"]}, "n": 3.5, "ok": true}"#
        );
        assert_eq!(
            render(
                &paths,
                r#"{"text": "<who> ordered <order> (<n>, <ok>), first <first>"}"#
            ),
            r#"{"text": "Zoë \"Z\" ordered {\"id\":42,\"lines\":[\"a\",\"b\"]} (3.5, true), first a"}"#
        );
        // A plain string template, as AWS's examples write them.
        assert_eq!(
            render(&paths, r#""<first> for <who>""#),
            r#""a for Zoë \"Z\"""#
        );
        // Missing paths; unknown placeholders stay as text; an escaped
        // quote does not end the string.
        assert_eq!(
            render(
                &[("x", "$.nope")],
                r#"{"a": <x>, "b": "<x>", "c": "\"<x>\" <y>"}"#
            ),
            r#"{"a": null, "b": "", "c": "\"\" <y>"}"#
        );
        assert_eq!(
            render(
                &[],
                r#"{"rule": "<aws.events.rule-name>", "t": <aws.events.event.ingestion-time>}"#
            ),
            r#"{"rule": "r", "t": "1970-01-01T00:00:00Z"}"#
        );
        assert_eq!(
            render(&[], r#"{"e": <aws.events.event.json>}"#),
            format!(r#"{{"e": {}}}"#, event())
        );
    }

    #[test]
    fn bad_transformers_are_refused() {
        let compile = |paths: &[(&str, &str)], template: &str| {
            Template::compile(&InputTransformer {
                input_paths_map: Some(
                    paths
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                input_template: template.into(),
            })
            .map(|_| ())
        };
        assert!(compile(&[("a", "detail")], "<a>").is_err());
        assert!(compile(&[("a.b", "$.x")], "<a.b>").is_err());
        assert!(compile(&[("a", "$..x")], "<a>").is_err());
        assert!(compile(&[], "").is_err());
        assert!(compile(&[("a", "$.x[0]")], "<a>").is_ok());
    }

    #[test]
    fn entries_become_envelopes_or_entry_errors() {
        let entry = Entry {
            source: Some("shop".into()),
            detail_type: Some("Order Placed".into()),
            detail: Some(r#"{"id": 1}"#.into()),
            resources: vec!["arn:x".into()],
            time: Some(json!(1_700_000_000)),
            ..Default::default()
        };
        let e = build(&entry, "id-1", "000000000000", "us-east-1", 0).unwrap();
        assert_eq!(e["time"], "2023-11-14T22:13:20Z");
        assert_eq!(e["detail"]["id"], 1);
        assert_eq!(e["detail-type"], "Order Placed");
        assert_eq!(e["version"], "0");
        let refused = |f: fn(&mut Entry)| {
            let mut e = entry.clone();
            f(&mut e);
            build(&e, "x", "a", "r", 0).unwrap_err().code
        };
        assert_eq!(refused(|e| e.source = None), "InvalidArgument");
        assert_eq!(refused(|e| e.detail_type = None), "InvalidArgument");
        assert_eq!(
            refused(|e| e.detail = Some("[1]".into())),
            "MalformedDetail"
        );
        assert_eq!(refused(|e| e.detail = Some("{".into())), "MalformedDetail");
        assert_eq!(
            refused(|e| e.source = Some("aws.s3".into())),
            "NotAuthorizedForSourceException"
        );
        assert_eq!(
            refused(|e| e.time = Some(json!("yesterday"))),
            "InvalidArgument"
        );
        assert_eq!(entry.size(), 14 + 4 + 12 + 9 + 5);
    }
}
