//! EventBridge Scheduler on the wire: REST-JSON on the API listener, as
//! AWS's `scheduler` client calls it (`/schedules/{Name}`,
//! `/schedule-groups/{Name}`, `/tags/{ResourceArn}`). Timestamps go both
//! ways as epoch seconds; errors are the modeled exceptions
//! (ValidationException 400, ResourceNotFoundException 404,
//! ConflictException 409, ServiceQuotaExceededException 402).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use wisp_events::model::{DeadLetterConfig, RetryPolicy, SqsParameters};
use wisp_events::scheduler::{EventBridgeParameters, Schedule, ScheduleTarget, DEFAULT_GROUP};
use wisp_events::{Events, EventsError};

use crate::error::ApiError;
use crate::ApiState;

type Result<T> = std::result::Result<T, ApiError>;

fn error(e: EventsError) -> ApiError {
    let status = match e.error_type {
        _ if e.internal => StatusCode::INTERNAL_SERVER_ERROR,
        "ResourceNotFoundException" => StatusCode::NOT_FOUND,
        "ConflictException" => StatusCode::CONFLICT,
        "ServiceQuotaExceededException" => StatusCode::PAYMENT_REQUIRED,
        _ => StatusCode::BAD_REQUEST,
    };
    let error_type = match e.internal {
        true => "InternalServerException",
        false => e.error_type,
    };
    ApiError::new(status, error_type, e.message)
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "ValidationException", message)
}

fn body<T: serde::de::DeserializeOwned>(bytes: &Bytes) -> Result<T> {
    let bytes = if bytes.is_empty() { &b"{}"[..] } else { bytes };
    serde_json::from_slice(bytes)
        .map_err(|e| invalid(format!("The request body is not valid: {e}")))
}

/// The query's parameters, each with every value it was given.
fn query(raw: Option<String>) -> BTreeMap<String, Vec<String>> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(decode(k)).or_default().push(decode(v));
    }
    out
}

fn one<'a>(q: &'a BTreeMap<String, Vec<String>>, key: &str) -> Option<&'a str> {
    q.get(key).and_then(|v| v.first()).map(String::as_str)
}

fn seconds(ms: i64) -> Value {
    json!(ms as f64 / 1000.0)
}

fn timestamp(v: &Value, field: &str) -> Result<i64> {
    crate::json_protocol::epoch_ms(v, field).map_err(invalid)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Window {
    mode: String,
    maximum_window_in_minutes: Option<u32>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct TargetIn {
    #[serde(default)]
    arn: String,
    #[serde(default)]
    role_arn: String,
    input: Option<String>,
    retry_policy: Option<RetryPolicy>,
    dead_letter_config: Option<DeadLetterConfig>,
    sqs_parameters: Option<SqsParameters>,
    event_bridge_parameters: Option<EventBridgeParameters>,
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

/// CreateSchedule's and UpdateSchedule's input.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ScheduleIn {
    action_after_completion: Option<String>,
    description: Option<String>,
    end_date: Option<Value>,
    flexible_time_window: Option<Window>,
    group_name: Option<String>,
    kms_key_arn: Option<String>,
    schedule_expression: Option<String>,
    schedule_expression_timezone: Option<String>,
    start_date: Option<Value>,
    state: Option<String>,
    target: Option<TargetIn>,
    #[allow(dead_code)]
    client_token: Option<String>,
}

impl ScheduleIn {
    fn into_schedule(self, name: String) -> Result<Schedule> {
        let window = self
            .flexible_time_window
            .ok_or_else(|| invalid("FlexibleTimeWindow is required."))?;
        let flexible_window_minutes = match window.mode.as_str() {
            "OFF" => None,
            "FLEXIBLE" => Some(window.maximum_window_in_minutes.ok_or_else(|| {
                invalid("MaximumWindowInMinutes is required when the Mode is FLEXIBLE.")
            })?),
            other => {
                return Err(invalid(format!(
                    "1 validation error detected: Value '{other}' at 'flexibleTimeWindow.mode' failed to satisfy constraint: Member must satisfy enum value set: [OFF, FLEXIBLE]"
                )))
            }
        };
        let target = self.target.ok_or_else(|| invalid("Target is required."))?;
        Ok(Schedule {
            name,
            group_name: self.group_name.unwrap_or_else(|| DEFAULT_GROUP.into()),
            schedule_expression: self
                .schedule_expression
                .ok_or_else(|| invalid("ScheduleExpression is required."))?,
            schedule_expression_timezone: self.schedule_expression_timezone,
            description: self.description,
            start_ms: self
                .start_date
                .as_ref()
                .map(|v| timestamp(v, "StartDate"))
                .transpose()?,
            end_ms: self
                .end_date
                .as_ref()
                .map(|v| timestamp(v, "EndDate"))
                .transpose()?,
            state: self.state.unwrap_or_else(|| "ENABLED".into()),
            flexible_window_minutes,
            action_after_completion: self
                .action_after_completion
                .unwrap_or_else(|| "NONE".into()),
            kms_key_arn: self.kms_key_arn,
            target: ScheduleTarget {
                arn: target.arn,
                role_arn: target.role_arn,
                input: target.input,
                retry_policy: target.retry_policy,
                dead_letter_config: target.dead_letter_config,
                sqs_parameters: target.sqs_parameters,
                event_bridge_parameters: target.event_bridge_parameters,
                other: target.other,
            },
            created_ms: 0,
            modified_ms: 0,
            completed_ms: None,
        })
    }
}

fn schedule_json(events: &Events, s: &Schedule) -> Value {
    let mut v = json!({
        "Name": s.name,
        "GroupName": s.group_name,
        "Arn": events.schedule_arn(&s.group_name, &s.name),
        "ScheduleExpression": s.schedule_expression,
        "ScheduleExpressionTimezone": s.schedule_expression_timezone.as_deref().unwrap_or("UTC"),
        "State": s.state,
        "ActionAfterCompletion": s.action_after_completion,
        "FlexibleTimeWindow": match s.flexible_window_minutes {
            None => json!({"Mode": "OFF"}),
            Some(m) => json!({"Mode": "FLEXIBLE", "MaximumWindowInMinutes": m}),
        },
        "Target": s.target,
        "CreationDate": seconds(s.created_ms),
        "LastModificationDate": seconds(s.modified_ms),
    });
    if let Some(d) = &s.description {
        v["Description"] = json!(d);
    }
    if let Some(k) = &s.kms_key_arn {
        v["KmsKeyArn"] = json!(k);
    }
    if let Some(ms) = s.start_ms {
        v["StartDate"] = seconds(ms);
    }
    if let Some(ms) = s.end_ms {
        v["EndDate"] = seconds(ms);
    }
    v
}

fn group_json(events: &Events, g: &wisp_events::scheduler::Group) -> Value {
    json!({
        "Name": g.name,
        "Arn": events.group_arn(&g.name),
        "State": "ACTIVE",
        "CreationDate": seconds(g.created_ms),
        "LastModificationDate": seconds(g.modified_ms),
    })
}

/// A page of `items` from `token` (an offset), at most `limit` (1–100).
fn page<T>(items: Vec<T>, q: &BTreeMap<String, Vec<String>>) -> Result<(Vec<T>, Option<String>)> {
    let limit = match one(q, "MaxResults").map(str::parse::<usize>) {
        None => 100,
        Some(Ok(n @ 1..=100)) => n,
        Some(_) => {
            return Err(invalid(
                "1 validation error detected: Value at 'maxResults' failed to satisfy constraint: Member must have value between 1 and 100",
            ))
        }
    };
    let start = match one(q, "NextToken") {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .map_err(|_| invalid("The NextToken is not valid."))?,
    };
    let next = (start + limit < items.len()).then(|| (start + limit).to_string());
    Ok((items.into_iter().skip(start).take(limit).collect(), next))
}

fn arn_json(key: &str, arn: String) -> Response {
    Json(json!({ key: arn })).into_response()
}

pub(crate) async fn create_schedule(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Response> {
    let s = body::<ScheduleIn>(&bytes)?.into_schedule(name)?;
    let arn = state.events.create_schedule(s).await.map_err(error)?;
    Ok(arn_json("ScheduleArn", arn))
}

pub(crate) async fn update_schedule(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Response> {
    let s = body::<ScheduleIn>(&bytes)?.into_schedule(name)?;
    let arn = state.events.update_schedule(s).await.map_err(error)?;
    Ok(arn_json("ScheduleArn", arn))
}

fn group_of(q: &BTreeMap<String, Vec<String>>) -> String {
    one(q, "groupName").unwrap_or(DEFAULT_GROUP).to_string()
}

pub(crate) async fn get_schedule(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let group = group_of(&query(raw));
    let s = state
        .events
        .get_schedule(&group, &name)
        .await
        .map_err(error)?;
    Ok(Json(schedule_json(&state.events, &s)).into_response())
}

pub(crate) async fn delete_schedule(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let group = group_of(&query(raw));
    state
        .events
        .delete_schedule(&group, &name)
        .await
        .map_err(error)?;
    Ok(Json(json!({})).into_response())
}

pub(crate) async fn list_schedules(
    State(state): State<Arc<ApiState>>,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let q = query(raw);
    let status = one(&q, "State");
    if status.is_some_and(|s| s != "ENABLED" && s != "DISABLED") {
        return Err(invalid(
            "1 validation error detected: Value at 'state' failed to satisfy constraint: Member must satisfy enum value set: [ENABLED, DISABLED]",
        ));
    }
    let schedules: Vec<Schedule> = state
        .events
        .list_schedules(
            one(&q, "ScheduleGroup"),
            one(&q, "NamePrefix").unwrap_or(""),
        )
        .await
        .map_err(error)?
        .into_iter()
        .filter(|s| status.is_none_or(|want| s.state == want))
        .collect();
    let (items, next) = page(schedules, &q)?;
    let summaries: Vec<Value> = items
        .iter()
        .map(|s| {
            json!({
                "Name": s.name,
                "GroupName": s.group_name,
                "Arn": state.events.schedule_arn(&s.group_name, &s.name),
                "State": s.state,
                "CreationDate": seconds(s.created_ms),
                "LastModificationDate": seconds(s.modified_ms),
                "Target": {"Arn": s.target.arn},
            })
        })
        .collect();
    let mut out = json!({ "Schedules": summaries });
    if let Some(n) = next {
        out["NextToken"] = json!(n);
    }
    Ok(Json(out).into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    key: String,
    value: String,
}

fn tags_in(tags: Option<Vec<Tag>>) -> Result<BTreeMap<String, String>> {
    let tags = tags.unwrap_or_default();
    if tags.len() > 200 {
        return Err(invalid("A schedule group has at most 200 tags."));
    }
    let mut out = BTreeMap::new();
    for t in tags {
        if t.key.is_empty() || t.key.len() > 128 || t.value.is_empty() || t.value.len() > 256 {
            return Err(invalid(
                "Tag keys have 1 to 128 characters, values 1 to 256.",
            ));
        }
        out.insert(t.key, t.value);
    }
    Ok(out)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct GroupIn {
    tags: Option<Vec<Tag>>,
}

pub(crate) async fn create_group(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    bytes: Bytes,
) -> Result<Response> {
    let tags = tags_in(body::<GroupIn>(&bytes)?.tags)?;
    let arn = state
        .events
        .create_group(&name, tags)
        .await
        .map_err(error)?;
    Ok(arn_json("ScheduleGroupArn", arn))
}

pub(crate) async fn get_group(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<Response> {
    let g = state.events.require_group(&name).await.map_err(error)?;
    Ok(Json(group_json(&state.events, &g)).into_response())
}

pub(crate) async fn delete_group(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> Result<Response> {
    state.events.delete_group(&name).await.map_err(error)?;
    Ok(Json(json!({})).into_response())
}

pub(crate) async fn list_groups(
    State(state): State<Arc<ApiState>>,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let q = query(raw);
    let groups = state
        .events
        .list_groups(one(&q, "NamePrefix").unwrap_or(""))
        .await
        .map_err(error)?;
    let (items, next) = page(groups, &q)?;
    let list: Vec<Value> = items.iter().map(|g| group_json(&state.events, g)).collect();
    let mut out = json!({ "ScheduleGroups": list });
    if let Some(n) = next {
        out["NextToken"] = json!(n);
    }
    Ok(Json(out).into_response())
}

/// The group a tagging call names by ARN.
fn tagged_group(arn: &str) -> Result<String> {
    arn.split_once(":schedule-group/")
        .filter(|(head, _)| head.starts_with("arn:") && head.contains(":scheduler:"))
        .map(|(_, name)| name.to_string())
        .ok_or_else(|| invalid(format!("{arn} is not a schedule group ARN.")))
}

pub(crate) async fn tag_resource(
    State(state): State<Arc<ApiState>>,
    Path(arn): Path<String>,
    bytes: Bytes,
) -> Result<Response> {
    let group = tagged_group(&arn)?;
    let tags = tags_in(body::<GroupIn>(&bytes)?.tags)?;
    state
        .events
        .update_group_tags(&group, |have| have.extend(tags.clone()))
        .await
        .map_err(error)?;
    Ok(Json(json!({})).into_response())
}

pub(crate) async fn untag_resource(
    State(state): State<Arc<ApiState>>,
    Path(arn): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response> {
    let group = tagged_group(&arn)?;
    let keys = query(raw).remove("TagKeys").unwrap_or_default();
    state
        .events
        .update_group_tags(&group, |have| {
            for k in &keys {
                have.remove(k);
            }
        })
        .await
        .map_err(error)?;
    Ok(Json(json!({})).into_response())
}

pub(crate) async fn list_tags(
    State(state): State<Arc<ApiState>>,
    Path(arn): Path<String>,
) -> Result<Response> {
    let group = tagged_group(&arn)?;
    let g = state.events.require_group(&group).await.map_err(error)?;
    let tags: Vec<Value> = g
        .tags
        .iter()
        .map(|(k, v)| json!({"Key": k, "Value": v}))
        .collect();
    Ok(Json(json!({ "Tags": tags })).into_response())
}
