//! Function URLs on the gateway: a request whose host is
//! `<url-id>.lambda-url.<region>.localhost` goes to that URL's function
//! (or alias), as Lambda's payload format 2.0 with `$default` as route
//! and stage; an `AWS_IAM` URL first checks the request's SigV4
//! signature, and CORS is answered as Lambda answers it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use serde_json::{json, Value};
use wisp_core::function_url::{self, Cors, FunctionUrl};
use wisp_core::limits::{MAX_GATEWAY_BODY_BYTES, MAX_SYNC_PAYLOAD_BYTES};
use wisp_core::route::{PayloadFormat, Route};
use wisp_core::runtime::{collect_limited, full_body, Body, BoxError};

use crate::{error_response, read_body, Gateway};

/// Checks a request's SigV4 signature (head and whole body); the caller's
/// access key id, or why not.
pub type Verifier =
    Arc<dyn Fn(&http::request::Parts, &[u8]) -> Result<String, String> + Send + Sync>;

/// Who signed a request to an `AWS_IAM` URL (its access key id).
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub String);

impl Gateway {
    /// Swaps in the function URLs.
    pub fn set_urls(&self, urls: Vec<FunctionUrl>) {
        let map = urls
            .into_iter()
            .map(|u| (u.config.url_id.clone(), Arc::new(u)))
            .collect::<HashMap<_, _>>();
        self.urls.store(Arc::new(map));
    }

    /// Sets how `AWS_IAM` URLs check signatures (once, at start).
    pub fn set_verifier(&self, verifier: Verifier) {
        let _ = self.verifier.set(verifier);
    }

    /// The function URL a request is for, by its host.
    pub(crate) fn url_of<B>(&self, request: &Request<B>) -> Option<Arc<FunctionUrl>> {
        let host = request
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri().host())?;
        let id = function_url::id_of_host(host)?;
        Some(
            self.urls
                .load()
                .get(id)
                .cloned()
                .unwrap_or_else(|| Arc::new(unknown(id))),
        )
    }

    pub(crate) async fn function_url<B>(
        &self,
        url: &FunctionUrl,
        request: Request<B>,
        remote: SocketAddr,
    ) -> Response<Body>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if url.function.is_empty() {
            return forbidden();
        }
        let origin = request
            .headers()
            .get(http::header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let preflight = request.method() == Method::OPTIONS
            && request
                .headers()
                .contains_key(http::header::ACCESS_CONTROL_REQUEST_METHOD);
        if let (true, Some(cors), Some(origin)) = (preflight, &url.config.cors, &origin) {
            return preflight_response(cors, origin);
        }
        let route = Route {
            method: "ANY".into(),
            path: "/{proxy+}".into(),
            function: url.function.clone(),
            payload_format: PayloadFormat::V2,
            rate_limit: None,
            cache: None,
        };
        let mut response = if url.iam() {
            let (mut parts, body) = request.into_parts();
            let body = match read_body(body).await {
                Ok(b) => b,
                Err(r) => return r,
            };
            let verified = self.verifier.get().map(|v| v(&parts, &body));
            match verified {
                Some(Ok(key)) => {
                    parts.extensions.insert(Caller(key));
                }
                _ => return forbidden(),
            }
            // A body with no error type to name (a boxed one trips the
            // compiler's Send check of the gateway's future).
            let request = Request::from_parts(parts, http_body_util::Full::new(body));
            self.route_request(&route, BTreeMap::new(), request, remote, Some(url))
                .await
        } else {
            let declared = request
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            if declared.is_some_and(|n| n > MAX_GATEWAY_BODY_BYTES as u64) {
                return error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request Entity Too Large",
                    None,
                );
            }
            self.route_request(&route, BTreeMap::new(), request, remote, Some(url))
                .await
        };
        if let (Some(cors), Some(origin)) = (&url.config.cors, &origin) {
            allow(cors, origin, response.headers_mut());
        }
        response
    }
}

/// A stand-in for an id no URL has: answered 403, as Lambda answers.
fn unknown(id: &str) -> FunctionUrl {
    FunctionUrl {
        function: String::new(),
        qualifier: None,
        config: function_url::UrlConfig {
            url_id: id.to_string(),
            auth_type: "NONE".into(),
            cors: None,
            invoke_mode: "BUFFERED".into(),
            creation_time: String::new(),
            last_modified_time: String::new(),
        },
    }
}

fn forbidden() -> Response<Body> {
    let mut r = Response::new(full_body(r#"{"Message":"Forbidden"}"#));
    *r.status_mut() = StatusCode::FORBIDDEN;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut().insert(
        "x-amzn-errortype",
        HeaderValue::from_static("AccessDeniedException"),
    );
    r
}

fn set(h: &mut http::HeaderMap, name: http::HeaderName, values: &Option<Vec<String>>) {
    if let Some(v) = values
        .as_ref()
        .filter(|v| !v.is_empty())
        .and_then(|v| HeaderValue::from_str(&v.join(",")).ok())
    {
        h.insert(name, v);
    }
}

/// The CORS headers of a response to `origin`, when the URL allows it.
fn allow(cors: &Cors, origin: &str, h: &mut http::HeaderMap) {
    let Some(allowed) = cors.allowed_origin(origin) else {
        return;
    };
    if let Ok(v) = HeaderValue::from_str(&allowed) {
        h.insert(http::header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
    if cors.allow_credentials == Some(true) {
        h.insert(
            http::header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    set(
        h,
        http::header::ACCESS_CONTROL_EXPOSE_HEADERS,
        &cors.expose_headers,
    );
    h.append(http::header::VARY, HeaderValue::from_static("Origin"));
}

/// The answer to a CORS preflight (`OPTIONS` with
/// `Access-Control-Request-Method`), without invoking the function.
fn preflight_response(cors: &Cors, origin: &str) -> Response<Body> {
    let mut r = Response::new(full_body(Bytes::new()));
    let h = r.headers_mut();
    allow(cors, origin, h);
    if h.contains_key(http::header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        set(
            h,
            http::header::ACCESS_CONTROL_ALLOW_METHODS,
            &cors.allow_methods,
        );
        set(
            h,
            http::header::ACCESS_CONTROL_ALLOW_HEADERS,
            &cors.allow_headers,
        );
        if let Some(age) = cors.max_age {
            h.insert(http::header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age));
        }
    }
    r
}

/// A function URL's event: payload format 2.0 with Lambda's route and
/// stage (`$default`), the URL id as API id and domain prefix, and the
/// signer for an `AWS_IAM` URL.
pub(crate) fn as_url_event(event: &mut Value, url: &FunctionUrl, caller: Option<&Caller>) {
    let id = url.config.url_id.as_str();
    event["routeKey"] = json!("$default");
    if let Some(o) = event.as_object_mut() {
        o.remove("pathParameters");
        o.remove("stageVariables");
    }
    let cx = &mut event["requestContext"];
    cx["routeKey"] = json!("$default");
    cx["stage"] = json!("$default");
    cx["apiId"] = json!(id);
    cx["domainPrefix"] = json!(id);
    if let Some(Caller(key)) = caller {
        cx["authorizer"] = json!({"iam": {
            "accessKey": key,
            "accountId": wisp_core::ACCOUNT_ID,
            "callerId": key,
            "cognitoIdentity": null,
            "principalOrgId": null,
            "userArn": format!("arn:aws:iam::{}:user/wisp", wisp_core::ACCOUNT_ID),
            "userId": key,
        }});
    }
}

/// A streamed response read whole before it is answered (a BUFFERED URL).
pub(crate) async fn buffered(response: Response<Body>) -> Response<Body> {
    let (parts, body) = response.into_parts();
    match collect_limited(body, MAX_SYNC_PAYLOAD_BYTES).await {
        Ok(bytes) => Response::from_parts(parts, full_body(bytes)),
        Err(_) => error_response(StatusCode::BAD_GATEWAY, "Internal Server Error", None),
    }
}
