//! Runs a state machine in memory, start to end: the engine of EXPRESS
//! executions (and of each Parallel branch and Map item). Tasks, waiting
//! and time come from an `Env`, so tests drive Retry backoff, jitter and
//! Wait states on a fake clock without waiting.

use std::future::Future;
use std::pin::Pin;

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use wisp_core::clock::Rng;

use crate::asl::{Kind, StateMachine};
use crate::errors;
use crate::history;
use crate::path::Scope;
use crate::step::{self, Failure, Outcome, Recovery, Vars, Work};

/// Bounds of one run: AWS's history limit (each transition is a few
/// events), and how many Map items run at once when MaxConcurrency is 0.
pub const MAX_TRANSITIONS: u64 = 25_000;
pub const DEFAULT_MAP_CONCURRENCY: usize = 40;

/// A Task to run: its resource and effective input.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskCall {
    pub resource: String,
    pub input: Value,
    pub timeout_seconds: Option<u64>,
    pub heartbeat_seconds: Option<u64>,
}

/// What a run needs from outside.
#[async_trait::async_trait]
pub trait Env: Send + Sync {
    /// Runs a Task; its result, or the error to retry or catch.
    async fn task(&self, call: TaskCall) -> Result<Value, Failure>;
    /// Returns at `until_ms` or after.
    async fn sleep_until(&self, until_ms: i64);
    fn now_ms(&self) -> i64;
    fn rng(&self) -> &dyn Rng;
    /// The region, when the run's history events are kept (an EXPRESS
    /// execution that logs): only then are they made.
    fn noting(&self) -> Option<&str> {
        None
    }
    /// Keeps history events of the run.
    fn note(&self, _events: Vec<Value>) {}
}

type Boxed<'a> = Pin<Box<dyn Future<Output = Result<Value, Failure>> + Send + 'a>>;

/// Runs `machine` on `input`; `cx` is the context object (Execution,
/// StateMachine); State is filled in as states are entered. `vars` are
/// the variables it starts with (a branch's: its parent's, a copy).
pub fn run<'a>(
    machine: &'a StateMachine,
    input: Value,
    cx: &'a Value,
    mut vars: Vars,
    env: &'a dyn Env,
) -> Boxed<'a> {
    Box::pin(async move {
        let deadline = machine
            .timeout_seconds
            .map(|s| env.now_ms().saturating_add(s as i64 * 1000));
        let region = env.noting().map(String::from);
        let mut name = machine.start_at.clone();
        let mut value = input;
        for _ in 0..MAX_TRANSITIONS {
            if deadline.is_some_and(|d| env.now_ms() > d) {
                return Err(Failure::new(errors::TIMEOUT, "The execution timed out."));
            }
            let state = machine.states.get(&name).ok_or_else(|| {
                Failure::new(
                    errors::RUNTIME,
                    format!("State {name} is not in the machine"),
                )
            })?;
            let mut tries = vec![0u32; state.retry.len()];
            let mut state_cx = cx.clone();
            if !state_cx.is_object() {
                state_cx = json!({});
            }
            state_cx["State"] = json!({"Name": name, "EnteredTime": crate::time_text(env.now_ms()), "RetryCount": 0});
            if region.is_some() {
                env.note(vec![history::state_entered(state, env.now_ms(), &value)]);
            }
            let mut outcome = step::enter(
                state,
                &value,
                scope(&state_cx, &vars),
                env.now_ms(),
                env.rng(),
            );
            while let Outcome::Work(work) = outcome {
                let noted = region.as_ref().map(|r| {
                    env.note(history::work_started(&work, env.now_ms(), r));
                    work.clone()
                });
                let done = work_of(state, work, cx, &vars, env).await;
                if let Some(w) = &noted {
                    env.note(vec![match &done {
                        Ok(result) => history::work_succeeded(w, env.now_ms(), result),
                        Err(f) => history::work_failed(w, env.now_ms(), f),
                    }]);
                }
                outcome = match done {
                    Ok(result) => {
                        step::finish(state, &value, result, scope(&state_cx, &vars), env.rng())
                    }
                    Err(failure) => {
                        match step::recover(
                            state,
                            &value,
                            failure,
                            &tries,
                            scope(&state_cx, &vars),
                            env.rng(),
                        ) {
                            Recovery::Retry { retrier, delay_ms } => {
                                tries[retrier] += 1;
                                env.sleep_until(env.now_ms().saturating_add(delay_ms)).await;
                                state_cx["State"]["RetryCount"] = json!(tries.iter().sum::<u32>());
                                step::enter(
                                    state,
                                    &value,
                                    scope(&state_cx, &vars),
                                    env.now_ms(),
                                    env.rng(),
                                )
                            }
                            Recovery::Then(o) => o,
                        }
                    }
                };
            }
            let exited = |output: &Value, assigned: &Vars| {
                if region.is_some() {
                    let event = history::state_exited(state, env.now_ms(), output, assigned);
                    env.note(vec![event]);
                }
            };
            match outcome {
                Outcome::Next {
                    next,
                    output,
                    assigned,
                } => {
                    exited(&output, &assigned);
                    vars.extend(assigned);
                    name = next;
                    value = output;
                }
                Outcome::End { output, assigned } => {
                    exited(&output, &assigned);
                    return Ok(output);
                }
                Outcome::Fail(f) => return Err(f),
                Outcome::Wait {
                    until_ms,
                    next,
                    output,
                    assigned,
                } => {
                    env.sleep_until(until_ms).await;
                    exited(&output, &assigned);
                    vars.extend(assigned);
                    match next {
                        Some(n) => {
                            name = n;
                            value = output;
                        }
                        None => return Ok(output),
                    }
                }
                Outcome::Work(_) => unreachable!("work is done in the loop above"),
            }
        }
        Err(Failure::new(
            errors::RUNTIME,
            format!("The execution made more than {MAX_TRANSITIONS} transitions."),
        ))
    })
}

fn scope<'a>(context: &'a Value, vars: &'a Vars) -> Scope<'a> {
    Scope { context, vars }
}

/// Does a state's work: runs its Task, or its branches, or its items
/// (each branch and item in memory, start to end); the result to finish
/// the state with.
pub async fn work_of(
    state: &crate::asl::State,
    work: Work,
    cx: &Value,
    vars: &Vars,
    env: &dyn Env,
) -> Result<Value, Failure> {
    match work {
        Work::Task {
            resource,
            parameters,
            timeout_seconds,
            heartbeat_seconds,
        } => {
            env.task(TaskCall {
                resource,
                input: parameters,
                timeout_seconds,
                heartbeat_seconds,
            })
            .await
        }
        Work::Parallel { input } => parallel(state, input, cx, vars, env).await,
        Work::Map {
            items,
            max_concurrency,
            tolerated_failures,
            ..
        } => {
            let bounds = (max_concurrency, tolerated_failures);
            map(state, items, bounds, cx, vars, env).await
        }
    }
}

async fn parallel(
    state: &crate::asl::State,
    input: Value,
    cx: &Value,
    vars: &Vars,
    env: &dyn Env,
) -> Result<Value, Failure> {
    let Kind::Parallel { branches } = &state.kind else {
        return Err(Failure::new(errors::RUNTIME, "not a Parallel state"));
    };
    let runs = branches
        .iter()
        .map(|b| run(b, input.clone(), cx, vars.clone(), env));
    let results = futures_util::future::join_all(runs).await;
    results
        .into_iter()
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

async fn map(
    state: &crate::asl::State,
    items: Vec<Value>,
    (max_concurrency, tolerated_failures): (u64, u64),
    cx: &Value,
    vars: &Vars,
    env: &dyn Env,
) -> Result<Value, Failure> {
    let Kind::Map(m) = &state.kind else {
        return Err(Failure::new(errors::RUNTIME, "not a Map state"));
    };
    let tolerant = tolerant(state);
    let at_once = match max_concurrency {
        0 => DEFAULT_MAP_CONCURRENCY,
        n => (n as usize).min(DEFAULT_MAP_CONCURRENCY.max(n as usize)),
    };
    let results: Vec<Result<Value, Failure>> = stream::iter(items.into_iter().enumerate())
        .map(|(i, item)| {
            let item_cx = step::with_map_item(cx, i, &item);
            let vars = vars.clone();
            async move { run(&m.processor, item, &item_cx, vars, env).await }
        })
        .buffered(at_once.max(1))
        .collect()
        .await;
    map_outcome(results, tolerant, tolerated_failures)
}

/// Whether a Map state with `tolerant` failure bounds tolerates its
/// items' results: their outputs in order (a tolerated failure as its
/// Error and Cause), or the state's failure.
pub fn map_outcome(
    results: Vec<Result<Value, Failure>>,
    tolerant: bool,
    tolerated_failures: u64,
) -> Result<Value, Failure> {
    let total = results.len();
    let failed = results.iter().filter(|r| r.is_err()).count() as u64;
    if failed > 0 && !tolerant {
        let first = results.into_iter().find_map(Result::err);
        return Err(first.unwrap_or_else(|| Failure::new(errors::TASK_FAILED, "")));
    }
    if failed > tolerated_failures {
        return Err(Failure::new(
            errors::EXCEED_TOLERATED_FAILURE_THRESHOLD,
            format!("{failed} of {total} items failed; {tolerated_failures} were tolerated."),
        ));
    }
    Ok(Value::Array(
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|f| json!({"Error": f.error, "Cause": f.cause})))
            .collect(),
    ))
}

/// Whether a Map state bounds its failures (else one fails it).
pub fn tolerant(state: &crate::asl::State) -> bool {
    match &state.kind {
        Kind::Map(m) => {
            m.tolerated_failure_count.is_some() || m.tolerated_failure_percentage.is_some()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    type Answer = Box<dyn Fn(&TaskCall, usize) -> Result<Value, Failure> + Send + Sync>;

    /// A fake world: tasks answer by resource, time moves only when slept.
    struct Fake {
        now: Mutex<i64>,
        slept: Mutex<Vec<i64>>,
        calls: Mutex<Vec<TaskCall>>,
        answer: Answer,
    }

    struct Half;
    impl Rng for Half {
        fn unit(&self) -> f64 {
            0.5
        }
    }

    #[async_trait::async_trait]
    impl Env for Fake {
        async fn task(&self, call: TaskCall) -> Result<Value, Failure> {
            let n = {
                let mut calls = self.calls.lock().unwrap();
                calls.push(call.clone());
                calls.iter().filter(|c| c.resource == call.resource).count()
            };
            (self.answer)(&call, n)
        }
        async fn sleep_until(&self, until_ms: i64) {
            let mut now = self.now.lock().unwrap();
            self.slept.lock().unwrap().push(until_ms - *now);
            *now = (*now).max(until_ms);
        }
        fn now_ms(&self) -> i64 {
            *self.now.lock().unwrap()
        }
        fn rng(&self) -> &dyn Rng {
            &Half
        }
    }

    fn fake(
        answer: impl Fn(&TaskCall, usize) -> Result<Value, Failure> + Send + Sync + 'static,
    ) -> Fake {
        Fake {
            now: Mutex::new(1_000_000),
            slept: Mutex::default(),
            calls: Mutex::default(),
            answer: Box::new(answer),
        }
    }

    fn machine(v: Value) -> StateMachine {
        StateMachine::parse(&v.to_string()).unwrap()
    }

    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(f)
    }

    #[test]
    fn a_saga_compensates_when_a_step_fails() {
        let m = machine(json!({
            "StartAt": "Flight",
            "States": {
                "Flight": {"Type": "Task", "Resource": "flight", "ResultPath": "$.flight", "Next": "Hotel",
                    "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "Failed"}]},
                "Hotel": {"Type": "Task", "Resource": "hotel", "ResultPath": "$.hotel", "Next": "Booked",
                    "Catch": [{"ErrorEquals": ["States.ALL"], "ResultPath": "$.error", "Next": "CancelFlight"}]},
                "Booked": {"Type": "Succeed"},
                "CancelFlight": {"Type": "Task", "Resource": "cancel-flight", "ResultPath": null, "Next": "Failed"},
                "Failed": {"Type": "Fail", "Error": "BookingFailed", "CausePath": "$.error.Cause"}
            }
        }));
        let env = fake(|call, _| match call.resource.as_str() {
            "hotel" => Err(Failure::new("NoRooms", "the hotel is full")),
            _ => Ok(json!({"ok": call.resource})),
        });
        let out = block_on(run(&m, json!({"trip": 1}), &json!({}), Vars::new(), &env));
        assert_eq!(out, Err(Failure::new("BookingFailed", "the hotel is full")));
        let called: Vec<String> = env
            .calls
            .lock()
            .unwrap()
            .iter()
            .map(|c| c.resource.clone())
            .collect();
        assert_eq!(called, ["flight", "hotel", "cancel-flight"]);
        let cancel = &env.calls.lock().unwrap()[2];
        assert_eq!(cancel.input["flight"], json!({"ok": "flight"}));
    }

    #[test]
    fn retries_back_off_with_jitter_on_the_fake_clock() {
        let m = machine(json!({
            "StartAt": "Call",
            "States": {"Call": {"Type": "Task", "Resource": "flaky", "End": true,
                "Retry": [{"ErrorEquals": ["Throttled"], "IntervalSeconds": 2, "BackoffRate": 3,
                           "MaxAttempts": 3, "JitterStrategy": "FULL"}]}}
        }));
        let env = fake(|_, n| match n {
            1..=3 => Err(Failure::new("Throttled", "slow down")),
            _ => Ok(json!("done")),
        });
        assert_eq!(
            block_on(run(&m, json!({}), &json!({}), Vars::new(), &env)),
            Ok(json!("done"))
        );
        // 2, 6, 18 s, each halved by the fixed jitter.
        assert_eq!(*env.slept.lock().unwrap(), [1000, 3000, 9000]);
        let env = fake(|_, _| Err(Failure::new("Throttled", "slow down")));
        assert_eq!(
            block_on(run(&m, json!({}), &json!({}), Vars::new(), &env))
                .unwrap_err()
                .error,
            "Throttled",
            "after MaxAttempts the error goes on"
        );
    }

    #[test]
    fn choice_wait_pass_and_paths() {
        let m = machine(json!({
            "StartAt": "Route",
            "States": {
                "Route": {"Type": "Choice", "Choices": [
                    {"Variable": "$.n", "NumericGreaterThan": 10, "Next": "Big"}], "Default": "Small"},
                "Big": {"Type": "Wait", "SecondsPath": "$.n", "Next": "Label"},
                "Small": {"Type": "Pass", "Result": "small", "ResultPath": "$.size", "End": true},
                "Label": {"Type": "Pass", "Parameters": {"size": "big", "n.$": "$.n",
                    "id.$": "$$.Execution.Id", "state.$": "$$.State.Name"}, "End": true}
            }
        }));
        let env = fake(|_, _| Ok(Value::Null));
        let cx = json!({"Execution": {"Id": "exec-1"}});
        assert_eq!(
            block_on(run(&m, json!({"n": 12}), &cx, Vars::new(), &env)),
            Ok(json!({"size": "big", "n": 12, "id": "exec-1", "state": "Label"}))
        );
        assert_eq!(*env.slept.lock().unwrap(), [12_000]);
        assert_eq!(
            block_on(run(&m, json!({"n": 2}), &cx, Vars::new(), &env)),
            Ok(json!({"n": 2, "size": "small"}))
        );
        let none = machine(
            json!({"StartAt": "C", "States": {"C": {"Type": "Choice", "Choices": [
            {"Variable": "$.n", "NumericEquals": 1, "Next": "D"}]}, "D": {"Type": "Succeed"}}}),
        );
        assert_eq!(
            block_on(run(&none, json!({"n": 2}), &cx, Vars::new(), &env))
                .unwrap_err()
                .error,
            "States.NoChoiceMatched"
        );
    }

    #[test]
    fn parallel_and_map_with_tolerated_failures() {
        let m = machine(json!({
            "StartAt": "Both",
            "States": {
                "Both": {"Type": "Parallel", "Next": "Each", "ResultPath": "$.both", "Branches": [
                    {"StartAt": "A", "States": {"A": {"Type": "Pass", "Result": "a", "End": true}}},
                    {"StartAt": "B", "States": {"B": {"Type": "Task", "Resource": "b", "End": true}}}]},
                "Each": {"Type": "Map", "ItemsPath": "$.items", "MaxConcurrency": 2,
                    "ToleratedFailureCount": 1,
                    "ItemSelector": {"value.$": "$$.Map.Item.Value", "index.$": "$$.Map.Item.Index"},
                    "ItemProcessor": {"StartAt": "Work", "States": {
                        "Work": {"Type": "Task", "Resource": "item", "End": true}}},
                    "ResultPath": "$.done", "End": true}
            }
        }));
        let env = fake(|call, _| match call.resource.as_str() {
            "item" if call.input["value"] == 3 => Err(Failure::new("Bad", "three")),
            "item" => Ok(json!(call.input["index"])),
            _ => Ok(json!("b")),
        });
        let out = block_on(run(
            &m,
            json!({"items": [1, 2, 3]}),
            &json!({}),
            Vars::new(),
            &env,
        ))
        .unwrap();
        assert_eq!(out["both"], json!(["a", "b"]));
        assert_eq!(
            out["done"],
            json!([0, 1, {"Error": "Bad", "Cause": "three"}])
        );
        let env = fake(|call, _| match call.resource.as_str() {
            "item" if call.input["value"] != 1 => Err(Failure::new("Bad", "no")),
            _ => Ok(json!(1)),
        });
        let err = block_on(run(
            &m,
            json!({"items": [1, 2, 3]}),
            &json!({}),
            Vars::new(),
            &env,
        ))
        .unwrap_err();
        assert_eq!(err.error, "States.ExceedToleratedFailureThreshold");
    }

    #[test]
    fn a_machine_timeout_and_a_loop_end_the_run() {
        let slow = machine(json!({"TimeoutSeconds": 5, "StartAt": "W", "States": {
            "W": {"Type": "Wait", "Seconds": 10, "Next": "P"}, "P": {"Type": "Pass", "End": true}}}));
        let env = fake(|_, _| Ok(Value::Null));
        assert_eq!(
            block_on(run(&slow, json!({}), &json!({}), Vars::new(), &env))
                .unwrap_err()
                .error,
            "States.Timeout"
        );
        let forever =
            machine(json!({"StartAt": "P", "States": {"P": {"Type": "Pass", "Next": "P"}}}));
        assert_eq!(
            block_on(run(&forever, json!({}), &json!({}), Vars::new(), &env))
                .unwrap_err()
                .error,
            "States.Runtime"
        );
    }

    #[test]
    fn jsonata_states_and_variables_in_both_languages() {
        let m = machine(json!({
            "QueryLanguage": "JSONata",
            "StartAt": "Remember",
            "States": {
                "Remember": {"Type": "Pass",
                    "Assign": {"customer": "{% $states.input.customer %}", "limit": 15},
                    "Output": {"items": "{% $states.input.items %}"}, "Next": "Price"},
                "Price": {"Type": "Task", "Resource": "price",
                    "Arguments": {"name": "{% $customer %}", "prices": "{% [$states.input.items.price] %}"},
                    "Output": "{% $states.result.total %}",
                    "Assign": {"total": "{% $states.result.total %}"},
                    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Failed",
                        "Output": "{% $states.errorOutput.Cause %}", "Assign": {"why": "{% $states.errorOutput.Error %}"}}],
                    "Next": "Check"},
                "Check": {"Type": "Choice", "Choices": [
                    {"Condition": "{% $total > $limit %}", "Next": "Each", "Assign": {"big": true}}],
                    "Default": "Small"},
                "Each": {"Type": "Map", "Items": "{% $range(1, 3, 1) %}",
                    "ItemSelector": {"n": "{% $states.context.Map.Item.Value %}", "who": "{% $customer %}"},
                    "ItemProcessor": {"StartAt": "Twice", "States": {
                        "Twice": {"Type": "Pass", "Output": "{% $states.input.who & ($states.input.n * 2) %}", "End": true}}},
                    "Output": {"each": "{% $states.result %}", "big": "{% $big %}", "total": "{% $total %}"},
                    "End": true},
                "Small": {"Type": "Succeed", "Output": "small"},
                "Failed": {"Type": "Fail", "Error": "{% $why %}", "Cause": "{% $states.input %}"}
            }
        }));
        let env = fake(|call, _| {
            let sum: f64 = call.input["prices"]
                .as_array()
                .unwrap()
                .iter()
                .filter_map(Value::as_f64)
                .sum();
            match call.input["name"].as_str() {
                Some("ann") => Ok(json!({"total": sum})),
                _ => Err(Failure::new("Billing.Down", "no prices today")),
            }
        });
        let input = json!({"customer": "ann", "items": [{"price": 10}, {"price": 20}]});
        let out = block_on(run(&m, input, &json!({}), Vars::new(), &env)).unwrap();
        assert_eq!(
            out,
            json!({"each": ["ann2", "ann4", "ann6"], "big": true, "total": 30})
        );
        assert_eq!(
            env.calls.lock().unwrap()[0].input,
            json!({"name": "ann", "prices": [10, 20]})
        );
        let input = json!({"customer": "bob", "items": [{"price": 1}]});
        let failed = block_on(run(&m, input, &json!({}), Vars::new(), &env)).unwrap_err();
        assert_eq!(failed, Failure::new("Billing.Down", "no prices today"));

        // JSONPath states read variables as `$name` paths, and Assign's
        // `$` is what the state made.
        let m = machine(json!({
            "StartAt": "Keep",
            "States": {
                "Keep": {"Type": "Pass", "Result": {"x": 41}, "Assign": {"kept.$": "$.x", "fixed": "a"}, "Next": "Use"},
                "Use": {"Type": "Pass", "Parameters": {"next.$": "States.MathAdd($kept, 1)", "f.$": "$fixed"}, "Next": "Pick"},
                "Pick": {"Type": "Choice", "Choices": [{"Variable": "$kept", "NumericEquals": 41, "Next": "Done"}]},
                "Done": {"Type": "Succeed"}
            }
        }));
        let out = block_on(run(&m, json!({}), &json!({}), Vars::new(), &env)).unwrap();
        assert_eq!(out, json!({"next": 42, "f": "a"}));
    }
}
