//! wisp's own API under `/wisp/v1`: what Lambda's API lacks (routes, logs,
//! invocation records, server info).

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use wisp_core::idempotency::{IdempotencyConfig, JsonPath};
use wisp_core::limits::MAX_LIST_ITEMS;
use wisp_core::route::{Route, RouteTable};
use wisp_store::{setting_kinds, LogQuery, Setting};

use crate::error::{ApiError, ApiResult};
use crate::ApiState;

pub(crate) async fn info(State(state): State<Arc<ApiState>>) -> Json<Value> {
    Json(json!({
        "version": env!("CARGO_PKG_VERSION"),
        "gateway": state.gateway_url,
        "api": state.api_url,
    }))
}

/// Rebuilds the gateway's table from every app's routes.
pub async fn reload_routes(state: &ApiState) -> Result<(), ApiError> {
    let routes = state.dispatcher.store().list_routes().await?;
    let table = RouteTable::new(routes.into_iter().map(|(_, r)| r).collect())
        .map_err(|e| ApiError::internal(format!("stored routes are inconsistent: {e}")))?;
    (state.routes_changed)(table);
    Ok(())
}

pub(crate) async fn put_routes(
    State(state): State<Arc<ApiState>>,
    Path(app): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    #[derive(Deserialize)]
    struct Put {
        routes: Vec<Route>,
    }
    wisp_core::function::validate_name(&app).map_err(ApiError::invalid)?;
    let put: Put =
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("bad routes: {e}")))?;
    if put.routes.len() > wisp_core::limits::MAX_MANIFEST_ROUTES {
        return Err(ApiError::invalid("too many routes"));
    }
    let store = state.dispatcher.store();
    let mut all: Vec<Route> = store
        .list_routes()
        .await?
        .into_iter()
        .filter(|(a, _)| *a != app)
        .map(|(_, r)| r)
        .collect();
    for r in &put.routes {
        r.validate().map_err(ApiError::invalid)?;
    }
    all.extend(put.routes.iter().cloned());
    RouteTable::new(all)
        .map_err(|e| ApiError::conflict(format!("{e} (routes of all apps share one gateway)")))?;
    store.replace_routes(&app, put.routes.clone()).await?;
    reload_routes(&state).await?;
    Ok(Json(json!({ "app": app, "routes": put.routes })))
}

pub(crate) async fn list_routes(State(state): State<Arc<ApiState>>) -> ApiResult<Json<Value>> {
    let routes = state.dispatcher.store().list_routes().await?;
    let shown: Vec<Value> = routes
        .into_iter()
        .map(|(app, r)| json!({ "app": app, "method": r.method, "path": r.path, "function": r.function }))
        .collect();
    Ok(Json(json!({ "routes": shown })))
}

#[derive(Deserialize)]
pub(crate) struct LimitQuery {
    limit: Option<usize>,
}

pub(crate) async fn list_invocations(
    State(state): State<Arc<ApiState>>,
    Path(function): Path<String>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Json<Value>> {
    state.dispatcher.flush().await;
    let limit = q.limit.unwrap_or(20).clamp(1, MAX_LIST_ITEMS);
    let records = state
        .dispatcher
        .store()
        .list_invocations(&function, limit)
        .await?;
    Ok(Json(json!({ "invocations": records })))
}

pub(crate) async fn get_invocation(
    State(state): State<Arc<ApiState>>,
    Path(request_id): Path<String>,
) -> ApiResult<Json<Value>> {
    state.dispatcher.flush().await;
    match state.dispatcher.store().get_invocation(&request_id).await? {
        Some(r) => Ok(Json(json!(r))),
        None => Err(ApiError::not_found(format!(
            "no invocation with request id {request_id}"
        ))),
    }
}

#[derive(Deserialize)]
pub(crate) struct LogsQuery {
    function: Option<String>,
    request_id: Option<String>,
    since_ms: Option<i64>,
    after: Option<i64>,
    limit: Option<usize>,
}

pub(crate) async fn logs(
    State(state): State<Arc<ApiState>>,
    Query(q): Query<LogsQuery>,
) -> ApiResult<Json<Value>> {
    state.dispatcher.flush().await;
    let store = state.dispatcher.store();
    if q.after == Some(-1) {
        // Only where the log ends, for a follower that wants new lines only.
        let next = store.last_log_seq().await?;
        return Ok(Json(json!({ "events": [], "next": next })));
    }
    let events = store
        .query_logs(LogQuery {
            function: q.function,
            request_id: q.request_id,
            since_ms: q.since_ms,
            after_seq: q.after,
            limit: q.limit.unwrap_or(MAX_LIST_ITEMS).clamp(1, MAX_LIST_ITEMS),
        })
        .await?;
    let next = events.last().map(|e| e.seq).or(q.after).unwrap_or(0);
    let events = in_log_format(&state, events).await;
    Ok(Json(json!({ "events": events, "next": next })))
}

/// Log entries as their functions' LoggingConfig writes them: with
/// LogFormat JSON, the platform lines are Lambda's JSON records (and
/// those below the SystemLogLevel are left out).
pub(crate) async fn in_log_format(
    state: &ApiState,
    entries: Vec<wisp_core::LogEntry>,
) -> Vec<wisp_core::LogEntry> {
    let mut configs: std::collections::HashMap<String, Option<wisp_core::function::LoggingConfig>> =
        Default::default();
    let mut out = Vec::with_capacity(entries.len());
    for mut e in entries {
        if e.stream == wisp_core::LogStream::Platform {
            if !configs.contains_key(&e.function) {
                let config = state
                    .dispatcher
                    .store()
                    .get_version(&e.function, wisp_core::function::LATEST)
                    .await
                    .ok()
                    .flatten()
                    .map(|v| v.config.logging.clone());
                configs.insert(e.function.clone(), config);
            }
            if let Some(Some(logging)) = configs
                .get(&e.function)
                .filter(|c| c.as_ref().is_some_and(|l| l.json))
            {
                match wisp_core::record::platform_json(
                    &e.message,
                    e.ts_ms,
                    logging.system_level.as_deref(),
                ) {
                    Some(Some(json)) => e.message = json,
                    Some(None) => continue,
                    None => {}
                }
            }
        }
        out.push(e);
    }
    out
}

pub(crate) async fn code(
    State(state): State<Arc<ApiState>>,
    Path(sha): Path<String>,
) -> ApiResult<Response> {
    let path = state.dispatcher.store().code_path(&sha).await?;
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(([(http::header::CONTENT_TYPE, "application/zip")], bytes).into_response())
}

/// Every function's async queue: depth, oldest event, counters.
pub(crate) async fn async_queues(State(state): State<Arc<ApiState>>) -> ApiResult<Json<Value>> {
    let queues = state.queue.stats(None).await?;
    Ok(Json(json!({ "queues": queues })))
}

/// Every SQS queue's depth, in-flight and delayed counts, oldest message
/// and dead-letter queue, with the mappings that read it and what they did.
pub(crate) async fn sqs_queues(State(state): State<Arc<ApiState>>) -> ApiResult<Json<Value>> {
    let stats = state
        .sqs
        .stats()
        .await
        .map_err(|e| ApiError::internal(e.message))?;
    let mappings = state.mappings.list();
    let depth = |name: &str| {
        stats
            .iter()
            .find(|s| s.name == name)
            .map(|s| s.counts.visible + s.counts.in_flight + s.counts.delayed)
    };
    let queues: Vec<Value> = stats
        .iter()
        .map(|s| {
            let arn = state.sqs.arn(&s.name);
            let readers: Vec<Value> = mappings
                .iter()
                .filter(|(c, _)| c.queue_arn == arn)
                .map(|(c, st)| {
                    use std::sync::atomic::Ordering::Relaxed;
                    json!({
                        "uuid": c.uuid,
                        "function": c.function,
                        "enabled": c.enabled,
                        "batches": st.batches.load(Relaxed),
                        "messages": st.messages.load(Relaxed),
                        "failures": st.failures.load(Relaxed),
                        "filtered": st.filtered.load(Relaxed),
                        "pollers": st.pollers.load(Relaxed),
                    })
                })
                .collect();
            json!({
                "name": s.name,
                "url": state.sqs.url(&state.api_url, &s.name),
                "visible": s.counts.visible,
                "in_flight": s.counts.in_flight,
                "delayed": s.counts.delayed,
                "oldest_age_ms": s.oldest_age_ms,
                "dead_letter": s.dead_letter,
                "dead_letter_depth": s.dead_letter.as_deref().and_then(depth),
                "mappings": readers,
            })
        })
        .collect();
    Ok(Json(json!({ "queues": queues })))
}

/// One function's async queue, with its latest given-up events.
pub(crate) async fn function_async(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(q): Query<LimitQuery>,
) -> ApiResult<Json<Value>> {
    crate::lambda::require_function(&state, &name).await?;
    let queue = state.queue.stats(Some(&name)).await?;
    let limit = q.limit.unwrap_or(20).clamp(1, MAX_LIST_ITEMS);
    let failed: Vec<Value> = state
        .dispatcher
        .store()
        .list_failed_events(&name, limit)
        .await?
        .into_iter()
        .map(|f| {
            json!({
                "request_id": f.request_id,
                "failed_ms": f.failed_ms,
                "record": serde_json::from_str::<Value>(&f.record).unwrap_or(Value::Null),
            })
        })
        .collect();
    Ok(Json(json!({
        "queue": queue.into_iter().next(),
        "failed_events": failed,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct IdempotencyBody {
    /// A JSONPath into the payload; none: only the header gives keys.
    key: Option<String>,
    ttl_secs: Option<u64>,
}

pub(crate) async fn put_idempotency(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let b: IdempotencyBody = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("bad idempotency settings: {e}")))?;
    if let Some(k) = &b.key {
        JsonPath::parse(k).map_err(ApiError::invalid)?;
    }
    let ttl = b
        .ttl_secs
        .unwrap_or(IdempotencyConfig::default().ttl.as_secs());
    IdempotencyConfig::check_ttl(std::time::Duration::from_secs(ttl)).map_err(ApiError::invalid)?;
    crate::lambda::require_function(&state, &name).await?;
    let value = json!({ "key": b.key, "ttl_secs": ttl });
    state
        .dispatcher
        .store()
        .put_setting(Setting {
            function: name.clone(),
            qualifier: String::new(),
            kind: setting_kinds::IDEMPOTENCY.into(),
            value: value.clone(),
        })
        .await?;
    state.dispatcher.forget(&name);
    Ok(Json(value))
}

pub(crate) async fn get_idempotency(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    crate::lambda::require_function(&state, &name).await?;
    let c = state.dispatcher.idempotency(&name).await?;
    Ok(Json(json!({
        "key": c.key_path.as_ref().map(|p| p.as_str().to_string()),
        "ttl_secs": c.ttl.as_secs(),
    })))
}

pub(crate) async fn delete_idempotency(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
) -> ApiResult<http::StatusCode> {
    crate::lambda::require_function(&state, &name).await?;
    state
        .dispatcher
        .store()
        .delete_setting(&name, setting_kinds::IDEMPOTENCY, "")
        .await?;
    state.dispatcher.forget(&name);
    Ok(http::StatusCode::NO_CONTENT)
}
