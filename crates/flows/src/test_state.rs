//! TestState: one state run on its own with a given input, its Task
//! called for real (or its result mocked), answering what happened — the
//! output and the next state, the error, a retry it would make, or the
//! Catch it would take — and with DEBUG, each payload step's value.

use serde_json::{json, Value};

use crate::asl::{invalid_definition, Kind, State, StateMachine};
use crate::engine::{Flows, FlowsError, Tasks};
use crate::path::Scope;
use crate::payload;
use crate::run::{self, TaskCall};
use crate::step::{self, Failure, Outcome, Recovery, Vars, Work};

/// What TestState was asked.
pub struct TestRequest {
    pub definition: String,
    pub state_name: Option<String>,
    pub input: String,
    pub inspection_level: String,
    pub context: Option<String>,
    /// The workflow variables the state sees (a JSON object).
    pub variables: Option<String>,
    /// A Task's result instead of calling it: `Ok(result)` or the error.
    pub mock: Option<Result<Value, Failure>>,
}

/// TestState's answer.
#[derive(Debug, Default)]
pub struct Tested {
    pub status: &'static str,
    pub output: Option<Value>,
    pub next_state: Option<String>,
    pub error: Option<Failure>,
    pub inspection: Value,
}

fn invalid(message: impl Into<String>) -> FlowsError {
    FlowsError::new("InvalidDefinition", message)
}

/// The state to test, with stubs for every state it may go to, as a
/// machine of its own.
fn machine_of(req: &TestRequest) -> Result<(StateMachine, String), FlowsError> {
    let given: Value = serde_json::from_str(&req.definition).map_err(|e| {
        invalid(format!(
            "Invalid State Machine Definition: 'INVALID_JSON_DESCRIPTION: {e}'"
        ))
    })?;
    let language = given.get("States").and(given.get("QueryLanguage")).cloned();
    let (name, state) = match given.get("States") {
        Some(states) => {
            let name = req
                .state_name
                .clone()
                .or_else(|| given["StartAt"].as_str().map(String::from))
                .ok_or_else(|| invalid("stateName is required with a whole state machine"))?;
            let state = states.get(&name).cloned().ok_or_else(|| {
                FlowsError::new(
                    "ValidationException",
                    format!("State {name} is not in the definition"),
                )
            })?;
            (name, state)
        }
        None => (
            req.state_name.clone().unwrap_or_else(|| "TestState".into()),
            given,
        ),
    };
    let mut targets: Vec<String> = Vec::new();
    let mut add = |v: &Value| {
        if let Some(t) = v.as_str() {
            targets.push(t.to_string());
        }
    };
    add(&state["Next"]);
    add(&state["Default"]);
    for c in state["Choices"].as_array().into_iter().flatten() {
        add(&c["Next"]);
    }
    for c in state["Catch"].as_array().into_iter().flatten() {
        add(&c["Next"]);
    }
    let mut states = serde_json::Map::new();
    for t in targets.into_iter().filter(|t| *t != name) {
        states.insert(t, json!({"Type": "Succeed"}));
    }
    states.insert(name.clone(), state);
    let mut machine = json!({"StartAt": name, "States": states});
    if let Some(language) = language {
        machine["QueryLanguage"] = language;
    }
    let machine = machine.to_string();
    let parsed = StateMachine::parse(&machine).map_err(|d| invalid(invalid_definition(&d)))?;
    Ok((parsed, name))
}

impl Flows {
    pub async fn test_state(&self, req: TestRequest) -> Result<Tested, FlowsError> {
        let (machine, name) = machine_of(&req)?;
        let state: &State = &machine.states[&name];
        if let Kind::Task { resource, .. } = &state.kind {
            if crate::tokens::callback_of(resource).is_some() && req.mock.is_none() {
                return Err(FlowsError::new(
                    "ValidationException",
                    "TestState does not wait for task tokens, activities or child executions: give a mock result",
                ));
            }
        }
        let input: Value = serde_json::from_str(if req.input.is_empty() {
            "{}"
        } else {
            &req.input
        })
        .map_err(|e| FlowsError::new("InvalidExecutionInput", format!("Invalid input: '{e}'")))?;
        let cx: Value = match &req.context {
            Some(c) => serde_json::from_str(c).map_err(|e| {
                FlowsError::new("ValidationException", format!("Invalid context: '{e}'"))
            })?,
            None => {
                json!({"Execution": {"Id": "TestState", "Name": "TestState"}, "StateMachine": {"Name": "TestState"}})
            }
        };
        let mut cx = cx;
        cx["State"] = json!({"Name": name, "EnteredTime": crate::time_text(self.clock.now_ms()), "RetryCount": 0});
        let mut vars: Vars = match &req.variables {
            Some(v) => serde_json::from_str(v).map_err(|e| {
                FlowsError::new(
                    "ValidationException",
                    format!("Invalid variables: '{e}' (a JSON object)"),
                )
            })?,
            None => Vars::new(),
        };
        let given_vars = vars.clone();
        let scope = Scope {
            context: &cx,
            vars: &given_vars,
        };
        let debug = req.inspection_level != "INFO";
        let mut inspection = json!({"input": input.to_string()});
        if debug {
            if let Ok(v) = payload::select(&input, &state.input_path, "InputPath") {
                inspection["afterInputPath"] = json!(v.to_string());
                if let Some(p) = &state.parameters {
                    if let Ok(p) = p.apply(&v, scope, self.rng.as_ref()) {
                        inspection["afterParameters"] = json!(p.to_string());
                    }
                }
            }
        }
        let now = self.clock.now_ms();
        let entered = step::enter(state, &input, scope, now, self.rng.as_ref());
        if let (true, Outcome::Work(Work::Task { parameters, .. })) =
            (debug && state.jsonata, &entered)
        {
            inspection["afterArguments"] = json!(parameters.to_string());
        }
        let outcome = match entered {
            Outcome::Work(work) => {
                let done = match (&req.mock, &work) {
                    (Some(m), _) => m.clone(),
                    (
                        None,
                        Work::Task {
                            resource,
                            parameters,
                            timeout_seconds,
                            heartbeat_seconds,
                        },
                    ) => {
                        let env = Tasks {
                            flows: self
                                .shared()
                                .ok_or_else(|| FlowsError::internal("engine gone"))?,
                            trigger: "states:TestState".into(),
                        };
                        use crate::run::Env;
                        env.task(TaskCall {
                            resource: resource.clone(),
                            input: parameters.clone(),
                            timeout_seconds: *timeout_seconds,
                            heartbeat_seconds: *heartbeat_seconds,
                        })
                        .await
                    }
                    (None, _) => {
                        let env = Tasks {
                            flows: self
                                .shared()
                                .ok_or_else(|| FlowsError::internal("engine gone"))?,
                            trigger: "states:TestState".into(),
                        };
                        run::work_of(state, work.clone(), &cx, &given_vars, &env).await
                    }
                };
                match done {
                    Ok(result) => {
                        if debug {
                            inspection["result"] = json!(result.to_string());
                            if let Some(t) = &state.result_selector {
                                if let Ok(v) = t.apply(&result, scope, self.rng.as_ref()) {
                                    inspection["afterResultSelector"] = json!(v.to_string());
                                }
                            }
                        }
                        step::finish(state, &input, result, scope, self.rng.as_ref())
                    }
                    Err(f) => {
                        inspection["errorDetails"] =
                            json!({"catchIndex": null, "retryIndex": null});
                        match step::recover(
                            state,
                            &input,
                            f.clone(),
                            &vec![0; state.retry.len()],
                            scope,
                            self.rng.as_ref(),
                        ) {
                            Recovery::Retry { retrier, delay_ms } => {
                                inspection["errorDetails"] = json!({"retryIndex": retrier, "retryBackoffIntervalSeconds": delay_ms / 1000});
                                return Ok(Tested {
                                    status: "RETRIABLE",
                                    error: Some(f),
                                    inspection,
                                    ..Default::default()
                                });
                            }
                            Recovery::Then(Outcome::Next {
                                next,
                                output,
                                assigned,
                            }) => {
                                let index = state.catch.iter().position(|c| {
                                    crate::errors::matches(&c.error_equals, &f.error)
                                });
                                inspection["errorDetails"] = json!({"catchIndex": index});
                                vars.extend(assigned);
                                inspection["variables"] = json!(Value::Object(vars).to_string());
                                return Ok(Tested {
                                    status: "CAUGHT_ERROR",
                                    output: Some(output),
                                    next_state: Some(next),
                                    error: Some(f),
                                    inspection,
                                });
                            }
                            Recovery::Then(o) => o,
                        }
                    }
                }
            }
            other => other,
        };
        if let Outcome::Next { assigned, .. }
        | Outcome::Wait { assigned, .. }
        | Outcome::End { assigned, .. } = &outcome
        {
            vars.extend(assigned.clone());
        }
        inspection["variables"] = json!(Value::Object(vars).to_string());
        Ok(match outcome {
            Outcome::Next { next, output, .. } => {
                if debug && !state.jsonata {
                    inspection["afterResultPath"] = json!(output.to_string());
                }
                Tested {
                    status: "SUCCEEDED",
                    output: Some(output),
                    next_state: Some(next),
                    inspection,
                    ..Default::default()
                }
            }
            Outcome::Wait { next, output, .. } => Tested {
                status: "SUCCEEDED",
                output: Some(output),
                next_state: next,
                inspection,
                ..Default::default()
            },
            Outcome::End { output, .. } => Tested {
                status: "SUCCEEDED",
                output: Some(output),
                inspection,
                ..Default::default()
            },
            Outcome::Fail(f) => Tested {
                status: "FAILED",
                error: Some(f),
                inspection,
                ..Default::default()
            },
            Outcome::Work(_) => Tested {
                status: "FAILED",
                error: Some(Failure::new(
                    crate::errors::RUNTIME,
                    "the state's work did not run",
                )),
                inspection,
                ..Default::default()
            },
        })
    }
}
