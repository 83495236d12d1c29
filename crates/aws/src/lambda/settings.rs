//! Per-function settings: reserved concurrency, provisioned concurrency
//! and the async invoke config (retries, event age, destinations).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use wisp_core::bounds;
use wisp_core::function::LATEST;
use wisp_store::{setting_kinds, Setting};

use super::{function_arn, last_modified, now_ms, parse_function_name, parse_json, region};
use crate::error::{ApiError, ApiResult};
use crate::sigv4::Verified;
use crate::ApiState;

pub(crate) async fn require_function(state: &ApiState, name: &str) -> ApiResult<()> {
    match state.dispatcher.store().get_version(name, LATEST).await? {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(format!("Function not found: {name}"))),
    }
}

/// The function's reservation, as GetFunction and GetFunctionConcurrency show it.
pub(crate) async fn reserved(state: &ApiState, function: &str) -> ApiResult<Option<u64>> {
    Ok(state
        .dispatcher
        .store()
        .get_setting(function, setting_kinds::CONCURRENCY, "")
        .await?
        .and_then(|v| v["reserved"].as_u64()))
}

pub(crate) async fn put_function_concurrency(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Put {
        reserved_concurrent_executions: Option<i64>,
    }
    let req: Put = parse_json(&body)?;
    let (name, _) = parse_function_name(&name)?;
    require_function(&state, &name).await?;
    let n = req
        .reserved_concurrent_executions
        .ok_or_else(|| ApiError::invalid("ReservedConcurrentExecutions is required"))?;
    if n < 0 {
        return Err(ApiError::invalid(
            "ReservedConcurrentExecutions must be 0 or more",
        ));
    }
    let concurrency = state.dispatcher.concurrency();
    let previous = concurrency.reserved(&name);
    concurrency
        .set_reserved(&name, Some(n as usize))
        .map_err(ApiError::invalid)?;
    let stored = state
        .dispatcher
        .store()
        .put_setting(Setting {
            function: name.clone(),
            qualifier: String::new(),
            kind: setting_kinds::CONCURRENCY.into(),
            value: json!({ "reserved": n }),
        })
        .await;
    if let Err(e) = stored {
        // Keep memory and store in step.
        let _ = concurrency.set_reserved(&name, previous);
        return Err(e.into());
    }
    Ok(Json(json!({ "ReservedConcurrentExecutions": n })))
}

pub(crate) async fn get_function_concurrency(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let (name, _) = parse_function_name(&name)?;
    require_function(&state, &name).await?;
    Ok(Json(match reserved(&state, &name).await? {
        Some(n) => json!({ "ReservedConcurrentExecutions": n }),
        None => json!({}),
    }))
}

pub(crate) async fn delete_function_concurrency(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let (name, _) = parse_function_name(&name)?;
    require_function(&state, &name).await?;
    state
        .dispatcher
        .store()
        .delete_setting(&name, setting_kinds::CONCURRENCY, "")
        .await?;
    let _ = state.dispatcher.concurrency().set_reserved(&name, None);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ProvisionedQuery {
    qualifier: Option<String>,
    list: Option<String>,
}

/// A qualifier that provisioned concurrency and event invoke configs can
/// name: a published version or an alias, and it must exist.
async fn check_qualifier(state: &ApiState, function: &str, qualifier: &str) -> ApiResult<()> {
    state
        .dispatcher
        .resolve(function, Some(qualifier))
        .await
        .map(|_| ())
        .map_err(ApiError::from)
}

async fn provisioned_json(
    state: &ApiState,
    region: &str,
    function: &str,
    qualifier: &str,
    stored: &Value,
) -> Value {
    let requested = stored["requested"].as_u64().unwrap_or(0);
    let workers = state
        .dispatcher
        .worker_stats(function, qualifier)
        .await
        .map(|s| s.workers as u64)
        .unwrap_or(0);
    // In a cluster each node keeps its share warm and answers for the
    // whole: ready once its own share is up.
    let share = state.dispatcher.concurrency().share_of(requested as usize) as u64;
    let ready = if is_process(state, function, qualifier).await {
        if workers >= share {
            requested
        } else {
            workers
        }
    } else {
        // A prepared component is ready for any number of calls.
        requested
    };
    json!({
        "FunctionArn": format!("{}:{qualifier}", function_arn(state, region, function)),
        "RequestedProvisionedConcurrentExecutions": requested,
        "AvailableProvisionedConcurrentExecutions": ready,
        "AllocatedProvisionedConcurrentExecutions": ready,
        "Status": if ready >= requested { "READY" } else { "IN_PROGRESS" },
        "LastModified": last_modified(stored["last_modified_ms"].as_i64().unwrap_or(0)),
    })
}

async fn is_process(state: &ApiState, function: &str, qualifier: &str) -> bool {
    state
        .dispatcher
        .resolve(function, Some(qualifier))
        .await
        .ok()
        .and_then(|v| wisp_core::RuntimeKind::of(&v.config.runtime))
        == Some(wisp_core::RuntimeKind::Process)
}

pub(crate) async fn put_provisioned_concurrency(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(name): Path<String>,
    Query(query): Query<ProvisionedQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Put {
        provisioned_concurrent_executions: Option<i64>,
    }
    let req: Put = parse_json(&body)?;
    let (name, _) = parse_function_name(&name)?;
    let qualifier = provisioned_qualifier(&query)?;
    let n = req
        .provisioned_concurrent_executions
        .ok_or_else(|| ApiError::invalid("ProvisionedConcurrentExecutions is required"))?;
    if n < 1 {
        return Err(ApiError::invalid(
            "ProvisionedConcurrentExecutions must be 1 or more",
        ));
    }
    check_qualifier(&state, &name, &qualifier).await?;
    if let Some(reserved) = reserved(&state, &name).await? {
        if n as u64 > reserved {
            return Err(ApiError::invalid(format!(
                "Requested Provisioned Concurrency ({n}) should not be greater than the reservedConcurrentExecution ({reserved}) for function {name}"
            )));
        }
    }
    let stored = provision(&state, &name, &qualifier, n as usize).await?;
    let mut shown = provisioned_json(&state, region(&verified), &name, &qualifier, &stored).await;
    if shown["Status"] == "READY" {
        shown["Status"] = "IN_PROGRESS".into();
    }
    Ok((StatusCode::ACCEPTED, Json(shown)).into_response())
}

/// Stores a provisioned count and starts the workers in the background;
/// Get shows READY once they are up. Returns the stored value.
async fn provision(state: &ApiState, name: &str, qualifier: &str, n: usize) -> ApiResult<Value> {
    let stored = json!({ "requested": n, "last_modified_ms": now_ms(state) });
    state
        .dispatcher
        .store()
        .put_setting(Setting {
            function: name.to_string(),
            qualifier: qualifier.to_string(),
            kind: setting_kinds::PROVISIONED.into(),
            value: stored.clone(),
        })
        .await?;
    let dispatcher = state.dispatcher.clone();
    let (f, q) = (name.to_string(), qualifier.to_string());
    tokio::spawn(async move {
        if let Err(e) = dispatcher.provision(&f, &q, n).await {
            tracing::warn!(function = %f, qualifier = %q, error = %e, "provisioning failed");
        }
    });
    Ok(stored)
}

/// wisp's extension for manifests: provisioned concurrency on `$LATEST`,
/// which Lambda's API refuses (its `$LATEST` is never warm; wisp's is a
/// prepared revision like any other). `{"count": 0}` removes it.
pub(crate) async fn put_latest_provisioned(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    #[derive(Deserialize)]
    struct Put {
        count: usize,
    }
    let req: Put = parse_json(&body)?;
    let (name, _) = parse_function_name(&name)?;
    require_function(&state, &name).await?;
    if req.count == 0 {
        state
            .dispatcher
            .store()
            .delete_setting(&name, setting_kinds::PROVISIONED, LATEST)
            .await?;
        let _ = state.dispatcher.provision(&name, LATEST, 0).await;
        return Ok(Json(json!({ "count": 0 })));
    }
    if let Some(reserved) = reserved(&state, &name).await? {
        if req.count as u64 > reserved {
            return Err(ApiError::invalid(format!(
                "provisioned concurrency ({}) cannot exceed the reserved concurrency ({reserved})",
                req.count
            )));
        }
    }
    provision(&state, &name, LATEST, req.count).await?;
    Ok(Json(json!({ "count": req.count })))
}

fn provisioned_qualifier(query: &ProvisionedQuery) -> ApiResult<String> {
    let q = query
        .qualifier
        .clone()
        .ok_or_else(|| ApiError::invalid("Qualifier is required: a version number or an alias"))?;
    if q == LATEST {
        return Err(ApiError::invalid(
            "Provisioned Concurrency Configs cannot be applied to unpublished function versions.",
        ));
    }
    Ok(q)
}

pub(crate) async fn get_provisioned_concurrency(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(name): Path<String>,
    Query(query): Query<ProvisionedQuery>,
) -> ApiResult<Json<Value>> {
    let (name, _) = parse_function_name(&name)?;
    require_function(&state, &name).await?;
    let store = state.dispatcher.store();
    if query.list.is_some() {
        let mut configs = Vec::new();
        for s in store
            .list_settings(setting_kinds::PROVISIONED, Some(&name))
            .await?
        {
            configs.push(
                provisioned_json(&state, region(&verified), &name, &s.qualifier, &s.value).await,
            );
        }
        return Ok(Json(json!({ "ProvisionedConcurrencyConfigs": configs })));
    }
    let qualifier = provisioned_qualifier(&query)?;
    let stored = store
        .get_setting(&name, setting_kinds::PROVISIONED, &qualifier)
        .await?
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "ProvisionedConcurrencyConfigNotFoundException",
                format!(
                    "No Provisioned Concurrency Config found for this function: {name}:{qualifier}"
                ),
            )
        })?;
    Ok(Json(
        provisioned_json(&state, region(&verified), &name, &qualifier, &stored).await,
    ))
}

pub(crate) async fn delete_provisioned_concurrency(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(query): Query<ProvisionedQuery>,
) -> ApiResult<StatusCode> {
    let (name, _) = parse_function_name(&name)?;
    let qualifier = provisioned_qualifier(&query)?;
    require_function(&state, &name).await?;
    state
        .dispatcher
        .store()
        .delete_setting(&name, setting_kinds::PROVISIONED, &qualifier)
        .await?;
    // Idle workers past keep-warm are stopped as usual from now on.
    let _ = state.dispatcher.provision(&name, &qualifier, 0).await;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct QualifierOnly {
    qualifier: Option<String>,
}

/// The stored form of FunctionEventInvokeConfig (Lambda's field names).
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct EventInvokeFields {
    maximum_retry_attempts: Option<i64>,
    maximum_event_age_in_seconds: Option<i64>,
    destination_config: Option<Value>,
}

fn check_destination(which: &str, config: &Value) -> ApiResult<()> {
    let Some(d) = config.get(which) else {
        return Ok(());
    };
    let arn = d["Destination"].as_str().unwrap_or("");
    if arn.is_empty() {
        return Ok(());
    }
    let service = arn.split(':').nth(2).unwrap_or("");
    if !arn.starts_with("arn:") || !["lambda", "sqs", "sns", "events"].contains(&service) {
        return Err(ApiError::invalid(format!(
            "DestinationConfig.{which}.Destination `{arn}` must be the ARN of a function, queue, topic or event bus"
        )));
    }
    Ok(())
}

fn event_invoke_value(fields: EventInvokeFields, base: Option<&Value>) -> ApiResult<Value> {
    let mut v = base.cloned().unwrap_or_else(|| json!({}));
    if let Some(n) = fields.maximum_retry_attempts {
        let n = bounds::ASYNC_RETRIES
            .check("MaximumRetryAttempts", n)
            .map_err(ApiError::invalid)?;
        v["MaximumRetryAttempts"] = n.into();
    }
    if let Some(n) = fields.maximum_event_age_in_seconds {
        let n = bounds::EVENT_AGE_SECS
            .check("MaximumEventAgeInSeconds", n)
            .map_err(ApiError::invalid)?;
        v["MaximumEventAgeInSeconds"] = n.into();
    }
    if let Some(d) = fields.destination_config {
        check_destination("OnSuccess", &d)?;
        check_destination("OnFailure", &d)?;
        v["DestinationConfig"] = d;
    }
    Ok(v)
}

fn event_invoke_json(
    state: &ApiState,
    region: &str,
    function: &str,
    qualifier: &str,
    v: &Value,
) -> Value {
    let arn = function_arn(state, region, function);
    let mut out = json!({
        "FunctionArn": if qualifier == LATEST { format!("{arn}:$LATEST") } else { format!("{arn}:{qualifier}") },
        "LastModified": v["LastModifiedMs"].as_f64().unwrap_or(0.0) / 1000.0,
        "DestinationConfig": v.get("DestinationConfig").cloned().unwrap_or_else(|| json!({ "OnSuccess": {}, "OnFailure": {} })),
    });
    for k in ["MaximumRetryAttempts", "MaximumEventAgeInSeconds"] {
        if let Some(n) = v.get(k) {
            out[k] = n.clone();
        }
    }
    out
}

async fn save_event_invoke(
    state: &ApiState,
    region: &str,
    name: &str,
    query: &QualifierOnly,
    body: &Bytes,
    merge: bool,
) -> ApiResult<Json<Value>> {
    let fields: EventInvokeFields = parse_json(body)?;
    let qualifier = query.qualifier.clone().unwrap_or_else(|| LATEST.into());
    require_function(state, name).await?;
    check_qualifier(state, name, &qualifier).await?;
    let store = state.dispatcher.store();
    let existing = store
        .get_setting(name, setting_kinds::EVENT_INVOKE, &qualifier)
        .await?;
    if merge && existing.is_none() {
        return Err(ApiError::not_found(format!(
            "The function {name} doesn't have an EventInvokeConfig"
        )));
    }
    let mut value = event_invoke_value(fields, if merge { existing.as_ref() } else { None })?;
    value["LastModifiedMs"] = now_ms(state).into();
    store
        .put_setting(Setting {
            function: name.to_string(),
            qualifier: qualifier.clone(),
            kind: setting_kinds::EVENT_INVOKE.into(),
            value: value.clone(),
        })
        .await?;
    Ok(Json(event_invoke_json(
        state, region, name, &qualifier, &value,
    )))
}

pub(crate) async fn put_event_invoke_config(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(name): Path<String>,
    Query(query): Query<QualifierOnly>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let (name, _) = parse_function_name(&name)?;
    save_event_invoke(&state, region(&verified), &name, &query, &body, false).await
}

pub(crate) async fn update_event_invoke_config(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(name): Path<String>,
    Query(query): Query<QualifierOnly>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let (name, _) = parse_function_name(&name)?;
    save_event_invoke(&state, region(&verified), &name, &query, &body, true).await
}

pub(crate) async fn get_event_invoke_config(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(name): Path<String>,
    Query(query): Query<QualifierOnly>,
) -> ApiResult<Json<Value>> {
    let (name, _) = parse_function_name(&name)?;
    require_function(&state, &name).await?;
    let qualifier = query.qualifier.unwrap_or_else(|| LATEST.into());
    let v = state
        .dispatcher
        .store()
        .get_setting(&name, setting_kinds::EVENT_INVOKE, &qualifier)
        .await?
        .ok_or_else(|| {
            ApiError::not_found(format!(
                "The function {name}:{qualifier} doesn't have an EventInvokeConfig"
            ))
        })?;
    Ok(Json(event_invoke_json(
        &state,
        region(&verified),
        &name,
        &qualifier,
        &v,
    )))
}

pub(crate) async fn delete_event_invoke_config(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(query): Query<QualifierOnly>,
) -> ApiResult<StatusCode> {
    let (name, _) = parse_function_name(&name)?;
    require_function(&state, &name).await?;
    let qualifier = query.qualifier.unwrap_or_else(|| LATEST.into());
    let existed = state
        .dispatcher
        .store()
        .delete_setting(&name, setting_kinds::EVENT_INVOKE, &qualifier)
        .await?;
    if !existed {
        return Err(ApiError::not_found(format!(
            "The function {name}:{qualifier} doesn't have an EventInvokeConfig"
        )));
    }
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn list_event_invoke_configs(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let (name, _) = parse_function_name(&name)?;
    require_function(&state, &name).await?;
    let configs: Vec<Value> = state
        .dispatcher
        .store()
        .list_settings(setting_kinds::EVENT_INVOKE, Some(&name))
        .await?
        .iter()
        .map(|s| event_invoke_json(&state, region(&verified), &name, &s.qualifier, &s.value))
        .collect();
    Ok(Json(json!({ "FunctionEventInvokeConfigs": configs })))
}
