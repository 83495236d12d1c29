//! One state at a time: what entering a state with its input makes of it
//! (`enter`), what a Task's, Parallel's or Map's result makes of it
//! (`finish`), and what an error makes of it (`recover`: retry after a
//! delay, go to a Catch, or fail the machine). Pure: an execution engine
//! (in memory for EXPRESS, durable for STANDARD) drives these steps and
//! does the work in between.

use serde_json::{json, Map, Value};
use wisp_core::clock::Rng;

use crate::asl::{Choice, Kind, Percent, Seconds, Shape, State, Text, Wait, When};
use crate::errors;
use crate::jsonata::{Form, States};
use crate::path::{Path, Scope};
use crate::payload::{self, PayloadError};

/// Why an execution (or a branch, or an item) failed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Failure {
    pub error: String,
    pub cause: String,
}

impl Failure {
    pub fn new(error: impl Into<String>, cause: impl Into<String>) -> Failure {
        Failure {
            error: error.into(),
            cause: cause.into(),
        }
    }
}

impl From<PayloadError> for Failure {
    fn from(e: PayloadError) -> Failure {
        Failure::new(e.error, e.cause)
    }
}

/// Variables a state sets when it ends (its Assign), by name.
pub type Vars = Map<String, Value>;

/// What to do after a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Go to `next` with `output` as its input, setting `assigned`.
    Next {
        next: String,
        output: Value,
        assigned: Vars,
    },
    /// The machine (or branch) ends with `output` (`assigned` is the last
    /// state's Assign, for TestState to show).
    End {
        output: Value,
        assigned: Vars,
    },
    Fail(Failure),
    /// Wait until `until_ms`, then go on with `output`.
    Wait {
        until_ms: i64,
        next: Option<String>,
        output: Value,
        assigned: Vars,
    },
    /// Do the work, then `finish` (or `recover` from its failure).
    Work(Work),
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub enum Work {
    Task {
        resource: String,
        parameters: Value,
        timeout_seconds: Option<u64>,
        heartbeat_seconds: Option<u64>,
    },
    /// Each branch runs with `input`; the result is their outputs in order.
    Parallel { input: Value },
    /// Each item runs through the processor; the result is their outputs
    /// in order. More than the tolerated failures fail the state.
    Map {
        items: Vec<Value>,
        max_concurrency: u64,
        tolerated_failures: u64,
        /// A DISTRIBUTED Map: its items are a map run (no iteration
        /// events in the history).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        distributed: bool,
    },
}

/// What to do about an error.
#[derive(Debug, Clone, PartialEq)]
pub enum Recovery {
    /// Retry the state after `delay_ms`; `retrier` counts one more try.
    Retry {
        retrier: usize,
        delay_ms: i64,
    },
    Then(Outcome),
}

/// Where a state's fields are evaluated: its raw input, the context
/// object and the variables (as paths and expressions read them).
#[derive(Clone, Copy)]
struct Here<'a> {
    raw: &'a Value,
    scope: Scope<'a>,
    rng: &'a dyn Rng,
}

impl<'a> Here<'a> {
    fn states(&self) -> States<'a> {
        States {
            input: self.raw,
            context: self.scope.context,
            result: None,
            error_output: None,
        }
    }

    fn form(&self, f: &Form, field: &str) -> Result<Value, Failure> {
        f.eval(field, self.states(), self.scope.vars)
    }

    /// A JSONata state's output: its Output, or `default`.
    fn output(&self, state: &State, states: States<'_>, default: &Value) -> Result<Value, Failure> {
        match &state.output {
            Some(f) => f.eval("Output", states, self.scope.vars),
            None => Ok(default.clone()),
        }
    }
}

fn go_on(state: &State, output: Value, assigned: Vars) -> Outcome {
    match &state.next {
        Some(next) => Outcome::Next {
            next: next.clone(),
            output,
            assigned,
        },
        None => Outcome::End { output, assigned },
    }
}

fn query_error(cause: String) -> Failure {
    Failure::new(errors::QUERY_EVALUATION_ERROR, cause)
}

fn path_missing(p: &Path, field: &str, what: &str) -> Failure {
    Failure::new(
        errors::RUNTIME,
        format!(
            "The {field} path '{}' does not name {what} in the input",
            p.text()
        ),
    )
}

/// A number field: as written, read from a path, or yielded by an
/// expression.
fn seconds(s: &Seconds, input: &Value, here: &Here<'_>, field: &str) -> Result<u64, Failure> {
    match s {
        Seconds::Fixed(n) => Ok(*n),
        Seconds::Path(p) => p
            .read_in(input, here.scope)
            .and_then(|v| v.as_u64())
            .ok_or_else(|| path_missing(p, &format!("{field}Path"), "a non-negative integer")),
        Seconds::Expr(f) => here.form(f, field)?.as_u64().ok_or_else(|| {
            query_error(format!(
                "The JSONata expression of the field '{field}' must yield a non-negative integer"
            ))
        }),
    }
}

fn percent(p: &Percent, input: &Value, here: &Here<'_>) -> Result<f64, Failure> {
    const FIELD: &str = "ToleratedFailurePercentage";
    let share = match p {
        Percent::Fixed(x) => Some(*x),
        Percent::Path(path) => path.read_in(input, here.scope).and_then(|v| v.as_f64()),
        Percent::Expr(f) => here.form(f, FIELD)?.as_f64(),
    };
    share
        .filter(|x| (0.0..=100.0).contains(x))
        .ok_or_else(|| Failure::new(errors::RUNTIME, format!("{FIELD} must be from 0 to 100")))
}

fn text(t: &Option<Text>, here: &Here<'_>, field: &str) -> Result<String, Failure> {
    Ok(match t {
        None => String::new(),
        Some(Text::Fixed(s)) => s.clone(),
        Some(Text::Path(p)) => match p.read_in(here.raw, here.scope) {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => String::new(),
        },
        Some(Text::Expr(f)) => match here.form(f, field)? {
            Value::String(s) => s,
            _ => {
                return Err(query_error(format!(
                    "The JSONata expression of the field '{field}' must yield a string"
                )))
            }
        },
    })
}

/// The most a state's Assign may hold (all its variables together).
const MAX_ASSIGNED: usize = 256 * 1024;

/// The variables `shape` sets: its paths read from `dollar` (JSONPath),
/// its expressions evaluated with `states` (JSONata).
fn assign(
    shape: Option<&Shape>,
    dollar: &Value,
    states: States<'_>,
    here: &Here<'_>,
) -> Result<Vars, Failure> {
    let v = match shape {
        None => return Ok(Vars::new()),
        Some(Shape::Paths(t)) => t.apply(dollar, here.scope, here.rng)?,
        Some(Shape::Jsonata(f)) => f.eval("Assign", states, here.scope.vars)?,
    };
    let Value::Object(vars) = v else {
        return Err(query_error(
            "The field 'Assign' must yield an object".into(),
        ));
    };
    let size = serde_json::to_vec(&vars).map_or(0, |b| b.len());
    if size > MAX_ASSIGNED {
        return Err(Failure::new(
            errors::RUNTIME,
            format!("The variables assigned are {size} bytes, more than the {MAX_ASSIGNED} bytes an Assign may hold"),
        ));
    }
    Ok(vars)
}

/// Enters `state` with its raw input (`scope`: the context object, with
/// the state's own fields, and the variables).
pub fn enter(state: &State, raw: &Value, scope: Scope<'_>, now_ms: i64, rng: &dyn Rng) -> Outcome {
    let here = Here { raw, scope, rng };
    let entered = if state.jsonata {
        enter_jsonata(state, &here, now_ms)
    } else {
        enter_jsonpath(state, &here, now_ms)
    };
    entered.unwrap_or_else(|f| caught(state, f, &here))
}

fn enter_jsonpath(state: &State, here: &Here<'_>, now_ms: i64) -> Result<Outcome, Failure> {
    let (raw, scope, rng) = (here.raw, here.scope, here.rng);
    let input = payload::select(raw, &state.input_path, "InputPath")?;
    let effective = match &state.parameters {
        Some(t) => t.apply(&input, scope, rng)?,
        None => input.clone(),
    };
    let out = |result: Value| -> Result<Value, Failure> {
        let placed = payload::place(raw, result, &state.result_path)?;
        Ok(payload::select(&placed, &state.output_path, "OutputPath")?)
    };
    let assigned =
        |shape: Option<&Shape>, dollar: &Value| assign(shape, dollar, here.states(), here);
    Ok(match &state.kind {
        Kind::Pass { result } => {
            let result = result.clone().unwrap_or(effective);
            let vars = assigned(state.assign.as_ref(), &result)?;
            go_on(state, out(result)?, vars)
        }
        Kind::Succeed => Outcome::End {
            output: payload::select(&input, &state.output_path, "OutputPath")?,
            assigned: Vars::new(),
        },
        Kind::Fail { error, cause } => Outcome::Fail(Failure::new(
            text(error, here, "Error")?,
            text(cause, here, "Cause")?,
        )),
        Kind::Choice { choices, default } => {
            let output = payload::select(&input, &state.output_path, "OutputPath")?;
            let holds = |c: &&Choice| matches!(&c.when, When::Rule(r) if r.holds(&input, scope));
            match choices.iter().find(holds) {
                Some(c) => Outcome::Next {
                    next: c.next.clone(),
                    output,
                    assigned: assigned(c.assign.as_ref(), &input)?,
                },
                None => match default {
                    Some(next) => Outcome::Next {
                        next: next.clone(),
                        output,
                        assigned: assigned(state.assign.as_ref(), &input)?,
                    },
                    None => no_choice(state),
                },
            }
        }
        Kind::Wait(wait) => Outcome::Wait {
            until_ms: wait_until(wait, &input, here, now_ms)?,
            next: state.next.clone(),
            output: payload::select(&input, &state.output_path, "OutputPath")?,
            assigned: assigned(state.assign.as_ref(), &input)?,
        },
        Kind::Task { .. } => task(state, effective, &input, here)?,
        Kind::Parallel { .. } => Outcome::Work(Work::Parallel { input: effective }),
        Kind::Map(map) => {
            let items_value = payload::select(&effective, &map.items_path, "ItemsPath")?;
            let Value::Array(items) = items_value else {
                return Err(Failure::new(
                    errors::RUNTIME,
                    format!(
                        "The ItemsPath of state {} does not name an array",
                        state.name
                    ),
                ));
            };
            let mut prepared = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let item_cx = with_map_item(scope.context, i, item);
                let item_scope = Scope {
                    context: &item_cx,
                    vars: scope.vars,
                };
                prepared.push(match &map.item_selector {
                    Some(Shape::Paths(t)) => t.apply(&effective, item_scope, rng)?,
                    _ => item.clone(),
                });
            }
            map_work(map, prepared, &effective, here)?
        }
    })
}

fn enter_jsonata(state: &State, here: &Here<'_>, now_ms: i64) -> Result<Outcome, Failure> {
    let raw = here.raw;
    let states = here.states();
    let assigned = |shape: Option<&Shape>| assign(shape, raw, states, here);
    let arguments = || match &state.arguments {
        Some(f) => here.form(f, "Arguments"),
        None => Ok(raw.clone()),
    };
    Ok(match &state.kind {
        Kind::Pass { .. } => {
            let output = here.output(state, states, raw)?;
            go_on(state, output, assigned(state.assign.as_ref())?)
        }
        Kind::Succeed => Outcome::End {
            output: here.output(state, states, raw)?,
            assigned: Vars::new(),
        },
        Kind::Fail { error, cause } => Outcome::Fail(Failure::new(
            text(error, here, "Error")?,
            text(cause, here, "Cause")?,
        )),
        Kind::Choice { choices, default } => {
            for c in choices {
                let holds = match &c.when {
                    When::Rule(r) => r.holds(raw, here.scope),
                    When::Condition(f) => match here.form(f, "Condition")? {
                        Value::Bool(b) => b,
                        other => {
                            return Err(query_error(format!(
                                "The Condition of a choice in state {} must yield a boolean, not {other}",
                                state.name
                            )))
                        }
                    },
                };
                if holds {
                    let output = match &c.output {
                        Some(f) => f.eval("Output", states, here.scope.vars)?,
                        None => here.output(state, states, raw)?,
                    };
                    return Ok(Outcome::Next {
                        next: c.next.clone(),
                        output,
                        assigned: assigned(c.assign.as_ref())?,
                    });
                }
            }
            match default {
                Some(next) => Outcome::Next {
                    next: next.clone(),
                    output: here.output(state, states, raw)?,
                    assigned: assigned(state.assign.as_ref())?,
                },
                None => no_choice(state),
            }
        }
        Kind::Wait(wait) => Outcome::Wait {
            until_ms: wait_until(wait, raw, here, now_ms)?,
            next: state.next.clone(),
            output: here.output(state, states, raw)?,
            assigned: assigned(state.assign.as_ref())?,
        },
        Kind::Task { .. } => task(state, arguments()?, raw, here)?,
        Kind::Parallel { .. } => Outcome::Work(Work::Parallel {
            input: arguments()?,
        }),
        Kind::Map(map) => {
            let items = match &map.items {
                Some(f) => here.form(f, "Items")?,
                None => raw.clone(),
            };
            let Value::Array(items) = items else {
                return Err(query_error(format!(
                    "The Items of state {} must be an array",
                    state.name
                )));
            };
            let mut prepared = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                prepared.push(match &map.item_selector {
                    Some(Shape::Jsonata(f)) => {
                        let item_cx = with_map_item(here.scope.context, i, item);
                        let item_states = States {
                            context: &item_cx,
                            ..states
                        };
                        f.eval("ItemSelector", item_states, here.scope.vars)?
                    }
                    _ => item.clone(),
                });
            }
            map_work(map, prepared, raw, here)?
        }
    })
}

fn no_choice(state: &State) -> Outcome {
    Outcome::Fail(Failure::new(
        errors::NO_CHOICE_MATCHED,
        format!("No Matches! (state {})", state.name),
    ))
}

fn wait_until(wait: &Wait, input: &Value, here: &Here<'_>, now_ms: i64) -> Result<i64, Failure> {
    Ok(match wait {
        Wait::Seconds(s) => {
            now_ms.saturating_add(seconds(s, input, here, "Seconds")?.saturating_mul(1000) as i64)
        }
        Wait::Timestamp(t) => parse_time(t)?,
        Wait::TimestampPath(p) => {
            let t = p
                .read_in(input, here.scope)
                .and_then(|v| v.as_str().map(String::from))
                .ok_or_else(|| path_missing(p, "TimestampPath", "a timestamp"))?;
            parse_time(&t)?
        }
        Wait::TimestampExpr(f) => match here.form(f, "Timestamp")? {
            Value::String(t) => parse_time(&t)?,
            _ => {
                return Err(query_error(
                    "The JSONata expression of the field 'Timestamp' must yield a timestamp".into(),
                ))
            }
        },
    })
}

fn task(
    state: &State,
    parameters: Value,
    input: &Value,
    here: &Here<'_>,
) -> Result<Outcome, Failure> {
    let Kind::Task {
        resource,
        timeout,
        heartbeat,
    } = &state.kind
    else {
        return Err(Failure::new(errors::RUNTIME, "not a Task"));
    };
    let secs = |s: &Option<Seconds>, field| {
        s.as_ref()
            .map(|s| seconds(s, input, here, field))
            .transpose()
    };
    Ok(Outcome::Work(Work::Task {
        resource: resource.clone(),
        timeout_seconds: secs(timeout, "TimeoutSeconds")?,
        heartbeat_seconds: secs(heartbeat, "HeartbeatSeconds")?,
        parameters,
    }))
}

/// A Map's work: its items batched, its failures tolerated, its
/// concurrency (the numbers read from `input`).
fn map_work(
    map: &crate::asl::MapState,
    mut prepared: Vec<Value>,
    input: &Value,
    here: &Here<'_>,
) -> Result<Outcome, Failure> {
    if let Some((per_batch, batch_input)) = &map.batch {
        prepared = prepared
            .chunks((*per_batch).max(1) as usize)
            .map(|chunk| {
                let mut b = json!({"Items": chunk});
                if let Some(extra) = batch_input {
                    b["BatchInput"] = extra.clone();
                }
                b
            })
            .collect();
    }
    let total = prepared.len() as u64;
    let by_count = map
        .tolerated_failure_count
        .as_ref()
        .map(|s| seconds(s, input, here, "ToleratedFailureCount"))
        .transpose()?;
    let by_share = map
        .tolerated_failure_percentage
        .as_ref()
        .map(|p| percent(p, input, here))
        .transpose()?
        .map(|p| ((p / 100.0) * total as f64).floor() as u64);
    let tolerated_failures = match (by_count, by_share) {
        (Some(a), Some(b)) => a.max(b),
        (Some(a), None) => a,
        (None, Some(b)) => b,
        (None, None) => 0,
    };
    let max_concurrency = map
        .max_concurrency
        .as_ref()
        .map(|s| seconds(s, input, here, "MaxConcurrency"))
        .transpose()?
        .unwrap_or(0);
    Ok(Outcome::Work(Work::Map {
        items: prepared,
        max_concurrency,
        tolerated_failures,
        distributed: map.distributed,
    }))
}

/// The context of one Map item: `$$.Map.Item.Index` and `.Value`.
pub fn with_map_item(cx: &Value, index: usize, item: &Value) -> Value {
    let mut out = cx.clone();
    if !out.is_object() {
        out = json!({});
    }
    out["Map"] = json!({"Item": {"Index": index, "Value": item}});
    out
}

fn parse_time(t: &str) -> Result<i64, Failure> {
    time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            Failure::new(
                errors::RUNTIME,
                format!("'{t}' is not an ISO-8601 timestamp"),
            )
        })
}

/// A work state's result: ResultSelector, ResultPath, OutputPath (or
/// JSONata's Output), and Assign, then on.
pub fn finish(
    state: &State,
    raw: &Value,
    result: Value,
    scope: Scope<'_>,
    rng: &dyn Rng,
) -> Outcome {
    let here = Here { raw, scope, rng };
    let done = || -> Result<Outcome, Failure> {
        let states = States {
            result: Some(&result),
            ..here.states()
        };
        let assigned = assign(state.assign.as_ref(), &result, states, &here)?;
        if state.jsonata {
            let output = here.output(state, states, &result)?;
            return Ok(go_on(state, output, assigned));
        }
        let selected = match &state.result_selector {
            Some(t) => t.apply(&result, scope, rng)?,
            None => result.clone(),
        };
        let placed = payload::place(raw, selected, &state.result_path)?;
        Ok(go_on(
            state,
            payload::select(&placed, &state.output_path, "OutputPath")?,
            assigned,
        ))
    };
    done().unwrap_or_else(|f| caught(state, f, &here))
}

/// What an error in `state` leads to, given how many times each retrier
/// has been used (`tries[i]` for `state.retry[i]`).
pub fn recover(
    state: &State,
    raw: &Value,
    failure: Failure,
    tries: &[u32],
    scope: Scope<'_>,
    rng: &dyn Rng,
) -> Recovery {
    if let Some((i, r)) = state
        .retry
        .iter()
        .enumerate()
        .find(|(_, r)| errors::matches(&r.error_equals, &failure.error))
    {
        let used = tries.get(i).copied().unwrap_or(0);
        if used < r.max_attempts {
            let delay = errors::retry_delay(
                r.interval_seconds,
                r.backoff_rate,
                r.max_delay_seconds,
                r.full_jitter,
                used + 1,
                rng.unit(),
            );
            return Recovery::Retry {
                retrier: i,
                delay_ms: (delay * 1000.0) as i64,
            };
        }
    }
    Recovery::Then(caught(state, failure, &Here { raw, scope, rng }))
}

/// Where a failure of `state` goes: to its first Catch that matches (the
/// catcher's Output or ResultPath, and Assign), or out of the machine.
/// Failures of the state's own fields (a path that finds nothing, an
/// expression that fails) are caught as its work's are.
fn caught(state: &State, failure: Failure, here: &Here<'_>) -> Outcome {
    let Some(c) = state
        .catch
        .iter()
        .find(|c| errors::matches(&c.error_equals, &failure.error))
    else {
        return Outcome::Fail(failure);
    };
    let (raw, scope) = (here.raw, here.scope);
    let error_output = json!({"Error": failure.error, "Cause": failure.cause});
    let caught = || -> Result<Outcome, Failure> {
        let states = States {
            error_output: Some(&error_output),
            ..here.states()
        };
        let output = match (&c.output, state.jsonata) {
            (Some(f), _) => f.eval("Output", states, scope.vars)?,
            (None, true) => error_output.clone(),
            (None, false) => payload::place(raw, error_output.clone(), &c.result_path)?,
        };
        Ok(Outcome::Next {
            next: c.next.clone(),
            output,
            assigned: assign(c.assign.as_ref(), &error_output, states, here)?,
        })
    };
    caught().unwrap_or_else(Outcome::Fail)
}
