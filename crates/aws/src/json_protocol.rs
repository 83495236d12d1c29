//! AWS's JSON protocols (1.0 for SQS and Step Functions, 1.1 for
//! EventBridge): `POST /` with `X-Amz-Target: <Prefix>.<Operation>`, a JSON
//! body in, a JSON body out, and errors as `{"__type", "message"}`. SQS is
//! "query compatible": its errors also carry the old query protocol's code
//! in `x-amzn-query-error: <Code>;Sender`, which botocore prefers, so
//! clients raise the same exception classes as against the query API.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// The JSON protocol version a service speaks; it names the content type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonVersion {
    V1_0,
    V1_1,
}

impl JsonVersion {
    pub fn content_type(self) -> &'static str {
        match self {
            JsonVersion::V1_0 => "application/x-amz-json-1.0",
            JsonVersion::V1_1 => "application/x-amz-json-1.1",
        }
    }
}

/// `X-Amz-Target`, split: `AmazonSQS.SendMessage` is service `AmazonSQS`,
/// operation `SendMessage`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target<'a> {
    pub service: &'a str,
    pub operation: &'a str,
}

impl<'a> Target<'a> {
    pub fn parse(header: &'a str) -> Option<Target<'a>> {
        let (service, operation) = header.rsplit_once('.')?;
        let word =
            |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        (word(service) && word(operation)).then_some(Target { service, operation })
    }
}

/// An error in a JSON protocol's shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonError {
    pub version: JsonVersion,
    pub status: StatusCode,
    /// The modeled error's name (`QueueDoesNotExist`), sent as `__type`.
    pub error_type: &'static str,
    /// The query protocol's code (`AWS.SimpleQueueService.NonExistentQueue`)
    /// for query-compatible services; sent in `x-amzn-query-error`.
    pub query_code: Option<&'static str>,
    pub message: String,
}

impl JsonError {
    pub fn new(
        version: JsonVersion,
        status: StatusCode,
        error_type: &'static str,
        message: impl Into<String>,
    ) -> JsonError {
        JsonError {
            version,
            status,
            error_type,
            query_code: None,
            message: message.into(),
        }
    }

    /// Also sends the query protocol's code (and whose fault it is).
    pub fn with_query_code(mut self, code: &'static str) -> JsonError {
        self.query_code = Some(code);
        self
    }

    /// An operation the service does not have.
    pub fn unknown_operation(version: JsonVersion, target: &str) -> JsonError {
        JsonError::new(
            version,
            StatusCode::BAD_REQUEST,
            "UnknownOperationException",
            format!("The operation {target} is not supported."),
        )
    }
}

impl IntoResponse for JsonError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({ "__type": self.error_type, "message": self.message });
        let mut response = (self.status, body.to_string()).into_response();
        let headers = response.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static(self.version.content_type()),
        );
        if let Some(code) = self.query_code {
            let fault = if self.status.is_server_error() {
                "Receiver"
            } else {
                "Sender"
            };
            if let Ok(v) = HeaderValue::from_str(&format!("{code};{fault}")) {
                headers.insert("x-amzn-query-error", v);
            }
        }
        response
    }
}

/// A successful answer: `value` as the protocol's JSON.
pub fn ok(version: JsonVersion, value: &serde_json::Value) -> Response {
    let mut response = (StatusCode::OK, value.to_string()).into_response();
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static(version.content_type()),
    );
    response
}

/// Reads an operation's input. An empty body is `{}` (botocore sends one
/// for operations without input); anything else must be the input's JSON.
pub fn input<T: DeserializeOwned>(version: JsonVersion, body: &Bytes) -> Result<T, JsonError> {
    let text: &[u8] = if body.is_empty() { b"{}" } else { body };
    serde_json::from_slice(text).map_err(|e| {
        JsonError::new(
            version,
            StatusCode::BAD_REQUEST,
            "SerializationException",
            format!("the request body is not this operation's input: {e}"),
        )
    })
}

/// A timestamp as botocore sends one in JSON (epoch seconds, maybe with
/// a fraction) or as RFC 3339 text; in ms. The error names `field`.
pub fn epoch_ms(v: &Value, field: &str) -> Result<i64, String> {
    let bad = || format!("{field} is not a valid timestamp.");
    match v {
        Value::Number(n) => n
            .as_f64()
            .filter(|s| s.is_finite() && s.abs() < 1e12)
            .map(|s| (s * 1000.0).round() as i64)
            .ok_or_else(bad),
        Value::String(s) => match s.parse::<f64>() {
            Ok(n) => epoch_ms(&Value::from(n), field),
            Err(_) => {
                time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                    .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
                    .map_err(|_| bad())
            }
        },
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_split_at_the_last_dot() {
        assert_eq!(
            Target::parse("AmazonSQS.SendMessage"),
            Some(Target {
                service: "AmazonSQS",
                operation: "SendMessage"
            })
        );
        assert_eq!(
            Target::parse("AWSEvents.PutEvents").map(|t| t.service),
            Some("AWSEvents")
        );
        for bad in [
            "",
            "AmazonSQS",
            "AmazonSQS.",
            ".Send",
            "Amazon SQS.Send",
            "A.B/C",
        ] {
            assert_eq!(Target::parse(bad), None, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn errors_have_the_protocols_shape() {
        let e = JsonError::new(
            JsonVersion::V1_0,
            StatusCode::BAD_REQUEST,
            "QueueDoesNotExist",
            "The specified queue does not exist.",
        )
        .with_query_code("AWS.SimpleQueueService.NonExistentQueue");
        let r = e.into_response();
        assert_eq!(r.status(), 400);
        assert_eq!(r.headers()["content-type"], "application/x-amz-json-1.0");
        assert_eq!(
            r.headers()["x-amzn-query-error"],
            "AWS.SimpleQueueService.NonExistentQueue;Sender"
        );
        let body = axum::body::to_bytes(r.into_body(), 1024).await.unwrap();
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"__type": "QueueDoesNotExist", "message": "The specified queue does not exist."})
        );
    }

    #[test]
    fn input_is_json_and_empty_is_an_empty_object() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        #[serde(rename_all = "PascalCase")]
        struct In {
            queue_url: Option<String>,
        }
        let v1 = JsonVersion::V1_1;
        assert_eq!(
            input::<In>(v1, &Bytes::new()).unwrap(),
            In { queue_url: None }
        );
        assert_eq!(
            input::<In>(v1, &Bytes::from_static(br#"{"QueueUrl":"u"}"#)).unwrap(),
            In {
                queue_url: Some("u".into())
            }
        );
        let e = input::<In>(v1, &Bytes::from_static(b"{")).unwrap_err();
        assert_eq!(
            (e.status, e.error_type),
            (StatusCode::BAD_REQUEST, "SerializationException")
        );
        assert_eq!(e.version.content_type(), "application/x-amz-json-1.1");
    }
}
