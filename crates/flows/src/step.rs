//! One state at a time: what entering a state with its input makes of it
//! (`enter`), what a Task's, Parallel's or Map's result makes of it
//! (`finish`), and what an error makes of it (`recover`: retry after a
//! delay, go to a Catch, or fail the machine). Pure: an execution engine
//! (in memory for EXPRESS, durable for STANDARD) drives these steps and
//! does the work in between.

use serde_json::{json, Value};
use wisp_core::clock::Rng;

use crate::asl::{Kind, Seconds, State, Text, Wait};
use crate::errors;
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

/// What to do after a step.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Go to `next` with `output` as its input.
    Next {
        next: String,
        output: Value,
    },
    /// The machine (or branch) ends with `output`.
    End(Value),
    Fail(Failure),
    /// Wait until `until_ms`, then go on with `output`.
    Wait {
        until_ms: i64,
        next: Option<String>,
        output: Value,
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

fn go_on(state: &State, output: Value) -> Outcome {
    match &state.next {
        Some(next) => Outcome::Next {
            next: next.clone(),
            output,
        },
        None => Outcome::End(output),
    }
}

/// A `…Path` number read from the input.
fn seconds(s: &Seconds, input: &Value, field: &str) -> Result<u64, Failure> {
    match s {
        Seconds::Fixed(n) => Ok(*n),
        Seconds::Path(p) => p.read(input).and_then(|v| v.as_u64()).ok_or_else(|| {
            Failure::new(
                errors::RUNTIME,
                format!(
                    "The {field} path '{}' does not name a non-negative integer in the input",
                    p.text()
                ),
            )
        }),
    }
}

fn text(t: &Option<Text>, input: &Value) -> Option<String> {
    match t.as_ref()? {
        Text::Fixed(s) => Some(s.clone()),
        Text::Path(p) => p.read(input).map(|v| match v {
            Value::String(s) => s,
            other => other.to_string(),
        }),
    }
}

/// Enters `state` with its raw input (`cx` the context object).
pub fn enter(state: &State, raw: &Value, cx: &Value, now_ms: i64, rng: &dyn Rng) -> Outcome {
    match enter_inner(state, raw, cx, now_ms, rng) {
        Ok(o) => o,
        Err(f) => Outcome::Fail(f),
    }
}

fn enter_inner(
    state: &State,
    raw: &Value,
    cx: &Value,
    now_ms: i64,
    rng: &dyn Rng,
) -> Result<Outcome, Failure> {
    let input = payload::select(raw, &state.input_path, "InputPath")?;
    let effective = match &state.parameters {
        Some(t) => t.apply(&input, cx, rng)?,
        None => input.clone(),
    };
    let out = |result: Value| -> Result<Value, Failure> {
        let placed = payload::place(raw, result, &state.result_path)?;
        Ok(payload::select(&placed, &state.output_path, "OutputPath")?)
    };
    Ok(match &state.kind {
        Kind::Pass { result } => {
            let result = result.clone().unwrap_or(effective);
            go_on(state, out(result)?)
        }
        Kind::Succeed => Outcome::End(payload::select(&input, &state.output_path, "OutputPath")?),
        Kind::Fail { error, cause } => Outcome::Fail(Failure::new(
            text(error, raw).unwrap_or_default(),
            text(cause, raw).unwrap_or_default(),
        )),
        Kind::Choice { choices, default } => {
            let output = payload::select(&input, &state.output_path, "OutputPath")?;
            match choices.iter().find(|(rule, _)| rule.holds(&input, cx)) {
                Some((_, next)) => Outcome::Next {
                    next: next.clone(),
                    output,
                },
                None => match default {
                    Some(next) => Outcome::Next {
                        next: next.clone(),
                        output,
                    },
                    None => Outcome::Fail(Failure::new(
                        errors::NO_CHOICE_MATCHED,
                        format!("No Matches! (state {})", state.name),
                    )),
                },
            }
        }
        Kind::Wait(wait) => {
            let until_ms = match wait {
                Wait::Seconds(s) => {
                    now_ms.saturating_add(seconds(s, &input, "SecondsPath")? as i64 * 1000)
                }
                Wait::Timestamp(t) => parse_time(t)?,
                Wait::TimestampPath(p) => {
                    let t = p
                        .read(&input)
                        .and_then(|v| v.as_str().map(String::from))
                        .ok_or_else(|| {
                            Failure::new(
                                errors::RUNTIME,
                                format!(
                                    "The TimestampPath '{}' does not name a timestamp in the input",
                                    p.text()
                                ),
                            )
                        })?;
                    parse_time(&t)?
                }
            };
            Outcome::Wait {
                until_ms,
                next: state.next.clone(),
                output: payload::select(&input, &state.output_path, "OutputPath")?,
            }
        }
        Kind::Task {
            resource,
            timeout,
            heartbeat,
        } => Outcome::Work(Work::Task {
            resource: resource.clone(),
            timeout_seconds: timeout
                .as_ref()
                .map(|s| seconds(s, &input, "TimeoutSecondsPath"))
                .transpose()?,
            heartbeat_seconds: heartbeat
                .as_ref()
                .map(|s| seconds(s, &input, "HeartbeatSecondsPath"))
                .transpose()?,
            parameters: effective,
        }),
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
                let item_cx = with_map_item(cx, i, item);
                prepared.push(match &map.item_selector {
                    Some(t) => t.apply(&effective, &item_cx, rng)?,
                    None => item.clone(),
                });
            }
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
                .map(|s| seconds(s, &effective, "ToleratedFailureCountPath"))
                .transpose()?;
            let by_share = map
                .tolerated_failure_percentage
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
                .map(|s| seconds(s, &effective, "MaxConcurrencyPath"))
                .transpose()?
                .unwrap_or(0);
            Outcome::Work(Work::Map {
                items: prepared,
                max_concurrency,
                tolerated_failures,
            })
        }
    })
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

/// A work state's result: ResultSelector, ResultPath, OutputPath, then on.
pub fn finish(state: &State, raw: &Value, result: Value, cx: &Value, rng: &dyn Rng) -> Outcome {
    let done = || -> Result<Outcome, Failure> {
        let selected = match &state.result_selector {
            Some(t) => t.apply(&result, cx, rng)?,
            None => result.clone(),
        };
        let placed = payload::place(raw, selected, &state.result_path)?;
        Ok(go_on(
            state,
            payload::select(&placed, &state.output_path, "OutputPath")?,
        ))
    };
    match done() {
        Ok(o) => o,
        Err(f) => Outcome::Fail(f),
    }
}

/// What an error in `state` leads to, given how many times each retrier
/// has been used (`tries[i]` for `state.retry[i]`).
pub fn recover(
    state: &State,
    raw: &Value,
    failure: Failure,
    tries: &[u32],
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
    for c in &state.catch {
        if errors::matches(&c.error_equals, &failure.error) {
            let error_output = json!({"Error": failure.error, "Cause": failure.cause});
            return Recovery::Then(match payload::place(raw, error_output, &c.result_path) {
                Ok(output) => Outcome::Next {
                    next: c.next.clone(),
                    output,
                },
                Err(e) => Outcome::Fail(e.into()),
            });
        }
    }
    Recovery::Then(Outcome::Fail(failure))
}
