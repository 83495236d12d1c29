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
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use wisp_core::apigw;
use wisp_core::error::BodyTimeout;
use wisp_core::function_url::FunctionUrl;
use wisp_core::headers as wisp_headers;
use wisp_core::idempotency::IdempotencyConfig;
use wisp_core::limits::{MAX_GATEWAY_BODY_BYTES, MAX_SYNC_PAYLOAD_BYTES};
use wisp_core::route::{PayloadFormat, Route, RouteMatch, RouteTable};
use wisp_core::runtime::{collect_limited, full_body, Body, BodyFailure, BoxError};
use wisp_core::streaming;
use wisp_core::{Cause, ErrorKind, FunctionVersion, InvokeError, RuntimeKind, ACCOUNT_ID};
use wisp_dispatch::{Dispatched, Dispatcher, ResolveError};

mod traffic;
mod urls;

pub use urls::Verifier;

/// Routes public HTTP requests to functions.
pub struct Gateway {
    dispatcher: Arc<Dispatcher>,
    routes: ArcSwap<RouteTable>,
    limiters: ArcSwap<HashMap<String, Arc<traffic::Limiter>>>,
    cache: traffic::ResponseCache,
    /// Function URLs by their id.
    urls: ArcSwap<HashMap<String, Arc<FunctionUrl>>>,
    /// Checks the SigV4 signature of a request to an `AWS_IAM` URL.
    verifier: std::sync::OnceLock<Verifier>,
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
        response.headers_mut().insert(wisp_headers::REQUEST_ID, id);
    }
    response
}

/// 408 for a body that did not arrive in time; the connection closes, as
/// the rest of the body may still be on its way.
pub fn body_timeout_response() -> Response<Body> {
    let mut r = error_response(StatusCode::REQUEST_TIMEOUT, &BodyTimeout.to_string(), None);
    r.headers_mut()
        .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    r
}

impl Gateway {
    pub fn new(dispatcher: Arc<Dispatcher>) -> Arc<Gateway> {
        Arc::new(Gateway {
            dispatcher,
            routes: ArcSwap::from_pointee(RouteTable::default()),
            limiters: ArcSwap::from_pointee(HashMap::new()),
            cache: traffic::ResponseCache::default(),
            urls: ArcSwap::from_pointee(HashMap::new()),
            verifier: std::sync::OnceLock::new(),
        })
    }

    /// Swaps in a new route table; requests in flight keep the old one.
    /// Rate limits that did not change keep their buckets.
    pub fn set_routes(&self, table: RouteTable) {
        let routes: Vec<Route> = table.routes().cloned().collect();
        let limiters = traffic::limiters(&routes, &self.limiters.load());
        self.limiters.store(Arc::new(limiters));
        self.routes.store(Arc::new(table));
    }

    pub async fn handle<B>(&self, request: Request<B>, remote: SocketAddr) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if let Some(url) = self.url_of(&request) {
            return self.function_url(&url, request, remote).await;
        }
        // The table stays alive for the request (one reference count), so
        // the route is borrowed from it, not copied.
        let routes = self.routes.load_full();
        let (route, params) = match routes.lookup(request.method().as_str(), request.uri().path()) {
            RouteMatch::Found { route, params } => (route, params),
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

        // Throttle before anything reaches the function: downstream sees at
        // most rate + burst.
        if route.rate_limit.is_some() {
            let limiter = self.limiters.load().get(&traffic::route_id(route)).cloned();
            if let Some(limiter) = limiter {
                if let Err(wait) = limiter.check(request.headers(), &remote.ip().to_string()) {
                    metrics::counter!("wisp_gateway_throttled_total", "route" => traffic::route_id(route))
                        .increment(1);
                    return traffic::too_many_requests(wait);
                }
            }
        }
        let cache_key = route.cache.as_ref().and_then(|policy| {
            traffic::cache_key(
                route,
                policy,
                request.method(),
                request.uri(),
                request.headers(),
            )
        });
        let head_only = request.method() == http::Method::HEAD;
        if let Some(key) = &cache_key {
            if let Some(hit) = self.cache.get(key) {
                metrics::counter!("wisp_gateway_cache_total", "result" => "hit").increment(1);
                return hit.response(head_only);
            }
            metrics::counter!("wisp_gateway_cache_total", "result" => "miss").increment(1);
        }
        let response = self
            .route_request(route, params, request, remote, None)
            .await;
        match (cache_key, &route.cache) {
            (Some(key), Some(policy)) => {
                self.cache
                    .store(
                        key,
                        Duration::from_millis(policy.ttl_ms),
                        response,
                        head_only,
                    )
                    .await
            }
            _ => response,
        }
    }

    /// Runs a request on the route's function (`url`: the function URL it
    /// came to, whose qualifier picks the version).
    async fn route_request<B>(
        &self,
        route: &Route,
        params: BTreeMap<String, String>,
        request: Request<B>,
        remote: SocketAddr,
        url: Option<&FunctionUrl>,
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
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

        let version = match self
            .dispatcher
            .resolve_for_invoke(&route.function, url.and_then(|u| u.qualifier.as_deref()))
            .await
        {
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
            Err(ResolveError::Store(e)) => return store_failure(&e),
        };

        let idempotency = match self.dispatcher.idempotency(&version.function).await {
            Ok(c) => c,
            Err(e) => return store_failure(&e),
        };
        if RuntimeKind::of(&version.config.runtime) == Some(RuntimeKind::Process) {
            return self
                .proxy(route, &params, &version, &idempotency, request, remote, url)
                .await;
        }

        let (mut parts, body) = request.into_parts();
        let headers = &mut parts.headers;
        if let Ok(v) = HeaderValue::from_str(&route.path) {
            headers.insert(wisp_headers::ROUTE, v);
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
        headers.append(wisp_headers::FORWARDED_FOR, ip_header(remote.ip()));
        let header_key = idempotency_header(&parts.headers);
        let body_failure = BodyFailure::default();
        parts.extensions.insert(body_failure.clone());
        let (body, key): (Body, _) = if idempotency.key_path.is_some() && header_key.is_none() {
            // The key is in the body: read it first.
            let bytes = match read_body(body).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let key = idempotency.key(None, &bytes);
            (full_body(bytes), key)
        } else {
            // Streamed to the component: if it breaks off, the caller is
            // to blame, whatever the component made of it.
            let body = body_failure.watch(Limited::new(body, MAX_GATEWAY_BODY_BYTES));
            (body, idempotency.key(header_key.as_deref(), b""))
        };
        let key = match key {
            Ok(k) => k,
            Err(m) => return error_response(StatusCode::BAD_REQUEST, &m, None),
        };
        let dispatched = self
            .dispatch(
                &version,
                Request::from_parts(parts, body),
                key.as_deref(),
                &idempotency,
                wisp_core::new_request_id(),
            )
            .await;
        let request_id = dispatched.request_id;
        let failed = match &dispatched.response {
            Ok(r) => r.status().is_server_error(),
            Err(_) => true,
        };
        if let Some(caller) = body_failure.get().filter(|_| failed) {
            return failure_response(caller, &request_id);
        }
        match dispatched.response {
            Ok(mut response) => {
                if let Ok(v) = HeaderValue::from_str(&request_id) {
                    response.headers_mut().insert(wisp_headers::REQUEST_ID, v);
                }
                if dispatched.replayed {
                    response.headers_mut().insert(
                        wisp_headers::IDEMPOTENT_REPLAY,
                        HeaderValue::from_static("true"),
                    );
                }
                response
            }
            Err(error) => failure_response(&error, &request_id),
        }
    }

    /// Invokes once per idempotency key when there is one.
    async fn dispatch(
        &self,
        version: &FunctionVersion,
        request: Request<Body>,
        key: Option<&str>,
        idempotency: &IdempotencyConfig,
        request_id: String,
    ) -> Dispatched {
        match key {
            Some(k) => {
                self.dispatcher
                    .invoke_once(version, request, "gateway", k, idempotency.ttl, request_id)
                    .await
            }
            None => {
                self.dispatcher
                    .invoke_with_id(version, request, "gateway", request_id)
                    .await
            }
        }
    }

    /// A Lambda (process) function behind a route or a function URL: the
    /// request becomes an API Gateway proxy event (payload format 2.0, or
    /// 1.0 per route) and the function's result is mapped back to an HTTP
    /// response.
    #[allow(clippy::too_many_arguments)]
    async fn proxy<B>(
        &self,
        route: &Route,
        params: &BTreeMap<String, String>,
        version: &FunctionVersion,
        idempotency: &IdempotencyConfig,
        request: Request<B>,
        remote: SocketAddr,
        url: Option<&FunctionUrl>,
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let (parts, body) = request.into_parts();
        let body = match read_body(body).await {
            Ok(b) => b,
            Err(r) => return r,
        };
        let key = match idempotency.key(idempotency_header(&parts.headers).as_deref(), &body) {
            Ok(k) => k,
            Err(m) => return error_response(StatusCode::BAD_REQUEST, &m, None),
        };
        let request_id = wisp_core::new_request_id();
        let host = parts
            .headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("localhost")
            .to_string();
        let source_ip = remote.ip().to_string();
        let event = {
            let g = apigw::GatewayRequest {
                method: parts.method.as_str(),
                raw_path: parts.uri.path(),
                raw_query: parts.uri.query().unwrap_or(""),
                headers: &parts.headers,
                body: &body,
                source_ip: &source_ip,
                domain_name: &host,
                route,
                path_parameters: params,
                request_id: &request_id,
                time_ms: self.dispatcher.now_ms(),
                stage: apigw::DEFAULT_STAGE,
                api_id: "wisp",
                account_id: ACCOUNT_ID,
            };
            let mut event = match route.payload_format {
                PayloadFormat::V1 => apigw::event_v1(&g),
                PayloadFormat::V2 => apigw::event_v2(&g),
            };
            if let Some(url) = url {
                urls::as_url_event(&mut event, url, parts.extensions.get::<urls::Caller>());
            }
            event
        };
        let invoke = Request::post("/")
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(full_body(event.to_string()))
            .expect("a static request is valid");
        let dispatched = self
            .dispatch(
                version,
                invoke,
                key.as_deref(),
                idempotency,
                request_id.clone(),
            )
            .await;
        let request_id = dispatched.request_id.clone();
        let replayed = dispatched.replayed;
        let response = match dispatched.response {
            Ok(r) => r,
            Err(error) => return failure_response(&error, &request_id),
        };
        let function_failed = response.status().is_server_error();
        if !function_failed && response.headers().contains_key(streaming::STREAMED) {
            let r = streamed(response, &request_id, replayed).await;
            return match url.filter(|u| !u.streams()) {
                // A BUFFERED URL answers once the function is done.
                Some(_) => urls::buffered(r).await,
                None => r,
            };
        }
        let result = match collect_limited(response.into_body(), MAX_SYNC_PAYLOAD_BYTES).await {
            Ok(b) if !function_failed => b,
            // API Gateway hides the function's error from the client.
            _ => {
                return error_response(
                    StatusCode::BAD_GATEWAY,
                    "Internal Server Error",
                    Some(&request_id),
                )
            }
        };
        let mapped = match route.payload_format {
            PayloadFormat::V1 => apigw::response_v1(&result),
            PayloadFormat::V2 => apigw::response_v2(&result),
        };
        match mapped {
            Ok(m) => {
                let mut r = Response::new(full_body(m.body));
                *r.status_mut() = StatusCode::from_u16(m.status).unwrap_or(StatusCode::OK);
                let h = r.headers_mut();
                for (name, value) in m.headers {
                    if let (Ok(n), Ok(v)) = (
                        http::HeaderName::from_bytes(name.as_bytes()),
                        HeaderValue::from_str(&value),
                    ) {
                        h.append(n, v);
                    }
                }
                if let Ok(v) = HeaderValue::from_str(&request_id) {
                    h.insert(wisp_headers::REQUEST_ID, v);
                }
                if replayed {
                    h.insert(
                        wisp_headers::IDEMPOTENT_REPLAY,
                        HeaderValue::from_static("true"),
                    );
                }
                r
            }
            Err(e) => {
                tracing::warn!(function = %version.function, %request_id, error = %e, "malformed Lambda proxy response");
                error_response(
                    StatusCode::BAD_GATEWAY,
                    "Internal Server Error",
                    Some(&request_id),
                )
            }
        }
    }
}

/// A response the function streams, passed on as it comes: with the
/// status and headers of its prelude, if it begins with one (what
/// `awslambda.HttpResponseStream.from` writes), else as the function typed
/// it.
pub async fn streamed(
    response: Response<Body>,
    request_id: &str,
    replayed: bool,
) -> Response<Body> {
    let (mut parts, body) = response.into_parts();
    parts.headers.remove(streaming::STREAMED);
    let integration = parts
        .headers
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes() == streaming::HTTP_INTEGRATION.as_bytes());
    let mut r = if integration {
        let (prelude, rest) = match streaming::read_prelude(body).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(%request_id, error = %e, "malformed streamed response");
                return error_response(
                    StatusCode::BAD_GATEWAY,
                    "Internal Server Error",
                    Some(request_id),
                );
            }
        };
        let mut r = Response::new(rest);
        *r.status_mut() = StatusCode::from_u16(prelude.status).unwrap_or(StatusCode::OK);
        let h = r.headers_mut();
        for (name, value) in &prelude.headers {
            if let (Ok(n), Ok(v)) = (
                http::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                h.append(n, v);
            }
        }
        for cookie in &prelude.cookies {
            if let Ok(v) = HeaderValue::from_str(cookie) {
                h.append(http::header::SET_COOKIE, v);
            }
        }
        r
    } else {
        Response::from_parts(parts, body)
    };
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert(wisp_headers::REQUEST_ID, v);
    }
    if replayed {
        h.insert(
            wisp_headers::IDEMPOTENT_REPLAY,
            HeaderValue::from_static("true"),
        );
    }
    r
}

/// A 500 for a store failure while routing (details only in the log).
fn store_failure(e: &dyn std::fmt::Display) -> Response<Body> {
    tracing::error!(error = %e, "store failure while routing");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Internal Server Error",
        None,
    )
}

/// The caller's address as a header value, formatted on the stack.
fn ip_header(ip: std::net::IpAddr) -> HeaderValue {
    use std::io::Write as _;
    let mut buf = [0u8; 48]; // the longest IPv6 text is 45 bytes
    let mut cursor = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(cursor, "{ip}");
    let len = cursor.position() as usize;
    HeaderValue::from_bytes(&buf[..len]).expect("an address is a valid header value")
}

fn idempotency_header(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get(wisp_headers::IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Reads a request body up to the gateway's limit.
async fn read_body<B>(body: B) -> Result<Bytes, Response<Body>>
where
    B: hyper::body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    match Limited::new(body, MAX_GATEWAY_BODY_BYTES).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request Entity Too Large",
            None,
        )),
        Err(e) if e.is::<BodyTimeout>() => Err(body_timeout_response()),
        Err(e) => Err(error_response(
            StatusCode::BAD_REQUEST,
            &format!("could not read the request body: {e}"),
            None,
        )),
    }
}

/// The response to a failed invocation: the status says whose fault it
/// was; the body never leaks a guest's error details.
fn failure_response(error: &InvokeError, request_id: &str) -> Response<Body> {
    let status = error.cause.status();
    let message = match error.kind() {
        ErrorKind::Guest if error.cause == Cause::Timeout => {
            "Endpoint request timed out".to_string()
        }
        ErrorKind::Guest => format!("The function failed: {}", error.error_type),
        ErrorKind::Caller if error.cause.is_throttle() => "Too Many Requests".to_string(),
        ErrorKind::Caller => error.message.clone(),
        ErrorKind::Platform => "Internal Server Error".to_string(),
    };
    let mut r = error_response(status, &message, Some(request_id));
    if error.cause == Cause::RequestTimeout {
        // The rest of the body may still be on its way.
        r.headers_mut()
            .insert(http::header::CONNECTION, HeaderValue::from_static("close"));
    }
    if status == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_of_both_families_become_header_values() {
        let v4: std::net::IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(ip_header(v4), "203.0.113.7");
        let v6: std::net::IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
            .parse()
            .unwrap();
        assert_eq!(ip_header(v6), v6.to_string().as_str());
    }
}
