//! The JSONata query language (`"QueryLanguage": "JSONata"`): a field such
//! as Arguments, Output or Assign is JSON in which a string written
//! `{% expression %}` is evaluated, with `$states` (input, result,
//! errorOutput, context) and the workflow's variables bound. A failing
//! expression, or one that yields nothing, is `States.QueryEvaluationError`.
//!
//! Expressions are evaluated by the `jsonata-rs` crate (JSONata 2.0 less
//! what README.md lists), plus the functions Step Functions adds
//! (`$partition`, `$range`, `$hash`, `$parse`) and some the crate lacks
//! (`$type`, `$average`, the URL codecs). They are untrusted: the
//! definition check refuses an expression longer than 16 KiB or nested
//! deeper than the parser's stack allows, and each runs on a thread with
//! a stack of its own, bounded in time and in call depth.

use std::collections::HashMap;

use bumpalo::Bump;
use jsonata_rs::{ArrayFlags, FunctionContext, JsonAta, Value as Jv};
use serde_json::{Map, Value};

use crate::errors::QUERY_EVALUATION_ERROR;
use crate::step::Failure;

/// Bounds of one expression.
pub const MAX_EXPRESSION: usize = 16 * 1024;
const MAX_NESTING: usize = 48;
const MAX_CHAINED: usize = 200;
const TIME_LIMIT_MS: usize = 1000;
const MAX_DEPTH: usize = 100;
const STACK: usize = 64 << 20;
/// The largest array `$range` and `$partition` make.
const MAX_ITEMS: usize = 100_000;

/// A JSONata field, compiled: JSON kept as written, with expressions.
#[derive(Debug, Clone, PartialEq)]
pub enum Form {
    Fixed(Value),
    Expr(String),
    Object(Vec<(String, Form)>),
    Array(Vec<Form>),
}

/// The expression in `text`, if it is written `{% … %}`.
pub fn expression(text: &str) -> Option<&str> {
    text.strip_prefix("{%")?.strip_suffix("%}")
}

/// Compiles a field's value, checking each expression in it.
pub fn compile(v: &Value) -> Result<Form, String> {
    compile_at(v, 0)
}

fn compile_at(v: &Value, depth: usize) -> Result<Form, String> {
    if depth > 64 {
        return Err("the value nests deeper than 64 levels".into());
    }
    let form = match v {
        Value::String(s) => match expression(s) {
            Some(e) => {
                check(e)?;
                Form::Expr(e.to_string())
            }
            None => Form::Fixed(v.clone()),
        },
        Value::Object(m) => {
            let mut fields = Vec::with_capacity(m.len());
            for (k, v) in m {
                fields.push((k.clone(), compile_at(v, depth + 1)?));
            }
            Form::Object(fields)
        }
        Value::Array(items) => Form::Array(
            items
                .iter()
                .map(|v| compile_at(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        other => Form::Fixed(other.clone()),
    };
    // A value without expressions stays as written.
    Ok(match form {
        Form::Object(fields) if fields.iter().all(|(_, f)| matches!(f, Form::Fixed(_))) => {
            Form::Fixed(v.clone())
        }
        Form::Array(items) if items.iter().all(|f| matches!(f, Form::Fixed(_))) => {
            Form::Fixed(v.clone())
        }
        other => other,
    })
}

/// Whether an expression may be run: its size, its nesting (brackets,
/// and the prefix operators, conditions and bindings the parser recurses
/// on), its syntax, and no `$eval`.
fn check(expr: &str) -> Result<(), String> {
    if expr.len() > MAX_EXPRESSION {
        return Err(format!(
            "The JSONata expression is longer than {MAX_EXPRESSION} bytes"
        ));
    }
    let (nesting, chained) = shape(expr);
    if nesting > MAX_NESTING || chained > MAX_CHAINED {
        return Err(format!(
            "The JSONata expression '{}' nests too deeply (at most {MAX_NESTING} brackets and {MAX_CHAINED} conditions, bindings and signs)",
            shown(expr)
        ));
    }
    if expr.contains("$eval") {
        return Err("The JSONata function $eval is not supported; use $parse".into());
    }
    let parsed = on_big_stack(|| {
        std::panic::catch_unwind(|| {
            let arena = Bump::new();
            JsonAta::new(expr, &arena)
                .map(|_| ())
                .map_err(|e| format!("{} {e}", e.code()))
        })
    });
    match parsed {
        Ok(Ok(())) => Ok(()),
        Ok(Err(why)) => Err(format!(
            "The JSONata expression '{}' is not valid: {why}",
            shown(expr)
        )),
        Err(_) => Err(format!(
            "The JSONata expression '{}' could not be parsed",
            shown(expr)
        )),
    }
}

/// The deepest bracket nesting of `expr`, and how many prefix signs,
/// conditions and bindings it holds (outside strings and comments).
fn shape(expr: &str) -> (usize, usize) {
    let b = expr.as_bytes();
    let (mut depth, mut deepest, mut chained) = (0usize, 0usize, 0usize);
    let mut last = b'(';
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'"' | b'\'' | b'`' => {
                i += 1;
                while i < b.len() && b[i] != c {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < b.len() && !(b[i] == b'*' && b[i + 1] == b'/') {
                    i += 1;
                }
                i += 1;
            }
            b'(' | b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            b'?' => chained += 1,
            b':' if b.get(i + 1) == Some(&b'=') => chained += 1,
            b'-' if b"([{,;:?=<>+-*/%&!|~".contains(&last) => chained += 1,
            _ => {}
        }
        if !c.is_ascii_whitespace() {
            last = c;
        }
        i += 1;
    }
    (deepest, chained)
}

fn shown(expr: &str) -> String {
    match expr.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &expr[..i]),
        None => expr.to_string(),
    }
}

/// Runs `f` on a thread with a large stack: the parser and evaluator
/// recurse once per level of the expression.
fn on_big_stack<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    std::thread::scope(|s| {
        match std::thread::Builder::new()
            .name("wisp-jsonata".into())
            .stack_size(STACK)
            .spawn_scoped(s, f)
        {
            Ok(handle) => match handle.join() {
                Ok(r) => r,
                Err(panic) => std::panic::resume_unwind(panic),
            },
            Err(_) => panic!("no thread for a JSONata expression"),
        }
    })
}

/// What `$states` holds where an expression is evaluated.
#[derive(Debug, Clone, Copy)]
pub struct States<'a> {
    pub input: &'a Value,
    pub context: &'a Value,
    pub result: Option<&'a Value>,
    pub error_output: Option<&'a Value>,
}

impl Form {
    /// Evaluates the form in `field` (named in errors) against `states`
    /// and the variables.
    pub fn eval(
        &self,
        field: &str,
        states: States<'_>,
        vars: &Map<String, Value>,
    ) -> Result<Value, Failure> {
        if let Form::Fixed(v) = self {
            return Ok(v.clone());
        }
        let outcome = on_big_stack(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let arena = Bump::new();
                let bound = Bound::new(&arena, states, vars);
                self.eval_in(field, &bound)
            }))
        });
        outcome.unwrap_or_else(|_| {
            Err(Failure::new(
                QUERY_EVALUATION_ERROR,
                format!("The JSONata expressions of the field '{field}' could not be evaluated"),
            ))
        })
    }

    fn eval_in(&self, field: &str, bound: &Bound<'_>) -> Result<Value, Failure> {
        Ok(match self {
            Form::Fixed(v) => v.clone(),
            Form::Expr(e) => bound.run(field, e)?,
            Form::Object(fields) => {
                let mut out = Map::with_capacity(fields.len());
                for (k, f) in fields {
                    out.insert(k.clone(), f.eval_in(&format!("{field}/{k}"), bound)?);
                }
                Value::Object(out)
            }
            Form::Array(items) => Value::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, f)| f.eval_in(&format!("{field}[{i}]"), bound))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

/// `$states` and the variables, made once per field into the arena and
/// bound by the expressions that name them.
struct Bound<'a> {
    arena: &'a Bump,
    states: States<'a>,
    vars: &'a Map<String, Value>,
    made: std::cell::RefCell<HashMap<String, &'a Jv<'a>>>,
}

impl<'a> Bound<'a> {
    fn new(arena: &'a Bump, states: States<'a>, vars: &'a Map<String, Value>) -> Bound<'a> {
        Bound {
            arena,
            states,
            vars,
            made: Default::default(),
        }
    }

    fn value(&self, name: &str) -> Option<&'a Jv<'a>> {
        if let Some(v) = self.made.borrow().get(name) {
            return Some(v);
        }
        let v = if name == "states" {
            let mut m = Map::new();
            m.insert("input".into(), self.states.input.clone());
            m.insert("context".into(), self.states.context.clone());
            if let Some(r) = self.states.result {
                m.insert("result".into(), r.clone());
            }
            if let Some(e) = self.states.error_output {
                m.insert("errorOutput".into(), e.clone());
            }
            to_jsonata(self.arena, &Value::Object(m))
        } else {
            to_jsonata(self.arena, self.vars.get(name)?)
        };
        self.made.borrow_mut().insert(name.to_string(), v);
        Some(v)
    }

    fn run(&self, field: &str, expr: &str) -> Result<Value, Failure> {
        let fail = |why: String| {
            Failure::new(
                QUERY_EVALUATION_ERROR,
                format!(
                    "The JSONata expression '{}' specified for the field '{field}' {why}",
                    shown(expr)
                ),
            )
        };
        let j = JsonAta::new(expr, self.arena).map_err(|e| fail(format!("is not valid: {e}")))?;
        for name in names(expr) {
            if let Some(v) = self.value(name) {
                j.assign_var(name, v);
            }
        }
        register(&j);
        let out = j
            .evaluate_timeboxed(None, Some(MAX_DEPTH), Some(TIME_LIMIT_MS))
            .map_err(|e| fail(format!("threw an error: {} {e}", e.code())))?;
        if out.is_undefined() {
            return Err(fail("returned nothing (undefined)".into()));
        }
        if out.is_function() {
            return Err(fail("returned a function".into()));
        }
        serde_json::from_str(&out.serialize(false))
            .map_err(|_| fail("returned a value that is not JSON".into()))
    }
}

/// The `$name`s an expression mentions.
fn names(expr: &str) -> impl Iterator<Item = &str> {
    expr.match_indices('$').filter_map(move |(i, _)| {
        let rest = &expr[i + 1..];
        match crate::path::variable_name(rest) {
            0 => None,
            n => Some(&rest[..n]),
        }
    })
}

fn to_jsonata<'a>(arena: &'a Bump, v: &Value) -> &'a Jv<'a> {
    match v {
        Value::Null => Jv::null(arena),
        Value::Bool(b) => Jv::bool(*b),
        Value::Number(n) => Jv::number(arena, n.as_f64().unwrap_or(f64::NAN)),
        Value::String(s) => Jv::string(arena, s),
        Value::Array(items) => {
            let out = Jv::array_with_capacity(arena, items.len(), ArrayFlags::empty());
            for item in items {
                out.push(to_jsonata(arena, item));
            }
            out
        }
        Value::Object(m) => {
            let out = Jv::object_with_capacity(arena, m.len());
            for (k, v) in m {
                out.insert(k, to_jsonata(arena, v));
            }
            out
        }
    }
}

type Native =
    for<'a, 'e> fn(FunctionContext<'a, 'e>, &[&'a Jv<'a>]) -> jsonata_rs::Result<&'a Jv<'a>>;

/// Binds the functions Step Functions adds, and those the crate lacks.
fn register(j: &JsonAta<'_>) {
    let functions: [(&str, usize, Native); 9] = [
        ("partition", 2, fn_partition),
        ("range", 3, fn_range),
        ("hash", 2, fn_hash),
        ("parse", 1, fn_parse),
        ("type", 1, fn_type),
        ("average", 1, fn_average),
        ("encodeUrlComponent", 1, fn_encode_component),
        ("encodeUrl", 1, fn_encode_url),
        ("decodeUrlComponent", 1, fn_decode),
    ];
    for (name, arity, f) in functions {
        j.register_function(name, arity, f);
    }
    j.register_function("decodeUrl", 1, fn_decode);
}

fn error<'a>(function: &str, why: impl std::fmt::Display) -> jsonata_rs::Result<&'a Jv<'a>> {
    Err(jsonata_rs::Error::D3137Error(format!("${function}: {why}")))
}

fn arg<'a>(args: &[&'a Jv<'a>], i: usize) -> &'a Jv<'a> {
    args.get(i).copied().unwrap_or_else(Jv::undefined)
}

fn make<'a>(arena: &'a Bump, v: &Value) -> &'a Jv<'a> {
    to_jsonata(arena, v)
}

fn fn_partition<'a>(
    cx: FunctionContext<'a, '_>,
    args: &[&'a Jv<'a>],
) -> jsonata_rs::Result<&'a Jv<'a>> {
    let (items, size) = (arg(args, 0), arg(args, 1));
    if !items.is_array() {
        return error("partition", "the first argument must be an array");
    }
    if !size.is_integer() || size.as_f64() < 1.0 {
        return error("partition", "the chunk size must be a positive integer");
    }
    let size = size.as_f64() as usize;
    let all: Vec<&Jv> = items.members().collect();
    let out = Jv::array_with_capacity(cx.arena, all.len().div_ceil(size), ArrayFlags::empty());
    for chunk in all.chunks(size) {
        let part = Jv::array_with_capacity(cx.arena, chunk.len(), ArrayFlags::empty());
        for v in chunk {
            part.push(v);
        }
        out.push(part);
    }
    Ok(out)
}

fn fn_range<'a>(
    cx: FunctionContext<'a, '_>,
    args: &[&'a Jv<'a>],
) -> jsonata_rs::Result<&'a Jv<'a>> {
    let [start, end, step] = [0, 1, 2].map(|i| arg(args, i));
    if !(start.is_integer() && end.is_integer() && step.is_integer()) {
        return error("range", "start, end and step must be integers");
    }
    let (start, end, step) = (
        start.as_f64() as i64,
        end.as_f64() as i64,
        step.as_f64() as i64,
    );
    if step == 0 {
        return error("range", "the step must not be 0");
    }
    let count = if (step > 0 && end >= start) || (step < 0 && end <= start) {
        ((end - start) / step) as usize + 1
    } else {
        0
    };
    if count > MAX_ITEMS {
        return error(
            "range",
            format!("the range holds more than {MAX_ITEMS} items"),
        );
    }
    let out = Jv::array_with_capacity(cx.arena, count, ArrayFlags::empty());
    for i in 0..count as i64 {
        out.push(Jv::number(cx.arena, (start + i * step) as f64));
    }
    Ok(out)
}

fn fn_hash<'a>(cx: FunctionContext<'a, '_>, args: &[&'a Jv<'a>]) -> jsonata_rs::Result<&'a Jv<'a>> {
    use sha2::Digest as _;
    let (data, algorithm) = (arg(args, 0), arg(args, 1));
    if !data.is_string() || !algorithm.is_string() {
        return error("hash", "the data and the algorithm must be strings");
    }
    let data = data.as_str();
    let bytes = data.as_bytes();
    let digest = match &*algorithm.as_str() {
        "MD5" => hex::encode(md5::Md5::digest(bytes)),
        "SHA-1" => hex::encode(sha1::Sha1::digest(bytes)),
        "SHA-256" => hex::encode(sha2::Sha256::digest(bytes)),
        "SHA-384" => hex::encode(sha2::Sha384::digest(bytes)),
        "SHA-512" => hex::encode(sha2::Sha512::digest(bytes)),
        other => {
            return error(
                "hash",
                format!(
                    "the algorithm is one of MD5, SHA-1, SHA-256, SHA-384, SHA-512, not {other}"
                ),
            )
        }
    };
    Ok(Jv::string(cx.arena, &digest))
}

fn fn_parse<'a>(
    cx: FunctionContext<'a, '_>,
    args: &[&'a Jv<'a>],
) -> jsonata_rs::Result<&'a Jv<'a>> {
    let text = arg(args, 0);
    if !text.is_string() {
        return error("parse", "the argument must be a string");
    }
    match serde_json::from_str::<Value>(&text.as_str()) {
        Ok(v) => Ok(make(cx.arena, &v)),
        Err(e) => error("parse", format!("the string is not JSON: {e}")),
    }
}

fn fn_type<'a>(cx: FunctionContext<'a, '_>, args: &[&'a Jv<'a>]) -> jsonata_rs::Result<&'a Jv<'a>> {
    let v = arg(args, 0);
    let name = if v.is_undefined() {
        return Ok(Jv::undefined());
    } else if v.is_null() {
        "null"
    } else if v.is_bool() {
        "boolean"
    } else if v.is_number() {
        "number"
    } else if v.is_string() {
        "string"
    } else if v.is_array() {
        "array"
    } else if v.is_function() {
        "function"
    } else {
        "object"
    };
    Ok(Jv::string(cx.arena, name))
}

fn fn_average<'a>(
    cx: FunctionContext<'a, '_>,
    args: &[&'a Jv<'a>],
) -> jsonata_rs::Result<&'a Jv<'a>> {
    let v = arg(args, 0);
    if v.is_undefined() {
        return Ok(Jv::undefined());
    }
    let numbers: Vec<f64> = if v.is_array() {
        let mut out = Vec::with_capacity(v.len());
        for m in v.members() {
            if !m.is_number() {
                return error("average", "the argument must be an array of numbers");
            }
            out.push(m.as_f64());
        }
        out
    } else if v.is_number() {
        vec![v.as_f64()]
    } else {
        return error("average", "the argument must be an array of numbers");
    };
    if numbers.is_empty() {
        return Ok(Jv::undefined());
    }
    let sum: f64 = numbers.iter().sum();
    Ok(Jv::number(cx.arena, sum / numbers.len() as f64))
}

/// Percent-encodes what JavaScript's encodeURIComponent (or encodeURI,
/// which keeps the URL's own punctuation) does.
fn encode(text: &str, keep: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b) || keep.as_bytes().contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A function of one string (undefined gives undefined).
fn on_text<'a>(
    cx: FunctionContext<'a, '_>,
    args: &[&'a Jv<'a>],
    name: &str,
    f: impl FnOnce(&str) -> Result<String, &'static str>,
) -> jsonata_rs::Result<&'a Jv<'a>> {
    let v = arg(args, 0);
    if v.is_undefined() {
        return Ok(Jv::undefined());
    }
    match f(&v.as_str()) {
        Ok(out) => Ok(Jv::string(cx.arena, &out)),
        Err(why) => error(name, why),
    }
}

fn fn_encode_component<'a>(
    cx: FunctionContext<'a, '_>,
    args: &[&'a Jv<'a>],
) -> jsonata_rs::Result<&'a Jv<'a>> {
    on_text(cx, args, "encodeUrlComponent", |t| Ok(encode(t, "")))
}

fn fn_encode_url<'a>(
    cx: FunctionContext<'a, '_>,
    args: &[&'a Jv<'a>],
) -> jsonata_rs::Result<&'a Jv<'a>> {
    on_text(cx, args, "encodeUrl", |t| Ok(encode(t, ";,/?:@&=+$#")))
}

fn fn_decode<'a>(
    cx: FunctionContext<'a, '_>,
    args: &[&'a Jv<'a>],
) -> jsonata_rs::Result<&'a Jv<'a>> {
    on_text(cx, args, "decodeUrlComponent", decode)
}

/// Percent-decoding, the bytes then read as UTF-8.
fn decode(text: &str) -> Result<String, &'static str> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("malformed percent-encoding")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the decoded bytes are not UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn eval(expr: &str, input: Value) -> Result<Value, Failure> {
        let form =
            compile(&json!(format!("{{%{expr}%}}"))).map_err(|e| Failure::new("compile", e))?;
        let vars: Map<String, Value> =
            serde_json::from_value(json!({"customerName": "María", "n": 3})).unwrap();
        form.eval(
            "Output",
            States {
                input: &input,
                context: &json!({"Execution": {"Id": "arn:x"}}),
                result: None,
                error_output: None,
            },
            &vars,
        )
    }

    #[test]
    fn expressions_read_states_and_variables() {
        let input = json!({"title": "Doctor", "items": [{"price": 5}, {"price": 20}]});
        for (expr, want) in [
            (
                " $states.input.title & ' ' & $customerName ",
                json!("Doctor María"),
            ),
            ("$sum($states.input.items.price)", json!(25)),
            ("$states.input.items[price > 10]", json!({"price": 20})),
            ("$states.context.Execution.Id", json!("arn:x")),
            ("$n * 2", json!(6)),
            ("$partition([1,2,3,4,5], 2)", json!([[1, 2], [3, 4], [5]])),
            ("$range(0, 10, 5)", json!([0, 5, 10])),
            ("$range(3, 1, -1)", json!([3, 2, 1])),
            (
                "$hash('abc', 'SHA-256')",
                json!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            ),
            ("$parse('{\"a\": [1]}').a", json!([1])),
            ("$type($states.input.items)", json!("array")),
            ("$average([1, 2, 3, 4])", json!(2.5)),
            ("$encodeUrlComponent('a b&c')", json!("a%20b%26c")),
            ("$decodeUrlComponent('a%20b')", json!("a b")),
            ("$count($uuid())", json!(1)),
        ] {
            assert_eq!(eval(expr, input.clone()).unwrap(), want, "{expr}");
        }
    }

    #[test]
    fn failures_are_query_evaluation_errors() {
        for (expr, says) in [
            ("$states.input.missing", "returned nothing (undefined)"),
            ("$undefinedFunction()", "threw an error"),
            ("function($x){$x}", "returned a function"),
            ("($f := function($x){$f($x)}; $f(1))", "threw an error"),
            ("$range(0, 1000000000, 1)", "more than"),
            ("$hash('a', 'CRC')", "the algorithm is one of"),
        ] {
            let f = eval(expr, json!({})).unwrap_err();
            assert_eq!(f.error, QUERY_EVALUATION_ERROR, "{expr}");
            assert!(f.cause.contains(says), "{expr}: {}", f.cause);
        }
    }

    #[test]
    fn hostile_expressions_are_refused_when_the_definition_is_checked() {
        for expr in [
            "(".repeat(500) + "1" + &")".repeat(500),
            "-".repeat(1000) + "1",
            "true ? ".repeat(300) + "1" + &" : 2".repeat(300),
            "1 +".repeat(10_000) + "1",
            "$eval('1')".to_string(),
            "1 +".to_string(),
        ] {
            assert!(
                compile(&json!(format!("{{%{expr}%}}"))).is_err(),
                "{:.40}",
                expr
            );
        }
        // Long flat chains parse and then meet the depth bound.
        let form = compile(&json!(format!("{{%{}%}}", "1 + ".repeat(2000) + "1"))).unwrap();
        let f = form
            .eval(
                "Output",
                States {
                    input: &json!({}),
                    context: &json!({}),
                    result: None,
                    error_output: None,
                },
                &Map::new(),
            )
            .unwrap_err();
        assert_eq!(f.error, QUERY_EVALUATION_ERROR);
    }

    #[test]
    fn values_without_expressions_stay_as_written() {
        let v = json!({"static": "Hello", "not-evaluated": "$customerName", "list": [1, "{%"]});
        assert_eq!(compile(&v).unwrap(), Form::Fixed(v.clone()));
        let f = compile(&json!({"a": {"b": "{% $n %}"}, "c": 1})).unwrap();
        assert!(matches!(f, Form::Object(_)));
    }
}
