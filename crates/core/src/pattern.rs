//! EventBridge's event pattern language, one matcher for every user of it:
//! event source mapping filters, bus rules and archives. A pattern is
//! compiled once ([`Pattern::parse`], which refuses what EventBridge
//! refuses) and then matched against JSON events; only case-insensitive
//! and wildcard filters allocate as they compare (a lowercased copy, the
//! value's characters).
//!
//! What a pattern says, as the EventBridge user guide ("Event patterns")
//! gives it: each field of the pattern names a field of the event; an
//! object descends, an array lists what the event's value may be (any of
//! them), and all fields must match (`$or` lists alternatives). A value in
//! the list is a literal (string, number, boolean, null) or one of the
//! filters `prefix`, `suffix`, `wildcard`, `equals-ignore-case`,
//! `anything-but`, `numeric`, `exists` and `cidr`. An event value that is an
//! array matches when any element does; a field the event lacks matches
//! only `{"exists": false}`.

use std::net::IpAddr;

use serde_json::{Map, Value};

/// Most bytes of a pattern's JSON (EventBridge: 4096 for a rule's pattern;
/// filter criteria allow more, in up to 5 patterns of 4096 each).
pub const MAX_PATTERN_BYTES: usize = 4096;
/// Deepest nesting of a pattern, and most filters in one.
const MAX_DEPTH: usize = 32;
const MAX_FILTERS: usize = 1000;

/// A compiled event pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Pattern {
    root: Node,
}

/// Why a pattern was refused; shown after EventBridge's own words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Event pattern is not valid. Reason: {0}")]
pub struct PatternError(pub String);

/// Fields that must all match, and groups of alternatives (`$or`) of which
/// one in each must.
#[derive(Debug, Clone, PartialEq, Default)]
struct Node {
    fields: Vec<(String, Field)>,
    any_of: Vec<Vec<Node>>,
}

#[derive(Debug, Clone, PartialEq)]
enum Field {
    /// The event's value must match one of these.
    Leaf(Vec<Filter>),
    /// The event's value is an object matched by this node.
    Object(Node),
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    /// A literal string, boolean or null, equal as JSON.
    Exact(Value),
    /// A literal number, equal as a number (`300` is `3e2`).
    Number(f64),
    Prefix(Text),
    Suffix(Text),
    Wildcard(String),
    EqualsIgnoreCase(String),
    AnythingBut(Vec<Filter>),
    Numeric(Vec<(Cmp, f64)>),
    Exists(bool),
    Cidr(IpAddr, u8),
}

/// A prefix or suffix, compared as is or ignoring case.
#[derive(Debug, Clone, PartialEq)]
struct Text {
    text: String,
    ignore_case: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Cmp {
    Eq,
    Lt,
    Le,
    Gt,
    Ge,
}

fn bad(reason: impl Into<String>) -> PatternError {
    PatternError(reason.into())
}

impl Pattern {
    /// Compiles a pattern from its JSON text.
    pub fn parse(text: &str) -> Result<Pattern, PatternError> {
        if text.len() > MAX_PATTERN_BYTES {
            return Err(bad(format!(
                "the pattern is {} bytes; the limit is {MAX_PATTERN_BYTES}",
                text.len()
            )));
        }
        let value: Value =
            serde_json::from_str(text).map_err(|e| bad(format!("the pattern is not JSON: {e}")))?;
        Pattern::from_value(&value)
    }

    /// Compiles a pattern already read as JSON.
    pub fn from_value(value: &Value) -> Result<Pattern, PatternError> {
        let Value::Object(map) = value else {
            return Err(bad("the pattern must be a JSON object"));
        };
        if map.is_empty() {
            return Err(bad("the pattern must have at least one field"));
        }
        let mut budget = MAX_FILTERS;
        Ok(Pattern {
            root: node(map, 0, &mut budget)?,
        })
    }

    /// Whether `event` matches.
    pub fn matches(&self, event: &Value) -> bool {
        self.root.matches(event)
    }

    /// What a top-level `field` of a matching event must be (or, if an
    /// array, hold) when the pattern allows only exact strings and
    /// case-sensitive prefixes for it: what an index of many patterns
    /// keys on.
    pub fn required(&self, field: &str) -> Option<Vec<Required<'_>>> {
        let Some((_, Field::Leaf(filters))) = self.root.fields.iter().find(|(k, _)| k == field)
        else {
            return None;
        };
        filters
            .iter()
            .map(|f| match f {
                Filter::Exact(Value::String(s)) => Some(Required::Exact(s)),
                Filter::Prefix(t) if !t.ignore_case => Some(Required::Prefix(&t.text)),
                _ => None,
            })
            .collect()
    }
}

/// One of the values a pattern requires of a field ([`Pattern::required`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Required<'a> {
    Exact(&'a str),
    Prefix(&'a str),
}

fn node(map: &Map<String, Value>, depth: usize, budget: &mut usize) -> Result<Node, PatternError> {
    if depth > MAX_DEPTH {
        return Err(bad(format!(
            "the pattern nests deeper than {MAX_DEPTH} levels"
        )));
    }
    let mut out = Node::default();
    for (key, value) in map {
        if key == "$or" {
            let Value::Array(alternatives) = value else {
                return Err(bad("\"$or\" takes an array of patterns"));
            };
            if alternatives.len() < 2 {
                return Err(bad("\"$or\" needs at least two patterns"));
            }
            let mut group = Vec::with_capacity(alternatives.len());
            for alt in alternatives {
                let Value::Object(m) = alt else {
                    return Err(bad("each pattern in \"$or\" must be an object"));
                };
                if m.is_empty() {
                    return Err(bad("a pattern in \"$or\" has no fields"));
                }
                group.push(node(m, depth + 1, budget)?);
            }
            out.any_of.push(group);
            continue;
        }
        let field = match value {
            Value::Object(m) => {
                if m.is_empty() {
                    return Err(bad(format!("\"{key}\" is an empty object")));
                }
                Field::Object(node(m, depth + 1, budget)?)
            }
            Value::Array(items) => {
                if items.is_empty() {
                    return Err(bad(format!("Empty arrays are not allowed (at \"{key}\")")));
                }
                let mut filters = Vec::with_capacity(items.len());
                for item in items {
                    *budget = budget.checked_sub(1).ok_or_else(|| {
                        bad(format!("more than {MAX_FILTERS} values in the pattern"))
                    })?;
                    filters.push(filter(item)?);
                }
                Field::Leaf(filters)
            }
            other => {
                return Err(bad(format!(
                    "\"{key}\" must be an object or an array, not {}",
                    json_kind(other)
                )))
            }
        };
        out.fields.push((key.clone(), field));
    }
    Ok(out)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn filter(item: &Value) -> Result<Filter, PatternError> {
    match item {
        Value::Number(n) => Ok(Filter::Number(number(n)?)),
        Value::String(_) | Value::Bool(_) | Value::Null => Ok(Filter::Exact(item.clone())),
        Value::Array(_) => Err(bad("a value in a pattern's array cannot be an array")),
        Value::Object(m) => {
            let mut entries = m.iter();
            let (Some((name, arg)), None) = (entries.next(), entries.next()) else {
                return Err(bad(
                    "a filter object has exactly one key, such as \"prefix\"",
                ));
            };
            match name.as_str() {
                "prefix" => Ok(Filter::Prefix(text_arg("prefix", arg)?)),
                "suffix" => Ok(Filter::Suffix(text_arg("suffix", arg)?)),
                "equals-ignore-case" => Ok(Filter::EqualsIgnoreCase(
                    string_arg(name, arg)?.to_lowercase(),
                )),
                "wildcard" => Ok(Filter::Wildcard(wildcard_arg(arg)?)),
                "exists" => match arg {
                    Value::Bool(b) => Ok(Filter::Exists(*b)),
                    _ => Err(bad("exists match pattern must be either true or false.")),
                },
                "numeric" => numeric(arg),
                "cidr" => cidr(arg),
                "anything-but" => anything_but(arg),
                other => Err(bad(format!("Unrecognized match type {other}"))),
            }
        }
    }
}

fn number(n: &serde_json::Number) -> Result<f64, PatternError> {
    n.as_f64()
        .filter(|f| f.is_finite())
        .ok_or_else(|| bad(format!("{n} is not a number EventBridge can compare")))
}

fn string_arg<'a>(name: &str, arg: &'a Value) -> Result<&'a str, PatternError> {
    arg.as_str()
        .ok_or_else(|| bad(format!("{name} match pattern must be a string")))
}

/// `"text"` or `{"equals-ignore-case": "text"}`.
fn text_arg(name: &str, arg: &Value) -> Result<Text, PatternError> {
    if let Some(m) = arg.as_object() {
        if let (1, Some(v)) = (m.len(), m.get("equals-ignore-case")) {
            return Ok(Text {
                text: string_arg(name, v)?.to_lowercase(),
                ignore_case: true,
            });
        }
    }
    Ok(Text {
        text: string_arg(name, arg)?.to_string(),
        ignore_case: false,
    })
}

fn wildcard_arg(arg: &Value) -> Result<String, PatternError> {
    let w = string_arg("wildcard", arg)?;
    if w.contains("**") {
        return Err(bad(
            "Consecutive wildcard characters at pos are not allowed",
        ));
    }
    Ok(w.to_string())
}

fn numeric(arg: &Value) -> Result<Filter, PatternError> {
    let Some(items) = arg
        .as_array()
        .filter(|a| !a.is_empty() && a.len() % 2 == 0 && a.len() <= 4)
    else {
        return Err(bad("numeric takes one or two pairs of an operator and a number, such as [\">\", 0, \"<=\", 5]"));
    };
    let mut out = Vec::new();
    for pair in items.chunks(2) {
        let cmp = match pair[0].as_str() {
            Some("=") => Cmp::Eq,
            Some("<") => Cmp::Lt,
            Some("<=") => Cmp::Le,
            Some(">") => Cmp::Gt,
            Some(">=") => Cmp::Ge,
            _ => {
                return Err(bad(format!(
                    "Unrecognized numeric range operator: {}",
                    pair[0]
                )))
            }
        };
        let Value::Number(n) = &pair[1] else {
            return Err(bad(format!("Value of {} must be numeric", pair[0])));
        };
        out.push((cmp, number(n)?));
    }
    if let [(first, _), (second, _)] = out.as_slice() {
        let lower = matches!(first, Cmp::Gt | Cmp::Ge);
        let upper = matches!(second, Cmp::Lt | Cmp::Le);
        if !lower || !upper || out[0].1 >= out[1].1 {
            return Err(bad("Bad numeric range: a range is a lower bound (> or >=) then a greater upper bound (< or <=)"));
        }
    }
    Ok(Filter::Numeric(out))
}

fn cidr(arg: &Value) -> Result<Filter, PatternError> {
    let text = string_arg("cidr", arg)?;
    let invalid = || bad(format!("Nonstandard IP address: {text}"));
    let (ip, bits) = text.split_once('/').ok_or_else(invalid)?;
    let ip: IpAddr = ip.parse().map_err(|_| invalid())?;
    let bits: u8 = bits.parse().map_err(|_| invalid())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if bits > max {
        return Err(invalid());
    }
    Ok(Filter::Cidr(ip, bits))
}

fn anything_but(arg: &Value) -> Result<Filter, PatternError> {
    let inner = match arg {
        Value::String(_) | Value::Number(_) | Value::Bool(_) | Value::Null => vec![filter(arg)?],
        Value::Array(items) => {
            if items.is_empty() {
                return Err(bad("Empty arrays are not allowed (in anything-but)"));
            }
            let strings = items.iter().all(Value::is_string);
            let numbers = items.iter().all(Value::is_number);
            if !strings && !numbers {
                return Err(bad(
                    "Inside anything but list, start|null|boolean is not supported.",
                ));
            }
            items.iter().map(filter).collect::<Result<_, _>>()?
        }
        Value::Object(m) => {
            let mut entries = m.iter();
            let (Some((name, v)), None) = (entries.next(), entries.next()) else {
                return Err(bad("anything-but takes one filter"));
            };
            let strings = |v: &Value| -> Result<Vec<String>, PatternError> {
                match v {
                    Value::String(s) => Ok(vec![s.clone()]),
                    Value::Array(a) if !a.is_empty() => a
                        .iter()
                        .map(|s| string_arg(name, s).map(str::to_string))
                        .collect(),
                    _ => Err(bad(format!("{name} match pattern must be a string"))),
                }
            };
            match name.as_str() {
                "prefix" => vec![Filter::Prefix(text_arg("prefix", v)?)],
                "suffix" => vec![Filter::Suffix(text_arg("suffix", v)?)],
                "equals-ignore-case" => strings(v)?
                    .into_iter()
                    .map(|s| Filter::EqualsIgnoreCase(s.to_lowercase()))
                    .collect(),
                "wildcard" => strings(v)?
                    .iter()
                    .map(|s| wildcard_arg(&Value::String(s.clone())).map(Filter::Wildcard))
                    .collect::<Result<_, _>>()?,
                other => return Err(bad(format!("Unsupported anything-but pattern: {other}"))),
            }
        }
    };
    Ok(Filter::AnythingBut(inner))
}

impl Node {
    fn matches(&self, event: &Value) -> bool {
        let Value::Object(map) = event else {
            return false;
        };
        self.fields
            .iter()
            .all(|(key, field)| field.matches(map.get(key)))
            && self
                .any_of
                .iter()
                .all(|group| group.iter().any(|n| n.matches(event)))
    }
}

impl Field {
    fn matches(&self, value: Option<&Value>) -> bool {
        match self {
            Field::Object(node) => match value {
                Some(Value::Array(items)) => items.iter().any(|v| node.matches(v)),
                Some(v) => node.matches(v),
                None => false,
            },
            Field::Leaf(filters) => filters.iter().any(|f| f.matches_field(value)),
        }
    }
}

impl Filter {
    /// Whether the event's field (missing, a value, or an array of them)
    /// matches.
    fn matches_field(&self, value: Option<&Value>) -> bool {
        match (self, value) {
            // `exists` is about leaves: an object, or an array with no
            // leaf in it, does not count.
            (Filter::Exists(want), None) => !want,
            (_, None) => false,
            (Filter::Exists(want), Some(Value::Array(items))) => {
                *want == items.iter().any(|v| !v.is_object() && !v.is_array())
            }
            (Filter::Exists(want), Some(v)) => *want != v.is_object(),
            (_, Some(Value::Array(items))) => items.iter().any(|v| self.matches_value(v)),
            (_, Some(v)) => self.matches_value(v),
        }
    }

    fn matches_value(&self, v: &Value) -> bool {
        match self {
            Filter::Exact(want) => v == want,
            Filter::Number(want) => v.as_f64() == Some(*want),
            Filter::Prefix(t) => v.as_str().is_some_and(|s| t.prefix_of(s)),
            Filter::Suffix(t) => v.as_str().is_some_and(|s| t.suffix_of(s)),
            Filter::Wildcard(w) => v.as_str().is_some_and(|s| wildcard(w, s)),
            Filter::EqualsIgnoreCase(want) => v.as_str().is_some_and(|s| s.to_lowercase() == *want),
            Filter::AnythingBut(not) => {
                // Only values of the kind the filter names can be "but".
                let comparable = match not.first() {
                    Some(Filter::Number(_)) => v.is_number(),
                    Some(Filter::Exact(Value::Bool(_))) => v.is_boolean(),
                    Some(Filter::Exact(Value::Null)) => true,
                    _ => v.is_string(),
                };
                comparable && !not.iter().any(|f| f.matches_value(v))
            }
            Filter::Numeric(conditions) => v.as_f64().is_some_and(|n| {
                conditions.iter().all(|(cmp, x)| match cmp {
                    Cmp::Eq => n == *x,
                    Cmp::Lt => n < *x,
                    Cmp::Le => n <= *x,
                    Cmp::Gt => n > *x,
                    Cmp::Ge => n >= *x,
                })
            }),
            Filter::Exists(_) => true,
            Filter::Cidr(net, bits) => v
                .as_str()
                .and_then(|s| s.parse::<IpAddr>().ok())
                .is_some_and(|ip| in_cidr(ip, *net, *bits)),
        }
    }
}

impl Text {
    fn prefix_of(&self, s: &str) -> bool {
        if self.ignore_case {
            s.to_lowercase().starts_with(&self.text)
        } else {
            s.starts_with(&self.text)
        }
    }

    fn suffix_of(&self, s: &str) -> bool {
        if self.ignore_case {
            s.to_lowercase().ends_with(&self.text)
        } else {
            s.ends_with(&self.text)
        }
    }
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    fn prefix_eq(a: &[u8], b: &[u8], bits: u8) -> bool {
        let (whole, rest) = (usize::from(bits / 8), bits % 8);
        if a[..whole] != b[..whole] {
            return false;
        }
        rest == 0 || {
            let mask = 0xFFu8 << (8 - rest);
            a[whole] & mask == b[whole] & mask
        }
    }
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => prefix_eq(&a.octets(), &b.octets(), bits),
        (IpAddr::V6(a), IpAddr::V6(b)) => prefix_eq(&a.octets(), &b.octets(), bits),
        _ => false,
    }
}

/// `*` matches any run of characters; `\*` and `\\` are literal (as
/// EventBridge's wildcard and Step Functions' StringMatches read it).
pub fn wildcard(pattern: &str, s: &str) -> bool {
    // Tokens: literal chars and stars; matched greedily with backtracking
    // to the last star (linear in practice, never exponential).
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => tokens.push(Some(chars.next().unwrap_or('\\'))),
            '*' => tokens.push(None),
            c => tokens.push(Some(c)),
        }
    }
    let text: Vec<char> = s.chars().collect();
    let (mut t, mut p) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match tokens.get(p) {
            Some(Some(c)) if *c == text[t] => {
                t += 1;
                p += 1;
            }
            Some(None) => {
                star = Some((p, t));
                p += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    tokens[p..].iter().all(Option::is_none)
}

#[cfg(test)]
mod tests;
