//! The CLI's HTTP client of the API, signing every request with SigV4.

use std::path::Path;

use anyhow::{bail, Context};
use serde_json::Value;
use wisp_aws::sigv4;
use wisp_aws::Credentials;

/// A signed client of one wisp API endpoint.
pub struct Client {
    base: String,
    credentials: Credentials,
    http: reqwest::Client,
}

/// A response: status, headers, body.
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> anyhow::Result<Value> {
        serde_json::from_slice(&self.body).context("the API answered with invalid JSON")
    }
}

impl Client {
    /// Finds the endpoint (flag, env, `DATA_DIR/endpoints.json`, default)
    /// and credentials (env, `DATA_DIR/credentials`).
    pub fn discover(endpoint: Option<String>, data_dir: &Path) -> anyhow::Result<Client> {
        let base = match endpoint {
            Some(e) => e,
            None => match std::fs::read(data_dir.join("endpoints.json")) {
                Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
                    .ok()
                    .and_then(|v| v["api"].as_str().map(str::to_string))
                    .context("endpoints.json has no `api` entry")?,
                Err(_) => "http://127.0.0.1:9070".to_string(),
            },
        };
        let credentials = match (std::env::var("WISP_ACCESS_KEY_ID"), std::env::var("WISP_SECRET_ACCESS_KEY")) {
            (Ok(id), Ok(secret)) if !id.is_empty() && !secret.is_empty() => Credentials {
                access_key_id: id,
                secret_access_key: secret,
            },
            _ => wisp_server::read_credentials_file(&data_dir.join("credentials"))?.with_context(|| {
                format!(
                    "no credentials: set WISP_ACCESS_KEY_ID and WISP_SECRET_ACCESS_KEY, or point --data-dir at the server's data dir ({} has no credentials file)",
                    data_dir.display()
                )
            })?,
        };
        Ok(Client::new(base, credentials))
    }

    pub fn new(base: String, credentials: Credentials) -> Client {
        Client {
            base: base.trim_end_matches('/').to_string(),
            credentials,
            http: reqwest::Client::new(),
        }
    }

    /// Sends a signed request; `path_and_query` must be percent-encoded.
    pub async fn send(
        &self,
        method: &str,
        path_and_query: &str,
        body: Vec<u8>,
        extra_headers: &[(&str, &str)],
    ) -> anyhow::Result<Reply> {
        let url = format!("{}{}", self.base, path_and_query);
        let parsed = reqwest::Url::parse(&url).with_context(|| format!("bad URL {url}"))?;
        let host = match parsed.port() {
            Some(p) => format!("{}:{p}", parsed.host_str().unwrap_or("")),
            None => parsed.host_str().unwrap_or("").to_string(),
        };
        let mut headers = http::HeaderMap::new();
        headers.insert(http::header::HOST, host.parse()?);
        for (k, v) in extra_headers {
            headers.insert(http::HeaderName::from_bytes(k.as_bytes())?, v.parse()?);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        sigv4::sign(
            &self.credentials,
            method,
            parsed.path(),
            parsed.query().unwrap_or(""),
            &mut headers,
            &body,
            "us-east-1",
            "lambda",
            now,
        );
        headers.remove(http::header::HOST);
        let response = self
            .http
            .request(method.parse()?, parsed)
            .headers(headers)
            .body(body)
            .send()
            .await
            .with_context(|| {
                format!(
                    "cannot reach the wisp API at {} (is `wisp serve` or `wisp up` running?)",
                    self.base
                )
            })?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.bytes().await?.to_vec();
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// Sends and fails on a non-2xx answer with the API's error type and message.
    pub async fn call(
        &self,
        method: &str,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<Reply> {
        let bytes = body.map(|b| b.to_string().into_bytes()).unwrap_or_default();
        let reply = self.send(method, path_and_query, bytes, &[]).await?;
        if reply.status >= 300 {
            let parsed = serde_json::from_slice::<Value>(&reply.body).ok();
            // REST-JSON names the error in a header, the JSON protocols in `__type`.
            let kind = reply
                .headers
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok())
                .or_else(|| parsed.as_ref().and_then(|v| v["__type"].as_str()))
                .unwrap_or("Error")
                .to_string();
            let message = serde_json::from_slice::<Value>(&reply.body)
                .ok()
                .and_then(|v| {
                    v["message"]
                        .as_str()
                        .or(v["Message"].as_str())
                        .map(str::to_string)
                })
                .unwrap_or_else(|| String::from_utf8_lossy(&reply.body).into_owned());
            bail!(ApiFailure {
                status: reply.status,
                kind,
                message
            });
        }
        Ok(reply)
    }

    /// Calls an SQS operation (AWS JSON 1.0) and returns its output.
    pub async fn sqs(&self, operation: &str, input: &Value) -> anyhow::Result<Value> {
        self.json_call("AmazonSQS", "1.0", operation, input).await
    }

    /// Calls an EventBridge operation (AWS JSON 1.1) and returns its output.
    pub async fn events(&self, operation: &str, input: &Value) -> anyhow::Result<Value> {
        self.json_call("AWSEvents", "1.1", operation, input).await
    }

    /// Calls a Step Functions operation (AWS JSON 1.0) and returns its output.
    pub async fn states(&self, operation: &str, input: &Value) -> anyhow::Result<Value> {
        self.json_call("AWSStepFunctions", "1.0", operation, input)
            .await
    }

    /// Calls an operation of an AWS JSON protocol service and returns its
    /// output; fails with the modeled error type and message.
    async fn json_call(
        &self,
        service: &str,
        version: &str,
        operation: &str,
        input: &Value,
    ) -> anyhow::Result<Value> {
        let target = format!("{service}.{operation}");
        let content_type = format!("application/x-amz-json-{version}");
        let reply = self
            .send(
                "POST",
                "/",
                input.to_string().into_bytes(),
                &[("x-amz-target", &target), ("content-type", &content_type)],
            )
            .await?;
        if reply.status >= 300 {
            let v: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
            let kind = v["__type"].as_str().unwrap_or("Error");
            bail!(ApiFailure {
                status: reply.status,
                kind: kind.rsplit('#').next().unwrap_or(kind).to_string(),
                message: v["message"]
                    .as_str()
                    .or(v["Message"].as_str())
                    .unwrap_or("")
                    .to_string(),
            });
        }
        reply.json()
    }
}

/// A non-2xx answer from the API.
#[derive(Debug)]
pub struct ApiFailure {
    pub status: u16,
    pub kind: String,
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.kind, self.status, self.message)
    }
}

impl std::error::Error for ApiFailure {}

/// Percent-encodes one path segment.
pub fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
