//! How a state's input becomes its output (the JSONPath query language):
//! InputPath picks part of the input, Parameters (a payload template)
//! shapes it, the task runs, ResultSelector shapes the result, ResultPath
//! puts it into the input, OutputPath picks what goes on. A template's
//! fields ending in `.$` take a path (`$` the input, `$$` the context) or
//! an intrinsic call; the rest are kept as written.

use serde_json::{Map, Value};
use wisp_core::clock::Rng;

use crate::intrinsics::Call;
use crate::path::{Path, Root, Scope};

/// Why a payload step failed: `States.Runtime` or
/// `States.IntrinsicFailure`, and AWS's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {cause}")]
pub struct PayloadError {
    pub error: &'static str,
    pub cause: String,
}

fn runtime(cause: String) -> PayloadError {
    PayloadError {
        error: "States.Runtime",
        cause,
    }
}

/// A field that may be absent, or given as `null`, which means something
/// else for InputPath, OutputPath and ResultPath.
#[derive(Debug, Clone, PartialEq, Default)]
pub enum Given<T> {
    #[default]
    Absent,
    Null,
    Set(T),
}

/// A compiled payload template.
#[derive(Debug, Clone, PartialEq)]
pub enum Template {
    Fixed(Value),
    Path(String, Path),
    Call(String, Call),
    Object(Vec<(String, Template)>),
    Array(Vec<Template>),
}

/// Why a template is refused when the definition is checked.
pub fn compile(template: &Value) -> Result<Template, String> {
    compile_at(template, 0)
}

fn compile_at(template: &Value, depth: usize) -> Result<Template, String> {
    if depth > 64 {
        return Err("the payload template nests deeper than 64 levels".into());
    }
    Ok(match template {
        Value::Object(m) => {
            let mut fields = Vec::with_capacity(m.len());
            for (k, v) in m {
                match k.strip_suffix(".$") {
                    Some(name) => {
                        let Value::String(text) = v else {
                            return Err(format!(
                                "The value for the field '{k}' must be a STRING that contains a JSONPath or an intrinsic function"
                            ));
                        };
                        let t = if Call::looks_like(text) {
                            Template::Call(k.clone(), Call::parse(text).map_err(|e| e.0)?)
                        } else {
                            Template::Path(k.clone(), Path::parse(text).map_err(|e| e.0)?)
                        };
                        fields.push((name.to_string(), t));
                    }
                    None => fields.push((k.clone(), compile_at(v, depth + 1)?)),
                }
            }
            Template::Object(fields)
        }
        Value::Array(items) => Template::Array(
            items
                .iter()
                .map(|v| compile_at(v, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        other => Template::Fixed(other.clone()),
    })
}

impl Template {
    /// Fills the template from `input` and `scope`.
    pub fn apply(
        &self,
        input: &Value,
        scope: Scope<'_>,
        rng: &dyn Rng,
    ) -> Result<Value, PayloadError> {
        Ok(match self {
            Template::Fixed(v) => v.clone(),
            Template::Path(field, p) => p.read_in(input, scope).ok_or_else(|| {
                let (what, root) = match &p.root {
                    Root::Input => ("the input", input),
                    Root::Context => ("the context", scope.context),
                    Root::Variable(name) => {
                        return runtime(format!(
                            "The JSONPath '{}' specified for the field '{field}' names the variable '{name}', which is not set",
                            p.text()
                        ))
                    }
                };
                runtime(format!(
                    "The JSONPath '{}' specified for the field '{field}' could not be found in {what} '{}'",
                    p.text(),
                    shown(root)
                ))
            })?,
            Template::Call(_, c) => c.eval(input, scope, rng).map_err(|e| PayloadError {
                error: "States.IntrinsicFailure",
                cause: e.0,
            })?,
            Template::Object(fields) => {
                let mut out = Map::with_capacity(fields.len());
                for (k, t) in fields {
                    out.insert(k.clone(), t.apply(input, scope, rng)?);
                }
                Value::Object(out)
            }
            Template::Array(items) => Value::Array(
                items
                    .iter()
                    .map(|t| t.apply(input, scope, rng))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

/// A value as error messages quote it: its JSON, cut to 256 characters.
fn shown(v: &Value) -> String {
    let s = v.to_string();
    match s.char_indices().nth(256) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s,
    }
}

/// InputPath and OutputPath: `$` when absent, `{}` when null.
pub fn select(
    value: &Value,
    path: &Given<(String, Path)>,
    field: &str,
) -> Result<Value, PayloadError> {
    match path {
        Given::Absent => Ok(value.clone()),
        Given::Null => Ok(Value::Object(Map::new())),
        Given::Set((text, p)) => p.read(value).ok_or_else(|| {
            runtime(format!(
                "Invalid path '{text}' : No results for path: $['{}'] ({field} of input '{}')",
                text.trim_start_matches("$.").trim_start_matches('$'),
                shown(value)
            ))
        }),
    }
}

/// ResultPath: the result replaces the input when absent, is dropped
/// (the input goes on) when null, else is put where the path says.
pub fn place(
    input: &Value,
    result: Value,
    path: &Given<(String, Path)>,
) -> Result<Value, PayloadError> {
    match path {
        Given::Absent => Ok(result),
        Given::Null => Ok(input.clone()),
        Given::Set((text, p)) => p.write(input.clone(), result).map_err(|e| {
            runtime(format!(
                "Unable to apply ReferencePath {text} to input {}: {}",
                shown(input),
                e.0
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Half;
    impl Rng for Half {
        fn unit(&self) -> f64 {
            0.5
        }
    }

    fn given(p: &str) -> Given<(String, Path)> {
        Given::Set((p.to_string(), Path::parse(p).unwrap()))
    }

    #[test]
    fn templates_fill_paths_context_and_calls() {
        let t = compile(&json!({
            "flight.$": "$.booking.flight",
            "fixed": {"n": 1, "list": [1, {"x.$": "$.booking.seats"}]},
            "execution.$": "$$.Execution.Id",
            "greeting.$": "States.Format('Hi {}', $.who)",
        }))
        .unwrap();
        let input = json!({"booking": {"flight": "LH1", "seats": 2}, "who": "Ana"});
        let cx = json!({"Execution": {"Id": "arn:exec"}});
        let vars = Map::new();
        let cx = Scope {
            context: &cx,
            vars: &vars,
        };
        assert_eq!(
            t.apply(&input, cx, &Half).unwrap(),
            json!({"flight": "LH1", "fixed": {"n": 1, "list": [1, {"x": 2}]},
                   "execution": "arn:exec", "greeting": "Hi Ana"})
        );
        let missing = compile(&json!({"a.$": "$.nope"}))
            .unwrap()
            .apply(&input, cx, &Half)
            .unwrap_err();
        assert_eq!(missing.error, "States.Runtime");
        let failing = compile(&json!({"a.$": "States.ArrayLength($.who)"})).unwrap();
        assert_eq!(
            failing.apply(&input, cx, &Half).unwrap_err().error,
            "States.IntrinsicFailure"
        );
        assert!(compile(&json!({"a.$": 1})).is_err());
        assert!(compile(&json!({"a.$": "nope"})).is_err());
    }

    #[test]
    fn input_result_and_output_paths() {
        let input = json!({"a": {"b": 1}, "c": 2});
        assert_eq!(select(&input, &Given::Absent, "InputPath").unwrap(), input);
        assert_eq!(
            select(&input, &Given::Null, "InputPath").unwrap(),
            json!({})
        );
        assert_eq!(
            select(&input, &given("$.a"), "InputPath").unwrap(),
            json!({"b": 1})
        );
        assert!(select(&input, &given("$.x"), "InputPath").is_err());
        assert_eq!(place(&input, json!(9), &Given::Absent).unwrap(), json!(9));
        assert_eq!(place(&input, json!(9), &Given::Null).unwrap(), input);
        assert_eq!(
            place(&input, json!(9), &given("$.a.r")).unwrap(),
            json!({"a": {"b": 1, "r": 9}, "c": 2})
        );
        assert!(place(&json!({"l": []}), json!(9), &given("$.l[3]")).is_err());
    }
}
