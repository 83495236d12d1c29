//! API destinations: HTTP endpoints as targets, each with a connection
//! that holds how to authorize (an API key header, basic auth, or OAuth
//! client credentials, whose token is fetched and kept until it expires),
//! and a rate limit. A delivery is one request: the target's input as the
//! body, its HttpParameters' path values, headers and query added to the
//! connection's. 2xx is delivered; 401, 407, 409, 429 and 5xx (and no
//! answer) are tried again; any other answer is a failure at once.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::deliver::{Delivery, Failure};
use crate::engine::Events;
use crate::EventsError;

/// A request to make with a connection's authorization.
#[derive(Debug, Clone)]
pub struct HttpCall {
    pub connection_arn: String,
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    /// The content type and the bytes.
    pub body: Option<(String, Vec<u8>)>,
    pub timeout: Duration,
    /// The largest answer read.
    pub max_body: usize,
}

/// What the endpoint answered.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    pub status: u16,
    pub reason: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

/// Document kinds.
pub const CONNECTION: &str = "connection";
pub const API_DESTINATION: &str = "api-destination";
/// How long one request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// AWS's default rate limit of an API destination.
const DEFAULT_RATE: u32 = 300;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Connection {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// API_KEY, BASIC or OAUTH_CLIENT_CREDENTIALS.
    pub authorization_type: String,
    /// As given, secrets included (never shown back).
    pub auth_parameters: Value,
    /// AUTHORIZED or DEAUTHORIZED.
    pub connection_state: String,
    pub id: String,
    pub created_ms: i64,
    pub modified_ms: i64,
    #[serde(default)]
    pub authorized_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ApiDestination {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub connection_arn: String,
    pub invocation_endpoint: String,
    pub http_method: String,
    pub invocation_rate_limit_per_second: u32,
    pub id: String,
    pub created_ms: i64,
    pub modified_ms: i64,
}

/// Secrets replaced, for Describe: what AWS shows of the parameters.
pub fn public_auth(auth: &Value) -> Value {
    let mut shown = auth.clone();
    for (section, secret) in [
        ("ApiKeyAuthParameters", "ApiKeyValue"),
        ("BasicAuthParameters", "Password"),
    ] {
        if let Some(s) = shown.get_mut(section).and_then(Value::as_object_mut) {
            s.remove(secret);
        }
    }
    if let Some(c) = shown
        .pointer_mut("/OAuthParameters/ClientParameters")
        .and_then(Value::as_object_mut)
    {
        c.remove("ClientSecret");
    }
    for section in [
        "InvocationHttpParameters",
        "OAuthParameters/OAuthHttpParameters",
    ] {
        let pointer = format!("/{section}");
        let Some(params) = shown.pointer_mut(&pointer).and_then(Value::as_object_mut) else {
            continue;
        };
        for list in params.values_mut().filter_map(Value::as_array_mut) {
            for p in list.iter_mut().filter(|p| p["IsValueSecret"] == true) {
                if let Some(p) = p.as_object_mut() {
                    p.remove("Value");
                }
            }
        }
    }
    shown
}

fn check_name(what: &str, name: &str) -> Result<(), EventsError> {
    crate::model::check_chars(what, name, 64, &[])
}

/// What CreateConnection and UpdateConnection check of the auth.
pub fn check_auth(kind: &str, auth: &Value) -> Result<(), EventsError> {
    let need = |section: &str, fields: &[&str]| -> Result<(), EventsError> {
        let s = &auth[section];
        for f in fields {
            let v = s.pointer(f).and_then(Value::as_str).unwrap_or("");
            if v.is_empty() || v.len() > 512 {
                return Err(EventsError::validation(format!(
                    "{section}{f} is required for {kind} (1 to 512 characters)."
                )));
            }
        }
        Ok(())
    };
    match kind {
        "API_KEY" => need("ApiKeyAuthParameters", &["/ApiKeyName", "/ApiKeyValue"]),
        "BASIC" => need("BasicAuthParameters", &["/Username", "/Password"]),
        "OAUTH_CLIENT_CREDENTIALS" => {
            need(
                "OAuthParameters",
                &[
                    "/ClientParameters/ClientID",
                    "/ClientParameters/ClientSecret",
                    "/AuthorizationEndpoint",
                    "/HttpMethod",
                ],
            )?;
            check_endpoint(auth["OAuthParameters"]["AuthorizationEndpoint"].as_str().unwrap_or(""))
        }
        other => Err(EventsError::validation(format!(
            "1 validation error detected: Value '{other}' at 'authorizationType' failed to satisfy constraint: Member must satisfy enum value set: [BASIC, OAUTH_CLIENT_CREDENTIALS, API_KEY]"
        ))),
    }
}

/// An endpoint is an http(s) URL (AWS takes HTTPS only; wisp also takes
/// plain HTTP, for services on the same network).
fn check_endpoint(url: &str) -> Result<(), EventsError> {
    let parsed = reqwest::Url::parse(&url.replace('*', "x"));
    match parsed {
        Ok(u)
            if (u.scheme() == "https" || u.scheme() == "http")
                && u.host().is_some()
                && url.len() <= 2048 =>
        {
            Ok(())
        }
        _ => Err(EventsError::validation(format!(
            "Parameter InvocationEndpoint is not valid: {url} is not an http(s) URL."
        ))),
    }
}

pub fn check_destination(d: &ApiDestination) -> Result<(), EventsError> {
    check_name("name", &d.name)?;
    check_endpoint(&d.invocation_endpoint)?;
    if !["POST", "GET", "HEAD", "OPTIONS", "PUT", "PATCH", "DELETE"]
        .contains(&d.http_method.as_str())
    {
        return Err(EventsError::validation(format!(
            "1 validation error detected: Value '{}' at 'httpMethod' failed to satisfy constraint: Member must satisfy enum value set: [POST, GET, HEAD, OPTIONS, PUT, PATCH, DELETE]",
            d.http_method
        )));
    }
    if d.invocation_rate_limit_per_second == 0 {
        return Err(EventsError::validation(
            "1 validation error detected: Value at 'invocationRateLimitPerSecond' failed to satisfy constraint: Member must have value greater than or equal to 1",
        ));
    }
    Ok(())
}

/// What each node keeps for the endpoints it calls: the HTTP client,
/// OAuth tokens until they expire, and each destination's rate window.
pub(crate) struct Outbound {
    client: reqwest::Client,
    tokens: Mutex<HashMap<String, (String, i64)>>,
    /// Per destination: the second and how many requests went in it.
    windows: Mutex<HashMap<String, (i64, u32)>>,
}

impl Default for Outbound {
    fn default() -> Self {
        Outbound {
            client: reqwest::Client::builder()
                .timeout(REQUEST_TIMEOUT)
                .build()
                .unwrap_or_default(),
            tokens: Mutex::default(),
            windows: Mutex::default(),
        }
    }
}

/// A name from an ARN `...:<kind>/<name>/<id>`.
fn name_in(arn: &str, kind: &str) -> Option<String> {
    arn.split_once(&format!(":{kind}/"))
        .map(|(_, rest)| rest.split('/').next().unwrap_or(rest).to_string())
}

/// A connection's parameter list (`[{"Key", "Value"}]`) as pairs.
fn pairs(list: &Value) -> Vec<(String, String)> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            let text = |k: &str| p[k].as_str().unwrap_or_default().to_string();
            (text("Key"), text("Value"))
        })
        .collect()
}

fn retryable(status: u16) -> bool {
    matches!(status, 401 | 407 | 409 | 429) || status >= 500
}

impl Events {
    pub fn connection_arn(&self, c: &Connection) -> String {
        format!(
            "arn:aws:events:{}:{}:connection/{}/{}",
            self.region(),
            self.account(),
            c.name,
            c.id
        )
    }

    pub fn api_destination_arn(&self, d: &ApiDestination) -> String {
        format!(
            "arn:aws:events:{}:{}:api-destination/{}/{}",
            self.region(),
            self.account(),
            d.name,
            d.id
        )
    }

    pub async fn get_connection(&self, name: &str) -> Result<(Connection, u64), EventsError> {
        check_name("name", name)?;
        self.get_doc(CONNECTION, "Connection", name).await
    }

    pub async fn create_connection(&self, mut c: Connection) -> Result<Connection, EventsError> {
        check_name("name", &c.name)?;
        check_auth(&c.authorization_type, &c.auth_parameters)?;
        let now = self.clock.now_ms();
        c.id = uuid::Uuid::new_v4().to_string();
        c.connection_state = "AUTHORIZED".into();
        (c.created_ms, c.modified_ms, c.authorized_ms) = (now, now, now);
        self.put_doc(CONNECTION, "Connection", &c.name.clone(), &c, None)
            .await?;
        Ok(c)
    }

    /// Changes a connection by `change`, by compare-and-set.
    pub async fn update_connection(
        &self,
        name: &str,
        change: impl Fn(&mut Connection) -> Result<(), EventsError>,
    ) -> Result<Connection, EventsError> {
        loop {
            let (mut c, revision) = self.get_connection(name).await?;
            change(&mut c)?;
            c.modified_ms = self.clock.now_ms();
            match self
                .put_doc(CONNECTION, "Connection", name, &c, Some(revision))
                .await
            {
                Ok(()) => {
                    if let Ok(mut tokens) = self.outbound.tokens.lock() {
                        tokens.remove(name);
                    }
                    return Ok(c);
                }
                Err(e) if e.error_type == "ConcurrentModificationException" => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub async fn delete_connection(&self, name: &str) -> Result<Connection, EventsError> {
        let (c, _) = self.get_connection(name).await?;
        let arn = self.connection_arn(&c);
        if self
            .list_api_destinations("")
            .await?
            .iter()
            .any(|d| d.connection_arn == arn)
        {
            return Err(EventsError::validation(format!(
                "Connection {name} is used by an API destination; delete that first."
            )));
        }
        self.store.delete_document(CONNECTION, name).await?;
        Ok(c)
    }

    pub async fn list_connections(&self, prefix: &str) -> Result<Vec<Connection>, EventsError> {
        Ok(self
            .store
            .list_documents(CONNECTION, prefix)
            .await?
            .into_iter()
            .filter_map(|d| serde_json::from_value(d.value).ok())
            .collect())
    }

    pub async fn get_api_destination(
        &self,
        name: &str,
    ) -> Result<(ApiDestination, u64), EventsError> {
        check_name("name", name)?;
        self.get_doc(API_DESTINATION, "ApiDestination", name).await
    }

    async fn require_connection_arn(&self, arn: &str) -> Result<(), EventsError> {
        let name = name_in(arn, "connection")
            .ok_or_else(|| EventsError::validation(format!("{arn} is not a connection ARN.")))?;
        let (c, _) = self.get_connection(&name).await?;
        if self.connection_arn(&c) != arn {
            return Err(EventsError::not_found(format!(
                "Connection '{arn}' does not exist."
            )));
        }
        Ok(())
    }

    pub async fn create_api_destination(
        &self,
        mut d: ApiDestination,
    ) -> Result<ApiDestination, EventsError> {
        if d.invocation_rate_limit_per_second == 0 {
            d.invocation_rate_limit_per_second = DEFAULT_RATE;
        }
        check_destination(&d)?;
        self.require_connection_arn(&d.connection_arn).await?;
        let now = self.clock.now_ms();
        d.id = uuid::Uuid::new_v4().to_string();
        (d.created_ms, d.modified_ms) = (now, now);
        self.put_doc(API_DESTINATION, "ApiDestination", &d.name.clone(), &d, None)
            .await?;
        Ok(d)
    }

    pub async fn update_api_destination(
        &self,
        name: &str,
        change: impl Fn(&mut ApiDestination),
    ) -> Result<ApiDestination, EventsError> {
        loop {
            let (mut d, revision) = self.get_api_destination(name).await?;
            change(&mut d);
            check_destination(&d)?;
            self.require_connection_arn(&d.connection_arn).await?;
            d.modified_ms = self.clock.now_ms();
            match self
                .put_doc(API_DESTINATION, "ApiDestination", name, &d, Some(revision))
                .await
            {
                Ok(()) => return Ok(d),
                Err(e) if e.error_type == "ConcurrentModificationException" => continue,
                Err(e) => return Err(e),
            }
        }
    }

    pub async fn delete_api_destination(&self, name: &str) -> Result<(), EventsError> {
        self.get_api_destination(name).await?;
        self.store.delete_document(API_DESTINATION, name).await?;
        Ok(())
    }

    pub async fn list_api_destinations(
        &self,
        prefix: &str,
    ) -> Result<Vec<ApiDestination>, EventsError> {
        Ok(self
            .store
            .list_documents(API_DESTINATION, prefix)
            .await?
            .into_iter()
            .filter_map(|d| serde_json::from_value(d.value).ok())
            .collect())
    }

    /// Waits until `destination` may send one more request this second.
    async fn take_rate(&self, destination: &str, per_second: u32) {
        loop {
            let now = self.clock.now_ms();
            let second = now / 1000;
            let wait = {
                let Ok(mut windows) = self.outbound.windows.lock() else {
                    return;
                };
                let w = windows
                    .entry(destination.to_string())
                    .or_insert((second, 0));
                if w.0 != second {
                    *w = (second, 0);
                }
                if w.1 < per_second {
                    w.1 += 1;
                    return;
                }
                1000 - now % 1000
            };
            tokio::time::sleep(Duration::from_millis(wait as u64)).await;
        }
    }

    /// A token for an OAuth connection: the kept one, or a new one.
    async fn oauth_token(&self, c: &Connection) -> Result<String, Failure> {
        let now = self.clock.now_ms();
        if let Some((token, until)) = self
            .outbound
            .tokens
            .lock()
            .ok()
            .and_then(|t| t.get(&c.name).cloned())
        {
            if until > now {
                return Ok(token);
            }
        }
        let o = &c.auth_parameters["OAuthParameters"];
        let endpoint = o["AuthorizationEndpoint"].as_str().unwrap_or_default();
        let method =
            reqwest::Method::from_bytes(o["HttpMethod"].as_str().unwrap_or("POST").as_bytes())
                .unwrap_or(reqwest::Method::POST);
        let client = &o["ClientParameters"];
        let mut form = vec![("grant_type".to_string(), "client_credentials".to_string())];
        let mut request = self.outbound.client.request(method, endpoint).basic_auth(
            client["ClientID"].as_str().unwrap_or_default(),
            client["ClientSecret"].as_str(),
        );
        let params = &o["OAuthHttpParameters"];
        for (k, v) in pairs(&params["HeaderParameters"]) {
            request = request.header(k, v);
        }
        form.extend(pairs(&params["BodyParameters"]));
        let query = pairs(&params["QueryStringParameters"]);
        let reply = request
            .query(&query)
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                Failure::transient(
                    "SDK_CLIENT_ERROR",
                    format!("the OAuth endpoint did not answer: {e}"),
                )
            })?;
        let status = reply.status().as_u16();
        let body: Value =
            serde_json::from_str(&reply.text().await.unwrap_or_default()).unwrap_or(Value::Null);
        let Some(token) = body["access_token"].as_str().filter(|_| status < 300) else {
            return Err(Failure {
                code: "SDK_CLIENT_ERROR",
                message: format!("the OAuth endpoint answered {status} without an access_token"),
                retry: retryable(status),
            });
        };
        let lifetime_ms = body["expires_in"].as_i64().unwrap_or(3600) * 1000;
        if let Ok(mut tokens) = self.outbound.tokens.lock() {
            tokens.insert(
                c.name.clone(),
                (token.to_string(), now + lifetime_ms - 30_000),
            );
        }
        Ok(token.to_string())
    }

    /// The authorized connection an ARN names.
    async fn connection_at(&self, arn: &str) -> Result<Connection, Failure> {
        let name = name_in(arn, "connection")
            .ok_or_else(|| Failure::not_found(format!("{arn} is not a connection")))?;
        let (c, _) = match self.get_connection(&name).await {
            Ok(found) => found,
            Err(e) if !e.internal => return Err(Failure::not_found(e.message)),
            Err(e) => return Err(Failure::transient("INTERNAL_ERROR", e.message)),
        };
        if c.connection_state != "AUTHORIZED" {
            return Err(Failure {
                code: "SDK_CLIENT_ERROR",
                message: format!("connection {} is {}", c.name, c.connection_state),
                retry: false,
            });
        }
        Ok(c)
    }

    /// A request with the connection's authorization, and its
    /// invocation headers and query (the query to add to `query`).
    async fn authorized(
        &self,
        c: &Connection,
        mut request: reqwest::RequestBuilder,
        query: &mut Vec<(String, String)>,
    ) -> Result<reqwest::RequestBuilder, Failure> {
        let auth = &c.auth_parameters;
        request = match c.authorization_type.as_str() {
            "API_KEY" => request.header(
                auth["ApiKeyAuthParameters"]["ApiKeyName"]
                    .as_str()
                    .unwrap_or_default(),
                auth["ApiKeyAuthParameters"]["ApiKeyValue"]
                    .as_str()
                    .unwrap_or_default(),
            ),
            "BASIC" => request.basic_auth(
                auth["BasicAuthParameters"]["Username"]
                    .as_str()
                    .unwrap_or_default(),
                auth["BasicAuthParameters"]["Password"].as_str(),
            ),
            _ => request.bearer_auth(self.oauth_token(c).await?),
        };
        let conn_params = &auth["InvocationHttpParameters"];
        for (k, v) in pairs(&conn_params["HeaderParameters"]) {
            request = request.header(k, v);
        }
        query.extend(pairs(&conn_params["QueryStringParameters"]));
        Ok(request)
    }

    /// A request made with a connection (Step Functions' HTTP task): its
    /// answer whatever the status; `Err` only when there is none.
    pub async fn call_with_connection(&self, call: HttpCall) -> Result<HttpAnswer, Failure> {
        let c = self.connection_at(&call.connection_arn).await?;
        let method = reqwest::Method::from_bytes(call.method.as_bytes()).map_err(|_| Failure {
            code: "SDK_CLIENT_ERROR",
            message: format!("{} is not an HTTP method", call.method),
            retry: false,
        })?;
        let mut query = Vec::new();
        let mut request = self
            .outbound
            .client
            .request(method, &call.url)
            .timeout(call.timeout)
            .header("user-agent", "Amazon|StepFunctions|HttpInvoke");
        request = self.authorized(&c, request, &mut query).await?;
        for (k, v) in &call.headers {
            request = request.header(k, v);
        }
        query.extend(call.query);
        if let Some((content_type, body)) = call.body {
            request = request.header("content-type", content_type).body(body);
        }
        let reply = request.query(&query).send().await.map_err(|e| {
            Failure::transient(
                "SDK_CLIENT_ERROR",
                format!("{} did not answer: {e}", call.url),
            )
        })?;
        let status = reply.status();
        let headers = reply
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body = Vec::new();
        let mut reply = reply;
        while let Some(chunk) = reply.chunk().await.map_err(|e| {
            Failure::transient("SDK_CLIENT_ERROR", format!("{} broke off: {e}", call.url))
        })? {
            if body.len() + chunk.len() > call.max_body {
                return Err(Failure {
                    code: "PAYLOAD_TOO_LARGE",
                    message: format!("{} answered more than {} bytes", call.url, call.max_body),
                    retry: false,
                });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(HttpAnswer {
            status: status.as_u16(),
            reason: status.canonical_reason().unwrap_or_default().to_string(),
            headers,
            body,
        })
    }

    /// One attempt at an API destination.
    pub(crate) async fn to_http(&self, d: &Delivery) -> Result<(), Failure> {
        let name = name_in(&d.target.arn, "api-destination").ok_or_else(|| {
            Failure::not_found(format!("{} is not an API destination", d.target.arn))
        })?;
        let (dest, _) = match self.get_api_destination(&name).await {
            Ok(found) => found,
            Err(e) if !e.internal => return Err(Failure::not_found(e.message)),
            Err(e) => return Err(Failure::transient("INTERNAL_ERROR", e.message)),
        };
        let c = self.connection_at(&dest.connection_arn).await?;
        let params = d
            .target
            .other
            .get("HttpParameters")
            .cloned()
            .unwrap_or(Value::Null);
        let mut url = dest.invocation_endpoint.clone();
        for value in params["PathParameterValues"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(i) = url.find('*') {
                url.replace_range(i..i + 1, value.as_str().unwrap_or_default());
            }
        }
        let method = reqwest::Method::from_bytes(dest.http_method.as_bytes())
            .unwrap_or(reqwest::Method::POST);
        let request = self
            .outbound
            .client
            .request(method.clone(), &url)
            .header("content-type", "application/json; charset=utf-8")
            .header("user-agent", "Amazon/EventBridge/ApiDestinations");
        let mut query = Vec::new();
        let mut request = self.authorized(&c, request, &mut query).await?;
        for (k, v) in params["HeaderParameters"].as_object().into_iter().flatten() {
            request = request.header(k.as_str(), v.as_str().unwrap_or_default());
        }
        for (k, v) in params["QueryStringParameters"]
            .as_object()
            .into_iter()
            .flatten()
        {
            query.push((k.clone(), v.as_str().unwrap_or_default().to_string()));
        }
        if !matches!(method, reqwest::Method::GET | reqwest::Method::HEAD) {
            request = request.body(d.input.clone());
        }
        self.take_rate(&dest.name, dest.invocation_rate_limit_per_second)
            .await;
        let reply = request.query(&query).send().await.map_err(|e| {
            Failure::transient("SDK_CLIENT_ERROR", format!("{url} did not answer: {e}"))
        })?;
        let status = reply.status().as_u16();
        if status < 300 {
            return Ok(());
        }
        let body = reply.text().await.unwrap_or_default();
        Err(Failure {
            code: "SDK_CLIENT_ERROR",
            message: format!(
                "{url} answered {status}: {}",
                body.chars().take(200).collect::<String>()
            ),
            retry: retryable(status),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_shown_back() {
        let auth = serde_json::json!({
            "ApiKeyAuthParameters": {"ApiKeyName": "x-api-key", "ApiKeyValue": "s3cret"},
            "InvocationHttpParameters": {"HeaderParameters": [
                {"Key": "a", "Value": "shown", "IsValueSecret": false},
                {"Key": "b", "Value": "hidden", "IsValueSecret": true}]},
        });
        let shown = public_auth(&auth).to_string();
        assert!(
            !shown.contains("s3cret") && !shown.contains("hidden"),
            "{shown}"
        );
        assert!(
            shown.contains("x-api-key") && shown.contains("shown"),
            "{shown}"
        );
    }

    #[test]
    fn auth_and_destinations_are_checked() {
        assert!(check_auth(
            "API_KEY",
            &serde_json::json!({"ApiKeyAuthParameters": {"ApiKeyName": "k"}})
        )
        .is_err());
        assert!(check_auth(
            "BASIC",
            &serde_json::json!({"BasicAuthParameters": {"Username": "u", "Password": "p"}})
        )
        .is_ok());
        assert!(check_auth("TOKEN", &Value::Null).is_err());
        let mut d = ApiDestination {
            name: "d".into(),
            invocation_endpoint: "https://example.com/orders/*".into(),
            http_method: "POST".into(),
            invocation_rate_limit_per_second: 10,
            ..Default::default()
        };
        check_destination(&d).unwrap();
        d.invocation_endpoint = "ftp://example.com".into();
        assert!(check_destination(&d).is_err());
        d.invocation_endpoint = "https://example.com".into();
        d.http_method = "FETCH".into();
        assert!(check_destination(&d).is_err());
        assert!(retryable(429) && retryable(503) && !retryable(400) && !retryable(404));
    }
}
