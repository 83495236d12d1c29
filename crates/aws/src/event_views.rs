//! wisp's own views of the event side: schedules with their next fire
//! times (`wisp schedules ls`), a bus's latest events (`wisp events
//! tail`), and the graph of what feeds what (`/wisp/v1/graph`): functions,
//! queues, buses, rules, schedules and workflows.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use wisp_events::EventsError;
use wisp_store::setting_kinds;

use crate::error::{ApiError, ApiResult};
use crate::ApiState;

fn failed(e: EventsError) -> ApiError {
    match e.internal {
        true => ApiError::internal(e.message),
        false => ApiError::not_found(e.message),
    }
}

/// Every schedule and scheduled rule, with when each fires next.
pub(crate) async fn schedules(State(state): State<Arc<ApiState>>) -> ApiResult<Json<Value>> {
    let ev = &state.events;
    let mut schedules = Vec::new();
    for s in ev.list_schedules(None, "").await.map_err(failed)? {
        let next = ev.next_fire(&s.group_name, &s.name).await.map_err(failed)?;
        schedules.push(json!({
            "group": s.group_name,
            "name": s.name,
            "expression": s.schedule_expression,
            "timezone": s.schedule_expression_timezone.as_deref().unwrap_or("UTC"),
            "state": s.state,
            "target": s.target.arn,
            "window_minutes": s.flexible_window_minutes,
            "next_ms": next,
        }));
    }
    let mut rules = Vec::new();
    for bus in ev.list_buses("").await.map_err(failed)? {
        for r in ev.list_rules(&bus.name).await.map_err(failed)? {
            let Some(expression) = &r.schedule_expression else {
                continue;
            };
            let next = ev
                .next_rule_fire(&bus.name, &r.name)
                .await
                .map_err(failed)?;
            let targets: Vec<&str> = r.targets.iter().map(|t| t.arn.as_str()).collect();
            rules.push(json!({
                "bus": bus.name,
                "name": r.name,
                "expression": expression,
                "state": r.state,
                "targets": targets,
                "next_ms": next,
            }));
        }
    }
    Ok(Json(json!({ "schedules": schedules, "rules": rules })))
}

#[derive(Deserialize)]
pub(crate) struct TailQuery {
    after: Option<u64>,
}

/// The events this node accepted on `bus` after `after`.
pub(crate) async fn tail(
    State(state): State<Arc<ApiState>>,
    Path(bus): Path<String>,
    Query(q): Query<TailQuery>,
) -> ApiResult<Json<Value>> {
    let name = state.events.bus_name(Some(&bus)).map_err(failed)?;
    state.events.require_bus(&name).await.map_err(failed)?;
    let (events, last) = state.events.tail(&name, q.after);
    Ok(Json(json!({ "events": events, "last": last })))
}

/// A graph node's id from an ARN wisp delivers to.
fn node_of(arn: &str) -> Option<String> {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    match parts[..] {
        [_, _, "lambda", _, _, "function", rest] => Some(format!(
            "function:{}",
            rest.split(':').next().unwrap_or(rest)
        )),
        [_, _, "sqs", _, _, name] => Some(format!("queue:{name}")),
        [_, _, "events", _, _, rest] => rest.strip_prefix("event-bus/").map(|b| format!("bus:{b}")),
        _ => None,
    }
}

/// The nodes a state machine's Tasks call: functions (by ARN or
/// lambda:invoke's FunctionName), queues (sqs:sendMessage's QueueUrl),
/// buses (events:putEvents' entries), other workflows
/// (states:startExecution) and HTTP endpoints (http:invoke's
/// ApiEndpoint, by origin), at any depth of the definition, with
/// JSONPath's Parameters or JSONata's Arguments.
fn task_targets(v: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut todo = vec![v];
    while let Some(v) = todo.pop() {
        match v {
            Value::Object(m) => {
                if let Some(resource) = m.get("Resource").and_then(Value::as_str) {
                    let params = m
                        .get("Parameters")
                        .or_else(|| m.get("Arguments"))
                        .unwrap_or(&Value::Null);
                    match resource {
                        r if r.starts_with("arn:aws:states:::lambda:invoke") => {
                            if let Some(f) = params["FunctionName"].as_str() {
                                let name = f.split(':').nth(6).unwrap_or(f);
                                out.push(format!("function:{name}"));
                            }
                        }
                        r if r.starts_with("arn:aws:states:::sqs:sendMessage") => {
                            if let Some(url) = params["QueueUrl"].as_str() {
                                out.push(format!(
                                    "queue:{}",
                                    url.rsplit('/').next().unwrap_or(url)
                                ));
                            }
                        }
                        r if r.starts_with("arn:aws:states:::events:putEvents") => {
                            for e in params["Entries"].as_array().into_iter().flatten() {
                                let bus = e["EventBusName"].as_str().unwrap_or("default");
                                out.push(format!("bus:{}", bus.rsplit('/').next().unwrap_or(bus)));
                            }
                        }
                        r if r.starts_with("arn:aws:states:::states:startExecution") => {
                            if let Some(arn) = params["StateMachineArn"].as_str() {
                                let name = arn.split(':').nth(6).unwrap_or(arn);
                                out.push(format!("workflow:{name}"));
                            }
                        }
                        r if r.starts_with("arn:aws:states:::http:invoke") => {
                            let endpoint = params["ApiEndpoint"].as_str().unwrap_or_default();
                            if let Some((scheme, rest)) = endpoint.split_once("://") {
                                let host = rest.split('/').next().unwrap_or(rest);
                                out.push(format!("endpoint:{scheme}://{host}"));
                            }
                        }
                        r => out.extend(node_of(r)),
                    }
                }
                todo.extend(m.values());
            }
            Value::Array(items) => todo.extend(items.iter()),
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    out
}

/// What feeds what: functions, queues, buses, rules and schedules as
/// nodes; rules on buses, targets of rules and schedules, queues feeding
/// functions (event source mappings) and functions' async destinations
/// as edges. The data a dashboard draws its function graph from.
pub(crate) async fn graph(State(state): State<Arc<ApiState>>) -> ApiResult<Json<Value>> {
    let store = state.dispatcher.store();
    let ev = &state.events;
    let mut nodes: BTreeSet<(String, &str, String)> = BTreeSet::new();
    let mut edges: Vec<Value> = Vec::new();
    let mut edge = |from: String, to: String, kind: &str| {
        edges.push(json!({ "from": from, "to": to, "kind": kind }));
    };
    for f in store.list_latest().await? {
        nodes.insert((
            format!("function:{}", f.function),
            "function",
            f.function.clone(),
        ));
    }
    for q in state
        .sqs
        .stats()
        .await
        .map_err(|e| ApiError::internal(e.message))?
    {
        nodes.insert((format!("queue:{}", q.name), "queue", q.name.clone()));
    }
    for (m, _) in state.mappings.list() {
        if let Some(q) = node_of(&m.queue_arn) {
            edge(q, format!("function:{}", m.function), "mapping");
        }
    }
    for s in store
        .list_settings(setting_kinds::EVENT_INVOKE, None)
        .await?
    {
        for (which, kind) in [("OnSuccess", "on_success"), ("OnFailure", "on_failure")] {
            let arn = s.value["DestinationConfig"][which]["Destination"].as_str();
            if let Some(to) = arn.and_then(node_of) {
                edge(format!("function:{}", s.function), to, kind);
            }
        }
    }
    for bus in ev.list_buses("").await.map_err(failed)? {
        nodes.insert((format!("bus:{}", bus.name), "bus", bus.name.clone()));
        for r in ev.list_rules(&bus.name).await.map_err(failed)? {
            let id = format!("rule:{}/{}", bus.name, r.name);
            nodes.insert((id.clone(), "rule", format!("{}/{}", bus.name, r.name)));
            let kind = match r.schedule_expression {
                Some(_) => "schedules",
                None => "matches",
            };
            edge(format!("bus:{}", bus.name), id.clone(), kind);
            for t in &r.targets {
                if let Some(to) = node_of(&t.arn) {
                    edge(id.clone(), to, "target");
                }
            }
        }
    }
    for s in ev.list_schedules(None, "").await.map_err(failed)? {
        let id = format!("schedule:{}/{}", s.group_name, s.name);
        nodes.insert((
            id.clone(),
            "schedule",
            format!("{}/{}", s.group_name, s.name),
        ));
        if let Some(to) = node_of(&s.target.arn) {
            edge(id, to, "target");
        }
    }
    for m in state
        .flows
        .list()
        .await
        .map_err(|e| ApiError::internal(e.message))?
    {
        let id = format!("workflow:{}", m.name);
        nodes.insert((id.clone(), "workflow", m.name.clone()));
        let definition: Value = serde_json::from_str(&m.definition).unwrap_or(Value::Null);
        for to in task_targets(&definition) {
            if let Some(origin) = to.strip_prefix("endpoint:") {
                nodes.insert((to.clone(), "endpoint", origin.to_string()));
            }
            edge(id.clone(), to, "task");
        }
    }
    let nodes: Vec<Value> = nodes
        .into_iter()
        .map(|(id, kind, name)| json!({ "id": id, "kind": kind, "name": name }))
        .collect();
    Ok(Json(json!({ "nodes": nodes, "edges": edges })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workflow_calls_what_its_tasks_name_in_either_query_language() {
        let definition = json!({"StartAt": "A", "States": {
            "A": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": "arn:aws:lambda:us-east-1:000000000000:function:price"}, "Next": "B"},
            "B": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage",
                "QueryLanguage": "JSONata", "Arguments": {"QueueUrl": "http://h/000000000000/orders"}, "Next": "C"},
            "C": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync:2",
                "Parameters": {"StateMachineArn": "arn:aws:states:us-east-1:000000000000:stateMachine:ship"}, "Next": "D"},
            "D": {"Type": "Task", "Resource": "arn:aws:states:::http:invoke",
                "Parameters": {"ApiEndpoint": "https://api.example.com/v1/x", "Method": "GET"}, "End": true}}});
        assert_eq!(
            task_targets(&definition),
            [
                "endpoint:https://api.example.com",
                "function:price",
                "queue:orders",
                "workflow:ship"
            ]
        );
    }
}
