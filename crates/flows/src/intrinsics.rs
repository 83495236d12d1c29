//! Intrinsic functions (`States.Format('{} items', $.n)` and the rest), as
//! a payload template's `.$` value may call them: parsed once, evaluated
//! against the state's input and the context object. A call that fails
//! (a wrong argument, a result too large) is `States.IntrinsicFailure`.

use base64::Engine as _;
use serde_json::{json, Value};
use wisp_core::clock::Rng;

use crate::path::{Path, Scope};

/// Bounds: the depth of nested calls and the size of what a call makes.
const MAX_DEPTH: usize = 10;
const MAX_ITEMS: usize = 1000;
const MAX_STRING: usize = 10_000;

#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    name: String,
    args: Vec<Arg>,
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Literal(Value),
    Path(Path),
    Call(Call),
}

/// Why an intrinsic call is refused (at parse) or fails (at run).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct IntrinsicError(pub String);

fn err<T>(message: impl Into<String>) -> Result<T, IntrinsicError> {
    Err(IntrinsicError(message.into()))
}

const FUNCTIONS: [(&str, usize, usize); 18] = [
    ("States.Format", 1, usize::MAX),
    ("States.StringToJson", 1, 1),
    ("States.JsonToString", 1, 1),
    ("States.Array", 0, usize::MAX),
    ("States.ArrayPartition", 2, 2),
    ("States.ArrayContains", 2, 2),
    ("States.ArrayRange", 3, 3),
    ("States.ArrayGetItem", 2, 2),
    ("States.ArrayLength", 1, 1),
    ("States.ArrayUnique", 1, 1),
    ("States.Base64Encode", 1, 1),
    ("States.Base64Decode", 1, 1),
    ("States.Hash", 2, 2),
    ("States.JsonMerge", 3, 3),
    ("States.MathRandom", 2, 3),
    ("States.MathAdd", 2, 2),
    ("States.StringSplit", 2, 2),
    ("States.UUID", 0, 0),
];

struct Parser<'a> {
    text: &'a str,
    chars: Vec<char>,
    at: usize,
}

impl Call {
    /// Whether a `.$` value is an intrinsic call rather than a path.
    pub fn looks_like(text: &str) -> bool {
        text.trim_start().starts_with("States.")
    }

    pub fn parse(text: &str) -> Result<Call, IntrinsicError> {
        let mut p = Parser {
            text,
            chars: text.chars().collect(),
            at: 0,
        };
        let call = p.call(0)?;
        p.space();
        if p.at != p.chars.len() {
            return err(format!(
                "The intrinsic function '{text}' has text after its closing parenthesis."
            ));
        }
        Ok(call)
    }

    /// Evaluates the call against the state's input and the context.
    pub fn eval(
        &self,
        input: &Value,
        scope: Scope<'_>,
        rng: &dyn Rng,
    ) -> Result<Value, IntrinsicError> {
        let mut args = Vec::with_capacity(self.args.len());
        for a in &self.args {
            args.push(match a {
                Arg::Literal(v) => v.clone(),
                Arg::Path(p) => p.read_in(input, scope).ok_or_else(|| {
                    IntrinsicError(format!(
                        "The path of an argument of {} found nothing.",
                        self.name
                    ))
                })?,
                Arg::Call(c) => c.eval(input, scope, rng)?,
            });
        }
        run(&self.name, args, rng)
    }
}

impl Parser<'_> {
    fn space(&mut self) {
        while self.chars.get(self.at).is_some_and(|c| c.is_whitespace()) {
            self.at += 1;
        }
    }

    fn call(&mut self, depth: usize) -> Result<Call, IntrinsicError> {
        if depth > MAX_DEPTH {
            return err(format!(
                "The intrinsic function '{}' nests calls deeper than {MAX_DEPTH}.",
                self.text
            ));
        }
        self.space();
        let start = self.at;
        while self
            .chars
            .get(self.at)
            .is_some_and(|c| c.is_ascii_alphanumeric() || *c == '.')
        {
            self.at += 1;
        }
        let name: String = self.chars[start..self.at].iter().collect();
        let Some((_, min, max)) = FUNCTIONS.iter().find(|(n, _, _)| *n == name) else {
            return err(format!("'{name}' is not an intrinsic function."));
        };
        self.space();
        if self.chars.get(self.at) != Some(&'(') {
            return err(format!(
                "The intrinsic function '{name}' needs its arguments in parentheses."
            ));
        }
        self.at += 1;
        let mut args = Vec::new();
        self.space();
        if self.chars.get(self.at) == Some(&')') {
            self.at += 1;
        } else {
            loop {
                args.push(self.arg(depth)?);
                self.space();
                match self.chars.get(self.at) {
                    Some(',') => self.at += 1,
                    Some(')') => {
                        self.at += 1;
                        break;
                    }
                    _ => return err(format!("The arguments of '{name}' are not closed by ')'.")),
                }
            }
        }
        if args.len() < *min || args.len() > *max {
            return err(format!("'{name}' does not take {} arguments.", args.len()));
        }
        Ok(Call { name, args })
    }

    fn arg(&mut self, depth: usize) -> Result<Arg, IntrinsicError> {
        self.space();
        match self.chars.get(self.at) {
            Some('\'') => self.string().map(|s| Arg::Literal(Value::String(s))),
            Some('$') => {
                let start = self.at;
                let mut nesting = 0i32;
                let mut quote = false;
                while let Some(c) = self.chars.get(self.at) {
                    match c {
                        '\'' => quote = !quote,
                        '[' | '(' if !quote => nesting += 1,
                        ']' | ')' if !quote && nesting > 0 => nesting -= 1,
                        ',' | ')' if !quote && nesting == 0 => break,
                        _ => {}
                    }
                    self.at += 1;
                }
                let text: String = self.chars[start..self.at].iter().collect();
                Path::parse(text.trim())
                    .map(Arg::Path)
                    .map_err(|e| IntrinsicError(e.0))
            }
            Some(c) if c.is_ascii_alphabetic() => {
                let rest: String = self.chars[self.at..].iter().collect();
                for (word, value) in [
                    ("true", json!(true)),
                    ("false", json!(false)),
                    ("null", Value::Null),
                ] {
                    if rest.starts_with(word)
                        && !rest[word.len()..]
                            .starts_with(|c: char| c.is_ascii_alphanumeric() || c == '.')
                    {
                        self.at += word.len();
                        return Ok(Arg::Literal(value));
                    }
                }
                self.call(depth + 1).map(Arg::Call)
            }
            Some(c) if c.is_ascii_digit() || *c == '-' => {
                let start = self.at;
                while self
                    .chars
                    .get(self.at)
                    .is_some_and(|c| c.is_ascii_digit() || ".-+eE".contains(*c))
                {
                    self.at += 1;
                }
                let text: String = self.chars[start..self.at].iter().collect();
                serde_json::from_str::<Value>(&text)
                    .ok()
                    .filter(Value::is_number)
                    .map(Arg::Literal)
                    .ok_or_else(|| IntrinsicError(format!("'{text}' is not a number.")))
            }
            _ => err(format!(
                "An argument in '{}' is not a string, number, boolean, null, path or call.",
                self.text
            )),
        }
    }

    /// A '…' literal; `\'`, `\{`, `\}` and `\\` escape.
    fn string(&mut self) -> Result<String, IntrinsicError> {
        self.at += 1;
        let mut out = String::new();
        loop {
            match self.chars.get(self.at) {
                None => return err(format!("A string in '{}' is not closed.", self.text)),
                Some('\\') => {
                    let Some(next) = self.chars.get(self.at + 1) else {
                        return err(format!("A string in '{}' ends in a lone \\.", self.text));
                    };
                    // Braces stay escaped: Format tells them from placeholders.
                    if matches!(next, '{' | '}') {
                        out.push('\\');
                    }
                    out.push(*next);
                    self.at += 2;
                }
                Some('\'') => {
                    self.at += 1;
                    return Ok(out);
                }
                Some(c) => {
                    out.push(*c);
                    self.at += 1;
                }
            }
        }
    }
}

fn int(v: &Value, what: &str, f: &str) -> Result<i64, IntrinsicError> {
    match v.as_i64() {
        Some(n) => Ok(n),
        None => match v.as_f64() {
            Some(x) if x.fract() == 0.0 && x.abs() < 9e15 => Ok(x as i64),
            _ => err(format!("The {what} of {f} must be an integer, not {v}.")),
        },
    }
}

fn text<'a>(v: &'a Value, what: &str, f: &str) -> Result<&'a str, IntrinsicError> {
    v.as_str()
        .ok_or_else(|| IntrinsicError(format!("The {what} of {f} must be a string, not {v}.")))
}

fn array<'a>(v: &'a Value, what: &str, f: &str) -> Result<&'a Vec<Value>, IntrinsicError> {
    v.as_array()
        .ok_or_else(|| IntrinsicError(format!("The {what} of {f} must be an array, not {v}.")))
}

fn bounded(s: String, f: &str) -> Result<Value, IntrinsicError> {
    match s.chars().count() > MAX_STRING {
        true => err(format!(
            "{f} would make a string longer than {MAX_STRING} characters."
        )),
        false => Ok(Value::String(s)),
    }
}

/// How a value goes into a Format placeholder: strings as they are,
/// anything else as JSON.
fn formatted(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn run(f: &str, args: Vec<Value>, rng: &dyn Rng) -> Result<Value, IntrinsicError> {
    match f {
        "States.Format" => {
            let template = text(&args[0], "template", f)?;
            let mut values = args[1..].iter();
            let mut out = String::new();
            let mut chars = template.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            out.push(n);
                        }
                    }
                    '{' if chars.peek() == Some(&'}') => {
                        chars.next();
                        let v = values.next().ok_or_else(|| {
                            IntrinsicError(format!("{f} has more placeholders than arguments."))
                        })?;
                        out.push_str(&formatted(v));
                    }
                    c => out.push(c),
                }
            }
            if values.next().is_some() {
                return err(format!("{f} has more arguments than placeholders."));
            }
            bounded(out, f)
        }
        "States.StringToJson" => serde_json::from_str(text(&args[0], "argument", f)?)
            .map_err(|e| IntrinsicError(format!("{f}: the string is not JSON ({e})."))),
        "States.JsonToString" => bounded(args[0].to_string(), f),
        "States.Array" => Ok(Value::Array(args)),
        "States.ArrayPartition" => {
            let items = array(&args[0], "first argument", f)?;
            let size = int(&args[1], "chunk size", f)?;
            if size <= 0 {
                return err(format!("The chunk size of {f} must be positive."));
            }
            Ok(Value::Array(
                items
                    .chunks(size as usize)
                    .map(|c| Value::Array(c.to_vec()))
                    .collect(),
            ))
        }
        "States.ArrayContains" => Ok(json!(
            array(&args[0], "first argument", f)?.contains(&args[1])
        )),
        "States.ArrayRange" => {
            let (start, end, step) = (
                int(&args[0], "start", f)?,
                int(&args[1], "end", f)?,
                int(&args[2], "step", f)?,
            );
            if step == 0 {
                return err(format!("The step of {f} cannot be 0."));
            }
            let mut out = Vec::new();
            let mut n = start;
            while (step > 0 && n <= end) || (step < 0 && n >= end) {
                if out.len() >= MAX_ITEMS {
                    return err(format!("{f} would make more than {MAX_ITEMS} items."));
                }
                out.push(json!(n));
                n = n.saturating_add(step);
            }
            Ok(Value::Array(out))
        }
        "States.ArrayGetItem" => {
            let items = array(&args[0], "first argument", f)?;
            let i = int(&args[1], "index", f)?;
            usize::try_from(i)
                .ok()
                .and_then(|i| items.get(i))
                .cloned()
                .ok_or_else(|| {
                    IntrinsicError(format!("The index {i} is outside the array of {f}."))
                })
        }
        "States.ArrayLength" => Ok(json!(array(&args[0], "argument", f)?.len())),
        "States.ArrayUnique" => {
            let mut out: Vec<Value> = Vec::new();
            for v in array(&args[0], "argument", f)? {
                if !out.contains(v) {
                    out.push(v.clone());
                }
            }
            Ok(Value::Array(out))
        }
        "States.Base64Encode" => {
            let s = text(&args[0], "argument", f)?;
            if s.chars().count() > MAX_STRING {
                return err(format!(
                    "The argument of {f} is longer than {MAX_STRING} characters."
                ));
            }
            Ok(json!(base64::engine::general_purpose::STANDARD.encode(s)))
        }
        "States.Base64Decode" => {
            let s = text(&args[0], "argument", f)?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s)
                .map_err(|_| IntrinsicError(format!("The argument of {f} is not base64.")))?;
            bounded(
                String::from_utf8(bytes).map_err(|_| {
                    IntrinsicError(format!("{f}: the decoded bytes are not UTF-8."))
                })?,
                f,
            )
        }
        "States.Hash" => {
            use sha2::Digest;
            let data = match &args[0] {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if data.chars().count() > MAX_STRING {
                return err(format!(
                    "The data of {f} is longer than {MAX_STRING} characters."
                ));
            }
            let digest = match text(&args[1], "algorithm", f)? {
                "MD5" => hex::encode(md5::Md5::digest(data.as_bytes())),
                "SHA-1" => hex::encode(sha1::Sha1::digest(data.as_bytes())),
                "SHA-256" => hex::encode(sha2::Sha256::digest(data.as_bytes())),
                "SHA-384" => hex::encode(sha2::Sha384::digest(data.as_bytes())),
                "SHA-512" => hex::encode(sha2::Sha512::digest(data.as_bytes())),
                other => {
                    return err(format!(
                        "{f} takes MD5, SHA-1, SHA-256, SHA-384 or SHA-512, not {other}."
                    ))
                }
            };
            Ok(json!(digest))
        }
        "States.JsonMerge" => {
            if args[2] != json!(false) {
                return err(format!(
                    "{f} merges shallowly only: its third argument must be false."
                ));
            }
            let (Value::Object(a), Value::Object(b)) = (&args[0], &args[1]) else {
                return err(format!("{f} merges two objects."));
            };
            let mut out = a.clone();
            out.extend(b.clone());
            Ok(Value::Object(out))
        }
        "States.MathRandom" => {
            let (start, end) = (int(&args[0], "start", f)?, int(&args[1], "end", f)?);
            if end <= start {
                return err(format!("The end of {f} must be above its start."));
            }
            let span = (end - start) as f64;
            Ok(json!(start + (rng.unit() * span) as i64))
        }
        "States.MathAdd" => {
            let (a, b) = (
                int(&args[0], "first argument", f)?,
                int(&args[1], "second argument", f)?,
            );
            a.checked_add(b)
                .map(|n| json!(n))
                .ok_or_else(|| IntrinsicError(format!("{f} overflows.")))
        }
        "States.StringSplit" => {
            let s = text(&args[0], "string", f)?;
            let delimiters: Vec<char> = text(&args[1], "delimiters", f)?.chars().collect();
            let parts: Vec<Value> = s
                .split(|c| delimiters.contains(&c))
                .filter(|p| !p.is_empty())
                .map(|p| json!(p))
                .collect();
            match parts.len() > MAX_ITEMS {
                true => err(format!("{f} would make more than {MAX_ITEMS} items.")),
                false => Ok(Value::Array(parts)),
            }
        }
        "States.UUID" => {
            let mut bytes = [0u8; 16];
            for b in bytes.iter_mut() {
                *b = (rng.unit() * 256.0) as u8;
            }
            Ok(json!(uuid::Builder::from_random_bytes(bytes)
                .into_uuid()
                .to_string()))
        }
        other => err(format!("'{other}' is not an intrinsic function.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(f64);
    impl Rng for Fixed {
        fn unit(&self) -> f64 {
            self.0
        }
    }

    fn eval(text: &str, input: Value) -> Result<Value, IntrinsicError> {
        let scope = Scope {
            context: &json!({"Execution": {"Id": "x"}}),
            vars: &serde_json::Map::new(),
        };
        Call::parse(text)?.eval(&input, scope, &Fixed(0.5))
    }

    #[test]
    fn each_function_as_aws_documents_it() {
        let input = json!({"name": "wisp", "n": 3, "list": [1, 2, 2, 3], "obj": {"a": 1}});
        for (call, want) in [
            (
                "States.Format('Hello, {}! {} items', $.name, $.n)",
                json!("Hello, wisp! 3 items"),
            ),
            (
                "States.Format('a \\{\\} {}', $.obj)",
                json!("a {} {\"a\":1}"),
            ),
            ("States.StringToJson('{\"x\": [1]}')", json!({"x": [1]})),
            ("States.JsonToString($.obj)", json!("{\"a\":1}")),
            (
                "States.Array($.n, 'x', true, null, 1.5)",
                json!([3, "x", true, null, 1.5]),
            ),
            ("States.ArrayPartition($.list, 3)", json!([[1, 2, 2], [3]])),
            ("States.ArrayContains($.list, 3)", json!(true)),
            ("States.ArrayRange(1, 9, 2)", json!([1, 3, 5, 7, 9])),
            ("States.ArrayGetItem($.list, 1)", json!(2)),
            ("States.ArrayLength($.list)", json!(4)),
            ("States.ArrayUnique($.list)", json!([1, 2, 3])),
            (
                "States.Base64Encode('Data to encode')",
                json!("RGF0YSB0byBlbmNvZGU="),
            ),
            (
                "States.Base64Decode('RGF0YSB0byBlbmNvZGU=')",
                json!("Data to encode"),
            ),
            (
                "States.Hash('input data', 'SHA-1')",
                json!("aaff4a450a104cd177d28d18d74485e8cae074b7"),
            ),
            (
                "States.Hash('input data', 'MD5')",
                json!("812f45842bc6d66ee14572ce20db8e86"),
            ),
            (
                "States.JsonMerge($.obj, States.StringToJson('{\"b\": 2}'), false)",
                json!({"a": 1, "b": 2}),
            ),
            ("States.MathRandom(10, 20)", json!(15)),
            ("States.MathAdd($.n, -1)", json!(2)),
            ("States.StringSplit('1,2;3', ',;')", json!(["1", "2", "3"])),
            ("States.ArrayLength(States.Array(1, 2))", json!(2)),
            ("States.Format('{}', $$.Execution.Id)", json!("x")),
        ] {
            assert_eq!(eval(call, input.clone()).unwrap(), want, "{call}");
        }
        let id = eval("States.UUID()", json!({})).unwrap();
        assert_eq!(id.as_str().unwrap().len(), 36);
    }

    #[test]
    fn bad_calls_are_refused_and_failures_reported() {
        for bad in [
            "States.Nope(1)",
            "States.Format(",
            "States.Format('x'",
            "States.ArrayLength()",
            "States.UUID(1)",
            "States.Format('x') trailing",
            "States.Format(x)",
            "States.Format('unterminated)",
        ] {
            assert!(Call::parse(bad).is_err(), "{bad}");
        }
        let deep = format!("{}1{}", "States.Array(".repeat(20), ")".repeat(20));
        assert!(Call::parse(&deep).is_err());
        for failing in [
            "States.Format('{} {}', 1)",
            "States.StringToJson('nope')",
            "States.ArrayRange(1, 100000, 1)",
            "States.ArrayGetItem(States.Array(1), 5)",
            "States.Hash('x', 'CRC32')",
            "States.JsonMerge(States.Array(), States.Array(), false)",
            "States.JsonMerge(States.StringToJson('{}'), States.StringToJson('{}'), true)",
            "States.MathAdd(1.5, 1)",
            "States.ArrayLength($.missing)",
            "States.Base64Decode('***')",
        ] {
            assert!(eval(failing, json!({})).is_err(), "{failing}");
        }
    }
}
