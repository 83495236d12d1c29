//! Choice rules (JSONPath): a Variable compared with a literal or another
//! path (`…Path`), type tests (`Is…`), and `And`, `Or`, `Not`. A variable
//! the input lacks, or of another type than the comparison's, makes the
//! comparison false (IsPresent tests exactly that).

use serde_json::{Map, Value};

use wisp_core::pattern::wildcard as glob;

use crate::path::{Path, Scope};

/// A compiled rule.
#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    And(Vec<Rule>),
    Or(Vec<Rule>),
    Not(Box<Rule>),
    Compare {
        variable: Path,
        test: Test,
        /// A literal, or a path into the input (`…Path` forms).
        against: Against,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Against {
    Value(Value),
    Path(Path),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    String,
    Numeric,
    Boolean,
    Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Test {
    Equals(Kind),
    LessThan(Kind),
    LessThanEquals(Kind),
    GreaterThan(Kind),
    GreaterThanEquals(Kind),
    StringMatches,
    IsNull,
    IsPresent,
    IsNumeric,
    IsString,
    IsBoolean,
    IsTimestamp,
}

const KINDS: [(&str, Kind); 4] = [
    ("String", Kind::String),
    ("Numeric", Kind::Numeric),
    ("Boolean", Kind::Boolean),
    ("Timestamp", Kind::Timestamp),
];

/// The comparison operator a field names, if it is one.
fn operator(name: &str) -> Option<(Test, bool)> {
    let (base, path) = match name.strip_suffix("Path") {
        Some(b) => (b, true),
        None => (name, false),
    };
    let test = match base {
        "StringMatches" if !path => Test::StringMatches,
        "IsNull" => Test::IsNull,
        "IsPresent" => Test::IsPresent,
        "IsNumeric" => Test::IsNumeric,
        "IsString" => Test::IsString,
        "IsBoolean" => Test::IsBoolean,
        "IsTimestamp" => Test::IsTimestamp,
        _ => {
            let (kind_name, kind) = KINDS.iter().find(|(k, _)| base.starts_with(k))?;
            match &base[kind_name.len()..] {
                "Equals" => Test::Equals(*kind),
                "LessThan" if *kind != Kind::Boolean => Test::LessThan(*kind),
                "LessThanEquals" if *kind != Kind::Boolean => Test::LessThanEquals(*kind),
                "GreaterThan" if *kind != Kind::Boolean => Test::GreaterThan(*kind),
                "GreaterThanEquals" if *kind != Kind::Boolean => Test::GreaterThanEquals(*kind),
                _ => return None,
            }
        }
    };
    let is_type_test = matches!(
        test,
        Test::IsNull
            | Test::IsPresent
            | Test::IsNumeric
            | Test::IsString
            | Test::IsBoolean
            | Test::IsTimestamp
    );
    if is_type_test && path {
        return None;
    }
    Some((test, path))
}

/// The fields a rule has besides its operator (Next on a top-level one,
/// Comment anywhere).
fn others(m: &Map<String, Value>, top: bool) -> impl Iterator<Item = &String> {
    m.keys().filter(move |k| {
        k.as_str() != "Comment" && !(top && matches!(k.as_str(), "Next" | "Assign"))
    })
}

impl Rule {
    /// Compiles a rule as written in a Choice state (`top`: one of its
    /// Choices, which carries Next).
    pub fn compile(v: &Value, top: bool) -> Result<Rule, String> {
        Rule::compile_at(v, top, 0)
    }

    fn compile_at(v: &Value, top: bool, depth: usize) -> Result<Rule, String> {
        if depth > 32 {
            return Err("a Choice rule nests deeper than 32 levels".into());
        }
        let m = v.as_object().ok_or("a Choice rule is an object")?;
        for (key, combine) in [("And", true), ("Or", false)] {
            if let Some(list) = m.get(key) {
                let rules = list
                    .as_array()
                    .filter(|l| !l.is_empty())
                    .ok_or_else(|| format!("{key} takes a non-empty array of rules"))?
                    .iter()
                    .map(|r| Rule::compile_at(r, false, depth + 1))
                    .collect::<Result<Vec<_>, _>>()?;
                if others(m, top).count() != 1 {
                    return Err(format!("a rule with {key} has no other operator"));
                }
                return Ok(if combine {
                    Rule::And(rules)
                } else {
                    Rule::Or(rules)
                });
            }
        }
        if let Some(inner) = m.get("Not") {
            if others(m, top).count() != 1 {
                return Err("a rule with Not has no other operator".into());
            }
            return Ok(Rule::Not(Box::new(Rule::compile_at(
                inner,
                false,
                depth + 1,
            )?)));
        }
        let variable = m
            .get("Variable")
            .and_then(Value::as_str)
            .ok_or("a comparison needs a Variable (a path)")?;
        let variable = Path::parse(variable).map_err(|e| e.0)?;
        let ops: Vec<&String> = others(m, top)
            .filter(|k| k.as_str() != "Variable")
            .collect();
        let [op] = ops[..] else {
            return Err(format!(
                "a comparison has exactly one operator, not {}",
                ops.len()
            ));
        };
        let (test, is_path) =
            operator(op).ok_or_else(|| format!("{op} is not a comparison operator"))?;
        let given = &m[op.as_str()];
        let against = if is_path {
            let text = given.as_str().ok_or_else(|| format!("{op} takes a path"))?;
            Against::Path(Path::parse(text).map_err(|e| e.0)?)
        } else {
            let ok = match test {
                Test::Equals(Kind::String)
                | Test::LessThan(Kind::String)
                | Test::LessThanEquals(Kind::String)
                | Test::GreaterThan(Kind::String)
                | Test::GreaterThanEquals(Kind::String)
                | Test::StringMatches => given.is_string(),
                Test::Equals(Kind::Timestamp)
                | Test::LessThan(Kind::Timestamp)
                | Test::LessThanEquals(Kind::Timestamp)
                | Test::GreaterThan(Kind::Timestamp)
                | Test::GreaterThanEquals(Kind::Timestamp) => {
                    given.as_str().and_then(timestamp).is_some()
                }
                Test::Equals(Kind::Numeric)
                | Test::LessThan(Kind::Numeric)
                | Test::LessThanEquals(Kind::Numeric)
                | Test::GreaterThan(Kind::Numeric)
                | Test::GreaterThanEquals(Kind::Numeric) => given.is_number(),
                _ => given.is_boolean(),
            };
            if !ok {
                return Err(format!("{op} takes a value of its type, not {given}"));
            }
            Against::Value(given.clone())
        };
        Ok(Rule::Compare {
            variable,
            test,
            against,
        })
    }

    /// Whether the rule holds for `input` (`scope` for `$$` and variables).
    pub fn holds(&self, input: &Value, scope: Scope<'_>) -> bool {
        let read = |p: &Path| p.read_in(input, scope);
        match self {
            Rule::And(rules) => rules.iter().all(|r| r.holds(input, scope)),
            Rule::Or(rules) => rules.iter().any(|r| r.holds(input, scope)),
            Rule::Not(r) => !r.holds(input, scope),
            Rule::Compare {
                variable,
                test,
                against,
            } => {
                let value = read(variable);
                let against = match against {
                    Against::Value(v) => Some(v.clone()),
                    Against::Path(p) => read(p),
                };
                compare(*test, value.as_ref(), against.as_ref())
            }
        }
    }
}

fn timestamp(s: &str) -> Option<i128> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp_nanos())
}

fn compare(test: Test, value: Option<&Value>, against: Option<&Value>) -> bool {
    use std::cmp::Ordering;
    let want = against.and_then(Value::as_bool) == Some(true);
    if test == Test::IsPresent {
        return value.is_some() == want;
    }
    let Some(value) = value else {
        return false;
    };
    let ord = |kind: Kind| -> Option<Ordering> {
        let against = against?;
        match kind {
            Kind::String => Some(value.as_str()?.cmp(against.as_str()?)),
            Kind::Numeric => value.as_f64()?.partial_cmp(&against.as_f64()?),
            Kind::Boolean => Some(value.as_bool()?.cmp(&against.as_bool()?)),
            Kind::Timestamp => {
                Some(timestamp(value.as_str()?)?.cmp(&timestamp(against.as_str()?)?))
            }
        }
    };
    match test {
        Test::Equals(k) => ord(k) == Some(Ordering::Equal),
        Test::LessThan(k) => ord(k) == Some(Ordering::Less),
        Test::LessThanEquals(k) => matches!(ord(k), Some(Ordering::Less | Ordering::Equal)),
        Test::GreaterThan(k) => ord(k) == Some(Ordering::Greater),
        Test::GreaterThanEquals(k) => matches!(ord(k), Some(Ordering::Greater | Ordering::Equal)),
        Test::StringMatches => match (value.as_str(), against.and_then(Value::as_str)) {
            (Some(v), Some(p)) => glob(p, v),
            _ => false,
        },
        Test::IsPresent => true,
        Test::IsNull => value.is_null() == want,
        Test::IsNumeric => value.is_number() == want,
        Test::IsString => value.is_string() == want,
        Test::IsBoolean => value.is_boolean() == want,
        Test::IsTimestamp => value.as_str().and_then(timestamp).is_some() == want,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn holds(rule: Value, input: Value) -> bool {
        Rule::compile(&rule, false).unwrap().holds(
            &input,
            Scope {
                context: &json!({}),
                vars: &Map::new(),
            },
        )
    }

    #[test]
    fn comparisons_as_aws_documents_them() {
        let input = json!({"type": "Private", "value": 20, "rating": 9, "ok": true,
                           "when": "2026-12-07T10:00:00Z", "limit": 25, "name": "log-2026.txt"});
        assert!(holds(
            json!({"Variable": "$.type", "StringEquals": "Private"}),
            input.clone()
        ));
        assert!(!holds(
            json!({"Variable": "$.type", "StringEquals": "Public"}),
            input.clone()
        ));
        assert!(holds(
            json!({"Variable": "$.value", "NumericGreaterThanEquals": 20}),
            input.clone()
        ));
        assert!(holds(
            json!({"Variable": "$.value", "NumericLessThanPath": "$.limit"}),
            input.clone()
        ));
        assert!(holds(
            json!({"Variable": "$.ok", "BooleanEquals": true}),
            input.clone()
        ));
        assert!(holds(
            json!({"Variable": "$.when", "TimestampGreaterThan": "2026-12-07T09:59:59+00:00"}),
            input.clone()
        ));
        assert!(holds(
            json!({"Variable": "$.name", "StringMatches": "log-*.txt"}),
            input.clone()
        ));
        assert!(!holds(
            json!({"Variable": "$.name", "StringMatches": "log-\\*.txt"}),
            input.clone()
        ));
        assert!(holds(
            json!({"And": [
                {"Variable": "$.value", "NumericGreaterThan": 10},
                {"Not": {"Variable": "$.type", "StringEquals": "Public"}}
            ]}),
            input.clone()
        ));
        assert!(holds(
            json!({"Or": [
                {"Variable": "$.nope", "NumericEquals": 1},
                {"Variable": "$.rating", "NumericLessThan": 10}
            ]}),
            input.clone()
        ));
        // A type mismatch or a missing variable makes a comparison false.
        assert!(!holds(
            json!({"Variable": "$.type", "NumericEquals": 1}),
            input.clone()
        ));
        assert!(!holds(
            json!({"Variable": "$.nope", "StringEquals": "x"}),
            input.clone()
        ));
        assert!(holds(
            json!({"Variable": "$.nope", "IsPresent": false}),
            input.clone()
        ));
        assert!(holds(
            json!({"Variable": "$.type", "IsPresent": true}),
            input.clone()
        ));
        assert!(holds(
            json!({"Variable": "$.when", "IsTimestamp": true}),
            input.clone()
        ));
        assert!(holds(
            json!({"Variable": "$.type", "IsNumeric": false}),
            input.clone()
        ));
        assert!(holds(
            json!({"Variable": "$.value", "IsNull": false}),
            input
        ));
    }

    #[test]
    fn bad_rules_are_refused() {
        for bad in [
            json!({"Variable": "$.a"}),
            json!({"Variable": "$.a", "StringEquals": 1}),
            json!({"Variable": "$.a", "NumericEquals": "1"}),
            json!({"Variable": "$.a", "TimestampEquals": "yesterday"}),
            json!({"Variable": "$.a", "BooleanLessThan": true}),
            json!({"Variable": "$.a", "IsNullPath": "$.b"}),
            json!({"Variable": "$.a", "StringEquals": "x", "NumericEquals": 1}),
            json!({"Variable": "a", "StringEquals": "x"}),
            json!({"And": []}),
            json!({"Not": {"Variable": "$.a", "Nope": 1}}),
        ] {
            assert!(Rule::compile(&bad, false).is_err(), "{bad}");
        }
        assert!(Rule::compile(
            &json!({"Variable": "$.a", "StringEquals": "x", "Next": "B"}),
            true
        )
        .is_ok());
    }

    #[test]
    fn globs_match_with_escapes() {
        assert!(glob("*", ""));
        assert!(glob("a*c", "abbbc"));
        assert!(glob("*.log", "x.log"));
        assert!(!glob("*.log", "x.txt"));
        assert!(glob("a\\*b", "a*b"));
        assert!(!glob("a\\*b", "axb"));
    }
}
