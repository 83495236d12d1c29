//! History events as GetExecutionHistory answers them: a type, a time and
//! the details AWS gives that type. The engine adds ids as it commits.

use serde_json::{json, Value};

use crate::asl::{Kind, State};
use crate::step::{Failure, Work};

/// One event: its type, when, and its details under their field.
pub fn event(kind: &str, at_ms: i64, details: Option<(&str, Value)>) -> Value {
    let mut e = json!({"type": kind, "timestamp": at_ms});
    if let Some((field, d)) = details {
        e[field] = d;
    }
    e
}

fn data(field: &str, v: &Value) -> (String, Value) {
    (field.to_string(), Value::String(v.to_string()))
}

fn with_data(mut details: Value, field: &str, v: &Value) -> Value {
    let (f, text) = data(field, v);
    details[format!("{f}Details")] = json!({"truncated": false});
    details[f] = text;
    details
}

/// The prefix of a state's event types: `Pass`, `Task`, `Map`...
pub fn state_type(state: &State) -> &'static str {
    match state.kind {
        Kind::Pass { .. } => "Pass",
        Kind::Task { .. } => "Task",
        Kind::Choice { .. } => "Choice",
        Kind::Wait(_) => "Wait",
        Kind::Succeed => "Succeed",
        Kind::Fail { .. } => "Fail",
        Kind::Parallel { .. } => "Parallel",
        Kind::Map(_) => "Map",
    }
}

pub fn execution_started(at_ms: i64, input: &Value, role_arn: &str) -> Value {
    let details = with_data(json!({"roleArn": role_arn}), "input", input);
    event(
        "ExecutionStarted",
        at_ms,
        Some(("executionStartedEventDetails", details)),
    )
}

pub fn state_entered(state: &State, at_ms: i64, input: &Value) -> Value {
    let details = with_data(json!({"name": state.name}), "input", input);
    event(
        &format!("{}StateEntered", state_type(state)),
        at_ms,
        Some(("stateEnteredEventDetails", details)),
    )
}

pub fn state_exited(
    state: &State,
    at_ms: i64,
    output: &Value,
    assigned: &serde_json::Map<String, Value>,
) -> Value {
    let mut details = with_data(json!({"name": state.name}), "output", output);
    if !assigned.is_empty() {
        let shown: serde_json::Map<String, Value> = assigned
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.to_string())))
            .collect();
        details["assignedVariables"] = Value::Object(shown);
        details["assignedVariablesDetails"] = json!({"truncated": false});
    }
    event(
        &format!("{}StateExited", state_type(state)),
        at_ms,
        Some(("stateExitedEventDetails", details)),
    )
}

/// How the events of a Task name its resource: a Lambda function by ARN
/// and an activity have events of their own; an integration is its
/// service and action.
enum Resource<'a> {
    Function(&'a str),
    Activity(&'a str),
    Service { kind: &'a str, action: &'a str },
}

fn resource_of(resource: &str) -> Resource<'_> {
    match resource.strip_prefix("arn:aws:states:::") {
        Some(rest) => {
            let (kind, action) = rest.split_once(':').unwrap_or((rest, ""));
            Resource::Service { kind, action }
        }
        None if crate::tokens::activity_of(resource).is_some() => Resource::Activity(resource),
        None => Resource::Function(resource),
    }
}

/// The events that start a state's work.
pub fn work_started(work: &Work, at_ms: i64, region: &str) -> Vec<Value> {
    match work {
        Work::Task {
            resource,
            parameters,
            timeout_seconds,
            heartbeat_seconds,
        } => match resource_of(resource) {
            Resource::Function(arn) => {
                let mut d = with_data(json!({"resource": arn}), "input", parameters);
                if let Some(t) = timeout_seconds {
                    d["timeoutInSeconds"] = json!(t);
                }
                vec![
                    event(
                        "LambdaFunctionScheduled",
                        at_ms,
                        Some(("lambdaFunctionScheduledEventDetails", d)),
                    ),
                    event("LambdaFunctionStarted", at_ms, None),
                ]
            }
            Resource::Activity(arn) => {
                let mut d = with_data(json!({"resource": arn}), "input", parameters);
                if let Some(t) = timeout_seconds {
                    d["timeoutInSeconds"] = json!(t);
                }
                if let Some(t) = heartbeat_seconds {
                    d["heartbeatInSeconds"] = json!(t);
                }
                vec![event(
                    "ActivityScheduled",
                    at_ms,
                    Some(("activityScheduledEventDetails", d)),
                )]
            }
            Resource::Service { kind, action } => {
                let mut d = json!({
                    "resourceType": kind,
                    "resource": action,
                    "region": region,
                    "parameters": parameters.to_string(),
                });
                if let Some(t) = timeout_seconds {
                    d["timeoutInSeconds"] = json!(t);
                }
                if let Some(t) = heartbeat_seconds {
                    d["heartbeatInSeconds"] = json!(t);
                }
                vec![
                    event(
                        "TaskScheduled",
                        at_ms,
                        Some(("taskScheduledEventDetails", d)),
                    ),
                    task_started(work, at_ms),
                ]
            }
        },
        Work::Parallel { .. } => vec![event("ParallelStateStarted", at_ms, None)],
        Work::Map { items, .. } => vec![event(
            "MapStateStarted",
            at_ms,
            Some((
                "mapStateStartedEventDetails",
                json!({"length": items.len()}),
            )),
        )],
    }
}

/// The event of a Task (re)started: after a crash, the history shows the
/// task run again.
pub fn task_started(work: &Work, at_ms: i64) -> Value {
    match work {
        Work::Task { resource, .. } => match resource_of(resource) {
            Resource::Function(_) => event("LambdaFunctionStarted", at_ms, None),
            // A worker takes it later (GetActivityTask): no start yet.
            Resource::Activity(arn) => event(
                "ActivityScheduled",
                at_ms,
                Some(("activityScheduledEventDetails", json!({"resource": arn}))),
            ),
            Resource::Service { kind, action } => event(
                "TaskStarted",
                at_ms,
                Some((
                    "taskStartedEventDetails",
                    json!({"resourceType": kind, "resource": action}),
                )),
            ),
        },
        Work::Parallel { .. } => event("ParallelStateStarted", at_ms, None),
        Work::Map { items, .. } => event(
            "MapStateStarted",
            at_ms,
            Some((
                "mapStateStartedEventDetails",
                json!({"length": items.len()}),
            )),
        ),
    }
}

/// The event of a state's work done.
pub fn work_succeeded(work: &Work, at_ms: i64, output: &Value) -> Value {
    match work {
        Work::Task { resource, .. } => match resource_of(resource) {
            Resource::Function(_) => event(
                "LambdaFunctionSucceeded",
                at_ms,
                Some((
                    "lambdaFunctionSucceededEventDetails",
                    with_data(json!({}), "output", output),
                )),
            ),
            Resource::Activity(_) => event(
                "ActivitySucceeded",
                at_ms,
                Some((
                    "activitySucceededEventDetails",
                    with_data(json!({}), "output", output),
                )),
            ),
            Resource::Service { kind, action } => event(
                "TaskSucceeded",
                at_ms,
                Some((
                    "taskSucceededEventDetails",
                    with_data(
                        json!({"resourceType": kind, "resource": action}),
                        "output",
                        output,
                    ),
                )),
            ),
        },
        Work::Parallel { .. } => event("ParallelStateSucceeded", at_ms, None),
        Work::Map { .. } => event("MapStateSucceeded", at_ms, None),
    }
}

/// The event of a state's work failed (or timed out).
pub fn work_failed(work: &Work, at_ms: i64, f: &Failure) -> Value {
    let timed_out =
        f.error == crate::errors::TIMEOUT || f.error == crate::errors::HEARTBEAT_TIMEOUT;
    let cause = json!({"error": f.error, "cause": f.cause});
    match work {
        Work::Task { resource, .. } => match resource_of(resource) {
            Resource::Function(_) if timed_out => event(
                "LambdaFunctionTimedOut",
                at_ms,
                Some(("lambdaFunctionTimedOutEventDetails", cause)),
            ),
            Resource::Function(_) => event(
                "LambdaFunctionFailed",
                at_ms,
                Some(("lambdaFunctionFailedEventDetails", cause)),
            ),
            Resource::Activity(_) if timed_out => event(
                "ActivityTimedOut",
                at_ms,
                Some(("activityTimedOutEventDetails", cause)),
            ),
            Resource::Activity(_) => event(
                "ActivityFailed",
                at_ms,
                Some(("activityFailedEventDetails", cause)),
            ),
            Resource::Service { kind, action } => {
                let mut d = cause;
                d["resourceType"] = json!(kind);
                d["resource"] = json!(action);
                match timed_out {
                    true => event("TaskTimedOut", at_ms, Some(("taskTimedOutEventDetails", d))),
                    false => event("TaskFailed", at_ms, Some(("taskFailedEventDetails", d))),
                }
            }
        },
        Work::Parallel { .. } => event("ParallelStateFailed", at_ms, None),
        Work::Map { .. } => event("MapStateFailed", at_ms, None),
    }
}

pub fn execution_succeeded(at_ms: i64, output: &Value) -> Value {
    event(
        "ExecutionSucceeded",
        at_ms,
        Some((
            "executionSucceededEventDetails",
            with_data(json!({}), "output", output),
        )),
    )
}

/// The event of an execution ended by `f`: timed out, aborted or failed.
pub fn execution_ended(kind: &str, at_ms: i64, f: &Failure) -> Value {
    let field = match kind {
        "ExecutionTimedOut" => "executionTimedOutEventDetails",
        "ExecutionAborted" => "executionAbortedEventDetails",
        _ => "executionFailedEventDetails",
    };
    event(
        kind,
        at_ms,
        Some((field, json!({"error": f.error, "cause": f.cause}))),
    )
}

/// The event of a callback task's request made: it now waits for its
/// token (AWS's TaskSubmitted, with what the service answered).
pub fn task_submitted(work: &Work, at_ms: i64, output: &Value) -> Option<Value> {
    let Work::Task { resource, .. } = work else {
        return None;
    };
    let Resource::Service { kind, action } = resource_of(resource) else {
        return None;
    };
    Some(event(
        "TaskSubmitted",
        at_ms,
        Some((
            "taskSubmittedEventDetails",
            with_data(
                json!({"resourceType": kind, "resource": action}),
                "output",
                output,
            ),
        )),
    ))
}

/// The event of an activity taken by a worker.
pub fn activity_started(at_ms: i64, worker: &str) -> Value {
    event(
        "ActivityStarted",
        at_ms,
        Some(("activityStartedEventDetails", json!({"workerName": worker}))),
    )
}

/// A Map item's execution started.
pub fn map_iteration_started(state: &str, index: usize, at_ms: i64) -> Value {
    event(
        "MapIterationStarted",
        at_ms,
        Some((
            "mapIterationStartedEventDetails",
            json!({"name": state, "index": index}),
        )),
    )
}

/// A Map item's execution ended.
pub fn map_iteration(state: &str, index: usize, succeeded: bool, at_ms: i64) -> Value {
    let (kind, field) = match succeeded {
        true => ("MapIterationSucceeded", "mapIterationSucceededEventDetails"),
        false => ("MapIterationFailed", "mapIterationFailedEventDetails"),
    };
    event(
        kind,
        at_ms,
        Some((field, json!({"name": state, "index": index}))),
    )
}

/// An event without its input and output (`includeExecutionData` false):
/// each replaced by `…Details: {"included": false}`.
pub fn strip_data(event: &mut Value) {
    let Some(fields) = event.as_object_mut() else {
        return;
    };
    for (_, details) in fields.iter_mut() {
        if let Some(d) = details.as_object_mut() {
            for data in ["input", "output"] {
                if d.remove(data).is_some() {
                    d.remove(&format!("{data}Details"));
                    d.insert(format!("{data}Details"), json!({"included": false}));
                }
            }
        }
    }
}

/// A DISTRIBUTED Map began its map run.
pub fn map_run_started(map_run_arn: &str, at_ms: i64) -> Value {
    event(
        "MapRunStarted",
        at_ms,
        Some((
            "mapRunStartedEventDetails",
            json!({"mapRunArn": map_run_arn}),
        )),
    )
}

/// A map run ended: succeeded, or failed with the Map's failure.
pub fn map_run_ended(done: &Result<Value, Failure>, at_ms: i64) -> Value {
    match done {
        Ok(_) => event("MapRunSucceeded", at_ms, None),
        Err(f) => event(
            "MapRunFailed",
            at_ms,
            Some((
                "mapRunFailedEventDetails",
                json!({"error": f.error, "cause": f.cause}),
            )),
        ),
    }
}
