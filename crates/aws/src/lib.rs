//! The control plane on the `--api` listener: the AWS Lambda REST API
//! (so boto3 and the AWS CLI work unchanged), wisp's extras under
//! `/wisp/v1`, and SigV4 authentication of every request.

mod error;
mod event_stream;
mod event_views;
pub mod events;
pub mod json_protocol;
mod lambda;
mod scheduler;
pub mod sigv4;
pub mod sqs;
mod states;
mod wisp_api;

use std::sync::Arc;

use axum::routing::{get, post, put};
use axum::Router;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use wisp_core::clock::Clock;
use wisp_core::error::BodyTimeout;
use wisp_core::limits::MAX_API_BODY_BYTES;
use wisp_core::route::RouteTable;
use wisp_core::runtime::{Body, BoxError};
use wisp_dispatch::{AsyncQueue, Dispatcher};

pub use error::ApiError;
pub use lambda::reload_urls;
pub use sigv4::Credentials;
pub use wisp_api::reload_routes;

/// What the API handlers share.
pub struct ApiState {
    pub dispatcher: Arc<Dispatcher>,
    pub queue: Arc<AsyncQueue>,
    /// The SQS engine.
    pub sqs: Arc<wisp_queues::Sqs>,
    /// Event source mappings and their pollers.
    pub mappings: Arc<wisp_queues::Mappings>,
    /// Event buses, rules and their deliveries.
    pub events: Arc<wisp_events::Events>,
    /// State machines and their executions.
    pub flows: Arc<wisp_flows::engine::Flows>,
    pub credentials: Credentials,
    pub account_id: String,
    pub gateway_url: String,
    pub api_url: String,
    pub clock: Arc<dyn Clock>,
    /// Called with the new table whenever routes change.
    pub routes_changed: Arc<dyn Fn(RouteTable) + Send + Sync>,
    /// Called with every function URL whenever one changes.
    pub urls_changed: Arc<dyn Fn(Vec<wisp_core::function_url::FunctionUrl>) + Send + Sync>,
}

/// The API: checks size and signature, then routes.
pub struct Api {
    state: Arc<ApiState>,
    router: Router,
}

impl Api {
    pub fn new(state: Arc<ApiState>) -> Api {
        let f = "/2015-03-31/functions/{name}";
        let router = Router::new()
            .route(
                "/2015-03-31/functions",
                post(lambda::create_function).get(lambda::list_functions),
            )
            .route(
                "/2015-03-31/functions/",
                post(lambda::create_function).get(lambda::list_functions),
            )
            .route(f, get(lambda::get_function).delete(lambda::delete_function))
            .route(&format!("{f}/code"), put(lambda::update_function_code))
            .route(
                &format!("{f}/configuration"),
                put(lambda::update_function_configuration).get(lambda::get_function_configuration),
            )
            .route(
                &format!("{f}/versions"),
                post(lambda::publish_version).get(lambda::list_versions),
            )
            .route(
                &format!("{f}/aliases"),
                post(lambda::create_alias).get(lambda::list_aliases),
            )
            .route(
                &format!("{f}/aliases/{{alias}}"),
                get(lambda::get_alias)
                    .put(lambda::update_alias)
                    .delete(lambda::delete_alias),
            )
            .route(&format!("{f}/invocations"), post(lambda::invoke))
            .route(
                "/2021-11-15/functions/{name}/response-streaming-invocations",
                post(lambda::invoke_with_response_stream),
            )
            .route(
                "/2021-10-31/functions/{name}/url",
                post(lambda::create_function_url_config)
                    .get(lambda::get_function_url_config)
                    .put(lambda::update_function_url_config)
                    .delete(lambda::delete_function_url_config),
            )
            .route(
                "/2021-10-31/functions/{name}/urls",
                get(lambda::list_function_url_configs),
            )
            .route("/2018-10-31/layers", get(lambda::list_layers))
            .route(
                "/2018-10-31/layers/{layer}/versions",
                post(lambda::publish_layer_version).get(lambda::list_layer_versions),
            )
            .route(
                "/2018-10-31/layers/{layer}/versions/{version}",
                get(lambda::get_layer_version).delete(lambda::delete_layer_version),
            )
            .route(
                "/2015-03-31/event-source-mappings/",
                post(lambda::create_event_source_mapping).get(lambda::list_event_source_mappings),
            )
            .route(
                "/2015-03-31/event-source-mappings",
                post(lambda::create_event_source_mapping).get(lambda::list_event_source_mappings),
            )
            .route(
                "/2015-03-31/event-source-mappings/{uuid}",
                get(lambda::get_event_source_mapping)
                    .put(lambda::update_event_source_mapping)
                    .delete(lambda::delete_event_source_mapping),
            )
            .route(
                "/2017-10-31/functions/{name}/concurrency",
                put(lambda::put_function_concurrency).delete(lambda::delete_function_concurrency),
            )
            .route(
                "/2019-09-30/functions/{name}/concurrency",
                get(lambda::get_function_concurrency),
            )
            .route(
                "/2019-09-30/functions/{name}/provisioned-concurrency",
                put(lambda::put_provisioned_concurrency)
                    .get(lambda::get_provisioned_concurrency)
                    .delete(lambda::delete_provisioned_concurrency),
            )
            .route(
                "/2019-09-25/functions/{name}/event-invoke-config",
                put(lambda::put_event_invoke_config)
                    .post(lambda::update_event_invoke_config)
                    .get(lambda::get_event_invoke_config)
                    .delete(lambda::delete_event_invoke_config),
            )
            .route(
                "/2019-09-25/functions/{name}/event-invoke-config/list",
                get(lambda::list_event_invoke_configs),
            )
            .route(
                "/2016-08-19/account-settings",
                get(lambda::account_settings),
            )
            .route(
                "/2016-08-19/account-settings/",
                get(lambda::account_settings),
            )
            // EventBridge Scheduler (REST-JSON).
            .route("/schedules", get(scheduler::list_schedules))
            .route(
                "/schedules/{name}",
                post(scheduler::create_schedule)
                    .get(scheduler::get_schedule)
                    .put(scheduler::update_schedule)
                    .delete(scheduler::delete_schedule),
            )
            .route("/schedule-groups", get(scheduler::list_groups))
            .route(
                "/schedule-groups/{name}",
                post(scheduler::create_group)
                    .get(scheduler::get_group)
                    .delete(scheduler::delete_group),
            )
            .route(
                "/tags/{arn}",
                get(scheduler::list_tags)
                    .post(scheduler::tag_resource)
                    .delete(scheduler::untag_resource),
            )
            .route("/wisp/v1/schedules", get(event_views::schedules))
            .route("/wisp/v1/buses/{bus}/tail", get(event_views::tail))
            .route("/wisp/v1/graph", get(event_views::graph))
            .route("/wisp/v1/info", get(wisp_api::info))
            .route("/wisp/v1/routes", get(wisp_api::list_routes))
            .route("/wisp/v1/apps/{app}/routes", put(wisp_api::put_routes))
            .route(
                "/wisp/v1/functions/{name}/invocations",
                get(wisp_api::list_invocations),
            )
            .route(
                "/wisp/v1/invocations/{request_id}",
                get(wisp_api::get_invocation),
            )
            .route("/wisp/v1/logs", get(wisp_api::logs))
            .route(
                "/wisp/v1/functions/{name}/provisioned-concurrency",
                put(lambda::put_latest_provisioned),
            )
            .route("/wisp/v1/code/{sha}", get(wisp_api::code))
            .route("/wisp/v1/async", get(wisp_api::async_queues))
            .route("/wisp/v1/queues", get(wisp_api::sqs_queues))
            .route(
                "/wisp/v1/functions/{name}/async",
                get(wisp_api::function_async),
            )
            .route(
                "/wisp/v1/functions/{name}/idempotency",
                put(wisp_api::put_idempotency)
                    .get(wisp_api::get_idempotency)
                    .delete(wisp_api::delete_idempotency),
            )
            .fallback(|| async {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "UnknownOperationException",
                    "Unknown operation",
                )
            })
            .with_state(state.clone())
            // `handle` bounds bodies already (MAX_API_BODY_BYTES); axum's
            // own 2 MB default would refuse zips and payloads Lambda takes.
            .layer(axum::extract::DefaultBodyLimit::disable());
        Api { state, router }
    }

    pub fn state(&self) -> &Arc<ApiState> {
        &self.state
    }

    /// The JSON protocols' services, chosen by `X-Amz-Target`.
    async fn json_target(
        &self,
        target: &http::HeaderValue,
        parts: &http::request::Parts,
        verified: &sigv4::Verified,
        body: &Bytes,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        use json_protocol::{JsonError, JsonVersion, Target};
        let text = target.to_str().unwrap_or("");
        match Target::parse(text) {
            Some(t) if t.service == sqs::TARGET => {
                let host = parts
                    .headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .filter(|h| !h.is_empty());
                let caller = sqs::Caller {
                    base_url: host
                        .map_or_else(|| self.state.api_url.clone(), |h| format!("http://{h}")),
                    sender_id: verified.access_key_id.clone(),
                };
                sqs::handle(&self.state.sqs, &caller, t.operation, body).await
            }
            Some(t) if t.service == events::TARGET => {
                events::handle(&self.state.events, t.operation, body).await
            }
            Some(t) if t.service == states::TARGET => {
                states::handle(&self.state.flows, t.operation, body).await
            }
            _ => JsonError::unknown_operation(JsonVersion::V1_0, text).into_response(),
        }
    }

    /// Serves one request. `/health` is open; everything else needs SigV4.
    /// Every response carries `x-amzn-RequestId`, as AWS's do (an
    /// invocation's is its request id).
    pub async fn handle<B>(
        &self,
        request: Request<B>,
        metrics: &(dyn Fn() -> String + Send + Sync),
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let mut response = self.handle_inner(request, metrics).await;
        if !response.headers().contains_key("x-amzn-requestid") {
            if let Ok(v) = http::HeaderValue::from_str(&wisp_core::new_request_id()) {
                response.headers_mut().insert("x-amzn-RequestId", v);
            }
        }
        response
    }

    async fn handle_inner<B>(
        &self,
        request: Request<B>,
        metrics: &(dyn Fn() -> String + Send + Sync),
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        use axum::response::IntoResponse;
        let boxed = |r: axum::response::Response| {
            r.map(|b| b.map_err(|e| -> BoxError { e.into() }).boxed_unsync())
        };
        match request.uri().path() {
            "/health" => {
                return boxed(
                    (
                        StatusCode::OK,
                        axum::Json(serde_json::json!({"status": "ok"})),
                    )
                        .into_response(),
                )
            }
            "/metrics" => {
                return boxed(
                    (
                        StatusCode::OK,
                        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                        metrics(),
                    )
                        .into_response(),
                )
            }
            _ => {}
        }
        let (parts, body) = request.into_parts();
        let declared = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let too_large = || {
            boxed(
                ApiError::too_large(format!(
                    "Request must be smaller than {MAX_API_BODY_BYTES} bytes"
                ))
                .into_response(),
            )
        };
        if declared.is_some_and(|n| n > MAX_API_BODY_BYTES as u64) {
            return too_large();
        }
        let body = match Limited::new(body, MAX_API_BODY_BYTES).collect().await {
            Ok(c) => c.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => return too_large(),
            Err(e) if e.is::<BodyTimeout>() => {
                let mut r = boxed(
                    ApiError::new(
                        StatusCode::REQUEST_TIMEOUT,
                        "RequestTimeoutException",
                        BodyTimeout.to_string(),
                    )
                    .into_response(),
                );
                r.headers_mut().insert(
                    http::header::CONNECTION,
                    http::HeaderValue::from_static("close"),
                );
                return r;
            }
            Err(e) => {
                return boxed(
                    ApiError::invalid(format!("could not read the request body: {e}"))
                        .into_response(),
                )
            }
        };
        let now = self.state.clock.now_ms() / 1000;
        let verified = match sigv4::verify(
            &self.state.credentials,
            parts.method.as_str(),
            parts.uri.path(),
            parts.uri.query().unwrap_or(""),
            &parts.headers,
            &body,
            now,
        ) {
            Ok(v) => v,
            Err(e) => {
                return boxed(
                    ApiError::new(StatusCode::FORBIDDEN, e.error_type(), e.to_string())
                        .into_response(),
                )
            }
        };
        if let Some(target) = parts.headers.get("x-amz-target") {
            return boxed(self.json_target(target, &parts, &verified, &body).await);
        }
        let mut request = Request::from_parts(parts, Full::new(body));
        request.extensions_mut().insert(verified);
        let response = tower::ServiceExt::oneshot(self.router.clone(), request)
            .await
            .unwrap_or_else(|never| match never {});
        boxed(response)
    }
}
