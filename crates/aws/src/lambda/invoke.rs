//! Invoke: RequestResponse, Event and DryRun, with Lambda's headers.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::json;
use wisp_core::function::LATEST;
use wisp_core::limits::MAX_SYNC_PAYLOAD_BYTES;
use wisp_core::runtime::{collect_limited, CollectError};
use wisp_core::{ErrorKind, RuntimeKind};
use wisp_dispatch::{invocation_request, AcceptError, AsyncRequest};
use wisp_store::LogQuery;

use super::{function_arn, named, region, resolve_for_invoke, QualifierQuery};
use crate::error::{ApiError, ApiResult};
use crate::sigv4::Verified;
use crate::ApiState;

pub(crate) async fn invoke(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(name): Path<String>,
    Query(query): Query<QualifierQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let version = resolve_for_invoke(&state, &name, &query).await?;
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    };
    let invocation_type = match header("x-amz-invocation-type") {
        "" | "RequestResponse" => "RequestResponse",
        "Event" => "Event",
        "DryRun" => "DryRun",
        other => {
            return Err(ApiError::invalid(format!(
                "InvocationType `{other}` must be RequestResponse, Event or DryRun"
            )))
        }
    };
    let limit = if invocation_type == "Event" {
        wisp_core::limits::MAX_ASYNC_PAYLOAD_BYTES
    } else {
        MAX_SYNC_PAYLOAD_BYTES
    };
    if body.len() > limit {
        return Err(ApiError::too_large(format!(
            "{} byte payload is too large for the {invocation_type} invocation type (limit {limit} bytes)",
            body.len()
        )));
    }
    let kind = RuntimeKind::of(&version.config.runtime).unwrap_or(RuntimeKind::Wasm);
    let body = wisp_core::runtime::invoke_payload(kind, body)
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "InvalidRequestContentException", m))?;
    if invocation_type == "DryRun" {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    // The ARN the caller used, qualifier and all, as context.invokedFunctionArn.
    let (_, qualifier) = named(&name, &query)?;
    let mut arn = function_arn(&state, region(&verified), &version.function);
    if let Some(q) = &qualifier {
        arn = format!("{arn}:{q}");
    }
    let client_context = Some(header("x-amz-client-context")).filter(|c| !c.is_empty());
    let payload = body;

    let key = state.dispatcher.idempotency(&version.function).await?;
    let idempotency_key = key
        .key(
            headers
                .get(wisp_core::headers::IDEMPOTENCY_KEY)
                .and_then(|v| v.to_str().ok()),
            &payload,
        )
        .map_err(ApiError::invalid)?;

    if invocation_type == "Event" {
        let accepted = state
            .queue
            .accept(AsyncRequest {
                function: version.function.clone(),
                qualifier: qualifier.clone().unwrap_or_else(|| LATEST.to_string()),
                payload,
                source: "api".into(),
                invoked_arn: arn,
                client_context: client_context.map(str::to_string),
                idempotency_key,
            })
            .await
            .map_err(|e| match e {
                AcceptError::NoFunction(_) => ApiError::not_found(e.to_string()),
                AcceptError::Store(_) => ApiError::internal(e.to_string()),
            })?;
        let mut response = StatusCode::ACCEPTED.into_response();
        if let Ok(v) = HeaderValue::from_str(&accepted.request_id) {
            response.headers_mut().insert("x-amzn-RequestId", v);
        }
        if accepted.duplicate {
            response.headers_mut().insert(
                wisp_core::headers::IDEMPOTENT_REPLAY,
                HeaderValue::from_static("true"),
            );
        }
        return Ok(response);
    }

    let request = invocation_request(payload, &arn, client_context)
        .map_err(|e| ApiError::internal(format!("building the invocation failed: {e}")))?;
    let dispatched = match &idempotency_key {
        Some(k) => {
            state
                .dispatcher
                .invoke_once(
                    &version,
                    request,
                    "api",
                    k,
                    key.ttl,
                    wisp_core::new_request_id(),
                )
                .await
        }
        None => state.dispatcher.invoke(&version, request, "api").await,
    };
    let request_id = dispatched.request_id.clone();
    let (payload, function_error) = match dispatched.response {
        Ok(response) => {
            let status = response.status();
            match collect_limited(response.into_body(), MAX_SYNC_PAYLOAD_BYTES).await {
                Ok(bytes) => (bytes, status.is_server_error()),
                Err(CollectError::TooLarge(_)) => (
                    Bytes::from(json!({
                        "errorMessage": format!("Response payload size exceeded maximum allowed payload size ({MAX_SYNC_PAYLOAD_BYTES} bytes)."),
                        "errorType": "Function.ResponseSizeTooLarge",
                    }).to_string()),
                    true,
                ),
                Err(e @ CollectError::Failed(_)) => (
                    Bytes::from(json!({ "errorMessage": format!("the function's response failed: {e}"), "errorType": "Function.ResponseError" }).to_string()),
                    true,
                ),
            }
        }
        Err(error) if error.kind() != ErrorKind::Guest => return Err(error.into()),
        Err(error) => {
            let message = format!("RequestId: {request_id} Error: {}", error.message);
            let error_type = error.lambda_error_type();
            (
                Bytes::from(
                    json!({ "errorMessage": message, "errorType": error_type }).to_string(),
                ),
                true,
            )
        }
    };

    let mut response = (StatusCode::OK, payload).into_response();
    let h = response.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(&dispatched.version) {
        h.insert("x-amz-executed-version", v);
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        h.insert("x-amzn-RequestId", v);
    }
    if dispatched.replayed {
        h.insert(
            wisp_core::headers::IDEMPOTENT_REPLAY,
            HeaderValue::from_static("true"),
        );
    }
    if function_error {
        h.insert(
            "x-amz-function-error",
            HeaderValue::from_static("Unhandled"),
        );
    }
    if header("x-amz-log-type") == "Tail" {
        // The record arrives once the guest has finished; its logs are then
        // one flush away from the store.
        let _ = tokio::time::timeout(Duration::from_secs(5), dispatched.record).await;
        state.dispatcher.flush().await;
        let logs = state
            .dispatcher
            .store()
            .query_logs(LogQuery {
                request_id: Some(request_id.clone()),
                limit: 10_000,
                ..LogQuery::default()
            })
            .await?;
        let mut text = String::new();
        for l in logs {
            text.push_str(&l.message);
            text.push('\n');
        }
        let tail = base64::engine::general_purpose::STANDARD.encode(wisp_core::text::tail(
            &text,
            wisp_core::limits::LOG_TAIL_BYTES,
        ));
        if let Ok(v) = HeaderValue::from_str(&tail) {
            h.insert("x-amz-log-result", v);
        }
    }
    Ok(response)
}
