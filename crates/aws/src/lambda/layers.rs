//! Layers: PublishLayerVersion (ZipFile), Get/List/DeleteLayerVersion,
//! GetLayerVersionByArn and ListLayers. A version's zip is kept in the
//! code store; its description in a document (`layer`, `NAME:00000007`),
//! and a layer's next number in another (`layer-count`, `NAME`), so a
//! number is never given twice, even after a delete. Versions never
//! change.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use wisp_core::function::{Layer, MAX_LAYERS};
use wisp_store::StoreError;

use super::{last_modified, now_ms, parse_json, region};
use crate::error::{ApiError, ApiResult};
use crate::sigv4::Verified;
use crate::ApiState;

const KIND: &str = "layer";
const COUNT: &str = "layer-count";
/// A layer's zip, at most (Lambda's direct upload limit).
const MAX_LAYER_ZIP: usize = 50 * 1024 * 1024;

fn check_name(name: &str) -> ApiResult<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match ok {
        true => Ok(()),
        false => Err(ApiError::invalid(format!(
            "1 validation error detected: Value '{name}' at 'layerName' failed to satisfy constraint: Member must satisfy regular expression pattern: [a-zA-Z0-9-_]+"
        ))),
    }
}

fn layer_arn(state: &ApiState, region: &str, name: &str) -> String {
    format!("arn:aws:lambda:{region}:{}:layer:{name}", state.account_id)
}

fn doc_name(name: &str, version: u64) -> String {
    format!("{name}:{version:08}")
}

/// A stored version as Lambda shows it.
fn shown(state: &ApiState, region: &str, name: &str, v: &Value) -> Value {
    let arn = layer_arn(state, region, name);
    let number = v["Version"].as_u64().unwrap_or(0);
    let mut out = json!({
        "LayerArn": arn,
        "LayerVersionArn": format!("{arn}:{number}"),
        "Version": number,
        "Description": v["Description"],
        "CreatedDate": v["CreatedDate"],
        "CompatibleRuntimes": v["CompatibleRuntimes"],
        "CompatibleArchitectures": v["CompatibleArchitectures"],
        "Content": {
            "Location": format!("{}/wisp/v1/layers/{name}/{number}/content", state.api_url),
            "CodeSha256": v["CodeSha256"],
            "CodeSize": v["CodeSize"],
        },
    });
    if let Some(l) = v["LicenseInfo"].as_str() {
        out["LicenseInfo"] = json!(l);
    }
    out
}

/// The next version number of `name` (1 for a new layer).
async fn next_number(state: &ApiState, name: &str) -> ApiResult<u64> {
    let store = state.dispatcher.store();
    for _ in 0..16 {
        match store.get_document(COUNT, name).await? {
            None => match store
                .create_document(COUNT, name, &json!({"next": 2}))
                .await
            {
                Ok(_) => return Ok(1),
                Err(StoreError::Conflict(_)) => continue,
                Err(e) => return Err(e.into()),
            },
            Some(doc) => {
                let next = doc.value["next"].as_u64().unwrap_or(1);
                match store
                    .update_document(COUNT, name, &json!({"next": next + 1}), doc.revision)
                    .await
                {
                    Ok(_) => return Ok(next),
                    Err(StoreError::Conflict(_)) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Err(ApiError::internal(
        "too many publishes of this layer at once; try again",
    ))
}

pub(crate) async fn publish_layer_version(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Content {
        zip_file: Option<String>,
        s3_bucket: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Publish {
        content: Option<Content>,
        description: Option<String>,
        #[serde(default)]
        compatible_runtimes: Vec<String>,
        #[serde(default)]
        compatible_architectures: Vec<String>,
        license_info: Option<String>,
    }
    check_name(&name)?;
    let req: Publish = parse_json(&body)?;
    let content = req
        .content
        .ok_or_else(|| ApiError::invalid("Content is required"))?;
    if content.s3_bucket.is_some() {
        return Err(ApiError::invalid(
            "wisp takes a layer as Content.ZipFile; S3 content is not supported",
        ));
    }
    let zip = content
        .zip_file
        .ok_or_else(|| ApiError::invalid("Content.ZipFile is required"))?;
    let zip = base64::engine::general_purpose::STANDARD
        .decode(zip.trim())
        .map_err(|e| ApiError::invalid(format!("Content.ZipFile is not base64: {e}")))?;
    if zip.len() > MAX_LAYER_ZIP {
        return Err(ApiError::too_large(format!(
            "The layer's zip is {} bytes; at most {MAX_LAYER_ZIP} may be uploaded directly",
            zip.len()
        )));
    }
    wisp_core::codezip::inspect(&zip)
        .map_err(|e| ApiError::invalid(format!("Could not unzip uploaded file. {}", e.0)))?;
    if req.description.as_deref().is_some_and(|d| d.len() > 256) {
        return Err(ApiError::invalid("Description is at most 256 characters"));
    }
    if req.compatible_runtimes.len() > 15 || req.compatible_architectures.len() > 2 {
        return Err(ApiError::invalid(
            "at most 15 CompatibleRuntimes and 2 CompatibleArchitectures",
        ));
    }
    let size = zip.len() as u64;
    let sha = state.dispatcher.store().put_code(zip).await?;
    let number = next_number(&state, &name).await?;
    let sha_b64 =
        base64::engine::general_purpose::STANDARD.encode(hex::decode(&sha).unwrap_or_default());
    let stored = json!({
        "Version": number,
        "Description": req.description.unwrap_or_default(),
        "CreatedDate": last_modified(now_ms(&state)),
        "CompatibleRuntimes": req.compatible_runtimes,
        "CompatibleArchitectures": req.compatible_architectures,
        "LicenseInfo": req.license_info,
        "CodeSha256": sha_b64,
        "CodeSize": size,
        "Sha256Hex": sha,
    });
    state
        .dispatcher
        .store()
        .create_document(KIND, &doc_name(&name, number), &stored)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(shown(&state, region(&verified), &name, &stored)),
    )
        .into_response())
}

async fn stored(state: &ApiState, name: &str, number: u64) -> ApiResult<Option<Value>> {
    Ok(state
        .dispatcher
        .store()
        .get_document(KIND, &doc_name(name, number))
        .await?
        .map(|d| d.value))
}

fn not_found() -> ApiError {
    ApiError::not_found("The resource you requested does not exist.")
}

pub(crate) async fn get_layer_version(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path((name, number)): Path<(String, u64)>,
) -> ApiResult<Json<Value>> {
    check_name(&name)?;
    let v = stored(&state, &name, number).await?.ok_or_else(not_found)?;
    Ok(Json(shown(&state, region(&verified), &name, &v)))
}

pub(crate) async fn delete_layer_version(
    State(state): State<Arc<ApiState>>,
    Path((name, number)): Path<(String, u64)>,
) -> ApiResult<Response> {
    check_name(&name)?;
    // As on Lambda: deleting what is not there succeeds; functions that
    // use the version keep their copy.
    state
        .dispatcher
        .store()
        .delete_document(KIND, &doc_name(&name, number))
        .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
pub(crate) struct ListQuery {
    #[serde(rename = "CompatibleRuntime")]
    compatible_runtime: Option<String>,
    #[serde(rename = "Marker")]
    marker: Option<String>,
    #[serde(rename = "MaxItems")]
    max_items: Option<usize>,
    /// GetLayerVersionByArn: `?find=LayerVersion&Arn=...`.
    find: Option<String>,
    #[serde(rename = "Arn")]
    arn: Option<String>,
}

fn compatible(v: &Value, runtime: Option<&str>) -> bool {
    runtime.is_none_or(|r| {
        v["CompatibleRuntimes"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x == r))
    })
}

/// A page of `items` after `marker` (the last key of the page before).
fn page(
    items: Vec<(String, Value)>,
    marker: Option<&str>,
    max: Option<usize>,
) -> ApiResult<(Vec<Value>, Option<String>)> {
    let max = max.unwrap_or(50);
    if !(1..=50).contains(&max) {
        return Err(ApiError::invalid("MaxItems must be between 1 and 50"));
    }
    let start = marker.map_or(0, |m| {
        items
            .iter()
            .position(|(k, _)| k.as_str() > m)
            .unwrap_or(items.len())
    });
    let more = items.len() > start + max;
    let next = more.then(|| items[start + max - 1].0.clone());
    Ok((
        items
            .into_iter()
            .skip(start)
            .take(max)
            .map(|(_, v)| v)
            .collect(),
        next,
    ))
}

pub(crate) async fn list_layer_versions(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(name): Path<String>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    check_name(&name)?;
    let docs = state
        .dispatcher
        .store()
        .list_documents(KIND, &format!("{name}:"))
        .await?;
    // Newest first, as Lambda lists them.
    let mut items: Vec<(String, Value)> = docs
        .into_iter()
        .rev()
        .filter(|d| compatible(&d.value, query.compatible_runtime.as_deref()))
        .map(|d| {
            let key = format!(
                "{:08}",
                u64::MAX / 2 - d.value["Version"].as_u64().unwrap_or(0)
            );
            (key, shown(&state, region(&verified), &name, &d.value))
        })
        .collect();
    items.sort_by(|a, b| a.0.cmp(&b.0));
    let (versions, next) = page(items, query.marker.as_deref(), query.max_items)?;
    let mut out = json!({ "LayerVersions": versions });
    if let Some(n) = next {
        out["NextMarker"] = json!(n);
    }
    Ok(Json(out))
}

/// ListLayers, or GetLayerVersionByArn (the same path, `?find=LayerVersion`).
pub(crate) async fn list_layers(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    if query.find.as_deref() == Some("LayerVersion") {
        let arn = query.arn.as_deref().unwrap_or_default();
        let (name, number) = parse_version_arn(arn)?;
        let v = stored(&state, &name, number).await?.ok_or_else(not_found)?;
        return Ok(Json(shown(&state, region(&verified), &name, &v)));
    }
    let docs = state.dispatcher.store().list_documents(KIND, "").await?;
    // The latest matching version of each layer.
    let mut latest: std::collections::BTreeMap<String, Value> = Default::default();
    for d in docs {
        let Some((name, _)) = d.name.rsplit_once(':') else {
            continue;
        };
        if compatible(&d.value, query.compatible_runtime.as_deref()) {
            latest.insert(name.to_string(), d.value);
        }
    }
    let items: Vec<(String, Value)> = latest
        .into_iter()
        .map(|(name, v)| {
            let shown = shown(&state, region(&verified), &name, &v);
            let entry = json!({
                "LayerName": name,
                "LayerArn": shown["LayerArn"],
                "LatestMatchingVersion": {
                    "LayerVersionArn": shown["LayerVersionArn"],
                    "Version": shown["Version"],
                    "Description": shown["Description"],
                    "CreatedDate": shown["CreatedDate"],
                    "CompatibleRuntimes": shown["CompatibleRuntimes"],
                    "CompatibleArchitectures": shown["CompatibleArchitectures"],
                    "LicenseInfo": shown["LicenseInfo"],
                },
            });
            (name, entry)
        })
        .collect();
    let (layers, next) = page(items, query.marker.as_deref(), query.max_items)?;
    let mut out = json!({ "Layers": layers });
    if let Some(n) = next {
        out["NextMarker"] = json!(n);
    }
    Ok(Json(out))
}

/// `arn:aws:lambda:REGION:ACCOUNT:layer:NAME:VERSION`.
fn parse_version_arn(arn: &str) -> ApiResult<(String, u64)> {
    let parts: Vec<&str> = arn.split(':').collect();
    match parts.as_slice() {
        ["arn", _, "lambda", _, _, "layer", name, version] => {
            let number = version.parse::<u64>().map_err(|_| {
                ApiError::invalid(format!("`{arn}` is not a layer version ARN"))
            })?;
            check_name(name)?;
            Ok((name.to_string(), number))
        }
        _ => Err(ApiError::invalid(format!(
            "1 validation error detected: Value '{arn}' at 'arn' failed to satisfy constraint: Member must satisfy regular expression pattern: arn:[a-zA-Z0-9-]+:lambda:[a-zA-Z0-9-]+:\\d{{12}}:layer:[a-zA-Z0-9-_]+:[0-9]+"
        ))),
    }
}

/// The layers a function's `Layers` names, in order, each checked.
pub(crate) async fn resolve(state: &ApiState, arns: &[String]) -> ApiResult<Vec<Layer>> {
    if arns.len() > MAX_LAYERS {
        return Err(ApiError::invalid(format!(
            "1 validation error detected: Value '[{}]' at 'layers' failed to satisfy constraint: Member must have length less than or equal to {MAX_LAYERS}",
            arns.join(", ")
        )));
    }
    let mut out = Vec::with_capacity(arns.len());
    for arn in arns {
        let (name, number) = parse_version_arn(arn)?;
        let v = stored(state, &name, number)
            .await?
            .ok_or_else(|| ApiError::invalid(format!("Layer version {arn} does not exist.")))?;
        let layer_of = |a: &str| a.rsplit_once(':').map(|(l, _)| l.to_string());
        if out
            .iter()
            .any(|l: &Layer| layer_of(&l.arn) == layer_of(arn))
        {
            return Err(ApiError::invalid(format!(
                "Two different versions of the same layer are not allowed in the same function: {arn}"
            )));
        }
        out.push(Layer {
            arn: arn.clone(),
            code_sha256: v["Sha256Hex"].as_str().unwrap_or_default().to_string(),
            code_size: v["CodeSize"].as_u64().unwrap_or(0),
        });
    }
    Ok(out)
}
