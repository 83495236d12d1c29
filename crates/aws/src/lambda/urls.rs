//! Function URLs: Create/Get/Update/Delete/ListFunctionUrlConfigs. Each
//! URL is a function setting per qualifier (`$LATEST` or an alias); the
//! gateway serves it at its own host name.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use wisp_core::function_url::{self, Cors, FunctionUrl, UrlConfig};
use wisp_store::Setting;

use super::settings::require_function;
use super::{function_arn, last_modified, named, now_ms, parse_json, region, QualifierQuery};
use crate::error::{ApiError, ApiResult};
use crate::sigv4::Verified;
use crate::ApiState;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Body {
    auth_type: Option<String>,
    cors: Option<Cors>,
    invoke_mode: Option<String>,
}

/// The function and qualifier a URL request names: a URL belongs to
/// `$LATEST` or an alias, never a version.
async fn target(
    state: &ApiState,
    raw: &str,
    query: &QualifierQuery,
) -> ApiResult<(String, String)> {
    let (name, qualifier) = named(raw, query)?;
    require_function(state, &name).await?;
    let qualifier = match qualifier.as_deref() {
        None | Some("$LATEST") => String::new(),
        Some(q) if q.bytes().all(|b| b.is_ascii_digit()) => {
            return Err(ApiError::invalid(format!(
                "A function URL cannot point at version {q}: give an alias or nothing ($LATEST)"
            )))
        }
        Some(q) => {
            if state
                .dispatcher
                .store()
                .get_alias(&name, q)
                .await?
                .is_none()
            {
                return Err(ApiError::not_found(format!(
                    "Function not found: {}:{q}",
                    function_arn(state, "us-east-1", &name)
                )));
            }
            q.to_string()
        }
    };
    Ok((name, qualifier))
}

fn shown(state: &ApiState, region: &str, function: &str, qualifier: &str, c: &UrlConfig) -> Value {
    let mut arn = function_arn(state, region, function);
    if !qualifier.is_empty() {
        arn = format!("{arn}:{qualifier}");
    }
    let mut v = json!({
        "FunctionUrl": function_url::address(&c.url_id, region, &state.gateway_url),
        "FunctionArn": arn,
        "AuthType": c.auth_type,
        "InvokeMode": c.invoke_mode,
        "CreationTime": c.creation_time,
        "LastModifiedTime": c.last_modified_time,
    });
    if let Some(cors) = &c.cors {
        v["Cors"] = json!(cors);
    }
    v
}

async fn stored(state: &ApiState, function: &str, qualifier: &str) -> ApiResult<Option<UrlConfig>> {
    Ok(state
        .dispatcher
        .store()
        .get_setting(function, function_url::SETTING, qualifier)
        .await?
        .and_then(|v| serde_json::from_value(v).ok()))
}

async fn keep(state: &ApiState, function: &str, qualifier: &str, c: &UrlConfig) -> ApiResult<()> {
    state
        .dispatcher
        .store()
        .put_setting(Setting {
            function: function.to_string(),
            qualifier: qualifier.to_string(),
            kind: function_url::SETTING.into(),
            value: json!(c),
        })
        .await?;
    reload_urls(state).await
}

/// Hands the gateway every function URL there is.
pub async fn reload_urls(state: &ApiState) -> ApiResult<()> {
    let urls = state
        .dispatcher
        .store()
        .list_settings(function_url::SETTING, None)
        .await?
        .into_iter()
        .filter_map(|s| {
            Some(FunctionUrl {
                config: serde_json::from_value(s.value).ok()?,
                qualifier: Some(s.qualifier).filter(|q| !q.is_empty()),
                function: s.function,
            })
        })
        .collect();
    (state.urls_changed)(urls);
    Ok(())
}

fn checked(body: &Body) -> ApiResult<()> {
    if let Some(t) = &body.auth_type {
        function_url::check_auth_type(t).map_err(ApiError::invalid)?;
    }
    if let Some(m) = &body.invoke_mode {
        function_url::check_invoke_mode(m).map_err(ApiError::invalid)?;
    }
    if let Some(c) = &body.cors {
        c.validate().map_err(ApiError::invalid)?;
    }
    Ok(())
}

pub(crate) async fn create_function_url_config(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(name): Path<String>,
    Query(query): Query<QualifierQuery>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: Body = parse_json(&body)?;
    let Some(auth_type) = req.auth_type.clone() else {
        return Err(ApiError::invalid(
            "1 validation error detected: Value null at 'authType' failed to satisfy constraint: Member must not be null",
        ));
    };
    checked(&req)?;
    let (function, qualifier) = target(&state, &name, &query).await?;
    if stored(&state, &function, &qualifier).await?.is_some() {
        return Err(ApiError::conflict(format!(
            "Failed to create function url config for [functionArn = {}]. Error message:  FunctionUrlConfig exists for this Lambda function",
            function_arn(&state, region(&verified), &function)
        )));
    }
    let now = last_modified(now_ms(&state));
    let config = UrlConfig {
        url_id: function_url::new_id(),
        auth_type,
        cors: req.cors.filter(|c| *c != Cors::default()),
        invoke_mode: req.invoke_mode.unwrap_or_else(|| "BUFFERED".into()),
        creation_time: now.clone(),
        last_modified_time: now,
    };
    keep(&state, &function, &qualifier, &config).await?;
    let mut v = shown(&state, region(&verified), &function, &qualifier, &config);
    if let Some(o) = v.as_object_mut() {
        o.remove("LastModifiedTime");
    }
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

pub(crate) async fn get_function_url_config(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(name): Path<String>,
    Query(query): Query<QualifierQuery>,
) -> ApiResult<Json<Value>> {
    let (function, qualifier) = target(&state, &name, &query).await?;
    let config = stored(&state, &function, &qualifier)
        .await?
        .ok_or_else(|| not_found(&function))?;
    Ok(Json(shown(
        &state,
        region(&verified),
        &function,
        &qualifier,
        &config,
    )))
}

fn not_found(function: &str) -> ApiError {
    ApiError::not_found(format!(
        "The resource you requested does not exist. (Function URL config for {function})"
    ))
}

pub(crate) async fn update_function_url_config(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(name): Path<String>,
    Query(query): Query<QualifierQuery>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: Body = parse_json(&body)?;
    checked(&req)?;
    let (function, qualifier) = target(&state, &name, &query).await?;
    let mut config = stored(&state, &function, &qualifier)
        .await?
        .ok_or_else(|| not_found(&function))?;
    if let Some(t) = req.auth_type {
        config.auth_type = t;
    }
    if let Some(m) = req.invoke_mode {
        config.invoke_mode = m;
    }
    if let Some(c) = req.cors {
        // An empty Cors takes it away.
        config.cors = Some(c).filter(|c| *c != Cors::default());
    }
    config.last_modified_time = last_modified(now_ms(&state));
    keep(&state, &function, &qualifier, &config).await?;
    Ok(Json(shown(
        &state,
        region(&verified),
        &function,
        &qualifier,
        &config,
    )))
}

pub(crate) async fn delete_function_url_config(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(query): Query<QualifierQuery>,
) -> ApiResult<Response> {
    let (function, qualifier) = target(&state, &name, &query).await?;
    let existed = state
        .dispatcher
        .store()
        .delete_setting(&function, function_url::SETTING, &qualifier)
        .await?;
    if !existed {
        return Err(not_found(&function));
    }
    reload_urls(&state).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListQuery {
    marker: Option<String>,
    max_items: Option<usize>,
}

pub(crate) async fn list_function_url_configs(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(name): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let (function, _) = named(&name, &QualifierQuery { qualifier: None })?;
    require_function(&state, &function).await?;
    let max = query.max_items.unwrap_or(50);
    if !(1..=50).contains(&max) {
        return Err(ApiError::invalid("MaxItems must be between 1 and 50"));
    }
    let mut all: Vec<(String, UrlConfig)> = state
        .dispatcher
        .store()
        .list_settings(function_url::SETTING, Some(&function))
        .await?
        .into_iter()
        .filter_map(|s| Some((s.qualifier, serde_json::from_value(s.value).ok()?)))
        .collect();
    all.sort_by(|a, b| a.0.cmp(&b.0));
    let start = query
        .marker
        .as_deref()
        .and_then(|m| all.iter().position(|(q, _)| q.as_str() > m))
        .unwrap_or(if query.marker.is_some() { all.len() } else { 0 });
    let page: Vec<Value> = all[start..]
        .iter()
        .take(max)
        .map(|(q, c)| shown(&state, region(&verified), &function, q, c))
        .collect();
    let mut out = json!({ "FunctionUrlConfigs": page });
    if start + max < all.len() {
        out["NextMarker"] = json!(all[start + max - 1].0);
    }
    Ok(Json(out))
}
