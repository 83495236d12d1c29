//! JSONata's function library (version 2.0, as Step Functions runs it),
//! and the functions Step Functions adds: `$partition`, `$range`,
//! `$hash`, `$random` with a seed, `$uuid` and `$parse` (`$eval` is not
//! there, as on AWS). A function given fewer arguments than it takes
//! starts from the context (`name.$uppercase()`).

use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::eval::{equal, fail, number, truthy, Ev, EvalError, MAX_ITEMS, R, V};
use super::pictures;

/// The longest string a function makes.
const MAX_STRING: usize = 1 << 20;

const NAMES: [&str; 68] = [
    "string",
    "length",
    "substring",
    "substringBefore",
    "substringAfter",
    "uppercase",
    "lowercase",
    "trim",
    "pad",
    "contains",
    "split",
    "join",
    "match",
    "replace",
    "base64encode",
    "base64decode",
    "encodeUrlComponent",
    "encodeUrl",
    "decodeUrlComponent",
    "decodeUrl",
    "number",
    "abs",
    "floor",
    "ceil",
    "round",
    "power",
    "sqrt",
    "random",
    "formatNumber",
    "formatBase",
    "sum",
    "max",
    "min",
    "average",
    "boolean",
    "not",
    "exists",
    "count",
    "append",
    "sort",
    "reverse",
    "shuffle",
    "distinct",
    "zip",
    "keys",
    "lookup",
    "spread",
    "merge",
    "sift",
    "each",
    "error",
    "assert",
    "type",
    "now",
    "millis",
    "fromMillis",
    "toMillis",
    "map",
    "filter",
    "single",
    "reduce",
    "partition",
    "range",
    "hash",
    "uuid",
    "parse",
    "parseInteger",
    "formatInteger",
];

/// The built-in function a name is, if it is one.
pub fn builtin(name: &str) -> Option<&'static str> {
    NAMES.iter().copied().find(|n| *n == name)
}

/// `$string`'s text of a value: strings as they are, numbers as JSONata
/// prints them (15 significant digits), anything else as JSON.
pub fn to_text(v: &Value) -> R<String> {
    Ok(match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => number_text(n.as_f64().unwrap_or(0.0))?,
        other => other.to_string(),
    })
}

fn number_text(x: f64) -> R<String> {
    if !x.is_finite() {
        return fail(
            "D3001",
            "Attempting to invoke string function on Infinity or NaN",
        );
    }
    let rounded: f64 = format!("{x:.14e}").parse().unwrap_or(x);
    Ok(if rounded.fract() == 0.0 && rounded.abs() < 1e21 {
        format!("{}", rounded as i128)
    } else {
        format!("{rounded}")
    })
}

fn arg(args: &[V], i: usize) -> Option<Value> {
    args.get(i).cloned().and_then(V::finish)
}

fn text(args: &[V], i: usize, f: &str) -> R<Option<String>> {
    match arg(args, i) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => fail(
            "T0410",
            format!("Argument {} of function ${f} must be a string", i + 1),
        ),
    }
}

fn num(args: &[V], i: usize, f: &str) -> R<Option<f64>> {
    match arg(args, i) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => fail(
            "T0410",
            format!("Argument {} of function ${f} must be a number", i + 1),
        ),
    }
}

fn list(args: &[V], i: usize) -> Vec<Value> {
    args.get(i).cloned().map(V::items).unwrap_or_default()
}

fn s(x: impl Into<String>) -> R<V> {
    let x = x.into();
    if x.len() > MAX_STRING {
        return fail("D3001", format!("A string longer than {MAX_STRING} bytes"));
    }
    Ok(V::J(Value::String(x)))
}

fn n(x: f64) -> R<V> {
    Ok(V::J(number(x)?))
}

fn b(x: bool) -> R<V> {
    Ok(V::J(Value::Bool(x)))
}

fn arr(items: Vec<Value>) -> R<V> {
    Ok(V::J(Value::Array(items)))
}

/// Functions whose first argument the context stands in for.
fn takes_context(f: &str) -> bool {
    !matches!(
        f,
        "now" | "millis" | "random" | "uuid" | "error" | "range" | "zip" | "append" | "merge"
    )
}

pub fn call(ev: &Ev, f: &str, mut args: Vec<V>, ctx: &Value) -> R<V> {
    if args.is_empty() && takes_context(f) {
        args.push(V::J(ctx.clone()));
    }
    let a = &args;
    let undefined_first = a.first().is_none_or(V::is_undefined);
    // Most functions give nothing for nothing.
    if undefined_first
        && !matches!(
            f,
            "exists"
                | "count"
                | "now"
                | "millis"
                | "random"
                | "uuid"
                | "error"
                | "assert"
                | "append"
                | "range"
                | "zip"
                | "boolean"
                | "type"
                | "sum"
                | "merge"
        )
    {
        return Ok(V::U);
    }
    match f {
        "string" => match arg(a, 0) {
            None => Ok(V::U),
            Some(v) => {
                let pretty = arg(a, 1).is_some_and(|p| p == Value::Bool(true));
                match (&v, pretty) {
                    (Value::Object(_) | Value::Array(_), true) => {
                        s(serde_json::to_string_pretty(&v).unwrap_or_default())
                    }
                    _ => s(to_text(&v)?),
                }
            }
        },
        "length" => n(text(a, 0, f)?.unwrap_or_default().chars().count() as f64),
        "substring" => {
            let t: Vec<char> = text(a, 0, f)?.unwrap_or_default().chars().collect();
            let len = t.len() as i64;
            let mut start = num(a, 1, f)?.unwrap_or(0.0) as i64;
            if start < 0 {
                start = (len + start).max(0);
            }
            let start = start.min(len) as usize;
            let take = match num(a, 2, f)? {
                Some(l) if l <= 0.0 => 0,
                Some(l) => l as usize,
                None => t.len(),
            };
            s(t[start..].iter().take(take).collect::<String>())
        }
        "substringBefore" | "substringAfter" => {
            let t = text(a, 0, f)?.unwrap_or_default();
            let Some(sep) = text(a, 1, f)? else {
                return s(t);
            };
            match t.find(&sep) {
                None => s(t),
                Some(i) if f == "substringBefore" => s(&t[..i]),
                Some(i) => s(&t[i + sep.len()..]),
            }
        }
        "uppercase" => s(text(a, 0, f)?.unwrap_or_default().to_uppercase()),
        "lowercase" => s(text(a, 0, f)?.unwrap_or_default().to_lowercase()),
        "trim" => s(text(a, 0, f)?
            .unwrap_or_default()
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")),
        "pad" => {
            let t = text(a, 0, f)?.unwrap_or_default();
            let width = num(a, 1, f)?.unwrap_or(0.0);
            if width.abs() > MAX_STRING as f64 {
                return fail("D3001", "$pad: the width is too large");
            }
            let fill = text(a, 2, f)?
                .filter(|c| !c.is_empty())
                .unwrap_or(" ".into());
            let have = t.chars().count();
            let need = (width.abs() as usize).saturating_sub(have);
            let padding: String = fill.chars().cycle().take(need).collect();
            s(if width < 0.0 {
                padding + &t
            } else {
                t + &padding
            })
        }
        "contains" => {
            let t = text(a, 0, f)?.unwrap_or_default();
            match a.get(1) {
                Some(V::R(r)) => b(r.is_match(&t)),
                _ => b(t.contains(&text(a, 1, f)?.unwrap_or_default())),
            }
        }
        "split" => {
            let t = text(a, 0, f)?.unwrap_or_default();
            let limit = num(a, 2, f)?
                .map(|l| l.max(0.0) as usize)
                .unwrap_or(usize::MAX);
            let parts: Vec<Value> = match a.get(1) {
                Some(V::R(r)) => r.split(&t).take(limit).map(|p| json!(p)).collect(),
                _ => {
                    let sep = text(a, 1, f)?.unwrap_or_default();
                    if sep.is_empty() {
                        t.chars()
                            .take(limit)
                            .map(|c| json!(c.to_string()))
                            .collect()
                    } else {
                        t.split(sep.as_str())
                            .take(limit)
                            .map(|p| json!(p))
                            .collect()
                    }
                }
            };
            arr(parts)
        }
        "join" => {
            let sep = text(a, 1, f)?.unwrap_or_default();
            let mut parts = Vec::new();
            for v in list(a, 0) {
                match v {
                    Value::String(x) => parts.push(x),
                    _ => {
                        return fail(
                            "T0412",
                            "Argument 1 of function $join must be an array of strings",
                        )
                    }
                }
            }
            s(parts.join(&sep))
        }
        "match" => {
            let t = text(a, 0, f)?.unwrap_or_default();
            let Some(V::R(r)) = a.get(1) else {
                return fail(
                    "T0410",
                    "Argument 2 of function $match must be a regular expression",
                );
            };
            let limit = num(a, 2, f)?
                .map(|l| l.max(0.0) as usize)
                .unwrap_or(usize::MAX);
            let found: Vec<Value> = r
                .captures_iter(&t)
                .take(limit)
                .map(|c| {
                    let whole = c.get(0).map_or("", |m| m.as_str());
                    let index = c.get(0).map_or(0, |m| t[..m.start()].chars().count());
                    let groups: Vec<Value> = c
                        .iter()
                        .skip(1)
                        .map(|g| json!(g.map_or("", |m| m.as_str())))
                        .collect();
                    json!({"match": whole, "index": index, "groups": groups})
                })
                .collect();
            match found.len() {
                0 => Ok(V::U),
                _ => Ok(V::S(found)),
            }
        }
        "replace" => {
            let t = text(a, 0, f)?.unwrap_or_default();
            let Some(with) = text(a, 2, f)? else {
                return fail("T0410", "Argument 3 of function $replace must be a string");
            };
            let limit = num(a, 3, f)?
                .map(|l| l.max(0.0) as usize)
                .unwrap_or(usize::MAX);
            match a.get(1) {
                Some(V::R(r)) => {
                    // JSONata writes $0, $1… for the groups, as the regex crate reads ${0}.
                    let with = with.replace("$$", "\u{0}");
                    let with = regex::Regex::new(r"\$(\d+)")
                        .map(|g| g.replace_all(&with, "$${${1}}").into_owned())
                        .unwrap_or(with)
                        .replace('\u{0}', "$$");
                    s(r.replacen(&t, limit, with.as_str()).into_owned())
                }
                _ => {
                    let from = text(a, 1, f)?.unwrap_or_default();
                    if from.is_empty() {
                        return fail(
                            "D3010",
                            "Second argument of replace function cannot be an empty string",
                        );
                    }
                    s(t.replacen(&from, &with, limit))
                }
            }
        }
        "base64encode" => s(
            base64::engine::general_purpose::STANDARD.encode(text(a, 0, f)?.unwrap_or_default())
        ),
        "base64decode" => {
            let t = text(a, 0, f)?.unwrap_or_default();
            match base64::engine::general_purpose::STANDARD.decode(t.as_bytes()) {
                Ok(bytes) => s(String::from_utf8_lossy(&bytes).into_owned()),
                Err(_) => fail("D3137", "$base64decode: the argument is not base64"),
            }
        }
        "encodeUrlComponent" => s(encode(&text(a, 0, f)?.unwrap_or_default(), "")),
        "encodeUrl" => s(encode(&text(a, 0, f)?.unwrap_or_default(), ";,/?:@&=+$#")),
        "decodeUrlComponent" | "decodeUrl" => match decode(&text(a, 0, f)?.unwrap_or_default()) {
            Ok(t) => s(t),
            Err(why) => fail("D3140", format!("Malformed URL passed to ${f}(): {why}")),
        },
        "number" => match arg(a, 0) {
            Some(Value::Number(x)) => Ok(V::J(Value::Number(x))),
            Some(Value::Bool(x)) => n(if x { 1.0 } else { 0.0 }),
            Some(Value::String(t)) => {
                let parsed = match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
                    Some(hex) => i64::from_str_radix(hex, 16).ok().map(|x| x as f64),
                    None => serde_json::from_str::<f64>(t.trim()).ok(),
                };
                match parsed {
                    Some(x) => n(x),
                    None => fail(
                        "D3030",
                        format!("Unable to cast value to a number: \"{t}\""),
                    ),
                }
            }
            _ => fail("D3030", "Unable to cast value to a number"),
        },
        "abs" => n(num(a, 0, f)?.unwrap_or(0.0).abs()),
        "floor" => n(num(a, 0, f)?.unwrap_or(0.0).floor()),
        "ceil" => n(num(a, 0, f)?.unwrap_or(0.0).ceil()),
        "round" => {
            let x = num(a, 0, f)?.unwrap_or(0.0);
            let places = num(a, 1, f)?.unwrap_or(0.0) as i32;
            let scale = 10f64.powi(places);
            let scaled = x * scale;
            // Half to even, as JSONata rounds.
            let r = scaled.round();
            let r = if (scaled - scaled.trunc()).abs() == 0.5 && r % 2.0 != 0.0 {
                r - scaled.signum()
            } else {
                r
            };
            n(r / scale)
        }
        "power" => n(num(a, 0, f)?
            .unwrap_or(0.0)
            .powf(num(a, 1, f)?.unwrap_or(1.0))),
        "sqrt" => {
            let x = num(a, 0, f)?.unwrap_or(0.0);
            if x < 0.0 {
                return fail(
                    "D3060",
                    "The sqrt function cannot be applied to a negative number",
                );
            }
            n(x.sqrt())
        }
        "random" => {
            // A seed makes it repeatable, as Step Functions' $random(seed) is.
            let x = match num(a, 0, f)? {
                Some(seed) => {
                    let mut z = (seed.to_bits()).wrapping_add(0x9E37_79B9_7F4A_7C15);
                    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                    ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
                }
                None => {
                    let bytes = uuid::Uuid::new_v4();
                    let top =
                        u64::from_le_bytes(bytes.as_bytes()[..8].try_into().unwrap_or([0; 8]));
                    (top >> 11) as f64 / (1u64 << 53) as f64
                }
            };
            n(x)
        }
        "formatNumber" => {
            let x = num(a, 0, f)?.unwrap_or(0.0);
            let picture = text(a, 1, f)?.unwrap_or_default();
            s(format_number(x, &picture)?)
        }
        "formatBase" => {
            let x = num(a, 0, f)?.unwrap_or(0.0).round() as i64;
            let radix = num(a, 1, f)?.unwrap_or(10.0) as u32;
            if !(2..=36).contains(&radix) {
                return fail(
                    "D3100",
                    "The radix of the formatBase function must be between 2 and 36",
                );
            }
            let mut digits = Vec::new();
            let mut m = x.unsigned_abs();
            loop {
                digits.push(std::char::from_digit((m % radix as u64) as u32, radix).unwrap_or('0'));
                m /= radix as u64;
                if m == 0 {
                    break;
                }
            }
            if x < 0 {
                digits.push('-');
            }
            s(digits.into_iter().rev().collect::<String>())
        }
        "parseInteger" => {
            let t = text(a, 0, f)?.unwrap_or_default();
            match t.trim().replace(',', "").parse::<f64>() {
                Ok(x) => n(x.trunc()),
                Err(_) => fail("D3137", format!("$parseInteger: cannot read \"{t}\"")),
            }
        }
        "sum" | "max" | "min" | "average" => {
            let mut xs = Vec::new();
            for v in list(a, 0) {
                match v.as_f64() {
                    Some(x) => xs.push(x),
                    None => {
                        return fail(
                            "T0412",
                            format!("Argument 1 of function ${f} must be an array of numbers"),
                        )
                    }
                }
            }
            match f {
                "sum" => n(xs.iter().sum()),
                _ if xs.is_empty() => Ok(V::U),
                "max" => n(xs.iter().copied().fold(f64::MIN, f64::max)),
                "min" => n(xs.iter().copied().fold(f64::MAX, f64::min)),
                _ => n(xs.iter().sum::<f64>() / xs.len() as f64),
            }
        }
        "boolean" => match a.first() {
            None => Ok(V::U),
            Some(v) if v.is_undefined() => Ok(V::U),
            Some(v) => b(truthy(v)),
        },
        "not" => b(!truthy(&a[0])),
        "exists" => b(a.first().is_some_and(|v| !v.is_undefined())),
        "count" => n(list(a, 0).len() as f64),
        "append" => {
            let mut out = list(a, 0);
            out.extend(list(a, 1));
            if out.is_empty() {
                return Ok(V::U);
            }
            arr(out)
        }
        "sort" => {
            let mut items = list(a, 0);
            match a.get(1) {
                Some(func @ V::F(_)) => {
                    // Insertion by the function's "a after b" answer: stable.
                    let mut sorted: Vec<Value> = Vec::with_capacity(items.len());
                    for item in items {
                        let mut at = sorted.len();
                        while at > 0 {
                            let after = ev.apply(
                                func,
                                vec![V::J(sorted[at - 1].clone()), V::J(item.clone())],
                                ctx,
                                "sort",
                            )?;
                            if !truthy(&after) {
                                break;
                            }
                            at -= 1;
                        }
                        sorted.insert(at, item);
                    }
                    arr(sorted)
                }
                _ => {
                    if items.iter().all(Value::is_number) {
                        items.sort_by(|x, y| {
                            x.as_f64()
                                .partial_cmp(&y.as_f64())
                                .unwrap_or(std::cmp::Ordering::Equal)
                        });
                    } else if items.iter().all(Value::is_string) {
                        items.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
                    } else {
                        return fail("D3070", "The single argument form of the sort function can only be applied to an array of strings or an array of numbers");
                    }
                    arr(items)
                }
            }
        }
        "reverse" => {
            let mut items = list(a, 0);
            items.reverse();
            arr(items)
        }
        "shuffle" => {
            let mut items = list(a, 0);
            for i in (1..items.len()).rev() {
                let j = (uuid::Uuid::new_v4().as_u128() % (i as u128 + 1)) as usize;
                items.swap(i, j);
            }
            arr(items)
        }
        "distinct" => {
            let mut out: Vec<Value> = Vec::new();
            for v in list(a, 0) {
                if !out.iter().any(|o| equal(o, &v)) {
                    out.push(v);
                }
            }
            arr(out)
        }
        "zip" => {
            let lists: Vec<Vec<Value>> = (0..a.len()).map(|i| list(a, i)).collect();
            let shortest = lists.iter().map(Vec::len).min().unwrap_or(0);
            arr((0..shortest)
                .map(|i| Value::Array(lists.iter().map(|l| l[i].clone()).collect()))
                .collect())
        }
        "keys" => {
            let mut keys: Vec<Value> = Vec::new();
            for v in list(a, 0) {
                if let Value::Object(m) = v {
                    for k in m.keys() {
                        if !keys.iter().any(|x| x.as_str() == Some(k)) {
                            keys.push(json!(k));
                        }
                    }
                }
            }
            Ok(if keys.is_empty() { V::U } else { V::S(keys) })
        }
        "lookup" => {
            let key = text(a, 1, f)?.unwrap_or_default();
            let mut out = Vec::new();
            for v in list(a, 0) {
                if let Some(found) = v.get(&key) {
                    match found {
                        Value::Array(x) => out.extend(x.iter().cloned()),
                        other => out.push(other.clone()),
                    }
                }
            }
            Ok(V::S(out))
        }
        "spread" => {
            let mut out = Vec::new();
            for v in list(a, 0) {
                match v {
                    Value::Object(m) => {
                        for (k, v) in m {
                            out.push(json!({ k: v }));
                        }
                    }
                    other => out.push(other),
                }
            }
            Ok(V::S(out))
        }
        "merge" => {
            let mut out = Map::new();
            for v in list(a, 0) {
                match v {
                    Value::Object(m) => out.extend(m),
                    _ => {
                        return fail(
                            "T0412",
                            "Argument 1 of function $merge must be an array of objects",
                        )
                    }
                }
            }
            Ok(V::J(Value::Object(out)))
        }
        "sift" | "each" => {
            let Some(Value::Object(m)) = arg(a, 0) else {
                return fail(
                    "T0410",
                    format!("Argument 1 of function ${f} must be an object"),
                );
            };
            let func = a.get(1).cloned().unwrap_or(V::U);
            let mut kept = Map::new();
            let mut each = Vec::new();
            for (k, v) in &m {
                let r = ev.apply(
                    &func,
                    vec![
                        V::J(v.clone()),
                        V::J(json!(k)),
                        V::J(Value::Object(m.clone())),
                    ],
                    ctx,
                    f,
                )?;
                if f == "sift" {
                    if truthy(&r) {
                        kept.insert(k.clone(), v.clone());
                    }
                } else if let Some(x) = r.finish() {
                    each.push(x);
                }
            }
            if f == "sift" {
                Ok(if kept.is_empty() {
                    V::U
                } else {
                    V::J(Value::Object(kept))
                })
            } else {
                Ok(V::S(each))
            }
        }
        "error" => fail(
            "D3137",
            text(a, 0, f)?.unwrap_or_else(|| "$error() function evaluated".into()),
        ),
        "assert" => {
            if truthy(a.first().unwrap_or(&V::U)) {
                Ok(V::U)
            } else {
                fail(
                    "D3141",
                    text(a, 1, f)?.unwrap_or_else(|| "$assert() statement failed".into()),
                )
            }
        }
        "type" => Ok(match a.first() {
            None | Some(V::U) => V::U,
            Some(V::F(_) | V::R(_)) => V::J(json!("function")),
            Some(v) => match v.clone().finish() {
                None => V::U,
                Some(Value::Null) => V::J(json!("null")),
                Some(Value::Bool(_)) => V::J(json!("boolean")),
                Some(Value::Number(_)) => V::J(json!("number")),
                Some(Value::String(_)) => V::J(json!("string")),
                Some(Value::Array(_)) => V::J(json!("array")),
                Some(Value::Object(_)) => V::J(json!("object")),
            },
        }),
        "now" => match (text(a, 0, f)?, text(a, 1, f)?) {
            (None, None) => s(crate::time_text(now_ms())),
            (picture, zone) => from_millis(now_ms(), picture, zone),
        },
        "millis" => n(now_ms() as f64),
        "fromMillis" => {
            let Some(ms) = num(a, 0, f)? else {
                return Ok(V::U);
            };
            match (text(a, 1, f)?, text(a, 2, f)?) {
                (None, None) => s(crate::time_text(ms as i64)),
                (picture, zone) => from_millis(ms as i64, picture, zone),
            }
        }
        "formatInteger" => {
            let Some(x) = num(a, 0, f)? else {
                return Ok(V::U);
            };
            let picture = text(a, 1, f)?.unwrap_or_default();
            match pictures::format_integer(x.round() as i64, &picture) {
                Ok(t) => s(t),
                Err(e) => Err(EvalError(e)),
            }
        }
        "toMillis" => {
            let Some(t) = text(a, 0, f)? else {
                return Ok(V::U);
            };
            if let Some(picture) = text(a, 1, f)? {
                return match pictures::parse_time(&t, &picture, now_ms()) {
                    Ok(ms) => n(ms as f64),
                    Err(e) => Err(EvalError(e)),
                };
            }
            match time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339) {
                Ok(d) => n((d.unix_timestamp_nanos() / 1_000_000) as f64),
                Err(_) => fail("D3110", format!("The timestamp \"{t}\" is not ISO 8601")),
            }
        }
        "map" | "filter" | "single" => {
            let items = list(a, 0);
            let func = a.get(1).cloned().unwrap_or(V::U);
            let whole = Value::Array(items.clone());
            let mut out = Vec::new();
            for (i, item) in items.into_iter().enumerate() {
                let r = callback(ev, &func, &item, i, &whole, ctx, f)?;
                match f {
                    "map" => {
                        if let Some(x) = r.finish() {
                            out.push(x);
                        }
                    }
                    _ => {
                        if truthy(&r) {
                            out.push(item);
                        }
                    }
                }
            }
            if f == "single" {
                return match out.len() {
                    1 => Ok(V::J(out.remove(0))),
                    0 => fail("D3139", "The $single() function expected exactly 1 matching result. Instead it matched 0."),
                    m => fail("D3138", format!("The $single() function expected exactly 1 matching result. Instead it matched {m}.")),
                };
            }
            Ok(V::S(out))
        }
        "reduce" => {
            let mut items = list(a, 0).into_iter();
            let func = a.get(1).cloned().unwrap_or(V::U);
            let mut acc = match a.get(2) {
                Some(init) => init.clone(),
                None => items.next().map_or(V::U, V::J),
            };
            for item in items {
                acc = ev.apply(&func, vec![acc, V::J(item)], ctx, f)?;
            }
            Ok(acc)
        }
        "partition" => {
            let items = list(a, 0);
            let size = num(a, 1, f)?.unwrap_or(0.0);
            if size < 1.0 || size.fract() != 0.0 {
                return fail(
                    "D3137",
                    "$partition: the chunk size must be a positive integer",
                );
            }
            arr(items
                .chunks(size as usize)
                .map(|c| Value::Array(c.to_vec()))
                .collect())
        }
        "range" => {
            let (Some(start), Some(end), Some(step)) =
                (num(a, 0, f)?, num(a, 1, f)?, num(a, 2, f)?)
            else {
                return fail("D3137", "$range takes a start, an end and a step");
            };
            if step == 0.0 {
                return fail("D3137", "$range: the step must not be 0");
            }
            let count = ((end - start) / step).floor() + 1.0;
            if count > MAX_ITEMS as f64 {
                return fail("D3137", format!("$range: more than {MAX_ITEMS} items"));
            }
            let count = count.max(0.0) as usize;
            arr((0..count)
                .map(|i| number(start + i as f64 * step))
                .collect::<R<Vec<_>>>()?)
        }
        "hash" => {
            use sha2::Digest as _;
            let data = text(a, 0, f)?.unwrap_or_default();
            let algorithm = text(a, 1, f)?.unwrap_or_default();
            let bytes = data.as_bytes();
            s(match algorithm.as_str() {
                "MD5" => hex::encode(md5::Md5::digest(bytes)),
                "SHA-1" => hex::encode(sha1::Sha1::digest(bytes)),
                "SHA-256" => hex::encode(sha2::Sha256::digest(bytes)),
                "SHA-384" => hex::encode(sha2::Sha384::digest(bytes)),
                "SHA-512" => hex::encode(sha2::Sha512::digest(bytes)),
                other => return fail("D3137", format!("$hash: the algorithm is one of MD5, SHA-1, SHA-256, SHA-384, SHA-512, not {other}")),
            })
        }
        "uuid" => s(uuid::Uuid::new_v4().to_string()),
        "parse" => {
            let t = text(a, 0, f)?.unwrap_or_default();
            match serde_json::from_str::<Value>(&t) {
                Ok(v) => Ok(V::J(v)),
                Err(e) => fail("D3137", format!("$parse: the string is not JSON: {e}")),
            }
        }
        _ => fail(
            "T1006",
            format!("Attempted to invoke a non-function (${f})"),
        ),
    }
}

/// Calls a HOF's function with the item (a lambda also with the index
/// and the whole array, as many as it takes).
fn callback(
    ev: &Ev,
    func: &V,
    item: &Value,
    i: usize,
    whole: &Value,
    ctx: &Value,
    f: &str,
) -> R<V> {
    let args = match func {
        V::F(f) => {
            let all = [V::J(item.clone()), V::J(json!(i)), V::J(whole.clone())];
            all.into_iter().take(f.arity().max(1)).collect()
        }
        _ => vec![V::J(item.clone())],
    };
    ev.apply(func, args, ctx, f)
}

/// `$fromMillis` with a picture, a time zone, or both.
fn from_millis(ms: i64, picture: Option<String>, zone: Option<String>) -> R<V> {
    let zone = match zone {
        Some(z) => pictures::offset(&z).map_err(EvalError)?,
        None => time::UtcOffset::UTC,
    };
    let picture = picture.unwrap_or_else(|| pictures::ISO.to_string());
    pictures::format_time(ms, &picture, zone)
        .map(|t| V::J(Value::String(t)))
        .map_err(EvalError)
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
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

/// Percent-decoding, the bytes then read as UTF-8.
fn decode(text: &str) -> Result<String, &'static str> {
    let b = text.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let byte = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("malformed percent-encoding")?;
            out.push(byte);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the decoded bytes are not UTF-8")
}

/// `$formatNumber` for the common pictures: `#` and `0` digits, `,`
/// grouping, `.` decimals, a `%` or `‰` suffix, text around them.
fn format_number(x: f64, picture: &str) -> R<String> {
    let start = picture.find(['#', '0']).unwrap_or(picture.len());
    let end = picture.rfind(['#', '0']).map_or(start, |i| i + 1);
    let (prefix, body, suffix) = (&picture[..start], &picture[start..end], &picture[end..]);
    let scale = if suffix.contains('%') {
        100.0
    } else if suffix.contains('‰') {
        1000.0
    } else {
        1.0
    };
    let (int_pic, frac_pic) = body.split_once('.').unwrap_or((body, ""));
    let min_frac = frac_pic.chars().filter(|c| *c == '0').count();
    let max_frac = frac_pic.chars().filter(|c| *c == '0' || *c == '#').count();
    let min_int = int_pic.chars().filter(|c| *c == '0').count().max(1);
    let group = int_pic.rfind(',').map(|i| {
        int_pic[i + 1..]
            .chars()
            .filter(|c| *c == '0' || *c == '#')
            .count()
    });
    let value = (x * scale).abs();
    let fixed = format!("{value:.max_frac$}");
    let (int_part, frac_part) = fixed.split_once('.').unwrap_or((&fixed, ""));
    let mut frac = frac_part.to_string();
    while frac.len() > min_frac && frac.ends_with('0') {
        frac.pop();
    }
    let mut int_digits = format!("{int_part:0>min_int$}");
    if let Some(g) = group.filter(|g| *g > 0) {
        let digits: Vec<char> = int_digits.chars().collect();
        let mut grouped = String::new();
        for (i, c) in digits.iter().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(g) {
                grouped.push(',');
            }
            grouped.push(*c);
        }
        int_digits = grouped;
    }
    let sign = if x < 0.0 { "-" } else { "" };
    let number = if frac.is_empty() {
        int_digits
    } else {
        format!("{int_digits}.{frac}")
    };
    Ok(format!("{prefix}{sign}{number}{suffix}"))
}
