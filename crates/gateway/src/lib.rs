//! The gateway: the public routes of functions on the `--http` listener.
//!
//! Each request is matched against the route table (most specific route
//! wins, 404/405 otherwise), bounded in size, and dispatched as one
//! invocation with its own record. Bodies stream both ways.

use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use wisp_core::limits::MAX_GATEWAY_BODY_BYTES;
use wisp_core::route::{RouteMatch, RouteTable};
use wisp_core::runtime::{full_body, Body, BoxError};
use wisp_core::{ErrorKind, InvokeError};
use wisp_dispatch::{Dispatcher, ResolveError};

/// Routes public HTTP requests to functions.
pub struct Gateway {
    dispatcher: Arc<Dispatcher>,
    routes: ArcSwap<RouteTable>,
}

/// A JSON error response in API Gateway's shape: `{"message": ...}`.
pub fn error_response(
    status: StatusCode,
    message: &str,
    request_id: Option<&str>,
) -> Response<Body> {
    let mut body = serde_json::json!({ "message": message });
    if let Some(id) = request_id {
        body["requestId"] = id.into();
    }
    let mut response = Response::new(full_body(body.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(id) = request_id.and_then(|id| HeaderValue::from_str(id).ok()) {
        response.headers_mut().insert("x-wisp-request-id", id);
    }
    response
}

/// The status a failed invocation gets on the gateway.
fn invoke_error_status(error: &InvokeError) -> StatusCode {
    use wisp_core::error::error_types::*;
    match (error.kind, error.error_type.as_str()) {
        (ErrorKind::Guest, TIMEOUT) => StatusCode::GATEWAY_TIMEOUT,
        (ErrorKind::Guest, _) => StatusCode::BAD_GATEWAY,
        (ErrorKind::Caller, PAYLOAD_TOO_LARGE) => StatusCode::PAYLOAD_TOO_LARGE,
        (ErrorKind::Caller, _) => StatusCode::BAD_REQUEST,
        (ErrorKind::Platform, _) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl Gateway {
    pub fn new(dispatcher: Arc<Dispatcher>) -> Arc<Gateway> {
        Arc::new(Gateway {
            dispatcher,
            routes: ArcSwap::from_pointee(RouteTable::default()),
        })
    }

    /// Swaps in a new route table; requests in flight keep the old one.
    pub fn set_routes(&self, table: RouteTable) {
        self.routes.store(Arc::new(table));
    }

    pub async fn handle<B>(&self, request: Request<B>, remote: SocketAddr) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let routes = self.routes.load();
        let path = request.uri().path().to_string();
        let (route, params) = match routes.lookup(request.method().as_str(), &path) {
            RouteMatch::Found { route, params } => (route.clone(), params),
            RouteMatch::MethodNotAllowed { allowed } => {
                let mut r =
                    error_response(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed", None);
                if let Ok(v) = HeaderValue::from_str(&allowed.join(", ")) {
                    r.headers_mut().insert(http::header::ALLOW, v);
                }
                return r;
            }
            RouteMatch::NotFound => {
                return error_response(StatusCode::NOT_FOUND, "Not Found", None)
            }
        };
        drop(routes);

        let declared_len = request
            .headers()
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared_len.is_some_and(|n| n > MAX_GATEWAY_BODY_BYTES as u64) {
            return error_response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "Request Entity Too Large",
                None,
            );
        }

        let version = match self.dispatcher.resolve(&route.function, None).await {
            Ok(v) => v,
            Err(ResolveError::NotFound(_)) => {
                return error_response(
                    StatusCode::BAD_GATEWAY,
                    &format!(
                        "route {} {} points at function `{}`, which does not exist",
                        route.method, route.path, route.function
                    ),
                    None,
                )
            }
            Err(ResolveError::Store(e)) => {
                tracing::error!(error = %e, "store failure while routing");
                return error_response(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Internal Server Error",
                    None,
                );
            }
        };

        let (mut parts, body) = request.into_parts();
        let headers = &mut parts.headers;
        if let Ok(v) = HeaderValue::from_str(&route.path) {
            headers.insert("x-wisp-route", v);
        }
        for (name, value) in &params {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(
                    format!("x-wisp-param-{}", name.to_ascii_lowercase()).as_bytes(),
                ),
                HeaderValue::from_str(value),
            ) {
                headers.insert(n, v);
            }
        }
        if let Ok(v) = HeaderValue::from_str(&remote.ip().to_string()) {
            headers.append("x-forwarded-for", v);
        }
        let body: Body = Limited::new(body, MAX_GATEWAY_BODY_BYTES)
            .map_err(|e| -> BoxError { e })
            .boxed_unsync();
        let dispatched = self
            .dispatcher
            .invoke(&version, Request::from_parts(parts, body), "gateway")
            .await;
        let request_id = dispatched.request_id;
        match dispatched.response {
            Ok(mut response) => {
                if let Ok(v) = HeaderValue::from_str(&request_id) {
                    response.headers_mut().insert("x-wisp-request-id", v);
                }
                response
            }
            Err(error) => {
                let status = invoke_error_status(&error);
                let message = match error.kind {
                    ErrorKind::Guest if status == StatusCode::GATEWAY_TIMEOUT => {
                        "Endpoint request timed out".to_string()
                    }
                    ErrorKind::Guest => format!("The function failed: {}", error.error_type),
                    ErrorKind::Caller => error.message.clone(),
                    ErrorKind::Platform => "Internal Server Error".to_string(),
                };
                error_response(status, &message, Some(&request_id))
            }
        }
    }
}
