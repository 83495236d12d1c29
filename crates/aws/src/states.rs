//! Step Functions on the wire: AWS JSON 1.0, `X-Amz-Target:
//! AWSStepFunctions.<Operation>`. State machines and EXPRESS executions
//! run to their end by StartSyncExecution (botocore sends that one to the
//! `sync-` host: give the client `Config(inject_host_prefix=False)` when
//! its endpoint is an address).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use wisp_flows::engine::{Flows, FlowsError, Machine};
use wisp_flows::executions;
use wisp_flows::step::Failure;

use crate::json_protocol::{self, JsonError, JsonVersion};

const V: JsonVersion = JsonVersion::V1_0;

/// The X-Amz-Target prefix of Step Functions.
pub const TARGET: &str = "AWSStepFunctions";

fn error(e: FlowsError) -> JsonError {
    let status = match e.internal {
        true => StatusCode::INTERNAL_SERVER_ERROR,
        false => StatusCode::BAD_REQUEST,
    };
    JsonError::new(V, status, e.error_type, e.message)
}

fn invalid(message: impl Into<String>) -> JsonError {
    JsonError::new(V, StatusCode::BAD_REQUEST, "ValidationException", message)
}

/// Serves one Step Functions operation.
pub async fn handle(flows: &Arc<Flows>, operation: &str, body: &Bytes) -> Response {
    match call(flows, operation, body).await {
        Ok(v) => json_protocol::ok(V, &v),
        Err(e) => e.into_response(),
    }
}

fn input<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, JsonError> {
    json_protocol::input(V, body)
}

fn seconds(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

#[derive(Deserialize)]
struct Tag {
    key: String,
    value: String,
}

/// StartExecution's and StartSyncExecution's input.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StartIn {
    state_machine_arn: String,
    name: Option<String>,
    input: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ExecutionIn {
    execution_arn: String,
}

/// A machine ARN as a start names it: `name`, or `name:qualifier` for a
/// version or an alias.
fn machine_ref(arn: &str) -> Result<String, JsonError> {
    let (name, qualifier) = Flows::qualified(arn).map_err(error)?;
    Ok(match qualifier {
        Some(q) => format!("{name}:{q}"),
        None => name,
    })
}

/// The machine and number of a version ARN.
fn version_of(arn: &str) -> Result<(String, u64), JsonError> {
    match Flows::qualified(arn).map_err(error)? {
        (name, Some(q)) => q
            .parse()
            .map(|n| (name, n))
            .map_err(|_| invalid(format!("{arn} is not a state machine version"))),
        _ => Err(invalid(format!("{arn} is not a state machine version"))),
    }
}

/// The machine and name of an alias ARN.
fn alias_of(arn: &str) -> Result<(String, String), JsonError> {
    match Flows::qualified(arn).map_err(error)? {
        (name, Some(q)) if q.parse::<u64>().is_err() => Ok((name, q)),
        _ => Err(invalid(format!("{arn} is not a state machine alias"))),
    }
}

fn invalid_token() -> JsonError {
    JsonError::new(V, StatusCode::BAD_REQUEST, "InvalidToken", "Invalid Token")
}

/// One page of a listing: up to `max_results` (100 if not given) from
/// where `next_token` says, under `field`, with the token of the next.
fn page<T>(
    all: &[T],
    max_results: Option<i64>,
    next_token: Option<String>,
    field: &str,
    show: impl Fn(&T) -> Value,
) -> Result<Value, JsonError> {
    let limit = match max_results {
        None | Some(0) => 100,
        Some(n @ 1..=1000) => n as usize,
        Some(_) => return Err(invalid("maxResults is from 0 to 1000")),
    };
    let start = match &next_token {
        None => 0,
        Some(t) => t.parse::<usize>().map_err(|_| invalid_token())?,
    };
    let items: Vec<Value> = all.iter().skip(start).take(limit).map(show).collect();
    let mut out = json!({ field: items });
    if start + limit < all.len() {
        out["nextToken"] = json!((start + limit).to_string());
    }
    Ok(out)
}

/// A loggingConfiguration as AWS takes it: a level, and a log group to
/// write to unless it is OFF.
fn check_logging(config: Option<&Value>) -> Result<(), JsonError> {
    let Some(config) = config else {
        return Ok(());
    };
    let bad = |message: &str| {
        Err(JsonError::new(
            V,
            StatusCode::BAD_REQUEST,
            "InvalidLoggingConfiguration",
            message,
        ))
    };
    match config.get("level").and_then(Value::as_str) {
        None | Some("OFF") => Ok(()),
        Some("ALL" | "ERROR" | "FATAL") => {
            let has_group = config["destinations"].as_array().is_some_and(|d| {
                d.iter()
                    .any(|d| d["cloudWatchLogsLogGroup"]["logGroupArn"].is_string())
            });
            if has_group {
                Ok(())
            } else {
                bad("Invalid Logging Configuration: Must specify exactly one Log Destination.")
            }
        }
        Some(_) => bad("Invalid Logging Configuration: level must be ALL, ERROR, FATAL or OFF."),
    }
}

fn machine_json(flows: &Flows, m: &Machine) -> Value {
    let mut v = json!({
        "stateMachineArn": flows.machine_arn(&m.name),
        "name": m.name,
        "status": "ACTIVE",
        "definition": m.definition,
        "roleArn": m.role_arn,
        "type": m.kind,
        "creationDate": seconds(m.created_ms),
        "loggingConfiguration": m.logging_configuration.clone()
            .unwrap_or_else(|| json!({"level": "OFF", "includeExecutionData": false})),
        "tracingConfiguration": m.tracing_configuration.clone().unwrap_or_else(|| json!({"enabled": false})),
        "revisionId": m.revision_id,
    });
    if let Some(d) = &m.description {
        v["description"] = json!(d);
    }
    v
}

async fn call(flows: &Arc<Flows>, operation: &str, body: &Bytes) -> Result<Value, JsonError> {
    match operation {
        "CreateStateMachine" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                name: String,
                definition: String,
                role_arn: String,
                #[serde(rename = "type")]
                kind: Option<String>,
                description: Option<String>,
                logging_configuration: Option<Value>,
                tracing_configuration: Option<Value>,
                tags: Option<Vec<Tag>>,
                publish: Option<bool>,
                version_description: Option<String>,
            }
            let i: In = input(body)?;
            check_logging(i.logging_configuration.as_ref())?;
            let publish = i.publish.unwrap_or(false);
            let version_description = i.version_description.clone();
            let m = Machine {
                name: i.name,
                definition: i.definition,
                role_arn: i.role_arn,
                kind: i.kind.unwrap_or_default(),
                description: i.description,
                tags: i
                    .tags
                    .unwrap_or_default()
                    .into_iter()
                    .map(|t| (t.key, t.value))
                    .collect::<BTreeMap<_, _>>(),
                logging_configuration: i.logging_configuration,
                tracing_configuration: i.tracing_configuration,
                ..Default::default()
            };
            let m = flows.create(m).await.map_err(error)?;
            let mut out = json!({
                "stateMachineArn": flows.machine_arn(&m.name),
                "creationDate": seconds(m.created_ms),
            });
            if publish {
                let v = flows
                    .publish(&m.name, None, version_description)
                    .await
                    .map_err(error)?;
                out["stateMachineVersionArn"] = json!(flows.version_arn(&m.name, v.number));
            }
            Ok(out)
        }
        "DescribeStateMachine" | "DeleteStateMachine" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                state_machine_arn: String,
            }
            let i: In = input(body)?;
            let (name, qualifier) = Flows::qualified(&i.state_machine_arn).map_err(error)?;
            if let Some(q) = qualifier {
                let number = q.parse::<u64>().map_err(|_| {
                    invalid(format!(
                        "{} is not a state machine or a version",
                        i.state_machine_arn
                    ))
                })?;
                if operation == "DeleteStateMachine" {
                    return Err(invalid("delete a version with DeleteStateMachineVersion"));
                }
                let (mut m, _) = flows.get(&name).await.map_err(error)?;
                let v = flows.version(&name, number).await.map_err(error)?;
                m.definition = v.definition;
                m.role_arn = v.role_arn;
                m.revision_id = v.revision_id;
                m.description = v.description;
                m.created_ms = v.created_ms;
                let mut out = machine_json(flows, &m);
                out["stateMachineArn"] = json!(i.state_machine_arn);
                return Ok(out);
            }
            if operation == "DeleteStateMachine" {
                flows.delete(&name).await.map_err(error)?;
                return Ok(json!({}));
            }
            let (m, _) = flows.get(&name).await.map_err(error)?;
            Ok(machine_json(flows, &m))
        }
        "UpdateStateMachine" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                state_machine_arn: String,
                definition: Option<String>,
                role_arn: Option<String>,
                logging_configuration: Option<Value>,
                tracing_configuration: Option<Value>,
                publish: Option<bool>,
                version_description: Option<String>,
            }
            let i: In = input(body)?;
            check_logging(i.logging_configuration.as_ref())?;
            let name = Flows::machine_name(&i.state_machine_arn).map_err(error)?;
            if i.definition.is_none()
                && i.role_arn.is_none()
                && i.logging_configuration.is_none()
                && i.tracing_configuration.is_none()
            {
                return Err(JsonError::new(
                    V,
                    StatusCode::BAD_REQUEST,
                    "MissingRequiredParameter",
                    "Either the definition, the role ARN, the LoggingConfiguration, or the TracingConfiguration must be specified",
                ));
            }
            let m = flows
                .update(&name, |m| {
                    if let Some(d) = &i.definition {
                        m.definition = d.clone();
                    }
                    if let Some(r) = &i.role_arn {
                        m.role_arn = r.clone();
                    }
                    if let Some(l) = &i.logging_configuration {
                        m.logging_configuration = Some(l.clone());
                    }
                    if let Some(t) = &i.tracing_configuration {
                        m.tracing_configuration = Some(t.clone());
                    }
                })
                .await
                .map_err(error)?;
            let mut out = json!({"updateDate": seconds(flows_now()), "revisionId": m.revision_id});
            if i.publish.unwrap_or(false) {
                let v = flows
                    .publish(&name, Some(&m.revision_id), i.version_description)
                    .await
                    .map_err(error)?;
                out["stateMachineVersionArn"] = json!(flows.version_arn(&name, v.number));
            }
            Ok(out)
        }
        "ListStateMachines" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                max_results: Option<i64>,
                next_token: Option<String>,
            }
            let i: In = input(body)?;
            let all = flows.list().await.map_err(error)?;
            page(&all, i.max_results, i.next_token, "stateMachines", |m| {
                json!({
                    "stateMachineArn": flows.machine_arn(&m.name),
                    "name": m.name,
                    "type": m.kind,
                    "creationDate": seconds(m.created_ms),
                })
            })
        }
        "DescribeExecution" | "DescribeStateMachineForExecution" => {
            let i: ExecutionIn = input(body)?;
            if operation == "DescribeStateMachineForExecution" {
                let m = flows
                    .machine_for_execution(&i.execution_arn)
                    .await
                    .map_err(error)?;
                let mut out = machine_json(flows, &m);
                out["updateDate"] = seconds(m.created_ms);
                return Ok(out);
            }
            let v = flows
                .describe_execution(&i.execution_arn)
                .await
                .map_err(error)?;
            Ok(executions::describe(&v, &flows.machine_arn(&v.machine)))
        }
        "ListExecutions" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                state_machine_arn: Option<String>,
                status_filter: Option<String>,
                max_results: Option<i64>,
                next_token: Option<String>,
            }
            let i: In = input(body)?;
            let arn = i
                .state_machine_arn
                .ok_or_else(|| invalid("stateMachineArn is required"))?;
            let machine = Flows::machine_name(&arn).map_err(error)?;
            let (m, _) = flows.get(&machine).await.map_err(error)?;
            if m.kind == "EXPRESS" {
                return Err(error(FlowsError::new(
                    "StateMachineTypeNotSupported",
                    "This operation is not supported by this type of state machine",
                )));
            }
            if let Some(s) = &i.status_filter {
                const STATUSES: [&str; 6] = [
                    "RUNNING",
                    "SUCCEEDED",
                    "FAILED",
                    "TIMED_OUT",
                    "ABORTED",
                    "PENDING_REDRIVE",
                ];
                if !STATUSES.contains(&s.as_str()) {
                    return Err(invalid(format!("1 validation error detected: Value '{s}' at 'statusFilter' failed to satisfy constraint: Member must satisfy enum value set: [{}]", STATUSES.join(", "))));
                }
            }
            let all = flows
                .list_executions(&machine, i.status_filter.as_deref())
                .await
                .map_err(error)?;
            page(&all, i.max_results, i.next_token, "executions", |v| {
                let mut item = json!({
                    "executionArn": v.execution_arn,
                    "stateMachineArn": arn,
                    "name": v.name,
                    "status": v.status,
                    "startDate": seconds(v.started_ms),
                    "redriveCount": 0,
                });
                if let Some(t) = v.stopped_ms {
                    item["stopDate"] = seconds(t);
                }
                item
            })
        }
        "StopExecution" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                execution_arn: String,
                error: Option<String>,
                cause: Option<String>,
            }
            let i: In = input(body)?;
            let stopped = flows
                .stop_execution(&i.execution_arn, i.error, i.cause)
                .await
                .map_err(error)?;
            Ok(json!({"stopDate": seconds(stopped)}))
        }
        "GetExecutionHistory" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                execution_arn: String,
                max_results: Option<i64>,
                reverse_order: Option<bool>,
                next_token: Option<String>,
                include_execution_data: Option<bool>,
            }
            let i: In = input(body)?;
            let limit = match i.max_results {
                None | Some(0) => executions::DEFAULT_HISTORY_PAGE,
                Some(n @ 1..=1000) => n as u64,
                Some(_) => return Err(invalid("maxResults is from 0 to 1000")),
            };
            let after = i
                .next_token
                .as_deref()
                .map(|t| t.parse::<u64>().map_err(|_| invalid_token()))
                .transpose()?;
            let (mut events, more) = flows
                .history(
                    &i.execution_arn,
                    i.reverse_order.unwrap_or(false),
                    after,
                    limit,
                )
                .await
                .map_err(error)?;
            let with_data = i.include_execution_data.unwrap_or(true);
            for e in &mut events {
                if let Some(ms) = e["timestamp"].as_i64() {
                    e["timestamp"] = seconds(ms);
                }
                if !with_data {
                    wisp_flows::history::strip_data(e);
                }
            }
            let mut out = json!({"events": events});
            if let Some(next) = more {
                out["nextToken"] = json!(next.to_string());
            }
            Ok(out)
        }
        "ValidateStateMachineDefinition" => {
            #[derive(Deserialize)]
            struct In {
                definition: String,
            }
            let i: In = input(body)?;
            let found = Flows::validate(&i.definition);
            let diagnostics: Vec<Value> = found
                .iter()
                .map(|d| json!({"severity": "ERROR", "code": d.code, "message": d.message, "location": d.location}))
                .collect();
            Ok(json!({
                "result": if found.is_empty() { "OK" } else { "FAIL" },
                "diagnostics": diagnostics,
                "truncated": false,
            }))
        }
        "StartExecution" => {
            let i: StartIn = input(body)?;
            let machine = machine_ref(&i.state_machine_arn)?;
            let (arn, started_ms) = flows
                .start(&machine, i.name, i.input.as_deref().unwrap_or("{}"))
                .await
                .map_err(error)?;
            Ok(json!({"executionArn": arn, "startDate": seconds(started_ms)}))
        }
        "StartSyncExecution" => {
            let i: StartIn = input(body)?;
            let machine = machine_ref(&i.state_machine_arn)?;
            let f = flows
                .run_express(&machine, i.name, i.input.as_deref().unwrap_or("{}"))
                .await
                .map_err(error)?;
            let input_text = f.input.to_string();
            let mut out = json!({
                "executionArn": f.execution_arn,
                "stateMachineArn": flows.machine_arn(&machine),
                "name": f.name,
                "startDate": seconds(f.started_ms),
                "stopDate": seconds(f.stopped_ms),
                "status": f.status(),
                "input": input_text,
                "inputDetails": {"included": true},
                "billingDetails": {
                    "billedMemoryUsedInMB": 64,
                    "billedDurationInMilliseconds": ((f.stopped_ms - f.started_ms).max(1) as u64).div_ceil(100) * 100,
                },
            });
            match &f.result {
                Ok(output) => {
                    out["output"] = json!(output.to_string());
                    out["outputDetails"] = json!({"included": true});
                }
                Err(failure) => {
                    out["error"] = json!(failure.error);
                    out["cause"] = json!(failure.cause);
                }
            }
            Ok(out)
        }
        "SendTaskSuccess" | "SendTaskFailure" | "SendTaskHeartbeat" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                task_token: String,
                output: Option<String>,
                error: Option<String>,
                cause: Option<String>,
            }
            let i: In = input(body)?;
            if i.task_token.is_empty() || i.task_token.len() > 2048 {
                return Err(invalid("taskToken is from 1 to 2048 characters"));
            }
            let done = match operation {
                "SendTaskHeartbeat" => flows.send_task_heartbeat(&i.task_token).await,
                "SendTaskFailure" => {
                    let f = Failure::new(i.error.unwrap_or_default(), i.cause.unwrap_or_default());
                    flows.send_task_result(&i.task_token, Err(f)).await
                }
                _ => {
                    let text = i.output.ok_or_else(|| invalid("output is required"))?;
                    let output: Value = serde_json::from_str(&text).map_err(|e| {
                        error(FlowsError::new(
                            "InvalidOutput",
                            format!("Invalid Output: '{e}'"),
                        ))
                    })?;
                    flows.send_task_result(&i.task_token, Ok(output)).await
                }
            };
            done.map_err(error)?;
            Ok(json!({}))
        }
        "CreateActivity" => {
            #[derive(Deserialize)]
            struct In {
                name: String,
                tags: Option<Vec<Tag>>,
            }
            let i: In = input(body)?;
            let tags = i
                .tags
                .unwrap_or_default()
                .into_iter()
                .map(|t| (t.key, t.value))
                .collect();
            let a = flows.create_activity(&i.name, tags).await.map_err(error)?;
            Ok(
                json!({"activityArn": flows.activity_arn(&a.name), "creationDate": seconds(a.created_ms)}),
            )
        }
        "DescribeActivity" | "DeleteActivity" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                activity_arn: String,
            }
            let i: In = input(body)?;
            if operation == "DeleteActivity" {
                flows
                    .delete_activity(&i.activity_arn)
                    .await
                    .map_err(error)?;
                return Ok(json!({}));
            }
            let a = flows.activity(&i.activity_arn).await.map_err(error)?;
            Ok(
                json!({"activityArn": i.activity_arn, "name": a.name, "creationDate": seconds(a.created_ms)}),
            )
        }
        "ListActivities" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                max_results: Option<i64>,
                next_token: Option<String>,
            }
            let i: In = input(body)?;
            let all = flows.list_activities().await.map_err(error)?;
            page(
                &all,
                i.max_results,
                i.next_token,
                "activities",
                |a| json!({"activityArn": flows.activity_arn(&a.name), "name": a.name, "creationDate": seconds(a.created_ms)}),
            )
        }
        "GetActivityTask" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                activity_arn: String,
                worker_name: Option<String>,
            }
            let i: In = input(body)?;
            let worker = i.worker_name.unwrap_or_default();
            match flows
                .get_activity_task(&i.activity_arn, &worker)
                .await
                .map_err(error)?
            {
                Some((token, input)) => Ok(json!({"taskToken": token, "input": input.to_string()})),
                None => Ok(json!({})),
            }
        }
        "PublishStateMachineVersion" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                state_machine_arn: String,
                revision_id: Option<String>,
                description: Option<String>,
            }
            let i: In = input(body)?;
            let name = Flows::machine_name(&i.state_machine_arn).map_err(error)?;
            let v = flows
                .publish(&name, i.revision_id.as_deref(), i.description)
                .await
                .map_err(error)?;
            Ok(json!({
                "stateMachineVersionArn": flows.version_arn(&name, v.number),
                "creationDate": seconds(v.created_ms),
            }))
        }
        "DescribeMapRun" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                map_run_arn: String,
            }
            let i: In = input(body)?;
            flows.describe_map_run(&i.map_run_arn).await.map_err(error)
        }
        "ListMapRuns" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                execution_arn: String,
                max_results: Option<i64>,
                next_token: Option<String>,
            }
            let i: In = input(body)?;
            let all = flows.list_map_runs(&i.execution_arn).await.map_err(error)?;
            page(&all, i.max_results, i.next_token, "mapRuns", Value::clone)
        }
        "UpdateMapRun" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                map_run_arn: String,
                max_concurrency: Option<u64>,
                tolerated_failure_percentage: Option<f64>,
                tolerated_failure_count: Option<u64>,
            }
            let i: In = input(body)?;
            flows
                .update_map_run(
                    &i.map_run_arn,
                    i.max_concurrency,
                    i.tolerated_failure_count,
                    i.tolerated_failure_percentage,
                )
                .await
                .map_err(error)?;
            Ok(json!({}))
        }
        "ListStateMachineVersions" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                state_machine_arn: String,
                max_results: Option<i64>,
                next_token: Option<String>,
            }
            let i: In = input(body)?;
            let name = Flows::machine_name(&i.state_machine_arn).map_err(error)?;
            flows.get(&name).await.map_err(error)?;
            let all = flows.versions(&name).await.map_err(error)?;
            page(
                &all,
                i.max_results,
                i.next_token,
                "stateMachineVersions",
                |v| {
                    json!({
                        "stateMachineVersionArn": flows.version_arn(&name, v.number),
                        "creationDate": seconds(v.created_ms),
                    })
                },
            )
        }
        "DeleteStateMachineVersion" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                state_machine_version_arn: String,
            }
            let i: In = input(body)?;
            let (name, number) = version_of(&i.state_machine_version_arn)?;
            flows.delete_version(&name, number).await.map_err(error)?;
            Ok(json!({}))
        }
        "CreateStateMachineAlias" | "UpdateStateMachineAlias" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Route {
                state_machine_version_arn: String,
                weight: u32,
            }
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                name: Option<String>,
                state_machine_alias_arn: Option<String>,
                description: Option<String>,
                routing_configuration: Option<Vec<Route>>,
            }
            let i: In = input(body)?;
            let routing: Option<Vec<(String, u32)>> = i.routing_configuration.map(|r| {
                r.into_iter()
                    .map(|r| (r.state_machine_version_arn, r.weight))
                    .collect()
            });
            if operation == "UpdateStateMachineAlias" {
                let arn = i
                    .state_machine_alias_arn
                    .ok_or_else(|| invalid("stateMachineAliasArn is required"))?;
                let (machine, alias) = alias_of(&arn)?;
                let a = flows
                    .update_alias(&machine, &alias, i.description, routing.as_deref())
                    .await
                    .map_err(error)?;
                return Ok(json!({"updateDate": seconds(a.updated_ms)}));
            }
            let name = i.name.ok_or_else(|| invalid("name is required"))?;
            let routing = routing.ok_or_else(|| invalid("routingConfiguration is required"))?;
            let (machine, _) = routing
                .first()
                .map(|(arn, _)| version_of(arn))
                .transpose()?
                .ok_or_else(|| invalid("routingConfiguration routes to one or two versions"))?;
            let a = flows
                .create_alias(&machine, &name, i.description, &routing)
                .await
                .map_err(error)?;
            Ok(json!({
                "stateMachineAliasArn": flows.alias_arn(&machine, &a.name),
                "creationDate": seconds(a.created_ms),
            }))
        }
        "DescribeStateMachineAlias" | "DeleteStateMachineAlias" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                state_machine_alias_arn: String,
            }
            let i: In = input(body)?;
            let (machine, alias) = alias_of(&i.state_machine_alias_arn)?;
            if operation == "DeleteStateMachineAlias" {
                flows.delete_alias(&machine, &alias).await.map_err(error)?;
                return Ok(json!({}));
            }
            let (a, _) = flows.alias(&machine, &alias).await.map_err(error)?;
            let routing: Vec<Value> = a
                .routing
                .iter()
                .map(|(n, w)| json!({"stateMachineVersionArn": flows.version_arn(&machine, *n), "weight": w}))
                .collect();
            let mut out = json!({
                "stateMachineAliasArn": i.state_machine_alias_arn,
                "name": a.name,
                "routingConfiguration": routing,
                "creationDate": seconds(a.created_ms),
                "updateDate": seconds(a.updated_ms),
            });
            if let Some(d) = a.description {
                out["description"] = json!(d);
            }
            Ok(out)
        }
        "ListStateMachineAliases" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                state_machine_arn: String,
                max_results: Option<i64>,
                next_token: Option<String>,
            }
            let i: In = input(body)?;
            let name = Flows::machine_name(&i.state_machine_arn).map_err(error)?;
            flows.get(&name).await.map_err(error)?;
            let all = flows.aliases(&name).await.map_err(error)?;
            page(
                &all,
                i.max_results,
                i.next_token,
                "stateMachineAliases",
                |a| {
                    json!({
                        "stateMachineAliasArn": flows.alias_arn(&name, &a.name),
                        "creationDate": seconds(a.created_ms),
                    })
                },
            )
        }
        "TestState" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct Mock {
                result: Option<String>,
                error_output: Option<MockError>,
            }
            #[derive(Deserialize)]
            struct MockError {
                error: Option<String>,
                cause: Option<String>,
            }
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                definition: String,
                input: Option<String>,
                inspection_level: Option<String>,
                state_name: Option<String>,
                context: Option<String>,
                variables: Option<String>,
                mock: Option<Mock>,
            }
            let i: In = input(body)?;
            let mock = match i.mock {
                None => None,
                Some(Mock {
                    result: Some(r), ..
                }) => Some(Ok(serde_json::from_str(&r)
                    .map_err(|e| invalid(format!("mock.result is not JSON: {e}")))?)),
                Some(Mock {
                    error_output: Some(e),
                    ..
                }) => Some(Err(Failure::new(
                    e.error.unwrap_or_default(),
                    e.cause.unwrap_or_default(),
                ))),
                Some(_) => return Err(invalid("mock takes result or errorOutput")),
            };
            let level = i.inspection_level.unwrap_or_else(|| "INFO".into());
            let tested = flows
                .test_state(wisp_flows::test_state::TestRequest {
                    definition: i.definition,
                    state_name: i.state_name,
                    input: i.input.unwrap_or_default(),
                    inspection_level: level,
                    context: i.context,
                    variables: i.variables,
                    mock,
                })
                .await
                .map_err(error)?;
            let mut out = json!({"status": tested.status, "inspectionData": tested.inspection});
            if let Some(o) = tested.output {
                out["output"] = json!(o.to_string());
            }
            if let Some(n) = tested.next_state {
                out["nextState"] = json!(n);
            }
            if let Some(f) = tested.error {
                out["error"] = json!(f.error);
                out["cause"] = json!(f.cause);
            }
            Ok(out)
        }
        "TagResource" | "UntagResource" | "ListTagsForResource" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "camelCase")]
            struct In {
                resource_arn: String,
                tags: Option<Vec<Tag>>,
                tag_keys: Option<Vec<String>>,
            }
            let i: In = input(body)?;
            let name = Flows::machine_name(&i.resource_arn).map_err(|_| {
                JsonError::new(
                    V,
                    StatusCode::BAD_REQUEST,
                    "ResourceNotFound",
                    format!("Resource not found: '{}'", i.resource_arn),
                )
            })?;
            let m = match operation {
                "ListTagsForResource" => flows.get(&name).await.map(|(m, _)| m),
                _ => {
                    let add: Vec<(String, String)> = i
                        .tags
                        .unwrap_or_default()
                        .into_iter()
                        .map(|t| (t.key, t.value))
                        .collect();
                    let remove = i.tag_keys.unwrap_or_default();
                    flows
                        .update(&name, |m| {
                            m.tags.extend(add.iter().cloned());
                            for k in &remove {
                                m.tags.remove(k);
                            }
                        })
                        .await
                }
            }
            .map_err(error)?;
            if operation != "ListTagsForResource" {
                return Ok(json!({}));
            }
            let tags: Vec<Value> = m
                .tags
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            Ok(json!({ "tags": tags }))
        }
        other => Err(JsonError::unknown_operation(
            V,
            &format!("{TARGET}.{other}"),
        )),
    }
}

fn flows_now() -> i64 {
    use wisp_core::clock::Clock;
    wisp_core::clock::SystemClock.now_ms()
}
