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
    let header = |name: &str| text(&headers, name);
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
    let Some(call) = SyncCall::checked(
        &state,
        &verified,
        &name,
        &query,
        &headers,
        body,
        invocation_type,
    )
    .await?
    else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let SyncCall {
        version,
        arn,
        payload,
        client_context,
        idempotency_key,
        qualifier,
        ..
    } = call;
    if invocation_type == "Event" {
        let accepted = state
            .queue
            .accept(AsyncRequest {
                function: version.function.clone(),
                qualifier: qualifier.clone().unwrap_or_else(|| LATEST.to_string()),
                payload,
                source: "api".into(),
                invoked_arn: arn,
                client_context,
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

    let call = SyncCall {
        version,
        arn,
        payload,
        client_context,
        idempotency_key,
        ttl: call.ttl,
        qualifier,
    };
    let dispatched = call.dispatch(&state).await?;
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
    executed(h, &dispatched.version, &request_id);
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
        let tail = log_tail(&state, &request_id, dispatched.record).await?;
        if let Ok(v) = HeaderValue::from_str(&tail) {
            h.insert("x-amz-log-result", v);
        }
    }
    Ok(response)
}

/// A synchronous invocation, checked and ready to run.
pub(crate) struct SyncCall {
    pub version: Arc<wisp_core::function::FunctionVersion>,
    pub arn: String,
    pub payload: Bytes,
    pub client_context: Option<String>,
    pub idempotency_key: Option<String>,
    pub ttl: Duration,
    pub qualifier: Option<String>,
}

impl SyncCall {
    /// An Invoke request's function, payload and headers, checked as
    /// Lambda checks them; `None` for a DryRun.
    pub async fn checked(
        state: &ApiState,
        verified: &Option<Extension<Verified>>,
        name: &str,
        query: &QualifierQuery,
        headers: &HeaderMap,
        body: Bytes,
        invocation_type: &str,
    ) -> ApiResult<Option<SyncCall>> {
        let version = resolve_for_invoke(state, name, query).await?;
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
        let payload = wisp_core::runtime::invoke_payload(kind, body).map_err(|m| {
            ApiError::new(StatusCode::BAD_REQUEST, "InvalidRequestContentException", m)
        })?;
        if invocation_type == "DryRun" {
            return Ok(None);
        }
        // The ARN the caller used, qualifier and all, as context.invokedFunctionArn.
        let (_, qualifier) = named(name, query)?;
        let mut arn = function_arn(state, region(verified), &version.function);
        if let Some(q) = &qualifier {
            arn = format!("{arn}:{q}");
        }
        let client_context = headers
            .get("x-amz-client-context")
            .and_then(|v| v.to_str().ok())
            .filter(|c| !c.is_empty())
            .map(str::to_string);
        let key = state.dispatcher.idempotency(&version.function).await?;
        let idempotency_key = key
            .key(
                headers
                    .get(wisp_core::headers::IDEMPOTENCY_KEY)
                    .and_then(|v| v.to_str().ok()),
                &payload,
            )
            .map_err(ApiError::invalid)?;
        Ok(Some(SyncCall {
            version,
            arn,
            payload,
            client_context,
            idempotency_key,
            ttl: key.ttl,
            qualifier,
        }))
    }

    /// Runs it (once per idempotency key).
    pub async fn dispatch(self, state: &ApiState) -> ApiResult<wisp_dispatch::Dispatched> {
        let request =
            invocation_request(self.payload, &self.arn, self.client_context.as_deref())
                .map_err(|e| ApiError::internal(format!("building the invocation failed: {e}")))?;
        Ok(match &self.idempotency_key {
            Some(k) => {
                state
                    .dispatcher
                    .invoke_once(
                        &self.version,
                        request,
                        "api",
                        k,
                        self.ttl,
                        wisp_core::new_request_id(),
                    )
                    .await
            }
            None => state.dispatcher.invoke(&self.version, request, "api").await,
        })
    }
}

/// The last 4 KB of an invocation's logs, base64 encoded, once its record
/// (`record` says when) is written.
pub(crate) async fn log_tail(
    state: &ApiState,
    request_id: &str,
    record: impl std::future::Future,
) -> ApiResult<String> {
    // The record arrives once the guest has finished; its logs are then
    // one flush away from the store.
    let _ = tokio::time::timeout(Duration::from_secs(5), record).await;
    state.dispatcher.flush().await;
    let logs = state
        .dispatcher
        .store()
        .query_logs(LogQuery {
            request_id: Some(request_id.to_string()),
            limit: 10_000,
            ..LogQuery::default()
        })
        .await?;
    let logs = crate::wisp_api::in_log_format(state, logs).await;
    let mut text = String::new();
    for l in logs {
        text.push_str(&l.message);
        text.push('\n');
    }
    Ok(
        base64::engine::general_purpose::STANDARD.encode(wisp_core::text::tail(
            &text,
            wisp_core::limits::LOG_TAIL_BYTES,
        )),
    )
}

/// InvokeWithResponseStream: the function's result as AWS's event stream,
/// a PayloadChunk for each chunk as the function writes it (one for a
/// function that does not stream), then InvokeComplete with the error, if
/// any, and the log tail if asked.
pub(crate) async fn invoke_with_response_stream(
    State(state): State<Arc<ApiState>>,
    verified: Option<Extension<Verified>>,
    Path(name): Path<String>,
    Query(query): Query<QualifierQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let header = |name: &str| text(&headers, name);
    let invocation_type = match header("x-amz-invocation-type") {
        "" | "RequestResponse" => "RequestResponse",
        "DryRun" => "DryRun",
        other => {
            return Err(ApiError::invalid(format!(
                "1 validation error detected: Value '{other}' at 'invocationType' failed to satisfy constraint: Member must satisfy enum value set: [RequestResponse, DryRun]"
            )))
        }
    };
    let Some(call) = SyncCall::checked(
        &state,
        &verified,
        &name,
        &query,
        &headers,
        body,
        invocation_type,
    )
    .await?
    else {
        return Ok(StatusCode::NO_CONTENT.into_response());
    };
    let tail = header("x-amz-log-type") == "Tail";
    let dispatched = call.dispatch(&state).await?;
    let request_id = dispatched.request_id.clone();
    let (result, content_type) = match dispatched.response {
        Ok(response) => {
            let content_type = response
                .headers()
                .get(http::header::CONTENT_TYPE)
                .cloned()
                .unwrap_or(HeaderValue::from_static("application/octet-stream"));
            (Ok(response), content_type)
        }
        Err(error) if error.kind() != ErrorKind::Guest => return Err(error.into()),
        Err(error) => (
            Err(error),
            HeaderValue::from_static("application/octet-stream"),
        ),
    };
    let (events, out) = wisp_core::streaming::channel(16);
    let record = dispatched.record;
    let tail_state = state.clone();
    let tail_id = request_id.clone();
    tokio::spawn(async move {
        let failure = match result {
            Ok(response) => relay(response, &events).await,
            Err(error) => Some((
                error.lambda_error_type().to_string(),
                format!("RequestId: {tail_id} Error: {}", error.message),
            )),
        };
        let mut complete = serde_json::Map::new();
        if let Some((code, details)) = failure {
            complete.insert("ErrorCode".into(), json!(code));
            complete.insert("ErrorDetails".into(), json!(details));
        }
        if tail {
            if let Ok(t) = log_tail(&tail_state, &tail_id, record).await {
                complete.insert("LogResult".into(), json!(t));
            }
        }
        let done = serde_json::Value::Object(complete).to_string();
        let _ = events
            .data(crate::event_stream::event(
                "InvokeComplete",
                "application/json",
                done.as_bytes(),
            ))
            .await;
    });
    let mut response = Response::new(axum::body::Body::new(out));
    let h = response.headers_mut();
    h.insert(http::header::CONTENT_TYPE, content_type);
    executed(h, &dispatched.version, &request_id);
    Ok(response)
}

/// A request header as text ("" when absent or not text).
fn text<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// The version that ran and the request id, on an invoke's answer.
fn executed(h: &mut HeaderMap, version: &str, request_id: &str) {
    if let Ok(v) = HeaderValue::from_str(version) {
        h.insert("x-amz-executed-version", v);
    }
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-amzn-RequestId", v);
    }
}

/// Sends each chunk of a function's result as a PayloadChunk; the error
/// it ended with (its type and message), if any.
async fn relay(
    response: http::Response<wisp_core::runtime::Body>,
    events: &wisp_core::streaming::StreamSender,
) -> Option<(String, String)> {
    use http_body_util::BodyExt;
    let function_error = response.status().is_server_error();
    let mut body = response.into_body();
    let mut buffered = bytes::BytesMut::new();
    let mut failure = None;
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame = match frame {
            Ok(f) => f,
            Err(e) => {
                failure = Some(("Runtime.TruncatedResponse".into(), e.to_string()));
                break;
            }
        };
        match frame.into_data() {
            Ok(chunk) if function_error => buffered.extend_from_slice(&chunk),
            Ok(chunk) => {
                total += chunk.len();
                if total > wisp_core::streaming::MAX_STREAMED_BYTES {
                    failure = Some((
                        "Function.ResponseSizeTooLarge".into(),
                        "Response payload size exceeded maximum allowed payload size".into(),
                    ));
                    break;
                }
                let event =
                    crate::event_stream::event("PayloadChunk", "application/octet-stream", &chunk);
                if !events.data(event).await {
                    return None; // the caller went away
                }
            }
            Err(frame) => {
                if let Some((error_type, doc)) = frame
                    .trailers_ref()
                    .and_then(wisp_core::streaming::trailer_error)
                {
                    let doc = wisp_core::runtime_api::ErrorDocument::parse(Some(&error_type), &doc);
                    failure = Some((doc.error_type, doc.message));
                }
            }
        }
    }
    if function_error && failure.is_none() {
        let doc = wisp_core::runtime_api::ErrorDocument::parse(None, &buffered);
        failure = Some((doc.error_type, doc.message));
    }
    failure
}
