//! The HTTP task (`arn:aws:states:::http:invoke`): a request to an
//! endpoint the state machine may call, authorized by an EventBridge
//! connection (API key, basic or OAuth client credentials), answered as
//! AWS answers it: `{Headers, ResponseBody, StatusCode, StatusText}`, a
//! status other than 2xx failing the task with
//! `States.Http.StatusCode.<status>`.
//!
//! Outbound HTTP is denied unless allowed, as a wasm function's is: the
//! machine's tag `wisp:allowed-outbound-hosts` (what the manifest's
//! `allowed_outbound_hosts` deploys) lists `scheme://host[:port]`
//! patterns, space- or comma-separated.

use std::time::Duration;

use serde_json::{json, Map, Value};
use wisp_core::outbound::OutboundPolicy;
use wisp_events::http::HttpCall;

use crate::engine::Flows;
use crate::run::TaskCall;
use crate::step::Failure;

/// The tag that lists the endpoints a machine's HTTP tasks may call.
pub const ALLOWED_HOSTS_TAG: &str = "wisp:allowed-outbound-hosts";
/// AWS bounds an HTTP task's request to 60 seconds.
const MAX_SECONDS: u64 = 60;
/// The largest answer kept (a state's payload is at most 256 KiB).
const MAX_ANSWER: usize = 256 * 1024;
const METHODS: [&str; 7] = ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD"];
/// Headers the connection sets, or that HTTP itself owns.
const REFUSED_HEADERS: [&str; 8] = [
    "authorization",
    "host",
    "content-length",
    "connection",
    "transfer-encoding",
    "expect",
    "proxy-authorization",
    "te",
];

fn runtime(cause: impl Into<String>) -> Failure {
    Failure::new(crate::errors::RUNTIME, cause)
}

/// The machine an execution's trigger (`states:<execution arn>`) names;
/// a branch's is its parent's.
fn machine_of(trigger: &str) -> Option<&str> {
    let arn = trigger.strip_prefix("states:")?;
    let (_, rest) = arn
        .split_once(":execution:")
        .or_else(|| arn.split_once(":express:"))?;
    let machine = rest.split(':').next()?;
    Some(machine.strip_suffix("~branches").unwrap_or(machine))
}

/// `name=value` pairs of a Headers or QueryParameters object (a list
/// value gives one pair per item).
fn pairs(v: &Value, field: &str) -> Result<Vec<(String, String)>, Failure> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    match v {
        Value::Null => Ok(Vec::new()),
        Value::Object(m) => Ok(m
            .iter()
            .flat_map(|(k, v)| match v {
                Value::Array(items) => items.iter().map(|i| (k.clone(), text(i))).collect(),
                other => vec![(k.clone(), text(other))],
            })
            .collect()),
        _ => Err(runtime(format!("{field} must be an object"))),
    }
}

/// A RequestBody form-encoded (Transform.RequestBodyEncoding URL_ENCODED),
/// arrays as RequestEncodingOptions.ArrayFormat says.
fn url_encoded(body: &Value, array_format: &str) -> Result<String, Failure> {
    let Value::Object(fields) = body else {
        return Err(runtime("a URL_ENCODED RequestBody must be an object"));
    };
    let enc = |s: &str| {
        let mut out = String::new();
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    };
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let mut parts = Vec::new();
    for (k, v) in fields {
        match v {
            Value::Array(items) => match array_format {
                "COMMAS" => {
                    let joined: Vec<String> = items.iter().map(text).collect();
                    parts.push(format!("{}={}", enc(k), enc(&joined.join(","))));
                }
                "BRACKETS" => {
                    for i in items {
                        parts.push(format!("{}={}", enc(&format!("{k}[]")), enc(&text(i))));
                    }
                }
                "INDICES" => {
                    for (n, i) in items.iter().enumerate() {
                        parts.push(format!("{}={}", enc(&format!("{k}[{n}]")), enc(&text(i))));
                    }
                }
                _ => {
                    for i in items {
                        parts.push(format!("{}={}", enc(k), enc(&text(i))));
                    }
                }
            },
            other => parts.push(format!("{}={}", enc(k), enc(&text(other)))),
        }
    }
    Ok(parts.join("&"))
}

impl Flows {
    /// Runs an HTTP task.
    pub(crate) async fn http_invoke(
        &self,
        call: &TaskCall,
        trigger: &str,
    ) -> Result<Value, Failure> {
        let p = &call.input;
        let endpoint = p["ApiEndpoint"]
            .as_str()
            .ok_or_else(|| runtime("The HTTP task needs Parameters.ApiEndpoint (a URL)"))?;
        let url = reqwest::Url::parse(endpoint)
            .map_err(|e| runtime(format!("ApiEndpoint '{endpoint}' is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(runtime("ApiEndpoint must be an http or https URL"));
        }
        let method = p["Method"]
            .as_str()
            .unwrap_or_default()
            .to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) {
            return Err(runtime(format!(
                "Method must be one of {}",
                METHODS.join(", ")
            )));
        }
        let connection_arn = p["Authentication"]["ConnectionArn"].as_str().ok_or_else(|| {
            runtime("The HTTP task needs Parameters.Authentication.ConnectionArn (an EventBridge connection)")
        })?;
        self.allowed(trigger, &url).await?;
        let headers = pairs(&p["Headers"], "Headers")?;
        if let Some((refused, _)) = headers
            .iter()
            .find(|(k, _)| REFUSED_HEADERS.contains(&k.to_ascii_lowercase().as_str()))
        {
            return Err(runtime(format!(
                "The header '{refused}' may not be set: the connection or HTTP sets it"
            )));
        }
        let given_type = headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.clone());
        let headers: Vec<(String, String)> = headers
            .into_iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case("content-type"))
            .collect();
        let encoding = p["Transform"]["RequestBodyEncoding"]
            .as_str()
            .unwrap_or("NONE");
        let body = match (&p["RequestBody"], encoding) {
            (Value::Null, _) => None,
            (body, "URL_ENCODED") => {
                let format = p["Transform"]["RequestEncodingOptions"]["ArrayFormat"]
                    .as_str()
                    .unwrap_or("INDICES");
                Some((
                    "application/x-www-form-urlencoded".to_string(),
                    url_encoded(body, format)?.into_bytes(),
                ))
            }
            (Value::String(s), "NONE") => Some((
                given_type.clone().unwrap_or_else(|| "text/plain".into()),
                s.clone().into_bytes(),
            )),
            (other, "NONE") => Some((
                given_type
                    .clone()
                    .unwrap_or_else(|| "application/json; charset=UTF-8".into()),
                other.to_string().into_bytes(),
            )),
            (_, other) => {
                return Err(runtime(format!(
                    "RequestBodyEncoding is NONE or URL_ENCODED, not {other}"
                )))
            }
        };
        let timeout = call
            .timeout_seconds
            .unwrap_or(MAX_SECONDS)
            .clamp(1, MAX_SECONDS);
        let answer = self
            .events
            .call_with_connection(HttpCall {
                connection_arn: connection_arn.to_string(),
                method,
                url: url.to_string(),
                headers,
                query: pairs(&p["QueryParameters"], "QueryParameters")?,
                body,
                timeout: Duration::from_secs(timeout),
                max_body: MAX_ANSWER,
            })
            .await
            .map_err(|f| match f.code {
                "RESOURCE_NOT_FOUND" => Failure::new("States.Http.ConnectionNotFound", f.message),
                "PAYLOAD_TOO_LARGE" => Failure::new("States.DataLimitExceeded", f.message),
                _ => Failure::new("States.Http.Socket", f.message),
            })?;
        let mut headers = Map::new();
        for (k, v) in answer.headers {
            match headers.get_mut(&k) {
                Some(Value::Array(values)) => values.push(Value::String(v)),
                _ => {
                    headers.insert(k, json!([v]));
                }
            }
        }
        let is_json = headers
            .get("content-type")
            .and_then(|v| v[0].as_str())
            .is_some_and(|t| t.contains("json"));
        let text = String::from_utf8_lossy(&answer.body).into_owned();
        let response_body = match is_json {
            true => serde_json::from_str(&text).unwrap_or(Value::String(text)),
            false => Value::String(text),
        };
        let result = json!({
            "Headers": headers,
            "ResponseBody": response_body,
            "StatusCode": answer.status,
            "StatusText": answer.reason,
        });
        if (200..300).contains(&answer.status) {
            Ok(result)
        } else {
            Err(Failure::new(
                format!("States.Http.StatusCode.{}", answer.status),
                result.to_string(),
            ))
        }
    }

    /// Whether the execution's machine may call `url`.
    async fn allowed(&self, trigger: &str, url: &reqwest::Url) -> Result<(), Failure> {
        let target = match url.port() {
            Some(port) => format!("{}://{}:{port}", url.scheme(), url.host_str().unwrap_or("")),
            None => format!("{}://{}", url.scheme(), url.host_str().unwrap_or("")),
        };
        let denied = |why: String| Failure::new(crate::errors::PERMISSIONS, why);
        let machine = machine_of(trigger)
            .ok_or_else(|| denied(format!("{target} is not allowed outside an execution")))?;
        let (m, _) = self
            .get(machine)
            .await
            .map_err(|e| denied(format!("state machine {machine}: {}", e.message)))?;
        let listed: Vec<String> = m
            .tags
            .get(ALLOWED_HOSTS_TAG)
            .map(|t| {
                t.split([' ', ','])
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        let policy = OutboundPolicy::new(&listed)
            .map_err(|e| denied(format!("the tag {ALLOWED_HOSTS_TAG} of {machine}: {e}")))?;
        if policy.allows(url.scheme(), url.host_str().unwrap_or(""), url.port()) {
            Ok(())
        } else {
            Err(denied(format!(
                "{target} is not an endpoint state machine {machine} may call: add it to the machine's allowed_outbound_hosts (tag {ALLOWED_HOSTS_TAG})"
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trigger_names_its_machine() {
        let arn = "states:arn:aws:states:us-east-1:000000000000:execution:orders:first";
        assert_eq!(machine_of(arn), Some("orders"));
        let branch = "states:arn:aws:states:us-east-1:000000000000:execution:orders~branches:x~1~0";
        assert_eq!(machine_of(branch), Some("orders"));
        assert_eq!(machine_of("states:TestState"), None);
    }

    #[test]
    fn bodies_are_form_encoded_as_asked() {
        let body = json!({"a": "x y", "list": [1, 2]});
        assert_eq!(
            url_encoded(&body, "INDICES").unwrap(),
            "a=x%20y&list%5B0%5D=1&list%5B1%5D=2"
        );
        assert_eq!(
            url_encoded(&body, "BRACKETS").unwrap(),
            "a=x%20y&list%5B%5D=1&list%5B%5D=2"
        );
        assert_eq!(url_encoded(&body, "COMMAS").unwrap(), "a=x%20y&list=1%2C2");
        assert_eq!(
            url_encoded(&body, "REPEAT").unwrap(),
            "a=x%20y&list=1&list=2"
        );
        assert!(url_encoded(&json!([1]), "REPEAT").is_err());
    }
}
