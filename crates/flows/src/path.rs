//! Paths as the States Language uses them (JSONPath): `$` the state's
//! input, `$$` the context object, `$name` a workflow variable; `.name` and `['name']` fields, `[n]`
//! indexes (negative from the end), `[a:b]` slices, `[*]` and `.*`
//! wildcards, `..name` deep scans, and `[?(@.field op value)]` filters.
//! A path with a wildcard, slice, scan or filter selects many values and
//! yields them as an array; a reference path (ResultPath, a Choice rule's
//! Variable) allows plain fields and indexes only.

use serde_json::{Map, Value};

/// The longest path taken.
pub const MAX_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    pub root: Root,
    steps: Vec<Step>,
    text: String,
}

/// Where a path starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Root {
    /// `$`: the state's input (or what the field reads, such as a result).
    Input,
    /// `$$`: the context object.
    Context,
    /// `$name`: a workflow variable (set by a state's Assign).
    Variable(String),
}

/// What a path reads besides the input: the context object and the
/// workflow's variables.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub context: &'a Value,
    pub vars: &'a Map<String, Value>,
}

#[derive(Debug, Clone, PartialEq)]
enum Step {
    Field(String),
    Index(i64),
    Slice(Option<i64>, Option<i64>),
    Wildcard,
    Scan(String),
    Filter(Filter),
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    field: Vec<String>,
    /// `None`: the field exists.
    op: Option<(Op, Value)>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// How many bytes at the start of `rest` name a variable: a letter or
/// `_`, then letters, digits and `_` (0 when `rest` names none).
pub fn variable_name(rest: &str) -> usize {
    let mut chars = rest.char_indices();
    match chars.next() {
        Some((_, c)) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return 0,
    }
    chars
        .find(|(_, c)| !(c.is_ascii_alphanumeric() || *c == '_'))
        .map_or(rest.len(), |(i, _)| i)
}

/// Why a path cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PathError(pub String);

fn bad(path: &str, why: &str) -> PathError {
    PathError(format!("The path '{path}' is not valid: {why}"))
}

impl Path {
    pub fn parse(text: &str) -> Result<Path, PathError> {
        if text.len() > MAX_LEN {
            return Err(bad(text, "too long"));
        }
        let (root, rest) = match text.strip_prefix("$$") {
            Some(rest) => (Root::Context, rest),
            None => match text.strip_prefix('$') {
                Some(rest) => match variable_name(rest) {
                    0 => (Root::Input, rest),
                    n => (Root::Variable(rest[..n].to_string()), &rest[n..]),
                },
                None => return Err(bad(text, "a path starts with $")),
            },
        };
        let chars: Vec<char> = rest.chars().collect();
        let mut steps = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            match chars[i] {
                '.' if chars.get(i + 1) == Some(&'.') => {
                    i += 2;
                    let start = i;
                    while i < chars.len() && !".[".contains(chars[i]) {
                        i += 1;
                    }
                    let name: String = chars[start..i].iter().collect();
                    if name.is_empty() {
                        return Err(bad(text, "`..` needs a field name"));
                    }
                    steps.push(Step::Scan(name));
                }
                '.' => {
                    i += 1;
                    let start = i;
                    while i < chars.len() && !".[".contains(chars[i]) {
                        i += 1;
                    }
                    let name: String = chars[start..i].iter().collect();
                    match name.as_str() {
                        "" => return Err(bad(text, "a `.` needs a field name")),
                        "*" => steps.push(Step::Wildcard),
                        _ => steps.push(Step::Field(name)),
                    }
                }
                '[' => {
                    let close =
                        find_close(&chars, i).ok_or_else(|| bad(text, "an unclosed `[`"))?;
                    let inner: String = chars[i + 1..close].iter().collect();
                    steps.push(bracket(inner.trim()).map_err(|why| bad(text, &why))?);
                    i = close + 1;
                }
                c => return Err(bad(text, &format!("unexpected `{c}`"))),
            }
        }
        Ok(Path {
            root,
            steps,
            text: text.to_string(),
        })
    }

    /// A reference path: fields and indexes only (ResultPath, Variable).
    pub fn parse_reference(text: &str) -> Result<Path, PathError> {
        let p = Path::parse(text)?;
        if p.steps
            .iter()
            .any(|s| !matches!(s, Step::Field(_) | Step::Index(_)))
        {
            return Err(bad(
                text,
                "a reference path names one value (no wildcards, slices, scans or filters)",
            ));
        }
        Ok(p)
    }

    /// What the path selects, read from its root: `input`, the context
    /// object or a variable (`None` if the variable is not set).
    pub fn read_in(&self, input: &Value, scope: Scope<'_>) -> Option<Value> {
        match &self.root {
            Root::Input => self.read(input),
            Root::Context => self.read(scope.context),
            Root::Variable(name) => self.read(scope.vars.get(name)?),
        }
    }

    /// The path as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Whether it selects many values (its result is an array of them).
    pub fn is_definite(&self) -> bool {
        self.steps
            .iter()
            .all(|s| matches!(s, Step::Field(_) | Step::Index(_)))
    }

    /// What the path selects in `root`: `None` if a definite path finds
    /// nothing; an indefinite one always yields an array.
    pub fn read(&self, root: &Value) -> Option<Value> {
        let mut current: Vec<&Value> = vec![root];
        for step in &self.steps {
            let mut next = Vec::new();
            for v in current {
                select(step, v, &mut next);
            }
            current = next;
        }
        if self.is_definite() {
            current.first().map(|v| (*v).clone())
        } else {
            Some(Value::Array(current.into_iter().cloned().collect()))
        }
    }

    /// Sets the value a reference path names in `root` to `value`,
    /// making the objects on the way; `root` itself for `$`.
    pub fn write(&self, root: Value, value: Value) -> Result<Value, PathError> {
        fn put(target: Value, steps: &[Step], value: Value) -> Result<Value, PathError> {
            let Some((first, rest)) = steps.split_first() else {
                return Ok(value);
            };
            match first {
                Step::Field(name) => {
                    let mut map = match target {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    };
                    let inner = map.remove(name).unwrap_or(Value::Null);
                    map.insert(name.clone(), put(inner, rest, value)?);
                    Ok(Value::Object(map))
                }
                Step::Index(i) => match target {
                    Value::Array(mut items) => {
                        let at = if *i < 0 { items.len() as i64 + i } else { *i };
                        let Some(slot) = usize::try_from(at).ok().filter(|a| *a < items.len())
                        else {
                            return Err(PathError(format!("index {i} is outside the array")));
                        };
                        let inner = std::mem::take(&mut items[slot]);
                        items[slot] = put(inner, rest, value)?;
                        Ok(Value::Array(items))
                    }
                    _ => Err(PathError(format!(
                        "index {i} of something that is not an array"
                    ))),
                },
                _ => Err(PathError("a result path names one value".into())),
            }
        }
        put(root, &self.steps, value)
    }
}

fn find_close(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (i, c) in chars.iter().enumerate().skip(open) {
        match (quote, c) {
            (Some(q), c) if *c == q => quote = None,
            (Some(_), _) => {}
            (None, '\'' | '"') => quote = Some(*c),
            (None, '[') => depth += 1,
            (None, ']') => {
                depth -= 1;
                if depth == 0 {
                    return Some(i);
                }
            }
            _ => {}
        }
    }
    None
}

fn bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if let Some(q) = inner.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
        return Ok(Step::Field(q.to_string()));
    }
    if let Some(q) = inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
        return Ok(Step::Field(q.to_string()));
    }
    if let Some(f) = inner.strip_prefix("?(").and_then(|s| s.strip_suffix(')')) {
        return filter(f.trim()).map(Step::Filter);
    }
    if let Some((a, b)) = inner.split_once(':') {
        let bound = |s: &str| -> Result<Option<i64>, String> {
            match s.trim() {
                "" => Ok(None),
                n => n
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("`{n}` is not an index")),
            }
        };
        return Ok(Step::Slice(bound(a)?, bound(b)?));
    }
    inner.parse::<i64>().map(Step::Index).map_err(|_| {
        format!("`[{inner}]` is not an index, a quoted name, `*`, a slice or a filter")
    })
}

fn filter(text: &str) -> Result<Filter, String> {
    let ops = [
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];
    let (lhs, op) = match ops
        .iter()
        .find_map(|(t, op)| text.split_once(t).map(|(l, r)| (l, Some((*op, r)))))
    {
        Some((l, op)) => (l.trim(), op),
        None => (text, None),
    };
    let field = lhs
        .strip_prefix("@.")
        .ok_or_else(|| format!("a filter compares a field of `@`, not `{lhs}`"))?
        .split('.')
        .map(String::from)
        .collect::<Vec<_>>();
    if field.iter().any(String::is_empty) {
        return Err(format!("`{lhs}` is not a field of `@`"));
    }
    let op = match op {
        Some((op, rhs)) => {
            let rhs = rhs.trim();
            let value = match rhs.strip_prefix('\'').and_then(|s| s.strip_suffix('\'')) {
                Some(s) => Value::String(s.to_string()),
                None => serde_json::from_str(rhs)
                    .map_err(|_| format!("`{rhs}` is not a value to compare with"))?,
            };
            Some((op, value))
        }
        None => None,
    };
    Ok(Filter { field, op })
}

fn select<'a>(step: &Step, v: &'a Value, out: &mut Vec<&'a Value>) {
    match step {
        Step::Field(name) => {
            if let Some(found) = v.get(name) {
                out.push(found);
            }
        }
        Step::Index(i) => {
            if let Value::Array(items) = v {
                let at = if *i < 0 { items.len() as i64 + i } else { *i };
                if let Some(found) = usize::try_from(at).ok().and_then(|a| items.get(a)) {
                    out.push(found);
                }
            }
        }
        Step::Slice(a, b) => {
            if let Value::Array(items) = v {
                let len = items.len() as i64;
                let at = |n: i64| if n < 0 { (len + n).max(0) } else { n.min(len) } as usize;
                let (from, to) = (at(a.unwrap_or(0)), at(b.unwrap_or(len)));
                if from < to {
                    out.extend(items[from..to].iter());
                }
            }
        }
        Step::Wildcard => match v {
            Value::Array(items) => out.extend(items.iter()),
            Value::Object(m) => out.extend(m.values()),
            _ => {}
        },
        Step::Scan(name) => scan(name, v, out),
        Step::Filter(f) => {
            if let Value::Array(items) = v {
                out.extend(items.iter().filter(|item| f.keeps(item)));
            }
        }
    }
}

/// Every value of a field `name` at any depth, in document order.
fn scan<'a>(name: &str, v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            if let Some(found) = m.get(name) {
                out.push(found);
            }
            for child in m.values() {
                scan(name, child, out);
            }
        }
        Value::Array(items) => {
            for child in items {
                scan(name, child, out);
            }
        }
        _ => {}
    }
}

impl Filter {
    fn keeps(&self, item: &Value) -> bool {
        let mut v = item;
        for f in &self.field {
            match v.get(f) {
                Some(found) => v = found,
                None => return false,
            }
        }
        let Some((op, want)) = &self.op else {
            return true;
        };
        let ord = match (v, want) {
            (Value::Number(a), Value::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()),
            (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
            (a, b) if matches!(op, Op::Eq | Op::Ne) => Some(if a == b {
                std::cmp::Ordering::Equal
            } else {
                std::cmp::Ordering::Less
            }),
            _ => None,
        };
        let Some(ord) = ord else { return false };
        use std::cmp::Ordering::*;
        match op {
            Op::Eq => ord == Equal,
            Op::Ne => ord != Equal,
            Op::Lt => ord == Less,
            Op::Le => ord != Greater,
            Op::Gt => ord == Greater,
            Op::Ge => ord != Less,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn read(path: &str, v: &Value) -> Option<Value> {
        Path::parse(path).unwrap().read(v)
    }

    #[test]
    fn paths_select_as_step_functions_does() {
        let v = json!({
            "store": {"book": [
                {"title": "a", "price": 8, "tags": ["x"]},
                {"title": "b", "price": 12},
                {"title": "c", "price": 20, "isbn": "1"}
            ], "name": "shop"},
            "a.b": 1,
        });
        assert_eq!(read("$", &v), Some(v.clone()));
        assert_eq!(read("$.store.name", &v), Some(json!("shop")));
        assert_eq!(read("$['a.b']", &v), Some(json!(1)));
        assert_eq!(read("$.store.book[1].title", &v), Some(json!("b")));
        assert_eq!(read("$.store.book[-1].title", &v), Some(json!("c")));
        assert_eq!(read("$.nope", &v), None);
        assert_eq!(read("$.store.book[*].price", &v), Some(json!([8, 12, 20])));
        assert_eq!(read("$.store.book[0:2].title", &v), Some(json!(["a", "b"])));
        assert_eq!(read("$..price", &v), Some(json!([8, 12, 20])));
        assert_eq!(
            read("$.store.book[?(@.price > 10)].title", &v),
            Some(json!(["b", "c"]))
        );
        assert_eq!(
            read("$.store.book[?(@.isbn)].title", &v),
            Some(json!(["c"]))
        );
        assert_eq!(
            read("$.store.book[?(@.title == 'a')].price", &v),
            Some(json!([8]))
        );
        assert_eq!(read("$.nope[*]", &v), Some(json!([])));
    }

    #[test]
    fn reference_paths_write_making_objects_on_the_way() {
        let p = Path::parse_reference("$.result.value").unwrap();
        assert_eq!(
            p.write(json!({"a": 1}), json!(2)).unwrap(),
            json!({"a": 1, "result": {"value": 2}})
        );
        assert_eq!(
            Path::parse_reference("$")
                .unwrap()
                .write(json!({"a": 1}), json!(3))
                .unwrap(),
            json!(3)
        );
        let i = Path::parse_reference("$.list[1]").unwrap();
        assert_eq!(
            i.write(json!({"list": [0, 0]}), json!(9)).unwrap(),
            json!({"list": [0, 9]})
        );
        assert!(i.write(json!({"list": []}), json!(9)).is_err());
        assert!(Path::parse_reference("$.a[*]").is_err());
        assert!(Path::parse_reference("$..a").is_err());
    }

    #[test]
    fn bad_paths_are_refused() {
        for bad in [
            "",
            "a",
            "$.",
            "$[",
            "$[x]",
            "$..",
            "$.a[?(b > 1)]",
            "$.a[?(@.b > x)]",
            "$ a",
        ] {
            assert!(Path::parse(bad).is_err(), "{bad}");
        }
        assert!(Path::parse(&format!("${}", ".a".repeat(2000))).is_err());
        assert_eq!(Path::parse("$$.Execution.Id").unwrap().root, Root::Context);
        let p = Path::parse("$order.items[0]").unwrap();
        assert_eq!(p.root, Root::Variable("order".into()));
        let vars: Map<String, Value> =
            serde_json::from_value(serde_json::json!({"order": {"items": [7]}})).unwrap();
        let scope = Scope {
            context: &Value::Null,
            vars: &vars,
        };
        assert_eq!(p.read_in(&Value::Null, scope), Some(7.into()));
        assert_eq!(
            Path::parse("$other").unwrap().read_in(&Value::Null, scope),
            None
        );
    }
}
