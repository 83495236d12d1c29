//! Aliases: named pointers at versions, with weighted routing.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use wisp_core::function::{validate_alias_name, LATEST};
use wisp_core::Alias;

use super::{function_arn, new_revision, parse_function_name, parse_json, region};
use crate::error::{ApiError, ApiResult};
use crate::sigv4::Verified;
use crate::ApiState;

fn alias_json(state: &ApiState, region: &str, a: &Alias) -> Value {
    let mut v = json!({
        "AliasArn": format!("{}:{}", function_arn(state, region, &a.function), a.name),
        "Name": a.name,
        "FunctionVersion": a.version,
        "Description": a.description,
        "RevisionId": a.revision_id,
    });
    if !a.additional_version_weights.is_empty() {
        v["RoutingConfig"] = json!({ "AdditionalVersionWeights": a.additional_version_weights });
    }
    v
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AliasFields {
    name: Option<String>,
    function_version: Option<String>,
    description: Option<String>,
    revision_id: Option<String>,
    routing_config: Option<RoutingConfig>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RoutingConfig {
    #[serde(default)]
    additional_version_weights: BTreeMap<String, f64>,
}

async fn check_alias_target(state: &ApiState, function: &str, version: &str) -> ApiResult<()> {
    if version != LATEST && !version.chars().all(|c| c.is_ascii_digit()) {
        return Err(ApiError::invalid(format!(
            "FunctionVersion `{version}` must be a version number or $LATEST"
        )));
    }
    match state
        .dispatcher
        .store()
        .get_version(function, version)
        .await?
    {
        Some(_) => Ok(()),
        None => Err(ApiError::not_found(format!(
            "Function not found: {function}:{version}"
        ))),
    }
}

/// Checks `AdditionalVersionWeights` the way Lambda does: at most one
/// other published version, a weight from 0 to 1, both versions published.
async fn check_routing(
    state: &ApiState,
    function: &str,
    primary: &str,
    routing: &BTreeMap<String, f64>,
) -> ApiResult<()> {
    if routing.is_empty() {
        return Ok(());
    }
    if routing.len() > 1 {
        return Err(ApiError::invalid(
            "RoutingConfig.AdditionalVersionWeights may name only one additional version",
        ));
    }
    let (version, weight) = routing.iter().next().expect("one entry");
    if !(0.0..=1.0).contains(weight) || weight.is_nan() {
        return Err(ApiError::invalid(format!(
            "the weight of version {version} must be between 0.0 and 1.0"
        )));
    }
    if primary == LATEST || version == LATEST {
        return Err(ApiError::invalid(
            "weighted routing needs published versions on both sides, not $LATEST",
        ));
    }
    if version == primary {
        return Err(ApiError::invalid(format!(
            "the additional version {version} is the alias's own FunctionVersion"
        )));
    }
    check_alias_target(state, function, version).await
}

pub(crate) async fn create_alias(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(function): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let req: AliasFields = parse_json(&body)?;
    let (function, _) = parse_function_name(&function)?;
    let name = req
        .name
        .ok_or_else(|| ApiError::invalid("Name is required"))?;
    validate_alias_name(&name).map_err(ApiError::invalid)?;
    let version = req
        .function_version
        .ok_or_else(|| ApiError::invalid("FunctionVersion is required"))?;
    check_alias_target(&state, &function, &version).await?;
    let weights = req
        .routing_config
        .map(|r| r.additional_version_weights)
        .unwrap_or_default();
    check_routing(&state, &function, &version, &weights).await?;
    let alias = Alias {
        function: function.clone(),
        name,
        version,
        description: req.description.unwrap_or_default(),
        revision_id: new_revision(),
        additional_version_weights: weights,
    };
    state.dispatcher.store().create_alias(alias.clone()).await?;
    state.dispatcher.forget(&function);
    Ok((
        StatusCode::CREATED,
        Json(alias_json(&state, region(&verified), &alias)),
    )
        .into_response())
}

async fn find_alias(state: &ApiState, function: &str, name: &str) -> ApiResult<Alias> {
    state
        .dispatcher
        .store()
        .get_alias(function, name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Alias not found: {}:{name}", function)))
}

pub(crate) async fn get_alias(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path((function, name)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let (function, _) = parse_function_name(&function)?;
    let alias = find_alias(&state, &function, &name).await?;
    Ok(Json(alias_json(&state, region(&verified), &alias)))
}

pub(crate) async fn update_alias(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path((function, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let req: AliasFields = parse_json(&body)?;
    let (function, _) = parse_function_name(&function)?;
    let mut alias = find_alias(&state, &function, &name).await?;
    if let Some(v) = req.function_version {
        check_alias_target(&state, &function, &v).await?;
        alias.version = v;
    }
    if let Some(r) = req.routing_config {
        alias.additional_version_weights = r.additional_version_weights;
    }
    check_routing(
        &state,
        &function,
        &alias.version,
        &alias.additional_version_weights,
    )
    .await?;
    if let Some(d) = req.description {
        alias.description = d;
    }
    alias.revision_id = new_revision();
    state
        .dispatcher
        .store()
        .update_alias(alias.clone(), req.revision_id.as_deref())
        .await?;
    state.dispatcher.forget(&function);
    Ok(Json(alias_json(&state, region(&verified), &alias)))
}

pub(crate) async fn delete_alias(
    State(state): State<Arc<ApiState>>,
    Path((function, name)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (function, _) = parse_function_name(&function)?;
    state
        .dispatcher
        .store()
        .delete_alias(&function, &name)
        .await?;
    state.dispatcher.forget(&function);
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn list_aliases(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(function): Path<String>,
) -> ApiResult<Json<Value>> {
    let (function, _) = parse_function_name(&function)?;
    let aliases = state.dispatcher.store().list_aliases(&function).await?;
    let shown: Vec<Value> = aliases
        .iter()
        .map(|a| alias_json(&state, region(&verified), a))
        .collect();
    Ok(Json(json!({ "Aliases": shown })))
}
