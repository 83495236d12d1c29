//! Event source mappings on the Lambda API
//! (`/2015-03-31/event-source-mappings/`): SQS queues to functions.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use wisp_queues::{MappingChange, MappingConfig, MappingError, MappingStats};

use super::{parse_function_name, parse_json};
use crate::error::{ApiError, ApiResult};
use crate::ApiState;

impl From<MappingError> for ApiError {
    fn from(e: MappingError) -> Self {
        ApiError::new(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::BAD_REQUEST),
            e.error_type,
            e.message,
        )
    }
}

/// EventSourceMappingConfiguration, in `state` (Creating, Enabled, ...).
fn shape(state: &ApiState, c: &MappingConfig, stats: Option<&MappingStats>, status: &str) -> Value {
    let m = &state.mappings;
    let mut v = json!({
        "UUID": c.uuid,
        "BatchSize": c.batch_size,
        "MaximumBatchingWindowInSeconds": c.batching_window_secs,
        "EventSourceArn": c.queue_arn,
        "FunctionArn": m.function_arn(c),
        "LastModified": c.last_modified_ms as f64 / 1000.0,
        "LastProcessingResult": stats.map_or("No records processed", |s| s.last_result()),
        "State": status,
        "StateTransitionReason": "USER_INITIATED",
        "FunctionResponseTypes": if c.report_batch_item_failures { vec!["ReportBatchItemFailures"] } else { vec![] },
        "EventSourceMappingArn": m.arn(&c.uuid),
    });
    if !c.filters.is_empty() {
        v["FilterCriteria"] =
            json!({"Filters": c.filters.iter().map(|p| json!({"Pattern": p})).collect::<Vec<_>>()});
    }
    if let Some(n) = c.max_concurrency {
        v["ScalingConfig"] = json!({"MaximumConcurrency": n});
    }
    v
}

fn settled(c: &MappingConfig) -> &'static str {
    if c.enabled {
        "Enabled"
    } else {
        "Disabled"
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Filter {
    pattern: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct FilterCriteria {
    filters: Option<Vec<Filter>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ScalingConfig {
    maximum_concurrency: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MappingInput {
    event_source_arn: Option<String>,
    function_name: Option<String>,
    enabled: Option<bool>,
    batch_size: Option<i64>,
    maximum_batching_window_in_seconds: Option<i64>,
    filter_criteria: Option<FilterCriteria>,
    function_response_types: Option<Vec<String>>,
    scaling_config: Option<ScalingConfig>,
    starting_position: Option<String>,
}

impl MappingInput {
    fn change(self) -> ApiResult<MappingChange> {
        if self.starting_position.is_some() {
            return Err(ApiError::invalid(
                "StartingPosition is not valid for an SQS event source.",
            ));
        }
        let report = match self.function_response_types {
            None => None,
            Some(types) => {
                if let Some(bad) = types.iter().find(|t| *t != "ReportBatchItemFailures") {
                    return Err(ApiError::invalid(format!(
                        "FunctionResponseTypes: `{bad}` is not one of [ReportBatchItemFailures]."
                    )));
                }
                Some(!types.is_empty())
            }
        };
        let filters = self.filter_criteria.map(|f| {
            f.filters
                .unwrap_or_default()
                .into_iter()
                .map(|f| f.pattern.unwrap_or_default())
                .collect()
        });
        Ok(MappingChange {
            function: self
                .function_name
                .map(|f| parse_function_name(&f))
                .transpose()?,
            queue_arn: self.event_source_arn,
            batch_size: self.batch_size,
            batching_window_secs: self.maximum_batching_window_in_seconds,
            enabled: self.enabled,
            report_batch_item_failures: report,
            max_concurrency: self.scaling_config.map(|s| s.maximum_concurrency),
            filters,
        })
    }
}

pub(crate) async fn create_event_source_mapping(
    State(state): State<Arc<ApiState>>,
    body: Bytes,
) -> ApiResult<Response> {
    let input: MappingInput = parse_json(&body)?;
    let change = input.change()?;
    let c = state.mappings.create(change).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(shape(&state, &c, None, "Creating")),
    )
        .into_response())
}

pub(crate) async fn get_event_source_mapping(
    State(state): State<Arc<ApiState>>,
    Path(uuid): Path<String>,
) -> ApiResult<Json<Value>> {
    let (c, stats) = state
        .mappings
        .get(&uuid)
        .ok_or_else(|| ApiError::not_found(format!("The resource you requested does not exist. (Service: Lambda, Status Code: 404, Request ID: {uuid})")))?;
    Ok(Json(shape(&state, &c, Some(&stats), settled(&c))))
}

pub(crate) async fn update_event_source_mapping(
    State(state): State<Arc<ApiState>>,
    Path(uuid): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let input: MappingInput = parse_json(&body)?;
    if input.event_source_arn.is_some() {
        return Err(ApiError::invalid(
            "EventSourceArn cannot change; delete the mapping and create one.",
        ));
    }
    let change = input.change()?;
    let c = state.mappings.update(&uuid, change).await?;
    let stats = state.mappings.get(&uuid).map(|(_, s)| s);
    let status = if c.enabled { "Updating" } else { "Disabling" };
    Ok((
        StatusCode::ACCEPTED,
        Json(shape(&state, &c, stats.as_deref(), status)),
    )
        .into_response())
}

pub(crate) async fn delete_event_source_mapping(
    State(state): State<Arc<ApiState>>,
    Path(uuid): Path<String>,
) -> ApiResult<Response> {
    let (c, stats) = state.mappings.delete(&uuid).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(shape(&state, &c, Some(&stats), "Deleting")),
    )
        .into_response())
}

pub(crate) async fn list_event_source_mappings(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let function = q
        .get("FunctionName")
        .map(|f| parse_function_name(f))
        .transpose()?;
    let max = match q.get("MaxItems") {
        None => 100,
        Some(m) => m
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| ApiError::invalid("MaxItems must be between 1 and 10000"))?,
    };
    let all: Vec<_> = state
        .mappings
        .list()
        .into_iter()
        .filter(|(c, _)| q.get("EventSourceArn").is_none_or(|a| *a == c.queue_arn))
        .filter(|(c, _)| {
            function.as_ref().is_none_or(|(f, qual)| {
                *f == c.function && (qual.is_none() || *qual == c.qualifier)
            })
        })
        .collect();
    let start = match q.get("Marker") {
        None => 0,
        Some(m) => all
            .iter()
            .position(|(c, _)| c.uuid == *m)
            .ok_or_else(|| ApiError::invalid("Marker is not a position in this list"))?,
    };
    let page: Vec<Value> = all
        .iter()
        .skip(start)
        .take(max)
        .map(|(c, s)| shape(&state, c, Some(s), settled(c)))
        .collect();
    let mut v = json!({ "EventSourceMappings": page });
    if let Some((next, _)) = all.get(start + max) {
        v["NextMarker"] = json!(next.uuid);
    }
    Ok(Json(v))
}
