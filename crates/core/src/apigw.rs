//! API Gateway's Lambda proxy integration: HTTP requests in, payload format
//! 1.0 and 2.0 events out, and the function's result back to an HTTP
//! response, so handlers written for API Gateway run unchanged behind the
//! gateway. Follows "Working with AWS Lambda proxy integrations for HTTP
//! APIs" in the API Gateway developer guide. Nothing here does I/O.

use std::collections::{BTreeMap, HashSet};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Map, Value};

use crate::route::Route;

/// The stage name API Gateway gives the one stage an HTTP API has by default.
pub const DEFAULT_STAGE: &str = "$default";

/// One request as the gateway received it, with the route it matched.
#[derive(Debug, Clone, Copy)]
pub struct GatewayRequest<'a> {
    /// The method as sent, e.g. `GET`.
    pub method: &'a str,
    /// The path as sent, still percent-encoded, e.g. `/basket/42`.
    pub raw_path: &'a str,
    /// The query string as sent, without `?`; empty when there is none.
    pub raw_query: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
    /// The client's IP address, without port.
    pub source_ip: &'a str,
    /// The host the client asked for: the `Host` header, or the authority
    /// of an HTTP/2 request (which has no `Host` header).
    pub domain_name: &'a str,
    /// The route that matched; its method may be `ANY`.
    pub route: &'a Route,
    /// The route's parameters as `RouteTable::lookup` found them; passed
    /// through as given.
    pub path_parameters: &'a BTreeMap<String, String>,
    pub request_id: &'a str,
    /// When the request arrived, in milliseconds since the Unix epoch.
    pub time_ms: i64,
    /// Normally [`DEFAULT_STAGE`].
    pub stage: &'a str,
    pub api_id: &'a str,
    pub account_id: &'a str,
}

/// The function's result turned into an HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MappedResponse {
    pub status: u16,
    /// Lowercase names in the function's order; a name may repeat (one
    /// `set-cookie` per cookie). Every pair is a valid `http` name and
    /// value, and framing headers are left out.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// Why a function's result is not a response API Gateway would accept. The
/// gateway answers 502 `{"message":"Internal server error"}`, as API Gateway
/// does, and logs this message for the function's author.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct MappingError(pub String);

/// A payload format 2.0 event (HTTP API), as the developer guide shows it.
pub fn event_v2(req: &GatewayRequest) -> Value {
    let mut headers = Map::new();
    for name in req.headers.keys() {
        // Cookies travel in `cookies` instead, as in API Gateway.
        if name == header::COOKIE {
            continue;
        }
        let values: Vec<String> = req.headers.get_all(name).iter().map(text).collect();
        headers.insert(name.as_str().to_string(), values.join(",").into());
    }
    let mut query = Map::new();
    for (key, value) in query_pairs(req.raw_query) {
        match query.get_mut(&key) {
            Some(Value::String(joined)) => {
                joined.push(',');
                joined.push_str(&value);
            }
            _ => {
                query.insert(key, value.into());
            }
        }
    }
    let cookies: Vec<Value> = req
        .headers
        .get_all(header::COOKIE)
        .iter()
        .flat_map(|v| {
            text(v)
                .split(';')
                .map(|c| c.trim().to_string())
                .filter(|c| !c.is_empty())
                .collect::<Vec<_>>()
        })
        .map(Value::String)
        .collect();
    let route_key = format!("{} {}", req.route.method, req.route.path);

    let mut event = Map::new();
    event.insert("version".into(), "2.0".into());
    event.insert("routeKey".into(), route_key.clone().into());
    event.insert("rawPath".into(), req.raw_path.into());
    event.insert("rawQueryString".into(), req.raw_query.into());
    if !cookies.is_empty() {
        event.insert("cookies".into(), cookies.into());
    }
    event.insert("headers".into(), headers.into());
    if !query.is_empty() {
        event.insert("queryStringParameters".into(), query.into());
    }
    if !req.path_parameters.is_empty() {
        event.insert("pathParameters".into(), json!(req.path_parameters));
    }
    event.insert(
        "requestContext".into(),
        json!({
            "accountId": req.account_id,
            "apiId": req.api_id,
            "domainName": req.domain_name,
            "domainPrefix": domain_prefix(req.domain_name),
            "http": {
                "method": req.method,
                "path": req.raw_path,
                // API Gateway reports HTTP/1.1 whatever the client spoke.
                "protocol": "HTTP/1.1",
                "sourceIp": req.source_ip,
                "userAgent": user_agent(req.headers).unwrap_or_default(),
            },
            "requestId": req.request_id,
            "routeKey": route_key,
            "stage": req.stage,
            "time": clf_time(req.time_ms),
            "timeEpoch": req.time_ms,
        }),
    );
    let (body, base64) = encode_body(req);
    if let Some(body) = body {
        event.insert("body".into(), body.into());
    }
    event.insert("isBase64Encoded".into(), base64.into());
    Value::Object(event)
}

/// A payload format 1.0 event (the REST API proxy shape, as an HTTP API
/// sends it), as the developer guide shows it.
pub fn event_v1(req: &GatewayRequest) -> Value {
    let mut headers = Map::new();
    let mut multi_headers = Map::new();
    for name in req.headers.keys() {
        let values: Vec<String> = req.headers.get_all(name).iter().map(text).collect();
        if let Some(last) = values.last() {
            headers.insert(name.as_str().to_string(), last.clone().into());
        }
        multi_headers.insert(name.as_str().to_string(), values.into());
    }
    let mut query = Map::new();
    let mut multi_query: Map<String, Value> = Map::new();
    for (key, value) in query_pairs(req.raw_query) {
        query.insert(key.clone(), value.clone().into());
        match multi_query.get_mut(&key) {
            Some(Value::Array(values)) => values.push(value.into()),
            _ => {
                multi_query.insert(key, json!([value]));
            }
        }
    }
    let (body, base64) = encode_body(req);
    json!({
        "version": "1.0",
        "resource": req.route.path,
        "path": req.raw_path,
        "httpMethod": req.method,
        "headers": object_or_null(headers),
        "multiValueHeaders": object_or_null(multi_headers),
        "queryStringParameters": object_or_null(query),
        "multiValueQueryStringParameters": object_or_null(multi_query),
        "requestContext": {
            "accountId": req.account_id,
            "apiId": req.api_id,
            "domainName": req.domain_name,
            "domainPrefix": domain_prefix(req.domain_name),
            // wisp has one id per request; API Gateway has two.
            "extendedRequestId": req.request_id,
            "httpMethod": req.method,
            "identity": {
                "accessKey": null,
                "accountId": null,
                "caller": null,
                "cognitoAuthenticationProvider": null,
                "cognitoAuthenticationType": null,
                "cognitoIdentityId": null,
                "cognitoIdentityPoolId": null,
                "principalOrgId": null,
                "sourceIp": req.source_ip,
                "user": null,
                "userAgent": user_agent(req.headers),
                "userArn": null,
            },
            "path": req.raw_path,
            "protocol": "HTTP/1.1",
            "requestId": req.request_id,
            "requestTime": clf_time(req.time_ms),
            "requestTimeEpoch": req.time_ms,
            "resourceId": null,
            "resourcePath": req.route.path,
            "stage": req.stage,
        },
        "pathParameters": if req.path_parameters.is_empty() { Value::Null } else { json!(req.path_parameters) },
        "stageVariables": null,
        "body": body,
        "isBase64Encoded": base64,
    })
}

/// Maps a payload format 2.0 result. An object with a `statusCode` key is a
/// response (`statusCode`, `headers`, `cookies`, `body`, `isBase64Encoded`;
/// `multiValueHeaders` is ignored, as API Gateway ignores it in 2.0). Any
/// other JSON is the body of a 200 `application/json` response: a JSON
/// string gives its contents, anything else its JSON text as returned. A
/// response with `statusCode` gets no `content-type` the function did not set.
pub fn response_v2(result: &[u8]) -> Result<MappedResponse, MappingError> {
    let value: Value = serde_json::from_slice(result).map_err(|e| {
        MappingError(format!(
            "the function's result is not JSON ({e}); return a JSON value, or an object with `statusCode`, `headers`, `cookies` and `body`"
        ))
    })?;
    let inferred = |body: Bytes| MappedResponse {
        status: 200,
        headers: vec![("content-type".into(), "application/json".into())],
        body,
    };
    match value {
        Value::Object(object) if object.contains_key("statusCode") => {
            let mut headers = Vec::new();
            push_headers(&mut headers, &object, "headers", false)?;
            match object.get("cookies") {
                None | Some(Value::Null) => {}
                Some(Value::Array(cookies)) => {
                    for cookie in cookies {
                        if !cookie.is_string() {
                            return Err(MappingError(format!(
                                "`cookies` holds {}; each cookie must be a string like \"id=1; Path=/\"",
                                kind(cookie)
                            )));
                        }
                        push_header(&mut headers, "set-cookie", cookie, "cookies")?;
                    }
                }
                Some(other) => {
                    return Err(MappingError(format!(
                        "`cookies` is {}; it must be an array of strings",
                        kind(other)
                    )))
                }
            }
            structured(&object, headers)
        }
        // The developer guide's own example: "Hello from Lambda!" becomes
        // the body `Hello from Lambda!`, without the JSON quotes.
        Value::String(text) => Ok(inferred(Bytes::from(text))),
        _ => Ok(inferred(Bytes::copy_from_slice(result))),
    }
}

/// Maps a payload format 1.0 result: an object with `statusCode`, and
/// optionally `headers`, `multiValueHeaders` (merged, a name and value given
/// in both appearing once), `body` and `isBase64Encoded`. Unknown keys are
/// ignored. Anything else is malformed.
pub fn response_v1(result: &[u8]) -> Result<MappedResponse, MappingError> {
    const SHAPE: &str = r#"{"statusCode": 200, "headers": {...}, "body": "..."}"#;
    let value: Value = serde_json::from_slice(result).map_err(|e| {
        MappingError(format!(
            "the function's result is not JSON ({e}); with payload format 1.0 return an object like {SHAPE}"
        ))
    })?;
    let Value::Object(object) = value else {
        return Err(MappingError(format!(
            "the function's result is {}; with payload format 1.0 return an object like {SHAPE}",
            kind(&value)
        )));
    };
    if !object.contains_key("statusCode") {
        return Err(MappingError(format!(
            "the function's result has no `statusCode`; with payload format 1.0 return an object like {SHAPE}"
        )));
    }
    let mut headers = Vec::new();
    push_headers(&mut headers, &object, "multiValueHeaders", true)?;
    let from_multi: HashSet<(String, String)> = headers.iter().cloned().collect();
    let mut single = Vec::new();
    push_headers(&mut single, &object, "headers", false)?;
    headers.extend(single.into_iter().filter(|pair| !from_multi.contains(pair)));
    structured(&object, headers)
}

/// The parts both formats share once the headers are gathered.
fn structured(
    object: &Map<String, Value>,
    headers: Vec<(String, String)>,
) -> Result<MappedResponse, MappingError> {
    let status = match object.get("statusCode") {
        Some(Value::Number(n)) => n.as_u64().filter(|s| (100..=599).contains(s)),
        _ => None,
    };
    let Some(status) = status else {
        return Err(MappingError(format!(
            "`statusCode` is {}; it must be an integer from 100 to 599",
            object.get("statusCode").map_or("missing".into(), kind)
        )));
    };
    let base64 = match object.get("isBase64Encoded") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(MappingError(format!(
                "`isBase64Encoded` is {}; it must be true or false",
                kind(other)
            )))
        }
    };
    let body = match object.get("body") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(MappingError(format!(
            "`body` is {}; it must be a string, so serialize it first (JSON.stringify, json.dumps)",
            kind(other)
        )))
        }
    };
    let body = if base64 {
        Bytes::from(LENIENT_BASE64.decode(body).map_err(|e| {
            MappingError(format!(
                "`isBase64Encoded` is true but `body` is not valid base64: {e}"
            ))
        })?)
    } else {
        Bytes::copy_from_slice(body.as_bytes())
    };
    Ok(MappedResponse {
        status: status as u16,
        headers,
        body,
    })
}

/// Padding optional, as API Gateway's decoder accepts.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Headers the gateway sets itself: the body is sent whole, so a function
/// cannot choose its framing.
const FRAMING_HEADERS: &[&str] = &[
    "connection",
    "content-length",
    "keep-alive",
    "transfer-encoding",
    "upgrade",
];

/// Appends the headers of `object[field]`: values are strings (numbers and
/// booleans are written out), or arrays of them when `multi`.
fn push_headers(
    out: &mut Vec<(String, String)>,
    object: &Map<String, Value>,
    field: &str,
    multi: bool,
) -> Result<(), MappingError> {
    let fields = match object.get(field) {
        None | Some(Value::Null) => return Ok(()),
        Some(Value::Object(fields)) => fields,
        Some(other) => {
            return Err(MappingError(format!(
                "`{field}` is {}; it must be an object of header names to {}",
                kind(other),
                if multi {
                    "arrays of strings"
                } else {
                    "strings"
                }
            )))
        }
    };
    for (name, value) in fields {
        match value {
            Value::Array(values) if multi => {
                for value in values {
                    push_header(out, name, value, field)?;
                }
            }
            _ => push_header(out, name, value, field)?,
        }
    }
    Ok(())
}

fn push_header(
    out: &mut Vec<(String, String)>,
    name: &str,
    value: &Value,
    field: &str,
) -> Result<(), MappingError> {
    let value = match value {
        Value::Null => return Ok(()),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => {
            let hint = match field {
                "headers" if name.eq_ignore_ascii_case("set-cookie") => {
                    "; return cookies in `cookies` (2.0) or `multiValueHeaders` (1.0)"
                }
                "headers" => "; join several values with commas",
                _ => "",
            };
            return Err(MappingError(format!(
                "header {} in `{field}` is {}; it must be a string{hint}",
                shown(name),
                kind(other)
            )));
        }
    };
    let Ok(parsed) = HeaderName::from_bytes(name.as_bytes()) else {
        return Err(MappingError(format!(
            "{} in `{field}` is not a valid header name; use letters, digits and `-`",
            shown(name)
        )));
    };
    if HeaderValue::from_str(&value).is_err() {
        return Err(MappingError(format!(
            "header {} in `{field}` has a control character (such as a line break) in its value {}",
            shown(name),
            shown(&value)
        )));
    }
    if !FRAMING_HEADERS.contains(&parsed.as_str()) {
        out.push((parsed.as_str().to_string(), value));
    }
    Ok(())
}

/// A name or value for an error message: quoted, escaped, and cut short.
fn shown(s: &str) -> String {
    crate::text::shown(s, 60)
}

/// What a JSON value is, for error messages.
fn kind(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {}", shown(s)),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// A header value as text; bytes that are not UTF-8 become U+FFFD.
fn text(value: &HeaderValue) -> String {
    String::from_utf8_lossy(value.as_bytes()).into_owned()
}

fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers.get(header::USER_AGENT).map(text)
}

fn object_or_null(map: Map<String, Value>) -> Value {
    if map.is_empty() {
        Value::Null
    } else {
        Value::Object(map)
    }
}

/// The first label of the host, without port: `id` of `id.example.com:443`.
fn domain_prefix(host: &str) -> &str {
    if host.starts_with('[') {
        return host.split_inclusive(']').next().unwrap_or(host);
    }
    let name = host.split(':').next().unwrap_or(host);
    name.split('.').next().unwrap_or(name)
}

/// Decoded `key=value` pairs in order. `+` is a space and `%XX` an escape,
/// as API Gateway reads them; a key without `=` has the value "".
fn query_pairs(raw: &str) -> Vec<(String, String)> {
    fn decode(s: &str) -> String {
        let spaced = s.replace('+', " ");
        percent_encoding::percent_decode_str(&spaced)
            .decode_utf8_lossy()
            .into_owned()
    }
    raw.split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(key), decode(value))
        })
        .collect()
}

/// The request time in Common Log Format: `04/Mar/2020:19:03:58 +0000`.
fn clf_time(ms: i64) -> String {
    let format = time::macros::format_description!(
        "[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000"
    );
    time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000))
        .ok()
        .and_then(|t| t.format(&format).ok())
        .unwrap_or_default()
}

/// The body as the event carries it, and whether it is base64. Like an HTTP
/// API: text when the content type is textual or absent and the bytes are
/// UTF-8, base64 otherwise; no body at all when empty.
fn encode_body(req: &GatewayRequest) -> (Option<String>, bool) {
    if req.body.is_empty() {
        return (None, false);
    }
    let textual = match req.headers.get(header::CONTENT_TYPE) {
        None => true,
        Some(value) => value
            .to_str()
            .is_ok_and(|ct| ct.trim().is_empty() || is_textual(ct)),
    };
    match std::str::from_utf8(req.body) {
        Ok(text) if textual => (Some(text.to_string()), false),
        _ => (Some(STANDARD.encode(req.body)), true),
    }
}

fn is_textual(content_type: &str) -> bool {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind == "text"
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/xml"
                | "application/javascript"
                | "application/x-www-form-urlencoded"
        )
        || (kind == "application" && subtype.ends_with("+json"))
        || subtype.ends_with("+xml")
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::expect;
    use proptest::prelude::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    fn route(method: &str, path: &str) -> Route {
        Route {
            method: method.into(),
            path: path.into(),
            function: "basket".into(),
            payload_format: Default::default(),
            rate_limit: None,
            cache: None,
        }
    }

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// A request with everything but the parts a test varies.
    fn request<'a>(
        headers: &'a HeaderMap,
        body: &'a [u8],
        route: &'a Route,
        path_parameters: &'a BTreeMap<String, String>,
    ) -> GatewayRequest<'a> {
        GatewayRequest {
            method: "GET",
            raw_path: "/basket/42",
            raw_query: "a=1&a=2&b=x%20y",
            headers,
            body,
            source_ip: "203.0.113.7",
            domain_name: "shop.example.com:8080",
            route,
            path_parameters,
            request_id: "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            time_ms: 1_583_348_638_390,
            stage: DEFAULT_STAGE,
            api_id: "wisp",
            account_id: "000000000000",
        }
    }

    fn basket_headers() -> HeaderMap {
        headers(&[
            ("host", "shop.example.com:8080"),
            ("user-agent", "curl/8.5.0"),
            ("accept", "application/json"),
            ("x-tag", "one"),
            ("x-tag", "two"),
            ("cookie", "session=abc123; theme=dark"),
            ("content-type", "application/json"),
        ])
    }

    #[test]
    fn v2_event_for_a_realistic_request() {
        let (h, r, p) = (
            basket_headers(),
            route("GET", "/basket/{id}"),
            params(&[("id", "42")]),
        );
        let event = event_v2(&request(&h, br#"{"item":"apple"}"#, &r, &p));
        expect![[r#"
            {
              "body": "{\"item\":\"apple\"}",
              "cookies": [
                "session=abc123",
                "theme=dark"
              ],
              "headers": {
                "accept": "application/json",
                "content-type": "application/json",
                "host": "shop.example.com:8080",
                "user-agent": "curl/8.5.0",
                "x-tag": "one,two"
              },
              "isBase64Encoded": false,
              "pathParameters": {
                "id": "42"
              },
              "queryStringParameters": {
                "a": "1,2",
                "b": "x y"
              },
              "rawPath": "/basket/42",
              "rawQueryString": "a=1&a=2&b=x%20y",
              "requestContext": {
                "accountId": "000000000000",
                "apiId": "wisp",
                "domainName": "shop.example.com:8080",
                "domainPrefix": "shop",
                "http": {
                  "method": "GET",
                  "path": "/basket/42",
                  "protocol": "HTTP/1.1",
                  "sourceIp": "203.0.113.7",
                  "userAgent": "curl/8.5.0"
                },
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "routeKey": "GET /basket/{id}",
                "stage": "$default",
                "time": "04/Mar/2020:19:03:58 +0000",
                "timeEpoch": 1583348638390
              },
              "routeKey": "GET /basket/{id}",
              "version": "2.0"
            }"#]]
        .assert_eq(&serde_json::to_string_pretty(&event).unwrap());
    }

    #[test]
    fn v1_event_for_a_realistic_request() {
        let (h, r, p) = (
            basket_headers(),
            route("GET", "/basket/{id}"),
            params(&[("id", "42")]),
        );
        let event = event_v1(&request(&h, br#"{"item":"apple"}"#, &r, &p));
        expect![[r#"
            {
              "body": "{\"item\":\"apple\"}",
              "headers": {
                "accept": "application/json",
                "content-type": "application/json",
                "cookie": "session=abc123; theme=dark",
                "host": "shop.example.com:8080",
                "user-agent": "curl/8.5.0",
                "x-tag": "two"
              },
              "httpMethod": "GET",
              "isBase64Encoded": false,
              "multiValueHeaders": {
                "accept": [
                  "application/json"
                ],
                "content-type": [
                  "application/json"
                ],
                "cookie": [
                  "session=abc123; theme=dark"
                ],
                "host": [
                  "shop.example.com:8080"
                ],
                "user-agent": [
                  "curl/8.5.0"
                ],
                "x-tag": [
                  "one",
                  "two"
                ]
              },
              "multiValueQueryStringParameters": {
                "a": [
                  "1",
                  "2"
                ],
                "b": [
                  "x y"
                ]
              },
              "path": "/basket/42",
              "pathParameters": {
                "id": "42"
              },
              "queryStringParameters": {
                "a": "2",
                "b": "x y"
              },
              "requestContext": {
                "accountId": "000000000000",
                "apiId": "wisp",
                "domainName": "shop.example.com:8080",
                "domainPrefix": "shop",
                "extendedRequestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "httpMethod": "GET",
                "identity": {
                  "accessKey": null,
                  "accountId": null,
                  "caller": null,
                  "cognitoAuthenticationProvider": null,
                  "cognitoAuthenticationType": null,
                  "cognitoIdentityId": null,
                  "cognitoIdentityPoolId": null,
                  "principalOrgId": null,
                  "sourceIp": "203.0.113.7",
                  "user": null,
                  "userAgent": "curl/8.5.0",
                  "userArn": null
                },
                "path": "/basket/42",
                "protocol": "HTTP/1.1",
                "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
                "requestTime": "04/Mar/2020:19:03:58 +0000",
                "requestTimeEpoch": 1583348638390,
                "resourceId": null,
                "resourcePath": "/basket/{id}",
                "stage": "$default"
              },
              "resource": "/basket/{id}",
              "stageVariables": null,
              "version": "1.0"
            }"#]]
        .assert_eq(&serde_json::to_string_pretty(&event).unwrap());
    }

    /// The 2.0 example of the developer guide, rebuilt from a request, with
    /// each difference spelled out.
    #[test]
    fn v2_event_matches_the_documented_example() {
        let h = headers(&[
            ("header1", "value1"),
            ("header2", "value1"),
            ("header2", "value2"),
            ("cookie", "cookie1; cookie2"),
            ("user-agent", "agent"),
        ]);
        let r = route("ANY", "/my/path");
        let p = params(&[("parameter1", "value1")]);
        let req = GatewayRequest {
            method: "POST",
            raw_path: "/my/path",
            raw_query: "parameter1=value1&parameter1=value2&parameter2=value",
            source_ip: "IP",
            domain_name: "id.execute-api.us-east-1.amazonaws.com",
            request_id: "id",
            time_ms: 1583348638390,
            api_id: "api-id",
            account_id: "123456789012",
            ..request(&h, b"Hello from Lambda", &r, &p)
        };
        // Header names lowercased, as the guide says all header names are.
        let mut documented = json!({
          "version": "2.0",
          "routeKey": "$default",
          "rawPath": "/my/path",
          "rawQueryString": "parameter1=value1&parameter1=value2&parameter2=value",
          "cookies": ["cookie1", "cookie2"],
          "headers": { "header1": "value1", "header2": "value1,value2" },
          "queryStringParameters": { "parameter1": "value1,value2", "parameter2": "value" },
          "requestContext": {
            "accountId": "123456789012",
            "apiId": "api-id",
            "authentication": { "clientCert": { "clientCertPem": "CERT_CONTENT" } },
            "authorizer": { "jwt": { "claims": { "claim1": "value1" }, "scopes": ["scope1"] } },
            "domainName": "id.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "id",
            "http": {
              "method": "POST",
              "path": "/my/path",
              "protocol": "HTTP/1.1",
              "sourceIp": "IP",
              "userAgent": "agent"
            },
            "requestId": "id",
            "routeKey": "$default",
            "stage": "$default",
            "time": "12/Mar/2020:19:03:58 +0000",
            "timeEpoch": 1583348638390_i64
          },
          "body": "Hello from Lambda",
          "pathParameters": { "parameter1": "value1" },
          "isBase64Encoded": false,
          "stageVariables": { "stageVariable1": "value1" }
        });
        // wisp has no mutual TLS, authorizers or stage variables.
        let context = documented["requestContext"].as_object_mut().unwrap();
        context.remove("authentication");
        context.remove("authorizer");
        documented.as_object_mut().unwrap().remove("stageVariables");
        // Every route is a method and path; wisp has no `$default` route.
        documented["routeKey"] = "ANY /my/path".into();
        documented["requestContext"]["routeKey"] = "ANY /my/path".into();
        // The guide's `time` is eight days off its own `timeEpoch`.
        documented["requestContext"]["time"] = "04/Mar/2020:19:03:58 +0000".into();
        // The guide's `userAgent` comes from a header its `headers` leaves out.
        documented["headers"]["user-agent"] = "agent".into();
        assert_eq!(event_v2(&req), documented);
    }

    /// The 1.0 example of the developer guide, likewise.
    #[test]
    fn v1_event_matches_the_documented_example() {
        let h = headers(&[
            ("header1", "value1"),
            ("header2", "value1"),
            ("header2", "value2"),
            ("user-agent", "user-agent"),
        ]);
        let r = route("GET", "/my/path");
        let p = BTreeMap::new();
        let req = GatewayRequest {
            raw_path: "/my/path",
            raw_query: "parameter1=value1&parameter1=value2&parameter2=value",
            source_ip: "IP",
            domain_name: "id.execute-api.us-east-1.amazonaws.com",
            request_id: "id=",
            time_ms: 1583349317135,
            api_id: "id",
            account_id: "123456789012",
            ..request(&h, b"Hello from Lambda!", &r, &p)
        };
        let mut documented = json!({
          "version": "1.0",
          "resource": "/my/path",
          "path": "/my/path",
          "httpMethod": "GET",
          "headers": { "header1": "value1", "header2": "value2" },
          "multiValueHeaders": { "header1": ["value1"], "header2": ["value1", "value2"] },
          "queryStringParameters": { "parameter1": "value1", "parameter2": "value" },
          "multiValueQueryStringParameters": {
            "parameter1": ["value1", "value2"],
            "parameter2": ["value"]
          },
          "requestContext": {
            "accountId": "123456789012",
            "apiId": "id",
            "authorizer": { "claims": null, "scopes": null },
            "domainName": "id.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "id",
            "extendedRequestId": "request-id",
            "httpMethod": "GET",
            "identity": {
              "accessKey": null,
              "accountId": null,
              "caller": null,
              "cognitoAuthenticationProvider": null,
              "cognitoAuthenticationType": null,
              "cognitoIdentityId": null,
              "cognitoIdentityPoolId": null,
              "principalOrgId": null,
              "sourceIp": "IP",
              "user": null,
              "userAgent": "user-agent",
              "userArn": null,
              "clientCert": { "clientCertPem": "CERT_CONTENT" }
            },
            "path": "/my/path",
            "protocol": "HTTP/1.1",
            "requestId": "id=",
            "requestTime": "04/Mar/2020:19:15:17 +0000",
            "requestTimeEpoch": 1583349317135_i64,
            "resourceId": null,
            "resourcePath": "/my/path",
            "stage": "$default"
          },
          "pathParameters": null,
          "stageVariables": null,
          "body": "Hello from Lambda!",
          "isBase64Encoded": false
        });
        // wisp has no authorizers or mutual TLS.
        let context = documented["requestContext"].as_object_mut().unwrap();
        context.remove("authorizer");
        context["identity"]
            .as_object_mut()
            .unwrap()
            .remove("clientCert");
        // wisp has one id per request.
        documented["requestContext"]["extendedRequestId"] = "id=".into();
        // The guide keeps the first of repeated query values here (and the
        // last of repeated headers); a REST API keeps the last of both, and
        // so does wisp.
        documented["queryStringParameters"]["parameter1"] = "value2".into();
        // The guide's `userAgent` comes from a header its `headers` leaves out.
        documented["headers"]["user-agent"] = "user-agent".into();
        documented["multiValueHeaders"]["user-agent"] = json!(["user-agent"]);
        assert_eq!(event_v1(&req), documented);
    }

    #[test]
    fn binary_bodies_are_base64_like_an_http_api() {
        let cases: &[(Option<&str>, &[u8])] = &[
            (Some("application/json"), br#"{"a":1}"#),
            (Some("Text/HTML; charset=utf-8"), b"<p>hi</p>"),
            (Some("application/vnd.api+json"), b"{}"),
            (Some("image/svg+xml"), b"<svg/>"),
            (Some("application/x-www-form-urlencoded"), b"a=1&b=2"),
            (None, b"no content type"),
            (Some("image/png"), b"\x89PNG\r\n\x1a\n"),
            (Some("application/octet-stream"), b"plain ascii"),
            (Some("text/plain"), b"caf\xe9"),
            (None, b"\xff\xfe"),
            (Some("application/json"), b""),
        ];
        let r = route("POST", "/upload");
        let p = BTreeMap::new();
        let mut table = String::new();
        for (content_type, body) in cases {
            let h = match content_type {
                Some(ct) => headers(&[("content-type", ct)]),
                None => HeaderMap::new(),
            };
            let req = request(&h, body, &r, &p);
            let (v2, v1) = (event_v2(&req), event_v1(&req));
            assert_eq!(v2.get("body").unwrap_or(&Value::Null), &v1["body"]);
            assert_eq!(v2["isBase64Encoded"], v1["isBase64Encoded"]);
            table += &format!(
                "{:<36} {:<5} {}\n",
                content_type.unwrap_or("(none)"),
                v1["isBase64Encoded"].to_string(),
                v1["body"]
            );
        }
        expect![[r#"
            application/json                     false "{\"a\":1}"
            Text/HTML; charset=utf-8             false "<p>hi</p>"
            application/vnd.api+json             false "{}"
            image/svg+xml                        false "<svg/>"
            application/x-www-form-urlencoded    false "a=1&b=2"
            (none)                               false "no content type"
            image/png                            true  "iVBORw0KGgo="
            application/octet-stream             true  "cGxhaW4gYXNjaWk="
            text/plain                           true  "Y2Fm6Q=="
            (none)                               true  "//4="
            application/json                     false null
        "#]]
        .assert_eq(&table);
    }

    #[test]
    fn absent_parts_are_left_out_of_v2_and_null_in_v1() {
        let (h, r, p) = (HeaderMap::new(), route("GET", "/"), BTreeMap::new());
        let req = GatewayRequest {
            raw_path: "/",
            raw_query: "",
            ..request(&h, b"", &r, &p)
        };
        let v2 = event_v2(&req);
        for key in [
            "cookies",
            "queryStringParameters",
            "pathParameters",
            "body",
            "stageVariables",
        ] {
            assert!(v2.get(key).is_none(), "{key} should be absent: {v2}");
        }
        assert_eq!(v2["headers"], json!({}));
        assert_eq!(v2["requestContext"]["http"]["userAgent"], "");
        let v1 = event_v1(&req);
        for key in [
            "headers",
            "multiValueHeaders",
            "queryStringParameters",
            "multiValueQueryStringParameters",
            "pathParameters",
            "stageVariables",
            "body",
        ] {
            assert_eq!(v1[key], Value::Null, "{key}");
        }
        assert_eq!(v1["requestContext"]["identity"]["userAgent"], Value::Null);
    }

    #[test]
    fn query_strings_decode_like_api_gateway() {
        let pairs = query_pairs("a=b+c&%41=%2B&flag&&x=%zz&e=");
        let expected = [
            ("a", "b c"),
            ("A", "+"),
            ("flag", ""),
            ("x", "%zz"),
            ("e", ""),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(pairs, expected);
        assert_eq!(domain_prefix("id.example.com:443"), "id");
        assert_eq!(domain_prefix("localhost:8080"), "localhost");
        assert_eq!(domain_prefix("[::1]:8080"), "[::1]");
        assert_eq!(clf_time(0), "01/Jan/1970:00:00:00 +0000");
        assert_eq!(clf_time(-1), "31/Dec/1969:23:59:59 +0000");
        assert_eq!(clf_time(i64::MAX), "");
    }

    fn mapped(result: Result<MappedResponse, MappingError>) -> String {
        match result {
            Ok(r) => {
                let mut out = format!("{}\n", r.status);
                for (name, value) in &r.headers {
                    out += &format!("{name}: {value}\n");
                }
                out + &String::from_utf8_lossy(&r.body)
            }
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn v2_response_with_status_headers_cookies_and_base64() {
        let result = json!({
            "statusCode": 201,
            "headers": { "Content-Type": "text/plain", "X-Count": 3, "Content-Length": "999" },
            "multiValueHeaders": { "x-ignored": ["in 2.0"] },
            "cookies": ["a=1; Path=/", "b=2; HttpOnly"],
            "body": "aGVsbG8",
            "isBase64Encoded": true
        });
        expect![[r#"
            201
            content-type: text/plain
            x-count: 3
            set-cookie: a=1; Path=/
            set-cookie: b=2; HttpOnly
            hello"#]]
        .assert_eq(&mapped(response_v2(result.to_string().as_bytes())));
        let plain = br#"{"statusCode": 404}"#;
        expect![[r#"
            404
        "#]]
        .assert_eq(&mapped(response_v2(plain)));
    }

    #[test]
    fn v2_response_is_inferred_without_status_code() {
        let results: &[&[u8]] = &[
            br#""Hello from Lambda!""#,
            br#"{ "message": "Hello from Lambda!" }"#,
            b"[1, 2]",
            b"42",
            b"null",
            br#"{"statuscode": 200, "body": "not a response: the key is case-sensitive"}"#,
        ];
        let out: Vec<String> = results.iter().map(|r| mapped(response_v2(r))).collect();
        expect![[r#"
            200
            content-type: application/json
            Hello from Lambda!
            ---
            200
            content-type: application/json
            { "message": "Hello from Lambda!" }
            ---
            200
            content-type: application/json
            [1, 2]
            ---
            200
            content-type: application/json
            42
            ---
            200
            content-type: application/json
            null
            ---
            200
            content-type: application/json
            {"statuscode": 200, "body": "not a response: the key is case-sensitive"}"#]]
        .assert_eq(&out.join("\n---\n"));
    }

    #[test]
    fn v1_response_merges_multi_value_headers() {
        let result = json!({
            "statusCode": 302,
            "headers": { "Location": "/next", "Set-Cookie": "a=1" },
            "multiValueHeaders": { "set-cookie": ["a=1", "b=2"], "Vary": ["Accept", "Origin"] },
            "body": null,
            "isBase64Encoded": false,
            "unknownKey": "ignored"
        });
        expect![[r#"
            302
            vary: Accept
            vary: Origin
            set-cookie: a=1
            set-cookie: b=2
            location: /next
        "#]]
        .assert_eq(&mapped(response_v1(result.to_string().as_bytes())));
        let binary = br#"{"statusCode": 200, "body": "/w==", "isBase64Encoded": true}"#;
        assert_eq!(
            response_v1(binary).unwrap().body,
            Bytes::from_static(b"\xff")
        );
    }

    #[test]
    fn malformed_responses_say_what_is_wrong() {
        let v1_cases: &[&[u8]] = &[
            b"",
            b"not json",
            br#""just a string""#,
            br#"{"body": "no status"}"#,
            br#"{"statusCode": "200"}"#,
            br#"{"statusCode": 700}"#,
            br#"{"statusCode": 200.5}"#,
            br#"{"statusCode": 200, "body": {"a": 1}}"#,
            br#"{"statusCode": 200, "body": "%%%", "isBase64Encoded": true}"#,
            br#"{"statusCode": 200, "isBase64Encoded": "yes"}"#,
            br#"{"statusCode": 200, "headers": {"x-a": "one\ntwo"}}"#,
            br#"{"statusCode": 200, "headers": {"bad name": "v"}}"#,
            br#"{"statusCode": 200, "headers": ["x"]}"#,
            br#"{"statusCode": 200, "multiValueHeaders": {"x": [{"a": 1}]}}"#,
        ];
        let v2_cases: &[&[u8]] = &[
            b"{",
            br#"{"statusCode": null}"#,
            br#"{"statusCode": 200, "headers": {"set-cookie": ["a", "b"]}}"#,
            br#"{"statusCode": 200, "cookies": "a=1"}"#,
            br#"{"statusCode": 200, "cookies": [1]}"#,
        ];
        let mut out: Vec<String> = v1_cases.iter().map(|r| mapped(response_v1(r))).collect();
        out.extend(v2_cases.iter().map(|r| mapped(response_v2(r))));
        expect![[r#"
            error: the function's result is not JSON (EOF while parsing a value at line 1 column 0); with payload format 1.0 return an object like {"statusCode": 200, "headers": {...}, "body": "..."}
            error: the function's result is not JSON (expected ident at line 1 column 2); with payload format 1.0 return an object like {"statusCode": 200, "headers": {...}, "body": "..."}
            error: the function's result is the string "just a string"; with payload format 1.0 return an object like {"statusCode": 200, "headers": {...}, "body": "..."}
            error: the function's result has no `statusCode`; with payload format 1.0 return an object like {"statusCode": 200, "headers": {...}, "body": "..."}
            error: `statusCode` is the string "200"; it must be an integer from 100 to 599
            error: `statusCode` is the number 700; it must be an integer from 100 to 599
            error: `statusCode` is the number 200.5; it must be an integer from 100 to 599
            error: `body` is an object; it must be a string, so serialize it first (JSON.stringify, json.dumps)
            error: `isBase64Encoded` is true but `body` is not valid base64: Invalid symbol 37, offset 0.
            error: `isBase64Encoded` is the string "yes"; it must be true or false
            error: header "x-a" in `headers` has a control character (such as a line break) in its value "one\ntwo"
            error: "bad name" in `headers` is not a valid header name; use letters, digits and `-`
            error: `headers` is an array; it must be an object of header names to strings
            error: header "x" in `multiValueHeaders` is an object; it must be a string
            error: the function's result is not JSON (EOF while parsing an object at line 1 column 1); return a JSON value, or an object with `statusCode`, `headers`, `cookies` and `body`
            error: `statusCode` is null; it must be an integer from 100 to 599
            error: header "set-cookie" in `headers` is an array; it must be a string; return cookies in `cookies` (2.0) or `multiValueHeaders` (1.0)
            error: `cookies` is the string "a=1"; it must be an array of strings
            error: `cookies` holds the number 1; each cookie must be a string like "id=1; Path=/""#]].assert_eq(&out.join("\n"));
    }

    fn status_value() -> impl Strategy<Value = Value> {
        prop_oneof![
            (100u64..600).prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            Just(Value::Null),
            "[0-9]{0,4}".prop_map(Value::from),
        ]
    }

    proptest! {
        #[test]
        fn responses_never_panic_on_any_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = response_v2(&bytes);
            let _ = response_v1(&bytes);
        }

        #[test]
        fn responses_are_valid_http_or_an_error(
            status in status_value(),
            name in "[A-Za-z\\-: \n]{0,8}",
            value in "\\PC{0,8}|[\\x00-\\x7f]{0,8}",
            body in "[A-Za-z0-9+/=\"\\\\]{0,16}",
            base64 in any::<bool>(),
        ) {
            let result = json!({
                "statusCode": status,
                "headers": { name.clone(): value.clone() },
                "multiValueHeaders": { name.clone(): [value.clone(), 7] },
                "cookies": [value],
                "body": body,
                "isBase64Encoded": base64,
            });
            let bytes = result.to_string().into_bytes();
            for mapped in [response_v2(&bytes), response_v1(&bytes)].into_iter().flatten() {
                prop_assert!((100..=599).contains(&mapped.status));
                for (name, value) in &mapped.headers {
                    prop_assert!(HeaderName::from_bytes(name.as_bytes()).is_ok());
                    prop_assert!(HeaderValue::from_str(value).is_ok());
                    prop_assert_eq!(name.to_ascii_lowercase(), name.clone());
                }
            }
        }

        #[test]
        fn events_never_panic_and_carry_the_body_intact(
            header_values in proptest::collection::vec(
                (
                    prop::sample::select(vec!["cookie", "content-type", "user-agent", "x-any", "host"]),
                    proptest::collection::vec(any::<u8>(), 0..24),
                ),
                0..8,
            ),
            raw_query in "[a-z0-9=&%+]{0,30}|.{0,30}",
            raw_path in ".{0,20}",
            body in proptest::collection::vec(any::<u8>(), 0..64),
            time_ms in any::<i64>(),
            path_parameters in proptest::collection::btree_map(".{0,5}", ".{0,5}", 0..3),
            domain_name in ".{0,20}",
        ) {
            let mut h = HeaderMap::new();
            for (name, bytes) in header_values {
                if let Ok(value) = HeaderValue::from_bytes(&bytes) {
                    h.append(HeaderName::from_static(name), value);
                }
            }
            let r = route("ANY", "/{proxy+}");
            let req = GatewayRequest {
                raw_query: &raw_query,
                raw_path: &raw_path,
                time_ms,
                domain_name: &domain_name,
                ..request(&h, &body, &r, &path_parameters)
            };
            for event in [event_v2(&req), event_v1(&req)] {
                let sent = match event.get("body") {
                    Some(Value::String(text)) if event["isBase64Encoded"] == true => {
                        STANDARD.decode(text).unwrap()
                    }
                    Some(Value::String(text)) => text.clone().into_bytes(),
                    _ => Vec::new(),
                };
                prop_assert_eq!(&sent, &body);
                prop_assert!(serde_json::to_vec(&event).is_ok());
            }
        }
    }
}
