//! EventBridge on the wire: AWS JSON 1.1, `X-Amz-Target:
//! AWSEvents.<Operation>`. Reads each operation's input shape, calls the
//! bus engine, and answers in the output shape; errors are the modeled
//! exceptions botocore raises.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use wisp_events::archive::{Archive, Replay};
use wisp_events::envelope::Entry;
use wisp_events::http::{ApiDestination, Connection};
use wisp_events::model::{Bus, DeadLetterConfig, Rule, Target};
use wisp_events::{Events, EventsError};

use crate::json_protocol::{self, JsonError, JsonVersion};

const V: JsonVersion = JsonVersion::V1_1;

/// The X-Amz-Target prefix of EventBridge.
pub const TARGET: &str = "AWSEvents";

fn error(e: EventsError) -> JsonError {
    let status = match e.internal {
        true => StatusCode::INTERNAL_SERVER_ERROR,
        false => StatusCode::BAD_REQUEST,
    };
    JsonError::new(V, status, e.error_type, e.message)
}

/// Serves one EventBridge operation.
pub async fn handle(events: &Arc<Events>, operation: &str, body: &Bytes) -> Response {
    match call(events, operation, body).await {
        Ok(v) => json_protocol::ok(V, &v),
        Err(e) => e.into_response(),
    }
}

fn input<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, JsonError> {
    json_protocol::input(V, body)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    key: String,
    value: String,
}

fn tags_in(tags: Option<Vec<Tag>>) -> Result<BTreeMap<String, String>, EventsError> {
    let tags = tags.unwrap_or_default();
    if tags.len() > 50 {
        return Err(EventsError::validation("A resource has at most 50 tags."));
    }
    let mut out = BTreeMap::new();
    for t in tags {
        if t.key.is_empty() || t.key.len() > 128 || t.value.len() > 256 {
            return Err(EventsError::validation(
                "Tag keys have 1 to 128 characters, values at most 256.",
            ));
        }
        out.insert(t.key, t.value);
    }
    Ok(out)
}

fn tags_out(tags: &BTreeMap<String, String>) -> Value {
    tags.iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect()
}

fn seconds(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

/// A page of `items` from `token` (an offset), at most `limit` (1–100).
fn page<T>(
    items: Vec<T>,
    token: Option<&str>,
    limit: Option<i64>,
) -> Result<(Vec<T>, Option<String>), EventsError> {
    let limit = match limit {
        None => 100,
        Some(n @ 1..=100) => n as usize,
        Some(n) => {
            return Err(EventsError::validation(format!(
                "1 validation error detected: Value '{n}' at 'limit' failed to satisfy constraint: Member must have value between 1 and 100"
            )))
        }
    };
    let start = match token {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| EventsError::validation("The NextToken is not valid."))?,
    };
    let next = (start + limit < items.len()).then(|| (start + limit).to_string());
    Ok((items.into_iter().skip(start).take(limit).collect(), next))
}

fn bus_json(events: &Events, bus: &Bus) -> Value {
    let mut v = json!({"Name": bus.name, "Arn": events.bus_arn(&bus.name)});
    if let Some(d) = &bus.description {
        v["Description"] = json!(d);
    }
    if bus.created_ms > 0 {
        v["CreationTime"] = seconds(bus.created_ms);
        v["LastModifiedTime"] = seconds(bus.modified_ms);
    }
    if let Some(dlq) = &bus.dead_letter_config {
        v["DeadLetterConfig"] = json!(dlq);
    }
    v
}

fn rule_json(events: &Events, rule: &Rule) -> Value {
    let mut v = json!({
        "Name": rule.name,
        "Arn": events.rule_arn(&rule.event_bus_name, &rule.name),
        "State": rule.state,
        "EventBusName": rule.event_bus_name,
    });
    for (key, value) in [
        ("EventPattern", &rule.event_pattern),
        ("ScheduleExpression", &rule.schedule_expression),
        ("Description", &rule.description),
        ("RoleArn", &rule.role_arn),
    ] {
        if let Some(value) = value {
            v[key] = json!(value);
        }
    }
    v
}

fn connection_state(ev: &Events, c: &Connection) -> Value {
    json!({
        "ConnectionArn": ev.connection_arn(c),
        "ConnectionState": c.connection_state,
        "CreationTime": seconds(c.created_ms),
        "LastModifiedTime": seconds(c.modified_ms),
        "LastAuthorizedTime": seconds(c.authorized_ms),
    })
}

fn connection_json(ev: &Events, c: &Connection) -> Value {
    let mut v = connection_state(ev, c);
    v["Name"] = json!(c.name);
    v["AuthorizationType"] = json!(c.authorization_type);
    v
}

fn api_destination_json(ev: &Events, d: &ApiDestination) -> Value {
    json!({
        "ApiDestinationArn": ev.api_destination_arn(d),
        "Name": d.name,
        "ApiDestinationState": "ACTIVE",
        "ConnectionArn": d.connection_arn,
        "InvocationEndpoint": d.invocation_endpoint,
        "HttpMethod": d.http_method,
        "InvocationRateLimitPerSecond": d.invocation_rate_limit_per_second,
        "CreationTime": seconds(d.created_ms),
        "LastModifiedTime": seconds(d.modified_ms),
    })
}

/// UpdateConnection's AuthParameters over the stored ones: each section
/// given replaces its fields, the rest stay (secrets are not sent back).
fn merge(stored: &mut Value, given: &Value) {
    match (stored, given) {
        (Value::Object(s), Value::Object(g)) => {
            for (k, v) in g {
                merge(s.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (s, g) => *s = g.clone(),
    }
}

async fn archive_json(ev: &Events, a: &Archive) -> Result<Value, EventsError> {
    let (count, bytes) = ev.archive_size(&a.archive_name).await?;
    Ok(json!({
        "ArchiveName": a.archive_name,
        "EventSourceArn": ev.bus_arn(&a.bus),
        "State": "ENABLED",
        "RetentionDays": a.retention_days,
        "SizeBytes": bytes,
        "EventCount": count,
        "CreationTime": seconds(a.created_ms),
    }))
}

fn replay_json(ev: &Events, r: &Replay) -> Value {
    let mut v = json!({
        "ReplayName": r.replay_name,
        "EventSourceArn": ev.archive_arn(&r.archive),
        "State": r.state,
        "EventStartTime": seconds(r.event_start_ms),
        "EventEndTime": seconds(r.event_end_ms),
        "ReplayStartTime": seconds(r.replay_start_ms),
    });
    if let Some(reason) = &r.state_reason {
        v["StateReason"] = json!(reason);
    }
    if let Some(ms) = r.event_last_replayed_ms {
        v["EventLastReplayedTime"] = seconds(ms);
    }
    if let Some(ms) = r.replay_end_ms {
        v["ReplayEndTime"] = seconds(ms);
    }
    v
}

fn time_ms(v: &Value, field: &str) -> Result<i64, EventsError> {
    json_protocol::epoch_ms(v, &format!("Parameter {field}")).map_err(EventsError::validation)
}

fn failed_entries(failed: Vec<(String, &'static str, String)>) -> Value {
    let entries: Vec<Value> = failed
        .into_iter()
        .map(|(id, code, message)| json!({"TargetId": id, "ErrorCode": code, "ErrorMessage": message}))
        .collect();
    json!({"FailedEntryCount": entries.len(), "FailedEntries": entries})
}

/// A bus or rule named by an ARN: (bus, Some(rule)) or (bus, None).
fn resource(events: &Events, arn: &str) -> Result<(String, Option<String>), EventsError> {
    let not_found = || EventsError::not_found(format!("Resource {arn} does not exist."));
    let (_, path) = arn.split_once(":events:").ok_or_else(not_found)?;
    // region:account:kind/...
    let path = path.splitn(3, ':').nth(2).ok_or_else(not_found)?;
    if let Some(bus) = path.strip_prefix("event-bus/") {
        return Ok((events.bus_name(Some(bus))?, None));
    }
    let rule = path.strip_prefix("rule/").ok_or_else(not_found)?;
    Ok(match rule.rsplit_once('/') {
        Some((bus, rule)) => (bus.to_string(), Some(rule.to_string())),
        None => ("default".to_string(), Some(rule.to_string())),
    })
}

async fn call(events: &Arc<Events>, operation: &str, body: &Bytes) -> Result<Value, JsonError> {
    let ev = events.as_ref();
    match operation {
        "CreateEventBus" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                name: String,
                description: Option<String>,
                dead_letter_config: Option<DeadLetterConfig>,
                tags: Option<Vec<Tag>>,
            }
            let i: In = input(body)?;
            let bus = Bus {
                name: i.name,
                description: i.description,
                dead_letter_config: i.dead_letter_config,
                tags: tags_in(i.tags).map_err(error)?,
                ..Default::default()
            };
            let bus = ev.create_bus(bus).await.map_err(error)?;
            let mut out = json!({"EventBusArn": ev.bus_arn(&bus.name)});
            if let Some(d) = bus.description {
                out["Description"] = json!(d);
            }
            Ok(out)
        }
        "DescribeEventBus" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                name: Option<String>,
            }
            let i: In = input(body)?;
            let name = ev.bus_name(i.name.as_deref()).map_err(error)?;
            let bus = ev.require_bus(&name).await.map_err(error)?;
            Ok(bus_json(ev, &bus))
        }
        "UpdateEventBus" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                name: Option<String>,
                description: Option<String>,
                dead_letter_config: Option<DeadLetterConfig>,
            }
            let i: In = input(body)?;
            let name = ev.bus_name(i.name.as_deref()).map_err(error)?;
            let bus = ev
                .update_bus(&name, |b| {
                    if i.description.is_some() {
                        b.description = i.description.clone();
                    }
                    if i.dead_letter_config.is_some() {
                        b.dead_letter_config = i.dead_letter_config.clone();
                    }
                    Ok(())
                })
                .await
                .map_err(error)?;
            Ok(bus_json(ev, &bus))
        }
        "ListEventBuses" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                name_prefix: Option<String>,
                next_token: Option<String>,
                limit: Option<i64>,
            }
            let i: In = input(body)?;
            let buses = ev
                .list_buses(i.name_prefix.as_deref().unwrap_or(""))
                .await
                .map_err(error)?;
            let (buses, next) = page(buses, i.next_token.as_deref(), i.limit).map_err(error)?;
            let list: Vec<Value> = buses.iter().map(|b| bus_json(ev, b)).collect();
            Ok(with_token(json!({ "EventBuses": list }), next))
        }
        "DeleteEventBus" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                name: String,
            }
            let i: In = input(body)?;
            ev.delete_bus(&i.name).await.map_err(error)?;
            Ok(json!({}))
        }
        "PutRule" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                name: String,
                schedule_expression: Option<String>,
                event_pattern: Option<String>,
                state: Option<String>,
                description: Option<String>,
                role_arn: Option<String>,
                tags: Option<Vec<Tag>>,
                event_bus_name: Option<String>,
            }
            let i: In = input(body)?;
            let rule = Rule {
                name: i.name,
                event_bus_name: ev.bus_name(i.event_bus_name.as_deref()).map_err(error)?,
                event_pattern: i.event_pattern,
                schedule_expression: i.schedule_expression,
                state: i.state.unwrap_or_else(|| "ENABLED".into()),
                description: i.description,
                role_arn: i.role_arn,
                targets: Vec::new(),
                tags: tags_in(i.tags).map_err(error)?,
            };
            let arn = ev.put_rule(rule).await.map_err(error)?;
            Ok(json!({ "RuleArn": arn }))
        }
        "DescribeRule" | "EnableRule" | "DisableRule" | "DeleteRule" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                name: String,
                event_bus_name: Option<String>,
                force: Option<bool>,
            }
            let i: In = input(body)?;
            let bus = ev.bus_name(i.event_bus_name.as_deref()).map_err(error)?;
            match operation {
                "DescribeRule" => {
                    let (rule, _) = ev.get_rule(&bus, &i.name).await.map_err(error)?;
                    let mut v = rule_json(ev, &rule);
                    v["CreatedBy"] = json!(ev.account());
                    Ok(v)
                }
                "DeleteRule" => {
                    ev.delete_rule(&bus, &i.name, i.force.unwrap_or(false))
                        .await
                        .map_err(error)?;
                    Ok(json!({}))
                }
                _ => {
                    let state = match operation {
                        "EnableRule" => "ENABLED",
                        _ => "DISABLED",
                    };
                    ev.update_rule(&bus, &i.name, |r| {
                        r.state = state.into();
                        Ok(())
                    })
                    .await
                    .map_err(error)?;
                    Ok(json!({}))
                }
            }
        }
        "ListRules" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                name_prefix: Option<String>,
                event_bus_name: Option<String>,
                next_token: Option<String>,
                limit: Option<i64>,
            }
            let i: In = input(body)?;
            let bus = ev.bus_name(i.event_bus_name.as_deref()).map_err(error)?;
            let prefix = i.name_prefix.unwrap_or_default();
            let rules: Vec<Rule> = ev
                .list_rules(&bus)
                .await
                .map_err(error)?
                .into_iter()
                .filter(|r| r.name.starts_with(&prefix))
                .collect();
            let (rules, next) = page(rules, i.next_token.as_deref(), i.limit).map_err(error)?;
            let list: Vec<Value> = rules.iter().map(|r| rule_json(ev, r)).collect();
            Ok(with_token(json!({ "Rules": list }), next))
        }
        "PutTargets" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                rule: String,
                event_bus_name: Option<String>,
                targets: Vec<Target>,
            }
            let i: In = input(body)?;
            let bus = ev.bus_name(i.event_bus_name.as_deref()).map_err(error)?;
            let failed = ev
                .put_targets(&bus, &i.rule, i.targets)
                .await
                .map_err(error)?;
            Ok(failed_entries(failed))
        }
        "RemoveTargets" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                rule: String,
                event_bus_name: Option<String>,
                ids: Vec<String>,
            }
            let i: In = input(body)?;
            let bus = ev.bus_name(i.event_bus_name.as_deref()).map_err(error)?;
            let failed = ev
                .remove_targets(&bus, &i.rule, i.ids)
                .await
                .map_err(error)?;
            Ok(failed_entries(failed))
        }
        "ListTargetsByRule" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                rule: String,
                event_bus_name: Option<String>,
                next_token: Option<String>,
                limit: Option<i64>,
            }
            let i: In = input(body)?;
            let bus = ev.bus_name(i.event_bus_name.as_deref()).map_err(error)?;
            let (rule, _) = ev.get_rule(&bus, &i.rule).await.map_err(error)?;
            let (targets, next) =
                page(rule.targets, i.next_token.as_deref(), i.limit).map_err(error)?;
            Ok(with_token(json!({ "Targets": targets }), next))
        }
        "ListRuleNamesByTarget" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                target_arn: String,
                event_bus_name: Option<String>,
                next_token: Option<String>,
                limit: Option<i64>,
            }
            let i: In = input(body)?;
            let bus = ev.bus_name(i.event_bus_name.as_deref()).map_err(error)?;
            let names: Vec<String> = ev
                .list_rules(&bus)
                .await
                .map_err(error)?
                .into_iter()
                .filter(|r| r.targets.iter().any(|t| t.arn == i.target_arn))
                .map(|r| r.name)
                .collect();
            let (names, next) = page(names, i.next_token.as_deref(), i.limit).map_err(error)?;
            Ok(with_token(json!({ "RuleNames": names }), next))
        }
        "CreateArchive" | "UpdateArchive" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                archive_name: String,
                event_source_arn: Option<String>,
                description: Option<String>,
                event_pattern: Option<String>,
                retention_days: Option<i64>,
            }
            let i: In = input(body)?;
            let retention_days = match i.retention_days {
                None => None,
                Some(d @ 0..=2_147_483_647) => Some(d as u32),
                Some(_) => {
                    return Err(error(EventsError::validation(
                        "1 validation error detected: Value at 'retentionDays' failed to satisfy constraint: Member must have value greater than or equal to 0",
                    )))
                }
            };
            let a = match operation {
                "CreateArchive" => {
                    let source = i.event_source_arn.ok_or_else(|| {
                        error(EventsError::validation("EventSourceArn is required."))
                    })?;
                    let bus = ev.bus_name(Some(&source)).map_err(error)?;
                    let archive = Archive {
                        archive_name: i.archive_name,
                        bus,
                        description: i.description,
                        event_pattern: i.event_pattern,
                        retention_days: retention_days.unwrap_or(0),
                        created_ms: 0,
                    };
                    ev.create_archive(archive).await.map_err(error)?
                }
                _ => ev
                    .update_archive(
                        &i.archive_name,
                        i.description,
                        i.event_pattern,
                        retention_days,
                    )
                    .await
                    .map_err(error)?,
            };
            Ok(json!({
                "ArchiveArn": ev.archive_arn(&a.archive_name),
                "State": "ENABLED",
                "CreationTime": seconds(a.created_ms),
            }))
        }
        "DescribeArchive" | "DeleteArchive" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                archive_name: String,
            }
            let i: In = input(body)?;
            if operation == "DeleteArchive" {
                ev.delete_archive(&i.archive_name).await.map_err(error)?;
                return Ok(json!({}));
            }
            let (a, _) = ev.get_archive(&i.archive_name).await.map_err(error)?;
            let mut v = archive_json(ev, &a).await.map_err(error)?;
            v["ArchiveArn"] = json!(ev.archive_arn(&a.archive_name));
            if let Some(p) = &a.event_pattern {
                v["EventPattern"] = json!(p);
            }
            if let Some(d) = &a.description {
                v["Description"] = json!(d);
            }
            Ok(v)
        }
        "ListArchives" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                name_prefix: Option<String>,
                event_source_arn: Option<String>,
                state: Option<String>,
                next_token: Option<String>,
                limit: Option<i64>,
            }
            let i: In = input(body)?;
            let bus = match &i.event_source_arn {
                Some(arn) => Some(ev.bus_name(Some(arn)).map_err(error)?),
                None => None,
            };
            let archives: Vec<Archive> = ev
                .list_archives(i.name_prefix.as_deref().unwrap_or(""))
                .await
                .map_err(error)?
                .into_iter()
                .filter(|a| bus.as_ref().is_none_or(|b| &a.bus == b))
                .filter(|_| i.state.as_deref().is_none_or(|s| s == "ENABLED"))
                .collect();
            let (archives, next) =
                page(archives, i.next_token.as_deref(), i.limit).map_err(error)?;
            let mut list = Vec::with_capacity(archives.len());
            for a in &archives {
                list.push(archive_json(ev, a).await.map_err(error)?);
            }
            Ok(with_token(json!({ "Archives": list }), next))
        }
        "StartReplay" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct Destination {
                arn: String,
                filter_arns: Option<Vec<String>>,
            }
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                replay_name: String,
                description: Option<String>,
                event_source_arn: String,
                event_start_time: Value,
                event_end_time: Value,
                destination: Destination,
            }
            let i: In = input(body)?;
            let bus = ev.bus_name(Some(&i.destination.arn)).map_err(error)?;
            let mut rules = Vec::new();
            for arn in i.destination.filter_arns.unwrap_or_default() {
                let name = arn.rsplit('/').next().unwrap_or_default().to_string();
                if !arn.contains(":rule/") || name.is_empty() {
                    return Err(error(EventsError::validation(format!(
                        "Parameter Destination.FilterArns is not valid: {arn} is not a rule ARN."
                    ))));
                }
                rules.push(name);
            }
            let replay = Replay {
                replay_name: i.replay_name,
                archive: Events::archive_name(&i.event_source_arn),
                description: i.description,
                bus,
                rules,
                event_start_ms: time_ms(&i.event_start_time, "EventStartTime").map_err(error)?,
                event_end_ms: time_ms(&i.event_end_time, "EventEndTime").map_err(error)?,
                ..Default::default()
            };
            let r = ev.start_replay(replay).await.map_err(error)?;
            Ok(json!({
                "ReplayArn": ev.replay_arn(&r.replay_name),
                "State": r.state,
                "ReplayStartTime": seconds(r.replay_start_ms),
            }))
        }
        "DescribeReplay" | "CancelReplay" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                replay_name: String,
            }
            let i: In = input(body)?;
            if operation == "CancelReplay" {
                let r = ev.cancel_replay(&i.replay_name).await.map_err(error)?;
                return Ok(json!({
                    "ReplayArn": ev.replay_arn(&r.replay_name),
                    "State": r.state,
                }));
            }
            let (r, _) = ev.get_replay(&i.replay_name).await.map_err(error)?;
            let mut v = replay_json(ev, &r);
            v["ReplayArn"] = json!(ev.replay_arn(&r.replay_name));
            let mut destination = json!({"Arn": ev.bus_arn(&r.bus)});
            if !r.rules.is_empty() {
                let arns: Vec<String> = r.rules.iter().map(|n| ev.rule_arn(&r.bus, n)).collect();
                destination["FilterArns"] = json!(arns);
            }
            v["Destination"] = destination;
            if let Some(d) = &r.description {
                v["Description"] = json!(d);
            }
            Ok(v)
        }
        "ListReplays" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                name_prefix: Option<String>,
                state: Option<String>,
                event_source_arn: Option<String>,
                next_token: Option<String>,
                limit: Option<i64>,
            }
            let i: In = input(body)?;
            let archive = i.event_source_arn.as_deref().map(Events::archive_name);
            let replays: Vec<Replay> = ev
                .list_replays(i.name_prefix.as_deref().unwrap_or(""))
                .await
                .map_err(error)?
                .into_iter()
                .filter(|r| archive.as_ref().is_none_or(|a| &r.archive == a))
                .filter(|r| i.state.as_ref().is_none_or(|s| &r.state == s))
                .collect();
            let (replays, next) = page(replays, i.next_token.as_deref(), i.limit).map_err(error)?;
            let list: Vec<Value> = replays.iter().map(|r| replay_json(ev, r)).collect();
            Ok(with_token(json!({ "Replays": list }), next))
        }
        "CreateConnection" | "UpdateConnection" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                name: String,
                description: Option<String>,
                authorization_type: Option<String>,
                auth_parameters: Option<Value>,
            }
            let i: In = input(body)?;
            let c = match operation {
                "CreateConnection" => {
                    let connection = Connection {
                        name: i.name,
                        description: i.description,
                        authorization_type: i.authorization_type.unwrap_or_default(),
                        auth_parameters: i.auth_parameters.unwrap_or(Value::Null),
                        ..Default::default()
                    };
                    ev.create_connection(connection).await.map_err(error)?
                }
                _ => ev
                    .update_connection(&i.name, |c| {
                        if let Some(d) = &i.description {
                            c.description = Some(d.clone());
                        }
                        if let Some(k) = &i.authorization_type {
                            c.authorization_type = k.clone();
                        }
                        if let Some(given) = &i.auth_parameters {
                            merge(&mut c.auth_parameters, given);
                        }
                        wisp_events::http::check_auth(&c.authorization_type, &c.auth_parameters)?;
                        c.connection_state = "AUTHORIZED".into();
                        Ok(())
                    })
                    .await
                    .map_err(error)?,
            };
            Ok(connection_state(ev, &c))
        }
        "DeauthorizeConnection" | "DeleteConnection" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                name: String,
            }
            let i: In = input(body)?;
            let c = match operation {
                "DeleteConnection" => ev.delete_connection(&i.name).await,
                _ => {
                    ev.update_connection(&i.name, |c| {
                        c.connection_state = "DEAUTHORIZED".into();
                        Ok(())
                    })
                    .await
                }
            }
            .map_err(error)?;
            Ok(connection_state(ev, &c))
        }
        "DescribeConnection" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                name: String,
            }
            let i: In = input(body)?;
            let (c, _) = ev.get_connection(&i.name).await.map_err(error)?;
            let mut v = connection_json(ev, &c);
            v["AuthParameters"] = wisp_events::http::public_auth(&c.auth_parameters);
            v["SecretArn"] = json!(format!(
                "arn:aws:secretsmanager:{}:{}:secret:events!connection/{}/{}",
                ev.region(),
                ev.account(),
                c.name,
                c.id
            ));
            if let Some(d) = &c.description {
                v["Description"] = json!(d);
            }
            Ok(v)
        }
        "ListConnections" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                name_prefix: Option<String>,
                connection_state: Option<String>,
                next_token: Option<String>,
                limit: Option<i64>,
            }
            let i: In = input(body)?;
            let all: Vec<Connection> = ev
                .list_connections(i.name_prefix.as_deref().unwrap_or(""))
                .await
                .map_err(error)?
                .into_iter()
                .filter(|c| {
                    i.connection_state
                        .as_ref()
                        .is_none_or(|s| &c.connection_state == s)
                })
                .collect();
            let (items, next) = page(all, i.next_token.as_deref(), i.limit).map_err(error)?;
            let list: Vec<Value> = items.iter().map(|c| connection_json(ev, c)).collect();
            Ok(with_token(json!({ "Connections": list }), next))
        }
        "CreateApiDestination" | "UpdateApiDestination" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                name: String,
                description: Option<String>,
                connection_arn: Option<String>,
                invocation_endpoint: Option<String>,
                http_method: Option<String>,
                invocation_rate_limit_per_second: Option<u32>,
            }
            let i: In = input(body)?;
            let d = match operation {
                "CreateApiDestination" => {
                    let d = ApiDestination {
                        name: i.name,
                        description: i.description,
                        connection_arn: i.connection_arn.unwrap_or_default(),
                        invocation_endpoint: i.invocation_endpoint.unwrap_or_default(),
                        http_method: i.http_method.unwrap_or_default(),
                        invocation_rate_limit_per_second: i
                            .invocation_rate_limit_per_second
                            .unwrap_or(0),
                        ..Default::default()
                    };
                    if d.invocation_rate_limit_per_second == 0
                        && i.invocation_rate_limit_per_second.is_some()
                    {
                        return Err(error(EventsError::validation(
                            "1 validation error detected: Value at 'invocationRateLimitPerSecond' failed to satisfy constraint: Member must have value greater than or equal to 1",
                        )));
                    }
                    ev.create_api_destination(d).await.map_err(error)?
                }
                _ => ev
                    .update_api_destination(&i.name, |d| {
                        if let Some(v) = &i.description {
                            d.description = Some(v.clone());
                        }
                        if let Some(v) = &i.connection_arn {
                            d.connection_arn = v.clone();
                        }
                        if let Some(v) = &i.invocation_endpoint {
                            d.invocation_endpoint = v.clone();
                        }
                        if let Some(v) = &i.http_method {
                            d.http_method = v.clone();
                        }
                        if let Some(v) = i.invocation_rate_limit_per_second {
                            d.invocation_rate_limit_per_second = v;
                        }
                    })
                    .await
                    .map_err(error)?,
            };
            Ok(json!({
                "ApiDestinationArn": ev.api_destination_arn(&d),
                "ApiDestinationState": "ACTIVE",
                "CreationTime": seconds(d.created_ms),
                "LastModifiedTime": seconds(d.modified_ms),
            }))
        }
        "DescribeApiDestination" | "DeleteApiDestination" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                name: String,
            }
            let i: In = input(body)?;
            if operation == "DeleteApiDestination" {
                ev.delete_api_destination(&i.name).await.map_err(error)?;
                return Ok(json!({}));
            }
            let (d, _) = ev.get_api_destination(&i.name).await.map_err(error)?;
            let mut v = api_destination_json(ev, &d);
            if let Some(desc) = &d.description {
                v["Description"] = json!(desc);
            }
            Ok(v)
        }
        "ListApiDestinations" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                name_prefix: Option<String>,
                connection_arn: Option<String>,
                next_token: Option<String>,
                limit: Option<i64>,
            }
            let i: In = input(body)?;
            let all: Vec<ApiDestination> = ev
                .list_api_destinations(i.name_prefix.as_deref().unwrap_or(""))
                .await
                .map_err(error)?
                .into_iter()
                .filter(|d| {
                    i.connection_arn
                        .as_ref()
                        .is_none_or(|c| &d.connection_arn == c)
                })
                .collect();
            let (items, next) = page(all, i.next_token.as_deref(), i.limit).map_err(error)?;
            let list: Vec<Value> = items.iter().map(|d| api_destination_json(ev, d)).collect();
            Ok(with_token(json!({ "ApiDestinations": list }), next))
        }
        "TestEventPattern" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                event_pattern: String,
                event: String,
            }
            let i: In = input(body)?;
            let result = Events::test_pattern(&i.event_pattern, &i.event).map_err(error)?;
            Ok(json!({ "Result": result }))
        }
        "PutEvents" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                entries: Vec<Entry>,
            }
            let i: In = input(body)?;
            let results = ev.put_events(i.entries).await.map_err(error)?;
            let failed = results.iter().filter(|r| r.is_err()).count();
            let entries: Vec<Value> = results
                .into_iter()
                .map(|r| match r {
                    Ok(id) => json!({ "EventId": id }),
                    Err(e) => json!({ "ErrorCode": e.code, "ErrorMessage": e.message }),
                })
                .collect();
            Ok(json!({ "FailedEntryCount": failed, "Entries": entries }))
        }
        "TagResource" | "UntagResource" | "ListTagsForResource" => {
            #[derive(Deserialize)]
            #[serde(rename_all = "PascalCase")]
            struct In {
                #[serde(rename = "ResourceARN")]
                resource_arn: String,
                tags: Option<Vec<Tag>>,
                tag_keys: Option<Vec<String>>,
            }
            let i: In = input(body)?;
            let (bus, rule) = resource(ev, &i.resource_arn).map_err(error)?;
            let add = tags_in(i.tags).map_err(error)?;
            let remove = i.tag_keys.unwrap_or_default();
            let change = |tags: &mut BTreeMap<String, String>| {
                tags.extend(add.clone());
                tags.retain(|k, _| !remove.contains(k));
                Ok(tags_out(tags))
            };
            let tags = match rule {
                Some(rule) => ev
                    .update_rule(&bus, &rule, |r| change(&mut r.tags))
                    .await
                    .map_err(error)?,
                None => {
                    let b = ev
                        .update_bus(&bus, |b| change(&mut b.tags).map(|_| ()))
                        .await
                        .map_err(error)?;
                    tags_out(&b.tags)
                }
            };
            Ok(match operation {
                "ListTagsForResource" => json!({ "Tags": tags }),
                _ => json!({}),
            })
        }
        _ => Err(JsonError::unknown_operation(
            V,
            &format!("{TARGET}.{operation}"),
        )),
    }
}

fn with_token(mut v: Value, next: Option<String>) -> Value {
    if let Some(t) = next {
        v["NextToken"] = json!(t);
    }
    v
}
