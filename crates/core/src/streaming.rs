//! Response streaming, as Lambda does it: a runtime posts its result with
//! `Lambda-Runtime-Function-Response-Mode: streaming`, chunk by chunk,
//! and an error that comes midway in the trailers; the caller gets each
//! chunk as it is written. A function behind HTTP (a function URL, the
//! gateway) may begin its stream with a prelude, the HTTP status and
//! headers as JSON, ended by eight zero bytes.

use std::pin::Pin;
use std::task::{Context, Poll};

use base64::Engine as _;
use bytes::Bytes;
use http::{HeaderMap, HeaderName};
use http_body::Frame;
use http_body_util::BodyExt;
use tokio::sync::mpsc;

use crate::runtime::{Body, BoxError};

/// The header that makes a result's post a stream.
pub const RESPONSE_MODE: &str = "lambda-runtime-function-response-mode";
/// The trailers of a stream that failed midway.
pub const ERROR_TYPE: &str = "lambda-runtime-function-error-type";
pub const ERROR_BODY: &str = "lambda-runtime-function-error-body";
/// The content type of a stream that begins with an HTTP prelude.
pub const HTTP_INTEGRATION: &str = "application/vnd.awslambda.http-integration-response";
/// Set by a runtime on a response it streams (wisp's, never sent out).
pub const STREAMED: HeaderName = HeaderName::from_static("x-wisp-streamed");
/// How much a streamed response may hold (Lambda's soft limit).
pub const MAX_STREAMED_BYTES: usize = 20 * 1024 * 1024;
/// The most a prelude may hold before its eight zero bytes.
const MAX_PRELUDE_BYTES: usize = 64 * 1024;

/// Where a runtime writes a streamed body's frames.
#[derive(Clone)]
pub struct StreamSender(mpsc::Sender<Result<Frame<Bytes>, BoxError>>);

impl StreamSender {
    /// Sends a chunk; `false` once the caller has gone.
    pub async fn data(&self, chunk: Bytes) -> bool {
        self.0.send(Ok(Frame::data(chunk))).await.is_ok()
    }

    /// Ends the body with trailers.
    pub async fn trailers(&self, trailers: HeaderMap) -> bool {
        self.0.send(Ok(Frame::trailers(trailers))).await.is_ok()
    }

    /// Ends the body with trailers if there is room now (from code that
    /// may not wait).
    pub fn try_trailers(&self, trailers: HeaderMap) {
        let _ = self.0.try_send(Ok(Frame::trailers(trailers)));
    }
}

/// A body fed from a channel, chunk by chunk.
struct ChannelBody(mpsc::Receiver<Result<Frame<Bytes>, BoxError>>);

impl http_body::Body for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.0.poll_recv(cx)
    }
}

/// A body and where to write it; `capacity` chunks may wait to be read.
pub fn channel(capacity: usize) -> (StreamSender, Body) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    (StreamSender(tx), ChannelBody(rx).boxed_unsync())
}

/// The error a stream's trailers carry: its type and its document (as
/// the runtime posted it, base64 decoded).
pub fn trailer_error(trailers: &HeaderMap) -> Option<(String, Bytes)> {
    let error_type = trailers.get(ERROR_TYPE)?.to_str().ok()?.to_string();
    let body = trailers
        .get(ERROR_BODY)
        .and_then(|v| v.to_str().ok())
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .map(Bytes::from)
        .unwrap_or_default();
    Some((error_type, body))
}

/// The trailers that say a stream failed with `error_type`.
pub fn error_trailers(error_type: &str, document: &[u8]) -> HeaderMap {
    let mut h = HeaderMap::new();
    if let Ok(v) = http::HeaderValue::from_str(error_type) {
        h.insert(ERROR_TYPE, v);
    }
    let body = base64::engine::general_purpose::STANDARD.encode(document);
    if let Ok(v) = http::HeaderValue::from_str(&body) {
        h.insert(ERROR_BODY, v);
    }
    h
}

/// The HTTP response a stream's prelude asks for.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Prelude {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub cookies: Vec<String>,
}

/// Reads a stream's prelude off `body`: its status and headers, and the
/// body after it (with what was read past the prelude first). An
/// unreadable prelude is an error.
pub async fn read_prelude(mut body: Body) -> Result<(Prelude, Body), String> {
    let mut buf: Vec<u8> = Vec::new();
    loop {
        if let Some(end) = find_zeros(&buf) {
            let prelude = parse_prelude(&buf[..end])?;
            let rest = Bytes::copy_from_slice(&buf[end + 8..]);
            let first = http_body_util::Full::new(rest).map_err(|never| match never {});
            let body = Chain {
                first: Some(first),
                rest: body,
            };
            return Ok((prelude, body.boxed_unsync()));
        }
        if buf.len() > MAX_PRELUDE_BYTES {
            return Err(format!(
                "the response's prelude is longer than {MAX_PRELUDE_BYTES} bytes"
            ));
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    buf.extend_from_slice(&data);
                }
            }
            Some(Err(e)) => return Err(format!("the response failed: {e}")),
            // A stream that ended in its prelude: all of it is the prelude.
            None => {
                let prelude = parse_prelude(&buf)?;
                return Ok((prelude, crate::runtime::full_body(Bytes::new())));
            }
        }
    }
}

fn find_zeros(buf: &[u8]) -> Option<usize> {
    buf.windows(8).position(|w| w == [0u8; 8])
}

fn parse_prelude(text: &[u8]) -> Result<Prelude, String> {
    let v: serde_json::Value = serde_json::from_slice(text)
        .map_err(|e| format!("the response's prelude is not JSON: {e}"))?;
    let status = v
        .get("statusCode")
        .and_then(serde_json::Value::as_u64)
        .map_or(200, |s| s as u16);
    if !(100..=599).contains(&status) {
        return Err(format!(
            "the response's statusCode {status} is not an HTTP status"
        ));
    }
    let headers = v
        .get("headers")
        .and_then(serde_json::Value::as_object)
        .map(|m| {
            m.iter()
                .map(|(k, v)| {
                    let value = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    (k.clone(), value)
                })
                .collect()
        })
        .unwrap_or_default();
    let cookies = v
        .get("cookies")
        .and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    Ok(Prelude {
        status,
        headers,
        cookies,
    })
}

/// One body, then another.
struct Chain<A> {
    first: Option<A>,
    rest: Body,
}

impl<A> http_body::Body for Chain<A>
where
    A: http_body::Body<Data = Bytes, Error = BoxError> + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(first) = self.first.as_mut() {
            match Pin::new(first).poll_frame(cx) {
                Poll::Ready(None) => self.first = None,
                Poll::Ready(Some(Ok(f))) if f.data_ref().is_some_and(|d| d.is_empty()) => {
                    self.first = None;
                }
                other => return other,
            }
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_prelude_gives_the_status_headers_and_the_body_after_it() {
        let (tx, body) = channel(4);
        tokio::spawn(async move {
            tx.data(Bytes::from_static(b"{\"statusCode\": 201, \"headers\": {\"x-a\": \"1\"}, \"cookies\": [\"c=1\"]}\0\0\0"))
                .await;
            tx.data(Bytes::from_static(b"\0\0\0\0\0first ")).await;
            tx.data(Bytes::from_static(b"second")).await;
        });
        let (prelude, rest) = read_prelude(body).await.unwrap();
        assert_eq!(prelude.status, 201);
        assert_eq!(prelude.headers, vec![("x-a".to_string(), "1".to_string())]);
        assert_eq!(prelude.cookies, vec!["c=1".to_string()]);
        let rest = rest.collect().await.unwrap().to_bytes();
        assert_eq!(&rest[..], b"first second");
    }

    #[tokio::test]
    async fn bad_preludes_are_errors() {
        for text in [
            &b"not json\0\0\0\0\0\0\0\0"[..],
            b"{\"statusCode\": 9000}\0\0\0\0\0\0\0\0",
        ] {
            let body = crate::runtime::full_body(Bytes::copy_from_slice(text));
            assert!(read_prelude(body).await.is_err());
        }
        let endless = vec![b'x'; MAX_PRELUDE_BYTES + 10];
        assert!(read_prelude(crate::runtime::full_body(endless))
            .await
            .is_err());
    }

    #[test]
    fn trailers_carry_the_error() {
        let t = error_trailers("Error", b"{\"errorType\":\"Error\"}");
        let (ty, body) = trailer_error(&t).unwrap();
        assert_eq!(ty, "Error");
        assert_eq!(&body[..], b"{\"errorType\":\"Error\"}");
        assert!(trailer_error(&HeaderMap::new()).is_none());
    }
}
