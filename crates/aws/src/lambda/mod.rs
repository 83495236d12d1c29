//! The AWS Lambda REST API (`/2015-03-31/...`), as botocore expects it:
//! functions and versions here, aliases, invoke and per-function settings
//! in their own modules.

mod aliases;
mod invoke;
mod layers;
mod mappings;
mod settings;
mod urls;

pub(crate) use aliases::*;
pub(crate) use invoke::{invoke, invoke_with_response_stream};
pub(crate) use layers::{
    delete_layer_version, get_layer_version, list_layer_versions, list_layers,
    publish_layer_version,
};
pub(crate) use mappings::*;
pub(crate) use settings::*;
pub use urls::reload_urls;
pub(crate) use urls::*;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use bytes::Bytes;
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};
use wisp_core::codezip;
use wisp_core::function::{validate_name, LATEST};
use wisp_core::limits::MAX_LIST_ITEMS;
use wisp_core::{FunctionConfig, FunctionVersion, RuntimeKind};

use crate::error::{ApiError, ApiResult};
use crate::sigv4::Verified;
use crate::ApiState;

fn region(v: &Option<Extension<Verified>>) -> &str {
    v.as_ref()
        .map(|Extension(v)| v.region.as_str())
        .unwrap_or("us-east-1")
}

/// `name`, `name:qualifier` or a function ARN, split into name and qualifier.
fn parse_function_name(raw: &str) -> ApiResult<(String, Option<String>)> {
    let (name, qualifier) = if let Some(rest) = raw.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.split(':').collect();
        match parts.as_slice() {
            [_, "lambda", _, _, "function", name] => (name.to_string(), None),
            [_, "lambda", _, _, "function", name, q] => (name.to_string(), Some(q.to_string())),
            _ => return Err(ApiError::invalid(format!("`{raw}` is not a function ARN"))),
        }
    } else {
        match raw.split_once(':') {
            Some((n, q)) => (n.to_string(), Some(q.to_string())),
            None => (raw.to_string(), None),
        }
    };
    validate_name(&name).map_err(ApiError::invalid)?;
    Ok((name, qualifier))
}

fn function_arn(state: &ApiState, region: &str, name: &str) -> String {
    format!(
        "arn:aws:lambda:{region}:{}:function:{name}",
        state.account_id
    )
}

fn last_modified(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}+0000",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

fn sha256_base64(hex_sha: &str) -> String {
    let bytes = hex::decode(hex_sha).unwrap_or_default();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A version as Lambda's `FunctionConfiguration`.
pub(crate) fn configuration(state: &ApiState, region: &str, v: &FunctionVersion) -> Value {
    let arn = function_arn(state, region, &v.function);
    let c = &v.config;
    let mut out = json!({
        "FunctionName": v.function,
        "FunctionArn": if v.version == LATEST { arn.clone() } else { format!("{arn}:{}", v.version) },
        "Runtime": c.runtime,
        "Role": c.role,
        "Handler": c.handler,
        "CodeSize": v.code_size,
        "Description": c.description,
        "Timeout": c.timeout_ms.div_ceil(1000),
        "MemorySize": c.memory_mb,
        "LastModified": last_modified(v.last_modified_ms),
        "CodeSha256": sha256_base64(&v.code_sha256),
        "Version": v.version,
        "Environment": if c.environment.is_empty() { Value::Null } else { json!({ "Variables": c.environment }) },
        "RevisionId": v.revision_id,
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "PackageType": "Zip",
        "Architectures": [std::env::consts::ARCH.replace("aarch64", "arm64")],
        "LoggingConfig": c.logging.to_aws(&v.function),
        "WispConfig": {
            "AllowedOutboundHosts": c.allowed_outbound_hosts,
            "InstanceReuse": c.instance_reuse,
            "TimeoutMs": c.timeout_ms,
        },
    });
    if !c.layers.is_empty() {
        out["Layers"] = c
            .layers
            .iter()
            .map(|l| json!({"Arn": l.arn, "CodeSize": l.code_size}))
            .collect();
    }
    if c.environment.is_empty() {
        // Lambda leaves Environment out when there are no variables.
        if let Some(o) = out.as_object_mut() {
            o.remove("Environment");
        }
    }
    out
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Environment {
    #[serde(default)]
    variables: BTreeMap<String, String>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct WispConfig {
    allowed_outbound_hosts: Option<Vec<String>>,
    instance_reuse: Option<u32>,
    timeout_ms: Option<u64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Code {
    zip_file: Option<String>,
    s3_bucket: Option<String>,
    image_uri: Option<String>,
}

/// The settable fields shared by CreateFunction and UpdateFunctionConfiguration.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct ConfigFields {
    runtime: Option<String>,
    handler: Option<String>,
    role: Option<String>,
    description: Option<String>,
    timeout: Option<u64>,
    memory_size: Option<u32>,
    environment: Option<Environment>,
    logging_config: Option<Value>,
    wisp_config: Option<WispConfig>,
    layers: Option<Vec<String>>,
}

impl ConfigFields {
    fn apply(self, c: &mut FunctionConfig) -> Result<(), String> {
        if let Some(v) = &self.logging_config {
            c.logging = wisp_core::function::LoggingConfig::from_aws(v)?;
        }
        if let Some(v) = self.runtime {
            c.runtime = v;
        }
        if let Some(v) = self.handler {
            c.handler = v;
        }
        if let Some(v) = self.role {
            c.role = v;
        }
        if let Some(v) = self.description {
            c.description = v;
        }
        if let Some(v) = self.timeout {
            c.timeout_ms = v.saturating_mul(1000);
        }
        if let Some(v) = self.memory_size {
            c.memory_mb = v;
        }
        if let Some(v) = self.environment {
            c.environment = v.variables;
        }
        if let Some(w) = self.wisp_config {
            if let Some(v) = w.allowed_outbound_hosts {
                c.allowed_outbound_hosts = v;
            }
            if let Some(v) = w.instance_reuse {
                c.instance_reuse = v;
            }
            if let Some(v) = w.timeout_ms {
                c.timeout_ms = v;
            }
        }
        Ok(())
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("the request body is not valid: {e}")))
}

/// Decodes and checks an uploaded zip; returns its bytes and the artifact's sha256.
fn check_code(zip_b64: &str, config: &FunctionConfig) -> ApiResult<(Vec<u8>, String)> {
    let zip = base64::engine::general_purpose::STANDARD
        .decode(zip_b64.trim())
        .map_err(|_| {
            ApiError::invalid("Could not unzip uploaded file. ZipFile is not valid base64.")
        })?;
    if zip.len() > wisp_core::limits::MAX_ZIP_BYTES {
        return Err(ApiError::too_large(format!(
            "Unzipped size must be smaller than {} bytes",
            wisp_core::limits::MAX_ZIP_BYTES
        )));
    }
    let summary = codezip::inspect(&zip)
        .map_err(|e| ApiError::invalid(format!("Could not unzip uploaded file: {e}")))?;
    match RuntimeKind::of(&config.runtime) {
        Some(RuntimeKind::Wasm) => {
            if !summary.entries.contains(&config.handler) {
                return Err(ApiError::invalid(format!(
                    "the zip has no `{}`; for runtime wasm, Handler names the component file in the zip (it has: {})",
                    config.handler,
                    summary.entries.iter().take(10).cloned().collect::<Vec<_>>().join(", ")
                )));
            }
            let wasm =
                codezip::read_entry(&zip, &config.handler).map_err(|e| ApiError::invalid(e.0))?;
            codezip::require_component(&wasm, &config.handler)
                .map_err(|e| ApiError::invalid(e.0))?;
            let artifact = codezip::sha256_hex(&wasm);
            Ok((zip, artifact))
        }
        _ => {
            codezip::check_handler(&summary.entries, &config.runtime, &config.handler)
                .map_err(|e| ApiError::invalid(e.0))?;
            let artifact = codezip::sha256_hex(&zip);
            Ok((zip, artifact))
        }
    }
}

/// Stores the code, then prepares (compiles and links) the candidate version
/// so that a bad component is refused at deploy, not at first call.
async fn store_and_prepare(
    state: &ApiState,
    version: &mut FunctionVersion,
    zip: Vec<u8>,
) -> ApiResult<()> {
    version.code_size = zip.len() as u64;
    version.code_sha256 = state.dispatcher.store().put_code(zip).await?;
    prepare(state, version).await
}

async fn prepare(state: &ApiState, version: &FunctionVersion) -> ApiResult<()> {
    match state.dispatcher.prepare(version).await {
        Ok(_) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn now_ms(state: &ApiState) -> i64 {
    state.clock.now_ms()
}

fn new_revision() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub(crate) async fn create_function(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    body: Bytes,
) -> ApiResult<Response> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Create {
        function_name: String,
        code: Code,
        #[serde(default)]
        publish: bool,
        #[serde(flatten)]
        config: ConfigFields,
    }
    let req: Create = parse_json(&body)?;
    validate_name(&req.function_name).map_err(ApiError::invalid)?;
    let runtime = req
        .config
        .runtime
        .clone()
        .ok_or_else(|| ApiError::invalid("Runtime is required"))?;
    let handler = req
        .config
        .handler
        .clone()
        .ok_or_else(|| ApiError::invalid("Handler is required"))?;
    let mut config = FunctionConfig::new(&runtime, &handler);
    let mut fields = req.config;
    if let Some(arns) = fields.layers.take() {
        config.layers = layers::resolve(&state, &arns).await?;
    }
    fields.apply(&mut config).map_err(ApiError::invalid)?;
    config.validate().map_err(ApiError::invalid)?;
    if req.code.s3_bucket.is_some() || req.code.image_uri.is_some() {
        return Err(ApiError::invalid(
            "wisp takes code as Code.ZipFile; S3 and image code are not supported",
        ));
    }
    let zip_b64 = req
        .code
        .zip_file
        .ok_or_else(|| ApiError::invalid("Code.ZipFile is required"))?;
    if state
        .dispatcher
        .store()
        .get_version(&req.function_name, LATEST)
        .await?
        .is_some()
    {
        return Err(ApiError::conflict(format!(
            "Function already exist: {}",
            req.function_name
        )));
    }
    let (zip, artifact_sha256) = check_code(&zip_b64, &config)?;
    let mut version = FunctionVersion {
        function: req.function_name.clone(),
        version: LATEST.into(),
        config,
        code_sha256: String::new(),
        code_size: 0,
        artifact_sha256,
        last_modified_ms: now_ms(&state),
        revision_id: new_revision(),
    };
    store_and_prepare(&state, &mut version, zip).await?;
    state
        .dispatcher
        .store()
        .create_function(version.clone())
        .await?;
    state.dispatcher.forget(&version.function);
    let shown = if req.publish {
        state
            .dispatcher
            .store()
            .publish_version(&version.function, None, None)
            .await?
    } else {
        version
    };
    Ok((
        StatusCode::CREATED,
        Json(configuration(&state, region(&verified), &shown)),
    )
        .into_response())
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct QualifierQuery {
    pub(crate) qualifier: Option<String>,
}

/// The function name and qualifier a request names (path or `?Qualifier=`).
fn named(raw: &str, query: &QualifierQuery) -> ApiResult<(String, Option<String>)> {
    let (name, q) = parse_function_name(raw)?;
    Ok((name, query.qualifier.clone().or(q)))
}

/// The version a request names (an alias's primary version).
async fn resolve(
    state: &ApiState,
    raw: &str,
    query: &QualifierQuery,
) -> ApiResult<Arc<FunctionVersion>> {
    let (name, qualifier) = named(raw, query)?;
    Ok(state
        .dispatcher
        .resolve(&name, qualifier.as_deref())
        .await?)
}

/// The version an invocation runs: a weighted alias picks by weight.
async fn resolve_for_invoke(
    state: &ApiState,
    raw: &str,
    query: &QualifierQuery,
) -> ApiResult<Arc<FunctionVersion>> {
    let (name, qualifier) = named(raw, query)?;
    Ok(state
        .dispatcher
        .resolve_for_invoke(&name, qualifier.as_deref())
        .await?)
}

pub(crate) async fn get_function(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(name): Path<String>,
    Query(query): Query<QualifierQuery>,
) -> ApiResult<Json<Value>> {
    let version = resolve(&state, &name, &query).await?;
    let mut out = json!({
        "Configuration": configuration(&state, region(&verified), &version),
        "Code": {
            "RepositoryType": "S3",
            "Location": format!("{}/wisp/v1/code/{}", state.api_url, version.code_sha256),
        },
    });
    if let Some(n) = settings::reserved(&state, &version.function).await? {
        out["Concurrency"] = json!({ "ReservedConcurrentExecutions": n });
    }
    Ok(Json(out))
}

pub(crate) async fn get_function_configuration(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(name): Path<String>,
    Query(query): Query<QualifierQuery>,
) -> ApiResult<Json<Value>> {
    let version = resolve(&state, &name, &query).await?;
    Ok(Json(configuration(&state, region(&verified), &version)))
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct ListQuery {
    /// `ALL` lists published versions too.
    function_version: Option<String>,
    marker: Option<String>,
    max_items: Option<usize>,
}

/// One page of `items` after `marker` (an index, as returned in NextMarker).
fn page<T>(items: Vec<T>, query: &ListQuery) -> ApiResult<(Vec<T>, Option<String>)> {
    let start = match &query.marker {
        Some(m) => m
            .parse::<usize>()
            .map_err(|_| ApiError::invalid(format!("Marker `{m}` is not valid")))?,
        None => 0,
    };
    let size = query.max_items.unwrap_or(50).clamp(1, MAX_LIST_ITEMS);
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(start).take(size).collect();
    let next = (start + page.len() < total).then(|| (start + page.len()).to_string());
    Ok((page, next))
}

pub(crate) async fn list_functions(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Query(query): Query<ListQuery>,
) -> ApiResult<Json<Value>> {
    let store = state.dispatcher.store();
    let mut functions = store.list_latest().await?;
    if query.function_version.as_deref() == Some("ALL") {
        let mut all = Vec::new();
        for f in &functions {
            all.extend(store.list_versions(&f.function).await?);
        }
        functions = all;
    } else if let Some(v) = &query.function_version {
        return Err(ApiError::invalid(format!(
            "FunctionVersion `{v}` must be ALL"
        )));
    }
    let (functions, next) = page(functions, &query)?;
    let shown: Vec<Value> = functions
        .iter()
        .map(|v| configuration(&state, region(&verified), v))
        .collect();
    let mut out = json!({ "Functions": shown });
    if let Some(n) = next {
        out["NextMarker"] = n.into();
    }
    Ok(Json(out))
}

pub(crate) async fn delete_function(
    State(state): State<Arc<ApiState>>,
    Path(name): Path<String>,
    Query(query): Query<QualifierQuery>,
) -> ApiResult<StatusCode> {
    let (name, q) = parse_function_name(&name)?;
    let store = state.dispatcher.store();
    let qualifier = query.qualifier.or(q);
    let query_was_function_wide = qualifier.is_none();
    match qualifier {
        None => store.delete_function(&name).await?,
        Some(q) if q == LATEST => {
            return Err(ApiError::invalid(
                "$LATEST cannot be deleted on its own; delete the function",
            ))
        }
        Some(q) => store.delete_version(&name, &q).await?,
    }
    if query_was_function_wide {
        let _ = state.dispatcher.concurrency().set_reserved(&name, None);
    }
    state.dispatcher.remove(&name);
    state.mappings.function_deleted(&name);
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn update_function_code(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Update {
        zip_file: Option<String>,
        #[serde(default)]
        publish: bool,
        revision_id: Option<String>,
        #[serde(default)]
        dry_run: bool,
    }
    let req: Update = parse_json(&body)?;
    let (name, _) = parse_function_name(&name)?;
    let store = state.dispatcher.store();
    let current = store
        .get_version(&name, LATEST)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Function not found: {name}")))?;
    let zip_b64 = req
        .zip_file
        .ok_or_else(|| ApiError::invalid("ZipFile is required"))?;
    let (zip, artifact_sha256) = check_code(&zip_b64, &current.config)?;
    let mut version = current.clone();
    version.artifact_sha256 = artifact_sha256;
    version.last_modified_ms = now_ms(&state);
    version.revision_id = new_revision();
    store_and_prepare(&state, &mut version, zip).await?;
    if req.dry_run {
        return Ok(Json(configuration(&state, region(&verified), &version)));
    }
    store
        .update_latest(version.clone(), req.revision_id.as_deref())
        .await?;
    state.dispatcher.forget(&name);
    let shown = if req.publish {
        store.publish_version(&name, None, None).await?
    } else {
        version
    };
    Ok(Json(configuration(&state, region(&verified), &shown)))
}

pub(crate) async fn update_function_configuration(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    #[derive(Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Update {
        revision_id: Option<String>,
        #[serde(flatten)]
        config: ConfigFields,
    }
    let req: Update = parse_json(&body)?;
    let (name, _) = parse_function_name(&name)?;
    let store = state.dispatcher.store();
    let current = store
        .get_version(&name, LATEST)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("Function not found: {name}")))?;
    let mut version = current.clone();
    let mut fields = req.config;
    if let Some(arns) = fields.layers.take() {
        version.config.layers = layers::resolve(&state, &arns).await?;
    }
    fields
        .apply(&mut version.config)
        .map_err(ApiError::invalid)?;
    version.config.validate().map_err(ApiError::invalid)?;
    if version.config.runtime != current.config.runtime
        || version.config.handler != current.config.handler
    {
        let zip = std::fs::read(store.code_path(&version.code_sha256).await?)
            .map_err(|e| ApiError::internal(format!("cannot read stored code: {e}")))?;
        let (_, artifact) = check_code(
            &base64::engine::general_purpose::STANDARD.encode(&zip),
            &version.config,
        )?;
        version.artifact_sha256 = artifact;
    }
    version.last_modified_ms = now_ms(&state);
    version.revision_id = new_revision();
    prepare(&state, &version).await?;
    store
        .update_latest(version.clone(), req.revision_id.as_deref())
        .await?;
    state.dispatcher.forget(&name);
    Ok(Json(configuration(&state, region(&verified), &version)))
}

pub(crate) async fn publish_version(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    #[derive(Deserialize, Default)]
    #[serde(rename_all = "PascalCase")]
    struct Publish {
        description: Option<String>,
        code_sha256: Option<String>,
        revision_id: Option<String>,
    }
    let req: Publish = if body.is_empty() {
        Publish::default()
    } else {
        parse_json(&body)?
    };
    let (name, _) = parse_function_name(&name)?;
    let store = state.dispatcher.store();
    if let Some(expected) = &req.code_sha256 {
        let latest = store
            .get_version(&name, LATEST)
            .await?
            .ok_or_else(|| ApiError::not_found(format!("Function not found: {name}")))?;
        if sha256_base64(&latest.code_sha256) != *expected {
            return Err(ApiError::invalid(format!(
                "CodeSha256 ({expected}) is different from current CodeSha256 in $LATEST ({}). Please try again with the CodeSha256 in $LATEST.",
                sha256_base64(&latest.code_sha256)
            )));
        }
    }
    let version = store
        .publish_version(&name, req.description, req.revision_id.as_deref())
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(configuration(&state, region(&verified), &version)),
    )
        .into_response())
}

pub(crate) async fn list_versions(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let (name, _) = parse_function_name(&name)?;
    let versions = state.dispatcher.store().list_versions(&name).await?;
    if versions.is_empty() {
        return Err(ApiError::not_found(format!("Function not found: {name}")));
    }
    let shown: Vec<Value> = versions
        .iter()
        .map(|v| configuration(&state, region(&verified), v))
        .collect();
    Ok(Json(json!({ "Versions": shown })))
}

pub(crate) async fn account_settings(State(state): State<Arc<ApiState>>) -> ApiResult<Json<Value>> {
    let functions = state.dispatcher.store().list_latest().await?;
    let total: u64 = functions.iter().map(|f| f.code_size).sum();
    Ok(Json(json!({
        "AccountLimit": {
            "TotalCodeSize": 80u64 * 1024 * 1024 * 1024,
            "CodeSizeUnzipped": wisp_core::limits::MAX_UNZIPPED_BYTES,
            "CodeSizeZipped": wisp_core::limits::MAX_ZIP_BYTES,
            "ConcurrentExecutions": state.dispatcher.concurrency().limit(),
            "UnreservedConcurrentExecutions": state.dispatcher.concurrency().unreserved(),
        },
        "AccountUsage": { "TotalCodeSize": total, "FunctionCount": functions.len() },
    })))
}
